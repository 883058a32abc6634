//! Handling one job: claim, run, record, route and join, finalize.

use super::Engine;
use crate::EngineResult;
use crate::model::Job;
use std::time::{Duration, Instant};

/// What to do with the delivery that carried the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Acknowledge (delete) the delivery.
    Done,
    /// Leave it: it must be delivered again after this long (another worker holds the node).
    RetryAfter(Duration),
}

impl Engine {
    /// Handles one job. Children that become ready are run inline in the same call while
    /// `inline_until` allows (None: no limit), the rest are queued.
    pub async fn run_job(
        &self,
        job: &Job,
        inline_until: Option<Instant>,
    ) -> EngineResult<JobOutcome> {
        let _ = (job, inline_until);
        todo!("engine: run")
    }
}
