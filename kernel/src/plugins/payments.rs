//! Payment operations through the active payment-adapter plugin, under the payment
//! failure policy: whatever goes wrong inside the adapter (trap, budget, memory, invalid
//! output) becomes a clean decline the shopper can be told about, never an error page;
//! the failure counts towards disabling the adapter automatically. The checkout calls
//! [`call`]; every operation carries an idempotency key derived from the order, so a
//! retry never charges twice. A checkout that starts subscriptions first saves the card
//! with the processor ([`save`]) when the adapter can (built for `olivine:plugin@0.2`);
//! renewals then charge the saved method off session.

use olivine_plugin_runtime::bindings::payment;
use olivine_plugin_runtime::{PaymentAnswer, PaymentCall};

use super::decisions::hash;
use super::{Judged, Plugins};

/// An operation on a payment, owned so it can cross to the blocking thread.
#[derive(Debug, Clone)]
pub enum PaymentRequest {
    Save(payment::SaveRequest),
    Authorize(payment::AuthorizeRequest),
    Capture(payment::PaymentOperation),
    Refund(payment::PaymentOperation),
    Void(payment::PaymentOperation),
}

impl PaymentRequest {
    fn name(&self) -> &'static str {
        match self {
            PaymentRequest::Save(_) => "save_payment_method",
            PaymentRequest::Authorize(_) => "authorize",
            PaymentRequest::Capture(_) => "capture",
            PaymentRequest::Refund(_) => "refund",
            PaymentRequest::Void(_) => "void",
        }
    }

    fn digest(&self) -> String {
        let text = match self {
            // Never the token itself: digests are kept in the decision log.
            PaymentRequest::Save(r) => format!("save\0{}", r.idempotency_key),
            PaymentRequest::Authorize(r) => format!(
                "authorize\0{}\0{}\0{}\0{}\0{}",
                r.order_id,
                r.idempotency_key,
                r.amount.amount_minor,
                r.amount.currency,
                r.off_session
            ),
            PaymentRequest::Capture(o) | PaymentRequest::Refund(o) | PaymentRequest::Void(o) => {
                format!(
                    "{}\0{}\0{}\0{}\0{:?}",
                    self.name(),
                    o.order_id,
                    o.idempotency_key,
                    o.processor_reference,
                    o.amount.as_ref().map(|m| (m.amount_minor, &m.currency))
                )
            }
        };
        hash(text.as_bytes())
    }
}

/// What the checkout does next.
#[derive(Debug, Clone)]
pub enum PaymentOutcome {
    /// The processor answered: approved, or pending (it will say later).
    Done(payment::PaymentResult),
    /// The method is saved (for [`PaymentRequest::Save`]).
    Saved(payment::SavedMethod),
    /// Tell the shopper why; release what was reserved. `hard`: the method will never
    /// work again (lost, stolen, closed), so a renewal does not retry it.
    Declined { reason: String, hard: bool },
    /// Try again later with the same idempotency key.
    Retry { reason: String },
}

/// Where the storefront's checkout page posts card details from the shopper's browser:
/// the active adapter's `checkout_tokenize_url` setting (an adapter that can take cards
/// in the storefront declares it). `None`: the storefront cannot take card payments.
pub fn checkout_tokenize_url(plugins: &Plugins) -> Option<String> {
    let snapshot = plugins.snapshot();
    let adapter = snapshot.payments.first()?;
    adapter
        .settings
        .get("checkout_tokenize_url")
        .map(|url| url.trim().to_owned())
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
}

impl PaymentOutcome {
    fn declined(reason: &str) -> PaymentOutcome {
        PaymentOutcome::Declined {
            reason: reason.to_owned(),
            hard: false,
        }
    }
}

/// Whether the active adapter saves payment methods for later (built for 0.2). A 0.1
/// adapter does not: its subscriptions are charged with the checkout's token.
pub fn saves_payment_methods(plugins: &Plugins) -> bool {
    let snapshot = plugins.snapshot();
    snapshot
        .payments
        .first()
        .is_some_and(|adapter| adapter.plugin.saves_payment_methods())
}

/// An adapter's answer for its decision record: its status only (and whether a decline
/// is hard) — never the processor's reference, message, a saved method's label, card
/// data or tokens.
fn answer_detail(answer: &Result<PaymentAnswer, payment::PaymentError>) -> Option<String> {
    use olivine_plugin_runtime::bindings::types::PaymentStatus;
    let summary = match answer {
        Ok(PaymentAnswer::Done(done)) => serde_json::json!({"status": match done.status {
            PaymentStatus::Approved => "approved",
            PaymentStatus::Declined => "declined",
            PaymentStatus::Pending => "pending",
        }}),
        Ok(PaymentAnswer::Saved(_)) => serde_json::json!({"status": "saved"}),
        Err(payment::PaymentError::Declined(decline)) => {
            serde_json::json!({"status": "declined", "hard": decline.hard})
        }
        Err(payment::PaymentError::Retryable(_)) => serde_json::json!({"status": "retryable"}),
        Err(payment::PaymentError::Invalid(_)) => serde_json::json!({"status": "invalid"}),
    };
    super::decisions::detail(summary)
}

/// Runs `request` through the adapter `adapter_id` (or the first active one).
pub async fn call(
    plugins: &Plugins,
    adapter_id: Option<&str>,
    request: PaymentRequest,
) -> PaymentOutcome {
    let snapshot = plugins.snapshot();
    let adapter = snapshot
        .payments
        .iter()
        .find(|p| adapter_id.is_none_or(|id| p.id == id))
        .cloned();
    let Some(adapter) = adapter else {
        return PaymentOutcome::declined(
            "payments are not available right now (no active payment adapter)",
        );
    };
    let name = request.name();
    let input_hash = request.digest();
    let result = {
        let adapter = adapter.clone();
        tokio::task::spawn_blocking(move || {
            let call = match &request {
                PaymentRequest::Save(r) => PaymentCall::Save(r),
                PaymentRequest::Authorize(r) => PaymentCall::Authorize(r),
                PaymentRequest::Capture(o) => PaymentCall::Capture(o),
                PaymentRequest::Refund(o) => PaymentCall::Refund(o),
                PaymentRequest::Void(o) => PaymentCall::Void(o),
            };
            adapter.plugin.payment(call, &adapter.settings)
        })
        .await
    };
    let result = match result {
        Ok(result) => result,
        Err(err) => {
            tracing::error!(plugin = adapter.id, error = %err, "payment task failed");
            return PaymentOutcome::declined("the payment could not be processed");
        }
    };
    match result {
        Ok((answer, stats)) => {
            let detail = answer_detail(&answer);
            let outcome = match answer {
                Ok(PaymentAnswer::Done(done)) => PaymentOutcome::Done(done),
                Ok(PaymentAnswer::Saved(saved)) => PaymentOutcome::Saved(saved),
                Err(payment::PaymentError::Declined(decline)) => PaymentOutcome::Declined {
                    reason: decline.message,
                    hard: decline.hard,
                },
                Err(payment::PaymentError::Retryable(reason)) => PaymentOutcome::Retry { reason },
                Err(payment::PaymentError::Invalid(reason)) => {
                    tracing::error!(
                        plugin = adapter.id,
                        call = name,
                        reason,
                        "payment adapter refused the request as invalid"
                    );
                    PaymentOutcome::declined("the payment could not be processed")
                }
            };
            let judged = Judged {
                outcome: match &outcome {
                    PaymentOutcome::Done(_) | PaymentOutcome::Saved(_) => "ok",
                    PaymentOutcome::Declined { .. } => "declined",
                    PaymentOutcome::Retry { .. } => "retry",
                },
                output_hash: hash(format!("{outcome:?}").as_bytes()),
                detail,
            };
            plugins
                .book_call(&adapter, name, input_hash, Ok((stats, judged)))
                .await;
            outcome
        }
        Err(err) => {
            tracing::warn!(plugin = adapter.id, version = adapter.version, call = name, error = %err, "payment adapter failed; declined");
            plugins
                .book_call(&adapter, name, input_hash, Err(&err))
                .await;
            PaymentOutcome::declined("the payment could not be processed")
        }
    }
}
