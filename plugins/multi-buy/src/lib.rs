//! Multi-buy pricing rule: for each listed product (or every product), each full group of
//! `buy` units, counted over all of that product's lines, gets `percent_off`% off or costs
//! `bundle_price_minor` in total. Discounted units are taken from the product's lines in
//! cart order; the adjustment is per line.

use std::collections::BTreeMap;

use olivine_sdk::prelude::*;
use olivine_sdk::settings::{self, Settings};

/// What a full group earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Percent off the group's units (1..=100).
    PercentOff(u32),
    /// The group's units cost this much together (minor units of the cart currency).
    BundlePrice(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Product slugs; empty means every product.
    pub products: Vec<String>,
    /// Group size N.
    pub buy: u32,
    pub offer: Offer,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        let buy = settings::ensure_range("buy", s.get_parsed_or::<u32>("buy", 3)?, 1..=1000)?;
        let percent = s.get_parsed::<u32>("percent_off")?;
        let bundle = s.get_parsed::<i64>("bundle_price_minor")?;
        let offer = match (percent, bundle) {
            (Some(p), None) => {
                Offer::PercentOff(settings::ensure_range("percent_off", p, 1..=100)?)
            }
            (None, Some(b)) if b < 0 => {
                return Err(format!(
                    "setting `bundle_price_minor` must not be negative, got {b}"
                ));
            }
            (None, Some(b)) => Offer::BundlePrice(b),
            (Some(_), Some(_)) => {
                return Err("set either `percent_off` or `bundle_price_minor`, not both".into());
            }
            (None, None) => return Err("set `percent_off` or `bundle_price_minor`".into()),
        };
        let mut products = s.get_list("products");
        products.dedup();
        Ok(Config {
            products,
            buy,
            offer,
        })
    }

    pub fn reason(&self, currency: &str) -> String {
        match self.offer {
            Offer::PercentOff(p) => format!("Buy {}, save {p}%", self.buy),
            Offer::BundlePrice(b) => format!("Buy {} for {}", self.buy, Money::new(b, currency)),
        }
    }
}

/// The lines of each product the rule covers, in cart order.
fn groups<'a>(cart: &'a Cart, config: &Config) -> Vec<Vec<&'a CartLine>> {
    if config.products.is_empty() {
        let mut by_product: BTreeMap<u32, Vec<&CartLine>> = BTreeMap::new();
        for line in &cart.lines {
            by_product.entry(line.product_index).or_default().push(line);
        }
        by_product.into_values().collect()
    } else {
        let mut seen = Vec::new();
        config
            .products
            .iter()
            .filter(|slug| {
                let new = !seen.contains(slug);
                seen.push(*slug);
                new
            })
            .map(|slug| {
                cart.lines
                    .iter()
                    .filter(|l| cart.product_of(l).is_some_and(|p| &p.slug == slug))
                    .collect::<Vec<_>>()
            })
            .filter(|lines| !lines.is_empty())
            .collect()
    }
}

pub fn price(cart: &Cart, config: &Config) -> Result<Vec<Adjustment>, String> {
    let reason = config.reason(&cart.currency);
    let mut out = Vec::new();
    for lines in groups(cart, config) {
        if let Some(line) = lines.iter().find(|l| l.unit_price_minor < 0) {
            return Err(format!("line {} has a negative unit price", line.line_id));
        }
        let units: u64 = lines.iter().map(|l| u64::from(l.quantity)).sum();
        let group_count = units / u64::from(config.buy);
        if group_count == 0 {
            continue;
        }
        // Take the discounted units from the lines in cart order.
        let mut remaining = group_count * u64::from(config.buy);
        let mut taken: Vec<(&CartLine, i64)> = Vec::new();
        for line in lines {
            if remaining == 0 {
                break;
            }
            let take = u64::from(line.quantity).min(remaining);
            remaining -= take;
            if take > 0 {
                // take <= quantity, so it fits in u32.
                taken.push((line, line.price_of_units(take as u32)?));
            }
        }
        let amounts: Vec<i64> = match config.offer {
            Offer::PercentOff(p) => taken
                .iter()
                .map(|(_, value)| money::percent_discount(*value, p))
                .collect::<Result<_, _>>()?,
            Offer::BundlePrice(bundle) => {
                let regular = taken
                    .iter()
                    .try_fold(0_i64, |sum, (_, v)| sum.checked_add(*v));
                let regular = regular.ok_or(MoneyError::Overflow)?;
                let target = i64::try_from(group_count)
                    .ok()
                    .and_then(|g| g.checked_mul(bundle))
                    .ok_or(MoneyError::Overflow)?;
                if target >= regular {
                    continue; // the bundle price is no saving: never raise a price
                }
                let weights: Vec<i64> = taken.iter().map(|(_, v)| *v).collect();
                money::allocate(target - regular, &weights)?
            }
        };
        for ((line, _), amount) in taken.iter().zip(amounts) {
            if amount != 0 {
                out.push(Adjustment::line(line.line_id, amount, reason.clone()));
            }
        }
    }
    Ok(out)
}

pub struct MultiBuy;

impl PricingRule for MultiBuy {
    fn price(cart: &Cart) -> Result<Vec<Adjustment>, String> {
        let config = Config::from_settings(&Settings::from_host())?;
        price(cart, &config)
    }
}

olivine_sdk::export_pricing_rule!(MultiBuy);

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: u64, slug: &str) -> ProductRef {
        ProductRef {
            id,
            slug: slug.into(),
            product_type: ProductType::Supplement,
            tags: vec![],
            categories: vec![],
        }
    }

    fn line(line_id: u32, product_index: u32, quantity: u32, unit_price_minor: i64) -> CartLine {
        CartLine {
            line_id,
            product_index,
            variant_id: 100 + u64::from(line_id),
            quantity,
            unit_price_minor,
            subscription: false,
        }
    }

    fn cart(lines: Vec<CartLine>) -> Cart {
        Cart {
            currency: "EUR".into(),
            lines,
            products: vec![
                product(8, "magnesium-glycinate"),
                product(9, "zinc-picolinate"),
            ],
            customer: None,
        }
    }

    fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_settings(&Settings::from_pairs(pairs.iter().copied()))
    }

    fn amounts(out: &[Adjustment]) -> Vec<(Option<u32>, i64)> {
        out.iter().map(|a| (a.line_id, a.amount_minor)).collect()
    }

    #[test]
    fn three_units_get_ten_percent() {
        let c = config(&[("products", "magnesium-glycinate"), ("percent_off", "10")]).unwrap();
        let out = price(&cart(vec![line(1, 0, 3, 1999)]), &c).unwrap();
        assert_eq!(amounts(&out), [(Some(1), -600)]);
        assert_eq!(out[0].reason, "Buy 3, save 10%");
    }

    #[test]
    fn groups_count_across_lines_in_cart_order() {
        let c = config(&[("products", "magnesium-glycinate"), ("percent_off", "10")]).unwrap();
        // 4 + 3 = 7 units: two groups, six units: four from line 1, two from line 2.
        let out = price(
            &cart(vec![
                line(1, 0, 4, 1999),
                line(2, 0, 3, 3499),
                line(3, 1, 9, 999),
            ]),
            &c,
        )
        .unwrap();
        assert_eq!(amounts(&out), [(Some(1), -800), (Some(2), -700)]);
    }

    #[test]
    fn every_product_when_none_listed() {
        let c = config(&[("buy", "2"), ("percent_off", "50")]).unwrap();
        let out = price(&cart(vec![line(1, 0, 1, 1000), line(2, 1, 3, 999)]), &c).unwrap();
        // Product 0 has one unit: no group. Product 1: one group of two (1998 -> -999).
        assert_eq!(amounts(&out), [(Some(2), -999)]);
    }

    #[test]
    fn no_full_group_no_adjustment() {
        let c = config(&[("percent_off", "10")]).unwrap();
        assert!(
            price(&cart(vec![line(1, 0, 2, 1999)]), &c)
                .unwrap()
                .is_empty()
        );
        assert!(price(&cart(vec![]), &c).unwrap().is_empty());
    }

    #[test]
    fn bundle_price_splits_the_saving_over_lines() {
        let c = config(&[("buy", "2"), ("bundle_price_minor", "3000")]).unwrap();
        let out = price(&cart(vec![line(1, 0, 1, 1999), line(2, 0, 1, 2999)]), &c).unwrap();
        // 4998 -> 3000: -1998 split 1999:2999.
        assert_eq!(amounts(&out), [(Some(1), -799), (Some(2), -1199)]);
        assert_eq!(out[0].reason, "Buy 2 for €30.00");
        // Two groups from one line of five.
        let out = price(&cart(vec![line(1, 0, 5, 1999)]), &c).unwrap();
        assert_eq!(amounts(&out), [(Some(1), 6000 - 7996)]);
    }

    #[test]
    fn bundle_never_raises_a_price() {
        let c = config(&[("buy", "2"), ("bundle_price_minor", "5000")]).unwrap();
        assert!(
            price(&cart(vec![line(1, 0, 2, 1999)]), &c)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn overflow_is_an_error() {
        let c = config(&[("percent_off", "10")]).unwrap();
        assert!(price(&cart(vec![line(1, 0, 3, i64::MAX / 2)]), &c).is_err());
    }

    #[test]
    fn bad_settings() {
        assert_eq!(
            config(&[("percent_off", "10"), ("bundle_price_minor", "100")]).unwrap_err(),
            "set either `percent_off` or `bundle_price_minor`, not both"
        );
        assert_eq!(
            config(&[]).unwrap_err(),
            "set `percent_off` or `bundle_price_minor`"
        );
        assert_eq!(
            config(&[("percent_off", "150")]).unwrap_err(),
            "setting `percent_off` must be between 1 and 100, got 150"
        );
        assert!(config(&[("percent_off", "10"), ("buy", "0")]).is_err());
        assert!(config(&[("bundle_price_minor", "-1")]).is_err());
    }

    #[test]
    fn the_exported_rule_reads_host_settings() {
        olivine_sdk::testing::set_settings([("percent_off", "10")]);
        let out = <MultiBuy as PricingRule>::price(&cart(vec![line(1, 0, 3, 1999)])).unwrap();
        assert_eq!(amounts(&out), [(Some(1), -600)]);
        olivine_sdk::testing::clear();
    }

    #[test]
    fn fixtures() {
        let ran =
            olivine_sdk::testing::fixtures::check_pricing::<MultiBuy>(env!("CARGO_MANIFEST_DIR"));
        assert!(ran >= 2);
    }
}
