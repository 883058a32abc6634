//! The standard interfaces of SPEC §11 on the local server: `GET /metrics`.

use prometheus_parse::{Sample, Scrape, Value as PromValue};
use serde_json::json;
use weconnect_tests::server::TestServer;
use weconnect_tests::sink::Sink;

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

/// The console's page and assets and the OpenAPI document need no token (they hold no
/// data); the API the console calls does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_the_openapi_document_are_served_without_a_token() {
    let t = TestServer::start().await;
    let anonymous = t.anonymous();
    let page = anonymous.get("/console").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.headers.contains_key("content-security-policy"));
    assert!(page.text.contains("/console/app.js"), "{}", page.text);
    let script = anonymous.get("/console/app.js").await;
    assert_eq!(script.status, 200);
    assert!(
        script.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    anonymous.get("/console/nothing.js").await.error(404);
    anonymous.get("/workflows").await.error(401);

    let doc = anonymous.get("/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    for path in [
        "/workflows",
        "/executions/{id}/events",
        "/console",
        "/metrics",
    ] {
        assert!(
            doc.body["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
    t.stop().await;
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
    assert_eq!(
        number(sample(&scrape, "weconnect_engine_failures_total", &[])),
        0.0
    );
    // Installation-wide: no organization in any series.
    assert!(!text.contains("acme-metrics-org"), "{text}");
    t.stop().await;
}

/// A store failure is answered 500 in the spec's shape and counted as an engine failure (the
/// `EngineFailures` metric an alarm watches on AWS): a table dropped under the running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_is_a_500_counted_as_an_engine_failure() {
    let t = TestServer::start_with(|s| s.metrics = true).await;
    let api = t.api("acme-failures");
    assert_eq!(api.get("/credentials").await.status, 200);
    let db = rusqlite::Connection::open(t.data_dir().join("weconnect.db")).unwrap();
    db.execute_batch("DROP TABLE credentials").unwrap();
    api.get("/credentials").await.error(500);
    let text = t.anonymous().get("/metrics").await.text;
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    assert_eq!(
        number(sample(&scrape, "weconnect_engine_failures_total", &[])),
        1.0,
        "{text}"
    );
    t.stop().await;
}

// ---- live events: GET /executions/{id}/events -------------------------------------------

/// One Server-Sent Event as received.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: String,
    event: String,
    data: serde_json::Value,
}

/// Reads an SSE response to its end (the server ends it after the terminal event).
async fn read_sse(mut response: reqwest::Response) -> Vec<Sse> {
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the stream ends within 30 s")
            .expect("readable");
        let Some(chunk) = chunk else { break };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .map(str::to_string)
            };
            if let (Some(id), Some(event), Some(data)) =
                (field("id"), field("event"), field("data"))
            {
                events.push(Sse {
                    id,
                    event,
                    data: serde_json::from_str(&data).expect("JSON data"),
                });
            }
        }
    }
    events
}

fn node_events<'a>(events: &'a [Sse], node: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e.event == "node" && e.data["nodeId"] == node)
        .map(|e| e.data["status"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_an_execution_live_resume_after_an_id_and_end_after_the_terminal_one() {
    let t = TestServer::start().await;
    let api = t.api("acme-events");
    // The HTTP node runs for 1.5 s: long enough to be seen running.
    let sink = Sink::start().await;
    sink.delay("slow", std::time::Duration::from_millis(1500));
    let wf = api
        .post(
            "/workflows",
            &json!({
                "name": "Slow call",
                "nodes": [
                    {"id": "start", "name": "Start", "type": "trigger.manual"},
                    {"id": "call", "name": "Call", "type": "http.request",
                     "parameters": {"method": "GET", "url": sink.url("slow")}},
                    {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"done": true}}}
                ],
                "connections": [{"source": "start", "target": "call"}, {"source": "call", "target": "set"}]
            }),
        )
        .await;
    assert_eq!(wf.status, 201, "{wf:?}");
    let exec = api.start(wf.body["id"].as_str().unwrap(), json!({})).await;
    let id = exec["id"].as_str().unwrap().to_string();
    let url = format!("{}/executions/{id}/events", t.url);
    let response = api
        .client
        .get(&url)
        .bearer_auth(api.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_sse(response).await;

    // Live: the HTTP node was seen running, then succeeded (the stream begins with the
    // state: a node not started yet shows as pending first); the last event is the terminal
    // execution event, after every node and log.
    let call = node_events(&events, "call");
    assert!(call.ends_with(&["running", "success"]), "{events:#?}");
    assert_eq!(node_events(&events, "set").last(), Some(&"success"));
    let last = events.last().unwrap();
    assert_eq!(last.event, "execution");
    assert_eq!(last.data["status"], "success");
    assert_eq!(last.data["progress"]["percent"], 100.0);
    let running_at = events
        .iter()
        .position(|e| e.event == "execution" && e.data["status"] == "running");
    assert!(running_at.is_some(), "{events:#?}");
    // Every log once, in order, as the logs route lists them.
    let logs = api.get(&format!("/executions/{id}/logs?limit=1000")).await;
    let log_ids: Vec<&str> = logs.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    let streamed: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| e.data["id"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, log_ids);
    // Every event moves the cursor its id is.
    assert!(events.windows(2).all(|w| w[0].id != w[1].id), "{events:#?}");

    // Resume after an event in the middle (Last-Event-ID, or ?after=): only what came after.
    let cut = events
        .iter()
        .position(|e| {
            e.event == "node" && e.data["nodeId"] == "call" && e.data["status"] == "running"
        })
        .unwrap();
    let after_cut: Vec<&Sse> = events[cut + 1..].iter().collect();
    for resumed in [
        api.client
            .get(&url)
            .bearer_auth(api.token.as_deref().unwrap())
            .header("Last-Event-ID", &events[cut].id)
            .send()
            .await
            .unwrap(),
        api.client
            .get(format!("{url}?after={}", events[cut].id))
            .bearer_auth(api.token.as_deref().unwrap())
            .send()
            .await
            .unwrap(),
    ] {
        let resumed = read_sse(resumed).await;
        let resumed_logs: Vec<&str> = resumed
            .iter()
            .filter(|e| e.event == "log")
            .map(|e| e.data["id"].as_str().unwrap())
            .collect();
        let expected_logs: Vec<&str> = after_cut
            .iter()
            .filter(|e| e.event == "log")
            .map(|e| e.data["id"].as_str().unwrap())
            .collect();
        assert_eq!(resumed_logs, expected_logs);
        assert_eq!(node_events(&resumed, "call"), ["success"]);
        assert_eq!(resumed.last().unwrap().data["status"], "success");
    }
    // After the terminal event nothing follows, at once.
    let end = read_sse(
        api.client
            .get(&url)
            .bearer_auth(api.token.as_deref().unwrap())
            .header("Last-Event-ID", &last.id)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(end.is_empty(), "{end:#?}");

    // Long polling: the same events, page by page, `done` at the end.
    let mut polled = Vec::new();
    let mut after = String::new();
    loop {
        let path = if after.is_empty() {
            format!("/executions/{id}/events?waitMs=1000")
        } else {
            format!("/executions/{id}/events?waitMs=1000&after={after}")
        };
        let r = api
            .send(
                api.request(reqwest::Method::GET, &path)
                    .header("accept", "application/json"),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        polled.extend(r.body["events"].as_array().unwrap().iter().cloned());
        after = r.body["nextCursor"].as_str().unwrap().to_string();
        if r.body["done"] == true {
            break;
        }
    }
    assert_eq!(polled.last().unwrap()["data"]["status"], "success");
    let polled_logs: Vec<&str> = polled
        .iter()
        .filter(|e| e["event"] == "log")
        .map(|e| e["data"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(polled_logs, log_ids);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_answer_errors_in_the_spec_shape() {
    let t = TestServer::start().await;
    let api = t.api("acme-events-errors");
    let wf = api.post("/workflows", &crate::api::waiting_wf(10)).await;
    let exec = api.start(wf.body["id"].as_str().unwrap(), json!({})).await;
    let id = exec["id"].as_str().unwrap();
    api.get("/executions/01930000-0000-7000-8000-000000000000/events")
        .await
        .error(404);
    t.api("someone-else")
        .get(&format!("/executions/{id}/events"))
        .await
        .error(404);
    api.get(&format!("/executions/{id}/events?after=garbage"))
        .await
        .error(400);
    api.get(&format!("/executions/{id}/events?waitMs=30000"))
        .await
        .error(400);
    t.anonymous()
        .get(&format!("/executions/{id}/events"))
        .await
        .error(401);
    t.stop().await;
}

/// 100 clients watching executions while they run all see them to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_subscribers_each_get_the_whole_stream() {
    let t = TestServer::start().await;
    let api = t.api("acme-events-many");
    let wf = api.post("/workflows", &crate::api::waiting_wf(1000)).await;
    let wf_id = wf.body["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            api.start(&wf_id, json!({})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let streams = (0..100).map(|n| {
        let url = format!("{}/executions/{}/events", t.url, ids[n % ids.len()]);
        let token = api.token.clone().unwrap();
        let client = api.client.clone();
        async move { read_sse(client.get(url).bearer_auth(token).send().await.unwrap()).await }
    });
    let all = futures::future::join_all(streams).await;
    for events in &all {
        let last = events.last().expect("events");
        assert_eq!(
            (last.event.as_str(), &last.data["status"]),
            ("execution", &json!("success"))
        );
        assert_eq!(node_events(events, "set").last(), Some(&"success"));
    }
    t.stop().await;
}

/// An output over 64 KiB is a reference in the execution's detail, and its route answers it
/// whole (SPEC §12); unknown nodes and nodes without an output are 404s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_outputs_are_references_in_the_detail_and_whole_on_their_route() {
    let t = TestServer::start().await;
    let api = t.api("acme-large");
    let [set, _] = workflows();
    let created = api.post("/workflows", &set).await;
    assert_eq!(created.status, 201, "{created:?}");
    let text = "x".repeat(70 * 1024);
    let exec = api
        .start(created.body["id"].as_str().unwrap(), json!({"text": text}))
        .await;
    let id = exec["id"].as_str().unwrap();
    let done = api.wait_terminal(id).await;
    assert_eq!(done["status"], "success", "{done}");
    let detail = api.get(&format!("/executions/{id}")).await;
    let nodes = detail.body["nodes"].as_array().unwrap();
    let start = nodes.iter().find(|n| n["nodeId"] == "start").unwrap();
    let reference = format!("/executions/{id}/nodes/start/output");
    assert_eq!(start["output"]["outputRef"], reference.as_str(), "{start}");
    assert!(start["output"]["outputSize"].as_u64().unwrap() > 70 * 1024);
    let set_node = nodes.iter().find(|n| n["nodeId"] == "set").unwrap();
    assert_eq!(
        set_node["output"],
        json!({"ok": true}),
        "small outputs stay inline"
    );
    // The input is shown once (`inputData`), not again as the trigger's output.
    assert!(detail.text.len() < 80 * 1024, "{} bytes", detail.text.len());

    let whole = api.get(&reference).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body["text"].as_str().map(str::len), Some(70 * 1024));
    api.get(&format!("/executions/{id}/nodes/nope/output"))
        .await
        .error(404);
    t.api("another-org").get(&reference).await.error(404);
    t.stop().await;
}
