-- The bus for a cluster, and durable jobs.
--
-- Outbox ids come from a sequence, which PostgreSQL hands out at INSERT, not at COMMIT:
-- a reader that moved a cursor past id 101 could miss id 100 committing later. So
-- consumers read by `position` instead, assigned in commit order by the sequencer
-- (bus/log.rs): one transaction at a time (it locks the `bus_log` row) numbers the
-- events committed so far. Every event before this migration keeps its id as position.
ALTER TABLE outbox ADD COLUMN position BIGINT;
UPDATE outbox SET position = id;
DROP INDEX outbox_pending;
ALTER TABLE outbox DROP COLUMN dispatched_at;
CREATE UNIQUE INDEX outbox_position ON outbox (position) WHERE position IS NOT NULL;
CREATE INDEX outbox_unsequenced ON outbox (id) WHERE position IS NULL;

-- One row: the last position handed out, this store's id (it names the wake-up channel,
-- so stores sharing a server or a Redis do not wake each other) and the primary's WAL
-- position when the sequencer last ran (reads from a replica that has not replayed
-- that far go to the primary).
CREATE TABLE bus_log (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    position BIGINT NOT NULL,
    store_id TEXT NOT NULL,
    lsn TEXT,
    updated_at TEXT NOT NULL
);
INSERT INTO bus_log (id, position, store_id, updated_at)
SELECT 1, COALESCE(MAX(id), 0), lower(hex(randomblob(16))),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM outbox;

-- Cluster-once consumers: one durable position each, its retry state, and a lease so
-- one node at a time does the work.
CREATE TABLE bus_consumers (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    retry_at TEXT,
    last_error TEXT,
    leased_by TEXT,
    lease_until TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Events a cluster-once consumer gave up on after its attempts, with a copy of the
-- event (the outbox is pruned), for staff to read and replay.
CREATE TABLE bus_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    position BIGINT NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    event_created_at TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    error TEXT NOT NULL,
    created_at TEXT NOT NULL,
    replayed_at TEXT,
    replay_error TEXT,
    UNIQUE (consumer, position)
);

-- Every node's node-local position (the slowest of its consumers) and when it was last
-- seen: pruning keeps what a live node has not read yet; staff see the cluster.
CREATE TABLE bus_nodes (
    node_id TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    version TEXT NOT NULL,
    started_at TEXT NOT NULL,
    seen_at TEXT NOT NULL
);

-- Durable jobs: work that must happen once, now or at `run_at`. A worker leases a job
-- (`running`, `leased_by`, `lease_until`), and completing it deletes the row; a failure
-- puts it back `queued` for later, and after `max_attempts` it stays `dead` for staff.
-- `attempts` grows with every lease, so (id, attempts) names one lease: a worker whose
-- lease expired cannot complete or fail the job another worker took over.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    unique_key TEXT UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'dead')),
    run_at TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    leased_by TEXT,
    lease_until TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';

-- Periodic work, run once per cluster per interval: whichever node moves `next_run_at`
-- first enqueues the run (one outstanding run per schedule, by the job's unique key).
CREATE TABLE job_schedules (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    interval_secs BIGINT NOT NULL,
    next_run_at TEXT NOT NULL,
    runs BIGINT NOT NULL DEFAULT 0,
    last_run_at TEXT,
    last_node TEXT,
    last_error TEXT,
    updated_at TEXT NOT NULL
);
