//! Composition (SPEC §8) over HTTP on the real local server: the shipped examples, callbacks
//! by URL and by the authenticated routes, the `parentExecutionId` filter and the 4xx answers.

use serde_json::{Value, json};
use weconnect_tests::server::{Api, TestServer, example};
use weconnect_tests::sink::Sink;

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

fn node<'a>(detail: &'a Value, node_id: &str) -> &'a Value {
    detail["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["nodeId"] == node_id)
        .unwrap_or_else(|| panic!("no node {node_id} in {detail}"))
}

/// Starts the expense example through its webhook and waits until it asks and waits.
async fn expense_waiting(a: &Api, anon: &Api, sink: &Sink, amount: u32) -> (String, String) {
    let before = sink.count("approvals");
    let r = anon
        .send(
            anon.client
                .post(anon.url("/webhook/expense"))
                .json(&json!({"amount": amount, "who": "ada"})),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.body["executionId"].as_str().unwrap().to_string();
    let detail = a
        .wait_for(&id, |d| node_status(d, "approval") == "waiting")
        .await;
    assert_eq!(detail["status"], "running");
    let calls = sink.calls("approvals");
    assert_eq!(calls.len(), before + 1);
    let sent: Value = serde_json::from_slice(&calls[before].body).unwrap();
    let url = sent["answerUrl"].as_str().unwrap().to_string();
    let callback = &node(&detail, "approval")["callback"];
    assert_eq!(callback["url"], url.as_str(), "{detail}");
    assert!(callback["expiresAt"].is_string(), "{detail}");
    (id, url)
}

fn node_status(detail: &Value, node_id: &str) -> String {
    detail["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["nodeId"] == node_id))
        .and_then(|n| n["status"].as_str())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_example_is_answered_once_by_its_callback_url() {
    let t = TestServer::start().await;
    let sink = Sink::start().await;
    let a = t.api("acme");
    let anon = t.anonymous();
    let mut def = example("approval-callback.json");
    def["nodes"][1]["parameters"]["url"] = json!(sink.url("approvals"));
    a.create_workflow(&def).await;

    // Twenty answers at once: exactly one is accepted.
    let (id, url) = expense_waiting(&a, &anon, &sink, 120).await;
    assert!(url.starts_with(&t.url), "{url} is served by {}", t.url);
    let answers = (0..20).map(|i| {
        let client = anon.client.clone();
        let url = url.clone();
        async move {
            client
                .post(&url)
                .json(&json!({"approved": true, "by": format!("approver {i}")}))
                .send()
                .await
                .expect("answer sent")
                .status()
                .as_u16()
        }
    });
    let mut statuses = futures::future::join_all(answers).await;
    statuses.sort_unstable();
    assert_eq!(statuses[0], 202, "{statuses:?}");
    assert!(statuses[1..].iter().all(|s| *s == 409), "{statuses:?}");
    let done = a.wait_terminal(&id).await;
    assert_eq!(done["status"], "success", "{done}");
    let book = node(&done, "book");
    assert_eq!(book["status"], "success");
    assert_eq!(book["output"]["booked"], true);
    assert_eq!(book["output"]["amount"], 120);
    assert!(
        book["output"]["by"]
            .as_str()
            .unwrap()
            .starts_with("approver ")
    );
    assert_eq!(node(&done, "reject")["status"], "skipped");
    // Later answers, and the failing route, conflict.
    let late = anon.post_raw(url.strip_prefix(&t.url).unwrap(), "{}").await;
    late.error(409);
    let path = url.strip_prefix(&t.url).unwrap().to_string();
    anon.post(&format!("{path}/fail"), &json!({"message": "no"}))
        .await
        .error(409);

    // A rejection takes the false branch; the accepted answer is the 202's shape.
    let (id, url) = expense_waiting(&a, &anon, &sink, 99).await;
    let path = url.strip_prefix(&t.url).unwrap().to_string();
    let r = anon
        .post(&path, &json!({"approved": false, "reason": "too much"}))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body["executionId"], id.as_str());
    assert_eq!(r.body["nodeId"], "approval");
    assert!(r.body["status"].is_string(), "{r:?}");
    let done = a.wait_terminal(&id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(
        node(&done, "reject")["output"],
        json!({"booked": false, "reason": "too much"})
    );

    // Tampered or unknown tokens are 404; a non-JSON answer is 400 and changes nothing.
    let (id, url) = expense_waiting(&a, &anon, &sink, 5).await;
    let path = url.strip_prefix(&t.url).unwrap().to_string();
    let mut tampered = path.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    anon.post(&tampered, &json!({"approved": true}))
        .await
        .error(404);
    anon.post("/callbacks/not-a-token", &json!({}))
        .await
        .error(404);
    anon.post_raw(&path, "{not json").await.error(400);
    anon.post_raw(&format!("{path}/fail"), "[1]")
        .await
        .error(400);
    assert_eq!(
        node_status(&a.get(&format!("/executions/{id}")).await.body, "approval"),
        "waiting"
    );

    // The callback URL fails the node too: callbackFailed, and the execution fails.
    let r = anon
        .post(
            &format!("{path}/fail"),
            &json!({"message": "approver left"}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let done = a.wait_terminal(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = &node(&done, "approval")["error"];
    assert_eq!(error["kind"], "callbackFailed", "{done}");
    assert_eq!(error["message"], "approver left");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_routes_complete_and_fail_waiting_nodes_of_the_callers_organization() {
    let t = TestServer::start().await;
    let sink = Sink::start().await;
    let a = t.api("acme");
    let other = t.api("globex");
    let anon = t.anonymous();
    let mut def = example("approval-callback.json");
    def["nodes"][1]["parameters"]["url"] = json!(sink.url("approvals"));
    a.create_workflow(&def).await;

    let (id, _) = expense_waiting(&a, &anon, &sink, 10).await;
    let fail = format!("/executions/{id}/nodes/approval/fail");
    let complete = format!("/executions/{id}/nodes/approval/complete");
    // Another organization, no token, bad bodies, unknown nodes: nothing changes.
    other.post(&fail, &json!({"message": "x"})).await.error(404);
    other.post(&complete, &json!({})).await.error(404);
    anon.post(&complete, &json!({})).await.error(401);
    a.post_raw(&fail, "not json").await.error(400);
    a.post(&fail, &json!({"message": "x", "extra": 1}))
        .await
        .error(400);
    a.post(&fail, &json!({"message": "m".repeat(5000)}))
        .await
        .error(400);
    a.post(
        &format!("/executions/{id}/nodes/nowhere/complete"),
        &json!({}),
    )
    .await
    .error(404);
    assert_eq!(
        node_status(&a.get(&format!("/executions/{id}")).await.body, "approval"),
        "waiting"
    );

    let r = a
        .post(&fail, &json!({"message": "declined by policy"}))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body["nodeId"], "approval");
    a.post(&complete, &json!({"approved": true}))
        .await
        .error(409);
    let done = a.wait_terminal(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(node(&done, "approval")["error"]["kind"], "callbackFailed");
    assert_eq!(
        node(&done, "approval")["error"]["message"],
        "declined by policy"
    );
    // Terminal executions conflict.
    a.post(&complete, &json!({})).await.error(409);

    let (id, _) = expense_waiting(&a, &anon, &sink, 11).await;
    let r = a
        .post(
            &format!("/executions/{id}/nodes/approval/complete"),
            &json!({"approved": true, "by": "api"}),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let done = a.wait_terminal(&id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(node(&done, "book")["output"]["by"], "api");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_map_example_totals_its_lines_and_lists_its_children() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let wf = a.create_workflow(&example("order-lines-map.json")).await;
    let wf_id = id_of(&wf);
    let lines: Vec<Value> = (1..=12)
        .map(|i| json!({"sku": format!("SKU-{i}"), "quantity": i, "unitPrice": 2}))
        .collect();
    let exec = a.start(&wf_id, json!({"lines": lines})).await;
    let id = id_of(&exec);
    let done = a.wait_terminal(&id).await;
    assert_eq!(done["status"], "success", "{done}");
    // 2 × (1 + … + 12) = 156
    assert_eq!(
        node(&done, "sum")["output"],
        json!({"lines": 12, "total": 156})
    );
    let each = &node(&done, "each")["output"];
    assert_eq!(each["succeeded"], 12);
    assert_eq!(each["failed"], 0);
    assert_eq!(each["results"][3], json!({"sku": "SKU-4", "total": 8}));

    // The children, by either list, filtered by their parent and paged.
    for list in ["/executions", &format!("/executions/workflow/{wf_id}")] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("{list}?parentExecutionId={id}&limit=5");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let r = a.get(&path).await;
            assert_eq!(r.status, 200, "{r:?}");
            for child in r.body["items"].as_array().unwrap() {
                assert_eq!(child["parentExecutionId"], id.as_str());
                assert_eq!(child["parentNodeId"], "each");
                assert_eq!(child["mode"], "subworkflow");
                assert_eq!(child["depth"], 1);
                assert_eq!(child["status"], "success");
                seen.push(child["itemIndex"].as_u64().unwrap());
            }
            match r.body["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..12).collect::<Vec<u64>>(), "{list}");
    }
    // The parent is top-level; another organization sees no children.
    assert_eq!(done["parentExecutionId"], Value::Null);
    assert_eq!(done["depth"], 0);
    let r = t
        .api("globex")
        .get(&format!("/executions?parentExecutionId={id}"))
        .await;
    assert_eq!(r.body["items"], json!([]));
    // A child's detail and logs are ordinary.
    let child = &a
        .get(&format!("/executions?parentExecutionId={id}&limit=1"))
        .await
        .body["items"][0];
    let child_id = id_of(child);
    let detail = a.get(&format!("/executions/{child_id}")).await;
    assert_eq!(detail.status, 200);
    let index = detail.body["itemIndex"].as_u64().unwrap();
    assert_eq!(
        detail.body["inputData"],
        json!({"item": lines[index as usize], "index": index})
    );
    let logs = a.get(&format!("/executions/{child_id}/logs")).await;
    assert_eq!(logs.status, 200);
    assert!(!logs.body["items"].as_array().unwrap().is_empty());

    // Not an array: the map fails with kind expression.
    let exec = a.start(&wf_id, json!({"lines": "three"})).await;
    let done = a.wait_terminal(&id_of(&exec)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(node(&done, "each")["error"]["kind"], "expression");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_workflow_example_runs_once_for_each_failure() {
    let t = TestServer::start().await;
    let sink = Sink::start().await;
    sink.always("down", 500);
    let a = t.api("acme");
    let on_failure = a.create_workflow(&example("error-workflow.json")).await;
    let on_failure_id = id_of(&on_failure);
    let failing = a
        .create_workflow(&json!({
            "name": "Flaky call",
            "settings": {"errorWorkflowId": on_failure_id},
            "nodes": [
                {"id": "start", "name": "Start", "type": "trigger.manual"},
                {"id": "call", "name": "Call", "type": "http.request",
                 "parameters": {"url": sink.url("down")}, "retry": {"maxAttempts": 1}}
            ],
            "connections": [{"source": "start", "target": "call"}]
        }))
        .await;
    let failing_id = id_of(&failing);
    let mut failed = Vec::new();
    for _ in 0..2 {
        let exec = a.start(&failing_id, json!({})).await;
        let done = a.wait_terminal(&id_of(&exec)).await;
        assert_eq!(done["status"], "failed", "{done}");
        failed.push(id_of(&exec));
    }
    // One error execution per failure, with the failure as its input.
    let reports = loop {
        let r = a
            .get(&format!("/executions/workflow/{on_failure_id}?limit=100"))
            .await;
        let items = r.body["items"].as_array().unwrap().clone();
        let finished = items.iter().all(|e| e["status"] == "success");
        if items.len() >= 2 && finished {
            break items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(reports.len(), 2, "{reports:?}");
    let mut reported = Vec::new();
    for report in &reports {
        assert_eq!(report["mode"], "error");
        let detail = a.get(&format!("/executions/{}", id_of(report))).await.body;
        let out = &node(&detail, "report")["output"];
        assert!(
            out["alert"]
                .as_str()
                .unwrap()
                .starts_with("Flaky call failed: "),
            "{out}"
        );
        assert_eq!(detail["inputData"]["workflow"]["id"], failing_id.as_str());
        assert_eq!(detail["inputData"]["execution"]["status"], "failed");
        reported.push(out["executionId"].as_str().unwrap().to_string());
    }
    reported.sort();
    failed.sort();
    assert_eq!(reported, failed);
    // A cancelled execution starts none.
    let slow = a
        .create_workflow(&json!({
            "name": "Slow",
            "settings": {"errorWorkflowId": on_failure_id},
            "nodes": [
                {"id": "start", "name": "Start", "type": "trigger.manual"},
                {"id": "wait", "name": "Wait", "type": "flow.wait", "parameters": {"durationMs": 60000}}
            ],
            "connections": [{"source": "start", "target": "wait"}]
        }))
        .await;
    let exec = a.start(&id_of(&slow), json!({})).await;
    let r = a
        .post(&format!("/executions/{}/cancel", id_of(&exec)), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    a.wait_terminal(&id_of(&exec)).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = a
        .get(&format!("/executions/workflow/{on_failure_id}?limit=100"))
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composition_references_are_checked_when_a_workflow_is_saved() {
    let t = TestServer::start().await;
    let a = t.api("acme");
    let other = t.api("globex");
    let trigger = json!({"id": "start", "name": "Start", "type": "trigger.manual"});
    let with = |n: Value| {
        json!({"name": "Parent", "nodes": [trigger.clone(), n],
               "connections": [{"source": "start", "target": n["id"]}]})
    };

    // Inline children are validated with the parent, errors naming the node.
    let no_trigger = with(json!({"id": "each", "name": "Each", "type": "flow.map",
        "parameters": {"items": "{{ trigger.list }}", "workflow": {"nodes": [
            {"id": "s", "name": "S", "type": "data.set", "parameters": {"values": {}}}
        ], "connections": []}}}));
    let message = a.post("/workflows", &no_trigger).await.error(400);
    assert!(message.contains("node \"each\""), "{message}");
    let bad_concurrency = with(json!({"id": "each", "name": "Each", "type": "flow.map",
        "parameters": {"items": "{{ trigger.list }}", "concurrency": 101, "workflowId": "x"}}));
    let message = a.post("/workflows", &bad_concurrency).await.error(400);
    assert!(message.contains("node \"each\""), "{message}");

    // References: unknown, another organization's, archived, or without a manual trigger.
    let child = a
        .create_workflow(&json!({"name": "Child", "nodes": [trigger.clone()], "connections": []}))
        .await;
    let foreign = other
        .create_workflow(&json!({"name": "Theirs", "nodes": [trigger.clone()], "connections": []}))
        .await;
    let hook_only = a
        .create_workflow(&json!({"name": "Hook", "nodes": [
            {"id": "h", "name": "H", "type": "trigger.webhook"}], "connections": []}))
        .await;
    let old = json!({"name": "Old", "nodes": [trigger.clone()], "connections": []});
    let archived = a.create_workflow(&old).await;
    let mut old = old;
    old["status"] = json!("archived");
    let r = a
        .put(&format!("/workflows/{}", id_of(&archived)), &old)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let listed = a.get("/workflows?limit=100").await.body["items"]
        .as_array()
        .unwrap()
        .len();
    let call = |workflow_id: &str| {
        with(
            json!({"id": "call", "name": "Call", "type": "flow.subworkflow",
                    "parameters": {"workflowId": workflow_id}}),
        )
    };
    for refused in [
        "no-such-workflow".to_string(),
        id_of(&foreign),
        id_of(&hook_only),
        id_of(&archived),
    ] {
        let message = a.post("/workflows", &call(&refused)).await.error(400);
        assert!(message.contains("node \"call\""), "{refused}: {message}");
    }
    let versioned = with(
        json!({"id": "call", "name": "Call", "type": "flow.subworkflow",
        "parameters": {"workflowId": id_of(&child), "version": 7}}),
    );
    a.post("/workflows", &versioned).await.error(400);
    a.create_workflow(&call(&id_of(&child))).await;

    // errorWorkflowId must name a workflow of this organization with a trigger.error node.
    let mut def = json!({"name": "With handler", "nodes": [trigger.clone()], "connections": []});
    for refused in ["no-such-workflow".to_string(), id_of(&child)] {
        def["settings"] = json!({"errorWorkflowId": refused});
        a.post("/workflows", &def).await.error(400);
    }
    let handler = other.create_workflow(&example("error-workflow.json")).await;
    def["settings"] = json!({"errorWorkflowId": id_of(&handler)});
    a.post("/workflows", &def).await.error(400);
    let handler = a.create_workflow(&example("error-workflow.json")).await;
    def["settings"] = json!({"errorWorkflowId": id_of(&handler)});
    a.create_workflow(&def).await;

    // Out-of-range callback waits.
    for timeout in [999, 2_592_000_001_u64] {
        let wait = with(
            json!({"id": "w", "name": "W", "type": "flow.waitForCallback",
            "parameters": {"timeoutMs": timeout}}),
        );
        let message = a.post("/workflows", &wait).await.error(400);
        assert!(message.contains("node \"w\""), "{message}");
    }
    // Refused definitions changed nothing: three workflows were saved since.
    let r = a.get("/workflows?limit=100").await;
    assert_eq!(
        r.body["items"].as_array().unwrap().len(),
        listed + 3,
        "{r:?}"
    );
    t.stop().await;
}
