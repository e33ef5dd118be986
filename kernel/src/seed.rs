//! The demo catalog (examples/demo/catalog.json, embedded in the binary), loaded through
//! the same validated write paths as the admin API. Lot dates in the file are relative to
//! today, so the demo always has expired and nearly expired stock to show.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::Days;
use serde::Deserialize;
use sqlx::Row;

use crate::catalog::model::{
    ComponentInput, NewCategory, NewProduct, NewVariant, ProductStatus, ProductType,
};
use crate::inventory::{self, NewLocation, NewLot};
use crate::store::Db;

pub const DEMO_CATALOG: &str = include_str!("../../examples/demo/catalog.json");

/// The actor the ledger and the audit log record for seeded data.
const SEED_ACTOR: &str = "seed";

#[derive(Deserialize)]
struct DemoCatalog {
    currency: String,
    settings: inventory::settings::SettingsPatch,
    locations: Vec<NewLocation>,
    categories: Vec<NewCategory>,
    products: Vec<DemoProduct>,
    lots: Vec<DemoLot>,
    /// Loaded only into an empty rate table (the merchant's own table stays).
    #[serde(default)]
    shipping_rates: Vec<crate::orders::api::ShippingRate>,
    #[serde(default)]
    tax_rates: Vec<crate::orders::api::TaxRate>,
}

#[derive(Deserialize)]
struct DemoProduct {
    slug: String,
    name: String,
    product_type: ProductType,
    description: String,
    #[serde(default)]
    status: ProductStatus,
    categories: Vec<String>,
    tags: Vec<String>,
    attributes: serde_json::Value,
    variants: Vec<DemoVariant>,
}

#[derive(Deserialize)]
struct DemoVariant {
    sku: String,
    title: String,
    options: BTreeMap<String, String>,
    price_minor: i64,
    weight_grams: i64,
    #[serde(default)]
    components: Vec<ComponentInput>,
}

#[derive(Deserialize)]
struct DemoLot {
    sku: String,
    location: String,
    batch: String,
    manufactured_days_ago: u64,
    expires_in_days: i64,
    quantity: i64,
}

/// How a long command reports progress.
pub enum Progress {
    /// Log lines (the server seeding itself).
    Log,
    /// Lines on stdout (the `olivine seed` command).
    Print,
    Quiet,
}

impl Progress {
    fn say(&self, line: &str) {
        match self {
            Progress::Log => tracing::info!("{line}"),
            Progress::Print => println!("{line}"),
            Progress::Quiet => {}
        }
    }
}

pub async fn store_is_empty(db: &Db) -> anyhow::Result<bool> {
    let count: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM products")
        .fetch_one(&db.pool)
        .await?
        .try_get(0)?;
    Ok(count == 0)
}

pub async fn seed_demo(db: &Db, progress: &Progress) -> anyhow::Result<SeedReport> {
    seed(db, DEMO_CATALOG, progress).await
}

#[derive(Debug, Default)]
pub struct SeedReport {
    pub products: usize,
    pub skipped: usize,
    pub lots: usize,
}

/// Loads a catalog file; products whose slug already exists are skipped, so seeding is
/// safe to repeat. Everything is one transaction: an error leaves the store unchanged.
pub async fn seed(db: &Db, json: &str, progress: &Progress) -> anyhow::Result<SeedReport> {
    let catalog: DemoCatalog = crate::http::extract::parse_json(json.as_bytes())
        .map_err(|err| anyhow::anyhow!("the catalog file is invalid: {}", err.body().message))?;
    let mut report = SeedReport::default();
    let mut tx = db.begin().await?;
    inventory::settings::update(&mut tx, &catalog.settings, SEED_ACTOR)
        .await
        .map_err(|e| anyhow::anyhow!("settings: {}", e.body().message))?;
    for location in &catalog.locations {
        let exists = sqlx::query("SELECT 1 FROM locations WHERE code = $1")
            .bind(&location.code)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            inventory::create_location(&mut tx, location, SEED_ACTOR)
                .await
                .map_err(|e| anyhow::anyhow!("location {}: {}", location.code, e.body().message))?;
        }
    }
    for (position, category) in catalog.categories.iter().enumerate() {
        // The file's order is the navigation order unless it says otherwise.
        let mut category = category.clone();
        if category.position == 0 {
            category.position = position as i64;
        }
        let category = &category;
        let exists = sqlx::query("SELECT 1 FROM categories WHERE slug = $1")
            .bind(&category.slug)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            crate::catalog::repo::create_category(&mut tx, category, SEED_ACTOR)
                .await
                .map_err(|e| anyhow::anyhow!("category {}: {}", category.slug, e.body().message))?;
        }
    }
    let total = catalog.products.len();
    let mut seeded_skus = std::collections::HashSet::new();
    for (i, product) in catalog.products.into_iter().enumerate() {
        let exists = sqlx::query("SELECT 1 FROM products WHERE slug = $1")
            .bind(&product.slug)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists {
            report.skipped += 1;
            continue;
        }
        let input = NewProduct {
            slug: product.slug.clone(),
            name: product.name,
            product_type: product.product_type,
            description: product.description,
            status: product.status,
            categories: product.categories,
            tags: product.tags,
            subscription_intervals: None,
            attributes: product.attributes,
            variants: product
                .variants
                .into_iter()
                .map(|v| {
                    seeded_skus.insert(v.sku.clone());
                    NewVariant {
                        sku: v.sku,
                        title: v.title,
                        options: v.options,
                        price_minor: v.price_minor,
                        currency: catalog.currency.clone(),
                        weight_grams: v.weight_grams,
                        components: v.components,
                    }
                })
                .collect(),
        };
        crate::catalog::repo::create_product(&mut tx, &input, SEED_ACTOR)
            .await
            .map_err(|e| anyhow::anyhow!("product {}: {}", product.slug, e.body().message))?;
        report.products += 1;
        if (i + 1) % 10 == 0 || i + 1 == total {
            progress.say(&format!("products: {}/{total}", i + 1));
        }
    }
    let today = crate::time::today();
    for lot in &catalog.lots {
        // Lots of products that were already there are theirs to manage.
        if !seeded_skus.contains(&lot.sku) {
            continue;
        }
        let manufactured = today
            .checked_sub_days(Days::new(lot.manufactured_days_ago))
            .context("manufactured_days_ago out of range")?;
        let expires = if lot.expires_in_days >= 0 {
            today.checked_add_days(Days::new(lot.expires_in_days.unsigned_abs()))
        } else {
            today.checked_sub_days(Days::new(lot.expires_in_days.unsigned_abs()))
        }
        .context("expires_in_days out of range")?;
        let input = NewLot {
            sku: lot.sku.clone(),
            location: lot.location.clone(),
            batch: lot.batch.clone(),
            manufactured_on: crate::time::format_date(manufactured),
            expires_on: crate::time::format_date(expires),
            quantity: lot.quantity,
            note: Some("demo data".to_owned()),
        };
        inventory::receive_lot(&mut tx, &input, SEED_ACTOR)
            .await
            .map_err(|e| {
                anyhow::anyhow!("lot {} of {}: {}", lot.batch, lot.sku, e.body().message)
            })?;
        report.lots += 1;
    }
    progress.say(&format!("lots: {}", report.lots));
    let no_shipping_rates = sqlx::query("SELECT 1 FROM shipping_rates")
        .fetch_optional(&mut *tx)
        .await?
        .is_none();
    if no_shipping_rates {
        for rate in &catalog.shipping_rates {
            sqlx::query(
                "INSERT INTO shipping_rates (code, name, country, max_weight_grams, price_minor, currency)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&rate.code)
            .bind(&rate.name)
            .bind(&rate.country)
            .bind(rate.max_weight_grams)
            .bind(rate.price_minor)
            .bind(&rate.currency)
            .execute(&mut *tx)
            .await?;
        }
    }
    let no_tax_rates = sqlx::query("SELECT 1 FROM tax_rates")
        .fetch_optional(&mut *tx)
        .await?
        .is_none();
    if no_tax_rates {
        for rate in &catalog.tax_rates {
            sqlx::query("INSERT INTO tax_rates (country, rate_bp) VALUES ($1, $2)")
                .bind(&rate.country)
                .bind(rate.rate_bp)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(report)
}
