//! Customers: finding one by email (the accounts' keyed lookup: emails are stored
//! encrypted, so there is no list to browse by name), their page (identity, addresses,
//! consents, orders, subscriptions, points; each view audited as the API's is),
//! correcting their points, erasing them on a verified request, and the privacy
//! requests with their status. Through `accounts::privacy`, `loyalty`, `orders` and
//! `subscriptions`, as the admin API's routes are.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use maud::{Markup, html};
use sqlx::Row;

use super::layout::{self, Form, FormErrors, Kind, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::accounts::privacy::{self, CustomerView, RequestFilter, StaffErasureRequest};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::loyalty::{self, LoyaltySummary, PointsAdjustment};
use crate::orders::Order;
use crate::staff::Staff;
use crate::subscriptions::Subscription;

const SECTION: &str = "/admin/customers";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/customers", get(find_page))
        .route("/admin/customers/{pseudonym}", get(customer_page))
        .route(
            "/admin/customers/{pseudonym}/points",
            axum::routing::post(adjust_points),
        )
        .route(
            "/admin/customers/{pseudonym}/erase",
            get(erase_page).post(erase),
        )
        .route("/admin/privacy-requests", get(requests_page))
}

// ---- finding a customer ----------------------------------------------------------------

/// The search form; with `q` (an email or a pseudonym) it goes to that customer's page,
/// or says that no account has it.
async fn find_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let wanted = layout::query_value(query.as_deref(), "q").unwrap_or_default();
    let mut errors = FormErrors::default();
    if !wanted.is_empty() {
        match find(&state, &wanted).await {
            Ok(Some(pseudonym)) => return layout::see_other(&format!("{SECTION}/{pseudonym}")),
            Ok(None) => errors.add("q", "no account has this email or pseudonym"),
            Err(err) => return layout::error_page(&err, "customers"),
        }
    }
    let may_requests = super::may(staff.role, &Method::GET, "/admin/privacy-requests");
    let body = html! {
        h1 { "Customers" }
        p { "Customers' emails are stored encrypted: a customer is found by their whole email "
            "address (or the pseudonym `c_…` that support tickets and the audit log name), not by "
            "part of it. Opening a customer's page is recorded in the audit log." }
        (form_alert(&errors))
        form.filters method="get" action=(SECTION) role="search" {
            (field("Email or pseudonym", "q", Kind::Text, &wanted, &errors))
            button.button.primary type="submit" { "Find" }
        }
        @if may_requests { p { a href="/admin/privacy-requests" { "Privacy requests (exports and erasures)" } } }
    };
    layout::page_with_status(
        errors.status(),
        &staff,
        admin.csrf_input(),
        "Customers",
        SECTION,
        body,
    )
}

/// The pseudonym of the customer with this email or pseudonym.
async fn find(state: &AppState, wanted: &str) -> Result<Option<String>> {
    let wanted = wanted.trim();
    let row = if privacy::is_pseudonym(wanted) {
        sqlx::query("SELECT pseudonym FROM customers WHERE pseudonym = $1")
            .bind(wanted)
            .fetch_optional(&state.db.pool)
            .await?
    } else {
        let lookup = state
            .keys
            .lookup_hash(&crate::accounts::normalise_email(wanted));
        sqlx::query("SELECT pseudonym FROM customers WHERE email_lookup = $1")
            .bind(lookup)
            .fetch_optional(&state.db.pool)
            .await?
    };
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

// ---- a customer's page -------------------------------------------------------------------

/// What the customer's page shows beside the audited identity view.
struct Activity {
    orders: Vec<Order>,
    subscriptions: Vec<Subscription>,
    points: Option<LoyaltySummary>,
}

async fn activity(state: &AppState, staff: &Staff, view: &CustomerView) -> Result<Activity> {
    if view.erased_at.is_some() {
        return Ok(Activity {
            orders: Vec::new(),
            subscriptions: Vec::new(),
            points: None,
        });
    }
    let customer_id = loyalty::customer_id_of(state, &view.pseudonym).await?;
    let orders = if super::may(staff.role, &Method::GET, "/admin/orders") {
        crate::orders::list_for_customer(state, customer_id).await?
    } else {
        Vec::new()
    };
    let subscriptions = if super::may(staff.role, &Method::GET, "/admin/subscriptions") {
        crate::subscriptions::list_for_customer(state, customer_id).await?
    } else {
        Vec::new()
    };
    Ok(Activity {
        orders,
        subscriptions,
        points: Some(loyalty::summary(state, customer_id).await?),
    })
}

/// What the customer's page says after each change.
const DONE: &[(&str, &str)] = &[
    (
        "points",
        "The points were corrected; the customer sees the reason.",
    ),
    ("erased", "The customer was erased."),
];

async fn customer_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(pseudonym): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let notice = layout::notice(query.as_deref(), DONE);
    show_customer(
        &state,
        &staff,
        &admin,
        &pseudonym,
        notice,
        &Form::from_pairs(Vec::new()),
        &FormErrors::default(),
    )
    .await
}

/// The customer's page; `form` and `errors` are the points form's, when it failed.
async fn show_customer(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    pseudonym: &str,
    notice: Option<&str>,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let view = match privacy::customer_view(state, &staff.actor, pseudonym).await {
        Ok(view) => view,
        Err(err) => return layout::error_page(&err, "customer"),
    };
    let activity = match activity(state, staff, &view).await {
        Ok(activity) => activity,
        Err(err) => return layout::error_page(&err, "customer"),
    };
    let may_adjust = super::may(
        staff.role,
        &Method::POST,
        "/admin/customers/{pseudonym}/points",
    );
    let may_erase = super::may(
        staff.role,
        &Method::GET,
        "/admin/customers/{pseudonym}/erase",
    );
    let title = view
        .name
        .clone()
        .unwrap_or_else(|| "Erased customer".to_owned());
    let body = html! {
        p.crumbs { a href=(SECTION) { "Customers" } }
        h1 { (title) }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        (identity(&view))
        @if view.erased_at.is_none() {
            (orders_table(&activity.orders, staff))
            (subscriptions_table(&activity.subscriptions, staff))
            @if let Some(points) = &activity.points {
                (points_section(points, &view.pseudonym, may_adjust, admin, form, errors))
            }
        }
        (requests_table("Privacy requests", &view.privacy_requests))
        @if may_erase && view.erased_at.is_none() {
            h2 { "Erasure" }
            p { "On a verified request (by mail, say): the customer's identity is wiped, their "
                "orders are kept for the accounts without it." }
            p { a.button.danger href={ (SECTION) "/" (view.pseudonym) "/erase" } { "Erase this customer…" } }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        &title,
        SECTION,
        body,
    )
}

fn identity(view: &CustomerView) -> Markup {
    html! {
        dl {
            dt { "Pseudonym" } dd { code { (view.pseudonym) } }
            dt { "Email" } dd { (view.email.as_deref().unwrap_or("(erased)")) }
            dt { "Customer since" } dd { (view.created_at) }
            @if let Some(at) = &view.erased_at { dt { "Erased" } dd { (at) } }
            dt { "Signed in on" } dd { (view.open_sessions) " devices" }
        }
        @if !view.addresses.is_empty() {
            h2 { "Addresses" }
            ul {
                @for a in &view.addresses {
                    li {
                        @if let Some(label) = &a.label { strong { (label) } ": " }
                        (a.name) ", " (a.line1) @if let Some(l2) = &a.line2 { ", " (l2) }
                        ", " @if let Some(pc) = &a.postal_code { (pc) " " } (a.city) ", " (a.country)
                        @if a.is_default { " " span.badge.active { "default" } }
                    }
                }
            }
        }
        @if !view.consents.is_empty() {
            h2 { "Consents" }
            ul {
                @for c in &view.consents {
                    li { (c.purpose) ": " @if c.granted { "given" } @else { "not given" }
                        small { " (" (c.source) ", " (c.recorded_at) ")" } }
                }
            }
        }
    }
}

fn orders_table(orders: &[Order], staff: &Staff) -> Markup {
    if !super::may(staff.role, &Method::GET, "/admin/orders") {
        return html! {};
    }
    html! {
        h2 { "Orders (" (orders.len()) ")" }
        @if orders.is_empty() { p.empty { "No orders." } }
        @else {
            table {
                caption.visually-hidden { "The customer's orders, newest first" }
                thead { tr { th scope="col" { "Order" } th scope="col" { "Placed" } th scope="col" { "Status" }
                    th scope="col" class="num" { "Total" } } }
                tbody {
                    @for o in orders {
                        tr {
                            td { a href={ "/admin/orders/" (o.number) } { (o.number) } }
                            td { (o.created_at) }
                            td { span class={ "badge " (o.status.as_str()) } { (o.status.as_str()) } }
                            td.num { (layout::money(o.total_minor, &o.currency)) }
                        }
                    }
                }
            }
        }
    }
}

fn subscriptions_table(subscriptions: &[Subscription], staff: &Staff) -> Markup {
    if !super::may(staff.role, &Method::GET, "/admin/subscriptions") {
        return html! {};
    }
    html! {
        h2 { "Subscriptions (" (subscriptions.len()) ")" }
        @if subscriptions.is_empty() { p.empty { "No subscriptions." } }
        @else { (super::subscriptions::table(subscriptions)) }
    }
}

fn points_section(
    points: &LoyaltySummary,
    pseudonym: &str,
    may_adjust: bool,
    admin: &AdminSession,
    form: &Form,
    errors: &FormErrors,
) -> Markup {
    html! {
        h2 #points { "Points" }
        p { strong { (points.balance) } " spendable, " (points.pending) " pending"
            @if let Some(at) = &points.expires_at { "; the balance expires " (at) " unless they order" } "." }
        @if !points.entries.is_empty() {
            table {
                caption.visually-hidden { "Points history, newest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Reason" }
                    th scope="col" class="num" { "Points" } } }
                tbody {
                    @for e in points.entries.iter().take(20) {
                        tr { td { (e.created_at) } td { (e.kind) } td { (e.reason) } td.num { (e.points) } }
                    }
                }
            }
        }
        @if may_adjust {
            h3 { "Correct the points" }
            (form_alert(errors))
            form method="post" action={ (SECTION) "/" (pseudonym) "/points" } novalidate {
                (admin.csrf_input())
                (field_with_hint("Points", "points", Kind::Number, form.get("points"),
                    Some("Add with a number, take away with a minus: -50."), errors))
                (field_with_hint("Reason", "reason", Kind::Text, form.get("reason"),
                    Some("The customer sees it in their points history."), errors))
                button.button.primary type="submit" { "Correct the points" }
            }
        }
    }
}

async fn adjust_points(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(pseudonym): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let outcome = match form.get("points").trim().parse::<i64>() {
        Ok(points) => {
            let input = PointsAdjustment {
                points,
                reason: form.get("reason").to_owned(),
            };
            loyalty::adjust(&state, &staff.actor, &pseudonym, input)
                .await
                .map(|_| ())
        }
        Err(_) => Err(Error::invalid(
            "points",
            "must be a whole number, e.g. 50 or -50",
        )),
    };
    match outcome {
        Ok(()) => layout::see_other(&format!("{SECTION}/{pseudonym}?done=points#points")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                show_customer(&state, &staff, &admin, &pseudonym, None, &form, &errors).await
            }
            None => layout::error_page(&err, "points"),
        },
    }
}

// ---- erasure -----------------------------------------------------------------------------

async fn erase_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(pseudonym): Path<String>,
) -> Response {
    erase_form(
        &state,
        &staff,
        &admin,
        &pseudonym,
        "",
        &FormErrors::default(),
    )
    .await
}

/// Erasure asks for the pseudonym again, as the API's `confirm` does.
async fn erase_form(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    pseudonym: &str,
    typed: &str,
    errors: &FormErrors,
) -> Response {
    if let Err(err) = loyalty::customer_id_of(state, pseudonym).await {
        return layout::error_page(&err, "erasure");
    }
    let body = html! {
        p.crumbs { a href=(SECTION) { "Customers" } " / " a href={ (SECTION) "/" (pseudonym) } { (pseudonym) } }
        h1 { "Erase customer " (pseudonym) "?" }
        p { "Their email, name, addresses, sessions, points, subscriptions and the identity on "
            "their orders are wiped now, and every backup loses them too. Orders stay for the "
            "accounts, without a name. This cannot be undone." }
        (form_alert(errors))
        form method="post" action={ (SECTION) "/" (pseudonym) "/erase" } novalidate {
            (admin.csrf_input())
            (field_with_hint("Type the pseudonym to confirm", "confirm", Kind::Text, typed,
                Some(pseudonym), errors))
            button.button.danger type="submit" { "Erase the customer" }
            " " a href={ (SECTION) "/" (pseudonym) } { "Keep the customer" }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Erase a customer",
        SECTION,
        body,
    )
}

async fn erase(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(pseudonym): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let typed = form.get("confirm").trim().to_owned();
    let input = StaffErasureRequest {
        confirm: typed.clone(),
    };
    match privacy::staff_erasure(&state, &staff.actor, &pseudonym, input).await {
        Ok(_) => layout::see_other(&format!("{SECTION}/{pseudonym}?done=erased")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => erase_form(&state, &staff, &admin, &pseudonym, &typed, &errors).await,
            None => layout::error_page(&err, "erasure"),
        },
    }
}

// ---- privacy requests ----------------------------------------------------------------------

const REQUESTS_PER_PAGE: i64 = 50;

const REQUEST_STATUSES: &[(&str, &str)] = &[
    ("", "Any status"),
    ("received", "Received"),
    ("processing", "Processing"),
    ("completed", "Completed"),
    ("failed", "Failed"),
];
const REQUEST_KINDS: &[(&str, &str)] = &[
    ("", "Exports and erasures"),
    ("export", "Exports"),
    ("erasure", "Erasures"),
];

async fn requests_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let status = layout::query_value(query.as_deref(), "status").unwrap_or_default();
    let kind = layout::query_value(query.as_deref(), "kind").unwrap_or_default();
    let page = layout::page_number(query.as_deref());
    let filter = RequestFilter {
        status: Some(status.clone()).filter(|s| !s.is_empty()),
        kind: Some(kind.clone()).filter(|k| !k.is_empty()),
        limit: Some(REQUESTS_PER_PAGE),
    };
    let offset = (page - 1) * REQUESTS_PER_PAGE;
    let (requests, total, errors) = match privacy::page_of_requests(&state, filter, offset).await {
        Ok((requests, total)) => (requests, total, FormErrors::default()),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => (Vec::new(), 0, errors),
            None => return layout::error_page(&err, "privacy requests"),
        },
    };
    let body = html! {
        p.crumbs { a href=(SECTION) { "Customers" } }
        h1 { "Privacy requests" }
        (form_alert(&errors))
        form.filters method="get" action="/admin/privacy-requests" {
            (field("Status", "status", Kind::Select(REQUEST_STATUSES), &status, &errors))
            (field("Kind", "kind", Kind::Select(REQUEST_KINDS), &kind, &errors))
            button.button type="submit" { "Filter" }
        }
        (requests_table("Requests, newest first", &requests))
        (layout::pager("/admin/privacy-requests", &[("status", status.clone()), ("kind", kind.clone())],
            page, REQUESTS_PER_PAGE, total))
    };
    layout::page_with_status(
        errors.status(),
        &staff,
        admin.csrf_input(),
        "Privacy requests",
        SECTION,
        body,
    )
}

fn requests_table(caption: &str, requests: &[privacy::PrivacyRequest]) -> Markup {
    html! {
        h2 { (caption) }
        @if requests.is_empty() { p.empty { "None." } }
        @else {
            table {
                thead { tr { th scope="col" { "Received" } th scope="col" { "Kind" } th scope="col" { "Customer" }
                    th scope="col" { "Asked by" } th scope="col" { "Status" } th scope="col" { "Completed" } } }
                tbody {
                    @for r in requests {
                        tr {
                            td { (r.created_at) }
                            td { (r.kind) }
                            td { a href={ (SECTION) "/" (r.customer_pseudonym) } { code { (r.customer_pseudonym) } } }
                            td { (r.requested_by) }
                            td { span class={ "badge " (r.status) } { (r.status) }
                                @if let Some(error) = &r.error { br; small { (error) } } }
                            td { (r.completed_at.as_deref().unwrap_or("—")) }
                        }
                    }
                }
            }
        }
    }
}
