-- Byte limits and debounce of accumulator batches.
-- * max_batch_bytes: a batch holds at most this many bytes of items (the sum of their JSON
--   texts' UTF-8 sizes); NULL for no byte limit.
-- * flush_after_idle: a batch flushes once no item was added for this many seconds (never
--   later than flush_interval after its creation); NULL for no debounce. The time of the
--   last add is the newest item's added_at: an add writes nothing more for it.
-- * byte_end: an item's end in its batch's bytes (the sizes of the items at its position
--   and before), kept like its position: read from the item before it by the statement
--   that appends, so the byte limit is checked exactly, in that same statement. NULL in a
--   batch without a byte limit.
ALTER TABLE batchyard_batches ADD COLUMN max_batch_bytes BIGINT CHECK (max_batch_bytes > 0);
ALTER TABLE batchyard_batches ADD COLUMN flush_after_idle DOUBLE PRECISION;
ALTER TABLE batchyard_items ADD COLUMN byte_end BIGINT;
