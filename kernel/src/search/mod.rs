//! Product search: a tantivy index on every node, in the data directory, built from the
//! database when the node starts and kept current by a node-local consumer of the bus
//! (a product, variant, price, lot or category change is searchable within a second).
//! One document per active product; it holds no customer data.
//!
//! The node reads the bus head before it starts, then builds the index; the consumer
//! applies every event after that head once the build is done (it waits for the writer),
//! reading each changed product from the database, so nothing is missed or stale.

pub mod api;
pub mod query;
pub mod synonyms;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use tantivy::schema::{
    FAST, Facet, FacetOptions, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::bus::{ConsumerFuture, Event, NodeLocalConsumer};
use crate::catalog::model::{CategoryRef, Money, Product, ProductStatus, ProductType, Variant};
use crate::catalog::repo::{ProductKey, Visibility};
use crate::inventory::Availability;
use crate::store::Db;

/// Stemmed English with stop words: what relevance is scored on.
const STEMMED: &str = "olivine_en";
/// Lowercase, folded words without stemming: typos and prefixes are matched on these.
const WORDS: &str = "olivine_words";
/// The writer's memory budget (tantivy's minimum is 15 MB a thread).
const WRITER_BYTES: usize = 50_000_000;

/// The price buckets of the price facet, in minor units: `[from, to)`, the last open.
pub const PRICE_BUCKETS: [(u64, Option<u64>); 5] = [
    (0, Some(1000)),
    (1000, Some(2000)),
    (2000, Some(3000)),
    (3000, Some(5000)),
    (5000, None),
];

/// The index's fields.
#[derive(Clone, Copy)]
pub struct Fields {
    pub slug: Field,
    pub name: Field,
    pub description: Field,
    pub ingredients: Field,
    pub benefits: Field,
    pub skin_types: Field,
    pub categories: Field,
    pub words: Field,
    pub facets: Field,
    pub price: Field,
    pub created: Field,
    pub sold: Field,
    pub summary: Field,
}

/// What a hit shows, stored in the document (a search reads no database).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub slug: String,
    pub name: String,
    pub product_type: String,
    /// The lowest variant price, minor units.
    pub price_minor: i64,
    pub currency: String,
    /// Some variant is sellable now (unexpired lots outside the minimum shelf life).
    pub in_stock: bool,
    /// Category slugs.
    pub categories: Vec<String>,
}

pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: tokio::sync::Mutex<IndexWriter>,
    pub fields: Fields,
    db: Db,
    /// Set once the first build is committed.
    ready: AtomicBool,
    /// Where it lives (none: in memory, when the directory was taken by another node).
    pub location: Option<std::path::PathBuf>,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = |analyzer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analyzer)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
    };
    let fields = Fields {
        slug: builder.add_text_field("slug", STRING | STORED),
        name: builder.add_text_field("name", text(STEMMED)),
        description: builder.add_text_field("description", text(STEMMED)),
        ingredients: builder.add_text_field("ingredients", text(STEMMED)),
        benefits: builder.add_text_field("benefits", text(STEMMED)),
        skin_types: builder.add_text_field("skin_types", text(STEMMED)),
        categories: builder.add_text_field("categories", text(STEMMED)),
        words: builder.add_text_field("words", text(WORDS)),
        facets: builder.add_facet_field("facets", FacetOptions::default()),
        price: builder.add_u64_field("price", INDEXED | FAST),
        created: builder.add_u64_field("created", FAST),
        sold: builder.add_u64_field("sold", FAST),
        summary: builder.add_text_field("summary", STORED),
    };
    (builder.build(), fields)
}

fn register_analyzers(index: &Index) {
    let stemmed = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter_dynamic(
            StopWordFilter::new(Language::English)
                .unwrap_or_else(|| StopWordFilter::remove(Vec::<String>::new())),
        )
        .filter_dynamic(Stemmer::new(Language::English))
        .build();
    index.tokenizers().register(STEMMED, stemmed);
    let words = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build();
    index.tokenizers().register(WORDS, words);
}

impl SearchIndex {
    /// Opens the index in `dir` (created, or recreated when it cannot be read), or one in
    /// memory when another process holds that directory. It is empty until [`build`].
    pub fn open(dir: &Path, db: Db) -> anyhow::Result<Arc<SearchIndex>> {
        let (schema, fields) = schema();
        let on_disk = std::fs::create_dir_all(dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| open_dir(dir, &schema));
        let (index, writer, location) = match on_disk {
            Ok((index, writer)) => (index, writer, Some(dir.to_owned())),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %format!("{err:#}"),
                    "search index directory unavailable; this node keeps its index in memory");
                let index = Index::create_in_ram(schema);
                register_analyzers(&index);
                let writer = index.writer_with_num_threads(1, WRITER_BYTES)?;
                (index, writer, None)
            }
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Arc::new(SearchIndex {
            index,
            reader,
            writer: tokio::sync::Mutex::new(writer),
            fields,
            db,
            ready: AtomicBool::new(false),
            location,
        }))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn reader(&self) -> &IndexReader {
        &self.reader
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Rebuilds the whole index from the database, logging progress. Searches see the
    /// previous index until it is committed.
    pub async fn build(&self) -> anyhow::Result<usize> {
        self.build_reporting(&|done, total| {
            if done % 5000 == 0 {
                tracing::info!(done, total, "building the search index");
            }
        })
        .await
    }

    /// [`build`](Self::build), telling `progress` (products done, of how many) after
    /// each page. Products are read a page at a time, a few statements a page, so a
    /// large catalog builds in seconds rather than one product's queries at a time.
    pub async fn build_reporting(
        &self,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> anyhow::Result<usize> {
        let started = std::time::Instant::now();
        let mut writer = self.writer.lock().await;
        let mut conn = self.db.pool.acquire().await?;
        let active: i64 =
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM products WHERE status = 'active'")
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
        let total = usize::try_from(active).unwrap_or(0);
        let sold = sold_counts(&mut conn, None).await?;
        // What is sellable depends on the shelf-life setting: read once, as checkout would.
        let settings = crate::inventory::settings::load(&mut conn)
            .await
            .map_err(|e| anyhow::anyhow!("reading the store settings: {}", e.body().message))?;
        writer.delete_all_documents()?;
        let mut done = 0;
        let mut after = 0;
        loop {
            let products = active_products_after(&mut conn, after, &settings).await?;
            let Some(last) = products.last() else {
                break;
            };
            after = last.id;
            for product in &products {
                let sold = sold.get(&product.slug).copied().unwrap_or(0);
                writer.add_document(self.product_document(product, sold)?)?;
            }
            done += products.len();
            progress(done, total.max(done));
        }
        drop(conn);
        self.commit(&mut writer)?;
        self.ready.store(true, Ordering::Release);
        tracing::info!(
            products = done,
            ms = started.elapsed().as_millis() as u64,
            "search index built"
        );
        metrics::gauge!("olivine_search_documents").set(done as f64);
        Ok(done)
    }

    /// Reads the named products again (gone or inactive ones leave the index).
    pub async fn reindex(&self, slugs: &BTreeSet<String>) -> anyhow::Result<()> {
        if slugs.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer.lock().await;
        let mut conn = self.db.pool.acquire().await?;
        for slug in slugs {
            let sold = sold_counts(&mut conn, Some(slug)).await?;
            writer.delete_term(Term::from_field_text(self.fields.slug, slug));
            if let Some(doc) = self.document(&mut conn, slug, &sold).await? {
                writer.add_document(doc)?;
            }
        }
        drop(conn);
        self.commit(&mut writer)?;
        metrics::counter!("olivine_search_reindexed_total").increment(slugs.len() as u64);
        Ok(())
    }

    fn commit(&self, writer: &mut IndexWriter) -> anyhow::Result<()> {
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// The document of an active product, `None` for a draft, archived or gone one.
    async fn document(
        &self,
        conn: &mut AnyConnection,
        slug: &str,
        sold: &HashMap<String, u64>,
    ) -> anyhow::Result<Option<TantivyDocument>> {
        let Some(product) =
            crate::catalog::repo::load_product(conn, ProductKey::Slug(slug), Visibility::Public)
                .await
                .map_err(|e| anyhow::anyhow!("reading product {slug}: {}", e.body().message))?
        else {
            return Ok(None);
        };
        Ok(Some(self.product_document(
            &product,
            sold.get(slug).copied().unwrap_or(0),
        )?))
    }

    /// Reads the product's own fields, categories, tags and variants (title, price,
    /// availability): the full build fills in nothing else (see [`active_products_after`]).
    fn product_document(&self, product: &Product, sold: u64) -> anyhow::Result<TantivyDocument> {
        let f = &self.fields;
        let attributes = &product.attributes;
        let strings = |key: &str| -> Vec<String> {
            attributes
                .get(key)
                .and_then(|v| v.as_array())
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.as_str().or_else(|| i.get("name")?.as_str()))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut ingredients = strings("ingredients");
        ingredients.extend(strings("key_ingredients"));
        let skin_types = strings("skin_types");
        let form = attributes.get("form").and_then(|v| v.as_str());
        let brand = attributes.get("brand").and_then(|v| v.as_str());
        let product_type = serde_json::to_value(product.product_type)?
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let price = product.variants.iter().map(|v| v.price.amount_minor).min();
        let currency = product
            .variants
            .first()
            .map(|v| v.price.currency.clone())
            .unwrap_or_default();
        let in_stock = product
            .variants
            .iter()
            .any(|v| v.availability.sellable_quantity > 0);

        let mut doc = TantivyDocument::default();
        doc.add_text(f.slug, &product.slug);
        doc.add_text(f.name, &product.name);
        if let Some(brand) = brand {
            doc.add_text(f.name, brand);
        }
        doc.add_text(f.description, &product.description);
        for ingredient in &ingredients {
            doc.add_text(f.ingredients, ingredient);
        }
        for tag in &product.tags {
            doc.add_text(f.benefits, tag.replace('-', " "));
        }
        for skin in &skin_types {
            doc.add_text(f.skin_types, format!("{skin} skin"));
        }
        for category in &product.categories {
            doc.add_text(f.categories, &category.name);
        }
        // Typos and prefixes are matched on the words a shopper types for a product.
        let mut words = vec![product.name.clone(), product_type.clone()];
        words.extend(brand.map(str::to_owned));
        words.extend(form.map(str::to_owned));
        words.extend(ingredients.iter().cloned());
        words.extend(skin_types.iter().cloned());
        words.extend(product.tags.iter().map(|t| t.replace('-', " ")));
        words.extend(product.categories.iter().map(|c| c.name.clone()));
        doc.add_text(f.words, words.join(" \n "));

        let mut facet = |dimension: &str, value: &str| {
            doc.add_facet(f.facets, Facet::from_path([dimension, value]));
        };
        facet("type", &product_type);
        for category in &product.categories {
            facet("category", &category.slug);
        }
        for tag in &product.tags {
            match facet_of_tag(tag) {
                TagFacet::Vegan => facet("vegan", "true"),
                TagFacet::FreeFrom(what) => facet("free_from", what),
                TagFacet::Benefit => facet("benefit", tag),
            }
        }
        for skin in &skin_types {
            facet("skin_type", skin);
        }
        if let Some(form) = form {
            facet("form", form);
        }
        for size in product
            .variants
            .iter()
            .map(|v| v.title.as_str())
            .collect::<BTreeSet<_>>()
        {
            facet("size", size);
        }
        if in_stock {
            facet("in_stock", "true");
        }
        let price = u64::try_from(price.unwrap_or(0)).unwrap_or(0);
        facet("price", &price_bucket(price));
        doc.add_u64(f.price, price);
        // Seconds since the epoch (a u64 like the other sort fields: one sort path).
        let created =
            crate::time::parse_timestamp(&product.created_at).map_or(0, |t| t.timestamp());
        doc.add_u64(f.created, u64::try_from(created).unwrap_or(0));
        doc.add_u64(f.sold, sold);
        let hit = SearchHit {
            slug: product.slug.clone(),
            name: product.name.clone(),
            product_type,
            price_minor: i64::try_from(price).unwrap_or(i64::MAX),
            currency,
            in_stock,
            categories: product.categories.iter().map(|c| c.slug.clone()).collect(),
        };
        doc.add_text(f.summary, serde_json::to_string(&hit)?);
        Ok(doc)
    }
}

fn open_dir(dir: &Path, schema: &Schema) -> anyhow::Result<(Index, IndexWriter)> {
    let open = || -> anyhow::Result<Index> {
        let directory = tantivy::directory::MmapDirectory::open(dir)?;
        Ok(Index::open_or_create(directory, schema.clone())?)
    };
    let index = match open() {
        Ok(index) => index,
        Err(err) => {
            // A corrupt index or one of another schema is rebuilt from the database.
            tracing::warn!(dir = %dir.display(), error = %format!("{err:#}"),
                "search index unreadable; recreating it");
            std::fs::remove_dir_all(dir)?;
            std::fs::create_dir_all(dir)?;
            open()?
        }
    };
    register_analyzers(&index);
    let writer = index.writer_with_num_threads(1, WRITER_BYTES)?;
    Ok((index, writer))
}

/// How a tag is faceted.
pub enum TagFacet<'a> {
    Vegan,
    /// `gluten-free`: free from gluten.
    FreeFrom(&'a str),
    Benefit,
}

pub fn facet_of_tag(tag: &str) -> TagFacet<'_> {
    if tag == "vegan" {
        TagFacet::Vegan
    } else if let Some(what) = tag.strip_suffix("-free").filter(|w| !w.is_empty()) {
        TagFacet::FreeFrom(what)
    } else {
        TagFacet::Benefit
    }
}

/// The price facet's bucket key for a price in minor units: `1000-2000`, `5000-`.
pub fn price_bucket(price: u64) -> String {
    PRICE_BUCKETS
        .iter()
        .find(|(from, to)| price >= *from && to.is_none_or(|to| price < to))
        .map(|(from, to)| match to {
            Some(to) => format!("{from}-{to}"),
            None => format!("{from}-"),
        })
        .unwrap_or_default()
}

/// Products a build reads per page.
const BUILD_PAGE: i64 = 1000;
/// Variants per availability read: each is a bound parameter, which the databases limit
/// and SQLite looks up by name (a statement costs the square of its parameters).
const AVAILABILITY_CHUNK: usize = 500;

/// The next page of active products after id `after`, in id order, as
/// [`crate::catalog::repo::load_product`] reads them (categories by position and name,
/// tags by name, variants by position, availability by the rule checkout uses), in five
/// statements or so for the page. Reviews, bundle components and subscription intervals
/// are not indexed and are left empty.
async fn active_products_after(
    conn: &mut AnyConnection,
    after: i64,
    settings: &crate::inventory::StoreSettings,
) -> anyhow::Result<Vec<Product>> {
    let rows = sqlx::query(
        "SELECT id, slug, name, product_type, description, attributes, version, created_at, updated_at
         FROM products WHERE status = 'active' AND id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(BUILD_PAGE)
    .fetch_all(&mut *conn)
    .await?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(Vec::new());
    };
    let (first, last): (i64, i64) = (first.try_get(0)?, last.try_get(0)?);
    let mut products = Vec::with_capacity(rows.len());
    // Position in `products` by id (the ranges below also hold inactive products').
    let mut at: HashMap<i64, usize> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        let product_type: String = row.try_get(3)?;
        let attributes: String = row.try_get(5)?;
        at.insert(id, products.len());
        products.push(Product {
            id,
            slug: row.try_get(1)?,
            name: row.try_get(2)?,
            product_type: ProductType::parse(&product_type).ok_or_else(|| {
                anyhow::anyhow!("stored product type `{product_type}` is unknown")
            })?,
            description: row.try_get(4)?,
            status: ProductStatus::Active,
            attributes: serde_json::from_str(&attributes).unwrap_or_default(),
            categories: Vec::new(),
            tags: Vec::new(),
            subscription_intervals: Vec::new(),
            variants: Vec::new(),
            reviews: crate::reviews::ReviewSummary {
                count: 0,
                average_rating: None,
                latest: Vec::new(),
            },
            images: Vec::new(),
            version: row.try_get(6)?,
            created_at: row.try_get(7)?,
            updated_at: row.try_get(8)?,
        });
    }
    // The product a row of the ranges below is of, unless it is an inactive one's.
    let position = |row: &sqlx::any::AnyRow| -> Result<Option<usize>, sqlx::Error> {
        Ok(at.get(&row.try_get::<i64, _>(0)?).copied())
    };
    let categories = sqlx::query(
        "SELECT pc.product_id, c.slug, c.name FROM product_categories pc
         JOIN categories c ON c.id = pc.category_id
         WHERE pc.product_id BETWEEN $1 AND $2 ORDER BY pc.product_id, c.position, c.name",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut *conn)
    .await?;
    for row in &categories {
        if let Some(i) = position(row)? {
            products[i].categories.push(CategoryRef {
                slug: row.try_get(1)?,
                name: row.try_get(2)?,
            });
        }
    }
    let tags = sqlx::query(
        "SELECT product_id, tag FROM product_tags WHERE product_id BETWEEN $1 AND $2
         ORDER BY product_id, tag",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut *conn)
    .await?;
    for row in &tags {
        if let Some(i) = position(row)? {
            products[i].tags.push(row.try_get(1)?);
        }
    }
    let variants = sqlx::query(
        "SELECT product_id, id, sku, title, options, price_minor, currency, weight_grams, position
         FROM variants WHERE product_id BETWEEN $1 AND $2 ORDER BY product_id, position, id",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut *conn)
    .await?;
    let mut variant_ids = Vec::with_capacity(variants.len());
    for row in &variants {
        if let Some(i) = position(row)? {
            let options: String = row.try_get(4)?;
            let variant = Variant {
                id: row.try_get(1)?,
                sku: row.try_get(2)?,
                title: row.try_get(3)?,
                options: serde_json::from_str(&options).unwrap_or_default(),
                price: Money {
                    amount_minor: row.try_get(5)?,
                    currency: row.try_get(6)?,
                },
                weight_grams: row.try_get(7)?,
                position: row.try_get(8)?,
                components: Vec::new(),
                availability: Availability::out_of_stock(),
            };
            variant_ids.push(variant.id);
            products[i].variants.push(variant);
        }
    }
    let mut availability = HashMap::with_capacity(variant_ids.len());
    for chunk in variant_ids.chunks(AVAILABILITY_CHUNK) {
        availability.extend(
            crate::inventory::availability(conn, chunk, settings)
                .await
                .map_err(|e| anyhow::anyhow!("reading stock: {}", e.body().message))?,
        );
    }
    for variant in products.iter_mut().flat_map(|p| p.variants.iter_mut()) {
        if let Some(found) = availability.remove(&variant.id) {
            variant.availability = found;
        }
    }
    Ok(products)
}

/// Units sold per product slug (paid, fulfilled or delivered orders): best-selling.
async fn sold_counts(
    conn: &mut AnyConnection,
    slug: Option<&str>,
) -> anyhow::Result<HashMap<String, u64>> {
    let rows = sqlx::query(
        "SELECT p.slug, CAST(SUM(ol.quantity) AS BIGINT) FROM order_lines ol
         JOIN orders o ON o.id = ol.order_id AND o.status IN ('paid', 'fulfilled', 'delivered')
         JOIN variants v ON v.id = ol.variant_id
         JOIN products p ON p.id = v.product_id
         WHERE ($1 = '' OR p.slug = $1)
         GROUP BY p.slug",
    )
    .bind(slug.unwrap_or(""))
    .fetch_all(&mut *conn)
    .await?;
    let mut sold = HashMap::with_capacity(rows.len());
    for row in rows {
        let units: i64 = row.try_get(1)?;
        sold.insert(row.try_get(0)?, u64::try_from(units).unwrap_or(0));
    }
    Ok(sold)
}

/// Rebuilds the node's index when the date changes (on the kernel's clock): what is in
/// stock moves with the date alone (a lot expires, or enters the minimum shelf life),
/// and no event says so. Ends with the kernel.
pub async fn rebuild_daily(
    index: std::sync::Weak<SearchIndex>,
    clock: crate::time::Clock,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut built_on = clock.now().date_naive();
    loop {
        let next_day = built_on
            .succ_opt()
            .and_then(|day| day.and_hms_opt(0, 0, 5))
            .map(|at| at.and_utc());
        let Some(next_day) = next_day else { return };
        tokio::select! {
            _ = clock.sleep_until(next_day, std::time::Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let today = clock.now().date_naive();
        if today == built_on {
            continue;
        }
        let Some(index) = index.upgrade() else { return };
        match index.build().await {
            Ok(_) => built_on = today,
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "the daily search index rebuild failed; retrying within the hour");
            }
        }
    }
}

/// Keeps the node's index current: the products an event names (catalog, price, lot and
/// stock events carry `products`) are read again after the batch; a settings change
/// (the shelf life decides what is in stock) rebuilds it.
pub struct SearchIndexer {
    pub index: Arc<SearchIndex>,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    slugs: BTreeSet<String>,
    orders: BTreeSet<String>,
    rebuild: bool,
}

impl SearchIndexer {
    pub fn new(index: Arc<SearchIndex>) -> SearchIndexer {
        SearchIndexer {
            index,
            pending: Mutex::new(Pending::default()),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl NodeLocalConsumer for SearchIndexer {
    fn name(&self) -> &'static str {
        "search-indexer"
    }

    fn handle<'a>(&'a self, event: &'a Event) -> ConsumerFuture<'a> {
        Box::pin(async move {
            let kind = event.event_type.as_str();
            let mut pending = self.pending();
            // The shelf-life settings decide what is in stock.
            if kind == "settings.updated" {
                pending.rebuild = true;
            } else if kind == "order.paid" {
                // Best-selling counts move.
                if let Some(number) = event.payload.get("number").and_then(|n| n.as_str()) {
                    pending.orders.insert(number.to_owned());
                }
            }
            if let Some(products) = event.payload.get("products").and_then(|p| p.as_array()) {
                pending.slugs.extend(
                    products
                        .iter()
                        .filter_map(|s| s.as_str())
                        .map(str::to_owned),
                );
            }
            Ok(())
        })
    }

    fn end_batch(&self) -> ConsumerFuture<'_> {
        Box::pin(async move {
            let (rebuild, mut slugs, orders) = {
                let pending = self.pending();
                (
                    pending.rebuild,
                    pending.slugs.clone(),
                    pending.orders.clone(),
                )
            };
            if rebuild {
                self.index.build().await?;
            } else {
                if !orders.is_empty() {
                    slugs.extend(products_of_orders(&self.index.db, &orders).await?);
                }
                self.index.reindex(&slugs).await?;
            }
            // Only now: a failure keeps them for the retry.
            *self.pending() = Pending::default();
            Ok(())
        })
    }

    fn resync(&self) -> ConsumerFuture<'_> {
        Box::pin(async move {
            self.index.build().await?;
            *self.pending() = Pending::default();
            Ok(())
        })
    }
}

async fn products_of_orders(db: &Db, numbers: &BTreeSet<String>) -> anyhow::Result<Vec<String>> {
    let mut slugs = Vec::new();
    let mut conn = db.pool.acquire().await?;
    for number in numbers {
        let rows = sqlx::query(
            "SELECT DISTINCT p.slug FROM orders o
             JOIN order_lines ol ON ol.order_id = o.id
             JOIN variants v ON v.id = ol.variant_id
             JOIN products p ON p.id = v.product_id
             WHERE o.number = $1",
        )
        .bind(number)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            slugs.push(row.try_get(0)?);
        }
    }
    Ok(slugs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_prices_are_faceted() {
        assert!(matches!(facet_of_tag("vegan"), TagFacet::Vegan));
        assert!(matches!(
            facet_of_tag("gluten-free"),
            TagFacet::FreeFrom("gluten")
        ));
        assert!(matches!(facet_of_tag("-free"), TagFacet::Benefit));
        assert!(matches!(facet_of_tag("immunity"), TagFacet::Benefit));
        assert_eq!(price_bucket(0), "0-1000");
        assert_eq!(price_bucket(1999), "1000-2000");
        assert_eq!(price_bucket(2000), "2000-3000");
        assert_eq!(price_bucket(99_999), "5000-");
    }
}
