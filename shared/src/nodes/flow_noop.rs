//! OWNER: nodes helper (placeholder)
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct Noop;

#[async_trait::async_trait]
impl NodeType for Noop {
    fn type_name(&self) -> &'static str {
        "flow.noop"
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("flow.noop")
    }
}
