//! Settings from the environment, with the seeds' names and defaults (spec §7).

use std::time::Duration;

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// EXECUTION_DEFAULT_TIMEOUT (ms)
    pub default_timeout_ms: u64,
    /// EXECUTION_MAX_TIMEOUT (ms)
    pub max_timeout_ms: u64,
    /// EXECUTION_RETRY_ATTEMPTS
    pub retry_attempts: u32,
    /// EXECUTION_RETRY_DELAY (ms)
    pub retry_delay_ms: u64,
    /// Cap on one retry delay when a policy sets none (ms).
    pub retry_max_delay_ms: u64,
    /// CIRCUIT_BREAKER_FAILURE_THRESHOLD
    pub circuit_failure_threshold: u32,
    /// CIRCUIT_BREAKER_TIMEOUT (ms): how long an opened circuit fails fast.
    pub circuit_timeout_ms: u64,
    /// CIRCUIT_BREAKER_RESET_TIMEOUT (ms): how long a half-open trial may take.
    pub circuit_reset_timeout_ms: u64,
    /// STALE_EXECUTION_THRESHOLD (ms)
    pub stale_execution_threshold_ms: u64,
    /// A `pending` execution older than this is stranded: re-dispatched by the sweep (ms).
    pub stranded_pending_after_ms: u64,
    /// Default node timeout (ms) when a node sets none.
    pub node_timeout_ms: u64,
    /// NODE_MAX_TIMEOUT (ms; unset or 0: none): the longest node timeout this installation
    /// runs. On Lambda the worker function's timeout less a margin (template.yaml), so a node
    /// always ends, or its lease expires, before the function is killed. A workflow asking
    /// for more is refused naming the node; a stored one is run with the cap.
    pub max_node_timeout_ms: Option<u64>,
    /// A node's lease lasts its timeout plus this margin (ms).
    pub lease_margin_ms: u64,
    /// Node output limit (bytes).
    pub max_output_bytes: usize,
    /// WECONNECT_HTTP_ALLOW_PRIVATE
    pub http_allow_private: bool,
    /// How long the idempotency keys of executions hold (ms).
    pub idempotency_window_ms: u64,
    /// WECONNECT_JOBS_PER_WORKER: jobs one worker of a pool runs at once.
    pub jobs_per_worker: usize,
    /// RETENTION_DAYS (in ms here): finished executions, their logs and dead-lettered jobs
    /// are deleted this long after they were created (DynamoDB: by TTL).
    pub retention_ms: u64,
    /// WECONNECT_PUBLIC_URL: the base of callback URLs (locally `http://127.0.0.1:{port}`).
    pub public_url: String,
    /// How long a job received by a worker pool stays invisible to others (ms); the pool
    /// extends it while the job runs, so a killed worker's job comes back this soon.
    pub job_visibility_ms: u64,
    /// EXECUTIONS_DATA_SAVE_ON_SUCCESS (`all` | `none`): what a successful execution keeps
    /// when its workflow's `settings.saveDataOnSuccess` says nothing (SPEC §14).
    pub save_data_on_success: crate::model::SaveData,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_timeout_ms: 300_000,
            max_timeout_ms: 3_600_000,
            retry_attempts: 3,
            retry_delay_ms: 2_000,
            retry_max_delay_ms: 60_000,
            circuit_failure_threshold: 5,
            circuit_timeout_ms: 60_000,
            circuit_reset_timeout_ms: 30_000,
            stale_execution_threshold_ms: 24 * 3_600_000,
            stranded_pending_after_ms: 60_000,
            node_timeout_ms: 30_000,
            max_node_timeout_ms: None,
            lease_margin_ms: 15_000,
            max_output_bytes: 256 * 1024,
            http_allow_private: false,
            idempotency_window_ms: 24 * 3_600_000,
            jobs_per_worker: 32,
            retention_ms: 30 * DAY_MS,
            public_url: "http://127.0.0.1:3000".into(),
            job_visibility_ms: 30_000,
            save_data_on_success: crate::model::SaveData::All,
        }
    }
}

impl EngineConfig {
    /// Defaults overridden by the environment. A variable that does not parse is an error
    /// naming it, never a silent default.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            default_timeout_ms: env_or("EXECUTION_DEFAULT_TIMEOUT", d.default_timeout_ms)?,
            max_timeout_ms: env_or("EXECUTION_MAX_TIMEOUT", d.max_timeout_ms)?,
            retry_attempts: env_or("EXECUTION_RETRY_ATTEMPTS", d.retry_attempts)?,
            retry_delay_ms: env_or("EXECUTION_RETRY_DELAY", d.retry_delay_ms)?,
            retry_max_delay_ms: env_or("EXECUTION_RETRY_MAX_DELAY", d.retry_max_delay_ms)?,
            circuit_failure_threshold: env_or(
                "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
                d.circuit_failure_threshold,
            )?,
            circuit_timeout_ms: env_or("CIRCUIT_BREAKER_TIMEOUT", d.circuit_timeout_ms)?,
            circuit_reset_timeout_ms: env_or(
                "CIRCUIT_BREAKER_RESET_TIMEOUT",
                d.circuit_reset_timeout_ms,
            )?,
            stale_execution_threshold_ms: env_or(
                "STALE_EXECUTION_THRESHOLD",
                d.stale_execution_threshold_ms,
            )?,
            stranded_pending_after_ms: d.stranded_pending_after_ms,
            node_timeout_ms: env_or("NODE_DEFAULT_TIMEOUT", d.node_timeout_ms)?,
            max_node_timeout_ms: Some(env_or("NODE_MAX_TIMEOUT", 0u64)?).filter(|&ms| ms > 0),
            lease_margin_ms: d.lease_margin_ms,
            max_output_bytes: d.max_output_bytes,
            http_allow_private: env_or("WECONNECT_HTTP_ALLOW_PRIVATE", d.http_allow_private)?,
            idempotency_window_ms: d.idempotency_window_ms,
            jobs_per_worker: env_or("WECONNECT_JOBS_PER_WORKER", d.jobs_per_worker)?.max(1),
            retention_ms: env_or("RETENTION_DAYS", d.retention_ms / DAY_MS)?
                .max(1)
                .saturating_mul(DAY_MS),
            public_url: env_or("WECONNECT_PUBLIC_URL", d.public_url)?
                .trim_end_matches('/')
                .to_string(),
            job_visibility_ms: d.job_visibility_ms,
            save_data_on_success: env_or(
                "EXECUTIONS_DATA_SAVE_ON_SUCCESS",
                d.save_data_on_success,
            )?,
        })
    }

    /// The timeout a node runs with (ms): its own or the default, at most
    /// [`Self::max_node_timeout_ms`].
    pub fn node_timeout(&self, own: Option<u64>) -> u64 {
        let timeout = own.unwrap_or(self.node_timeout_ms);
        self.max_node_timeout_ms
            .map_or(timeout, |max| timeout.min(max))
    }

    pub fn stale_threshold(&self) -> Duration {
        Duration::from_millis(self.stale_execution_threshold_ms)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("environment variable {name} has an invalid value {value:?}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
}

/// Reads `name`, parsed; `default` when unset or empty.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| ConfigError {
            name: name.to_string(),
            value: v,
        }),
        _ => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_runs_with_its_timeout_or_the_default_at_most_the_cap() {
        let mut c = EngineConfig::default();
        assert_eq!(c.node_timeout(None), 30_000);
        assert_eq!(c.node_timeout(Some(90_000)), 90_000);
        c.max_node_timeout_ms = Some(60_000);
        assert_eq!(c.node_timeout(Some(90_000)), 60_000);
        assert_eq!(c.node_timeout(Some(1_000)), 1_000);
        assert_eq!(c.node_timeout(None), 30_000);
    }
}
