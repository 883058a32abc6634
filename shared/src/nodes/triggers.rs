//! OWNER: nodes helper (placeholder)
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct ManualTrigger;

#[async_trait::async_trait]
impl NodeType for ManualTrigger {
    fn type_name(&self) -> &'static str {
        "trigger.manual"
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
