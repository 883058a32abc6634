//! Opaque, tamper-safe pagination cursors.
//!
//! A cursor is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))` where the payload
//! is the JSON `{"v":1,"o":org,"q":query,"k":{...LastEvaluatedKey...}}`. The key names the
//! last item returned (every key attribute of this table is a string). Decoding checks the MAC
//! in constant time, then that the organization and the query kind (which includes e.g. the
//! workflow id of a per-workflow listing) are the caller's: a forged cursor, or one issued to
//! another organization or for another query, is [`StoreError::InvalidCursor`], never a read
//! of someone else's partition. The stores also check that the key's partition is the one the
//! query reads.

use crate::ports::StoreError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;

type HmacSha256 = Hmac<Sha256>;

/// A position in a query: attribute name → string value.
pub type CursorKey = BTreeMap<String, String>;

#[derive(Clone)]
pub struct CursorCodec {
    key: [u8; 32],
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    v: u8,
    o: String,
    q: String,
    k: CursorKey,
}

impl CursorCodec {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    pub fn encode(&self, org: &str, query: &str, key: &CursorKey) -> String {
        let payload = Payload {
            v: 1,
            o: org.to_string(),
            q: query.to_string(),
            k: key.clone(),
        };
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&json);
        let tag = mac.finalize().into_bytes();
        format!("{}.{}", B64.encode(&json), B64.encode(tag))
    }

    pub fn decode(&self, token: &str, org: &str, query: &str) -> Result<CursorKey, StoreError> {
        let (body, tag) = token.split_once('.').ok_or(StoreError::InvalidCursor)?;
        let json = B64.decode(body).map_err(|_| StoreError::InvalidCursor)?;
        let tag = B64.decode(tag).map_err(|_| StoreError::InvalidCursor)?;
        let mut mac = self.mac();
        mac.update(&json);
        mac.verify_slice(&tag)
            .map_err(|_| StoreError::InvalidCursor)?;
        let payload: Payload =
            serde_json::from_slice(&json).map_err(|_| StoreError::InvalidCursor)?;
        if payload.v != 1 || payload.o != org || payload.q != query {
            return Err(StoreError::InvalidCursor);
        }
        Ok(payload.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CursorKey {
        [("pk".to_string(), "O#a#E#1".to_string())]
            .into_iter()
            .collect()
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        let c = CursorCodec::new([7; 32]);
        let token = c.encode("a", "executions", &key());
        assert_eq!(c.decode(&token, "a", "executions").unwrap(), key());
        // Another organization or query.
        assert!(matches!(
            c.decode(&token, "b", "executions"),
            Err(StoreError::InvalidCursor)
        ));
        assert!(matches!(
            c.decode(&token, "a", "workflows"),
            Err(StoreError::InvalidCursor)
        ));
        // Another key.
        assert!(
            CursorCodec::new([8; 32])
                .decode(&token, "a", "executions")
                .is_err()
        );
        // A payload rewritten to another org, with the old tag.
        let (_, tag) = token.split_once('.').unwrap();
        let forged = B64.encode(br#"{"v":1,"o":"b","q":"executions","k":{"pk":"O#b#E#1"}}"#);
        assert!(
            c.decode(&format!("{forged}.{tag}"), "b", "executions")
                .is_err()
        );
        for junk in ["", ".", "abc", "a.b", "!!.??", &format!("{forged}.")] {
            assert!(matches!(
                c.decode(junk, "a", "executions"),
                Err(StoreError::InvalidCursor)
            ));
        }
    }
}
