//! Handling one job: claim, run, record, route and join, finalize.
//!
//! A redelivered job whose node already finished *repairs* instead of running: it re-does the
//! arrivals and enqueues its successor may not have done (the worker that finished it may have
//! died before), using the state it just read, so a complete execution costs no extra writes.

use super::Engine;
use super::retry::retry_delay;
use crate::expr::{self, ExprContext};
use crate::graph::{Finished, Plan, effective_on_error, route};
use crate::model::{
    ErrorKind, Execution, ExecutionLog, ExecutionStatus, Job, LogLevel, Node, NodeError, NodeRun,
    NodeRunStatus, OnError, Timestamp, Workflow, new_id,
};
use crate::nodes::{NodeContext, NodeOutcome};
use crate::ports::{Arrival, Claim, ClaimOutcome};
use crate::{EngineError, EngineResult};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buffered logs of an inline chain are written at least this often.
const LOG_FLUSH_AFTER: Duration = Duration::from_secs(1);

/// What to do with the delivery that carried the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Acknowledge (delete) the delivery.
    Done,
    /// Leave it: it must be delivered again after this long (another worker holds the node,
    /// or the node is not due yet).
    RetryAfter(Duration),
}

/// What a job handler knows about one execution while it works on it.
pub(super) struct RunContext {
    pub exec: Execution,
    pub wf: Arc<Workflow>,
    pub plan: Arc<Plan>,
    pub runs: HashMap<String, NodeRun>,
    /// Logs not yet written (flushed once per node step).
    pub logs: Vec<ExecutionLog>,
}

/// How a finished node's connections are decided.
#[derive(Debug, Clone)]
pub(super) enum Route {
    Output(Value),
    /// Failed with `onError: continue`.
    Continue,
    /// Failed with `onError: errorOutput`.
    ErrorOutput,
    /// Skipped on a dead path: nothing is taken.
    Dead,
}

impl Route {
    pub fn as_finished(&self) -> Finished<'_> {
        match self {
            Route::Output(v) => Finished::Output(v),
            Route::Continue => Finished::FailedContinue,
            Route::ErrorOutput => Finished::FailedErrorOutput,
            Route::Dead => Finished::Output(&Value::Null),
        }
    }
    fn decide(&self, outgoing: &[crate::model::Connection]) -> Vec<(String, bool)> {
        let mut out = route(outgoing, self.as_finished());
        if matches!(self, Route::Dead) {
            out.iter_mut().for_each(|(_, taken)| *taken = false);
        }
        out
    }
}

/// The follow-up of one node step.
#[derive(Default)]
pub(super) struct Step {
    /// Jobs to send now.
    pub enqueue: Vec<Job>,
    /// A child claimed by this handler, to run next without a queue round trip.
    pub inline: Option<(NodeRun, Claim)>,
    /// Some child still waits for other parents: the execution cannot be complete yet.
    pub waiting: bool,
}

enum NodeStep {
    Finished(Route),
    /// A retry or a wait was scheduled.
    Parked,
    /// The lease was lost: another worker owns the node now; our result is discarded.
    LeaseLost,
    /// Failed with `onError: stop`: the execution fails.
    Stop(NodeError),
}

/// The route of a recorded, finished run (None: it stops the execution or is not finished).
pub(super) fn finished_route(ctx: &RunContext, run: &NodeRun) -> Option<Route> {
    match run.status {
        NodeRunStatus::Success => Some(Route::Output(run.output.clone().unwrap_or(Value::Null))),
        NodeRunStatus::Skipped => Some(run.output.clone().map_or(Route::Dead, Route::Output)),
        NodeRunStatus::Failed => {
            let node = ctx.wf.node(&run.node_id)?;
            match effective_on_error(node, ctx.plan.outgoing(&run.node_id)) {
                OnError::Stop => None,
                OnError::Continue => Some(Route::Continue),
                OnError::ErrorOutput => Some(Route::ErrorOutput),
            }
        }
        _ => None,
    }
}

impl Engine {
    /// Handles one job. Children that become ready are run inline in the same call while
    /// `inline_until` allows (None: no limit), the rest are queued.
    pub async fn run_job(
        &self,
        job: &Job,
        inline_until: Option<Instant>,
    ) -> EngineResult<JobOutcome> {
        let now = self.clock().now();
        if let Some(not_before) = job.not_before.filter(|t| *t > now) {
            // A delay longer than the queue allows, chained.
            self.send_delayed(job.clone(), not_before).await?;
            return Ok(JobOutcome::Done);
        }
        let org = job.organization_id.as_str();
        let mut ctx = match self.load_run_context(org, &job.execution_id).await {
            Ok(ctx) => ctx,
            Err(EngineError::NotFound(what)) => {
                tracing::warn!(execution_id = %job.execution_id, %what, "job dropped: not found");
                return Ok(JobOutcome::Done);
            }
            Err(e) => return Err(e),
        };
        if !self.may_start_nodes(&mut ctx).await? {
            return Ok(JobOutcome::Done);
        }
        let Some(node) = ctx.wf.node(&job.node_id).cloned() else {
            tracing::warn!(node_id = %job.node_id, "job for an unknown node dropped");
            return Ok(JobOutcome::Done);
        };
        let claim = self.new_claim(&node);
        match self
            .store()
            .claim_node(org, &job.execution_id, &job.node_id, &claim)
            .await?
        {
            ClaimOutcome::Claimed(run) => {
                ctx.runs.insert(run.node_id.clone(), run.clone());
                self.execute_chain(&mut ctx, run, claim, inline_until)
                    .await?;
            }
            ClaimOutcome::Finished(run) => self.repair(&mut ctx, &run).await?,
            ClaimOutcome::Leased { until } => {
                return Ok(JobOutcome::RetryAfter(Duration::from_millis(
                    until.millis_since(now) + 50,
                )));
            }
            ClaimOutcome::NotYet { not_before } => {
                return Ok(JobOutcome::RetryAfter(Duration::from_millis(
                    not_before.millis_since(now),
                )));
            }
            ClaimOutcome::NotReady => {
                tracing::debug!(node_id = %job.node_id, "job for a node that is not ready dropped");
            }
        }
        Ok(JobOutcome::Done)
    }

    pub(super) async fn load_run_context(
        &self,
        org: &str,
        execution_id: &str,
    ) -> EngineResult<RunContext> {
        let state = self
            .store()
            .get_execution_state(org, execution_id)
            .await?
            .ok_or_else(|| EngineError::NotFound("Execution not found".into()))?;
        let exec = state.execution;
        let (wf, plan) = self
            .workflow_and_plan(org, &exec.workflow_id, exec.workflow_version)
            .await?;
        let runs = state
            .node_runs
            .into_iter()
            .map(|r| (r.node_id.clone(), r))
            .collect();
        Ok(RunContext {
            exec,
            wf,
            plan,
            runs,
            logs: Vec::new(),
        })
    }

    /// Terminal or paused executions start no node; a pending one becomes running;
    /// one past its deadline times out.
    async fn may_start_nodes(&self, ctx: &mut RunContext) -> EngineResult<bool> {
        let now = self.clock().now();
        if ctx.exec.status.is_terminal() || ctx.exec.status == ExecutionStatus::Paused {
            return Ok(false);
        }
        if now > ctx.exec.deadline {
            self.time_out(&ctx.exec).await?;
            return Ok(false);
        }
        if ctx.exec.status == ExecutionStatus::Pending {
            let mut running = ctx.exec.clone();
            running.status = ExecutionStatus::Running;
            running.started_at = Some(now);
            if self
                .store()
                .transition_execution(&running, &[ExecutionStatus::Pending])
                .await?
            {
                ctx.exec = running;
                ctx.log(
                    LogLevel::Info,
                    "Execution started".into(),
                    None,
                    0,
                    None,
                    now,
                );
            } else {
                match self
                    .store()
                    .get_execution(&ctx.exec.organization_id, &ctx.exec.id)
                    .await?
                {
                    Some(e) if e.status == ExecutionStatus::Running => ctx.exec = e,
                    _ => return Ok(false),
                }
            }
        }
        Ok(true)
    }

    fn new_claim(&self, node: &Node) -> Claim {
        let now = self.clock().now();
        let timeout = node.timeout_ms.unwrap_or(self.config().node_timeout_ms);
        Claim {
            token: uuid::Uuid::new_v4().to_string(),
            now,
            lease_until: now.plus(Duration::from_millis(
                timeout + self.config().lease_margin_ms,
            )),
        }
    }

    /// Runs a claimed node, then whatever single child it makes ready, and so on. The logs
    /// of the whole chain are written together (at most [`LOG_FLUSH_AFTER`] late).
    async fn execute_chain(
        &self,
        ctx: &mut RunContext,
        run: NodeRun,
        claim: Claim,
        inline_until: Option<Instant>,
    ) -> EngineResult<()> {
        let result = self
            .execute_chain_inner(ctx, run, claim, inline_until)
            .await;
        self.flush_logs(ctx).await;
        result
    }

    async fn execute_chain_inner(
        &self,
        ctx: &mut RunContext,
        mut run: NodeRun,
        mut claim: Claim,
        inline_until: Option<Instant>,
    ) -> EngineResult<()> {
        loop {
            let node_id = run.node_id.clone();
            let mut step = Step::default();
            let mut finished = false;
            match self.execute_node(ctx, run, &claim).await? {
                NodeStep::Finished(route) => {
                    finished = true;
                    let inline = inline_until.is_none_or(|t| Instant::now() < t);
                    self.advance(ctx, &node_id, route, inline, &mut step)
                        .await?;
                }
                NodeStep::Parked | NodeStep::LeaseLost => {}
                NodeStep::Stop(error) => {
                    self.fail_execution(ctx, &node_id, &error).await?;
                    return Ok(());
                }
            }
            self.send_now(&mut step.enqueue).await?;
            let Some((next, next_claim)) = step.inline else {
                if finished && step.enqueue.is_empty() && !step.waiting {
                    self.try_finalize(ctx).await?;
                }
                return Ok(());
            };
            if !self.still_running(ctx, &next).await? {
                self.unclaim(ctx, next, &next_claim).await?;
                return Ok(());
            }
            self.flush_logs_if_due(ctx).await;
            run = next;
            claim = next_claim;
        }
    }

    /// Before an inline node: is the execution still running and within its deadline?
    /// Refreshes the state when the node's parents finished elsewhere.
    async fn still_running(&self, ctx: &mut RunContext, next: &NodeRun) -> EngineResult<bool> {
        let org = ctx.exec.organization_id.clone();
        let parents_known = next
            .arrived
            .iter()
            .all(|p| ctx.runs.get(p).is_some_and(|r| r.status.is_finished()));
        if parents_known {
            match self.store().get_execution(&org, &ctx.exec.id).await? {
                Some(e) => ctx.exec = e,
                None => return Ok(false),
            }
        } else {
            // The store is newer than anything this handler holds.
            let fresh = self.load_run_context(&org, &ctx.exec.id).await?;
            ctx.exec = fresh.exec;
            ctx.runs = fresh.runs;
        }
        if ctx.exec.status != ExecutionStatus::Running {
            return Ok(false);
        }
        if self.clock().now() > ctx.exec.deadline {
            self.time_out(&ctx.exec).await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Gives back a claimed run that will not be started now (paused or stopped execution).
    async fn unclaim(&self, ctx: &RunContext, mut run: NodeRun, claim: &Claim) -> EngineResult<()> {
        if ctx.exec.status.is_terminal() {
            return Ok(());
        }
        run.status = NodeRunStatus::Pending;
        run.attempts = run.attempts.saturating_sub(1);
        run.lease_token = None;
        run.lease_until = None;
        self.store()
            .save_node_run(&ctx.exec.organization_id, &run, &claim.token)
            .await?;
        Ok(())
    }

    /// A redelivered job whose node already finished.
    async fn repair(&self, ctx: &mut RunContext, run: &NodeRun) -> EngineResult<()> {
        if run.status == NodeRunStatus::Failed && finished_route(ctx, run).is_none() {
            // Failed with onError stop; its worker may have died before failing the execution.
            if let Some(error) = run.error.clone() {
                self.fail_execution(ctx, &run.node_id, &error).await?;
            }
            return Ok(());
        }
        let Some(route) = finished_route(ctx, run) else {
            return Ok(());
        };
        let mut step = Step::default();
        self.advance(ctx, &run.node_id, route, false, &mut step)
            .await?;
        if step.enqueue.is_empty() {
            self.try_finalize(ctx).await?;
        } else {
            self.send_now(&mut step.enqueue).await?;
        }
        self.flush_logs(ctx).await;
        Ok(())
    }

    /// Sends jobs in one batch, one per node.
    pub(super) async fn send_now(&self, jobs: &mut Vec<Job>) -> EngineResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        jobs.retain(|j| seen.insert((j.execution_id.clone(), j.node_id.clone())));
        self.queue().send(jobs, Duration::ZERO).await?;
        Ok(())
    }

    /// Arrives at every child of a finished node; propagates skips; collects what must run.
    /// With `inline`, the first child that becomes ready is claimed for this handler.
    pub(super) async fn advance(
        &self,
        ctx: &mut RunContext,
        from: &str,
        route: Route,
        inline: bool,
        step: &mut Step,
    ) -> EngineResult<()> {
        let org = ctx.exec.organization_id.clone();
        let mut inline = inline;
        let mut work: Vec<(String, Route)> = vec![(from.to_string(), route)];
        while let Some((node_id, route)) = work.pop() {
            let outgoing = ctx.plan.outgoing(&node_id).to_vec();
            for (child, taken) in route.decide(&outgoing) {
                if let Some(existing) = ctx
                    .runs
                    .get(&child)
                    .filter(|r| r.arrived.contains(&node_id))
                {
                    // Recorded before (a redelivered job): redo only what may be missing.
                    if existing.status.is_finished() {
                        if let Some(r) = finished_route(ctx, existing) {
                            work.push((child.clone(), r));
                        }
                    } else if existing.ready {
                        step.enqueue.push(self.job_for(&ctx.exec, &child));
                    }
                    continue;
                }
                let parents = ctx.plan.parents(&child).len();
                let claim = match (inline, ctx.wf.node(&child)) {
                    (true, Some(n)) => Some(self.new_claim(n)),
                    _ => None,
                };
                let arrival = self
                    .store()
                    .arrive(
                        &org,
                        &ctx.exec.id,
                        &child,
                        &node_id,
                        taken,
                        parents,
                        self.clock().now(),
                        claim.as_ref(),
                    )
                    .await?;
                match arrival {
                    Arrival::Waiting => {
                        step.waiting = true;
                        let entry = ctx
                            .runs
                            .entry(child.clone())
                            .or_insert_with(|| NodeRun::new(&ctx.exec.id, &child));
                        entry.arrived.insert(node_id.clone());
                    }
                    Arrival::Ready(run) => {
                        let claimed = claim
                            .as_ref()
                            .filter(|c| run.lease_token.as_deref() == Some(c.token.as_str()));
                        ctx.runs.insert(child.clone(), run.clone());
                        match claimed {
                            Some(c) => {
                                step.inline = Some((run, c.clone()));
                                inline = false;
                            }
                            None => step.enqueue.push(self.job_for(&ctx.exec, &child)),
                        }
                    }
                    Arrival::Skipped(run) => {
                        let now = self.clock().now();
                        if let Some(node) = ctx.wf.node(&child).cloned() {
                            let step_no = ctx.plan.step(&child);
                            ctx.log(
                                LogLevel::Info,
                                "Node skipped: no taken connection reached it".into(),
                                Some(&node),
                                step_no,
                                None,
                                now,
                            );
                        }
                        ctx.runs.insert(child.clone(), run);
                        work.push((child.clone(), Route::Dead));
                    }
                    Arrival::AlreadyDecided => {
                        // Our state was older than the store's; a duplicate job is harmless.
                        step.enqueue.push(self.job_for(&ctx.exec, &child));
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs one claimed node and records its result (or its retry or wait).
    async fn execute_node(
        &self,
        ctx: &mut RunContext,
        mut run: NodeRun,
        claim: &Claim,
    ) -> EngineResult<NodeStep> {
        let org = ctx.exec.organization_id.clone();
        let Some(node) = ctx.wf.node(&run.node_id).cloned() else {
            return Ok(NodeStep::Stop(NodeError::new(
                ErrorKind::Configuration,
                "node not in workflow",
            )));
        };
        let step_no = ctx.plan.step(&node.id);
        let started = self.clock().now();
        run.started_at.get_or_insert(started);

        let parents = ctx.plan.parents(&node.id);
        let inputs: Vec<(String, Value)> = parents
            .iter()
            .filter(|p| run.taken_from.contains(*p))
            .filter_map(|p| {
                ctx.runs
                    .get(p)
                    .and_then(|r| r.output.clone())
                    .map(|o| (p.clone(), o))
            })
            .collect();
        let input = if parents.is_empty() {
            ctx.exec.input_data.clone()
        } else {
            inputs
                .first()
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Null)
        };

        if !node.enabled {
            run.status = NodeRunStatus::Skipped;
            run.output = Some(input.clone());
            run.finished_at = Some(started);
            run.duration_ms = Some(0);
            run.not_before = None;
            clear_lease(&mut run);
            if !self.store().save_node_run(&org, &run, &claim.token).await? {
                return Ok(NodeStep::LeaseLost);
            }
            ctx.log(
                LogLevel::Info,
                "Node disabled: input passed through".into(),
                Some(&node),
                step_no,
                None,
                started,
            );
            ctx.runs.insert(node.id.clone(), run);
            return Ok(NodeStep::Finished(Route::Output(input)));
        }

        ctx.log(
            LogLevel::Info,
            format!("Node started (attempt {})", run.attempts),
            Some(&node),
            step_no,
            Some(json!({ "attempt": run.attempts })),
            started,
        );
        let timeout_ms = node.timeout_ms.unwrap_or(self.config().node_timeout_ms);
        let outcome = match self.resolve_parameters(ctx, &node, &input) {
            Err(e) => NodeOutcome::Failed(NodeError::new(ErrorKind::Expression, e.0)),
            Ok(params) => {
                let Some(node_type) = crate::nodes::node_type(&node.node_type) else {
                    return Ok(NodeStep::Stop(NodeError::new(
                        ErrorKind::Configuration,
                        format!("unknown node type {:?}", node.node_type),
                    )));
                };
                let node_ctx = NodeContext {
                    execution: &ctx.exec,
                    node: &node,
                    attempt: run.attempts,
                    services: &self.inner.nodes,
                    wait_until: run.wait_until,
                    timeout_ms,
                    inputs: &inputs,
                };
                match tokio::time::timeout(
                    Duration::from_millis(timeout_ms),
                    node_type.run(&node_ctx, &params, &input),
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(_) => NodeOutcome::Failed(NodeError::new(
                        ErrorKind::Timeout,
                        format!("node timed out after {timeout_ms} ms"),
                    )),
                }
            }
        };
        let now = self.clock().now();
        let ran_ms = now.millis_since(started);
        let outcome = match outcome {
            NodeOutcome::Output(v) => {
                let size = serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0);
                if size > self.config().max_output_bytes {
                    NodeOutcome::Failed(NodeError::new(
                        ErrorKind::OutputTooLarge,
                        format!(
                            "node output is {size} bytes, over the {} byte limit",
                            self.config().max_output_bytes
                        ),
                    ))
                } else if let Err(m) = crate::limits::check_json_depth(&v, "node output") {
                    NodeOutcome::Failed(NodeError::new(ErrorKind::OutputTooLarge, m))
                } else {
                    NodeOutcome::Output(v)
                }
            }
            other => other,
        };

        match outcome {
            NodeOutcome::Output(output) => {
                run.status = NodeRunStatus::Success;
                run.output = Some(output.clone());
                run.error = None;
                run.finished_at = Some(now);
                run.duration_ms = Some(ran_ms);
                run.not_before = None;
                clear_lease(&mut run);
                if !self.store().save_node_run(&org, &run, &claim.token).await? {
                    ctx.log(
                        LogLevel::Warn,
                        "Node result discarded: lease lost".into(),
                        Some(&node),
                        step_no,
                        None,
                        now,
                    );
                    return Ok(NodeStep::LeaseLost);
                }
                self.metrics().node_ran(ran_ms);
                ctx.log(
                    LogLevel::Info,
                    format!("Node succeeded in {ran_ms} ms"),
                    Some(&node),
                    step_no,
                    Some(json!({ "durationMs": ran_ms })),
                    now,
                );
                ctx.runs.insert(node.id.clone(), run);
                Ok(NodeStep::Finished(Route::Output(output)))
            }
            NodeOutcome::WaitUntil(until) => {
                run.status = NodeRunStatus::Pending;
                run.attempts = run.attempts.saturating_sub(1);
                run.wait_until = Some(until);
                run.not_before = Some(until);
                clear_lease(&mut run);
                if !self.store().save_node_run(&org, &run, &claim.token).await? {
                    return Ok(NodeStep::LeaseLost);
                }
                ctx.log(
                    LogLevel::Info,
                    format!("Node waiting until {until}"),
                    Some(&node),
                    step_no,
                    None,
                    now,
                );
                ctx.runs.insert(node.id.clone(), run);
                self.send_delayed(self.job_for(&ctx.exec, &node.id), until)
                    .await?;
                Ok(NodeStep::Parked)
            }
            NodeOutcome::Failed(error) => {
                let policy = node.retry.clone().unwrap_or_default();
                let max_attempts = policy
                    .max_attempts
                    .unwrap_or(self.config().retry_attempts)
                    .clamp(1, 10);
                let retry_on = policy
                    .retry_on
                    .clone()
                    .unwrap_or_else(|| ErrorKind::TRANSIENT.to_vec());
                if run.attempts < max_attempts && retry_on.contains(&error.kind) {
                    let delay = retry_delay(&policy, self.config(), run.attempts);
                    let due = now.plus(delay);
                    run.status = NodeRunStatus::Pending;
                    run.error = Some(error.clone());
                    run.not_before = Some(due);
                    clear_lease(&mut run);
                    if !self.store().save_node_run(&org, &run, &claim.token).await? {
                        return Ok(NodeStep::LeaseLost);
                    }
                    ctx.log(
                        LogLevel::Warn,
                        format!(
                            "Node failed (attempt {}/{}): {}; retrying in {} ms",
                            run.attempts,
                            max_attempts,
                            error.message,
                            delay.as_millis()
                        ),
                        Some(&node),
                        step_no,
                        Some(json!({ "attempt": run.attempts, "errorKind": error.kind, "delayMs": delay.as_millis() as u64 })),
                        now,
                    );
                    let mut job = self.job_for(&ctx.exec, &node.id);
                    job.attempt = run.attempts + 1;
                    ctx.runs.insert(node.id.clone(), run);
                    self.send_delayed(job, due).await?;
                    return Ok(NodeStep::Parked);
                }
                run.status = NodeRunStatus::Failed;
                run.output = Some(error.to_output());
                run.error = Some(error.clone());
                run.finished_at = Some(now);
                run.duration_ms = Some(ran_ms);
                run.not_before = None;
                clear_lease(&mut run);
                if !self.store().save_node_run(&org, &run, &claim.token).await? {
                    return Ok(NodeStep::LeaseLost);
                }
                self.metrics().node_ran(ran_ms);
                ctx.log(
                    LogLevel::Error,
                    format!("Node failed after {} attempt(s): {}", run.attempts, error.message),
                    Some(&node),
                    step_no,
                    Some(json!({ "errorKind": error.kind, "statusCode": error.status_code, "attempts": run.attempts })),
                    now,
                );
                ctx.runs.insert(node.id.clone(), run);
                Ok(
                    match effective_on_error(&node, ctx.plan.outgoing(&node.id)) {
                        OnError::Stop => NodeStep::Stop(error),
                        OnError::Continue => NodeStep::Finished(Route::Continue),
                        OnError::ErrorOutput => NodeStep::Finished(Route::ErrorOutput),
                    },
                )
            }
        }
    }

    fn resolve_parameters(
        &self,
        ctx: &RunContext,
        node: &Node,
        input: &Value,
    ) -> Result<Map<String, Value>, expr::ExprError> {
        let mut nodes = Map::new();
        for (id, r) in &ctx.runs {
            if r.status.is_finished()
                && let Some(out) = &r.output
            {
                nodes.insert(id.clone(), json!({ "output": out }));
            }
        }
        let trigger = ctx
            .runs
            .get(&ctx.exec.start_node_id)
            .and_then(|r| r.output.clone())
            .unwrap_or_else(|| ctx.exec.input_data.clone());
        let expr_ctx = ExprContext {
            json: input.clone(),
            nodes: Value::Object(nodes),
            trigger,
            execution: json!({ "id": ctx.exec.id, "mode": ctx.exec.mode }),
            workflow: json!({ "id": ctx.wf.id, "name": ctx.wf.name, "version": ctx.wf.version }),
            now: self.clock().now().to_string(),
        };
        match expr::resolve(&Value::Object(node.parameters.clone()), &expr_ctx)? {
            Value::Object(m) => Ok(m),
            _ => Ok(Map::new()),
        }
    }

    /// Sends a job due at `due`, chaining through `not_before` past the queue's longest delay.
    pub(super) async fn send_delayed(&self, mut job: Job, due: Timestamp) -> EngineResult<()> {
        let now = self.clock().now();
        let delay = Duration::from_millis(due.millis_since(now));
        let max = self.queue().max_delay();
        job.not_before = (delay > max).then_some(due);
        self.queue().send(&[job], delay.min(max)).await?;
        Ok(())
    }

    pub(super) async fn flush_logs(&self, ctx: &mut RunContext) {
        let logs = std::mem::take(&mut ctx.logs);
        self.append_logs(&ctx.exec, &logs).await;
    }

    /// Logs are observability, not state: a failure to write them is reported, not raised.
    async fn append_logs(&self, exec: &Execution, logs: &[ExecutionLog]) {
        if logs.is_empty() {
            return;
        }
        if let Err(e) = self.store().append_logs(logs).await {
            tracing::error!(execution_id = %exec.id, error = %e, "could not write execution logs");
        }
    }

    /// Writes the buffered logs when they are many or old enough.
    async fn flush_logs_if_due(&self, ctx: &mut RunContext) {
        let now = self.clock().now();
        let due = ctx.logs.len() >= 100
            || ctx.logs.first().is_some_and(|l| {
                now.millis_since(l.timestamp) >= LOG_FLUSH_AFTER.as_millis() as u64
            });
        if due {
            self.flush_logs(ctx).await;
        }
    }

    /// When every node has finished or been skipped, the execution succeeds (once). A chain
    /// (no fan-out, no join) has no other writer, so its handler's state is complete; any other
    /// shape is read again, since other workers may have finished other branches.
    pub(super) async fn try_finalize(&self, ctx: &mut RunContext) -> EngineResult<()> {
        if !ctx.plan.is_chain() {
            let fresh = self
                .load_run_context(&ctx.exec.organization_id, &ctx.exec.id)
                .await?;
            ctx.exec = fresh.exec;
            ctx.runs = fresh.runs;
        }
        if !matches!(
            ctx.exec.status,
            ExecutionStatus::Pending | ExecutionStatus::Running
        ) {
            return Ok(());
        }
        let all_done = ctx
            .wf
            .nodes
            .iter()
            .all(|n| ctx.runs.get(&n.id).is_some_and(|r| r.status.is_finished()));
        if !all_done {
            return Ok(());
        }
        let now = self.clock().now();
        let mut done = ctx.exec.clone();
        done.status = ExecutionStatus::Success;
        done.output_data = last_output(ctx);
        done.completed_at = Some(now);
        self.apply_metrics(&mut done, ctx);
        // One `from` status when it is known: a conditional write on a single value is cheaper.
        let from: &[ExecutionStatus] = if ctx.exec.status == ExecutionStatus::Running {
            &[ExecutionStatus::Running]
        } else {
            &[ExecutionStatus::Pending, ExecutionStatus::Running]
        };
        let logs = std::mem::take(&mut ctx.logs);
        self.finish_execution(&done, from, logs).await?;
        Ok(())
    }

    /// A node failed with `onError: stop`: the execution fails, naming it.
    async fn fail_execution(
        &self,
        ctx: &mut RunContext,
        node_id: &str,
        error: &NodeError,
    ) -> EngineResult<()> {
        let fresh = self
            .load_run_context(&ctx.exec.organization_id.clone(), &ctx.exec.id.clone())
            .await?;
        let node = ctx.wf.node(node_id);
        let name = node.map_or(node_id, |n| n.name.as_str());
        let now = self.clock().now();
        let mut failed = fresh.exec.clone();
        failed.status = ExecutionStatus::Failed;
        failed.completed_at = Some(now);
        failed.error_message = Some(format!("Node '{name}' failed: {}", error.message));
        failed.error_details = Some(json!({
            "nodeId": node_id,
            "nodeName": name,
            "nodeType": node.map(|n| n.node_type.clone()),
            "errorKind": error.kind,
            "statusCode": error.status_code,
            "message": error.message,
            "attempts": fresh.runs.get(node_id).map(|r| r.attempts),
            "details": error.details,
        }));
        self.apply_metrics(&mut failed, &fresh);
        self.finish_execution(
            &failed,
            &[
                ExecutionStatus::Pending,
                ExecutionStatus::Running,
                ExecutionStatus::Paused,
            ],
            std::mem::take(&mut ctx.logs),
        )
        .await?;
        Ok(())
    }

    /// Past its deadline: `timeout`, and no further node starts.
    pub(super) async fn time_out(&self, exec: &Execution) -> EngineResult<bool> {
        let now = self.clock().now();
        let mut timed_out = exec.clone();
        timed_out.status = ExecutionStatus::Timeout;
        timed_out.completed_at = Some(now);
        timed_out.error_message = Some(format!(
            "Execution timed out: deadline {} passed ({} ms after creation)",
            exec.deadline,
            exec.deadline.millis_since(exec.created_at)
        ));
        if let Ok(ctx) = self.load_run_context(&exec.organization_id, &exec.id).await {
            self.apply_metrics(&mut timed_out, &ctx);
        }
        self.finish_execution(&timed_out, &ExecutionStatus::UNFINISHED, Vec::new())
            .await
    }

    /// The one way to a terminal status: conditional, then counted, logged and published.
    /// `logs`: buffered logs written together with the final one.
    pub(super) async fn finish_execution(
        &self,
        exec: &Execution,
        from: &[ExecutionStatus],
        mut logs: Vec<ExecutionLog>,
    ) -> EngineResult<bool> {
        let mut exec = exec.clone();
        let end = exec.completed_at.unwrap_or_else(|| self.clock().now());
        exec.completed_at = Some(end);
        exec.duration = end.millis_since(exec.started_at.unwrap_or(exec.created_at));
        if !self.store().transition_execution(&exec, from).await? {
            self.append_logs(&exec, &logs).await;
            return Ok(false);
        }
        self.metrics().execution_finished(exec.status.as_str());
        let level = if exec.status == ExecutionStatus::Success {
            LogLevel::Info
        } else {
            LogLevel::Error
        };
        let log = ExecutionLog {
            id: new_id(),
            execution_id: exec.id.clone(),
            organization_id: exec.organization_id.clone(),
            node_id: None,
            level,
            message: match &exec.error_message {
                Some(m) => format!("Execution {}: {m}", exec.status.as_str()),
                None => format!("Execution {} in {} ms", exec.status.as_str(), exec.duration),
            },
            data: None,
            timestamp: end,
            execution_step: 0,
            node_type: None,
            node_name: None,
        };
        logs.push(log);
        self.append_logs(&exec, &logs).await;
        let event = crate::ports::ExecutionEvent {
            execution_id: exec.id.clone(),
            organization_id: exec.organization_id.clone(),
            workflow_id: exec.workflow_id.clone(),
            status: exec.status,
            duration: exec.duration,
            error_message: exec.error_message.clone(),
            at: end,
        };
        if let Err(e) = self.ports().events.publish(&event).await {
            tracing::warn!(execution_id = %exec.id, error = %e, "could not publish execution event");
        }
        tracing::info!(execution_id = %exec.id, status = exec.status.as_str(), duration_ms = exec.duration, "execution finished");
        Ok(true)
    }

    fn apply_metrics(&self, exec: &mut Execution, ctx: &RunContext) {
        let runs: Vec<&NodeRun> = ctx
            .wf
            .nodes
            .iter()
            .filter_map(|n| ctx.runs.get(&n.id))
            .collect();
        let count = |s: NodeRunStatus| runs.iter().filter(|r| r.status == s).count() as u32;
        let timed: Vec<u64> = runs
            .iter()
            .filter(|r| matches!(r.status, NodeRunStatus::Success | NodeRunStatus::Failed))
            .filter_map(|r| r.duration_ms)
            .collect();
        let usage = super::metrics::process_usage();
        exec.metrics.total_nodes = ctx.wf.nodes.len() as u32;
        exec.metrics.successful_nodes = count(NodeRunStatus::Success);
        exec.metrics.failed_nodes = count(NodeRunStatus::Failed);
        exec.metrics.skipped_nodes = count(NodeRunStatus::Skipped);
        exec.metrics.average_node_execution_time = if timed.is_empty() {
            0.0
        } else {
            timed.iter().sum::<u64>() as f64 / timed.len() as f64
        };
        exec.metrics.memory_usage = usage.peak_rss_bytes;
        exec.metrics.cpu_usage = usage.cpu_time_ms;
        exec.nodes_executed = exec.metrics.successful_nodes + exec.metrics.failed_nodes;
        exec.nodes_failed = exec.metrics.failed_nodes;
    }
}

/// The output of the node that finished last (ties: the later in topological order).
fn last_output(ctx: &RunContext) -> Option<Value> {
    ctx.plan
        .order()
        .iter()
        .filter_map(|id| ctx.runs.get(id))
        .filter(|r| matches!(r.status, NodeRunStatus::Success | NodeRunStatus::Failed))
        .enumerate()
        .max_by_key(|(i, r)| (r.finished_at, *i))
        .and_then(|(_, r)| r.output.clone())
}

fn clear_lease(run: &mut NodeRun) {
    run.lease_token = None;
    run.lease_until = None;
}

impl RunContext {
    pub(super) fn log(
        &mut self,
        level: LogLevel,
        message: String,
        node: Option<&Node>,
        step: u32,
        data: Option<Value>,
        at: Timestamp,
    ) {
        self.logs.push(ExecutionLog {
            id: new_id(),
            execution_id: self.exec.id.clone(),
            organization_id: self.exec.organization_id.clone(),
            node_id: node.map(|n| n.id.clone()),
            level,
            message,
            data,
            timestamp: at,
            execution_step: step,
            node_type: node.map(|n| n.node_type.clone()),
            node_name: node.map(|n| n.name.clone()),
        });
    }
}
