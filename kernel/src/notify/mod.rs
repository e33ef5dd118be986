//! Notifications: events routed to the customer's channels (email, push to each of their
//! devices) and to the merchant's webhook, rendered from templates, stored, and delivered
//! by durable jobs through the channel plugins.
//!
//! The router is a cluster-once consumer of the bus ([`NotifyConsumer`]): for an event
//! that notifies (an order shipped, a renewal's payment failed, points earned, ...), in
//! the transaction that moves its position, it renders the topic's template for every
//! channel and recipient the customer wants, inserts one `notifications` row each (unique
//! per event, channel and recipient: a redelivered event adds none) and enqueues a
//! `notify.deliver` job per row. The job decrypts the address (rows name recipients by
//! reference), calls the channel plugin with the idempotency key `notification-<id>`,
//! records the attempt, and retries with backoff (or when the provider says, by
//! `Retry-After`) until the job's attempts run out. A device the push service reports
//! gone is forgotten.
//!
//! Transactional messages go to the channels the customer left on
//! (`notification_preferences`, all on by default); marketing (campaigns) also needs the
//! consent `marketing_email` or `marketing_push`.

pub mod api;
pub mod devices;
pub mod quiet;
pub mod templates;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock, Weak};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::{AnyConnection, Row};
use tokio::sync::{mpsc, oneshot};

use crate::app::AppState;
use crate::bus::{Bus, ClusterOnceConsumer, ConsumerFuture, Event};
use crate::error::Result;
use crate::jobs::{JobContext, JobFuture, JobHandler, NewJob, Permanent, RetryAfter};
use crate::plugins::Plugins;
use crate::plugins::notifications::{DeliveryOutcome, deliver};
use crate::time::Clock;
use olivine_plugin_runtime::bindings::notification_types as nt;
use templates::{Rendered, Vars};

pub const CONSUMER: &str = "notifications";
pub const DELIVER_JOB: &str = "notify.deliver";

/// The events the router reads.
const EVENTS: &[&str] = &[
    "order.placed",
    "order.paid",
    "order.fulfilled",
    "order.delivered",
    "order.refunded",
    "subscription.renewal_upcoming",
    "subscription.renewed",
    "subscription.renewal_failed",
    "subscription.paused",
    "subscription.cancelled",
    "loyalty.points_earned",
    "stock.changed",
    "lot.recalled",
    "campaign.sent",
];

/// Push messages that are worth nothing after a day are dropped by the push service.
const PUSH_LIFETIME_SECS: i64 = 24 * 60 * 60;

/// One notification to make: a topic, its facts, and whom it is for.
#[derive(Debug, Clone)]
struct Planned {
    topic: &'static str,
    vars: Vars,
    /// The customer it is for; `None` for a guest's order (told by the order's email).
    customer_id: Option<i64>,
    /// A guest's order: its email is the recipient.
    order_id: Option<i64>,
    marketing: bool,
    high_priority: bool,
    /// Push: a later message with the same key replaces this one.
    collapse_key: Option<String>,
    data: serde_json::Value,
}

/// The cluster-once consumer that routes events to channels.
pub struct NotifyConsumer {
    /// Weak: the bus holds its consumers and the plugins hold the bus.
    pub plugins: Weak<Plugins>,
    pub clock: Clock,
    pub bus: Bus,
    pub public_url: String,
}

impl ClusterOnceConsumer for NotifyConsumer {
    fn name(&self) -> &'static str {
        CONSUMER
    }

    fn wants(&self, event: &Event) -> bool {
        EVENTS.contains(&event.event_type.as_str())
    }

    fn run_size(&self) -> usize {
        32
    }

    fn handle<'a>(&'a self, event: &'a Event, tx: &'a mut AnyConnection) -> ConsumerFuture<'a> {
        Box::pin(async move {
            let planned = plan(event, tx).await?;
            if planned.is_empty() {
                return Ok(());
            }
            let Some(plugins) = self.plugins.upgrade() else {
                anyhow::bail!("the kernel is stopping");
            };
            let channels = ActiveChannels::of(&plugins);
            // A campaign's notifications are found by the campaign (its event is pruned).
            let source = match (
                event.event_type.as_str(),
                event.payload["campaign"].as_i64(),
            ) {
                ("campaign.sent", Some(campaign)) => format!("campaign:{campaign}"),
                _ => format!("event:{}", event.id),
            };
            for planned in &planned {
                route(
                    tx,
                    &channels,
                    &source,
                    planned,
                    &self.public_url,
                    &self.clock,
                )
                .await?;
            }
            Ok(())
        })
    }

    fn after_commit(&self) {
        self.bus.notify_jobs();
    }
}

/// Which channel plugin serves each kind, from the active set: the first active plugin
/// whose manifest names that channel.
#[derive(Debug, Default)]
struct ActiveChannels {
    email: Option<String>,
    apns: Option<String>,
    fcm: Option<String>,
    webhook: Option<String>,
}

impl ActiveChannels {
    fn of(plugins: &Plugins) -> ActiveChannels {
        let mut found = ActiveChannels::default();
        for channel in &plugins.snapshot().notifications {
            let slot = match channel.plugin.manifest.channel.as_deref() {
                Some("email") => &mut found.email,
                Some("apns") => &mut found.apns,
                Some("fcm") => &mut found.fcm,
                Some("webhook") => &mut found.webhook,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(channel.id.clone());
            }
        }
        found
    }
}

fn vars(pairs: &[(&'static str, String)]) -> Vars {
    pairs.iter().cloned().collect()
}

fn money(amount_minor: i64, currency: &str) -> String {
    let sign = if amount_minor < 0 { "-" } else { "" };
    let abs = amount_minor.unsigned_abs();
    format!("{sign}{currency} {}.{:02}", abs / 100, abs % 100)
}

fn text(value: &serde_json::Value, key: &str) -> String {
    match &value[key] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// What an event means for notifications: the topics and whom they are for.
async fn plan(event: &Event, tx: &mut AnyConnection) -> anyhow::Result<Vec<Planned>> {
    let payload = &event.payload;
    let kind = event.event_type.as_str();
    let planned = match kind {
        "order.placed" | "order.paid" | "order.fulfilled" | "order.delivered"
        | "order.refunded" => {
            let number = text(payload, "number");
            let Some(order) = sqlx::query(
                "SELECT id, customer_id, currency, total_minor, tracking_number, carrier
                 FROM orders WHERE number = $1",
            )
            .bind(&number)
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(Vec::new());
            };
            let order_id: i64 = order.try_get(0)?;
            let customer_id: Option<i64> = order.try_get(1)?;
            let currency: String = order.try_get(2)?;
            let total = money(order.try_get(3)?, &currency);
            let topic = match kind {
                "order.placed" => "order.placed",
                "order.paid" => "order.paid",
                "order.fulfilled" => "order.shipped",
                "order.delivered" => "order.delivered",
                _ => "order.refunded",
            };
            let tracking: Option<String> = order.try_get(4)?;
            let carrier: Option<String> = order.try_get(5)?;
            let amount = payload["amount_minor"]
                .as_i64()
                .map(|a| money(a, &currency))
                .unwrap_or_else(|| total.clone());
            vec![Planned {
                topic,
                vars: vars(&[
                    ("order_number", number.clone()),
                    ("total", total),
                    ("amount", amount),
                    ("tracking_number", tracking.clone().unwrap_or_default()),
                    (
                        "carrier",
                        carrier.clone().unwrap_or_else(|| "our carrier".to_owned()),
                    ),
                ]),
                customer_id,
                order_id: customer_id.is_none().then_some(order_id),
                marketing: false,
                high_priority: matches!(topic, "order.shipped" | "order.refunded"),
                collapse_key: Some(format!("order-{number}")),
                data: serde_json::json!({
                    "order_number": number, "status": topic.trim_start_matches("order."),
                    "tracking_number": tracking, "carrier": carrier,
                }),
            }]
        }
        "subscription.renewal_upcoming"
        | "subscription.renewed"
        | "subscription.renewal_failed"
        | "subscription.paused"
        | "subscription.cancelled" => {
            let Some(customer_id) = payload["customer"].as_i64() else {
                return Ok(Vec::new());
            };
            let number = text(payload, "number");
            let topic = match kind {
                "subscription.renewal_upcoming" => "subscription.renewal_upcoming",
                "subscription.renewed" => "subscription.renewed",
                "subscription.renewal_failed" => "subscription.payment_failed",
                "subscription.paused" => "subscription.paused",
                _ => "subscription.cancelled",
            };
            // A renewal that failed for want of stock is not the card's fault.
            if topic == "subscription.payment_failed" && payload["reason"].is_null() {
                return Ok(Vec::new());
            }
            vec![Planned {
                topic,
                vars: vars(&[
                    ("subscription_number", number.clone()),
                    ("renews_at", text(payload, "renews_at")),
                    ("next_renewal_at", text(payload, "next_renewal_at")),
                    (
                        "update_card_url",
                        format!("/account/subscriptions/{number}"),
                    ),
                ]),
                customer_id: Some(customer_id),
                order_id: None,
                marketing: false,
                high_priority: topic == "subscription.payment_failed",
                collapse_key: Some(format!("subscription-{number}")),
                data: serde_json::json!({ "subscription_number": number, "event": kind }),
            }]
        }
        "loyalty.points_earned" => {
            let (Some(customer_id), Some(points)) =
                (payload["customer"].as_i64(), payload["points"].as_i64())
            else {
                return Ok(Vec::new());
            };
            if points <= 0 {
                return Ok(Vec::new());
            }
            vec![Planned {
                topic: "loyalty.points_earned",
                vars: vars(&[
                    ("points", points.to_string()),
                    ("reason", text(payload, "reason")),
                ]),
                customer_id: Some(customer_id),
                order_id: None,
                marketing: false,
                high_priority: false,
                collapse_key: Some("points".to_owned()),
                data: serde_json::json!({ "points": points }),
            }]
        }
        "stock.changed" => back_in_stock(payload, tx).await?,
        "lot.recalled" => recalled(payload, tx).await?,
        "campaign.sent" => campaign(payload, tx).await?,
        _ => Vec::new(),
    };
    Ok(planned)
}

/// A lot that gained stock: the customers who asked about its products are told once,
/// and their requests end.
async fn back_in_stock(
    payload: &serde_json::Value,
    tx: &mut AnyConnection,
) -> anyhow::Result<Vec<Planned>> {
    let gained = payload["delta"].as_i64().unwrap_or(0) > 0
        && payload["quantity_after"].as_i64().unwrap_or(0) > 0;
    if !gained {
        return Ok(Vec::new());
    }
    let mut planned = Vec::new();
    let slugs: BTreeSet<&str> = payload["products"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    for slug in slugs {
        let Some(product) = sqlx::query("SELECT id, name FROM products WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut *tx)
            .await?
        else {
            continue;
        };
        let product_id: i64 = product.try_get(0)?;
        let name: String = product.try_get(1)?;
        let customers: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM back_in_stock_requests WHERE product_id = $1 RETURNING customer_id",
        )
        .bind(product_id)
        .fetch_all(&mut *tx)
        .await?;
        for customer_id in customers {
            planned.push(Planned {
                topic: "product.back_in_stock",
                vars: vars(&[
                    ("product_name", name.clone()),
                    ("product_slug", slug.to_owned()),
                ]),
                customer_id: Some(customer_id),
                order_id: None,
                marketing: false,
                high_priority: false,
                collapse_key: Some(format!("stock-{slug}")),
                data: serde_json::json!({ "product": slug }),
            });
        }
    }
    Ok(planned)
}

/// A recalled batch: every order that received units of it is told once (its customer,
/// or a guest's order at its email), as a transactional message like an order's.
async fn recalled(
    payload: &serde_json::Value,
    tx: &mut AnyConnection,
) -> anyhow::Result<Vec<Planned>> {
    let Some(recall_id) = payload["recall_id"].as_i64() else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(
        "SELECT o.id, o.number, o.customer_id, p.name
         FROM order_allocations a
           JOIN lots l ON l.id = a.lot_id
           JOIN orders o ON o.id = a.order_id
           JOIN variants v ON v.id = a.variant_id
           JOIN products p ON p.id = v.product_id
         WHERE l.recall_id = $1 AND o.status <> 'cancelled'
         GROUP BY o.id, o.number, o.customer_id, p.name
         ORDER BY o.id, p.name",
    )
    .bind(recall_id)
    .fetch_all(&mut *tx)
    .await?;
    // One message per order, naming every recalled product in it.
    let mut orders: BTreeMap<i64, (String, Option<i64>, Vec<String>)> = BTreeMap::new();
    for row in &rows {
        let entry = orders
            .entry(row.try_get(0)?)
            .or_insert_with(|| (String::new(), None, Vec::new()));
        entry.0 = row.try_get(1)?;
        entry.1 = row.try_get(2)?;
        entry.2.push(row.try_get(3)?);
    }
    let batch = text(payload, "batch");
    let reason = text(payload, "reason");
    Ok(orders
        .into_iter()
        .map(|(order_id, (number, customer_id, products))| Planned {
            topic: "order.recalled",
            vars: vars(&[
                ("order_number", number.clone()),
                ("product_name", products.join(", ")),
                ("batch", batch.clone()),
                ("reason", reason.clone()),
            ]),
            customer_id,
            order_id: customer_id.is_none().then_some(order_id),
            marketing: false,
            high_priority: true,
            collapse_key: Some(format!("recall-{recall_id}-{number}")),
            data: serde_json::json!({ "order_number": number, "batch": batch, "recall": recall_id }),
        })
        .collect())
}

/// The customers a campaign reaches: those whose consent in force (the newest row per
/// purpose) to marketing by email or by push is granted, and who are not erased.
pub(crate) const CAMPAIGN_AUDIENCE: &str = "SELECT DISTINCT c.customer_id FROM customer_consents c
     JOIN customers cu ON cu.id = c.customer_id AND cu.erased_at IS NULL
     WHERE c.purpose IN ('marketing_email', 'marketing_push') AND c.granted = 1
       AND c.id = (SELECT MAX(id) FROM customer_consents l
                   WHERE l.customer_id = c.customer_id AND l.purpose = c.purpose)";

/// A campaign: every customer who consented to marketing on some channel.
async fn campaign(
    payload: &serde_json::Value,
    tx: &mut AnyConnection,
) -> anyhow::Result<Vec<Planned>> {
    let Some(id) = payload["campaign"].as_i64() else {
        return Ok(Vec::new());
    };
    let Some(row) = sqlx::query(
        "SELECT title, body_text, body_html, link FROM notification_campaigns WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(Vec::new());
    };
    let title: String = row.try_get(0)?;
    let body: String = row.try_get(1)?;
    let html: Option<String> = row.try_get(2)?;
    let link: Option<String> = row.try_get(3)?;
    let customers: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "{CAMPAIGN_AUDIENCE} ORDER BY c.customer_id"
    )))
    .fetch_all(&mut *tx)
    .await?;
    Ok(customers
        .into_iter()
        .map(|customer_id| Planned {
            topic: "campaign",
            vars: vars(&[
                ("title", title.clone()),
                ("text", body.clone()),
                (
                    "html",
                    html.clone()
                        .unwrap_or_else(|| templates::escape_html(&body)),
                ),
            ]),
            customer_id: Some(customer_id),
            order_id: None,
            marketing: true,
            high_priority: false,
            collapse_key: Some(format!("campaign-{id}")),
            data: serde_json::json!({ "campaign": id, "link": link }),
        })
        .collect())
}

/// A customer's channel choices and marketing consents, as routing needs them.
struct Wants {
    email: bool,
    push: bool,
    /// The end of the customer's quiet hours, when a push routed now must wait for it.
    push_held_until: Option<DateTime<Utc>>,
}

async fn wants_of(
    tx: &mut AnyConnection,
    customer_id: i64,
    marketing: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Wants>> {
    // One round trip for what every event asks (a burst routes thousands).
    let Some(row) = sqlx::query(
        "SELECT c.erased_at,
            (SELECT p.enabled FROM notification_preferences p
             WHERE p.customer_id = c.id AND p.channel = 'email'),
            (SELECT p.enabled FROM notification_preferences p
             WHERE p.customer_id = c.id AND p.channel = 'push'),
            q.starts, q.ends, q.time_zone
         FROM customers c LEFT JOIN notification_quiet_hours q ON q.customer_id = c.id
         WHERE c.id = $1",
    )
    .bind(customer_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    if row.try_get::<Option<String>, _>(0)?.is_some() {
        return Ok(None);
    }
    // No row: on.
    let on = |enabled: Option<i64>| enabled.is_none_or(|e| e == 1);
    let quiet = match (
        row.try_get::<Option<String>, _>(3)?,
        row.try_get::<Option<String>, _>(4)?,
        row.try_get::<Option<String>, _>(5)?,
    ) {
        (Some(start), Some(end), Some(time_zone)) => Some(quiet::QuietHours {
            start,
            end,
            time_zone,
        }),
        _ => None,
    };
    let mut wants = Wants {
        email: on(row.try_get(1)?),
        push: on(row.try_get(2)?),
        push_held_until: quiet
            .and_then(|q| q.window("quiet_hours").ok())
            .and_then(|w| w.held_until(now)),
    };
    if marketing {
        let consents = crate::accounts::consents::read_on(tx, customer_id).await?;
        let granted = |purpose: &str| {
            consents
                .current
                .iter()
                .any(|c| c.purpose == purpose && c.granted)
        };
        wants.email &= granted("marketing_email");
        wants.push &= granted("marketing_push");
    }
    Ok(Some(wants))
}

/// One row to insert: a channel, its plugin and a recipient reference.
struct Target<'a> {
    channel: &'static str,
    plugin_id: &'a str,
    recipient_kind: &'static str,
    recipient_ref: String,
}

/// Renders and stores the notifications of one planned topic, and enqueues their jobs.
async fn route(
    tx: &mut AnyConnection,
    channels: &ActiveChannels,
    source: &str,
    planned: &Planned,
    public_url: &str,
    clock: &Clock,
) -> anyhow::Result<()> {
    let now = clock.now();
    let mut targets = Vec::new();
    let wants = match planned.customer_id {
        Some(customer_id) => match wants_of(tx, customer_id, planned.marketing, now).await? {
            Some(wants) => wants,
            None => return Ok(()),
        },
        // A guest's order: email only, to the order's address.
        None => Wants {
            email: true,
            push: false,
            push_held_until: None,
        },
    };
    if wants.email
        && let Some(plugin_id) = &channels.email
    {
        let (kind, reference) = match (planned.customer_id, planned.order_id) {
            (Some(customer), _) => ("customer", customer.to_string()),
            (None, Some(order)) => ("order", order.to_string()),
            (None, None) => ("", String::new()),
        };
        if !kind.is_empty() {
            targets.push(Target {
                channel: "email",
                plugin_id,
                recipient_kind: kind,
                recipient_ref: reference,
            });
        }
    }
    if wants.push
        && let Some(customer_id) = planned.customer_id
    {
        for row in sqlx::query(
            "SELECT id, platform FROM customer_devices WHERE customer_id = $1 ORDER BY id",
        )
        .bind(customer_id)
        .fetch_all(&mut *tx)
        .await?
        {
            let plugin = match row.try_get::<String, _>(1)?.as_str() {
                "apns" => channels.apns.as_deref(),
                "fcm" => channels.fcm.as_deref(),
                _ => None,
            };
            if let Some(plugin_id) = plugin {
                targets.push(Target {
                    channel: "push",
                    plugin_id,
                    recipient_kind: "device",
                    recipient_ref: row.try_get::<i64, _>(0)?.to_string(),
                });
            }
        }
    }
    // The merchant's webhook hears every transactional topic (their own systems).
    if !planned.marketing
        && let Some(plugin_id) = &channels.webhook
    {
        targets.push(Target {
            channel: "webhook",
            plugin_id,
            recipient_kind: "endpoint",
            recipient_ref: String::new(),
        });
    }
    let now_text = crate::time::format_timestamp(now);
    let mut jobs = Vec::new();
    for target in targets {
        let Some(template) = templates::load(tx, planned.topic, target.channel).await? else {
            continue;
        };
        if !template.enabled {
            continue;
        }
        let Rendered {
            title,
            text,
            html,
            link,
        } = templates::render(&template, &planned.vars, public_url);
        let html = if target.channel == "email" {
            html
        } else {
            None
        };
        // A push in the customer's quiet hours waits for their end, and lives from then.
        let held_until = wants.push_held_until.filter(|_| target.channel == "push");
        let expires_at = (target.channel == "push").then(|| {
            crate::time::format_timestamp(
                held_until.unwrap_or(now) + chrono::Duration::seconds(PUSH_LIFETIME_SECS),
            )
        });
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO notifications (source, topic, customer_id, channel, plugin_id,
                recipient_kind, recipient_ref, title, body_text, body_html, link, data_json,
                marketing, priority, collapse_key, expires_at, held_until, status, attempts,
                created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                $17, 'pending', 0, $18, $18)
             ON CONFLICT (source, channel, recipient_kind, recipient_ref) DO NOTHING
             RETURNING id",
        )
        .bind(source)
        .bind(planned.topic)
        .bind(planned.customer_id)
        .bind(target.channel)
        .bind(target.plugin_id)
        .bind(target.recipient_kind)
        .bind(&target.recipient_ref)
        .bind(&title)
        .bind(&text)
        .bind(html.as_deref())
        .bind(link.as_deref())
        .bind(planned.data.to_string())
        .bind(i64::from(planned.marketing))
        .bind(if planned.high_priority {
            "high"
        } else {
            "normal"
        })
        .bind(planned.collapse_key.as_deref())
        .bind(expires_at.as_deref())
        .bind(held_until.map(crate::time::format_timestamp))
        .bind(&now_text)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = id {
            jobs.push(match held_until {
                Some(at) => deliver_job_for(id).at(at),
                None => deliver_job_for(id),
            });
        }
    }
    crate::jobs::enqueue_all(tx, &jobs, now).await?;
    Ok(())
}

fn deliver_job_for(notification_id: i64) -> NewJob {
    NewJob::new(
        DELIVER_JOB,
        serde_json::json!({ "notification": notification_id }),
    )
}

#[derive(Deserialize)]
struct DeliverPayload {
    notification: i64,
}

/// A stored notification, as delivery needs it.
struct Stored {
    id: i64,
    topic: String,
    plugin_id: String,
    recipient_kind: String,
    recipient_ref: String,
    title: String,
    text: String,
    html: Option<String>,
    link: Option<String>,
    data_json: String,
    marketing: bool,
    high_priority: bool,
    collapse_key: Option<String>,
    expires_at: Option<String>,
    status: String,
    attempts: i64,
}

async fn load_stored(conn: &mut AnyConnection, id: i64) -> Result<Option<Stored>> {
    let Some(row) = sqlx::query(
        "SELECT id, topic, plugin_id, recipient_kind, recipient_ref, title, body_text, body_html,
            link, data_json, marketing, priority, collapse_key, expires_at, status, attempts
         FROM notifications WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(Stored {
        id: row.try_get(0)?,
        topic: row.try_get(1)?,
        plugin_id: row.try_get(2)?,
        recipient_kind: row.try_get(3)?,
        recipient_ref: row.try_get(4)?,
        title: row.try_get(5)?,
        text: row.try_get(6)?,
        html: row.try_get(7)?,
        link: row.try_get(8)?,
        data_json: row.try_get(9)?,
        marketing: row.try_get::<i64, _>(10)? == 1,
        high_priority: row.try_get::<String, _>(11)? == "high",
        collapse_key: row.try_get(12)?,
        expires_at: row.try_get(13)?,
        status: row.try_get(14)?,
        attempts: row.try_get(15)?,
    }))
}

/// The recipient as the channel addresses it, decrypted now; `None` when it is gone
/// (a device removed, a customer erased).
async fn recipient_of(state: &AppState, stored: &Stored) -> Result<Option<nt::Recipient>> {
    let reference: i64 = stored.recipient_ref.parse().unwrap_or(0);
    Ok(match stored.recipient_kind.as_str() {
        "customer" => {
            let row =
                sqlx::query("SELECT email_enc FROM customers WHERE id = $1 AND erased_at IS NULL")
                    .bind(reference)
                    .fetch_optional(&state.db.pool)
                    .await?;
            match row {
                Some(row) => {
                    let email_enc: String = row.try_get(0)?;
                    let address = state
                        .keys
                        .decrypt_any(&state.db.pool, crate::accounts::EMAIL_CONTEXT, &email_enc)
                        .await?;
                    Some(nt::Recipient::Email(nt::EmailAddress {
                        address,
                        name: None,
                    }))
                }
                None => None,
            }
        }
        "order" => {
            let email_enc: Option<String> =
                sqlx::query_scalar("SELECT email_enc FROM orders WHERE id = $1")
                    .bind(reference)
                    .fetch_optional(&state.db.pool)
                    .await?;
            match email_enc.filter(|e| !e.is_empty()) {
                Some(email_enc) => Some(nt::Recipient::Email(nt::EmailAddress {
                    address: state
                        .keys
                        .decrypt_any(&state.db.pool, crate::orders::EMAIL_CONTEXT, &email_enc)
                        .await?,
                    name: None,
                })),
                None => None,
            }
        }
        "device" => {
            let row =
                sqlx::query("SELECT platform, token, app_id FROM customer_devices WHERE id = $1")
                    .bind(reference)
                    .fetch_optional(&state.db.pool)
                    .await?;
            match row {
                Some(row) => {
                    let stored: String = row.try_get(1)?;
                    // Under the customer's key; a row from before holds it in clear.
                    let token = match crate::accounts::customer_keys::customer_of_field(&stored) {
                        Some(_) => {
                            state
                                .keys
                                .decrypt_any(&state.db.pool, devices::TOKEN_CONTEXT, &stored)
                                .await?
                        }
                        None => stored,
                    };
                    Some(nt::Recipient::Device(nt::Device {
                        platform: if row.try_get::<String, _>(0)? == "apns" {
                            nt::PushPlatform::Apns
                        } else {
                            nt::PushPlatform::Fcm
                        },
                        token,
                        app_id: row.try_get(2)?,
                    }))
                }
                None => None,
            }
        }
        _ => Some(nt::Recipient::Endpoint(stored.recipient_ref.clone())),
    })
}

fn message_of(stored: &Stored, recipient: nt::Recipient) -> nt::Message {
    nt::Message {
        topic: stored.topic.clone(),
        idempotency_key: format!("notification-{}", stored.id),
        recipient,
        title: stored.title.clone(),
        text: stored.text.clone(),
        html: stored.html.clone(),
        link: stored.link.clone(),
        collapse_key: stored.collapse_key.clone(),
        expires_at: stored
            .expires_at
            .as_deref()
            .and_then(crate::time::parse_timestamp)
            .and_then(|at| u64::try_from(at.timestamp()).ok()),
        priority: if stored.high_priority {
            nt::Priority::High
        } else {
            nt::Priority::Normal
        },
        marketing: stored.marketing,
        data_json: stored.data_json.clone(),
    }
}

/// Records an attempt and the notification's new state, and ends the job, in one
/// transaction.
async fn settle(
    ctx: &JobContext,
    stored: &Stored,
    outcome: &str,
    status: &str,
    detail: &str,
    provider_reference: Option<&str>,
) -> anyhow::Result<()> {
    let state = &ctx.state;
    let now = state.clock.now_text();
    let detail = short(detail);
    let mut tx = state.db.begin().await?;
    insert_attempt(&mut tx, stored, outcome, &detail, &now).await?;
    sqlx::query(
        "UPDATE notifications SET status = $1, provider_reference = COALESCE($2, provider_reference),
            attempts = attempts + 1,
            last_error = CASE WHEN $1 = 'delivered' THEN NULL ELSE $3 END, updated_at = $4,
            delivered_at = CASE WHEN $1 = 'delivered' THEN $4 ELSE delivered_at END
         WHERE id = $5",
    )
    .bind(status)
    .bind(provider_reference)
    .bind(&detail)
    .bind(&now)
    .bind(stored.id)
    .execute(&mut *tx)
    .await?;
    if outcome == "gone" && stored.recipient_kind == "device" {
        sqlx::query("DELETE FROM customer_devices WHERE id = $1")
            .bind(stored.recipient_ref.parse::<i64>().unwrap_or(0))
            .execute(&mut *tx)
            .await?;
    }
    ctx.complete_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// An attempt's detail as stored: at most 500 characters.
fn short(detail: &str) -> String {
    detail.chars().take(500).collect()
}

async fn insert_attempt(
    conn: &mut AnyConnection,
    stored: &Stored,
    outcome: &str,
    detail: &str,
    now: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO notification_attempts (notification_id, attempt, outcome, detail, at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(stored.id)
    .bind(stored.attempts + 1)
    .bind(outcome)
    .bind(detail)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A retryable failure: the attempt is recorded and the row stays pending.
async fn record_retry(state: &AppState, stored: &Stored, reason: &str) -> Result<()> {
    let now = state.clock.now_text();
    let detail = short(reason);
    let mut tx = state.db.begin().await?;
    insert_attempt(&mut tx, stored, "retry", &detail, &now).await?;
    sqlx::query(
        "UPDATE notifications SET attempts = attempts + 1, last_error = $1, updated_at = $2
         WHERE id = $3",
    )
    .bind(&detail)
    .bind(&now)
    .bind(stored.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Delivers one notification through its channel plugin.
/// The `notify.deliver` handler. The common outcome, delivered, is settled in groups: one
/// transaction records the attempts and statuses of every delivery that finished while
/// the previous group was being written (a burst would otherwise be one write per
/// notification, and on SQLite those queue on the one write lock). Each job ends only
/// once its group is committed; the job's own row is then deleted in the jobs' batches.
pub struct DeliverJob {
    delivered: OnceLock<mpsc::UnboundedSender<Delivered>>,
}

pub fn deliver_job() -> Arc<dyn JobHandler> {
    Arc::new(DeliverJob {
        delivered: OnceLock::new(),
    })
}

impl JobHandler for DeliverJob {
    fn kind(&self) -> &'static str {
        DELIVER_JOB
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> JobFuture<'a> {
        Box::pin(self.deliver(ctx))
    }
}

/// A delivery waiting for its group's commit.
struct Delivered {
    notification: i64,
    attempt: i64,
    provider_reference: String,
    committed: oneshot::Sender<std::result::Result<(), String>>,
}

impl DeliverJob {
    async fn deliver(&self, ctx: &JobContext) -> anyhow::Result<()> {
        let payload: DeliverPayload = ctx.payload()?;
        let state = &ctx.state;
        let Some(stored) =
            load_stored(&mut *state.db.pool.acquire().await?, payload.notification).await?
        else {
            return Err(Permanent(format!(
                "notification {} does not exist",
                payload.notification
            ))
            .into());
        };
        if stored.status != "pending" {
            // Settled by an earlier attempt that died before ending its job.
            let mut tx = state.db.begin().await?;
            ctx.complete_in(&mut tx).await?;
            tx.commit().await?;
            return Ok(());
        }
        let recipient = match &stored.recipient_kind[..] {
            "endpoint" => {
                let url = state
                    .plugins
                    .snapshot()
                    .notifications
                    .iter()
                    .find(|p| p.id == stored.plugin_id)
                    .and_then(|p| p.settings.get("url").cloned())
                    .unwrap_or_default();
                Some(nt::Recipient::Endpoint(url))
            }
            _ => recipient_of(state, &stored).await?,
        };
        let Some(recipient) = recipient else {
            return settle(
                ctx,
                &stored,
                "skipped",
                "skipped",
                "the recipient no longer exists",
                None,
            )
            .await;
        };
        let started = std::time::Instant::now();
        let outcome = deliver(
            &state.plugins,
            &stored.plugin_id,
            message_of(&stored, recipient),
        )
        .await;
        metrics::histogram!("olivine_notification_delivery_seconds")
            .record(started.elapsed().as_secs_f64());
        match outcome {
            DeliveryOutcome::Delivered { provider_reference } => {
                metrics::counter!("olivine_notifications_total", "outcome" => "delivered")
                    .increment(1);
                self.settle_delivered(state, &stored, provider_reference)
                    .await
            }
            DeliveryOutcome::Failed { reason } => {
                metrics::counter!("olivine_notifications_total", "outcome" => "failed")
                    .increment(1);
                settle(ctx, &stored, "failed", "failed", &reason, None).await
            }
            DeliveryOutcome::Gone { reason } => {
                metrics::counter!("olivine_notifications_total", "outcome" => "gone").increment(1);
                settle(ctx, &stored, "gone", "gone", &reason, None).await
            }
            DeliveryOutcome::Retry { reason, after } => {
                if ctx.job.attempt >= ctx.job.max_attempts {
                    metrics::counter!("olivine_notifications_total", "outcome" => "failed")
                        .increment(1);
                    let reason = format!("gave up after {} attempts: {reason}", ctx.job.attempt);
                    return settle(ctx, &stored, "retry", "failed", &reason, None).await;
                }
                record_retry(state, &stored, &reason).await?;
                Err(match after {
                    Some(after) => RetryAfter(after, reason).into(),
                    None => anyhow::anyhow!(reason),
                })
            }
        }
    }

    async fn settle_delivered(
        &self,
        state: &AppState,
        stored: &Stored,
        provider_reference: String,
    ) -> anyhow::Result<()> {
        let groups = self.delivered.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(settle_delivered_in_groups(
                state.db.clone(),
                state.clock.clone(),
                receiver,
            ));
            sender
        });
        let (committed, answer) = oneshot::channel();
        groups
            .send(Delivered {
                notification: stored.id,
                attempt: stored.attempts + 1,
                provider_reference,
                committed,
            })
            .map_err(|_| anyhow::anyhow!("the kernel is stopping"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the kernel is stopping"))?
            .map_err(|err| anyhow::anyhow!("recording the delivery failed: {err}"))
    }
}

/// Writes delivered notifications a group at a time: whatever arrived while the last
/// group was written, up to 100 (500 parameters).
async fn settle_delivered_in_groups(
    db: crate::store::Db,
    clock: Clock,
    mut incoming: mpsc::UnboundedReceiver<Delivered>,
) {
    let mut group = Vec::with_capacity(100);
    while let Some(first) = incoming.recv().await {
        group.push(first);
        while group.len() < 100 {
            match incoming.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let result = write_delivered(&db, &clock.now_text(), &group)
            .await
            .map_err(|err| err.to_string());
        if let Err(err) = &result {
            tracing::warn!(error = %err, deliveries = group.len(), "recording deliveries failed; their jobs run again");
        }
        for delivered in group.drain(..) {
            let _ = delivered.committed.send(result.clone());
        }
    }
}

async fn write_delivered(db: &crate::store::Db, now: &str, group: &[Delivered]) -> Result<()> {
    let mut tx = db.begin().await?;
    let insert = format!(
        "INSERT INTO notification_attempts (notification_id, attempt, outcome, detail, at)
         VALUES {}",
        crate::store::value_rows(group.len(), 5)
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(insert));
    for d in group {
        insert = insert
            .bind(d.notification)
            .bind(d.attempt)
            .bind("delivered")
            .bind("delivered")
            .bind(now);
    }
    insert.execute(&mut *tx).await?;
    // $1 is the time; then (id, provider reference) pairs.
    let cases: String = (0..group.len())
        .map(|i| format!(" WHEN ${} THEN ${}", i * 2 + 2, i * 2 + 3))
        .collect();
    let ids = (0..group.len())
        .map(|i| format!("${}", i * 2 + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let update = format!(
        "UPDATE notifications SET status = 'delivered', attempts = attempts + 1,
            last_error = NULL, updated_at = $1, delivered_at = $1,
            provider_reference = CASE id{cases} END
         WHERE id IN ({ids}) AND status = 'pending'"
    );
    let mut update = sqlx::query(sqlx::AssertSqlSafe(update)).bind(now);
    for d in group {
        update = update.bind(d.notification).bind(&d.provider_reference);
    }
    update.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Sends a notification again: a new row (a new idempotency key, so the provider does not
/// drop it as a repeat) with the same content, and its job. Returns the new id.
pub async fn resend(state: &AppState, id: i64, actor: &str) -> Result<i64> {
    let now = state.clock.now();
    let now_text = crate::time::format_timestamp(now);
    let mut tx = state.db.begin().await?;
    let new_id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO notifications (source, topic, customer_id, channel, plugin_id,
            recipient_kind, recipient_ref, title, body_text, body_html, link, data_json,
            marketing, priority, collapse_key, expires_at, status, attempts, created_at,
            updated_at)
         SELECT 'resend:' || $1 || ':' || $2, topic, customer_id, channel, plugin_id,
            recipient_kind, recipient_ref, title, body_text, body_html, link, data_json,
            marketing, priority, collapse_key, NULL, 'pending', 0, $2, $2
         FROM notifications WHERE id = $3
         RETURNING id",
    )
    .bind(id.to_string())
    .bind(&now_text)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(new_id) = new_id else {
        return Err(crate::error::Error::not_found(format!("notification {id}")));
    };
    crate::jobs::enqueue(&mut tx, &deliver_job_for(new_id), now).await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "notification.resent",
            target_type: "notification",
            target_id: id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "notification": new_id })),
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify_jobs();
    Ok(new_id)
}

/// Records the event that sends a campaign to every consenting customer.
pub async fn send_campaign(
    state: &AppState,
    actor: &str,
    input: &api::CampaignInput,
) -> Result<i64> {
    input.check()?;
    let now = state.clock.now_text();
    let mut tx = state.db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO notification_campaigns (title, body_text, body_html, link, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(input.title.trim())
    .bind(input.text.trim())
    .bind(input.html.as_deref())
    .bind(input.link.as_deref())
    .bind(actor)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?;
    crate::bus::record(
        &mut tx,
        "campaign",
        id,
        "campaign.sent",
        &serde_json::json!({ "campaign": id }),
    )
    .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "notification.campaign_sent",
            target_type: "campaign",
            target_id: id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "title": input.title })),
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    Ok(id)
}

/// A customer's notifications and devices for the GDPR export.
pub async fn export_on(conn: &mut AnyConnection, customer_id: i64) -> Result<serde_json::Value> {
    let devices = devices::list_on(conn, customer_id).await?;
    let preferences = devices::preferences_on(conn, customer_id).await?;
    let notifications = sqlx::query(
        "SELECT topic, channel, title, status, created_at FROM notifications
         WHERE customer_id = $1 ORDER BY id",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "topic": row.try_get::<String, _>(0)?,
            "channel": row.try_get::<String, _>(1)?,
            "title": row.try_get::<String, _>(2)?,
            "status": row.try_get::<String, _>(3)?,
            "created_at": row.try_get::<String, _>(4)?,
        }))
    })
    .collect::<Result<Vec<_>>>()?;
    let back_in_stock: Vec<String> = sqlx::query_scalar(
        "SELECT p.slug FROM back_in_stock_requests b JOIN products p ON p.id = b.product_id
         WHERE b.customer_id = $1 ORDER BY p.slug",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(serde_json::json!({
        "devices": devices,
        "preferences": preferences,
        "notifications": notifications,
        "back_in_stock": back_in_stock,
    }))
}

/// Erasure: devices, preferences, stock requests and notifications go; what was sent
/// stays counted in the audit log only.
pub async fn erase(
    conn: &mut AnyConnection,
    customer_id: i64,
) -> Result<BTreeMap<&'static str, u64>> {
    let mut counts = BTreeMap::new();
    for (name, sql) in [
        (
            "devices",
            "DELETE FROM customer_devices WHERE customer_id = $1",
        ),
        (
            "notification_preferences",
            "DELETE FROM notification_preferences WHERE customer_id = $1",
        ),
        (
            "notification_quiet_hours",
            "DELETE FROM notification_quiet_hours WHERE customer_id = $1",
        ),
        (
            "back_in_stock_requests",
            "DELETE FROM back_in_stock_requests WHERE customer_id = $1",
        ),
        (
            "notification_attempts",
            "DELETE FROM notification_attempts WHERE notification_id IN
                (SELECT id FROM notifications WHERE customer_id = $1)",
        ),
        (
            "notifications",
            "DELETE FROM notifications WHERE customer_id = $1",
        ),
    ] {
        let done = sqlx::query(sql)
            .bind(customer_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        counts.insert(name, done);
    }
    Ok(counts)
}
