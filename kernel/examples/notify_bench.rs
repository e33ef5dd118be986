//! Notification benchmark (`bench/notifications.sh` runs it): one kernel with the
//! first-party `webhook-notifier` channel pointed at a local receiver (an axum server in
//! this process), through the whole path: an event in the outbox, the router
//! (`notifications`, cluster-once) rendering and storing the notification and enqueueing
//! its job, a job worker calling the channel plugin in its sandbox, the plugin's HTTP
//! POST through the host's client, the receiver.
//!
//! - **Latency**: `LATENCY` events one at a time (`loyalty.points_earned` for one
//!   customer): from the event's commit to the receiver reading the POST; p50/p99.
//! - **Throughput**: `BURST` such events committed at once; notifications delivered per
//!   second until the last arrives, and every one delivered exactly once.
//!
//! Environment: `DATABASE_URL` (unset: SQLite in a temporary directory), `JOB_WORKERS`
//! (8), `LATENCY` (200), `BURST` (5000).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::ensure;
use common::{enable_plugin, env_or, notify_kernel, percentile_ms, stop_kernel};
use olivine::app::Kernel;
use sqlx::Row;

/// When each notification (by its idempotency key) reached the receiver.
type Arrivals = Arc<Mutex<Vec<(String, Instant)>>>;

async fn receiver() -> anyhow::Result<(String, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().expect("arrivals").push((key, Instant::now()));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let host = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((host, arrivals))
}

async fn record_points(kernel: &Kernel, customer: i64, count: usize) -> anyhow::Result<()> {
    let events: Vec<olivine::bus::NewEvent> = (0..count)
        .map(|_| olivine::bus::NewEvent {
            aggregate_type: "customer",
            aggregate_id: customer.to_string(),
            event_type: "loyalty.points_earned",
            payload: serde_json::json!({"customer": customer, "points": 10, "reason": "bench"}),
        })
        .collect();
    let mut tx = kernel.state.db.begin().await?;
    olivine::bus::record_all(&mut tx, &events).await?;
    tx.commit().await?;
    kernel.state.bus.notify();
    Ok(())
}

async fn notification_rows(state: &olivine::app::AppState) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM notifications")
            .fetch_one(&state.db.pool)
            .await?,
    )
}

async fn wait_for(arrivals: &Arrivals, count: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    while arrivals.lock().expect("arrivals").len() < count {
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {count} notifications arrived",
            arrivals.lock().expect("arrivals").len()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let latency_runs: usize = env_or("LATENCY", 200);
    let burst: usize = env_or("BURST", 5000);
    let (kernel, data) = notify_kernel("notify-bench", |_| {}).await?;
    let (host, arrivals) = receiver().await?;
    enable_plugin(
        &kernel,
        "webhook-notifier",
        &[("url", format!("http://{host}/hook"))],
        host.clone(),
    )
    .await?;
    // One customer; the router checks that they exist and reads their choices.
    let customer: i64 = sqlx::query(
        "INSERT INTO customers (pseudonym, email_lookup, email_enc, name_enc, password_hash,
            created_at, updated_at)
         VALUES ('c_bench', 'bench', '', '', '', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')
         RETURNING id",
    )
    .fetch_one(&kernel.state.db.pool)
    .await?
    .try_get(0)?;
    println!(
        "{}, {} job workers, webhook channel to a local receiver",
        kernel.state.db.backend.name(),
        env_or("JOB_WORKERS", 8)
    );

    // Latency, one at a time (the first few warm the plugin's compiled code and the pool).
    let mut latencies = Vec::with_capacity(latency_runs);
    for i in 0..latency_runs + 5 {
        let before = arrivals.lock().expect("arrivals").len();
        let committed = Instant::now();
        record_points(&kernel, customer, 1).await?;
        wait_for(&arrivals, before + 1).await?;
        let arrived = arrivals.lock().expect("arrivals")[before].1;
        if i >= 5 {
            latencies.push(arrived - committed);
        }
    }
    println!(
        "event committed -> webhook received ({latency_runs} one at a time): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile_ms(&mut latencies, 0.5),
        percentile_ms(&mut latencies, 0.99),
        percentile_ms(&mut latencies, 1.0),
    );

    // Throughput: a burst committed at once.
    let before = arrivals.lock().expect("arrivals").len();
    let rows_before = notification_rows(&kernel.state).await?;
    let started = Instant::now();
    record_points(&kernel, customer, burst).await?;
    // When the router had stored every notification (it runs ahead of delivery).
    let routed = {
        let state = kernel.state.clone();
        tokio::spawn(async move {
            while notification_rows(&state).await? < rows_before + burst as i64 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(started.elapsed())
        })
    };
    wait_for(&arrivals, before + burst).await?;
    let took = started.elapsed();
    println!(
        "the router stored all {burst} in {:.2} s",
        routed.await??.as_secs_f64()
    );
    println!(
        "{burst} events at once -> {burst} webhooks in {:.2} s: {:.0} notifications/s",
        took.as_secs_f64(),
        burst as f64 / took.as_secs_f64()
    );
    // Exactly once: no key twice, and every row delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let keys: std::collections::HashSet<String> = arrivals
        .lock()
        .expect("arrivals")
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    let total = arrivals.lock().expect("arrivals").len();
    ensure!(keys.len() == total, "{} duplicates", total - keys.len());
    let delivered: i64 = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM notifications WHERE status = 'delivered'",
    )
    .fetch_one(&kernel.state.db.pool)
    .await?
    .try_get(0)?;
    ensure!(
        delivered as usize == total,
        "{delivered} rows delivered, {total} received"
    );
    println!("every notification delivered once ({total})");
    // Where the time goes: the channel call itself (instantiate, run, HTTP round trip).
    let row = sqlx::query(
        "SELECT CAST(AVG(duration_us) AS BIGINT), CAST(MAX(duration_us) AS BIGINT)
         FROM plugin_decisions WHERE plugin_id = 'webhook-notifier'",
    )
    .fetch_one(&kernel.state.db.pool)
    .await?;
    println!(
        "the channel call (sandbox + HTTP POST): mean {} us, max {} us",
        row.try_get::<Option<i64>, _>(0)?.unwrap_or(0),
        row.try_get::<Option<i64>, _>(1)?.unwrap_or(0)
    );
    stop_kernel(kernel, data).await;
    Ok(())
}
