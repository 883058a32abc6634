-- Priorities (SPEC §9): jobs of higher-priority executions are taken first (0 high, 1 normal,
-- 2 low), first in, first out within one.
ALTER TABLE queue ADD COLUMN priority INTEGER NOT NULL DEFAULT 1;
CREATE INDEX queue_by_priority ON queue (state, priority, visible_at, id);
