-- Event streams and the aggregators that fold them.
-- An event's place in its stream is (position, id). On SQLite writers take turns, so id
-- order is commit order and position is 0. On PostgreSQL position is the id of the
-- inserting transaction, and readers only look below the oldest transaction still running,
-- so an event committed late can never land behind a cursor.

CREATE TABLE batchyard_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    stream     TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    payload    TEXT    NOT NULL,
    created_at REAL    NOT NULL
);
CREATE INDEX batchyard_events_order ON batchyard_events (stream, id);  -- id order is commit order

CREATE TABLE batchyard_aggregators (
    name            TEXT    PRIMARY KEY,
    stream          TEXT    NOT NULL,
    cursor_position INTEGER NOT NULL DEFAULT -1,
    cursor_id       INTEGER NOT NULL DEFAULT 0,
    lease_until     REAL,
    runner          TEXT,
    events_folded   INTEGER NOT NULL DEFAULT 0,
    last_run_at     REAL,
    last_error      TEXT,
    created_at      REAL    NOT NULL
);

CREATE TABLE batchyard_totals (
    aggregator TEXT NOT NULL,
    key        TEXT NOT NULL,
    total      TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (aggregator, key)
);

CREATE TABLE batchyard_parked_events (
    aggregator TEXT    NOT NULL,
    event_id   INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    error      TEXT    NOT NULL,
    parked_at  REAL    NOT NULL,
    PRIMARY KEY (aggregator, event_id)
);
