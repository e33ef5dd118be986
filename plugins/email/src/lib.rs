//! Email notification channel: sends a message through a Postmark-style HTTP email API
//! (`POST {base_url}/email` with `X-Postmark-Server-Token`), through the host's HTTP
//! import.
//!
//! Transactional messages go to the `transactional_stream`, marketing ones to the
//! `marketing_stream`. Every email carries the header `X-Olivine-Idempotency-Key` (the
//! same on each retry) and the topic in its metadata.
//!
//! Outcomes: 200 with `ErrorCode` 0 is delivered (the receipt is the API's `MessageID`);
//! 422 with `ErrorCode` 406 (the recipient is inactive: bounced, complained or
//! unsubscribed) is "recipient gone"; 429, 5xx, timeouts and transport failures are
//! retried (after `Retry-After` when given); 401 (a bad server token), any other 4xx, a
//! recipient that is not an email address or a request the host denies is permanent.

use olivine_sdk::http::{self, HttpError, Request, Response};
use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;
use serde_json::{Map, Value, json};

pub const DEFAULT_BASE_URL: &str = "https://api.postmarkapp.com";
/// The API's error code for an inactive recipient.
pub const INACTIVE_RECIPIENT: i64 = 406;
/// The API's limit on a metadata value.
const MAX_METADATA_VALUE: usize = 80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Without a trailing `/`.
    pub base_url: String,
    pub server_token: String,
    pub from: String,
    pub reply_to: Option<String>,
    pub transactional_stream: String,
    pub marketing_stream: String,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        let base_url = s
            .get("base_url")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_BASE_URL);
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(format!(
                "setting `base_url` must be an http(s) URL, got `{base_url}`"
            ));
        }
        let from = s.required("from")?;
        if !from.contains('@') || from.contains(['\r', '\n']) {
            return Err(format!(
                "setting `from` must be a sender address such as `Shop <hello@shop.example>`, got `{from}`"
            ));
        }
        let reply_to = s
            .get("reply_to")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        if let Some(reply_to) = &reply_to
            && (!reply_to.contains('@') || reply_to.contains(['\r', '\n']))
        {
            return Err(format!(
                "setting `reply_to` must be an email address, got `{reply_to}`"
            ));
        }
        let stream = |key: &str, default: &str| {
            let value = s.get(key).map(str::trim).filter(|v| !v.is_empty());
            value.unwrap_or(default).to_owned()
        };
        Ok(Config {
            base_url: base_url.trim_end_matches('/').to_owned(),
            server_token: s.required("server_token")?,
            from,
            reply_to,
            transactional_stream: stream("transactional_stream", "outbound"),
            marketing_stream: stream("marketing_stream", "broadcast"),
        })
    }
}

/// Whether `address` is a plain `local@domain` address: one `@`, both sides non-empty,
/// nothing that would break out of a header (whitespace, controls, `<>,;:"()[]\`).
pub fn is_plain_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;:\"()[]\\".contains(c))
}

/// `"Name" <address>` (or `Name <address>` when the name is plain words, or the address
/// alone without a name). Controls in the name become spaces; quotes and backslashes in
/// it are escaped.
pub fn mailbox(to: &EmailAddress) -> Result<String, DeliveryError> {
    let address = to.address.trim();
    if !is_plain_address(address) {
        return Err(DeliveryError::Permanent(format!(
            "`{address}` is not an email address"
        )));
    }
    let name: String = to
        .name
        .as_deref()
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Ok(address.to_owned());
    }
    // RFC 5322 atext and spaces need no quotes; anything else (`.`, `,`, `@`, non-ASCII
    // letters, ...) is quoted.
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~ ".contains(c);
    if name.chars().all(atext) {
        return Ok(format!("{name} <{address}>"));
    }
    let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(format!("\"{escaped}\" <{address}>"))
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// The API's JSON body for `message`.
pub fn body(config: &Config, message: &Message) -> Result<String, DeliveryError> {
    let to = match &message.recipient {
        Recipient::Email(to) => mailbox(to)?,
        Recipient::Device(_) | Recipient::Endpoint(_) => {
            return Err(DeliveryError::Permanent(
                "email delivers to email addresses, not to devices or endpoints".into(),
            ));
        }
    };
    let mut body = Map::new();
    body.insert("From".into(), json!(config.from));
    body.insert("To".into(), json!(to));
    body.insert("Subject".into(), json!(message.title));
    body.insert("TextBody".into(), json!(message.text));
    if let Some(html) = &message.html {
        body.insert("HtmlBody".into(), json!(html));
    }
    if let Some(reply_to) = &config.reply_to {
        body.insert("ReplyTo".into(), json!(reply_to));
    }
    let stream = if message.marketing {
        &config.marketing_stream
    } else {
        &config.transactional_stream
    };
    body.insert("MessageStream".into(), json!(stream));
    body.insert(
        "Headers".into(),
        json!([{"Name": "X-Olivine-Idempotency-Key", "Value": message.idempotency_key}]),
    );
    body.insert(
        "Metadata".into(),
        json!({"topic": truncate(&message.topic, MAX_METADATA_VALUE)}),
    );
    Ok(Value::Object(body).to_string())
}

pub fn request(config: &Config, message: &Message) -> Result<Request, DeliveryError> {
    Ok(Request::post(format!("{}/email", config.base_url))
        .header("accept", "application/json")
        .header("x-postmark-server-token", config.server_token.clone())
        .json(body(config, message)?))
}

/// The API's `ErrorCode` and `Message` in a response body.
pub fn api_error(response: &Response) -> (Option<i64>, Option<String>) {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (
        body["ErrorCode"].as_i64(),
        body["Message"].as_str().map(str::to_owned),
    )
}

/// Maps the API's answer to a delivery outcome.
pub fn outcome(result: &Result<Response, HttpError>) -> Result<DeliveryReceipt, DeliveryError> {
    let response = match result {
        Ok(response) => response,
        Err(err) => return Err(DeliveryError::from_http_error("the email API", err)),
    };
    let (code, api_message) = api_error(response);
    let said = format!(
        "the email API answered {}{}{}",
        response.status,
        code.map(|c| format!(" (ErrorCode {c})"))
            .unwrap_or_default(),
        api_message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    );
    if response.status == 200 && code.unwrap_or(0) == 0 {
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        return match body["MessageID"].as_str().filter(|id| !id.is_empty()) {
            Some(id) => Ok(DeliveryReceipt {
                provider_reference: id.to_owned(),
            }),
            None => Err(DeliveryError::Permanent(format!(
                "{said}, without a MessageID"
            ))),
        };
    }
    Err(match response.status {
        422 if code == Some(INACTIVE_RECIPIENT) => DeliveryError::RecipientGone(said),
        401 => DeliveryError::Permanent(format!("{said} (check the `server_token` setting)")),
        429 | 500..=599 => DeliveryError::retryable_response(said, response),
        _ => DeliveryError::Permanent(said),
    })
}

pub struct Email;

impl NotificationChannel for Email {
    fn deliver(message: &Message) -> Result<DeliveryReceipt, DeliveryError> {
        let config =
            Config::from_settings(&Settings::from_host()).map_err(DeliveryError::Permanent)?;
        outcome(&http::send(&request(&config, message)?))
    }
}

olivine_sdk::export_notification_channel!(Email);

#[cfg(test)]
mod tests {
    use super::*;
    use olivine_sdk::testing;

    fn settings() -> Vec<(&'static str, &'static str)> {
        vec![
            ("server_token", "server-token-1"),
            ("from", "Shop <hello@shop.example>"),
        ]
    }

    fn config() -> Config {
        Config::from_settings(&Settings::from_pairs(settings())).unwrap()
    }

    fn to(address: &str, name: Option<&str>) -> Recipient {
        Recipient::Email(EmailAddress {
            address: address.into(),
            name: name.map(str::to_owned),
        })
    }

    fn message() -> Message {
        Message {
            title: "Order 1001 confirmed".into(),
            text: "Thanks for your order.".into(),
            html: Some("<p>Thanks for your order.</p>".into()),
            ..Message::new(
                "order.confirmed",
                "notif-5:email:ada",
                to("ada@example.com", Some("Ada Lovelace")),
            )
        }
    }

    fn deliver_with(response: Response) -> Result<DeliveryReceipt, DeliveryError> {
        testing::clear();
        testing::set_settings(settings());
        testing::mock_http(move |_| Ok(response.clone()));
        <Email as NotificationChannel>::deliver(&message())
    }

    #[test]
    fn sends_the_email() {
        let receipt = deliver_with(Response::new(200).with_body(
            r#"{"To":"ada@example.com","SubmittedAt":"2026-12-05T10:00:00Z","MessageID":"b7bc2f4a-e38e-4336-af7d-e6c392c2f817","ErrorCode":0,"Message":"OK"}"#,
        ))
        .unwrap();
        assert_eq!(
            receipt.provider_reference,
            "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"
        );
        let sent = testing::sent_requests();
        assert_eq!(sent.len(), 1);
        let request = &sent[0];
        assert_eq!(request.url, "https://api.postmarkapp.com/email");
        assert_eq!(
            request.header_value("X-Postmark-Server-Token"),
            Some("server-token-1")
        );
        assert_eq!(request.header_value("accept"), Some("application/json"));
        assert_eq!(
            request.header_value("content-type"),
            Some("application/json")
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "From": "Shop <hello@shop.example>",
                "To": "Ada Lovelace <ada@example.com>",
                "Subject": "Order 1001 confirmed",
                "TextBody": "Thanks for your order.",
                "HtmlBody": "<p>Thanks for your order.</p>",
                "MessageStream": "outbound",
                "Headers": [{"Name": "X-Olivine-Idempotency-Key", "Value": "notif-5:email:ada"}],
                "Metadata": {"topic": "order.confirmed"},
            })
        );
        testing::clear();
    }

    #[test]
    fn marketing_uses_its_stream_and_reply_to_is_set() {
        let mut pairs = settings();
        pairs.push(("reply_to", "care@shop.example"));
        pairs.push(("marketing_stream", "newsletters"));
        pairs.push(("base_url", "http://127.0.0.1:8025/"));
        let c = Config::from_settings(&Settings::from_pairs(pairs)).unwrap();
        let m = Message {
            marketing: true,
            html: None,
            recipient: to("bob@example.com", None),
            ..message()
        };
        let request = request(&c, &m).unwrap();
        assert_eq!(request.url, "http://127.0.0.1:8025/email");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["MessageStream"], "newsletters");
        assert_eq!(body["ReplyTo"], "care@shop.example");
        assert_eq!(body["To"], "bob@example.com");
        assert!(body.get("HtmlBody").is_none());
        assert_eq!(config().marketing_stream, "broadcast");
    }

    #[test]
    fn names_are_quoted_safely() {
        let name = |n: &str| {
            mailbox(&EmailAddress {
                address: "a@example.com".into(),
                name: Some(n.into()),
            })
            .unwrap()
        };
        assert_eq!(name("Ada Lovelace"), "Ada Lovelace <a@example.com>");
        assert_eq!(name("  "), "a@example.com");
        assert_eq!(name("Lovelace, Ada"), "\"Lovelace, Ada\" <a@example.com>");
        assert_eq!(
            name("A. \"Countess\" L"),
            r#""A. \"Countess\" L" <a@example.com>"#
        );
        assert_eq!(name(r"back\slash"), r#""back\\slash" <a@example.com>"#);
        assert_eq!(name("Zoë"), "\"Zoë\" <a@example.com>");
        assert_eq!(
            name("Eve\r\nBcc: victim@example.com"),
            "\"Eve Bcc: victim@example.com\" <a@example.com>",
            "no header injection"
        );
        for bad in [
            "",
            "no-at",
            "a@b@c",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@example.com>, evil@example.com",
            "a@example.com\r\nBcc: x@y",
        ] {
            let result = mailbox(&EmailAddress {
                address: bad.into(),
                name: None,
            });
            assert!(matches!(result, Err(DeliveryError::Permanent(_))), "{bad}");
        }
    }

    #[test]
    fn status_mapping() {
        let inactive = deliver_with(Response::new(422).with_body(
            r#"{"ErrorCode":406,"Message":"You tried to send to a recipient that has been marked as inactive."}"#,
        ));
        assert_eq!(
            inactive,
            Err(DeliveryError::RecipientGone(
                "the email API answered 422 (ErrorCode 406): You tried to send to a recipient that has been marked as inactive.".into()
            ))
        );
        let invalid = deliver_with(
            Response::new(422).with_body(r#"{"ErrorCode":300,"Message":"Invalid email request"}"#),
        );
        assert!(
            matches!(invalid, Err(DeliveryError::Permanent(ref m)) if m.contains("Invalid email request"))
        );
        let bad_token = deliver_with(Response::new(401).with_body(
            r#"{"ErrorCode":10,"Message":"The Server Token you provided in the X-Postmark-Server-Token request header was invalid."}"#,
        ));
        assert!(
            matches!(bad_token, Err(DeliveryError::Permanent(ref m)) if m.contains("server_token"))
        );
        assert!(matches!(
            deliver_with(Response::new(200).with_body(r#"{"ErrorCode":406,"Message":"inactive"}"#)),
            Err(DeliveryError::Permanent(_))
        ));
        assert_eq!(
            deliver_with(Response::new(429).with_header("Retry-After", "20")),
            Err(DeliveryError::retryable_after(
                "the email API answered 429",
                Some(20)
            ))
        );
        for retry in [500, 503] {
            assert!(matches!(
                deliver_with(Response::new(retry)),
                Err(DeliveryError::Retryable(_))
            ));
        }
        assert!(matches!(
            deliver_with(Response::new(404)),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(matches!(
            outcome(&Err(HttpError::Timeout)),
            Err(DeliveryError::Retryable(_))
        ));
        assert!(matches!(
            outcome(&Err(HttpError::Failed("reset".into()))),
            Err(DeliveryError::Retryable(_))
        ));
        assert!(matches!(
            outcome(&Err(HttpError::Denied("no".into()))),
            Err(DeliveryError::Permanent(_))
        ));
        testing::clear();
    }

    #[test]
    fn non_email_recipients_and_missing_settings_send_nothing() {
        testing::clear();
        testing::set_settings(settings());
        testing::mock_http(|_| Ok(Response::new(200)));
        let push = Message {
            recipient: Recipient::Device(Device {
                platform: PushPlatform::Fcm,
                token: "t".into(),
                app_id: "a".into(),
            }),
            ..message()
        };
        assert!(matches!(
            <Email as NotificationChannel>::deliver(&push),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(testing::sent_requests().is_empty());
        testing::clear();
        assert!(matches!(
            <Email as NotificationChannel>::deliver(&message()),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(
            Config::from_settings(&Settings::from_pairs([
                ("server_token", "t"),
                ("from", "nobody")
            ]))
            .is_err()
        );
        assert!(testing::sent_requests().is_empty());
    }
}
