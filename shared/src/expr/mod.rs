//! Expressions: `{{ … }}` in string parameters, evaluated by minijinja in a sandbox with a
//! fuel limit (spec §2, "Expressions").
//! OWNER: graph/expressions helper (replace this placeholder).

use serde_json::Value;

/// What an expression can see.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExprContext {
    /// This node's input.
    pub json: Value,
    /// `{"<nodeId>": {"output": …}}` for every finished upstream node.
    pub nodes: Value,
    /// The trigger's output.
    pub trigger: Value,
    /// `{"id", "mode"}`
    pub execution: Value,
    /// `{"id", "name", "version"}`
    pub workflow: Value,
    /// RFC 3339.
    pub now: String,
}

/// An expression that failed to parse or to evaluate; the message says which and why
/// (for a missing value, the path).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

/// Checks that every `{{ … }}` in `text` parses (validation).
pub fn check_template(text: &str) -> Result<(), ExprError> {
    let _ = text;
    todo!("expressions")
}

/// Resolves every string inside `value` (objects and arrays walked); a string that is a
/// single `{{ expr }}` becomes the typed value.
pub fn resolve(value: &Value, ctx: &ExprContext) -> Result<Value, ExprError> {
    let _ = (value, ctx);
    todo!("expressions")
}
