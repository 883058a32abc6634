//! Concurrency limits (SPEC §9, `settings.concurrency`): at most `limit` executions of a
//! workflow run at once per value of its key. An execution is admitted when it is created: it
//! takes a slot, or it waits in line (`pending`, `pendingReason: "concurrency"`) without any
//! job. Its first node starts only while it holds a slot (checked after the claim, so no
//! duplicate delivery or redispatch can start it early). When it ends, whatever the status,
//! it gives its slot back and the first in line get theirs and their jobs. The cleanup run
//! repairs what a crash between those steps leaves: slots of ended executions come back, and
//! executions that got a slot but no job get one.

use super::Engine;
use crate::expr::ExprContext;
use crate::model::{Execution, ExecutionStatus, PendingReason, Timestamp, Workflow};
use crate::ports::{Admission, Gate};
use crate::{EngineError, EngineResult};
use serde_json::{Value, json};

/// Longest key value (characters); a longer one is refused at the start.
pub const MAX_KEY_CHARS: usize = 512;

impl Engine {
    /// The value of `settings.concurrency.key` for a new execution (None: not limited):
    /// evaluated once, in the expression sandbox, over its trigger output. A key that fails to
    /// evaluate is a 400 naming the setting.
    pub(super) fn concurrency_key(
        &self,
        wf: &Workflow,
        exec: &Execution,
    ) -> EngineResult<Option<String>> {
        let Some(setting) = &wf.settings.concurrency else {
            return Ok(None);
        };
        let Some(expression) = &setting.key else {
            return Ok(Some(String::new()));
        };
        let ctx = ExprContext {
            json: exec.input_data.clone(),
            nodes: json!({}),
            trigger: exec.input_data.clone(),
            execution: json!({"id": exec.id, "mode": exec.mode}),
            workflow: json!({"id": wf.id, "name": wf.name, "version": wf.version}),
            now: self.clock().now().to_string(),
            callbacks: json!({}),
        };
        let bad = |m: String| EngineError::BadRequest(format!("settings.concurrency.key: {m}"));
        let value = crate::expr::evaluate(expression, &ctx).map_err(|e| bad(e.to_string()))?;
        let key = match value {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(bad(format!(
                "the key is longer than {MAX_KEY_CHARS} characters"
            )));
        }
        Ok(Some(key))
    }

    /// The gate of an execution and its workflow version's limit (None: not limited).
    async fn gate_of(&self, exec: &Execution) -> EngineResult<Option<(Gate, u32)>> {
        let Some(key) = &exec.concurrency_key else {
            return Ok(None);
        };
        let (wf, _) = self.workflow_and_plan_of(exec).await?;
        let Some(setting) = &wf.settings.concurrency else {
            return Ok(None);
        };
        Ok(Some((
            Gate {
                org: exec.organization_id.clone(),
                workflow_id: exec.workflow_id.clone(),
                key: key.clone(),
            },
            setting.limit,
        )))
    }

    /// Admits a new execution of `wf` (which limits concurrency) at its gate.
    pub(super) async fn admit(&self, exec: &Execution, wf: &Workflow) -> EngineResult<Admission> {
        let (Some(key), Some(setting)) = (&exec.concurrency_key, &wf.settings.concurrency) else {
            return Ok(Admission::Holds);
        };
        let gate = Gate {
            org: exec.organization_id.clone(),
            workflow_id: exec.workflow_id.clone(),
            key: key.clone(),
        };
        let admission = self
            .store()
            .admit(&gate, setting.limit, &exec.id, exec.created_at)
            .await?;
        if admission == Admission::Queued {
            // A slot may have freed while it got in line: whoever is first takes it.
            let promoted = self.store().promote(&gate, setting.limit).await?;
            self.start_promoted(&exec.organization_id, promoted).await;
        }
        Ok(admission)
    }

    /// May this pending execution's first node start? Only while it holds its slot.
    pub(super) async fn holds_its_slot(&self, exec: &Execution) -> EngineResult<bool> {
        match self.gate_of(exec).await? {
            None => Ok(true),
            Some((gate, _)) => Ok(self.store().holds_slot(&gate, &exec.id).await?),
        }
    }

    /// An execution that ended gives its slot (or its place in line) back; the first in line
    /// get the free slots and their jobs.
    pub(super) async fn leave_gate(&self, exec: &Execution) -> EngineResult<()> {
        let Some((gate, limit)) = self.gate_of(exec).await? else {
            return Ok(());
        };
        self.store().leave(&gate, &exec.id, exec.created_at).await?;
        let promoted = self.store().promote(&gate, limit).await?;
        self.start_promoted(&exec.organization_id, promoted).await;
        Ok(())
    }

    /// Queues the first jobs of executions that just got a slot. A failure is logged: the
    /// cleanup run sends them (they hold a slot and stay pending).
    async fn start_promoted(&self, org: &str, ids: Vec<String>) {
        for id in ids {
            let result = match self.store().get_execution(org, &id).await {
                Ok(Some(exec)) if exec.status == ExecutionStatus::Pending => {
                    self.redispatch(&exec).await.map(|_| ())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = result {
                tracing::warn!(execution_id = %id, error = %e, "could not start an execution that got its slot");
            }
        }
    }

    /// The cleanup run's part for a `pending` execution behind a concurrency limit: slots held
    /// by executions that ended come back, the first in line get them, and one that holds a
    /// slot but has not started since `stranded_before` is dispatched again. Returns whether
    /// it dispatched this execution.
    pub(super) async fn sweep_gate(
        &self,
        exec: &Execution,
        stranded_before: Timestamp,
    ) -> EngineResult<bool> {
        let Some((gate, limit)) = self.gate_of(exec).await? else {
            return Ok(false);
        };
        if self.store().holds_slot(&gate, &exec.id).await? {
            if exec.created_at < stranded_before {
                self.redispatch(exec).await?;
                return Ok(true);
            }
            return Ok(false);
        }
        let holders = self.store().gate_holders(&gate).await?;
        let org = &exec.organization_id;
        let live: std::collections::HashSet<String> = self
            .store()
            .get_executions(org, &holders)
            .await?
            .into_iter()
            .filter(|e| !e.status.is_terminal())
            .map(|e| e.id)
            .collect();
        for id in holders.iter().filter(|id| !live.contains(*id)) {
            // Ended (or gone) without giving its slot back: a crash after its last write.
            let created_at = self
                .store()
                .get_execution(org, id)
                .await?
                .map_or(exec.created_at, |e| e.created_at);
            self.store().leave(&gate, id, created_at).await?;
            tracing::warn!(execution_id = %id, "cleanup gave back the slot of an ended execution");
        }
        let promoted = self.store().promote(&gate, limit).await?;
        let mine = promoted.contains(&exec.id);
        self.start_promoted(org, promoted).await;
        Ok(mine)
    }

    /// Whether a pending execution waits in line on purpose.
    pub(super) fn waits_at_gate(exec: &Execution) -> bool {
        exec.concurrency_key.is_some() && exec.pending_reason == Some(PendingReason::Concurrency)
    }
}
