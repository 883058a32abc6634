//! The job queue port: at-least-once delivery, delayed delivery, leases (visibility timeout).

use crate::model::Job;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue error: {0}")]
    Backend(String),
}

pub type QueueResult<T> = Result<T, QueueError>;

/// A received job. `receipt` identifies this delivery for ack/release/extend.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub job: Job,
    pub receipt: String,
    /// How many times this message has been delivered, this one included.
    pub receive_count: u32,
}

/// Queue depth for `/monitoring/health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    /// Visible now.
    pub ready: u64,
    /// Waiting for their delay.
    pub delayed: u64,
    /// Received and not yet acknowledged.
    pub in_flight: u64,
    /// Dead-lettered.
    pub dead: u64,
}

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Sends jobs, delivered after `delay` (at most `max_delay()`; the engine chains longer ones).
    async fn send(&self, jobs: &[Job], delay: Duration) -> QueueResult<()>;
    /// Receives up to `max` jobs, each invisible to others for `visibility`; waits up to `wait`
    /// for at least one.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<Delivery>>;
    /// Done with a delivery: remove it.
    async fn ack(&self, receipt: &str) -> QueueResult<()>;
    /// Give a delivery back, visible again after `delay`.
    async fn release(&self, receipt: &str, delay: Duration) -> QueueResult<()>;
    /// Keep a delivery invisible for `visibility` more from now (long nodes).
    async fn extend(&self, receipt: &str, visibility: Duration) -> QueueResult<()>;
    async fn depth(&self) -> QueueResult<QueueDepth>;
    /// The longest delay one `send` supports (SQS: 900 s).
    fn max_delay(&self) -> Duration;
    /// Deletes dead-lettered messages older than `older_than` (the cleanup run). Queues with
    /// their own retention (an SQS dead-letter queue) keep this default, which deletes nothing.
    async fn prune_dead(&self, older_than: Duration) -> QueueResult<u64> {
        let _ = older_than;
        Ok(0)
    }
}
