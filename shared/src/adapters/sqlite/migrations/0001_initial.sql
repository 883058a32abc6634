-- WeConnect embedded store and queue, schema version 1.
-- Times are integer milliseconds since the epoch; nested data is JSON text (`body`).

-- Current version of every workflow, with the counters the API shows.
CREATE TABLE workflows (
    org              TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    scheduled        INTEGER NOT NULL,   -- 1 when it has a trigger.schedule node
    created_at       INTEGER NOT NULL,
    execution_count  INTEGER NOT NULL DEFAULT 0,
    last_executed_at INTEGER,
    body             TEXT    NOT NULL,   -- the Workflow
    PRIMARY KEY (org, id)
);
CREATE INDEX workflows_by_created ON workflows (org, created_at, id);
CREATE INDEX workflows_scheduled ON workflows (status) WHERE scheduled = 1;

-- Every version ever stored, also of deleted workflows (executions run their version).
CREATE TABLE workflow_versions (
    org     TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    version INTEGER NOT NULL,
    body    TEXT    NOT NULL,
    PRIMARY KEY (org, id, version)
);

-- Webhook ids are unique across the installation.
CREATE TABLE webhooks (
    webhook_id  TEXT NOT NULL PRIMARY KEY,
    org         TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    node_id     TEXT NOT NULL
);
CREATE INDEX webhooks_by_workflow ON webhooks (org, workflow_id);

CREATE TABLE executions (
    id          TEXT    NOT NULL PRIMARY KEY,
    org         TEXT    NOT NULL,
    workflow_id TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    mode        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    deadline    INTEGER NOT NULL,
    duration    INTEGER NOT NULL,
    unfinished  INTEGER NOT NULL,       -- 1 while pending, running or paused
    body        TEXT    NOT NULL        -- the Execution
);
-- Lists newest first, and covers the statistics query.
CREATE INDEX executions_by_created ON executions (org, created_at, id, status, mode, duration);
CREATE INDEX executions_by_workflow ON executions (org, workflow_id, created_at, id);
CREATE INDEX executions_by_status ON executions (org, status, created_at, id);
-- The cleanup run: unfinished executions by deadline.
CREATE INDEX executions_unfinished ON executions (deadline, id) WHERE unfinished = 1;

CREATE TABLE idempotency_keys (
    key          TEXT    NOT NULL PRIMARY KEY,
    execution_id TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE node_runs (
    execution_id TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    org          TEXT NOT NULL,
    body         TEXT NOT NULL,         -- the NodeRun
    PRIMARY KEY (execution_id, node_id)
);

CREATE TABLE logs (
    id           TEXT NOT NULL PRIMARY KEY,   -- UUIDv7: time order
    org          TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    node_id      TEXT,
    level        TEXT NOT NULL,
    body         TEXT NOT NULL               -- the ExecutionLog
);
CREATE INDEX logs_by_execution ON logs (execution_id, id);

CREATE TABLE credentials (
    id         TEXT    NOT NULL PRIMARY KEY,
    org        TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    body       TEXT    NOT NULL              -- the StoredCredential (data sealed)
);
CREATE UNIQUE INDEX credentials_by_name ON credentials (org, name);
CREATE INDEX credentials_by_created ON credentials (org, created_at, id);

CREATE TABLE circuits (
    key     TEXT    NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL,
    body    TEXT    NOT NULL                 -- the CircuitState
);

-- The durable job queue. state: 0 live (waiting, visible or in flight), 2 dead-lettered.
-- In flight = has a receipt and visible_at (the lease end) in the future.
CREATE TABLE queue (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    body          TEXT    NOT NULL,          -- the Job
    visible_at    INTEGER NOT NULL,
    receipt       TEXT,
    receive_count INTEGER NOT NULL DEFAULT 0,
    state         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queue_visible ON queue (state, visible_at, id);
CREATE UNIQUE INDEX queue_receipt ON queue (receipt) WHERE receipt IS NOT NULL;
