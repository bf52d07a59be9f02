-- Reads bounded by what is live, not by history. Completed batches and their flush records
-- stay for the whole retention (a day by default: a million rows and more on a busy
-- store), and a read that walks past them grows with them. So every read of live batches
-- or of the recent past has an index that holds only what it returns, or starts where it
-- stops:
-- * the live batches of a base (status, the dashboard's bases), in sequence order; the
--   predicate is written exactly as the queries write it, so that both planners see that
--   it holds;
CREATE INDEX batchyard_batches_live ON batchyard_batches (base_id, sequence)
    WHERE status IN ('accumulating', 'flushing', 'dead');
-- * the most recently changed batches, of any status or of one (list_batches);
CREATE INDEX batchyard_batches_recent ON batchyard_batches (updated_at);
CREATE INDEX batchyard_batches_status_recent ON batchyard_batches (status, updated_at);
-- * flushes of the last hour (the overview), and the oldest ones (the prune, in steps).
CREATE INDEX batchyard_flushes_started ON batchyard_flushes (started_at);
