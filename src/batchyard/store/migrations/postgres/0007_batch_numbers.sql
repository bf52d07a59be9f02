-- Every batch gets a number, and its items and item failures are keyed by it instead of by
-- the batch's text id: an integer key is shorter to store and faster to insert and to find.
-- An identity never gives a number twice, even once the batch that had it is pruned - a
-- process may still remember where the next item of a batch goes, and must never find
-- another batch there.

ALTER TABLE batchyard_batches ADD COLUMN batch_no BIGINT GENERATED ALWAYS AS IDENTITY;
ALTER TABLE batchyard_batches ADD CONSTRAINT batchyard_batches_batch_no_key UNIQUE (batch_no);

ALTER TABLE batchyard_items ADD COLUMN batch_no BIGINT;
UPDATE batchyard_items i SET batch_no = b.batch_no FROM batchyard_batches b
    WHERE b.batch_id = i.batch_id;
DELETE FROM batchyard_items WHERE batch_no IS NULL;
ALTER TABLE batchyard_items DROP CONSTRAINT batchyard_items_pkey;
ALTER TABLE batchyard_items DROP COLUMN batch_id;
ALTER TABLE batchyard_items ALTER COLUMN batch_no SET NOT NULL;
ALTER TABLE batchyard_items ADD PRIMARY KEY (batch_no, position);

ALTER TABLE batchyard_item_failures ADD COLUMN batch_no BIGINT;
UPDATE batchyard_item_failures f SET batch_no = b.batch_no FROM batchyard_batches b
    WHERE b.batch_id = f.batch_id;
DELETE FROM batchyard_item_failures WHERE batch_no IS NULL;
ALTER TABLE batchyard_item_failures DROP CONSTRAINT batchyard_item_failures_pkey;
ALTER TABLE batchyard_item_failures DROP COLUMN batch_id;
ALTER TABLE batchyard_item_failures ALTER COLUMN batch_no SET NOT NULL;
ALTER TABLE batchyard_item_failures ADD PRIMARY KEY (batch_no, position);
