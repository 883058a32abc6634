//! `worker`: SQS batches of node jobs and schedule ticks → the engine (partial batch response).

use weconnect_engine::adapters::aws::{self, AwsConfig};
use weconnect_engine::{EngineConfig, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda::init_tracing();
    let config = EngineConfig::from_env()?;
    let aws_config = AwsConfig::from_env()?;
    let secrets = lambda::secret_box_from_env()?;
    // The SDK clients, built once per execution environment; no request is sent here.
    let adapters = aws::build(&aws_config).await;
    let engine = lambda::engine(&adapters, config, secrets);
    weconnect_worker::Worker::new(engine)
        .with_high_priority_queue_arn(std::env::var("HIGH_PRIORITY_QUEUE_ARN").ok())
        .run()
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
