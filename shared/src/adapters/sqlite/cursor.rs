//! Opaque page cursors: base64url of `{"s": scope, "t": sort time, "i": sort id}`.
//!
//! The scope is a fingerprint of the list (kind, organization, filter), so a cursor issued for
//! another organization or another query is refused with `InvalidCursor`. A forged cursor
//! with the right scope can only move the position: every query also filters by organization.

use crate::ports::StoreError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Raw {
    s: String,
    t: i64,
    i: String,
}

/// The last sort key of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    pub time: i64,
    pub id: String,
}

/// A stable fingerprint of what a list is of (FNV-1a 64 over the parts, hex).
pub(crate) fn scope(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

pub(crate) fn encode(scope: &str, time: i64, id: &str) -> String {
    let raw = Raw {
        s: scope.to_string(),
        t: time,
        i: id.to_string(),
    };
    // Serializing a struct of strings and an integer cannot fail.
    let json = serde_json::to_vec(&raw).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

pub(crate) fn decode(scope: &str, cursor: &str) -> Result<Position, StoreError> {
    if cursor.len() > 1024 {
        return Err(StoreError::InvalidCursor);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|_| StoreError::InvalidCursor)?;
    let raw: Raw = serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)?;
    if raw.s != scope {
        return Err(StoreError::InvalidCursor);
    }
    Ok(Position {
        time: raw.t,
        id: raw.i,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_foreign_or_broken_cursors() {
        let s = scope(&["executions", "org-1", ""]);
        let c = encode(&s, 42, "abc");
        assert_eq!(
            decode(&s, &c).unwrap(),
            Position {
                time: 42,
                id: "abc".into()
            }
        );
        let other = scope(&["executions", "org-2", ""]);
        assert!(matches!(decode(&other, &c), Err(StoreError::InvalidCursor)));
        assert!(matches!(
            decode(&s, "not base64!"),
            Err(StoreError::InvalidCursor)
        ));
        assert!(matches!(
            decode(&s, &URL_SAFE_NO_PAD.encode(b"{\"x\":1}")),
            Err(StoreError::InvalidCursor)
        ));
        // Parts are separated: ("ab", "c") is not ("a", "bc").
        assert_ne!(scope(&["ab", "c"]), scope(&["a", "bc"]));
    }
}
