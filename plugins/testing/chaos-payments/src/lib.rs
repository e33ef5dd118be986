//! A payment adapter that misbehaves on purpose, for the kernel's failure-policy tests:
//! the `mode` setting makes every operation approve, decline, ask for a retry, trap or
//! loop forever. It never talks to a processor. Built for `olivine:plugin@0.1` on
//! purpose: the kernel's tests load it to show that 0.1 payment adapters keep working
//! beside 0.2 ones.

use std::hint::black_box;

use olivine_sdk::PaymentAdapterV0_1;
use olivine_sdk::types::{
    AuthorizeRequest, PaymentError, PaymentOperation, PaymentResult, PaymentStatus,
};

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

impl PaymentAdapterV0_1 for ChaosPayments {
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

olivine_sdk::export_payment_adapter_v0_1!(ChaosPayments);

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
