//! Subscribe & save: every line bought on subscription gets `percent_off`% (default 10)
//! off its line total, rounded half away from zero per line.

use olivine_sdk::prelude::*;
use olivine_sdk::settings::{self, Settings};

pub const DEFAULT_PERCENT: u32 = 10;

pub fn percent_from(s: &Settings) -> Result<u32, String> {
    let percent = s.get_parsed_or::<u32>("percent_off", DEFAULT_PERCENT)?;
    settings::ensure_range("percent_off", percent, 1..=100)
}

pub fn price(cart: &Cart, percent: u32) -> Result<Vec<Adjustment>, String> {
    let reason = format!("Subscribe & save {percent}%");
    let mut out = Vec::new();
    for line in cart.lines.iter().filter(|l| l.subscription) {
        let amount = money::percent_discount(line.total_minor()?, percent)?;
        if amount != 0 {
            out.push(Adjustment::line(line.line_id, amount, reason.clone()));
        }
    }
    Ok(out)
}

pub struct SubscribeAndSave;

impl PricingRule for SubscribeAndSave {
    fn price(cart: &Cart) -> Result<Vec<Adjustment>, String> {
        price(cart, percent_from(&Settings::from_host())?)
    }
}

olivine_sdk::export_pricing_rule!(SubscribeAndSave);

#[cfg(test)]
mod tests {
    use super::*;

    fn line(line_id: u32, quantity: u32, unit_price_minor: i64, subscription: bool) -> CartLine {
        CartLine {
            line_id,
            product_index: 0,
            variant_id: 1,
            quantity,
            unit_price_minor,
            subscription,
        }
    }

    fn cart(lines: Vec<CartLine>) -> Cart {
        Cart {
            currency: "EUR".into(),
            lines,
            products: vec![ProductRef {
                id: 1,
                slug: "daily-probiotic".into(),
                product_type: ProductType::Supplement,
                tags: vec![],
                categories: vec![],
            }],
            customer: None,
        }
    }

    #[test]
    fn only_subscription_lines() {
        let out = price(
            &cart(vec![line(1, 2, 1995, true), line(2, 1, 1995, false)]),
            10,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].line_id, Some(1));
        assert_eq!(out[0].amount_minor, -399); // 3990 * 10% = 399
        assert_eq!(out[0].reason, "Subscribe & save 10%");
    }

    #[test]
    fn rounds_half_away_from_zero() {
        let out = price(&cart(vec![line(1, 1, 1995, true), line(2, 1, 4, true)]), 10).unwrap();
        // 199.5 -> 200; 0.4 -> 0 (no adjustment).
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].amount_minor, -200);
    }

    #[test]
    fn settings() {
        assert_eq!(percent_from(&Settings::default()), Ok(10));
        assert_eq!(
            percent_from(&Settings::from_pairs([("percent_off", "15")])),
            Ok(15)
        );
        assert!(percent_from(&Settings::from_pairs([("percent_off", "0")])).is_err());
        assert!(percent_from(&Settings::from_pairs([("percent_off", "101")])).is_err());
    }

    #[test]
    fn overflow_is_an_error() {
        assert!(price(&cart(vec![line(1, 2, i64::MAX, true)]), 10).is_err());
    }

    #[test]
    fn fixtures() {
        let ran = olivine_sdk::testing::fixtures::check_pricing::<SubscribeAndSave>(env!(
            "CARGO_MANIFEST_DIR"
        ));
        assert!(ran >= 2);
    }
}
