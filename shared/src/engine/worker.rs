//! A pool of workers pulling jobs from the queue (the local server and the tests; on Lambda
//! the SQS event source mapping does the pulling).

use super::Engine;
use tokio::sync::watch;

/// Runs `count` workers until `shutdown` turns true; in-flight jobs finish first.
pub async fn run_workers(engine: Engine, count: usize, shutdown: watch::Receiver<bool>) {
    let _ = (engine, count, shutdown);
    todo!("engine: workers")
}
