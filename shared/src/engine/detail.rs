//! `GET /executions/{id}`: the execution with its nodes and progress.

use super::{Engine, Principal};
use crate::EngineResult;
use crate::model::{Execution, NodeError, NodeRunStatus, Timestamp};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub total: u32,
    pub finished: u32,
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDetail {
    #[serde(flatten)]
    pub execution: Execution,
    pub nodes: Vec<NodeDetail>,
    pub progress: Progress,
}

impl Engine {
    /// 404 for an unknown id or another organization's execution.
    pub async fn execution_detail(
        &self,
        who: &Principal,
        id: &str,
    ) -> EngineResult<ExecutionDetail> {
        let _ = (who, id);
        todo!("engine: detail")
    }
}
