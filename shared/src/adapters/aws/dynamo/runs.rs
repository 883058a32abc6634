//! Node runs: the execution protocol's conditional writes (claim, record, arrive).

use super::expr::Expr;
use super::items::{Item, NodeRunItem, attr, av, key, run_from_item, s, to_item};
use super::{DynamoStore, backend, keys};
use crate::model::*;
use crate::ports::*;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use std::time::Duration;

/// Unfinished runs expire a day after the retention from their last write, finished ones
/// `retention` after they finished.
const UNFINISHED_GRACE: Duration = Duration::from_secs(86_400);

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
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                keys::execution_pk(org, execution_id),
                keys::run_sk(node_id),
            )))
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
        let cond = format!(
            "({st} = {pending} AND ({ready} = {yes} OR attribute_not_exists({arrived})) \
             AND (attribute_not_exists({nb}) OR {nb} <= {now})) \
             OR ({st} = {running} AND (attribute_not_exists({lu}) OR {lu} < {now}))",
            st = e.n(attr::STATUS),
            pending = e.v(av(&NodeRunStatus::Pending)?),
            running = e.v(av(&NodeRunStatus::Running)?),
            ready = e.n(attr::READY),
            yes = e.v(b(true)),
            arrived = e.n(attr::ARRIVED),
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
                Ok(match run.status {
                    s if s.is_finished() => ClaimOutcome::Finished(run),
                    NodeRunStatus::Running => ClaimOutcome::Leased {
                        until: run.lease_until.unwrap_or(claim.now),
                    },
                    _ => match run.not_before {
                        Some(nb) if nb > claim.now && (run.ready || run.arrived.is_empty()) => {
                            ClaimOutcome::NotYet { not_before: nb }
                        }
                        _ => ClaimOutcome::NotReady,
                    },
                })
            }
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

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn arrive_(
        &self,
        org: &str,
        execution_id: &str,
        child: &str,
        parent: &str,
        taken: bool,
        parents: usize,
        at: Timestamp,
        claim: Option<&Claim>,
    ) -> StoreResult<Arrival> {
        if parents <= 1 {
            return self
                .arrive_single(org, execution_id, child, parent, taken, at, claim)
                .await;
        }
        // 1. Add the parent to the arrived set (idempotent) and read the set back.
        let mut e = Expr::new();
        let mut adds = vec![format!("{} {}", e.n(attr::ARRIVED), e.v(ss(&[parent])))];
        if taken {
            adds.push(format!("{} {}", e.n(attr::TAKEN_FROM), e.v(ss(&[parent]))));
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
        let Updated::Done(item) = self
            .update_run(org, execution_id, child, update, None, e)
            .await?
        else {
            return Err(StoreError::Backend(
                "unconditional update reported a condition".into(),
            ));
        };
        let run = run_from_item(item)?;
        if run.ready || run.status != NodeRunStatus::Pending {
            return Ok(Arrival::AlreadyDecided);
        }
        if run.arrived.len() < parents {
            return Ok(Arrival::Waiting);
        }
        // 2. Complete and undecided: one conditional flip, which exactly one arrival wins.
        let ready = !run.taken_from.is_empty();
        let mut e = Expr::new();
        let sets = self.decide_clauses(&mut e, ready, at, claim)?;
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

    /// A child with one parent: arrive, decide (and claim) in one conditional write.
    #[allow(clippy::too_many_arguments)]
    async fn arrive_single(
        &self,
        org: &str,
        execution_id: &str,
        child: &str,
        parent: &str,
        taken: bool,
        at: Timestamp,
        claim: Option<&Claim>,
    ) -> StoreResult<Arrival> {
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
        sets.extend(self.decide_clauses(&mut e, taken, at, claim)?);
        let cond = format!(
            "attribute_not_exists({pk}) OR ({ready} = {no} AND {st} = {pending})",
            pk = e.n(attr::PK),
            ready = e.n(attr::READY),
            no = e.v(b(false)),
            st = e.n(attr::STATUS),
            pending = e.v(av(&NodeRunStatus::Pending)?),
        );
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
            Updated::ConditionFailed(_) => Ok(Arrival::AlreadyDecided),
        }
    }
}
