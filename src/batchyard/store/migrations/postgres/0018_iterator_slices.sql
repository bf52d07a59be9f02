-- Parallel iterator jobs: a job started with parallelism N is cut into N slices (key ranges
-- of its source), each with its own cursor and counters, each run by its own step tasks.
-- A slice that runs out asks the slice with the most left to give up the upper half of
-- its range (split_wanted); that slice does it itself, at its next page, so its cursor can
-- never pass the new bound. The job's totals are the sums over its slices.

ALTER TABLE batchyard_iterators ADD COLUMN parallelism INTEGER NOT NULL DEFAULT 1;

CREATE TABLE batchyard_iterator_slices (
    job_id          TEXT    NOT NULL,
    slice           INTEGER NOT NULL,
    cursor          TEXT    NOT NULL,
    processed       BIGINT  NOT NULL DEFAULT 0,
    batches         INTEGER NOT NULL DEFAULT 0,
    total           BIGINT  NOT NULL,
    page_size       INTEGER,
    split_wanted    INTEGER NOT NULL DEFAULT 0,
    done            INTEGER NOT NULL DEFAULT 0,
    started_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    completed_at    DOUBLE PRECISION,
    PRIMARY KEY (job_id, slice)
);
