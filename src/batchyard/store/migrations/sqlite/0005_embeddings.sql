-- Vectors of things' text, one per (namespace, model, thing): several models may embed the
-- same things side by side. `text_hash` is the hash of the text that was embedded, so that
-- a thing whose text did not change is skipped on the next run. `vector` holds `dimension`
-- little-endian float32 values of a unit vector; search reads them a page at a time in
-- (ns, model, id) order, the primary key's.

CREATE TABLE batchyard_embeddings (
    ns          TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    text_hash   TEXT    NOT NULL,
    dimension   INTEGER NOT NULL,
    vector      BLOB    NOT NULL,
    updated_at  REAL    NOT NULL,
    PRIMARY KEY (ns, model, id)
) WITHOUT ROWID;
