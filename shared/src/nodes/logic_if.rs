//! OWNER: nodes helper (placeholder)
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct If;

#[async_trait::async_trait]
impl NodeType for If {
    fn type_name(&self) -> &'static str {
        "logic.if"
    }
    fn is_condition(&self) -> bool {
        true
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        if params.contains_key("condition") {
            Ok(())
        } else {
            Err("parameter `condition` is required".into())
        }
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("logic.if")
    }
}
