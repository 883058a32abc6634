//! Handling one job: claim, load what the node needs, run it, record, route and join.
//!
//! The rule for cached state: a finished node run never changes, so a handler trusts the
//! finished runs it holds and reads again anything else it needs (see [`Engine::refresh`]).
//! A job reads the execution and the runs its node needs (parents, triggers, the outputs its
//! expressions name), never the whole execution: the work per node does not grow with the
//! width or length of the graph.
//!
//! A redelivered job whose node already finished *repairs* instead of running: it re-does
//! the arrivals and enqueues its successor may not have done (the worker that finished it may
//! have died before).

use super::Engine;
use super::compose::{ChildStart, WaitingNext};
use super::gates::StartCheck;
use super::retry::retry_delay;
use crate::expr::{self, ExprContext, NodeRefs};
use crate::graph::{Finished, Plan, effective_on_error, route as route_children, routing_fields};
use crate::model::{
    AttemptEnd, Claim, ClaimOutcome, ErrorKind, Execution, ExecutionLog, ExecutionMove,
    ExecutionStatus, Job, LogLevel, Node, NodeError, NodeOutcome, NodeRun, NodeRunStatus, OnError,
    Resumed, Timestamp, WaitingFor, Workflow, new_id,
};
use crate::nodes::NodeContext;
use crate::ports::{Arrival, ArrivalAt};
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
    /// The node runs this handler read or wrote (finished ones are final; see the module).
    pub runs: HashMap<String, NodeRun>,
    /// Logs not yet written (flushed once per node step).
    pub logs: Vec<ExecutionLog>,
}

impl RunContext {
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.plan.node(&self.wf, id)
    }

    /// A finished run this handler holds (final: it will not change).
    pub(super) fn finished(&self, id: &str) -> Option<&NodeRun> {
        self.runs.get(id).filter(|r| r.status.is_finished())
    }
}

/// How a finished node's connections are decided.
#[derive(Debug, Clone)]
pub(super) enum Route {
    /// Finished with an output: what routing reads of it ([`routing_fields`]).
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
            Route::Dead => Finished::Dead,
        }
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
        NodeRunStatus::Success => Some(Route::Output(
            run.output.as_ref().map_or(Value::Null, routing_fields),
        )),
        NodeRunStatus::Skipped => Some(
            run.output
                .as_ref()
                .map_or(Route::Dead, |o| Route::Output(routing_fields(o))),
        ),
        NodeRunStatus::Failed => {
            let node = ctx.node(&run.node_id)?;
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
        let Some((wf, plan)) = self.job_workflow(job).await? else {
            tracing::warn!(execution_id = %job.execution_id, "job dropped: execution or workflow not found");
            return Ok(JobOutcome::Done);
        };
        let Some(node) = plan.node(&wf, &job.node_id).cloned() else {
            tracing::warn!(node_id = %job.node_id, "job for an unknown node dropped");
            return Ok(JobOutcome::Done);
        };
        let mut claim = self.new_claim(&node);
        let mut outcome = self
            .store()
            .claim_node(org, &job.execution_id, &job.node_id, &claim)
            .await?;
        if let ClaimOutcome::Waiting(run) = &outcome {
            // The wait may be moved along (children) or be over: then claim to resume.
            if matches!(self.on_waiting(job, run).await?, WaitingNext::Resume) {
                claim.resume = true;
                outcome = self
                    .store()
                    .claim_node(org, &job.execution_id, &job.node_id, &claim)
                    .await?;
            }
        }
        match outcome {
            ClaimOutcome::Claimed(run) => {
                self.changed(&job.execution_id);
                let needs = plan.needs(&node.id);
                let Some(mut ctx) = self
                    .load_context(org, &job.execution_id, wf, plan, needs)
                    .await?
                else {
                    return Ok(JobOutcome::Done);
                };
                ctx.runs.insert(run.node_id.clone(), run.clone());
                // The read after the claim: an execution that stopped meanwhile gets it back.
                if !self.may_start_nodes(&mut ctx).await? {
                    self.give_back(&ctx, run, &claim).await?;
                    return Ok(JobOutcome::Done);
                }
                self.execute_chain(&mut ctx, run, claim, inline_until)
                    .await?;
            }
            ClaimOutcome::Finished(run) => {
                let needs = Some(vec![run.node_id.clone()]);
                if let Some(mut ctx) = self
                    .load_context(org, &job.execution_id, wf, plan, needs)
                    .await?
                {
                    ctx.runs.insert(run.node_id.clone(), run.clone());
                    self.repair(&mut ctx, &run).await?;
                }
            }
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
            ClaimOutcome::NotReady | ClaimOutcome::Waiting(_) => {
                tracing::debug!(node_id = %job.node_id, "job for a node that is not ready dropped");
            }
            ClaimOutcome::Stopped(status) => {
                // Terminal or paused: the job is dropped (resume queues the node again).
                // Otherwise the deadline passed: the execution times out.
                if status.runs_nodes()
                    && let Some(exec) = self.store().get_execution(org, &job.execution_id).await?
                    && self.clock().now() > exec.deadline
                {
                    self.time_out(&exec).await?;
                }
            }
        }
        Ok(JobOutcome::Done)
    }

    /// The workflow version and plan a job runs: named by the job, or read from its
    /// execution (jobs of earlier versions). None when either is gone.
    async fn job_workflow(&self, job: &Job) -> EngineResult<Option<(Arc<Workflow>, Arc<Plan>)>> {
        let org = &job.organization_id;
        let (id, version, inline_of) = match (&job.workflow_id, job.workflow_version) {
            (Some(id), Some(version)) => (id.clone(), version, job.inline_of.clone()),
            _ => match self.store().get_execution(org, &job.execution_id).await? {
                Some(exec) => (exec.workflow_id, exec.workflow_version, exec.inline_of),
                None => return Ok(None),
            },
        };
        match self
            .version_or_inline(org, &id, version, inline_of.as_deref())
            .await
        {
            Ok(found) => Ok(Some(found)),
            Err(EngineError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The execution and the runs named by `needs` (None: all of them), in one read.
    pub(super) async fn load_context(
        &self,
        org: &str,
        execution_id: &str,
        wf: Arc<Workflow>,
        plan: Arc<Plan>,
        needs: Option<Vec<String>>,
    ) -> EngineResult<Option<RunContext>> {
        let state = match &needs {
            Some(ids) => {
                self.store()
                    .get_execution_runs(org, execution_id, ids)
                    .await?
            }
            None => self.store().get_execution_state(org, execution_id).await?,
        };
        Ok(state.map(|state| RunContext {
            exec: state.execution,
            wf,
            plan,
            runs: state
                .node_runs
                .into_iter()
                .map(|r| (r.node_id.clone(), r))
                .collect(),
            logs: Vec::new(),
        }))
    }

    /// The execution with every node run (the detail, finalizing, lifecycle moves).
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
        let (wf, plan) = self.workflow_and_plan_of(&exec).await?;
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

    /// Reads the execution again (the check after an inline claim) with whatever `node_id`
    /// needs that this handler does not hold finished.
    async fn refresh(&self, ctx: &mut RunContext, node_id: &str) -> EngineResult<bool> {
        let org = ctx.exec.organization_id.clone();
        let state = match ctx.plan.needs(node_id) {
            Some(ids) => {
                let missing: Vec<String> = ids
                    .into_iter()
                    .filter(|id| ctx.finished(id).is_none())
                    .collect();
                self.store()
                    .get_execution_runs(&org, &ctx.exec.id, &missing)
                    .await?
            }
            None => self.store().get_execution_state(&org, &ctx.exec.id).await?,
        };
        let Some(state) = state else {
            return Ok(false);
        };
        ctx.exec = state.execution;
        for run in state.node_runs {
            // What this handler wrote itself (the claimed run) is newer than a read of it.
            if ctx.finished(&run.node_id).is_none() && run.node_id != node_id {
                ctx.runs.insert(run.node_id.clone(), run);
            }
        }
        Ok(true)
    }

    /// After a claim: terminal or paused executions start no node; a pending one becomes
    /// running; one past its deadline times out.
    async fn may_start_nodes(&self, ctx: &mut RunContext) -> EngineResult<bool> {
        let now = self.clock().now();
        if !ctx.exec.status.runs_nodes() {
            return Ok(false);
        }
        if now > ctx.exec.deadline {
            self.time_out(&ctx.exec).await?;
            return Ok(false);
        }
        if ctx.exec.status == ExecutionStatus::Pending {
            // Flow control (SPEC §9): superseded, not yet, or not without a slot (it gets its
            // jobs again when it gets one).
            match self.start_check(&ctx.exec).await? {
                StartCheck::Go => {}
                StartCheck::Stop => return Ok(false),
                StartCheck::Later(due) => {
                    let job = self.job_for(&ctx.exec, &ctx.exec.start_node_id);
                    self.send_delayed(job, due).await?;
                    return Ok(false);
                }
            }
            let running = ExecutionMove::Start.apply(&ctx.exec, now);
            if self
                .store()
                .transition_execution(&running, ExecutionMove::Start.from())
                .await?
            {
                self.changed(&running.id);
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

    pub(super) fn new_claim(&self, node: &Node) -> Claim {
        let now = self.clock().now();
        let timeout = self.config().node_timeout(node.timeout_ms);
        Claim {
            token: uuid::Uuid::new_v4().to_string(),
            now,
            lease_until: now.plus(Duration::from_millis(
                timeout + self.config().lease_margin_ms,
            )),
            resume: false,
        }
    }

    /// Gives back a claimed run that will not be started now (its execution stopped).
    ///
    /// A resume may have read the run while this handler held it, and so not queued it:
    /// once the run is given back, the execution is read again, and if it runs nodes by
    /// then the node is queued here (one of the two reads sees the other's write).
    async fn give_back(&self, ctx: &RunContext, run: NodeRun, claim: &Claim) -> EngineResult<()> {
        let org = &ctx.exec.organization_id;
        let first = run.attempts == 1 && run.started_at == Some(claim.now);
        if !self
            .store()
            .save_node_run(org, &run.unclaimed(first), &claim.token)
            .await?
        {
            return Ok(());
        }
        self.changed(&ctx.exec.id);
        if !ctx.exec.status.is_terminal()
            && let Some(now) = self.store().get_execution(org, &ctx.exec.id).await?
            && now.status.runs_nodes()
        {
            self.send_now(&mut vec![self.job_for(&now, &run.node_id)])
                .await?;
        }
        Ok(())
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
            // The read after an inline claim, with what the next node needs.
            if !self.refresh(ctx, &next.node_id).await? || !self.may_start_nodes(ctx).await? {
                self.give_back(ctx, next, &next_claim).await?;
                return Ok(());
            }
            self.flush_logs_if_due(ctx).await;
            run = next;
            claim = next_claim;
        }
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
        if step.enqueue.is_empty() && !step.waiting {
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
        let exec_id = ctx.exec.id.clone();
        let plan = ctx.plan.clone();
        let mut inline = inline;
        let mut work: Vec<(String, Route)> = vec![(from.to_string(), route)];
        while let Some((node_id, route)) = work.pop() {
            for (child, taken) in route_children(plan.outgoing(&node_id), route.as_finished()) {
                let claim = match (inline, ctx.node(&child)) {
                    (true, Some(n)) => Some(self.new_claim(n)),
                    _ => None,
                };
                let arrival = ArrivalAt {
                    execution_id: &exec_id,
                    child: &child,
                    parent: &node_id,
                    taken,
                    parents: plan.parents(&child).len(),
                    parent_index: plan
                        .parents(&child)
                        .iter()
                        .position(|p| *p == node_id)
                        .unwrap_or(0),
                    at: self.clock().now(),
                };
                let arrived = self.store().arrive(&org, &arrival, claim.as_ref()).await?;
                self.changed(&exec_id);
                match arrived {
                    Arrival::Waiting => step.waiting = true,
                    Arrival::Ready(run) => {
                        let claimed = claim.filter(|c| {
                            run.status == NodeRunStatus::Running
                                && run.lease_token.as_deref() == Some(c.token.as_str())
                        });
                        ctx.runs.insert(child.clone(), run.clone());
                        match claimed {
                            Some(c) => {
                                step.inline = Some((run, c));
                                inline = false;
                            }
                            None => step.enqueue.push(self.job_for(&ctx.exec, &child)),
                        }
                    }
                    Arrival::Skipped(run) => {
                        let now = self.clock().now();
                        if let Some(node) = ctx.node(&child).cloned() {
                            ctx.log(
                                LogLevel::Info,
                                "Node skipped: no taken connection reached it".into(),
                                Some(&node),
                                plan.step(&child),
                                None,
                                now,
                            );
                        }
                        ctx.runs.insert(child.clone(), run);
                        work.push((child, Route::Dead));
                    }
                    Arrival::Duplicate(run) => {
                        // Recorded before (a redelivered job): redo only what may be missing.
                        if run.status.is_finished() {
                            if let Some(r) = finished_route(ctx, &run) {
                                work.push((child.clone(), r));
                            }
                        } else if run.ready {
                            step.enqueue.push(self.job_for(&ctx.exec, &child));
                        } else {
                            step.waiting = true;
                        }
                        ctx.runs.insert(child, run);
                    }
                    Arrival::AlreadyDecided => {
                        // A duplicate job is harmless: it repairs or is dropped.
                        step.enqueue.push(self.job_for(&ctx.exec, &child));
                    }
                }
            }
        }
        Ok(())
    }

    /// The outputs of the node's parents whose connection to it was taken, in parent order.
    fn inputs(&self, ctx: &RunContext, node_id: &str) -> Vec<(String, Value)> {
        let mut inputs = Vec::new();
        for parent in ctx.plan.parents(node_id) {
            let Some(run) = ctx.finished(parent) else {
                continue;
            };
            let Some(route) = finished_route(ctx, run) else {
                continue;
            };
            if ctx.plan.edge_taken(parent, node_id, route.as_finished()) {
                inputs.push((parent.clone(), run.output.clone().unwrap_or(Value::Null)));
            }
        }
        inputs
    }

    /// Runs one claimed node and records its result (or its retry or wait).
    async fn execute_node(
        &self,
        ctx: &mut RunContext,
        run: NodeRun,
        claim: &Claim,
    ) -> EngineResult<NodeStep> {
        let org = ctx.exec.organization_id.clone();
        let Some(node) = ctx.node(&run.node_id).cloned() else {
            return Ok(NodeStep::Stop(NodeError::new(
                ErrorKind::Configuration,
                "node not in workflow",
            )));
        };
        let step_no = ctx.plan.step(&node.id);
        let started = self.clock().now();
        let inputs = self.inputs(ctx, &node.id);
        let input = if ctx.plan.parents(&node.id).is_empty() {
            ctx.exec.input_data.clone()
        } else {
            inputs
                .first()
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Null)
        };

        if !node.enabled {
            let skipped = run.disabled(input.clone(), started);
            if !self
                .store()
                .save_node_run(&org, &skipped, &claim.token)
                .await?
            {
                return Ok(NodeStep::LeaseLost);
            }
            self.changed(&ctx.exec.id);
            ctx.log(
                LogLevel::Info,
                "Node disabled: input passed through".into(),
                Some(&node),
                step_no,
                None,
                started,
            );
            ctx.runs.insert(node.id.clone(), skipped);
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
        // A waiting node claimed back: what it waited for.
        let resumed = match run.waiting {
            Some(WaitingFor::Children) => Some(Resumed::Children(
                self.child_results(&ctx.exec, &node.id).await?,
            )),
            Some(WaitingFor::Callback) => Some(
                match self
                    .store()
                    .get_callback(&org, &ctx.exec.id, &node.id)
                    .await?
                {
                    Some(received) => Resumed::Callback(received.callback),
                    None => Resumed::TimedOut,
                },
            ),
            None => None,
        };
        let outcome = self
            .run_node(ctx, &node, &run, &inputs, &input, resumed)
            .await
            .map_err(|e| NodeError::new(ErrorKind::Configuration, e));
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return Ok(NodeStep::Stop(e)),
        };
        // Waits: children to start, a callback to come.
        let outcome = match outcome {
            NodeOutcome::StartChildren(plan) => {
                match self.start_children(ctx, &node.id, plan).await? {
                    ChildStart::Waiting => {
                        return self
                            .park(ctx, &node, &run, claim, WaitingFor::Children, None)
                            .await;
                    }
                    ChildStart::Detached(output) => self.checked_output(output),
                    ChildStart::Failed(error) => NodeOutcome::Failed(error),
                }
            }
            NodeOutcome::AwaitCallback {
                timeout_ms,
                pause_deadline,
            } => {
                match self
                    .store()
                    .get_callback(&org, &ctx.exec.id, &node.id)
                    .await?
                {
                    // It came early: the node completes at once.
                    Some(received) => self
                        .run_node(
                            ctx,
                            &node,
                            &run,
                            &inputs,
                            &input,
                            Some(Resumed::Callback(received.callback)),
                        )
                        .await
                        .unwrap_or_else(|e| {
                            NodeOutcome::Failed(NodeError::new(ErrorKind::Configuration, e))
                        }),
                    None => {
                        let wait = Duration::from_millis(timeout_ms);
                        if pause_deadline {
                            self.move_deadlines(&ctx.exec, wait).await?;
                            ctx.exec.deadline = ctx.exec.deadline.plus(wait);
                        }
                        let until = self.clock().now().plus(wait);
                        return self
                            .park(ctx, &node, &run, claim, WaitingFor::Callback, Some(until))
                            .await;
                    }
                }
            }
            other => other,
        };
        let now = self.clock().now();
        let policy = node.retry.clone().unwrap_or_default();
        let (ended, end) = run.end_attempt(
            outcome,
            &policy,
            self.config().retry_attempts,
            |n| retry_delay(&policy, self.config(), n),
            started,
            now,
        );
        if !self
            .store()
            .save_node_run(&org, &ended, &claim.token)
            .await?
        {
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
        self.changed(&ctx.exec.id);
        let attempts = ended.attempts;
        let ran_ms = now.millis_since(started);
        let fields = ended.output.as_ref().map_or(Value::Null, routing_fields);
        ctx.runs.insert(node.id.clone(), ended);
        Ok(match end {
            AttemptEnd::Succeeded => {
                self.metrics().node_ran(&node.node_type, "success", ran_ms);
                ctx.log(
                    LogLevel::Info,
                    format!("Node succeeded in {ran_ms} ms"),
                    Some(&node),
                    step_no,
                    Some(json!({ "durationMs": ran_ms })),
                    now,
                );
                NodeStep::Finished(Route::Output(fields))
            }
            AttemptEnd::Wait { until } => {
                ctx.log(
                    LogLevel::Info,
                    format!("Node waiting until {until}"),
                    Some(&node),
                    step_no,
                    None,
                    now,
                );
                self.send_delayed(self.job_for(&ctx.exec, &node.id), until)
                    .await?;
                NodeStep::Parked
            }
            AttemptEnd::Retry {
                error,
                delay,
                due,
                max_attempts,
            } => {
                ctx.log(
                    LogLevel::Warn,
                    format!(
                        "Node failed (attempt {attempts}/{max_attempts}): {}; retrying in {} ms",
                        error.message,
                        delay.as_millis()
                    ),
                    Some(&node),
                    step_no,
                    Some(json!({ "attempt": attempts, "errorKind": error.kind, "delayMs": delay.as_millis() as u64 })),
                    now,
                );
                let mut job = self.job_for(&ctx.exec, &node.id);
                job.attempt = attempts + 1;
                self.send_delayed(job, due).await?;
                NodeStep::Parked
            }
            AttemptEnd::Failed(error) => {
                self.metrics().node_ran(&node.node_type, "failed", ran_ms);
                ctx.log(
                    LogLevel::Error,
                    format!("Node failed after {attempts} attempt(s): {}", error.message),
                    Some(&node),
                    step_no,
                    Some(json!({ "errorKind": error.kind, "statusCode": error.status_code, "attempts": attempts })),
                    now,
                );
                match effective_on_error(&node, ctx.plan.outgoing(&node.id)) {
                    OnError::Stop => NodeStep::Stop(error),
                    OnError::Continue => NodeStep::Finished(Route::Continue),
                    OnError::ErrorOutput => NodeStep::Finished(Route::ErrorOutput),
                }
            }
        })
    }

    /// Parks a claimed node `waiting` (children, a callback): the run is saved so (its lease
    /// released), a job comes back when the wait may be over.
    async fn park(
        &self,
        ctx: &mut RunContext,
        node: &Node,
        run: &NodeRun,
        claim: &Claim,
        what: WaitingFor,
        until: Option<Timestamp>,
    ) -> EngineResult<NodeStep> {
        let org = ctx.exec.organization_id.clone();
        let waiting = run.waiting_for(what.clone(), until);
        if !self
            .store()
            .save_node_run(&org, &waiting, &claim.token)
            .await?
        {
            return Ok(NodeStep::LeaseLost);
        }
        self.changed(&ctx.exec.id);
        let now = self.clock().now();
        let job = self.job_for(&ctx.exec, &node.id);
        let message = match what {
            WaitingFor::Children => {
                // The heartbeat: repairs a lost child job if the children stop moving.
                self.schedule_heartbeat(&job, 0).await?;
                // Children may all have ended before the node was parked.
                if let Some(tally) = self
                    .store()
                    .get_child_tally(&org, &ctx.exec.id, &node.id)
                    .await?
                    && tally.complete()
                {
                    self.send_now(&mut vec![job]).await?;
                }
                "Node waiting for its child executions".to_string()
            }
            WaitingFor::Callback => {
                let until = until.unwrap_or(now);
                // The timeout; and the callback may have come while the node parked.
                self.send_delayed(job.clone(), until).await?;
                if self
                    .store()
                    .get_callback(&org, &ctx.exec.id, &node.id)
                    .await?
                    .is_some()
                {
                    self.send_now(&mut vec![job]).await?;
                }
                format!("Node waiting for its callback until {until}")
            }
        };
        ctx.log(
            LogLevel::Info,
            message,
            Some(node),
            ctx.plan.step(&node.id),
            None,
            now,
        );
        ctx.runs.insert(node.id.clone(), waiting);
        Ok(NodeStep::Parked)
    }

    /// Resolves the node's parameters and runs it within its timeout, its output checked
    /// against the limits. `Err`: the node's type is unknown (a configuration error that
    /// stops the execution).
    async fn run_node(
        &self,
        ctx: &RunContext,
        node: &Node,
        run: &NodeRun,
        inputs: &[(String, Value)],
        input: &Value,
        resumed: Option<Resumed>,
    ) -> Result<NodeOutcome, String> {
        let Some(node_type) = crate::nodes::node_type(&node.node_type) else {
            return Err(format!("unknown node type {:?}", node.node_type));
        };
        let timeout_ms = self.config().node_timeout(node.timeout_ms);
        let params = match self.resolve_parameters(ctx, node, input) {
            Ok(params) => params,
            Err(e) => {
                return Ok(NodeOutcome::Failed(NodeError::new(
                    ErrorKind::Expression,
                    e.0,
                )));
            }
        };
        let node_ctx = NodeContext {
            execution: &ctx.exec,
            node,
            attempt: run.attempts,
            services: &self.inner.nodes,
            wait_until: run.wait_until,
            timeout_ms,
            inputs,
        };
        if let Some(resumed) = resumed {
            return Ok(match node_type.resume(&node_ctx, &params, input, resumed) {
                NodeOutcome::Output(v) => self.checked_output(v),
                other => other,
            });
        }
        let outcome = match tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            node_type.run(&node_ctx, &params, input),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => NodeOutcome::Failed(NodeError::new(
                ErrorKind::Timeout,
                format!("node timed out after {timeout_ms} ms"),
            )),
        };
        Ok(match outcome {
            NodeOutcome::Output(v) => self.checked_output(v),
            other => other,
        })
    }

    /// An output over the size or nesting limit fails the node.
    fn checked_output(&self, v: Value) -> NodeOutcome {
        let size = serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0);
        let max = self.config().max_output_bytes;
        if size > max {
            return NodeOutcome::Failed(NodeError::new(
                ErrorKind::OutputTooLarge,
                format!("node output is {size} bytes, over the {max} byte limit"),
            ));
        }
        if let Err(m) = crate::limits::check_json_depth(&v, "node output") {
            return NodeOutcome::Failed(NodeError::new(ErrorKind::OutputTooLarge, m));
        }
        NodeOutcome::Output(v)
    }

    fn resolve_parameters(
        &self,
        ctx: &RunContext,
        node: &Node,
        input: &Value,
    ) -> Result<Map<String, Value>, expr::ExprError> {
        // Only the outputs the expressions name (all of them when one reads `nodes` whole).
        let mut nodes = Map::new();
        let mut add = |id: &String, r: &NodeRun| {
            if r.status.is_finished()
                && let Some(out) = &r.output
            {
                nodes.insert(id.clone(), json!({ "output": out }));
            }
        };
        match ctx.plan.reads(&node.id) {
            NodeRefs::None => {}
            NodeRefs::Some(ids) => {
                for id in ids {
                    if let Some(r) = ctx.runs.get(id) {
                        add(id, r);
                    }
                }
            }
            NodeRefs::All => ctx.runs.iter().for_each(|(id, r)| add(id, r)),
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
            callbacks: self.callback_context(&ctx.exec, &ctx.wf),
        };
        // Raw parameters (an inline child workflow) go to the node as written.
        let raw = crate::nodes::node_type(&node.node_type).map_or(&[][..], |t| t.raw_parameters());
        let (kept, to_resolve): (Map<String, Value>, Map<String, Value>) = node
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| raw.contains(&k.as_str()));
        match expr::resolve(&Value::Object(to_resolve), &expr_ctx)? {
            Value::Object(mut m) => {
                m.extend(kept);
                Ok(m)
            }
            _ => Ok(kept),
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
    pub(super) async fn append_logs(&self, exec: &Execution, logs: &[ExecutionLog]) {
        if logs.is_empty() {
            return;
        }
        if let Err(e) = self.store().append_logs(logs).await {
            tracing::error!(execution_id = %exec.id, error = %e, "could not write execution logs");
        }
        self.changed(&exec.id);
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
        let id = self
            .logs
            .last()
            .and_then(|prev| crate::model::next_log_id(&prev.id, at))
            .unwrap_or_else(new_id);
        self.logs.push(ExecutionLog {
            id,
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
