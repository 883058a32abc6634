//! Credential data sealed with AES-256-GCM; the key comes from `WECONNECT_ENCRYPTION_KEY`
//! (base64 of 32 bytes) or, on the local server, a key generated into the data folder.

use crate::model::{CredentialType, StoredCredential};
use crate::ports::{CredentialStore, StoreError};
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("encryption key must be base64 of 32 bytes")]
    BadKey,
    #[error("credential data could not be decrypted (wrong key or damaged data)")]
    Undecryptable,
    #[error("credential {0:?} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Seals and opens credential data.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
    /// The key of callback tokens, derived from the encryption key (HMAC-SHA256 of a label):
    /// every function of an installation computes the same tokens.
    callback_key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        use hmac::Mac as _;
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"weconnect callback tokens v1");
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
            callback_key: mac.finalize().into_bytes().into(),
        }
    }

    /// Callback tokens of this installation.
    pub fn callback_tokens(&self) -> crate::callbacks::CallbackTokens {
        crate::callbacks::CallbackTokens::new(self.callback_key)
    }

    /// From base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = B64.decode(text.trim()).map_err(|_| SecretError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(Self::new(&key))
    }

    /// A fresh random key, base64.
    pub fn generate_key() -> String {
        B64.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// base64(nonce ‖ ciphertext) of the JSON text of `data`.
    pub fn seal(&self, data: &Value) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let plain = data.to_string();
        // Encryption with a fresh nonce and an in-memory buffer cannot fail.
        let sealed = self
            .cipher
            .encrypt(&nonce, plain.as_bytes())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<Value, SecretError> {
        let bytes = B64.decode(sealed).map_err(|_| SecretError::Undecryptable)?;
        if bytes.len() < 12 {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, ct) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| SecretError::Undecryptable)?;
        serde_json::from_slice(&plain).map_err(|_| SecretError::Undecryptable)
    }
}

/// A credential's type and decrypted data.
#[derive(Clone)]
pub struct OpenCredential {
    pub credential_type: CredentialType,
    pub data: Value,
}

impl OpenCredential {
    /// Every secret string inside the data (to redact from outputs and logs).
    pub fn secret_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Value::Object(map) = &self.data {
            for (k, v) in map {
                // Header names and user names are not secret; everything else is.
                if matches!(k.as_str(), "name" | "username") {
                    continue;
                }
                if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
                    out.push(s.to_string());
                }
            }
        }
        out
    }
}

/// Credentials of an organization, opened on demand.
#[derive(Clone)]
pub struct Vault {
    pub secrets: SecretBox,
    pub store: Arc<dyn CredentialStore>,
}

impl Vault {
    pub fn new(secrets: SecretBox, store: Arc<dyn CredentialStore>) -> Self {
        Self { secrets, store }
    }

    /// By id or name.
    pub async fn open(&self, org: &str, id_or_name: &str) -> Result<OpenCredential, SecretError> {
        let stored: StoredCredential = self
            .store
            .get_credential(org, id_or_name)
            .await?
            .ok_or_else(|| SecretError::NotFound(id_or_name.to_string()))?;
        Ok(OpenCredential {
            credential_type: stored.credential.credential_type,
            data: self.secrets.open(&stored.sealed_data)?,
        })
    }
}

/// Replaces every occurrence of each secret inside `value`'s strings with `[REDACTED]`.
pub fn redact(value: &mut Value, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    match value {
        Value::String(s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "[REDACTED]");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact(v, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seal_then_open_round_trips_and_hides_the_text() {
        let b = SecretBox::from_base64(&SecretBox::generate_key()).unwrap();
        let sealed = b.seal(&json!({"token": "s3cret-value"}));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(b.open(&sealed).unwrap(), json!({"token": "s3cret-value"}));
        let other = SecretBox::from_base64(&SecretBox::generate_key()).unwrap();
        assert!(matches!(
            other.open(&sealed),
            Err(SecretError::Undecryptable)
        ));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(SecretBox::from_base64("short").is_err());
        assert!(SecretBox::from_base64(&B64.encode([0u8; 16])).is_err());
    }

    #[test]
    fn redact_replaces_nested_secrets() {
        let mut v = json!({"a": "Bearer tok123", "b": ["tok123"], "c": 5});
        redact(&mut v, &["tok123".to_string()]);
        assert_eq!(
            v,
            json!({"a": "Bearer [REDACTED]", "b": ["[REDACTED]"], "c": 5})
        );
    }
}
