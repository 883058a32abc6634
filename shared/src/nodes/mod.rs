//! Node types: one file per type, one line per type in [`registry`].
//!
//! A node receives its parameters with every expression already resolved, and its input.
//! Adding a type = one file here + one line in `registry()`.

pub mod children;
mod data_set;
mod flow_fail;
mod flow_map;
mod flow_merge;
mod flow_noop;
mod flow_subworkflow;
mod flow_wait;
pub mod flow_wait_for_callback;
pub mod http_request;
mod logic_if;
mod logic_switch;
mod params;
pub mod triggers;

#[cfg(test)]
mod test_support;

pub mod circuit;
pub mod schedule;
pub mod ssrf;

use crate::config::EngineConfig;
use crate::model::{Execution, Node, Timestamp};
use crate::ports::{CircuitStore, Clock, RateLimits};
use crate::secrets::Vault;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

pub use crate::model::NodeOutcome;

/// Shared services a node may use. Built once per process.
#[derive(Clone)]
pub struct NodeServices {
    /// Outbound HTTP with the SSRF guard (see [`ssrf`]).
    pub http: reqwest::Client,
    /// Circuit state (credentials come through the vault).
    pub circuits: Arc<dyn CircuitStore>,
    /// Rate limits of outbound calls (`http.request` `rateLimit`).
    pub rates: Arc<dyn RateLimits>,
    pub vault: Vault,
    pub clock: Arc<dyn Clock>,
    pub config: EngineConfig,
}

/// One run of one node.
pub struct NodeContext<'a> {
    pub execution: &'a Execution,
    pub node: &'a Node,
    /// 1-based attempt number.
    pub attempt: u32,
    pub services: &'a NodeServices,
    /// `flow.wait`: the end of the wait fixed by an earlier run of this node, if any.
    pub wait_until: Option<Timestamp>,
    /// Node timeout in ms (the node's `timeoutMs` or the configured default).
    pub timeout_ms: u64,
    /// The outputs of the parents whose connection here was taken, in connection order
    /// (`flow.merge` combines them; `input` is the first of them).
    pub inputs: &'a [(String, Value)],
}

#[async_trait]
pub trait NodeType: Send + Sync + 'static {
    /// The `type` string, e.g. `"http.request"`.
    fn type_name(&self) -> &'static str;
    /// Trigger types start executions and have no parents.
    fn is_trigger(&self) -> bool {
        false
    }
    /// Is this a condition (may have `true`/`false` connections)?
    fn is_condition(&self) -> bool {
        false
    }
    /// Static checks on the parameters as written (expressions unresolved): required
    /// parameters present, shapes right. The message names the parameter.
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        let _ = params;
        Ok(())
    }
    /// Parameters passed to the node as written, not resolved (an inline child workflow,
    /// whose expressions are the child's).
    fn raw_parameters(&self) -> &'static [&'static str] {
        &[]
    }
    /// A node that waited (`StartChildren`, `AwaitCallback`) resumed with what it waited
    /// for: its outcome.
    fn resume(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
        resumed: crate::model::Resumed,
    ) -> NodeOutcome {
        let _ = (ctx, params, input, resumed);
        params::config_error(format!("{} does not wait", self.type_name()))
    }
    /// Runs the node with resolved parameters.
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome;
}

/// Every node type, by type name.
pub fn registry() -> &'static BTreeMap<&'static str, Box<dyn NodeType>> {
    static REGISTRY: OnceLock<BTreeMap<&'static str, Box<dyn NodeType>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let types: Vec<Box<dyn NodeType>> = vec![
            Box::new(triggers::ManualTrigger),
            Box::new(triggers::WebhookTrigger),
            Box::new(triggers::ScheduleTrigger),
            Box::new(triggers::ErrorTrigger),
            Box::new(http_request::HttpRequest),
            Box::new(logic_if::If),
            Box::new(logic_switch::Switch),
            Box::new(data_set::Set),
            Box::new(flow_merge::Merge),
            Box::new(flow_wait::Wait),
            Box::new(flow_fail::Fail),
            Box::new(flow_noop::Noop),
            Box::new(flow_map::MapNode),
            Box::new(flow_subworkflow::Subworkflow),
            Box::new(flow_wait_for_callback::WaitForCallback),
        ];
        types.into_iter().map(|t| (t.type_name(), t)).collect()
    })
}

pub fn node_type(name: &str) -> Option<&'static dyn NodeType> {
    registry().get(name).map(|b| b.as_ref())
}
