-- Every failed step of an iterator job is kept (its error, which page, which attempt, when),
-- not only the last one: a job that fails now and then shows how often and with what. The
-- last 50 of a job stay (older ones go as a new one comes), and its delete takes them along.

CREATE TABLE batchyard_iterator_errors (
    id        BIGSERIAL PRIMARY KEY,
    job_id    TEXT    NOT NULL,
    batch     INTEGER NOT NULL,
    attempt   INTEGER NOT NULL,
    final     INTEGER NOT NULL,
    error     TEXT    NOT NULL,
    failed_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX batchyard_iterator_errors_job ON batchyard_iterator_errors (job_id, id);
