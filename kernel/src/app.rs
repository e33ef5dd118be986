//! Application state and the kernel's lifecycle: connect, migrate, seed, start the bus
//! and the job workers, and stop them again.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accounts::Keyring;
use crate::bus::{Bus, BusParts, BusRuntime, ClusterOnceConsumer, NodeLocalConsumer};
use crate::cache::{CacheInvalidator, CatalogCache};
use crate::config::ServeConfig;
use crate::jobs::{JobRegistry, JobRuntime, Schedule};
use crate::plugins::{PluginReloader, Plugins};
use crate::store::{Backend, Db, Reads};
use crate::time::Clock;

#[derive(Clone)]
pub struct Inner {
    /// The primary's pool for shoppers' and staff's requests.
    pub db: Db,
    /// The pool of durable background work: job workers, cluster-once consumers, the
    /// event sequencer. Never queues behind (or in front of) shoppers' requests.
    pub work_db: Db,
    /// Reads that tolerate lag (the catalog on a cache miss): the replica when fresh.
    pub reads: Reads,
    /// The kernel's clock: time-based work reads it, tests move it.
    pub clock: Clock,
    pub bus: Bus,
    pub cache: CatalogCache,
    pub config: ServeConfig,
    pub metrics: PrometheusHandle,
    pub plugins: Arc<Plugins>,
    /// The accounts' keys (identity encryption, email lookup, token signing).
    pub keys: Arc<Keyring>,
    /// Rate limits per client (in this process, or in Redis).
    pub limiter: Arc<crate::ratelimit::RateLimiter>,
    /// This node's product search index.
    pub search: Arc<crate::search::SearchIndex>,
    /// The behaviour recorder and the related products read lately.
    pub recommendations: crate::recommendations::Recommendations,
    /// This node's live-update connections (WebSockets), fed by the live consumer.
    pub live: Arc<crate::live::LiveHub>,
    /// Where product media is stored (local disk or an S3-compatible bucket).
    pub media: crate::media::Storage,
    /// The admin dashboard's stock counts, kept briefly.
    pub dashboard: crate::admin_ui::DashboardCache,
}

/// Shared state of every request handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The same kernel with `db` as its pool: background work runs domain code that
    /// reads `state.db` without taking shoppers' connections.
    pub fn on_pool(&self, db: Db) -> AppState {
        let mut inner = (*self.0).clone();
        inner.db = db;
        AppState(Arc::new(inner))
    }
}

/// What an embedding program (or a test) adds to a kernel: consumers of the bus, and
/// job kinds and schedules beside the built-in ones.
#[derive(Default)]
pub struct Extensions {
    pub node_local: Vec<Arc<dyn NodeLocalConsumer>>,
    pub cluster_once: Vec<Arc<dyn ClusterOnceConsumer>>,
    pub jobs: JobRegistry,
    /// The clock to run on (tests share one between nodes and move it).
    pub clock: Option<Clock>,
}

/// A lane of job workers of its own, with its own pool, for one kind of long job (renewals
/// call payment processors, media encodes images), so it never starves the others.
struct Lane {
    runtime: JobRuntime,
    pool: Db,
}

impl Lane {
    /// `None` with 0 workers: this node does not run the kind (other nodes do).
    async fn start(
        state: &AppState,
        background_db: &Db,
        name: &'static str,
        workers: usize,
        handler: Arc<dyn crate::jobs::JobHandler>,
        jobs_config: &crate::jobs::JobsConfig,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Option<Lane>> {
        if workers == 0 {
            return Ok(None);
        }
        let pool = Db::connect_named(
            &state.config.store.database_url()?,
            u32::try_from(workers + 2).unwrap_or(8),
            name,
        )
        .await?;
        let mut registry = JobRegistry::default();
        registry.handler(handler);
        let runtime = JobRuntime::start(
            state.on_pool(pool.clone()),
            background_db.clone(),
            Arc::new(registry),
            crate::jobs::JobsConfig {
                workers,
                ..jobs_config.clone()
            },
            shutdown.clone(),
        )
        .await?;
        Ok(Some(Lane { runtime, pool }))
    }

    async fn stop(self) {
        self.runtime.stop().await;
        self.pool.close().await;
    }
}

/// A running kernel: its state and its background tasks.
pub struct Kernel {
    pub state: AppState,
    background_db: Db,
    shutdown: watch::Sender<bool>,
    bus: BusRuntime,
    jobs: JobRuntime,
    /// The renewals' own lane of job workers and its pool (none with 0 renewal workers).
    renewals: Option<Lane>,
    /// The media variants' own lane (none with 0 media workers): image work never holds
    /// the other jobs' workers.
    media_lane: Option<Lane>,
    /// The plugins directory watcher, when enabled.
    plugins_dir: Option<JoinHandle<()>>,
}

impl Kernel {
    /// Connects to the database, applies migrations, seeds the demo catalog into an empty
    /// store when configured to, and starts the bus and the job workers.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Kernel> {
        Kernel::start_with(config, Extensions::default()).await
    }

    pub async fn start_with(config: ServeConfig, extensions: Extensions) -> anyhow::Result<Kernel> {
        let metrics = crate::telemetry::prometheus();
        let url = config.store.database_url()?;
        let db = Db::connect(&url, config.store.db_max_connections).await?;
        crate::store::migrate(&db)
            .await
            .context("migrating the database")?;
        if config.seed_demo && crate::seed::store_is_empty(&db).await? {
            tracing::info!("empty store: loading the demo catalog");
            crate::seed::seed_demo(&db, &crate::seed::Progress::Log).await?;
        }
        let bootstrap_token = config.resolve_admin_token()?;
        crate::staff::ensure_owner(&db, &config.owner_email, &bootstrap_token)
            .await
            .map_err(|e| anyhow::anyhow!("setting up the store's owner: {}", e.body().message))?;
        let master_keys = crate::accounts::keys::load_master_keys(&config)?;
        let keys = Arc::new(
            Keyring::load_any(&db, &master_keys)
                .await
                .context("loading the accounts' keys")?,
        );
        let limiter = Arc::new(crate::ratelimit::RateLimiter::from_config(&config).await?);
        let clock = extensions.clock.clone().unwrap_or_default();
        let bus = Bus::new(crate::bus::node_id_from_env(
            config.cluster.node_id.as_deref(),
        ));
        let extra_ca_pem = match &config.plugin_http_ca_file {
            Some(path) => Some(std::fs::read(path).with_context(|| {
                format!("reading OLIVINE_PLUGIN_HTTP_CA_FILE {}", path.display())
            })?),
            None => None,
        };
        let runtime = olivine_plugin_runtime::Runtime::new(olivine_plugin_runtime::RuntimeConfig {
            cache_dir: Some(config.plugin_cache_dir()),
            extra_ca_pem,
            ..Default::default()
        })
        .context("starting the plugin runtime")?;
        // Background work gets pools of its own so it never queues behind (or in front
        // of) shoppers' requests: relaxed bookkeeping, and durable work.
        let background_db = Db::connect_background(&url, 3).await?;
        // The loyalty processor and the notification router beside the extensions'
        // cluster-once consumers.
        let work_connections =
            u32::try_from(config.cluster.job_workers + extensions.cluster_once.len() + 5)
                .unwrap_or(8);
        let work_db = Db::connect_named(&url, work_connections, "jobs").await?;
        let reads = Reads::new(db.clone(), connect_replica(&config, db.backend).await?);
        // Node-local consumers start where the log is now: read it before loading the
        // plugins, so an activation committed in between is handled, not missed.
        let start = crate::bus::log::head(&mut *work_db.pool.acquire().await?).await?;
        raise_fence_to_now(&db, &reads).await?;
        let plugins = Arc::new(Plugins::new(
            Arc::new(runtime),
            db.clone(),
            background_db.clone(),
            bus.clone(),
        ));
        if config.bundled_plugins {
            let outcome = crate::plugins::bundled::install_or_upgrade(&plugins)
                .await
                .map_err(|e| anyhow::anyhow!("installing bundled plugins: {}", e.body().message))?;
            if outcome != Default::default() {
                tracing::info!(
                    installed = outcome.installed,
                    upgraded = outcome.upgraded,
                    "installed the bundled plugins"
                );
            }
        }
        plugins
            .reload()
            .await
            .map_err(|e| anyhow::anyhow!("loading plugins: {}", e.body().message))?;
        plugins.set_prices_include_tax(
            crate::inventory::settings::load(&mut *db.pool.acquire().await?)
                .await
                .map_err(|e| anyhow::anyhow!("reading the store settings: {}", e.body().message))?
                .prices_include_tax,
        );
        let cache = CatalogCache::new(config.cache_ttl());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let wakeups = Arc::new(
            crate::bus::wakeup::Wakeups::connect(
                config.redis_url.as_deref(),
                &url,
                &work_db,
                &start.store_id,
            )
            .await?,
        );
        let search = crate::search::SearchIndex::open(
            &config.store.data_dir.join("search"),
            background_db.clone(),
        )?;
        let live = Arc::new(crate::live::LiveHub::new());
        let mut node_local: Vec<Arc<dyn NodeLocalConsumer>> = vec![
            Arc::new(CacheInvalidator::new(cache.clone(), work_db.clone())),
            Arc::new(crate::search::SearchIndexer::new(search.clone())),
            Arc::new(crate::live::LiveConsumer::new(
                live.clone(),
                background_db.clone(),
            )),
            Arc::new(PluginReloader {
                plugins: plugins.clone(),
            }),
        ];
        node_local.extend(extensions.node_local);
        let mut cluster_once: Vec<Arc<dyn ClusterOnceConsumer>> =
            vec![Arc::new(crate::loyalty::rules::LoyaltyConsumer {
                plugins: Arc::downgrade(&plugins),
                clock: clock.clone(),
            })];
        cluster_once.push(Arc::new(crate::notify::NotifyConsumer {
            plugins: Arc::downgrade(&plugins),
            clock: clock.clone(),
            bus: bus.clone(),
            public_url: config.public_url(),
        }));
        cluster_once.extend(extensions.cluster_once);
        let bus_runtime = BusRuntime::start(
            &bus,
            BusParts {
                work_db: work_db.clone(),
                background_db: background_db.clone(),
                reads: reads.clone(),
                clock: clock.clone(),
                config: config.cluster.bus(),
                node_local,
                cluster_once,
                wakeups,
            },
            start.position,
            shutdown_rx.clone(),
        )
        .await?;
        let plugins_dir = if config.watch_plugins {
            Some(
                crate::plugins::watch::start(
                    plugins.clone(),
                    config.plugins_dir(),
                    shutdown_rx.clone(),
                )
                .await?,
            )
        } else {
            None
        };
        let media = crate::media::Storage::from_config(&config)?;
        tracing::info!(storage = %media.describe(), "product media storage");
        let jobs_config = config.cluster.jobs();
        let registry = Arc::new(built_in_jobs(&config, extensions.jobs));
        let state = AppState(Arc::new(Inner {
            db,
            work_db: work_db.clone(),
            reads,
            clock,
            bus,
            cache,
            config,
            metrics,
            plugins,
            keys,
            limiter,
            search: search.clone(),
            recommendations: crate::recommendations::Recommendations::start(work_db.clone()),
            live,
            media,
            dashboard: crate::admin_ui::new_dashboard_cache(),
        }));
        // Built after the bus head was read: the indexer applies what comes after.
        let daily = crate::search::rebuild_daily(
            Arc::downgrade(&search),
            state.clock.clone(),
            shutdown_rx.clone(),
        );
        tokio::spawn(async move {
            if let Err(err) = search.build().await {
                tracing::error!(error = %format!("{err:#}"), "building the search index failed");
            }
            drop(search);
            daily.await;
        });
        let media_lane = Lane::start(
            &state,
            &background_db,
            "media",
            state.config.media.media_workers,
            crate::media::variants_job(),
            &jobs_config,
            &shutdown_rx,
        )
        .await?;
        let renewals = Lane::start(
            &state,
            &background_db,
            "renewals",
            state.config.renewal_workers,
            crate::subscriptions::renew::renew_job(),
            &jobs_config,
            &shutdown_rx,
        )
        .await?;
        let jobs = JobRuntime::start(
            state.on_pool(work_db),
            background_db.clone(),
            registry,
            jobs_config,
            shutdown_rx,
        )
        .await?;
        // Erasure requests a crash left unfinished complete now.
        let resumed = crate::accounts::privacy::resume_pending(&state)
            .await
            .map_err(|e| match e {
                crate::error::Error::Internal(err) => err.context("resuming privacy requests"),
                other => anyhow::anyhow!("resuming privacy requests: {}", other.body().message),
            })?;
        if resumed > 0 {
            tracing::info!(resumed, "finished erasure requests left unfinished");
        }
        Ok(Kernel {
            state,
            background_db,
            shutdown,
            bus: bus_runtime,
            jobs,
            renewals,
            media_lane,
            plugins_dir,
        })
    }

    /// The HTTP surface as served (the fast lane in front of the routes).
    pub fn router(&self) -> crate::http::fast_lane::App {
        crate::http::router(self.state.clone())
    }

    /// Every route, without the fast lane (tests compare the two).
    pub fn routes(&self) -> axum::Router {
        crate::http::routes(self.state.clone())
    }

    /// Stops background work and closes the pools. Events not yet handled stay in the
    /// log (cluster-once consumers continue from their positions on any node); running
    /// jobs get a moment to finish, then go back to the queue.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.state.live.close_all();
        self.jobs.stop().await;
        for lane in [self.media_lane, self.renewals].into_iter().flatten() {
            lane.stop().await;
        }
        self.bus.stop().await;
        if let Some(watcher) = self.plugins_dir
            && let Err(err) = watcher.await
        {
            tracing::warn!(error = %err, "plugins directory watcher ended abnormally");
        }
        self.background_db.close().await;
        self.state.work_db.close().await;
        if let Some(replica) = self.state.reads.replica() {
            replica.close().await;
        }
        self.state.db.close().await;
    }
}

/// The kernel's own job kinds and schedules, with the extensions' beside them.
fn built_in_jobs(config: &ServeConfig, mut registry: JobRegistry) -> JobRegistry {
    registry
        .handler(crate::accounts::sweep::job())
        .handler(crate::orders::reconcile::job(Duration::from_secs(
            config.payment_reconcile_grace_secs,
        )))
        .handler(crate::bus::log::prune_job(Duration::from_secs(
            config.cluster.bus_retention_secs,
        )))
        .handler(crate::subscriptions::renew::scan_job())
        .handler(crate::loyalty::rules::rule_job())
        .handler(crate::loyalty::rules::expire_job())
        .handler(crate::loyalty::birthdays::job())
        .handler(crate::recommendations::job())
        .handler(crate::notify::deliver_job());
    // Only nodes with OLIVINE_BACKUP_DIR take scheduled backups (they have the disk, and
    // on PostgreSQL pg_dump).
    if let Some(schedule) = crate::backup::schedule::schedule(config) {
        registry
            .handler(crate::backup::schedule::job())
            .schedule(schedule);
    }
    if config.loyalty_expiry_scan_secs > 0 {
        registry.schedule(Schedule {
            name: "loyalty.expire",
            kind: crate::loyalty::rules::EXPIRE_JOB,
            interval: Duration::from_secs(config.loyalty_expiry_scan_secs),
            at_start: false,
        });
    }
    if config.loyalty_birthday_scan_secs > 0 {
        // At start too: a birthday the cluster slept through is caught up.
        registry.schedule(Schedule {
            name: "loyalty.birthdays",
            kind: crate::loyalty::birthdays::JOB,
            interval: Duration::from_secs(config.loyalty_birthday_scan_secs),
            at_start: true,
        });
    }
    if config.recommendations_secs > 0 {
        registry.schedule(Schedule {
            name: "recommendations.compute",
            kind: crate::recommendations::JOB,
            interval: Duration::from_secs(config.recommendations_secs),
            at_start: false,
        });
    }
    if config.subscription_scan_secs > 0 {
        registry.schedule(Schedule {
            name: "subscriptions.scan",
            kind: crate::subscriptions::renew::SCAN_JOB,
            interval: Duration::from_secs(config.subscription_scan_secs),
            at_start: true,
        });
    }
    if config.session_sweep_secs > 0 {
        registry.schedule(Schedule {
            name: "sessions.sweep",
            kind: crate::accounts::sweep::JOB,
            interval: Duration::from_secs(config.session_sweep_secs),
            at_start: false,
        });
    }
    if config.payment_reconcile_secs > 0 {
        // Payments a crash left unsettled are settled when a node starts, then
        // regularly.
        registry.schedule(Schedule {
            name: "payments.reconcile",
            kind: crate::orders::reconcile::JOB,
            interval: Duration::from_secs(config.payment_reconcile_secs),
            at_start: true,
        });
    }
    if config.cluster.bus_prune_secs > 0 {
        registry.schedule(Schedule {
            name: "bus.prune",
            kind: crate::bus::log::PRUNE_JOB,
            interval: Duration::from_secs(config.cluster.bus_prune_secs),
            at_start: false,
        });
    }
    registry
}

/// The read replica's pool, when `DATABASE_READ_URL` is set (PostgreSQL only).
async fn connect_replica(config: &ServeConfig, backend: Backend) -> anyhow::Result<Option<Db>> {
    let Some(url) = config
        .cluster
        .database_read_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    anyhow::ensure!(
        backend == Backend::Postgres && Backend::Postgres == backend_of(url),
        "DATABASE_READ_URL needs PostgreSQL as the primary and the replica"
    );
    let replica = Db::connect_named(url, config.store.db_max_connections, "replica")
        .await
        .context("connecting to the read replica (DATABASE_READ_URL)")?;
    tracing::info!("catalog reads go to the read replica when it is fresh");
    Ok(Some(replica))
}

fn backend_of(url: &str) -> Backend {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// A node that starts reads nothing from a replica older than the primary is now.
async fn raise_fence_to_now(db: &Db, reads: &Reads) -> anyhow::Result<()> {
    if reads.replica().is_none() {
        return Ok(());
    }
    let lsn: String = sqlx::Row::try_get(
        &sqlx::query("SELECT CAST(pg_current_wal_lsn() AS TEXT)")
            .fetch_one(&db.pool)
            .await?,
        0,
    )?;
    reads.raise_fence(&lsn);
    Ok(())
}
