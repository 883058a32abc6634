//! `flow.subworkflow`: starts one child execution with `input` (default: this node's input).
//! `wait: true` (default): the node waits and outputs the child's `outputData`, or fails with
//! kind `childFailed` when the child does not succeed. `wait: false`: the child is detached
//! and the node outputs `{"executionId"}` at once (SPEC §8).

use super::children::{self, RAW, child_workflow};
use super::params::{config_error, get, is_expression};
use super::{NodeContext, NodeOutcome, NodeType};
use crate::model::{ChildPlan, ErrorKind, NodeError, Resumed};
use serde_json::{Map, Value};

pub struct Subworkflow;

fn wait(params: &Map<String, Value>) -> Result<bool, String> {
    match get(params, "wait") {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err("parameter `wait` must be true or false".into()),
    }
}

#[async_trait::async_trait]
impl NodeType for Subworkflow {
    fn type_name(&self) -> &'static str {
        "flow.subworkflow"
    }
    fn raw_parameters(&self) -> &'static [&'static str] {
        RAW
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        child_workflow(params)?;
        children::check_inline(params)?;
        match get(params, "wait") {
            Some(v) if is_expression(v) => {
                Err("parameter `wait` must be true or false, not an expression".into())
            }
            _ => wait(params).map(|_| ()),
        }
    }
    async fn run(
        &self,
        _ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let (workflow, wait) = match (child_workflow(params), wait(params)) {
            (Ok(w), Ok(wait)) => (w, wait),
            (Err(m), _) | (_, Err(m)) => return config_error(m),
        };
        let child_input = params
            .get("input")
            .cloned()
            .unwrap_or_else(|| input.clone());
        NodeOutcome::StartChildren(ChildPlan {
            workflow,
            inputs: vec![child_input],
            indexed: false,
            concurrency: 1,
            wait,
        })
    }
    fn resume(
        &self,
        _ctx: &NodeContext<'_>,
        _params: &Map<String, Value>,
        _input: &Value,
        resumed: Resumed,
    ) -> NodeOutcome {
        let Resumed::Children(results) = resumed else {
            return config_error("flow.subworkflow resumed without its child's result");
        };
        match results.into_iter().next() {
            Some(child) if child.succeeded() => {
                NodeOutcome::Output(child.output.unwrap_or(Value::Null))
            }
            Some(child) => {
                let mut error = NodeError::new(ErrorKind::ChildFailed, child.failure());
                error.details = Some(serde_json::json!({
                    "executionId": child.execution_id,
                    "status": child.status,
                }));
                NodeOutcome::Failed(error)
            }
            None => config_error("flow.subworkflow has no child"),
        }
    }
}
