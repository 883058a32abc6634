//! Regressions of the hardening report (issue 8): hostile or heavy input against the real
//! local server. Each test feeds the exact input of a finding and asserts the guarantee of
//! SPEC §5 it broke.

use serde_json::{Value, json};
use std::time::Duration;
use weconnect_tests::server::{Api, TestServer};

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

fn set_wf(name: &str, value: &str) -> Value {
    json!({
        "name": name,
        "nodes": [
            {"id": "start", "name": "Start", "type": "trigger.manual"},
            {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"v": value}}}
        ],
        "connections": [{"source": "start", "target": "set"}]
    })
}

/// manual trigger → flow.wait (long): an execution that only its deadline ends.
fn slow_wf() -> Value {
    json!({
        "name": "Slow",
        "nodes": [
            {"id": "start", "name": "Start", "type": "trigger.manual"},
            {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": 600000}}
        ],
        "connections": [{"source": "start", "target": "wait"}]
    })
}

async fn alive(api: &Api) {
    let r = api.get("/health").await;
    assert_eq!(r.status, 200, "the server must still answer: {r:?}");
}

/// Finding 1: expressions that overflowed the stack at validation are a 400 naming the
/// node and the limit, and the server stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_expressions_are_a_400_and_the_server_stays_up() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let forms = [
        format!("{{{{ {}1 }}}}", "-".repeat(20_000)),
        format!("{{{{ {}true }}}}", "not ".repeat(20_000)),
        format!("{{{{ -1{} }}}}", " | abs".repeat(20_000)),
        format!("{{{{ json{} }}}}", ".a".repeat(20_000)),
        format!("{{{{ 1{} }}}}", " + 1".repeat(100_000)),
    ];
    for value in &forms {
        let m = a
            .post("/workflows", &set_wf("Deep", value))
            .await
            .error(400);
        assert!(m.contains("\"set\""), "names the node: {m}");
        assert!(
            m.contains("more than 256") || m.contains("65536 bytes"),
            "names the limit: {m}"
        );
        alive(&a).await;
    }
    // The same through PUT, and a workflow at ordinary depth still works.
    let wf = a
        .create_workflow(&set_wf("Fine", "{{ -(-(1 + 2)) | abs }}"))
        .await;
    let m = a
        .put(
            &format!("/workflows/{}", id_of(&wf)),
            &set_wf("Deep", &forms[0]),
        )
        .await
        .error(400);
    assert!(m.contains("more than 256"), "{m}");
    let e = a.start(&id_of(&wf), json!({})).await;
    let done = a.wait_terminal(&id_of(&e)).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["outputData"], json!({"v": 3}));
    t.stop().await;
}

/// Finding 2: a body nested past the limit is refused at every entry with nothing started;
/// lists, logs and the cleanup run keep working for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_is_refused_at_every_entry_and_changes_nothing() {
    let t = TestServer::start().await;
    let attacker = t.api("victim-org");
    let other = t.api("other-org");
    let hook = attacker
        .create_workflow(&json!({
            "name": "Hook", "status": "active",
            "nodes": [
                {"id": "hook", "name": "Hook", "type": "trigger.webhook", "parameters": {"path": "deep-hook"}},
                {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"got": "{{ trigger.body }}"}}}
            ],
            "connections": [{"source": "hook", "target": "set"}]
        }))
        .await;
    // Another organization's execution whose deadline must hold meanwhile.
    let slow = other.create_workflow(&slow_wf()).await;
    let timed = other
        .post(
            "/executions",
            &json!({"workflowId": id_of(&slow), "timeout": 1500}),
        )
        .await;
    assert_eq!(timed.status, 201, "{timed:?}");

    // The 252-byte anonymous call of the report: 126 levels.
    let deep = format!("{}{}", "[".repeat(126), "]".repeat(126));
    assert_eq!(deep.len(), 252);
    let r = t
        .anonymous()
        .post_raw("/webhook/deep-hook", deep.clone())
        .await;
    let m = r.error(400);
    assert!(m.contains("126 levels") && m.contains("64"), "{m}");
    // API bodies: the same nesting as inputData, and past serde_json's own limit.
    for depth in [65, 126, 5000] {
        let body = format!(
            r#"{{"workflowId": "{}", "inputData": {}{}}}"#,
            id_of(&hook),
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let m = attacker.post_raw("/executions", body).await.error(400);
        assert!(m.contains("levels deep"), "{m}");
    }
    // Nothing was started.
    let list = attacker
        .get(&format!("/executions/workflow/{}", id_of(&hook)))
        .await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.body["items"], json!([]));

    // Within the limit, a webhook body is taken and its execution runs.
    let ok = format!("{}1{}", "[".repeat(60), "]".repeat(60));
    let r = t.anonymous().post_raw("/webhook/deep-hook", ok).await;
    assert_eq!(r.status, 202, "{r:?}");
    let e = attacker
        .wait_terminal(r.body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(e["status"], "success", "{e}");

    // Every list route answers for the organization.
    for path in [
        "/executions".to_string(),
        format!("/executions/workflow/{}", id_of(&hook)),
        format!("/executions/{}", e["id"].as_str().unwrap()),
        format!("/executions/{}/logs", e["id"].as_str().unwrap()),
        "/workflows".to_string(),
    ] {
        let r = attacker.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    // The other organization's deadline held (deadline + one cleanup interval of 0.5 s).
    let done = other.wait_terminal(&id_of(&timed.body)).await;
    assert_eq!(done["status"], "timeout", "{done}");
    t.stop().await;
}

/// Finding 2, second half: a document stored before the limit existed (nested past
/// serde_json's 128 levels once wrapped) is read back; its execution fails with a clear
/// message, and neither the lists nor the cleanup run stop for anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_stored_before_the_limit_are_read_back_and_fail_cleanly() {
    use weconnect_engine::model::{
        Execution, ExecutionMetrics, ExecutionMode, ExecutionStatus, NodeRun, Timestamp,
    };
    use weconnect_engine::ports::{ExecutionStore, JobQueue};

    let t = TestServer::start().await;
    let victim = t.api("victim-org");
    let other = t.api("other-org");
    let wf = victim.create_workflow(&set_wf("Old", "{{ json }}")).await;
    let slow = other.create_workflow(&slow_wf()).await;
    let timed = other
        .post(
            "/executions",
            &json!({"workflowId": id_of(&slow), "timeout": 1500}),
        )
        .await;
    assert_eq!(timed.status, 201, "{timed:?}");

    // Written as an older build would have: the webhook input of the report, 126 levels.
    let (store, queue) =
        weconnect_engine::adapters::sqlite::open(&t.data_dir()).expect("open the same file");
    let deep: Value =
        serde_json::from_str(&format!("{}{}", "[".repeat(126), "]".repeat(126))).unwrap();
    let now = Timestamp::from(chrono::Utc::now());
    let exec = Execution {
        id: weconnect_engine::model::new_id(),
        workflow_id: id_of(&wf),
        workflow_version: 1,
        user_id: "u".into(),
        organization_id: "victim-org".into(),
        status: ExecutionStatus::Pending,
        mode: ExecutionMode::Webhook,
        input_data: json!({"body": deep}),
        output_data: None,
        started_at: None,
        completed_at: None,
        duration: 0,
        error_message: None,
        error_details: None,
        retry_count: 0,
        retry_of: None,
        nodes_executed: 0,
        nodes_failed: 0,
        metrics: ExecutionMetrics::default(),
        deadline: now.plus(Duration::from_secs(60)),
        created_at: now,
        start_node_id: "start".into(),
        parent_execution_id: None,
        parent_node_id: None,
        item_index: None,
        depth: 0,
        inline_of: None,
        pending_reason: None,
        concurrency_key: None,
        throttle_key: None,
        debounce_key: None,
        priority: Default::default(),
        data_saved: true,
    };
    let mut first = NodeRun::new(&exec.id, "start");
    first.ready = true;
    store
        .create_execution_with_runs(&exec, &[first], None, now)
        .await
        .unwrap();
    queue
        .send(
            &[weconnect_engine::model::Job {
                execution_id: exec.id.clone(),
                organization_id: "victim-org".into(),
                node_id: "start".into(),
                attempt: 1,
                workflow_id: None,
                workflow_version: None,
                heartbeat: None,
                inline_of: None,
                not_before: None,
                priority: None,
            }],
            Duration::ZERO,
        )
        .await
        .unwrap();

    let done = victim.wait_terminal(&exec.id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let message = done["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("nested") && message.contains("64"),
        "a clear message: {message}"
    );
    for path in [
        "/executions".to_string(),
        format!("/executions/workflow/{}", id_of(&wf)),
        format!("/executions/{}/logs", exec.id),
    ] {
        let r = victim.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    let done = other.wait_terminal(&id_of(&timed.body)).await;
    assert_eq!(done["status"], "timeout", "{done}");
    t.stop().await;
}

/// The gaps where the product chose the lenient side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ids_cursors_names_and_health_are_strict() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let b = t.api("globex");
    let wf = a.create_workflow(&set_wf("Mine", "{{ 1 }}")).await;
    let slow = a.create_workflow(&slow_wf()).await;
    let e = a.start(&id_of(&wf), json!({})).await;
    a.wait_terminal(&id_of(&e)).await;
    a.start(&id_of(&slow), json!({})).await;

    // Another organization's workflow: 404, like every foreign id; unknown too.
    b.get(&format!("/executions/workflow/{}", id_of(&wf)))
        .await
        .error(404);
    b.get("/executions/workflow/nope").await.error(404);
    // A deleted workflow of one's own keeps its executions listable.
    assert_eq!(
        a.delete(&format!("/workflows/{}", id_of(&wf))).await.status,
        204
    );
    let r = a.get(&format!("/executions/workflow/{}", id_of(&wf))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);

    // Health counts the caller's executions only (the queue stays installation-wide).
    let mine = a.get("/monitoring/health").await;
    let theirs = b.get("/monitoring/health").await;
    let unfinished = |r: &weconnect_tests::server::Reply| {
        ["running", "pending", "paused"]
            .iter()
            .map(|k| r.body["executions"][k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(unfinished(&mine), 1, "{}", mine.body);
    assert_eq!(unfinished(&theirs), 0, "{}", theirs.body);

    // A malformed log cursor is a 400, a real one works.
    let logs = format!("/executions/{}/logs", id_of(&e));
    let m = a.get(&format!("{logs}?after=garbage")).await.error(400);
    assert!(m.contains("after"), "{m}");
    let page = a.get(&format!("{logs}?limit=1")).await;
    let cursor = page.body["nextCursor"].as_str().unwrap().to_string();
    assert_eq!(a.get(&format!("{logs}?after={cursor}")).await.status, 200);

    // Names and descriptions are bounded.
    let mut long = set_wf(&"n".repeat(50_000), "{{ 1 }}");
    let m = a.post("/workflows", &long).await.error(400);
    assert!(m.contains("256"), "{m}");
    long["name"] = json!("ok");
    long["description"] = json!("d".repeat(5_000));
    let m = a.post("/workflows", &long).await.error(400);
    assert!(m.contains("4096"), "{m}");
    long["description"] = json!("d".repeat(4_096));
    long["nodes"][1]["name"] = json!("x".repeat(300));
    let m = a.post("/workflows", &long).await.error(400);
    assert!(m.contains("256"), "{m}");
    t.stop().await;
}

/// Finding 3: the report's 10,000-node fan-out with a join runs to the end on the local
/// server, while another organization's deadline still holds (deadline + one cleanup
/// interval, with slack for a loaded machine); one node more than the limit is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_node_fan_out_finishes_and_deadlines_hold_meanwhile() {
    let t = TestServer::start().await;
    let heavy = t.api("heavy-org");
    let other = t.api("other-org");
    let wide = |width: usize| {
        let mut nodes = vec![json!({"id": "start", "name": "Start", "type": "trigger.manual"})];
        let mut connections = Vec::new();
        for i in 0..width {
            let id = format!("n{i}");
            nodes.push(json!({"id": id, "name": id, "type": "flow.noop"}));
            connections.push(json!({"source": "start", "target": id}));
            connections.push(json!({"source": id, "target": "join"}));
        }
        nodes.push(json!({"id": "join", "name": "Join", "type": "flow.noop"}));
        json!({"name": "Wide", "nodes": nodes, "connections": connections})
    };
    let m = heavy.post("/workflows", &wide(9_999)).await.error(400);
    assert!(m.contains("10001 nodes") && m.contains("10000"), "{m}");
    let wf = heavy.create_workflow(&wide(9_998)).await;
    let slow = other.create_workflow(&slow_wf()).await;
    let started = std::time::Instant::now();
    let big = heavy.start(&id_of(&wf), json!({})).await;
    let timed = other
        .post(
            "/executions",
            &json!({"workflowId": id_of(&slow), "timeout": 2000}),
        )
        .await;
    assert_eq!(timed.status, 201, "{timed:?}");
    // Deadline 2 s, cleanup every 0.5 s: `timeout` well before the fan-out is done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = other
            .get(&format!("/executions/{}", id_of(&timed.body)))
            .await;
        if r.body["status"] == "timeout" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other organization's execution is still {} after 10 s",
            r.body["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(300);
    let done = loop {
        let r = heavy
            .get(&format!("/executions/{}/metrics", id_of(&big)))
            .await;
        let e = heavy
            .get(&format!("/executions?workflowId={}", id_of(&wf)))
            .await;
        let status = e.body["items"][0]["status"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if matches!(
            status.as_str(),
            "success" | "failed" | "timeout" | "cancelled"
        ) {
            break (status, r.body);
        }
        assert!(tokio::time::Instant::now() < until, "fan-out not done");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "10,000-node fan-out with a join through the server: {:?}",
        started.elapsed()
    );
    assert_eq!(done.0, "success");
    assert_eq!(done.1["successfulNodes"], 10_000);
    t.stop().await;
}
