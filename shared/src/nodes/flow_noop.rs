//! `flow.noop`: passes its input through.

use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct Noop;

#[async_trait::async_trait]
impl NodeType for Noop {
    fn type_name(&self) -> &'static str {
        "flow.noop"
    }
    async fn run(
        &self,
        _ctx: &NodeContext<'_>,
        _params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        NodeOutcome::Output(input.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, output, validate};
    use serde_json::json;

    #[tokio::test]
    async fn passes_the_input_through() {
        let h = Harness::new("flow.noop", json!({}));
        for v in [json!({"a": [1, {"b": null}]}), json!(null), json!("text")] {
            assert_eq!(output(h.run(v.clone()).await), v);
        }
        assert_eq!(validate("flow.noop", json!({"anything": 1})), Ok(()));
    }
}
