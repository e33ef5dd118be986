//! Live updates under load (`bench/live.sh` runs it against a release `olivine serve`):
//! holds `CONNECTIONS` idle WebSockets on `/api/v1/live` (signed in as `IDLE_CUSTOMERS`
//! customers, each also watching a product's stock) and reports the server's memory per
//! connection (the growth of its resident set over the connections); then, beside them,
//! `CHANGES` order status changes of another customer, made one at a time through the
//! admin API, each timed from sending the change to its message arriving on that
//! customer's socket (p50, p90, p99, max).
//!
//! Environment: `BASE` (http://127.0.0.1:18096), `OLIVINE_ADMIN_TOKEN`, `SERVER_PID` (the
//! kernel's process, whose /proc/PID/status it reads), `CONNECTIONS` (5000), `CHANGES`
//! (200), `IDLE_CUSTOMERS` (20), `CONNECT_CONCURRENCY` (100), `IDLE_SECS` (35: how long the
//! connections idle, through a round of the server's pings, before it measures again).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod common;
use common::{Client, env_or, summary};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PASSWORD: &str = "correct horse battery";

/// The server's resident set in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/PID/status")
}

/// A `/metrics` series' value.
fn metric(client: &Client, series: &str) -> anyhow::Result<f64> {
    let mut response = client
        .agent
        .get(format!("{}/metrics", client.base))
        .call()?;
    let text = response.body_mut().read_to_string()?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Registers a customer and answers their access token.
fn customer(client: &Client, email: &str) -> anyhow::Result<String> {
    client.kernel(
        "POST",
        "/api/v1/account/register",
        Some(&json!({"email": email, "password": PASSWORD, "name": "Live Bench"})),
    )?;
    let pair = client.kernel(
        "POST",
        "/api/v1/account/sign-in",
        Some(&json!({"email": email, "password": PASSWORD})),
    )?;
    Ok(pair["access_token"]
        .as_str()
        .context("access token")?
        .to_owned())
}

/// A pending order of one unit for the customer; answers its number.
fn order(client: &Client, token: &str, n: usize) -> anyhow::Result<String> {
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str())];
    let url = |path: &str| format!("{}{path}", client.base);
    let (status, cart) = client.send("POST", &url("/api/v1/carts"), &headers, None)?;
    ensure!(status == 201, "cart: {status} {cart}");
    let cart = cart["id"].as_str().context("cart id")?.to_owned();
    let (status, body) = client.send(
        "POST",
        &url(&format!("/api/v1/carts/{cart}/lines")),
        &headers,
        Some(&json!({"sku": "LIVE-60", "quantity": 1})),
    )?;
    ensure!(status == 200, "cart line: {status} {body}");
    let key = format!("live-bench-{n}-{}", std::process::id());
    let (status, placed) = client.send(
        "POST",
        &url(&format!("/api/v1/carts/{cart}/checkout")),
        &[("authorization", auth.as_str()), ("idempotency-key", &key)],
        Some(
            &json!({"email": "bench@example.com", "shipping_method": "standard",
            "shipping_address": {"name": "Ada Bench", "line1": "Keizersgracht 1",
                "city": "Amsterdam", "postal_code": "1015 AA", "country": "nl"}}),
        ),
    )?;
    ensure!(status == 201, "checkout: {status} {placed}");
    Ok(placed["number"].as_str().context("number")?.to_owned())
}

/// The catalog, stock and rates the orders need.
fn store(client: &Client) -> anyhow::Result<()> {
    client.admin(
        "POST",
        "/api/v1/admin/categories",
        &json!({"slug": "supplements", "name": "Supplements"}),
    )?;
    client.admin(
        "POST",
        "/api/v1/admin/locations",
        &json!({"code": "AMS-1", "name": "Amsterdam"}),
    )?;
    client.admin(
        "POST",
        "/api/v1/admin/products",
        &json!({
            "slug": "live-bench", "name": "Live Bench Magnesium", "product_type": "supplement",
            "description": "Load test product.", "categories": ["supplements"], "tags": ["bench"],
            "attributes": {
                "form": "capsules",
                "ingredients": [{"name": "Magnesium", "amount": 200, "unit": "mg"}],
                "serving_size": "2 capsules", "servings_per_container": 30,
                "usage": "Take 2 daily.", "allergens": [], "warnings": "",
                "disclaimer": "Not evaluated by the FDA."
            },
            "variants": [{"sku": "LIVE-60", "title": "60 capsules", "options": {"count": "60"},
                "price_minor": 1999, "currency": "EUR", "weight_grams": 120}]
        }),
    )?;
    client.admin(
        "POST",
        "/api/v1/admin/lots",
        &json!({"sku": "LIVE-60", "location": "AMS-1", "batch": "L1",
            "manufactured_on": common::date_in(-10), "expires_on": common::date_in(700),
            "quantity": 1_000_000}),
    )?;
    client.admin(
        "PUT",
        "/api/v1/admin/shipping-rates",
        &json!([{"code": "standard", "name": "Standard", "country": "*",
            "max_weight_grams": 2000, "price_minor": 495, "currency": "EUR"}]),
    )?;
    client.admin(
        "PUT",
        "/api/v1/admin/tax-rates",
        &json!([{"country": "NL", "rate_bp": 2100}]),
    )?;
    Ok(())
}

async fn open(ws_base: &str, token: &str) -> anyhow::Result<Socket> {
    let mut request = format!("{ws_base}/api/v1/live").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

/// The next JSON message (pings are answered by the client library as it reads).
async fn next_json(socket: &mut Socket, within: Duration) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .context("no message in time")?
            .context("the socket closed")??;
        match frame {
            Message::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
            Message::Close(frame) => bail!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// An idle connection: signs in, watches the product, then only reads (answering the
/// server's pings) until the bench ends.
async fn idle(
    ws_base: String,
    token: String,
    ready: Arc<AtomicUsize>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let mut socket = open(&ws_base, &token).await?;
    let hello = next_json(&mut socket, Duration::from_secs(60)).await?;
    ensure!(hello["type"] == "ready", "{hello}");
    socket
        .send(Message::text(
            json!({"subscribe": "product:live-bench"}).to_string(),
        ))
        .await?;
    let subscribed = next_json(&mut socket, Duration::from_secs(60)).await?;
    ensure!(subscribed["type"] == "subscribed", "{subscribed}");
    ready.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    while let Some(frame) = socket.next().await {
        if let Message::Close(_) = frame? {
            break;
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let base: String = env_or("BASE", "http://127.0.0.1:18096".to_owned());
    let admin = std::env::var("OLIVINE_ADMIN_TOKEN").context("OLIVINE_ADMIN_TOKEN")?;
    let pid: u32 = std::env::var("SERVER_PID")
        .context("SERVER_PID")?
        .parse()
        .context("SERVER_PID")?;
    let connections: usize = env_or("CONNECTIONS", 5000);
    let changes: usize = env_or("CHANGES", 200);
    let idle_customers: usize = env_or("IDLE_CUSTOMERS", 20).max(1);
    let concurrency: usize = env_or("CONNECT_CONCURRENCY", 100).max(1);
    let idle_secs: u64 = env_or("IDLE_SECS", 35);
    let client = Client::new(&base, admin, 8);
    let ws_base = base.replacen("http", "ws", 1);

    println!("==> setup: a product, {idle_customers} idle customers and one who orders");
    store(&client)?;
    let idle_tokens: Vec<String> = (0..idle_customers)
        .map(|i| customer(&client, &format!("idle{i}@bench.example")))
        .collect::<anyhow::Result<_>>()?;
    let buyer = customer(&client, "buyer@bench.example")?;
    // Each order goes paid, shipped, delivered: three changes.
    let orders: Vec<String> = (0..changes.div_ceil(3))
        .map(|n| order(&client, &buyer, n))
        .collect::<anyhow::Result<_>>()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss_kib(pid)?;
        println!(
            "==> {connections} idle connections (server RSS before: {} MiB)",
            before / 1024
        );
        let ready = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = Vec::with_capacity(connections);
        for i in 0..connections {
            // At most `concurrency` handshakes at a time: each gives its permit back once
            // it is ready.
            let permit = gate.clone().acquire_owned().await?;
            let token = idle_tokens[i % idle_tokens.len()].clone();
            tasks.push(tokio::spawn(idle(
                ws_base.clone(),
                token,
                ready.clone(),
                permit,
            )));
        }
        while ready.load(Ordering::Relaxed) < connections {
            if let Some(failed) = tasks.iter().position(|t| t.is_finished()) {
                let task = tasks.swap_remove(failed);
                task.await??;
                bail!("an idle connection ended early");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "connected and watching in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // Let the allocator and the kernel settle, then read the figures.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = rss_kib(pid)?;
        let registered = metric(&client, "olivine_live_connections")?;
        println!(
            "server RSS {} MiB -> {} MiB: {:.1} KiB a connection ({} connections in the hub)",
            before / 1024,
            after / 1024,
            (after.saturating_sub(before)) as f64 / connections as f64,
            registered
        );

        // Idle through a round of the server's pings (every 30 s), which every socket
        // answers: what a connection costs once it has been used, not only opened.
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        let idle_rss = rss_kib(pid)?;
        println!(
            "after {idle_secs} s idle (a ping round): server RSS {} MiB: {:.1} KiB a connection",
            idle_rss / 1024,
            (idle_rss.saturating_sub(before)) as f64 / connections as f64
        );
        println!(
            "==> {changes} order status changes, one at a time, each until its message arrives"
        );
        let mut socket = open(&ws_base, &buyer).await?;
        let hello = next_json(&mut socket, Duration::from_secs(30)).await?;
        ensure!(hello["type"] == "ready", "{hello}");
        let mut samples = Vec::with_capacity(changes);
        let steps = [
            ("paid", json!({"to": "paid"})),
            (
                "fulfilled",
                json!({"to": "fulfilled", "tracking_number": "TRACK-1"}),
            ),
            ("delivered", json!({"to": "delivered"})),
        ];
        'changes: for number in &orders {
            for (status, body) in &steps {
                if samples.len() == changes {
                    break 'changes;
                }
                let sent = Instant::now();
                let (client, path, body) = (
                    client.clone(),
                    format!("/api/v1/admin/orders/{number}/transitions"),
                    body.clone(),
                );
                let post = tokio::task::spawn_blocking(move || client.admin("POST", &path, &body));
                loop {
                    let message = next_json(&mut socket, Duration::from_secs(30)).await?;
                    if message["order"] == number.as_str() && message["status"] == *status {
                        samples.push(sent.elapsed());
                        break;
                    }
                }
                post.await??;
            }
        }
        println!(
            "event to socket (from sending the change): {}",
            summary(samples)
        );
        let end = rss_kib(pid)?;
        println!("server RSS at the end: {} MiB", end / 1024);
        for task in &tasks {
            task.abort();
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}
