//! Composition (SPEC §8) on every backend: loops over lists, sub-workflows, callbacks and
//! error workflows, with the guarantees of §5 (duplicate deliveries, crashed workers).

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use weconnect_engine::EngineConfig;
use weconnect_engine::model::{Callback, Execution, ExecutionMode, ExecutionStatus};
use weconnect_engine::ports::ExecutionFilter;
use weconnect_tests::backend::{Backend, test_config};
use weconnect_tests::harness::{Fault, FaultyQueue, Harness, most_at_once, output, status};

const LONG: Duration = Duration::from_secs(60);

fn trigger() -> Value {
    json!({"id": "start", "name": "Start", "type": "trigger.manual"})
}

fn conn(source: &str, target: &str) -> Value {
    json!({"source": source, "target": target})
}

/// An inline child workflow: manual trigger → data.set of `values`.
fn inline_set(values: Value) -> Value {
    json!({
        "nodes": [
            {"id": "in", "name": "In", "type": "trigger.manual"},
            {"id": "out", "name": "Out", "type": "data.set", "parameters": {"values": values}}
        ],
        "connections": [conn("in", "out")]
    })
}

/// An inline child workflow that POSTs its item to the sink at `path`, then sets `done`.
fn inline_call(url: &str) -> Value {
    json!({
        "nodes": [
            {"id": "in", "name": "In", "type": "trigger.manual"},
            {"id": "call", "name": "Call", "type": "http.request", "retry": {"maxAttempts": 1},
             "parameters": {"method": "POST", "url": url, "body": {"item": "{{ json.item }}"}}},
            {"id": "out", "name": "Out", "type": "data.set",
             "parameters": {"values": {"done": "{{ trigger.item }}"}}}
        ],
        "connections": [conn("in", "call"), conn("call", "out")]
    })
}

async fn children(h: &Harness, parent: &str) -> Vec<Execution> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = h
            .backend
            .store
            .list_executions(
                &h.who.organization_id,
                &ExecutionFilter {
                    parent_execution_id: Some(parent.to_string()),
                    ..Default::default()
                },
                100,
                cursor.as_deref(),
            )
            .await
            .expect("list children");
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

pub async fn map_runs_children_in_item_order(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let wf = h
        .workflow(json!({"name": "map", "nodes": [
            trigger(),
            {"id": "each", "name": "Each", "type": "flow.map",
             "parameters": {"items": "{{ trigger.lines }}", "concurrency": 2,
                            "workflow": inline_set(json!({"sku": "{{ json.item.sku }}", "i": "{{ json.index }}"}))}},
            {"id": "sum", "name": "Sum", "type": "data.set",
             "parameters": {"values": {"n": "{{ json.succeeded }}", "skus": "{{ json.results | map(attribute='sku') | join(',') }}"}}}
        ], "connections": [conn("start", "each"), conn("each", "sum")]}))
        .await;
    let lines: Vec<Value> = (0..7).map(|i| json!({"sku": format!("s{i}")})).collect();
    let exec = h.start(&wf, json!({"lines": lines})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    let each = output(&d, "each");
    assert_eq!(each["succeeded"], 7);
    assert_eq!(each["failed"], 0);
    assert_eq!(each["results"][3], json!({"sku": "s3", "i": 3}));
    assert_eq!(
        output(&d, "sum"),
        json!({"n": 7, "skus": "s0,s1,s2,s3,s4,s5,s6"})
    );
    // The children: ordinary executions, with their place in the family.
    let kids = children(&h, &exec.id).await;
    assert_eq!(kids.len(), 7);
    for kid in &kids {
        assert_eq!(kid.mode, ExecutionMode::Subworkflow);
        assert_eq!(kid.parent_node_id.as_deref(), Some("each"));
        assert_eq!(kid.depth, 1);
        assert_eq!(kid.status, ExecutionStatus::Success);
        assert!(kid.deadline <= d.execution.deadline);
        let i = kid.item_index.expect("item index") as usize;
        assert_eq!(
            kid.input_data,
            json!({"item": {"sku": format!("s{i}")}, "index": i})
        );
    }
    assert!(most_at_once(&kids) <= 2, "concurrency 2 held");
    assert_eq!(d.execution.parent_execution_id, None);
    assert_eq!(d.execution.depth, 0);
    h.stop_workers().await;
}

pub async fn map_fails_above_its_tolerance_and_tolerates_below(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let child = json!({
        "nodes": [
            {"id": "in", "name": "In", "type": "trigger.manual"},
            {"id": "check", "name": "Check", "type": "logic.if", "parameters": {"condition": "{{ json.item > 2 }}"}},
            {"id": "boom", "name": "Boom", "type": "flow.fail", "parameters": {"message": "item {{ trigger.item }} is too big"}},
            {"id": "ok", "name": "Ok", "type": "data.set", "parameters": {"values": {"v": "{{ trigger.item }}"}}}
        ],
        "connections": [conn("in", "check"), {"source": "check", "target": "boom", "type": "true"},
                        {"source": "check", "target": "ok", "type": "false"}]
    });
    let map = |tolerated: u32| {
        json!({"name": format!("tolerate {tolerated}"), "nodes": [
            trigger(),
            {"id": "each", "name": "Each", "type": "flow.map",
             "parameters": {"items": "{{ trigger.items }}", "toleratedFailures": tolerated, "workflow": child}}
        ], "connections": [conn("start", "each")]})
    };
    let strict = h.workflow(map(0)).await;
    let lenient = h.workflow(map(1)).await;
    let a = h.start(&strict, json!({"items": [1, 2, 3]})).await;
    let b = h.start(&lenient, json!({"items": [1, 2, 3]})).await;
    let d = h.wait_terminal(&a.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Failed, "{d:#?}");
    let err = d
        .nodes
        .iter()
        .find(|n| n.node_id == "each")
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert_eq!(serde_json::to_value(err.kind).unwrap(), "childFailed");
    assert!(err.message.contains("1 of 3"), "{}", err.message);
    let d = h.wait_terminal(&b.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    let each = output(&d, "each");
    assert_eq!(
        (each["succeeded"].clone(), each["failed"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(each["results"][0], json!({"v": 1}));
    assert_eq!(each["results"][2]["error"], true);
    assert!(
        each["results"][2]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("too big")
    );
    assert!(each["results"][2]["executionId"].is_string());
    // Items must be an array; depth and size limits fail the node with their kinds.
    let not_list = h.start(&strict, json!({"items": "nope"})).await;
    let d = h.wait_terminal(&not_list.id, LONG).await;
    let err = d
        .nodes
        .iter()
        .find(|n| n.node_id == "each")
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert_eq!(serde_json::to_value(err.kind).unwrap(), "expression");
    h.stop_workers().await;
}

pub async fn subworkflows_by_reference_wait_or_detach(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let callee = h
        .workflow(json!({"name": "callee", "nodes": [trigger(),
            {"id": "double", "name": "Double", "type": "data.set", "parameters": {"values": {"twice": "{{ json.n * 2 }}"}}}],
            "connections": [conn("start", "double")]}))
        .await;
    let failing = h
        .workflow(json!({"name": "failing", "nodes": [trigger(),
            {"id": "no", "name": "No", "type": "flow.fail", "parameters": {"message": "not today"}}],
            "connections": [conn("start", "no")]}))
        .await;
    let caller = h
        .workflow(json!({"name": "caller", "nodes": [
            trigger(),
            {"id": "call", "name": "Call", "type": "flow.subworkflow",
             "parameters": {"workflowId": callee.id, "input": {"n": "{{ trigger.n }}"}}},
            {"id": "fire", "name": "Fire and forget", "type": "flow.subworkflow",
             "parameters": {"workflowId": callee.id, "wait": false}},
            {"id": "after", "name": "After", "type": "data.set", "parameters": {"values": {"got": "{{ nodes.call.output.twice }}"}}}
        ], "connections": [conn("start", "call"), conn("call", "fire"), conn("fire", "after")]}))
        .await;
    let exec = h.start(&caller, json!({"n": 21})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    assert_eq!(output(&d, "call"), json!({"twice": 42}));
    assert_eq!(output(&d, "after"), json!({"got": 42}));
    let detached = output(&d, "fire")["executionId"]
        .as_str()
        .unwrap()
        .to_string();
    let kid = h.wait_terminal(&detached, LONG).await;
    assert_eq!(
        kid.execution.parent_execution_id.as_deref(),
        Some(exec.id.as_str())
    );
    assert_eq!(kid.execution.item_index, None);
    assert_eq!(kid.execution.workflow_id, callee.id);

    let caller_of_failing = h
        .workflow(json!({"name": "caller2", "nodes": [trigger(),
            {"id": "call", "name": "Call", "type": "flow.subworkflow", "parameters": {"workflowId": failing.id}}],
            "connections": [conn("start", "call")]}))
        .await;
    let exec = h.start(&caller_of_failing, json!({})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Failed);
    let err = d.nodes[1].error.clone().unwrap();
    assert_eq!(serde_json::to_value(err.kind).unwrap(), "childFailed");
    assert!(err.message.contains("not today"), "{}", err.message);
    h.stop_workers().await;
}

pub async fn recursion_stops_at_depth_five(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    // A workflow that calls itself: depth 0 → 5 run, the call at depth 5 fails.
    let mut wf = h
        .workflow(json!({"name": "self", "nodes": [trigger(),
            {"id": "call", "name": "Call", "type": "flow.subworkflow", "parameters": {"workflowId": "later"}}],
            "connections": [conn("start", "call")]}))
        .await;
    wf.nodes[1]
        .parameters
        .insert("workflowId".into(), json!(wf.id.clone()));
    wf.version = 2;
    assert!(h.backend.store.update_workflow(&wf, &[]).await.unwrap());
    let exec = h.start(&wf, json!({})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Failed, "{d:#?}");
    assert!(
        d.execution
            .error_message
            .as_deref()
            .unwrap_or("")
            .contains("at most 5 deep"),
        "{:?}",
        d.execution.error_message
    );
    // The deepest child: depth 5, failed with limitExceeded.
    let mut id = exec.id.clone();
    let mut depth = 0;
    while let Some(kid) = children(&h, &id).await.pop() {
        depth = kid.depth;
        id = kid.id;
    }
    assert_eq!(depth, 5);
    let deepest = h.detail(&id).await;
    let err = deepest.nodes[1].error.clone().unwrap();
    assert_eq!(serde_json::to_value(err.kind).unwrap(), "limitExceeded");
    h.stop_workers().await;
}

/// Every job delivered twice during a 100-item map: exactly 100 children, each child's
/// external call made once.
pub async fn duplicate_deliveries_start_each_child_once(backend: Backend) {
    let items = if backend.name == "sqlite" { 100 } else { 40 };
    let backend = Arc::new(backend);
    let dup = Arc::new(FaultyQueue {
        inner: backend.queue.clone(),
        fault: Fault::DeliverTwice,
    });
    let engine = backend.engine_with_queue(test_config(), dup);
    let mut h = Harness::from_parts(backend.clone(), engine).await;
    h.start_workers(4);
    let wf = h
        .workflow(json!({"name": "dup map", "nodes": [trigger(),
            {"id": "each", "name": "Each", "type": "flow.map",
             "parameters": {"items": "{{ trigger.items }}", "concurrency": 10, "workflow": inline_call(&h.sink.url("/item"))}}],
            "connections": [conn("start", "each")]}))
        .await;
    let list: Vec<u32> = (0..items).collect();
    let exec = h.start(&wf, json!({"items": list})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(
        d.execution.status,
        ExecutionStatus::Success,
        "{:?}",
        d.execution
    );
    assert_eq!(output(&d, "each")["succeeded"], items);
    assert_eq!(children(&h, &exec.id).await.len(), items as usize);
    assert_eq!(
        h.sink.count("/item"),
        items as usize,
        "each child's call made once"
    );
    let mut seen: Vec<u64> = h
        .sink
        .calls("/item")
        .iter()
        .map(|c| {
            serde_json::from_slice::<Value>(&c.body).unwrap()["item"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..items as u64).collect::<Vec<_>>());
    h.stop_workers().await;
}

/// A worker killed while children run: the leases run out, live workers take the jobs
/// again, and the parent still finishes.
pub async fn a_killed_worker_does_not_strand_the_parent(backend: Backend) {
    let config = EngineConfig {
        node_timeout_ms: 1_000,
        lease_margin_ms: 300,
        job_visibility_ms: 1_000,
        ..test_config()
    };
    let backend = Arc::new(backend);
    let mut h = Harness::from_parts(backend.clone(), backend.engine(config.clone())).await;
    h.sink.delay("/slow", Duration::from_millis(400));
    let wf = h
        .workflow(json!({"name": "crash", "nodes": [trigger(),
            {"id": "each", "name": "Each", "type": "flow.map",
             "parameters": {"items": [1, 2, 3, 4, 5, 6], "concurrency": 3, "workflow": inline_call(&h.sink.url("/slow"))}}],
            "connections": [conn("start", "each")]}))
        .await;
    // A pool that dies mid-run: aborted while its children's calls are in flight.
    let (_keep, never) = tokio::sync::watch::channel(false);
    let doomed = tokio::spawn(weconnect_engine::engine::worker::run_workers(
        backend.engine(config.clone()),
        2,
        never,
    ));
    let exec = h.start(&wf, json!({})).await;
    h.wait_until(&exec.id, LONG, "children running", |_| {
        h.sink.count("/slow") >= 1
    })
    .await;
    doomed.abort();
    let _ = doomed.await;
    h.start_workers(2);
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while !h.execution(&exec.id).await.status.is_terminal() {
        if tokio::time::Instant::now() > until {
            let kids = children(&h, &exec.id).await;
            let tally = h
                .backend
                .store
                .get_child_tally(&h.who.organization_id, &exec.id, "each")
                .await
                .unwrap();
            let mut states = Vec::new();
            for k in &kids {
                states.push((
                    k.item_index,
                    k.status,
                    h.detail(&k.id)
                        .await
                        .nodes
                        .iter()
                        .map(|n| (n.node_id.clone(), n.status, n.attempts))
                        .collect::<Vec<_>>(),
                ));
            }
            panic!("stuck: tally {tally:?}, children {states:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(
        d.execution.status,
        ExecutionStatus::Success,
        "{:?}",
        d.execution
    );
    assert_eq!(output(&d, "each")["succeeded"], 6);
    h.stop_workers().await;
}

pub async fn cancelling_a_parent_cancels_its_children(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let wf = h
        .workflow(json!({"name": "cascade", "nodes": [trigger(),
            {"id": "each", "name": "Each", "type": "flow.map",
             "parameters": {"items": [1, 2, 3, 4], "concurrency": 2, "workflow": {
                 "nodes": [{"id": "in", "name": "In", "type": "trigger.manual"},
                           {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": 600000}}],
                 "connections": [conn("in", "wait")]}}}],
            "connections": [conn("start", "each")]}))
        .await;
    let exec = h.start(&wf, json!({})).await;
    h.wait_until(&exec.id, LONG, "waiting for children", |d| {
        status(d, "each") == "waiting"
    })
    .await;
    // Pause cascades, resume too.
    h.engine
        .pause_execution(&h.who, &exec.id)
        .await
        .expect("pause");
    for kid in children(&h, &exec.id).await {
        if kid.item_index.unwrap() < 2 {
            assert_eq!(kid.status, ExecutionStatus::Paused, "{kid:?}");
        }
    }
    h.engine
        .resume_execution(&h.who, &exec.id)
        .await
        .expect("resume");
    h.engine
        .cancel_execution(&h.who, &exec.id)
        .await
        .expect("cancel");
    let kids = children(&h, &exec.id).await;
    assert_eq!(kids.len(), 4);
    for kid in kids {
        assert_eq!(kid.status, ExecutionStatus::Cancelled, "{kid:?}");
        assert!(kid.error_message.unwrap().contains(&exec.id));
    }
    h.stop_workers().await;
}

pub async fn callbacks_complete_fail_come_early_and_time_out(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let wf = h
        .workflow(json!({"name": "approval", "nodes": [
            trigger(),
            {"id": "send", "name": "Send", "type": "data.set",
             "parameters": {"values": {"url": "{{ callbacks.approve.url }}", "token": "{{ callbacks.approve.token }}"}}},
            {"id": "approve", "name": "Approve", "type": "flow.waitForCallback", "parameters": {"timeoutMs": 60000}},
            {"id": "after", "name": "After", "type": "data.set", "parameters": {"values": {"by": "{{ json.body.by }}"}}}
        ], "connections": [conn("start", "send"), conn("send", "approve"), conn("approve", "after")]}))
        .await;
    let tokens = h.engine.callback_tokens();

    // 1. Completed while it waits.
    let exec = h.start(&wf, json!({})).await;
    let d = h
        .wait_until(&exec.id, LONG, "waiting", |d| {
            status(d, "approve") == "waiting"
        })
        .await;
    assert_eq!(d.execution.status, ExecutionStatus::Running);
    let sent = output(&d, "send");
    let token = sent["token"].as_str().unwrap().to_string();
    assert!(
        sent["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/callbacks/{token}"))
    );
    let node = d.nodes.iter().find(|n| n.node_id == "approve").unwrap();
    assert_eq!(
        node.callback.as_ref().unwrap().url,
        sent["url"].as_str().unwrap()
    );
    // The deadline moved out by the wait (pauseDeadline defaults to true).
    assert!(d.execution.deadline.millis_since(exec.deadline) >= 59_000);
    let target = tokens.verify(&token).expect("a valid token");
    let accepted = h
        .engine
        .deliver_callback(&target, Callback::Completed(json!({"by": "ada"})))
        .await
        .expect("accepted");
    assert_eq!(accepted.node_id, "approve");
    // Accepted once.
    assert!(matches!(
        h.engine
            .deliver_callback(&target, Callback::Completed(json!({})))
            .await,
        Err(weconnect_engine::EngineError::Conflict(_))
    ));
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    assert_eq!(output(&d, "approve"), json!({"body": {"by": "ada"}}));
    assert_eq!(output(&d, "after"), json!({"by": "ada"}));
    // Terminal: 409.
    assert!(matches!(
        h.engine
            .deliver_callback(&target, Callback::Completed(json!({})))
            .await,
        Err(weconnect_engine::EngineError::Conflict(_))
    ));

    // 2. Failed through the authenticated route.
    let exec = h.start(&wf, json!({})).await;
    h.wait_until(&exec.id, LONG, "waiting", |d| {
        status(d, "approve") == "waiting"
    })
    .await;
    h.engine
        .complete_node(
            &h.who,
            &exec.id,
            "approve",
            Callback::Failed("rejected".into()),
        )
        .await
        .expect("accepted");
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Failed);
    let err = d
        .nodes
        .iter()
        .find(|n| n.node_id == "approve")
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert_eq!(serde_json::to_value(err.kind).unwrap(), "callbackFailed");
    assert_eq!(err.message, "rejected");

    // 3. A callback that arrives before the node waits is kept.
    let slow = h
        .workflow(json!({"name": "early", "nodes": [
            trigger(),
            {"id": "pause", "name": "Pause", "type": "flow.wait", "parameters": {"durationMs": 300}},
            {"id": "approve", "name": "Approve", "type": "flow.waitForCallback"}
        ], "connections": [conn("start", "pause"), conn("pause", "approve")]}))
        .await;
    let exec = h.start(&slow, json!({})).await;
    h.engine
        .complete_node(
            &h.who,
            &exec.id,
            "approve",
            Callback::Completed(json!({"early": true})),
        )
        .await
        .expect("an early callback is accepted");
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    assert_eq!(output(&d, "approve"), json!({"body": {"early": true}}));

    // 4. No callback within timeoutMs: the node fails with kind timeout.
    let short = h
        .workflow(json!({"name": "short", "nodes": [trigger(),
            {"id": "approve", "name": "Approve", "type": "flow.waitForCallback",
             "parameters": {"timeoutMs": 1000, "pauseDeadline": false}, "retry": {"maxAttempts": 1}}],
            "connections": [conn("start", "approve")]}))
        .await;
    let exec = h.start(&short, json!({})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Failed, "{d:#?}");
    let err = d.nodes[1].error.clone().unwrap();
    assert_eq!(serde_json::to_value(err.kind).unwrap(), "timeout");

    // Unknown nodes and tampered tokens are not found.
    let mut other = target.clone();
    other.node_id = "send".into();
    assert!(matches!(
        h.engine
            .deliver_callback(&other, Callback::Completed(json!({})))
            .await,
        Err(weconnect_engine::EngineError::NotFound(_))
    ));
    assert!(tokens.verify(&format!("{token}x")).is_none());
    h.stop_workers().await;
}

pub async fn error_workflows_run_once_per_failure(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let handler = h
        .workflow(json!({"name": "on failure", "nodes": [
            {"id": "failed", "name": "Failed", "type": "trigger.error"},
            {"id": "report", "name": "Report", "type": "data.set",
             "parameters": {"values": {"what": "{{ trigger.workflow.name }}: {{ trigger.execution.errorMessage }}"}}}
        ], "connections": [conn("failed", "report")]}))
        .await;
    let failing = h
        .workflow(json!({"name": "fragile", "settings": {"errorWorkflowId": handler.id},
            "nodes": [trigger(), {"id": "no", "name": "No", "type": "flow.fail", "parameters": {"message": "boom"}}],
            "connections": [conn("start", "no")]}))
        .await;
    let exec = h.start(&failing, json!({})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Failed);
    let org = h.who.organization_id.clone();
    let errors = executions_of(&h, &handler.id, 1).await;
    assert_eq!(errors.len(), 1, "exactly one error execution");
    let run = h.wait_terminal(&errors[0].id, LONG).await;
    assert_eq!(run.execution.mode, ExecutionMode::Error);
    assert_eq!(run.execution.status, ExecutionStatus::Success, "{run:#?}");
    assert_eq!(
        run.execution.input_data["execution"]["id"],
        exec.id.as_str()
    );
    assert_eq!(run.execution.input_data["execution"]["status"], "failed");
    assert_eq!(run.execution.input_data["workflow"]["name"], "fragile");
    assert_eq!(
        output(&run, "report"),
        json!({"what": "fragile: Node 'No' failed: boom"})
    );
    // Cancelled executions start no error workflow.
    let slow = h
        .workflow(json!({"name": "slow", "settings": {"errorWorkflowId": handler.id},
            "nodes": [trigger(), {"id": "w", "name": "W", "type": "flow.wait", "parameters": {"durationMs": 600000}}],
            "connections": [conn("start", "w")]}))
        .await;
    let exec = h.start(&slow, json!({})).await;
    h.wait_until(&exec.id, LONG, "waiting", |d| {
        d.nodes[1].started_at.is_some()
    })
    .await;
    h.engine
        .cancel_execution(&h.who, &exec.id)
        .await
        .expect("cancel");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = h
        .backend
        .store
        .list_executions(
            &org,
            &ExecutionFilter {
                workflow_id: Some(handler.id.clone()),
                ..Default::default()
            },
            100,
            None,
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);
    h.stop_workers().await;
}

pub async fn redriving_a_map_reruns_only_its_failed_items(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let child = json!({
        "nodes": [
            {"id": "in", "name": "In", "type": "trigger.manual"},
            {"id": "call", "name": "Call", "type": "http.request", "retry": {"maxAttempts": 1},
             "parameters": {"method": "POST", "url": format!("{}{{{{ json.item }}}}", h.sink.url("/item-"))}},
            {"id": "out", "name": "Out", "type": "data.set", "parameters": {"values": {"item": "{{ trigger.item }}"}}}
        ],
        "connections": [conn("in", "call"), conn("call", "out")]
    });
    let wf = h
        .workflow(json!({"name": "redrive map", "nodes": [trigger(),
            {"id": "each", "name": "Each", "type": "flow.map", "parameters": {"items": [1, 2, 3, 4], "workflow": child}}],
            "connections": [conn("start", "each")]}))
        .await;
    h.sink.script("/item-3", &[500]);
    let exec = h.start(&wf, json!({})).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Failed, "{d:#?}");
    // Redrive from the failed node: only item 3 runs again, the others' results are copied.
    let again = h
        .engine
        .retry_execution(&h.who, &exec.id, true)
        .await
        .expect("redrive");
    let d = h.wait_terminal(&again.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success, "{d:#?}");
    let results = output(&d, "each")["results"].clone();
    assert_eq!(
        results,
        json!([{"item": 1}, {"item": 2}, {"item": 3}, {"item": 4}])
    );
    for (path, calls) in [
        ("/item-1", 1),
        ("/item-2", 1),
        ("/item-3", 2),
        ("/item-4", 1),
    ] {
        assert_eq!(h.sink.count(path), calls, "{path}");
    }
    assert_eq!(children(&h, &again.id).await.len(), 4);
    h.stop_workers().await;
}

/// The executions of a workflow, once there are `n` of them (≤ 20 s).
async fn executions_of(h: &Harness, workflow_id: &str, n: usize) -> Vec<Execution> {
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = h
            .backend
            .store
            .list_executions(
                &h.who.organization_id,
                &ExecutionFilter {
                    workflow_id: Some(workflow_id.to_string()),
                    ..Default::default()
                },
                100,
                None,
            )
            .await
            .expect("list");
        if page.items.len() >= n || tokio::time::Instant::now() > until {
            return page.items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Instantiates every composition scenario for one backend.
#[macro_export]
macro_rules! composition_scenarios {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use weconnect_tests::backend::Backend;
            $crate::composition_scenarios!(@each $make;
                map_runs_children_in_item_order, map_fails_above_its_tolerance_and_tolerates_below,
                subworkflows_by_reference_wait_or_detach, recursion_stops_at_depth_five,
                duplicate_deliveries_start_each_child_once, a_killed_worker_does_not_strand_the_parent,
                cancelling_a_parent_cancels_its_children, callbacks_complete_fail_come_early_and_time_out,
                error_workflows_run_once_per_failure, redriving_a_map_reruns_only_its_failed_items);
        }
    };
    (@each $make:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                $crate::composition::$scenario($make.await).await;
            }
        )*
    };
}
