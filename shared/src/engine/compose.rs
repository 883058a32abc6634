//! Composition (SPEC §8): the mechanics behind `flow.map`, `flow.subworkflow` and
//! `flow.waitForCallback`, and error workflows. The node types say what they want (start these
//! children, wait for a callback) and what their results mean; the engine does the starting,
//! the waiting and the resuming, through the ports.
//!
//! - **Children are executions.** All children of a node are created when it first runs, with
//!   derived ids (parent, node, index), so a duplicate delivery never starts a second child;
//!   the first `concurrency` get their job, the others wait (`pendingReason: concurrency`).
//! - **A child's end is an arrival.** The store counts a waited-for child's terminal status in
//!   its parent node's tally in the same write as the status (once per child), so the parent
//!   never polls: the handler that ended the child starts the next one (the store hands out
//!   each slot once) or, after the last, queues the parent node, which gathers the results.
//! - A heartbeat job per waiting node (every [`HEARTBEAT`]) repairs what a crash between two
//!   writes could leave behind: children given a slot but no job.
//! - **Callbacks** are accepted once per node (a conditional write), also before the node
//!   waits; whichever of the node and the callback comes second queues the node.

use super::run::RunContext;
use super::{Engine, Principal};
use crate::callbacks::{CallbackTarget, CallbackTokens};
use crate::model::{
    Callback, ChildPlan, ChildResult, ChildTally, ChildWorkflow, ErrorKind, Execution,
    ExecutionMode, ExecutionMove, ExecutionStatus, Job, MAX_DEPTH, NodeError, NodeRun,
    NodeRunStatus, ReceivedCallback, WaitingFor, Workflow, child_execution_id, error_execution_id,
};
use crate::ports::Created;
use crate::{EngineError, EngineResult};
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How often a waiting node checks that its children are moving.
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// Children created at once when a node starts them.
const CREATED_AT_ONCE: usize = 64;
/// Children read at once when their results are gathered.
const RESULTS_PAGE: usize = 250;

/// What starting a node's children came to.
pub(super) enum ChildStart {
    /// The node waits for them.
    Waiting,
    /// A detached child (`wait: false`): the node's output.
    Detached(Value),
    /// The children could not be started (limit, missing workflow): the node fails.
    Failed(NodeError),
}

/// The answer to an accepted callback.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackAccepted {
    pub execution_id: String,
    pub node_id: String,
    pub status: ExecutionStatus,
}

impl Engine {
    pub fn callback_tokens(&self) -> &CallbackTokens {
        &self.inner.callbacks
    }

    /// `callbacks.<nodeId>.{url, token}` of every `flow.waitForCallback` node of the workflow.
    pub(super) fn callback_context(&self, exec: &Execution, wf: &Workflow) -> Value {
        let mut out = serde_json::Map::new();
        for node in wf.nodes.iter().filter(|n| n.node_type == WAIT_FOR_CALLBACK) {
            let token = self.callback_tokens().token(&CallbackTarget {
                organization_id: exec.organization_id.clone(),
                execution_id: exec.id.clone(),
                node_id: node.id.clone(),
            });
            let url = CallbackTokens::url(&self.config().public_url, &token);
            out.insert(node.id.clone(), json!({ "url": url, "token": token }));
        }
        Value::Object(out)
    }

    // ---- children ----------------------------------------------------------------------

    /// Creates a node's children (once, whatever the deliveries) and gives the first ones
    /// their jobs. The run is still claimed by the caller.
    pub(super) async fn start_children(
        &self,
        ctx: &RunContext,
        node_id: &str,
        plan: ChildPlan,
    ) -> EngineResult<ChildStart> {
        let parent = &ctx.exec;
        let org = parent.organization_id.clone();
        if parent.depth + 1 > MAX_DEPTH {
            return Ok(ChildStart::Failed(NodeError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "child executions nest at most {MAX_DEPTH} deep; this execution is at depth {}",
                    parent.depth
                ),
            )));
        }
        let child_wf = match self.child_workflow(ctx, node_id, &plan.workflow).await? {
            Ok(wf) => wf,
            Err(error) => return Ok(ChildStart::Failed(error)),
        };
        let total = plan.inputs.len() as u32;
        // A redrive (retry from the failed node) keeps the children that succeeded.
        let mut carried = if plan.wait {
            self.carried_children(ctx, node_id).await?
        } else {
            std::collections::HashMap::new()
        };
        let mut tally = ChildTally::new(total, plan.concurrency);
        tally.done = carried.len() as u32;
        tally.started = total.min(tally.done + tally.concurrency);
        if plan.wait {
            // Before any child exists: a child that ends at once finds its tally.
            self.store()
                .create_child_tally(&org, &parent.id, node_id, &tally)
                .await?;
        }
        let inline_of = matches!(plan.workflow, ChildWorkflow::Inline).then(|| node_id.to_string());
        if !plan.wait {
            // One detached child: the node's output is its id.
            let input = plan.inputs.into_iter().next().unwrap_or(Value::Null);
            let child = self.child_execution(
                parent,
                node_id,
                &child_wf,
                inline_of,
                plan.indexed.then_some(0),
                input,
                false,
            )?;
            self.create_child(&child).await?;
            let mut job = vec![self.job_for(&child, &child.start_node_id)];
            self.send_now(&mut job).await?;
            return Ok(ChildStart::Detached(json!({ "executionId": child.id })));
        }
        // Created a batch at a time (the embedded store commits them together); the first
        // jobs go out once every child exists, so a slot handed out later always finds its
        // child.
        let (child_wf, started) = (&child_wf, tally.started);
        let creations = plan.inputs.into_iter().enumerate().map(|(i, input)| {
            let index = i as u32;
            let carried = carried.remove(&index);
            let inline_of = inline_of.clone();
            async move {
                if let Some((source, runs)) = carried {
                    self.copy_child(parent, node_id, child_wf, inline_of, index, source, runs)
                        .await?;
                    return Ok(None);
                }
                let waits_for_slot = index >= started;
                let child = self.child_execution(
                    parent,
                    node_id,
                    child_wf,
                    inline_of,
                    plan.indexed.then_some(index),
                    input,
                    waits_for_slot,
                )?;
                self.create_child(&child).await?;
                Ok::<_, EngineError>(
                    (!waits_for_slot).then(|| self.job_for(&child, &child.start_node_id)),
                )
            }
        });
        let mut first_jobs: Vec<Job> = futures::stream::iter(creations)
            .buffer_unordered(CREATED_AT_ONCE)
            .try_filter_map(|job| async move { Ok(job) })
            .try_collect()
            .await?;
        self.send_now(&mut first_jobs).await?;
        Ok(ChildStart::Waiting)
    }

    /// In a redrive (a retry from the failed node, whose trigger run was carried over), the
    /// children of the same node of the execution retried that succeeded, by index, with
    /// their node runs: their results are copied, not run again.
    async fn carried_children(
        &self,
        ctx: &RunContext,
        node_id: &str,
    ) -> EngineResult<std::collections::HashMap<u32, (Execution, Vec<NodeRun>)>> {
        let mut out = std::collections::HashMap::new();
        let Some(source_id) = &ctx.exec.retry_of else {
            return Ok(out);
        };
        let carried_over = ctx
            .runs
            .get(&ctx.exec.start_node_id)
            .and_then(|r| r.started_at)
            .is_some_and(|t| t < ctx.exec.created_at);
        if !carried_over {
            return Ok(out);
        }
        let org = &ctx.exec.organization_id;
        let Some(tally) = self
            .store()
            .get_child_tally(org, source_id, node_id)
            .await?
        else {
            return Ok(out);
        };
        for index in 0..tally.total {
            let id = child_execution_id(source_id, node_id, index);
            if let Some(state) = self.store().get_execution_state(org, &id).await?
                && state.execution.status == ExecutionStatus::Success
            {
                out.insert(index, (state.execution, state.node_runs));
            }
        }
        Ok(out)
    }

    /// A child of a redrive that succeeded before: created `success` with the earlier
    /// child's output and node runs (it counts as done in the tally from the start).
    #[allow(clippy::too_many_arguments)]
    async fn copy_child(
        &self,
        parent: &Execution,
        node_id: &str,
        wf: &Workflow,
        inline_of: Option<String>,
        index: u32,
        source: Execution,
        runs: Vec<NodeRun>,
    ) -> EngineResult<()> {
        let mut child = self.child_execution(
            parent,
            node_id,
            wf,
            inline_of,
            source.item_index.map(|_| index),
            source.input_data.clone(),
            false,
        )?;
        child.status = ExecutionStatus::Success;
        child.output_data = source.output_data;
        child.started_at = source.started_at;
        child.completed_at = source.completed_at;
        child.duration = source.duration;
        child.metrics = source.metrics;
        child.nodes_executed = source.nodes_executed;
        child.retry_of = Some(source.id);
        let runs: Vec<NodeRun> = runs
            .into_iter()
            .map(|mut r| {
                r.execution_id = child.id.clone();
                r.lease_token = None;
                r.lease_until = None;
                r
            })
            .collect();
        match self
            .store()
            .create_execution_with_runs(&child, &runs, None, self.clock().now())
            .await
        {
            Ok(_) | Err(crate::ports::StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The workflow (version) children run: the node's inline one, or a referenced one of
    /// the organization (the version named, else the one current when the parent started).
    /// `Err`: a node error (kind `configuration`) when it is gone.
    async fn child_workflow(
        &self,
        ctx: &RunContext,
        node_id: &str,
        which: &ChildWorkflow,
    ) -> EngineResult<Result<Arc<Workflow>, NodeError>> {
        let org = &ctx.exec.organization_id;
        let missing = |m: String| Ok(Err(NodeError::new(ErrorKind::Configuration, m)));
        match which {
            ChildWorkflow::Inline => match self.inline_workflow(&ctx.wf, node_id) {
                Some(wf) => Ok(Ok(wf)),
                None => missing(format!("node {node_id:?} has no valid inline workflow")),
            },
            ChildWorkflow::Reference { id, version } => {
                let Some(current) = self.store().get_workflow(org, id).await? else {
                    return missing(format!("workflow {id:?} does not exist (any more)"));
                };
                if current.status == crate::model::WorkflowStatus::Archived {
                    return missing(format!("workflow {id:?} is archived"));
                }
                let mut wf = current;
                match version {
                    Some(v) if *v != wf.version => {
                        match self.store().get_workflow_version(org, id, *v).await? {
                            Some(found) => wf = found,
                            None => {
                                return missing(format!("workflow {id:?} has no version {v}"));
                            }
                        }
                    }
                    Some(_) => {}
                    None => {
                        // The version current when the parent started: walk back past the
                        // versions saved since.
                        while wf.updated_at > ctx.exec.created_at && wf.version > 1 {
                            match self
                                .store()
                                .get_workflow_version(org, id, wf.version - 1)
                                .await?
                            {
                                Some(older) => wf = older,
                                None => break,
                            }
                        }
                    }
                }
                if !wf
                    .nodes
                    .iter()
                    .any(|n| n.node_type == crate::triggers::MANUAL_TRIGGER && n.enabled)
                {
                    return missing(format!("workflow {id:?} has no trigger.manual node"));
                }
                Ok(Ok(self.cached_version(&wf).0))
            }
        }
    }

    /// The inline child workflow of a node, as a workflow of the parent's id and version.
    pub(super) fn inline_workflow(
        &self,
        parent: &Workflow,
        node_id: &str,
    ) -> Option<Arc<Workflow>> {
        let node = parent.node(node_id)?;
        let def = crate::nodes::children::inline_definition(&node.parameters)?;
        Some(Arc::new(Workflow {
            id: parent.id.clone(),
            organization_id: parent.organization_id.clone(),
            user_id: parent.user_id.clone(),
            name: format!("{} / {}", parent.name, node.name),
            description: None,
            status: parent.status,
            version: parent.version,
            nodes: def.nodes,
            connections: def.connections,
            settings: def.settings,
            execution_count: 0,
            last_executed_at: None,
            created_at: parent.created_at,
            updated_at: parent.updated_at,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn child_execution(
        &self,
        parent: &Execution,
        node_id: &str,
        wf: &Workflow,
        inline_of: Option<String>,
        item_index: Option<u32>,
        input: Value,
        waits_for_slot: bool,
    ) -> EngineResult<Execution> {
        let now = self.clock().now();
        let timeout = wf
            .settings
            .timeout_ms
            .unwrap_or(self.config().default_timeout_ms);
        let start_node_id =
            crate::triggers::start_node(wf, None).map_err(EngineError::BadRequest)?;
        let index = item_index.unwrap_or(0);
        let mut exec = Execution::new(
            child_execution_id(&parent.id, node_id, index),
            wf,
            &Principal {
                user_id: parent.user_id.clone(),
                organization_id: parent.organization_id.clone(),
            },
            ExecutionMode::Subworkflow,
            input,
            start_node_id,
            now,
            now.plus(Duration::from_millis(timeout))
                .min(parent.deadline),
        );
        exec.parent_execution_id = Some(parent.id.clone());
        exec.parent_node_id = Some(node_id.to_string());
        exec.item_index = item_index;
        exec.depth = parent.depth + 1;
        exec.inline_of = inline_of;
        // A child's work is as urgent as its parent's.
        exec.priority = parent.priority;
        if waits_for_slot {
            exec.pending_reason = Some(crate::model::PendingReason::Concurrency);
        }
        Ok(exec)
    }

    /// Creates a child with its first runs; false when it exists already (a duplicate).
    async fn create_child(&self, child: &Execution) -> EngineResult<bool> {
        let (_, plan) = self.workflow_and_plan_of(child).await?;
        let runs = self.first_runs(child, &plan, Vec::new());
        match self
            .store()
            .create_execution_with_runs(child, &runs.runs, None, self.clock().now())
            .await
        {
            Ok(Created::Created(_)) => {
                self.metrics().execution_started(child.mode.as_str());
                if !runs.skipped_roots.is_empty() {
                    self.replay_skipped_roots(child, &runs.skipped_roots)
                        .await?;
                }
                Ok(true)
            }
            Ok(Created::Existing(_)) => Ok(false),
            Err(crate::ports::StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// After a waited-for child ended (its status counted in the parent's tally by the same
    /// write): the next children get their slots, or the parent node, after the last child,
    /// its job.
    pub(super) async fn after_child_ended(&self, child: &Execution) -> EngineResult<()> {
        let (Some(parent_id), Some(node_id)) = (&child.parent_execution_id, &child.parent_node_id)
        else {
            return Ok(());
        };
        let org = &child.organization_id;
        let Some(tally) = self
            .store()
            .get_child_tally(org, parent_id, node_id)
            .await?
        else {
            // Detached (`wait: false`): nothing waits.
            return Ok(());
        };
        self.advance_children(org, parent_id, node_id, &tally).await
    }

    /// Gives the free slots to the next children, or queues the parent node when every child
    /// reported.
    async fn advance_children(
        &self,
        org: &str,
        parent_id: &str,
        node_id: &str,
        tally: &ChildTally,
    ) -> EngineResult<()> {
        if tally.complete() {
            let Some(parent) = self.store().get_execution(org, parent_id).await? else {
                return Ok(());
            };
            let mut job = vec![self.job_for(&parent, node_id)];
            return self.send_now(&mut job).await;
        }
        if tally.next_window().is_none() {
            return Ok(());
        }
        let Some((from, until)) = self
            .store()
            .reserve_children(org, parent_id, node_id)
            .await?
        else {
            return Ok(());
        };
        let ids: Vec<String> = (from..until)
            .map(|index| child_execution_id(parent_id, node_id, index))
            .collect();
        let mut jobs: Vec<Job> = self
            .store()
            .get_executions(org, &ids)
            .await?
            .iter()
            .filter(|child| child.status == ExecutionStatus::Pending)
            .map(|child| self.job_for(child, &child.start_node_id))
            .collect();
        self.send_now(&mut jobs).await
    }

    /// A job for a node that waits (no claim: the run stays waiting). Children: free slots
    /// go to the next children; once all reported, the node is claimed and resumed. A
    /// callback that arrived: the node is claimed and resumed. A heartbeat also repairs
    /// children given a slot but no job, and schedules the next heartbeat.
    pub(super) async fn on_waiting(&self, job: &Job, run: &NodeRun) -> EngineResult<WaitingNext> {
        let org = &job.organization_id;
        match run.waiting {
            Some(WaitingFor::Children) => {
                let Some(tally) = self
                    .store()
                    .get_child_tally(org, &job.execution_id, &job.node_id)
                    .await?
                else {
                    return Ok(WaitingNext::Nothing);
                };
                if tally.complete() {
                    return Ok(WaitingNext::Resume);
                }
                if let Some(seen) = job.heartbeat {
                    if seen == tally.done {
                        self.repair_started_children(org, &job.execution_id, &job.node_id, &tally)
                            .await?;
                    }
                    self.schedule_heartbeat(job, tally.done).await?;
                }
                self.advance_children(org, &job.execution_id, &job.node_id, &tally)
                    .await?;
                Ok(WaitingNext::Nothing)
            }
            Some(WaitingFor::Callback) => {
                let cb = self
                    .store()
                    .get_callback(org, &job.execution_id, &job.node_id)
                    .await?;
                Ok(if cb.is_some() {
                    WaitingNext::Resume
                } else {
                    WaitingNext::Nothing
                })
            }
            None => Ok(WaitingNext::Nothing),
        }
    }

    /// Children `0..started` still pending after a heartbeat without progress: their first
    /// job may have been lost (a crash between the slot and the send); they get one again
    /// (a duplicate is harmless).
    async fn repair_started_children(
        &self,
        org: &str,
        parent_id: &str,
        node_id: &str,
        tally: &ChildTally,
    ) -> EngineResult<()> {
        let ids: Vec<String> = (0..tally.started)
            .map(|i| child_execution_id(parent_id, node_id, i))
            .collect();
        let mut jobs = Vec::new();
        for child in self.store().get_executions(org, &ids).await? {
            if child.status == ExecutionStatus::Pending {
                jobs.push(self.job_for(&child, &child.start_node_id));
            }
        }
        if !jobs.is_empty() {
            tracing::warn!(
                parent_id,
                node_id,
                count = jobs.len(),
                "children re-queued after a stall"
            );
        }
        self.send_now(&mut jobs).await
    }

    pub(super) async fn schedule_heartbeat(&self, job: &Job, done: u32) -> EngineResult<()> {
        let mut next = job.clone();
        next.heartbeat = Some(done);
        next.not_before = None;
        self.send_delayed(next, self.clock().now().plus(HEARTBEAT))
            .await
    }

    /// The results of a node's children, in index order.
    pub(super) async fn child_results(
        &self,
        exec: &Execution,
        node_id: &str,
    ) -> EngineResult<Vec<ChildResult>> {
        let org = &exec.organization_id;
        let Some(tally) = self.store().get_child_tally(org, &exec.id, node_id).await? else {
            return Ok(Vec::new());
        };
        // A page of children at a time: only their results stay in memory.
        let mut results = Vec::with_capacity(tally.total as usize);
        let indexes: Vec<u32> = (0..tally.total).collect();
        for page in indexes.chunks(RESULTS_PAGE) {
            let ids: Vec<String> = page
                .iter()
                .map(|i| child_execution_id(&exec.id, node_id, *i))
                .collect();
            let mut by_id: std::collections::HashMap<String, Execution> = self
                .store()
                .get_executions(org, &ids)
                .await?
                .into_iter()
                .map(|e| (e.id.clone(), e))
                .collect();
            results.extend(ids.into_iter().map(|id| match by_id.remove(&id) {
                Some(child) => ChildResult {
                    execution_id: id,
                    status: child.status,
                    output: child.output_data,
                    error_message: child.error_message,
                },
                None => ChildResult {
                    execution_id: id,
                    status: ExecutionStatus::Failed,
                    output: None,
                    error_message: Some("child execution not found".into()),
                },
            }));
        }
        Ok(results)
    }

    /// Every non-terminal child the execution waits for (children of its `flow.map` and
    /// `flow.subworkflow` nodes with a tally that is not complete), with `apply` done to each.
    async fn waited_children(&self, exec: &Execution) -> EngineResult<Vec<Execution>> {
        let org = &exec.organization_id;
        let Ok((wf, _)) = self.workflow_and_plan_of(exec).await else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for node in wf
            .nodes
            .iter()
            .filter(|n| STARTS_CHILDREN.contains(&n.node_type.as_str()))
        {
            let Some(tally) = self
                .store()
                .get_child_tally(org, &exec.id, &node.id)
                .await?
            else {
                continue;
            };
            if tally.complete() {
                continue;
            }
            let ids: Vec<String> = (0..tally.total)
                .map(|i| child_execution_id(&exec.id, &node.id, i))
                .collect();
            out.extend(
                self.store()
                    .get_executions(org, &ids)
                    .await?
                    .into_iter()
                    .filter(|c| !c.status.is_terminal()),
            );
        }
        Ok(out)
    }

    /// A parent that ended: the children it waits for are cancelled.
    pub(super) async fn cancel_waited_children(&self, parent: &Execution) -> EngineResult<()> {
        for child in self.waited_children(parent).await? {
            let mut cancelled = ExecutionMove::Cancel.apply(&child, self.clock().now());
            cancelled.error_message = Some(format!(
                "Parent execution {} ended {}",
                parent.id,
                parent.status.as_str()
            ));
            Box::pin(self.finish_execution(cancelled, ExecutionMove::Cancel, Vec::new())).await?;
        }
        Ok(())
    }

    /// A parent paused or resumed: so are the children it waits for.
    pub(super) async fn cascade_pause(&self, parent: &Execution, pause: bool) -> EngineResult<()> {
        let who = Principal {
            user_id: parent.user_id.clone(),
            organization_id: parent.organization_id.clone(),
        };
        for child in self.waited_children(parent).await? {
            let result = if pause {
                Box::pin(self.pause_execution(&who, &child.id)).await
            } else if child.status == ExecutionStatus::Paused {
                Box::pin(self.resume_execution(&who, &child.id)).await
            } else {
                continue;
            };
            match result {
                Ok(_) | Err(EngineError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    // ---- callbacks ---------------------------------------------------------------------

    /// A callback for a node of an execution (by token, or by the authenticated routes).
    /// 404 unknown execution or node; 409 once a callback was accepted, the node finished or
    /// the execution is terminal.
    pub async fn deliver_callback(
        &self,
        target: &CallbackTarget,
        callback: Callback,
    ) -> EngineResult<CallbackAccepted> {
        let org = &target.organization_id;
        let not_found = || EngineError::NotFound("Callback not found".into());
        let exec = self
            .store()
            .get_execution(org, &target.execution_id)
            .await?
            .ok_or_else(not_found)?;
        let (wf, plan) = self.workflow_and_plan_of(&exec).await?;
        let node = plan
            .node(&wf, &target.node_id)
            .filter(|n| n.node_type == WAIT_FOR_CALLBACK)
            .ok_or_else(not_found)?;
        if exec.status.is_terminal() {
            return Err(EngineError::Conflict(format!(
                "The execution is {}",
                exec.status.as_str()
            )));
        }
        let state = self
            .store()
            .get_execution_runs(org, &exec.id, std::slice::from_ref(&node.id))
            .await?;
        let run = state.and_then(|s| s.node_runs.into_iter().next());
        if run.as_ref().is_some_and(|r| r.status.is_finished()) {
            return Err(EngineError::Conflict("The node has finished".into()));
        }
        let received = ReceivedCallback {
            callback,
            received_at: self.clock().now(),
        };
        if !self
            .store()
            .put_callback(org, &exec.id, &node.id, &received)
            .await?
        {
            return Err(EngineError::Conflict(
                "A callback was already accepted for this node".into(),
            ));
        }
        // The node may have started waiting since the read above: read it again; whichever
        // of the two comes second queues the node.
        let now_waiting = self
            .store()
            .get_execution_runs(org, &exec.id, std::slice::from_ref(&node.id))
            .await?
            .and_then(|s| s.node_runs.into_iter().next())
            .is_some_and(|r| r.status == NodeRunStatus::Waiting);
        if now_waiting {
            self.send_now(&mut vec![self.job_for(&exec, &node.id)])
                .await?;
        }
        Ok(CallbackAccepted {
            execution_id: exec.id.clone(),
            node_id: node.id.clone(),
            status: exec.status,
        })
    }

    /// `POST /executions/{id}/nodes/{nodeId}/complete|fail` for the caller's organization.
    pub async fn complete_node(
        &self,
        who: &Principal,
        execution_id: &str,
        node_id: &str,
        callback: Callback,
    ) -> EngineResult<CallbackAccepted> {
        self.deliver_callback(
            &CallbackTarget {
                organization_id: who.organization_id.clone(),
                execution_id: execution_id.to_string(),
                node_id: node_id.to_string(),
            },
            callback,
        )
        .await
    }

    /// Moves an execution's deadline out by `by` (a callback with `pauseDeadline`), and the
    /// deadlines of the parents that wait for it, up the chain.
    pub(super) async fn move_deadlines(&self, exec: &Execution, by: Duration) -> EngineResult<()> {
        let org = &exec.organization_id;
        let mut current = Some(exec.clone());
        while let Some(e) = current.take() {
            self.store()
                .move_deadline(org, &e.id, e.deadline.plus(by))
                .await?;
            let (Some(parent_id), Some(node_id)) = (&e.parent_execution_id, &e.parent_node_id)
            else {
                break;
            };
            if self
                .store()
                .get_child_tally(org, parent_id, node_id)
                .await?
                .is_none()
            {
                break; // detached: nothing waits for it
            }
            current = self.store().get_execution(org, parent_id).await?;
        }
        Ok(())
    }

    // ---- error workflows ---------------------------------------------------------------

    /// An execution ended `failed` or `timeout`: its workflow's error workflow runs once
    /// (derived id), unless it is itself an error workflow's execution.
    pub(super) async fn start_error_workflow(&self, exec: &Execution) -> EngineResult<()> {
        if exec.mode == ExecutionMode::Error
            || !matches!(
                exec.status,
                ExecutionStatus::Failed | ExecutionStatus::Timeout
            )
        {
            return Ok(());
        }
        let Ok((wf, _)) = self.workflow_and_plan_of(exec).await else {
            return Ok(());
        };
        let Some(error_wf_id) = wf.settings.error_workflow_id.clone() else {
            return Ok(());
        };
        let org = &exec.organization_id;
        let Some(error_wf) = self.store().get_workflow(org, &error_wf_id).await? else {
            tracing::warn!(workflow_id = %wf.id, %error_wf_id, "error workflow not found");
            return Ok(());
        };
        let Some(trigger) = error_wf
            .nodes
            .iter()
            .find(|n| n.node_type == crate::triggers::ERROR_TRIGGER && n.enabled)
        else {
            tracing::warn!(%error_wf_id, "error workflow has no trigger.error node");
            return Ok(());
        };
        if error_wf.status == crate::model::WorkflowStatus::Archived {
            return Ok(());
        }
        let input = json!({
            "execution": {
                "id": exec.id,
                "workflowId": exec.workflow_id,
                "status": exec.status,
                "errorMessage": exec.error_message,
                "errorDetails": exec.error_details,
                "mode": exec.mode,
            },
            "workflow": {"id": wf.id, "name": wf.name, "version": wf.version},
        });
        let now = self.clock().now();
        let timeout = error_wf
            .settings
            .timeout_ms
            .unwrap_or(self.config().default_timeout_ms);
        let run = Execution::new(
            error_execution_id(&exec.id),
            &error_wf,
            &Principal {
                user_id: exec.user_id.clone(),
                organization_id: org.clone(),
            },
            ExecutionMode::Error,
            input,
            trigger.id.clone(),
            now,
            now.plus(Duration::from_millis(timeout)),
        );
        match self.launch(run, &error_wf, None, Vec::new()).await {
            Ok(_) | Err(EngineError::Store(crate::ports::StoreError::Conflict(_))) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// What to do with a job for a waiting node.
pub(super) enum WaitingNext {
    Nothing,
    /// The wait is over: claim the node and resume it.
    Resume,
}

/// Node types that start children.
pub const STARTS_CHILDREN: &[&str] = &["flow.map", "flow.subworkflow"];
/// The node type that waits for a callback.
pub const WAIT_FOR_CALLBACK: &str = "flow.waitForCallback";
