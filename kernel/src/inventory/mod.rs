//! Stock: locations, lots with batch and expiry, the stock ledger, sellable quantities and
//! first-expired-first-out allocation.
//!
//! A lot can be sold only while its expiry date is at least the merchant's minimum
//! remaining shelf life away. Every quantity change goes through [`change_lot_quantity`],
//! which writes the ledger entry and the event in the caller's transaction.

pub mod api;
pub mod recall;
pub mod settings;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use utoipa::ToSchema;

use crate::error::{Error, Result};
pub use settings::StoreSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockState {
    InStock,
    LowStock,
    OutOfStock,
}

/// What can be sold of a variant now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Availability {
    pub state: StockState,
    /// Units that can be sold: unexpired lots outside the minimum shelf life (for a
    /// bundle: how many complete bundles its components make).
    pub sellable_quantity: i64,
    /// The expiry date of the lot that would ship first (first expired, first out).
    pub best_before: Option<String>,
}

impl Availability {
    pub fn out_of_stock() -> Self {
        Availability {
            state: StockState::OutOfStock,
            sellable_quantity: 0,
            best_before: None,
        }
    }

    fn new(quantity: i64, best_before: Option<String>, low_stock_threshold: i64) -> Self {
        let state = if quantity <= 0 {
            StockState::OutOfStock
        } else if quantity <= low_stock_threshold {
            StockState::LowStock
        } else {
            StockState::InStock
        };
        Availability {
            state,
            sellable_quantity: quantity.max(0),
            best_before: if quantity > 0 { best_before } else { None },
        }
    }
}

/// The first expiry date that may still be sold today.
pub fn sellable_cutoff(today: NaiveDate, settings: &StoreSettings) -> NaiveDate {
    let days = u64::try_from(settings.min_shelf_life_days.max(0)).unwrap_or(0);
    today.checked_add_days(Days::new(days)).unwrap_or(today)
}

/// `$start, $start+1, …` placeholders for an `IN (…)` list.
pub(crate) fn placeholders(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bundle compositions of the variants whose placeholders are `list`: rows of
/// `0, bundle, component, units per bundle` and `padding` empty text columns, read in
/// one statement (`UNION ALL`) with the lots that [`sellable_lots_sql`] selects.
fn compositions_sql(list: &str, padding: usize) -> String {
    format!(
        "SELECT CAST(0 AS BIGINT), bundle_variant_id, component_variant_id, quantity{}
         FROM bundle_components WHERE bundle_variant_id IN ({list})",
        ", ''".repeat(padding)
    )
}

/// The condition on a lot (`lot`: the table or its alias) that it sells today: units
/// left, not recalled, and expiring no earlier than `cutoff` (a placeholder bound to
/// [`sellable_cutoff`]: the store's minimum shelf life from today). The storefront's
/// availability, checkout's reservations and the admin's stock counts all use it.
pub fn sellable_lot_sql(lot: &str, cutoff: &str) -> String {
    format!("{lot}.expires_on >= {cutoff} AND {lot}.quantity > 0 AND {lot}.recall_id IS NULL")
}

/// The condition on a variant (`variant`: its alias) that no lot of it sells today
/// ([`sellable_lot_sql`]); by the index on `lots (variant_id, expires_on)`.
pub fn no_sellable_lot_sql(variant: &str, cutoff: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM lots sl WHERE sl.variant_id = {variant}.id AND {})",
        sellable_lot_sql("sl", cutoff)
    )
}

/// The condition on `lots` for what can be sold now (`$1`: the expiry cutoff; recalled
/// lots never) of the variants whose placeholders are `list` and of their components. The variants are
/// an `IN (… UNION …)`, so PostgreSQL keeps the lots index.
fn sellable_lots_sql(list: &str) -> String {
    format!(
        "{} AND variant_id IN (
           SELECT id FROM variants WHERE id IN ({list})
           UNION
           SELECT component_variant_id FROM bundle_components WHERE bundle_variant_id IN ({list}))",
        sellable_lot_sql("lots", "$1")
    )
}

/// Takes a row of [`compositions_sql`] into `parts` (bundle → (component, units));
/// false when the row is a lot's instead.
fn add_composition(
    row: &sqlx::any::AnyRow,
    parts: &mut HashMap<i64, Vec<(i64, i64)>>,
) -> Result<bool> {
    if row.try_get::<i64, _>(0)? != 0 {
        return Ok(false);
    }
    parts
        .entry(row.try_get(1)?)
        .or_default()
        .push((row.try_get(2)?, row.try_get(3)?));
    Ok(true)
}

/// Availability of each variant in `variant_ids`; bundle variants are derived from their
/// components. Variants with no sellable stock are present as out of stock.
pub async fn availability(
    conn: &mut AnyConnection,
    variant_ids: &[i64],
    settings: &StoreSettings,
) -> Result<HashMap<i64, Availability>> {
    if variant_ids.is_empty() {
        return Ok(HashMap::new());
    }
    // One statement: bundle compositions (first column 0) and the sellable sums of the
    // variants and of their components (1).
    let cutoff = crate::time::format_date(sellable_cutoff(crate::time::today(), settings));
    let list = placeholders(2, variant_ids.len());
    let sql = format!(
        "{}
         UNION ALL
         SELECT CAST(1 AS BIGINT), variant_id, CAST(SUM(quantity) AS BIGINT), CAST(0 AS BIGINT),
           MIN(expires_on)
         FROM lots WHERE {}
         GROUP BY variant_id",
        compositions_sql(&list, 1),
        sellable_lots_sql(&list)
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(&cutoff);
    for id in variant_ids {
        query = query.bind(*id);
    }
    let mut components: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    let mut direct: HashMap<i64, (i64, String)> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        if !add_composition(&row, &mut components)? {
            direct.insert(row.try_get(1)?, (row.try_get(2)?, row.try_get(4)?));
        }
    }

    let threshold = settings.low_stock_threshold;
    let mut result = HashMap::new();
    for id in variant_ids {
        let availability = match components.get(id) {
            Some(parts) => {
                let mut bundles = i64::MAX;
                let mut best_before: Option<String> = None;
                for (component, per_bundle) in parts {
                    let (quantity, expiry) = direct.get(component).cloned().unwrap_or_default();
                    bundles = bundles.min(quantity / (*per_bundle).max(1));
                    if !expiry.is_empty() && best_before.as_ref().is_none_or(|b| expiry < *b) {
                        best_before = Some(expiry);
                    }
                }
                Availability::new(
                    if parts.is_empty() { 0 } else { bundles },
                    best_before,
                    threshold,
                )
            }
            None => match direct.get(id) {
                Some((quantity, expiry)) => {
                    Availability::new(*quantity, Some(expiry.clone()), threshold)
                }
                None => Availability::out_of_stock(),
            },
        };
        result.insert(*id, availability);
    }
    Ok(result)
}

// ---- lots and the ledger ---------------------------------------------------------------

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Lot {
    pub id: i64,
    pub variant_id: i64,
    pub sku: String,
    pub location: String,
    pub batch: String,
    pub manufactured_on: String,
    pub expires_on: String,
    pub quantity: i64,
    /// Whether this lot counts towards what can be sold today (never once recalled).
    pub sellable: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: i64,
    pub lot_id: i64,
    pub variant_id: i64,
    pub delta: i64,
    pub quantity_after: i64,
    pub reason: String,
    pub actor: String,
    pub note: Option<String>,
    pub reference: Option<String>,
    pub created_at: String,
}

/// Why a lot's quantity changed. Stored in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockReason {
    Received,
    CountCorrection,
    Damaged,
    ExpiredWriteOff,
    Returned,
    Allocated,
    Released,
    Other,
}

impl StockReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StockReason::Received => "received",
            StockReason::CountCorrection => "count_correction",
            StockReason::Damaged => "damaged",
            StockReason::ExpiredWriteOff => "expired_write_off",
            StockReason::Returned => "returned",
            StockReason::Allocated => "allocated",
            StockReason::Released => "released",
            StockReason::Other => "other",
        }
    }
}

/// Who made a change and why, for the ledger.
#[derive(Debug, Clone)]
pub struct StockChange<'a> {
    pub reason: StockReason,
    pub actor: &'a str,
    pub note: Option<&'a str>,
    pub reference: Option<&'a str>,
}

/// Slugs of the products whose shown stock depends on each variant: its own product and
/// every bundle that contains it. Stock events carry them so caches can be invalidated.
async fn affected_products_of(
    conn: &mut AnyConnection,
    variant_ids: &BTreeSet<i64>,
) -> Result<HashMap<i64, Vec<String>>> {
    let list = placeholders(1, variant_ids.len());
    let sql = format!(
        "SELECT v.id, p.slug FROM products p JOIN variants v ON v.product_id = p.id
         WHERE v.id IN ({list})
         UNION
         SELECT bc.component_variant_id, p.slug FROM bundle_components bc
           JOIN variants v ON v.id = bc.bundle_variant_id
           JOIN products p ON p.id = v.product_id
         WHERE bc.component_variant_id IN ({list})"
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for id in variant_ids {
        query = query.bind(*id);
    }
    let mut slugs: HashMap<i64, Vec<String>> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        slugs
            .entry(row.try_get(0)?)
            .or_default()
            .push(row.try_get(1)?);
    }
    for list in slugs.values_mut() {
        list.sort();
    }
    Ok(slugs)
}

/// Changes a lot's quantity by `delta`, refusing to go below zero, and writes the ledger
/// entry, a `stock.changed` event and the audit entry in the same transaction. Returns
/// the new quantity.
pub async fn change_lot_quantity(
    conn: &mut AnyConnection,
    lot_id: i64,
    delta: i64,
    change: &StockChange<'_>,
) -> Result<i64> {
    let applied = apply_lot_change(conn, lot_id, delta, change).await?;
    audit_lot_change(conn, &applied, change).await?;
    Ok(applied.quantity_after)
}

/// A quantity change as written to the ledger, for its audit entry.
pub struct AppliedChange {
    lot_id: i64,
    variant_id: i64,
    delta: i64,
    quantity_after: i64,
    ledger_id: i64,
}

/// The audit entry of one ledger write: `stock.received`, `stock.allocated`,
/// `stock.released`, or `stock.adjusted` for corrections, damage, write-offs and returns.
fn lot_change_entry<'a>(
    applied: &AppliedChange,
    change: &StockChange<'a>,
) -> crate::audit::Entry<'a> {
    let action = match change.reason {
        StockReason::Received => "stock.received",
        StockReason::Allocated => "stock.allocated",
        StockReason::Released => "stock.released",
        _ => "stock.adjusted",
    };
    crate::audit::Entry {
        actor: change.actor,
        action,
        target_type: "lot",
        target_id: applied.lot_id.to_string(),
        before: Some(serde_json::json!({
            "quantity": applied.quantity_after - applied.delta,
        })),
        after: Some(serde_json::json!({
            "quantity": applied.quantity_after,
            "delta": applied.delta,
            "reason": change.reason.as_str(),
            "note": change.note,
            "reference": change.reference,
            "variant_id": applied.variant_id,
            "ledger_id": applied.ledger_id,
        })),
    }
}

async fn audit_lot_change(
    conn: &mut AnyConnection,
    applied: &AppliedChange,
    change: &StockChange<'_>,
) -> Result<()> {
    crate::audit::record(conn, &lot_change_entry(applied, change)).await?;
    Ok(())
}

/// The change itself: the conditional update, the ledger entry and the event, without
/// the audit entry (callers record it once every row they lock is locked).
pub async fn apply_lot_change(
    conn: &mut AnyConnection,
    lot_id: i64,
    delta: i64,
    change: &StockChange<'_>,
) -> Result<AppliedChange> {
    let Some((quantity_after, variant_id)) = update_lot_quantity(conn, lot_id, delta).await? else {
        return Err(match lot_quantity(conn, lot_id).await? {
            None => Error::not_found(format!("lot {lot_id}")),
            Some(quantity) => Error::conflict(
                Some("delta"),
                format!("lot {lot_id} holds {quantity}; it cannot go below zero"),
            ),
        });
    };
    let mut applied = [AppliedChange {
        lot_id,
        variant_id,
        delta,
        quantity_after,
        ledger_id: 0,
    }];
    write_ledger(conn, &mut applied, change).await?;
    let [applied] = applied;
    Ok(applied)
}

/// Adds `delta` to a lot's quantity unless that would take it below zero: the quantity
/// after and the lot's variant, or None when the lot holds too few (or is not there).
async fn update_lot_quantity(
    conn: &mut AnyConnection,
    lot_id: i64,
    delta: i64,
) -> Result<Option<(i64, i64)>> {
    let row = sqlx::query(
        "UPDATE lots SET quantity = quantity + $1, updated_at = $2
         WHERE id = $3 AND quantity + $1 >= 0
         RETURNING quantity, variant_id",
    )
    .bind(delta)
    .bind(crate::time::now())
    .bind(lot_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row
        .map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?)))
        .transpose()?)
}

/// One lot's share of an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Allocation {
    pub lot_id: i64,
    pub variant_id: i64,
    pub batch: String,
    pub expires_on: String,
    pub quantity: i64,
}

/// Takes `quantity` units of a variant from its sellable lots, first expired first out,
/// in the caller's transaction. A bundle variant allocates its components. Fails with 409
/// (and changes nothing, once the caller rolls back) when not enough can be sold.
pub async fn allocate(
    conn: &mut AnyConnection,
    variant_id: i64,
    quantity: i64,
    settings: &StoreSettings,
    change: &StockChange<'_>,
) -> Result<Vec<Allocation>> {
    let (allocations, applied) = reserve(conn, &[(variant_id, quantity)], settings, change).await?;
    audit_changes(conn, &applied, change).await?;
    Ok(allocations)
}

/// Audits lot changes made by [`reserve`]: call it once every lot of the transaction is
/// locked, since the audit chain's head is taken last (see crate::audit).
pub async fn audit_changes(
    conn: &mut AnyConnection,
    applied: &[AppliedChange],
    change: &StockChange<'_>,
) -> Result<()> {
    let entries: Vec<_> = applied
        .iter()
        .map(|lot_change| lot_change_entry(lot_change, change))
        .collect();
    if !entries.is_empty() {
        crate::audit::record_all(conn, &entries).await?;
    }
    Ok(())
}

/// A sellable lot as read for a reservation.
struct SellableLot {
    id: i64,
    batch: String,
    expires_on: String,
    quantity: i64,
}

/// [`allocate`] of several variants (each `(variant id, units)`) at once, without the
/// audit entries: a checkout reserves its whole cart with it and audits nothing, other
/// callers audit with [`audit_changes`] once every lot is locked. The stock is read in one
/// statement, lots are taken in variant-id order (so two reservations never wait on each
/// other in a circle), and the ledger entries and `stock.changed` events are written in
/// one statement each.
pub async fn reserve(
    conn: &mut AnyConnection,
    wanted: &[(i64, i64)],
    settings: &StoreSettings,
    change: &StockChange<'_>,
) -> Result<(Vec<Allocation>, Vec<AppliedChange>)> {
    if wanted.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    if wanted.iter().any(|(_, quantity)| *quantity <= 0) {
        return Err(Error::invalid("quantity", "must be at least 1"));
    }
    let ids: BTreeSet<i64> = wanted.iter().map(|(id, _)| *id).collect();
    let cutoff = crate::time::format_date(sellable_cutoff(crate::time::today(), settings));
    // Bundle compositions and the sellable lots of the variants and of their components,
    // told apart by the first column.
    let list = placeholders(2, ids.len());
    let sql = format!(
        "{}
         UNION ALL
         SELECT CAST(1 AS BIGINT), id, variant_id, quantity, batch, expires_on FROM lots WHERE {}",
        compositions_sql(&list, 2),
        sellable_lots_sql(&list)
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(&cutoff);
    for id in &ids {
        query = query.bind(*id);
    }
    let mut parts: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    let mut lots: HashMap<i64, Vec<SellableLot>> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        if !add_composition(&row, &mut parts)? {
            lots.entry(row.try_get(2)?).or_default().push(SellableLot {
                id: row.try_get(1)?,
                quantity: row.try_get(3)?,
                batch: row.try_get(4)?,
                expires_on: row.try_get(5)?,
            });
        }
    }
    // Units needed of each variant that has lots: a bundle's are its components'.
    let mut needed_by_variant: BTreeMap<i64, i64> = BTreeMap::new();
    for (variant_id, quantity) in wanted {
        match parts.get(variant_id) {
            Some(components) => {
                for (component, per_bundle) in components {
                    let units = needed_by_variant.entry(*component).or_default();
                    *units = units.saturating_add(per_bundle.saturating_mul(*quantity));
                }
            }
            None => {
                let units = needed_by_variant.entry(*variant_id).or_default();
                *units = units.saturating_add(*quantity);
            }
        }
    }

    let mut allocations: Vec<Allocation> = Vec::new();
    let mut applied: Vec<AppliedChange> = Vec::new();
    for (variant, mut needed) in needed_by_variant {
        let mut sellable = lots.remove(&variant).unwrap_or_default();
        sellable.sort_by(|a, b| (&a.expires_on, a.id).cmp(&(&b.expires_on, b.id)));
        for lot in &sellable {
            if needed == 0 {
                break;
            }
            // First with the quantity just read. The conditional update re-checks it
            // under the row lock; when a concurrent change got there first, the lot is
            // read again.
            let mut known = Some(lot.quantity);
            let mut taken = 0i64;
            let mut left = 0i64;
            loop {
                let current = match known.take() {
                    Some(quantity) => quantity,
                    None => match lot_quantity(conn, lot.id).await? {
                        Some(quantity) => quantity,
                        None => break,
                    },
                };
                let take = current.min(needed);
                if take <= 0 {
                    break;
                }
                let Some((after, _)) = update_lot_quantity(conn, lot.id, -take).await? else {
                    continue;
                };
                taken += take;
                needed -= take;
                left = after;
                // The lot had grown since it was read: it still ships first.
                if needed > 0 && after > 0 {
                    known = Some(after);
                    continue;
                }
                break;
            }
            if taken > 0 {
                applied.push(AppliedChange {
                    lot_id: lot.id,
                    variant_id: variant,
                    delta: -taken,
                    quantity_after: left,
                    ledger_id: 0,
                });
                allocations.push(Allocation {
                    lot_id: lot.id,
                    variant_id: variant,
                    batch: lot.batch.clone(),
                    expires_on: lot.expires_on.clone(),
                    quantity: taken,
                });
            }
        }
        if needed > 0 {
            return Err(Error::conflict(
                Some("quantity"),
                format!("not enough sellable stock of variant {variant}: {needed} short"),
            ));
        }
    }
    write_ledger(conn, &mut applied, change).await?;
    Ok((allocations, applied))
}

async fn lot_quantity(conn: &mut AnyConnection, lot_id: i64) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT quantity FROM lots WHERE id = $1")
        .bind(lot_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// The ledger entries (one statement) and `stock.changed` events (one statement) of lot
/// changes already made; fills in each change's ledger id.
async fn write_ledger(
    conn: &mut AnyConnection,
    applied: &mut [AppliedChange],
    change: &StockChange<'_>,
) -> Result<()> {
    if applied.is_empty() {
        return Ok(());
    }
    let now = crate::time::now();
    let mut ledger_ids: HashMap<i64, i64> = HashMap::new();
    for chunk in applied.chunks(100) {
        let sql = format!(
            "INSERT INTO stock_ledger (lot_id, variant_id, delta, quantity_after, reason, actor, note, reference, created_at)
             VALUES {} RETURNING id, lot_id",
            crate::store::value_rows(chunk.len(), 9)
        );
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for lot_change in chunk {
            insert = insert
                .bind(lot_change.lot_id)
                .bind(lot_change.variant_id)
                .bind(lot_change.delta)
                .bind(lot_change.quantity_after)
                .bind(change.reason.as_str())
                .bind(change.actor)
                .bind(change.note)
                .bind(change.reference)
                .bind(&now);
        }
        for row in insert.fetch_all(&mut *conn).await? {
            ledger_ids.insert(row.try_get(1)?, row.try_get(0)?);
        }
    }
    crate::failpoint::hit("inventory.after_ledger");
    let variant_ids: BTreeSet<i64> = applied.iter().map(|a| a.variant_id).collect();
    let products = affected_products_of(conn, &variant_ids).await?;
    let mut events = Vec::with_capacity(applied.len());
    for lot_change in applied.iter_mut() {
        // Each lot appears once in a reservation, so its ledger row is its own.
        lot_change.ledger_id = ledger_ids
            .get(&lot_change.lot_id)
            .copied()
            .unwrap_or_default();
        events.push(crate::bus::NewEvent {
            aggregate_type: "variant",
            aggregate_id: lot_change.variant_id.to_string(),
            event_type: "stock.changed",
            payload: serde_json::json!({
                "variant_id": lot_change.variant_id,
                "lot_id": lot_change.lot_id,
                "delta": lot_change.delta,
                "quantity_after": lot_change.quantity_after,
                "reason": change.reason.as_str(),
                "products": products.get(&lot_change.variant_id).cloned().unwrap_or_default(),
            }),
        });
    }
    crate::bus::record_all(conn, &events).await?;
    Ok(())
}

// ---- locations and receiving ---------------------------------------------------------

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Location {
    pub id: i64,
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLocation {
    /// Short unique code, e.g. `AMS-1`.
    #[schema(value_type = crate::http::schema::LocationCode)]
    pub code: String,
    #[schema(value_type = crate::http::schema::NonBlankText100)]
    pub name: String,
}

pub async fn create_location(
    conn: &mut AnyConnection,
    input: &NewLocation,
    actor: &str,
) -> Result<Location> {
    let mut problems = crate::error::Problems::new();
    crate::catalog::model::check_sku(&mut problems, "code", &input.code);
    crate::catalog::model::check_text(&mut problems, "name", &input.name, 100);
    problems.into_result()?;
    let row = sqlx::query(
        "INSERT INTO locations (code, name, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(&input.code)
    .bind(input.name.trim())
    .bind(crate::time::now())
    .fetch_one(&mut *conn)
    .await
    .map_err(|err| {
        if crate::store::is_unique_violation(&err) {
            Error::conflict(Some("code"), format!("location `{}` exists", input.code))
        } else {
            err.into()
        }
    })?;
    let id: i64 = row.try_get(0)?;
    crate::bus::record(
        conn,
        "location",
        id,
        "location.created",
        &serde_json::json!({ "id": id, "code": input.code }),
    )
    .await?;
    let location = Location {
        id,
        code: input.code.clone(),
        name: input.name.trim().to_owned(),
    };
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: "location.created",
            target_type: "location",
            target_id: id.to_string(),
            before: None,
            after: Some(serde_json::to_value(&location).map_err(anyhow::Error::from)?),
        },
    )
    .await?;
    Ok(location)
}

pub async fn list_locations(conn: &mut AnyConnection) -> Result<Vec<Location>> {
    sqlx::query("SELECT id, code, name FROM locations ORDER BY code")
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| {
            Ok(Location {
                id: row.try_get(0)?,
                code: row.try_get(1)?,
                name: row.try_get(2)?,
            })
        })
        .collect()
}

/// Stock arriving: a new lot of a variant at a location.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLot {
    /// The SKU of an existing, non-bundle variant.
    #[schema(value_type = crate::http::schema::Sku)]
    pub sku: String,
    /// The code of an existing location.
    #[schema(value_type = crate::http::schema::LocationCode)]
    pub location: String,
    #[schema(value_type = crate::http::schema::NonBlankText64)]
    pub batch: String,
    /// `YYYY-MM-DD`, not in the future.
    #[schema(value_type = crate::http::schema::IsoDate)]
    pub manufactured_on: String,
    /// `YYYY-MM-DD`; after `manufactured_on`.
    #[schema(value_type = crate::http::schema::IsoDate)]
    pub expires_on: String,
    #[schema(minimum = 0, maximum = 10_000_000)]
    pub quantity: i64,
    /// Up to 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

/// Receives a lot: creates it at zero and books the quantity through the ledger, so the
/// ledger explains every unit. Returns the lot id.
pub async fn receive_lot(conn: &mut AnyConnection, input: &NewLot, actor: &str) -> Result<i64> {
    let mut problems = crate::error::Problems::new();
    check_new_lot(&mut problems, input);
    problems.into_result()?;
    receive_checked_lot(conn, input, actor).await
}

/// The checks of a new lot that need no database (also `olivine import lots`).
pub fn check_new_lot(problems: &mut crate::error::Problems, input: &NewLot) {
    crate::catalog::model::check_text(problems, "batch", &input.batch, 64);
    let manufactured = crate::time::parse_date(&input.manufactured_on)
        .map_err(|m| problems.add("manufactured_on", m))
        .ok();
    let expires = crate::time::parse_date(&input.expires_on)
        .map_err(|m| problems.add("expires_on", m))
        .ok();
    if let (Some(m), Some(e)) = (manufactured, expires) {
        problems.check(e > m, "expires_on", "must be after manufactured_on");
    }
    if let Some(m) = manufactured {
        problems.check(
            m <= crate::time::today(),
            "manufactured_on",
            "must not be in the future",
        );
    }
    problems.check(
        (0..=10_000_000).contains(&input.quantity),
        "quantity",
        "must be between 0 and 10,000,000",
    );
    if let Some(note) = &input.note {
        problems.check(
            note.chars().count() <= 1000,
            "note",
            "must be at most 1000 characters",
        );
    }
}

async fn receive_checked_lot(conn: &mut AnyConnection, input: &NewLot, actor: &str) -> Result<i64> {
    let variant = sqlx::query(
        "SELECT v.id, p.product_type FROM variants v JOIN products p ON p.id = v.product_id WHERE v.sku = $1",
    )
    .bind(&input.sku)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::invalid("sku", format!("no variant has SKU `{}`", input.sku)))?;
    let variant_id: i64 = variant.try_get(0)?;
    let product_type: String = variant.try_get(1)?;
    if product_type == "bundle" {
        return Err(Error::invalid(
            "sku",
            "bundles hold no stock of their own; receive their components",
        ));
    }
    let location_id: i64 = sqlx::query("SELECT id FROM locations WHERE code = $1")
        .bind(&input.location)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| {
            Error::invalid("location", format!("unknown location `{}`", input.location))
        })?
        .try_get(0)?;
    let now = crate::time::now();
    let row = sqlx::query(
        "INSERT INTO lots (variant_id, location_id, batch, manufactured_on, expires_on, quantity, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 0, $6, $6) RETURNING id",
    )
    .bind(variant_id)
    .bind(location_id)
    .bind(input.batch.trim())
    .bind(&input.manufactured_on)
    .bind(&input.expires_on)
    .bind(&now)
    .fetch_one(&mut *conn)
    .await
    .map_err(|err| {
        if crate::store::is_unique_violation(&err) {
            Error::conflict(
                Some("batch"),
                format!("batch `{}` of this SKU is already at this location", input.batch),
            )
        } else {
            err.into()
        }
    })?;
    let lot_id: i64 = row.try_get(0)?;
    let applied = apply_lot_change(
        conn,
        lot_id,
        input.quantity,
        &StockChange {
            reason: StockReason::Received,
            actor,
            note: input.note.as_deref(),
            reference: Some(&input.batch),
        },
    )
    .await?;
    // One entry for the new lot and the stock it brings (its one ledger write).
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: "lot.received",
            target_type: "lot",
            target_id: lot_id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "sku": input.sku,
                "variant_id": variant_id,
                "location": input.location,
                "batch": input.batch.trim(),
                "manufactured_on": input.manufactured_on,
                "expires_on": input.expires_on,
                "quantity": applied.quantity_after,
                "note": input.note,
                "ledger_id": applied.ledger_id,
            })),
        },
    )
    .await?;
    Ok(lot_id)
}

/// Filters for lot and ledger listings.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StockFilter {
    pub sku: Option<String>,
    pub variant_id: Option<i64>,
    pub lot_id: Option<i64>,
    /// At most this many rows (default 100, at most 1000).
    pub limit: Option<i64>,
}

pub async fn list_lots(
    conn: &mut AnyConnection,
    filter: &StockFilter,
    settings: &StoreSettings,
) -> Result<Vec<Lot>> {
    let cutoff = crate::time::format_date(sellable_cutoff(crate::time::today(), settings));
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let rows = sqlx::query(
        "SELECT l.id, l.variant_id, v.sku, loc.code, l.batch, l.manufactured_on, l.expires_on, l.quantity, l.created_at, l.updated_at,
                l.recall_id
         FROM lots l JOIN variants v ON v.id = l.variant_id JOIN locations loc ON loc.id = l.location_id
         WHERE ($1 IS NULL OR v.sku = $1) AND ($2 IS NULL OR l.variant_id = $2) AND ($3 IS NULL OR l.id = $3)
         ORDER BY v.sku, l.expires_on, l.id LIMIT $4",
    )
    .bind(filter.sku.as_deref())
    .bind(filter.variant_id)
    .bind(filter.lot_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let expires_on: String = row.try_get(6)?;
            let quantity: i64 = row.try_get(7)?;
            let recalled = row.try_get::<Option<i64>, _>(10)?.is_some();
            Ok(Lot {
                id: row.try_get(0)?,
                variant_id: row.try_get(1)?,
                sku: row.try_get(2)?,
                location: row.try_get(3)?,
                batch: row.try_get(4)?,
                manufactured_on: row.try_get(5)?,
                sellable: quantity > 0 && expires_on >= cutoff && !recalled,
                expires_on,
                quantity,
                created_at: row.try_get(8)?,
                updated_at: row.try_get(9)?,
            })
        })
        .collect()
}

pub async fn list_ledger(
    conn: &mut AnyConnection,
    filter: &StockFilter,
) -> Result<Vec<LedgerEntry>> {
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let rows = sqlx::query(
        "SELECT e.id, e.lot_id, e.variant_id, e.delta, e.quantity_after, e.reason, e.actor, e.note, e.reference, e.created_at
         FROM stock_ledger e JOIN variants v ON v.id = e.variant_id
         WHERE ($1 IS NULL OR v.sku = $1) AND ($2 IS NULL OR e.variant_id = $2) AND ($3 IS NULL OR e.lot_id = $3)
         ORDER BY e.id DESC LIMIT $4",
    )
    .bind(filter.sku.as_deref())
    .bind(filter.variant_id)
    .bind(filter.lot_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(ledger_entry).collect()
}

/// `limit` entries of a lot's ledger from the `offset`th, newest first, and how many it
/// has (the admin's pager; by the index on `stock_ledger (lot_id, id)`).
pub async fn lot_ledger_page(
    conn: &mut AnyConnection,
    lot_id: i64,
    offset: i64,
    limit: i64,
) -> Result<(Vec<LedgerEntry>, i64)> {
    let total: i64 =
        sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM stock_ledger WHERE lot_id = $1")
            .bind(lot_id)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
    let rows = sqlx::query(
        "SELECT e.id, e.lot_id, e.variant_id, e.delta, e.quantity_after, e.reason, e.actor, e.note, e.reference, e.created_at
         FROM stock_ledger e WHERE e.lot_id = $1 ORDER BY e.id DESC LIMIT $2 OFFSET $3",
    )
    .bind(lot_id)
    .bind(limit.clamp(1, 1000))
    .bind(offset.max(0))
    .fetch_all(&mut *conn)
    .await?;
    let entries = rows.iter().map(ledger_entry).collect::<Result<_>>()?;
    Ok((entries, total))
}

fn ledger_entry(row: &sqlx::any::AnyRow) -> Result<LedgerEntry> {
    Ok(LedgerEntry {
        id: row.try_get(0)?,
        lot_id: row.try_get(1)?,
        variant_id: row.try_get(2)?,
        delta: row.try_get(3)?,
        quantity_after: row.try_get(4)?,
        reason: row.try_get(5)?,
        actor: row.try_get(6)?,
        note: row.try_get(7)?,
        reference: row.try_get(8)?,
        created_at: row.try_get(9)?,
    })
}
