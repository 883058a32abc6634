//! Errors in the spec's shape: `{"statusCode", "message", "error", "details"}`.

use crate::EngineError;
use crate::ports::{QueueError, StoreError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error response. `message` is shown to the client; internals never are.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Value,
    /// Extra response headers (`Allow`, `WWW-Authenticate`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: json!({}),
            headers: Vec::new(),
        }
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
    pub fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message).with_header(header::WWW_AUTHENTICATE, "Bearer")
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than {limit} bytes"),
        )
    }
    /// A 500 whose cause is logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    /// The response body.
    pub fn body(&self) -> Value {
        body(self.status, &self.message, self.details.clone())
    }
}

/// The shape of every error response (SPEC §4), as the OpenAPI document shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// The HTTP status code.
    #[schema(example = 404)]
    pub status_code: u16,
    #[schema(example = "Execution not found")]
    pub message: String,
    /// The status code's reason phrase.
    #[schema(example = "Not Found")]
    pub error: String,
    /// More about the error (an invalid workflow's `errors`, ...); `{}` when nothing more.
    pub details: std::collections::BTreeMap<String, Value>,
}

/// The spec's error body for `status`.
pub fn body(status: StatusCode, message: &str, details: Value) -> Value {
    json!({
        "statusCode": status.as_u16(),
        "message": message,
        "error": status.canonical_reason().unwrap_or("Error"),
        "details": details,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidCursor => Self::bad_request("Invalid cursor"),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, m),
            StoreError::TooLarge(m) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Item too large: {m}"),
            ),
            StoreError::Backend(m) => Self::internal(format!("store: {m}")),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        tracing::error!(error = %e, "queue error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service temporarily unavailable",
        )
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => Self::not_found(m),
            EngineError::Conflict(m) => Self::new(StatusCode::CONFLICT, m),
            EngineError::BadRequest(m) => Self::bad_request(m),
            EngineError::Invalid(v) => {
                let details = if v.details.is_null() {
                    json!({})
                } else {
                    v.details
                };
                Self::bad_request(v.message).with_details(details)
            }
            EngineError::Store(s) => s.into(),
            EngineError::Queue(q) => q.into(),
        }
    }
}

impl From<crate::secrets::SecretError> for ApiError {
    fn from(e: crate::secrets::SecretError) -> Self {
        use crate::secrets::SecretError;
        match e {
            SecretError::NotFound(_) => Self::not_found("Credential not found"),
            SecretError::Store(s) => s.into(),
            other => Self::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ValidationError;
    use axum::http::HeaderMap;

    async fn read(r: Response) -> (StatusCode, HeaderMap, Value) {
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn engine_errors_map_to_statuses_in_the_spec_shape() {
        let cases: Vec<(EngineError, u16, &str)> = vec![
            (
                EngineError::NotFound("Execution not found".into()),
                404,
                "Not Found",
            ),
            (
                EngineError::Conflict("cannot pause".into()),
                409,
                "Conflict",
            ),
            (EngineError::BadRequest("bad".into()), 400, "Bad Request"),
            (StoreError::InvalidCursor.into(), 400, "Bad Request"),
            (
                StoreError::Conflict("webhook taken".into()).into(),
                409,
                "Conflict",
            ),
            (
                StoreError::Backend("disk I/O at /secret/path".into()).into(),
                500,
                "Internal Server Error",
            ),
            (
                QueueError::Backend("sqs down".into()).into(),
                503,
                "Service Unavailable",
            ),
        ];
        for (e, code, reason) in cases {
            let (status, _, body) = read(ApiError::from(e).into_response()).await;
            assert_eq!(status.as_u16(), code);
            assert_eq!(body["statusCode"], code);
            assert_eq!(body["error"], reason);
            assert!(body["details"].is_object());
            assert!(!body["message"].as_str().unwrap().contains("/secret/path"));
        }
        let (status, _, body) = read(
            ApiError::from(EngineError::NotFound("Execution not found".into())).into_response(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"statusCode": 404, "message": "Execution not found", "error": "Not Found", "details": {}})
        );
    }

    #[tokio::test]
    async fn validation_errors_keep_their_details() {
        let e = EngineError::Invalid(ValidationError {
            message: "node `x`: unknown type".into(),
            details: json!({"nodeId": "x"}),
        });
        let (status, _, body) = read(ApiError::from(e).into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["message"], "node `x`: unknown type");
        assert_eq!(body["details"], json!({"nodeId": "x"}));
    }

    #[tokio::test]
    async fn unauthorized_carries_www_authenticate() {
        let (status, headers, body) = read(ApiError::unauthorized("no").into_response()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(body["error"], "Unauthorized");
    }
}
