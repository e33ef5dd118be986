//! `GET /api/v1/search` and `GET /api/v1/search/suggest`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::query::{SearchRequest, SearchResults};
use super::{SearchHit, synonyms};
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Result};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search))
        .routes(routes!(suggest))
}

/// The products autocomplete offers at most.
const SUGGESTED_PRODUCTS: usize = 6;
const SUGGESTED_CATEGORIES: usize = 4;

/// The store's synonyms (a stored value that no longer reads counts as none).
async fn store_synonyms(state: &AppState) -> Result<synonyms::Groups> {
    let settings = state.cache.store_settings_from(&state.db).await?;
    Ok(synonyms::parse(&settings.search_synonyms).unwrap_or_default())
}

fn ready(state: &AppState) -> Result<()> {
    if state.search.is_ready() {
        Ok(())
    } else {
        Err(Error::Unavailable(
            "the search index is being built; try again in a moment".to_owned(),
        ))
    }
}

/// Runs a search for shoppers and apps.
pub async fn run(state: &AppState, request: &SearchRequest) -> Result<SearchResults> {
    ready(state)?;
    let synonyms = store_synonyms(state).await?;
    let index = state.search.clone();
    let request = request.clone();
    blocking(move || super::query::search(&index, &request, &synonyms)).await
}

/// Runs a search off the async workers: tantivy is synchronous, and a broad query with
/// facets takes milliseconds of CPU that other requests should not wait behind.
async fn blocking<T: Send + 'static>(
    search: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(search)
        .await
        .map_err(|err| anyhow::anyhow!("the search task failed: {err}"))?
}

/// Searches active products: words over name, description, ingredients, benefits, skin
/// types and categories (typos forgiven, the last word also a prefix, the store's
/// synonyms), narrowed by facets (repeat a facet for OR: `category=serums&category=toners`;
/// different facets AND), with every facet's counts. Query syntax is not interpreted:
/// quotes, brackets and `AND` are words.
#[utoipa::path(get, path = "/search", tag = "catalog",
    params(
        ("q" = Option<String>, Query, max_length = 200, description = "Words, at most 200 characters"),
        ("type" = Option<Vec<String>>, Query, description = "supplement, skincare, bundle"),
        ("category" = Option<Vec<String>>, Query, description = "Category slugs"),
        ("benefit" = Option<Vec<String>>, Query, description = "Benefit tags, e.g. immunity"),
        ("skin_type" = Option<Vec<String>>, Query, description = "dry, normal, oily, combination, sensitive"),
        ("free_from" = Option<Vec<String>>, Query, description = "e.g. gluten, fragrance"),
        ("vegan" = Option<bool>, Query, description = "true: vegan products only (false: not narrowed)"),
        ("form" = Option<Vec<String>>, Query, description = "Supplement form, e.g. capsules"),
        ("size" = Option<Vec<String>>, Query, description = "A variant's size, e.g. 30ml"),
        ("price" = Option<Vec<String>>, Query, pattern = "^[0-9]{1,15}-[0-9]{0,15}$",
            description = "Price ranges in minor units, from (included) to (excluded): the price facet's, e.g. 1000-2000 or 5000-, or any other"),
        ("price_min" = Option<u64>, Query, maximum = 1_000_000_000_000_u64, description = "Lowest price, minor units"),
        ("price_max" = Option<u64>, Query, maximum = 1_000_000_000_000_u64, description = "Highest price, minor units (not below price_min)"),
        ("in_stock" = Option<bool>, Query, description = "true: sellable now (unexpired lots outside the minimum shelf life)"),
        ("sort" = Option<super::query::Sort>, Query, description = "relevance (default), price_asc, price_desc, newest, best_selling"),
        ("page" = Option<u32>, Query, minimum = 1, maximum = 200, description = "From 1 to 200"),
        ("per_page" = Option<u32>, Query, minimum = 1, maximum = 48, description = "1 to 48, default 24"),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds: 304 when one is current"),
    ),
    responses(
        (status = 200, body = SearchResults, headers(
            ("ETag" = String, description = "Strong validator of this answer: send it back in If-None-Match for a 304"),
            ("Last-Modified" = String, description = "When this answer was made"),
            ("Cache-Control" = String, description = "public, max-age=60, stale-while-revalidate=600"))),
        (status = 304, description = "Not modified: the ETag sent in If-None-Match is current"),
        (status = 400, description = "A parameter is unknown or not valid; `fields` names it", body = ErrorBody),
        (status = 503, description = "The index is being built", body = ErrorBody)))]
async fn search(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let request = SearchRequest::from_query(query.as_deref())?;
    let results = run(&state, &request).await?;
    crate::http::caching::json_once(
        &headers,
        &results,
        crate::http::caching::CATALOG_CACHE_CONTROL,
    )
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CategorySuggestion {
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Suggestions {
    pub q: String,
    pub products: Vec<SearchHit>,
    pub categories: Vec<CategorySuggestion>,
}

/// What a search box offers while the shopper types: a few products (the last word a
/// prefix, typos forgiven) and the categories whose names start with the words.
#[utoipa::path(get, path = "/search/suggest", tag = "catalog",
    params(("q" = String, Query, min_length = 1, max_length = 100, description = "What was typed, 1 to 100 characters")),
    responses((status = 200, body = Suggestions),
        (status = 400, description = "`q` is missing, empty or too long", body = ErrorBody),
        (status = 503, description = "The index is being built", body = ErrorBody)))]
async fn suggest(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Suggestions>> {
    let mut q = None;
    for (key, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        if key == "q" {
            q = Some(value.into_owned());
        } else {
            return Err(suggest_problem(
                &key.chars().take(50).collect::<String>(),
                "is not a suggest parameter (only q)",
            ));
        }
    }
    let q = q.ok_or_else(|| suggest_problem("q", "is required"))?;
    if !(1..=100).contains(&q.chars().count()) {
        return Err(suggest_problem("q", "must be 1 to 100 characters"));
    }
    Ok(Json(suggestions(&state, q.trim()).await?))
}

fn suggest_problem(field: &str, message: &str) -> Error {
    Error::BadRequest {
        message: "the suggest parameters are not valid".to_owned(),
        fields: vec![crate::error::FieldError::new(field, message)],
    }
}

/// What to offer for `q` (nothing for only spaces).
pub async fn suggestions(state: &AppState, q: &str) -> Result<Suggestions> {
    ready(state)?;
    let synonyms = store_synonyms(state).await?;
    let index = state.search.clone();
    let typed_q = q.to_owned();
    let products = blocking(move || {
        super::query::suggest_products(&index, &typed_q, &synonyms, SUGGESTED_PRODUCTS)
    })
    .await?;
    let typed = super::query::words(q);
    let categories = crate::catalog::cached_categories(state)
        .await?
        .iter()
        .filter(|category| {
            let name = super::query::words(&category.name);
            !typed.is_empty()
                && typed
                    .iter()
                    .all(|word| name.iter().any(|n| n.starts_with(word.as_str())))
        })
        .take(SUGGESTED_CATEGORIES)
        .map(|category| CategorySuggestion {
            slug: category.slug.clone(),
            name: category.name.clone(),
        })
        .collect();
    Ok(Suggestions {
        q: q.to_owned(),
        products,
        categories,
    })
}
