//! The in-process read cache of the catalog. Product views are cached with their JSON
//! already serialised, so a cache hit answers without touching the database or
//! re-encoding. Catalog and stock events invalidate the products they name; the TTL only
//! bounds what no event describes (a lot crossing the shelf-life line at midnight).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;

use crate::bus::{ConsumerFuture, Event, NodeLocalConsumer};
use crate::catalog::model::{Category, Product, ProductPage};
use crate::error::Result;
use crate::inventory::settings::StoreSettings;
use sqlx::AnyConnection;

/// A product as cached: the view for HTML and its JSON answer for the API, with its
/// validator and compressed forms (made once per entry, not per request).
pub struct CachedProduct {
    pub product: Product,
    pub json: crate::http::caching::Prepared,
    /// `product-<slug>`: what a CDN purges the product's answers by (every event that
    /// changes them names the slug), as a header value made once.
    pub purge_tag: Option<axum::http::HeaderValue>,
}

impl CachedProduct {
    pub fn new(product: Product) -> anyhow::Result<CachedProduct> {
        let json = Bytes::from(serde_json::to_vec(&product)?);
        let purge_tag =
            axum::http::HeaderValue::from_str(&format!("product-{}", product.slug)).ok();
        Ok(CachedProduct {
            product,
            json: crate::http::caching::Prepared::new("application/json", json),
            purge_tag,
        })
    }
}

/// What a shared page was rendered from: entries of this cache (categories, a listing, a
/// product), held so that an entry replaced since is told apart by identity.
pub type PageSources = Vec<Arc<dyn Any + Send + Sync>>;

/// A storefront page that every visitor sees alike, ready to send (validators and
/// compressed forms made once), with what it was rendered from.
pub struct CachedPage {
    pub html: crate::http::caching::Prepared,
    sources: PageSources,
}

impl CachedPage {
    pub fn new(html: crate::http::caching::Prepared, sources: PageSources) -> CachedPage {
        CachedPage { html, sources }
    }

    /// Whether the page still shows what the cache holds: each source is still the very
    /// entry it was rendered from (an event that changes one replaces or drops it).
    pub fn is_current(&self, sources: &[Arc<dyn Any + Send + Sync>]) -> bool {
        self.sources.len() == sources.len()
            && self
                .sources
                .iter()
                .zip(sources)
                .all(|(kept, now)| Arc::ptr_eq(kept, now))
    }
}

/// Bytes of rendered pages a node keeps.
const PAGE_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// A page also shows what no cache entry stands for (the products that go well with
/// another, the store's tax display): it is rendered again after this long at most.
const PAGE_TTL: Duration = Duration::from_secs(60);

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
    /// Shared storefront pages by path and what else selects them
    /// ([`crate::storefront`]).
    pub pages: Cache<String, Arc<CachedPage>>,
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
            pages: Cache::builder()
                .weigher(|key: &String, page: &Arc<CachedPage>| {
                    u32::try_from(key.len() + page.html.identity.len()).unwrap_or(u32::MAX)
                })
                .max_capacity(PAGE_CACHE_BYTES)
                .time_to_live(ttl.min(PAGE_TTL))
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
        self.pages.invalidate_all();
        self.invalidate_lists();
    }
}

/// The node-local consumer that keeps this node's cache true to the database.
/// Invalidation is idempotent, so a redelivered event does no harm.
///
/// A stock change does not drop a cached product: its availability is read again once
/// per batch of events (one statement for every product the batch named) and the entry
/// replaced, so a storm of orders (a renewal run) leaves shoppers' reads as cache hits
/// instead of a full product load per read. Refreshes are at least
/// [`STOCK_REFRESH_INTERVAL`] apart: in a storm the events of that time are one batch
/// and one statement, and a product's quantity is at most that much behind.
pub struct CacheInvalidator {
    pub cache: CatalogCache,
    /// The primary (its background pool): a replica may not have the change the event
    /// announced yet.
    pub db: crate::store::Db,
    /// Slugs of the batch's stock changes, refreshed at its end.
    stock_changed: std::sync::Mutex<std::collections::HashSet<String>>,
    last_refresh: std::sync::Mutex<Option<std::time::Instant>>,
}

pub const STOCK_REFRESH_INTERVAL: Duration = Duration::from_millis(100);

impl CacheInvalidator {
    pub fn new(cache: CatalogCache, db: crate::store::Db) -> Self {
        CacheInvalidator {
            cache,
            db,
            stock_changed: Default::default(),
            last_refresh: Default::default(),
        }
    }

    /// Waits until the last refresh is [`STOCK_REFRESH_INTERVAL`] old, then marks a new one.
    async fn refresh_turn(&self) {
        let wait = self
            .last_refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|last| STOCK_REFRESH_INTERVAL.saturating_sub(last.elapsed()))
            .unwrap_or_default();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        *self
            .last_refresh
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
    }

    fn stock_changed(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.stock_changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the availability of the cached products among `slugs` and replaces their
    /// entries; products not cached need nothing.
    async fn refresh_stock(&self, slugs: Vec<String>) -> anyhow::Result<()> {
        let mut cached = Vec::new();
        for slug in slugs {
            if let Some(entry) = self.cache.products.get(&slug).await {
                cached.push((slug, entry));
            }
        }
        if cached.is_empty() {
            return Ok(());
        }
        let variant_ids: Vec<i64> = cached
            .iter()
            .flat_map(|(_, entry)| entry.product.variants.iter().map(|v| v.id))
            .collect();
        let mut conn = self.db.pool.acquire().await?;
        let settings = self.cache.store_settings(&mut conn).await?;
        let mut availability =
            crate::inventory::availability(&mut conn, &variant_ids, &settings).await?;
        drop(conn);
        for (slug, entry) in cached {
            let mut product = entry.product.clone();
            for variant in &mut product.variants {
                variant.availability = availability
                    .remove(&variant.id)
                    .unwrap_or_else(crate::inventory::Availability::out_of_stock);
            }
            self.cache
                .products
                .insert(slug, Arc::new(CachedProduct::new(product)?))
                .await;
        }
        metrics::counter!("olivine_cache_stock_refreshes_total").increment(1);
        Ok(())
    }
}

impl NodeLocalConsumer for CacheInvalidator {
    fn name(&self) -> &'static str {
        "cache-invalidator"
    }

    fn resync(&self) -> ConsumerFuture<'_> {
        Box::pin(async move {
            self.stock_changed().clear();
            self.cache.invalidate_all();
            Ok(())
        })
    }

    fn handle<'a>(&'a self, event: &'a Event) -> ConsumerFuture<'a> {
        Box::pin(async move {
            if event.event_type == "settings.updated" {
                // The shelf-life settings decide what is sellable: nothing is refreshed
                // from a view that is dropped anyway.
                self.stock_changed().clear();
                self.cache.invalidate_all();
                return Ok(());
            }
            let stock_only = event.event_type == "stock.changed";
            if let Some(products) = event.payload.get("products").and_then(|p| p.as_array()) {
                for slug in products.iter().filter_map(|s| s.as_str()) {
                    if stock_only {
                        self.stock_changed().insert(slug.to_owned());
                    } else {
                        self.stock_changed().remove(slug);
                        self.cache.invalidate_product(slug).await;
                    }
                }
            }
            // Listings show names, prices and stock of many products: any catalog or
            // stock change may alter them. Categories change only by their own events
            // (every shared page shows them: dropping them re-renders every page).
            self.cache.listings.invalidate_all();
            if event.event_type.starts_with("category.") {
                self.cache.categories.invalidate_all();
            }
            metrics::counter!("olivine_cache_invalidations_total").increment(1);
            Ok(())
        })
    }

    fn end_batch(&self) -> ConsumerFuture<'_> {
        Box::pin(async move {
            if self.stock_changed().is_empty() {
                return Ok(());
            }
            // Events that arrive meanwhile are read as the next batch: the consumer does
            // not get behind, it takes larger batches.
            self.refresh_turn().await;
            let slugs: Vec<String> = self.stock_changed().iter().cloned().collect();
            self.refresh_stock(slugs).await?;
            // Only now (no event is handled meanwhile): a failure keeps them for the retry.
            self.stock_changed().clear();
            Ok(())
        })
    }
}
