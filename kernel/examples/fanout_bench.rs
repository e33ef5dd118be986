//! Event fan-out latency (`bench/fanout.sh` runs it against two release nodes on one
//! PostgreSQL and Redis): `EDITS` times, rename a product through node A, then read the
//! product on node B until it shows the new name. Reports, over all edits, the time from
//! A's answer (the edit committed before A answered) to B serving the new product, and
//! from sending the edit (an upper bound: it includes A's handling of the PATCH).
//!
//! Node B's product JSON is served from its cache: it changes only when B's cache heard
//! of the edit through the bus. Environment: `NODE_A`, `NODE_B` (base URLs),
//! `OLIVINE_ADMIN_TOKEN`, `EDITS` (1000).

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Client {
    agent: ureq::Agent,
    token: String,
}

impl Client {
    fn send(&self, method: &str, url: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(url).header("Authorization", &auth).call(),
            ("POST", Some(body)) => self
                .agent
                .post(url)
                .header("Authorization", &auth)
                .send_json(body),
            ("PATCH", Some(body)) => self
                .agent
                .patch(url)
                .header("Authorization", &auth)
                .send_json(body),
            _ => bail!("unsupported request {method} {url}"),
        }
        .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let body: Value = response.into_body().read_json().unwrap_or(Value::Null);
        Ok((status, body))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} edits)",
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap_or(&Duration::ZERO)),
        samples.len()
    );
}

fn main() -> anyhow::Result<()> {
    let a = std::env::var("NODE_A").context("NODE_A")?;
    let b = std::env::var("NODE_B").context("NODE_B")?;
    let edits: usize = env_or("EDITS", 1000);
    let client = Client {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into(),
        token: std::env::var("OLIVINE_ADMIN_TOKEN").context("OLIVINE_ADMIN_TOKEN")?,
    };
    let slug = format!("fanout-{}", std::process::id());
    let product = json!({
        "slug": slug, "name": "Fan-out", "product_type": "supplement", "description": "Bench.",
        "categories": [], "tags": [],
        "attributes": {"form": "capsules", "ingredients": [{"name": "Magnesium", "amount": 200, "unit": "mg"}],
            "serving_size": "2 capsules", "servings_per_container": 30, "usage": "Take 2 daily.",
            "allergens": [], "warnings": "", "disclaimer": "Not evaluated by the FDA."},
        "variants": [{"sku": format!("FAN-{}", std::process::id()), "title": "60 capsules",
            "options": {"count": "60"}, "price_minor": 1999, "currency": "EUR", "weight_grams": 120}]
    });
    let (status, created) = client.send(
        "POST",
        &format!("{a}/api/v1/admin/products"),
        Some(&product),
    )?;
    ensure!(status == 201, "creating the product: {status} {created}");
    let id = created["id"].as_i64().context("product id")?;
    let mut version = created["version"].clone();
    let product_on_b = format!("{b}/api/v1/products/{slug}");
    let name_on_b = || -> anyhow::Result<String> {
        let (status, body) = client.send("GET", &product_on_b, None)?;
        Ok(if status == 200 {
            body["name"].as_str().unwrap_or_default().to_owned()
        } else {
            String::new()
        })
    };
    // B has it, and from now on from its cache.
    let started = Instant::now();
    while name_on_b()? != "Fan-out" {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "node B never served the product"
        );
    }
    let mut from_answer = Vec::with_capacity(edits);
    let mut from_request = Vec::with_capacity(edits);
    let mut reads = 0u64;
    for edit in 0..edits {
        let name = format!("Fan-out {edit}");
        let sent = Instant::now();
        let (status, body) = client.send(
            "PATCH",
            &format!("{a}/api/v1/admin/products/{id}"),
            Some(&json!({ "name": name, "version": version })),
        )?;
        ensure!(status == 200, "edit {edit}: {status} {body}");
        let answered = Instant::now();
        version = body["version"].clone();
        loop {
            reads += 1;
            if name_on_b()? == name {
                break;
            }
            ensure!(
                answered.elapsed() < Duration::from_secs(10),
                "edit {edit} never reached node B"
            );
        }
        let seen = Instant::now();
        from_answer.push(seen - answered);
        from_request.push(seen - sent);
    }
    println!(
        "reads of node B while waiting: {reads} ({:.1} per edit)",
        reads as f64 / edits as f64
    );
    report("A's answer -> B serves the edit", from_answer);
    report("A's request -> B serves the edit", from_request);
    Ok(())
}
