//! The store on one DynamoDB table (on demand, TTL attribute `expiresAt`).
//!
//! ## Keys
//!
//! | item | pk | sk | indexes |
//! |---|---|---|---|
//! | workflow, current | `O#{org}#W#{id}` | `W` | ByOrg `O#{org}#WF` / `{createdAt}#{id}`; ByParent `SCHEDULED` / `{org}#{id}` only while active with a `trigger.schedule` node |
//! | workflow version n | `O#{org}#W#{id}` | `V#{n:010}` | – |
//! | execution counter shard of a workflow (`executionCount`, `lastExecutedAt`) | `O#{org}#W#{id}#N#{shard:02}` (8 shards by execution id) | `N` | – |
//! | webhook route | `H#{webhookId}` | `H` | – |
//! | execution | `O#{org}#E#{id}` | `E` | ByOrg `O#{org}#EX` / `{createdAt}#{id}`; ByParent `O#{org}#WE#{workflowId}` / `{createdAt}#{id}`; Unfinished `UNFINISHED#{shard:02}` (64 shards by execution id) / `{deadline}#{org}#{id}` only while not terminal |
//! | node run | `O#{org}#E#{id}` | `E#N#{nodeId}` | – |
//! | logs, in batches (`adapters::log_batch`) | `O#{org}#E#{id}` | `L#{first log id}` | – |
//! | idempotency key | `O#{org}#I#{key}` | `I` | – |
//! | credential | `O#{org}#CR` | `I#{id}` and `N#{name}` (two copies) | – |
//! | circuit | `C#{org}#{key}` | `C` | ByOrg `O#{org}#C` / `{key}` |
//! | statistics of a day | `O#{org}#S#{shard:02}` (64 shards by execution id) | `D#{yyyy-mm-dd}` | – |
//! | concurrency gate (SPEC §9) | `O#{org}#G#{workflowId}#{key}` | `G` (counters), `S#{executionId}` (a slot), `Q#{createdAt}#{executionId}` (a place in line) | – |
//! | throttle of a key (SPEC §9) | `O#{org}#TH#{workflowId}#{key}` | `T`: the start times assigned in the last period and after, compare-and-set on `version` | – |
//! | debounce of a key (SPEC §9) | `O#{org}#DB#{workflowId}#{key}` | `D`: the latest start (`executionId`, `order`) | – |
//! | trend counters of a workflow | `O#{org}#T#{workflowId}#{shard:02}` (32 shards by execution id) | `{H\|D}#{interval start}` | – |
//!
//! Key components are escaped (`#` → `%23`), so no id can reach another item's key.
//! The three GSIs (`ByOrg`: gsi1pk/gsi1sk, `ByParent`: gsi2pk/gsi2sk, `Unfinished`:
//! gsi3pk/gsi3sk); an item without an index's key attributes is not in it (sparse indexes).
//! `ByOrg` and `ByParent` project all attributes (listings read them); `Unfinished` only
//! `organizationId`, `status` and `createdAt` (the cleanup run reads executions by key).
//!
//! Counters busy executions share are sharded in the partition key, not the sort key: a
//! partition takes at most 1,000 write units/s, whatever its items. `aws-scale`
//! (`weconnect_tests::scale`) models the partitions' load at 10,000 executions/s.
//!
//! ## Guarantees (spec §5), each one conditional write
//!
//! - claim: `UpdateItem` conditional on (`pending` and ready and past `notBefore`) or (`running`
//!   with an expired lease); a failed condition returns the stored run
//!   (`ReturnValuesOnConditionCheckFailure`) to tell finished / leased / not yet / not ready.
//! - record: `PutItem` conditional on `leaseToken = :token`.
//! - joins: `ADD arrived :parent` (and `takenFrom`) returning the new run; the arrival that
//!   completes the set makes one conditional flip (`ready = false AND status = pending`) to
//!   ready (claimed in the same write when asked) or skipped. A single-parent child is
//!   arrived, decided (and claimed) in one conditional write.
//! - one terminal status: `transition_execution` is a transaction of the execution's `PutItem`
//!   conditional on the stored status, and the statistics counters' `ADD`.
//! - idempotency keys, webhook ids and credential names: conditional puts of key items in the
//!   same transaction as what they guard.
//!
//! The workflow's `executionCount`/`lastExecutedAt` are an atomic `ADD` on a counter shard
//! right after the creation transaction, not inside it (concurrent creations would conflict)
//! and not on the workflow item (a multi-KB item in `ByOrg`: each bump rewrote both);
//! `add_activity` sums the shards for the API.
//!
//! ## Statistics
//!
//! Per organization and day of `createdAt`, 64 items of counters, each in its own partition
//! (an execution's shard is a hash of its id) updated with `ADD`
//! in the same transaction as the execution's writes; a read sums the shards of the days: `total`, `s_{status}` (current status: a
//! transition moves one count), `m_{mode}`, and for terminal executions `dsum`/`dcnt` (sum and
//! number of durations) and a histogram `h{nn}` of durations over fixed buckets
//! ([`crate::model::trends::BUCKET_BOUNDS_MS`]). `averageDuration` = dsum/dcnt is exact. `p95Duration` is
//! approximate: the 95th percentile is located in its bucket and interpolated linearly inside
//! it, so its error is below that bucket's width (buckets grow by 1.5–2× per step). Date
//! filters apply to whole days (UTC) of `createdAt`.
//!
//! ## Cursors, TTL, size
//!
//! Cursors are signed (see [`super::CursorCodec`]). Logs, terminal executions and node runs
//! carry `expiresAt` (retention from `RETENTION_DAYS`). Items over 400 KB are refused with
//! `StoreError::TooLarge` before any request.

mod compose;
mod executions;
mod expr;
mod gates;
pub mod items;
pub mod keys;
mod other;
mod runs;
pub mod stats;
mod workflows;

use super::{AwsConfig, CursorCodec, CursorKey};
use crate::model::*;
use crate::ports::*;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use expr::Expr;
use items::Item;
use std::time::Duration;

/// The DynamoDB implementation of [`Store`].
#[derive(Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
    cursors: CursorCodec,
    capacity: Option<ReturnConsumedCapacity>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn backend<E: std::error::Error + 'static>(e: SdkError<E>) -> StoreError {
    StoreError::Backend(DisplayErrorContext(e).to_string())
}

/// What a conditional write did: `Ok(true)` written, `Ok(false)` its condition did not hold.
fn condition_held<T, E>(result: Result<T, SdkError<E>>) -> StoreResult<bool>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(err)
            if err.as_service_error().and_then(|s| s.code())
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(err) => Err(backend(err)),
    }
}

/// One Query, described once and run page by page.
struct QuerySpec {
    index: Option<&'static str>,
    key_condition: String,
    filter: Option<String>,
    expr: Expr,
    forward: bool,
    consistent: bool,
    projection: Option<String>,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, config: &AwsConfig) -> Self {
        Self {
            client,
            table: config.table_name.clone(),
            retention: config.retention(),
            cursors: CursorCodec::new(config.cursor_key()),
            capacity: config
                .consumed_capacity
                .then_some(ReturnConsumedCapacity::Total),
        }
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// One `PutItem` of `item` under the condition `cond` (names and values in `e`).
    /// `Ok(false)`: the condition did not hold and nothing was written.
    async fn put_if(&self, item: Item, cond: String, e: &Expr) -> StoreResult<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .set_return_consumed_capacity(self.capacity.clone())
            .send()
            .await;
        condition_held(result)
    }

    /// One `UpdateItem` of the execution item under the condition `cond` (names and values in
    /// `e`). `Ok(false)`: the condition did not hold and nothing was written.
    async fn update_execution_if(
        &self,
        org: &str,
        id: &str,
        update: String,
        cond: String,
        e: &Expr,
    ) -> StoreResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(items::key(
                keys::execution_pk(org, id),
                keys::EXECUTION_SK.to_string(),
            )))
            .update_expression(update)
            .condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .set_return_consumed_capacity(self.capacity.clone())
            .send()
            .await;
        condition_held(result)
    }

    /// TTL (epoch seconds) of something that happened at `at`.
    fn expiry(&self, at: Timestamp) -> i64 {
        at.millis() / 1000 + self.retention.as_secs() as i64
    }

    /// TTL from now (for items whose own time says nothing about when they are done).
    fn expiry_from_now(&self, extra: Duration) -> i64 {
        let now = Timestamp::from(chrono::Utc::now());
        self.expiry(now.plus(extra))
    }

    async fn get(&self, key: Item, consistent: bool) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(consistent)
            .set_return_consumed_capacity(self.capacity.clone())
            .send()
            .await
            .map_err(backend)?;
        Ok(out.item)
    }

    /// One page of a query.
    async fn query_page(
        &self,
        q: &QuerySpec,
        start: Option<Item>,
        limit: Option<usize>,
    ) -> StoreResult<(Vec<Item>, Option<Item>)> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(q.index.map(str::to_string))
            .key_condition_expression(&q.key_condition)
            .set_filter_expression(q.filter.clone())
            .set_projection_expression(q.projection.clone())
            .set_expression_attribute_names(q.expr.names())
            .set_expression_attribute_values(q.expr.values())
            .scan_index_forward(q.forward)
            .consistent_read(q.consistent)
            .set_exclusive_start_key(start)
            .set_limit(limit.map(|l| l.clamp(1, 1000) as i32))
            .set_return_consumed_capacity(self.capacity.clone())
            .send()
            .await
            .map_err(backend)?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }

    /// Every item a query matches.
    async fn query_all(&self, q: &QuerySpec) -> StoreResult<Vec<Item>> {
        let mut all = Vec::new();
        let mut start = None;
        loop {
            let (items, next) = self.query_page(q, start, None).await?;
            all.extend(items);
            match next {
                Some(next) => start = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Every item the queries match (one per shard of a sharded partition), 16 at a time.
    async fn query_all_of(&self, queries: Vec<QuerySpec>) -> StoreResult<Vec<Item>> {
        let pages = self
            .query_each(queries, |q| async move { self.query_all(&q).await })
            .await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// `run` on each query (the shards of a sharded partition), 16 at a time, results in
    /// the queries' order.
    async fn query_each<'a, Q, T, F, Fut>(&'a self, queries: Vec<Q>, run: F) -> StoreResult<Vec<T>>
    where
        Q: Send + 'a,
        T: Send + 'a,
        F: Fn(Q) -> Fut + Send + Sync + 'a,
        Fut: std::future::Future<Output = StoreResult<T>> + Send + 'a,
    {
        use futures::{StreamExt, TryStreamExt};
        // Boxed: an unboxed stream of these futures trips the `Send` check of `async_trait`.
        futures::stream::iter(queries)
            .map(|q| -> futures::future::BoxFuture<'a, StoreResult<T>> { Box::pin(run(q)) })
            .buffered(16)
            .try_collect()
            .await
    }

    /// Up to `limit` items from `start`, and the key of the last one when more may follow.
    /// `key_attrs` are the attributes that position the query (table and index keys).
    async fn query_limited(
        &self,
        q: &QuerySpec,
        limit: usize,
        start: Option<Item>,
        key_attrs: &[&str],
    ) -> StoreResult<(Vec<Item>, Option<CursorKey>)> {
        let limit = limit.max(1);
        let mut collected: Vec<Item> = Vec::new();
        let mut start = start;
        for _page in 0..10 {
            let want = limit + 1 - collected.len();
            // With a filter, read a little more per page: the filter drops some.
            let page = if q.filter.is_some() {
                want.max(50)
            } else {
                want
            };
            let (items, next) = self.query_page(q, start, Some(page)).await?;
            collected.extend(items);
            if collected.len() > limit {
                collected.truncate(limit);
                let last = collected.last().map(|i| cursor_key(i, key_attrs));
                return Ok((collected, last));
            }
            match next {
                None => return Ok((collected, None)),
                Some(next) => start = Some(next),
            }
        }
        // A very selective filter: hand back what was found and where to go on.
        Ok((collected, start.map(|s| cursor_key(&s, key_attrs))))
    }

    /// The start key of a signed cursor, checked to lie in `partition` of `partition_attr`.
    fn open_cursor(
        &self,
        cursor: Option<&str>,
        org: &str,
        query: &str,
        partition_attr: &str,
        partition: &str,
    ) -> StoreResult<Option<Item>> {
        let Some(token) = cursor else { return Ok(None) };
        let key = self.cursors.decode(token, org, query)?;
        if key.get(partition_attr).map(String::as_str) != Some(partition) {
            return Err(StoreError::InvalidCursor);
        }
        Ok(Some(
            key.into_iter()
                .map(|(k, v)| (k, AttributeValue::S(v)))
                .collect(),
        ))
    }

    fn seal_cursor(&self, org: &str, query: &str, key: Option<CursorKey>) -> Option<String> {
        key.map(|k| self.cursors.encode(org, query, &k))
    }
}

fn cursor_key(item: &Item, attrs: &[&str]) -> CursorKey {
    attrs
        .iter()
        .filter_map(|a| items::string_of(item, a).map(|v| (a.to_string(), v)))
        .collect()
}

#[async_trait]
impl WorkflowStore for DynamoStore {
    async fn create_workflow(&self, wf: &Workflow, webhooks: &[WebhookRoute]) -> StoreResult<()> {
        self.create_workflow_(wf, webhooks).await
    }
    async fn update_workflow(&self, wf: &Workflow, webhooks: &[WebhookRoute]) -> StoreResult<bool> {
        self.update_workflow_(wf, webhooks).await
    }
    async fn get_workflow(&self, org: &str, id: &str) -> StoreResult<Option<Workflow>> {
        self.get_workflow_(org, id).await
    }
    async fn add_activity(&self, org: &str, workflows: &mut [Workflow]) -> StoreResult<()> {
        self.add_activity_(org, workflows).await
    }
    async fn get_workflow_version(
        &self,
        org: &str,
        id: &str,
        version: u32,
    ) -> StoreResult<Option<Workflow>> {
        self.get_workflow_version_(org, id, version).await
    }
    async fn list_workflows(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Workflow>> {
        self.list_workflows_(org, limit, cursor).await
    }
    async fn delete_workflow(&self, org: &str, id: &str) -> StoreResult<bool> {
        self.delete_workflow_(org, id).await
    }
    async fn find_webhook(&self, webhook_id: &str) -> StoreResult<Option<WebhookRoute>> {
        self.find_webhook_(webhook_id).await
    }
    async fn list_scheduled_workflows(&self) -> StoreResult<Vec<Workflow>> {
        self.list_scheduled_workflows_().await
    }
}

#[async_trait]
impl ExecutionStore for DynamoStore {
    async fn create_execution(
        &self,
        exec: &Execution,
        idempotency_key: Option<&str>,
        key_valid_after: Timestamp,
    ) -> StoreResult<Created> {
        self.create_execution_(exec, idempotency_key, key_valid_after)
            .await
    }
    async fn get_execution(&self, org: &str, id: &str) -> StoreResult<Option<Execution>> {
        self.get_execution_(org, id).await
    }
    async fn get_execution_state(
        &self,
        org: &str,
        id: &str,
    ) -> StoreResult<Option<ExecutionState>> {
        self.get_execution_state_(org, id).await
    }
    async fn get_execution_runs(
        &self,
        org: &str,
        id: &str,
        node_ids: &[String],
    ) -> StoreResult<Option<ExecutionState>> {
        self.get_execution_runs_(org, id, node_ids).await
    }
    async fn count_finished_nodes(&self, org: &str, id: &str) -> StoreResult<u32> {
        self.count_finished_nodes_(org, id).await
    }
    async fn set_completed_at(
        &self,
        org: &str,
        id: &str,
        completed_at: Timestamp,
        duration: u64,
    ) -> StoreResult<()> {
        self.set_completed_at_(org, id, completed_at, duration)
            .await
    }
    async fn transition_execution(
        &self,
        exec: &Execution,
        from: &[ExecutionStatus],
    ) -> StoreResult<bool> {
        self.transition_execution_(exec, from).await
    }
    async fn drop_execution_data(&self, org: &str, id: &str) -> StoreResult<()> {
        self.drop_execution_data_(org, id).await
    }
    async fn get_executions(&self, org: &str, ids: &[String]) -> StoreResult<Vec<Execution>> {
        self.get_executions_(org, ids).await
    }
    async fn move_deadline(&self, org: &str, id: &str, deadline: Timestamp) -> StoreResult<()> {
        self.move_deadline_(org, id, deadline).await
    }
    async fn create_child_tally(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        tally: &ChildTally,
    ) -> StoreResult<ChildTally> {
        self.create_child_tally_(org, execution_id, node_id, tally)
            .await
    }
    async fn get_child_tally(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<ChildTally>> {
        self.get_child_tally_(org, execution_id, node_id).await
    }
    async fn reserve_children(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<(u32, u32)>> {
        self.reserve_children_(org, execution_id, node_id).await
    }
    async fn put_callback(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        callback: &ReceivedCallback,
    ) -> StoreResult<bool> {
        self.put_callback_(org, execution_id, node_id, callback)
            .await
    }
    async fn get_callback(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<ReceivedCallback>> {
        self.get_callback_(org, execution_id, node_id).await
    }
    async fn list_executions(
        &self,
        org: &str,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Execution>> {
        self.list_executions_(org, filter, limit, cursor).await
    }
    async fn workflow_trends(
        &self,
        org: &str,
        workflow_id: &str,
        interval: TrendInterval,
        start: Timestamp,
        end: Timestamp,
    ) -> StoreResult<Vec<(Timestamp, TrendCounters)>> {
        self.workflow_trends_(org, workflow_id, interval, start, end)
            .await
    }
    async fn execution_statistics(
        &self,
        org: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> StoreResult<ExecutionStatistics> {
        let mut stats = self.execution_statistics_(org, start, end).await?;
        // Every status and mode, zero when none: the same shape as the embedded store.
        for s in ExecutionStatus::ALL {
            stats.by_status.entry(s.as_str().to_string()).or_insert(0);
        }
        for m in ExecutionMode::ALL {
            stats.by_mode.entry(m.as_str().to_string()).or_insert(0);
        }
        Ok(stats)
    }
    async fn list_unfinished_executions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Execution>> {
        self.list_unfinished_executions_(limit, cursor).await
    }
    async fn count_unfinished_executions(
        &self,
        org: &str,
        stale_before: Timestamp,
    ) -> StoreResult<UnfinishedCounts> {
        self.count_unfinished_executions_(org, stale_before).await
    }

    async fn put_node_runs(&self, org: &str, runs: &[NodeRun]) -> StoreResult<()> {
        self.put_node_runs_(org, runs).await
    }
    async fn claim_node(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        claim: &Claim,
    ) -> StoreResult<ClaimOutcome> {
        self.claim_node_(org, execution_id, node_id, claim).await
    }
    async fn save_node_run(&self, org: &str, run: &NodeRun, token: &str) -> StoreResult<bool> {
        self.save_node_run_(org, run, token).await
    }
    async fn arrive(
        &self,
        org: &str,
        arrival: &ArrivalAt<'_>,
        claim: Option<&Claim>,
    ) -> StoreResult<Arrival> {
        self.arrive_(org, arrival, claim).await
    }
}

#[async_trait]
impl LogStore for DynamoStore {
    async fn append_logs(&self, logs: &[ExecutionLog]) -> StoreResult<()> {
        self.append_logs_(logs).await
    }
    async fn list_logs(
        &self,
        org: &str,
        execution_id: &str,
        filter: &LogFilter,
        limit: usize,
    ) -> StoreResult<Page<ExecutionLog>> {
        self.list_logs_(org, execution_id, filter, limit).await
    }
}

#[async_trait]
impl CredentialStore for DynamoStore {
    async fn put_credential(&self, cred: &StoredCredential) -> StoreResult<()> {
        self.put_credential_(cred).await
    }
    async fn get_credential(
        &self,
        org: &str,
        id_or_name: &str,
    ) -> StoreResult<Option<StoredCredential>> {
        self.get_credential_(org, id_or_name).await
    }
    async fn list_credentials(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Credential>> {
        self.list_credentials_(org, limit, cursor).await
    }
    async fn delete_credential(&self, org: &str, id: &str) -> StoreResult<bool> {
        self.delete_credential_(org, id).await
    }
}

#[async_trait]
impl GateStore for DynamoStore {
    async fn admit(
        &self,
        gate: &Gate,
        limit: u32,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<Admission> {
        self.admit_(gate, limit, execution_id, created_at).await
    }
    async fn leave(
        &self,
        gate: &Gate,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<()> {
        self.leave_(gate, execution_id, created_at).await
    }
    async fn promote(&self, gate: &Gate, limit: u32) -> StoreResult<Vec<String>> {
        self.promote_(gate, limit).await
    }
    async fn gate_holders(&self, gate: &Gate) -> StoreResult<Vec<String>> {
        self.gate_holders_(gate).await
    }
    async fn holds_slot(&self, gate: &Gate, execution_id: &str) -> StoreResult<bool> {
        self.holds_slot_(gate, execution_id).await
    }
    async fn throttle(
        &self,
        gate: &Gate,
        limit: u32,
        period_ms: u64,
        execution_id: &str,
        now: Timestamp,
    ) -> StoreResult<Timestamp> {
        self.throttle_(gate, limit, period_ms, execution_id, now)
            .await
    }
    async fn throttled_start(
        &self,
        gate: &Gate,
        execution_id: &str,
    ) -> StoreResult<Option<Timestamp>> {
        self.throttled_start_(gate, execution_id).await
    }
    async fn debounce(
        &self,
        gate: &Gate,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<Debounced> {
        self.debounce_(gate, execution_id, created_at).await
    }
    async fn latest_debounced(&self, gate: &Gate) -> StoreResult<Option<String>> {
        self.latest_debounced_(gate).await
    }
    async fn take_call(
        &self,
        gate: &Gate,
        limit: u32,
        period_ms: u64,
        now: Timestamp,
    ) -> StoreResult<Option<Timestamp>> {
        self.take_call_(gate, limit, period_ms, now).await
    }
}

#[async_trait]
impl CircuitStore for DynamoStore {
    async fn get_circuit(&self, org: &str, key: &str) -> StoreResult<Option<CircuitState>> {
        self.get_circuit_(org, key).await
    }
    async fn put_circuit(&self, org: &str, key: &str, state: &CircuitState) -> StoreResult<bool> {
        self.put_circuit_(org, key, state).await
    }
    async fn list_circuits(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<CircuitRecord>> {
        self.list_circuits_(org, limit, cursor).await
    }
    /// Not counted: circuits are items of every organization's partition, so a count is a
    /// Scan of the table; `/metrics` is the local server's (Lambda reports through EMF).
    async fn count_open_circuits(&self) -> StoreResult<Option<u64>> {
        Ok(None)
    }
}
