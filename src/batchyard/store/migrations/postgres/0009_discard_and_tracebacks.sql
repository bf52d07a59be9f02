-- A dead batch can be discarded: `discarded` is a terminal status of its own (not
-- `completed`, which would claim its items were delivered), and the flush history records the
-- discard with the items it dropped. Failed flushes and iterator steps keep their traceback
-- (the end of it, where the cause is), for the operator who reads the history.

ALTER TABLE batchyard_batches DROP CONSTRAINT batchyard_batches_status_check;
ALTER TABLE batchyard_batches ADD CONSTRAINT batchyard_batches_status_check
    CHECK (status IN ('accumulating', 'flushing', 'completed', 'dead', 'discarded'));

ALTER TABLE batchyard_flushes DROP CONSTRAINT batchyard_flushes_outcome_check;
ALTER TABLE batchyard_flushes ADD CONSTRAINT batchyard_flushes_outcome_check
    CHECK (outcome IN ('completed', 'partial', 'failed', 'discarded'));
ALTER TABLE batchyard_flushes ADD COLUMN traceback TEXT;

ALTER TABLE batchyard_iterators ADD COLUMN last_traceback TEXT;
