//! The event bus: a transactional outbox read as a commit-ordered log, by two kinds of
//! consumers.
//!
//! A domain module writes its change and [`record`]s the event describing it in the same
//! transaction, so both commit or neither does. The sequencer ([`log::sequence`]) gives
//! committed events their `position` in commit order; consumers read by position, so a
//! transaction that took its id early and committed late is never skipped.
//!
//! - [`NodeLocalConsumer`]s run on every node and see every event: cache invalidation,
//!   plugin reload (later the search index, live updates). Each node keeps their
//!   positions in memory, starting at the head when it starts (its caches are empty then).
//! - [`ClusterOnceConsumer`]s run once for the cluster, on whichever node holds their
//!   lease: loyalty, notifications, subscriptions. Each has a durable position in
//!   `bus_consumers`, advanced in the same transaction as the consumer's own writes, so
//!   its effects happen once; a failing event is retried with backoff and, after its
//!   attempts, goes to the dead letters for staff to read and replay.
//!
//! Nodes wake each other through Redis pub/sub or PostgreSQL `LISTEN/NOTIFY`
//! ([`wakeup`]); the log is the truth and polling the fallback.

pub mod api;
mod cluster;
pub mod log;
mod node;
pub mod wakeup;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use sqlx::AnyConnection;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::store::{Db, Reads};
use crate::time::Clock;

pub use cluster::replay_dead_letter;

/// An event as stored in the outbox and handed to consumers.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: i64,
    /// Its place in the log, in commit order; consecutive without gaps.
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at: String,
}

/// Writes an event into the outbox within the caller's transaction.
pub async fn record(
    conn: &mut AnyConnection,
    aggregate_type: &str,
    aggregate_id: impl ToString,
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id.to_string())
    .bind(event_type)
    .bind(payload.to_string())
    .bind(crate::time::now())
    .execute(conn)
    .await?;
    Ok(())
}

/// An event to write with [`record_all`].
pub struct NewEvent<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: String,
    pub event_type: &'a str,
    pub payload: serde_json::Value,
}

/// Writes several events into the outbox within the caller's transaction, in the given
/// order, 100 to a statement.
pub async fn record_all(
    conn: &mut AnyConnection,
    events: &[NewEvent<'_>],
) -> Result<(), sqlx::Error> {
    let now = crate::time::now();
    for chunk in events.chunks(100) {
        let sql = format!(
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, created_at)
             VALUES {}",
            crate::store::value_rows(chunk.len(), 5)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event in chunk {
            insert = insert
                .bind(event.aggregate_type)
                .bind(&event.aggregate_id)
                .bind(event.event_type)
                .bind(event.payload.to_string())
                .bind(&now);
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

pub type ConsumerFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// A consumer every node runs on every event (its caches, its plugin snapshot). It must
/// be idempotent, and should not fail but on a passing fault: a failing event is
/// retried, and the events behind it wait.
pub trait NodeLocalConsumer: Send + Sync {
    fn name(&self) -> &'static str;
    fn handle<'a>(&'a self, event: &'a Event) -> ConsumerFuture<'a>;
    /// Called when events this node had not read were pruned (it was cut off from the
    /// database for longer than the retention): start over from the database.
    fn resync(&self) -> ConsumerFuture<'_> {
        Box::pin(async { Ok(()) })
    }
    /// Called after `handle` took every event of a batch, before the node's position
    /// moves past them: work collected over the batch is done here once (the cache
    /// refreshes each product's stock once however many stock events named it).
    fn end_batch(&self) -> ConsumerFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

/// A consumer that runs once for the whole cluster. `handle` gets the transaction that
/// also advances the consumer's position: what it writes there happens exactly once.
/// Anything outside the database (a delivery to a device, a charge) belongs in a durable
/// job enqueued in that transaction ([`crate::jobs::enqueue`]).
pub trait ClusterOnceConsumer: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether `handle` does anything with this event. Runs of events a consumer does
    /// not want are passed over with one update of its position instead of a
    /// transaction each (the loyalty processor wants one event in several).
    fn wants(&self, _event: &Event) -> bool {
        true
    }
    /// How many wanted events it may handle in one transaction (1 by default). More
    /// keeps up with a busy shop (a transaction each is a commit each); a failing run is
    /// rolled back and done again one event at a time, so `handle` may see an event more
    /// than once, while its effects still happen once.
    fn run_size(&self) -> usize {
        1
    }
    fn handle<'a>(&'a self, event: &'a Event, tx: &'a mut AnyConnection) -> ConsumerFuture<'a>;
    /// Called after a transaction of `handle`s committed (a consumer that enqueued jobs
    /// wakes the workers here, rather than leaving them to their next poll).
    fn after_commit(&self) {}
}

/// How the bus runs; from the serve configuration.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// How often a node looks at the log when no wake-up came.
    pub poll_interval: Duration,
    /// How long a cluster-once consumer's lease lasts without renewal.
    pub lease: Duration,
    /// Attempts at one event before it goes to the dead letters.
    pub max_attempts: u32,
    /// The first retry's delay; it doubles with every attempt (up to five minutes).
    pub retry_base: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            poll_interval: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            max_attempts: 10,
            retry_base: Duration::from_secs(1),
        }
    }
}

impl BusConfig {
    /// The delay before attempt `attempt + 1`, after `attempt` failures.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .retry_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        doubled.min(Duration::from_secs(300))
    }
}

/// The bus as request handlers and background work use it; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Shared>,
}

struct Shared {
    node_id: String,
    /// Events were committed here, or another node said there are new ones.
    wake: Notify,
    /// Jobs became due (here or, by wake-up, on another node).
    /// Counts wake-ups of the job workers; every lane watches it (a `Notify` would
    /// wake one lane only).
    jobs_wake: watch::Sender<u64>,
    /// The newest position this node knows the log to have.
    head: watch::Sender<i64>,
    /// Where cross-node wake-ups go; none until the bus starts.
    wakeups: OnceLock<Arc<wakeup::Wakeups>>,
    /// The cluster-once consumers this node runs (replay needs them by name).
    cluster: OnceLock<Vec<Arc<dyn ClusterOnceConsumer>>>,
    /// Positions of this node's node-local consumers, in registration order.
    local_positions: Mutex<Vec<(&'static str, Arc<AtomicI64>)>>,
    config: OnceLock<BusConfig>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new(node_id_from_env(None))
    }
}

/// A name for this node: the configured one, or host name, process id and a random
/// suffix (a restarted process is a new node: its in-memory positions are new).
pub fn node_id_from_env(configured: Option<&str>) -> String {
    if let Some(id) = configured.map(str::trim).filter(|s| !s.is_empty()) {
        return id.to_owned();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    let suffix: u16 = rand::random();
    format!("{host}-{}-{suffix:04x}", std::process::id())
}

impl Bus {
    pub fn new(node_id: String) -> Bus {
        Bus {
            shared: Arc::new(Shared {
                node_id,
                wake: Notify::new(),
                jobs_wake: watch::channel(0).0,
                head: watch::channel(0).0,
                wakeups: OnceLock::new(),
                cluster: OnceLock::new(),
                local_positions: Mutex::new(Vec::new()),
                config: OnceLock::new(),
            }),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// Call after committing a transaction that recorded events: this node numbers
    /// them at once and tells the others.
    pub fn notify(&self) {
        self.shared.wake.notify_one();
    }

    /// Call after committing a transaction that enqueued jobs due now: this node's
    /// workers look at once, and so do the other nodes'.
    pub fn notify_jobs(&self) {
        self.wake_jobs();
        if let Some(wakeups) = self.shared.wakeups.get() {
            let wakeups = wakeups.clone();
            tokio::spawn(async move { wakeups.publish(wakeup::Topic::Jobs).await });
        }
    }

    pub(crate) fn wake_jobs(&self) {
        self.shared
            .jobs_wake
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wake-ups of this node's job workers: `changed()` answers at the next one (or at
    /// once for one since the last look).
    pub(crate) fn jobs_wakeups(&self) -> watch::Receiver<u64> {
        self.shared.jobs_wake.subscribe()
    }

    /// The newest position this node knows of.
    pub fn head(&self) -> i64 {
        *self.shared.head.borrow()
    }

    pub(crate) fn watch_head(&self) -> watch::Receiver<i64> {
        self.shared.head.subscribe()
    }

    pub(crate) fn config(&self) -> BusConfig {
        self.shared.config.get().cloned().unwrap_or_default()
    }

    pub(crate) fn cluster_consumer(&self, name: &str) -> Option<Arc<dyn ClusterOnceConsumer>> {
        self.shared
            .cluster
            .get()?
            .iter()
            .find(|c| c.name() == name)
            .cloned()
    }

    /// The cluster-once consumers this node runs.
    pub fn cluster_consumer_names(&self) -> Vec<&'static str> {
        self.shared
            .cluster
            .get()
            .map(|all| all.iter().map(|c| c.name()).collect())
            .unwrap_or_default()
    }

    /// Each node-local consumer's position on this node.
    pub fn local_positions(&self) -> Vec<(&'static str, i64)> {
        self.shared
            .local_positions
            .lock()
            .map(|all| {
                all.iter()
                    .map(|(name, pos)| (*name, pos.load(Ordering::Acquire)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The slowest node-local consumer's position (the head when there is none).
    pub fn local_position(&self) -> i64 {
        self.local_positions()
            .into_iter()
            .map(|(_, p)| p)
            .min()
            .unwrap_or_else(|| self.head())
    }

    /// What this node and the cluster-once consumers still have to handle: events not
    /// yet numbered, behind this node's slowest node-local consumer, or behind the
    /// slowest cluster-once consumer. Zero when everything is through.
    pub async fn pending(&self, db: &Db) -> Result<i64, sqlx::Error> {
        let log = log::state(db).await?;
        let local = (log.head - self.local_position()).max(0);
        Ok(log.unsequenced + local + log.cluster_lag)
    }
}

/// Events committed but not yet numbered, or not yet handled by the slowest cluster-once
/// consumer: what the database holds durably. (Each node's own node-local progress is
/// in memory: [`Bus::pending`], and `olivine_bus_pending_events` in its `/metrics`.)
pub async fn pending_count(db: &Db) -> Result<i64, sqlx::Error> {
    let log = log::state(db).await?;
    Ok(log.unsequenced + log.cluster_lag)
}

/// The bus's background tasks on one node.
pub struct BusRuntime {
    tasks: Vec<JoinHandle<()>>,
    db: Db,
    node_id: String,
}

/// What a node's bus runs.
pub struct BusParts {
    /// Sequencer, cluster-once consumers, dead letters: a pool with durable commits.
    pub work_db: Db,
    /// Node-local reads and heartbeats.
    pub background_db: Db,
    pub reads: Reads,
    pub clock: Clock,
    pub config: BusConfig,
    pub node_local: Vec<Arc<dyn NodeLocalConsumer>>,
    pub cluster_once: Vec<Arc<dyn ClusterOnceConsumer>>,
    pub wakeups: Arc<wakeup::Wakeups>,
}

impl BusRuntime {
    /// Starts the sequencer, the wake-up listener, the heartbeat and one task per
    /// consumer. Node-local consumers start at `start` (the head read before the node
    /// loaded its plugins), cluster-once consumers at their durable positions.
    pub async fn start(
        bus: &Bus,
        parts: BusParts,
        start: i64,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<BusRuntime> {
        let shared = &bus.shared;
        let _ = shared.config.set(parts.config.clone());
        let _ = shared.wakeups.set(parts.wakeups.clone());
        let _ = shared.cluster.set(parts.cluster_once.clone());
        shared.head.send_replace(start);
        log::register_node(&parts.background_db, bus.node_id(), start, &parts.clock).await?;
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(log::run_sequencer(
            parts.work_db.clone(),
            bus.clone(),
            parts.reads.clone(),
            parts.wakeups.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(wakeup::listen(
            parts.wakeups.clone(),
            bus.clone(),
            shutdown.clone(),
        )));
        for consumer in parts.node_local {
            let position = Arc::new(AtomicI64::new(start));
            if let Ok(mut all) = shared.local_positions.lock() {
                all.push((consumer.name(), position.clone()));
            }
            tasks.push(tokio::spawn(node::run(
                parts.background_db.clone(),
                bus.clone(),
                consumer,
                position,
                shutdown.clone(),
            )));
        }
        for consumer in parts.cluster_once {
            cluster::register(&parts.work_db, consumer.name(), &parts.clock).await?;
            tasks.push(tokio::spawn(cluster::run(
                parts.work_db.clone(),
                bus.clone(),
                consumer,
                parts.clock.clone(),
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(log::run_heartbeat(
            parts.background_db.clone(),
            bus.clone(),
            parts.clock.clone(),
            shutdown,
        )));
        Ok(BusRuntime {
            tasks,
            db: parts.background_db,
            node_id: bus.node_id().to_owned(),
        })
    }

    /// Stops every task where it is, as a crash would (tests): nothing is finished,
    /// and the node stays in `bus_nodes` until it times out.
    pub fn abort(self) {
        for task in self.tasks {
            task.abort();
        }
    }

    /// Waits for the tasks (after the shutdown signal) and leaves the cluster.
    pub async fn stop(self) {
        for task in self.tasks {
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "a bus task ended abnormally");
            }
        }
        if let Err(err) = log::leave(&self.db, &self.node_id).await {
            tracing::warn!(error = %err, "could not remove this node from bus_nodes");
        }
    }
}

/// Publishes the bus's gauges; called when `/metrics` is scraped. Lag in seconds is the
/// age of the oldest event a consumer has not handled (0 when it is through).
pub async fn record_metrics(db: &Db, bus: &Bus) {
    let result = async {
        use sqlx::Row;
        let log = log::state(db).await?;
        let local = (log.head - bus.local_position()).max(0);
        metrics::gauge!("olivine_bus_pending_events")
            .set((log.unsequenced + local + log.cluster_lag) as f64);
        metrics::gauge!("olivine_bus_log_head").set(log.head as f64);
        let now = chrono::Utc::now();
        let age = |created_at: Option<String>| {
            created_at
                .as_deref()
                .and_then(crate::time::parse_timestamp)
                .map_or(0.0, |at| {
                    (now - at).num_milliseconds().max(0) as f64 / 1000.0
                })
        };
        let rows = sqlx::query(
            "SELECT c.name, c.position,
                (SELECT o.created_at FROM outbox o WHERE o.position = c.position + 1),
                (SELECT CAST(COUNT(*) AS BIGINT) FROM bus_dead_letters d
                 WHERE d.consumer = c.name AND d.replayed_at IS NULL)
             FROM bus_consumers c",
        )
        .fetch_all(&db.pool)
        .await?;
        for row in rows {
            let name: String = row.try_get(0)?;
            let position: i64 = row.try_get(1)?;
            let labels = [
                ("consumer", name.clone()),
                ("kind", "cluster-once".to_owned()),
            ];
            metrics::gauge!("olivine_bus_consumer_lag_events", &labels)
                .set((log.head - position).max(0) as f64);
            metrics::gauge!("olivine_bus_consumer_lag_seconds", &labels).set(age(row.try_get(2)?));
            metrics::gauge!("olivine_bus_dead_letters", "consumer" => name)
                .set(row.try_get::<i64, _>(3)? as f64);
        }
        for (name, position) in bus.local_positions() {
            let oldest: Option<String> =
                sqlx::query("SELECT created_at FROM outbox WHERE position = $1")
                    .bind(position + 1)
                    .fetch_optional(&db.pool)
                    .await?
                    .map(|row| row.try_get(0))
                    .transpose()?;
            let labels = [
                ("consumer", name.to_owned()),
                ("kind", "node-local".to_owned()),
            ];
            metrics::gauge!("olivine_bus_consumer_lag_events", &labels)
                .set((bus.head() - position).max(0) as f64);
            metrics::gauge!("olivine_bus_consumer_lag_seconds", &labels).set(age(oldest));
        }
        Ok::<_, sqlx::Error>(())
    };
    if let Err(err) = result.await {
        tracing::warn!(error = %err, "reading the bus's figures failed");
    }
}
