//! Carts: a guest's is reached by its unguessable id, a signed-in customer's only with
//! their token. Every read and change answers the cart priced through the active
//! pricing rules (each adjustment with its reason) and checked against what can be sold
//! now (unexpired lots outside the minimum shelf life, first expired first out).
//!
//! A line may not ask for more than can be sold when it is added or changed; stock can
//! still run out afterwards, so each answer says per line whether it can be bought and
//! whether the whole cart can go to checkout.

pub mod api;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::accounts::Authenticated;
use crate::app::AppState;
use crate::catalog::model::Money;
use crate::error::{Error, Problems, Result};
use crate::inventory::Availability;
use crate::plugins::pricing::{
    AppliedAdjustment, LineFacts, QuoteLineInput, QuoteRequest, VariantRow, variant_columns,
};

/// Most distinct lines in one cart.
pub const MAX_LINES: usize = 100;
/// Most units on one line.
pub const MAX_QUANTITY: u32 = 999;

/// One line as the shopper sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CartLine {
    pub id: i64,
    pub sku: String,
    pub product_slug: String,
    pub title: String,
    pub quantity: u32,
    pub subscription: bool,
    /// How often a subscription line is delivered (`30d`, `2w`, `1m`); `null` for a line
    /// bought once.
    #[schema(value_type = Option<crate::http::schema::SubscriptionInterval>)]
    pub subscription_interval: Option<String>,
    pub unit_price: Money,
    pub subtotal: Money,
    /// Discounts and surcharges of the pricing rules, each with its reason.
    pub adjustments: Vec<AppliedAdjustment>,
    pub total: Money,
    pub availability: Availability,
    /// Why this line cannot be bought as it is (e.g. only 3 left), if it cannot.
    pub problem: Option<String>,
    /// What a checkout needs of the line, read with its price.
    #[serde(skip)]
    pub facts: LineFacts,
}

/// A cart, priced and checked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Cart {
    pub id: String,
    /// Bound to a signed-in customer (then only their token reaches it).
    pub signed_in: bool,
    /// The lines' currency; `null` while the cart is empty.
    pub currency: Option<String>,
    pub lines: Vec<CartLine>,
    pub cart_adjustments: Vec<AppliedAdjustment>,
    pub subtotal_minor: i64,
    pub adjustments_total_minor: i64,
    pub total_minor: i64,
    /// Every line can be bought as it is.
    pub can_check_out: bool,
    /// Pricing rules that failed and were left out of these prices.
    pub skipped_rules: Vec<String>,
    /// What the rules' decisions are recorded under (empty for an empty cart).
    pub input_hash: String,
}

/// A line to add.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLine {
    /// The SKU of a variant for sale.
    #[schema(value_type = crate::http::schema::Sku)]
    pub sku: String,
    /// 1 to 999 (with the units of this SKU the cart has already).
    #[schema(minimum = 1, maximum = 999)]
    pub quantity: u32,
    /// Bought on subscription (subscribe-and-save applies).
    #[serde(default)]
    pub subscription: bool,
    /// How often a subscription is delivered: one of the product's
    /// `subscription_intervals` (its first when left out). Only with `subscription`.
    #[serde(default)]
    #[schema(value_type = Option<crate::http::schema::SubscriptionInterval>)]
    pub interval: Option<String>,
}

/// A line's new quantity.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineChange {
    /// 1 to 999.
    #[schema(minimum = 1, maximum = 999)]
    pub quantity: u32,
}

fn new_cart_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 18] = rand::random();
    format!(
        "cart_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A cart id of the shape we make; anything else is not looked up.
fn plausible_id(id: &str) -> bool {
    id.len() == 29
        && id.starts_with("cart_")
        && id[5..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!("cart {id}"))
}

/// Checks that the caller may use the cart: an open cart that is a guest's, or the
/// signed-in caller's own. Anything else looks exactly like a missing cart. Answers
/// whether the cart is bound to a customer.
async fn open_cart(state: &AppState, id: &str, customer: Option<&Authenticated>) -> Result<bool> {
    if !plausible_id(id) {
        return Err(not_found(id));
    }
    let row = sqlx::query("SELECT customer_id FROM carts WHERE id = $1 AND status = 'open'")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| not_found(id))?;
    may_use(id, row.try_get(0)?, customer)
}

fn may_use(id: &str, owner: Option<i64>, customer: Option<&Authenticated>) -> Result<bool> {
    match (owner, customer) {
        (None, _) => Ok(false),
        (Some(owner), Some(customer)) if owner == customer.customer_id => Ok(true),
        _ => Err(not_found(id)),
    }
}

/// [`open_cart`] inside a transaction that changes the cart: marks it updated, which
/// takes its row until commit, so concurrent changes of one cart queue (on SQLite,
/// `BEGIN IMMEDIATE` queues every writer) and the lines read after stay true.
async fn take_open_cart(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    customer: Option<&Authenticated>,
) -> Result<bool> {
    if !plausible_id(id) {
        return Err(not_found(id));
    }
    let row = sqlx::query(
        "UPDATE carts SET updated_at = $1 WHERE id = $2 AND status = 'open' RETURNING customer_id",
    )
    .bind(crate::time::now())
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| not_found(id))?;
    may_use(id, row.try_get(0)?, customer)
}

/// A new cart: for a signed-in customer their open cart (made if they have none), for a
/// guest a fresh one.
pub async fn create(state: &AppState, customer: Option<&Authenticated>) -> Result<Cart> {
    if let Some(customer) = customer {
        let id = customer_cart(state, customer).await?;
        return get(state, &id, Some(customer)).await;
    }
    let id = new_cart_id();
    let now = crate::time::now();
    sqlx::query(
        "INSERT INTO carts (id, customer_id, status, created_at, updated_at) VALUES ($1, NULL, 'open', $2, $2)",
    )
    .bind(&id)
    .bind(&now)
    .execute(&state.db.pool)
    .await?;
    Ok(empty_cart(&id, false))
}

/// The customer's open cart id, made if they have none.
async fn customer_cart(state: &AppState, customer: &Authenticated) -> Result<String> {
    let find = || async {
        let row = sqlx::query("SELECT id FROM carts WHERE customer_id = $1 AND status = 'open'")
            .bind(customer.customer_id)
            .fetch_optional(&state.db.pool)
            .await?;
        Ok::<_, Error>(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    };
    if let Some(id) = find().await? {
        return Ok(id);
    }
    let id = new_cart_id();
    let now = crate::time::now();
    let inserted = sqlx::query(
        "INSERT INTO carts (id, customer_id, status, created_at, updated_at) VALUES ($1, $2, 'open', $3, $3)",
    )
    .bind(&id)
    .bind(customer.customer_id)
    .bind(&now)
    .execute(&state.db.pool)
    .await;
    match inserted {
        // Two first requests at once: the other made it.
        Err(err) if crate::store::is_unique_violation(&err) => {
            find().await?.ok_or_else(|| not_found("of the customer"))
        }
        other => {
            other?;
            Ok(id)
        }
    }
}

/// The cart, priced and checked.
pub async fn get(state: &AppState, id: &str, customer: Option<&Authenticated>) -> Result<Cart> {
    if !plausible_id(id) {
        return Err(not_found(id));
    }
    // The cart, its lines and their variants in one read (no lines: one row of NULLs
    // after the owner).
    let sql = format!(
        "SELECT c.customer_id, {LINE_COLUMNS}
         FROM carts c
         LEFT JOIN cart_lines l ON l.cart_id = c.id
         LEFT JOIN variants v ON v.id = l.variant_id
         LEFT JOIN products p ON p.id = v.product_id
         WHERE c.id = $1 AND c.status = 'open'
         ORDER BY l.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(&state.db.pool)
        .await?;
    let Some(first) = rows.first() else {
        return Err(not_found(id));
    };
    let signed_in = may_use(id, first.try_get(0)?, customer)?;
    let mut read = ReadLines::default();
    for row in &rows {
        read.add_row(row, 1)?;
    }
    price_lines(state, id, signed_in, read, None).await
}

struct StoredLine {
    id: i64,
    variant_id: i64,
    sku: String,
    quantity: u32,
    subscription: bool,
    interval: Option<String>,
}

/// What a cart's lines are read as: `l.id, l.quantity, l.subscription, p.status`, the
/// pricing's variant columns, then `l.subscription_interval, p.subscription_intervals`,
/// over `cart_lines l`, `variants v`, `products p`.
const LINE_COLUMNS: &str = concat!(
    "l.id, l.quantity, l.subscription, p.status, ",
    variant_columns!(),
    ", l.subscription_interval, p.subscription_intervals"
);

/// The column after the variant's in [`LINE_COLUMNS`].
const AFTER_VARIANT: usize = 14;

/// A cart's lines with the variants they are priced at (those of active products, by
/// SKU), read in the same statement so pricing reads nothing again.
#[derive(Default)]
struct ReadLines {
    lines: Vec<StoredLine>,
    variants: HashMap<String, VariantRow>,
    /// The intervals each variant's product offers on subscription, by variant id.
    intervals: HashMap<i64, String>,
}

impl ReadLines {
    /// Takes one row of [`LINE_COLUMNS`] from column `at`. A row whose line id is NULL
    /// (a cart without lines) is skipped; one whose line id is 0 is a variant looked up
    /// by SKU, not a line. Answers the row's variant id when its product is for sale.
    fn add_row(&mut self, row: &sqlx::any::AnyRow, at: usize) -> Result<Option<i64>> {
        let Some(line_id) = row.try_get::<Option<i64>, _>(at)? else {
            return Ok(None);
        };
        let active = row.try_get::<String, _>(at + 3)? == "active";
        let (sku, variant) = VariantRow::from_row(row, at + 4)?;
        let variant_id = variant.variant_id();
        if line_id != 0 {
            self.lines.push(StoredLine {
                id: line_id,
                variant_id,
                sku: sku.clone(),
                quantity: u32::try_from(row.try_get::<i64, _>(at + 1)?).unwrap_or(0),
                subscription: row.try_get::<i64, _>(at + 2)? != 0,
                interval: row.try_get(at + AFTER_VARIANT)?,
            });
        }
        self.intervals
            .insert(variant_id, row.try_get(at + AFTER_VARIANT + 1)?);
        if !active {
            return Ok(None);
        }
        self.variants.insert(sku, variant);
        Ok(Some(variant_id))
    }
}

async fn stored_lines(conn: &mut sqlx::AnyConnection, id: &str) -> Result<ReadLines> {
    let sql = format!(
        "SELECT {LINE_COLUMNS} FROM cart_lines l
         JOIN variants v ON v.id = l.variant_id JOIN products p ON p.id = v.product_id
         WHERE l.cart_id = $1 ORDER BY l.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    let mut read = ReadLines::default();
    for row in &rows {
        read.add_row(row, 0)?;
    }
    Ok(read)
}

/// A subscription's items priced as a cart of subscription lines would be (the
/// subscribe-and-save rules apply), with their stock: what its next renewal costs, and
/// what the renewal orders. `label` names it where a cart id would be; `leave_out`: item
/// ids not priced (those a renewal that ships what there is delivers without).
pub async fn price_subscription(
    state: &AppState,
    subscription_id: i64,
    label: &str,
    leave_out: &[i64],
) -> Result<Cart> {
    let sql = format!(
        "SELECT i.id, i.quantity, CAST(1 AS BIGINT), p.status, {},
            CAST(NULL AS TEXT), p.subscription_intervals
         FROM subscription_items i
         JOIN variants v ON v.id = i.variant_id JOIN products p ON p.id = v.product_id
         WHERE i.subscription_id = $1 ORDER BY i.id",
        variant_columns!()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(subscription_id)
        .fetch_all(&state.db.pool)
        .await?;
    let mut read = ReadLines::default();
    for row in &rows {
        if !leave_out.contains(&row.try_get::<i64, _>(0)?) {
            read.add_row(row, 0)?;
        }
    }
    price_lines(state, label, true, read, None).await
}

async fn availability_of(
    state: &AppState,
    variant_ids: &[i64],
) -> Result<HashMap<i64, Availability>> {
    let mut conn = state.db.pool.acquire().await?;
    let settings = state.cache.store_settings(&mut conn).await?;
    crate::inventory::availability(&mut conn, variant_ids, &settings).await
}

fn empty_cart(id: &str, signed_in: bool) -> Cart {
    Cart {
        id: id.to_owned(),
        signed_in,
        currency: None,
        lines: Vec::new(),
        cart_adjustments: Vec::new(),
        subtotal_minor: 0,
        adjustments_total_minor: 0,
        total_minor: 0,
        can_check_out: false,
        skipped_rules: Vec::new(),
        input_hash: String::new(),
    }
}

/// Prices the stored lines through the pricing rules and checks them against stock.
async fn priced(state: &AppState, id: &str, signed_in: bool) -> Result<Cart> {
    let read = stored_lines(&mut *state.db.pool.acquire().await?, id).await?;
    price_lines(state, id, signed_in, read, None).await
}

/// Prices lines through the pricing rules and checks them against stock (`stock` when
/// the caller has read it already).
async fn price_lines(
    state: &AppState,
    id: &str,
    signed_in: bool,
    read: ReadLines,
    stock: Option<HashMap<i64, Availability>>,
) -> Result<Cart> {
    let ReadLines {
        lines, variants, ..
    } = read;
    if lines.is_empty() {
        return Ok(empty_cart(id, signed_in));
    }
    let request = QuoteRequest {
        lines: lines
            .iter()
            .map(|l| QuoteLineInput {
                sku: l.sku.clone(),
                quantity: l.quantity,
                subscription: l.subscription,
            })
            .collect(),
        customer_segments: Vec::new(),
    };
    let quote =
        crate::plugins::pricing::quote_with(&state.db, &state.plugins, &request, Some(variants))
            .await?;
    let stock = match stock {
        Some(stock) => stock,
        None => {
            let variant_ids: Vec<i64> = lines.iter().map(|l| l.variant_id).collect();
            availability_of(state, &variant_ids).await?
        }
    };
    // Several lines of one variant (once and on subscription) share its stock.
    let mut wanted: HashMap<i64, u32> = HashMap::new();
    for line in &lines {
        *wanted.entry(line.variant_id).or_default() += line.quantity;
    }
    let mut out = Vec::with_capacity(lines.len());
    for (line, quoted) in lines.iter().zip(quote.lines) {
        let availability = stock
            .get(&line.variant_id)
            .cloned()
            .unwrap_or_else(Availability::out_of_stock);
        let total_wanted = i64::from(wanted[&line.variant_id]);
        let problem = if availability.sellable_quantity == 0 {
            Some("out of stock".to_owned())
        } else if total_wanted > availability.sellable_quantity {
            Some(format!(
                "only {} can be sold now",
                availability.sellable_quantity
            ))
        } else {
            None
        };
        out.push(CartLine {
            id: line.id,
            sku: quoted.sku,
            product_slug: quoted.product_slug,
            title: quoted.title,
            quantity: quoted.quantity,
            subscription: quoted.subscription,
            subscription_interval: line.interval.clone(),
            unit_price: quoted.unit_price,
            subtotal: quoted.subtotal,
            adjustments: quoted.adjustments,
            total: quoted.total,
            availability,
            problem,
            facts: quoted.facts,
        });
    }
    Ok(Cart {
        id: id.to_owned(),
        signed_in,
        currency: Some(quote.currency),
        can_check_out: out.iter().all(|l| l.problem.is_none()),
        lines: out,
        cart_adjustments: quote.cart_adjustments,
        subtotal_minor: quote.subtotal.amount_minor,
        adjustments_total_minor: quote.adjustments_total.amount_minor,
        total_minor: quote.total.amount_minor,
        skipped_rules: quote.skipped_rules,
        input_hash: quote.input_hash,
    })
}

/// The interval a new line is bought at: none for a line bought once; for a
/// subscription, the one asked for when the product offers it, else the product's first.
fn chosen_interval(input: &NewLine, offered: &str) -> Result<Option<String>> {
    let offered: Vec<&str> = offered
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    match (&input.interval, input.subscription) {
        (Some(_), false) => Err(Error::invalid(
            "interval",
            "is only for a line bought on subscription",
        )),
        (None, false) => Ok(None),
        (_, true) if offered.is_empty() => Err(Error::invalid(
            "subscription",
            "this product is not sold on subscription",
        )),
        (None, true) => Ok(Some(offered[0].to_owned())),
        (Some(wanted), true) => match offered.iter().find(|o| **o == wanted.as_str()) {
            Some(found) => Ok(Some((*found).to_owned())),
            None => Err(Error::invalid(
                "interval",
                format!("this product is delivered every {}", offered.join(", ")),
            )),
        },
    }
}

fn check_quantity(problems: &mut Problems, field: &str, quantity: u32) {
    problems.check(
        (1..=MAX_QUANTITY).contains(&quantity),
        field,
        format!("must be between 1 and {MAX_QUANTITY}"),
    );
}

/// Refuses a quantity of a variant beyond what can be sold now.
async fn check_stock(state: &AppState, variant_id: i64, wanted: u32) -> Result<()> {
    let stock = availability_of(state, &[variant_id]).await?;
    refuse_beyond_stock(&stock, variant_id, wanted)
}

fn refuse_beyond_stock(
    stock: &HashMap<i64, Availability>,
    variant_id: i64,
    wanted: u32,
) -> Result<()> {
    let sellable = stock.get(&variant_id).map_or(0, |a| a.sellable_quantity);
    if i64::from(wanted) > sellable {
        return Err(Error::conflict(
            Some("quantity"),
            if sellable == 0 {
                "this is out of stock".to_owned()
            } else {
                format!("only {sellable} can be sold now")
            },
        ));
    }
    Ok(())
}

/// Units of a variant in the cart, over every line but `except`.
async fn units_in_cart(
    state: &AppState,
    cart: &str,
    variant_id: i64,
    except: Option<i64>,
) -> Result<u32> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM cart_lines
         WHERE cart_id = $1 AND variant_id = $2 AND id <> $3",
    )
    .bind(cart)
    .bind(variant_id)
    .bind(except.unwrap_or(-1))
    .fetch_one(&state.db.pool)
    .await?;
    Ok(u32::try_from(row.try_get::<i64, _>(0)?).unwrap_or(u32::MAX))
}

async fn touch(state: &AppState, id: &str) -> Result<()> {
    sqlx::query("UPDATE carts SET updated_at = $1 WHERE id = $2")
        .bind(crate::time::now())
        .bind(id)
        .execute(&state.db.pool)
        .await?;
    Ok(())
}

/// Adds a line, or adds to the line of the same SKU and purchase kind. One transaction
/// checks, writes and reads what the answer needs; only pricing runs after it.
pub async fn add_line(
    state: &AppState,
    id: &str,
    customer: Option<&Authenticated>,
    input: NewLine,
) -> Result<Cart> {
    let mut problems = Problems::new();
    check_quantity(&mut problems, "quantity", input.quantity);
    problems.check(
        !input.sku.trim().is_empty() && input.sku.len() <= 64,
        "sku",
        "must be a SKU of up to 64 characters",
    );
    problems.into_result()?;
    let sku = input.sku.trim();
    let mut tx = state.db.begin().await?;
    let signed_in = take_open_cart(&mut tx, id, customer).await?;
    // The cart's lines and the variant to add, with what pricing reads of them, in one
    // statement (the variant's row has line id 0).
    let sql = format!(
        "SELECT {LINE_COLUMNS} FROM cart_lines l
         JOIN variants v ON v.id = l.variant_id JOIN products p ON p.id = v.product_id
         WHERE l.cart_id = $1
         UNION ALL
         SELECT CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT), p.status, {},
            CAST(NULL AS TEXT), p.subscription_intervals
         FROM variants v JOIN products p ON p.id = v.product_id WHERE v.sku = $2",
        variant_columns!()
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(sku)
        .fetch_all(&mut *tx)
        .await?;
    let mut read = ReadLines::default();
    let mut variant_id = None;
    for row in &rows {
        let is_line = row.try_get::<i64, _>(0)? != 0;
        let for_sale = read.add_row(row, 0)?;
        if !is_line {
            variant_id = for_sale;
        }
    }
    let variant_id = variant_id.ok_or_else(|| {
        Error::invalid(
            "sku",
            format!("no product for sale has SKU `{}`", input.sku),
        )
    })?;
    let interval = chosen_interval(
        &input,
        read.intervals.get(&variant_id).map_or("", String::as_str),
    )?;
    read.lines.sort_by_key(|line| line.id);
    let lines = &mut read.lines;
    let existing = lines
        .iter()
        .position(|l| l.variant_id == variant_id && l.subscription == input.subscription);
    let quantity = existing
        .map_or(0, |i| lines[i].quantity)
        .saturating_add(input.quantity);
    if quantity > MAX_QUANTITY {
        return Err(Error::invalid(
            "quantity",
            format!("a line holds at most {MAX_QUANTITY} units"),
        ));
    }
    if existing.is_none() && lines.len() >= MAX_LINES {
        return Err(Error::conflict(
            Some("sku"),
            format!("a cart holds at most {MAX_LINES} lines"),
        ));
    }
    // Lines of one variant (once and on subscription) share its stock.
    let others: u32 = lines
        .iter()
        .enumerate()
        .filter(|(i, l)| l.variant_id == variant_id && Some(*i) != existing)
        .map(|(_, l)| l.quantity)
        .sum();
    // The stock of every line is read once: for this check and for the answer.
    let mut variant_ids: Vec<i64> = lines.iter().map(|l| l.variant_id).collect();
    variant_ids.push(variant_id);
    variant_ids.sort_unstable();
    variant_ids.dedup();
    let settings = state.cache.store_settings(&mut tx).await?;
    let stock = crate::inventory::availability(&mut tx, &variant_ids, &settings).await?;
    refuse_beyond_stock(&stock, variant_id, quantity.saturating_add(others))?;
    // The cart's row is ours until commit, so the quantity computed above is the line's.
    let line_id: i64 = sqlx::query(
        "INSERT INTO cart_lines (cart_id, variant_id, subscription, quantity, added_at,
            subscription_interval)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (cart_id, variant_id, subscription) DO UPDATE SET quantity = excluded.quantity,
            subscription_interval = excluded.subscription_interval
         RETURNING id",
    )
    .bind(id)
    .bind(variant_id)
    .bind(i32::from(input.subscription))
    .bind(i64::from(quantity))
    .bind(crate::time::now())
    .bind(&interval)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    tx.commit().await?;
    match existing {
        Some(i) => {
            lines[i].quantity = quantity;
            lines[i].interval = interval;
        }
        None => lines.push(StoredLine {
            id: line_id,
            variant_id,
            sku: sku.to_owned(),
            quantity,
            subscription: input.subscription,
            interval,
        }),
    }
    price_lines(state, id, signed_in, read, Some(stock)).await
}

/// The variant of one of the cart's lines (a line of another cart is not found).
async fn line_variant(state: &AppState, id: &str, line_id: i64) -> Result<i64> {
    let row = sqlx::query("SELECT variant_id FROM cart_lines WHERE id = $1 AND cart_id = $2")
        .bind(line_id)
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("line {line_id} of cart {id}")))?;
    Ok(row.try_get(0)?)
}

/// Sets a line's quantity.
pub async fn change_line(
    state: &AppState,
    id: &str,
    customer: Option<&Authenticated>,
    line_id: i64,
    change: LineChange,
) -> Result<Cart> {
    let mut problems = Problems::new();
    check_quantity(&mut problems, "quantity", change.quantity);
    problems.into_result()?;
    let signed_in = open_cart(state, id, customer).await?;
    let variant_id = line_variant(state, id, line_id).await?;
    let others = units_in_cart(state, id, variant_id, Some(line_id)).await?;
    check_stock(state, variant_id, change.quantity.saturating_add(others)).await?;
    sqlx::query("UPDATE cart_lines SET quantity = $1 WHERE id = $2 AND cart_id = $3")
        .bind(i64::from(change.quantity))
        .bind(line_id)
        .bind(id)
        .execute(&state.db.pool)
        .await?;
    touch(state, id).await?;
    priced(state, id, signed_in).await
}

pub async fn remove_line(
    state: &AppState,
    id: &str,
    customer: Option<&Authenticated>,
    line_id: i64,
) -> Result<Cart> {
    let signed_in = open_cart(state, id, customer).await?;
    line_variant(state, id, line_id).await?;
    sqlx::query("DELETE FROM cart_lines WHERE id = $1 AND cart_id = $2")
        .bind(line_id)
        .bind(id)
        .execute(&state.db.pool)
        .await?;
    touch(state, id).await?;
    priced(state, id, signed_in).await
}

/// Moves a guest cart's lines into the signed-in customer's cart (quantities of the same
/// line add up, up to the line maximum; what stock cannot cover is flagged on the line)
/// and closes the guest cart.
pub async fn merge(state: &AppState, guest_id: &str, customer: &Authenticated) -> Result<Cart> {
    if !plausible_id(guest_id) {
        return Err(not_found(guest_id));
    }
    let target = customer_cart(state, customer).await?;
    let mut tx = state.db.begin().await?;
    let guest = sqlx::query("SELECT customer_id FROM carts WHERE id = $1 AND status = 'open'")
        .bind(guest_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(guest_id))?;
    match guest.try_get::<Option<i64>, _>(0)? {
        None => {}
        // Merging the customer's own cart into itself changes nothing.
        Some(owner) if owner == customer.customer_id && guest_id == target => {
            drop(tx);
            return priced(state, &target, true).await;
        }
        Some(_) => return Err(not_found(guest_id)),
    }
    let rows = sqlx::query(
        "SELECT variant_id, subscription, quantity, subscription_interval FROM cart_lines
         WHERE cart_id = $1 ORDER BY id",
    )
    .bind(guest_id)
    .fetch_all(&mut *tx)
    .await?;
    let now = crate::time::now();
    for row in &rows {
        let variant_id: i64 = row.try_get(0)?;
        let subscription = i32::from(row.try_get::<i64, _>(1)? != 0);
        let quantity: i64 = row.try_get(2)?;
        let interval: Option<String> = row.try_get(3)?;
        let updated = sqlx::query(
            "UPDATE cart_lines SET quantity = CASE WHEN quantity + $1 > 999 THEN 999 ELSE quantity + $1 END
             WHERE cart_id = $2 AND variant_id = $3 AND subscription = $4",
        )
        .bind(quantity)
        .bind(&target)
        .bind(variant_id)
        .bind(subscription)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO cart_lines (cart_id, variant_id, subscription, quantity, added_at,
                    subscription_interval)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&target)
            .bind(variant_id)
            .bind(subscription)
            .bind(quantity)
            .bind(&now)
            .bind(&interval)
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query("UPDATE carts SET status = 'merged', updated_at = $1 WHERE id = $2")
        .bind(&now)
        .bind(guest_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE carts SET updated_at = $1 WHERE id = $2")
        .bind(&now)
        .bind(&target)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    priced(state, &target, true).await
}
