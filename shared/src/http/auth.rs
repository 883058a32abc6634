//! Who is calling: a [`Principal`] extractor backed by a pluggable [`Authenticator`].
//!
//! - Locally the server verifies HS256 JWTs (`sub` → user, `org` → organization, `exp` and
//!   `nbf` checked with a [`CLOCK_LEEWAY_SECS`] leeway).
//! - Behind API Gateway the HTTP API's JWT authorizer has already verified the token; the
//!   `api` Lambda puts the verified claims into the request's extensions as
//!   [`AuthorizerClaims`] and the router reads them from there.

use super::AppState;
use super::error::ApiError;
use crate::engine::Principal;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The claims of an API Gateway HTTP API JWT authorizer
/// (`requestContext.authorizer.jwt.claims`), inserted into the request extensions by the
/// Lambda host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthorizerClaims(pub Map<String, Value>);

/// How requests are authenticated.
#[derive(Clone)]
pub enum Authenticator {
    /// HS256 tokens signed with this secret (the string's bytes).
    Jwt(JwtSecret),
    /// Claims already verified by API Gateway: `sub` and `org_claim` (e.g. `org` or
    /// `custom:org`).
    ApiGatewayClaims { org_claim: String },
}

/// Clock skew tolerated on `exp` and `nbf` (seconds): a token is refused from this long
/// after its expiry, and accepted from this long before its `nbf`.
pub const CLOCK_LEEWAY_SECS: u64 = 5;

/// An HS256 secret.
#[derive(Clone)]
pub struct JwtSecret {
    decoding: DecodingKey,
    encoding: EncodingKey,
}

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(..)")
    }
}

impl JwtSecret {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
        }
    }

    /// A token for `sub` in `org`, valid for `ttl_secs`.
    pub fn issue(&self, sub: &str, org: &str, ttl_secs: u64) -> Result<String, String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            org: org.to_string(),
            exp: now.saturating_add(ttl_secs),
            iat: Some(now),
            nbf: None,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| e.to_string())
    }

    /// Verifies a token: signature (HS256 only), `exp`, `nbf` when present, non-empty `sub`
    /// and `org`.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = CLOCK_LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("Token expired")
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    ApiError::unauthorized("Token not valid yet")
                }
                _ => ApiError::unauthorized("Invalid token"),
            },
        )?;
        principal(&data.claims.sub, &data.claims.org)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    org: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
}

fn principal(sub: &str, org: &str) -> Result<Principal, ApiError> {
    if sub.trim().is_empty() || org.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "Token must carry `sub` and `org` claims",
        ));
    }
    Ok(Principal {
        user_id: sub.to_string(),
        organization_id: org.to_string(),
    })
}

fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Authenticator {
    pub fn jwt(secret: &[u8]) -> Self {
        Self::Jwt(JwtSecret::new(secret))
    }

    /// The principal of a request, or a 401.
    pub fn authenticate(&self, parts: &Parts) -> Result<Principal, ApiError> {
        match self {
            Self::Jwt(secret) => {
                let header = parts
                    .headers
                    .get(AUTHORIZATION)
                    .ok_or_else(|| ApiError::unauthorized("Missing bearer token"))?;
                let text = header
                    .to_str()
                    .map_err(|_| ApiError::unauthorized("Invalid authorization header"))?;
                let token = text
                    .strip_prefix("Bearer ")
                    .or_else(|| text.strip_prefix("bearer "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| ApiError::unauthorized("Missing bearer token"))?;
                secret.verify(token)
            }
            Self::ApiGatewayClaims { org_claim } => {
                let AuthorizerClaims(claims) = parts
                    .extensions
                    .get::<AuthorizerClaims>()
                    .ok_or_else(|| ApiError::unauthorized("Missing authorizer claims"))?;
                let sub = claim_text(claims, "sub").unwrap_or_default();
                let org = claim_text(claims, org_claim).unwrap_or_default();
                principal(&sub, &org)
            }
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        state.auth.authenticate(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{Request, StatusCode};
    use serde_json::json;

    fn parts_with(auth: Option<&str>) -> Parts {
        let mut b = Request::get("/workflows");
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn jwt_round_trip_and_rejections() {
        let auth = Authenticator::jwt(b"test-secret");
        let Authenticator::Jwt(secret) = &auth else {
            unreachable!()
        };
        let token = secret.issue("u1", "o1", 3600).unwrap();
        let p = auth
            .authenticate(&parts_with(Some(&format!("Bearer {token}"))))
            .unwrap();
        assert_eq!(
            p,
            Principal {
                user_id: "u1".into(),
                organization_id: "o1".into()
            }
        );

        for header in [
            None,
            Some("Bearer"),
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer not.a.jwt"),
        ] {
            let e = auth.authenticate(&parts_with(header)).unwrap_err();
            assert_eq!(e.status, StatusCode::UNAUTHORIZED, "{header:?}");
        }
        // Signed with another secret.
        let other = JwtSecret::new(b"other").issue("u1", "o1", 3600).unwrap();
        assert!(
            auth.authenticate(&parts_with(Some(&format!("Bearer {other}"))))
                .is_err()
        );
        // Empty org.
        let no_org = secret.issue("u1", "", 3600).unwrap();
        assert!(
            auth.authenticate(&parts_with(Some(&format!("Bearer {no_org}"))))
                .is_err()
        );
    }

    fn token(exp: u64, nbf: Option<u64>) -> String {
        let claims = Claims {
            sub: "u".into(),
            org: "o".into(),
            exp,
            iat: None,
            nbf,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap()
    }

    #[test]
    fn expired_tokens_are_refused() {
        let secret = JwtSecret::new(b"s");
        let now = jsonwebtoken::get_current_timestamp();
        let e = secret.verify(&token(now - 3600, None)).unwrap_err();
        assert_eq!(e.message, "Token expired");
        // The leeway is small: a token expired a minute ago is refused.
        assert!(secret.verify(&token(now - 60, None)).is_err());
        assert!(secret.verify(&token(now + 60, None)).is_ok());
    }

    #[test]
    fn tokens_not_valid_yet_are_refused() {
        let secret = JwtSecret::new(b"s");
        let now = jsonwebtoken::get_current_timestamp();
        let e = secret
            .verify(&token(now + 3600, Some(now + 600)))
            .unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert_eq!(e.message, "Token not valid yet");
        assert!(secret.verify(&token(now + 3600, Some(now - 1))).is_ok());
    }

    #[test]
    fn api_gateway_claims_come_from_extensions() {
        let auth = Authenticator::ApiGatewayClaims {
            org_claim: "custom:org".into(),
        };
        let mut parts = parts_with(None);
        assert!(auth.authenticate(&parts).is_err());
        let claims = json!({"sub": "u9", "custom:org": "acme"});
        parts
            .extensions
            .insert(AuthorizerClaims(claims.as_object().unwrap().clone()));
        let p = auth.authenticate(&parts).unwrap();
        assert_eq!(p.user_id, "u9");
        assert_eq!(p.organization_id, "acme");
        let mut parts = parts_with(None);
        parts.extensions.insert(AuthorizerClaims(
            json!({"sub": "u9"}).as_object().unwrap().clone(),
        ));
        assert!(auth.authenticate(&parts).is_err());
    }
}
