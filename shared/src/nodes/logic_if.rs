//! `logic.if`: `{result: bool}` from the resolved `condition`; routing takes the `true` or
//! `false` connections.

use super::params::truthy;
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value, json};

pub struct If;

#[async_trait::async_trait]
impl NodeType for If {
    fn type_name(&self) -> &'static str {
        "logic.if"
    }
    fn is_condition(&self) -> bool {
        true
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        // Any value, even a literal `null` (always false), once written.
        if params.contains_key("condition") {
            Ok(())
        } else {
            Err("parameter `condition` is required".into())
        }
    }
    async fn run(
        &self,
        _ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        _input: &Value,
    ) -> NodeOutcome {
        // A bool is taken as is; anything else by truthiness (a missing condition is null).
        let condition = params.get("condition").unwrap_or(&Value::Null);
        NodeOutcome::Output(json!({ "result": truthy(condition) }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, output, validate};
    use serde_json::json;

    #[tokio::test]
    async fn result_follows_the_condition() {
        for (condition, expected) in [
            (json!(true), true),
            (json!(false), false),
            (json!(null), false),
            (json!(0), false),
            (json!(""), false),
            (json!([]), false),
            (json!({}), false),
            (json!(2), true),
            (json!("yes"), true),
            (json!([1]), true),
            (json!({"a": 1}), true),
        ] {
            let h = Harness::new("logic.if", json!({ "condition": condition }));
            let out = output(h.run(json!({"x": 1})).await);
            assert_eq!(out, json!({"result": expected}), "{condition}");
        }
    }

    #[test]
    fn condition_is_required() {
        assert!(
            validate("logic.if", json!({}))
                .unwrap_err()
                .contains("`condition`")
        );
        assert_eq!(
            validate("logic.if", json!({"condition": "{{ json.a > 1 }}"})),
            Ok(())
        );
        assert_eq!(validate("logic.if", json!({"condition": false})), Ok(()));
        assert!(super::super::node_type("logic.if").unwrap().is_condition());
    }
}
