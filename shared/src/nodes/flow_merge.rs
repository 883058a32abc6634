//! `flow.merge`: joins the outputs of the parents whose connection here was taken;
//! `mode` `object` (default: `{"<parentId>": output, …}`) or `append` (an array of them, in
//! connection order).

use super::params::{check_enum, config_error, get};
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct Merge;

#[async_trait::async_trait]
impl NodeType for Merge {
    fn type_name(&self) -> &'static str {
        "flow.merge"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        check_enum(params, "mode", &["object", "append"])
    }
    async fn run(
        &self,
        ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        _input: &Value,
    ) -> NodeOutcome {
        match get(params, "mode").map(|m| m.as_str()) {
            None | Some(Some("object")) => NodeOutcome::Output(Value::Object(
                ctx.inputs
                    .iter()
                    .map(|(parent, out)| (parent.clone(), out.clone()))
                    .collect::<Map<String, Value>>(),
            )),
            Some(Some("append")) => NodeOutcome::Output(Value::Array(
                ctx.inputs.iter().map(|(_, out)| out.clone()).collect(),
            )),
            _ => config_error("parameter `mode` must be \"object\" or \"append\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, failed, output, validate};
    use crate::model::ErrorKind;
    use serde_json::json;

    fn two_parents(params: serde_json::Value) -> Harness {
        Harness::new("flow.merge", params)
            .with_inputs(vec![("left", json!({"a": 1})), ("right", json!([2, 3]))])
    }

    #[tokio::test]
    async fn object_mode_keys_outputs_by_parent() {
        let h = two_parents(json!({}));
        assert_eq!(
            output(h.run(json!({"a": 1})).await),
            json!({"left": {"a": 1}, "right": [2, 3]})
        );
        let h = two_parents(json!({"mode": "object"}));
        assert_eq!(
            output(h.run(json!(null)).await),
            json!({"left": {"a": 1}, "right": [2, 3]})
        );
    }

    #[tokio::test]
    async fn append_mode_lists_outputs_in_connection_order() {
        let h = two_parents(json!({"mode": "append"}));
        assert_eq!(
            output(h.run(json!({"a": 1})).await),
            json!([{"a": 1}, [2, 3]])
        );
        // Only the parents that reached it count.
        let h = Harness::new("flow.merge", json!({"mode": "append"}))
            .with_inputs(vec![("only", json!(5))]);
        assert_eq!(output(h.run(json!(5)).await), json!([5]));
    }

    #[tokio::test]
    async fn unknown_mode_fails() {
        let h = two_parents(json!({"mode": "zip"}));
        assert_eq!(
            failed(h.run(json!({})).await).kind,
            ErrorKind::Configuration
        );
    }

    #[test]
    fn mode_is_checked() {
        assert_eq!(validate("flow.merge", json!({})), Ok(()));
        assert_eq!(validate("flow.merge", json!({"mode": "append"})), Ok(()));
        assert!(
            validate("flow.merge", json!({"mode": "zip"}))
                .unwrap_err()
                .contains("`mode`")
        );
        assert!(
            validate("flow.merge", json!({"mode": 1}))
                .unwrap_err()
                .contains("`mode`")
        );
    }
}
