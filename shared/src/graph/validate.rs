//! Workflow validation (spec §2): every message names the offending node or connection.
//! OWNER: graph/expressions helper (replace this placeholder with the real checks).

use crate::model::WorkflowDefinition;
use serde_json::Value;

/// Why a workflow was rejected; `details` goes into the 400 response's `details`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub message: String,
    pub details: Value,
}

pub fn validate(def: &WorkflowDefinition) -> Result<(), ValidationError> {
    let _ = def;
    todo!("graph validation")
}
