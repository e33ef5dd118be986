//! Configuration: every setting is a flag with an environment variable beside it, and a
//! default that runs the embedded store (see the README's table).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::ratelimit::Limit;

/// Where the data lives. Shared by every subcommand that touches the database.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreConfig {
    /// Directory for the embedded SQLite database, the admin token file and other state.
    #[arg(long, env = "OLIVINE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL (`postgres://…` or `sqlite://…`). Unset: `<data dir>/olivine.db`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Maximum connections in the database pool.
    #[arg(long, env = "OLIVINE_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl StoreConfig {
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            database_url: None,
            db_max_connections: 16,
        }
    }

    /// The database URL in effect: the configured one, or the embedded SQLite file.
    pub fn database_url(&self) -> anyhow::Result<String> {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => Ok(url.clone()),
            _ => {
                std::fs::create_dir_all(&self.data_dir).with_context(|| {
                    format!("creating data directory {}", self.data_dir.display())
                })?;
                let path = self.data_dir.join("olivine.db");
                Ok(format!("sqlite://{}?mode=rwc", path.display()))
            }
        }
    }
}

/// Settings of `olivine serve`.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeConfig {
    #[command(flatten)]
    pub store: StoreConfig,

    /// Address to listen on.
    #[arg(long, env = "OLIVINE_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// The shop's address as customers reach it (links in emails and push
    /// notifications), e.g. `https://shop.example`. Unset: `http://<OLIVINE_ADDR>`.
    #[arg(long, env = "OLIVINE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The store owner's bootstrap API token (a staff token with the owner role, what the
    /// CLI uses). Unset: a random one is generated once and kept in
    /// `<data dir>/admin-token`. Changing it revokes the previous one.
    #[arg(long, env = "OLIVINE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Email of the owner (staff user) created when the store has none.
    #[arg(
        long,
        env = "OLIVINE_OWNER_EMAIL",
        default_value = "owner@olivine.local"
    )]
    pub owner_email: String,

    /// Load the demo catalog when the store is empty at start.
    #[arg(long, env = "OLIVINE_SEED_DEMO", default_value_t = true, action = clap::ArgAction::Set)]
    pub seed_demo: bool,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "OLIVINE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// How long a cached product stays fresh without an invalidating event (seconds).
    #[arg(long, env = "OLIVINE_CACHE_TTL_SECS", default_value_t = 300)]
    pub cache_ttl_secs: u64,

    /// Install the first-party plugins shipped in the binary into a store without them.
    #[arg(long, env = "OLIVINE_BUNDLED_PLUGINS", default_value_t = true, action = clap::ArgAction::Set)]
    pub bundled_plugins: bool,

    /// Where compiled plugins are cached. Unset: `<data dir>/plugin-cache`.
    #[arg(long, env = "OLIVINE_PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<PathBuf>,

    /// Directory watched for plugin packages (`*.olpkg`) to hot-load. Unset:
    /// `<data dir>/plugins`.
    #[arg(long, env = "OLIVINE_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,

    /// Extra certificate authorities (a PEM bundle) that plugins' outbound HTTPS trusts
    /// besides the usual web roots: a private processor, a local test server.
    #[arg(long, env = "OLIVINE_PLUGIN_HTTP_CA_FILE")]
    pub plugin_http_ca_file: Option<PathBuf>,

    /// Watch the plugins directory and install packages dropped there.
    #[arg(long, env = "OLIVINE_WATCH_PLUGINS", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_plugins: bool,

    /// How long SIGTERM waits for in-flight requests before exiting (seconds).
    #[arg(long, env = "OLIVINE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// The master key (32 bytes, base64) that wraps the keys encrypting customers'
    /// identity and signing their tokens. Unset: read from the master key file.
    #[arg(long, env = "OLIVINE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,

    /// Mark the storefront's session cookies `Secure`: browsers then send them over HTTPS
    /// only (and to http://localhost). Turn off only to try the shop over plain HTTP on
    /// another host.
    #[arg(long, env = "OLIVINE_COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,

    /// File holding the master key (base64). Unset: `<data dir>/master.key`, created
    /// with mode 0600 on first start when absent.
    #[arg(long, env = "OLIVINE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// Redis URL (`redis://host:6379`): rate-limit counters shared by every node. Unset:
    /// each node counts on its own.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Start of every rate-limit key in Redis, so several stores can share one server.
    #[arg(long, env = "OLIVINE_RATE_LIMIT_PREFIX", default_value = "olivine:rl")]
    pub rate_limit_prefix: String,

    /// Sign-in attempts per client (`10/1m`, `600/60s`, `5/10m`, or `off`).
    #[arg(long, env = "OLIVINE_RATE_LIMIT_SIGN_IN", default_value = "10/1m")]
    pub rate_limit_sign_in: Limit,

    /// Sign-in attempts per account, from any client.
    #[arg(
        long,
        env = "OLIVINE_RATE_LIMIT_SIGN_IN_ACCOUNT",
        default_value = "30/15m"
    )]
    pub rate_limit_sign_in_account: Limit,

    /// Account registrations per client.
    #[arg(long, env = "OLIVINE_RATE_LIMIT_REGISTER", default_value = "5/10m")]
    pub rate_limit_register: Limit,

    /// Other requests under `/api/` per client.
    #[arg(long, env = "OLIVINE_RATE_LIMIT_API", default_value = "600/1m")]
    pub rate_limit_api: Limit,

    /// Catalog reads under `/api/` (products, categories, the OpenAPI document: cached
    /// answers) per client: far more than other requests, so the shoppers of one mobile
    /// carrier behind one address are not throttled.
    #[arg(long, env = "OLIVINE_RATE_LIMIT_CATALOG", default_value = "6000/1m")]
    pub rate_limit_catalog: Limit,

    /// Identify clients by the last address of `X-Forwarded-For` (only behind a proxy
    /// that sets it) rather than by the connection's peer address.
    #[arg(long, env = "OLIVINE_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_for: bool,

    /// How often expired and revoked customer sessions are deleted (seconds; 0: never).
    #[arg(long, env = "OLIVINE_SESSION_SWEEP_SECS", default_value_t = 3600)]
    pub session_sweep_secs: u64,

    /// How often the payment reconciler looks for orders whose payment a crash left
    /// unsettled (seconds; 0: never). It also runs once at start.
    #[arg(long, env = "OLIVINE_PAYMENT_RECONCILE_SECS", default_value_t = 30)]
    pub payment_reconcile_secs: u64,

    /// How long a payment attempt may be in flight before the reconciler settles it
    /// (seconds): longer than any checkout takes.
    #[arg(
        long,
        env = "OLIVINE_PAYMENT_RECONCILE_GRACE_SECS",
        default_value_t = 120
    )]
    pub payment_reconcile_grace_secs: u64,

    /// How often the subscription scan looks for renewals that are due, pauses that
    /// ended and renewals to announce (seconds; 0: never). It also runs once at start.
    #[arg(long, env = "OLIVINE_SUBSCRIPTION_SCAN_SECS", default_value_t = 60)]
    pub subscription_scan_secs: u64,

    /// How often loyalty balances are checked for expiry after months without an order
    /// (seconds; 0: never). Expiry itself is the store setting `loyalty_expiry_months`.
    #[arg(long, env = "OLIVINE_LOYALTY_EXPIRY_SCAN_SECS", default_value_t = 3600)]
    pub loyalty_expiry_scan_secs: u64,

    /// How often the day's birthdays are looked for, to emit `customer.birthday` for
    /// loyalty rules (seconds; 0: never). It also runs once at start.
    #[arg(
        long,
        env = "OLIVINE_LOYALTY_BIRTHDAY_SCAN_SECS",
        default_value_t = 3600
    )]
    pub loyalty_birthday_scan_secs: u64,

    /// How often "bought together", "viewed together" and visitors' category affinity
    /// are computed from the last 90 days (seconds; 0: never). What was computed stays
    /// in the database across restarts.
    #[arg(long, env = "OLIVINE_RECOMMENDATIONS_SECS", default_value_t = 3600)]
    pub recommendations_secs: u64,

    /// Subscription renewals this node runs at once, on workers and a database pool of
    /// their own, so a renewal storm never holds up shoppers or other background work
    /// (0: this node runs no renewals; others in the cluster do). Three renew as fast as
    /// four on two cores and slow shoppers less (docs/PERFORMANCE.md); about one more
    /// than the cores is the measured sweet spot.
    #[arg(long, env = "OLIVINE_RENEWAL_WORKERS", default_value_t = 3)]
    pub renewal_workers: usize,

    #[command(flatten)]
    pub cluster: ClusterConfig,

    #[command(flatten)]
    pub media: MediaConfig,

    /// Scheduled backups (docs/BACKUPS.md).
    #[command(flatten)]
    pub backups: crate::backup::schedule::ScheduleConfig,
}

/// Product media: uploads and the variants made of them (docs/MEDIA.md).
#[derive(clap::Args, Clone, Debug)]
pub struct MediaConfig {
    /// Largest accepted image upload, in bytes (the upload route's body limit; other
    /// routes keep OLIVINE_MAX_BODY_BYTES).
    #[arg(long, env = "OLIVINE_MEDIA_MAX_UPLOAD_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub media_max_upload_bytes: usize,

    /// Most pixels (width x height) an uploaded image may declare: a larger one is refused
    /// before it is decoded (a decompression bomb declares billions in a few bytes).
    #[arg(long, env = "OLIVINE_MEDIA_MAX_PIXELS", default_value_t = 100_000_000)]
    pub media_max_pixels: u64,

    /// Where media is stored. Unset: `<data dir>/media`.
    #[arg(long, env = "OLIVINE_MEDIA_DIR")]
    pub media_dir: Option<PathBuf>,

    /// An S3-compatible bucket to store media in (shared by every node); unset: the local
    /// media directory. Credentials: the settings below, else the AWS_* variables.
    #[arg(long, env = "OLIVINE_MEDIA_S3_BUCKET")]
    pub media_s3_bucket: Option<String>,

    /// The S3 endpoint for a service other than AWS (MinIO, Ceph, R2, a local moto):
    /// e.g. `http://127.0.0.1:9000`; path-style requests.
    #[arg(long, env = "OLIVINE_MEDIA_S3_ENDPOINT")]
    pub media_s3_endpoint: Option<String>,

    #[arg(long, env = "OLIVINE_MEDIA_S3_REGION", default_value = "us-east-1")]
    pub media_s3_region: String,

    #[arg(long, env = "OLIVINE_MEDIA_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub media_s3_access_key_id: Option<String>,

    #[arg(
        long,
        env = "OLIVINE_MEDIA_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub media_s3_secret_access_key: Option<String>,

    /// Media variant jobs this node runs at once, on workers and a pool of their own at a
    /// lower CPU priority, so image work never holds up other jobs or starves shoppers
    /// (0: this node makes no variants; others in the cluster do).
    #[arg(long, env = "OLIVINE_MEDIA_WORKERS", default_value_t = 1)]
    pub media_workers: usize,

    /// How much lower the media thread's CPU priority is (its nice value, 0 to 19; 0 keeps
    /// the node's own), so shoppers' requests go first on a busy node. 19 puts it in
    /// Linux's idle class: it runs only on CPU time nothing else wants.
    #[arg(long, env = "OLIVINE_MEDIA_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub media_nice: i32,

    /// rav1e's speed for AVIF variants: 1 (smallest files, slowest) to 10 (fastest).
    #[arg(long, env = "OLIVINE_MEDIA_AVIF_SPEED", default_value_t = 6)]
    pub media_avif_speed: u8,

    /// AVIF quality, 1 to 100.
    #[arg(long, env = "OLIVINE_MEDIA_AVIF_QUALITY", default_value_t = 60.0)]
    pub media_avif_quality: f32,

    /// Lossy WebP quality, 1 to 100.
    #[arg(long, env = "OLIVINE_MEDIA_WEBP_QUALITY", default_value_t = 80.0)]
    pub media_webp_quality: f32,

    /// JPEG fallback quality, 1 to 100.
    #[arg(long, env = "OLIVINE_MEDIA_JPEG_QUALITY", default_value_t = 82)]
    pub media_jpeg_quality: u8,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            media_max_upload_bytes: 25 * 1024 * 1024,
            media_max_pixels: 100_000_000,
            media_dir: None,
            media_s3_bucket: None,
            media_s3_endpoint: None,
            media_s3_region: "us-east-1".to_owned(),
            media_s3_access_key_id: None,
            media_s3_secret_access_key: None,
            media_workers: 1,
            media_nice: 10,
            media_avif_speed: 6,
            media_avif_quality: 60.0,
            media_webp_quality: 80.0,
            media_jpeg_quality: 82,
        }
    }
}

/// Running several nodes: the read replica, the bus and the job workers.
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterConfig {
    /// A read replica's URL (`postgres://…`) for reads that tolerate lag: catalog pages
    /// and listings on a cache miss. Unset: every read goes to the primary.
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
    pub database_read_url: Option<String>,

    /// This node's name in `bus_nodes`, the job leases and the logs. Unset: host name,
    /// process id and a random suffix.
    #[arg(long, env = "OLIVINE_NODE_ID")]
    pub node_id: Option<String>,

    /// How often a node looks at the event log when no wake-up came (milliseconds).
    #[arg(long, env = "OLIVINE_BUS_POLL_MS", default_value_t = 500)]
    pub bus_poll_ms: u64,

    /// How long a cluster-once consumer's lease lasts: a dead node's consumers move to
    /// another node after this long (seconds).
    #[arg(long, env = "OLIVINE_BUS_LEASE_SECS", default_value_t = 30)]
    pub bus_lease_secs: u64,

    /// Attempts a cluster-once consumer makes at one event before dead-lettering it.
    #[arg(long, env = "OLIVINE_BUS_MAX_ATTEMPTS", default_value_t = 10)]
    pub bus_max_attempts: u32,

    /// The first retry delay of a failing cluster-once consumer (milliseconds; doubles
    /// with every attempt, up to five minutes).
    #[arg(long, env = "OLIVINE_BUS_RETRY_BASE_MS", default_value_t = 1000)]
    pub bus_retry_base_ms: u64,

    /// How long events stay in the log after every consumer has handled them (seconds).
    #[arg(long, env = "OLIVINE_BUS_RETENTION_SECS", default_value_t = 3600)]
    pub bus_retention_secs: u64,

    /// How often handled events are pruned (seconds; 0: never).
    #[arg(long, env = "OLIVINE_BUS_PRUNE_SECS", default_value_t = 600)]
    pub bus_prune_secs: u64,

    /// Jobs this node runs at once.
    #[arg(long, env = "OLIVINE_JOB_WORKERS", default_value_t = 4)]
    pub job_workers: usize,

    /// How long a job's lease lasts without renewal: a dead node's jobs run elsewhere
    /// after this long (seconds).
    #[arg(long, env = "OLIVINE_JOB_LEASE_SECS", default_value_t = 60)]
    pub job_lease_secs: u64,

    /// How often the job workers look for due jobs when nothing woke them
    /// (milliseconds).
    #[arg(long, env = "OLIVINE_JOB_POLL_MS", default_value_t = 1000)]
    pub job_poll_ms: u64,

    /// The first retry delay of a failed job (milliseconds; doubles with every attempt,
    /// up to an hour).
    #[arg(long, env = "OLIVINE_JOB_RETRY_BASE_MS", default_value_t = 1000)]
    pub job_retry_base_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            database_read_url: None,
            node_id: None,
            bus_poll_ms: 500,
            bus_lease_secs: 30,
            bus_max_attempts: 10,
            bus_retry_base_ms: 1000,
            bus_retention_secs: 3600,
            bus_prune_secs: 600,
            job_workers: 4,
            job_lease_secs: 60,
            job_poll_ms: 1000,
            job_retry_base_ms: 1000,
        }
    }
}

impl ClusterConfig {
    pub fn bus(&self) -> crate::bus::BusConfig {
        crate::bus::BusConfig {
            poll_interval: Duration::from_millis(self.bus_poll_ms.max(10)),
            lease: Duration::from_secs(self.bus_lease_secs.max(1)),
            max_attempts: self.bus_max_attempts.max(1),
            retry_base: Duration::from_millis(self.bus_retry_base_ms.max(1)),
        }
    }

    pub fn jobs(&self) -> crate::jobs::JobsConfig {
        crate::jobs::JobsConfig {
            workers: self.job_workers.max(1),
            lease: Duration::from_secs(self.job_lease_secs.max(1)),
            poll_interval: Duration::from_millis(self.job_poll_ms.max(10)),
            retry_base: Duration::from_millis(self.job_retry_base_ms.max(1)),
        }
    }
}

impl ServeConfig {
    /// Defaults for an embedded store in `data_dir`, as tests and tools want it.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        ServeConfig {
            store: StoreConfig::embedded(data_dir),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: None,
            owner_email: "owner@olivine.local".to_owned(),
            seed_demo: false,
            bundled_plugins: false,
            plugin_cache_dir: None,
            plugins_dir: None,
            plugin_http_ca_file: None,
            public_url: None,
            watch_plugins: false,
            max_body_bytes: 1024 * 1024,
            cache_ttl_secs: 300,
            shutdown_grace_secs: 30,
            master_key: None,
            master_key_file: None,
            cookie_secure: true,
            redis_url: None,
            rate_limit_prefix: "olivine:rl".to_owned(),
            rate_limit_sign_in: Limit::new(10, 60),
            rate_limit_sign_in_account: Limit::new(30, 15 * 60),
            rate_limit_register: Limit::new(5, 10 * 60),
            rate_limit_api: Limit::new(600, 60),
            rate_limit_catalog: Limit::new(6000, 60),
            trust_forwarded_for: false,
            session_sweep_secs: 3600,
            payment_reconcile_secs: 30,
            payment_reconcile_grace_secs: 120,
            subscription_scan_secs: 60,
            loyalty_expiry_scan_secs: 3600,
            loyalty_birthday_scan_secs: 3600,
            recommendations_secs: 3600,
            renewal_workers: 3,
            cluster: ClusterConfig::default(),
            media: MediaConfig::default(),
            backups: Default::default(),
        }
    }

    pub fn master_key_file(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.store.data_dir.join("master.key"))
    }

    /// The shop's public base URL, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.addr),
        }
    }

    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.plugin_cache_dir
            .clone()
            .unwrap_or_else(|| self.store.data_dir.join("plugin-cache"))
    }

    /// Where media is stored on local disk.
    pub fn media_dir(&self) -> PathBuf {
        self.media
            .media_dir
            .clone()
            .unwrap_or_else(|| self.store.data_dir.join("media"))
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins_dir
            .clone()
            .unwrap_or_else(|| self.store.data_dir.join("plugins"))
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }

    /// The owner's bootstrap token: configured, or read from (or created in) the data dir.
    pub fn resolve_admin_token(&self) -> anyhow::Result<String> {
        if let Some(token) = self.admin_token.as_deref().map(str::trim) {
            anyhow::ensure!(
                token.len() >= 16,
                "OLIVINE_ADMIN_TOKEN must be at least 16 characters"
            );
            return Ok(token.to_owned());
        }
        let path = self.store.data_dir.join("admin-token");
        read_or_create_token(&path)
    }
}

fn read_or_create_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if existing.len() >= 16 {
            return Ok(existing.to_owned());
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes: [u8; 24] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(path, format!("{token}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    tracing::info!(path = %path.display(), "generated an admin token");
    Ok(token)
}
