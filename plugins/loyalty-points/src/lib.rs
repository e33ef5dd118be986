//! Loyalty points: `points_per_unit` points per whole currency unit paid on `order.paid`
//! (truncated: €49.99 earns 49 at the default of 1), and a bonus of
//! `renewal_bonus_points` on every `renewal_bonus_every`-th `subscription.renewed`,
//! `welcome_points` on `customer.registered` and `review_points` on `review.published`
//! (both off at 0, the default). Other events earn nothing: refunds and cancellations
//! are taken back by the kernel itself.
//!
//! Tiers (`tiers`, e.g. `silver:50000:125,gold:150000:150`) multiply the points of
//! `order.paid` by the percent of the highest tier whose spend the customer reached in
//! the twelve months before the order (the event's `history`, world 0.2).

use olivine_sdk::prelude::*;
use olivine_sdk::settings::{self, Settings};

/// A spend level and what it multiplies an order's points by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: String,
    /// Spend in the last twelve months (minor units) at or above which the tier applies.
    pub min_spend_minor: i64,
    /// 150 = points ×1.5.
    pub multiplier_percent: i64,
}

/// The longest tier name: it goes into the reason the shopper reads (at most 200
/// characters in all).
const MAX_TIER_NAME_CHARS: usize = 32;

impl Tier {
    /// `×1.5` for 150 percent, `×2` for 200, `×1.25` for 125.
    pub fn multiplier_text(&self) -> String {
        let (whole, hundredths) = (self.multiplier_percent / 100, self.multiplier_percent % 100);
        match hundredths {
            0 => format!("×{whole}"),
            h if h % 10 == 0 => format!("×{whole}.{}", h / 10),
            h => format!("×{whole}.{h:02}"),
        }
    }
}

/// Parses `name:min_spend_minor:multiplier_percent,...`, sorted by spend (ascending). An
/// empty text is no tiers; every problem is an error naming the setting.
pub fn parse_tiers(text: &str) -> Result<Vec<Tier>, String> {
    let bad = |why: String| format!("setting `tiers`: {why}");
    let mut tiers: Vec<Tier> = Vec::new();
    for item in settings::split_list(text) {
        let parts: Vec<&str> = item.split(':').map(str::trim).collect();
        let [name, spend, percent] = parts.as_slice() else {
            return Err(bad(format!(
                "`{item}` is not name:min_spend_minor:multiplier_percent"
            )));
        };
        if name.is_empty()
            || name.chars().count() > MAX_TIER_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(bad(format!(
                "`{item}`: a tier's name is 1 to {MAX_TIER_NAME_CHARS} characters"
            )));
        }
        let min_spend_minor: i64 = spend
            .parse()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(|| bad(format!("`{item}`: `{spend}` is not a spend in minor units")))?;
        let multiplier_percent: i64 = percent
            .parse()
            .ok()
            .filter(|p| (100..=1_000).contains(p))
            .ok_or_else(|| {
                bad(format!(
                    "`{item}`: the multiplier `{percent}` is not a percent from 100 to 1000"
                ))
            })?;
        if let Some(twin) = tiers
            .iter()
            .find(|t| t.name == *name || t.min_spend_minor == min_spend_minor)
        {
            return Err(bad(format!(
                "`{item}` repeats the name or spend of `{}`",
                twin.name
            )));
        }
        tiers.push(Tier {
            name: (*name).to_owned(),
            min_spend_minor,
            multiplier_percent,
        });
    }
    tiers.sort_by_key(|t| t.min_spend_minor);
    Ok(tiers)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub points_per_unit: i64,
    pub renewal_bonus_every: u32,
    pub renewal_bonus_points: i64,
    pub welcome_points: i64,
    pub review_points: i64,
    /// Points on the customer's birthday (`customer.birthday`).
    pub birthday_points: i64,
    /// Sorted by spend, ascending.
    pub tiers: Vec<Tier>,
}

impl Config {
    /// The highest tier whose spend `spend_minor` reaches.
    pub fn tier_for(&self, spend_minor: i64) -> Option<&Tier> {
        self.tiers
            .iter()
            .rev()
            .find(|t| spend_minor >= t.min_spend_minor)
    }
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        Ok(Config {
            points_per_unit: settings::ensure_range(
                "points_per_unit",
                s.get_parsed_or("points_per_unit", 1)?,
                0..=1_000,
            )?,
            renewal_bonus_every: settings::ensure_range(
                "renewal_bonus_every",
                s.get_parsed_or("renewal_bonus_every", 3)?,
                1..=1_000,
            )?,
            renewal_bonus_points: settings::ensure_range(
                "renewal_bonus_points",
                s.get_parsed_or("renewal_bonus_points", 100)?,
                0..=1_000_000,
            )?,
            welcome_points: settings::ensure_range(
                "welcome_points",
                s.get_parsed_or("welcome_points", 0)?,
                0..=1_000_000,
            )?,
            review_points: settings::ensure_range(
                "review_points",
                s.get_parsed_or("review_points", 0)?,
                0..=1_000_000,
            )?,
            birthday_points: settings::ensure_range(
                "birthday_points",
                s.get_parsed_or("birthday_points", 0)?,
                0..=1_000_000,
            )?,
            tiers: parse_tiers(s.get_or("tiers", ""))?,
        })
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, `11th`, `21st`, ...
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

pub fn on_event(event: &LoyaltyEvent, config: &Config) -> Result<Vec<PointsEntry>, String> {
    match event.kind.as_str() {
        "order.paid" => {
            let amount = event
                .amount
                .as_ref()
                .ok_or_else(|| format!("order.paid event {} has no amount", event.event_id))?;
            let units = amount.whole_units().max(0);
            let overflow = || format!("points for {amount} overflow");
            let points = units
                .checked_mul(config.points_per_unit)
                .ok_or_else(overflow)?;
            let (points, reason) = match config.tier_for(event.history.spend_12_months.amount_minor)
            {
                // Whole points: a fraction of one earns nothing, as a fraction of a unit.
                Some(tier) => (
                    points
                        .checked_mul(tier.multiplier_percent)
                        .ok_or_else(overflow)?
                        / 100,
                    format!(
                        "Order paid: {amount} ({}, {})",
                        tier.name,
                        tier.multiplier_text()
                    ),
                ),
                None => (points, format!("Order paid: {amount}")),
            };
            if points == 0 {
                return Ok(Vec::new());
            }
            Ok(vec![PointsEntry::new(points, reason)])
        }
        "subscription.renewed" => {
            let count = event.count.ok_or_else(|| {
                format!("subscription.renewed event {} has no count", event.event_id)
            })?;
            if count == 0
                || count % config.renewal_bonus_every != 0
                || config.renewal_bonus_points == 0
            {
                return Ok(Vec::new());
            }
            Ok(vec![PointsEntry::new(
                config.renewal_bonus_points,
                format!("Renewal bonus: {} renewal", ordinal(count)),
            )])
        }
        "customer.registered" if config.welcome_points > 0 => Ok(vec![PointsEntry::new(
            config.welcome_points,
            "Welcome to the shop",
        )]),
        "review.published" if config.review_points > 0 => Ok(vec![PointsEntry::new(
            config.review_points,
            "Thank you for your review",
        )]),
        "customer.birthday" if config.birthday_points > 0 => Ok(vec![PointsEntry::new(
            config.birthday_points,
            "Happy birthday!",
        )]),
        _ => Ok(Vec::new()),
    }
}

pub struct LoyaltyPoints;

impl LoyaltyRule for LoyaltyPoints {
    fn on_event(event: &LoyaltyEvent) -> Result<Vec<PointsEntry>, String> {
        on_event(event, &Config::from_settings(&Settings::from_host())?)
    }
}

olivine_sdk::export_loyalty_rule!(LoyaltyPoints);

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, amount: Option<Money>, count: Option<u32>) -> LoyaltyEvent {
        LoyaltyEvent {
            amount,
            count,
            ..LoyaltyEvent::new(kind, "c-42", "evt-1")
        }
    }

    /// An `order.paid` of `amount_minor` euros by a customer who spent `spend_minor` in
    /// the twelve months before it.
    fn paid_after(amount_minor: i64, spend_minor: i64) -> LoyaltyEvent {
        let mut paid = event("order.paid", Some(Money::new(amount_minor, "EUR")), None);
        paid.history.spend_12_months = Money::new(spend_minor, "EUR");
        paid
    }

    fn tiered(tiers: &str) -> Config {
        Config::from_settings(&Settings::from_pairs([("tiers", tiers)])).unwrap()
    }

    fn defaults() -> Config {
        Config::from_settings(&Settings::default()).unwrap()
    }

    #[test]
    fn points_per_whole_unit_paid() {
        let out = on_event(
            &event("order.paid", Some(Money::new(4999, "EUR")), None),
            &defaults(),
        )
        .unwrap();
        assert_eq!(out, [PointsEntry::new(49, "Order paid: €49.99")]);
        let triple = Config {
            points_per_unit: 3,
            ..defaults()
        };
        let out = on_event(
            &event("order.paid", Some(Money::new(1000, "JPY")), None),
            &triple,
        )
        .unwrap();
        assert_eq!(out[0].points, 3000);
        let out = on_event(
            &event("order.paid", Some(Money::new(99, "EUR")), None),
            &defaults(),
        )
        .unwrap();
        assert!(out.is_empty());
        assert!(on_event(&event("order.paid", None, None), &defaults()).is_err());
    }

    #[test]
    fn renewal_bonus_on_every_third() {
        let config = defaults();
        for (count, bonus) in [
            (1, false),
            (2, false),
            (3, true),
            (4, false),
            (6, true),
            (0, false),
        ] {
            let out = on_event(&event("subscription.renewed", None, Some(count)), &config).unwrap();
            assert_eq!(!out.is_empty(), bonus, "{count}");
        }
        let out = on_event(&event("subscription.renewed", None, Some(3)), &config).unwrap();
        assert_eq!(out, [PointsEntry::new(100, "Renewal bonus: 3rd renewal")]);
        assert!(on_event(&event("subscription.renewed", None, None), &config).is_err());
    }

    #[test]
    fn welcome_review_and_birthday_bonuses_are_off_until_set() {
        for kind in [
            "customer.registered",
            "review.published",
            "customer.birthday",
        ] {
            assert!(
                on_event(&event(kind, None, None), &defaults())
                    .unwrap()
                    .is_empty()
            );
        }
        let generous = Config {
            welcome_points: 50,
            review_points: 20,
            birthday_points: 75,
            ..defaults()
        };
        let out = on_event(&event("customer.birthday", None, None), &generous).unwrap();
        assert_eq!(out, [PointsEntry::new(75, "Happy birthday!")]);
        let out = on_event(&event("customer.registered", None, None), &generous).unwrap();
        assert_eq!(out, [PointsEntry::new(50, "Welcome to the shop")]);
        let out = on_event(&event("review.published", None, None), &generous).unwrap();
        assert_eq!(out[0].points, 20);
        assert!(
            on_event(&event("order.refunded", None, None), &generous)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn other_events_earn_nothing() {
        assert!(
            on_event(&event("review.written", None, None), &defaults())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_highest_tier_reached_multiplies_order_points() {
        let config = tiered("gold:150000:150, silver:50000:125");
        assert_eq!(
            config
                .tiers
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["silver", "gold"]
        );
        // Below every tier: the plain points.
        assert_eq!(
            on_event(&paid_after(4498, 49_999), &config).unwrap(),
            [PointsEntry::new(44, "Order paid: €44.98")]
        );
        // At silver's spend exactly: ×1.25, fractions of a point dropped (55.0).
        assert_eq!(
            on_event(&paid_after(4498, 50_000), &config).unwrap(),
            [PointsEntry::new(55, "Order paid: €44.98 (silver, ×1.25)")]
        );
        assert_eq!(
            on_event(&paid_after(4498, 1_000_000), &config).unwrap(),
            [PointsEntry::new(66, "Order paid: €44.98 (gold, ×1.5)")]
        );
        // Tiers multiply order points only.
        let renewal = event("subscription.renewed", None, Some(3));
        let mut rich = renewal.clone();
        rich.history.spend_12_months = Money::new(1_000_000, "EUR");
        assert_eq!(
            on_event(&rich, &config).unwrap(),
            on_event(&renewal, &defaults()).unwrap()
        );
    }

    #[test]
    fn no_tiers_by_default() {
        assert!(defaults().tiers.is_empty());
        assert!(tiered(" ").tiers.is_empty());
        assert_eq!(
            on_event(&paid_after(4999, 10_000_000), &defaults()).unwrap(),
            [PointsEntry::new(49, "Order paid: €49.99")]
        );
    }

    #[test]
    fn multipliers_read_as_people_write_them() {
        let text = |percent| {
            Tier {
                name: "t".into(),
                min_spend_minor: 0,
                multiplier_percent: percent,
            }
            .multiplier_text()
        };
        assert_eq!(
            [100, 110, 125, 150, 200, 1000].map(text),
            ["×1", "×1.1", "×1.25", "×1.5", "×2", "×10"]
        );
    }

    #[test]
    fn bad_tiers_are_errors_naming_the_setting() {
        for bad in [
            "gold",
            "gold:150000",
            "gold:150000:150:1",
            ":150000:150",
            "gold:lots:150",
            "gold:-1:150",
            "gold:150000:99",
            "gold:150000:1001",
            "gold:150000:1.5",
            "gold:1:150,gold:2:200",
            "silver:1:150,gold:1:200",
            "a-tier-name-far-too-long-for-a-reason:1:150",
        ] {
            let err = Config::from_settings(&Settings::from_pairs([("tiers", bad)])).unwrap_err();
            assert!(err.starts_with("setting `tiers`: "), "{bad}: {err}");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(
            Config::from_settings(&Settings::from_pairs([("renewal_bonus_every", "0")])).is_err()
        );
        assert!(Config::from_settings(&Settings::from_pairs([("points_per_unit", "-1")])).is_err());
    }

    #[test]
    fn ordinals() {
        let got: Vec<_> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .map(ordinal)
            .to_vec();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }

    #[test]
    fn fixtures() {
        let ran = olivine_sdk::testing::fixtures::check_loyalty::<LoyaltyPoints>(env!(
            "CARGO_MANIFEST_DIR"
        ));
        assert!(ran >= 2);
    }
}
