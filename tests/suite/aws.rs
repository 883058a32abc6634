//! The AWS adapters against moto: every Store method's contract, the SQS job queue,
//! EventBridge rules and events, the request counter.
//! Run: `cargo test -p weconnect-tests --test suite aws::`

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use weconnect_engine::adapters::aws::eventbridge::{TARGET_ID, rule_name};
use weconnect_engine::adapters::aws::{QueueMessage, TickHandler, parse_message};
use weconnect_engine::model::*;
use weconnect_engine::ports::*;
use weconnect_tests::moto::{AwsEnv, EnvOptions, aws_env, aws_env_with, table_definition};

// ---- builders ------------------------------------------------------------------------------

fn now() -> Timestamp {
    Timestamp::from(chrono::Utc::now())
}

fn node(id: &str, node_type: &str, params: Value) -> Node {
    Node {
        id: id.into(),
        name: format!("Node {id}"),
        node_type: node_type.into(),
        parameters: params.as_object().cloned().unwrap_or_default(),
        enabled: true,
        retry: None,
        timeout_ms: None,
        on_error: None,
    }
}

fn workflow(org: &str, id: &str, status: WorkflowStatus, nodes: Vec<Node>) -> Workflow {
    let t = now();
    Workflow {
        id: id.into(),
        organization_id: org.into(),
        user_id: "u1".into(),
        name: format!("wf {id}"),
        description: Some("a workflow".into()),
        status,
        version: 1,
        nodes,
        connections: vec![],
        settings: WorkflowSettings::default(),
        execution_count: 0,
        last_executed_at: None,
        created_at: t,
        updated_at: t,
    }
}

fn hook(org: &str, wf: &str, id: &str) -> WebhookRoute {
    WebhookRoute {
        webhook_id: id.into(),
        organization_id: org.into(),
        workflow_id: wf.into(),
        node_id: "hook".into(),
    }
}

fn execution(org: &str, wf: &str, created_at: Timestamp) -> Execution {
    Execution {
        id: new_id(),
        workflow_id: wf.into(),
        workflow_version: 1,
        user_id: "u1".into(),
        organization_id: org.into(),
        status: ExecutionStatus::Pending,
        mode: ExecutionMode::Api,
        input_data: json!({"x": 1}),
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
        deadline: created_at.plus(Duration::from_secs(300)),
        created_at,
        start_node_id: "start".into(),
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
        at: now(),
    }
}

fn claim(token: &str, at: Timestamp, lease: Duration) -> Claim {
    Claim {
        token: token.into(),
        now: at,
        lease_until: at.plus(lease),
    }
}

fn ready_run(exec: &str, node: &str) -> NodeRun {
    let mut r = NodeRun::new(exec, node);
    r.ready = true;
    r
}

fn org() -> String {
    format!("org-{}", &new_id()[24..])
}

async fn raw(
    env: &AwsEnv,
    pk: &str,
    sk: &str,
) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    env.dynamo
        .get_item()
        .table_name(&env.name)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

async fn new_execution(store: &dyn Store, org: &str, wf: &str) -> Execution {
    let e = execution(org, wf, now());
    match store.create_execution(&e, None, now()).await.unwrap() {
        Created::Created(c) => c,
        other => panic!("{other:?}"),
    }
}

// ---- harness -------------------------------------------------------------------------------

#[tokio::test]
async fn table_is_created_from_the_template_definition() {
    let env = aws_env().await;
    let def = table_definition();
    let described = env
        .dynamo
        .describe_table()
        .table_name(&env.name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let mut indexes: Vec<String> = described
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name().map(str::to_string))
        .collect();
    indexes.sort();
    let mut expected: Vec<String> = def
        .global_secondary_indexes
        .iter()
        .map(|i| i.index_name.clone())
        .collect();
    expected.sort();
    assert_eq!(indexes, expected);
    assert_eq!(expected, ["ByOrg", "ByParent", "Unfinished"]);
    assert_eq!(
        def.time_to_live_specification.unwrap().attribute_name,
        "expiresAt"
    );
}

// ---- workflows -----------------------------------------------------------------------------

#[tokio::test]
async fn workflows_versions_and_webhook_routes() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let wf = workflow(
        &org,
        "wf-1",
        WorkflowStatus::Draft,
        vec![node("hook", "trigger.webhook", json!({}))],
    );
    store
        .create_workflow(&wf, &[hook(&org, "wf-1", "path-a")])
        .await
        .unwrap();
    assert_eq!(
        store.get_workflow(&org, "wf-1").await.unwrap(),
        Some(wf.clone())
    );
    assert_eq!(store.get_workflow("other-org", "wf-1").await.unwrap(), None);
    assert_eq!(
        store.get_workflow_version(&org, "wf-1", 1).await.unwrap(),
        Some(wf.clone())
    );
    assert_eq!(
        store.find_webhook("path-a").await.unwrap(),
        Some(hook(&org, "wf-1", "path-a"))
    );
    // Creating the same workflow twice is a conflict; so is a webhook id of another workflow.
    assert!(matches!(
        store.create_workflow(&wf, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    let other = workflow(&org, "wf-2", WorkflowStatus::Draft, vec![]);
    match store
        .create_workflow(&other, &[hook(&org, "wf-2", "path-a")])
        .await
    {
        Err(StoreError::Conflict(m)) => assert!(m.contains("path-a"), "{m}"),
        r => panic!("{r:?}"),
    }
    assert_eq!(
        store.get_workflow(&org, "wf-2").await.unwrap(),
        None,
        "nothing written"
    );

    // Update to v2 with another route; a stale update loses.
    let mut v2 = wf.clone();
    v2.version = 2;
    v2.name = "renamed".into();
    v2.description = None;
    assert!(
        store
            .update_workflow(&v2, &[hook(&org, "wf-1", "path-b")])
            .await
            .unwrap()
    );
    assert!(
        !store.update_workflow(&v2, &[]).await.unwrap(),
        "version moved"
    );
    assert_eq!(
        store.get_workflow(&org, "wf-1").await.unwrap(),
        Some(v2.clone())
    );
    assert_eq!(
        store.get_workflow_version(&org, "wf-1", 1).await.unwrap(),
        Some(wf.clone())
    );
    assert_eq!(store.find_webhook("path-a").await.unwrap(), None);
    assert!(store.find_webhook("path-b").await.unwrap().is_some());
    // The freed path can be taken by another workflow now; a taken one cannot be updated into.
    store
        .create_workflow(&other, &[hook(&org, "wf-2", "path-a")])
        .await
        .unwrap();
    let mut v3 = v2.clone();
    v3.version = 3;
    assert!(matches!(
        store
            .update_workflow(&v3, &[hook(&org, "wf-1", "path-a")])
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .get_workflow(&org, "wf-1")
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );

    // Delete: the current version and routes go, versions stay.
    assert!(store.delete_workflow(&org, "wf-1").await.unwrap());
    assert!(!store.delete_workflow(&org, "wf-1").await.unwrap());
    assert_eq!(store.get_workflow(&org, "wf-1").await.unwrap(), None);
    assert_eq!(
        store.get_workflow_version(&org, "wf-1", 2).await.unwrap(),
        Some(v2)
    );
    assert_eq!(store.find_webhook("path-b").await.unwrap(), None);
    assert!(
        store.find_webhook("path-a").await.unwrap().is_some(),
        "wf-2 keeps its route"
    );
}

#[tokio::test]
async fn workflow_listing_is_newest_first_and_paginated_with_signed_cursors() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let base = now();
    for i in 0..5 {
        let mut wf = workflow(&org, &format!("w{i}"), WorkflowStatus::Draft, vec![]);
        wf.created_at = base.plus(Duration::from_secs(i));
        store.create_workflow(&wf, &[]).await.unwrap();
    }
    store
        .create_workflow(
            &workflow("someone-else", "x", WorkflowStatus::Draft, vec![]),
            &[],
        )
        .await
        .unwrap();
    let p1 = store.list_workflows(&org, 2, None).await.unwrap();
    assert_eq!(
        p1.items.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["w4", "w3"]
    );
    let cursor = p1.next_cursor.unwrap();
    let p2 = store.list_workflows(&org, 2, Some(&cursor)).await.unwrap();
    assert_eq!(
        p2.items.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["w2", "w1"]
    );
    let p3 = store
        .list_workflows(&org, 2, p2.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        p3.items.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["w0"]
    );
    assert_eq!(p3.next_cursor, None);
    // Another organization's cursor, or a forged one, is refused.
    assert!(matches!(
        store.list_workflows("someone-else", 2, Some(&cursor)).await,
        Err(StoreError::InvalidCursor)
    ));
    assert!(matches!(
        store.list_workflows(&org, 2, Some("eyJ2IjoxfQ.AAAA")).await,
        Err(StoreError::InvalidCursor)
    ));
}

#[tokio::test]
async fn scheduled_workflows_are_a_sparse_view_of_active_ones() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let sched = vec![node(
        "tick",
        "trigger.schedule",
        json!({"rate": "5 minutes"}),
    )];
    let active = workflow(&org, "s1", WorkflowStatus::Active, sched.clone());
    store.create_workflow(&active, &[]).await.unwrap();
    store
        .create_workflow(
            &workflow(&org, "s2", WorkflowStatus::Draft, sched.clone()),
            &[],
        )
        .await
        .unwrap();
    store
        .create_workflow(
            &workflow(
                &org,
                "s3",
                WorkflowStatus::Active,
                vec![node("m", "trigger.manual", json!({}))],
            ),
            &[],
        )
        .await
        .unwrap();
    let listed = store.list_scheduled_workflows().await.unwrap();
    assert_eq!(
        listed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["s1"]
    );
    let mut off = active.clone();
    off.version = 2;
    off.status = WorkflowStatus::Inactive;
    assert!(store.update_workflow(&off, &[]).await.unwrap());
    assert!(store.list_scheduled_workflows().await.unwrap().is_empty());
}

// ---- executions ----------------------------------------------------------------------------

#[tokio::test]
async fn executions_are_created_once_per_idempotency_key() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    store
        .create_workflow(&workflow(&org, "wf", WorkflowStatus::Active, vec![]), &[])
        .await
        .unwrap();
    let t0 = now();
    let first = execution(&org, "wf", t0);
    assert_eq!(
        store
            .create_execution(
                &first,
                Some("api:k1"),
                t0.minus(Duration::from_secs(86_400))
            )
            .await
            .unwrap(),
        Created::Created(first.clone())
    );
    let second = execution(&org, "wf", t0.plus(Duration::from_secs(1)));
    assert_eq!(
        store
            .create_execution(
                &second,
                Some("api:k1"),
                t0.minus(Duration::from_secs(86_400))
            )
            .await
            .unwrap(),
        Created::Existing(first.clone())
    );
    assert_eq!(store.get_execution(&org, &second.id).await.unwrap(), None);
    // The same key in another organization is another key.
    store
        .create_workflow(
            &workflow("org-b", "wf", WorkflowStatus::Active, vec![]),
            &[],
        )
        .await
        .ok();
    let other = execution("org-b", "wf", t0);
    assert!(matches!(
        store
            .create_execution(&other, Some("api:k1"), t0)
            .await
            .unwrap(),
        Created::Created(_)
    ));
    // Past the window the key starts a new execution.
    let third = execution(&org, "wf", t0.plus(Duration::from_secs(2)));
    assert_eq!(
        store
            .create_execution(&third, Some("api:k1"), t0.plus(Duration::from_millis(1)))
            .await
            .unwrap(),
        Created::Created(third.clone())
    );
    // Concurrent creations with one key: exactly one is created.
    let key = "webhook:h:k2";
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            let e = execution(&org, "wf", now());
            tokio::spawn(async move {
                store
                    .create_execution(&e, Some(key), Timestamp::from_millis(0))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let results = futures::future::join_all(tasks).await;
    let created: Vec<_> = results
        .iter()
        .filter(|r| matches!(r, Ok(Created::Created(_))))
        .collect();
    assert_eq!(created.len(), 1);
    let Ok(Created::Created(winner)) = created[0] else {
        unreachable!()
    };
    for r in &results {
        if let Ok(Created::Existing(e)) = r {
            assert_eq!(e.id, winner.id);
        }
    }
    // executionCount and lastExecutedAt of the workflow.
    let wf = store.get_workflow(&org, "wf").await.unwrap().unwrap();
    assert_eq!(wf.execution_count, 3);
    assert!(wf.last_executed_at.is_some());
}

#[tokio::test]
async fn one_terminal_status_and_the_unfinished_index() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let mut e = new_execution(store.as_ref(), &org, "wf").await;
    let pk = format!("O#{org}#E#{}", e.id);
    assert!(raw(&env, &pk, "E").await.unwrap().contains_key("gsi3pk"));

    e.status = ExecutionStatus::Running;
    e.started_at = Some(now());
    assert!(
        !store
            .transition_execution(&e, &[ExecutionStatus::Running])
            .await
            .unwrap()
    );
    assert!(
        store
            .transition_execution(&e, &[ExecutionStatus::Pending])
            .await
            .unwrap()
    );
    // Concurrent terminal moves: exactly one wins.
    let mut ok = e.clone();
    ok.status = ExecutionStatus::Success;
    ok.duration = 1234;
    ok.completed_at = Some(now());
    let mut cancel = e.clone();
    cancel.status = ExecutionStatus::Cancelled;
    cancel.completed_at = Some(now());
    let (a, b) = tokio::join!(
        store.transition_execution(&ok, &[ExecutionStatus::Running]),
        store.transition_execution(
            &cancel,
            &[
                ExecutionStatus::Pending,
                ExecutionStatus::Running,
                ExecutionStatus::Paused
            ]
        )
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one terminal move wins");
    let stored = store.get_execution(&org, &e.id).await.unwrap().unwrap();
    assert!(stored.status.is_terminal());
    // Never again.
    let mut again = stored.clone();
    again.status = ExecutionStatus::Failed;
    assert!(
        !store
            .transition_execution(&again, &ExecutionStatus::UNFINISHED)
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition_execution(&again, &[ExecutionStatus::Running])
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_execution(&org, &e.id).await.unwrap().unwrap(),
        stored
    );
    let item = raw(&env, &pk, "E").await.unwrap();
    assert!(
        !item.contains_key("gsi3pk"),
        "removed from the unfinished index"
    );
    assert!(item.contains_key("expiresAt"), "terminal executions expire");
}

#[tokio::test]
async fn terminal_statuses_are_final() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let mut e = new_execution(store.as_ref(), &org, "wf").await;
    e.status = ExecutionStatus::Failed;
    assert!(
        store
            .transition_execution(&e, &[ExecutionStatus::Pending])
            .await
            .unwrap()
    );
    for to in ExecutionStatus::ALL {
        let mut next = e.clone();
        next.status = to;
        let from: Vec<_> = ExecutionStatus::UNFINISHED.to_vec();
        assert!(
            !store.transition_execution(&next, &from).await.unwrap(),
            "{to:?}"
        );
    }
    assert_eq!(
        store
            .get_execution(&org, &e.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ExecutionStatus::Failed
    );
}

#[tokio::test]
async fn unfinished_executions_by_deadline_and_counts() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let t = now();
    let mut ids = Vec::new();
    for (i, deadline_s) in [300u64, 100, 200].into_iter().enumerate() {
        let mut e = execution(&org, "wf", t.minus(Duration::from_secs(100 - i as u64)));
        e.deadline = t.plus(Duration::from_secs(deadline_s));
        store.create_execution(&e, None, t).await.unwrap();
        ids.push(e);
    }
    // One running, one paused, one finished.
    let moves = [
        ExecutionStatus::Running,
        ExecutionStatus::Paused,
        ExecutionStatus::Success,
    ];
    for (e, status) in ids.iter().zip(moves) {
        let mut moved = e.clone();
        moved.status = status;
        assert!(
            store
                .transition_execution(&moved, &[ExecutionStatus::Pending])
                .await
                .unwrap()
        );
    }
    let extra = new_execution(store.as_ref(), &org, "wf").await;

    let p1 = store.list_unfinished_executions(2, None).await.unwrap();
    let ids_by_deadline: Vec<&str> = p1.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids_by_deadline, [ids[1].id.as_str(), ids[0].id.as_str()]);
    let p2 = store
        .list_unfinished_executions(2, p1.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        p2.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        [extra.id.as_str()]
    );
    assert_eq!(p2.next_cursor, None);
    assert!(matches!(
        store.list_unfinished_executions(2, Some("garbage")).await,
        Err(StoreError::InvalidCursor)
    ));

    let none = store
        .count_unfinished_executions("another-org", t.minus(Duration::from_secs(50)))
        .await
        .unwrap();
    assert_eq!(none, UnfinishedCounts::default());
    let counts = store
        .count_unfinished_executions(&org, t.minus(Duration::from_secs(50)))
        .await
        .unwrap();
    assert_eq!(
        counts,
        UnfinishedCounts {
            running: 1,
            pending: 1,
            paused: 1,
            stale: 1
        }
    );
}

#[tokio::test]
async fn execution_listing_filters_pages_and_refuses_foreign_cursors() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let base = Timestamp::parse("2026-03-01T10:00:00.000Z").unwrap();
    let mut all = Vec::new();
    for i in 0..7u64 {
        let wf = if i % 2 == 0 { "wf-even" } else { "wf-odd" };
        let mut e = execution(&org, wf, base.plus(Duration::from_secs(60 * i)));
        e.mode = if i < 3 {
            ExecutionMode::Webhook
        } else {
            ExecutionMode::Manual
        };
        store.create_execution(&e, None, base).await.unwrap();
        if i == 6 {
            e.status = ExecutionStatus::Running;
            assert!(
                store
                    .transition_execution(&e, &[ExecutionStatus::Pending])
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
    let p1 = store.list_executions(&org, &f, 3, None).await.unwrap();
    assert_eq!(ids(&p1), newest_first[..3]);
    let p2 = store
        .list_executions(&org, &f, 3, p1.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&p2), newest_first[3..6]);
    let p3 = store
        .list_executions(&org, &f, 3, p2.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&p3), newest_first[6..]);
    assert_eq!(p3.next_cursor, None);

    // Filters.
    let by_wf = ExecutionFilter {
        workflow_id: Some("wf-odd".into()),
        ..Default::default()
    };
    let odd = store.list_executions(&org, &by_wf, 10, None).await.unwrap();
    assert_eq!(
        ids(&odd),
        [all[5].id.clone(), all[3].id.clone(), all[1].id.clone()]
    );
    let running = ExecutionFilter {
        status: Some(ExecutionStatus::Running),
        ..Default::default()
    };
    assert_eq!(
        ids(&store
            .list_executions(&org, &running, 10, None)
            .await
            .unwrap()),
        [all[6].id.clone()]
    );
    let webhook = ExecutionFilter {
        mode: Some(ExecutionMode::Webhook),
        ..Default::default()
    };
    let p = store
        .list_executions(&org, &webhook, 2, None)
        .await
        .unwrap();
    assert_eq!(ids(&p), [all[2].id.clone(), all[1].id.clone()]);
    let p = store
        .list_executions(&org, &webhook, 2, p.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(ids(&p), [all[0].id.clone()]);
    let window = ExecutionFilter {
        start_date: Some(all[2].created_at),
        end_date: Some(all[4].created_at),
        ..Default::default()
    };
    assert_eq!(
        ids(&store
            .list_executions(&org, &window, 10, None)
            .await
            .unwrap()),
        [all[4].id.clone(), all[3].id.clone(), all[2].id.clone()]
    );
    let since = ExecutionFilter {
        start_date: Some(all[5].created_at),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_executions(&org, &since, 10, None)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let until = ExecutionFilter {
        end_date: Some(all[0].created_at),
        ..Default::default()
    };
    assert_eq!(
        ids(&store.list_executions(&org, &until, 10, None).await.unwrap()),
        [all[0].id.clone()]
    );

    // Cursors: another organization's, another query's, or forged ones are refused.
    let cursor = p1.next_cursor.unwrap();
    assert!(matches!(
        store
            .list_executions("org-other", &f, 3, Some(&cursor))
            .await,
        Err(StoreError::InvalidCursor)
    ));
    assert!(matches!(
        store.list_executions(&org, &by_wf, 3, Some(&cursor)).await,
        Err(StoreError::InvalidCursor)
    ));
    let mut tampered = cursor.clone();
    tampered.insert(
        3,
        if tampered.as_bytes()[3] == b'A' {
            'B'
        } else {
            'A'
        },
    );
    for bad in [tampered.as_str(), "not-a-cursor", "", "a.b.c"] {
        assert!(
            matches!(
                store.list_executions(&org, &f, 3, Some(bad)).await,
                Err(StoreError::InvalidCursor)
            ),
            "{bad}"
        );
    }
    // A cursor signed by another store (another secret) is refused too.
    let other_env = aws_env().await;
    assert!(matches!(
        other_env
            .adapters
            .store
            .list_executions(&org, &f, 3, Some(&cursor))
            .await,
        Err(StoreError::InvalidCursor)
    ));
}

#[tokio::test]
async fn statistics_come_from_counters() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let day1 = Timestamp::parse("2026-05-01T12:00:00.000Z").unwrap();
    let day2 = Timestamp::parse("2026-05-03T12:00:00.000Z").unwrap();
    let durations = [100u64, 200, 300, 400];
    for (i, d) in durations.iter().enumerate() {
        let mut e = execution(&org, "wf", if i < 2 { day1 } else { day2 });
        e.mode = if i == 0 {
            ExecutionMode::Webhook
        } else {
            ExecutionMode::Api
        };
        store.create_execution(&e, None, day1).await.unwrap();
        e.status = ExecutionStatus::Running;
        assert!(
            store
                .transition_execution(&e, &[ExecutionStatus::Pending])
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
            store
                .transition_execution(&e, &[ExecutionStatus::Running])
                .await
                .unwrap()
        );
    }
    let pending = execution(&org, "wf", day2);
    store.create_execution(&pending, None, day1).await.unwrap();

    let s = store.execution_statistics(&org, None, None).await.unwrap();
    assert_eq!(s.total, 5);
    assert_eq!(s.by_status.get("success"), Some(&3));
    assert_eq!(s.by_status.get("failed"), Some(&1));
    assert_eq!(s.by_status.get("pending"), Some(&1));
    assert_eq!(
        s.by_status.get("running"),
        Some(&0),
        "every status is listed, as on SQLite"
    );
    assert_eq!(s.by_mode.get("api"), Some(&4));
    assert_eq!(s.by_mode.get("webhook"), Some(&1));
    assert!((s.success_rate - 0.75).abs() < 1e-9);
    assert!((s.average_duration - 250.0).abs() < 1e-9);
    assert!(
        s.p95_duration > 300.0 && s.p95_duration <= 500.0,
        "{}",
        s.p95_duration
    );

    let first_day = store
        .execution_statistics(&org, Some(day1), Some(day1))
        .await
        .unwrap();
    assert_eq!(first_day.total, 2);
    assert!((first_day.average_duration - 150.0).abs() < 1e-9);
    let later = store
        .execution_statistics(&org, Some(day1.plus(Duration::from_secs(86_400))), None)
        .await
        .unwrap();
    assert_eq!(later.total, 3);
    assert_eq!(
        store
            .execution_statistics("nobody", None, None)
            .await
            .unwrap()
            .total,
        0
    );
}

// ---- node runs -----------------------------------------------------------------------------

#[tokio::test]
async fn claim_lease_record_contract() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let e = new_execution(store.as_ref(), &org, "wf").await;
    let t = now();
    let lease = Duration::from_secs(30);
    assert_eq!(
        store
            .claim_node(&org, &e.id, "nope", &claim("t0", t, lease))
            .await
            .unwrap(),
        ClaimOutcome::NotReady
    );
    store
        .put_node_runs(&org, &[ready_run(&e.id, "a")])
        .await
        .unwrap();
    // Creating again does not overwrite.
    store
        .put_node_runs(&org, &[NodeRun::new(&e.id, "a")])
        .await
        .unwrap();

    let ClaimOutcome::Claimed(run) = store
        .claim_node(&org, &e.id, "a", &claim("t1", t, lease))
        .await
        .unwrap()
    else {
        panic!("first claim wins")
    };
    assert_eq!(run.status, NodeRunStatus::Running);
    assert_eq!(run.attempts, 1);
    assert_eq!(run.lease_token.as_deref(), Some("t1"));
    assert_eq!(
        store
            .claim_node(&org, &e.id, "a", &claim("t2", t, lease))
            .await
            .unwrap(),
        ClaimOutcome::Leased {
            until: t.plus(lease)
        }
    );
    // The lease expires: another claim takes over; the first holder's result is refused.
    let later = t.plus(lease).plus(Duration::from_millis(1));
    let ClaimOutcome::Claimed(run2) = store
        .claim_node(&org, &e.id, "a", &claim("t3", later, lease))
        .await
        .unwrap()
    else {
        panic!("expired lease is claimable")
    };
    assert_eq!(run2.attempts, 2);
    let mut result = run2.clone();
    result.status = NodeRunStatus::Success;
    result.output = Some(json!({"ok": true}));
    result.finished_at = Some(later);
    assert!(!store.save_node_run(&org, &result, "t1").await.unwrap());
    assert!(store.save_node_run(&org, &result, "t3").await.unwrap());
    assert_eq!(
        store
            .claim_node(&org, &e.id, "a", &claim("t4", later, lease))
            .await
            .unwrap(),
        ClaimOutcome::Finished(result.clone())
    );
    let item = raw(&env, &format!("O#{org}#E#{}", e.id), "E#N#a")
        .await
        .unwrap();
    assert!(item.contains_key("expiresAt"));

    // Backoff: a pending run with notBefore in the future.
    store
        .put_node_runs(&org, &[ready_run(&e.id, "b")])
        .await
        .unwrap();
    let ClaimOutcome::Claimed(mut b) = store
        .claim_node(&org, &e.id, "b", &claim("k1", t, lease))
        .await
        .unwrap()
    else {
        panic!()
    };
    b.status = NodeRunStatus::Pending;
    b.not_before = Some(t.plus(Duration::from_secs(10)));
    b.lease_token = None;
    assert!(store.save_node_run(&org, &b, "k1").await.unwrap());
    assert_eq!(
        store
            .claim_node(&org, &e.id, "b", &claim("k2", t, lease))
            .await
            .unwrap(),
        ClaimOutcome::NotYet {
            not_before: t.plus(Duration::from_secs(10))
        }
    );
    let ClaimOutcome::Claimed(b2) = store
        .claim_node(
            &org,
            &e.id,
            "b",
            &claim("k3", t.plus(Duration::from_secs(10)), lease),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(b2.attempts, 2);
    // The state read: one Query with the execution and both runs.
    let state = store
        .get_execution_state(&org, &e.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.execution.id, e.id);
    assert_eq!(state.node_runs.len(), 2);
    assert_eq!(state.run("a"), Some(&result));
    assert_eq!(
        store.get_execution_state(&org, "missing").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn ten_concurrent_claims_one_winner() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let e = new_execution(store.as_ref(), &org, "wf").await;
    store
        .put_node_runs(&org, &[ready_run(&e.id, "n")])
        .await
        .unwrap();
    let t = now();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let (org, id) = (org.clone(), e.id.clone());
            tokio::spawn(async move {
                store
                    .claim_node(
                        &org,
                        &id,
                        "n",
                        &claim(&format!("w{i}"), t, Duration::from_secs(60)),
                    )
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
    let winners = outcomes
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::Claimed(_)))
        .count();
    assert_eq!(winners, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ClaimOutcome::Claimed(_) | ClaimOutcome::Leased { .. }))
    );
}

#[tokio::test]
async fn joins_arrive_once_and_decide_once() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let e = new_execution(store.as_ref(), &org, "wf").await;
    let id = e.id.as_str();
    // Three parents, one not taken.
    assert_eq!(
        store
            .arrive(&org, &arrival(id, "join", "p1", true, 3), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    assert!(
        matches!(
            store
                .arrive(&org, &arrival(id, "join", "p1", true, 3), None)
                .await
                .unwrap(),
            Arrival::Duplicate(r) if !r.ready
        ),
        "a duplicate arrival before the join is complete"
    );
    assert_eq!(
        store
            .arrive(&org, &arrival(id, "join", "p2", false, 3), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    let c = claim("inline", now(), Duration::from_secs(30));
    let Arrival::Ready(run) = store
        .arrive(&org, &arrival(id, "join", "p3", true, 3), Some(&c))
        .await
        .unwrap()
    else {
        panic!("the completing arrival decides")
    };
    assert_eq!((run.arrived, run.taken), (3, 2));
    assert!(run.ready);
    assert_eq!(
        run.status,
        NodeRunStatus::Running,
        "claimed in the same write"
    );
    assert_eq!(run.lease_token.as_deref(), Some("inline"));
    assert_eq!(run.attempts, 1);
    assert!(matches!(
        store
            .arrive(&org, &arrival(id, "join", "p3", true, 3), None)
            .await
            .unwrap(),
        Arrival::Duplicate(r) if r.ready
    ));

    // No taken connection: skipped.
    assert_eq!(
        store
            .arrive(&org, &arrival(id, "dead", "p1", false, 2), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    let Arrival::Skipped(skipped) = store
        .arrive(&org, &arrival(id, "dead", "p2", false, 2), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(skipped.status, NodeRunStatus::Skipped);
    assert!(matches!(
        store
            .arrive(&org, &arrival(id, "dead", "p2", false, 2), None)
            .await
            .unwrap(),
        Arrival::Duplicate(r) if r.status == NodeRunStatus::Skipped
    ));

    // Single parent: one write, claimed or not, duplicates decided.
    let Arrival::Ready(one) = store
        .arrive(&org, &arrival(id, "single", "p", true, 1), Some(&c))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (one.status, one.attempts, one.ready),
        (NodeRunStatus::Running, 1, true)
    );
    assert!(matches!(
        store
            .arrive(&org, &arrival(id, "single", "p", true, 1), Some(&c))
            .await
            .unwrap(),
        Arrival::Duplicate(r) if r.ready
    ));
    let Arrival::Ready(queued) = store
        .arrive(&org, &arrival(id, "single2", "p", true, 1), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (queued.status, queued.attempts, queued.ready),
        (NodeRunStatus::Pending, 0, true)
    );
    assert!(matches!(
        store.claim_node(&org, id, "single2", &c).await.unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    assert!(matches!(
        store
            .arrive(&org, &arrival(id, "single3", "p", false, 1), None)
            .await
            .unwrap(),
        Arrival::Skipped(_)
    ));
    // A waiting join is not claimable.
    assert_eq!(
        store
            .arrive(&org, &arrival(id, "j2", "p1", true, 2), None)
            .await
            .unwrap(),
        Arrival::Waiting
    );
    assert_eq!(
        store.claim_node(&org, id, "j2", &c).await.unwrap(),
        ClaimOutcome::NotReady
    );
}

#[tokio::test]
async fn concurrent_arrivals_at_a_join_schedule_it_once() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let e = new_execution(store.as_ref(), &org, "wf").await;
    let parents = 8;
    // Every parent arrives twice, concurrently.
    let tasks: Vec<_> = (0..parents * 2)
        .map(|i| {
            let store = store.clone();
            let (org, id) = (org.clone(), e.id.clone());
            tokio::spawn(async move {
                let p = format!("p{}", i % parents);
                store
                    .arrive(&org, &arrival(&id, "join", &p, true, parents), None)
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
    let state = store
        .get_execution_state(&org, &e.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.run("join").unwrap().arrived as usize, parents);
}

// ---- logs ----------------------------------------------------------------------------------

#[tokio::test]
async fn logs_in_batches_filtered_tailed_and_kept_out_of_the_state_read() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let e = new_execution(store.as_ref(), &org, "wf").await;
    let t = now();
    let logs: Vec<ExecutionLog> = (0..30)
        .map(|i| ExecutionLog {
            id: new_id(),
            execution_id: e.id.clone(),
            organization_id: org.clone(),
            node_id: Some(if i % 3 == 0 { "a" } else { "b" }.to_string()),
            level: if i % 5 == 0 {
                LogLevel::Error
            } else {
                LogLevel::Info
            },
            message: format!("log {i}"),
            data: (i == 1).then(|| json!({"k": [1, 2]})),
            timestamp: t.plus(Duration::from_millis(i)),
            execution_step: 1,
            node_type: Some("flow.noop".into()),
            node_name: Some("Node".into()),
        })
        .collect();
    env.adapters.counter.reset();
    store.append_logs(&logs).await.unwrap();
    assert_eq!(
        env.adapters
            .counter
            .operation("dynamodb", "BatchWriteItem")
            .requests,
        2,
        "25 per call"
    );

    let p1 = store
        .list_logs(&org, &e.id, &LogFilter::default(), 12)
        .await
        .unwrap();
    assert_eq!(p1.items, logs[..12]);
    let after = LogFilter {
        after: p1.next_cursor.clone(),
        ..Default::default()
    };
    assert_eq!(p1.next_cursor.as_deref(), Some(logs[11].id.as_str()));
    let p2 = store.list_logs(&org, &e.id, &after, 100).await.unwrap();
    assert_eq!(p2.items, logs[12..]);
    assert_eq!(p2.next_cursor, None);
    let errors = LogFilter {
        level: Some(LogLevel::Error),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_logs(&org, &e.id, &errors, 100)
            .await
            .unwrap()
            .items
            .len(),
        6
    );
    let node_a = LogFilter {
        node_id: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_logs(&org, &e.id, &node_a, 100)
            .await
            .unwrap()
            .items
            .len(),
        10
    );
    assert!(
        store
            .list_logs("other", &e.id, &LogFilter::default(), 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let item = raw(
        &env,
        &format!("O#{org}#E#{}", e.id),
        &format!("L#{}", logs[0].id),
    )
    .await
    .unwrap();
    assert!(item.contains_key("expiresAt"));

    env.adapters.counter.reset();
    let state = store
        .get_execution_state(&org, &e.id)
        .await
        .unwrap()
        .unwrap();
    assert!(state.node_runs.is_empty(), "logs are not runs");
    assert_eq!(env.adapters.counter.requests("dynamodb"), 1, "one Query");
    assert_eq!(
        env.adapters.counter.operation("dynamodb", "Query").requests,
        1
    );
}

// ---- size ----------------------------------------------------------------------------------

#[tokio::test]
async fn oversized_items_are_too_large_not_sdk_errors() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let e = new_execution(store.as_ref(), &org, "wf").await;
    store
        .put_node_runs(&org, &[ready_run(&e.id, "big")])
        .await
        .unwrap();
    let ClaimOutcome::Claimed(mut run) = store
        .claim_node(
            &org,
            &e.id,
            "big",
            &claim("t", now(), Duration::from_secs(30)),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    env.adapters.counter.reset();
    run.status = NodeRunStatus::Success;
    run.output = Some(json!({"blob": "x".repeat(450 * 1024)}));
    assert!(matches!(
        store.save_node_run(&org, &run, "t").await,
        Err(StoreError::TooLarge(_))
    ));
    let mut huge = execution(&org, "wf", now());
    huge.input_data = json!("y".repeat(500 * 1024));
    assert!(matches!(
        store.create_execution(&huge, None, now()).await,
        Err(StoreError::TooLarge(_))
    ));
    let log = ExecutionLog {
        id: new_id(),
        execution_id: e.id.clone(),
        organization_id: org.clone(),
        node_id: None,
        level: LogLevel::Info,
        message: "m".into(),
        data: Some(json!("z".repeat(410 * 1024))),
        timestamp: now(),
        execution_step: 0,
        node_type: None,
        node_name: None,
    };
    assert!(matches!(
        store.append_logs(&[log]).await,
        Err(StoreError::TooLarge(_))
    ));
    assert_eq!(
        env.adapters.counter.requests("dynamodb"),
        0,
        "refused before any request"
    );
    // 256 KiB, the engine's output limit, fits.
    run.output = Some(json!({"blob": "x".repeat(256 * 1024)}));
    assert!(store.save_node_run(&org, &run, "t").await.unwrap());
}

// ---- credentials and circuits --------------------------------------------------------------

#[tokio::test]
async fn credentials_unique_names_lookup_by_id_or_name() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let org = org();
    let t = now();
    let cred = |id: &str, name: &str| StoredCredential {
        credential: Credential {
            id: id.into(),
            organization_id: org.clone(),
            name: name.into(),
            credential_type: CredentialType::Bearer,
            created_at: t,
            updated_at: t,
        },
        sealed_data: format!("sealed-{id}"),
    };
    store.put_credential(&cred("c1", "github")).await.unwrap();
    store.put_credential(&cred("c2", "slack")).await.unwrap();
    assert!(matches!(
        store.put_credential(&cred("c3", "github")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_credential(&org, "c1").await.unwrap(),
        Some(cred("c1", "github"))
    );
    assert_eq!(
        store.get_credential(&org, "slack").await.unwrap(),
        Some(cred("c2", "slack"))
    );
    assert_eq!(store.get_credential(&org, "c3").await.unwrap(), None);
    assert_eq!(store.get_credential("other", "c1").await.unwrap(), None);
    let p1 = store.list_credentials(&org, 1, None).await.unwrap();
    assert_eq!(p1.items.len(), 1);
    let p2 = store
        .list_credentials(&org, 1, p1.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_ne!(p1.items[0].id, p2.items[0].id);
    assert!(p2.next_cursor.is_none());
    assert!(matches!(
        store
            .list_credentials("other", 1, p1.next_cursor.as_deref())
            .await,
        Err(StoreError::InvalidCursor)
    ));
    assert!(store.delete_credential(&org, "c1").await.unwrap());
    assert!(!store.delete_credential(&org, "c1").await.unwrap());
    assert_eq!(store.get_credential(&org, "github").await.unwrap(), None);
    // The name is free again.
    store.put_credential(&cred("c3", "github")).await.unwrap();
}

#[tokio::test]
async fn circuit_state_compare_and_set() {
    let env = aws_env().await;
    let store = env.adapters.store.clone();
    let key = format!("host-{}", new_id());
    assert_eq!(store.get_circuit(&key).await.unwrap(), None);
    let v1 = CircuitState {
        consecutive_failures: 1,
        version: 1,
        ..Default::default()
    };
    assert!(store.put_circuit(&key, &v1).await.unwrap());
    assert!(
        !store.put_circuit(&key, &v1).await.unwrap(),
        "version moved"
    );
    let v2 = CircuitState {
        consecutive_failures: 5,
        opened_at: Some(now()),
        trial_until: None,
        version: 2,
    };
    let v2b = CircuitState {
        consecutive_failures: 2,
        version: 2,
        ..Default::default()
    };
    let (a, b) = tokio::join!(store.put_circuit(&key, &v2), store.put_circuit(&key, &v2b));
    assert!(a.unwrap() ^ b.unwrap(), "one compare-and-set wins");
    let stored = store.get_circuit(&key).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert!(stored == v2 || stored == v2b);
}

// ---- SQS -----------------------------------------------------------------------------------

fn job(i: usize) -> Job {
    Job {
        execution_id: format!("e{i}"),
        organization_id: "o".into(),
        node_id: format!("n{i}"),
        attempt: 1,
        workflow_id: None,
        workflow_version: None,
        not_before: None,
    }
}

async fn receive_all(queue: &dyn JobQueue, n: usize, visibility: Duration) -> Vec<Delivery> {
    let mut got = Vec::new();
    for _ in 0..20 {
        if got.len() >= n {
            break;
        }
        got.extend(
            queue
                .receive(10, visibility, Duration::from_millis(200))
                .await
                .unwrap(),
        );
    }
    got
}

#[tokio::test]
async fn sqs_send_batches_receive_ack_release_extend_depth() {
    let env = aws_env().await;
    let queue = env.adapters.queue.clone();
    assert_eq!(queue.max_delay(), Duration::from_secs(900));
    env.adapters.counter.reset();
    let jobs: Vec<Job> = (0..23).map(job).collect();
    queue.send(&jobs, Duration::ZERO).await.unwrap();
    assert_eq!(
        env.adapters
            .counter
            .operation("sqs", "SendMessageBatch")
            .requests,
        3,
        "batches of 10"
    );
    let d = queue.depth().await.unwrap();
    assert_eq!((d.ready, d.in_flight, d.dead), (23, 0, 0));

    let got = receive_all(queue.as_ref(), 23, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 23);
    let received: BTreeSet<_> = got.iter().map(|d| d.job.node_id.clone()).collect();
    assert_eq!(received.len(), 23);
    assert!(got.iter().all(|d| d.receive_count == 1));
    let d = queue.depth().await.unwrap();
    assert_eq!((d.ready, d.in_flight), (0, 23));

    // Ack removes; release makes visible again (after its delay); extend keeps it invisible.
    for d in &got[..20] {
        queue.ack(&d.receipt).await.unwrap();
    }
    queue
        .release(&got[20].receipt, Duration::ZERO)
        .await
        .unwrap();
    queue
        .extend(&got[21].receipt, Duration::from_secs(120))
        .await
        .unwrap();
    let again = receive_all(queue.as_ref(), 1, Duration::from_secs(60)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job, got[20].job);
    assert_eq!(again[0].receive_count, 2);
    let d = queue.depth().await.unwrap();
    assert_eq!((d.ready, d.in_flight), (0, 3));
}

#[tokio::test]
async fn sqs_delayed_messages_and_the_dead_letter_queue() {
    let env = aws_env_with(EnvOptions {
        max_receive_count: 1,
        ..Default::default()
    })
    .await;
    let queue = env.adapters.queue.clone();
    queue
        .send(&[job(1)], Duration::from_secs(600))
        .await
        .unwrap();
    let d = queue.depth().await.unwrap();
    assert_eq!((d.ready, d.delayed), (0, 1));
    assert!(
        queue
            .receive(10, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );

    // A poison message: received once (and not acknowledged), then dead-lettered.
    queue
        .send_bodies(&["not a job".to_string()], Duration::ZERO)
        .await
        .unwrap();
    let got = queue
        .receive(10, Duration::ZERO, Duration::ZERO)
        .await
        .unwrap();
    assert!(got.is_empty(), "a malformed body is never a job");
    let mut dead = 0;
    for _ in 0..20 {
        let _ = queue
            .receive(10, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap();
        dead = queue.depth().await.unwrap().dead;
        if dead > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dead, 1);
}

struct Ticks(std::sync::Mutex<Vec<(String, String, Timestamp)>>);

#[async_trait::async_trait]
impl TickHandler for Ticks {
    async fn tick(&self, org: &str, wf: &str, at: Timestamp) -> Result<(), String> {
        self.0.lock().unwrap().push((org.into(), wf.into(), at));
        Ok(())
    }
}

#[tokio::test]
async fn sqs_receive_hands_schedule_ticks_to_the_tick_handler() {
    let env = aws_env().await;
    let ticks = Arc::new(Ticks(Default::default()));
    let queue = (*env.adapters.queue)
        .clone()
        .with_tick_handler(ticks.clone());
    let body = r#"{"scheduleTick":{"organizationId":"o1","workflowId":"w1","scheduledAt":"2026-01-01T00:00:00Z"}}"#;
    queue
        .send_bodies(&[body.to_string()], Duration::ZERO)
        .await
        .unwrap();
    queue.send(&[job(7)], Duration::ZERO).await.unwrap();
    let got = receive_all(&queue, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, job(7));
    let seen = ticks.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            "o1".to_string(),
            "w1".to_string(),
            Timestamp::parse("2026-01-01T00:00:00Z").unwrap()
        )]
    );
    let d = queue.depth().await.unwrap();
    assert_eq!(
        d.ready + d.in_flight,
        1,
        "the tick was deleted, the job is in flight"
    );
    // receive_messages shows both kinds raw.
    queue
        .send_bodies(&[body.to_string()], Duration::ZERO)
        .await
        .unwrap();
    let raw = queue
        .receive_messages(10, Duration::from_secs(30), Duration::from_millis(200))
        .await
        .unwrap();
    assert!(matches!(
        raw[0].message,
        Ok(QueueMessage::ScheduleTick { .. })
    ));
}

// ---- EventBridge ---------------------------------------------------------------------------

/// The schedule parser is another module's: tests convert `rate` themselves.
fn test_expression(node: &Node) -> Result<String, String> {
    node.parameters
        .get("rate")
        .and_then(Value::as_str)
        .map(|r| format!("rate({r})"))
        .ok_or_else(|| "no rate".to_string())
}

async fn rule_expression(env: &AwsEnv, name: &str) -> Option<String> {
    let rules = env
        .events
        .list_rules()
        .name_prefix(name)
        .send()
        .await
        .unwrap();
    rules
        .rules()
        .iter()
        .find(|r| r.name() == Some(name))
        .map(|r| r.schedule_expression().unwrap_or_default().to_string())
}

#[tokio::test]
async fn schedule_rules_follow_the_workflow() {
    let env = aws_env().await;
    let schedules = (*env.adapters.schedules)
        .clone()
        .with_expression(test_expression);
    let org = org();
    let wf_id = new_id();
    let mut wf = workflow(
        &org,
        &wf_id,
        WorkflowStatus::Active,
        vec![node(
            "tick",
            "trigger.schedule",
            json!({"rate": "5 minutes"}),
        )],
    );
    let name = rule_name(&wf_id);
    assert_eq!(name, format!("weconnect-{wf_id}"));

    schedules.workflow_saved(&wf).await.unwrap();
    assert_eq!(
        rule_expression(&env, &name).await.as_deref(),
        Some("rate(5 minutes)")
    );
    let targets = env
        .events
        .list_targets_by_rule()
        .rule(&name)
        .send()
        .await
        .unwrap();
    let target = &targets.targets()[0];
    assert_eq!(target.id(), TARGET_ID);
    assert_eq!(target.arn(), env.queue_arn);
    let transformer = target.input_transformer().unwrap();
    assert_eq!(
        transformer
            .input_paths_map()
            .unwrap()
            .get("time")
            .map(String::as_str),
        Some("$.time")
    );
    // What EventBridge delivers for a tick is a message the worker understands.
    let delivered = transformer
        .input_template()
        .replace("<time>", "\"2026-02-03T04:05:00Z\"");
    assert_eq!(
        parse_message(&delivered).unwrap(),
        QueueMessage::ScheduleTick {
            organization_id: org.clone(),
            workflow_id: wf_id.clone(),
            scheduled_at: Timestamp::parse("2026-02-03T04:05:00Z").unwrap(),
        }
    );

    // Updated: the expression follows.
    wf.version = 2;
    wf.nodes[0]
        .parameters
        .insert("rate".into(), json!("1 hour"));
    schedules.workflow_saved(&wf).await.unwrap();
    assert_eq!(
        rule_expression(&env, &name).await.as_deref(),
        Some("rate(1 hour)")
    );
    assert_eq!(
        env.events
            .list_targets_by_rule()
            .rule(&name)
            .send()
            .await
            .unwrap()
            .targets()
            .len(),
        1
    );

    // Deactivated: gone. Saving a non-scheduled workflow is fine.
    wf.status = WorkflowStatus::Inactive;
    schedules.workflow_saved(&wf).await.unwrap();
    assert_eq!(rule_expression(&env, &name).await, None);
    schedules.workflow_saved(&wf).await.unwrap();

    // Active again, then deleted.
    wf.status = WorkflowStatus::Active;
    schedules.workflow_saved(&wf).await.unwrap();
    assert!(rule_expression(&env, &name).await.is_some());
    schedules.workflow_deleted(&org, &wf_id).await.unwrap();
    assert_eq!(rule_expression(&env, &name).await, None);
    schedules.workflow_deleted(&org, &wf_id).await.unwrap();
}

#[tokio::test]
async fn schedule_target_delivers_ticks_to_the_job_queue() {
    // Moto runs no scheduled rules; send an event through a pattern rule carrying the same
    // target (queue + input transformer) to see moto deliver the tick to the job queue.
    let env = aws_env().await;
    let schedules = (*env.adapters.schedules)
        .clone()
        .with_expression(test_expression);
    let org = org();
    let wf_id = new_id();
    let wf = workflow(
        &org,
        &wf_id,
        WorkflowStatus::Active,
        vec![node(
            "tick",
            "trigger.schedule",
            json!({"rate": "1 minute"}),
        )],
    );
    schedules.workflow_saved(&wf).await.unwrap();
    let name = rule_name(&wf_id);
    let target = env
        .events
        .list_targets_by_rule()
        .rule(&name)
        .send()
        .await
        .unwrap()
        .targets()[0]
        .clone();
    let source = format!("test.{}", env.name);
    let probe = format!("probe-{}", env.name);
    env.events
        .put_rule()
        .name(&probe)
        .event_pattern(json!({"source": [source]}).to_string())
        .send()
        .await
        .unwrap();
    env.events
        .put_targets()
        .rule(&probe)
        .targets(target)
        .send()
        .await
        .unwrap();
    env.events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source(&source)
                .detail_type("Scheduled Event")
                .detail("{}")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = env
        .adapters
        .queue
        .receive_messages(10, Duration::from_secs(30), Duration::from_millis(500))
        .await
        .unwrap();
    // moto also matches the schedule rule itself (a rule without a pattern) against the
    // event: one or two deliveries, each a valid tick of this workflow.
    assert!(!got.is_empty());
    for m in &got {
        match &m.message {
            Ok(QueueMessage::ScheduleTick {
                organization_id,
                workflow_id,
                scheduled_at,
            }) => {
                assert_eq!(organization_id, &org);
                assert_eq!(workflow_id, &wf_id);
                let skew = scheduled_at
                    .millis_since(now())
                    .max(now().millis_since(*scheduled_at));
                assert!(skew < 60_000, "{scheduled_at}");
            }
            other => panic!("{other:?} from {}", m.body),
        }
    }
}

#[tokio::test]
async fn execution_events_are_published_to_the_bus() {
    let env = aws_env().await;
    // Route the bus's weconnect events to a queue we can read.
    let sink = env
        .sqs
        .create_queue()
        .queue_name(format!("{}-events", env.name))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let sink_arn = env
        .sqs
        .get_queue_attributes()
        .queue_url(&sink)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()
        .get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .unwrap()
        .clone();
    let bus = env.config.event_bus_name.clone();
    env.events
        .put_rule()
        .name("all-status-changes")
        .event_bus_name(&bus)
        .event_pattern(
            json!({"source": ["weconnect"], "detail-type": ["WeConnect Execution Status Changed"]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    env.events
        .put_targets()
        .rule("all-status-changes")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("sink")
                .arn(sink_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let event = ExecutionEvent {
        execution_id: new_id(),
        organization_id: "o".into(),
        workflow_id: "w".into(),
        status: ExecutionStatus::Failed,
        duration: 42,
        error_message: Some("boom".into()),
        at: now(),
    };
    env.adapters.events.publish(&event).await.unwrap();
    let msgs = env
        .sqs
        .receive_message()
        .queue_url(&sink)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(msgs.messages()[0].body().unwrap()).unwrap();
    assert_eq!(body["source"], "weconnect");
    assert_eq!(body["detail-type"], "WeConnect Execution Status Changed");
    let detail: ExecutionEvent = serde_json::from_value(body["detail"].clone()).unwrap();
    assert_eq!(detail, event);
}

// ---- request counter -----------------------------------------------------------------------

#[tokio::test]
async fn request_counter_counts_calls_and_capacity() {
    let env = aws_env_with(EnvOptions {
        consumed_capacity: true,
        ..Default::default()
    })
    .await;
    let store = env.adapters.store.clone();
    let org = org();
    let e = new_execution(store.as_ref(), &org, "wf").await;
    env.adapters.counter.reset();
    // One node's protocol: arrive (+ claim inline), record, one log batch, one state read.
    let c = claim("t", now(), Duration::from_secs(30));
    let Arrival::Ready(mut run) = store
        .arrive(&org, &arrival(&e.id, "n", "start", true, 1), Some(&c))
        .await
        .unwrap()
    else {
        panic!()
    };
    run.status = NodeRunStatus::Success;
    run.output = Some(json!({"ok": 1}));
    assert!(store.save_node_run(&org, &run, "t").await.unwrap());
    store.get_execution_state(&org, &e.id).await.unwrap();
    let counts = env.adapters.counter.snapshot();
    let get = |op: &str| {
        counts
            .get(&("dynamodb".to_string(), op.to_string()))
            .copied()
            .unwrap_or_default()
    };
    assert_eq!(get("UpdateItem").requests, 1);
    assert_eq!(get("PutItem").requests, 1);
    assert_eq!(get("Query").requests, 1);
    assert_eq!(env.adapters.counter.requests("dynamodb"), 3);
    assert!(get("PutItem").capacity_units > 0.0, "{counts:?}");
    env.adapters
        .queue
        .send(&[job(1)], Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(env.adapters.counter.requests("sqs"), 1);
}

/// The real conversion (`nodes::schedule`, another engineer's module): enable once it is
/// implemented in the branch.
#[tokio::test]
async fn schedule_rules_use_the_schedule_parsers_expression() {
    let env = aws_env().await;
    let schedules = env.adapters.schedules.clone();
    let wf_id = new_id();
    let wf = workflow(
        &org(),
        &wf_id,
        WorkflowStatus::Active,
        vec![node(
            "tick",
            "trigger.schedule",
            json!({"cron": "*/5 * * * *"}),
        )],
    );
    schedules.workflow_saved(&wf).await.unwrap();
    let expression = rule_expression(&env, &rule_name(&wf_id)).await.unwrap();
    assert!(
        expression.starts_with("cron(") && expression.ends_with(')'),
        "{expression}"
    );
    let rate = workflow(
        &org(),
        &new_id(),
        WorkflowStatus::Active,
        vec![node(
            "tick",
            "trigger.schedule",
            json!({"rate": "5 minutes"}),
        )],
    );
    schedules.workflow_saved(&rate).await.unwrap();
    assert_eq!(
        rule_expression(&env, &rule_name(&rate.id)).await.as_deref(),
        Some("rate(5 minutes)")
    );
}
