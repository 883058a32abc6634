//! `api`: API Gateway HTTP API → the engine's router (everything but the webhooks).

use weconnect_engine::adapters::aws::{self, AwsConfig};
use weconnect_engine::{EngineConfig, lambda};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lambda::init_tracing();
    let config = EngineConfig::from_env()?;
    let aws_config = AwsConfig::from_env()?;
    let secrets = lambda::secret_box_from_env()?;
    let org_claim = lambda::org_claim_from_env();
    // The SDK clients, built once per execution environment; no request is sent here.
    let adapters = aws::build(&aws_config).await;
    let engine = lambda::engine(&adapters, config, secrets);
    weconnect_api::handler(engine, org_claim)
        .run()
        .await
        .map_err(|e| anyhow::anyhow!(e))
}
