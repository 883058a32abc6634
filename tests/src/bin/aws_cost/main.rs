//! `aws-cost`: what one node execution costs on AWS.
//!
//! ```text
//! cargo run -p weconnect-tests --bin aws-cost [-- --executions 20 --workers 4]
//! ```
//!
//! Starts `moto_server` (the test harness's, fresh table/queue/bus), builds the engine on the
//! AWS adapters (DynamoDB + SQS + EventBridge) with the adapters' [`RequestCounter`] on every
//! client, and for two workflow shapes, a 10-node linear chain and a 10-wide fan-out with a
//! join, starts N executions (the API side) and then runs them with the engine's worker pool
//! on the SQS queue. Requests are counted per service and operation, separately for the
//! setup (workflow creation, excluded), the starts and the workers; the totals are printed
//! per node and per execution, with dollars per million node executions at on-demand prices
//! beside AWS Step Functions Standard, and checked against the linear chain's targets.
//!
//! The completion of an execution is learnt from the engine's own terminal event (the
//! EventBridge publication, forwarded in-process), and the results are verified afterwards
//! with uncounted clients, so the benchmark adds no request of its own to the counts.

use anyhow::{Context as _, Result, anyhow, bail};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use weconnect_engine::adapters::aws::{DynamoStore, OperationCount, OperationKey, RequestCounter};
use weconnect_engine::engine::{Ports, Principal, StartRequest, worker};
use weconnect_engine::model::{
    ExecutionMode, ExecutionStatus, Job, NodeRunStatus, Timestamp, Workflow, WorkflowDefinition,
    WorkflowStatus, new_id,
};
use weconnect_engine::ports::{
    Delivery, EventSink, ExecutionEvent, ExecutionStore, JobQueue, QueueDepth, QueueResult, Store,
    SystemClock,
};
use weconnect_engine::secrets::SecretBox;
use weconnect_engine::{Engine, EngineConfig};
use weconnect_tests::moto::{self, AwsEnv, EnvOptions};
use weconnect_tests::units::{UnitEstimator, Units};

// On-demand prices, US East (N. Virginia), dollars per million.
const PRICE_WRITE_UNIT: f64 = 0.625;
const PRICE_READ_UNIT: f64 = 0.125;
const PRICE_SQS_REQUEST: f64 = 0.40;
const PRICE_EVENT: f64 = 1.00;
const PRICE_STATE_TRANSITION: f64 = 25.0;
const PRICE_LAMBDA_REQUEST: f64 = 0.20;
/// arm64, dollars per GB-second (not per million).
const PRICE_LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
const PRICE_HTTP_API_REQUEST: f64 = 1.00;
const PRICE_EXPRESS_REQUEST: f64 = 1.00;
/// Step Functions Express duration, dollars per GB-second (first 1,000 GB-hours).
const PRICE_EXPRESS_GB_SECOND: f64 = 0.000_016_67;

// Assumptions of the duration estimates (printed with the figures).
/// `MemorySize` of the webhook and worker functions in template.yaml.
const LAMBDA_MEMORY_GB: f64 = 0.5;
/// In-region latency of one request, milliseconds (p50 order of magnitude).
const DYNAMO_MS: f64 = 5.0;
const SQS_EVENTS_MS: f64 = 10.0;
/// Each invocation's own work besides waiting for requests (decode, expressions, encode).
const INVOCATION_CPU_MS: f64 = 2.0;
/// Step Functions Express: the smallest memory it bills (64 MB) and the time a Lambda task
/// state takes around its function (the state machine waits, billed).
const EXPRESS_MEMORY_GB: f64 = 0.0625;
const EXPRESS_MS_PER_TASK: f64 = 20.0;
/// The Lambda function of one Express task state (128 MB, ~5 ms of work billed per ms).
const TASK_MEMORY_GB: f64 = 0.125;
const TASK_MS: f64 = 5.0;

// Targets on the linear chain, per node.
const TARGET_WRITES: f64 = 3.0;
const TARGET_READS: f64 = 1.0;
const TARGET_SQS: f64 = 0.5;

const DYNAMO_WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
];
const DYNAMO_READS: [&str; 5] = [
    "GetItem",
    "Query",
    "BatchGetItem",
    "Scan",
    "TransactGetItems",
];
/// Done by the Lambda event source mapping in production, by the worker pool here.
const SQS_POLLER: [&str; 3] = ["ReceiveMessage", "DeleteMessage", "DeleteMessageBatch"];

#[derive(Debug, Clone)]
struct Options {
    executions: usize,
    workers: usize,
    /// Branches of the fan-out.
    width: usize,
    trace: bool,
}

fn usage() -> &'static str {
    "usage: aws-cost [--executions N (20)] [--workers W (4)] [--width B (10)] [--trace]\n\
     Counts the AWS requests per node of a 10-node chain and a B-wide fan-out with a join,\n\
     run on moto_server (pip install 'moto[server]'). --trace prints every DynamoDB item\n\
     write with its estimated write units to stderr."
}

fn options() -> Result<Options> {
    let mut o = Options {
        executions: 20,
        workers: 4,
        width: 10,
        trace: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize> {
            let v = args
                .next()
                .ok_or_else(|| anyhow!("{name} needs a value\n{}", usage()))?;
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| anyhow!("{name}: {v:?} is not a positive number"))
        };
        match arg.as_str() {
            "-n" | "--executions" => o.executions = number("--executions")?,
            "-w" | "--workers" => o.workers = number("--workers")?,
            "--width" => o.width = number("--width")?,
            "--trace" => o.trace = true,
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    Ok(o)
}

/// The harness panics with its own message when moto is missing; say it before.
fn check_moto() -> Result<()> {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("moto_server").is_file())
    });
    if !found {
        bail!(
            "moto_server is not on the PATH: this benchmark runs the AWS adapters against it.\n\
             Install it with `pip install 'moto[server]'` and run again."
        );
    }
    Ok(())
}

// ---- ports wrapped for the benchmark ---------------------------------------------------------

/// Forwards every event to EventBridge and tells the benchmark which executions finished.
struct NotifyingEvents {
    inner: Arc<dyn EventSink>,
    finished: mpsc::UnboundedSender<ExecutionEvent>,
}

#[async_trait]
impl EventSink for NotifyingEvents {
    async fn publish(&self, event: &ExecutionEvent) -> Result<(), String> {
        let result = self.inner.publish(event).await;
        let _ = self.finished.send(event.clone());
        result
    }
}

/// The SQS queue, counting the messages sent and delivered (the requests are counted by the
/// SDK interceptor).
struct CountingQueue {
    inner: Arc<dyn JobQueue>,
    sent: AtomicU64,
    delivered: AtomicU64,
    receives_with_messages: AtomicU64,
}

impl CountingQueue {
    fn take(&self) -> (u64, u64, u64) {
        (
            self.sent.swap(0, Ordering::SeqCst),
            self.delivered.swap(0, Ordering::SeqCst),
            self.receives_with_messages.swap(0, Ordering::SeqCst),
        )
    }
}

#[async_trait]
impl JobQueue for CountingQueue {
    async fn send(&self, jobs: &[Job], delay: Duration) -> QueueResult<()> {
        self.sent.fetch_add(jobs.len() as u64, Ordering::SeqCst);
        self.inner.send(jobs, delay).await
    }
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<Delivery>> {
        let got = self.inner.receive(max, visibility, wait).await?;
        if !got.is_empty() {
            self.delivered.fetch_add(got.len() as u64, Ordering::SeqCst);
            self.receives_with_messages.fetch_add(1, Ordering::SeqCst);
        }
        Ok(got)
    }
    async fn ack(&self, receipt: &str) -> QueueResult<()> {
        self.inner.ack(receipt).await
    }
    async fn release(&self, receipt: &str, delay: Duration) -> QueueResult<()> {
        self.inner.release(receipt, delay).await
    }
    async fn extend(&self, receipt: &str, visibility: Duration) -> QueueResult<()> {
        self.inner.extend(receipt, visibility).await
    }
    async fn depth(&self) -> QueueResult<QueueDepth> {
        self.inner.depth().await
    }
    fn max_delay(&self) -> Duration {
        self.inner.max_delay()
    }
}

// ---- the workflows -----------------------------------------------------------------------

/// Checks one finished execution's node outputs (by node id).
type OutputCheck = Box<dyn Fn(&BTreeMap<String, Value>) -> Result<()>>;

struct Shape {
    key: &'static str,
    title: String,
    definition: Value,
    nodes: usize,
    check: OutputCheck,
}

fn trigger() -> Value {
    json!({"id": "start", "name": "Start", "type": "trigger.manual"})
}

fn set(id: &str, values: Value) -> Value {
    json!({"id": id, "name": id, "type": "data.set", "parameters": {"values": values}})
}

fn linear_chain() -> Shape {
    let mut nodes = vec![trigger(), set("s1", json!({"n": "{{ trigger.n + 1 }}"}))];
    let mut connections = vec![json!({"source": "start", "target": "s1"})];
    for i in 2..=9 {
        nodes.push(set(&format!("s{i}"), json!({"n": "{{ json.n + 1 }}"})));
        connections.push(json!({"source": format!("s{}", i - 1), "target": format!("s{i}")}));
    }
    Shape {
        key: "linear",
        title: "linear chain".into(),
        definition: json!({"name": "cost: linear chain", "nodes": nodes, "connections": connections}),
        nodes: 10,
        check: Box::new(|out| match out.get("s9") {
            Some(v) if *v == json!({"n": 9}) => Ok(()),
            other => bail!("s9 output {other:?}, expected {{\"n\": 9}}"),
        }),
    }
}

fn fan_out(width: usize) -> Shape {
    let mut nodes = vec![trigger()];
    let mut connections = Vec::new();
    for i in 1..=width {
        let id = format!("b{i}");
        nodes.push(set(
            &id,
            json!({"branch": i, "v": format!("{{{{ trigger.n + {i} }}}}")}),
        ));
        connections.push(json!({"source": "start", "target": id}));
        connections.push(json!({"source": id, "target": "join"}));
    }
    nodes.push(json!({"id": "join", "name": "Join", "type": "flow.merge"}));
    Shape {
        key: "fanout",
        title: format!("fan-out {width} + join"),
        definition: json!({"name": "cost: fan-out", "nodes": nodes, "connections": connections}),
        nodes: width + 2,
        check: Box::new(move |out| {
            let joined = out
                .get("join")
                .and_then(Value::as_object)
                .ok_or_else(|| anyhow!("join has no object output"))?;
            for i in 1..=width {
                let branch = joined
                    .get(&format!("b{i}"))
                    .ok_or_else(|| anyhow!("join output lacks b{i}: {joined:?}"))?;
                if branch["v"] != json!(i) {
                    bail!("b{i} output {branch}, expected v = {i}");
                }
            }
            Ok(())
        }),
    }
}

// ---- measuring ---------------------------------------------------------------------------

type Counts = BTreeMap<OperationKey, OperationCount>;

/// The counts of one phase.
#[derive(Debug, Default, Clone)]
struct Phase {
    requests: Counts,
    units: BTreeMap<String, Units>,
}

impl Phase {
    fn requests(&self, service: &str, operation: &str) -> f64 {
        self.requests
            .get(&(service.to_string(), operation.to_string()))
            .map_or(0.0, |c| c.requests as f64)
    }
    fn reported(&self, operation: &str) -> f64 {
        self.requests
            .get(&("dynamodb".to_string(), operation.to_string()))
            .map_or(0.0, |c| c.capacity_units)
    }
    fn units(&self, operation: &str) -> Units {
        self.units.get(operation).copied().unwrap_or_default()
    }
}

struct Measured {
    shape: Shape,
    executions: usize,
    setup: Phase,
    start: Phase,
    run: Phase,
    messages_sent: u64,
    messages_delivered: u64,
    receives_with_messages: u64,
    elapsed: Duration,
}

struct Bench {
    env: AwsEnv,
    engine: Engine,
    store: Arc<dyn Store>,
    /// Uncounted: verification only.
    check_store: DynamoStore,
    counter: RequestCounter,
    estimator: UnitEstimator,
    queue: Arc<CountingQueue>,
    finished: mpsc::UnboundedReceiver<ExecutionEvent>,
    who: Principal,
    workers: usize,
}

impl Bench {
    async fn new(workers: usize, trace: bool) -> Result<Bench> {
        let env = moto::aws_env_with(EnvOptions {
            consumed_capacity: true,
            ..Default::default()
        })
        .await;
        let counter = env.adapters.counter.clone();
        let estimator = UnitEstimator::new(&moto::table_definition(), trace);
        // The adapters' SQS and EventBridge clients carry the counter already; the DynamoDB
        // client is rebuilt the same way with the unit estimator beside the counter.
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&env.sdk)
                .interceptor(counter.clone())
                .interceptor(estimator.clone())
                .build(),
        );
        let store: Arc<dyn Store> = Arc::new(DynamoStore::new(dynamo, &env.config));
        let check_store = DynamoStore::new(env.dynamo.clone(), &env.config);
        let queue = Arc::new(CountingQueue {
            inner: env.adapters.queue.clone(),
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            receives_with_messages: AtomicU64::new(0),
        });
        let (tx, finished) = mpsc::unbounded_channel();
        let ports = Ports {
            store: store.clone(),
            queue: queue.clone(),
            events: Arc::new(NotifyingEvents {
                inner: env.adapters.events.clone(),
                finished: tx,
            }),
            schedules: env.adapters.schedules.clone(),
            clock: Arc::new(SystemClock),
        };
        // One job per worker: the call counts do not depend on concurrency, and several jobs
        // per worker would only queue up on moto's single request thread.
        let config = EngineConfig {
            jobs_per_worker: 1,
            ..EngineConfig::default()
        };
        let engine = Engine::new(ports, config, SecretBox::new(&[7u8; 32]));
        Ok(Bench {
            env,
            engine,
            store,
            check_store,
            counter,
            estimator,
            queue,
            finished,
            who: Principal {
                user_id: "cost-user".into(),
                organization_id: format!("org-{}", new_id()),
            },
            workers,
        })
    }

    fn take_phase(&self) -> Phase {
        Phase {
            requests: self.counter.take(),
            units: self.estimator.take(),
        }
    }

    /// Stores the workflow as the API does (validated, active).
    async fn create_workflow(&self, def: &Value) -> Result<Workflow> {
        let def: WorkflowDefinition =
            serde_json::from_value(def.clone()).context("workflow definition")?;
        weconnect_engine::graph::validate(&def).map_err(|e| anyhow!("invalid workflow: {e:?}"))?;
        let now = Timestamp::from(chrono::Utc::now());
        let wf = Workflow {
            status: WorkflowStatus::Active,
            ..Workflow::first_version(new_id(), &self.who, def, now)
        };
        self.store
            .create_workflow(&wf, &[])
            .await
            .context("create the workflow")?;
        Ok(wf)
    }

    /// Waits until the queue holds no message, visible, in flight or delayed (uncounted).
    async fn queue_drained(&self, within: Duration) -> Result<()> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let until = Instant::now() + within;
        loop {
            let out = self
                .env
                .sqs
                .get_queue_attributes()
                .queue_url(&self.env.config.queue_url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(A::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .context("read the queue depth")?;
            let total: u64 = out
                .attributes()
                .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
                .unwrap_or(0);
            if total == 0 {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("{total} messages still on the queue after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn measure(&mut self, shape: Shape, executions: usize) -> Result<Measured> {
        let _ = self.take_phase();
        let _ = self.queue.take();

        // Setup: the workflow (reported apart, excluded from the per-node figures).
        let wf = self.create_workflow(&shape.definition).await?;
        let setup = self.take_phase();

        // The API side: N starts; the first jobs wait on the queue.
        let began = Instant::now();
        let mut ids = HashSet::new();
        for i in 0..executions {
            let req = StartRequest {
                principal: self.who.clone(),
                workflow_id: wf.id.clone(),
                mode: ExecutionMode::Api,
                input: json!({"n": 0, "i": i}),
                timeout_ms: None,
                idempotency_key: None,
                start_node_id: None,
                priority: None,
            };
            let (exec, _) = self
                .engine
                .start_execution(req)
                .await
                .map_err(|e| anyhow!("start an execution: {e}"))?;
            ids.insert(exec.id);
        }
        let start = self.take_phase();

        // The worker side: the pool runs everything queued.
        let (stop, stopped) = watch::channel(false);
        let pool = tokio::spawn(worker::run_workers(
            self.engine.clone(),
            self.workers,
            stopped,
        ));
        let mut pending: HashSet<String> = ids.clone();
        let mut failed = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        while !pending.is_empty() {
            let event = tokio::time::timeout_at(deadline, self.finished.recv())
                .await
                .map_err(|_| {
                    anyhow!(
                        "{} of {executions} executions of the {} did not finish within 300 s",
                        pending.len(),
                        shape.title
                    )
                })?
                .ok_or_else(|| anyhow!("the event channel closed"))?;
            if pending.remove(&event.execution_id) && event.status != ExecutionStatus::Success {
                failed.push(format!(
                    "{}: {} {}",
                    event.execution_id,
                    event.status.as_str(),
                    event.error_message.unwrap_or_default()
                ));
            }
        }
        let drained = self.queue_drained(Duration::from_secs(30)).await;
        let _ = stop.send(true);
        let _ = pool.await;
        drained?;
        let elapsed = began.elapsed();
        let run = self.take_phase();
        let (messages_sent, messages_delivered, receives_with_messages) = self.queue.take();
        if !failed.is_empty() {
            bail!("executions did not succeed:\n{}", failed.join("\n"));
        }

        // Verified with the uncounted store: every node succeeded with the expected output.
        for id in &ids {
            let state = self
                .check_store
                .get_execution_state(&self.who.organization_id, id)
                .await
                .map_err(|e| anyhow!("read execution {id}: {e}"))?
                .ok_or_else(|| anyhow!("execution {id} not found"))?;
            let ok = state
                .node_runs
                .iter()
                .filter(|r| r.status == NodeRunStatus::Success)
                .count();
            if ok != shape.nodes || state.execution.status != ExecutionStatus::Success {
                bail!(
                    "execution {id}: {} with {ok} of {} nodes successful",
                    state.execution.status.as_str(),
                    shape.nodes
                );
            }
            let outputs = state
                .node_runs
                .into_iter()
                .map(|r| (r.node_id, r.output.unwrap_or(Value::Null)))
                .collect();
            (shape.check)(&outputs).with_context(|| format!("execution {id}"))?;
        }
        Ok(Measured {
            shape,
            executions,
            setup,
            start,
            run,
            messages_sent,
            messages_delivered,
            receives_with_messages,
            elapsed,
        })
    }
}

// ---- figures -----------------------------------------------------------------------------

/// Per-execution figures of one shape (start + run), and per node.
struct Figures<'a> {
    m: &'a Measured,
}

impl Figures<'_> {
    fn n(&self) -> f64 {
        self.m.executions as f64
    }
    fn nodes(&self) -> f64 {
        self.m.shape.nodes as f64
    }
    /// Requests of one operation per execution (start + run).
    fn op(&self, service: &str, operation: &str) -> f64 {
        (self.m.start.requests(service, operation) + self.m.run.requests(service, operation))
            / self.n()
    }
    fn ops(&self, service: &str, operations: &[&str]) -> f64 {
        operations.iter().map(|o| self.op(service, o)).sum()
    }
    fn service(&self, service: &str) -> f64 {
        let sum = |p: &Phase| -> f64 {
            p.requests
                .iter()
                .filter(|((s, _), _)| s == service)
                .map(|(_, c)| c.requests as f64)
                .sum()
        };
        (sum(&self.m.start) + sum(&self.m.run)) / self.n()
    }
    fn writes(&self) -> f64 {
        self.ops("dynamodb", &DYNAMO_WRITES)
    }
    fn reads(&self) -> f64 {
        self.ops("dynamodb", &DYNAMO_READS)
    }
    fn units(&self) -> Units {
        let mut u = Units::default();
        for p in [&self.m.start, &self.m.run] {
            for v in p.units.values() {
                u.write += v.write;
                u.read += v.read;
            }
        }
        Units {
            write: u.write / self.n(),
            read: u.read / self.n(),
        }
    }
    fn op_units(&self, operation: &str) -> Units {
        let (a, b) = (self.m.start.units(operation), self.m.run.units(operation));
        Units {
            write: (a.write + b.write) / self.n(),
            read: (a.read + b.read) / self.n(),
        }
    }
    fn reported(&self, operations: &[&str]) -> f64 {
        operations
            .iter()
            .map(|o| self.m.start.reported(o) + self.m.run.reported(o))
            .sum::<f64>()
            / self.n()
    }
    fn sqs_poller(&self) -> f64 {
        self.ops("sqs", &SQS_POLLER)
    }
    fn sqs_engine(&self) -> f64 {
        self.service("sqs") - self.sqs_poller()
    }
    fn messages(&self) -> f64 {
        self.m.messages_delivered as f64 / self.n()
    }
    /// The event source mapping's requests in the worst case (batches of one message): one
    /// receive and one delete per message.
    fn poller_estimate(&self) -> f64 {
        2.0 * self.messages()
    }
    fn events(&self) -> f64 {
        self.service("eventbridge")
    }

    /// Lambda invocations per execution: the webhook's, and the worker's in the worst case
    /// (one message per invocation).
    fn invocations(&self) -> f64 {
        1.0 + self.messages()
    }
    /// Estimated billed Lambda milliseconds per execution: the engine's requests one after
    /// another at the assumed latencies (the worker overlaps a fan-out's, so an upper bound)
    /// plus each invocation's own work.
    fn lambda_ms(&self) -> f64 {
        self.service("dynamodb") * DYNAMO_MS
            + (self.sqs_engine() + self.events()) * SQS_EVENTS_MS
            + self.invocations() * INVOCATION_CPU_MS
    }

    /// Dollars per million node executions: (writes, reads, sqs engine, sqs poller, events,
    /// Lambda requests, Lambda duration, API Gateway).
    fn dollars(&self) -> [f64; 8] {
        let per_node = |x: f64| x / self.nodes();
        let u = self.units();
        [
            per_node(u.write) * PRICE_WRITE_UNIT,
            per_node(u.read) * PRICE_READ_UNIT,
            per_node(self.sqs_engine()) * PRICE_SQS_REQUEST,
            per_node(self.poller_estimate()) * PRICE_SQS_REQUEST,
            per_node(self.events()) * PRICE_EVENT,
            per_node(self.invocations()) * PRICE_LAMBDA_REQUEST,
            per_node(self.lambda_ms() / 1000.0 * LAMBDA_MEMORY_GB) * PRICE_LAMBDA_GB_SECOND * 1e6,
            per_node(1.0) * PRICE_HTTP_API_REQUEST,
        ]
    }

    /// Step Functions Express, per million node executions, with one Lambda task per node:
    /// (the state machine's request and duration, the tasks' Lambda requests and duration).
    fn express_dollars(&self) -> [f64; 2] {
        let per_node = |x: f64| x / self.nodes();
        let machine = per_node(PRICE_EXPRESS_REQUEST)
            + EXPRESS_MS_PER_TASK / 1000.0 * EXPRESS_MEMORY_GB * PRICE_EXPRESS_GB_SECOND * 1e6;
        let tasks =
            PRICE_LAMBDA_REQUEST + TASK_MS / 1000.0 * TASK_MEMORY_GB * PRICE_LAMBDA_GB_SECOND * 1e6;
        [machine, tasks]
    }
}

struct Table {
    out: String,
}

/// Width of the label column and of one value column.
const LABEL: usize = 44;
const HALF: usize = 14;

impl Table {
    fn row(&mut self, label: &str, values: &[(f64, f64)]) {
        let mut line = format!("{label:<LABEL$}");
        for (node, exec) in values {
            let _ = write!(line, "{node:>HALF$.2}{exec:>HALF$.2}  ");
        }
        self.text(&line);
    }
    fn text(&mut self, line: &str) {
        self.out.push_str(line.trim_end());
        self.out.push('\n');
    }
}

fn report(measured: &[Measured], options: &Options) -> String {
    let figures: Vec<Figures> = measured.iter().map(|m| Figures { m }).collect();
    let mut t = Table { out: String::new() };
    t.text(&format!(
        "WeConnect on AWS: requests per node execution (moto_server; {} executions per shape, {} workers)",
        options.executions, options.workers
    ));
    t.text("");
    let mut header = format!("{:<LABEL$}", "");
    let mut sub = format!("{:<LABEL$}", "");
    for f in &figures {
        let title = format!("{}, {} nodes", f.m.shape.title, f.m.shape.nodes);
        let _ = write!(header, "{title:>width$}  ", width = 2 * HALF);
        let _ = write!(sub, "{:>HALF$}{:>HALF$}  ", "per node", "per exec");
    }
    t.text(&header);
    t.text(&sub);
    let both = |x: &dyn Fn(&Figures) -> f64| -> Vec<(f64, f64)> {
        figures
            .iter()
            .map(|f| {
                let v = x(f);
                (v / f.nodes(), v)
            })
            .collect()
    };
    let seen = |service: &str, candidates: &[&str]| -> Vec<String> {
        let mut ops = BTreeSet::new();
        for m in measured {
            for p in [&m.start, &m.run] {
                for (s, o) in p.requests.keys() {
                    if s == service && (candidates.is_empty() || candidates.contains(&o.as_str())) {
                        ops.insert(o.clone());
                    }
                }
            }
        }
        ops.into_iter().collect()
    };

    t.row("DynamoDB write requests", &both(&|f| f.writes()));
    for op in seen("dynamodb", &DYNAMO_WRITES) {
        t.row(&format!("  {op}"), &both(&|f| f.op("dynamodb", &op)));
    }
    t.row(
        "DynamoDB write units (estimated)",
        &both(&|f| f.units().write),
    );
    for op in seen("dynamodb", &DYNAMO_WRITES) {
        t.row(&format!("  {op}"), &both(&|f| f.op_units(&op).write));
    }
    t.row(
        "DynamoDB write units (moto's constant)",
        &both(&|f| f.reported(&DYNAMO_WRITES)),
    );
    t.row("DynamoDB read requests", &both(&|f| f.reads()));
    for op in seen("dynamodb", &DYNAMO_READS) {
        t.row(&format!("  {op}"), &both(&|f| f.op("dynamodb", &op)));
    }
    t.row(
        "DynamoDB read units (estimated)",
        &both(&|f| f.units().read),
    );
    t.row(
        "DynamoDB read units (moto's constant)",
        &both(&|f| f.reported(&DYNAMO_READS)),
    );
    t.row("SQS engine-side requests", &both(&|f| f.sqs_engine()));
    let engine_ops: Vec<String> = seen("sqs", &[])
        .into_iter()
        .filter(|o| !SQS_POLLER.contains(&o.as_str()))
        .collect();
    for op in &engine_ops {
        t.row(&format!("  {op}"), &both(&|f| f.op("sqs", op)));
    }
    t.row("SQS messages delivered", &both(&|f| f.messages()));
    t.row(
        "SQS poller requests (this worker pool)",
        &both(&|f| f.sqs_poller()),
    );
    for op in seen("sqs", &SQS_POLLER) {
        t.row(&format!("  {op}"), &both(&|f| f.op("sqs", &op)));
    }
    t.row(
        "SQS poller, Lambda ESM worst case (2/msg)",
        &both(&|f| f.poller_estimate()),
    );
    t.row("EventBridge PutEvents", &both(&|f| f.events()));

    t.text("");
    let mut header = format!("{:<LABEL$}", "$ per million node executions");
    for f in &figures {
        let _ = write!(header, "{:>width$}  ", f.m.shape.title, width = 2 * HALF);
    }
    t.text(&header);
    let dollars: Vec<([f64; 8], [f64; 2])> = figures
        .iter()
        .map(|f| (f.dollars(), f.express_dollars()))
        .collect();
    type Pick<'a> = &'a dyn Fn(&([f64; 8], [f64; 2])) -> f64;
    let money = |t: &mut Table, label: &str, pick: Pick| {
        let mut line = format!("{label:<LABEL$}");
        for d in &dollars {
            let _ = write!(line, "{:>width$.3}  ", pick(d), width = 2 * HALF);
        }
        t.text(&line);
    };
    money(&mut t, "  DynamoDB writes ($0.625/M WRU)", &|d| d.0[0]);
    money(&mut t, "  DynamoDB reads ($0.125/M RRU)", &|d| d.0[1]);
    money(&mut t, "  SQS engine-side ($0.40/M)", &|d| d.0[2]);
    money(&mut t, "  SQS poller, ESM worst case ($0.40/M)", &|d| {
        d.0[3]
    });
    money(&mut t, "  EventBridge ($1.00/M events)", &|d| d.0[4]);
    money(&mut t, "  Lambda requests ($0.20/M, 1 msg/batch)", &|d| {
        d.0[5]
    });
    money(&mut t, "  Lambda duration (arm64, 512 MB, est.)", &|d| {
        d.0[6]
    });
    money(&mut t, "  API Gateway HTTP API ($1.00/M)", &|d| d.0[7]);
    money(&mut t, "  total", &|d| d.0.iter().sum());
    money(&mut t, "  AWS Step Functions Standard ($25/M)", &|_| {
        PRICE_STATE_TRANSITION
    });
    money(&mut t, "  AWS Step Functions Express, states only", &|d| {
        d.1[0]
    });
    money(&mut t, "    + a Lambda task per node", &|d| d.1[0] + d.1[1]);

    if let Some(linear) = figures.iter().find(|f| f.m.shape.key == "linear") {
        t.text("");
        t.text("Targets on the linear chain (per node)");
        let check = |t: &mut Table, label: &str, value: f64, target: f64| {
            let verdict = if value <= target + 1e-9 {
                "PASS"
            } else {
                "MISS"
            };
            t.text(&format!(
                "  {label:<42}{value:>6.2}  <= {target:<4} {verdict}"
            ));
        };
        check(
            &mut t,
            "DynamoDB write requests",
            linear.writes() / linear.nodes(),
            TARGET_WRITES,
        );
        check(
            &mut t,
            "DynamoDB read requests",
            linear.reads() / linear.nodes(),
            TARGET_READS,
        );
        check(
            &mut t,
            "SQS engine-side requests",
            linear.sqs_engine() / linear.nodes(),
            TARGET_SQS,
        );
    }

    t.text("");
    t.text("Requests per execution by phase (start = API side, run = worker side)");
    for f in &figures {
        t.text(&format!("  {}:", f.m.shape.title));
        let mut ops = BTreeSet::new();
        for p in [&f.m.start, &f.m.run] {
            ops.extend(p.requests.keys().cloned());
        }
        for (service, op) in ops {
            let start = f.m.start.requests(&service, &op) / f.n();
            let run = f.m.run.requests(&service, &op) / f.n();
            t.text(&format!(
                "    {:<36} start {start:>6.2}   run {run:>6.2}",
                format!("{service} {op}")
            ));
        }
        let setup: Vec<String> =
            f.m.setup
                .requests
                .iter()
                .map(|((s, o), c)| format!("{s} {o} x{}", c.requests))
                .collect();
        t.text(&format!(
            "    setup (excluded): {}",
            if setup.is_empty() {
                "none".to_string()
            } else {
                setup.join(", ")
            }
        ));
        t.text(&format!(
            "    messages sent {}, delivered {}, receives with a message {}; {:.1} s on moto",
            f.m.messages_sent,
            f.m.messages_delivered,
            f.m.receives_with_messages,
            f.m.elapsed.as_secs_f64()
        ));
    }
    t.text("");
    for line in [
        "Notes: write units are estimated from item sizes (x2 in transactions, plus GSI",
        "maintenance); moto reports a constant per request. Reads are priced as requested",
        "(strongly consistent where the store asks for it). Engine-side SQS = sends and",
        "visibility changes; receive/delete are the Lambda event source mapping's in",
        "production (here the worker pool's, including empty polls). Step Functions",
        "Standard: one state transition per node.",
    ] {
        t.text(line);
    }
    let lambda_note = format!(
        "Lambda (estimated, not measured): one webhook invocation per execution and one \
         worker invocation per message (batches of one, the worst case); billed time = the \
         engine's requests one after another at {DYNAMO_MS} ms per DynamoDB and \
         {SQS_EVENTS_MS} ms per SQS/EventBridge request + {INVOCATION_CPU_MS} ms of work per \
         invocation, at {LAMBDA_MEMORY_GB} GB. API Gateway: the webhook request. Step \
         Functions Express: one request per execution, {EXPRESS_MS_PER_TASK} ms per task \
         state at 64 MB, its Lambda tasks {TASK_MS} ms at 128 MB each (no store or queue: \
         Express keeps no execution history beyond logs, runs at most 5 minutes, and \
         delivers at least once)."
    );
    let mut line = String::new();
    for word in lambda_note.split_whitespace() {
        if line.len() + word.len() >= 84 {
            t.text(&line);
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    t.text(&line);
    t.out
}

/// Errors are printed as one message (no backtrace), exit status 1.
#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("aws-cost: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let options = options()?;
    check_moto()?;
    let mut bench = Bench::new(options.workers, options.trace).await?;
    let mut measured = Vec::new();
    for shape in [linear_chain(), fan_out(options.width)] {
        eprintln!(
            "running {} executions of the {} on moto...",
            options.executions, shape.title
        );
        measured.push(bench.measure(shape, options.executions).await?);
    }
    print!("{}", report(&measured, &options));
    Ok(())
}
