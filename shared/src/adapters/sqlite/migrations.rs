//! Schema migrations, embedded in the binary and applied at open.
//! `PRAGMA user_version` is the number of migrations applied; each one runs in its own
//! transaction together with the version bump, so a crash leaves either all or nothing.
//! A migration is SQL, and where SQL cannot do it, a Rust step run after the SQL in the same
//! transaction.

use super::SqliteError;
use super::body::id_value;
use crate::adapters::log_batch;
use crate::model::ExecutionLog;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, TransactionBehavior, params};

/// What SQL cannot do, run after a migration's SQL in its transaction.
type RustStep = fn(&Connection) -> Result<(), SqliteError>;

pub(crate) struct Migration {
    pub(crate) sql: &'static str,
    then: Option<RustStep>,
}

const fn sql(sql: &'static str) -> Migration {
    Migration { sql, then: None }
}

/// In order; never edit a released one, append a new one.
pub(crate) const MIGRATIONS: &[Migration] = &[
    sql(include_str!("migrations/0001_initial.sql")),
    sql(include_str!("migrations/0002_width.sql")),
    sql(include_str!("migrations/0003_composition.sql")),
    sql(include_str!("migrations/0004_circuits_trends.sql")),
    sql(include_str!("migrations/0005_gates.sql")),
    sql(include_str!("migrations/0006_throttle_debounce.sql")),
    sql(include_str!("migrations/0007_priority.sql")),
    Migration {
        sql: include_str!("migrations/0008_footprint.sql"),
        then: Some(logs_into_batches),
    },
    sql(include_str!("migrations/0009_execution_keys.sql")),
];

pub(crate) fn apply(conn: &mut Connection) -> Result<(), SqliteError> {
    register_id_key(conn)?;
    let known = MIGRATIONS.len() as i64;
    loop {
        // IMMEDIATE: two processes opening the same file migrate one after the other.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > known {
            return Err(SqliteError::Migration(format!(
                "the database has schema version {version}, newer than this build knows ({known})"
            )));
        }
        if version == known {
            return Ok(());
        }
        let index = usize::try_from(version)
            .map_err(|_| SqliteError::Migration(format!("invalid schema version {version}")))?;
        let migration = &MIGRATIONS[index];
        tx.execute_batch(migration.sql)?;
        if let Some(then) = migration.then {
            then(&tx)?;
        }
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

/// `id_key(x)`: what [`id_value`] stores for the id `x` (the 16 bytes of a UUID, else the
/// text itself; NULL and blobs as they are), for migrations that turn id columns into keys.
fn register_id_key(conn: &Connection) -> Result<(), SqliteError> {
    conn.create_scalar_function(
        "id_key",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Text(t) => id_value(&String::from_utf8_lossy(t)),
                other => Value::from(other),
            })
        },
    )?;
    Ok(())
}

/// Migration 8: the rows of `logs` (one per entry, JSON bodies) become `log_batches`, one
/// execution at a time; then `logs` goes.
fn logs_into_batches(tx: &Connection) -> Result<(), SqliteError> {
    let fail = |e: &dyn std::fmt::Display| SqliteError::Migration(format!("moving logs: {e}"));
    let mut insert = tx.prepare(
        "INSERT OR IGNORE INTO log_batches (execution_id, first_id, last_id, body) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut write = |logs: &mut Vec<ExecutionLog>| -> Result<(), SqliteError> {
        for b in log_batch::batches(logs).map_err(|e| fail(&e))? {
            insert.execute(params![
                id_value(&b.execution_id),
                id_value(&b.first_id),
                id_value(&b.last_id),
                b.body
            ])?;
        }
        logs.clear();
        Ok(())
    };
    let mut select = tx.prepare("SELECT org, body FROM logs ORDER BY execution_id, id")?;
    let mut rows = select.query([])?;
    let mut pending: Vec<ExecutionLog> = Vec::new();
    while let Some(row) = rows.next()? {
        let org: String = row.get(0)?;
        let body: String = row.get(1)?;
        let Ok(mut log) = crate::limits::from_stored_json::<ExecutionLog>(&body) else {
            // A damaged entry was already left out of every listing.
            continue;
        };
        log.organization_id = org;
        if pending
            .first()
            .is_some_and(|p| p.execution_id != log.execution_id)
        {
            write(&mut pending)?;
        }
        pending.push(log);
    }
    write(&mut pending)?;
    drop(rows);
    drop(select);
    drop(insert);
    tx.execute_batch("DROP TABLE logs;")?;
    Ok(())
}
