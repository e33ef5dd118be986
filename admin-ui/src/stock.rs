//! Stock: a lot's page (its dates, units, whether it sells today, its ledger) with an
//! adjustment form (units with a reason the ledger keeps), and the locations with a form
//! to add one. Through `inventory::api::{adjust, lot_by_id}`, `inventory::lot_ledger_page`,
//! `inventory::{list_locations, create_location}`, as the admin API's routes are.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::html;

use super::layout::{self, Form, FormErrors, Kind, PagePath, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::inventory::api::Adjustment;
use crate::inventory::{NewLocation, StockReason};
use crate::staff::Staff;

const LOCATIONS: &str = "/admin/locations";
/// Ledger entries a page of a lot's page.
const LEDGER_PER_PAGE: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/lots/{id}", get(lot_page))
        .route("/admin/lots/{id}/adjustments", post(adjust))
        .route(LOCATIONS, get(locations_page).post(add_location))
}

/// The reasons an adjustment may give, as the API's `AdjustmentReason`.
const REASONS: &[(&str, &str)] = &[
    ("count_correction", "Count correction"),
    ("damaged", "Damaged"),
    ("expired_write_off", "Expired: written off"),
    ("returned", "Returned by a customer"),
    ("other", "Other (say why in the note)"),
];

async fn lot_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
    RawQuery(query): RawQuery,
) -> Response {
    let adjusted = layout::query_value(query.as_deref(), "done").is_some();
    let page = layout::page_number(query.as_deref());
    let form = Form::from_pairs(vec![("reason".to_owned(), "count_correction".to_owned())]);
    show_lot(
        &state,
        &staff,
        &admin,
        (id, page),
        adjusted,
        &form,
        &FormErrors::default(),
    )
    .await
}

async fn show_lot(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    (id, page): (i64, i64),
    adjusted: bool,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let loaded = async {
        let lot = crate::inventory::api::lot_by_id(state, id).await?;
        let mut conn = state.db.pool.acquire().await?;
        let offset = (page - 1) * LEDGER_PER_PAGE;
        let ledger =
            crate::inventory::lot_ledger_page(&mut conn, id, offset, LEDGER_PER_PAGE).await?;
        Ok::<_, Error>((lot, ledger))
    };
    let (lot, (ledger, entries)) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "lot"),
    };
    let may_adjust = super::may(staff.role, &Method::POST, "/admin/lots/{id}/adjustments");
    let body = html! {
        p.crumbs { a href="/admin/lots" { "Lots" } }
        div.title-row {
            h1 { "Lot " (lot.batch) " · " code { (lot.sku) } }
            @if lot.sellable { span.badge.active { "sells" } } @else { span.badge.archived { "does not sell" } }
        }
        @if adjusted { p.form-notice role="status" { "Adjusted: the ledger keeps the reason." } }
        dl {
            dt { "Location" } dd { (lot.location) }
            dt { "Manufactured" } dd { (lot.manufactured_on) }
            dt { "Expires" } dd { (lot.expires_on) }
            dt { "Units" } dd #lot-quantity { (lot.quantity) }
        }
        @if may_adjust {
            h2 { "Adjust the units" }
            (form_alert(errors))
            form method="post" action={ "/admin/lots/" (lot.id) "/adjustments" } novalidate {
                (admin.csrf_input())
                (field_with_hint("Units", "delta", Kind::Number, form.get("delta"),
                    Some("Add with a number, take away with a minus: -3."), errors))
                (field("Reason", "reason", Kind::Select(REASONS), form.get("reason"), errors))
                (field("Note", "note", Kind::Text, form.get("note"), errors))
                button.button.primary type="submit" { "Adjust" }
            }
        }
        h2 { "Ledger" }
        @if ledger.is_empty() { p.empty { "No movement." } }
        @else {
            table {
                caption.visually-hidden { "The lot's ledger, newest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Reason" } th scope="col" class="num" { "Units" }
                    th scope="col" class="num" { "After" } th scope="col" { "By" } th scope="col" { "Note" } } }
                tbody {
                    @for e in &ledger {
                        tr {
                            td { (e.created_at) } td { (e.reason) } td.num { (e.delta) } td.num { (e.quantity_after) }
                            td { code { (e.actor) } }
                            td { (e.note.as_deref().unwrap_or("")) @if let Some(r) = &e.reference { " " small { (r) } } }
                        }
                    }
                }
            }
        }
        (layout::pager(&format!("/admin/lots/{id}"), &[], page, LEDGER_PER_PAGE, entries))
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Lot",
        "/admin/products",
        body,
    )
}

/// The adjustment a form posts, or the field that cannot be read.
fn adjustment_of(form: &Form) -> Result<Adjustment> {
    let delta =
        form.get("delta").trim().parse::<i64>().map_err(|_| {
            Error::invalid("delta", "must be a whole number of units, e.g. 5 or -3")
        })?;
    let reason: StockReason =
        serde_json::from_value(serde_json::Value::String(form.get("reason").to_owned()))
            .map_err(|_| Error::invalid("reason", "choose a reason from the list"))?;
    let note = Some(form.get("note").trim().to_owned()).filter(|n| !n.is_empty());
    Ok(Adjustment {
        delta,
        reason,
        note,
    })
}

async fn adjust(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let outcome = match adjustment_of(&form) {
        Ok(input) => crate::inventory::api::adjust(&state, &staff.actor, id, &input)
            .await
            .map(|_| ()),
        Err(err) => Err(err),
    };
    match outcome {
        Ok(()) => layout::see_other(&format!("/admin/lots/{id}?done=adjusted")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => show_lot(&state, &staff, &admin, (id, 1), false, &form, &errors).await,
            None => layout::error_page(&err, "adjustment"),
        },
    }
}

// ---- locations -------------------------------------------------------------------------------

async fn locations_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
) -> Response {
    show_locations(
        &state,
        &staff,
        &admin,
        &Form::from_pairs(Vec::new()),
        &FormErrors::default(),
    )
    .await
}

/// The stock locations (this page's list, and the receiving form's choices).
pub(super) async fn locations(state: &AppState) -> Result<Vec<crate::inventory::Location>> {
    let mut conn = state.db.pool.acquire().await?;
    crate::inventory::list_locations(&mut conn).await
}

async fn show_locations(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let locations = match locations(state).await {
        Ok(locations) => locations,
        Err(err) => return layout::error_page(&err, "locations"),
    };
    let may_add = super::may(staff.role, &Method::POST, LOCATIONS);
    let body = html! {
        h1 { "Stock locations" }
        table {
            caption.visually-hidden { "Locations" }
            thead { tr { th scope="col" { "Code" } th scope="col" { "Name" } } }
            tbody { @for l in &locations { tr { td { code { (l.code) } } td { (l.name) } } } }
        }
        @if may_add {
            h2 { "Add a location" }
            (form_alert(errors))
            form method="post" action=(LOCATIONS) novalidate {
                (admin.csrf_input())
                (field_with_hint("Code", "code", Kind::Text, form.get("code"), Some("Short and unique, e.g. AMS-2."), errors))
                (field("Name", "name", Kind::Text, form.get("name"), errors))
                button.button.primary type="submit" { "Add" }
            }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Stock locations",
        "/admin/products",
        body,
    )
}

async fn add_location(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let input = NewLocation {
        code: form.get("code").trim().to_owned(),
        name: form.get("name").to_owned(),
    };
    let outcome = async {
        let mut tx = state.db.begin().await?;
        crate::inventory::create_location(&mut tx, &input, &staff.actor).await?;
        tx.commit().await?;
        state.bus.notify();
        Ok::<_, Error>(())
    };
    match outcome.await {
        Ok(()) => layout::see_other(LOCATIONS),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => show_locations(&state, &staff, &admin, &form, &errors).await,
            None => layout::error_page(&err, "location"),
        },
    }
}
