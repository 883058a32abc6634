//! Live events of one execution (SPEC §11): what changed since a client's cursor, as
//! `execution` (`{status, progress}`), `node` (`{nodeId, status, attempts, error}`) and `log`
//! (the entry) events.
//!
//! Stateless: an event's id is the cursor after it, i.e. what the client has seen (the
//! execution's status and finished count, each node's status and attempts, the last log
//! id), so a client resumes after any id, over SSE or long polling, on any host, by
//! comparing it with the execution as stored ([`Engine::live_events`]). A node that
//! changed twice between two reads shows its latest state once. Locally the engine wakes the
//! watchers of an execution when it changes it ([`ExecutionChanges`]); elsewhere they poll.

use super::{Engine, Principal, Progress};
use crate::model::{ExecutionStatus, NodeRunStatus, Timestamp};
use crate::ports::LogFilter;
use crate::{EngineError, EngineResult};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long after an execution's terminal status its last logs may still be written (the
/// terminal status is written first): the terminal event waits for them that long.
pub const SETTLE: Duration = Duration::from_millis(500);
/// Logs read per call at most (a client catching up gets the rest on the next call).
const MAX_LOGS: usize = 500;

const NODE_STATUSES: [NodeRunStatus; 7] = [
    NodeRunStatus::Pending,
    NodeRunStatus::Running,
    NodeRunStatus::Success,
    NodeRunStatus::Failed,
    NodeRunStatus::Skipped,
    NodeRunStatus::Cancelled,
    NodeRunStatus::Waiting,
];

/// One event: `id` (the cursor after it), `event` (its kind) and `data`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LiveEvent {
    pub id: String,
    pub event: &'static str,
    pub data: Value,
}

/// What [`Engine::live_events`] found: the events after the cursor, the cursor after them
/// (the `after` as given when there is none), and whether the stream is over (the terminal
/// `execution` event has been sent, now or before).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveBatch {
    pub events: Vec<LiveEvent>,
    pub cursor: String,
    pub done: bool,
    /// Something is known to follow without a change: call again after this long (zero: more
    /// logs than one read; else the rest of a terminal execution's settling time).
    pub look_again: Option<Duration>,
}

/// What a client has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Seen {
    /// 0: nothing; else 1 + index in `ExecutionStatus::ALL`.
    execution: u8,
    finished: u16,
    last_log: Option<[u8; 16]>,
    /// Per node of the workflow, in its order: (0 or 1 + status index, attempts).
    nodes: Vec<(u8, u8)>,
}

const CURSOR_VERSION: u8 = 1;

impl Seen {
    fn encode(&self) -> String {
        let mut b = Vec::with_capacity(22 + 2 * self.nodes.len());
        b.push(CURSOR_VERSION);
        b.push(self.execution);
        b.extend_from_slice(&self.finished.to_le_bytes());
        match &self.last_log {
            Some(id) => {
                b.push(1);
                b.extend_from_slice(id);
            }
            None => b.push(0),
        }
        b.extend_from_slice(&(self.nodes.len().min(u16::MAX as usize) as u16).to_le_bytes());
        for (status, attempts) in self.nodes.iter().take(u16::MAX as usize) {
            b.push(*status);
            b.push(*attempts);
        }
        B64.encode(b)
    }

    fn decode(text: &str) -> Option<Self> {
        let b = B64.decode(text).ok()?;
        let (&version, rest) = b.split_first()?;
        if version != CURSOR_VERSION {
            return None;
        }
        let (&execution, rest) = rest.split_first()?;
        let finished = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?);
        let rest = &rest[2..];
        let (&flag, mut rest) = rest.split_first()?;
        let last_log = match flag {
            0 => None,
            1 => {
                let id: [u8; 16] = rest.get(..16)?.try_into().ok()?;
                rest = &rest[16..];
                Some(id)
            }
            _ => return None,
        };
        let n = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let rest = &rest[2..];
        if rest.len() != 2 * n || execution as usize > ExecutionStatus::ALL.len() {
            return None;
        }
        let nodes = rest.chunks(2).map(|c| (c[0], c[1])).collect();
        Some(Self {
            execution,
            finished,
            last_log,
            nodes,
        })
    }
}

fn execution_code(status: ExecutionStatus) -> u8 {
    ExecutionStatus::ALL
        .iter()
        .position(|s| *s == status)
        .map_or(0, |i| i as u8 + 1)
}

fn node_code(status: NodeRunStatus) -> u8 {
    NODE_STATUSES
        .iter()
        .position(|s| *s == status)
        .map_or(0, |i| i as u8 + 1)
}

impl Engine {
    /// The events of execution `id` after `after` (None: from the start). 404 for another
    /// organization's or an unknown execution; 400 for a cursor that is not one.
    /// `ended`: the caller knows the execution's terminal status and last logs are written
    /// (this process ended it: [`ExecutionWatch::ended`]); else a terminal execution is
    /// taken as settled [`SETTLE`] after its `completedAt`.
    pub async fn live_events(
        &self,
        who: &Principal,
        id: &str,
        after: Option<&str>,
        ended: bool,
    ) -> EngineResult<LiveBatch> {
        let mut seen = match after {
            None => Seen::default(),
            Some(text) => Seen::decode(text).ok_or_else(|| {
                EngineError::BadRequest(
                    "Invalid cursor: use the id of an event or the nextCursor of a response".into(),
                )
            })?,
        };
        let detail = self.execution_detail(who, id).await?;
        if seen.nodes.len() != detail.nodes.len() {
            // A cursor of another execution: everything is new.
            seen.nodes = vec![(0, 0); detail.nodes.len()];
        }
        let mut events = Vec::new();
        let mut push = |seen: &Seen, event: &'static str, data: Value| {
            events.push(LiveEvent {
                id: seen.encode(),
                event,
                data,
            });
        };

        // Nodes whose status or attempts changed, the latest change last.
        let mut changed: Vec<usize> = (0..detail.nodes.len())
            .filter(|&i| {
                let n = &detail.nodes[i];
                seen.nodes[i] != (node_code(n.status), n.attempts.min(255) as u8)
            })
            .collect();
        let at = |i: usize| {
            let n = &detail.nodes[i];
            n.finished_at.or(n.started_at).map(|t| t.millis())
        };
        changed.sort_by_key(|&i| (at(i).unwrap_or(i64::MAX), i));
        for i in changed {
            let n = &detail.nodes[i];
            seen.nodes[i] = (node_code(n.status), n.attempts.min(255) as u8);
            push(
                &seen,
                "node",
                json!({"nodeId": n.node_id, "status": n.status, "attempts": n.attempts, "error": n.error}),
            );
        }

        // Logs after the last one seen.
        let org = &who.organization_id;
        let mut after_log = seen.last_log.map(|b| uuid::Uuid::from_bytes(b).to_string());
        let mut more = false;
        let mut read = 0;
        loop {
            let filter = LogFilter {
                after: after_log.clone(),
                ..Default::default()
            };
            let page = self.store().list_logs(org, id, &filter, 100).await?;
            let full = page.next_cursor.is_some();
            for log in page.items {
                if let Ok(u) = uuid::Uuid::try_parse(&log.id) {
                    seen.last_log = Some(*u.as_bytes());
                }
                after_log = Some(log.id.clone());
                read += 1;
                push(
                    &seen,
                    "log",
                    serde_json::to_value(&log).unwrap_or(Value::Null),
                );
            }
            if !full {
                break;
            }
            if read >= MAX_LOGS {
                more = true;
                break;
            }
        }

        // The execution: its status and progress, when either changed. The terminal one
        // waits until its last logs had time to be written, and ends the stream.
        let exec = &detail.execution;
        let code = execution_code(exec.status);
        let finished = detail.progress.finished.min(u16::MAX as u32) as u16;
        let terminal = exec.status.is_terminal();
        let settling = if terminal && !ended {
            self.settling(exec.completed_at)
        } else {
            None
        };
        let mut done = false;
        let mut look_again = more.then_some(Duration::ZERO);
        if (seen.execution, seen.finished) != (code, finished) {
            if terminal && (settling.is_some() || more) {
                look_again = look_again.or(settling);
            } else {
                seen.execution = code;
                seen.finished = finished;
                push(
                    &seen,
                    "execution",
                    execution_data(exec.status, &detail.progress),
                );
                done = terminal;
            }
        } else {
            done = terminal && !more;
        }
        Ok(LiveBatch {
            cursor: seen.encode(),
            events,
            done,
            look_again,
        })
    }

    /// How long until an execution that ended at `completed_at` has settled (None: it has).
    fn settling(&self, completed_at: Option<Timestamp>) -> Option<Duration> {
        let since = self.clock().now().millis_since(completed_at?);
        let left = (SETTLE.as_millis() as u64).saturating_sub(since);
        (left > 0).then(|| Duration::from_millis(left))
    }
}

fn execution_data(status: ExecutionStatus, progress: &Progress) -> Value {
    json!({"status": status, "progress": progress})
}

/// Wakes whoever watches an execution in this process (the events route) when the engine
/// changed it. A watcher re-reads the store when woken, so a missed wake only delays it.
#[derive(Debug, Default)]
pub struct ExecutionChanges {
    watched: Mutex<HashMap<String, (watch::Sender<Change>, usize)>>,
    /// How many executions are watched: the engine's `touch` costs an atomic load when none.
    count: AtomicUsize,
}

/// What a watcher is told: how many changes so far, and whether the engine ended the
/// execution (its terminal status and last logs are written).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Change {
    count: u64,
    ended: bool,
}

/// A watch on one execution; dropping it stops watching.
pub struct ExecutionWatch {
    changes: Arc<ExecutionChanges>,
    id: String,
    rx: watch::Receiver<Change>,
}

impl ExecutionWatch {
    /// Returns once the execution changed since the last call (or the watch was made), or
    /// after `timeout`.
    pub async fn changed(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.rx.changed()).await;
    }

    /// Whether this process ended the execution since the watch was made: its terminal
    /// status and last logs are written (no need to wait for them to settle).
    pub fn ended(&self) -> bool {
        self.rx.borrow().ended
    }
}

impl Drop for ExecutionWatch {
    fn drop(&mut self) {
        let mut watched = self.changes.lock();
        if let Some((_, n)) = watched.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                watched.remove(&self.id);
                self.changes.count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl ExecutionChanges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (watch::Sender<Change>, usize)>> {
        self.watched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The engine changed execution `id` (a status, a node run, logs).
    pub fn touch(&self, id: &str) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some((tx, _)) = self.lock().get(id) {
            tx.send_modify(|c| c.count = c.count.wrapping_add(1));
        }
    }

    /// The engine ended execution `id`: its terminal status and last logs are written.
    pub fn ended(&self, id: &str) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some((tx, _)) = self.lock().get(id) {
            tx.send_modify(|c| {
                c.count = c.count.wrapping_add(1);
                c.ended = true;
            });
        }
    }

    /// Watches execution `id` until the watch is dropped.
    pub fn watch(self: &Arc<Self>, id: &str) -> ExecutionWatch {
        let mut watched = self.lock();
        let rx = match watched.get_mut(id) {
            Some((tx, n)) => {
                *n += 1;
                tx.subscribe()
            }
            None => {
                let (tx, rx) = watch::channel(Change::default());
                watched.insert(id.to_string(), (tx, 1));
                self.count.fetch_add(1, Ordering::Relaxed);
                rx
            }
        };
        ExecutionWatch {
            changes: self.clone(),
            id: id.to_string(),
            rx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let seen = Seen {
            execution: 2,
            finished: 3,
            last_log: Some([7; 16]),
            nodes: vec![(1, 0), (3, 2), (0, 0)],
        };
        let text = seen.encode();
        assert_eq!(Seen::decode(&text), Some(seen));
        assert_eq!(
            Seen::decode(&Seen::default().encode()),
            Some(Seen::default())
        );
        for bad in ["", "nope", "AAAA", &text[..text.len() - 2]] {
            assert_eq!(Seen::decode(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_touch_wakes_the_watchers_of_that_execution_only() {
        let changes = Arc::new(ExecutionChanges::default());
        changes.touch("nobody");
        let mut a = changes.watch("a");
        let mut a2 = changes.watch("a");
        let b = changes.watch("b");
        changes.touch("a");
        tokio::time::timeout(Duration::from_secs(1), a.changed(Duration::from_secs(5)))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), a2.changed(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(!b.rx.has_changed().unwrap(), "b was not touched");
        drop((a, a2, b));
        assert_eq!(changes.count.load(Ordering::Relaxed), 0);
        assert!(changes.lock().is_empty());
    }
}
