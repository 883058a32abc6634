//! Executions, node runs and logs (spec §3).

use super::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ExecutionStatus {
    Pending,
    Running,
    Success,
    Failed,
    Cancelled,
    Timeout,
    Paused,
}

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 7] = [
        Self::Pending,
        Self::Running,
        Self::Success,
        Self::Failed,
        Self::Cancelled,
        Self::Timeout,
        Self::Paused,
    ];
    /// Statuses an execution may still leave.
    pub const UNFINISHED: [ExecutionStatus; 3] = [Self::Pending, Self::Running, Self::Paused];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Success | Self::Failed | Self::Cancelled | Self::Timeout
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Timeout => "timeout",
            Self::Paused => "paused",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ExecutionMode {
    #[default]
    Manual,
    Webhook,
    Scheduled,
    Api,
    Test,
    /// Started by a parent execution (`flow.map`, `flow.subworkflow`).
    Subworkflow,
    /// Started by an error workflow setting.
    Error,
}

impl ExecutionMode {
    pub const ALL: [ExecutionMode; 7] = [
        Self::Manual,
        Self::Webhook,
        Self::Scheduled,
        Self::Api,
        Self::Test,
        Self::Subworkflow,
        Self::Error,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Webhook => "webhook",
            Self::Scheduled => "scheduled",
            Self::Api => "api",
            Self::Test => "test",
            Self::Subworkflow => "subworkflow",
            Self::Error => "error",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionMetrics {
    pub total_nodes: u32,
    pub successful_nodes: u32,
    pub failed_nodes: u32,
    pub skipped_nodes: u32,
    /// Milliseconds.
    pub average_node_execution_time: f64,
    /// Peak resident memory of the worker that finished the execution, bytes.
    pub memory_usage: u64,
    /// CPU time of the worker process that finished the execution, milliseconds.
    pub cpu_usage: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// Time-ordered UUIDv7.
    pub id: String,
    pub workflow_id: String,
    pub workflow_version: u32,
    pub user_id: String,
    pub organization_id: String,
    pub status: ExecutionStatus,
    pub mode: ExecutionMode,
    #[serde(default)]
    pub input_data: Value,
    #[serde(default)]
    pub output_data: Option<Value>,
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// Milliseconds from start to the terminal status (0 until then).
    #[serde(default)]
    pub duration: u64,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub error_details: Option<Value>,
    #[serde(default)]
    pub retry_count: u32,
    #[serde(default)]
    pub retry_of: Option<String>,
    #[serde(default)]
    pub nodes_executed: u32,
    #[serde(default)]
    pub nodes_failed: u32,
    #[serde(default)]
    pub metrics: ExecutionMetrics,
    pub deadline: Timestamp,
    pub created_at: Timestamp,
    /// The trigger node this execution started from.
    pub start_node_id: String,
    /// A child execution's parent (SPEC §8); null at the top.
    #[serde(default)]
    pub parent_execution_id: Option<String>,
    /// The parent's node that started it.
    #[serde(default)]
    pub parent_node_id: Option<String>,
    /// Its item of the parent's `flow.map`.
    #[serde(default)]
    pub item_index: Option<u32>,
    /// 0 at the top, parent + 1.
    #[serde(default)]
    pub depth: u32,
    /// A child running the inline workflow of this node of its workflow version (its
    /// `workflowId` and `workflowVersion` are the parent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_of: Option<String>,
    /// Why a `pending` execution waits on purpose (SPEC §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<PendingReason>,
    /// The value of the workflow's `settings.concurrency.key` for this execution (`""`: the
    /// whole workflow), evaluated once at creation; None: no concurrency limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// The value of `settings.throttle.key` (`""`: the whole workflow); None: not throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_key: Option<String>,
    /// The value of `settings.debounce.key` (`""`: the whole workflow); None: not debounced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce_key: Option<String>,
    /// Its jobs are taken before those of lower priorities (SPEC §9).
    #[serde(default)]
    pub priority: Priority,
    /// False once a successful execution's data was dropped by the save policy (SPEC §14):
    /// its input, node outputs and `info`/`debug` logs are gone.
    #[serde(default = "yes")]
    pub data_saved: bool,
}

fn yes() -> bool {
    true
}

/// How urgent an execution's work is (SPEC §9): when work is queued, jobs of higher-priority
/// executions are taken first; equal priorities are first in, first out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The default of a mode: `manual` and `api` runs are `high` (seed 000), the others
    /// `normal`.
    pub fn default_for(mode: ExecutionMode) -> Self {
        match mode {
            ExecutionMode::Manual | ExecutionMode::Api => Self::High,
            _ => Self::Normal,
        }
    }

    /// 0 is taken first.
    pub fn rank(self) -> i64 {
        match self {
            Self::High => 0,
            Self::Normal => 1,
            Self::Low => 2,
        }
    }
}

/// Why a `pending` execution waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum PendingReason {
    /// A limit on how many run at once (a `flow.map`'s `concurrency`, `settings.concurrency`).
    Concurrency,
    /// `settings.throttle`: it starts when the window allows.
    Throttle,
    /// `settings.debounce`: it starts once its key has been quiet for the period.
    Debounce,
}

impl Execution {
    /// A new `pending` execution of `wf` starting at `start_node_id` at `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        wf: &super::Workflow,
        who: &crate::engine::Principal,
        mode: ExecutionMode,
        input: Value,
        start_node_id: String,
        now: Timestamp,
        deadline: Timestamp,
    ) -> Self {
        Self {
            id,
            workflow_id: wf.id.clone(),
            workflow_version: wf.version,
            user_id: who.user_id.clone(),
            organization_id: who.organization_id.clone(),
            status: ExecutionStatus::Pending,
            mode,
            input_data: input,
            output_data: None,
            started_at: None,
            completed_at: None,
            duration: 0,
            error_message: None,
            error_details: None,
            retry_count: 0,
            retry_of: None,
            nodes_executed: 0,
            nodes_failed: 0,
            metrics: ExecutionMetrics {
                total_nodes: wf.nodes.len() as u32,
                ..Default::default()
            },
            deadline,
            created_at: now,
            start_node_id,
            parent_execution_id: None,
            parent_node_id: None,
            item_index: None,
            depth: 0,
            inline_of: None,
            pending_reason: None,
            concurrency_key: None,
            throttle_key: None,
            debounce_key: None,
            priority: Priority::default_for(mode),
            data_saved: true,
        }
    }
}

/// Status of one node within one execution, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum NodeRunStatus {
    Pending,
    Running,
    Success,
    Failed,
    Skipped,
    Cancelled,
    /// Parked until a callback or its children arrive (not finished, not on a worker).
    Waiting,
}

impl NodeRunStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Success | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }
}

/// Why a node failed. The kinds drive `retryOn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ErrorKind {
    Timeout,
    Network,
    Http4xx,
    Http5xx,
    Http429,
    CircuitOpen,
    Expression,
    OutputTooLarge,
    /// A parameter is missing or has the wrong type once expressions are resolved,
    /// or a referenced credential does not exist.
    Configuration,
    /// `flow.fail` ran.
    FlowFail,
    /// A child execution did not succeed.
    ChildFailed,
    /// The callback reported a failure.
    CallbackFailed,
    /// A composition limit (depth, items) was hit.
    LimitExceeded,
}

impl ErrorKind {
    /// The kinds retried when a policy does not name its own `retryOn`.
    pub const TRANSIENT: [ErrorKind; 5] = [
        Self::Timeout,
        Self::Network,
        Self::Http5xx,
        Self::Http429,
        Self::CircuitOpen,
    ];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeError {
    pub message: String,
    pub kind: ErrorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl NodeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind,
            status_code: None,
            details: None,
        }
    }

    /// The error output of a node that failed after its last attempt (spec §2).
    pub fn to_output(&self) -> Value {
        serde_json::json!({
            "error": true,
            "success": false,
            "errorMessage": self.message,
            "errorKind": self.kind,
            "statusCode": self.status_code,
        })
    }
}

/// One node of one execution: its result and the protocol state that guards it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRun {
    pub execution_id: String,
    pub node_id: String,
    pub status: NodeRunStatus,
    /// Attempts started so far.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<NodeError>,
    /// How many parents have finished (or been skipped) and arrived here. (Stores keep who
    /// arrived where they need it to make arrivals idempotent.)
    #[serde(default, deserialize_with = "count_or_list")]
    pub arrived: u32,
    /// How many of them took their connection here.
    #[serde(default, alias = "takenFrom", deserialize_with = "count_or_list")]
    pub taken: u32,
    /// Set once, by the one write that found every parent arrived with a taken connection:
    /// from then on the node is due to run (a job exists or will be re-sent).
    #[serde(default)]
    pub ready: bool,
    /// Who holds the claim (a random token per claim) and until when.
    #[serde(default)]
    pub lease_token: Option<String>,
    #[serde(default)]
    pub lease_until: Option<Timestamp>,
    /// A pending run must not start before this (retry backoff, `flow.wait`).
    #[serde(default)]
    pub not_before: Option<Timestamp>,
    /// `flow.wait`: when the wait ends, fixed by its first run.
    #[serde(default)]
    pub wait_until: Option<Timestamp>,
    /// What a `waiting` run waits for (kept while it is claimed to be resumed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<super::WaitingFor>,
}

impl NodeRun {
    pub fn new(execution_id: &str, node_id: &str) -> Self {
        Self {
            execution_id: execution_id.to_string(),
            node_id: node_id.to_string(),
            status: NodeRunStatus::Pending,
            attempts: 0,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            output: None,
            error: None,
            arrived: 0,
            taken: 0,
            ready: false,
            lease_token: None,
            lease_until: None,
            not_before: None,
            wait_until: None,
            waiting: None,
        }
    }
}

/// A count, also read from the list of ids earlier versions stored.
fn count_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum CountOrList {
        Count(u32),
        List(Vec<String>),
    }
    Ok(match CountOrList::deserialize(d)? {
        CountOrList::Count(n) => n,
        CountOrList::List(ids) => ids.len() as u32,
    })
}

/// An execution with every node run recorded so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionState {
    pub execution: Execution,
    pub node_runs: Vec<NodeRun>,
}

impl ExecutionState {
    pub fn run(&self, node_id: &str) -> Option<&NodeRun> {
        self.node_runs.iter().find(|r| r.node_id == node_id)
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" => Some(Self::Warn),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionLog {
    /// UUIDv7: log ids sort in time order and serve as the `after` cursor.
    pub id: String,
    pub execution_id: String,
    /// Set in every store, never shown to clients.
    #[serde(skip_serializing, default)]
    pub organization_id: String,
    #[serde(default)]
    pub node_id: Option<String>,
    pub level: LogLevel,
    pub message: String,
    #[serde(default)]
    pub data: Option<Value>,
    pub timestamp: Timestamp,
    /// The node's position in the workflow's topological order (1-based); 0 for execution events.
    pub execution_step: u32,
    #[serde(default)]
    pub node_type: Option<String>,
    #[serde(default)]
    pub node_name: Option<String>,
}

/// A unit of queued work: run (or re-check) one node of one execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub execution_id: String,
    pub organization_id: String,
    pub node_id: String,
    #[serde(default)]
    pub attempt: u32,
    /// The execution's workflow and version, so that a worker knows what the node needs
    /// before it reads the execution (absent in jobs of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_version: Option<u32>,
    /// A waiting node's heartbeat: the number of children that had reported when it was sent
    /// (no progress since means something may be stuck).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<u32>,
    /// The node of the workflow version whose inline workflow the execution runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_of: Option<String>,
    /// Deliveries before this are sent back to the queue (delays longer than the queue allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// Its execution's priority (absent: normal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
}
