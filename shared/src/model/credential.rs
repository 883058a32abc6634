//! Named secrets used by nodes and webhook auth (spec §4).

use super::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum CredentialType {
    /// `data: {name, value}`
    HttpHeader,
    /// `data: {username, password}`
    HttpBasic,
    /// `data: {token}`
    Bearer,
    /// `data: {secret}`
    HmacSecret,
}

/// What the API returns: never the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub credential_type: CredentialType,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What the store keeps: the metadata plus the AES-256-GCM sealed data (base64 of nonce ‖ ciphertext).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCredential {
    pub credential: Credential,
    pub sealed_data: String,
}
