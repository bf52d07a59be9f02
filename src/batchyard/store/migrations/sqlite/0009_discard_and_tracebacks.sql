-- A dead batch can be discarded: `discarded` is a terminal status of its own (not
-- `completed`, which would claim its items were delivered), and the flush history records the
-- discard with the items it dropped. Failed flushes and iterator steps keep their traceback
-- (the end of it, where the cause is), for the operator who reads the history.
-- SQLite cannot change a CHECK constraint in place: both tables are rebuilt.

CREATE TABLE batchyard_batches_new (
    batch_no        INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id        TEXT    NOT NULL UNIQUE,
    base_id         TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN
                    ('accumulating', 'flushing', 'completed', 'dead', 'discarded')),
    handler         TEXT    NOT NULL,
    max_batch_size  INTEGER NOT NULL CHECK (max_batch_size > 0),
    flush_interval  REAL,
    max_attempts    INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT    NOT NULL,
    flush_reason    TEXT,
    last_error      TEXT,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    flush_requested_at REAL,
    completed_at    REAL,
    UNIQUE (base_id, sequence)
);
-- the numbers are kept (items are keyed by them), and so is the highest number ever given:
-- a number of a batch pruned since must never be given again
INSERT INTO sqlite_sequence (name, seq)
SELECT 'batchyard_batches_new', seq FROM sqlite_sequence WHERE name = 'batchyard_batches';
INSERT INTO batchyard_batches_new (batch_no, batch_id, base_id, sequence, status, handler,
    max_batch_size, flush_interval, max_attempts, attempts, idempotency_key, flush_reason,
    last_error, created_at, updated_at, flush_requested_at, completed_at)
SELECT batch_no, batch_id, base_id, sequence, status, handler, max_batch_size,
    flush_interval, max_attempts, attempts, idempotency_key, flush_reason, last_error,
    created_at, updated_at, flush_requested_at, completed_at
FROM batchyard_batches ORDER BY batch_no;
DROP TABLE batchyard_batches;
ALTER TABLE batchyard_batches_new RENAME TO batchyard_batches;
CREATE UNIQUE INDEX batchyard_batches_open ON batchyard_batches (base_id)
    WHERE status = 'accumulating';
CREATE INDEX batchyard_batches_status ON batchyard_batches (status, completed_at);

CREATE TABLE batchyard_flushes_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id     TEXT    NOT NULL,
    base_id      TEXT    NOT NULL,
    sequence     INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    outcome      TEXT    NOT NULL
                 CHECK (outcome IN ('completed', 'partial', 'failed', 'discarded')),
    item_count   INTEGER NOT NULL,
    failed_count INTEGER NOT NULL,
    error        TEXT,
    worker_id    TEXT,
    started_at   REAL    NOT NULL,
    duration     REAL    NOT NULL,
    traceback    TEXT,
    UNIQUE (batch_id, attempt)
);
INSERT INTO sqlite_sequence (name, seq)
SELECT 'batchyard_flushes_new', seq FROM sqlite_sequence WHERE name = 'batchyard_flushes';
INSERT INTO batchyard_flushes_new (id, batch_id, base_id, sequence, attempt, reason, outcome,
    item_count, failed_count, error, worker_id, started_at, duration)
SELECT id, batch_id, base_id, sequence, attempt, reason, outcome, item_count, failed_count,
    error, worker_id, started_at, duration
FROM batchyard_flushes ORDER BY id;
DROP TABLE batchyard_flushes;
ALTER TABLE batchyard_flushes_new RENAME TO batchyard_flushes;
CREATE INDEX batchyard_flushes_base ON batchyard_flushes (base_id, id);

ALTER TABLE batchyard_iterators ADD COLUMN last_traceback TEXT;
