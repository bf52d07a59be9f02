-- A bulk job's failed items can be retried as a new job: an item that fails while processing
-- keeps its (validated) value beside its error, and the new job names its parent.

ALTER TABLE batchyard_job_errors ADD COLUMN item TEXT;
ALTER TABLE batchyard_jobs ADD COLUMN parent_id TEXT;
CREATE INDEX batchyard_jobs_parent ON batchyard_jobs (parent_id) WHERE parent_id IS NOT NULL;
