//! Extractors whose rejections are spec-shaped errors: 400 for malformed JSON, wrong types
//! and bad query or path values; 413 for bodies over the limit.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON body. The content type is not required (curl users forget it); the body must parse.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

/// An optional JSON body: empty means `None`.
#[derive(Debug, Clone)]
pub struct OptionalJson<T>(pub Option<T>);

/// The raw body (limit errors are 413 in the spec shape).
#[derive(Debug, Clone)]
pub struct ApiBytes(pub Bytes);

/// Query parameters.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

/// Path parameters.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

pub(crate) fn bytes_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
    } else {
        ApiError::new(r.status(), r.body_text())
    }
}

pub(crate) fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("Malformed JSON: {}", inner_text(&e.body_text())))
        }
        JsonRejection::JsonDataError(e) => ApiError::bad_request(format!(
            "Invalid request body: {}",
            inner_text(&e.body_text())
        )),
        JsonRejection::BytesRejection(b) => bytes_rejection(b),
        other => ApiError::bad_request(other.body_text()),
    }
}

/// axum prefixes its messages ("Failed to deserialize the JSON body into the target type: …").
fn inner_text(text: &str) -> String {
    match text.split_once(": ") {
        Some((head, rest)) if head.starts_with("Failed to") => rest.to_string(),
        _ => text.to_string(),
    }
}

/// Parses a JSON body (shared by the extractors and the unit tests).
/// Bodies nested deeper than [`MAX_JSON_DEPTH`](crate::limits::MAX_JSON_DEPTH) are refused
/// before they are parsed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "Request body must be a JSON document",
        ));
    }
    crate::limits::check_json_depth_text(bytes, "Request body").map_err(ApiError::bad_request)?;
    axum::Json::<T>::from_bytes(bytes)
        .map(|axum::Json(v)| v)
        .map_err(json_rejection)
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(bytes_rejection)
    }
}

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        parse_json(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

pub(crate) fn query_rejection(r: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("Invalid query: {}", inner_text(&r.body_text())))
}

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| ApiQuery(v))
            .map_err(query_rejection)
    }
}

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|r: PathRejection| {
                if r.status().is_server_error() {
                    ApiError::internal(r.body_text())
                } else {
                    ApiError::bad_request(format!("Invalid path: {}", inner_text(&r.body_text())))
                }
            })
    }
}

/// Checks `value` (when given) lies in `min..=max`; the message names the parameter.
pub fn check_range(name: &str, value: Option<u64>, min: u64, max: u64) -> Result<(), ApiError> {
    match value {
        Some(v) if v < min || v > max => Err(ApiError::bad_request(format!(
            "{name} must be between {min} and {max}"
        ))),
        _ => Ok(()),
    }
}

/// Parses an optional RFC 3339 date-time query value; the message names the parameter.
pub fn parse_date(
    name: &str,
    value: Option<&str>,
) -> Result<Option<crate::model::Timestamp>, ApiError> {
    match value {
        None => Ok(None),
        Some(text) => crate::model::Timestamp::parse(text)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name} must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Body1 {
        workflow_id: String,
        timeout: Option<u64>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Q {
        limit: Option<u64>,
        status: Option<crate::model::ExecutionStatus>,
    }

    async fn json_of(body: &'static str) -> Result<Body1, ApiError> {
        let req = HttpRequest::post("/").body(Body::from(body)).unwrap();
        ApiJson::<Body1>::from_request(req, &()).await.map(|j| j.0)
    }

    #[tokio::test]
    async fn json_bodies_parse_without_a_content_type() {
        assert_eq!(
            json_of(r#"{"workflowId":"w"}"#).await.unwrap(),
            Body1 {
                workflow_id: "w".into(),
                timeout: None
            }
        );
    }

    #[tokio::test]
    async fn malformed_json_wrong_types_and_unknown_fields_are_400() {
        for (body, needle) in [
            ("{not json", "Malformed JSON"),
            ("", "must be a JSON document"),
            (r#"{"workflowId": 5}"#, "workflowId"),
            (r#"{"workflowId": "w", "timeout": "soon"}"#, "timeout"),
            (r#"{"workflowId": "w", "extra": 1}"#, "extra"),
            ("[1,2]", "Invalid request body"),
        ] {
            let e = json_of(body).await.unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
    }

    #[tokio::test]
    async fn oversized_bodies_are_413() {
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::post(|ApiJson(b): ApiJson<serde_json::Value>| async move {
                    axum::Json(b)
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(1024));
        let body = format!("{{\"a\": \"{}\"}}", "x".repeat(4096));
        let res = app
            .oneshot(HttpRequest::post("/").body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["statusCode"], 413);
    }

    #[tokio::test]
    async fn optional_json_accepts_empty() {
        let req = HttpRequest::post("/").body(Body::empty()).unwrap();
        let OptionalJson(v) = OptionalJson::<Body1>::from_request(req, &()).await.unwrap();
        assert!(v.is_none());
    }

    #[tokio::test]
    async fn bad_query_values_are_400() {
        let (mut parts, _) = HttpRequest::get("/x?limit=abc")
            .body(())
            .unwrap()
            .into_parts();
        let e = ApiQuery::<Q>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("limit"), "{}", e.message);
        let (mut parts, _) = HttpRequest::get("/x?status=done")
            .body(())
            .unwrap()
            .into_parts();
        let e = ApiQuery::<Q>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert!(e.message.contains("status"), "{}", e.message);
        let (mut parts, _) = HttpRequest::get("/x?status=running&limit=5")
            .body(())
            .unwrap()
            .into_parts();
        let ApiQuery(q) = ApiQuery::<Q>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.status, Some(crate::model::ExecutionStatus::Running));
    }

    #[test]
    fn ranges_and_dates() {
        assert!(check_range("limit", Some(0), 1, 100).is_err());
        assert!(check_range("limit", Some(101), 1, 100).is_err());
        assert!(check_range("limit", Some(100), 1, 100).is_ok());
        assert!(check_range("limit", None, 1, 100).is_ok());
        assert!(parse_date("startDate", Some("yesterday")).is_err());
        assert!(
            parse_date("startDate", Some("2026-01-01T00:00:00Z"))
                .unwrap()
                .is_some()
        );
    }
}
