//! The `aws-scale` model: the write units per second each DynamoDB partition would take under
//! a simulated load, computed from the DynamoDB adapter's own key builders and item types.
//!
//! One simulated second of the load of issue 12: 10,000 executions of a 10-node chain
//! (`trigger.manual` → 9 `data.set`), spread over 100 organizations of which one takes half
//! of the traffic (on one workflow: the worst case), plus the children of a `flow.map` over
//! 10,000 items finishing within 10 s (1,000 children per second, each a 2-node execution
//! whose end is counted in its parent node's tally).
//!
//! Every execution makes the writes the adapter makes for it (the same sequence the cost tool
//! traces on moto: creation, `running` and terminal transactions with the statistics and trend
//! counters, the workflow's counter, each node's claim and result, the log batch, a child's
//! count in its parent node's count shard, the parent's reservations of children). Each item is built
//! with the adapter's item types (`ExecutionItem`, `NodeRunItem`, `WorkflowItem`) or, for the
//! counters, keyed by the adapter's key builders at the sizes the cost tool measured, and is
//! priced by [`TableModel`] from template.yaml's key schema and projections: the table
//! partition and every index partition each write lands in. All of an execution's writes are
//! counted within the second it starts (a conservative choice for the per-execution
//! partitions: a 10-node chain takes longer than that).

use crate::moto;
use crate::units::{Item, TableModel};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use weconnect_engine::adapters::aws::dynamo::{items, keys, stats};
use weconnect_engine::engine::Principal;
use weconnect_engine::model::{
    Execution, ExecutionMode, ExecutionStatus, NodeRun, NodeRunStatus, Timestamp, TrendInterval,
    Workflow, WorkflowDefinition, WorkflowStatus, new_id,
};

/// DynamoDB's limit of one partition.
pub const PARTITION_WCU_LIMIT: f64 = 1000.0;

/// The simulated load.
#[derive(Debug, Clone)]
pub struct Load {
    pub executions_per_second: u32,
    pub chain_nodes: u32,
    pub organizations: u32,
    /// The share of all executions in the busiest organization.
    pub hot_share: f64,
    pub map_items: u32,
    pub map_seconds: u32,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            executions_per_second: 10_000,
            chain_nodes: 10,
            organizations: 100,
            hot_share: 0.5,
            map_items: 10_000,
            map_seconds: 10,
        }
    }
}

/// Write units per second of one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLoad {
    /// `table` or an index name.
    pub target: String,
    pub partition: String,
    /// What the partition holds, in words.
    pub holds: String,
    pub wcu_per_second: f64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub load: Load,
    /// Every partition written, the busiest first.
    pub partitions: Vec<PartitionLoad>,
    pub total_wcu_per_second: f64,
}

impl Report {
    pub fn max(&self) -> Option<&PartitionLoad> {
        self.partitions.first()
    }

    /// The busiest partitions of one target.
    pub fn top(&self, target: &str, n: usize) -> Vec<&PartitionLoad> {
        self.partitions
            .iter()
            .filter(|p| p.target == target)
            .take(n)
            .collect()
    }

    pub fn targets(&self) -> Vec<String> {
        let mut t: Vec<String> = self.partitions.iter().map(|p| p.target.clone()).collect();
        t.sort();
        t.dedup();
        t
    }
}

/// Sizes of counter items the adapter updates with `ADD` (measured by `aws-cost --trace`).
const STATS_ITEM_BYTES: usize = 63;
const TREND_ITEM_BYTES: usize = 114;
const TALLY_ITEM_BYTES: usize = 90;
const LOG_BATCH_BYTES: usize = 450;
const COUNTER_ITEM_BYTES: usize = 90;

struct Sim {
    table: TableModel,
    /// The last version of each item written, for the old image of the next write.
    items: HashMap<(String, String), Item>,
    units: HashMap<(String, String), f64>,
    now: Timestamp,
}

impl Sim {
    fn write(&mut self, new: Item, factor: f64) {
        let Some(key) = self.table.item_key(&new) else {
            return;
        };
        let old = self.items.get(&key);
        for w in self.table.partition_writes(old, Some(&new), factor) {
            *self.units.entry((w.target, w.partition)).or_default() += w.units;
        }
        self.items.insert(key, new);
    }

    /// An `UpdateItem` (`ADD` of counters) of the item at (pk, sk): in place once it exists,
    /// else created at `bytes`.
    fn update(&mut self, (pk, sk): (String, String), bytes: usize, factor: f64) {
        let item = self
            .items
            .get(&(pk.clone(), sk.clone()))
            .cloned()
            .unwrap_or_else(|| sized_item(&pk, &sk, bytes));
        self.write(item, factor);
    }

    /// Forgets the items of one partition (an execution that ended), to bound the memory.
    fn forget(&mut self, pk: &str) {
        self.items.retain(|(p, _), _| p != pk);
    }

    fn put<T: serde::Serialize>(&mut self, item: &T, factor: f64) {
        let item: Item = serde_dynamo::to_item(item).expect("an adapter item serializes");
        self.write(item, factor);
    }

    fn expires(&self) -> i64 {
        self.now.millis() / 1000 + 30 * 86_400
    }

    /// One execution's writes, as the adapter makes them (see `aws-cost --trace`).
    fn execution(&mut self, wf: &Workflow, exec: &mut Execution, child: Option<&ChildOf>) {
        let org = exec.organization_id.clone();
        let day = stats::day(exec.created_at);
        let stats_key = keys::stats_item(&org, &day, &exec.id);
        let expires = self.expires();
        // Creation: the execution and its statistics, in one transaction.
        self.put(&items::ExecutionItem::new(exec, expires), 2.0);
        self.update(stats_key.clone(), STATS_ITEM_BYTES, 2.0);
        // The workflow's executionCount / lastExecutedAt.
        self.update(
            keys::workflow_counter_item(&org, &wf.id, &exec.id),
            COUNTER_ITEM_BYTES,
            1.0,
        );
        // Running: the execution and its statistics.
        exec.status = ExecutionStatus::Running;
        exec.started_at = Some(self.now);
        self.put(&items::ExecutionItem::new(exec, expires), 2.0);
        self.update(stats_key.clone(), STATS_ITEM_BYTES, 2.0);
        // Each node: arrived and claimed (one write), then its result.
        let mut last = Value::Null;
        for (i, node) in wf.nodes.iter().enumerate() {
            let mut run = NodeRun::new(&exec.id, &node.id);
            run.status = NodeRunStatus::Running;
            run.attempts = 1;
            run.ready = true;
            run.started_at = Some(self.now);
            run.lease_token = Some(new_id());
            run.lease_until = Some(self.now.plus(Duration::from_secs(75)));
            self.put(&items::NodeRunItem::new(&org, &run, expires), 1.0);
            run.status = NodeRunStatus::Success;
            run.finished_at = Some(self.now);
            run.duration_ms = Some(1);
            run.lease_token = None;
            run.lease_until = None;
            last = json!({ "n": i });
            run.output = Some(last.clone());
            self.put(&items::NodeRunItem::new(&org, &run, expires), 1.0);
        }
        // Terminal: the execution, its statistics, the workflow's trends, a child's count.
        exec.status = ExecutionStatus::Success;
        exec.completed_at = Some(self.now);
        exec.duration = 1;
        exec.output_data = Some(last);
        exec.nodes_executed = wf.nodes.len() as u32;
        self.put(&items::ExecutionItem::new(exec, expires), 2.0);
        self.update(stats_key, STATS_ITEM_BYTES, 2.0);
        for interval in TrendInterval::ALL.iter().copied() {
            let key = keys::trend_item(
                &org,
                &wf.id,
                interval,
                interval.start_of(exec.created_at),
                &exec.id,
            );
            self.update(key, TREND_ITEM_BYTES, 2.0);
        }
        if let Some(parent) = child {
            self.update(parent.count_key(&exec.id), TALLY_ITEM_BYTES, 2.0);
        }
        // The logs of the whole inline chain: one batch.
        let exec_pk = keys::execution_pk(&org, &exec.id);
        self.update(
            (exec_pk.clone(), keys::log_sk(&new_id())),
            LOG_BATCH_BYTES,
            1.0,
        );
        self.forget(&exec_pk);
    }
}

/// The `flow.map` node its children report to.
struct ChildOf {
    organization_id: String,
    execution_id: String,
    node_id: String,
}

impl ChildOf {
    /// The tally item (reserved slots).
    fn tally_key(&self) -> (String, String) {
        (
            keys::execution_pk(&self.organization_id, &self.execution_id),
            keys::tally_sk(&self.node_id),
        )
    }

    /// The count item a child that ended adds to.
    fn count_key(&self, child_id: &str) -> (String, String) {
        keys::child_count_item(
            &self.organization_id,
            &self.execution_id,
            &self.node_id,
            child_id,
        )
    }
}

/// An item of `bytes` (at least its keys) at (pk, sk).
fn sized_item(pk: &str, sk: &str, bytes: usize) -> Item {
    let mut item = Item::new();
    item.insert("pk".into(), AttributeValue::S(pk.into()));
    item.insert("sk".into(), AttributeValue::S(sk.into()));
    let used = 4 + pk.len() + sk.len() + 3;
    item.insert(
        "pad".into(),
        AttributeValue::S("x".repeat(bytes.saturating_sub(used))),
    );
    item
}

fn workflow(org: &str, id: &str, nodes: u32, now: Timestamp) -> Workflow {
    let mut list = vec![json!({"id": "start", "name": "Start", "type": "trigger.manual"})];
    let mut connections = Vec::new();
    for i in 1..nodes {
        let prev = if i == 1 {
            "start".to_string()
        } else {
            format!("s{}", i - 1)
        };
        list.push(
            json!({"id": format!("s{i}"), "name": format!("s{i}"), "type": "data.set",
            "parameters": {"values": {"n": "{{ json.n + 1 }}"}}}),
        );
        connections.push(json!({"source": prev, "target": format!("s{i}")}));
    }
    let def: WorkflowDefinition = serde_json::from_value(
        json!({"name": format!("chain of {nodes}"), "nodes": list, "connections": connections}),
    )
    .expect("a chain definition");
    let who = Principal {
        user_id: "user".into(),
        organization_id: org.into(),
    };
    Workflow {
        status: WorkflowStatus::Active,
        ..Workflow::first_version(id.into(), &who, def, now)
    }
}

/// What a partition key holds, in words (for the printout).
fn holds(target: &str, partition: &str) -> String {
    let parts: Vec<&str> = partition.split('#').collect();
    let kind = match (target, parts.as_slice()) {
        ("table", ["O", _, "W", _, "N", _]) => "execution counter shard of a workflow",
        ("table", ["O", _, "W", ..]) => "workflow item and versions",
        ("table", ["O", _, "E", _, "T", ..]) => "ended children's count shard of a map node",
        ("table", ["O", _, "E", ..]) => "one execution (item, runs, logs, tallies)",
        ("table", ["O", _, "S", ..]) => "statistics counters of an organization",
        ("table", ["O", _, "T", ..]) => "trend counters of a workflow",
        (_, ["O", _, "EX", ..]) => "executions of an organization",
        (_, ["O", _, "WE", ..]) => "executions of a workflow",
        (_, ["O", _, "WF", ..]) => "workflows of an organization",
        (_, [p, ..]) if p.starts_with("UNFINISHED") => "unfinished executions",
        _ => "other",
    };
    kind.to_string()
}

/// Runs one simulated second of `load`.
pub fn run(load: &Load) -> Report {
    let now = Timestamp::parse("2026-12-03T10:00:00.000Z").expect("a timestamp");
    let table = TableModel::new(&moto::table_definition());
    let mut sim = Sim {
        table,
        items: HashMap::new(),
        units: HashMap::new(),
        now,
    };
    let orgs: Vec<String> = (0..load.organizations.max(1))
        .map(|i| format!("org-{i:03}"))
        .collect();
    let workflows: Vec<Workflow> = orgs
        .iter()
        .map(|org| workflow(org, "wf-chain", load.chain_nodes, now))
        .collect();
    for wf in &workflows {
        let item = items::WorkflowItem::current(wf, &[]);
        let item: Item = serde_dynamo::to_item(&item).expect("a workflow item");
        sim.items
            .insert(sim.table.item_key(&item).expect("a workflow key"), item);
    }
    let deadline = now.plus(Duration::from_secs(300));
    let start = |wf: &Workflow| {
        let who = Principal {
            user_id: "user".into(),
            organization_id: wf.organization_id.clone(),
        };
        let input = json!({"n": 0});
        Execution::new(
            new_id(),
            wf,
            &who,
            ExecutionMode::Webhook,
            input,
            "start".into(),
            now,
            deadline,
        )
    };
    // The chains: every other one in the busiest organization (hot_share), the rest spread.
    let hot_every = (1.0 / load.hot_share.clamp(0.01, 1.0)).round().max(1.0) as u32;
    let others = (orgs.len() as u32).saturating_sub(1).max(1);
    let mut other = 0u32;
    for i in 0..load.executions_per_second {
        let wf = if i % hot_every == 0 || orgs.len() == 1 {
            &workflows[0]
        } else {
            other += 1;
            &workflows[1 + (other % others) as usize]
        };
        let mut exec = start(wf);
        sim.execution(wf, &mut exec, None);
    }
    // The map's children of one second, in the busiest organization.
    let child_wf = workflow(&orgs[0], "wf-child", 2, now);
    let item: Item = serde_dynamo::to_item(items::WorkflowItem::current(&child_wf, &[]))
        .expect("a workflow item");
    sim.items
        .insert(sim.table.item_key(&item).expect("a key"), item);
    let parent = ChildOf {
        organization_id: orgs[0].clone(),
        execution_id: new_id(),
        node_id: "map".into(),
    };
    let per_second = load.map_items / load.map_seconds.max(1);
    for i in 0..per_second {
        // The parent reserves children 64 at a time (a conditional update of its tally).
        if i % 64 == 0 {
            sim.update(parent.tally_key(), TALLY_ITEM_BYTES, 1.0);
        }
        let mut exec = start(&child_wf);
        exec.parent_execution_id = Some(parent.execution_id.clone());
        exec.parent_node_id = Some(parent.node_id.clone());
        exec.item_index = Some(i);
        exec.depth = 1;
        sim.execution(&child_wf, &mut exec, Some(&parent));
    }
    let mut partitions: Vec<PartitionLoad> = sim
        .units
        .into_iter()
        .map(|((target, partition), units)| PartitionLoad {
            holds: holds(&target, &partition),
            target,
            partition,
            wcu_per_second: units,
        })
        .collect();
    partitions.sort_by(|a, b| {
        b.wcu_per_second
            .total_cmp(&a.wcu_per_second)
            .then_with(|| a.partition.cmp(&b.partition))
    });
    let total_wcu_per_second = partitions.iter().map(|p| p.wcu_per_second).sum();
    Report {
        load: load.clone(),
        partitions,
        total_wcu_per_second,
    }
}
