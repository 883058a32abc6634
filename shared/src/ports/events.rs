//! Execution events, published on every terminal status.

use crate::model::{ExecutionStatus, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The detail of `detail-type: "WeConnect Execution Status Changed"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionEvent {
    pub execution_id: String,
    pub organization_id: String,
    pub workflow_id: String,
    pub status: ExecutionStatus,
    pub duration: u64,
    #[serde(default)]
    pub error_message: Option<String>,
    pub at: Timestamp,
}

#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Best effort: a failure is logged by the caller, never fails the execution.
    async fn publish(&self, event: &ExecutionEvent) -> Result<(), String>;
}

/// Publishes nowhere (tests, tools).
#[derive(Debug, Default, Clone)]
pub struct NoEvents;

#[async_trait]
impl EventSink for NoEvents {
    async fn publish(&self, _event: &ExecutionEvent) -> Result<(), String> {
        Ok(())
    }
}

/// In-process broadcast of events (the local server: `responseMode: lastNode` waits on it).
#[derive(Debug, Clone)]
pub struct BroadcastEvents {
    sender: tokio::sync::broadcast::Sender<ExecutionEvent>,
}

impl BroadcastEvents {
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: tokio::sync::broadcast::channel(capacity).0,
        }
    }
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ExecutionEvent> {
        self.sender.subscribe()
    }
}

#[async_trait]
impl EventSink for BroadcastEvents {
    async fn publish(&self, event: &ExecutionEvent) -> Result<(), String> {
        // No subscriber is not an error.
        let _ = self.sender.send(event.clone());
        Ok(())
    }
}

/// Keeps a platform scheduler in step with `active` scheduled workflows (EventBridge rules in
/// production). The local server needs none: its schedule runner reads the store.
#[async_trait]
pub trait ScheduleSync: Send + Sync + 'static {
    /// Before a workflow with these nodes is saved: can this platform run its schedule? An
    /// error is the reason, naming the node (the save is refused with a 400 and nothing is
    /// stored). Default: any schedule the engine accepts.
    fn check(&self, _nodes: &[crate::model::Node]) -> Result<(), String> {
        Ok(())
    }

    /// Called after every create, update and status change of a workflow.
    async fn workflow_saved(&self, wf: &crate::model::Workflow) -> Result<(), String>;
    async fn workflow_deleted(&self, org: &str, workflow_id: &str) -> Result<(), String>;
}

/// No platform scheduler (the embedded default).
#[derive(Debug, Default, Clone)]
pub struct NoScheduleSync;

#[async_trait]
impl ScheduleSync for NoScheduleSync {
    async fn workflow_saved(&self, _wf: &crate::model::Workflow) -> Result<(), String> {
        Ok(())
    }
    async fn workflow_deleted(&self, _org: &str, _workflow_id: &str) -> Result<(), String> {
        Ok(())
    }
}
