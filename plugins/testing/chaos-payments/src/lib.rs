//! A payment adapter that misbehaves on purpose, for the kernel's failure-policy tests:
//! the `mode` setting makes every operation approve, decline, ask for a retry, trap or
//! loop forever. It never talks to a processor.

use std::hint::black_box;

use olivine_sdk::prelude::*;

pub fn respond(mode: &str, order_id: &str) -> Result<PaymentResult, PaymentError> {
    match mode {
        "approve" => Ok(PaymentResult {
            status: PaymentStatus::Approved,
            processor_reference: format!("chaos-{order_id}"),
            message: "approved".into(),
        }),
        "decline" => Err(PaymentError::Declined("card declined".into())),
        "retry" => Err(PaymentError::Retryable("processor busy".into())),
        "trap" => trap(),
        "loop" => spin(),
        other => Err(PaymentError::Invalid(format!(
            "unknown chaos mode `{other}`; use approve, decline, retry, trap or loop"
        ))),
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    panic!("chaos-payments: trap requested");
}

fn mode() -> String {
    olivine_sdk::settings::get_or("mode", "approve")
        .trim()
        .to_owned()
}

pub struct ChaosPayments;

impl PaymentAdapter for ChaosPayments {
    fn authorize(request: &AuthorizeRequest) -> Result<PaymentResult, PaymentError> {
        respond(&mode(), &request.order_id)
    }

    fn capture(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        respond(&mode(), &operation.order_id)
    }

    fn refund(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        respond(&mode(), &operation.order_id)
    }

    fn void(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        respond(&mode(), &operation.order_id)
    }
}

olivine_sdk::export_payment_adapter!(ChaosPayments);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(
            respond("approve", "1001").unwrap().processor_reference,
            "chaos-1001"
        );
        assert!(matches!(
            respond("decline", "1"),
            Err(PaymentError::Declined(_))
        ));
        assert!(matches!(
            respond("retry", "1"),
            Err(PaymentError::Retryable(_))
        ));
        assert!(matches!(respond("x", "1"), Err(PaymentError::Invalid(_))));
    }
}
