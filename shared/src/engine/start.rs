//! Starting an execution: create it, lay out its first node runs, queue its first job.

use super::gates::Hold;
use super::run::{Route, Step};
use super::{Engine, Principal};
use crate::graph::Plan;
use crate::model::{
    Execution, ExecutionMode, ExecutionMove, Job, NodeRun, NodeRunStatus, Priority, Timestamp,
    Workflow, WorkflowStatus, new_id,
};
use crate::ports::Created;
use crate::{EngineError, EngineResult};
use serde_json::{Value, json};
use std::time::Duration;

/// The runs an execution is created with (see [`Engine::first_runs`]).
pub(super) struct FirstRuns {
    pub runs: Vec<NodeRun>,
    pub copied_ids: Vec<String>,
    pub skipped_roots: Vec<String>,
}

/// A request to run a workflow (API, webhook, schedule, CLI).
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    pub principal: Principal,
    pub workflow_id: String,
    pub mode: ExecutionMode,
    /// What the trigger outputs: the API's `inputData`, the webhook request, `{scheduledAt}`.
    pub input: Value,
    /// Execution timeout (ms); None: the workflow's `settings.timeoutMs` or the default.
    pub timeout_ms: Option<u64>,
    /// Already scoped by the caller (e.g. `api:{key}`, `webhook:{id}:{key}`, `schedule:{wf}:{node}:{t}`).
    pub idempotency_key: Option<String>,
    /// The trigger node to start from; None: the first `trigger.manual`, else the first trigger.
    pub start_node_id: Option<String>,
    /// None: the mode's default (`manual` and `api` high, the others normal).
    pub priority: Option<Priority>,
}

impl Engine {
    /// Starts an execution. Returns it and whether it was created now (false: the
    /// idempotency key returned an earlier one).
    pub async fn start_execution(&self, req: StartRequest) -> EngineResult<(Execution, bool)> {
        let wf = self
            .store()
            .get_workflow(&req.principal.organization_id, &req.workflow_id)
            .await?
            .ok_or_else(|| EngineError::NotFound("Workflow not found".into()))?;
        self.start_execution_of(&wf, req).await
    }

    /// [`start_execution`](Self::start_execution) of a workflow the caller has just read
    /// (`wf` is the current version of `req.workflow_id` in the principal's organization).
    pub async fn start_execution_of(
        &self,
        wf: &Workflow,
        req: StartRequest,
    ) -> EngineResult<(Execution, bool)> {
        let org = &req.principal.organization_id;
        if wf.id != req.workflow_id || &wf.organization_id != org {
            return Err(EngineError::NotFound("Workflow not found".into()));
        }
        if wf.status == WorkflowStatus::Archived {
            return Err(EngineError::Conflict("Workflow is archived".into()));
        }
        let timeout_ms = req
            .timeout_ms
            .or(wf.settings.timeout_ms)
            .unwrap_or(self.config().default_timeout_ms);
        if !(1000..=self.config().max_timeout_ms).contains(&timeout_ms) {
            return Err(EngineError::BadRequest(format!(
                "timeout must be between 1000 and {} ms",
                self.config().max_timeout_ms
            )));
        }
        let start_node_id = crate::triggers::start_node(wf, req.start_node_id.as_deref())
            .map_err(EngineError::BadRequest)?;
        let now = self.clock().now();
        let mut exec = Execution::new(
            new_id(),
            wf,
            &req.principal,
            req.mode,
            req.input,
            start_node_id,
            now,
            now.plus(Duration::from_millis(timeout_ms)),
        );
        if let Some(priority) = req.priority {
            exec.priority = priority;
        }
        self.launch(exec, wf, req.idempotency_key.as_deref(), Vec::new())
            .await
    }

    /// One tick of a `trigger.schedule` node: starts an execution (mode `scheduled`, input
    /// `{scheduledAt}`) of an `active` workflow, once per (workflow, tick) however often it is
    /// delivered. None when the workflow is gone or no longer active.
    /// `node_id`: the schedule trigger that ticked (None: the first enabled one, as a
    /// platform scheduler with one schedule per workflow sends). A disabled trigger starts
    /// nothing.
    pub async fn fire_schedule(
        &self,
        org: &str,
        workflow_id: &str,
        node_id: Option<&str>,
        scheduled_at: Timestamp,
    ) -> EngineResult<Option<Execution>> {
        let Some(wf) = self.store().get_workflow(org, workflow_id).await? else {
            return Ok(None);
        };
        let Some(node) = crate::triggers::schedule_node(&wf, node_id) else {
            return Ok(None);
        };
        let req = StartRequest {
            principal: Principal {
                user_id: wf.user_id.clone(),
                organization_id: org.to_string(),
            },
            workflow_id: wf.id.clone(),
            mode: ExecutionMode::Scheduled,
            input: json!({ "scheduledAt": scheduled_at }),
            timeout_ms: None,
            idempotency_key: Some(format!(
                "schedule:{}:{}:{}",
                wf.id,
                node.id,
                scheduled_at.millis()
            )),
            start_node_id: Some(node.id.clone()),
            priority: None,
        };
        Ok(Some(self.start_execution_of(&wf, req).await?.0))
    }

    /// The runs an execution starts with: its start trigger ready, every other trigger
    /// skipped (its path is dead), and `copied` finished runs carried over (redrive).
    pub(super) fn first_runs(
        &self,
        exec: &Execution,
        plan: &Plan,
        copied: Vec<NodeRun>,
    ) -> FirstRuns {
        let now = self.clock().now();
        let mut runs: Vec<NodeRun> = copied;
        let copied_ids: Vec<String> = runs.iter().map(|r| r.node_id.clone()).collect();
        let mut skipped_roots = Vec::new();
        for root in plan.roots() {
            if copied_ids.iter().any(|c| c == root) {
                continue;
            }
            let mut run = NodeRun::new(&exec.id, root);
            if *root == exec.start_node_id {
                run.ready = true;
            } else {
                run.status = NodeRunStatus::Skipped;
                run.finished_at = Some(now);
                skipped_roots.push(root.to_string());
            }
            runs.push(run);
        }
        FirstRuns {
            runs,
            copied_ids,
            skipped_roots,
        }
    }

    /// Replays the routing out of skipped triggers (their paths are dead) and of carried
    /// over runs; returns the jobs that became due.
    pub(super) async fn replay_skipped_roots(
        &self,
        exec: &Execution,
        skipped_roots: &[String],
    ) -> EngineResult<Vec<Job>> {
        self.replay(exec, skipped_roots, &[]).await
    }

    async fn replay(
        &self,
        exec: &Execution,
        skipped_roots: &[String],
        copied_ids: &[String],
    ) -> EngineResult<Vec<Job>> {
        let mut ctx = self
            .load_run_context(&exec.organization_id, &exec.id)
            .await?;
        let mut step = Step::default();
        for root in skipped_roots {
            self.advance(&mut ctx, root, Route::Dead, false, &mut step)
                .await?;
        }
        for id in copied_ids {
            let Some(run) = ctx.runs.get(id).cloned() else {
                continue;
            };
            let Some(finished) = super::run::finished_route(&ctx, &run) else {
                continue;
            };
            self.advance(&mut ctx, id, finished, false, &mut step)
                .await?;
        }
        if step.enqueue.is_empty() && copied_ids.contains(&exec.start_node_id) {
            // Nothing to run: every node was carried over or decided.
            self.try_finalize(&mut ctx).await?;
        }
        self.flush_logs(&mut ctx).await;
        Ok(step.enqueue)
    }

    /// Creates the execution, lays out its node runs and queues its first jobs.
    /// `copied`: finished runs carried over (redrive); their routing is replayed.
    pub(super) async fn launch(
        &self,
        mut exec: Execution,
        wf: &Workflow,
        idempotency_key: Option<&str>,
        copied: Vec<NodeRun>,
    ) -> EngineResult<(Execution, bool)> {
        // Flow control: its keys, once; it waits until let through.
        self.set_flow_keys(wf, &mut exec)?;
        let now = self.clock().now();
        let (_, plan) = self.cached_version(wf);
        let first = self.first_runs(&exec, &plan, copied);
        let window = Duration::from_millis(self.config().idempotency_window_ms);
        let created = self
            .store()
            .create_execution_with_runs(&exec, &first.runs, idempotency_key, now.minus(window))
            .await;
        let mut exec = match created {
            Ok(Created::Existing(existing)) => return Ok((existing, false)),
            Ok(Created::Created(exec)) => exec,
            Err(e) => {
                // The execution may have been created without its runs (see the port).
                self.fail_to_queue(&exec, &e.to_string()).await;
                return Err(e.into());
            }
        };
        self.metrics().execution_started(exec.mode.as_str());
        let org = exec.organization_id.clone();
        let hold = match self.hold_back(&exec, wf).await {
            Ok(Hold::Superseded) => {
                let exec = self
                    .store()
                    .get_execution(&org, &exec.id)
                    .await?
                    .unwrap_or(exec);
                return Ok((exec, true));
            }
            Ok(hold) => hold,
            Err(e) => {
                self.fail_to_queue(&exec, &e.to_string()).await;
                return Err(e);
            }
        };

        let mut jobs = Vec::new();
        if !first.copied_ids.contains(&exec.start_node_id) {
            jobs.push(self.job_for(&exec, &exec.start_node_id));
        }
        if !first.skipped_roots.is_empty() || !first.copied_ids.is_empty() {
            jobs.extend(
                self.replay(&exec, &first.skipped_roots, &first.copied_ids)
                    .await?,
            );
            if jobs.is_empty() {
                let exec = self
                    .store()
                    .get_execution(&org, &exec.id)
                    .await?
                    .unwrap_or(exec);
                return Ok((exec, true));
            }
        }
        let sent = match hold {
            // In line: its ready runs are queued when it gets a slot.
            Hold::Queued | Hold::Superseded => return Ok((exec, true)),
            Hold::Until(due) => {
                let mut sent = Ok(());
                for job in jobs {
                    sent = sent.and(self.send_delayed(job, due).await);
                }
                sent
            }
            Hold::Now => {
                exec.pending_reason = None;
                self.send_now(&mut jobs).await
            }
        };
        if let Err(e) = sent {
            self.fail_to_queue(&exec, &e.to_string()).await;
            return Err(e);
        }
        Ok((exec, true))
    }

    pub(super) fn job_for(&self, exec: &Execution, node_id: &str) -> Job {
        Job {
            execution_id: exec.id.clone(),
            organization_id: exec.organization_id.clone(),
            node_id: node_id.to_string(),
            attempt: 0,
            workflow_id: Some(exec.workflow_id.clone()),
            workflow_version: Some(exec.workflow_version),
            heartbeat: None,
            inline_of: exec.inline_of.clone(),
            not_before: None,
            priority: Some(exec.priority),
        }
    }

    /// Seed 000 made real: an execution whose first job could not be queued is `failed`.
    async fn fail_to_queue(&self, exec: &Execution, reason: &str) {
        let mut failed = ExecutionMove::Fail.apply(exec, self.clock().now());
        failed.error_message = Some("Failed to queue execution".into());
        failed.error_details = Some(json!({ "details": reason }));
        if let Err(e) = self
            .finish_execution(failed, ExecutionMove::Fail, Vec::new())
            .await
        {
            tracing::error!(execution_id = %exec.id, error = %e, "could not mark execution failed");
        }
    }
}
