//! Callbacks of `flow.waitForCallback` nodes (SPEC §8): by token, without a bearer token
//! (`POST /callbacks/{token}`, `POST /callbacks/{token}/fail`), and the authenticated
//! alternatives for the caller's organization (`POST /executions/{id}/nodes/{nodeId}/complete`
//! and `…/fail`). 202 `{executionId, nodeId, status}` on the first accepted call; 409 after,
//! or once the node finished or the execution is terminal; 404 for an unknown or tampered
//! token.

use super::error::ApiError;
use super::extract::{ApiBytes, ApiPath, parse_json};
use super::{ApiResult, AppState};
use crate::engine::{CallbackAccepted, Principal};
use crate::model::Callback;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

/// The body of a callback: any JSON (empty means `null`).
fn body_of(bytes: &[u8]) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    parse_json(bytes)
}

/// `{"message": "…"}` of a failing callback.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FailBody {
    /// At most 4096 characters.
    #[serde(default)]
    #[schema(max_length = 4096)]
    message: Option<String>,
}

fn failure(bytes: &[u8]) -> ApiResult<Callback> {
    let body: FailBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        FailBody::default()
    } else {
        parse_json(bytes)?
    };
    let message = body
        .message
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| "The callback reported a failure".into());
    if message.chars().count() > 4_096 {
        return Err(ApiError::bad_request(
            "message must be at most 4096 characters",
        ));
    }
    Ok(Callback::Failed(message))
}

type Accepted = (StatusCode, Json<CallbackAccepted>);

async fn by_token(state: &AppState, token: &str, callback: Callback) -> ApiResult<Accepted> {
    let target = state
        .engine
        .callback_tokens()
        .verify(token)
        .ok_or_else(|| ApiError::not_found("Callback not found"))?;
    let accepted = state.engine.deliver_callback(&target, callback).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// `POST /callbacks/{token}`: the waiting node succeeds with `{"body": <body>}`.
#[utoipa::path(post, path = "/callbacks/{token}", tag = "callbacks", params(("token" = String, Path, description = "The callback token of a waiting node (its callback URL)")),
    request_body(content = Option<serde_json::Value>, description = "Any JSON (empty: null): the node's output is `{\"body\": …}`"),
    responses((status = 202, description = "Accepted: the node finishes with it", body = CallbackAccepted), (status = 409, description = "Already called back, or the node or execution finished", body = super::error::ErrorBody)), security(()))]
pub async fn complete(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    ApiBytes(bytes): ApiBytes,
) -> ApiResult<Accepted> {
    let body = body_of(&bytes)?;
    by_token(&state, &token, Callback::Completed(body)).await
}

/// `POST /callbacks/{token}/fail` with `{"message"}`: the node fails (`callbackFailed`).
#[utoipa::path(post, path = "/callbacks/{token}/fail", tag = "callbacks", params(("token" = String, Path, description = "The callback token of a waiting node (its callback URL)")),
    request_body(content = Option<FailBody>, description = "Optional"),
    responses((status = 202, description = "Accepted: the node finishes with it", body = CallbackAccepted), (status = 409, description = "Already called back, or the node or execution finished", body = super::error::ErrorBody)), security(()))]
pub async fn fail(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    ApiBytes(bytes): ApiBytes,
) -> ApiResult<Accepted> {
    let callback = failure(&bytes)?;
    by_token(&state, &token, callback).await
}

/// `POST /executions/{id}/nodes/{nodeId}/complete`.
#[utoipa::path(post, path = "/executions/{id}/nodes/{nodeId}/complete", tag = "callbacks", params(("id" = String, Path, description = "Execution id"), ("nodeId" = String, Path, description = "The waiting node")),
    request_body(content = Option<serde_json::Value>, description = "Any JSON (empty: null)"),
    responses((status = 202, description = "Accepted: the node finishes with it", body = CallbackAccepted), (status = 409, description = "Already called back, or the node or execution finished", body = super::error::ErrorBody)))]
pub async fn complete_node(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((id, node_id)): ApiPath<(String, String)>,
    ApiBytes(bytes): ApiBytes,
) -> ApiResult<Accepted> {
    let body = body_of(&bytes)?;
    let accepted = state
        .engine
        .complete_node(&who, &id, &node_id, Callback::Completed(body))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// `POST /executions/{id}/nodes/{nodeId}/fail`.
#[utoipa::path(post, path = "/executions/{id}/nodes/{nodeId}/fail", tag = "callbacks", params(("id" = String, Path, description = "Execution id"), ("nodeId" = String, Path, description = "The waiting node")),
    request_body(content = Option<FailBody>, description = "Optional"),
    responses((status = 202, description = "Accepted: the node finishes with it", body = CallbackAccepted), (status = 409, description = "Already called back, or the node or execution finished", body = super::error::ErrorBody)))]
pub async fn fail_node(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((id, node_id)): ApiPath<(String, String)>,
    ApiBytes(bytes): ApiBytes,
) -> ApiResult<Accepted> {
    let callback = failure(&bytes)?;
    let accepted = state
        .engine
        .complete_node(&who, &id, &node_id, callback)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
