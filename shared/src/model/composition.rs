//! Composition (SPEC §8): child executions started by `flow.map` and `flow.subworkflow`,
//! the tally a parent node keeps of them, and callbacks of `flow.waitForCallback`.

use super::{ExecutionStatus, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Deepest nesting of child executions (`depth` of a top-level execution is 0).
pub const MAX_DEPTH: u32 = 5;
/// Most items of one `flow.map`.
pub const MAX_MAP_ITEMS: usize = 10_000;
/// Most children of one `flow.map` running at once.
pub const MAX_MAP_CONCURRENCY: u32 = 100;

/// The workflow children run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildWorkflow {
    /// The node's own `workflow` parameter (validated with the parent).
    Inline,
    /// Another workflow of the organization; `version`: that version, else the one current
    /// when the parent execution started.
    Reference { id: String, version: Option<u32> },
}

/// What a node asks the engine to start.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildPlan {
    pub workflow: ChildWorkflow,
    /// One child per input, in order.
    pub inputs: Vec<Value>,
    /// Children carry their index (`itemIndex`): `flow.map`'s do, a sub-workflow's does not.
    pub indexed: bool,
    /// At most this many run at once (in index order).
    pub concurrency: u32,
    /// Wait for them (else they are detached and the node succeeds with `{executionId}`).
    pub wait: bool,
}

/// The children a waiting node keeps count of. `started`: children `0..started` were given
/// their first job; `done`: how many reported a terminal status, `failed` of them not success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildTally {
    pub total: u32,
    pub concurrency: u32,
    pub started: u32,
    pub done: u32,
    pub failed: u32,
}

impl ChildTally {
    pub fn new(total: u32, concurrency: u32) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            total,
            concurrency,
            started: total.min(concurrency),
            done: 0,
            failed: 0,
        }
    }

    /// Every child reported.
    pub fn complete(&self) -> bool {
        self.done >= self.total
    }

    /// The children that may start now: `started..` up to `concurrency` running.
    pub fn next_window(&self) -> Option<(u32, u32)> {
        let until = self.total.min(self.done.saturating_add(self.concurrency));
        (until > self.started).then_some((self.started, until))
    }
}

/// One child's result, as its parent node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildResult {
    pub execution_id: String,
    pub status: ExecutionStatus,
    pub output: Option<Value>,
    pub error_message: Option<String>,
}

impl ChildResult {
    pub fn succeeded(&self) -> bool {
        self.status == ExecutionStatus::Success
    }

    /// `results[i]` of `flow.map`: the output, or the error entry of a child that failed.
    pub fn into_result_entry(self) -> Value {
        if self.succeeded() {
            self.output.unwrap_or(Value::Null)
        } else {
            serde_json::json!({
                "error": true,
                "errorMessage": self.failure(),
                "executionId": self.execution_id,
            })
        }
    }

    /// Why the child did not succeed.
    pub fn failure(&self) -> String {
        self.error_message
            .clone()
            .unwrap_or_else(|| format!("child execution ended {}", self.status.as_str()))
    }
}

/// What a `flow.waitForCallback` node was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Callback {
    /// `POST /callbacks/{token}` (or `…/complete`): the node succeeds with `{"body": …}`.
    Completed(Value),
    /// `POST /callbacks/{token}/fail` (or `…/fail`): the node fails (`callbackFailed`).
    Failed(String),
}

/// What a waiting node is resumed with.
#[derive(Debug, Clone, PartialEq)]
pub enum Resumed {
    /// Every child is terminal: their results in index order.
    Children(Vec<ChildResult>),
    Callback(Callback),
    /// The wait ran out (`timeoutMs` of a callback).
    TimedOut,
}

/// Why a node waits, recorded when it starts waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WaitingFor {
    Children,
    Callback,
}

/// A callback as stored: what was sent and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedCallback {
    pub callback: Callback,
    pub received_at: Timestamp,
}

/// The id of child `index` of `node` of `parent`: derived, so a duplicate delivery never
/// starts a second child. Shaped as a UUIDv7 with the parent's time: children sort with their
/// parent.
pub fn child_execution_id(parent_id: &str, node_id: &str, index: u32) -> String {
    derived_id(parent_id, &format!("child\n{node_id}\n{index}"))
}

/// The id of the error workflow's execution for a failed execution (started once).
pub fn error_execution_id(failed_id: &str) -> String {
    derived_id(failed_id, "error-workflow")
}

fn derived_id(base: &str, salt: &str) -> String {
    let time: [u8; 6] = uuid::Uuid::parse_str(base)
        .ok()
        .and_then(|u| u.as_bytes()[..6].try_into().ok())
        .unwrap_or([0; 6]);
    let digest = Sha256::digest(format!("{base}\n{salt}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&time);
    bytes[6..].copy_from_slice(&digest[..10]);
    bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    uuid::Uuid::from_bytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids_are_stable_distinct_and_shaped_as_v7() {
        let parent = uuid::Uuid::now_v7().to_string();
        let a = child_execution_id(&parent, "each", 0);
        assert_eq!(a, child_execution_id(&parent, "each", 0));
        assert_ne!(a, child_execution_id(&parent, "each", 1));
        assert_ne!(a, child_execution_id(&parent, "other", 0));
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(
            &u.as_bytes()[..6],
            &uuid::Uuid::parse_str(&parent).unwrap().as_bytes()[..6]
        );
        assert_ne!(error_execution_id(&parent), a);
    }

    #[test]
    fn the_window_follows_the_tally() {
        let mut t = ChildTally::new(5, 2);
        assert_eq!(t.started, 2);
        assert_eq!(t.next_window(), None);
        t.done = 1;
        assert_eq!(t.next_window(), Some((2, 3)));
        t.started = 3;
        t.done = 3;
        assert_eq!(t.next_window(), Some((3, 5)));
        t.started = 5;
        t.done = 5;
        assert!(t.complete());
        assert_eq!(t.next_window(), None);
        assert_eq!(ChildTally::new(0, 10).started, 0);
        assert!(ChildTally::new(0, 10).complete());
    }

    #[test]
    fn results_of_failed_children_name_them() {
        let failed = ChildResult {
            execution_id: "c1".into(),
            status: ExecutionStatus::Failed,
            output: None,
            error_message: Some("Node 'x' failed: boom".into()),
        };
        assert_eq!(
            failed.clone().into_result_entry(),
            serde_json::json!({"error": true, "errorMessage": "Node 'x' failed: boom", "executionId": "c1"})
        );
        let ok = ChildResult {
            status: ExecutionStatus::Success,
            output: Some(serde_json::json!({"v": 1})),
            ..failed
        };
        assert_eq!(ok.clone().into_result_entry(), serde_json::json!({"v": 1}));
    }
}
