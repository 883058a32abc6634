//! Trigger nodes: the start points. Each outputs the execution's input, which the starter
//! shaped (`{body, headers, query, method, path}` for webhooks, `{scheduledAt}` for schedules,
//! the request's `inputData` for manual and API runs).

use super::schedule::Schedule;
use super::{NodeContext, NodeOutcome, NodeType};
use crate::triggers::WebhookConfig;
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
        _params: &Map<String, Value>,
        _input: &Value,
    ) -> NodeOutcome {
        NodeOutcome::Output(ctx.execution.input_data.clone())
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
    /// The webhook's settings are read by the intake, not resolved: no expressions here.
    /// One parser for the settings ([`WebhookConfig`]), here and at the intake.
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        WebhookConfig::parse(params).map(|_| ())
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        _params: &Map<String, Value>,
        _input: &Value,
    ) -> NodeOutcome {
        NodeOutcome::Output(ctx.execution.input_data.clone())
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
        Schedule::parse(params).map(|_| ())
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        _params: &Map<String, Value>,
        _input: &Value,
    ) -> NodeOutcome {
        NodeOutcome::Output(ctx.execution.input_data.clone())
    }
}

pub struct ErrorTrigger;

/// `trigger.error`: the start point of an error workflow (SPEC §8). Its output is the
/// execution's input: `{"execution": {id, workflowId, status, errorMessage, errorDetails,
/// mode}, "workflow": {id, name, version}}` of the execution that failed.
#[async_trait::async_trait]
impl NodeType for ErrorTrigger {
    fn type_name(&self) -> &'static str {
        crate::triggers::ERROR_TRIGGER
    }
    fn is_trigger(&self) -> bool {
        true
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        _params: &Map<String, Value>,
        _input: &Value,
    ) -> NodeOutcome {
        NodeOutcome::Output(ctx.execution.input_data.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, output, validate};
    use serde_json::json;

    #[tokio::test]
    async fn triggers_output_the_execution_input() {
        for t in ["trigger.manual", "trigger.webhook", "trigger.schedule"] {
            let mut h = Harness::new(t, json!({}));
            h.execution.input_data = json!({"body": {"amount": 120}, "method": "POST"});
            let out = output(h.run(json!("ignored")).await);
            assert_eq!(
                out,
                json!({"body": {"amount": 120}, "method": "POST"}),
                "{t}"
            );
            assert!(super::super::node_type(t).unwrap().is_trigger());
        }
    }

    #[test]
    fn webhook_parameters_are_checked() {
        let ok = [
            json!({}),
            json!({"method": "GET"}),
            json!({"method": "HEAD", "path": "orders_2024-new"}),
            json!({"path": "a".repeat(128)}),
            json!({"auth": {"type": "none"}}),
            json!({"auth": {"type": "header", "name": "X-Api-Key", "credential": "hook-key"}}),
            json!({"auth": {"type": "hmac", "credential": "cred-1"}}),
            json!({"responseMode": "onReceived"}),
            json!({"responseMode": "lastNode", "method": null}),
        ];
        for p in ok {
            assert_eq!(validate("trigger.webhook", p.clone()), Ok(()), "{p}");
        }
        let bad = [
            (json!({"method": "post"}), "method"),
            (json!({"method": "TRACE"}), "method"),
            (json!({"method": 1}), "method"),
            (json!({"path": ""}), "path"),
            (json!({"path": "a/b"}), "path"),
            (json!({"path": "héllo"}), "path"),
            (json!({"path": "a".repeat(129)}), "path"),
            (json!({"path": "{{ json.x }}"}), "path"),
            (json!({"auth": "none"}), "auth"),
            (json!({"auth": {"type": "basic"}}), "auth.type"),
            (
                json!({"auth": {"type": "header", "name": "Bad Header", "credential": "c"}}),
                "auth.name",
            ),
            (
                json!({"auth": {"type": "header", "name": "X-Key"}}),
                "auth.credential",
            ),
            (json!({"auth": {"type": "hmac"}}), "auth.credential"),
            (
                json!({"auth": {"type": "hmac", "credential": ""}}),
                "auth.credential",
            ),
            (json!({"responseMode": "sync"}), "responseMode"),
            (json!({"responseMode": "{{ x }}"}), "responseMode"),
            (json!({"responseMode": true}), "responseMode"),
        ];
        for (p, names) in bad {
            let err = validate("trigger.webhook", p.clone()).unwrap_err();
            assert!(err.contains(&format!("`{names}`")), "{p}: {err}");
        }
    }

    #[test]
    fn schedule_parameters_are_checked() {
        assert_eq!(
            validate("trigger.schedule", json!({"cron": "*/5 * * * *"})),
            Ok(())
        );
        assert_eq!(
            validate(
                "trigger.schedule",
                json!({"rate": "5 minutes", "timezone": "Europe/Paris"})
            ),
            Ok(())
        );
        assert!(
            validate("trigger.schedule", json!({}))
                .unwrap_err()
                .contains("`cron`")
        );
        assert!(
            validate(
                "trigger.schedule",
                json!({"cron": "* * * * *", "rate": "1 hour"})
            )
            .is_err()
        );
        assert!(
            validate("trigger.schedule", json!({"cron": "bad"}))
                .unwrap_err()
                .contains("`cron`")
        );
        assert!(
            validate("trigger.schedule", json!({"rate": "often"}))
                .unwrap_err()
                .contains("`rate`")
        );
    }
}
