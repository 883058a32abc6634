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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Configure {
    /// 1–1000.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    failure_threshold: Option<u32>,
    /// 1000–86400000.
    #[serde(default)]
    #[schema(minimum = 1000, maximum = 86400000)]
    timeout_ms: Option<u64>,
    /// 1000–86400000.
    #[serde(default)]
    #[schema(minimum = 1000, maximum = 86400000)]
    reset_timeout_ms: Option<u64>,
}

/// The organization's circuits.
#[utoipa::path(get, path = "/circuits", tag = "circuits", params(PageQuery),
    responses((status = 200, description = "A page of circuits", body = ListResponse<CircuitView>)))]
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

#[utoipa::path(get, path = "/circuits/{key}", tag = "circuits", params(("key" = String, Path, description = "Circuit key (an HTTP node's host or its `circuitKey`)")),
    responses((status = 200, description = "The circuit", body = CircuitView)))]
pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<Json<CircuitView>> {
    Ok(Json(state.engine.get_circuit(&who, &key).await?))
}

/// Closes the circuit and clears its failures.
#[utoipa::path(post, path = "/circuits/{key}/reset", tag = "circuits", params(("key" = String, Path, description = "Circuit key (an HTTP node's host or its `circuitKey`)")),
    responses((status = 200, description = "The circuit, closed", body = CircuitView)))]
pub async fn reset(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<Json<CircuitView>> {
    Ok(Json(state.engine.reset_circuit(&who, &key).await?))
}

/// Sets any of the circuit's three settings.
#[utoipa::path(put, path = "/circuits/{key}", tag = "circuits", params(("key" = String, Path, description = "Circuit key (an HTTP node's host or its `circuitKey`)")), request_body = Configure,
    responses((status = 200, description = "The circuit with its settings", body = CircuitView)))]
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
