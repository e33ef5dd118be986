//! Push benchmark (`bench/push.sh` runs it): from `order.fulfilled` committed to the
//! mock APNs (HTTP/2 over TLS with a test CA, checking the ES256 provider token, the
//! same server the tests use) receiving the push, through the whole path: the router
//! planning `order.shipped` for the customer's device, the `notify.deliver` job, the
//! first-party `apns` plugin in its sandbox (its provider token kept in the host
//! cache), the host's HTTP/2 client.
//!
//! - **Latency**: `LATENCY` events one at a time; p50/p99 (aim: p99 under 2 s).
//! - **Throughput**: `BURST` events committed at once; pushes per second.
//!
//! Environment: `DATABASE_URL` (unset: SQLite in a temporary directory), `JOB_WORKERS`
//! (8), `LATENCY` (200), `BURST` (2000).

mod common;
#[path = "../tests/suite/common/mock_providers.rs"]
#[allow(dead_code)]
mod mock_providers;

use std::time::{Duration, Instant};

use anyhow::ensure;
use common::{enable_plugin, env_or, notify_kernel, percentile_ms, stop_kernel};
use mock_providers::{MockApns, TestCa};
use olivine::app::Kernel;
use sqlx::Row;

const ORDER: &str = "O-PUSH-1";

async fn ship(kernel: &Kernel, count: usize) -> anyhow::Result<()> {
    let events: Vec<olivine::bus::NewEvent> = (0..count)
        .map(|_| olivine::bus::NewEvent {
            aggregate_type: "order",
            aggregate_id: ORDER.to_owned(),
            event_type: "order.fulfilled",
            payload: serde_json::json!({"number": ORDER}),
        })
        .collect();
    let mut tx = kernel.state.db.begin().await?;
    olivine::bus::record_all(&mut tx, &events).await?;
    tx.commit().await?;
    kernel.state.bus.notify();
    Ok(())
}

async fn wait_for(apns: &MockApns, count: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    while apns.requests().len() < count {
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {count} pushes arrived",
            apns.requests().len()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// A customer with one iPhone, and a fulfilled order of theirs.
async fn customer_with_device(kernel: &Kernel) -> anyhow::Result<()> {
    let pool = &kernel.state.db.pool;
    let at = "2026-01-01T00:00:00.000Z";
    let customer: i64 = sqlx::query(
        "INSERT INTO customers (pseudonym, email_lookup, email_enc, name_enc, password_hash,
            created_at, updated_at)
         VALUES ('c_push', 'push', '', '', '', $1, $1) RETURNING id",
    )
    .bind(at)
    .fetch_one(pool)
    .await?
    .try_get(0)?;
    sqlx::query(
        "INSERT INTO customer_devices (customer_id, platform, token, app_id, created_at, updated_at)
         VALUES ($1, 'apns', $2, 'com.example.shop', $3, $3)",
    )
    .bind(customer)
    .bind("ab".repeat(32))
    .bind(at)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO orders (number, customer_id, cart_id, idempotency_key, status, currency,
            subtotal_minor, adjustments_minor, shipping_minor, tax_minor, total_minor,
            shipping_method, country, email_enc, shipping_address_enc, tracking_number,
            carrier, created_at, updated_at)
         VALUES ($1, $2, 'cart-push', 'push-bench', 'fulfilled', 'EUR', 2499, 0, 0, 0, 2499,
            'standard', 'NL', '', '', 'TRK-1', 'PostNL', $3, $3)",
    )
    .bind(ORDER)
    .bind(customer)
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let latency_runs: usize = env_or("LATENCY", 200);
    let burst: usize = env_or("BURST", 2000);
    let ca = TestCa::new();
    let apns = MockApns::start(&ca, "TEAM123456", "KEY1234567").await;
    let (kernel, data) = notify_kernel("push-bench", |config| {
        config.plugin_http_ca_file = Some(ca.ca_file());
    })
    .await?;
    enable_plugin(
        &kernel,
        "apns",
        &[
            ("base_url", apns.base_url()),
            ("team_id", apns.team_id().to_owned()),
            ("key_id", apns.key_id().to_owned()),
            ("private_key", apns.private_key_pem().to_owned()),
        ],
        apns.host(),
    )
    .await?;
    customer_with_device(&kernel).await?;
    println!(
        "{}, {} job workers, the apns channel to a local HTTP/2 mock",
        kernel.state.db.backend.name(),
        env_or("JOB_WORKERS", 8)
    );

    // Latency, one at a time (the first few compile the plugin, sign the provider token
    // and open the HTTP/2 connection).
    let mut latencies = Vec::with_capacity(latency_runs);
    for i in 0..latency_runs + 5 {
        let before = apns.requests().len();
        let committed = Instant::now();
        ship(&kernel, 1).await?;
        wait_for(&apns, before + 1).await?;
        if i >= 5 {
            latencies.push(apns.requests()[before].received - committed);
        }
    }
    println!(
        "order.fulfilled committed -> APNs received the push ({latency_runs} one at a time): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile_ms(&mut latencies, 0.5),
        percentile_ms(&mut latencies, 0.99),
        percentile_ms(&mut latencies, 1.0),
    );

    let before = apns.requests().len();
    let started = Instant::now();
    ship(&kernel, burst).await?;
    wait_for(&apns, before + burst).await?;
    let took = started.elapsed();
    println!(
        "{burst} shipments at once -> {burst} pushes in {:.2} s: {:.0} pushes/s",
        took.as_secs_f64(),
        burst as f64 / took.as_secs_f64()
    );
    let requests = apns.requests();
    let refused = requests.iter().filter(|r| r.status != 200).count();
    ensure!(refused == 0, "the mock refused {refused} pushes");
    let tokens: std::collections::HashSet<_> =
        requests.iter().filter_map(|r| r.jwt.clone()).collect();
    println!(
        "every push accepted ({}), over {} HTTP/2 connection(s), signed with {} provider token(s)",
        requests.len(),
        apns.connections(),
        tokens.len()
    );
    stop_kernel(kernel, data).await;
    Ok(())
}
