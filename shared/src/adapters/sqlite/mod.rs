//! The embedded default: the [`Store`](crate::ports::Store) and the durable
//! [`JobQueue`](crate::ports::JobQueue) on one SQLite file (`<data dir>/weconnect.db`).
//!
//! - WAL mode, `synchronous=NORMAL`, a busy timeout: readers run alongside the one writer.
//! - rusqlite is blocking, so no port call touches SQLite on the async runtime: writes go to
//!   one writer thread that owns the writer connection and commits whatever calls are queued
//!   together (group commit, each call atomic in its own savepoint); reads run on a small
//!   pool of read-only connections, on tokio's blocking pool (`spawn_blocking`), except
//!   lookups by key, which take microseconds and run on the calling thread.
//! - Every statement is `prepare_cached`; nested data is JSON text; every query has an index.
//! - Checkpoints (copying the WAL back into the database file) run on their own thread and
//!   connection every [`CHECKPOINT_EVERY`], beside the writer; the writer only finishes them
//!   (the last few pages) when the WAL reaches [`WAL_RESTART_PAGES`], so the WAL stays small
//!   and commits stay short.
//! - The schema is migrated at open (`PRAGMA user_version`), idempotently.

mod body;
mod cursor;
mod execution_row;
mod migrations;
mod queue;
mod store;

#[cfg(test)]
mod store_tests;

pub use queue::SqliteQueue;
pub use store::SqliteStore;

use crate::ports::{Clock, QueueError, StoreError, SystemClock};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;
use tokio::sync::oneshot;

/// The database file inside the data folder.
pub const DB_FILE_NAME: &str = "weconnect.db";

/// Read-only connections kept open beside the writer.
const READERS: usize = 4;
/// A reader's page cache (KiB, as SQLite's negative `cache_size`): small, since a read after
/// any write starts from an empty cache anyway (WAL mode), and a large read (all children of a
/// map) would otherwise leave each reader holding the full writer-sized cache.
const READER_CACHE_KIB: i64 = -2_000;
/// How long a connection waits for a lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;
/// How often the checkpoint thread copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL size (pages) at which the writer checkpoints the rest and the WAL starts over.
const WAL_RESTART_PAGES: i64 = 1000;

/// Opening the database failed.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the data folder {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("schema migration: {0}")]
    Migration(String),
}

/// Opens (creating when needed) `data_dir/weconnect.db` with the system clock.
pub fn open(data_dir: &Path) -> Result<(Arc<SqliteStore>, Arc<SqliteQueue>), SqliteError> {
    std::fs::create_dir_all(data_dir).map_err(|source| SqliteError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    open_file(&data_dir.join(DB_FILE_NAME))
}

/// Opens (creating when needed) the database file at `path` with the system clock.
pub fn open_file(path: &Path) -> Result<(Arc<SqliteStore>, Arc<SqliteQueue>), SqliteError> {
    open_with_clock(path, Arc::new(SystemClock))
}

/// Opens the database file at `path`; the queue reads time (delays, visibility) from `clock`.
pub fn open_with_clock(
    path: &Path,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<SqliteStore>, Arc<SqliteQueue>), SqliteError> {
    let db = Arc::new(Db::open(path)?);
    Ok((
        Arc::new(SqliteStore::new(db.clone())),
        Arc::new(SqliteQueue::new(db, clock)),
    ))
}

/// The size of the database file at `path` once its write-ahead log is copied into it and
/// truncated (benchmarks and tests measure the footprint with it). Retries while another
/// connection is busy.
pub fn checkpointed_size(path: &Path) -> Result<u64, SqliteError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    for _ in 0..50 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| SqliteError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Why a database call failed, inside the adapter. Converted to the port's errors at the edge.
#[derive(Debug)]
pub(crate) enum Fail {
    Sql(rusqlite::Error),
    Json(serde_json::Error),
    /// A logical outcome the port defines (conflict, invalid cursor).
    Store(StoreError),
    /// The blocking task died.
    Task(String),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<serde_json::Error> for Fail {
    fn from(e: serde_json::Error) -> Self {
        Fail::Json(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Store(e) => e,
            Fail::Sql(e) => StoreError::Backend(format!("sqlite: {e}")),
            Fail::Json(e) => StoreError::Backend(format!("stored JSON: {e}")),
            Fail::Task(e) => StoreError::Backend(e),
        }
    }
}

impl From<Fail> for QueueError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Store(e) => QueueError::Backend(e.to_string()),
            Fail::Sql(e) => QueueError::Backend(format!("sqlite: {e}")),
            Fail::Json(e) => QueueError::Backend(format!("stored JSON: {e}")),
            Fail::Task(e) => QueueError::Backend(e),
        }
    }
}

/// The connections to one database file: one writer thread, a few readers.
pub(crate) struct Db {
    writes: mpsc::Sender<Box<dyn WriteJob>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Dropped with the `Db`: the checkpoint thread stops.
    _stop_checkpoints: mpsc::Sender<()>,
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic inside a closure drops its transaction (rolled back): the connection is sound.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -16_000)?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    Ok(())
}

/// A file created before incremental auto-vacuum existed is rewritten once with it (VACUUM:
/// the only way to switch an existing file; it takes a while on a large one).
fn incremental_vacuum_on(conn: &Connection, path: &Path) -> Result<(), SqliteError> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode != 2 {
        tracing::info!(path = %path.display(), "compacting the database once to turn on incremental auto-vacuum");
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.execute_batch("VACUUM")?;
    }
    Ok(())
}

/// One port call's write, queued for the writer thread.
trait WriteJob: Send {
    /// Runs inside the batch's transaction; `true` when it succeeded and its writes stay.
    fn run(&mut self, conn: &Connection) -> bool;
    /// After the batch: hands the caller its result, or the batch's commit failure.
    fn finish(self: Box<Self>, committed: Result<(), &str>);
}

struct Op<T, F> {
    f: Option<F>,
    result: Option<Result<T, Fail>>,
    reply: oneshot::Sender<Result<T, Fail>>,
}

impl<T, F> WriteJob for Op<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, Fail> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = match self.f.take() {
            Some(f) => catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(Fail::Task("sqlite write panicked".into()))),
            None => Err(Fail::Task("sqlite write ran twice".into())),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), &str>) {
        let result = match committed {
            Ok(()) => self
                .result
                .unwrap_or_else(|| Err(Fail::Task("sqlite write never ran".into()))),
            Err(e) => Err(Fail::Task(e.to_string())),
        };
        // The caller may have gone away (a dropped future): nothing to tell.
        let _ = self.reply.send(result);
    }
}

/// Most port calls queued behind each other that share one commit.
const MAX_BATCH: usize = 256;

/// The writer thread: takes every write waiting in the channel and runs them in one
/// `BEGIN IMMEDIATE` transaction, each inside its own savepoint (group commit). Each call
/// stays atomic on its own (a failed call rolls back to its savepoint) and learns its
/// result only once the batch is committed.
fn writer(conn: Connection, jobs: mpsc::Receiver<Box<dyn WriteJob>>) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = run_batch(&conn, &mut batch).map_err(|e| format!("sqlite: {e}"));
        for job in batch.drain(..) {
            job.finish(outcome.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
}

/// The checkpoint thread: a passive checkpoint (it never waits for, nor blocks, the writer
/// or the readers) every [`CHECKPOINT_EVERY`] until the `Db` is dropped.
fn checkpoints(conn: Connection, stop: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(e) = done {
            tracing::warn!(error = %e, "sqlite checkpoint failed");
        }
    }
}

/// Runs `f` in one read transaction on `conn`.
fn read_in<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, Fail>,
) -> Result<T, Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

fn exec(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), rusqlite::Error> {
    exec(conn, "BEGIN IMMEDIATE")?;
    let ran = (|| {
        if let [only] = batch {
            // Alone: the transaction is its savepoint.
            if !only.run(conn) {
                exec(conn, "ROLLBACK")?;
                return Ok(false);
            }
            return Ok(true);
        }
        for job in batch.iter_mut() {
            exec(conn, "SAVEPOINT op")?;
            if !job.run(conn) {
                exec(conn, "ROLLBACK TO op")?;
            }
            exec(conn, "RELEASE op")?;
        }
        Ok(true)
    })();
    let result = match ran {
        Ok(false) => Ok(()),
        Ok(true) => exec(conn, "COMMIT"),
        Err(e) => Err(e),
    };
    if result.is_err() && !conn.is_autocommit() {
        let _ = exec(conn, "ROLLBACK");
    }
    result
}

impl Db {
    fn open(path: &Path) -> Result<Self, SqliteError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Space freed by deletions goes back to the file system (the cleanup run's
        // `reclaim_space`): set before the first table of a new file, else see below.
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if pages == 0 {
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(SqliteError::Migration(format!(
                "cannot switch {} to WAL mode (got {mode})",
                path.display()
            )));
        }
        configure(&conn)?;
        migrations::apply(&mut conn)?;
        incremental_vacuum_on(&conn, path)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(path, flags)?;
            configure(&reader)?;
            reader.pragma_update(None, "query_only", "ON")?;
            reader.pragma_update(None, "cache_size", READER_CACHE_KIB)?;
            readers.push(Mutex::new(reader));
        }
        // The checkpoint thread copies the WAL while the writer goes on, but a WAL only starts
        // over once a checkpoint caught up with the last commit, which under steady writes
        // only the writer itself can do between two batches: it checkpoints what is left
        // (little: the thread copied the rest) whenever the WAL reaches WAL_RESTART_PAGES.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_RESTART_PAGES)?;
        let checkpointer = Connection::open_with_flags(path, flags)?;
        configure(&checkpointer)?;
        let spawn_failed = |source| SqliteError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (stop_checkpoints, stopped) = mpsc::channel();
        std::thread::Builder::new()
            .name("weconnect-sqlite-checkpoint".into())
            .spawn(move || checkpoints(checkpointer, stopped))
            .map_err(spawn_failed)?;
        let (writes, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("weconnect-sqlite-writer".into())
            .spawn(move || writer(conn, jobs))
            .map_err(spawn_failed)?;
        Ok(Self {
            writes,
            readers,
            next_reader: AtomicUsize::new(0),
            _stop_checkpoints: stop_checkpoints,
        })
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(guard) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return guard;
            }
        }
        lock(&self.readers[start % self.readers.len()])
    }

    /// Runs `f` as one atomic write on the writer thread (see [`writer`]); its result comes
    /// back once committed. Nothing of `f` stays when it returns `Err`.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, Fail>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Fail> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let op = Op {
            f: Some(f),
            result: None,
            reply,
        };
        self.writes
            .send(Box::new(op))
            .map_err(|_| Fail::Task("the sqlite writer has stopped".into()))?;
        result
            .await
            .map_err(|_| Fail::Task("the sqlite writer has stopped".into()))?
    }

    /// Runs `f` in one read transaction (a consistent snapshot) on a reader connection,
    /// off the async runtime.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, Fail>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Fail> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || read_in(&mut db.reader(), f))
            .await
            .map_err(|e| Fail::Task(format!("sqlite task failed: {e}")))?
    }

    /// [`read`](Self::read) for a lookup by primary key (a handful of cached pages, a few
    /// microseconds): runs on the calling thread when a reader connection is free, which
    /// saves two thread hand-offs; otherwise as `read`.
    pub(crate) async fn read_key<T, F>(self: &Arc<Self>, f: F) -> Result<T, Fail>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Fail> + Send + 'static,
    {
        for reader in &self.readers {
            if let Ok(mut conn) = reader.try_lock() {
                return catch_unwind(AssertUnwindSafe(|| read_in(&mut conn, f)))
                    .unwrap_or_else(|_| Err(Fail::Task("sqlite read panicked".into())));
            }
        }
        self.read(f).await
    }
}

/// A folder under the system temp dir, removed on drop (tests).
#[cfg(test)]
pub(crate) struct TestDir(pub PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new() -> Self {
        let path = std::env::temp_dir().join(format!("weconnect-sqlite-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
    pub(crate) fn db(&self) -> PathBuf {
        self.0.join(DB_FILE_NAME)
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_the_folder_and_migrates_idempotently() {
        let dir = TestDir::new();
        let data = dir.0.join("nested").join("data");
        {
            let _ = open(&data).unwrap();
        }
        assert!(data.join(DB_FILE_NAME).exists());
        // Reopening applies nothing twice.
        let _ = open(&data).unwrap();
        let conn = Connection::open(data.join(DB_FILE_NAME)).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, migrations::MIGRATIONS.len() as i64);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    /// Writes queued behind a slow one share a batch; a failing or panicking write in that
    /// batch rolls back only its own changes.
    #[tokio::test]
    async fn group_commit_keeps_each_write_atomic() {
        let dir = TestDir::new();
        let db = Arc::new(Db::open(&dir.db()).unwrap());
        let insert = |conn: &Connection, key: &str| -> Result<(), Fail> {
            conn.prepare_cached(
                "INSERT INTO circuits (org, key, version, body) VALUES ('o', ?1, 1, '{}')",
            )?
            .execute([key])?;
            Ok(())
        };
        let slow = db.write(|_| {
            std::thread::sleep(Duration::from_millis(50));
            Ok(())
        });
        let mut writes = Vec::new();
        for i in 0..30 {
            writes.push(db.write(move |conn| {
                insert(conn, &format!("k{i}"))?;
                match i % 3 {
                    0 => Ok(i),
                    1 => Err(Fail::Store(StoreError::Conflict(format!("no {i}")))),
                    _ => panic!("write {i} panics after writing"),
                }
            }));
        }
        let (slow, results) = tokio::join!(slow, futures::future::join_all(writes));
        slow.unwrap();
        for (i, r) in results.into_iter().enumerate() {
            match (i % 3, r) {
                (0, Ok(n)) => assert_eq!(n, i),
                (1, Err(Fail::Store(StoreError::Conflict(m)))) => assert_eq!(m, format!("no {i}")),
                (2, Err(Fail::Task(m))) => assert!(m.contains("panicked"), "{m}"),
                (_, other) => panic!("write {i}: unexpected {other:?}"),
            }
        }
        let keys: Vec<String> = db
            .read(|conn| {
                let mut stmt =
                    conn.prepare("SELECT key FROM circuits ORDER BY length(key), key")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .await
            .unwrap();
        let expected: Vec<String> = (0..30)
            .filter(|i| i % 3 == 0)
            .map(|i| format!("k{i}"))
            .collect();
        assert_eq!(keys, expected);
        // The writer survived the panics.
        db.write(move |conn| insert(conn, "after")).await.unwrap();
    }

    /// Below WAL_RESTART_PAGES the writer does not checkpoint; the checkpoint thread copies
    /// the WAL into the database file.
    #[tokio::test]
    async fn the_checkpoint_thread_moves_the_wal_into_the_database_file() {
        let dir = TestDir::new();
        let db = Arc::new(Db::open(&dir.db()).unwrap());
        let before = std::fs::metadata(dir.db()).unwrap().len();
        db.write(|conn| {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO circuits (org, key, version, body) VALUES ('o', ?1, 1, ?2)",
            )?;
            for i in 0..500 {
                stmt.execute(rusqlite::params![format!("k{i}"), "x".repeat(2000)])?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let size = std::fs::metadata(dir.db()).unwrap().len();
            if size >= before + 500 * 2000 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {size} bytes: no checkpoint ran"
            );
            tokio::time::sleep(CHECKPOINT_EVERY).await;
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = TestDir::new();
        {
            let _ = open_file(&dir.db()).unwrap();
        }
        let conn = Connection::open(dir.db()).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        drop(conn);
        match open_file(&dir.db()) {
            Err(SqliteError::Migration(msg)) => assert!(msg.contains("999"), "{msg}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a newer schema must be refused"),
        }
    }
}
