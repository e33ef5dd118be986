//! Loyalty points: `points_per_unit` points per whole currency unit paid on `order.paid`
//! (truncated: €49.99 earns 49 at the default of 1), and a bonus of
//! `renewal_bonus_points` on every `renewal_bonus_every`-th `subscription.renewed`,
//! `welcome_points` on `customer.registered` and `review_points` on `review.published`
//! (both off at 0, the default). Other events earn nothing: refunds and cancellations
//! are taken back by the kernel itself.

use olivine_sdk::prelude::*;
use olivine_sdk::settings::{self, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub points_per_unit: i64,
    pub renewal_bonus_every: u32,
    pub renewal_bonus_points: i64,
    pub welcome_points: i64,
    pub review_points: i64,
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
            let points = units
                .checked_mul(config.points_per_unit)
                .ok_or_else(|| format!("points for {amount} overflow"))?;
            if points == 0 {
                return Ok(Vec::new());
            }
            Ok(vec![PointsEntry::new(
                points,
                format!("Order paid: {amount}"),
            )])
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
            kind: kind.into(),
            customer: CustomerRef {
                pseudonym: "c-42".into(),
                segments: vec![],
            },
            amount,
            count,
            event_id: "evt-1".into(),
        }
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
    fn welcome_and_review_bonuses_are_off_until_set() {
        for kind in ["customer.registered", "review.published"] {
            assert!(
                on_event(&event(kind, None, None), &defaults())
                    .unwrap()
                    .is_empty()
            );
        }
        let generous = Config {
            welcome_points: 50,
            review_points: 20,
            ..defaults()
        };
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
