//! Lot recalls: the recalls, recalling a batch (with a confirmation that lists the lots
//! it takes out of sale), and a recall's report of the orders that received units of it,
//! as a page and as CSV, through `inventory::recall` as the admin API's routes do.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use maud::{Markup, html};

use super::layout::{self, Form, FormErrors, Kind, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::inventory::recall::{self, NewRecall, Recall};
use crate::staff::Staff;

const SECTION: &str = "/admin/recalls";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/recalls", get(list_page))
        .route("/admin/recalls/new", get(new_page).post(recall_batch))
        .route("/admin/recalls/{id}", get(report_page))
        .route("/admin/recalls/{id}/report.csv", get(report_csv))
}

async fn list_page(State(state): State<AppState>, SignedIn(staff, admin): SignedIn) -> Response {
    let recalls = match state.db.pool.acquire().await {
        Ok(mut conn) => recall::list(&mut conn).await,
        Err(err) => Err(err.into()),
    };
    let recalls = match recalls {
        Ok(recalls) => recalls,
        Err(err) => return layout::error_page(&err, "recalls"),
    };
    let may_recall = super::may(staff.role, &Method::GET, "/admin/recalls/new");
    let may_read = super::may(staff.role, &Method::GET, "/admin/recalls/{id}");
    let body = html! {
        h1 { "Recalls" }
        @if may_recall { p { a.button.danger href="/admin/recalls/new" { "Recall a batch" } } }
        @if recalls.is_empty() { p.empty { "No batch has been recalled." } }
        @else {
            table {
                caption.visually-hidden { "Recalls, newest first" }
                thead { tr { th scope="col" { "Recalled" } th scope="col" { "Batch" } th scope="col" { "SKU" }
                    th scope="col" { "Reason" } th scope="col" class="num" { "Lots" } th scope="col" { "By" } } }
                tbody {
                    @for r in &recalls {
                        tr {
                            td { (r.created_at) }
                            td { @if may_read { a href={ "/admin/recalls/" (r.id) } { (r.batch) } } @else { (r.batch) } }
                            td { @if let Some(sku) = &r.sku { code { (sku) } } @else { "every product" } }
                            td { (r.reason) }
                            td.num { (r.lots) }
                            td { (r.recalled_by) }
                        }
                    }
                }
            }
        }
    };
    layout::page(&staff, admin.csrf_input(), "Recalls", SECTION, body)
}

async fn new_page(SignedIn(staff, admin): SignedIn) -> Response {
    recall_form(
        &staff,
        &admin,
        &Form::from_pairs(Vec::new()),
        &FormErrors::default(),
    )
}

fn recall_form(staff: &Staff, admin: &AdminSession, form: &Form, errors: &FormErrors) -> Response {
    let body = html! {
        h1 { "Recall a batch" }
        p { "Every lot with this batch number stops selling at once: the shop, checkout and "
            "subscription renewals leave it out. The customers whose orders received units of it "
            "are told by their notification channels." }
        (form_alert(errors))
        form method="post" action="/admin/recalls/new" {
            (admin.csrf_input())
            (field("Batch number", "batch", Kind::Text, form.get("batch"), errors))
            (field_with_hint("SKU", "sku", Kind::Text, form.get("sku"),
                Some("Only when another product uses the same batch number; empty: every product."), errors))
            (field("Reason", "reason", Kind::Area(3), form.get("reason"), errors))
            button.button type="submit" { "Check the lots" }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Recall a batch",
        SECTION,
        body,
    )
}

/// The form's first post shows the lots the recall would take out of sale and asks to
/// confirm; the confirmed post recalls.
async fn recall_batch(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let input = NewRecall {
        batch: form.get("batch").to_owned(),
        sku: Some(form.get("sku").to_owned()),
        reason: form.get("reason").to_owned(),
    };
    if !form.confirmed() {
        return confirmation(&state, &staff, &admin, &form, &input).await;
    }
    match recall::recall(&state, &input, &staff.actor).await {
        Ok(done) if super::may(staff.role, &Method::GET, "/admin/recalls/{id}") => {
            layout::see_other(&format!("/admin/recalls/{}", done.id))
        }
        Ok(_) => layout::see_other(SECTION),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => recall_form(&staff, &admin, &form, &errors),
            None => layout::error_page(&err, "recall"),
        },
    }
}

async fn confirmation(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    form: &Form,
    input: &NewRecall,
) -> Response {
    let mut errors = FormErrors::default();
    if input.batch.trim().is_empty() {
        errors.add("batch", "enter the batch number printed on the packs");
    }
    if input.reason.trim().is_empty() {
        errors.add("reason", "say why, for the customers and the audit log");
    }
    if !errors.is_empty() {
        return recall_form(staff, admin, form, &errors);
    }
    let lots = match state.db.pool.acquire().await {
        Ok(mut conn) => recall::lots_to_recall(&mut conn, &input.batch, input.sku.as_deref()).await,
        Err(err) => Err(err.into()),
    };
    let lots = match lots {
        Ok(lots) => lots,
        Err(err) => return layout::error_page(&err, "recall"),
    };
    if lots.is_empty() {
        errors.add("batch", "no lot of this batch is on sale");
        return recall_form(staff, admin, form, &errors);
    }
    let units: i64 = lots.iter().map(|l| l.quantity).sum();
    let body = html! {
        h1 { "Recall batch " (input.batch.trim()) "?" }
        p { "These " (lots.len()) " lots (" (units) " units in stock) stop selling at once. "
            "This cannot be undone here." }
        (lots_table(&lots))
        form method="post" action="/admin/recalls/new" {
            (admin.csrf_input())
            input type="hidden" name="batch" value=(form.get("batch"));
            input type="hidden" name="sku" value=(form.get("sku"));
            input type="hidden" name="reason" value=(form.get("reason"));
            input type="hidden" name="confirm" value="yes";
            p { "Reason: " (form.get("reason")) }
            button.button.danger type="submit" { "Recall batch " (input.batch.trim()) }
            " " a href="/admin/recalls/new" { "Cancel" }
        }
    };
    layout::page(
        staff,
        admin.csrf_input(),
        "Confirm the recall",
        SECTION,
        body,
    )
}

fn lots_table(lots: &[recall::RecalledLot]) -> Markup {
    html! {
        table {
            caption.visually-hidden { "Lots" }
            thead { tr { th scope="col" { "SKU" } th scope="col" { "Location" } th scope="col" { "Expires" }
                th scope="col" class="num" { "Units in stock" } } }
            tbody {
                @for lot in lots {
                    tr { td { code { (lot.sku) } } td { (lot.location) } td { (lot.expires_on) } td.num { (lot.quantity) } }
                }
            }
        }
    }
}

async fn load(state: &AppState, id: i64) -> crate::error::Result<Recall> {
    let mut conn = state.db.pool.acquire().await?;
    recall::report(state, &mut conn, id).await
}

async fn report_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(id): Path<i64>,
) -> Response {
    let report = match load(&state, id).await {
        Ok(report) => report,
        Err(err) => return layout::error_page(&err, "recall report"),
    };
    let body = html! {
        h1 { "Recall of batch " (report.batch) }
        p { (report.reason) }
        p.meta { "Recalled " (report.created_at) " by " (report.recalled_by)
            @if let Some(sku) = &report.sku { " · SKU " code { (sku) } } }
        h2 { "Lots out of sale" }
        (lots_table(&report.lots))
        h2 { "Orders that received units (" (report.units_sold) " units)" }
        @if report.orders.is_empty() { p.empty { "No order received units of this batch." } }
        @else {
            p { a.button href={ "/admin/recalls/" (report.id) "/report.csv" } download { "Download as CSV" } }
            table {
                caption.visually-hidden { "Orders" }
                thead { tr { th scope="col" { "Order" } th scope="col" { "Status" } th scope="col" { "Ordered" }
                    th scope="col" { "Email" } th scope="col" { "SKU" } th scope="col" class="num" { "Units" } } }
                tbody {
                    @for order in &report.orders {
                        tr {
                            td { a href={ "/admin/orders/" (order.order_number) } { (order.order_number) } }
                            td { (order.status) } td { (order.ordered_at) } td { (order.email) }
                            td { code { (order.sku) } } td.num { (order.units) }
                        }
                    }
                }
            }
        }
    };
    layout::page(&staff, admin.csrf_input(), "Recall report", SECTION, body)
}

async fn report_csv(
    State(state): State<AppState>,
    SignedIn(_, _): SignedIn,
    Path(id): Path<i64>,
) -> Response {
    let csv = match load(&state, id)
        .await
        .and_then(|report| recall::report_csv(&report))
    {
        Ok(csv) => csv,
        Err(err) => return layout::error_page(&err, "recall report"),
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"recall-{id}.csv\""),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        csv,
    )
        .into_response()
}
