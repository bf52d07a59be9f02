-- Iterator jobs may be throttled (a handler says how long to wait before the next page) and
-- may size their pages to take about target_batch_seconds each, between min_batch_size and
-- max_batch_size. page_size is the size the next page asks for (NULL: batch_size), so a
-- job resumed or run by another worker goes on with what it learnt.

ALTER TABLE batchyard_iterators ADD COLUMN throttle TEXT;
ALTER TABLE batchyard_iterators ADD COLUMN target_batch_seconds DOUBLE PRECISION;
ALTER TABLE batchyard_iterators ADD COLUMN min_batch_size INTEGER;
ALTER TABLE batchyard_iterators ADD COLUMN max_batch_size INTEGER;
ALTER TABLE batchyard_iterators ADD COLUMN page_size INTEGER;
ALTER TABLE batchyard_iterators ADD COLUMN throttled_seconds DOUBLE PRECISION NOT NULL DEFAULT 0;
