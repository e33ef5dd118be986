//! The renewal worker. A scheduled scan ([`SCAN_JOB`]) resumes pauses that ran out,
//! records `subscription.renewal_upcoming` a few days ahead, and enqueues one renewal job
//! ([`RENEW_JOB`]) per (subscription, cycle, attempt), unique by that key. A renewal
//! places the cycle's order through the checkout's steps and charges the saved payment
//! method off-session.
//!
//! Once per cycle, whatever runs twice: the order's transaction first claims the attempt
//! on the subscription's row (`cycle_attempts` moves from `attempt - 1` to `attempt`, only
//! while the subscription is active, the cycle unskipped and no other attempt in flight),
//! the order's idempotency key is derived from (subscription, cycle, attempt), the
//! processor's from the order, and paying the order advances the cycle in the payment's
//! own transaction (also when the reconciler finishes a payment a crash left). A
//! renewal that finds its attempt's order already placed settles that order instead of
//! placing another; the database refuses a second paid attempt at one cycle.
//!
//! Dunning: a declined attempt is tried again the store's retry days after the cycle's
//! first decline (default 1, 3 and 7); after the last, the subscription is paused or
//! cancelled as the store says.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::{PAYMENT_METHOD_CONTEXT, Status, SubscriptionRow};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::inventory::settings::{AfterDunning, OutOfStock};
use crate::jobs::{FnHandler, JobContext, JobHandler, NewJob};
use crate::orders::totals::CheckoutQuote;
use crate::orders::{Charge, OrderStatus, Origin, Placed, Placement};
use crate::plugins::pricing::AppliedAdjustment;
use crate::time::{format_timestamp, parse_timestamp};

pub const SCAN_JOB: &str = "subscriptions.scan";
pub const RENEW_JOB: &str = "subscriptions.renew";

/// Subscriptions read per statement of a scan.
const SCAN_BATCH: i64 = 500;

/// One renewal job: `attempt` at `cycle` of `subscription`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RenewPayload {
    pub subscription: i64,
    pub cycle: i64,
    pub attempt: i64,
}

/// When the subscription's next attempt is due: its retry while in dunning, else its
/// renewal date.
pub(crate) fn due_at(row: &SubscriptionRow) -> &str {
    match (&row.retry_at, row.failed_attempts) {
        (Some(retry), n) if n > 0 => retry,
        _ => &row.next_renewal_at,
    }
}

/// Enqueues the renewal of `attempt` at `cycle` (a no-op when it is queued already).
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    subscription: i64,
    cycle: i64,
    attempt: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    crate::jobs::enqueue(conn, &renewal_job(subscription, cycle, attempt), now).await?;
    Ok(())
}

fn renewal_job(subscription: i64, cycle: i64, attempt: i64) -> NewJob {
    let payload = RenewPayload {
        subscription,
        cycle,
        attempt,
    };
    NewJob::new(RENEW_JOB, serde_json::to_value(payload).unwrap_or_default())
        .unique(format!("renewal:{subscription}:{cycle}:{attempt}"))
}

pub fn scan_job() -> Arc<dyn JobHandler> {
    FnHandler::new(SCAN_JOB, |ctx: &JobContext| {
        Box::pin(async move {
            let report = scan(&ctx.state).await?;
            if report != ScanReport::default() {
                tracing::info!(?report, "subscriptions scanned");
            }
            Ok(())
        })
    })
}

pub fn renew_job() -> Arc<dyn JobHandler> {
    FnHandler::new(RENEW_JOB, |ctx: &JobContext| {
        Box::pin(async move {
            let payload: RenewPayload = ctx.payload()?;
            let outcome = renew(&ctx.state, payload).await?;
            tracing::debug!(?payload, ?outcome, "renewal");
            Ok(())
        })
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub resumed: u64,
    pub noticed: u64,
    pub enqueued: u64,
}

/// One pass over the subscriptions, by the kernel's clock.
pub async fn scan(state: &AppState) -> Result<ScanReport> {
    let now = state.clock.now();
    let now_text = format_timestamp(now);
    let mut report = ScanReport {
        resumed: resume_pauses_that_ended(state, &now_text).await?,
        ..ScanReport::default()
    };
    report.noticed = record_notices(state, now).await?;
    // Renewals still queued from an earlier pass are left out here rather than refused
    // by the jobs' unique key (the same `renewal:{id}:{cycle}:{attempt}` as
    // `renewal_job`): in a storm, every pass would otherwise try all of them again.
    let mut after = 0_i64;
    loop {
        let rows = sqlx::query(
            "SELECT id, cycle, cycle_attempts FROM subscriptions s
             WHERE status = 'active' AND id > $1
               AND ((failed_attempts = 0 AND next_renewal_at <= $2)
                    OR (failed_attempts > 0 AND retry_at <= $2))
               AND NOT EXISTS (SELECT 1 FROM jobs WHERE unique_key = 'renewal:'
                   || CAST(s.id AS TEXT) || ':' || CAST(s.cycle AS TEXT) || ':'
                   || CAST(s.cycle_attempts + 1 AS TEXT))
             ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(&now_text)
        .bind(SCAN_BATCH)
        .fetch_all(&state.db.pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        let jobs = rows
            .iter()
            .map(|r| {
                Ok(renewal_job(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get::<i64, _>(2)? + 1,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut conn = state.db.pool.acquire().await?;
        crate::jobs::enqueue_all(&mut conn, &jobs, now).await?;
        report.enqueued += jobs.len() as u64;
        if (rows.len() as i64) < SCAN_BATCH {
            break;
        }
    }
    if report.enqueued > 0 {
        state.bus.notify_jobs();
    }
    Ok(report)
}

/// Pauses with an end date that has come are active again; an overdue renewal runs now.
async fn resume_pauses_that_ended(state: &AppState, now: &str) -> Result<u64> {
    let rows = sqlx::query(
        "SELECT id, number, customer_id FROM subscriptions
         WHERE status = 'paused' AND paused_until IS NOT NULL AND paused_until <= $1
         ORDER BY id LIMIT 1000",
    )
    .bind(now)
    .fetch_all(&state.db.pool)
    .await?;
    let mut resumed = 0;
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        let number: String = row.try_get(1)?;
        let mut tx = state.db.begin().await?;
        let done = sqlx::query(
            "UPDATE subscriptions SET status = 'active', paused_until = NULL,
                next_renewal_at = CASE WHEN next_renewal_at < $1 THEN $1 ELSE next_renewal_at END,
                updated_at = $1
             WHERE id = $2 AND status = 'paused' AND paused_until <= $1",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 1 {
            crate::bus::record(
                &mut tx,
                "subscription",
                &number,
                "subscription.resumed",
                &serde_json::json!({ "number": number, "customer": row.try_get::<i64, _>(2)?, "by": "pause_ended" }),
            )
            .await?;
            resumed += 1;
        }
        tx.commit().await?;
    }
    Ok(resumed)
}

/// `subscription.renewal_upcoming`, once per cycle, the store's notice days ahead.
async fn record_notices(state: &AppState, now: DateTime<Utc>) -> Result<u64> {
    let settings = {
        let mut conn = state.db.pool.acquire().await?;
        state.cache.store_settings(&mut conn).await?
    };
    if settings.subscription_notice_days == 0 {
        return Ok(0);
    }
    let horizon = format_timestamp(now + chrono::Duration::days(settings.subscription_notice_days));
    let now_text = format_timestamp(now);
    let rows = sqlx::query(
        "SELECT id, number, customer_id, cycle, next_renewal_at FROM subscriptions
         WHERE status = 'active' AND notified_cycle < cycle AND next_renewal_at <= $1
           AND next_renewal_at > $2 AND skip_next = 0
         ORDER BY id LIMIT 1000",
    )
    .bind(&horizon)
    .bind(&now_text)
    .fetch_all(&state.db.pool)
    .await?;
    let mut noticed = 0;
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        let number: String = row.try_get(1)?;
        let cycle: i64 = row.try_get(3)?;
        // The price announced is the one this cycle's renewal will not exceed.
        let price = match super::row_by_id(&mut *state.db.pool.acquire().await?, id).await? {
            Some(sub) => super::next_renewal(state, &sub).await?,
            None => None,
        };
        let mut tx = state.db.begin().await?;
        let done = sqlx::query(
            "UPDATE subscriptions SET notified_cycle = $1, announced_cycle = $1,
                announced_total_minor = $2
             WHERE id = $3 AND notified_cycle < $1",
        )
        .bind(cycle)
        .bind(price.as_ref().map(|p| p.total_minor))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 1 {
            crate::bus::record(
                &mut tx,
                "subscription",
                &number,
                "subscription.renewal_upcoming",
                &serde_json::json!({
                    "number": number, "customer": row.try_get::<i64, _>(2)?, "cycle": cycle,
                    "renews_at": row.try_get::<String, _>(4)?,
                    "total_minor": price.as_ref().map(|p| p.total_minor),
                    "currency": price.as_ref().map(|p| p.currency.clone()),
                }),
            )
            .await?;
            noticed += 1;
        }
        tx.commit().await?;
    }
    Ok(noticed)
}

/// What one renewal job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewalOutcome {
    /// Nothing to do: paused, cancelled, renewed already, or not due (any more).
    Stale,
    Paid,
    /// The processor has not answered for sure; the reconciler settles the order.
    Waiting,
    Declined,
    Skipped,
    OutOfStock,
    /// Out of stock, tried again tomorrow (the `wait` policy).
    WaitingForStock,
}

/// Runs one attempt at one cycle. An error leaves the job for a retry: nothing was
/// charged that a retry would charge again.
pub async fn renew(state: &AppState, p: RenewPayload) -> Result<RenewalOutcome> {
    let Some(row) = super::row_by_id(&mut *state.db.pool.acquire().await?, p.subscription).await?
    else {
        return Ok(RenewalOutcome::Stale);
    };
    if row.status != Status::Active || row.cycle != p.cycle {
        return Ok(RenewalOutcome::Stale);
    }
    // An attempt already placed (a crash, or the processor unsure): settle it.
    if let Some((attempt, order_id)) = in_flight(state, row.id, row.cycle).await? {
        return settle(state, &row, attempt, order_id).await;
    }
    if row.cycle_attempts + 1 != p.attempt {
        return Ok(RenewalOutcome::Stale);
    }
    let now = state.clock.now();
    if parse_timestamp(due_at(&row)).is_some_and(|due| due > now) {
        return Ok(RenewalOutcome::Stale);
    }
    if row.skip_next {
        return pass_cycle(state, &row, p.attempt, "skipped", None).await;
    }
    let (cart, left_out) = match deliverable(state, &row).await? {
        Deliverable::Cart(cart, left_out) => (cart, left_out),
        Deliverable::Skip(why) => {
            return pass_cycle(state, &row, p.attempt, "out_of_stock", Some(why)).await;
        }
        Deliverable::Wait(why, days) => {
            return wait_for_stock(state, &row, p.attempt, &why, days).await;
        }
    };
    let (cart, quote) = quote_held(state, &row, cart).await?;
    let (Some(email_enc), Some(address_enc), Some(method_enc)) =
        (&row.email_enc, &row.address_enc, &row.payment_method_enc)
    else {
        return Err(Error::Internal(anyhow::anyhow!(
            "subscription {} has no identity or payment method",
            row.number
        )));
    };
    let charge = Charge::decode(
        &state
            .keys
            .decrypt_field(PAYMENT_METHOD_CONTEXT, method_enc)?,
    );
    let placed = Placed {
        number: crate::orders::new_order_number(),
        now: crate::time::now(),
        email_enc: email_enc.clone(),
        address_enc: address_enc.clone(),
        token_enc: Some(
            state
                .keys
                .encrypt_field(crate::orders::PAYMENT_TOKEN_CONTEXT, &charge.encode())?,
        ),
    };
    let origin = Origin::Renewal {
        subscription_id: row.id,
        customer_id: row.customer_id,
        cycle: row.cycle,
        attempt: p.attempt,
    };
    let key = format!("renewal:{}:{}:{}", row.number, row.cycle, p.attempt);
    let order_id = match crate::orders::place(state, &cart, &origin, &key, &quote, &placed).await? {
        Placement::Placed(order_id) => order_id,
        // Another worker claimed this attempt first, or the subscription changed.
        Placement::Taken(_) => return Ok(RenewalOutcome::Stale),
    };
    if !left_out.is_empty() {
        record_left_out(state, &row, p.attempt, &left_out).await?;
    }
    let paid = crate::orders::authorize_placed(
        state,
        order_id,
        &placed.number,
        &quote,
        &charge,
        "subscription",
    );
    paid_or_declined(state, &row, p.attempt, order_id, paid.await).await
}

/// The renewal's quote, never above the price `renewal_upcoming` announced for this
/// cycle: a rise since is taken off as a cart adjustment (net of its own tax when prices
/// exclude tax; a step or two more may be needed for rounding).
pub(crate) async fn quote_held(
    state: &AppState,
    row: &SubscriptionRow,
    mut cart: crate::cart::Cart,
) -> Result<(crate::cart::Cart, CheckoutQuote)> {
    let quote_of = async |cart: &crate::cart::Cart| {
        crate::orders::totals::quote(
            state,
            cart,
            &row.country,
            Some(&row.shipping_method),
            "country",
        )
        .await
    };
    let mut quote = quote_of(&cart).await?;
    let Some(announced) = row
        .announced_total_minor
        .filter(|_| row.announced_cycle == row.cycle)
    else {
        return Ok((cart, quote));
    };
    for _ in 0..4 {
        let over = quote.total_minor - announced;
        if over <= 0 {
            break;
        }
        let step = if quote.prices_include_tax {
            over
        } else {
            (over * 10_000 / (10_000 + quote.tax_rate_bp.max(0))).max(1)
        };
        let reason = format!(
            "price held at the {} announced",
            crate::catalog::model::Money {
                amount_minor: announced,
                currency: quote.currency.clone(),
            }
            .display()
        );
        match cart
            .cart_adjustments
            .iter_mut()
            .find(|a| a.rule == PRICE_HOLD_RULE)
        {
            Some(held) => held.amount_minor -= step,
            None => cart.cart_adjustments.push(AppliedAdjustment {
                amount_minor: -step,
                reason,
                rule: PRICE_HOLD_RULE.to_owned(),
            }),
        }
        cart.adjustments_total_minor -= step;
        cart.total_minor -= step;
        quote = quote_of(&cart).await?;
    }
    Ok((cart, quote))
}

/// The `rule` of the adjustment that holds an announced price.
const PRICE_HOLD_RULE: &str = "kernel:announced-price";

/// What a renewal can deliver, by the store's out-of-stock policy.
enum Deliverable {
    /// The items to order, and the SKUs left out (shipping what there is).
    Cart(crate::cart::Cart, Vec<String>),
    /// Nothing to deliver this cycle: why.
    Skip(String),
    /// Wait for stock (why, up to how many days).
    Wait(String, i64),
}

async fn deliverable(state: &AppState, row: &SubscriptionRow) -> Result<Deliverable> {
    let label = format!("renewal:{}", row.number);
    let cart = crate::cart::price_subscription(state, row.id, &label, &[]).await?;
    if !cart.lines.is_empty() && cart.can_check_out {
        return Ok(Deliverable::Cart(cart, Vec::new()));
    }
    let why = cart
        .lines
        .iter()
        .filter_map(|l| l.problem.as_ref().map(|p| format!("{}: {p}", l.sku)))
        .collect::<Vec<_>>()
        .join("; ");
    let settings = {
        let mut conn = state.db.pool.acquire().await?;
        state.cache.store_settings(&mut conn).await?
    };
    match settings.subscription_out_of_stock {
        OutOfStock::Skip => Ok(Deliverable::Skip(why)),
        OutOfStock::Wait => Ok(Deliverable::Wait(
            why,
            settings.subscription_stock_wait_days,
        )),
        OutOfStock::ShipAvailable => {
            let (missing, available): (Vec<_>, Vec<_>) =
                cart.lines.iter().partition(|l| l.problem.is_some());
            if available.is_empty() {
                return Ok(Deliverable::Skip(why));
            }
            let ids: Vec<i64> = missing.iter().map(|l| l.id).collect();
            let skus = missing.iter().map(|l| l.sku.clone()).collect();
            // Priced again without them: multi-buy rules see what is delivered.
            let cart = crate::cart::price_subscription(state, row.id, &label, &ids).await?;
            if cart.lines.is_empty() || !cart.can_check_out {
                return Ok(Deliverable::Skip(why));
            }
            Ok(Deliverable::Cart(cart, skus))
        }
    }
}

/// Out of stock under the `wait` policy: tried again in a day, until the store's days
/// since this cycle's first such attempt have passed; then the cycle is skipped. The
/// wait moves the renewal date, so the next cycle comes an interval after delivery.
async fn wait_for_stock(
    state: &AppState,
    row: &SubscriptionRow,
    attempt: i64,
    why: &str,
    wait_days: i64,
) -> Result<RenewalOutcome> {
    let now = state.clock.now();
    let first: Option<String> = sqlx::query(
        "SELECT MIN(created_at) FROM subscription_renewals
         WHERE subscription_id = $1 AND cycle = $2 AND outcome = 'out_of_stock'",
    )
    .bind(row.id)
    .bind(row.cycle)
    .fetch_one(&state.db.pool)
    .await?
    .try_get(0)?;
    let since = first.as_deref().and_then(parse_timestamp).unwrap_or(now);
    let gives_up_at = since + chrono::Duration::days(wait_days);
    let retry_at = now + chrono::Duration::days(1);
    if now >= gives_up_at {
        let why = format!("{why} (waited {wait_days} days for stock)");
        return pass_cycle(state, row, attempt, "out_of_stock", Some(why)).await;
    }
    let (now_text, retry_text) = (format_timestamp(now), format_timestamp(retry_at));
    let mut tx = state.db.begin().await?;
    let moved = sqlx::query(
        "UPDATE subscriptions SET cycle_attempts = $1, next_renewal_at = $2,
            retry_at = CASE WHEN failed_attempts > 0 THEN $2 ELSE retry_at END, updated_at = $3
         WHERE id = $4 AND cycle = $5 AND cycle_attempts = $6 AND status = 'active'",
    )
    .bind(attempt)
    .bind(&retry_text)
    .bind(&now_text)
    .bind(row.id)
    .bind(row.cycle)
    .bind(attempt - 1)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        return Ok(RenewalOutcome::Stale);
    }
    let message = format!("waiting for stock: {why}");
    insert_attempt(
        &mut tx,
        row,
        attempt,
        "out_of_stock",
        Some(&message),
        &now_text,
    )
    .await?;
    crate::bus::record(
        &mut tx,
        "subscription",
        &row.number,
        "subscription.renewal_waiting",
        &serde_json::json!({
            "number": row.number, "customer": row.customer_id, "cycle": row.cycle,
            "reason": why, "retry_at": retry_text,
            "gives_up_at": format_timestamp(gives_up_at),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(RenewalOutcome::WaitingForStock)
}

/// A renewal placed without some items (the `ship_available` policy): its attempt says
/// which, and `subscription.renewal_partial` tells the shopper.
async fn record_left_out(
    state: &AppState,
    row: &SubscriptionRow,
    attempt: i64,
    left_out: &[String],
) -> Result<()> {
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE subscription_renewals SET message = $1
         WHERE subscription_id = $2 AND cycle = $3 AND attempt = $4",
    )
    .bind(format!(
        "delivered without (out of stock): {}",
        left_out.join(", ")
    ))
    .bind(row.id)
    .bind(row.cycle)
    .bind(attempt)
    .execute(&mut *tx)
    .await?;
    crate::bus::record(
        &mut tx,
        "subscription",
        &row.number,
        "subscription.renewal_partial",
        &serde_json::json!({
            "number": row.number, "customer": row.customer_id, "cycle": row.cycle,
            "left_out": left_out,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The attempt at this cycle whose order is placed and not yet settled, if any.
async fn in_flight(state: &AppState, id: i64, cycle: i64) -> Result<Option<(i64, i64)>> {
    let row = sqlx::query(
        "SELECT attempt, order_id FROM subscription_renewals
         WHERE subscription_id = $1 AND cycle = $2 AND outcome = 'placed' AND order_id IS NOT NULL",
    )
    .bind(id)
    .bind(cycle)
    .fetch_optional(&state.db.pool)
    .await?;
    Ok(row
        .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?)
}

/// An attempt whose order exists: pay it if it still waits, or record how it ended.
async fn settle(
    state: &AppState,
    row: &SubscriptionRow,
    attempt: i64,
    order_id: i64,
) -> Result<RenewalOutcome> {
    match order_status(state, order_id).await? {
        OrderStatus::Pending => {
            let Some(method_enc) = &row.payment_method_enc else {
                return Ok(RenewalOutcome::Waiting);
            };
            let charge = Charge::decode(
                &state
                    .keys
                    .decrypt_field(PAYMENT_METHOD_CONTEXT, method_enc)?,
            );
            pay(state, row, attempt, order_id, &charge).await
        }
        OrderStatus::Cancelled => {
            decline(state, row, attempt, "the payment was declined", false).await?;
            Ok(RenewalOutcome::Declined)
        }
        // Paid: paying advanced the cycle in its own transaction.
        _ => Ok(RenewalOutcome::Paid),
    }
}

/// Charges the renewal order off-session; the order's own key keeps it to one charge.
async fn pay(
    state: &AppState,
    row: &SubscriptionRow,
    attempt: i64,
    order_id: i64,
    charge: &Charge,
) -> Result<RenewalOutcome> {
    let paid = crate::orders::authorize(state, order_id, charge, "subscription")
        .await
        .map(|()| None);
    paid_or_declined(state, row, attempt, order_id, paid).await
}

/// What came of a renewal order's authorization (its status after it, None when
/// unknown); a decline is recorded on the subscription.
async fn paid_or_declined(
    state: &AppState,
    row: &SubscriptionRow,
    attempt: i64,
    order_id: i64,
    paid: Result<Option<OrderStatus>>,
) -> Result<RenewalOutcome> {
    match paid {
        Ok(status) => {
            let status = match status {
                Some(status) => status,
                None => order_status(state, order_id).await?,
            };
            Ok(if status == OrderStatus::Paid {
                RenewalOutcome::Paid
            } else {
                RenewalOutcome::Waiting
            })
        }
        Err(Error::PaymentDeclined { reason, hard }) => {
            decline(state, row, attempt, &reason, hard).await?;
            Ok(RenewalOutcome::Declined)
        }
        // The processor could not answer: the job is tried again later, and the same
        // order is paid with the same key.
        Err(other) => Err(other),
    }
}

async fn order_status(state: &AppState, order_id: i64) -> Result<OrderStatus> {
    let status: String = sqlx::query("SELECT status FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(&state.db.pool)
        .await?
        .try_get(0)?;
    OrderStatus::parse(&status)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("order {order_id} has status {status}")))
}

/// The claim of an attempt, first in the renewal order's transaction: answers false
/// (and the order is not placed) unless the subscription is still active at `cycle`,
/// unskipped, with `attempt - 1` attempts made and none in flight.
pub(crate) async fn claim_cycle(
    tx: &mut AnyConnection,
    id: i64,
    cycle: i64,
    attempt: i64,
) -> Result<bool> {
    let claimed = sqlx::query(
        "UPDATE subscriptions SET cycle_attempts = $1
         WHERE id = $2 AND cycle = $3 AND cycle_attempts = $4 AND status = 'active'
           AND skip_next = 0
           AND NOT EXISTS (SELECT 1 FROM subscription_renewals
                           WHERE subscription_id = $2 AND cycle = $3 AND outcome = 'placed')",
    )
    .bind(attempt)
    .bind(id)
    .bind(cycle)
    .bind(attempt - 1)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

/// The attempt's row, in the renewal order's transaction.
pub(crate) async fn record_attempt(
    tx: &mut AnyConnection,
    id: i64,
    cycle: i64,
    attempt: i64,
    order_id: i64,
    now: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO subscription_renewals (subscription_id, cycle, attempt, order_id, outcome,
            created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'placed', $5, $5)",
    )
    .bind(id)
    .bind(cycle)
    .bind(attempt)
    .bind(order_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The next renewal date after a cycle renewed, was skipped or passed: one interval
/// after the date it was due (the rhythm stays), or after now if that is past already.
fn next_date(row: &SubscriptionRow, now: DateTime<Utc>) -> String {
    let due = parse_timestamp(&row.next_renewal_at).unwrap_or(now);
    let next = row.interval.after(due);
    format_timestamp(if next <= now {
        row.interval.after(now)
    } else {
        next
    })
}

/// A renewal's order was paid (in the payment's transaction): the attempt is paid and
/// the subscription moves to its next cycle.
pub(crate) async fn cycle_paid(
    tx: &mut AnyConnection,
    state: &AppState,
    id: i64,
    cycle: i64,
    order_id: i64,
) -> Result<()> {
    let now = state.clock.now();
    let now_text = format_timestamp(now);
    sqlx::query(
        "UPDATE subscription_renewals SET outcome = 'paid', updated_at = $1
         WHERE subscription_id = $2 AND cycle = $3 AND order_id = $4",
    )
    .bind(&now_text)
    .bind(id)
    .bind(cycle)
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    let Some(row) = super::row_by_id(tx, id).await? else {
        return Ok(());
    };
    if row.cycle != cycle {
        return Ok(());
    }
    let next = next_date(&row, now);
    sqlx::query(
        "UPDATE subscriptions SET cycle = cycle + 1, cycle_attempts = 0, failed_attempts = 0,
            first_failed_at = NULL, retry_at = NULL, next_renewal_at = $1, updated_at = $2
         WHERE id = $3 AND cycle = $4",
    )
    .bind(&next)
    .bind(&now_text)
    .bind(id)
    .bind(cycle)
    .execute(&mut *tx)
    .await?;
    crate::bus::record(
        tx,
        "subscription",
        &row.number,
        "subscription.renewed",
        &serde_json::json!({
            "number": row.number, "customer": row.customer_id, "cycle": cycle,
            "order_id": order_id, "next_renewal_at": next,
        }),
    )
    .await?;
    Ok(())
}

/// A cycle that makes no order (skipped, or out of stock): recorded as an attempt, and
/// the subscription moves to its next cycle.
async fn pass_cycle(
    state: &AppState,
    row: &SubscriptionRow,
    attempt: i64,
    outcome: &str,
    message: Option<String>,
) -> Result<RenewalOutcome> {
    let now = state.clock.now();
    let now_text = format_timestamp(now);
    let next = next_date(row, now);
    let mut tx = state.db.begin().await?;
    let moved = sqlx::query(
        "UPDATE subscriptions SET cycle = cycle + 1, cycle_attempts = 0, skip_next = 0,
            next_renewal_at = $1, updated_at = $2
         WHERE id = $3 AND cycle = $4 AND cycle_attempts = $5 AND status = 'active'",
    )
    .bind(&next)
    .bind(&now_text)
    .bind(row.id)
    .bind(row.cycle)
    .bind(attempt - 1)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        return Ok(RenewalOutcome::Stale);
    }
    insert_attempt(
        &mut tx,
        row,
        attempt,
        outcome,
        message.as_deref(),
        &now_text,
    )
    .await?;
    crate::bus::record(
        &mut tx,
        "subscription",
        &row.number,
        "subscription.renewal_skipped",
        &serde_json::json!({
            "number": row.number, "customer": row.customer_id, "cycle": row.cycle,
            "reason": outcome, "message": message, "next_renewal_at": next,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(if outcome == "skipped" {
        RenewalOutcome::Skipped
    } else {
        RenewalOutcome::OutOfStock
    })
}

/// Records an attempt that made no order (skipped, out of stock).
async fn insert_attempt(
    tx: &mut AnyConnection,
    row: &SubscriptionRow,
    attempt: i64,
    outcome: &str,
    message: Option<&str>,
    now_text: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO subscription_renewals (subscription_id, cycle, attempt, outcome, message,
            created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(row.id)
    .bind(row.cycle)
    .bind(attempt)
    .bind(outcome)
    .bind(message)
    .bind(now_text)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A declined attempt: recorded, and the next one scheduled by the store's retry days
/// counted from the cycle's first decline; after the last, or at once when the decline
/// is hard (the card will never work again), paused or cancelled.
async fn decline(
    state: &AppState,
    row: &SubscriptionRow,
    attempt: i64,
    message: &str,
    hard: bool,
) -> Result<()> {
    let now = state.clock.now();
    let now_text = format_timestamp(now);
    let settings = {
        let mut conn = state.db.pool.acquire().await?;
        state.cache.store_settings(&mut conn).await?
    };
    let mut tx = state.db.begin().await?;
    let recorded = sqlx::query(
        "UPDATE subscription_renewals SET outcome = 'declined', message = $1, updated_at = $2
         WHERE subscription_id = $3 AND cycle = $4 AND attempt = $5 AND outcome = 'placed'",
    )
    .bind(message)
    .bind(&now_text)
    .bind(row.id)
    .bind(row.cycle)
    .bind(attempt)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if recorded == 0 {
        return Ok(());
    }
    let failed = row.failed_attempts + 1;
    let first_failed = row
        .first_failed_at
        .as_deref()
        .and_then(parse_timestamp)
        .unwrap_or(now);
    let retry_after = usize::try_from(failed - 1)
        .ok()
        .and_then(|i| settings.subscription_retry_days.get(i).copied())
        .filter(|_| !hard);
    let (status, retry_at) = match retry_after {
        Some(days) => (
            Status::Active,
            Some(format_timestamp(
                first_failed + chrono::Duration::days(days),
            )),
        ),
        None => match settings.subscription_after_dunning {
            AfterDunning::Pause => (Status::Paused, None),
            AfterDunning::Cancel => (Status::Cancelled, None),
        },
    };
    sqlx::query(
        "UPDATE subscriptions SET failed_attempts = $1, first_failed_at = $2, retry_at = $3,
            status = $4, cancel_reason = CASE WHEN $4 = 'cancelled' THEN 'payment failed' ELSE cancel_reason END,
            updated_at = $5
         WHERE id = $6 AND cycle = $7",
    )
    .bind(failed)
    .bind(format_timestamp(first_failed))
    .bind(&retry_at)
    .bind(status.as_str())
    .bind(&now_text)
    .bind(row.id)
    .bind(row.cycle)
    .execute(&mut *tx)
    .await?;
    crate::bus::record(
        &mut tx,
        "subscription",
        &row.number,
        "subscription.renewal_failed",
        &serde_json::json!({
            "number": row.number, "customer": row.customer_id, "cycle": row.cycle,
            "attempt": attempt, "reason": message, "retry_at": retry_at,
            "status": status.as_str(), "hard_decline": hard,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
