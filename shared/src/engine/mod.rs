//! The execution protocol (ARCHITECTURE.md, "The execution protocol"), talking only to the
//! ports: start, run a job, record, route and join, finalize, cancel, pause, resume, retry,
//! redrive, and the sweep.

mod compose;
mod detail;
mod finish;
mod gates;
mod lifecycle;
mod live;
mod metrics;
mod observe;
mod retry;
mod run;
mod series;
mod start;
mod sweep;
pub mod worker;
pub mod workflows;

pub use compose::{CallbackAccepted, HEARTBEAT};
pub use detail::{CallbackInfo, ExecutionDetail, NodeDetail, Progress};
pub use live::{ExecutionChanges, ExecutionWatch, LiveBatch, LiveEvent};
pub use metrics::{EngineMetrics, MetricsSnapshot, QueueGauges, Series};
pub use observe::{CircuitConfigView, CircuitView, WorkflowTrends, check_circuit_config};
pub use run::JobOutcome;
pub use series::EMF_NAMESPACE;
pub use start::StartRequest;
pub use sweep::SweepReport;

use crate::config::EngineConfig;
use crate::graph::Plan;
use crate::model::Workflow;
use crate::nodes::NodeServices;
use crate::ports::{Clock, EventSink, JobQueue, ScheduleSync, Store};
use crate::secrets::{SecretBox, Vault};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Who is calling: from a verified JWT (local) or API Gateway authorizer claims (Lambda).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub user_id: String,
    pub organization_id: String,
}

/// The ports an engine runs on.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn JobQueue>,
    pub events: Arc<dyn EventSink>,
    pub schedules: Arc<dyn ScheduleSync>,
    pub clock: Arc<dyn Clock>,
}

/// (organization, workflow id, version)
type VersionKey = (String, String, u32);
type CachedVersion = (Arc<Workflow>, Arc<Plan>);

/// The engine: cheap to clone, shared by every handler and worker of a process.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    ports: Ports,
    config: EngineConfig,
    nodes: NodeServices,
    metrics: EngineMetrics,
    changes: Arc<ExecutionChanges>,
    /// Workflow versions are immutable: cache them by (org, id, version).
    versions: Mutex<HashMap<VersionKey, CachedVersion>>,
    /// Inline child workflows of cached versions, by (org, id, version, node).
    inline: Mutex<HashMap<(VersionKey, String), CachedVersion>>,
    callbacks: crate::callbacks::CallbackTokens,
}

impl Engine {
    /// Builds the engine; `secrets` seals and opens credential data.
    pub fn new(ports: Ports, config: EngineConfig, secrets: SecretBox) -> Self {
        let callbacks = secrets.callback_tokens();
        let nodes = NodeServices {
            http: crate::nodes::ssrf::http_client(config.http_allow_private),
            circuits: ports.store.clone(),
            rates: Arc::new(crate::ports::StoreRateLimits(ports.store.clone())),
            vault: Vault::new(secrets, ports.store.clone()),
            clock: ports.clock.clone(),
            config: config.clone(),
        };
        Self {
            inner: Arc::new(Inner {
                ports,
                config,
                nodes,
                metrics: EngineMetrics::default(),
                changes: Arc::default(),
                versions: Mutex::new(HashMap::new()),
                inline: Mutex::new(HashMap::new()),
                callbacks,
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.ports.store
    }
    pub fn queue(&self) -> &Arc<dyn JobQueue> {
        &self.inner.ports.queue
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.ports.clock
    }
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }
    pub fn vault(&self) -> &Vault {
        &self.inner.nodes.vault
    }
    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }
    /// Who watches executions in this process (the events route).
    pub fn changes(&self) -> &Arc<ExecutionChanges> {
        &self.inner.changes
    }
    /// This process changed execution `id`: its watchers re-read it.
    fn changed(&self, id: &str) {
        self.inner.changes.touch(id);
    }
    pub fn schedules(&self) -> &Arc<dyn ScheduleSync> {
        &self.inner.ports.schedules
    }
    pub fn events(&self) -> &Arc<dyn EventSink> {
        &self.inner.ports.events
    }
    fn ports(&self) -> &Ports {
        &self.inner.ports
    }

    /// One version of a workflow and its plan, from the cache or the store.
    async fn workflow_and_plan(
        &self,
        org: &str,
        id: &str,
        version: u32,
    ) -> crate::EngineResult<(Arc<Workflow>, Arc<Plan>)> {
        let key = (org.to_string(), id.to_string(), version);
        if let Some(wf) = self
            .inner
            .versions
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(wf);
        }
        let wf = self
            .store()
            .get_workflow_version(org, id, version)
            .await?
            .ok_or_else(|| crate::EngineError::NotFound("Workflow not found".into()))?;
        Ok(self.remember(key, wf))
    }

    /// The workflow (version) an execution runs, with its plan: its workflow's version, or
    /// for a child running an inline workflow, that inline workflow.
    pub(crate) async fn workflow_and_plan_of(
        &self,
        exec: &crate::model::Execution,
    ) -> crate::EngineResult<(Arc<Workflow>, Arc<Plan>)> {
        self.version_or_inline(
            &exec.organization_id,
            &exec.workflow_id,
            exec.workflow_version,
            exec.inline_of.as_deref(),
        )
        .await
    }

    /// A workflow version and plan, or the inline workflow of one of its nodes.
    pub(crate) async fn version_or_inline(
        &self,
        org: &str,
        id: &str,
        version: u32,
        inline_of: Option<&str>,
    ) -> crate::EngineResult<(Arc<Workflow>, Arc<Plan>)> {
        let Some(node_id) = inline_of else {
            return self.workflow_and_plan(org, id, version).await;
        };
        let key = (
            (org.to_string(), id.to_string(), version),
            node_id.to_string(),
        );
        if let Some(found) = self
            .inner
            .inline
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(found);
        }
        let (parent, _) = self.workflow_and_plan(org, id, version).await?;
        let wf = self
            .inline_workflow(&parent, node_id)
            .ok_or_else(|| crate::EngineError::NotFound("Inline workflow not found".into()))?;
        let entry = (wf.clone(), Arc::new(Plan::new(&wf)));
        if let Ok(mut m) = self.inner.inline.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(key, entry.clone());
        }
        Ok(entry)
    }

    /// The cached plan of a workflow version the caller has just read (built and cached
    /// when it is not there yet).
    fn cached_version(&self, wf: &Workflow) -> CachedVersion {
        let key = (wf.organization_id.clone(), wf.id.clone(), wf.version);
        if let Some(found) = self
            .inner
            .versions
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return found;
        }
        self.remember(key, wf.clone())
    }

    fn remember(&self, key: VersionKey, wf: Workflow) -> CachedVersion {
        let entry = (Arc::new(Plan::new(&wf)), Arc::new(wf));
        let entry = (entry.1, entry.0);
        if let Ok(mut m) = self.inner.versions.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(key, entry.clone());
        }
        entry
    }
}
