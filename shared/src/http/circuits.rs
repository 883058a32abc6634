//! `/circuits` (SPEC §10): the organization's circuit breakers: list, read, reset, configure.

use super::error::ApiError;
use super::extract::{ApiBytes, ApiPath, ApiQuery, parse_json};
use super::{ApiResult, AppState, ListResponse, PageQuery};
use crate::engine::{CircuitView, Principal};
use crate::ports::CircuitConfig;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `PUT /circuits/{key}`: any of the three settings.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Configure {
    #[serde(default)]
    failure_threshold: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    reset_timeout_ms: Option<u64>,
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<ListResponse<CircuitView>>> {
    let limit = q.limit()?;
    let page = state
        .engine
        .list_circuits(&who, limit, q.cursor.as_deref())
        .await?;
    Ok(Json(ListResponse::new(page, limit)))
}

pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<Json<CircuitView>> {
    Ok(Json(state.engine.get_circuit(&who, &key).await?))
}

pub async fn reset(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<Json<CircuitView>> {
    Ok(Json(state.engine.reset_circuit(&who, &key).await?))
}

pub async fn configure(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(key): ApiPath<String>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Json<CircuitView>> {
    // An object (serde would also read a struct from an array).
    let object: Map<String, Value> = parse_json(&body)?;
    let c: Configure = serde_json::from_value(Value::Object(object))
        .map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))?;
    let config = CircuitConfig {
        failure_threshold: c.failure_threshold,
        timeout_ms: c.timeout_ms,
        reset_timeout_ms: c.reset_timeout_ms,
    };
    Ok(Json(
        state.engine.configure_circuit(&who, &key, config).await?,
    ))
}
