//! Cancel, pause, resume, retry and redrive.

use super::{Engine, Principal};
use crate::model::{Execution, ExecutionMove, ExecutionStatus, NodeRun, NodeRunStatus, new_id};
use crate::{EngineError, EngineResult};
use std::time::Duration;

impl Engine {
    async fn own_execution(&self, who: &Principal, id: &str) -> EngineResult<Execution> {
        self.store()
            .get_execution(&who.organization_id, id)
            .await?
            .ok_or_else(|| EngineError::NotFound("Execution not found".into()))
    }

    fn not_allowed(action: &str, exec: &Execution) -> EngineError {
        EngineError::Conflict(format!(
            "Cannot {action} an execution that is {}",
            exec.status.as_str()
        ))
    }

    /// 409 (`Conflict`) unless pending, running or paused.
    pub async fn cancel_execution(&self, who: &Principal, id: &str) -> EngineResult<Execution> {
        let exec = self.own_execution(who, id).await?;
        if !ExecutionMove::Cancel.allowed_from(exec.status) {
            return Err(Self::not_allowed("cancel", &exec));
        }
        let mut cancelled = ExecutionMove::Cancel.apply(&exec, self.clock().now());
        cancelled.error_message = Some("Execution cancelled".into());
        if !self
            .finish_execution(cancelled, ExecutionMove::Cancel, Vec::new())
            .await?
        {
            let now = self.own_execution(who, id).await?;
            return Err(Self::not_allowed("cancel", &now));
        }
        self.own_execution(who, id).await
    }

    /// 409 unless pending or running.
    pub async fn pause_execution(&self, who: &Principal, id: &str) -> EngineResult<Execution> {
        let exec = self.own_execution(who, id).await?;
        let paused = ExecutionMove::Pause.apply(&exec, self.clock().now());
        if !ExecutionMove::Pause.allowed_from(exec.status)
            || !self
                .store()
                .transition_execution(&paused, ExecutionMove::Pause.from())
                .await?
        {
            let now = self.own_execution(who, id).await?;
            return Err(Self::not_allowed("pause", &now));
        }
        self.changed(id);
        self.cascade_pause(&paused, true).await?;
        Ok(paused)
    }

    /// 409 unless paused. Parked jobs come back: every ready run that has not started is
    /// queued again (a duplicate of a job still queued is harmless).
    pub async fn resume_execution(&self, who: &Principal, id: &str) -> EngineResult<Execution> {
        let exec = self.own_execution(who, id).await?;
        let resumed = ExecutionMove::Resume.apply(&exec, self.clock().now());
        if !ExecutionMove::Resume.allowed_from(exec.status)
            || !self
                .store()
                .transition_execution(&resumed, ExecutionMove::Resume.from())
                .await?
        {
            let now = self.own_execution(who, id).await?;
            return Err(Self::not_allowed("resume", &now));
        }
        self.changed(id);
        self.cascade_pause(&resumed, false).await?;
        self.redispatch(&resumed).await?;
        self.own_execution(who, id).await
    }

    /// Queues a job for every ready run that has not started; finalizes when nothing is left.
    pub(super) async fn redispatch(&self, exec: &Execution) -> EngineResult<usize> {
        let mut ctx = self
            .load_run_context(&exec.organization_id, &exec.id)
            .await?;
        let now = self.clock().now();
        let mut sent = 0;
        for run in ctx
            .runs
            .values()
            .filter(|r| r.ready && r.status == NodeRunStatus::Pending)
        {
            let job = self.job_for(&ctx.exec, &run.node_id);
            match run.not_before.filter(|t| *t > now) {
                Some(due) => self.send_delayed(job, due).await?,
                None => self.queue().send(&[job], Duration::ZERO).await?,
            }
            sent += 1;
        }
        if sent == 0
            && !ctx
                .runs
                .values()
                .any(|r| r.status == NodeRunStatus::Running)
        {
            self.try_finalize(&mut ctx).await?;
        }
        Ok(sent)
    }

    /// A new execution of the same workflow version and input (`retryOf`, `retryCount + 1`).
    /// `from_failed_node`: copy the outputs of the nodes that succeeded, run the rest.
    /// 409 unless the execution is terminal.
    pub async fn retry_execution(
        &self,
        who: &Principal,
        id: &str,
        from_failed_node: bool,
    ) -> EngineResult<Execution> {
        let source = self.own_execution(who, id).await?;
        if !source.status.is_terminal() {
            return Err(Self::not_allowed("retry", &source));
        }
        if !source.data_saved {
            // Its input is gone (saveDataOnSuccess: none): a retry would run on nothing.
            return Err(EngineError::Conflict(
                "Cannot retry an execution whose data was not saved (saveDataOnSuccess: none)"
                    .into(),
            ));
        }
        let org = source.organization_id.clone();
        let (wf, _) = self
            .workflow_and_plan(&org, &source.workflow_id, source.workflow_version)
            .await?;
        let now = self.clock().now();
        let timeout = source.deadline.millis_since(source.created_at).max(1000);
        let mut exec = source.clone();
        exec.id = new_id();
        exec.user_id = who.user_id.clone();
        exec.status = ExecutionStatus::Pending;
        exec.output_data = None;
        exec.started_at = None;
        exec.completed_at = None;
        exec.duration = 0;
        exec.error_message = None;
        exec.error_details = None;
        exec.retry_count = source.retry_count + 1;
        exec.retry_of = Some(source.id.clone());
        exec.nodes_executed = 0;
        exec.nodes_failed = 0;
        exec.metrics = Default::default();
        exec.metrics.total_nodes = wf.nodes.len() as u32;
        exec.data_saved = true;
        exec.created_at = now;
        exec.deadline = now.plus(Duration::from_millis(timeout));

        let copied: Vec<NodeRun> = if from_failed_node {
            let state = self
                .store()
                .get_execution_state(&org, &source.id)
                .await?
                .ok_or_else(|| EngineError::NotFound("Execution not found".into()))?;
            state
                .node_runs
                .into_iter()
                .filter(|r| r.status == NodeRunStatus::Success)
                .map(|mut r| {
                    r.execution_id = exec.id.clone();
                    r.lease_token = None;
                    r.lease_until = None;
                    r.not_before = None;
                    r
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(self.launch(exec, &wf, None, copied).await?.0)
    }
}
