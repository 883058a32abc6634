//! The shape of a (valid) workflow that the engine walks: parents, outgoing connections,
//! children, topological order, and the node outputs each node's expressions read. Built once
//! per workflow version; every lookup is O(1) (a wide fan-out or a long chain costs the same
//! per node).

use super::routing::{Finished, kind_taken};
use crate::expr::{self, NodeRefs};
use crate::model::{Connection, Node, Workflow};
use std::collections::{BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Node id → position in the workflow's `nodes`.
    index: HashMap<String, usize>,
    /// Node ids in topological order (ties broken by definition order).
    order: Vec<String>,
    /// By position: 1-based place in `order` (0: left out, in a cycle).
    step: Vec<u32>,
    /// By position: distinct parents, in connection order.
    parents: Vec<Vec<String>>,
    /// By position: outgoing connections, in definition order.
    outgoing: Vec<Vec<Connection>>,
    /// By position: distinct targets of the outgoing connections, in connection order.
    children: Vec<Vec<String>>,
    /// (source, target) positions → the types of the connections between them.
    edge_kinds: HashMap<(usize, usize), Vec<String>>,
    /// By position: the upstream outputs the node's expressions name (`nodes.<id>`).
    reads: Vec<NodeRefs>,
    /// Nodes without parents (the triggers of a valid workflow), in topological order.
    roots: Vec<String>,
    chain: bool,
}

static NO_IDS: Vec<String> = Vec::new();
static NO_CONNECTIONS: Vec<Connection> = Vec::new();

impl Plan {
    /// Builds the plan of a validated workflow (a cycle's nodes are left out of `order`).
    pub fn new(wf: &Workflow) -> Self {
        Self::from_parts(&wf.nodes, &wf.connections)
    }

    pub fn from_parts(nodes: &[Node], connections: &[Connection]) -> Self {
        let index: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        let n = nodes.len();
        let mut parents: Vec<Vec<String>> = vec![Vec::new(); n];
        let mut outgoing: Vec<Vec<Connection>> = vec![Vec::new(); n];
        let mut children: Vec<Vec<String>> = vec![Vec::new(); n];
        let mut edge_kinds: HashMap<(usize, usize), Vec<String>> = HashMap::new();
        for c in connections {
            let (Some(&s), Some(&t)) = (index.get(&c.source), index.get(&c.target)) else {
                continue;
            };
            outgoing[s].push(c.clone());
            let kinds = edge_kinds.entry((s, t)).or_default();
            if kinds.is_empty() {
                parents[t].push(c.source.clone());
                children[s].push(c.target.clone());
            }
            kinds.push(c.kind.clone());
        }
        // Kahn's algorithm, picking ready nodes in definition order.
        let mut indegree: Vec<usize> = parents.iter().map(Vec::len).collect();
        let mut ready: BTreeSet<usize> = (0..n).filter(|i| indegree[*i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        let mut step = vec![0u32; n];
        while let Some(i) = ready.pop_first() {
            order.push(nodes[i].id.clone());
            step[i] = order.len() as u32;
            for child in &children[i] {
                let c = index[child];
                indegree[c] -= 1;
                if indegree[c] == 0 {
                    ready.insert(c);
                }
            }
        }
        let roots = order
            .iter()
            .filter(|id| parents[index[*id]].is_empty())
            .cloned()
            .collect();
        let chain = parents.iter().all(|p| p.len() <= 1) && children.iter().all(|c| c.len() <= 1);
        let reads = nodes
            .iter()
            .map(|node| expr::referenced_nodes(&resolved_parameters(node)))
            .collect();
        Self {
            index,
            order,
            step,
            parents,
            outgoing,
            children,
            edge_kinds,
            reads,
            roots,
            chain,
        }
    }

    /// The node's position in the workflow's `nodes`.
    pub fn position(&self, node_id: &str) -> Option<usize> {
        self.index.get(node_id).copied()
    }

    /// The node of `wf` (the workflow this plan was built from) with that id.
    pub fn node<'w>(&self, wf: &'w Workflow, node_id: &str) -> Option<&'w Node> {
        self.position(node_id).and_then(|i| wf.nodes.get(i))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The node's 1-based position in topological order (`executionStep` of its logs).
    pub fn step(&self, node_id: &str) -> u32 {
        self.position(node_id).map_or(0, |i| self.step[i])
    }

    pub fn parents(&self, node_id: &str) -> &[String] {
        self.position(node_id).map_or(&NO_IDS, |i| &self.parents[i])
    }

    pub fn outgoing(&self, node_id: &str) -> &[Connection] {
        self.position(node_id)
            .map_or(&NO_CONNECTIONS, |i| &self.outgoing[i])
    }

    /// Distinct targets of the node's outgoing connections, in connection order.
    pub fn children(&self, node_id: &str) -> &[String] {
        self.position(node_id)
            .map_or(&NO_IDS, |i| &self.children[i])
    }

    /// Did `source`, finished so, take (at least one of) its connections to `target`?
    pub fn edge_taken(&self, source: &str, target: &str, finished: Finished<'_>) -> bool {
        let (Some(s), Some(t)) = (self.position(source), self.position(target)) else {
            return false;
        };
        self.edge_kinds
            .get(&(s, t))
            .is_some_and(|kinds| kinds.iter().any(|k| kind_taken(k, finished)))
    }

    /// The upstream outputs the node's expressions name.
    pub fn reads(&self, node_id: &str) -> &NodeRefs {
        static NONE: NodeRefs = NodeRefs::None;
        self.position(node_id).map_or(&NONE, |i| &self.reads[i])
    }

    /// The node runs a node needs to run: its parents (its input), the triggers (`trigger`)
    /// and the outputs its expressions name. `None`: every run (an expression reads `nodes`
    /// as a whole).
    pub fn needs(&self, node_id: &str) -> Option<Vec<String>> {
        let named = match self.reads(node_id) {
            NodeRefs::All => return None,
            NodeRefs::None => &[][..],
            NodeRefs::Some(ids) => ids.as_slice(),
        };
        let mut out: Vec<String> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for id in self
            .parents(node_id)
            .iter()
            .chain(&self.roots)
            .chain(named.iter())
        {
            if self.index.contains_key(id) && seen.insert(id) {
                out.push(id.clone());
            }
        }
        Some(out)
    }

    /// No fan-out and no join: every node has at most one parent and one child, so at most
    /// one node of an execution is active at a time.
    pub fn is_chain(&self) -> bool {
        self.chain
    }

    /// Nodes without parents (the triggers of a valid workflow).
    pub fn roots(&self) -> &[String] {
        &self.roots
    }
}

/// The parameters of a node that are resolved in its execution (not the raw ones).
fn resolved_parameters(node: &Node) -> serde_json::Map<String, serde_json::Value> {
    let raw = crate::nodes::node_type(&node.node_type).map_or(&[][..], |t| t.raw_parameters());
    node.parameters
        .iter()
        .filter(|(k, _)| !raw.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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

    #[test]
    fn needs_are_parents_triggers_and_named_outputs() {
        let mut nodes = vec![node("t"), node("a"), node("b"), node("c")];
        nodes[3].parameters =
            json!({"x": "{{ nodes.a.output.v }}", "y": "{{ nodes['t'].output }}"})
                .as_object()
                .unwrap()
                .clone();
        let conns = vec![
            conn("t", "a", "main"),
            conn("a", "b", "main"),
            conn("b", "c", "main"),
        ];
        let plan = Plan::from_parts(&nodes, &conns);
        assert_eq!(plan.needs("b").unwrap(), ["a", "t"]);
        assert_eq!(plan.needs("c").unwrap(), ["b", "t", "a"]);
        nodes[3].parameters = json!({"x": "{{ nodes | length }}"})
            .as_object()
            .unwrap()
            .clone();
        let plan = Plan::from_parts(&nodes, &conns);
        assert_eq!(plan.needs("c"), None);
    }

    #[test]
    fn wide_fan_outs_and_joins_build_in_linear_time() {
        // 20,000 children and one join of all of them: quadratic work here would take
        // minutes in a debug build; linear takes milliseconds.
        let mut nodes = vec![node("t")];
        let mut conns = Vec::new();
        for i in 0..20_000 {
            nodes.push(node(&format!("n{i}")));
            conns.push(conn("t", &format!("n{i}"), "main"));
            conns.push(conn(&format!("n{i}"), "join", "main"));
        }
        nodes.push(node("join"));
        let plan = Plan::from_parts(&nodes, &conns);
        assert_eq!(plan.children("t").len(), 20_000);
        assert_eq!(plan.parents("join").len(), 20_000);
        assert_eq!(plan.step("join"), 20_002);
    }
}
