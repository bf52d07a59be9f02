-- A chunk's items live in its row of batchyard_job_chunks, written once when the job is
-- created and cleared when the chunk is done (or its job cancelled); its task carries only
-- the job, the chunk number and its size. Every claim rewrites a task's row - on SQLite the
-- whole row - so items kept in the task's payload were written again at each claim.
-- Tasks queued before this change still carry their items, and are read from there.

ALTER TABLE batchyard_job_chunks ADD COLUMN items TEXT;
