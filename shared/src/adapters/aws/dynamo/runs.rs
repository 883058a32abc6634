//! Node runs: the execution protocol's conditional writes (claim, record, arrive).

use super::expr::Expr;
use super::items::{Item, NodeRunItem, attr, av, key, run_from_item, s, string_of, to_item};
use super::{DynamoStore, backend, keys};
use crate::model::*;
use crate::ports::*;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use std::time::Duration;

/// Unfinished runs expire a day after the retention from their last write, finished ones
/// `retention` after they finished.
const UNFINISHED_GRACE: Duration = Duration::from_secs(86_400);

/// The most parents a join keeps in one set on its run; wider joins shard their arrivals.
const JOIN_SET_LIMIT: usize = 64;

/// The number of strings in a string-set attribute (absent: 0).
fn set_len(item: &Item, name: &str) -> usize {
    match item.get(name) {
        Some(AttributeValue::Ss(v)) => v.len(),
        _ => 0,
    }
}

fn ss(values: &[&str]) -> AttributeValue {
    AttributeValue::Ss(values.iter().map(|v| v.to_string()).collect())
}

fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}

fn num(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// An `UpdateItem` outcome: the new item, or the stored one when the condition failed.
enum Updated {
    Done(Item),
    ConditionFailed(Option<Item>),
}

impl DynamoStore {
    fn run_expiry(&self, run: &NodeRun) -> i64 {
        match (run.status.is_finished(), run.finished_at) {
            (true, Some(at)) => self.expiry(at),
            (true, None) => self.expiry_from_now(Duration::ZERO),
            (false, _) => self.expiry_from_now(UNFINISHED_GRACE),
        }
    }

    async fn update_run(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        update: String,
        condition: Option<String>,
        e: Expr,
    ) -> StoreResult<Updated> {
        let sk = keys::run_sk(node_id);
        self.update_in_execution(org, execution_id, sk, update, condition, e)
            .await
    }

    /// A conditional update of the item `sk` in the execution's partition, returning the new
    /// item, or the stored one when the condition failed.
    async fn update_in_execution(
        &self,
        org: &str,
        execution_id: &str,
        sk: String,
        update: String,
        condition: Option<String>,
        e: Expr,
    ) -> StoreResult<Updated> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::execution_pk(org, execution_id), sk)))
            .update_expression(update)
            .set_condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .set_return_consumed_capacity(self.capacity.clone())
            .send()
            .await;
        match result {
            Ok(out) => Ok(Updated::Done(out.attributes.unwrap_or_default())),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Ok(Updated::ConditionFailed(c.item().cloned()))
                }
                _ => Err(backend(err)),
            },
        }
    }

    pub(super) async fn put_node_runs_(&self, org: &str, runs: &[NodeRun]) -> StoreResult<()> {
        let mut puts = Vec::with_capacity(runs.len());
        for run in runs {
            let item = to_item(
                &NodeRunItem::new(org, run, self.run_expiry(run)),
                "node run",
            )?;
            puts.push(async move {
                let mut e = Expr::new();
                let cond = format!("attribute_not_exists({})", e.n(attr::PK));
                self.put_if(item, cond, &e).await
            });
        }
        // A run already there is kept: creating is idempotent.
        for created in futures::future::join_all(puts).await {
            created?;
        }
        Ok(())
    }

    /// `SET` clauses that claim a run (status running, attempts + 1, lease).
    fn claim_clauses(e: &mut Expr, claim: &Claim) -> StoreResult<Vec<String>> {
        Ok(vec![
            format!(
                "{} = {}",
                e.n(attr::STATUS),
                e.v(av(&NodeRunStatus::Running)?)
            ),
            format!(
                "{a} = if_not_exists({a}, {zero}) + {one}",
                a = e.n(attr::ATTEMPTS),
                zero = e.v(num(0)),
                one = e.v(num(1))
            ),
            format!("{} = {}", e.n(attr::LEASE_TOKEN), e.v(s(&claim.token))),
            format!(
                "{} = {}",
                e.n(attr::LEASE_UNTIL),
                e.v(s(claim.lease_until.to_string()))
            ),
            format!(
                "{a} = if_not_exists({a}, {now})",
                a = e.n(attr::STARTED_AT),
                now = e.v(s(claim.now.to_string()))
            ),
        ])
    }

    pub(super) async fn claim_node_(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        claim: &Claim,
    ) -> StoreResult<ClaimOutcome> {
        let mut e = Expr::new();
        let mut sets = Self::claim_clauses(&mut e, claim)?;
        sets.push(format!(
            "{} = {}",
            e.n(attr::EXPIRES_AT),
            e.v(num(self.expiry_from_now(UNFINISHED_GRACE)))
        ));
        let now = e.v(s(claim.now.to_string()));
        // `NodeRun::claim` as a condition; when it fails, the stored run is classified by
        // `NodeRun::claim` itself.
        let cond = format!(
            "({st} = {pending} AND {ready} = {yes} \
             AND (attribute_not_exists({nb}) OR {nb} <= {now})) \
             OR ({st} = {running} AND (attribute_not_exists({lu}) OR {lu} <= {now}))",
            st = e.n(attr::STATUS),
            pending = e.v(av(&NodeRunStatus::Pending)?),
            running = e.v(av(&NodeRunStatus::Running)?),
            ready = e.n(attr::READY),
            yes = e.v(b(true)),
            nb = e.n(attr::NOT_BEFORE),
            lu = e.n(attr::LEASE_UNTIL),
        );
        let update = format!("SET {}", sets.join(", "));
        match self
            .update_run(org, execution_id, node_id, update, Some(cond), e)
            .await?
        {
            Updated::Done(item) => Ok(ClaimOutcome::Claimed(run_from_item(item)?)),
            Updated::ConditionFailed(None) => Ok(ClaimOutcome::NotReady),
            Updated::ConditionFailed(Some(item)) => {
                let run = run_from_item(item)?;
                Ok(match NodeRun::claim(Some(&run), claim) {
                    // A waiting run resumed: claimed by a write of its own.
                    ClaimOutcome::Claimed(_) if run.status == NodeRunStatus::Waiting => {
                        self.claim_waiting(org, execution_id, node_id, claim)
                            .await?
                    }
                    // The condition and the decision agree; should they not, leave it.
                    ClaimOutcome::Claimed(_) => ClaimOutcome::NotReady,
                    other => other,
                })
            }
        }
    }

    /// Claims a `waiting` run to resume it (the attempt goes on: `attempts` unchanged).
    async fn claim_waiting(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        claim: &Claim,
    ) -> StoreResult<ClaimOutcome> {
        let mut e = Expr::new();
        let sets = [
            format!(
                "{} = {}",
                e.n(attr::STATUS),
                e.v(av(&NodeRunStatus::Running)?)
            ),
            format!("{} = {}", e.n(attr::LEASE_TOKEN), e.v(s(&claim.token))),
            format!(
                "{} = {}",
                e.n(attr::LEASE_UNTIL),
                e.v(s(claim.lease_until.to_string()))
            ),
        ];
        let cond = format!(
            "{} = {}",
            e.n(attr::STATUS),
            e.v(av(&NodeRunStatus::Waiting)?)
        );
        let update = format!("SET {}", sets.join(", "));
        match self
            .update_run(org, execution_id, node_id, update, Some(cond), e)
            .await?
        {
            Updated::Done(item) => Ok(ClaimOutcome::Claimed(run_from_item(item)?)),
            Updated::ConditionFailed(Some(item)) => {
                let run = run_from_item(item)?;
                Ok(match NodeRun::claim(Some(&run), claim) {
                    ClaimOutcome::Claimed(_) => ClaimOutcome::NotReady,
                    other => other,
                })
            }
            Updated::ConditionFailed(None) => Ok(ClaimOutcome::NotReady),
        }
    }

    pub(super) async fn save_node_run_(
        &self,
        org: &str,
        run: &NodeRun,
        token: &str,
    ) -> StoreResult<bool> {
        let item = to_item(
            &NodeRunItem::new(org, run, self.run_expiry(run)),
            "node run",
        )?;
        let mut e = Expr::new();
        let cond = format!("{} = {}", e.n(attr::LEASE_TOKEN), e.v(s(token)));
        self.put_if(item, cond, &e).await
    }

    /// `SET` clauses that decide an arrived-complete run: ready (and claimed), or skipped
    /// (finished `at`).
    fn decide_clauses(
        &self,
        e: &mut Expr,
        ready: bool,
        at: Timestamp,
        claim: Option<&Claim>,
    ) -> StoreResult<Vec<String>> {
        let mut sets = Vec::new();
        if ready {
            sets.push(format!("{} = {}", e.n(attr::READY), e.v(b(true))));
            if let Some(claim) = claim {
                sets.extend(Self::claim_clauses(e, claim)?);
            }
            sets.push(format!(
                "{} = {}",
                e.n(attr::EXPIRES_AT),
                e.v(num(self.expiry_from_now(UNFINISHED_GRACE)))
            ));
        } else {
            sets.push(format!(
                "{} = {}",
                e.n(attr::STATUS),
                e.v(av(&NodeRunStatus::Skipped)?)
            ));
            sets.push(format!(
                "{} = {}",
                e.n(attr::FINISHED_AT),
                e.v(s(at.to_string()))
            ));
            sets.push(format!(
                "{} = {}",
                e.n(attr::EXPIRES_AT),
                e.v(num(self.expiry(at)))
            ));
        }
        Ok(sets)
    }

    /// `SET` clauses that create the run's identity if it does not exist yet.
    fn identity_clauses(e: &mut Expr, execution_id: &str, child: &str) -> StoreResult<Vec<String>> {
        Ok(vec![
            format!(
                "{a} = if_not_exists({a}, {v})",
                a = e.n(attr::EXECUTION_ID),
                v = e.v(s(execution_id))
            ),
            format!(
                "{a} = if_not_exists({a}, {v})",
                a = e.n(attr::NODE_ID),
                v = e.v(s(child))
            ),
        ])
    }

    pub(super) async fn arrive_(
        &self,
        org: &str,
        a: &ArrivalAt<'_>,
        claim: Option<&Claim>,
    ) -> StoreResult<Arrival> {
        if a.parents <= 1 {
            return self.arrive_single(org, a, claim).await;
        }
        if a.parents > JOIN_SET_LIMIT {
            return self.arrive_sharded(org, a, claim).await;
        }
        self.arrive_multi(org, a, claim, None).await
    }

    /// A child with several parents, their ids in one set on the run: add this one (once),
    /// and the arrival that completes the set decides the run in one conditional flip.
    ///
    /// `shard`: the arrival is a wide join's shard report, standing for this many parents
    /// and taken connections (added to the run's counts, so that it shows every parent).
    async fn arrive_multi(
        &self,
        org: &str,
        a: &ArrivalAt<'_>,
        claim: Option<&Claim>,
        shard: Option<(usize, usize)>,
    ) -> StoreResult<Arrival> {
        let (execution_id, child, parent) = (a.execution_id, a.child, a.parent);
        // 1. Add the parent to the arrived set, unless it is there (a duplicate arrival).
        let mut e = Expr::new();
        let mut adds = vec![format!("{} {}", e.n(attr::ARRIVED), e.v(ss(&[parent])))];
        if a.taken {
            adds.push(format!("{} {}", e.n(attr::TAKEN_FROM), e.v(ss(&[parent]))));
        }
        if let Some((parents, taken)) = shard {
            adds.push(format!(
                "{} {}",
                e.n(attr::PARENTS_ARRIVED),
                e.v(num(parents as i64))
            ));
            adds.push(format!(
                "{} {}",
                e.n(attr::PARENTS_TAKEN),
                e.v(num(taken as i64))
            ));
        }
        let mut sets = Self::identity_clauses(&mut e, execution_id, child)?;
        sets.push(format!(
            "{a} = if_not_exists({a}, {v})",
            a = e.n(attr::STATUS),
            v = e.v(av(&NodeRunStatus::Pending)?)
        ));
        sets.push(format!(
            "{a} = if_not_exists({a}, {v})",
            a = e.n(attr::ATTEMPTS),
            v = e.v(num(0))
        ));
        sets.push(format!(
            "{a} = if_not_exists({a}, {v})",
            a = e.n(attr::READY),
            v = e.v(b(false))
        ));
        sets.push(format!(
            "{a} = if_not_exists({a}, {v})",
            a = e.n(attr::EXPIRES_AT),
            v = e.v(num(self.expiry_from_now(UNFINISHED_GRACE)))
        ));
        let update = format!("ADD {} SET {}", adds.join(", "), sets.join(", "));
        let cond = format!("NOT contains({}, {})", e.n(attr::ARRIVED), e.v(s(parent)));
        let item = match self
            .update_run(org, execution_id, child, update, Some(cond), e)
            .await?
        {
            Updated::Done(item) => item,
            Updated::ConditionFailed(Some(item)) => {
                return Ok(Arrival::Duplicate(run_from_item(item)?));
            }
            Updated::ConditionFailed(None) => return Ok(Arrival::AlreadyDecided),
        };
        let (arrived, taken) = (
            set_len(&item, attr::ARRIVED),
            set_len(&item, attr::TAKEN_FROM),
        );
        let run = run_from_item(item)?;
        if run.ready || run.status != NodeRunStatus::Pending {
            return Ok(Arrival::AlreadyDecided);
        }
        if arrived < a.parents {
            return Ok(Arrival::Waiting);
        }
        // 2. Complete and undecided: one conditional flip, which exactly one arrival wins.
        let ready = taken > 0;
        let mut e = Expr::new();
        let sets = self.decide_clauses(&mut e, ready, a.at, claim)?;
        let cond = format!(
            "{} = {} AND {} = {}",
            e.n(attr::READY),
            e.v(b(false)),
            e.n(attr::STATUS),
            e.v(av(&NodeRunStatus::Pending)?)
        );
        let update = format!("SET {}", sets.join(", "));
        match self
            .update_run(org, execution_id, child, update, Some(cond), e)
            .await?
        {
            Updated::Done(item) => {
                let run = run_from_item(item)?;
                Ok(if ready {
                    Arrival::Ready(run)
                } else {
                    Arrival::Skipped(run)
                })
            }
            Updated::ConditionFailed(_) => Ok(Arrival::AlreadyDecided),
        }
    }

    /// A join with more than [`JOIN_SET_LIMIT`] parents: each parent goes into the set of its
    /// shard item (`keys::join_shard_sk`, ⌈parents / limit⌉ shards by the parent's index), so
    /// no write carries more than the limit's ids (one set of all parents would make each
    /// arrival cost the size of all before it: O(N²) write units for N parents). The arrival
    /// that completes a shard reports it on the run as one "parent" (`shard-{n}`) of the
    /// multi-parent path, which decides the run once every shard reported. A duplicate that
    /// finds its shard complete reports it again, which repairs a report a crash lost.
    async fn arrive_sharded(
        &self,
        org: &str,
        a: &ArrivalAt<'_>,
        claim: Option<&Claim>,
    ) -> StoreResult<Arrival> {
        let shards = a.parents.div_ceil(JOIN_SET_LIMIT);
        let shard = a.parent_index % shards;
        let expected = a.parents / shards + usize::from(shard < a.parents % shards);
        let mut e = Expr::new();
        let mut adds = vec![format!("{} {}", e.n(attr::ARRIVED), e.v(ss(&[a.parent])))];
        if a.taken {
            adds.push(format!(
                "{} {}",
                e.n(attr::TAKEN_FROM),
                e.v(ss(&[a.parent]))
            ));
        }
        let update = format!(
            "ADD {} SET {a} = if_not_exists({a}, {v})",
            adds.join(", "),
            a = e.n(attr::EXPIRES_AT),
            v = e.v(num(
                self.expiry_from_now(self.retention.max(UNFINISHED_GRACE))
            ))
        );
        let cond = format!("NOT contains({}, {})", e.n(attr::ARRIVED), e.v(s(a.parent)));
        let sk = keys::join_shard_sk(a.child, shard);
        let (item, duplicate) = match self
            .update_in_execution(org, a.execution_id, sk, update, Some(cond), e)
            .await?
        {
            Updated::Done(item) => (item, false),
            Updated::ConditionFailed(item) => (item.unwrap_or_default(), true),
        };
        let count = |name: &str| set_len(&item, name);
        if count(attr::ARRIVED) < expected {
            if !duplicate {
                return Ok(Arrival::Waiting);
            }
            let run = self.get(
                key(
                    keys::execution_pk(org, a.execution_id),
                    keys::run_sk(a.child),
                ),
                true,
            );
            return Ok(match run.await? {
                Some(run) => Arrival::Duplicate(run_from_item(run)?),
                None => Arrival::Waiting,
            });
        }
        let marker = format!("shard-{shard}");
        let taken = count(attr::TAKEN_FROM);
        let report = ArrivalAt {
            parent: &marker,
            parents: shards,
            parent_index: shard,
            taken: taken > 0,
            ..*a
        };
        self.arrive_multi(org, &report, claim, Some((expected, taken)))
            .await
    }

    /// A child with one parent: arrive, decide (and claim) in one conditional write. The
    /// child exists only once its parent arrived, so a failed condition is a duplicate.
    async fn arrive_single(
        &self,
        org: &str,
        a: &ArrivalAt<'_>,
        claim: Option<&Claim>,
    ) -> StoreResult<Arrival> {
        let (execution_id, child, parent, taken) = (a.execution_id, a.child, a.parent, a.taken);
        let mut e = Expr::new();
        let mut sets = Self::identity_clauses(&mut e, execution_id, child)?;
        sets.push(format!("{} = {}", e.n(attr::ARRIVED), e.v(ss(&[parent]))));
        if taken {
            sets.push(format!(
                "{} = {}",
                e.n(attr::TAKEN_FROM),
                e.v(ss(&[parent]))
            ));
            if claim.is_none() {
                sets.push(format!(
                    "{a} = if_not_exists({a}, {v})",
                    a = e.n(attr::STATUS),
                    v = e.v(av(&NodeRunStatus::Pending)?)
                ));
                sets.push(format!(
                    "{a} = if_not_exists({a}, {v})",
                    a = e.n(attr::ATTEMPTS),
                    v = e.v(num(0))
                ));
            }
        } else {
            sets.push(format!(
                "{a} = if_not_exists({a}, {v})",
                a = e.n(attr::ATTEMPTS),
                v = e.v(num(0))
            ));
            sets.push(format!(
                "{a} = if_not_exists({a}, {v})",
                a = e.n(attr::READY),
                v = e.v(b(false))
            ));
        }
        sets.extend(self.decide_clauses(&mut e, taken, a.at, claim)?);
        let cond = format!("attribute_not_exists({pk})", pk = e.n(attr::PK));
        let update = format!("SET {}", sets.join(", "));
        match self
            .update_run(org, execution_id, child, update, Some(cond), e)
            .await?
        {
            Updated::Done(item) => {
                let run = run_from_item(item)?;
                Ok(if taken {
                    Arrival::Ready(run)
                } else {
                    Arrival::Skipped(run)
                })
            }
            Updated::ConditionFailed(Some(item)) => Ok(Arrival::Duplicate(run_from_item(item)?)),
            Updated::ConditionFailed(None) => Ok(Arrival::AlreadyDecided),
        }
    }
}

impl DynamoStore {
    /// Items by key with strongly consistent reads: `BatchGetItem`s of up to 100 keys,
    /// unprocessed keys retried.
    /// The items an index query found (entries with a narrow projection), read whole by
    /// their table keys, in the order found; an item deleted meanwhile is left out.
    pub(super) async fn read_whole(&self, found: &[Item]) -> StoreResult<Vec<Item>> {
        let keys_of = |i: &Item| Some((string_of(i, attr::PK)?, string_of(i, attr::SK)?));
        let wanted: Vec<Item> = found
            .iter()
            .filter_map(keys_of)
            .map(|(pk, sk)| key(pk, sk))
            .collect();
        let mut whole: std::collections::HashMap<(String, String), Item> = self
            .get_many(wanted)
            .await?
            .into_iter()
            .filter_map(|i| Some((keys_of(&i)?, i)))
            .collect();
        Ok(found
            .iter()
            .filter_map(|i| whole.remove(&keys_of(i)?))
            .collect())
    }

    pub(super) async fn get_many(&self, wanted: Vec<Item>) -> StoreResult<Vec<Item>> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut found = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(100) {
            let mut keys_ = chunk.to_vec();
            for round in 0..8u32 {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys_))
                    .consistent_read(true)
                    .build()
                    .map_err(super::executions::build_err)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .set_return_consumed_capacity(self.capacity.clone())
                    .send()
                    .await
                    .map_err(backend)?;
                found.extend(
                    out.responses
                        .and_then(|mut r| r.remove(&self.table))
                        .unwrap_or_default(),
                );
                keys_ = out
                    .unprocessed_keys
                    .and_then(|mut m| m.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if keys_.is_empty() {
                    break;
                }
                if round == 7 {
                    return Err(StoreError::Backend("batch read left unprocessed".into()));
                }
                super::expr::conflict_pause(round).await;
            }
        }
        Ok(found)
    }

    /// One `BatchGetItem` (per 100 keys): the execution item and the named runs (a
    /// `GetItem` when no run is named).
    pub(super) async fn get_execution_runs_(
        &self,
        org: &str,
        id: &str,
        node_ids: &[String],
    ) -> StoreResult<Option<ExecutionState>> {
        if node_ids.is_empty() {
            return Ok(self
                .get_execution_(org, id)
                .await?
                .map(|execution| ExecutionState {
                    execution,
                    node_runs: Vec::new(),
                }));
        }
        let pk = keys::execution_pk(org, id);
        let mut wanted = vec![key(pk.clone(), keys::EXECUTION_SK.to_string())];
        let mut seen = std::collections::HashSet::new();
        for node_id in node_ids {
            if seen.insert(node_id) {
                wanted.push(key(pk.clone(), keys::run_sk(node_id)));
            }
        }
        let mut execution = None;
        let mut node_runs = Vec::with_capacity(node_ids.len());
        for item in self.get_many(wanted).await? {
            let sk = super::items::string_of(&item, attr::SK).unwrap_or_default();
            if sk == keys::EXECUTION_SK {
                execution = Some(
                    super::items::from_item::<super::items::ExecutionItem>(item, "execution")?
                        .into_execution(),
                );
            } else {
                node_runs.push(run_from_item(item)?);
            }
        }
        Ok(execution.map(|execution| ExecutionState {
            execution,
            node_runs,
        }))
    }

    /// A strongly consistent Query of the runs' statuses. (It reads every run item, so it
    /// costs what the execution's size costs; the embedded store keeps a counter.)
    pub(super) async fn count_finished_nodes_(&self, org: &str, id: &str) -> StoreResult<u32> {
        let mut e = Expr::new();
        let key_condition = format!(
            "{} = {} AND begins_with({}, {})",
            e.n(attr::PK),
            e.v(s(keys::execution_pk(org, id))),
            e.n(attr::SK),
            e.v(s(keys::RUN_PREFIX))
        );
        let projection = e.n(attr::STATUS);
        let q = super::QuerySpec {
            index: None,
            key_condition,
            filter: None,
            expr: e,
            forward: true,
            consistent: true,
            projection: Some(projection),
        };
        let finished = self
            .query_all(&q)
            .await?
            .iter()
            .filter_map(|item| super::items::string_of(item, attr::STATUS))
            .filter(|status| {
                serde_json::from_value::<NodeRunStatus>(serde_json::Value::String(status.clone()))
                    .is_ok_and(|s| s.is_finished())
            })
            .count();
        Ok(finished as u32)
    }

    /// `SET completedAt, duration` on the execution item.
    pub(super) async fn set_completed_at_(
        &self,
        org: &str,
        id: &str,
        completed_at: Timestamp,
        duration: u64,
    ) -> StoreResult<()> {
        let mut e = Expr::new();
        let update = format!(
            "SET {} = {}, {} = {}",
            e.n("completedAt"),
            e.v(s(completed_at.to_string())),
            e.n("duration"),
            e.v(num(duration.min(i64::MAX as u64) as i64))
        );
        let cond = format!("attribute_exists({})", e.n(attr::PK));
        self.update_execution_if(org, id, update, cond, &e).await?;
        Ok(())
    }

    /// The save policy `none` (SPEC §14) on a `success` execution: each node run item loses
    /// its output, only `warn`/`error` log entries stay, and last the execution item's input
    /// becomes null with `dataSaved` false (so a reader that sees `dataSaved: false` sees the
    /// rest dropped too).
    pub(super) async fn drop_execution_data_(&self, org: &str, id: &str) -> StoreResult<()> {
        let Some(state) = self.get_execution_state_(org, id).await? else {
            return Ok(());
        };
        let exec = &state.execution;
        if exec.status != ExecutionStatus::Success || !exec.data_saved {
            return Ok(());
        }
        for run in state.node_runs.iter().filter(|r| r.output.is_some()) {
            let mut e = Expr::new();
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(
                    keys::execution_pk(org, id),
                    keys::run_sk(&run.node_id),
                )))
                .update_expression(format!("REMOVE {}", e.n("output")))
                .set_expression_attribute_names(e.names())
                .set_return_consumed_capacity(self.capacity.clone())
                .send()
                .await
                .map_err(backend)?;
        }
        self.drop_info_logs(org, id).await?;
        let mut e = Expr::new();
        let update = format!(
            "SET {} = {}, {} = {}",
            e.n("inputData"),
            e.v(s("null")),
            e.n("dataSaved"),
            e.v(AttributeValue::Bool(false))
        );
        let cond = format!(
            "{} = {}",
            e.n(attr::STATUS),
            e.v(s(ExecutionStatus::Success.as_str()))
        );
        self.update_execution_if(org, id, update, cond, &e).await?;
        Ok(())
    }
}
