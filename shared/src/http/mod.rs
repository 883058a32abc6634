//! The HTTP router (API + webhooks), shared by the local server and the Lambda functions.
//!
//! One [`router`] with every route of SPEC §4. Handlers are thin: they parse and check the
//! request, call the [`Engine`], and map errors to the spec's shape
//! (`{"statusCode", "message", "error", "details"}`), which every error response has,
//! including the ones axum or tower produce (unknown route, wrong method, body too large,
//! a panic).

pub mod auth;
pub mod callbacks;
pub mod circuits;
pub mod console;
pub mod credentials;
pub mod error;
pub mod events;
pub mod executions;
pub mod extract;
pub mod monitoring;
pub mod openapi;
pub mod waiter;
pub mod webhooks;
pub mod workflows;

pub use auth::{Authenticator, AuthorizerClaims, JwtSecret};
pub use error::ApiError;
pub use waiter::{BroadcastWaiter, ExecutionWaiter, PollingWaiter};

use crate::engine::Engine;
use crate::ports::Page;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;

pub type ApiResult<T> = Result<T, ApiError>;

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Size and time limits of the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// API request bodies (bytes).
    pub api_body_bytes: usize,
    /// Workflow definitions (bytes).
    pub workflow_body_bytes: usize,
    /// Webhook request bodies (bytes).
    pub webhook_body_bytes: usize,
    /// How long a `responseMode: lastNode` webhook waits for the execution to finish.
    pub last_node_wait: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            api_body_bytes: crate::limits::MAX_BODY_BYTES,
            workflow_body_bytes: crate::limits::MAX_WORKFLOW_BODY_BYTES,
            webhook_body_bytes: crate::limits::MAX_BODY_BYTES,
            last_node_wait: Duration::from_secs(25),
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub auth: Arc<Authenticator>,
    pub waiter: Arc<dyn ExecutionWaiter>,
    pub limits: HttpLimits,
    /// Serve `GET /metrics` (`WECONNECT_METRICS=true`).
    pub prometheus: bool,
}

impl AppState {
    pub fn new(engine: Engine, auth: Authenticator, waiter: Arc<dyn ExecutionWaiter>) -> Self {
        Self {
            engine,
            auth: Arc::new(auth),
            waiter,
            limits: HttpLimits::default(),
            prometheus: false,
        }
    }

    /// With `GET /metrics` served (no auth, installation-wide, no organization data).
    pub fn with_prometheus(mut self, on: bool) -> Self {
        self.prometheus = on;
        self
    }
}

/// Every list: `{"items", "limit", "nextCursor"}`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    pub limit: usize,
    pub next_cursor: Option<String>,
}

impl<T> ListResponse<T> {
    pub fn new(page: Page<T>, limit: usize) -> Self {
        Self {
            items: page.items,
            limit,
            next_cursor: page.next_cursor,
        }
    }
}

/// `limit` (1–100, default 20) and `cursor`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> ApiResult<usize> {
        extract::check_range("limit", self.limit, 1, executions::MAX_LIMIT)?;
        Ok(self.limit.unwrap_or(executions::DEFAULT_LIMIT) as usize)
    }
}

/// The `Idempotency-Key` header: 1–255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && t.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && t.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some(text.to_string()))
}

/// Which routes a router serves: a host may serve only part of them (on Lambda the `api`
/// function serves the API, the `webhook` function the webhook intake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteSet {
    /// Every route of SPEC §4.
    #[default]
    All,
    /// `/health`, the authenticated API, the console and `/openapi.json`: everything but the
    /// webhooks.
    Api,
    /// `/health` and the webhook intake (`/webhook/{id}`, `/webhook/handler/{id}`).
    Webhooks,
}

/// The whole API: every route of SPEC §4.
pub fn router(state: AppState) -> Router {
    router_for(state, RouteSet::All)
}

/// The routes of `set` (others answer the spec's 404), with the same layers as [`router`].
pub fn router_for(state: AppState, set: RouteSet) -> Router {
    let limits = state.limits;
    let workflows = Router::new()
        .route("/workflows", get(workflows::list).post(workflows::create))
        .route(
            "/workflows/{id}",
            get(workflows::get)
                .put(workflows::update)
                .delete(workflows::delete),
        )
        .route("/workflows/{id}/trends", get(workflows::trends))
        .layer(DefaultBodyLimit::max(limits.workflow_body_bytes));
    let api = Router::new()
        .route("/circuits", get(circuits::list))
        .route(
            "/circuits/{key}",
            get(circuits::get).put(circuits::configure),
        )
        .route("/circuits/{key}/reset", post(circuits::reset))
        .route("/monitoring/health", get(monitoring::health))
        .route("/monitoring/metrics", get(monitoring::metrics))
        .route(
            "/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route(
            "/credentials/{id}",
            axum::routing::delete(credentials::delete),
        )
        .route("/console", get(console::page))
        .route("/console/{file}", get(console::asset))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/executions", get(executions::list).post(executions::start))
        .route("/executions/statistics", get(executions::statistics))
        .route(
            "/executions/workflow/{workflowId}",
            get(executions::list_for_workflow),
        )
        .route("/executions/{id}", get(executions::detail))
        .route("/executions/{id}/cancel", post(executions::cancel))
        .route("/executions/{id}/pause", post(executions::pause))
        .route("/executions/{id}/resume", post(executions::resume))
        .route("/executions/{id}/retry", post(executions::retry))
        .route("/executions/{id}/logs", get(executions::logs))
        .route("/executions/{id}/events", get(events::events))
        .route("/executions/{id}/metrics", get(executions::metrics))
        .route(
            "/executions/{id}/nodes/{nodeId}/output",
            get(executions::node_output),
        )
        .route(
            "/executions/{id}/nodes/{nodeId}/complete",
            post(callbacks::complete_node),
        )
        .route(
            "/executions/{id}/nodes/{nodeId}/fail",
            post(callbacks::fail_node),
        )
        .layer(DefaultBodyLimit::max(limits.api_body_bytes))
        .merge(workflows);
    let hooks = Router::new()
        .route("/webhook/{id}", any(webhooks::handle))
        .route("/webhook/handler/{id}", any(webhooks::handle))
        // Callbacks need no bearer token (their token is the credential), like webhooks.
        .route("/callbacks/{token}", post(callbacks::complete))
        .route("/callbacks/{token}/fail", post(callbacks::fail))
        .layer(DefaultBodyLimit::max(limits.webhook_body_bytes));
    let mut app = Router::new().route("/health", get(monitoring::liveness));
    if state.prometheus {
        app = app.route("/metrics", get(monitoring::prometheus));
    }
    if set != RouteSet::Webhooks {
        app = app.merge(api);
    }
    if set != RouteSet::Api {
        app = app.merge(hooks);
    }
    app.fallback(unknown_route)
        .layer(axum::middleware::from_fn(move |req, next| {
            refuse_oversized(
                limits
                    .api_body_bytes
                    .max(limits.webhook_body_bytes)
                    .max(limits.workflow_body_bytes),
                req,
                next,
            )
        }))
        .layer(axum::middleware::map_response(spec_shaped_errors))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_server_errors,
        ))
        .with_state(state)
}

/// Every 5xx answer (a store or queue failure, a caught panic) counts as an engine failure:
/// the `EngineFailures` metric an alarm watches on AWS.
async fn count_server_errors(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(req).await;
    if response.status().is_server_error() {
        state.engine.metrics().series().engine_failed();
    }
    response
}

/// Bodies declared larger than this are refused without reading them.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// A body whose `Content-Length` is over `limit` is answered 413 — after reading and
/// discarding it (up to [`DRAIN_LIMIT`]), so a client still sending it sees the 413 instead
/// of a connection reset. Bodies without a length are limited while read (`DefaultBodyLimit`).
async fn refuse_oversized(
    limit: usize,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(n) if n > limit => {
            if n <= DRAIN_LIMIT {
                let _ = axum::body::to_bytes(req.into_body(), DRAIN_LIMIT).await;
            }
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
                .into_response()
        }
        _ => next.run(req).await,
    }
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("Route not found")
}

/// Rewrites error responses that are not JSON (axum's 405, tower-http's 413, ...) into the
/// spec's shape, keeping their headers (`Allow`).
async fn spec_shaped_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "Request body is too large".to_string(),
        StatusCode::NOT_FOUND => "Not found".to_string(),
        other => other.canonical_reason().unwrap_or("Error").to_string(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let mut error = ApiError::new(status, message);
    error.headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    error.into_response()
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt;

    async fn json(res: Response) -> (StatusCode, HeaderMap, Value) {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    /// The error-shaping layers, on a router without an engine.
    fn shaped(router: Router) -> Router {
        router
            .fallback(unknown_route)
            .layer(tower_http::limit::RequestBodyLimitLayer::new(16))
            .layer(axum::middleware::map_response(spec_shaped_errors))
            .layer(CatchPanicLayer::custom(panic_response))
    }

    #[tokio::test]
    async fn framework_errors_get_the_spec_shape() {
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let app = shaped(
            Router::new()
                .route("/only-get", get(|| async { "ok" }))
                .route("/boom", get(boom))
                .route("/echo", post(|b: String| async move { b })),
        );
        let res = app
            .clone()
            .oneshot(Request::post("/only-get").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (status, headers, body) = json(res).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["statusCode"], 405);
        assert_eq!(body["error"], "Method Not Allowed");
        assert!(headers.get(header::ALLOW).is_some());

        let res = app
            .clone()
            .oneshot(Request::get("/nowhere").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (status, _, body) = json(res).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["message"], "Route not found");

        let res = app
            .clone()
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (status, _, body) = json(res).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["message"], "Internal server error");

        let res = app
            .oneshot(
                Request::post("/echo")
                    .header(header::CONTENT_LENGTH, "64")
                    .body(Body::from(vec![b'x'; 64]))
                    .unwrap(),
            )
            .await
            .unwrap();
        let (status, _, body) = json(res).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["statusCode"], 413);
    }

    #[test]
    fn idempotency_keys_are_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).unwrap(), None);
        h.insert("idempotency-key", "order-42".parse().unwrap());
        assert_eq!(idempotency_key(&h).unwrap().as_deref(), Some("order-42"));
        h.insert("idempotency-key", "has space".parse().unwrap());
        assert!(idempotency_key(&h).is_err());
        h.insert("idempotency-key", "x".repeat(256).parse().unwrap());
        assert!(idempotency_key(&h).is_err());
    }

    #[test]
    fn page_query_limits() {
        assert_eq!(PageQuery::default().limit().unwrap(), 20);
        let q = PageQuery {
            limit: Some(101),
            cursor: None,
        };
        assert!(q.limit().is_err());
    }
}
