//! OWNER: nodes helper (placeholder)
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct Fail;

#[async_trait::async_trait]
impl NodeType for Fail {
    fn type_name(&self) -> &'static str {
        "flow.fail"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        if params.contains_key("message") {
            Ok(())
        } else {
            Err("parameter `message` is required".into())
        }
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("flow.fail")
    }
}
