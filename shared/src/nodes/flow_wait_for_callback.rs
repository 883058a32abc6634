//! `flow.waitForCallback`: parks until its callback arrives (SPEC §8, "Callbacks"): a human
//! approval or a third party's completion. `timeoutMs` (default 24 h) is how long it waits;
//! then it fails with kind `timeout` (routed and retried like any failure). `pauseDeadline`
//! (default true) moves the execution's deadline out by `timeoutMs` when it starts waiting.
//! Output: `{"body": <the callback's JSON body>}`; a callback to `/fail` fails the node with
//! kind `callbackFailed` and its message.

use super::params::{config_error, get, is_expression};
use super::{NodeContext, NodeOutcome, NodeType};
use crate::model::{Callback, ErrorKind, NodeError, Resumed};
use serde_json::{Map, Value, json};

pub struct WaitForCallback;

/// Default and bounds of `timeoutMs`.
pub const DEFAULT_TIMEOUT_MS: u64 = 86_400_000;
pub const MIN_TIMEOUT_MS: u64 = 1_000;
pub const MAX_TIMEOUT_MS: u64 = 2_592_000_000;

fn timeout_ms(params: &Map<String, Value>) -> Result<u64, String> {
    match get(params, "timeoutMs") {
        None => Ok(DEFAULT_TIMEOUT_MS),
        Some(v) => v
            .as_u64()
            .filter(|ms| (MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(ms))
            .ok_or_else(|| {
                format!(
                    "parameter `timeoutMs` must be from {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS} ms"
                )
            }),
    }
}

fn pause_deadline(params: &Map<String, Value>) -> Result<bool, String> {
    match get(params, "pauseDeadline") {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err("parameter `pauseDeadline` must be true or false".into()),
    }
}

#[async_trait::async_trait]
impl NodeType for WaitForCallback {
    fn type_name(&self) -> &'static str {
        "flow.waitForCallback"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        for key in ["timeoutMs", "pauseDeadline"] {
            if get(params, key).is_some_and(is_expression) {
                return Err(format!("parameter `{key}` cannot be an expression"));
            }
        }
        timeout_ms(params)?;
        pause_deadline(params).map(|_| ())
    }
    async fn run(
        &self,
        _ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        _input: &Value,
    ) -> NodeOutcome {
        match (timeout_ms(params), pause_deadline(params)) {
            (Ok(timeout_ms), Ok(pause_deadline)) => NodeOutcome::AwaitCallback {
                timeout_ms,
                pause_deadline,
            },
            (Err(m), _) | (_, Err(m)) => config_error(m),
        }
    }
    fn resume(
        &self,
        _ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        _input: &Value,
        resumed: Resumed,
    ) -> NodeOutcome {
        match resumed {
            Resumed::Callback(Callback::Completed(body)) => {
                NodeOutcome::Output(json!({ "body": body }))
            }
            Resumed::Callback(Callback::Failed(message)) => {
                NodeOutcome::Failed(NodeError::new(ErrorKind::CallbackFailed, message))
            }
            Resumed::TimedOut => NodeOutcome::Failed(NodeError::new(
                ErrorKind::Timeout,
                format!(
                    "no callback within {} ms",
                    timeout_ms(params).unwrap_or(DEFAULT_TIMEOUT_MS)
                ),
            )),
            Resumed::Children(_) => config_error("flow.waitForCallback resumed with children"),
        }
    }
}
