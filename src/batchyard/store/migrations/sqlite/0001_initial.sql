-- Times are Unix epoch seconds (REAL) in both dialects, so one SQL text serves both stores
-- and every time comparison is a plain index range.

CREATE TABLE batchyard_tasks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT    NOT NULL,
    key          TEXT    UNIQUE,
    payload      TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('queued', 'running')),
    due_at       REAL    NOT NULL,   -- queued: run after; running: lease expiry
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    token        INTEGER NOT NULL DEFAULT 0,
    worker_id    TEXT,
    last_error   TEXT,
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL
);
-- The task table holds live work only (done tasks are deleted, dead ones moved out), so the
-- claim is one range scan on due_at: queued tasks that are due and running tasks whose lease
-- has expired are both "due".
CREATE INDEX batchyard_tasks_due ON batchyard_tasks (due_at, id);

CREATE TABLE batchyard_dead_tasks (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL,
    key          TEXT    UNIQUE,
    payload      TEXT    NOT NULL,
    attempts     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    last_error   TEXT,
    created_at   REAL    NOT NULL,
    died_at      REAL    NOT NULL
);

CREATE TABLE batchyard_workers (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL
);

CREATE TABLE batchyard_batch_bases (
    base_id       TEXT PRIMARY KEY,
    next_sequence INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE batchyard_batches (
    batch_id        TEXT    PRIMARY KEY,
    base_id         TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    status          TEXT    NOT NULL
                    CHECK (status IN ('accumulating', 'flushing', 'completed', 'dead')),
    handler         TEXT    NOT NULL,
    max_batch_size  INTEGER NOT NULL CHECK (max_batch_size > 0),
    flush_interval  REAL,
    max_attempts    INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,  -- flush attempts, never reset
    idempotency_key TEXT    NOT NULL,
    flush_reason    TEXT,
    last_error      TEXT,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    flush_requested_at REAL,
    completed_at    REAL,
    UNIQUE (base_id, sequence)
);
-- At most one accumulating batch per base: adds can never split across two open batches.
CREATE UNIQUE INDEX batchyard_batches_open ON batchyard_batches (base_id)
    WHERE status = 'accumulating';
CREATE INDEX batchyard_batches_status ON batchyard_batches (status, completed_at);

CREATE TABLE batchyard_items (
    batch_id TEXT    NOT NULL,
    position INTEGER NOT NULL,
    payload  TEXT    NOT NULL,
    added_at REAL    NOT NULL,
    -- an item has one place in one batch: membership is recorded exactly once
    PRIMARY KEY (batch_id, position)
) WITHOUT ROWID;  -- one B-tree, not a table plus a unique index: one page less per add

-- Items are immutable: a batch's count is its highest position + 1, so an add writes one
-- row and nothing else. Which items are still pending after a partial flush is recorded
-- here; no row for a batch means all of its items are pending (or delivered, once the
-- batch is completed).
CREATE TABLE batchyard_item_failures (
    batch_id TEXT    NOT NULL,
    position INTEGER NOT NULL,
    error    TEXT    NOT NULL,
    PRIMARY KEY (batch_id, position)
) WITHOUT ROWID;

CREATE TABLE batchyard_flushes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id     TEXT    NOT NULL,
    base_id      TEXT    NOT NULL,
    sequence     INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('completed', 'partial', 'failed')),
    item_count   INTEGER NOT NULL,
    failed_count INTEGER NOT NULL,
    error        TEXT,
    worker_id    TEXT,
    started_at   REAL    NOT NULL,
    duration     REAL    NOT NULL,
    -- one recorded outcome per attempt, whatever a stale runner tries
    UNIQUE (batch_id, attempt)
);
CREATE INDEX batchyard_flushes_base ON batchyard_flushes (base_id, id);
