//! Logs, credentials and circuit breaker state.

use super::expr::{Expr, is_condition_failure};
use super::items::{
    CircuitItem, CredentialItem, Item, LogItem, attr, av, from_item, key, s, to_item,
};
use super::{DynamoStore, QuerySpec, backend, keys};
use crate::model::*;
use crate::ports::*;
use aws_sdk_dynamodb::types::{
    Delete, KeysAndAttributes, Put, PutRequest, TransactWriteItem, WriteRequest,
};
use std::collections::HashMap;

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// BatchWriteItem takes at most 25 writes.
const MAX_BATCH_WRITE: usize = 25;

impl DynamoStore {
    /// One `BatchWriteItem` per 25 logs (unprocessed items are retried with a short backoff).
    pub(super) async fn append_logs_(&self, logs: &[ExecutionLog]) -> StoreResult<()> {
        let items = logs
            .iter()
            .map(|l| to_item(&LogItem::new(l, self.expiry(l.timestamp)), "log entry"))
            .collect::<StoreResult<Vec<Item>>>()?;
        for chunk in items.chunks(MAX_BATCH_WRITE) {
            let mut requests = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                        .map_err(build_err)
                })
                .collect::<StoreResult<Vec<_>>>()?;
            for round in 0..8u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .set_return_consumed_capacity(self.capacity.clone())
                    .send()
                    .await
                    .map_err(backend)?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if round == 7 {
                    return Err(StoreError::Backend(format!(
                        "{} log entries left unprocessed",
                        requests.len()
                    )));
                }
                super::expr::conflict_pause(round).await;
            }
        }
        Ok(())
    }

    pub(super) async fn list_logs_(
        &self,
        org: &str,
        execution_id: &str,
        filter: &LogFilter,
        limit: usize,
    ) -> StoreResult<Page<ExecutionLog>> {
        let mut e = Expr::new();
        let pk = format!(
            "{} = {}",
            e.n(attr::PK),
            e.v(s(keys::execution_pk(org, execution_id)))
        );
        let key_condition = match &filter.after {
            // Every sort key above `L#{after}` in this partition is a later log.
            Some(after) => format!(
                "{pk} AND {} > {}",
                e.n(attr::SK),
                e.v(s(keys::log_sk(after)))
            ),
            None => format!(
                "{pk} AND begins_with({}, {})",
                e.n(attr::SK),
                e.v(s(keys::LOG_PREFIX))
            ),
        };
        let mut filters = Vec::new();
        if let Some(level) = filter.level {
            filters.push(format!("{} = {}", e.n(attr::LEVEL), e.v(av(&level)?)));
        }
        if let Some(node) = &filter.node_id {
            filters.push(format!("{} = {}", e.n(attr::NODE_ID), e.v(s(node))));
        }
        let q = QuerySpec {
            index: None,
            key_condition,
            filter: (!filters.is_empty()).then(|| filters.join(" AND ")),
            expr: e,
            forward: true,
            consistent: true,
            projection: None,
        };
        let (found, next) = self
            .query_limited(&q, limit, None, &[attr::PK, attr::SK])
            .await?;
        let items = found
            .into_iter()
            .map(|i| from_item::<LogItem>(i, "log entry").map(|l| l.into_log(org)))
            .collect::<StoreResult<Vec<_>>>()?;
        // The cursor of a log listing is the `after` of the next call: the last log's id
        // (or, when a selective filter stopped the scan early, the last key examined).
        let next_cursor = next.and_then(|k| {
            k.get(attr::SK)
                .and_then(|sk| sk.strip_prefix(keys::LOG_PREFIX))
                .map(|id| id.replace("%23", "#").replace("%25", "%"))
        });
        Ok(Page { items, next_cursor })
    }

    pub(super) async fn put_credential_(&self, cred: &StoredCredential) -> StoreResult<()> {
        let c = &cred.credential;
        let by_id = to_item(
            &CredentialItem::new(cred, keys::credential_id_sk(&c.id)),
            "credential",
        )?;
        let by_name = to_item(
            &CredentialItem::new(cred, keys::credential_name_sk(&c.name)),
            "credential",
        )?;
        let mut e = Expr::new();
        let cond = format!(
            "attribute_not_exists({}) OR {} = {}",
            e.n(attr::PK),
            e.n(attr::ID),
            e.v(s(&c.id))
        );
        let ops = vec![
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(by_id))
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(by_name))
                        .condition_expression(cond)
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
        ];
        match self.transact(ops).await? {
            Ok(()) => Ok(()),
            Err(reasons) if reasons.get(1).is_some_and(|(c, _)| is_condition_failure(c)) => Err(
                StoreError::Conflict(format!("A credential named '{}' already exists", c.name)),
            ),
            Err(reasons) => Err(StoreError::Backend(format!(
                "put_credential cancelled: {:?}",
                reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
            ))),
        }
    }

    /// One `BatchGetItem` of the id item and the name item; the id wins.
    pub(super) async fn get_credential_(
        &self,
        org: &str,
        id_or_name: &str,
    ) -> StoreResult<Option<StoredCredential>> {
        let pk = keys::credentials_pk(org);
        let by_id = keys::credential_id_sk(id_or_name);
        let by_name = keys::credential_name_sk(id_or_name);
        let mut keys_ = vec![key(pk.clone(), by_id.clone()), key(pk, by_name.clone())];
        let mut found: HashMap<String, Item> = HashMap::new();
        for round in 0..8u32 {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys_))
                .consistent_read(true)
                .build()
                .map_err(build_err)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .set_return_consumed_capacity(self.capacity.clone())
                .send()
                .await
                .map_err(backend)?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                if let Some(sk) = super::items::string_of(&item, attr::SK) {
                    found.insert(sk, item);
                }
            }
            keys_ = out
                .unprocessed_keys
                .and_then(|mut m| m.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if keys_.is_empty() {
                break;
            }
            if round == 7 {
                return Err(StoreError::Backend(
                    "credential lookup left unprocessed".into(),
                ));
            }
            super::expr::conflict_pause(round).await;
        }
        let item = found.remove(&by_id).or_else(|| found.remove(&by_name));
        item.map(|i| from_item::<CredentialItem>(i, "credential").map(CredentialItem::into_stored))
            .transpose()
    }

    pub(super) async fn list_credentials_(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Credential>> {
        let partition = keys::credentials_pk(org);
        let start = self.open_cursor(cursor, org, "credentials", attr::PK, &partition)?;
        let mut e = Expr::new();
        let key_condition = format!(
            "{} = {} AND begins_with({}, {})",
            e.n(attr::PK),
            e.v(s(&partition)),
            e.n(attr::SK),
            e.v(s("I#"))
        );
        let q = QuerySpec {
            index: None,
            key_condition,
            filter: None,
            expr: e,
            forward: false,
            consistent: false,
            projection: None,
        };
        let (found, next) = self
            .query_limited(&q, limit, start, &[attr::PK, attr::SK])
            .await?;
        let items = found
            .into_iter()
            .map(|i| {
                from_item::<CredentialItem>(i, "credential").map(|c| c.into_stored().credential)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items,
            next_cursor: self.seal_cursor(org, "credentials", next),
        })
    }

    pub(super) async fn delete_credential_(&self, org: &str, id: &str) -> StoreResult<bool> {
        let pk = keys::credentials_pk(org);
        let Some(stored) = self
            .get(key(pk.clone(), keys::credential_id_sk(id)), true)
            .await?
        else {
            return Ok(false);
        };
        let stored: CredentialItem = from_item(stored, "credential")?;
        let mut e = Expr::new();
        let cond = format!("attribute_exists({})", e.n(attr::PK));
        let mut e2 = Expr::new();
        let cond2 = format!(
            "attribute_not_exists({}) OR {} = {}",
            e2.n(attr::PK),
            e2.n(attr::ID),
            e2.v(s(id))
        );
        let ops = vec![
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(pk.clone(), keys::credential_id_sk(id))))
                        .condition_expression(cond)
                        .set_expression_attribute_names(e.names())
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
            TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(pk, keys::credential_name_sk(&stored.name))))
                        .condition_expression(cond2)
                        .set_expression_attribute_names(e2.names())
                        .set_expression_attribute_values(e2.values())
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
        ];
        match self.transact(ops).await? {
            Ok(()) => Ok(true),
            Err(reasons)
                if reasons
                    .first()
                    .is_some_and(|(c, _)| is_condition_failure(c)) =>
            {
                Ok(false)
            }
            Err(reasons) => Err(StoreError::Backend(format!(
                "delete_credential cancelled: {:?}",
                reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
            ))),
        }
    }

    pub(super) async fn get_circuit_(
        &self,
        org: &str,
        circuit: &str,
    ) -> StoreResult<Option<CircuitState>> {
        let item = self
            .get(key(keys::circuit_pk(org, circuit), keys::CIRCUIT_SK), true)
            .await?;
        item.map(|i| from_item::<CircuitItem>(i, "circuit").map(|c| c.state))
            .transpose()
    }

    pub(super) async fn put_circuit_(
        &self,
        org: &str,
        circuit: &str,
        state: &CircuitState,
    ) -> StoreResult<bool> {
        let Some(prev) = state.version.checked_sub(1) else {
            return Ok(false);
        };
        let item = to_item(
            &CircuitItem {
                pk: keys::circuit_pk(org, circuit),
                sk: keys::CIRCUIT_SK.into(),
                gsi1pk: keys::circuits_of(org),
                gsi1sk: circuit.to_string(),
                key: circuit.to_string(),
                state: state.clone(),
            },
            "circuit",
        )?;
        let mut e = Expr::new();
        let cond = if prev == 0 {
            format!(
                "attribute_not_exists({}) OR {} = {}",
                e.n(attr::PK),
                e.n(attr::VERSION),
                e.v(av(&0u64)?)
            )
        } else {
            format!("{} = {}", e.n(attr::VERSION), e.v(av(&prev)?))
        };
        self.put_if(item, cond, &e).await
    }

    /// The organization's circuits by key, from the `ByOrg` index (eventually consistent).
    pub(super) async fn list_circuits_(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<CircuitRecord>> {
        let partition = keys::circuits_of(org);
        let start = self.open_cursor(cursor, org, "circuits", attr::GSI1PK, &partition)?;
        let mut e = Expr::new();
        let key_condition = format!("{} = {}", e.n(attr::GSI1PK), e.v(s(&partition)));
        let q = QuerySpec {
            index: Some(keys::GSI_BY_ORG),
            key_condition,
            filter: None,
            expr: e,
            forward: true,
            consistent: false,
            projection: None,
        };
        let (found, next) = self
            .query_limited(
                &q,
                limit,
                start,
                &[attr::PK, attr::SK, attr::GSI1PK, attr::GSI1SK],
            )
            .await?;
        let items = found
            .into_iter()
            .map(|i| {
                from_item::<CircuitItem>(i, "circuit").map(|c| CircuitRecord {
                    key: c.key,
                    state: c.state,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items,
            next_cursor: self.seal_cursor(org, "circuits", next),
        })
    }
}
