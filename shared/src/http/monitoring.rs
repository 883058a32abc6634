//! `/health`, `/monitoring/health`, `/monitoring/metrics`.

use super::{ApiResult, AppState};
use crate::engine::Principal;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

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
