-- Circuits per organization (SPEC §10: listed, read, reset and configured per key). A
-- circuit's state is transient (failures since the last success), so the rows of the old
-- table, keyed by "org/key", are not carried over: every circuit starts closed.
DROP TABLE circuits;
CREATE TABLE circuits (
    org     TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    version INTEGER NOT NULL,
    body    TEXT    NOT NULL,               -- the CircuitState, with its configuration
    PRIMARY KEY (org, key)
) WITHOUT ROWID;

-- Trends of workflows (SPEC §10): counters per hour and per day of createdAt, added to in the
-- write that makes an execution terminal. Executions that ended before this migration are
-- not counted.
CREATE TABLE trends (
    org         TEXT    NOT NULL,
    workflow_id TEXT    NOT NULL,
    interval    TEXT    NOT NULL,           -- 'hour' | 'day'
    start       INTEGER NOT NULL,           -- the interval's start, ms since the epoch
    body        TEXT    NOT NULL,           -- the TrendCounters
    PRIMARY KEY (org, workflow_id, interval, start)
) WITHOUT ROWID;
