//! `GET /executions/{id}`: the execution with its nodes and progress.

use super::run::RunContext;
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

/// Outputs larger than this (serialized) are shown in `GET /executions/{id}` as a reference
/// to their own route (SPEC §12).
pub const OUTPUT_INLINE_MAX: usize = 64 * 1024;

impl ExecutionDetail {
    /// The detail as the API shows it: every node output over [`OUTPUT_INLINE_MAX`] bytes is
    /// replaced by `{"outputRef": "/executions/{id}/nodes/{nodeId}/output", "outputSize": n}`
    /// (its route answers the whole output), so the detail stays small whatever the nodes
    /// produced.
    pub fn with_output_refs(mut self) -> Self {
        for node in &mut self.nodes {
            let Some(output) = &node.output else { continue };
            let size = serde_json::to_vec(output).map_or(0, |bytes| bytes.len());
            if size > OUTPUT_INLINE_MAX {
                node.output = Some(serde_json::json!({
                    "outputRef": format!("/executions/{}/nodes/{}/output", self.execution.id, node.node_id),
                    "outputSize": size,
                }));
            }
        }
        self
    }
}

impl Engine {
    /// The whole output of node `node_id` of execution `id` (the route an `outputRef` names).
    /// 404 for an unknown execution or node, or a node without an output.
    pub async fn node_output(
        &self,
        who: &Principal,
        id: &str,
        node_id: &str,
    ) -> EngineResult<Value> {
        // One read of the execution and its runs; not the whole detail for one output.
        let mut ctx = self.own_run_context(who, id).await?;
        if ctx.wf.node(node_id).is_none() {
            return Err(EngineError::NotFound("Node not found".into()));
        }
        ctx.runs
            .remove(node_id)
            .and_then(|run| run.output)
            .ok_or_else(|| EngineError::NotFound("Node has no output".into()))
    }

    /// The caller's execution with its workflow and runs; 404 "Execution not found" for an
    /// unknown id or another organization's execution.
    async fn own_run_context(&self, who: &Principal, id: &str) -> EngineResult<RunContext> {
        match self.load_run_context(&who.organization_id, id).await {
            Err(EngineError::NotFound(_)) => {
                Err(EngineError::NotFound("Execution not found".into()))
            }
            other => other,
        }
    }

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
        let ctx = self.own_run_context(who, id).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(id: &str, output: Option<Value>) -> NodeDetail {
        NodeDetail {
            node_id: id.into(),
            name: id.into(),
            node_type: "data.set".into(),
            status: NodeRunStatus::Success,
            attempts: 1,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            output,
            error: None,
            callback: None,
        }
    }

    #[test]
    fn large_outputs_become_references_to_their_route() {
        let execution: Execution = serde_json::from_value(json!({
            "id": "e1", "workflowId": "w", "workflowVersion": 1, "userId": "u",
            "organizationId": "o", "status": "success", "mode": "manual",
            "createdAt": "2026-01-01T00:00:00.000Z", "deadline": "2026-01-01T00:05:00.000Z",
            "startNodeId": "start"
        }))
        .expect("an execution");
        let big = json!({"text": "x".repeat(OUTPUT_INLINE_MAX)});
        let small = json!({"ok": true});
        let detail = ExecutionDetail {
            execution,
            nodes: vec![
                node("big", Some(big.clone())),
                node("small", Some(small.clone())),
                node("none", None),
            ],
            progress: Progress {
                total: 3,
                finished: 3,
                percent: 100.0,
            },
        }
        .with_output_refs();
        let size = serde_json::to_vec(&big).unwrap().len();
        assert_eq!(
            detail.nodes[0].output,
            Some(json!({"outputRef": "/executions/e1/nodes/big/output", "outputSize": size}))
        );
        assert_eq!(detail.nodes[1].output, Some(small));
        assert_eq!(detail.nodes[2].output, None);
    }
}
