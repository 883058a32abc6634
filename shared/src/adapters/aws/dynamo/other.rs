//! Logs, credentials and circuit breaker state.

use super::expr::{Expr, is_condition_failure};
use super::items::{
    CircuitItem, CredentialItem, Item, MAX_ITEM_BYTES, attr, av, from_item, item_size, key, s,
    to_item,
};
use super::{DynamoStore, QuerySpec, backend, keys};
use crate::adapters::log_batch::{self, LogBatch, LogPager};
use crate::model::*;
use crate::ports::*;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::{Delete, KeysAndAttributes, Put, TransactWriteItem};
use std::collections::HashMap;

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Log batches read per query page.
const LOG_BATCHES_PER_PAGE: usize = 50;

impl DynamoStore {
    /// Logs are stored in batches (`adapters::log_batch`): one item per batch the engine
    /// writes at once, `L#{first id}` in the execution's partition, put only when absent (a
    /// batch written again, whole or in part, changes nothing), concurrently when several.
    pub(super) async fn append_logs_(&self, logs: &[ExecutionLog]) -> StoreResult<()> {
        let batches = log_batch::batches(logs).map_err(build_err)?;
        let items = batches
            .iter()
            .map(|b| {
                let item = self.log_batch_item(b);
                let size = item_size(&item);
                if size > MAX_ITEM_BYTES {
                    return Err(StoreError::TooLarge(format!(
                        "a batch of log entries is {size} bytes packed; the limit is {MAX_ITEM_BYTES}"
                    )));
                }
                Ok(item)
            })
            .collect::<StoreResult<Vec<Item>>>()?;
        let puts = items.into_iter().map(|item| async move {
            let mut e = Expr::new();
            let cond = format!("attribute_not_exists({})", e.n(attr::PK));
            self.put_if(item, cond, &e).await
        });
        futures::future::try_join_all(puts).await?;
        Ok(())
    }

    fn log_batch_item(&self, b: &LogBatch) -> Item {
        HashMap::from([
            (
                attr::PK.to_string(),
                s(keys::execution_pk(&b.organization_id, &b.execution_id)),
            ),
            (attr::SK.to_string(), s(keys::log_sk(&b.first_id))),
            (
                attr::EXPIRES_AT.to_string(),
                AttributeValue::N(self.expiry(b.last_at).to_string()),
            ),
            (attr::LAST_LOG.to_string(), s(&b.last_id)),
            (
                attr::LOG_BODY.to_string(),
                AttributeValue::B(Blob::new(b.body.clone())),
            ),
        ])
    }

    /// The batches of an execution's logs from `from` (a first id; None: all), in order.
    async fn log_batches(
        &self,
        org: &str,
        execution_id: &str,
        from: Option<&str>,
        start: Option<Item>,
    ) -> StoreResult<(Vec<(String, Vec<u8>, String)>, Option<Item>)> {
        let mut e = Expr::new();
        let pk = format!(
            "{} = {}",
            e.n(attr::PK),
            e.v(s(keys::execution_pk(org, execution_id)))
        );
        let key_condition = match from {
            Some(from) => format!(
                "{pk} AND {} BETWEEN {} AND {}",
                e.n(attr::SK),
                e.v(s(keys::log_sk(from))),
                e.v(s(keys::LOG_END))
            ),
            None => format!(
                "{pk} AND begins_with({}, {})",
                e.n(attr::SK),
                e.v(s(keys::LOG_PREFIX))
            ),
        };
        let q = QuerySpec {
            index: None,
            key_condition,
            filter: None,
            expr: e,
            forward: true,
            consistent: true,
            projection: None,
        };
        let (items, next) = self
            .query_page(&q, start, Some(LOG_BATCHES_PER_PAGE))
            .await?;
        let batches = items
            .into_iter()
            .filter_map(|item| {
                let first = item
                    .get(attr::SK)
                    .and_then(|v| v.as_s().ok())
                    .and_then(|sk| sk.strip_prefix(keys::LOG_PREFIX))
                    .map(keys::unesc)?;
                let last = item
                    .get(attr::LAST_LOG)
                    .and_then(|v| v.as_s().ok())?
                    .clone();
                let body = item
                    .get(attr::LOG_BODY)
                    .and_then(|v| v.as_b().ok())?
                    .clone()
                    .into_inner();
                Some((first, body, last))
            })
            .collect();
        Ok((batches, next))
    }

    pub(super) async fn list_logs_(
        &self,
        org: &str,
        execution_id: &str,
        filter: &LogFilter,
        limit: usize,
    ) -> StoreResult<Page<ExecutionLog>> {
        let mut pager = LogPager::new(filter, limit.clamp(1, 10_000));
        let from = filter.after.as_deref().and_then(log_batch::lower_bound);
        let after = filter.after.as_deref().unwrap_or("");
        let mut start = None;
        'pages: loop {
            let (batches, next) = self
                .log_batches(org, execution_id, from.as_deref(), start)
                .await?;
            for (first_id, body, last_id) in batches {
                if !pager.wants(&first_id) {
                    break 'pages;
                }
                if last_id.as_str() <= after {
                    continue;
                }
                match log_batch::decode(org, execution_id, &first_id, &body) {
                    Ok(logs) => pager.add(logs),
                    Err(e) => {
                        tracing::warn!(execution_id, error = %e, "unreadable log batch left out")
                    }
                }
            }
            match next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        Ok(pager.finish())
    }

    /// The save policy `none` on the logs: only `warn` and `error` entries stay.
    pub(super) async fn drop_info_logs(&self, org: &str, execution_id: &str) -> StoreResult<()> {
        let mut start = None;
        loop {
            let (batches, next) = self.log_batches(org, execution_id, None, start).await?;
            for (first_id, body, _) in batches {
                let kept = log_batch::retain(
                    org,
                    execution_id,
                    &first_id,
                    &body,
                    log_batch::kept_without_data,
                )
                .map_err(build_err)?;
                match kept {
                    // The first entry can go: the batch then has another key.
                    Some(b) if b.first_id == first_id => {
                        self.put_item(self.log_batch_item(&b)).await?;
                    }
                    Some(b) => {
                        self.put_item(self.log_batch_item(&b)).await?;
                        self.delete_item(
                            keys::execution_pk(org, execution_id),
                            keys::log_sk(&first_id),
                        )
                        .await?;
                    }
                    None => {
                        self.delete_item(
                            keys::execution_pk(org, execution_id),
                            keys::log_sk(&first_id),
                        )
                        .await?;
                    }
                }
            }
            match next {
                Some(next) => start = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn put_item(&self, item: Item) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_return_consumed_capacity(self.capacity.clone())
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn delete_item(&self, pk: String, sk: String) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .set_return_consumed_capacity(self.capacity.clone())
            .send()
            .await
            .map_err(backend)?;
        Ok(())
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
        // The index projects keys and filter attributes only: the circuits are read by key.
        let items = self
            .read_whole(&found)
            .await?
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
