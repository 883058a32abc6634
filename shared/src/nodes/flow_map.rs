//! `flow.map`: one child execution per element of `items`, at most `concurrency` running at
//! once in index order; their results in item order. Children are ordinary executions (mode
//! `subworkflow`) with input `{"item": …, "index": i}`; the engine starts them and resumes the
//! node once every child is terminal (SPEC §8).

use super::children::{self, RAW, child_workflow, count};
use super::params::{config_error, get, is_expression};
use super::{NodeContext, NodeOutcome, NodeType};
use crate::model::{
    ChildPlan, ChildResult, ErrorKind, MAX_MAP_CONCURRENCY, MAX_MAP_ITEMS, NodeError, Resumed,
};
use serde_json::{Map, Value, json};

pub struct MapNode;

#[async_trait::async_trait]
impl NodeType for MapNode {
    fn type_name(&self) -> &'static str {
        "flow.map"
    }
    fn raw_parameters(&self) -> &'static [&'static str] {
        RAW
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        match get(params, "items") {
            None => {
                return Err(
                    "parameter `items` (an expression that yields an array) is required".into(),
                );
            }
            Some(v) if is_expression(v) || v.is_array() => {}
            Some(_) => return Err("parameter `items` must be an array or an expression".into()),
        }
        child_workflow(params)?;
        children::check_inline(params)?;
        children::check_count(params, "concurrency", 1, u64::from(MAX_MAP_CONCURRENCY))?;
        children::check_count(params, "toleratedFailures", 0, MAX_MAP_ITEMS as u64)
    }
    async fn run(
        &self,
        _ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        _input: &Value,
    ) -> NodeOutcome {
        let items = match get(params, "items") {
            Some(Value::Array(items)) => items,
            other => {
                return NodeOutcome::Failed(NodeError::new(
                    ErrorKind::Expression,
                    format!(
                        "`items` must yield an array, got {}",
                        other.map_or("nothing".to_string(), kind_of)
                    ),
                ));
            }
        };
        if items.len() > MAX_MAP_ITEMS {
            return NodeOutcome::Failed(NodeError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "`items` has {} elements, over the limit of {MAX_MAP_ITEMS}",
                    items.len()
                ),
            ));
        }
        let concurrency = match count(params, "concurrency", 10, 1, u64::from(MAX_MAP_CONCURRENCY))
        {
            Ok(n) => n as u32,
            Err(m) => return config_error(m),
        };
        let workflow = match child_workflow(params) {
            Ok(w) => w,
            Err(m) => return config_error(m),
        };
        NodeOutcome::StartChildren(ChildPlan {
            workflow,
            inputs: items
                .iter()
                .enumerate()
                .map(|(index, item)| json!({"item": item, "index": index}))
                .collect(),
            indexed: true,
            concurrency,
            wait: true,
        })
    }
    fn resume(
        &self,
        _ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        _input: &Value,
        resumed: Resumed,
    ) -> NodeOutcome {
        let Resumed::Children(results) = resumed else {
            return config_error("flow.map resumed without its children's results");
        };
        let tolerated = match count(params, "toleratedFailures", 0, 0, MAX_MAP_ITEMS as u64) {
            Ok(n) => n as usize,
            Err(m) => return config_error(m),
        };
        let failed: Vec<_> = results.iter().filter(|r| !r.succeeded()).collect();
        if failed.len() > tolerated {
            let first = failed[0];
            let mut error = NodeError::new(
                ErrorKind::ChildFailed,
                format!(
                    "{} of {} children did not succeed (tolerated: {tolerated}); the first: {}",
                    failed.len(),
                    results.len(),
                    first.failure()
                ),
            );
            error.details = Some(json!({
                "failed": failed.len(),
                "total": results.len(),
                "failedExecutions": failed.iter().take(20).map(|r| &r.execution_id).collect::<Vec<_>>(),
            }));
            return NodeOutcome::Failed(error);
        }
        let (total, failed) = (results.len(), failed.len());
        NodeOutcome::Output(json!({
            "results": results
                .into_iter()
                .map(ChildResult::into_result_entry)
                .collect::<Vec<_>>(),
            "succeeded": total - failed,
            "failed": failed,
        }))
    }
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
    .to_string()
}
