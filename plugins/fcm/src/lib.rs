//! FCM notification channel: pushes a message to a device through Firebase Cloud
//! Messaging's HTTP v1 API (`POST {base_url}/v1/projects/{project_id}/messages:send`),
//! through the host's HTTP import.
//!
//! Authentication is a service account's: an RS256 JWT assertion (RSASSA-PKCS1-v1_5 with
//! SHA-256, deterministic) is exchanged at `token_url` for an OAuth access token
//! (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`), which is kept in the
//! host's cache for its lifetime less a minute and dropped when FCM answers 401.
//!
//! Outcomes: 200 is delivered (the receipt is FCM's message `name`); `UNREGISTERED`, and
//! `INVALID_ARGUMENT` about the token itself, are "recipient gone"; `QUOTA_EXCEEDED`,
//! `UNAVAILABLE`, `INTERNAL`, other 429 and 5xx, timeouts and transport failures are
//! retried (after `Retry-After` when given); 401 drops the access token and is retried;
//! anything else, a payload over 4 KiB, an expired message, a token endpoint refusing the
//! service account or a request the host denies is permanent.

use base64ct::{Base64UrlUnpadded, Encoding};
use olivine_sdk::http::{self, HttpError, Request, Response};
use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";
/// What the access token may do.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How long the assertion is valid (Google's maximum).
pub const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// A cached access token is dropped this long before it expires.
pub const TOKEN_MARGIN_SECS: u64 = 60;
/// FCM's limit on a message's payload (its `notification` and `data`).
pub const MAX_PAYLOAD_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub project_id: String,
    pub client_email: String,
    /// The service account's key as set (PEM; `\n` escapes allowed, as in its JSON file).
    pub private_key: String,
    pub token_url: String,
    /// Without a trailing `/`.
    pub base_url: String,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        let project_id = s.required("project_id")?;
        if !project_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b))
        {
            return Err(format!(
                "setting `project_id` must be a Firebase project id (lowercase letters, digits and hyphens), got `{project_id}`"
            ));
        }
        let client_email = s.required("client_email")?;
        if !client_email.contains('@') {
            return Err(format!(
                "setting `client_email` must be the service account's email, got `{client_email}`"
            ));
        }
        let private_key = s.required("private_key")?;
        Ok(Config {
            project_id,
            client_email,
            private_key,
            token_url: url_setting(s, "token_url", DEFAULT_TOKEN_URL)?,
            base_url: url_setting(s, "base_url", DEFAULT_BASE_URL)?
                .trim_end_matches('/')
                .to_owned(),
        })
    }

    /// Where the access token is cached: the account, and a fingerprint of its key and
    /// token URL, so changed credentials never reuse an old token.
    pub fn token_cache_key(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.private_key.trim().as_bytes());
        hasher.update([0]);
        hasher.update(self.token_url.as_bytes());
        let fingerprint = hasher.finalize();
        format!(
            "fcm-access-token:{}:{}",
            self.client_email,
            hex(&fingerprint[..8])
        )
    }

    pub fn send_url(&self) -> String {
        format!(
            "{}/v1/projects/{}/messages:send",
            self.base_url, self.project_id
        )
    }
}

fn url_setting(s: &Settings, key: &str, default: &str) -> Result<String, String> {
    let value = s.get(key).map(str::trim).filter(|v| !v.is_empty());
    let value = value.unwrap_or(default);
    if !(value.starts_with("https://") || value.starts_with("http://")) {
        return Err(format!(
            "setting `{key}` must be an http(s) URL, got `{value}`"
        ));
    }
    Ok(value.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    Base64UrlUnpadded::encode_string(bytes.as_ref())
}

/// The DER inside a PEM text (the SDK's, which forgives what pasting does to a key).
pub fn pem_der(pem: &str) -> Result<(String, Vec<u8>), String> {
    olivine_sdk::pem::decode(pem)
}

/// The service account's RSA key: PKCS#8 (`BEGIN PRIVATE KEY`, what Google issues) or
/// PKCS#1 (`BEGIN RSA PRIVATE KEY`).
pub fn signing_key(pem: &str) -> Result<SigningKey<Sha256>, String> {
    let bad = |why: String| format!("setting `private_key`: {why}");
    let (label, der) = pem_der(pem).map_err(|e| bad(e.to_owned()))?;
    let key = match label.as_str() {
        "PRIVATE KEY" => RsaPrivateKey::from_pkcs8_der(&der)
            .map_err(|e| bad(format!("not an RSA PKCS#8 key: {e}")))?,
        "RSA PRIVATE KEY" => {
            RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| bad(format!("not an RSA key: {e}")))?
        }
        other => {
            return Err(bad(format!(
                "a `{other}` is not the service account's private key (-----BEGIN PRIVATE KEY-----)"
            )));
        }
    };
    Ok(SigningKey::<Sha256>::new(key))
}

/// The signed JWT that asks `token_url` for an access token to FCM, issued at `now`.
pub fn assertion(config: &Config, now: u64) -> Result<String, String> {
    let key = signing_key(&config.private_key)?;
    let header = json!({"alg": "RS256", "typ": "JWT"}).to_string();
    let claims = json!({
        "iss": config.client_email,
        "scope": SCOPE,
        "aud": config.token_url,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    })
    .to_string();
    let signing_input = format!("{}.{}", b64url(header), b64url(claims));
    // PKCS#1 v1.5 is deterministic: no randomness needed.
    let signature = key.sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", b64url(signature.to_bytes())))
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The request that trades `assertion` for an access token.
pub fn token_request(config: &Config, assertion: &str) -> Request {
    Request::post(config.token_url.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form_urlencode(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ]))
}

/// The access token and its lifetime in seconds, or why there is none.
pub fn token_outcome(result: &Result<Response, HttpError>) -> Result<(String, u64), DeliveryError> {
    let response = match result {
        Ok(response) => response,
        Err(err) => return Err(DeliveryError::from_http_error("the token endpoint", err)),
    };
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    if response.is_success() {
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                DeliveryError::Permanent(format!(
                    "the token endpoint answered {} without an access_token",
                    response.status
                ))
            })?;
        let lifetime = body["expires_in"].as_u64().unwrap_or(3600);
        return Ok((token.to_owned(), lifetime));
    }
    let said = format!(
        "the token endpoint answered {}{}{}",
        response.status,
        body["error"]
            .as_str()
            .map(|e| format!(" {e}"))
            .unwrap_or_default(),
        body["error_description"]
            .as_str()
            .map(|d| format!(": {d}"))
            .unwrap_or_default()
    );
    Err(if response.status == 429 || response.is_server_error() {
        DeliveryError::retryable_response(said, response)
    } else {
        // invalid_grant (a bad signature, a deleted key, a clock far off), invalid_client.
        DeliveryError::Permanent(said)
    })
}

/// The cached access token, or a new one from `token_url` (then cached for its lifetime
/// less [`TOKEN_MARGIN_SECS`]).
pub fn access_token(config: &Config, now: u64) -> Result<String, DeliveryError> {
    let key = config.token_cache_key();
    if let Some(token) = cache::get_string(&key) {
        return Ok(token);
    }
    let assertion = assertion(config, now).map_err(DeliveryError::Permanent)?;
    let (token, lifetime) = token_outcome(&http::send(&token_request(config, &assertion)))?;
    let keep = lifetime.saturating_sub(TOKEN_MARGIN_SECS);
    if keep > 0 {
        cache::set(&key, &token, u32::try_from(keep).unwrap_or(u32::MAX));
    }
    Ok(token)
}

/// The device a message is for, if FCM can deliver to it.
pub fn device_of(message: &Message) -> Result<&Device, DeliveryError> {
    match &message.recipient {
        Recipient::Device(device) if device.platform == PushPlatform::Fcm => {
            if device.token.trim().is_empty() {
                Err(DeliveryError::RecipientGone(
                    "the device has an empty FCM token".into(),
                ))
            } else {
                Ok(device)
            }
        }
        Recipient::Device(_) => Err(DeliveryError::Permanent(
            "the device is registered with APNs, not FCM".into(),
        )),
        Recipient::Email(_) | Recipient::Endpoint(_) => Err(DeliveryError::Permanent(
            "fcm delivers to devices, not to email addresses or endpoints".into(),
        )),
    }
}

/// Keys FCM refuses in `data`.
fn reserved_data_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    matches!(
        lower.as_str(),
        "from" | "message_type" | "notification" | "collapse_key"
    ) || lower.starts_with("google")
        || lower.starts_with("gcm")
}

/// FCM's `data`: strings only. The message's `data-json` top-level scalars as strings
/// (objects, arrays, nulls and keys FCM reserves are left out) and the link as `link`.
pub fn data(message: &Message) -> Map<String, Value> {
    let mut out = Map::new();
    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&message.data_json) {
        for (key, value) in fields {
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null | Value::Array(_) | Value::Object(_) => continue,
            };
            if !key.is_empty() && !reserved_data_key(&key) {
                out.insert(key, Value::String(text));
            }
        }
    }
    if let Some(link) = &message.link {
        out.insert("link".into(), Value::String(link.clone()));
    }
    out
}

/// The `messages:send` body for `message` at `now`. Refuses (permanently, sending
/// nothing) a payload over [`MAX_PAYLOAD_BYTES`] or a message that already expired.
pub fn message_body(message: &Message, now: u64) -> Result<String, DeliveryError> {
    let device = device_of(message)?;
    let mut notification = Map::new();
    if !message.title.is_empty() {
        notification.insert("title".into(), Value::String(message.title.clone()));
    }
    notification.insert("body".into(), Value::String(message.text.clone()));
    let notification = Value::Object(notification);
    let data = Value::Object(data(message));
    let payload = notification.to_string().len() + data.to_string().len();
    if payload > MAX_PAYLOAD_BYTES {
        return Err(DeliveryError::Permanent(format!(
            "the payload (notification and data) is {payload} bytes; FCM takes at most {MAX_PAYLOAD_BYTES}"
        )));
    }
    let high = message.priority == Priority::High;
    let mut android = Map::new();
    android.insert(
        "priority".into(),
        json!(if high { "HIGH" } else { "NORMAL" }),
    );
    // The same options for iOS apps that receive through FCM (forwarded to APNs).
    let mut apns_headers = Map::new();
    apns_headers.insert("apns-priority".into(), json!(if high { "10" } else { "5" }));
    if let Some(collapse) = &message.collapse_key {
        android.insert("collapse_key".into(), json!(collapse));
        if collapse.len() <= 64 {
            apns_headers.insert("apns-collapse-id".into(), json!(collapse));
        }
    }
    if let Some(at) = message.expires_at {
        if at <= now {
            return Err(DeliveryError::Permanent(format!(
                "the message expired at {at}, before it could be delivered"
            )));
        }
        android.insert("ttl".into(), json!(format!("{}s", at - now)));
        apns_headers.insert("apns-expiration".into(), json!(at.to_string()));
    }
    let mut fcm_message = Map::new();
    fcm_message.insert("token".into(), json!(device.token));
    fcm_message.insert("notification".into(), notification);
    if data.as_object().is_some_and(|d| !d.is_empty()) {
        fcm_message.insert("data".into(), data);
    }
    fcm_message.insert("android".into(), Value::Object(android));
    fcm_message.insert("apns".into(), json!({"headers": apns_headers}));
    Ok(json!({"message": fcm_message}).to_string())
}

/// The `messages:send` request with `access_token`.
pub fn send_request(config: &Config, access_token: &str, body: String) -> Request {
    Request::post(config.send_url())
        .header("authorization", format!("Bearer {access_token}"))
        .header("accept", "application/json")
        .json(body)
}

/// FCM's error: the `error.details[].errorCode` (else `error.status`), and whether a
/// field violation names the registration token.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FcmError {
    pub code: Option<String>,
    pub message: Option<String>,
    pub bad_token: bool,
}

pub fn fcm_error(response: &Response) -> FcmError {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let error = &body["error"];
    let details = error["details"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let code = details
        .iter()
        .find_map(|d| d["errorCode"].as_str().filter(|c| !c.is_empty()))
        .or_else(|| error["status"].as_str().filter(|s| !s.is_empty()))
        .map(str::to_owned);
    let bad_token = details.iter().any(|d| {
        d["fieldViolations"]
            .as_array()
            .is_some_and(|v| v.iter().any(|f| f["field"] == "message.token"))
    });
    FcmError {
        code,
        message: error["message"].as_str().map(str::to_owned),
        bad_token,
    }
}

/// Maps FCM's answer to a delivery outcome.
pub fn outcome(result: &Result<Response, HttpError>) -> Result<DeliveryReceipt, DeliveryError> {
    let response = match result {
        Ok(response) => response,
        Err(err) => return Err(DeliveryError::from_http_error("FCM", err)),
    };
    if response.is_success() {
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        return Ok(DeliveryReceipt {
            provider_reference: body["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("http-{}", response.status)),
        });
    }
    let error = fcm_error(response);
    let said = format!(
        "FCM answered {}{}{}",
        response.status,
        error
            .code
            .as_deref()
            .map(|c| format!(" {c}"))
            .unwrap_or_default(),
        error
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default()
    );
    if response.status == 401 {
        return Err(DeliveryError::retryable(format!(
            "{said}; a new access token is fetched next time"
        )));
    }
    Err(match error.code.as_deref() {
        Some("UNREGISTERED") => DeliveryError::RecipientGone(said),
        Some("INVALID_ARGUMENT") if error.bad_token => DeliveryError::RecipientGone(said),
        Some("QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL") => {
            DeliveryError::retryable_response(said, response)
        }
        Some("INVALID_ARGUMENT" | "SENDER_ID_MISMATCH" | "THIRD_PARTY_AUTH_ERROR") => {
            DeliveryError::Permanent(said)
        }
        _ if response.status == 429 || response.is_server_error() => {
            DeliveryError::retryable_response(said, response)
        }
        _ => DeliveryError::Permanent(said),
    })
}

pub struct Fcm;

impl NotificationChannel for Fcm {
    fn deliver(message: &Message) -> Result<DeliveryReceipt, DeliveryError> {
        let config =
            Config::from_settings(&Settings::from_host()).map_err(DeliveryError::Permanent)?;
        let now = clock::now_unix_seconds();
        let body = message_body(message, now)?;
        let token = access_token(&config, now)?;
        let result = http::send(&send_request(&config, &token, body));
        if matches!(&result, Ok(response) if response.status == 401) {
            cache::delete(&config.token_cache_key());
        }
        outcome(&result)
    }
}

olivine_sdk::export_notification_channel!(Fcm);

#[cfg(test)]
mod tests {
    use super::*;
    use olivine_sdk::testing;
    use rsa::RsaPublicKey;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;

    /// Test-only key pair (generated for these tests; never used with Google).
    const TEST_KEY: &str = include_str!("testdata/test-only-service-account-key.pem");
    const TEST_PUBLIC_KEY: &str = include_str!("testdata/test-only-service-account-key.pub.pem");
    const NOW: u64 = 1_800_000_000;
    const SEND_URL: &str = "https://fcm.googleapis.com/v1/projects/shop-app-1234/messages:send";

    fn settings() -> Vec<(&'static str, String)> {
        vec![
            ("project_id", "shop-app-1234".to_owned()),
            (
                "client_email",
                "olivine@shop-app-1234.iam.gserviceaccount.com".to_owned(),
            ),
            ("private_key", TEST_KEY.to_owned()),
        ]
    }

    fn config() -> Config {
        Config::from_settings(&Settings::from_pairs(settings())).unwrap()
    }

    fn message() -> Message {
        Message {
            title: "Your order shipped".into(),
            text: "Order 1001 is on its way.".into(),
            link: Some("https://shop.example/orders/1001".into()),
            data_json: r#"{"order_number":"1001","items":3,"gift":true,"lines":[1],"note":null,"from":"x","google.x":"y"}"#.into(),
            ..Message::new(
                "order.shipped",
                "notif-77:fcm:device-9",
                Recipient::Device(Device {
                    platform: PushPlatform::Fcm,
                    token: "fcm-token-abc:APA91b".into(),
                    app_id: "com.shop.app".into(),
                }),
            )
        }
    }

    /// Answers the token endpoint and FCM; FCM's answer is `send`.
    fn mock(send: Response) {
        let mut tokens = 0;
        testing::mock_http(move |request| {
            if request.url == DEFAULT_TOKEN_URL {
                tokens += 1;
                Ok(Response::new(200).with_body(format!(
                    r#"{{"access_token":"ya29.token-{tokens}","expires_in":3599,"token_type":"Bearer"}}"#
                )))
            } else {
                Ok(send.clone())
            }
        });
    }

    fn deliver_with(send: Response) -> Result<DeliveryReceipt, DeliveryError> {
        testing::set_settings(settings());
        testing::set_now(NOW);
        mock(send);
        <Fcm as NotificationChannel>::deliver(&message())
    }

    fn json_part(part: &str) -> Value {
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(part).unwrap()).unwrap()
    }

    fn form_value<'a>(body: &'a str, name: &str) -> Option<&'a str> {
        body.split('&')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
    }

    #[test]
    fn assertion_is_an_rs256_jwt_that_the_public_key_verifies() {
        let jwt = assertion(&config(), NOW).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(json_part(parts[0]), json!({"alg": "RS256", "typ": "JWT"}));
        assert_eq!(
            json_part(parts[1]),
            json!({
                "iss": "olivine@shop-app-1234.iam.gserviceaccount.com",
                "scope": "https://www.googleapis.com/auth/firebase.messaging",
                "aud": "https://oauth2.googleapis.com/token",
                "iat": NOW,
                "exp": NOW + 3600,
            })
        );
        let public = VerifyingKey::<Sha256>::new(
            RsaPublicKey::from_public_key_pem(TEST_PUBLIC_KEY).unwrap(),
        );
        let signature =
            Signature::try_from(Base64UrlUnpadded::decode_vec(parts[2]).unwrap().as_slice())
                .unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &signature).unwrap();
        assert!(public.verify(b"other", &signature).is_err());
        assert_eq!(assertion(&config(), NOW).unwrap(), jwt, "deterministic");
    }

    #[test]
    fn keys_from_the_service_account_json_work() {
        // The JSON file has the key with `\n` escapes; merchants paste it as it is.
        let escaped = TEST_KEY.trim().replace('\n', "\\n");
        assert!(signing_key(&escaped).is_ok());
        let err = signing_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
            .err()
            .unwrap();
        assert!(err.contains("private_key"), "{err}");
        assert!(signing_key(TEST_PUBLIC_KEY).is_err());
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_urlencode(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", "a.b-c_d"),
            ]),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b-c_d"
        );
        assert_eq!(
            form_urlencode(&[("q", "a b&c=d/é")]),
            "q=a+b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn builds_the_message() {
        let body: Value = serde_json::from_str(&message_body(&message(), NOW).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"message": {
                "token": "fcm-token-abc:APA91b",
                "notification": {"title": "Your order shipped", "body": "Order 1001 is on its way."},
                "data": {"order_number": "1001", "items": "3", "gift": "true",
                         "link": "https://shop.example/orders/1001"},
                "android": {"priority": "NORMAL"},
                "apns": {"headers": {"apns-priority": "5"}},
            }})
        );
        let urgent = Message {
            priority: Priority::High,
            collapse_key: Some("order-1001".into()),
            expires_at: Some(NOW + 600),
            link: None,
            data_json: "not json".into(),
            ..message()
        };
        let body: Value = serde_json::from_str(&message_body(&urgent, NOW).unwrap()).unwrap();
        assert_eq!(
            body["message"]["android"],
            json!({"priority": "HIGH", "collapse_key": "order-1001", "ttl": "600s"})
        );
        assert_eq!(
            body["message"]["apns"]["headers"],
            json!({"apns-priority": "10", "apns-collapse-id": "order-1001",
                   "apns-expiration": (NOW + 600).to_string()})
        );
        assert!(body["message"].get("data").is_none());
    }

    #[test]
    fn refuses_what_fcm_would_refuse_without_sending() {
        let big = Message {
            text: "x".repeat(MAX_PAYLOAD_BYTES),
            ..message()
        };
        let expired = Message {
            expires_at: Some(NOW - 1),
            ..message()
        };
        let apns_device = Message {
            recipient: Recipient::Device(Device {
                platform: PushPlatform::Apns,
                token: "abcd".into(),
                app_id: "com.shop.app".into(),
            }),
            ..message()
        };
        let endpoint = Message {
            recipient: Recipient::Endpoint("https://h/x".into()),
            ..message()
        };
        for m in [big, expired, apns_device, endpoint] {
            testing::clear();
            testing::set_settings(settings());
            testing::set_now(NOW);
            mock(Response::new(200));
            let result = <Fcm as NotificationChannel>::deliver(&m);
            assert!(
                matches!(result, Err(DeliveryError::Permanent(_))),
                "{result:?}"
            );
            assert!(testing::sent_requests().is_empty());
        }
        testing::clear();
    }

    #[test]
    fn fetches_caches_and_uses_the_access_token() {
        testing::clear();
        let receipt = deliver_with(Response::new(200).with_body(
            r#"{"name":"projects/shop-app-1234/messages/0:1500415314455276%31bd1c9631bd1c96"}"#,
        ))
        .unwrap();
        assert_eq!(
            receipt.provider_reference,
            "projects/shop-app-1234/messages/0:1500415314455276%31bd1c9631bd1c96"
        );
        let sent = testing::sent_requests();
        assert_eq!(sent.len(), 2);
        let token = &sent[0];
        assert_eq!(token.url, DEFAULT_TOKEN_URL);
        assert_eq!(
            token.header_value("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let form = String::from_utf8(token.body.clone()).unwrap();
        assert_eq!(
            form_value(&form, "grant_type"),
            Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
        );
        let jwt = form_value(&form, "assertion").unwrap();
        assert_eq!(jwt, assertion(&config(), NOW).unwrap());
        let send = &sent[1];
        assert_eq!(send.url, SEND_URL);
        assert_eq!(
            send.header_value("authorization"),
            Some("Bearer ya29.token-1")
        );
        assert_eq!(send.header_value("content-type"), Some("application/json"));

        // Kept for expires_in - 60 seconds: reused within, fetched again after.
        testing::set_now(NOW + 3599 - 61);
        <Fcm as NotificationChannel>::deliver(&message()).unwrap();
        assert_eq!(testing::sent_requests().len(), 3, "no new token request");
        testing::set_now(NOW + 3599 - 60);
        <Fcm as NotificationChannel>::deliver(&message()).unwrap();
        let sent = testing::sent_requests();
        assert_eq!(sent.len(), 5);
        assert_eq!(sent[3].url, DEFAULT_TOKEN_URL);
        assert_eq!(
            sent[4].header_value("authorization"),
            Some("Bearer ya29.token-2")
        );
        testing::clear();
    }

    #[test]
    fn a_401_drops_the_access_token() {
        testing::clear();
        let result = deliver_with(Response::new(401).with_body(
            r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#,
        ));
        assert!(
            matches!(result, Err(DeliveryError::Retryable(_))),
            "{result:?}"
        );
        assert!(testing::cache_keys().is_empty());
        testing::clear();
    }

    #[test]
    fn token_endpoint_failures() {
        let refused = token_outcome(&Ok(Response::new(400).with_body(
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        )));
        assert_eq!(
            refused,
            Err(DeliveryError::Permanent(
                "the token endpoint answered 400 invalid_grant: Invalid JWT Signature.".into()
            ))
        );
        assert!(matches!(
            token_outcome(&Ok(Response::new(503).with_header("retry-after", "5"))),
            Err(DeliveryError::Retryable(Retry {
                after_seconds: Some(5),
                ..
            }))
        ));
        assert!(matches!(
            token_outcome(&Ok(Response::new(200).with_body("{}"))),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(matches!(
            token_outcome(&Err(HttpError::Timeout)),
            Err(DeliveryError::Retryable(_))
        ));
        assert_eq!(
            token_outcome(&Ok(Response::new(200).with_body(r#"{"access_token":"t"}"#))),
            Ok(("t".to_owned(), 3600))
        );
        // A refused token request sends no message and caches nothing.
        testing::clear();
        testing::set_settings(settings());
        testing::mock_http(|_| Ok(Response::new(401).with_body(r#"{"error":"invalid_client"}"#)));
        assert!(matches!(
            <Fcm as NotificationChannel>::deliver(&message()),
            Err(DeliveryError::Permanent(_))
        ));
        assert_eq!(testing::sent_requests().len(), 1);
        assert!(testing::cache_keys().is_empty());
        testing::clear();
    }

    fn fcm_answer(status: u16, code: &str) -> Response {
        Response::new(status).with_body(format!(
            r#"{{"error":{{"code":{status},"message":"m","status":"S",
                "details":[{{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"{code}"}}]}}}}"#
        ))
    }

    #[test]
    fn error_mapping() {
        let gone = outcome(&Ok(fcm_answer(404, "UNREGISTERED")));
        assert_eq!(
            gone,
            Err(DeliveryError::RecipientGone(
                "FCM answered 404 UNREGISTERED: m".into()
            ))
        );
        let bad_token = Response::new(400).with_body(
            r#"{"error":{"code":400,"message":"The registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT",
               "details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"},
                          {"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"bad"}]}]}}"#,
        );
        assert!(matches!(
            outcome(&Ok(bad_token)),
            Err(DeliveryError::RecipientGone(_))
        ));
        for permanent in [
            fcm_answer(400, "INVALID_ARGUMENT"),
            fcm_answer(403, "SENDER_ID_MISMATCH"),
            Response::new(403).with_body(
                r#"{"error":{"code":403,"status":"PERMISSION_DENIED","details":[{"errorCode":"THIRD_PARTY_AUTH_ERROR"}]}}"#,
            ),
            Response::new(403).with_body(r#"{"error":{"status":"PERMISSION_DENIED"}}"#),
            Response::new(404).with_body(r#"{"error":{"status":"NOT_FOUND"}}"#),
            Response::new(404).with_body(
                r#"{"error":{"code":404,"status":"NOT_FOUND","details":[{"errorCode":""}]}}"#,
            ),
            Response::new(400),
        ] {
            let result = outcome(&Ok(permanent.clone()));
            assert!(
                matches!(result, Err(DeliveryError::Permanent(_))),
                "{permanent:?}: {result:?}"
            );
        }
        let quota = outcome(&Ok(
            fcm_answer(429, "QUOTA_EXCEEDED").with_header("Retry-After", "60")
        ));
        assert!(matches!(
            quota,
            Err(DeliveryError::Retryable(Retry {
                after_seconds: Some(60),
                ..
            }))
        ));
        for retry in [
            fcm_answer(503, "UNAVAILABLE"),
            fcm_answer(500, "INTERNAL"),
            Response::new(502),
            Response::new(429),
        ] {
            assert!(matches!(
                outcome(&Ok(retry)),
                Err(DeliveryError::Retryable(_))
            ));
        }
        assert!(matches!(
            outcome(&Err(HttpError::Failed("reset".into()))),
            Err(DeliveryError::Retryable(_))
        ));
        assert!(matches!(
            outcome(&Err(HttpError::Denied("no".into()))),
            Err(DeliveryError::Permanent(_))
        ));
    }

    #[test]
    fn settings_are_checked() {
        let c = config();
        assert_eq!(c.token_url, DEFAULT_TOKEN_URL);
        assert_eq!(c.send_url(), SEND_URL);
        let mut local = settings();
        local.push(("base_url", "http://127.0.0.1:9099/".into()));
        local.push(("token_url", "http://127.0.0.1:9099/token".into()));
        let c = Config::from_settings(&Settings::from_pairs(local)).unwrap();
        assert_eq!(
            c.send_url(),
            "http://127.0.0.1:9099/v1/projects/shop-app-1234/messages:send"
        );
        let mut bad = settings();
        bad[0].1 = "../other".into();
        assert!(
            Config::from_settings(&Settings::from_pairs(bad))
                .unwrap_err()
                .contains("project_id")
        );
        testing::clear();
        assert!(matches!(
            <Fcm as NotificationChannel>::deliver(&message()),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(testing::sent_requests().is_empty());
    }
}
