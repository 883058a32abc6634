//! What the four Lambda functions share (feature `lambda`): the engine on the AWS adapters,
//! JSON logs, and [`HttpFunction`], the API Gateway host of the HTTP router used by the `api`
//! and `webhook` functions.
//!
//! A function's `main` reads its configuration ([`EngineConfig::from_env`],
//! [`AwsConfig::from_env`], [`secret_box_from_env`], [`org_claim_from_env`]), builds the SDK
//! clients once ([`crate::adapters::aws::build`]) and the [`engine`], then runs its handler.
//! Nothing here sends a request at start: the first AWS call happens in the first invocation.
//!
//! [`AwsConfig::from_env`]: crate::adapters::aws::AwsConfig::from_env

use crate::adapters::aws::AwsAdapters;
use crate::config::EngineConfig;
use crate::engine::{Engine, Ports};
use crate::http::{AppState, Authenticator, AuthorizerClaims, PollingWaiter, RouteSet, router_for};
use crate::ports::SystemClock;
use crate::secrets::SecretBox;
use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::response::Response;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde_json::{Map, Value};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The organization claim's name when `ORG_CLAIM` is unset.
pub const DEFAULT_ORG_CLAIM: &str = "org";
/// How often a `responseMode: lastNode` webhook re-reads its execution (the worker runs in
/// another function, so the webhook function polls the store; the wait itself is bounded by
/// [`crate::http::HttpLimits::last_node_wait`]).
pub const LAST_NODE_POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum LambdaInitError {
    #[error("environment variable WECONNECT_ENCRYPTION_KEY is required (base64 of 32 bytes)")]
    MissingEncryptionKey,
    #[error("WECONNECT_ENCRYPTION_KEY: {0}")]
    BadEncryptionKey(#[from] crate::secrets::SecretError),
}

/// JSON log lines on stdout (one object per event, span fields included), the format Lambda
/// stores as is with `LoggingConfig: {LogFormat: JSON}`. The filter comes from `RUST_LOG`
/// (`level` and `target=level` directives, e.g. `info,weconnect_engine=debug`), else from
/// Lambda's `AWS_LAMBDA_LOG_LEVEL` (the function's `ApplicationLogLevel`), else `info`.
/// (A `Targets` filter rather than `EnvFilter`: no regex engine in the binaries.)
/// A second call does nothing.
pub fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| text.parse::<Targets>().ok())
        .unwrap_or_else(|| {
            let level = match std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "trace" => LevelFilter::TRACE,
                "debug" => LevelFilter::DEBUG,
                "warn" => LevelFilter::WARN,
                "error" | "fatal" => LevelFilter::ERROR,
                _ => LevelFilter::INFO,
            };
            Targets::new().with_default(level)
        });
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(json)
        .with(filter)
        .try_init();
}

/// The credential key from `WECONNECT_ENCRYPTION_KEY` (base64 of 32 bytes). Every function of
/// a deployment must share it: the api function seals credentials the worker opens.
pub fn secret_box_from_env() -> Result<SecretBox, LambdaInitError> {
    let text = std::env::var("WECONNECT_ENCRYPTION_KEY")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or(LambdaInitError::MissingEncryptionKey)?;
    Ok(SecretBox::from_base64(&text)?)
}

/// `ORG_CLAIM`: the JWT claim that carries the organization (default `org`; e.g. `custom:org`
/// with Cognito).
/// Writes what the engine counted since the last call as CloudWatch embedded metric format
/// lines on stdout (namespace `WeConnect`): the figures `GET /metrics` shows locally. Called
/// at the end of every invocation.
pub fn flush_metrics(engine: &Engine) {
    let now = engine.clock().now().millis();
    for line in engine.metrics().series().take_emf_lines(now) {
        println!("{line}");
    }
}

pub fn org_claim_from_env() -> String {
    std::env::var("ORG_CLAIM")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_ORG_CLAIM.to_string())
}

/// The engine on the AWS adapters and the system clock. Without `WECONNECT_PUBLIC_URL`
/// callback URLs are relative (`/callbacks/{token}`): the HTTP API answers them with the
/// request's host (the template gives the worker the API's URL).
pub fn engine(adapters: &AwsAdapters, mut config: EngineConfig, secrets: SecretBox) -> Engine {
    if !matches!(std::env::var("WECONNECT_PUBLIC_URL"), Ok(v) if !v.trim().is_empty()) {
        config.public_url = String::new();
    }
    let ports = Ports {
        store: adapters.store.clone(),
        queue: adapters.queue.clone(),
        events: adapters.events.clone(),
        schedules: adapters.schedules.clone(),
        clock: Arc::new(SystemClock),
    };
    Engine::new(ports, config, secrets)
}

/// The claims of an API Gateway HTTP API JWT authorizer
/// (`requestContext.authorizer.jwt.claims`), when the request carries them. API Gateway
/// writes every claim as a string (arrays as `[a b]`).
pub fn authorizer_claims(req: &Request) -> Option<AuthorizerClaims> {
    let context = req.request_context_ref()?;
    let jwt = match context {
        RequestContext::ApiGatewayV2(ctx) => ctx.authorizer.as_ref()?.jwt.as_ref()?,
        _ => return None,
    };
    let claims: Map<String, Value> = jwt
        .claims
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Some(AuthorizerClaims(claims))
}

/// The HTTP router behind API Gateway (payload format 2.0): the `api` function serves
/// [`RouteSet::Api`], the `webhook` function [`RouteSet::Webhooks`]. The principal of an API
/// request is read from the JWT authorizer's claims (`sub` and the organization claim); a
/// request without them is a 401. A `responseMode: lastNode` webhook polls the store.
#[derive(Clone)]
pub struct HttpFunction {
    router: Router,
    engine: Engine,
}

impl HttpFunction {
    pub fn new(engine: Engine, routes: RouteSet, org_claim: impl Into<String>) -> Self {
        let state = AppState::new(
            engine.clone(),
            Authenticator::ApiGatewayClaims {
                org_claim: org_claim.into(),
            },
            Arc::new(PollingWaiter {
                interval: LAST_NODE_POLL,
            }),
        );
        Self {
            router: router_for(state, routes),
            engine,
        }
    }

    /// Handles one request: authorizer claims into the request's extensions, then the router.
    pub async fn handle(&self, mut req: Request) -> Result<Response, Infallible> {
        // Only the request context (written by API Gateway) may carry claims.
        req.extensions_mut().remove::<AuthorizerClaims>();
        if let Some(claims) = authorizer_claims(&req) {
            req.extensions_mut().insert(claims);
        }
        self.router.clone().oneshot(req).await
    }

    /// Serves invocations until the runtime stops.
    pub async fn run(self) -> Result<(), lambda_http::Error> {
        lambda_http::run(lambda_http::service_fn(move |req: Request| {
            let function = self.clone();
            async move {
                let response = function.handle(req).await?;
                flush_metrics(&function.engine);
                Ok::<_, Infallible>(LambdaHttpResponse(lambda_response(response).await))
            }
        }))
        .await
    }
}

/// A response already in Lambda's body encoding, handed to `lambda_http` as it is.
///
/// `lambda_http` would otherwise convert the body itself, by content type and charset, with
/// a full text-encoding library (`encoding_rs`, ~160 KiB of tables) that a UTF-8 JSON API never
/// needs: [`lambda_response`] does the conversion for what the router answers.
pub struct LambdaHttpResponse(pub lambda_http::Response<lambda_http::Body>);

impl lambda_http::IntoResponse for LambdaHttpResponse {
    fn into_response(
        self,
    ) -> Pin<Box<dyn Future<Output = lambda_http::Response<lambda_http::Body>> + Send>> {
        Box::pin(std::future::ready(self.0))
    }
}

/// The router's response with its body as Lambda returns it: text for textual content types
/// in UTF-8 (JSON, `text/*`, XML, YAML) and for responses without a content type, else binary
/// (base64 on the wire). Compressed bodies (`Content-Encoding`) are binary.
pub async fn lambda_response(response: Response) -> lambda_http::Response<lambda_http::Body> {
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "the response body could not be read");
            let status = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            let body = crate::http::error::body(
                status,
                "Internal server error",
                Value::Object(Map::new()),
            );
            return lambda_http::Response::builder()
                .status(status)
                .header(CONTENT_TYPE, "application/json")
                .body(lambda_http::Body::Text(body.to_string()))
                .unwrap_or_default();
        }
    };
    let textual = !parts.headers.contains_key(CONTENT_ENCODING)
        && is_textual(parts.headers.get(CONTENT_TYPE));
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else if textual {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => lambda_http::Body::Text(text),
            Err(e) => lambda_http::Body::Binary(e.into_bytes()),
        }
    } else {
        lambda_http::Body::Binary(bytes.to_vec())
    };
    lambda_http::Response::from_parts(parts, body)
}

fn is_textual(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let mut params = text.split(';');
    let mime = params
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let utf8 = params.all(|p| match p.trim().split_once('=') {
        Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => {
            let charset = charset.trim().trim_matches('"');
            charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("us-ascii")
        }
        _ => true,
    });
    utf8 && (mime.starts_with("text/")
        || [
            "application/json",
            "application/xml",
            "application/javascript",
            "application/yaml",
        ]
        .contains(&mime.as_str())
        || [".json", "+json", "+xml", "+yaml"]
            .iter()
            .any(|suffix| mime.ends_with(suffix)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textual_content_types() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(is_textual(None));
        for t in [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain; charset=UTF-8",
            "application/problem+json",
            "text/html",
        ] {
            assert!(is_textual(Some(&v(t))), "{t}");
        }
        for t in [
            "application/octet-stream",
            "image/png",
            "text/plain; charset=iso-8859-1",
        ] {
            assert!(!is_textual(Some(&v(t))), "{t}");
        }
    }

    #[tokio::test]
    async fn bodies_become_text_or_binary() {
        let json =
            axum::response::IntoResponse::into_response(axum::Json(serde_json::json!({"a": "é"})));
        let out = lambda_response(json).await;
        assert_eq!(out.body(), &lambda_http::Body::Text("{\"a\":\"é\"}".into()));
        let bytes = Response::builder()
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(axum::body::Body::from(vec![0u8, 159, 146, 150]))
            .unwrap();
        assert_eq!(
            lambda_response(bytes).await.body(),
            &lambda_http::Body::Binary(vec![0u8, 159, 146, 150])
        );
        let empty = Response::builder()
            .status(204)
            .body(axum::body::Body::empty())
            .unwrap();
        let out = lambda_response(empty).await;
        assert_eq!(out.status(), 204);
        assert_eq!(out.body(), &lambda_http::Body::Empty);
    }
}
