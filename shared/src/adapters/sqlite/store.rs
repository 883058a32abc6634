//! `SqliteStore`: the `Store` port on the embedded database. Every method is one transaction.

use super::body::{KeyId, StoredJson, id_value, packed};
use super::cursor::{self, Position};
use super::execution_row::{self, ExecutionRow};
use super::{Db, Fail};
use crate::adapters::log_batch::{self, LogPager};
use crate::adapters::pack::Packed;
use crate::model::trends;
use crate::model::*;
use crate::ports::*;
use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Pages one step of `reclaim_space` gives back at most (4 MiB of 4 KiB pages).
const RECLAIM_STEP_PAGES: u64 = 1024;

/// The embedded store. Cheap to share (`Arc`); built by [`super::open`].
pub struct SqliteStore {
    db: Arc<Db>,
}

impl SqliteStore {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Fail> {
    Ok(serde_json::to_string(value)?)
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, Fail> {
    Ok(crate::limits::from_stored_json(text)?)
}

fn workflow_status(s: WorkflowStatus) -> &'static str {
    match s {
        WorkflowStatus::Draft => "draft",
        WorkflowStatus::Active => "active",
        WorkflowStatus::Inactive => "inactive",
        WorkflowStatus::Archived => "archived",
    }
}

/// Clamp a page size to something SQLite's LIMIT takes; one more row is read to know
/// whether another page follows.
fn page_size(limit: usize) -> i64 {
    limit.clamp(1, 10_000) as i64
}

/// A workflow row: the stored body with the live counters laid over it.
fn workflow_from_row(body: &str, count: i64, last: Option<i64>) -> Result<Workflow, Fail> {
    let mut wf: Workflow = from_json(body)?;
    wf.execution_count = count.max(0) as u64;
    wf.last_executed_at = last.map(Timestamp::from_millis);
    Ok(wf)
}

/// Refuses webhook ids routed to another workflow.
fn check_webhooks(
    tx: &Connection,
    org: &str,
    workflow_id: &str,
    webhooks: &[WebhookRoute],
) -> Result<(), Fail> {
    let mut stmt =
        tx.prepare_cached("SELECT org, workflow_id FROM webhooks WHERE webhook_id = ?1")?;
    for route in webhooks {
        let owner: Option<(String, String)> = stmt
            .query_row([&route.webhook_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((o, w)) = owner
            && (o != org || w != workflow_id)
        {
            return Err(StoreError::Conflict(format!(
                "Webhook path '{}' is already used by another workflow",
                route.webhook_id
            ))
            .into());
        }
    }
    Ok(())
}

fn insert_webhooks(tx: &Connection, webhooks: &[WebhookRoute]) -> Result<(), Fail> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO webhooks (webhook_id, org, workflow_id, node_id) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for r in webhooks {
        stmt.execute(params![
            r.webhook_id,
            r.organization_id,
            r.workflow_id,
            r.node_id
        ])?;
    }
    Ok(())
}

fn insert_version(tx: &Connection, wf: &Workflow, body: &str) -> Result<(), Fail> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO workflow_versions (org, id, version, body) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![wf.organization_id, wf.id, wf.version, body])?;
    Ok(())
}

fn load_execution(tx: &Connection, org: &str, id: &str) -> Result<Option<Execution>, Fail> {
    tx.prepare_cached(concat!(
        "SELECT ",
        execution_row::columns!(),
        " FROM executions WHERE id = ?1 AND org = ?2"
    ))?
    .query_row(params![id_value(id), org], execution_row::read)
    .optional()?
    .transpose()
}

/// The runs of an execution: its rows, and those folded into the execution's row when its
/// data was dropped (a row written after that wins).
fn load_runs(tx: &Connection, org: &str, execution: &Execution) -> Result<Vec<NodeRun>, Fail> {
    let key = id_value(&execution.id);
    let mut runs: Vec<NodeRun> = Vec::new();
    if !execution.data_saved {
        let folded: Option<Vec<u8>> = tx
            .prepare_cached("SELECT runs FROM executions WHERE id = ?1 AND org = ?2")?
            .query_row(params![key, org], |r| r.get(0))
            .optional()?
            .flatten();
        if let Some(packed) = folded {
            runs = execution_row::unfolded_runs(execution, &packed)?;
        }
    }
    let mut stmt =
        tx.prepare_cached("SELECT body FROM node_runs WHERE execution_id = ?1 AND org = ?2")?;
    let mut q = stmt.query(params![key, org])?;
    while let Some(r) = q.next()? {
        let body: StoredJson = r.get(0)?;
        let run: NodeRun = body.parse()?;
        runs.retain(|f| f.node_id != run.node_id);
        runs.push(run);
    }
    Ok(runs)
}

fn load_run(
    tx: &Connection,
    org: &str,
    execution_id: &str,
    node_id: &str,
) -> Result<Option<NodeRun>, Fail> {
    let body: Option<StoredJson> = tx
        .prepare_cached(
            "SELECT body FROM node_runs WHERE execution_id = ?1 AND node_id = ?2 AND org = ?3",
        )?
        .query_row(params![id_value(execution_id), node_id, org], |r| r.get(0))
        .optional()?;
    body.map(|b| b.parse()).transpose()
}

/// Writes `run` from inside the writer (a claim, an arrival); `was_finished`: whether the
/// stored run (if any) had finished. A run that finishes here is counted on its execution.
/// Its body is not packed: these are passing states (the run's result is packed by the
/// caller of `save_node_run`, outside the writer), and compressing inside the one writer
/// thread would cost every other write its time.
fn upsert_run(tx: &Connection, org: &str, run: &NodeRun, was_finished: bool) -> Result<(), Fail> {
    let row = RunRow {
        execution_id: run.execution_id.clone(),
        node_id: run.node_id.clone(),
        finished: run.status.is_finished(),
        body: Packed::Text(to_json(run)?),
    };
    upsert_run_row(tx, org, &row, was_finished)
}

/// A node run as written: its keys and JSON body (serialized before the write, so a large
/// output is not copied into it).
struct RunRow {
    execution_id: String,
    node_id: String,
    finished: bool,
    body: Packed,
}

impl RunRow {
    fn of(run: &NodeRun) -> Result<Self, Fail> {
        Ok(Self {
            execution_id: run.execution_id.clone(),
            node_id: run.node_id.clone(),
            finished: run.status.is_finished(),
            body: packed(run)?,
        })
    }
}

fn upsert_run_row(
    tx: &Connection,
    org: &str,
    row: &RunRow,
    was_finished: bool,
) -> Result<(), Fail> {
    tx.prepare_cached(
        "INSERT INTO node_runs (execution_id, node_id, org, body) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (execution_id, node_id) DO UPDATE SET body = excluded.body",
    )?
    .execute(params![
        id_value(&row.execution_id),
        row.node_id,
        org,
        row.body
    ])?;
    if row.finished && !was_finished {
        count_finished(tx, &row.execution_id, 1)?;
    }
    Ok(())
}

fn count_finished(tx: &Connection, execution_id: &str, n: i64) -> Result<(), Fail> {
    tx.prepare_cached("UPDATE executions SET finished_nodes = finished_nodes + ?2 WHERE id = ?1")?
        .execute(params![id_value(execution_id), n])?;
    Ok(())
}

/// A child's terminal status, counted in its parent node's tally (when it keeps one), in the
/// transaction of the status change (which happens once).
fn count_child(tx: &Connection, child: &ChildOf) -> Result<(), Fail> {
    let Some((parent, node, succeeded)) = child else {
        return Ok(());
    };
    let failed = i64::from(!succeeded);
    tx.prepare_cached(
        "UPDATE child_tallies SET done = done + 1, failed = failed + ?3 \
         WHERE execution_id = ?1 AND node_id = ?2",
    )?
    .execute(params![parent, node, failed])?;
    Ok(())
}

/// What an execution that became terminal adds to its workflow's trends: (org, workflow,
/// createdAt, counters).
type TrendOf = Option<(String, String, Timestamp, TrendCounters)>;

fn trend_of(exec: &Execution) -> TrendOf {
    TrendCounters::of(exec.status, exec.duration).map(|c| {
        (
            exec.organization_id.clone(),
            exec.workflow_id.clone(),
            exec.created_at,
            c,
        )
    })
}

/// Adds to the trend counters of the hour and the day of the execution's `createdAt`, in
/// the write that made it terminal.
fn add_trend(tx: &Connection, trend: &TrendOf) -> Result<(), Fail> {
    let Some((org, workflow_id, created_at, counters)) = trend else {
        return Ok(());
    };
    for interval in TrendInterval::ALL {
        let start = interval.start_of(*created_at).millis();
        let stored: Option<String> = tx
            .prepare_cached(
                "SELECT body FROM trends \
                 WHERE org = ?1 AND workflow_id = ?2 AND interval = ?3 AND start = ?4",
            )?
            .query_row(params![org, workflow_id, interval.as_str(), start], |r| {
                r.get(0)
            })
            .optional()?;
        let mut sum: TrendCounters = match stored {
            Some(body) => from_json(&body)?,
            None => TrendCounters::default(),
        };
        sum.add(counters);
        tx.prepare_cached(
            "INSERT INTO trends (org, workflow_id, interval, start, body) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (org, workflow_id, interval, start) DO UPDATE SET body = excluded.body",
        )?
        .execute(params![
            org,
            workflow_id,
            interval.as_str(),
            start,
            to_json(&sum)?
        ])?;
    }
    Ok(())
}

/// A child execution's parent, parent node and whether it succeeded.
type ChildOf = Option<(String, String, bool)>;

fn child_of(exec: &Execution) -> ChildOf {
    Some((
        exec.parent_execution_id.clone()?,
        exec.parent_node_id.clone()?,
        exec.status == ExecutionStatus::Success,
    ))
}

fn load_tally(
    tx: &Connection,
    org: &str,
    execution_id: &str,
    node_id: &str,
) -> Result<Option<ChildTally>, Fail> {
    Ok(tx
        .prepare_cached(
            "SELECT total, concurrency, started, done, failed FROM child_tallies \
             WHERE execution_id = ?1 AND node_id = ?2 AND org = ?3",
        )?
        .query_row([execution_id, node_id, org], |r| {
            Ok(ChildTally {
                total: r.get(0)?,
                concurrency: r.get(1)?,
                started: r.get(2)?,
                done: r.get(3)?,
                failed: r.get(4)?,
            })
        })
        .optional()?)
}

/// Why no node of the execution may start now, read in the caller's transaction: its
/// status when terminal or paused, or when past its deadline (None: nodes may start; also
/// when the execution is unknown, which the caller finds out otherwise).
fn stopped(
    tx: &Connection,
    org: &str,
    execution_id: &str,
    now: Timestamp,
) -> Result<Option<ExecutionStatus>, Fail> {
    let row: Option<(String, i64)> = tx
        .prepare_cached("SELECT status, deadline FROM executions WHERE id = ?1 AND org = ?2")?
        .query_row(params![id_value(execution_id), org], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    Ok(row.and_then(|(status, deadline)| {
        let status = ExecutionStatus::parse(&status)?;
        (!status.runs_nodes() || now.millis() > deadline).then_some(status)
    }))
}

/// Inserts a new execution (see `Store::create_execution`) inside the caller's transaction.
/// `Some`: the idempotency key was used within its window by that execution; nothing written.
fn insert_execution(
    tx: &Connection,
    exec: &Execution,
    key: Option<&str>,
    key_valid_after: Timestamp,
) -> Result<Option<Execution>, Fail> {
    if let Some(key) = key {
        let used: Option<(String, i64)> = tx
            .prepare_cached("SELECT execution_id, created_at FROM idempotency_keys WHERE key = ?1")?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((id, at)) = used
            && at >= key_valid_after.millis()
            && let Some(existing) = load_execution(tx, &exec.organization_id, &id)?
        {
            return Ok(Some(existing));
        }
    }
    let row = ExecutionRow::of(exec)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO executions (id, org, workflow_id, status, mode, created_at, \
             deadline, duration, unfinished, body, parent_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            row.id,
            row.org,
            row.workflow_id,
            row.status,
            row.mode,
            row.created_at,
            row.deadline,
            row.duration,
            row.unfinished,
            row.body,
            row.parent_id
        ])?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("Execution '{}' already exists", exec.id)).into());
    }
    if let Some(key) = key {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO idempotency_keys (key, execution_id, created_at) \
             VALUES (?1, ?2, ?3)",
        )?
        .execute(params![key, exec.id, exec.created_at.millis()])?;
    }
    tx.prepare_cached(
        "UPDATE workflows SET execution_count = execution_count + 1, \
         last_executed_at = max(coalesce(last_executed_at, ?3), ?3) \
         WHERE org = ?1 AND id = ?2",
    )?
    .execute(params![
        exec.organization_id,
        exec.workflow_id,
        exec.created_at.millis()
    ])?;
    Ok(None)
}

fn run_rows(runs: &[NodeRun]) -> Result<Vec<RunRow>, Fail> {
    runs.iter().map(RunRow::of).collect()
}

/// Creates the runs that do not exist yet; the finished ones are counted.
fn insert_runs(tx: &Connection, org: &str, rows: &[RunRow]) -> Result<(), Fail> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO node_runs (execution_id, node_id, org, body) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for row in rows {
        let inserted = stmt.execute(params![
            id_value(&row.execution_id),
            row.node_id,
            org,
            row.body
        ])?;
        if inserted == 1 && row.finished {
            count_finished(tx, &row.execution_id, 1)?;
        }
    }
    Ok(())
}

/// Reads one page of `(body, time, id)` rows: `limit` items and the cursor of the last one
/// when more follow.
/// A row that cannot be read (a damaged body) is left out and logged, so that one bad row
/// never fails a whole list; the cursor still moves past it.
fn page<T>(
    rows: Vec<(Result<T, Fail>, i64, String)>,
    limit: i64,
    scope: &str,
) -> (Vec<T>, Option<String>) {
    let limit = limit as usize;
    let more = rows.len() > limit;
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut last = None;
    for (item, time, id) in rows.into_iter().take(limit) {
        match item {
            Ok(item) => items.push(item),
            Err(e) => unreadable(scope, &id, &e),
        }
        last = Some((time, id));
    }
    let next = match (more, last) {
        (true, Some((time, id))) => Some(cursor::encode(scope, time, &id)),
        _ => None,
    };
    (items, next)
}

fn execution_scope(org: &str, f: &ExecutionFilter) -> String {
    let opt_ts = |t: Option<Timestamp>| t.map(|t| t.millis().to_string()).unwrap_or_default();
    cursor::scope(&[
        "executions",
        org,
        f.status.map(|s| s.as_str()).unwrap_or(""),
        f.mode.map(|m| m.as_str()).unwrap_or(""),
        f.workflow_id.as_deref().unwrap_or("\u{0}"),
        f.parent_execution_id.as_deref().unwrap_or("\u{0}"),
        &opt_ts(f.start_date),
        &opt_ts(f.end_date),
    ])
}

/// Reads of this many runs by key stay on the calling thread (microseconds each).
fn node_ids_are_few(n: usize) -> bool {
    n <= 16
}

/// Logs a stored row left out of a list because it cannot be read.
fn unreadable(list: &str, id: &str, e: &Fail) {
    tracing::error!(list, id, error = ?e, "stored row cannot be read; left out");
}

impl SqliteStore {
    /// One page of an organization's `list` (workflows, credentials), newest first: `sql`
    /// takes `?1` org, `(?2, ?3)` the position to start after and `?4` the row limit, and
    /// ends its columns with `created_at, id`; `item` reads the rest of a row.
    async fn newest_first<T: Send + 'static>(
        &self,
        list: &str,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
        sql: &'static str,
        item: fn(&rusqlite::Row<'_>) -> Result<T, Fail>,
    ) -> StoreResult<Page<T>> {
        let scope = cursor::scope(&[list, org]);
        let after = cursor.map(|c| cursor::decode(&scope, c)).transpose()?;
        let org = org.to_string();
        let limit = page_size(limit);
        self.db
            .read(move |tx| {
                let after = after.unwrap_or(Position {
                    time: i64::MAX,
                    id: String::new(),
                });
                let mut stmt = tx.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut q = stmt.query(params![org, after.time, after.id, limit + 1])?;
                let mut rows = Vec::new();
                while let Some(r) = q.next()? {
                    rows.push((item(r), r.get(columns - 2)?, r.get(columns - 1)?));
                }
                let (items, next_cursor) = page(rows, limit, &scope);
                Ok(Page { items, next_cursor })
            })
            .await
            .map_err(Into::into)
    }
}

#[async_trait]
impl WorkflowStore for SqliteStore {
    // ---- workflows -------------------------------------------------------------------

    async fn create_workflow(&self, wf: &Workflow, webhooks: &[WebhookRoute]) -> StoreResult<()> {
        let wf = wf.clone();
        let webhooks = webhooks.to_vec();
        self.db
            .write(move |tx| {
                check_webhooks(tx, &wf.organization_id, &wf.id, &webhooks)?;
                let body = to_json(&wf)?;
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO workflows (org, id, version, status, scheduled, created_at, \
                         execution_count, last_executed_at, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![
                        wf.organization_id,
                        wf.id,
                        wf.version,
                        workflow_status(wf.status),
                        crate::triggers::has_schedule(&wf),
                        wf.created_at.millis(),
                        wf.execution_count.min(i64::MAX as u64) as i64,
                        wf.last_executed_at.map(|t| t.millis()),
                        body
                    ])?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!(
                        "Workflow '{}' already exists",
                        wf.id
                    ))
                    .into());
                }
                insert_version(tx, &wf, &body)?;
                insert_webhooks(tx, &webhooks)?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn update_workflow(&self, wf: &Workflow, webhooks: &[WebhookRoute]) -> StoreResult<bool> {
        let wf = wf.clone();
        let webhooks = webhooks.to_vec();
        self.db
            .write(move |tx| {
                let current: Option<i64> = tx
                    .prepare_cached("SELECT version FROM workflows WHERE org = ?1 AND id = ?2")?
                    .query_row([&wf.organization_id, &wf.id], |r| r.get(0))
                    .optional()?;
                if current != Some(i64::from(wf.version) - 1) {
                    return Ok(false);
                }
                check_webhooks(tx, &wf.organization_id, &wf.id, &webhooks)?;
                let body = to_json(&wf)?;
                tx.prepare_cached(
                    "UPDATE workflows SET version = ?3, status = ?4, scheduled = ?5, body = ?6 \
                     WHERE org = ?1 AND id = ?2",
                )?
                .execute(params![
                    wf.organization_id,
                    wf.id,
                    wf.version,
                    workflow_status(wf.status),
                    crate::triggers::has_schedule(&wf),
                    body
                ])?;
                insert_version(tx, &wf, &body)?;
                tx.prepare_cached("DELETE FROM webhooks WHERE org = ?1 AND workflow_id = ?2")?
                    .execute([&wf.organization_id, &wf.id])?;
                insert_webhooks(tx, &webhooks)?;
                Ok(true)
            })
            .await
            .map_err(Into::into)
    }

    async fn add_activity(&self, _org: &str, _workflows: &mut [Workflow]) -> StoreResult<()> {
        // The counts are columns of the workflow's row, read with it.
        Ok(())
    }
    async fn get_workflow(&self, org: &str, id: &str) -> StoreResult<Option<Workflow>> {
        let (org, id) = (org.to_string(), id.to_string());
        self.db
            .read_key(move |tx| {
                let row: Option<(String, i64, Option<i64>)> = tx
                    .prepare_cached(
                        "SELECT body, execution_count, last_executed_at FROM workflows \
                         WHERE org = ?1 AND id = ?2",
                    )?
                    .query_row([&org, &id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                row.map(|(b, c, l)| workflow_from_row(&b, c, l)).transpose()
            })
            .await
            .map_err(Into::into)
    }

    async fn get_workflow_version(
        &self,
        org: &str,
        id: &str,
        version: u32,
    ) -> StoreResult<Option<Workflow>> {
        let (org, id) = (org.to_string(), id.to_string());
        self.db
            .read_key(move |tx| {
                let body: Option<String> = tx
                    .prepare_cached(
                        "SELECT body FROM workflow_versions WHERE org = ?1 AND id = ?2 AND version = ?3",
                    )?
                    .query_row(params![org, id, version], |r| r.get(0))
                    .optional()?;
                body.map(|b| from_json(&b)).transpose()
            })
            .await
            .map_err(Into::into)
    }

    async fn list_workflows(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Workflow>> {
        self.newest_first(
            "workflows",
            org,
            limit,
            cursor,
            "SELECT body, execution_count, last_executed_at, created_at, id FROM workflows \
             WHERE org = ?1 AND (created_at, id) < (?2, ?3) \
             ORDER BY created_at DESC, id DESC LIMIT ?4",
            |r| workflow_from_row(&r.get::<_, String>(0)?, r.get(1)?, r.get(2)?),
        )
        .await
    }

    async fn delete_workflow(&self, org: &str, id: &str) -> StoreResult<bool> {
        let (org, id) = (org.to_string(), id.to_string());
        self.db
            .write(move |tx| {
                let deleted = tx
                    .prepare_cached("DELETE FROM workflows WHERE org = ?1 AND id = ?2")?
                    .execute([&org, &id])?;
                tx.prepare_cached("DELETE FROM webhooks WHERE org = ?1 AND workflow_id = ?2")?
                    .execute([&org, &id])?;
                Ok(deleted > 0)
            })
            .await
            .map_err(Into::into)
    }

    async fn find_webhook(&self, webhook_id: &str) -> StoreResult<Option<WebhookRoute>> {
        let webhook_id = webhook_id.to_string();
        self.db
            .read_key(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "SELECT org, workflow_id, node_id FROM webhooks WHERE webhook_id = ?1",
                    )?
                    .query_row([&webhook_id], |r| {
                        Ok(WebhookRoute {
                            webhook_id: webhook_id.clone(),
                            organization_id: r.get(0)?,
                            workflow_id: r.get(1)?,
                            node_id: r.get(2)?,
                        })
                    })
                    .optional()?)
            })
            .await
            .map_err(Into::into)
    }

    async fn list_scheduled_workflows(&self) -> StoreResult<Vec<Workflow>> {
        self.db
            .read(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "SELECT body, execution_count, last_executed_at FROM workflows \
                     WHERE scheduled = 1 AND status = 'active' ORDER BY org, id",
                )?;
                let mut out = Vec::new();
                let mut q = stmt.query([])?;
                while let Some(r) = q.next()? {
                    let body: String = r.get(0)?;
                    match workflow_from_row(&body, r.get(1)?, r.get(2)?) {
                        Ok(wf) => out.push(wf),
                        Err(e) => unreadable("scheduled workflows", "", &e),
                    }
                }
                Ok(out)
            })
            .await
            .map_err(Into::into)
    }
}

#[async_trait]
impl ExecutionStore for SqliteStore {
    // ---- executions ------------------------------------------------------------------

    async fn create_execution(
        &self,
        exec: &Execution,
        idempotency_key: Option<&str>,
        key_valid_after: Timestamp,
    ) -> StoreResult<Created> {
        self.create_execution_with_runs(exec, &[], idempotency_key, key_valid_after)
            .await
    }

    /// One write: the execution and its first runs commit together or not at all.
    async fn create_execution_with_runs(
        &self,
        exec: &Execution,
        runs: &[NodeRun],
        idempotency_key: Option<&str>,
        key_valid_after: Timestamp,
    ) -> StoreResult<Created> {
        let exec = exec.clone();
        let key = idempotency_key.map(str::to_string);
        let rows = run_rows(runs)?;
        // Created terminal (a redrive's copy of a child that succeeded): counted at once.
        let trend = trend_of(&exec);
        self.db
            .write(move |tx| {
                if let Some(existing) =
                    insert_execution(tx, &exec, key.as_deref(), key_valid_after)?
                {
                    return Ok(Created::Existing(existing));
                }
                insert_runs(tx, &exec.organization_id, &rows)?;
                add_trend(tx, &trend)?;
                Ok(Created::Created(exec))
            })
            .await
            .map_err(Into::into)
    }

    async fn get_execution(&self, org: &str, id: &str) -> StoreResult<Option<Execution>> {
        let (org, id) = (org.to_string(), id.to_string());
        self.db
            .read_key(move |tx| load_execution(tx, &org, &id))
            .await
            .map_err(Into::into)
    }

    async fn get_execution_state(
        &self,
        org: &str,
        id: &str,
    ) -> StoreResult<Option<ExecutionState>> {
        let (org, id) = (org.to_string(), id.to_string());
        // Every run: as many rows as the workflow has nodes, so off the calling thread.
        self.db
            .read(move |tx| {
                let Some(execution) = load_execution(tx, &org, &id)? else {
                    return Ok(None);
                };
                let node_runs = load_runs(tx, &org, &execution)?;
                Ok(Some(ExecutionState {
                    execution,
                    node_runs,
                }))
            })
            .await
            .map_err(Into::into)
    }

    async fn get_execution_runs(
        &self,
        org: &str,
        id: &str,
        node_ids: &[String],
    ) -> StoreResult<Option<ExecutionState>> {
        let (org, id) = (org.to_string(), id.to_string());
        let few = node_ids_are_few(node_ids.len());
        let node_ids = node_ids.to_vec();
        // Lookups by key: on the calling thread while they are few.
        let read = move |tx: &Connection| {
            let Some(execution) = load_execution(tx, &org, &id)? else {
                return Ok(None);
            };
            let node_runs = if execution.data_saved {
                let mut runs = Vec::with_capacity(node_ids.len());
                for node_id in &node_ids {
                    if let Some(run) = load_run(tx, &org, &id, node_id)? {
                        runs.push(run);
                    }
                }
                runs
            } else {
                let mut runs = load_runs(tx, &org, &execution)?;
                runs.retain(|r| node_ids.contains(&r.node_id));
                runs
            };
            Ok(Some(ExecutionState {
                execution,
                node_runs,
            }))
        };
        if few {
            self.db.read_key(read).await.map_err(Into::into)
        } else {
            self.db.read(read).await.map_err(Into::into)
        }
    }

    async fn count_finished_nodes(&self, org: &str, id: &str) -> StoreResult<u32> {
        let (org, id) = (org.to_string(), id.to_string());
        self.db
            .read_key(move |tx| {
                let n: Option<i64> = tx
                    .prepare_cached(
                        "SELECT finished_nodes FROM executions WHERE id = ?1 AND org = ?2",
                    )?
                    .query_row(params![id_value(&id), org], |r| r.get(0))
                    .optional()?;
                Ok(n.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32)
            })
            .await
            .map_err(Into::into)
    }

    async fn set_completed_at(
        &self,
        org: &str,
        id: &str,
        completed_at: Timestamp,
        duration: u64,
    ) -> StoreResult<()> {
        let (org, id) = (org.to_string(), id.to_string());
        let duration = duration.min(i64::MAX as u64) as i64;
        self.db
            .write(move |tx| {
                let Some(mut exec) = load_execution(tx, &org, &id)? else {
                    return Ok(());
                };
                exec.completed_at = Some(completed_at);
                exec.duration = duration as u64;
                let row = ExecutionRow::of(&exec)?;
                tx.prepare_cached(
                    "UPDATE executions SET duration = ?3, body = ?4 WHERE id = ?1 AND org = ?2",
                )?
                .execute(params![row.id, org, row.duration, row.body])?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn drop_execution_data(&self, org: &str, id: &str) -> StoreResult<()> {
        let (org, id) = (org.to_string(), id.to_string());
        self.db
            .write(move |tx| {
                let Some(mut exec) = load_execution(tx, &org, &id)? else {
                    return Ok(());
                };
                if exec.status != ExecutionStatus::Success || !exec.data_saved {
                    return Ok(());
                }
                // The runs, without their outputs, move into the execution's row: one
                // column instead of a row (with its keys) per run.
                let mut runs = load_runs(tx, &org, &exec)?;
                for run in &mut runs {
                    run.output = None;
                }
                exec.input_data = serde_json::Value::Null;
                exec.data_saved = false;
                let row = ExecutionRow::of(&exec)?;
                let key = row.id;
                tx.prepare_cached(
                    "UPDATE executions SET body = ?3, runs = ?4 WHERE id = ?1 AND org = ?2",
                )?
                .execute(params![key, org, row.body, execution_row::folded_runs(&exec, &runs)?])?;
                tx.prepare_cached("DELETE FROM node_runs WHERE execution_id = ?1")?
                    .execute([&key])?;
                let batches: Vec<(KeyId, Vec<u8>)> = tx
                    .prepare_cached(
                        "SELECT first_id, body FROM log_batches WHERE execution_id = ?1",
                    )?
                    .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                for (KeyId(first_id), body) in batches {
                    let kept = log_batch::retain(
                        &org,
                        &id,
                        &first_id,
                        &body,
                        log_batch::kept_without_data,
                    )
                    .map_err(|e| Fail::Store(StoreError::Backend(e.to_string())))?;
                    tx.prepare_cached(
                        "DELETE FROM log_batches WHERE execution_id = ?1 AND first_id = ?2",
                    )?
                    .execute(params![key, id_value(&first_id)])?;
                    if let Some(b) = kept {
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO log_batches (execution_id, first_id, last_id, body) \
                             VALUES (?1, ?2, ?3, ?4)",
                        )?
                        .execute(params![key, id_value(&b.first_id), id_value(&b.last_id), b.body])?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn transition_execution(
        &self,
        exec: &Execution,
        from: &[ExecutionStatus],
    ) -> StoreResult<bool> {
        let Some(first) = from.first() else {
            return Ok(false);
        };
        // One cached statement for any `from`: seven slots, padded with the first status.
        let mut allowed = [first.as_str(); 7];
        for (slot, s) in allowed.iter_mut().zip(from.iter()) {
            *slot = s.as_str();
        }
        // Serialized here, not copied into the write: a large output is held once.
        let row = ExecutionRow::of(exec)?;
        let (terminal, child, trend) = (exec.status.is_terminal(), child_of(exec), trend_of(exec));
        self.db
            .write(move |tx| {
                let changed = tx
                    .prepare_cached(
                        "UPDATE executions SET status = ?3, mode = ?4, deadline = ?5, duration = ?6, \
                         unfinished = ?7, body = ?8 \
                         WHERE id = ?1 AND org = ?2 \
                         AND status IN (?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                    )?
                    .execute(params![
                        row.id,
                        row.org,
                        row.status,
                        row.mode,
                        row.deadline,
                        row.duration,
                        row.unfinished,
                        row.body,
                        allowed[0],
                        allowed[1],
                        allowed[2],
                        allowed[3],
                        allowed[4],
                        allowed[5],
                        allowed[6]
                    ])?;
                if changed == 1 && terminal {
                    count_child(tx, &child)?;
                    add_trend(tx, &trend)?;
                }
                Ok(changed == 1)
            })
            .await
            .map_err(Into::into)
    }

    async fn get_executions(&self, org: &str, ids: &[String]) -> StoreResult<Vec<Execution>> {
        let mut seen = std::collections::HashSet::new();
        let ids: Vec<String> = ids.iter().filter(|id| seen.insert(*id)).cloned().collect();
        let org = org.to_string();
        self.db
            .read(move |tx| {
                let mut out = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Some(e) = load_execution(tx, &org, id)? {
                        out.push(e);
                    }
                }
                Ok(out)
            })
            .await
            .map_err(Into::into)
    }

    async fn move_deadline(&self, org: &str, id: &str, deadline: Timestamp) -> StoreResult<()> {
        let (org, key) = (org.to_string(), id_value(id));
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "UPDATE executions SET deadline = ?3 \
                     WHERE id = ?1 AND org = ?2 AND unfinished = 1",
                )?
                .execute(params![key, org, deadline.millis()])?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn create_child_tally(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        tally: &ChildTally,
    ) -> StoreResult<ChildTally> {
        let (org, execution_id, node_id, tally) = (
            org.to_string(),
            execution_id.to_string(),
            node_id.to_string(),
            *tally,
        );
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO child_tallies \
                     (execution_id, node_id, org, total, concurrency, started, done, failed) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    execution_id,
                    node_id,
                    org,
                    tally.total,
                    tally.concurrency,
                    tally.started,
                    tally.done,
                    tally.failed
                ])?;
                Ok(load_tally(tx, &org, &execution_id, &node_id)?.unwrap_or(tally))
            })
            .await
            .map_err(Into::into)
    }

    async fn get_child_tally(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<ChildTally>> {
        let (org, execution_id, node_id) = (
            org.to_string(),
            execution_id.to_string(),
            node_id.to_string(),
        );
        self.db
            .read_key(move |tx| load_tally(tx, &org, &execution_id, &node_id))
            .await
            .map_err(Into::into)
    }

    async fn reserve_children(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<(u32, u32)>> {
        let (org, execution_id, node_id) = (
            org.to_string(),
            execution_id.to_string(),
            node_id.to_string(),
        );
        self.db
            .write(move |tx| {
                let Some(tally) = load_tally(tx, &org, &execution_id, &node_id)? else {
                    return Ok(None);
                };
                let Some((from, until)) = tally.next_window() else {
                    return Ok(None);
                };
                tx.prepare_cached(
                    "UPDATE child_tallies SET started = ?3 WHERE execution_id = ?1 AND node_id = ?2",
                )?
                .execute(params![execution_id, node_id, until])?;
                Ok(Some((from, until)))
            })
            .await
            .map_err(Into::into)
    }

    async fn put_callback(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        callback: &ReceivedCallback,
    ) -> StoreResult<bool> {
        let (org, execution_id, node_id) = (
            org.to_string(),
            execution_id.to_string(),
            node_id.to_string(),
        );
        let body = to_json(callback).map_err(StoreError::from)?;
        let at = callback.received_at.millis();
        self.db
            .write(move |tx| {
                let inserted = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO callbacks (execution_id, node_id, org, received_at, body) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![execution_id, node_id, org, at, body])?;
                Ok(inserted == 1)
            })
            .await
            .map_err(Into::into)
    }

    async fn get_callback(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
    ) -> StoreResult<Option<ReceivedCallback>> {
        let (org, execution_id, node_id) = (
            org.to_string(),
            execution_id.to_string(),
            node_id.to_string(),
        );
        self.db
            .read_key(move |tx| {
                let body: Option<String> = tx
                    .prepare_cached(
                        "SELECT body FROM callbacks WHERE execution_id = ?1 AND node_id = ?2 AND org = ?3",
                    )?
                    .query_row([&execution_id, &node_id, &org], |r| r.get(0))
                    .optional()?;
                body.map(|b| from_json(&b)).transpose()
            })
            .await
            .map_err(Into::into)
    }

    async fn list_executions(
        &self,
        org: &str,
        filter: &ExecutionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Execution>> {
        let scope = execution_scope(org, filter);
        let after = cursor.map(|c| cursor::decode(&scope, c)).transpose()?;
        let limit = page_size(limit);
        // Only the predicates in use, so SQLite picks the matching index; at most 32
        // distinct statements, all cached.
        let mut sql = String::from(concat!(
            "SELECT ",
            execution_row::columns!(),
            " FROM executions WHERE org = ?"
        ));
        let mut args: Vec<SqlValue> = vec![SqlValue::Text(org.to_string())];
        if let Some(s) = filter.status {
            sql.push_str(" AND status = ?");
            args.push(SqlValue::Text(s.as_str().into()));
        }
        if let Some(m) = filter.mode {
            sql.push_str(" AND mode = ?");
            args.push(SqlValue::Text(m.as_str().into()));
        }
        if let Some(w) = &filter.workflow_id {
            sql.push_str(" AND workflow_id = ?");
            args.push(id_value(w));
        }
        if let Some(p) = &filter.parent_execution_id {
            sql.push_str(" AND parent_id = ?");
            args.push(id_value(p));
        }
        if let Some(t) = filter.start_date {
            sql.push_str(" AND created_at >= ?");
            args.push(SqlValue::Integer(t.millis()));
        }
        if let Some(t) = filter.end_date {
            sql.push_str(" AND created_at <= ?");
            args.push(SqlValue::Integer(t.millis()));
        }
        let after = after.unwrap_or(Position {
            time: i64::MAX,
            id: String::new(),
        });
        sql.push_str(" AND (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT ?");
        args.push(SqlValue::Integer(after.time));
        args.push(id_value(&after.id));
        args.push(SqlValue::Integer(limit + 1));
        self.db
            .read(move |tx| {
                let mut stmt = tx.prepare_cached(&sql)?;
                let mut q = stmt.query(params_from_iter(args.iter()))?;
                let mut rows = Vec::new();
                while let Some(r) = q.next()? {
                    let KeyId(id) = r.get(0)?;
                    rows.push((execution_row::read(r)?, r.get(5)?, id));
                }
                let (items, next_cursor) = page(rows, limit, &scope);
                Ok(Page { items, next_cursor })
            })
            .await
            .map_err(Into::into)
    }

    async fn workflow_trends(
        &self,
        org: &str,
        workflow_id: &str,
        interval: TrendInterval,
        start: Timestamp,
        end: Timestamp,
    ) -> StoreResult<Vec<(Timestamp, TrendCounters)>> {
        let (org, workflow_id) = (org.to_string(), workflow_id.to_string());
        let (from, to) = (interval.start_of(start).millis(), end.millis());
        self.db
            .read(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "SELECT start, body FROM trends WHERE org = ?1 AND workflow_id = ?2 \
                     AND interval = ?3 AND start >= ?4 AND start < ?5 ORDER BY start",
                )?;
                let mut q = stmt.query(params![org, workflow_id, interval.as_str(), from, to])?;
                let mut out = Vec::new();
                while let Some(r) = q.next()? {
                    let body: String = r.get(1)?;
                    match from_json::<TrendCounters>(&body) {
                        Ok(c) => out.push((Timestamp::from_millis(r.get(0)?), c)),
                        Err(e) => unreadable("trends", &workflow_id, &e),
                    }
                }
                Ok(out)
            })
            .await
            .map_err(Into::into)
    }

    /// From the counters the triggers of migration 8 keep per day of `createdAt` (as the
    /// DynamoDB store does): a range selects the whole UTC days it touches, and the work is
    /// the number of days, whatever the number of executions.
    async fn execution_statistics(
        &self,
        org: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> StoreResult<ExecutionStatistics> {
        const DAY: i64 = 86_400_000;
        let org = org.to_string();
        let first_day = start
            .map(|t| t.millis().div_euclid(DAY) * DAY)
            .unwrap_or(i64::MIN);
        let last_day = end
            .map(|t| t.millis().div_euclid(DAY) * DAY)
            .unwrap_or(i64::MAX);
        self.db
            .read(move |tx| {
                // Every status and mode is listed, zero when none: a stable shape for clients.
                let mut stats = ExecutionStatistics {
                    by_status: ExecutionStatus::ALL
                        .iter()
                        .map(|s| (s.as_str().to_string(), 0))
                        .collect(),
                    by_mode: ExecutionMode::ALL
                        .iter()
                        .map(|m| (m.as_str().to_string(), 0))
                        .collect(),
                    ..Default::default()
                };
                let mut finished: u64 = 0;
                let mut success: u64 = 0;
                let mut duration_sum: f64 = 0.0;
                {
                    let mut stmt = tx.prepare_cached(
                        "SELECT status, mode, sum(count), total(duration_sum) FROM execution_counts \
                         WHERE org = ?1 AND day >= ?2 AND day <= ?3 GROUP BY status, mode",
                    )?;
                    let mut q = stmt.query(params![org, first_day, last_day])?;
                    while let Some(r) = q.next()? {
                        let status: String = r.get(0)?;
                        let mode: String = r.get(1)?;
                        let count = r.get::<_, i64>(2)?.max(0) as u64;
                        let sum: f64 = r.get(3)?;
                        stats.total += count;
                        *stats.by_status.entry(status.clone()).or_default() += count;
                        *stats.by_mode.entry(mode).or_default() += count;
                        if ExecutionStatus::parse(&status).is_some_and(|s| s.is_terminal()) {
                            finished += count;
                            duration_sum += sum;
                            if status == ExecutionStatus::Success.as_str() {
                                success += count;
                            }
                        }
                    }
                }
                if finished > 0 {
                    stats.success_rate = success as f64 / finished as f64;
                    stats.average_duration = duration_sum / finished as f64;
                    let mut histogram = vec![0u64; trends::BUCKETS];
                    let mut stmt = tx.prepare_cached(
                        "SELECT bucket, sum(count) FROM duration_counts \
                         WHERE org = ?1 AND day >= ?2 AND day <= ?3 GROUP BY bucket",
                    )?;
                    let mut q = stmt.query(params![org, first_day, last_day])?;
                    while let Some(r) = q.next()? {
                        let bucket: i64 = r.get(0)?;
                        if let Some(slot) = usize::try_from(bucket).ok().and_then(|b| histogram.get_mut(b)) {
                            *slot += r.get::<_, i64>(1)?.max(0) as u64;
                        }
                    }
                    stats.p95_duration = trends::percentile(&histogram, 0.95);
                }
                Ok(stats)
            })
            .await
            .map_err(Into::into)
    }

    async fn list_unfinished_executions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Execution>> {
        let scope = cursor::scope(&["unfinished"]);
        let after = cursor.map(|c| cursor::decode(&scope, c)).transpose()?;
        let limit = page_size(limit);
        self.db
            .read(move |tx| {
                let after = after.unwrap_or(Position {
                    time: i64::MIN,
                    id: String::new(),
                });
                let mut stmt = tx.prepare_cached(concat!(
                    "SELECT ",
                    execution_row::columns!(),
                    " FROM executions WHERE unfinished = 1 AND (deadline, id) > (?1, ?2) \
                     ORDER BY deadline, id LIMIT ?3"
                ))?;
                let mut q = stmt.query(params![after.time, id_value(&after.id), limit + 1])?;
                let mut rows = Vec::new();
                while let Some(r) = q.next()? {
                    let KeyId(id) = r.get(0)?;
                    rows.push((execution_row::read(r)?, r.get(6)?, id));
                }
                let (items, next_cursor) = page(rows, limit, &scope);
                Ok(Page { items, next_cursor })
            })
            .await
            .map_err(Into::into)
    }

    async fn count_unfinished_executions(
        &self,
        org: &str,
        stale_before: Timestamp,
    ) -> StoreResult<UnfinishedCounts> {
        let stale_before = stale_before.millis();
        let org = org.to_string();
        self.db
            .read(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "SELECT status, count(*), \
                     total(CASE WHEN created_at < ?1 THEN 1 ELSE 0 END) \
                     FROM executions WHERE org = ?2 \
                     AND status IN ('running', 'pending', 'paused') GROUP BY status",
                )?;
                let mut q = stmt.query(params![stale_before, org])?;
                let mut counts = UnfinishedCounts::default();
                while let Some(r) = q.next()? {
                    let status: String = r.get(0)?;
                    let count = r.get::<_, i64>(1)?.max(0) as u64;
                    let stale: f64 = r.get(2)?;
                    match ExecutionStatus::parse(&status) {
                        Some(ExecutionStatus::Running) => {
                            counts.running += count;
                            counts.stale += stale as u64;
                        }
                        Some(ExecutionStatus::Pending) => {
                            counts.pending += count;
                            counts.stale += stale as u64;
                        }
                        Some(ExecutionStatus::Paused) => counts.paused += count,
                        _ => {}
                    }
                }
                Ok(counts)
            })
            .await
            .map_err(Into::into)
    }

    // ---- retention -------------------------------------------------------------------

    /// Walks executions (in id order: UUIDv7s, creation order) and keys (rowid order) oldest
    /// first and stops at
    /// the first one inside the retention, so a call reads only what it may delete.
    async fn prune(
        &self,
        executions_before: Timestamp,
        keys_before: Timestamp,
        limit: usize,
    ) -> StoreResult<Pruned> {
        let limit = limit.clamp(1, 10_000) as i64;
        self.db
            .write(move |tx| {
                let mut pruned = Pruned::default();
                let oldest: Vec<(KeyId, bool, i64)> = tx
                    .prepare_cached(
                        "SELECT id, unfinished, created_at FROM executions ORDER BY id LIMIT ?1",
                    )?
                    .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                for (KeyId(id), unfinished, created_at) in oldest {
                    if created_at >= executions_before.millis() {
                        break;
                    }
                    if unfinished {
                        // The cleanup run times it out first (its deadline has long passed).
                        continue;
                    }
                    let key = id_value(&id);
                    tx.prepare_cached("DELETE FROM node_runs WHERE execution_id = ?1")?
                        .execute([&key])?;
                    tx.prepare_cached("DELETE FROM arrivals WHERE execution_id = ?1")?
                        .execute([&id])?;
                    tx.prepare_cached("DELETE FROM child_tallies WHERE execution_id = ?1")?
                        .execute([&id])?;
                    tx.prepare_cached("DELETE FROM callbacks WHERE execution_id = ?1")?
                        .execute([&id])?;
                    tx.prepare_cached("DELETE FROM log_batches WHERE execution_id = ?1")?
                        .execute([&key])?;
                    tx.prepare_cached("DELETE FROM executions WHERE id = ?1")?
                        .execute([&key])?;
                    pruned.executions += 1;
                }
                let keys: Vec<(i64, i64)> = tx
                    .prepare_cached(
                        "SELECT rowid, created_at FROM idempotency_keys ORDER BY rowid LIMIT ?1",
                    )?
                    .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                for (rowid, created_at) in keys {
                    if created_at >= keys_before.millis() {
                        break;
                    }
                    tx.prepare_cached("DELETE FROM idempotency_keys WHERE rowid = ?1")?
                        .execute([rowid])?;
                    pruned.idempotency_keys += 1;
                }
                Ok(pruned)
            })
            .await
            .map_err(Into::into)
    }

    /// Incremental vacuum in steps of [`RECLAIM_STEP_PAGES`], each its own write, so other
    /// writes go between them.
    async fn reclaim_space(&self, max_bytes: u64) -> StoreResult<u64> {
        let mut given_back = 0u64;
        while given_back < max_bytes {
            let (freed, page_size) = self
                .db
                .write(|tx| {
                    let page_size: i64 = tx.query_row("PRAGMA page_size", [], |r| r.get(0))?;
                    let before: i64 = tx.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                    // Each step of the statement frees one page: stepped to the end.
                    let mut stmt =
                        tx.prepare(&format!("PRAGMA incremental_vacuum({RECLAIM_STEP_PAGES})"))?;
                    let mut rows = stmt.query([])?;
                    while rows.next()?.is_some() {}
                    let after: i64 = tx.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                    Ok(((before - after).max(0) as u64, page_size.max(0) as u64))
                })
                .await
                .map_err(StoreError::from)?;
            given_back += freed * page_size;
            if freed < RECLAIM_STEP_PAGES {
                break;
            }
        }
        Ok(given_back)
    }

    // ---- node runs -------------------------------------------------------------------

    async fn put_node_runs(&self, org: &str, runs: &[NodeRun]) -> StoreResult<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let org = org.to_string();
        let rows = run_rows(runs)?;
        self.db
            .write(move |tx| insert_runs(tx, &org, &rows))
            .await
            .map_err(Into::into)
    }

    async fn claim_node(
        &self,
        org: &str,
        execution_id: &str,
        node_id: &str,
        claim: &Claim,
    ) -> StoreResult<ClaimOutcome> {
        let (org, execution_id, node_id) = (
            org.to_string(),
            execution_id.to_string(),
            node_id.to_string(),
        );
        let claim = claim.clone();
        self.db
            .write(move |tx| {
                // The execution's status in the same transaction: once it is terminal or
                // paused (a write that queues behind this one sees the claim), nothing starts.
                if let Some(status) = stopped(tx, &org, &execution_id, claim.now)? {
                    return Ok(ClaimOutcome::Stopped(status));
                }
                let stored = load_run(tx, &org, &execution_id, &node_id)?;
                let outcome = NodeRun::claim(stored.as_ref(), &claim);
                if let ClaimOutcome::Claimed(run) = &outcome {
                    upsert_run(tx, &org, run, false)?;
                }
                Ok(outcome)
            })
            .await
            .map_err(Into::into)
    }

    async fn save_node_run(&self, org: &str, run: &NodeRun, token: &str) -> StoreResult<bool> {
        let org = org.to_string();
        let row = RunRow::of(run)?;
        let token = token.to_string();
        self.db
            .write(move |tx| {
                let Some(stored) = load_run(tx, &org, &row.execution_id, &row.node_id)? else {
                    return Ok(false);
                };
                if stored.lease_token.as_deref() != Some(token.as_str()) {
                    return Ok(false);
                }
                upsert_run_row(tx, &org, &row, stored.status.is_finished())?;
                Ok(true)
            })
            .await
            .map_err(Into::into)
    }

    async fn arrive(
        &self,
        org: &str,
        a: &ArrivalAt<'_>,
        claim: Option<&Claim>,
    ) -> StoreResult<Arrival> {
        let org = org.to_string();
        let (execution_id, child, parent) = (
            a.execution_id.to_string(),
            a.child.to_string(),
            a.parent.to_string(),
        );
        let (taken, parents, at) = (a.taken, a.parents, a.at);
        let claim = claim.cloned();
        self.db
            .write(move |tx| {
                let stored = load_run(tx, &org, &execution_id, &child)?;
                // Has this parent arrived before? A join records each arrival (one row, so
                // an arrival costs the same whatever the number of parents); a child with
                // one parent exists only once that parent arrived.
                let first = if parents > 1 {
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO arrivals (execution_id, node_id, parent) \
                         VALUES (?1, ?2, ?3)",
                    )?
                    .execute([&execution_id, &child, &parent])?
                        == 1
                } else {
                    stored.is_none()
                };
                let mut run = match stored {
                    Some(run) if !first || run.ready || run.status != NodeRunStatus::Pending => {
                        return Ok(Arrival::Duplicate(run));
                    }
                    Some(run) => run,
                    None => NodeRun::new(&execution_id, &child),
                };
                run.arrived += 1;
                if taken {
                    run.taken += 1;
                }
                if (run.arrived as usize) < parents {
                    upsert_run(tx, &org, &run, false)?;
                    return Ok(Arrival::Waiting);
                }
                if run.taken == 0 {
                    run.status = NodeRunStatus::Skipped;
                    run.finished_at = Some(at);
                    upsert_run(tx, &org, &run, false)?;
                    return Ok(Arrival::Skipped(run));
                }
                run.ready = true;
                if let Some(claim) = &claim
                    && stopped(tx, &org, &execution_id, claim.now)?.is_none()
                {
                    run = run.claimed(claim);
                }
                upsert_run(tx, &org, &run, false)?;
                Ok(Arrival::Ready(run))
            })
            .await
            .map_err(Into::into)
    }
}

#[async_trait]
impl LogStore for SqliteStore {
    // ---- logs ------------------------------------------------------------------------

    async fn append_logs(&self, logs: &[ExecutionLog]) -> StoreResult<()> {
        if logs.is_empty() {
            return Ok(());
        }
        let batches = log_batch::batches(logs).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.db
            .write(move |tx| {
                // The same batch written again (a retried call) has the same key: ignored.
                let mut stmt = tx.prepare_cached(
                    "INSERT OR IGNORE INTO log_batches (execution_id, first_id, last_id, body) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                for b in &batches {
                    stmt.execute(params![
                        id_value(&b.execution_id),
                        id_value(&b.first_id),
                        id_value(&b.last_id),
                        b.body
                    ])?;
                }
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn list_logs(
        &self,
        org: &str,
        execution_id: &str,
        filter: &LogFilter,
        limit: usize,
    ) -> StoreResult<Page<ExecutionLog>> {
        let (org, execution_id) = (org.to_string(), execution_id.to_string());
        let filter = filter.clone();
        let limit = page_size(limit) as usize;
        self.db
            .read(move |tx| {
                let mut pager = LogPager::new(&filter, limit);
                // Logs are the execution's: none when it is another organization's.
                let owned = tx
                    .prepare_cached("SELECT 1 FROM executions WHERE id = ?1 AND org = ?2")?
                    .query_row(params![id_value(&execution_id), org], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !owned {
                    return Ok(pager.finish());
                }
                let from = filter
                    .after
                    .as_deref()
                    .and_then(log_batch::lower_bound)
                    .map(|id| id_value(&id))
                    .unwrap_or(SqlValue::Null);
                let after = filter.after.as_deref().map(id_value).unwrap_or(SqlValue::Null);
                // By first id: a batch's entries are never older than it (`LogPager::wants`).
                let mut stmt = tx.prepare_cached(
                    "SELECT first_id, body FROM log_batches \
                     WHERE execution_id = ?1 AND (?2 IS NULL OR first_id >= ?2) \
                     AND (?3 IS NULL OR last_id > ?3) ORDER BY first_id",
                )?;
                let mut q = stmt.query(params![id_value(&execution_id), from, after])?;
                while let Some(r) = q.next()? {
                    let KeyId(first_id) = r.get(0)?;
                    if !pager.wants(&first_id) {
                        break;
                    }
                    let body: Vec<u8> = r.get(1)?;
                    match log_batch::decode(&org, &execution_id, &first_id, &body) {
                        Ok(logs) => pager.add(logs),
                        Err(e) => tracing::warn!(execution_id, error = %e, "unreadable log batch left out"),
                    }
                }
                Ok(pager.finish())
            })
            .await
            .map_err(Into::into)
    }
}

#[async_trait]
impl CredentialStore for SqliteStore {
    // ---- credentials -----------------------------------------------------------------

    async fn put_credential(&self, cred: &StoredCredential) -> StoreResult<()> {
        let cred = cred.clone();
        self.db
            .write(move |tx| {
                let c = &cred.credential;
                let clash: Option<String> = tx
                    .prepare_cached("SELECT id FROM credentials WHERE org = ?1 AND name = ?2")?
                    .query_row([&c.organization_id, &c.name], |r| r.get(0))
                    .optional()?;
                if clash.is_some_and(|id| id != c.id) {
                    return Err(StoreError::Conflict(format!(
                        "A credential named '{}' already exists",
                        c.name
                    ))
                    .into());
                }
                let owner: Option<String> = tx
                    .prepare_cached("SELECT org FROM credentials WHERE id = ?1")?
                    .query_row([&c.id], |r| r.get(0))
                    .optional()?;
                if owner.is_some_and(|o| o != c.organization_id) {
                    return Err(StoreError::Conflict(format!(
                        "Credential id '{}' is already in use",
                        c.id
                    ))
                    .into());
                }
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO credentials (id, org, name, created_at, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    c.id,
                    c.organization_id,
                    c.name,
                    c.created_at.millis(),
                    to_json(&cred)?
                ])?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn get_credential(
        &self,
        org: &str,
        id_or_name: &str,
    ) -> StoreResult<Option<StoredCredential>> {
        let (org, key) = (org.to_string(), id_or_name.to_string());
        self.db
            .read_key(move |tx| {
                let mut body: Option<String> = tx
                    .prepare_cached("SELECT body FROM credentials WHERE id = ?1 AND org = ?2")?
                    .query_row([&key, &org], |r| r.get(0))
                    .optional()?;
                if body.is_none() {
                    body = tx
                        .prepare_cached(
                            "SELECT body FROM credentials WHERE org = ?1 AND name = ?2",
                        )?
                        .query_row([&org, &key], |r| r.get(0))
                        .optional()?;
                }
                body.map(|b| from_json(&b)).transpose()
            })
            .await
            .map_err(Into::into)
    }

    async fn list_credentials(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<Credential>> {
        self.newest_first(
            "credentials",
            org,
            limit,
            cursor,
            "SELECT body, created_at, id FROM credentials \
             WHERE org = ?1 AND (created_at, id) < (?2, ?3) \
             ORDER BY created_at DESC, id DESC LIMIT ?4",
            |r| Ok(from_json::<StoredCredential>(&r.get::<_, String>(0)?)?.credential),
        )
        .await
    }

    async fn delete_credential(&self, org: &str, id: &str) -> StoreResult<bool> {
        let (org, id) = (org.to_string(), id.to_string());
        self.db
            .write(move |tx| {
                Ok(tx
                    .prepare_cached("DELETE FROM credentials WHERE id = ?1 AND org = ?2")?
                    .execute([&id, &org])?
                    > 0)
            })
            .await
            .map_err(Into::into)
    }
}

#[async_trait]
impl CircuitStore for SqliteStore {
    // ---- circuit breaker -------------------------------------------------------------

    async fn get_circuit(&self, org: &str, key: &str) -> StoreResult<Option<CircuitState>> {
        let (org, key) = (org.to_string(), key.to_string());
        self.db
            .read_key(move |tx| {
                let body: Option<String> = tx
                    .prepare_cached("SELECT body FROM circuits WHERE org = ?1 AND key = ?2")?
                    .query_row([&org, &key], |r| r.get(0))
                    .optional()?;
                body.map(|b| from_json(&b)).transpose()
            })
            .await
            .map_err(Into::into)
    }

    async fn put_circuit(&self, org: &str, key: &str, state: &CircuitState) -> StoreResult<bool> {
        if state.version == 0 || state.version > i64::MAX as u64 {
            return Ok(false);
        }
        let (org, key) = (org.to_string(), key.to_string());
        let body = to_json(state)?;
        let version = state.version as i64;
        self.db
            .write(move |tx| {
                let changed = if version == 1 {
                    tx.prepare_cached(
                        "INSERT INTO circuits (org, key, version, body) VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![org, key, version, body])?
                } else {
                    tx.prepare_cached(
                        "UPDATE circuits SET version = ?3, body = ?4 \
                         WHERE org = ?1 AND key = ?2 AND version = ?5",
                    )?
                    .execute(params![org, key, version, body, version - 1])?
                };
                Ok(changed == 1)
            })
            .await
            .map_err(Into::into)
    }

    async fn count_open_circuits(&self) -> StoreResult<Option<u64>> {
        self.db
            .read(move |tx| {
                let n: i64 = tx
                    .prepare_cached(
                        "SELECT count(*) FROM circuits \
                         WHERE json_extract(body, '$.openedAt') IS NOT NULL",
                    )?
                    .query_row([], |r| r.get(0))?;
                Ok(Some(n.max(0) as u64))
            })
            .await
            .map_err(Into::into)
    }

    async fn list_circuits(
        &self,
        org: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> StoreResult<Page<CircuitRecord>> {
        let scope = cursor::scope(&["circuits", org]);
        let after = cursor
            .map(|c| cursor::decode(&scope, c))
            .transpose()?
            .map(|p| p.id)
            .unwrap_or_default();
        let org = org.to_string();
        let limit = page_size(limit);
        self.db
            .read(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "SELECT key, body FROM circuits WHERE org = ?1 AND key > ?2 \
                     ORDER BY key LIMIT ?3",
                )?;
                let mut q = stmt.query(params![org, after, limit + 1])?;
                let mut rows = Vec::new();
                while let Some(r) = q.next()? {
                    let key: String = r.get(0)?;
                    let body: String = r.get(1)?;
                    let record = from_json::<CircuitState>(&body).map(|state| CircuitRecord {
                        key: key.clone(),
                        state,
                    });
                    rows.push((record, 0, key));
                }
                let (items, next_cursor) = page(rows, limit, &scope);
                Ok(Page { items, next_cursor })
            })
            .await
            .map_err(Into::into)
    }
}

/// Hands free slots of a gate to the executions first in line (inside a write).
fn promote_in(tx: &Connection, gate: &Gate, limit: u32) -> Result<Vec<String>, Fail> {
    let mut promoted = Vec::new();
    loop {
        let held: i64 = tx
            .prepare_cached(
                "SELECT count(*) FROM gate_slots WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3",
            )?
            .query_row(params![gate.org, gate.workflow_id, gate.key], |r| r.get(0))?;
        if held >= i64::from(limit) {
            return Ok(promoted);
        }
        let next: Option<(i64, String)> = tx
            .prepare_cached(
                "SELECT created_at, execution_id FROM gate_queue \
                 WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3 \
                 ORDER BY created_at, execution_id LIMIT 1",
            )?
            .query_row(params![gate.org, gate.workflow_id, gate.key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((created_at, id)) = next else {
            return Ok(promoted);
        };
        tx.prepare_cached(
            "DELETE FROM gate_queue WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3 \
             AND created_at = ?4 AND execution_id = ?5",
        )?
        .execute(params![
            gate.org,
            gate.workflow_id,
            gate.key,
            created_at,
            id
        ])?;
        tx.prepare_cached(
            "INSERT INTO gate_slots (org, workflow_id, gate_key, execution_id) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![gate.org, gate.workflow_id, gate.key, id])?;
        promoted.push(id);
    }
}

fn holds_slot(tx: &Connection, gate: &Gate, execution_id: &str) -> Result<bool, Fail> {
    Ok(tx
        .prepare_cached(
            "SELECT 1 FROM gate_slots WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3 \
             AND execution_id = ?4",
        )?
        .query_row(
            params![gate.org, gate.workflow_id, gate.key, execution_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

#[async_trait]
impl GateStore for SqliteStore {
    // ---- concurrency gates ---------------------------------------------------------------

    async fn admit(
        &self,
        gate: &Gate,
        limit: u32,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<Admission> {
        let (gate, id, at) = (gate.clone(), execution_id.to_string(), created_at.millis());
        self.db
            .write(move |tx| {
                if holds_slot(tx, &gate, &id)? {
                    return Ok(Admission::Holds);
                }
                let waiting: i64 = tx
                    .prepare_cached(
                        "SELECT count(*) FROM gate_queue \
                         WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3",
                    )?
                    .query_row(params![gate.org, gate.workflow_id, gate.key], |r| r.get(0))?;
                let queued = tx
                    .prepare_cached(
                        "SELECT 1 FROM gate_queue WHERE org = ?1 AND workflow_id = ?2 \
                         AND gate_key = ?3 AND created_at = ?4 AND execution_id = ?5",
                    )?
                    .query_row(
                        params![gate.org, gate.workflow_id, gate.key, at, id],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                if queued {
                    return Ok(Admission::Queued);
                }
                let held: i64 = tx
                    .prepare_cached(
                        "SELECT count(*) FROM gate_slots \
                         WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3",
                    )?
                    .query_row(params![gate.org, gate.workflow_id, gate.key], |r| r.get(0))?;
                if waiting == 0 && held < i64::from(limit) {
                    tx.prepare_cached(
                        "INSERT INTO gate_slots (org, workflow_id, gate_key, execution_id) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![
                        gate.org,
                        gate.workflow_id,
                        gate.key,
                        id
                    ])?;
                    return Ok(Admission::Holds);
                }
                tx.prepare_cached(
                    "INSERT INTO gate_queue (org, workflow_id, gate_key, created_at, execution_id) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![gate.org, gate.workflow_id, gate.key, at, id])?;
                Ok(Admission::Queued)
            })
            .await
            .map_err(Into::into)
    }

    async fn leave(
        &self,
        gate: &Gate,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<()> {
        let (gate, id, at) = (gate.clone(), execution_id.to_string(), created_at.millis());
        self.db
            .write(move |tx| {
                tx.prepare_cached(
                    "DELETE FROM gate_slots WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3 \
                     AND execution_id = ?4",
                )?
                .execute(params![gate.org, gate.workflow_id, gate.key, id])?;
                tx.prepare_cached(
                    "DELETE FROM gate_queue WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3 \
                     AND created_at = ?4 AND execution_id = ?5",
                )?
                .execute(params![gate.org, gate.workflow_id, gate.key, at, id])?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn promote(&self, gate: &Gate, limit: u32) -> StoreResult<Vec<String>> {
        let gate = gate.clone();
        self.db
            .write(move |tx| promote_in(tx, &gate, limit))
            .await
            .map_err(Into::into)
    }

    async fn holds_slot(&self, gate: &Gate, execution_id: &str) -> StoreResult<bool> {
        let (gate, id) = (gate.clone(), execution_id.to_string());
        self.db
            .read_key(move |tx| holds_slot(tx, &gate, &id))
            .await
            .map_err(Into::into)
    }

    async fn throttle(
        &self,
        gate: &Gate,
        limit: u32,
        period_ms: u64,
        execution_id: &str,
        now: Timestamp,
    ) -> StoreResult<Timestamp> {
        let (gate, id) = (gate.clone(), execution_id.to_string());
        self.db
            .write(move |tx| {
                let assigned: Option<i64> = tx
                    .prepare_cached(
                        "SELECT start_at FROM throttle_starts WHERE org = ?1 AND workflow_id = ?2 \
                         AND gate_key = ?3 AND execution_id = ?4",
                    )?
                    .query_row(params![gate.org, gate.workflow_id, gate.key, id], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(at) = assigned {
                    return Ok(Timestamp::from_millis(at));
                }
                let period = i64::try_from(period_ms).unwrap_or(i64::MAX);
                // Older starts share no window with this one.
                tx.prepare_cached(
                    "DELETE FROM throttle_starts WHERE org = ?1 AND workflow_id = ?2 \
                     AND gate_key = ?3 AND start_at < ?4",
                )?
                .execute(params![
                    gate.org,
                    gate.workflow_id,
                    gate.key,
                    now.millis().saturating_sub(period)
                ])?;
                let mut stmt = tx.prepare_cached(
                    "SELECT start_at FROM throttle_starts WHERE org = ?1 AND workflow_id = ?2 \
                     AND gate_key = ?3 ORDER BY start_at DESC LIMIT ?4",
                )?;
                let latest: Vec<Timestamp> = stmt
                    .query_map(
                        params![gate.org, gate.workflow_id, gate.key, i64::from(limit)],
                        |r| r.get::<_, i64>(0),
                    )?
                    .map(|r| r.map(Timestamp::from_millis))
                    .collect::<Result<_, _>>()?;
                let at = throttled_start_time(&latest, limit, period_ms, now);
                tx.prepare_cached(
                    "INSERT INTO throttle_starts (org, workflow_id, gate_key, execution_id, start_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![gate.org, gate.workflow_id, gate.key, id, at.millis()])?;
                Ok(at)
            })
            .await
            .map_err(Into::into)
    }

    async fn throttled_start(
        &self,
        gate: &Gate,
        execution_id: &str,
    ) -> StoreResult<Option<Timestamp>> {
        let (gate, id) = (gate.clone(), execution_id.to_string());
        self.db
            .read_key(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "SELECT start_at FROM throttle_starts WHERE org = ?1 AND workflow_id = ?2 \
                         AND gate_key = ?3 AND execution_id = ?4",
                    )?
                    .query_row(params![gate.org, gate.workflow_id, gate.key, id], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()?
                    .map(Timestamp::from_millis))
            })
            .await
            .map_err(Into::into)
    }

    async fn debounce(
        &self,
        gate: &Gate,
        execution_id: &str,
        created_at: Timestamp,
    ) -> StoreResult<Debounced> {
        let (gate, id, at) = (gate.clone(), execution_id.to_string(), created_at.millis());
        self.db
            .write(move |tx| {
                let latest: Option<(String, i64)> = tx
                    .prepare_cached(
                        "SELECT execution_id, created_at FROM debounce_latest \
                         WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3",
                    )?
                    .query_row(params![gate.org, gate.workflow_id, gate.key], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                match latest {
                    Some((latest_id, _)) if latest_id == id => {
                        return Ok(Debounced::Latest { replaced: None });
                    }
                    Some((latest_id, latest_at)) if (latest_at, &latest_id) > (at, &id) => {
                        return Ok(Debounced::Superseded { by: latest_id });
                    }
                    _ => {}
                }
                tx.prepare_cached(
                    "INSERT INTO debounce_latest (org, workflow_id, gate_key, execution_id, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (org, workflow_id, gate_key) \
                     DO UPDATE SET execution_id = excluded.execution_id, created_at = excluded.created_at",
                )?
                .execute(params![gate.org, gate.workflow_id, gate.key, id, at])?;
                Ok(Debounced::Latest {
                    replaced: latest.map(|(latest_id, _)| latest_id),
                })
            })
            .await
            .map_err(Into::into)
    }

    async fn take_call(
        &self,
        gate: &Gate,
        limit: u32,
        period_ms: u64,
        now: Timestamp,
    ) -> StoreResult<Option<Timestamp>> {
        let gate = gate.clone();
        self.db
            .write(move |tx| {
                let period = i64::try_from(period_ms).unwrap_or(i64::MAX);
                tx.prepare_cached(
                    "DELETE FROM throttle_starts WHERE org = ?1 AND workflow_id = ?2 \
                     AND gate_key = ?3 AND start_at <= ?4",
                )?
                .execute(params![
                    gate.org,
                    gate.workflow_id,
                    gate.key,
                    now.millis().saturating_sub(period)
                ])?;
                let mut stmt = tx.prepare_cached(
                    "SELECT start_at FROM throttle_starts WHERE org = ?1 AND workflow_id = ?2 \
                     AND gate_key = ?3",
                )?;
                let counted: Vec<Timestamp> = stmt
                    .query_map(params![gate.org, gate.workflow_id, gate.key], |r| {
                        r.get::<_, i64>(0)
                    })?
                    .map(|r| r.map(Timestamp::from_millis))
                    .collect::<Result<_, _>>()?;
                if let Some(at) = call_slot(&counted, limit, period_ms, now) {
                    return Ok(Some(at));
                }
                tx.prepare_cached(
                    "INSERT INTO throttle_starts (org, workflow_id, gate_key, execution_id, start_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![gate.org, gate.workflow_id, gate.key, new_id(), now.millis()])?;
                Ok(None)
            })
            .await
            .map_err(Into::into)
    }

    async fn latest_debounced(&self, gate: &Gate) -> StoreResult<Option<String>> {
        let gate = gate.clone();
        self.db
            .read_key(move |tx| {
                Ok(tx
                    .prepare_cached(
                        "SELECT execution_id FROM debounce_latest \
                         WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3",
                    )?
                    .query_row(params![gate.org, gate.workflow_id, gate.key], |r| r.get(0))
                    .optional()?)
            })
            .await
            .map_err(Into::into)
    }

    async fn gate_holders(&self, gate: &Gate) -> StoreResult<Vec<String>> {
        let gate = gate.clone();
        self.db
            .read(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "SELECT execution_id FROM gate_slots \
                     WHERE org = ?1 AND workflow_id = ?2 AND gate_key = ?3 ORDER BY execution_id",
                )?;
                let rows = stmt.query_map(params![gate.org, gate.workflow_id, gate.key], |r| {
                    r.get::<_, String>(0)
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .map_err(Into::into)
    }
}
