//! Key layout of the single table (see the module documentation of [`super`]).

/// The component [`esc`] escaped.
pub fn unesc(part: &str) -> String {
    if part.contains('%') {
        part.replace("%23", "#").replace("%25", "%")
    } else {
        part.to_string()
    }
}

/// Escapes the key separator in a key component, so no component can forge another item's key.
pub fn esc(part: &str) -> String {
    if part.contains(['#', '%']) {
        part.replace('%', "%25").replace('#', "%23")
    } else {
        part.to_string()
    }
}

pub const GSI_BY_ORG: &str = "ByOrg";
pub const GSI_BY_PARENT: &str = "ByParent";
pub const GSI_UNFINISHED: &str = "Unfinished";

pub const WORKFLOW_SK: &str = "W";
pub const HOOK_SK: &str = "H";
pub const EXECUTION_SK: &str = "E";
pub const IDEMPOTENCY_SK: &str = "I";
pub const CIRCUIT_SK: &str = "C";
/// Partition key of the sparse "scheduled workflows" view (index `ByParent`).
pub const SCHEDULED_PK: &str = "SCHEDULED";
/// Shards of the sparse "unfinished executions" index: an execution is in the shard of its
/// id, so 10,000 executions/s (an insert, a status change and a removal each, ~1 unit with
/// the index's narrow projection) put ~500 units/s on each partition (see `aws-scale`).
pub const UNFINISHED_SHARDS: u32 = 64;

/// Partition of one shard of the unfinished index.
pub fn unfinished_pk(shard: u32) -> String {
    format!("UNFINISHED#{shard:02}")
}

/// Sort key in the unfinished index: by deadline (`move_deadline` rewrites it).
pub fn unfinished_sk(deadline: crate::model::Timestamp, org: &str, id: &str) -> String {
    format!("{deadline}#{}#{}", esc(org), esc(id))
}

/// The unfinished index's (partition, sort key) of a not yet terminal execution.
pub fn unfinished_item(deadline: crate::model::Timestamp, org: &str, id: &str) -> (String, String) {
    (
        unfinished_pk(shard_hash(id) % UNFINISHED_SHARDS),
        unfinished_sk(deadline, org, id),
    )
}
/// Node runs: `E#N#{nodeId}`; the execution item (`E`) and its runs share the prefix `E`, so
/// one `begins_with(sk, "E")` Query reads the state without the logs (`L#…`).
pub const RUN_PREFIX: &str = "E#N#";
/// A wide join's arrivals, one set of parents per shard (see `runs.rs`): `J#{child}#{shard}`,
/// outside the `E` prefix the execution's state is read with.
pub fn join_shard_sk(child: &str, shard: usize) -> String {
    format!("J#{}#{shard}", esc(child))
}
/// Log batches: `L#{first id}` (see `adapters::log_batch`).
pub const LOG_PREFIX: &str = "L#";
/// Sorts after every log batch key (`$` follows `#`).
pub const LOG_END: &str = "L$";

pub fn workflow_pk(org: &str, id: &str) -> String {
    format!("O#{}#W#{}", esc(org), esc(id))
}
/// A shard of a workflow's execution counter (`executionCount`, `lastExecutedAt`), its own
/// partition: an execution adds to the shard of its id, so a workflow started 5,000 times a
/// second puts ~630 units/s on each of [`WORKFLOW_COUNTER_SHARDS`] partitions instead of
/// rewriting its (multi-KB, indexed) workflow item each time (see `aws-scale`).
pub fn workflow_counter_pk(org: &str, id: &str, shard: u32) -> String {
    format!("O#{}#W#{}#N#{shard:02}", esc(org), esc(id))
}
pub const WORKFLOW_COUNTER_SK: &str = "N";
pub const WORKFLOW_COUNTER_SHARDS: u32 = 8;

/// The counter item (pk, sk) of `workflow_id` an execution adds to.
pub fn workflow_counter_item(org: &str, workflow_id: &str, execution_id: &str) -> (String, String) {
    let shard = shard_hash(execution_id) % WORKFLOW_COUNTER_SHARDS;
    (
        workflow_counter_pk(org, workflow_id, shard),
        WORKFLOW_COUNTER_SK.into(),
    )
}

pub fn workflow_version_sk(version: u32) -> String {
    format!("V#{version:010}")
}
/// `ByOrg` partition of an organization's workflows.
pub fn workflows_of(org: &str) -> String {
    format!("O#{}#WF", esc(org))
}
pub fn scheduled_sk(org: &str, id: &str) -> String {
    format!("{}#{}", esc(org), esc(id))
}
pub fn hook_pk(webhook_id: &str) -> String {
    format!("H#{}", esc(webhook_id))
}
pub fn execution_pk(org: &str, id: &str) -> String {
    format!("O#{}#E#{}", esc(org), esc(id))
}
/// A node's child tally (SPEC §8), beside its run.
pub fn tally_sk(node_id: &str) -> String {
    format!("E#T#{}", esc(node_id))
}

/// Shards of the count of a node's children that ended: each child's terminal transaction
/// adds to the shard of its id, in a partition of its own (not the parent execution's), so a
/// `flow.map` whose 1,000 children end every second (2 units each, in a transaction) puts
/// ~500 units/s on each instead of 2,000 on the parent's partition (see `aws-scale`).
pub const CHILD_COUNT_SHARDS: u32 = 4;
pub const CHILD_COUNT_SK: &str = "T";

/// Partition of one shard of a node's count of ended children.
pub fn child_count_pk(org: &str, parent_id: &str, node_id: &str, shard: u32) -> String {
    format!(
        "O#{}#E#{}#T#{}#{shard}",
        esc(org),
        esc(parent_id),
        esc(node_id)
    )
}

/// The count item (pk, sk) a child adds to when it ends.
pub fn child_count_item(
    org: &str,
    parent_id: &str,
    node_id: &str,
    child_id: &str,
) -> (String, String) {
    let shard = shard_hash(child_id) % CHILD_COUNT_SHARDS;
    (
        child_count_pk(org, parent_id, node_id, shard),
        CHILD_COUNT_SK.into(),
    )
}

/// A node's callback, beside its run.
pub fn callback_sk(node_id: &str) -> String {
    format!("E#B#{}", esc(node_id))
}

pub fn run_sk(node_id: &str) -> String {
    format!("{RUN_PREFIX}{}", esc(node_id))
}
pub fn log_sk(log_id: &str) -> String {
    format!("{LOG_PREFIX}{}", esc(log_id))
}
/// Shards of an organization's and of a workflow's execution listings: an execution is in
/// the shard of its id, so an organization of 6,000 executions/s (an insert and two status
/// changes each, ~1 unit with the indexes' narrow projection) puts ~560 units/s on each
/// partition (see `aws-scale`). A listing merges the shards by creation time.
pub const LISTING_SHARDS: u32 = 32;

/// The listing shard of an execution.
pub fn listing_shard(execution_id: &str) -> u32 {
    shard_hash(execution_id) % LISTING_SHARDS
}
/// `ByOrg` partition of one shard of an organization's executions.
pub fn executions_of(org: &str, shard: u32) -> String {
    format!("O#{}#EX#{shard:02}", esc(org))
}
/// `ByParent` partition of one shard of a workflow's executions.
pub fn executions_of_workflow(org: &str, workflow_id: &str, shard: u32) -> String {
    format!("O#{}#WE#{}#{shard:02}", esc(org), esc(workflow_id))
}
/// Sort key of time-ordered listings: fixed-width RFC 3339 text, then the id.
pub fn time_sk(at: &str, id: &str) -> String {
    format!("{at}#{}", esc(id))
}
pub fn idempotency_pk(org: &str, key: &str) -> String {
    format!("O#{}#I#{}", esc(org), esc(key))
}
pub fn credentials_pk(org: &str) -> String {
    format!("O#{}#CR", esc(org))
}
pub fn credential_id_sk(id: &str) -> String {
    format!("I#{}", esc(id))
}
pub fn credential_name_sk(name: &str) -> String {
    format!("N#{}", esc(name))
}
pub fn circuit_pk(org: &str, key: &str) -> String {
    format!("C#{}#{}", esc(org), esc(key))
}
/// A concurrency gate's partition (see `gates.rs`).
pub fn gate_pk(org: &str, workflow_id: &str, key: &str) -> String {
    format!("O#{}#G#{}#{}", esc(org), esc(workflow_id), esc(key))
}
/// A throttle's item (see `gates.rs`).
pub fn throttle_pk(org: &str, workflow_id: &str, key: &str) -> String {
    format!("O#{}#TH#{}#{}", esc(org), esc(workflow_id), esc(key))
}
/// A debounce's item (see `gates.rs`).
pub fn debounce_pk(org: &str, workflow_id: &str, key: &str) -> String {
    format!("O#{}#DB#{}#{}", esc(org), esc(workflow_id), esc(key))
}
/// The organization's circuits in the `ByOrg` index, sorted by key.
pub fn circuits_of(org: &str) -> String {
    format!("O#{}#C", esc(org))
}
/// Partition of one shard of an organization's statistics counters: the shard is part of the
/// partition key, so one busy organization's counters spread over [`STATS_SHARDS`]
/// partitions (each under DynamoDB's 1,000 write units/s) instead of one.
pub fn stats_pk(org: &str, shard: u32) -> String {
    format!("O#{}#S#{shard:02}", esc(org))
}
/// An execution's three transitions each add to its shard, inside a transaction (2 units):
/// 64 shards keep an organization of 6,000 executions/s at ~560 units/s per partition (see
/// `aws-scale`); a statistics read queries every shard.
pub const STATS_SHARDS: u32 = 64;

pub fn stats_sk(day: &str) -> String {
    format!("D#{day}")
}

/// The statistics counters item (pk, sk) an execution of `org` created on `day` counts in.
pub fn stats_item(org: &str, day: &str, execution_id: &str) -> (String, String) {
    (
        stats_pk(org, shard_hash(execution_id) % STATS_SHARDS),
        stats_sk(day),
    )
}

/// Bounds of a Query over the counters of days `from..=to` (`YYYY-MM-DD`) in one shard.
pub fn stats_range(from: &str, to: &str) -> (String, String) {
    (format!("D#{from}"), format!("D#{to}"))
}

/// Trend counters of one workflow, one partition per shard (`O#{org}#T#{workflow}#{shard}`):
/// per hour and per day of `createdAt`, an execution counting in the shard of its id.
pub fn trends_pk(org: &str, workflow_id: &str, shard: u32) -> String {
    format!("O#{}#T#{}#{shard:02}", esc(org), esc(workflow_id))
}
/// A terminal execution adds to two items (hour, day) in a transaction: 32 shards keep a
/// workflow of 5,000 executions/s at ~630 units/s per partition (see `aws-scale`).
pub const TREND_SHARDS: u32 = 32;

fn interval_letter(interval: crate::model::TrendInterval) -> char {
    match interval {
        crate::model::TrendInterval::Hour => 'H',
        crate::model::TrendInterval::Day => 'D',
    }
}

/// `{H|D}#{start}`: the start is an RFC 3339 timestamp, so keys sort in time order.
pub fn trend_sk(interval: crate::model::TrendInterval, start: crate::model::Timestamp) -> String {
    format!("{}#{start}", interval_letter(interval))
}

/// The trend counters item (pk, sk) of `workflow_id` an execution counts in, for the
/// interval starting at `start`.
pub fn trend_item(
    org: &str,
    workflow_id: &str,
    interval: crate::model::TrendInterval,
    start: crate::model::Timestamp,
    execution_id: &str,
) -> (String, String) {
    let shard = shard_hash(execution_id) % TREND_SHARDS;
    (
        trends_pk(org, workflow_id, shard),
        trend_sk(interval, start),
    )
}

/// Bounds of a Query over the trend items of `interval` starting in `from..=to`.
pub fn trend_range(
    interval: crate::model::TrendInterval,
    from: crate::model::Timestamp,
    to: crate::model::Timestamp,
) -> (String, String) {
    let letter = interval_letter(interval);
    (format!("{letter}#{from}"), format!("{letter}#{to}"))
}

/// The interval start written in a trend item's sort key.
pub fn trend_start_of_sk(sk: &str) -> Option<crate::model::Timestamp> {
    sk.split('#')
        .nth(1)
        .and_then(crate::model::Timestamp::parse)
}

/// A stable hash of an execution id (FNV-1a), for choosing its shards.
pub fn shard_hash(execution_id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in execution_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_cannot_collide() {
        assert_eq!(esc("a#b%c"), "a%23b%25c");
        assert_ne!(execution_pk("a#E#b", "c"), execution_pk("a", "b#E#c"));
        assert!(run_sk("x").starts_with('E') && !log_sk("x").starts_with('E'));
        assert!(EXECUTION_SK < RUN_PREFIX);
        let (lo, hi) = stats_range("2026-01-01", "2026-01-02");
        for day in ["2026-01-01", "2026-01-02"] {
            let sk = stats_sk(day);
            assert!(lo <= sk && sk <= hi, "{sk}");
        }
        assert!(stats_sk("2026-01-03") > hi && stats_sk("2025-12-31") < lo);
        let (pk, _) = stats_item("o", "2026-01-01", "abc");
        assert!((0..STATS_SHARDS).any(|shard| stats_pk("o", shard) == pk));
    }
}
