//! JSON routes of the catalog: public reads and admin writes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::*;
use super::repo::{self, ProductFilter, Visibility};
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Result};
use crate::http::caching::{CATALOG_CACHE_CONTROL, json_once};
use crate::http::extract::{JsonBody, PathParam, QueryParams, StaffAuth};

/// The public reads, at their full paths (`/api/v1/products`, …): not nested, so that a
/// request does not pay for axum rewriting its URI ([`crate::http::at_prefix`]).
pub fn public_routes() -> OpenApiRouter<AppState> {
    use crate::http::{API_PREFIX, at_prefix};
    OpenApiRouter::new()
        .routes(at_prefix(API_PREFIX, routes!(list_products)))
        .routes(at_prefix(API_PREFIX, routes!(get_product)))
        .routes(at_prefix(API_PREFIX, routes!(list_categories)))
}

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list_products, create_product))
        .routes(routes!(admin_get_product, update_product))
        .routes(routes!(add_variant))
        .routes(routes!(update_variant))
        .routes(routes!(create_category))
        .routes(routes!(update_category, delete_category))
}

/// Active products, filtered and paged.
///
/// Cacheable like a product: a strong `ETag` (304 on `If-None-Match`), `Last-Modified`,
/// `Cache-Control: public, max-age=60, stale-while-revalidate=600`.
#[utoipa::path(get, path = "/products", tag = "catalog",
    params(ProductFilter,
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds: 304 when one is current")),
    responses(
        (status = 200, body = ProductPage, headers(
            ("ETag" = String, description = "Strong validator of this answer"),
            ("Last-Modified" = String, description = "When this answer was made"),
            ("Cache-Control" = String, description = "public, max-age=60, stale-while-revalidate=600"))),
        (status = 304, description = "Not modified: the ETag sent is current", headers(
            ("ETag" = String, description = "The current validator"))),
        (status = 422, body = ErrorBody)))]
async fn list_products(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<ProductFilter>,
    headers: HeaderMap,
) -> Result<Response> {
    let page = super::cached_listing(&state, &filter).await?;
    json_once(&headers, &*page, CATALOG_CACHE_CONTROL)
}

/// One active product with its variants, prices, stock state and best-before date.
///
/// The answer carries a strong `ETag`, `Last-Modified` and `Cache-Control: public,
/// max-age=60, stale-while-revalidate=600`; a client that sends the ETag back in
/// `If-None-Match` (or the time in `If-Modified-Since`) gets 304 with no body while the
/// product (its stock included) is unchanged. Compressed (brotli or gzip) by
/// `Accept-Encoding`.
#[utoipa::path(get, path = "/products/{slug}", tag = "catalog",
    params(("slug" = String, Path, description = "Product slug"),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds: 304 when one is the product's current one"),
        ("If-Modified-Since" = Option<String>, Header, description = "An HTTP date: 304 when the answer was made no later (ignored when If-None-Match is sent)")),
    responses(
        (status = 200, body = Product, headers(
            ("ETag" = String, description = "Strong validator of this answer"),
            ("Last-Modified" = String, description = "When this answer was made from the database"),
            ("Cache-Control" = String, description = "public, max-age=60, stale-while-revalidate=600"))),
        (status = 304, description = "Not modified: the ETag sent is current", headers(
            ("ETag" = String, description = "The current validator"))),
        (status = 404, body = ErrorBody)))]
async fn get_product(
    State(state): State<AppState>,
    PathParam(slug): PathParam<String>,
    // The request itself rather than a copy of its headers (the `HeaderMap` extractor
    // clones them).
    request: axum::extract::Request,
) -> Result<Response> {
    product_answer(&state, &slug, request.headers()).await
}

/// [`get_product`]'s answer, also given by [`crate::http::fast_lane`] without routing.
pub(crate) async fn product_answer(
    state: &AppState,
    slug: &str,
    headers: &HeaderMap,
) -> Result<Response> {
    match super::cached_product(state, slug).await? {
        Some(cached) => {
            let mut response = cached.json.respond(headers, CATALOG_CACHE_CONTROL);
            // What a CDN purges by: every event that changes this answer names the slug
            // in its `products` (product.*, variant.*, stock.changed).
            if let Some(tag) = &cached.purge_tag {
                let headers = response.headers_mut();
                headers.insert(SURROGATE_KEY, tag.clone());
                headers.insert(CACHE_TAG, tag.clone());
            }
            Ok(response)
        }
        None => Err(Error::not_found(format!("product `{slug}`"))),
    }
}

const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// All categories, ordered by position, then name. Cacheable like a product.
#[utoipa::path(get, path = "/categories", tag = "catalog",
    params(("If-None-Match" = Option<String>, Header, description = "ETags the client holds: 304 when one is current")),
    responses(
        (status = 200, body = Vec<Category>, headers(
            ("ETag" = String, description = "Strong validator of this answer"),
            ("Last-Modified" = String, description = "When this answer was made"),
            ("Cache-Control" = String, description = "public, max-age=60, stale-while-revalidate=600"))),
        (status = 304, description = "Not modified: the ETag sent is current", headers(
            ("ETag" = String, description = "The current validator")))))]
async fn list_categories(State(state): State<AppState>, headers: HeaderMap) -> Result<Response> {
    let categories = super::cached_categories(&state).await?;
    json_once(&headers, &*categories, CATALOG_CACHE_CONTROL)
}

// ---- admin ---------------------------------------------------------------------------

/// All products, drafts and archived ones included.
#[utoipa::path(get, path = "/products", tag = "admin-catalog", params(ProductFilter),
    security(("staff_token" = [])),
    responses((status = 200, body = ProductPage), (status = 401, body = ErrorBody)))]
async fn admin_list_products(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<ProductFilter>,
) -> Result<Json<ProductPage>> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(Json(
        repo::list_products(&mut conn, &filter, Visibility::All).await?,
    ))
}

/// Creates a product with its variants in one transaction. The taxonomy plugin of the
/// product's type, when one is active, validates it and derives SKUs left out.
#[utoipa::path(post, path = "/products", tag = "admin-catalog", request_body = NewProduct,
    security(("staff_token" = [])),
    responses((status = 201, body = Product), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_product(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(input): JsonBody<NewProduct>,
) -> Result<(StatusCode, Json<Product>)> {
    let product = super::create_product(&state, &staff.actor, input).await?;
    Ok((StatusCode::CREATED, Json(product)))
}

#[utoipa::path(get, path = "/products/{id}", tag = "admin-catalog",
    params(("id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 200, body = Product), (status = 404, body = ErrorBody)))]
async fn admin_get_product(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Product>> {
    Ok(Json(super::product_for_staff(&state, id).await?))
}

/// Changes a product; absent fields stay as they are.
#[utoipa::path(patch, path = "/products/{id}", tag = "admin-catalog", request_body = ProductPatch,
    params(("id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 200, body = Product), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_product(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
    JsonBody(patch): JsonBody<ProductPatch>,
) -> Result<Json<Product>> {
    Ok(Json(
        super::update_product(&state, &staff.actor, id, patch).await?,
    ))
}

/// Adds a variant to a product.
#[utoipa::path(post, path = "/products/{id}/variants", tag = "admin-catalog", request_body = NewVariant,
    params(("id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 201, body = Product), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_variant(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
    JsonBody(input): JsonBody<NewVariant>,
) -> Result<(StatusCode, Json<Product>)> {
    let product = super::add_variant(&state, &staff.actor, id, input).await?;
    Ok((StatusCode::CREATED, Json(product)))
}

/// Changes a variant: price, SKU, options, weight, bundle components.
#[utoipa::path(patch, path = "/variants/{id}", tag = "admin-catalog", request_body = VariantPatch,
    params(("id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 200, body = Product), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_variant(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
    JsonBody(patch): JsonBody<VariantPatch>,
) -> Result<Json<Product>> {
    Ok(Json(
        super::update_variant(&state, &staff.actor, id, patch).await?,
    ))
}

#[utoipa::path(post, path = "/categories", tag = "admin-catalog", request_body = NewCategory,
    security(("staff_token" = [])),
    responses((status = 201, body = Category), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_category(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(input): JsonBody<NewCategory>,
) -> Result<(StatusCode, Json<Category>)> {
    let category = super::create_category(&state, &staff.actor, &input).await?;
    Ok((StatusCode::CREATED, Json(category)))
}

/// Replaces a category's slug, name, parent and position (the shop's `/c/<slug>` address
/// changes with its slug). Putting a category inside itself or one of its subcategories
/// is refused naming `parent`.
#[utoipa::path(put, path = "/categories/{id}", tag = "admin-catalog", request_body = NewCategory,
    params(("id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 200, body = Category), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_category(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
    JsonBody(input): JsonBody<NewCategory>,
) -> Result<Json<Category>> {
    Ok(Json(
        super::update_category(&state, &staff.actor, id, &input).await?,
    ))
}

/// Deletes a category; its products stay, outside it. A category with subcategories is
/// refused (409) until they are moved or deleted.
#[utoipa::path(delete, path = "/categories/{id}", tag = "admin-catalog",
    params(("id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn delete_category(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode> {
    super::delete_category(&state, &staff.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
