//! APNs notification channel: pushes a message to an Apple device through Apple's
//! provider API (`POST {base_url}/3/device/<token>`, HTTP/2) with token-based
//! authentication, through the host's HTTP import.
//!
//! The provider token is an ES256 JWT (`{"alg":"ES256","kid":key_id}`,
//! `{"iss":team_id,"iat":now}`) signed with the merchant's `.p8` key (P-256, RFC 6979
//! deterministic nonces). Apple wants one token reused for 20 to 60 minutes, so it is
//! kept in the host's cache for 40 minutes and made again when Apple says it expired.
//!
//! Outcomes: 200 is delivered (the receipt is Apple's `apns-id`); 410 is "recipient
//! gone" (the kernel forgets the device); 403 `ExpiredProviderToken` drops the cached
//! token and is retried, and so does `InvalidProviderToken` for a token that came from the
//! cache (for one signed just now, the key itself is wrong: permanent); 429, 5xx,
//! timeouts and transport failures are retried (after `Retry-After` when given);
//! anything else (400 `BadDeviceToken` too: it is also what a token of the other APNs
//! environment gets), a payload over 4 KiB, a collapse id over 64 bytes, a message that
//! already expired or a request the host denies is permanent.

use base64ct::{Base64UrlUnpadded, Encoding};
use olivine_sdk::http::{self, HttpError, Request, Response};
use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Apple's production endpoint.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// Apple's development (sandbox) endpoint, for apps signed for development.
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// How long a provider token is reused (Apple: no sooner than 20, no later than 60).
pub const TOKEN_TTL_SECS: u32 = 40 * 60;
/// APNs' limit on a notification's payload.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// APNs' limit on `apns-collapse-id`.
pub const MAX_COLLAPSE_ID_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Without a trailing `/`.
    pub base_url: String,
    pub team_id: String,
    pub key_id: String,
    /// The `.p8` key as set (PEM; `\n` escapes allowed).
    pub private_key: String,
    pub default_topic: Option<String>,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        let base_url = s.get_or("base_url", PRODUCTION_URL).trim().to_owned();
        let base_url = if base_url.is_empty() {
            PRODUCTION_URL.to_owned()
        } else {
            base_url
        };
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(format!(
                "setting `base_url` must be an http(s) URL, got `{base_url}`"
            ));
        }
        let team_id = apple_id(s, "team_id")?;
        let key_id = apple_id(s, "key_id")?;
        let private_key = s.required("private_key")?;
        let default_topic = s
            .get("default_topic")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(Config {
            base_url: base_url.trim_end_matches('/').to_owned(),
            team_id,
            key_id,
            private_key,
            default_topic,
        })
    }

    /// Where the provider token is cached: the team, the key id and a fingerprint of
    /// the key, so a replaced key never reuses the old key's token.
    pub fn token_cache_key(&self) -> String {
        let fingerprint = Sha256::digest(self.private_key.trim().as_bytes());
        format!(
            "apns-provider-token:{}:{}:{}",
            self.team_id,
            self.key_id,
            hex(&fingerprint[..8])
        )
    }
}

/// A Team ID or Key ID: ten letters and digits, as Apple's developer account shows them.
fn apple_id(s: &Settings, key: &str) -> Result<String, String> {
    let value = s.required(key)?;
    if value.len() != 10 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "setting `{key}` must be Apple's 10-character identifier, got `{value}`"
        ));
    }
    Ok(value)
}

/// The DER inside a PEM text (the SDK's, which forgives what pasting does to a key).
pub fn pem_der(pem: &str) -> Result<(String, Vec<u8>), String> {
    olivine_sdk::pem::decode(pem)
}

/// The P-256 key of an APNs `.p8` file (PKCS#8, `BEGIN PRIVATE KEY`), or a SEC1 `BEGIN EC
/// PRIVATE KEY`.
pub fn signing_key(pem: &str) -> Result<SigningKey, String> {
    let bad = |why: String| format!("setting `private_key`: {why}");
    let (label, der) = pem_der(pem).map_err(|e| bad(e.to_owned()))?;
    match label.as_str() {
        "PRIVATE KEY" => SigningKey::from_pkcs8_der(&der)
            .map_err(|e| bad(format!("not a P-256 PKCS#8 key (the .p8 file): {e}"))),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
            .map(SigningKey::from)
            .map_err(|e| bad(format!("not a P-256 key: {e}"))),
        other => Err(bad(format!(
            "a `{other}` is not the .p8 key (-----BEGIN PRIVATE KEY-----)"
        ))),
    }
}

fn b64url(bytes: impl AsRef<[u8]>) -> String {
    Base64UrlUnpadded::encode_string(bytes.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh provider token: an ES256 JWT issued by the team at `now`.
pub fn provider_token(config: &Config, now: u64) -> Result<String, String> {
    let key = signing_key(&config.private_key)?;
    let header = json!({"alg": "ES256", "kid": config.key_id}).to_string();
    let claims = json!({"iss": config.team_id, "iat": now}).to_string();
    let signing_input = format!("{}.{}", b64url(header), b64url(claims));
    // ECDSA over SHA-256 with an RFC 6979 nonce: the same input signs the same way.
    let signature: Signature = key.sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", b64url(signature.to_bytes())))
}

/// A provider token and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderToken {
    pub jwt: String,
    /// Signed for this call (not taken from the cache).
    pub fresh: bool,
}

/// The cached provider token, or a fresh one (then cached for [`TOKEN_TTL_SECS`]).
pub fn cached_provider_token(config: &Config, now: u64) -> Result<ProviderToken, String> {
    let key = config.token_cache_key();
    if let Some(jwt) = olivine_sdk::cache::get_string(&key) {
        return Ok(ProviderToken { jwt, fresh: false });
    }
    let jwt = provider_token(config, now)?;
    olivine_sdk::cache::set(&key, &jwt, TOKEN_TTL_SECS);
    Ok(ProviderToken { jwt, fresh: true })
}

/// A UUID (version 8, from SHA-256) of the idempotency key: the same `apns-id` on every
/// retry of one message, so Apple's answers and the kernel's log line up.
pub fn apns_id(idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    format!(
        "{}-{}-{}-{}-{}",
        hex(&b[..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..])
    )
}

/// The device a message is for, if APNs can deliver to it.
pub fn device_of(message: &Message) -> Result<&Device, DeliveryError> {
    let device = match &message.recipient {
        Recipient::Device(device) => device,
        Recipient::Email(_) | Recipient::Endpoint(_) => {
            return Err(DeliveryError::Permanent(
                "apns delivers to devices, not to email addresses or endpoints".into(),
            ));
        }
    };
    if device.platform != PushPlatform::Apns {
        return Err(DeliveryError::Permanent(
            "the device is registered with FCM, not APNs".into(),
        ));
    }
    // APNs device tokens are hex; anything else can never be delivered to (and must not
    // reach the URL's path).
    if device.token.is_empty() || !device.token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DeliveryError::RecipientGone(
            "not an APNs device token (expected hex digits)".into(),
        ));
    }
    Ok(device)
}

/// The JSON payload: `aps.alert` with the title and body, the default sound, and the
/// link and data beside `aps` for the app (`data` is the message's `data-json`, embedded
/// as JSON when it parses, as a string otherwise, left out when empty).
pub fn payload(message: &Message) -> String {
    let mut alert = Map::new();
    if !message.title.is_empty() {
        alert.insert("title".into(), Value::String(message.title.clone()));
    }
    alert.insert("body".into(), Value::String(message.text.clone()));
    let mut root = Map::new();
    root.insert(
        "aps".into(),
        json!({"alert": Value::Object(alert), "sound": "default"}),
    );
    if let Some(link) = &message.link {
        root.insert("link".into(), Value::String(link.clone()));
    }
    let data = message.data_json.trim();
    if !data.is_empty() {
        let value = serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned()));
        root.insert("data".into(), value);
    }
    Value::Object(root).to_string()
}

/// The request for `message` at `now`, without its `authorization` header. Refuses
/// (permanently, sending nothing) what APNs would refuse or what is too late.
pub fn request(config: &Config, message: &Message, now: u64) -> Result<Request, DeliveryError> {
    let device = device_of(message)?;
    let topic = Some(device.app_id.trim())
        .filter(|t| !t.is_empty())
        .or(config.default_topic.as_deref())
        .ok_or_else(|| {
            DeliveryError::Permanent(
                "no APNs topic: the device has no app id and `default_topic` is not set".into(),
            )
        })?;
    let expiration = match message.expires_at {
        Some(at) if at <= now => {
            return Err(DeliveryError::Permanent(format!(
                "the message expired at {at}, before it could be delivered"
            )));
        }
        Some(at) => at,
        // 0: APNs tries once and does not store the notification.
        None => 0,
    };
    let body = payload(message);
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(DeliveryError::Permanent(format!(
            "the payload is {} bytes; APNs takes at most {MAX_PAYLOAD_BYTES}",
            body.len()
        )));
    }
    let priority = match message.priority {
        Priority::High => "10",
        Priority::Normal => "5",
    };
    let mut request = Request::post(format!("{}/3/device/{}", config.base_url, device.token))
        .header("apns-topic", topic)
        .header("apns-push-type", "alert")
        .header("apns-priority", priority)
        .header("apns-expiration", expiration.to_string())
        .header("apns-id", apns_id(&message.idempotency_key));
    if let Some(collapse) = &message.collapse_key {
        if collapse.len() > MAX_COLLAPSE_ID_BYTES {
            return Err(DeliveryError::Permanent(format!(
                "the collapse key is {} bytes; APNs takes at most {MAX_COLLAPSE_ID_BYTES}",
                collapse.len()
            )));
        }
        request = request.header("apns-collapse-id", collapse.clone());
    }
    Ok(request.json(body))
}

/// Apple's `reason` in an error response's JSON body.
pub fn reason(response: &Response) -> Option<String> {
    let body: Value = serde_json::from_slice(&response.body).ok()?;
    body.get("reason")?.as_str().map(str::to_owned)
}

/// Whether Apple refused the provider token itself (then it is dropped from the cache).
pub fn provider_token_refused(response: &Response) -> bool {
    response.status == 403
        && matches!(
            reason(response).as_deref(),
            Some("ExpiredProviderToken" | "InvalidProviderToken")
        )
}

/// Maps the host's answer to a delivery outcome; `apns_id` is the id that was sent, the
/// receipt when Apple's answer has none, and `fresh_token` whether the provider token was
/// signed for this call.
pub fn outcome(
    result: &Result<Response, HttpError>,
    apns_id: &str,
    fresh_token: bool,
) -> Result<DeliveryReceipt, DeliveryError> {
    let response = match result {
        Ok(response) => response,
        Err(err) => return Err(DeliveryError::from_http_error("APNs", err)),
    };
    if response.status == 200 {
        return Ok(DeliveryReceipt {
            provider_reference: response
                .header("apns-id")
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .unwrap_or(apns_id)
                .to_owned(),
        });
    }
    let reason = reason(response);
    let said = format!(
        "APNs answered {}{}",
        response.status,
        reason
            .as_deref()
            .map(|r| format!(" {r}"))
            .unwrap_or_default()
    );
    Err(match (response.status, reason.as_deref()) {
        // Unregistered (the app is gone from the device) or ExpiredToken.
        (410, _) => DeliveryError::RecipientGone(said),
        // The connection sat idle too long on Apple's side: nothing wrong with the push.
        (400, Some("IdleTimeout")) => DeliveryError::retryable(said),
        (403, Some("InvalidProviderToken")) if fresh_token => DeliveryError::Permanent(format!(
            "{said}: Apple does not accept tokens of this key (check `team_id`, `key_id` and `private_key`, and that the key has APNs enabled)"
        )),
        (403, Some("ExpiredProviderToken" | "InvalidProviderToken")) => {
            DeliveryError::retryable(format!("{said}; a new provider token is made next time"))
        }
        (429, _) | (500..=599, _) => DeliveryError::retryable_response(said, response),
        _ => DeliveryError::Permanent(said),
    })
}

pub struct Apns;

impl NotificationChannel for Apns {
    fn deliver(message: &Message) -> Result<DeliveryReceipt, DeliveryError> {
        let config =
            Config::from_settings(&Settings::from_host()).map_err(DeliveryError::Permanent)?;
        let now = clock::now_unix_seconds();
        let request = request(&config, message, now)?;
        let token = cached_provider_token(&config, now).map_err(DeliveryError::Permanent)?;
        let result = http::send(&request.header("authorization", format!("bearer {}", token.jwt)));
        if let Ok(response) = &result
            && provider_token_refused(response)
        {
            cache::delete(&config.token_cache_key());
        }
        outcome(&result, &apns_id(&message.idempotency_key), token.fresh)
    }
}

olivine_sdk::export_notification_channel!(Apns);

#[cfg(test)]
mod tests {
    use super::*;
    use olivine_sdk::testing;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;

    /// Test-only key pair (generated for these tests; never used with Apple).
    const TEST_KEY: &str = include_str!("testdata/test-only-key.p8");
    const TEST_PUBLIC_KEY: &str = include_str!("testdata/test-only-key.pub.pem");
    const NOW: u64 = 1_800_000_000;
    const TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";

    fn settings() -> Vec<(&'static str, String)> {
        vec![
            ("base_url", SANDBOX_URL.to_owned()),
            ("team_id", "TEAM123456".to_owned()),
            ("key_id", "KEY1234567".to_owned()),
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
            link: Some("shop://orders/1001".into()),
            priority: Priority::High,
            data_json: r#"{"order_number":"1001","tracking":"1Z999"}"#.into(),
            ..Message::new(
                "order.shipped",
                "notif-77:apns:device-3",
                Recipient::Device(Device {
                    platform: PushPlatform::Apns,
                    token: TOKEN.into(),
                    app_id: "com.shop.app".into(),
                }),
            )
        }
    }

    fn deliver_with(
        handler: impl FnMut(&Request) -> Result<Response, HttpError> + 'static,
    ) -> Result<DeliveryReceipt, DeliveryError> {
        testing::set_settings(settings());
        testing::set_now(NOW);
        testing::mock_http(handler);
        <Apns as NotificationChannel>::deliver(&message())
    }

    fn json_part(part: &str) -> Value {
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(part).unwrap()).unwrap()
    }

    #[test]
    fn provider_token_is_an_es256_jwt_that_the_public_key_verifies() {
        let token = provider_token(&config(), NOW).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            json_part(parts[0]),
            json!({"alg": "ES256", "kid": "KEY1234567"})
        );
        assert_eq!(
            json_part(parts[1]),
            json!({"iss": "TEAM123456", "iat": NOW})
        );
        let signature =
            Signature::from_slice(&Base64UrlUnpadded::decode_vec(parts[2]).unwrap()).unwrap();
        let public = VerifyingKey::from_public_key_pem(TEST_PUBLIC_KEY).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &signature).unwrap();
        assert!(
            public.verify(b"something else", &signature).is_err(),
            "the signature covers the header and claims"
        );
        // RFC 6979: deterministic, no randomness needed.
        assert_eq!(provider_token(&config(), NOW).unwrap(), token);
    }

    #[test]
    fn keys_survive_being_pasted_into_a_form() {
        let one_line = TEST_KEY.trim().replace('\n', "\\n");
        assert!(signing_key(&one_line).is_ok());
        let spaces = TEST_KEY.trim().replace('\n', " ");
        assert!(signing_key(&spaces).is_ok());
        let crlf = TEST_KEY.replace('\n', "\r\n");
        assert!(signing_key(&crlf).is_ok());
        let err = signing_key("hello").unwrap_err();
        assert!(err.contains("private_key") && err.contains("PEM"), "{err}");
        let public = signing_key(TEST_PUBLIC_KEY).unwrap_err();
        assert!(public.contains("PUBLIC KEY"), "{public}");
    }

    #[test]
    fn builds_the_http2_request() {
        let request = request(&config(), &message(), NOW).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.url,
            format!("https://api.sandbox.push.apple.com/3/device/{TOKEN}")
        );
        assert_eq!(request.header_value("apns-topic"), Some("com.shop.app"));
        assert_eq!(request.header_value("apns-push-type"), Some("alert"));
        assert_eq!(request.header_value("apns-priority"), Some("10"));
        assert_eq!(request.header_value("apns-expiration"), Some("0"));
        assert_eq!(request.header_value("apns-collapse-id"), None);
        assert_eq!(
            request.header_value("apns-id"),
            Some(apns_id("notif-77:apns:device-3").as_str())
        );
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "aps": {"alert": {"title": "Your order shipped", "body": "Order 1001 is on its way."},
                        "sound": "default"},
                "link": "shop://orders/1001",
                "data": {"order_number": "1001", "tracking": "1Z999"},
            })
        );

        let normal = Message {
            priority: Priority::Normal,
            expires_at: Some(NOW + 3600),
            collapse_key: Some("order-1001".into()),
            link: None,
            data_json: String::new(),
            ..message()
        };
        let request = super::request(&config(), &normal, NOW).unwrap();
        assert_eq!(request.header_value("apns-priority"), Some("5"));
        assert_eq!(
            request.header_value("apns-expiration"),
            Some((NOW + 3600).to_string().as_str())
        );
        assert_eq!(request.header_value("apns-collapse-id"), Some("order-1001"));
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert!(body.get("link").is_none() && body.get("data").is_none());
    }

    #[test]
    fn apns_ids_are_stable_uuids() {
        let id = apns_id("notif-77:apns:device-3");
        assert_eq!(id, apns_id("notif-77:apns:device-3"));
        assert_ne!(id, apns_id("notif-78:apns:device-3"));
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&id[14..15], "8", "version 8");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "RFC 9562 variant"
        );
    }

    #[test]
    fn topic_falls_back_to_the_default_and_is_required() {
        let mut m = message();
        if let Recipient::Device(d) = &mut m.recipient {
            d.app_id = String::new();
        }
        let err = request(&config(), &m, NOW).unwrap_err();
        assert!(matches!(err, DeliveryError::Permanent(_)), "{err:?}");
        let mut pairs = settings();
        pairs.push(("default_topic", "com.shop.default".into()));
        let c = Config::from_settings(&Settings::from_pairs(pairs)).unwrap();
        let request = request(&c, &m, NOW).unwrap();
        assert_eq!(request.header_value("apns-topic"), Some("com.shop.default"));
    }

    #[test]
    fn refuses_what_apns_would_refuse_without_sending() {
        let big = Message {
            text: "x".repeat(MAX_PAYLOAD_BYTES),
            ..message()
        };
        let long_collapse = Message {
            collapse_key: Some("c".repeat(MAX_COLLAPSE_ID_BYTES + 1)),
            ..message()
        };
        let expired = Message {
            expires_at: Some(NOW),
            ..message()
        };
        let email = Message {
            recipient: Recipient::Email(EmailAddress {
                address: "a@b.example".into(),
                name: None,
            }),
            ..message()
        };
        let fcm = Message {
            recipient: Recipient::Device(Device {
                platform: PushPlatform::Fcm,
                token: TOKEN.into(),
                app_id: "com.shop.app".into(),
            }),
            ..message()
        };
        for m in [big, long_collapse, expired, email, fcm] {
            testing::clear();
            testing::set_now(NOW);
            testing::set_settings(settings());
            testing::mock_http(|_| Ok(Response::new(200)));
            let result = <Apns as NotificationChannel>::deliver(&m);
            assert!(
                matches!(result, Err(DeliveryError::Permanent(_))),
                "{result:?}"
            );
            assert!(testing::sent_requests().is_empty());
        }
        let exactly_64 = Message {
            collapse_key: Some("c".repeat(MAX_COLLAPSE_ID_BYTES)),
            ..message()
        };
        assert!(request(&config(), &exactly_64, NOW).is_ok());
        let bad_token = Message {
            recipient: Recipient::Device(Device {
                platform: PushPlatform::Apns,
                token: "../../admin".into(),
                app_id: "com.shop.app".into(),
            }),
            ..message()
        };
        assert!(matches!(
            request(&config(), &bad_token, NOW),
            Err(DeliveryError::RecipientGone(_))
        ));
        testing::clear();
    }

    #[test]
    fn delivers_with_a_cached_provider_token() {
        testing::clear();
        let receipt = deliver_with(|_| {
            Ok(Response::new(200).with_header("apns-id", "EC1BF194-B3B2-424A-89A7-A1B2C3D4E5F6"))
        })
        .unwrap();
        assert_eq!(
            receipt.provider_reference,
            "EC1BF194-B3B2-424A-89A7-A1B2C3D4E5F6"
        );
        let first = testing::sent_requests()[0].clone();
        let auth = first.header_value("authorization").unwrap().to_owned();
        assert!(auth.starts_with("bearer "), "{auth}");
        assert_eq!(testing::cache_keys(), [config().token_cache_key()]);

        // 39 minutes later: the same token; 41 minutes later: a new one.
        testing::set_now(NOW + 39 * 60);
        <Apns as NotificationChannel>::deliver(&message()).unwrap();
        testing::set_now(NOW + 41 * 60);
        let receipt = <Apns as NotificationChannel>::deliver(&message()).unwrap();
        assert_eq!(
            receipt.provider_reference,
            "EC1BF194-B3B2-424A-89A7-A1B2C3D4E5F6"
        );
        let sent = testing::sent_requests();
        assert_eq!(sent[1].header_value("authorization"), Some(auth.as_str()));
        let third = sent[2].header_value("authorization").unwrap();
        assert_ne!(third, auth);
        let claims = json_part(third.split('.').nth(1).unwrap());
        assert_eq!(claims["iat"], NOW + 41 * 60);
        testing::clear();
    }

    #[test]
    fn an_expired_provider_token_is_dropped_and_retried() {
        testing::clear();
        let result = deliver_with(|_| {
            Ok(Response::new(403).with_body(r#"{"reason":"ExpiredProviderToken"}"#))
        });
        assert!(
            matches!(&result, Err(DeliveryError::Retryable(r)) if r.reason.contains("ExpiredProviderToken")),
            "{result:?}"
        );
        assert!(testing::cache_keys().is_empty(), "the token was dropped");
    }

    #[test]
    fn an_invalid_provider_token_is_dropped_and_retried_unless_just_signed() {
        testing::clear();
        let invalid =
            |_: &Request| Ok(Response::new(403).with_body(r#"{"reason":"InvalidProviderToken"}"#));
        // Signed for this call and still refused: the key is wrong, retrying cannot help.
        let result = deliver_with(invalid);
        assert!(
            matches!(&result, Err(DeliveryError::Permanent(why)) if why.contains("key_id")),
            "{result:?}"
        );
        assert!(testing::cache_keys().is_empty(), "the token was dropped");
        // A cached token refused: dropped, and the next attempt signs a new one.
        cached_provider_token(&config(), NOW).unwrap();
        testing::mock_http(invalid);
        let result = <Apns as NotificationChannel>::deliver(&message());
        assert!(
            matches!(result, Err(DeliveryError::Retryable(_))),
            "{result:?}"
        );
        assert!(testing::cache_keys().is_empty());

        testing::mock_http(|_| Ok(Response::new(403).with_body(r#"{"reason":"BadTopic"}"#)));
        let _ = <Apns as NotificationChannel>::deliver(&message());
        assert_eq!(
            testing::cache_keys().len(),
            1,
            "other refusals keep the token"
        );
        testing::clear();
    }

    fn answer(status: u16, reason: Option<&str>) -> Result<DeliveryReceipt, DeliveryError> {
        let mut response = Response::new(status);
        if let Some(reason) = reason {
            response = response.with_body(format!(r#"{{"reason":"{reason}"}}"#));
        }
        outcome(&Ok(response), "sent-id", false)
    }

    #[test]
    fn status_mapping() {
        assert_eq!(
            answer(200, None).unwrap().provider_reference,
            "sent-id",
            "without Apple's apns-id header, the one sent"
        );
        for gone in [(410, Some("Unregistered")), (410, Some("ExpiredToken"))] {
            assert!(
                matches!(answer(gone.0, gone.1), Err(DeliveryError::RecipientGone(_))),
                "{gone:?}"
            );
        }
        for permanent in [
            // Also what a token of the other environment (sandbox, production) gets: not
            // a reason to forget the device.
            (400, Some("BadDeviceToken")),
            (400, Some("BadTopic")),
            (400, Some("DeviceTokenNotForTopic")),
            (400, None),
            (403, Some("MissingProviderToken")),
            (403, Some("BadCertificateEnvironment")),
            (404, Some("BadPath")),
            (405, Some("MethodNotAllowed")),
            (413, Some("PayloadTooLarge")),
        ] {
            let result = answer(permanent.0, permanent.1);
            assert!(
                matches!(&result, Err(DeliveryError::Permanent(_))),
                "{permanent:?}: {result:?}"
            );
        }
        let Err(DeliveryError::Permanent(why)) = answer(400, Some("BadTopic")) else {
            unreachable!()
        };
        assert_eq!(why, "APNs answered 400 BadTopic");
        for retry in [
            (403, Some("InvalidProviderToken")),
            (400, Some("IdleTimeout")),
            (429, Some("TooManyRequests")),
            (500, Some("InternalServerError")),
            (503, Some("ServiceUnavailable")),
        ] {
            assert!(
                matches!(answer(retry.0, retry.1), Err(DeliveryError::Retryable(_))),
                "{retry:?}"
            );
        }
        let throttled = outcome(
            &Ok(Response::new(429)
                .with_header("Retry-After", "30")
                .with_body(r#"{"reason":"TooManyRequests"}"#)),
            "id",
            false,
        );
        assert_eq!(
            throttled,
            Err(DeliveryError::retryable_after(
                "APNs answered 429 TooManyRequests",
                Some(30)
            ))
        );
    }

    #[test]
    fn transport_errors() {
        assert!(matches!(
            outcome(&Err(HttpError::Timeout), "id", false),
            Err(DeliveryError::Retryable(_))
        ));
        assert!(matches!(
            outcome(&Err(HttpError::Failed("reset".into())), "id", false),
            Err(DeliveryError::Retryable(_))
        ));
        assert!(matches!(
            outcome(&Err(HttpError::Denied("not granted".into())), "id", false),
            Err(DeliveryError::Permanent(_))
        ));
    }

    #[test]
    fn settings_are_checked() {
        let parse =
            |pairs: Vec<(&str, String)>| Config::from_settings(&Settings::from_pairs(pairs));
        let mut defaults = settings();
        defaults.retain(|(k, _)| *k != "base_url");
        assert_eq!(parse(defaults.clone()).unwrap().base_url, PRODUCTION_URL);
        let mut slash = defaults.clone();
        slash.push(("base_url", "http://127.0.0.1:9000/".into()));
        assert_eq!(parse(slash).unwrap().base_url, "http://127.0.0.1:9000");
        let mut short_team = defaults.clone();
        short_team[0].1 = "TEAM".into();
        assert!(parse(short_team).unwrap_err().contains("team_id"));
        let mut no_key = defaults.clone();
        no_key.retain(|(k, _)| *k != "private_key");
        assert!(parse(no_key).unwrap_err().contains("private_key"));
        testing::clear();
        assert!(matches!(
            <Apns as NotificationChannel>::deliver(&message()),
            Err(DeliveryError::Permanent(_))
        ));
        assert!(testing::sent_requests().is_empty());
    }
}
