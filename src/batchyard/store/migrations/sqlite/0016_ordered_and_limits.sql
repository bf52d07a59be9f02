-- Ordered bases and handler limits, both kept by the claim.
-- * A task may wait for another: `after_key` names the key of a task that must be gone (done,
--   or discarded from the dead letters) before this one is claimed. The flushes of an ordered
--   base each wait for the flush of the batch before. Kept by the dead letters too, so that a
--   redriven task waits as it did.
-- * A task may be run by a handler whose limits hold across the fleet: `handler` names it
--   (flush tasks carry their batch's handler). A handler with a row in
--   batchyard_handler_limits is claimed only while it has room: fewer running tasks than its
--   concurrency, fewer starts in the last `rate_seconds` than `rate_count`. The starts are
--   kept in batchyard_handler_starts, one per claim (a task and its fencing token).
ALTER TABLE batchyard_tasks ADD COLUMN after_key TEXT;
ALTER TABLE batchyard_tasks ADD COLUMN handler TEXT;
ALTER TABLE batchyard_dead_tasks ADD COLUMN after_key TEXT;
ALTER TABLE batchyard_dead_tasks ADD COLUMN handler TEXT;
-- (No index on `handler`: every flush task carries one, and an index on it is written by
-- every flush; the limited claim walks the due tasks instead.)

-- 1 when the base's batches are handed over in sequence order (an integer in both dialects,
-- so that one SQL text compares it)
ALTER TABLE batchyard_batches ADD COLUMN ordered INTEGER NOT NULL DEFAULT 0;

CREATE TABLE batchyard_handler_limits (
    handler      TEXT PRIMARY KEY,
    concurrency  INTEGER CHECK (concurrency > 0),
    rate_count   INTEGER CHECK (rate_count > 0),
    rate_seconds REAL CHECK (rate_seconds > 0),
    updated_at   REAL NOT NULL
);

CREATE TABLE batchyard_handler_starts (
    task_id    INTEGER NOT NULL,
    token      INTEGER NOT NULL,
    handler    TEXT NOT NULL,
    started_at REAL NOT NULL,
    PRIMARY KEY (task_id, token)
);
CREATE INDEX batchyard_handler_starts_recent ON batchyard_handler_starts (handler, started_at);
