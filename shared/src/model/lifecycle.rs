//! The lifecycles of executions and node runs: tables of legal moves and pure transition
//! functions, tested without a store. The engine loads, asks these, saves conditionally and
//! enqueues; both store adapters make their claims with [`NodeRun::claim`].

use super::{
    ErrorKind, Execution, ExecutionStatus, NodeError, NodeRun, NodeRunStatus, RetryPolicy,
    Timestamp,
};
use serde_json::Value;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Executions

/// Every way an execution's status changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionMove {
    /// Its first job runs: `pending → running`.
    Start,
    Pause,
    Resume,
    /// Every node finished.
    Succeed,
    /// A node failed with `onError: stop`, or it could not be queued.
    Fail,
    Cancel,
    /// Replaced by a newer start with the same debounce key before it started:
    /// `pending → cancelled` (SPEC §9).
    Supersede,
    /// Past its deadline.
    TimeOut,
}

use ExecutionStatus as S;

impl ExecutionMove {
    /// The statuses this move may leave (the conditional write's `from`).
    pub fn from(self) -> &'static [ExecutionStatus] {
        match self {
            Self::Start => &[S::Pending],
            Self::Pause => &[S::Pending, S::Running],
            Self::Resume => &[S::Paused],
            // Pending: a redrive whose every node was carried over.
            Self::Succeed => &[S::Pending, S::Running],
            Self::Supersede => &[S::Pending],
            Self::Fail | Self::Cancel | Self::TimeOut => &S::UNFINISHED,
        }
    }

    /// The status it leads to (`exec` as it is before the move).
    pub fn to(self, exec: &Execution) -> ExecutionStatus {
        match self {
            Self::Start => S::Running,
            Self::Pause => S::Paused,
            // Back to where it was: running once a node has run, else still pending.
            Self::Resume if exec.started_at.is_some() => S::Running,
            Self::Resume => S::Pending,
            Self::Succeed => S::Success,
            Self::Fail => S::Failed,
            Self::Cancel | Self::Supersede => S::Cancelled,
            Self::TimeOut => S::Timeout,
        }
    }

    /// Is the move allowed from `status`?
    pub fn allowed_from(self, status: ExecutionStatus) -> bool {
        self.from().contains(&status)
    }

    /// `exec` after the move at `now` (not yet saved): status and, for a terminal status,
    /// `completedAt` and `duration`.
    pub fn apply(self, exec: &Execution, now: Timestamp) -> Execution {
        let mut next = exec.clone();
        next.status = self.to(exec);
        if self == Self::Start {
            next.started_at = Some(now);
            // It no longer waits for anything.
            next.pending_reason = None;
        }
        if next.status.is_terminal() {
            next.completed_at = Some(now);
            next.duration = now.millis_since(exec.started_at.unwrap_or(exec.created_at));
        }
        next
    }
}

impl ExecutionStatus {
    /// May a node of an execution in this status start? (Not when terminal or paused.)
    pub fn runs_nodes(self) -> bool {
        matches!(self, S::Pending | S::Running)
    }
}

// ---------------------------------------------------------------------------------------------
// Node runs: claims

/// A claim on a node run: who (a random token) and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub token: String,
    pub now: Timestamp,
    pub lease_until: Timestamp,
    /// Claims a `waiting` run whose wait is over (its children all reported, its callback
    /// arrived): the engine saw that before claiming.
    pub resume: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// The caller now holds the run (status `running`, `attempts` + 1, lease set).
    Claimed(NodeRun),
    /// The run already finished: the job is a duplicate.
    Finished(NodeRun),
    /// Another claim holds a live lease until then: leave the job for redelivery.
    Leased { until: Timestamp },
    /// The run must not start before then (backoff, wait): re-send the job delayed.
    NotYet { not_before: Timestamp },
    /// No ready run for this node (never scheduled): the job is stale; drop it.
    NotReady,
    /// The execution is terminal or paused (its status), or past its deadline: no node of it
    /// may start. Stores that can check the execution in the claim's own write do; others
    /// leave it to the engine's read after the claim.
    Stopped(ExecutionStatus),
    /// The run waits (children, a callback) and its wait is not known to be over: the job
    /// may move the wait along (start more children) but not run the node.
    Waiting(NodeRun),
}

impl NodeRun {
    /// The claim decision, the one both store adapters make: from the stored run (None:
    /// none yet) to the outcome. `Claimed` carries the run as it must be written.
    pub fn claim(stored: Option<&NodeRun>, claim: &Claim) -> ClaimOutcome {
        let Some(run) = stored else {
            return ClaimOutcome::NotReady;
        };
        match run.status {
            s if s.is_finished() => return ClaimOutcome::Finished(run.clone()),
            NodeRunStatus::Waiting => {
                // Resumed when the engine saw the wait end, or when its time ran out.
                let timed_out = run.not_before.is_some_and(|t| t <= claim.now);
                if !claim.resume && !timed_out {
                    return ClaimOutcome::Waiting(run.clone());
                }
            }
            NodeRunStatus::Running => {
                if let Some(until) = run.lease_until
                    && until > claim.now
                {
                    return ClaimOutcome::Leased { until };
                }
            }
            _ => {
                if !run.ready {
                    return ClaimOutcome::NotReady;
                }
                if let Some(not_before) = run.not_before
                    && not_before > claim.now
                {
                    return ClaimOutcome::NotYet { not_before };
                }
            }
        }
        ClaimOutcome::Claimed(run.claimed(claim))
    }

    /// The run moved to `running` under `claim`: new token and lease, one more attempt
    /// (resuming a waiting run continues its attempt).
    pub fn claimed(&self, claim: &Claim) -> NodeRun {
        let mut run = self.clone();
        if run.status != NodeRunStatus::Waiting {
            run.attempts += 1;
        }
        run.status = NodeRunStatus::Running;
        run.lease_token = Some(claim.token.clone());
        run.lease_until = Some(claim.lease_until);
        if run.started_at.is_none() {
            run.started_at = Some(claim.now);
        }
        run
    }

    /// A claim given back before the node started (its execution stopped meanwhile): the run
    /// as it was before the claim. `first`: the claim was the run's first (it set
    /// `startedAt`).
    pub fn unclaimed(&self, first: bool) -> NodeRun {
        let mut run = self.clone();
        run.status = NodeRunStatus::Pending;
        run.attempts = run.attempts.saturating_sub(1);
        run.lease_token = None;
        run.lease_until = None;
        if first {
            run.started_at = None;
        }
        run
    }
}

// ---------------------------------------------------------------------------------------------
// Node runs: the end of an attempt

/// What running a node produced.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOutcome {
    /// Finished with this output (routing decides where it goes).
    Output(Value),
    /// Failed; the engine retries per the node's policy, then applies `onError`.
    Failed(NodeError),
    /// Not finished: run the node again at `until` (durable wait, never a sleeping worker).
    WaitUntil(Timestamp),
    /// Start these child executions (and wait for them, unless the plan says not to).
    StartChildren(super::ChildPlan),
    /// Wait for the node's callback, at most `timeout_ms`; with `pause_deadline` the
    /// execution's deadline moves out by as much.
    AwaitCallback {
        timeout_ms: u64,
        pause_deadline: bool,
    },
}

/// Where an attempt leads, besides the run to save.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptEnd {
    /// Finished `success` (the output is in the run).
    Succeeded,
    /// Pending again: the job is re-sent to run at `due` (retry `attempt`).
    Retry {
        error: NodeError,
        delay: Duration,
        due: Timestamp,
        max_attempts: u32,
    },
    /// Pending again, waiting until `until` (a wait does not use up an attempt).
    Wait { until: Timestamp },
    /// Finished `failed` after its last attempt.
    Failed(NodeError),
}

impl NodeRun {
    /// The run parked `waiting` for `what` (its lease released); `until`: when the wait runs
    /// out (a callback's timeout), when it has a limit of its own.
    pub fn waiting_for(&self, what: super::WaitingFor, until: Option<Timestamp>) -> NodeRun {
        let mut run = self.clone();
        run.status = NodeRunStatus::Waiting;
        run.waiting = Some(what);
        run.not_before = until;
        run.lease_token = None;
        run.lease_until = None;
        run
    }
}

/// Attempts allowed per node, whatever a policy asks.
pub const MAX_ATTEMPTS: u32 = 10;

impl RetryPolicy {
    /// Attempts in all (the policy's, else `default`), within 1..=[`MAX_ATTEMPTS`].
    pub fn attempts(&self, default: u32) -> u32 {
        self.max_attempts.unwrap_or(default).clamp(1, MAX_ATTEMPTS)
    }

    /// Is an error of this kind retried? (`retryOn`, else the transient kinds.)
    pub fn retries(&self, kind: ErrorKind) -> bool {
        match &self.retry_on {
            Some(kinds) => kinds.contains(&kind),
            None => ErrorKind::TRANSIENT.contains(&kind),
        }
    }
}

impl NodeRun {
    /// The run after its attempt ended at `now` (the claim's lease released), and where it
    /// leads. `delay(n)` is the backoff before retry `n` (1-based).
    pub fn end_attempt(
        &self,
        outcome: NodeOutcome,
        policy: &RetryPolicy,
        default_attempts: u32,
        delay: impl FnOnce(u32) -> Duration,
        started: Timestamp,
        now: Timestamp,
    ) -> (NodeRun, AttemptEnd) {
        let mut run = self.clone();
        run.lease_token = None;
        run.lease_until = None;
        run.waiting = None;
        let ran_ms = now.millis_since(started);
        let end = match outcome {
            NodeOutcome::Output(output) => {
                run.status = NodeRunStatus::Success;
                run.output = Some(output);
                run.error = None;
                run.finished_at = Some(now);
                run.duration_ms = Some(ran_ms);
                run.not_before = None;
                AttemptEnd::Succeeded
            }
            NodeOutcome::WaitUntil(until) => {
                run.status = NodeRunStatus::Pending;
                run.attempts = run.attempts.saturating_sub(1);
                run.wait_until = Some(until);
                run.not_before = Some(until);
                AttemptEnd::Wait { until }
            }
            // Handled by the engine before the attempt ends; here only as a failure.
            NodeOutcome::StartChildren(_) | NodeOutcome::AwaitCallback { .. } => {
                let error = NodeError::new(
                    ErrorKind::Configuration,
                    "internal error: a wait reached the end of an attempt",
                );
                run.status = NodeRunStatus::Failed;
                run.output = Some(error.to_output());
                run.error = Some(error.clone());
                run.finished_at = Some(now);
                run.duration_ms = Some(ran_ms);
                run.not_before = None;
                AttemptEnd::Failed(error)
            }
            NodeOutcome::Failed(error) => {
                let max_attempts = policy.attempts(default_attempts);
                if run.attempts < max_attempts && policy.retries(error.kind) {
                    let delay = delay(run.attempts);
                    let due = now.plus(delay);
                    run.status = NodeRunStatus::Pending;
                    run.error = Some(error.clone());
                    run.not_before = Some(due);
                    AttemptEnd::Retry {
                        error,
                        delay,
                        due,
                        max_attempts,
                    }
                } else {
                    run.status = NodeRunStatus::Failed;
                    run.output = Some(error.to_output());
                    run.error = Some(error.clone());
                    run.finished_at = Some(now);
                    run.duration_ms = Some(ran_ms);
                    run.not_before = None;
                    AttemptEnd::Failed(error)
                }
            }
        };
        (run, end)
    }

    /// A disabled node: skipped at `now`, its input passed through.
    pub fn disabled(&self, input: Value, now: Timestamp) -> NodeRun {
        let mut run = self.clone();
        run.status = NodeRunStatus::Skipped;
        run.output = Some(input);
        run.finished_at = Some(now);
        run.duration_ms = Some(0);
        run.not_before = None;
        run.lease_token = None;
        run.lease_until = None;
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn claim(now: i64) -> Claim {
        Claim {
            token: format!("c{now}"),
            now: t(now),
            lease_until: t(now + 1000),
            resume: false,
        }
    }

    fn ready() -> NodeRun {
        let mut r = NodeRun::new("e", "n");
        r.ready = true;
        r
    }

    #[test]
    fn execution_moves_are_a_table() {
        use ExecutionMove as M;
        let table: &[(M, &[S])] = &[
            (M::Start, &[S::Pending]),
            (M::Pause, &[S::Pending, S::Running]),
            (M::Resume, &[S::Paused]),
            (M::Succeed, &[S::Pending, S::Running]),
            (M::Fail, &[S::Pending, S::Running, S::Paused]),
            (M::Cancel, &[S::Pending, S::Running, S::Paused]),
            (M::Supersede, &[S::Pending]),
            (M::TimeOut, &[S::Pending, S::Running, S::Paused]),
        ];
        for (m, from) in table {
            for s in ExecutionStatus::ALL {
                assert_eq!(m.allowed_from(s), from.contains(&s), "{m:?} from {s:?}");
                if s.is_terminal() {
                    assert!(!m.allowed_from(s), "nothing leaves {s:?}");
                }
            }
        }
    }

    #[test]
    fn moves_set_status_and_times() {
        let exec: Execution = serde_json::from_value(json!({
            "id": "e", "workflowId": "w", "workflowVersion": 1, "userId": "u",
            "organizationId": "o", "status": "pending", "mode": "manual",
            "deadline": "2030-01-01T00:00:00Z", "createdAt": "1970-01-01T00:00:01Z",
            "startNodeId": "t"
        }))
        .unwrap();
        let started = ExecutionMove::Start.apply(&exec, t(2000));
        assert_eq!(
            (started.status, started.started_at),
            (S::Running, Some(t(2000)))
        );
        assert_eq!(ExecutionMove::Resume.to(&exec), S::Pending);
        assert_eq!(ExecutionMove::Resume.to(&started), S::Running);
        let done = ExecutionMove::Cancel.apply(&started, t(2500));
        assert_eq!(done.status, S::Cancelled);
        assert_eq!((done.completed_at, done.duration), (Some(t(2500)), 500));
        // Never started: the duration counts from creation.
        assert_eq!(ExecutionMove::TimeOut.apply(&exec, t(3000)).duration, 2000);
        assert!(S::Pending.runs_nodes() && S::Running.runs_nodes());
        assert!(!S::Paused.runs_nodes() && !S::Cancelled.runs_nodes());
    }

    #[test]
    fn claims_follow_the_run() {
        assert_eq!(NodeRun::claim(None, &claim(0)), ClaimOutcome::NotReady);
        assert_eq!(
            NodeRun::claim(Some(&NodeRun::new("e", "n")), &claim(0)),
            ClaimOutcome::NotReady
        );
        let ClaimOutcome::Claimed(run) = NodeRun::claim(Some(&ready()), &claim(5)) else {
            panic!("a ready run is claimed");
        };
        assert_eq!(run.status, NodeRunStatus::Running);
        assert_eq!((run.attempts, run.started_at), (1, Some(t(5))));
        assert_eq!(run.lease_token.as_deref(), Some("c5"));
        // Held: leased until the lease ends, then claimable again (a crashed worker).
        assert_eq!(
            NodeRun::claim(Some(&run), &claim(6)),
            ClaimOutcome::Leased { until: t(1005) }
        );
        let ClaimOutcome::Claimed(again) = NodeRun::claim(Some(&run), &claim(2000)) else {
            panic!("an expired lease is claimed");
        };
        assert_eq!((again.attempts, again.started_at), (2, Some(t(5))));
        // Backoff.
        let mut later = ready();
        later.not_before = Some(t(50));
        assert_eq!(
            NodeRun::claim(Some(&later), &claim(10)),
            ClaimOutcome::NotYet { not_before: t(50) }
        );
        assert!(matches!(
            NodeRun::claim(Some(&later), &claim(50)),
            ClaimOutcome::Claimed(_)
        ));
        // Finished: a duplicate.
        let mut done = run.clone();
        done.status = NodeRunStatus::Success;
        assert!(matches!(
            NodeRun::claim(Some(&done), &claim(9)),
            ClaimOutcome::Finished(_)
        ));
        // Given back: as before the claim.
        assert_eq!(run.unclaimed(true), ready());
    }

    #[test]
    fn attempts_retry_wait_and_fail() {
        let run = ready().claimed(&claim(0));
        let policy = RetryPolicy {
            max_attempts: Some(2),
            ..Default::default()
        };
        let ms = Duration::from_millis;
        let transient = NodeError::new(ErrorKind::Network, "down");
        let (retry, end) = run.end_attempt(
            NodeOutcome::Failed(transient.clone()),
            &policy,
            3,
            |n| ms(100 * u64::from(n)),
            t(0),
            t(10),
        );
        assert_eq!(
            end,
            AttemptEnd::Retry {
                error: transient.clone(),
                delay: ms(100),
                due: t(110),
                max_attempts: 2
            }
        );
        assert_eq!(
            (retry.status, retry.not_before),
            (NodeRunStatus::Pending, Some(t(110)))
        );
        assert_eq!(retry.lease_token, None);
        // The second (last) attempt fails for good.
        let second = retry.claimed(&claim(200));
        let (failed, end) = second.end_attempt(
            NodeOutcome::Failed(transient.clone()),
            &policy,
            3,
            |_| ms(1),
            t(200),
            t(230),
        );
        assert_eq!(end, AttemptEnd::Failed(transient.clone()));
        assert_eq!(
            (failed.status, failed.duration_ms),
            (NodeRunStatus::Failed, Some(30))
        );
        assert_eq!(failed.output, Some(transient.to_output()));
        // Not retried: a kind outside retryOn.
        let (_, end) = run.end_attempt(
            NodeOutcome::Failed(NodeError::new(ErrorKind::Http4xx, "no")),
            &policy,
            3,
            |_| ms(1),
            t(0),
            t(1),
        );
        assert!(matches!(end, AttemptEnd::Failed(_)));
        // A wait gives the attempt back.
        let (waiting, end) = run.end_attempt(
            NodeOutcome::WaitUntil(t(500)),
            &policy,
            3,
            |_| ms(1),
            t(0),
            t(1),
        );
        assert_eq!(end, AttemptEnd::Wait { until: t(500) });
        assert_eq!((waiting.attempts, waiting.wait_until), (0, Some(t(500))));
        // Success.
        let (ok, end) = run.end_attempt(
            NodeOutcome::Output(json!(1)),
            &policy,
            3,
            |_| ms(1),
            t(0),
            t(4),
        );
        assert_eq!(end, AttemptEnd::Succeeded);
        assert_eq!(ok.output, Some(json!(1)));
        assert_eq!(
            (ok.status, ok.finished_at),
            (NodeRunStatus::Success, Some(t(4)))
        );
    }

    #[test]
    fn attempts_are_bounded_whatever_the_policy() {
        let huge = RetryPolicy {
            max_attempts: Some(1000),
            ..Default::default()
        };
        assert_eq!(huge.attempts(3), MAX_ATTEMPTS);
        assert_eq!(RetryPolicy::default().attempts(0), 1);
        assert!(RetryPolicy::default().retries(ErrorKind::Timeout));
        assert!(!RetryPolicy::default().retries(ErrorKind::Http4xx));
    }
}
