//! Pricing a cart through the active pricing rules: one call per rule per cart, in
//! priority order. A rule that fails (trap, budget, memory, invalid output) is skipped
//! for this request and reported; the cart is still priced. The cart will reuse
//! [`price_cart`]; until it exists, `POST /api/v1/price-quote` exposes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use olivine_plugin_runtime::bindings::types;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};
use utoipa::ToSchema;

use super::decisions::hash;
use super::{Judged, Plugins};
use crate::catalog::model::Money;
use crate::error::{Error, Problems, Result};
use crate::inventory::placeholders;
use crate::store::Db;

/// One adjustment as the shopper sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppliedAdjustment {
    pub amount_minor: i64,
    pub reason: String,
    /// The plugin that proposed it.
    pub rule: String,
}

/// The outcome of pricing one cart.
#[derive(Debug, Clone, Default)]
pub struct PricedCart {
    /// Per line id.
    pub line_adjustments: BTreeMap<u32, Vec<AppliedAdjustment>>,
    pub cart_adjustments: Vec<AppliedAdjustment>,
    /// Rules skipped because they failed.
    pub skipped: Vec<String>,
    /// The digest of the cart the rules saw; their decisions are recorded under it.
    pub input_hash: String,
}

fn line_total(line: &types::CartLine) -> i64 {
    line.unit_price_minor
        .saturating_mul(i64::from(line.quantity))
}

/// A stable digest of a cart, for decision records.
fn cart_digest(cart: &types::Cart) -> String {
    let mut bytes = Vec::with_capacity(64 + cart.lines.len() * 40);
    bytes.extend_from_slice(cart.currency.as_bytes());
    for line in &cart.lines {
        bytes.extend_from_slice(&line.line_id.to_le_bytes());
        bytes.extend_from_slice(&line.product_index.to_le_bytes());
        bytes.extend_from_slice(&line.variant_id.to_le_bytes());
        bytes.extend_from_slice(&line.quantity.to_le_bytes());
        bytes.extend_from_slice(&line.unit_price_minor.to_le_bytes());
        bytes.push(u8::from(line.subscription));
    }
    for product in &cart.products {
        bytes.extend_from_slice(&product.id.to_le_bytes());
        bytes.extend_from_slice(product.slug.as_bytes());
        for tag in product.tags.iter().chain(&product.categories) {
            bytes.push(0);
            bytes.extend_from_slice(tag.as_bytes());
        }
    }
    if let Some(customer) = &cart.customer {
        bytes.extend_from_slice(customer.pseudonym.as_bytes());
        for segment in &customer.segments {
            bytes.push(0);
            bytes.extend_from_slice(segment.as_bytes());
        }
    }
    hash(&bytes)
}

fn adjustments_digest(adjustments: &[types::Adjustment]) -> String {
    let mut bytes = Vec::new();
    for a in adjustments {
        bytes.extend_from_slice(&a.line_id.map(i64::from).unwrap_or(-1).to_le_bytes());
        bytes.extend_from_slice(&a.amount_minor.to_le_bytes());
        bytes.extend_from_slice(a.reason.as_bytes());
        bytes.push(0);
    }
    hash(&bytes)
}

/// A rule's answer for its decision record: every adjustment it returned (those dropped
/// for taking a total below zero too), with the cart's currency to read the amounts in.
fn adjustments_detail(currency: &str, adjustments: &[types::Adjustment]) -> Option<String> {
    let adjustments: Vec<serde_json::Value> = adjustments
        .iter()
        .map(|a| {
            serde_json::json!({
                "line_id": a.line_id,
                "amount_minor": a.amount_minor,
                "reason": a.reason,
            })
        })
        .collect();
    super::decisions::detail(serde_json::json!({
        "currency": currency,
        "adjustments": adjustments,
    }))
}

/// The setting every pricing rule can read: `true` when catalog prices include tax
/// (VAT), `false` when tax is added at checkout.
pub const STORE_PRICES_INCLUDE_TAX: &str = "store.prices_include_tax";

/// Runs every active pricing rule on the cart. Adjustments of a higher-priority rule
/// come first; an adjustment that would take a line (or the cart) below zero after the
/// ones before it is dropped, so the total never goes negative.
pub async fn price_cart(plugins: &Plugins, cart: types::Cart) -> PricedCart {
    price_cart_on(plugins, plugins.snapshot(), cart).await
}

/// [`price_cart`] with the rules of a snapshot taken earlier.
async fn price_cart_on(
    plugins: &Plugins,
    snapshot: Arc<crate::plugins::Snapshot>,
    cart: types::Cart,
) -> PricedCart {
    let mut priced = PricedCart {
        input_hash: cart_digest(&cart),
        ..PricedCart::default()
    };
    if snapshot.pricing.is_empty() {
        return priced;
    }
    // Guest calls are synchronous (and WASI's sync bindings block on their own
    // runtime): run the whole rule chain on one blocking thread.
    let rules = snapshot.pricing.clone();
    let include_tax = plugins.prices_include_tax().to_string();
    let results = tokio::task::spawn_blocking(move || {
        let results: Vec<_> = rules
            .iter()
            .map(|rule| {
                // Store facts beside the merchant's settings: `store.` keys are the
                // kernel's (manifest setting names have no dot).
                let mut settings = (*rule.settings).clone();
                settings.insert(STORE_PRICES_INCLUDE_TAX.to_owned(), include_tax.clone());
                rule.plugin.price(&cart, &Arc::new(settings))
            })
            .collect();
        (cart, results)
    })
    .await;
    let (cart, results) = match results {
        Ok(done) => done,
        Err(err) => {
            tracing::error!(error = %err, "pricing task failed; cart priced without rules");
            priced.skipped = snapshot.pricing.iter().map(|r| r.id.clone()).collect();
            return priced;
        }
    };
    let input_hash = priced.input_hash.clone();
    let mut remaining: HashMap<u32, i64> = cart
        .lines
        .iter()
        .map(|l| (l.line_id, line_total(l)))
        .collect();
    let mut cart_remaining: i64 = remaining.values().sum();
    for (rule, result) in snapshot.pricing.iter().zip(results) {
        match &result {
            Ok((adjustments, stats)) => {
                let judged = Judged {
                    outcome: "ok",
                    output_hash: adjustments_digest(adjustments),
                    detail: adjustments_detail(&cart.currency, adjustments),
                };
                plugins
                    .book_call(rule, "price", input_hash.clone(), Ok((*stats, judged)))
                    .await;
                for adjustment in adjustments {
                    let applied = AppliedAdjustment {
                        amount_minor: adjustment.amount_minor,
                        reason: adjustment.reason.clone(),
                        rule: rule.id.clone(),
                    };
                    if cart_remaining + adjustment.amount_minor < 0 {
                        continue;
                    }
                    match adjustment.line_id {
                        Some(line_id) => {
                            let left = remaining.entry(line_id).or_default();
                            if *left + adjustment.amount_minor < 0 {
                                continue;
                            }
                            *left += adjustment.amount_minor;
                            priced
                                .line_adjustments
                                .entry(line_id)
                                .or_default()
                                .push(applied);
                        }
                        None => priced.cart_adjustments.push(applied),
                    }
                    cart_remaining += adjustment.amount_minor;
                }
            }
            Err(err) => {
                tracing::warn!(plugin = rule.id, version = rule.version, error = %err, "pricing rule failed; skipped for this cart");
                plugins
                    .book_call(rule, "price", input_hash.clone(), Err(err))
                    .await;
                priced.skipped.push(rule.id.clone());
            }
        }
    }
    priced
}

// ---- the quote endpoint's shapes -----------------------------------------------------

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteLineInput {
    /// The SKU of a variant for sale; every line in one currency.
    #[schema(value_type = crate::http::schema::Sku)]
    pub sku: String,
    #[schema(minimum = 1, maximum = 10_000)]
    pub quantity: u32,
    /// Bought on subscription (subscribe-and-save applies).
    #[serde(default)]
    pub subscription: bool,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// 1 to 1000 lines.
    #[schema(min_items = 1, max_items = 1000)]
    pub lines: Vec<QuoteLineInput>,
    /// Customer segments a rule may look at, e.g. `first-order`; at most 20.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub customer_segments: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotedLine {
    pub line_id: u32,
    pub sku: String,
    pub product_slug: String,
    pub title: String,
    pub quantity: u32,
    pub subscription: bool,
    pub unit_price: Money,
    pub subtotal: Money,
    pub adjustments: Vec<AppliedAdjustment>,
    pub total: Money,
    #[serde(skip)]
    pub facts: LineFacts,
}

/// What an order needs of a line besides its price, read with it so a checkout does not
/// look the variant up again. Never part of any JSON.
#[derive(Debug, Clone, Default)]
pub struct LineFacts {
    pub variant_id: i64,
    pub weight_grams: i64,
    pub product_name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Quote {
    pub currency: String,
    pub lines: Vec<QuotedLine>,
    pub cart_adjustments: Vec<AppliedAdjustment>,
    pub subtotal: Money,
    /// The sum of every adjustment (negative for discounts).
    pub adjustments_total: Money,
    pub total: Money,
    /// Pricing rules that failed and were left out of this quote.
    pub skipped_rules: Vec<String>,
    /// What the rules' decisions are recorded under: `GET
    /// /api/v1/admin/plugins/{id}/decisions?input_hash=…` explains this price.
    pub input_hash: String,
}

/// What a quote reads of a variant and its product.
#[derive(Debug, Clone)]
pub(crate) struct VariantRow {
    variant_id: i64,
    title: String,
    price_minor: i64,
    currency: String,
    product_id: i64,
    slug: String,
    product_type: String,
    weight_grams: i64,
    product_name: String,
}

/// The columns [`VariantRow::from_row`] reads, in its order, over `variants v` joined to
/// `products p`; a caller that reads lines can select them in the same statement (a
/// macro, so it can be `concat!`ed into another constant).
macro_rules! variant_columns {
    () => {
        "v.sku, v.id, v.title, v.price_minor, v.currency, p.id, p.slug, p.product_type, v.weight_grams, p.name"
    };
}
pub(crate) use variant_columns;
const VARIANT_COLUMNS: &str = variant_columns!();

impl VariantRow {
    pub(crate) fn variant_id(&self) -> i64 {
        self.variant_id
    }

    /// The SKU and the row from [`VARIANT_COLUMNS`] starting at column `at`.
    pub(crate) fn from_row(row: &sqlx::any::AnyRow, at: usize) -> Result<(String, VariantRow)> {
        Ok((
            row.try_get(at)?,
            VariantRow {
                variant_id: row.try_get(at + 1)?,
                title: row.try_get(at + 2)?,
                price_minor: row.try_get(at + 3)?,
                currency: row.try_get(at + 4)?,
                product_id: row.try_get(at + 5)?,
                slug: row.try_get(at + 6)?,
                product_type: row.try_get(at + 7)?,
                weight_grams: row.try_get(at + 8)?,
                product_name: row.try_get(at + 9)?,
            },
        ))
    }
}

/// Builds the cart the plugins see from SKUs, prices it and totals it.
pub async fn quote(db: &Db, plugins: &Plugins, request: &QuoteRequest) -> Result<Quote> {
    quote_with(db, plugins, request, None).await
}

/// [`quote`] with the variants of its SKUs already read (those of active products, by
/// SKU), as a cart reads them with its lines.
pub(crate) async fn quote_with(
    db: &Db,
    plugins: &Plugins,
    request: &QuoteRequest,
    known: Option<HashMap<String, VariantRow>>,
) -> Result<Quote> {
    let mut problems = Problems::new();
    problems.check(
        !request.lines.is_empty(),
        "lines",
        "a quote needs at least one line",
    );
    problems.check(request.lines.len() <= 1000, "lines", "at most 1000 lines");
    problems.check(
        request.customer_segments.len() <= 20,
        "customer_segments",
        "at most 20 segments",
    );
    for (i, line) in request.lines.iter().enumerate() {
        problems.check(
            (1..=10_000).contains(&line.quantity),
            format!("lines[{i}].quantity"),
            "must be between 1 and 10000",
        );
    }
    problems.into_result()?;

    let skus: Vec<&str> = {
        let mut seen: Vec<&str> = request.lines.iter().map(|l| l.sku.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        seen
    };
    let variants = match known {
        Some(mut variants) => {
            variants.retain(|sku, _| skus.binary_search(&sku.as_str()).is_ok());
            variants
        }
        None => {
            let sql = format!(
                "SELECT {VARIANT_COLUMNS}
                 FROM variants v JOIN products p ON p.id = v.product_id
                 WHERE p.status = 'active' AND v.sku IN ({})",
                placeholders(1, skus.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for sku in &skus {
                query = query.bind(*sku);
            }
            let mut variants = HashMap::new();
            for row in query.fetch_all(&db.pool).await? {
                let (sku, variant) = VariantRow::from_row(&row, 0)?;
                variants.insert(sku, variant);
            }
            variants
        }
    };
    let mut problems = Problems::new();
    for (i, line) in request.lines.iter().enumerate() {
        if !variants.contains_key(&line.sku) {
            problems.add(
                format!("lines[{i}].sku"),
                format!("no product for sale has SKU `{}`", line.sku),
            );
        }
    }
    problems.into_result()?;
    let currency = variants[&request.lines[0].sku].currency.clone();
    for (i, line) in request.lines.iter().enumerate() {
        if variants[&line.sku].currency != currency {
            return Err(Error::invalid(
                format!("lines[{i}].sku"),
                "all lines must be in one currency",
            ));
        }
    }

    // Products once each, with tags and categories when an active rule reads products
    // (a rule's manifest says; the host gives the others none).
    let snapshot = plugins.snapshot();
    let products_read = snapshot
        .pricing
        .iter()
        .any(|rule| rule.plugin.manifest.inputs.products);
    let mut product_ids: Vec<i64> = variants.values().map(|v| v.product_id).collect();
    product_ids.sort_unstable();
    product_ids.dedup();
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    let mut categories: HashMap<i64, Vec<String>> = HashMap::new();
    let sql = format!(
        "SELECT product_id, tag, 0 FROM product_tags WHERE product_id IN ({0})
         UNION ALL
         SELECT pc.product_id, c.slug, 1 FROM product_categories pc JOIN categories c ON c.id = pc.category_id
         WHERE pc.product_id IN ({0})",
        placeholders(1, product_ids.len())
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for id in &product_ids {
        query = query.bind(*id);
    }
    let rows = if products_read {
        query.fetch_all(&db.pool).await?
    } else {
        Vec::new()
    };
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let value: String = row.try_get(1)?;
        if row.try_get::<i64, _>(2)? == 0 {
            tags.entry(id).or_default().push(value);
        } else {
            categories.entry(id).or_default().push(value);
        }
    }
    let product_index: HashMap<i64, u32> = product_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i as u32))
        .collect();
    let slugs: HashMap<i64, &str> = variants
        .values()
        .map(|v| (v.product_id, v.slug.as_str()))
        .collect();
    let types_by_id: HashMap<i64, &str> = variants
        .values()
        .map(|v| (v.product_id, v.product_type.as_str()))
        .collect();
    let cart = types::Cart {
        currency: currency.clone(),
        lines: request
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let v = &variants[&line.sku];
                types::CartLine {
                    line_id: i as u32 + 1,
                    product_index: product_index[&v.product_id],
                    variant_id: v.variant_id as u64,
                    quantity: line.quantity,
                    unit_price_minor: v.price_minor,
                    subscription: line.subscription,
                }
            })
            .collect(),
        products: product_ids
            .iter()
            .map(|id| types::ProductRef {
                id: *id as u64,
                slug: slugs[id].to_owned(),
                product_type: match types_by_id[id] {
                    "supplement" => types::ProductType::Supplement,
                    "skincare" => types::ProductType::Skincare,
                    _ => types::ProductType::Bundle,
                },
                tags: tags.remove(id).unwrap_or_default(),
                categories: categories.remove(id).unwrap_or_default(),
            })
            .collect(),
        customer: (!request.customer_segments.is_empty()).then(|| types::CustomerRef {
            pseudonym: "anonymous".to_owned(),
            segments: request.customer_segments.clone(),
        }),
    };
    let lines_for_totals: Vec<types::CartLine> = cart.lines.clone();
    let mut priced = price_cart_on(plugins, snapshot, cart).await;
    let money = |amount_minor: i64| Money {
        amount_minor,
        currency: currency.clone(),
    };
    let mut subtotal = 0i64;
    let mut adjustments_total = 0i64;
    let lines = lines_for_totals
        .iter()
        .zip(&request.lines)
        .map(|(line, input)| {
            let v = &variants[&input.sku];
            let line_subtotal = line_total(line);
            let adjustments = priced
                .line_adjustments
                .remove(&line.line_id)
                .unwrap_or_default();
            let adjusted: i64 = adjustments.iter().map(|a| a.amount_minor).sum();
            subtotal += line_subtotal;
            adjustments_total += adjusted;
            QuotedLine {
                line_id: line.line_id,
                sku: input.sku.clone(),
                product_slug: v.slug.clone(),
                title: v.title.clone(),
                quantity: line.quantity,
                subscription: line.subscription,
                unit_price: money(line.unit_price_minor),
                subtotal: money(line_subtotal),
                adjustments,
                total: money(line_subtotal + adjusted),
                facts: LineFacts {
                    variant_id: v.variant_id,
                    weight_grams: v.weight_grams,
                    product_name: v.product_name.clone(),
                },
            }
        })
        .collect();
    adjustments_total += priced
        .cart_adjustments
        .iter()
        .map(|a| a.amount_minor)
        .sum::<i64>();
    Ok(Quote {
        currency: currency.clone(),
        lines,
        cart_adjustments: priced.cart_adjustments,
        subtotal: money(subtotal),
        adjustments_total: money(adjustments_total),
        total: money(subtotal + adjustments_total),
        skipped_rules: priced.skipped,
        input_hash: priced.input_hash,
    })
}
