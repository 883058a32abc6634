//! Production adapters (feature `aws`): the DynamoDB store, the SQS job queue, EventBridge
//! execution events and schedule rules, and a request counter for cost accounting.
//!
//! [`build`] creates the SDK clients once (the only I/O is `aws_config::load`, which reads the
//! environment) and hands out the four ports; the Lambda mains call it at start.
//!
//! The DynamoDB key design is documented in [`dynamo`]. The queue carries two kinds of
//! message bodies, told apart by [`parse_message`]:
//! - a [`Job`] (`{"executionId", "organizationId", "nodeId", "attempt", ...}`), sent by the engine;
//! - a schedule tick `{"scheduleTick": {"organizationId", "workflowId", "scheduledAt"}}`,
//!   produced by the EventBridge rule of a scheduled workflow (see [`eventbridge`]); the worker
//!   calls `Engine::fire_schedule` with it, which deduplicates by an idempotency key.

mod config;
mod counter;
mod cursor;
pub mod dynamo;
pub mod eventbridge;
pub mod sqs;

pub use config::{AwsConfig, AwsConfigError};
pub use counter::{OperationCount, OperationKey, RequestCounter};
pub use cursor::{CursorCodec, CursorKey};
pub use dynamo::DynamoStore;
pub use eventbridge::{EventBridgeEvents, EventBridgeSchedules};
pub use sqs::{ReceivedMessage, SqsQueue};

use crate::model::{Job, Timestamp};
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;

/// One message of the job queue, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueMessage {
    /// Run (or re-check) one node.
    Job(Job),
    /// One tick of a scheduled workflow: start it (once per tick).
    ScheduleTick {
        organization_id: String,
        workflow_id: String,
        scheduled_at: Timestamp,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("malformed queue message: {0}")]
pub struct MessageError(pub String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TickBody {
    organization_id: String,
    workflow_id: String,
    scheduled_at: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Body {
    Tick {
        #[serde(rename = "scheduleTick")]
        schedule_tick: TickBody,
    },
    Job(Job),
}

/// `scheduledAt` as EventBridge puts it (`$.time`, RFC 3339) or as a number of epoch seconds
/// (what moto's input transformer produces).
fn tick_time(value: &serde_json::Value) -> Option<Timestamp> {
    match value {
        serde_json::Value::String(text) => Timestamp::parse(text),
        serde_json::Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e11)
            .map(|s| Timestamp::from_millis((s * 1000.0).round() as i64)),
        _ => None,
    }
}

/// Parses a queue message body: a [`Job`] or a schedule tick. Never panics on any input.
pub fn parse_message(body: &str) -> Result<QueueMessage, MessageError> {
    let parsed: Body = serde_json::from_str(body).map_err(|e| {
        MessageError(format!(
            "neither a job nor a schedule tick ({e}): {}",
            body.chars().take(200).collect::<String>()
        ))
    })?;
    match parsed {
        Body::Job(job) => Ok(QueueMessage::Job(job)),
        Body::Tick { schedule_tick: t } => {
            let scheduled_at = tick_time(&t.scheduled_at)
                .ok_or_else(|| MessageError(format!("invalid scheduledAt {}", t.scheduled_at)))?;
            Ok(QueueMessage::ScheduleTick {
                organization_id: t.organization_id,
                workflow_id: t.workflow_id,
                scheduled_at,
            })
        }
    }
}

/// Handles the schedule ticks that [`SqsQueue`]'s `JobQueue::receive` meets (a process that
/// pulls the queue itself; on Lambda the worker gets them from the SQS event). Implement it
/// with `engine.fire_schedule(org, workflow, None, at)`.
#[async_trait]
pub trait TickHandler: Send + Sync + 'static {
    async fn tick(
        &self,
        organization_id: &str,
        workflow_id: &str,
        scheduled_at: Timestamp,
    ) -> Result<(), String>;
}

/// The AWS implementations of the ports, sharing one set of SDK clients.
#[derive(Clone)]
pub struct AwsAdapters {
    pub store: Arc<DynamoStore>,
    pub queue: Arc<SqsQueue>,
    pub events: Arc<EventBridgeEvents>,
    pub schedules: Arc<EventBridgeSchedules>,
    /// Counts every request the clients above send.
    pub counter: RequestCounter,
}

/// Loads the SDK configuration from the environment (region, credentials, `AWS_ENDPOINT_URL`)
/// and builds the adapters. No request is sent.
pub async fn build(config: &AwsConfig) -> AwsAdapters {
    let sdk = aws_config::load_from_env().await;
    build_with_sdk(config, &sdk)
}

/// Builds the adapters on a given SDK configuration (tests point it at moto).
pub fn build_with_sdk(config: &AwsConfig, sdk: &aws_config::SdkConfig) -> AwsAdapters {
    let counter = RequestCounter::new();
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let events = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::config::Builder::from(sdk)
            .interceptor(counter.clone())
            .build(),
    );
    AwsAdapters {
        store: Arc::new(DynamoStore::new(dynamo, config)),
        queue: Arc::new(
            SqsQueue::new(
                sqs.clone(),
                config.queue_url.clone(),
                config.dlq_url.clone(),
            )
            .with_high_priority_queue(config.high_priority_queue_url.clone()),
        ),
        events: Arc::new(EventBridgeEvents::new(
            events.clone(),
            config.event_bus_name.clone(),
        )),
        schedules: Arc::new(EventBridgeSchedules::new(
            events,
            sqs,
            config.queue_url.clone(),
            config.queue_arn.clone(),
        )),
        counter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jobs_and_ticks() {
        let job = Job {
            execution_id: "e".into(),
            organization_id: "o".into(),
            node_id: "n".into(),
            attempt: 2,
            workflow_id: None,
            workflow_version: None,
            heartbeat: None,
            inline_of: None,
            not_before: None,
            priority: None,
        };
        let body = serde_json::to_string(&job).unwrap();
        assert_eq!(parse_message(&body).unwrap(), QueueMessage::Job(job));

        let tick = r#"{"scheduleTick":{"organizationId":"o","workflowId":"w","scheduledAt":"2026-01-02T03:04:05Z"}}"#;
        assert_eq!(
            parse_message(tick).unwrap(),
            QueueMessage::ScheduleTick {
                organization_id: "o".into(),
                workflow_id: "w".into(),
                scheduled_at: Timestamp::parse("2026-01-02T03:04:05Z").unwrap(),
            }
        );
        let numeric = r#"{"scheduleTick":{"organizationId":"o","workflowId":"w","scheduledAt":1700000000.5}}"#;
        match parse_message(numeric).unwrap() {
            QueueMessage::ScheduleTick { scheduled_at, .. } => {
                assert_eq!(scheduled_at.millis(), 1_700_000_000_500)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for body in [
            "",
            "null",
            "[]",
            "{}",
            "{\"scheduleTick\":{}}",
            "{\"scheduleTick\":{\"organizationId\":\"o\",\"workflowId\":\"w\",\"scheduledAt\":\"yesterday\"}}",
            "{\"scheduleTick\":{\"organizationId\":\"o\",\"workflowId\":\"w\",\"scheduledAt\":-1}}",
            "{\"executionId\":1}",
            "\u{0}\u{1}",
        ] {
            assert!(parse_message(body).is_err(), "{body:?}");
        }
    }
}
