//! Concurrency gates (SPEC §9) on DynamoDB. One partition per gate, `O#{org}#G#{workflow}#{key}`:
//! - `G`: the counters `running` (slots held) and `waiting` (the line's length);
//! - `S#{executionId}`: a slot held (its existence makes taking and giving it back happen once);
//! - `Q#{createdAt}#{executionId}`: a place in line, in creation order.
//!
//! Taking a slot is one transaction: the slot item (must not exist) and `running + 1` on the
//! gate, conditional on `running < limit` and nobody waiting. Promoting the first in line is
//! one transaction too (its place deleted, its slot put, `running + 1`, `waiting - 1`, with
//! the same condition), so `running` never passes the limit. The gate item is every start's
//! and end's write: one gate takes about 250 starts a second (a transaction costs 2 write
//! units per item, and one item takes 1,000 units a second).

use super::expr::{Expr, is_condition_failure};
use super::items::{Item, attr, key, s, string_of};
use super::{DynamoStore, QuerySpec, keys};
use crate::model::Timestamp;
use crate::ports::{
    Admission, Debounced, Gate, StoreError, StoreResult, call_slot, throttled_start_time,
};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

/// Compare-and-set rounds of a throttle assignment before giving up (others kept winning).
const THROTTLE_ROUNDS: usize = 50;

/// Promotions tried in one call before leaving the rest to the next one.
const PROMOTE_ROUNDS: usize = 64;

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn n(x: i64) -> AttributeValue {
    AttributeValue::N(x.to_string())
}

fn number(item: &Item, name: &str) -> i64 {
    match item.get(name) {
        Some(AttributeValue::N(x)) => x.parse().unwrap_or(0),
        _ => 0,
    }
}

const GATE_SK: &str = "G";

fn slot_sk(execution_id: &str) -> String {
    format!("S#{}", keys::esc(execution_id))
}

fn queue_sk(created_at: Timestamp, execution_id: &str) -> String {
    format!("Q#{created_at}#{}", keys::esc(execution_id))
}

impl DynamoStore {
    fn gate_pk(gate: &Gate) -> String {
        keys::gate_pk(&gate.org, &gate.workflow_id, &gate.key)
    }

    fn put_new(&self, item: Item) -> StoreResult<TransactWriteItem> {
        let mut e = Expr::new();
        let cond = format!("attribute_not_exists({})", e.n(attr::PK));
        Ok(TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(cond)
                    .set_expression_attribute_names(e.names())
                    .build()
                    .map_err(build_err)?,
            )
            .build())
    }

    fn delete_existing(&self, item_key: Item) -> StoreResult<TransactWriteItem> {
        let mut e = Expr::new();
        let cond = format!("attribute_exists({})", e.n(attr::PK));
        Ok(TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(item_key))
                    .condition_expression(cond)
                    .set_expression_attribute_names(e.names())
                    .build()
                    .map_err(build_err)?,
            )
            .build())
    }

    /// `ADD running :r, waiting :w` on the gate; with `limit`, only while `running < limit`
    /// (and, `alone`, nobody waits).
    fn count_on_gate(
        &self,
        pk: &str,
        running: i64,
        waiting: i64,
        limit: Option<(u32, bool)>,
    ) -> StoreResult<TransactWriteItem> {
        let mut e = Expr::new();
        let update = format!(
            "ADD {} {}, {} {}",
            e.n("running"),
            e.v(n(running)),
            e.n("waiting"),
            e.v(n(waiting))
        );
        let mut update_builder = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk.to_string(), GATE_SK)))
            .update_expression(update);
        if let Some((limit, alone)) = limit {
            let mut cond = format!(
                "(attribute_not_exists({r}) OR {r} < {l})",
                r = e.n("running"),
                l = e.v(n(i64::from(limit)))
            );
            if alone {
                cond.push_str(&format!(
                    " AND (attribute_not_exists({w}) OR {w} <= {z})",
                    w = e.n("waiting"),
                    z = e.v(n(0))
                ));
            }
            update_builder = update_builder.condition_expression(cond);
        }
        Ok(TransactWriteItem::builder()
            .update(
                update_builder
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .build()
                    .map_err(build_err)?,
            )
            .build())
    }

    fn slot_item(pk: &str, execution_id: &str) -> Item {
        let mut item = key(pk.to_string(), slot_sk(execution_id));
        item.insert("executionId".into(), s(execution_id));
        item
    }

    pub(super) async fn admit_(
        &self,
        gate: &Gate,
        limit: u32,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<Admission> {
        let pk = Self::gate_pk(gate);
        if self
            .get(key(pk.clone(), slot_sk(execution_id)), true)
            .await?
            .is_some()
        {
            return Ok(Admission::Holds);
        }
        let place = key(pk.clone(), queue_sk(created_at, execution_id));
        if self.get(place.clone(), true).await?.is_some() {
            return Ok(Admission::Queued);
        }
        // A free slot and nobody ahead: take it.
        let take = vec![
            self.put_new(Self::slot_item(&pk, execution_id))?,
            self.count_on_gate(&pk, 1, 0, Some((limit, true)))?,
        ];
        match self.transact(take).await? {
            Ok(()) => return Ok(Admission::Holds),
            Err(reasons) => {
                if reasons
                    .first()
                    .is_some_and(|(c, _)| is_condition_failure(c))
                {
                    return Ok(Admission::Holds);
                }
                if !reasons.get(1).is_some_and(|(c, _)| is_condition_failure(c)) {
                    return Err(StoreError::Backend(format!(
                        "admit cancelled: {:?}",
                        reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
                    )));
                }
            }
        }
        // Full, or others wait: get in line.
        let mut place_item = place;
        place_item.insert("executionId".into(), s(execution_id));
        let queue = vec![
            self.put_new(place_item)?,
            self.count_on_gate(&pk, 0, 1, None)?,
        ];
        match self.transact(queue).await? {
            Ok(()) => Ok(Admission::Queued),
            Err(reasons)
                if reasons
                    .first()
                    .is_some_and(|(c, _)| is_condition_failure(c)) =>
            {
                Ok(Admission::Queued)
            }
            Err(reasons) => Err(StoreError::Backend(format!(
                "queueing cancelled: {:?}",
                reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
            ))),
        }
    }

    pub(super) async fn leave_(
        &self,
        gate: &Gate,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<()> {
        let pk = Self::gate_pk(gate);
        let give_back = vec![
            self.delete_existing(key(pk.clone(), slot_sk(execution_id)))?,
            self.count_on_gate(&pk, -1, 0, None)?,
        ];
        match self.transact(give_back).await? {
            Ok(()) => return Ok(()),
            Err(reasons)
                if reasons
                    .first()
                    .is_some_and(|(c, _)| is_condition_failure(c)) => {}
            Err(reasons) => {
                return Err(StoreError::Backend(format!(
                    "leave cancelled: {:?}",
                    reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
                )));
            }
        }
        // No slot: its place in line, if it has one.
        let out_of_line = vec![
            self.delete_existing(key(pk.clone(), queue_sk(created_at, execution_id)))?,
            self.count_on_gate(&pk, 0, -1, None)?,
        ];
        match self.transact(out_of_line).await? {
            Ok(()) => Ok(()),
            Err(reasons)
                if reasons
                    .first()
                    .is_some_and(|(c, _)| is_condition_failure(c)) =>
            {
                Ok(())
            }
            Err(reasons) => Err(StoreError::Backend(format!(
                "leave cancelled: {:?}",
                reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
            ))),
        }
    }

    /// The first place in line (strongly consistent).
    async fn first_in_line(&self, pk: &str) -> StoreResult<Option<Item>> {
        let mut e = Expr::new();
        let key_condition = format!(
            "{} = {} AND begins_with({}, {})",
            e.n(attr::PK),
            e.v(s(pk)),
            e.n(attr::SK),
            e.v(s("Q#"))
        );
        let q = QuerySpec {
            index: None,
            key_condition,
            filter: None,
            expr: e,
            forward: true,
            consistent: true,
            projection: None,
        };
        let (items, _) = self.query_page(&q, None, Some(1)).await?;
        Ok(items.into_iter().next())
    }

    pub(super) async fn promote_(&self, gate: &Gate, limit: u32) -> StoreResult<Vec<String>> {
        let pk = Self::gate_pk(gate);
        let mut promoted = Vec::new();
        for _ in 0..PROMOTE_ROUNDS {
            let Some(counters) = self.get(key(pk.clone(), GATE_SK), true).await? else {
                break;
            };
            if number(&counters, "running") >= i64::from(limit) || number(&counters, "waiting") <= 0
            {
                break;
            }
            let Some(first) = self.first_in_line(&pk).await? else {
                break;
            };
            let (Some(sk), Some(id)) = (
                string_of(&first, attr::SK),
                string_of(&first, "executionId"),
            ) else {
                break;
            };
            let moves = vec![
                self.delete_existing(key(pk.clone(), sk))?,
                self.put_new(Self::slot_item(&pk, &id))?,
                self.count_on_gate(&pk, 1, -1, Some((limit, false)))?,
            ];
            match self.transact(moves).await? {
                Ok(()) => promoted.push(id),
                // Another caller moved the line or took the slot: look again.
                Err(reasons) if reasons.iter().any(|(c, _)| is_condition_failure(c)) => {}
                Err(reasons) => {
                    return Err(StoreError::Backend(format!(
                        "promotion cancelled: {:?}",
                        reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
                    )));
                }
            }
        }
        Ok(promoted)
    }

    pub(super) async fn holds_slot_(&self, gate: &Gate, execution_id: &str) -> StoreResult<bool> {
        Ok(self
            .get(key(Self::gate_pk(gate), slot_sk(execution_id)), true)
            .await?
            .is_some())
    }

    pub(super) async fn gate_holders_(&self, gate: &Gate) -> StoreResult<Vec<String>> {
        let pk = Self::gate_pk(gate);
        let mut e = Expr::new();
        let key_condition = format!(
            "{} = {} AND begins_with({}, {})",
            e.n(attr::PK),
            e.v(s(&pk)),
            e.n(attr::SK),
            e.v(s("S#"))
        );
        let q = QuerySpec {
            index: None,
            key_condition,
            filter: None,
            expr: e,
            forward: true,
            consistent: true,
            projection: None,
        };
        Ok(self
            .query_all(&q)
            .await?
            .iter()
            .filter_map(|i| string_of(i, "executionId"))
            .collect())
    }

    // ---- throttle: one item per key, `T`: `starts` (JSON `[[millis, executionId], …]`, the
    // assignments of the last period and after) and `version` (compare-and-set) ----------

    async fn throttle_state(&self, pk: &str) -> StoreResult<(Vec<(i64, String)>, i64)> {
        let Some(item) = self.get(key(pk.to_string(), "T"), true).await? else {
            return Ok((Vec::new(), 0));
        };
        let starts = string_of(&item, "starts")
            .and_then(|text| serde_json::from_str::<Vec<(i64, String)>>(&text).ok())
            .unwrap_or_default();
        Ok((starts, number(&item, attr::VERSION)))
    }

    /// Writes the times of a throttle or rate-limit item if it is still at `version`.
    async fn put_throttle_state(
        &self,
        pk: &str,
        times: &[(i64, String)],
        version: i64,
    ) -> StoreResult<bool> {
        let mut item = key(pk.to_string(), "T");
        let text = serde_json::to_string(times).map_err(|e| StoreError::Backend(e.to_string()))?;
        item.insert("starts".into(), s(text));
        item.insert(attr::VERSION.into(), n(version + 1));
        let mut e = Expr::new();
        let cond = format!(
            "attribute_not_exists({}) OR {} = {}",
            e.n(attr::PK),
            e.n(attr::VERSION),
            e.v(n(version))
        );
        self.put_if(item, cond, &e).await
    }

    pub(super) async fn throttle_(
        &self,
        gate: &Gate,
        limit: u32,
        period_ms: u64,
        execution_id: &str,
        now: Timestamp,
    ) -> StoreResult<Timestamp> {
        let pk = keys::throttle_pk(&gate.org, &gate.workflow_id, &gate.key);
        for _ in 0..THROTTLE_ROUNDS {
            let (mut starts, version) = self.throttle_state(&pk).await?;
            if let Some((at, _)) = starts.iter().find(|(_, id)| id == execution_id) {
                return Ok(Timestamp::from_millis(*at));
            }
            let period = i64::try_from(period_ms).unwrap_or(i64::MAX);
            starts.retain(|(at, _)| *at >= now.millis().saturating_sub(period));
            let times: Vec<Timestamp> = starts
                .iter()
                .map(|(at, _)| Timestamp::from_millis(*at))
                .collect();
            let at = throttled_start_time(&times, limit, period_ms, now);
            starts.push((at.millis(), execution_id.to_string()));
            if self.put_throttle_state(&pk, &starts, version).await? {
                return Ok(at);
            }
        }
        Err(StoreError::Conflict(
            "the throttle kept changing; try again".into(),
        ))
    }

    pub(super) async fn take_call_(
        &self,
        gate: &Gate,
        limit: u32,
        period_ms: u64,
        now: Timestamp,
    ) -> StoreResult<Option<Timestamp>> {
        let pk = keys::throttle_pk(&gate.org, &gate.workflow_id, &gate.key);
        for _ in 0..THROTTLE_ROUNDS {
            let (mut calls, version) = self.throttle_state(&pk).await?;
            let period = i64::try_from(period_ms).unwrap_or(i64::MAX);
            calls.retain(|(at, _)| *at > now.millis().saturating_sub(period));
            let times: Vec<Timestamp> = calls
                .iter()
                .map(|(at, _)| Timestamp::from_millis(*at))
                .collect();
            if let Some(at) = call_slot(&times, limit, period_ms, now) {
                return Ok(Some(at));
            }
            calls.push((now.millis(), crate::model::new_id()));
            if self.put_throttle_state(&pk, &calls, version).await? {
                return Ok(None);
            }
        }
        Err(StoreError::Conflict(
            "the rate limit kept changing; try again".into(),
        ))
    }

    pub(super) async fn throttled_start_(
        &self,
        gate: &Gate,
        execution_id: &str,
    ) -> StoreResult<Option<Timestamp>> {
        let pk = keys::throttle_pk(&gate.org, &gate.workflow_id, &gate.key);
        let (starts, _) = self.throttle_state(&pk).await?;
        Ok(starts
            .into_iter()
            .find(|(_, id)| id == execution_id)
            .map(|(at, _)| Timestamp::from_millis(at)))
    }

    // ---- debounce: one item per key, `D`: `executionId` and `order` (`{createdAt}#{id}`) --

    pub(super) async fn debounce_(
        &self,
        gate: &Gate,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<Debounced> {
        let pk = keys::debounce_pk(&gate.org, &gate.workflow_id, &gate.key);
        let order = format!("{created_at}#{execution_id}");
        for _ in 0..THROTTLE_ROUNDS {
            let current = self.get(key(pk.clone(), "D"), true).await?;
            let latest = current.as_ref().and_then(|i| string_of(i, "executionId"));
            let latest_order = current.as_ref().and_then(|i| string_of(i, "order"));
            match (&latest, &latest_order) {
                (Some(id), _) if id == execution_id => {
                    return Ok(Debounced::Latest { replaced: None });
                }
                (Some(id), Some(o)) if *o > order => {
                    return Ok(Debounced::Superseded { by: id.clone() });
                }
                _ => {}
            }
            let mut item = key(pk.clone(), "D");
            item.insert("executionId".into(), s(execution_id));
            item.insert("order".into(), s(&order));
            let mut e = Expr::new();
            let cond = match &latest_order {
                None => format!("attribute_not_exists({})", e.n(attr::PK)),
                Some(o) => format!("{} = {}", e.n("order"), e.v(s(o))),
            };
            if self.put_if(item, cond, &e).await? {
                return Ok(Debounced::Latest { replaced: latest });
            }
        }
        Err(StoreError::Conflict(
            "the debounce kept changing; try again".into(),
        ))
    }

    pub(super) async fn latest_debounced_(&self, gate: &Gate) -> StoreResult<Option<String>> {
        let pk = keys::debounce_pk(&gate.org, &gate.workflow_id, &gate.key);
        Ok(self
            .get(key(pk, "D"), true)
            .await?
            .and_then(|i| string_of(&i, "executionId")))
    }
}
