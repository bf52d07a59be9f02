-- Ordered successors are parked, not walked: a flush task queued while the task it waits for
-- (`after_key`) is still live or dead is `parked` (1), due a day ahead, out of the claim's
-- range of due tasks; the completion or discard of the task it waits for brings it forward
-- in the same transaction (or hands it straight to the completing worker). The day is a
-- safety net only: a parked task then comes due and waits as the claim's check says.
-- The index finds the task waiting for a given key; only tasks that wait are in it.
ALTER TABLE batchyard_tasks ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
CREATE INDEX batchyard_tasks_after ON batchyard_tasks (after_key) WHERE after_key IS NOT NULL;
