//! `/workflows`: CRUD, and a workflow's trends.

use super::error::ApiError;
use super::extract::{ApiBytes, ApiPath, ApiQuery, parse_date, parse_json};
use super::{ApiResult, AppState, ListResponse, PageQuery};
use crate::engine::{Principal, WorkflowTrends};
use crate::model::{TrendInterval, Workflow, WorkflowDefinition, WorkflowStatus};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

/// The organization's workflows (their latest versions).
#[utoipa::path(get, path = "/workflows", tag = "workflows", params(PageQuery),
    responses((status = 200, description = "A page of workflows", body = ListResponse<Workflow>)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<ListResponse<Workflow>>> {
    let limit = q.limit()?;
    let page = state
        .engine
        .list_workflows(&who, limit, q.cursor.as_deref())
        .await?;
    Ok(Json(ListResponse::new(page, limit)))
}

/// Creates a workflow (version 1).
#[utoipa::path(post, path = "/workflows", tag = "workflows", request_body = WorkflowDefinition,
    responses((status = 201, description = "The stored workflow", body = Workflow)))]
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    ApiBytes(body): ApiBytes,
) -> ApiResult<(StatusCode, Json<Workflow>)> {
    let def: WorkflowDefinition = parse_json(&body)?;
    let wf = state.engine.create_workflow(&who, def).await?;
    Ok((StatusCode::CREATED, Json(wf)))
}

/// A workflow (its latest version).
#[utoipa::path(get, path = "/workflows/{id}", tag = "workflows", params(("id" = String, Path, description = "Workflow id")),
    responses((status = 200, description = "The workflow", body = Workflow)))]
pub async fn get(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Workflow>> {
    Ok(Json(state.engine.get_workflow(&who, &id).await?))
}

/// Full replace; a body without a `status` field keeps the current status.
#[utoipa::path(put, path = "/workflows/{id}", tag = "workflows", params(("id" = String, Path, description = "Workflow id")),
    request_body = WorkflowDefinition,
    responses((status = 200, description = "The new version", body = Workflow)))]
pub async fn update(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Json<Workflow>> {
    let def: WorkflowDefinition = parse_json(&body)?;
    let raw: Value = parse_json(&body)?;
    let status: Option<WorkflowStatus> = raw.get("status").map(|_| def.status);
    Ok(Json(
        state
            .engine
            .replace_workflow(&who, &id, def, status)
            .await?,
    ))
}

/// Deletes a workflow (its executions stay listable).
#[utoipa::path(delete, path = "/workflows/{id}", tag = "workflows", params(("id" = String, Path, description = "Workflow id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.engine.delete_workflow(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?startDate&endDate&interval=hour|day`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct TrendsQuery {
    /// RFC 3339; default: `endDate` minus 7 days.
    pub start_date: Option<String>,
    /// RFC 3339; default: now.
    pub end_date: Option<String>,
    /// `hour` or `day` (default).
    #[param(pattern = "^(hour|day)$")]
    pub interval: Option<String>,
}

/// `GET /workflows/{id}/trends`.
#[utoipa::path(get, path = "/workflows/{id}/trends", tag = "workflows", params(("id" = String, Path, description = "Workflow id"), TrendsQuery),
    responses((status = 200, description = "Executions per hour or day", body = WorkflowTrends)))]
pub async fn trends(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TrendsQuery>,
) -> ApiResult<Json<WorkflowTrends>> {
    let interval = match q.interval.as_deref() {
        None => TrendInterval::Day,
        Some(text) => TrendInterval::parse(text)
            .ok_or_else(|| ApiError::bad_request("interval must be hour or day"))?,
    };
    let start = parse_date("startDate", q.start_date.as_deref())?;
    let end = parse_date("endDate", q.end_date.as_deref())?;
    Ok(Json(
        state
            .engine
            .workflow_trends(&who, &id, interval, start, end)
            .await?,
    ))
}
