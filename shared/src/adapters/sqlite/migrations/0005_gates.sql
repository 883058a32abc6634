-- Concurrency gates (SPEC §9): per (workflow, key) the executions holding a slot and the line
-- of those waiting for one (first in, first out by creation time).
CREATE TABLE gate_slots (
    org          TEXT NOT NULL,
    workflow_id  TEXT NOT NULL,
    gate_key     TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (org, workflow_id, gate_key, execution_id)
) WITHOUT ROWID;
CREATE TABLE gate_queue (
    org          TEXT    NOT NULL,
    workflow_id  TEXT    NOT NULL,
    gate_key     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    execution_id TEXT    NOT NULL,
    PRIMARY KEY (org, workflow_id, gate_key, created_at, execution_id)
) WITHOUT ROWID;
