//! Flow control (SPEC §9): debounce, throttle and concurrency limits, each per value of a key
//! evaluated once when the execution is created.
//!
//! - Debounce: the newest start per key becomes the key's latest (atomically); the one it
//!   replaces is cancelled if it has not started; the newest starts `periodMs` after its
//!   creation, and only if it is still the latest then.
//! - Throttle: each start is assigned the time it may go (first in, first out) so that no
//!   window of `periodMs` holds more than `limit` starts; its first job is delayed until then.
//! - Concurrency: at most `limit` executions run at once. An execution is admitted when it
//!   is created: it takes a slot, or it waits in line (`pendingReason: "concurrency"`)
//!   without any job. Its first node starts only while it holds a slot (checked after the
//!   claim, so no duplicate delivery or redispatch can start it early). When it ends,
//!   whatever the status, it gives its slot back and the first in line get theirs and their
//!   jobs. The cleanup run repairs what a crash between those steps leaves: slots of ended
//!   executions come back, and executions that got a slot but no job get one.

use super::Engine;
use crate::expr::ExprContext;
use crate::model::{Execution, ExecutionMove, ExecutionStatus, PendingReason, Timestamp, Workflow};
use crate::ports::{Admission, Debounced, Gate};
use crate::{EngineError, EngineResult};
use serde_json::{Value, json};
use std::time::Duration;

/// Longest key value (characters); a longer one is refused at the start.
pub const MAX_KEY_CHARS: usize = 512;

/// What holds a new execution back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Nothing: its first jobs go now.
    Now,
    /// Its first jobs go then (debounce, throttle).
    Until(Timestamp),
    /// In line for a concurrency slot: its jobs go when it gets one.
    Queued,
    /// A later start with its debounce key already exists: it was cancelled.
    Superseded,
}

/// May a pending execution's first node start now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartCheck {
    Go,
    Later(Timestamp),
    Stop,
}

impl Engine {
    /// The value of a flow-control key for a new execution: evaluated once, in the
    /// expression sandbox, over its trigger output (none: `""`, one key for the workflow). A
    /// key that fails to evaluate is a 400 naming the setting.
    fn setting_key(
        &self,
        wf: &Workflow,
        exec: &Execution,
        field: &str,
        expression: Option<&String>,
    ) -> EngineResult<String> {
        let Some(expression) = expression else {
            return Ok(String::new());
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
        let bad = |m: String| EngineError::BadRequest(format!("{field}: {m}"));
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
        Ok(key)
    }

    /// Sets the flow-control keys of a new execution of `wf` and why it waits at first.
    pub(super) fn set_flow_keys(&self, wf: &Workflow, exec: &mut Execution) -> EngineResult<()> {
        let settings = &wf.settings;
        if let Some(c) = &settings.concurrency {
            let key = self.setting_key(wf, exec, "settings.concurrency.key", c.key.as_ref())?;
            exec.concurrency_key = Some(key);
            exec.pending_reason = Some(PendingReason::Concurrency);
        }
        if let Some(t) = &settings.throttle {
            let key = self.setting_key(wf, exec, "settings.throttle.key", t.key.as_ref())?;
            exec.throttle_key = Some(key);
            exec.pending_reason = Some(PendingReason::Throttle);
        }
        if let Some(d) = &settings.debounce {
            let key = self.setting_key(wf, exec, "settings.debounce.key", d.key.as_ref())?;
            exec.debounce_key = Some(key);
            exec.pending_reason = Some(PendingReason::Debounce);
        }
        Ok(())
    }

    fn gate(exec: &Execution, key: &str) -> Gate {
        Gate {
            org: exec.organization_id.clone(),
            workflow_id: exec.workflow_id.clone(),
            key: key.to_string(),
        }
    }

    /// What holds a new execution back (after its creation): debounce (it may be superseded
    /// at once, or replace an older one), throttle (the time it may start), concurrency (a
    /// place in line).
    pub(super) async fn hold_back(&self, exec: &Execution, wf: &Workflow) -> EngineResult<Hold> {
        let now = self.clock().now();
        let mut due = now;
        if let (Some(key), Some(d)) = (&exec.debounce_key, &wf.settings.debounce) {
            let gate = Self::gate(exec, key);
            match self
                .store()
                .debounce(&gate, &exec.id, exec.created_at)
                .await?
            {
                Debounced::Superseded { by } => {
                    self.supersede(exec, &by).await?;
                    return Ok(Hold::Superseded);
                }
                Debounced::Latest { replaced } => {
                    if let Some(old) = replaced
                        && let Some(older) = self
                            .store()
                            .get_execution(&exec.organization_id, &old)
                            .await?
                    {
                        self.supersede(&older, &exec.id).await?;
                    }
                }
            }
            due = due.max(exec.created_at.plus(Duration::from_millis(d.period_ms)));
        }
        if let (Some(key), Some(t)) = (&exec.throttle_key, &wf.settings.throttle) {
            let gate = Self::gate(exec, key);
            let at = self
                .store()
                .throttle(&gate, t.limit, t.period_ms, &exec.id, now)
                .await?;
            due = due.max(at);
        }
        if self.admit(exec, wf).await? == Admission::Queued {
            return Ok(Hold::Queued);
        }
        Ok(if due > now {
            Hold::Until(due)
        } else {
            Hold::Now
        })
    }

    /// `pending → cancelled`, "Superseded by execution {by} (debounce)"; nothing when it has
    /// started meanwhile.
    async fn supersede(&self, exec: &Execution, by: &str) -> EngineResult<()> {
        if !ExecutionMove::Supersede.allowed_from(exec.status) {
            return Ok(());
        }
        let mut cancelled = ExecutionMove::Supersede.apply(exec, self.clock().now());
        cancelled.error_message = Some(format!("Superseded by execution {by} (debounce)"));
        self.finish_execution(cancelled, ExecutionMove::Supersede, Vec::new())
            .await?;
        Ok(())
    }

    /// Before a pending execution's first node: `Stop` when it must not start (superseded,
    /// or no concurrency slot), `Later(t)` when its debounce or throttle time has not come.
    pub(super) async fn start_check(&self, exec: &Execution) -> EngineResult<StartCheck> {
        let now = self.clock().now();
        if let Some(key) = &exec.debounce_key {
            let (wf, _) = self.workflow_and_plan_of(exec).await?;
            if let Some(d) = &wf.settings.debounce {
                let gate = Self::gate(exec, key);
                match self.store().latest_debounced(&gate).await? {
                    Some(latest) if latest != exec.id => {
                        self.supersede(exec, &latest).await?;
                        return Ok(StartCheck::Stop);
                    }
                    _ => {}
                }
                let due = exec.created_at.plus(Duration::from_millis(d.period_ms));
                if now < due {
                    return Ok(StartCheck::Later(due));
                }
            }
        }
        if let Some(key) = &exec.throttle_key {
            let gate = Self::gate(exec, key);
            if let Some(at) = self.store().throttled_start(&gate, &exec.id).await?
                && now < at
            {
                return Ok(StartCheck::Later(at));
            }
        }
        if exec.concurrency_key.is_some() && !self.holds_its_slot(exec).await? {
            return Ok(StartCheck::Stop);
        }
        Ok(StartCheck::Go)
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
        let found = self.store().get_executions(org, &holders).await?;
        for id in &holders {
            // Ended (or gone) without giving its slot back: a crash after its last write.
            let created_at = match found.iter().find(|e| &e.id == id) {
                Some(e) if !e.status.is_terminal() => continue,
                Some(e) => e.created_at,
                None => exec.created_at,
            };
            self.store().leave(&gate, id, created_at).await?;
            tracing::warn!(execution_id = %id, "cleanup gave back the slot of an ended execution");
        }
        let promoted = self.store().promote(&gate, limit).await?;
        let mine = promoted.contains(&exec.id);
        self.start_promoted(org, promoted).await;
        Ok(mine)
    }

    /// Whether a pending execution waits in line for a concurrency slot.
    pub(super) fn waits_at_gate(exec: &Execution) -> bool {
        exec.concurrency_key.is_some() && exec.pending_reason == Some(PendingReason::Concurrency)
    }

    /// Whether a pending execution waits for its debounce or throttle time.
    pub(super) fn waits_for_its_time(exec: &Execution) -> bool {
        matches!(
            exec.pending_reason,
            Some(PendingReason::Debounce | PendingReason::Throttle)
        ) && (exec.debounce_key.is_some() || exec.throttle_key.is_some())
    }
}
