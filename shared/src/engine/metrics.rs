//! In-process counters and timings for `/monitoring/metrics`, and the installation's metric
//! series (`GET /metrics`, EMF on Lambda: [`Series`]).

pub use super::series::{QueueGauges, Series};

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct EngineMetrics {
    started: AtomicU64,
    nodes_run: AtomicU64,
    finished: Mutex<BTreeMap<String, u64>>,
    /// The most recent node durations (ms), a bounded window for percentiles.
    node_durations: Mutex<VecDeque<u64>>,
    series: Series,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSnapshot {
    pub executions_started: u64,
    pub executions_finished: BTreeMap<String, u64>,
    pub nodes_run: u64,
    pub node_duration_ms: Percentiles,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub samples: u64,
}

const WINDOW: usize = 10_000;

impl EngineMetrics {
    pub fn execution_started(&self, mode: &str) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.series.execution_started(mode);
    }
    pub fn execution_finished(&self, status: &str, mode: &str) {
        if let Ok(mut m) = self.finished.lock() {
            *m.entry(status.to_string()).or_default() += 1;
        }
        self.series.execution_finished(status, mode);
    }
    /// A node run ended (`status`: success or failed, its last attempt took `duration_ms`).
    pub fn node_ran(&self, node_type: &str, status: &str, duration_ms: u64) {
        self.series.node_ran(node_type, status, duration_ms);
        self.nodes_run.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut d) = self.node_durations.lock() {
            if d.len() >= WINDOW {
                d.pop_front();
            }
            d.push_back(duration_ms);
        }
    }
    pub fn series(&self) -> &Series {
        &self.series
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut durations: Vec<u64> = self
            .node_durations
            .lock()
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default();
        durations.sort_unstable();
        let pick = |q: f64| -> u64 {
            if durations.is_empty() {
                return 0;
            }
            let i = ((durations.len() as f64 - 1.0) * q).round() as usize;
            durations[i.min(durations.len() - 1)]
        };
        MetricsSnapshot {
            executions_started: self.started.load(Ordering::Relaxed),
            executions_finished: self.finished.lock().map(|m| m.clone()).unwrap_or_default(),
            nodes_run: self.nodes_run.load(Ordering::Relaxed),
            node_duration_ms: Percentiles {
                p50: pick(0.5),
                p90: pick(0.9),
                p99: pick(0.99),
                max: durations.last().copied().unwrap_or(0),
                samples: durations.len() as u64,
            },
        }
    }
}

/// Resource use of this process (Linux `/proc`; zeros elsewhere).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessUsage {
    /// Peak resident set size (VmHWM).
    pub peak_rss_bytes: u64,
    /// User + system CPU time.
    pub cpu_time_ms: f64,
}

/// How long a reading of [`process_usage`] is reused: every finished execution records it,
/// and reading `/proc` thousands of times a second would cost more than the execution.
const USAGE_REFRESH: Duration = Duration::from_millis(100);

static LAST_USAGE: Mutex<Option<(Instant, ProcessUsage)>> = Mutex::new(None);

/// This process's resource use, read at most every [`USAGE_REFRESH`].
pub fn process_usage() -> ProcessUsage {
    let mut last = LAST_USAGE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match *last {
        Some((at, usage)) if at.elapsed() < USAGE_REFRESH => usage,
        _ => {
            let usage = read_process_usage();
            *last = Some((Instant::now(), usage));
            usage
        }
    }
}

fn read_process_usage() -> ProcessUsage {
    let peak_rss_bytes = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    // Fields 14 and 15 of /proc/self/stat (after the parenthesised name) are utime and
    // stime in clock ticks; Linux reports them at 100 ticks per second (USER_HZ).
    let cpu_time_ms = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) * 10.0)
        })
        .unwrap_or(0.0);
    ProcessUsage {
        peak_rss_bytes,
        cpu_time_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_recorded_durations() {
        let m = EngineMetrics::default();
        for d in 1..=100 {
            m.node_ran("flow.noop", "success", d);
        }
        m.execution_started("manual");
        m.execution_finished("success", "manual");
        let s = m.snapshot();
        assert_eq!(s.nodes_run, 100);
        assert_eq!(s.node_duration_ms.p50, 51);
        assert_eq!(s.node_duration_ms.p99, 99);
        assert_eq!(s.node_duration_ms.max, 100);
        assert_eq!(s.executions_finished.get("success"), Some(&1));
    }

    #[test]
    fn the_duration_window_keeps_the_most_recent() {
        let m = EngineMetrics::default();
        for d in 0..(WINDOW as u64 + 500) {
            m.node_ran("flow.noop", "success", d);
        }
        let s = m.snapshot();
        assert_eq!(s.node_duration_ms.samples, WINDOW as u64);
        assert_eq!(s.node_duration_ms.max, WINDOW as u64 + 499);
        assert_eq!(s.nodes_run, WINDOW as u64 + 500);
    }

    #[test]
    fn process_usage_reads_proc_on_linux() {
        let u = process_usage();
        if cfg!(target_os = "linux") {
            assert!(u.peak_rss_bytes > 0);
        }
    }
}
