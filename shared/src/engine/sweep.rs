//! The cleanup run: deadlines, stale runs, stranded `pending` runs, and old data past its
//! retention (on stores that do not expire it themselves).

use super::Engine;
use crate::EngineResult;
use crate::model::{Execution, ExecutionMove, ExecutionStatus, NodeRun, Timestamp};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub examined: u64,
    pub timed_out: u64,
    pub stale_cancelled: u64,
    pub redispatched: u64,
    pub failed_to_queue: u64,
    /// Finished executions (with their node runs and logs) past the retention, deleted.
    pub pruned_executions: u64,
    pub pruned_idempotency_keys: u64,
    pub pruned_dead_jobs: u64,
    /// Bytes of freed space given back to the file system (embedded store).
    pub reclaimed_bytes: u64,
    /// Executions this run could not handle (logged; the next run tries again).
    pub failed: u64,
}

/// Executions one prune call deletes at most; a cleanup run makes up to [`PRUNE_CALLS`].
const PRUNE_BATCH: usize = 500;
const PRUNE_CALLS: usize = 20;
/// Space one cleanup run gives back at most (the rest goes at the next run).
const RECLAIM_PER_RUN: u64 = 256 * 1024 * 1024;

impl Engine {
    /// Times out executions past their deadline, cancels runs still unfinished after the
    /// stale threshold, re-dispatches (or fails) executions stranded in `pending`, and
    /// deletes data past its retention where the store does not expire it itself.
    pub async fn sweep(&self) -> EngineResult<SweepReport> {
        let mut report = SweepReport::default();
        let now = self.clock().now();
        let stale_before = now.minus(self.config().stale_threshold());
        let stranded_before = now.minus(Duration::from_millis(
            self.config().stranded_pending_after_ms,
        ));
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store()
                .list_unfinished_executions(200, cursor.as_deref())
                .await?;
            for exec in &page.items {
                report.examined += 1;
                // One execution that cannot be handled never stops the run for the others:
                // it is logged, counted and tried again by the next run.
                if let Err(e) = self
                    .sweep_one(exec, now, stale_before, stranded_before, &mut report)
                    .await
                {
                    report.failed += 1;
                    tracing::error!(execution_id = %exec.id, error = %e, "cleanup could not handle an execution");
                }
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        if let Err(e) = self.prune(&mut report).await {
            report.failed += 1;
            tracing::error!(error = %e, "cleanup could not prune old data");
        }
        if report
            != (SweepReport {
                examined: report.examined,
                ..Default::default()
            })
        {
            tracing::info!(?report, "cleanup changed executions");
        }
        Ok(report)
    }

    /// Deadline, stale threshold and stranded `pending` of one unfinished execution.
    async fn sweep_one(
        &self,
        exec: &Execution,
        now: Timestamp,
        stale_before: Timestamp,
        stranded_before: Timestamp,
        report: &mut SweepReport,
    ) -> EngineResult<()> {
        if exec.status.is_terminal() {
            return Ok(());
        }
        if now > exec.deadline {
            if self.time_out(exec).await? {
                report.timed_out += 1;
            }
        } else if exec.status != ExecutionStatus::Paused
            && !(exec.status == ExecutionStatus::Pending
                && (Self::waits_at_gate(exec) || Self::waits_for_its_time(exec)))
            && exec.created_at < stale_before
        {
            let mut cancelled = ExecutionMove::Cancel.apply(exec, now);
            cancelled.error_message = Some(format!(
                "Cancelled by cleanup: still {} after {} ms",
                exec.status.as_str(),
                self.config().stale_execution_threshold_ms
            ));
            if self
                .finish_execution(cancelled, ExecutionMove::Cancel, Vec::new())
                .await?
            {
                report.stale_cancelled += 1;
            }
        } else if exec.status == ExecutionStatus::Pending && Self::waits_at_gate(exec) {
            if self.sweep_gate(exec, stranded_before).await? {
                report.redispatched += 1;
            }
        } else if exec.status == ExecutionStatus::Pending && Self::waits_for_its_time(exec) {
            // Its delayed first job may be lost: dispatched again once it is long overdue
            // (its first claim checks the time and the debounce again).
            if exec.created_at < stranded_before && self.redispatch(exec).await? > 0 {
                report.redispatched += 1;
            }
        } else if exec.status == ExecutionStatus::Pending
            && exec.pending_reason.is_none()
            && exec.created_at < stranded_before
        {
            match self.redispatch_stranded(exec).await {
                Ok(()) => report.redispatched += 1,
                Err(e) => {
                    tracing::warn!(execution_id = %exec.id, error = %e, "stranded execution could not be queued");
                    let mut failed = ExecutionMove::Fail.apply(exec, now);
                    failed.error_message = Some("Failed to queue execution".into());
                    failed.error_details = Some(serde_json::json!({ "details": e.to_string() }));
                    if self
                        .finish_execution(failed, ExecutionMove::Fail, Vec::new())
                        .await?
                    {
                        report.failed_to_queue += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes what is past its retention, oldest first, in bounded batches (the rest waits
    /// for the next run).
    async fn prune(&self, report: &mut SweepReport) -> EngineResult<()> {
        let now = self.clock().now();
        let retention = Duration::from_millis(self.config().retention_ms);
        let executions_before = now.minus(retention);
        let keys_before = now.minus(Duration::from_millis(self.config().idempotency_window_ms));
        for _ in 0..PRUNE_CALLS {
            let pruned = self
                .store()
                .prune(executions_before, keys_before, PRUNE_BATCH)
                .await?;
            report.pruned_executions += pruned.executions;
            report.pruned_idempotency_keys += pruned.idempotency_keys;
            if pruned.executions < PRUNE_BATCH as u64
                && pruned.idempotency_keys < PRUNE_BATCH as u64
            {
                break;
            }
        }
        report.pruned_dead_jobs += self.queue().prune_dead(retention).await?;
        report.reclaimed_bytes += self.store().reclaim_space(RECLAIM_PER_RUN).await?;
        Ok(())
    }

    /// A `pending` execution nobody picked up: lay out its start run again if it is missing,
    /// and queue its ready runs.
    async fn redispatch_stranded(&self, exec: &crate::model::Execution) -> EngineResult<()> {
        let ctx = self
            .load_run_context(&exec.organization_id, &exec.id)
            .await?;
        if !ctx.runs.contains_key(&exec.start_node_id) {
            let mut run = NodeRun::new(&exec.id, &exec.start_node_id);
            run.ready = true;
            self.store()
                .put_node_runs(&exec.organization_id, &[run])
                .await?;
        }
        self.redispatch(exec).await?;
        Ok(())
    }
}
