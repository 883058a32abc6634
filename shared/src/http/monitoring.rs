//! `/health`, `/monitoring/health`, `/monitoring/metrics`, `/metrics`.

use super::{ApiResult, AppState};
use crate::engine::{MetricsSnapshot, Principal, QueueGauges};
use crate::model::Timestamp;
use crate::ports::{ExecutionStatistics, QueueDepth, UnfinishedCounts};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `GET /monitoring/health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MonitoringHealth {
    #[schema(example = "ok")]
    pub status: &'static str,
    pub timestamp: Timestamp,
    /// The installation's job queue.
    pub queue: QueueDepth,
    /// The caller's unfinished executions.
    pub executions: UnfinishedCounts,
}

/// `GET /monitoring/metrics`: this process's counters and timings, and the caller's
/// statistics.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MonitoringMetrics {
    #[serde(flatten)]
    pub engine: MetricsSnapshot,
    pub statistics: ExecutionStatistics,
}

/// The content type of the OpenMetrics text Prometheus scrapes.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` (`WECONNECT_METRICS=true`): the installation's series as Prometheus
/// scrapes them; no auth, no organization data (SPEC §11).
#[utoipa::path(get, path = "/metrics", tag = "monitoring", security(()),
    responses((status = 200, description = "Prometheus / OpenMetrics text (only with `WECONNECT_METRICS=true`; 404 otherwise)",
        content_type = "application/openmetrics-text", body = String)))]
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
#[utoipa::path(get, path = "/health", tag = "monitoring", security(()),
    responses((status = 200, description = "Alive", body = Liveness)))]
pub async fn liveness() -> Json<Liveness> {
    Json(Liveness { status: "ok" })
}

/// Queue depth (installation-wide) and the caller's unfinished executions.
#[utoipa::path(get, path = "/monitoring/health", tag = "monitoring",
    responses((status = 200, description = "Queue depth and unfinished executions", body = MonitoringHealth)))]
pub async fn health(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<MonitoringHealth>> {
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
    Ok(Json(MonitoringHealth {
        status: "ok",
        timestamp: now,
        queue,
        executions,
    }))
}

/// The engine's counters and timings (this process) plus the caller's statistics.
#[utoipa::path(get, path = "/monitoring/metrics", tag = "monitoring",
    responses((status = 200, description = "Counters and timings", body = MonitoringMetrics)))]
pub async fn metrics(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<MonitoringMetrics>> {
    let engine = &state.engine;
    let statistics = engine
        .store()
        .execution_statistics(&who.organization_id, None, None)
        .await?;
    Ok(Json(MonitoringMetrics {
        engine: engine.metrics().snapshot(),
        statistics,
    }))
}
