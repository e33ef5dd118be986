//! Loyalty routes: the signed-in customer's points, and staff's view and corrections.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::birthdays::BirthdayInput;
use super::{LoyaltySummary, PointsAdjustment};
use crate::app::AppState;
use crate::error::{ErrorBody, Result};
use crate::http::extract::{CustomerAuth, JsonBody, PathParam, StaffAuth};

/// Under `/api/v1/account`.
pub fn account_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_loyalty))
        .routes(routes!(set_birthday))
}

/// Under `/api/v1/admin`.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(customer_loyalty))
        .routes(routes!(adjust))
}

/// The signed-in customer's points: spendable, pending (an order's points wait out the
/// shop's pending period), what they are worth, when they expire, and the history.
#[utoipa::path(get, path = "/loyalty", tag = "account", security(("customer_token" = [])),
    responses((status = 200, body = LoyaltySummary), (status = 401, body = ErrorBody)))]
async fn my_loyalty(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Json<LoyaltySummary>> {
    Ok(Json(super::summary(&state, auth.customer_id).await?))
}

/// Sets (`MM-DD`) or forgets (`null`) the birthday for birthday rewards. A birthday is
/// celebrated once a year, when it was given at least 30 days before.
#[utoipa::path(put, path = "/loyalty/birthday", tag = "account", request_body = BirthdayInput,
    security(("customer_token" = [])),
    responses((status = 200, body = LoyaltySummary), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn set_birthday(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    JsonBody(input): JsonBody<BirthdayInput>,
) -> Result<Json<LoyaltySummary>> {
    super::birthdays::set(&state, auth.customer_id, &input).await?;
    Ok(Json(super::summary(&state, auth.customer_id).await?))
}

/// A customer's points and ledger. Permission: `customers.read`.
#[utoipa::path(get, path = "/customers/{pseudonym}/loyalty", tag = "admin-customers",
    params(("pseudonym" = String, Path, description = "The customer's pseudonym (`c_…`)")),
    security(("staff_token" = [])),
    responses((status = 200, body = LoyaltySummary), (status = 404, body = ErrorBody)))]
async fn customer_loyalty(
    State(state): State<AppState>,
    PathParam(pseudonym): PathParam<String>,
) -> Result<Json<LoyaltySummary>> {
    let customer_id = super::customer_id_of(&state, &pseudonym).await?;
    Ok(Json(super::summary(&state, customer_id).await?))
}

/// Adds or takes points with a reason the customer reads (audited as
/// `loyalty.adjusted`). Taking more than the spendable balance is a 409. Permission:
/// `customers.write`.
#[utoipa::path(post, path = "/customers/{pseudonym}/loyalty/adjustments", tag = "admin-customers",
    params(("pseudonym" = String, Path, description = "The customer's pseudonym (`c_…`)")),
    request_body = PointsAdjustment, security(("staff_token" = [])),
    responses((status = 201, body = LoyaltySummary), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn adjust(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(pseudonym): PathParam<String>,
    JsonBody(input): JsonBody<PointsAdjustment>,
) -> Result<(StatusCode, Json<LoyaltySummary>)> {
    Ok((
        StatusCode::CREATED,
        Json(super::adjust(&state, &staff.actor, &pseudonym, input).await?),
    ))
}
