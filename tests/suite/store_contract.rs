//! The storage port's contract, written against the port traits only: every test takes a
//! fresh `Arc<dyn Store>`, and `store_contract!` runs each of them on every backend (SQLite
//! and DynamoDB on moto, see `main.rs`).
//!
//! Organization ids, webhook ids, idempotency keys and circuit keys are unique per test, so
//! the tests also hold on a store shared with other tests; the lists that span organizations
//! (scheduled workflows, unfinished executions) are read whole and filtered to the test's
//! organizations.
//!
//! What is not here is adapter-specific: SQLite's file, threads, migrations, `prune` and
//! exact statistics in `shared/src/adapters/sqlite/store_tests.rs`; DynamoDB's item shapes,
//! TTL attributes, request counts, signed cursors and item size limit in `aws.rs`.

use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use weconnect_engine::model::*;
use weconnect_engine::ports::*;

// ---- builders ------------------------------------------------------------------------------

const T0: i64 = 1_700_000_000_000;

fn ts(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

/// A fresh organization id.
fn org() -> String {
    format!("org-{}", uuid::Uuid::new_v4().simple())
}

/// Two fresh organizations, the first sorting before the second.
fn two_orgs() -> (String, String) {
    let base = org();
    (format!("{base}-1"), format!("{base}-2"))
}

/// An installation-wide unique id (webhook ids, circuit keys).
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
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
    let mut start = node("start", trigger);
    if trigger == "trigger.schedule" {
        start.parameters.insert("rate".into(), json!("5 minutes"));
    }
    Workflow {
        id: id.into(),
        organization_id: org.into(),
        user_id: "user".into(),
        name: format!("Workflow {id}"),
        description: None,
        status,
        version: 1,
        nodes: vec![start, node("next", "flow.noop")],
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

fn execution_at(org: &str, workflow_id: &str, created_at: Timestamp) -> Execution {
    Execution {
        id: new_id(),
        workflow_id: workflow_id.into(),
        workflow_version: 1,
        user_id: "user".into(),
        organization_id: org.into(),
        status: ExecutionStatus::Pending,
        mode: ExecutionMode::Manual,
        input_data: json!({"n": created_at.millis()}),
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
        deadline: created_at.plus(Duration::from_secs(300)),
        created_at,
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

fn execution(org: &str, workflow_id: &str, created: i64) -> Execution {
    execution_at(org, workflow_id, ts(created))
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

/// [`unfinished_of`] ordered by deadline (the list's order across pages is the store's).
async fn unfinished_by_deadline(s: &dyn Store, orgs: &[&str], limit: usize) -> Vec<Execution> {
    let mut all = unfinished_of(s, orgs, limit).await;
    all.sort_by_key(|e| (e.deadline, e.id.clone()));
    all
}

/// The unfinished executions of `orgs`, walking the whole (cross-organization) list in pages
/// of `limit`: no page is larger, a page with a cursor is full.
async fn unfinished_of(s: &dyn Store, orgs: &[&str], limit: usize) -> Vec<Execution> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s
            .list_unfinished_executions(limit, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= limit);
        seen.extend(
            page.items
                .into_iter()
                .filter(|e| orgs.contains(&e.organization_id.as_str())),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return seen,
        }
    }
}

/// The scheduled workflows of `o1` and `o2` (the list spans organizations), as (org, id).
async fn scheduled_of(s: &dyn Store, o1: &str, o2: &str) -> Vec<(String, String)> {
    s.list_scheduled_workflows()
        .await
        .unwrap()
        .into_iter()
        .filter(|w| w.organization_id == o1 || w.organization_id == o2)
        .map(|w| (w.organization_id, w.id))
        .collect()
}

// ---- workflows -----------------------------------------------------------------------------

pub async fn workflow_versions_updates_and_deletes(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let (hook_a, hook_b) = (unique("hook-a"), unique("hook-b"));
    let mut wf = workflow(&o1, "w1", WorkflowStatus::Draft, "trigger.webhook");
    wf.description = Some("a workflow".into());
    s.create_workflow(&wf, &[route(&wf, &hook_a)])
        .await
        .unwrap();
    assert_eq!(s.get_workflow(&o1, "w1").await.unwrap(), Some(wf.clone()));
    assert_eq!(s.get_workflow(&o2, "w1").await.unwrap(), None);
    assert_eq!(
        s.get_workflow_version(&o1, "w1", 1).await.unwrap(),
        Some(wf.clone())
    );
    assert_eq!(
        s.find_webhook(&hook_a).await.unwrap(),
        Some(route(&wf, &hook_a))
    );
    // Creating the same workflow twice is a conflict; so is a webhook id of another workflow,
    // and nothing of the refused workflow is written.
    assert!(matches!(
        s.create_workflow(&wf, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    let w2 = workflow(&o1, "w2", WorkflowStatus::Draft, "trigger.webhook");
    match s.create_workflow(&w2, &[route(&w2, &hook_a)]).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains(&hook_a), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        s.get_workflow(&o1, "w2").await.unwrap(),
        None,
        "nothing written"
    );

    // Version 2 (renamed, activated, description removed) with another route.
    let v1 = wf.clone();
    wf.version = 2;
    wf.name = "Renamed".into();
    wf.status = WorkflowStatus::Active;
    wf.description = None;
    assert!(
        s.update_workflow(&wf, &[route(&wf, &hook_b)])
            .await
            .unwrap()
    );
    assert_eq!(s.get_workflow(&o1, "w1").await.unwrap(), Some(wf.clone()));
    // A stale version (the stored one is 2, not 1) is refused.
    assert!(!s.update_workflow(&wf, &[]).await.unwrap(), "version moved");
    assert_eq!(
        s.get_workflow_version(&o1, "w1", 1).await.unwrap(),
        Some(v1)
    );
    assert_eq!(
        s.get_workflow_version(&o1, "w1", 2).await.unwrap(),
        Some(wf.clone())
    );
    assert_eq!(s.get_workflow_version(&o1, "w1", 3).await.unwrap(), None);
    assert_eq!(s.get_workflow_version(&o2, "w1", 1).await.unwrap(), None);
    // Routes were replaced.
    assert_eq!(s.find_webhook(&hook_a).await.unwrap(), None);
    assert!(s.find_webhook(&hook_b).await.unwrap().is_some());
    // Unknown workflow and other organization: false.
    let mut other = wf.clone();
    other.version = 3;
    other.organization_id = o2.clone();
    assert!(!s.update_workflow(&other, &[]).await.unwrap());

    // The freed webhook id can be taken by another workflow now; a taken one cannot be
    // updated into, and the refused update changes nothing.
    s.create_workflow(&w2, &[route(&w2, &hook_a)])
        .await
        .unwrap();
    let mut v3 = wf.clone();
    v3.version = 3;
    assert!(matches!(
        s.update_workflow(&v3, &[route(&v3, &hook_a)]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_workflow(&o1, "w1").await.unwrap().unwrap().version, 2);

    // Delete: the current version and its routes go; past versions stay for executions.
    assert!(s.delete_workflow(&o1, "w1").await.unwrap());
    assert!(!s.delete_workflow(&o1, "w1").await.unwrap());
    assert_eq!(s.get_workflow(&o1, "w1").await.unwrap(), None);
    assert_eq!(s.find_webhook(&hook_b).await.unwrap(), None);
    assert_eq!(
        s.get_workflow_version(&o1, "w1", 2).await.unwrap(),
        Some(wf)
    );
    assert_eq!(
        s.find_webhook(&hook_a).await.unwrap(),
        Some(route(&w2, &hook_a)),
        "w2 keeps its route"
    );
}

pub async fn webhook_ids_are_unique_across_the_installation(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let (shared, own) = (unique("shared"), unique("own"));
    let a = workflow(&o1, "wa", WorkflowStatus::Active, "trigger.webhook");
    s.create_workflow(&a, &[route(&a, &shared)]).await.unwrap();

    let b = workflow(&o2, "wb", WorkflowStatus::Active, "trigger.webhook");
    match s.create_workflow(&b, &[route(&b, &shared)]).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains(&shared), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Nothing of the refused workflow was stored.
    assert_eq!(s.get_workflow(&o2, "wb").await.unwrap(), None);

    s.create_workflow(&b, &[route(&b, &own)]).await.unwrap();
    let mut b2 = b.clone();
    b2.version = 2;
    match s.update_workflow(&b2, &[route(&b2, &shared)]).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains(&shared), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The refused update changed nothing.
    assert_eq!(s.get_workflow(&o2, "wb").await.unwrap().unwrap().version, 1);
    assert_eq!(
        s.find_webhook(&own).await.unwrap().unwrap().workflow_id,
        "wb"
    );
    assert_eq!(
        s.find_webhook(&shared).await.unwrap(),
        Some(route(&a, &shared))
    );
    // Keeping one's own webhook id on update is fine.
    assert!(s.update_workflow(&b2, &[route(&b2, &own)]).await.unwrap());
}

pub async fn workflow_pages_newest_first_per_organization(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    for i in 0..7 {
        let mut wf = workflow(
            &o1,
            &format!("w{i}"),
            WorkflowStatus::Draft,
            "trigger.manual",
        );
        // Two share a creation time: the id breaks the tie.
        wf.created_at = ts(i64::from(i / 2 * 2) * 1000);
        s.create_workflow(&wf, &[]).await.unwrap();
    }
    s.create_workflow(
        &workflow(&o2, "x", WorkflowStatus::Draft, "trigger.manual"),
        &[],
    )
    .await
    .unwrap();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s.list_workflows(&o1, 3, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= 3);
        sizes.push(page.items.len());
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
    assert_eq!(
        seen.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
        ["w6", "w5", "w4", "w3", "w2", "w1", "w0"]
    );
    assert_eq!(sizes, [3, 3, 1]);

    let other = s.list_workflows(&o2, 10, None).await.unwrap();
    assert_eq!(other.items.len(), 1);
    assert_eq!(other.next_cursor, None);

    // Another organization's cursor, or a forged one, is refused.
    let first = s.list_workflows(&o1, 3, None).await.unwrap();
    let c = first.next_cursor.unwrap();
    assert!(matches!(
        s.list_workflows(&o2, 3, Some(&c)).await,
        Err(StoreError::InvalidCursor)
    ));
    for bad in ["garbage", "eyJ2IjoxfQ.AAAA"] {
        assert!(
            matches!(
                s.list_workflows(&o1, 3, Some(bad)).await,
                Err(StoreError::InvalidCursor)
            ),
            "cursor {bad:?}"
        );
    }
}

pub async fn scheduled_workflows_are_the_active_ones_with_a_schedule_trigger(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let a = workflow(&o1, "a", WorkflowStatus::Active, "trigger.schedule");
    let b = workflow(&o2, "b", WorkflowStatus::Active, "trigger.schedule");
    let draft = workflow(&o1, "draft", WorkflowStatus::Draft, "trigger.schedule");
    let manual = workflow(&o1, "manual", WorkflowStatus::Active, "trigger.manual");
    for wf in [&a, &b, &draft, &manual] {
        s.create_workflow(wf, &[]).await.unwrap();
    }
    // Across organizations (filtered to this test's), by organization then id.
    let s = s.as_ref();
    let mine = || scheduled_of(s, &o1, &o2);
    assert_eq!(
        mine().await,
        [(o1.clone(), "a".to_string()), (o2.clone(), "b".to_string())]
    );

    // Activating the draft adds it; deactivating `a` removes it; deleting `b` too.
    let mut draft2 = draft.clone();
    draft2.version = 2;
    draft2.status = WorkflowStatus::Active;
    assert!(s.update_workflow(&draft2, &[]).await.unwrap());
    let mut a2 = a.clone();
    a2.version = 2;
    a2.status = WorkflowStatus::Inactive;
    assert!(s.update_workflow(&a2, &[]).await.unwrap());
    assert!(s.delete_workflow(&o2, "b").await.unwrap());
    assert_eq!(mine().await, [(o1.clone(), "draft".to_string())]);
    let mut draft3 = draft2.clone();
    draft3.version = 3;
    draft3.status = WorkflowStatus::Inactive;
    assert!(s.update_workflow(&draft3, &[]).await.unwrap());
    assert!(mine().await.is_empty());
}

// ---- executions ----------------------------------------------------------------------------

/// The execution is created with its first runs; an idempotent repeat writes no runs, and a
/// refused creation leaves no runs behind.
pub async fn create_execution_with_runs_writes_runs_only_when_created(s: Arc<dyn Store>) {
    let o = org();
    let key = format!("api:{o}:k");
    let wf = workflow(&o, "w1", WorkflowStatus::Active, "trigger.manual");
    s.create_workflow(&wf, &[]).await.unwrap();

    let e1 = execution(&o, "w1", 1000);
    let start = ready_run(&e1.id, "start");
    assert_eq!(
        s.create_execution_with_runs(&e1, std::slice::from_ref(&start), Some(&key), ts(0))
            .await
            .unwrap(),
        Created::Created(e1.clone())
    );
    let state = s.get_execution_state(&o, &e1.id).await.unwrap().unwrap();
    assert_eq!(state.execution, e1);
    assert_eq!(state.node_runs, vec![start]);

    // The same key again: the first execution; the new one and its runs are not written.
    let e2 = execution(&o, "w1", 2000);
    let runs2 = [NodeRun::new(&e2.id, "start")];
    assert_eq!(
        s.create_execution_with_runs(&e2, &runs2, Some(&key), ts(0))
            .await
            .unwrap(),
        Created::Existing(e1.clone())
    );
    assert_eq!(s.get_execution_state(&o, &e2.id).await.unwrap(), None);

    // The same id twice: a conflict, and the runs of the refused call are not written.
    let other = NodeRun::new(&e1.id, "next");
    assert!(matches!(
        s.create_execution_with_runs(&e1, &[other], None, ts(0))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let state = s.get_execution_state(&o, &e1.id).await.unwrap().unwrap();
    assert_eq!(state.node_runs.len(), 1);
}

pub async fn create_execution_counts_and_honours_idempotency_keys(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let key = format!("api:{o1}:key");
    let wf = workflow(&o1, "w1", WorkflowStatus::Active, "trigger.manual");
    s.create_workflow(&wf, &[]).await.unwrap();

    let e1 = execution(&o1, "w1", 1000);
    assert_eq!(
        s.create_execution(&e1, Some(&key), ts(0)).await.unwrap(),
        Created::Created(e1.clone())
    );
    assert_eq!(
        s.get_execution(&o1, &e1.id).await.unwrap(),
        Some(e1.clone())
    );
    assert_eq!(s.get_execution(&o2, &e1.id).await.unwrap(), None);

    // Same key within its window: the first execution, nothing new stored.
    let e2 = execution(&o1, "w1", 2000);
    assert_eq!(
        s.create_execution(&e2, Some(&key), ts(500)).await.unwrap(),
        Created::Existing(e1.clone())
    );
    assert_eq!(s.get_execution(&o1, &e2.id).await.unwrap(), None);

    // The same key in another organization starts that organization's execution.
    s.create_workflow(
        &workflow(&o2, "w1", WorkflowStatus::Active, "trigger.manual"),
        &[],
    )
    .await
    .unwrap();
    let theirs = execution(&o2, "w1", 1000);
    assert_eq!(
        s.create_execution(&theirs, Some(&key), ts(0))
            .await
            .unwrap(),
        Created::Created(theirs.clone())
    );

    // Once the key is older than the window it is replaced.
    assert_eq!(
        s.create_execution(&e2, Some(&key), ts(1001)).await.unwrap(),
        Created::Created(e2.clone())
    );
    let e3 = execution(&o1, "w1", 3000);
    assert_eq!(
        s.create_execution(&e3, Some(&key), ts(1500)).await.unwrap(),
        Created::Existing(e2.clone())
    );

    // Without a key: always new. The same id twice is a conflict.
    s.create_execution(&e3, None, ts(0)).await.unwrap();
    assert!(matches!(
        s.create_execution(&e3, None, ts(0)).await,
        Err(StoreError::Conflict(_))
    ));

    // The workflow's executionCount and lastExecutedAt count created executions only.
    let with_activity = |wf: Workflow| {
        let s = s.clone();
        let org = o1.clone();
        async move {
            let mut wf = [wf];
            s.add_activity(&org, &mut wf).await.unwrap();
            let [wf] = wf;
            wf
        }
    };
    let stored = with_activity(s.get_workflow(&o1, "w1").await.unwrap().unwrap()).await;
    assert_eq!(stored.execution_count, 3);
    assert_eq!(stored.last_executed_at, Some(ts(3000)));
    // Counters survive an update of the definition.
    let mut wf2 = s.get_workflow(&o1, "w1").await.unwrap().unwrap();
    wf2.version = 2;
    wf2.execution_count = 0;
    assert!(s.update_workflow(&wf2, &[]).await.unwrap());
    let updated = with_activity(s.get_workflow(&o1, "w1").await.unwrap().unwrap()).await;
    assert_eq!(updated.execution_count, 3);

    // Concurrent creations with one key: exactly one is created, the others get it.
    s.create_workflow(
        &workflow(&o1, "w2", WorkflowStatus::Active, "trigger.manual"),
        &[],
    )
    .await
    .unwrap();
    let key2 = format!("webhook:{o1}:k2");
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let s = s.clone();
            let key2 = key2.clone();
            let e = execution(&o1, "w2", 10_000 + i);
            tokio::spawn(async move {
                s.create_execution(&e, Some(&key2), Timestamp::from_millis(0))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<Created> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let created: Vec<&Execution> = results
        .iter()
        .filter_map(|r| match r {
            Created::Created(e) => Some(e),
            Created::Existing(_) => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    let winner = created[0];
    for r in &results {
        if let Created::Existing(e) = r {
            assert_eq!(e, winner);
        }
    }
    let w2 = with_activity(s.get_workflow(&o1, "w2").await.unwrap().unwrap()).await;
    assert_eq!(w2.execution_count, 1);
    assert_eq!(w2.last_executed_at, Some(winner.created_at));
}

pub async fn transitions_happen_only_from_the_given_statuses(s: Arc<dyn Store>) {
    use ExecutionStatus::*;
    let (o1, o2) = two_orgs();
    let e = execution(&o1, "w1", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();

    let mut running = e.clone();
    running.status = Running;
    running.started_at = Some(ts(10));
    assert!(
        !s.transition_execution(&running, &[Running, Paused])
            .await
            .unwrap()
    );
    assert!(!s.transition_execution(&running, &[]).await.unwrap());
    assert!(s.transition_execution(&running, &[Pending]).await.unwrap());
    assert_eq!(
        s.get_execution(&o1, &e.id).await.unwrap(),
        Some(running.clone())
    );

    // Another organization cannot move it.
    let mut foreign = running.clone();
    foreign.organization_id = o2.clone();
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
    // Terminal: no move from the unfinished statuses succeeds any more, whatever the target.
    let cancelled = finished(running, Cancelled, 300);
    assert!(
        !s.transition_execution(&cancelled, &ExecutionStatus::UNFINISHED)
            .await
            .unwrap()
    );
    for to in ExecutionStatus::ALL {
        let mut next = done.clone();
        next.status = to;
        assert!(
            !s.transition_execution(&next, &ExecutionStatus::UNFINISHED)
                .await
                .unwrap(),
            "{to:?}"
        );
    }
    assert_eq!(s.get_execution(&o1, &e.id).await.unwrap(), Some(done));

    // Straight from pending to failed: final too.
    let mut f = execution(&o1, "w1", 100);
    s.create_execution(&f, None, ts(0)).await.unwrap();
    f.status = Failed;
    assert!(s.transition_execution(&f, &[Pending]).await.unwrap());
    for to in ExecutionStatus::ALL {
        let mut next = f.clone();
        next.status = to;
        assert!(
            !s.transition_execution(&next, &ExecutionStatus::UNFINISHED)
                .await
                .unwrap(),
            "{to:?}"
        );
    }
    assert_eq!(
        s.get_execution(&o1, &f.id).await.unwrap().unwrap().status,
        Failed
    );
    // Neither is in the unfinished view any more.
    assert_eq!(unfinished_of(s.as_ref(), &[&o1, &o2], 10).await, vec![]);
}

pub async fn concurrent_terminal_moves_one_wins(s: Arc<dyn Store>) {
    use ExecutionStatus::*;
    let o = org();
    let mut e = execution(&o, "wf", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    e.status = Running;
    e.started_at = Some(ts(10));
    assert!(!s.transition_execution(&e, &[Running]).await.unwrap());
    assert!(s.transition_execution(&e, &[Pending]).await.unwrap());

    let mut ok = e.clone();
    ok.status = Success;
    ok.duration = 1234;
    ok.completed_at = Some(ts(1244));
    let mut cancel = e.clone();
    cancel.status = Cancelled;
    cancel.completed_at = Some(ts(500));
    let (a, b) = tokio::join!(
        s.transition_execution(&ok, &[Running]),
        s.transition_execution(&cancel, &[Pending, Running, Paused])
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one terminal move wins");
    let stored = s.get_execution(&o, &e.id).await.unwrap().unwrap();
    assert!(stored.status.is_terminal());
    assert!(stored == ok || stored == cancel, "{stored:?}");
    // Never again.
    let mut again = stored.clone();
    again.status = Failed;
    assert!(
        !s.transition_execution(&again, &ExecutionStatus::UNFINISHED)
            .await
            .unwrap()
    );
    assert!(!s.transition_execution(&again, &[Running]).await.unwrap());
    assert_eq!(s.get_execution(&o, &e.id).await.unwrap().unwrap(), stored);
}

pub async fn execution_pages_walk_every_row_once_with_filters(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let o3 = org();
    let mut all = Vec::new();
    for i in 0..25i64 {
        let wf = if i % 2 == 0 { "even" } else { "odd" };
        // Pairs share a creation time.
        let mut e = execution(&o1, wf, i / 2 * 1000);
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
    s.create_execution(&execution(&o2, "even", 0), None, ts(0))
        .await
        .unwrap();

    async fn walk(s: &dyn Store, org: &str, f: &ExecutionFilter, limit: usize) -> Vec<Execution> {
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
    let s = s.as_ref();

    let everything = walk(s, &o1, &ExecutionFilter::default(), 4).await;
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
        walk(s, &o1, &f, 3).await,
        expect(&|e| e.workflow_id == "even")
    );

    let f = ExecutionFilter {
        status: Some(ExecutionStatus::Success),
        ..Default::default()
    };
    assert_eq!(
        walk(s, &o1, &f, 2).await,
        expect(&|e| e.status == ExecutionStatus::Success)
    );

    let f = ExecutionFilter {
        mode: Some(ExecutionMode::Webhook),
        workflow_id: Some("odd".into()),
        ..Default::default()
    };
    assert_eq!(
        walk(s, &o1, &f, 2).await,
        expect(&|e| e.mode == ExecutionMode::Webhook && e.workflow_id == "odd")
    );

    let f = ExecutionFilter {
        start_date: Some(ts(3000)),
        end_date: Some(ts(7000)),
        ..Default::default()
    };
    assert_eq!(
        walk(s, &o1, &f, 3).await,
        expect(&|e| e.created_at >= ts(3000) && e.created_at <= ts(7000))
    );

    // Organization isolation, and cursors bound to their organization and query.
    assert_eq!(walk(s, &o2, &ExecutionFilter::default(), 10).await.len(), 1);
    assert!(
        walk(s, &o3, &ExecutionFilter::default(), 10)
            .await
            .is_empty()
    );
    let first = s
        .list_executions(&o1, &ExecutionFilter::default(), 5, None)
        .await
        .unwrap();
    let c = first.next_cursor.unwrap();
    assert!(matches!(
        s.list_executions(&o2, &ExecutionFilter::default(), 5, Some(&c))
            .await,
        Err(StoreError::InvalidCursor)
    ));
    // Another workflow's list is another query (the other filters: see
    // `execution_cursors_are_bound_to_every_filter`).
    let by_workflow = ExecutionFilter {
        workflow_id: Some("odd".into()),
        ..Default::default()
    };
    assert!(matches!(
        s.list_executions(&o1, &by_workflow, 5, Some(&c)).await,
        Err(StoreError::InvalidCursor)
    ));
    // Forged cursors: a changed byte, garbage, or a well-formed payload nobody issued.
    let mut tampered = c.clone();
    tampered.insert(
        3,
        if tampered.as_bytes()[3] == b'A' {
            'B'
        } else {
            'A'
        },
    );
    for bad in [
        "",
        "!!!",
        "not-a-cursor",
        "a.b.c",
        "eyJ4IjoxfQ",
        &c[..c.len() / 2],
        tampered.as_str(),
    ] {
        assert!(
            matches!(
                s.list_executions(&o1, &ExecutionFilter::default(), 5, Some(bad))
                    .await,
                Err(StoreError::InvalidCursor)
            ),
            "cursor {bad:?}"
        );
    }
}

pub async fn execution_pages_newest_first_with_filters_and_date_windows(s: Arc<dyn Store>) {
    let o = org();
    let base = Timestamp::parse("2026-03-01T10:00:00.000Z").unwrap();
    let mut all = Vec::new();
    for i in 0..7u64 {
        let wf = if i % 2 == 0 { "wf-even" } else { "wf-odd" };
        let mut e = execution_at(&o, wf, base.plus(Duration::from_secs(60 * i)));
        e.mode = if i < 3 {
            ExecutionMode::Webhook
        } else {
            ExecutionMode::Manual
        };
        s.create_execution(&e, None, base).await.unwrap();
        if i == 6 {
            e.status = ExecutionStatus::Running;
            assert!(
                s.transition_execution(&e, &[ExecutionStatus::Pending])
                    .await
                    .unwrap()
            );
        }
        all.push(e);
    }
    let ids = |p: &Page<Execution>| p.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    let newest_first: Vec<String> = all.iter().rev().map(|e| e.id.clone()).collect();

    // Pages of 3, newest first.
    let f = ExecutionFilter::default();
    let p1 = s.list_executions(&o, &f, 3, None).await.unwrap();
    assert_eq!(ids(&p1), newest_first[..3]);
    let p2 = s
        .list_executions(&o, &f, 3, p1.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&p2), newest_first[3..6]);
    let p3 = s
        .list_executions(&o, &f, 3, p2.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&p3), newest_first[6..]);
    assert_eq!(p3.next_cursor, None);

    // Filters.
    let by_wf = ExecutionFilter {
        workflow_id: Some("wf-odd".into()),
        ..Default::default()
    };
    let odd = s.list_executions(&o, &by_wf, 10, None).await.unwrap();
    assert_eq!(
        ids(&odd),
        [all[5].id.clone(), all[3].id.clone(), all[1].id.clone()]
    );
    let running = ExecutionFilter {
        status: Some(ExecutionStatus::Running),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.list_executions(&o, &running, 10, None).await.unwrap()),
        [all[6].id.clone()]
    );
    let webhook = ExecutionFilter {
        mode: Some(ExecutionMode::Webhook),
        ..Default::default()
    };
    let p = s.list_executions(&o, &webhook, 2, None).await.unwrap();
    assert_eq!(ids(&p), [all[2].id.clone(), all[1].id.clone()]);
    let p = s
        .list_executions(&o, &webhook, 2, p.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&p), [all[0].id.clone()]);
    let window = ExecutionFilter {
        start_date: Some(all[2].created_at),
        end_date: Some(all[4].created_at),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.list_executions(&o, &window, 10, None).await.unwrap()),
        [all[4].id.clone(), all[3].id.clone(), all[2].id.clone()]
    );
    let since = ExecutionFilter {
        start_date: Some(all[5].created_at),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.list_executions(&o, &since, 10, None).await.unwrap()),
        [all[6].id.clone(), all[5].id.clone()]
    );
    let until = ExecutionFilter {
        end_date: Some(all[0].created_at),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.list_executions(&o, &until, 10, None).await.unwrap()),
        [all[0].id.clone()]
    );
}

/// The port refuses a cursor "issued for another organization or query": a cursor of the
/// unfiltered list is refused by every filtered list, and one of a filtered list by the
/// unfiltered list. (The contract suite found DynamoDB binding cursors to the workflow
/// filter only; it binds them to every filter now.)
pub async fn execution_cursors_are_bound_to_every_filter(s: Arc<dyn Store>) {
    let o = org();
    for i in 0..6 {
        s.create_execution(&execution(&o, "w", i * 1000), None, ts(0))
            .await
            .unwrap();
    }
    let unfiltered = ExecutionFilter::default();
    let c = s
        .list_executions(&o, &unfiltered, 2, None)
        .await
        .unwrap()
        .next_cursor
        .unwrap();
    let others = [
        ExecutionFilter {
            status: Some(ExecutionStatus::Pending),
            ..Default::default()
        },
        ExecutionFilter {
            mode: Some(ExecutionMode::Manual),
            ..Default::default()
        },
        ExecutionFilter {
            start_date: Some(ts(0)),
            ..Default::default()
        },
        ExecutionFilter {
            end_date: Some(ts(10_000)),
            ..Default::default()
        },
        ExecutionFilter {
            workflow_id: Some("w".into()),
            ..Default::default()
        },
    ];
    for other in &others {
        assert!(
            matches!(
                s.list_executions(&o, other, 2, Some(&c)).await,
                Err(StoreError::InvalidCursor)
            ),
            "{other:?}"
        );
        // And the other way round.
        let theirs = s
            .list_executions(&o, other, 2, None)
            .await
            .unwrap()
            .next_cursor
            .unwrap();
        assert!(
            matches!(
                s.list_executions(&o, &unfiltered, 2, Some(&theirs)).await,
                Err(StoreError::InvalidCursor)
            ),
            "{other:?}"
        );
    }
}

/// What both stores count the same way. Time ranges here are whole UTC days: the DynamoDB
/// store keeps its counters per day of `createdAt` and interpolates p95 inside a histogram
/// bucket (see `adapters/aws/dynamo/mod.rs`), so p95 is checked against the bucket of the
/// exact value; the embedded store's exact p95 and millisecond ranges are tested in
/// `adapters/sqlite/store_tests.rs`.
pub async fn statistics_by_status_and_mode_over_whole_days(s: Arc<dyn Store>) {
    use ExecutionStatus::*;
    let (o1, o2) = two_orgs();
    let o3 = org();
    let day1 = Timestamp::parse("2026-05-01T12:00:00.000Z").unwrap();
    let day2 = Timestamp::parse("2026-05-03T12:00:00.000Z").unwrap();
    // 20 successes lasting 10..=200 ms (the first ten, of 10..=100 ms, created on day 1),
    // 4 failures of 1000 ms, 1 timeout of 5000, 3 running; all but the first ten on day 2.
    let mut n = 0u64;
    let mut add = |status: ExecutionStatus, duration: u64, mode: ExecutionMode| {
        n += 1;
        let day = if n <= 10 { day1 } else { day2 };
        let mut e = execution_at(&o1, "w", day.plus(Duration::from_millis(n * 10)));
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
    s.create_execution(&execution_at(&o2, "w", day1), None, ts(0))
        .await
        .unwrap();

    let st = s.execution_statistics(&o1, None, None).await.unwrap();
    assert_eq!(st.total, 28);
    assert_eq!(st.by_status.get("success"), Some(&20));
    assert_eq!(st.by_status.get("failed"), Some(&4));
    assert_eq!(st.by_status.get("timeout"), Some(&1));
    assert_eq!(st.by_status.get("running"), Some(&3));
    assert_eq!(st.by_status.get("pending"), Some(&0));
    assert_eq!(st.by_mode.get("manual"), Some(&23));
    assert_eq!(st.by_mode.get("webhook"), Some(&4));
    assert_eq!(st.by_mode.get("api"), Some(&1));
    assert!((st.success_rate - 20.0 / 25.0).abs() < 1e-9);
    let sum: u64 = (1..=20u64).map(|i| i * 10).sum::<u64>() + 4000 + 5000;
    assert!((st.average_duration - sum as f64 / 25.0).abs() < 1e-9);
    // Nearest rank: ceil(0.95 * 25) = 24th of the sorted durations = 1000.
    assert!(
        st.p95_duration > 750.0 && st.p95_duration <= 1000.0,
        "{}",
        st.p95_duration
    );

    // Only day 1: the first ten successes, of 10..=100 ms.
    let end_of_day1 = Timestamp::parse("2026-05-01T23:59:59.999Z").unwrap();
    let start_of_day1 = Timestamp::parse("2026-05-01T00:00:00.000Z").unwrap();
    let st = s
        .execution_statistics(&o1, Some(start_of_day1), Some(end_of_day1))
        .await
        .unwrap();
    assert_eq!(st.total, 10);
    assert_eq!(st.success_rate, 1.0);
    assert!((st.average_duration - 55.0).abs() < 1e-9);
    // Nearest rank: the 10th of 10..=100 ms = 100.
    assert!(
        st.p95_duration > 75.0 && st.p95_duration <= 100.0,
        "{}",
        st.p95_duration
    );
    // Every status and mode is listed, zero when none.
    assert_eq!(st.by_status.get("cancelled"), Some(&0));
    assert_eq!(st.by_mode.get("test"), Some(&0));

    let empty = s.execution_statistics(&o3, None, None).await.unwrap();
    assert_eq!(empty.total, 0);
    assert_eq!(empty.by_status.len(), 7);
    assert!(empty.by_status.values().all(|n| *n == 0));
    assert_eq!(empty.by_mode.len(), ExecutionMode::ALL.len());
    assert!(empty.by_mode.values().all(|n| *n == 0));
    assert_eq!(
        (
            empty.success_rate,
            empty.average_duration,
            empty.p95_duration
        ),
        (0.0, 0.0, 0.0)
    );
}

/// Status moves (pending → running → terminal) move the counts; a range keeps the days it
/// covers.
pub async fn statistics_follow_status_moves(s: Arc<dyn Store>) {
    let o = org();
    let day1 = Timestamp::parse("2026-05-01T12:00:00.000Z").unwrap();
    let day2 = Timestamp::parse("2026-05-03T12:00:00.000Z").unwrap();
    let durations = [100u64, 200, 300, 400];
    for (i, d) in durations.iter().enumerate() {
        let mut e = execution_at(&o, "wf", if i < 2 { day1 } else { day2 });
        e.mode = if i == 0 {
            ExecutionMode::Webhook
        } else {
            ExecutionMode::Api
        };
        s.create_execution(&e, None, day1).await.unwrap();
        e.status = ExecutionStatus::Running;
        assert!(
            s.transition_execution(&e, &[ExecutionStatus::Pending])
                .await
                .unwrap()
        );
        e.status = if i == 3 {
            ExecutionStatus::Failed
        } else {
            ExecutionStatus::Success
        };
        e.duration = *d;
        assert!(
            s.transition_execution(&e, &[ExecutionStatus::Running])
                .await
                .unwrap()
        );
    }
    let mut pending = execution_at(&o, "wf", day2);
    pending.mode = ExecutionMode::Api;
    s.create_execution(&pending, None, day1).await.unwrap();

    let st = s.execution_statistics(&o, None, None).await.unwrap();
    assert_eq!(st.total, 5);
    assert_eq!(st.by_status.get("success"), Some(&3));
    assert_eq!(st.by_status.get("failed"), Some(&1));
    assert_eq!(st.by_status.get("pending"), Some(&1));
    assert_eq!(
        st.by_status.get("running"),
        Some(&0),
        "moved on, and still listed"
    );
    assert_eq!(st.by_mode.get("api"), Some(&4));
    assert_eq!(st.by_mode.get("webhook"), Some(&1));
    assert!((st.success_rate - 0.75).abs() < 1e-9);
    assert!((st.average_duration - 250.0).abs() < 1e-9);
    // Nearest rank 400; DynamoDB's bucket is (300, 500].
    assert!(
        st.p95_duration > 300.0 && st.p95_duration <= 500.0,
        "{}",
        st.p95_duration
    );

    let first_day = s
        .execution_statistics(&o, Some(day1), Some(day1))
        .await
        .unwrap();
    assert_eq!(first_day.total, 2);
    assert!((first_day.average_duration - 150.0).abs() < 1e-9);
    let later = s
        .execution_statistics(&o, Some(day1.plus(Duration::from_secs(86_400))), None)
        .await
        .unwrap();
    assert_eq!(later.total, 3);
    assert_eq!(
        s.execution_statistics(&org(), None, None)
            .await
            .unwrap()
            .total,
        0
    );
}

pub async fn unfinished_executions_by_deadline_and_counts(s: Arc<dyn Store>) {
    use ExecutionStatus::*;
    let (o1, o2) = two_orgs();
    let o3 = org();
    let mut expected = Vec::new();
    for i in 0..9i64 {
        let o = if i % 2 == 0 { &o1 } else { &o2 };
        let mut e = execution(o, "w", i * 1000);
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

    // In pages of 2 (a page with a cursor is full), each once (the order across pages is
    // the store's: DynamoDB walks its shards).
    assert_eq!(
        unfinished_by_deadline(s.as_ref(), &[&o1, &o2], 2).await,
        expected
    );
    for bad in ["nope", "garbage"] {
        assert!(matches!(
            s.list_unfinished_executions(2, Some(bad)).await,
            Err(StoreError::InvalidCursor)
        ));
    }

    // Created at 0..8 s; statuses by i % 4: pending 0,4,8; running 1,5; paused 2,6; success
    // 3,7; organizations by i % 2: o1 0,2,4,6,8; o2 1,3,5,7. Counted per organization.
    let c1 = s.count_unfinished_executions(&o1, ts(4500)).await.unwrap();
    assert_eq!(
        c1,
        UnfinishedCounts {
            running: 0,
            pending: 3,
            paused: 2,
            // pending 0 and 4 were created before 4.5 s (paused ones are never stale).
            stale: 2,
        }
    );
    let c2 = s.count_unfinished_executions(&o2, ts(4500)).await.unwrap();
    assert_eq!(
        c2,
        UnfinishedCounts {
            running: 2,
            pending: 0,
            paused: 0,
            // running 1.
            stale: 1,
        }
    );
    let none = s.count_unfinished_executions(&o3, ts(4500)).await.unwrap();
    assert_eq!(none, UnfinishedCounts::default());
}

// ---- node runs -----------------------------------------------------------------------------

pub async fn claim_outcomes_and_lease_guarded_saves(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let e = execution(&o1, "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    let x = e.id.as_str();

    // Never scheduled, or created but not ready: NotReady.
    assert_eq!(
        s.claim_node(&o1, x, "start", &claim_at(0)).await.unwrap(),
        ClaimOutcome::NotReady
    );
    s.put_node_runs(&o1, &[ready_run(x, "start"), NodeRun::new(x, "later")])
        .await
        .unwrap();
    assert_eq!(
        s.claim_node(&o1, x, "later", &claim_at(0)).await.unwrap(),
        ClaimOutcome::NotReady
    );
    // Another organization sees nothing.
    assert_eq!(
        s.claim_node(&o2, x, "start", &claim_at(0)).await.unwrap(),
        ClaimOutcome::NotReady
    );
    // put_node_runs never overwrites.
    let mut changed = ready_run(x, "start");
    changed.attempts = 9;
    s.put_node_runs(&o1, &[changed]).await.unwrap();

    let c1 = claim_at(1000);
    let ClaimOutcome::Claimed(run) = s.claim_node(&o1, x, "start", &c1).await.unwrap() else {
        panic!("expected a claim");
    };
    assert_eq!(run.status, NodeRunStatus::Running);
    assert_eq!(run.attempts, 1);
    assert_eq!(run.lease_token.as_deref(), Some(c1.token.as_str()));
    assert_eq!(run.lease_until, Some(c1.lease_until));
    assert_eq!(run.started_at, Some(c1.now));

    // A live lease: Leased until its end.
    assert_eq!(
        s.claim_node(&o1, x, "start", &claim_at(2000))
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
    assert!(!s.save_node_run(&o1, &retry, "wrong-token").await.unwrap());
    assert!(!s.save_node_run(&o2, &retry, &c1.token).await.unwrap());
    assert!(s.save_node_run(&o1, &retry, &c1.token).await.unwrap());
    assert_eq!(
        s.claim_node(&o1, x, "start", &claim_at(5000))
            .await
            .unwrap(),
        ClaimOutcome::NotYet {
            not_before: ts(10_000)
        }
    );

    // Second attempt (from the moment of `notBefore`): its lease expires (a crashed worker)
    // and a third claim takes over at the lease's end.
    let c2 = claim_at(10_000);
    let ClaimOutcome::Claimed(run2) = s.claim_node(&o1, x, "start", &c2).await.unwrap() else {
        panic!("expected a claim");
    };
    assert_eq!(run2.attempts, 2);
    let c3 = claim_at(40_000);
    let ClaimOutcome::Claimed(run3) = s.claim_node(&o1, x, "start", &c3).await.unwrap() else {
        panic!("expected a claim after the lease expired");
    };
    assert_eq!(run3.attempts, 3);
    // The crashed worker's late result is discarded.
    let mut late = run2.clone();
    late.status = NodeRunStatus::Success;
    assert!(!s.save_node_run(&o1, &late, &c2.token).await.unwrap());

    let mut done = run3.clone();
    done.status = NodeRunStatus::Success;
    done.output = Some(json!({"ok": true}));
    done.finished_at = Some(ts(41_000));
    assert!(s.save_node_run(&o1, &done, &c3.token).await.unwrap());
    assert_eq!(
        s.claim_node(&o1, x, "start", &claim_at(50_000))
            .await
            .unwrap(),
        ClaimOutcome::Finished(done.clone())
    );

    // A backoff recorded without the token: not yet, then claimable from `notBefore`.
    s.put_node_runs(&o1, &[ready_run(x, "b")]).await.unwrap();
    let k1 = claim_at(0);
    let ClaimOutcome::Claimed(mut b) = s.claim_node(&o1, x, "b", &k1).await.unwrap() else {
        panic!("expected a claim");
    };
    b.status = NodeRunStatus::Pending;
    b.not_before = Some(ts(10_000));
    b.lease_token = None;
    assert!(s.save_node_run(&o1, &b, &k1.token).await.unwrap());
    assert_eq!(
        s.claim_node(&o1, x, "b", &claim_at(0)).await.unwrap(),
        ClaimOutcome::NotYet {
            not_before: ts(10_000)
        }
    );
    let ClaimOutcome::Claimed(b2) = s.claim_node(&o1, x, "b", &claim_at(10_000)).await.unwrap()
    else {
        panic!("expected a claim at notBefore");
    };
    assert_eq!(b2.attempts, 2);

    // The state read: the execution and every run.
    let state = s.get_execution_state(&o1, x).await.unwrap().unwrap();
    assert_eq!(state.execution, e);
    assert_eq!(state.node_runs.len(), 3);
    assert_eq!(state.run("start"), Some(&done));
    assert_eq!(state.run("later"), Some(&NodeRun::new(x, "later")));
    assert_eq!(state.run("b"), Some(&b2));
    assert_eq!(s.get_execution_state(&o2, x).await.unwrap(), None);
    assert_eq!(s.get_execution_state(&o1, "missing").await.unwrap(), None);
}

pub async fn twenty_concurrent_claims_one_winner(s: Arc<dyn Store>) {
    let o = org();
    let e = execution(&o, "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    s.put_node_runs(&o, &[ready_run(&e.id, "n")]).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let (o, id) = (o.clone(), e.id.clone());
        tasks.push(tokio::spawn(async move {
            s.claim_node(&o, &id, "n", &claim_at(1000)).await.unwrap()
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

pub async fn arrivals_decide_a_join_once(s: Arc<dyn Store>) {
    let o = org();
    let e = execution(&o, "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    let x = e.id.as_str();

    // Three parents; `a` arrives twice before the set is complete.
    assert_eq!(
        s.arrive(&o, &arrival(x, "join", "a", true, 3), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    assert!(matches!(
        s.arrive(&o, &arrival(x, "join", "a", true, 3), None)
            .await
            .unwrap(),
        Arrival::Duplicate(r) if !r.ready && r.arrived == 1
    ));
    assert_eq!(
        s.arrive(&o, &arrival(x, "join", "b", false, 3), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    let c = claim_at(1000);
    let Arrival::Ready(run) = s
        .arrive(&o, &arrival(x, "join", "c", false, 3), Some(&c))
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
            .arrive(&o, &arrival(x, "join", p, true, 3), None)
            .await
            .unwrap();
        assert!(matches!(again, Arrival::Duplicate(r) if r.ready), "{p}");
    }

    // A single parent without a claim: ready and pending, claimable by its job.
    let Arrival::Ready(run) = s
        .arrive(&o, &arrival(x, "single", "a", true, 1), None)
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
        s.claim_node(&o, x, "single", &claim_at(0)).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    // A single parent with a claim: decided and claimed in one write; a duplicate (with a
    // claim too) sees it and claims nothing.
    let c2 = claim_at(2000);
    let Arrival::Ready(one) = s
        .arrive(&o, &arrival(x, "single-claimed", "p", true, 1), Some(&c2))
        .await
        .unwrap()
    else {
        panic!("expected ready");
    };
    assert_eq!(
        (one.status, one.attempts, one.ready),
        (NodeRunStatus::Running, 1, true)
    );
    assert!(matches!(
        s.arrive(&o, &arrival(x, "single-claimed", "p", true, 1), Some(&claim_at(2000)))
            .await
            .unwrap(),
        Arrival::Duplicate(r) if r.ready && r.attempts == 1
    ));

    // No taken connection: skipped, once.
    assert_eq!(
        s.arrive(&o, &arrival(x, "dead", "a", false, 2), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    let Arrival::Skipped(run) = s
        .arrive(&o, &arrival(x, "dead", "b", false, 2), Some(&claim_at(0)))
        .await
        .unwrap()
    else {
        panic!("expected skipped");
    };
    assert_eq!(run.status, NodeRunStatus::Skipped);
    assert!(!run.ready);
    assert!(matches!(
        s.arrive(&o, &arrival(x, "dead", "b", false, 2), None)
            .await
            .unwrap(),
        Arrival::Duplicate(r) if r.status == NodeRunStatus::Skipped
    ));
    assert!(matches!(
        s.claim_node(&o, x, "dead", &claim_at(0)).await.unwrap(),
        ClaimOutcome::Finished(_)
    ));
    assert!(matches!(
        s.arrive(&o, &arrival(x, "single-dead", "p", false, 1), None)
            .await
            .unwrap(),
        Arrival::Skipped(r) if r.status == NodeRunStatus::Skipped
    ));

    // A waiting join is not claimable.
    assert_eq!(
        s.arrive(&o, &arrival(x, "waiting", "a", true, 2), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    assert_eq!(
        s.claim_node(&o, x, "waiting", &claim_at(0)).await.unwrap(),
        ClaimOutcome::NotReady
    );
}

/// Ten parents arrive twice each, concurrently, with a claim: one arrival makes the join
/// ready and claims it.
pub async fn concurrent_arrivals_with_claims_make_one_ready(s: Arc<dyn Store>) {
    let o = org();
    let e = execution(&o, "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    let mut tasks = Vec::new();
    for round in 0..2 {
        for p in 0..10 {
            let s = s.clone();
            let (o, id) = (o.clone(), e.id.clone());
            tasks.push(tokio::spawn(async move {
                let claim = claim_at(1000);
                s.arrive(
                    &o,
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
    let state = s.get_execution_state(&o, &e.id).await.unwrap().unwrap();
    let run = state.run("join").unwrap();
    assert_eq!(run.arrived, 10);
    assert_eq!(run.attempts, 1);
}

/// Eight parents arrive twice each, concurrently, without a claim: one arrival makes the
/// join ready.
pub async fn concurrent_arrivals_without_claims_make_one_ready(s: Arc<dyn Store>) {
    let o = org();
    let e = execution(&o, "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    let parents = 8;
    let tasks: Vec<_> = (0..parents * 2)
        .map(|i| {
            let s = s.clone();
            let (o, id) = (o.clone(), e.id.clone());
            tokio::spawn(async move {
                let p = format!("p{}", i % parents);
                s.arrive(&o, &arrival(&id, "join", &p, true, parents), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let outcomes: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ready = outcomes
        .iter()
        .filter(|o| matches!(o, Arrival::Ready(_)))
        .count();
    assert_eq!(ready, 1, "{outcomes:?}");
    assert!(!outcomes.iter().any(|o| matches!(o, Arrival::Skipped(_))));
    let state = s.get_execution_state(&o, &e.id).await.unwrap().unwrap();
    let join = state.run("join").unwrap();
    assert_eq!(join.arrived as usize, parents);
    assert_eq!(
        (join.status, join.ready, join.attempts),
        (NodeRunStatus::Pending, true, 0)
    );
}

/// A join of 150 parents (wider than a store may keep in one item), each arriving twice and
/// concurrently, some with a claim: exactly one arrival makes it ready, after the last
/// parent, and it counts every parent; a late duplicate sees the decided run.
pub async fn a_wide_join_counts_every_parent_once(s: Arc<dyn Store>) {
    let o = org();
    let e = execution(&o, "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    let parents = 150;
    let tasks: Vec<_> = (0..parents * 2)
        .map(|i| {
            let s = s.clone();
            let (o, id) = (o.clone(), e.id.clone());
            tokio::spawn(async move {
                let p = format!("p{}", i % parents);
                // Only p7's connection is taken.
                let a = arrival(&id, "join", &p, p == "p7", parents);
                let claim = (i % 3 == 0).then(|| claim_at(1000));
                s.arrive(&o, &a, claim.as_ref()).await.unwrap()
            })
        })
        .collect();
    let outcomes: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ready: Vec<&NodeRun> = outcomes
        .iter()
        .filter_map(|o| match o {
            Arrival::Ready(run) => Some(run),
            _ => None,
        })
        .collect();
    assert_eq!(ready.len(), 1, "{outcomes:?}");
    assert_eq!((ready[0].arrived, ready[0].taken), (parents as u32, 1));
    assert!(
        !outcomes
            .iter()
            .any(|o| matches!(o, Arrival::Skipped(_) | Arrival::AlreadyDecided)),
        "{outcomes:?}"
    );
    let state = s.get_execution_state(&o, &e.id).await.unwrap().unwrap();
    let join = state.run("join").unwrap();
    assert!(join.ready);
    assert_eq!(join.arrived as usize, parents);
    assert!(matches!(
        s.arrive(&o, &arrival(&e.id, "join", "p149", false, parents), None)
            .await
            .unwrap(),
        Arrival::Duplicate(r) if r.ready
    ));

    // No taken connection among 70 parents: the last arrival skips it, once.
    let dead = 70;
    for i in 0..dead {
        let parent = format!("p{i}");
        let a = arrival(&e.id, "dead", &parent, false, dead);
        let out = s.arrive(&o, &a, None).await.unwrap();
        if i + 1 < dead {
            assert_eq!(out, Arrival::Waiting, "p{i}");
        } else {
            assert!(matches!(out, Arrival::Skipped(r) if r.status == NodeRunStatus::Skipped));
        }
    }
    assert!(matches!(
        s.arrive(&o, &arrival(&e.id, "dead", "p3", false, dead), None)
            .await
            .unwrap(),
        Arrival::Duplicate(r) if r.status == NodeRunStatus::Skipped
    ));
}

// ---- logs ----------------------------------------------------------------------------------

pub async fn logs_oldest_first_with_filters_and_tailing(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let e = execution(&o1, "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    let theirs = execution(&o2, "w", 0);
    let mut logs = Vec::new();
    for i in 0..30i64 {
        let level = if i % 4 == 0 {
            LogLevel::Error
        } else {
            LogLevel::Info
        };
        let node = if i % 2 == 0 { "a" } else { "b" };
        let mut l = log(&e, Some(node), level, &format!("m{i}"));
        l.timestamp = ts(i);
        if i % 3 == 0 {
            l.data = None;
        }
        if i % 5 == 0 {
            l.node_type = Some("flow.noop".into());
            l.node_name = Some("Node".into());
        }
        logs.push(l);
    }
    logs.push(log(&e, None, LogLevel::Info, "execution started"));
    // More than 25 in one call, then the rest.
    s.append_logs(&logs[..26]).await.unwrap();
    s.append_logs(&logs[26..]).await.unwrap();
    // Appending the same ids again adds nothing.
    s.append_logs(&logs[..2]).await.unwrap();
    s.append_logs(&[log(&theirs, None, LogLevel::Info, "theirs")])
        .await
        .unwrap();

    let page = s
        .list_logs(&o1, &e.id, &LogFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(page.items, logs);
    assert_eq!(page.next_cursor, None);
    assert_eq!(page.items[0].organization_id, o1);

    // Tailing in pages of 5 with `after`: the cursor is the page's last log id.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let f = LogFilter {
            after: after.clone(),
            ..Default::default()
        };
        let page = s.list_logs(&o1, &e.id, &f, 5).await.unwrap();
        assert!(page.items.len() <= 5);
        if let Some(c) = &page.next_cursor {
            assert_eq!(Some(c), page.items.last().map(|l| &l.id));
        }
        seen.extend(page.items);
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, logs);
    let p1 = s
        .list_logs(&o1, &e.id, &LogFilter::default(), 12)
        .await
        .unwrap();
    assert_eq!(p1.items, logs[..12]);
    assert_eq!(p1.next_cursor.as_deref(), Some(logs[11].id.as_str()));
    let rest = LogFilter {
        after: p1.next_cursor.clone(),
        ..Default::default()
    };
    let p2 = s.list_logs(&o1, &e.id, &rest, 100).await.unwrap();
    assert_eq!(p2.items, logs[12..]);
    assert_eq!(p2.next_cursor, None);

    let f = LogFilter {
        level: Some(LogLevel::Error),
        node_id: Some("a".into()),
        after: None,
    };
    let errors = s.list_logs(&o1, &e.id, &f, 100).await.unwrap().items;
    assert_eq!(
        errors
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>(),
        ["m0", "m4", "m8", "m12", "m16", "m20", "m24", "m28"]
    );
    let count = |f: LogFilter| {
        let s = s.clone();
        let id = e.id.clone();
        let o1 = o1.clone();
        async move { s.list_logs(&o1, &id, &f, 100).await.unwrap().items.len() }
    };
    assert_eq!(
        count(LogFilter {
            level: Some(LogLevel::Error),
            ..Default::default()
        })
        .await,
        8
    );
    assert_eq!(
        count(LogFilter {
            node_id: Some("a".into()),
            ..Default::default()
        })
        .await,
        15
    );
    assert_eq!(
        count(LogFilter {
            node_id: Some("b".into()),
            ..Default::default()
        })
        .await,
        15
    );

    // Another organization reading this execution's logs sees none.
    assert!(
        s.list_logs(&o2, &e.id, &LogFilter::default(), 100)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Logs are not node runs.
    let state = s.get_execution_state(&o1, &e.id).await.unwrap().unwrap();
    assert!(state.node_runs.is_empty());
}

// ---- credentials ---------------------------------------------------------------------------

pub async fn credentials_by_id_or_name_unique_per_organization(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let a = credential(&o1, "api", 1000);
    s.put_credential(&a).await.unwrap();
    match s.put_credential(&credential(&o1, "api", 2000)).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("api"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The same name in another organization is fine.
    let b = credential(&o2, "api", 1000);
    s.put_credential(&b).await.unwrap();

    let id = a.credential.id.as_str();
    assert_eq!(s.get_credential(&o1, id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_credential(&o1, "api").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_credential(&o2, "api").await.unwrap(), Some(b.clone()));
    assert_eq!(s.get_credential(&o2, id).await.unwrap(), None);
    assert_eq!(s.get_credential(&o1, "missing").await.unwrap(), None);

    for i in 0..6 {
        s.put_credential(&credential(&o1, &format!("c{i}"), 2000 + i))
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s.list_credentials(&o1, 3, cursor.as_deref()).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.into_iter().map(|c| c.name));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(names, ["c5", "c4", "c3", "c2", "c1", "c0", "api"]);
    // A page that ends with the last credential has no cursor.
    let whole = s.list_credentials(&o1, 7, None).await.unwrap();
    assert_eq!(whole.items.len(), 7);
    assert_eq!(whole.next_cursor, None);
    let c = s
        .list_credentials(&o1, 3, None)
        .await
        .unwrap()
        .next_cursor
        .unwrap();
    assert!(matches!(
        s.list_credentials(&o2, 3, Some(&c)).await,
        Err(StoreError::InvalidCursor)
    ));

    assert!(!s.delete_credential(&o2, id).await.unwrap());
    assert!(s.delete_credential(&o1, id).await.unwrap());
    assert!(!s.delete_credential(&o1, id).await.unwrap());
    assert_eq!(s.get_credential(&o1, "api").await.unwrap(), None);
    assert_eq!(s.get_credential(&o1, id).await.unwrap(), None);
    assert_eq!(s.get_credential(&o2, "api").await.unwrap(), Some(b));
    // The name is free again.
    s.put_credential(&credential(&o1, "api", 3000))
        .await
        .unwrap();
}

// ---- circuit breaker -----------------------------------------------------------------------

pub async fn circuit_state_compare_and_set(s: Arc<dyn Store>) {
    let o = org();
    let key = unique("host");
    assert_eq!(s.get_circuit(&o, &key).await.unwrap(), None);
    let mut st = CircuitState {
        consecutive_failures: 1,
        version: 1,
        ..Default::default()
    };
    assert!(s.put_circuit(&o, &key, &st).await.unwrap());
    // A second "first write" loses.
    assert!(!s.put_circuit(&o, &key, &st).await.unwrap());
    assert_eq!(s.get_circuit(&o, &key).await.unwrap(), Some(st.clone()));
    // Circuits are per organization.
    assert_eq!(s.get_circuit(&org(), &key).await.unwrap(), None);

    st.consecutive_failures = 5;
    st.opened_at = Some(ts(0));
    st.version = 2;
    st.config.failure_threshold = Some(7);
    assert!(s.put_circuit(&o, &key, &st).await.unwrap());
    // Stale writers (based on version 1) lose; so do versions from nowhere.
    assert!(!s.put_circuit(&o, &key, &st).await.unwrap());
    let mut skip = st.clone();
    skip.version = 4;
    assert!(!s.put_circuit(&o, &key, &skip).await.unwrap());
    let zero = CircuitState::default();
    assert!(!s.put_circuit(&o, &key, &zero).await.unwrap());
    assert_eq!(s.get_circuit(&o, &key).await.unwrap(), Some(st));

    // Two concurrent writers based on version 2: exactly one wins.
    let v3 = CircuitState {
        consecutive_failures: 0,
        opened_at: Some(ts(0)),
        trial_until: Some(ts(5000)),
        version: 3,
        config: CircuitConfig::default(),
    };
    let v3b = CircuitState {
        consecutive_failures: 6,
        opened_at: Some(ts(1000)),
        trial_until: None,
        version: 3,
        config: CircuitConfig {
            timeout_ms: Some(2_000),
            ..Default::default()
        },
    };
    let (a, b) = tokio::join!(s.put_circuit(&o, &key, &v3), s.put_circuit(&o, &key, &v3b));
    assert!(a.unwrap() ^ b.unwrap(), "one compare-and-set wins");
    let stored = s.get_circuit(&o, &key).await.unwrap().unwrap();
    assert_eq!(stored.version, 3);
    assert!(stored == v3 || stored == v3b, "{stored:?}");
}

pub async fn circuits_are_listed_per_organization_by_key(s: Arc<dyn Store>) {
    let (o, other) = two_orgs();
    let mut keys: Vec<String> = (0..7).map(|i| format!("host-{i}.example.com")).collect();
    keys.push("a/b c".into());
    for key in &keys {
        let st = CircuitState {
            consecutive_failures: 2,
            version: 1,
            ..Default::default()
        };
        assert!(s.put_circuit(&o, key, &st).await.unwrap());
    }
    let theirs = CircuitState {
        version: 1,
        ..Default::default()
    };
    assert!(
        s.put_circuit(&other, "host-0.example.com", &theirs)
            .await
            .unwrap()
    );
    keys.sort();
    // The listing index may lag behind a write (DynamoDB's GSI): wait until it shows all.
    let mut listed = Vec::new();
    for _ in 0..50 {
        listed.clear();
        let mut cursor: Option<String> = None;
        loop {
            let page = s.list_circuits(&o, 3, cursor.as_deref()).await.unwrap();
            assert!(page.items.len() <= 3);
            listed.extend(page.items.into_iter().map(|c| {
                assert_eq!(c.state.consecutive_failures, 2);
                c.key
            }));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if listed.len() == keys.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed, keys);
    let page = s.list_circuits(&other, 100, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    // A cursor of one organization's list is refused for another's.
    let first = s.list_circuits(&o, 1, None).await.unwrap();
    let cursor = first.next_cursor.expect("more circuits");
    assert!(matches!(
        s.list_circuits(&other, 1, Some(&cursor)).await,
        Err(StoreError::InvalidCursor)
    ));
}

pub async fn trends_count_terminal_executions_by_hour_and_day(s: Arc<dyn Store>) {
    let o = org();
    let hour = |h: u32| Timestamp::parse(&format!("2026-05-01T{h:02}:10:00.000Z")).unwrap();
    // 09:10 two successes (100, 300 ms) and a failure (500 ms); 11:10 a timeout and a
    // cancel; 11:10 one still running; another workflow's success.
    let plan = [
        (hour(9), ExecutionStatus::Success, 100u64, "wf"),
        (hour(9), ExecutionStatus::Success, 300, "wf"),
        (hour(9), ExecutionStatus::Failed, 500, "wf"),
        (hour(11), ExecutionStatus::Timeout, 2_000, "wf"),
        (hour(11), ExecutionStatus::Cancelled, 50, "wf"),
        (hour(11), ExecutionStatus::Running, 0, "wf"),
        (hour(9), ExecutionStatus::Success, 10, "other-wf"),
    ];
    for (at, status, duration, wf) in plan {
        let mut e = execution_at(&o, wf, at);
        s.create_execution(&e, None, at).await.unwrap();
        e.status = ExecutionStatus::Running;
        assert!(
            s.transition_execution(&e, &[ExecutionStatus::Pending])
                .await
                .unwrap()
        );
        if status != ExecutionStatus::Running {
            e.status = status;
            e.duration = duration;
            assert!(
                s.transition_execution(&e, &[ExecutionStatus::Running])
                    .await
                    .unwrap()
            );
            // A second terminal move is refused and counts nothing.
            assert!(
                !s.transition_execution(&e, &[ExecutionStatus::Running])
                    .await
                    .unwrap()
            );
        }
    }
    let day = Timestamp::parse("2026-05-01T00:00:00.000Z").unwrap();
    let end = day.plus(Duration::from_secs(86_400));
    let hours = trend_points(
        TrendInterval::Hour,
        s.workflow_trends(&o, "wf", TrendInterval::Hour, day, end)
            .await
            .unwrap(),
    );
    assert_eq!(hours.len(), 2, "{hours:?}");
    assert_eq!(hours[0].start, TrendInterval::Hour.start_of(hour(9)));
    assert_eq!(
        (hours[0].total, hours[0].success, hours[0].failed),
        (3, 2, 1)
    );
    assert!((hours[0].average_duration - 300.0).abs() < 1e-9);
    assert!(
        hours[0].p95_duration > 300.0 && hours[0].p95_duration <= 500.0,
        "{}",
        hours[0].p95_duration
    );
    assert_eq!(
        (hours[1].total, hours[1].timeout, hours[1].cancelled),
        (2, 1, 1)
    );
    let days = trend_points(
        TrendInterval::Day,
        s.workflow_trends(&o, "wf", TrendInterval::Day, day, end)
            .await
            .unwrap(),
    );
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].start, day);
    assert_eq!(days[0].total, 5);
    assert!((days[0].average_duration - 590.0).abs() < 1e-9);
    // The window: only the 11:00 hour; another organization sees nothing.
    let late = s
        .workflow_trends(&o, "wf", TrendInterval::Hour, hour(10), end)
        .await
        .unwrap();
    assert_eq!(trend_points(TrendInterval::Hour, late)[0].total, 2);
    assert!(
        s.workflow_trends(&org(), "wf", TrendInterval::Day, day, end)
            .await
            .unwrap()
            .is_empty()
    );
    let other = trend_points(
        TrendInterval::Day,
        s.workflow_trends(&o, "other-wf", TrendInterval::Day, day, end)
            .await
            .unwrap(),
    );
    assert_eq!(other[0].total, 1);
}

// ---- concurrency gates (SPEC §9) -----------------------------------------------------------

fn gate(org: &str, key: &str) -> Gate {
    Gate {
        org: org.into(),
        workflow_id: "wf".into(),
        key: key.into(),
    }
}

pub async fn gates_admit_in_order_and_promote_first_in_line(s: Arc<dyn Store>) {
    let o = org();
    let g = gate(&o, "customer-1");
    let ids: Vec<String> = (0..5).map(|i| format!("e{i}")).collect();
    let mut admitted = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        admitted.push(s.admit(&g, 2, id, ts(i as i64)).await.unwrap());
    }
    use Admission::{Holds, Queued};
    assert_eq!(admitted, vec![Holds, Holds, Queued, Queued, Queued]);
    // Idempotent: a holder holds, a queued one keeps its place.
    assert_eq!(s.admit(&g, 2, "e0", ts(0)).await.unwrap(), Holds);
    assert_eq!(s.admit(&g, 2, "e3", ts(3)).await.unwrap(), Queued);
    assert!(s.holds_slot(&g, "e1").await.unwrap());
    assert!(!s.holds_slot(&g, "e2").await.unwrap());
    // Full: nothing to promote.
    assert!(s.promote(&g, 2).await.unwrap().is_empty());
    // Another key and another organization are other gates.
    assert_eq!(
        s.admit(&gate(&o, "customer-2"), 2, "x", ts(9))
            .await
            .unwrap(),
        Holds
    );
    assert_eq!(
        s.admit(&gate(&org(), "customer-1"), 2, "y", ts(9))
            .await
            .unwrap(),
        Holds
    );
    // e3 leaves the line; e0 gives its slot back: e2 is first in line.
    s.leave(&g, "e3", ts(3)).await.unwrap();
    s.leave(&g, "e0", ts(0)).await.unwrap();
    s.leave(&g, "e0", ts(0)).await.unwrap();
    assert_eq!(s.promote(&g, 2).await.unwrap(), vec!["e2".to_string()]);
    let mut holders = s.gate_holders(&g).await.unwrap();
    holders.sort();
    assert_eq!(holders, vec!["e1".to_string(), "e2".to_string()]);
    // A new arrival does not jump the line.
    assert_eq!(s.admit(&g, 2, "e5", ts(5)).await.unwrap(), Queued);
    // A raised limit lets the rest in, in order.
    assert_eq!(
        s.promote(&g, 4).await.unwrap(),
        vec!["e4".to_string(), "e5".to_string()]
    );
    for id in ["e1", "e2", "e4", "e5"] {
        s.leave(&g, id, ts(0)).await.unwrap();
    }
    assert!(s.gate_holders(&g).await.unwrap().is_empty());
    assert_eq!(s.admit(&g, 2, "e6", ts(6)).await.unwrap(), Holds);
}

pub async fn twenty_concurrent_admissions_never_pass_the_limit(s: Arc<dyn Store>) {
    let o = org();
    let g = gate(&o, "");
    let admissions = (0..20).map(|i| {
        let (s, g) = (s.clone(), g.clone());
        async move { s.admit(&g, 3, &format!("e{i:02}"), ts(i)).await.unwrap() }
    });
    let results = futures::future::join_all(admissions).await;
    let holds = results.iter().filter(|a| **a == Admission::Holds).count();
    assert_eq!(holds, 3, "{results:?}");
    assert_eq!(s.gate_holders(&g).await.unwrap().len(), 3);
    // Concurrent promotions after the holders leave: still never more than 3.
    for id in s.gate_holders(&g).await.unwrap() {
        s.leave(&g, &id, ts(0)).await.unwrap();
    }
    let promotions = (0..5).map(|_| {
        let (s, g) = (s.clone(), g.clone());
        async move { s.promote(&g, 3).await.unwrap() }
    });
    let promoted: Vec<String> = futures::future::join_all(promotions)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(promoted.len(), 3, "{promoted:?}");
    let unique: HashSet<&String> = promoted.iter().collect();
    assert_eq!(unique.len(), 3);
    assert_eq!(s.gate_holders(&g).await.unwrap().len(), 3);
}

pub async fn throttle_assigns_start_times_once_in_order(s: Arc<dyn Store>) {
    let o = org();
    let g = gate(&o, "api");
    let mut at = Vec::new();
    for i in 0..5 {
        at.push(
            s.throttle(&g, 2, 1_000, &format!("e{i}"), ts(0))
                .await
                .unwrap(),
        );
    }
    assert_eq!(at, vec![ts(0), ts(0), ts(1_000), ts(1_000), ts(2_000)]);
    // Once per execution.
    assert_eq!(
        s.throttle(&g, 2, 1_000, "e3", ts(5)).await.unwrap(),
        ts(1_000)
    );
    assert_eq!(s.throttled_start(&g, "e4").await.unwrap(), Some(ts(2_000)));
    assert_eq!(s.throttled_start(&g, "never").await.unwrap(), None);
    // Later, after quiet: at once; another key is another window.
    assert_eq!(
        s.throttle(&g, 2, 1_000, "e5", ts(10_000)).await.unwrap(),
        ts(10_000)
    );
    assert_eq!(
        s.throttle(&gate(&o, "other"), 2, 1_000, "f", ts(0))
            .await
            .unwrap(),
        ts(0)
    );
    // Concurrent assignments never put more than 2 in a window.
    let g2 = gate(&o, "burst");
    let calls = (0..10).map(|i| {
        let (s, g2) = (s.clone(), g2.clone());
        async move {
            s.throttle(&g2, 2, 1_000, &format!("b{i}"), ts(0))
                .await
                .unwrap()
        }
    });
    let mut times: Vec<i64> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|t| t.millis())
        .collect();
    times.sort_unstable();
    for w in times.windows(3) {
        assert!(w[2] - w[0] >= 1_000, "{times:?}");
    }
}

pub async fn debounce_keeps_the_latest_start(s: Arc<dyn Store>) {
    let o = org();
    let g = gate(&o, "record-7");
    assert_eq!(s.latest_debounced(&g).await.unwrap(), None);
    assert_eq!(
        s.debounce(&g, "a", ts(0)).await.unwrap(),
        Debounced::Latest { replaced: None }
    );
    assert_eq!(
        s.debounce(&g, "b", ts(10)).await.unwrap(),
        Debounced::Latest {
            replaced: Some("a".into())
        }
    );
    // Again for the same: still the latest, nothing replaced.
    assert_eq!(
        s.debounce(&g, "b", ts(10)).await.unwrap(),
        Debounced::Latest { replaced: None }
    );
    // An older one arriving late is superseded at once.
    assert_eq!(
        s.debounce(&g, "late", ts(5)).await.unwrap(),
        Debounced::Superseded { by: "b".into() }
    );
    assert_eq!(s.latest_debounced(&g).await.unwrap(), Some("b".into()));
    assert_eq!(s.latest_debounced(&gate(&o, "other")).await.unwrap(), None);
    // Concurrent starts: exactly one ends up the latest, the newest.
    let g2 = gate(&o, "burst");
    let calls = (0..10).map(|i| {
        let (s, g2) = (s.clone(), g2.clone());
        async move { s.debounce(&g2, &format!("d{i}"), ts(i)).await.unwrap() }
    });
    futures::future::join_all(calls).await;
    assert_eq!(s.latest_debounced(&g2).await.unwrap(), Some("d9".into()));
}

// ---- composition (SPEC §8): child tallies, callbacks, children -----------------------------

/// A child of `parent`'s node `node_id` (item `index`), created at `created` ms.
fn child_of(parent: &Execution, node_id: &str, index: u32, created: i64) -> Execution {
    let mut e = execution(&parent.organization_id, &parent.workflow_id, created);
    e.id = child_execution_id(&parent.id, node_id, index);
    e.mode = ExecutionMode::Subworkflow;
    e.parent_execution_id = Some(parent.id.clone());
    e.parent_node_id = Some(node_id.into());
    e.item_index = Some(index);
    e.depth = parent.depth + 1;
    e
}

/// `e` moved to `status` from any unfinished status (terminal ones stamped as finished).
async fn report(s: &dyn Store, e: &Execution, status: ExecutionStatus) -> bool {
    let mut moved = e.clone();
    moved.status = status;
    if status.is_terminal() {
        moved.duration = 10;
        moved.completed_at = Some(e.created_at.plus(Duration::from_millis(10)));
    }
    s.transition_execution(&moved, &ExecutionStatus::UNFINISHED)
        .await
        .unwrap()
}

/// The stored tally of `node_id` of `execution_id` (which must exist).
async fn tally_of(s: &dyn Store, org: &str, execution_id: &str, node_id: &str) -> ChildTally {
    s.get_child_tally(org, execution_id, node_id)
        .await
        .unwrap()
        .expect("a tally")
}

fn callback(body: serde_json::Value, at: i64) -> ReceivedCallback {
    ReceivedCallback {
        callback: Callback::Completed(body),
        received_at: ts(at),
    }
}

/// The set of indexes the ranges `[from, until)` cover; panics when two overlap.
fn covered(ranges: &[(u32, u32)]) -> Vec<u32> {
    let mut seen = HashSet::new();
    for &(from, until) in ranges {
        assert!(from < until, "empty range {from}..{until}");
        for i in from..until {
            assert!(seen.insert(i), "index {i} handed out twice: {ranges:?}");
        }
    }
    let mut all: Vec<u32> = seen.into_iter().collect();
    all.sort_unstable();
    all
}

pub async fn child_tallies_are_created_once(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let p = execution(&o1, "w", 0);
    s.create_execution(&p, None, ts(0)).await.unwrap();
    assert_eq!(s.get_child_tally(&o1, &p.id, "each").await.unwrap(), None);

    let first = ChildTally::new(7, 3);
    assert_eq!(
        s.create_child_tally(&o1, &p.id, "each", &first)
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        s.get_child_tally(&o1, &p.id, "each").await.unwrap(),
        Some(first)
    );
    // A second creation with other numbers returns the stored tally, unchanged.
    let other = ChildTally {
        total: 100,
        concurrency: 50,
        started: 40,
        done: 4,
        failed: 2,
    };
    assert_eq!(
        s.create_child_tally(&o1, &p.id, "each", &other)
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        s.get_child_tally(&o1, &p.id, "each").await.unwrap(),
        Some(first)
    );

    // Another node of the execution keeps its own, stored as given.
    assert_eq!(s.get_child_tally(&o1, &p.id, "sub").await.unwrap(), None);
    assert_eq!(
        s.create_child_tally(&o1, &p.id, "sub", &other)
            .await
            .unwrap(),
        other
    );
    assert_eq!(
        s.get_child_tally(&o1, &p.id, "sub").await.unwrap(),
        Some(other)
    );
    assert_eq!(
        s.get_child_tally(&o1, &p.id, "each").await.unwrap(),
        Some(first)
    );
    // Unknown executions and other organizations have none.
    assert_eq!(
        s.get_child_tally(&o1, &new_id(), "each").await.unwrap(),
        None
    );
    assert_eq!(s.get_child_tally(&o2, &p.id, "each").await.unwrap(), None);

    // Concurrent creations: one is stored, every caller gets that one.
    let mut tasks = Vec::new();
    for i in 0..10u32 {
        let (s, o, id) = (s.clone(), o1.clone(), p.id.clone());
        tasks.push(tokio::spawn(async move {
            s.create_child_tally(&o, &id, "race", &ChildTally::new(10 + i, 1 + i))
                .await
                .unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    let stored = s
        .get_child_tally(&o1, &p.id, "race")
        .await
        .unwrap()
        .unwrap();
    assert!(got.iter().all(|t| *t == stored), "{got:?} vs {stored:?}");
    assert!((0..10u32).any(|i| stored == ChildTally::new(10 + i, 1 + i)));
}

pub async fn reserve_children_hands_out_the_next_window(s: Arc<dyn Store>) {
    use ExecutionStatus::*;
    let o = org();
    let p = execution(&o, "w", 0);
    s.create_execution(&p, None, ts(0)).await.unwrap();
    // No tally: nothing to hand out.
    assert_eq!(s.reserve_children(&o, &p.id, "each").await.unwrap(), None);

    let t = ChildTally::new(5, 2);
    s.create_child_tally(&o, &p.id, "each", &t).await.unwrap();
    let children: Vec<Execution> = (0..5).map(|i| child_of(&p, "each", i, 100)).collect();
    for c in &children {
        s.create_execution(c, None, ts(0)).await.unwrap();
    }
    let tally = || tally_of(s.as_ref(), &o, &p.id, "each");

    // 0..2 were started with the tally: nothing is free until a child reports.
    assert_eq!(tally().await.next_window(), None);
    assert_eq!(s.reserve_children(&o, &p.id, "each").await.unwrap(), None);
    assert_eq!(tally().await, t);

    assert!(report(s.as_ref(), &children[0], Success).await);
    let before = tally().await;
    assert_eq!(before.done, 1);
    assert_eq!(before.next_window(), Some((2, 3)));
    assert_eq!(
        s.reserve_children(&o, &p.id, "each").await.unwrap(),
        before.next_window()
    );
    assert_eq!(tally().await.started, 3);
    // Handed out once.
    assert_eq!(s.reserve_children(&o, &p.id, "each").await.unwrap(), None);

    assert!(report(s.as_ref(), &children[1], Failed).await);
    assert!(report(s.as_ref(), &children[2], Success).await);
    let before = tally().await;
    assert_eq!(before.next_window(), Some((3, 5)));
    assert_eq!(
        s.reserve_children(&o, &p.id, "each").await.unwrap(),
        Some((3, 5))
    );
    assert_eq!(s.reserve_children(&o, &p.id, "each").await.unwrap(), None);

    assert!(report(s.as_ref(), &children[3], Success).await);
    assert!(report(s.as_ref(), &children[4], Timeout).await);
    let end = tally().await;
    assert_eq!(
        end,
        ChildTally {
            total: 5,
            concurrency: 2,
            started: 5,
            done: 5,
            failed: 2,
        }
    );
    assert!(end.complete());
    assert_eq!(s.reserve_children(&o, &p.id, "each").await.unwrap(), None);
    // Another organization's call reaches nothing.
    assert_eq!(
        s.reserve_children(&org(), &p.id, "each").await.unwrap(),
        None
    );
}

pub async fn concurrent_reservations_never_overlap(s: Arc<dyn Store>) {
    let o = org();
    let p = execution(&o, "w", 0);
    s.create_execution(&p, None, ts(0)).await.unwrap();
    // Nothing started yet: 0..10 free.
    let t = ChildTally {
        total: 25,
        concurrency: 10,
        started: 0,
        done: 0,
        failed: 0,
    };
    s.create_child_tally(&o, &p.id, "each", &t).await.unwrap();

    async fn race(s: &Arc<dyn Store>, o: &str, id: &str, n: usize) -> Vec<(u32, u32)> {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (s, o, id) = (s.clone(), o.to_string(), id.to_string());
            tasks.push(tokio::spawn(async move {
                s.reserve_children(&o, &id, "each").await.unwrap()
            }));
        }
        let mut ranges = Vec::new();
        for t in tasks {
            ranges.extend(t.await.unwrap());
        }
        ranges
    }
    let ranges = race(&s, &o, &p.id, 10).await;
    assert_eq!(covered(&ranges), (0..10).collect::<Vec<_>>(), "{ranges:?}");
    assert_eq!(
        s.get_child_tally(&o, &p.id, "each")
            .await
            .unwrap()
            .unwrap()
            .started,
        10
    );
    assert_eq!(race(&s, &o, &p.id, 5).await, vec![]);

    // Ten children report at once, each reserving right after its report: the ranges never
    // overlap, and with a last call once all reported they cover exactly the freed 10..20.
    let children: Vec<Execution> = (0..10).map(|i| child_of(&p, "each", i, 100)).collect();
    for c in &children {
        s.create_execution(c, None, ts(0)).await.unwrap();
    }
    let mut tasks = Vec::new();
    for c in children {
        let (s, o, id) = (s.clone(), o.clone(), p.id.clone());
        tasks.push(tokio::spawn(async move {
            assert!(report(s.as_ref(), &c, ExecutionStatus::Success).await);
            s.reserve_children(&o, &id, "each").await.unwrap()
        }));
    }
    let mut ranges = Vec::new();
    for t in tasks {
        ranges.extend(t.await.unwrap());
    }
    ranges.extend(s.reserve_children(&o, &p.id, "each").await.unwrap());
    assert_eq!(covered(&ranges), (10..20).collect::<Vec<_>>(), "{ranges:?}");
    assert_eq!(
        s.get_child_tally(&o, &p.id, "each").await.unwrap(),
        Some(ChildTally {
            total: 25,
            concurrency: 10,
            started: 20,
            done: 10,
            failed: 0,
        })
    );
    assert_eq!(s.reserve_children(&o, &p.id, "each").await.unwrap(), None);
}

pub async fn callbacks_are_accepted_once(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let e = execution(&o1, "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    assert_eq!(s.get_callback(&o1, &e.id, "wait").await.unwrap(), None);

    let first = callback(json!({"approved": true, "by": "ann"}), 1000);
    assert!(s.put_callback(&o1, &e.id, "wait", &first).await.unwrap());
    assert_eq!(
        s.get_callback(&o1, &e.id, "wait").await.unwrap(),
        Some(first.clone())
    );
    // Any later callback is refused, the same one or another.
    let failed = ReceivedCallback {
        callback: Callback::Failed("rejected".into()),
        received_at: ts(2000),
    };
    assert!(!s.put_callback(&o1, &e.id, "wait", &first).await.unwrap());
    assert!(!s.put_callback(&o1, &e.id, "wait", &failed).await.unwrap());
    assert!(
        !s.put_callback(&o1, &e.id, "wait", &callback(json!(null), 3000))
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_callback(&o1, &e.id, "wait").await.unwrap(),
        Some(first.clone())
    );

    // Another node of the execution takes its own (a failure, stored as such).
    assert!(s.put_callback(&o1, &e.id, "other", &failed).await.unwrap());
    assert_eq!(
        s.get_callback(&o1, &e.id, "other").await.unwrap(),
        Some(failed)
    );
    assert_eq!(
        s.get_callback(&o1, &e.id, "wait").await.unwrap(),
        Some(first)
    );
    // Other organizations and unknown executions see none.
    assert_eq!(s.get_callback(&o2, &e.id, "wait").await.unwrap(), None);
    assert_eq!(s.get_callback(&o1, &new_id(), "wait").await.unwrap(), None);
}

pub async fn twenty_concurrent_callbacks_one_accepted(s: Arc<dyn Store>) {
    let o = org();
    let e = execution(&o, "w", 0);
    s.create_execution(&e, None, ts(0)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20i64 {
        let (s, o, id) = (s.clone(), o.clone(), e.id.clone());
        tasks.push(tokio::spawn(async move {
            let cb = callback(json!({"sender": i}), 1000 + i);
            let accepted = s.put_callback(&o, &id, "wait", &cb).await.unwrap();
            (accepted, cb)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (accepted, cb) = t.await.unwrap();
        if accepted {
            winners.push(cb);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one callback accepted");
    assert_eq!(
        s.get_callback(&o, &e.id, "wait").await.unwrap(),
        winners.pop()
    );
}

pub async fn child_terminal_statuses_count_in_the_parent_tally(s: Arc<dyn Store>) {
    use ExecutionStatus::*;
    let o = org();
    let p = execution(&o, "w", 0);
    s.create_execution(&p, None, ts(0)).await.unwrap();
    let t = ChildTally::new(4, 4);
    s.create_child_tally(&o, &p.id, "each", &t).await.unwrap();
    let tally = || tally_of(s.as_ref(), &o, &p.id, "each");
    let counts = |done: u32, failed: u32| ChildTally { done, failed, ..t };
    let children: Vec<Execution> = (0..4).map(|i| child_of(&p, "each", i, 100)).collect();
    for c in &children {
        s.create_execution(c, None, ts(0)).await.unwrap();
    }
    assert_eq!(tally().await, t);

    // Non-terminal moves count nothing.
    assert!(report(s.as_ref(), &children[0], Running).await);
    assert!(report(s.as_ref(), &children[1], Paused).await);
    assert!(report(s.as_ref(), &children[1], Running).await);
    assert_eq!(tally().await, t);

    // Each terminal status: done + 1, failed + 1 unless success.
    assert!(report(s.as_ref(), &children[0], Success).await);
    assert_eq!(tally().await, counts(1, 0));
    assert!(report(s.as_ref(), &children[1], Failed).await);
    assert_eq!(tally().await, counts(2, 1));
    assert!(report(s.as_ref(), &children[2], Cancelled).await);
    assert_eq!(tally().await, counts(3, 2));
    // The child's status is stored as moved.
    assert_eq!(
        s.get_execution(&o, &children[2].id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Cancelled
    );

    // A second terminal move from a terminal status fails and counts nothing.
    for to in ExecutionStatus::ALL {
        assert!(!report(s.as_ref(), &children[0], to).await, "{to:?}");
        assert!(!report(s.as_ref(), &children[1], to).await, "{to:?}");
    }
    assert_eq!(tally().await, counts(3, 2));
    assert_eq!(
        s.get_execution(&o, &children[0].id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Success
    );

    // Detached children (their parent node keeps no tally) change nothing and still move.
    let detached = child_of(&p, "fire", 0, 200);
    s.create_execution(&detached, None, ts(0)).await.unwrap();
    assert!(report(s.as_ref(), &detached, Failed).await);
    assert_eq!(
        s.get_execution(&o, &detached.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        Failed
    );
    assert_eq!(s.get_child_tally(&o, &p.id, "fire").await.unwrap(), None);
    let mut orphan = child_of(&p, "each", 9, 200);
    orphan.parent_execution_id = Some(new_id());
    s.create_execution(&orphan, None, ts(0)).await.unwrap();
    assert!(report(s.as_ref(), &orphan, Success).await);
    assert_eq!(
        s.get_child_tally(&o, orphan.parent_execution_id.as_ref().unwrap(), "each")
            .await
            .unwrap(),
        None
    );
    // A top-level execution counts nowhere either.
    let top = execution(&o, "w", 300);
    s.create_execution(&top, None, ts(0)).await.unwrap();
    assert!(report(s.as_ref(), &top, Success).await);
    assert_eq!(tally().await, counts(3, 2));

    // Timeout counts as failed; the tally is complete.
    assert!(report(s.as_ref(), &children[3], Timeout).await);
    let end = tally().await;
    assert_eq!(end, counts(4, 3));
    assert!(end.complete());
}

pub async fn concurrent_child_reports_count_once(s: Arc<dyn Store>) {
    use ExecutionStatus::*;
    let o = org();
    let p = execution(&o, "w", 0);
    s.create_execution(&p, None, ts(0)).await.unwrap();
    let t = ChildTally::new(10, 10);
    s.create_child_tally(&o, &p.id, "each", &t).await.unwrap();
    let children: Vec<Execution> = (0..10).map(|i| child_of(&p, "each", i, 100)).collect();
    for c in &children {
        s.create_execution(c, None, ts(0)).await.unwrap();
    }
    // Every child gets two racing terminal moves (success and cancelled): one wins each.
    let mut tasks = Vec::new();
    for c in &children {
        for to in [Success, Cancelled] {
            let (s, c) = (s.clone(), c.clone());
            tasks.push(tokio::spawn(
                async move { report(s.as_ref(), &c, to).await },
            ));
        }
    }
    let mut wins = 0;
    for t in tasks {
        wins += u32::from(t.await.unwrap());
    }
    assert_eq!(wins, 10, "one terminal move per child");
    let ids: Vec<String> = children.iter().map(|c| c.id.clone()).collect();
    let stored = s.get_executions(&o, &ids).await.unwrap();
    assert_eq!(stored.len(), 10);
    let cancelled = stored.iter().filter(|c| c.status == Cancelled).count() as u32;
    assert!(stored.iter().all(|c| c.status.is_terminal()));
    assert_eq!(
        s.get_child_tally(&o, &p.id, "each").await.unwrap(),
        Some(ChildTally {
            done: 10,
            failed: cancelled,
            ..t
        })
    );
}

pub async fn get_executions_returns_the_existing_ones(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let mut mine = Vec::new();
    for i in 0..3 {
        let e = execution(&o1, "w", i * 1000);
        s.create_execution(&e, None, ts(0)).await.unwrap();
        mine.push(e);
    }
    // One of them terminal: read as stored.
    let done = finished(mine[1].clone(), ExecutionStatus::Success, 50);
    assert!(
        s.transition_execution(&done, &[ExecutionStatus::Pending])
            .await
            .unwrap()
    );
    mine[1] = done;
    let theirs = execution(&o2, "w", 0);
    s.create_execution(&theirs, None, ts(0)).await.unwrap();

    let by_id = |mut v: Vec<Execution>| {
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    };
    let ids = vec![
        mine[2].id.clone(),
        new_id(),
        theirs.id.clone(),
        mine[0].id.clone(),
        mine[1].id.clone(),
    ];
    assert_eq!(
        by_id(s.get_executions(&o1, &ids).await.unwrap()),
        by_id(mine.clone())
    );
    assert_eq!(s.get_executions(&o1, &[]).await.unwrap(), vec![]);
    assert_eq!(
        s.get_executions(&o1, &[new_id(), new_id()]).await.unwrap(),
        vec![]
    );
    assert_eq!(
        s.get_executions(&o2, &ids).await.unwrap(),
        vec![theirs.clone()]
    );
    assert_eq!(s.get_executions(&org(), &ids).await.unwrap(), vec![]);

    // Many ids (a large map's children), most unknown, the known ones spread out.
    let mut many: Vec<String> = (0..250).map(|_| new_id()).collect();
    many[0] = mine[0].id.clone();
    many[120] = mine[1].id.clone();
    many[249] = mine[2].id.clone();
    many[200] = theirs.id.clone();
    assert_eq!(
        by_id(s.get_executions(&o1, &many).await.unwrap()),
        by_id(mine)
    );
}

pub async fn move_deadline_moves_unfinished_executions_only(s: Arc<dyn Store>) {
    use ExecutionStatus::*;
    let (o1, o2) = two_orgs();
    // Deadlines 100 s, 200 s, 300 s; one of each unfinished status.
    let mut es = Vec::new();
    for (i, status) in [Pending, Running, Paused].into_iter().enumerate() {
        let mut e = execution(&o1, "w", i as i64 * 1000);
        e.deadline = ts(100_000 * (i as i64 + 1));
        s.create_execution(&e, None, ts(0)).await.unwrap();
        if status != Pending {
            e.status = status;
            assert!(s.transition_execution(&e, &[Pending]).await.unwrap());
        }
        es.push(e);
    }
    let ids = |v: &[Execution]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&unfinished_by_deadline(s.as_ref(), &[&o1, &o2], 2).await),
        ids(&es)
    );

    // The paused one moves first, the pending one last.
    s.move_deadline(&o1, &es[2].id, ts(50_000)).await.unwrap();
    s.move_deadline(&o1, &es[0].id, ts(400_000)).await.unwrap();
    es[2].deadline = ts(50_000);
    es[0].deadline = ts(400_000);
    for e in &es {
        assert_eq!(s.get_execution(&o1, &e.id).await.unwrap().as_ref(), Some(e));
    }
    let expected = vec![es[2].clone(), es[1].clone(), es[0].clone()];
    assert_eq!(
        unfinished_by_deadline(s.as_ref(), &[&o1, &o2], 2).await,
        expected
    );
    // Moved again, later still.
    s.move_deadline(&o1, &es[2].id, ts(500_000)).await.unwrap();
    es[2].deadline = ts(500_000);
    assert_eq!(
        ids(&unfinished_by_deadline(s.as_ref(), &[&o1, &o2], 10).await),
        ids(&[es[1].clone(), es[0].clone(), es[2].clone()])
    );

    // Another organization moves nothing.
    s.move_deadline(&o2, &es[1].id, ts(1)).await.unwrap();
    assert_eq!(
        s.get_execution(&o1, &es[1].id)
            .await
            .unwrap()
            .unwrap()
            .deadline,
        ts(200_000)
    );

    // A terminal execution is left alone (and stays out of the unfinished list).
    let done = finished(es[1].clone(), Success, 20);
    assert!(s.transition_execution(&done, &[Running]).await.unwrap());
    s.move_deadline(&o1, &done.id, ts(10)).await.unwrap();
    assert_eq!(
        s.get_execution(&o1, &done.id).await.unwrap(),
        Some(done.clone())
    );
    assert_eq!(
        unfinished_by_deadline(s.as_ref(), &[&o1, &o2], 10).await,
        vec![es[0].clone(), es[2].clone()]
    );

    // An unknown execution: nothing is created.
    let ghost = new_id();
    let _ = s.move_deadline(&o1, &ghost, ts(10)).await;
    assert_eq!(s.get_execution(&o1, &ghost).await.unwrap(), None);
    assert_eq!(
        unfinished_by_deadline(s.as_ref(), &[&o1, &o2], 10).await,
        vec![es[0].clone(), es[2].clone()]
    );
}

pub async fn executions_listed_by_parent(s: Arc<dyn Store>) {
    let (o1, o2) = two_orgs();
    let p = execution(&o1, "w", 0);
    let q = execution(&o1, "w", 0);
    s.create_execution(&p, None, ts(0)).await.unwrap();
    s.create_execution(&q, None, ts(0)).await.unwrap();
    // p's children (two share a creation time; one is of another node), q's children and
    // top-level executions interleaved in time.
    let mut p_children = Vec::new();
    for i in 0..7u32 {
        let node = if i == 5 { "sub" } else { "each" };
        let created = 1000 + i64::from(i / 2 * 2) * 1000;
        let c = child_of(&p, node, i, created);
        s.create_execution(&c, None, ts(0)).await.unwrap();
        p_children.push(c);
        let other = if i % 2 == 0 {
            child_of(&q, "each", i, created + 500)
        } else {
            execution(&o1, "w", created + 500)
        };
        s.create_execution(&other, None, ts(0)).await.unwrap();
    }
    // A finished child is still listed.
    let done = finished(p_children[3].clone(), ExecutionStatus::Failed, 30);
    assert!(
        s.transition_execution(&done, &[ExecutionStatus::Pending])
            .await
            .unwrap()
    );
    p_children[3] = done;
    p_children.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));

    let by_p = ExecutionFilter {
        parent_execution_id: Some(p.id.clone()),
        ..Default::default()
    };
    // Pages of 2 (a page with a cursor is not the last), newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s
            .list_executions(&o1, &by_p, 2, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        pages += 1;
        assert!(pages <= 5, "too many pages");
        seen.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, p_children);
    let whole = s.list_executions(&o1, &by_p, 10, None).await.unwrap();
    assert_eq!(whole.items, p_children);
    assert_eq!(whole.next_cursor, None);

    // Combined with another filter.
    let failed_of_p = ExecutionFilter {
        status: Some(ExecutionStatus::Failed),
        ..by_p.clone()
    };
    assert_eq!(
        s.list_executions(&o1, &failed_of_p, 10, None)
            .await
            .unwrap()
            .items,
        vec![
            p_children
                .iter()
                .find(|c| c.status == ExecutionStatus::Failed)
                .unwrap()
                .clone()
        ]
    );
    // q's children, an execution without children, another organization.
    let by_q = ExecutionFilter {
        parent_execution_id: Some(q.id.clone()),
        ..Default::default()
    };
    let q_children = s.list_executions(&o1, &by_q, 10, None).await.unwrap().items;
    assert_eq!(q_children.len(), 4);
    assert!(
        q_children
            .iter()
            .all(|c| c.parent_execution_id.as_deref() == Some(q.id.as_str()))
    );
    let childless = ExecutionFilter {
        parent_execution_id: Some(p_children[0].id.clone()),
        ..Default::default()
    };
    assert_eq!(
        s.list_executions(&o1, &childless, 10, None)
            .await
            .unwrap()
            .items,
        vec![]
    );
    assert_eq!(
        s.list_executions(&o2, &by_p, 10, None).await.unwrap().items,
        vec![]
    );
    // The unfiltered list has everything.
    assert_eq!(
        s.list_executions(&o1, &ExecutionFilter::default(), 100, None)
            .await
            .unwrap()
            .items
            .len(),
        2 + 7 + 7
    );

    // Cursors are bound to the parent filter.
    let c = s
        .list_executions(&o1, &by_p, 2, None)
        .await
        .unwrap()
        .next_cursor
        .unwrap();
    for other in [ExecutionFilter::default(), by_q.clone()] {
        assert!(
            matches!(
                s.list_executions(&o1, &other, 2, Some(&c)).await,
                Err(StoreError::InvalidCursor)
            ),
            "{other:?}"
        );
    }
    assert!(matches!(
        s.list_executions(&o2, &by_p, 2, Some(&c)).await,
        Err(StoreError::InvalidCursor)
    ));
    let unfiltered = s
        .list_executions(&o1, &ExecutionFilter::default(), 2, None)
        .await
        .unwrap()
        .next_cursor
        .unwrap();
    assert!(matches!(
        s.list_executions(&o1, &by_p, 2, Some(&unfiltered)).await,
        Err(StoreError::InvalidCursor)
    ));
}

pub async fn composition_fields_round_trip(s: Arc<dyn Store>) {
    let o = org();
    let mut p = execution(&o, "w", 0);
    p.depth = 2;
    s.create_execution(&p, None, ts(0)).await.unwrap();
    let mut c = child_of(&p, "each", 7, 1000);
    c.workflow_version = 4;
    c.inline_of = Some("each".into());
    c.pending_reason = Some(PendingReason::Concurrency);
    assert_eq!(c.depth, 3);
    match s.create_execution(&c, None, ts(0)).await.unwrap() {
        Created::Created(e) => assert_eq!(e, c),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.get_execution(&o, &c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(
        s.get_executions(&o, std::slice::from_ref(&c.id))
            .await
            .unwrap(),
        vec![c.clone()]
    );
    assert_eq!(
        s.get_execution_state(&o, &c.id)
            .await
            .unwrap()
            .unwrap()
            .execution,
        c
    );
    let by_parent = ExecutionFilter {
        parent_execution_id: Some(p.id.clone()),
        ..Default::default()
    };
    assert_eq!(
        s.list_executions(&o, &by_parent, 10, None)
            .await
            .unwrap()
            .items,
        vec![c.clone()]
    );

    // Through a transition, and back to none (the reason is cleared when it runs).
    let mut running = c.clone();
    running.status = ExecutionStatus::Running;
    running.pending_reason = None;
    running.started_at = Some(ts(1500));
    assert!(
        s.transition_execution(&running, &[ExecutionStatus::Pending])
            .await
            .unwrap()
    );
    assert_eq!(s.get_execution(&o, &c.id).await.unwrap(), Some(running));

    // A top-level execution keeps its defaults.
    assert_eq!(s.get_execution(&o, &p.id).await.unwrap(), Some(p));
}

// ---- the save policy (SPEC §14) -------------------------------------------------------------

/// `drop_execution_data` on a successful execution keeps its record and drops its input, its
/// runs' outputs and its `info`/`debug` logs; on any other status it changes nothing.
pub async fn dropping_data_keeps_the_record_of_a_success_only(s: Arc<dyn Store>) {
    let o = org();
    let mut kept = Vec::new();
    for status in [ExecutionStatus::Success, ExecutionStatus::Failed] {
        let mut e = execution(&o, "wf", 0);
        e.input_data = json!({"secret": "input"});
        let mut run = NodeRun::new(&e.id, "a");
        run.status = NodeRunStatus::Success;
        run.output = Some(json!({"big": "output"}));
        run.attempts = 1;
        run.started_at = Some(ts(1));
        run.finished_at = Some(ts(2));
        s.create_execution_with_runs(&e, &[run.clone()], None, ts(0))
            .await
            .unwrap();
        let mut logs = vec![
            log(&e, None, LogLevel::Info, "started"),
            log(&e, Some("a"), LogLevel::Debug, "detail"),
            log(&e, Some("a"), LogLevel::Warn, "slow"),
            log(&e, Some("a"), LogLevel::Error, "failed once"),
        ];
        logs.sort_by(|x, y| x.id.cmp(&y.id));
        s.append_logs(&logs).await.unwrap();
        let mut done = finished(e.clone(), status, 10);
        done.output_data = Some(json!({"result": 1}));
        assert!(
            s.transition_execution(&done, &[ExecutionStatus::Pending])
                .await
                .unwrap()
        );
        s.drop_execution_data(&o, &e.id).await.unwrap();
        kept.push((done, run, logs));
    }
    let [(success, run, logs), (failed, failed_run, failed_logs)] = &kept[..] else {
        unreachable!()
    };

    let stored = s.get_execution(&o, &success.id).await.unwrap().unwrap();
    let mut expected = success.clone();
    expected.input_data = serde_json::Value::Null;
    expected.data_saved = false;
    assert_eq!(stored, expected, "the record stays, with its output");
    let state = s
        .get_execution_state(&o, &success.id)
        .await
        .unwrap()
        .unwrap();
    let mut without_output = run.clone();
    without_output.output = None;
    assert_eq!(state.node_runs, vec![without_output]);
    let left = s
        .list_logs(&o, &success.id, &LogFilter::default(), 100)
        .await
        .unwrap()
        .items;
    let warn_and_error: Vec<_> = logs
        .iter()
        .filter(|l| matches!(l.level, LogLevel::Warn | LogLevel::Error))
        .cloned()
        .collect();
    assert_eq!(left, warn_and_error);

    // A failed execution keeps everything.
    assert_eq!(
        s.get_execution(&o, &failed.id).await.unwrap().as_ref(),
        Some(failed)
    );
    let state = s
        .get_execution_state(&o, &failed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&state.node_runs, &vec![failed_run.clone()]);
    let all = s
        .list_logs(&o, &failed.id, &LogFilter::default(), 100)
        .await
        .unwrap()
        .items;
    assert_eq!(&all, failed_logs);
}

// ---- instantiation -------------------------------------------------------------------------

/// Instantiates every contract test for one backend:
/// `store_contract!(store_contract_sqlite, Backend::sqlite());`
#[macro_export]
macro_rules! store_contract {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use weconnect_tests::backend::Backend;
            $crate::store_contract!(@common $make);
        }
    };
    (@common $make:expr) => {
        $crate::store_contract!(@each $make;
            workflow_versions_updates_and_deletes,
            webhook_ids_are_unique_across_the_installation,
            workflow_pages_newest_first_per_organization,
            scheduled_workflows_are_the_active_ones_with_a_schedule_trigger,
            create_execution_with_runs_writes_runs_only_when_created,
            create_execution_counts_and_honours_idempotency_keys,
            transitions_happen_only_from_the_given_statuses,
            concurrent_terminal_moves_one_wins,
            execution_pages_walk_every_row_once_with_filters,
            execution_pages_newest_first_with_filters_and_date_windows,
            statistics_by_status_and_mode_over_whole_days,
            statistics_follow_status_moves,
            unfinished_executions_by_deadline_and_counts,
            claim_outcomes_and_lease_guarded_saves,
            twenty_concurrent_claims_one_winner,
            arrivals_decide_a_join_once,
            concurrent_arrivals_with_claims_make_one_ready,
            concurrent_arrivals_without_claims_make_one_ready,
            a_wide_join_counts_every_parent_once,
            logs_oldest_first_with_filters_and_tailing,
            credentials_by_id_or_name_unique_per_organization,
            circuit_state_compare_and_set,
            circuits_are_listed_per_organization_by_key,
            trends_count_terminal_executions_by_hour_and_day,
            gates_admit_in_order_and_promote_first_in_line,
            twenty_concurrent_admissions_never_pass_the_limit,
            throttle_assigns_start_times_once_in_order,
            debounce_keeps_the_latest_start,
            execution_cursors_are_bound_to_every_filter,
            child_tallies_are_created_once,
            reserve_children_hands_out_the_next_window,
            concurrent_reservations_never_overlap,
            callbacks_are_accepted_once,
            twenty_concurrent_callbacks_one_accepted,
            child_terminal_statuses_count_in_the_parent_tally,
            concurrent_child_reports_count_once,
            get_executions_returns_the_existing_ones,
            move_deadline_moves_unfinished_executions_only,
            executions_listed_by_parent,
            composition_fields_round_trip,
            dropping_data_keeps_the_record_of_a_success_only);
    };
    (@each $make:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                // The backend (temp folder, moto resources) lives until the test ends.
                let backend = $make.await;
                $crate::store_contract::$test(backend.store.clone()).await;
            }
        )*
    };
}
