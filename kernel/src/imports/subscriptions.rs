//! Subscriptions: interval, next renewal, items, and the processor's saved payment
//! method reference, for customers and origin orders imported before. The email, the
//! address, the currency and the delivery are the origin order's, as for a subscription
//! made at checkout. Nothing is charged on import; the subscription renews at its next
//! date like any other (which must be in the future).

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;

use super::source::{CsvRecord, Row};
use super::{Context, Kind, Prepared, Progress, Record, Report};
use crate::error::{Error, Problems, Result};
use crate::orders::Charge;
use crate::store::Tx;
use crate::subscriptions::{Interval, Status};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemInput {
    sku: String,
    quantity: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The legacy id of an imported customer.
    customer: String,
    /// The legacy id of the imported order that started it.
    origin_order: String,
    status: Status,
    /// `30d`, `2w`, `1m`.
    interval: String,
    /// RFC 3339 or `YYYY-MM-DD` (UTC); in the future.
    next_renewal_at: String,
    /// The payment processor's reference of the customer's saved payment method.
    payment_method: String,
    items: Vec<ItemInput>,
}

pub struct Item {
    input: Input,
    interval: Interval,
    next_renewal_at: String,
    customer_id: i64,
    origin_order_id: i64,
    /// Each item's variant.
    variants: Vec<i64>,
}

/// The subscriptions CSV: one line an item; lines with the same `legacy_id` are one
/// subscription: `legacy_id, customer, origin_order, status, interval, next_renewal_at,
/// payment_method, sku, quantity, updated_at`.
pub fn from_csv(records: Vec<CsvRecord>, report: &mut Report) -> Vec<Row> {
    super::source::group_by(&records, "legacy_id")
        .into_iter()
        .map(|lines| {
            let first = lines[0];
            let row = first.line;
            let items: Vec<Value> = lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let field = format!("items[{i}].quantity");
                    serde_json::json!({
                        "sku": l.get("sku"),
                        "quantity": l.integer("quantity", row, &field, report),
                    })
                })
                .collect();
            let value = serde_json::json!({
                "legacy_id": first.get("legacy_id"),
                "customer": first.get("customer"),
                "origin_order": first.get("origin_order"),
                "status": first.get("status").to_lowercase(),
                "interval": first.get("interval"),
                "next_renewal_at": first.get("next_renewal_at"),
                "payment_method": first.get("payment_method"),
                "items": items,
                "updated_at": super::source::updated_at(&lines),
            });
            Row { row, value }
        })
        .collect()
}

pub async fn check(
    ctx: &Context,
    rows: Vec<Row>,
    report: &mut Report,
    progress: &dyn Progress,
) -> Result<Vec<Prepared>> {
    let mut prepared = Vec::new();
    let mut conn = ctx.db.pool.acquire().await?;
    for (done, row) in rows.into_iter().enumerate() {
        super::checked_rows(progress, done);
        let Some(legacy_id) = super::legacy_id_of(&row.value, None) else {
            report.problem(
                row.row,
                None,
                "legacy_id",
                "every subscription needs its legacy id",
            );
            continue;
        };
        let Some(input) = super::parse_row::<Input>(&row, Some(&legacy_id), report) else {
            continue;
        };
        let mut problems = Problems::new();
        let item = resolve(&mut conn, input, &mut problems).await?;
        if let Err(err) = problems.into_result() {
            report.problems_from(row.row, Some(&legacy_id), "", err)?;
            continue;
        }
        let Some(item) = item else { continue };
        prepared.push(Prepared {
            row: row.row,
            fingerprint: super::fingerprint(&row.value)?,
            legacy_id,
            record: Record::Subscription(Box::new(item)),
        });
    }
    Ok(prepared)
}

/// Checks a subscription against the store: its customer and origin order imported
/// (the order that customer's), its SKUs known, its next renewal ahead.
async fn resolve(
    conn: &mut sqlx::AnyConnection,
    input: Input,
    problems: &mut Problems,
) -> Result<Option<Item>> {
    let interval = Interval::parse(&input.interval);
    problems.check(
        interval.is_some(),
        "interval",
        "must be every 1 to 366 days (`30d`), 52 weeks (`2w`) or 12 months (`1m`)",
    );
    let next = super::orders::timestamp(&input.next_renewal_at);
    problems.check(
        next.as_ref()
            .is_some_and(|at| *at > crate::time::format_timestamp(Utc::now())),
        "next_renewal_at",
        "must be a date and time in the future, such as 2030-03-01T10:00:00Z",
    );
    let method = input.payment_method.trim();
    problems.check(
        !method.is_empty() && method.len() <= 200 && !method.chars().any(char::is_control),
        "payment_method",
        "the processor's reference of the saved payment method: 1 to 200 characters",
    );
    problems.check(
        !input.items.is_empty(),
        "items",
        "a subscription has at least one item",
    );
    let customer_id = super::local_id(&mut *conn, Kind::Customers, &input.customer).await?;
    problems.check(
        customer_id.is_some(),
        "customer",
        format!(
            "no imported customer has legacy id `{}` (import customers first)",
            input.customer
        ),
    );
    let origin_order_id = super::local_id(&mut *conn, Kind::Orders, &input.origin_order).await?;
    problems.check(
        origin_order_id.is_some(),
        "origin_order",
        format!(
            "no imported order has legacy id `{}` (import orders first)",
            input.origin_order
        ),
    );
    if let (Some(order), Some(customer)) = (origin_order_id, customer_id) {
        let owner: Option<i64> = sqlx::query("SELECT customer_id FROM orders WHERE id = $1")
            .bind(order)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        problems.check(
            owner == Some(customer),
            "origin_order",
            "is not an order of this customer",
        );
    }
    let mut variants = Vec::new();
    for (i, item) in input.items.iter().enumerate() {
        problems.check(
            item.quantity > 0,
            format!("items[{i}].quantity"),
            "must be at least 1",
        );
        let variant = sqlx::query("SELECT id FROM variants WHERE sku = $1")
            .bind(&item.sku)
            .fetch_optional(&mut *conn)
            .await?;
        match variant {
            Some(v) => variants.push(v.try_get(0)?),
            None => problems.add(
                format!("items[{i}].sku"),
                format!("no variant has SKU `{}` (import products first)", item.sku),
            ),
        }
    }
    let (Some(interval), Some(next_renewal_at), Some(customer_id), Some(origin_order_id)) =
        (interval, next, customer_id, origin_order_id)
    else {
        return Ok(None);
    };
    Ok(Some(Item {
        input,
        interval,
        next_renewal_at,
        customer_id,
        origin_order_id,
        variants,
    }))
}

fn payment_method_enc(ctx: &Context, item: &Item) -> Result<String> {
    let saved = Charge::Saved(item.input.payment_method.trim().to_owned());
    Ok(ctx.keys.encrypt_field(
        crate::subscriptions::PAYMENT_METHOD_CONTEXT,
        &saved.encode(),
    )?)
}

pub async fn create(ctx: &Context, tx: &mut Tx, item: &Item) -> Result<i64> {
    let now = crate::time::now();
    let row = sqlx::query(
        "INSERT INTO subscriptions (number, customer_id, origin_order_id, status,
            interval_count, interval_unit, cycle, next_renewal_at, currency, shipping_method,
            country, email_enc, shipping_address_enc, payment_method_enc, cancel_reason,
            created_at, updated_at)
         SELECT $1, $2, $3, $4, $5, $6, 1, $7, currency, shipping_method, country, email_enc,
            shipping_address_enc, $8, $9, $10, $10
         FROM orders WHERE id = $3
         RETURNING id",
    )
    .bind(crate::orders::public_number("SUB"))
    .bind(item.customer_id)
    .bind(item.origin_order_id)
    .bind(item.input.status.as_str())
    .bind(item.interval.count)
    .bind(item.interval.unit.as_str())
    .bind(&item.next_renewal_at)
    .bind(payment_method_enc(ctx, item)?)
    .bind(cancel_reason(item))
    .bind(&now)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| Error::not_found("the origin order"))?;
    let id: i64 = row.try_get(0)?;
    write_items(tx, id, item).await?;
    Ok(id)
}

fn cancel_reason(item: &Item) -> Option<&'static str> {
    (item.input.status == Status::Cancelled).then_some("imported cancelled")
}

async fn write_items(tx: &mut Tx, id: i64, item: &Item) -> Result<()> {
    sqlx::query("DELETE FROM subscription_items WHERE subscription_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for (input, variant_id) in item.input.items.iter().zip(&item.variants) {
        sqlx::query(
            "INSERT INTO subscription_items (subscription_id, variant_id, quantity)
             VALUES ($1, $2, $3)
             ON CONFLICT (subscription_id, variant_id) DO UPDATE
                SET quantity = subscription_items.quantity + excluded.quantity",
        )
        .bind(id)
        .bind(*variant_id)
        .bind(input.quantity)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A newer export: status, interval, next renewal, payment method and items as it has
/// them.
pub async fn update(ctx: &Context, tx: &mut Tx, item: &Item, local_id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE subscriptions SET status = $1, interval_count = $2, interval_unit = $3,
            next_renewal_at = $4, payment_method_enc = $5, cancel_reason = $6, updated_at = $7
         WHERE id = $8",
    )
    .bind(item.input.status.as_str())
    .bind(item.interval.count)
    .bind(item.interval.unit.as_str())
    .bind(&item.next_renewal_at)
    .bind(payment_method_enc(ctx, item)?)
    .bind(cancel_reason(item))
    .bind(crate::time::now())
    .bind(local_id)
    .execute(&mut **tx)
    .await?;
    write_items(tx, local_id, item).await
}
