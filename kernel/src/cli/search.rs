//! `olivine search reindex`: rebuild the data directory's search index from the
//! database with the store stopped; and `olivine seed --synthetic N`, the catalog the
//! search benchmark (bench/search.sh) runs on.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use tantivy::Directory;
use tantivy::directory::error::LockError;
use tantivy::directory::{INDEX_WRITER_LOCK, MmapDirectory};

use crate::config::StoreConfig;
use crate::search::SearchIndex;
use crate::store::Db;

#[derive(Subcommand)]
pub enum SearchCommand {
    /// Rebuild this data directory's search index from the database, with the store
    /// stopped (a running node rebuilds its own index when it starts).
    Reindex(StoreConfig),
}

pub async fn run(command: SearchCommand) -> anyhow::Result<()> {
    match command {
        SearchCommand::Reindex(store) => reindex(&store).await,
    }
}

/// Progress on a terminal as a bar; elsewhere (a log file, CI) as a line each tenth.
struct Progress {
    bar: ProgressBar,
    what: &'static str,
    /// Tenths printed so far, when there is no bar.
    tenths: AtomicUsize,
}

impl Progress {
    fn new(what: &'static str) -> Progress {
        let bar = ProgressBar::new(0);
        let style =
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
                .map(|style| style.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(what);
        Progress {
            bar,
            what,
            tenths: AtomicUsize::new(0),
        }
    }

    fn set(&self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        if self.bar.is_hidden() && total > 0 {
            let tenths = done * 10 / total;
            if self.tenths.fetch_max(tenths, Ordering::Relaxed) < tenths {
                println!("{}: {done}/{total}", self.what);
            }
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn in_use(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "the search index in {} is in use by a running node: stop it first, or leave it \
         (a running node rebuilds its index when it starts)",
        dir.display()
    )
}

/// Fails when a node holds the index's writer lock (released again at once).
fn check_not_in_use(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let directory = MmapDirectory::open(dir)
        .with_context(|| format!("opening the search index in {}", dir.display()))?;
    match directory.acquire_lock(&INDEX_WRITER_LOCK) {
        Ok(_lock) => Ok(()),
        Err(LockError::LockBusy) => Err(in_use(dir)),
        Err(err) => Err(anyhow::anyhow!(
            "cannot lock the search index in {}: {err}",
            dir.display()
        )),
    }
}

async fn open_migrated(store: &StoreConfig) -> anyhow::Result<Db> {
    let db = Db::connect(&store.database_url()?, 2).await?;
    let version = crate::store::schema_version(&db).await?;
    if version.is_none_or(|v| v < crate::store::latest_version(db.backend)) {
        db.close().await;
        anyhow::bail!("the database is not migrated (run `olivine migrate` first)");
    }
    Ok(db)
}

/// `olivine search reindex`.
pub async fn reindex(store: &StoreConfig) -> anyhow::Result<()> {
    let dir = store.data_dir.join("search");
    check_not_in_use(&dir)?;
    let db = open_migrated(store).await?;
    let result = reindex_on(&db, &dir).await;
    db.close().await;
    result
}

async fn reindex_on(db: &Db, dir: &Path) -> anyhow::Result<()> {
    let index = SearchIndex::open(dir, db.clone())?;
    // A node that started since the check: the index fell back to memory.
    if index.location.is_none() {
        return Err(in_use(dir));
    }
    let started = Instant::now();
    let progress = Progress::new("indexing products");
    let built = index
        .build_reporting(&|done, total| progress.set(done, total))
        .await;
    progress.finish();
    let products = built.context("rebuilding the search index")?;
    println!(
        "search index rebuilt: {products} product(s) in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// `olivine seed --synthetic N` (the database is migrated by then).
pub async fn seed_synthetic(db: &Db, variants: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let progress = Progress::new("generating variants");
    let seeded = crate::seed_synthetic::seed_synthetic(
        db,
        variants,
        crate::seed_synthetic::SEED,
        &|done, total| progress.set(done, total),
    )
    .await;
    progress.finish();
    let report = seeded?;
    crate::store::analyze(
        db,
        &[
            "products",
            "variants",
            "lots",
            "categories",
            "product_categories",
        ],
    )
    .await?;
    println!(
        "seeded a synthetic catalog: {} product(s), {} variant(s), {} lot(s) in {:.1} s \
         ({} missing demo categories created)",
        report.products,
        report.variants,
        report.lots,
        started.elapsed().as_secs_f64(),
        report.categories_created
    );
    Ok(())
}
