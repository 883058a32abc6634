//! Executions: creation with idempotency keys, state reads, transitions, listings, statistics.

use super::expr::{Expr, is_condition_failure};
use super::items::{
    ExecutionItem, IdempotencyItem, Item, attr, from_item, key, run_from_item, s, string_of,
    to_item,
};
use super::{DynamoStore, QuerySpec, backend, keys, stats};
use crate::model::*;
use crate::ports::*;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

pub(super) fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// One strongly consistent Query of the sort keys `lo..=hi` per partition (the shards of
/// sharded counters).
fn sort_key_range_queries(
    partitions: impl Iterator<Item = String>,
    lo: &str,
    hi: &str,
) -> Vec<QuerySpec> {
    partitions
        .map(|pk| {
            let mut e = Expr::new();
            let key_condition = format!(
                "{} = {} AND {} BETWEEN {} AND {}",
                e.n(attr::PK),
                e.v(s(pk)),
                e.n(attr::SK),
                e.v(s(lo)),
                e.v(s(hi))
            );
            QuerySpec {
                index: None,
                key_condition,
                filter: None,
                expr: e,
                forward: true,
                consistent: true,
                projection: None,
            }
        })
        .collect()
}

impl DynamoStore {
    fn execution_item(&self, exec: &Execution) -> StoreResult<Item> {
        let done_at = exec.completed_at.unwrap_or(exec.created_at);
        to_item(&ExecutionItem::new(exec, self.expiry(done_at)), "execution")
    }

    /// The `ADD` of the statistics counters of `exec`'s day, as a transaction item.
    fn stats_update(
        &self,
        exec: &Execution,
        old: Option<ExecutionStatus>,
    ) -> StoreResult<Option<TransactWriteItem>> {
        let mut e = Expr::new();
        let Some(update_expr) = stats::delta(&mut e, exec, old) else {
            return Ok(None);
        };
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some({
                let (pk, sk) = keys::stats_item(
                    &exec.organization_id,
                    &stats::day(exec.created_at),
                    &exec.id,
                );
                key(pk, sk)
            }))
            .update_expression(update_expr)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(build_err)?;
        Ok(Some(TransactWriteItem::builder().update(update).build()))
    }

    /// The `ADD`s of the workflow's trend counters (hour and day of `createdAt`) when `exec`
    /// becomes terminal (from `old`, None: created so), as transaction items.
    fn trend_updates(
        &self,
        exec: &Execution,
        old: Option<ExecutionStatus>,
    ) -> StoreResult<Vec<TransactWriteItem>> {
        if old.is_some_and(|o| o.is_terminal()) {
            return Ok(Vec::new());
        }
        let Some(counters) = TrendCounters::of(exec.status, exec.duration) else {
            return Ok(Vec::new());
        };
        TrendInterval::ALL
            .iter()
            .map(|interval| {
                let mut e = Expr::new();
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some({
                        let (pk, sk) = keys::trend_item(
                            &exec.organization_id,
                            &exec.workflow_id,
                            *interval,
                            interval.start_of(exec.created_at),
                            &exec.id,
                        );
                        key(pk, sk)
                    }))
                    .update_expression(stats::trend_add(&mut e, &counters))
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .build()
                    .map_err(build_err)?;
                Ok(TransactWriteItem::builder().update(update).build())
            })
            .collect()
    }

    /// The workflow's `executionCount` and `lastExecutedAt`, after the execution was created:
    /// an atomic `ADD` on the workflow's counter shard of this execution (see
    /// `keys::workflow_counter_item`), outside the creation transaction so that a busy
    /// workflow's creations never conflict; a failure is logged only (the count is
    /// informational).
    async fn bump_workflow(&self, exec: &Execution) {
        let mut e = Expr::new();
        let update_expr = format!(
            "ADD {} {} SET {} = {}",
            e.n(attr::EXECUTION_COUNT),
            e.v(AttributeValue::N("1".into())),
            e.n(attr::LAST_EXECUTED_AT),
            e.v(s(exec.created_at.to_string()))
        );
        let (pk, sk) =
            keys::workflow_counter_item(&exec.organization_id, &exec.workflow_id, &exec.id);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression(update_expr)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .set_return_consumed_capacity(self.capacity.clone())
            .send()
            .await;
        if let Err(err) = result {
            tracing::warn!(
                workflow_id = %exec.workflow_id,
                error = %backend(err),
                "could not bump the workflow's executionCount"
            );
        }
    }

    pub(super) async fn create_execution_(
        &self,
        exec: &Execution,
        idempotency_key: Option<&str>,
        key_valid_after: Timestamp,
    ) -> StoreResult<Created> {
        let org = &exec.organization_id;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut ops = Vec::new();
            // 0: the execution itself.
            let mut e = Expr::new();
            let cond = format!("attribute_not_exists({})", e.n(attr::PK));
            ops.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(self.execution_item(exec)?))
                            .condition_expression(cond)
                            .set_expression_attribute_names(e.names())
                            .build()
                            .map_err(build_err)?,
                    )
                    .build(),
            );
            // 1: the idempotency key, if any: free, or last used before the window.
            let key_index = ops.len();
            if let Some(k) = idempotency_key {
                let item = IdempotencyItem {
                    pk: keys::idempotency_pk(org, k),
                    sk: keys::IDEMPOTENCY_SK.into(),
                    execution_id: exec.id.clone(),
                    used_at: exec.created_at,
                    expires_at: self.expiry(exec.created_at),
                };
                let mut e = Expr::new();
                let cond = format!(
                    "attribute_not_exists({}) OR {} < {}",
                    e.n(attr::PK),
                    e.n(attr::USED_AT),
                    e.v(s(key_valid_after.to_string()))
                );
                ops.push(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&self.table)
                                .set_item(Some(to_item(&item, "idempotency key")?))
                                .condition_expression(cond)
                                .set_expression_attribute_names(e.names())
                                .set_expression_attribute_values(e.values())
                                .return_values_on_condition_check_failure(
                                    ReturnValuesOnConditionCheckFailure::AllOld,
                                )
                                .build()
                                .map_err(build_err)?,
                        )
                        .build(),
                );
            }
            if let Some(op) = self.stats_update(exec, None)? {
                ops.push(op);
            }
            ops.extend(self.trend_updates(exec, None)?);
            let reasons = match self.transact(ops).await? {
                Ok(()) => {
                    self.bump_workflow(exec).await;
                    return Ok(Created::Created(exec.clone()));
                }
                Err(reasons) => reasons,
            };
            let failed = |i: usize| reasons.get(i).is_some_and(|(c, _)| is_condition_failure(c));
            if idempotency_key.is_some() && failed(key_index) {
                let holder = reasons
                    .get(key_index)
                    .and_then(|(_, item)| item.as_ref())
                    .and_then(|i| string_of(i, attr::EXECUTION_ID));
                let existing = match holder {
                    Some(id) => self.get_execution_(org, &id).await?,
                    None => None,
                };
                match existing {
                    Some(found) => return Ok(Created::Existing(found)),
                    // The key's execution expired or the key changed meanwhile: try again.
                    None if attempts < 3 => continue,
                    None => {
                        return Err(StoreError::Backend(
                            "idempotency key refers to a missing execution".into(),
                        ));
                    }
                }
            }
            if failed(0) {
                return Err(StoreError::Conflict(format!(
                    "Execution {} already exists",
                    exec.id
                )));
            }
            return Err(StoreError::Backend(format!(
                "create_execution cancelled: {:?}",
                reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
            )));
        }
    }

    pub(super) async fn get_execution_(
        &self,
        org: &str,
        id: &str,
    ) -> StoreResult<Option<Execution>> {
        let item = self
            .get(key(keys::execution_pk(org, id), keys::EXECUTION_SK), true)
            .await?;
        item.map(|i| from_item::<ExecutionItem>(i, "execution").map(ExecutionItem::into_execution))
            .transpose()
    }

    /// One strongly consistent Query: the execution item (`E`) and its runs (`E#N#…`).
    pub(super) async fn get_execution_state_(
        &self,
        org: &str,
        id: &str,
    ) -> StoreResult<Option<ExecutionState>> {
        let mut e = Expr::new();
        let key_condition = format!(
            "{} = {} AND begins_with({}, {})",
            e.n(attr::PK),
            e.v(s(keys::execution_pk(org, id))),
            e.n(attr::SK),
            e.v(s(keys::EXECUTION_SK))
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
        let mut execution = None;
        let mut node_runs = Vec::new();
        for item in self.query_all(&q).await? {
            let sk = string_of(&item, attr::SK).unwrap_or_default();
            if sk == keys::EXECUTION_SK {
                execution = Some(from_item::<ExecutionItem>(item, "execution")?.into_execution());
            } else if sk.starts_with(keys::RUN_PREFIX) {
                node_runs.push(run_from_item(item)?);
            }
        }
        Ok(execution.map(|execution| ExecutionState {
            execution,
            node_runs,
        }))
    }

    /// One transaction: the execution's put conditional on `status = old`, and the counters.
    async fn transition_from(&self, exec: &Execution, old: ExecutionStatus) -> StoreResult<bool> {
        let item = self.execution_item(exec)?;
        let mut e = Expr::new();
        let cond = format!("{} = {}", e.n(attr::STATUS), e.v(s(old.as_str())));
        let Some(counters) = self.stats_update(exec, Some(old))? else {
            // Same status: no counter moves, a plain conditional put.
            return self.put_if(item, cond, &e).await;
        };
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(build_err)?;
        let mut ops = vec![TransactWriteItem::builder().put(put).build(), counters];
        ops.extend(self.trend_updates(exec, Some(old))?);
        if let Some(count) = self.count_child(exec).await? {
            ops.push(count);
        }
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
                "transition cancelled: {:?}",
                reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
            ))),
        }
    }

    /// A child's terminal status counted in its parent node's tally (when it keeps one), as
    /// an item of the status change's transaction (which happens once).
    async fn count_child(&self, exec: &Execution) -> StoreResult<Option<TransactWriteItem>> {
        let (Some(parent), Some(node)) = (&exec.parent_execution_id, &exec.parent_node_id) else {
            return Ok(None);
        };
        if !exec.status.is_terminal() {
            return Ok(None);
        }
        let org = &exec.organization_id;
        let tally_key = key(keys::execution_pk(org, parent), keys::tally_sk(node));
        if self.get(tally_key.clone(), true).await?.is_none() {
            // Detached (`wait: false`): nothing waits for it.
            return Ok(None);
        }
        let mut e = Expr::new();
        let failed = i64::from(exec.status != ExecutionStatus::Success);
        let update = format!(
            "ADD {} {}, {} {} SET {} = if_not_exists({}, {})",
            e.n("done"),
            e.v(AttributeValue::N("1".into())),
            e.n("failed"),
            e.v(AttributeValue::N(failed.to_string())),
            e.n(attr::EXPIRES_AT),
            e.n(attr::EXPIRES_AT),
            e.v(AttributeValue::N(
                self.expiry_from_now(super::compose::GRACE).to_string()
            ))
        );
        // Counted in the child's shard of the parent node's count, not in the tally item.
        let (pk, sk) = keys::child_count_item(org, parent, node, &exec.id);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .update_expression(update)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(build_err)?;
        Ok(Some(TransactWriteItem::builder().update(update).build()))
    }

    pub(super) async fn transition_execution_(
        &self,
        exec: &Execution,
        from: &[ExecutionStatus],
    ) -> StoreResult<bool> {
        if let [only] = from {
            return self.transition_from(exec, *only).await;
        }
        // Several possible origins: read which one it is, then move from exactly that one
        // (so the counters move from the right status); retry if it changed in between.
        for _ in 0..5 {
            let Some(stored) = self.get_execution_(&exec.organization_id, &exec.id).await? else {
                return Ok(false);
            };
            if !from.contains(&stored.status) {
                return Ok(false);
            }
            if self.transition_from(exec, stored.status).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The organization's (or a workflow's) executions, newest first: every listing shard
    /// queried (16 at a time, each for up to a page of matches), the results merged by
    /// creation time, the page read whole by key (the indexes project only what the filters
    /// need). The cursor is the sort key of the last execution handed out: every shard goes on
    /// below it. A shard that found more than a page stops the merge at its last entry, so no
    /// execution is skipped.
    pub(super) async fn list_executions_(
        &self,
        org: &str,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Execution>> {
        const BEFORE: &str = "before";
        let limit = limit.max(1);
        let (index, pk_attr, sk_attr, query) = match &filter.workflow_id {
            Some(wf) => (
                keys::GSI_BY_PARENT,
                attr::GSI2PK,
                attr::GSI2SK,
                format!("executions:{wf}"),
            ),
            None => (
                keys::GSI_BY_ORG,
                attr::GSI1PK,
                attr::GSI1SK,
                "executions".to_string(),
            ),
        };
        let partition = |shard: u32| match &filter.workflow_id {
            Some(wf) => keys::executions_of_workflow(org, wf, shard),
            None => keys::executions_of(org, shard),
        };
        // The cursor is bound to every filter: a cursor of another query is refused.
        let query = format!(
            "{query}:{}:{}:{}:{}:{}",
            filter.parent_execution_id.as_deref().unwrap_or(""),
            filter.status.map(|s| s.as_str()).unwrap_or(""),
            filter.mode.map(|m| m.as_str()).unwrap_or(""),
            filter
                .start_date
                .map(|t| t.millis().to_string())
                .unwrap_or_default(),
            filter
                .end_date
                .map(|t| t.millis().to_string())
                .unwrap_or_default(),
        );
        let before = match cursor {
            None => None,
            Some(token) => Some(
                self.cursors
                    .decode(token, org, &query)?
                    .remove(BEFORE)
                    .ok_or(StoreError::InvalidCursor)?,
            ),
        };
        if matches!((filter.start_date, filter.end_date), (Some(a), Some(b)) if a > b) {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        // createdAt bounds on the sort key `{createdAt}#{id}` ('$' sorts right after '#'),
        // and the cursor's position (inclusive in the condition, dropped below).
        let lo = filter.start_date.map(|a| a.to_string());
        let hi = match (filter.end_date.map(|b| format!("{b}$")), before.clone()) {
            (Some(b), Some(c)) => Some(b.min(c)),
            (b, c) => b.or(c),
        };
        let queries: Vec<QuerySpec> = (0..keys::LISTING_SHARDS)
            .map(|shard| {
                let mut e = Expr::new();
                let mut key_condition = format!("{} = {}", e.n(pk_attr), e.v(s(partition(shard))));
                match (&lo, &hi) {
                    (Some(a), Some(b)) => key_condition.push_str(&format!(
                        " AND {} BETWEEN {} AND {}",
                        e.n(sk_attr),
                        e.v(s(a)),
                        e.v(s(b))
                    )),
                    (Some(a), None) => {
                        key_condition.push_str(&format!(" AND {} >= {}", e.n(sk_attr), e.v(s(a))))
                    }
                    (None, Some(b)) => {
                        key_condition.push_str(&format!(" AND {} <= {}", e.n(sk_attr), e.v(s(b))))
                    }
                    (None, None) => {}
                }
                let mut filters = Vec::new();
                if let Some(parent) = &filter.parent_execution_id {
                    filters.push(format!("{} = {}", e.n("parentExecutionId"), e.v(s(parent))));
                }
                if let Some(status) = filter.status {
                    filters.push(format!(
                        "{} = {}",
                        e.n(attr::STATUS),
                        e.v(s(status.as_str()))
                    ));
                }
                if let Some(mode) = filter.mode {
                    filters.push(format!("{} = {}", e.n(attr::MODE), e.v(s(mode.as_str()))));
                }
                QuerySpec {
                    index: Some(index),
                    key_condition,
                    filter: (!filters.is_empty()).then(|| filters.join(" AND ")),
                    expr: e,
                    forward: false,
                    consistent: false,
                    projection: None,
                }
            })
            .collect();
        // One more than a page per shard: the cursor's own entry may be among them.
        let key_attrs = [attr::PK, attr::SK, pk_attr, sk_attr];
        let shards = self
            .query_each(queries, |q| async move {
                self.query_limited(&q, limit + 1, None, &key_attrs).await
            })
            .await?;
        let sort_key = |i: &Item| string_of(i, sk_attr).unwrap_or_default();
        // A shard with more to read is complete only down to where it stopped.
        let cut = shards
            .iter()
            .filter_map(|(_, next)| next.as_ref()?.get(sk_attr).cloned())
            .max();
        let mut entries: Vec<Item> = shards
            .into_iter()
            .flat_map(|(items, _)| items)
            .filter(|i| {
                let sk = sort_key(i);
                before.as_ref() != Some(&sk) && cut.as_ref().is_none_or(|c| sk >= *c)
            })
            .collect();
        entries.sort_by_key(|i| std::cmp::Reverse(sort_key(i)));
        let more = entries.len() > limit || cut.is_some();
        entries.truncate(limit);
        let next = more
            .then(|| entries.last().map(sort_key).or(cut))
            .flatten()
            .map(|sk| crate::adapters::aws::CursorKey::from([(BEFORE.to_string(), sk)]));
        let items = self
            .read_whole(&entries)
            .await?
            .into_iter()
            .map(|i| from_item::<ExecutionItem>(i, "execution").map(ExecutionItem::into_execution))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items,
            next_cursor: self.seal_cursor(org, &query, next),
        })
    }

    pub(super) async fn execution_statistics_(
        &self,
        org: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> StoreResult<ExecutionStatistics> {
        let (lo, hi) = keys::stats_range(
            &start.map(stats::day).unwrap_or_default(),
            &end.map(stats::day).unwrap_or_else(|| "9999-99-99".into()),
        );
        if lo > hi {
            return Ok(stats::summarize(&[]));
        }
        let shards = (0..keys::STATS_SHARDS).map(|shard| keys::stats_pk(org, shard));
        let queries = sort_key_range_queries(shards, &lo, &hi);
        Ok(stats::summarize(&self.query_all_of(queries).await?))
    }

    pub(super) async fn workflow_trends_(
        &self,
        org: &str,
        workflow_id: &str,
        interval: TrendInterval,
        start: Timestamp,
        end: Timestamp,
    ) -> StoreResult<Vec<(Timestamp, TrendCounters)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let (lo, hi) = keys::trend_range(interval, interval.start_of(start), end);
        let shards = (0..keys::TREND_SHARDS).map(|shard| keys::trends_pk(org, workflow_id, shard));
        let queries = sort_key_range_queries(shards, &lo, &hi);
        Ok(self
            .query_all_of(queries)
            .await?
            .iter()
            .filter_map(|item| {
                let start_of = string_of(item, attr::SK)
                    .as_deref()
                    .and_then(keys::trend_start_of_sk)?;
                (start_of < end).then(|| (start_of, stats::trend_of(item)))
            })
            .collect())
    }

    /// The unfinished index: every shard from the cursor's on queried (16 at a time, each
    /// for up to a page), the page taken in shard order (no global order: each shard is by
    /// deadline); the executions themselves are read in one `BatchGetItem` per page, as the
    /// index carries only what counting needs. The cursor holds the shard and the position
    /// in it.
    pub(super) async fn list_unfinished_executions_(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Execution>> {
        const QUERY: &str = "unfinished";
        const SHARD: &str = "shard";
        let limit = limit.max(1);
        let (shard, mut start) = match cursor {
            None => (0, None),
            Some(token) => {
                let mut key = self.cursors.decode(token, "", QUERY)?;
                let shard: u32 = key
                    .remove(SHARD)
                    .and_then(|v| v.parse().ok())
                    .filter(|s| *s < keys::UNFINISHED_SHARDS)
                    .ok_or(StoreError::InvalidCursor)?;
                let start = if key.is_empty() {
                    None
                } else if key.get(attr::GSI3PK) == Some(&keys::unfinished_pk(shard)) {
                    Some(key.into_iter().map(|(k, v)| (k, s(v))).collect::<Item>())
                } else {
                    return Err(StoreError::InvalidCursor);
                };
                (shard, start)
            }
        };
        // Every shard from the cursor's on, 16 at a time, each for up to a page; the page is
        // taken in shard order and ends where a shard has more than what fits.
        let queries: Vec<(u32, Option<Item>)> = (shard..keys::UNFINISHED_SHARDS)
            .map(|n| (n, if n == shard { start.take() } else { None }))
            .collect();
        let key_attrs = [attr::PK, attr::SK, attr::GSI3PK, attr::GSI3SK];
        let shards = self
            .query_each(queries, |(n, from)| async move {
                let mut e = Expr::new();
                let key_condition =
                    format!("{} = {}", e.n(attr::GSI3PK), e.v(s(keys::unfinished_pk(n))));
                let q = QuerySpec {
                    index: Some(keys::GSI_UNFINISHED),
                    key_condition,
                    filter: None,
                    expr: e,
                    forward: true,
                    consistent: false,
                    projection: None,
                };
                let (items, next) = self.query_limited(&q, limit, from, &key_attrs).await?;
                Ok((n, items, next))
            })
            .await?;
        let mut found: Vec<Item> = Vec::new();
        let mut next_cursor = None;
        for (n, items, next) in shards {
            let room = limit - found.len();
            let more_here = items.len() > room;
            found.extend(items.into_iter().take(room));
            // Where the page ends: inside this shard, after it, or at the next one.
            let position = if more_here {
                found.last().map(|last| super::cursor_key(last, &key_attrs))
            } else {
                next
            };
            if let Some(mut position) = position {
                position.insert(SHARD.into(), n.to_string());
                next_cursor = Some(position);
                break;
            }
            if found.len() == limit {
                if n + 1 < keys::UNFINISHED_SHARDS {
                    next_cursor = Some([(SHARD.to_string(), (n + 1).to_string())].into());
                }
                break;
            }
        }
        let wanted = found
            .iter()
            .filter_map(|i| Some(key(string_of(i, attr::PK)?, string_of(i, attr::SK)?)))
            .collect();
        let items = self
            .get_many(wanted)
            .await?
            .into_iter()
            .map(|i| from_item::<ExecutionItem>(i, "execution").map(ExecutionItem::into_execution))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items,
            next_cursor: self.seal_cursor("", QUERY, next_cursor),
        })
    }

    /// Counted from the unfinished index (which projects the organization, status and
    /// creation time), every shard read.
    pub(super) async fn count_unfinished_executions_(
        &self,
        org: &str,
        stale_before: Timestamp,
    ) -> StoreResult<UnfinishedCounts> {
        let queries = (0..keys::UNFINISHED_SHARDS)
            .map(|shard| {
                let mut e = Expr::new();
                let key_condition = format!(
                    "{} = {}",
                    e.n(attr::GSI3PK),
                    e.v(s(keys::unfinished_pk(shard)))
                );
                let filter = format!("{} = {}", e.n(attr::ORGANIZATION_ID), e.v(s(org)));
                let projection = format!("{}, {}", e.n(attr::STATUS), e.n(attr::CREATED_AT));
                QuerySpec {
                    index: Some(keys::GSI_UNFINISHED),
                    key_condition,
                    filter: Some(filter),
                    expr: e,
                    forward: true,
                    consistent: false,
                    projection: Some(projection),
                }
            })
            .collect();
        let stale_before = stale_before.to_string();
        let mut counts = UnfinishedCounts::default();
        for item in self.query_all_of(queries).await? {
            let status = string_of(&item, attr::STATUS).and_then(|t| ExecutionStatus::parse(&t));
            let created = string_of(&item, attr::CREATED_AT).unwrap_or_default();
            match status {
                Some(ExecutionStatus::Running) => counts.running += 1,
                Some(ExecutionStatus::Pending) => counts.pending += 1,
                Some(ExecutionStatus::Paused) => counts.paused += 1,
                _ => continue,
            }
            if matches!(
                status,
                Some(ExecutionStatus::Running | ExecutionStatus::Pending)
            ) && created < stale_before
            {
                counts.stale += 1;
            }
        }
        Ok(counts)
    }
}
