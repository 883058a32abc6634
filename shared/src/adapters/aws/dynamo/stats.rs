//! Statistics counters: per organization and day of `createdAt`, sharded (see `keys::stats_sk`).

use super::expr::Expr;
use super::items::Item;
use crate::model::{Execution, ExecutionMode, ExecutionStatus, Timestamp};
use crate::ports::ExecutionStatistics;
use aws_sdk_dynamodb::types::AttributeValue;

/// Upper bounds (ms, inclusive) of the duration histogram's buckets; a last bucket holds the
/// rest. Steps of 1.5–2×.
pub const BUCKET_BOUNDS_MS: [u64; 36] = [
    5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500,
    10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000, 300_000, 450_000,
    600_000, 900_000, 1_200_000, 1_800_000, 2_700_000, 3_600_000, 7_200_000,
];
const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;

pub const TOTAL: &str = "total";
pub const DURATION_SUM: &str = "dsum";
pub const DURATION_COUNT: &str = "dcnt";

pub fn status_counter(s: ExecutionStatus) -> String {
    format!("s_{}", s.as_str())
}
pub fn mode_counter(m: ExecutionMode) -> String {
    format!("m_{}", m.as_str())
}
pub fn bucket_counter(i: usize) -> String {
    format!("h{i:02}")
}

pub fn bucket_of(duration_ms: u64) -> usize {
    BUCKET_BOUNDS_MS
        .iter()
        .position(|b| duration_ms <= *b)
        .unwrap_or(BUCKET_BOUNDS_MS.len())
}

/// `YYYY-MM-DD` (UTC).
pub fn day(at: Timestamp) -> String {
    at.to_string().chars().take(10).collect()
}

fn n(x: i64) -> AttributeValue {
    AttributeValue::N(x.to_string())
}

/// The `ADD` clauses for a change of one execution's counted state. `old`: the status it
/// had (None: it is new). Returns None when nothing changes.
pub fn delta(expr: &mut Expr, exec: &Execution, old: Option<ExecutionStatus>) -> Option<String> {
    let mut adds: Vec<(String, i64)> = Vec::new();
    match old {
        None => {
            adds.push((TOTAL.into(), 1));
            adds.push((mode_counter(exec.mode), 1));
            adds.push((status_counter(exec.status), 1));
        }
        Some(old) if old != exec.status => {
            adds.push((status_counter(old), -1));
            adds.push((status_counter(exec.status), 1));
        }
        Some(_) => {}
    }
    let becomes_terminal = exec.status.is_terminal() && !old.is_some_and(|o| o.is_terminal());
    if becomes_terminal {
        adds.push((
            DURATION_SUM.into(),
            exec.duration.min(i64::MAX as u64) as i64,
        ));
        adds.push((DURATION_COUNT.into(), 1));
        adds.push((bucket_counter(bucket_of(exec.duration)), 1));
    }
    if adds.is_empty() {
        return None;
    }
    let clauses: Vec<String> = adds
        .into_iter()
        .map(|(name, by)| format!("{} {}", expr.n(&name), expr.v(n(by))))
        .collect();
    Some(format!("ADD {}", clauses.join(", ")))
}

/// Sums day items into the statistics.
pub fn summarize(days: &[Item]) -> ExecutionStatistics {
    let get = |item: &Item, name: &str| -> f64 {
        match item.get(name) {
            Some(AttributeValue::N(x)) => x.parse::<f64>().unwrap_or(0.0),
            _ => 0.0,
        }
    };
    let sum = |name: &str| days.iter().map(|d| get(d, name)).sum::<f64>().max(0.0);
    let mut stats = ExecutionStatistics {
        total: sum(TOTAL) as u64,
        ..Default::default()
    };
    let mut finished = 0u64;
    for s in ExecutionStatus::ALL {
        let count = sum(&status_counter(s)) as u64;
        if count > 0 {
            stats.by_status.insert(s.as_str().to_string(), count);
        }
        if s.is_terminal() {
            finished += count;
        }
    }
    for m in ExecutionMode::ALL {
        let count = sum(&mode_counter(m)) as u64;
        if count > 0 {
            stats.by_mode.insert(m.as_str().to_string(), count);
        }
    }
    let success = stats.by_status.get("success").copied().unwrap_or(0);
    stats.success_rate = if finished > 0 {
        success as f64 / finished as f64
    } else {
        0.0
    };
    let dcnt = sum(DURATION_COUNT);
    stats.average_duration = if dcnt > 0.0 {
        sum(DURATION_SUM) / dcnt
    } else {
        0.0
    };
    let histogram: Vec<u64> = (0..BUCKETS)
        .map(|i| sum(&bucket_counter(i)) as u64)
        .collect();
    stats.p95_duration = percentile(&histogram, 0.95);
    stats
}

/// The `q` quantile of a histogram over [`BUCKET_BOUNDS_MS`], interpolated inside its bucket.
pub fn percentile(histogram: &[u64], q: f64) -> f64 {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = (q * total as f64).ceil().max(1.0);
    let mut seen = 0u64;
    for (i, count) in histogram.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        if (seen + count) as f64 >= rank {
            let lower = if i == 0 { 0 } else { BUCKET_BOUNDS_MS[i - 1] } as f64;
            let upper = BUCKET_BOUNDS_MS
                .get(i)
                .copied()
                .map(|u| u as f64)
                .unwrap_or(lower);
            let within = (rank - seen as f64) / *count as f64;
            return lower + (upper - lower) * within;
        }
        seen += count;
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_percentiles() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(5), 0);
        assert_eq!(bucket_of(6), 1);
        assert_eq!(bucket_of(u64::MAX), BUCKET_BOUNDS_MS.len());
        let mut h = vec![0u64; BUCKETS];
        // 100 durations of 100 ms: p95 lies in (75, 100].
        h[bucket_of(100)] = 100;
        let p = percentile(&h, 0.95);
        assert!(p > 75.0 && p <= 100.0, "{p}");
        // 95 fast ones and 5 slow ones: p95 is still among the fast.
        h = vec![0u64; BUCKETS];
        h[bucket_of(10)] = 95;
        h[bucket_of(60_000)] = 5;
        assert!(percentile(&h, 0.95) <= 10.0);
        h[bucket_of(60_000)] = 6;
        assert!(percentile(&h, 0.95) > 45_000.0);
        assert_eq!(percentile(&[0; BUCKETS], 0.95), 0.0);
    }

    #[test]
    fn day_is_the_utc_date() {
        assert_eq!(day(Timestamp::from_millis(1_700_000_000_000)), "2023-11-14");
    }
}
