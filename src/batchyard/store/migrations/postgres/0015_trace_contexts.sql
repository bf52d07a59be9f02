-- The trace context (a W3C traceparent) of the add that wrote an item, when the add ran in
-- a sampled OpenTelemetry span: the flush that delivers the item links its own span to it.
-- On the item rather than the batch: an add writes only its items (one statement for the
-- common add), and on SQLite one statement cannot also write the batch's row. NULL, the
-- untraced case, costs no space.
ALTER TABLE batchyard_items ADD COLUMN trace_context TEXT;
