//! The table's items as `serde` structs, written and read with `serde_dynamo`.
//!
//! Free-form JSON (workflow nodes, execution input and output, node outputs, log data) is
//! stored as JSON text (`S`): its size is then exactly its byte length (no DynamoDB
//! type overhead per nested value), it never hits DynamoDB's rules for nested maps, and no one
//! queries inside it. Scalars that conditions and indexes use are native attributes.

use super::keys;
use crate::model::*;
use crate::ports::{CircuitState, StoreError, StoreResult, WebhookRoute};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

/// DynamoDB's item size limit (400 KB).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Attribute names used in expressions (the serde names of the fields below).
pub mod attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const GSI1PK: &str = "gsi1pk";
    pub const GSI1SK: &str = "gsi1sk";
    pub const GSI2PK: &str = "gsi2pk";
    pub const GSI2SK: &str = "gsi2sk";
    pub const GSI3PK: &str = "gsi3pk";
    pub const GSI3SK: &str = "gsi3sk";
    pub const EXPIRES_AT: &str = "expiresAt";
    pub const STATUS: &str = "status";
    pub const VERSION: &str = "version";
    pub const ATTEMPTS: &str = "attempts";
    pub const READY: &str = "ready";
    pub const ARRIVED: &str = "arrived";
    pub const TAKEN_FROM: &str = "takenFrom";
    /// A wide join's parents (and taken connections) counted by its shard reports.
    pub const PARENTS_ARRIVED: &str = "parentsArrived";
    pub const PARENTS_TAKEN: &str = "parentsTaken";
    pub const LEASE_TOKEN: &str = "leaseToken";
    pub const LEASE_UNTIL: &str = "leaseUntil";
    pub const NOT_BEFORE: &str = "notBefore";
    pub const STARTED_AT: &str = "startedAt";
    pub const FINISHED_AT: &str = "finishedAt";
    pub const EXECUTION_ID: &str = "executionId";
    pub const NODE_ID: &str = "nodeId";
    pub const WORKFLOW_ID: &str = "workflowId";
    pub const ORGANIZATION_ID: &str = "organizationId";
    pub const EXECUTION_COUNT: &str = "executionCount";
    pub const LAST_EXECUTED_AT: &str = "lastExecutedAt";
    pub const USED_AT: &str = "usedAt";
    pub const MODE: &str = "mode";
    pub const LEVEL: &str = "level";
    /// A log batch's last id and its packed entries.
    pub const LAST_LOG: &str = "last";
    pub const LOG_BODY: &str = "b";
    pub const CREATED_AT: &str = "createdAt";
    pub const ID: &str = "id";
}

/// `#[serde(with = "json_text")]`: any value as its JSON text.
pub mod json_text {
    use serde::de::{DeserializeOwned, Error as _};
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(v).map_err(S::Error::custom)?;
        s.serialize_str(&text)
    }
    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        crate::limits::from_stored_json(&text).map_err(D::Error::custom)
    }
}

/// `#[serde(with = "packed")]`: a value as binary, its JSON packed (`adapters::pack`: a map
/// with long attribute names costs a few bytes). Reads what older items hold too: the value
/// as a map or as JSON text.
pub mod packed {
    use crate::adapters::pack::{pack_bytes, unpack};
    use serde::de::{DeserializeOwned, MapAccess, Visitor};
    use serde::ser::Error as _;
    use serde::{Deserializer, Serialize, Serializer};
    use std::fmt;
    use std::marker::PhantomData;

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(v).map_err(S::Error::custom)?;
        s.serialize_bytes(&pack_bytes(text))
    }

    struct Packed<T>(PhantomData<T>);

    impl<'de, T: DeserializeOwned> Visitor<'de> for Packed<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("packed JSON, JSON text or a map")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<T, E> {
            let text = unpack(v).map_err(E::custom)?;
            let text = std::str::from_utf8(&text).map_err(E::custom)?;
            crate::limits::from_stored_json(text).map_err(E::custom)
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<T, E> {
            self.visit_bytes(&v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            crate::limits::from_stored_json(v).map_err(E::custom)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        d.deserialize_any(Packed(PhantomData))
    }
}

/// `json_text` for optional values (use with `skip_serializing_if = "Option::is_none"`).
pub mod json_text_opt {
    use serde::de::{DeserializeOwned, Error as _};
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&serde_json::to_string(v).map_err(S::Error::custom)?),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => crate::limits::from_stored_json(&text)
                .map(Some)
                .map_err(D::Error::custom),
            None => Ok(None),
        }
    }
}

fn no_strings(v: &[String]) -> bool {
    v.is_empty()
}

// ---- size --------------------------------------------------------------------------------

fn number_size(n: &str) -> usize {
    let digits = n.chars().filter(|c| c.is_ascii_digit()).count();
    digits.div_ceil(2) + 1
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, x)| 1 + k.len() + value_size(x))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// An upper estimate of the item's size as DynamoDB counts it.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

// ---- conversions -------------------------------------------------------------------------

/// Serializes an item and refuses one DynamoDB could not store.
pub fn to_item<T: Serialize>(value: &T, what: &str) -> StoreResult<Item> {
    let item: Item = serde_dynamo::to_item(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode {what}: {e}")))?;
    let size = item_size(&item);
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge(format!(
            "{what} is {size} bytes; the limit is {MAX_ITEM_BYTES}"
        )));
    }
    Ok(item)
}

pub fn from_item<T: DeserializeOwned>(item: Item, what: &str) -> StoreResult<T> {
    serde_dynamo::from_item(item)
        .map_err(|e| StoreError::Backend(format!("cannot decode {what}: {e}")))
}

pub fn av<T: Serialize + ?Sized>(value: &T) -> StoreResult<AttributeValue> {
    serde_dynamo::to_attribute_value(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode a value: {e}")))
}

pub fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

pub fn string_of(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A whole number attribute (`N`).
pub fn number_of(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

pub fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(attr::PK.to_string(), s(pk)), (attr::SK.to_string(), s(sk))])
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

// ---- workflows ---------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowItem {
    pub pk: String,
    pub sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1sk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2sk: Option<String>,
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub status: WorkflowStatus,
    pub version: u32,
    #[serde(with = "json_text")]
    pub nodes: Vec<Node>,
    #[serde(with = "json_text")]
    pub connections: Vec<Connection>,
    #[serde(with = "json_text")]
    pub settings: WorkflowSettings,
    #[serde(default)]
    pub execution_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_executed_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The webhook ids this version routes (current item only).
    #[serde(
        with = "serde_dynamo::string_set",
        default,
        skip_serializing_if = "no_strings"
    )]
    pub hooks: Vec<String>,
}

/// Attributes of the current workflow item an update may remove.
pub const WORKFLOW_REMOVABLE: &[&str] = &["description", attr::GSI2PK, attr::GSI2SK, "hooks"];
/// Attributes an update never overwrites (counters bumped by executions).
pub const WORKFLOW_KEEP: &[&str] = &[
    attr::PK,
    attr::SK,
    attr::EXECUTION_COUNT,
    attr::LAST_EXECUTED_AT,
    attr::CREATED_AT,
];

pub fn is_scheduled(wf: &Workflow) -> bool {
    crate::triggers::is_scheduled(wf)
}

impl WorkflowItem {
    /// The current item (`W`), indexed for listing and, when active and scheduled, in the
    /// sparse scheduled view.
    pub fn current(wf: &Workflow, hooks: &[WebhookRoute]) -> Self {
        let scheduled = is_scheduled(wf);
        let mut hooks: Vec<String> = hooks.iter().map(|h| h.webhook_id.clone()).collect();
        hooks.sort();
        hooks.dedup();
        Self {
            pk: keys::workflow_pk(&wf.organization_id, &wf.id),
            sk: keys::WORKFLOW_SK.into(),
            gsi1pk: Some(keys::workflows_of(&wf.organization_id)),
            gsi1sk: Some(keys::time_sk(&wf.created_at.to_string(), &wf.id)),
            gsi2pk: scheduled.then(|| keys::SCHEDULED_PK.to_string()),
            gsi2sk: scheduled.then(|| keys::scheduled_sk(&wf.organization_id, &wf.id)),
            hooks,
            ..Self::version(wf)
        }
    }

    /// An immutable version item (`V#n`).
    pub fn version(wf: &Workflow) -> Self {
        Self {
            pk: keys::workflow_pk(&wf.organization_id, &wf.id),
            sk: keys::workflow_version_sk(wf.version),
            gsi1pk: None,
            gsi1sk: None,
            gsi2pk: None,
            gsi2sk: None,
            id: wf.id.clone(),
            organization_id: wf.organization_id.clone(),
            user_id: wf.user_id.clone(),
            name: wf.name.clone(),
            description: wf.description.clone(),
            status: wf.status,
            version: wf.version,
            nodes: wf.nodes.clone(),
            connections: wf.connections.clone(),
            settings: wf.settings.clone(),
            execution_count: wf.execution_count,
            last_executed_at: wf.last_executed_at,
            created_at: wf.created_at,
            updated_at: wf.updated_at,
            hooks: Vec::new(),
        }
    }

    pub fn into_workflow(self) -> Workflow {
        Workflow {
            id: self.id,
            organization_id: self.organization_id,
            user_id: self.user_id,
            name: self.name,
            description: self.description,
            status: self.status,
            version: self.version,
            nodes: self.nodes,
            connections: self.connections,
            settings: self.settings,
            execution_count: self.execution_count,
            last_executed_at: self.last_executed_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookItem {
    pub pk: String,
    pub sk: String,
    pub webhook_id: String,
    pub organization_id: String,
    pub workflow_id: String,
    pub node_id: String,
}

impl HookItem {
    pub fn new(route: &WebhookRoute) -> Self {
        Self {
            pk: keys::hook_pk(&route.webhook_id),
            sk: keys::HOOK_SK.into(),
            webhook_id: route.webhook_id.clone(),
            organization_id: route.organization_id.clone(),
            workflow_id: route.workflow_id.clone(),
            node_id: route.node_id.clone(),
        }
    }
    pub fn into_route(self) -> WebhookRoute {
        WebhookRoute {
            webhook_id: self.webhook_id,
            organization_id: self.organization_id,
            workflow_id: self.workflow_id,
            node_id: self.node_id,
        }
    }
}

// ---- executions --------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionItem {
    pub pk: String,
    pub sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1sk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2sk: Option<String>,
    /// Only while not terminal: the sparse index of unfinished executions by deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi3pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi3sk: Option<String>,
    /// TTL (epoch seconds), once terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub id: String,
    pub workflow_id: String,
    pub workflow_version: u32,
    pub user_id: String,
    pub organization_id: String,
    pub status: ExecutionStatus,
    pub mode: ExecutionMode,
    #[serde(with = "json_text")]
    pub input_data: Value,
    #[serde(
        with = "json_text_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub output_data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    #[serde(default)]
    pub duration: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(
        with = "json_text_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_details: Option<Value>,
    #[serde(default)]
    pub retry_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    #[serde(default)]
    pub nodes_executed: u32,
    #[serde(default)]
    pub nodes_failed: u32,
    /// Packed: its long attribute names made the item cross a 1 KB write unit.
    #[serde(default, with = "packed")]
    pub metrics: ExecutionMetrics,
    pub deadline: Timestamp,
    pub created_at: Timestamp,
    pub start_node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_node_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_index: Option<u32>,
    #[serde(default)]
    pub depth: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<PendingReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce_key: Option<String>,
    #[serde(default)]
    pub priority: Priority,
    /// Written only once false (the save policy `none` dropped the data).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub data_saved: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl ExecutionItem {
    /// `expires_at`: the TTL to set when the execution is terminal.
    pub fn new(e: &Execution, expires_at: i64) -> Self {
        let org = &e.organization_id;
        let created = e.created_at.to_string();
        let unfinished = !e.status.is_terminal();
        let unfinished_keys = keys::unfinished_item(e.deadline, org, &e.id);
        let mut metrics = e.metrics.clone();
        metrics.average_node_execution_time = finite(metrics.average_node_execution_time);
        metrics.cpu_usage = finite(metrics.cpu_usage);
        Self {
            pk: keys::execution_pk(org, &e.id),
            sk: keys::EXECUTION_SK.into(),
            gsi1pk: Some(keys::executions_of(org, keys::listing_shard(&e.id))),
            gsi1sk: Some(keys::time_sk(&created, &e.id)),
            gsi2pk: Some(keys::executions_of_workflow(
                org,
                &e.workflow_id,
                keys::listing_shard(&e.id),
            )),
            gsi2sk: Some(keys::time_sk(&created, &e.id)),
            gsi3pk: unfinished.then(|| unfinished_keys.0.clone()),
            gsi3sk: unfinished.then(|| unfinished_keys.1.clone()),
            expires_at: (!unfinished).then_some(expires_at),
            id: e.id.clone(),
            workflow_id: e.workflow_id.clone(),
            workflow_version: e.workflow_version,
            user_id: e.user_id.clone(),
            organization_id: e.organization_id.clone(),
            status: e.status,
            mode: e.mode,
            input_data: e.input_data.clone(),
            output_data: e.output_data.clone(),
            started_at: e.started_at,
            completed_at: e.completed_at,
            duration: e.duration,
            error_message: e.error_message.clone(),
            error_details: e.error_details.clone(),
            retry_count: e.retry_count,
            retry_of: e.retry_of.clone(),
            nodes_executed: e.nodes_executed,
            nodes_failed: e.nodes_failed,
            metrics,
            deadline: e.deadline,
            created_at: e.created_at,
            start_node_id: e.start_node_id.clone(),
            parent_execution_id: e.parent_execution_id.clone(),
            parent_node_id: e.parent_node_id.clone(),
            item_index: e.item_index,
            depth: e.depth,
            inline_of: e.inline_of.clone(),
            pending_reason: e.pending_reason,
            concurrency_key: e.concurrency_key.clone(),
            throttle_key: e.throttle_key.clone(),
            debounce_key: e.debounce_key.clone(),
            priority: e.priority,
            data_saved: e.data_saved,
        }
    }

    pub fn into_execution(self) -> Execution {
        Execution {
            id: self.id,
            workflow_id: self.workflow_id,
            workflow_version: self.workflow_version,
            user_id: self.user_id,
            organization_id: self.organization_id,
            status: self.status,
            mode: self.mode,
            input_data: self.input_data,
            output_data: self.output_data,
            started_at: self.started_at,
            completed_at: self.completed_at,
            duration: self.duration,
            error_message: self.error_message,
            error_details: self.error_details,
            retry_count: self.retry_count,
            retry_of: self.retry_of,
            nodes_executed: self.nodes_executed,
            nodes_failed: self.nodes_failed,
            metrics: self.metrics,
            deadline: self.deadline,
            created_at: self.created_at,
            start_node_id: self.start_node_id,
            parent_execution_id: self.parent_execution_id,
            parent_node_id: self.parent_node_id,
            item_index: self.item_index,
            depth: self.depth,
            inline_of: self.inline_of,
            pending_reason: self.pending_reason,
            concurrency_key: self.concurrency_key,
            throttle_key: self.throttle_key,
            debounce_key: self.debounce_key,
            priority: self.priority,
            data_saved: self.data_saved,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRunItem {
    pub pk: String,
    pub sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub execution_id: String,
    pub node_id: String,
    pub status: NodeRunStatus,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(
        with = "json_text_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub output: Option<Value>,
    #[serde(
        with = "json_text_opt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error: Option<NodeError>,
    /// Parents that arrived, while the run waits for them (`ADD` makes arrivals
    /// idempotent); a put of the run's later states leaves the set out.
    #[serde(
        with = "serde_dynamo::string_set",
        default,
        skip_serializing_if = "no_strings"
    )]
    pub arrived: Vec<String>,
    #[serde(
        with = "serde_dynamo::string_set",
        default,
        skip_serializing_if = "no_strings"
    )]
    pub taken_from: Vec<String>,
    /// A wide join (see `runs.rs`): its parents and taken connections, counted by shard;
    /// its sets then hold the shards that reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents_arrived: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents_taken: Option<u32>,
    #[serde(default)]
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingFor>,
}

impl NodeRunItem {
    pub fn new(org: &str, run: &NodeRun, expires_at: i64) -> Self {
        Self {
            pk: keys::execution_pk(org, &run.execution_id),
            sk: keys::run_sk(&run.node_id),
            expires_at: Some(expires_at),
            execution_id: run.execution_id.clone(),
            node_id: run.node_id.clone(),
            status: run.status,
            attempts: run.attempts,
            started_at: run.started_at,
            finished_at: run.finished_at,
            duration_ms: run.duration_ms,
            output: run.output.clone(),
            error: run.error.clone(),
            arrived: Vec::new(),
            taken_from: Vec::new(),
            parents_arrived: None,
            parents_taken: None,
            ready: run.ready,
            lease_token: run.lease_token.clone(),
            lease_until: run.lease_until,
            not_before: run.not_before,
            wait_until: run.wait_until,
            waiting: run.waiting.clone(),
        }
    }

    pub fn into_run(self) -> NodeRun {
        NodeRun {
            execution_id: self.execution_id,
            node_id: self.node_id,
            status: self.status,
            attempts: self.attempts,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_ms: self.duration_ms,
            output: self.output,
            error: self.error,
            arrived: self.parents_arrived.unwrap_or(self.arrived.len() as u32),
            taken: self.parents_taken.unwrap_or(self.taken_from.len() as u32),
            ready: self.ready,
            lease_token: self.lease_token,
            lease_until: self.lease_until,
            not_before: self.not_before,
            wait_until: self.wait_until,
            waiting: self.waiting,
        }
    }
}

pub fn run_from_item(item: Item) -> StoreResult<NodeRun> {
    from_item::<NodeRunItem>(item, "node run").map(NodeRunItem::into_run)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyItem {
    pub pk: String,
    pub sk: String,
    pub execution_id: String,
    pub used_at: Timestamp,
    pub expires_at: i64,
}

// ---- logs --------------------------------------------------------------------------------

// ---- credentials and circuits ------------------------------------------------------------

/// Stored twice: under `I#{id}` and under `N#{name}` (the name's uniqueness lock), so a
/// lookup by id or by name is one `BatchGetItem`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialItem {
    pub pk: String,
    pub sk: String,
    pub id: String,
    pub organization_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub credential_type: CredentialType,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub sealed_data: String,
}

impl CredentialItem {
    pub fn new(c: &StoredCredential, sk: String) -> Self {
        let m = &c.credential;
        Self {
            pk: keys::credentials_pk(&m.organization_id),
            sk,
            id: m.id.clone(),
            organization_id: m.organization_id.clone(),
            name: m.name.clone(),
            credential_type: m.credential_type,
            created_at: m.created_at,
            updated_at: m.updated_at,
            sealed_data: c.sealed_data.clone(),
        }
    }
    pub fn into_stored(self) -> StoredCredential {
        StoredCredential {
            credential: Credential {
                id: self.id,
                organization_id: self.organization_id,
                name: self.name,
                credential_type: self.credential_type,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            sealed_data: self.sealed_data,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitItem {
    pub pk: String,
    pub sk: String,
    /// `ByOrg`: the organization's circuits, by key.
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub key: String,
    #[serde(flatten)]
    pub state: CircuitState,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> NodeRun {
        let mut r = NodeRun::new("e1", "n1");
        r.output = Some(serde_json::json!({"x": [1, 2, {"": null}], "y": "z"}));
        r.error = Some(NodeError::new(ErrorKind::Http5xx, "boom"));
        r.lease_until = Some(Timestamp::from_millis(5));
        r
    }

    #[test]
    fn execution_metrics_are_packed_and_old_maps_still_read() {
        let who = crate::engine::Principal {
            user_id: "u".into(),
            organization_id: "o".into(),
        };
        let mut e = Execution::new(
            "e1".into(),
            &Workflow {
                id: "w".into(),
                organization_id: "o".into(),
                user_id: "u".into(),
                name: "w".into(),
                description: None,
                status: WorkflowStatus::Active,
                version: 1,
                nodes: Vec::new(),
                connections: Vec::new(),
                settings: Default::default(),
                execution_count: 0,
                last_executed_at: None,
                created_at: Timestamp::from_millis(0),
                updated_at: Timestamp::from_millis(0),
            },
            &who,
            ExecutionMode::Manual,
            serde_json::json!({}),
            "start".into(),
            Timestamp::from_millis(0),
            Timestamp::from_millis(1000),
        );
        e.metrics.successful_nodes = 7;
        e.metrics.average_node_execution_time = 12.5;
        let mut item = to_item(&ExecutionItem::new(&e, 1), "execution").unwrap();
        assert!(matches!(item.get("metrics"), Some(AttributeValue::B(_))));
        let back = from_item::<ExecutionItem>(item.clone(), "execution").unwrap();
        assert_eq!(back.into_execution(), e);
        // An item written before metrics were packed holds a map.
        item.insert(
            "metrics".into(),
            serde_dynamo::to_attribute_value(&e.metrics).unwrap(),
        );
        let old = from_item::<ExecutionItem>(item, "execution").unwrap();
        assert_eq!(old.metrics, e.metrics);
    }

    #[test]
    fn node_runs_round_trip_with_sparse_sets() {
        let mut item = to_item(&NodeRunItem::new("o", &run(), 9), "run").unwrap();
        assert!(matches!(item.get("output"), Some(AttributeValue::S(_))));
        assert!(!item.contains_key("notBefore"));
        assert_eq!(run_from_item(item.clone()).unwrap(), run());
        // The arrival sets `arrive` maintains read as counts.
        item.insert(
            "arrived".into(),
            AttributeValue::Ss(vec!["a".into(), "b".into()]),
        );
        item.insert("takenFrom".into(), AttributeValue::Ss(vec!["a".into()]));
        let read = run_from_item(item).unwrap();
        assert_eq!((read.arrived, read.taken), (2, 1));

        let empty = to_item(&NodeRunItem::new("o", &NodeRun::new("e", "n"), 9), "run").unwrap();
        assert!(!empty.contains_key("arrived") && !empty.contains_key("takenFrom"));
        assert_eq!(run_from_item(empty).unwrap(), NodeRun::new("e", "n"));
    }

    #[test]
    fn oversized_items_are_refused_before_any_write() {
        let mut r = run();
        r.output = Some(Value::String("x".repeat(MAX_ITEM_BYTES)));
        assert!(matches!(
            to_item(&NodeRunItem::new("o", &r, 1), "node run"),
            Err(StoreError::TooLarge(_))
        ));
        // 256 KiB of output fits.
        r.output = Some(Value::String("x".repeat(256 * 1024)));
        assert!(to_item(&NodeRunItem::new("o", &r, 1), "node run").is_ok());
    }

    #[test]
    fn size_estimate_counts_names_and_values() {
        let item: Item = HashMap::from([
            ("ab".to_string(), s("xyz")),
            ("n".to_string(), AttributeValue::N("12345".into())),
            ("l".to_string(), AttributeValue::L(vec![s("q")])),
        ]);
        assert_eq!(item_size(&item), (2 + 3) + (1 + 4) + (1 + 3 + 1 + 1));
    }
}
