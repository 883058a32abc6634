//! OWNER: nodes helper (placeholder)
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct Wait;

#[async_trait::async_trait]
impl NodeType for Wait {
    fn type_name(&self) -> &'static str {
        "flow.wait"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        if params.contains_key("durationMs") {
            Ok(())
        } else {
            Err("parameter `durationMs` is required".into())
        }
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("flow.wait")
    }
}
