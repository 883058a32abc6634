//! `/health`, `/monitoring/health`, `/monitoring/metrics`, `/metrics`.

use super::{ApiResult, AppState};
use crate::engine::{Principal, QueueGauges};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The content type of the OpenMetrics text Prometheus scrapes.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` (`WECONNECT_METRICS=true`): the installation's series as Prometheus
/// scrapes them; no auth, no organization data (SPEC §11).
pub async fn prometheus(State(state): State<AppState>) -> ApiResult<Response> {
    let engine = &state.engine;
    let depth = engine.queue().depth().await?;
    let circuits_open = engine.store().count_open_circuits().await?;
    let text = engine.metrics().series().prometheus_text(
        QueueGauges {
            ready: depth.ready,
            delayed: depth.delayed,
            in_flight: depth.in_flight,
        },
        circuits_open,
    );
    Ok(([(header::CONTENT_TYPE, OPENMETRICS_TEXT)], text).into_response())
}

/// Liveness, no auth.
pub async fn liveness() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Queue depth (installation-wide) and the caller's unfinished executions.
pub async fn health(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    let engine = &state.engine;
    let now = engine.clock().now();
    let queue = engine.queue().depth().await?;
    let executions = engine
        .store()
        .count_unfinished_executions(
            &who.organization_id,
            now.minus(engine.config().stale_threshold()),
        )
        .await?;
    Ok(Json(json!({
        "status": "ok",
        "timestamp": now,
        "queue": queue,
        "executions": executions,
    })))
}

/// The engine's counters and timings (this process) plus the caller's statistics.
pub async fn metrics(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    let engine = &state.engine;
    let mut body = serde_json::to_value(engine.metrics().snapshot()).unwrap_or_else(|_| json!({}));
    let statistics = engine
        .store()
        .execution_statistics(&who.organization_id, None, None)
        .await?;
    if let Value::Object(map) = &mut body {
        map.insert(
            "statistics".into(),
            serde_json::to_value(statistics).unwrap_or(Value::Null),
        );
    }
    Ok(Json(body))
}
