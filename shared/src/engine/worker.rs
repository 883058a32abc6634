//! A pool of workers pulling jobs from the queue (the local server and the tests; on Lambda
//! the SQS event source mapping does the pulling).

use super::{Engine, JobOutcome};
use crate::ports::Delivery;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Runs `count` workers until `shutdown` turns true; in-flight jobs finish first.
pub async fn run_workers(engine: Engine, count: usize, shutdown: watch::Receiver<bool>) {
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..count.max(1) {
        workers.spawn(run_worker(engine.clone(), shutdown.clone()));
    }
    while workers.join_next().await.is_some() {}
}

/// One worker: receives as many jobs as it has free slots (`jobs_per_worker`) and runs them
/// concurrently. A job mostly waits on the store, the queue or a node's HTTP call, so one
/// worker per core keeps its core busy only with several jobs at once.
async fn run_worker(engine: Engine, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(engine.config().jobs_per_worker.max(1)));
    let mut jobs = tokio::task::JoinSet::new();
    while !*shutdown.borrow() {
        // Wait for at least one free slot, then take as many jobs as there are free slots.
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit,
            _ = shutdown.changed() => break,
        };
        let Ok(first) = first else { break };
        let free = slots.available_permits() + 1;
        let received = tokio::select! {
            r = engine.queue().receive(free.min(10), visibility(&engine), Duration::from_secs(1)) => r,
            _ = shutdown.changed() => break,
        };
        match received {
            Ok(deliveries) => {
                let mut permit = Some(first);
                for delivery in deliveries {
                    let Some(p) = permit
                        .take()
                        .or_else(|| slots.clone().try_acquire_owned().ok())
                    else {
                        // No slot (cannot happen: we asked for at most `free`); give it back.
                        let _ = engine
                            .queue()
                            .release(&delivery.receipt, Duration::ZERO)
                            .await;
                        continue;
                    };
                    let engine = engine.clone();
                    jobs.spawn(async move {
                        handle(&engine, delivery).await;
                        drop(p);
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "queue receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // Reap finished jobs so the set does not grow.
        while jobs.try_join_next().is_some() {}
    }
    while jobs.join_next().await.is_some() {}
}

/// How long a received job stays invisible before another worker may get it; a worker
/// extends it while the job runs (`job_visibility_ms`).
fn visibility(engine: &Engine) -> Duration {
    Duration::from_millis(engine.config().job_visibility_ms.max(300))
}

/// Runs one delivery to the end, keeping it invisible meanwhile, then acks or releases it.
pub async fn handle(engine: &Engine, delivery: Delivery) {
    let visibility = visibility(engine);
    let queue = engine.queue().clone();
    let receipt = delivery.receipt.clone();
    // The visibility is extended only while the job runs: the heartbeat is part of the job's
    // future, so a job that is dropped (its worker stopped) stops extending it too.
    let heartbeat = async move {
        loop {
            tokio::time::sleep(visibility / 3).await;
            if let Err(e) = queue.extend(&receipt, visibility).await {
                tracing::warn!(error = %e, "could not extend a job's visibility");
            }
        }
    };
    let outcome = tokio::select! {
        outcome = engine.run_job(&delivery.job, None) => outcome,
        never = heartbeat => match never {},
    };
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
