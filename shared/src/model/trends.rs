//! Trends of a workflow (SPEC §10, the seeds' PerformanceMonitorService): counters per hour
//! and per day of an execution's `createdAt`, added to in the same write that gives the
//! execution its terminal status (so they equal the executions that ran), and summed into one
//! point per interval when read. Durations are kept as a histogram over fixed buckets
//! ([`BUCKET_BOUNDS_MS`]), so `p95Duration` is interpolated inside its bucket; the average
//! is exact.

use super::{ExecutionStatus, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Upper bounds (ms, inclusive) of the duration histogram's buckets; a last bucket holds the
/// rest. Steps of 1.5–2×.
pub const BUCKET_BOUNDS_MS: [u64; 36] = [
    5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500,
    10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000, 300_000, 450_000,
    600_000, 900_000, 1_200_000, 1_800_000, 2_700_000, 3_600_000, 7_200_000,
];
/// Buckets of the histogram (the bounds and the rest).
pub const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;

/// The bucket a duration falls in.
pub fn bucket_of(duration_ms: u64) -> usize {
    BUCKET_BOUNDS_MS
        .iter()
        .position(|b| duration_ms <= *b)
        .unwrap_or(BUCKET_BOUNDS_MS.len())
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

/// The width of a trend's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum TrendInterval {
    Hour,
    Day,
}

impl TrendInterval {
    /// Every interval: each terminal execution is counted once in each.
    pub const ALL: [TrendInterval; 2] = [TrendInterval::Hour, TrendInterval::Day];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }

    /// The start of the interval `at` falls in (UTC).
    pub fn start_of(self, at: Timestamp) -> Timestamp {
        let width = self.millis();
        Timestamp::from_millis(at.millis().div_euclid(width) * width)
    }
}

/// The counters of one interval (or a shard of it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrendCounters {
    pub total: u64,
    pub success: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub timeout: u64,
    /// Sum of the durations (ms).
    pub duration_sum: u64,
    /// Counts per bucket of [`BUCKET_BOUNDS_MS`] (shorter when the last ones are zero).
    #[serde(default)]
    pub histogram: Vec<u64>,
}

impl TrendCounters {
    /// What one execution that reached `status` after `duration_ms` adds; None unless the
    /// status is terminal.
    pub fn of(status: ExecutionStatus, duration_ms: u64) -> Option<Self> {
        let mut c = Self {
            total: 1,
            duration_sum: duration_ms,
            ..Self::default()
        };
        match status {
            ExecutionStatus::Success => c.success = 1,
            ExecutionStatus::Failed => c.failed = 1,
            ExecutionStatus::Cancelled => c.cancelled = 1,
            ExecutionStatus::Timeout => c.timeout = 1,
            _ => return None,
        }
        let bucket = bucket_of(duration_ms);
        c.histogram = vec![0; bucket + 1];
        c.histogram[bucket] = 1;
        Some(c)
    }

    pub fn add(&mut self, other: &Self) {
        self.total = self.total.saturating_add(other.total);
        self.success = self.success.saturating_add(other.success);
        self.failed = self.failed.saturating_add(other.failed);
        self.cancelled = self.cancelled.saturating_add(other.cancelled);
        self.timeout = self.timeout.saturating_add(other.timeout);
        self.duration_sum = self.duration_sum.saturating_add(other.duration_sum);
        if self.histogram.len() < other.histogram.len() {
            self.histogram.resize(other.histogram.len(), 0);
        }
        for (mine, theirs) in self.histogram.iter_mut().zip(&other.histogram) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    pub fn point(&self, start: Timestamp) -> TrendPoint {
        TrendPoint {
            start,
            total: self.total,
            success: self.success,
            failed: self.failed,
            cancelled: self.cancelled,
            timeout: self.timeout,
            average_duration: if self.total > 0 {
                self.duration_sum as f64 / self.total as f64
            } else {
                0.0
            },
            p95_duration: percentile(&self.histogram, 0.95),
        }
    }
}

/// One item of `GET /workflows/{id}/trends`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrendPoint {
    pub start: Timestamp,
    pub total: u64,
    pub success: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub timeout: u64,
    pub average_duration: f64,
    pub p95_duration: f64,
}

/// One point per interval that had executions, oldest first, from stored counters (several
/// per interval when a store shards them).
pub fn trend_points(
    interval: TrendInterval,
    counters: impl IntoIterator<Item = (Timestamp, TrendCounters)>,
) -> Vec<TrendPoint> {
    let mut by_start: BTreeMap<Timestamp, TrendCounters> = BTreeMap::new();
    for (at, c) in counters {
        by_start.entry(interval.start_of(at)).or_default().add(&c);
    }
    by_start
        .into_iter()
        .filter(|(_, c)| c.total > 0)
        .map(|(start, c)| c.point(start))
        .collect()
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
    fn intervals_start_on_utc_hours_and_days() {
        let at = Timestamp::parse("2026-12-02T09:41:07.123Z").unwrap();
        assert_eq!(
            TrendInterval::Hour.start_of(at).to_string(),
            "2026-12-02T09:00:00.000Z"
        );
        assert_eq!(
            TrendInterval::Day.start_of(at).to_string(),
            "2026-12-02T00:00:00.000Z"
        );
        assert_eq!(TrendInterval::parse("week"), None);
    }

    #[test]
    fn only_terminal_executions_count() {
        assert!(TrendCounters::of(ExecutionStatus::Running, 5).is_none());
        assert!(TrendCounters::of(ExecutionStatus::Pending, 5).is_none());
        let c = TrendCounters::of(ExecutionStatus::Timeout, 40).unwrap();
        assert_eq!((c.total, c.timeout, c.duration_sum), (1, 1, 40));
        assert_eq!(c.histogram.iter().sum::<u64>(), 1);
    }

    #[test]
    fn points_sum_shards_and_skip_empty_intervals() {
        let t = |s: &str| Timestamp::parse(s).unwrap();
        let ok = |ms| TrendCounters::of(ExecutionStatus::Success, ms).unwrap();
        let failed = TrendCounters::of(ExecutionStatus::Failed, 300).unwrap();
        let points = trend_points(
            TrendInterval::Hour,
            [
                (t("2026-12-02T10:00:00.000Z"), failed.clone()),
                (t("2026-12-02T09:00:00.000Z"), ok(100)),
                (t("2026-12-02T09:00:00.000Z"), ok(200)),
                (t("2026-12-02T11:00:00.000Z"), TrendCounters::default()),
            ],
        );
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].start, t("2026-12-02T09:00:00.000Z"));
        assert_eq!((points[0].total, points[0].success), (2, 2));
        assert_eq!(points[0].average_duration, 150.0);
        assert!(points[0].p95_duration > 150.0 && points[0].p95_duration <= 200.0);
        assert_eq!((points[1].total, points[1].failed), (1, 1));
        // Days sum their hours.
        let days = trend_points(
            TrendInterval::Day,
            [
                (t("2026-12-02T09:00:00.000Z"), ok(100)),
                (t("2026-12-02T10:00:00.000Z"), failed),
            ],
        );
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].start, t("2026-12-02T00:00:00.000Z"));
        assert_eq!(days[0].total, 2);
    }
}
