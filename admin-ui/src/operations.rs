//! Operations: events a consumer gave up on (dead letters), replayed one by one once the
//! cause is fixed, and jobs that used up their attempts (dead jobs), given new ones.
//! Through `bus::api::dead_letters`, `bus::replay_dead_letter`, `jobs::api::jobs` and
//! `jobs::api::retry`, as the admin API's routes are; each replay and retry is audited.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use maud::html;

use super::layout::{self, PagePath};
use super::session::SignedIn;
use crate::app::AppState;
use crate::bus::api::DeadLetterFilter;
use crate::jobs::api::{JobFilter, JobState};

const SECTION: &str = "/admin/operations";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(operations_page))
        .route("/admin/operations/dead-letters/{id}/replay", post(replay))
        .route("/admin/operations/jobs/{id}/retry", post(retry))
}

/// What the page says after each action.
const DONE: &[(&str, &str)] = &[
    ("replayed", "Replayed: the consumer took the event."),
    (
        "replay_failed",
        "The consumer failed again: its error is in the list.",
    ),
    ("retried", "The job is queued again, due now."),
];

async fn operations_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let loaded = async {
        let letters = crate::bus::api::dead_letters(
            &state,
            &DeadLetterFilter {
                limit: Some(100),
                ..DeadLetterFilter::default()
            },
        )
        .await?;
        let jobs = crate::jobs::api::jobs(
            &state,
            &JobFilter {
                state: Some(JobState::Dead),
                limit: Some(100),
                ..JobFilter::default()
            },
        )
        .await?;
        Ok::<_, crate::error::Error>((letters, jobs))
    };
    let (letters, jobs) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "operations"),
    };
    let notice = layout::notice(query.as_deref(), DONE);
    let may_manage = super::may(
        staff.role,
        &Method::POST,
        "/admin/operations/jobs/{id}/retry",
    );
    let body = html! {
        h1 { "Operations" }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        h2 #dead-letters { "Dead-lettered events (" (letters.dead_letters.len()) ")" }
        p.hint { "An event a consumer failed on after every retry. Fix the cause (a plugin's settings, a "
            "mail server), then replay it." }
        @if letters.dead_letters.is_empty() { p.empty { "None: every consumer is keeping up." } }
        @else {
            table {
                caption.visually-hidden { "Dead letters, oldest first" }
                thead { tr { th scope="col" { "Since" } th scope="col" { "Consumer" } th scope="col" { "Event" }
                    th scope="col" { "Error" } @if may_manage { th scope="col" { "" } } } }
                tbody {
                    @for d in &letters.dead_letters {
                        tr {
                            td { (d.created_at) }
                            td { code { (d.consumer) } }
                            td { (d.event_type) " " small { (d.aggregate_type) " " (d.aggregate_id) } }
                            td { (d.error) @if let Some(e) = &d.replay_error { br; small { "replay: " (e) } } }
                            @if may_manage { td {
                                form.inline method="post" action={ (SECTION) "/dead-letters/" (d.id) "/replay" } {
                                    (admin.csrf_input())
                                    button.button type="submit" { "Replay" }
                                }
                            } }
                        }
                    }
                }
            }
        }
        h2 #dead-jobs { "Dead jobs (" (jobs.jobs.len()) ")" }
        p.hint { "Background work that failed every attempt (renewals, notifications, image variants, backups)." }
        @if jobs.jobs.is_empty() { p.empty { "None." } }
        @else {
            table {
                caption.visually-hidden { "Dead jobs, oldest first" }
                thead { tr { th scope="col" { "Last run" } th scope="col" { "Kind" } th scope="col" class="num" { "Attempts" }
                    th scope="col" { "Error" } @if may_manage { th scope="col" { "" } } } }
                tbody {
                    @for j in &jobs.jobs {
                        tr {
                            td { (j.run_at) }
                            td { code { (j.kind) } }
                            td.num { (j.attempts) }
                            td { (j.last_error.as_deref().unwrap_or("")) }
                            @if may_manage { td {
                                form.inline method="post" action={ (SECTION) "/jobs/" (j.id) "/retry" } {
                                    (admin.csrf_input())
                                    button.button type="submit" { "Retry" }
                                }
                            } }
                        }
                    }
                }
            }
        }
    };
    layout::page(&staff, admin.csrf_input(), "Operations", SECTION, body)
}

async fn replay(
    State(state): State<AppState>,
    SignedIn(staff, _): SignedIn,
    PagePath(id): PagePath<i64>,
) -> Response {
    let replayed =
        crate::bus::replay_dead_letter(&state.work_db, &state.bus, id, &state.clock, &staff.actor)
            .await;
    match replayed {
        Ok(letter) if letter.replayed_at.is_some() => {
            layout::see_other(&format!("{SECTION}?done=replayed"))
        }
        Ok(_) => layout::see_other(&format!("{SECTION}?done=replay_failed#dead-letters")),
        Err(err) => layout::error_page(&err, "replay"),
    }
}

async fn retry(
    State(state): State<AppState>,
    SignedIn(staff, _): SignedIn,
    PagePath(id): PagePath<i64>,
) -> Response {
    match crate::jobs::api::retry(&state, &staff.actor, id).await {
        Ok(_) => layout::see_other(&format!("{SECTION}?done=retried")),
        Err(err) => layout::error_page(&err, "job retry"),
    }
}
