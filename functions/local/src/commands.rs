//! `weconnect token`, `weconnect validate`, `weconnect run`.

use crate::{Runtime, Secrets, Settings, local_principal};
use anyhow::{Context as _, anyhow};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use weconnect_engine::EngineError;
use weconnect_engine::engine::workflows::validate_definition;
use weconnect_engine::engine::{ExecutionDetail, StartRequest};
use weconnect_engine::http::{BroadcastWaiter, ExecutionWaiter};
use weconnect_engine::model::{ExecutionMode, WorkflowDefinition};

/// `weconnect token`: a bearer token signed with the server's secret (the environment's or
/// the data folder's, generated there when missing).
pub fn token(settings: &Settings, sub: &str, org: &str, ttl_secs: u64) -> anyhow::Result<String> {
    let secrets = Secrets::load(settings)?;
    secrets
        .jwt
        .issue(sub, org, ttl_secs)
        .map_err(|e| anyhow!("cannot sign a token: {e}"))
}

/// Reads a workflow definition; the message says what is wrong.
pub fn read_definition(path: &Path) -> anyhow::Result<WorkflowDefinition> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// `weconnect validate`: the same checks and messages as the API's create.
pub fn validate(path: &Path) -> anyhow::Result<()> {
    let def = read_definition(path)?;
    validate_definition(&def).map_err(|e| match e {
        EngineError::Invalid(v) if !v.details.is_null() => {
            anyhow!("{}: {} {}", path.display(), v.message, v.details)
        }
        other => anyhow!("{}: {other}", path.display()),
    })
}

/// `weconnect run`: runs the workflow once to completion on a temporary store and returns
/// the execution with its nodes.
pub async fn run(
    settings: &Settings,
    path: &Path,
    input: Option<Value>,
) -> anyhow::Result<ExecutionDetail> {
    let def = read_definition(path)?;
    let tmp = crate::tempdir::TempDir::new("weconnect-run")?;
    let mut settings = settings.clone();
    settings.data_dir = tmp.path().to_path_buf();
    settings.jwt_secret = None;
    settings.encryption_key = None;
    let runtime = Runtime::start(&settings, false).await?;
    let result = run_on(&runtime, def, input).await;
    runtime.stop().await;
    result
}

async fn run_on(
    runtime: &Runtime,
    def: WorkflowDefinition,
    input: Option<Value>,
) -> anyhow::Result<ExecutionDetail> {
    let who = local_principal();
    let engine = &runtime.engine;
    let wf = engine.create_workflow(&who, def).await?;
    let (execution, _) = engine
        .start_execution(StartRequest {
            principal: who.clone(),
            workflow_id: wf.id,
            mode: ExecutionMode::Manual,
            input: input.unwrap_or_else(|| Value::Object(Default::default())),
            timeout_ms: None,
            idempotency_key: None,
            start_node_id: None,
            priority: None,
        })
        .await?;
    let wait = Duration::from_millis(
        execution
            .deadline
            .millis_since(engine.clock().now())
            .saturating_add(engine.config().node_timeout_ms)
            .saturating_add(5_000),
    );
    let waiter = BroadcastWaiter::new(runtime.events.clone());
    let finished = waiter
        .wait_terminal(engine, &who.organization_id, &execution.id, wait)
        .await?;
    if !finished.is_some_and(|e| e.status.is_terminal()) {
        // The deadline passed: let the cleanup rules decide (marks it `timeout`).
        engine.sweep().await?;
    }
    Ok(engine.execution_detail(&who, &execution.id).await?)
}
