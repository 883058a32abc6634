//! The `cleanup` Lambda function: on its EventBridge schedule (`rate(5 minutes)`) it runs the
//! sweep: executions past their deadline become `timeout`, runs still unfinished after
//! `STALE_EXECUTION_THRESHOLD` are cancelled, executions stranded in `pending` are queued
//! again (or failed). It logs a summary and returns the [`SweepReport`]; a failed sweep fails
//! the invocation (counted by the function's error alarm) and the next one tries again.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use weconnect_engine::Engine;
use weconnect_engine::engine::SweepReport;

#[derive(Clone)]
pub struct Cleanup {
    engine: Engine,
}

impl Cleanup {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    /// The Lambda handler: any EventBridge event (normally `Scheduled Event`) runs one sweep.
    pub async fn handle(
        &self,
        event: LambdaEvent<EventBridgeEvent<Value>>,
    ) -> Result<SweepReport, lambda_runtime::Error> {
        let started = std::time::Instant::now();
        let report = self.engine.sweep().await.map_err(|e| {
            tracing::error!(error = %e, "cleanup failed");
            lambda_runtime::Error::from(e.to_string())
        })?;
        tracing::info!(
            detail_type = %event.payload.detail_type,
            scheduled_at = ?event.payload.time,
            examined = report.examined,
            timed_out = report.timed_out,
            stale_cancelled = report.stale_cancelled,
            redispatched = report.redispatched,
            failed_to_queue = report.failed_to_queue,
            duration_ms = started.elapsed().as_millis() as u64,
            "cleanup run"
        );
        Ok(report)
    }

    /// Serves invocations until the runtime stops.
    pub async fn run(self) -> Result<(), lambda_runtime::Error> {
        lambda_runtime::run(service_fn(
            move |event: LambdaEvent<EventBridgeEvent<Value>>| {
                let cleanup = self.clone();
                async move {
                    let report = cleanup.handle(event).await;
                    weconnect_engine::lambda::flush_metrics(&cleanup.engine);
                    report
                }
            },
        ))
        .await
    }
}
