//! `/executions`: start, list, detail, lifecycle, logs, metrics, statistics.

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson, check_range, parse_date};
use super::{ApiResult, AppState, ListResponse, idempotency_key};
use crate::engine::{ExecutionDetail, Principal, StartRequest};
use crate::model::{
    Execution, ExecutionLog, ExecutionMetrics, ExecutionMode, ExecutionStatus, LogLevel,
};
use crate::ports::{ExecutionFilter, ExecutionStatistics, LogFilter};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;
pub const DEFAULT_LOG_LIMIT: u64 = 100;
pub const MAX_LOG_LIMIT: u64 = 1000;
pub const MIN_TIMEOUT_MS: u64 = 1000;
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// `POST /executions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    pub workflow_id: String,
    #[serde(default)]
    pub mode: Option<ExecutionMode>,
    /// A JSON object (default `{}`).
    #[serde(default)]
    pub input_data: Option<Value>,
    /// Milliseconds, 1000–3600000 (and at most the configured maximum).
    #[serde(default)]
    #[schema(minimum = 1000, maximum = 3600000)]
    pub timeout: Option<u64>,
    /// `high`, `normal` or `low` (default: `high` for manual and api runs).
    #[serde(default)]
    pub priority: Option<crate::model::Priority>,
}

/// `POST /executions/{id}/retry`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBody {
    /// Redrive: copy the outputs of the nodes that succeeded and run the failed node and what
    /// follows.
    #[serde(default)]
    pub from_failed_node: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    pub status: Option<ExecutionStatus>,
    pub mode: Option<ExecutionMode>,
    pub workflow_id: Option<String>,
    /// The children of this execution (SPEC §8).
    pub parent_execution_id: Option<String>,
    /// RFC 3339: created at or after.
    pub start_date: Option<String>,
    /// RFC 3339: created at or before.
    pub end_date: Option<String>,
    /// 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl ExecutionQuery {
    fn filter(&self, workflow_id: Option<String>) -> Result<ExecutionFilter, ApiError> {
        let start_date = parse_date("startDate", self.start_date.as_deref())?;
        let end_date = parse_date("endDate", self.end_date.as_deref())?;
        if let (Some(s), Some(e)) = (start_date, end_date)
            && s > e
        {
            return Err(ApiError::bad_request("startDate must not be after endDate"));
        }
        Ok(ExecutionFilter {
            status: self.status,
            mode: self.mode,
            workflow_id: workflow_id.or_else(|| self.workflow_id.clone()),
            start_date,
            end_date,
            parent_execution_id: self.parent_execution_id.clone(),
        })
    }
    fn limit(&self) -> Result<usize, ApiError> {
        check_range("limit", self.limit, 1, MAX_LIMIT)?;
        Ok(self.limit.unwrap_or(DEFAULT_LIMIT) as usize)
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    pub level: Option<LogLevel>,
    pub node_id: Option<String>,
    /// 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// A log id (the `nextCursor` of the previous page): only the logs after it.
    pub after: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// RFC 3339 (default: all time).
    pub start_date: Option<String>,
    /// RFC 3339 (default: now).
    pub end_date: Option<String>,
}

/// Validates a start request's `timeout` against 1000–3600000 and EXECUTION_MAX_TIMEOUT.
pub fn check_timeout(timeout: Option<u64>, max_timeout_ms: u64) -> Result<(), ApiError> {
    let max = MAX_TIMEOUT_MS.min(max_timeout_ms).max(MIN_TIMEOUT_MS);
    check_range("timeout", timeout, MIN_TIMEOUT_MS, max)
}

/// Starts an execution of a workflow's active version.
#[utoipa::path(post, path = "/executions", tag = "executions", request_body = StartBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h returns the same execution")),
    responses((status = 201, description = "The execution (the first one's when the key was seen)", body = Execution,
        headers(("idempotent-replayed" = String, description = "`true` when an earlier execution was returned")))))]
pub async fn start(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StartBody>,
) -> ApiResult<Response> {
    let mode = body.mode.unwrap_or(ExecutionMode::Manual);
    if !matches!(
        mode,
        ExecutionMode::Manual | ExecutionMode::Api | ExecutionMode::Test
    ) {
        return Err(ApiError::bad_request(
            "mode must be `manual`, `api` or `test` (webhook and scheduled executions are started by their triggers)",
        ));
    }
    check_timeout(body.timeout, state.engine.config().max_timeout_ms)?;
    let input = match body.input_data {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(ApiError::bad_request("inputData must be a JSON object")),
    };
    if body.workflow_id.trim().is_empty() {
        return Err(ApiError::bad_request("workflowId must not be empty"));
    }
    let key = idempotency_key(&headers)?.map(|k| format!("api:{}:{k}", who.organization_id));
    let (execution, created) = state
        .engine
        .start_execution(StartRequest {
            principal: who,
            workflow_id: body.workflow_id,
            mode,
            input,
            timeout_ms: body.timeout,
            idempotency_key: key,
            start_node_id: None,
            priority: body.priority,
        })
        .await?;
    let mut response = (StatusCode::CREATED, Json(execution)).into_response();
    if !created {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The organization's executions, newest first.
#[utoipa::path(get, path = "/executions", tag = "executions", params(ExecutionQuery),
    responses((status = 200, description = "A page of executions", body = ListResponse<Execution>)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ExecutionQuery>,
) -> ApiResult<Json<ListResponse<Execution>>> {
    let limit = q.limit()?;
    let filter = q.filter(None)?;
    let page = state
        .engine
        .store()
        .list_executions(&who.organization_id, &filter, limit, q.cursor.as_deref())
        .await?;
    Ok(Json(ListResponse::new(page, limit)))
}

/// `GET /executions/workflow/{workflowId}`: that workflow's executions, newest first.
#[utoipa::path(get, path = "/executions/workflow/{workflowId}", tag = "executions",
    params(("workflowId" = String, Path, description = "Workflow id"), ExecutionQuery),
    responses((status = 200, description = "A page of the workflow's executions", body = ListResponse<Execution>)))]
pub async fn list_for_workflow(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(workflow_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ExecutionQuery>,
) -> ApiResult<Json<ListResponse<Execution>>> {
    let limit = q.limit()?;
    // Another organization's (or an unknown) workflow is a 404, as every foreign id; a
    // deleted workflow of the caller's keeps its executions listable (its versions stay).
    state
        .engine
        .store()
        .get_workflow_version(&who.organization_id, &workflow_id, 1)
        .await?
        .ok_or_else(|| ApiError::not_found("Workflow not found"))?;
    let filter = q.filter(Some(workflow_id))?;
    let page = state
        .engine
        .store()
        .list_executions(&who.organization_id, &filter, limit, q.cursor.as_deref())
        .await?;
    Ok(Json(ListResponse::new(page, limit)))
}

/// Counts and durations of the organization's executions created in the range.
#[utoipa::path(get, path = "/executions/statistics", tag = "executions", params(RangeQuery),
    responses((status = 200, description = "The statistics", body = ExecutionStatistics)))]
pub async fn statistics(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> ApiResult<Json<ExecutionStatistics>> {
    let start = parse_date("startDate", q.start_date.as_deref())?;
    let end = parse_date("endDate", q.end_date.as_deref())?;
    Ok(Json(
        state
            .engine
            .store()
            .execution_statistics(&who.organization_id, start, end)
            .await?,
    ))
}

/// One execution with its nodes and progress.
#[utoipa::path(get, path = "/executions/{id}", tag = "executions", params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The execution", body = ExecutionDetail)))]
pub async fn detail(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ExecutionDetail>> {
    let mut detail = state
        .engine
        .execution_detail(&who, &id)
        .await?
        .with_output_refs();
    // Relative callback URLs (no public URL configured): on the host that was called.
    if let Some(host) = headers.get("host").and_then(|h| h.to_str().ok()) {
        for node in &mut detail.nodes {
            if let Some(cb) = node.callback.as_mut().filter(|c| c.url.starts_with('/')) {
                cb.url = format!("https://{host}{}", cb.url);
            }
        }
    }
    Ok(Json(detail))
}

/// The whole output of one node (what an `outputRef` of the detail names).
#[utoipa::path(get, path = "/executions/{id}/nodes/{nodeId}/output", tag = "executions",
    params(("id" = String, Path, description = "Execution id"), ("nodeId" = String, Path, description = "Node id")),
    responses((status = 200, description = "The node's output (any JSON)", body = Object)))]
pub async fn node_output(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((id, node_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(state.engine.node_output(&who, &id, &node_id).await?))
}

/// Cancels a pending, running or paused execution.
#[utoipa::path(post, path = "/executions/{id}/cancel", tag = "executions", params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The execution after the move", body = Execution),
        (status = 409, description = "Not allowed from the current status", body = super::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Execution>> {
    Ok(Json(state.engine.cancel_execution(&who, &id).await?))
}

/// Pauses a running or pending execution: nodes in flight finish, nothing new starts.
#[utoipa::path(post, path = "/executions/{id}/pause", tag = "executions", params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The execution after the move", body = Execution),
        (status = 409, description = "Not allowed from the current status", body = super::error::ErrorBody)))]
pub async fn pause(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Execution>> {
    Ok(Json(state.engine.pause_execution(&who, &id).await?))
}

/// Resumes a paused execution.
#[utoipa::path(post, path = "/executions/{id}/resume", tag = "executions", params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The execution after the move", body = Execution),
        (status = 409, description = "Not allowed from the current status", body = super::error::ErrorBody)))]
pub async fn resume(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Execution>> {
    Ok(Json(state.engine.resume_execution(&who, &id).await?))
}

/// A new execution of the same workflow version and input (`retryOf` set); with
/// `fromFailedNode` a redrive from the failed node.
#[utoipa::path(post, path = "/executions/{id}/retry", tag = "executions", params(("id" = String, Path, description = "Execution id")),
    request_body(content = Option<RetryBody>, description = "Optional"),
    responses((status = 201, description = "The new execution", body = Execution),
        (status = 409, description = "The execution cannot be retried", body = super::error::ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<RetryBody>,
) -> ApiResult<(StatusCode, Json<Execution>)> {
    let from_failed_node = body.unwrap_or_default().from_failed_node;
    let execution = state
        .engine
        .retry_execution(&who, &id, from_failed_node)
        .await?;
    Ok((StatusCode::CREATED, Json(execution)))
}

async fn execution_of(state: &AppState, who: &Principal, id: &str) -> ApiResult<Execution> {
    state
        .engine
        .store()
        .get_execution(&who.organization_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Execution not found"))
}

/// The execution's logs, oldest first.
#[utoipa::path(get, path = "/executions/{id}/logs", tag = "executions", params(("id" = String, Path, description = "Execution id"), LogQuery),
    responses((status = 200, description = "A page of logs", body = ListResponse<ExecutionLog>)))]
pub async fn logs(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<Json<ListResponse<ExecutionLog>>> {
    check_range("limit", q.limit, 1, MAX_LOG_LIMIT)?;
    let limit = q.limit.unwrap_or(DEFAULT_LOG_LIMIT) as usize;
    // The cursor is a log id (a UUID): anything else is a 400, as every malformed cursor.
    if let Some(after) = &q.after
        && uuid::Uuid::try_parse(after).is_err()
    {
        return Err(ApiError::bad_request(
            "Invalid query: after must be a log id (the nextCursor of a previous page)",
        ));
    }
    execution_of(&state, &who, &id).await?;
    let filter = LogFilter {
        level: q.level,
        node_id: q.node_id,
        after: q.after,
    };
    let page = state
        .engine
        .store()
        .list_logs(&who.organization_id, &id, &filter, limit)
        .await?;
    Ok(Json(ListResponse::new(page, limit)))
}

#[utoipa::path(get, path = "/executions/{id}/metrics", tag = "executions", params(("id" = String, Path, description = "Execution id")),
    responses((status = 200, description = "The execution's metrics", body = ExecutionMetrics)))]
pub async fn metrics(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ExecutionMetrics>> {
    Ok(Json(execution_of(&state, &who, &id).await?.metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_range_follows_the_configured_ceiling() {
        assert!(check_timeout(None, 3_600_000).is_ok());
        assert!(check_timeout(Some(999), 3_600_000).is_err());
        assert!(check_timeout(Some(1000), 3_600_000).is_ok());
        assert!(check_timeout(Some(3_600_000), 3_600_000).is_ok());
        assert!(check_timeout(Some(3_600_001), 3_600_000).is_err());
        assert!(check_timeout(Some(60_001), 60_000).is_err());
        assert!(check_timeout(Some(60_000), 60_000).is_ok());
    }

    #[test]
    fn execution_filters_are_checked() {
        let q = ExecutionQuery {
            limit: Some(0),
            ..Default::default()
        };
        assert!(q.limit().is_err());
        let q = ExecutionQuery::default();
        assert_eq!(q.limit().unwrap(), 20);
        let q = ExecutionQuery {
            start_date: Some("2026-02-01T00:00:00Z".into()),
            end_date: Some("2026-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert!(q.filter(None).is_err());
        let q = ExecutionQuery {
            workflow_id: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(
            q.filter(Some("b".into())).unwrap().workflow_id.as_deref(),
            Some("b")
        );
    }
}
