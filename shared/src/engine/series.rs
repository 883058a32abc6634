//! The installation's metric series (SPEC §11): Prometheus text for `GET /metrics` (the
//! local server, `WECONNECT_METRICS=true`) and the same figures as CloudWatch embedded
//! metric format (EMF) log lines on Lambda. No label carries organization data: executions
//! by status and mode, node runs by type and status, node durations by type; the queue's
//! depth and the open circuits are read when scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    status: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node_type: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeTypeLabels {
    node_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    state: String,
}

/// Node durations in seconds: 1 ms to ~33 s, doubling.
fn node_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Most node durations one EMF line carries (EMF's limit is 100 values per metric).
const EMF_VALUES: usize = 100;
/// The CloudWatch namespace of the EMF lines.
pub const EMF_NAMESPACE: &str = "WeConnect";

/// An EMF metric with its dimensions (name, value).
type EmfKey = (&'static str, Vec<(&'static str, String)>);

/// What happened since the last EMF flush, per dimension set.
#[derive(Debug, Default)]
struct Pending {
    counts: BTreeMap<EmfKey, u64>,
    /// node type → durations in ms (the first [`EMF_VALUES`])
    durations: BTreeMap<String, Vec<u64>>,
}

#[derive(Debug)]
pub struct Series {
    registry: Registry,
    started: Family<ModeLabels, Counter>,
    finished: Family<FinishedLabels, Counter>,
    node_runs: Family<NodeLabels, Counter>,
    node_duration: Family<NodeTypeLabels, Histogram, fn() -> Histogram>,
    queue_jobs: Family<QueueLabels, Gauge>,
    circuits_open: Gauge,
    engine_failures: Counter,
    pending: Mutex<Pending>,
}

impl Default for Series {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("weconnect");
        let started = Family::<ModeLabels, Counter>::default();
        registry.register(
            "executions_started",
            "Executions created, by mode",
            started.clone(),
        );
        let finished = Family::<FinishedLabels, Counter>::default();
        registry.register(
            "executions_finished",
            "Executions that reached a terminal status, by status and mode",
            finished.clone(),
        );
        let node_runs = Family::<NodeLabels, Counter>::default();
        registry.register(
            "node_runs",
            "Node runs that ended (succeeded or failed for good), by node type and status",
            node_runs.clone(),
        );
        let node_duration =
            Family::<NodeTypeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                node_duration_histogram,
            );
        registry.register(
            "node_duration_seconds",
            "Duration of the last attempt of node runs that ended, by node type",
            node_duration.clone(),
        );
        let queue_jobs = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_jobs",
            "Jobs in the queue, by state (ready, delayed, in flight), when scraped",
            queue_jobs.clone(),
        );
        let circuits_open = Gauge::default();
        registry.register(
            "circuits_open",
            "Circuits open or half-open, all organizations together, when scraped",
            circuits_open.clone(),
        );
        let engine_failures = Counter::default();
        registry.register(
            "engine_failures",
            "Jobs, schedule ticks and API requests that failed inside the engine (a store or queue error: delivered again, or answered 5xx)",
            engine_failures.clone(),
        );
        Self {
            registry,
            started,
            finished,
            node_runs,
            node_duration,
            queue_jobs,
            circuits_open,
            engine_failures,
            pending: Mutex::default(),
        }
    }
}

impl Series {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn execution_started(&self, mode: &str) {
        self.started
            .get_or_create(&ModeLabels { mode: mode.into() })
            .inc();
        *self
            .pending()
            .counts
            .entry(("ExecutionsStarted", vec![("Mode", mode.into())]))
            .or_default() += 1;
    }

    pub fn execution_finished(&self, status: &str, mode: &str) {
        self.finished
            .get_or_create(&FinishedLabels {
                status: status.into(),
                mode: mode.into(),
            })
            .inc();
        *self
            .pending()
            .counts
            .entry((
                "ExecutionsFinished",
                vec![("Status", status.into()), ("Mode", mode.into())],
            ))
            .or_default() += 1;
    }

    pub fn node_ran(&self, node_type: &str, status: &str, duration_ms: u64) {
        self.node_runs
            .get_or_create(&NodeLabels {
                node_type: node_type.into(),
                status: status.into(),
            })
            .inc();
        self.node_duration
            .get_or_create(&NodeTypeLabels {
                node_type: node_type.into(),
            })
            .observe(duration_ms as f64 / 1000.0);
        let mut pending = self.pending();
        *pending
            .counts
            .entry((
                "NodeRuns",
                vec![("NodeType", node_type.into()), ("Status", status.into())],
            ))
            .or_default() += 1;
        let durations = pending.durations.entry(node_type.into()).or_default();
        if durations.len() < EMF_VALUES {
            durations.push(duration_ms);
        }
    }

    /// A job, schedule tick or API request failed inside the engine (the store or the queue
    /// failed): it is delivered again or answered 5xx. Node failures are not engine failures.
    /// On Lambda the `EngineFailures` metric (no dimension), which an alarm watches.
    pub fn engine_failed(&self) {
        self.engine_failures.inc();
        *self
            .pending()
            .counts
            .entry(("EngineFailures", Vec::new()))
            .or_default() += 1;
    }

    /// The Prometheus text exposition (OpenMetrics 1.0) with the scraped gauges set.
    pub fn prometheus_text(&self, queue: QueueGauges, circuits_open: Option<u64>) -> String {
        for (state, n) in [
            ("ready", queue.ready),
            ("delayed", queue.delayed),
            ("in_flight", queue.in_flight),
        ] {
            self.queue_jobs
                .get_or_create(&QueueLabels {
                    state: state.into(),
                })
                .set(n.min(i64::MAX as u64) as i64);
        }
        if let Some(n) = circuits_open {
            self.circuits_open.set(n.min(i64::MAX as u64) as i64);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// What happened since the last call, as EMF log lines (one per dimension set), and
    /// forgets it. `now_ms`: the lines' timestamp.
    pub fn take_emf_lines(&self, now_ms: i64) -> Vec<String> {
        let pending = std::mem::take(&mut *self.pending());
        let line = |dimensions: &[(&str, String)], metric: &str, unit: &str, value: Value| {
            let names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
            let mut fields = Map::new();
            fields.insert(
                "_aws".into(),
                json!({
                    "Timestamp": now_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": EMF_NAMESPACE,
                        "Dimensions": [names],
                        "Metrics": [{"Name": metric, "Unit": unit}],
                    }],
                }),
            );
            for (name, value) in dimensions {
                fields.insert((*name).into(), Value::String(value.clone()));
            }
            fields.insert(metric.into(), value);
            Value::Object(fields).to_string()
        };
        let mut lines: Vec<String> = pending
            .counts
            .iter()
            .map(|((metric, dimensions), n)| line(dimensions, metric, "Count", json!(n)))
            .collect();
        lines.extend(pending.durations.iter().map(|(node_type, values)| {
            line(
                &[("NodeType", node_type.clone())],
                "NodeDuration",
                "Milliseconds",
                json!(values),
            )
        }));
        lines
    }
}

/// The queue's depth as the `queue_jobs` gauge shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueGauges {
    pub ready: u64,
    pub delayed: u64,
    pub in_flight: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_has_every_series_with_its_labels() {
        let s = Series::default();
        s.execution_started("webhook");
        s.execution_finished("success", "webhook");
        s.node_ran("http.request", "success", 120);
        let text = s.prometheus_text(
            QueueGauges {
                ready: 3,
                delayed: 1,
                in_flight: 2,
            },
            Some(4),
        );
        for expected in [
            "weconnect_executions_started_total{mode=\"webhook\"} 1",
            "weconnect_executions_finished_total{status=\"success\",mode=\"webhook\"} 1",
            "weconnect_node_runs_total{node_type=\"http.request\",status=\"success\"} 1",
            "weconnect_node_duration_seconds_count{node_type=\"http.request\"} 1",
            "weconnect_queue_jobs{state=\"ready\"} 3",
            "weconnect_circuits_open 4",
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
    }

    #[test]
    fn emf_lines_carry_what_happened_since_the_last_flush() {
        let s = Series::default();
        s.execution_finished("failed", "manual");
        s.execution_finished("failed", "manual");
        for ms in 0..150 {
            s.node_ran("data.set", "success", ms);
        }
        let lines: Vec<Value> = s
            .take_emf_lines(1_700_000_000_000)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let finished = lines
            .iter()
            .find(|l| l.get("ExecutionsFinished").is_some())
            .unwrap();
        assert_eq!(finished["ExecutionsFinished"], 2);
        assert_eq!(finished["Status"], "failed");
        assert_eq!(finished["Mode"], "manual");
        let directive = &finished["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], EMF_NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Status", "Mode"]]));
        assert_eq!(finished["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let runs = lines.iter().find(|l| l.get("NodeRuns").is_some()).unwrap();
        assert_eq!(
            (runs["NodeRuns"].as_u64(), &runs["NodeType"]),
            (Some(150), &json!("data.set"))
        );
        let durations = lines
            .iter()
            .find(|l| l.get("NodeDuration").is_some())
            .unwrap();
        assert_eq!(
            durations["NodeDuration"].as_array().unwrap().len(),
            EMF_VALUES
        );
        assert!(s.take_emf_lines(0).is_empty(), "taken once");
    }

    #[test]
    fn engine_failures_are_one_metric_without_dimensions() {
        let s = Series::default();
        s.engine_failed();
        s.engine_failed();
        let text = s.prometheus_text(QueueGauges::default(), None);
        assert!(text.contains("weconnect_engine_failures_total 2"), "{text}");
        let lines: Vec<Value> = s
            .take_emf_lines(0)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["EngineFailures"], 2);
        // The alarm in template.yaml watches the metric without dimensions.
        assert_eq!(
            lines[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
    }
}
