//! The job queue on an SQS standard queue (with a redrive policy to a DLQ).
//!
//! - `send`: `SendMessageBatch` in chunks of 10, `DelaySeconds` = the delay rounded up to whole
//!   seconds, at most 900 ([`JobQueue::max_delay`]; the engine chains longer delays itself).
//! - `receive`: `ReceiveMessage` with `WaitTimeSeconds` (≤ 20) and `VisibilityTimeout` (the
//!   lease); the receipt is the SQS receipt handle.
//! - `ack` = `DeleteMessage`; `release` and `extend` = `ChangeMessageVisibility`.
//! - `depth`: `GetQueueAttributes` of the queue (`ApproximateNumberOfMessages`, `...Delayed`,
//!   `...NotVisible`) and of the DLQ.
//!
//! Priorities (SPEC §9): SQS has none inside a queue, so with a high-priority queue configured
//! ([`SqsQueue::with_high_priority_queue`]) the jobs of `high` executions go there; on Lambda
//! it has its own event source mapping, so high work does not wait behind a backlog of normal
//! work. A receipt of that queue is marked [`HIGH_RECEIPT`] + handle, so that `ack`, `release`
//! and `extend` reach the right queue; `receive` takes from it first.
//!
//! Schedule ticks share the queue with jobs (see [`super::parse_message`]). `JobQueue::receive`
//! returns jobs only: a tick is handed to the [`TickHandler`] set with
//! [`SqsQueue::with_tick_handler`] and deleted once it succeeded; without a handler (or when
//! it fails) the tick stays invisible for the visibility timeout and is delivered again
//! (after `maxReceiveCount` deliveries the redrive policy moves it to the DLQ). A body that is
//! neither is left alone the same way, so poison messages end up in the DLQ.
//! [`SqsQueue::receive_messages`] returns every message parsed, for callers that handle both.

use super::{QueueMessage, TickHandler, parse_message};
use crate::model::{Job, Priority};
use crate::ports::{Delivery, JobQueue, QueueDepth, QueueError, QueueResult};
use async_trait::async_trait;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use std::sync::Arc;
use std::time::Duration;

/// SQS limits.
const MAX_DELAY_SECS: u64 = 900;
const MAX_VISIBILITY_SECS: u64 = 43_200;
/// Pause between two empty short polls of [`SqsQueue::receive_messages`].
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const MAX_WAIT_SECS: u64 = 20;
const MAX_BATCH: usize = 10;
/// `SendMessageBatch` requests one `send` has on the wire at once.
const CONCURRENT_BATCHES: usize = 8;
/// The mark of a receipt handle of the high-priority queue.
pub const HIGH_RECEIPT: &str = "high:";

/// One received message, parsed.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub receipt: String,
    pub receive_count: u32,
    pub body: String,
    pub message: Result<QueueMessage, String>,
}

#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: Option<String>,
    high_url: Option<String>,
    ticks: Option<Arc<dyn TickHandler>>,
}

fn backend(e: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(e.to_string())
}

fn sdk_error<E: std::error::Error + 'static>(e: aws_sdk_sqs::error::SdkError<E>) -> QueueError {
    QueueError::Backend(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

/// Whole seconds, rounded up, capped.
fn secs(d: Duration, cap: u64) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.min(cap) as i32
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String, dlq_url: Option<String>) -> Self {
        Self {
            client,
            queue_url,
            dlq_url,
            high_url: None,
            ticks: None,
        }
    }

    /// Jobs of high-priority executions go to `url` (None: to the one queue).
    pub fn with_high_priority_queue(mut self, url: Option<String>) -> Self {
        self.high_url = url;
        self
    }

    /// The queue and handle of a receipt (see [`HIGH_RECEIPT`]).
    fn target<'a>(&'a self, receipt: &'a str) -> (&'a str, &'a str) {
        match (receipt.strip_prefix(HIGH_RECEIPT), &self.high_url) {
            (Some(handle), Some(url)) => (url, handle),
            _ => (&self.queue_url, receipt),
        }
    }

    /// Ticks met by `JobQueue::receive` go to `handler`.
    pub fn with_tick_handler(mut self, handler: Arc<dyn TickHandler>) -> Self {
        self.ticks = Some(handler);
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends raw bodies (jobs, ticks, anything) in batches of 10 with one delay.
    pub async fn send_bodies(&self, bodies: &[String], delay: Duration) -> QueueResult<()> {
        self.send_bodies_to(&self.queue_url, bodies, delay).await
    }

    /// Batches of 10, [`CONCURRENT_BATCHES`] on the wire at once (a 1,000-wide fan-out is
    /// 100 batches: sent one after another they would take 100 round trips).
    async fn send_bodies_to(
        &self,
        url: &str,
        bodies: &[String],
        delay: Duration,
    ) -> QueueResult<()> {
        let delay = secs(delay, MAX_DELAY_SECS);
        for group in bodies.chunks(MAX_BATCH * CONCURRENT_BATCHES) {
            let sends = group
                .chunks(MAX_BATCH)
                .map(|chunk| self.send_batch(url, chunk, delay));
            futures::future::try_join_all(sends).await?;
        }
        Ok(())
    }

    /// One `SendMessageBatch` of up to 10 bodies, with one retry of the entries SQS reports
    /// as failed (throttling, internal errors).
    async fn send_batch(&self, url: &str, chunk: &[String], delay: i32) -> QueueResult<()> {
        let mut pending: Vec<(usize, &String)> = chunk.iter().enumerate().collect();
        for round in 0..2 {
            let entries = pending
                .iter()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(body.as_str())
                        .delay_seconds(delay)
                        .build()
                        .map_err(backend)
                })
                .collect::<QueueResult<Vec<_>>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sdk_error)?;
            if out.failed().is_empty() {
                break;
            }
            let failed: Vec<String> = out.failed().iter().map(|f| f.id().to_string()).collect();
            if round == 1 {
                let first = &out.failed()[0];
                return Err(QueueError::Backend(format!(
                    "{} of {} messages not sent: {} {}",
                    failed.len(),
                    chunk.len(),
                    first.code(),
                    first.message().unwrap_or_default()
                )));
            }
            pending.retain(|(i, _)| failed.contains(&format!("m{i}")));
        }
        Ok(())
    }

    /// Receives up to `max` (≤ 10) messages of any kind, parsed, waiting up to `wait` for one.
    ///
    /// Production never calls this (the Lambda event source mapping polls the queue); tests
    /// and tools do. It short-polls every [`POLL_INTERVAL`] instead of long-polling, because
    /// a long poll holds a connection of a local endpoint such as moto for its whole wait.
    pub async fn receive_messages(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<ReceivedMessage>> {
        let until = tokio::time::Instant::now() + wait.min(Duration::from_secs(MAX_WAIT_SECS));
        loop {
            let mut got = match &self.high_url {
                Some(url) => {
                    self.receive_once(url, HIGH_RECEIPT, max, visibility)
                        .await?
                }
                None => Vec::new(),
            };
            if got.len() < max.clamp(1, MAX_BATCH) {
                let rest = max.clamp(1, MAX_BATCH) - got.len();
                got.extend(
                    self.receive_once(&self.queue_url, "", rest, visibility)
                        .await?,
                );
            }
            if !got.is_empty() || tokio::time::Instant::now() + POLL_INTERVAL > until {
                return Ok(got);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn receive_once(
        &self,
        url: &str,
        mark: &str,
        max: usize,
        visibility: Duration,
    ) -> QueueResult<Vec<ReceivedMessage>> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .visibility_timeout(secs(visibility, MAX_VISIBILITY_SECS))
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let receipt = format!("{mark}{}", m.receipt_handle()?);
                let body = m.body().unwrap_or_default().to_string();
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Some(ReceivedMessage {
                    receipt,
                    receive_count,
                    message: parse_message(&body).map_err(|e| e.to_string()),
                    body,
                })
            })
            .collect())
    }

    async fn change_visibility(&self, receipt: &str, d: Duration) -> QueueResult<()> {
        let (url, handle) = self.target(receipt);
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(handle)
            .visibility_timeout(secs(d, MAX_VISIBILITY_SECS))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn attributes(
        &self,
        url: &str,
    ) -> QueueResult<std::collections::HashMap<QueueAttributeName, String>> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }
}

fn count(
    attrs: &std::collections::HashMap<QueueAttributeName, String>,
    name: QueueAttributeName,
) -> u64 {
    attrs.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, jobs: &[Job], delay: Duration) -> QueueResult<()> {
        let (mut high, mut normal) = (Vec::new(), Vec::new());
        for job in jobs {
            let body = serde_json::to_string(job).map_err(backend)?;
            match (&self.high_url, job.priority) {
                (Some(_), Some(Priority::High)) => high.push(body),
                _ => normal.push(body),
            }
        }
        if let Some(url) = &self.high_url
            && !high.is_empty()
        {
            self.send_bodies_to(url, &high, delay).await?;
        }
        if !normal.is_empty() {
            self.send_bodies(&normal, delay).await?;
        }
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<Delivery>> {
        let mut jobs = Vec::new();
        for m in self.receive_messages(max, visibility, wait).await? {
            match m.message {
                Ok(QueueMessage::Job(job)) => jobs.push(Delivery {
                    job,
                    receipt: m.receipt,
                    receive_count: m.receive_count,
                }),
                Ok(QueueMessage::ScheduleTick {
                    organization_id,
                    workflow_id,
                    scheduled_at,
                }) => match &self.ticks {
                    Some(handler) => {
                        match handler
                            .tick(&organization_id, &workflow_id, scheduled_at)
                            .await
                        {
                            Ok(()) => self.ack(&m.receipt).await?,
                            Err(e) => tracing::warn!(
                                workflow_id,
                                error = %e,
                                "schedule tick failed; it will be delivered again"
                            ),
                        }
                    }
                    None => tracing::warn!(
                        workflow_id,
                        "schedule tick received without a tick handler; left for redelivery"
                    ),
                },
                Err(e) => tracing::warn!(
                    receive_count = m.receive_count,
                    error = %e,
                    "malformed queue message left for the dead-letter queue"
                ),
            }
        }
        Ok(jobs)
    }

    async fn ack(&self, receipt: &str) -> QueueResult<()> {
        let (url, handle) = self.target(receipt);
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(handle)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn release(&self, receipt: &str, delay: Duration) -> QueueResult<()> {
        self.change_visibility(receipt, delay).await
    }

    async fn extend(&self, receipt: &str, visibility: Duration) -> QueueResult<()> {
        self.change_visibility(receipt, visibility).await
    }

    async fn depth(&self) -> QueueResult<QueueDepth> {
        let main = self.attributes(&self.queue_url);
        let dead = async {
            match &self.dlq_url {
                Some(url) => self.attributes(url).await.map(Some),
                None => Ok(None),
            }
        };
        let high = async {
            match &self.high_url {
                Some(url) => self.attributes(url).await.map(Some),
                None => Ok(None),
            }
        };
        let (main, dead, high) = futures::try_join!(main, dead, high)?;
        let both = |name: QueueAttributeName| {
            count(&main, name.clone()) + high.as_ref().map_or(0, |h| count(h, name))
        };
        Ok(QueueDepth {
            ready: both(QueueAttributeName::ApproximateNumberOfMessages),
            delayed: both(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            in_flight: both(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            dead: dead
                .map(|d| {
                    count(&d, QueueAttributeName::ApproximateNumberOfMessages)
                        + count(&d, QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                        + count(
                            &d,
                            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                        )
                })
                .unwrap_or(0),
        })
    }

    fn max_delay(&self) -> Duration {
        Duration::from_secs(MAX_DELAY_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_and_cap() {
        assert_eq!(secs(Duration::ZERO, 900), 0);
        assert_eq!(secs(Duration::from_millis(1), 900), 1);
        assert_eq!(secs(Duration::from_millis(2000), 900), 2);
        assert_eq!(secs(Duration::from_millis(2001), 900), 3);
        assert_eq!(secs(Duration::from_secs(5000), 900), 900);
        assert_eq!(secs(Duration::from_secs(u64::MAX), 20), 20);
    }
}
