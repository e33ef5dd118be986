//! An order's payments one by one and its events, for staff: every answer of the payment
//! adapter about it (authorisations with their declines, captures, voids, refunds), each
//! refund as it was added to `refunded_minor` (by whom, why), and what happened to the
//! order (placed, its payment attempts, and for staff who may read the audit log the
//! audited status changes and refunds: [`EventSources`]).
//!
//! The payment code records as it goes (`payment_attempts`, `order_refunds`, migration
//! 0030); an approval is written in the transaction that acts on it, so a refund listed is
//! a refund counted in `refunded_minor`.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::app::AppState;
use crate::error::{Error, Result};

/// What the payment adapter was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Authorize,
    /// Saving the card for the subscriptions an order starts (before it is charged).
    Save,
    Capture,
    Void,
    Refund,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Authorize => "authorize",
            Operation::Save => "save",
            Operation::Capture => "capture",
            Operation::Void => "void",
            Operation::Refund => "refund",
        }
    }

    pub(crate) fn of_kind(kind: &str) -> Operation {
        match kind {
            "capture" => Operation::Capture,
            "void" => Operation::Void,
            _ => Operation::Refund,
        }
    }
}

/// What the adapter answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Approved,
    /// The processor has not decided yet (the order stays pending).
    Pending,
    Declined,
    /// The processor could not be reached or asked for a retry.
    Unavailable,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Pending => "pending",
            Outcome::Declined => "declined",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// One answer of the payment adapter about an order, to record.
pub(crate) struct Attempt<'a> {
    pub(crate) order_id: i64,
    pub(crate) operation: Operation,
    pub(crate) amount_minor: Option<i64>,
    pub(crate) outcome: Outcome,
    pub(crate) message: Option<&'a str>,
    pub(crate) processor_reference: Option<&'a str>,
    /// Who asked: a staff actor, the shopper's pseudonym or `guest`, `subscription`, …
    pub(crate) actor: &'a str,
}

/// Longest processor message kept (they are short; a misbehaving adapter's is cut).
const MESSAGE_CHARS: usize = 500;

pub(crate) async fn record_attempt(conn: &mut AnyConnection, attempt: &Attempt<'_>) -> Result<()> {
    let message = attempt
        .message
        .filter(|m| !m.is_empty())
        .map(|m| m.chars().take(MESSAGE_CHARS).collect::<String>());
    sqlx::query(
        "INSERT INTO payment_attempts (order_id, operation, amount_minor, outcome, message,
            processor_reference, actor, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(attempt.order_id)
    .bind(attempt.operation.as_str())
    .bind(attempt.amount_minor)
    .bind(attempt.outcome.as_str())
    .bind(message)
    .bind(attempt.processor_reference)
    .bind(attempt.actor)
    .bind(crate::time::now())
    .execute(conn)
    .await?;
    Ok(())
}

/// [`record_attempt`] on its own connection: a refusal or an unreachable processor is
/// recorded though nothing else is written.
pub(crate) async fn record_attempt_now(state: &AppState, attempt: &Attempt<'_>) -> Result<()> {
    let mut conn = state.db.pool.acquire().await?;
    record_attempt(&mut conn, attempt).await
}

/// A refund, in the transaction that adds it to `orders.refunded_minor`.
pub(crate) async fn record_refund(
    conn: &mut AnyConnection,
    order_id: i64,
    amount_minor: i64,
    reason: Option<&str>,
    actor: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO order_refunds (order_id, amount_minor, reason, actor, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(order_id)
    .bind(amount_minor)
    .bind(reason.map(str::trim).filter(|r| !r.is_empty()))
    .bind(actor)
    .bind(crate::time::now())
    .execute(conn)
    .await?;
    Ok(())
}

/// One answer of the payment adapter, as staff read it.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentAttempt {
    /// The order it was about: this one, or another order of the same cart (a declined
    /// checkout's, cancelled, before the shopper paid another way).
    pub order_number: String,
    /// `authorize`, `save`, `capture`, `void` or `refund`.
    pub operation: String,
    pub amount_minor: Option<i64>,
    /// `approved`, `pending`, `declined` or `unavailable`.
    pub outcome: String,
    pub message: Option<String>,
    pub processor_reference: Option<String>,
    pub actor: String,
    pub at: String,
}

/// At most this many attempts or refunds are listed (an order has a handful).
const LISTED: i64 = 200;

/// The order's id and its cart's, or not found.
async fn ids_of(state: &AppState, number: &str) -> Result<(i64, String)> {
    let row = sqlx::query("SELECT id, cart_id FROM orders WHERE number = $1")
        .bind(number)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("order {number}")))?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// The payment attempts of the order and of the other orders made from its cart (a
/// declined payment cancels its order and opens the cart again), oldest first.
pub async fn payment_attempts(state: &AppState, number: &str) -> Result<Vec<PaymentAttempt>> {
    let (_, cart_id) = ids_of(state, number).await?;
    let rows = sqlx::query(
        "SELECT o.number, a.operation, a.amount_minor, a.outcome, a.message,
            a.processor_reference, a.actor, a.created_at
         FROM orders o JOIN payment_attempts a ON a.order_id = o.id
         WHERE o.cart_id = $1 ORDER BY a.id LIMIT $2",
    )
    .bind(&cart_id)
    .bind(LISTED)
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PaymentAttempt {
                order_number: row.try_get(0)?,
                operation: row.try_get(1)?,
                amount_minor: row.try_get(2)?,
                outcome: row.try_get(3)?,
                message: row.try_get(4)?,
                processor_reference: row.try_get(5)?,
                actor: row.try_get(6)?,
                at: row.try_get(7)?,
            })
        })
        .collect()
}

/// One refund of an order.
#[derive(Debug, Clone, Serialize)]
pub struct Refund {
    pub amount_minor: i64,
    pub reason: Option<String>,
    pub actor: String,
    pub at: String,
}

/// The order's refunds, oldest first.
pub async fn refunds(state: &AppState, number: &str) -> Result<Vec<Refund>> {
    let (order_id, _) = ids_of(state, number).await?;
    let rows = sqlx::query(
        "SELECT amount_minor, reason, actor, created_at FROM order_refunds
         WHERE order_id = $1 ORDER BY id LIMIT $2",
    )
    .bind(order_id)
    .bind(LISTED)
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Refund {
                amount_minor: row.try_get(0)?,
                reason: row.try_get(1)?,
                actor: row.try_get(2)?,
                at: row.try_get(3)?,
            })
        })
        .collect()
}

/// Something that happened to an order.
#[derive(Debug, Clone, Serialize)]
pub struct OrderEvent {
    pub at: String,
    pub actor: String,
    /// `order.placed`, `payment.authorize`, `order.status_changed`, `order.refunded`, …
    pub action: String,
    /// What changed, in words: `pending → paid`, `declined: insufficient funds`, …
    pub detail: String,
    /// The amount it was about: a payment attempt's, or what a refund added.
    pub amount_minor: Option<i64>,
}

/// Which of an order's events a reader is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSources {
    /// Its placing and its payment attempts: what any staff member who reads orders sees.
    Payments,
    /// Those and the audit log's entries about the order (status changes, refunds, each
    /// naming the staff member): only for those who may read the audit log
    /// (`audit.read`), as the audit log's own pages and API are.
    PaymentsAndAudit,
}

/// The order's events, oldest first: its placing, its own payment attempts, and, with
/// [`EventSources::PaymentsAndAudit`], what the audit log holds about it (status changes
/// by staff or by a declined payment, refunds). The bus's outbox is pruned, so the
/// durable records are read instead.
pub async fn events(
    state: &AppState,
    number: &str,
    sources: EventSources,
) -> Result<Vec<OrderEvent>> {
    let row = sqlx::query("SELECT id, created_at, customer_id FROM orders WHERE number = $1")
        .bind(number)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("order {number}")))?;
    let order_id: i64 = row.try_get(0)?;
    let placed_by = match row.try_get::<Option<i64>, _>(2)? {
        Some(_) => "customer",
        None => "guest",
    };
    let mut events = vec![OrderEvent {
        at: row.try_get(1)?,
        actor: placed_by.to_owned(),
        action: "order.placed".to_owned(),
        detail: String::new(),
        amount_minor: None,
    }];
    let attempts = sqlx::query(
        "SELECT created_at, actor, operation, outcome, amount_minor, message FROM payment_attempts
         WHERE order_id = $1 ORDER BY id LIMIT $2",
    )
    .bind(order_id)
    .bind(LISTED)
    .fetch_all(&state.db.pool)
    .await?;
    for a in &attempts {
        let outcome: String = a.try_get(3)?;
        let message: Option<String> = a.try_get(5)?;
        events.push(OrderEvent {
            at: a.try_get(0)?,
            actor: a.try_get(1)?,
            action: format!("payment.{}", a.try_get::<String, _>(2)?),
            detail: match message {
                Some(message) => format!("{outcome}: {message}"),
                None => outcome,
            },
            amount_minor: a.try_get(4)?,
        });
    }
    if sources == EventSources::PaymentsAndAudit {
        events.extend(audited_events(state, number).await?);
    }
    // Timestamps are all RFC 3339 UTC with milliseconds: their text sorts by time.
    events.sort_by(|a, b| a.at.cmp(&b.at));
    Ok(events)
}

/// What the audit log holds about the order, oldest first.
async fn audited_events(state: &AppState, number: &str) -> Result<Vec<OrderEvent>> {
    let audited = sqlx::query(
        "SELECT at, actor, action, before, after FROM audit_log
         WHERE target_type = 'order' AND target_id = $1 ORDER BY seq LIMIT $2",
    )
    .bind(number)
    .bind(LISTED)
    .fetch_all(&state.db.pool)
    .await?;
    audited
        .iter()
        .map(|entry| {
            let before = json_of(entry.try_get(3)?);
            let after = json_of(entry.try_get(4)?);
            Ok(OrderEvent {
                at: entry.try_get(0)?,
                actor: entry.try_get(1)?,
                action: entry.try_get(2)?,
                detail: change_in_words(&before, &after),
                amount_minor: after["refunded_minor"]
                    .as_i64()
                    .zip(before["refunded_minor"].as_i64())
                    .map(|(after, before)| after - before),
            })
        })
        .collect()
}

fn json_of(text: Option<String>) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// An audited change of an order in words: the status it moved between, the tracking
/// number (a refund's amount is the event's `amount_minor`).
fn change_in_words(before: &serde_json::Value, after: &serde_json::Value) -> String {
    let mut words = Vec::new();
    if let (Some(from), Some(to)) = (before["status"].as_str(), after["status"].as_str()) {
        words.push(format!("{from} → {to}"));
    }
    if let Some(tracking) = after["tracking_number"].as_str() {
        words.push(format!("tracking {tracking}"));
    }
    if after["full"].as_bool() == Some(true) {
        words.push("all of it refunded".to_owned());
    }
    words.join(", ")
}
