//! The cleanup run: deadlines, stale runs, stranded `pending` runs.

use super::Engine;
use crate::EngineResult;
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub examined: u64,
    pub timed_out: u64,
    pub stale_cancelled: u64,
    pub redispatched: u64,
    pub failed_to_queue: u64,
}

impl Engine {
    pub async fn sweep(&self) -> EngineResult<SweepReport> {
        todo!("engine: sweep")
    }
}
