//! Schema migrations, embedded in the binary and applied at open.
//! `PRAGMA user_version` is the number of migrations applied; each one runs in its own
//! transaction together with the version bump, so a crash leaves either all or nothing.

use super::SqliteError;
use rusqlite::{Connection, TransactionBehavior};

/// In order; never edit a released one, append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_width.sql"),
    include_str!("migrations/0003_composition.sql"),
    include_str!("migrations/0004_circuits_trends.sql"),
    include_str!("migrations/0005_gates.sql"),
    include_str!("migrations/0006_throttle_debounce.sql"),
    include_str!("migrations/0007_priority.sql"),
];

pub(crate) fn apply(conn: &mut Connection) -> Result<(), SqliteError> {
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
        tx.execute_batch(MIGRATIONS[index])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}
