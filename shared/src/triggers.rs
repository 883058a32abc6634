//! Trigger rules in one place: which nodes are triggers of which kind, the webhook settings
//! (one parser for validation, the intake and the routes), which workflows are scheduled and
//! by which nodes, and the node an execution starts from.

use crate::model::{Node, Workflow, WorkflowStatus};
use crate::nodes::schedule::Schedule;
use crate::ports::WebhookRoute;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The node type of manual and API starts.
pub const MANUAL_TRIGGER: &str = "trigger.manual";
/// The node type error workflows start from.
pub const ERROR_TRIGGER: &str = "trigger.error";

/// The node type of webhook triggers.
pub const WEBHOOK_TRIGGER: &str = "trigger.webhook";
/// The node type of schedule triggers.
pub const SCHEDULE_TRIGGER: &str = "trigger.schedule";
/// Longest webhook id accepted.
pub const MAX_WEBHOOK_ID_LEN: usize = 128;

/// Webhook methods a trigger may listen to.
pub const WEBHOOK_METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

/// The webhook routes a workflow's `trigger.webhook` nodes declare (those with a `path`).
pub fn webhook_routes(wf: &Workflow) -> Vec<WebhookRoute> {
    wf.nodes
        .iter()
        .filter(|n| n.node_type == WEBHOOK_TRIGGER)
        .filter_map(|n| {
            let path = n.parameters.get("path")?.as_str()?;
            Some(WebhookRoute {
                webhook_id: path.to_string(),
                organization_id: wf.organization_id.clone(),
                workflow_id: wf.id.clone(),
                node_id: n.id.clone(),
            })
        })
        .collect()
}

/// A new random webhook id: 128 random bits, base64url without padding (22 characters).
pub fn generate_webhook_id() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Is `id` usable as a webhook id (one URL path segment): 1–128 of `[A-Za-z0-9_-]`?
pub fn is_valid_webhook_id(id: &str) -> bool {
    (1..=MAX_WEBHOOK_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Webhook authentication of a `trigger.webhook` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAuth {
    None,
    /// The request header `name` must equal the value of the `httpHeader` credential
    /// (`name` defaults to the credential's own header name).
    Header {
        name: Option<String>,
        credential: String,
    },
    /// Standard Webhooks signature with the `hmacSecret` credential.
    Hmac {
        credential: String,
    },
}

/// When the webhook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// 202 `{executionId, status}` at once.
    OnReceived,
    /// Waits for the execution to finish and returns its output.
    LastNode,
}

/// The parameters of a `trigger.webhook` node, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub path: Option<String>,
    /// Upper-case HTTP method (default `POST`).
    pub method: String,
    pub auth: WebhookAuth,
    pub response_mode: ResponseMode,
}

const METHODS: [&str; 6] = WEBHOOK_METHODS;

impl WebhookConfig {
    /// From a `trigger.webhook` node's parameters; the message names the bad parameter.
    pub fn parse(params: &Map<String, Value>) -> Result<Self, String> {
        let path = match params.get("path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if is_valid_webhook_id(p) => Some(p.clone()),
            Some(_) => {
                return Err(format!(
                    "parameter `path` must be 1 to {MAX_WEBHOOK_ID_LEN} characters of \
                     letters, digits, `-` and `_`"
                ));
            }
        };
        let method = match params.get("method") {
            None | Some(Value::Null) => "POST".to_string(),
            Some(Value::String(m)) if METHODS.contains(&m.as_str()) => m.clone(),
            Some(_) => {
                return Err(format!(
                    "parameter `method` must be one of {}",
                    METHODS.join(", ")
                ));
            }
        };
        let auth = match params.get("auth") {
            None | Some(Value::Null) => WebhookAuth::None,
            Some(Value::Object(a)) => parse_auth(a)?,
            Some(_) => return Err("parameter `auth` must be an object with a `type`".into()),
        };
        let response_mode = match params.get("responseMode") {
            None | Some(Value::Null) => ResponseMode::OnReceived,
            Some(Value::String(m)) if m == "onReceived" => ResponseMode::OnReceived,
            Some(Value::String(m)) if m == "lastNode" => ResponseMode::LastNode,
            Some(_) => {
                return Err("parameter `responseMode` must be `onReceived` or `lastNode`".into());
            }
        };
        Ok(Self {
            path,
            method,
            auth,
            response_mode,
        })
    }
}

fn parse_auth(a: &Map<String, Value>) -> Result<WebhookAuth, String> {
    let credential = || -> Result<String, String> {
        match a.get("credential") {
            Some(Value::String(c)) if !c.trim().is_empty() => Ok(c.clone()),
            _ => Err("parameter `auth.credential` (a credential id or name) is required".into()),
        }
    };
    match a.get("type").and_then(Value::as_str) {
        Some("none") => Ok(WebhookAuth::None),
        Some("header") => {
            let name = match a.get("name") {
                None | Some(Value::Null) => None,
                Some(Value::String(n)) if http::HeaderName::from_bytes(n.as_bytes()).is_ok() => {
                    Some(n.to_ascii_lowercase())
                }
                Some(_) => return Err("parameter `auth.name` must be a valid header name".into()),
            };
            Ok(WebhookAuth::Header {
                name,
                credential: credential()?,
            })
        }
        Some("hmac") => Ok(WebhookAuth::Hmac {
            credential: credential()?,
        }),
        _ => Err("parameter `auth.type` must be `none`, `header` or `hmac`".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Schedules

/// The enabled `trigger.schedule` nodes of a workflow with their schedules (a node whose
/// schedule does not parse is left out: validation refuses it on save).
pub fn schedules(wf: &Workflow) -> Vec<(&Node, Schedule)> {
    wf.nodes
        .iter()
        .filter(|n| n.node_type == SCHEDULE_TRIGGER && n.enabled)
        .filter_map(|n| Schedule::parse(&n.parameters).ok().map(|s| (n, s)))
        .collect()
}

/// Does the workflow have an enabled schedule trigger (whatever its status)? Stores keep
/// this to list scheduled workflows.
pub fn has_schedule(wf: &Workflow) -> bool {
    wf.nodes
        .iter()
        .any(|n| n.node_type == SCHEDULE_TRIGGER && n.enabled)
}

/// Is the workflow started by its schedules now: `active` with an enabled schedule trigger?
pub fn is_scheduled(wf: &Workflow) -> bool {
    wf.status == WorkflowStatus::Active && has_schedule(wf)
}

/// The schedule trigger a tick starts: `node_id` when given (it must be an enabled schedule
/// trigger), else the first enabled one. None when the workflow is not scheduled.
pub fn schedule_node<'w>(wf: &'w Workflow, node_id: Option<&str>) -> Option<&'w Node> {
    if !is_scheduled(wf) {
        return None;
    }
    schedules(wf)
        .into_iter()
        .map(|(n, _)| n)
        .find(|n| node_id.is_none_or(|id| n.id == id))
}

// ---------------------------------------------------------------------------------------------
// Start nodes

/// Is this node type a trigger?
pub fn is_trigger(node_type: &str) -> bool {
    crate::nodes::node_type(node_type).is_some_and(|t| t.is_trigger())
}

/// The trigger an execution starts from: `wanted` (an enabled trigger of the workflow), else
/// the first enabled `trigger.manual`, else the first enabled trigger. `Err`: why not.
pub fn start_node(wf: &Workflow, wanted: Option<&str>) -> Result<String, String> {
    if let Some(id) = wanted {
        return match wf.node(id) {
            Some(n) if is_trigger(&n.node_type) && n.enabled => Ok(id.to_string()),
            Some(n) if is_trigger(&n.node_type) => Err(format!("trigger node {id:?} is disabled")),
            _ => Err(format!("node {id:?} is not a trigger of this workflow")),
        };
    }
    let enabled = || wf.nodes.iter().filter(|n| n.enabled);
    enabled()
        .find(|n| n.node_type == MANUAL_TRIGGER)
        .or_else(|| enabled().find(|n| is_trigger(&n.node_type)))
        .map(|n| n.id.clone())
        .ok_or_else(|| "workflow has no enabled trigger node".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wf(nodes: serde_json::Value, status: &str) -> Workflow {
        serde_json::from_value(json!({
            "id": "w", "organizationId": "o", "userId": "u", "name": "w", "status": status,
            "version": 1, "nodes": nodes, "connections": [],
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_disabled_schedule_trigger_starts_nothing() {
        let nodes = json!([
            {"id": "off", "name": "off", "type": "trigger.schedule", "enabled": false,
             "parameters": {"rate": "1 minute"}},
            {"id": "on", "name": "on", "type": "trigger.schedule", "parameters": {"rate": "5 minutes"}}
        ]);
        let w = wf(nodes.clone(), "active");
        assert!(is_scheduled(&w));
        assert_eq!(schedule_node(&w, None).map(|n| n.id.as_str()), Some("on"));
        assert_eq!(schedule_node(&w, Some("off")), None);
        assert_eq!(start_node(&w, None).unwrap(), "on");
        assert!(
            start_node(&w, Some("off"))
                .unwrap_err()
                .contains("disabled")
        );
        // Not active: not started by its schedules.
        assert!(!is_scheduled(&wf(nodes, "inactive")));
        let only_off = json!([{"id": "off", "name": "off", "type": "trigger.schedule",
                               "enabled": false, "parameters": {"rate": "1 minute"}}]);
        assert!(!has_schedule(&wf(only_off, "active")));
    }

    #[test]
    fn manual_triggers_start_api_runs() {
        let w = wf(
            json!([
                {"id": "hook", "name": "hook", "type": "trigger.webhook"},
                {"id": "m", "name": "m", "type": "trigger.manual"}
            ]),
            "draft",
        );
        assert_eq!(start_node(&w, None).unwrap(), "m");
        assert_eq!(start_node(&w, Some("hook")).unwrap(), "hook");
        assert!(start_node(&w, Some("nope")).is_err());
    }

    #[test]
    fn header_auth_name_is_optional() {
        let p = |v: serde_json::Value| v.as_object().unwrap().clone();
        let cfg = WebhookConfig::parse(&p(json!({"auth": {"type": "header", "credential": "c"}})))
            .unwrap();
        assert_eq!(
            cfg.auth,
            WebhookAuth::Header {
                name: None,
                credential: "c".into()
            }
        );
        assert!(WebhookConfig::parse(&p(json!({"auth": {"type": "header"}}))).is_err());
        assert!(
            WebhookConfig::parse(&p(
                json!({"auth": {"type": "header", "name": "bad header", "credential": "c"}})
            ))
            .is_err()
        );
    }
}
