//! Notification templates: a built-in one per topic and channel, which the merchant may
//! replace (`notification_templates`). Placeholders are `{{name}}`, filled from the
//! event's facts ([`Vars`]); in HTML every value is escaped. A template never holds a
//! customer's name or address: notifications are stored, and erasure must leave nothing
//! in them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::error::{Problems, Result};

/// The facts a template may use, by name.
pub type Vars = BTreeMap<&'static str, String>;

/// What customers are told about, and when.
pub const TOPICS: &[(&str, &str)] = &[
    ("order.placed", "An order was placed (before payment)."),
    ("order.paid", "An order's payment went through."),
    (
        "order.shipped",
        "An order was shipped, with its carrier and tracking number.",
    ),
    ("order.delivered", "An order was delivered."),
    (
        "order.refunded",
        "An order was refunded, in full or in part.",
    ),
    (
        "subscription.renewal_upcoming",
        "A subscription renews in a few days.",
    ),
    (
        "subscription.renewed",
        "A subscription renewed: a new order.",
    ),
    (
        "subscription.payment_failed",
        "A renewal's payment failed; a link to replace the card.",
    ),
    ("subscription.paused", "A subscription was paused."),
    ("subscription.cancelled", "A subscription was cancelled."),
    ("loyalty.points_earned", "Points were credited."),
    (
        "order.recalled",
        "A batch of a product in the customer's order was recalled: what to do.",
    ),
    (
        "product.back_in_stock",
        "A product the customer asked about is back in stock.",
    ),
    (
        "campaign",
        "A merchant's promotional message (marketing consent only).",
    ),
];

pub const CHANNELS: &[&str] = &["email", "push", "webhook"];

/// A template: what `notification_templates` holds or the built-in default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Template {
    /// An email's subject; a push notification's title.
    #[schema(value_type = crate::http::schema::NonBlankText200)]
    pub title: String,
    /// The plain-text body (email), or the push body.
    #[schema(value_type = crate::http::schema::NonBlankText5000)]
    pub text: String,
    /// The HTML body (email only).
    #[schema(max_length = 100000)]
    pub html: Option<String>,
    /// Where a tap or click leads (a path on the shop, or an absolute URL).
    #[schema(pattern = "^(/|https?://)[^\\x00-\\x20\\x7F]*$", max_length = 2000)]
    pub link: Option<String>,
    /// Off: this topic is not sent on this channel.
    pub enabled: bool,
}

fn t(title: &str, text: &str, link: Option<&str>) -> Template {
    Template {
        title: title.to_owned(),
        text: text.to_owned(),
        html: None,
        link: link.map(str::to_owned),
        enabled: true,
    }
}

/// The built-in template of a topic (the same text on every channel; email gets an HTML
/// body made from the text).
pub fn default_template(topic: &str, channel: &str) -> Option<Template> {
    let mut template = match topic {
        "order.placed" => t(
            "Order {{order_number}} received",
            "We have your order {{order_number}} ({{total}}). We'll let you know when it ships.",
            Some("/account/orders/{{order_number}}"),
        ),
        "order.paid" => t(
            "Order {{order_number}} confirmed",
            "Payment received for order {{order_number}} ({{total}}). Thank you!",
            Some("/account/orders/{{order_number}}"),
        ),
        "order.shipped" => t(
            "Order {{order_number}} is on its way",
            "Your order {{order_number}} has shipped with {{carrier}}. Tracking number: {{tracking_number}}.",
            Some("/account/orders/{{order_number}}"),
        ),
        "order.delivered" => t(
            "Order {{order_number}} delivered",
            "Your order {{order_number}} was delivered. Enjoy!",
            Some("/account/orders/{{order_number}}"),
        ),
        "order.refunded" => t(
            "Refund for order {{order_number}}",
            "We refunded {{amount}} for order {{order_number}}.",
            Some("/account/orders/{{order_number}}"),
        ),
        "subscription.renewal_upcoming" => t(
            "Your subscription renews soon",
            "Subscription {{subscription_number}} renews on {{renews_at}}. Skip or change it before then if you need to.",
            Some("/account/subscriptions"),
        ),
        "subscription.renewed" => t(
            "Subscription {{subscription_number}} renewed",
            "Your subscription {{subscription_number}} renewed. Next renewal: {{next_renewal_at}}.",
            Some("/account/subscriptions"),
        ),
        "subscription.payment_failed" => t(
            "Payment failed for subscription {{subscription_number}}",
            "We could not charge your card for subscription {{subscription_number}}. Replace the card here: {{update_card_url}}",
            Some("/account/subscriptions"),
        ),
        "subscription.paused" => t(
            "Subscription {{subscription_number}} paused",
            "Your subscription {{subscription_number}} is paused.",
            Some("/account/subscriptions"),
        ),
        "subscription.cancelled" => t(
            "Subscription {{subscription_number}} cancelled",
            "Your subscription {{subscription_number}} is cancelled.",
            Some("/account/subscriptions"),
        ),
        "loyalty.points_earned" => t(
            "You earned {{points}} points",
            "{{points}} points were added to your account: {{reason}}.",
            Some("/account/points"),
        ),
        "order.recalled" => t(
            "Important: a product in order {{order_number}} is recalled",
            "Batch {{batch}} of {{product_name}}, which was in your order {{order_number}}, is recalled: {{reason}}. Please stop using it. We will be in touch about a refund or a replacement.",
            Some("/account/orders/{{order_number}}"),
        ),
        "product.back_in_stock" => t(
            "{{product_name}} is back",
            "{{product_name}} is back in stock.",
            Some("/products/{{product_slug}}"),
        ),
        "campaign" => t("{{title}}", "{{text}}", None),
        _ => return None,
    };
    if channel == "email" {
        template.html =
            Some("<p>{{__text_html}}</p><p><a href=\"{{__link}}\">{{__link}}</a></p>".to_owned());
    }
    if topic == "campaign" && channel == "email" {
        template.html = Some("{{html}}".to_owned());
    }
    Some(template)
}

/// The template in force: the merchant's, else the built-in one.
pub async fn load(
    conn: &mut AnyConnection,
    topic: &str,
    channel: &str,
) -> Result<Option<Template>> {
    let row = sqlx::query(
        "SELECT title, body_text, body_html, link, enabled FROM notification_templates
         WHERE topic = $1 AND channel = $2",
    )
    .bind(topic)
    .bind(channel)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => Some(Template {
            title: row.try_get(0)?,
            text: row.try_get(1)?,
            html: row.try_get(2)?,
            link: row.try_get(3)?,
            enabled: row.try_get::<i64, _>(4)? == 1,
        }),
        None => default_template(topic, channel),
    })
}

/// Checks a merchant's template, naming the field.
pub fn check(topic: &str, channel: &str, template: &Template) -> Result<()> {
    let mut problems = Problems::new();
    problems.check(
        TOPICS.iter().any(|(t, _)| *t == topic),
        "topic",
        format!(
            "unknown topic; one of {}",
            TOPICS
                .iter()
                .map(|(t, _)| *t)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    problems.check(
        CHANNELS.contains(&channel),
        "channel",
        "one of email, push, webhook",
    );
    check_message(
        &mut problems,
        &template.title,
        &template.text,
        template.html.as_deref(),
        template.link.as_deref(),
        true,
    );
    for (field, text) in [
        ("title", Some(&template.title)),
        ("text", Some(&template.text)),
        ("html", template.html.as_ref()),
        ("link", template.link.as_ref()),
    ] {
        if let Some(text) = text
            && let Err(name) = placeholders_known(text)
        {
            problems.add(field, format!("unknown placeholder `{{{{{name}}}}}`"));
        }
    }
    problems.into_result()
}

/// The rules a message's parts share (a template's, a campaign's), naming the field:
/// a title of 1 to 200 characters and a text of 1 to 5,000, neither blank; HTML of at
/// most 100,000; a link that is an http(s) URL or, where `paths`, a path on the shop.
pub fn check_message(
    problems: &mut Problems,
    title: &str,
    text: &str,
    html: Option<&str>,
    link: Option<&str>,
    paths: bool,
) {
    problems.check(
        !title.trim().is_empty() && title.chars().count() <= 200,
        "title",
        "1 to 200 characters",
    );
    problems.check(
        !text.trim().is_empty() && text.chars().count() <= 5000,
        "text",
        "1 to 5,000 characters",
    );
    if let Some(html) = html {
        problems.check(
            html.chars().count() <= 100_000,
            "html",
            "at most 100,000 characters",
        );
    }
    if let Some(link) = link {
        problems.check(
            link_ok(link, paths),
            "link",
            if paths {
                "a path on the shop (`/…`) or an http(s) URL, without spaces"
            } else {
                "an http(s) URL without spaces"
            },
        );
    }
}

/// A link: an http(s) URL (or, where `paths`, a path on the shop) of at most 2,000
/// characters, without spaces or control characters.
pub fn link_ok(link: &str, paths: bool) -> bool {
    let start = link.starts_with("https://")
        || link.starts_with("http://")
        || (paths && link.starts_with('/'));
    start
        && link.chars().count() <= 2000
        && !link.chars().any(|c| (c as u32) <= 0x20 || c == '\u{7f}')
}

/// The topics, as a schema (a path parameter).
pub struct TopicName;

impl utoipa::PartialSchema for TopicName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(TOPICS.iter().map(|(topic, _)| *topic)))
            .into()
    }
}

impl ToSchema for TopicName {}

/// The channels, as a schema (a path parameter).
pub struct ChannelName;

impl utoipa::PartialSchema for ChannelName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(CHANNELS.iter().copied()))
            .into()
    }
}

impl ToSchema for ChannelName {}

/// Every placeholder a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "shop_name",
    "order_number",
    "total",
    "amount",
    "carrier",
    "tracking_number",
    "subscription_number",
    "renews_at",
    "next_renewal_at",
    "update_card_url",
    "points",
    "reason",
    "product_name",
    "product_slug",
    "batch",
    "title",
    "text",
    "html",
    "__link",
    "__text_html",
];

fn placeholders_known(text: &str) -> std::result::Result<(), String> {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(name.to_owned());
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

/// Fills `{{name}}` placeholders; unknown ones become empty. `html`: values are escaped.
pub fn fill(text: &str, vars: &Vars, html: bool) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        let value = vars.get(name).map(String::as_str).unwrap_or("");
        // `html` (a campaign's own HTML) and the prepared `__text_html` are HTML already.
        if html && !matches!(name, "html" | "__text_html") {
            out.push_str(&escape_html(value));
        } else {
            out.push_str(value);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A template filled in: what a notification row stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub title: String,
    pub text: String,
    pub html: Option<String>,
    pub link: Option<String>,
}

/// Renders `template`; relative links are made absolute with `public_url`.
pub fn render(template: &Template, vars: &Vars, public_url: &str) -> Rendered {
    // A link among the facts (`update_card_url`) is a path on the shop: made absolute,
    // as the text travels to a mailbox or a phone.
    let mut vars = vars.clone();
    for (name, value) in vars.iter_mut() {
        if name.ends_with("_url") && value.starts_with('/') {
            *value = format!("{}{value}", public_url.trim_end_matches('/'));
        }
    }
    let vars = &vars;
    let title = fill(&template.title, vars, false);
    let text = fill(&template.text, vars, false);
    let link = template.link.as_ref().map(|link| {
        let link = fill(link, vars, false);
        if link.starts_with('/') {
            format!("{}{link}", public_url.trim_end_matches('/'))
        } else {
            link
        }
    });
    let html = template.html.as_ref().map(|html| {
        let mut vars = vars.clone();
        vars.insert("__text_html", escape_html(&text).replace('\n', "<br>"));
        vars.insert("__link", link.clone().unwrap_or_default());
        fill(html, &vars, true)
    });
    Rendered {
        title,
        text,
        html,
        link,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_escaped_in_html() {
        let mut vars = Vars::new();
        vars.insert("order_number", "1001".into());
        vars.insert("carrier", "<DHL>".into());
        vars.insert("tracking_number", "TRK1".into());
        let template = default_template("order.shipped", "email").unwrap();
        let r = render(&template, &vars, "https://shop.example/");
        assert_eq!(r.title, "Order 1001 is on its way");
        assert!(
            r.text.contains("with <DHL>. Tracking number: TRK1."),
            "{}",
            r.text
        );
        let html = r.html.unwrap();
        assert!(html.contains("&lt;DHL&gt;"), "{html}");
        assert!(
            html.contains("https://shop.example/account/orders/1001"),
            "{html}"
        );
        assert_eq!(
            r.link.as_deref(),
            Some("https://shop.example/account/orders/1001")
        );
        let mut vars = Vars::new();
        vars.insert("subscription_number", "S-1".into());
        vars.insert("update_card_url", "/account/subscriptions/S-1".into());
        let template = default_template("subscription.payment_failed", "push").unwrap();
        let r = render(&template, &vars, "https://shop.example");
        assert!(
            r.text
                .ends_with("here: https://shop.example/account/subscriptions/S-1"),
            "{}",
            r.text
        );
    }

    #[test]
    fn merchants_templates_are_checked() {
        let mut template = default_template("order.paid", "push").unwrap();
        assert!(check("order.paid", "push", &template).is_ok());
        template.title = "Hi {{first_name}}".into();
        let err = check("order.paid", "push", &template).unwrap_err();
        assert!(format!("{err:?}").contains("first_name"), "{err:?}");
        assert!(
            check(
                "order.lost",
                "fax",
                &default_template("order.paid", "push").unwrap()
            )
            .is_err()
        );
    }

    #[test]
    fn every_topic_has_a_template_on_every_channel() {
        for (topic, _) in TOPICS {
            for channel in CHANNELS {
                assert!(
                    default_template(topic, channel).is_some(),
                    "{topic} {channel}"
                );
            }
        }
    }
}
