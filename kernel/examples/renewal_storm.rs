//! Load generator for the renewal-storm benchmark (`bench/renewals.sh` runs it against a
//! release kernel on PostgreSQL): `SUBSCRIPTIONS` subscriptions fall due at the same
//! moment while `SHOPPERS` shoppers browse and buy. How fast are the renewals done, and
//! how much slower do the shoppers' answers get?
//!
//! 1. Setup: the sandbox card processor runs in this process behind the kernel's bundled
//!    `sandbox-payments` adapter; `PRODUCTS` products are stocked; `SUBSCRIBERS`
//!    customers register and each checks out one subscription (two units every 30 days,
//!    the card saved at the processor), and each subscriber's subscription is copied in
//!    SQL (same customer, address and saved card) up to `SUBSCRIPTIONS` in all.
//! 2. Baseline: for `PHASE_SECS` each shopper repeats a visit: read a product's JSON,
//!    think, fill a cart with one line, think, check out with a new card, think
//!    (`THINK_MS` each time). Product JSON and checkout latencies are recorded.
//! 3. Storm: every subscription is made due now (its renewal notice recorded days ago,
//!    as it would have been) and the shoppers go on until every one has renewed; the
//!    kernel's own scan (every `OLIVINE_SUBSCRIPTION_SCAN_SECS`) finds them and its
//!    renewal lane works them off. Renewals per second, the time until the last one,
//!    and the shoppers' latencies again.
//!
//! Every answer is checked (a checkout 201 and `paid`, a product 200), and at the end
//! every subscription has exactly one paid renewal order for the cycle: a wrong answer or
//! a renewal that is not `paid` stops the run.
//!
//! Environment: `OLIVINE_URL` (http://127.0.0.1:18092), `OLIVINE_ADMIN_TOKEN`,
//! `DATABASE_URL` (the kernel's PostgreSQL database), `SUBSCRIPTIONS` (10000),
//! `SUBSCRIBERS` (100), `SHOPPERS` (16), `THINK_MS` (100), `PHASE_SECS` (20),
//! `PRODUCTS` (16), `STORM_LIMIT_SECS` (600).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sqlx::Row;

mod common;
use common::{Client, card_token, env_or, percentile_ms, start_processor, stock_catalog, summary};

const PASSWORD: &str = "correct horse battery";
const VISA: &str = "4242424242424242";

/// One subscriber: registers, signs in and checks out `sku` on a 30-day subscription.
fn subscribe(client: &Client, processor: &str, n: usize, sku: &str) -> anyhow::Result<()> {
    let email = format!("subscriber{n}@example.com");
    client.kernel(
        "POST",
        "/api/v1/account/register",
        Some(&json!({"email": email, "password": PASSWORD, "name": format!("Subscriber {n}")})),
    )?;
    let signed_in = client.kernel(
        "POST",
        "/api/v1/account/sign-in",
        Some(&json!({"email": email, "password": PASSWORD})),
    )?;
    let bearer = format!(
        "Bearer {}",
        signed_in["access_token"].as_str().context("access token")?
    );
    let auth = [("authorization", bearer.as_str())];
    let as_customer = |method: &str, path: &str, body: &Value| -> anyhow::Result<Value> {
        let url = format!("{}{path}", client.base);
        let (status, value) = client.send(method, &url, &auth, Some(body))?;
        ensure!(
            (200..300).contains(&status),
            "{method} {path}: {status} {value}"
        );
        Ok(value)
    };
    let cart = as_customer("POST", "/api/v1/carts", &json!({}))?;
    let cart = cart["id"].as_str().context("cart id")?.to_owned();
    as_customer(
        "POST",
        &format!("/api/v1/carts/{cart}/lines"),
        &json!({"sku": sku, "quantity": 2, "subscription": true, "interval": "30d"}),
    )?;
    let key = format!("subscriber-{n}");
    let url = format!("{}/api/v1/carts/{cart}/checkout", client.base);
    let body = json!({"shipping_method": "standard",
        "payment_token": card_token(client, processor, VISA)?,
        "shipping_address": {"name": format!("Subscriber {n}"), "line1": "Main 1",
            "city": "Utrecht", "postal_code": "3511 AB", "country": "NL"}});
    let (status, order) = client.send(
        "POST",
        &url,
        &[
            ("authorization", bearer.as_str()),
            ("idempotency-key", &key),
        ],
        Some(&body),
    )?;
    ensure!(
        status == 201 && order["status"] == "paid",
        "subscriber checkout: {status} {order}"
    );
    Ok(())
}

/// Copies each subscription (with its items) until there are `total`, all due in 30
/// days like the ones the checkouts made.
async fn copy_subscriptions(db: &sqlx::PgPool, total: usize) -> anyhow::Result<i64> {
    let have: i64 = sqlx::query("SELECT COUNT(*) FROM subscriptions")
        .fetch_one(db)
        .await?
        .try_get(0)?;
    ensure!(have > 0, "no subscriptions to copy");
    let missing = (total as i64 - have).max(0);
    let copies = (missing + have - 1) / have;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO subscriptions (number, customer_id, origin_order_id, status,
            interval_count, interval_unit, cycle, next_renewal_at, currency, shipping_method,
            country, email_enc, shipping_address_enc, payment_method_enc, created_at, updated_at)
         SELECT s.number || '.' || g, s.customer_id, s.origin_order_id, s.status,
            s.interval_count, s.interval_unit, s.cycle, s.next_renewal_at, s.currency,
            s.shipping_method, s.country, s.email_enc, s.shipping_address_enc,
            s.payment_method_enc, s.created_at, s.updated_at
         FROM subscriptions s CROSS JOIN generate_series(1, $1) AS g",
    )
    .bind(copies)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO subscription_items (subscription_id, variant_id, quantity)
         SELECT c.id, i.variant_id, i.quantity
         FROM subscriptions s
         JOIN subscriptions c ON starts_with(c.number, s.number || '.')
         JOIN subscription_items i ON i.subscription_id = s.id",
    )
    .execute(&mut *tx)
    .await?;
    // Trim to the exact count (the copies come in whole rounds).
    sqlx::query(
        "WITH extra AS (SELECT id FROM subscriptions ORDER BY id DESC
                        LIMIT GREATEST((SELECT COUNT(*) FROM subscriptions) - $1, 0))
         , gone AS (DELETE FROM subscription_items WHERE subscription_id IN (SELECT id FROM extra))
         DELETE FROM subscriptions WHERE id IN (SELECT id FROM extra)",
    )
    .bind(total as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("ANALYZE subscriptions").execute(db).await?;
    sqlx::query("ANALYZE subscription_items")
        .execute(db)
        .await?;
    Ok(sqlx::query("SELECT COUNT(*) FROM subscriptions")
        .fetch_one(db)
        .await?
        .try_get(0)?)
}

/// Makes every subscription due now, as the calendar would: its notice went out days
/// ago, so the scan has only the renewals to do.
async fn fall_due(db: &sqlx::PgPool) -> anyhow::Result<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    sqlx::query("UPDATE subscriptions SET next_renewal_at = $1, notified_cycle = cycle")
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// Renewal attempts at cycle 1 by outcome.
async fn renewal_outcomes(db: &sqlx::PgPool) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT outcome, COUNT(*) FROM subscription_renewals WHERE cycle = 1
         GROUP BY outcome ORDER BY outcome",
    )
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// What the shoppers saw in a phase, printed.
fn report(title: &str, seen: Latencies, time: Duration) {
    println!(
        "{title} ({:.0} s, {:.0} checkouts/s):",
        time.as_secs_f64(),
        seen.checkout.len() as f64 / time.as_secs_f64()
    );
    println!("  product JSON:  {}", summary(seen.product));
    println!("  checkout:      {}", summary(seen.checkout));
}

struct Shopper {
    client: Client,
    processor: String,
    skus: Arc<Vec<String>>,
    n: usize,
    think: Duration,
}

#[derive(Default)]
struct Latencies {
    product: Vec<Duration>,
    checkout: Vec<Duration>,
}

impl Shopper {
    fn visits(&self, stop: &AtomicBool) -> anyhow::Result<Latencies> {
        let mut seen = Latencies::default();
        let mut round = self.n;
        // Spread the shoppers' first visits over one think time.
        thread::sleep(self.think.mul_f64(self.n as f64 / 16.0));
        while !stop.load(Ordering::Relaxed) {
            let i = round % self.skus.len();
            round += 1;
            let started = Instant::now();
            let product =
                self.client
                    .kernel("GET", &format!("/api/v1/products/bench-{i}"), None)?;
            seen.product.push(started.elapsed());
            ensure!(
                product["slug"] == format!("bench-{i}"),
                "wrong product: {product}"
            );
            thread::sleep(self.think);

            let cart = self.client.kernel("POST", "/api/v1/carts", None)?;
            let cart = cart["id"].as_str().context("cart id")?.to_owned();
            let line = json!({"sku": self.skus[i], "quantity": 1});
            self.client
                .kernel("POST", &format!("/api/v1/carts/{cart}/lines"), Some(&line))?;
            let body = json!({"email": "shopper@example.com", "shipping_method": "standard",
                "payment_token": card_token(&self.client, &self.processor, VISA)?,
                "shipping_address": {"name": "Ada Shopper", "line1": "Main 1", "city": "Utrecht",
                    "postal_code": "3511 AB", "country": "NL"}});
            thread::sleep(self.think);

            let key = format!("shopper-{}-{cart}", self.n);
            let url = format!("{}/api/v1/carts/{cart}/checkout", self.client.base);
            let started = Instant::now();
            let (status, order) =
                self.client
                    .send("POST", &url, &[("idempotency-key", &key)], Some(&body))?;
            seen.checkout.push(started.elapsed());
            ensure!(
                status == 201 && order["status"] == "paid",
                "checkout: {status} {order}"
            );
            thread::sleep(self.think);
        }
        Ok(seen)
    }
}

/// Runs the shoppers until `until` says stop (checked every 100 ms); answers what they
/// saw and how long it ran.
fn shop_until(
    shoppers: &[Arc<Shopper>],
    mut until: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<(Latencies, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = shoppers
        .iter()
        .map(|shopper| {
            let (shopper, stop) = (shopper.clone(), stop.clone());
            thread::spawn(move || {
                let result = shopper.visits(&stop);
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })
        })
        .collect();
    let mut ended = Ok(());
    while !stop.load(Ordering::Relaxed) {
        match until() {
            Ok(false) => thread::sleep(Duration::from_millis(100)),
            Ok(true) => break,
            Err(err) => {
                ended = Err(err);
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut all = Latencies::default();
    for handle in handles {
        let seen = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a shopper thread panicked"))??;
        all.product.extend(seen.product);
        all.checkout.extend(seen.checkout);
    }
    ended?;
    Ok((all, elapsed))
}

fn main() -> anyhow::Result<()> {
    let base = std::env::var("OLIVINE_URL").unwrap_or_else(|_| "http://127.0.0.1:18092".into());
    let admin = std::env::var("OLIVINE_ADMIN_TOKEN").context("OLIVINE_ADMIN_TOKEN")?;
    let database_url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let total: usize = env_or("SUBSCRIPTIONS", 10_000);
    let subscribers: usize = env_or("SUBSCRIBERS", 100).clamp(1, total.max(1));
    let shoppers_n: usize = env_or("SHOPPERS", 16);
    let think = Duration::from_millis(env_or("THINK_MS", 100));
    let seconds: u64 = env_or("PHASE_SECS", 20);
    let products: usize = env_or("PRODUCTS", 16);
    let storm_limit = Duration::from_secs(env_or("STORM_LIMIT_SECS", 600));

    let runtime = tokio::runtime::Runtime::new()?;
    let db = runtime.block_on(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&database_url),
    )?;
    let client = Client::new(&base, admin, shoppers_n * 2);
    let (processor, _processor) = start_processor(&runtime, &client)?;
    let skus = Arc::new(stock_catalog(&client, products)?);

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seeders: Vec<_> = (0..8)
        .map(|_| {
            let (client, processor, skus, next) = (
                client.clone(),
                processor.clone(),
                skus.clone(),
                next.clone(),
            );
            thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= subscribers {
                        return Ok(());
                    }
                    subscribe(&client, &processor, n, &skus[n % skus.len()])?;
                }
            })
        })
        .collect();
    for seeder in seeders {
        seeder
            .join()
            .map_err(|_| anyhow::anyhow!("a subscriber thread panicked"))??;
    }
    let count = runtime.block_on(copy_subscriptions(&db, total))?;
    eprintln!(
        "{subscribers} subscribers checked out, {count} subscriptions in all ({:.1} s); \
         {products} products; {shoppers_n} shoppers thinking {} ms",
        started.elapsed().as_secs_f64(),
        think.as_millis()
    );

    let shoppers: Vec<Arc<Shopper>> = (0..shoppers_n)
        .map(|n| {
            Arc::new(Shopper {
                client: client.clone(),
                processor: processor.clone(),
                skus: skus.clone(),
                n,
                think,
            })
        })
        .collect();
    eprintln!("warming up (3 s of shoppers, not counted)");
    let warm_until = Instant::now() + Duration::from_secs(3);
    shop_until(&shoppers, || Ok(Instant::now() >= warm_until))?;

    eprintln!("phase 1: {shoppers_n} shoppers, no renewals, {seconds} s");
    let until = Instant::now() + Duration::from_secs(seconds);
    let (mut calm, calm_time) = shop_until(&shoppers, || Ok(Instant::now() >= until))?;

    eprintln!("phase 2: {count} subscriptions fall due now; the shoppers go on until all renewed");
    runtime.block_on(fall_due(&db))?;
    let due = Instant::now();
    let (mut first_done, mut last_done) = (None, None);
    let mut failed = None;
    let mut progress = (Duration::ZERO, 0);
    let (mut storm, storm_time) = shop_until(&shoppers, || {
        let outcomes = runtime.block_on(renewal_outcomes(&db))?;
        let paid = outcomes
            .iter()
            .find(|(o, _)| o == "paid")
            .map_or(0, |(_, n)| *n);
        if due.elapsed() >= progress.0 + Duration::from_secs(10) {
            let (at, before) = progress;
            progress = (due.elapsed(), paid);
            eprintln!(
                "  {:>5.1} s: {paid} of {count} renewed ({:.0}/s in the last {:.0} s)",
                progress.0.as_secs_f64(),
                (paid - before) as f64 / (progress.0 - at).as_secs_f64(),
                (progress.0 - at).as_secs_f64()
            );
        }
        if let Some(other) = outcomes.iter().find(|(o, _)| o != "paid" && o != "placed") {
            failed = Some(format!("{other:?}"));
            return Ok(true);
        }
        if paid > 0 && first_done.is_none() {
            first_done = Some(due.elapsed());
        }
        if paid >= count {
            last_done = Some(due.elapsed());
            return Ok(true);
        }
        ensure!(
            due.elapsed() < storm_limit,
            "{paid} of {count} renewed after {} s",
            storm_limit.as_secs()
        );
        Ok(false)
    })?;
    if let Some(failed) = failed {
        anyhow::bail!("a renewal did not pay: {failed}");
    }
    let first = first_done.context("no renewal")?;
    let last = last_done.context("renewals unfinished")?;
    let orders: (i64, i64) = runtime.block_on(async {
        let row = sqlx::query(
            "SELECT COUNT(*), COUNT(DISTINCT subscription_id) FROM orders
             WHERE renewal_cycle = 1 AND status = 'paid'",
        )
        .fetch_one(&db)
        .await?;
        anyhow::Ok((row.try_get(0)?, row.try_get(1)?))
    })?;
    ensure!(
        orders == (count, count),
        "paid renewal orders {} for {} subscriptions; expected {count} for {count}",
        orders.0,
        orders.1
    );

    println!(
        "renewals: {count} paid in {:.1} s after falling due ({:.0} renewals/s from due; \
         first after {:.1} s, then {:.0}/s); one paid order per subscription",
        last.as_secs_f64(),
        count as f64 / last.as_secs_f64(),
        first.as_secs_f64(),
        count as f64 / (last - first).as_secs_f64().max(0.001)
    );
    let p99 = |l: &mut Latencies| {
        (
            percentile_ms(&mut l.product, 0.99),
            percentile_ms(&mut l.checkout, 0.99),
        )
    };
    let (calm_product, calm_checkout) = p99(&mut calm);
    let (storm_product, storm_checkout) = p99(&mut storm);
    report("shoppers without renewals", calm, calm_time);
    report("shoppers during the storm", storm, storm_time);
    println!(
        "p99 during / without: product JSON {:.2}x, checkout {:.2}x",
        storm_product / calm_product.max(0.001),
        storm_checkout / calm_checkout.max(0.001)
    );
    Ok(())
}
