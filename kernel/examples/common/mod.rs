//! What the load generators under kernel/examples/ share: an HTTP client for the
//! kernel's API, a bench catalog, latency summaries.

// Each example uses a part of this.
#![allow(dead_code)]

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone)]
pub struct Client {
    pub agent: ureq::Agent,
    pub base: String,
    pub admin: String,
}

impl Client {
    /// A client of the kernel at `base`, keeping up to `connections` idle connections.
    pub fn new(base: &str, admin: String, connections: usize) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .max_idle_connections_per_host(connections)
            .build()
            .into();
        Client {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            admin,
        }
    }

    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut response = match method {
            "GET" => {
                let mut request = self.agent.get(url);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            _ => {
                let mut request = match method {
                    "POST" => self.agent.post(url),
                    "PATCH" => self.agent.patch(url),
                    "PUT" => self.agent.put(url),
                    other => bail!("unsupported method {other}"),
                };
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request
                    .header("content-type", "application/json")
                    .send(body.map(Value::to_string).unwrap_or_default())
            }
        }
        .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("{method} {url}: {text}"))?
        };
        Ok((status, value))
    }

    pub fn kernel(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let (status, value) = self.send(method, &url, &[], body)?;
        ensure!(
            (200..300).contains(&status),
            "{method} {path}: {status} {value}"
        );
        Ok(value)
    }

    pub fn admin(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.admin);
        let (status, value) = self.send(method, &url, &[("authorization", &auth)], Some(body))?;
        ensure!(
            (200..300).contains(&status),
            "{method} {path}: {status} {value}"
        );
        Ok(value)
    }
}

pub fn date_in(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

/// Products `bench-0…` with one variant each and a lot that will not run out.
pub fn stock_catalog(client: &Client, products: usize) -> anyhow::Result<Vec<String>> {
    let mut skus = Vec::new();
    for i in 0..products {
        let sku = format!("BENCH{i}-60");
        let product = json!({
            "slug": format!("bench-{i}"), "name": format!("Bench Magnesium {i}"),
            "product_type": "supplement", "description": "Load test product.",
            "categories": ["supplements"], "tags": ["bench"],
            "attributes": {
                "form": "capsules",
                "ingredients": [{"name": "Magnesium", "amount": 200, "unit": "mg"}],
                "serving_size": "2 capsules", "servings_per_container": 30,
                "usage": "Take 2 daily.", "allergens": [], "warnings": "",
                "disclaimer": "Not evaluated by the FDA."
            },
            "variants": [{"sku": sku, "title": "60 capsules", "options": {"count": "60"},
                "price_minor": 1999, "currency": "EUR", "weight_grams": 120}]
        });
        client.admin("POST", "/api/v1/admin/products", &product)?;
        client.admin(
            "POST",
            "/api/v1/admin/lots",
            &json!({"sku": sku, "location": "AMS-1", "batch": format!("L{i}"),
                "manufactured_on": date_in(-10), "expires_on": date_in(700),
                "quantity": 10_000_000}),
        )?;
        skus.push(sku);
    }
    Ok(skus)
}

/// Milliseconds at the given percentiles of the samples, and their count.
pub fn summary(mut samples: Vec<Duration>) -> String {
    if samples.is_empty() {
        return "no samples".to_owned();
    }
    samples.sort_unstable();
    let at = |p: f64| {
        let index = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1000.0
    };
    format!(
        "n={} p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        samples[samples.len() - 1].as_secs_f64() * 1000.0
    )
}

/// The sample at percentile `p` (0..1) in milliseconds; 0 without samples.
pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let index = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[index].as_secs_f64() * 1000.0
}

/// Starts the sandbox card processor on `runtime` and points the kernel's bundled
/// `sandbox-payments` adapter at it; answers its base URL and the handle that keeps it
/// serving.
pub fn start_processor(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
) -> anyhow::Result<(String, sandbox_processor::Handle)> {
    let (processor, handle) = runtime.block_on(sandbox_processor::spawn("127.0.0.1:0"));
    let host = processor.to_string();
    client.admin(
        "PATCH",
        "/api/v1/admin/plugins/sandbox-payments",
        &json!({"enabled": true, "settings": {"base_url": format!("http://{host}")},
            "granted_hosts": [host]}),
    )?;
    Ok((format!("http://{host}"), handle))
}

/// A test card's token from the processor, as the checkout page's script gets it.
pub fn card_token(client: &Client, processor: &str, number: &str) -> anyhow::Result<String> {
    let card = json!({"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"});
    let (status, body) =
        client.send("POST", &format!("{processor}/v1/tokens"), &[], Some(&card))?;
    ensure!(status == 201, "tokenize: {status} {body}");
    Ok(body["token"].as_str().context("token")?.to_owned())
}

/// A kernel in this process for the notification benchmarks: bundled plugins, the
/// periodic work that would compete turned off, `JOB_WORKERS` job workers (8), on
/// `DATABASE_URL` or else SQLite in a temporary directory (removed by `stop_kernel`).
pub async fn notify_kernel(
    name: &str,
    tweak: impl FnOnce(&mut olivine::config::ServeConfig),
) -> anyhow::Result<(olivine::app::Kernel, std::path::PathBuf)> {
    let data = std::env::temp_dir().join(format!("olivine-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&data)?;
    let mut config = olivine::config::ServeConfig::for_data_dir(&data);
    config.store.database_url = std::env::var("DATABASE_URL").ok();
    config.admin_token = Some(format!("{name}-admin-token"));
    config.bundled_plugins = true;
    config.session_sweep_secs = 0;
    config.payment_reconcile_secs = 0;
    config.recommendations_secs = 0;
    config.cluster.job_workers = env_or("JOB_WORKERS", 8);
    tweak(&mut config);
    let kernel = olivine::app::Kernel::start_with(config, olivine::app::Extensions::default())
        .await
        .context("starting the kernel")?;
    Ok((kernel, data))
}

/// Turns on the bundled plugin `id` with `settings`, granted `host`.
pub async fn enable_plugin(
    kernel: &olivine::app::Kernel,
    id: &str,
    settings: &[(&str, String)],
    host: String,
) -> anyhow::Result<()> {
    kernel
        .state
        .plugins
        .update(
            id,
            &olivine::plugins::PluginPatch {
                enabled: Some(true),
                priority: None,
                settings: Some(
                    settings
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), Some(v.clone())))
                        .collect(),
                ),
                granted_hosts: Some(vec![host]),
            },
            "bench",
        )
        .await?;
    Ok(())
}

pub async fn stop_kernel(kernel: olivine::app::Kernel, data: std::path::PathBuf) {
    kernel.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}
