//! Flow control (SPEC §9) on every backend: concurrency limits per workflow and per key,
//! with duplicate deliveries, several workers and crashes.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use weconnect_engine::model::{Execution, ExecutionMove, ExecutionStatus, PendingReason};
use weconnect_engine::ports::Gate;
use weconnect_engine::{EngineError, EngineResult};
use weconnect_tests::backend::{Backend, test_config};
use weconnect_tests::harness::{Fault, FaultyQueue, Harness, most_at_once};

const LONG: Duration = Duration::from_secs(60);

/// manual trigger → a durable wait of `ms` → data.set; `settings.concurrency` as given.
fn limited(name: &str, concurrency: Value, ms: u64) -> Value {
    json!({
        "name": name,
        "settings": {"concurrency": concurrency},
        "nodes": [
            {"id": "start", "name": "Start", "type": "trigger.manual"},
            {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": ms}},
            {"id": "done", "name": "Done", "type": "data.set", "parameters": {"values": {"customer": "{{ trigger.customer }}"}}}
        ],
        "connections": [
            {"source": "start", "target": "wait"},
            {"source": "wait", "target": "done"}
        ]
    })
}

async fn start_all(
    h: &Harness,
    wf: &weconnect_engine::model::Workflow,
    inputs: Vec<Value>,
) -> Vec<Execution> {
    let starts = inputs.into_iter().map(|input| {
        let req = h.request(wf, input);
        let engine = h.engine.clone();
        async move { engine.start_execution(req).await.expect("start").0 }
    });
    futures::future::join_all(starts).await
}

async fn finished(h: &Harness, started: &[Execution]) -> Vec<Execution> {
    let mut out = Vec::new();
    for e in started {
        let d = h.wait_terminal(&e.id, LONG).await;
        out.push(d.execution);
    }
    out
}

pub async fn concurrency_limit_is_never_exceeded(backend: Backend) {
    let backend = Arc::new(backend);
    // Every job delivered twice, four workers.
    let dup = Arc::new(FaultyQueue {
        inner: backend.queue.clone(),
        fault: Fault::DeliverTwice,
    });
    let engine = backend.engine_with_queue(test_config(), dup);
    let mut h = Harness::from_parts(backend.clone(), engine).await;
    h.start_workers(4);
    let wf = h
        .workflow(limited("limit 2", json!({"limit": 2}), 300))
        .await;
    let started = start_all(&h, &wf, (0..8).map(|i| json!({"customer": i})).collect()).await;
    // Beyond the limit they wait, saying why.
    let waiting = started
        .iter()
        .filter(|e| e.pending_reason == Some(PendingReason::Concurrency))
        .count();
    assert!(waiting >= 6, "{waiting} of 8 wait: {started:#?}");
    assert!(
        started
            .iter()
            .all(|e| e.concurrency_key.as_deref() == Some(""))
    );
    let done = finished(&h, &started).await;
    assert!(
        done.iter().all(|e| e.status == ExecutionStatus::Success),
        "{done:#?}"
    );
    assert!(done.iter().all(|e| e.pending_reason.is_none()));
    let all: Vec<&Execution> = done.iter().collect();
    assert_eq!(
        most_at_once(all.iter().copied()),
        2,
        "never more than the limit, and the limit used"
    );
    // First in, first out among those that waited in line: one created `limit` places later
    // never started earlier (two slots freed together start two executions whose first
    // claims may race by a moment; the first admissions of simultaneous starts race too).
    let queued: Vec<&str> = started
        .iter()
        .filter(|e| e.pending_reason == Some(PendingReason::Concurrency))
        .map(|e| e.id.as_str())
        .collect();
    let mut by_creation: Vec<&Execution> = done
        .iter()
        .filter(|e| queued.contains(&e.id.as_str()))
        .collect();
    by_creation.sort_by_key(|e| (e.created_at, e.id.clone()));
    for (i, earlier) in by_creation.iter().enumerate() {
        for later in by_creation.iter().skip(i + 2) {
            assert!(
                later.started_at >= earlier.started_at,
                "{} (created later) started before {}: {by_creation:#?}",
                later.id,
                earlier.id
            );
        }
    }
    // Every slot was given back.
    let gate = Gate {
        org: h.who.organization_id.clone(),
        workflow_id: wf.id.clone(),
        key: String::new(),
    };
    // (The last one gives its slot back just after its terminal write.)
    let mut holders = h.backend.store.gate_holders(&gate).await.unwrap();
    for _ in 0..50 {
        if holders.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        holders = h.backend.store.gate_holders(&gate).await.unwrap();
    }
    assert!(holders.is_empty(), "{holders:?}");
    h.stop_workers().await;
}

pub async fn keyed_limits_overlap_across_keys_never_within_one(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(4);
    let wf = h
        .workflow(limited(
            "one per customer",
            json!({"limit": 1, "key": "{{ trigger.customer }}"}),
            300,
        ))
        .await;
    let inputs = ["acme", "globex", "acme", "globex", "acme", "globex"]
        .iter()
        .map(|c| json!({"customer": c}))
        .collect();
    let started = start_all(&h, &wf, inputs).await;
    let done = finished(&h, &started).await;
    assert!(
        done.iter().all(|e| e.status == ExecutionStatus::Success),
        "{done:#?}"
    );
    for customer in ["acme", "globex"] {
        let of: Vec<&Execution> = done
            .iter()
            .filter(|e| e.concurrency_key.as_deref() == Some(customer))
            .collect();
        assert_eq!(of.len(), 3);
        assert_eq!(
            most_at_once(of.iter().copied()),
            1,
            "one at a time for {customer}"
        );
    }
    let all: Vec<&Execution> = done.iter().collect();
    assert_eq!(
        most_at_once(all.iter().copied()),
        2,
        "the two customers ran side by side"
    );
    h.stop_workers().await;
}

pub async fn cancelled_paused_and_crashed_executions_give_their_slot_back(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let wf = h
        .workflow(limited("limit 1", json!({"limit": 1}), 60_000))
        .await;
    let holder = h.start(&wf, json!({})).await;
    h.wait_until(&holder.id, LONG, "the first runs", |d| {
        d.execution.status == ExecutionStatus::Running
    })
    .await;
    let second = h.start(&wf, json!({})).await;
    let third = h.start(&wf, json!({})).await;
    assert_eq!(second.pending_reason, Some(PendingReason::Concurrency));
    // A queued execution paused and resumed is still in line: it does not start.
    h.engine.pause_execution(&h.who, &second.id).await.unwrap();
    h.engine.resume_execution(&h.who, &second.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.execution(&second.id).await.status,
        ExecutionStatus::Pending
    );
    // Cancelling one in line takes it out of the line.
    h.engine.cancel_execution(&h.who, &second.id).await.unwrap();
    // Cancelling the holder hands its slot to the next in line.
    h.engine.cancel_execution(&h.who, &holder.id).await.unwrap();
    h.wait_until(&third.id, LONG, "the third runs", |d| {
        d.execution.status == ExecutionStatus::Running
    })
    .await;
    assert_eq!(
        h.execution(&second.id).await.status,
        ExecutionStatus::Cancelled
    );

    // A crash between the holder's end and giving its slot back: the store has it ended,
    // nothing else happened. The cleanup run gives the slot back and starts the next.
    let fourth = h.start(&wf, json!({})).await;
    let current = h.execution(&third.id).await;
    let ended = ExecutionMove::Cancel.apply(
        &current,
        weconnect_engine::model::Timestamp::from(chrono::Utc::now()),
    );
    assert!(
        h.backend
            .store
            .transition_execution(&ended, ExecutionMove::Cancel.from())
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.execution(&fourth.id).await.status,
        ExecutionStatus::Pending
    );
    let report = h.engine.sweep().await.unwrap();
    assert!(report.failed == 0, "{report:?}");
    h.wait_until(&fourth.id, LONG, "the fourth runs", |d| {
        d.execution.status == ExecutionStatus::Running
    })
    .await;
    h.engine.cancel_execution(&h.who, &fourth.id).await.unwrap();
    h.stop_workers().await;
}

/// The holder's worker dies (here: no worker ever runs its job): at its deadline the cleanup
/// run times it out, and the slot goes to the next in line.
pub async fn a_slot_held_by_a_dead_worker_comes_back_at_the_deadline(backend: Backend) {
    let mut h = Harness::new(backend).await;
    let wf = h
        .workflow(limited("limit 1, dead worker", json!({"limit": 1}), 10))
        .await;
    let holder = h
        .start_with_timeout(&wf, json!({"customer": 1}), Some(1_000))
        .await;
    let next = h.start(&wf, json!({"customer": 2})).await;
    assert_eq!(next.pending_reason, Some(PendingReason::Concurrency));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let report = h.engine.sweep().await.unwrap();
    assert!(report.timed_out >= 1, "{report:?}");
    assert_eq!(
        h.execution(&holder.id).await.status,
        ExecutionStatus::Timeout
    );
    h.start_workers(2);
    let d = h.wait_terminal(&next.id, LONG).await;
    assert_eq!(
        d.execution.status,
        ExecutionStatus::Success,
        "{:?}",
        d.execution
    );
    h.stop_workers().await;
}

pub async fn keys_are_evaluated_once_and_bad_ones_refuse_the_start(backend: Backend) {
    let h = Harness::new(backend).await;
    let wf = h
        .workflow(limited(
            "keyed",
            json!({"limit": 3, "key": "{{ trigger.customer.id }}"}),
            10,
        ))
        .await;
    let e = h.start(&wf, json!({"customer": {"id": 42}})).await;
    assert_eq!(e.concurrency_key.as_deref(), Some("42"));
    let refused: EngineResult<_> = h
        .engine
        .start_execution(h.request(&wf, json!({"nothing": true})))
        .await;
    match refused {
        Err(EngineError::BadRequest(m)) => {
            assert!(m.starts_with("settings.concurrency.key: "), "{m}")
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    // Nothing was created for the refused start.
    let page = h
        .backend
        .store
        .list_executions(
            &h.who.organization_id,
            &weconnect_engine::ports::ExecutionFilter {
                workflow_id: Some(wf.id.clone()),
                ..Default::default()
            },
            100,
            None,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    // Settings out of range are refused when saved, naming the setting.
    for (concurrency, field) in [
        (json!({"limit": 0}), "settings.concurrency.limit"),
        (json!({"limit": 1001}), "settings.concurrency.limit"),
        (
            json!({"limit": 2, "key": "{{ trigger. }}"}),
            "settings.concurrency.key",
        ),
        (json!({"limit": 2, "key": " "}), "settings.concurrency.key"),
    ] {
        let def: weconnect_engine::model::WorkflowDefinition =
            serde_json::from_value(limited("bad", concurrency, 10)).unwrap();
        let e = weconnect_engine::graph::validate(&def).unwrap_err();
        assert!(e.message.contains(field), "{}", e.message);
    }
    for (settings, field) in [
        (
            json!({"throttle": {"limit": 0, "periodMs": 1000}}),
            "settings.throttle.limit",
        ),
        (
            json!({"throttle": {"limit": 2, "periodMs": 10}}),
            "settings.throttle.periodMs",
        ),
        (
            json!({"throttle": {"limit": 2, "periodMs": 1000, "key": "{{ }}"}}),
            "settings.throttle.key",
        ),
        (
            json!({"debounce": {"periodMs": 86_400_001u64}}),
            "settings.debounce.periodMs",
        ),
        (
            json!({"debounce": {"periodMs": 500, "key": "{% if %}"}}),
            "settings.debounce.key",
        ),
    ] {
        let def: weconnect_engine::model::WorkflowDefinition =
            serde_json::from_value(quick("bad", settings)).unwrap();
        let e = weconnect_engine::graph::validate(&def).unwrap_err();
        assert!(e.message.contains(field), "{}", e.message);
    }
}

/// manual trigger → data.set, with `settings` as given.
fn quick(name: &str, settings: Value) -> Value {
    json!({
        "name": name,
        "settings": settings,
        "nodes": [
            {"id": "start", "name": "Start", "type": "trigger.manual"},
            {"id": "done", "name": "Done", "type": "data.set", "parameters": {"values": {"n": "{{ trigger.n }}"}}}
        ],
        "connections": [{"source": "start", "target": "done"}]
    })
}

pub async fn debounce_runs_the_newest_start_per_key(backend: Backend) {
    let backend = Arc::new(backend);
    let dup = Arc::new(FaultyQueue {
        inner: backend.queue.clone(),
        fault: Fault::DeliverTwice,
    });
    let engine = backend.engine_with_queue(test_config(), dup);
    let mut h = Harness::from_parts(backend.clone(), engine).await;
    h.start_workers(2);
    let wf = h
        .workflow(quick(
            "debounced",
            json!({"debounce": {"periodMs": 3000, "key": "{{ trigger.customer }}"}}),
        ))
        .await;
    let mut acme = Vec::new();
    for n in 0..3 {
        let e = h.start(&wf, json!({"customer": "acme", "n": n})).await;
        assert_eq!(e.pending_reason, Some(PendingReason::Debounce));
        acme.push(e);
    }
    let globex = h.start(&wf, json!({"customer": "globex", "n": 9})).await;
    let newest = &acme[2];
    // Each was replaced by the next one.
    for (older, newer) in acme.iter().zip(&acme[1..]) {
        let d = h.wait_terminal(&older.id, LONG).await;
        assert_eq!(d.execution.status, ExecutionStatus::Cancelled);
        assert_eq!(
            d.execution.error_message.as_deref(),
            Some(format!("Superseded by execution {} (debounce)", newer.id).as_str())
        );
        assert!(d.execution.started_at.is_none(), "it never started");
    }
    for e in [newest, &globex] {
        let d = h.wait_terminal(&e.id, LONG).await;
        assert_eq!(
            d.execution.status,
            ExecutionStatus::Success,
            "{:?}",
            d.execution
        );
        let started = d.execution.started_at.unwrap();
        assert!(
            started.millis_since(e.created_at) >= 3000,
            "ran after the quiet period"
        );
        assert!(d.execution.pending_reason.is_none());
    }
    // A start after the newest has run starts again; the one that ran stays.
    let later = h.start(&wf, json!({"customer": "acme", "n": 5})).await;
    let d = h.wait_terminal(&later.id, LONG).await;
    assert_eq!(d.execution.status, ExecutionStatus::Success);
    assert_eq!(
        h.execution(&newest.id).await.status,
        ExecutionStatus::Success
    );
    h.stop_workers().await;
}

pub async fn throttle_spreads_starts_over_the_window(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(2);
    let wf = h
        .workflow(quick(
            "throttled",
            json!({"throttle": {"limit": 2, "periodMs": 1000}}),
        ))
        .await;
    let started = start_all(&h, &wf, (0..6).map(|n| json!({"n": n})).collect()).await;
    let done = finished(&h, &started).await;
    // Nothing dropped.
    assert!(
        done.iter().all(|e| e.status == ExecutionStatus::Success),
        "{done:#?}"
    );
    // The assigned start times: no window of 1,000 ms holds more than 2; each execution
    // started at or after its own.
    let gate = Gate {
        org: h.who.organization_id.clone(),
        workflow_id: wf.id.clone(),
        key: String::new(),
    };
    let mut assigned = Vec::new();
    for e in &done {
        let at = h
            .backend
            .store
            .throttled_start(&gate, &e.id)
            .await
            .unwrap()
            .expect("an assigned start");
        assert!(e.started_at.unwrap() >= at, "{e:?} started before {at}");
        assigned.push(at.millis());
    }
    assigned.sort_unstable();
    for w in assigned.windows(3) {
        assert!(
            w[2] - w[0] >= 1000,
            "three starts within a window: {assigned:?}"
        );
    }
    assert!(
        assigned[5] - assigned[0] >= 2000,
        "six starts at two a second take two seconds: {assigned:?}"
    );
    let waited = started
        .iter()
        .filter(|e| e.pending_reason == Some(PendingReason::Throttle))
        .count();
    assert_eq!(
        waited, 4,
        "the four beyond the first window's limit say why they wait"
    );
    h.stop_workers().await;
}

pub async fn rate_limited_calls_never_exceed_their_rate(backend: Backend) {
    let mut h = Harness::new(backend).await;
    h.start_workers(4);
    let url = h.sink.url("/rated");
    let child = json!({
        "nodes": [
            {"id": "in", "name": "In", "type": "trigger.manual"},
            {"id": "call", "name": "Call", "type": "http.request", "retry": {"maxAttempts": 1},
             "parameters": {"method": "POST", "url": url, "body": {"item": "{{ json.item }}"},
                            "rateLimit": {"limit": 5, "periodMs": 1000}}}
        ],
        "connections": [{"source": "in", "target": "call"}]
    });
    let wf = h
        .workflow(json!({"name": "rated map", "nodes": [
            {"id": "start", "name": "Start", "type": "trigger.manual"},
            {"id": "each", "name": "Each", "type": "flow.map",
             "parameters": {"items": "{{ trigger.items }}", "concurrency": 20, "workflow": child}}],
            "connections": [{"source": "start", "target": "each"}]}))
        .await;
    let items: Vec<u32> = (0..20).collect();
    let exec = h.start(&wf, json!({ "items": items })).await;
    let d = h.wait_terminal(&exec.id, LONG).await;
    assert_eq!(
        d.execution.status,
        ExecutionStatus::Success,
        "{:?}",
        d.execution
    );
    assert_eq!(
        weconnect_tests::harness::output(&d, "each")["succeeded"],
        20
    );
    // Each call made once, none failed for the rate, and at the server no window of a
    // second saw more than 5 (a call is counted when it is sent; 50 ms allow for the
    // difference in delivery between two calls).
    let mut at: Vec<std::time::Instant> = h.sink.calls("/rated").iter().map(|c| c.at).collect();
    assert_eq!(at.len(), 20);
    at.sort_unstable();
    for w in at.windows(6) {
        let gap = w[5].duration_since(w[0]);
        assert!(gap >= Duration::from_millis(950), "6 calls within {gap:?}");
    }
    assert!(at[19].duration_since(at[0]) >= Duration::from_millis(2_950));
    h.stop_workers().await;
}

/// Instantiates every flow-control scenario for one backend.
#[macro_export]
macro_rules! flow_control_scenarios {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use weconnect_tests::backend::Backend;
            $crate::flow_control_scenarios!(@each $make;
                concurrency_limit_is_never_exceeded,
                keyed_limits_overlap_across_keys_never_within_one,
                cancelled_paused_and_crashed_executions_give_their_slot_back,
                a_slot_held_by_a_dead_worker_comes_back_at_the_deadline,
                keys_are_evaluated_once_and_bad_ones_refuse_the_start,
                debounce_runs_the_newest_start_per_key,
                throttle_spreads_starts_over_the_window,
                rate_limited_calls_never_exceed_their_rate);
        }
    };
    (@each $make:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() {
                $crate::flow_control::$scenario($make.await).await;
            }
        )*
    };
}
