//! Lot recalls. Supplements and cosmetics are recalled by batch: staff name the batch
//! number (and, when the same number is used for more than one product, the SKU), its lots
//! stop selling at once, and the recall's report lists every order that received units of
//! it, with the customer's email, from the allocations checkout recorded.
//!
//! Owns the table `lot_recalls` and `lots.recall_id`. A recalled lot is never sellable:
//! availability, checkout's reservation and renewals read lots through
//! [`super::sellable_lots_sql`], which leaves them out. The recall writes one
//! `stock.changed` event per lot (reason `recalled`), so every node's catalog cache, the
//! search index and live stock follow it, and a cart holding the variant shows what is
//! left to sell when it is next read. A `lot.recalled` event makes the notification
//! router tell every customer whose order received units of the batch (topic
//! `order.recalled`).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::{Error, Problems, Result};

/// A recall as staff ask for it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRecall {
    /// The batch number printed on the packs.
    #[schema(example = "B2026-114")]
    pub batch: String,
    /// Only this variant's lots of the batch (when another product uses the same number).
    #[serde(default)]
    pub sku: Option<String>,
    /// Why, for the audit log and the report (e.g. the supplier's notice).
    #[schema(example = "Supplier notice 2026-12-01: possible contamination")]
    pub reason: String,
}

/// A lot taken out of sale by a recall.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecalledLot {
    pub lot_id: i64,
    pub variant_id: i64,
    pub sku: String,
    pub location: String,
    pub expires_on: String,
    /// Units still in the lot (kept for the write-off or the return to the supplier).
    pub quantity: i64,
}

/// An order that received units of a recalled batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AffectedOrder {
    pub order_number: String,
    pub status: String,
    pub ordered_at: String,
    pub customer_id: Option<i64>,
    /// The email the order was placed with (empty once the customer was erased).
    pub email: String,
    pub sku: String,
    pub units: i64,
}

/// A recall with its report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recall {
    pub id: i64,
    pub batch: String,
    pub sku: Option<String>,
    pub reason: String,
    pub recalled_by: String,
    pub created_at: String,
    pub lots: Vec<RecalledLot>,
    /// Every order that received units of the recalled lots, oldest first.
    pub orders: Vec<AffectedOrder>,
    /// Units of the batch that reached customers.
    pub units_sold: i64,
}

/// A recall in the list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecallSummary {
    pub id: i64,
    pub batch: String,
    pub sku: Option<String>,
    pub reason: String,
    pub recalled_by: String,
    pub created_at: String,
    pub lots: i64,
}

const BATCH_MAX: usize = 100;
const REASON_MAX: usize = 1000;

fn check(input: &NewRecall) -> Result<(String, Option<String>, String)> {
    let batch = input.batch.trim().to_owned();
    let sku = input
        .sku
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let reason = input.reason.trim().to_owned();
    let mut problems = Problems::default();
    if batch.is_empty() || batch.chars().count() > BATCH_MAX {
        problems.add(
            "batch",
            format!("a batch number of 1 to {BATCH_MAX} characters"),
        );
    }
    if reason.is_empty() || reason.chars().count() > REASON_MAX {
        problems.add(
            "reason",
            format!("say why, in 1 to {REASON_MAX} characters"),
        );
    }
    problems.into_result()?;
    Ok((batch, sku, reason))
}

/// Recalls a batch: every lot with that batch number (of `sku` only, when given) that is
/// not recalled already stops selling, in one transaction with the `stock.changed` events
/// and the audit entry. 422 naming `batch` (or `sku`) when no lot matches; 409 when every
/// matching lot is recalled already.
pub async fn recall(state: &AppState, input: &NewRecall, actor: &str) -> Result<Recall> {
    let (batch, sku, reason) = check(input)?;
    let now = crate::time::now();
    let mut tx = state.db.begin().await?;
    let matching = matching_lots(&mut tx, &batch, sku.as_deref()).await?;
    if matching.is_empty() {
        let field = if sku.is_some() { "sku" } else { "batch" };
        return Err(Error::invalid(field, "no lot has this batch number"));
    }
    let open: Vec<i64> = matching
        .iter()
        .filter(|(_, recalled)| !recalled)
        .map(|(id, _)| *id)
        .collect();
    if open.is_empty() {
        return Err(Error::conflict(
            Some("batch"),
            "every lot of this batch is recalled already",
        ));
    }
    let id: i64 = sqlx::query(
        "INSERT INTO lot_recalls (batch, sku, reason, recalled_by, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&batch)
    .bind(sku.as_deref())
    .bind(&reason)
    .bind(actor)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    take_out_of_sale(&mut tx, id, &open, &now).await?;
    // The notification router tells the customers who received units of it.
    crate::bus::record(
        &mut tx,
        "lot_recall",
        id,
        "lot.recalled",
        &serde_json::json!({ "recall_id": id, "batch": batch, "reason": reason }),
    )
    .await?;
    let report = report(state, &mut tx, id).await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "stock.recalled",
            target_type: "lot_recall",
            target_id: id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "batch": batch, "sku": sku, "reason": reason,
                "lots": report.lots.iter().map(|l| l.lot_id).collect::<Vec<_>>(),
                "orders": report.orders.len(), "units_sold": report.units_sold,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    metrics::counter!("olivine_lot_recalls_total").increment(1);
    Ok(report)
}

/// The lots a recall of `batch` (of `sku`, when given) would take out of sale now: what
/// the admin's confirmation shows before staff recall.
pub async fn lots_to_recall(
    conn: &mut AnyConnection,
    batch: &str,
    sku: Option<&str>,
) -> Result<Vec<RecalledLot>> {
    let rows = sqlx::query(
        "SELECT l.id, l.variant_id, v.sku, loc.code, l.expires_on, l.quantity
         FROM lots l JOIN variants v ON v.id = l.variant_id JOIN locations loc ON loc.id = l.location_id
         WHERE l.batch = $1 AND ($2 IS NULL OR v.sku = $2) AND l.recall_id IS NULL
         ORDER BY v.sku, l.id",
    )
    .bind(batch.trim())
    .bind(sku.map(str::trim).filter(|s| !s.is_empty()))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(recalled_lot).collect()
}

fn recalled_lot(row: &sqlx::any::AnyRow) -> Result<RecalledLot> {
    Ok(RecalledLot {
        lot_id: row.try_get(0)?,
        variant_id: row.try_get(1)?,
        sku: row.try_get(2)?,
        location: row.try_get(3)?,
        expires_on: row.try_get(4)?,
        quantity: row.try_get(5)?,
    })
}

/// The lots with `batch` (of `sku`, when given): id and whether recalled already.
async fn matching_lots(
    conn: &mut AnyConnection,
    batch: &str,
    sku: Option<&str>,
) -> Result<Vec<(i64, bool)>> {
    let rows = sqlx::query(
        "SELECT l.id, l.recall_id FROM lots l JOIN variants v ON v.id = l.variant_id
         WHERE l.batch = $1 AND ($2 IS NULL OR v.sku = $2) ORDER BY l.id",
    )
    .bind(batch)
    .bind(sku)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get::<Option<i64>, _>(1)?.is_some())))
        .collect()
}

/// Marks the lots recalled and writes their `stock.changed` events.
async fn take_out_of_sale(
    conn: &mut AnyConnection,
    recall_id: i64,
    lot_ids: &[i64],
    now: &str,
) -> Result<()> {
    let mut variants: Vec<(i64, i64, i64)> = Vec::with_capacity(lot_ids.len());
    for chunk in lot_ids.chunks(100) {
        let list = super::placeholders(3, chunk.len());
        let sql = format!(
            "UPDATE lots SET recall_id = $1, updated_at = $2
             WHERE recall_id IS NULL AND id IN ({list}) RETURNING id, variant_id, quantity"
        );
        let mut update = sqlx::query(AssertSqlSafe(sql)).bind(recall_id).bind(now);
        for id in chunk {
            update = update.bind(*id);
        }
        for row in update.fetch_all(&mut *conn).await? {
            variants.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
        }
    }
    let variant_ids: BTreeSet<i64> = variants.iter().map(|(_, v, _)| *v).collect();
    let products = super::affected_products_of(conn, &variant_ids).await?;
    let events: Vec<_> = variants
        .iter()
        .map(|(lot_id, variant_id, quantity)| crate::bus::NewEvent {
            aggregate_type: "variant",
            aggregate_id: variant_id.to_string(),
            event_type: "stock.changed",
            payload: serde_json::json!({
                "variant_id": variant_id,
                "lot_id": lot_id,
                "delta": 0,
                "quantity_after": quantity,
                "reason": "recalled",
                "recall_id": recall_id,
                "products": products.get(variant_id).cloned().unwrap_or_default(),
            }),
        })
        .collect();
    crate::bus::record_all(conn, &events).await?;
    Ok(())
}

/// The recall `id` with its lots and the orders that received units of them.
pub async fn report(state: &AppState, conn: &mut AnyConnection, id: i64) -> Result<Recall> {
    let row = sqlx::query(
        "SELECT batch, sku, reason, recalled_by, created_at FROM lot_recalls WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found(format!("recall {id}")))?;
    let lots = sqlx::query(
        "SELECT l.id, l.variant_id, v.sku, loc.code, l.expires_on, l.quantity
         FROM lots l JOIN variants v ON v.id = l.variant_id JOIN locations loc ON loc.id = l.location_id
         WHERE l.recall_id = $1 ORDER BY v.sku, l.id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(recalled_lot)
    .collect::<Result<Vec<_>>>()?;
    let orders = affected_orders(state, conn, id).await?;
    Ok(Recall {
        id,
        batch: row.try_get(0)?,
        sku: row.try_get(1)?,
        reason: row.try_get(2)?,
        recalled_by: row.try_get(3)?,
        created_at: row.try_get(4)?,
        units_sold: orders.iter().map(|o| o.units).sum(),
        lots,
        orders,
    })
}

/// The orders that received units of the recall's lots, one row per order and SKU. A
/// cancelled order released its units: it is left out.
async fn affected_orders(
    state: &AppState,
    conn: &mut AnyConnection,
    recall_id: i64,
) -> Result<Vec<AffectedOrder>> {
    let rows = sqlx::query(
        "SELECT o.number, o.status, o.created_at, o.customer_id, o.email_enc, v.sku,
                CAST(SUM(a.quantity) AS BIGINT)
         FROM order_allocations a
           JOIN lots l ON l.id = a.lot_id
           JOIN orders o ON o.id = a.order_id
           JOIN variants v ON v.id = a.variant_id
         WHERE l.recall_id = $1 AND o.status <> 'cancelled'
         GROUP BY o.id, o.number, o.status, o.created_at, o.customer_id, o.email_enc, v.sku
         ORDER BY o.created_at, o.id, v.sku",
    )
    .bind(recall_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut orders = Vec::with_capacity(rows.len());
    for row in &rows {
        let email_enc: String = row.try_get(4)?;
        let email = if email_enc.is_empty() {
            String::new()
        } else {
            state
                .keys
                .decrypt_any(&mut *conn, crate::orders::EMAIL_CONTEXT, &email_enc)
                .await?
        };
        orders.push(AffectedOrder {
            order_number: row.try_get(0)?,
            status: row.try_get(1)?,
            ordered_at: row.try_get(2)?,
            customer_id: row.try_get(3)?,
            email,
            sku: row.try_get(5)?,
            units: row.try_get(6)?,
        });
    }
    Ok(orders)
}

/// The recalls, newest first.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<RecallSummary>> {
    let rows = sqlx::query(
        "SELECT r.id, r.batch, r.sku, r.reason, r.recalled_by, r.created_at,
                (SELECT CAST(COUNT(*) AS BIGINT) FROM lots l WHERE l.recall_id = r.id)
         FROM lot_recalls r ORDER BY r.id DESC LIMIT 1000",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RecallSummary {
                id: row.try_get(0)?,
                batch: row.try_get(1)?,
                sku: row.try_get(2)?,
                reason: row.try_get(3)?,
                recalled_by: row.try_get(4)?,
                created_at: row.try_get(5)?,
                lots: row.try_get(6)?,
            })
        })
        .collect()
}

/// The report as CSV (RFC 4180), one line per order and SKU, for the merchant's
/// customer service or the authority.
pub fn report_csv(recall: &Recall) -> Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let written = (|| {
        out.write_record([
            "order_number",
            "status",
            "ordered_at",
            "customer_id",
            "email",
            "sku",
            "batch",
            "units",
        ])?;
        for order in &recall.orders {
            out.write_record([
                order.order_number.as_str(),
                order.status.as_str(),
                order.ordered_at.as_str(),
                &order
                    .customer_id
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                order.email.as_str(),
                order.sku.as_str(),
                recall.batch.as_str(),
                &order.units.to_string(),
            ])?;
        }
        out.flush()
    })();
    written.map_err(|err| Error::Internal(anyhow::anyhow!("writing the recall CSV: {err}")))?;
    let bytes = out
        .into_inner()
        .map_err(|err| Error::Internal(anyhow::anyhow!("writing the recall CSV: {err}")))?;
    String::from_utf8(bytes).map_err(|err| Error::Internal(anyhow::anyhow!(err)))
}
