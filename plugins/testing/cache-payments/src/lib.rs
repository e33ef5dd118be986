//! A payment adapter built for `olivine:plugin@0.3` (0.2's interface and the host
//! cache): it approves every call, and its message says how many calls this plugin
//! version has answered on this node (a counter kept in the host cache for an hour) and
//! whether the wall clock is real. The host's tests read both.

use olivine_sdk::prelude::*;
use olivine_sdk::{cache, clock};

const COUNTER: &str = "calls";

/// Counts this call in the cache and answers the count.
fn count() -> u64 {
    let seen = cache::get(COUNTER)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let now = seen + 1;
    cache::set(COUNTER, now.to_string(), 3600);
    now
}

fn approve(reference: &str) -> Result<PaymentResult, PaymentError> {
    Ok(PaymentResult {
        status: PaymentStatus::Approved,
        processor_reference: reference.to_owned(),
        message: format!(
            "call {} at {}",
            count(),
            if clock::now_unix_seconds() > 1_700_000_000 {
                "real time"
            } else {
                "time zero"
            }
        ),
    })
}

pub struct CachePayments;

impl PaymentAdapter for CachePayments {
    fn save_payment_method(_: &SaveRequest) -> Result<SavedMethod, PaymentError> {
        Ok(SavedMethod {
            reference: format!("saved-{}", count()),
            label: "Test card".to_owned(),
        })
    }

    fn authorize(request: &AuthorizeRequest) -> Result<PaymentResult, PaymentError> {
        approve(&request.order_id)
    }

    fn capture(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        approve(&operation.order_id)
    }

    fn refund(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        approve(&operation.order_id)
    }

    fn void(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        approve(&operation.order_id)
    }
}

olivine_sdk::export_payment_adapter_v0_3!(CachePayments);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_the_cache() {
        olivine_sdk::testing::clear();
        assert_eq!(count(), 1);
        assert_eq!(count(), 2);
    }
}
