//! Which outgoing connections a finished node takes (spec §2, "Routing").

use crate::model::{Connection, ERROR, FALSE, MAIN, Node, OnError, TRUE};
use serde_json::Value;

/// Does this output signal failure? `error == true`, `success == false`,
/// `status == "failed"`, or `statusCode >= 400`.
pub fn signals_failure(output: &Value) -> bool {
    output.get("error") == Some(&Value::Bool(true))
        || output.get("success") == Some(&Value::Bool(false))
        || output.get("status").and_then(Value::as_str) == Some("failed")
        || output
            .get("statusCode")
            .and_then(Value::as_f64)
            .is_some_and(|c| c >= 400.0)
}

/// Is a connection of type `kind` taken for a node that produced `output`?
pub fn connection_taken(kind: &str, output: &Value) -> bool {
    if let Some(branch) = output.get("_conditionBranch").filter(|b| !b.is_null()) {
        return branch.as_str() == Some(kind);
    }
    match kind {
        ERROR => signals_failure(output),
        MAIN => !signals_failure(output),
        TRUE => truthy_result(output) == Some(true),
        FALSE => truthy_result(output) == Some(false),
        _ => false,
    }
}

/// The top-level fields of an output that routing reads.
const ROUTING_FIELDS: [&str; 7] = [
    "_conditionBranch",
    "error",
    "success",
    "status",
    "statusCode",
    "result",
    "condition",
];

/// What routing reads of an output (its routing fields), routed exactly like the output, and
/// cheap to keep beside it when the output is large.
pub fn routing_fields(output: &Value) -> Value {
    let Some(fields) = output.as_object() else {
        return Value::Null;
    };
    Value::Object(
        ROUTING_FIELDS
            .iter()
            .filter_map(|k| fields.get(*k).map(|v| ((*k).to_string(), v.clone())))
            .collect(),
    )
}

fn truthy_result(output: &Value) -> Option<bool> {
    output
        .get("result")
        .and_then(Value::as_bool)
        .or_else(|| output.get("condition").and_then(Value::as_bool))
}

/// The node's `onError`, or its default: `errorOutput` when it has an outgoing `error`
/// connection, else `stop`.
pub fn effective_on_error(node: &Node, outgoing: &[Connection]) -> OnError {
    node.on_error.unwrap_or_else(|| {
        if outgoing.iter().any(|c| c.kind == ERROR) {
            OnError::ErrorOutput
        } else {
            OnError::Stop
        }
    })
}

/// How a finished node leaves: with its output, or failed after its last attempt.
#[derive(Debug, Clone, Copy)]
pub enum Finished<'a> {
    Output(&'a Value),
    /// Failed, `onError: continue`: the error output goes on along `main` only.
    FailedContinue,
    /// Failed, `onError: errorOutput`: only `error` connections are taken.
    FailedErrorOutput,
    /// Skipped on a dead path: nothing is taken.
    Dead,
}

/// Is a connection of type `kind` taken when its source finished so?
pub fn kind_taken(kind: &str, finished: Finished<'_>) -> bool {
    match finished {
        Finished::Output(output) => connection_taken(kind, output),
        Finished::FailedContinue => kind == MAIN,
        Finished::FailedErrorOutput => kind == ERROR,
        Finished::Dead => false,
    }
}

/// Each distinct child, in connection order, with whether at least one connection to it was
/// taken. Linear in the number of connections.
pub fn route(outgoing: &[Connection], finished: Finished<'_>) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::with_capacity(outgoing.len());
    let mut position: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(outgoing.len());
    for c in outgoing {
        let taken = kind_taken(&c.kind, finished);
        match position.get(c.target.as_str()) {
            Some(&i) => out[i].1 |= taken,
            None => {
                position.insert(&c.target, out.len());
                out.push((c.target.clone(), taken));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routing_fields_route_like_the_output() {
        let outputs = [
            json!({"_conditionBranch": "true", "big": [1, 2, 3]}),
            json!({"error": true, "rows": {"a": 1}}),
            json!({"success": false}),
            json!({"status": "failed", "statusCode": 200}),
            json!({"statusCode": 503, "body": "x"}),
            json!({"result": false, "other": 1}),
            json!({"condition": true}),
            json!({"plain": "data"}),
            json!([1, 2]),
            json!("text"),
            Value::Null,
        ];
        for output in &outputs {
            for kind in [MAIN, ERROR, TRUE, FALSE, "case1"] {
                assert_eq!(
                    connection_taken(kind, &routing_fields(output)),
                    connection_taken(kind, output),
                    "{kind} for {output}"
                );
            }
        }
        assert_eq!(
            routing_fields(&json!({"statusCode": 201, "body": "large"})),
            json!({"statusCode": 201})
        );
    }

    fn conn(t: &str, kind: &str) -> Connection {
        Connection {
            source: "n".into(),
            target: t.into(),
            kind: kind.into(),
        }
    }
    fn node(on_error: Option<OnError>) -> Node {
        let mut n: Node =
            serde_json::from_value(json!({"id": "n", "name": "n", "type": "flow.noop"})).unwrap();
        n.on_error = on_error;
        n
    }

    #[test]
    fn condition_branch_takes_only_the_matching_type() {
        let out = json!({"_conditionBranch": "big", "error": true});
        assert!(connection_taken("big", &out));
        assert!(!connection_taken("small", &out));
        assert!(!connection_taken("main", &out));
        assert!(!connection_taken("error", &out));
    }

    #[test]
    fn error_true_takes_error_not_main() {
        let out = json!({"error": true});
        assert!(connection_taken("error", &out));
        assert!(!connection_taken("main", &out));
    }

    #[test]
    fn success_false_takes_error() {
        let out = json!({"success": false});
        assert!(connection_taken("error", &out));
        assert!(!connection_taken("main", &out));
    }

    #[test]
    fn status_failed_takes_error() {
        let out = json!({"status": "failed"});
        assert!(connection_taken("error", &out));
        assert!(!connection_taken("main", &out));
        assert!(connection_taken("main", &json!({"status": "ok"})));
    }

    #[test]
    fn status_code_400_and_up_takes_error() {
        assert!(connection_taken("error", &json!({"statusCode": 400})));
        assert!(connection_taken("error", &json!({"statusCode": 503})));
        assert!(!connection_taken("main", &json!({"statusCode": 500})));
        assert!(connection_taken("main", &json!({"statusCode": 399})));
        assert!(!connection_taken("error", &json!({"statusCode": 200})));
    }

    #[test]
    fn plain_output_takes_main_only() {
        let out = json!({"x": 1});
        assert!(connection_taken("main", &out));
        assert!(!connection_taken("error", &out));
        assert!(!connection_taken("true", &out));
        assert!(!connection_taken("false", &out));
        assert!(connection_taken("main", &json!([1, 2])));
        assert!(connection_taken("main", &json!("text")));
    }

    #[test]
    fn true_false_follow_result_or_condition() {
        assert!(connection_taken("true", &json!({"result": true})));
        assert!(!connection_taken("false", &json!({"result": true})));
        assert!(connection_taken("false", &json!({"result": false})));
        assert!(connection_taken("true", &json!({"condition": true})));
        assert!(connection_taken("false", &json!({"condition": false})));
        assert!(!connection_taken("true", &json!({"result": "yes"})));
    }

    #[test]
    fn on_error_defaults_to_error_output_with_an_error_connection() {
        assert_eq!(
            effective_on_error(&node(None), &[conn("a", "main"), conn("b", "error")]),
            OnError::ErrorOutput
        );
        assert_eq!(
            effective_on_error(&node(None), &[conn("a", "main")]),
            OnError::Stop
        );
        assert_eq!(
            effective_on_error(&node(Some(OnError::Continue)), &[conn("b", "error")]),
            OnError::Continue
        );
        assert_eq!(
            effective_on_error(&node(Some(OnError::Stop)), &[conn("b", "error")]),
            OnError::Stop
        );
    }

    #[test]
    fn failed_nodes_route_by_on_error() {
        let outgoing = [conn("ok", "main"), conn("bad", "error")];
        assert_eq!(
            route(&outgoing, Finished::FailedContinue),
            [("ok".to_string(), true), ("bad".to_string(), false)]
        );
        assert_eq!(
            route(&outgoing, Finished::FailedErrorOutput),
            [("ok".to_string(), false), ("bad".to_string(), true)]
        );
    }

    #[test]
    fn route_merges_connections_to_one_child() {
        let outgoing = [conn("x", "a"), conn("x", "b"), conn("y", "c")];
        let out = json!({"_conditionBranch": "b"});
        assert_eq!(
            route(&outgoing, Finished::Output(&out)),
            [("x".to_string(), true), ("y".to_string(), false)]
        );
    }
}
