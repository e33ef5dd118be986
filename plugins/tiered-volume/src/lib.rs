//! Tiered volume discount: once the cart holds at least `min` units in total, every line
//! gets the percent of the highest tier reached. Tiers are written `min:percent,...`,
//! e.g. `10:5,25:10,50:15`.

use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;

/// The manifest's default.
pub const DEFAULT_TIERS: &str = "10:5,25:10,50:15";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// Units in the whole cart from which the tier applies.
    pub min_units: u32,
    /// Percent off every line, 1..=100.
    pub percent: u32,
}

/// Parses `min:percent` pairs separated by commas, into tiers sorted by `min_units`.
/// Errors name the `tiers` setting and the entry at fault.
pub fn parse_tiers(text: &str) -> Result<Vec<Tier>, String> {
    let bad = |entry: &str, why: &str| format!("setting `tiers`: `{entry}` {why}");
    let mut tiers = Vec::new();
    for entry in text.split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let (min, percent) = entry
            .split_once(':')
            .ok_or_else(|| bad(entry, "is not `min_units:percent`, e.g. `10:5`"))?;
        let min_units: u32 = min
            .trim()
            .parse()
            .map_err(|_| bad(entry, "has a minimum that is not a whole number"))?;
        let percent: u32 = percent
            .trim()
            .parse()
            .map_err(|_| bad(entry, "has a percent that is not a whole number"))?;
        if min_units == 0 {
            return Err(bad(entry, "has a minimum of 0 units; start at 1"));
        }
        if !(1..=100).contains(&percent) {
            return Err(bad(entry, "has a percent outside 1..=100"));
        }
        tiers.push(Tier { min_units, percent });
    }
    if tiers.is_empty() {
        return Err("setting `tiers` lists no tiers; write e.g. `10:5,25:10,50:15`".into());
    }
    tiers.sort_by_key(|t| t.min_units);
    if let Some(w) = tiers.windows(2).find(|w| w[0].min_units == w[1].min_units) {
        return Err(format!(
            "setting `tiers` has two tiers from {} units",
            w[0].min_units
        ));
    }
    Ok(tiers)
}

/// The highest tier `units` reaches.
pub fn tier_for(tiers: &[Tier], units: u64) -> Option<Tier> {
    tiers
        .iter()
        .rev()
        .find(|t| u64::from(t.min_units) <= units)
        .copied()
}

pub fn price(cart: &Cart, tiers: &[Tier]) -> Result<Vec<Adjustment>, String> {
    let Some(tier) = tier_for(tiers, cart.total_units()) else {
        return Ok(Vec::new());
    };
    let reason = format!(
        "Volume discount {}% ({}+ items)",
        tier.percent, tier.min_units
    );
    let mut out = Vec::new();
    for line in &cart.lines {
        let amount = money::percent_discount(line.total_minor()?, tier.percent)?;
        if amount != 0 {
            out.push(Adjustment::line(line.line_id, amount, reason.clone()));
        }
    }
    Ok(out)
}

pub struct TieredVolume;

impl PricingRule for TieredVolume {
    fn price(cart: &Cart) -> Result<Vec<Adjustment>, String> {
        let tiers = parse_tiers(Settings::from_host().get_or("tiers", DEFAULT_TIERS))?;
        price(cart, &tiers)
    }
}

olivine_sdk::export_pricing_rule!(TieredVolume);

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min_units: u32, percent: u32) -> Tier {
        Tier { min_units, percent }
    }

    #[test]
    fn parses_and_sorts_tiers() {
        assert_eq!(
            parse_tiers("10:5,25:10,50:15"),
            Ok(vec![t(10, 5), t(25, 10), t(50, 15)])
        );
        assert_eq!(
            parse_tiers(" 50 : 15 , 10:5,"),
            Ok(vec![t(10, 5), t(50, 15)])
        );
    }

    #[test]
    fn rejects_bad_tiers() {
        for bad in [
            "",
            " , ",
            "10",
            "ten:5",
            "10:x",
            "0:5",
            "10:0",
            "10:101",
            "10:5,10:6",
            "10:-5",
        ] {
            let err = parse_tiers(bad).unwrap_err();
            assert!(err.starts_with("setting `tiers`"), "{bad}: {err}");
        }
    }

    #[test]
    fn highest_tier_reached() {
        let tiers = parse_tiers("10:5,25:10,50:15").unwrap();
        assert_eq!(tier_for(&tiers, 9), None);
        assert_eq!(tier_for(&tiers, 10), Some(t(10, 5)));
        assert_eq!(tier_for(&tiers, 49), Some(t(25, 10)));
        assert_eq!(tier_for(&tiers, 1000), Some(t(50, 15)));
    }

    fn line(line_id: u32, product_index: u32, quantity: u32, unit_price_minor: i64) -> CartLine {
        CartLine {
            line_id,
            product_index,
            variant_id: 1,
            quantity,
            unit_price_minor,
            subscription: false,
        }
    }

    #[test]
    fn applies_to_every_line() {
        let cart = Cart {
            currency: "EUR".into(),
            lines: vec![line(1, 0, 20, 999), line(2, 1, 5, 1995)],
            products: vec![],
            customer: None,
        };
        let tiers = parse_tiers("10:5,25:10,50:15").unwrap();
        let out = price(&cart, &tiers).unwrap();
        // 25 units: 10%. 19980 -> -1998; 9975 -> 997.5 -> -998.
        let got: Vec<_> = out.iter().map(|a| (a.line_id, a.amount_minor)).collect();
        assert_eq!(got, [(Some(1), -1998), (Some(2), -998)]);
        assert_eq!(out[0].reason, "Volume discount 10% (25+ items)");
        let small = Cart {
            lines: vec![line(1, 0, 9, 999)],
            ..cart
        };
        assert!(price(&small, &tiers).unwrap().is_empty());
    }

    #[test]
    fn fixtures() {
        let ran = olivine_sdk::testing::fixtures::check_pricing::<TieredVolume>(env!(
            "CARGO_MANIFEST_DIR"
        ));
        assert!(ran >= 2);
    }
}
