//! Retry backoff (spec §2, "Retry policy").

use crate::config::EngineConfig;
use crate::model::{Backoff, Jitter, RetryPolicy};
use std::time::Duration;

/// Delay before retry `n` (1-based): `min(maxDelay, base · 2^(n-1))` (exponential) or `base`
/// (fixed), then with full jitter a uniform pick in `[0, delay]`.
pub fn retry_delay(policy: &RetryPolicy, config: &EngineConfig, n: u32) -> Duration {
    let base = policy.base_delay_ms.unwrap_or(config.retry_delay_ms);
    let max = policy
        .max_delay_ms
        .unwrap_or(config.retry_max_delay_ms.max(base));
    let raw = match policy.backoff {
        Backoff::Fixed => base,
        Backoff::Exponential => base.saturating_mul(1u64 << n.saturating_sub(1).min(32)),
    };
    let delay = raw.min(max);
    let delay = match policy.jitter {
        Jitter::None => delay,
        Jitter::Full => rand::random_range(0..=delay),
    };
    Duration::from_millis(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, base: u64, max: Option<u64>, jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            backoff,
            base_delay_ms: Some(base),
            max_delay_ms: max,
            jitter,
            ..Default::default()
        }
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let c = EngineConfig::default();
        let p = policy(Backoff::Exponential, 1000, Some(5000), Jitter::None);
        let ms: Vec<u128> = (1..=5)
            .map(|n| retry_delay(&p, &c, n).as_millis())
            .collect();
        assert_eq!(ms, [1000, 2000, 4000, 5000, 5000]);
    }

    #[test]
    fn fixed_stays_at_base() {
        let c = EngineConfig::default();
        let p = policy(Backoff::Fixed, 300, None, Jitter::None);
        assert_eq!(retry_delay(&p, &c, 1), Duration::from_millis(300));
        assert_eq!(retry_delay(&p, &c, 4), Duration::from_millis(300));
    }

    #[test]
    fn defaults_come_from_the_config() {
        let c = EngineConfig {
            retry_delay_ms: 2000,
            ..EngineConfig::default()
        };
        assert_eq!(
            retry_delay(&RetryPolicy::default(), &c, 2),
            Duration::from_millis(4000)
        );
    }

    #[test]
    fn full_jitter_stays_within_the_delay() {
        let c = EngineConfig::default();
        let p = policy(Backoff::Exponential, 1000, None, Jitter::Full);
        for _ in 0..200 {
            assert!(retry_delay(&p, &c, 3) <= Duration::from_millis(4000));
        }
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let c = EngineConfig::default();
        let p = policy(Backoff::Exponential, u64::MAX / 2, Some(10), Jitter::None);
        assert_eq!(retry_delay(&p, &c, 64), Duration::from_millis(10));
    }
}
