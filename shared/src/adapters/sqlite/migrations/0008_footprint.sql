-- Schema version 8: the storage footprint (SPEC §14).
-- From now on the bodies of executions and node runs are packed (adapters/pack: zstd with a
-- built-in dictionary); rows written before stay plain JSON text and are read as they are.

-- Node runs keyed by (execution, node) alone: without a rowid, the table is its own index
-- (before, a second b-tree repeated both ids for every run).
CREATE TABLE node_runs_by_key (
    execution_id TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    org          TEXT NOT NULL,
    body         NOT NULL,                  -- the NodeRun, packed or JSON text
    PRIMARY KEY (execution_id, node_id)
) WITHOUT ROWID;
INSERT INTO node_runs_by_key (execution_id, node_id, org, body)
    SELECT execution_id, node_id, org, body FROM node_runs;
DROP TABLE node_runs;
ALTER TABLE node_runs_by_key RENAME TO node_runs;

-- Logs of one execution stored together: one row per batch the engine writes at once (see
-- adapters/log_batch.rs), the execution's id once, entry ids as offsets. Ids are 16-byte
-- blobs when they are UUIDs (text otherwise). The rows of `logs` are moved here by the Rust
-- part of this migration (migrations.rs), which then drops that table.
CREATE TABLE log_batches (
    execution_id BLOB NOT NULL,
    first_id     BLOB NOT NULL,
    last_id      BLOB NOT NULL,
    body         BLOB NOT NULL,
    PRIMARY KEY (execution_id, first_id)
) WITHOUT ROWID;

-- Statistics counters per organization and UTC day of createdAt, as on DynamoDB, kept by
-- triggers on every insert, status change and delete of an execution (the cleanup run's
-- prune included): `GET /executions/statistics` reads days, not executions.
CREATE TABLE execution_counts (
    org          TEXT    NOT NULL,
    day          INTEGER NOT NULL,          -- the day's start, ms since the epoch
    status       TEXT    NOT NULL,
    mode         TEXT    NOT NULL,
    count        INTEGER NOT NULL,
    duration_sum INTEGER NOT NULL,          -- of the finished ones (unfinished = 0)
    PRIMARY KEY (org, day, status, mode)
) WITHOUT ROWID;

-- The duration histogram of finished executions, over model::trends::BUCKET_BOUNDS_MS: a
-- duration's bucket is the number of bounds below it (a unit test checks the two agree).
CREATE TABLE duration_bounds (bound INTEGER NOT NULL PRIMARY KEY);
INSERT INTO duration_bounds (bound) VALUES
    (5), (10), (20), (30), (50), (75), (100), (150), (200), (300), (500), (750), (1000), (1500),
    (2000), (3000), (5000), (7500), (10000), (15000), (20000), (30000), (45000), (60000),
    (90000), (120000), (180000), (300000), (450000), (600000), (900000), (1200000), (1800000),
    (2700000), (3600000), (7200000);
CREATE TABLE duration_counts (
    org    TEXT    NOT NULL,
    day    INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (org, day, bucket)
) WITHOUT ROWID;

INSERT INTO execution_counts (org, day, status, mode, count, duration_sum)
    SELECT org, created_at / 86400000 * 86400000, status, mode, count(*),
           total(CASE WHEN unfinished = 0 THEN duration ELSE 0 END)
    FROM executions GROUP BY 1, 2, 3, 4;
INSERT INTO duration_counts (org, day, bucket, count)
    SELECT org, created_at / 86400000 * 86400000,
           (SELECT count(*) FROM duration_bounds WHERE bound < duration), count(*)
    FROM executions WHERE unfinished = 0 GROUP BY 1, 2, 3;

CREATE TRIGGER executions_counted_in AFTER INSERT ON executions
BEGIN
    INSERT INTO execution_counts (org, day, status, mode, count, duration_sum)
        VALUES (NEW.org, NEW.created_at / 86400000 * 86400000, NEW.status, NEW.mode, 1,
                CASE WHEN NEW.unfinished = 0 THEN NEW.duration ELSE 0 END)
        ON CONFLICT (org, day, status, mode) DO UPDATE
        SET count = count + 1, duration_sum = duration_sum + excluded.duration_sum;
    INSERT INTO duration_counts (org, day, bucket, count)
        SELECT NEW.org, NEW.created_at / 86400000 * 86400000,
               (SELECT count(*) FROM duration_bounds WHERE bound < NEW.duration), 1
        WHERE NEW.unfinished = 0
        ON CONFLICT (org, day, bucket) DO UPDATE SET count = count + 1;
END;

CREATE TRIGGER executions_counted_out AFTER DELETE ON executions
BEGIN
    UPDATE execution_counts
        SET count = count - 1,
            duration_sum = duration_sum - CASE WHEN OLD.unfinished = 0 THEN OLD.duration ELSE 0 END
        WHERE org = OLD.org AND day = OLD.created_at / 86400000 * 86400000
          AND status = OLD.status AND mode = OLD.mode;
    UPDATE duration_counts SET count = count - 1
        WHERE OLD.unfinished = 0 AND org = OLD.org
          AND day = OLD.created_at / 86400000 * 86400000
          AND bucket = (SELECT count(*) FROM duration_bounds WHERE bound < OLD.duration);
END;

CREATE TRIGGER executions_counted_again AFTER UPDATE OF status, mode, duration, unfinished ON executions
WHEN OLD.status IS NOT NEW.status OR OLD.mode IS NOT NEW.mode
  OR OLD.duration IS NOT NEW.duration OR OLD.unfinished IS NOT NEW.unfinished
BEGIN
    UPDATE execution_counts
        SET count = count - 1,
            duration_sum = duration_sum - CASE WHEN OLD.unfinished = 0 THEN OLD.duration ELSE 0 END
        WHERE org = OLD.org AND day = OLD.created_at / 86400000 * 86400000
          AND status = OLD.status AND mode = OLD.mode;
    UPDATE duration_counts SET count = count - 1
        WHERE OLD.unfinished = 0 AND org = OLD.org
          AND day = OLD.created_at / 86400000 * 86400000
          AND bucket = (SELECT count(*) FROM duration_bounds WHERE bound < OLD.duration);
    INSERT INTO execution_counts (org, day, status, mode, count, duration_sum)
        VALUES (NEW.org, NEW.created_at / 86400000 * 86400000, NEW.status, NEW.mode, 1,
                CASE WHEN NEW.unfinished = 0 THEN NEW.duration ELSE 0 END)
        ON CONFLICT (org, day, status, mode) DO UPDATE
        SET count = count + 1, duration_sum = duration_sum + excluded.duration_sum;
    INSERT INTO duration_counts (org, day, bucket, count)
        SELECT NEW.org, NEW.created_at / 86400000 * 86400000,
               (SELECT count(*) FROM duration_bounds WHERE bound < NEW.duration), 1
        WHERE NEW.unfinished = 0
        ON CONFLICT (org, day, bucket) DO UPDATE SET count = count + 1;
END;
