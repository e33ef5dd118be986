//! Reviews moderation: the queue (pending reviews, oldest first) and the published and
//! rejected ones; publishing one, or rejecting it with a reason its author is told.
//! Through `reviews::list_for_staff` and `reviews::moderate`, as the admin API's routes
//! are (audited; publishing records `review.published`, which loyalty rules may reward).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::html;

use super::layout::{self, Form, FormErrors, Kind, PagePath, field, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::reviews::{self, Moderation, ReviewStatus, StaffFilter};
use crate::staff::Staff;

const SECTION: &str = "/admin/reviews";
const PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(queue_page))
        .route("/admin/reviews/{id}/moderation", post(moderate))
}

const STATUSES: &[(&str, &str)] = &[
    ("pending", "Waiting for moderation"),
    ("published", "Published"),
    ("rejected", "Rejected"),
];

fn status_of(text: &str) -> ReviewStatus {
    match text {
        "published" => ReviewStatus::Published,
        "rejected" => ReviewStatus::Rejected,
        _ => ReviewStatus::Pending,
    }
}

/// What the page says after each decision.
const DONE: &[(&str, &str)] = &[
    ("publish", "Published: it shows on the product page."),
    ("reject", "Rejected: its author is told why."),
];

async fn queue_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let status = layout::query_value(query.as_deref(), "status").unwrap_or_default();
    let notice = layout::notice(query.as_deref(), DONE);
    let page = layout::page_number(query.as_deref());
    queue(
        &state,
        &staff,
        &admin,
        (&status, page),
        notice,
        None,
        &FormErrors::default(),
    )
    .await
}

/// A page of the list of reviews in `status`; `failed` is the review whose form came
/// back with `errors`.
async fn queue(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    (status, page): (&str, i64),
    notice: Option<&str>,
    failed: Option<(i64, &Form)>,
    errors: &FormErrors,
) -> Response {
    let status = status_of(status);
    let filter = StaffFilter {
        status: Some(status),
    };
    let offset = (page - 1) * PER_PAGE;
    let (list, total) = match reviews::page_for_staff(state, &filter, offset, PER_PAGE).await {
        Ok(found) => found,
        Err(err) => return layout::error_page(&err, "reviews"),
    };
    let may_moderate = super::may(staff.role, &Method::POST, "/admin/reviews/{id}/moderation");
    let pending = status == ReviewStatus::Pending;
    let body = html! {
        h1 { "Reviews" }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        (form_alert(errors))
        nav.tabs aria-label="Review states" {
            @for (value, label) in STATUSES {
                a href={ (SECTION) "?status=" (value) } aria-current=[(*value == status.as_str()).then_some("page")] { (label) }
            }
        }
        @if list.is_empty() { p.empty { "No review here." } }
        @for r in &list {
            article.variant id={ "review-" (r.id) } {
                h2 { (r.title) " " small { "★ " (r.rating) "/5" } }
                p.meta { a href={ "/p/" (r.product_slug) } { (r.product_slug) } " · "
                    (r.author_name.as_deref().unwrap_or("(anonymous)")) " · " (r.created_at) }
                p { (r.body) }
                @if let Some(reason) = &r.reject_reason { p.hint { "Rejected: " (reason) } }
                @if pending && may_moderate {
                    @let this_failed = failed.filter(|(id, _)| *id == r.id);
                    @let no_errors = FormErrors::default();
                    @let (typed, shown) = match this_failed {
                        Some((_, form)) => (form.get("reason"), errors),
                        None => ("", &no_errors),
                    };
                    div.actions {
                        form.inline method="post" action={ (SECTION) "/" (r.id) "/moderation" } {
                            (admin.csrf_input())
                            input type="hidden" name="decision" value="publish";
                            button.button.primary type="submit" { "Publish" }
                        }
                    }
                    form method="post" action={ (SECTION) "/" (r.id) "/moderation" } novalidate {
                        (admin.csrf_input())
                        input type="hidden" name="decision" value="reject";
                        (field("Reason for rejecting (its author reads it)", "reason", Kind::Text, typed, shown))
                        button.button.danger type="submit" { "Reject" }
                    }
                }
            }
        }
        (layout::pager(SECTION, &[("status", status.as_str().to_owned())], page, PER_PAGE, total))
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Reviews",
        SECTION,
        body,
    )
}

async fn moderate(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let decision = match form.get("decision") {
        "publish" => Moderation::Publish,
        _ => Moderation::Reject {
            reason: form.get("reason").to_owned(),
        },
    };
    let done = if matches!(decision, Moderation::Publish) {
        "publish"
    } else {
        "reject"
    };
    match reviews::moderate(&state, &staff.actor, id, decision).await {
        Ok(_) => layout::see_other(&format!("{SECTION}?done={done}")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                queue(
                    &state,
                    &staff,
                    &admin,
                    ("pending", 1),
                    None,
                    Some((id, &form)),
                    &errors,
                )
                .await
            }
            None => layout::error_page(&err, "moderation"),
        },
    }
}
