//! Waiting for an execution to finish (`responseMode: lastNode`) or to change (the events
//! route), pluggable per host: the local server listens to its in-process broadcasts, a
//! Lambda polls the store.

use crate::EngineResult;
use crate::engine::Engine;
use crate::model::Execution;
use crate::ports::BroadcastEvents;
use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// Waits for an execution to change; made before reading it, so a change between the read
/// and the wait is not missed.
#[async_trait]
pub trait ChangeWatch: Send {
    /// Returns once the execution may have changed, or after `timeout`.
    async fn changed(&mut self, timeout: Duration);

    /// Whether the execution is known to have ended with its last logs written (only the
    /// process that ended it knows; others wait for it to settle).
    fn ended(&self) -> bool {
        false
    }
}

/// Nothing tells: look again after the interval.
struct PollEvery(Duration);

#[async_trait]
impl ChangeWatch for PollEvery {
    async fn changed(&mut self, timeout: Duration) {
        tokio::time::sleep(self.0.min(timeout)).await;
    }
}

#[async_trait]
pub trait ExecutionWaiter: Send + Sync + 'static {
    /// Whether a response may stay open and stream (false behind API Gateway, which
    /// buffers responses).
    fn streams(&self) -> bool;

    /// A watch on execution `id`'s changes.
    fn watch_changes(&self, engine: &Engine, execution_id: &str) -> Box<dyn ChangeWatch>;

    /// The execution once terminal, or as it stands when `timeout` ran out (None: gone).
    async fn wait_terminal(
        &self,
        engine: &Engine,
        org: &str,
        execution_id: &str,
        timeout: Duration,
    ) -> EngineResult<Option<Execution>>;
}

/// Waits on the in-process event broadcast (the engine publishes every terminal status).
#[derive(Debug, Clone)]
pub struct BroadcastWaiter {
    events: BroadcastEvents,
}

impl BroadcastWaiter {
    /// `events` must be the sink the engine publishes to.
    pub fn new(events: BroadcastEvents) -> Self {
        Self { events }
    }
}

#[async_trait]
impl ExecutionWaiter for BroadcastWaiter {
    fn streams(&self) -> bool {
        true
    }

    /// Woken by the engine of this process when it changes the execution; every
    /// [`SAFETY_LOOK`] anyway (another process may share the database file).
    fn watch_changes(&self, engine: &Engine, execution_id: &str) -> Box<dyn ChangeWatch> {
        Box::new(SafetyLook(engine.changes().watch(execution_id)))
    }

    async fn wait_terminal(
        &self,
        engine: &Engine,
        org: &str,
        execution_id: &str,
        timeout: Duration,
    ) -> EngineResult<Option<Execution>> {
        // Subscribe before reading, so an event between the read and the wait is not missed.
        let mut rx = self.events.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            let current = engine.store().get_execution(org, execution_id).await?;
            match &current {
                Some(e) if !e.status.is_terminal() => {}
                _ => return Ok(current),
            }
            // Wait for this execution's terminal event (or a lag: then re-read).
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => return Ok(engine.store().get_execution(org, execution_id).await?),
                    Ok(Ok(ev)) if ev.execution_id == execution_id && ev.status.is_terminal() => {
                        break;
                    }
                    Ok(Ok(_)) => continue,
                    Ok(Err(RecvError::Lagged(_))) => break,
                    Ok(Err(RecvError::Closed)) => {
                        return PollingWaiter::default()
                            .wait_terminal(
                                engine,
                                org,
                                execution_id,
                                deadline.saturating_duration_since(Instant::now()),
                            )
                            .await;
                    }
                }
            }
        }
    }
}

/// How often a local watcher looks at a watched execution without being woken.
pub const SAFETY_LOOK: Duration = Duration::from_secs(5);

struct SafetyLook(crate::engine::ExecutionWatch);

#[async_trait]
impl ChangeWatch for SafetyLook {
    async fn changed(&mut self, timeout: Duration) {
        self.0.changed(timeout.min(SAFETY_LOOK)).await;
    }
    fn ended(&self) -> bool {
        self.0.ended()
    }
}

/// Polls the store (Lambda: the worker runs in another function).
#[derive(Debug, Clone)]
pub struct PollingWaiter {
    pub interval: Duration,
}

impl Default for PollingWaiter {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
        }
    }
}

#[async_trait]
impl ExecutionWaiter for PollingWaiter {
    fn streams(&self) -> bool {
        false
    }

    fn watch_changes(&self, _engine: &Engine, _execution_id: &str) -> Box<dyn ChangeWatch> {
        Box::new(PollEvery(self.interval))
    }

    async fn wait_terminal(
        &self,
        engine: &Engine,
        org: &str,
        execution_id: &str,
        timeout: Duration,
    ) -> EngineResult<Option<Execution>> {
        let deadline = Instant::now() + timeout;
        loop {
            let current = engine.store().get_execution(org, execution_id).await?;
            match &current {
                Some(e) if !e.status.is_terminal() && Instant::now() < deadline => {
                    tokio::time::sleep_until((Instant::now() + self.interval).min(deadline)).await;
                }
                _ => return Ok(current),
            }
        }
    }
}
