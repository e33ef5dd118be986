//! Imports: moving a legacy shop's export in from the browser (docs/IMPORTS.md). Staff
//! pick what the file holds, upload it or paste it, choose its format and the mode
//! (all or nothing, or the valid rows), then "Check" (a dry run: the problems by row
//! and field, the repairs, what would be new, updated or unchanged; nothing is written)
//! and "Import". The past runs are listed with their counts; a run's page shows the
//! report it kept. Through `imports::api::{import, runs, run_report}`, as the admin API's
//! `POST /imports/{kind}`, `GET /imports` and `GET /imports/runs/{id}` are.
//!
//! The file travels in the form's body, so it is bounded by `OLIVINE_MAX_BODY_BYTES`
//! like the API's; larger exports go through `olivine import`, which runs the same code.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use maud::{Markup, html};

use super::layout::{self, Form, FormErrors, Kind, PagePath, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::imports::api::{ImportRequest, ImportRun};
use crate::imports::{Counts, Problem, Repair, Summary};
use crate::staff::Staff;

const SECTION: &str = "/admin/imports";
/// How many past runs the page lists.
const RUNS_LISTED: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(imports_page).post(submit))
        .route("/admin/imports/{id}", get(run_page))
}

const KINDS: &[(&str, &str)] = &[
    ("", "Choose…"),
    ("products", "Products (with variants and categories)"),
    ("lots", "Stock lots"),
    ("customers", "Customers"),
    ("orders", "Historical orders"),
    ("subscriptions", "Subscriptions"),
];

const FORMATS: &[(&str, &str)] = &[
    ("", "Told by the content"),
    ("json", "JSON (as the API takes it)"),
    ("csv", "CSV (the documented columns)"),
    ("shopify", "Shopify's products export (CSV)"),
];

const MODES: &[(&str, &str)] = &[
    (
        "all_or_nothing",
        "All or nothing: any invalid row and nothing is imported",
    ),
    (
        "valid_rows",
        "The valid rows: import them, report the others",
    ),
];

const NOTICES: &[(&str, &str)] = &[(
    "imported",
    "Imported. The counts and the report the run kept are below.",
)];

/// What a staff member posted: the form's text fields and the uploaded file, if any.
#[derive(Default)]
struct Posted {
    form: Form,
    /// The file's name and content.
    file: Option<(String, Bytes)>,
}

/// A multipart body (the form with a file) or a plain one (no file chosen by a browser
/// that sends it so, or a test).
async fn posted(headers: &HeaderMap, body: Bytes) -> Result<Posted, FormErrors> {
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok());
    let Some(boundary) = boundary else {
        return Ok(Posted {
            form: Form::parse(&body),
            file: None,
        });
    };
    let cut_off = || {
        let mut errors = FormErrors::default();
        errors.add("file", "the upload was cut off or malformed: try again");
        errors
    };
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut posted = Posted::default();
    let mut fields = Vec::new();
    while let Some(part) = multipart.next_field().await.map_err(|_| cut_off())? {
        let name = part.name().unwrap_or("").to_owned();
        let file_name = part.file_name().map(str::to_owned);
        if name == "file" {
            let bytes = part.bytes().await.map_err(|_| cut_off())?;
            // A file input left empty posts a part with no name and no bytes.
            if !bytes.is_empty() {
                posted.file = Some((file_name.unwrap_or_else(|| "upload".to_owned()), bytes));
            }
        } else {
            fields.push((name, part.text().await.map_err(|_| cut_off())?));
        }
    }
    posted.form = Form::from_pairs(fields);
    Ok(posted)
}

/// The import the form asks for: its kind, and the request the admin API takes.
fn request_of(posted: &Posted) -> Result<(crate::imports::Kind, ImportRequest), FormErrors> {
    let form = &posted.form;
    let mut errors = FormErrors::default();
    let kind = crate::imports::Kind::parse(form.get("kind"));
    if kind.is_none() {
        errors.add("kind", "choose what the file holds");
    }
    let (content, source) = match &posted.file {
        Some((name, bytes)) => match std::str::from_utf8(bytes) {
            Ok(text) => (text.to_owned(), name.clone()),
            Err(_) => {
                errors.add(
                    "file",
                    "is not text: export the file as CSV or JSON (UTF-8)",
                );
                (String::new(), name.clone())
            }
        },
        None => {
            let source = match form.get("source").trim() {
                "" => "pasted in the admin".to_owned(),
                source => source.to_owned(),
            };
            (form.get("content").to_owned(), source)
        }
    };
    if content.trim().is_empty() && errors.field("file").is_none() {
        errors.add("file", "choose a file, or paste its content");
    }
    let optional = |name: &str| {
        let value = form.get(name).trim();
        (!value.is_empty()).then(|| value.to_owned())
    };
    let request = ImportRequest {
        content,
        format: optional("format"),
        dry_run: form.get("action") != "import",
        valid_rows: form.get("mode") == "valid_rows",
        currency: optional("currency"),
        source: Some(source),
        since: optional("since"),
    };
    match kind {
        Some(kind) if errors.is_empty() => Ok((kind, request)),
        _ => Err(errors),
    }
}

async fn imports_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let form = Form::from_pairs(vec![
        ("mode".to_owned(), "all_or_nothing".to_owned()),
        ("currency".to_owned(), "EUR".to_owned()),
    ]);
    let shown = Shown {
        form: &form,
        errors: &FormErrors::default(),
        summary: None,
        notice: layout::notice(query.as_deref(), NOTICES),
    };
    imports(&state, &staff, &admin, StatusCode::OK, shown).await
}

/// Checks the file (a dry run) or imports it; an import that wrote goes to its run's
/// page, anything else comes back here with the report.
async fn submit(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let posted = match posted(&headers, body).await {
        Ok(posted) => posted,
        Err(errors) => {
            return with_errors(&state, &staff, &admin, &Posted::default(), &errors).await;
        }
    };
    let (kind, request) = match request_of(&posted) {
        Ok(asked) => asked,
        Err(errors) => return with_errors(&state, &staff, &admin, &posted, &errors).await,
    };
    // What the form shows again: the content in the paste box (a file is not kept),
    // under the file's name.
    let mut shown_form = posted.form.pairs();
    shown_form.retain(|(name, _)| name != "content" && name != "source");
    shown_form.push(("content".to_owned(), request.content.clone()));
    shown_form.push((
        "source".to_owned(),
        request.source.clone().unwrap_or_default(),
    ));
    let shown_form = Form::from_pairs(shown_form);
    let summary = match crate::imports::api::import(&state, &staff.actor, kind, request).await {
        Ok(summary) => summary,
        Err(err) => {
            return match FormErrors::from_error(&err) {
                Some(errors) => with_errors(&state, &staff, &admin, &posted, &errors).await,
                None => layout::error_page(&err, "import"),
            };
        }
    };
    if let (true, Some(run)) = (summary.written, summary.run_id) {
        return layout::see_other(&format!("{SECTION}/{run}?done=imported"));
    }
    // A check answers what it found; an import refused (all or nothing) says so.
    let status = if summary.dry_run {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let shown = Shown {
        form: &shown_form,
        errors: &FormErrors::default(),
        summary: Some(&summary),
        notice: None,
    };
    imports(&state, &staff, &admin, status, shown).await
}

async fn with_errors(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    posted: &Posted,
    errors: &FormErrors,
) -> Response {
    let shown = Shown {
        form: &posted.form,
        errors,
        summary: None,
        notice: None,
    };
    imports(state, staff, admin, errors.status(), shown).await
}

/// What the Imports page shows besides the runs: the form as posted, its errors, and
/// the answer to a check or a refused import.
struct Shown<'a> {
    form: &'a Form,
    errors: &'a FormErrors,
    summary: Option<&'a Summary>,
    notice: Option<&'static str>,
}

async fn imports(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    status: StatusCode,
    shown: Shown<'_>,
) -> Response {
    let runs = match crate::imports::api::runs(&state.db, RUNS_LISTED).await {
        Ok(runs) => runs,
        Err(err) => return layout::error_page(&err, "imports"),
    };
    let may_import = super::may(staff.role, &Method::POST, SECTION);
    let body = html! {
        h1 { "Imports" }
        @if let Some(notice) = shown.notice { p.form-notice role="status" { (notice) } }
        p { "Move a legacy shop's export in: products, stock lots, customers, historical orders and subscriptions, "
            "in that order (lots and orders name SKUs, orders name customers). Every record keeps its legacy id, "
            "so the same file again changes nothing. Files larger than a form takes go through "
            code { "olivine import" } " (docs/IMPORTS.md)." }
        @if let Some(summary) = shown.summary { (found(summary)) }
        @if may_import { (import_form(admin, shown.form, shown.errors)) }
        section #runs {
            h2 { "Runs" }
            (runs_table(&runs))
        }
    };
    layout::page_with_status(status, staff, admin.csrf_input(), "Imports", SECTION, body)
}

fn import_form(admin: &AdminSession, form: &Form, errors: &FormErrors) -> Markup {
    let file_error = errors.field("file");
    html! {
        section #import {
            h2 { "Check or import a file" }
            (form_alert(errors))
            form method="post" action=(SECTION) enctype="multipart/form-data" novalidate {
                (admin.csrf_input())
                (field("What the file holds", "kind", Kind::Select(KINDS), form.get("kind"), errors))
                fieldset.field #file-group aria-invalid=[file_error.map(|_| "true")] {
                    legend { "The file" }
                    div.field {
                        label for="f-file" { "Upload it" }
                        input #f-file type="file" name="file" accept=".csv,.json,text/csv,application/json"
                            aria-describedby=[file_error.map(|_| "f-file-error")];
                    }
                    (field_with_hint("…or paste it", "content", Kind::Area(10), form.get("content"),
                        Some("CSV with a header line, or JSON. After a check the file is here, to import as it is or to correct first."),
                        &FormErrors::default()))
                    @if let Some(message) = file_error {
                        p.field-error #f-file-error { (layout::sentence(message)) }
                    }
                    input type="hidden" name="source" value=(form.get("source"));
                }
                (field("Format", "format", Kind::Select(FORMATS), form.get("format"), errors))
                (field("Mode", "mode", Kind::Select(MODES), form.get("mode"), errors))
                (field_with_hint("Currency", "currency", Kind::Text, form.get("currency"),
                    Some("Of the amounts of a file that names none (Shopify's export)."), errors))
                (field_with_hint("Only records changed since (optional)", "since", Kind::Text, form.get("since"),
                    Some("An incremental sync: 2024-03-01 or 2024-03-01T10:00:00Z. Records updated before it are skipped."), errors))
                div.actions {
                    // The first button is what Enter does: a check, which writes nothing.
                    button.button type="submit" name="action" value="check" { "Check" }
                    button.button.primary type="submit" name="action" value="import" { "Import" }
                }
            }
        }
    }
}

/// The answer to a check, or to an import refused because of invalid rows.
fn found(summary: &Summary) -> Markup {
    let would = if summary.dry_run { "would be " } else { "" };
    html! {
        section #check-result {
            @if summary.dry_run {
                h2 { "What the check found" }
                p.form-notice role="status" { "A check: nothing was written." }
            } @else {
                h2 { "Nothing was imported" }
                p.form-alert role="alert" { "Some rows are invalid, so nothing was written (all or nothing). "
                    "Correct them below and import again, or import the valid rows." }
            }
            p #counts { (summary.rows) " record(s) in the file." }
            (counts_list(&summary.counts, would))
            @if let Some(newest) = &summary.newest_updated_at {
                p { "Newest updated time in the file: " code { (newest) } }
            }
            (problems_table(&summary.report.problems, 0))
            (repairs_table(&summary.report.repairs, 0))
        }
    }
}

fn counts_list(counts: &Counts, would: &str) -> Markup {
    html! {
        ul.counts {
            li #count-new { strong { (counts.new) } " " (would) "new" }
            li #count-updated { strong { (counts.updated) } " " (would) "updated" }
            li #count-unchanged { strong { (counts.unchanged) } " unchanged" }
            li #count-invalid { strong { (counts.invalid) } " invalid" }
            @if counts.skipped_not_changed_since > 0 {
                li #count-skipped { strong { (counts.skipped_not_changed_since) } " skipped (not changed since)" }
            }
        }
    }
}

fn problems_table(problems: &[Problem], left_off: usize) -> Markup {
    html! {
        section #problems {
            h3 { "Problems" }
            @if problems.is_empty() {
                p.empty { "No problem: every row can be imported." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Row" } th scope="col" { "Field" } th scope="col" { "Legacy id" } th scope="col" { "Problem" } } }
                    tbody {
                        @for p in problems {
                            tr.problem data-row=(p.row) data-field=(p.field) {
                                td { (p.row) }
                                td { code { (p.field) } }
                                td { (p.legacy_id.as_deref().unwrap_or("")) }
                                td { (layout::sentence(&p.message)) }
                            }
                        }
                    }
                }
                @if left_off > 0 { p.hint { "And " (left_off) " more problem(s), not kept with the run." } }
            }
        }
    }
}

fn repairs_table(repairs: &[Repair], left_off: usize) -> Markup {
    html! {
        section #repairs {
            h3 { "Repairs" }
            @if repairs.is_empty() {
                p.empty { "Nothing needed repairing." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Row" } th scope="col" { "Field" } th scope="col" { "Repair" } th scope="col" { "From" } th scope="col" { "To" } } }
                    tbody {
                        @for r in repairs {
                            tr.repair data-row=(r.row) data-field=(r.field) {
                                td { (r.row) }
                                td { code { (r.field) } }
                                td { (r.repair) }
                                td { code { (r.from) } }
                                td { code { (r.to) } }
                            }
                        }
                    }
                }
                @if left_off > 0 { p.hint { "And " (left_off) " more repair(s), not kept with the run." } }
            }
        }
    }
}

fn runs_table(runs: &[ImportRun]) -> Markup {
    html! {
        @if runs.is_empty() {
            p.empty { "Nothing was imported yet." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Run" } th scope="col" { "What" } th scope="col" { "File" } th scope="col" { "State" }
                    th scope="col" { "Rows" } th scope="col" { "New" } th scope="col" { "Updated" } th scope="col" { "Unchanged" }
                    th scope="col" { "Invalid" } th scope="col" { "Skipped" } th scope="col" { "By" } th scope="col" { "Started" }
                } }
                tbody {
                    @for run in runs {
                        tr id={ "run-" (run.id) } {
                            td { a href={ (SECTION) "/" (run.id) } { "#" (run.id) } }
                            td { (run.kind) }
                            td { (run.source) }
                            td { (state_badge(run)) }
                            td { (run.rows_total) }
                            td { (run.created) }
                            td { (run.updated) }
                            td { (run.unchanged) }
                            td { (run.invalid) }
                            td { (run.skipped_not_changed_since) }
                            td { (run.actor) }
                            td { (run.started_at) }
                        }
                    }
                }
            }
        }
    }
}

fn state_badge(run: &ImportRun) -> Markup {
    html! {
        @if run.status == "finished" {
            span.badge.active { "finished" }
        } @else {
            // Under way, or interrupted: the same file again resumes it.
            span.badge.pending title="Under way, or interrupted: the same file again resumes it" { (run.status) }
        }
    }
}

async fn run_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
    RawQuery(query): RawQuery,
) -> Response {
    let found = match crate::imports::api::run_report(&state.db, id).await {
        Ok(found) => found,
        Err(err) => return layout::error_page(&err, "import run"),
    };
    let run = &found.summary;
    let notice = layout::notice(query.as_deref(), NOTICES);
    let counts = Counts {
        new: run.created.max(0) as u64,
        updated: run.updated.max(0) as u64,
        unchanged: run.unchanged.max(0) as u64,
        invalid: run.invalid.max(0) as u64,
        skipped_not_changed_since: run.skipped_not_changed_since.max(0) as u64,
    };
    let body = html! {
        p.crumbs { a href=(SECTION) { "Imports" } }
        h1 { "Import run #" (run.id) ": " (run.kind) }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        dl.facts #summary {
            dt { "File" } dd { (run.source) }
            dt { "State" } dd { (state_badge(run)) }
            dt { "By" } dd { (run.actor) }
            dt { "Started" } dd { (run.started_at) }
            dt { "Finished" } dd { (run.finished_at.as_deref().unwrap_or("not yet")) }
            dt { "Rows" } dd { (run.rows_total) " (written up to row " (run.last_row) ")" }
            @if let Some(since) = &run.since { dt { "Since" } dd { code { (since) } } }
            @if let Some(newest) = &run.newest_updated_at { dt { "Newest updated time" } dd { code { (newest) } } }
        }
        (counts_list(&counts, ""))
        @match &found.report {
            Some(report) => {
                p.hint { "The report as the run kept it: values of personal or secret fields are left out." }
                (problems_table(&report.problems, report.problems_left_off))
                (repairs_table(&report.repairs, report.repairs_left_off))
            }
            None => p.empty { "This run is older than the reports runs keep." },
        }
    };
    let title = format!("Import run #{}", run.id);
    layout::page(&staff, admin.csrf_input(), &title, SECTION, body)
}
