-- Schema version 3: composition (SPEC §8): child executions, their tally at the parent node,
-- and callbacks.

-- Children of an execution, for the `parentExecutionId` list filter.
ALTER TABLE executions ADD COLUMN parent_id TEXT;
CREATE INDEX executions_by_parent ON executions (org, parent_id, created_at, id)
    WHERE parent_id IS NOT NULL;

-- The children a `flow.map` / `flow.subworkflow` node waits for: how many there are, how
-- many may run at once, how many were started and how many reported a terminal status.
-- A child's report is counted in the transaction of its terminal status, which happens once
-- (the move to a terminal status is conditional on an unfinished one).
CREATE TABLE child_tallies (
    execution_id TEXT    NOT NULL,
    node_id      TEXT    NOT NULL,
    org          TEXT    NOT NULL,
    total        INTEGER NOT NULL,
    concurrency  INTEGER NOT NULL,
    started      INTEGER NOT NULL,
    done         INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (execution_id, node_id)
) WITHOUT ROWID;

-- Callbacks of `flow.waitForCallback` nodes, accepted once (also before the node waits).
CREATE TABLE callbacks (
    execution_id TEXT    NOT NULL,
    node_id      TEXT    NOT NULL,
    org          TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    body         TEXT    NOT NULL,          -- the Callback (completed with a body, or failed)
    PRIMARY KEY (execution_id, node_id)
) WITHOUT ROWID;
