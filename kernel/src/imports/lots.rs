//! Stock lots: batch, manufacture and expiry dates, quantity, location. A new lot is
//! received through the inventory (its ledger explains every unit); a newer export sets
//! the lot's quantity with a count correction in the ledger and its dates as given.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row as _;

use super::source::{CsvRecord, Row};
use super::{Context, Kind, Prepared, Progress, Record, Report};
use crate::error::{Error, Problems, Result};
use crate::inventory::{self, NewLot, StockChange, StockReason};
use crate::store::Tx;

/// What is imported of a lot (and fingerprinted): the API's `NewLot`.
#[derive(Debug, Serialize)]
pub struct Item {
    sku: String,
    location: String,
    batch: String,
    manufactured_on: String,
    expires_on: String,
    quantity: i64,
    note: Option<String>,
}

impl Item {
    fn new_lot(&self) -> NewLot {
        NewLot {
            sku: self.sku.clone(),
            location: self.location.clone(),
            batch: self.batch.clone(),
            manufactured_on: self.manufactured_on.clone(),
            expires_on: self.expires_on.clone(),
            quantity: self.quantity,
            note: self.note.clone(),
        }
    }
}

/// The lots CSV: `legacy_id, sku, location, batch, manufactured_on, expires_on,
/// quantity, note, updated_at`.
pub fn from_csv(records: Vec<CsvRecord>) -> Vec<Row> {
    records
        .iter()
        .map(|r| {
            // Whole numbers go through as numbers; anything else as text for the
            // check to name.
            let quantity = r
                .get("quantity")
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(r.get("quantity").to_owned()));
            let mut value = serde_json::json!({
                "sku": r.get("sku"),
                "location": r.get("location"),
                "batch": r.get("batch"),
                "manufactured_on": r.get("manufactured_on"),
                "expires_on": r.get("expires_on"),
                "quantity": quantity,
                "note": r.text("note"),
            });
            if let Some(id) = r.opt("legacy_id") {
                value["legacy_id"] = Value::String(id.to_owned());
            }
            value["updated_at"] = super::source::updated_at(&[r]);
            Row { row: r.line, value }
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
        let text = |field: &str| row.value.get(field).and_then(Value::as_str).unwrap_or("");
        let fallback = format!("{}/{}/{}", text("sku"), text("location"), text("batch"));
        let Some(legacy_id) = super::legacy_id_of(&row.value, Some(&fallback)) else {
            continue;
        };
        let Some(lot) = super::parse_row::<NewLot>(&row, Some(&legacy_id), report) else {
            continue;
        };
        let mut problems = Problems::new();
        inventory::check_new_lot(&mut problems, &lot);
        if let Err(err) = problems.into_result() {
            report.problems_from(row.row, Some(&legacy_id), "", err)?;
            continue;
        }
        if let Err(err) = check_place(&mut conn, &legacy_id, &lot).await {
            report.problems_from(row.row, Some(&legacy_id), "", err)?;
            continue;
        }
        let item = Item {
            sku: lot.sku,
            location: lot.location,
            batch: lot.batch.trim().to_owned(),
            manufactured_on: lot.manufactured_on,
            expires_on: lot.expires_on,
            quantity: lot.quantity,
            note: lot.note,
        };
        prepared.push(Prepared {
            row: row.row,
            fingerprint: super::fingerprint(&item)?,
            legacy_id,
            record: Record::Lot(item),
        });
    }
    Ok(prepared)
}

/// The SKU (not a bundle) and the location exist; the batch there is this legacy
/// lot's or nobody's; an imported lot keeps its SKU, location and batch.
async fn check_place(conn: &mut sqlx::AnyConnection, legacy_id: &str, lot: &NewLot) -> Result<()> {
    let variant = sqlx::query(
        "SELECT v.id, p.product_type FROM variants v JOIN products p ON p.id = v.product_id WHERE v.sku = $1",
    )
    .bind(&lot.sku)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::invalid("sku", format!("no variant has SKU `{}` (import products first)", lot.sku)))?;
    if variant.try_get::<String, _>(1)? == "bundle" {
        return Err(Error::invalid("sku", "bundles hold no stock of their own"));
    }
    let variant_id: i64 = variant.try_get(0)?;
    let location_id: i64 = sqlx::query("SELECT id FROM locations WHERE code = $1")
        .bind(&lot.location)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::invalid("location", format!("unknown location `{}`", lot.location)))?
        .try_get(0)?;
    let there: Option<i64> = sqlx::query(
        "SELECT id FROM lots WHERE variant_id = $1 AND location_id = $2 AND batch = $3",
    )
    .bind(variant_id)
    .bind(location_id)
    .bind(lot.batch.trim())
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get(0))
    .transpose()?;
    let mine = super::local_id(&mut *conn, Kind::Lots, legacy_id).await?;
    match (there, mine) {
        (Some(there), Some(mine)) if there == mine => Ok(()),
        (Some(_), _) => Err(Error::invalid(
            "batch",
            "this batch of this SKU is already at this location (not from this legacy lot)",
        )),
        (None, Some(_)) => Err(Error::invalid(
            "batch",
            "an imported lot keeps its SKU, location and batch; give the new one another legacy_id",
        )),
        (None, None) => Ok(()),
    }
}

pub async fn create(ctx: &Context, tx: &mut Tx, item: &Item) -> Result<i64> {
    inventory::receive_lot(tx, &item.new_lot(), &ctx.actor).await
}

/// The dates as given; the quantity set by a count correction (the ledger says so).
pub async fn update(ctx: &Context, tx: &mut Tx, item: &Item, local_id: i64) -> Result<()> {
    let current: i64 = sqlx::query(
        "UPDATE lots SET manufactured_on = $1, expires_on = $2 WHERE id = $3 RETURNING quantity",
    )
    .bind(&item.manufactured_on)
    .bind(&item.expires_on)
    .bind(local_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| Error::not_found(format!("lot {local_id}")))?
    .try_get(0)?;
    let delta = item.quantity - current;
    if delta != 0 {
        inventory::change_lot_quantity(
            tx,
            local_id,
            delta,
            &StockChange {
                reason: StockReason::CountCorrection,
                actor: &ctx.actor,
                note: Some("import"),
                reference: Some(&item.batch),
            },
        )
        .await?;
    }
    Ok(())
}
