//! OWNER: nodes helper (placeholder)
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct HttpRequest;

#[async_trait::async_trait]
impl NodeType for HttpRequest {
    fn type_name(&self) -> &'static str {
        "http.request"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        if params.contains_key("url") {
            Ok(())
        } else {
            Err("parameter `url` is required".into())
        }
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("http.request")
    }
}
