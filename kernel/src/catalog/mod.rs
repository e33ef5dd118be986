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
use model::{
    Category, NewCategory, NewProduct, NewVariant, Product, ProductPage, ProductPatch, VariantPatch,
};
use repo::{ProductFilter, ProductKey, Visibility};
use sqlx::Row;

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
    // A hit is a plain lookup. The miss's futures (moka's loader, the database read) are
    // kilobytes: inline, they would make every hit's future as large, and it is copied
    // as it moves into each layer's box. So they are boxed when a miss happens.
    if let Some(hit) = state.cache.products.get(slug).await {
        return Ok(Some(hit));
    }
    let loaded = Box::pin(
        state
            .cache
            .products
            .try_get_with_by_ref(slug, load_product(state, slug)),
    )
    .await;
    match loaded {
        Ok(cached) => Ok(Some(cached)),
        Err(err) if matches!(*err, Error::NotFound(_)) => Ok(None),
        Err(err) => Err(from_cache_error(err)),
    }
}

/// [`cached_product`] on a miss.
async fn load_product(state: &AppState, slug: &str) -> Result<Arc<CachedProduct>> {
    metrics::counter!("olivine_cache_misses_total", "cache" => "product").increment(1);
    let mut conn = state.reads.acquire().await?;
    let product = repo::load_product(&mut conn, ProductKey::Slug(slug), Visibility::Public)
        .await?
        .ok_or_else(|| Error::not_found(format!("product `{slug}`")))?;
    Ok(Arc::new(CachedProduct::new(product)?))
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

// ---- staff's reads and writes (the admin API and the admin pages) --------------------

/// Adds a category (the admin API's and the admin page's).
pub async fn create_category(
    state: &AppState,
    actor: &str,
    input: &NewCategory,
) -> Result<Category> {
    let mut tx = state.db.begin().await?;
    let category = repo::create_category(&mut tx, input, actor).await?;
    tx.commit().await?;
    state.bus.notify();
    Ok(category)
}

/// Changes a category; its products' pages and search entries follow.
pub async fn update_category(
    state: &AppState,
    actor: &str,
    id: i64,
    input: &NewCategory,
) -> Result<Category> {
    let mut tx = state.db.begin().await?;
    let category = repo::update_category(&mut tx, id, input, actor).await?;
    tx.commit().await?;
    state.bus.notify();
    Ok(category)
}

/// Deletes a category without subcategories; its products stay, outside it.
pub async fn delete_category(state: &AppState, actor: &str, id: i64) -> Result<()> {
    let mut tx = state.db.begin().await?;
    repo::delete_category(&mut tx, id, actor).await?;
    tx.commit().await?;
    state.bus.notify();
    Ok(())
}

/// The categories with how many products each holds, for staff (from the primary).
pub async fn categories_for_staff(state: &AppState) -> Result<Vec<(Category, i64)>> {
    let mut conn = state.db.pool.acquire().await?;
    let categories = repo::list_categories(&mut conn).await?;
    let counts = sqlx::query(
        "SELECT category_id, CAST(COUNT(*) AS BIGINT) FROM product_categories GROUP BY category_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut count_of = std::collections::HashMap::new();
    for row in &counts {
        count_of.insert(row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?);
    }
    Ok(categories
        .into_iter()
        .map(|c| {
            let count = count_of.get(&c.id).copied().unwrap_or(0);
            (c, count)
        })
        .collect())
}

/// A product as staff see it, drafts and archived ones included, from the primary.
pub async fn product_for_staff(state: &AppState, id: i64) -> Result<Product> {
    let mut conn = state.db.pool.acquire().await?;
    repo::load_product(&mut conn, ProductKey::Id(id), Visibility::All)
        .await?
        .ok_or_else(|| Error::not_found(format!("product {id}")))
}

/// Creates a product with its variants in one transaction. The taxonomy plugin of the
/// product's type, when one is active, validates it and derives SKUs left out.
pub async fn create_product(
    state: &AppState,
    actor: &str,
    mut input: NewProduct,
) -> Result<Product> {
    crate::plugins::taxonomy::check_new_product(&state.plugins, &mut input).await?;
    let mut tx = state.db.begin().await?;
    let id = repo::create_product(&mut tx, &input, actor).await?;
    tx.commit().await?;
    state.bus.notify();
    product_for_staff(state, id).await
}

/// Changes a product; absent fields stay as they are.
pub async fn update_product(
    state: &AppState,
    actor: &str,
    id: i64,
    mut patch: ProductPatch,
) -> Result<Product> {
    let current = product_for_staff(state, id).await?;
    crate::plugins::taxonomy::check_product_patch(&state.plugins, &current, &mut patch).await?;
    let mut tx = state.db.begin().await?;
    repo::update_product(&mut tx, id, &patch, actor).await?;
    tx.commit().await?;
    state.bus.notify();
    product_for_staff(state, id).await
}

/// Adds a variant to a product.
pub async fn add_variant(
    state: &AppState,
    actor: &str,
    product_id: i64,
    mut input: NewVariant,
) -> Result<Product> {
    let current = product_for_staff(state, product_id).await?;
    crate::plugins::taxonomy::check_new_variant(&state.plugins, &current, &mut input).await?;
    let mut tx = state.db.begin().await?;
    repo::add_variant(&mut tx, product_id, &input, actor).await?;
    tx.commit().await?;
    state.bus.notify();
    product_for_staff(state, product_id).await
}

/// The product a variant belongs to.
async fn product_of_variant(state: &AppState, variant_id: i64) -> Result<Option<Product>> {
    let row = sqlx::query("SELECT product_id FROM variants WHERE id = $1")
        .bind(variant_id)
        .fetch_optional(&state.db.pool)
        .await?;
    match row {
        Some(row) => Ok(Some(
            product_for_staff(state, sqlx::Row::try_get(&row, 0)?).await?,
        )),
        None => Ok(None),
    }
}

/// Changes a variant: price, SKU, options, weight, bundle components. Answers its product.
pub async fn update_variant(
    state: &AppState,
    actor: &str,
    variant_id: i64,
    mut patch: VariantPatch,
) -> Result<Product> {
    if let Some(current) = product_of_variant(state, variant_id).await? {
        crate::plugins::taxonomy::check_variant_patch(
            &state.plugins,
            &current,
            variant_id,
            &mut patch.sku,
            patch.options.as_ref(),
            patch.price_minor,
            patch.weight_grams,
        )
        .await?;
    }
    let mut tx = state.db.begin().await?;
    repo::update_variant(&mut tx, variant_id, &patch, actor).await?;
    let product_id: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT product_id FROM variants WHERE id = $1")
            .bind(variant_id)
            .fetch_one(&mut *tx)
            .await?,
        0,
    )?;
    tx.commit().await?;
    state.bus.notify();
    product_for_staff(state, product_id).await
}
