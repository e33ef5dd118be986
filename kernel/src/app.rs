//! Application state and the kernel's lifecycle: connect, migrate, seed, start the event
//! dispatcher, and stop it again.

use std::ops::Deref;
use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accounts::Keyring;
use crate::bus::{Bus, Dispatcher};
use crate::cache::{CacheInvalidator, CatalogCache};
use crate::config::ServeConfig;
use crate::plugins::{PluginReloader, Plugins};
use crate::store::Db;

pub struct Inner {
    pub db: Db,
    pub bus: Bus,
    pub cache: CatalogCache,
    pub config: ServeConfig,
    pub metrics: PrometheusHandle,
    pub plugins: Arc<Plugins>,
    /// The accounts' keys (identity encryption, email lookup, token signing).
    pub keys: Arc<Keyring>,
    /// Rate limits per client (in this process, or in Redis).
    pub limiter: Arc<crate::ratelimit::RateLimiter>,
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

/// A running kernel: its state and its background tasks.
pub struct Kernel {
    pub state: AppState,
    background_db: Db,
    shutdown: watch::Sender<bool>,
    dispatcher: JoinHandle<()>,
    /// The plugins directory watcher, when enabled.
    plugins_dir: Option<JoinHandle<()>>,
    /// The sweep of expired customer sessions, when enabled.
    session_sweep: Option<JoinHandle<()>>,
    /// The payment reconciler, when enabled.
    payment_reconciler: Option<JoinHandle<()>>,
}

impl Kernel {
    /// Connects to the database, applies migrations, seeds the demo catalog into an empty
    /// store when configured to, and starts the event dispatcher.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Kernel> {
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
        let bus = Bus::new();
        let runtime = olivine_plugin_runtime::Runtime::new(olivine_plugin_runtime::RuntimeConfig {
            cache_dir: Some(config.plugin_cache_dir()),
            ..Default::default()
        })
        .context("starting the plugin runtime")?;
        // Background work gets its own small pool so it never queues behind (or in
        // front of) shoppers' requests.
        let background_db = Db::connect_background(&url, 3).await?;
        let plugins = Arc::new(Plugins::new(
            Arc::new(runtime),
            db.clone(),
            background_db.clone(),
            bus.clone(),
        ));
        if config.bundled_plugins {
            let installed = crate::plugins::bundled::install_missing(&plugins)
                .await
                .map_err(|e| anyhow::anyhow!("installing bundled plugins: {}", e.body().message))?;
            if installed > 0 {
                tracing::info!(installed, "installed the bundled plugins");
            }
        }
        plugins
            .reload()
            .await
            .map_err(|e| anyhow::anyhow!("loading plugins: {}", e.body().message))?;
        let cache = CatalogCache::new(config.cache_ttl());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let dispatcher = Dispatcher::new(
            background_db.clone(),
            bus.clone(),
            vec![
                Arc::new(CacheInvalidator {
                    cache: cache.clone(),
                }),
                Arc::new(PluginReloader {
                    plugins: plugins.clone(),
                }),
            ],
        );
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
        let session_sweep = (config.session_sweep_secs > 0).then(|| {
            tokio::spawn(crate::accounts::sweep::run(
                background_db.clone(),
                std::time::Duration::from_secs(config.session_sweep_secs),
                shutdown_rx.clone(),
            ))
        });
        let dispatcher = tokio::spawn(dispatcher.run(shutdown_rx));
        let state = AppState(Arc::new(Inner {
            db,
            bus,
            cache,
            config,
            metrics,
            plugins,
            keys,
            limiter,
        }));
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
        // Payments a crash left unsettled are settled at once, then checked regularly.
        let payment_reconciler = (state.config.payment_reconcile_secs > 0).then(|| {
            tokio::spawn(crate::orders::reconcile::run(
                state.clone(),
                std::time::Duration::from_secs(state.config.payment_reconcile_secs),
                std::time::Duration::from_secs(state.config.payment_reconcile_grace_secs),
                shutdown.subscribe(),
            ))
        });
        Ok(Kernel {
            state,
            background_db,
            shutdown,
            dispatcher,
            plugins_dir,
            session_sweep,
            payment_reconciler,
        })
    }

    pub fn router(&self) -> axum::Router {
        crate::http::router(self.state.clone())
    }

    /// Stops background work and closes the pool. Events not yet delivered stay in the
    /// outbox and are delivered after the next start.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Err(err) = self.dispatcher.await {
            tracing::warn!(error = %err, "event dispatcher ended abnormally");
        }
        if let Some(watcher) = self.plugins_dir
            && let Err(err) = watcher.await
        {
            tracing::warn!(error = %err, "plugins directory watcher ended abnormally");
        }
        if let Some(sweep) = self.session_sweep
            && let Err(err) = sweep.await
        {
            tracing::warn!(error = %err, "session sweep ended abnormally");
        }
        if let Some(reconciler) = self.payment_reconciler
            && let Err(err) = reconciler.await
        {
            tracing::warn!(error = %err, "payment reconciler ended abnormally");
        }
        self.background_db.close().await;
        self.state.db.close().await;
    }
}
