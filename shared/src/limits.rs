//! The input limits of the product, in one place (README, "Limits"). Every entry point checks
//! them before anything is stored or run, so that whatever is stored can be read back and no
//! input, of any size or shape, can exhaust a stack.

use serde_json::Value;

/// Containers (objects and arrays) nested in any JSON the product accepts or produces:
/// request bodies, webhook bodies, execution inputs, node outputs and expression results.
/// Stored documents wrap these values in a few levels of their own, well below the 128
/// levels `serde_json` reads back.
pub const MAX_JSON_DEPTH: usize = 64;

/// Nodes of one workflow (child workflows given inline count on their own).
pub const MAX_WORKFLOW_NODES: usize = 10_000;

/// Connections of one workflow.
pub const MAX_WORKFLOW_CONNECTIONS: usize = 20_000;

/// Characters of a workflow's, node's or credential's name.
pub const MAX_NAME_CHARS: usize = 256;

/// Characters of a workflow's description.
pub const MAX_DESCRIPTION_CHARS: usize = 4_096;

/// Request bodies of the API and of webhooks (bytes); a larger body is a 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Workflow definitions (`POST /workflows`, `PUT /workflows/{id}`, bytes): room for the
/// largest workflow ([`MAX_WORKFLOW_NODES`] nodes with a join of all of them takes about
/// 1.2 MB of JSON).
pub const MAX_WORKFLOW_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The expression limits (bytes of one string with `{{ }}`/`{% %}`, and the depth of the
/// operators in one block) live with the expression engine.
pub use crate::expr::{MAX_EXPRESSION_BYTES, MAX_EXPRESSION_DEPTH};

/// Nesting depth of `value`: 0 for a scalar, 1 for `[]` or `{}`, 2 for `[[]]`, … Iterative,
/// so it never recurses however deep the value is.
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(depth + 1);
                stack.extend(map.values().map(|i| (i, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// `Err` with a message naming `what` when `value` nests deeper than [`MAX_JSON_DEPTH`].
pub fn check_json_depth(value: &Value, what: &str) -> Result<(), String> {
    let depth = json_depth(value);
    if depth > MAX_JSON_DEPTH {
        return Err(format!(
            "{what} is nested {depth} levels deep, over the limit of {MAX_JSON_DEPTH}"
        ));
    }
    Ok(())
}

/// `Err` with a message naming `what` when the JSON text nests deeper than
/// [`MAX_JSON_DEPTH`] (see [`json_text_depth`]).
pub fn check_json_depth_text(text: &[u8], what: &str) -> Result<(), String> {
    let depth = json_text_depth(text);
    if depth > MAX_JSON_DEPTH {
        return Err(format!(
            "{what} is nested {depth} levels deep, over the limit of {MAX_JSON_DEPTH}"
        ));
    }
    Ok(())
}

/// Did `serde_json` refuse a text for its own nesting limit (128)?
pub fn is_too_deep(e: &serde_json::Error) -> bool {
    e.to_string().starts_with("recursion limit exceeded")
}

/// Nesting depth of a JSON text without building it (brackets outside strings), so that a
/// body can be refused before it is parsed. Iterative.
pub fn json_text_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Deepest document [`from_stored_json`] reads.
const MAX_STORED_DEPTH: usize = 1_024;

/// Reads a document the product stored. Values were limited to [`MAX_JSON_DEPTH`] when they
/// came in (and, before that limit existed, to the 128 levels `serde_json` parses), and
/// documents wrap them in a few levels of their own: so stored documents are read without
/// `serde_json`'s 128-level limit, which could leave a stored item unreadable. Anything
/// deeper than [`MAX_STORED_DEPTH`] (a damaged file) is an error, never a stack overflow.
pub fn from_stored_json<T: serde::de::DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    if json_text_depth(text.as_bytes()) > MAX_STORED_DEPTH {
        return Err(serde::de::Error::custom(format!(
            "stored document nested deeper than {MAX_STORED_DEPTH} levels"
        )));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let value = T::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!([])), 1);
        assert_eq!(json_depth(&json!({"a": [1, {"b": []}]})), 4);
        assert_eq!(json_text_depth(br#"{"a": [1, {"b": []}]}"#), 4);
        assert_eq!(json_text_depth(br#"{"a": "[[[[\"[[", "b": 1}"#), 1);
    }

    #[test]
    fn the_text_and_the_value_agree() {
        for n in [1, 63, 64, 65, 126] {
            let text = nested(n);
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json_depth(&value), n);
            assert_eq!(json_text_depth(text.as_bytes()), n);
        }
    }

    #[test]
    fn stored_documents_read_back_past_serde_json_limit() {
        let text = format!("{{\"input\": {{\"body\": {}}}}}", nested(126));
        assert!(serde_json::from_str::<Value>(&text).is_err());
        let v: Value = from_stored_json(&text).unwrap();
        assert_eq!(json_depth(&v), 128);
        assert!(from_stored_json::<Value>(&nested(100_000)).is_err());
    }

    #[test]
    fn deep_values_are_refused_with_the_limit() {
        let value: Value = serde_json::from_str(&nested(MAX_JSON_DEPTH)).unwrap();
        assert!(check_json_depth(&value, "the body").is_ok());
        let value: Value = serde_json::from_str(&nested(MAX_JSON_DEPTH + 1)).unwrap();
        let err = check_json_depth(&value, "the body").unwrap_err();
        assert!(err.contains("the body") && err.contains("64"), "{err}");
    }
}
