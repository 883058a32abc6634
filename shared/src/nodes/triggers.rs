//! OWNER: nodes helper (placeholder)
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct ManualTrigger;

#[async_trait::async_trait]
impl NodeType for ManualTrigger {
    fn type_name(&self) -> &'static str {
        "trigger.manual"
    }
    fn is_trigger(&self) -> bool {
        true
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("trigger.manual")
    }
}

pub struct WebhookTrigger;

#[async_trait::async_trait]
impl NodeType for WebhookTrigger {
    fn type_name(&self) -> &'static str {
        "trigger.webhook"
    }
    fn is_trigger(&self) -> bool {
        true
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("trigger.webhook")
    }
}

pub struct ScheduleTrigger;

#[async_trait::async_trait]
impl NodeType for ScheduleTrigger {
    fn type_name(&self) -> &'static str {
        "trigger.schedule"
    }
    fn is_trigger(&self) -> bool {
        true
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        if params.contains_key("cron") || params.contains_key("rate") {
            Ok(())
        } else {
            Err("parameter `cron` or `rate` is required".into())
        }
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let _ = (ctx, params, input);
        todo!("trigger.schedule")
    }
}
