//! Trigger nodes: the start points. Each outputs the execution's input, which the starter
//! shaped (`{body, headers, query, method, path}` for webhooks, `{scheduledAt}` for schedules,
//! the request's `inputData` for manual and API runs).

use super::params::get;
use super::schedule::Schedule;
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

/// Webhook methods a trigger may listen to.
pub const WEBHOOK_METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
/// Longest webhook path (id).
pub const MAX_WEBHOOK_PATH: usize = 128;

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

/// Is `path` a valid webhook id: 1–128 of `[A-Za-z0-9_-]`?
pub fn valid_webhook_path(path: &str) -> bool {
    (1..=MAX_WEBHOOK_PATH).contains(&path.len())
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn non_empty_str<'a>(auth: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match auth.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        _ => Err(format!(
            "parameter `auth.{key}` is required and must be a non-empty string"
        )),
    }
}

fn validate_auth(auth: &Value) -> Result<(), String> {
    let Value::Object(auth) = auth else {
        return Err("parameter `auth` must be an object with a `type`".into());
    };
    match auth.get("type").and_then(Value::as_str) {
        Some("none") => Ok(()),
        Some("header") => {
            let name = non_empty_str(auth, "name")?;
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!(
                    "parameter `auth.name` is not a valid header name: {name:?}"
                ));
            }
            non_empty_str(auth, "credential").map(|_| ())
        }
        Some("hmac") => non_empty_str(auth, "credential").map(|_| ()),
        _ => Err("parameter `auth.type` must be one of \"none\", \"header\", \"hmac\"".into()),
    }
}

#[async_trait::async_trait]
impl NodeType for WebhookTrigger {
    fn type_name(&self) -> &'static str {
        "trigger.webhook"
    }
    fn is_trigger(&self) -> bool {
        true
    }
    /// The webhook's settings are read by the intake, not resolved: no expressions here.
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        match get(params, "method") {
            None => {}
            Some(Value::String(m)) if WEBHOOK_METHODS.contains(&m.as_str()) => {}
            Some(_) => {
                return Err(format!(
                    "parameter `method` must be one of {} (default POST)",
                    WEBHOOK_METHODS.join(", ")
                ));
            }
        }
        match get(params, "path") {
            None => {}
            Some(Value::String(p)) if valid_webhook_path(p) => {}
            Some(_) => {
                return Err(format!(
                    "parameter `path` must be 1-{MAX_WEBHOOK_PATH} characters of A-Z, a-z, 0-9, `_` and `-`"
                ));
            }
        }
        if let Some(auth) = get(params, "auth") {
            validate_auth(auth)?;
        }
        match get(params, "responseMode") {
            None => Ok(()),
            Some(Value::String(m)) if m == "onReceived" || m == "lastNode" => Ok(()),
            Some(_) => {
                Err("parameter `responseMode` must be \"onReceived\" or \"lastNode\"".into())
            }
        }
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
                json!({"auth": {"type": "header", "credential": "c"}}),
                "auth.name",
            ),
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
