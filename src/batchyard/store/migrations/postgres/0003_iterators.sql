-- Table iterator jobs. `generation` fences runners: pause, resume and cancel bump it, and a
-- step whose generation is stale can neither move the cursor nor schedule another step.

CREATE TABLE batchyard_iterators (
    job_id          TEXT    PRIMARY KEY,
    status          TEXT    NOT NULL CHECK (status IN
                    ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    generation      INTEGER NOT NULL DEFAULT 1,
    batch_size      INTEGER NOT NULL CHECK (batch_size > 0),
    get_next_batch  TEXT    NOT NULL,
    process_batch   TEXT    NOT NULL,
    on_complete     TEXT,
    delay           DOUBLE PRECISION    NOT NULL,
    max_retries     INTEGER NOT NULL,
    transactional   INTEGER NOT NULL DEFAULT 0,
    cursor          TEXT,
    processed       BIGINT  NOT NULL DEFAULT 0,
    batches         INTEGER NOT NULL DEFAULT 0,
    total           BIGINT ,
    last_error      TEXT,
    started_at      DOUBLE PRECISION    NOT NULL,
    updated_at      DOUBLE PRECISION    NOT NULL,
    completed_at    DOUBLE PRECISION
);
CREATE INDEX batchyard_iterators_status ON batchyard_iterators (status, updated_at);
