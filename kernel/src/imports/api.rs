//! The imports' admin API, for the admin UI: check a file and answer its report (a dry
//! run), run it, list the runs. The file travels in the JSON body, so it is bounded by the
//! request body limit (`OLIVINE_MAX_BODY_BYTES`); larger exports go through
//! `olivine import`, which runs the same code.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Format, Kind, Mode, Options, Summary};
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Result};
use crate::http::extract::{JsonBody, PathParam, StaffAuth};

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_runs))
        .routes(routes!(run_import))
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
    let ctx = super::Context::of(&state, &staff.actor);
    let source = input.source.unwrap_or_else(|| "admin API".to_owned());
    let summary = super::run(
        &ctx,
        kind,
        &source,
        input.content.as_bytes(),
        &options,
        &super::Silent,
    )
    .await?;
    Ok(Json(summary))
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
    pub actor: String,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// The latest 100 import runs, newest first.
#[utoipa::path(get, path = "/imports", tag = "admin-imports", security(("staff_token" = [])),
    responses((status = 200, body = Vec<ImportRun>), (status = 401, body = ErrorBody)))]
async fn list_runs(State(state): State<AppState>) -> Result<Json<Vec<ImportRun>>> {
    let rows = sqlx::query(
        "SELECT id, kind, source, status, rows_total, last_row, created, updated, unchanged,
            invalid, actor, started_at, finished_at
         FROM import_runs ORDER BY id DESC LIMIT 100",
    )
    .fetch_all(&state.db.pool)
    .await?;
    let runs = rows
        .iter()
        .map(|r| {
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
                actor: r.try_get(10)?,
                started_at: r.try_get(11)?,
                finished_at: r.try_get(12)?,
            })
        })
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(runs))
}
