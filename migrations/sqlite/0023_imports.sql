-- Imports from a legacy shop (`olivine import`, docs/IMPORTS.md). Every imported record
-- keeps its legacy id: (kind, legacy_id) names the local row it became, with a
-- fingerprint of the content imported, so a second run of the same file changes nothing
-- and a run with newer data updates only what changed.
CREATE TABLE import_records (
    kind TEXT NOT NULL CHECK (kind IN ('products', 'lots', 'customers', 'orders', 'subscriptions')),
    legacy_id TEXT NOT NULL,
    local_id BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, legacy_id)
);

-- One run of one file. Its counters move with each batch's transaction, so a run that
-- was interrupted is resumed after its last committed batch (the same kind and the same
-- file content) and ends with the counts one uninterrupted run would have.
CREATE TABLE import_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished')),
    rows_total BIGINT NOT NULL,
    -- The file row of the last record a committed batch wrote: a resumed run goes on after it.
    last_row BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL DEFAULT 0,
    updated BIGINT NOT NULL DEFAULT 0,
    unchanged BIGINT NOT NULL DEFAULT 0,
    invalid BIGINT NOT NULL DEFAULT 0,
    actor TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX import_runs_file ON import_runs (kind, file_sha256, status);
