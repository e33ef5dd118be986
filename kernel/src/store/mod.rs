//! Storage: one connection pool over SQLite or PostgreSQL (sqlx's `Any` driver), so the
//! same repository code runs on both. SQL is written in the common dialect: `$1`
//! placeholders, text dates and timestamps, BIGINT numbers (sums are cast to BIGINT).

mod migrate;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};

pub use migrate::{latest_version, migrate, schema_version};

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
    /// Connections handed out by the pool since start: the cache benchmark reads it to
    /// prove a cache hit touches no database.
    acquisitions: Arc<AtomicU64>,
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        Db::open(url, max_connections, false).await
    }

    /// A pool for background bookkeeping whose writes may be lost with the database
    /// server's crash without harm (an outbox event marked delivered is redelivered, a
    /// swept session swept again): on PostgreSQL its commits do not wait for the WAL to
    /// reach disk (`synchronous_commit = off`), so they cost the shoppers' requests less.
    /// Never use it for a write that must survive.
    pub async fn connect_background(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        Db::open(url, max_connections, true).await
    }

    async fn open(url: &str, max_connections: u32, relaxed: bool) -> anyhow::Result<Db> {
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
        metrics::gauge!("olivine_db_pool_connections", "state" => "open").set(size);
        metrics::gauge!("olivine_db_pool_connections", "state" => "idle").set(idle);
        metrics::gauge!("olivine_db_pool_connections", "state" => "in_use").set(size - idle);
        metrics::gauge!("olivine_db_pool_max_connections")
            .set(self.pool.options().get_max_connections() as f64);
        metrics::counter!("olivine_db_connection_acquisitions_total")
            .absolute(self.connection_acquisitions());
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
