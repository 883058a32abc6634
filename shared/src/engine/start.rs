//! Starting an execution: create it, lay out its first node runs, queue its first job.

use super::{Engine, Principal};
use crate::EngineResult;
use crate::model::{Execution, ExecutionMode};
use serde_json::Value;

/// A request to run a workflow (API, webhook, schedule, CLI).
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    pub principal: Principal,
    pub workflow_id: String,
    pub mode: ExecutionMode,
    /// What the trigger outputs: the API's `inputData`, the webhook request, `{scheduledAt}`.
    pub input: Value,
    /// Execution timeout (ms); None: the workflow's `settings.timeoutMs` or the default.
    pub timeout_ms: Option<u64>,
    /// Already scoped by the caller (e.g. `api:{key}`, `webhook:{id}:{key}`, `schedule:{wf}:{t}`).
    pub idempotency_key: Option<String>,
    /// The trigger node to start from; None: the first `trigger.manual`, else the first trigger.
    pub start_node_id: Option<String>,
}

impl Engine {
    /// Starts an execution. Returns it and whether it was created now (false: the
    /// idempotency key returned an earlier one).
    pub async fn start_execution(&self, req: StartRequest) -> EngineResult<(Execution, bool)> {
        let _ = req;
        todo!("engine: start")
    }
}

impl Engine {
    /// One tick of a `trigger.schedule` node: starts an execution (mode `scheduled`, input
    /// `{scheduledAt}`) of an `active` workflow, once per (workflow, tick) however often it is
    /// delivered. None when the workflow is gone or no longer active.
    pub async fn fire_schedule(
        &self,
        org: &str,
        workflow_id: &str,
        scheduled_at: crate::model::Timestamp,
    ) -> EngineResult<Option<Execution>> {
        let _ = (org, workflow_id, scheduled_at);
        todo!("engine: fire_schedule")
    }
}
