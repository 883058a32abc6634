-- Schema version 2: the work per node does not grow with the width of the graph.

-- Finished node runs, counted per execution as they finish: the check "is every node
-- finished?" reads one number instead of every run.
ALTER TABLE executions ADD COLUMN finished_nodes INTEGER NOT NULL DEFAULT 0;
UPDATE executions SET finished_nodes = (
    SELECT count(*) FROM node_runs r
    WHERE r.execution_id = executions.id
      AND json_extract(r.body, '$.status') IN ('success', 'failed', 'skipped', 'cancelled')
) WHERE unfinished = 1;

-- Arrivals at joins (children with several parents), one row per (child, parent): an
-- arrival is one insert whatever the number of parents (before, the run's body held the
-- list of parents, rewritten whole at every arrival). The body keeps the counts.
CREATE TABLE arrivals (
    execution_id TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    parent       TEXT NOT NULL,
    PRIMARY KEY (execution_id, node_id, parent)
) WITHOUT ROWID;
INSERT OR IGNORE INTO arrivals (execution_id, node_id, parent)
    SELECT r.execution_id, r.node_id, a.value
    FROM node_runs r, json_each(r.body, '$.arrived') a
    WHERE json_type(r.body, '$.arrived') = 'array'
      AND json_extract(r.body, '$.status') = 'pending';
