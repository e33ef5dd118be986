//! The in-process read cache of the catalog. Product views are cached with their JSON
//! already serialised, so a cache hit answers without touching the database or
//! re-encoding. Catalog and stock events invalidate the products they name; the TTL only
//! bounds what no event describes (a lot crossing the shelf-life line at midnight).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;

use crate::bus::{ConsumerFuture, Event, NodeLocalConsumer};
use crate::catalog::model::{Category, Product, ProductPage};
use crate::error::Result;
use crate::inventory::settings::StoreSettings;
use sqlx::AnyConnection;

/// A product as cached: the view for HTML and its JSON encoding for the API.
pub struct CachedProduct {
    pub product: Product,
    pub json: Bytes,
}

#[derive(Clone)]
pub struct CatalogCache {
    /// By slug. Misses for unknown slugs are not cached, so probing random URLs cannot
    /// push real products out.
    pub products: Cache<String, Arc<CachedProduct>>,
    /// Product listings by their normalised query.
    pub listings: Cache<String, Arc<ProductPage>>,
    pub categories: Cache<(), Arc<Vec<Category>>>,
    /// The store settings every cart, checkout and product page reads. A change is
    /// dropped on every node by its `settings.updated` event (within milliseconds); the
    /// TTL bounds a node that missed it.
    pub settings: Cache<(), StoreSettings>,
}

impl CatalogCache {
    pub fn new(ttl: Duration) -> Self {
        CatalogCache {
            products: Cache::builder()
                .max_capacity(50_000)
                .time_to_live(ttl)
                .build(),
            listings: Cache::builder()
                .max_capacity(5_000)
                .time_to_live(ttl)
                .build(),
            categories: Cache::builder().max_capacity(1).time_to_live(ttl).build(),
            settings: Cache::builder()
                .max_capacity(1)
                .time_to_live(ttl.min(Duration::from_secs(60)))
                .build(),
        }
    }

    /// The store settings, cached or read with `conn`.
    pub async fn store_settings(&self, conn: &mut AnyConnection) -> Result<StoreSettings> {
        if let Some(settings) = self.settings.get(&()).await {
            return Ok(settings);
        }
        let settings = crate::inventory::settings::load(conn).await?;
        self.settings.insert((), settings.clone()).await;
        Ok(settings)
    }

    /// The store settings, cached or read from `db` (a connection is taken only on a
    /// miss, so a page served from the cache touches no database).
    pub async fn store_settings_from(&self, db: &crate::store::Db) -> Result<StoreSettings> {
        if let Some(settings) = self.settings.get(&()).await {
            return Ok(settings);
        }
        let mut conn = db.pool.acquire().await?;
        self.store_settings(&mut conn).await
    }

    pub async fn invalidate_product(&self, slug: &str) {
        self.products.invalidate(slug).await;
    }

    pub fn invalidate_lists(&self) {
        self.listings.invalidate_all();
        self.categories.invalidate_all();
    }

    pub fn invalidate_all(&self) {
        self.products.invalidate_all();
        self.settings.invalidate_all();
        self.invalidate_lists();
    }
}

/// The node-local consumer that keeps this node's cache true to the database.
/// Invalidation is idempotent, so a redelivered event does no harm.
pub struct CacheInvalidator {
    pub cache: CatalogCache,
}

impl NodeLocalConsumer for CacheInvalidator {
    fn name(&self) -> &'static str {
        "cache-invalidator"
    }

    fn resync(&self) -> ConsumerFuture<'_> {
        Box::pin(async move {
            self.cache.invalidate_all();
            Ok(())
        })
    }

    fn handle<'a>(&'a self, event: &'a Event) -> ConsumerFuture<'a> {
        Box::pin(async move {
            if event.event_type == "settings.updated" {
                self.cache.invalidate_all();
                return Ok(());
            }
            if let Some(products) = event.payload.get("products").and_then(|p| p.as_array()) {
                for slug in products.iter().filter_map(|s| s.as_str()) {
                    self.cache.invalidate_product(slug).await;
                }
            }
            // Listings show names, prices and stock of many products: any catalog or
            // stock change may alter them.
            self.cache.invalidate_lists();
            metrics::counter!("olivine_cache_invalidations_total").increment(1);
            Ok(())
        })
    }
}
