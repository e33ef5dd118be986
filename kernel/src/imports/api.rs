//! The imports' admin API, for the admin UI: check a file and answer its report (a dry
//! run), run it, list the runs, answer a past run's summary and kept report. The file
//! travels in the JSON body, so it is bounded by the request body limit
//! (`OLIVINE_MAX_BODY_BYTES`); larger exports go through `olivine import`, which runs the
//! same code. The admin's Imports page (`admin-ui/src/imports.rs`) calls [`import`],
//! [`runs`] and [`run_report`], as these routes do.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Format, Kept, Kind, Mode, Options, Summary};
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Result};
use crate::http::extract::{JsonBody, PathParam, StaffAuth};

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_runs))
        .routes(routes!(run_import))
        .routes(routes!(get_run))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The file's content (JSON or CSV text).
    pub content: String,
    /// `json`, `csv` or `shopify`; unset: told by the content.
    #[serde(default)]
    pub format: Option<String>,
    /// Check only: answer what would happen and the report; write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Import the valid rows and report the others (the default: nothing is imported
    /// while any row is invalid).
    #[serde(default)]
    pub valid_rows: bool,
    /// The currency of amounts in a file that names none (Shopify's export); unset: EUR.
    #[serde(default)]
    pub currency: Option<String>,
    /// The file's name, for the run's record.
    #[serde(default)]
    pub source: Option<String>,
    /// An incremental sync by time: records whose `updated_at` is older than this are
    /// skipped (counted as `skipped_not_changed_since`); records without one are
    /// processed. RFC 3339 (`2024-03-01T10:00:00Z`) or a date (`2024-03-01`, its
    /// midnight UTC). The answer's `newest_updated_at` is the next run's `since`.
    #[serde(default)]
    pub since: Option<String>,
}

/// Checks a file of `kind` (`products`, `lots`, `customers`, `orders`,
/// `subscriptions`) and, unless `dry_run`, imports it. The answer counts what was (or
/// would be) new, updated, unchanged and invalid, with every problem (row, field) and
/// every repair. The same file again changes nothing; an interrupted run of it resumes.
/// With `since`, records updated before it are skipped (`skipped_not_changed_since`)
/// and `newest_updated_at` answers the next run's `since`.
#[utoipa::path(post, path = "/imports/{kind}", tag = "admin-imports", request_body = ImportRequest,
    params(("kind" = Kind, Path, description = "What the file holds")),
    security(("staff_token" = [])),
    responses((status = 200, body = Summary), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn run_import(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(kind): PathParam<String>,
    JsonBody(input): JsonBody<ImportRequest>,
) -> Result<Json<Summary>> {
    let kind =
        Kind::parse(&kind).ok_or_else(|| Error::not_found(format!("import kind `{kind}`")))?;
    Ok(Json(import(&state, &staff.actor, kind, input).await?))
}

/// Checks (`dry_run`) or imports a file of `kind` for staff member `actor`: the admin
/// API's import and the admin page's. A `format`, `currency` or `since` that does not
/// read is refused naming its field; a file that does not read, naming `file`.
pub async fn import(
    state: &AppState,
    actor: &str,
    kind: Kind,
    input: ImportRequest,
) -> Result<Summary> {
    let format = match input.format.as_deref() {
        None => None,
        Some(text) => Some(
            Format::parse(text)
                .ok_or_else(|| Error::invalid("format", "one of json, csv, shopify"))?,
        ),
    };
    let since = input.since.as_deref().map(super::parse_since).transpose()?;
    let currency = input.currency.unwrap_or_else(|| "EUR".to_owned());
    let mut problems = crate::error::Problems::new();
    crate::catalog::model::check_currency(&mut problems, "currency", &currency);
    problems.into_result()?;
    let options = Options {
        mode: if input.valid_rows {
            Mode::ValidRows
        } else {
            Mode::AllOrNothing
        },
        dry_run: input.dry_run,
        format,
        currency,
        since,
        ..Options::default()
    };
    let ctx = super::Context::of(state, actor);
    let source = input.source.unwrap_or_else(|| "admin API".to_owned());
    super::run(
        &ctx,
        kind,
        &source,
        input.content.as_bytes(),
        &options,
        &super::Silent,
    )
    .await
}

/// One run of an import file.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRun {
    pub id: i64,
    pub kind: String,
    pub source: String,
    /// `running` (interrupted, or under way) or `finished`.
    pub status: String,
    pub rows_total: i64,
    /// The file row of the last record written.
    pub last_row: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub invalid: i64,
    /// Records older than the run's `since`, not read further.
    pub skipped_not_changed_since: i64,
    /// The run's `since` (RFC 3339, UTC), when given.
    pub since: Option<String>,
    /// The newest updated time in the file: the next incremental run's `since`.
    pub newest_updated_at: Option<String>,
    pub actor: String,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// A past run: its summary (the counts over every batch of every attempt) and the
/// report it kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRunReport {
    pub summary: ImportRun,
    /// The problems (row, field) and repairs the check found, without personal or secret
    /// values, the first 1,000 of each with how many were left off. Null for a run made
    /// before reports were kept.
    pub report: Option<Kept>,
}

/// The columns [`run_of`] reads, in its order (a macro: the queries stay literals).
macro_rules! run_columns {
    () => {
        "id, kind, source, status, rows_total, last_row, created, updated, unchanged, invalid,
            skipped_not_changed_since, since, newest_updated_at, actor, started_at, finished_at"
    };
}

fn run_of(r: &sqlx::any::AnyRow) -> std::result::Result<ImportRun, sqlx::Error> {
    Ok(ImportRun {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        source: r.try_get(2)?,
        status: r.try_get(3)?,
        rows_total: r.try_get(4)?,
        last_row: r.try_get(5)?,
        created: r.try_get(6)?,
        updated: r.try_get(7)?,
        unchanged: r.try_get(8)?,
        invalid: r.try_get(9)?,
        skipped_not_changed_since: r.try_get(10)?,
        since: r.try_get(11)?,
        newest_updated_at: r.try_get(12)?,
        actor: r.try_get(13)?,
        started_at: r.try_get(14)?,
        finished_at: r.try_get(15)?,
    })
}

/// The latest `limit` import runs, newest first.
pub async fn runs(db: &crate::store::Db, limit: i64) -> Result<Vec<ImportRun>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM import_runs ORDER BY id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(run_of)
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?)
}

/// Run `id`'s summary and kept report; not found when there is no such run.
pub async fn run_report(db: &crate::store::Db, id: i64) -> Result<ImportRunReport> {
    let row = sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        ", report FROM import_runs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or_else(|| Error::not_found(format!("import run {id}")))?;
    let report: Option<String> = row.try_get(16)?;
    let report = report
        .map(|json| serde_json::from_str::<Kept>(&json))
        .transpose()
        .map_err(anyhow::Error::from)?;
    Ok(ImportRunReport {
        summary: run_of(&row)?,
        report,
    })
}

/// The latest 100 import runs, newest first.
#[utoipa::path(get, path = "/imports", tag = "admin-imports", security(("staff_token" = [])),
    responses((status = 200, body = Vec<ImportRun>), (status = 401, body = ErrorBody)))]
async fn list_runs(State(state): State<AppState>) -> Result<Json<Vec<ImportRun>>> {
    Ok(Json(runs(&state.db, 100).await?))
}

/// A past import run: its summary (counts, skipped, `since`, newest updated time, who
/// and when) and the report it kept (problems by row and field, repairs). Dry runs and
/// refused all-or-nothing runs write nothing, so they are no runs: their report is the
/// answer to their `POST`.
#[utoipa::path(get, path = "/imports/runs/{id}", tag = "admin-imports",
    params(("id" = i64, Path, description = "The run's id (`run_id` of an import's answer)")),
    security(("staff_token" = [])),
    responses((status = 200, body = ImportRunReport), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_run(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<ImportRunReport>> {
    Ok(Json(run_report(&state.db, id).await?))
}
