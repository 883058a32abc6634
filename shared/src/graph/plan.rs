//! The shape of a (valid) workflow that the engine walks: parents, outgoing connections,
//! topological order.

use crate::model::{Connection, Node, Workflow};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Node ids in topological order (ties broken by definition order).
    order: Vec<String>,
    /// Distinct parents of each node, in connection order.
    parents: BTreeMap<String, Vec<String>>,
    /// Outgoing connections of each node, in definition order.
    outgoing: BTreeMap<String, Vec<Connection>>,
}

impl Plan {
    /// Builds the plan of a validated workflow (a cycle's nodes are left out of `order`).
    pub fn new(wf: &Workflow) -> Self {
        Self::from_parts(&wf.nodes, &wf.connections)
    }

    pub fn from_parts(nodes: &[Node], connections: &[Connection]) -> Self {
        let mut parents: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut outgoing: BTreeMap<String, Vec<Connection>> = BTreeMap::new();
        for n in nodes {
            parents.entry(n.id.clone()).or_default();
            outgoing.entry(n.id.clone()).or_default();
        }
        for c in connections {
            outgoing
                .entry(c.source.clone())
                .or_default()
                .push(c.clone());
            let ps = parents.entry(c.target.clone()).or_default();
            if !ps.contains(&c.source) {
                ps.push(c.source.clone());
            }
        }
        // Kahn's algorithm, picking ready nodes in definition order.
        let position: BTreeMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut indegree: BTreeMap<&str, usize> =
            parents.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        let mut ready: BTreeSet<(usize, &str)> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .filter_map(|(id, _)| position.get(id).map(|p| (*p, *id)))
            .collect();
        let mut order = Vec::with_capacity(nodes.len());
        while let Some(first) = ready.pop_first() {
            let id = first.1;
            order.push(id.to_string());
            let mut children: VecDeque<&str> = VecDeque::new();
            for c in outgoing.get(id).map(Vec::as_slice).unwrap_or_default() {
                if !children.contains(&c.target.as_str()) {
                    children.push_back(c.target.as_str());
                }
            }
            for child in children {
                if let Some(d) = indegree.get_mut(child) {
                    *d -= 1;
                    if *d == 0
                        && let Some(p) = position.get(child)
                    {
                        ready.insert((*p, child));
                    }
                }
            }
        }
        Self {
            order,
            parents,
            outgoing,
        }
    }

    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The node's 1-based position in topological order (`executionStep` of its logs).
    pub fn step(&self, node_id: &str) -> u32 {
        self.order
            .iter()
            .position(|n| n == node_id)
            .map_or(0, |i| i as u32 + 1)
    }

    pub fn parents(&self, node_id: &str) -> &[String] {
        self.parents
            .get(node_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn outgoing(&self, node_id: &str) -> &[Connection] {
        self.outgoing
            .get(node_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Distinct targets of the node's outgoing connections, in connection order.
    pub fn children(&self, node_id: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for c in self.outgoing(node_id) {
            if !out.contains(&c.target.as_str()) {
                out.push(c.target.as_str());
            }
        }
        out
    }

    /// No fan-out and no join: every node has at most one parent and one child, so at most
    /// one node of an execution is active at a time.
    pub fn is_chain(&self) -> bool {
        self.parents.values().all(|p| p.len() <= 1)
            && self.order.iter().all(|n| self.children(n).len() <= 1)
    }

    /// Nodes without parents (the triggers of a valid workflow).
    pub fn roots(&self) -> Vec<&str> {
        self.order
            .iter()
            .filter(|n| self.parents(n).is_empty())
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(id: &str) -> Node {
        serde_json::from_value(json!({"id": id, "name": id, "type": "flow.noop"})).unwrap()
    }
    fn conn(s: &str, t: &str, kind: &str) -> Connection {
        Connection {
            source: s.into(),
            target: t.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn diamond_order_parents_and_children() {
        let nodes = vec![node("a"), node("c"), node("b"), node("d")];
        let conns = vec![
            conn("a", "b", "main"),
            conn("a", "c", "main"),
            conn("b", "d", "main"),
            conn("c", "d", "main"),
        ];
        let plan = Plan::from_parts(&nodes, &conns);
        assert_eq!(plan.order(), ["a", "c", "b", "d"]);
        assert_eq!(plan.parents("d"), ["b", "c"]);
        assert_eq!(plan.children("a"), ["b", "c"]);
        assert_eq!(plan.step("a"), 1);
        assert_eq!(plan.step("d"), 4);
        assert_eq!(plan.roots(), ["a"]);
        assert!(!plan.is_chain());
        let line = Plan::from_parts(&nodes[..2], &[conn("a", "c", "main")]);
        assert!(line.is_chain());
    }

    #[test]
    fn two_connections_to_one_child_make_one_parent() {
        let nodes = vec![node("s"), node("x")];
        let conns = vec![conn("s", "x", "a"), conn("s", "x", "b")];
        let plan = Plan::from_parts(&nodes, &conns);
        assert_eq!(plan.parents("x"), ["s"]);
        assert_eq!(plan.children("s"), ["x"]);
        assert_eq!(plan.outgoing("s").len(), 2);
    }
}
