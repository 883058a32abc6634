//! Composition (SPEC §8) on DynamoDB: a node's child tally (`E#T#{node}`: total,
//! concurrency, started) and callback (`E#B#{node}`), items beside the node's run in the
//! execution's partition; the count of children that ended (`done`, `failed`) in
//! [`keys::CHILD_COUNT_SHARDS`] partitions of its own, summed when the tally is read;
//! children read by id in batches.

use super::expr::Expr;
use super::items::{self, ExecutionItem, Item, attr, from_item, key, s, string_of, to_item};
use super::{DynamoStore, backend, keys};
use crate::model::*;
use crate::ports::*;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Tallies and callbacks live as long as an unfinished run would.
pub(super) const GRACE: Duration = Duration::from_secs(86_400);

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TallyItem {
    pk: String,
    sk: String,
    expires_at: i64,
    #[serde(flatten)]
    tally: ChildTally,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CallbackItem {
    pk: String,
    sk: String,
    expires_at: i64,
    #[serde(with = "super::items::json_text")]
    callback: ReceivedCallback,
}

fn n(v: u32) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoStore {
    pub(super) async fn get_executions_(
        &self,
        org: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Execution>> {
        let mut seen = std::collections::HashSet::new();
        let wanted: Vec<Item> = ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .map(|id| key(keys::execution_pk(org, id), keys::EXECUTION_SK.to_string()))
            .collect();
        self.get_many(wanted)
            .await?
            .into_iter()
            .map(|i| from_item::<ExecutionItem>(i, "execution").map(ExecutionItem::into_execution))
            .collect()
    }

    /// `SET deadline` and the unfinished index's sort key (which starts with the deadline),
    /// while the execution is not terminal.
    pub(super) async fn move_deadline_(
        &self,
        org: &str,
        id: &str,
        deadline: Timestamp,
    ) -> StoreResult<()> {
        let mut e = Expr::new();
        let update = format!(
            "SET {} = {}, {} = {}",
            e.n("deadline"),
            e.v(s(deadline.to_string())),
            e.n(attr::GSI3SK),
            e.v(s(keys::unfinished_sk(deadline, org, id)))
        );
        let cond = format!("attribute_exists({})", e.n(attr::GSI3PK));
        // Terminal meanwhile (no longer in the unfinished index): nothing to move.
        self.update_execution_if(org, id, update, cond, &e).await?;
        Ok(())
    }

    pub(super) async fn create_child_tally_(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        tally: &ChildTally,
    ) -> StoreResult<ChildTally> {
        let item = to_item(
            &TallyItem {
                pk: keys::execution_pk(org, execution_id),
                sk: keys::tally_sk(node_id),
                expires_at: self.expiry_from_now(GRACE),
                tally: *tally,
            },
            "child tally",
        )?;
        let mut e = Expr::new();
        let cond = format!("attribute_not_exists({})", e.n(attr::PK));
        self.put_if(item, cond, &e).await?;
        Ok(self
            .get_child_tally_(org, execution_id, node_id)
            .await?
            .unwrap_or(*tally))
    }

    /// The tally with the ended children's count shards added, in one strongly consistent
    /// `BatchGetItem`.
    pub(super) async fn get_child_tally_(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<ChildTally>> {
        let tally_pk = keys::execution_pk(org, execution_id);
        let mut wanted = vec![key(tally_pk.clone(), keys::tally_sk(node_id))];
        wanted.extend((0..keys::CHILD_COUNT_SHARDS).map(|shard| {
            key(
                keys::child_count_pk(org, execution_id, node_id, shard),
                keys::CHILD_COUNT_SK,
            )
        }));
        let mut tally = None;
        let (mut done, mut failed) = (0u32, 0u32);
        for item in self.get_many(wanted).await? {
            if string_of(&item, attr::PK).as_deref() == Some(tally_pk.as_str()) {
                tally = Some(from_item::<TallyItem>(item, "child tally")?.tally);
            } else {
                let count = |name| items::number_of(&item, name).unwrap_or(0) as u32;
                done = done.saturating_add(count("done"));
                failed = failed.saturating_add(count("failed"));
            }
        }
        Ok(tally.map(|mut t| {
            t.done = t.done.saturating_add(done);
            t.failed = t.failed.saturating_add(failed);
            t
        }))
    }

    /// Reads the tally and moves `started` over the free slots with a write conditional on
    /// `started` being what was read: each range goes to one caller; a caller that loses
    /// the race reads again.
    pub(super) async fn reserve_children_(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<(u32, u32)>> {
        for round in 0..8u32 {
            let Some(tally) = self.get_child_tally_(org, execution_id, node_id).await? else {
                return Ok(None);
            };
            let Some((from, until)) = tally.next_window() else {
                return Ok(None);
            };
            let mut e = Expr::new();
            let update = format!("SET {} = {}", e.n("started"), e.v(n(until)));
            let cond = format!("{} = {}", e.n("started"), e.v(n(from)));
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(
                    keys::execution_pk(org, execution_id),
                    keys::tally_sk(node_id),
                )))
                .update_expression(update)
                .condition_expression(cond)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .set_return_consumed_capacity(self.capacity.clone())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Some((from, until))),
                Err(err) => match err.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                        super::expr::conflict_pause(round).await;
                    }
                    _ => return Err(backend(err)),
                },
            }
        }
        Ok(None)
    }

    pub(super) async fn put_callback_(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        callback: &ReceivedCallback,
    ) -> StoreResult<bool> {
        let item = to_item(
            &CallbackItem {
                pk: keys::execution_pk(org, execution_id),
                sk: keys::callback_sk(node_id),
                expires_at: self.expiry_from_now(GRACE),
                callback: callback.clone(),
            },
            "callback",
        )?;
        let mut e = Expr::new();
        let cond = format!("attribute_not_exists({})", e.n(attr::PK));
        self.put_if(item, cond, &e).await
    }

    pub(super) async fn get_callback_(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<ReceivedCallback>> {
        self.get(
            key(
                keys::execution_pk(org, execution_id),
                keys::callback_sk(node_id),
            ),
            true,
        )
        .await?
        .map(|i| from_item::<CallbackItem>(i, "callback").map(|c| c.callback))
        .transpose()
    }
}
