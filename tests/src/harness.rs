//! A workflow runner for scenarios: an engine on a backend, a worker pool, a sink, helpers.

use crate::backend::{Backend, test_config};
use crate::sink::Sink;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weconnect_engine::engine::{ExecutionDetail, Principal, StartRequest, worker};
use weconnect_engine::model::{
    Execution, ExecutionLog, ExecutionMode, Job, Timestamp, Workflow, WorkflowDefinition,
    WorkflowStatus, new_id,
};
use weconnect_engine::ports::{Delivery, JobQueue, LogFilter, QueueDepth, QueueResult};
use weconnect_engine::{Engine, EngineConfig};

pub struct Harness {
    pub backend: Arc<Backend>,
    pub engine: Engine,
    pub sink: Sink,
    pub who: Principal,
    shutdown: watch::Sender<bool>,
    pools: Vec<tokio::task::JoinHandle<()>>,
}

impl Harness {
    pub async fn new(backend: Backend) -> Harness {
        Self::with_config(backend, test_config()).await
    }

    pub async fn with_config(backend: Backend, config: EngineConfig) -> Harness {
        let engine = backend.engine(config);
        Self::from_parts(Arc::new(backend), engine).await
    }

    pub async fn from_parts(backend: Arc<Backend>, engine: Engine) -> Harness {
        Harness {
            backend,
            engine,
            sink: Sink::start().await,
            who: Principal {
                user_id: "user-1".into(),
                organization_id: format!("org-{}", new_id()),
            },
            shutdown: watch::channel(false).0,
            pools: Vec::new(),
        }
    }

    /// Starts a pool of `n` workers on `engine` (this harness's engine or another one).
    pub fn start_workers_on(&mut self, engine: Engine, n: usize) {
        let rx = self.shutdown.subscribe();
        self.pools
            .push(tokio::spawn(worker::run_workers(engine, n, rx)));
    }

    pub fn start_workers(&mut self, n: usize) {
        self.start_workers_on(self.engine.clone(), n);
    }

    pub async fn stop_workers(&mut self) {
        let _ = self.shutdown.send(true);
        for p in self.pools.drain(..) {
            let _ = p.await;
        }
        self.shutdown = watch::channel(false).0;
    }

    /// Stores an active workflow (validated as the API would) in this harness's organization.
    pub async fn workflow(&self, def: Value) -> Workflow {
        let def: WorkflowDefinition = serde_json::from_value(def).expect("workflow definition");
        weconnect_engine::graph::validate(&def).expect("valid workflow");
        let now = Timestamp::from(chrono::Utc::now());
        let wf = Workflow {
            status: WorkflowStatus::Active,
            ..Workflow::first_version(new_id(), &self.who, def, now)
        };
        self.backend
            .store
            .create_workflow(&wf, &[])
            .await
            .expect("store workflow");
        wf
    }

    pub async fn start(&self, wf: &Workflow, input: Value) -> Execution {
        self.start_with_timeout(wf, input, None).await
    }

    pub async fn start_with_timeout(
        &self,
        wf: &Workflow,
        input: Value,
        timeout_ms: Option<u64>,
    ) -> Execution {
        let req = StartRequest {
            timeout_ms,
            ..self.request(wf, input)
        };
        self.engine
            .start_execution(req)
            .await
            .expect("start execution")
            .0
    }

    /// An API start of `wf` by this harness's principal.
    pub fn request(&self, wf: &Workflow, input: Value) -> StartRequest {
        StartRequest {
            principal: self.who.clone(),
            workflow_id: wf.id.clone(),
            mode: ExecutionMode::Api,
            input,
            timeout_ms: None,
            idempotency_key: None,
            start_node_id: None,
            priority: None,
        }
    }

    pub async fn execution(&self, id: &str) -> Execution {
        self.backend
            .store
            .get_execution(&self.who.organization_id, id)
            .await
            .expect("read execution")
            .expect("execution exists")
    }

    pub async fn detail(&self, id: &str) -> ExecutionDetail {
        self.engine
            .execution_detail(&self.who, id)
            .await
            .expect("execution detail")
    }

    /// Polls until the execution is terminal; panics with its detail after `within`.
    pub async fn wait_terminal(&self, id: &str, within: Duration) -> ExecutionDetail {
        let until = tokio::time::Instant::now() + within;
        loop {
            let exec = self.execution(id).await;
            if exec.status.is_terminal() {
                return self.detail(id).await;
            }
            if tokio::time::Instant::now() > until {
                panic!(
                    "execution {id} not finished after {within:?}: {:#?}",
                    self.detail(id).await
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until `pred` holds for the execution's detail.
    pub async fn wait_until(
        &self,
        id: &str,
        within: Duration,
        what: &str,
        pred: impl Fn(&ExecutionDetail) -> bool,
    ) -> ExecutionDetail {
        let until = tokio::time::Instant::now() + within;
        loop {
            let d = self.detail(id).await;
            if pred(&d) {
                return d;
            }
            if tokio::time::Instant::now() > until {
                panic!("execution {id}: {what} not reached after {within:?}: {d:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn logs(&self, id: &str) -> Vec<ExecutionLog> {
        self.backend
            .store
            .list_logs(&self.who.organization_id, id, &LogFilter::default(), 1000)
            .await
            .expect("read logs")
            .items
    }
}

/// Output of one node in a detail.
pub fn output(d: &ExecutionDetail, node: &str) -> Value {
    d.nodes
        .iter()
        .find(|n| n.node_id == node)
        .and_then(|n| n.output.clone())
        .unwrap_or(Value::Null)
}

/// Status of one node in a detail, as its JSON string.
pub fn status(d: &ExecutionDetail, node: &str) -> String {
    let n = d
        .nodes
        .iter()
        .find(|n| n.node_id == node)
        .unwrap_or_else(|| panic!("no node {node}"));
    serde_json::to_value(n.status)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

pub fn attempts(d: &ExecutionDetail, node: &str) -> u32 {
    d.nodes
        .iter()
        .find(|n| n.node_id == node)
        .map_or(0, |n| n.attempts)
}

/// What a [`FaultyQueue`] does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every send is delivered twice (at-least-once delivery, worst case).
    DeliverTwice,
    /// Every send fails (a queue outage at the worst moment).
    RefuseSends,
}

/// A real queue with one injected fault.
pub struct FaultyQueue {
    pub inner: Arc<dyn JobQueue>,
    pub fault: Fault,
}

#[async_trait]
impl JobQueue for FaultyQueue {
    async fn send(&self, jobs: &[Job], delay: Duration) -> QueueResult<()> {
        match self.fault {
            Fault::DeliverTwice => {
                self.inner.send(jobs, delay).await?;
                self.inner.send(jobs, delay).await
            }
            Fault::RefuseSends => Err(weconnect_engine::ports::QueueError::Backend(
                "queue unavailable".into(),
            )),
        }
    }
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<Delivery>> {
        self.inner.receive(max, visibility, wait).await
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

/// The most executions of `list` that ran at the same time, from the times the store recorded
/// (`startedAt` when the first node is claimed, `completedAt` with the end; touching intervals
/// do not overlap; executions that never ran are left out).
pub fn most_at_once<'a>(list: impl IntoIterator<Item = &'a Execution>) -> usize {
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for e in list {
        if let (Some(a), Some(b)) = (e.started_at, e.completed_at) {
            edges.push((a.millis(), 1));
            edges.push((b.millis(), -1));
        }
    }
    // Ends before starts at the same millisecond.
    edges.sort_by_key(|(t, d)| (*t, *d));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}
