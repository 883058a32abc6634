//! `flow.fail`: fails the node with kind `flowFail` and the resolved `message`.

use super::params::{get, require};
use super::{NodeContext, NodeOutcome, NodeType};
use crate::model::{ErrorKind, NodeError};
use serde_json::{Map, Value};

pub struct Fail;

#[async_trait::async_trait]
impl NodeType for Fail {
    fn type_name(&self) -> &'static str {
        "flow.fail"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        require(params, "message")
    }
    async fn run(
        &self,
        _ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        _input: &Value,
    ) -> NodeOutcome {
        let message = match get(params, "message") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "flow.fail".to_string(),
        };
        NodeOutcome::Failed(NodeError::new(ErrorKind::FlowFail, message))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, failed, validate};
    use crate::model::ErrorKind;
    use serde_json::json;

    #[tokio::test]
    async fn fails_with_the_message() {
        let h = Harness::new("flow.fail", json!({"message": "Order 7 is invalid"}));
        let e = failed(h.run(json!({})).await);
        assert_eq!(e.kind, ErrorKind::FlowFail);
        assert_eq!(e.message, "Order 7 is invalid");
        assert_eq!(e.status_code, None);

        let h = Harness::new("flow.fail", json!({"message": {"code": 7}}));
        assert_eq!(failed(h.run(json!({})).await).message, r#"{"code":7}"#);
    }

    #[test]
    fn message_is_required() {
        assert!(
            validate("flow.fail", json!({}))
                .unwrap_err()
                .contains("`message`")
        );
        assert!(validate("flow.fail", json!({"message": null})).is_err());
        assert_eq!(
            validate("flow.fail", json!({"message": "{{ json.reason }}"})),
            Ok(())
        );
    }
}
