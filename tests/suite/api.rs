//! End-to-end tests of the local product: the real server (SQLite store and queue, worker
//! pool, schedule runner, cleanup loop) on a loopback port, used over HTTP.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use weconnect_engine::http::credentials::hmac_key;
use weconnect_engine::http::webhooks::sign;
use weconnect_tests::server::{Api, TestServer, example, weconnect_binary};
use weconnect_tests::sink::Sink;

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// manual trigger → data.set
fn manual_wf(name: &str) -> Value {
    json!({
        "name": name,
        "nodes": [
            {"id": "start", "name": "Start", "type": "trigger.manual"},
            {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"v": "{{ trigger.v }}", "ok": true}}}
        ],
        "connections": [{"source": "start", "target": "set"}]
    })
}

/// webhook trigger (with `params`) → data.set, active
fn hook_wf(name: &str, params: Value) -> Value {
    json!({
        "name": name,
        "status": "active",
        "nodes": [
            {"id": "hook", "name": "Hook", "type": "trigger.webhook", "parameters": params},
            {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"got": "{{ trigger.body }}"}}}
        ],
        "connections": [{"source": "hook", "target": "set"}]
    })
}

/// manual trigger → flow.wait(ms) → data.set
pub(crate) fn waiting_wf(ms: u64) -> Value {
    json!({
        "name": format!("Wait {ms}"),
        "nodes": [
            {"id": "start", "name": "Start", "type": "trigger.manual"},
            {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": ms}},
            {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"done": true}}}
        ],
        "connections": [{"source": "start", "target": "wait"}, {"source": "wait", "target": "set"}]
    })
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

async fn count_executions(api: &Api, workflow_id: &str) -> usize {
    let r = api
        .get(&format!("/executions/workflow/{workflow_id}?limit=100"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["items"].as_array().expect("items").len()
}

async fn webhook(
    api: &Api,
    path: &str,
    body: &Value,
    headers: &[(&str, String)],
) -> weconnect_tests::server::Reply {
    let mut b = api
        .client
        .post(api.url(&format!("/webhook/{path}")))
        .body(body.to_string());
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    api.send(b).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_public_everything_else_needs_a_token() {
    let t = TestServer::start().await;
    let anon = t.anonymous();
    let r = anon.get("/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    for path in [
        "/workflows",
        "/executions",
        "/executions/statistics",
        "/credentials",
        "/monitoring/health",
        "/monitoring/metrics",
    ] {
        anon.get(path).await.error(401);
    }
    let bad = Api {
        token: Some("not-a-token".into()),
        ..anon.clone()
    };
    assert_eq!(bad.get("/workflows").await.error(401), "Invalid token");
    let foreign = weconnect_engine::http::JwtSecret::new(b"some-other-secret-value")
        .issue("u", "o", 3600)
        .unwrap();
    let forged = Api {
        token: Some(foreign),
        ..anon.clone()
    };
    forged.get("/workflows").await.error(401);

    // Unknown routes and wrong methods have the spec's shape too.
    let a = t.api("acme");
    a.get("/nowhere").await.error(404);
    let r = a
        .send(a.request(reqwest::Method::PATCH, "/workflows"))
        .await;
    r.error(405);
    // Nothing a client sends panics the server: bad percent-encoding, deep JSON.
    a.get("/executions/%FF%FE").await.error(400);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    a.post_raw("/executions", deep).await.error(400);
    assert_eq!(anon.get("/health").await.status, 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_crud_versions_and_validation() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let def = hook_wf("Orders", json!({}));
    let mut draft = def.clone();
    draft.as_object_mut().unwrap().remove("status");
    let wf = a.create_workflow(&draft).await;
    let id = id_of(&wf);
    assert_eq!(wf["version"], 1);
    assert_eq!(wf["status"], "draft");
    assert_eq!(wf["organizationId"], "acme");
    assert_eq!(wf["executionCount"], 0);
    let path = wf["nodes"][0]["parameters"]["path"]
        .as_str()
        .expect("generated webhook path")
        .to_string();
    assert!(path.len() >= 16, "{path}");
    assert_eq!(a.get(&format!("/workflows/{id}")).await.body, wf);

    // Full replace: version + 1, the generated path is kept.
    let r = a.put(&format!("/workflows/{id}"), &def).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["version"], 2);
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["nodes"][0]["parameters"]["path"], path.as_str());
    // A body without `status` keeps the current one.
    let mut renamed = draft.clone();
    renamed["name"] = json!("Orders v3");
    let r = a.put(&format!("/workflows/{id}"), &renamed).await;
    assert_eq!(r.body["version"], 3);
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["name"], "Orders v3");
    renamed["status"] = json!("inactive");
    let r = a.put(&format!("/workflows/{id}"), &renamed).await;
    assert_eq!(r.body["version"], 4);
    assert_eq!(r.body["status"], "inactive");

    // Pagination.
    a.create_workflow(&manual_wf("Second")).await;
    a.create_workflow(&manual_wf("Third")).await;
    let page1 = a.get("/workflows?limit=2").await;
    assert_eq!(page1.status, 200);
    assert_eq!(page1.body["limit"], 2);
    assert_eq!(page1.body["items"].as_array().unwrap().len(), 2);
    let cursor = page1.body["nextCursor"].as_str().expect("a next page");
    let page2 = a
        .get(&format!("/workflows?limit=2&cursor={}", urlencode(cursor)))
        .await;
    assert_eq!(page2.body["items"].as_array().unwrap().len(), 1);
    assert!(page2.body["nextCursor"].is_null());
    let mut names: Vec<String> = page1.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2.body["items"].as_array().unwrap())
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["Orders v3", "Second", "Third"]);
    assert_eq!(a.get("/workflows").await.body["limit"], 20);

    // Bad queries and bodies.
    for q in ["limit=0", "limit=101", "limit=abc", "cursor=garbage"] {
        a.get(&format!("/workflows?{q}")).await.error(400);
    }
    assert!(
        a.post_raw("/workflows", "{not json")
            .await
            .error(400)
            .contains("Malformed JSON")
    );
    a.post("/workflows", &json!({"name": 5, "nodes": []}))
        .await
        .error(400);
    a.post("/workflows", &json!({"name": "x", "nodes": [], "bogus": 1}))
        .await
        .error(400);
    let unknown_type = json!({"name": "u", "nodes": [
        {"id": "start", "name": "Start", "type": "trigger.manual"},
        {"id": "mystery", "name": "Mystery", "type": "no.such.type"}],
        "connections": [{"source": "start", "target": "mystery"}]});
    assert!(
        a.post("/workflows", &unknown_type)
            .await
            .error(400)
            .contains("mystery")
    );
    let cycle = json!({"name": "c", "nodes": [
        {"id": "start", "name": "Start", "type": "trigger.manual"},
        {"id": "x", "name": "X", "type": "flow.noop"},
        {"id": "y", "name": "Y", "type": "flow.noop"}],
        "connections": [{"source": "start", "target": "x"}, {"source": "x", "target": "y"}, {"source": "y", "target": "x"}]});
    a.post("/workflows", &cycle).await.error(400);
    assert!(
        a.post("/workflows", &hook_wf("m", json!({"method": "FETCH"})))
            .await
            .error(400)
            .contains("hook")
    );
    assert!(
        a.post("/workflows", &hook_wf("p", json!({"path": "a/b"})))
            .await
            .error(400)
            .contains("path")
    );

    // Webhook ids are unique across the installation: 409 on create and on update.
    a.create_workflow(&hook_wf("Shared", json!({"path": "shared-path"})))
        .await;
    let r = t
        .api("globex")
        .post(
            "/workflows",
            &hook_wf("Clash", json!({"path": "shared-path"})),
        )
        .await;
    r.error(409);
    let r = a
        .put(
            &format!("/workflows/{id}"),
            &hook_wf("Clash", json!({"path": "shared-path"})),
        )
        .await;
    r.error(409);
    assert_eq!(a.get(&format!("/workflows/{id}")).await.body["version"], 4);

    // Delete.
    assert_eq!(a.delete(&format!("/workflows/{id}")).await.status, 204);
    a.get(&format!("/workflows/{id}")).await.error(404);
    a.delete(&format!("/workflows/{id}")).await.error(404);
    a.put(&format!("/workflows/{id}"), &def).await.error(404);
    // Its webhook is gone with it.
    webhook(&t.anonymous(), &path, &json!({}), &[])
        .await
        .error(404);
    t.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_organizations_resources_are_404() {
    let t = TestServer::start().await;
    let acme = t.api("acme");
    let globex = t.api("globex");
    let wf = acme.create_workflow(&manual_wf("Mine")).await;
    let wf_id = id_of(&wf);
    let exec = acme.start(&wf_id, json!({"v": 1})).await;
    let exec_id = id_of(&exec);
    acme.wait_terminal(&exec_id).await;
    let cred = acme
        .post(
            "/credentials",
            &json!({"name": "c", "type": "bearer", "data": {"token": "t0k"}}),
        )
        .await;
    assert_eq!(cred.status, 201);
    let cred_id = id_of(&cred.body);

    globex.get(&format!("/workflows/{wf_id}")).await.error(404);
    globex
        .put(&format!("/workflows/{wf_id}"), &manual_wf("Theirs"))
        .await
        .error(404);
    globex
        .delete(&format!("/workflows/{wf_id}"))
        .await
        .error(404);
    globex
        .post("/executions", &json!({"workflowId": wf_id}))
        .await
        .error(404);
    for path in ["", "/logs", "/metrics"] {
        globex
            .get(&format!("/executions/{exec_id}{path}"))
            .await
            .error(404);
    }
    for action in ["cancel", "pause", "resume", "retry"] {
        globex
            .post(&format!("/executions/{exec_id}/{action}"), &json!({}))
            .await
            .error(404);
    }
    globex
        .delete(&format!("/credentials/{cred_id}"))
        .await
        .error(404);
    for path in ["/workflows", "/executions", "/credentials"] {
        let r = globex.get(path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.body["items"], json!([]), "{path}");
    }
    // Listing the executions of another organization's workflow names a foreign id: 404.
    globex
        .get(&format!("/executions/workflow/{wf_id}"))
        .await
        .error(404);
    assert_eq!(globex.get("/executions/statistics").await.body["total"], 0);
    // The owner still sees everything.
    assert_eq!(acme.get(&format!("/workflows/{wf_id}")).await.status, 200);
    assert_eq!(
        acme.get(&format!("/executions/{exec_id}")).await.status,
        200
    );
    assert_eq!(
        acme.get("/credentials").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_start_list_detail_logs_metrics_statistics() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let wf_id = id_of(&a.create_workflow(&manual_wf("Calc")).await);

    let e1 = a.start(&wf_id, json!({"v": 7})).await;
    assert_eq!(e1["workflowId"], wf_id.as_str());
    assert_eq!(e1["workflowVersion"], 1);
    assert_eq!(e1["mode"], "manual");
    assert_eq!(e1["userId"], "user-of-acme");
    let e1_id = id_of(&e1);
    let done = a.wait_terminal(&e1_id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["outputData"]["v"], 7, "{done}");
    assert_eq!(done["nodes"].as_array().unwrap().len(), 2, "{done}");
    assert!(
        done["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "success"),
        "{done}"
    );
    assert_eq!(done["progress"]["total"], 2);
    assert_eq!(done["progress"]["finished"], 2);
    assert_eq!(done["progress"]["percent"], 100.0);

    let r = a
        .post(
            "/executions",
            &json!({"workflowId": wf_id, "mode": "api", "inputData": {"v": 1}, "timeout": 60000}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let e2_id = id_of(&r.body);
    assert_eq!(r.body["mode"], "api");
    a.wait_terminal(&e2_id).await;

    // Bad start requests.
    for body in [
        json!({"workflowId": wf_id, "mode": "webhook"}),
        json!({"workflowId": wf_id, "mode": "sometimes"}),
        json!({"workflowId": wf_id, "timeout": 999}),
        json!({"workflowId": wf_id, "timeout": 3_600_001u64}),
        json!({"workflowId": wf_id, "timeout": "soon"}),
        json!({"workflowId": wf_id, "inputData": [1, 2]}),
        json!({"workflowId": wf_id, "extra": true}),
        json!({"mode": "manual"}),
        json!({"workflowId": 42}),
    ] {
        a.post("/executions", &body).await.error(400);
    }
    a.post_raw("/executions", "{\"workflowId\": ")
        .await
        .error(400);
    a.post("/executions", &json!({"workflowId": "no-such-workflow"}))
        .await
        .error(404);

    // Lists and filters.
    let all = a.get("/executions").await;
    assert_eq!(all.body["limit"], 20);
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(all.body["items"][0]["id"], e2_id.as_str(), "newest first");
    let api_only = a.get("/executions?mode=api").await;
    assert_eq!(api_only.body["items"].as_array().unwrap().len(), 1);
    let ok = a
        .get(&format!("/executions?status=success&workflowId={wf_id}"))
        .await;
    assert_eq!(ok.body["items"].as_array().unwrap().len(), 2);
    let future = a.get("/executions?startDate=2999-01-01T00:00:00Z").await;
    assert_eq!(future.body["items"], json!([]));
    let past = a
        .get("/executions?startDate=2000-01-01T00:00:00Z&endDate=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(past.body["items"].as_array().unwrap().len(), 2);
    let first = a.get("/executions?limit=1").await;
    let cursor = first.body["nextCursor"].as_str().expect("cursor");
    let second = a
        .get(&format!("/executions?limit=1&cursor={}", urlencode(cursor)))
        .await;
    assert_eq!(second.body["items"][0]["id"], e1_id.as_str());
    for q in [
        "status=bogus",
        "mode=bogus",
        "startDate=yesterday",
        "endDate=2026-13-45",
        "limit=0",
        "limit=101",
        "cursor=bogus",
    ] {
        a.get(&format!("/executions?{q}")).await.error(400);
    }
    let by_wf = a.get(&format!("/executions/workflow/{wf_id}")).await;
    assert_eq!(by_wf.body["items"].as_array().unwrap().len(), 2);
    a.get(&format!("/executions/workflow/{wf_id}?limit=500"))
        .await
        .error(400);
    a.get("/executions/no-such-execution").await.error(404);

    // Logs.
    let logs = a.get(&format!("/executions/{e1_id}/logs")).await;
    assert_eq!(logs.status, 200, "{logs:?}");
    assert_eq!(logs.body["limit"], 100);
    let items = logs.body["items"].as_array().unwrap().clone();
    assert!(!items.is_empty(), "an execution writes logs");
    assert!(items.iter().all(|l| l["executionId"] == e1_id.as_str()));
    assert!(items.iter().all(|l| l.get("organizationId").is_none()));
    let one = a.get(&format!("/executions/{e1_id}/logs?limit=1")).await;
    assert_eq!(one.body["items"].as_array().unwrap().len(), 1);
    if items.len() > 1 {
        let after = a
            .get(&format!(
                "/executions/{e1_id}/logs?after={}",
                items[0]["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(
            after.body["items"].as_array().unwrap().len(),
            items.len() - 1
        );
    }
    let node_logs = a.get(&format!("/executions/{e1_id}/logs?nodeId=set")).await;
    assert!(
        node_logs.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["nodeId"] == "set")
    );
    for q in ["limit=0", "limit=1001", "level=loud"] {
        a.get(&format!("/executions/{e1_id}/logs?{q}"))
            .await
            .error(400);
    }
    a.get("/executions/nope/logs").await.error(404);

    // Metrics and statistics.
    let m = a.get(&format!("/executions/{e1_id}/metrics")).await;
    assert_eq!(m.status, 200);
    assert_eq!(m.body["totalNodes"], 2);
    assert_eq!(m.body["successfulNodes"], 2);
    a.get("/executions/nope/metrics").await.error(404);
    let s = a.get("/executions/statistics").await;
    assert_eq!(s.status, 200, "{s:?}");
    assert_eq!(s.body["total"], 2);
    assert_eq!(s.body["byStatus"]["success"], 2);
    assert_eq!(s.body["byMode"]["api"], 1);
    assert_eq!(s.body["successRate"], 1.0);
    let none = a
        .get("/executions/statistics?startDate=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(none.body["total"], 0);
    a.get("/executions/statistics?startDate=soon")
        .await
        .error(400);

    // The workflow counts its executions.
    let wf = a.get(&format!("/workflows/{wf_id}")).await;
    assert_eq!(wf.body["executionCount"], 2);
    assert!(wf.body["lastExecutedAt"].is_string());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_cancel_pause_resume_retry() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let slow = id_of(&a.create_workflow(&waiting_wf(1500)).await);

    // Cancel.
    let e1 = id_of(&a.start(&slow, json!({})).await);
    a.wait_for(&e1, |e| e["status"] == "running").await;
    let r = a
        .post(&format!("/executions/{e1}/cancel"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "cancelled");
    for action in ["cancel", "pause", "resume"] {
        a.post(&format!("/executions/{e1}/{action}"), &json!({}))
            .await
            .error(409);
    }

    // Pause and resume.
    let e2 = id_of(&a.start(&slow, json!({})).await);
    a.wait_for(&e2, |e| e["status"] == "running").await;
    let r = a.post(&format!("/executions/{e2}/pause"), &json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "paused");
    a.post(&format!("/executions/{e2}/pause"), &json!({}))
        .await
        .error(409);
    // Retry needs a terminal execution.
    a.post(&format!("/executions/{e2}/retry"), &json!({}))
        .await
        .error(409);
    let r = a
        .post(&format!("/executions/{e2}/resume"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    a.post(&format!("/executions/{e2}/resume"), &json!({}))
        .await
        .error(409);
    let done = a.wait_terminal(&e2).await;
    assert_eq!(done["status"], "success", "{done}");

    // Retry and redrive of a failed execution.
    let failing = id_of(
        &a.create_workflow(&json!({
            "name": "Fails",
            "nodes": [
                {"id": "start", "name": "Start", "type": "trigger.manual"},
                {"id": "ok", "name": "Ok", "type": "data.set", "parameters": {"values": {"a": 1}}},
                {"id": "boom", "name": "Boom", "type": "flow.fail", "parameters": {"message": "boom"}}
            ],
            "connections": [{"source": "start", "target": "ok"}, {"source": "ok", "target": "boom"}]
        }))
        .await,
    );
    let e3 = id_of(&a.start(&failing, json!({"x": 1})).await);
    let failed = a.wait_terminal(&e3).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    // No body at all is allowed.
    let r = a
        .send(a.request(reqwest::Method::POST, &format!("/executions/{e3}/retry")))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["retryOf"], e3.as_str());
    assert_eq!(r.body["retryCount"], 1);
    assert_eq!(r.body["inputData"], json!({"x": 1}));
    let retried = a.wait_terminal(&id_of(&r.body)).await;
    assert_eq!(retried["status"], "failed");
    let r = a
        .post(
            &format!("/executions/{e3}/retry"),
            &json!({"fromFailedNode": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let redriven = a.wait_terminal(&id_of(&r.body)).await;
    assert_eq!(redriven["retryOf"], e3.as_str());
    a.post_raw(&format!("/executions/{e3}/retry"), "{oops")
        .await
        .error(400);
    a.post(
        &format!("/executions/{e3}/retry"),
        &json!({"fromFailedNode": "yes"}),
    )
    .await
    .error(400);
    a.post("/executions/nope/cancel", &json!({}))
        .await
        .error(404);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_return_the_same_execution() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let b = t.api("globex");
    let wf_a = id_of(&a.create_workflow(&manual_wf("A")).await);
    let wf_b = id_of(&b.create_workflow(&manual_wf("B")).await);
    let start = |api: &Api, wf: &str, key: &str| {
        let req = api
            .request(reqwest::Method::POST, "/executions")
            .header("Idempotency-Key", key)
            .json(&json!({"workflowId": wf}));
        let api = api.clone();
        async move { api.send(req).await }
    };
    let first = start(&a, &wf_a, "order-1").await;
    assert_eq!(first.status, 201);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = start(&a, &wf_a, "order-1").await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other_key = start(&a, &wf_a, "order-2").await;
    assert_ne!(other_key.body["id"], first.body["id"]);
    // Keys are scoped by organization.
    let other_org = start(&b, &wf_b, "order-1").await;
    assert_eq!(other_org.status, 201);
    assert_ne!(other_org.body["id"], first.body["id"]);
    start(&a, &wf_a, "has spaces").await.error(400);
    assert_eq!(count_executions(&a, &wf_a).await, 2);

    // Webhooks.
    a.create_workflow(&hook_wf("Hook", json!({"path": "idem"})))
        .await;
    let anon = t.anonymous();
    let key = [("Idempotency-Key", "evt-1".to_string())];
    let w1 = webhook(&anon, "idem", &json!({"n": 1}), &key).await;
    assert_eq!(w1.status, 202, "{w1:?}");
    let w2 = webhook(&anon, "idem", &json!({"n": 2}), &key).await;
    assert_eq!(w2.body["executionId"], w1.body["executionId"]);
    let w3 = webhook(&anon, "idem", &json!({"n": 3}), &[]).await;
    let w4 = webhook(&anon, "idem", &json!({"n": 3}), &[]).await;
    assert_ne!(w3.body["executionId"], w4.body["executionId"]);
    assert_ne!(w3.body["executionId"], w1.body["executionId"]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_method_status_alias_input_limits_and_last_node() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let anon = t.anonymous();
    let wf = a
        .create_workflow(&hook_wf("Orders", json!({"path": "orders"})))
        .await;
    let wf_id = id_of(&wf);

    let r = anon
        .send(
            anon.client
                .post(anon.url("/webhook/orders?src=test&tag=a&tag=b"))
                .header("x-custom", "yes")
                .header("content-type", "application/json")
                .body(r#"{"amount": 5}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let exec_id = r.body["executionId"]
        .as_str()
        .expect("executionId")
        .to_string();
    assert!(r.body["status"].is_string());
    let done = a.wait_terminal(&exec_id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["mode"], "webhook");
    let input = &done["inputData"];
    assert_eq!(input["body"], json!({"amount": 5}));
    assert_eq!(input["query"], json!({"src": "test", "tag": ["a", "b"]}));
    assert_eq!(input["method"], "POST");
    assert_eq!(input["path"], "/webhook/orders");
    assert_eq!(input["headers"]["x-custom"], "yes");
    assert_eq!(done["outputData"]["got"], json!({"amount": 5}), "{done}");

    // The alias, a text body.
    let r = anon
        .send(
            anon.client
                .post(anon.url("/webhook/handler/orders"))
                .body("hello"),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let done = a
        .wait_terminal(r.body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(done["inputData"]["body"], "hello");

    // Wrong method, unknown id, inactive workflows.
    let r = anon.get("/webhook/orders").await;
    r.error(405);
    assert_eq!(r.headers["allow"], "POST");
    webhook(&anon, "no-such-hook", &json!({}), &[])
        .await
        .error(404);
    let mut draft = hook_wf("Draft", json!({"path": "drafty"}));
    draft["status"] = json!("draft");
    a.create_workflow(&draft).await;
    webhook(&anon, "drafty", &json!({}), &[]).await.error(404);
    let mut inactive = hook_wf("Orders", json!({"path": "orders"}));
    inactive["status"] = json!("inactive");
    assert_eq!(
        a.put(&format!("/workflows/{wf_id}"), &inactive)
            .await
            .status,
        200
    );
    webhook(&anon, "orders", &json!({}), &[]).await.error(404);
    assert_eq!(
        a.put(
            &format!("/workflows/{wf_id}"),
            &hook_wf("Orders", json!({"path": "orders"}))
        )
        .await
        .status,
        200
    );

    // A 2 MiB body is refused and starts nothing.
    let before = count_executions(&a, &wf_id).await;
    let big = format!("{{\"blob\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let r = anon
        .send(anon.client.post(anon.url("/webhook/orders")).body(big))
        .await;
    r.error(413);
    assert_eq!(count_executions(&a, &wf_id).await, before);

    // responseMode: lastNode answers with the output.
    a.create_workflow(&example("hello-webhook.json")).await;
    let r = webhook(&anon, "hello", &json!({"name": "Ada"}), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["greeting"], "Hello, Ada!");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_hmac_standard_webhooks() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let anon = t.anonymous();
    let secret = format!("whsec_{}", B64.encode(rand_bytes()));
    let r = a
        .post(
            "/credentials",
            &json!({"name": "signing", "type": "hmacSecret", "data": {"secret": secret}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let wf_id = id_of(
        &a.create_workflow(&hook_wf(
            "Signed",
            json!({"path": "signed", "auth": {"type": "hmac", "credential": "signing"}}),
        ))
        .await,
    );
    let key = hmac_key(&secret).unwrap();
    let body = json!({"event": "paid"});
    let raw = body.to_string();
    let signed = |id: &str, ts: i64, key: &[u8]| {
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sign(key, id, ts, raw.as_bytes())),
        ]
    };

    let ok = webhook(&anon, "signed", &body, &signed("msg_1", now_secs(), &key)).await;
    assert_eq!(ok.status, 202, "{ok:?}");
    let done = a
        .wait_terminal(ok.body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "success");
    // Redelivery of the same message (same webhook-id) is the same execution.
    let again = webhook(&anon, "signed", &body, &signed("msg_1", now_secs(), &key)).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["executionId"], ok.body["executionId"]);

    let wrong_key = webhook(
        &anon,
        "signed",
        &body,
        &signed("msg_2", now_secs(), b"other key"),
    )
    .await;
    wrong_key.error(401);
    let stale = webhook(
        &anon,
        "signed",
        &body,
        &signed("msg_3", now_secs() - 301, &key),
    )
    .await;
    stale.error(401);
    let future = webhook(
        &anon,
        "signed",
        &body,
        &signed("msg_4", now_secs() + 301, &key),
    )
    .await;
    future.error(401);
    let unsigned = webhook(&anon, "signed", &body, &[]).await;
    unsigned.error(401);
    let mut tampered = signed("msg_5", now_secs(), &key);
    tampered[0].1 = "msg_6".into();
    webhook(&anon, "signed", &body, &tampered).await.error(401);
    // Several signatures, one of them valid (key rotation).
    let mut rotated = signed("msg_7", now_secs(), &key);
    rotated[2].1 = format!(
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {}",
        rotated[2].1
    );
    assert_eq!(webhook(&anon, "signed", &body, &rotated).await.status, 202);

    assert_eq!(
        count_executions(&a, &wf_id).await,
        2,
        "failures start nothing"
    );
    t.stop().await;
}

fn rand_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    let id = uuid::Uuid::new_v4();
    let id2 = uuid::Uuid::new_v4();
    out[..16].copy_from_slice(id.as_bytes());
    out[16..].copy_from_slice(id2.as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_header_auth() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let anon = t.anonymous();
    let token = format!("hook-{}", uuid::Uuid::new_v4());
    let cred = a
        .post(
            "/credentials",
            &json!({"name": "hook-token", "type": "httpHeader", "data": {"name": "X-Hook-Token", "value": token}}),
        )
        .await;
    assert_eq!(cred.status, 201);
    let wf_id = id_of(
        &a.create_workflow(&hook_wf(
            "Guarded",
            json!({"path": "guarded", "auth": {"type": "header", "name": "X-Hook-Token", "credential": id_of(&cred.body)}}),
        ))
        .await,
    );
    let ok = webhook(
        &anon,
        "guarded",
        &json!({"a": 1}),
        &[("x-hook-token", token.clone())],
    )
    .await;
    assert_eq!(ok.status, 202, "{ok:?}");
    let done = a
        .wait_terminal(ok.body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(done["inputData"]["headers"]["x-hook-token"], "[REDACTED]");
    assert!(!done.to_string().contains(&token));
    webhook(
        &anon,
        "guarded",
        &json!({}),
        &[("x-hook-token", format!("{token}x"))],
    )
    .await
    .error(401);
    webhook(&anon, "guarded", &json!({}), &[("x-other", token.clone())])
        .await
        .error(401);
    webhook(&anon, "guarded", &json!({}), &[]).await.error(401);
    assert_eq!(count_executions(&a, &wf_id).await, 1);
    t.stop().await;
}

/// Every file of the data folder, as bytes.
fn data_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_write_only_and_encrypted_at_rest() {
    let t = TestServer::start().await;
    let sink = Sink::start().await;
    let a = t.api("acme");
    let secret = format!("s3cr3t-{}", uuid::Uuid::new_v4());

    let r = a
        .post(
            "/credentials",
            &json!({"name": "api-token", "type": "bearer", "data": {"token": secret}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(!r.text.contains(&secret));
    assert!(r.body.get("data").is_none());
    assert_eq!(r.body["name"], "api-token");
    assert_eq!(r.body["type"], "bearer");
    let cred_id = id_of(&r.body);

    a.post(
        "/credentials",
        &json!({"name": "api-token", "type": "bearer", "data": {"token": "x"}}),
    )
    .await
    .error(409);
    let bad = a
        .post(
            "/credentials",
            &json!({"name": "b", "type": "bearer", "data": {"token": secret, "more": secret}}),
        )
        .await;
    assert!(!bad.error(400).contains(&secret));
    for body in [
        json!({"name": "b", "type": "password", "data": {"token": "x"}}),
        json!({"name": "b", "type": "bearer"}),
        json!({"name": "", "type": "bearer", "data": {"token": "x"}}),
        json!({"name": "b", "type": "httpBasic", "data": {"username": "u"}}),
        json!({"name": "b", "type": "hmacSecret", "data": {"secret": "whsec_!!"}}),
    ] {
        a.post("/credentials", &body).await.error(400);
    }
    a.post_raw("/credentials", "{").await.error(400);

    let list = a.get("/credentials").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert!(list.body["items"][0].get("data").is_none());
    assert!(!list.text.contains(&secret));
    a.get("/credentials?limit=0").await.error(400);

    // A node uses it: the sink sees the header, nothing else does.
    let wf_id = id_of(
        &a.create_workflow(&json!({
            "name": "Call",
            "nodes": [
                {"id": "start", "name": "Start", "type": "trigger.manual"},
                {"id": "call", "name": "Call", "type": "http.request",
                 "parameters": {"method": "POST", "url": sink.url("hook"),
                                "credential": "api-token", "body": {"hello": "world"}}}
            ],
            "connections": [{"source": "start", "target": "call"}]
        }))
        .await,
    );
    let exec_id = id_of(&a.start(&wf_id, json!({})).await);
    let done = a.wait_terminal(&exec_id).await;
    assert_eq!(done["status"], "success", "{done}");
    let calls = sink.calls("hook");
    assert_eq!(sink.total(), 1);
    assert_eq!(
        calls[0].headers["authorization"],
        format!("Bearer {secret}").as_str()
    );
    assert!(!done.to_string().contains(&secret), "{done}");
    let logs = a
        .get(&format!("/executions/{exec_id}/logs?limit=1000"))
        .await;
    assert!(!logs.text.contains(&secret));

    // The database holds it sealed only.
    let files = data_files(&t.data_dir());
    assert!(files.iter().any(|(n, _)| n.starts_with("weconnect.db")));
    for (name, bytes) in &files {
        assert!(
            !contains(bytes, secret.as_bytes()),
            "{name} holds the secret in clear"
        );
    }

    assert_eq!(
        a.delete(&format!("/credentials/{cred_id}")).await.status,
        204
    );
    a.delete(&format!("/credentials/{cred_id}"))
        .await
        .error(404);
    assert_eq!(a.get("/credentials").await.body["items"], json!([]));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_webhooks_make_two_hundred_executions() {
    let t = TestServer::start().await;
    let sink = Sink::start().await;
    let a = t.api("acme");
    let wf_id = id_of(
        &a.create_workflow(&json!({
            "name": "Fan in",
            "status": "active",
            "nodes": [
                {"id": "hook", "name": "Hook", "type": "trigger.webhook", "parameters": {"path": "fan-in"}},
                {"id": "call", "name": "Call", "type": "http.request",
                 "parameters": {"method": "POST", "url": sink.url("n"),
                                "body": {"n": "{{ trigger.body.n }}"}}}
            ],
            "connections": [{"source": "hook", "target": "call"}]
        }))
        .await,
    );
    let anon = t.anonymous();
    let replies = futures::future::join_all((0..200).map(|n| {
        let anon = anon.clone();
        async move { webhook(&anon, "fan-in", &json!({"n": n}), &[]).await }
    }))
    .await;
    let mut ids = BTreeSet::new();
    for r in &replies {
        assert_eq!(r.status, 202, "{r:?}");
        ids.insert(r.body["executionId"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 200);
    for id in &ids {
        let done = a.wait_terminal(id).await;
        assert_eq!(done["status"], "success", "{done}");
    }
    let calls = sink.calls("n");
    assert_eq!(sink.total(), 200, "each external call made once");
    let ns: BTreeSet<i64> = calls
        .iter()
        .map(|c| {
            serde_json::from_slice::<Value>(&c.body).unwrap()["n"]
                .as_i64()
                .expect("n")
        })
        .collect();
    assert_eq!(ns, (0..200).collect::<BTreeSet<i64>>());
    let stats = a.get("/executions/statistics").await;
    assert_eq!(stats.body["total"], 200);
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!(
                "/executions/workflow/{wf_id}?limit=100&cursor={}",
                urlencode(c)
            ),
            None => format!("/executions/workflow/{wf_id}?limit=100"),
        };
        let page = a.get(&path).await;
        seen += page.body["items"].as_array().unwrap().len();
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_once_per_tick_even_with_two_runners() {
    let t1 = TestServer::start().await;
    let t2 = t1.start_beside().await;
    let a = t1.api("acme");
    let def = json!({
        "name": "Every second",
        "status": "active",
        "nodes": [
            {"id": "tick", "name": "Tick", "type": "trigger.schedule", "parameters": {"rate": "1 second"}},
            {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"at": "{{ trigger.scheduledAt }}"}}}
        ],
        "connections": [{"source": "tick", "target": "set"}]
    });
    let wf_id = id_of(&a.create_workflow(&def).await);
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let mut off = def.clone();
    off["status"] = json!("inactive");
    assert_eq!(
        a.put(&format!("/workflows/{wf_id}"), &off).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let r = a
        .get(&format!("/executions/workflow/{wf_id}?limit=100"))
        .await;
    let items = r.body["items"].as_array().unwrap().clone();
    assert!(
        (2..=5).contains(&items.len()),
        "about one execution per second: {items:?}"
    );
    let mut ticks = BTreeSet::new();
    for e in &items {
        assert_eq!(e["mode"], "scheduled");
        let at = e["inputData"]["scheduledAt"].as_str().expect("scheduledAt");
        assert!(at.ends_with(".000Z"), "ticks on whole seconds: {at}");
        assert!(ticks.insert(at.to_string()), "tick {at} fired twice");
    }
    for e in &items {
        let done = a.wait_terminal(e["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "success");
        assert_eq!(done["outputData"]["at"], done["inputData"]["scheduledAt"]);
    }
    // Inactive: no more ticks.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(count_executions(&a, &wf_id).await, items.len());
    t2.stop().await;
    t1.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_and_body_limits() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let wf_id = id_of(&a.create_workflow(&manual_wf("M")).await);
    let e = id_of(&a.start(&wf_id, json!({})).await);
    a.wait_terminal(&e).await;

    let h = a.get("/monitoring/health").await;
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.body["status"], "ok");
    for k in ["ready", "delayed", "inFlight", "dead"] {
        assert!(h.body["queue"][k].is_u64(), "queue.{k}: {}", h.body);
    }
    for k in ["running", "pending", "stale"] {
        assert!(
            h.body["executions"][k].is_u64(),
            "executions.{k}: {}",
            h.body
        );
    }
    let m = a.get("/monitoring/metrics").await;
    assert_eq!(m.status, 200, "{m:?}");
    assert!(
        m.body["executionsStarted"].as_u64().unwrap() >= 1,
        "{}",
        m.body
    );
    assert!(m.body["executionsFinished"].is_object());
    assert!(m.body["nodesRun"].as_u64().unwrap() >= 2);
    assert!(m.body["nodeDurationMs"]["p99"].is_u64());
    assert_eq!(m.body["statistics"]["total"], 1);

    // API bodies over 1 MiB; workflow definitions over 4 MiB.
    let big = json!({"workflowId": wf_id, "inputData": "x".repeat(1_100_000)});
    a.post("/executions", &big).await.error(413);
    let big = json!({"name": "x".repeat(4_300_000), "nodes": []});
    a.post("/workflows", &big).await.error(413);
    let m = a
        .post(
            "/workflows",
            &json!({"name": "x".repeat(1_100_000), "nodes": []}),
        )
        .await
        .error(400);
    assert!(m.contains("256"), "{m}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_workflows_run() {
    let t = TestServer::start().await;
    let sink = Sink::start().await;
    let a = t.api("acme");
    let anon = t.anonymous();
    let mut order = example("order-alert.json");
    order["nodes"][2]["parameters"]["url"] = json!(sink.url("sales"));
    a.create_workflow(&order).await;

    let big = webhook(
        &anon,
        "order-alert",
        &json!({"orderId": "A1", "amount": 250}),
        &[],
    )
    .await;
    assert_eq!(big.status, 202, "{big:?}");
    let done = a
        .wait_terminal(big.body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "success", "{done}");
    let calls = sink.calls("sales");
    assert_eq!(sink.total(), 1);
    assert_eq!(
        serde_json::from_slice::<Value>(&calls[0].body).unwrap(),
        json!({"text": "Order A1: 250"})
    );

    let small = webhook(
        &anon,
        "order-alert",
        &json!({"orderId": "A2", "amount": 5}),
        &[],
    )
    .await;
    let done = a
        .wait_terminal(small.body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "success", "{done}");
    let notify = done["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["nodeId"] == "notify")
        .unwrap()
        .clone();
    assert_eq!(notify["status"], "skipped");
    assert_eq!(sink.total(), 1);

    let hb = a.create_workflow(&example("heartbeat-schedule.json")).await;
    assert_eq!(hb["status"], "draft");
    t.stop().await;
}

/// A child process killed when dropped (a failing test leaves nothing behind).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const JWT_SECRET: &str = "sigkill-test-secret-0123456789";

fn spawn_serve(data_dir: &std::path::Path, port: u16, log: &std::path::Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = std::process::Command::new(weconnect_binary())
        .arg("serve")
        .env("WECONNECT_DATA_DIR", data_dir)
        .env("WECONNECT_PORT", port.to_string())
        .env("WECONNECT_JWT_SECRET", JWT_SECRET)
        .env("WECONNECT_WORKERS", "2")
        .env("WECONNECT_CLEANUP_INTERVAL_MS", "500")
        .env("WECONNECT_HTTP_ALLOW_PRIVATE", "true")
        .env("RUST_LOG", "debug")
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("spawn weconnect serve");
    Child(child)
}

async fn wait_healthy(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("weconnect serve did not become healthy at {base}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_resumes_a_waiting_execution_after_restart() {
    let dir = weconnect::tempdir::TempDir::new("weconnect-sigkill").unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let sink = Sink::start().await;
    let token = weconnect_engine::http::JwtSecret::new(JWT_SECRET.as_bytes())
        .issue("u", "acme", 3600)
        .unwrap();
    let api = Api {
        client: reqwest::Client::new(),
        base: base.clone(),
        token: Some(token),
    };

    let mut child = spawn_serve(&data, port, &log);
    wait_healthy(&base).await;
    let secret = format!("kill-secret-{}", uuid::Uuid::new_v4());
    let cred = api
        .post(
            "/credentials",
            &json!({"name": "tok", "type": "bearer", "data": {"token": secret}}),
        )
        .await;
    assert_eq!(cred.status, 201, "{cred:?}");
    api.create_workflow(&json!({
        "name": "Slow",
        "status": "active",
        "nodes": [
            {"id": "hook", "name": "Hook", "type": "trigger.webhook", "parameters": {"path": "slow"}},
            {"id": "call", "name": "Call", "type": "http.request",
             "parameters": {"method": "POST", "url": sink.url("once"), "credential": "tok", "body": {"x": 1}}},
            {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": 2000}},
            {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"finished": true}}}
        ],
        "connections": [
            {"source": "hook", "target": "call"},
            {"source": "call", "target": "wait"},
            {"source": "wait", "target": "set"}
        ]
    }))
    .await;
    let r = webhook(&api, "slow", &json!({"go": true}), &[]).await;
    assert_eq!(r.status, 202, "{r:?}");
    let exec_id = r.body["executionId"].as_str().unwrap().to_string();
    // Wait until the HTTP call is done and the wait has begun, then kill -9.
    api.wait_for(&exec_id, |e| {
        e["nodes"].as_array().is_some_and(|ns| {
            ns.iter()
                .any(|n| n["nodeId"] == "call" && n["status"] == "success")
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    drop(child);

    let restarted = spawn_serve(&data, port, &log);
    wait_healthy(&base).await;
    let done = api.wait_terminal(&exec_id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["outputData"], json!({"finished": true}), "{done}");
    assert_eq!(
        sink.count("once"),
        1,
        "the HTTP node ran once across the crash"
    );
    drop(restarted);

    // The secret is in no log line and not in clear in the database.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("listening"),
        "the log captured the server: {text}"
    );
    assert!(!text.contains(&secret), "the server log holds the secret");
    for (name, bytes) in data_files(&data) {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{name} holds the secret"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_node_webhooks_answer_202_when_the_wait_runs_out_and_waiters_agree() {
    use weconnect_engine::http::{BroadcastWaiter, ExecutionWaiter, PollingWaiter};
    let t = TestServer::start_with(|s| {
        s.http_limits.last_node_wait = Duration::from_millis(200);
    })
    .await;
    let a = t.api("acme");
    a.create_workflow(&json!({
        "name": "Slow answer",
        "status": "active",
        "nodes": [
            {"id": "hook", "name": "Hook", "type": "trigger.webhook",
             "parameters": {"path": "slow-answer", "responseMode": "lastNode"}},
            {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": 800}},
            {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"late": true}}}
        ],
        "connections": [{"source": "hook", "target": "wait"}, {"source": "wait", "target": "set"}]
    }))
    .await;
    let r = webhook(&t.anonymous(), "slow-answer", &json!({}), &[]).await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.body["executionId"].as_str().unwrap().to_string();
    assert!(matches!(
        r.body["status"].as_str(),
        Some("pending" | "running")
    ));

    let server = t.server();
    let engine = server.engine();
    let broadcast = BroadcastWaiter::new(server.runtime.events.clone());
    let polling = PollingWaiter::default();
    let early = broadcast
        .wait_terminal(engine, "acme", &id, Duration::from_millis(20))
        .await
        .unwrap()
        .unwrap();
    assert!(!early.status.is_terminal());
    let (by_event, by_polling) = tokio::join!(
        broadcast.wait_terminal(engine, "acme", &id, Duration::from_secs(10)),
        polling.wait_terminal(engine, "acme", &id, Duration::from_secs(10)),
    );
    let (by_event, by_polling) = (by_event.unwrap().unwrap(), by_polling.unwrap().unwrap());
    assert_eq!(by_event.status.as_str(), "success");
    assert_eq!(by_polling.status.as_str(), "success");
    assert_eq!(by_event.output_data, Some(json!({"late": true})));
    // Another organization's execution is not found.
    assert!(
        polling
            .wait_terminal(engine, "globex", &id, Duration::from_millis(10))
            .await
            .unwrap()
            .is_none()
    );
    t.stop().await;
}

/// `weconnect bench` (the documented benchmark) runs end to end and reports every
/// execution finished; its figures are not asserted (a benchmark, not a timed test).
#[test]
fn the_bench_command_runs_and_reports_every_execution() {
    let out = std::process::Command::new(weconnect_binary())
        .args(["bench", "-n", "200", "-c", "8", "-w", "2"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run weconnect bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("200 executions (200 succeeded), concurrency 8, 2 workers"),
        "{stdout}"
    );
    for line in [
        "completed executions/s",
        "webhook latency",
        "start-to-finish",
    ] {
        assert!(stdout.contains(line), "no {line:?} in {stdout}");
    }
}

#[test]
fn the_map_bench_command_runs_every_child() {
    let out = std::process::Command::new(weconnect_binary())
        .args([
            "bench",
            "--map",
            "300",
            "--map-concurrency",
            "20",
            "-w",
            "2",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run weconnect bench --map");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench --map failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("flow.map over 300 items (300 succeeded), concurrency 20, 2 workers"),
        "{stdout}"
    );
    for line in ["parent completed in", "children/s", "resident memory"] {
        assert!(stdout.contains(line), "no {line:?} in {stdout}");
    }
    let refused = std::process::Command::new(weconnect_binary())
        .args(["bench", "--map", "10001"])
        .output()
        .expect("run weconnect bench --map");
    assert!(!refused.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limits_over_http() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let anon = t.anonymous();
    // Out of range: a 400 naming the setting, nothing saved.
    let mut def = hook_wf("Per customer", json!({"path": "per-customer"}));
    def["settings"] = json!({"concurrency": {"limit": 0}});
    let message = a.post("/workflows", &def).await.error(400);
    assert!(message.contains("settings.concurrency.limit"), "{message}");
    def["settings"] =
        json!({"concurrency": {"limit": 1, "key": "{{ trigger.body.customer }}", "x": 1}});
    a.post("/workflows", &def).await.error(400);
    assert_eq!(a.get("/workflows").await.body["items"], json!([]));

    // One at a time per customer: the second call for one customer waits, saying why.
    def["nodes"][1] = json!({"id": "set", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": 1500}});
    def["settings"] = json!({"concurrency": {"limit": 1, "key": "{{ trigger.body.customer }}"}});
    a.create_workflow(&def).await;
    let call = |customer: Value| {
        let anon = anon.clone();
        async move { webhook(&anon, "per-customer", &json!({"customer": customer}), &[]).await }
    };
    let first = call(json!("acme")).await;
    assert_eq!(first.status, 202, "{first:?}");
    let second = call(json!("acme")).await;
    let other = call(json!("globex")).await;
    let id =
        |r: &weconnect_tests::server::Reply| r.body["executionId"].as_str().unwrap().to_string();
    let d = a.get(&format!("/executions/{}", id(&second))).await.body;
    assert_eq!(d["status"], "pending", "{d}");
    assert_eq!(d["pendingReason"], "concurrency");
    assert_eq!(d["concurrencyKey"], "acme");
    let d = a.wait_for(&id(&other), |d| d["status"] == "running").await;
    assert_eq!(d["concurrencyKey"], "globex");
    let done = a.wait_terminal(&id(&second)).await;
    assert_eq!(done["status"], "success");
    assert_eq!(done.get("pendingReason"), None, "{done}");
    let first_done = a.wait_terminal(&id(&first)).await;
    assert!(
        done["startedAt"].as_str().unwrap() >= first_done["completedAt"].as_str().unwrap(),
        "the second started after the first ended"
    );
    // A key that cannot be evaluated: 400 naming the setting, nothing started.
    let before = count_executions(&a, &id_of(&a.get("/workflows").await.body["items"][0])).await;
    let refused = webhook(&anon, "per-customer", &json!({"no": "customer"}), &[]).await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .starts_with("settings.concurrency.key"),
        "{refused:?}"
    );
    let after = count_executions(&a, &id_of(&a.get("/workflows").await.body["items"][0])).await;
    assert_eq!(before, after);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_show_their_priority() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let anon = t.anonymous();
    let wf = id_of(&a.create_workflow(&manual_wf("Prioritized")).await);
    // Manual and api runs default to high.
    for mode in ["manual", "api"] {
        let r = a
            .post("/executions", &json!({"workflowId": wf, "mode": mode}))
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.body["priority"], "high");
    }
    let r = a
        .post("/executions", &json!({"workflowId": wf, "priority": "low"}))
        .await;
    assert_eq!(r.body["priority"], "low");
    let done = a.wait_terminal(&id_of(&r.body)).await;
    assert_eq!(done["priority"], "low");
    a.post(
        "/executions",
        &json!({"workflowId": wf, "priority": "urgent"}),
    )
    .await
    .error(400);
    // Webhook runs are normal.
    a.create_workflow(&hook_wf("Hooked", json!({"path": "prio"})))
        .await;
    let r = webhook(&anon, "prio", &json!({}), &[]).await;
    let d = a
        .get(&format!(
            "/executions/{}",
            r.body["executionId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(d.body["priority"], "normal");
    t.stop().await;
}
