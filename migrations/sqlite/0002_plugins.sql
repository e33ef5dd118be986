-- Plugins: binaries by content hash (so every node can load them), versions with their
-- manifests and self-test fixtures, and per-plugin installation state.

CREATE TABLE plugin_binaries (
    hash TEXT PRIMARY KEY,
    wasm BLOB NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE plugin_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin_id TEXT NOT NULL,
    version TEXT NOT NULL,
    world TEXT NOT NULL,
    manifest TEXT NOT NULL,
    fixtures TEXT NOT NULL DEFAULT '[]',
    hash TEXT NOT NULL REFERENCES plugin_binaries(hash),
    installed_at TEXT NOT NULL,
    installed_by TEXT NOT NULL,
    UNIQUE (plugin_id, version)
);

CREATE TABLE plugin_installations (
    plugin_id TEXT PRIMARY KEY,
    world TEXT NOT NULL,
    active_version TEXT NOT NULL,
    previous_version TEXT,
    enabled BIGINT NOT NULL DEFAULT 1,
    priority BIGINT NOT NULL DEFAULT 100,
    settings TEXT NOT NULL DEFAULT '{}',
    granted_hosts TEXT NOT NULL DEFAULT '[]',
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    updated_at TEXT NOT NULL
);

-- Every plugin decision, so a price can be explained later.
CREATE TABLE plugin_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin_id TEXT NOT NULL,
    version TEXT NOT NULL,
    call TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    output_hash TEXT NOT NULL,
    outcome TEXT NOT NULL,
    fuel BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX plugin_decisions_input ON plugin_decisions (input_hash);
