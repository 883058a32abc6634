//! The product's data, with the exact JSON names and enum strings of the spec.

mod composition;
mod credential;
mod execution;
mod lifecycle;
mod time;
pub mod trends;
mod workflow;

pub use composition::*;
pub use credential::*;
pub use execution::*;
pub use lifecycle::*;
pub use time::Timestamp;
pub use trends::{TrendCounters, TrendInterval, TrendPoint, trend_points};
pub use workflow::*;

/// A new time-ordered id (UUIDv7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The id of a log written at `at` right after the log `prev` of the same batch: a UUIDv7 of
/// `at` (or of `prev`'s millisecond, if later) whose random part is `prev`'s plus one (RFC
/// 9562's monotonic counter). Deterministic, so a store can keep such an id as "the next one"
/// and compute it back from the previous id and the timestamp. None when `prev` is not a
/// UUIDv7 or its counter is exhausted.
pub fn next_log_id(prev: &str, at: Timestamp) -> Option<String> {
    const COUNTER_B: u128 = (1 << 62) - 1;
    let prev = uuid::Uuid::parse_str(prev).ok()?.as_u128();
    if (prev >> 76) & 0xf != 7 || (prev >> 62) & 0b11 != 0b10 {
        return None;
    }
    // rand_a (12 bits) and rand_b (62 bits) as one 74-bit counter.
    let counter = (((prev >> 64) & 0xfff) << 62) | (prev & COUNTER_B);
    let next = counter + 1;
    if next >> 74 != 0 {
        return None;
    }
    let ms = u128::from(at.millis().max(0) as u64).max(prev >> 80) & ((1 << 48) - 1);
    let id = (ms << 80) | (7 << 76) | ((next >> 62) << 64) | (0b10 << 62) | (next & COUNTER_B);
    Some(uuid::Uuid::from_u128(id).to_string())
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn next_log_ids_are_later_uuidv7s_and_deterministic() {
        let first = new_id();
        let at = Timestamp::from(chrono::Utc::now());
        let second = next_log_id(&first, at).unwrap();
        assert!(second > first);
        let parsed = uuid::Uuid::parse_str(&second).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(next_log_id(&first, at), Some(second.clone()));
        // An earlier timestamp never makes an earlier id.
        assert!(next_log_id(&second, Timestamp::from_millis(0)).unwrap() > second);
        assert_eq!(next_log_id("not-a-uuid", at), None);
        assert_eq!(
            next_log_id("01a236b4-dec0-7fff-bfff-ffffffffffff", at),
            None,
            "an exhausted counter"
        );
    }
}
