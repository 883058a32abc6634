//! The standard interfaces of SPEC §11 on the local server: `GET /metrics`.

use prometheus_parse::{Sample, Scrape, Value as PromValue};
use serde_json::json;
use weconnect_tests::server::TestServer;

/// manual trigger → data.set; the second workflow's HTTP node fails (nothing listens).
fn workflows() -> [serde_json::Value; 2] {
    [
        json!({
            "name": "Set",
            "nodes": [
                {"id": "start", "name": "Start", "type": "trigger.manual"},
                {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"ok": true}}}
            ],
            "connections": [{"source": "start", "target": "set"}]
        }),
        json!({
            "name": "Fail",
            "nodes": [
                {"id": "start", "name": "Start", "type": "trigger.manual"},
                {"id": "fail", "name": "Fail", "type": "data.set",
                 "parameters": {"values": {"x": "{{ trigger.missing.deeper }}"}}}
            ],
            "connections": [{"source": "start", "target": "fail"}]
        }),
    ]
}

fn sample<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

fn number(s: Option<&Sample>) -> f64 {
    match s.map(|s| &s.value) {
        Some(PromValue::Counter(n) | PromValue::Gauge(n) | PromValue::Untyped(n)) => *n,
        other => panic!("not a number: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_only_when_turned_on() {
    let t = TestServer::start().await;
    t.anonymous().get("/metrics").await.error(404);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_installations_series_in_prometheus_text() {
    let t = TestServer::start_with(|s| s.metrics = true).await;
    let api = t.api("acme-metrics-org");
    let mut ended = Vec::new();
    for wf in workflows() {
        let created = api.post("/workflows", &wf).await;
        assert_eq!(created.status, 201, "{created:?}");
        let id = created.body["id"].as_str().unwrap().to_string();
        let exec = api.start(&id, json!({})).await;
        let done = api.wait_terminal(exec["id"].as_str().unwrap()).await;
        ended.push(done["status"].as_str().unwrap().to_string());
    }
    assert_eq!(ended, ["success", "failed"]);

    // No token needed; the Prometheus text format.
    let response = t
        .anonymous()
        .client
        .get(format!("{}/metrics", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");

    let started = number(sample(
        &scrape,
        "weconnect_executions_started_total",
        &[("mode", "manual")],
    ));
    assert_eq!(started, 2.0, "{text}");
    for (status, n) in [("success", 1.0), ("failed", 1.0)] {
        let s = sample(
            &scrape,
            "weconnect_executions_finished_total",
            &[("status", status), ("mode", "manual")],
        );
        assert_eq!(number(s), n, "{status}: {text}");
    }
    let runs = sample(
        &scrape,
        "weconnect_node_runs_total",
        &[("node_type", "data.set"), ("status", "success")],
    );
    assert_eq!(number(runs), 1.0, "{text}");
    let failed = sample(
        &scrape,
        "weconnect_node_runs_total",
        &[("node_type", "data.set"), ("status", "failed")],
    );
    assert_eq!(number(failed), 1.0, "{text}");
    match sample(
        &scrape,
        "weconnect_node_duration_seconds",
        &[("node_type", "data.set")],
    )
    .map(|s| &s.value)
    {
        Some(PromValue::Histogram(buckets)) => {
            let all = buckets.last().expect("buckets");
            assert_eq!(all.count, 2.0, "{text}");
        }
        other => panic!("no duration histogram: {other:?}\n{text}"),
    }
    for state in ["ready", "delayed", "in_flight"] {
        let s = sample(&scrape, "weconnect_queue_jobs", &[("state", state)]);
        assert!(s.is_some(), "queue {state}: {text}");
    }
    assert_eq!(number(sample(&scrape, "weconnect_circuits_open", &[])), 0.0);
    // Installation-wide: no organization in any series.
    assert!(!text.contains("acme-metrics-org"), "{text}");
    t.stop().await;
}
