//! The loyalty processor: a cluster-once consumer of the bus that turns loyalty-relevant
//! events into ledger entries, off the checkout's path.
//!
//! For each event it does the kernel's own part (a refund or cancellation takes back the
//! order's points in proportion) and asks every active `loyalty-rule` plugin what the
//! event earns, passing what the loyalty world 0.2 carries: the time on the kernel's
//! clock, an order's lines, and the customer's last twelve months (a rule built for 0.1
//! gets the 0.1 fields only; the host converts). A rule's entries are checked (a
//! reason, bounded points) and written in the consumer's transaction, keyed by
//! (customer, event, rule), so they happen once.
//! A rule that fails does not hold up the others or the events behind: its call becomes
//! a durable job ([`RULE_JOB`]) that retries with backoff and goes dead after its
//! attempts, for staff to retry once the rule is fixed; it credits once either way.

use std::sync::{Arc, Weak};

use olivine_plugin_runtime::bindings::{loyalty_types, types};
use olivine_plugin_runtime::{CallError, CallStats};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::{EntryKind, NewEntry, Undo};
use crate::bus::{ClusterOnceConsumer, ConsumerFuture, Event};
use crate::jobs::{FnHandler, JobContext, JobHandler, NewJob, Permanent};
use crate::plugins::decisions::hash;
use crate::plugins::{ActivePlugin, Judged, Plugins};
use crate::time::Clock;

/// The job that retries one rule's call for one event.
pub const RULE_JOB: &str = "loyalty.rule";
/// The scheduled job that expires points after months without an order.
pub const EXPIRE_JOB: &str = "loyalty.expire";
/// The consumer's name in `bus_consumers`.
pub const CONSUMER: &str = "loyalty";
/// The events the processor reads; it passes over the rest.
const LOYALTY_EVENTS: [&str; 7] = [
    "order.paid",
    "order.refunded",
    "order.cancelled",
    "subscription.renewed",
    "customer.registered",
    "review.published",
    "customer.birthday",
];
/// The longest reason a rule may give.
const MAX_REASON_CHARS: usize = 200;
/// What a retry job queued before the event carried its time gives for it (and for
/// the customer's start): the start of the epoch, as fixtures without one do.
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// An event as the rules get it, with what the kernel worked out for it: kept in a
/// retry job as it was, so a retry credits what the first try would have.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleInput {
    /// `event:<outbox id>`: the ledger's source for what rules credit.
    pub source: String,
    pub kind: String,
    pub customer_id: i64,
    pub pseudonym: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub count: Option<u32>,
    pub order_id: Option<i64>,
    /// When credited points become spendable (an order's after the pending period).
    pub available_at: String,
    /// The most points (either sign) one rule may credit for it.
    pub max_points: i64,
    // What the loyalty world 0.2 added. Defaults: a retry job queued before them carries
    // none of these, and must still read.
    /// When the processor read the event, on the kernel's clock (RFC 3339 UTC).
    #[serde(default = "epoch")]
    pub occurred_at: String,
    /// For order events: the order's lines, in the order's currency (`currency`).
    #[serde(default)]
    pub lines: Vec<LineInput>,
    /// The customer's last twelve months before the event.
    #[serde(default)]
    pub history: HistoryInput,
    /// For `review.published`: the reviewed product's slug.
    #[serde(default)]
    pub product_slug: Option<String>,
}

fn epoch() -> String {
    EPOCH.to_owned()
}

/// One line of an order event's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineInput {
    pub sku: String,
    /// Empty if the product is gone.
    pub product_slug: String,
    /// Category slugs, sorted.
    pub categories: Vec<String>,
    pub quantity: u32,
    /// After the line's adjustments.
    pub total_minor: i64,
    pub subscription: bool,
}

/// A customer's paid orders in the twelve months before an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryInput {
    /// Paid less refunded, in `currency`.
    pub spend_minor: i64,
    pub currency: String,
    pub orders: u32,
    /// When the account was created (RFC 3339 UTC).
    pub customer_since: String,
}

impl Default for HistoryInput {
    fn default() -> Self {
        HistoryInput {
            spend_minor: 0,
            currency: String::new(),
            orders: 0,
            customer_since: epoch(),
        }
    }
}

impl RuleInput {
    fn event(&self) -> loyalty_types::LoyaltyEvent {
        let money = |amount_minor: i64, currency: &str| types::Money {
            amount_minor,
            currency: currency.to_owned(),
        };
        let order_currency = self.currency.as_deref().unwrap_or_default();
        // A job queued before the history was read has none: zero, in the event's
        // currency.
        let history_currency = if self.history.currency.is_empty() {
            order_currency
        } else {
            &self.history.currency
        };
        loyalty_types::LoyaltyEvent {
            kind: self.kind.clone(),
            customer: types::CustomerRef {
                pseudonym: self.pseudonym.clone(),
                segments: Vec::new(),
            },
            amount: self
                .amount_minor
                .zip(self.currency.as_deref())
                .map(|(amount_minor, currency)| money(amount_minor, currency)),
            count: self.count,
            event_id: self.source.clone(),
            occurred_at: self.occurred_at.clone(),
            lines: self
                .lines
                .iter()
                .map(|line| loyalty_types::OrderLine {
                    sku: line.sku.clone(),
                    product_slug: line.product_slug.clone(),
                    categories: line.categories.clone(),
                    quantity: line.quantity,
                    total: money(line.total_minor, order_currency),
                    subscription: line.subscription,
                })
                .collect(),
            history: loyalty_types::CustomerHistory {
                spend_12_months: money(self.history.spend_minor, history_currency),
                orders_12_months: self.history.orders,
                customer_since: self.history.customer_since.clone(),
            },
            product_slug: self.product_slug.clone(),
        }
    }
}

pub struct LoyaltyConsumer {
    /// Weak: the bus holds its consumers and the plugins hold the bus; a strong
    /// reference here would keep a stopped kernel's plugin runtime alive for good.
    pub plugins: Weak<Plugins>,
    pub clock: Clock,
}

impl ClusterOnceConsumer for LoyaltyConsumer {
    fn name(&self) -> &'static str {
        CONSUMER
    }

    fn wants(&self, event: &Event) -> bool {
        LOYALTY_EVENTS.contains(&event.event_type.as_str())
    }

    /// A transaction per paid order fell behind 200 paid orders a second (the
    /// benchmark); 32 in one keeps up, and holds SQLite's write lock for milliseconds.
    fn run_size(&self) -> usize {
        32
    }

    fn handle<'a>(&'a self, event: &'a Event, tx: &'a mut AnyConnection) -> ConsumerFuture<'a> {
        Box::pin(async move {
            let now = self.clock.now_text();
            let Some(input) = input_for(event, tx, &now, self.clock.now()).await? else {
                return Ok(());
            };
            let Some(plugins) = self.plugins.upgrade() else {
                anyhow::bail!("the kernel is stopping");
            };
            let snapshot = plugins.snapshot();
            for rule in &snapshot.loyalty {
                let (answer, booking) = call(rule, &input).await;
                // Booked after this transaction: on SQLite it holds the one write lock
                // that booking a failure needs.
                let plugins = plugins.clone();
                tokio::spawn(async move { booking.book(&plugins).await });
                match answer {
                    Ok(entries) => credit(tx, &input, &rule.id, &entries, &now).await?,
                    Err(reason) => {
                        tracing::warn!(
                            plugin = rule.id,
                            source = input.source,
                            reason,
                            "loyalty rule failed; retrying in a job"
                        );
                        let job = NewJob::new(
                            RULE_JOB,
                            serde_json::json!({ "rule": rule.id, "input": input }),
                        )
                        .unique(format!("loyalty:{}:{}", input.source, rule.id));
                        crate::jobs::enqueue(tx, &job, self.clock.now()).await?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// Reads what an event means for loyalty, doing the kernel's own part of refunds and
/// cancellations on the way. `None`: nothing to credit (another kind of event, a
/// guest's order, an erased customer).
async fn input_for(
    event: &Event,
    tx: &mut AnyConnection,
    now: &str,
    now_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<RuleInput>> {
    let payload = &event.payload;
    let settings = crate::inventory::settings::load(tx).await?;
    let source = format!("event:{}", event.id);
    let mut input = RuleInput {
        source: source.clone(),
        kind: event.event_type.clone(),
        customer_id: 0,
        pseudonym: String::new(),
        amount_minor: None,
        currency: None,
        count: None,
        order_id: None,
        available_at: now.to_owned(),
        max_points: settings.loyalty_max_points_per_event,
        occurred_at: now.to_owned(),
        lines: Vec::new(),
        history: HistoryInput::default(),
        product_slug: None,
    };
    match event.event_type.as_str() {
        "order.paid" | "order.refunded" | "order.cancelled" => {
            let Some(number) = payload.get("number").and_then(|n| n.as_str()) else {
                return Ok(None);
            };
            let Some(order) = order_facts(tx, number).await? else {
                return Ok(None);
            };
            input.customer_id = order.customer_id;
            input.pseudonym = order.pseudonym;
            input.order_id = Some(order.id);
            input.currency = Some(order.currency);
            input.lines = order_lines(tx, order.id).await?;
            match event.event_type.as_str() {
                "order.paid" => {
                    input.amount_minor = Some(order.total_minor);
                    let pending = chrono::Duration::days(settings.loyalty_pending_days);
                    input.available_at = crate::time::format_timestamp(now_at + pending);
                    super::lock_account(tx, order.customer_id, now, Some(now)).await?;
                }
                kind => {
                    // The kernel takes back the order's points itself, in proportion
                    // to what was refunded; a cancellation gives back what was spent.
                    let part = if kind == "order.cancelled" || order.status == "refunded" {
                        (1, 1)
                    } else {
                        (order.refunded_minor, order.total_minor)
                    };
                    input.amount_minor = payload
                        .get("amount_minor")
                        .and_then(|a| a.as_i64())
                        .or(Some(order.refunded_minor));
                    super::undo_order(tx, order.id, part, Undo::SpentAndEarned, &source, now)
                        .await?;
                }
            }
        }
        "subscription.renewed" => {
            let (Some(customer_id), Some(cycle)) = (
                payload.get("customer").and_then(|c| c.as_i64()),
                payload.get("cycle").and_then(|c| c.as_i64()),
            ) else {
                return Ok(None);
            };
            let Some(pseudonym) = pseudonym_of(tx, customer_id).await? else {
                return Ok(None);
            };
            input.customer_id = customer_id;
            input.pseudonym = pseudonym;
            input.count = u32::try_from(cycle).ok();
        }
        "customer.registered" => {
            let Some(pseudonym) = payload.get("pseudonym").and_then(|p| p.as_str()) else {
                return Ok(None);
            };
            let row =
                sqlx::query("SELECT id FROM customers WHERE pseudonym = $1 AND erased_at IS NULL")
                    .bind(pseudonym)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(row) = row else { return Ok(None) };
            input.customer_id = row.try_get(0)?;
            input.pseudonym = pseudonym.to_owned();
        }
        "review.published" | "customer.birthday" => {
            let Some(customer_id) = payload.get("customer").and_then(|c| c.as_i64()) else {
                return Ok(None);
            };
            let Some(pseudonym) = pseudonym_of(tx, customer_id).await? else {
                return Ok(None);
            };
            input.customer_id = customer_id;
            input.pseudonym = pseudonym;
            input.product_slug = payload
                .get("product")
                .and_then(|p| p.as_str())
                .map(str::to_owned);
        }
        _ => return Ok(None),
    }
    let currency = match &input.currency {
        Some(currency) => currency.clone(),
        None => store_currency(tx).await?,
    };
    input.history = history(tx, input.customer_id, currency, input.order_id, now_at).await?;
    Ok(Some(input))
}

/// The lines of an order as rules get them: product slug and category slugs from the
/// catalog (as it is now: a product's categories at the time of the order are not kept).
async fn order_lines(tx: &mut AnyConnection, order_id: i64) -> anyhow::Result<Vec<LineInput>> {
    // One row per line and category (a line without categories once, with a null slug),
    // in line order: grouped below.
    let rows = sqlx::query(
        "SELECT ol.id, ol.sku, ol.quantity, ol.total_minor, CAST(ol.subscription AS BIGINT),
            p.slug, c.slug
         FROM order_lines ol
         LEFT JOIN variants v ON v.id = ol.variant_id
         LEFT JOIN products p ON p.id = v.product_id
         LEFT JOIN product_categories pc ON pc.product_id = p.id
         LEFT JOIN categories c ON c.id = pc.category_id
         WHERE ol.order_id = $1
         ORDER BY ol.id, c.slug",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut lines: Vec<(i64, LineInput)> = Vec::new();
    for row in rows {
        let line_id: i64 = row.try_get(0)?;
        let category: Option<String> = row.try_get(6)?;
        if let Some((last_id, line)) = lines.last_mut()
            && *last_id == line_id
        {
            line.categories.extend(category);
            continue;
        }
        let quantity: i64 = row.try_get(2)?;
        let subscription: i64 = row.try_get(4)?;
        lines.push((
            line_id,
            LineInput {
                sku: row.try_get(1)?,
                product_slug: row.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
                categories: category.into_iter().collect(),
                // The schema keeps quantities positive; a u32 holds any the cart allows.
                quantity: u32::try_from(quantity).unwrap_or(u32::MAX),
                total_minor: row.try_get(3)?,
                subscription: subscription != 0,
            },
        ));
    }
    Ok(lines.into_iter().map(|(_, line)| line).collect())
}

/// The currency of a history for an event without one (a renewal, a registration, a
/// review): the store's first, the currency of the first variant it priced. A store
/// without variants has no orders either; its zero is in euros.
async fn store_currency(tx: &mut AnyConnection) -> anyhow::Result<String> {
    let row = sqlx::query("SELECT currency FROM variants ORDER BY id LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    Ok(match row {
        Some(row) => row.try_get(0)?,
        None => "EUR".to_owned(),
    })
}

/// What the customer paid (less refunds) for orders in `currency` placed in the twelve
/// months before `now`, and how many; `exclude` is the event's own order, which is not
/// history yet. And when the customer signed up.
async fn history(
    tx: &mut AnyConnection,
    customer_id: i64,
    currency: String,
    exclude: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<HistoryInput> {
    let since = now
        .checked_sub_months(chrono::Months::new(12))
        .unwrap_or(now);
    // Paid, fulfilled and delivered orders are money the shop kept (less refunds); a
    // pending one is not paid yet, a cancelled or fully refunded one was given back.
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(total_minor - refunded_minor), 0) AS BIGINT),
            CAST(COUNT(*) AS BIGINT)
         FROM orders
         WHERE customer_id = $1 AND currency = $2 AND status IN ('paid', 'fulfilled', 'delivered')
           AND created_at >= $3 AND created_at <= $4 AND id <> $5",
    )
    .bind(customer_id)
    .bind(&currency)
    .bind(crate::time::format_timestamp(since))
    .bind(crate::time::format_timestamp(now))
    // Ids start at 1: nothing is excluded without an order.
    .bind(exclude.unwrap_or(0))
    .fetch_one(&mut *tx)
    .await?;
    let orders: i64 = row.try_get(1)?;
    let customer_since: Option<String> =
        sqlx::query("SELECT created_at FROM customers WHERE id = $1")
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
    Ok(HistoryInput {
        spend_minor: row.try_get(0)?,
        currency,
        orders: u32::try_from(orders).unwrap_or(u32::MAX),
        customer_since: customer_since.unwrap_or_else(epoch),
    })
}

struct OrderFacts {
    id: i64,
    customer_id: i64,
    pseudonym: String,
    currency: String,
    total_minor: i64,
    refunded_minor: i64,
    status: String,
}

/// A customer's order (none for a guest's, or an erased customer's).
async fn order_facts(tx: &mut AnyConnection, number: &str) -> anyhow::Result<Option<OrderFacts>> {
    let row = sqlx::query(
        "SELECT o.id, o.customer_id, c.pseudonym, o.currency, o.total_minor, o.refunded_minor,
            o.status
         FROM orders o JOIN customers c ON c.id = o.customer_id
         WHERE o.number = $1 AND c.erased_at IS NULL",
    )
    .bind(number)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(OrderFacts {
        id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        pseudonym: row.try_get(2)?,
        currency: row.try_get(3)?,
        total_minor: row.try_get(4)?,
        refunded_minor: row.try_get(5)?,
        status: row.try_get(6)?,
    }))
}

async fn pseudonym_of(tx: &mut AnyConnection, customer_id: i64) -> anyhow::Result<Option<String>> {
    Ok(
        sqlx::query("SELECT pseudonym FROM customers WHERE id = $1 AND erased_at IS NULL")
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?,
    )
}

/// A finished call to book (metrics, decision record, failure count).
struct Booking {
    rule: Arc<ActivePlugin>,
    input_hash: String,
    result: Option<Result<Answered, CallError>>,
}

/// A call that answered, as [`Booking`] books it.
struct Answered {
    stats: CallStats,
    outcome: &'static str,
    output_hash: String,
    detail: Option<String>,
}

impl Booking {
    async fn book(self, plugins: &Plugins) {
        match self.result {
            Some(Ok(Answered {
                stats,
                outcome,
                output_hash,
                detail,
            })) => {
                let judged = Judged {
                    outcome,
                    output_hash,
                    detail,
                };
                plugins
                    .book_call(&self.rule, "on-event", self.input_hash, Ok((stats, judged)))
                    .await
            }
            Some(Err(err)) => {
                plugins
                    .book_call(&self.rule, "on-event", self.input_hash, Err(&err))
                    .await
            }
            // The call's task died: nothing to say of the rule.
            None => {}
        }
    }
}

/// Calls one rule and checks its answer: every entry has a reason of one line, and the
/// points of the event stay within the shop's bound. Answers the entries (or why not)
/// and the call to book.
async fn call(
    rule: &Arc<ActivePlugin>,
    input: &RuleInput,
) -> (Result<Vec<types::PointsEntry>, String>, Booking) {
    let event = input.event();
    let mut booking = Booking {
        rule: rule.clone(),
        // Everything the rule is given, time, lines and history included.
        input_hash: hash(format!("{event:?}").as_bytes()),
        result: None,
    };
    let result = {
        let rule = rule.clone();
        tokio::task::spawn_blocking(move || rule.plugin.on_loyalty_event(&event, &rule.settings))
            .await
    };
    let answer = match result {
        Err(err) => Err(format!("the rule's task failed: {err}")),
        Ok(Ok((entries, stats))) => {
            let checked = check(&entries, input.max_points);
            booking.result = Some(Ok(Answered {
                stats,
                outcome: if checked.is_ok() { "ok" } else { "rejected" },
                output_hash: hash(format!("{entries:?}").as_bytes()),
                detail: entries_detail(&entries),
            }));
            checked
                .map(|()| entries)
                .map_err(|why| format!("the rule {} answered wrongly: {why}", rule.id))
        }
        Ok(Err(err)) => {
            let answer = Err(format!("the rule {} {err}", rule.id));
            booking.result = Some(Err(err));
            answer
        }
    };
    (answer, booking)
}

/// A rule's answer for its decision record: the points of each entry and its reason
/// (the rule is given no customer identity; the reason is the ledger's, cut to its
/// bound), and their sum.
fn entries_detail(entries: &[types::PointsEntry]) -> Option<String> {
    let listed: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let reason: String = e.reason.trim().chars().take(MAX_REASON_CHARS).collect();
            serde_json::json!({"points": e.points, "reason": reason})
        })
        .collect();
    let total = entries
        .iter()
        .fold(0i64, |sum, e| sum.saturating_add(e.points));
    crate::plugins::decisions::detail(serde_json::json!({"points": total, "entries": listed}))
}

/// Why a rule's answer cannot be written, if it cannot.
fn check(entries: &[types::PointsEntry], max_points: i64) -> Result<(), String> {
    let mut total: i64 = 0;
    for entry in entries {
        let reason = entry.reason.trim();
        if reason.is_empty()
            || reason.chars().count() > MAX_REASON_CHARS
            || reason.chars().any(char::is_control)
        {
            return Err(format!(
                "an entry's reason must be one line of 1 to {MAX_REASON_CHARS} characters"
            ));
        }
        total = total.saturating_add(entry.points.saturating_abs());
    }
    if total > max_points {
        return Err(format!(
            "credited {total} points for one event; the shop allows at most {max_points}"
        ));
    }
    Ok(())
}

/// Writes a rule's entries for an event (once: the key is the event, the rule and the
/// entry's place in the answer).
async fn credit(
    tx: &mut AnyConnection,
    input: &RuleInput,
    rule: &str,
    entries: &[types::PointsEntry],
    now: &str,
) -> anyhow::Result<()> {
    if entries.iter().all(|e| e.points == 0) {
        return Ok(());
    }
    super::lock_account(tx, input.customer_id, now, None).await?;
    for (seq, entry) in entries.iter().enumerate() {
        if entry.points == 0 {
            continue;
        }
        // Points a rule takes away are spendable-side at once.
        let available_at = if entry.points > 0 {
            input.available_at.as_str()
        } else {
            now
        };
        super::write_entry(
            tx,
            &NewEntry {
                customer_id: input.customer_id,
                points: entry.points,
                kind: if entry.points > 0 {
                    EntryKind::Earned
                } else {
                    EntryKind::Reversed
                },
                reason: entry.reason.trim(),
                source: &input.source,
                rule,
                seq: i64::try_from(seq).unwrap_or(i64::MAX),
                order_id: input.order_id,
                available_at,
                actor: None,
                now,
            },
        )
        .await?;
    }
    // Told to the customer (notifications, live updates): what this rule credited.
    let earned: i64 = entries.iter().map(|e| e.points).filter(|p| *p > 0).sum();
    if earned > 0 {
        let reason = entries
            .iter()
            .find(|e| e.points > 0)
            .map(|e| e.reason.trim())
            .unwrap_or_default();
        crate::bus::record(
            tx,
            "customer",
            input.customer_id,
            "loyalty.points_earned",
            &serde_json::json!({
                "customer": input.customer_id, "points": earned, "reason": reason,
                "source": input.source, "rule": rule,
            }),
        )
        .await?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct RulePayload {
    rule: String,
    input: RuleInput,
}

/// Retries one rule's call for one event: the credit and the job's end commit together.
pub fn rule_job() -> Arc<dyn JobHandler> {
    FnHandler::new(RULE_JOB, |ctx: &JobContext| {
        Box::pin(async move {
            let payload: RulePayload = ctx
                .payload()
                .map_err(|e| Permanent(format!("unreadable loyalty job: {e}")))?;
            let state = &ctx.state;
            let snapshot = state.plugins.snapshot();
            let Some(rule) = snapshot.loyalty.iter().find(|r| r.id == payload.rule) else {
                anyhow::bail!(
                    "the loyalty rule `{}` is not active; enable it and retry this job",
                    payload.rule
                );
            };
            let (answer, booking) = call(rule, &payload.input).await;
            booking.book(&state.plugins).await;
            let entries = answer.map_err(anyhow::Error::msg)?;
            let now = state.clock.now_text();
            let mut tx = state.db.begin().await?;
            credit(&mut tx, &payload.input, &rule.id, &entries, &now).await?;
            ctx.complete_in(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        })
    })
}

/// Expires balances after months without an order (when the shop turned expiry on).
pub fn expire_job() -> Arc<dyn JobHandler> {
    FnHandler::new(EXPIRE_JOB, |ctx: &JobContext| {
        Box::pin(async move {
            let expired = super::expire(&ctx.state).await?;
            if expired > 0 {
                tracing::info!(expired, "loyalty balances expired");
            }
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(points: i64, reason: &str) -> types::PointsEntry {
        types::PointsEntry {
            points,
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn answers_need_reasons_and_stay_within_the_bound() {
        assert!(check(&[entry(10, "Order paid")], 100).is_ok());
        assert!(check(&[entry(10, "  ")], 100).is_err());
        assert!(check(&[entry(10, "two\nlines")], 100).is_err());
        assert!(check(&[entry(60, "a"), entry(-50, "b")], 100).is_err());
        assert!(check(&[entry(i64::MIN, "a")], i64::MAX - 1).is_err());
        assert!(check(&[], 1).is_ok());
    }

    /// A retry job queued before the loyalty world 0.2 carries none of its fields: it
    /// still reads, with the defaults the fixtures use.
    #[test]
    fn a_job_from_before_0_2_still_reads() {
        let old = serde_json::json!({
            "source": "event:7", "kind": "order.paid", "customer_id": 3, "pseudonym": "c_x",
            "amount_minor": 4498, "currency": "EUR", "count": null, "order_id": 5,
            "available_at": "2026-12-16T00:00:00.000Z", "max_points": 100000,
        });
        let input: RuleInput = serde_json::from_value(old).unwrap();
        let event = input.event();
        assert_eq!(event.occurred_at, EPOCH);
        assert!(event.lines.is_empty());
        assert_eq!(event.history.spend_12_months.amount_minor, 0);
        assert_eq!(event.history.spend_12_months.currency, "EUR");
        assert_eq!(event.history.customer_since, EPOCH);
        assert_eq!(event.product_slug, None);
        assert_eq!(event.amount.map(|m| m.amount_minor), Some(4498));
    }
}
