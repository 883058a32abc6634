//! Test helpers for node unit tests: circuits and credentials in memory (all the storage a
//! node reaches), and a harness that builds a `NodeContext` around one node.

use super::{NodeContext, NodeOutcome, NodeServices, node_type};
use crate::config::EngineConfig;
use crate::model::*;
use crate::ports::*;
use crate::secrets::{SecretBox, Vault};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ORG: &str = "org-1";

/// Circuits and credentials in memory.
#[derive(Default)]
pub struct MemStore {
    pub circuits: Mutex<HashMap<String, CircuitState>>,
    /// Rate-limited calls counted, per `org/key`.
    pub calls: Mutex<HashMap<String, Vec<Timestamp>>>,
    pub credentials: Mutex<Vec<StoredCredential>>,
    /// The next `n` writes of a circuit lose their compare-and-set: another writer bumps the
    /// stored version first.
    pub inject_conflicts: AtomicU32,
    /// Every `get_circuit` fails with a backend error.
    pub fail_reads: std::sync::atomic::AtomicBool,
}

impl MemStore {
    pub fn circuit(&self, key: &str) -> Option<CircuitState> {
        self.circuits.lock().unwrap().get(key).cloned()
    }
}

#[async_trait]
impl CredentialStore for MemStore {
    async fn put_credential(&self, cred: &StoredCredential) -> StoreResult<()> {
        self.credentials.lock().unwrap().push(cred.clone());
        Ok(())
    }
    async fn get_credential(
        &self,
        org: &str,
        id_or_name: &str,
    ) -> StoreResult<Option<StoredCredential>> {
        let creds = self.credentials.lock().unwrap();
        let in_org = || creds.iter().filter(|c| c.credential.organization_id == org);
        Ok(in_org()
            .find(|c| c.credential.id == id_or_name)
            .or_else(|| in_org().find(|c| c.credential.name == id_or_name))
            .cloned())
    }
    async fn list_credentials(
        &self,
        _: &str,
        _: usize,
        _: Option<&str>,
    ) -> StoreResult<Page<Credential>> {
        Ok(Page {
            items: self
                .credentials
                .lock()
                .unwrap()
                .iter()
                .map(|c| c.credential.clone())
                .collect(),
            next_cursor: None,
        })
    }
    async fn delete_credential(&self, _: &str, id: &str) -> StoreResult<bool> {
        let mut creds = self.credentials.lock().unwrap();
        let before = creds.len();
        creds.retain(|c| c.credential.id != id);
        Ok(creds.len() < before)
    }
}

#[async_trait]
impl RateLimits for MemStore {
    async fn take_call(
        &self,
        org: &str,
        key: &str,
        limit: u32,
        period_ms: u64,
        now: Timestamp,
    ) -> StoreResult<Option<Timestamp>> {
        let mut calls = self.calls.lock().unwrap();
        let counted = calls.entry(format!("{org}/{key}")).or_default();
        match call_slot(counted, limit, period_ms, now) {
            Some(at) => Ok(Some(at)),
            None => {
                counted.push(now);
                Ok(None)
            }
        }
    }
}

#[async_trait]
impl CircuitStore for MemStore {
    async fn get_circuit(&self, org: &str, key: &str) -> StoreResult<Option<CircuitState>> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("injected read failure".into()));
        }
        Ok(self.circuit(&format!("{org}/{key}")))
    }
    async fn put_circuit(&self, org: &str, key: &str, state: &CircuitState) -> StoreResult<bool> {
        let key = &format!("{org}/{key}");
        let mut circuits = self.circuits.lock().unwrap();
        if self
            .inject_conflicts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let other = circuits.entry(key.to_string()).or_default();
            other.version += 1;
            return Ok(false);
        }
        let stored = circuits.get(key).map(|c| c.version).unwrap_or(0);
        if state.version != stored + 1 {
            return Ok(false);
        }
        circuits.insert(key.to_string(), state.clone());
        Ok(true)
    }
    async fn count_open_circuits(&self) -> StoreResult<Option<u64>> {
        let circuits = self.circuits.lock().unwrap();
        Ok(Some(
            circuits.values().filter(|c| c.opened_at.is_some()).count() as u64,
        ))
    }
    async fn list_circuits(
        &self,
        org: &str,
        _limit: usize,
        _cursor: Option<&str>,
    ) -> StoreResult<Page<CircuitRecord>> {
        let prefix = format!("{org}/");
        let mut items: Vec<CircuitRecord> = self
            .circuits
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(k, state)| {
                Some(CircuitRecord {
                    key: k.strip_prefix(&prefix)?.to_string(),
                    state: state.clone(),
                })
            })
            .collect();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Page {
            items,
            next_cursor: None,
        })
    }
}

pub fn start_time() -> Timestamp {
    Timestamp::parse("2026-01-01T10:00:00Z").unwrap()
}

/// One node of one execution, with services over a [`MemStore`] and a [`ManualClock`].
pub struct Harness {
    pub execution: Execution,
    pub node: Node,
    pub services: NodeServices,
    pub store: Arc<MemStore>,
    pub clock: Arc<ManualClock>,
    pub inputs: Vec<(String, Value)>,
    pub wait_until: Option<Timestamp>,
    pub timeout_ms: u64,
}

impl Harness {
    pub fn new(type_name: &str, params: Value) -> Self {
        let store = Arc::new(MemStore::default());
        let clock = Arc::new(ManualClock::new(start_time()));
        let config = EngineConfig {
            http_allow_private: true,
            ..EngineConfig::default()
        };
        let secrets = SecretBox::new(&[7u8; 32]);
        let services = NodeServices {
            http: super::ssrf::http_client(config.http_allow_private),
            circuits: store.clone(),
            rates: store.clone(),
            vault: Vault::new(secrets, store.clone()),
            clock: clock.clone(),
            config,
        };
        let node: Node = serde_json::from_value(json!({
            "id": "n1",
            "name": "Node one",
            "type": type_name,
            "parameters": params,
        }))
        .unwrap();
        let now = start_time();
        let execution = Execution {
            id: "exec-1".into(),
            workflow_id: "wf-1".into(),
            workflow_version: 1,
            user_id: "user-1".into(),
            organization_id: ORG.into(),
            status: ExecutionStatus::Running,
            mode: ExecutionMode::Manual,
            input_data: json!({"from": "trigger"}),
            output_data: None,
            started_at: Some(now),
            completed_at: None,
            duration: 0,
            error_message: None,
            error_details: None,
            retry_count: 0,
            retry_of: None,
            nodes_executed: 0,
            nodes_failed: 0,
            metrics: ExecutionMetrics::default(),
            deadline: now.plus(Duration::from_secs(300)),
            created_at: now,
            start_node_id: "n1".into(),
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
        };
        Self {
            execution,
            node,
            services,
            store,
            clock,
            inputs: Vec::new(),
            wait_until: None,
            timeout_ms: 5_000,
        }
    }

    /// Rebuilds the HTTP client and the setting with this `WECONNECT_HTTP_ALLOW_PRIVATE`.
    pub fn allow_private(mut self, allow: bool) -> Self {
        self.services.config.http_allow_private = allow;
        self.services.http = super::ssrf::http_client(allow);
        self
    }

    pub fn with_inputs(mut self, inputs: Vec<(&str, Value)>) -> Self {
        self.inputs = inputs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        self
    }

    /// Stores a credential of this organization, sealed with the harness's key.
    pub fn add_credential(&self, id: &str, name: &str, kind: CredentialType, data: Value) {
        let now = start_time();
        let cred = StoredCredential {
            credential: Credential {
                id: id.into(),
                organization_id: ORG.into(),
                name: name.into(),
                credential_type: kind,
                created_at: now,
                updated_at: now,
            },
            sealed_data: self.services.vault.secrets.seal(&data),
        };
        self.store.credentials.lock().unwrap().push(cred);
    }

    pub fn ctx(&self) -> NodeContext<'_> {
        NodeContext {
            execution: &self.execution,
            node: &self.node,
            attempt: 1,
            services: &self.services,
            wait_until: self.wait_until,
            timeout_ms: self.timeout_ms,
            inputs: &self.inputs,
        }
    }

    /// Runs the node with its parameters (taken as already resolved) and `input`.
    pub async fn run(&self, input: Value) -> NodeOutcome {
        let t = node_type(&self.node.node_type).expect("registered node type");
        t.run(&self.ctx(), &self.node.parameters, &input).await
    }
}

/// The output of an outcome that must be `Output`.
pub fn output(outcome: NodeOutcome) -> Value {
    match outcome {
        NodeOutcome::Output(v) => v,
        other => panic!("expected an output, got {other:?}"),
    }
}

/// The error of an outcome that must be `Failed`.
pub fn failed(outcome: NodeOutcome) -> NodeError {
    match outcome {
        NodeOutcome::Failed(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// `validate` of a registered type on JSON parameters.
pub fn validate(type_name: &str, params: Value) -> Result<(), String> {
    let t = node_type(type_name).expect("registered node type");
    t.validate(params.as_object().expect("an object"))
}
