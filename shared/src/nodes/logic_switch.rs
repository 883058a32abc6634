//! OWNER: nodes helper (placeholder)
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct Switch;

#[async_trait::async_trait]
impl NodeType for Switch {
    fn type_name(&self) -> &'static str {
        "logic.switch"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        if params.contains_key("rules") {
            Ok(())
        } else {
            Err("parameter `rules` is required".into())
        }
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("logic.switch")
    }
}
