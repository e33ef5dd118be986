//! The catalog: products of three types (supplement, skincare, bundle), their variants,
//! categories and tags. Owns its tables, its events (`product.*`, `variant.*`,
//! `category.*`) and its routers.

pub mod api;
pub mod model;
pub mod repo;

use std::sync::Arc;

use crate::app::AppState;
use crate::cache::CachedProduct;
use crate::error::{Error, Result};
use model::{Category, ProductPage};
use repo::{ProductFilter, ProductKey, Visibility};

fn from_cache_error(err: Arc<Error>) -> Error {
    match &*err {
        Error::NotFound(what) => Error::NotFound(what.clone()),
        other => Error::Internal(anyhow::anyhow!("{other:#}")),
    }
}

/// A product as shoppers see it, from the cache; the database (the read replica when it
/// is fresh enough) is read only on a miss, and concurrent misses of one slug share one
/// read.
pub async fn cached_product(state: &AppState, slug: &str) -> Result<Option<Arc<CachedProduct>>> {
    if slug.is_empty() || slug.len() > 100 {
        return Ok(None);
    }
    let loaded = state
        .cache
        .products
        .try_get_with_by_ref(slug, async {
            metrics::counter!("olivine_cache_misses_total", "cache" => "product").increment(1);
            let mut conn = state.reads.acquire().await?;
            let product = repo::load_product(&mut conn, ProductKey::Slug(slug), Visibility::Public)
                .await?
                .ok_or_else(|| Error::not_found(format!("product `{slug}`")))?;
            Ok::<_, Error>(Arc::new(CachedProduct::new(product)?))
        })
        .await;
    match loaded {
        Ok(cached) => Ok(Some(cached)),
        Err(err) if matches!(*err, Error::NotFound(_)) => Ok(None),
        Err(err) => Err(from_cache_error(err)),
    }
}

/// A page of active products, from the cache.
pub async fn cached_listing(state: &AppState, filter: &ProductFilter) -> Result<Arc<ProductPage>> {
    filter.validate()?;
    let key = serde_json::to_string(&(
        &filter.category,
        &filter.tag,
        &filter.product_type,
        filter.page,
        filter.per_page,
    ))
    .map_err(anyhow::Error::from)?;
    state
        .cache
        .listings
        .try_get_with(key, async {
            let mut conn = state.reads.acquire().await?;
            Ok::<_, Error>(Arc::new(
                repo::list_products(&mut conn, filter, Visibility::Public).await?,
            ))
        })
        .await
        .map_err(from_cache_error)
}

pub async fn cached_categories(state: &AppState) -> Result<Arc<Vec<Category>>> {
    state
        .cache
        .categories
        .try_get_with((), async {
            let mut conn = state.reads.acquire().await?;
            Ok::<_, Error>(Arc::new(repo::list_categories(&mut conn).await?))
        })
        .await
        .map_err(from_cache_error)
}
