//! Storage: one connection pool over SQLite or PostgreSQL (sqlx's `Any` driver), so the
//! same repository code runs on both. SQL is written in the common dialect: `$1`
//! placeholders, text dates and timestamps, BIGINT numbers (sums are cast to BIGINT).

mod migrate;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

pub use migrate::{latest_version, migrate, migrate_to, schema_version};

/// A database transaction of whichever backend is configured.
pub type Tx = Transaction<'static, Any>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn from_url(url: &str) -> anyhow::Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            anyhow::bail!("unsupported DATABASE_URL scheme (expected sqlite: or postgres:)")
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// What `/metrics` calls this pool: `primary`, `replica`, `background`, `jobs`.
    pub name: &'static str,
    /// Connections handed out by the pool since start: the cache benchmark reads it to
    /// prove a cache hit touches no database.
    acquisitions: Arc<AtomicU64>,
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        Db::open(url, max_connections, false, "primary").await
    }

    /// A pool with durable commits under another name in `/metrics` (`jobs`,
    /// `replica`).
    pub async fn connect_named(
        url: &str,
        max_connections: u32,
        name: &'static str,
    ) -> anyhow::Result<Db> {
        Db::open(url, max_connections, false, name).await
    }

    /// A pool for background bookkeeping whose writes may be lost with the database
    /// server's crash without harm (an outbox event marked delivered is redelivered, a
    /// swept session swept again): on PostgreSQL its commits do not wait for the WAL to
    /// reach disk (`synchronous_commit = off`), so they cost the shoppers' requests less.
    /// Never use it for a write that must survive.
    pub async fn connect_background(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        Db::open(url, max_connections, true, "background").await
    }

    async fn open(
        url: &str,
        max_connections: u32,
        relaxed: bool,
        name: &'static str,
    ) -> anyhow::Result<Db> {
        install_default_drivers();
        let backend = Backend::from_url(url)?;
        let acquisitions = Arc::new(AtomicU64::new(0));
        let on_connect = acquisitions.clone();
        let on_acquire = acquisitions.clone();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            // A ping per checkout doubles the round trips; broken connections surface as
            // errors on use instead.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                on_connect.fetch_add(1, Ordering::Relaxed);
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(sqlx::raw_sql(
                            "PRAGMA journal_mode = WAL;
                             PRAGMA synchronous = NORMAL;
                             PRAGMA foreign_keys = ON;
                             PRAGMA busy_timeout = 10000;",
                        ))
                        .await?;
                    }
                    // PostgreSQL's JIT compiles a query the planner thinks costly: 90 ms of
                    // LLVM work measured on an admin count that then ran in under a
                    // millisecond (docs/PERFORMANCE.md). The store's queries are short.
                    if backend == Backend::Postgres {
                        conn.execute(sqlx::raw_sql("SET jit = off")).await?;
                    }
                    if backend == Backend::Postgres && relaxed {
                        conn.execute(sqlx::raw_sql("SET synchronous_commit = off"))
                            .await?;
                    }
                    Ok(())
                })
            })
            .before_acquire(move |_conn, _meta| {
                on_acquire.fetch_add(1, Ordering::Relaxed);
                Box::pin(async { Ok(true) })
            })
            .connect(url)
            .await
            .with_context(|| format!("connecting to the {} database", backend.name()))?;
        Ok(Db {
            pool,
            backend,
            name,
            acquisitions,
        })
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so concurrent writers queue on the busy timeout instead of
    /// failing when a read lock cannot be upgraded.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn connection_acquisitions(&self) -> u64 {
        self.acquisitions.load(Ordering::Relaxed)
    }

    /// Publishes pool gauges; called when `/metrics` is scraped.
    pub fn record_pool_metrics(&self) {
        let size = self.pool.size() as f64;
        let idle = self.pool.num_idle() as f64;
        let pool = self.name;
        metrics::gauge!("olivine_db_pool_connections", "pool" => pool, "state" => "open").set(size);
        metrics::gauge!("olivine_db_pool_connections", "pool" => pool, "state" => "idle").set(idle);
        metrics::gauge!("olivine_db_pool_connections", "pool" => pool, "state" => "in_use")
            .set(size - idle);
        metrics::gauge!("olivine_db_pool_max_connections", "pool" => pool)
            .set(self.pool.options().get_max_connections() as f64);
        if pool == "primary" {
            metrics::counter!("olivine_db_connection_acquisitions_total")
                .absolute(self.connection_acquisitions());
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// True when the error is a unique-constraint violation (duplicate key).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

/// `($1, $2, …), ($n+1, …)`: the VALUES of a multi-row INSERT of `rows` rows of
/// `columns` columns, so many rows cost one round trip.
pub(crate) fn value_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where reads that tolerate lag go (catalog listings and pages on a cache miss, search
/// rebuilds, reports): the read replica (`DATABASE_READ_URL`) when there is one and it
/// has replayed everything this node has seen events of, else the primary. Carts,
/// orders, accounts and admin reads never come here.
///
/// The fence is the primary's WAL position when the events this node last read were
/// numbered (`bus_log.lsn`); it rises before the node's consumers handle those events, so
/// a cache entry they drop is never refilled from a replica that is older than the
/// change. A replica that is behind, or down, is skipped for the primary.
#[derive(Clone)]
pub struct Reads {
    primary: Db,
    replica: Option<Db>,
    fence: Arc<AtomicU64>,
    replayed: Arc<AtomicU64>,
    last_warning: Arc<AtomicU64>,
}

/// A PostgreSQL LSN (`16/B374D848`) as a number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

impl Reads {
    pub fn new(primary: Db, replica: Option<Db>) -> Reads {
        Reads {
            primary,
            replica,
            fence: Arc::new(AtomicU64::new(0)),
            replayed: Arc::new(AtomicU64::new(0)),
            last_warning: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Reads go to the primary only.
    pub fn primary_only(primary: Db) -> Reads {
        Reads::new(primary, None)
    }

    pub fn replica(&self) -> Option<&Db> {
        self.replica.as_ref()
    }

    /// Raises the fence to the WAL position `lsn` (never lowers it).
    pub fn raise_fence(&self, lsn: &str) {
        if let Some(lsn) = parse_lsn(lsn) {
            self.fence.fetch_max(lsn, Ordering::AcqRel);
        }
    }

    /// A connection for a read that tolerates lag.
    pub async fn acquire(&self) -> Result<PoolConnection<Any>, sqlx::Error> {
        if let Some(replica) = &self.replica {
            match self.replica_if_fresh(replica).await {
                Ok(Some(conn)) => {
                    metrics::counter!("olivine_db_replica_reads_total", "outcome" => "replica")
                        .increment(1);
                    return Ok(conn);
                }
                Ok(None) => {}
                Err(err) => self.warn(&format!("the read replica is unreachable: {err}")),
            }
            metrics::counter!("olivine_db_replica_reads_total", "outcome" => "primary")
                .increment(1);
        }
        self.primary.pool.acquire().await
    }

    /// A replica connection when the replica has replayed up to the fence.
    async fn replica_if_fresh(
        &self,
        replica: &Db,
    ) -> Result<Option<PoolConnection<Any>>, sqlx::Error> {
        let fence = self.fence.load(Ordering::Acquire);
        let mut conn = replica.pool.acquire().await?;
        if self.replayed.load(Ordering::Acquire) >= fence {
            return Ok(Some(conn));
        }
        let replayed: Option<String> = sqlx::query("SELECT CAST(pg_last_wal_replay_lsn() AS TEXT)")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        let replayed = replayed.as_deref().and_then(parse_lsn).unwrap_or(0);
        self.replayed.fetch_max(replayed, Ordering::AcqRel);
        Ok((replayed >= fence).then_some(conn))
    }

    /// Logs a replica problem at most once a minute.
    fn warn(&self, message: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!("{message}; reading from the primary");
        }
    }
}

/// Refreshes the planner's statistics of `tables` after a bulk load (the synthetic
/// catalog, an import): until autovacuum gets to them, PostgreSQL plans the new rows as
/// if they were not there (measured: the admin's products list read every lot fifty times,
/// 760 ms instead of 1 ms). SQLite analyzes the whole file.
pub async fn analyze(db: &Db, tables: &[&str]) -> anyhow::Result<()> {
    let sql = match db.backend {
        Backend::Postgres => format!("ANALYZE {}", tables.join(", ")),
        Backend::Sqlite => "ANALYZE".to_owned(),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&db.pool)
        .await
        .context("refreshing the planner's statistics")?;
    Ok(())
}
