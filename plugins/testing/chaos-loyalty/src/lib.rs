//! A loyalty rule that fails on purpose, so the kernel's tests can check the loyalty
//! failure policy: a failing rule is retried, then dead-lettered, and credits once when
//! it is fixed. The `mode` setting picks the behaviour:
//!
//! | mode              | behaviour                                                 |
//! |-------------------|-----------------------------------------------------------|
//! | `ok`              | 7 points for `order.paid`, reason "chaos loyalty ok"      |
//! | `trap`            | panics, which aborts: a wasm trap                         |
//! | `error`           | returns an error                                          |
//! | `too-many-points` | 1,000,000,000 points, beyond any shop's bound             |
//!
//! It is built for the first version of the world (`abi = "0.1"`, the SDK's
//! [`olivine_sdk::LoyaltyRuleV0_1`]): the kernel's tests use it to check that rules built
//! for 0.1 keep loading and crediting now that the kernel speaks 0.2.
//!
//! Never install this plugin in a shop.

use olivine_sdk::LoyaltyRuleV0_1;
use olivine_sdk::prelude::PointsEntry;
use olivine_sdk::types::LoyaltyEvent;

pub fn run(mode: &str, event: &LoyaltyEvent) -> Result<Vec<PointsEntry>, String> {
    match mode {
        "ok" if event.kind == "order.paid" => Ok(vec![PointsEntry::new(7, "chaos loyalty ok")]),
        "ok" => Ok(Vec::new()),
        "trap" => panic!("chaos-loyalty traps on purpose"),
        "error" => Err("chaos-loyalty fails on purpose".to_owned()),
        "too-many-points" => Ok(vec![PointsEntry::new(1_000_000_000, "chaos loyalty flood")]),
        other => Err(format!("unknown mode `{other}`")),
    }
}

pub struct ChaosLoyalty;

impl LoyaltyRuleV0_1 for ChaosLoyalty {
    fn on_event(event: &LoyaltyEvent) -> Result<Vec<PointsEntry>, String> {
        run(&olivine_sdk::settings::get_or("mode", "ok"), event)
    }
}

olivine_sdk::export_loyalty_rule_v0_1!(ChaosLoyalty);

#[cfg(test)]
mod tests {
    use super::*;
    use olivine_sdk::prelude::{CustomerRef, Money};

    fn event(kind: &str) -> LoyaltyEvent {
        LoyaltyEvent {
            kind: kind.into(),
            customer: CustomerRef {
                pseudonym: "c-1".into(),
                segments: vec![],
            },
            amount: Some(Money::new(1000, "EUR")),
            count: None,
            event_id: "event:1".into(),
        }
    }

    #[test]
    fn modes() {
        assert_eq!(run("ok", &event("order.paid")).unwrap()[0].points, 7);
        assert!(run("ok", &event("customer.registered")).unwrap().is_empty());
        assert!(run("error", &event("order.paid")).is_err());
        assert!(run("nope", &event("order.paid")).is_err());
        assert_eq!(
            run("too-many-points", &event("order.paid")).unwrap()[0].points,
            1_000_000_000
        );
    }

    #[test]
    fn fixtures() {
        let ran = olivine_sdk::testing::fixtures::check_loyalty_v0_1::<ChaosLoyalty>(env!(
            "CARGO_MANIFEST_DIR"
        ));
        assert!(ran > 0);
    }
}
