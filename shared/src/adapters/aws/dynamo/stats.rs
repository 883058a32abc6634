//! Statistics counters: per organization and day of `createdAt`, sharded (see `keys::stats_item`).

use super::expr::Expr;
use super::items::Item;
use crate::model::trends::{BUCKETS, bucket_of, percentile};
use crate::model::{Execution, ExecutionMode, ExecutionStatus, Timestamp, TrendCounters};
use crate::ports::ExecutionStatistics;
use aws_sdk_dynamodb::types::AttributeValue;

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

/// The `ADD` of one execution's trend counters.
pub fn trend_add(expr: &mut Expr, c: &TrendCounters) -> String {
    let mut adds: Vec<(String, u64)> = vec![
        ("total".into(), c.total),
        ("success".into(), c.success),
        ("failed".into(), c.failed),
        ("cancelled".into(), c.cancelled),
        ("timeout".into(), c.timeout),
        (DURATION_SUM.into(), c.duration_sum),
    ];
    adds.retain(|(_, by)| *by > 0);
    for (i, count) in c.histogram.iter().enumerate() {
        if *count > 0 {
            adds.push((bucket_counter(i), *count));
        }
    }
    if adds.is_empty() {
        adds.push(("total".into(), 0));
    }
    let clauses: Vec<String> = adds
        .into_iter()
        .map(|(name, by)| {
            format!(
                "{} {}",
                expr.n(&name),
                expr.v(n(by.min(i64::MAX as u64) as i64))
            )
        })
        .collect();
    format!("ADD {}", clauses.join(", "))
}

/// The trend counters of a stored item.
pub fn trend_of(item: &Item) -> TrendCounters {
    let get = |name: &str| -> u64 {
        match item.get(name) {
            Some(AttributeValue::N(x)) => x.parse::<u64>().unwrap_or(0),
            _ => 0,
        }
    };
    TrendCounters {
        total: get("total"),
        success: get("success"),
        failed: get("failed"),
        cancelled: get("cancelled"),
        timeout: get("timeout"),
        duration_sum: get(DURATION_SUM),
        histogram: (0..BUCKETS).map(|i| get(&bucket_counter(i))).collect(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_is_the_utc_date() {
        assert_eq!(day(Timestamp::from_millis(1_700_000_000_000)), "2023-11-14");
    }
}
