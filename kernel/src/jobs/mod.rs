//! Durable jobs: work that must happen once, now or later, whichever node does it.
//!
//! A job is a row in `jobs`, enqueued in the transaction of the change that calls for it
//! ([`enqueue`]), so it exists exactly when that change does. Every node's workers lease
//! due jobs (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer), run them,
//! and delete them when done. A failure puts the job back for later with exponential
//! backoff; after its attempts it stays `dead` for staff to read and retry. A node that
//! dies mid-job loses nothing: the lease runs out and another node takes the job again.
//!
//! A lease is named by (id, attempts): attempts grows with every lease, so a worker whose
//! lease ran out cannot complete or fail the job someone else now holds. A handler whose
//! effect is in the database makes it exactly once by completing the job in the same
//! transaction ([`JobContext::complete_in`]); one that calls the outside world uses the
//! job's [`JobContext::idempotency_key`] there.
//!
//! Periodic work (the session sweep, the payment reconciler, pruning the event log) is a
//! [`Schedule`]: once per interval for the whole cluster, whichever node is first.

pub mod api;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use crate::app::AppState;
use crate::error::Result;
use crate::store::Db;
use crate::time::format_timestamp;

pub use worker::{JobRuntime, JobsConfig};

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: serde_json::Value,
    /// When it may run; `None`: now.
    pub run_at: Option<DateTime<Utc>>,
    /// At most one job with this key exists at a time (queued, running or dead):
    /// enqueueing another is a no-op. A renewal uses `renewal:<subscription>:<cycle>`.
    pub unique_key: Option<String>,
    /// `None`: the kernel's default (`OLIVINE_JOB_MAX_ATTEMPTS`).
    pub max_attempts: Option<u32>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> NewJob {
        NewJob {
            kind: kind.into(),
            payload,
            run_at: None,
            unique_key: None,
            max_attempts: None,
        }
    }

    pub fn at(mut self, run_at: DateTime<Utc>) -> NewJob {
        self.run_at = Some(run_at);
        self
    }

    pub fn unique(mut self, key: impl Into<String>) -> NewJob {
        self.unique_key = Some(key.into());
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> NewJob {
        self.max_attempts = Some(attempts);
        self
    }
}

/// The default number of attempts when a job does not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// Enqueues a job within the caller's transaction; answers its id, or `None` when a job
/// with its unique key exists already. After committing, call
/// [`crate::bus::Bus::notify_jobs`] when it is due now, so a worker starts at once.
pub async fn enqueue(
    conn: &mut AnyConnection,
    job: &NewJob,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    let now_text = format_timestamp(now);
    let run_at = format_timestamp(job.run_at.unwrap_or(now));
    let row = sqlx::query(
        "INSERT INTO jobs (kind, payload, unique_key, state, run_at, attempts, max_attempts,
            created_at, updated_at)
         VALUES ($1, $2, $3, 'queued', $4, 0, $5, $6, $6)
         ON CONFLICT (unique_key) DO NOTHING
         RETURNING id",
    )
    .bind(&job.kind)
    .bind(job.payload.to_string())
    .bind(job.unique_key.as_deref())
    .bind(run_at)
    .bind(i64::from(job.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)))
    .bind(now_text)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Enqueues many jobs in one statement per 200 (jobs without unique keys).
pub async fn enqueue_all(
    conn: &mut AnyConnection,
    jobs: &[NewJob],
    now: DateTime<Utc>,
) -> Result<()> {
    let now_text = format_timestamp(now);
    for chunk in jobs.chunks(200) {
        let sql = format!(
            "INSERT INTO jobs (kind, payload, unique_key, state, run_at, attempts, max_attempts,
                created_at, updated_at) VALUES {}
             ON CONFLICT (unique_key) DO NOTHING",
            (0..chunk.len())
                .map(|i| {
                    let b = i * 6;
                    format!(
                        "(${}, ${}, ${}, 'queued', ${}, 0, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 6
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for job in chunk {
            insert = insert
                .bind(&job.kind)
                .bind(job.payload.to_string())
                .bind(job.unique_key.as_deref())
                .bind(format_timestamp(job.run_at.unwrap_or(now)))
                .bind(i64::from(job.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)))
                .bind(&now_text);
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A leased job, as its handler sees it.
#[derive(Debug, Clone)]
pub struct LeasedJob {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    /// This lease's number: 1 on the first run.
    pub attempt: u32,
    pub max_attempts: u32,
    pub unique_key: Option<String>,
    pub run_at: String,
    pub created_at: String,
}

/// What a handler gets: the job, the kernel's state (on the jobs' own connection pool,
/// never the shoppers'), and a way to complete the job inside its own transaction.
pub struct JobContext {
    pub job: LeasedJob,
    pub state: AppState,
    completed: AtomicBool,
}

impl JobContext {
    pub(crate) fn new(job: LeasedJob, state: AppState) -> JobContext {
        JobContext {
            job,
            state,
            completed: AtomicBool::new(false),
        }
    }

    /// The payload, typed.
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_value(self.job.payload.clone())
            .map_err(|e| anyhow::Error::new(Permanent(format!("the job's payload: {e}"))))
    }

    /// A key that stays the same over every attempt of this job: give it to the outside
    /// world (a processor, a push service) so a retried attempt is recognised.
    pub fn idempotency_key(&self) -> String {
        format!("job-{}", self.job.id)
    }

    /// Completes the job in the caller's transaction: the handler's writes and the job's
    /// end commit together, so they happen once. Fails (and the caller must roll back)
    /// when the lease was lost to another worker.
    pub async fn complete_in(&self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        let done =
            sqlx::query("DELETE FROM jobs WHERE id = $1 AND attempts = $2 AND state = 'running'")
                .bind(self.job.id)
                .bind(i64::from(self.job.attempt))
                .execute(&mut *conn)
                .await?
                .rows_affected();
        anyhow::ensure!(
            done == 1,
            "job {} is no longer leased by this worker",
            self.job.id
        );
        self.completed.store(true, Ordering::Release);
        Ok(())
    }

    pub(crate) fn completed_in_handler(&self) -> bool {
        self.completed.load(Ordering::Acquire)
    }
}

/// A handler error that no retry can fix (a payload that does not parse, a thing that
/// no longer exists): the job goes dead at once.
#[derive(Debug)]
pub struct Permanent(pub String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

/// A handler error that asks for the next attempt no sooner than `.0` (a provider's
/// `Retry-After`); the usual backoff applies when it is longer.
#[derive(Debug)]
pub struct RetryAfter(pub Duration, pub String);

impl std::fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for RetryAfter {}

pub type JobFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// Runs jobs of one kind. Jobs are at least once: a handler may be run again for a job
/// whose earlier attempt did its work but died before completing it.
pub trait JobHandler: Send + Sync {
    fn kind(&self) -> &'static str;
    fn run<'a>(&'a self, ctx: &'a JobContext) -> JobFuture<'a>;
}

/// A handler from a function, for kinds that need nothing but the context.
pub struct FnHandler<F> {
    kind: &'static str,
    run: F,
}

impl<F> FnHandler<F>
where
    F: for<'a> Fn(&'a JobContext) -> JobFuture<'a> + Send + Sync,
{
    pub fn new(kind: &'static str, run: F) -> Arc<FnHandler<F>> {
        Arc::new(FnHandler { kind, run })
    }
}

impl<F> JobHandler for FnHandler<F>
where
    F: for<'a> Fn(&'a JobContext) -> JobFuture<'a> + Send + Sync,
{
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> JobFuture<'a> {
        (self.run)(ctx)
    }
}

/// Periodic work: a job of `kind` every `interval`, once for the cluster.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: &'static str,
    pub kind: &'static str,
    pub interval: Duration,
    /// Also run when a node starts (the reconciler settles what a crash left at once).
    pub at_start: bool,
}

/// The handlers and schedules a node runs.
#[derive(Clone, Default)]
pub struct JobRegistry {
    handlers: HashMap<&'static str, Arc<dyn JobHandler>>,
    schedules: Vec<Schedule>,
}

impl JobRegistry {
    pub fn handler(&mut self, handler: Arc<dyn JobHandler>) -> &mut Self {
        self.handlers.insert(handler.kind(), handler);
        self
    }

    pub fn schedule(&mut self, schedule: Schedule) -> &mut Self {
        self.schedules.push(schedule);
        self
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&Arc<dyn JobHandler>> {
        self.handlers.get(kind)
    }

    pub(crate) fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.handlers.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }

    pub(crate) fn schedules(&self) -> &[Schedule] {
        &self.schedules
    }
}

/// How many jobs are in each state, and how long the oldest due one has waited.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    /// Due or scheduled, never tried.
    pub queued: i64,
    /// Failed at least once, waiting for another attempt.
    pub retrying: i64,
    pub running: i64,
    pub dead: i64,
    /// Seconds the oldest due job has waited for a worker (0 when none waits).
    pub oldest_due_age_secs: f64,
}

pub async fn stats(db: &Db, now: DateTime<Utc>) -> Result<QueueStats> {
    let now_text = format_timestamp(now);
    let rows = sqlx::query(
        "SELECT state, CAST(CASE WHEN attempts > 0 THEN 1 ELSE 0 END AS BIGINT),
            CAST(COUNT(*) AS BIGINT), MIN(CASE WHEN run_at <= $1 THEN run_at END)
         FROM jobs GROUP BY state, CAST(CASE WHEN attempts > 0 THEN 1 ELSE 0 END AS BIGINT)",
    )
    .bind(&now_text)
    .fetch_all(&db.pool)
    .await?;
    let mut stats = QueueStats::default();
    let mut oldest: Option<String> = None;
    for row in rows {
        let state: String = row.try_get(0)?;
        let tried: i64 = row.try_get(1)?;
        let count: i64 = row.try_get(2)?;
        let due: Option<String> = row.try_get(3)?;
        match (state.as_str(), tried) {
            ("queued", 0) => stats.queued += count,
            ("queued", _) => stats.retrying += count,
            ("running", _) => stats.running += count,
            _ => stats.dead += count,
        }
        if state == "queued"
            && let Some(due) = due
            && oldest.as_ref().is_none_or(|o| &due < o)
        {
            oldest = Some(due);
        }
    }
    if let Some(at) = oldest.as_deref().and_then(crate::time::parse_timestamp) {
        stats.oldest_due_age_secs = ((now - at).num_milliseconds().max(0) as f64) / 1000.0;
    }
    Ok(stats)
}

/// Publishes the queue's gauges; called when `/metrics` is scraped.
pub async fn record_metrics(db: &Db, now: DateTime<Utc>) {
    match stats(db, now).await {
        Ok(stats) => {
            for (state, count) in [
                ("queued", stats.queued),
                ("retrying", stats.retrying),
                ("running", stats.running),
                ("dead", stats.dead),
            ] {
                metrics::gauge!("olivine_jobs", "state" => state).set(count as f64);
            }
            metrics::gauge!("olivine_jobs_oldest_queued_age_seconds")
                .set(stats.oldest_due_age_secs);
        }
        Err(err) => tracing::warn!(error = %err, "reading the job queue's figures failed"),
    }
}
