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
use axum::response::Response;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde_json::{Map, Value};
use std::convert::Infallible;
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
/// stores as is with `LoggingConfig: {LogFormat: JSON}`. The level comes from `RUST_LOG`,
/// else Lambda's `AWS_LAMBDA_LOG_LEVEL` (set by the function's `ApplicationLogLevel`), else
/// `info`. A second call does nothing.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
            .ok()
            .map(|l| match l.trim().to_ascii_lowercase().as_str() {
                "fatal" => "error".to_string(),
                other => other.to_string(),
            })
            .filter(|l| ["trace", "debug", "info", "warn", "error"].contains(&l.as_str()))
            .unwrap_or_else(|| "info".to_string());
        EnvFilter::new(level)
    });
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .with_env_filter(filter)
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
pub fn org_claim_from_env() -> String {
    std::env::var("ORG_CLAIM")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_ORG_CLAIM.to_string())
}

/// The engine on the AWS adapters and the system clock.
pub fn engine(adapters: &AwsAdapters, config: EngineConfig, secrets: SecretBox) -> Engine {
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
}

impl HttpFunction {
    pub fn new(engine: Engine, routes: RouteSet, org_claim: impl Into<String>) -> Self {
        let state = AppState::new(
            engine,
            Authenticator::ApiGatewayClaims {
                org_claim: org_claim.into(),
            },
            Arc::new(PollingWaiter {
                interval: LAST_NODE_POLL,
            }),
        );
        Self {
            router: router_for(state, routes),
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
            async move { function.handle(req).await }
        }))
        .await
    }
}
