//! Cart routes under `/api/v1/carts`. A guest sends no token and reaches a cart by its
//! id; a signed-in customer sends their access token and reaches only their own cart.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Cart, LineChange, NewLine};
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Result};
use crate::http::extract::{JsonBody, MaybeCustomer, PathParam};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_cart))
        .routes(routes!(get_cart))
        .routes(routes!(add_line))
        .routes(routes!(change_line, remove_line))
        .routes(routes!(merge_cart))
}

/// A cart: a signed-in customer gets their open cart (made if they have none), a guest a
/// new one whose id is theirs to keep.
#[utoipa::path(post, path = "", tag = "cart", security((), ("customer_token" = [])),
    responses((status = 201, body = Cart), (status = 401, body = ErrorBody)))]
async fn create_cart(
    State(state): State<AppState>,
    MaybeCustomer(customer): MaybeCustomer,
) -> Result<(StatusCode, Json<Cart>)> {
    let cart = super::create(&state, customer.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(cart)))
}

/// The cart, priced through the active pricing rules and checked against stock.
#[utoipa::path(get, path = "/{id}", tag = "cart", params(("id" = String, Path)),
    security((), ("customer_token" = [])),
    responses((status = 200, body = Cart), (status = 404, body = ErrorBody)))]
async fn get_cart(
    State(state): State<AppState>,
    MaybeCustomer(customer): MaybeCustomer,
    PathParam(id): PathParam<String>,
) -> Result<Json<Cart>> {
    Ok(Json(super::get(&state, &id, customer.as_ref()).await?))
}

/// Adds units of a SKU (to its line, if the cart has one). More than can be sold now is
/// a 409 naming `quantity`.
#[utoipa::path(post, path = "/{id}/lines", tag = "cart", params(("id" = String, Path)),
    request_body = NewLine, security((), ("customer_token" = [])),
    responses((status = 200, body = Cart), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_line(
    State(state): State<AppState>,
    MaybeCustomer(customer): MaybeCustomer,
    PathParam(id): PathParam<String>,
    JsonBody(input): JsonBody<NewLine>,
) -> Result<Json<Cart>> {
    Ok(Json(
        super::add_line(&state, &id, customer.as_ref(), input).await?,
    ))
}

/// Sets a line's quantity.
#[utoipa::path(patch, path = "/{id}/lines/{line_id}", tag = "cart",
    params(("id" = String, Path), ("line_id" = i64, Path)), request_body = LineChange,
    security((), ("customer_token" = [])),
    responses((status = 200, body = Cart), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn change_line(
    State(state): State<AppState>,
    MaybeCustomer(customer): MaybeCustomer,
    PathParam((id, line_id)): PathParam<(String, i64)>,
    JsonBody(change): JsonBody<LineChange>,
) -> Result<Json<Cart>> {
    Ok(Json(
        super::change_line(&state, &id, customer.as_ref(), line_id, change).await?,
    ))
}

/// Removes a line.
#[utoipa::path(delete, path = "/{id}/lines/{line_id}", tag = "cart",
    params(("id" = String, Path), ("line_id" = i64, Path)),
    security((), ("customer_token" = [])),
    responses((status = 200, body = Cart), (status = 404, body = ErrorBody)))]
async fn remove_line(
    State(state): State<AppState>,
    MaybeCustomer(customer): MaybeCustomer,
    PathParam((id, line_id)): PathParam<(String, i64)>,
) -> Result<Json<Cart>> {
    Ok(Json(
        super::remove_line(&state, &id, customer.as_ref(), line_id).await?,
    ))
}

/// Merges a guest cart into the signed-in customer's cart (after signing in) and
/// answers the customer's cart; the guest cart is closed.
#[utoipa::path(post, path = "/{id}/merge", tag = "cart", params(("id" = String, Path)),
    security(("customer_token" = [])),
    responses((status = 200, body = Cart), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn merge_cart(
    State(state): State<AppState>,
    MaybeCustomer(customer): MaybeCustomer,
    PathParam(id): PathParam<String>,
) -> Result<Json<Cart>> {
    let customer = customer.ok_or(Error::Unauthorized)?;
    Ok(Json(super::merge(&state, &id, &customer).await?))
}
