//! Payment operations through the active payment-adapter plugin, under the payment
//! failure policy: whatever goes wrong inside the adapter (trap, budget, memory, invalid
//! output) becomes a clean decline the shopper can be told about, never an error page;
//! the failure counts towards disabling the adapter automatically. The checkout calls
//! [`call`]; every operation carries an idempotency key derived from the order, so a
//! retry never charges twice.

use olivine_plugin_runtime::PaymentCall;
use olivine_plugin_runtime::bindings::types;

use super::decisions::hash;
use super::{Judged, Plugins};

/// An operation on a payment, owned so it can cross to the blocking thread.
#[derive(Debug, Clone)]
pub enum PaymentRequest {
    Authorize(types::AuthorizeRequest),
    Capture(types::PaymentOperation),
    Refund(types::PaymentOperation),
    Void(types::PaymentOperation),
}

impl PaymentRequest {
    fn name(&self) -> &'static str {
        match self {
            PaymentRequest::Authorize(_) => "authorize",
            PaymentRequest::Capture(_) => "capture",
            PaymentRequest::Refund(_) => "refund",
            PaymentRequest::Void(_) => "void",
        }
    }

    fn digest(&self) -> String {
        let text = match self {
            PaymentRequest::Authorize(r) => format!(
                "authorize\0{}\0{}\0{}\0{}",
                r.order_id, r.idempotency_key, r.amount.amount_minor, r.amount.currency
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
    Done(types::PaymentResult),
    /// Tell the shopper why; release what was reserved.
    Declined { reason: String },
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
        return PaymentOutcome::Declined {
            reason: "payments are not available right now (no active payment adapter)".into(),
        };
    };
    let name = request.name();
    let input_hash = request.digest();
    let result = {
        let adapter = adapter.clone();
        tokio::task::spawn_blocking(move || {
            let call = match &request {
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
            return PaymentOutcome::Declined {
                reason: "the payment could not be processed".into(),
            };
        }
    };
    match result {
        Ok((answer, stats)) => {
            let outcome = match answer {
                Ok(done) => PaymentOutcome::Done(done),
                Err(types::PaymentError::Declined(reason)) => PaymentOutcome::Declined { reason },
                Err(types::PaymentError::Retryable(reason)) => PaymentOutcome::Retry { reason },
                Err(types::PaymentError::Invalid(reason)) => {
                    tracing::error!(
                        plugin = adapter.id,
                        call = name,
                        reason,
                        "payment adapter refused the request as invalid"
                    );
                    PaymentOutcome::Declined {
                        reason: "the payment could not be processed".into(),
                    }
                }
            };
            let judged = Judged {
                outcome: match &outcome {
                    PaymentOutcome::Done(_) => "ok",
                    PaymentOutcome::Declined { .. } => "declined",
                    PaymentOutcome::Retry { .. } => "retry",
                },
                output_hash: hash(format!("{outcome:?}").as_bytes()),
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
            PaymentOutcome::Declined {
                reason: "the payment could not be processed".into(),
            }
        }
    }
}
