//! The circuit breaker of outbound calls (spec §6), with its state in the store so that
//! every worker sees the same circuit.
//!
//! Per key: after `circuit_failure_threshold` consecutive failures (network, timeout, 5xx,
//! 429: see [`counts_as_failure`]) the circuit opens for `circuit_timeout_ms`: calls fail
//! fast. Then it is half-open: exactly one trial call is let through, claimed with a
//! compare-and-set that sets `trial_until = now + circuit_reset_timeout_ms` (a trial whose
//! worker died frees the circuit for another trial then). The trial's success closes the
//! circuit; its failure opens it again for a full timeout.
//!
//! Every write is a compare-and-set on the state's version, retried a few times on conflict.
//! When the store cannot be read, calls go through (the breaker protects services; it must
//! not turn a store hiccup into an outage of every HTTP node).

use crate::config::EngineConfig;
use crate::model::{ErrorKind, Timestamp};
use crate::ports::{CircuitConfig, CircuitState, CircuitStore, Clock};
use std::sync::Arc;
use std::time::Duration;

/// How many times a compare-and-set is tried before giving up.
pub const CAS_ATTEMPTS: usize = 5;

/// The failures that count towards opening a circuit (not 4xx, not configuration errors).
pub fn counts_as_failure(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Network | ErrorKind::Timeout | ErrorKind::Http5xx | ErrorKind::Http429
    )
}

/// Leave to make one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// The circuit is closed.
    Closed,
    /// This call is the one half-open trial.
    Trial,
}

/// The circuit refuses calls until `until` (its open period or another worker's trial).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit {key:?} is open until {until}: failing fast")]
pub struct CircuitOpen {
    pub key: String,
    pub until: Timestamp,
}

/// The settings a circuit runs with: the defaults of §6 (`EngineConfig`) with the key's
/// overrides (`PUT /circuits/{key}`) laid over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    pub failure_threshold: u32,
    /// How long it stays open before a trial.
    pub timeout_ms: u64,
    /// How long a half-open trial holds the circuit (a trial whose worker died frees it then).
    pub reset_timeout_ms: u64,
}

impl CircuitSettings {
    pub fn of(defaults: &EngineConfig, overrides: &CircuitConfig) -> Self {
        Self {
            failure_threshold: overrides
                .failure_threshold
                .unwrap_or(defaults.circuit_failure_threshold)
                .max(1),
            timeout_ms: overrides.timeout_ms.unwrap_or(defaults.circuit_timeout_ms),
            reset_timeout_ms: overrides
                .reset_timeout_ms
                .unwrap_or(defaults.circuit_reset_timeout_ms),
        }
    }
    fn open_for(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    fn trial_for(&self) -> Duration {
        Duration::from_millis(self.reset_timeout_ms)
    }
}

/// What a circuit looks like from outside (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitPhase {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "halfOpen",
        }
    }

    /// The phase of `state` at `now`, and when the next trial may go (None when closed).
    pub fn of(
        state: &CircuitState,
        settings: &CircuitSettings,
        now: Timestamp,
    ) -> (Self, Option<Timestamp>) {
        let Some(opened_at) = state.opened_at else {
            return (Self::Closed, None);
        };
        let half_open_at = opened_at.plus(settings.open_for());
        if now < half_open_at {
            return (Self::Open, Some(half_open_at));
        }
        let next_trial = state
            .trial_until
            .filter(|t| now < *t)
            .unwrap_or(half_open_at);
        (Self::HalfOpen, Some(next_trial))
    }
}

#[derive(Clone)]
pub struct CircuitBreaker {
    store: Arc<dyn CircuitStore>,
    clock: Arc<dyn Clock>,
    defaults: EngineConfig,
}

impl CircuitBreaker {
    pub fn new(store: Arc<dyn CircuitStore>, clock: Arc<dyn Clock>, config: &EngineConfig) -> Self {
        Self {
            store,
            clock,
            defaults: config.clone(),
        }
    }

    fn settings(&self, state: &CircuitState) -> CircuitSettings {
        CircuitSettings::of(&self.defaults, &state.config)
    }

    /// Asks to make a call: `Ok` with the kind of permit, or `CircuitOpen`.
    pub async fn acquire(&self, org: &str, key: &str) -> Result<Permit, CircuitOpen> {
        let mut busy_until = self.clock.now();
        for _ in 0..CAS_ATTEMPTS {
            let state = match self.store.get_circuit(org, key).await {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(circuit = key, error = %e, "circuit state unreadable; letting the call through");
                    return Ok(Permit::Closed);
                }
            };
            let Some(state) = state else {
                return Ok(Permit::Closed);
            };
            let Some(opened_at) = state.opened_at else {
                return Ok(Permit::Closed);
            };
            let now = self.clock.now();
            let settings = self.settings(&state);
            let half_open_at = opened_at.plus(settings.open_for());
            if now < half_open_at {
                return Err(CircuitOpen {
                    key: key.to_string(),
                    until: half_open_at,
                });
            }
            if let Some(trial_until) = state.trial_until.filter(|t| now < *t) {
                return Err(CircuitOpen {
                    key: key.to_string(),
                    until: trial_until,
                });
            }
            let trial_until = now.plus(settings.trial_for());
            busy_until = trial_until;
            let claim = CircuitState {
                trial_until: Some(trial_until),
                version: state.version + 1,
                ..state
            };
            match self.store.put_circuit(org, key, &claim).await {
                Ok(true) => return Ok(Permit::Trial),
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(circuit = key, error = %e, "could not claim the half-open trial");
                    break;
                }
            }
        }
        // Others keep winning the claim: one of them is the trial.
        Err(CircuitOpen {
            key: key.to_string(),
            until: busy_until,
        })
    }

    /// Records how a permitted call went: `failed` when it failed in a way that counts
    /// ([`counts_as_failure`]); any other outcome shows the service answering.
    pub async fn record(&self, org: &str, key: &str, permit: Permit, failed: bool) {
        for _ in 0..CAS_ATTEMPTS {
            let current = match self.store.get_circuit(org, key).await {
                Ok(state) => state.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(circuit = key, error = %e, "circuit state unreadable; call result not recorded");
                    return;
                }
            };
            let now = self.clock.now();
            let threshold = self.settings(&current).failure_threshold;
            let config = current.config.clone();
            let mut next = match (failed, permit) {
                // The trial failed: open again for a full timeout.
                (true, Permit::Trial) => CircuitState {
                    consecutive_failures: current
                        .consecutive_failures
                        .saturating_add(1)
                        .max(threshold),
                    opened_at: Some(now),
                    trial_until: None,
                    version: 0,
                    config,
                },
                // Already open (others' failures): nothing to add.
                (true, Permit::Closed) if current.opened_at.is_some() => return,
                (true, Permit::Closed) => {
                    let failures = current.consecutive_failures.saturating_add(1);
                    CircuitState {
                        consecutive_failures: failures,
                        opened_at: (failures >= threshold).then_some(now),
                        trial_until: None,
                        version: 0,
                        config,
                    }
                }
                // A late success of a call let through before the circuit opened does not
                // close it: only the trial does.
                (false, Permit::Closed) if current.opened_at.is_some() => return,
                (false, _) => {
                    if current.consecutive_failures == 0
                        && current.opened_at.is_none()
                        && current.trial_until.is_none()
                    {
                        return;
                    }
                    CircuitState {
                        config,
                        ..CircuitState::default()
                    }
                }
            };
            next.version = current.version + 1;
            match self.store.put_circuit(org, key, &next).await {
                Ok(true) => return,
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(circuit = key, error = %e, "could not record the call result");
                    return;
                }
            }
        }
        tracing::warn!(
            circuit = key,
            "circuit state kept changing; call result not recorded"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{MemStore, start_time};
    use super::*;
    use crate::ports::ManualClock;
    use std::sync::atomic::Ordering;

    const ORG: &str = "org-1";
    const HOST: &str = "api.example.com";
    /// How the in-memory store names the circuit.
    const KEY: &str = "org-1/api.example.com";

    fn breaker() -> (CircuitBreaker, Arc<MemStore>, Arc<ManualClock>) {
        let store = Arc::new(MemStore::default());
        let clock = Arc::new(ManualClock::new(start_time()));
        let config = EngineConfig {
            circuit_failure_threshold: 3,
            circuit_timeout_ms: 60_000,
            circuit_reset_timeout_ms: 30_000,
            ..EngineConfig::default()
        };
        (
            CircuitBreaker::new(store.clone(), clock.clone(), &config),
            store,
            clock,
        )
    }

    async fn fail(b: &CircuitBreaker, times: usize) {
        for _ in 0..times {
            let permit = b.acquire(ORG, HOST).await.unwrap();
            b.record(ORG, HOST, permit, true).await;
        }
    }

    #[test]
    fn which_failures_count() {
        for k in [
            ErrorKind::Network,
            ErrorKind::Timeout,
            ErrorKind::Http5xx,
            ErrorKind::Http429,
        ] {
            assert!(counts_as_failure(k), "{k:?}");
        }
        for k in [
            ErrorKind::Http4xx,
            ErrorKind::Configuration,
            ErrorKind::CircuitOpen,
            ErrorKind::Expression,
            ErrorKind::OutputTooLarge,
            ErrorKind::FlowFail,
        ] {
            assert!(!counts_as_failure(k), "{k:?}");
        }
    }

    #[tokio::test]
    async fn opens_after_the_threshold_and_fails_fast() {
        let (b, store, clock) = breaker();
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Closed));
        fail(&b, 2).await;
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Closed));
        assert_eq!(store.circuit(KEY).unwrap().consecutive_failures, 2);
        fail(&b, 1).await;
        let state = store.circuit(KEY).unwrap();
        assert_eq!(state.opened_at, Some(start_time()));
        assert_eq!(state.version, 3);

        clock.advance(Duration::from_millis(59_999));
        let open = b.acquire(ORG, HOST).await.unwrap_err();
        assert_eq!(open.until, start_time().plus(Duration::from_secs(60)));
        assert_eq!(open.key, HOST);
        // Other keys are independent.
        assert_eq!(b.acquire(ORG, "other").await, Ok(Permit::Closed));
    }

    #[tokio::test]
    async fn a_success_resets_the_count() {
        let (b, store, _clock) = breaker();
        fail(&b, 2).await;
        let permit = b.acquire(ORG, HOST).await.unwrap();
        b.record(ORG, HOST, permit, false).await;
        assert_eq!(store.circuit(KEY).unwrap().consecutive_failures, 0);
        fail(&b, 2).await;
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Closed));
        // A success on a clean circuit writes nothing.
        let version = store.circuit(KEY).unwrap().version;
        b.record(ORG, "fresh", Permit::Closed, false).await;
        assert!(store.circuit("org-1/fresh").is_none());
        assert_eq!(store.circuit(KEY).unwrap().version, version);
    }

    #[tokio::test]
    async fn half_open_lets_exactly_one_trial_through_and_its_success_closes() {
        let (b, store, clock) = breaker();
        fail(&b, 3).await;
        clock.advance(Duration::from_secs(60));
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Trial));
        let second = b.acquire(ORG, HOST).await.unwrap_err();
        assert_eq!(second.until, clock.now().plus(Duration::from_secs(30)));
        assert!(b.acquire(ORG, HOST).await.is_err());

        b.record(ORG, HOST, Permit::Trial, false).await;
        let state = store.circuit(KEY).unwrap();
        assert_eq!(
            (
                state.consecutive_failures,
                state.opened_at,
                state.trial_until
            ),
            (0, None, None)
        );
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Closed));
    }

    #[tokio::test]
    async fn a_failed_trial_reopens_for_a_full_timeout() {
        let (b, store, clock) = breaker();
        fail(&b, 3).await;
        clock.advance(Duration::from_secs(61));
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Trial));
        clock.advance(Duration::from_secs(1));
        b.record(ORG, HOST, Permit::Trial, true).await;
        let reopened = clock.now();
        assert_eq!(store.circuit(KEY).unwrap().opened_at, Some(reopened));
        clock.advance(Duration::from_millis(59_000));
        assert!(b.acquire(ORG, HOST).await.is_err());
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Trial));
    }

    #[tokio::test]
    async fn a_lost_trial_frees_the_circuit_after_the_reset_timeout() {
        let (b, _store, clock) = breaker();
        fail(&b, 3).await;
        clock.advance(Duration::from_secs(60));
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Trial));
        // That worker died: no record. Another trial only once its time is up.
        clock.advance(Duration::from_millis(29_999));
        assert!(b.acquire(ORG, HOST).await.is_err());
        clock.advance(Duration::from_millis(1));
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Trial));
    }

    #[tokio::test]
    async fn late_results_of_ordinary_calls_leave_an_open_circuit_alone() {
        let (b, store, _clock) = breaker();
        let early = b.acquire(ORG, HOST).await.unwrap();
        fail(&b, 3).await;
        let before = store.circuit(KEY).unwrap();
        b.record(ORG, HOST, early, false).await;
        b.record(ORG, HOST, early, true).await;
        assert_eq!(store.circuit(KEY).unwrap(), before);
    }

    #[tokio::test]
    async fn compare_and_set_conflicts_are_retried() {
        let (b, store, clock) = breaker();
        store.inject_conflicts.store(2, Ordering::SeqCst);
        b.record(ORG, HOST, Permit::Closed, true).await;
        let state = store.circuit(KEY).unwrap();
        assert_eq!(state.consecutive_failures, 1);
        assert_eq!(state.version, 3, "two foreign writes, then ours");

        fail(&b, 2).await;
        clock.advance(Duration::from_secs(60));
        store.inject_conflicts.store(1, Ordering::SeqCst);
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Trial));

        // Conflicts on every attempt: the claim gives up and the call fails fast.
        clock.advance(Duration::from_secs(30));
        store
            .inject_conflicts
            .store(CAS_ATTEMPTS as u32, Ordering::SeqCst);
        assert!(b.acquire(ORG, HOST).await.is_err());
    }

    #[tokio::test]
    async fn an_unreadable_store_lets_calls_through() {
        let (b, store, _clock) = breaker();
        fail(&b, 3).await;
        store.fail_reads.store(true, Ordering::SeqCst);
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Closed));
        b.record(ORG, HOST, Permit::Closed, true).await; // logged, not recorded, no panic
    }

    #[tokio::test]
    async fn a_key_configured_overrides_the_defaults_and_keeps_them() {
        let (b, store, clock) = breaker();
        // failureThreshold 2, open for 5 s (defaults: 3 and 60 s).
        let configured = CircuitState {
            version: 1,
            config: CircuitConfig {
                failure_threshold: Some(2),
                timeout_ms: Some(5_000),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(store.put_circuit(ORG, HOST, &configured).await.unwrap());
        fail(&b, 2).await;
        let state = store.circuit(KEY).unwrap();
        assert_eq!(state.opened_at, Some(start_time()));
        assert_eq!(
            state.config, configured.config,
            "recording keeps the configuration"
        );
        let settings = CircuitSettings::of(&b.defaults, &state.config);
        assert_eq!(
            (
                settings.failure_threshold,
                settings.timeout_ms,
                settings.reset_timeout_ms
            ),
            (2, 5_000, 30_000)
        );
        assert_eq!(
            CircuitPhase::of(&state, &settings, clock.now()),
            (
                CircuitPhase::Open,
                Some(start_time().plus(Duration::from_secs(5)))
            )
        );
        clock.advance(Duration::from_secs(5));
        assert_eq!(
            CircuitPhase::of(&state, &settings, clock.now()).0,
            CircuitPhase::HalfOpen
        );
        assert_eq!(b.acquire(ORG, HOST).await, Ok(Permit::Trial));
        b.record(ORG, HOST, Permit::Trial, false).await;
        let closed = store.circuit(KEY).unwrap();
        assert_eq!(
            CircuitPhase::of(&closed, &settings, clock.now()),
            (CircuitPhase::Closed, None)
        );
        assert_eq!(closed.config, configured.config);
    }
}
