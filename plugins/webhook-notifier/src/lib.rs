//! Webhook notification channel: POSTs each notification as JSON to the `url` setting
//! through the host's HTTP import.
//!
//! Outcomes: 2xx is delivered (the receipt's provider reference is the response's
//! `x-request-id` header, else `http-<status>`); 5xx, 429, timeouts and transport failures
//! are retryable; other statuses (4xx, 3xx) and requests the host denies are permanent.

use olivine_sdk::http::{self, HttpError, Request, Response};
use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub url: String,
    pub authorization: Option<String>,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        let url = s.required("url")?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("setting `url` must be an http(s) URL, got `{url}`"));
        }
        let authorization = s
            .get("authorization")
            .map(str::trim)
            .filter(|a| !a.is_empty());
        Ok(Config {
            url,
            authorization: authorization.map(str::to_owned),
        })
    }
}

/// The JSON body: the notification's fields, with `data_json` embedded as JSON when it
/// parses (as a string otherwise, `null` when empty).
pub fn payload(n: &Notification) -> String {
    let data = if n.data_json.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&n.data_json).unwrap_or_else(|_| Value::String(n.data_json.clone()))
    };
    json!({
        "topic": n.topic,
        "recipient": n.recipient,
        "subject": n.subject,
        "body": n.body,
        "data": data,
    })
    .to_string()
}

pub fn request(config: &Config, n: &Notification) -> Request {
    let mut request = Request::post(config.url.clone())
        .header("x-olivine-topic", n.topic.clone())
        .header("idempotency-key", n.idempotency_key.clone())
        .header("user-agent", "olivine-webhook-notifier/0.1")
        .json(payload(n));
    if let Some(auth) = &config.authorization {
        request = request.header("authorization", auth.clone());
    }
    request
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
        Ok(response) if response.is_server_error() || response.status == 429 => Err(
            DeliveryError::Retryable(format!("webhook answered {}", response.status)),
        ),
        Ok(response) => Err(DeliveryError::Permanent(format!(
            "webhook answered {}: {}",
            response.status,
            snippet(&response.text())
        ))),
        Err(HttpError::Denied(why)) => Err(DeliveryError::Permanent(format!(
            "the host denied the request: {why}"
        ))),
        Err(HttpError::Timeout) => Err(DeliveryError::Retryable("webhook timed out".into())),
        Err(HttpError::Failed(why)) => Err(DeliveryError::Retryable(format!(
            "webhook unreachable: {why}"
        ))),
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
    fn deliver(notification: &Notification) -> Result<DeliveryReceipt, DeliveryError> {
        let config =
            Config::from_settings(&Settings::from_host()).map_err(DeliveryError::Permanent)?;
        outcome(http::send(&request(&config, notification)))
    }
}

olivine_sdk::export_notification_channel!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use olivine_sdk::testing;

    fn notification() -> Notification {
        Notification {
            topic: "order.confirmed".into(),
            idempotency_key: "order-1001-confirmed".into(),
            recipient: "https://hooks.example.com/olivine".into(),
            subject: "Order 1001 confirmed".into(),
            body: "Thanks!".into(),
            data_json: r#"{"order_id":"1001"}"#.into(),
        }
    }

    fn deliver_with(
        status: u16,
        headers: &[(&str, &str)],
    ) -> Result<DeliveryReceipt, DeliveryError> {
        testing::set_settings([("url", "https://hooks.example.com/olivine")]);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        testing::mock_http(move |_| {
            let mut r = Response::new(status);
            r.headers = headers.clone();
            Ok(r)
        });
        <Webhook as NotificationChannel>::deliver(&notification())
    }

    #[test]
    fn posts_json_and_reads_the_request_id() {
        let receipt = deliver_with(200, &[("X-Request-Id", "req-123")]).unwrap();
        assert_eq!(receipt.provider_reference, "req-123");
        let sent = testing::sent_requests();
        let last = sent.last().unwrap();
        assert_eq!(last.method, "POST");
        assert_eq!(last.url, "https://hooks.example.com/olivine");
        assert_eq!(last.header_value("content-type"), Some("application/json"));
        assert_eq!(
            last.header_value("idempotency-key"),
            Some("order-1001-confirmed")
        );
        let body: Value = serde_json::from_slice(&last.body).unwrap();
        assert_eq!(body["topic"], "order.confirmed");
        assert_eq!(body["data"]["order_id"], "1001");
        testing::clear();
    }

    #[test]
    fn status_mapping() {
        assert_eq!(
            deliver_with(204, &[]).unwrap().provider_reference,
            "http-204"
        );
        assert!(matches!(
            deliver_with(503, &[]),
            Err(DeliveryError::Retryable(_))
        ));
        assert!(matches!(
            deliver_with(429, &[]),
            Err(DeliveryError::Retryable(_))
        ));
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
            <Webhook as NotificationChannel>::deliver(&notification()),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(Config::from_settings(&Settings::from_pairs([("url", "ftp://x")])).is_err());
        let c = Config::from_settings(&Settings::from_pairs([
            ("url", "http://h/x"),
            ("authorization", "Bearer t"),
        ]))
        .unwrap();
        assert_eq!(
            request(&c, &notification()).header_value("authorization"),
            Some("Bearer t")
        );
        let mut n = notification();
        n.data_json = "not json".into();
        let body: Value = serde_json::from_str(&payload(&n)).unwrap();
        assert_eq!(body["data"], "not json");
        n.data_json = String::new();
        let body: Value = serde_json::from_str(&payload(&n)).unwrap();
        assert_eq!(body["data"], Value::Null);
    }
}
