//! Store-wide settings the merchant controls, kept in the `settings` table as key/value
//! rows so new settings need no migration.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::error::{Problems, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StoreSettings {
    /// Lots whose expiry is fewer than this many days away are not sold.
    pub min_shelf_life_days: i64,
    /// At or below this many sellable units a variant shows as low stock.
    pub low_stock_threshold: i64,
    /// Catalog prices and shipping rates include tax (VAT), as EU consumer prices must:
    /// the shelf price is what the shopper pays, and the order breaks out the VAT included
    /// at the destination's rate. Off: prices are net and tax is added at checkout.
    pub prices_include_tax: bool,
    /// `subscription.renewal_upcoming` is recorded this many days before a renewal.
    pub subscription_notice_days: i64,
    /// A declined renewal is tried again this many days after its first decline, once
    /// for each number.
    pub subscription_retry_days: Vec<i64>,
    /// What becomes of a subscription whose last retry is declined too.
    pub subscription_after_dunning: AfterDunning,
    /// What a renewal does when an item cannot be delivered.
    pub subscription_out_of_stock: OutOfStock,
    /// With `wait`: how many days a renewal waits for stock (tried daily) before the
    /// cycle is skipped.
    pub subscription_stock_wait_days: i64,
    /// What one loyalty point is worth at checkout, in minor units (0: points cannot be
    /// spent).
    pub loyalty_point_value_minor: i64,
    /// The fewest points a checkout may spend.
    pub loyalty_min_redeem_points: i64,
    /// The largest share of an order's goods points may pay, in percent.
    pub loyalty_max_redeem_percent: i64,
    /// Points earned by an order become spendable this many days after it was paid (so
    /// buying, spending and returning does not pay).
    pub loyalty_pending_days: i64,
    /// Points expire after this many months without an order (0: they never expire).
    pub loyalty_expiry_months: i64,
    /// The most points (either sign) one rule may credit for one event.
    pub loyalty_max_points_per_event: i64,
    /// An erased customer's reviews stay on the product pages, anonymous (rating and
    /// text); off (the default), they are deleted with the account.
    pub reviews_kept_on_erasure: bool,
    /// Search synonyms: groups separated by `;`, the words of a group by `=`, e.g.
    /// `vit c = vitamin c; moisturiser = moisturizer` (a query with one finds the others).
    pub search_synonyms: String,
    /// Which staff must sign in with a second factor: `optional` (whoever turns it on),
    /// `sensitive_roles` (roles holding plugins.manage, staff.manage or customers.read) or
    /// `all_staff`. Changing it needs staff.manage.
    pub staff_two_factor: crate::staff::mfa::TwoFactorPolicy,
}

/// What a renewal does when an item is out of stock; the shopper is told by an event
/// either way (`subscription.renewal_skipped`, `.renewal_waiting`, `.renewal_partial`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutOfStock {
    /// Skip this cycle; the next one comes an interval later.
    Skip,
    /// Try again daily, up to `subscription_stock_wait_days`, then skip.
    Wait,
    /// Deliver the items there are; leave out the rest this cycle.
    ShipAvailable,
}

impl OutOfStock {
    fn as_str(self) -> &'static str {
        match self {
            OutOfStock::Skip => "skip",
            OutOfStock::Wait => "wait",
            OutOfStock::ShipAvailable => "ship_available",
        }
    }
}

/// What a subscription becomes when dunning gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AfterDunning {
    /// Paused indefinitely: the customer resumes it with a working card.
    Pause,
    Cancel,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            min_shelf_life_days: 60,
            low_stock_threshold: 5,
            prices_include_tax: false,
            subscription_notice_days: 3,
            subscription_retry_days: vec![1, 3, 7],
            subscription_after_dunning: AfterDunning::Pause,
            subscription_out_of_stock: OutOfStock::Skip,
            subscription_stock_wait_days: 7,
            loyalty_point_value_minor: 1,
            loyalty_min_redeem_points: 100,
            loyalty_max_redeem_percent: 50,
            loyalty_pending_days: 14,
            loyalty_expiry_months: 0,
            loyalty_max_points_per_event: 100_000,
            reviews_kept_on_erasure: false,
            search_synonyms: String::new(),
            staff_two_factor: crate::staff::mfa::TwoFactorPolicy::Optional,
        }
    }
}

/// The retry days as stored (`1,3,7`); answers None unless each is 1 to 60 and later
/// than the one before, at most 10 of them.
fn parse_retry_days(text: &str) -> Option<Vec<i64>> {
    if text.trim().is_empty() {
        return Some(Vec::new());
    }
    let days: Vec<i64> = text
        .split(',')
        .map(|d| d.trim().parse::<i64>().ok())
        .collect::<Option<_>>()?;
    let ordered = days.windows(2).all(|w| w[0] < w[1]);
    (ordered && days.len() <= 10 && days.iter().all(|d| (1..=60).contains(d))).then_some(days)
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[schema(minimum = 0, maximum = 3650)]
    pub min_shelf_life_days: Option<i64>,
    #[schema(minimum = 0, maximum = 100_000)]
    pub low_stock_threshold: Option<i64>,
    pub prices_include_tax: Option<bool>,
    #[schema(minimum = 0, maximum = 60)]
    pub subscription_notice_days: Option<i64>,
    /// Days after a renewal's first decline to try again, increasing, each 1 to 60, at
    /// most 10 (empty: no retries).
    #[schema(value_type = Option<Vec<crate::http::schema::RetryDay>>, max_items = 10)]
    pub subscription_retry_days: Option<Vec<i64>>,
    pub subscription_after_dunning: Option<AfterDunning>,
    pub subscription_out_of_stock: Option<OutOfStock>,
    #[schema(minimum = 1, maximum = 30)]
    pub subscription_stock_wait_days: Option<i64>,
    #[schema(minimum = 0, maximum = 10_000)]
    pub loyalty_point_value_minor: Option<i64>,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub loyalty_min_redeem_points: Option<i64>,
    #[schema(minimum = 1, maximum = 100)]
    pub loyalty_max_redeem_percent: Option<i64>,
    #[schema(minimum = 0, maximum = 365)]
    pub loyalty_pending_days: Option<i64>,
    #[schema(minimum = 0, maximum = 120)]
    pub loyalty_expiry_months: Option<i64>,
    #[schema(minimum = 1, maximum = 10_000_000)]
    pub loyalty_max_points_per_event: Option<i64>,
    pub reviews_kept_on_erasure: Option<bool>,
    /// Groups separated by `;`, words of a group by `=` (at most 200 groups).
    #[schema(example = "vit c = vitamin c; moisturiser = moisturizer")]
    pub search_synonyms: Option<String>,
    /// Needs staff.manage (the owner), not only settings.write.
    pub staff_two_factor: Option<crate::staff::mfa::TwoFactorPolicy>,
}

/// The loyalty settings as (key, value, allowed range), for checks and storage.
fn loyalty_numbers(patch: &SettingsPatch) -> [(&'static str, Option<i64>, (i64, i64)); 6] {
    [
        (
            "loyalty_point_value_minor",
            patch.loyalty_point_value_minor,
            (0, 10_000),
        ),
        (
            "loyalty_min_redeem_points",
            patch.loyalty_min_redeem_points,
            (0, 1_000_000),
        ),
        (
            "loyalty_max_redeem_percent",
            patch.loyalty_max_redeem_percent,
            (1, 100),
        ),
        ("loyalty_pending_days", patch.loyalty_pending_days, (0, 365)),
        (
            "loyalty_expiry_months",
            patch.loyalty_expiry_months,
            (0, 120),
        ),
        (
            "loyalty_max_points_per_event",
            patch.loyalty_max_points_per_event,
            (1, 10_000_000),
        ),
    ]
}

pub async fn load(conn: &mut AnyConnection) -> Result<StoreSettings> {
    let mut settings = StoreSettings::default();
    for row in sqlx::query("SELECT key, value FROM settings")
        .fetch_all(conn)
        .await?
    {
        let key: String = row.try_get(0)?;
        let value: String = row.try_get(1)?;
        match key.as_str() {
            "prices_include_tax" => {
                settings.prices_include_tax = value == "true";
                continue;
            }
            "reviews_kept_on_erasure" => {
                settings.reviews_kept_on_erasure = value == "true";
                continue;
            }
            "search_synonyms" => {
                settings.search_synonyms = value;
                continue;
            }
            "staff_two_factor" => {
                match crate::staff::mfa::TwoFactorPolicy::parse(&value) {
                    Some(policy) => settings.staff_two_factor = policy,
                    // Unreadable: the strictest reading, never a silent opening.
                    None => {
                        tracing::warn!(
                            value,
                            "unreadable staff_two_factor: requiring it of all staff"
                        );
                        settings.staff_two_factor = crate::staff::mfa::TwoFactorPolicy::AllStaff;
                    }
                }
                continue;
            }
            "subscription_retry_days" => {
                match parse_retry_days(&value) {
                    Some(days) => settings.subscription_retry_days = days,
                    None => tracing::warn!(value, "ignoring unreadable subscription_retry_days"),
                }
                continue;
            }
            "subscription_out_of_stock" => {
                settings.subscription_out_of_stock = match value.as_str() {
                    "wait" => OutOfStock::Wait,
                    "ship_available" => OutOfStock::ShipAvailable,
                    _ => OutOfStock::Skip,
                };
                continue;
            }
            "subscription_after_dunning" => {
                settings.subscription_after_dunning = if value == "cancel" {
                    AfterDunning::Cancel
                } else {
                    AfterDunning::Pause
                };
                continue;
            }
            _ => {}
        }
        let Ok(number) = value.parse::<i64>() else {
            tracing::warn!(key, value, "ignoring a setting that is not a number");
            continue;
        };
        match key.as_str() {
            "min_shelf_life_days" => settings.min_shelf_life_days = number,
            "low_stock_threshold" => settings.low_stock_threshold = number,
            "subscription_notice_days" => settings.subscription_notice_days = number,
            "subscription_stock_wait_days" => settings.subscription_stock_wait_days = number,
            "loyalty_point_value_minor" => settings.loyalty_point_value_minor = number,
            "loyalty_min_redeem_points" => settings.loyalty_min_redeem_points = number,
            "loyalty_max_redeem_percent" => settings.loyalty_max_redeem_percent = number,
            "loyalty_pending_days" => settings.loyalty_pending_days = number,
            "loyalty_expiry_months" => settings.loyalty_expiry_months = number,
            "loyalty_max_points_per_event" => settings.loyalty_max_points_per_event = number,
            _ => {}
        }
    }
    Ok(settings)
}

/// Validates and stores a change, recording a `settings.updated` event and audit entry.
pub async fn update(
    conn: &mut AnyConnection,
    patch: &SettingsPatch,
    actor: &str,
) -> Result<StoreSettings> {
    let mut problems = Problems::new();
    if let Some(days) = patch.min_shelf_life_days {
        problems.check(
            (0..=3650).contains(&days),
            "min_shelf_life_days",
            "must be between 0 and 3650",
        );
    }
    if let Some(threshold) = patch.low_stock_threshold {
        problems.check(
            (0..=100_000).contains(&threshold),
            "low_stock_threshold",
            "must be between 0 and 100000",
        );
    }
    if let Some(days) = patch.subscription_notice_days {
        problems.check(
            (0..=60).contains(&days),
            "subscription_notice_days",
            "must be between 0 and 60",
        );
    }
    if let Some(days) = patch.subscription_stock_wait_days {
        problems.check(
            (1..=30).contains(&days),
            "subscription_stock_wait_days",
            "must be between 1 and 30",
        );
    }
    let retry_days = patch.subscription_retry_days.as_ref().map(|days| {
        days.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    });
    if let Some(days) = &retry_days {
        problems.check(
            parse_retry_days(days).is_some(),
            "subscription_retry_days",
            "must be at most 10 days, each 1 to 60, each later than the one before",
        );
    }
    for (key, value, (min, max)) in loyalty_numbers(patch) {
        if let Some(value) = value {
            problems.check(
                (min..=max).contains(&value),
                key,
                format!("must be between {min} and {max}"),
            );
        }
    }
    if let Some(text) = &patch.search_synonyms
        && let Err(message) = crate::search::synonyms::parse(text)
    {
        problems.add("search_synonyms", message);
    }
    problems.into_result()?;
    let before = load(conn).await?;
    let now = crate::time::now();
    for (key, value) in [
        (
            "min_shelf_life_days",
            patch.min_shelf_life_days.map(|v| v.to_string()),
        ),
        (
            "low_stock_threshold",
            patch.low_stock_threshold.map(|v| v.to_string()),
        ),
        (
            "prices_include_tax",
            patch.prices_include_tax.map(|v| v.to_string()),
        ),
        (
            "reviews_kept_on_erasure",
            patch.reviews_kept_on_erasure.map(|v| v.to_string()),
        ),
        ("search_synonyms", patch.search_synonyms.clone()),
        (
            "staff_two_factor",
            patch.staff_two_factor.map(|v| v.as_str().to_owned()),
        ),
        (
            "subscription_notice_days",
            patch.subscription_notice_days.map(|v| v.to_string()),
        ),
        ("subscription_retry_days", retry_days),
        (
            "subscription_after_dunning",
            patch.subscription_after_dunning.map(|v| match v {
                AfterDunning::Pause => "pause".to_owned(),
                AfterDunning::Cancel => "cancel".to_owned(),
            }),
        ),
        (
            "subscription_out_of_stock",
            patch
                .subscription_out_of_stock
                .map(|v| v.as_str().to_owned()),
        ),
        (
            "subscription_stock_wait_days",
            patch.subscription_stock_wait_days.map(|v| v.to_string()),
        ),
    ]
    .into_iter()
    .chain(
        loyalty_numbers(patch)
            .into_iter()
            .map(|(key, value, _)| (key, value.map(|v| v.to_string()))),
    ) {
        let Some(value) = value else { continue };
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value)
        .bind(&now)
        .execute(&mut *conn)
        .await?;
    }
    let settings = load(conn).await?;
    let after = serde_json::to_value(&settings).map_err(anyhow::Error::from)?;
    crate::bus::record(conn, "settings", "store", "settings.updated", &after).await?;
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: "settings.updated",
            target_type: "settings",
            target_id: "store".to_owned(),
            before: Some(serde_json::to_value(&before).map_err(anyhow::Error::from)?),
            after: Some(after),
        },
    )
    .await?;
    Ok(settings)
}
