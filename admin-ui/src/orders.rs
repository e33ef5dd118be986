//! Orders: the list (filtered by status, dates, the customer's email and a SKU, paged on
//! the server), an order with its lines, the lots its units came from, its payment with
//! each attempt (declines too) and each refund, and its events
//! (`crate::orders::history`; the audit log's entries among them only for staff who may
//! read the audit log), and the staff's changes: fulfil with carrier and tracking number (captures the
//! payment), mark delivered, cancel, refund. Each change goes through the orders domain
//! (`crate::orders::transition`, `crate::orders::refund`), as the admin API's do, after a
//! page that asks to confirm it.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use maud::{Markup, html};
use sqlx::Row;

use super::layout::{self, Form, FormErrors, Kind, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::orders::{Order, OrderStatus, RefundRequest, Transition, history};
use crate::staff::Staff;

const PER_PAGE: i64 = 50;
const SECTION: &str = "/admin/orders";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/orders", get(list_page))
        .route("/admin/orders/{number}", get(order_page))
        .route(
            "/admin/orders/{number}/fulfil",
            get(fulfil_page).post(fulfil),
        )
        .route(
            "/admin/orders/{number}/deliver",
            get(deliver_page).post(deliver),
        )
        .route(
            "/admin/orders/{number}/cancel",
            get(cancel_page).post(cancel),
        )
        .route(
            "/admin/orders/{number}/refund",
            get(refund_page).post(refund),
        )
}

// ---- the list -------------------------------------------------------------------------------

struct ListFilter {
    status: String,
    from: String,
    to: String,
    email: String,
    sku: String,
    /// A lot's batch number: orders whose units came from it.
    batch: String,
    page: i64,
}

impl ListFilter {
    fn parse(query: Option<&str>) -> ListFilter {
        let value = |name| {
            layout::query_value(query, name)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        };
        ListFilter {
            status: value("status"),
            from: value("from"),
            to: value("to"),
            email: value("email"),
            sku: value("sku"),
            batch: value("batch"),
            page: layout::page_number(query),
        }
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("status", self.status.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            ("email", self.email.clone()),
            ("sku", self.sku.clone()),
            ("batch", self.batch.clone()),
        ]
    }
}

/// A value bound to the list's query.
enum Bind {
    Text(String),
    Number(i64),
}

struct OrderRow {
    number: String,
    status: String,
    total_minor: i64,
    currency: String,
    created_at: String,
    units: i64,
}

/// The conditions of the filter, or the field it cannot read. A customer is found by the
/// accounts' keyed email lookup (emails are stored encrypted), so guests' orders are not
/// found by email.
async fn conditions(state: &AppState, filter: &ListFilter) -> Result<(Vec<String>, Vec<Bind>)> {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    if !filter.status.is_empty() {
        if OrderStatus::parse(&filter.status).is_none() {
            return Err(Error::invalid("status", "choose a status from the list"));
        }
        binds.push(Bind::Text(filter.status.clone()));
        conditions.push(format!("o.status = ${}", binds.len()));
    }
    for (name, value, op, days) in [("from", &filter.from, ">=", 0), ("to", &filter.to, "<", 1)] {
        if value.is_empty() {
            continue;
        }
        let date =
            crate::time::parse_date(value).map_err(|message| Error::invalid(name, message))?;
        let bound = date + chrono::Days::new(days);
        binds.push(Bind::Text(crate::time::format_date(bound)));
        conditions.push(format!("o.created_at {op} ${}", binds.len()));
    }
    if !filter.email.is_empty() {
        let lookup = state
            .keys
            .lookup_hash(&crate::accounts::normalise_email(&filter.email));
        let customer: Option<i64> = sqlx::query("SELECT id FROM customers WHERE email_lookup = $1")
            .bind(lookup)
            .fetch_optional(&state.db.pool)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        binds.push(Bind::Number(customer.unwrap_or(-1)));
        conditions.push(format!("o.customer_id = ${}", binds.len()));
    }
    if !filter.sku.is_empty() {
        binds.push(Bind::Text(filter.sku.clone()));
        conditions.push(format!(
            "o.id IN (SELECT order_id FROM order_lines WHERE sku = ${})",
            binds.len()
        ));
    }
    if !filter.batch.is_empty() {
        binds.push(Bind::Text(filter.batch.clone()));
        conditions.push(format!(
            "o.id IN (SELECT a.order_id FROM order_allocations a JOIN lots l ON l.id = a.lot_id
                      WHERE l.batch = ${})",
            binds.len()
        ));
    }
    Ok((conditions, binds))
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    binds: &[Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text.clone()),
            Bind::Number(n) => query.bind(*n),
        };
    }
    query
}

/// A page of orders, newest first, and how many match.
async fn find_orders(state: &AppState, filter: &ListFilter) -> Result<(Vec<OrderRow>, i64)> {
    let (conditions, binds) = conditions(state, filter).await?;
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let count_sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM orders o {where_clause}");
    let total: i64 = bind_all(sqlx::query(sqlx::AssertSqlSafe(count_sql)), &binds)
        .fetch_one(&state.db.pool)
        .await?
        .try_get(0)?;
    let list_sql = format!(
        "SELECT o.number, o.status, o.total_minor, o.currency, o.created_at,
            (SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) FROM order_lines l WHERE l.order_id = o.id)
         FROM orders o {where_clause} ORDER BY o.id DESC LIMIT ${} OFFSET ${}",
        binds.len() + 1,
        binds.len() + 2
    );
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(list_sql)), &binds)
        .bind(PER_PAGE)
        .bind((filter.page - 1) * PER_PAGE)
        .fetch_all(&state.db.pool)
        .await?;
    let orders = rows
        .iter()
        .map(|row| {
            Ok(OrderRow {
                number: row.try_get(0)?,
                status: row.try_get(1)?,
                total_minor: row.try_get(2)?,
                currency: row.try_get(3)?,
                created_at: row.try_get(4)?,
                units: row.try_get(5)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((orders, total))
}

const STATUS_FILTER: &[(&str, &str)] = &[
    ("", "Any status"),
    ("pending", "Pending"),
    ("paid", "Paid"),
    ("fulfilled", "Fulfilled"),
    ("delivered", "Delivered"),
    ("cancelled", "Cancelled"),
    ("refunded", "Refunded"),
];

async fn list_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let filter = ListFilter::parse(query.as_deref());
    let (orders, total, errors) = match find_orders(&state, &filter).await {
        Ok((orders, total)) => (orders, total, FormErrors::default()),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => (Vec::new(), 0, errors),
            None => return layout::error_page(&err, "orders"),
        },
    };
    let body = html! {
        h1 { "Orders" }
        (form_alert(&errors))
        form.filters method="get" action="/admin/orders" role="search" novalidate {
            (field("Status", "status", Kind::Select(STATUS_FILTER), &filter.status, &errors))
            (field("Placed from", "from", Kind::Date, &filter.from, &errors))
            (field("Placed to", "to", Kind::Date, &filter.to, &errors))
            (field("Customer email", "email", Kind::Email, &filter.email, &errors))
            (field("SKU", "sku", Kind::Text, &filter.sku, &errors))
            (field("Lot batch", "batch", Kind::Text, &filter.batch, &errors))
            button.button type="submit" { "Filter" }
        }
        @if orders.is_empty() {
            p.empty { "No orders match." }
        } @else {
            table {
                caption.visually-hidden { "Orders" }
                thead { tr { th scope="col" { "Number" } th scope="col" { "Placed" } th scope="col" { "Status" }
                    th scope="col" class="num" { "Units" } th scope="col" class="num" { "Total" } } }
                tbody {
                    @for order in &orders {
                        tr {
                            td { a.order-link href={ "/admin/orders/" (order.number) } { (order.number) } }
                            td { (short_time(&order.created_at)) }
                            td { span class={ "badge " (order.status) } { (order.status) } }
                            td.num { (order.units) }
                            td.num { (layout::money(order.total_minor, &order.currency)) }
                        }
                    }
                }
            }
        }
        (layout::pager("/admin/orders", &filter.params(), filter.page, PER_PAGE, total))
    };
    layout::page_with_status(
        errors.status(),
        &staff,
        admin.csrf_input(),
        "Orders",
        SECTION,
        body,
    )
}

/// `2026-12-05T10:30:12.345Z` as `2026-12-05 10:30`.
fn short_time(stamp: &str) -> String {
    stamp.get(..16).unwrap_or(stamp).replace('T', " ")
}

// ---- one order --------------------------------------------------------------------------------

/// Which lot each of the order's units came from.
struct AllocationRow {
    sku: String,
    batch: String,
    expires_on: String,
    location: String,
    quantity: i64,
}

async fn allocations(state: &AppState, number: &str) -> Result<Vec<AllocationRow>> {
    let rows = sqlx::query(
        "SELECT v.sku, l.batch, l.expires_on, loc.code, a.quantity
         FROM order_allocations a JOIN orders o ON o.id = a.order_id JOIN lots l ON l.id = a.lot_id
           JOIN variants v ON v.id = a.variant_id JOIN locations loc ON loc.id = l.location_id
         WHERE o.number = $1 ORDER BY a.id",
    )
    .bind(number)
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AllocationRow {
                sku: row.try_get(0)?,
                batch: row.try_get(1)?,
                expires_on: row.try_get(2)?,
                location: row.try_get(3)?,
                quantity: row.try_get(4)?,
            })
        })
        .collect()
}

/// The order numbers the domain gives out: short, of letters, digits and hyphens.
async fn load(state: &AppState, number: &str) -> Result<Order> {
    if !layout::plausible_number(number) {
        return Err(Error::not_found(format!("order {number}")));
    }
    crate::orders::get_for_staff(state, number).await
}

const NOTICES: &[(&str, &str)] = &[
    (
        "fulfilled",
        "The order is marked shipped; the payment was captured.",
    ),
    ("delivered", "The order is marked delivered."),
    (
        "cancelled",
        "The order was cancelled and its stock released.",
    ),
    ("refunded", "The refund was made."),
];

async fn order_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    // The audit log's entries about the order (status changes and refunds, naming the
    // staff member) are for those who may read the audit log; payment attempts and
    // refunds are the order's own and shown to everyone who reads orders.
    let may_read_audit = super::may(staff.role, &axum::http::Method::GET, "/admin/audit");
    let loaded = async {
        let order = load(&state, &number).await?;
        let sources = if may_read_audit {
            history::EventSources::PaymentsAndAudit
        } else {
            history::EventSources::Payments
        };
        let payments = Payments {
            attempts: history::payment_attempts(&state, &number).await?,
            refunds: history::refunds(&state, &number).await?,
            events: history::events(&state, &number, sources).await?,
        };
        Ok::<_, Error>((order, allocations(&state, &number).await?, payments))
    };
    let (order, allocations, payments) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "order"),
    };
    let notice = layout::notice(query.as_deref(), NOTICES);
    let money = |minor: i64| layout::money(minor, &order.currency);
    let body = html! {
        p.crumbs { a href="/admin/orders" { "Orders" } }
        div.title-row {
            h1 { "Order " span #order-number { (order.number) } }
            span #order-status class={ "badge " (order.status.as_str()) } { (order.status.as_str()) }
        }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        (actions(&staff, &order))
        div.columns {
            section {
                h2 { "Customer and delivery" }
                dl {
                    dt { "Email" } dd { (order.email.as_deref().unwrap_or("(erased)")) }
                    dt { "Placed" } dd { (short_time(&order.created_at)) }
                    dt { "Shipping" } dd { (order.shipping_method) }
                    @if let Some(address) = &order.shipping_address {
                        dt { "Address" }
                        dd { (address.name) br; (address.line1) br;
                            @if let Some(line2) = &address.line2 { (line2) br; }
                            (address.postal_code) " " (address.city) br; (address.country) }
                    }
                    @if let Some(tracking) = &order.tracking_number {
                        dt { "Tracking number" } dd #tracking-number { (tracking) }
                    }
                }
            }
            section {
                h2 { "Payment" }
                dl {
                    dt { "Total" } dd #order-total { (money(order.total_minor)) }
                    dt { "Reference" } dd { (order.payment_reference.as_deref().unwrap_or("none yet")) }
                    dt { "Refunded" } dd #order-refunded { (money(order.refunded_minor)) }
                    @if order.points_redeemed > 0 { dt { "Points spent" } dd { (order.points_redeemed) } }
                }
            }
        }
        section {
            h2 { "Lines" }
            table {
                caption.visually-hidden { "Lines" }
                thead { tr { th scope="col" { "Item" } th scope="col" { "SKU" } th scope="col" class="num" { "Quantity" }
                    th scope="col" class="num" { "Unit price" } th scope="col" class="num" { "Total" } } }
                tbody {
                    @for line in &order.lines {
                        tr { td { (line.title) @if line.subscription { " (subscription)" } } td { code { (line.sku) } }
                            td.num { (line.quantity) } td.num { (money(line.unit_price_minor)) } td.num { (money(line.total_minor)) } }
                    }
                }
                tfoot {
                    tr { th scope="row" colspan="4" { "Subtotal" } td.num { (money(order.subtotal_minor)) } }
                    @if order.adjustments_minor != 0 { tr { th scope="row" colspan="4" { "Adjustments" } td.num { (money(order.adjustments_minor)) } } }
                    tr { th scope="row" colspan="4" { "Shipping" } td.num { (money(order.shipping_minor)) } }
                    tr { th scope="row" colspan="4" { (if order.prices_include_tax { "Tax included" } else { "Tax" }) } td.num { (money(order.tax_minor)) } }
                    tr { th scope="row" colspan="4" { "Total" } td.num { (money(order.total_minor)) } }
                }
            }
        }
        (refunds_section(&order, &payments.refunds))
        (attempts_section(&order, &payments.attempts))
        section {
            h2 { "Lots the units came from" }
            @if allocations.is_empty() {
                p.empty { "No stock is allocated to this order." }
            } @else {
                table #allocations {
                    caption.visually-hidden { "Allocations" }
                    thead { tr { th scope="col" { "SKU" } th scope="col" { "Batch" } th scope="col" { "Expires" }
                        th scope="col" { "Location" } th scope="col" class="num" { "Units" } } }
                    tbody {
                        @for a in &allocations {
                            tr { td { code { (a.sku) } } td { a href={ "/admin/orders?batch=" (a.batch) } { (a.batch) } }
                                td { (a.expires_on) } td { (a.location) } td.num { (a.quantity) } }
                        }
                    }
                }
            }
        }
        (events_section(&order, &payments.events, may_read_audit))
        @if may_read_audit {
            p { a href={ "/admin/audit?target_type=order&target_id=" (order.number) } { "The order's history in the audit log" } }
        }
    };
    layout::page(
        &staff,
        admin.csrf_input(),
        &format!("Order {}", order.number),
        SECTION,
        body,
    )
}

/// What the order's page shows of its payments besides the totals.
struct Payments {
    attempts: Vec<history::PaymentAttempt>,
    refunds: Vec<history::Refund>,
    events: Vec<history::OrderEvent>,
}

/// Each refund on its own; what was refunded before refunds were recorded one by one
/// (or by an import) is one line of its own, so the lines add up to the order's total.
fn refunds_section(order: &Order, refunds: &[history::Refund]) -> Markup {
    let listed: i64 = refunds.iter().map(|r| r.amount_minor).sum();
    let unlisted = order.refunded_minor - listed;
    let money = |minor: i64| layout::money(minor, &order.currency);
    html! {
        section {
            h2 { "Refunds" }
            @if refunds.is_empty() && unlisted <= 0 {
                p.empty { "Nothing refunded." }
            } @else {
                table #refunds {
                    caption.visually-hidden { "Refunds, oldest first" }
                    thead { tr { th scope="col" { "When" } th scope="col" class="num" { "Amount" }
                        th scope="col" { "By" } th scope="col" { "Reason" } } }
                    tbody {
                        @if unlisted > 0 {
                            tr { td { "before " (short_time(&order.updated_at)) } td.num { (money(unlisted)) }
                                td { "—" } td { "refunded before refunds were recorded one by one" } }
                        }
                        @for r in refunds {
                            tr.refund { td { (short_time(&r.at)) } td.num { (money(r.amount_minor)) }
                                td { code { (r.actor) } } td { (r.reason.as_deref().unwrap_or("—")) } }
                        }
                    }
                    tfoot { tr { th scope="row" { "Refunded in all" } td.num { (money(order.refunded_minor)) } td {} td {} } }
                }
            }
        }
    }
}

/// How the page names what the payment adapter was asked.
fn operation_words(operation: &str) -> &'static str {
    match operation {
        "authorize" => "Authorisation",
        "save" => "Saving the card for subscriptions",
        "capture" => "Capture",
        "void" => "Void",
        "refund" => "Refund",
        _ => "Other",
    }
}

/// Every answer of the payment adapter about this order and the other orders of its
/// cart (a declined checkout's order is cancelled and the cart opens again).
fn attempts_section(order: &Order, attempts: &[history::PaymentAttempt]) -> Markup {
    html! {
        section {
            h2 { "Payment attempts" }
            @if attempts.is_empty() {
                p.empty { "No payment went through a payment adapter." }
            } @else {
                table #payment-attempts {
                    caption.visually-hidden { "Payment attempts, oldest first" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" class="num" { "Amount" }
                        th scope="col" { "Answer" } th scope="col" { "Processor's message" } th scope="col" { "Reference" }
                        th scope="col" { "Asked by" } } }
                    tbody {
                        @for a in attempts {
                            tr class={ "attempt " (a.outcome) } {
                                td { (short_time(&a.at)) }
                                td { (operation_words(&a.operation))
                                    @if a.order_number != order.number {
                                        br; small { "for order " a href={ "/admin/orders/" (a.order_number) } { (a.order_number) } " of the same cart" }
                                    } }
                                td.num { @if let Some(amount) = a.amount_minor { (layout::money(amount, &order.currency)) } @else { "—" } }
                                td { span class={ "badge " (a.outcome) } { (a.outcome) } }
                                td { (a.message.as_deref().unwrap_or("—")) }
                                td { @if let Some(reference) = &a.processor_reference { code { (reference) } } @else { "—" } }
                                td { code { (a.actor) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What happened to the order, oldest first; `with_audit`: the audit log's entries are
/// among them (else the page says they are left out).
fn events_section(order: &Order, events: &[history::OrderEvent], with_audit: bool) -> Markup {
    html! {
        section {
            h2 { "Events" }
            @if !with_audit {
                p.hint #order-events-audit-hidden { "Its placing and payment attempts only: status changes "
                    "and who made them are in the audit log, which your role may not read." }
            }
            table #order-events {
                caption.visually-hidden { "The order's events, oldest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Detail" }
                    th scope="col" class="num" { "Amount" } th scope="col" { "By" } } }
                tbody {
                    @for e in events {
                        tr { td { (short_time(&e.at)) } td { code { (e.action) } } td { (e.detail) }
                            td.num { @if let Some(amount) = e.amount_minor { (layout::money(amount, &order.currency)) } }
                            td { code { (e.actor) } } }
                    }
                }
            }
        }
    }
}

/// The changes the order's state allows and the staff member's role may make.
fn actions(staff: &Staff, order: &Order) -> Markup {
    let next = order.status.next();
    let base = format!("/admin/orders/{}", order.number);
    let may = |path: &str| super::may(staff.role, &axum::http::Method::GET, path);
    let refundable = matches!(
        order.status,
        OrderStatus::Paid | OrderStatus::Fulfilled | OrderStatus::Delivered
    ) && order.payment_reference.is_some()
        && order.refunded_minor < order.total_minor;
    html! {
        div.actions {
            @if next.contains(&OrderStatus::Fulfilled) && may("/admin/orders/{number}/fulfil") {
                a.button.primary href={ (base) "/fulfil" } { "Fulfil" }
            }
            @if next.contains(&OrderStatus::Delivered) && may("/admin/orders/{number}/deliver") {
                a.button href={ (base) "/deliver" } { "Mark delivered" }
            }
            @if refundable && may("/admin/orders/{number}/refund") {
                a.button href={ (base) "/refund" } { "Refund" }
            }
            @if next.contains(&OrderStatus::Cancelled) && may("/admin/orders/{number}/cancel") {
                a.button.danger href={ (base) "/cancel" } { "Cancel order" }
            }
        }
    }
}

// ---- changes -------------------------------------------------------------------------------------

/// A change's page: the order's number and total, and the form that confirms it.
fn change_page(
    staff: &Staff,
    admin: &AdminSession,
    order: &Order,
    title: &str,
    explanation: &str,
    form: Markup,
    errors: &FormErrors,
) -> Response {
    let body = html! {
        p.crumbs { a href="/admin/orders" { "Orders" } " / " a href={ "/admin/orders/" (order.number) } { (order.number) } }
        h1 { (title) }
        p { "Order " strong { (order.number) } ", " (order.status.as_str()) ", "
            (layout::money(order.total_minor, &order.currency)) "." }
        p { (explanation) }
        (form_alert(errors))
        (form)
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        title,
        SECTION,
        body,
    )
}

/// Runs a change and answers the order page with its notice, or the change's page again
/// with what was wrong.
async fn after_change(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    number: &str,
    outcome: Result<Order>,
    done: &str,
    again: impl FnOnce(&Staff, &AdminSession, &Order, &FormErrors) -> Response,
) -> Response {
    match outcome {
        Ok(order) => layout::see_other(&format!("/admin/orders/{}?done={done}", order.number)),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => match load(state, number).await {
                Ok(order) => again(staff, admin, &order, &errors),
                Err(err) => layout::error_page(&err, "order change"),
            },
            None => layout::error_page(&err, "order change"),
        },
    }
}

fn fulfil_form(
    staff: &Staff,
    admin: &AdminSession,
    order: &Order,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let fields = html! {
        form method="post" action={ "/admin/orders/" (order.number) "/fulfil" } novalidate {
            (admin.csrf_input())
            (field_with_hint("Carrier", "carrier", Kind::Text, form.get("carrier"), Some("Optional, e.g. DHL; the customer is told it with the tracking number."), errors))
            (field("Tracking number", "tracking_number", Kind::Text, form.get("tracking_number"), errors))
            button.button.primary type="submit" { "Mark shipped and capture the payment" }
        }
    };
    change_page(
        staff,
        admin,
        order,
        "Fulfil the order",
        "The payment is captured and the customer is told the tracking number.",
        fields,
        errors,
    )
}

async fn fulfil_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
) -> Response {
    match load(&state, &number).await {
        Ok(order) => fulfil_form(
            &staff,
            &admin,
            &order,
            &Form::from_pairs(Vec::new()),
            &FormErrors::default(),
        ),
        Err(err) => layout::error_page(&err, "fulfil"),
    }
}

async fn fulfil(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let carrier = Some(form.get("carrier").trim().to_owned()).filter(|c| !c.is_empty());
    let change = Transition {
        to: OrderStatus::Fulfilled,
        tracking_number: Some(form.get("tracking_number").trim().to_owned()),
        carrier,
    };
    let outcome = transition(&state, &staff, &number, change).await;
    after_change(
        &state,
        &staff,
        &admin,
        &number,
        outcome,
        "fulfilled",
        |staff, admin, order, errors| fulfil_form(staff, admin, order, &form, errors),
    )
    .await
}

async fn transition(
    state: &AppState,
    staff: &Staff,
    number: &str,
    change: Transition,
) -> Result<Order> {
    if !layout::plausible_number(number) {
        return Err(Error::not_found(format!("order {number}")));
    }
    crate::orders::transition(state, &staff.actor, number, change).await
}

/// A change without fields of its own: the page asks to confirm it.
fn confirm_form(
    staff: &Staff,
    admin: &AdminSession,
    order: &Order,
    action: &str,
    (title, explanation, button): Confirmation,
    errors: &FormErrors,
) -> Response {
    let danger = action == "cancel";
    let form = html! {
        form method="post" action={ "/admin/orders/" (order.number) "/" (action) } {
            (admin.csrf_input())
            button.button.primary.danger[danger] type="submit" { (button) }
            " "
            a href={ "/admin/orders/" (order.number) } { "Keep the order as it is" }
        }
    };
    change_page(staff, admin, order, title, explanation, form, errors)
}

/// The words of a confirmation page: title, explanation, button.
type Confirmation = (&'static str, &'static str, &'static str);

const CANCEL: Confirmation = (
    "Cancel the order?",
    "Its stock goes back to the lots it came from; a payment authorised is voided. This cannot be undone.",
    "Cancel the order",
);
const DELIVER: Confirmation = (
    "Mark the order delivered?",
    "The customer is told it arrived.",
    "Mark delivered",
);

/// The page that asks to confirm `action` (a change without fields of its own).
async fn confirmation_page(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    number: &str,
    action: &'static str,
    words: Confirmation,
) -> Response {
    match load(state, number).await {
        Ok(order) => confirm_form(staff, admin, &order, action, words, &FormErrors::default()),
        Err(err) => layout::error_page(&err, action),
    }
}

/// Makes the confirmed change of `action` to status `to`; `done` names it on the order's
/// page afterwards.
async fn confirmed_change(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    number: &str,
    to: OrderStatus,
    (action, done, words): (&'static str, &'static str, Confirmation),
) -> Response {
    let change = Transition {
        to,
        tracking_number: None,
        carrier: None,
    };
    let outcome = transition(state, staff, number, change).await;
    after_change(
        state,
        staff,
        admin,
        number,
        outcome,
        done,
        |staff, admin, order, errors| confirm_form(staff, admin, order, action, words, errors),
    )
    .await
}

async fn cancel_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
) -> Response {
    confirmation_page(&state, &staff, &admin, &number, "cancel", CANCEL).await
}

async fn cancel(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
) -> Response {
    let what = ("cancel", "cancelled", CANCEL);
    confirmed_change(
        &state,
        &staff,
        &admin,
        &number,
        OrderStatus::Cancelled,
        what,
    )
    .await
}

async fn deliver_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
) -> Response {
    confirmation_page(&state, &staff, &admin, &number, "deliver", DELIVER).await
}

async fn deliver(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
) -> Response {
    let what = ("deliver", "delivered", DELIVER);
    confirmed_change(
        &state,
        &staff,
        &admin,
        &number,
        OrderStatus::Delivered,
        what,
    )
    .await
}

fn refund_form(
    staff: &Staff,
    admin: &AdminSession,
    order: &Order,
    (amount, reason): (&str, &str),
    errors: &FormErrors,
) -> Response {
    let left = order.total_minor - order.refunded_minor;
    let form = html! {
        form method="post" action={ "/admin/orders/" (order.number) "/refund" } novalidate {
            (admin.csrf_input())
            (field_with_hint("Amount", "amount_minor", Kind::Number, amount,
                Some(&format!("At most {} is left to refund.", layout::money(left, &order.currency))), errors))
            (field_with_hint("Reason", "reason", Kind::Text, reason,
                Some("Optional: kept with the refund for staff; the customer does not see it."), errors))
            button.button.primary.danger type="submit" { "Refund" }
            " "
            a href={ "/admin/orders/" (order.number) } { "Do not refund" }
        }
    };
    change_page(
        staff,
        admin,
        order,
        "Refund the order",
        "The amount goes back to the customer's card through the payment adapter. All of it refunded, the order becomes refunded.",
        form,
        errors,
    )
}

async fn refund_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
) -> Response {
    match load(&state, &number).await {
        Ok(order) => {
            let left = layout::amount(order.total_minor - order.refunded_minor);
            refund_form(&staff, &admin, &order, (&left, ""), &FormErrors::default())
        }
        Err(err) => layout::error_page(&err, "refund"),
    }
}

async fn refund(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(number): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let amount = form.get("amount_minor").to_owned();
    let reason = form.get("reason").to_owned();
    let outcome = match layout::parse_amount(&amount) {
        Some(minor) if layout::plausible_number(&number) => {
            let input = RefundRequest {
                amount_minor: Some(minor),
                reason: Some(reason.clone()).filter(|r| !r.trim().is_empty()),
            };
            crate::orders::refund(&state, &staff.actor, &number, input).await
        }
        Some(_) => Err(Error::not_found(format!("order {number}"))),
        None => Err(Error::invalid(
            "amount_minor",
            "must be an amount such as 12.50",
        )),
    };
    after_change(
        &state,
        &staff,
        &admin,
        &number,
        outcome,
        "refunded",
        |staff, admin, order, errors| refund_form(staff, admin, order, (&amount, &reason), errors),
    )
    .await
}
