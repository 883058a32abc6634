//! Workflow validation (spec §2): every message names the offending node (id and name) or
//! connection (index, source → target); `details` carries the same facts as JSON.
//!
//! Checks run in a fixed order and the first problem is returned:
//! 1. the workflow: name and description (lengths), nodes (1 to the limit), connections (to
//!    the limit), `settings.timeoutMs`;
//! 2. node identity: empty or too long ids/names, duplicate ids/names;
//! 3. each node in order: known type, its parameters (`NodeType::validate`), `retry`,
//!    `timeoutMs`, every expression in its parameters;
//! 4. each connection in order: dangling ends, self-connections, `true`/`false` from a node
//!    that is not a condition;
//! 5. triggers: at least one, none with incoming connections;
//! 6. cycles (one cycle is listed in order).

use crate::expr;
use crate::limits::{
    MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_WORKFLOW_CONNECTIONS, MAX_WORKFLOW_NODES,
};
use crate::model::{Connection, FALSE, Node, TRUE, WorkflowDefinition};
use crate::nodes;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Why a workflow was rejected; `details` goes into the 400 response's `details`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub message: String,
    pub details: Value,
}

impl ValidationError {
    fn new(message: impl Into<String>, details: Value) -> Self {
        ValidationError {
            message: message.into(),
            details,
        }
    }
}

/// Attempts a node may be given (`retry.maxAttempts`).
pub const MAX_ATTEMPTS: std::ops::RangeInclusive<u32> = 1..=10;

pub fn validate(def: &WorkflowDefinition) -> Result<(), ValidationError> {
    check_workflow(def)?;
    check_identity(&def.nodes)?;
    for node in &def.nodes {
        check_node(node)?;
    }
    let by_id: HashMap<&str, &Node> = def.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    for (index, c) in def.connections.iter().enumerate() {
        check_connection(index, c, &by_id)?;
    }
    check_triggers(def)?;
    check_cycles(def)
}

/// `node "id" ("Name")`
fn node_label(node: &Node) -> String {
    format!("node \"{}\" (\"{}\")", node.id, node.name)
}

/// `connections[3] (a → b)`
fn connection_label(index: usize, c: &Connection) -> String {
    format!("connections[{index}] ({} → {})", c.source, c.target)
}

fn connection_details(index: usize, c: &Connection) -> Value {
    json!({"connection": index, "source": c.source, "target": c.target, "type": c.kind})
}

fn check_workflow(def: &WorkflowDefinition) -> Result<(), ValidationError> {
    if def.name.trim().is_empty() {
        return Err(ValidationError::new(
            "workflow name must not be empty",
            json!({"field": "name"}),
        ));
    }
    if def.name.chars().count() > MAX_NAME_CHARS {
        return Err(ValidationError::new(
            format!("workflow name is longer than {MAX_NAME_CHARS} characters"),
            json!({"field": "name"}),
        ));
    }
    if def
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(ValidationError::new(
            format!("workflow description is longer than {MAX_DESCRIPTION_CHARS} characters"),
            json!({"field": "description"}),
        ));
    }
    if def.nodes.is_empty() {
        return Err(ValidationError::new(
            "workflow has no nodes",
            json!({"field": "nodes"}),
        ));
    }
    if def.nodes.len() > MAX_WORKFLOW_NODES {
        return Err(ValidationError::new(
            format!(
                "workflow has {} nodes, over the limit of {MAX_WORKFLOW_NODES}",
                def.nodes.len()
            ),
            json!({"field": "nodes"}),
        ));
    }
    if def.connections.len() > MAX_WORKFLOW_CONNECTIONS {
        return Err(ValidationError::new(
            format!(
                "workflow has {} connections, over the limit of {MAX_WORKFLOW_CONNECTIONS}",
                def.connections.len()
            ),
            json!({"field": "connections"}),
        ));
    }
    if def.settings.timeout_ms == Some(0) {
        return Err(ValidationError::new(
            "settings.timeoutMs must be greater than 0",
            json!({"field": "settings.timeoutMs"}),
        ));
    }
    if let Some(c) = &def.settings.concurrency {
        let (lo, hi) = crate::model::CONCURRENCY_LIMIT_RANGE;
        if !(lo..=hi).contains(&c.limit) {
            return Err(ValidationError::new(
                format!(
                    "settings.concurrency.limit must be between {lo} and {hi} (got {})",
                    c.limit
                ),
                json!({"field": "settings.concurrency.limit"}),
            ));
        }
        if let Some(key) = &c.key {
            check_setting_key("settings.concurrency.key", key)?;
        }
    }
    let (lo, hi) = crate::model::FLOW_PERIOD_MS_RANGE;
    let period = |field: &str, ms: u64| {
        if (lo..=hi).contains(&ms) {
            Ok(())
        } else {
            Err(ValidationError::new(
                format!("{field} must be between {lo} and {hi} (got {ms})"),
                json!({"field": field}),
            ))
        }
    };
    if let Some(t) = &def.settings.throttle {
        let (min, max) = crate::model::CONCURRENCY_LIMIT_RANGE;
        if !(min..=max).contains(&t.limit) {
            return Err(ValidationError::new(
                format!(
                    "settings.throttle.limit must be between {min} and {max} (got {})",
                    t.limit
                ),
                json!({"field": "settings.throttle.limit"}),
            ));
        }
        period("settings.throttle.periodMs", t.period_ms)?;
        if let Some(key) = &t.key {
            check_setting_key("settings.throttle.key", key)?;
        }
    }
    if let Some(d) = &def.settings.debounce {
        period("settings.debounce.periodMs", d.period_ms)?;
        if let Some(key) = &d.key {
            check_setting_key("settings.debounce.key", key)?;
        }
    }
    Ok(())
}

/// Longest key expression of a flow-control setting.
pub const MAX_SETTING_KEY_BYTES: usize = 4_096;

/// A flow-control key: a short expression over `trigger` that compiles.
fn check_setting_key(field: &str, key: &str) -> Result<(), ValidationError> {
    if key.trim().is_empty() || key.len() > MAX_SETTING_KEY_BYTES {
        return Err(ValidationError::new(
            format!("{field} must be 1 to {MAX_SETTING_KEY_BYTES} bytes"),
            json!({"field": field}),
        ));
    }
    crate::expr::check_template(key)
        .map_err(|e| ValidationError::new(format!("{field}: {e}"), json!({"field": field})))
}

fn check_identity(nodes: &[Node]) -> Result<(), ValidationError> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut names: HashMap<&str, &Node> = HashMap::new();
    for (index, node) in nodes.iter().enumerate() {
        if node.id.trim().is_empty() {
            return Err(ValidationError::new(
                format!("nodes[{index}] (\"{}\") has an empty id", node.name),
                json!({"nodeIndex": index, "field": "id"}),
            ));
        }
        if node.name.trim().is_empty() {
            return Err(ValidationError::new(
                format!("node \"{}\" has an empty name", node.id),
                json!({"nodeId": node.id, "nodeIndex": index, "field": "name"}),
            ));
        }
        for (field, text) in [("id", &node.id), ("name", &node.name)] {
            if text.chars().count() > MAX_NAME_CHARS {
                return Err(ValidationError::new(
                    format!("nodes[{index}]: {field} is longer than {MAX_NAME_CHARS} characters"),
                    json!({"nodeIndex": index, "field": field}),
                ));
            }
        }
        if let Some(first) = ids.insert(node.id.as_str(), index) {
            return Err(ValidationError::new(
                format!(
                    "duplicate node id \"{}\" (nodes[{first}] and nodes[{index}])",
                    node.id
                ),
                json!({"nodeId": node.id, "nodeIndex": index}),
            ));
        }
        if let Some(first) = names.insert(node.name.as_str(), node) {
            return Err(ValidationError::new(
                format!(
                    "duplicate node name \"{}\" (nodes \"{}\" and \"{}\")",
                    node.name, first.id, node.id
                ),
                json!({"nodeId": node.id, "name": node.name, "otherNodeId": first.id}),
            ));
        }
    }
    Ok(())
}

fn check_node(node: &Node) -> Result<(), ValidationError> {
    let label = node_label(node);
    let Some(node_type) = nodes::node_type(&node.node_type) else {
        let known: Vec<&str> = nodes::registry().keys().copied().collect();
        return Err(ValidationError::new(
            format!(
                "{label} has unknown type \"{}\" (known types: {})",
                node.node_type,
                known.join(", ")
            ),
            json!({"nodeId": node.id, "type": node.node_type}),
        ));
    };
    if let Err(message) = node_type.validate(&node.parameters) {
        return Err(ValidationError::new(
            format!("{label}: {message}"),
            json!({"nodeId": node.id, "type": node.node_type}),
        ));
    }
    if let Some(attempts) = node.retry.as_ref().and_then(|r| r.max_attempts)
        && !MAX_ATTEMPTS.contains(&attempts)
    {
        return Err(ValidationError::new(
            format!(
                "{label}: retry.maxAttempts must be between {} and {} (got {attempts})",
                MAX_ATTEMPTS.start(),
                MAX_ATTEMPTS.end()
            ),
            json!({"nodeId": node.id, "field": "retry.maxAttempts"}),
        ));
    }
    if node.timeout_ms == Some(0) {
        return Err(ValidationError::new(
            format!("{label}: timeoutMs must be greater than 0"),
            json!({"nodeId": node.id, "field": "timeoutMs"}),
        ));
    }
    for (key, value) in &node.parameters {
        // Raw parameters (an inline child workflow) are checked by the node type, as the
        // child's.
        if node_type.raw_parameters().contains(&key.as_str()) {
            continue;
        }
        let mut path = key.clone();
        check_expressions(node, value, &mut path)?;
    }
    Ok(())
}

/// Checks every string inside a parameter value; `path` is the parameter path so far
/// (`body.items[2].text`).
fn check_expressions(node: &Node, value: &Value, path: &mut String) -> Result<(), ValidationError> {
    match value {
        Value::String(s) => expr::check_template(s).map_err(|e| {
            ValidationError::new(
                format!("{}: parameter `{path}`: {e}", node_label(node)),
                json!({"nodeId": node.id, "parameter": path.as_str()}),
            )
        }),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_expressions(node, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                check_expressions(node, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_connection(
    index: usize,
    c: &Connection,
    by_id: &HashMap<&str, &Node>,
) -> Result<(), ValidationError> {
    let label = connection_label(index, c);
    let Some(source) = by_id.get(c.source.as_str()) else {
        return Err(ValidationError::new(
            format!(
                "{label}: source \"{}\" is not a node of this workflow",
                c.source
            ),
            connection_details(index, c),
        ));
    };
    if !by_id.contains_key(c.target.as_str()) {
        return Err(ValidationError::new(
            format!(
                "{label}: target \"{}\" is not a node of this workflow",
                c.target
            ),
            connection_details(index, c),
        ));
    }
    if c.source == c.target {
        return Err(ValidationError::new(
            format!("{label} connects a node to itself"),
            connection_details(index, c),
        ));
    }
    if c.kind == TRUE || c.kind == FALSE {
        let is_condition = nodes::node_type(&source.node_type).is_some_and(|t| t.is_condition());
        if !is_condition {
            return Err(ValidationError::new(
                format!(
                    "{label} has type \"{}\" but {} of type \"{}\" is not a condition",
                    c.kind,
                    node_label(source),
                    source.node_type
                ),
                connection_details(index, c),
            ));
        }
    }
    Ok(())
}

fn check_triggers(def: &WorkflowDefinition) -> Result<(), ValidationError> {
    let is_trigger = |n: &Node| nodes::node_type(&n.node_type).is_some_and(|t| t.is_trigger());
    let triggers: Vec<&Node> = def.nodes.iter().filter(|n| is_trigger(n)).collect();
    if triggers.is_empty() {
        let kinds: Vec<&str> = nodes::registry()
            .iter()
            .filter(|(_, t)| t.is_trigger())
            .map(|(name, _)| *name)
            .collect();
        return Err(ValidationError::new(
            format!(
                "workflow has no trigger node (add one of: {})",
                kinds.join(", ")
            ),
            json!({"field": "nodes"}),
        ));
    }
    let by_id: HashMap<&str, &Node> = triggers.iter().map(|t| (t.id.as_str(), *t)).collect();
    for (index, c) in def.connections.iter().enumerate() {
        if let Some(trigger) = by_id.get(c.target.as_str()) {
            return Err(ValidationError::new(
                format!(
                    "trigger {} has an incoming connection: {}",
                    node_label(trigger),
                    connection_label(index, c)
                ),
                json!({"nodeId": trigger.id, "connection": index, "source": c.source, "target": c.target}),
            ));
        }
    }
    Ok(())
}

/// Finds one cycle (depth-first, nodes in definition order, edges in connection order).
fn find_cycle(def: &WorkflowDefinition) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = def
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); def.nodes.len()];
    let mut seen: std::collections::HashSet<(usize, usize)> = std::collections::HashSet::new();
    for c in &def.connections {
        if let (Some(&s), Some(&t)) = (index.get(c.source.as_str()), index.get(c.target.as_str()))
            && seen.insert((s, t))
        {
            edges[s].push(t);
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; def.nodes.len()];
    for start in 0..def.nodes.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: the path and, for each node on it, the next edge to follow.
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(&child) = edges[node].get(*next) {
                *next += 1;
                match mark[child] {
                    Mark::New => {
                        mark[child] = Mark::OnPath;
                        path.push((child, 0));
                    }
                    Mark::OnPath => {
                        let from = path.iter().position(|(n, _)| *n == child).unwrap_or(0);
                        return Some(
                            path[from..]
                                .iter()
                                .map(|(n, _)| def.nodes[*n].id.clone())
                                .collect(),
                        );
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}

fn check_cycles(def: &WorkflowDefinition) -> Result<(), ValidationError> {
    let Some(cycle) = find_cycle(def) else {
        return Ok(());
    };
    let names: BTreeMap<&str, &str> = def
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.name.as_str()))
        .collect();
    let mut shown: Vec<String> = cycle.clone();
    if let Some(first) = cycle.first() {
        shown.push(first.clone());
    }
    let described: Vec<String> = cycle
        .iter()
        .map(|id| format!("\"{id}\" (\"{}\")", names.get(id.as_str()).unwrap_or(&"")))
        .collect();
    Err(ValidationError::new(
        format!(
            "cycle: {} (nodes {})",
            shown.join(" → "),
            described.join(", ")
        ),
        json!({"cycle": cycle}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> WorkflowDefinition {
        serde_json::from_value(v).expect("test definition parses")
    }

    /// The spec's example workflow.
    fn example() -> Value {
        json!({
            "name": "Order alert",
            "status": "active",
            "nodes": [
                {"id": "hook", "name": "Order webhook", "type": "trigger.webhook", "parameters": {"method": "POST"}},
                {"id": "big", "name": "Big order?", "type": "logic.if", "parameters": {"condition": "{{ trigger.body.amount > 100 }}"}},
                {"id": "notify", "name": "Notify sales", "type": "http.request",
                 "parameters": {"method": "POST", "url": "https://hooks.example.com/sales",
                                "body": {"text": "Order {{ trigger.body.orderId }}: {{ trigger.body.amount }}"}},
                 "retry": {"maxAttempts": 3, "backoff": "exponential", "baseDelayMs": 1000, "maxDelayMs": 30000}},
                {"id": "ignore", "name": "Small order", "type": "flow.noop"}
            ],
            "connections": [
                {"source": "hook", "target": "big"},
                {"source": "big", "target": "notify", "type": "true"},
                {"source": "big", "target": "ignore", "type": "false"}
            ],
            "settings": {"timeoutMs": 300000}
        })
    }

    fn with(mut base: Value, f: impl FnOnce(&mut Value)) -> WorkflowDefinition {
        f(&mut base);
        def(base)
    }

    fn push_connection(v: &mut Value, c: Value) {
        if let Some(list) = v["connections"].as_array_mut() {
            list.push(c);
        }
    }

    fn rejected(d: &WorkflowDefinition) -> ValidationError {
        validate(d).expect_err("workflow should be rejected")
    }

    #[test]
    fn the_spec_example_is_valid() {
        assert_eq!(validate(&def(example())), Ok(()));
    }

    #[test]
    fn empty_name_is_rejected() {
        let e = rejected(&with(example(), |v| v["name"] = json!("  ")));
        assert_eq!(e.message, "workflow name must not be empty");
        assert_eq!(e.details, json!({"field": "name"}));
    }

    #[test]
    fn no_nodes_is_rejected() {
        let e = rejected(&with(example(), |v| {
            v["nodes"] = json!([]);
            v["connections"] = json!([]);
        }));
        assert_eq!(e.message, "workflow has no nodes");
    }

    #[test]
    fn zero_workflow_timeout_is_rejected() {
        let e = rejected(&with(example(), |v| v["settings"]["timeoutMs"] = json!(0)));
        assert!(e.message.contains("settings.timeoutMs"), "{}", e.message);
    }

    #[test]
    fn empty_id_or_name_is_rejected() {
        let e = rejected(&with(example(), |v| v["nodes"][2]["id"] = json!("")));
        assert_eq!(e.message, "nodes[2] (\"Notify sales\") has an empty id");
        assert_eq!(e.details["nodeIndex"], json!(2));
        let e = rejected(&with(example(), |v| v["nodes"][2]["name"] = json!("")));
        assert_eq!(e.message, "node \"notify\" has an empty name");
        assert_eq!(e.details["nodeId"], json!("notify"));
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let e = rejected(&with(example(), |v| v["nodes"][3]["id"] = json!("big")));
        assert_eq!(
            e.message,
            "duplicate node id \"big\" (nodes[1] and nodes[3])"
        );
        assert_eq!(e.details["nodeId"], json!("big"));
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let e = rejected(&with(example(), |v| {
            v["nodes"][3]["name"] = json!("Big order?")
        }));
        assert_eq!(
            e.message,
            "duplicate node name \"Big order?\" (nodes \"big\" and \"ignore\")"
        );
        assert_eq!(e.details["nodeId"], json!("ignore"));
        assert_eq!(e.details["otherNodeId"], json!("big"));
    }

    #[test]
    fn unknown_node_types_are_rejected() {
        let e = rejected(&with(example(), |v| {
            v["nodes"][3]["type"] = json!("flow.teleport")
        }));
        assert!(
            e.message.starts_with(
                "node \"ignore\" (\"Small order\") has unknown type \"flow.teleport\""
            ),
            "{}",
            e.message
        );
        assert!(e.message.contains("flow.noop"), "{}", e.message);
        assert_eq!(
            e.details,
            json!({"nodeId": "ignore", "type": "flow.teleport"})
        );
    }

    #[test]
    fn missing_required_parameters_are_rejected_with_the_node() {
        let e = rejected(&with(example(), |v| {
            v["nodes"][2]["parameters"]
                .as_object_mut()
                .map(|p| p.remove("url"));
        }));
        assert!(
            e.message
                .starts_with("node \"notify\" (\"Notify sales\"): "),
            "{}",
            e.message
        );
        assert!(e.message.contains("url"), "{}", e.message);
        assert_eq!(e.details["nodeId"], json!("notify"));
        let e = rejected(&with(example(), |v| {
            v["nodes"][1]["parameters"] = json!({})
        }));
        assert!(
            e.message.starts_with("node \"big\" (\"Big order?\"): "),
            "{}",
            e.message
        );
        assert!(e.message.contains("condition"), "{}", e.message);
    }

    #[test]
    fn retry_attempts_outside_range_are_rejected() {
        for attempts in [0, 11] {
            let e = rejected(&with(example(), |v| {
                v["nodes"][2]["retry"]["maxAttempts"] = json!(attempts)
            }));
            assert_eq!(
                e.message,
                format!(
                    "node \"notify\" (\"Notify sales\"): retry.maxAttempts must be between 1 and 10 (got {attempts})"
                )
            );
            assert_eq!(
                e.details,
                json!({"nodeId": "notify", "field": "retry.maxAttempts"})
            );
        }
        for attempts in [1, 10] {
            let d = with(example(), |v| {
                v["nodes"][2]["retry"]["maxAttempts"] = json!(attempts)
            });
            assert_eq!(validate(&d), Ok(()));
        }
    }

    #[test]
    fn zero_node_timeout_is_rejected() {
        let e = rejected(&with(example(), |v| v["nodes"][2]["timeoutMs"] = json!(0)));
        assert_eq!(
            e.message,
            "node \"notify\" (\"Notify sales\"): timeoutMs must be greater than 0"
        );
        let d = with(example(), |v| v["nodes"][2]["timeoutMs"] = json!(5000));
        assert_eq!(validate(&d), Ok(()));
    }

    #[test]
    fn expressions_that_do_not_parse_are_rejected_with_node_and_parameter() {
        let e = rejected(&with(example(), |v| {
            v["nodes"][2]["parameters"]["body"]["items"] =
                json!(["ok", {"text": "Order {{ trigger.body.orderId "}])
        }));
        assert!(
            e.message.starts_with(
                "node \"notify\" (\"Notify sales\"): parameter `body.items[1].text`: expression"
            ),
            "{}",
            e.message
        );
        assert!(e.message.contains("does not parse"), "{}", e.message);
        assert_eq!(
            e.details,
            json!({"nodeId": "notify", "parameter": "body.items[1].text"})
        );
        let e = rejected(&with(example(), |v| {
            v["nodes"][1]["parameters"]["condition"] = json!("{{ trigger.body.amount > }}")
        }));
        assert!(e.message.contains("parameter `condition`"), "{}", e.message);
        // Sandbox refusals are reported the same way.
        let e = rejected(&with(example(), |v| {
            v["nodes"][1]["parameters"]["condition"] = json!("{% include 'x' %}")
        }));
        assert!(e.message.contains("is not allowed"), "{}", e.message);
    }

    #[test]
    fn dangling_connections_are_rejected() {
        let e = rejected(&with(example(), |v| {
            v["connections"][2]["target"] = json!("nowhere")
        }));
        assert_eq!(
            e.message,
            "connections[2] (big → nowhere): target \"nowhere\" is not a node of this workflow"
        );
        assert_eq!(
            e.details,
            json!({"connection": 2, "source": "big", "target": "nowhere", "type": "false"})
        );
        let e = rejected(&with(example(), |v| {
            v["connections"][0]["source"] = json!("ghost")
        }));
        assert_eq!(
            e.message,
            "connections[0] (ghost → big): source \"ghost\" is not a node of this workflow"
        );
    }

    #[test]
    fn self_connections_are_rejected() {
        let e = rejected(&with(example(), |v| {
            push_connection(v, json!({"source": "notify", "target": "notify"}));
        }));
        assert_eq!(
            e.message,
            "connections[3] (notify → notify) connects a node to itself"
        );
        assert_eq!(e.details["connection"], json!(3));
    }

    #[test]
    fn true_false_connections_need_a_condition() {
        let e = rejected(&with(example(), |v| {
            push_connection(
                v,
                json!({"source": "notify", "target": "ignore", "type": "false"}),
            );
        }));
        assert_eq!(
            e.message,
            "connections[3] (notify → ignore) has type \"false\" but node \"notify\" (\"Notify sales\") of type \"http.request\" is not a condition"
        );
        assert_eq!(
            e.details,
            json!({"connection": 3, "source": "notify", "target": "ignore", "type": "false"})
        );
        // `error` and `main` connections from any node are fine.
        let d = with(example(), |v| {
            push_connection(
                v,
                json!({"source": "notify", "target": "ignore", "type": "error"}),
            );
        });
        assert_eq!(validate(&d), Ok(()));
    }

    #[test]
    fn a_trigger_is_required() {
        let e = rejected(&def(json!({
            "name": "No trigger",
            "nodes": [
                {"id": "a", "name": "A", "type": "flow.noop"},
                {"id": "b", "name": "B", "type": "flow.noop"}
            ],
            "connections": [{"source": "a", "target": "b"}]
        })));
        assert!(
            e.message.starts_with("workflow has no trigger node"),
            "{}",
            e.message
        );
        assert!(e.message.contains("trigger.manual"), "{}", e.message);
    }

    #[test]
    fn triggers_cannot_have_incoming_connections() {
        let e = rejected(&with(example(), |v| {
            push_connection(v, json!({"source": "ignore", "target": "hook"}));
        }));
        assert_eq!(
            e.message,
            "trigger node \"hook\" (\"Order webhook\") has an incoming connection: connections[3] (ignore → hook)"
        );
        assert_eq!(
            e.details,
            json!({"nodeId": "hook", "connection": 3, "source": "ignore", "target": "hook"})
        );
    }

    #[test]
    fn cycles_are_listed_in_order() {
        let d = def(json!({
            "name": "Loop",
            "nodes": [
                {"id": "start", "name": "Start", "type": "trigger.manual"},
                {"id": "a", "name": "A", "type": "flow.noop"},
                {"id": "b", "name": "B", "type": "flow.noop"},
                {"id": "c", "name": "C", "type": "flow.noop"},
                {"id": "d", "name": "D", "type": "flow.noop"}
            ],
            "connections": [
                {"source": "start", "target": "a"},
                {"source": "a", "target": "d"},
                {"source": "a", "target": "b"},
                {"source": "b", "target": "c"},
                {"source": "c", "target": "a"}
            ]
        }));
        let e = rejected(&d);
        assert_eq!(
            e.message,
            "cycle: a → b → c → a (nodes \"a\" (\"A\"), \"b\" (\"B\"), \"c\" (\"C\"))"
        );
        assert_eq!(e.details, json!({"cycle": ["a", "b", "c"]}));
    }

    #[test]
    fn two_node_cycle_and_acyclic_diamond() {
        let cyc = def(json!({
            "name": "Ping pong",
            "nodes": [
                {"id": "t", "name": "T", "type": "trigger.manual"},
                {"id": "x", "name": "X", "type": "flow.noop"},
                {"id": "y", "name": "Y", "type": "flow.noop"}
            ],
            "connections": [
                {"source": "t", "target": "x"},
                {"source": "x", "target": "y"},
                {"source": "y", "target": "x", "type": "error"}
            ]
        }));
        assert_eq!(rejected(&cyc).details, json!({"cycle": ["x", "y"]}));
        let diamond = def(json!({
            "name": "Diamond",
            "nodes": [
                {"id": "t", "name": "T", "type": "trigger.manual"},
                {"id": "l", "name": "L", "type": "flow.noop"},
                {"id": "r", "name": "R", "type": "flow.noop"},
                {"id": "j", "name": "J", "type": "flow.merge"}
            ],
            "connections": [
                {"source": "t", "target": "l"},
                {"source": "t", "target": "r"},
                {"source": "l", "target": "j"},
                {"source": "r", "target": "j"}
            ]
        }));
        assert_eq!(validate(&diamond), Ok(()));
    }

    #[test]
    fn the_first_problem_wins() {
        // Both a duplicate id and a dangling connection: identity checks come first.
        let e = rejected(&with(example(), |v| {
            v["nodes"][3]["id"] = json!("big");
            v["connections"][0]["target"] = json!("nowhere");
        }));
        assert!(e.message.starts_with("duplicate node id"), "{}", e.message);
        // Same input, same answer.
        let d = with(example(), |v| {
            v["connections"][0]["target"] = json!("nowhere");
            v["connections"][1]["source"] = json!("ghost");
        });
        assert_eq!(rejected(&d), rejected(&d));
        assert!(rejected(&d).message.starts_with("connections[0]"));
    }
}
