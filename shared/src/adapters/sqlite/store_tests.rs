//! Tests of `SqliteStore` on real SQLite files in temp folders: what is the embedded store's
//! own (reopening the file, `prune`, statistics computed from the rows). The port's contract,
//! what every store does, is `tests/suite/store_contract.rs`, run on this store and on
//! DynamoDB.

use super::{SqliteStore, TestDir, open_file};
use crate::model::*;
use crate::ports::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const T0: i64 = 1_700_000_000_000;

fn ts(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn store(dir: &TestDir) -> Arc<SqliteStore> {
    open_file(&dir.db()).unwrap().0
}

fn node(id: &str, node_type: &str) -> Node {
    Node {
        id: id.into(),
        name: format!("Node {id}"),
        node_type: node_type.into(),
        parameters: Default::default(),
        enabled: true,
        retry: None,
        timeout_ms: None,
        on_error: None,
    }
}

fn workflow(org: &str, id: &str, status: WorkflowStatus, trigger: &str) -> Workflow {
    Workflow {
        id: id.into(),
        organization_id: org.into(),
        user_id: "user".into(),
        name: format!("Workflow {id}"),
        description: None,
        status,
        version: 1,
        nodes: vec![node("start", trigger), node("next", "flow.noop")],
        connections: vec![Connection {
            source: "start".into(),
            target: "next".into(),
            kind: MAIN.into(),
        }],
        settings: Default::default(),
        execution_count: 0,
        last_executed_at: None,
        created_at: ts(0),
        updated_at: ts(0),
    }
}

fn route(wf: &Workflow, webhook_id: &str) -> WebhookRoute {
    WebhookRoute {
        webhook_id: webhook_id.into(),
        organization_id: wf.organization_id.clone(),
        workflow_id: wf.id.clone(),
        node_id: "start".into(),
    }
}

fn execution(org: &str, workflow_id: &str, created: i64) -> Execution {
    Execution {
        id: new_id(),
        workflow_id: workflow_id.into(),
        workflow_version: 1,
        user_id: "user".into(),
        organization_id: org.into(),
        status: ExecutionStatus::Pending,
        mode: ExecutionMode::Manual,
        input_data: json!({"n": created}),
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
        metrics: Default::default(),
        deadline: ts(created + 300_000),
        created_at: ts(created),
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
    }
}

fn finished(mut e: Execution, status: ExecutionStatus, duration: u64) -> Execution {
    e.status = status;
    e.duration = duration;
    e.completed_at = Some(e.created_at.plus(Duration::from_millis(duration)));
    e
}

fn claim_at(now: i64) -> Claim {
    Claim {
        token: new_id(),
        now: ts(now),
        lease_until: ts(now + 30_000),
        resume: false,
    }
}

fn arrival<'a>(
    execution_id: &'a str,
    child: &'a str,
    parent: &'a str,
    taken: bool,
    parents: usize,
) -> ArrivalAt<'a> {
    ArrivalAt {
        execution_id,
        child,
        parent,
        taken,
        parents,
        at: ts(0),
    }
}

fn ready_run(execution_id: &str, node_id: &str) -> NodeRun {
    let mut run = NodeRun::new(execution_id, node_id);
    run.ready = true;
    run
}

fn log(exec: &Execution, node: Option<&str>, level: LogLevel, message: &str) -> ExecutionLog {
    ExecutionLog {
        id: new_id(),
        execution_id: exec.id.clone(),
        organization_id: exec.organization_id.clone(),
        node_id: node.map(str::to_string),
        level,
        message: message.into(),
        data: Some(json!({"m": message})),
        timestamp: ts(0),
        execution_step: 1,
        node_type: None,
        node_name: None,
    }
}

fn credential(org: &str, name: &str, created: i64) -> StoredCredential {
    StoredCredential {
        credential: Credential {
            id: new_id(),
            organization_id: org.into(),
            name: name.into(),
            credential_type: CredentialType::Bearer,
            created_at: ts(created),
            updated_at: ts(created),
        },
        sealed_data: format!("sealed-{name}"),
    }
}

// ---- statistics ------------------------------------------------------------------------

/// Statistics are computed from the rows: p95 is the exact nearest rank and a range is
/// exact to the millisecond. Not a contract of the port: the DynamoDB store keeps counters
/// per day of `createdAt` with a duration histogram, so its ranges are whole UTC days and
/// its p95 is interpolated inside a bucket (see `adapters/aws/dynamo/mod.rs`). What both
/// count the same way is `statistics_*` in `tests/suite/store_contract.rs`.
#[tokio::test]
async fn statistics_are_exact_to_the_millisecond() {
    let dir = TestDir::new();
    let s = store(&dir);
    use ExecutionStatus::*;
    // 20 successes lasting 10..=200 ms, 4 failures of 1000 ms, 1 timeout of 5000, 3 running.
    let mut n = 0i64;
    let mut add = |status: ExecutionStatus, duration: u64, mode: ExecutionMode| {
        n += 1;
        let mut e = execution("o1", "w", n * 10);
        e.mode = mode;
        let done = if status.is_terminal() {
            finished(e.clone(), status, duration)
        } else {
            let mut r = e.clone();
            r.status = status;
            r
        };
        (e, done)
    };
    let mut rows = Vec::new();
    for i in 1..=20u64 {
        rows.push(add(Success, i * 10, ExecutionMode::Manual));
    }
    for _ in 0..4 {
        rows.push(add(Failed, 1000, ExecutionMode::Webhook));
    }
    rows.push(add(Timeout, 5000, ExecutionMode::Api));
    for _ in 0..3 {
        rows.push(add(Running, 0, ExecutionMode::Manual));
    }
    for (created, done) in &rows {
        s.create_execution(created, None, ts(0)).await.unwrap();
        assert!(s.transition_execution(done, &[Pending]).await.unwrap());
    }
    s.create_execution(&execution("o2", "w", 0), None, ts(0))
        .await
        .unwrap();

    let st = s.execution_statistics("o1", None, None).await.unwrap();
    assert_eq!(st.total, 28);
    // Nearest rank: ceil(0.95 * 25) = 24th of the sorted durations = 1000.
    assert_eq!(st.p95_duration, 1000.0);

    // Only the first ten (created at 10..=100 ms, all on one day): successes of 10..=100 ms.
    let st = s
        .execution_statistics("o1", Some(ts(0)), Some(ts(100)))
        .await
        .unwrap();
    assert_eq!(st.total, 10);
    assert_eq!(st.success_rate, 1.0);
    assert!((st.average_duration - 55.0).abs() < 1e-9);
    assert_eq!(st.p95_duration, 100.0);
}

// ---- restart -------------------------------------------------------------------------

#[tokio::test]
async fn everything_survives_reopening() {
    let dir = TestDir::new();
    let wf = workflow("o1", "w1", WorkflowStatus::Active, "trigger.webhook");
    let e = execution("o1", "w1", 0);
    let cred = credential("o1", "api", 0);
    let l = log(&e, Some("start"), LogLevel::Info, "hello");
    let c = claim_at(0);
    {
        let s = store(&dir);
        s.create_workflow(&wf, &[route(&wf, "hook")]).await.unwrap();
        s.create_execution(&e, Some("k"), ts(0)).await.unwrap();
        s.put_node_runs("o1", &[ready_run(&e.id, "start")])
            .await
            .unwrap();
        assert!(matches!(
            s.claim_node("o1", &e.id, "start", &c).await.unwrap(),
            ClaimOutcome::Claimed(_)
        ));
        s.arrive("o1", &arrival(&e.id, "join", "start", true, 2), None)
            .await
            .unwrap();
        s.append_logs(std::slice::from_ref(&l)).await.unwrap();
        s.put_credential(&cred).await.unwrap();
        let st = CircuitState {
            version: 1,
            ..Default::default()
        };
        s.put_circuit("o1", "k", &st).await.unwrap();
    }
    let s = store(&dir);
    assert_eq!(
        s.get_workflow("o1", "w1")
            .await
            .unwrap()
            .unwrap()
            .execution_count,
        1
    );
    assert!(s.find_webhook("hook").await.unwrap().is_some());
    assert_eq!(
        s.create_execution(&execution("o1", "w1", 5), Some("k"), ts(0))
            .await
            .unwrap(),
        Created::Existing(e.clone())
    );
    assert_eq!(
        s.claim_node("o1", &e.id, "start", &claim_at(1))
            .await
            .unwrap(),
        ClaimOutcome::Leased {
            until: c.lease_until
        }
    );
    let state = s.get_execution_state("o1", &e.id).await.unwrap().unwrap();
    assert_eq!(state.run("join").unwrap().arrived, 1);
    assert_eq!(
        s.list_logs("o1", &e.id, &LogFilter::default(), 10)
            .await
            .unwrap()
            .items,
        vec![l]
    );
    assert_eq!(s.get_credential("o1", "api").await.unwrap(), Some(cred));
    assert_eq!(s.get_circuit("o1", "k").await.unwrap().unwrap().version, 1);
}

// ---- retention -------------------------------------------------------------------------

#[tokio::test]
async fn prune_deletes_old_finished_executions_with_their_runs_and_logs() {
    let dir = TestDir::new();
    let s = store(&dir);
    let wf = workflow("o1", "w1", WorkflowStatus::Active, "trigger.manual");
    s.create_workflow(&wf, &[]).await.unwrap();
    let log = |e: &Execution| ExecutionLog {
        id: new_id(),
        execution_id: e.id.clone(),
        organization_id: e.organization_id.clone(),
        node_id: None,
        level: LogLevel::Info,
        message: "m".into(),
        data: None,
        timestamp: e.created_at,
        execution_step: 0,
        node_type: None,
        node_name: None,
    };
    // Oldest first: finished, unfinished, finished; then one inside the retention.
    let mut made = Vec::new();
    for (offset, finished) in [(0, true), (10, false), (20, true), (5000, true)] {
        let mut e = execution("o1", "w1", offset);
        let runs = [NodeRun::new(&e.id, "start")];
        s.create_execution_with_runs(&e, &runs, Some(&format!("key-{offset}")), ts(0))
            .await
            .unwrap();
        s.append_logs(&[log(&e)]).await.unwrap();
        if finished {
            e.status = ExecutionStatus::Success;
            e.completed_at = Some(ts(offset + 1));
            assert!(
                s.transition_execution(&e, &[ExecutionStatus::Pending])
                    .await
                    .unwrap()
            );
        }
        made.push(e);
    }
    let pruned = s.prune(ts(1000), ts(15), 100).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            executions: 2,
            idempotency_keys: 2
        }
    );
    for (e, kept) in made.iter().zip([false, true, false, true]) {
        let state = s.get_execution_state("o1", &e.id).await.unwrap();
        assert_eq!(state.is_some(), kept, "{}", e.id);
        let logs = s
            .list_logs("o1", &e.id, &LogFilter::default(), 10)
            .await
            .unwrap()
            .items;
        assert_eq!(logs.len(), usize::from(kept));
    }
    // A call reads at most `limit` executions, oldest first.
    assert_eq!(
        s.prune(ts(10_000), ts(10_000), 1).await.unwrap().executions,
        0
    );
    assert_eq!(
        s.prune(ts(10_000), ts(10_000), 2).await.unwrap().executions,
        1
    );
    assert_eq!(
        s.prune(ts(10_000), ts(10_000), 100)
            .await
            .unwrap()
            .executions,
        0
    );
}
