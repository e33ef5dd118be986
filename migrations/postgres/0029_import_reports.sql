-- What an import run found and how it was asked (issue 21; docs/IMPORTS.md): the admin
-- API (`GET /api/v1/admin/imports/runs/{id}`) and the admin's run page answer a past
-- run's summary and report from here. `report` is the JSON of its problems (row, field)
-- and repairs, written when the run starts (before its first batch, so an interrupted run
-- has it too); values of personal or secret fields are left out of it, and a long report
-- keeps its first entries with the count of those left off. NULL: a run from before
-- this migration.
ALTER TABLE import_runs ADD COLUMN skipped_not_changed_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE import_runs ADD COLUMN since TEXT;
ALTER TABLE import_runs ADD COLUMN newest_updated_at TEXT;
ALTER TABLE import_runs ADD COLUMN report TEXT;
