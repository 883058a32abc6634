//! A pool of workers pulling jobs from the queue (the local server and the tests; on Lambda
//! the SQS event source mapping does the pulling).

use super::{Engine, JobOutcome};
use crate::ports::Delivery;
use std::time::Duration;
use tokio::sync::watch;

/// How long a received job stays invisible before another worker may get it; a worker
/// extends it while the job runs.
const VISIBILITY: Duration = Duration::from_secs(60);

/// Runs `count` workers until `shutdown` turns true; in-flight jobs finish first.
pub async fn run_workers(engine: Engine, count: usize, shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count.max(1) {
        let engine = engine.clone();
        let mut shutdown = shutdown.clone();
        tasks.spawn(async move {
            while !*shutdown.borrow() {
                let received = tokio::select! {
                    r = engine.queue().receive(1, VISIBILITY, Duration::from_secs(1)) => r,
                    _ = shutdown.changed() => break,
                };
                match received {
                    Ok(deliveries) => {
                        for delivery in deliveries {
                            handle(&engine, delivery).await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "queue receive failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs one delivery to the end, keeping it invisible meanwhile, then acks or releases it.
pub async fn handle(engine: &Engine, delivery: Delivery) {
    let queue = engine.queue().clone();
    let receipt = delivery.receipt.clone();
    let heartbeat = tokio::spawn(async move {
        loop {
            tokio::time::sleep(VISIBILITY / 3).await;
            if let Err(e) = queue.extend(&receipt, VISIBILITY).await {
                tracing::warn!(error = %e, "could not extend a job's visibility");
            }
        }
    });
    let outcome = engine.run_job(&delivery.job, None).await;
    heartbeat.abort();
    let result = match outcome {
        Ok(JobOutcome::Done) => engine.queue().ack(&delivery.receipt).await,
        Ok(JobOutcome::RetryAfter(delay)) => engine.queue().release(&delivery.receipt, delay).await,
        Err(e) => {
            tracing::error!(execution_id = %delivery.job.execution_id, node_id = %delivery.job.node_id, error = %e, "job failed; it will be delivered again");
            let backoff = Duration::from_millis(250 * u64::from(delivery.receive_count.min(20)));
            engine.queue().release(&delivery.receipt, backoff).await
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not ack or release a job");
    }
}
