//! `flow.wait`: waits `durationMs` durably. The first run returns `WaitUntil(now + duration)`
//! (the engine parks the node and runs it again then); a run once `ctx.wait_until` has passed
//! outputs the input. `0` outputs at once.

use super::params::{config_error, get, is_expression};
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};
use std::time::Duration;

pub struct Wait;

/// The longest wait: 366 days.
pub const MAX_WAIT_MS: u64 = 366 * 24 * 3_600_000;

/// `durationMs` as milliseconds: a number (or numeric text) from 0 to [`MAX_WAIT_MS`].
fn duration_ms(v: &Value) -> Result<u64, String> {
    let number = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match number {
        Some(ms) if ms.is_finite() && ms >= 0.0 && ms <= MAX_WAIT_MS as f64 => Ok(ms as u64),
        Some(ms) if ms.is_finite() && ms > MAX_WAIT_MS as f64 => Err(format!(
            "parameter `durationMs` must be at most {MAX_WAIT_MS} (366 days)"
        )),
        _ => Err("parameter `durationMs` must be a number of milliseconds ≥ 0".into()),
    }
}

#[async_trait::async_trait]
impl NodeType for Wait {
    fn type_name(&self) -> &'static str {
        "flow.wait"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        match get(params, "durationMs") {
            None => Err("parameter `durationMs` is required".into()),
            Some(v) if is_expression(v) => Ok(()),
            Some(v) => duration_ms(v).map(|_| ()),
        }
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let now = ctx.services.clock.now();
        if let Some(until) = ctx.wait_until {
            // The end was fixed by the first run; a run woken early waits on for the rest.
            return if now >= until {
                NodeOutcome::Output(input.clone())
            } else {
                NodeOutcome::WaitUntil(until)
            };
        }
        let ms = match get(params, "durationMs").map(duration_ms) {
            Some(Ok(ms)) => ms,
            Some(Err(message)) => return config_error(message),
            None => return config_error("parameter `durationMs` is required"),
        };
        if ms == 0 {
            NodeOutcome::Output(input.clone())
        } else {
            NodeOutcome::WaitUntil(now.plus(Duration::from_millis(ms)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::NodeOutcome;
    use super::super::test_support::{Harness, failed, output, start_time, validate};
    use crate::model::ErrorKind;
    use serde_json::json;
    use std::time::Duration;

    #[tokio::test]
    async fn first_run_asks_to_wait_then_passes_the_input() {
        let mut h = Harness::new("flow.wait", json!({"durationMs": 1500}));
        let until = start_time().plus(Duration::from_millis(1500));
        assert_eq!(h.run(json!({"a": 1})).await, NodeOutcome::WaitUntil(until));

        // Woken early: wait on until the same end.
        h.wait_until = Some(until);
        h.clock.advance(Duration::from_millis(1000));
        assert_eq!(h.run(json!({"a": 1})).await, NodeOutcome::WaitUntil(until));

        h.clock.advance(Duration::from_millis(500));
        assert_eq!(output(h.run(json!({"a": 1})).await), json!({"a": 1}));
    }

    #[tokio::test]
    async fn zero_passes_at_once_and_text_numbers_work() {
        let h = Harness::new("flow.wait", json!({"durationMs": 0}));
        assert_eq!(output(h.run(json!("x")).await), json!("x"));
        let h = Harness::new("flow.wait", json!({"durationMs": "250"}));
        assert_eq!(
            h.run(json!(1)).await,
            NodeOutcome::WaitUntil(start_time().plus(Duration::from_millis(250)))
        );
    }

    #[tokio::test]
    async fn bad_durations_fail() {
        for bad in [json!(-1), json!("soon"), json!(true), json!(1e18)] {
            let h = Harness::new("flow.wait", json!({ "durationMs": bad }));
            let e = failed(h.run(json!(null)).await);
            assert_eq!(e.kind, ErrorKind::Configuration, "{bad}");
            assert!(e.message.contains("durationMs"));
        }
    }

    #[test]
    fn duration_is_checked() {
        assert_eq!(validate("flow.wait", json!({"durationMs": 10})), Ok(()));
        assert_eq!(
            validate("flow.wait", json!({"durationMs": "{{ json.delay }}"})),
            Ok(())
        );
        assert!(
            validate("flow.wait", json!({}))
                .unwrap_err()
                .contains("`durationMs`")
        );
        assert!(
            validate("flow.wait", json!({"durationMs": -5}))
                .unwrap_err()
                .contains("`durationMs`")
        );
        assert!(validate("flow.wait", json!({"durationMs": [1]})).is_err());
    }
}
