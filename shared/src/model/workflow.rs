//! Workflows as users write them (spec §2).

use super::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum WorkflowStatus {
    #[default]
    Draft,
    Active,
    Inactive,
    Archived,
}

/// What a client sends to create or replace a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub status: WorkflowStatus,
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub connections: Vec<Connection>,
    #[serde(default)]
    pub settings: WorkflowSettings,
}

/// A stored workflow: one version of a definition plus its identity and bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub status: WorkflowStatus,
    /// Starts at 1; every update bumps it. An execution runs the version it started with.
    pub version: u32,
    pub nodes: Vec<Node>,
    pub connections: Vec<Connection>,
    #[serde(default)]
    pub settings: WorkflowSettings,
    #[serde(default)]
    pub execution_count: u64,
    #[serde(default)]
    pub last_executed_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Workflow {
    /// Version 1 of `def` (with its status), created by `who` at `now`.
    pub fn first_version(
        id: String,
        who: &crate::engine::Principal,
        def: WorkflowDefinition,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            organization_id: who.organization_id.clone(),
            user_id: who.user_id.clone(),
            name: def.name,
            description: def.description,
            status: def.status,
            version: 1,
            nodes: def.nodes,
            connections: def.connections,
            settings: def.settings,
            execution_count: 0,
            last_executed_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The definition part (what a client sent).
    pub fn definition(&self) -> WorkflowDefinition {
        WorkflowDefinition {
            name: self.name.clone(),
            description: self.description.clone(),
            status: self.status,
            nodes: self.nodes.clone(),
            connections: self.connections.clone(),
            settings: self.settings.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowSettings {
    /// Default execution timeout for this workflow (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A workflow (with a `trigger.error` node) started once for every execution of this one
    /// that ends `failed` or `timeout` (SPEC §8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_workflow_id: Option<String>,
    /// At most `limit` executions `running` at once per value of `key` (SPEC §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySetting>,
    /// At most `limit` starts in any window of `periodMs` per value of `key` (SPEC §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleSetting>,
    /// The newest start per value of `key` runs once the key is quiet for `periodMs` (SPEC §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<DebounceSetting>,
    /// What a successful execution keeps (SPEC §14); None: `EXECUTIONS_DATA_SAVE_ON_SUCCESS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_data_on_success: Option<SaveData>,
}

/// `settings.saveDataOnSuccess` / `EXECUTIONS_DATA_SAVE_ON_SUCCESS` (SPEC §14): `none` drops a
/// successful execution's input, node outputs and `info`/`debug` logs when it finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum SaveData {
    #[default]
    All,
    None,
}

impl std::str::FromStr for SaveData {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Self::All),
            "none" => Ok(Self::None),
            other => Err(format!("expected all or none, got {other:?}")),
        }
    }
}

/// `settings.throttle`: at most `limit` (1–1000) starts in any window of `periodMs`
/// (100–86,400,000) per value of `key`; the rest wait, nothing is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThrottleSetting {
    pub limit: u32,
    pub period_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `settings.debounce`: a start waits `periodMs` (100–86,400,000); a newer start with the same
/// key replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DebounceSetting {
    pub period_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Bounds of `periodMs` of `settings.throttle` and `settings.debounce`.
pub const FLOW_PERIOD_MS_RANGE: (u64, u64) = (100, 86_400_000);

/// `settings.concurrency`: `limit` (1–1000) running at once per value of `key` (an expression
/// over `trigger`, evaluated once when an execution is created; none: one key for the whole
/// workflow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConcurrencySetting {
    pub limit: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Bounds of `settings.concurrency.limit`.
pub const CONCURRENCY_LIMIT_RANGE: (u32, u32) = (1, 1_000);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub node_type: String,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// `false`: the node passes its input through and is recorded as skipped.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

pub const MAIN: &str = "main";
pub const ERROR: &str = "error";
pub const TRUE: &str = "true";
pub const FALSE: &str = "false";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Connection {
    pub source: String,
    pub target: String,
    /// `main` (default), `error`, `true`, `false`, or a switch case name.
    #[serde(rename = "type", default = "main_type")]
    pub kind: String,
}

fn main_type() -> String {
    MAIN.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    /// The execution fails.
    Stop,
    /// The error output goes on along `main`.
    Continue,
    /// Only `error` connections are taken.
    ErrorOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Backoff {
    Fixed,
    #[default]
    Exponential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Jitter {
    Full,
    #[default]
    None,
}

/// Per-node retry policy; unset fields take the configured defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
    #[serde(default)]
    pub jitter: Jitter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<super::ErrorKind>>,
}
