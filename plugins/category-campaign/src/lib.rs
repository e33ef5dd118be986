//! Category campaign: on `order.paid` within a window (`starts_at` to `ends_at`), the
//! lines of one category (`category`) earn extra points, "double points on skincare".
//!
//! The extra is what the campaign adds on top of the shop's base points rule: whole
//! currency units of the matching lines' totals × `points_per_unit` ×
//! (`multiplier_percent` − 100) / 100. At the default 200 percent that is one extra set
//! of points. The window is half-open (`starts_at` earns, `ends_at` does not) and read
//! against the event's `occurred_at`, the kernel's clock: plugins have none. Other
//! events, orders outside the window and orders without a line of the category earn
//! nothing; refunds and cancellations are taken back by the kernel itself.

use olivine_sdk::prelude::*;
use olivine_sdk::settings::{self, Settings};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A category slug.
    pub category: String,
    pub points_per_unit: i64,
    pub multiplier_percent: i64,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        let category = s.required("category")?.trim().to_owned();
        let starts_at: Timestamp = s.required_parsed("starts_at")?;
        let ends_at: Timestamp = s.required_parsed("ends_at")?;
        if ends_at <= starts_at {
            return Err("setting `ends_at` must be after `starts_at`".to_owned());
        }
        Ok(Config {
            category,
            points_per_unit: settings::ensure_range(
                "points_per_unit",
                s.get_parsed_or("points_per_unit", 1)?,
                0..=1_000,
            )?,
            multiplier_percent: settings::ensure_range(
                "multiplier_percent",
                s.get_parsed_or("multiplier_percent", 200)?,
                100..=1_000,
            )?,
            starts_at,
            ends_at,
        })
    }

    /// `Double points on skincare`, `×1.5 points on skincare`.
    pub fn reason(&self) -> String {
        let (whole, hundredths) = (self.multiplier_percent / 100, self.multiplier_percent % 100);
        let how_much = match (whole, hundredths) {
            (2, 0) => "Double".to_owned(),
            (3, 0) => "Triple".to_owned(),
            (4, 0) => "Quadruple".to_owned(),
            (w, 0) => format!("×{w}"),
            (w, h) if h % 10 == 0 => format!("×{w}.{}", h / 10),
            (w, h) => format!("×{w}.{h:02}"),
        };
        format!("{how_much} points on {}", self.category)
    }
}

pub fn on_event(event: &LoyaltyEvent, config: &Config) -> Result<Vec<PointsEntry>, String> {
    if event.kind != "order.paid" {
        return Ok(Vec::new());
    }
    let at = event.occurred_at()?;
    if at < config.starts_at || at >= config.ends_at {
        return Ok(Vec::new());
    }
    let mut matching: Option<Money> = None;
    for line in event.lines_in_category(&config.category) {
        matching = Some(match matching {
            None => line.total.clone(),
            Some(sum) => sum.checked_add(&line.total)?,
        });
    }
    let Some(matching) = matching else {
        return Ok(Vec::new());
    };
    let overflow = || format!("points for {matching} overflow");
    let extra = matching
        .whole_units()
        .max(0)
        .checked_mul(config.points_per_unit)
        .and_then(|p| p.checked_mul(config.multiplier_percent - 100))
        .ok_or_else(overflow)?
        // Whole points: a fraction of one earns nothing, as a fraction of a unit.
        / 100;
    if extra == 0 {
        return Ok(Vec::new());
    }
    Ok(vec![PointsEntry::new(extra, config.reason())])
}

pub struct CategoryCampaign;

impl LoyaltyRule for CategoryCampaign {
    fn on_event(event: &LoyaltyEvent) -> Result<Vec<PointsEntry>, String> {
        on_event(event, &Config::from_settings(&Settings::from_host())?)
    }
}

olivine_sdk::export_loyalty_rule!(CategoryCampaign);

#[cfg(test)]
mod tests {
    use super::*;

    const DECEMBER: [(&str, &str); 3] = [
        ("category", "skincare"),
        ("starts_at", "2026-12-01T00:00:00+01:00"),
        ("ends_at", "2027-01-01T00:00:00+01:00"),
    ];

    fn campaign(extra: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_settings(&Settings::from_pairs(DECEMBER.iter().chain(extra).copied()))
    }

    fn line(sku: &str, categories: &[&str], total_minor: i64) -> OrderLine {
        OrderLine {
            sku: sku.into(),
            product_slug: sku.to_lowercase(),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            quantity: 1,
            total: Money::new(total_minor, "EUR"),
            subscription: false,
        }
    }

    fn paid_at(occurred_at: &str, lines: Vec<OrderLine>) -> LoyaltyEvent {
        LoyaltyEvent {
            amount: Some(Money::new(10_000, "EUR")),
            occurred_at: occurred_at.into(),
            lines,
            ..LoyaltyEvent::new("order.paid", "c-1", "event:1")
        }
    }

    fn basket() -> Vec<OrderLine> {
        vec![
            line("SERUM", &["skincare", "gifts"], 2_499),
            line("MAG-60", &["supplements"], 3_998),
            line("CREAM", &["skincare"], 1_850),
        ]
    }

    #[test]
    fn double_points_on_the_category_within_the_window() {
        let config = campaign(&[]).unwrap();
        // €24.99 + €18.50 = €43.49 of skincare: 43 extra points (one more set).
        let out = on_event(&paid_at("2026-12-10T12:00:00.000Z", basket()), &config).unwrap();
        assert_eq!(out, [PointsEntry::new(43, "Double points on skincare")]);
        let triple = campaign(&[("multiplier_percent", "300"), ("points_per_unit", "2")]).unwrap();
        let out = on_event(&paid_at("2026-12-10T12:00:00.000Z", basket()), &triple).unwrap();
        assert_eq!(out, [PointsEntry::new(172, "Triple points on skincare")]);
        let half_more = campaign(&[("multiplier_percent", "150")]).unwrap();
        let out = on_event(&paid_at("2026-12-10T12:00:00.000Z", basket()), &half_more).unwrap();
        assert_eq!(out, [PointsEntry::new(21, "×1.5 points on skincare")]);
    }

    #[test]
    fn the_window_is_half_open_and_read_as_instants() {
        let config = campaign(&[]).unwrap();
        let earns = |at: &str| {
            !on_event(&paid_at(at, basket()), &config)
                .unwrap()
                .is_empty()
        };
        // 2026-12-01T00:00:00+01:00 is 2026-11-30T23:00:00Z.
        assert!(!earns("2026-11-30T22:59:59.999Z"));
        assert!(earns("2026-11-30T23:00:00.000Z"));
        assert!(earns("2026-12-31T22:59:59.999Z"));
        assert!(!earns("2026-12-31T23:00:00.000Z"));
        assert!(!earns("2027-02-01T00:00:00.000Z"));
    }

    #[test]
    fn nothing_without_a_matching_line_or_for_other_events() {
        let config = campaign(&[]).unwrap();
        let at = "2026-12-10T12:00:00.000Z";
        let supplements_only = vec![line("MAG-60", &["supplements"], 3_998)];
        assert!(
            on_event(&paid_at(at, supplements_only), &config)
                .unwrap()
                .is_empty()
        );
        assert!(
            on_event(&paid_at(at, Vec::new()), &config)
                .unwrap()
                .is_empty()
        );
        // Less than a whole unit of skincare.
        let cheap = vec![line("SAMPLE", &["skincare"], 99)];
        assert!(on_event(&paid_at(at, cheap), &config).unwrap().is_empty());
        for kind in ["order.refunded", "customer.registered", "review.published"] {
            let event = LoyaltyEvent {
                kind: kind.into(),
                ..paid_at(at, basket())
            };
            assert!(on_event(&event, &config).unwrap().is_empty(), "{kind}");
        }
        let multiplied_by_one = campaign(&[("multiplier_percent", "100")]).unwrap();
        assert!(
            on_event(&paid_at(at, basket()), &multiplied_by_one)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn settings_are_checked_and_errors_name_them() {
        let err = |extra: &[(&str, &str)]| campaign(extra).unwrap_err();
        assert!(err(&[("starts_at", "December")]).contains("setting `starts_at`"));
        assert!(err(&[("ends_at", "2027-01-01")]).contains("setting `ends_at`"));
        assert!(err(&[("ends_at", "2026-11-30T23:00:00Z")]).contains("`ends_at` must be after"));
        assert!(err(&[("multiplier_percent", "99")]).contains("multiplier_percent"));
        assert!(err(&[("points_per_unit", "-1")]).contains("points_per_unit"));
        let missing = Config::from_settings(&Settings::from_pairs([("category", "skincare")]));
        assert!(missing.unwrap_err().contains("starts_at"));
    }

    #[test]
    fn a_bad_event_time_is_an_error() {
        let config = campaign(&[]).unwrap();
        let err = on_event(&paid_at("yesterday", basket()), &config).unwrap_err();
        assert!(err.contains("occurred_at"), "{err}");
    }

    #[test]
    fn fixtures() {
        let ran = olivine_sdk::testing::fixtures::check_loyalty::<CategoryCampaign>(env!(
            "CARGO_MANIFEST_DIR"
        ));
        assert!(ran >= 3);
    }
}
