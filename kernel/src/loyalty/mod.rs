//! Loyalty: a points ledger per customer, credited by the active `loyalty-rule` plugins
//! from events on the bus ([`rules`]), spent at checkout, reversed by refunds and
//! cancellations, expired after months without an order, and corrected by staff.
//!
//! The ledger is append-only and the balance is derived from it. Each entry says when
//! its points become spendable (`available_at`): an order's points wait out the
//! merchant's pending period, and a reversal of pending points is pending as long as
//! they were, so the spendable balance never counts points that are not there yet.
//! Spending locks the customer's `loyalty_accounts` row, so two checkouts of one
//! customer spend one after the other and the balance never goes below zero.

pub mod api;
pub mod birthdays;
pub mod rules;

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::cart::Cart;
use crate::error::{Error, Problems, Result};
use crate::inventory::settings::StoreSettings;
use crate::plugins::pricing::AppliedAdjustment;

/// The `rule` of entries the kernel writes itself.
pub const KERNEL_RULE: &str = "kernel";
/// The `rule` of points spent and given back at checkout (also the cart adjustment's).
pub const CHECKOUT_RULE: &str = "loyalty";
/// The `rule` of staff corrections.
pub const STAFF_RULE: &str = "staff";

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A rule's credit for an event.
    Earned,
    /// A staff member's correction.
    Adjusted,
    /// Spent at checkout.
    Spent,
    /// Spent points given back (a cancelled, declined or refunded order).
    Restored,
    /// Earned points taken back (a refund or cancellation).
    Reversed,
    Expired,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Earned => "earned",
            EntryKind::Adjusted => "adjusted",
            EntryKind::Spent => "spent",
            EntryKind::Restored => "restored",
            EntryKind::Reversed => "reversed",
            EntryKind::Expired => "expired",
        }
    }
}

/// One ledger entry as the shopper and staff read it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoyaltyEntry {
    pub id: i64,
    /// Signed: credits are positive.
    pub points: i64,
    /// `earned`, `adjusted`, `spent`, `restored`, `reversed` or `expired`.
    pub kind: String,
    /// `pending` (not spendable before `available_at`), `available`, `spent`,
    /// `reversed` or `expired`.
    pub state: String,
    /// For the shopper, e.g. `Order paid: EUR 49.99`.
    pub reason: String,
    /// What caused it: `event:<id>` (a bus event), `order:<number>`, `adjustment:<id>`, ...
    pub source: String,
    /// The loyalty rule (plugin id) that credited it, or `loyalty`, `staff`, `kernel`.
    pub rule: String,
    /// The order it belongs to, if any.
    pub order_number: Option<String>,
    pub available_at: String,
    pub created_at: String,
}

/// A customer's points: what they can spend, what is pending, what it is worth, and the
/// history, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoyaltySummary {
    /// Spendable now.
    pub balance: i64,
    /// Earned, spendable once their pending period ends.
    pub pending: i64,
    /// What the balance pays at checkout, in minor units of the order's currency.
    pub balance_value_minor: i64,
    /// The currency of the customer's latest order (points pay in the order's
    /// currency), for showing what they are worth; none before a first order.
    pub currency: Option<String>,
    /// What one point pays, in minor units (0: points cannot be spent in this shop).
    pub point_value_minor: i64,
    /// The fewest points one checkout may spend.
    pub min_redeem_points: i64,
    /// The largest share of an order's goods points may pay, in percent.
    pub max_redeem_percent: i64,
    /// When the balance expires unless the customer orders before (none when points do
    /// not expire in this shop, or there is nothing to expire).
    pub expires_at: Option<String>,
    /// The birthday the customer gave for birthday rewards (`MM-DD`), if any.
    pub birthday: Option<String>,
    /// The newest 200 entries.
    pub entries: Vec<LoyaltyEntry>,
}

/// An entry to write.
#[derive(Debug, Clone)]
pub(crate) struct NewEntry<'a> {
    pub customer_id: i64,
    pub points: i64,
    pub kind: EntryKind,
    pub reason: &'a str,
    pub source: &'a str,
    pub rule: &'a str,
    pub seq: i64,
    pub order_id: Option<i64>,
    pub available_at: &'a str,
    pub actor: Option<&'a str>,
    pub now: &'a str,
}

/// Writes an entry unless one with its (customer, source, rule, seq) exists: answers
/// whether it was written. A redelivered event or a retried job credits once.
pub(crate) async fn write_entry(conn: &mut AnyConnection, entry: &NewEntry<'_>) -> Result<bool> {
    let written = sqlx::query(
        "INSERT INTO loyalty_ledger (customer_id, points, kind, reason, source, rule, seq,
            order_id, available_at, actor, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (customer_id, source, rule, seq) DO NOTHING",
    )
    .bind(entry.customer_id)
    .bind(entry.points)
    .bind(entry.kind.as_str())
    .bind(entry.reason)
    .bind(entry.source)
    .bind(entry.rule)
    .bind(entry.seq)
    .bind(entry.order_id)
    .bind(entry.available_at)
    .bind(entry.actor)
    .bind(entry.now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(written == 1)
}

/// Takes the customer's loyalty row for the rest of the transaction (creating it): the
/// balance read after this stays true until commit. `order_at` records an order's
/// credit, which restarts the expiry clock.
pub(crate) async fn lock_account(
    conn: &mut AnyConnection,
    customer_id: i64,
    now: &str,
    order_at: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO loyalty_accounts (customer_id, last_order_at, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (customer_id) DO UPDATE SET updated_at = excluded.updated_at,
            last_order_at = COALESCE($4, loyalty_accounts.last_order_at)",
    )
    .bind(customer_id)
    .bind(order_at.unwrap_or(now))
    .bind(now)
    .bind(order_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The customer's (spendable, pending) points at `now`.
pub(crate) async fn balances(
    conn: &mut AnyConnection,
    customer_id: i64,
    now: &str,
) -> Result<(i64, i64)> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(CASE WHEN available_at <= $2 THEN points ELSE 0 END), 0) AS BIGINT),
            CAST(COALESCE(SUM(CASE WHEN available_at > $2 THEN points ELSE 0 END), 0) AS BIGINT)
         FROM loyalty_ledger WHERE customer_id = $1",
    )
    .bind(customer_id)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

fn entry_state(kind: &str, points: i64, available_at: &str, now: &str) -> &'static str {
    match kind {
        "spent" => "spent",
        "reversed" => "reversed",
        "expired" => "expired",
        _ if points > 0 && available_at > now => "pending",
        _ => "available",
    }
}

/// The customer's points and history, by the kernel's clock.
pub async fn summary(state: &AppState, customer_id: i64) -> Result<LoyaltySummary> {
    let now = state.clock.now_text();
    let settings = state.cache.store_settings_from(&state.db).await?;
    let mut conn = state.db.pool.acquire().await?;
    let (balance, pending) = balances(&mut conn, customer_id, &now).await?;
    let rows = sqlx::query(
        "SELECT l.id, l.points, l.kind, l.reason, l.source, l.rule, o.number, l.available_at,
            l.created_at
         FROM loyalty_ledger l LEFT JOIN orders o ON o.id = l.order_id
         WHERE l.customer_id = $1 ORDER BY l.id DESC LIMIT 200",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get(2)?;
        let points: i64 = row.try_get(1)?;
        let available_at: String = row.try_get(7)?;
        entries.push(LoyaltyEntry {
            id: row.try_get(0)?,
            points,
            state: entry_state(&kind, points, &available_at, &now).to_owned(),
            kind,
            reason: row.try_get(3)?,
            source: row.try_get(4)?,
            rule: row.try_get(5)?,
            order_number: row.try_get(6)?,
            available_at,
            created_at: row.try_get(8)?,
        });
    }
    let currency: Option<String> =
        sqlx::query("SELECT currency FROM orders WHERE customer_id = $1 ORDER BY id DESC LIMIT 1")
            .bind(customer_id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
    let expires_at = if settings.loyalty_expiry_months > 0 && balance + pending > 0 {
        let last: Option<String> =
            sqlx::query("SELECT last_order_at FROM loyalty_accounts WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&mut *conn)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?
                .flatten();
        last.as_deref()
            .and_then(crate::time::parse_timestamp)
            .and_then(|at| {
                at.checked_add_months(chrono::Months::new(
                    u32::try_from(settings.loyalty_expiry_months).unwrap_or(0),
                ))
            })
            .map(crate::time::format_timestamp)
    } else {
        None
    };
    Ok(LoyaltySummary {
        balance,
        pending,
        balance_value_minor: balance
            .max(0)
            .saturating_mul(settings.loyalty_point_value_minor),
        currency,
        point_value_minor: settings.loyalty_point_value_minor,
        min_redeem_points: settings.loyalty_min_redeem_points,
        max_redeem_percent: settings.loyalty_max_redeem_percent,
        expires_at,
        birthday: birthdays::get(&mut conn, customer_id).await?,
        entries,
    })
}

/// What a shopper can spend now: the balance and what it pays, with the shop's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spendable {
    pub balance: i64,
    pub value_minor: i64,
    pub min_redeem_points: i64,
    pub max_redeem_percent: i64,
}

/// The customer's spendable points, when they have any and the shop takes points (the
/// checkout page offers them); one query, unlike [`summary`].
pub async fn spendable(state: &AppState, customer_id: i64) -> Result<Option<Spendable>> {
    let settings = state.cache.store_settings_from(&state.db).await?;
    if settings.loyalty_point_value_minor <= 0 {
        return Ok(None);
    }
    let now = state.clock.now_text();
    let (balance, _) = balances(&mut *state.db.pool.acquire().await?, customer_id, &now).await?;
    Ok((balance > 0).then(|| Spendable {
        balance,
        value_minor: balance.saturating_mul(settings.loyalty_point_value_minor),
        min_redeem_points: settings.loyalty_min_redeem_points,
        max_redeem_percent: settings.loyalty_max_redeem_percent,
    }))
}

/// Points a checkout spends, and what they pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redemption {
    pub customer_id: i64,
    pub points: i64,
    pub value_minor: i64,
}

/// Checks that `points` may be spent on goods worth `goods_minor` by this customer now
/// (the checkout checks again, under the account's lock). `None` for 0 points.
pub async fn redemption(
    state: &AppState,
    customer_id: Option<i64>,
    points: i64,
    goods_minor: i64,
) -> Result<Option<Redemption>> {
    const FIELD: &str = "redeem_points";
    if points == 0 {
        return Ok(None);
    }
    if points < 0 {
        return Err(Error::invalid(FIELD, "must be at least 0"));
    }
    let Some(customer_id) = customer_id else {
        return Err(Error::invalid(FIELD, "sign in to spend points"));
    };
    let settings = state.cache.store_settings_from(&state.db).await?;
    let value_minor = redemption_value(&settings, points, goods_minor)?;
    let now = state.clock.now_text();
    let (available, _) = balances(&mut *state.db.pool.acquire().await?, customer_id, &now).await?;
    if points > available {
        return Err(Error::invalid(
            FIELD,
            format!("you have {} points to spend", available.max(0)),
        ));
    }
    Ok(Some(Redemption {
        customer_id,
        points,
        value_minor,
    }))
}

/// What `points` pay under the shop's rules, or why they may not be spent.
fn redemption_value(settings: &StoreSettings, points: i64, goods_minor: i64) -> Result<i64> {
    const FIELD: &str = "redeem_points";
    let per_point = settings.loyalty_point_value_minor;
    if per_point <= 0 {
        return Err(Error::invalid(FIELD, "this shop does not take points"));
    }
    if points < settings.loyalty_min_redeem_points {
        return Err(Error::invalid(
            FIELD,
            format!(
                "spend at least {} points at a time",
                settings.loyalty_min_redeem_points
            ),
        ));
    }
    let most_value = goods_minor
        .max(0)
        .saturating_mul(settings.loyalty_max_redeem_percent)
        / 100;
    let most_points = most_value / per_point;
    let value = points.saturating_mul(per_point);
    if value > most_value {
        return Err(Error::invalid(
            FIELD,
            format!(
                "points may pay at most {} % of the goods: at most {most_points} points on this order",
                settings.loyalty_max_redeem_percent
            ),
        ));
    }
    Ok(value)
}

/// The cart with the points' cart adjustment: what the quote prices and the order charges.
pub fn apply_redemption(cart: &Cart, redemption: &Redemption) -> Cart {
    let mut cart = cart.clone();
    cart.cart_adjustments.push(AppliedAdjustment {
        amount_minor: -redemption.value_minor,
        reason: format!("{} points redeemed", redemption.points),
        rule: CHECKOUT_RULE.to_owned(),
    });
    cart.adjustments_total_minor -= redemption.value_minor;
    cart.total_minor -= redemption.value_minor;
    cart
}

/// Spends the order's points in the checkout's transaction, under the account's lock:
/// of two checkouts spending the same points, the second finds them gone (409).
pub(crate) async fn spend(
    tx: &mut AnyConnection,
    redemption: &Redemption,
    order_id: i64,
    number: &str,
    now: &str,
) -> Result<()> {
    lock_account(tx, redemption.customer_id, now, None).await?;
    let (available, _) = balances(tx, redemption.customer_id, now).await?;
    if available < redemption.points {
        return Err(Error::conflict(
            Some("redeem_points"),
            format!(
                "only {} points are left to spend (another order spent some meanwhile)",
                available.max(0)
            ),
        ));
    }
    let reason = format!("Spent on order {number}");
    let source = format!("order:{number}");
    write_entry(
        tx,
        &NewEntry {
            customer_id: redemption.customer_id,
            points: -redemption.points,
            kind: EntryKind::Spent,
            reason: &reason,
            source: &source,
            rule: CHECKOUT_RULE,
            seq: 0,
            order_id: Some(order_id),
            available_at: now,
            actor: None,
            now,
        },
    )
    .await?;
    Ok(())
}

/// What a refund or cancellation of an order undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undo {
    /// Give back the points spent on it (a cancellation, in its own transaction).
    Spent,
    /// That, and take back what each rule credited for it (the loyalty processor).
    SpentAndEarned,
}

/// Undoes the share `part / whole` of an order's points (all of them for a
/// cancellation or a full refund), less what was undone already: spent points are given
/// back, and with [`Undo::SpentAndEarned`] each rule's credit is taken back, pending
/// points from pending. `source` names the cause, so one cause undoes once.
pub(crate) async fn undo_order(
    tx: &mut AnyConnection,
    order_id: i64,
    (part, whole): (i64, i64),
    undo: Undo,
    source: &str,
    now: &str,
) -> Result<()> {
    let rows = sqlx::query(
        "SELECT l.customer_id, l.rule, o.number,
            CAST(COALESCE(SUM(CASE WHEN l.kind = 'spent' THEN -l.points ELSE 0 END), 0) AS BIGINT),
            CAST(COALESCE(SUM(CASE WHEN l.kind = 'restored' THEN l.points ELSE 0 END), 0) AS BIGINT),
            CAST(COALESCE(SUM(CASE WHEN l.kind = 'earned' AND l.points > 0 THEN l.points ELSE 0 END), 0) AS BIGINT),
            CAST(COALESCE(SUM(CASE WHEN l.kind = 'reversed' THEN -l.points ELSE 0 END), 0) AS BIGINT),
            MAX(CASE WHEN l.kind = 'earned' THEN l.available_at END)
         FROM loyalty_ledger l JOIN orders o ON o.id = l.order_id
         WHERE l.order_id = $1
         GROUP BY l.customer_id, l.rule, o.number",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    for row in rows {
        let customer_id: i64 = row.try_get(0)?;
        let rule: String = row.try_get(1)?;
        let number: String = row.try_get(2)?;
        let (spent, restored): (i64, i64) = (row.try_get(3)?, row.try_get(4)?);
        let (earned, reversed): (i64, i64) = (row.try_get(5)?, row.try_get(6)?);
        let earned_available: Option<String> = row.try_get(7)?;
        let (points, kind, reason, available_at) = if rule == CHECKOUT_RULE {
            let due = share(spent, part, whole) - restored;
            let reason = format!("Given back from order {number}");
            (due, EntryKind::Restored, reason, now.to_owned())
        } else if undo == Undo::SpentAndEarned {
            let due = share(earned, part, whole) - reversed;
            let reason = format!("Taken back: order {number} refunded or cancelled");
            // Pending points are taken back from pending, available ones from the
            // balance.
            let available_at = earned_available
                .filter(|at| at.as_str() > now)
                .unwrap_or_else(|| now.to_owned());
            (-due, EntryKind::Reversed, reason, available_at)
        } else {
            continue;
        };
        if points == 0 || (kind == EntryKind::Restored) != (points > 0) {
            continue;
        }
        lock_account(tx, customer_id, now, None).await?;
        write_entry(
            tx,
            &NewEntry {
                customer_id,
                points,
                kind,
                reason: &reason,
                source,
                rule: &rule,
                seq: 0,
                order_id: Some(order_id),
                available_at: &available_at,
                actor: None,
                now,
            },
        )
        .await?;
    }
    Ok(())
}

/// `amount × part / whole`, rounded down; all of it when `part` covers `whole`.
fn share(amount: i64, part: i64, whole: i64) -> i64 {
    if whole <= 0 || part >= whole {
        return amount;
    }
    let exact = i128::from(amount) * i128::from(part.max(0)) / i128::from(whole);
    i64::try_from(exact).unwrap_or(amount)
}

/// A staff correction.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointsAdjustment {
    /// Signed, not 0, at most 10,000,000 either way. A deduction may not take the
    /// spendable balance below zero.
    #[schema(minimum = -10_000_000, maximum = 10_000_000)]
    pub points: i64,
    /// Shown to the customer: 1 to 200 characters.
    #[schema(value_type = crate::http::schema::SingleLine200)]
    pub reason: String,
}

/// A staff member's correction of a customer's points, audited.
pub async fn adjust(
    state: &AppState,
    actor: &str,
    pseudonym: &str,
    input: PointsAdjustment,
) -> Result<LoyaltySummary> {
    let mut problems = Problems::new();
    problems.check(
        input.points != 0 && input.points.abs() <= 10_000_000,
        "points",
        "must be between -10000000 and 10000000, and not 0",
    );
    crate::orders::check_text(&mut problems, "reason", &input.reason, 200, true);
    let reason = input.reason.trim();
    problems.into_result()?;
    let customer_id = customer_id_of(state, pseudonym).await?;
    let now = state.clock.now_text();
    let mut tx = state.db.begin().await?;
    lock_account(&mut tx, customer_id, &now, None).await?;
    let (available, _) = balances(&mut tx, customer_id, &now).await?;
    if available + input.points < 0 {
        return Err(Error::conflict(
            Some("points"),
            format!("the customer has {} points to take from", available.max(0)),
        ));
    }
    let source = format!("adjustment:{}", crate::accounts::random_token::<12>());
    write_entry(
        &mut tx,
        &NewEntry {
            customer_id,
            points: input.points,
            kind: EntryKind::Adjusted,
            reason,
            source: &source,
            rule: STAFF_RULE,
            seq: 0,
            order_id: None,
            available_at: &now,
            actor: Some(actor),
            now: &now,
        },
    )
    .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "loyalty.adjusted",
            target_type: "customer",
            target_id: pseudonym.to_owned(),
            before: Some(serde_json::json!({ "balance": available })),
            after: Some(serde_json::json!({
                "balance": available + input.points, "points": input.points, "reason": reason,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    summary(state, customer_id).await
}

/// A customer's id by pseudonym (404 for an unknown or erased one).
pub async fn customer_id_of(state: &AppState, pseudonym: &str) -> Result<i64> {
    sqlx::query("SELECT id FROM customers WHERE pseudonym = $1 AND erased_at IS NULL")
        .bind(pseudonym)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .ok_or_else(|| Error::not_found("customer"))
}

/// The customer's ledger for their GDPR export.
pub async fn export_on(conn: &mut AnyConnection, customer_id: i64) -> Result<serde_json::Value> {
    let rows = sqlx::query(
        "SELECT l.points, l.kind, l.reason, l.source, l.rule, o.number, l.available_at,
            l.created_at
         FROM loyalty_ledger l LEFT JOIN orders o ON o.id = l.order_id
         WHERE l.customer_id = $1 ORDER BY l.id",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        entries.push(serde_json::json!({
            "points": row.try_get::<i64, _>(0)?,
            "kind": row.try_get::<String, _>(1)?,
            "reason": row.try_get::<String, _>(2)?,
            "source": row.try_get::<String, _>(3)?,
            "rule": row.try_get::<String, _>(4)?,
            "order_number": row.try_get::<Option<String>, _>(5)?,
            "available_at": row.try_get::<String, _>(6)?,
            "created_at": row.try_get::<String, _>(7)?,
        }));
    }
    Ok(serde_json::Value::Array(entries))
}

/// Expires the balance of every customer whose last order is older than the shop's
/// expiry period (by the kernel's clock). Answers how many balances expired.
pub async fn expire(state: &AppState) -> Result<u64> {
    let settings = state.cache.store_settings_from(&state.db).await?;
    let Ok(months) = u32::try_from(settings.loyalty_expiry_months) else {
        return Ok(0);
    };
    if months == 0 {
        return Ok(0);
    }
    let now = state.clock.now();
    let Some(cutoff) = now.checked_sub_months(chrono::Months::new(months)) else {
        return Ok(0);
    };
    let now_text = crate::time::format_timestamp(now);
    let cutoff = crate::time::format_timestamp(cutoff);
    let mut expired = 0;
    let mut after = 0_i64;
    loop {
        let due: Vec<(i64, String)> = sqlx::query(
            "SELECT customer_id, last_order_at FROM loyalty_accounts
             WHERE last_order_at < $1 AND customer_id > $2 ORDER BY customer_id LIMIT 500",
        )
        .bind(&cutoff)
        .bind(after)
        .fetch_all(&state.db.pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<std::result::Result<_, sqlx::Error>>()?;
        let Some(last) = due.last() else { break };
        after = last.0;
        for (customer_id, last_order_at) in due {
            let mut tx = state.db.begin().await?;
            lock_account(&mut tx, customer_id, &now_text, None).await?;
            let (available, _) = balances(&mut tx, customer_id, &now_text).await?;
            if available <= 0 {
                continue;
            }
            // One expiry per quiet spell: an order after it starts a new one.
            let source = format!("expiry:{last_order_at}");
            let reason = format!("Expired: no order for {months} months");
            let written = write_entry(
                &mut tx,
                &NewEntry {
                    customer_id,
                    points: -available,
                    kind: EntryKind::Expired,
                    reason: &reason,
                    source: &source,
                    rule: KERNEL_RULE,
                    seq: 0,
                    order_id: None,
                    available_at: &now_text,
                    actor: None,
                    now: &now_text,
                },
            )
            .await?;
            tx.commit().await?;
            expired += u64::from(written);
        }
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_down_and_cover_the_whole() {
        assert_eq!(share(100, 1, 3), 33);
        assert_eq!(share(100, 3, 3), 100);
        assert_eq!(share(100, 5, 3), 100);
        assert_eq!(share(100, 0, 3), 0);
        assert_eq!(share(7, 1, 0), 7);
    }

    #[test]
    fn redemption_keeps_to_the_minimum_and_the_share() {
        let settings = StoreSettings::default();
        // 1 cent a point, at least 100, at most half the goods.
        assert_eq!(redemption_value(&settings, 500, 2000).ok(), Some(500));
        assert!(redemption_value(&settings, 99, 2000).is_err());
        assert!(redemption_value(&settings, 1001, 2000).is_err());
        let off = StoreSettings {
            loyalty_point_value_minor: 0,
            ..StoreSettings::default()
        };
        assert!(redemption_value(&off, 500, 2000).is_err());
    }

    #[test]
    fn entry_states_follow_kind_and_time() {
        let now = "2026-12-04T10:00:00.000Z";
        assert_eq!(
            entry_state("earned", 10, "2026-12-05T00:00:00.000Z", now),
            "pending"
        );
        assert_eq!(
            entry_state("earned", 10, "2026-12-01T00:00:00.000Z", now),
            "available"
        );
        assert_eq!(entry_state("spent", -10, now, now), "spent");
        assert_eq!(entry_state("reversed", -10, now, now), "reversed");
        assert_eq!(entry_state("expired", -10, now, now), "expired");
    }
}
