//! Errors of the engine's operations, as the API maps them to statuses.

use crate::graph::ValidationError;
use crate::ports::{QueueError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// 404, e.g. "Execution not found".
    #[error("{0}")]
    NotFound(String),
    /// 409: a lifecycle move not allowed from the current status, a name or path clash.
    #[error("{0}")]
    Conflict(String),
    /// 400: a request that makes no sense (the message says why).
    #[error("{0}")]
    BadRequest(String),
    /// 400: an invalid workflow.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// 500/503: the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 500/503: the queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

pub type EngineResult<T> = Result<T, EngineError>;
