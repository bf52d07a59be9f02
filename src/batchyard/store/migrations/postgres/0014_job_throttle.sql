-- A bulk job may be throttled: a handler asked before each chunk says how long to wait
-- first. The time its chunks spent waiting so is kept, for its record and the dashboard.

ALTER TABLE batchyard_jobs ADD COLUMN throttle TEXT;
ALTER TABLE batchyard_jobs ADD COLUMN throttled_seconds DOUBLE PRECISION NOT NULL DEFAULT 0;
