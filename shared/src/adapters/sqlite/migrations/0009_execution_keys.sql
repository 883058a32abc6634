-- Schema version 9: compact execution rows (SPEC §14).
-- Ids in keys are 16-byte blobs when they are UUIDs (text otherwise): `id_key()` is
-- `body::id_value`, registered by migrations.rs. The executions table has no rowid (its
-- primary key is the table: one b-tree less, and no rowid in every index entry), its body
-- no longer repeats its columns (rows written before still do; readers take the columns),
-- and the list index keeps only what the lists need (statistics read counters since 8).

CREATE TABLE executions_by_key (
    id             BLOB    NOT NULL PRIMARY KEY,
    org            TEXT    NOT NULL,
    workflow_id    BLOB    NOT NULL,
    status         TEXT    NOT NULL,
    mode           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    deadline       INTEGER NOT NULL,
    duration       INTEGER NOT NULL,
    unfinished     INTEGER NOT NULL,       -- 1 while pending, running or paused
    finished_nodes INTEGER NOT NULL DEFAULT 0,
    parent_id      BLOB,
    body           NOT NULL,               -- the Execution without the fields above, packed or JSON text
    runs           BLOB                    -- a success whose data was dropped: its runs, packed
) WITHOUT ROWID;
INSERT INTO executions_by_key (id, org, workflow_id, status, mode, created_at, deadline,
                               duration, unfinished, finished_nodes, parent_id, body)
    SELECT id_key(id), org, id_key(workflow_id), status, mode, created_at, deadline,
           duration, unfinished, finished_nodes, id_key(parent_id), body
    FROM executions;
DROP TABLE executions;   -- with its indexes and counting triggers (created again below)
ALTER TABLE executions_by_key RENAME TO executions;

CREATE INDEX executions_by_created ON executions (org, created_at, id);
CREATE INDEX executions_by_workflow ON executions (org, workflow_id, created_at, id);
CREATE INDEX executions_by_status ON executions (org, status, created_at, id);
CREATE INDEX executions_unfinished ON executions (deadline, id) WHERE unfinished = 1;
CREATE INDEX executions_by_parent ON executions (org, parent_id, created_at, id)
    WHERE parent_id IS NOT NULL;

-- Node runs keyed by the execution's 16-byte id.
CREATE TABLE node_runs_by_id (
    execution_id BLOB NOT NULL,
    node_id      TEXT NOT NULL,
    org          TEXT NOT NULL,
    body         NOT NULL,                  -- the NodeRun, packed or JSON text
    PRIMARY KEY (execution_id, node_id)
) WITHOUT ROWID;
INSERT INTO node_runs_by_id (execution_id, node_id, org, body)
    SELECT id_key(execution_id), node_id, org, body FROM node_runs;
DROP TABLE node_runs;
ALTER TABLE node_runs_by_id RENAME TO node_runs;

-- The counting triggers of migration 8, unchanged (they went with the old table).
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
