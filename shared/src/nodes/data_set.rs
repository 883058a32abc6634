//! OWNER: nodes helper (placeholder)
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct Set;

#[async_trait::async_trait]
impl NodeType for Set {
    fn type_name(&self) -> &'static str {
        "data.set"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        if params.contains_key("values") {
            Ok(())
        } else {
            Err("parameter `values` is required".into())
        }
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("data.set")
    }
}
