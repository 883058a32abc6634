//! What the API shows of the engine's own state (SPEC §10): an organization's circuits (read,
//! listed, reset, configured per key) and a workflow's trends from its counters.

use super::{Engine, Principal};
use crate::model::{Timestamp, TrendInterval, TrendPoint, trend_points};
use crate::nodes::circuit::{CAS_ATTEMPTS, CircuitPhase, CircuitSettings};
use crate::ports::{CircuitConfig, CircuitRecord, CircuitState, Page};
use crate::{EngineError, EngineResult};
use serde::Serialize;
use std::time::Duration;

/// Longest circuit key (a host name is at most 253 characters).
pub const MAX_CIRCUIT_KEY_CHARS: usize = 256;
/// Bounds of the per-key overrides.
pub const FAILURE_THRESHOLD_RANGE: (u32, u32) = (1, 1_000);
pub const CIRCUIT_MS_RANGE: (u64, u64) = (1_000, 86_400_000);
/// The longest trend one call reads: 31 days by hour, 366 days by day.
pub const MAX_TREND_HOURS: i64 = 31 * 24;
pub const MAX_TREND_DAYS: i64 = 366;
/// The default trend range: the last 7 days.
pub const DEFAULT_TREND_DAYS: u64 = 7;

/// One circuit as `GET /circuits` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitView {
    pub key: String,
    pub state: &'static str,
    pub failures: u32,
    pub opened_at: Option<Timestamp>,
    pub next_trial_at: Option<Timestamp>,
    pub config: CircuitConfigView,
}

/// The settings a circuit runs with (the defaults with the key's overrides).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitConfigView {
    pub failure_threshold: u32,
    pub timeout_ms: u64,
    pub reset_timeout_ms: u64,
}

/// `GET /workflows/{id}/trends`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTrends {
    pub workflow_id: String,
    pub interval: TrendInterval,
    pub items: Vec<TrendPoint>,
}

fn bad(message: String) -> EngineError {
    EngineError::BadRequest(message)
}

fn circuit_not_found() -> EngineError {
    EngineError::NotFound("Circuit not found".into())
}

fn check_key(key: &str) -> EngineResult<()> {
    if key.is_empty() || key.chars().count() > MAX_CIRCUIT_KEY_CHARS {
        return Err(bad(format!(
            "circuit key must be 1 to {MAX_CIRCUIT_KEY_CHARS} characters"
        )));
    }
    Ok(())
}

/// Checks the overrides of `PUT /circuits/{key}`: at least one, each in its range.
pub fn check_circuit_config(config: &CircuitConfig) -> EngineResult<()> {
    if config.failure_threshold.is_none()
        && config.timeout_ms.is_none()
        && config.reset_timeout_ms.is_none()
    {
        return Err(bad(
            "give at least one of failureThreshold, timeoutMs, resetTimeoutMs".into(),
        ));
    }
    let (lo, hi) = FAILURE_THRESHOLD_RANGE;
    if let Some(n) = config.failure_threshold
        && !(lo..=hi).contains(&n)
    {
        return Err(bad(format!(
            "failureThreshold must be between {lo} and {hi} (got {n})"
        )));
    }
    let (lo, hi) = CIRCUIT_MS_RANGE;
    for (name, value) in [
        ("timeoutMs", config.timeout_ms),
        ("resetTimeoutMs", config.reset_timeout_ms),
    ] {
        if let Some(ms) = value
            && !(lo..=hi).contains(&ms)
        {
            return Err(bad(format!(
                "{name} must be between {lo} and {hi} (got {ms})"
            )));
        }
    }
    Ok(())
}

impl Engine {
    fn circuit_view(&self, key: String, state: &CircuitState) -> CircuitView {
        let settings = CircuitSettings::of(self.config(), &state.config);
        let (phase, next_trial_at) = CircuitPhase::of(state, &settings, self.clock().now());
        CircuitView {
            key,
            state: phase.as_str(),
            failures: state.consecutive_failures,
            opened_at: state.opened_at,
            next_trial_at,
            config: CircuitConfigView {
                failure_threshold: settings.failure_threshold,
                timeout_ms: settings.timeout_ms,
                reset_timeout_ms: settings.reset_timeout_ms,
            },
        }
    }

    /// `GET /circuits`: the organization's circuits, by key.
    pub async fn list_circuits(
        &self,
        who: &Principal,
        limit: usize,
        cursor: Option<&str>,
    ) -> EngineResult<Page<CircuitView>> {
        let page = self
            .store()
            .list_circuits(&who.organization_id, limit, cursor)
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|CircuitRecord { key, state }| self.circuit_view(key, &state))
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// `GET /circuits/{key}`: 404 when never used and not configured.
    pub async fn get_circuit(&self, who: &Principal, key: &str) -> EngineResult<CircuitView> {
        check_key(key)?;
        let state = self
            .store()
            .get_circuit(&who.organization_id, key)
            .await?
            .ok_or_else(circuit_not_found)?;
        Ok(self.circuit_view(key.to_string(), &state))
    }

    /// Writes `change(stored)` with a compare-and-set, retried on conflict. `create`: a
    /// circuit never stored starts from the default state (else 404).
    async fn change_circuit(
        &self,
        who: &Principal,
        key: &str,
        create: bool,
        change: impl Fn(CircuitState) -> CircuitState,
    ) -> EngineResult<CircuitView> {
        check_key(key)?;
        let org = &who.organization_id;
        for _ in 0..CAS_ATTEMPTS {
            let stored = match self.store().get_circuit(org, key).await? {
                Some(state) => state,
                None if create => CircuitState::default(),
                None => return Err(circuit_not_found()),
            };
            let version = stored.version + 1;
            let next = CircuitState {
                version,
                ..change(stored)
            };
            if self.store().put_circuit(org, key, &next).await? {
                return Ok(self.circuit_view(key.to_string(), &next));
            }
        }
        Err(EngineError::Conflict(
            "the circuit kept changing; try again".into(),
        ))
    }

    /// `POST /circuits/{key}/reset`: closed, failures cleared; its configuration stays.
    pub async fn reset_circuit(&self, who: &Principal, key: &str) -> EngineResult<CircuitView> {
        self.change_circuit(who, key, false, |stored| CircuitState {
            config: stored.config,
            ..CircuitState::default()
        })
        .await
    }

    /// `PUT /circuits/{key}`: the given settings override the defaults for this key.
    pub async fn configure_circuit(
        &self,
        who: &Principal,
        key: &str,
        config: CircuitConfig,
    ) -> EngineResult<CircuitView> {
        check_circuit_config(&config)?;
        self.change_circuit(who, key, true, |stored| {
            let mut next = stored;
            next.config = CircuitConfig {
                failure_threshold: config.failure_threshold.or(next.config.failure_threshold),
                timeout_ms: config.timeout_ms.or(next.config.timeout_ms),
                reset_timeout_ms: config.reset_timeout_ms.or(next.config.reset_timeout_ms),
            };
            next
        })
        .await
    }

    /// `GET /workflows/{id}/trends`: one point per interval that had executions (by
    /// `createdAt`), oldest first, for `[start, end]` (default: the last 7 days).
    pub async fn workflow_trends(
        &self,
        who: &Principal,
        workflow_id: &str,
        interval: TrendInterval,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> EngineResult<WorkflowTrends> {
        let end = end.unwrap_or_else(|| self.clock().now());
        let start =
            start.unwrap_or_else(|| end.minus(Duration::from_secs(DEFAULT_TREND_DAYS * 86_400)));
        if start > end {
            return Err(bad("startDate must not be after endDate".into()));
        }
        let intervals = (end.millis() - interval.start_of(start).millis()) / interval.millis() + 1;
        let max = match interval {
            TrendInterval::Hour => MAX_TREND_HOURS,
            TrendInterval::Day => MAX_TREND_DAYS,
        };
        if intervals > max {
            return Err(bad(format!(
                "a trend covers at most {max} intervals of one {} (asked: {intervals})",
                interval.as_str()
            )));
        }
        // 404 for another organization's or an unknown workflow.
        self.get_workflow(who, workflow_id).await?;
        let counters = self
            .store()
            .workflow_trends(
                &who.organization_id,
                workflow_id,
                interval,
                start,
                end.plus(Duration::from_millis(1)),
            )
            .await?;
        Ok(WorkflowTrends {
            workflow_id: workflow_id.to_string(),
            interval,
            items: trend_points(interval, counters),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_overrides_are_checked() {
        assert!(check_circuit_config(&CircuitConfig::default()).is_err());
        let ok = CircuitConfig {
            failure_threshold: Some(3),
            ..Default::default()
        };
        assert!(check_circuit_config(&ok).is_ok());
        for bad in [
            CircuitConfig {
                failure_threshold: Some(0),
                ..Default::default()
            },
            CircuitConfig {
                timeout_ms: Some(999),
                ..Default::default()
            },
            CircuitConfig {
                reset_timeout_ms: Some(86_400_001),
                ..Default::default()
            },
        ] {
            let message = check_circuit_config(&bad).unwrap_err().to_string();
            assert!(message.contains("must be between"), "{message}");
        }
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(257)).is_err());
        assert!(check_key("api.example.com").is_ok());
    }
}
