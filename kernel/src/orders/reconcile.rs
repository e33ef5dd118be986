//! The payment reconciler. Checkout commits the order (stock reserved, `pending`) before
//! it asks the processor to authorise, and records the attempt first (the token and the
//! time). If the process dies after the processor authorised but before the answer was
//! recorded, the processor holds an authorisation for an order we still call pending.
//!
//! On start and then every few seconds, the reconciler takes every pending order whose
//! attempt began more than a grace period ago (a live checkout is never raced; racing it
//! would be harmless anyway) and authorises again with the same idempotency key
//! (`<order>:authorize`): the processor answers its first authorisation, so the order
//! becomes paid without a second charge — or cancelled, stock back, if it was declined.
//! A processor that still cannot answer is asked again at the next run; after
//! [`ABANDON_AFTER_SECS`] the order is given up: whatever the processor may hold for it
//! is voided (by order, since we have no reference) and the order cancelled, its stock
//! released. So no authorisation is left without a paid order.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;

use super::{OrderStatus, PAYMENT_TOKEN_CONTEXT, Transition};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::jobs::{FnHandler, JobContext, JobHandler};
use crate::plugins::payments::{PaymentOutcome, PaymentRequest};
use olivine_plugin_runtime::bindings::payment;

/// A pending order whose payment has not been settled for this long is cancelled (and
/// any authorisation for it voided).
pub const ABANDON_AFTER_SECS: i64 = 24 * 60 * 60;

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Orders the processor had authorised: now paid.
    pub paid: u64,
    /// Orders the processor declined, or given up: cancelled, stock released.
    pub cancelled: u64,
    /// Orders still waiting for the processor (asked again next run).
    pub waiting: u64,
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Settles every pending order whose payment attempt began more than `grace` ago.
pub async fn reconcile_once(state: &AppState, grace: Duration) -> Result<ReconcileReport> {
    let now = state.clock.now();
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
    let rows = sqlx::query(
        "SELECT id, number, payment_token_enc, created_at FROM orders
         WHERE status = 'pending' AND payment_token_enc IS NOT NULL AND payment_attempted_at <= $1
         ORDER BY id LIMIT 500",
    )
    .bind(timestamp(now - grace))
    .fetch_all(&state.db.pool)
    .await?;
    let abandon_before = timestamp(now - chrono::Duration::seconds(ABANDON_AFTER_SECS));
    let mut report = ReconcileReport::default();
    for row in rows {
        let order_id: i64 = row.try_get(0)?;
        let number: String = row.try_get(1)?;
        let token_enc: String = row.try_get(2)?;
        let created_at: String = row.try_get(3)?;
        let charge = super::Charge::decode(
            &state
                .keys
                .decrypt_field(PAYMENT_TOKEN_CONTEXT, &token_enc)?,
        );
        match super::authorize(state, order_id, &charge, "reconciler").await {
            Ok(()) => {
                let status = super::payment_facts(state, order_id).await?.status;
                if status == OrderStatus::Paid {
                    tracing::info!(
                        order = number,
                        "reconciler: the processor had authorised; order paid"
                    );
                    report.paid += 1;
                } else {
                    report.waiting += 1;
                }
            }
            Err(Error::PaymentDeclined { reason, .. }) => {
                tracing::info!(
                    order = number,
                    reason,
                    "reconciler: declined; order cancelled"
                );
                report.cancelled += 1;
            }
            Err(Error::Unavailable(reason)) if created_at < abandon_before => {
                tracing::warn!(
                    order = number,
                    reason,
                    "reconciler: giving up on the payment; voiding and cancelling"
                );
                give_up(state, order_id, &number).await?;
                report.cancelled += 1;
            }
            Err(Error::Unavailable(reason)) => {
                tracing::info!(
                    order = number,
                    reason,
                    "reconciler: the processor cannot answer yet"
                );
                report.waiting += 1;
            }
            Err(other) => return Err(other),
        }
    }
    Ok(report)
}

/// Voids whatever the processor holds for the order (by order: no reference is known),
/// then cancels it, releasing its stock. A void the processor cannot take now keeps the
/// order pending for the next run.
async fn give_up(state: &AppState, order_id: i64, number: &str) -> Result<()> {
    let facts = super::payment_facts(state, order_id).await?;
    let void = PaymentRequest::Void(payment::PaymentOperation {
        order_id: number.to_owned(),
        idempotency_key: format!("{number}:void"),
        processor_reference: facts.payment_reference.unwrap_or_default(),
        amount: None,
    });
    match crate::plugins::payments::call(&state.plugins, None, void).await {
        PaymentOutcome::Retry { reason } => {
            return Err(Error::Unavailable(format!("voiding {number}: {reason}")));
        }
        PaymentOutcome::Done(_) | PaymentOutcome::Saved(_) | PaymentOutcome::Declined { .. } => {}
    }
    let change = Transition {
        to: OrderStatus::Cancelled,
        tracking_number: None,
        carrier: None,
    };
    match super::transition_inner(state, "payments", number, order_id, change, false).await {
        Ok(_) | Err(Error::Conflict { .. }) => {}
        Err(other) => return Err(other),
    }
    sqlx::query("UPDATE orders SET payment_token_enc = NULL WHERE id = $1")
        .bind(order_id)
        .execute(&state.db.pool)
        .await?;
    Ok(())
}

/// The job kind of a reconciliation run (scheduled every
/// `OLIVINE_PAYMENT_RECONCILE_SECS`, and when a node starts).
pub const JOB: &str = "payments.reconcile";

/// The reconciler as a job: settles what it can; a processor that cannot answer yet is
/// asked again at the next run, so a run itself fails only on the kernel's own errors.
pub fn job(grace: Duration) -> Arc<dyn JobHandler> {
    FnHandler::new(JOB, move |ctx: &JobContext| {
        Box::pin(async move {
            let report = reconcile_once(&ctx.state, grace)
                .await
                .map_err(|e| anyhow::anyhow!("payment reconciliation: {}", e.body().message))?;
            if report != ReconcileReport::default() {
                tracing::info!(
                    paid = report.paid,
                    cancelled = report.cancelled,
                    waiting = report.waiting,
                    "reconciled payments"
                );
            }
            Ok(())
        })
    })
}
