//! `data.set`: builds an object from `values` (expressions already resolved); `mode`
//! `replace` (default: only the built object) or `merge` (the input object's fields, then
//! the built ones over them).

use super::params::{check_enum, config_error, get, is_expression};
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct Set;

#[async_trait::async_trait]
impl NodeType for Set {
    fn type_name(&self) -> &'static str {
        "data.set"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        match get(params, "values") {
            None => return Err("parameter `values` is required".into()),
            Some(v) if v.is_object() || is_expression(v) => {}
            Some(_) => return Err("parameter `values` must be an object".into()),
        }
        check_enum(params, "mode", &["replace", "merge"])
    }
    async fn run(
        &self,
        _ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let Some(Value::Object(values)) = get(params, "values") else {
            return config_error("parameter `values` must be an object");
        };
        let merge = match get(params, "mode").map(|m| m.as_str()) {
            None | Some(Some("replace")) => false,
            Some(Some("merge")) => true,
            _ => return config_error("parameter `mode` must be \"replace\" or \"merge\""),
        };
        let mut out = match (merge, input) {
            (true, Value::Object(fields)) => fields.clone(),
            _ => Map::new(),
        };
        for (k, v) in values {
            out.insert(k.clone(), v.clone());
        }
        NodeOutcome::Output(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, failed, output, validate};
    use crate::model::ErrorKind;
    use serde_json::json;

    #[tokio::test]
    async fn replace_outputs_only_the_built_object() {
        let h = Harness::new("data.set", json!({"values": {"a": 1, "b": {"c": [true]}}}));
        assert_eq!(
            output(h.run(json!({"x": 9})).await),
            json!({"a": 1, "b": {"c": [true]}})
        );
    }

    #[tokio::test]
    async fn merge_lays_the_built_fields_over_the_input() {
        let h = Harness::new(
            "data.set",
            json!({"values": {"a": 1, "x": "new"}, "mode": "merge"}),
        );
        assert_eq!(
            output(h.run(json!({"x": "old", "y": 2})).await),
            json!({"x": "new", "y": 2, "a": 1})
        );
        // A non-object input has no fields to keep.
        assert_eq!(
            output(h.run(json!([1, 2])).await),
            json!({"a": 1, "x": "new"})
        );
    }

    #[tokio::test]
    async fn resolved_values_of_the_wrong_shape_fail() {
        let h = Harness::new("data.set", json!({"values": "text"}));
        assert_eq!(
            failed(h.run(json!({})).await).kind,
            ErrorKind::Configuration
        );
        let h = Harness::new("data.set", json!({"values": {}, "mode": "upsert"}));
        assert_eq!(
            failed(h.run(json!({})).await).kind,
            ErrorKind::Configuration
        );
    }

    #[test]
    fn parameters_are_checked() {
        assert_eq!(
            validate("data.set", json!({"values": {"a": "{{ json.a }}"}})),
            Ok(())
        );
        assert_eq!(
            validate("data.set", json!({"values": "{{ json }}", "mode": "merge"})),
            Ok(())
        );
        assert!(
            validate("data.set", json!({}))
                .unwrap_err()
                .contains("`values`")
        );
        assert!(
            validate("data.set", json!({"values": [1]}))
                .unwrap_err()
                .contains("`values`")
        );
        assert!(
            validate("data.set", json!({"values": {}, "mode": "x"}))
                .unwrap_err()
                .contains("`mode`")
        );
    }
}
