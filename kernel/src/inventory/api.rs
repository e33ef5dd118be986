//! Admin JSON routes of inventory: locations, lots, adjustments, the ledger, settings.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::recall::{self, NewRecall, Recall, RecallSummary};
use super::settings::{self, SettingsPatch, StoreSettings};
use super::*;
use crate::app::AppState;
use crate::error::{ErrorBody, Problems};
use crate::http::extract::{JsonBody, PathParam, QueryParams, StaffAuth};

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_locations_route, create_location_route))
        .routes(routes!(list_lots_route, receive_lot_route))
        .routes(routes!(adjust_lot))
        .routes(routes!(list_ledger_route))
        .routes(routes!(get_settings, update_settings))
        .routes(routes!(list_recalls, recall_batch))
        .routes(routes!(get_recall))
        .routes(routes!(get_recall_csv))
}

#[utoipa::path(get, path = "/locations", tag = "admin-inventory", security(("staff_token" = [])),
    responses((status = 200, body = Vec<Location>)))]
async fn list_locations_route(State(state): State<AppState>) -> Result<Json<Vec<Location>>> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(list_locations(&mut conn).await?))
}

#[utoipa::path(post, path = "/locations", tag = "admin-inventory", request_body = NewLocation,
    security(("staff_token" = [])),
    responses((status = 201, body = Location), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_location_route(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(input): JsonBody<NewLocation>,
) -> Result<(StatusCode, Json<Location>)> {
    let mut tx = state.db.begin().await?;
    let location = create_location(&mut tx, &input, &staff.actor).await?;
    tx.commit().await?;
    state.bus.notify();
    Ok((StatusCode::CREATED, Json(location)))
}

/// Lot `id` as the API shows it (with whether it is sellable today).
pub async fn lot_by_id(state: &AppState, id: i64) -> Result<Lot> {
    let mut conn = state.db.pool.acquire().await?;
    let settings = settings::load(&mut conn).await?;
    let filter = StockFilter {
        lot_id: Some(id),
        ..Default::default()
    };
    list_lots(&mut conn, &filter, &settings)
        .await?
        .pop()
        .ok_or_else(|| Error::not_found(format!("lot {id}")))
}

/// Lots, by SKU or variant; each says whether it counts as sellable today.
#[utoipa::path(get, path = "/lots", tag = "admin-inventory", params(StockFilter),
    security(("staff_token" = [])), responses((status = 200, body = Vec<Lot>)))]
async fn list_lots_route(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<StockFilter>,
) -> Result<Json<Vec<Lot>>> {
    let mut conn = state.db.pool.acquire().await?;
    let settings = settings::load(&mut conn).await?;
    Ok(Json(list_lots(&mut conn, &filter, &settings).await?))
}

/// Receives stock: a new lot with batch, manufacture and expiry dates.
#[utoipa::path(post, path = "/lots", tag = "admin-inventory", request_body = NewLot,
    security(("staff_token" = [])),
    responses((status = 201, body = Lot), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn receive_lot_route(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(input): JsonBody<NewLot>,
) -> Result<(StatusCode, Json<Lot>)> {
    let mut tx = state.db.begin().await?;
    let id = receive_lot(&mut tx, &input, &staff.actor).await?;
    tx.commit().await?;
    state.bus.notify();
    Ok((StatusCode::CREATED, Json(lot_by_id(&state, id).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    /// Units to add (positive) or remove (negative); never zero.
    #[schema(value_type = crate::http::schema::StockDelta)]
    pub delta: i64,
    /// Receipts, allocations and releases are booked by their own operations.
    #[schema(value_type = AdjustmentReason)]
    pub reason: StockReason,
    /// Up to 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

/// The reasons an adjustment may give: every stock reason but those booked by their own
/// operations (`received`, `allocated`, `released`).
// Only documents `Adjustment.reason`, which the handler checks.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentReason {
    CountCorrection,
    Damaged,
    ExpiredWriteOff,
    Returned,
    Other,
}

/// Corrects a lot's quantity, with a reason the ledger keeps.
#[utoipa::path(post, path = "/lots/{id}/adjustments", tag = "admin-inventory", request_body = Adjustment,
    params(("id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 200, body = Lot), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn adjust_lot(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
    JsonBody(input): JsonBody<Adjustment>,
) -> Result<Json<Lot>> {
    Ok(Json(adjust(&state, &staff.actor, id, &input).await?))
}

/// Corrects lot `id`'s quantity by `input` (the API's and the admin page's): checked,
/// booked in the ledger with its reason, audited.
pub async fn adjust(state: &AppState, actor: &str, id: i64, input: &Adjustment) -> Result<Lot> {
    let mut problems = Problems::new();
    problems.check(
        input.delta != 0 && input.delta.abs() <= 10_000_000,
        "delta",
        "must be a non-zero number of units, at most 10,000,000",
    );
    problems.check(
        !matches!(
            input.reason,
            StockReason::Allocated | StockReason::Released | StockReason::Received
        ),
        "reason",
        "allocation, release and receipt are booked by their own operations",
    );
    if let Some(note) = &input.note {
        problems.check(
            note.chars().count() <= 1000,
            "note",
            "must be at most 1000 characters",
        );
    }
    problems.into_result()?;
    let mut tx = state.db.begin().await?;
    change_lot_quantity(
        &mut tx,
        id,
        input.delta,
        &StockChange {
            reason: input.reason,
            actor,
            note: input.note.as_deref(),
            reference: None,
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    lot_by_id(state, id).await
}

/// The stock ledger, newest first.
#[utoipa::path(get, path = "/stock-ledger", tag = "admin-inventory", params(StockFilter),
    security(("staff_token" = [])), responses((status = 200, body = Vec<LedgerEntry>)))]
async fn list_ledger_route(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<StockFilter>,
) -> Result<Json<Vec<LedgerEntry>>> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(list_ledger(&mut conn, &filter).await?))
}

#[utoipa::path(get, path = "/settings", tag = "admin-inventory", security(("staff_token" = [])),
    responses((status = 200, body = StoreSettings)))]
async fn get_settings(State(state): State<AppState>) -> Result<Json<StoreSettings>> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(settings::load(&mut conn).await?))
}

/// Changes store settings such as the minimum remaining shelf life. Changing
/// `staff_two_factor` (who must sign in with a second factor) needs staff.manage too.
#[utoipa::path(patch, path = "/settings", tag = "admin-inventory", request_body = SettingsPatch,
    security(("staff_token" = [])),
    responses((status = 200, body = StoreSettings), (status = 422, body = ErrorBody)))]
async fn update_settings(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(patch): JsonBody<SettingsPatch>,
) -> Result<Json<StoreSettings>> {
    Ok(Json(change_settings(&state, &staff, &patch).await?))
}

/// Changes store settings for `staff` (the API's and the admin page's): checked, stored,
/// audited, and every node's settings cache told.
pub async fn change_settings(
    state: &AppState,
    staff: &crate::staff::Staff,
    patch: &SettingsPatch,
) -> Result<StoreSettings> {
    // Who must sign in with a second factor is the owner's to say, not every admin's.
    let staff_manage = crate::staff::Permission::StaffManage;
    if patch.staff_two_factor.is_some() && !staff.role.allows(staff_manage) {
        return Err(crate::error::Error::Forbidden(format!(
            "staff_two_factor: the {} role lacks the {} permission changing it needs",
            staff.role.name(),
            staff_manage.name()
        )));
    }
    let mut tx = state.db.begin().await?;
    let settings = settings::update(&mut tx, patch, &staff.actor).await?;
    tx.commit().await?;
    state.cache.settings.invalidate_all();
    state.bus.notify();
    Ok(settings)
}

/// Recalls a batch: its lots stop selling at once.
///
/// Every lot with the batch number (of `sku` only, when given) is taken out of sale in one
/// transaction: availability, checkout and renewals leave it out from then on, and the
/// answer is the recall's report (its lots and every order that received units of them).
/// Audited (`stock.recalled`). 422 naming `batch` or `sku` when no lot matches; 409 when
/// every matching lot is recalled already.
#[utoipa::path(post, path = "/recalls", tag = "admin-inventory", request_body = NewRecall,
    security(("staff_token" = [])),
    responses((status = 201, body = Recall), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn recall_batch(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(input): JsonBody<NewRecall>,
) -> Result<(StatusCode, Json<Recall>)> {
    let recall = recall::recall(&state, &input, &staff.actor).await?;
    Ok((StatusCode::CREATED, Json(recall)))
}

/// The recalls, newest first (needs `customers.read`: reports name customers).
#[utoipa::path(get, path = "/recalls", tag = "admin-inventory", security(("staff_token" = [])),
    responses((status = 200, body = Vec<RecallSummary>)))]
async fn list_recalls(State(state): State<AppState>) -> Result<Json<Vec<RecallSummary>>> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(recall::list(&mut conn).await?))
}

/// A recall's report: its lots and every order that received units of them, with the
/// customer's email (needs `customers.read`).
#[utoipa::path(get, path = "/recalls/{id}", tag = "admin-inventory", params(("id" = i64, Path)),
    security(("staff_token" = [])),
    responses((status = 200, body = Recall), (status = 404, body = ErrorBody)))]
async fn get_recall(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Recall>> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(recall::report(&state, &mut conn, id).await?))
}

/// The report as CSV: one line per order and SKU (`order_number, status, ordered_at,
/// customer_id, email, sku, batch, units`).
#[utoipa::path(get, path = "/recalls/{id}/report.csv", tag = "admin-inventory", params(("id" = i64, Path)),
    security(("staff_token" = [])),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = ErrorBody)))]
async fn get_recall_csv(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let mut conn = state.db.pool.acquire().await?;
    let report = recall::report(&state, &mut conn, id).await?;
    let disposition = format!("attachment; filename=\"recall-{id}.csv\"");
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
            (
                axum::http::header::CACHE_CONTROL,
                "private, no-store".to_owned(),
            ),
        ],
        recall::report_csv(&report)?,
    )
        .into_response())
}
