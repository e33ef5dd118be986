//! Subscriptions: the list by next renewal (filtered by state, failing renewals and due
//! date), a subscription's page with what the next renewal costs and every renewal
//! attempt, and acting for the customer (pause, resume, skip, renew now, change the date
//! or interval, cancel with a reason), through `subscriptions::act` as the admin API's
//! route does, audited under the staff member.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use maud::{Markup, html};

use super::layout::{self, Form, FormErrors, Kind, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::staff::Staff;
use crate::subscriptions::{self, Action, StaffFilter, Status, Subscription};

const SECTION: &str = "/admin/subscriptions";
const PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(list_page))
        .route("/admin/subscriptions/{number}", get(subscription_page))
        .route(
            "/admin/subscriptions/{number}/actions",
            axum::routing::post(act),
        )
}

const STATUSES: &[(&str, &str)] = &[
    ("", "Any state"),
    ("active", "Active"),
    ("paused", "Paused"),
    ("cancelled", "Cancelled"),
];

async fn list_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let value = |name| layout::query_value(query.as_deref(), name).unwrap_or_default();
    let (status, failing, due_by) = (value("status"), value("failing"), value("due_by"));
    let mut errors = FormErrors::default();
    let filter = StaffFilter {
        status: Status::parse(&status),
        failing: Some(failing == "yes"),
        due_by: Some(due_by.clone()).filter(|d| !d.is_empty()),
    };
    if !status.is_empty() && filter.status.is_none() {
        errors.add("status", "choose a state from the list");
    }
    let page = layout::page_number(query.as_deref());
    let found = if errors.is_empty() {
        subscriptions::page_for_staff(&state, &filter, (page - 1) * PER_PAGE, PER_PAGE).await
    } else {
        Ok((Vec::new(), 0))
    };
    let (list, total) = match found {
        Ok(found) => found,
        Err(err) => match FormErrors::from_error(&err) {
            Some(found) => {
                errors = found;
                (Vec::new(), 0)
            }
            None => return layout::error_page(&err, "subscriptions"),
        },
    };
    let body = html! {
        h1 { "Subscriptions" }
        (form_alert(&errors))
        form.filters method="get" action=(SECTION) role="search" {
            (field("State", "status", Kind::Select(STATUSES), &status, &errors))
            (field("Renewing by", "due_by", Kind::Date, &due_by, &errors))
            div.field {
                label { input type="checkbox" name="failing" value="yes" checked[failing == "yes"]; " Failing renewals only" }
            }
            button.button type="submit" { "Filter" }
        }
        @if list.is_empty() { p.empty { "No subscription matches." } }
        @else {
            p { "By next renewal." }
            (table(&list))
        }
        (layout::pager(SECTION, &[("status", status.clone()), ("due_by", due_by.clone()), ("failing", failing.clone())],
            page, PER_PAGE, total))
    };
    layout::page_with_status(
        errors.status(),
        &staff,
        admin.csrf_input(),
        "Subscriptions",
        SECTION,
        body,
    )
}

/// Subscriptions as a table (also on a customer's page).
pub fn table(list: &[Subscription]) -> Markup {
    html! {
        table {
            caption.visually-hidden { "Subscriptions" }
            thead { tr { th scope="col" { "Subscription" } th scope="col" { "State" } th scope="col" { "Every" }
                th scope="col" { "Items" } th scope="col" { "Next renewal" } th scope="col" { "Failing" } } }
            tbody {
                @for s in list {
                    tr {
                        td { a href={ (SECTION) "/" (s.number) } { (s.number) } }
                        td { span class={ "badge " (s.status.as_str()) } { (s.status.as_str()) }
                            @if s.skip_next { " " small { "(next skipped)" } } }
                        td { (s.interval) }
                        td { @for (i, item) in s.items.iter().enumerate() {
                            @if i > 0 { ", " } (item.quantity) " × " code { (item.sku) } } }
                        td { @if s.status == Status::Cancelled { "—" } @else { (s.next_renewal_at) } }
                        td { @if s.failed_attempts > 0 {
                            span.badge.pending { (s.failed_attempts) " declined" }
                            @if let Some(at) = &s.retry_at { br; small { "retry " (at) } }
                        } @else { "—" } }
                    }
                }
            }
        }
    }
}

async fn load(state: &AppState, number: &str) -> Result<Subscription> {
    if !layout::plausible_number(number) {
        return Err(Error::not_found(format!("subscription {number}")));
    }
    subscriptions::get(state, number, None).await
}

async fn subscription_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let notice = layout::notice(query.as_deref(), DONE);
    match load(&state, &number).await {
        Ok(sub) => show(
            &staff,
            &admin,
            &sub,
            notice,
            &Form::from_pairs(Vec::new()),
            &FormErrors::default(),
        ),
        Err(err) => layout::error_page(&err, "subscription"),
    }
}

/// What the page says after each action.
const DONE: &[(&str, &str)] = &[
    ("pause", "Paused."),
    ("resume", "Resumed."),
    ("skip", "The next delivery is skipped."),
    ("unskip", "The next delivery is on again."),
    ("renew_now", "Renewed now."),
    ("change", "Changed from the next renewal."),
    ("cancel", "Cancelled."),
];

fn show(
    staff: &Staff,
    admin: &AdminSession,
    sub: &Subscription,
    notice: Option<&str>,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let may_act = super::may(
        staff.role,
        &Method::POST,
        "/admin/subscriptions/{number}/actions",
    );
    let body = html! {
        p.crumbs { a href=(SECTION) { "Subscriptions" } }
        div.title-row {
            h1 { "Subscription " (sub.number) }
            span class={ "badge " (sub.status.as_str()) } { (sub.status.as_str()) }
        }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        (form_alert(errors))
        dl {
            dt { "Every" } dd { (sub.interval) }
            dt { "Items" } dd { @for (i, item) in sub.items.iter().enumerate() {
                @if i > 0 { br; } (item.quantity) " × " (item.title) " " code { (item.sku) } } }
            @if sub.status != Status::Cancelled {
                dt { "Next renewal" } dd { (sub.next_renewal_at) @if sub.skip_next { " (skipped: the one after)" } }
            }
            @if let Some(until) = &sub.paused_until { dt { "Paused until" } dd { (until) } }
            dt { "Shipping" } dd { (sub.shipping_method) " to " (sub.country) }
            @if let Some(reason) = &sub.cancel_reason { dt { "Cancelled because" } dd { (reason) } }
            @if sub.failed_attempts > 0 {
                dt { "Failing" } dd { (sub.failed_attempts) " declined renewals"
                    @if let Some(at) = &sub.retry_at { "; next try " (at) } }
            }
            dt { "Since" } dd { (sub.created_at) }
        }
        @if let Some(next) = &sub.next_renewal {
            h2 { "The next renewal" }
            p { (layout::money(next.goods_minor, &next.currency)) " goods, "
                (layout::money(next.shipping_minor, &next.currency)) " shipping, "
                (layout::money(next.tax_minor, &next.currency)) " tax: "
                strong { (layout::money(next.total_minor, &next.currency)) } }
            @if let Some(problem) = &next.problem { p.form-alert { (layout::sentence(problem)) } }
        }
        @if may_act && sub.status != Status::Cancelled { (actions(admin, sub, form, errors)) }
        h2 { "Renewals" }
        @if sub.renewals.is_empty() { p.empty { "No renewal yet." } }
        @else {
            table {
                caption.visually-hidden { "Renewal attempts, newest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Cycle" } th scope="col" { "Attempt" }
                    th scope="col" { "Outcome" } th scope="col" { "Order" } th scope="col" { "Message" } } }
                tbody {
                    @for r in &sub.renewals {
                        tr {
                            td { (r.at) } td { (r.cycle) } td { (r.attempt) } td { (r.outcome) }
                            td { @if let Some(n) = &r.order_number { a href={ "/admin/orders/" (n) } { (n) } } @else { "—" } }
                            td { (r.message.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        &format!("Subscription {}", sub.number),
        SECTION,
        body,
    )
}

/// The action forms: one post each, named by `action`.
fn actions(admin: &AdminSession, sub: &Subscription, form: &Form, errors: &FormErrors) -> Markup {
    let to = format!("{SECTION}/{}/actions", sub.number);
    let button = |action: &str, label: &str| {
        html! {
            form.inline method="post" action=(to) {
                (admin.csrf_input())
                input type="hidden" name="action" value=(action);
                button.button type="submit" { (label) }
            }
        }
    };
    let active = sub.status == Status::Active;
    html! {
        h2 { "Act for the customer" }
        div.actions {
            @if active { (button("renew_now", "Renew now")) }
            @if sub.skip_next { (button("unskip", "Take the skip back")) } @else { (button("skip", "Skip the next delivery")) }
            @if !active { (button("resume", "Resume")) }
        }
        @if active {
            form method="post" action=(to) novalidate {
                (admin.csrf_input())
                input type="hidden" name="action" value="pause";
                (field_with_hint("Pause until", "until", Kind::Date, form.get("until"),
                    Some("Empty: until resumed."), errors))
                button.button type="submit" { "Pause" }
            }
        }
        form method="post" action=(to) novalidate {
            (admin.csrf_input())
            input type="hidden" name="action" value="change";
            (field("Next renewal on", "next_renewal_on", Kind::Date, form.get("next_renewal_on"), errors))
            (field_with_hint("Every", "interval", Kind::Text, form.get("interval"),
                Some("30d, 2w or 1m; empty: unchanged."), errors))
            button.button type="submit" { "Change" }
        }
        form method="post" action=(to) novalidate {
            (admin.csrf_input())
            input type="hidden" name="action" value="cancel";
            (field_with_hint("Reason for cancelling", "reason", Kind::Text, form.get("reason"),
                Some("The customer's reason, as they gave it. Cancelling cannot be undone."), errors))
            button.button.danger type="submit" { "Cancel the subscription" }
        }
    }
}

/// The action a form posts, or the field that cannot be read.
fn action_of(form: &Form) -> Result<Action> {
    let optional = |name: &str| Some(form.get(name).trim().to_owned()).filter(|v| !v.is_empty());
    Ok(match form.get("action") {
        "pause" => Action::Pause {
            until: optional("until"),
        },
        "resume" => Action::Resume,
        "skip" => Action::Skip,
        "unskip" => Action::Unskip,
        "renew_now" => Action::RenewNow,
        "cancel" => Action::Cancel {
            reason: form.get("reason").to_owned(),
        },
        "change" => {
            let (next_renewal_on, interval) = (optional("next_renewal_on"), optional("interval"));
            if next_renewal_on.is_none() && interval.is_none() {
                return Err(Error::invalid(
                    "next_renewal_on",
                    "give a date or an interval to change",
                ));
            }
            Action::Change {
                next_renewal_on,
                interval,
                items: None,
                shipping_address: None,
            }
        }
        _ => return Err(Error::invalid("action", "is not an action of this page")),
    })
}

async fn act(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let outcome = match (layout::plausible_number(&number), action_of(&form)) {
        (false, _) => Err(Error::not_found(format!("subscription {number}"))),
        (true, Ok(action)) => subscriptions::act(&state, &staff.actor, &number, None, action).await,
        (true, Err(err)) => Err(err),
    };
    match outcome {
        Ok(sub) => layout::see_other(&format!(
            "{SECTION}/{}?done={}",
            sub.number,
            form.get("action")
        )),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => match load(&state, &number).await {
                Ok(sub) => show(&staff, &admin, &sub, None, &form, &errors),
                Err(err) => layout::error_page(&err, "subscription"),
            },
            None => layout::error_page(&err, "subscription"),
        },
    }
}
