//! Workflows, their versions and webhook routes.

use super::expr::{Expr, cancellation, conflict_pause, is_condition_failure, is_conflict};
use super::items::{
    self, HookItem, Item, WorkflowItem, attr, av, from_item, key, s, string_of, to_item,
};
use super::keys;
use super::{DynamoStore, QuerySpec, backend};
use crate::model::{Timestamp, Workflow};
use crate::ports::{Page, StoreError, StoreResult, WebhookRoute};
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// One route per webhook id (a transaction may not write one item twice).
fn unique(hooks: &[WebhookRoute]) -> Vec<WebhookRoute> {
    let mut seen = std::collections::HashSet::new();
    hooks
        .iter()
        .filter(|h| seen.insert(h.webhook_id.clone()))
        .cloned()
        .collect()
}

/// Transactions hold at most 100 items.
const MAX_TRANSACTION: usize = 100;

impl DynamoStore {
    /// A conditional put of one webhook route: free, or already this workflow's.
    fn hook_put(&self, route: &WebhookRoute) -> StoreResult<TransactWriteItem> {
        let mut e = Expr::new();
        let cond = format!(
            "attribute_not_exists({pk}) OR ({org} = {o} AND {wf} = {w})",
            pk = e.n(attr::PK),
            org = e.n(attr::ORGANIZATION_ID),
            o = e.v(s(&route.organization_id)),
            wf = e.n(attr::WORKFLOW_ID),
            w = e.v(s(&route.workflow_id)),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(&HookItem::new(route), "webhook route")?))
            .condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Deletes a route if it still belongs to this workflow (or is already gone).
    fn hook_delete(
        &self,
        org: &str,
        workflow_id: &str,
        webhook_id: &str,
    ) -> StoreResult<TransactWriteItem> {
        let mut e = Expr::new();
        let cond = format!(
            "attribute_not_exists({pk}) OR ({org} = {o} AND {wf} = {w})",
            pk = e.n(attr::PK),
            org = e.n(attr::ORGANIZATION_ID),
            o = e.v(s(org)),
            wf = e.n(attr::WORKFLOW_ID),
            w = e.v(s(workflow_id)),
        );
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(keys::hook_pk(webhook_id), keys::HOOK_SK)))
            .condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn plain_put(&self, item: items::Item) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Runs a transaction; on cancellation returns the reasons (conflicts are retried).
    pub(super) async fn transact(
        &self,
        ops: Vec<TransactWriteItem>,
    ) -> StoreResult<Result<(), Vec<(String, Option<items::Item>)>>> {
        if ops.len() > MAX_TRANSACTION {
            return Err(StoreError::TooLarge(format!(
                "{} writes in one transaction; the limit is {MAX_TRANSACTION}",
                ops.len()
            )));
        }
        let mut round = 0;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(ops.clone()))
                .set_return_consumed_capacity(self.capacity.clone())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Ok(())),
                Err(e) => match cancellation(&e) {
                    Some(reasons) if is_conflict(&reasons) && round < 8 => {
                        conflict_pause(round).await;
                        round += 1;
                    }
                    Some(reasons) => return Ok(Err(reasons)),
                    None => return Err(backend(e)),
                },
            }
        }
    }

    /// Names the webhook whose condition failed, if one did (ops from index `from` on are
    /// `hooks`, in order).
    fn hook_conflict(
        reasons: &[(String, Option<items::Item>)],
        from: usize,
        hooks: &[WebhookRoute],
    ) -> Option<StoreError> {
        reasons
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, (code, _))| is_condition_failure(code))
            .and_then(|(i, _)| hooks.get(i - from))
            .map(|h| {
                StoreError::Conflict(format!(
                    "Webhook path '{}' is already used by another workflow",
                    h.webhook_id
                ))
            })
    }

    pub(super) async fn create_workflow_(
        &self,
        wf: &Workflow,
        hooks: &[WebhookRoute],
    ) -> StoreResult<()> {
        let hooks = &unique(hooks);
        let mut e = Expr::new();
        let cond = format!("attribute_not_exists({})", e.n(attr::PK));
        let current = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(
                &WorkflowItem::current(wf, hooks),
                "workflow",
            )?))
            .condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .build()
            .map_err(build_err)?;
        let mut ops = vec![
            TransactWriteItem::builder().put(current).build(),
            self.plain_put(to_item(&WorkflowItem::version(wf), "workflow")?)?,
        ];
        for h in hooks {
            ops.push(self.hook_put(h)?);
        }
        match self.transact(ops).await? {
            Ok(()) => Ok(()),
            Err(reasons) => {
                if let Some(conflict) = Self::hook_conflict(&reasons, 2, hooks) {
                    return Err(conflict);
                }
                if reasons
                    .first()
                    .is_some_and(|(c, _)| is_condition_failure(c))
                {
                    return Err(StoreError::Conflict(format!(
                        "Workflow {} already exists",
                        wf.id
                    )));
                }
                Err(StoreError::Backend(format!(
                    "create_workflow cancelled: {:?}",
                    reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
                )))
            }
        }
    }

    pub(super) async fn update_workflow_(
        &self,
        wf: &Workflow,
        hooks: &[WebhookRoute],
    ) -> StoreResult<bool> {
        let hooks = &unique(hooks);
        let Some(prev) = wf.version.checked_sub(1) else {
            return Ok(false);
        };
        let pk = keys::workflow_pk(&wf.organization_id, &wf.id);
        let Some(stored) = self.get(key(pk.clone(), keys::WORKFLOW_SK), true).await? else {
            return Ok(false);
        };
        let stored: WorkflowItem = from_item(stored, "workflow")?;
        if stored.version != prev {
            return Ok(false);
        }
        let item = to_item(&WorkflowItem::current(wf, hooks), "workflow")?;
        let mut e = Expr::new();
        let update_expr = e.set_all(&item, items::WORKFLOW_KEEP, items::WORKFLOW_REMOVABLE);
        let cond = format!("{} = {}", e.n(attr::VERSION), e.v(av(&prev)?));
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, keys::WORKFLOW_SK)))
            .update_expression(update_expr)
            .condition_expression(cond)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(build_err)?;
        let mut ops = vec![
            TransactWriteItem::builder().update(update).build(),
            self.plain_put(to_item(&WorkflowItem::version(wf), "workflow")?)?,
        ];
        let new_ids: Vec<&str> = hooks.iter().map(|h| h.webhook_id.as_str()).collect();
        for old in stored
            .hooks
            .iter()
            .filter(|o| !new_ids.contains(&o.as_str()))
        {
            ops.push(self.hook_delete(&wf.organization_id, &wf.id, old)?);
        }
        let hooks_from = ops.len();
        for h in hooks {
            ops.push(self.hook_put(h)?);
        }
        match self.transact(ops).await? {
            Ok(()) => Ok(true),
            Err(reasons) => {
                if reasons
                    .first()
                    .is_some_and(|(c, _)| is_condition_failure(c))
                {
                    return Ok(false);
                }
                if let Some(conflict) = Self::hook_conflict(&reasons, hooks_from, hooks) {
                    return Err(conflict);
                }
                Err(StoreError::Backend(format!(
                    "update_workflow cancelled: {:?}",
                    reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
                )))
            }
        }
    }

    pub(super) async fn get_workflow_(&self, org: &str, id: &str) -> StoreResult<Option<Workflow>> {
        let item = self
            .get(key(keys::workflow_pk(org, id), keys::WORKFLOW_SK), true)
            .await?;
        item.map(|i| from_item::<WorkflowItem>(i, "workflow").map(WorkflowItem::into_workflow))
            .transpose()
    }

    /// Adds the counter shards (`keys::workflow_counter_item`) to what the workflow items
    /// hold (counts from before the shards), one `BatchGetItem` per 12 workflows.
    pub(super) async fn add_activity_(
        &self,
        org: &str,
        workflows: &mut [Workflow],
    ) -> StoreResult<()> {
        let wanted: Vec<Item> = workflows
            .iter()
            .flat_map(|wf| {
                (0..keys::WORKFLOW_COUNTER_SHARDS).map(|shard| {
                    key(
                        keys::workflow_counter_pk(org, &wf.id, shard),
                        keys::WORKFLOW_COUNTER_SK,
                    )
                })
            })
            .collect();
        let mut activity: std::collections::HashMap<String, (u64, Option<Timestamp>)> =
            std::collections::HashMap::new();
        for item in self.get_many(wanted).await? {
            let Some(pk) = string_of(&item, attr::PK) else {
                continue;
            };
            let count = items::number_of(&item, attr::EXECUTION_COUNT).unwrap_or(0);
            let last = string_of(&item, attr::LAST_EXECUTED_AT)
                .as_deref()
                .and_then(Timestamp::parse);
            let entry = activity.entry(pk).or_default();
            entry.0 += count;
            entry.1 = entry.1.max(last);
        }
        for wf in workflows.iter_mut() {
            for shard in 0..keys::WORKFLOW_COUNTER_SHARDS {
                if let Some((count, last)) =
                    activity.get(&keys::workflow_counter_pk(org, &wf.id, shard))
                {
                    wf.execution_count += count;
                    wf.last_executed_at = wf.last_executed_at.max(*last);
                }
            }
        }
        Ok(())
    }

    pub(super) async fn get_workflow_version_(
        &self,
        org: &str,
        id: &str,
        version: u32,
    ) -> StoreResult<Option<Workflow>> {
        // Versions never change: an eventually consistent read is enough (and half the price),
        // except right after creation, which a strongly consistent retry covers.
        let key_ = key(
            keys::workflow_pk(org, id),
            keys::workflow_version_sk(version),
        );
        let item = match self.get(key_.clone(), false).await? {
            Some(i) => Some(i),
            None => self.get(key_, true).await?,
        };
        item.map(|i| from_item::<WorkflowItem>(i, "workflow").map(WorkflowItem::into_workflow))
            .transpose()
    }

    pub(super) async fn list_workflows_(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Workflow>> {
        let partition = keys::workflows_of(org);
        let start = self.open_cursor(cursor, org, "workflows", attr::GSI1PK, &partition)?;
        let mut e = Expr::new();
        let key_condition = format!("{} = {}", e.n(attr::GSI1PK), e.v(s(&partition)));
        let q = QuerySpec {
            index: Some(keys::GSI_BY_ORG),
            key_condition,
            filter: None,
            expr: e,
            forward: false,
            consistent: false,
            projection: None,
        };
        let (found, next) = self
            .query_limited(
                &q,
                limit,
                start,
                &[attr::PK, attr::SK, attr::GSI1PK, attr::GSI1SK],
            )
            .await?;
        // The index projects keys and filter attributes only: the workflows are read by key.
        let items = self
            .read_whole(&found)
            .await?
            .into_iter()
            .map(|i| from_item::<WorkflowItem>(i, "workflow").map(WorkflowItem::into_workflow))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items,
            next_cursor: self.seal_cursor(org, "workflows", next),
        })
    }

    pub(super) async fn delete_workflow_(&self, org: &str, id: &str) -> StoreResult<bool> {
        let pk = keys::workflow_pk(org, id);
        // Each round reads the current routes and deletes conditionally on the version read;
        // an update in between makes it read again.
        for _ in 0..5 {
            let Some(stored) = self.get(key(pk.clone(), keys::WORKFLOW_SK), true).await? else {
                return Ok(false);
            };
            let stored: WorkflowItem = from_item(stored, "workflow")?;
            let mut e = Expr::new();
            let cond = format!("{} = {}", e.n(attr::VERSION), e.v(av(&stored.version)?));
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(pk.clone(), keys::WORKFLOW_SK)))
                .condition_expression(cond)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .build()
                .map_err(build_err)?;
            let mut ops = vec![TransactWriteItem::builder().delete(delete).build()];
            for shard in 0..keys::WORKFLOW_COUNTER_SHARDS {
                let counter = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(
                        keys::workflow_counter_pk(org, id, shard),
                        keys::WORKFLOW_COUNTER_SK,
                    )))
                    .build()
                    .map_err(build_err)?;
                ops.push(TransactWriteItem::builder().delete(counter).build());
            }
            for h in &stored.hooks {
                ops.push(self.hook_delete(org, id, h)?);
            }
            match self.transact(ops).await? {
                Ok(()) => return Ok(true),
                Err(reasons)
                    if reasons
                        .first()
                        .is_some_and(|(c, _)| is_condition_failure(c)) =>
                {
                    continue;
                }
                Err(reasons) => {
                    return Err(StoreError::Backend(format!(
                        "delete_workflow cancelled: {:?}",
                        reasons.iter().map(|(c, _)| c).collect::<Vec<_>>()
                    )));
                }
            }
        }
        Err(StoreError::Backend(
            "delete_workflow: the workflow kept changing".into(),
        ))
    }

    pub(super) async fn find_webhook_(
        &self,
        webhook_id: &str,
    ) -> StoreResult<Option<WebhookRoute>> {
        let item = self
            .get(key(keys::hook_pk(webhook_id), keys::HOOK_SK), false)
            .await?;
        item.map(|i| from_item::<HookItem>(i, "webhook route").map(HookItem::into_route))
            .transpose()
    }

    pub(super) async fn list_scheduled_workflows_(&self) -> StoreResult<Vec<Workflow>> {
        let mut e = Expr::new();
        let key_condition = format!("{} = {}", e.n(attr::GSI2PK), e.v(s(keys::SCHEDULED_PK)));
        let q = QuerySpec {
            index: Some(keys::GSI_BY_PARENT),
            key_condition,
            filter: None,
            expr: e,
            forward: true,
            consistent: false,
            projection: None,
        };
        let found = self.query_all(&q).await?;
        // The index projects keys and filter attributes only: the workflows are read by key.
        self.read_whole(&found)
            .await?
            .into_iter()
            .map(|i| from_item::<WorkflowItem>(i, "workflow").map(WorkflowItem::into_workflow))
            .collect()
    }
}
