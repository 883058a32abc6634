//! Callback tokens (SPEC §8, "Callbacks"): an unguessable token per (execution, node), known
//! from the execution's start, so an earlier node can send the callback URL out.
//!
//! The token is the target (organization, execution, node) and an HMAC-SHA256 over it with
//! the installation's key (derived from the credential encryption key, so every function of
//! an installation computes the same tokens): checked without a lookup, in constant time. An
//! unknown or tampered token is simply not valid.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the MAC kept in a token (128 bits: unguessable).
const MAC_BYTES: usize = 16;

/// What a callback token points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackTarget {
    pub organization_id: String,
    pub execution_id: String,
    pub node_id: String,
}

/// Makes and checks callback tokens with one installation key.
#[derive(Clone)]
pub struct CallbackTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for CallbackTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackTokens(..)")
    }
}

impl CallbackTokens {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; 32 bytes cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"weconnect-callback-v1\n");
        mac.update(payload);
        mac
    }

    /// The token of a node of an execution.
    pub fn token(&self, target: &CallbackTarget) -> String {
        let payload = format!(
            "{}\n{}\n{}",
            target.organization_id, target.execution_id, target.node_id
        );
        let tag = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!(
            "{}.{}",
            B64.encode(payload.as_bytes()),
            B64.encode(&tag[..MAC_BYTES])
        )
    }

    /// The target of a valid token; None for anything else (malformed, tampered, another
    /// installation's).
    pub fn verify(&self, token: &str) -> Option<CallbackTarget> {
        let (payload, tag) = token.split_once('.')?;
        let payload = B64.decode(payload).ok()?;
        let tag = B64.decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        // Constant-time comparison of the truncated MAC.
        self.mac(&payload).verify_truncated_left(&tag).ok()?;
        let text = String::from_utf8(payload).ok()?;
        let mut parts = text.splitn(3, '\n');
        let (org, exec, node) = (parts.next()?, parts.next()?, parts.next()?);
        if org.is_empty() || exec.is_empty() || node.is_empty() {
            return None;
        }
        Some(CallbackTarget {
            organization_id: org.to_string(),
            execution_id: exec.to_string(),
            node_id: node.to_string(),
        })
    }

    /// The callback URL of a token under the public base URL.
    pub fn url(public_url: &str, token: &str) -> String {
        format!("{}/callbacks/{token}", public_url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> CallbackTarget {
        CallbackTarget {
            organization_id: "acme".into(),
            execution_id: "01936f0e-0000-7000-8000-000000000001".into(),
            node_id: "approve".into(),
        }
    }

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_target() {
        let t = CallbackTokens::new([1; 32]);
        let token = t.token(&target());
        assert_eq!(t.verify(&token), Some(target()));
        // URL-safe: one path segment.
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        // Another node of the same execution has another token.
        let mut other = target();
        other.node_id = "reject".into();
        assert_ne!(t.token(&other), token);
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let t = CallbackTokens::new([1; 32]);
        let token = t.token(&target());
        let (payload, tag) = token.split_once('.').unwrap();
        // Another target with the same tag.
        let forged = format!("{}.{tag}", B64.encode("acme\nother-exec\napprove"));
        assert_eq!(t.verify(&forged), None);
        // A flipped tag character.
        let mut bad = tag.to_string().into_bytes();
        bad[0] = if bad[0] == b'A' { b'B' } else { b'A' };
        let bad = format!("{payload}.{}", String::from_utf8(bad).unwrap());
        assert_eq!(t.verify(&bad), None);
        // Another installation's key.
        assert_eq!(CallbackTokens::new([2; 32]).verify(&token), None);
        for junk in ["", ".", "abc", "a.b", &format!("{payload}."), "ü.ü"] {
            assert_eq!(t.verify(junk), None, "{junk:?}");
        }
    }
}
