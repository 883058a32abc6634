-- Throttle (SPEC §9): the start times assigned per (workflow, key); rows older than the period
-- are deleted as new ones come.
CREATE TABLE throttle_starts (
    org          TEXT    NOT NULL,
    workflow_id  TEXT    NOT NULL,
    gate_key     TEXT    NOT NULL,
    execution_id TEXT    NOT NULL,
    start_at     INTEGER NOT NULL,
    PRIMARY KEY (org, workflow_id, gate_key, execution_id)
) WITHOUT ROWID;
CREATE INDEX throttle_starts_by_time ON throttle_starts (org, workflow_id, gate_key, start_at);

-- Debounce (SPEC §9): the latest start per (workflow, key).
CREATE TABLE debounce_latest (
    org          TEXT    NOT NULL,
    workflow_id  TEXT    NOT NULL,
    gate_key     TEXT    NOT NULL,
    execution_id TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (org, workflow_id, gate_key)
) WITHOUT ROWID;
