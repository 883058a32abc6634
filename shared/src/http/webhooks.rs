//! `ANY /webhook/{webhookId}` (alias `/webhook/handler/{webhookId}`): webhook intake.
//!
//! Lookup → `active` workflow → method → body (≤ limit) → auth (`none` | `header` | `hmac`,
//! Standard Webhooks) → start (mode `webhook`, start node = the webhook node) → 202, or with
//! `responseMode: lastNode` wait for the end and return the execution's output.
//!
//! Idempotency: the `Idempotency-Key` header, else (for `hmac` webhooks) the Standard
//! Webhooks `webhook-id`; scoped `webhook:{webhookId}:{key}`.

use super::credentials::hmac_key;
use super::error::ApiError;
use super::extract::{ApiBytes, ApiPath};
use super::{ApiResult, AppState, idempotency_key};
use crate::engine::{Principal, StartRequest};
use crate::model::{CredentialType, ExecutionMode, WorkflowStatus};
use crate::secrets::OpenCredential;
use crate::triggers::{ResponseMode, WEBHOOK_TRIGGER, WebhookAuth, WebhookConfig};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Standard Webhooks timestamp tolerance, both ways (seconds).
pub const TOLERANCE_SECS: i64 = 300;
const REDACTED: &str = "[REDACTED]";

fn not_found() -> ApiError {
    ApiError::not_found("Webhook not found")
}

/// Why a Standard Webhooks signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    MissingHeaders,
    BadTimestamp,
    StaleTimestamp,
    NoMatch,
}

/// The `v1,<base64>` signature of `{id}.{timestamp}.{body}` with `key`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(mac(key, id, timestamp, body)))
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Verifies the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers
/// (several space-separated signatures allowed; any `v1` match passes) at `now_secs`.
pub fn verify_signature(
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let (Some(id), Some(ts), Some(sigs)) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    ) else {
        return Err(SignatureError::MissingHeaders);
    };
    let ts: i64 = ts.parse().map_err(|_| SignatureError::BadTimestamp)?;
    if (now_secs - ts).abs() > TOLERANCE_SECS {
        return Err(SignatureError::StaleTimestamp);
    }
    let expected = mac(key, id, ts, body);
    let mut ok = subtle::Choice::from(0u8);
    for sig in sigs.split_whitespace() {
        let Some(b64) = sig.strip_prefix("v1,") else {
            continue;
        };
        if let Ok(given) = STANDARD.decode(b64)
            && given.len() == expected.len()
        {
            ok |= given.ct_eq(&expected);
        }
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

/// Constant-time equality of two secrets (lengths hidden by hashing first).
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    let ha = Sha256::digest(a);
    let hb = Sha256::digest(b);
    bool::from(ha.ct_eq(&hb))
}

fn header_map_json(headers: &HeaderMap, redact: Option<&str>) -> Value {
    let mut out = Map::new();
    for name in headers.keys() {
        let key = name.as_str().to_string();
        let value = if Some(key.as_str()) == redact {
            REDACTED.to_string()
        } else {
            headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.insert(key, Value::String(value));
    }
    Value::Object(out)
}

fn query_json(uri: &Uri) -> Value {
    let mut out = Map::new();
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        let v = Value::String(v.into_owned());
        match out.get_mut(k.as_ref()) {
            None => {
                out.insert(k.into_owned(), v);
            }
            Some(Value::Array(items)) => items.push(v),
            Some(first) => {
                let prev = first.take();
                *first = Value::Array(vec![prev, v]);
            }
        }
    }
    Value::Object(out)
}

/// The body as JSON when it is JSON, else as text. JSON nested deeper than
/// [`MAX_JSON_DEPTH`](crate::limits::MAX_JSON_DEPTH) is refused (a message).
fn body_json(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            crate::limits::check_json_depth(&v, "the request body")?;
            Ok(v)
        }
        Err(e) if crate::limits::is_too_deep(&e) => {
            Err(crate::limits::check_json_depth_text(body, "the request body").unwrap_err())
        }
        Err(_) => Ok(Value::String(String::from_utf8_lossy(body).into_owned())),
    }
}

/// The trigger's output: `{body, headers, query, method, path}`. `Err` (a message) when the
/// body is JSON nested deeper than the limit.
pub fn webhook_input(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    redact_header: Option<&str>,
) -> Result<Value, String> {
    Ok(json!({
        "body": body_json(body)?,
        "headers": header_map_json(headers, redact_header),
        "query": query_json(uri),
        "method": method.as_str(),
        "path": uri.path(),
    }))
}

async fn open_credential(
    state: &AppState,
    org: &str,
    id_or_name: &str,
    expected: CredentialType,
) -> ApiResult<OpenCredential> {
    match state.engine.vault().open(org, id_or_name).await {
        Ok(c) if c.credential_type == expected => Ok(c),
        Ok(_) => {
            tracing::warn!(
                credential = id_or_name,
                "webhook auth credential has the wrong type"
            );
            Err(ApiError::unauthorized("Unauthorized"))
        }
        Err(crate::secrets::SecretError::NotFound(_)) => {
            tracing::warn!(credential = id_or_name, "webhook auth credential not found");
            Err(ApiError::unauthorized("Unauthorized"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks the request against the trigger's auth; returns the header to redact from the input.
async fn authenticate(
    state: &AppState,
    org: &str,
    auth: &WebhookAuth,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Option<String>> {
    match auth {
        WebhookAuth::None => Ok(None),
        WebhookAuth::Header { name, credential } => {
            let cred = open_credential(state, org, credential, CredentialType::HttpHeader).await?;
            let header_name = name
                .clone()
                .or_else(|| {
                    cred.data
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_ascii_lowercase)
                })
                .unwrap_or_default();
            let expected = cred
                .data
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let given = headers
                .get(header_name.as_str())
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if expected.is_empty() || !secrets_equal(given, expected.as_bytes()) {
                return Err(ApiError::unauthorized("Invalid webhook credentials"));
            }
            Ok(Some(header_name))
        }
        WebhookAuth::Hmac { credential } => {
            let cred = open_credential(state, org, credential, CredentialType::HmacSecret).await?;
            let key = cred
                .data
                .get("secret")
                .and_then(Value::as_str)
                .and_then(hmac_key)
                .ok_or_else(|| ApiError::unauthorized("Invalid webhook signature"))?;
            let now = state.engine.clock().now().millis() / 1000;
            verify_signature(&key, headers, body, now).map_err(|e| {
                ApiError::unauthorized(match e {
                    SignatureError::MissingHeaders => "Missing webhook signature headers",
                    SignatureError::BadTimestamp | SignatureError::StaleTimestamp => {
                        "Webhook timestamp outside the tolerance"
                    }
                    SignatureError::NoMatch => "Invalid webhook signature",
                })
            })?;
            Ok(None)
        }
    }
}

/// `202 {executionId, status}` of an accepted webhook call.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAccepted {
    pub execution_id: String,
    pub status: crate::model::ExecutionStatus,
}

/// Starts the workflow whose webhook trigger has this id (also at `/webhook/handler/{id}`),
/// with the method the trigger declares; its own auth (`header` or Standard Webhooks `hmac`).
#[utoipa::path(post, path = "/webhook/{id}", tag = "webhooks", security(()),
    params(("id" = String, Path, description = "The webhook trigger's `path`"),
        ("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h returns the same execution")),
    request_body(content = Option<serde_json::Value>, description = "Any body: JSON is parsed, anything else kept as text"),
    responses((status = 202, description = "Started", body = WebhookAccepted),
        (status = 200, description = "`responseMode: lastNode`: the last node's output", body = serde_json::Value),
        (status = 405, description = "The trigger accepts another method", body = super::error::ErrorBody)))]
pub async fn handle(
    State(state): State<AppState>,
    ApiPath(webhook_id): ApiPath<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Response> {
    let engine = &state.engine;
    let route = engine
        .store()
        .find_webhook(&webhook_id)
        .await?
        .ok_or_else(not_found)?;
    let workflow = engine
        .store()
        .get_workflow(&route.organization_id, &route.workflow_id)
        .await?
        .filter(|wf| wf.status == WorkflowStatus::Active)
        .ok_or_else(not_found)?;
    let node = workflow
        .node(&route.node_id)
        .filter(|n| n.node_type == WEBHOOK_TRIGGER && n.enabled)
        .ok_or_else(not_found)?;
    let config = WebhookConfig::parse(&node.parameters).map_err(ApiError::internal)?;
    if !method.as_str().eq_ignore_ascii_case(&config.method) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("This webhook accepts {} requests", config.method),
        )
        .with_header(header::ALLOW, &config.method));
    }
    let org = route.organization_id.clone();
    let redact = authenticate(&state, &org, &config.auth, &headers, &body).await?;

    let key = match idempotency_key(&headers)? {
        Some(k) => Some(k),
        None if matches!(config.auth, WebhookAuth::Hmac { .. }) => headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.len() <= super::MAX_IDEMPOTENCY_KEY_LEN),
        None => None,
    }
    .map(|k| format!("webhook:{webhook_id}:{k}"));

    let input = webhook_input(&method, &uri, &headers, &body, redact.as_deref())
        .map_err(ApiError::bad_request)?;
    let (execution, _created) = engine
        .start_execution_of(
            &workflow,
            StartRequest {
                principal: Principal {
                    user_id: workflow.user_id.clone(),
                    organization_id: org.clone(),
                },
                workflow_id: workflow.id.clone(),
                mode: ExecutionMode::Webhook,
                input,
                timeout_ms: None,
                idempotency_key: key,
                start_node_id: Some(node.id.clone()),
                priority: None,
            },
        )
        .await?;

    let accepted = |execution: crate::model::Execution| {
        let body = WebhookAccepted {
            execution_id: execution.id,
            status: execution.status,
        };
        (StatusCode::ACCEPTED, Json(body)).into_response()
    };
    if config.response_mode == ResponseMode::OnReceived {
        return Ok(accepted(execution));
    }
    let finished = state
        .waiter
        .wait_terminal(engine, &org, &execution.id, state.limits.last_node_wait)
        .await?
        .unwrap_or(execution);
    if !finished.status.is_terminal() {
        return Ok(accepted(finished));
    }
    if finished.status == crate::model::ExecutionStatus::Success {
        let output = finished.output_data.unwrap_or(Value::Null);
        return Ok((StatusCode::OK, Json(output)).into_response());
    }
    Err(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Workflow execution did not succeed",
    )
    .with_details(json!({
        "executionId": finished.id,
        "status": finished.status,
        "errorMessage": finished.error_message,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
        h.insert(
            "webhook-timestamp",
            HeaderValue::from_str(&ts.to_string()).unwrap(),
        );
        h.insert("webhook-signature", HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's test vectors.
        let key = hmac_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let h = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, &sig);
        assert_eq!(verify_signature(&key, &h, body, 1614265330), Ok(()));
    }

    #[test]
    fn signatures_are_checked() {
        let key = b"0123456789abcdef";
        let body = b"{\"a\":1}";
        let now = 1_700_000_000;
        let good = sign(key, "m1", now, body);
        // Several signatures, one valid.
        let h = headers("m1", now, &format!("v1,AAAA {good}"));
        assert_eq!(verify_signature(key, &h, body, now), Ok(()));
        // Tampered body.
        let h = headers("m1", now, &good);
        assert_eq!(
            verify_signature(key, &h, b"{\"a\":2}", now),
            Err(SignatureError::NoMatch)
        );
        // Tolerance, both ways.
        assert_eq!(verify_signature(key, &h, body, now + 300), Ok(()));
        assert_eq!(
            verify_signature(key, &h, body, now + 301),
            Err(SignatureError::StaleTimestamp)
        );
        assert_eq!(
            verify_signature(key, &h, body, now - 301),
            Err(SignatureError::StaleTimestamp)
        );
        // Other schemes and garbage are ignored.
        let h = headers("m1", now, "v2,abc v1,!!!");
        assert_eq!(
            verify_signature(key, &h, body, now),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify_signature(key, &HeaderMap::new(), body, now),
            Err(SignatureError::MissingHeaders)
        );
        let mut h = headers("m1", now, &good);
        h.insert("webhook-timestamp", HeaderValue::from_static("yesterday"));
        assert_eq!(
            verify_signature(key, &h, body, now),
            Err(SignatureError::BadTimestamp)
        );
    }

    #[test]
    fn secrets_compare_in_constant_time_semantics() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"abcd"));
        assert!(!secrets_equal(b"", b"abc"));
    }

    #[test]
    fn input_has_body_headers_query_method_path() {
        let mut h = HeaderMap::new();
        h.insert("x-token", HeaderValue::from_static("s3cret"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b"));
        let uri: Uri = "/webhook/abc?x=1&y=2&y=3".parse().unwrap();
        let input = webhook_input(
            &Method::POST,
            &uri,
            &h,
            br#"{"amount": 5}"#,
            Some("x-token"),
        )
        .unwrap();
        assert_eq!(input["body"], json!({"amount": 5}));
        assert_eq!(input["headers"]["x-token"], REDACTED);
        assert_eq!(input["headers"]["x-multi"], "a, b");
        assert_eq!(input["query"], json!({"x": "1", "y": ["2", "3"]}));
        assert_eq!(input["method"], "POST");
        assert_eq!(input["path"], "/webhook/abc");
        let text = webhook_input(&Method::POST, &uri, &h, b"plain text", None).unwrap();
        assert_eq!(text["body"], "plain text");
        assert_eq!(text["headers"]["x-token"], "s3cret");
        let empty = webhook_input(&Method::GET, &uri, &h, b"", None).unwrap();
        assert!(empty["body"].is_null());
        // JSON nested past the limit is refused, whether serde_json could read it or not;
        // text with brackets is still text.
        for depth in [crate::limits::MAX_JSON_DEPTH + 1, 126, 1000] {
            let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let e = webhook_input(&Method::POST, &uri, &h, body.as_bytes(), None).unwrap_err();
            assert!(e.contains(&format!("nested {depth} levels")), "{e}");
        }
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(webhook_input(&Method::POST, &uri, &h, ok.as_bytes(), None).is_ok());
        let text = webhook_input(
            &Method::POST,
            &uri,
            &h,
            "[[[[ not json".repeat(30).as_bytes(),
            None,
        );
        assert!(text.unwrap()["body"].is_string());
    }
}
