//! Review routes: shoppers read a product's published reviews, customers write theirs
//! and read their own, staff moderate.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Moderation, NewReview, PublishedReview, Review, StaffFilter};
use crate::app::AppState;
use crate::error::{ErrorBody, Result};
use crate::http::extract::{CustomerAuth, JsonBody, PathParam, QueryParams, StaffAuth};

/// Under `/api/v1`.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(product_reviews, write_review))
}

/// Under `/api/v1/account`.
pub fn account_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(my_reviews))
}

/// Under `/api/v1/admin`.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reviews))
        .routes(routes!(moderate))
}

/// A product's published reviews, newest first (the product JSON carries the average,
/// the count and the newest ten).
#[utoipa::path(get, path = "/products/{slug}/reviews", tag = "catalog",
    params(("slug" = String, Path)),
    responses((status = 200, body = Vec<PublishedReview>), (status = 404, body = ErrorBody)))]
async fn product_reviews(
    State(state): State<AppState>,
    PathParam(slug): PathParam<String>,
) -> Result<Json<Vec<PublishedReview>>> {
    Ok(Json(super::published(&state, &slug).await?))
}

/// Reviews a product the signed-in customer bought (a paid order of it): once per
/// product. The review waits for moderation. A customer who did not buy it, or
/// reviewed it already, gets a 409.
#[utoipa::path(post, path = "/products/{slug}/reviews", tag = "account",
    params(("slug" = String, Path)), request_body = NewReview, security(("customer_token" = [])),
    responses((status = 201, body = Review), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn write_review(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    PathParam(slug): PathParam<String>,
    JsonBody(input): JsonBody<NewReview>,
) -> Result<(StatusCode, Json<Review>)> {
    Ok((
        StatusCode::CREATED,
        Json(super::submit(&state, auth.customer_id, &slug, input).await?),
    ))
}

/// The signed-in customer's reviews with their moderation state, newest first.
#[utoipa::path(get, path = "/reviews", tag = "account", security(("customer_token" = [])),
    responses((status = 200, body = Vec<Review>), (status = 401, body = ErrorBody)))]
async fn my_reviews(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Json<Vec<Review>>> {
    Ok(Json(
        super::list_for_customer(&state, auth.customer_id).await?,
    ))
}

/// Reviews in one state, oldest first: the moderation queue (`pending`) by default.
/// Permission: `catalog.read`.
#[utoipa::path(get, path = "/reviews", tag = "admin-catalog", params(StaffFilter),
    security(("staff_token" = [])),
    responses((status = 200, body = Vec<Review>), (status = 422, body = ErrorBody)))]
async fn list_reviews(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<StaffFilter>,
) -> Result<Json<Vec<Review>>> {
    Ok(Json(super::list_for_staff(&state, &filter).await?))
}

/// Publishes or rejects a review (audited). Publishing shows it on the product page and
/// records `review.published`, which loyalty rules may reward; rejecting tells its
/// author why. Permission: `catalog.write`.
#[utoipa::path(post, path = "/reviews/{id}/moderation", tag = "admin-catalog",
    params(("id" = i64, Path)), request_body = Moderation, security(("staff_token" = [])),
    responses((status = 200, body = Review), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn moderate(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
    JsonBody(decision): JsonBody<Moderation>,
) -> Result<Json<Review>> {
    Ok(Json(
        super::moderate(&state, &staff.actor, id, decision).await?,
    ))
}
