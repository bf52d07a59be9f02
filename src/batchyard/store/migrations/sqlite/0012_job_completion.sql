-- A bulk job may name an on_complete handler and a webhook (callback_url), told once it ends;
-- every delivery attempt of its webhook is kept, for its record and the dashboard.

ALTER TABLE batchyard_jobs ADD COLUMN on_complete TEXT;
ALTER TABLE batchyard_jobs ADD COLUMN callback_url TEXT;

CREATE TABLE batchyard_job_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id        TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    duration      REAL NOT NULL,
    delivered_at  REAL NOT NULL
);
CREATE INDEX batchyard_job_deliveries_job ON batchyard_job_deliveries (job_id, id);
