-- Bulk jobs and the data they import and export. Things and relationships are upserted on
-- (ns, id), so a replayed chunk never duplicates. A job's items live in its chunk tasks;
-- its errors and results live in rows of their own, so a job of a million items stays
-- cheap to read and is paged.

CREATE TABLE batchyard_things (
    ns          TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT,
    data        TEXT NOT NULL DEFAULT '{}',
    content     TEXT,
    visibility  TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (ns, id)
) WITHOUT ROWID;

CREATE TABLE batchyard_relationships (
    ns          TEXT NOT NULL,
    id          TEXT NOT NULL,
    type        TEXT NOT NULL,
    from_ns     TEXT NOT NULL,
    from_id     TEXT NOT NULL,
    to_ns       TEXT NOT NULL,
    to_id       TEXT NOT NULL,
    data        TEXT NOT NULL DEFAULT '{}',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (ns, id)
) WITHOUT ROWID;
CREATE INDEX batchyard_relationships_from ON batchyard_relationships (from_ns, from_id);
CREATE INDEX batchyard_relationships_to ON batchyard_relationships (to_ns, to_id);

CREATE TABLE batchyard_jobs (
    id            TEXT    PRIMARY KEY,
    type          TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN
                  ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    total         INTEGER NOT NULL,
    processed     INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    chunks        INTEGER NOT NULL,
    chunks_left   INTEGER NOT NULL,
    dead_chunks   INTEGER NOT NULL DEFAULT 0,
    input         TEXT,
    options       TEXT,
    request_id    TEXT    UNIQUE,
    request_hash  TEXT,
    last_error    TEXT,
    created_at    REAL    NOT NULL,
    updated_at    REAL    NOT NULL,
    completed_at  REAL
);
CREATE INDEX batchyard_jobs_status ON batchyard_jobs (status, created_at);

-- how far each chunk got: a retried chunk goes on after its last commit, never redoes one
CREATE TABLE batchyard_job_chunks (
    job_id    TEXT    NOT NULL,
    chunk     INTEGER NOT NULL,
    done      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, chunk)
) WITHOUT ROWID;

CREATE TABLE batchyard_job_errors (
    job_id  TEXT    NOT NULL,
    idx     INTEGER NOT NULL,
    error   TEXT    NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;

CREATE TABLE batchyard_job_results (
    job_id  TEXT    NOT NULL,
    idx     INTEGER NOT NULL,
    result  TEXT    NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
