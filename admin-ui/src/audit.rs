//! The audit log: every change by whom, newest first, filtered by actor, action, target
//! and time, paged with the API's cursor; and verifying the hash chain, which names the
//! first entry that was changed, removed or rewritten. Through `audit::api::list` and
//! `audit::verify`, as the admin API's routes are.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use maud::html;

use super::layout::{self, FormErrors, Kind, field, field_with_hint, form_alert};
use super::session::SignedIn;
use crate::app::AppState;
use crate::audit::api::{AuditFilter, AuditPage};

const SECTION: &str = "/admin/audit";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(log_page))
        .route("/admin/audit/verify", get(verify_page))
}

/// The filter fields of the page, as typed (kept in the pager's links).
const FILTERS: [(&str, &str); 4] = [
    ("actor", "Actor"),
    ("action", "Action"),
    ("target_type", "Target type"),
    ("target_id", "Target id"),
];

async fn log_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let value = |name| layout::query_value(query.as_deref(), name).unwrap_or_default();
    let typed: Vec<(&str, String)> = FILTERS
        .iter()
        .map(|(name, _)| (*name, value(name)))
        .chain([("since", value("since")), ("until", value("until"))])
        .collect();
    let given = |name: &str| {
        typed
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    // Dates as the merchant types them: a whole day, from its start in UTC.
    let day = |name: &str| given(name).map(|d| format!("{d}T00:00:00Z"));
    let filter = AuditFilter {
        actor: given("actor"),
        action: given("action"),
        target_type: given("target_type"),
        target_id: given("target_id"),
        since: day("since"),
        until: day("until"),
        after_seq: value("after_seq").parse().ok(),
        limit: Some(50),
    };
    let (page, errors) = match crate::audit::api::list(&state, &filter).await {
        Ok(page) => (page, FormErrors::default()),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => (
                AuditPage {
                    entries: Vec::new(),
                    next_after_seq: None,
                },
                errors,
            ),
            None => return layout::error_page(&err, "audit log"),
        },
    };
    let older = page.next_after_seq.map(|seq| {
        let mut link = form_urlencoded::Serializer::new(String::new());
        for (key, v) in typed.iter().filter(|(_, v)| !v.is_empty()) {
            link.append_pair(key, v);
        }
        link.append_pair("after_seq", &seq.to_string());
        format!("{SECTION}?{}", link.finish())
    });
    let body = html! {
        div.title-row {
            h1 { "Audit log" }
            a.button href="/admin/audit/verify" { "Verify the chain" }
        }
        (form_alert(&errors))
        form.filters method="get" action=(SECTION) role="search" {
            @for (name, label) in FILTERS {
                (field(label, name, Kind::Text, &value(name), &errors))
            }
            (field_with_hint("From", "since", Kind::Date, &value("since"), None, &errors))
            (field_with_hint("Before", "until", Kind::Date, &value("until"), None, &errors))
            button.button type="submit" { "Filter" }
        }
        @if page.entries.is_empty() { p.empty { "No entries match." } }
        @else {
            table {
                caption.visually-hidden { "Audit entries, newest first" }
                thead { tr { th scope="col" class="num" { "#" } th scope="col" { "When" } th scope="col" { "Actor" }
                    th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Change" } } }
                tbody {
                    @for e in &page.entries {
                        tr {
                            td.num { (e.seq) }
                            td { (e.at) }
                            td { code { (e.actor) } }
                            td { (e.action) }
                            td { (e.target_type) " " code { (e.target_id) } }
                            td { @if let Some(before) = &e.before { small { "before: " (before) } br; }
                                 @if let Some(after) = &e.after { small { "after: " (after) } } }
                        }
                    }
                }
            }
        }
        @if let Some(older) = older { nav.pager aria-label="Pages" { a rel="next" href=(older) { "Older entries →" } } }
    };
    layout::page_with_status(
        errors.status(),
        &staff,
        admin.csrf_input(),
        "Audit log",
        SECTION,
        body,
    )
}

async fn verify_page(State(state): State<AppState>, SignedIn(staff, admin): SignedIn) -> Response {
    let report = match crate::audit::verify(&state.db).await {
        Ok(report) => report,
        Err(err) => return layout::error_page(&err, "audit verification"),
    };
    let body = html! {
        p.crumbs { a href=(SECTION) { "Audit log" } }
        h1 { "The audit chain" }
        @if report.intact {
            p.form-notice role="status" #chain-intact { "Intact: every one of the " (report.entries)
                " entries hashes correctly and chains to the one before it." }
        } @else {
            div.form-alert role="alert" #chain-tampered {
                p { "The chain is broken." }
                @if let Some(t) = &report.tampered {
                    p { "The first entry tampered with is "
                        a href={ (SECTION) "?after_seq=" (t.seq + 1) } { "#" (t.seq) } ": " (t.problem) }
                }
            }
        }
        p { "The head's hash: " code { (report.head_hash) } }
        p.hint { "Keep this hash somewhere else (a ticket, an email to yourself): a log rewritten "
            "from its start would show another head." }
    };
    layout::page(
        &staff,
        admin.csrf_input(),
        "Verify the audit chain",
        SECTION,
        body,
    )
}
