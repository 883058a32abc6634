//! The conformance scenarios of the execution protocol, written against the ports only.
//! `backend_scenarios!` instantiates every one of them for a backend.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weconnect_engine::EngineConfig;
use weconnect_engine::model::{ExecutionStatus, NodeRunStatus};
use weconnect_engine::ports::Claim;
use weconnect_tests::backend::{Backend, test_config};
use weconnect_tests::harness::{Fault, FaultyQueue, Harness, attempts, output, status};

const LONG: Duration = Duration::from_secs(20);

fn trigger() -> Value {
    json!({"id": "start", "name": "Start", "type": "trigger.manual"})
}

fn http(id: &str, url: &str) -> Value {
    json!({"id": id, "name": id, "type": "http.request",
           "parameters": {"method": "POST", "url": url, "body": {"from": id, "input": "{{ json }}"}},
           "retry": {"maxAttempts": 1}})
}

fn set(id: &str, values: Value) -> Value {
    json!({"id": id, "name": id, "type": "data.set", "parameters": {"values": values}})
}

fn conn(source: &str, target: &str) -> Value {
    json!({"source": source, "target": target})
}

fn typed(source: &str, target: &str, kind: &str) -> Value {
    json!({"source": source, "target": target, "type": kind})
}

/// Succeeded, failed and skipped nodes (dead paths included) all carry `finishedAt`.
fn every_finished_node_has_a_finish_time(d: &weconnect_engine::engine::ExecutionDetail) {
    for n in &d.nodes {
        if n.status.is_finished() {
            assert!(
                n.finished_at.is_some(),
                "{} has no finishedAt: {n:?}",
                n.node_id
            );
        }
    }
}

pub async fn linear_chain(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let mut nodes = vec![
        trigger(),
        set("s1", json!({"n": "{{ trigger.start + 1 }}"})),
    ];
    let mut conns = vec![conn("start", "s1")];
    for i in 2..=5 {
        nodes.push(set(
            &format!("s{i}"),
            json!({"n": format!("{{{{ json.n + {i} }}}}")}),
        ));
        conns.push(conn(&format!("s{}", i - 1), &format!("s{i}")));
    }
    nodes.push(http("call", &h.sink.url("/chain")));
    conns.push(conn("s5", "call"));
    let wf = h
        .workflow(json!({"name": "chain", "nodes": nodes, "connections": conns}))
        .await;
    let exec = h.start(&wf, json!({"start": 10})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    assert_eq!(output(&d, "s5"), json!({"n": 10 + 1 + 2 + 3 + 4 + 5}));
    assert_eq!(h.sink.count("/chain"), 1);
    let sent: Value = serde_json::from_slice(&h.sink.calls("/chain")[0].body).unwrap();
    assert_eq!(sent["input"], json!({"n": 25}));
    assert_eq!(d.execution.metrics.total_nodes, 7);
    assert_eq!(d.execution.metrics.successful_nodes, 7);
    assert_eq!(d.execution.nodes_executed, 7);
    assert_eq!(d.progress.percent, 100.0);
    assert!(d.execution.output_data.is_some());
    assert!(d.execution.duration > 0 || d.execution.completed_at.is_some());
    // A log at every node start and finish, with the node's step, type and name.
    let logs = h.logs(&exec.id).await;
    for (step, node) in ["start", "s1", "s2", "s3", "s4", "s5", "call"]
        .iter()
        .enumerate()
    {
        let of_node: Vec<_> = logs
            .iter()
            .filter(|l| l.node_id.as_deref() == Some(*node))
            .collect();
        assert!(of_node.len() >= 2, "logs of {node}: {of_node:?}");
        let name = wf.node(node).map(|n| n.name.clone());
        assert!(
            of_node
                .iter()
                .all(|l| l.execution_step == step as u32 + 1 && l.node_name == name),
            "{of_node:?}"
        );
    }
    h.stop_workers().await;
}

pub async fn if_true_false(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let wf = h
        .workflow(json!({"name": "if", "nodes": [
            trigger(),
            {"id": "big", "name": "Big?", "type": "logic.if", "parameters": {"condition": "{{ json.amount > 100 }}"}},
            http("yes", &h.sink.url("/yes")),
            http("no", &h.sink.url("/no")),
        ], "connections": [conn("start", "big"), typed("big", "yes", "true"), typed("big", "no", "false")]}))
        .await;
    let high = h.start(&wf, json!({"amount": 150})).await;
    let low = h.start(&wf, json!({"amount": 5})).await;
    let d = h.wait_terminal(&high.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success);
    assert_eq!(output(&d, "big"), json!({"result": true}));
    assert_eq!(status(&d, "yes"), "success");
    assert_eq!(status(&d, "no"), "skipped");
    let d = h.wait_terminal(&low.id, LONG).await;
    assert_eq!(status(&d, "yes"), "skipped");
    assert_eq!(status(&d, "no"), "success");
    assert_eq!((h.sink.count("/yes"), h.sink.count("/no")), (1, 1));
    every_finished_node_has_a_finish_time(&d);
    h.stop_workers().await;
}

pub async fn switch_with_fallback(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let wf = h
        .workflow(json!({"name": "switch", "nodes": [
            trigger(),
            {"id": "sw", "name": "Size", "type": "logic.switch", "parameters": {"rules": [
                {"name": "big", "condition": "{{ json.n > 10 }}"},
                {"name": "mid", "condition": "{{ json.n > 5 }}"}
            ]}},
            set("b", json!({"size": "big"})), set("m", json!({"size": "mid"})), set("f", json!({"size": "small"})),
        ], "connections": [conn("start", "sw"), typed("sw", "b", "big"), typed("sw", "m", "mid"), typed("sw", "f", "fallback")]}))
        .await;
    for (n, winner) in [(20, "b"), (7, "m"), (1, "f")] {
        let exec = h.start(&wf, json!({"n": n})).await;
        let d = h.wait_terminal(&exec.id, LONG).await;
        assert_eq!(d.execution.status, ExecutionStatus::Success);
        for node in ["b", "m", "f"] {
            assert_eq!(
                status(&d, node),
                if node == winner { "success" } else { "skipped" },
                "n={n} node={node}"
            );
        }
    }
    h.stop_workers().await;
}

fn diamond(h: &Harness) -> Value {
    json!({"name": "diamond", "nodes": [
        trigger(), http("a", &h.sink.url("/a")), http("b", &h.sink.url("/b")),
        {"id": "join", "name": "Join", "type": "flow.merge"},
        http("after", &h.sink.url("/after")),
    ], "connections": [conn("start", "a"), conn("start", "b"), conn("a", "join"), conn("b", "join"), conn("join", "after")]})
}

pub async fn diamond_join_runs_once(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(4);
    let wf = h.workflow(diamond(&h)).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(h.start(&wf, json!({"i": i})).await.id);
    }
    for id in &ids {
        let d = h.wait_terminal(id, LONG).await;
        assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
        let joined = output(&d, "join");
        assert!(
            joined.get("a").is_some() && joined.get("b").is_some(),
            "{joined}"
        );
        assert_eq!(attempts(&d, "join"), 1);
    }
    assert_eq!(h.sink.count("/after"), 5, "the join ran once per execution");
    assert_eq!(h.sink.count("/a"), 5);
    h.stop_workers().await;
}

pub async fn join_with_a_skipped_branch(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let wf = h
        .workflow(json!({"name": "half", "nodes": [
            trigger(),
            {"id": "cond", "name": "Cond", "type": "logic.if", "parameters": {"condition": "{{ json.go }}"}},
            set("a", json!({"a": 1})), set("b", json!({"b": 2})),
            {"id": "join", "name": "Join", "type": "flow.merge"},
            http("after", &h.sink.url("/after")),
            set("dead", json!({"never": true})),
        ], "connections": [conn("start", "cond"), typed("cond", "a", "true"), typed("cond", "b", "false"),
                            conn("a", "join"), conn("b", "join"), conn("join", "after"), conn("b", "dead")]}))
        .await;
    let exec = h.start(&wf, json!({"go": true})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success);
    assert_eq!(status(&d, "b"), "skipped");
    assert_eq!(status(&d, "dead"), "skipped", "the skip propagates");
    assert_eq!(status(&d, "join"), "success");
    assert_eq!(output(&d, "join"), json!({"a": {"a": 1}}));
    assert_eq!(h.sink.count("/after"), 1);
    assert_eq!(d.execution.metrics.skipped_nodes, 2);
    every_finished_node_has_a_finish_time(&d);
    h.stop_workers().await;
}

pub async fn error_connection_takes_a_500(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    h.sink.always("/broken", 500);
    let wf = h
        .workflow(json!({"name": "err", "nodes": [
            trigger(), http("call", &h.sink.url("/broken")),
            http("handler", &h.sink.url("/handler")), http("next", &h.sink.url("/next")),
        ], "connections": [conn("start", "call"), typed("call", "handler", "error"), conn("call", "next")]}))
        .await;
    let exec = h.start(&wf, json!({})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(
        d.execution.status,
        ExecutionStatus::Success,
        "errorOutput is the default with an error connection"
    );
    assert_eq!(status(&d, "call"), "failed");
    assert_eq!(status(&d, "handler"), "success");
    assert_eq!(status(&d, "next"), "skipped");
    let err = output(&d, "call");
    assert_eq!(err["error"], json!(true));
    assert_eq!(err["success"], json!(false));
    assert_eq!(err["errorKind"], json!("http5xx"));
    assert_eq!(err["statusCode"], json!(500));
    let handled: Value = serde_json::from_slice(&h.sink.calls("/handler")[0].body).unwrap();
    assert_eq!(
        handled["input"]["statusCode"],
        json!(500),
        "the error output is the handler's input"
    );
    assert_eq!(d.execution.nodes_failed, 1);
    h.stop_workers().await;
}

pub async fn on_error_continue_goes_along_main(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(1);
    h.sink.always("/broken", 503);
    let mut call = http("call", &h.sink.url("/broken"));
    call["onError"] = json!("continue");
    let wf = h
        .workflow(
            json!({"name": "cont", "nodes": [trigger(), call, http("next", &h.sink.url("/next"))],
                         "connections": [conn("start", "call"), conn("call", "next")]}),
        )
        .await;
    let d = h
        .wait_terminal(&h.start(&wf, json!({})).await.id, LONG)
        .await;
    assert_eq!(d.execution.status, ExecutionStatus::Success);
    assert_eq!(status(&d, "next"), "success");
    h.stop_workers().await;
}

pub async fn retries_then_success(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    h.sink.script("/flaky", &[500, 503]);
    let mut call = http("call", &h.sink.url("/flaky"));
    call["retry"] = json!({"maxAttempts": 3, "backoff": "fixed", "baseDelayMs": 300});
    let wf = h
        .workflow(json!({"name": "retry", "nodes": [trigger(), call], "connections": [conn("start", "call")]}))
        .await;
    let exec = h.start(&wf, json!({})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    assert_eq!(attempts(&d, "call"), 3);
    let calls = h.sink.calls("/flaky");
    assert_eq!(calls.len(), 3);
    for pair in calls.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(280),
            "backoff not respected: {gap:?}"
        );
    }
    let logs = h.logs(&exec.id).await;
    assert_eq!(
        logs.iter()
            .filter(|l| l.message.contains("retrying"))
            .count(),
        2,
        "{logs:#?}"
    );
    h.stop_workers().await;
}

pub async fn retries_exhausted_fail_naming_the_node(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    h.sink.always("/down", 502);
    let mut call = http("call", &h.sink.url("/down"));
    call["retry"] = json!({"maxAttempts": 2, "baseDelayMs": 50});
    let wf = h
        .workflow(
            json!({"name": "down", "nodes": [trigger(), call, set("after", json!({}))],
                         "connections": [conn("start", "call"), conn("call", "after")]}),
        )
        .await;
    let d = h
        .wait_terminal(&h.start(&wf, json!({})).await.id, LONG)
        .await;
    assert_eq!(d.execution.status, ExecutionStatus::Failed);
    assert_eq!(h.sink.count("/down"), 2);
    let details = d.execution.error_details.clone().unwrap_or_default();
    assert_eq!(details["nodeId"], json!("call"));
    assert_eq!(details["errorKind"], json!("http5xx"));
    assert!(
        d.execution
            .error_message
            .as_deref()
            .unwrap_or_default()
            .contains("call")
    );
    assert_eq!(status(&d, "after"), "cancelled");
    h.stop_workers().await;
}

pub async fn timeout(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    // The wait outlasts the deadline by 3 s, so the cleanup run (which on DynamoDB walks 64
    // shards of the unfinished index, slow on a loaded moto) gets there first.
    let wf = h
        .workflow(json!({"name": "slow", "nodes": [
            trigger(), {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": 4000}},
            http("after", &h.sink.url("/after")),
        ], "connections": [conn("start", "wait"), conn("wait", "after")]}))
        .await;
    let started = std::time::Instant::now();
    let exec = h.start_with_timeout(&wf, json!({}), Some(1000)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = h.engine.sweep().await.expect("sweep");
    assert!(report.timed_out >= 1, "{report:?}");
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Timeout);
    // The wait's job still arrives (after 4 s); nothing runs after it.
    tokio::time::sleep(Duration::from_millis(4800).saturating_sub(started.elapsed())).await;
    assert_eq!(h.sink.count("/after"), 0);
    assert_eq!(h.execution(&exec.id).await.status, ExecutionStatus::Timeout);
    h.stop_workers().await;
}

pub async fn deadline_enforced_by_the_worker(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(1);
    let wf = h
        .workflow(json!({"name": "slow", "nodes": [
            trigger(), {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": 1200}},
            http("after", &h.sink.url("/after")),
        ], "connections": [conn("start", "wait"), conn("wait", "after")]}))
        .await;
    let exec = h.start_with_timeout(&wf, json!({}), Some(1000)).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Timeout);
    assert_eq!(h.sink.count("/after"), 0);
    h.stop_workers().await;
}

fn wait_then_call(h: &Harness, ms: u64) -> Value {
    json!({"name": "wait", "nodes": [
        trigger(), {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": ms}},
        http("after", &h.sink.url("/after")),
    ], "connections": [conn("start", "wait"), conn("wait", "after")]})
}

pub async fn cancel_during_a_wait(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let wf = h.workflow(wait_then_call(&h, 600)).await;
    let exec = h.start(&wf, json!({})).await;
    h.wait_until(&exec.id, LONG, "waiting", |d| {
        d.nodes
            .iter()
            .any(|n| n.node_id == "wait" && n.started_at.is_some())
    })
    .await;
    let cancelled = h
        .engine
        .cancel_execution(&h.who, &exec.id)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, ExecutionStatus::Cancelled);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(h.sink.count("/after"), 0, "the next node never runs");
    let d = h.detail(&exec.id).await;
    assert_eq!(
        d.execution.status,
        ExecutionStatus::Cancelled,
        "status never changes again"
    );
    assert_eq!(status(&d, "after"), "cancelled");
    // Lifecycle moves from a terminal status are conflicts.
    assert!(matches!(
        h.engine.cancel_execution(&h.who, &exec.id).await,
        Err(weconnect_engine::EngineError::Conflict(_))
    ));
    assert!(matches!(
        h.engine.resume_execution(&h.who, &exec.id).await,
        Err(weconnect_engine::EngineError::Conflict(_))
    ));
    h.stop_workers().await;
}

pub async fn pause_then_resume(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let wf = h.workflow(wait_then_call(&h, 300)).await;
    let exec = h.start(&wf, json!({})).await;
    h.wait_until(&exec.id, LONG, "waiting", |d| {
        d.nodes
            .iter()
            .any(|n| n.node_id == "wait" && n.started_at.is_some())
    })
    .await;
    let paused = h
        .engine
        .pause_execution(&h.who, &exec.id)
        .await
        .expect("pause");
    assert_eq!(paused.status, ExecutionStatus::Paused);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(h.sink.count("/after"), 0, "nothing runs while paused");
    assert_eq!(h.execution(&exec.id).await.status, ExecutionStatus::Paused);
    let resumed = h
        .engine
        .resume_execution(&h.who, &exec.id)
        .await
        .expect("resume");
    assert_eq!(resumed.status, ExecutionStatus::Running);
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    assert_eq!(h.sink.count("/after"), 1);
    h.stop_workers().await;
}

pub async fn retry_and_redrive_from_the_failed_node(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    h.sink.script("/second", &[500]);
    let wf = h
        .workflow(json!({"name": "redrive", "nodes": [
            trigger(), http("first", &h.sink.url("/first")), http("second", &h.sink.url("/second")),
            set("last", json!({"done": "{{ nodes.first.output.statusCode }}"})),
        ], "connections": [conn("start", "first"), conn("first", "second"), conn("second", "last")]}))
        .await;
    let failed = h
        .wait_terminal(&h.start(&wf, json!({"k": 1})).await.id, LONG)
        .await;
    assert_eq!(failed.execution.status, ExecutionStatus::Failed);
    assert_eq!((h.sink.count("/first"), h.sink.count("/second")), (1, 1));

    let redriven = h
        .engine
        .retry_execution(&h.who, &failed.execution.id, true)
        .await
        .expect("redrive");
    assert_eq!(
        redriven.retry_of.as_deref(),
        Some(failed.execution.id.as_str())
    );
    assert_eq!(redriven.retry_count, 1);
    let d = h.wait_terminal(&redriven.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    assert_eq!(
        h.sink.count("/first"),
        1,
        "a succeeded upstream node is not called again"
    );
    assert_eq!(h.sink.count("/second"), 2);
    assert_eq!(
        output(&d, "last"),
        json!({"done": 200}),
        "copied outputs are visible downstream"
    );
    assert_eq!(d.execution.input_data, json!({"k": 1}));

    // A plain retry runs everything again.
    let again = h
        .engine
        .retry_execution(&h.who, &redriven.id, false)
        .await
        .expect("retry");
    assert_eq!(again.retry_count, 2);
    let d = h.wait_terminal(&again.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success);
    assert_eq!(h.sink.count("/first"), 2);
    h.stop_workers().await;
}

pub async fn every_job_delivered_twice(backend: Backend) {
    let backend = Arc::new(backend);
    let dup = Arc::new(FaultyQueue {
        inner: backend.queue.clone(),
        fault: Fault::DeliverTwice,
    });
    let engine = backend.engine_with_queue(test_config(), dup);
    let mut h = Harness::from_parts(backend.clone(), engine).await;
    h.start_workers(4);
    let wf = h.workflow(diamond(&h)).await;
    let chain = h
        .workflow(json!({"name": "chain", "nodes": [trigger(), http("c1", &h.sink.url("/c1")), http("c2", &h.sink.url("/c2")),
                          {"id": "w", "name": "w", "type": "flow.wait", "parameters": {"durationMs": 50}}, http("c3", &h.sink.url("/c3"))],
                         "connections": [conn("start", "c1"), conn("c1", "c2"), conn("c2", "w"), conn("w", "c3")]}))
        .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(h.start(&wf, json!({"i": i})).await.id);
        ids.push(h.start(&chain, json!({"i": i})).await.id);
    }
    for id in &ids {
        let d = h.wait_terminal(id, LONG).await;
        assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    }
    for path in ["/a", "/b", "/after", "/c1", "/c2", "/c3"] {
        assert_eq!(
            h.sink.count(path),
            3,
            "{path}: every external call made once per execution"
        );
    }
    h.stop_workers().await;
}

pub async fn two_worker_pools_on_one_queue(backend: Backend) {
    let backend = Arc::new(backend);
    let engine_a = backend.engine(test_config());
    let engine_b = backend.engine(test_config());
    let mut h = Harness::from_parts(backend.clone(), engine_a.clone()).await;
    h.start_workers_on(engine_a, 3);
    h.start_workers_on(engine_b, 3);
    let wf = h.workflow(diamond(&h)).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(h.start(&wf, json!({"i": i})).await.id);
    }
    for id in &ids {
        assert_eq!(
            h.wait_terminal(id, LONG).await.execution.status,
            ExecutionStatus::Success
        );
    }
    for path in ["/a", "/b", "/after"] {
        assert_eq!(h.sink.count(path), 10, "{path}");
    }
    h.stop_workers().await;
}

pub async fn worker_dies_mid_node(backend: Backend) {
    // Short leases so the abandoned one (500 ms, below) expires quickly; the live attempt
    // has time for a loaded moto.
    let config = EngineConfig {
        node_timeout_ms: 2_000,
        lease_margin_ms: 200,
        ..test_config()
    };
    let mut h = Harness::with_config(backend, config).await;
    let wf = h
        .workflow(json!({"name": "crash", "nodes": [trigger(), http("call", &h.sink.url("/call")), set("after", json!({"ok": true}))],
                         "connections": [conn("start", "call"), conn("call", "after")]}))
        .await;
    let exec = h.start(&wf, json!({})).await;
    // Run the trigger without inline chaining: the HTTP node's job is queued.
    let queue = h.backend.queue.clone();
    let first = queue
        .receive(1, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    h.engine
        .run_job(&first.job, Some(Instant::now()))
        .await
        .expect("run trigger");
    queue.ack(&first.receipt).await.unwrap();
    // A worker takes the HTTP node's job, claims the node, and dies before calling anything.
    let taken = queue
        .receive(1, Duration::from_millis(500), Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(taken.job.node_id, "call");
    let now = weconnect_engine::model::Timestamp::from(chrono::Utc::now());
    let claim = Claim {
        token: "dead-worker".into(),
        now,
        lease_until: now.plus(Duration::from_millis(500)),
        resume: false,
    };
    let claimed = h
        .backend
        .store
        .claim_node(&h.who.organization_id, &exec.id, "call", &claim)
        .await
        .unwrap();
    assert!(
        matches!(claimed, weconnect_engine::ports::ClaimOutcome::Claimed(_)),
        "{claimed:?}"
    );
    // Live workers pick the job up again once the visibility timeout and the lease expire.
    h.start_workers(2);
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    assert_eq!(attempts(&d, "call"), 2, "the abandoned attempt counts");
    assert_eq!(h.sink.count("/call"), 1);
    h.stop_workers().await;
}

pub async fn ssrf_guard_refuses_private_addresses(backend: Backend) {
    let config = EngineConfig {
        http_allow_private: false,
        ..test_config()
    };
    let mut h = Harness::with_config(backend, config).await;
    h.start_workers(2);
    let port = h.sink.addr.port();
    let urls = [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://localhost:{port}/x"),
        format!("http://2130706433:{port}/x"),
        format!("http://0x7f.0.0.1:{port}/x"),
        format!("http://127.1:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://192.168.1.1/".to_string(),
        "http://172.16.0.1/".to_string(),
        "http://100.64.0.1/".to_string(),
        "http://[fe80::1]/".to_string(),
        "http://0.0.0.0/".to_string(),
    ];
    for url in urls {
        let wf = h
            .workflow(json!({"name": "ssrf", "nodes": [trigger(), http("call", &url)], "connections": [conn("start", "call")]}))
            .await;
        let d = h
            .wait_terminal(&h.start(&wf, json!({})).await.id, LONG)
            .await;
        assert_eq!(
            d.execution.status,
            ExecutionStatus::Failed,
            "{url} must be refused: {d:#?}"
        );
        let err = d
            .nodes
            .iter()
            .find(|n| n.node_id == "call")
            .and_then(|n| n.error.clone())
            .expect("node error");
        assert_eq!(
            serde_json::to_value(err.kind).unwrap(),
            json!("configuration"),
            "{url}: {err:?}"
        );
    }
    assert_eq!(h.sink.total(), 0, "no request reached the sink");
    h.stop_workers().await;
}

pub async fn output_over_the_limit_fails_the_node(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(1);
    let wf = h
        .workflow(json!({"name": "big", "nodes": [trigger(), set("big", json!({"a": "{{ json.text }}", "b": "{{ json.text }}"}))],
                         "connections": [conn("start", "big")]}))
        .await;
    // The input fits; the node's output (twice the input) does not.
    let text = "x".repeat(200 * 1024);
    let d = h
        .wait_terminal(&h.start(&wf, json!({"text": text})).await.id, LONG)
        .await;
    assert_eq!(d.execution.status, ExecutionStatus::Failed);
    assert_eq!(
        d.execution.error_details.clone().unwrap_or_default()["errorKind"],
        json!("outputTooLarge")
    );
    assert_eq!(status(&d, "big"), "failed");
    h.stop_workers().await;
}

pub async fn stranded_pending_is_redispatched(backend: Backend) {
    let config = EngineConfig {
        stranded_pending_after_ms: 0,
        ..test_config()
    };
    let mut h = Harness::with_config(backend, config).await;
    let wf = h.workflow(json!({"name": "s", "nodes": [trigger(), set("x", json!({"v": 1}))], "connections": [conn("start", "x")]})).await;
    let exec = h.start(&wf, json!({})).await;
    // Lose the first job, as a crashed queue would.
    let lost = h
        .backend
        .queue
        .receive(10, Duration::from_secs(60), Duration::from_secs(5))
        .await
        .unwrap();
    for d in &lost {
        h.backend.queue.ack(&d.receipt).await.unwrap();
    }
    assert_eq!(h.execution(&exec.id).await.status, ExecutionStatus::Pending);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = h.engine.sweep().await.expect("sweep");
    assert!(report.redispatched >= 1, "{report:?}");
    h.start_workers(1);
    assert_eq!(
        h.wait_terminal(&exec.id, LONG).await.execution.status,
        ExecutionStatus::Success
    );
    h.stop_workers().await;
}

/// A store that cannot create an execution and its first runs in one write (the port's
/// default: two calls) may stop between them: the execution exists with no runs and no job.
/// The cleanup run lays out its start run and queues it; the execution finishes.
pub async fn execution_created_without_its_runs_is_completed(backend: Backend) {
    let config = EngineConfig {
        stranded_pending_after_ms: 0,
        ..test_config()
    };
    let mut h = Harness::with_config(backend, config).await;
    let wf = h.workflow(json!({"name": "s", "nodes": [trigger(), set("x", json!({"v": 1}))], "connections": [conn("start", "x")]})).await;
    let template = h.start(&wf, json!({})).await;
    let half_made = weconnect_engine::model::Execution {
        id: weconnect_engine::model::new_id(),
        ..template.clone()
    };
    let store = h.backend.store.clone();
    store
        .create_execution(&half_made, None, half_made.created_at)
        .await
        .unwrap();
    let state = store
        .get_execution_state(&h.who.organization_id, &half_made.id)
        .await
        .unwrap()
        .unwrap();
    assert!(state.node_runs.is_empty());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = h.engine.sweep().await.expect("sweep");
    assert!(report.redispatched >= 1, "{report:?}");
    h.start_workers(1);
    for id in [&template.id, &half_made.id] {
        let d = h.wait_terminal(id, LONG).await;
        assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
        assert_eq!(output(&d, "x"), json!({"v": 1}));
    }
    h.stop_workers().await;
}

pub async fn idempotency_key_starts_one_execution(backend: Backend) {
    let h = Harness::new(backend).await;
    let wf = h
        .workflow(json!({"name": "i", "nodes": [trigger()], "connections": []}))
        .await;
    let req = |key: &str| weconnect_engine::engine::StartRequest {
        idempotency_key: Some(format!("api:{key}")),
        ..h.request(&wf, json!({}))
    };
    let (first, created) = h.engine.start_execution(req("k1")).await.unwrap();
    assert!(created);
    let (second, created) = h.engine.start_execution(req("k1")).await.unwrap();
    assert!(!created);
    assert_eq!(first.id, second.id);
    let (third, _) = h.engine.start_execution(req("k2")).await.unwrap();
    assert_ne!(first.id, third.id);
}

pub async fn node_runs_never_restart_after_success(backend: Backend) {
    let h = Harness::new(backend).await;
    let wf = h
        .workflow(json!({"name": "n", "nodes": [trigger()], "connections": []}))
        .await;
    let exec = h.start(&wf, json!({})).await;
    let queue = h.backend.queue.clone();
    let d = queue
        .receive(1, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    h.engine.run_job(&d.job, None).await.unwrap();
    h.engine.run_job(&d.job, None).await.unwrap();
    let detail = h.detail(&exec.id).await;
    assert_eq!(detail.execution.status, ExecutionStatus::Success);
    assert_eq!(detail.nodes[0].status, NodeRunStatus::Success);
    assert_eq!(detail.nodes[0].attempts, 1);
}

pub async fn failed_to_queue_marks_the_execution_failed(backend: Backend) {
    let backend = Arc::new(backend);
    let refusing = Arc::new(FaultyQueue {
        inner: backend.queue.clone(),
        fault: Fault::RefuseSends,
    });
    let engine = backend.engine_with_queue(test_config(), refusing);
    let h = Harness::from_parts(backend.clone(), engine).await;
    let wf = h
        .workflow(json!({"name": "q", "nodes": [trigger()], "connections": []}))
        .await;
    let req = h.request(&wf, json!({}));
    assert!(matches!(
        h.engine.start_execution(req).await,
        Err(weconnect_engine::EngineError::Queue(_))
    ));
    let page = backend
        .store
        .list_executions(&h.who.organization_id, &Default::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let exec = &page.items[0];
    assert_eq!(exec.status, ExecutionStatus::Failed);
    assert_eq!(
        exec.error_message.as_deref(),
        Some("Failed to queue execution")
    );
}

pub async fn circuit_opens_after_consecutive_failures(backend: Backend) {
    let config = EngineConfig {
        circuit_failure_threshold: 3,
        ..test_config()
    };
    let mut h = Harness::with_config(backend, config).await;
    h.start_workers(1);
    h.sink.always("/down", 500);
    let wf = h
        .workflow(
            json!({"name": "cb", "nodes": [trigger(), http("call", &h.sink.url("/down"))],
                         "connections": [conn("start", "call")]}),
        )
        .await;
    for _ in 0..3 {
        let d = h
            .wait_terminal(&h.start(&wf, json!({})).await.id, LONG)
            .await;
        assert_eq!(
            d.execution.error_details.clone().unwrap_or_default()["errorKind"],
            json!("http5xx")
        );
    }
    // The circuit is open (its state is in the store): the next call fails fast.
    let d = h
        .wait_terminal(&h.start(&wf, json!({})).await.id, LONG)
        .await;
    assert_eq!(
        d.execution.error_details.clone().unwrap_or_default()["errorKind"],
        json!("circuitOpen"),
        "{d:#?}"
    );
    assert_eq!(h.sink.count("/down"), 3);
    h.stop_workers().await;
}

/// Issue 8, finding 3: a wide fan-out with a join. Every node runs once, the join once with
/// every parent arrived, and the work per node does not grow with the width (no job reads
/// the whole execution; the join counts arrivals; the finish check reads a count). The
/// embedded store runs the report's 10,000 nodes; moto, slow per request, a few hundred.
/// Timing is printed, never asserted (the benchmark has the figures).
pub async fn wide_fan_out_with_a_join(backend: Backend) {
    let width = if backend.name == "sqlite" { 9_998 } else { 60 };
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let mut nodes = vec![trigger()];
    let mut conns = Vec::new();
    for i in 0..width {
        let id = format!("n{i}");
        nodes.push(json!({"id": id, "name": id, "type": "flow.noop"}));
        conns.push(conn("start", &id));
        conns.push(conn(&id, "join"));
    }
    nodes.push(json!({"id": "join", "name": "join", "type": "flow.noop"}));
    let wf = h
        .workflow(json!({"name": "wide", "nodes": nodes, "connections": conns}))
        .await;
    let started = Instant::now();
    let exec = h.start(&wf, json!({"wide": true})).await;
    let d = h.wait_terminal(&exec.id, Duration::from_secs(300)).await;
    eprintln!(
        "fan-out of {width} with a join on {}: {:?}",
        h.backend.name,
        started.elapsed()
    );
    assert_eq!(
        d.execution.status,
        ExecutionStatus::Success,
        "{:?}",
        d.execution
    );
    assert_eq!(d.execution.metrics.successful_nodes as usize, width + 2);
    assert!(
        d.nodes.iter().all(|n| n.attempts == 1),
        "every node ran once"
    );
    assert_eq!(output(&d, "join"), json!({"wide": true}));
    h.stop_workers().await;
}

/// A long chain: the same work per node at node 10,000 as at node 1 (each node reads only
/// what it names, not every output before it).
pub async fn long_chain(backend: Backend) {
    let length = if backend.name == "sqlite" { 9_999 } else { 50 };
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let mut nodes = vec![trigger()];
    let mut conns = Vec::new();
    let mut previous = "start".to_string();
    for i in 0..length {
        let id = format!("s{i}");
        nodes.push(set(&id, json!({"n": "{{ json.n + 1 }}"})));
        conns.push(conn(&previous, &id));
        previous = id;
    }
    let wf = h
        .workflow(json!({"name": "long", "nodes": nodes, "connections": conns}))
        .await;
    let started = Instant::now();
    let exec = h.start(&wf, json!({"n": 0})).await;
    let d = h.wait_terminal(&exec.id, Duration::from_secs(300)).await;
    eprintln!(
        "chain of {} on {}: {:?}",
        length + 1,
        h.backend.name,
        started.elapsed()
    );
    assert_eq!(
        d.execution.status,
        ExecutionStatus::Success,
        "{:?}",
        d.execution
    );
    assert_eq!(d.execution.output_data, Some(json!({"n": length})));
    h.stop_workers().await;
}

/// Issue 8, finding 4: starts raced with cancels and pauses. A claim cannot succeed once
/// its execution is terminal or paused, and a cancel stamps its time once no claim can
/// precede it: no node of any execution starts after the execution's `completedAt`.
pub async fn starts_raced_with_cancels_and_pauses(backend: Backend) {
    let (rounds, batch_size) = if backend.name == "sqlite" {
        (2_000, 50)
    } else {
        (60, 20)
    };
    let backend = Arc::new(backend);
    let mut h = Harness::from_parts(backend.clone(), backend.engine(test_config())).await;
    h.start_workers(2);
    let wf = h
        .workflow(json!({"name": "race", "nodes": [trigger(), set("a", json!({"a": 1})), set("b", json!({"b": 2})),
                                                   set("c", json!({"c": 3})), set("d", json!({"d": 4}))],
                         "connections": [conn("start", "a"), conn("a", "b"), conn("start", "c"), conn("c", "d")]}))
        .await;
    let h = Arc::new(h);
    let mut ids = Vec::new();
    for batch in 0..rounds / batch_size {
        let mut tasks = Vec::new();
        for i in 0..batch_size {
            let h = h.clone();
            let wf = wf.clone();
            tasks.push(tokio::spawn(async move {
                let exec = h.start(&wf, json!({"i": i})).await;
                // Into the middle of the run: a cancel or pause lands while nodes are
                // being claimed.
                let pause = (batch * batch_size + i) as u64 * 7919 % 4000;
                tokio::time::sleep(Duration::from_micros(pause)).await;
                let e = &h.engine;
                match (batch * batch_size + i) % 3 {
                    0 => {
                        let _ = e.cancel_execution(&h.who, &exec.id).await;
                    }
                    1 => {
                        let _ = e.pause_execution(&h.who, &exec.id).await;
                        let _ = e.cancel_execution(&h.who, &exec.id).await;
                    }
                    _ => {
                        if e.pause_execution(&h.who, &exec.id).await.is_ok() {
                            e.resume_execution(&h.who, &exec.id)
                                .await
                                .expect("a paused execution resumes");
                        }
                    }
                }
                exec.id
            }));
        }
        for t in tasks {
            ids.push(t.await.expect("race task"));
        }
    }
    let mut checked_nodes = 0;
    for id in &ids {
        let d = h.wait_terminal(id, LONG).await;
        let Some(completed) = d.execution.completed_at else {
            panic!("terminal without completedAt: {:?}", d.execution);
        };
        for n in &d.nodes {
            if let Some(started) = n.started_at {
                checked_nodes += 1;
                assert!(
                    started <= completed,
                    "node {} of {} started at {started}, after the execution ended ({:?}) at {completed}",
                    n.node_id,
                    id,
                    d.execution.status
                );
            }
        }
    }
    eprintln!(
        "{} raced executions on {}, {checked_nodes} started nodes checked",
        ids.len(),
        h.backend.name
    );
    assert!(checked_nodes > 0, "some nodes ran");
}

/// Issue 9's bug: with two schedule triggers, the first disabled, a tick starts the run at
/// the enabled one (never at the disabled node), and a tick of the disabled one starts nothing.
pub async fn a_tick_never_starts_a_disabled_schedule_trigger(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(1);
    let wf = h
        .workflow(json!({"name": "two schedules", "nodes": [
            {"id": "off", "name": "Off", "type": "trigger.schedule", "enabled": false, "parameters": {"rate": "1 minute"}},
            {"id": "on", "name": "On", "type": "trigger.schedule", "parameters": {"rate": "5 minutes"}},
            set("after_off", json!({"from": "off"})),
            set("after_on", json!({"from": "on"}))
        ], "connections": [conn("off", "after_off"), conn("on", "after_on")]}))
        .await;
    let org = h.who.organization_id.clone();
    let tick = weconnect_engine::model::Timestamp::from(chrono::Utc::now());
    let none = h
        .engine
        .fire_schedule(&org, &wf.id, Some("off"), tick)
        .await
        .expect("fire");
    assert!(none.is_none(), "a disabled trigger starts nothing");
    let exec = h
        .engine
        .fire_schedule(&org, &wf.id, None, tick)
        .await
        .expect("fire")
        .expect("the enabled trigger starts");
    assert_eq!(exec.start_node_id, "on");
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    assert_eq!(status(&d, "after_on"), "success");
    assert_eq!(status(&d, "off"), "skipped");
    assert_eq!(status(&d, "after_off"), "skipped");
    h.stop_workers().await;
}

/// SPEC §14: with `EXECUTIONS_DATA_SAVE_ON_SUCCESS=none`, a failed execution keeps
/// everything and is redriven from it; the successful redrive keeps its record and output but
/// drops its input, node outputs and info logs, and cannot be retried; a workflow's
/// `settings.saveDataOnSuccess: all` overrides the default.
pub async fn save_policy_none_keeps_failures_whole(backend: Backend) {
    let config = weconnect_engine::EngineConfig {
        save_data_on_success: weconnect_engine::model::SaveData::None,
        ..test_config()
    };
    let mut h = Harness::with_config(backend, config).await;
    h.start_workers(2);
    h.sink.script("/second", &[500]);
    let nodes = json!([
        trigger(),
        http("first", &h.sink.url("/first")),
        http("second", &h.sink.url("/second")),
        set(
            "last",
            json!({"done": "{{ nodes.first.output.statusCode }}"})
        ),
    ]);
    let conns = json!([
        conn("start", "first"),
        conn("first", "second"),
        conn("second", "last")
    ]);
    let wf = h
        .workflow(json!({"name": "policy", "nodes": nodes, "connections": conns}))
        .await;
    let failed = h
        .wait_terminal(&h.start(&wf, json!({"k": 1})).await.id, LONG)
        .await;
    assert_eq!(failed.execution.status, ExecutionStatus::Failed);
    assert!(failed.execution.data_saved);
    assert_eq!(failed.execution.input_data, json!({"k": 1}));
    assert_eq!(output(&failed, "first")["statusCode"], 200);
    let logs = |id: String| {
        let store = h.backend.store.clone();
        let org = h.who.organization_id.clone();
        async move {
            store
                .list_logs(&org, &id, &Default::default(), 1000)
                .await
                .unwrap()
                .items
        }
    };
    // The terminal write comes first, its logs right after it.
    let until = Instant::now() + LONG;
    while !logs(failed.execution.id.clone())
        .await
        .iter()
        .any(|l| l.level == weconnect_engine::model::LogLevel::Info)
    {
        assert!(
            Instant::now() < until,
            "the failed execution keeps its info logs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let redriven = h
        .engine
        .retry_execution(&h.who, &failed.execution.id, true)
        .await
        .expect("a failure keeps what a redrive needs");
    // The policy applies right after the terminal write.
    let d = h
        .wait_until(&redriven.id, LONG, "its data dropped", |d| {
            d.execution.status.is_terminal() && !d.execution.data_saved
        })
        .await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    assert_eq!(d.execution.output_data, Some(json!({"done": 200})));
    assert_eq!(d.execution.input_data, Value::Null);
    for n in &d.nodes {
        assert_eq!(n.status, NodeRunStatus::Success, "{n:?}");
        assert!(n.finished_at.is_some() && n.output.is_none(), "{n:?}");
    }
    assert!(logs(redriven.id.clone()).await.iter().all(|l| matches!(
        l.level,
        weconnect_engine::model::LogLevel::Warn | weconnect_engine::model::LogLevel::Error
    )));
    let err = h
        .engine
        .retry_execution(&h.who, &redriven.id, false)
        .await
        .expect_err("its input is gone");
    assert!(
        matches!(err, weconnect_engine::EngineError::Conflict(_)),
        "{err:?}"
    );

    let keep = h
        .workflow(
            json!({"name": "keep", "nodes": [trigger(), set("s", json!({"v": 1}))],
                         "connections": [conn("start", "s")],
                         "settings": {"saveDataOnSuccess": "all"}}),
        )
        .await;
    let d = h
        .wait_terminal(&h.start(&keep, json!({"k": 2})).await.id, LONG)
        .await;
    assert_eq!(d.execution.status, ExecutionStatus::Success);
    assert!(d.execution.data_saved);
    assert_eq!(d.execution.input_data, json!({"k": 2}));
    assert_eq!(output(&d, "s"), json!({"v": 1}));
    h.stop_workers().await;
}

/// Instantiates every scenario for one backend: `backend_scenarios!(sqlite, Backend::sqlite());`
#[macro_export]
macro_rules! backend_scenarios {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use weconnect_tests::backend::Backend;
            $crate::backend_scenarios!(@each $make;
                linear_chain, if_true_false, switch_with_fallback, diamond_join_runs_once,
                join_with_a_skipped_branch, error_connection_takes_a_500, on_error_continue_goes_along_main,
                retries_then_success, retries_exhausted_fail_naming_the_node, timeout,
                deadline_enforced_by_the_worker, cancel_during_a_wait, pause_then_resume,
                retry_and_redrive_from_the_failed_node, every_job_delivered_twice,
                two_worker_pools_on_one_queue, worker_dies_mid_node, ssrf_guard_refuses_private_addresses,
                output_over_the_limit_fails_the_node, stranded_pending_is_redispatched,
                execution_created_without_its_runs_is_completed,
                idempotency_key_starts_one_execution, node_runs_never_restart_after_success,
                failed_to_queue_marks_the_execution_failed, circuit_opens_after_consecutive_failures,
                wide_fan_out_with_a_join, long_chain, starts_raced_with_cancels_and_pauses,
                a_tick_never_starts_a_disabled_schedule_trigger,
                save_policy_none_keeps_failures_whole);
        }
    };
    (@each $make:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                $crate::scenarios::$scenario($make.await).await;
            }
        )*
    };
}

/// The embedded store has no TTL: the cleanup run deletes finished executions past the
/// retention (with their node runs and logs) and idempotency keys past their window, and
/// leaves unfinished executions alone. (DynamoDB expires the same items by TTL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cleanup_prunes_what_is_past_its_retention() {
    let config = EngineConfig {
        retention_ms: 1,
        idempotency_window_ms: 1,
        ..test_config()
    };
    let mut h = Harness::with_config(Backend::sqlite().await, config).await;
    let wf = h
        .workflow(
            json!({"name": "r", "nodes": [trigger(), set("s", json!({"ok": true}))],
                         "connections": [conn("start", "s")]}),
        )
        .await;
    h.start_workers(1);
    let first = h.start(&wf, json!({})).await;
    let second = h.start(&wf, json!({})).await;
    h.wait_terminal(&first.id, LONG).await;
    h.wait_terminal(&second.id, LONG).await;
    h.stop_workers().await;
    assert!(!h.logs(&first.id).await.is_empty());
    // Started with no workers running: it stays pending, an unfinished execution.
    let keyed = weconnect_engine::engine::StartRequest {
        idempotency_key: Some("api:once".into()),
        ..h.request(&wf, json!({}))
    };
    let (keyed, _) = h.engine.start_execution(keyed).await.unwrap();

    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = h.engine.sweep().await.expect("sweep");
    assert_eq!(report.pruned_executions, 2, "{report:?}");
    assert_eq!(report.pruned_idempotency_keys, 1, "{report:?}");
    let store = h.backend.store.clone();
    let org = h.who.organization_id.clone();
    for gone in [&first.id, &second.id] {
        assert!(store.get_execution(&org, gone).await.unwrap().is_none());
        assert!(
            store
                .get_execution_state(&org, gone)
                .await
                .unwrap()
                .is_none()
        );
        assert!(h.logs(gone).await.is_empty());
    }
    // The keyed execution is still pending (no workers): kept.
    let kept = store.get_execution(&org, &keyed.id).await.unwrap().unwrap();
    assert_eq!(kept.status, ExecutionStatus::Pending);
    // Nothing left to prune.
    let again = h.engine.sweep().await.expect("sweep");
    assert_eq!(
        (again.pruned_executions, again.pruned_idempotency_keys),
        (0, 0)
    );
}
