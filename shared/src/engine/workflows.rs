//! Workflow CRUD: validation, versions, webhook routes, schedule sync.
//! OWNER: HTTP helper (placeholder signatures).

use super::{Engine, Principal};
use crate::EngineResult;
use crate::model::{Workflow, WorkflowDefinition};
use crate::ports::{Page, WebhookRoute};

/// The webhook routes a workflow's `trigger.webhook` nodes declare.
pub fn webhook_routes(wf: &Workflow) -> Vec<WebhookRoute> {
    let _ = wf;
    todo!("workflows")
}

impl Engine {
    pub async fn create_workflow(
        &self,
        who: &Principal,
        def: WorkflowDefinition,
    ) -> EngineResult<Workflow> {
        let _ = (who, def);
        todo!("workflows")
    }
    pub async fn update_workflow(
        &self,
        who: &Principal,
        id: &str,
        def: WorkflowDefinition,
    ) -> EngineResult<Workflow> {
        let _ = (who, id, def);
        todo!("workflows")
    }
    pub async fn get_workflow(&self, who: &Principal, id: &str) -> EngineResult<Workflow> {
        let _ = (who, id);
        todo!("workflows")
    }
    pub async fn list_workflows(
        &self,
        who: &Principal,
        limit: usize,
        cursor: Option<&str>,
    ) -> EngineResult<Page<Workflow>> {
        let _ = (who, limit, cursor);
        todo!("workflows")
    }
    pub async fn delete_workflow(&self, who: &Principal, id: &str) -> EngineResult<()> {
        let _ = (who, id);
        todo!("workflows")
    }
}
