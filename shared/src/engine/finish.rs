//! Ending an execution: success when every node finished, failure when a node stops it,
//! timeout past its deadline; the one way to a terminal status ([`Engine::finish_execution`]).

use super::Engine;
use super::run::RunContext;
use crate::EngineResult;
use crate::model::{
    Execution, ExecutionLog, ExecutionMove, ExecutionStatus, LogLevel, NodeError, NodeRun,
    NodeRunStatus, new_id,
};
use serde_json::{Value, json};

impl Engine {
    /// When every node has finished or been skipped, the execution succeeds (once). The
    /// store counts finished nodes, so a fan-out's branches do not each read the whole
    /// execution; only the handler that sees the count complete reads it, once.
    pub(super) async fn try_finalize(&self, ctx: &mut RunContext) -> EngineResult<()> {
        if !ctx.exec.status.runs_nodes() {
            return Ok(());
        }
        let total = ctx.plan.len();
        let all_held = ctx.runs.len() == total && ctx.runs.values().all(|r| r.status.is_finished());
        if !all_held {
            if !ctx.plan.is_chain() {
                let org = ctx.exec.organization_id.clone();
                let finished = self
                    .store()
                    .count_finished_nodes(&org, &ctx.exec.id)
                    .await?;
                if (finished as usize) < total {
                    return Ok(());
                }
            }
            // The runs this handler does not hold finished (those never change).
            let missing: Vec<String> = ctx
                .plan
                .order()
                .iter()
                .filter(|id| ctx.finished(id).is_none())
                .cloned()
                .collect();
            let Some(fresh) = self
                .store()
                .get_execution_runs(&ctx.exec.organization_id, &ctx.exec.id, &missing)
                .await?
            else {
                return Ok(());
            };
            ctx.exec = fresh.execution;
            for run in fresh.node_runs {
                ctx.runs.insert(run.node_id.clone(), run);
            }
            if !ctx.exec.status.runs_nodes() {
                return Ok(());
            }
        }
        let all_done = ctx
            .wf
            .nodes
            .iter()
            .all(|n| ctx.runs.get(&n.id).is_some_and(|r| r.status.is_finished()));
        if !all_done {
            return Ok(());
        }
        let mut done = ExecutionMove::Succeed.apply(&ctx.exec, self.clock().now());
        self.apply_metrics(&mut done, ctx);
        done.output_data = take_last_output(ctx);
        let logs = std::mem::take(&mut ctx.logs);
        self.finish_execution(done, ExecutionMove::Succeed, logs)
            .await?;
        Ok(())
    }

    /// A node failed with `onError: stop`: the execution fails, naming it.
    pub(super) async fn fail_execution(
        &self,
        ctx: &mut RunContext,
        node_id: &str,
        error: &NodeError,
    ) -> EngineResult<()> {
        let fresh = self
            .load_run_context(&ctx.exec.organization_id, &ctx.exec.id)
            .await?;
        let node = ctx.node(node_id);
        let name = node.map_or(node_id, |n| n.name.as_str());
        let mut failed = ExecutionMove::Fail.apply(&fresh.exec, self.clock().now());
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
        let logs = std::mem::take(&mut ctx.logs);
        self.finish_execution(failed, ExecutionMove::Fail, logs)
            .await?;
        Ok(())
    }

    /// Past its deadline: `timeout`, and no further node starts.
    pub(super) async fn time_out(&self, exec: &Execution) -> EngineResult<bool> {
        let mut timed_out = ExecutionMove::TimeOut.apply(exec, self.clock().now());
        timed_out.error_message = Some(format!(
            "Execution timed out: deadline {} passed ({} ms after creation)",
            exec.deadline,
            exec.deadline.millis_since(exec.created_at)
        ));
        if let Ok(ctx) = self.load_run_context(&exec.organization_id, &exec.id).await {
            self.apply_metrics(&mut timed_out, &ctx);
        }
        self.finish_execution(timed_out, ExecutionMove::TimeOut, Vec::new())
            .await
    }

    /// The one way to a terminal status: conditional, then counted, logged and published.
    /// `exec` is the execution after the move; `logs` are written with the final one.
    ///
    /// A cancel, failure or timeout stamps `completedAt` again once its status is written:
    /// a node claimed before that write (the last moment one could be) started before it, so
    /// no node of an execution starts after its `completedAt` (SPEC §5.3).
    pub(super) async fn finish_execution(
        &self,
        mut exec: Execution,
        mv: ExecutionMove,
        mut logs: Vec<ExecutionLog>,
    ) -> EngineResult<bool> {
        if !self.store().transition_execution(&exec, mv.from()).await? {
            self.append_logs(&exec, &logs).await;
            return Ok(false);
        }
        if mv != ExecutionMove::Succeed {
            let now = self.clock().now();
            if exec.completed_at.is_none_or(|t| now > t) {
                exec.completed_at = Some(now);
                exec.duration = now.millis_since(exec.started_at.unwrap_or(exec.created_at));
                self.store()
                    .set_completed_at(&exec.organization_id, &exec.id, now, exec.duration)
                    .await?;
            }
        }
        let end = exec.completed_at.unwrap_or_else(|| self.clock().now());
        self.metrics()
            .execution_finished(exec.status.as_str(), exec.mode.as_str());
        let level = if exec.status == ExecutionStatus::Success {
            LogLevel::Info
        } else {
            LogLevel::Error
        };
        let id = logs
            .last()
            .and_then(|prev| crate::model::next_log_id(&prev.id, end))
            .unwrap_or_else(new_id);
        logs.push(ExecutionLog {
            id,
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
        });
        self.append_logs(&exec, &logs).await;
        if exec.status == ExecutionStatus::Success {
            self.apply_save_policy(&exec).await;
        }
        // Its live watchers here need not wait for the last logs to settle.
        self.changes().ended(&exec.id);
        let event = crate::ports::ExecutionEvent {
            execution_id: exec.id.clone(),
            organization_id: exec.organization_id.clone(),
            workflow_id: exec.workflow_id.clone(),
            status: exec.status,
            duration: exec.duration,
            error_message: exec.error_message.clone(),
            at: end,
        };
        if let Err(e) = self.events().publish(&event).await {
            tracing::warn!(execution_id = %exec.id, error = %e, "could not publish execution event");
        }
        Box::pin(self.after_end(&exec)).await;
        tracing::info!(execution_id = %exec.id, status = exec.status.as_str(), duration_ms = exec.duration, "execution finished");
        Ok(true)
    }

    /// `saveDataOnSuccess: none` (the workflow's, else `EXECUTIONS_DATA_SAVE_ON_SUCCESS`):
    /// the successful execution keeps its record, not its data (SPEC §14). A failure to drop
    /// it is logged: the data stays, which is what `all` keeps anyway.
    async fn apply_save_policy(&self, exec: &Execution) {
        let policy = match self.workflow_and_plan_of(exec).await {
            Ok((wf, _)) => wf.settings.save_data_on_success,
            Err(_) => None,
        }
        .unwrap_or(self.config().save_data_on_success);
        if policy != crate::model::SaveData::None {
            return;
        }
        if let Err(e) = self
            .store()
            .drop_execution_data(&exec.organization_id, &exec.id)
            .await
        {
            tracing::warn!(execution_id = %exec.id, error = %e, "could not drop the data of a successful execution");
        }
    }

    /// What follows an execution's end (SPEC §8, §9): a waited-for child moves its parent
    /// along, the children a parent still waits for are cancelled, a failure starts the error
    /// workflow, a concurrency slot goes to the next in line. Each is repaired if it fails here (heartbeats, the cleanup run), so a failure
    /// is logged, not raised: the execution has ended either way.
    async fn after_end(&self, exec: &Execution) {
        if let Err(e) = Box::pin(self.after_child_ended(exec)).await {
            tracing::warn!(execution_id = %exec.id, error = %e, "could not move the parent along");
        }
        if let Err(e) = Box::pin(self.cancel_waited_children(exec)).await {
            tracing::warn!(execution_id = %exec.id, error = %e, "could not cancel children");
        }
        if let Err(e) = Box::pin(self.start_error_workflow(exec)).await {
            tracing::error!(execution_id = %exec.id, error = %e, "could not start the error workflow");
        }
        if let Err(e) = Box::pin(self.leave_gate(exec)).await {
            tracing::warn!(execution_id = %exec.id, error = %e, "could not give the concurrency slot back");
        }
    }

    pub(super) fn apply_metrics(&self, exec: &mut Execution, ctx: &RunContext) {
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

/// The output of the node that finished last (ties: the later in topological order), taken
/// out of the context (which is done with once the execution is).
fn take_last_output(ctx: &mut RunContext) -> Option<Value> {
    let last = ctx
        .plan
        .order()
        .iter()
        .filter_map(|id| ctx.runs.get(id))
        .filter(|r| matches!(r.status, NodeRunStatus::Success | NodeRunStatus::Failed))
        .enumerate()
        .max_by_key(|(i, r)| (r.finished_at, *i))
        .map(|(_, r)| r.node_id.clone())?;
    ctx.runs.get_mut(&last).and_then(|r| r.output.take())
}
