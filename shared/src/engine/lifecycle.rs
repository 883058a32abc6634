//! Cancel, pause, resume, retry and redrive.

use super::{Engine, Principal};
use crate::EngineResult;
use crate::model::Execution;

impl Engine {
    /// 409 (`Conflict`) unless pending, running or paused.
    pub async fn cancel_execution(&self, who: &Principal, id: &str) -> EngineResult<Execution> {
        let _ = (who, id);
        todo!("engine: cancel")
    }
    /// 409 unless pending or running.
    pub async fn pause_execution(&self, who: &Principal, id: &str) -> EngineResult<Execution> {
        let _ = (who, id);
        todo!("engine: pause")
    }
    /// 409 unless paused. Parked jobs come back.
    pub async fn resume_execution(&self, who: &Principal, id: &str) -> EngineResult<Execution> {
        let _ = (who, id);
        todo!("engine: resume")
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
        let _ = (who, id, from_failed_node);
        todo!("engine: retry")
    }
}
