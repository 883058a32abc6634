//! The `worker` Lambda function: batches of job-queue messages from the SQS event source
//! mapping (`FunctionResponseTypes: [ReportBatchItemFailures]`).
//!
//! Each message body is parsed here ([`parse_message`]) and the batch's messages run
//! concurrently, one tracing span per message:
//! - a job goes to [`Engine::run_job`] with an inline-chaining limit taken from the
//!   invocation deadline minus a safety margin (children that become ready after it are
//!   queued instead of run inline, so the invocation ends in time);
//! - a schedule tick starts its workflow with [`Engine::fire_schedule`] (once per tick
//!   however often it is delivered);
//! - a body that is neither is logged and reported failed with its visibility set to 0: it
//!   comes straight back, and after `maxReceiveCount` deliveries the redrive policy moves it
//!   to the dead-letter queue. One malformed message never fails the batch.
//!
//! The response lists only the messages that must come back: `JobOutcome::RetryAfter(d)`
//! (another worker holds the node, or it is not due yet) sets the message's visibility to `d`
//! with `ChangeMessageVisibility` and reports it; an engine error (the store or queue failed)
//! reports it with an exponential backoff ([`error_backoff_after`]) and counts it
//! (`EngineFailures`). Every other message is deleted by the event source mapping.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use lambda_runtime::{LambdaEvent, service_fn};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;
use weconnect_engine::Engine;
use weconnect_engine::adapters::aws::sqs::HIGH_RECEIPT;
use weconnect_engine::adapters::aws::{QueueMessage, parse_message};
use weconnect_engine::engine::JobOutcome;

/// Added to the node timeout to form the default safety margin before the deadline.
pub const DEADLINE_SAFETY: Duration = Duration::from_secs(5);
/// The longest backoff after an engine error.
pub const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(300);

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Handled: the event source mapping deletes it.
    Done,
    /// Must come back after this long (reported in `batchItemFailures`).
    Retry(Duration),
    /// Neither a job nor a schedule tick (reported, visibility 0, on its way to the DLQ).
    Malformed(String),
}

impl Verdict {
    pub fn must_come_back(&self) -> bool {
        !matches!(self, Verdict::Done)
    }
}

/// The receipt the queue adapter knows a record by: its handle, marked when the record comes
/// from the high-priority queue (`high_queue_arn`).
pub fn receipt_of(record: &SqsMessage, high_queue_arn: Option<&str>) -> Option<String> {
    let handle = record.receipt_handle.as_deref()?;
    let from_high =
        high_queue_arn.is_some() && record.event_source_arn.as_deref() == high_queue_arn;
    Some(if from_high {
        format!("{HIGH_RECEIPT}{handle}")
    } else {
        handle.to_string()
    })
}

/// The worker: an engine and the margin it keeps before the invocation deadline.
#[derive(Clone)]
pub struct Worker {
    engine: Engine,
    margin: Duration,
    /// The high-priority queue (SPEC §9): its receipts are marked for the queue adapter.
    high_queue_arn: Option<String>,
}

impl Worker {
    /// Margin: the longest node timeout (`NODE_MAX_TIMEOUT`, else the default node timeout)
    /// plus [`DEADLINE_SAFETY`], so any node started inline at the last moment still finishes
    /// before the function times out.
    pub fn new(engine: Engine) -> Self {
        let config = engine.config();
        let longest = config.max_node_timeout_ms.unwrap_or(config.node_timeout_ms);
        let margin = Duration::from_millis(longest) + DEADLINE_SAFETY;
        Self {
            engine,
            margin,
            high_queue_arn: None,
        }
    }

    /// Messages from the queue with this ARN are the high-priority queue's (`HIGH_PRIORITY_QUEUE_ARN`).
    pub fn with_high_priority_queue_arn(mut self, arn: Option<String>) -> Self {
        self.high_queue_arn = arn.filter(|a| !a.trim().is_empty());
        self
    }

    /// Replaces the safety margin.
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// Until when children may run inline, given the invocation deadline (epoch ms, as in
    /// the Lambda context; 0 = unknown: nothing runs inline).
    pub fn inline_until(&self, deadline_ms: u64) -> Instant {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Instant::now() + inline_budget(deadline_ms, now_ms, self.margin)
    }

    /// The Lambda handler.
    pub async fn handle(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let inline_until = self.inline_until(event.context.deadline);
        Ok(self
            .handle_batch(&event.payload.records, inline_until)
            .await)
    }

    /// Runs a batch's messages concurrently; the response lists the ones that must come back.
    pub async fn handle_batch(
        &self,
        records: &[SqsMessage],
        inline_until: Instant,
    ) -> SqsBatchResponse {
        let verdicts = join_all(records.iter().map(|record| {
            let span = tracing::info_span!(
                "message",
                message_id = record.message_id.as_deref().unwrap_or(""),
                receive_count = receive_count(record),
            );
            self.handle_message(record, inline_until).instrument(span)
        }))
        .await;
        let mut response = SqsBatchResponse::default();
        for (record, verdict) in records.iter().zip(verdicts) {
            if !verdict.must_come_back() {
                continue;
            }
            match &record.message_id {
                Some(id) => response.add_failure(id.clone()),
                // Never happens with SQS; without an id the message cannot be reported, and
                // it is then deleted with the batch.
                None => tracing::error!(?verdict, "a message without an id could not be reported"),
            }
        }
        response
    }

    /// Handles one message and sets its visibility when it must come back.
    pub async fn handle_message(&self, record: &SqsMessage, inline_until: Instant) -> Verdict {
        let verdict = self.run_message(record, inline_until).await;
        let delay = match &verdict {
            Verdict::Done => return verdict,
            Verdict::Retry(delay) => *delay,
            Verdict::Malformed(_) => Duration::ZERO,
        };
        match receipt_of(record, self.high_queue_arn.as_deref()) {
            Some(receipt) => {
                if let Err(e) = self.engine.queue().release(&receipt, delay).await {
                    // It then comes back after the queue's visibility timeout.
                    tracing::warn!(error = %e, "could not change the message's visibility");
                }
            }
            None => tracing::warn!("message without a receipt handle"),
        }
        verdict
    }

    async fn run_message(&self, record: &SqsMessage, inline_until: Instant) -> Verdict {
        let body = record.body.as_deref().unwrap_or_default();
        let message = match parse_message(body) {
            Ok(message) => message,
            Err(e) => {
                tracing::error!(error = %e, "malformed message: reported for the dead-letter queue");
                return Verdict::Malformed(e.to_string());
            }
        };
        match message {
            QueueMessage::Job(job) => {
                let job_span = tracing::info_span!(
                    "job",
                    execution_id = %job.execution_id,
                    node_id = %job.node_id,
                    attempt = job.attempt,
                );
                let outcome = self
                    .engine
                    .run_job(&job, Some(inline_until))
                    .instrument(job_span)
                    .await;
                match outcome {
                    Ok(JobOutcome::Done) => Verdict::Done,
                    Ok(JobOutcome::RetryAfter(delay)) => {
                        tracing::debug!(delay_ms = delay.as_millis() as u64, execution_id = %job.execution_id, node_id = %job.node_id, "job comes back later");
                        Verdict::Retry(delay)
                    }
                    Err(e) => {
                        tracing::error!(execution_id = %job.execution_id, node_id = %job.node_id, error = %e, "job failed; it will be delivered again");
                        self.engine.metrics().series().engine_failed();
                        Verdict::Retry(error_backoff(record))
                    }
                }
            }
            QueueMessage::ScheduleTick {
                organization_id,
                workflow_id,
                scheduled_at,
            } => match self
                .engine
                .fire_schedule(&organization_id, &workflow_id, None, scheduled_at)
                .await
            {
                Ok(Some(execution)) => {
                    tracing::info!(%workflow_id, execution_id = %execution.id, %scheduled_at, "schedule tick started an execution");
                    Verdict::Done
                }
                Ok(None) => {
                    tracing::info!(%workflow_id, "schedule tick dropped: the workflow is gone or not active");
                    Verdict::Done
                }
                Err(e) => {
                    tracing::error!(%workflow_id, error = %e, "schedule tick failed; it will be delivered again");
                    self.engine.metrics().series().engine_failed();
                    Verdict::Retry(error_backoff(record))
                }
            },
        }
    }

    /// Serves invocations until the runtime stops.
    pub async fn run(self) -> Result<(), lambda_runtime::Error> {
        lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
            let worker = self.clone();
            async move {
                let response = worker.handle(event).await;
                weconnect_engine::lambda::flush_metrics(&worker.engine);
                response
            }
        }))
        .await
    }
}

/// How long ready children may still run inline: the time left before the deadline (epoch
/// ms; 0 = unknown) minus the margin, never negative.
pub fn inline_budget(deadline_ms: u64, now_ms: u64, margin: Duration) -> Duration {
    Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(margin)
}

/// `ApproximateReceiveCount` of a message (1 when absent).
pub fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The backoff after an engine error on a message's `receive_count`-th delivery: 1 s
/// doubling (1, 2, 4, ... s), at most [`MAX_ERROR_BACKOFF`]. With the queues'
/// `maxReceiveCount` (template.yaml) a job outlives a store or queue outage of about half an
/// hour before the dead-letter queue takes it (a test sums it from the template).
pub fn error_backoff_after(receive_count: u32) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(16);
    (Duration::from_secs(1) * (1u32 << doublings)).min(MAX_ERROR_BACKOFF)
}

fn error_backoff(record: &SqsMessage) -> Duration {
    error_backoff_after(receive_count(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_budget_keeps_the_margin() {
        let margin = Duration::from_secs(35);
        let now = 1_700_000_000_000;
        assert_eq!(
            inline_budget(now + 60_000, now, margin),
            Duration::from_secs(25)
        );
        assert_eq!(inline_budget(now + 35_000, now, margin), Duration::ZERO);
        assert_eq!(inline_budget(now + 10_000, now, margin), Duration::ZERO);
        assert_eq!(inline_budget(now - 1, now, margin), Duration::ZERO);
        // No deadline in the context: nothing runs inline.
        assert_eq!(inline_budget(0, now, margin), Duration::ZERO);
    }

    fn message(attributes: serde_json::Value) -> SqsMessage {
        serde_json::from_value(serde_json::json!({
            "messageId": "m1",
            "receiptHandle": "r1",
            "body": "{}",
            "attributes": attributes,
            "messageAttributes": {},
            "eventSource": "aws:sqs"
        }))
        .unwrap()
    }

    #[test]
    fn receive_count_and_error_backoff() {
        let first = message(serde_json::json!({}));
        assert_eq!(receive_count(&first), 1);
        assert_eq!(error_backoff(&first), Duration::from_secs(1));
        let fourth = message(serde_json::json!({"ApproximateReceiveCount": "4"}));
        assert_eq!(receive_count(&fourth), 4);
        assert_eq!(error_backoff(&fourth), Duration::from_secs(8));
        let ninth = message(serde_json::json!({"ApproximateReceiveCount": "9"}));
        assert_eq!(error_backoff(&ninth), Duration::from_secs(256));
        let tenth = message(serde_json::json!({"ApproximateReceiveCount": "10"}));
        assert_eq!(error_backoff(&tenth), MAX_ERROR_BACKOFF);
        let many = message(serde_json::json!({"ApproximateReceiveCount": "500"}));
        assert_eq!(error_backoff(&many), MAX_ERROR_BACKOFF);
        let odd = message(serde_json::json!({"ApproximateReceiveCount": "x"}));
        assert_eq!(receive_count(&odd), 1);
    }

    #[test]
    fn receipts_of_the_high_priority_queue_are_marked() {
        let high = "arn:aws:sqs:us-east-1:123456789012:weconnect-high";
        let mut record = message(serde_json::json!({}));
        record.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:weconnect-jobs".into());
        assert_eq!(receipt_of(&record, Some(high)).as_deref(), Some("r1"));
        assert_eq!(receipt_of(&record, None).as_deref(), Some("r1"));
        record.event_source_arn = Some(high.into());
        assert_eq!(
            receipt_of(&record, Some(high)),
            Some(format!("{HIGH_RECEIPT}r1"))
        );
        record.receipt_handle = None;
        assert_eq!(receipt_of(&record, Some(high)), None);
    }
}
