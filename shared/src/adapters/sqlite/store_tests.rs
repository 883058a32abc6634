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
        data_saved: true,
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
        // The parent's number (`p7` → 7) where it has one.
        parent_index: parent
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or(0),
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

/// Statistics come from day counters that triggers keep on every insert, status move,
/// duration change and delete of an execution (prune included), as DynamoDB keeps them: the
/// counts equal the rows', p95 is interpolated in its bucket.
#[tokio::test]
async fn statistics_counters_follow_creates_moves_and_prunes() {
    let dir = TestDir::new();
    let s = store(&dir);
    use ExecutionStatus::*;
    let mut made = Vec::new();
    for i in 1..=20i64 {
        let e = execution("o1", "w", i * 10);
        s.create_execution(&e, None, ts(0)).await.unwrap();
        let mut running = e.clone();
        running.status = Running;
        assert!(s.transition_execution(&running, &[Pending]).await.unwrap());
        let done = finished(
            running,
            if i > 16 { Failed } else { Success },
            i as u64 * 10,
        );
        assert!(s.transition_execution(&done, &[Running]).await.unwrap());
        made.push(done);
    }
    // A cancel stamps its duration again: the counters follow.
    s.set_completed_at("o1", &made[19].id, ts(5_000), 4_000)
        .await
        .unwrap();
    s.create_execution(&execution("o1", "w", 500), None, ts(0))
        .await
        .unwrap();
    let st = s.execution_statistics("o1", None, None).await.unwrap();
    assert_eq!(st.total, 21);
    assert_eq!(st.by_status["success"], 16);
    assert_eq!(st.by_status["failed"], 4);
    assert_eq!(st.by_status["pending"], 1);
    assert_eq!(st.by_status["running"], 0);
    let sum: u64 = (1..=19u64).map(|i| i * 10).sum::<u64>() + 4_000;
    assert!((st.average_duration - sum as f64 / 20.0).abs() < 1e-9);
    assert!(
        st.p95_duration > 150.0 && st.p95_duration <= 200.0,
        "{}",
        st.p95_duration
    );

    // Prune deletes the finished ones: the counts go with them.
    let pruned = s.prune(ts(100_000), ts(0), 100).await.unwrap();
    assert_eq!(pruned.executions, 20);
    let st = s.execution_statistics("o1", None, None).await.unwrap();
    assert_eq!(st.total, 1);
    assert_eq!(st.by_status["success"], 0);
    assert_eq!((st.average_duration, st.p95_duration), (0.0, 0.0));
}

/// The histogram's bounds in SQL (migration 8) are `model::trends::BUCKET_BOUNDS_MS`.
#[test]
fn the_sql_duration_buckets_are_the_models() {
    let dir = TestDir::new();
    drop(store(&dir));
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let bounds: Vec<u64> = conn
        .prepare("SELECT bound FROM duration_bounds ORDER BY bound")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(bounds, crate::model::trends::BUCKET_BOUNDS_MS.to_vec());
}

// ---- the footprint (SPEC §14) ------------------------------------------------------------

/// A file of schema version 7 (one row per log entry, JSON text bodies, no counters) opens
/// migrated: its logs read back from batches, its executions and runs as they were, its
/// statistics counted, incremental auto-vacuum on.
#[tokio::test]
async fn migration_8_keeps_the_data_of_an_older_file() {
    let dir = TestDir::new();
    let e = finished(execution("o1", "w1", 0), ExecutionStatus::Success, 30);
    let mut run = NodeRun::new(&e.id, "start");
    run.status = NodeRunStatus::Success;
    run.output = Some(json!({"kept": true}));
    let logs: Vec<ExecutionLog> = (0..3)
        .map(|i| {
            log(
                &e,
                (i > 0).then_some("start"),
                LogLevel::Info,
                &format!("entry {i}"),
            )
        })
        .collect();
    {
        let conn = rusqlite::Connection::open(dir.db()).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL").unwrap();
        for m in &super::migrations::MIGRATIONS[..7] {
            conn.execute_batch(m.sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 7).unwrap();
        conn.execute(
            "INSERT INTO executions (id, org, workflow_id, status, mode, created_at, deadline, \
             duration, unfinished, body) VALUES (?1, 'o1', 'w1', 'success', 'manual', ?2, ?3, 30, 0, ?4)",
            rusqlite::params![
                e.id,
                e.created_at.millis(),
                e.deadline.millis(),
                serde_json::to_string(&e).unwrap()
            ],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO node_runs (execution_id, node_id, org, body) VALUES (?1, 'start', 'o1', ?2)",
            rusqlite::params![e.id, serde_json::to_string(&run).unwrap()],
        )
        .unwrap();
        for l in &logs {
            conn.execute(
                "INSERT INTO logs (id, org, execution_id, node_id, level, body) \
                 VALUES (?1, 'o1', ?2, ?3, 'info', ?4)",
                rusqlite::params![l.id, e.id, l.node_id, serde_json::to_string(l).unwrap()],
            )
            .unwrap();
        }
        let auto_vacuum: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(auto_vacuum, 0, "an old file");
    }
    let s = store(&dir);
    assert_eq!(s.get_execution("o1", &e.id).await.unwrap(), Some(e.clone()));
    let state = s.get_execution_state("o1", &e.id).await.unwrap().unwrap();
    assert_eq!(state.node_runs, vec![run]);
    let page = s
        .list_logs("o1", &e.id, &LogFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(page.items, logs);
    let st = s.execution_statistics("o1", None, None).await.unwrap();
    assert_eq!((st.total, st.by_status["success"]), (1, 1));
    assert_eq!(st.average_duration, 30.0);
    drop(s);
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let auto_vacuum: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(auto_vacuum, 2, "incremental");
    let old_logs: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'logs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old_logs, 0);
}

/// A file of schema version 8 (text ids in the executions and node runs tables, bodies that
/// repeat the columns) opens migrated: ids become 16-byte keys, the executions table loses
/// its rowid, and every execution reads back, is found by each list filter and keeps its runs.
#[tokio::test]
async fn migration_9_keys_executions_by_their_16_bytes() {
    let dir = TestDir::new();
    let workflow_id = new_id();
    let parent = finished(
        execution("o1", &workflow_id, 0),
        ExecutionStatus::Success,
        30,
    );
    let mut child = execution("o1", &workflow_id, 10);
    child.status = ExecutionStatus::Running;
    child.parent_execution_id = Some(parent.id.clone());
    let mut run = NodeRun::new(&child.id, "start");
    run.output = Some(json!({"kept": true}));
    {
        let conn = rusqlite::Connection::open(dir.db()).unwrap();
        for m in &super::migrations::MIGRATIONS[..8] {
            conn.execute_batch(m.sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 8).unwrap();
        for e in [&parent, &child] {
            conn.execute(
                "INSERT INTO executions (id, org, workflow_id, status, mode, created_at, \
                 deadline, duration, unfinished, body, parent_id) \
                 VALUES (?1, 'o1', ?2, ?3, 'manual', ?4, ?5, ?6, ?7, ?8, ?9)",
                rusqlite::params![
                    e.id,
                    workflow_id,
                    e.status.as_str(),
                    e.created_at.millis(),
                    e.deadline.millis(),
                    e.duration as i64,
                    i64::from(!e.status.is_terminal()),
                    serde_json::to_string(e).unwrap(),
                    e.parent_execution_id
                ],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO node_runs (execution_id, node_id, org, body) VALUES (?1, 'start', 'o1', ?2)",
            rusqlite::params![child.id, serde_json::to_string(&run).unwrap()],
        )
        .unwrap();
    }
    let s = store(&dir);
    assert_eq!(
        s.get_execution("o1", &parent.id).await.unwrap(),
        Some(parent.clone())
    );
    let state = s
        .get_execution_state("o1", &child.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (state.execution, state.node_runs),
        (child.clone(), vec![run])
    );
    let list = |filter: ExecutionFilter| {
        let s = s.clone();
        async move {
            let page = s.list_executions("o1", &filter, 10, None).await.unwrap();
            page.items.into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    let both = vec![child.id.clone(), parent.id.clone()];
    assert_eq!(list(ExecutionFilter::default()).await, both);
    let by_workflow = ExecutionFilter {
        workflow_id: Some(workflow_id.clone()),
        ..Default::default()
    };
    assert_eq!(list(by_workflow).await, both);
    let by_parent = ExecutionFilter {
        parent_execution_id: Some(parent.id.clone()),
        ..Default::default()
    };
    assert_eq!(list(by_parent).await, vec![child.id.clone()]);
    let unfinished = s.list_unfinished_executions(10, None).await.unwrap();
    assert_eq!(unfinished.items, vec![child.clone()]);
    let st = s.execution_statistics("o1", None, None).await.unwrap();
    assert_eq!((st.total, st.by_status["success"]), (2, 1));
    drop(s);
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let key_types: Vec<String> = conn
        .prepare(
            "SELECT typeof(id) FROM executions UNION ALL SELECT typeof(workflow_id) FROM executions \
             UNION ALL SELECT typeof(execution_id) FROM node_runs",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(key_types, vec!["blob"; 5]);
    let no_rowid = conn.query_row("SELECT rowid FROM executions", [], |_| Ok(()));
    assert!(no_rowid.is_err(), "executions is a WITHOUT ROWID table");
}

/// The file's size with its write-ahead log checkpointed (retried while the store's own
/// checkpoint thread holds the log).
fn file_size(dir: &TestDir) -> u64 {
    super::checkpointed_size(&dir.db()).unwrap()
}

/// Pruning gives the space back: the file shrinks once the cleanup run's `reclaim_space`
/// ran after the prune.
#[tokio::test]
async fn the_file_shrinks_after_a_prune() {
    let dir = TestDir::new();
    let s = store(&dir);
    let empty = file_size(&dir);
    for chunk in 0..20i64 {
        let mut work = Vec::new();
        for i in 0..150i64 {
            let n = chunk * 150 + i;
            let e = finished(execution("o1", "w1", n), ExecutionStatus::Success, 5);
            let mut run = NodeRun::new(&e.id, "start");
            run.status = NodeRunStatus::Success;
            run.output = Some(json!({"n": n, "text": format!("payload {n} ").repeat(20)}));
            let logs = vec![
                log(&e, None, LogLevel::Info, "Execution started"),
                log(&e, Some("start"), LogLevel::Info, &format!("Node ran {n}")),
            ];
            let s = s.clone();
            work.push(async move {
                s.create_execution_with_runs(&e, &[run], None, ts(0))
                    .await
                    .unwrap();
                s.append_logs(&logs).await.unwrap();
            });
        }
        futures::future::join_all(work).await;
    }
    let full = file_size(&dir);
    assert!(full > empty + 1_000_000, "{full} bytes written");
    let mut pruned = 0;
    loop {
        let n = s
            .prune(ts(1_000_000), ts(0), 1_000)
            .await
            .unwrap()
            .executions;
        pruned += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(pruned, 3_000);
    let given_back = s.reclaim_space(u64::MAX).await.unwrap();
    assert!(given_back > 0);
    let after = file_size(&dir);
    assert!(
        after * 10 < full * 6,
        "{after} bytes after pruning everything, {full} before"
    );
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
