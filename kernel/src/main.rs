//! `olivine`: the commerce kernel's command line.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use olivine::app::Kernel;
use olivine::config::{ServeConfig, StoreConfig};
use olivine::store::Db;

/// mimalloc rather than the system allocator: a request's small allocations (headers,
/// boxed futures, the route's extensions) come from a per-thread heap without locks.
/// docs/PERFORMANCE.md has the product JSON's figures with each.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "olivine", version, about = "Olivine commerce kernel")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the store: storefront, JSON API, admin API.
    Serve(Box<ServeConfig>),
    /// Apply pending database migrations and exit.
    Migrate(StoreConfig),
    /// Load the demo catalog (or another catalog file); existing products are skipped.
    Seed {
        #[command(flatten)]
        store: StoreConfig,
        /// A catalog file in the format of examples/demo/catalog.json.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Instead, a synthetic catalog of N variants (1 to 4 a product) for benchmarks,
        /// the same for the same N; into an empty catalog only, with the store stopped.
        #[arg(long, value_name = "N", conflicts_with = "file",
            value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        synthetic: Option<u32>,
    },
    /// Develop plugins (new, build, test) and manage a running kernel's plugins (install,
    /// list, enable, configure, rollback, ...).
    #[command(subcommand)]
    Plugin(olivine::cli::plugin::PluginCommand),
    /// Check the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Staff users: list, create, set a password, make an API token.
    #[command(subcommand)]
    Staff(olivine::cli::staff::StaffCommand),
    /// Manage the accounts' keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Product search: rebuild a stopped node's index.
    #[command(subcommand)]
    Search(olivine::cli::search::SearchCommand),
    /// Import products, lots, customers, orders or subscriptions from a legacy shop's export
    /// (docs/IMPORTS.md): checked first, idempotent by legacy id, resumable.
    Import(Box<olivine::cli::import::ImportArgs>),
    /// Back up the store while it serves: a consistent database snapshot, the local
    /// media and a manifest of checksums; never the master key (docs/BACKUPS.md).
    Backup(Box<olivine::backup::BackupArgs>),
    /// Restore a backup into an empty store: checksums and schema version checked
    /// first, older schemas migrated forward (docs/BACKUPS.md).
    Restore(Box<olivine::backup::RestoreArgs>),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-wrap the account keys under a new master key (no downtime), or with
    /// `--signing-key` add a new token signing key.
    Rotate(olivine::cli::keys::RotateArgs),
    /// Move every customer's identity from the shared data key to a key of their own
    /// (erasure then reaches backups); resumable, while the store serves.
    PerCustomer(olivine::cli::keys::PerCustomerArgs),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain: exit 0 when intact, 1 naming the first tampered entry, 2 when
    /// the check cannot run.
    Verify(StoreConfig),
}

fn main() -> ExitCode {
    olivine::telemetry::init_logging();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = match cli.command {
        Command::Serve(config) => serve(*config).await,
        Command::Migrate(store) => {
            let db = Db::connect(&store.database_url()?, 2).await?;
            let applied = olivine::store::migrate(&db).await?;
            println!(
                "{applied} migration(s) applied; schema at version {}",
                olivine::store::latest_version(db.backend)
            );
            Ok(())
        }
        Command::Seed {
            store,
            synthetic: Some(variants),
            ..
        } => {
            let db = Db::connect(&store.database_url()?, 2).await?;
            olivine::store::migrate(&db).await?;
            let seeded = olivine::cli::search::seed_synthetic(&db, variants as usize).await;
            db.close().await;
            seeded
        }
        Command::Seed {
            store,
            file,
            synthetic: None,
        } => {
            let db = Db::connect(&store.database_url()?, 2).await?;
            olivine::store::migrate(&db).await?;
            let json = match file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                None => olivine::seed::DEMO_CATALOG.to_owned(),
            };
            let report = olivine::seed::seed(&db, &json, &olivine::seed::Progress::Print).await?;
            println!(
                "seeded {} product(s) and {} lot(s); {} product(s) already present",
                report.products, report.lots, report.skipped
            );
            Ok(())
        }
        // Blocking (HTTP client, cargo, the sandbox); nothing else runs on this runtime.
        Command::Plugin(command) => olivine::cli::plugin::run(command),
        Command::Staff(command) => olivine::cli::staff::run(command).await,
        Command::Keys(KeysCommand::Rotate(args)) => olivine::cli::keys::rotate(&args).await,
        Command::Keys(KeysCommand::PerCustomer(args)) => {
            olivine::cli::keys::per_customer(&args).await.map(|_| ())
        }
        Command::Search(command) => olivine::cli::search::run(command).await,
        // 1 when invalid rows kept anything from being written.
        Command::Import(args) => return olivine::cli::import::run(*args).await,
        Command::Backup(args) => olivine::backup::backup(&args).await.map(|_| ()),
        Command::Restore(args) => olivine::backup::restore(&args).await.map(|_| ()),
        // 1 means tampered; a check that could not run says so with 2.
        Command::Audit(AuditCommand::Verify(store)) => {
            return Ok(audit_verify(store).await.unwrap_or_else(|err| {
                eprintln!("error: {err:#}");
                ExitCode::from(2)
            }));
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// `olivine audit verify`: exit 0 when the chain is intact, 1 naming the first tampered
/// entry (an error, such as an unreachable database, is exit 2).
async fn audit_verify(store: StoreConfig) -> anyhow::Result<ExitCode> {
    let db = Db::connect(&store.database_url()?, 2).await?;
    let version = olivine::store::schema_version(&db).await?;
    if version.is_none_or(|v| v < olivine::audit::SCHEMA_VERSION) {
        db.close().await;
        anyhow::bail!("the database is not migrated (run `olivine migrate` first)");
    }
    let report = olivine::audit::verify(&db)
        .await
        .map_err(|e| anyhow::anyhow!("verifying the audit log: {e:#}"))?;
    db.close().await;
    match report.tampered {
        None => {
            println!(
                "audit log intact: {} entries, head {}",
                report.entries, report.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(tampered) => {
            println!(
                "audit log TAMPERED at entry seq {}: {}",
                tampered.seq, tampered.problem
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let addr = config.addr;
    let kernel = Kernel::start(config).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        "Olivine is serving at http://{local}/ (the owner's admin API token is in {}/admin-token unless OLIVINE_ADMIN_TOKEN is set; `olivine staff` manages staff users)",
        kernel.state.config.store.data_dir.display()
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The peer address is the client's identity for rate limits.
    let app = kernel
        .router()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(());
    });
    let server = tokio::spawn(async move { server.await });
    // Once the signal came, give in-flight requests the grace period, then stop anyway.
    let mut server = server;
    tokio::select! {
        result = &mut server => { result??; }
        _ = async { let _ = stop_rx.await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over; exiting with requests still in flight");
            server.abort();
        }
    }
    kernel.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
