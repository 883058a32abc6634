//! Workflow CRUD: validation, versions, webhook routes, schedule sync.
//!
//! Semantics:
//! - `create`: validates, gives every `trigger.webhook` node without a `path` a generated
//!   random url-safe id (stored in its parameters), stores version 1 with its webhook routes.
//! - `update` (`PUT /workflows/{id}`): a full replace of the definition, `version + 1`. A
//!   webhook node that keeps its id keeps its generated `path` when the new body omits it
//!   (callers' URLs do not change on edits). The status is the body's; through
//!   [`Engine::replace_workflow`] the HTTP API keeps the current status when the body has no
//!   `status` field at all (an edit never silently deactivates a live workflow).
//! - A webhook id used by another workflow is a 409 (`Conflict`).
//! - `get` / `delete`: 404 for an unknown id or another organization's workflow.
//! - Every save and delete is reported to [`crate::ports::ScheduleSync`].

use super::{Engine, Principal};
use crate::model::{Node, Workflow, WorkflowDefinition, WorkflowStatus};
use crate::nodes::schedule::Schedule;
use crate::ports::{Page, StoreError};
use crate::triggers::{
    SCHEDULE_TRIGGER, WEBHOOK_TRIGGER, WebhookConfig, generate_webhook_id, webhook_routes,
};
use crate::{EngineError, EngineResult};
use serde_json::Value;
use std::collections::BTreeSet;

/// Checks beyond the graph validation: webhook and schedule parameters, webhook ids unique
/// within the workflow.
fn check_triggers(nodes: &[Node]) -> EngineResult<()> {
    let mut paths = BTreeSet::new();
    for node in nodes {
        match node.node_type.as_str() {
            WEBHOOK_TRIGGER => {
                let cfg = WebhookConfig::parse(&node.parameters)
                    .map_err(|m| EngineError::BadRequest(format!("node `{}`: {m}", node.id)))?;
                if let Some(path) = cfg.path
                    && !paths.insert(path.clone())
                {
                    return Err(EngineError::BadRequest(format!(
                        "node `{}`: webhook path `{path}` is used twice in this workflow",
                        node.id
                    )));
                }
            }
            SCHEDULE_TRIGGER => {
                Schedule::parse(&node.parameters)
                    .map_err(|m| EngineError::BadRequest(format!("node `{}`: {m}", node.id)))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Gives every webhook node without a path one: the path of the node with the same id in
/// `previous` when there is one, else a new random id.
fn assign_webhook_paths(nodes: &mut [Node], previous: Option<&Workflow>) {
    for node in nodes.iter_mut() {
        if node.node_type != WEBHOOK_TRIGGER
            || node.parameters.get("path").is_some_and(|p| !p.is_null())
        {
            continue;
        }
        let kept = previous
            .and_then(|wf| wf.node(&node.id))
            .filter(|n| n.node_type == WEBHOOK_TRIGGER)
            .and_then(|n| n.parameters.get("path"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let path = kept.unwrap_or_else(generate_webhook_id);
        node.parameters.insert("path".into(), Value::String(path));
    }
}

fn not_found() -> EngineError {
    EngineError::NotFound("Workflow not found".into())
}

fn sync_error(e: String) -> EngineError {
    EngineError::Store(StoreError::Backend(format!("schedule sync failed: {e}")))
}

fn store_conflict(e: StoreError) -> EngineError {
    match e {
        StoreError::Conflict(m) => EngineError::Conflict(m),
        other => EngineError::Store(other),
    }
}

/// Every check a workflow passes on create and update (the graph validation plus the
/// webhook and schedule parameters), offline: `weconnect validate` gives the same messages.
pub fn validate_definition(def: &WorkflowDefinition) -> EngineResult<()> {
    if def.name.trim().is_empty() {
        return Err(EngineError::BadRequest(
            "workflow `name` must not be empty".into(),
        ));
    }
    crate::graph::validate(def)?;
    check_triggers(&def.nodes)
}

impl Engine {
    /// No node (of the workflow or of an inline child workflow) may ask for a longer timeout
    /// than the installation runs ([`crate::EngineConfig::max_node_timeout_ms`]): 400 naming
    /// the node.
    fn check_node_timeouts(&self, def: &WorkflowDefinition) -> EngineResult<()> {
        let Some(max) = self.config().max_node_timeout_ms else {
            return Ok(());
        };
        for node in &def.nodes {
            // A node without its own timeout runs with the default, capped at run time.
            if let Some(timeout) = node.timeout_ms
                && timeout > max
            {
                return Err(EngineError::BadRequest(format!(
                    "node \"{}\" (\"{}\"): timeoutMs {timeout} is over this installation's limit of {max} ms (NODE_MAX_TIMEOUT: on AWS the worker function's timeout less a margin)",
                    node.id, node.name
                )));
            }
            if crate::engine::compose::STARTS_CHILDREN.contains(&node.node_type.as_str())
                && let Some(child) = crate::nodes::children::inline_definition(&node.parameters)
            {
                self.check_node_timeouts(&child).map_err(|e| match e {
                    EngineError::BadRequest(m) => EngineError::BadRequest(format!(
                        "node \"{}\" (\"{}\"): workflow: {m}",
                        node.id, node.name
                    )),
                    other => other,
                })?;
            }
        }
        Ok(())
    }

    /// The workflows a definition names must be the organization's and usable (SPEC §8):
    /// a `flow.map` / `flow.subworkflow` `workflowId` exists, is not archived and has a
    /// `trigger.manual` node (itself: allowed, recursion is bounded by depth); an
    /// `errorWorkflowId` exists and has a `trigger.error` node. `own_id`: the workflow being
    /// updated (None on create). 400 naming the node or setting.
    async fn check_references(
        &self,
        who: &Principal,
        def: &WorkflowDefinition,
        own_id: Option<&str>,
    ) -> EngineResult<()> {
        let org = &who.organization_id;
        let manual = |wf: &Workflow| {
            wf.nodes
                .iter()
                .any(|n| n.node_type == crate::triggers::MANUAL_TRIGGER && n.enabled)
        };
        for node in &def.nodes {
            if !crate::engine::compose::STARTS_CHILDREN.contains(&node.node_type.as_str()) {
                continue;
            }
            let Some(Value::String(id)) = node.parameters.get("workflowId") else {
                continue;
            };
            let bad = |m: String| {
                EngineError::BadRequest(format!("node \"{}\" (\"{}\"): {m}", node.id, node.name))
            };
            if own_id == Some(id.as_str()) {
                if !def
                    .nodes
                    .iter()
                    .any(|n| n.node_type == crate::triggers::MANUAL_TRIGGER && n.enabled)
                {
                    return Err(bad(
                        "workflowId names this workflow, which has no trigger.manual node".into(),
                    ));
                }
                continue;
            }
            match self.store().get_workflow(org, id).await? {
                None => {
                    return Err(bad(format!(
                        "workflowId {id:?} is not a workflow of this organization"
                    )));
                }
                Some(wf) if wf.status == WorkflowStatus::Archived => {
                    return Err(bad(format!("workflowId {id:?} is archived")));
                }
                Some(wf) if !manual(&wf) => {
                    return Err(bad(format!("workflowId {id:?} has no trigger.manual node")));
                }
                Some(wf) => {
                    if let Some(Value::Number(v)) = node.parameters.get("version")
                        && v.as_u64().is_some_and(|v| v > u64::from(wf.version))
                    {
                        return Err(bad(format!("workflow {id:?} has no version {v}")));
                    }
                }
            }
        }
        if let Some(id) = &def.settings.error_workflow_id {
            let bad = |m: String| EngineError::BadRequest(format!("settings.errorWorkflowId: {m}"));
            let has_error_trigger = |nodes: &[Node]| {
                nodes
                    .iter()
                    .any(|n| n.node_type == crate::triggers::ERROR_TRIGGER && n.enabled)
            };
            if own_id == Some(id.as_str()) {
                if !has_error_trigger(&def.nodes) {
                    return Err(bad(
                        "names this workflow, which has no trigger.error node".into()
                    ));
                }
            } else {
                match self.store().get_workflow(org, id).await? {
                    None => {
                        return Err(bad(format!(
                            "{id:?} is not a workflow of this organization"
                        )));
                    }
                    Some(wf) if !has_error_trigger(&wf.nodes) => {
                        return Err(bad(format!("{id:?} has no trigger.error node")));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    pub async fn create_workflow(
        &self,
        who: &Principal,
        def: WorkflowDefinition,
    ) -> EngineResult<Workflow> {
        validate_definition(&def)?;
        self.check_node_timeouts(&def)?;
        self.ports()
            .schedules
            .check(&def.nodes)
            .map_err(EngineError::BadRequest)?;
        self.check_references(who, &def, None).await?;
        let now = self.clock().now();
        let mut def = def;
        assign_webhook_paths(&mut def.nodes, None);
        let wf = Workflow::first_version(crate::model::new_id(), who, def, now);
        let routes = webhook_routes(&wf);
        self.store()
            .create_workflow(&wf, &routes)
            .await
            .map_err(store_conflict)?;
        self.ports()
            .schedules
            .workflow_saved(&wf)
            .await
            .map_err(sync_error)?;
        Ok(wf)
    }

    /// Full replace with the body's status (see the module doc).
    pub async fn update_workflow(
        &self,
        who: &Principal,
        id: &str,
        def: WorkflowDefinition,
    ) -> EngineResult<Workflow> {
        let status = def.status;
        self.replace_workflow(who, id, def, Some(status)).await
    }

    /// Full replace of the definition; `status: None` keeps the current status.
    pub async fn replace_workflow(
        &self,
        who: &Principal,
        id: &str,
        def: WorkflowDefinition,
        status: Option<WorkflowStatus>,
    ) -> EngineResult<Workflow> {
        validate_definition(&def)?;
        self.check_node_timeouts(&def)?;
        self.ports()
            .schedules
            .check(&def.nodes)
            .map_err(EngineError::BadRequest)?;
        self.check_references(who, &def, Some(id)).await?;
        // The store refuses a write when the version moved meanwhile: re-read and retry.
        for _ in 0..5 {
            let current = self
                .store()
                .get_workflow(&who.organization_id, id)
                .await?
                .ok_or_else(not_found)?;
            let mut nodes = def.nodes.clone();
            assign_webhook_paths(&mut nodes, Some(&current));
            let wf = Workflow {
                id: current.id.clone(),
                organization_id: current.organization_id.clone(),
                user_id: current.user_id.clone(),
                name: def.name.clone(),
                description: def.description.clone(),
                status: status.unwrap_or(current.status),
                version: current.version + 1,
                nodes,
                connections: def.connections.clone(),
                settings: def.settings.clone(),
                execution_count: current.execution_count,
                last_executed_at: current.last_executed_at,
                created_at: current.created_at,
                updated_at: self.clock().now(),
            };
            let routes = webhook_routes(&wf);
            if self
                .store()
                .update_workflow(&wf, &routes)
                .await
                .map_err(store_conflict)?
            {
                self.ports()
                    .schedules
                    .workflow_saved(&wf)
                    .await
                    .map_err(sync_error)?;
                return self.with_activity(who, wf).await;
            }
        }
        Err(EngineError::Conflict(
            "Workflow was modified concurrently; try again".into(),
        ))
    }

    /// The workflow with its `executionCount` and `lastExecutedAt`.
    pub async fn get_workflow(&self, who: &Principal, id: &str) -> EngineResult<Workflow> {
        let wf = self
            .store()
            .get_workflow(&who.organization_id, id)
            .await?
            .ok_or_else(not_found)?;
        self.with_activity(who, wf).await
    }

    /// `wf` with the counts the store keeps of its executions (see `WorkflowStore::add_activity`).
    async fn with_activity(&self, who: &Principal, wf: Workflow) -> EngineResult<Workflow> {
        let mut one = [wf];
        self.store()
            .add_activity(&who.organization_id, &mut one)
            .await?;
        let [wf] = one;
        Ok(wf)
    }

    pub async fn list_workflows(
        &self,
        who: &Principal,
        limit: usize,
        cursor: Option<&str>,
    ) -> EngineResult<Page<Workflow>> {
        let mut page = self
            .store()
            .list_workflows(&who.organization_id, limit.clamp(1, 100), cursor)
            .await?;
        self.store()
            .add_activity(&who.organization_id, &mut page.items)
            .await?;
        Ok(page)
    }

    pub async fn delete_workflow(&self, who: &Principal, id: &str) -> EngineResult<()> {
        if !self
            .store()
            .delete_workflow(&who.organization_id, id)
            .await?
        {
            return Err(not_found());
        }
        self.ports()
            .schedules
            .workflow_deleted(&who.organization_id, id)
            .await
            .map_err(sync_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::{ResponseMode, WebhookAuth, is_valid_webhook_id};
    use serde_json::{Map, json};

    fn node(id: &str, ty: &str, params: Value) -> Node {
        serde_json::from_value(json!({"id": id, "name": id, "type": ty, "parameters": params}))
            .unwrap()
    }

    #[test]
    fn webhook_ids_are_url_safe_and_random() {
        let a = generate_webhook_id();
        let b = generate_webhook_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(is_valid_webhook_id(&a));
        assert!(!is_valid_webhook_id("a/b"));
        assert!(!is_valid_webhook_id(""));
        assert!(!is_valid_webhook_id(".."));
        assert!(!is_valid_webhook_id(&"x".repeat(129)));
    }

    #[test]
    fn paths_are_generated_or_kept_from_the_previous_version() {
        let mut nodes = vec![
            node("hook", WEBHOOK_TRIGGER, json!({})),
            node("named", WEBHOOK_TRIGGER, json!({"path": "orders"})),
            node("noop", "flow.noop", json!({})),
        ];
        assign_webhook_paths(&mut nodes, None);
        let generated = nodes[0].parameters["path"].as_str().unwrap().to_string();
        assert!(is_valid_webhook_id(&generated));
        assert_eq!(nodes[1].parameters["path"], "orders");
        assert!(!nodes[2].parameters.contains_key("path"));

        let previous = Workflow {
            id: "w".into(),
            organization_id: "o".into(),
            user_id: "u".into(),
            name: "n".into(),
            description: None,
            status: WorkflowStatus::Active,
            version: 1,
            nodes: nodes.clone(),
            connections: vec![],
            settings: Default::default(),
            execution_count: 0,
            last_executed_at: None,
            created_at: crate::model::Timestamp::from_millis(0),
            updated_at: crate::model::Timestamp::from_millis(0),
        };
        let mut next = vec![node("hook", WEBHOOK_TRIGGER, json!({"method": "GET"}))];
        assign_webhook_paths(&mut next, Some(&previous));
        assert_eq!(next[0].parameters["path"], generated.as_str());

        let routes = webhook_routes(&previous);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[1].webhook_id, "orders");
        assert_eq!(routes[1].node_id, "named");
        assert_eq!(routes[0].organization_id, "o");
    }

    #[test]
    fn webhook_parameters_are_checked() {
        let ok = WebhookConfig::parse(
            json!({"method": "GET", "auth": {"type": "hmac", "credential": "c"},
                   "responseMode": "lastNode"})
            .as_object()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(ok.method, "GET");
        assert_eq!(
            ok.auth,
            WebhookAuth::Hmac {
                credential: "c".into()
            }
        );
        assert_eq!(ok.response_mode, ResponseMode::LastNode);
        let default = WebhookConfig::parse(&Map::new()).unwrap();
        assert_eq!(default.method, "POST");
        assert_eq!(default.auth, WebhookAuth::None);
        assert_eq!(default.response_mode, ResponseMode::OnReceived);

        for bad in [
            json!({"method": "FETCH"}),
            json!({"method": "get"}),
            json!({"path": "a b"}),
            json!({"auth": {"type": "header"}}),
            json!({"auth": {"type": "basic", "credential": "c"}}),
            json!({"auth": "none"}),
            json!({"responseMode": "later"}),
        ] {
            assert!(
                WebhookConfig::parse(bad.as_object().unwrap()).is_err(),
                "{bad}"
            );
        }
        let dup = vec![
            node("a", WEBHOOK_TRIGGER, json!({"path": "p"})),
            node("b", WEBHOOK_TRIGGER, json!({"path": "p"})),
        ];
        assert!(
            matches!(check_triggers(&dup), Err(EngineError::BadRequest(m)) if m.contains("`b`"))
        );
    }
}
