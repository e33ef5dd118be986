//! First-order welcome: a customer in the `first-order` segment gets `percent_off`%
//! (default 15) off the whole cart, as one cart-level adjustment.

use olivine_sdk::prelude::*;

/// The segment the kernel puts customers in before their first order.
pub const SEGMENT: &str = "first-order";

/// Reads and checks `percent_off`.
pub fn percent_off() -> Result<u32, String> {
    let percent = settings::get_parsed_or::<u32>("percent_off", 15)?;
    settings::ensure_range("percent_off", percent, 1..=100)
}

/// The rule itself, as a plain function of the cart and the percent.
pub fn welcome(cart: &Cart, percent: u32) -> Result<Vec<Adjustment>, String> {
    if !cart.customer_in_segment(SEGMENT) {
        return Ok(Vec::new());
    }
    let amount = money::percent_discount(cart.subtotal_minor()?, percent)?;
    if amount == 0 {
        return Ok(Vec::new());
    }
    log::debug!("first-order welcome: {} off", cart.money(-amount));
    Ok(vec![Adjustment::cart(
        amount,
        format!("Welcome! {percent}% off your first order"),
    )])
}

pub struct FirstOrderWelcome;

impl PricingRule for FirstOrderWelcome {
    fn price(cart: &Cart) -> Result<Vec<Adjustment>, String> {
        welcome(cart, percent_off()?)
    }
}

olivine_sdk::export_pricing_rule!(FirstOrderWelcome);

#[cfg(test)]
mod tests {
    use super::*;

    fn cart(segments: &[&str]) -> Cart {
        Cart {
            currency: "EUR".into(),
            lines: vec![CartLine {
                line_id: 1,
                product_index: 0,
                variant_id: 5,
                quantity: 2,
                unit_price_minor: 1999,
                subscription: false,
            }],
            products: vec![ProductRef {
                id: 3,
                slug: "vitamin-c-1000".into(),
                product_type: ProductType::Supplement,
                tags: vec![],
                categories: vec![],
            }],
            customer: Some(CustomerRef {
                pseudonym: "c-1".into(),
                segments: segments.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }

    #[test]
    fn first_order_gets_a_cart_level_discount() {
        let out = welcome(&cart(&["first-order"]), 15).unwrap();
        // 15% of 39.98 = 5.997 -> 6.00
        assert_eq!(
            out,
            [Adjustment::cart(-600, "Welcome! 15% off your first order")]
        );
    }

    #[test]
    fn returning_and_anonymous_customers_get_nothing() {
        assert!(welcome(&cart(&["returning"]), 15).unwrap().is_empty());
        let anonymous = Cart {
            customer: None,
            ..cart(&[])
        };
        assert!(welcome(&anonymous, 15).unwrap().is_empty());
    }

    #[test]
    fn fixtures() {
        let ran = olivine_sdk::testing::fixtures::check_pricing::<FirstOrderWelcome>(env!(
            "CARGO_MANIFEST_DIR"
        ));
        assert_eq!(ran, 4);
    }

    /// The same fixtures through the kernel's real host: built for wasm32-wasip2, loaded
    /// with plugin.toml under the kernel's checks and limits.
    #[cfg(feature = "host-tests")]
    #[test]
    fn fixtures_through_the_real_host() {
        let ran = olivine_sdk::testing::host::check_fixtures(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(ran, 4);
    }
}
