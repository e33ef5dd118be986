//! Moving a store in: products, stock lots, customers, historical orders and
//! subscriptions from a legacy shop's export (docs/IMPORTS.md).
//!
//! A run reads the whole file and checks every row before it writes anything (the
//! report names each problem's row and field, and each repair made). Every record keeps
//! its legacy id: `import_records` maps (kind, legacy id) to the local row with a
//! fingerprint of what was imported, so the same file again changes nothing and a newer
//! export updates only what changed. Writes go in batches, one transaction each, and the
//! run (`import_runs`) moves with each batch: an interrupted run is resumed after its
//! last committed batch and ends as one run would have.
//!
//! An incremental sync can also go by time (`Options::since`): a record whose source
//! gives its updated time (`updated_at`) and says it is older than `since` is skipped
//! before it is checked; a record without one is processed. The summary answers the
//! newest updated time seen, for the next run's `since`.

pub mod api;
pub mod customers;
pub mod lots;
pub mod orders;
pub mod products;
pub mod repair;
pub mod report;
pub mod shopify;
pub mod source;
pub mod subscriptions;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row as _;

use crate::accounts::Keyring;
use crate::app::AppState;
use crate::error::{Error, FieldError, Result};
use crate::plugins::Plugins;
use crate::store::{Db, Tx};
pub use report::{Kept, Problem, Repair, Report};
pub use source::{Format, Row};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Products,
    Lots,
    Customers,
    Orders,
    Subscriptions,
}

impl Kind {
    /// The tables an import of this kind fills (their statistics are refreshed after it).
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Kind::Products => &[
                "products",
                "variants",
                "product_categories",
                "import_records",
            ],
            Kind::Lots => &["lots", "stock_ledger", "import_records"],
            Kind::Customers => &["customers", "import_records"],
            Kind::Orders => &[
                "orders",
                "order_lines",
                "order_allocations",
                "import_records",
            ],
            Kind::Subscriptions => &["subscriptions", "subscription_items", "import_records"],
        }
    }

    pub const ALL: [Kind; 5] = [
        Kind::Products,
        Kind::Lots,
        Kind::Customers,
        Kind::Orders,
        Kind::Subscriptions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Products => "products",
            Kind::Lots => "lots",
            Kind::Customers => "customers",
            Kind::Orders => "orders",
            Kind::Subscriptions => "subscriptions",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// What an import works with: the database, the accounts' keys (identity is encrypted),
/// the taxonomy plugins that check products, and who to name in the audit log.
pub struct Context {
    pub db: Db,
    pub keys: Arc<Keyring>,
    /// None: products are checked by the kernel's rules alone.
    pub plugins: Option<Arc<Plugins>>,
    /// Woken after each batch so this process's caches follow (other processes read
    /// the event log on their own).
    pub bus: Option<crate::bus::Bus>,
    pub actor: String,
}

impl Context {
    pub fn of(state: &AppState, actor: &str) -> Context {
        Context {
            db: state.db.clone(),
            keys: state.keys.clone(),
            plugins: Some(state.plugins.clone()),
            bus: Some(state.bus.clone()),
            actor: actor.to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Any invalid row and nothing is written.
    #[default]
    AllOrNothing,
    /// The valid rows are imported, the invalid ones reported.
    ValidRows,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub dry_run: bool,
    /// Records per transaction.
    pub batch_size: usize,
    /// None: detected from the content.
    pub format: Option<Format>,
    /// The currency of amounts in a file that does not name one (Shopify's export).
    pub currency: String,
    /// Skip the records whose updated time is older than this (read with
    /// [`parse_since`]); records without an updated time are processed.
    pub since: Option<DateTime<Utc>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::AllOrNothing,
            dry_run: false,
            batch_size: 500,
            format: None,
            currency: "EUR".to_owned(),
            since: None,
        }
    }
}

/// One record checked, repaired and fingerprinted, ready to be written.
pub struct Prepared {
    pub row: usize,
    pub legacy_id: String,
    pub fingerprint: String,
    pub record: Record,
}

pub enum Record {
    Product(Box<products::Item>),
    Lot(lots::Item),
    Customer(customers::Item),
    Order(Box<orders::Item>),
    Subscription(Box<subscriptions::Item>),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub invalid: u64,
    /// Records whose updated time is older than the run's `since`: not read further
    /// (not checked, not written).
    pub skipped_not_changed_since: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub kind: Kind,
    /// Records in the file.
    pub rows: usize,
    /// Done, or (dry run, or refused) what would be done.
    pub counts: Counts,
    pub dry_run: bool,
    /// False when nothing was written: a dry run, or invalid rows with all-or-nothing.
    pub written: bool,
    pub run_id: Option<i64>,
    /// The run went on from an interrupted one, after this file row.
    pub resumed_after_row: Option<i64>,
    /// The run's `since` (RFC 3339, UTC), when given.
    pub since: Option<String>,
    /// The newest updated time of the file's records (RFC 3339, UTC): the next
    /// incremental run's `since`. None when no record gives one.
    pub newest_updated_at: Option<String>,
    pub report: Report,
}

/// How a long run shows where it is.
pub trait Progress: Send + Sync {
    fn start(&self, what: &str, total: usize);
    fn advance(&self, done: usize);
    fn finish(&self);
}

/// Rows between two steps of the progress while checking: often enough for a line or a
/// bar that moves, rarely enough to cost nothing beside a row's queries.
pub const CHECK_PROGRESS_ROWS: usize = 50;

/// Tells `progress`, every [`CHECK_PROGRESS_ROWS`] rows, that `done` rows of a kind's
/// check are done (the runner tells it the last step).
pub fn checked_rows(progress: &dyn Progress, done: usize) {
    if done > 0 && done.is_multiple_of(CHECK_PROGRESS_ROWS) {
        progress.advance(done);
    }
}

/// No progress shown (the admin API, tests).
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: usize) {}
    fn advance(&self, _: usize) {}
    fn finish(&self) {}
}

/// Imports the file `bytes` (named `source` in the run's record) as records of `kind`.
pub async fn run(
    ctx: &Context,
    kind: Kind,
    source: &str,
    bytes: &[u8],
    options: &Options,
    progress: &dyn Progress,
) -> Result<Summary> {
    let mut report = Report::default();
    let rows = source::read(kind, bytes, options, &mut report)?;
    let total = rows.len();
    let times = updated_times(kind, rows, options.since, &mut report);
    let rows = times.rows;
    let to_check = rows.len();
    progress.start(&format!("checking {}", kind.as_str()), to_check);
    let prepared = check(ctx, kind, rows, &mut report, progress).await?;
    progress.advance(to_check);
    progress.finish();
    let existing = fingerprints(&ctx.db, kind, &prepared).await?;
    let mut counts = classify(&prepared, &existing);
    counts.invalid = report.invalid_rows() as u64;
    counts.skipped_not_changed_since = times.skipped;
    let refused = counts.invalid > 0 && options.mode == Mode::AllOrNothing;
    let mut summary = Summary {
        kind,
        rows: total,
        counts,
        dry_run: options.dry_run,
        written: false,
        run_id: None,
        resumed_after_row: None,
        since: options.since.map(crate::time::format_timestamp),
        newest_updated_at: times.newest.map(crate::time::format_timestamp),
        report,
    };
    if options.dry_run || refused {
        return Ok(summary);
    }
    let run = start_or_resume(
        ctx,
        &NewRun {
            kind,
            source,
            file_sha256: sha256_hex(bytes),
            total,
            invalid: counts.invalid,
            skipped: times.skipped,
            since: summary.since.as_deref(),
            newest_updated_at: summary.newest_updated_at.as_deref(),
            report: Report::kept_json(kind, &summary.report)?,
        },
    )
    .await?;
    let todo: Vec<&Prepared> = prepared
        .iter()
        .filter(|p| p.row as i64 > run.last_row)
        .collect();
    write_batches(
        ctx,
        &run,
        &todo,
        &existing,
        options.batch_size.max(1),
        progress,
    )
    .await?;
    summary.counts = Counts {
        skipped_not_changed_since: times.skipped,
        ..finish_run(&ctx.db, run.id).await?
    };
    summary.written = true;
    summary.run_id = Some(run.id);
    summary.resumed_after_row = run.resumed.then_some(run.last_row);
    Ok(summary)
}

/// A time as legacy exports write them: RFC 3339 (`2024-03-01T10:00:00Z`,
/// `2024-03-01T12:00:00+02:00`), or in UTC `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DDTHH:MM:SS`
/// or a plain date `YYYY-MM-DD` (its midnight).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Some(at) = crate::time::parse_timestamp(text) {
        return Some(at);
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Some(naive.and_utc())
}

/// Reads an incremental run's `since` (the CLI's `--since`, the admin API's `since`).
pub fn parse_since(text: &str) -> Result<DateTime<Utc>> {
    parse_time(text).ok_or_else(|| {
        Error::invalid(
            "since",
            format!(
                "`{text}` is not a time: give RFC 3339 (2024-03-01T10:00:00Z) or a date \
                 (2024-03-01, its midnight UTC)"
            ),
        )
    })
}

/// The rows left to read after `since`, how many were skipped, and the newest updated
/// time seen.
struct Times {
    rows: Vec<Row>,
    skipped: u64,
    newest: Option<DateTime<Utc>>,
}

/// Reads each row's `updated_at` (an order keeps it as the order's updated time; for
/// the other kinds it only tells when the record changed, and is taken out of the
/// record); skips the rows older than `since`, before anything else looks at them. An
/// `updated_at` that is not a time is a problem of its row (orders' own check names it).
fn updated_times(
    kind: Kind,
    rows: Vec<Row>,
    since: Option<DateTime<Utc>>,
    report: &mut Report,
) -> Times {
    let mut times = Times {
        rows: Vec::with_capacity(rows.len()),
        skipped: 0,
        newest: None,
    };
    let mut skipped_rows = HashSet::new();
    for mut row in rows {
        let given = match row.value.get("updated_at") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) if text.trim().is_empty() => None,
            Some(serde_json::Value::String(text)) => Some(parse_time(text)),
            Some(_) => Some(None),
        };
        if kind != Kind::Orders
            && let serde_json::Value::Object(fields) = &mut row.value
        {
            fields.remove("updated_at");
        }
        match given {
            None => {}
            Some(Some(at)) => {
                times.newest = times.newest.max(Some(at));
                if since.is_some_and(|since| at < since) {
                    times.skipped += 1;
                    skipped_rows.insert(row.row);
                    continue;
                }
            }
            Some(None) if kind == Kind::Orders => {}
            Some(None) => report.problem(
                row.row,
                legacy_id_of(&row.value, None).as_deref(),
                "updated_at",
                "must be a date and time such as 2024-03-01T10:00:00Z",
            ),
        }
        times.rows.push(row);
    }
    // What reading the file found in a skipped row (an amount that does not read, a
    // repair) is not this run's business either.
    if !skipped_rows.is_empty() {
        report.problems.retain(|p| !skipped_rows.contains(&p.row));
        report.repairs.retain(|r| !skipped_rows.contains(&r.row));
    }
    times
}

/// Checks every row (the kind's rules, then one legacy id once per file); returns the
/// rows that can be written.
async fn check(
    ctx: &Context,
    kind: Kind,
    mut rows: Vec<Row>,
    report: &mut Report,
    progress: &dyn Progress,
) -> Result<Vec<Prepared>> {
    for row in &mut rows {
        repair::trim_strings(&mut row.value, "", row.row, report);
    }
    let mut prepared = match kind {
        Kind::Products => products::check(ctx, rows, report, progress).await?,
        Kind::Lots => lots::check(ctx, rows, report, progress).await?,
        Kind::Customers => customers::check(ctx, rows, report, progress).await?,
        Kind::Orders => orders::check(ctx, rows, report, progress).await?,
        Kind::Subscriptions => subscriptions::check(ctx, rows, report, progress).await?,
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for item in &prepared {
        if let Some(first) = seen.get(&item.legacy_id) {
            report.problem(
                item.row,
                Some(&item.legacy_id),
                "legacy_id",
                format!("the same legacy id is on row {first}"),
            );
        } else {
            seen.insert(item.legacy_id.clone(), item.row);
        }
    }
    prepared.retain(|p| !report.has_problem(p.row));
    Ok(prepared)
}

/// A stable digest of what a record imports: equal content, equal fingerprint.
pub fn fingerprint(content: &impl Serialize) -> Result<String> {
    let text = serde_json::to_string(content).map_err(anyhow::Error::from)?;
    Ok(sha256_hex(text.as_bytes()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::accounts::keys::hex(&Sha256::digest(bytes))
}

/// The local id of a record imported before, by legacy id.
pub async fn local_id(
    conn: &mut sqlx::AnyConnection,
    kind: Kind,
    legacy_id: &str,
) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT local_id FROM import_records WHERE kind = $1 AND legacy_id = $2")
        .bind(kind.as_str())
        .bind(legacy_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// What was imported before of these records: legacy id → (local id, fingerprint).
async fn fingerprints(
    db: &Db,
    kind: Kind,
    prepared: &[Prepared],
) -> Result<HashMap<String, (i64, String)>> {
    let wanted: HashSet<&str> = prepared.iter().map(|p| p.legacy_id.as_str()).collect();
    let mut found = HashMap::new();
    // One pass over the kind's records: fewer round trips than one query per row.
    let rows =
        sqlx::query("SELECT legacy_id, local_id, fingerprint FROM import_records WHERE kind = $1")
            .bind(kind.as_str())
            .fetch_all(&db.pool)
            .await?;
    for row in rows {
        let legacy_id: String = row.try_get(0)?;
        if wanted.contains(legacy_id.as_str()) {
            found.insert(legacy_id, (row.try_get(1)?, row.try_get(2)?));
        }
    }
    Ok(found)
}

fn classify(prepared: &[Prepared], existing: &HashMap<String, (i64, String)>) -> Counts {
    let mut counts = Counts::default();
    for item in prepared {
        match existing.get(&item.legacy_id) {
            None => counts.new += 1,
            Some((_, fingerprint)) if *fingerprint == item.fingerprint => counts.unchanged += 1,
            Some(_) => counts.updated += 1,
        }
    }
    counts
}

/// The interrupted run of this file, if any: (run id, last file row it wrote).
pub async fn unfinished_run(db: &Db, kind: Kind, bytes: &[u8]) -> Result<Option<(i64, i64)>> {
    unfinished_run_of(db, kind, &sha256_hex(bytes)).await
}

async fn unfinished_run_of(db: &Db, kind: Kind, file_sha256: &str) -> Result<Option<(i64, i64)>> {
    let row = sqlx::query(
        "SELECT id, last_row FROM import_runs
         WHERE kind = $1 AND file_sha256 = $2 AND status = 'running' ORDER BY id DESC",
    )
    .bind(kind.as_str())
    .bind(file_sha256)
    .fetch_optional(&db.pool)
    .await?;
    Ok(row
        .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?)
}

struct Run {
    id: i64,
    kind: Kind,
    last_row: i64,
    resumed: bool,
}

/// What a run records of itself when it starts: the file, what the check found (the
/// report as the run keeps it, JSON), and how it was asked (`since`).
struct NewRun<'a> {
    kind: Kind,
    source: &'a str,
    file_sha256: String,
    total: usize,
    invalid: u64,
    skipped: u64,
    since: Option<&'a str>,
    newest_updated_at: Option<&'a str>,
    report: String,
}

/// The interrupted run of this file (same kind, same content) to go on with, or a new
/// one. Either way the run keeps this attempt's report and skip count (the file is the
/// same; `since` may not be).
async fn start_or_resume(ctx: &Context, new: &NewRun<'_>) -> Result<Run> {
    let kind = new.kind;
    if let Some((id, last_row)) = unfinished_run_of(&ctx.db, kind, &new.file_sha256).await? {
        sqlx::query(
            "UPDATE import_runs SET skipped_not_changed_since = $1, since = $2,
                newest_updated_at = $3, report = $4
             WHERE id = $5",
        )
        .bind(new.skipped as i64)
        .bind(new.since)
        .bind(new.newest_updated_at)
        .bind(&new.report)
        .bind(id)
        .execute(&ctx.db.pool)
        .await?;
        return Ok(Run {
            id,
            kind,
            last_row,
            resumed: true,
        });
    }
    let row = sqlx::query(
        "INSERT INTO import_runs (kind, source, file_sha256, status, rows_total, invalid,
            skipped_not_changed_since, since, newest_updated_at, report, actor, started_at)
         VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(kind.as_str())
    .bind(new.source)
    .bind(&new.file_sha256)
    .bind(new.total as i64)
    .bind(new.invalid as i64)
    .bind(new.skipped as i64)
    .bind(new.since)
    .bind(new.newest_updated_at)
    .bind(&new.report)
    .bind(&ctx.actor)
    .bind(crate::time::now())
    .fetch_one(&ctx.db.pool)
    .await?;
    Ok(Run {
        id: row.try_get(0)?,
        kind,
        last_row: 0,
        resumed: false,
    })
}

/// Writes the records in batches of `batch_size`, each batch one transaction with its
/// import records and the run's counters.
async fn write_batches(
    ctx: &Context,
    run: &Run,
    todo: &[&Prepared],
    existing: &HashMap<String, (i64, String)>,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<()> {
    progress.start(&format!("importing {}", run.kind.as_str()), todo.len());
    let mut done = 0;
    for batch in todo.chunks(batch_size) {
        let mut tx = ctx.db.begin().await?;
        let mut counts = Counts::default();
        for item in batch {
            write_one(
                ctx,
                &mut tx,
                run,
                item,
                existing.get(&item.legacy_id),
                &mut counts,
            )
            .await
            .map_err(|err| at_row(err, item))?;
        }
        let last_row = batch.last().map(|p| p.row as i64).unwrap_or(run.last_row);
        advance_run(&mut tx, run.id, last_row, &counts).await?;
        // One audit entry a batch that changed something, without identity: the audit
        // log is never erased.
        if counts.new + counts.updated > 0 {
            record_batch(&mut tx, ctx, run, last_row, &counts).await?;
        }
        tx.commit().await?;
        if let Some(bus) = &ctx.bus {
            bus.notify();
        }
        // A crash here leaves this batch written and the next one not: the resume test.
        crate::failpoint::hit("imports.after_batch");
        done += batch.len();
        progress.advance(done);
    }
    progress.finish();
    Ok(())
}

async fn record_batch(
    tx: &mut Tx,
    ctx: &Context,
    run: &Run,
    last_row: i64,
    counts: &Counts,
) -> Result<()> {
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor: &ctx.actor,
            action: "import.batch",
            target_type: "import_run",
            target_id: run.id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "kind": run.kind.as_str(),
                "last_row": last_row,
                "new": counts.new,
                "updated": counts.updated,
            })),
        },
    )
    .await?;
    Ok(())
}

async fn write_one(
    ctx: &Context,
    tx: &mut Tx,
    run: &Run,
    item: &Prepared,
    existing: Option<&(i64, String)>,
    counts: &mut Counts,
) -> Result<()> {
    let now = crate::time::now();
    match existing {
        Some((_, fingerprint)) if *fingerprint == item.fingerprint => {
            counts.unchanged += 1;
            return Ok(());
        }
        Some((local_id, _)) => {
            update(ctx, tx, &item.record, *local_id).await?;
            counts.updated += 1;
        }
        None => {
            let local_id = create(ctx, tx, &item.record).await?;
            sqlx::query(
                "INSERT INTO import_records (kind, legacy_id, local_id, fingerprint, run_id, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(run.kind.as_str())
            .bind(&item.legacy_id)
            .bind(local_id)
            .bind(&item.fingerprint)
            .bind(run.id)
            .bind(&now)
            .execute(&mut **tx)
            .await?;
            counts.new += 1;
            return Ok(());
        }
    }
    sqlx::query(
        "UPDATE import_records SET fingerprint = $1, run_id = $2, updated_at = $3
         WHERE kind = $4 AND legacy_id = $5",
    )
    .bind(&item.fingerprint)
    .bind(run.id)
    .bind(&now)
    .bind(run.kind.as_str())
    .bind(&item.legacy_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn create(ctx: &Context, tx: &mut Tx, record: &Record) -> Result<i64> {
    match record {
        Record::Product(item) => products::create(ctx, tx, item).await,
        Record::Lot(item) => lots::create(ctx, tx, item).await,
        Record::Customer(item) => customers::create(ctx, tx, item).await,
        Record::Order(item) => orders::create(ctx, tx, item).await,
        Record::Subscription(item) => subscriptions::create(ctx, tx, item).await,
    }
}

async fn update(ctx: &Context, tx: &mut Tx, record: &Record, local_id: i64) -> Result<()> {
    match record {
        Record::Product(item) => products::update(ctx, tx, item, local_id).await,
        Record::Lot(item) => lots::update(ctx, tx, item, local_id).await,
        Record::Customer(item) => customers::update(ctx, tx, item, local_id).await,
        Record::Order(item) => orders::update(ctx, tx, item, local_id).await,
        Record::Subscription(item) => subscriptions::update(ctx, tx, item, local_id).await,
    }
}

/// A write that failed names the row (the batch was rolled back; running the import
/// again resumes with it).
fn at_row(err: Error, item: &Prepared) -> Error {
    let mut report = Report::default();
    match report.problems_from(item.row, Some(&item.legacy_id), "", err) {
        Err(internal) => internal,
        Ok(()) => Error::Validation(
            report
                .problems
                .into_iter()
                .map(|p| {
                    FieldError::new(
                        format!("row {} ({}): {}", p.row, item.legacy_id, p.field),
                        p.message,
                    )
                })
                .collect(),
        ),
    }
}

async fn advance_run(tx: &mut Tx, run_id: i64, last_row: i64, counts: &Counts) -> Result<()> {
    sqlx::query(
        "UPDATE import_runs SET last_row = $1, created = created + $2, updated = updated + $3,
            unchanged = unchanged + $4
         WHERE id = $5",
    )
    .bind(last_row)
    .bind(counts.new as i64)
    .bind(counts.updated as i64)
    .bind(counts.unchanged as i64)
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the run finished; answers its counts over every batch (of every attempt), but
/// for the skipped ones.
async fn finish_run(db: &Db, run_id: i64) -> Result<Counts> {
    let row = sqlx::query(
        "UPDATE import_runs SET status = 'finished', finished_at = $1 WHERE id = $2
         RETURNING created, updated, unchanged, invalid",
    )
    .bind(crate::time::now())
    .bind(run_id)
    .fetch_one(&db.pool)
    .await?;
    let count = |i: usize| -> Result<u64> { Ok(row.try_get::<i64, _>(i)?.max(0) as u64) };
    Ok(Counts {
        new: count(0)?,
        updated: count(1)?,
        unchanged: count(2)?,
        invalid: count(3)?,
        // Not kept by the run: the caller knows it of this attempt.
        skipped_not_changed_since: 0,
    })
}

/// The legacy id of a row: its `legacy_id` when given (a string or a number), else the
/// fallback the kind names (a slug, an email).
pub fn legacy_id_of(value: &serde_json::Value, fallback: Option<&str>) -> Option<String> {
    match value.get("legacy_id") {
        Some(serde_json::Value::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => fallback.filter(|f| !f.is_empty()).map(str::to_owned),
    }
}

/// Parses a row (without its `legacy_id`) into the kind's input type, reporting where
/// it does not fit (`variants[0].price_minor: invalid type …`).
pub fn parse_row<T: serde::de::DeserializeOwned>(
    row: &Row,
    legacy_id: Option<&str>,
    report: &mut Report,
) -> Option<T> {
    let mut value = row.value.clone();
    if let serde_json::Value::Object(fields) = &mut value {
        fields.remove("legacy_id");
    }
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(parsed) => Some(parsed),
        Err(err) => {
            let path = err.path().to_string();
            let (field, message) =
                crate::http::extract::field_and_message(&path, &err.into_inner().to_string());
            let field = if field == "body" {
                "row".to_owned()
            } else {
                field
            };
            report.problem(row.row, legacy_id, field, message);
            None
        }
    }
}
