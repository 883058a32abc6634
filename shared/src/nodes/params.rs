//! Small helpers shared by the node types: parameter checks and truthiness.

use super::NodeOutcome;
use crate::model::{ErrorKind, NodeError};
use serde_json::{Map, Value};

/// A parameter written as an expression (`{{ … }}`): its type is known only once resolved,
/// so `validate` accepts it in place of any shape.
pub fn is_expression(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.contains("{{"))
}

/// The parameter, treating JSON `null` as absent.
pub fn get<'a>(params: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    params.get(key).filter(|v| !v.is_null())
}

/// Truthiness: `null`, `false`, `0`, `""`, `[]` and `{}` are false; everything else is true.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A failed run for a parameter that is wrong once resolved.
pub fn config_error(message: impl Into<String>) -> NodeOutcome {
    NodeOutcome::Failed(NodeError::new(ErrorKind::Configuration, message))
}

/// `validate` helper: when present (and not an expression), the parameter is one of `allowed`.
pub fn check_enum(params: &Map<String, Value>, key: &str, allowed: &[&str]) -> Result<(), String> {
    match get(params, key) {
        None => Ok(()),
        Some(v) if is_expression(v) => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(_) => Err(format!(
            "parameter `{key}` must be one of {}",
            allowed
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `validate` helper: the parameter is present (not null).
pub fn require(params: &Map<String, Value>, key: &str) -> Result<(), String> {
    if get(params, key).is_some() {
        Ok(())
    } else {
        Err(format!("parameter `{key}` is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthiness() {
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for t in [
            json!(true),
            json!(1),
            json!(-0.5),
            json!("false"),
            json!("0"),
            json!([0]),
            json!({"a": null}),
        ] {
            assert!(truthy(&t), "{t}");
        }
    }
}
