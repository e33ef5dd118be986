//! Historical orders: lines, totals as they were charged, status, tracking number. They
//! are written as they are: never priced again, never charged, no stock reserved, no
//! `order.placed` event (no confirmation mail, no loyalty points for old purchases). The
//! order's idempotency key is `import:<legacy id>`, so the database itself refuses a
//! second order for one legacy order. A newer export updates the status, tracking,
//! refunds, identity and lines of the order.

use std::collections::HashMap;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;

use super::source::{CsvRecord, Row};
use super::{Context, Kind, Prepared, Progress, Record, Report};
use crate::error::{Error, Problems, Result};
use crate::orders::{OrderStatus, ShippingAddress};
use crate::store::Tx;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineInput {
    sku: String,
    /// Unset: the product's and variant's names as the store has them now.
    #[serde(default)]
    title: Option<String>,
    quantity: i64,
    unit_price_minor: i64,
    #[serde(default)]
    adjustments_minor: i64,
    total_minor: i64,
    #[serde(default)]
    tax_minor: i64,
}

fn legacy_method() -> String {
    "legacy".to_owned()
}

/// A historical order as the file gives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The number customers know it by; unset: the legacy id.
    #[serde(default)]
    number: Option<String>,
    /// The legacy id of an imported customer; unset: the account with the order's
    /// email, if any (else a guest order).
    #[serde(default)]
    customer: Option<String>,
    email: String,
    status: OrderStatus,
    currency: String,
    /// RFC 3339, or `YYYY-MM-DD[ HH:MM:SS]` in UTC.
    placed_at: String,
    #[serde(default)]
    updated_at: Option<String>,
    subtotal_minor: i64,
    #[serde(default)]
    adjustments_minor: i64,
    #[serde(default)]
    shipping_minor: i64,
    #[serde(default)]
    tax_minor: i64,
    total_minor: i64,
    #[serde(default)]
    prices_include_tax: bool,
    #[serde(default)]
    tax_rate_bp: i64,
    #[serde(default = "legacy_method")]
    shipping_method: String,
    shipping_address: ShippingAddress,
    #[serde(default)]
    tracking_number: Option<String>,
    #[serde(default)]
    carrier: Option<String>,
    #[serde(default)]
    refunded_minor: i64,
    lines: Vec<LineInput>,
}

/// An order checked against the store: its customer, its lines' variants.
pub struct Item {
    input: Input,
    legacy_id: String,
    number: String,
    customer_id: Option<i64>,
    /// Each line's variant and title.
    lines: Vec<(i64, String)>,
    placed_at: String,
    updated_at: String,
}

/// The orders CSV: one line an order line; lines of one order share its `legacy_id`.
pub fn from_csv(records: Vec<CsvRecord>, report: &mut Report) -> Vec<Row> {
    super::source::group_by(&records, "legacy_id")
        .into_iter()
        .map(|lines| order_row(&lines, report))
        .collect()
}

fn order_row(lines: &[&CsvRecord], report: &mut Report) -> Row {
    let first = lines[0];
    let row = first.line;
    let mut amount = |column: &str, field: &str| first.amount(column, row, field, report);
    let mut value = serde_json::json!({
        "legacy_id": first.get("legacy_id"),
        "number": first.text("number"),
        "customer": first.text("customer"),
        "email": first.get("email"),
        "status": first.get("status"),
        "currency": first.get("currency"),
        "placed_at": first.get("placed_at"),
        "updated_at": super::source::updated_at(lines),
        "subtotal_minor": amount("subtotal", "subtotal_minor"),
        "adjustments_minor": amount("adjustments", "adjustments_minor"),
        "shipping_minor": amount("shipping", "shipping_minor"),
        "tax_minor": amount("tax", "tax_minor"),
        "total_minor": amount("total", "total_minor"),
        "refunded_minor": amount("refunded", "refunded_minor"),
        "prices_include_tax": matches!(first.get("prices_include_tax").trim(), "true" | "1" | "yes"),
        "shipping_method": first.opt("shipping_method").unwrap_or("legacy"),
        "tracking_number": first.text("tracking_number"),
        "carrier": first.text("carrier"),
        "shipping_address": {
            "name": first.get("ship_name"),
            "line1": first.get("ship_line1"),
            "line2": first.text("ship_line2"),
            "city": first.get("ship_city"),
            "region": first.text("ship_region"),
            "postal_code": first.get("ship_postal_code"),
            "country": first.get("ship_country"),
        },
    });
    value["lines"] = Value::Array(
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| line_value(line, row, i, report))
            .collect(),
    );
    // Absent amounts default (0); null would not parse.
    if let Value::Object(fields) = &mut value {
        fields.retain(|_, v| !v.is_null());
    }
    Row { row, value }
}

fn line_value(line: &CsvRecord, row: usize, i: usize, report: &mut Report) -> Value {
    let field = |name: &str| format!("lines[{i}].{name}");
    let mut value = serde_json::json!({
        "sku": line.get("line_sku"),
        "title": line.text("line_title"),
        "quantity": line.integer("line_quantity", row, &field("quantity"), report),
        "unit_price_minor": line.amount("line_unit_price", row, &field("unit_price_minor"), report),
        "adjustments_minor": line.amount("line_adjustments", row, &field("adjustments_minor"), report),
        "total_minor": line.amount("line_total", row, &field("total_minor"), report),
        "tax_minor": line.amount("line_tax", row, &field("tax_minor"), report),
    });
    if let Value::Object(fields) = &mut value {
        fields.retain(|_, v| !v.is_null());
    }
    value
}

/// What the rows of one file look up again and again (a customer's orders, a SKU's
/// lines), asked once a run: imported customers by legacy id, variants by SKU.
#[derive(Default)]
struct Lookups {
    customers: HashMap<String, Option<i64>>,
    /// SKU → (variant id, product name, variant title).
    variants: HashMap<String, Option<(i64, String, String)>>,
}

pub async fn check(
    ctx: &Context,
    rows: Vec<Row>,
    report: &mut Report,
    progress: &dyn Progress,
) -> Result<Vec<Prepared>> {
    let mut prepared = Vec::new();
    let mut lookups = Lookups::default();
    let mut conn = ctx.db.pool.acquire().await?;
    for (done, mut row) in rows.into_iter().enumerate() {
        super::checked_rows(progress, done);
        let Some(legacy_id) = super::legacy_id_of(&row.value, None) else {
            report.problem(
                row.row,
                None,
                "legacy_id",
                "every order needs its legacy id",
            );
            continue;
        };
        repairs(&mut row, report);
        let Some(input) = super::parse_row::<Input>(&row, Some(&legacy_id), report) else {
            continue;
        };
        let mut problems = Problems::new();
        let times = check_fields(&mut problems, &input);
        let mut item = resolve(
            ctx,
            &mut conn,
            &mut lookups,
            &legacy_id,
            input,
            &mut problems,
        )
        .await?;
        if let Err(err) = problems.into_result() {
            report.problems_from(row.row, Some(&legacy_id), "", err)?;
            continue;
        }
        let Some((placed_at, updated_at)) = times else {
            continue;
        };
        item.placed_at = placed_at;
        item.updated_at = updated_at;
        prepared.push(Prepared {
            row: row.row,
            fingerprint: super::fingerprint(&row.value)?,
            legacy_id,
            record: Record::Order(Box::new(item)),
        });
    }
    Ok(prepared)
}

fn repairs(row: &mut Row, report: &mut Report) {
    super::repair::lowercase_email(&mut row.value, "email", row.row, report);
    if let Some(address) = row.value.get_mut("shipping_address") {
        super::repair::country(
            address,
            "country",
            "shipping_address.country",
            row.row,
            report,
        );
    }
    if let Some(Value::String(status)) = row.value.get_mut("status") {
        let lower = status.to_lowercase();
        if lower != *status {
            report.repair(row.row, "status", "lower-cased", status, &lower);
            *status = lower;
        }
    }
}

/// A legacy timestamp (RFC 3339, `YYYY-MM-DD[ HH:MM:SS]` in UTC) as the store writes
/// them.
pub(super) fn timestamp(text: &str) -> Option<String> {
    super::parse_time(text).map(crate::time::format_timestamp)
}

/// The rules that need no database; answers the order's times when they read.
fn check_fields(problems: &mut Problems, input: &Input) -> Option<(String, String)> {
    crate::accounts::check_email(problems, "email", &input.email);
    crate::orders::check_address(problems, &input.shipping_address);
    crate::catalog::model::check_currency(problems, "currency", &input.currency);
    if let Some(number) = &input.number {
        problems.check(
            !number.is_empty()
                && number.chars().count() <= 32
                && !number.chars().any(char::is_control),
            "number",
            "1 to 32 characters",
        );
    }
    problems.check(
        !input.lines.is_empty(),
        "lines",
        "an order has at least one line",
    );
    problems.check(input.lines.len() <= 500, "lines", "at most 500 lines");
    for (i, line) in input.lines.iter().enumerate() {
        problems.check(
            line.quantity > 0,
            format!("lines[{i}].quantity"),
            "must be at least 1",
        );
        problems.check(
            line.unit_price_minor >= 0,
            format!("lines[{i}].unit_price_minor"),
            "must not be negative",
        );
    }
    let tax_added = if input.prices_include_tax {
        0
    } else {
        input.tax_minor
    };
    let expected = input
        .subtotal_minor
        .saturating_add(input.adjustments_minor)
        .saturating_add(input.shipping_minor)
        .saturating_add(tax_added);
    problems.check(
        input.total_minor == expected,
        "total_minor",
        format!(
            "is not subtotal + adjustments + shipping{} ({expected})",
            if input.prices_include_tax {
                ""
            } else {
                " + tax"
            }
        ),
    );
    problems.check(
        (0..=input.total_minor.max(0)).contains(&input.refunded_minor),
        "refunded_minor",
        "must be between 0 and the total",
    );
    let placed_at = timestamp(&input.placed_at);
    problems.check(
        placed_at.is_some(),
        "placed_at",
        "must be a date and time such as 2024-03-01T10:00:00Z",
    );
    let updated_at = match &input.updated_at {
        Some(text) => {
            let at = timestamp(text);
            problems.check(
                at.is_some(),
                "updated_at",
                "must be a date and time such as 2024-03-01T10:00:00Z",
            );
            at
        }
        None => placed_at.clone(),
    };
    if let Some(at) = &placed_at {
        problems.check(
            *at <= crate::time::format_timestamp(Utc::now()),
            "placed_at",
            "must not be in the future",
        );
    }
    placed_at.zip(updated_at)
}

/// The order's customer, number and lines' variants as the store has them.
async fn resolve(
    ctx: &Context,
    conn: &mut sqlx::AnyConnection,
    lookups: &mut Lookups,
    legacy_id: &str,
    input: Input,
    problems: &mut Problems,
) -> Result<Item> {
    let number = input.number.clone().unwrap_or_else(|| legacy_id.to_owned());
    // This legacy order's local id and the order that has its number, in one round trip.
    let row = sqlx::query(
        "SELECT (SELECT local_id FROM import_records WHERE kind = $1 AND legacy_id = $2),
            (SELECT id FROM orders WHERE number = $3)",
    )
    .bind(Kind::Orders.as_str())
    .bind(legacy_id)
    .bind(&number)
    .fetch_one(&mut *conn)
    .await?;
    let mine: Option<i64> = row.try_get(0)?;
    let owner: Option<i64> = row.try_get(1)?;
    problems.check(
        owner.is_none() || owner == mine,
        "number",
        "another order (not this legacy order) has this number",
    );
    let customer_id = match &input.customer {
        Some(customer) => {
            let id = match lookups.customers.get(customer) {
                Some(id) => *id,
                None => {
                    let id = super::local_id(&mut *conn, Kind::Customers, customer).await?;
                    lookups.customers.insert(customer.clone(), id);
                    id
                }
            };
            problems.check(
                id.is_some(),
                "customer",
                format!("no imported customer has legacy id `{customer}` (import customers first)"),
            );
            id
        }
        None => {
            let lookup = ctx
                .keys
                .lookup_hash(&crate::accounts::normalise_email(&input.email));
            sqlx::query("SELECT id FROM customers WHERE email_lookup = $1")
                .bind(&lookup)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?
        }
    };
    let mut lines = Vec::new();
    for (i, line) in input.lines.iter().enumerate() {
        if !lookups.variants.contains_key(&line.sku) {
            let variant = sqlx::query(
                "SELECT v.id, p.name, v.title FROM variants v JOIN products p ON p.id = v.product_id WHERE v.sku = $1",
            )
            .bind(&line.sku)
            .fetch_optional(&mut *conn)
            .await?
            .map(|v| Ok::<_, sqlx::Error>((v.try_get(0)?, v.try_get(1)?, v.try_get(2)?)))
            .transpose()?;
            lookups.variants.insert(line.sku.clone(), variant);
        }
        match lookups.variants.get(&line.sku).and_then(Option::as_ref) {
            Some((id, product, variant)) => {
                let title = match &line.title {
                    Some(title) => title.clone(),
                    None => format!("{product} – {variant}"),
                };
                lines.push((*id, title));
            }
            None => problems.add(
                format!("lines[{i}].sku"),
                format!("no variant has SKU `{}` (import products first)", line.sku),
            ),
        }
    }
    Ok(Item {
        input,
        legacy_id: legacy_id.to_owned(),
        number,
        customer_id,
        lines,
        placed_at: String::new(),
        updated_at: String::new(),
    })
}

fn address_json(item: &Item) -> Result<String> {
    let mut address = item.input.shipping_address.clone();
    address.country = address.country.trim().to_ascii_uppercase();
    Ok(serde_json::to_string(&address).map_err(anyhow::Error::from)?)
}

/// The order's email and address, encrypted: under its customer's own key, or a guest
/// order's under the shared key.
async fn sealed_identity(ctx: &Context, tx: &mut Tx, item: &Item) -> Result<(String, String)> {
    let (email, address) = (item.input.email.as_str(), address_json(item)?);
    let (email_context, address_context) =
        (crate::orders::EMAIL_CONTEXT, crate::orders::ADDRESS_CONTEXT);
    Ok(match item.customer_id {
        Some(customer_id) => {
            // A read of the committed key first (outside this transaction, which may
            // still roll back): it caches the key, so the write below answers from the
            // cache instead of an upsert of the customer's key for every order.
            ctx.keys.customer(&ctx.db.pool, customer_id).await?;
            let fields = ctx.keys.customer_for_writing(tx, customer_id).await?;
            (
                fields.encrypt(email_context, email)?,
                fields.encrypt(address_context, &address)?,
            )
        }
        None => (
            ctx.keys.encrypt_field(email_context, email)?,
            ctx.keys.encrypt_field(address_context, &address)?,
        ),
    })
}

pub async fn create(ctx: &Context, tx: &mut Tx, item: &Item) -> Result<i64> {
    let input = &item.input;
    let (email_enc, address_enc) = sealed_identity(ctx, tx, item).await?;
    let row = sqlx::query(
        "INSERT INTO orders (number, customer_id, cart_id, idempotency_key, status, currency,
            subtotal_minor, adjustments_minor, shipping_minor, tax_minor, total_minor,
            shipping_method, country, email_enc, shipping_address_enc, tracking_number, carrier,
            refunded_minor, prices_include_tax, tax_rate_bp, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20, $21, $22)
         RETURNING id",
    )
    .bind(&item.number)
    .bind(item.customer_id)
    .bind(format!("import:{}", item.legacy_id))
    .bind(format!("import:{}", item.legacy_id))
    .bind(input.status.as_str())
    .bind(&input.currency)
    .bind(input.subtotal_minor)
    .bind(input.adjustments_minor)
    .bind(input.shipping_minor)
    .bind(input.tax_minor)
    .bind(input.total_minor)
    .bind(&input.shipping_method)
    .bind(input.shipping_address.country.trim().to_ascii_uppercase())
    .bind(email_enc)
    .bind(address_enc)
    .bind(&input.tracking_number)
    .bind(&input.carrier)
    .bind(input.refunded_minor)
    .bind(i64::from(input.prices_include_tax))
    .bind(input.tax_rate_bp)
    .bind(&item.placed_at)
    .bind(&item.updated_at)
    .fetch_one(&mut **tx)
    .await
    .map_err(|err| {
        if crate::store::is_unique_violation(&err) {
            Error::conflict(
                Some("number"),
                "an order with this number or legacy id exists",
            )
        } else {
            err.into()
        }
    })?;
    let order_id: i64 = row.try_get(0)?;
    write_lines(tx, order_id, item).await?;
    Ok(order_id)
}

async fn write_lines(tx: &mut Tx, order_id: i64, item: &Item) -> Result<()> {
    for (line, (variant_id, title)) in item.input.lines.iter().zip(&item.lines) {
        sqlx::query(
            "INSERT INTO order_lines (order_id, variant_id, sku, title, quantity, subscription,
                unit_price_minor, adjustments_minor, total_minor, adjustments, tax_minor)
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, '[]', $9)",
        )
        .bind(order_id)
        .bind(*variant_id)
        .bind(&line.sku)
        .bind(title)
        .bind(line.quantity)
        .bind(line.unit_price_minor)
        .bind(line.adjustments_minor)
        .bind(line.total_minor)
        .bind(line.tax_minor)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A newer export of the order: status, tracking, refunds, totals, identity and lines
/// as it has them (an import's change, not a transition: nothing is charged, refunded
/// or released). An erased customer's identity stays erased.
pub async fn update(ctx: &Context, tx: &mut Tx, item: &Item, local_id: i64) -> Result<()> {
    let input = &item.input;
    let (email_enc, address_enc) = sealed_identity(ctx, tx, item).await?;
    sqlx::query(
        "UPDATE orders SET number = $1, customer_id = $2, status = $3, currency = $4,
            subtotal_minor = $5, adjustments_minor = $6, shipping_minor = $7, tax_minor = $8,
            total_minor = $9, shipping_method = $10, country = $11,
            email_enc = CASE WHEN email_enc = '' THEN '' ELSE $12 END,
            shipping_address_enc = CASE WHEN shipping_address_enc = '' THEN '' ELSE $13 END,
            tracking_number = $14, carrier = $15,
            refunded_minor = $16, prices_include_tax = $17, tax_rate_bp = $18, updated_at = $19
         WHERE id = $20",
    )
    .bind(&item.number)
    .bind(item.customer_id)
    .bind(input.status.as_str())
    .bind(&input.currency)
    .bind(input.subtotal_minor)
    .bind(input.adjustments_minor)
    .bind(input.shipping_minor)
    .bind(input.tax_minor)
    .bind(input.total_minor)
    .bind(&input.shipping_method)
    .bind(input.shipping_address.country.trim().to_ascii_uppercase())
    .bind(email_enc)
    .bind(address_enc)
    .bind(&input.tracking_number)
    .bind(&input.carrier)
    .bind(input.refunded_minor)
    .bind(i64::from(input.prices_include_tax))
    .bind(input.tax_rate_bp)
    .bind(&item.updated_at)
    .bind(local_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM order_lines WHERE order_id = $1")
        .bind(local_id)
        .execute(&mut **tx)
        .await?;
    write_lines(tx, local_id, item).await
}
