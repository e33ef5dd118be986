//! The workers of one node: a loop that fires due schedules, takes back leases that ran
//! out, and leases due jobs (up to twice as many as workers); a task per running job that
//! renews its lease; and a completer that deletes finished jobs in batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::{JobContext, JobRegistry, LeasedJob, NewJob, Permanent, RetryAfter, Schedule};
use crate::app::AppState;
use crate::store::{Backend, Db};
use crate::time::{Clock, format_timestamp};

/// How the workers run; from the serve configuration.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Jobs run at once on this node.
    pub workers: usize,
    /// How long a lease lasts without renewal; a dead node's jobs wait this long.
    pub lease: Duration,
    /// How often the workers look when nothing woke them.
    pub poll_interval: Duration,
    /// The first retry's delay; it doubles with every attempt (up to an hour).
    pub retry_base: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            workers: 4,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            retry_base: Duration::from_secs(1),
        }
    }
}

impl JobsConfig {
    fn backoff(&self, attempt: u32) -> Duration {
        let jitter = 1.0 + rand::random::<f64>() * 0.2;
        self.retry_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .mul_f64(jitter)
            .min(Duration::from_secs(3600))
    }
}

/// The job workers of one node.
pub struct JobRuntime {
    leaser: JoinHandle<()>,
    completer: JoinHandle<()>,
}

impl JobRuntime {
    /// Enters the schedules and starts the workers. `state` is the kernel's state on
    /// the jobs' pool; `bookkeeping` (the relaxed background pool) deletes finished
    /// jobs: a deletion lost with a database crash only runs that job again.
    pub async fn start(
        state: AppState,
        bookkeeping: Db,
        registry: Arc<JobRegistry>,
        config: JobsConfig,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<JobRuntime> {
        for schedule in registry.schedules() {
            enter_schedule(&state.db, schedule, &state.clock).await?;
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let completer = tokio::spawn(complete_finished(bookkeeping, done_rx));
        let leaser = tokio::spawn(
            Leaser {
                state,
                registry,
                config,
                done: done_tx,
            }
            .run(shutdown),
        );
        Ok(JobRuntime { leaser, completer })
    }

    /// Waits for the workers to stop (after the shutdown signal).
    pub async fn stop(self) {
        if let Err(err) = self.leaser.await {
            tracing::warn!(error = %err, "the job workers ended abnormally");
        }
        // Jobs given back at shutdown may still be running; their completions no longer
        // matter (they would find their lease gone).
        if let Ok(Err(err)) = tokio::time::timeout(Duration::from_secs(5), self.completer).await {
            tracing::warn!(error = %err, "the job completer ended abnormally");
        }
    }
}

/// Adds or updates a schedule's row; an earlier next run (a shorter interval, or one
/// that runs at start) wins over the stored one.
async fn enter_schedule(db: &Db, schedule: &Schedule, clock: &Clock) -> anyhow::Result<()> {
    let now = clock.now();
    let next = if schedule.at_start {
        now
    } else {
        now + chrono::Duration::from_std(schedule.interval).unwrap_or_default()
    };
    sqlx::query(
        "INSERT INTO job_schedules (name, kind, interval_secs, next_run_at, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET kind = excluded.kind,
            interval_secs = excluded.interval_secs, updated_at = excluded.updated_at,
            next_run_at = CASE WHEN excluded.next_run_at < job_schedules.next_run_at
                THEN excluded.next_run_at ELSE job_schedules.next_run_at END",
    )
    .bind(schedule.name)
    .bind(schedule.kind)
    .bind(i64::try_from(schedule.interval.as_secs()).unwrap_or(i64::MAX))
    .bind(format_timestamp(next))
    .bind(format_timestamp(now))
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// A job that finished, for the completer.
struct Finished {
    id: i64,
    attempt: u32,
}

struct Leaser {
    state: AppState,
    registry: Arc<JobRegistry>,
    config: JobsConfig,
    done: mpsc::UnboundedSender<Finished>,
}

impl Leaser {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // Up to twice the workers are leased at a time (the second half waits for a
        // worker), so a busy node leases in batches rather than one job per statement.
        let workers = self.config.workers.max(1);
        let in_hand = Arc::new(Semaphore::new(workers * 2));
        let slots = Arc::new(Semaphore::new(workers));
        let lease_sql = lease_sql(self.state.db.backend, &self.registry.kinds());
        let mut last_reap = Instant::now() - self.config.lease;
        let reap_every = (self.config.lease / 4).max(Duration::from_millis(250));
        let mut backoff = Duration::from_millis(100);
        // When a schedule is due next; looked at again then, or after a poll interval.
        let mut schedules_due = self.state.clock.now();
        let mut wakeups = self.state.bus.jobs_wakeups();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let step = async {
                if last_reap.elapsed() >= reap_every {
                    self.reap().await?;
                    last_reap = Instant::now();
                }
                let now = self.state.clock.now();
                if now >= schedules_due {
                    let poll =
                        chrono::Duration::from_std(self.config.poll_interval).unwrap_or_default();
                    schedules_due = self
                        .fire_due_schedules()
                        .await?
                        .map_or(now + poll, |next| next.min(now + poll));
                }
                let next_schedule =
                    (!self.registry.schedules().is_empty()).then_some(schedules_due);
                let free = in_hand.available_permits();
                let leased = if free > 0 {
                    self.lease(&lease_sql, free).await?
                } else {
                    Vec::new()
                };
                let full = free > 0 && leased.len() == free;
                for job in leased {
                    let Ok(held) = in_hand.clone().try_acquire_owned() else {
                        break;
                    };
                    let runner = Runner {
                        state: self.state.clone(),
                        registry: self.registry.clone(),
                        config: self.config.clone(),
                        done: self.done.clone(),
                    };
                    let slots = slots.clone();
                    tokio::spawn(async move {
                        let leased_at = Instant::now();
                        if let Ok(_worker) = slots.acquire_owned().await {
                            runner.run(job, leased_at).await;
                        }
                        drop(held);
                    });
                }
                let next_job = if full || free == 0 {
                    None
                } else {
                    self.next_due().await?
                };
                Ok::<_, crate::error::Error>((full || free == 0, next_schedule, next_job))
            };
            match step.await {
                Ok((busy, next_schedule, next_job)) => {
                    backoff = Duration::from_millis(100);
                    if busy {
                        // Everything leased is running or waiting: lease again once half
                        // of it is done.
                        let half = u32::try_from(workers).unwrap_or(u32::MAX);
                        tokio::select! {
                            permits = in_hand.clone().acquire_many_owned(half) => drop(permits),
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                    let wake_at = [next_schedule, next_job]
                        .into_iter()
                        .flatten()
                        .min()
                        .unwrap_or_else(|| {
                            self.state.clock.now()
                                + chrono::Duration::from_std(self.config.poll_interval)
                                    .unwrap_or_default()
                        });
                    tokio::select! {
                        _ = wakeups.changed() => {}
                        _ = self.state.clock.sleep_until(wake_at, self.config.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "job workers: looking for work failed; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        // Stopping: let running jobs finish for a while; what is still running then is
        // given back at once rather than when its lease runs out.
        let all = u32::try_from(workers * 2).unwrap_or(u32::MAX);
        let drained =
            tokio::time::timeout(Duration::from_secs(10), in_hand.acquire_many(all)).await;
        if drained.is_err() {
            let node = self.state.bus.node_id();
            match sqlx::query(
                "UPDATE jobs SET state = 'queued', leased_by = NULL, lease_until = NULL
                 WHERE state = 'running' AND leased_by = $1",
            )
            .bind(node)
            .execute(&self.state.db.pool)
            .await
            {
                Ok(done) => tracing::warn!(
                    jobs = done.rows_affected(),
                    "stopping with jobs still running: given back to the queue"
                ),
                Err(err) => tracing::warn!(error = %err, "could not give running jobs back"),
            }
        }
    }

    /// Jobs whose lease ran out (their node died or stalled) are queued again, or dead
    /// when that was their last attempt.
    async fn reap(&self) -> crate::error::Result<()> {
        let now = format_timestamp(self.state.clock.now());
        let rows = sqlx::query(
            "UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                leased_by = NULL, lease_until = NULL, run_at = $1, updated_at = $1,
                last_error = 'the lease ran out: the worker died or stalled'
             WHERE state = 'running' AND lease_until < $1
             RETURNING id, kind, leased_by, state",
        )
        .bind(&now)
        .fetch_all(&self.state.db.pool)
        .await?;
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let kind: String = row.try_get(1)?;
            let state: String = row.try_get(3)?;
            tracing::warn!(job = id, kind, state, "a job's lease ran out: taken back");
            if state == "dead" {
                metrics::counter!("olivine_jobs_dead_total", "kind" => kind).increment(1);
            }
        }
        Ok(())
    }

    /// Enqueues the run of every schedule that is due (only the node that moves the
    /// schedule's next run does); answers when the next schedule is due.
    async fn fire_due_schedules(&self) -> crate::error::Result<Option<DateTime<Utc>>> {
        let schedules = self.registry.schedules();
        if schedules.is_empty() {
            return Ok(None);
        }
        let now = self.state.clock.now();
        let rows = sqlx::query("SELECT name, next_run_at, interval_secs FROM job_schedules")
            .fetch_all(&self.state.db.pool)
            .await?;
        let mut next: Option<DateTime<Utc>> = None;
        for row in rows {
            let name: String = row.try_get(0)?;
            let next_run_at: String = row.try_get(1)?;
            let interval_secs: i64 = row.try_get(2)?;
            let Some(schedule) = schedules.iter().find(|s| s.name == name) else {
                continue;
            };
            let due = crate::time::parse_timestamp(&next_run_at).unwrap_or(now);
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            let following = now + chrono::Duration::seconds(interval_secs.max(1));
            next = Some(next.map_or(following, |n| n.min(following)));
            let mut tx = self.state.db.begin().await?;
            let moved = sqlx::query(
                "UPDATE job_schedules SET next_run_at = $1, updated_at = $2
                 WHERE name = $3 AND next_run_at = $4",
            )
            .bind(format_timestamp(following))
            .bind(format_timestamp(now))
            .bind(&name)
            .bind(&next_run_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                continue;
            }
            let job = NewJob::new(schedule.kind, serde_json::json!({ "schedule": name }))
                .unique(format!("schedule:{name}"))
                .max_attempts(3);
            if super::enqueue(&mut tx, &job, now).await?.is_none() {
                // The last run still holds the key (queued, running or retrying): the
                // schedule stays due and fires again after it, instead of waiting a whole
                // interval for what changed while it ran. Dropping `tx` rolls back the move.
                let retry =
                    now + chrono::Duration::from_std(self.config.poll_interval).unwrap_or_default();
                next = Some(next.map_or(retry, |n| n.min(retry)));
                continue;
            }
            tx.commit().await?;
        }
        Ok(next)
    }

    async fn lease(&self, sql: &str, limit: usize) -> crate::error::Result<Vec<LeasedJob>> {
        let now = self.state.clock.now();
        let until = now + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(self.state.bus.node_id().to_owned())
            .bind(format_timestamp(until))
            .bind(format_timestamp(now))
            .bind(i64::try_from(limit).unwrap_or(1));
        for kind in self.registry.kinds() {
            query = query.bind(kind);
        }
        let rows = query.fetch_all(&self.state.db.pool).await?;
        let mut jobs = rows
            .iter()
            .map(|row| {
                let payload: String = row.try_get(2)?;
                Ok(LeasedJob {
                    id: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    payload: serde_json::from_str(&payload)
                        .unwrap_or(serde_json::Value::String(payload)),
                    attempt: u32::try_from(row.try_get::<i64, _>(3)?).unwrap_or(u32::MAX),
                    max_attempts: u32::try_from(row.try_get::<i64, _>(4)?).unwrap_or(1),
                    unique_key: row.try_get(5)?,
                    run_at: row.try_get(6)?,
                    created_at: row.try_get(7)?,
                })
            })
            .collect::<crate::error::Result<Vec<_>>>()?;
        jobs.sort_by(|a, b| (&a.run_at, a.id).cmp(&(&b.run_at, b.id)));
        Ok(jobs)
    }

    /// When the next queued job of a kind this node runs falls due (jobs due now that
    /// it could not lease are another worker's).
    async fn next_due(&self) -> crate::error::Result<Option<DateTime<Utc>>> {
        let kinds = self.registry.kinds();
        let placeholders = (0..kinds.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND run_at > $1 AND kind IN ({})",
            if kinds.is_empty() {
                "''".to_owned()
            } else {
                placeholders
            }
        );
        let mut query =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(format_timestamp(self.state.clock.now()));
        for kind in kinds {
            query = query.bind(kind);
        }
        let row = query.fetch_one(&self.state.db.pool).await?;
        let next: Option<String> = row.try_get(0)?;
        Ok(next.as_deref().and_then(crate::time::parse_timestamp))
    }
}

/// The lease statement: due jobs of the kinds this node runs, oldest first; on
/// PostgreSQL rows another worker is leasing are skipped, not waited for.
fn lease_sql(backend: Backend, kinds: &[&str]) -> String {
    let kinds = if kinds.is_empty() {
        "''".to_owned()
    } else {
        (0..kinds.len())
            .map(|i| format!("${}", i + 5))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let skip_locked = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, leased_by = $1,
            lease_until = $2, updated_at = $3
         WHERE id IN (SELECT id FROM jobs
            WHERE state = 'queued' AND run_at <= $3 AND kind IN ({kinds})
            ORDER BY run_at, id LIMIT $4 {skip_locked})
         RETURNING id, kind, payload, attempts, max_attempts, unique_key, run_at, created_at"
    )
}

/// Runs one leased job and records how it ended.
struct Runner {
    state: AppState,
    registry: Arc<JobRegistry>,
    config: JobsConfig,
    done: mpsc::UnboundedSender<Finished>,
}

impl Runner {
    async fn run(self, job: LeasedJob, leased_at: Instant) {
        let Some(handler) = self.registry.get(&job.kind).cloned() else {
            return;
        };
        let kind = job.kind.clone();
        let (id, attempt) = (job.id, job.attempt);
        // A job that waited long for a worker confirms its lease first: one whose lease
        // ran out meanwhile may be running elsewhere already.
        if leased_at.elapsed() > self.config.lease / 3 && !self.renew(id, attempt).await {
            return;
        }
        let started = Instant::now();
        let ctx = JobContext::new(job, self.state.clone());
        crate::failpoint::hit_async("jobs.running").await;
        let outcome = {
            let run = handler.run(&ctx);
            tokio::pin!(run);
            let mut renew = tokio::time::interval(self.config.lease / 3);
            renew.tick().await;
            loop {
                tokio::select! {
                    outcome = &mut run => break outcome,
                    _ = renew.tick() => {
                        self.renew(id, attempt).await;
                    }
                }
            }
        };
        metrics::histogram!("olivine_job_duration_seconds", "kind" => kind.clone())
            .record(started.elapsed().as_secs_f64());
        let schedule = ctx
            .job
            .payload
            .get("schedule")
            .and_then(|s| s.as_str())
            .map(str::to_owned);
        match outcome {
            Ok(()) => {
                metrics::counter!("olivine_jobs_completed_total", "kind" => kind).increment(1);
                match schedule {
                    // Done and counted at once: the schedule's next run must not find
                    // this one still holding the schedule's key.
                    Some(name) => self.complete_scheduled(&ctx, &name).await,
                    None if !ctx.completed_in_handler() => {
                        let _ = self.done.send(Finished { id, attempt });
                    }
                    None => {}
                }
            }
            Err(err) => {
                let error = format!("{err:#}");
                let permanent = err.downcast_ref::<Permanent>().is_some();
                let after = err.downcast_ref::<RetryAfter>().map(|r| r.0);
                self.fail(&ctx.job, &error, permanent, after).await;
                if let Some(name) = schedule {
                    self.schedule_ran(&name, Some(&error)).await;
                }
            }
        }
    }

    /// Extends the lease; false when it is no longer this worker's.
    async fn renew(&self, id: i64, attempt: u32) -> bool {
        let until = self.state.clock.now()
            + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        match sqlx::query(
            "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND attempts = $3 AND state = 'running'",
        )
        .bind(format_timestamp(until))
        .bind(id)
        .bind(i64::from(attempt))
        .execute(&self.state.db.pool)
        .await
        {
            Ok(done) if done.rows_affected() == 0 => {
                tracing::warn!(job = id, "a job's lease was lost (it waited or ran longer than its lease without renewing)");
                false
            }
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(job = id, error = %err, "renewing a job's lease failed");
                true
            }
        }
    }

    /// Puts a failed job back for later, or dead after its last attempt (a scheduled
    /// run gives its unique key back then, so the next interval runs).
    async fn fail(&self, job: &LeasedJob, error: &str, permanent: bool, after: Option<Duration>) {
        let dead = permanent || job.attempt >= job.max_attempts;
        let now = self.state.clock.now();
        let delay = self
            .config
            .backoff(job.attempt)
            .max(after.unwrap_or_default());
        let retry_at =
            now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(1));
        let state = if dead { "dead" } else { "queued" };
        let result = sqlx::query(
            "UPDATE jobs SET state = $1, run_at = $2, last_error = $3, leased_by = NULL,
                lease_until = NULL, updated_at = $4,
                unique_key = CASE WHEN $1 = 'dead' AND unique_key LIKE 'schedule:%' THEN NULL
                    ELSE unique_key END
             WHERE id = $5 AND attempts = $6 AND state = 'running'",
        )
        .bind(state)
        .bind(format_timestamp(if dead { now } else { retry_at }))
        .bind(error)
        .bind(format_timestamp(now))
        .bind(job.id)
        .bind(i64::from(job.attempt))
        .execute(&self.state.db.pool)
        .await;
        metrics::counter!("olivine_jobs_failed_total", "kind" => job.kind.clone()).increment(1);
        if dead {
            metrics::counter!("olivine_jobs_dead_total", "kind" => job.kind.clone()).increment(1);
            tracing::error!(
                job = job.id,
                kind = job.kind,
                attempts = job.attempt,
                error,
                "job failed for the last time: dead"
            );
        } else {
            tracing::warn!(job = job.id, kind = job.kind, attempt = job.attempt, error, retry_at = %format_timestamp(retry_at), "job failed; will retry");
        }
        if let Err(err) = result {
            tracing::warn!(job = job.id, error = %err, "recording a job's failure failed (its lease will run out and it runs again)");
        }
    }

    /// Deletes a scheduled run and counts it, in one transaction.
    async fn complete_scheduled(&self, ctx: &JobContext, name: &str) {
        let done = async {
            let mut tx = self.state.db.begin().await?;
            if !ctx.completed_in_handler() {
                ctx.complete_in(&mut tx).await?;
            }
            record_run(
                &mut tx,
                name,
                self.state.bus.node_id(),
                &self.state.clock,
                None,
            )
            .await?;
            tx.commit().await?;
            Ok::<_, anyhow::Error>(())
        };
        if let Err(err) = done.await {
            tracing::warn!(schedule = name, error = %format!("{err:#}"), "completing a scheduled run failed (its lease will run out and it runs again)");
        }
    }

    async fn schedule_ran(&self, name: &str, error: Option<&str>) {
        let mut conn = match self.state.db.pool.acquire().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(schedule = name, error = %err, "recording a scheduled run failed");
                return;
            }
        };
        if let Err(err) = record_run(
            &mut conn,
            name,
            self.state.bus.node_id(),
            &self.state.clock,
            error,
        )
        .await
        {
            tracing::warn!(schedule = name, error = %err, "recording a scheduled run failed");
        }
    }
}

/// Counts a run of a schedule, by `node`, with its error when it failed.
async fn record_run(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    node: &str,
    clock: &Clock,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE job_schedules SET runs = runs + 1, last_run_at = $1, last_node = $2,
            last_error = $3 WHERE name = $4",
    )
    .bind(format_timestamp(clock.now()))
    .bind(node)
    .bind(error)
    .bind(name)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes finished jobs, many to a statement. A crash before that runs them again
/// (jobs are at least once; exactly-once effects complete in their own transaction).
async fn complete_finished(db: Db, mut done: mpsc::UnboundedReceiver<Finished>) {
    let mut batch = Vec::with_capacity(100);
    while let Some(first) = done.recv().await {
        batch.push(first);
        // Gather what finishes within a millisecond: one statement for many jobs.
        let gather = tokio::time::sleep(Duration::from_millis(1));
        tokio::pin!(gather);
        while batch.len() < 200 {
            tokio::select! {
                next = done.recv() => match next {
                    Some(next) => batch.push(next),
                    None => break,
                },
                _ = &mut gather => break,
            }
        }
        // `id IN (…)` finds the rows by the primary key; the pairs fence each lease.
        let ids = (0..batch.len())
            .map(|i| format!("${}", i * 2 + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let pairs = (0..batch.len())
            .map(|i| format!("(${}, ${})", i * 2 + 1, i * 2 + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "DELETE FROM jobs WHERE id IN ({ids}) AND state = 'running'
                AND (id, attempts) IN (VALUES {pairs})"
        );
        let mut delete = sqlx::query(sqlx::AssertSqlSafe(sql));
        for finished in &batch {
            delete = delete.bind(finished.id).bind(i64::from(finished.attempt));
        }
        if let Err(err) = delete.execute(&db.pool).await {
            tracing::warn!(error = %err, jobs = batch.len(), "completing jobs failed (their leases will run out and they run again)");
        }
        batch.clear();
    }
}
