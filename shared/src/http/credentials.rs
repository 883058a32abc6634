//! `/credentials`: named secrets; `data` is write-only and sealed with AES-256-GCM.

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::{ApiResult, AppState, ListResponse, PageQuery};
use crate::engine::Principal;
use crate::model::{Credential, CredentialType, StoredCredential};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Deserialize;
use serde_json::{Map, Value};

pub const MAX_NAME_LEN: usize = crate::limits::MAX_NAME_CHARS;

/// `POST /credentials`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCredential {
    /// 1–100 characters.
    pub name: String,
    #[serde(rename = "type")]
    pub credential_type: CredentialType,
    /// Write-only: `httpHeader` `{name, value}`, `httpBasic` `{username, password}`, `bearer`
    /// `{token}`, `hmacSecret` `{secret}` (`whsec_<base64>`).
    #[schema(value_type = Object)]
    pub data: Value,
}

/// The HMAC key of a Standard Webhooks secret: `whsec_<base64>` (the prefix optional),
/// the decoded bytes. None when it does not decode or is empty.
pub fn hmac_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(b64)
        .or_else(|_| STANDARD_NO_PAD.decode(b64))
        .ok()?;
    (!key.is_empty()).then_some(key)
}

fn fields(ty: CredentialType) -> &'static [&'static str] {
    match ty {
        CredentialType::HttpHeader => &["name", "value"],
        CredentialType::HttpBasic => &["username", "password"],
        CredentialType::Bearer => &["token"],
        CredentialType::HmacSecret => &["secret"],
    }
}

/// Checks `data` has exactly the type's fields, as non-empty strings, with valid values.
/// Messages never echo the values.
pub fn validate_data(ty: CredentialType, data: &Value) -> Result<(), ApiError> {
    let expected = fields(ty);
    let shape = || {
        format!(
            "data must be an object with the string fields {}",
            expected
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let map: &Map<String, Value> = data
        .as_object()
        .ok_or_else(|| ApiError::bad_request(shape()))?;
    for key in map.keys() {
        if !expected.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "data has an unknown field `{key}`; {}",
                shape()
            )));
        }
    }
    let text = |f: &str| -> Result<&str, ApiError> {
        match map.get(f) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
            _ => Err(ApiError::bad_request(format!(
                "data.{f} is required and must be a non-empty string"
            ))),
        }
    };
    for f in expected {
        text(f)?;
    }
    match ty {
        CredentialType::HttpHeader => {
            if axum::http::HeaderName::from_bytes(text("name")?.as_bytes()).is_err() {
                return Err(ApiError::bad_request(
                    "data.name must be a valid header name",
                ));
            }
            if axum::http::HeaderValue::from_str(text("value")?).is_err() {
                return Err(ApiError::bad_request(
                    "data.value must be a valid header value",
                ));
            }
        }
        CredentialType::Bearer => {
            if axum::http::HeaderValue::from_str(text("token")?).is_err() {
                return Err(ApiError::bad_request(
                    "data.token must be a valid header value",
                ));
            }
        }
        CredentialType::HmacSecret => {
            if hmac_key(text("secret")?).is_none() {
                return Err(ApiError::bad_request(
                    "data.secret must be `whsec_` followed by base64 (Standard Webhooks)",
                ));
            }
        }
        CredentialType::HttpBasic => {}
    }
    Ok(())
}

/// Stores a named secret, encrypted; its `data` is never returned.
#[utoipa::path(post, path = "/credentials", tag = "credentials", request_body = CreateCredential,
    responses((status = 201, description = "The credential, without its data", body = Credential)))]
pub async fn create(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<CreateCredential>,
) -> ApiResult<(StatusCode, Json<Credential>)> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::bad_request(format!(
            "name must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    validate_data(body.credential_type, &body.data)?;
    let now = state.engine.clock().now();
    let credential = Credential {
        id: crate::model::new_id(),
        organization_id: who.organization_id.clone(),
        name: name.to_string(),
        credential_type: body.credential_type,
        created_at: now,
        updated_at: now,
    };
    let sealed_data = state.engine.vault().secrets.seal(&body.data);
    state
        .engine
        .store()
        .put_credential(&StoredCredential {
            credential: credential.clone(),
            sealed_data,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(credential)))
}

#[utoipa::path(get, path = "/credentials", tag = "credentials", params(PageQuery),
    responses((status = 200, description = "A page of credentials, without their data", body = ListResponse<Credential>)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<ListResponse<Credential>>> {
    let limit = q.limit()?;
    let page = state
        .engine
        .store()
        .list_credentials(&who.organization_id, limit, q.cursor.as_deref())
        .await?;
    Ok(Json(ListResponse::new(page, limit)))
}

#[utoipa::path(delete, path = "/credentials/{id}", tag = "credentials",
    params(("id" = String, Path, description = "Credential id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if state
        .engine
        .store()
        .delete_credential(&who.organization_id, &id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("Credential not found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_is_checked_per_type_without_echoing_values() {
        use CredentialType::*;
        assert!(validate_data(HttpHeader, &json!({"name": "X-Token", "value": "v"})).is_ok());
        assert!(validate_data(HttpBasic, &json!({"username": "u", "password": "p"})).is_ok());
        assert!(validate_data(Bearer, &json!({"token": "t"})).is_ok());
        assert!(validate_data(HmacSecret, &json!({"secret": "whsec_c2VjcmV0LWtleQ=="})).is_ok());
        for (ty, data) in [
            (HttpHeader, json!({"name": "bad header", "value": "v"})),
            (HttpHeader, json!({"name": "X"})),
            (HttpBasic, json!({"username": "u", "password": ""})),
            (Bearer, json!({"token": "t", "extra": "topsecret"})),
            (Bearer, json!("topsecret")),
            (HmacSecret, json!({"secret": "whsec_***topsecret"})),
            (HmacSecret, json!({"secret": 5})),
        ] {
            let e = validate_data(ty, &data).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(!e.message.contains("topsecret"), "{}", e.message);
        }
    }

    #[test]
    fn hmac_keys_decode_with_or_without_prefix() {
        assert_eq!(hmac_key("whsec_c2VjcmV0").unwrap(), b"secret");
        assert_eq!(hmac_key("c2VjcmV0").unwrap(), b"secret");
        assert!(hmac_key("whsec_").is_none());
        assert!(hmac_key("whsec_%%%").is_none());
    }
}
