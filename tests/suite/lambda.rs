//! The four Lambda functions' handlers with real event shapes, on DynamoDB + SQS +
//! EventBridge served by moto: API Gateway HTTP API (payload 2.0) requests with and without
//! JWT authorizer claims, SQS batches as the event source mapping delivers them (each batch
//! twice in the end-to-end run), EventBridge scheduled events.
//! Run: `cargo test -p weconnect-tests --test suite lambda::`

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use axum::response::Response;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weconnect_cleanup::Cleanup;
use weconnect_engine::Engine;
use weconnect_engine::adapters::aws::eventbridge::{TARGET_ID, rule_name};
use weconnect_engine::engine::StartRequest;
use weconnect_engine::lambda::HttpFunction;
use weconnect_engine::model::{ExecutionMode, Timestamp, new_id};
use weconnect_engine::ports::{Clock, ManualClock, SystemClock};
use weconnect_tests::backend::{test_config, test_secrets};
use weconnect_tests::moto::{ACCOUNT, AwsEnv, REGION, aws_env};
use weconnect_tests::sink::Sink;
use weconnect_worker::Worker;

// ---- the functions on moto -------------------------------------------------------------------

/// The four handlers, built as their `main`s build them, on one fresh moto environment.
struct Functions {
    env: AwsEnv,
    engine: Engine,
    api: HttpFunction,
    webhook: HttpFunction,
    worker: Worker,
    sink: Sink,
    org: String,
}

fn engine_on(env: &AwsEnv, clock: Arc<dyn Clock>) -> Engine {
    // Loopback allowed: the workflows call the test's sink.
    Engine::new(env.ports(clock), test_config(), test_secrets())
}

async fn functions() -> Functions {
    functions_with(test_config()).await
}

async fn functions_with(config: weconnect_engine::EngineConfig) -> Functions {
    let env = aws_env().await;
    let engine = Engine::new(env.ports(Arc::new(SystemClock)), config, test_secrets());
    Functions {
        api: weconnect_api::handler(engine.clone(), "org"),
        webhook: weconnect_webhook::handler(engine.clone()),
        worker: Worker::new(engine.clone()),
        engine,
        env,
        sink: Sink::start().await,
        org: format!("org-{}", &new_id()[24..]),
    }
}

impl Functions {
    fn claims(&self) -> Value {
        jwt_claims("user-1", "org", &self.org)
    }

    /// An authenticated API call through the api handler: (status, JSON body).
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = api_gateway_request(
            method,
            path,
            body.map(|b| b.to_string()),
            Some(self.claims()),
            &[],
        );
        read(self.api.handle(req).await.unwrap()).await
    }

    /// A webhook call through the webhook handler (no authorizer on these routes).
    async fn hook(&self, webhook_id: &str, body: Value) -> (u16, Value) {
        let req = api_gateway_request(
            "POST",
            &format!("/webhook/{webhook_id}"),
            Some(body.to_string()),
            None,
            &[],
        );
        read(self.webhook.handle(req).await.unwrap()).await
    }

    /// A workflow the api handler refuses: asserts the 400 and returns its message.
    async fn refused(&self, definition: Value) -> String {
        let (status, body) = self.api("POST", "/workflows", Some(definition)).await;
        assert_eq!(status, 400, "{body}");
        body["message"].as_str().expect("a message").to_string()
    }

    /// Creates an active workflow through the api handler; returns its id.
    async fn create_workflow(&self, definition: Value) -> String {
        let (status, body) = self.api("POST", "/workflows", Some(definition)).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    async fn execution(&self, id: &str) -> Value {
        let (status, body) = self.api("GET", &format!("/executions/{id}"), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Receives what is visible on the job queue (up to 10), as the event source mapping does.
    async fn receive(&self) -> Vec<Message> {
        self.receive_with(Duration::from_secs(30)).await
    }

    /// [`Functions::receive`] with the messages invisible for `visibility` (whole seconds).
    async fn receive_with(&self, visibility: Duration) -> Vec<Message> {
        self.env
            .sqs
            .receive_message()
            .queue_url(&self.env.config.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility.as_secs() as i32)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    }

    /// Deletes the messages the event source mapping deletes after a batch: all but the
    /// reported failures.
    async fn delete_handled(&self, messages: &[Message], response: &SqsBatchResponse) {
        let failed = failed_ids(response);
        for m in messages {
            if !failed.contains(m.message_id().unwrap()) {
                self.env
                    .sqs
                    .delete_message()
                    .queue_url(&self.env.config.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Feeds the queue to the worker until `done` holds and the queue is empty: each batch
    /// is delivered twice (at-least-once delivery), then the handled messages are deleted.
    /// Returns the number of batches.
    async fn drain<F, Fut>(&self, done: F) -> usize
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        self.drain_with(60, done).await
    }

    /// As [`Functions::drain`], each invocation with `secs` seconds before its deadline.
    async fn drain_with<F, Fut>(&self, secs: u64, done: F) -> usize
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut batches = 0;
        loop {
            assert!(Instant::now() < give_up, "the queue did not drain in time");
            let messages = self.receive().await;
            if messages.is_empty() {
                if done().await {
                    return batches;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            batches += 1;
            let event = sqs_event(&messages, &self.env.queue_arn);
            let first = self
                .worker
                .handle(invocation(event.clone(), secs))
                .await
                .unwrap();
            let second = self.worker.handle(invocation(event, secs)).await.unwrap();
            assert_batch_response_shape(&first);
            self.delete_handled(&messages, &second).await;
        }
    }

    async fn executions_of(&self, workflow_id: &str) -> Vec<Value> {
        let (status, body) = self
            .api(
                "GET",
                &format!("/executions?workflowId={workflow_id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    async fn is_terminal(&self, execution_id: &str) -> bool {
        self.engine
            .store()
            .get_execution(&self.org, execution_id)
            .await
            .unwrap()
            .is_some_and(|e| e.status.is_terminal())
    }
}

// ---- event shapes ------------------------------------------------------------------------------

/// The claims API Gateway's JWT authorizer puts in the request context: every value a string.
fn jwt_claims(sub: &str, org_claim: &str, org: &str) -> Value {
    json!({
        "sub": sub,
        org_claim: org,
        "iss": "https://issuer.example.com/",
        "aud": "weconnect",
        "exp": "1893456000",
        "iat": "1763766000",
        "scope": "openid profile",
    })
}

/// An API Gateway HTTP API (payload format 2.0) event, read by lambda_http exactly as the
/// runtime reads it.
fn api_gateway_request(
    method: &str,
    path_and_query: &str,
    body: Option<String>,
    claims: Option<Value>,
    headers: &[(&str, &str)],
) -> lambda_http::Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut header_map = json!({
        "accept": "application/json",
        "content-type": "application/json",
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "user-agent": "weconnect-tests",
        "x-forwarded-proto": "https",
    });
    if claims.is_some() {
        header_map["authorization"] = json!("Bearer eyJhbGciOiJSUzI1NiJ9.e30.signature");
    }
    for (k, v) in headers {
        header_map[k.to_ascii_lowercase()] = json!(v);
    }
    let route_key = if path.starts_with("/webhook/") {
        "ANY /webhook/{webhookId}"
    } else {
        "ANY /{proxy+}"
    };
    let mut context = json!({
        "accountId": ACCOUNT,
        "apiId": "abc123",
        "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abc123",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "192.0.2.10",
            "userAgent": "weconnect-tests"
        },
        "requestId": format!("req-{}", &new_id()[24..]),
        "routeKey": route_key,
        "stage": "$default",
        "time": "21/Nov/2026:23:00:00 +0000",
        "timeEpoch": 1_763_766_000_000u64
    });
    if let Some(claims) = claims {
        context["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
    }
    let event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": false
    });
    let req = lambda_http::request::from_str(&event.to_string()).unwrap();
    assert!(matches!(
        req.request_context_ref(),
        Some(RequestContext::ApiGatewayV2(_))
    ));
    req
}

async fn read(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), 8 << 20)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    (status, body)
}

/// One record of an SQS event, from a message received from the queue.
fn sqs_record(m: &Message, queue_arn: &str) -> Value {
    let attributes: serde_json::Map<String, Value> = m
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": m.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION
    })
}

fn sqs_event(messages: &[Message], queue_arn: &str) -> SqsEvent {
    let records: Vec<Value> = messages.iter().map(|m| sqs_record(m, queue_arn)).collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// The invocation of `payload` with `secs` seconds left before the function's deadline.
fn invocation<T>(payload: T, secs: u64) -> LambdaEvent<T> {
    let mut context = Context::default();
    context.request_id = format!("inv-{}", &new_id()[24..]);
    context.deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + secs * 1000;
    LambdaEvent::new(payload, context)
}

fn failed_ids(response: &SqsBatchResponse) -> BTreeSet<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// The response is what the event source mapping reads: `{"batchItemFailures": [{"itemIdentifier"}]}`.
fn assert_batch_response_shape(response: &SqsBatchResponse) {
    let json = serde_json::to_value(response).unwrap();
    let items = json["batchItemFailures"].as_array().unwrap();
    assert!(
        items.iter().all(|i| i["itemIdentifier"].is_string()),
        "{json}"
    );
}

/// The event of the cleanup's `rate(5 minutes)` schedule.
fn scheduled_event() -> EventBridgeEvent<Value> {
    serde_json::from_value(json!({
        "version": "0",
        "id": new_id(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2026-11-21T23:05:00Z",
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/weconnect-CleanupFunctionSweep")],
        "detail": {}
    }))
    .unwrap()
}

async fn send_bodies(env: &AwsEnv, bodies: &[&str]) {
    for body in bodies {
        env.sqs
            .send_message()
            .queue_url(&env.config.queue_url)
            .message_body(*body)
            .send()
            .await
            .unwrap();
    }
}

fn node(id: &str, node_type: &str, parameters: Value) -> Value {
    json!({"id": id, "name": format!("Node {id}"), "type": node_type, "parameters": parameters})
}

// ---- api and webhook: API Gateway events -------------------------------------------------------

#[tokio::test]
async fn api_reads_the_principal_from_jwt_authorizer_claims() {
    let f = functions().await;
    let definition = json!({
        "name": "Claims",
        "status": "active",
        "nodes": [node("start", "trigger.manual", json!({})), node("set", "data.set", json!({"values": {"a": 1}}))],
        "connections": [{"source": "start", "target": "set"}]
    });
    let id = f.create_workflow(definition.clone()).await;
    let (status, body) = f.api("GET", &format!("/workflows/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["organizationId"], f.org);
    assert_eq!(body["userId"], "user-1");
    let (status, body) = f.api("GET", "/workflows?limit=10", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);

    // No authorizer claims: 401 in the spec's error shape, nothing created.
    for (method, path) in [
        ("GET", "/workflows"),
        ("POST", "/workflows"),
        ("GET", &*format!("/workflows/{id}")),
    ] {
        let req = api_gateway_request(method, path, Some(definition.to_string()), None, &[]);
        let (status, body) = read(f.api.handle(req).await.unwrap()).await;
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(body["statusCode"], 401);
        assert_eq!(body["error"], "Unauthorized");
    }
    // A bearer token in the header is not a principal: only the authorizer's claims are.
    let req = api_gateway_request(
        "GET",
        "/workflows",
        None,
        None,
        &[(
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4Iiwib3JnIjoieSJ9.x",
        )],
    );
    assert_eq!(read(f.api.handle(req).await.unwrap()).await.0, 401);
    // Claims without the organization claim: 401.
    let mut no_org = f.claims();
    no_org.as_object_mut().unwrap().remove("org");
    let req = api_gateway_request("GET", "/workflows", None, Some(no_org), &[]);
    assert_eq!(read(f.api.handle(req).await.unwrap()).await.0, 401);
    // Another organization sees nothing of this one.
    let other = jwt_claims("user-2", "org", "another-org");
    let req = api_gateway_request(
        "GET",
        &format!("/workflows/{id}"),
        None,
        Some(other.clone()),
        &[],
    );
    let (status, body) = read(f.api.handle(req).await.unwrap()).await;
    assert_eq!(status, 404, "{body}");
    let req = api_gateway_request("GET", "/workflows", None, Some(other), &[]);
    let (_, body) = read(f.api.handle(req).await.unwrap()).await;
    assert!(body["items"].as_array().unwrap().is_empty());

    // ORG_CLAIM names the claim (e.g. Cognito's `custom:org`).
    let cognito = weconnect_api::handler(f.engine.clone(), "custom:org");
    let req = api_gateway_request(
        "GET",
        &format!("/workflows/{id}"),
        None,
        Some(jwt_claims("user-1", "custom:org", &f.org)),
        &[],
    );
    let (status, body) = read(cognito.handle(req).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let req = api_gateway_request(
        "GET",
        &format!("/workflows/{id}"),
        None,
        Some(f.claims()),
        &[],
    );
    assert_eq!(read(cognito.handle(req).await.unwrap()).await.0, 401);

    // /health needs no claims; each function serves only its own routes.
    let req = api_gateway_request("GET", "/health", None, None, &[]);
    assert_eq!(read(f.api.handle(req).await.unwrap()).await.0, 200);
    // The console and the OpenAPI document: routed outside the authorizer (no claims).
    let req = api_gateway_request("GET", "/console", None, None, &[]);
    let (status, page) = read(f.api.handle(req).await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("/console/app.js"), "{page}");
    let req = api_gateway_request("GET", "/openapi.json", None, None, &[]);
    let (status, doc) = read(f.api.handle(req).await.unwrap()).await;
    assert_eq!((status, doc["openapi"].clone()), (200, json!("3.1.0")));
    let req = api_gateway_request(
        "POST",
        "/webhook/anything",
        Some("{}".into()),
        Some(f.claims()),
        &[],
    );
    let (status, body) = read(f.api.handle(req).await.unwrap()).await;
    assert_eq!((status, body["statusCode"].clone()), (404, json!(404)));
    let req = api_gateway_request("GET", "/workflows", None, Some(f.claims()), &[]);
    assert_eq!(read(f.webhook.handle(req).await.unwrap()).await.0, 404);
}

#[tokio::test]
async fn webhook_last_node_waits_by_polling_the_store() {
    let f = functions().await;
    let path = format!("hello-{}", &new_id()[28..]);
    f.create_workflow(json!({
        "name": "Hello",
        "status": "active",
        "nodes": [
            node("hook", "trigger.webhook", json!({"path": path, "responseMode": "lastNode"})),
            node("greet", "data.set", json!({"values": {"greeting": "Hello, {{ trigger.body.name }}!"}}))
        ],
        "connections": [{"source": "hook", "target": "greet"}]
    }))
    .await;
    // The webhook function waits while the worker function runs the nodes.
    let webhook = f.webhook.clone();
    let call = tokio::spawn({
        let req = api_gateway_request(
            "POST",
            &format!("/webhook/{path}"),
            Some(json!({"name": "Ada"}).to_string()),
            None,
            &[],
        );
        async move { read(webhook.handle(req).await.unwrap()).await }
    });
    f.drain(|| async { call.is_finished() }).await;
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"greeting": "Hello, Ada!"}));

    // Unknown webhook: 404 from the webhook function.
    let (status, body) = f.hook("no-such-hook", json!({})).await;
    assert_eq!(status, 404, "{body}");
}

/// A callback through the webhook function, as on AWS: without `WECONNECT_PUBLIC_URL` the
/// API shows the callback URL on the host it was called on; the token route needs no JWT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_arrive_through_the_webhook_function() {
    let f = functions_with(weconnect_engine::EngineConfig {
        public_url: String::new(),
        ..test_config()
    })
    .await;
    let workflow_id = f
        .create_workflow(json!({
            "name": "Approval",
            "nodes": [
                node("start", "trigger.manual", json!({})),
                node("approve", "flow.waitForCallback", json!({"timeoutMs": 60000})),
                node("after", "data.set", json!({"values": {"by": "{{ json.body.by }}"}}))
            ],
            "connections": [{"source": "start", "target": "approve"}, {"source": "approve", "target": "after"}]
        }))
        .await;
    let (status, body) = f
        .api(
            "POST",
            "/executions",
            Some(json!({"workflowId": workflow_id})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let waiting = || async {
        let detail = f.execution(&id).await;
        detail["nodes"][1]["status"] == "waiting"
    };
    f.drain(waiting).await;
    let detail = f.execution(&id).await;
    let url = detail["nodes"][1]["callback"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let path = url
        .strip_prefix("https://abc123.execute-api.us-east-1.amazonaws.com")
        .unwrap_or_else(|| panic!("{url} is on the API's host"))
        .to_string();
    assert!(path.starts_with("/callbacks/"), "{path}");

    let post = |path: String, body: Value| {
        let req = api_gateway_request("POST", &path, Some(body.to_string()), None, &[]);
        let webhook = f.webhook.clone();
        async move { read(webhook.handle(req).await.unwrap()).await }
    };
    let (status, body) = post(format!("{path}x"), json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(path.clone(), json!({"by": "ada"})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["executionId"], id.as_str());
    let (status, body) = post(format!("{path}/fail"), json!({"message": "late"})).await;
    assert_eq!(status, 409, "{body}");
    f.drain(|| f.is_terminal(&id)).await;
    let detail = f.execution(&id).await;
    assert_eq!(detail["status"], "success", "{detail}");
    assert_eq!(detail["nodes"][2]["output"], json!({"by": "ada"}));
    // The api function does not serve the token routes (they are the webhook function's).
    let req = api_gateway_request("POST", &path, Some("{}".into()), Some(f.claims()), &[]);
    let (status, _) = read(f.api.handle(req).await.unwrap()).await;
    assert_eq!(status, 404);
}

// ---- worker: SQS batches ---------------------------------------------------------------------

/// Starts an execution of a one-HTTP-node workflow directly on the engine; returns its id.
async fn start_http_workflow(f: &Functions, sink_path: &str) -> String {
    let id = f
        .create_workflow(json!({
            "name": "One call",
            "status": "active",
            "nodes": [
                node("start", "trigger.manual", json!({})),
                node("call", "http.request", json!({"method": "POST", "url": f.sink.url(sink_path), "body": {"n": 1}}))
            ],
            "connections": [{"source": "start", "target": "call"}]
        }))
        .await;
    let (status, body) = f
        .api("POST", "/executions", Some(json!({"workflowId": id})))
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn worker_batches_good_duplicated_and_malformed_messages() {
    let f = functions().await;
    let execution_id = start_http_workflow(&f, "one").await;
    // The start job is on the queue; put a duplicate of it and two malformed bodies beside it.
    let mut queued = Vec::new();
    while queued.is_empty() {
        queued = f.receive().await;
    }
    assert_eq!(queued.len(), 1);
    let job_body = queued[0].body().unwrap().to_string();
    f.env
        .sqs
        .change_message_visibility()
        .queue_url(&f.env.config.queue_url)
        .receipt_handle(queued[0].receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    send_bodies(
        &f.env,
        &[&job_body, "not json at all", r#"{"executionId": 42}"#],
    )
    .await;
    let mut messages: Vec<Message> = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(20);
    while messages.len() < 4 && Instant::now() < give_up {
        messages.extend(f.receive().await);
    }
    assert_eq!(messages.len(), 4, "the batch");
    let jobs: BTreeSet<String> = messages
        .iter()
        .filter(|m| m.body() == Some(job_body.as_str()))
        .map(|m| m.message_id().unwrap().to_string())
        .collect();
    let malformed: BTreeSet<String> = messages
        .iter()
        .filter(|m| m.body() != Some(job_body.as_str()))
        .map(|m| m.message_id().unwrap().to_string())
        .collect();
    assert_eq!((jobs.len(), malformed.len()), (2, 2));

    // One invocation: the malformed messages are reported, the batch does not fail, the
    // node runs once however many copies of its job the batch holds.
    let event = sqs_event(&messages, &f.env.queue_arn);
    let first = f
        .worker
        .handle(invocation(event.clone(), 60))
        .await
        .unwrap();
    assert_batch_response_shape(&first);
    let failed = failed_ids(&first);
    assert!(malformed.is_subset(&failed), "{first:?}");
    assert!(
        jobs.iter().any(|j| !failed.contains(j)),
        "at least one copy of the job is handled: {first:?}"
    );
    assert_eq!(f.sink.count("one"), 1);
    assert!(f.is_terminal(&execution_id).await);

    // The same batch again (at-least-once): only the malformed ones come back.
    let second = f.worker.handle(invocation(event, 60)).await.unwrap();
    assert_eq!(failed_ids(&second), malformed, "{second:?}");
    assert_eq!(f.sink.count("one"), 1);
    assert_eq!(f.execution(&execution_id).await["status"], "success");

    // Malformed messages were made visible again at once: the redrive policy moves them to
    // the DLQ after maxReceiveCount (5) deliveries.
    f.delete_handled(&messages, &second).await;
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let dead = f
            .env
            .sqs
            .get_queue_attributes()
            .queue_url(f.env.config.dlq_url.as_deref().unwrap())
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
            .unwrap_or_default();
        if dead == "2" {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "malformed messages did not reach the DLQ"
        );
        let again = f.receive().await;
        if again.is_empty() {
            continue;
        }
        // Besides the malformed ones, a repair job of the duplicate may come (the node is
        // finished: it is acknowledged and calls nothing).
        let response = f
            .worker
            .handle(invocation(sqs_event(&again, &f.env.queue_arn), 60))
            .await
            .unwrap();
        let expected: BTreeSet<String> = again
            .iter()
            .map(|m| m.message_id().unwrap().to_string())
            .filter(|id| malformed.contains(id))
            .collect();
        assert_eq!(failed_ids(&response), expected);
        f.delete_handled(&again, &response).await;
    }
    assert_eq!(f.sink.count("one"), 1);
}

#[tokio::test]
async fn worker_stops_inline_chaining_before_the_deadline() {
    let f = functions().await;
    let wf = f
        .create_workflow(json!({
            "name": "Chain",
            "status": "active",
            "nodes": [
                node("start", "trigger.manual", json!({})),
                node("a", "data.set", json!({"values": {"step": 1}})),
                node("b", "data.set", json!({"values": {"step": 2}})),
                node("c", "data.set", json!({"values": {"step": 3}}))
            ],
            "connections": [
                {"source": "start", "target": "a"},
                {"source": "a", "target": "b"},
                {"source": "b", "target": "c"}
            ]
        }))
        .await;
    let start = |_: ()| {
        let f = &f;
        let wf = wf.clone();
        async move {
            let (status, body) = f
                .api("POST", "/executions", Some(json!({"workflowId": wf})))
                .await;
            assert_eq!(status, 201, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    };

    // Plenty of time left: one message runs the whole chain inline.
    let plenty = start(()).await;
    let messages = f.receive().await;
    assert_eq!(messages.len(), 1);
    let response = f
        .worker
        .handle(invocation(sqs_event(&messages, &f.env.queue_arn), 120))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    f.delete_handled(&messages, &response).await;
    assert_eq!(f.execution(&plenty).await["status"], "success");
    assert!(f.receive().await.is_empty(), "nothing was queued");

    // Less time left than the margin (node timeout + 5 s): every next node goes to the
    // queue, and the execution still finishes through it.
    let short = start(()).await;
    let messages = f.receive().await;
    assert_eq!(messages.len(), 1);
    let response = f
        .worker
        .handle(invocation(sqs_event(&messages, &f.env.queue_arn), 10))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    f.delete_handled(&messages, &response).await;
    assert_ne!(f.execution(&short).await["status"], "success");
    let batches = f.drain_with(10, || f.is_terminal(&short)).await;
    assert!(
        batches >= 3,
        "a, b and c each came through the queue ({batches} batches)"
    );
    assert_eq!(f.execution(&short).await["status"], "success");
}

// ---- end to end: api → webhook → worker (each batch twice) → api; cleanup ------------------------

#[tokio::test]
async fn end_to_end_all_four_handlers_on_moto() {
    let f = functions().await;
    let path = format!("order-{}", &new_id()[28..]);
    let workflow_id = f
        .create_workflow(json!({
            "name": "Order flow",
            "status": "active",
            "nodes": [
                node("hook", "trigger.webhook", json!({"path": path, "method": "POST"})),
                node("a", "http.request", json!({"method": "POST", "url": f.sink.url("a"), "body": {"order": "{{ trigger.body.orderId }}"}})),
                node("b", "http.request", json!({"method": "POST", "url": f.sink.url("b"), "body": {"after": "{{ nodes.a.output.statusCode }}"}})),
                node("c", "data.set", json!({"values": {"amount": "{{ trigger.body.amount }}"}})),
                node("m", "flow.merge", json!({})),
                node("d", "http.request", json!({"method": "POST", "url": f.sink.url("d"), "body": {"b": "{{ nodes.b.output.statusCode }}", "c": "{{ nodes.c.output.amount }}"}}))
            ],
            "connections": [
                {"source": "hook", "target": "a"},
                {"source": "a", "target": "b"},
                {"source": "a", "target": "c"},
                {"source": "b", "target": "m"},
                {"source": "c", "target": "m"},
                {"source": "m", "target": "d"}
            ]
        }))
        .await;

    // The webhook function starts it: 202 at once.
    let (status, body) = f.hook(&path, json!({"orderId": "o-7", "amount": 42})).await;
    assert_eq!(status, 202, "{body}");
    let execution_id = body["executionId"].as_str().unwrap().to_string();

    // The worker function runs it from the queue, every batch delivered twice.
    let batches = f.drain(|| f.is_terminal(&execution_id)).await;
    assert!(batches >= 1);

    // The api function reads the result.
    let execution = f.execution(&execution_id).await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(execution["mode"], "webhook");
    assert_eq!(execution["workflowId"], workflow_id);
    let nodes = execution["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 6);
    assert!(
        nodes.iter().all(|n| n["status"] == "success"),
        "{execution}"
    );
    assert!(nodes.iter().all(|n| n["attempts"] == 1), "{execution}");
    assert_eq!(execution["progress"]["percent"].as_f64(), Some(100.0));
    let (status, logs) = f
        .api(
            "GET",
            &format!("/executions/{execution_id}/logs?limit=1000"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{logs}");
    let logs = logs["items"].as_array().unwrap();
    assert!(!logs.is_empty());
    assert!(logs.iter().all(|l| l["executionId"] == execution_id));
    // Exactly one call per HTTP node, whatever the duplicates.
    assert_eq!(
        (f.sink.count("a"), f.sink.count("b"), f.sink.count("d")),
        (1, 1, 1)
    );
    let d: Value = serde_json::from_slice(&f.sink.calls("d")[0].body).unwrap();
    assert_eq!(d, json!({"b": 200, "c": 42}));
    let a: Value = serde_json::from_slice(&f.sink.calls("a")[0].body).unwrap();
    assert_eq!(a, json!({"order": "o-7"}));

    // Its live events through the api function (SPEC §11): long polling (JSON) answers at
    // once for an ended execution, every node and log, the terminal event last, done.
    let (status, events) = f
        .api("GET", &format!("/executions/{execution_id}/events"), None)
        .await;
    assert_eq!(status, 200, "{events}");
    assert_eq!(events["done"], true, "{events}");
    let list = events["events"].as_array().unwrap();
    let kinds = |kind: &str| list.iter().filter(|e| e["event"] == kind).count();
    assert_eq!((kinds("node"), kinds("log")), (6, logs.len()), "{events}");
    let last = list.last().unwrap();
    assert_eq!(
        (&last["event"], &last["data"]["status"]),
        (&json!("execution"), &json!("success"))
    );
    assert_eq!(events["nextCursor"], last["id"]);
    // API Gateway cannot stream: an EventSource gets the events in one response and comes
    // back after `retry` with Last-Event-ID; after the terminal event nothing more follows.
    let sse = |last_id: Option<&str>| {
        let mut headers = vec![("accept", "text/event-stream")];
        if let Some(id) = last_id {
            headers.push(("last-event-id", id));
        }
        api_gateway_request(
            "GET",
            &format!("/executions/{execution_id}/events"),
            None,
            Some(f.claims()),
            &headers,
        )
    };
    let res = f.api.handle(sse(None)).await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let (status, text) = read(res).await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_string();
    assert!(text.starts_with("retry: 1000\n\n"), "{text}");
    assert_eq!(text.matches("event: node\n").count(), 6, "{text}");
    assert!(
        text.ends_with(&format!(
            "id: {}\nevent: execution\ndata: {}\n\n",
            last["id"].as_str().unwrap(),
            last["data"]
        )),
        "{text}"
    );
    let (_, again) = read(f.api.handle(sse(last["id"].as_str())).await.unwrap()).await;
    assert_eq!(again, json!("retry: 1000\n\n"));

    // The cleanup function times out an execution past its deadline. Started through the
    // api with the shortest timeout; the cleanup's clock is ten minutes ahead.
    let (status, body) = f
        .api(
            "POST",
            "/executions",
            Some(json!({"workflowId": workflow_id, "timeout": 1000, "inputData": {"orderId": "late"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let late = body["id"].as_str().unwrap().to_string();
    let ahead =
        ManualClock::new(Timestamp::from(chrono::Utc::now()).plus(Duration::from_secs(600)));
    let cleanup = Cleanup::new(engine_on(&f.env, Arc::new(ahead)));
    let report = cleanup
        .handle(invocation(scheduled_event(), 120))
        .await
        .unwrap();
    assert_eq!(report.timed_out, 1, "{report:?}");
    let execution = f.execution(&late).await;
    assert_eq!(execution["status"], "timeout", "{execution}");
    // Its queued job is dropped by the worker: no node of it runs, no call is made.
    f.drain(|| async { true }).await;
    assert_eq!(f.execution(&late).await["status"], "timeout");
    assert_eq!(
        (f.sink.count("a"), f.sink.count("b"), f.sink.count("d")),
        (1, 1, 1)
    );
    // A second run changes nothing.
    let report = cleanup
        .handle(invocation(scheduled_event(), 120))
        .await
        .unwrap();
    assert_eq!(
        (report.timed_out, report.stale_cancelled),
        (0, 0),
        "{report:?}"
    );
}

// ---- schedules: the rule, its tick through the worker, and its removal ---------------------------

async fn rule_exists(env: &AwsEnv, name: &str) -> bool {
    match env.events.describe_rule().name(name).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => panic!("DescribeRule: {e:?}"),
    }
}

#[tokio::test]
async fn scheduled_workflow_gets_its_rule_ticks_through_the_worker_and_loses_it_on_delete() {
    let f = functions().await;
    // A schedule EventBridge rules cannot follow (a time zone with daylight saving) is a 400
    // naming the node when the workflow is saved, and nothing is stored.
    let message = f
        .refused(json!({
            "name": "Paris mornings",
            "status": "active",
            "nodes": [
                node("tick", "trigger.schedule", json!({"cron": "0 9 * * *", "timezone": "Europe/Paris"})),
                node("beat", "data.set", json!({"values": {"ok": true}}))
            ],
            "connections": [{"source": "tick", "target": "beat"}]
        }))
        .await;
    assert!(
        message.contains("node \"tick\"") && message.contains("Europe/Paris"),
        "{message}"
    );
    let (_, listed) = f.api("GET", "/workflows", None).await;
    assert_eq!(listed["items"], json!([]), "nothing was stored");
    let id = f
        .create_workflow(json!({
            "name": "Heartbeat",
            "status": "active",
            "nodes": [
                node("tick", "trigger.schedule", json!({"rate": "5 minutes"})),
                node("beat", "data.set", json!({"values": {"at": "{{ trigger.scheduledAt }}"}}))
            ],
            "connections": [{"source": "tick", "target": "beat"}]
        }))
        .await;
    let name = rule_name(&id);
    let rule = f
        .env
        .events
        .describe_rule()
        .name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(rule.schedule_expression(), Some("rate(5 minutes)"));
    let targets = f
        .env
        .events
        .list_targets_by_rule()
        .rule(&name)
        .send()
        .await
        .unwrap();
    let target = &targets.targets()[0];
    assert_eq!(target.id(), TARGET_ID);
    assert_eq!(target.arn(), f.env.queue_arn);

    // The rule's input transformer turns the scheduled event into the queue message; the
    // worker starts the execution once, however often the tick is delivered.
    let template = target
        .input_transformer()
        .unwrap()
        .input_template()
        .to_string();
    let tick = template.replace("<time>", "\"2026-11-21T23:05:00Z\"");
    send_bodies(&f.env, &[&tick, &tick]).await;
    f.drain(|| async { true }).await;
    let executions = f.executions_of(&id).await;
    assert_eq!(executions.len(), 1, "one execution per tick");
    assert_eq!(executions[0]["mode"], "scheduled");
    let execution = f.execution(executions[0]["id"].as_str().unwrap()).await;
    assert_eq!(execution["status"], "success", "{execution}");
    assert_eq!(
        execution["inputData"]["scheduledAt"],
        "2026-11-21T23:05:00.000Z"
    );

    // Deleting the workflow removes the rule; a tick still on its way is dropped.
    let (status, body) = f.api("DELETE", &format!("/workflows/{id}"), None).await;
    assert!(status == 204 || status == 200, "{status} {body}");
    assert!(!rule_exists(&f.env, &name).await);
    send_bodies(
        &f.env,
        &[&template.replace("<time>", "\"2026-11-21T23:10:00Z\"")],
    )
    .await;
    f.drain(|| async { true }).await;
    assert_eq!(f.executions_of(&id).await.len(), 1);
}

#[tokio::test]
async fn cleanup_logs_and_returns_an_empty_report_when_nothing_is_due() {
    let f = functions().await;
    let execution = f
        .engine
        .start_execution(StartRequest {
            principal: weconnect_engine::engine::Principal {
                user_id: "user-1".into(),
                organization_id: f.org.clone(),
            },
            workflow_id: start_http_workflow_id(&f).await,
            mode: ExecutionMode::Api,
            input: json!({}),
            timeout_ms: Some(60_000),
            idempotency_key: None,
            start_node_id: None,
            priority: None,
        })
        .await
        .unwrap()
        .0;
    let cleanup = Cleanup::new(f.engine.clone());
    let report = cleanup
        .handle(invocation(scheduled_event(), 120))
        .await
        .unwrap();
    assert_eq!(report.examined, 1, "{report:?}");
    assert_eq!(
        (
            report.timed_out,
            report.stale_cancelled,
            report.redispatched,
            report.failed_to_queue
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(f.execution(&execution.id).await["status"], "pending");
}

async fn start_http_workflow_id(f: &Functions) -> String {
    f.create_workflow(json!({
        "name": "Pending",
        "status": "active",
        "nodes": [node("start", "trigger.manual", json!({})), node("noop", "flow.noop", json!({}))],
        "connections": [{"source": "start", "target": "noop"}]
    }))
    .await
}

// ---- a killed invocation (issue 12 §3) ----------------------------------------------------

/// A worker invocation killed in the middle of a node loses nothing (SPEC §5.4), with the
/// template's timings scaled down 1:30 (the queue's visibility 150 s → 5 s, the longest node
/// timeout 60 s → 2 s, the lease margin 15 s → 0.5 s, the default deadline 300 s → 10 s):
/// the killed invocation's message comes back once the node's lease expired, the node runs
/// again and the execution succeeds before its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_invocation_is_recovered_when_its_lease_expires() {
    const SCALE: u64 = 30;
    let timings = crate::template::TemplateTimings::read();
    let defaults = weconnect_engine::EngineConfig::default();
    let mut config = test_config();
    config.max_node_timeout_ms = Some(timings.max_node_timeout_ms / SCALE);
    config.lease_margin_ms = defaults.lease_margin_ms / SCALE;
    config.node_timeout_ms = defaults.node_timeout_ms / SCALE;
    config.default_timeout_ms = defaults.default_timeout_ms / SCALE;
    let visibility = Duration::from_millis(timings.visibility_ms / SCALE);
    let f = functions_with(config).await;
    // A node (or a node of an inline child workflow) asking for more than the cap is refused.
    let too_long = |nodes: Value| {
        let second = nodes[1]["id"].clone();
        json!({"name": "Too long", "nodes": nodes,
               "connections": [{"source": "start", "target": second}]})
    };
    let message = f
        .refused(too_long(json!([
            node("start", "trigger.manual", json!({})),
            {"id": "wait", "name": "Wait", "type": "http.request", "timeoutMs": 2001,
             "parameters": {"method": "GET", "url": f.sink.url("x")}}
        ])))
        .await;
    assert!(
        message.contains("node \"wait\"") && message.contains("2000"),
        "{message}"
    );
    let message = f
        .refused(too_long(json!([
            node("start", "trigger.manual", json!({})),
            node(
                "each",
                "flow.map",
                json!({"items": "{{ [1] }}", "workflow": {
                    "nodes": [
                        {"id": "in", "name": "In", "type": "trigger.manual"},
                        {"id": "deep", "name": "Deep", "type": "flow.noop", "timeoutMs": 9000}
                    ],
                    "connections": [{"source": "in", "target": "deep"}]
                }})
            )
        ])))
        .await;
    assert!(
        message.contains("node \"each\"") && message.contains("node \"deep\""),
        "{message}"
    );
    // The call is slow enough to be killed in the middle (well within the node's timeout).
    f.sink.delay("slow", Duration::from_millis(800));
    let wf = f
        .create_workflow(json!({
            "name": "Killed mid-node",
            "status": "active",
            "nodes": [
                node("start", "trigger.manual", json!({})),
                node("call", "http.request", json!({"method": "GET", "url": f.sink.url("slow")})),
                node("done", "data.set", json!({"values": {"ok": true}}))
            ],
            "connections": [
                {"source": "start", "target": "call"},
                {"source": "call", "target": "done"}
            ]
        }))
        .await;
    let (status, body) = f
        .api("POST", "/executions", Some(json!({"workflowId": wf})))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();

    // The event source mapping's receive (with the queue's scaled visibility) and an
    // invocation that is killed once the node's call is in flight.
    let mut invocations = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(20);
    while f.sink.count("slow") == 0 {
        assert!(Instant::now() < give_up, "the node never called");
        let messages = f.receive_with(visibility).await;
        if !messages.is_empty() {
            let worker = Worker::new(f.engine.clone());
            let event = sqs_event(&messages, &f.env.queue_arn);
            invocations.push(tokio::spawn(async move {
                worker.handle(invocation(event, 60)).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for invocation in &invocations {
        invocation.abort();
    }
    let detail = f.execution(&id).await;
    let call = detail["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["nodeId"] == "call")
        .unwrap()
        .clone();
    assert_eq!(call["status"], "running", "killed mid-node: {detail}");
    f.sink.delay("slow", Duration::ZERO);

    // Nothing comes back while the killed invocation's messages are invisible; then the job
    // runs again (its lease has expired) and the execution ends well.
    assert!(
        f.receive_with(visibility).await.is_empty(),
        "the message is still invisible"
    );
    f.drain(|| f.is_terminal(&id)).await;
    let done = f.execution(&id).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(
        f.sink.count("slow"),
        2,
        "the killed call and its second run"
    );
    let deadline: Timestamp = serde_json::from_value(done["deadline"].clone()).unwrap();
    let completed: Timestamp = serde_json::from_value(done["completedAt"].clone()).unwrap();
    assert!(completed < deadline, "ended before its deadline: {done}");
}
