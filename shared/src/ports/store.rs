//! The storage port. Every guarantee of spec §5 that needs atomicity is a single method here,
//! implemented with a transaction (SQLite) or a conditional write (DynamoDB).

use crate::model::*;
pub use crate::model::{Claim, ClaimOutcome};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (webhook path, credential name, ...). The message names it.
    #[error("{0}")]
    Conflict(String),
    /// A cursor that this store did not issue, or issued for another organization or query.
    #[error("invalid cursor")]
    InvalidCursor,
    /// An item would exceed what the backend can hold.
    #[error("item too large: {0}")]
    TooLarge(String),
    /// The backend failed (I/O, throttling, a bug). Not the client's fault.
    #[error("storage error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a list. `next_cursor` is opaque to clients.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Where a webhook id leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRoute {
    pub webhook_id: String,
    pub organization_id: String,
    pub workflow_id: String,
    pub node_id: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionFilter {
    pub status: Option<ExecutionStatus>,
    pub mode: Option<ExecutionMode>,
    pub workflow_id: Option<String>,
    /// `createdAt >= start_date`
    pub start_date: Option<Timestamp>,
    /// `createdAt <= end_date`
    pub end_date: Option<Timestamp>,
    /// Children of this execution (SPEC §8).
    pub parent_execution_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    pub level: Option<LogLevel>,
    pub node_id: Option<String>,
    /// Only logs whose id sorts after this one (tailing).
    pub after: Option<String>,
}

/// `GET /executions/statistics` (spec §4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStatistics {
    pub total: u64,
    pub by_status: BTreeMap<String, u64>,
    pub by_mode: BTreeMap<String, u64>,
    /// Share of finished executions that succeeded, 0..=1.
    pub success_rate: f64,
    /// Milliseconds, over finished executions.
    pub average_duration: f64,
    pub p95_duration: f64,
}

/// Counts for `/monitoring/health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnfinishedCounts {
    pub running: u64,
    pub pending: u64,
    pub paused: u64,
    /// Running or pending and created before the stale threshold.
    pub stale: u64,
}

/// A finished (or skipped) parent arriving at one of its children.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrivalAt<'a> {
    pub execution_id: &'a str,
    pub child: &'a str,
    pub parent: &'a str,
    /// Whether the parent's connection to the child was taken.
    pub taken: bool,
    /// The child's number of distinct parents.
    pub parents: usize,
    /// This parent's position among them (`0..parents`, the graph's order): a store may
    /// spread a wide join's arrivals over several items by it.
    pub parent_index: usize,
    /// When a child skipped by this arrival finishes.
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arrival {
    /// Some parents have not arrived yet.
    Waiting,
    /// This arrival completed the set with at least one taken connection; the caller
    /// flipped the run to ready and must run or enqueue it (exactly one caller sees this).
    /// When the arrival carried a claim, the run is already claimed by it (`running`).
    Ready(NodeRun),
    /// This arrival completed the set with no taken connection; the caller flipped the
    /// run to `skipped` and must propagate the skip (exactly one caller sees this).
    Skipped(NodeRun),
    /// This parent had arrived before (a redelivered job): the child as it is now, so the
    /// caller can redo what may be missing after it (queue it if ready, follow it if
    /// finished).
    Duplicate(NodeRun),
    /// The child was already decided and the store cannot tell whether this parent had
    /// arrived: the caller queues the child's job (harmless if it is a duplicate).
    AlreadyDecided,
}

/// Outcome of creating an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    Created(Execution),
    /// The idempotency key was used within its window: this is the execution it started.
    Existing(Execution),
}

/// Circuit breaker state for one key (spec §6), with a version for compare-and-set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitState {
    pub consecutive_failures: u32,
    #[serde(default)]
    pub opened_at: Option<Timestamp>,
    /// A half-open trial call is in flight until then.
    #[serde(default)]
    pub trial_until: Option<Timestamp>,
    #[serde(default)]
    pub version: u64,
    /// Overrides of the breaker's defaults for this key (`PUT /circuits/{key}`).
    #[serde(default)]
    pub config: CircuitConfig,
}

/// Per-key overrides of the circuit breaker's defaults (SPEC §10); None: the default of §6.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_timeout_ms: Option<u64>,
}

/// One circuit of an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitRecord {
    pub key: String,
    pub state: CircuitState,
}

/// Everything a backend stores, as the capabilities below; each part of the product takes
/// only the ones it uses (nodes: circuits; the vault: credentials).
pub trait Store:
    WorkflowStore + ExecutionStore + LogStore + CredentialStore + CircuitStore + GateStore
{
}

impl<T> Store for T where
    T: WorkflowStore + ExecutionStore + LogStore + CredentialStore + CircuitStore + GateStore
{
}

/// Workflows, their versions and webhook routes.
#[async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Stores version `wf.version` (1) as current, plus its webhook routes.
    /// `Conflict` when one of its webhook ids is taken by another workflow.
    async fn create_workflow(&self, wf: &Workflow, webhooks: &[WebhookRoute]) -> StoreResult<()>;
    /// Replaces the current version with `wf` (whose `version` is the previous one + 1) if the
    /// stored current version is still `wf.version - 1`; keeps the old version readable;
    /// replaces the workflow's webhook routes. `Ok(false)` when the version moved meanwhile.
    async fn update_workflow(&self, wf: &Workflow, webhooks: &[WebhookRoute]) -> StoreResult<bool>;
    /// The current version. Its `executionCount`/`lastExecutedAt` are complete only after
    /// [`WorkflowStore::add_activity`] (a store may keep them apart from the workflow).
    async fn get_workflow(&self, org: &str, id: &str) -> StoreResult<Option<Workflow>>;
    /// Sets `executionCount` and `lastExecutedAt` of `workflows` (of `org`) from what the store
    /// counted. The embedded store keeps them in the workflow's row (nothing to add);
    /// DynamoDB counts in shards apart from the workflow item, so a busy workflow's
    /// executions never all write one item.
    async fn add_activity(&self, org: &str, workflows: &mut [Workflow]) -> StoreResult<()>;
    /// Any stored version, current or past, also of a deleted workflow.
    async fn get_workflow_version(
        &self,
        org: &str,
        id: &str,
        version: u32,
    ) -> StoreResult<Option<Workflow>>;
    /// Current versions, newest first.
    async fn list_workflows(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Workflow>>;
    /// Removes the current workflow and its webhook routes (past versions stay for executions).
    async fn delete_workflow(&self, org: &str, id: &str) -> StoreResult<bool>;
    async fn find_webhook(&self, webhook_id: &str) -> StoreResult<Option<WebhookRoute>>;
    /// Every `active` workflow with a `trigger.schedule` node, across organizations.
    async fn list_scheduled_workflows(&self) -> StoreResult<Vec<Workflow>>;
}

/// Executions and their node runs: creation (with the idempotency key), reads, the one
/// conditional status change, the execution protocol's conditional writes on node runs,
/// lists, statistics, the cleanup run's view and retention.
#[async_trait]
pub trait ExecutionStore: Send + Sync + 'static {
    /// Creates the execution, bumps its workflow's `executionCount` and `lastExecutedAt`
    /// and the statistics counters. With an idempotency key (already scoped by the caller),
    /// a key used since `key_valid_after` returns that execution instead.
    async fn create_execution(
        &self,
        exec: &Execution,
        idempotency_key: Option<&str>,
        key_valid_after: Timestamp,
    ) -> StoreResult<Created>;
    /// [`create_execution`](Self::create_execution) together with the execution's first node
    /// runs ([`put_node_runs`](Self::put_node_runs)); the runs are written only when the
    /// execution is created now. An adapter with transactions does both in one write; the
    /// default makes the two calls, so on an error the execution may exist without its runs.
    async fn create_execution_with_runs(
        &self,
        exec: &Execution,
        runs: &[NodeRun],
        idempotency_key: Option<&str>,
        key_valid_after: Timestamp,
    ) -> StoreResult<Created> {
        let created = self
            .create_execution(exec, idempotency_key, key_valid_after)
            .await?;
        if matches!(created, Created::Created(_)) {
            self.put_node_runs(&exec.organization_id, runs).await?;
        }
        Ok(created)
    }
    async fn get_execution(&self, org: &str, id: &str) -> StoreResult<Option<Execution>>;
    /// The execution and all its node runs, in one read where the backend allows.
    async fn get_execution_state(&self, org: &str, id: &str)
    -> StoreResult<Option<ExecutionState>>;
    /// The execution and those of the named node runs that exist, in one read where the
    /// backend allows (a job reads what its node needs, not the whole execution).
    async fn get_execution_runs(
        &self,
        org: &str,
        id: &str,
        node_ids: &[String],
    ) -> StoreResult<Option<ExecutionState>>;
    /// How many of the execution's node runs have finished (success, failed, skipped,
    /// cancelled): when it is the workflow's node count, the execution is complete.
    async fn count_finished_nodes(&self, org: &str, id: &str) -> StoreResult<u32>;
    /// Replaces the stored execution with `exec` if the stored status is one of `from`.
    /// The one way an execution's status changes; terminal moves update the statistics. A
    /// child's (`parentExecutionId`) terminal status is counted in its parent node's child
    /// tally, when that node keeps one, in the same write: so exactly once.
    async fn transition_execution(
        &self,
        exec: &Execution,
        from: &[ExecutionStatus],
    ) -> StoreResult<bool>;
    /// Sets the `completedAt` (and `duration`, ms) of an execution already terminal. A
    /// cancel, failure or timeout stamps its time again once its status is written: every
    /// node that could still be claimed before that write then started before `completedAt`.
    async fn set_completed_at(
        &self,
        org: &str,
        id: &str,
        completed_at: Timestamp,
        duration: u64,
    ) -> StoreResult<()>;
    /// The save policy `none` (SPEC §14) on a successful execution: drops its `inputData`, its
    /// node runs' outputs and its `info`/`debug` logs, and sets `dataSaved` false. Only for a
    /// `success` execution (anything else is left as it is).
    async fn drop_execution_data(&self, org: &str, id: &str) -> StoreResult<()>;
    /// Several executions by id (those that exist, in any order), in one read where the
    /// backend allows (a parent's children).
    async fn get_executions(&self, org: &str, ids: &[String]) -> StoreResult<Vec<Execution>>;
    /// Moves an unfinished execution's deadline (a callback with `pauseDeadline`).
    async fn move_deadline(&self, org: &str, id: &str, deadline: Timestamp) -> StoreResult<()>;
    /// Creates the tally of a node's children unless it exists; the stored one.
    async fn create_child_tally(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        tally: &ChildTally,
    ) -> StoreResult<ChildTally>;
    async fn get_child_tally(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<ChildTally>>;
    /// Gives the free slots to the next children: `started` moves up to
    /// `min(total, done + concurrency)` in one conditional write; the indexes it moved over
    /// (each is handed out once, however many callers race).
    async fn reserve_children(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<(u32, u32)>>;
    /// Records a node's callback unless one was recorded (accepted once): false when one was.
    async fn put_callback(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        callback: &ReceivedCallback,
    ) -> StoreResult<bool>;
    async fn get_callback(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<ReceivedCallback>>;
    /// Newest first.
    async fn list_executions(
        &self,
        org: &str,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Execution>>;
    async fn execution_statistics(
        &self,
        org: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> StoreResult<ExecutionStatistics>;
    /// The trend counters of a workflow's executions per `interval` of `createdAt`, for the
    /// intervals starting in `[interval start of start, end)` (SPEC §10); several entries per
    /// interval when the store shards them.
    async fn workflow_trends(
        &self,
        org: &str,
        workflow_id: &str,
        interval: TrendInterval,
        start: Timestamp,
        end: Timestamp,
    ) -> StoreResult<Vec<(Timestamp, TrendCounters)>>;
    /// Every execution not yet terminal (`pending`, `running`, `paused`), across
    /// organizations, for the cleanup run: each once, in no particular order across pages
    /// (the embedded store goes by deadline; DynamoDB shard after shard, each by deadline).
    async fn list_unfinished_executions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Execution>>;
    /// The organization's executions not yet terminal, by status.
    async fn count_unfinished_executions(
        &self,
        org: &str,
        stale_before: Timestamp,
    ) -> StoreResult<UnfinishedCounts>;

    // ---- retention (the cleanup run) -------------------------------------------------
    /// Deletes, oldest first, up to `limit` finished executions created before
    /// `executions_before` with their node runs and logs, and idempotency keys used before
    /// `keys_before`. Backends that expire items themselves (DynamoDB TTL) keep this
    /// default, which deletes nothing.
    async fn prune(
        &self,
        executions_before: Timestamp,
        keys_before: Timestamp,
        limit: usize,
    ) -> StoreResult<Pruned> {
        let _ = (executions_before, keys_before, limit);
        Ok(Pruned::default())
    }

    /// Gives space that deletions freed back to the file system, at most about `max_bytes`
    /// per call, in steps that never hold the writer long; returns the bytes given back.
    /// Backends whose space follows their data (DynamoDB) keep this default.
    async fn reclaim_space(&self, max_bytes: u64) -> StoreResult<u64> {
        let _ = max_bytes;
        Ok(0)
    }

    // ---- node runs: the execution protocol's conditional writes (claim, record, arrive)
    /// Creates runs that do not exist yet (start node, skipped triggers, redrive copies).
    async fn put_node_runs(&self, org: &str, runs: &[NodeRun]) -> StoreResult<()>;
    /// Claims a ready run as [`NodeRun::claim`] decides: `pending` (not before `not_before`)
    /// or `running` with an expired lease moves to `running` with the claim's lease and
    /// `attempts + 1`. A store that can read the execution in the same write refuses the
    /// claim of a terminal or paused execution, or one past its deadline (`Stopped`).
    async fn claim_node(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        claim: &Claim,
    ) -> StoreResult<ClaimOutcome>;
    /// Writes `run` (result, retry state or wait state) if the stored run is still held
    /// by `token`. `Ok(false)`: the lease was lost; the caller's result is discarded.
    /// A run that finishes here counts in [`count_finished_nodes`](Self::count_finished_nodes).
    async fn save_node_run(&self, org: &str, run: &NodeRun, token: &str) -> StoreResult<bool>;
    /// Records that a parent finished and whether its connection to the child was taken,
    /// once per (child, parent) however often it is called, in O(1) whatever the number of
    /// parents. The arrival that completes the parents decides the child: ready, or skipped
    /// (which counts as finished). With `claim`, a child that becomes ready is claimed in the
    /// same write (inline execution) — unless the store sees in that write that the
    /// execution may not start nodes, in which case it is only made ready.
    async fn arrive(
        &self,
        org: &str,
        arrival: &ArrivalAt<'_>,
        claim: Option<&Claim>,
    ) -> StoreResult<Arrival>;
}

/// Execution logs.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    async fn append_logs(&self, logs: &[ExecutionLog]) -> StoreResult<()>;
    /// Oldest first.
    async fn list_logs(
        &self,
        org: &str,
        execution_id: &str,
        filter: &LogFilter,
        limit: usize,
    ) -> StoreResult<Page<ExecutionLog>>;
}

/// Credentials (sealed data).
#[async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// `Conflict` when the organization already has a credential with that name.
    async fn put_credential(&self, cred: &StoredCredential) -> StoreResult<()>;
    /// By id, or else by name.
    async fn get_credential(
        &self,
        org: &str,
        id_or_name: &str,
    ) -> StoreResult<Option<StoredCredential>>;
    async fn list_credentials(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Credential>>;
    async fn delete_credential(&self, org: &str, id: &str) -> StoreResult<bool>;
}

/// Circuit breaker state, shared by every worker (spec §6).
#[async_trait]
pub trait CircuitStore: Send + Sync + 'static {
    /// The circuit `key` of organization `org` (circuits are per organization).
    async fn get_circuit(&self, org: &str, key: &str) -> StoreResult<Option<CircuitState>>;
    /// Writes `state` (with `version` = stored version + 1) if the stored version is still
    /// `state.version - 1` (0: no stored state yet).
    async fn put_circuit(&self, org: &str, key: &str, state: &CircuitState) -> StoreResult<bool>;
    /// The organization's circuits, by key.
    async fn list_circuits(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<CircuitRecord>>;
    /// How many circuits of all organizations are open or half-open (`openedAt` set), for
    /// the installation's `GET /metrics`; None where counting means reading the whole table
    /// (DynamoDB: the Lambda functions report circuits through their logs instead).
    async fn count_open_circuits(&self) -> StoreResult<Option<u64>>;
}

/// A concurrency gate (SPEC §9): the executions of one workflow with one value of its
/// `settings.concurrency.key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gate {
    pub org: String,
    pub workflow_id: String,
    pub key: String,
}

/// Where an execution stands at its gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It holds one of the `limit` slots: it may run.
    Holds,
    /// It waits in line (first in, first out by creation time).
    Queued,
}

/// Concurrency gates: slots and a line per gate. Every change is atomic, so a gate never has
/// more than `limit` holders whatever runs at once; an execution holds at most one slot.
#[async_trait]
pub trait GateStore: Send + Sync + 'static {
    /// Takes a slot when fewer than `limit` are held and nobody waits, else waits in line
    /// (ordered by `created_at`, then id). Idempotent: an execution that already holds a slot
    /// or waits keeps its place.
    async fn admit(
        &self,
        gate: &Gate,
        limit: u32,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<Admission>;
    /// Gives up the execution's slot or its place in line (nothing when it has neither).
    async fn leave(
        &self,
        gate: &Gate,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<()>;
    /// Hands the free slots (below `limit`) to the executions first in line; returns them.
    async fn promote(&self, gate: &Gate, limit: u32) -> StoreResult<Vec<String>>;
    /// The executions holding a slot.
    async fn gate_holders(&self, gate: &Gate) -> StoreResult<Vec<String>>;
    /// Does the execution hold a slot?
    async fn holds_slot(&self, gate: &Gate, execution_id: &str) -> StoreResult<bool>;

    /// Throttle (`settings.throttle`): the time the execution may start, assigned once (later
    /// calls return the same): `now` while fewer than `limit` starts are assigned in the
    /// window of `period_ms` before it, else the earliest time that keeps every window of
    /// `period_ms` at `limit` starts or fewer. Assignments are in call order (first in, first
    /// out).
    async fn throttle(
        &self,
        gate: &Gate,
        limit: u32,
        period_ms: u64,
        execution_id: &str,
        now: Timestamp,
    ) -> StoreResult<Timestamp>;
    /// The start time assigned to the execution (None: never assigned, or long past).
    async fn throttled_start(
        &self,
        gate: &Gate,
        execution_id: &str,
    ) -> StoreResult<Option<Timestamp>>;

    /// Debounce (`settings.debounce`): the execution becomes its key's latest start unless a
    /// later one (by creation time, then id) already is. Atomic.
    async fn debounce(
        &self,
        gate: &Gate,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<Debounced>;
    /// The key's latest start.
    async fn latest_debounced(&self, gate: &Gate) -> StoreResult<Option<String>>;

    /// A rate-limited call (`http.request` `rateLimit`): when fewer than `limit` calls were
    /// counted in the `period_ms` up to `now`, counts this one and returns None (it may go);
    /// else the time the oldest of them leaves the window. Atomic.
    async fn take_call(
        &self,
        gate: &Gate,
        limit: u32,
        period_ms: u64,
        now: Timestamp,
    ) -> StoreResult<Option<Timestamp>>;
}

/// What a node may use of the store to rate-limit its calls (per organization and key).
#[async_trait]
pub trait RateLimits: Send + Sync + 'static {
    /// See [`GateStore::take_call`]; calls of different organizations never share a window.
    async fn take_call(
        &self,
        org: &str,
        key: &str,
        limit: u32,
        period_ms: u64,
        now: Timestamp,
    ) -> StoreResult<Option<Timestamp>>;
}

/// [`RateLimits`] on a whole store: the gate of organization `org`, outside any workflow.
pub struct StoreRateLimits(pub std::sync::Arc<dyn Store>);

#[async_trait]
impl RateLimits for StoreRateLimits {
    async fn take_call(
        &self,
        org: &str,
        key: &str,
        limit: u32,
        period_ms: u64,
        now: Timestamp,
    ) -> StoreResult<Option<Timestamp>> {
        let gate = Gate {
            org: org.to_string(),
            // No workflow id is empty: the organization's rate limits have their own gates.
            workflow_id: String::new(),
            key: format!("rate:{key}"),
        };
        GateStore::take_call(self.0.as_ref(), &gate, limit, period_ms, now).await
    }
}

/// The sliding window of [`GateStore::take_call`] over the calls counted so far: None (go)
/// when fewer than `limit` fall in `(now - period, now]`, else when the oldest of them leaves.
pub fn call_slot(
    counted: &[Timestamp],
    limit: u32,
    period_ms: u64,
    now: Timestamp,
) -> Option<Timestamp> {
    let since = now.minus(std::time::Duration::from_millis(period_ms));
    let mut inside: Vec<Timestamp> = counted.iter().copied().filter(|t| *t > since).collect();
    if inside.len() < limit.max(1) as usize {
        return None;
    }
    inside.sort_unstable();
    let n = inside.len() - (limit.max(1) as usize - 1) - 1;
    Some(inside[n].plus(std::time::Duration::from_millis(period_ms)))
}

/// What [`GateStore::debounce`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Debounced {
    /// It is the latest now; `replaced`: the one that was (to cancel if it has not started).
    Latest { replaced: Option<String> },
    /// A later start already is the latest.
    Superseded { by: String },
}

/// When a throttled start may go, given the start times already assigned to its key (any
/// order) and `now`: `now` while fewer than `limit` fall in the `period_ms` before it, else the
/// `limit`-th latest plus the period (the earliest time whose window holds `limit - 1`).
pub fn throttled_start_time(
    assigned: &[Timestamp],
    limit: u32,
    period_ms: u64,
    now: Timestamp,
) -> Timestamp {
    let mut times: Vec<Timestamp> = assigned.to_vec();
    times.sort_unstable();
    let limit = limit.max(1) as usize;
    if times.len() < limit {
        return now;
    }
    let nth_latest = times[times.len() - limit];
    let free_at = nth_latest.plus(std::time::Duration::from_millis(period_ms));
    free_at.max(now)
}

/// What one [`Store::prune`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub executions: u64,
    pub idempotency_keys: u64,
}

#[cfg(test)]
mod flow_tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn throttled_starts_fill_each_window_to_the_limit() {
        let mut assigned = Vec::new();
        for _ in 0..5 {
            let at = throttled_start_time(&assigned, 2, 1_000, t(0));
            assigned.push(at);
        }
        assert_eq!(assigned, vec![t(0), t(0), t(1_000), t(1_000), t(2_000)]);
        // Later than the window: at once.
        assert_eq!(
            throttled_start_time(&assigned, 2, 1_000, t(9_000)),
            t(9_000)
        );
        // Out of order input is sorted first.
        assert_eq!(
            throttled_start_time(&[t(500), t(0)], 2, 1_000, t(0)),
            t(1_000)
        );
    }

    #[test]
    fn calls_go_while_the_window_has_room() {
        assert_eq!(call_slot(&[], 2, 1_000, t(0)), None);
        assert_eq!(call_slot(&[t(0)], 2, 1_000, t(10)), None);
        // Full: the oldest leaves the window at 1,000.
        assert_eq!(call_slot(&[t(0), t(10)], 2, 1_000, t(20)), Some(t(1_000)));
        // Calls older than the period no longer count.
        assert_eq!(call_slot(&[t(0), t(10)], 2, 1_000, t(1_000)), None);
        assert_eq!(
            call_slot(&[t(0), t(10), t(20)], 3, 1_000, t(30)),
            Some(t(1_000))
        );
    }
}
