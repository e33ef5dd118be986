//! Subscription routes: the signed-in customer's own, and staff's (who act for the
//! customer with the same transitions).

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Action, StaffFilter, Subscription};
use crate::app::AppState;
use crate::error::{ErrorBody, Result};
use crate::http::extract::{CustomerAuth, JsonBody, PathParam, QueryParams, StaffAuth};

/// Under `/api/v1/account`.
pub fn account_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_subscriptions))
        .routes(routes!(my_subscription))
        .routes(routes!(my_action))
}

/// Under `/api/v1/admin`.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list))
        .routes(routes!(admin_get))
        .routes(routes!(admin_action))
}

/// The signed-in customer's subscriptions, newest first.
#[utoipa::path(get, path = "/subscriptions", tag = "account", security(("customer_token" = [])),
    responses((status = 200, body = Vec<Subscription>), (status = 401, body = ErrorBody)))]
async fn my_subscriptions(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Json<Vec<Subscription>>> {
    Ok(Json(
        super::list_for_customer(&state, auth.customer_id).await?,
    ))
}

/// One of the customer's subscriptions: what the next renewal costs, and every renewal
/// with its order.
#[utoipa::path(get, path = "/subscriptions/{number}", tag = "account",
    params(("number" = String, Path)), security(("customer_token" = [])),
    responses((status = 200, body = Subscription), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn my_subscription(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    PathParam(number): PathParam<String>,
) -> Result<Json<Subscription>> {
    Ok(Json(
        super::get(&state, &number, Some(auth.customer_id)).await?,
    ))
}

/// Changes a subscription: pause (until a date or until resumed), resume, skip the next
/// delivery and unskip, renew now, change the date, interval, items (swap a size or
/// flavour) or address, replace the card, cancel with a reason. An action its state does
/// not allow (skipping a cancelled subscription) is a 409.
#[utoipa::path(post, path = "/subscriptions/{number}/actions", tag = "account",
    params(("number" = String, Path)), request_body = Action, security(("customer_token" = [])),
    responses((status = 200, body = Subscription), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn my_action(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    PathParam(number): PathParam<String>,
    JsonBody(action): JsonBody<Action>,
) -> Result<Json<Subscription>> {
    Ok(Json(
        super::act(
            &state,
            &auth.pseudonym,
            &number,
            Some(auth.customer_id),
            action,
        )
        .await?,
    ))
}

/// Subscriptions by next renewal, filtered by state, failing (a declined renewal waiting
/// for its retry) and due date.
#[utoipa::path(get, path = "/subscriptions", tag = "admin-subscriptions", params(StaffFilter),
    security(("staff_token" = [])),
    responses((status = 200, body = Vec<Subscription>), (status = 422, body = ErrorBody)))]
async fn admin_list(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<StaffFilter>,
) -> Result<Json<Vec<Subscription>>> {
    Ok(Json(super::list_for_staff(&state, &filter).await?))
}

/// One subscription with every renewal attempt and its outcome (dunning included).
#[utoipa::path(get, path = "/subscriptions/{number}", tag = "admin-subscriptions",
    params(("number" = String, Path)), security(("staff_token" = [])),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody)))]
async fn admin_get(
    State(state): State<AppState>,
    PathParam(number): PathParam<String>,
) -> Result<Json<Subscription>> {
    Ok(Json(super::get(&state, &number, None).await?))
}

/// Acts for the customer: the customer's actions, audited under the staff member.
#[utoipa::path(post, path = "/subscriptions/{number}/actions", tag = "admin-subscriptions",
    params(("number" = String, Path)), request_body = Action, security(("staff_token" = [])),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn admin_action(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(number): PathParam<String>,
    JsonBody(action): JsonBody<Action>,
) -> Result<Json<Subscription>> {
    Ok(Json(
        super::act(&state, &staff.actor, &number, None, action).await?,
    ))
}
