//! Job queue throughput (`bench/jobs.sh` runs it): two kernel nodes on one PostgreSQL
//! database lease from one queue. For each kind of job it enqueues `JOBS` jobs in one
//! transaction, wakes the workers, and times until the queue is empty:
//!
//! - `noop`: a handler that does nothing (the queue's own cost: lease, run, complete);
//! - `write`: a handler that writes one row and completes the job in the same
//!   transaction (exactly once: a unique key on the row's job id would refuse a second
//!   run, and the handler counts its invocations).
//!
//! Then it checks that every job ran exactly once. Environment: `DATABASE_URL` (a fresh
//! PostgreSQL database), `JOBS` (20000), `JOB_WORKERS` (workers per node, 8), `RUNS` (3).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use olivine::app::{Extensions, Kernel};
use olivine::config::ServeConfig;
use olivine::jobs::{FnHandler, JobContext, JobRegistry, NewJob};
use sqlx::Row;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn registry(noop: Arc<AtomicUsize>, write: Arc<AtomicUsize>) -> JobRegistry {
    let mut registry = JobRegistry::default();
    registry.handler(FnHandler::new("bench.noop", move |_ctx: &JobContext| {
        noop.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }));
    registry.handler(FnHandler::new("bench.write", move |ctx: &JobContext| {
        let write = write.clone();
        Box::pin(async move {
            write.fetch_add(1, Ordering::Relaxed);
            let mut tx = ctx.state.db.begin().await?;
            sqlx::query("INSERT INTO bench_effects (job_id, node) VALUES ($1, $2)")
                .bind(ctx.job.id)
                .bind(ctx.state.bus.node_id())
                .execute(&mut *tx)
                .await?;
            ctx.complete_in(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }));
    registry
}

async fn node(
    url: &str,
    data: &std::path::Path,
    name: &str,
    workers: usize,
    noop: &Arc<AtomicUsize>,
    write: &Arc<AtomicUsize>,
) -> anyhow::Result<Kernel> {
    let mut config = ServeConfig::for_data_dir(data);
    config.store.database_url = Some(url.to_owned());
    config.admin_token = Some("jobs-bench-admin-token".to_owned());
    config.session_sweep_secs = 0;
    config.payment_reconcile_secs = 0;
    config.cluster.node_id = Some(name.to_owned());
    config.cluster.job_workers = workers;
    config.cluster.bus_prune_secs = 0;
    Kernel::start_with(
        config,
        Extensions {
            jobs: registry(noop.clone(), write.clone()),
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("starting node {name}"))
}

async fn count(kernel: &Kernel, sql: &'static str) -> anyhow::Result<i64> {
    Ok(sqlx::query(sql)
        .fetch_one(&kernel.state.db.pool)
        .await?
        .try_get(0)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL (a PostgreSQL database)")?;
    let jobs: usize = env_or("JOBS", 20_000);
    let workers: usize = env_or("JOB_WORKERS", 8);
    let runs: usize = env_or("RUNS", 3);
    let data = tempfile_dir()?;
    let noop = Arc::new(AtomicUsize::new(0));
    let write = Arc::new(AtomicUsize::new(0));
    let a = node(&url, &data, "bench-a", workers, &noop, &write).await?;
    let b = node(&url, &data, "bench-b", workers, &noop, &write).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_effects (job_id BIGINT PRIMARY KEY, node TEXT NOT NULL)",
    )
    .execute(&a.state.db.pool)
    .await?;
    println!("two nodes, {workers} workers each, {jobs} jobs per run, PostgreSQL");
    let mut counted_by_b = 0;
    for kind in ["bench.noop", "bench.write"] {
        for run in 1..=runs {
            // Each run starts from a vacuumed queue, as autovacuum keeps it on a server
            // that runs it (this machine's PostgreSQL has autovacuum off).
            for table in ["VACUUM ANALYZE jobs", "VACUUM ANALYZE bench_effects"] {
                sqlx::query(table).execute(&a.state.db.pool).await?;
            }
            let batch: Vec<NewJob> = (0..jobs)
                .map(|i| NewJob::new(kind, serde_json::json!({ "i": i })))
                .collect();
            let mut tx = a.state.db.begin().await?;
            olivine::jobs::enqueue_all(&mut tx, &batch, a.state.clock.now()).await?;
            tx.commit().await?;
            let started = Instant::now();
            a.state.bus.notify_jobs();
            // Polled lightly (is there a first row, every 10 ms), not counted: a COUNT
            // over a table that churns like a queue would cost more than the jobs.
            loop {
                let left = sqlx::query("SELECT id FROM jobs LIMIT 1")
                    .fetch_optional(&a.state.db.pool)
                    .await?;
                if left.is_none() {
                    break;
                }
                ensure!(
                    started.elapsed() < Duration::from_secs(600),
                    "the queue did not drain"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let took = started.elapsed();
            let by_b: i64 = if kind == "bench.write" {
                let total_by_b = count(
                    &a,
                    "SELECT CAST(COUNT(*) AS BIGINT) FROM bench_effects WHERE node = 'bench-b'",
                )
                .await?;
                let this_run = total_by_b - counted_by_b;
                counted_by_b = total_by_b;
                this_run
            } else {
                -1
            };
            println!(
                "{kind:<12} run {run}: {jobs} jobs in {:>6.2} s = {:>7.0} jobs/s{}",
                took.as_secs_f64(),
                jobs as f64 / took.as_secs_f64(),
                if by_b >= 0 {
                    format!(" (node b ran {by_b})")
                } else {
                    String::new()
                }
            );
        }
    }
    let total = jobs * runs;
    let effects = count(&a, "SELECT CAST(COUNT(*) AS BIGINT) FROM bench_effects").await? as usize;
    let dead = count(
        &a,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM jobs WHERE state = 'dead'",
    )
    .await?;
    println!(
        "invocations: noop {} of {total}, write {} of {total}; rows written {effects}; dead {dead}",
        noop.load(Ordering::Relaxed),
        write.load(Ordering::Relaxed)
    );
    ensure!(
        noop.load(Ordering::Relaxed) == total,
        "a no-op job ran twice or never"
    );
    ensure!(
        write.load(Ordering::Relaxed) == total,
        "a writing job ran twice or never"
    );
    ensure!(
        effects == total && dead == 0,
        "a row was lost or written twice"
    );
    println!("zero jobs ran twice");
    b.shutdown().await;
    a.shutdown().await;
    std::fs::remove_dir_all(&data).ok();
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("olivine-jobs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
