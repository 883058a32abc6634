//! Circuits and trends over HTTP (SPEC §10) on the real local server: a circuit opened by a
//! failing service, read, reset and configured per organization; a workflow's trends equal
//! to the executions that ran.

use serde_json::{Value, json};
use weconnect_tests::server::{Api, TestServer};
use weconnect_tests::sink::Sink;

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// manual trigger → one call of `url`, no retries.
fn caller(url: &str) -> Value {
    json!({
        "name": "Caller",
        "nodes": [
            {"id": "start", "name": "Start", "type": "trigger.manual"},
            {"id": "call", "name": "Call", "type": "http.request",
             "parameters": {"url": url}, "retry": {"maxAttempts": 1}}
        ],
        "connections": [{"source": "start", "target": "call"}]
    })
}

/// Runs the workflow once; the call node's error kind (None when it succeeded).
async fn run_once(a: &Api, workflow_id: &str) -> Option<String> {
    let exec = a.start(workflow_id, json!({})).await;
    let done = a.wait_terminal(&id_of(&exec)).await;
    done["nodes"][1]["error"]["kind"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuits_are_read_reset_and_configured_per_organization() {
    let t = TestServer::start().await;
    let sink = Sink::start().await;
    sink.always("down", 503);
    let a = t.api("acme");
    let other = t.api("globex");
    let wf = id_of(&a.create_workflow(&caller(&sink.url("down"))).await);

    assert_eq!(a.get("/circuits").await.body["items"], json!([]));
    a.get("/circuits/127.0.0.1").await.error(404);
    // Five failures (the default threshold) open the circuit; the sixth call fails fast.
    for _ in 0..5 {
        assert_eq!(run_once(&a, &wf).await.as_deref(), Some("http5xx"));
    }
    assert_eq!(run_once(&a, &wf).await.as_deref(), Some("circuitOpen"));
    assert_eq!(sink.count("down"), 5);
    let r = a.get("/circuits").await;
    assert_eq!(r.status, 200, "{r:?}");
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{r:?}");
    let c = &items[0];
    assert_eq!(c["key"], "127.0.0.1");
    assert_eq!(c["state"], "open");
    assert_eq!(c["failures"], 5);
    assert!(
        c["openedAt"].is_string() && c["nextTrialAt"].is_string(),
        "{c}"
    );
    assert_eq!(
        c["config"],
        json!({"failureThreshold": 5, "timeoutMs": 60000, "resetTimeoutMs": 30000})
    );
    assert_eq!(a.get("/circuits/127.0.0.1").await.body, *c);
    assert_eq!(r.body["limit"], 20);
    assert_eq!(r.body["nextCursor"], Value::Null);

    // Another organization has its own circuits: its calls still go through.
    other.get("/circuits/127.0.0.1").await.error(404);
    other
        .post("/circuits/127.0.0.1/reset", &json!({}))
        .await
        .error(404);
    let theirs = id_of(&other.create_workflow(&caller(&sink.url("down"))).await);
    assert_eq!(run_once(&other, &theirs).await.as_deref(), Some("http5xx"));
    assert_eq!(sink.count("down"), 6);
    assert_eq!(other.get("/circuits/127.0.0.1").await.body["failures"], 1);
    assert_eq!(a.get("/circuits/127.0.0.1").await.body["failures"], 5);

    // Reset: closed, failures cleared; the next call goes out.
    let r = a.post("/circuits/127.0.0.1/reset", &json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["state"], "closed");
    assert_eq!(r.body["failures"], 0);
    assert_eq!(r.body["openedAt"], Value::Null);
    assert_eq!(r.body["nextTrialAt"], Value::Null);
    assert_eq!(run_once(&a, &wf).await.as_deref(), Some("http5xx"));
    assert_eq!(sink.count("down"), 7);

    // Configured: two failures open it now, for the configured time.
    let r = a
        .put(
            "/circuits/127.0.0.1",
            &json!({"failureThreshold": 2, "timeoutMs": 120000}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["config"],
        json!({"failureThreshold": 2, "timeoutMs": 120000, "resetTimeoutMs": 30000})
    );
    assert_eq!(run_once(&a, &wf).await.as_deref(), Some("http5xx"));
    assert_eq!(run_once(&a, &wf).await.as_deref(), Some("circuitOpen"));
    assert_eq!(sink.count("down"), 8);
    let c = a.get("/circuits/127.0.0.1").await.body;
    assert_eq!(c["state"], "open");
    let opened = chrono::DateTime::parse_from_rfc3339(c["openedAt"].as_str().unwrap()).unwrap();
    let trial = chrono::DateTime::parse_from_rfc3339(c["nextTrialAt"].as_str().unwrap()).unwrap();
    assert_eq!((trial - opened).num_milliseconds(), 120_000);
    // A reset keeps the configuration; a later PUT changes only what it names.
    let r = a.post("/circuits/127.0.0.1/reset", &json!({})).await;
    assert_eq!(r.body["config"]["failureThreshold"], 2);
    let r = a
        .put("/circuits/127.0.0.1", &json!({"resetTimeoutMs": 5000}))
        .await;
    assert_eq!(
        r.body["config"],
        json!({"failureThreshold": 2, "timeoutMs": 120000, "resetTimeoutMs": 5000})
    );
    // A circuit configured before any call exists (closed).
    let r = a
        .put("/circuits/payments", &json!({"failureThreshold": 10}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["state"], "closed");
    let keys: Vec<Value> = a.get("/circuits?limit=1").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].clone())
        .collect();
    assert_eq!(keys, vec![json!("127.0.0.1")]);
    let page = a.get("/circuits?limit=1").await.body;
    let next = page["nextCursor"].as_str().expect("a second page");
    let second = a.get(&format!("/circuits?limit=1&cursor={next}")).await;
    assert_eq!(second.body["items"][0]["key"], "payments");

    // Bad requests change nothing.
    for bad in [
        json!({}),
        json!({"failureThreshold": 0}),
        json!({"timeoutMs": 10}),
        json!({"resetTimeoutMs": 86_400_001u64}),
        json!({"failureThreshold": "two"}),
        json!({"other": 1}),
        json!([1]),
    ] {
        a.put("/circuits/payments", &bad).await.error(400);
    }
    a.post_raw("/circuits/payments", "{").await.error(405);
    a.put(
        &format!("/circuits/{}", "k".repeat(300)),
        &json!({"failureThreshold": 3}),
    )
    .await
    .error(400);
    a.get("/circuits?limit=0").await.error(400);
    a.get("/circuits?cursor=forged").await.error(400);
    a.post("/circuits/never-used/reset", &json!({}))
        .await
        .error(404);
    assert_eq!(
        a.get("/circuits/payments").await.body["config"]["failureThreshold"],
        10
    );
    t.anonymous().get("/circuits").await.error(401);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trends_equal_the_executions_that_ran() {
    let t = TestServer::start().await;
    let sink = Sink::start().await;
    sink.script("flaky", &[200, 200, 500, 200, 503]);
    let a = t.api("acme");
    let wf = id_of(&a.create_workflow(&caller(&sink.url("flaky"))).await);
    let mut kinds = Vec::new();
    for _ in 0..5 {
        kinds.push(run_once(&a, &wf).await);
    }
    let failures = kinds.iter().filter(|k| k.is_some()).count() as u64;
    assert_eq!(failures, 2, "{kinds:?}");
    // One cancelled execution too (a wait node, cancelled while it waits).
    let waiting = id_of(
        &a.create_workflow(&json!({
            "name": "Waits",
            "nodes": [
                {"id": "start", "name": "Start", "type": "trigger.manual"},
                {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": 60000}}
            ],
            "connections": [{"source": "start", "target": "wait"}]
        }))
        .await,
    );
    let exec = a.start(&waiting, json!({})).await;
    a.post(&format!("/executions/{}/cancel", id_of(&exec)), &json!({}))
        .await;
    a.wait_terminal(&id_of(&exec)).await;

    let r = a.get(&format!("/workflows/{wf}/trends")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["workflowId"], wf.as_str());
    assert_eq!(r.body["interval"], "day");
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{r:?}");
    let day = &items[0];
    assert_eq!(day["total"], 5);
    assert_eq!(day["success"], 3);
    assert_eq!(day["failed"], 2);
    assert_eq!(day["cancelled"], 0);
    assert_eq!(day["timeout"], 0);
    assert!(day["averageDuration"].as_f64().unwrap() >= 0.0);
    assert!(day["p95Duration"].as_f64().unwrap() >= 0.0);
    assert!(day["start"].as_str().unwrap().ends_with("T00:00:00.000Z"));
    // The executions listed are the ones counted.
    let listed = a
        .get(&format!("/executions/workflow/{wf}?limit=100"))
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 5);

    let r = a
        .get(&format!("/workflows/{wf}/trends?interval=hour"))
        .await;
    let hours = r.body["items"].as_array().unwrap();
    assert_eq!(
        hours
            .iter()
            .map(|h| h["total"].as_u64().unwrap())
            .sum::<u64>(),
        5
    );
    assert!(hours[0]["start"].as_str().unwrap().ends_with(":00:00.000Z"));
    let r = a.get(&format!("/workflows/{waiting}/trends")).await;
    assert_eq!(r.body["items"][0]["cancelled"], 1);
    // A window before the runs is empty.
    let r = a
        .get(&format!(
            "/workflows/{wf}/trends?startDate=2020-01-01T00:00:00Z&endDate=2020-01-02T00:00:00Z"
        ))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["items"], json!([]));

    // Bad requests and other organizations.
    for bad in [
        "interval=week",
        "startDate=yesterday",
        "startDate=2026-01-02T00:00:00Z&endDate=2026-01-01T00:00:00Z",
        "interval=hour&startDate=2026-01-01T00:00:00Z&endDate=2026-03-01T00:00:00Z",
        "startDate=2020-01-01T00:00:00Z&endDate=2026-01-01T00:00:00Z",
    ] {
        let message = a
            .get(&format!("/workflows/{wf}/trends?{bad}"))
            .await
            .error(400);
        assert!(!message.is_empty());
    }
    t.api("globex")
        .get(&format!("/workflows/{wf}/trends"))
        .await
        .error(404);
    a.get("/workflows/no-such-workflow/trends").await.error(404);
    t.stop().await;
}
