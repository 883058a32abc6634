//! An execution as a row of `executions`: the fields that queries filter, sort or count on
//! are columns (ids as 16-byte keys, see [`id_value`]), everything else but nulls is the
//! packed body, and no field is stored twice (SPEC §14). Rows written before schema 9 have every field
//! in their body as well; the columns win.

use super::Fail;
use super::body::{KeyId, StoredJson, id_value};
use crate::adapters::pack::{self, Packed};
use crate::model::{Execution, NodeRun, Timestamp};
use crate::ports::StoreError;
use rusqlite::Row;
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value};

/// The fields of an Execution kept in columns (their JSON names), left out of its body.
const IN_COLUMNS: [&str; 9] = [
    "id",
    "workflowId",
    "organizationId",
    "status",
    "mode",
    "createdAt",
    "deadline",
    "duration",
    "parentExecutionId",
];

/// Times of an execution's body kept as milliseconds from its `createdAt` (a column).
const EXECUTION_TIMES: [&str; 2] = ["startedAt", "completedAt"];
/// Times of a folded run kept the same way.
const RUN_TIMES: [&str; 5] = [
    "startedAt",
    "finishedAt",
    "leaseUntil",
    "notBefore",
    "waitUntil",
];

/// The fields of `value` (an object) as stored: without nulls (every nullable field of an
/// Execution or a NodeRun reads back as null when missing) nor the `left_out` ones, and
/// the `times` as milliseconds from `origin`.
fn stored_fields(
    value: Value,
    left_out: &[&str],
    times: &[&str],
    origin: i64,
) -> Map<String, Value> {
    let Value::Object(mut fields) = value else {
        return Map::new();
    };
    fields.retain(|name, value| !value.is_null() && !left_out.contains(&name.as_str()));
    for name in times {
        if let Some(value) = fields.get_mut(*name)
            && let Some(t) = value.as_str().and_then(Timestamp::parse)
        {
            *value = Value::from(t.millis() - origin);
        }
    }
    fields
}

/// The `times` of stored fields back as timestamps (bodies written before schema 9 have
/// them as text already).
fn restore_times(fields: &mut Map<String, Value>, times: &[&str], origin: i64) {
    for name in times {
        if let Some(value) = fields.get_mut(*name)
            && let Some(offset) = value.as_i64()
        {
            *value = Value::String(Timestamp::from_millis(origin + offset).to_string());
        }
    }
}

/// The columns [`read`] expects, in this order, for `concat!("SELECT ", columns!(), ...)`.
macro_rules! columns {
    () => {
        "id, org, workflow_id, status, mode, created_at, deadline, duration, parent_id, body"
    };
}
pub(crate) use columns;

/// The values an execution is written with.
pub(crate) struct ExecutionRow {
    pub(crate) id: SqlValue,
    pub(crate) org: String,
    pub(crate) workflow_id: SqlValue,
    pub(crate) status: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) created_at: i64,
    pub(crate) deadline: i64,
    pub(crate) duration: i64,
    /// 1 while pending, running or paused.
    pub(crate) unfinished: i64,
    pub(crate) parent_id: SqlValue,
    pub(crate) body: Packed,
}

impl ExecutionRow {
    pub(crate) fn of(e: &Execution) -> Result<Self, Fail> {
        let created_at = e.created_at.millis();
        let body = stored_fields(
            serde_json::to_value(e)?,
            &IN_COLUMNS,
            &EXECUTION_TIMES,
            created_at,
        );
        Ok(Self {
            id: id_value(&e.id),
            org: e.organization_id.clone(),
            workflow_id: id_value(&e.workflow_id),
            status: e.status.as_str(),
            mode: e.mode.as_str(),
            created_at,
            deadline: e.deadline.millis(),
            duration: e.duration.min(i64::MAX as u64) as i64,
            unfinished: i64::from(!e.status.is_terminal()),
            parent_id: e
                .parent_execution_id
                .as_deref()
                .map_or(SqlValue::Null, id_value),
            body: pack::pack(serde_json::to_string(&body)?),
        })
    }
}

/// The execution of a row read with [`columns!`]. The outer error: the row could not be
/// read; the inner one: its body cannot be understood (lists leave such a row out).
pub(crate) fn read(r: &Row<'_>) -> rusqlite::Result<Result<Execution, Fail>> {
    let KeyId(id) = r.get(0)?;
    let org: String = r.get(1)?;
    let KeyId(workflow_id) = r.get(2)?;
    let status: String = r.get(3)?;
    let mode: String = r.get(4)?;
    let (created_at, deadline, duration): (i64, i64, i64) = (r.get(5)?, r.get(6)?, r.get(7)?);
    let parent: Option<KeyId> = r.get(8)?;
    let body: StoredJson = r.get(9)?;
    Ok(body.parse::<Map<String, Value>>().and_then(|mut fields| {
        restore_times(&mut fields, &EXECUTION_TIMES, created_at);
        let time = |ms: i64| Value::String(Timestamp::from_millis(ms).to_string());
        fields.insert("id".into(), Value::String(id));
        fields.insert("workflowId".into(), Value::String(workflow_id));
        fields.insert("organizationId".into(), Value::String(org));
        fields.insert("status".into(), Value::String(status));
        fields.insert("mode".into(), Value::String(mode));
        fields.insert("createdAt".into(), time(created_at));
        fields.insert("deadline".into(), time(deadline));
        fields.insert("duration".into(), Value::from(duration.max(0)));
        fields.insert(
            "parentExecutionId".into(),
            parent.map_or(Value::Null, |KeyId(p)| Value::String(p)),
        );
        Ok(serde_json::from_value(Value::Object(fields))?)
    }))
}

/// The runs of `execution` as kept in its row once its data was dropped (column `runs`):
/// one packed array, without the execution's id, nulls or text times.
pub(crate) fn folded_runs(execution: &Execution, runs: &[NodeRun]) -> Result<Vec<u8>, Fail> {
    let origin = execution.created_at.millis();
    let runs = runs
        .iter()
        .map(|run| {
            let fields = stored_fields(
                serde_json::to_value(run)?,
                &["executionId"],
                &RUN_TIMES,
                origin,
            );
            Ok(Value::Object(fields))
        })
        .collect::<Result<Vec<_>, Fail>>()?;
    Ok(pack::pack_bytes(serde_json::to_string(&runs)?))
}

/// The runs [`folded_runs`] kept.
pub(crate) fn unfolded_runs(execution: &Execution, packed: &[u8]) -> Result<Vec<NodeRun>, Fail> {
    let unreadable =
        |e: &dyn std::fmt::Display| Fail::Store(StoreError::Backend(format!("folded runs: {e}")));
    let text = pack::unpack(packed).map_err(|e| unreadable(&e))?;
    let text = std::str::from_utf8(&text).map_err(|e| unreadable(&e))?;
    let stored: Vec<Map<String, Value>> = crate::limits::from_stored_json(text)?;
    let origin = execution.created_at.millis();
    stored
        .into_iter()
        .map(|mut fields| {
            restore_times(&mut fields, &RUN_TIMES, origin);
            fields.insert("executionId".into(), Value::String(execution.id.clone()));
            Ok(serde_json::from_value(Value::Object(fields))?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExecutionMode, ExecutionStatus};
    use rusqlite::Connection;
    use serde_json::json;

    fn execution() -> Execution {
        let mut e: Execution = serde_json::from_value(json!({
            "id": "01933b6e-5632-7101-91c0-00845338bcc1",
            "workflowId": "01933b6e-5624-748a-9cfa-194cbdf98eeb",
            "workflowVersion": 3,
            "userId": "u1",
            "organizationId": "o1",
            "status": "success",
            "mode": "webhook",
            "inputData": {"n": 1},
            "deadline": "2026-12-02T10:05:00.000Z",
            "createdAt": "2026-12-02T10:00:00.000Z",
            "startNodeId": "hook",
        }))
        .unwrap();
        e.duration = 12;
        e.started_at = Some(e.created_at.plus(std::time::Duration::from_millis(2)));
        e.completed_at = Some(e.created_at.plus(std::time::Duration::from_millis(14)));
        e.parent_execution_id = Some("01933b6e-0000-7000-8000-000000000001".into());
        e
    }

    /// Writes the row into a table of the same shape and reads it back.
    fn round_trip(row: &ExecutionRow) -> Execution {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE executions (id, org, workflow_id, status, mode, created_at, \
             deadline, duration, parent_id, body)",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO executions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params![
                row.id,
                row.org,
                row.workflow_id,
                row.status,
                row.mode,
                row.created_at,
                row.deadline,
                row.duration,
                row.parent_id,
                row.body
            ],
        )
        .unwrap();
        conn.query_row(concat!("SELECT ", columns!(), " FROM executions"), [], read)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn the_body_does_not_repeat_the_columns_and_reads_back_whole() {
        let e = execution();
        let row = ExecutionRow::of(&e).unwrap();
        assert_eq!(row.status, ExecutionStatus::Success.as_str());
        assert_eq!(row.mode, ExecutionMode::Webhook.as_str());
        assert_eq!(row.unfinished, 0);
        assert!(matches!(&row.id, SqlValue::Blob(b) if b.len() == 16));
        assert!(matches!(&row.parent_id, SqlValue::Blob(b) if b.len() == 16));
        let text = match &row.body {
            Packed::Text(t) => t.clone(),
            Packed::Bytes(b) => String::from_utf8(pack::unpack(b).unwrap()).unwrap(),
        };
        for repeated in [
            "5632-7101",
            "5624-748a",
            "\"o1\"",
            "\"success\"",
            "webhook",
            "10:0",
            "null",
        ] {
            assert!(!text.contains(repeated), "{repeated} in the body {text}");
        }
        assert_eq!(round_trip(&row), e);
    }

    #[test]
    fn folded_runs_read_back_whole() {
        let e = execution();
        let mut run = NodeRun::new(&e.id, "hook");
        run.status = crate::model::NodeRunStatus::Success;
        run.attempts = 2;
        run.started_at = Some(e.created_at.plus(std::time::Duration::from_millis(3)));
        run.finished_at = Some(e.created_at.plus(std::time::Duration::from_millis(9)));
        run.duration_ms = Some(6);
        run.arrived = 1;
        let runs = vec![run, NodeRun::new(&e.id, "set")];
        let packed = folded_runs(&e, &runs).unwrap();
        let text = String::from_utf8(pack::unpack(&packed).unwrap()).unwrap();
        assert!(
            !text.contains("5632-7101") && !text.contains("null"),
            "{text}"
        );
        assert!(text.contains("\"startedAt\":3"), "{text}");
        assert_eq!(unfolded_runs(&e, &packed).unwrap(), runs);
    }

    #[test]
    fn a_body_written_before_schema_9_reads_with_the_columns_winning() {
        let e = execution();
        let mut row = ExecutionRow::of(&e).unwrap();
        let mut old = e.clone();
        old.status = ExecutionStatus::Running;
        row.body = Packed::Text(serde_json::to_string(&old).unwrap());
        assert_eq!(round_trip(&row), e);
    }
}
