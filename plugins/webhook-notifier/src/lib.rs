//! Webhook notification channel: POSTs each message as JSON to the recipient's endpoint
//! (else the `url` setting) through the host's HTTP import, signed with HMAC-SHA256 when
//! a `signing_secret` is set.
//!
//! Outcomes: 2xx is delivered (the receipt's provider reference is the response's
//! `x-request-id` header, else `http-<status>`); 5xx, 429, timeouts and transport failures
//! are retryable (after the receiver's `Retry-After` when it sent one); other statuses
//! (4xx, 3xx) and requests the host denies are permanent.

use hmac::{Hmac, Mac};
use olivine_sdk::http::{self, HttpError, Request, Response};
use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where messages without an endpoint recipient go.
    pub url: Option<String>,
    pub authorization: Option<String>,
    pub signing_secret: Option<String>,
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

fn optional(s: &Settings, key: &str) -> Option<String> {
    s.get(key)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        let url = optional(s, "url");
        if let Some(url) = &url
            && !is_http_url(url)
        {
            return Err(format!("setting `url` must be an http(s) URL, got `{url}`"));
        }
        Ok(Config {
            url,
            authorization: optional(s, "authorization"),
            signing_secret: optional(s, "signing_secret"),
        })
    }
}

/// The URL a message goes to: its endpoint recipient, else the `url` setting.
pub fn target(config: &Config, message: &Message) -> Result<String, DeliveryError> {
    match (&message.recipient, &config.url) {
        (Recipient::Endpoint(url), _) if is_http_url(url.trim()) => Ok(url.trim().to_owned()),
        (Recipient::Endpoint(url), _) => Err(DeliveryError::Permanent(format!(
            "the endpoint `{url}` is not an http(s) URL"
        ))),
        (_, Some(url)) => Ok(url.clone()),
        (_, None) => Err(DeliveryError::Permanent(
            "setting `url` is required for recipients that are not endpoints".into(),
        )),
    }
}

/// The recipient as one string: the endpoint, the email address or the device token.
fn recipient_text(recipient: &Recipient) -> &str {
    match recipient {
        Recipient::Endpoint(url) => url,
        Recipient::Email(email) => &email.address,
        Recipient::Device(device) => &device.token,
    }
}

/// The JSON body: `topic`, `recipient`, `subject` and `body` (as in 0.1: the title and the
/// text), `title`, `text`, `link` and `data`, the message's `data-json` embedded as JSON
/// when it parses (as a string otherwise, `null` when empty).
pub fn payload(m: &Message) -> String {
    let data = if m.data_json.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&m.data_json).unwrap_or_else(|_| Value::String(m.data_json.clone()))
    };
    json!({
        "topic": m.topic,
        "recipient": recipient_text(&m.recipient),
        "subject": m.title,
        "body": m.text,
        "title": m.title,
        "text": m.text,
        "link": m.link,
        "data": data,
    })
    .to_string()
}

/// `v1=<hex HMAC-SHA256 of "<timestamp>.<body>" under secret>`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// The request for `m`, signed at `now` (Unix seconds) when a secret is set.
pub fn request(config: &Config, m: &Message, now: u64) -> Result<Request, DeliveryError> {
    let mut request = Request::post(target(config, m)?)
        .header("x-olivine-topic", m.topic.clone())
        .header("idempotency-key", m.idempotency_key.clone())
        .header("user-agent", "olivine-webhook-notifier/0.2")
        .json(payload(m));
    if let Some(auth) = &config.authorization {
        request = request.header("authorization", auth.clone());
    }
    if let Some(secret) = &config.signing_secret {
        let signature = signature(secret, now, &request.body);
        request = request
            .header("x-olivine-timestamp", now.to_string())
            .header("x-olivine-signature", signature);
    }
    Ok(request)
}

/// Maps the host's answer to a delivery outcome.
pub fn outcome(result: Result<Response, HttpError>) -> Result<DeliveryReceipt, DeliveryError> {
    match result {
        Ok(response) if response.is_success() => Ok(DeliveryReceipt {
            provider_reference: response
                .header("x-request-id")
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("http-{}", response.status)),
        }),
        Ok(response) if response.is_server_error() || response.status == 429 => {
            Err(DeliveryError::retryable_response(
                format!("webhook answered {}", response.status),
                &response,
            ))
        }
        Ok(response) => Err(DeliveryError::Permanent(format!(
            "webhook answered {}: {}",
            response.status,
            snippet(&response.text())
        ))),
        Err(err) => Err(DeliveryError::from_http_error("the webhook", &err)),
    }
}

fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

pub struct Webhook;

impl NotificationChannel for Webhook {
    fn deliver(message: &Message) -> Result<DeliveryReceipt, DeliveryError> {
        let config =
            Config::from_settings(&Settings::from_host()).map_err(DeliveryError::Permanent)?;
        let request = request(&config, message, clock::now_unix_seconds())?;
        outcome(http::send(&request))
    }
}

olivine_sdk::export_notification_channel!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use olivine_sdk::testing;

    const URL: &str = "https://hooks.example.com/olivine";

    fn message() -> Message {
        Message {
            title: "Order 1001 confirmed".into(),
            text: "Thanks!".into(),
            link: Some("https://shop.example/orders/1001".into()),
            data_json: r#"{"order_id":"1001"}"#.into(),
            ..Message::new(
                "order.confirmed",
                "order-1001-confirmed",
                Recipient::Email(EmailAddress {
                    address: "ada@example.com".into(),
                    name: None,
                }),
            )
        }
    }

    fn deliver_with(
        status: u16,
        headers: &[(&str, &str)],
    ) -> Result<DeliveryReceipt, DeliveryError> {
        testing::set_settings([("url", URL)]);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        testing::mock_http(move |_| {
            let mut r = Response::new(status);
            r.headers = headers.clone();
            Ok(r)
        });
        <Webhook as NotificationChannel>::deliver(&message())
    }

    #[test]
    fn posts_json_and_reads_the_request_id() {
        testing::clear();
        let receipt = deliver_with(200, &[("X-Request-Id", "req-123")]).unwrap();
        assert_eq!(receipt.provider_reference, "req-123");
        let sent = testing::sent_requests();
        let last = sent.last().unwrap();
        assert_eq!(last.method, "POST");
        assert_eq!(last.url, URL);
        assert_eq!(last.header_value("content-type"), Some("application/json"));
        assert_eq!(
            last.header_value("idempotency-key"),
            Some("order-1001-confirmed")
        );
        assert_eq!(
            last.header_value("x-olivine-signature"),
            None,
            "no secret set"
        );
        let body: Value = serde_json::from_slice(&last.body).unwrap();
        assert_eq!(
            body,
            json!({
                "topic": "order.confirmed",
                "recipient": "ada@example.com",
                "subject": "Order 1001 confirmed",
                "body": "Thanks!",
                "title": "Order 1001 confirmed",
                "text": "Thanks!",
                "link": "https://shop.example/orders/1001",
                "data": {"order_id": "1001"},
            })
        );
        testing::clear();
    }

    #[test]
    fn endpoint_recipients_choose_the_url() {
        let config = Config::from_settings(&Settings::from_pairs([("url", URL)])).unwrap();
        let to_endpoint = Message {
            recipient: Recipient::Endpoint("https://crm.example/hooks/7".into()),
            ..message()
        };
        assert_eq!(
            request(&config, &to_endpoint, 0).unwrap().url,
            "https://crm.example/hooks/7"
        );
        let no_url = Config::from_settings(&Settings::from_pairs([("url", "  ")])).unwrap();
        assert_eq!(
            request(&no_url, &to_endpoint, 0).unwrap().url,
            "https://crm.example/hooks/7"
        );
        assert!(matches!(
            request(&no_url, &message(), 0),
            Err(DeliveryError::Permanent(_))
        ));
        let ftp = Message {
            recipient: Recipient::Endpoint("ftp://x".into()),
            ..message()
        };
        assert!(matches!(
            request(&config, &ftp, 0),
            Err(DeliveryError::Permanent(_))
        ));
    }

    #[test]
    fn signs_timestamp_and_body_when_a_secret_is_set() {
        // The value a receiver computes (Python: hmac.new(b"whsec_test",
        // b'1800000000.{"a":1}', hashlib.sha256).hexdigest()).
        assert_eq!(
            signature("whsec_test", 1_800_000_000, br#"{"a":1}"#),
            "v1=7de5e6bbc99c65ef0ddccacd4308ba03a5a12eb8859a0db070c5ca731c4fdc19"
        );
        testing::clear();
        testing::set_settings([("url", URL), ("signing_secret", "whsec_test")]);
        testing::set_now(1_800_000_000);
        testing::mock_http(|_| Ok(Response::new(204)));
        <Webhook as NotificationChannel>::deliver(&message()).unwrap();
        let sent = testing::sent_requests();
        assert_eq!(
            sent[0].header_value("x-olivine-timestamp"),
            Some("1800000000")
        );
        assert_eq!(
            sent[0].header_value("x-olivine-signature"),
            Some(signature("whsec_test", 1_800_000_000, &sent[0].body).as_str())
        );
        assert_ne!(
            signature("whsec_test", 1_800_000_001, &sent[0].body),
            signature("whsec_test", 1_800_000_000, &sent[0].body),
            "the timestamp is signed"
        );
        testing::clear();
    }

    #[test]
    fn status_mapping() {
        assert_eq!(
            deliver_with(204, &[]).unwrap().provider_reference,
            "http-204"
        );
        assert_eq!(
            deliver_with(503, &[("Retry-After", "120")]),
            Err(DeliveryError::retryable_after(
                "webhook answered 503",
                Some(120)
            ))
        );
        assert_eq!(
            deliver_with(429, &[]),
            Err(DeliveryError::retryable_after("webhook answered 429", None))
        );
        assert!(matches!(
            deliver_with(404, &[]),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(matches!(
            deliver_with(301, &[]),
            Err(DeliveryError::Permanent(_))
        ));
        testing::clear();
    }

    #[test]
    fn transport_errors() {
        assert!(matches!(
            outcome(Err(HttpError::Timeout)),
            Err(DeliveryError::Retryable(_))
        ));
        assert!(matches!(
            outcome(Err(HttpError::Failed("reset".into()))),
            Err(DeliveryError::Retryable(_))
        ));
        assert!(matches!(
            outcome(Err(HttpError::Denied("no".into()))),
            Err(DeliveryError::Permanent(_))
        ));
    }

    #[test]
    fn settings_and_payload() {
        testing::clear();
        assert!(matches!(
            <Webhook as NotificationChannel>::deliver(&message()),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(testing::sent_requests().is_empty());
        assert!(Config::from_settings(&Settings::from_pairs([("url", "ftp://x")])).is_err());
        let c = Config::from_settings(&Settings::from_pairs([
            ("url", "http://h/x"),
            ("authorization", "Bearer t"),
        ]))
        .unwrap();
        assert_eq!(
            request(&c, &message(), 0)
                .unwrap()
                .header_value("authorization"),
            Some("Bearer t")
        );
        let mut m = message();
        m.data_json = "not json".into();
        let body: Value = serde_json::from_str(&payload(&m)).unwrap();
        assert_eq!(body["data"], "not json");
        m.data_json = String::new();
        m.link = None;
        let body: Value = serde_json::from_str(&payload(&m)).unwrap();
        assert_eq!(body["data"], Value::Null);
        assert_eq!(body["link"], Value::Null);
    }
}
