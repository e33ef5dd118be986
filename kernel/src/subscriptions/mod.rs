//! Subscriptions: recurring orders a signed-in customer starts at checkout by buying
//! lines on subscription. Paying that order starts one subscription per delivery
//! interval, with its items, the order's shipping address and method, and the
//! processor's reusable payment method (its token, never card data).
//!
//! The renewal worker ([`renew`]) places each cycle's order through the checkout's own
//! steps (price, reserve, write the order and its events, pay) and charges off-session,
//! once per cycle. The customer (or staff on their behalf) changes a subscription by
//! explicit transitions ([`Action`]): one that does not apply to its state is a 409, and
//! every one is in the audit log and the event log.

pub mod api;
pub mod renew;

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::{Error, Problems, Result};
use crate::http::schema::{IsoDate, SingleLine200, SubscriptionInterval};
use crate::orders::{Charge, ShippingAddress};
use crate::time::{format_timestamp, parse_timestamp};

/// The encryption context of a subscription's payment method (the processor's token).
pub(crate) const PAYMENT_METHOD_CONTEXT: &str = "subscriptions.payment_method";
/// A subscription's email and address are the orders' (copied as they are).
const EMAIL_CONTEXT: &str = "orders.email";
const ADDRESS_CONTEXT: &str = "orders.shipping_address";
/// Where a subscription line's interval is unknown (a line from before intervals).
const DEFAULT_INTERVAL: &str = "30d";

/// How often a subscription is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub count: i64,
    pub unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Day,
    Week,
    Month,
}

impl Unit {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
        }
    }

    fn parse(text: &str) -> Option<Unit> {
        match text {
            "day" => Some(Unit::Day),
            "week" => Some(Unit::Week),
            "month" => Some(Unit::Month),
            _ => None,
        }
    }
}

impl Interval {
    /// `30d`, `2w`, `1m`: at most 366 days, 52 weeks or 12 months.
    pub fn parse(text: &str) -> Option<Interval> {
        let unit = match text.bytes().last()? {
            b'd' => Unit::Day,
            b'w' => Unit::Week,
            b'm' => Unit::Month,
            _ => return None,
        };
        let digits = &text[..text.len() - 1];
        if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let count: i64 = digits.parse().ok()?;
        let max = match unit {
            Unit::Day => 366,
            Unit::Week => 52,
            Unit::Month => 12,
        };
        (1..=max)
            .contains(&count)
            .then_some(Interval { count, unit })
    }

    pub fn text(self) -> String {
        let unit = match self.unit {
            Unit::Day => 'd',
            Unit::Week => 'w',
            Unit::Month => 'm',
        };
        format!("{}{unit}", self.count)
    }

    /// One interval after `at` (a month after 31 January is the end of February).
    pub fn after(self, at: DateTime<Utc>) -> DateTime<Utc> {
        match self.unit {
            Unit::Day => at + chrono::Duration::days(self.count),
            Unit::Week => at + chrono::Duration::weeks(self.count),
            Unit::Month => at
                .checked_add_months(Months::new(u32::try_from(self.count).unwrap_or(1)))
                .unwrap_or(at),
        }
    }
}

/// Where a subscription is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Renews at `next_renewal_at`.
    Active,
    /// Renews nothing until resumed (or until `paused_until`).
    Paused,
    /// For good.
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "active" => Some(Status::Active),
            "paused" => Some(Status::Paused),
            "cancelled" => Some(Status::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionItem {
    pub sku: String,
    pub title: String,
    pub quantity: i64,
}

/// One attempt at one cycle, and what came of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Renewal {
    pub cycle: i64,
    pub attempt: i64,
    /// `placed` (being paid), `paid`, `declined`, `skipped` or `out_of_stock`.
    pub outcome: String,
    /// The renewal's order, when one was placed.
    pub order_number: Option<String>,
    pub message: Option<String>,
    pub at: String,
}

/// What the next renewal will cost, computed by the code the renewal runs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NextRenewal {
    pub at: String,
    pub currency: String,
    pub goods_minor: i64,
    pub shipping_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
    /// Why the next renewal would not go through as things are (e.g. out of stock).
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscription {
    pub number: String,
    pub status: Status,
    /// Every N days, weeks or months: `30d`, `2w`, `1m`.
    #[schema(value_type = SubscriptionInterval)]
    pub interval: String,
    pub items: Vec<SubscriptionItem>,
    /// The cycle the next renewal makes (the first order was cycle 0).
    pub cycle: i64,
    pub next_renewal_at: String,
    /// The next delivery is skipped: the renewal after it is the next one made.
    pub skip_next: bool,
    /// Paused until then (then active again); `null` while paused: until resumed.
    pub paused_until: Option<String>,
    pub shipping_method: String,
    pub country: String,
    pub currency: String,
    /// Decrypted for the customer and staff; absent once erased.
    pub shipping_address: Option<ShippingAddress>,
    /// Declined renewals since it last renewed, and when the next try is.
    pub failed_attempts: i64,
    pub retry_at: Option<String>,
    pub cancel_reason: Option<String>,
    /// What the next renewal costs (on a single subscription's answer only).
    pub next_renewal: Option<NextRenewal>,
    /// Every attempt, newest first (on a single subscription's answer only).
    pub renewals: Vec<Renewal>,
    pub created_at: String,
    pub updated_at: String,
}

/// A change the customer (or staff for them) asks for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Active → paused: until a date (then active again), or until resumed.
    Pause {
        #[serde(default)]
        #[schema(value_type = Option<IsoDate>)]
        until: Option<String>,
    },
    /// Paused → active; a renewal that is overdue runs at once. Ends dunning.
    Resume,
    /// Skips the next delivery (active or paused).
    Skip,
    /// Takes a skip back.
    Unskip,
    /// Renews now instead of at the next date (active); in dunning, retries now.
    RenewNow,
    /// Cancels for good, with the customer's reason.
    Cancel {
        #[schema(value_type = SingleLine200)]
        reason: String,
    },
    /// Changes what the next renewals deliver, when and where; applies from the next
    /// cycle. Any of the fields.
    Change {
        /// The next renewal's date (today or later, within a year).
        #[serde(default)]
        #[schema(value_type = Option<IsoDate>)]
        next_renewal_on: Option<String>,
        #[serde(default)]
        #[schema(value_type = Option<SubscriptionInterval>)]
        interval: Option<String>,
        /// Replaces the items: swap a size or flavour by naming another SKU.
        #[serde(default)]
        #[schema(min_items = 1, max_items = 50)]
        items: Option<Vec<ItemInput>>,
        #[serde(default)]
        shipping_address: Option<Box<ShippingAddress>>,
    },
    /// Replaces the payment method with the processor's token of a new card; a renewal
    /// that was declined is tried again at once.
    ReplacePaymentMethod {
        #[schema(value_type = crate::http::schema::PaymentToken)]
        payment_token: String,
    },
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    #[schema(value_type = crate::http::schema::Sku)]
    pub sku: String,
    #[schema(minimum = 1, maximum = 999)]
    pub quantity: i64,
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Pause { .. } => "paused",
            Action::Resume => "resumed",
            Action::Skip => "skipped",
            Action::Unskip => "unskipped",
            Action::RenewNow => "renew_requested",
            Action::Cancel { .. } => "cancelled",
            Action::Change { .. } => "changed",
            Action::ReplacePaymentMethod { .. } => "payment_method_replaced",
        }
    }
}

/// The columns [`Row`] reads, in its order.
const COLUMNS: &str = "id, number, customer_id, status, interval_count, interval_unit, cycle,
    next_renewal_at, skip_next, paused_until, currency, shipping_method, country, email_enc,
    shipping_address_enc, payment_method_enc, failed_attempts, cycle_attempts, first_failed_at,
    retry_at, cancel_reason, created_at, updated_at, announced_cycle, announced_total_minor";

/// A subscription's row.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionRow {
    pub id: i64,
    pub number: String,
    pub customer_id: i64,
    pub status: Status,
    pub interval: Interval,
    pub cycle: i64,
    pub next_renewal_at: String,
    pub skip_next: bool,
    pub paused_until: Option<String>,
    pub currency: String,
    pub shipping_method: String,
    pub country: String,
    pub email_enc: Option<String>,
    pub address_enc: Option<String>,
    pub payment_method_enc: Option<String>,
    pub failed_attempts: i64,
    pub cycle_attempts: i64,
    pub first_failed_at: Option<String>,
    pub retry_at: Option<String>,
    pub cancel_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The cycle whose renewal price was announced, and that price.
    pub announced_cycle: i64,
    pub announced_total_minor: Option<i64>,
}

impl SubscriptionRow {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<SubscriptionRow> {
        let status: String = row.try_get(3)?;
        let unit: String = row.try_get(5)?;
        let bad = |what: &str| Error::Internal(anyhow::anyhow!("a subscription's {what}"));
        Ok(SubscriptionRow {
            id: row.try_get(0)?,
            number: row.try_get(1)?,
            customer_id: row.try_get(2)?,
            status: Status::parse(&status).ok_or_else(|| bad("status"))?,
            interval: Interval {
                count: row.try_get(4)?,
                unit: Unit::parse(&unit).ok_or_else(|| bad("interval"))?,
            },
            cycle: row.try_get(6)?,
            next_renewal_at: row.try_get(7)?,
            skip_next: row.try_get::<i64, _>(8)? != 0,
            paused_until: row.try_get(9)?,
            currency: row.try_get(10)?,
            shipping_method: row.try_get(11)?,
            country: row.try_get(12)?,
            email_enc: row.try_get(13)?,
            address_enc: row.try_get(14)?,
            payment_method_enc: row.try_get(15)?,
            failed_attempts: row.try_get(16)?,
            cycle_attempts: row.try_get(17)?,
            first_failed_at: row.try_get(18)?,
            retry_at: row.try_get(19)?,
            cancel_reason: row.try_get(20)?,
            created_at: row.try_get(21)?,
            updated_at: row.try_get(22)?,
            announced_cycle: row.try_get(23)?,
            announced_total_minor: row.try_get(24)?,
        })
    }
}

pub(crate) async fn row_by_id(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<SubscriptionRow>> {
    let sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(SubscriptionRow::from_row)
        .transpose()
}

/// A subscription by number; `customer` limits it to theirs (another's is not found).
async fn row_by_number(
    conn: &mut AnyConnection,
    number: &str,
    customer: Option<i64>,
) -> Result<SubscriptionRow> {
    let sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE number = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(number)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(SubscriptionRow::from_row)
        .transpose()?
        .filter(|row| customer.is_none_or(|c| c == row.customer_id));
    row.ok_or_else(|| Error::not_found(format!("subscription {number}")))
}

fn new_number() -> String {
    crate::orders::public_number("SUB")
}

/// An order was paid (in the transaction that records it): a renewal's pays its cycle;
/// a checkout's with lines on subscription starts one subscription per interval,
/// charged later to `method` (the card the processor saved, or the checkout's token).
pub(crate) async fn on_order_paid(
    tx: &mut AnyConnection,
    state: &AppState,
    order_id: i64,
    method: &Charge,
) -> Result<()> {
    let order = sqlx::query(
        "SELECT subscription_id, renewal_cycle, customer_id, currency, shipping_method, country,
            email_enc, shipping_address_enc, number
         FROM orders WHERE id = $1",
    )
    .bind(order_id)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(subscription_id) = order.try_get::<Option<i64>, _>(0)? {
        let cycle: i64 = order.try_get::<Option<i64>, _>(1)?.unwrap_or_default();
        return renew::cycle_paid(tx, state, subscription_id, cycle, order_id).await;
    }
    let Some(customer_id) = order.try_get::<Option<i64>, _>(2)? else {
        return Ok(());
    };
    let lines = sqlx::query(
        "SELECT variant_id, quantity, subscription_interval FROM order_lines
         WHERE order_id = $1 AND subscription = 1 ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    if lines.is_empty() {
        return Ok(());
    }
    // One subscription per interval, items in the order's line order.
    let mut by_interval: Vec<(Interval, Vec<(i64, i64)>)> = Vec::new();
    for line in &lines {
        let text: Option<String> = line.try_get(2)?;
        let interval = text
            .as_deref()
            .and_then(Interval::parse)
            .or_else(|| Interval::parse(DEFAULT_INTERVAL))
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("the default interval")))?;
        let item = (line.try_get(0)?, line.try_get(1)?);
        match by_interval.iter_mut().find(|(i, _)| *i == interval) {
            Some((_, items)) => items.push(item),
            None => by_interval.push((interval, vec![item])),
        }
    }
    let now = state.clock.now();
    let now_text = format_timestamp(now);
    let method_enc = state
        .keys
        .encrypt_field(PAYMENT_METHOD_CONTEXT, &method.encode())?;
    let order_number: String = order.try_get(8)?;
    for (interval, items) in by_interval {
        let number = new_number();
        let next = format_timestamp(interval.after(now));
        let id: i64 = sqlx::query(
            "INSERT INTO subscriptions (number, customer_id, origin_order_id, status,
                interval_count, interval_unit, cycle, next_renewal_at, currency, shipping_method,
                country, email_enc, shipping_address_enc, payment_method_enc, created_at,
                updated_at)
             VALUES ($1, $2, $3, 'active', $4, $5, 1, $6, $7, $8, $9, $10, $11, $12, $13, $13)
             RETURNING id",
        )
        .bind(&number)
        .bind(customer_id)
        .bind(order_id)
        .bind(interval.count)
        .bind(interval.unit.as_str())
        .bind(&next)
        .bind(order.try_get::<String, _>(3)?)
        .bind(order.try_get::<String, _>(4)?)
        .bind(order.try_get::<String, _>(5)?)
        .bind(order.try_get::<String, _>(6)?)
        .bind(order.try_get::<String, _>(7)?)
        .bind(&method_enc)
        .bind(&now_text)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        write_items(tx, id, &items).await?;
        crate::bus::record(
            tx,
            "subscription",
            &number,
            "subscription.created",
            &serde_json::json!({
                "number": number, "customer": customer_id, "order": order_number,
                "interval": interval.text(), "next_renewal_at": next,
            }),
        )
        .await?;
    }
    Ok(())
}

async fn write_items(tx: &mut AnyConnection, id: i64, items: &[(i64, i64)]) -> Result<()> {
    sqlx::query("DELETE FROM subscription_items WHERE subscription_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    for (variant_id, quantity) in items {
        sqlx::query(
            "INSERT INTO subscription_items (subscription_id, variant_id, quantity)
             VALUES ($1, $2, $3)
             ON CONFLICT (subscription_id, variant_id) DO UPDATE
                SET quantity = subscription_items.quantity + excluded.quantity",
        )
        .bind(id)
        .bind(variant_id)
        .bind(quantity)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The subscription as its owner and staff see it; `detailed` adds what the next
/// renewal costs and every attempt.
async fn view(state: &AppState, row: SubscriptionRow, detailed: bool) -> Result<Subscription> {
    let items = sqlx::query(
        "SELECT v.sku, p.name, v.title, i.quantity FROM subscription_items i
         JOIN variants v ON v.id = i.variant_id JOIN products p ON p.id = v.product_id
         WHERE i.subscription_id = $1 ORDER BY i.id",
    )
    .bind(row.id)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|r| {
        let product: String = r.try_get(1)?;
        let variant: String = r.try_get(2)?;
        Ok(SubscriptionItem {
            sku: r.try_get(0)?,
            title: format!("{product} – {variant}"),
            quantity: r.try_get(3)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let shipping_address = match &row.address_enc {
        Some(enc) => Some(
            serde_json::from_str(
                &state
                    .keys
                    .decrypt_any(&state.db.pool, ADDRESS_CONTEXT, enc)
                    .await?,
            )
            .map_err(anyhow::Error::from)?,
        ),
        None => None,
    };
    let (next_renewal, renewals) = if detailed {
        (
            next_renewal(state, &row).await?,
            renewals_of(state, row.id).await?,
        )
    } else {
        (None, Vec::new())
    };
    Ok(Subscription {
        number: row.number,
        status: row.status,
        interval: row.interval.text(),
        items,
        cycle: row.cycle,
        next_renewal_at: row.next_renewal_at,
        skip_next: row.skip_next,
        paused_until: row.paused_until,
        shipping_method: row.shipping_method,
        country: row.country,
        currency: row.currency,
        shipping_address,
        failed_attempts: row.failed_attempts,
        retry_at: row.retry_at,
        cancel_reason: row.cancel_reason,
        next_renewal,
        renewals,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// The next renewal's price as the renewal will compute it now (none once cancelled).
pub(crate) async fn next_renewal(
    state: &AppState,
    row: &SubscriptionRow,
) -> Result<Option<NextRenewal>> {
    if row.status == Status::Cancelled {
        return Ok(None);
    }
    let cart = crate::cart::price_subscription(state, row.id, &row.number, &[]).await?;
    if cart.lines.is_empty() {
        return Ok(None);
    }
    let problem = cart
        .lines
        .iter()
        .find_map(|l| l.problem.as_ref().map(|p| format!("{}: {p}", l.sku)));
    let quote = match renew::quote_held(state, row, cart).await {
        Ok((_, quote)) => quote,
        Err(Error::Validation(_)) | Err(Error::Conflict { .. }) => return Ok(None),
        Err(other) => return Err(other),
    };
    Ok(Some(NextRenewal {
        at: renew::due_at(row).to_owned(),
        currency: quote.currency,
        goods_minor: quote.subtotal_minor + quote.adjustments_minor,
        shipping_minor: quote.shipping_minor,
        tax_minor: quote.tax_minor,
        total_minor: quote.total_minor,
        problem,
    }))
}

async fn renewals_of(state: &AppState, id: i64) -> Result<Vec<Renewal>> {
    sqlx::query(
        "SELECT r.cycle, r.attempt, r.outcome, o.number, r.message, r.updated_at
         FROM subscription_renewals r LEFT JOIN orders o ON o.id = r.order_id
         WHERE r.subscription_id = $1 ORDER BY r.cycle DESC, r.attempt DESC LIMIT 200",
    )
    .bind(id)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(Renewal {
            cycle: r.try_get(0)?,
            attempt: r.try_get(1)?,
            outcome: r.try_get(2)?,
            order_number: r.try_get(3)?,
            message: r.try_get(4)?,
            at: r.try_get(5)?,
        })
    })
    .collect()
}

/// A customer's subscriptions, newest first.
pub async fn list_for_customer(state: &AppState, customer_id: i64) -> Result<Vec<Subscription>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE customer_id = $1 ORDER BY id DESC LIMIT 200"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(customer_id)
        .fetch_all(&state.db.pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(view(state, SubscriptionRow::from_row(row)?, false).await?);
    }
    Ok(out)
}

/// One subscription in detail; `customer` limits it to theirs.
pub async fn get(state: &AppState, number: &str, customer: Option<i64>) -> Result<Subscription> {
    let mut conn = state.db.pool.acquire().await?;
    let row = row_by_number(&mut conn, number, customer).await?;
    drop(conn);
    view(state, row, true).await
}

/// What a subscription's items may be changed to: for each item its product's variants
/// (to swap a size or flavour), and the intervals the items' products offer.
#[derive(Debug, Clone, Default)]
pub struct Choices {
    /// Each interval once, in the products' order.
    pub intervals: Vec<String>,
    /// In the subscription's item order.
    pub items: Vec<ItemChoices>,
}

#[derive(Debug, Clone)]
pub struct ItemChoices {
    /// The item's SKU now.
    pub sku: String,
    /// Its product's variants, by SKU with their title, in the product's order.
    pub variants: Vec<(String, String)>,
}

/// The [`Choices`] of a subscription; `customer` limits it to theirs (another's has none).
pub async fn choices(state: &AppState, number: &str, customer: Option<i64>) -> Result<Choices> {
    let rows = sqlx::query(
        "SELECT v.sku, o.sku, o.title, p.subscription_intervals
         FROM subscriptions s
         JOIN subscription_items i ON i.subscription_id = s.id
         JOIN variants v ON v.id = i.variant_id
         JOIN products p ON p.id = v.product_id
         JOIN variants o ON o.product_id = p.id
         WHERE s.number = $1 AND ($2 IS NULL OR s.customer_id = $2)
         ORDER BY i.id, o.position, o.id",
    )
    .bind(number)
    .bind(customer)
    .fetch_all(&state.db.pool)
    .await?;
    let mut out = Choices::default();
    for row in &rows {
        let sku: String = row.try_get(0)?;
        let variant = (row.try_get(1)?, row.try_get(2)?);
        match out.items.last_mut().filter(|item| item.sku == sku) {
            Some(item) => item.variants.push(variant),
            None => out.items.push(ItemChoices {
                sku,
                variants: vec![variant],
            }),
        }
        let offered: String = row.try_get(3)?;
        for interval in offered.split(',').map(str::trim) {
            if !interval.is_empty() && !out.intervals.iter().any(|i| i == interval) {
                out.intervals.push(interval.to_owned());
            }
        }
    }
    Ok(out)
}

/// What a filter on staff's list asks for.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StaffFilter {
    /// Only subscriptions in this state.
    pub status: Option<Status>,
    /// Only those with a declined renewal waiting for its retry.
    #[serde(default)]
    pub failing: Option<bool>,
    /// Only those renewing at or before this date.
    #[param(value_type = Option<IsoDate>)]
    pub due_by: Option<String>,
}

/// Staff's list, by next renewal (at most 500).
pub async fn list_for_staff(state: &AppState, filter: &StaffFilter) -> Result<Vec<Subscription>> {
    Ok(page_for_staff(state, filter, 0, 500).await?.0)
}

/// `limit` subscriptions of staff's list from the `offset`th, by next renewal, and how
/// many match the filter (the admin's pager).
pub async fn page_for_staff(
    state: &AppState,
    filter: &StaffFilter,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Subscription>, i64)> {
    let due_by = match &filter.due_by {
        Some(date) => Some(format!(
            "{}T23:59:59.999Z",
            crate::time::format_date(
                crate::time::parse_date(date).map_err(|m| Error::invalid("due_by", m))?
            )
        )),
        None => None,
    };
    const MATCHING: &str = "FROM subscriptions
         WHERE ($1 IS NULL OR status = $1)
           AND ($2 = 0 OR failed_attempts > 0)
           AND ($3 IS NULL OR next_renewal_at <= $3)";
    let status = filter.status.map(Status::as_str);
    let failing = i64::from(filter.failing.unwrap_or(false));
    let sql =
        format!("SELECT {COLUMNS} {MATCHING} ORDER BY next_renewal_at, id LIMIT $4 OFFSET $5");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(status)
        .bind(failing)
        .bind(due_by.clone())
        .bind(limit.clamp(1, 500))
        .bind(offset.max(0))
        .fetch_all(&state.db.pool)
        .await?;
    let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(COUNT(*) AS BIGINT) {MATCHING}"
    )))
    .bind(status)
    .bind(failing)
    .bind(due_by)
    .fetch_one(&state.db.pool)
    .await?
    .try_get(0)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(view(state, SubscriptionRow::from_row(row)?, false).await?);
    }
    Ok((out, total))
}

/// Checks an action's input, all problems at once.
fn check_action(action: &Action, today: chrono::NaiveDate) -> Result<()> {
    let mut problems = Problems::new();
    let check_date =
        |problems: &mut Problems, field: &str, date: &str| match crate::time::parse_date(date) {
            Ok(date) if date < today => problems.add(field, "must be today or later"),
            Ok(date) if date > today + chrono::Duration::days(366) => {
                problems.add(field, "must be within a year")
            }
            Ok(_) => {}
            Err(message) => problems.add(field, message),
        };
    match action {
        Action::Pause { until: Some(until) } => check_date(&mut problems, "until", until),
        Action::Cancel { reason } => {
            let reason = reason.trim();
            problems.check(
                !reason.is_empty()
                    && reason.chars().count() <= 200
                    && !reason.chars().any(char::is_control),
                "reason",
                "must be 1 to 200 characters on one line",
            );
        }
        Action::Change {
            next_renewal_on,
            interval,
            items,
            shipping_address,
        } => {
            if let Some(date) = next_renewal_on {
                check_date(&mut problems, "next_renewal_on", date);
            }
            if let Some(interval) = interval {
                problems.check(
                    Interval::parse(interval).is_some(),
                    "interval",
                    "must be every 1 to 366 days (`30d`), 52 weeks (`2w`) or 12 months (`1m`)",
                );
            }
            if let Some(items) = items {
                problems.check(
                    (1..=50).contains(&items.len()),
                    "items",
                    "must hold 1 to 50 items",
                );
                for (i, item) in items.iter().enumerate() {
                    problems.check(
                        (1..=999).contains(&item.quantity),
                        format!("items[{i}].quantity"),
                        "must be between 1 and 999",
                    );
                }
            }
            if let Some(address) = shipping_address {
                crate::orders::check_address(&mut problems, address);
            }
            problems.check(
                next_renewal_on.is_some()
                    || interval.is_some()
                    || items.is_some()
                    || shipping_address.is_some(),
                "action",
                "a change names at least one of next_renewal_on, interval, items, shipping_address",
            );
        }
        Action::ReplacePaymentMethod { payment_token } => {
            crate::orders::check_payment_token(&mut problems, payment_token);
        }
        _ => {}
    }
    problems.into_result()
}

fn illegal(row: &SubscriptionRow, action: &Action) -> Error {
    let what = match action {
        Action::Pause { .. } => "paused",
        Action::Resume => "resumed",
        Action::Skip => "skipped",
        Action::Unskip => "unskipped",
        Action::RenewNow => "renewed now",
        Action::Cancel { .. } => "cancelled",
        Action::Change { .. } => "changed",
        Action::ReplacePaymentMethod { .. } => "given a new card",
    };
    let why = match (row.status, action) {
        (Status::Active, Action::Unskip) => " (its next delivery is not skipped)".to_owned(),
        (Status::Active | Status::Paused, Action::Skip) => {
            " (its next delivery is skipped already)".to_owned()
        }
        _ => String::new(),
    };
    Error::conflict(
        Some("action"),
        format!(
            "a subscription that is {} cannot be {what}{why}",
            row.status.as_str()
        ),
    )
}

/// Applies an action for `actor` (the customer's pseudonym, or a staff actor) in one
/// transaction with its event and audit entry; answers the subscription after it.
pub async fn act(
    state: &AppState,
    actor: &str,
    number: &str,
    customer: Option<i64>,
    action: Action,
) -> Result<Subscription> {
    let now = state.clock.now();
    check_action(&action, now.date_naive())?;
    // A swap's SKUs, read before the transaction.
    let swapped = match &action {
        Action::Change {
            items: Some(items), ..
        } => Some(variants_for(state, items).await?),
        _ => None,
    };
    // A new card is saved with the processor before anything is written, and only for
    // a subscription that can take one (the processor would keep it for nothing).
    let card = match &action {
        Action::ReplacePaymentMethod { payment_token } => {
            let row = row_by_number(&mut *state.db.pool.acquire().await?, number, customer).await?;
            if row.status == Status::Cancelled {
                return Err(illegal(&row, &action));
            }
            Some(save_card(state, number, customer, payment_token.trim()).await?)
        }
        _ => None,
    };
    let mut tx = state.db.begin().await?;
    let row = row_by_number(&mut tx, number, customer).await?;
    let changed = apply(state, &mut tx, &row, &action, now, swapped, card).await?;
    let Some(changes) = changed else {
        return Err(illegal(&row, &action));
    };
    crate::bus::record(
        &mut tx,
        "subscription",
        &row.number,
        &format!("subscription.{}", action.name()),
        &serde_json::json!({ "number": row.number, "customer": row.customer_id, "changes": changes }),
    )
    .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: &format!("subscription.{}", action.name()),
            target_type: "subscription",
            target_id: row.number.clone(),
            before: Some(serde_json::json!({
                "status": row.status.as_str(), "next_renewal_at": row.next_renewal_at,
                "skip_next": row.skip_next, "interval": row.interval.text(),
            })),
            after: Some(changes),
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    state.bus.notify_jobs();
    get(state, number, customer).await
}

/// A replacement card as renewals will charge it: saved with the processor when the
/// adapter can (a decline is a 402, the processor down a 503), else the token itself.
async fn save_card(
    state: &AppState,
    number: &str,
    customer: Option<i64>,
    token: &str,
) -> Result<Charge> {
    use crate::plugins::payments::{self, PaymentOutcome, PaymentRequest};
    use olivine_plugin_runtime::bindings::{payment, types};
    if !payments::saves_payment_methods(&state.plugins) {
        return Ok(Charge::Token(token.to_owned()));
    }
    let owner = sqlx::query(
        "SELECT s.customer_id, c.pseudonym FROM subscriptions s
         JOIN customers c ON c.id = s.customer_id WHERE s.number = $1",
    )
    .bind(number)
    .fetch_optional(&state.db.pool)
    .await?
    .map(|row| Ok::<(i64, String), sqlx::Error>((row.try_get(0)?, row.try_get(1)?)))
    .transpose()?;
    let Some((_, pseudonym)) = owner.filter(|(id, _)| customer.is_none_or(|c| c == *id)) else {
        return Err(Error::not_found(format!("subscription {number}")));
    };
    // One key per subscription and card: a retried request saves the card once.
    let digest = crate::plugins::decisions::hash(token.as_bytes());
    let request = PaymentRequest::Save(payment::SaveRequest {
        payment_token: token.to_owned(),
        idempotency_key: format!("{number}:card:{}", &digest[..16.min(digest.len())]),
        customer: Some(types::CustomerRef {
            pseudonym,
            segments: Vec::new(),
        }),
    });
    match payments::call(&state.plugins, None, request).await {
        PaymentOutcome::Saved(saved) => Ok(Charge::Saved(saved.reference)),
        PaymentOutcome::Declined { reason, hard } => Err(Error::PaymentDeclined { reason, hard }),
        PaymentOutcome::Retry { reason } => Err(Error::Unavailable(format!(
            "the card could not be saved now ({reason}); send the same request again"
        ))),
        PaymentOutcome::Done(_) => Err(Error::PaymentDeclined {
            reason: "the card could not be saved".to_owned(),
            hard: false,
        }),
    }
}

/// Variant ids of a swap's SKUs (products for sale only).
async fn variants_for(state: &AppState, items: &[ItemInput]) -> Result<Vec<(i64, i64)>> {
    let mut out = Vec::with_capacity(items.len());
    let mut problems = Problems::new();
    for (i, item) in items.iter().enumerate() {
        let row = sqlx::query(
            "SELECT v.id, p.subscription_intervals FROM variants v
             JOIN products p ON p.id = v.product_id
             WHERE v.sku = $1 AND p.status = 'active'",
        )
        .bind(item.sku.trim())
        .fetch_optional(&state.db.pool)
        .await?;
        match row {
            Some(row) if !row.try_get::<String, _>(1)?.trim().is_empty() => {
                out.push((row.try_get(0)?, item.quantity))
            }
            Some(_) => problems.add(
                format!("items[{i}].sku"),
                "this product is not sold on subscription",
            ),
            None => problems.add(
                format!("items[{i}].sku"),
                format!("no product for sale has SKU `{}`", item.sku),
            ),
        }
    }
    problems.into_result()?;
    Ok(out)
}

/// The writes of one action, guarded by the state read (a concurrent change makes the
/// second one a 409). Answers what changed, or None when the action does not apply.
async fn apply(
    state: &AppState,
    tx: &mut AnyConnection,
    row: &SubscriptionRow,
    action: &Action,
    now: DateTime<Utc>,
    swapped: Option<Vec<(i64, i64)>>,
    card: Option<Charge>,
) -> Result<Option<serde_json::Value>> {
    use serde_json::json;
    let now_text = format_timestamp(now);
    let guarded = |sql: &str| {
        format!(
            "UPDATE subscriptions SET {sql}, updated_at = $1 WHERE id = $2 AND status = $3 AND updated_at = $4"
        )
    };
    let run = async |tx: &mut AnyConnection, sql: String, extra: Vec<Option<String>>| {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_text.clone())
            .bind(row.id)
            .bind(row.status.as_str())
            .bind(row.updated_at.clone());
        for value in extra {
            query = query.bind(value);
        }
        let done = query.execute(&mut *tx).await?.rows_affected();
        if done == 0 {
            return Err(Error::conflict(
                Some("action"),
                "the subscription changed meanwhile; read it again",
            ));
        }
        Ok::<_, Error>(())
    };
    let active = row.status == Status::Active;
    let open = row.status != Status::Cancelled;
    Ok(match action {
        Action::Pause { until } if active => {
            let until = until.as_ref().map(|d| format!("{d}T00:00:00.000Z"));
            run(
                tx,
                guarded("status = 'paused', paused_until = $5"),
                vec![until.clone()],
            )
            .await?;
            Some(json!({ "status": "paused", "paused_until": until }))
        }
        Action::Resume if row.status == Status::Paused => {
            let next = later(&row.next_renewal_at, &now_text);
            run(
                tx,
                guarded(
                    "status = 'active', paused_until = NULL, failed_attempts = 0,
                     first_failed_at = NULL, retry_at = NULL, next_renewal_at = $5",
                ),
                vec![Some(next.clone())],
            )
            .await?;
            // Overdue (the date passed while paused): it runs now, not at the next scan.
            let overdue = next == now_text;
            if overdue {
                renew::enqueue(tx, row.id, row.cycle, row.cycle_attempts + 1, now).await?;
            }
            Some(json!({ "status": "active", "next_renewal_at": next, "renew_now": overdue }))
        }
        Action::Skip if open && !row.skip_next => {
            run(tx, guarded("skip_next = 1"), vec![]).await?;
            Some(json!({ "skip_next": true }))
        }
        Action::Unskip if open && row.skip_next => {
            run(tx, guarded("skip_next = 0"), vec![]).await?;
            Some(json!({ "skip_next": false }))
        }
        Action::RenewNow if active => {
            run(
                tx,
                // In dunning, the retry is what runs next: it runs now.
                guarded(
                    "next_renewal_at = $5, skip_next = 0,
                     retry_at = CASE WHEN failed_attempts > 0 THEN $5 ELSE retry_at END",
                ),
                vec![Some(now_text.clone())],
            )
            .await?;
            renew::enqueue(tx, row.id, row.cycle, row.cycle_attempts + 1, now).await?;
            Some(json!({ "next_renewal_at": now_text }))
        }
        Action::Cancel { reason } if open => {
            run(
                tx,
                guarded("status = 'cancelled', cancel_reason = $5, retry_at = NULL"),
                vec![Some(reason.trim().to_owned())],
            )
            .await?;
            Some(json!({ "status": "cancelled", "reason": reason.trim() }))
        }
        Action::Change {
            next_renewal_on,
            interval,
            shipping_address,
            ..
        } if open => {
            let next = next_renewal_on
                .as_ref()
                .map(|d| later(&format!("{d}T00:00:00.000Z"), &now_text));
            let interval = interval.as_deref().and_then(Interval::parse);
            let address_enc = match shipping_address {
                Some(address) => {
                    let mut address = ShippingAddress::clone(address);
                    address.country = address.country.trim().to_ascii_uppercase();
                    check_ships_to(tx, &address.country, &row.shipping_method).await?;
                    let fields = state.keys.customer_for_writing(tx, row.customer_id).await?;
                    Some(fields.encrypt(
                        ADDRESS_CONTEXT,
                        &serde_json::to_string(&address).map_err(anyhow::Error::from)?,
                    )?)
                    .map(|enc| (enc, address.country))
                }
                None => None,
            };
            run(
                tx,
                guarded(
                    "next_renewal_at = COALESCE($5, next_renewal_at),
                     interval_count = COALESCE(CAST($6 AS BIGINT), interval_count),
                     interval_unit = COALESCE($7, interval_unit),
                     shipping_address_enc = COALESCE($8, shipping_address_enc),
                     country = COALESCE($9, country)",
                ),
                vec![
                    next.clone(),
                    interval.map(|i| i.count.to_string()),
                    interval.map(|i| i.unit.as_str().to_owned()),
                    address_enc.as_ref().map(|(enc, _)| enc.clone()),
                    address_enc.as_ref().map(|(_, country)| country.clone()),
                ],
            )
            .await?;
            if let Some(items) = &swapped {
                write_items(tx, row.id, items).await?;
            }
            // The shopper sees the changed price in this answer: no announced price holds.
            sqlx::query("UPDATE subscriptions SET announced_total_minor = NULL WHERE id = $1")
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
            Some(json!({
                "next_renewal_at": next,
                "interval": interval.map(Interval::text),
                "items": swapped.as_ref().map(|items| items.len()),
                "shipping_address": address_enc.is_some(),
            }))
        }
        Action::ReplacePaymentMethod { payment_token } if open => {
            let card = card.unwrap_or_else(|| Charge::Token(payment_token.trim().to_owned()));
            let enc = state
                .keys
                .encrypt_field(PAYMENT_METHOD_CONTEXT, &card.encode())?;
            // A renewal waiting for its retry is tried again at once with the new card.
            let failing = active && row.failed_attempts > 0;
            run(
                tx,
                guarded(
                    "payment_method_enc = $5,
                     retry_at = CASE WHEN failed_attempts > 0 THEN $1 ELSE retry_at END",
                ),
                vec![Some(enc)],
            )
            .await?;
            if failing {
                renew::enqueue(tx, row.id, row.cycle, row.cycle_attempts + 1, now).await?;
            }
            Some(json!({ "payment_method": "replaced", "retry_now": failing }))
        }
        _ => None,
    })
}

/// The later of two stored timestamps.
fn later(a: &str, b: &str) -> String {
    match (parse_timestamp(a), parse_timestamp(b)) {
        (Some(x), Some(y)) => format_timestamp(x.max(y)),
        _ => b.to_owned(),
    }
}

/// A new address must be somewhere the subscription's shipping method goes.
async fn check_ships_to(tx: &mut AnyConnection, country: &str, method: &str) -> Result<()> {
    let found = sqlx::query(
        "SELECT 1 FROM shipping_rates WHERE code = $1 AND (country = $2 OR country = '*') LIMIT 1",
    )
    .bind(method)
    .bind(country)
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Err(Error::invalid(
            "shipping_address.country",
            format!("the subscription's shipping method `{method}` does not go to {country}"),
        ));
    }
    Ok(())
}

/// A customer's subscriptions for their GDPR export.
pub async fn export_on(
    conn: &mut AnyConnection,
    keys: &crate::accounts::Keyring,
    customer_id: i64,
) -> Result<serde_json::Value> {
    let sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE customer_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(customer_id)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let row = SubscriptionRow::from_row(row)?;
        let items = sqlx::query(
            "SELECT v.sku, i.quantity FROM subscription_items i
             JOIN variants v ON v.id = i.variant_id WHERE i.subscription_id = $1 ORDER BY i.id",
        )
        .bind(row.id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok(serde_json::json!({ "sku": r.try_get::<String, _>(0)?, "quantity": r.try_get::<i64, _>(1)? })))
        .collect::<Result<Vec<_>>>()?;
        let address = match &row.address_enc {
            Some(enc) => Some(keys.decrypt_any(&mut *conn, ADDRESS_CONTEXT, enc).await?),
            None => None,
        };
        let email = match &row.email_enc {
            Some(enc) => Some(keys.decrypt_any(&mut *conn, EMAIL_CONTEXT, enc).await?),
            None => None,
        };
        out.push(serde_json::json!({
            "number": row.number, "status": row.status.as_str(), "interval": row.interval.text(),
            "items": items, "next_renewal_at": row.next_renewal_at, "shipping_method": row.shipping_method,
            "country": row.country, "email": email,
            "shipping_address": address.and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok()),
            "cancel_reason": row.cancel_reason, "created_at": row.created_at,
        }));
    }
    Ok(serde_json::Value::Array(out))
}

/// Erasure cancels the customer's subscriptions and wipes their identity and payment
/// method (the items and dates stay, as the orders' do, for accounting).
pub async fn erase(tx: &mut AnyConnection, customer_id: i64, now: &str) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE subscriptions SET status = 'cancelled',
            cancel_reason = COALESCE(cancel_reason, 'account erased'), email_enc = NULL,
            shipping_address_enc = NULL, payment_method_enc = NULL, retry_at = NULL,
            updated_at = $1
         WHERE customer_id = $2",
    )
    .bind(now)
    .bind(customer_id)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}
