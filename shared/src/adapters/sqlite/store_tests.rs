//! Tests of `SqliteStore` on real SQLite files in temp folders.

use super::{SqliteStore, TestDir, open_file};
use crate::model::*;
use crate::ports::*;
use serde_json::json;
use std::collections::HashSet;
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

// ---- workflows -----------------------------------------------------------------------

#[tokio::test]
async fn workflow_versions_updates_and_deletes() {
    let dir = TestDir::new();
    let s = store(&dir);
    let mut wf = workflow("o1", "w1", WorkflowStatus::Draft, "trigger.webhook");
    s.create_workflow(&wf, &[route(&wf, "hook-a")])
        .await
        .unwrap();
    assert_eq!(s.get_workflow("o1", "w1").await.unwrap(), Some(wf.clone()));
    assert_eq!(s.get_workflow("o2", "w1").await.unwrap(), None);
    assert_eq!(
        s.find_webhook("hook-a").await.unwrap(),
        Some(route(&wf, "hook-a"))
    );
    // Creating the same workflow twice is a conflict.
    assert!(matches!(
        s.create_workflow(&wf, &[]).await,
        Err(StoreError::Conflict(_))
    ));

    let v1 = wf.clone();
    wf.version = 2;
    wf.name = "Renamed".into();
    wf.status = WorkflowStatus::Active;
    assert!(
        s.update_workflow(&wf, &[route(&wf, "hook-b")])
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_workflow("o1", "w1").await.unwrap().unwrap().name,
        "Renamed"
    );
    assert_eq!(
        s.get_workflow_version("o1", "w1", 1).await.unwrap(),
        Some(v1)
    );
    assert_eq!(
        s.get_workflow_version("o1", "w1", 2).await.unwrap(),
        Some(wf.clone())
    );
    assert_eq!(s.get_workflow_version("o1", "w1", 3).await.unwrap(), None);
    assert_eq!(s.get_workflow_version("o2", "w1", 1).await.unwrap(), None);
    // Routes were replaced.
    assert_eq!(s.find_webhook("hook-a").await.unwrap(), None);
    assert!(s.find_webhook("hook-b").await.unwrap().is_some());

    // A stale version (the stored one is 2, not 1) is refused.
    let mut stale = wf.clone();
    stale.version = 2;
    assert!(!s.update_workflow(&stale, &[]).await.unwrap());
    // Unknown workflow and other organization: false.
    let mut other = wf.clone();
    other.version = 3;
    other.organization_id = "o2".into();
    assert!(!s.update_workflow(&other, &[]).await.unwrap());

    assert!(s.delete_workflow("o1", "w1").await.unwrap());
    assert!(!s.delete_workflow("o1", "w1").await.unwrap());
    assert_eq!(s.get_workflow("o1", "w1").await.unwrap(), None);
    assert_eq!(s.find_webhook("hook-b").await.unwrap(), None);
    // Past versions stay for executions.
    assert!(
        s.get_workflow_version("o1", "w1", 2)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn webhook_ids_are_unique_across_the_installation() {
    let dir = TestDir::new();
    let s = store(&dir);
    let a = workflow("o1", "wa", WorkflowStatus::Active, "trigger.webhook");
    s.create_workflow(&a, &[route(&a, "shared")]).await.unwrap();

    let b = workflow("o2", "wb", WorkflowStatus::Active, "trigger.webhook");
    match s.create_workflow(&b, &[route(&b, "shared")]).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("shared"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Nothing of the refused workflow was stored.
    assert_eq!(s.get_workflow("o2", "wb").await.unwrap(), None);

    s.create_workflow(&b, &[route(&b, "own")]).await.unwrap();
    let mut b2 = b.clone();
    b2.version = 2;
    match s.update_workflow(&b2, &[route(&b2, "shared")]).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("shared"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The refused update changed nothing.
    assert_eq!(
        s.get_workflow("o2", "wb").await.unwrap().unwrap().version,
        1
    );
    assert_eq!(
        s.find_webhook("own").await.unwrap().unwrap().workflow_id,
        "wb"
    );
    // Keeping one's own webhook id on update is fine.
    assert!(s.update_workflow(&b2, &[route(&b2, "own")]).await.unwrap());
}

#[tokio::test]
async fn workflow_pages_newest_first_per_organization() {
    let dir = TestDir::new();
    let s = store(&dir);
    for i in 0..7 {
        let mut wf = workflow(
            "o1",
            &format!("w{i}"),
            WorkflowStatus::Draft,
            "trigger.manual",
        );
        // Two share a creation time: the id breaks the tie.
        wf.created_at = ts(i64::from(i / 2 * 2) * 1000);
        s.create_workflow(&wf, &[]).await.unwrap();
    }
    s.create_workflow(
        &workflow("o2", "x", WorkflowStatus::Draft, "trigger.manual"),
        &[],
    )
    .await
    .unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s.list_workflows("o1", 3, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|w| (w.created_at, w.id.clone())));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        7,
        "no duplicates"
    );

    let other = s.list_workflows("o2", 10, None).await.unwrap();
    assert_eq!(other.items.len(), 1);
    assert_eq!(other.next_cursor, None);

    let first = s.list_workflows("o1", 3, None).await.unwrap();
    let c = first.next_cursor.unwrap();
    assert!(matches!(
        s.list_workflows("o2", 3, Some(&c)).await,
        Err(StoreError::InvalidCursor)
    ));
    assert!(matches!(
        s.list_workflows("o1", 3, Some("garbage")).await,
        Err(StoreError::InvalidCursor)
    ));
}

#[tokio::test]
async fn scheduled_workflows_are_the_active_ones_with_a_schedule_trigger() {
    let dir = TestDir::new();
    let s = store(&dir);
    let a = workflow("o1", "a", WorkflowStatus::Active, "trigger.schedule");
    let b = workflow("o2", "b", WorkflowStatus::Active, "trigger.schedule");
    let draft = workflow("o1", "draft", WorkflowStatus::Draft, "trigger.schedule");
    let manual = workflow("o1", "manual", WorkflowStatus::Active, "trigger.manual");
    for wf in [&a, &b, &draft, &manual] {
        s.create_workflow(wf, &[]).await.unwrap();
    }
    let ids = |v: Vec<Workflow>| v.into_iter().map(|w| w.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_scheduled_workflows().await.unwrap()), ["a", "b"]);

    // Activating the draft adds it; deactivating `a` removes it; deleting `b` too.
    let mut draft2 = draft.clone();
    draft2.version = 2;
    draft2.status = WorkflowStatus::Active;
    assert!(s.update_workflow(&draft2, &[]).await.unwrap());
    let mut a2 = a.clone();
    a2.version = 2;
    a2.status = WorkflowStatus::Inactive;
    assert!(s.update_workflow(&a2, &[]).await.unwrap());
    assert!(s.delete_workflow("o2", "b").await.unwrap());
    assert_eq!(ids(s.list_scheduled_workflows().await.unwrap()), ["draft"]);
}

// ---- executions ----------------------------------------------------------------------

/// The execution and its first runs commit together; an idempotent repeat writes no runs,
/// and a failed creation leaves no runs behind.
#[tokio::test]
async fn create_execution_with_runs_is_one_atomic_write() {
    let dir = TestDir::new();
    let s = store(&dir);
    let wf = workflow("o1", "w1", WorkflowStatus::Active, "trigger.manual");
    s.create_workflow(&wf, &[]).await.unwrap();

    let e1 = execution("o1", "w1", 1000);
    let mut start = NodeRun::new(&e1.id, "start");
    start.ready = true;
    assert_eq!(
        s.create_execution_with_runs(&e1, &[start.clone()], Some("k"), ts(0))
            .await
            .unwrap(),
        Created::Created(e1.clone())
    );
    let state = s.get_execution_state("o1", &e1.id).await.unwrap().unwrap();
    assert_eq!(state.execution, e1);
    assert_eq!(state.node_runs, vec![start]);

    // The same key again: the first execution; the new one and its runs are not written.
    let e2 = execution("o1", "w1", 2000);
    let runs2 = [NodeRun::new(&e2.id, "start")];
    assert_eq!(
        s.create_execution_with_runs(&e2, &runs2, Some("k"), ts(0))
            .await
            .unwrap(),
        Created::Existing(e1.clone())
    );
    assert_eq!(s.get_execution_state("o1", &e2.id).await.unwrap(), None);

    // The same id twice: a conflict, and the runs of the refused call are not written.
    let other = NodeRun::new(&e1.id, "next");
    assert!(matches!(
        s.create_execution_with_runs(&e1, &[other], None, ts(0))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let state = s.get_execution_state("o1", &e1.id).await.unwrap().unwrap();
    assert_eq!(state.node_runs.len(), 1);
}

#[tokio::test]
async fn create_execution_counts_and_honours_idempotency_keys() {
    let dir = TestDir::new();
    let s = store(&dir);
    let wf = workflow("o1", "w1", WorkflowStatus::Active, "trigger.manual");
    s.create_workflow(&wf, &[]).await.unwrap();

    let e1 = execution("o1", "w1", 1000);
    assert_eq!(
        s.create_execution(&e1, Some("o1:key"), ts(0))
            .await
            .unwrap(),
        Created::Created(e1.clone())
    );
    assert_eq!(
        s.get_execution("o1", &e1.id).await.unwrap(),
        Some(e1.clone())
    );
    assert_eq!(s.get_execution("o2", &e1.id).await.unwrap(), None);

    // Same key within its window: the first execution, nothing new stored.
    let e2 = execution("o1", "w1", 2000);
    assert_eq!(
        s.create_execution(&e2, Some("o1:key"), ts(500))
            .await
            .unwrap(),
        Created::Existing(e1.clone())
    );
    assert_eq!(s.get_execution("o1", &e2.id).await.unwrap(), None);

    // Once the key is older than the window it is replaced.
    assert_eq!(
        s.create_execution(&e2, Some("o1:key"), ts(1001))
            .await
            .unwrap(),
        Created::Created(e2.clone())
    );
    let e3 = execution("o1", "w1", 3000);
    assert_eq!(
        s.create_execution(&e3, Some("o1:key"), ts(1500))
            .await
            .unwrap(),
        Created::Existing(e2.clone())
    );

    // Without a key: always new. The same id twice is a conflict.
    s.create_execution(&e3, None, ts(0)).await.unwrap();
    assert!(matches!(
        s.create_execution(&e3, None, ts(0)).await,
        Err(StoreError::Conflict(_))
    ));

    let stored = s.get_workflow("o1", "w1").await.unwrap().unwrap();
    assert_eq!(stored.execution_count, 3);
    assert_eq!(stored.last_executed_at, Some(ts(3000)));
    // Counters survive an update of the definition.
    let mut wf2 = stored.clone();
    wf2.version = 2;
    wf2.execution_count = 0;
    assert!(s.update_workflow(&wf2, &[]).await.unwrap());
    assert_eq!(
        s.get_workflow("o1", "w1")
            .await
            .unwrap()
            .unwrap()
            .execution_count,
        3
    );
}

#[tokio::test]
async fn transitions_happen_only_from_the_given_statuses() {
    let dir = TestDir::new();
    let s = store(&dir);
    let e = execution("o1", "w1", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();

    let mut running = e.clone();
    running.status = ExecutionStatus::Running;
    running.started_at = Some(ts(10));
    use ExecutionStatus::*;
    assert!(
        !s.transition_execution(&running, &[Running, Paused])
            .await
            .unwrap()
    );
    assert!(!s.transition_execution(&running, &[]).await.unwrap());
    assert!(s.transition_execution(&running, &[Pending]).await.unwrap());
    assert_eq!(
        s.get_execution("o1", &e.id).await.unwrap(),
        Some(running.clone())
    );

    // Another organization cannot move it.
    let mut foreign = running.clone();
    foreign.organization_id = "o2".into();
    foreign.status = Cancelled;
    assert!(
        !s.transition_execution(&foreign, &ExecutionStatus::ALL)
            .await
            .unwrap()
    );

    let done = finished(running.clone(), Success, 250);
    assert!(
        s.transition_execution(&done, &[Pending, Running, Paused])
            .await
            .unwrap()
    );
    // Terminal: no move from the unfinished statuses succeeds any more.
    let cancelled = finished(running, Cancelled, 300);
    assert!(
        !s.transition_execution(&cancelled, &ExecutionStatus::UNFINISHED)
            .await
            .unwrap()
    );
    assert_eq!(s.get_execution("o1", &e.id).await.unwrap(), Some(done));
    assert_eq!(
        s.list_unfinished_executions(10, None).await.unwrap().items,
        vec![]
    );
}

#[tokio::test]
async fn execution_pages_walk_every_row_once_with_filters() {
    let dir = TestDir::new();
    let s = store(&dir);
    let mut all = Vec::new();
    for i in 0..25i64 {
        let wf = if i % 2 == 0 { "even" } else { "odd" };
        // Pairs share a creation time.
        let mut e = execution("o1", wf, i / 2 * 1000);
        if i % 5 == 0 {
            e.mode = ExecutionMode::Webhook;
        }
        s.create_execution(&e, None, ts(0)).await.unwrap();
        if i % 3 == 0 {
            let done = finished(e.clone(), ExecutionStatus::Success, 10);
            assert!(
                s.transition_execution(&done, &[ExecutionStatus::Pending])
                    .await
                    .unwrap()
            );
            e = done;
        }
        all.push(e);
    }
    s.create_execution(&execution("o2", "even", 0), None, ts(0))
        .await
        .unwrap();

    async fn walk(s: &SqliteStore, org: &str, f: &ExecutionFilter, limit: usize) -> Vec<Execution> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = s
                .list_executions(org, f, limit, cursor.as_deref())
                .await
                .unwrap();
            assert!(page.items.len() <= limit);
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    }
    let expect = |pred: &dyn Fn(&Execution) -> bool| {
        let mut v: Vec<Execution> = all.iter().filter(|e| pred(e)).cloned().collect();
        v.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        v
    };

    let everything = walk(&s, "o1", &ExecutionFilter::default(), 4).await;
    assert_eq!(everything, expect(&|_| true));
    assert_eq!(
        everything
            .iter()
            .map(|e| &e.id)
            .collect::<HashSet<_>>()
            .len(),
        25
    );

    let f = ExecutionFilter {
        workflow_id: Some("even".into()),
        ..Default::default()
    };
    assert_eq!(
        walk(&s, "o1", &f, 3).await,
        expect(&|e| e.workflow_id == "even")
    );

    let f = ExecutionFilter {
        status: Some(ExecutionStatus::Success),
        ..Default::default()
    };
    assert_eq!(
        walk(&s, "o1", &f, 2).await,
        expect(&|e| e.status == ExecutionStatus::Success)
    );

    let f = ExecutionFilter {
        mode: Some(ExecutionMode::Webhook),
        workflow_id: Some("odd".into()),
        ..Default::default()
    };
    assert_eq!(
        walk(&s, "o1", &f, 2).await,
        expect(&|e| e.mode == ExecutionMode::Webhook && e.workflow_id == "odd")
    );

    let f = ExecutionFilter {
        start_date: Some(ts(3000)),
        end_date: Some(ts(7000)),
        ..Default::default()
    };
    assert_eq!(
        walk(&s, "o1", &f, 3).await,
        expect(&|e| e.created_at >= ts(3000) && e.created_at <= ts(7000))
    );

    // Organization isolation, and cursors bound to their organization and query.
    assert_eq!(
        walk(&s, "o2", &ExecutionFilter::default(), 10).await.len(),
        1
    );
    assert!(
        walk(&s, "o3", &ExecutionFilter::default(), 10)
            .await
            .is_empty()
    );
    let first = s
        .list_executions("o1", &ExecutionFilter::default(), 5, None)
        .await
        .unwrap();
    let c = first.next_cursor.unwrap();
    assert!(matches!(
        s.list_executions("o2", &ExecutionFilter::default(), 5, Some(&c))
            .await,
        Err(StoreError::InvalidCursor)
    ));
    let other_query = ExecutionFilter {
        status: Some(ExecutionStatus::Pending),
        ..Default::default()
    };
    assert!(matches!(
        s.list_executions("o1", &other_query, 5, Some(&c)).await,
        Err(StoreError::InvalidCursor)
    ));
    for bad in ["", "!!!", "eyJ4IjoxfQ", &c[..c.len() / 2]] {
        assert!(
            matches!(
                s.list_executions("o1", &ExecutionFilter::default(), 5, Some(bad))
                    .await,
                Err(StoreError::InvalidCursor)
            ),
            "cursor {bad:?}"
        );
    }
}

#[tokio::test]
async fn statistics_over_a_range() {
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
    assert_eq!(st.by_status.get("success"), Some(&20));
    assert_eq!(st.by_status.get("failed"), Some(&4));
    assert_eq!(st.by_status.get("timeout"), Some(&1));
    assert_eq!(st.by_status.get("running"), Some(&3));
    assert_eq!(st.by_mode.get("manual"), Some(&23));
    assert_eq!(st.by_mode.get("webhook"), Some(&4));
    assert_eq!(st.by_mode.get("api"), Some(&1));
    assert!((st.success_rate - 20.0 / 25.0).abs() < 1e-9);
    let sum: u64 = (1..=20u64).map(|i| i * 10).sum::<u64>() + 4000 + 5000;
    assert!((st.average_duration - sum as f64 / 25.0).abs() < 1e-9);
    // Nearest rank: ceil(0.95 * 25) = 24th of the sorted durations = 1000.
    assert_eq!(st.p95_duration, 1000.0);

    // Only the first ten (created at 10..=100 ms): successes of 10..=100 ms.
    let st = s
        .execution_statistics("o1", Some(ts(0)), Some(ts(100)))
        .await
        .unwrap();
    assert_eq!(st.total, 10);
    assert_eq!(st.success_rate, 1.0);
    assert!((st.average_duration - 55.0).abs() < 1e-9);
    assert_eq!(st.p95_duration, 100.0);

    assert_eq!(st.by_status.get("cancelled"), Some(&0));
    assert_eq!(st.by_mode.get("test"), Some(&0));

    let empty = s.execution_statistics("o3", None, None).await.unwrap();
    assert_eq!(empty.total, 0);
    assert_eq!(empty.by_status.len(), 7);
    assert!(empty.by_status.values().all(|n| *n == 0));
    assert_eq!(empty.by_mode.len(), 5);
    assert_eq!(
        (
            empty.success_rate,
            empty.average_duration,
            empty.p95_duration
        ),
        (0.0, 0.0, 0.0)
    );
}

#[tokio::test]
async fn unfinished_executions_by_deadline_and_counts() {
    let dir = TestDir::new();
    let s = store(&dir);
    use ExecutionStatus::*;
    let mut expected = Vec::new();
    for i in 0..9i64 {
        let org = if i % 2 == 0 { "o1" } else { "o2" };
        let mut e = execution(org, "w", i * 1000);
        // Deadlines in reverse creation order.
        e.deadline = ts(100_000 - i * 1000);
        s.create_execution(&e, None, ts(0)).await.unwrap();
        let status = [Pending, Running, Paused, Success][i as usize % 4];
        let mut moved = e.clone();
        moved.status = status;
        if status != Pending {
            assert!(s.transition_execution(&moved, &[Pending]).await.unwrap());
        }
        if !status.is_terminal() {
            expected.push(moved);
        }
    }
    expected.sort_by_key(|e| (e.deadline, e.id.clone()));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s
            .list_unfinished_executions(2, cursor.as_deref())
            .await
            .unwrap();
        seen.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert!(matches!(
        s.list_unfinished_executions(2, Some("nope")).await,
        Err(StoreError::InvalidCursor)
    ));

    // Created at 0..8 s; statuses by i % 4: pending 0,4,8; running 1,5; paused 2,6; success
    // 3,7; organizations by i % 2: o1 0,2,4,6,8; o2 1,3,5,7. Counted per organization.
    let o1 = s.count_unfinished_executions("o1", ts(4500)).await.unwrap();
    assert_eq!(
        o1,
        UnfinishedCounts {
            running: 0,
            pending: 3,
            paused: 2,
            // pending 0 and 4 were created before 4.5 s.
            stale: 2,
        }
    );
    let o2 = s.count_unfinished_executions("o2", ts(4500)).await.unwrap();
    assert_eq!(
        o2,
        UnfinishedCounts {
            running: 2,
            pending: 0,
            paused: 0,
            // running 1.
            stale: 1,
        }
    );
    let none = s.count_unfinished_executions("o3", ts(4500)).await.unwrap();
    assert_eq!(none, UnfinishedCounts::default());
}

// ---- node runs -----------------------------------------------------------------------

#[tokio::test]
async fn claim_outcomes_and_lease_guarded_saves() {
    let dir = TestDir::new();
    let s = store(&dir);
    let e = execution("o1", "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    let x = e.id.as_str();

    // Never scheduled, or created but not ready: NotReady.
    assert_eq!(
        s.claim_node("o1", x, "start", &claim_at(0)).await.unwrap(),
        ClaimOutcome::NotReady
    );
    s.put_node_runs("o1", &[ready_run(x, "start"), NodeRun::new(x, "later")])
        .await
        .unwrap();
    assert_eq!(
        s.claim_node("o1", x, "later", &claim_at(0)).await.unwrap(),
        ClaimOutcome::NotReady
    );
    // Another organization sees nothing.
    assert_eq!(
        s.claim_node("o2", x, "start", &claim_at(0)).await.unwrap(),
        ClaimOutcome::NotReady
    );
    // put_node_runs never overwrites.
    let mut changed = ready_run(x, "start");
    changed.attempts = 9;
    s.put_node_runs("o1", &[changed]).await.unwrap();

    let c1 = claim_at(1000);
    let ClaimOutcome::Claimed(run) = s.claim_node("o1", x, "start", &c1).await.unwrap() else {
        panic!("expected a claim");
    };
    assert_eq!(run.status, NodeRunStatus::Running);
    assert_eq!(run.attempts, 1);
    assert_eq!(run.lease_token.as_deref(), Some(c1.token.as_str()));
    assert_eq!(run.lease_until, Some(c1.lease_until));
    assert_eq!(run.started_at, Some(c1.now));

    // A live lease: Leased until its end.
    assert_eq!(
        s.claim_node("o1", x, "start", &claim_at(2000))
            .await
            .unwrap(),
        ClaimOutcome::Leased {
            until: c1.lease_until
        }
    );

    // The holder records a retry with backoff.
    let mut retry = run.clone();
    retry.status = NodeRunStatus::Pending;
    retry.not_before = Some(ts(10_000));
    retry.error = Some(NodeError::new(ErrorKind::Network, "boom"));
    assert!(!s.save_node_run("o1", &retry, "wrong-token").await.unwrap());
    assert!(!s.save_node_run("o2", &retry, &c1.token).await.unwrap());
    assert!(s.save_node_run("o1", &retry, &c1.token).await.unwrap());
    assert_eq!(
        s.claim_node("o1", x, "start", &claim_at(5000))
            .await
            .unwrap(),
        ClaimOutcome::NotYet {
            not_before: ts(10_000)
        }
    );

    // Second attempt: its lease expires (a crashed worker) and a third claim takes over.
    let c2 = claim_at(10_000);
    let ClaimOutcome::Claimed(run2) = s.claim_node("o1", x, "start", &c2).await.unwrap() else {
        panic!("expected a claim");
    };
    assert_eq!(run2.attempts, 2);
    let c3 = claim_at(40_000);
    let ClaimOutcome::Claimed(run3) = s.claim_node("o1", x, "start", &c3).await.unwrap() else {
        panic!("expected a claim after the lease expired");
    };
    assert_eq!(run3.attempts, 3);
    // The crashed worker's late result is discarded.
    let mut late = run2.clone();
    late.status = NodeRunStatus::Success;
    assert!(!s.save_node_run("o1", &late, &c2.token).await.unwrap());

    let mut done = run3.clone();
    done.status = NodeRunStatus::Success;
    done.output = Some(json!({"ok": true}));
    done.finished_at = Some(ts(41_000));
    assert!(s.save_node_run("o1", &done, &c3.token).await.unwrap());
    assert_eq!(
        s.claim_node("o1", x, "start", &claim_at(50_000))
            .await
            .unwrap(),
        ClaimOutcome::Finished(done.clone())
    );

    let state = s.get_execution_state("o1", x).await.unwrap().unwrap();
    assert_eq!(state.execution, e);
    assert_eq!(state.node_runs.len(), 2);
    assert_eq!(state.run("start"), Some(&done));
    assert_eq!(state.run("later"), Some(&NodeRun::new(x, "later")));
    assert_eq!(s.get_execution_state("o2", x).await.unwrap(), None);
    assert_eq!(s.get_execution_state("o1", "missing").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_claims_one_winner() {
    let dir = TestDir::new();
    let s = store(&dir);
    let e = execution("o1", "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    s.put_node_runs("o1", &[ready_run(&e.id, "n")])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let id = e.id.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_node("o1", &id, "n", &claim_at(1000)).await.unwrap()
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        match t.await.unwrap() {
            ClaimOutcome::Claimed(run) => {
                claimed += 1;
                assert_eq!(run.attempts, 1);
            }
            ClaimOutcome::Leased { .. } => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(claimed, 1);
}

#[tokio::test]
async fn arrivals_decide_a_join_once() {
    let dir = TestDir::new();
    let s = store(&dir);
    let e = execution("o1", "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    let x = e.id.as_str();

    // Three parents; `a` arrives twice before the set is complete.
    assert_eq!(
        s.arrive("o1", &arrival(x, "join", "a", true, 3), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    assert!(matches!(
        s.arrive("o1", &arrival(x, "join", "a", true, 3), None)
            .await
            .unwrap(),
        Arrival::Duplicate(r) if !r.ready && r.arrived == 1
    ));
    assert_eq!(
        s.arrive("o1", &arrival(x, "join", "b", false, 3), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    let c = claim_at(1000);
    let Arrival::Ready(run) = s
        .arrive("o1", &arrival(x, "join", "c", false, 3), Some(&c))
        .await
        .unwrap()
    else {
        panic!("expected ready");
    };
    assert!(run.ready);
    // Claimed in the same write: inline execution.
    assert_eq!(run.status, NodeRunStatus::Running);
    assert_eq!(run.attempts, 1);
    assert_eq!(run.lease_token.as_deref(), Some(c.token.as_str()));
    assert_eq!((run.arrived, run.taken), (3, 1));
    // Late duplicates: the child as it is.
    for p in ["a", "b", "c"] {
        let again = s
            .arrive("o1", &arrival(x, "join", p, true, 3), None)
            .await
            .unwrap();
        assert!(matches!(again, Arrival::Duplicate(r) if r.ready), "{p}");
    }

    // Without a claim the run is ready and pending, claimable by its job.
    let Arrival::Ready(run) = s
        .arrive("o1", &arrival(x, "single", "a", true, 1), None)
        .await
        .unwrap()
    else {
        panic!("expected ready");
    };
    assert_eq!(
        (run.status, run.ready, run.attempts),
        (NodeRunStatus::Pending, true, 0)
    );
    assert!(matches!(
        s.claim_node("o1", x, "single", &claim_at(0)).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));

    // No taken connection: skipped, once.
    assert_eq!(
        s.arrive("o1", &arrival(x, "dead", "a", false, 2), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    let Arrival::Skipped(run) = s
        .arrive("o1", &arrival(x, "dead", "b", false, 2), Some(&claim_at(0)))
        .await
        .unwrap()
    else {
        panic!("expected skipped");
    };
    assert_eq!(run.status, NodeRunStatus::Skipped);
    assert!(!run.ready);
    assert!(matches!(
        s.arrive("o1", &arrival(x, "dead", "b", false, 2), None)
            .await
            .unwrap(),
        Arrival::Duplicate(r) if r.status == NodeRunStatus::Skipped
    ));
    assert!(matches!(
        s.claim_node("o1", x, "dead", &claim_at(0)).await.unwrap(),
        ClaimOutcome::Finished(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_parents_arriving_twice_concurrently_make_one_ready() {
    let dir = TestDir::new();
    let s = store(&dir);
    let e = execution("o1", "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    let mut tasks = Vec::new();
    for round in 0..2 {
        for p in 0..10 {
            let s = s.clone();
            let id = e.id.clone();
            tasks.push(tokio::spawn(async move {
                let claim = claim_at(1000);
                s.arrive(
                    "o1",
                    &arrival(&id, "join", &format!("p{p}"), p % 3 == round, 10),
                    Some(&claim),
                )
                .await
                .unwrap()
            }));
        }
    }
    let mut ready = 0;
    for t in tasks {
        match t.await.unwrap() {
            Arrival::Ready(run) => {
                ready += 1;
                assert_eq!(run.arrived, 10);
                assert_eq!(run.status, NodeRunStatus::Running);
            }
            Arrival::Waiting | Arrival::Duplicate(_) => {}
            Arrival::AlreadyDecided => panic!("the store knows every arrival"),
            Arrival::Skipped(_) => panic!("taken connections exist"),
        }
    }
    assert_eq!(ready, 1);
    let state = s.get_execution_state("o1", &e.id).await.unwrap().unwrap();
    let run = state.run("join").unwrap();
    assert_eq!(run.arrived, 10);
    assert_eq!(run.attempts, 1);
}

// ---- logs ----------------------------------------------------------------------------

#[tokio::test]
async fn logs_oldest_first_with_filters_and_tailing() {
    let dir = TestDir::new();
    let s = store(&dir);
    let e = execution("o1", "w", 0);
    let other = execution("o2", "w", 0);
    let mut logs = Vec::new();
    for i in 0..12 {
        let level = if i % 4 == 0 {
            LogLevel::Error
        } else {
            LogLevel::Info
        };
        let node = if i % 2 == 0 { Some("a") } else { Some("b") };
        logs.push(log(&e, node, level, &format!("m{i}")));
    }
    logs.push(log(&e, None, LogLevel::Info, "execution started"));
    s.append_logs(&logs[..6]).await.unwrap();
    s.append_logs(&logs[6..]).await.unwrap();
    // Appending the same ids again adds nothing.
    s.append_logs(&logs[..2]).await.unwrap();
    s.append_logs(&[log(&other, None, LogLevel::Info, "theirs")])
        .await
        .unwrap();

    let page = s
        .list_logs("o1", &e.id, &LogFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(page.items, logs);
    assert_eq!(page.next_cursor, None);
    assert_eq!(page.items[0].organization_id, "o1");

    // Tailing in pages of 5 with `after`.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let f = LogFilter {
            after: after.clone(),
            ..Default::default()
        };
        let page = s.list_logs("o1", &e.id, &f, 5).await.unwrap();
        seen.extend(page.items);
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, logs);

    let f = LogFilter {
        level: Some(LogLevel::Error),
        node_id: Some("a".into()),
        after: None,
    };
    let errors = s.list_logs("o1", &e.id, &f, 100).await.unwrap().items;
    assert_eq!(
        errors
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>(),
        ["m0", "m4", "m8"]
    );
    let f = LogFilter {
        node_id: Some("b".into()),
        ..Default::default()
    };
    assert_eq!(
        s.list_logs("o1", &e.id, &f, 100).await.unwrap().items.len(),
        6
    );

    // Another organization reading this execution's logs sees none.
    assert!(
        s.list_logs("o2", &e.id, &LogFilter::default(), 100)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

// ---- credentials ---------------------------------------------------------------------

#[tokio::test]
async fn credentials_by_id_or_name_unique_per_organization() {
    let dir = TestDir::new();
    let s = store(&dir);
    let a = credential("o1", "api", 1000);
    s.put_credential(&a).await.unwrap();
    match s.put_credential(&credential("o1", "api", 2000)).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("api"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The same name in another organization is fine.
    let b = credential("o2", "api", 1000);
    s.put_credential(&b).await.unwrap();

    let id = a.credential.id.as_str();
    assert_eq!(s.get_credential("o1", id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        s.get_credential("o1", "api").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.get_credential("o2", "api").await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(s.get_credential("o2", id).await.unwrap(), None);
    assert_eq!(s.get_credential("o1", "missing").await.unwrap(), None);

    for i in 0..6 {
        s.put_credential(&credential("o1", &format!("c{i}"), 2000 + i))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s
            .list_credentials("o1", 3, cursor.as_deref())
            .await
            .unwrap();
        names.extend(page.items.into_iter().map(|c| c.name));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(names, ["c5", "c4", "c3", "c2", "c1", "c0", "api"]);
    let c = s
        .list_credentials("o1", 3, None)
        .await
        .unwrap()
        .next_cursor
        .unwrap();
    assert!(matches!(
        s.list_credentials("o2", 3, Some(&c)).await,
        Err(StoreError::InvalidCursor)
    ));

    assert!(!s.delete_credential("o2", id).await.unwrap());
    assert!(s.delete_credential("o1", id).await.unwrap());
    assert!(!s.delete_credential("o1", id).await.unwrap());
    assert_eq!(s.get_credential("o1", "api").await.unwrap(), None);
    // The name is free again.
    s.put_credential(&credential("o1", "api", 3000))
        .await
        .unwrap();
}

// ---- circuit breaker -----------------------------------------------------------------

#[tokio::test]
async fn circuit_state_compare_and_set() {
    let dir = TestDir::new();
    let s = store(&dir);
    assert_eq!(s.get_circuit("host").await.unwrap(), None);
    let mut st = CircuitState {
        consecutive_failures: 1,
        version: 1,
        ..Default::default()
    };
    assert!(s.put_circuit("host", &st).await.unwrap());
    // A second "first write" loses.
    assert!(!s.put_circuit("host", &st).await.unwrap());
    assert_eq!(s.get_circuit("host").await.unwrap(), Some(st.clone()));

    st.consecutive_failures = 5;
    st.opened_at = Some(ts(0));
    st.version = 2;
    assert!(s.put_circuit("host", &st).await.unwrap());
    // Stale writers (based on version 1) lose.
    assert!(!s.put_circuit("host", &st).await.unwrap());
    let mut skip = st.clone();
    skip.version = 4;
    assert!(!s.put_circuit("host", &skip).await.unwrap());
    let zero = CircuitState::default();
    assert!(!s.put_circuit("host", &zero).await.unwrap());
    assert_eq!(s.get_circuit("host").await.unwrap(), Some(st));
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
        s.put_circuit("k", &st).await.unwrap();
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
    assert_eq!(s.get_circuit("k").await.unwrap().unwrap().version, 1);
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
