//! `olivine import <kind> <file>`: move a legacy shop's products, lots, customers,
//! orders and subscriptions in (docs/IMPORTS.md). Straight against the database, while the store serves:
//! batches are short transactions, and running nodes pick the changes up from the event
//! log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{ServeConfig, StoreConfig};
use crate::imports::{self, Format, Kind, Mode, Options, Summary};
use crate::store::Db;

/// The audit log's actor for imports from the command line.
const ACTOR: &str = "cli:import";

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// What the file holds: products, lots, customers, orders or subscriptions.
    #[arg(value_parser = parse_kind)]
    pub kind: Kind,
    /// The export to import (JSON as the API takes it, CSV, or Shopify's products CSV).
    pub file: PathBuf,
    #[command(flatten)]
    pub store: StoreConfig,
    /// json, csv or shopify. Unset: told by the content.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
    /// Check the file and say what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Import the valid rows and report the others (the default: nothing is imported
    /// while any row is invalid).
    #[arg(long, conflicts_with = "all_or_nothing")]
    pub valid_rows: bool,
    /// Nothing is imported while any row is invalid (the default).
    #[arg(long)]
    pub all_or_nothing: bool,
    /// Records per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Where the report goes (JSON). Unset: `<file>.report.json`.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The currency of a file's amounts when it names none (Shopify's export).
    #[arg(long, default_value = "EUR")]
    pub currency: String,
    /// Incremental sync by time: skip the records whose updated time (`updated_at`) is
    /// older than TIME, before they are checked; records without one are processed.
    /// RFC 3339 (2024-03-01T10:00:00Z) or a date (2024-03-01, midnight UTC). The run
    /// prints the newest updated time it saw: the next run's --since.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// The master key (base64). Unset: read from the master key file.
    #[arg(long, env = "OLIVINE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// The master key file. Unset: `<data dir>/master.key`.
    #[arg(long, env = "OLIVINE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Compiled plugins (the taxonomies that check products). Unset:
    /// `<data dir>/plugin-cache`.
    #[arg(long, env = "OLIVINE_PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<PathBuf>,
    /// Seconds between two progress lines when the output is no terminal (a log, CI); 0:
    /// a line at every step (every 50 rows checked, every batch written).
    #[arg(long, value_name = "SECS", env = "OLIVINE_IMPORT_PROGRESS_EVERY", default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub progress_every: u64,
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    Kind::parse(text).ok_or_else(|| {
        format!("`{text}` is not products, lots, customers, orders or subscriptions")
    })
}

fn parse_format(text: &str) -> Result<Format, String> {
    Format::parse(text).ok_or_else(|| format!("`{text}` is not json, csv or shopify"))
}

fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    // clap names the option (`invalid value '…' for '--since <TIME>'`): the reason only.
    imports::parse_since(text).map_err(|e| {
        let body = e.body();
        body.fields
            .into_iter()
            .next()
            .map_or(body.message, |field| field.message)
    })
}

pub async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let db = Db::connect(&args.store.database_url()?, 2).await?;
    crate::store::migrate(&db)
        .await
        .context("migrating the database")?;
    let ctx = context(&args, &db).await?;
    if !args.dry_run
        && let Some((run, row)) = imports::unfinished_run(&db, args.kind, &bytes).await?
    {
        println!("resuming import run #{run} of this file: rows up to {row} were imported");
    }
    let options = Options {
        mode: if args.valid_rows {
            Mode::ValidRows
        } else {
            Mode::AllOrNothing
        },
        dry_run: args.dry_run,
        batch_size: args.batch_size as usize,
        format: args.format,
        currency: args.currency.clone(),
        since: args.since,
    };
    let source = args.file.display().to_string();
    let progress = Progress::new(Duration::from_secs(args.progress_every));
    let summary = imports::run(&ctx, args.kind, &source, &bytes, &options, &progress)
        .await
        .map_err(|e| match e {
            crate::Error::Internal(err) => err,
            other => anyhow::anyhow!("{}", other.body().message),
        })?;
    if !args.dry_run {
        crate::store::analyze(&db, args.kind.tables()).await?;
    }
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| with_suffix(&args.file, ".report.json"));
    write_report(&report_path, &summary)?;
    print_summary(&summary, &report_path);
    db.close().await;
    let refused = summary.counts.invalid > 0 && options.mode == Mode::AllOrNothing;
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The database, the accounts' keys and (for products) the taxonomy plugins, as the
/// kernel loads them.
async fn context(args: &ImportArgs, db: &Db) -> anyhow::Result<imports::Context> {
    let mut config = ServeConfig::for_data_dir(&args.store.data_dir);
    config.store = args.store.clone();
    config.master_key = args.master_key.clone();
    config.master_key_file = args.master_key_file.clone();
    config.plugin_cache_dir = args.plugin_cache_dir.clone();
    let masters = crate::accounts::keys::load_master_keys(&config)?;
    let keys = crate::accounts::Keyring::load_any(db, &masters)
        .await
        .context("loading the accounts' keys")?;
    let plugins = if args.kind == Kind::Products {
        Some(taxonomies(&config, db).await?)
    } else {
        None
    };
    Ok(imports::Context {
        db: db.clone(),
        keys: Arc::new(keys),
        plugins,
        bus: None,
        actor: ACTOR.to_owned(),
    })
}

/// The store's enabled plugins, loaded as a node loads them (the taxonomies are used).
async fn taxonomies(config: &ServeConfig, db: &Db) -> anyhow::Result<Arc<crate::plugins::Plugins>> {
    let runtime = olivine_plugin_runtime::Runtime::new(olivine_plugin_runtime::RuntimeConfig {
        cache_dir: Some(config.plugin_cache_dir()),
        ..Default::default()
    })
    .context("starting the plugin runtime")?;
    let bus = crate::bus::Bus::new(crate::bus::node_id_from_env(None));
    let plugins = Arc::new(crate::plugins::Plugins::new(
        Arc::new(runtime),
        db.clone(),
        db.clone(),
        bus,
    ));
    plugins
        .reload()
        .await
        .map_err(|e| anyhow::anyhow!("loading plugins: {}", e.body().message))?;
    Ok(plugins)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn write_report(path: &Path, summary: &Summary) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(summary)?;
    std::fs::write(path, json).with_context(|| format!("writing the report {}", path.display()))
}

/// The counts, the first problems, and what was (or was not) done.
fn print_summary(summary: &Summary, report_path: &Path) {
    let c = &summary.counts;
    let verb = if summary.written { "" } else { "would be " };
    println!(
        "{}: {} row(s): {} {verb}new, {} {verb}updated, {} unchanged, {} invalid{}",
        summary.kind.as_str(),
        summary.rows,
        c.new,
        c.updated,
        c.unchanged,
        c.invalid,
        if summary.since.is_some() {
            format!(
                ", {} skipped (not changed since)",
                c.skipped_not_changed_since
            )
        } else {
            String::new()
        }
    );
    for p in summary.report.problems.iter().take(10) {
        println!("  row {}: {}: {}", p.row, p.field, p.message);
    }
    if summary.report.problems.len() > 10 {
        println!(
            "  … and {} more problem(s)",
            summary.report.problems.len() - 10
        );
    }
    if !summary.report.repairs.is_empty() {
        println!("{} value(s) repaired", summary.report.repairs.len());
    }
    if summary.dry_run {
        println!("dry run: nothing was written");
    } else if !summary.written {
        println!(
            "nothing was written: fix the invalid rows, or import the valid ones with --valid-rows"
        );
    } else if c.new + c.updated == 0 {
        println!("nothing changed: everything in the file was imported before");
    }
    if let Some(row) = summary.resumed_after_row {
        println!("resumed after row {row}");
    }
    if c.skipped_not_changed_since > 0 {
        println!(
            "{} record(s) skipped: not changed since {}",
            c.skipped_not_changed_since,
            summary.since.as_deref().unwrap_or("")
        );
    }
    match &summary.newest_updated_at {
        Some(newest) => {
            println!("newest updated time in the file: {newest}");
            // The next run goes on from here (never back before this run's since).
            let next = summary
                .since
                .as_ref()
                .filter(|s| *s > newest)
                .unwrap_or(newest);
            if summary.written {
                println!("next incremental run: --since {next}");
            }
        }
        None if summary.since.is_some() => {
            println!("no record in the file has an updated time: every record was read")
        }
        None => {}
    }
    println!("report: {}", report_path.display());
}

/// A bar with counts and rate on a terminal; a plain line every few seconds elsewhere.
struct Progress {
    bar: ProgressBar,
    /// Time between two plain lines.
    every: Duration,
    phase: std::sync::Mutex<Phase>,
}

/// The phase under way (`checking customers`), when it started, and when its last
/// plain line was printed.
struct Phase {
    what: String,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    fn new(every: Duration) -> Progress {
        let bar = ProgressBar::new(0);
        let style =
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
                .map(|style| style.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress {
            bar,
            every,
            phase: std::sync::Mutex::new(Phase {
                what: String::new(),
                started: Instant::now(),
                last_line: Instant::now(),
            }),
        }
    }
}

impl imports::Progress for Progress {
    fn start(&self, what: &str, total: usize) {
        self.bar.reset();
        self.bar.set_message(what.to_owned());
        self.bar.set_length(total as u64);
        if let Ok(mut phase) = self.phase.lock() {
            *phase = Phase {
                what: what.to_owned(),
                started: Instant::now(),
                last_line: Instant::now(),
            };
        }
        if self.bar.is_hidden() {
            println!("{what}: {total} record(s)");
        }
    }

    fn advance(&self, done: usize) {
        self.bar.set_position(done as u64);
        if !self.bar.is_hidden() {
            return;
        }
        let Ok(mut phase) = self.phase.lock() else {
            return;
        };
        let total = self.bar.length().unwrap_or(0) as usize;
        if phase.last_line.elapsed() >= self.every || done == total {
            phase.last_line = Instant::now();
            let rate = done as f64 / phase.started.elapsed().as_secs_f64().max(0.001);
            println!("{}: {done}/{total} record(s), {rate:.0}/s", phase.what);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
