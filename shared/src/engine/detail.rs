//! `GET /executions/{id}`: the execution with its nodes and progress.

use super::{Engine, Principal};
use crate::model::{Execution, ExecutionStatus, NodeError, NodeRunStatus, Timestamp};
use crate::{EngineError, EngineResult};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeDetail {
    pub node_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub status: NodeRunStatus,
    pub attempts: u32,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    pub output: Option<Value>,
    pub error: Option<NodeError>,
    /// While a `flow.waitForCallback` node waits: where to call back, and until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackInfo {
    pub url: String,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub total: u32,
    pub finished: u32,
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDetail {
    #[serde(flatten)]
    pub execution: Execution,
    pub nodes: Vec<NodeDetail>,
    pub progress: Progress,
}

impl Engine {
    /// The callback URL of a node of an execution.
    pub fn callback_url(&self, exec: &Execution, node_id: &str) -> String {
        let token = self
            .callback_tokens()
            .token(&crate::callbacks::CallbackTarget {
                organization_id: exec.organization_id.clone(),
                execution_id: exec.id.clone(),
                node_id: node_id.to_string(),
            });
        crate::callbacks::CallbackTokens::url(&self.config().public_url, &token)
    }

    /// 404 for an unknown id or another organization's execution.
    pub async fn execution_detail(
        &self,
        who: &Principal,
        id: &str,
    ) -> EngineResult<ExecutionDetail> {
        let ctx = match self.load_run_context(&who.organization_id, id).await {
            Err(EngineError::NotFound(_)) => {
                return Err(EngineError::NotFound("Execution not found".into()));
            }
            other => other?,
        };
        let terminal = ctx.exec.status.is_terminal();
        let nodes: Vec<NodeDetail> = ctx
            .wf
            .nodes
            .iter()
            .map(|n| {
                let run = ctx.runs.get(&n.id);
                let mut status = run.map_or(NodeRunStatus::Pending, |r| r.status);
                // Work an ended execution will never do shows as cancelled.
                if terminal && !status.is_finished() {
                    status = NodeRunStatus::Cancelled;
                }
                NodeDetail {
                    node_id: n.id.clone(),
                    name: n.name.clone(),
                    node_type: n.node_type.clone(),
                    status,
                    attempts: run.map_or(0, |r| r.attempts),
                    started_at: run.and_then(|r| r.started_at),
                    finished_at: run.and_then(|r| r.finished_at),
                    duration_ms: run.and_then(|r| r.duration_ms),
                    output: run.and_then(|r| r.output.clone()),
                    error: run.and_then(|r| r.error.clone()),
                    callback: run
                        .filter(|r| {
                            status == NodeRunStatus::Waiting
                                && r.waiting == Some(crate::model::WaitingFor::Callback)
                        })
                        .map(|r| CallbackInfo {
                            url: self.callback_url(&ctx.exec, &n.id),
                            expires_at: r.not_before,
                        }),
                }
            })
            .collect();
        let total = nodes.len() as u32;
        let finished = nodes
            .iter()
            .filter(|n| {
                matches!(
                    n.status,
                    NodeRunStatus::Success | NodeRunStatus::Failed | NodeRunStatus::Skipped
                )
            })
            .count() as u32;
        let percent = if ctx.exec.status == ExecutionStatus::Success || total == 0 {
            100.0
        } else {
            (f64::from(finished) * 1000.0 / f64::from(total)).round() / 10.0
        };
        Ok(ExecutionDetail {
            execution: ctx.exec,
            nodes,
            progress: Progress {
                total,
                finished,
                percent,
            },
        })
    }
}
