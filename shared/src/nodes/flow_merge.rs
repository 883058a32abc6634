//! OWNER: nodes helper (placeholder)
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct Merge;

#[async_trait::async_trait]
impl NodeType for Merge {
    fn type_name(&self) -> &'static str {
        "flow.merge"
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("flow.merge")
    }
}
