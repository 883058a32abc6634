//! `http.request`: an outbound HTTP call through the SSRF-guarded client and the circuit
//! breaker.
//!
//! Parameters (already resolved): `method` (default GET), `url`, `headers` (object), `query`
//! (object; arrays repeat the key), `body` (object/array/number/bool → JSON, string → text),
//! `timeoutMs` (else the node timeout), `credential` (id or name), `failOnStatus` (default
//! true), `circuitKey` (default: the URL's host), `fallback` (output while the circuit is
//! open).
//!
//! Output: `{statusCode, headers, body}`, the body parsed when it is JSON, else text. Every
//! request carries `Idempotency-Key: {executionId}:{nodeId}` (unless the node sets its own),
//! so a service can recognise a retried call. Every secret of the credential used is
//! redacted from the output and from error messages and details.

use super::circuit::{CircuitBreaker, Permit, counts_as_failure};
use super::params::{config_error, get, is_expression};
use super::ssrf::{check_url, refused_in};
use super::{NodeContext, NodeOutcome, NodeType};
use crate::model::{CredentialType, ErrorKind, NodeError};
use crate::secrets::{SecretError, redact};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use std::time::Duration;
use url::Url;

pub struct HttpRequest;

/// Methods the node sends.
pub const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// The most of a response body the node reads.
pub const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;
/// The longest `timeoutMs` (one hour, the longest execution by default).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Response body text kept in an error's `details`.
const MAX_DETAIL_BODY_CHARS: usize = 16 * 1024;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Debug, Clone, PartialEq)]
enum Body {
    Json(Value),
    Text(String),
}

/// The resolved parameters, checked.
#[derive(Debug)]
struct Request {
    method: reqwest::Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Body>,
    timeout: Duration,
    fail_on_status: bool,
    credential: Option<String>,
    circuit_key: Option<String>,
    fallback: Option<Value>,
    rate_limit: Option<RateLimit>,
}

/// `rateLimit` (SPEC §9): at most `limit` calls in any window of `periodMs` per `key`
/// (default: the URL's host), per organization. A call over the rate waits durably.
#[derive(Debug, Clone, PartialEq)]
struct RateLimit {
    limit: u32,
    period_ms: u64,
    key: Option<String>,
}

/// Bounds of `rateLimit.limit` and `rateLimit.periodMs`.
pub const RATE_LIMIT_RANGE: (u64, u64) = (1, 1_000);
pub const RATE_PERIOD_MS_RANGE: (u64, u64) = (100, 86_400_000);

fn parse_rate_limit(v: Option<&Value>) -> Result<Option<RateLimit>, String> {
    let Some(v) = v else {
        return Ok(None);
    };
    let Some(fields) = v.as_object() else {
        return Err("parameter `rateLimit` must be an object {limit, periodMs, key?}".into());
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["limit", "periodMs", "key"].contains(&k.as_str()))
    {
        return Err(format!("parameter `rateLimit`: unknown field `{unknown}`"));
    }
    let (lo, hi) = RATE_LIMIT_RANGE;
    let limit = fields
        .get("limit")
        .and_then(Value::as_u64)
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| {
            format!("parameter `rateLimit.limit` must be a whole number from {lo} to {hi}")
        })?;
    let (lo, hi) = RATE_PERIOD_MS_RANGE;
    let period_ms = fields
        .get("periodMs")
        .and_then(Value::as_u64)
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| {
            format!("parameter `rateLimit.periodMs` must be a whole number from {lo} to {hi}")
        })?;
    Ok(Some(RateLimit {
        limit: limit as u32,
        period_ms,
        key: optional_name(fields.get("key"), "rateLimit.key")?,
    }))
}

fn parse_method(v: Option<&Value>) -> Result<reqwest::Method, String> {
    let text = match v {
        None => return Ok(reqwest::Method::GET),
        Some(Value::String(s)) => s.trim().to_ascii_uppercase(),
        Some(_) => return Err("parameter `method` must be a string".into()),
    };
    if !METHODS.contains(&text.as_str()) {
        return Err(format!(
            "parameter `method` must be one of {}",
            METHODS.join(", ")
        ));
    }
    reqwest::Method::from_bytes(text.as_bytes()).map_err(|_| "parameter `method` is invalid".into())
}

fn parse_url(v: Option<&Value>) -> Result<Url, String> {
    let text = match v {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim(),
        Some(_) => return Err("parameter `url` must be a string".into()),
        None => return Err("parameter `url` is required".into()),
    };
    let url = Url::parse(text).map_err(|e| format!("parameter `url` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "parameter `url` must use http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return Err("parameter `url` has no host".into());
    }
    Ok(url)
}

/// A header or query value as text: strings as they are, numbers and bools printed.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_headers(v: Option<&Value>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let fields = match v {
        None => return Ok(headers),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err("parameter `headers` must be an object of name: value".into()),
    };
    for (name, value) in fields {
        if value.is_null() {
            continue;
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("parameter `headers`: {name:?} is not a valid header name"))?;
        let text = scalar_text(value).ok_or_else(|| {
            format!("parameter `headers.{name}` must be a string, number or bool")
        })?;
        let value = HeaderValue::from_str(&text)
            .map_err(|_| format!("parameter `headers.{name}` is not a valid header value"))?;
        headers.append(header, value);
    }
    Ok(headers)
}

fn apply_query(url: &mut Url, v: Option<&Value>) -> Result<(), String> {
    let fields = match v {
        None => return Ok(()),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err("parameter `query` must be an object of name: value".into()),
    };
    if fields.is_empty() {
        return Ok(());
    }
    let mut pairs = url.query_pairs_mut();
    for (name, value) in fields {
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::Null => {}
                        other => {
                            let text = scalar_text(other).unwrap_or_else(|| other.to_string());
                            pairs.append_pair(name, &text);
                        }
                    }
                }
            }
            Value::Object(_) => {
                pairs.append_pair(name, &value.to_string());
            }
            scalar => {
                let text = scalar_text(scalar).unwrap_or_default();
                pairs.append_pair(name, &text);
            }
        }
    }
    drop(pairs);
    Ok(())
}

fn parse_timeout(v: Option<&Value>, default_ms: u64) -> Result<Duration, String> {
    let ms = match v {
        None => default_ms,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f >= 1.0 && f <= MAX_TIMEOUT_MS as f64 => f as u64,
            _ => {
                return Err(format!(
                    "parameter `timeoutMs` must be between 1 and {MAX_TIMEOUT_MS}"
                ));
            }
        },
        Some(_) => return Err("parameter `timeoutMs` must be a number of milliseconds".into()),
    };
    Ok(Duration::from_millis(ms.max(1)))
}

fn optional_name(v: Option<&Value>, key: &str) -> Result<Option<String>, String> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Some(_) => Err(format!("parameter `{key}` must be a non-empty string")),
    }
}

impl Request {
    fn parse(params: &Map<String, Value>, default_timeout_ms: u64) -> Result<Self, String> {
        let mut url = parse_url(get(params, "url"))?;
        apply_query(&mut url, get(params, "query"))?;
        let fail_on_status = match get(params, "failOnStatus") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("parameter `failOnStatus` must be true or false".into()),
        };
        Ok(Self {
            method: parse_method(get(params, "method"))?,
            url,
            headers: parse_headers(get(params, "headers"))?,
            body: match get(params, "body") {
                None => None,
                Some(Value::String(s)) => Some(Body::Text(s.clone())),
                Some(other) => Some(Body::Json(other.clone())),
            },
            timeout: parse_timeout(get(params, "timeoutMs"), default_timeout_ms)?,
            fail_on_status,
            credential: optional_name(get(params, "credential"), "credential")?,
            circuit_key: optional_name(get(params, "circuitKey"), "circuitKey")?,
            fallback: get(params, "fallback").cloned(),
            rate_limit: parse_rate_limit(get(params, "rateLimit"))?,
        })
    }
}

/// Adds the credential's header; returns the secrets to redact.
async fn apply_credential(
    ctx: &NodeContext<'_>,
    id_or_name: &str,
    headers: &mut HeaderMap,
) -> Result<Vec<String>, NodeError> {
    let config = |m: String| NodeError::new(ErrorKind::Configuration, m);
    let cred = match ctx
        .services
        .vault
        .open(&ctx.execution.organization_id, id_or_name)
        .await
    {
        Ok(cred) => cred,
        Err(SecretError::Store(e)) => {
            return Err(NodeError::new(
                ErrorKind::Network,
                format!("credential {id_or_name:?} could not be read: {e}"),
            ));
        }
        Err(e) => return Err(config(e.to_string())),
    };
    let mut secrets = cred.secret_values();
    let field = |key: &str| -> Result<String, NodeError> {
        cred.data
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| config(format!("credential {id_or_name:?} has no `{key}`")))
    };
    let header_value = |text: &str| {
        HeaderValue::from_str(text)
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| {
                config(format!(
                    "credential {id_or_name:?} is not usable as a header value"
                ))
            })
    };
    match cred.credential_type {
        CredentialType::HttpHeader => {
            let name = field("name")?;
            let value = field("value")?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                config(format!(
                    "credential {id_or_name:?} has an invalid header name"
                ))
            })?;
            headers.insert(name, header_value(&value)?);
        }
        CredentialType::HttpBasic => {
            let user = field("username")?;
            let password = field("password")?;
            let token = B64.encode(format!("{user}:{password}"));
            headers.insert(AUTHORIZATION, header_value(&format!("Basic {token}"))?);
            // An echoed Authorization header shows the encoded pair, not the password.
            secrets.push(token);
        }
        CredentialType::Bearer => {
            let token = field("token")?;
            headers.insert(AUTHORIZATION, header_value(&format!("Bearer {token}"))?);
        }
        CredentialType::HmacSecret => {
            return Err(config(format!(
                "credential {id_or_name:?} is an hmacSecret (for webhook signatures); http.request uses httpHeader, httpBasic or bearer credentials"
            )));
        }
    }
    // Longest first, so that a secret containing another is redacted whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    Ok(secrets)
}

/// `reqwest` errors, with their causes.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

fn classify(err: &reqwest::Error) -> NodeError {
    if let Some(refused) = refused_in(err) {
        return NodeError::new(
            ErrorKind::Configuration,
            format!("outbound request refused: {refused}"),
        );
    }
    if err.is_timeout() {
        return NodeError::new(
            ErrorKind::Timeout,
            format!("request timed out: {}", error_chain(err)),
        );
    }
    if err.is_builder() {
        return NodeError::new(ErrorKind::Configuration, error_chain(err));
    }
    NodeError::new(
        ErrorKind::Network,
        format!("request failed: {}", error_chain(err)),
    )
}

/// A response read in full (up to the cap).
struct Response {
    status: u16,
    reason: &'static str,
    headers: HeaderMap,
    body: Vec<u8>,
}

async fn send(
    client: &reqwest::Client,
    req: &Request,
    headers: HeaderMap,
) -> Result<Response, NodeError> {
    let mut builder = client
        .request(req.method.clone(), req.url.clone())
        .headers(headers.clone())
        .timeout(req.timeout);
    match &req.body {
        None => {}
        Some(Body::Json(v)) => {
            if !headers.contains_key(CONTENT_TYPE) {
                builder = builder.header(CONTENT_TYPE, "application/json");
            }
            builder = builder.body(v.to_string());
        }
        Some(Body::Text(s)) => {
            if !headers.contains_key(CONTENT_TYPE) {
                builder = builder.header(CONTENT_TYPE, "text/plain; charset=utf-8");
            }
            builder = builder.body(s.clone());
        }
    }
    let mut resp = builder.send().await.map_err(|e| classify(&e))?;
    let status = resp.status();
    let too_large = || {
        NodeError::new(
            ErrorKind::OutputTooLarge,
            format!("response body exceeds {MAX_RESPONSE_BYTES} bytes"),
        )
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or(""),
        headers: resp.headers().clone(),
        body,
    })
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(name.as_str().to_string(), Value::String(values.join(", ")));
    }
    Value::Object(out)
}

fn body_json(headers: &HeaderMap, body: &[u8]) -> Value {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let json_type = content_type
        .as_deref()
        .is_some_and(|t| t.contains("/json") || t.contains("+json"));
    if !body.is_empty()
        && (json_type || content_type.is_none())
        && let Ok(v) = serde_json::from_slice::<Value>(body)
    {
        return v;
    }
    Value::String(String::from_utf8_lossy(body).into_owned())
}

/// `details` of an HTTP status error: the response, its body text shortened.
fn details_of(output: &Value) -> Value {
    let mut details = output.clone();
    if let Some(Value::String(text)) = details.get_mut("body") {
        if text.len() > MAX_DETAIL_BODY_CHARS {
            let mut cut = MAX_DETAIL_BODY_CHARS;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("…[truncated]");
        }
    } else if details
        .get("body")
        .is_some_and(|b| b.to_string().len() > MAX_DETAIL_BODY_CHARS)
    {
        details["body"] = Value::String("[body too large for error details]".into());
    }
    details
}

fn redacted_error(mut e: NodeError, secrets: &[String]) -> NodeError {
    let mut message = Value::String(std::mem::take(&mut e.message));
    redact(&mut message, secrets);
    e.message = message.as_str().unwrap_or_default().to_string();
    if let Some(details) = e.details.as_mut() {
        redact(details, secrets);
    }
    e
}

#[async_trait::async_trait]
impl NodeType for HttpRequest {
    fn type_name(&self) -> &'static str {
        "http.request"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        let literal = |key: &str| get(params, key).filter(|v| !is_expression(v));
        match get(params, "url") {
            None => return Err("parameter `url` is required".into()),
            Some(v) if is_expression(v) => {}
            Some(v) => {
                parse_url(Some(v))?;
            }
        }
        if let Some(m) = literal("method") {
            parse_method(Some(m))?;
        }
        for key in ["headers", "query"] {
            if let Some(v) = literal(key)
                && !v.is_object()
            {
                return Err(format!(
                    "parameter `{key}` must be an object of name: value"
                ));
            }
        }
        if let Some(h) = literal("headers") {
            // Names are checked as written; values may hold expressions.
            if let Some(fields) = h.as_object() {
                for name in fields.keys() {
                    if HeaderName::from_bytes(name.as_bytes()).is_err() {
                        return Err(format!(
                            "parameter `headers`: {name:?} is not a valid header name"
                        ));
                    }
                }
            }
        }
        if let Some(t) = literal("timeoutMs") {
            parse_timeout(Some(t), 1)?;
        }
        if let Some(f) = literal("failOnStatus")
            && !f.is_boolean()
        {
            return Err("parameter `failOnStatus` must be true or false".into());
        }
        for key in ["credential", "circuitKey"] {
            optional_name(get(params, key), key)?;
        }
        if let Some(r) = literal("rateLimit") {
            parse_rate_limit(Some(r))?;
        }
        Ok(())
    }

    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        _input: &Value,
    ) -> NodeOutcome {
        let req = match Request::parse(params, ctx.timeout_ms) {
            Ok(req) => req,
            Err(message) => return config_error(message),
        };
        let services = ctx.services;
        if let Err(message) = check_url(&req.url, services.config.http_allow_private) {
            return config_error(format!("outbound request refused: {message}"));
        }

        let mut headers = req.headers.clone();
        let secrets = match &req.credential {
            None => Vec::new(),
            Some(id) => match apply_credential(ctx, id, &mut headers).await {
                Ok(secrets) => secrets,
                Err(e) => return NodeOutcome::Failed(e),
            },
        };
        if !headers.contains_key(IDEMPOTENCY_KEY) {
            let key = format!("{}:{}", ctx.execution.id, ctx.node.id);
            match HeaderValue::from_str(&key) {
                Ok(v) => {
                    headers.insert(IDEMPOTENCY_KEY, v);
                }
                Err(_) => return config_error("execution or node id is not usable in a header"),
            }
        }

        let org = ctx.execution.organization_id.as_str();
        // Over the rate: wait durably for the next slot (a delayed job, not a sleeping
        // worker; the attempt is given back). A store that cannot answer: try again soon.
        if let Some(rate) = &req.rate_limit {
            let key = rate
                .key
                .clone()
                .unwrap_or_else(|| req.url.host_str().unwrap_or_default().to_string());
            let now = services.clock.now();
            match services
                .rates
                .take_call(org, &key, rate.limit, rate.period_ms, now)
                .await
            {
                Ok(None) => {}
                Ok(Some(at)) => return NodeOutcome::WaitUntil(at),
                Err(e) => {
                    tracing::warn!(rate_key = %key, error = %e, "rate limit unreadable; trying again in a second");
                    return NodeOutcome::WaitUntil(now.plus(Duration::from_secs(1)));
                }
            }
        }
        // Circuits are per organization: one tenant's failures never open another's.
        let circuit_key = req
            .circuit_key
            .clone()
            .unwrap_or_else(|| req.url.host_str().unwrap_or_default().to_string());
        let breaker = CircuitBreaker::new(
            services.circuits.clone(),
            services.clock.clone(),
            &services.config,
        );
        let permit: Permit = match breaker.acquire(org, &circuit_key).await {
            Ok(permit) => permit,
            Err(open) => {
                if let Some(fallback) = req.fallback {
                    return NodeOutcome::Output(fallback);
                }
                return NodeOutcome::Failed(NodeError::new(
                    ErrorKind::CircuitOpen,
                    open.to_string(),
                ));
            }
        };

        // reqwest's own timeout covers connect to the end of the body; this one guards the
        // rest (resolution included).
        let result =
            match tokio::time::timeout(req.timeout, send(&services.http, &req, headers)).await {
                Ok(result) => result,
                Err(_) => Err(NodeError::new(
                    ErrorKind::Timeout,
                    format!("request timed out after {} ms", req.timeout.as_millis()),
                )),
            };

        let failed_for_circuit = match &result {
            Ok(resp) => resp.status >= 500 || resp.status == 429,
            Err(e) => counts_as_failure(e.kind),
        };
        breaker
            .record(org, &circuit_key, permit, failed_for_circuit)
            .await;

        let resp = match result {
            Ok(resp) => resp,
            Err(e) => return NodeOutcome::Failed(redacted_error(e, &secrets)),
        };
        let mut output = json!({
            "statusCode": resp.status,
            "headers": headers_json(&resp.headers),
            "body": body_json(&resp.headers, &resp.body),
        });
        redact(&mut output, &secrets);

        if req.fail_on_status && resp.status >= 400 {
            let kind = match resp.status {
                429 => ErrorKind::Http429,
                400..=499 => ErrorKind::Http4xx,
                _ => ErrorKind::Http5xx,
            };
            let error = NodeError {
                message: format!(
                    "HTTP {} {} from {} {}",
                    resp.status,
                    resp.reason,
                    req.method,
                    req.url.host_str().unwrap_or_default()
                )
                .trim_end()
                .to_string(),
                kind,
                status_code: Some(resp.status),
                details: Some(details_of(&output)),
            };
            return NodeOutcome::Failed(redacted_error(error, &secrets));
        }
        NodeOutcome::Output(output)
    }
}

#[cfg(test)]
mod tests;
