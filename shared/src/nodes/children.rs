//! What `flow.map` and `flow.subworkflow` share: the child workflow they name (inline, or by
//! reference), and its checks at save time.

use super::params::{get, is_expression};
use crate::model::{ChildWorkflow, WorkflowDefinition};
use serde_json::{Map, Value};

/// Parameters the engine passes on unresolved: an inline child workflow's expressions are
/// the child's, evaluated in the child's executions.
pub const RAW: &[&str] = &["workflow"];

/// The child workflow a node's parameters name.
pub fn child_workflow(params: &Map<String, Value>) -> Result<ChildWorkflow, String> {
    match (get(params, "workflow"), get(params, "workflowId")) {
        (Some(_), Some(_)) => {
            Err("give either `workflow` (inline) or `workflowId`, not both".into())
        }
        (Some(_), None) => Ok(ChildWorkflow::Inline),
        (None, Some(Value::String(id))) if !id.trim().is_empty() => Ok(ChildWorkflow::Reference {
            id: id.clone(),
            version: version(params)?,
        }),
        (None, Some(_)) => Err("parameter `workflowId` must be a workflow id".into()),
        (None, None) => {
            Err("parameter `workflow` (an inline workflow) or `workflowId` is required".into())
        }
    }
}

fn version(params: &Map<String, Value>) -> Result<Option<u32>, String> {
    match get(params, "version") {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| "parameter `version` must be a workflow version (1 or more)".into()),
    }
}

/// The inline child workflow, checked as a workflow of its own: it must pass every check a
/// saved workflow passes and start with a `trigger.manual` node. Messages start with
/// `workflow: ` (the node's label is added by the caller).
pub fn check_inline(params: &Map<String, Value>) -> Result<(), String> {
    let Some(raw) = get(params, "workflow") else {
        return Ok(());
    };
    let mut raw = raw.clone();
    if let Value::Object(map) = &mut raw {
        // The name is the parent's business; an inline workflow may leave it out.
        map.entry("name")
            .or_insert_with(|| Value::String("inline".into()));
    }
    let def: WorkflowDefinition = serde_json::from_value(raw)
        .map_err(|e| format!("workflow: not a workflow definition: {e}"))?;
    crate::graph::validate(&def).map_err(|e| format!("workflow: {}", e.message))?;
    if !def
        .nodes
        .iter()
        .any(|n| n.node_type == crate::triggers::MANUAL_TRIGGER && n.enabled)
    {
        return Err("workflow: an inline workflow needs a `trigger.manual` node".into());
    }
    Ok(())
}

/// The inline child workflow as a definition (parsed again at run time; validated at save).
pub fn inline_definition(params: &Map<String, Value>) -> Option<WorkflowDefinition> {
    let mut raw = get(params, "workflow")?.clone();
    if let Value::Object(map) = &mut raw {
        map.entry("name")
            .or_insert_with(|| Value::String("inline".into()));
    }
    serde_json::from_value(raw).ok()
}

/// `validate` helper: an integer parameter within `min..=max` (or an expression).
pub fn check_count(
    params: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<(), String> {
    match get(params, key) {
        None => Ok(()),
        Some(v) if is_expression(v) => Ok(()),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(format!(
                "parameter `{key}` must be a whole number from {min} to {max}"
            )),
        },
    }
}

/// A resolved integer parameter (validation checked its range when it was not an expression).
pub fn count(
    params: &Map<String, Value>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, String> {
    match get(params, key) {
        None => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "parameter `{key}` must be a whole number from {min} to {max}, got {v}"
            )),
        },
    }
}
