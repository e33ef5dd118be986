//! The first-party notification channels (`apns`, `fcm`, `email`, and
//! `webhook-notifier` at 0.2) delivering through the kernel's plugin host to local mock
//! providers (`common/mock_providers.rs`): the real plugins, the real outbound HTTP(S)
//! client and host cache, and nothing that leaves the machine.

use std::time::Duration;

use crate::common::mock_providers::*;
use crate::common::*;
use axum::http::StatusCode;
use http_body_util::BodyExt as _;
use olivine::plugins::notifications::{DeliveryOutcome, deliver};
use olivine_plugin_runtime::bindings::notification_types as nt;
use serde_json::{Value, json};

/// The apps' identifiers (APNs topic, Android package).
const IOS_APP: &str = "com.example.olivine.shop";
const ANDROID_APP: &str = "com.example.olivine.shop.android";

/// An APNs device token: 32 bytes in hex, made of `seed`.
fn apns_token(seed: u8) -> String {
    format!("{seed:02x}").repeat(32)
}

fn device(platform: nt::PushPlatform, token: &str, app_id: &str) -> nt::Recipient {
    nt::Recipient::Device(nt::Device {
        platform,
        token: token.to_owned(),
        app_id: app_id.to_owned(),
    })
}

/// An `order.shipped` notification for `recipient`.
fn shipped(recipient: nt::Recipient, key: &str) -> nt::Message {
    nt::Message {
        topic: "order.shipped".to_owned(),
        idempotency_key: key.to_owned(),
        recipient,
        title: "Order 1001 shipped".to_owned(),
        text: "Your magnesium is on its way.".to_owned(),
        html: None,
        link: Some("https://shop.example/account/orders/1001".to_owned()),
        collapse_key: Some("order-1001".to_owned()),
        expires_at: Some(4_102_444_800),
        priority: nt::Priority::High,
        marketing: false,
        data_json: r#"{"order": 1001, "tracking": "TRK-42"}"#.to_owned(),
    }
}

/// Enables `plugin` with `settings` and grants it `host`; answers the response.
async fn configure(app: &TestApp, plugin: &str, settings: Value, host: &str) -> TestResponse {
    app.admin_patch(
        &format!("/api/v1/admin/plugins/{plugin}"),
        &json!({"enabled": true, "settings": settings, "granted_hosts": [host]}),
    )
    .await
}

async fn configure_ok(app: &TestApp, plugin: &str, settings: Value, host: &str) {
    let r = configure(app, plugin, settings, host).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[track_caller]
fn delivered(outcome: DeliveryOutcome) -> String {
    match outcome {
        DeliveryOutcome::Delivered { provider_reference } => provider_reference,
        other => panic!("expected Delivered, got {other:?}"),
    }
}

#[track_caller]
fn failed(outcome: DeliveryOutcome) -> String {
    match outcome {
        DeliveryOutcome::Failed { reason } => reason,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[track_caller]
fn gone(outcome: DeliveryOutcome) -> String {
    match outcome {
        DeliveryOutcome::Gone { reason } => reason,
        other => panic!("expected Gone, got {other:?}"),
    }
}

#[track_caller]
fn retry(outcome: DeliveryOutcome) -> Option<Duration> {
    match outcome {
        DeliveryOutcome::Retry { after, .. } => after,
        other => panic!("expected Retry, got {other:?}"),
    }
}

both_backends! {
    async fn apns_pushes_over_http2_with_one_provider_token(backend: Backend) {
        let ca = TestCa::new();
        let apns = MockApns::start(&ca, "TEAMID1234", "KEYID56789").await;
        let ca_file = ca.ca_file();
        let app = TestApp::start_with(backend, |c| {
            c.bundled_plugins = true;
            c.plugin_http_ca_file = Some(ca_file);
        })
        .await;
        let plugins = app.kernel.state.plugins.clone();
        let settings = |private_key: &str, key_id: &str| {
            json!({
                "base_url": apns.base_url(),
                "team_id": apns.team_id(),
                "key_id": key_id,
                "private_key": private_key,
                "default_topic": "com.example.olivine.default",
            })
        };
        let live = apns_token(0xa1);
        let message = shipped(device(nt::PushPlatform::Apns, &live, IOS_APP), "order-1001-shipped-apns");

        // A private key that is not one: refused when configured, or a permanent failure
        // that sends nothing.
        let r = configure(
            &app,
            "apns",
            settings("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", apns.key_id()),
            &apns.host(),
        )
        .await;
        if r.status == StatusCode::OK {
            failed(deliver(&plugins, "apns", message.clone()).await);
        } else {
            assert!(r.status.is_client_error(), "{} {}", r.status, r.text());
        }
        assert!(apns.requests().iter().all(|r| r.status != 200), "{:?}", apns.requests());

        // A well-formed key Apple does not know: 403 InvalidProviderToken, Failed.
        let (stranger, _) = p256_key_pair();
        configure_ok(&app, "apns", settings(&stranger, "UNKNOWNKEY"), &apns.host()).await;
        failed(deliver(&plugins, "apns", message.clone()).await);
        let refused = apns.requests();
        assert!(!refused.is_empty(), "the plugin sent nothing; refused connections: {:?}", apns.refused_connections());
        assert!(
            refused.iter().all(|r| r.status == 403 && r.reason.as_deref() == Some("InvalidProviderToken")),
            "{refused:?}"
        );
        let before = refused.len();

        // The team's key: delivered over HTTP/2, with Apple's headers and payload.
        configure_ok(&app, "apns", settings(apns.private_key_pem(), apns.key_id()), &apns.host()).await;
        let reference = delivered(deliver(&plugins, "apns", message.clone()).await);
        let requests = apns.requests();
        assert_eq!(requests.len(), before + 1, "{requests:?}");
        let first = requests[before].clone();
        assert_eq!(first.status, 200, "{first:?}");
        assert_eq!(first.apns_id, reference, "the provider reference is the apns-id");
        assert_eq!(first.method, "POST");
        assert_eq!(first.token, live);
        assert_eq!(first.header("apns-topic"), Some(IOS_APP), "the device's app is the topic");
        assert_eq!(first.header("apns-push-type"), Some("alert"));
        assert_eq!(first.header("apns-priority"), Some("10"), "high priority");
        assert_eq!(first.header("apns-expiration"), Some("4102444800"));
        assert_eq!(first.header("apns-collapse-id"), Some("order-1001"));
        let payload = first.json.clone().expect("a JSON payload");
        assert_eq!(payload["aps"]["alert"]["title"], "Order 1001 shipped", "{payload}");
        assert_eq!(payload["aps"]["alert"]["body"], "Your magnesium is on its way.", "{payload}");
        assert!(first.jwt_iat.is_some());

        // Another push, normal priority: the same provider token (made once, cached) on
        // the same connection.
        let mut quiet = shipped(device(nt::PushPlatform::Apns, &apns_token(0xa2), IOS_APP), "order-1002-shipped-apns");
        quiet.priority = nt::Priority::Normal;
        delivered(deliver(&plugins, "apns", quiet).await);
        let second = apns.requests().last().cloned().expect("a second request");
        assert_eq!(second.status, 200, "{second:?}");
        assert_eq!(second.header("apns-priority"), Some("5"));
        assert_eq!(second.jwt, first.jwt, "the provider token is reused, not signed per push");
        assert_eq!(second.jwt_iat, first.jwt_iat);
        assert_eq!(second.connection, first.connection, "the HTTP/2 connection is reused");

        // A device that uninstalled the app: 410 Unregistered, Gone.
        let dead = apns_token(0xd0);
        apns.mark_unregistered(&dead);
        gone(deliver(&plugins, "apns", shipped(device(nt::PushPlatform::Apns, &dead, IOS_APP), "order-1003-shipped-apns")).await);
        let last = apns.requests().last().cloned().unwrap();
        assert_eq!((last.status, last.reason.as_deref()), (410, Some("Unregistered")));

        // APNs unavailable: retry later.
        apns.script(ApnsError::service_unavailable());
        retry(deliver(&plugins, "apns", message.clone()).await);
        assert_eq!(apns.requests().last().unwrap().status, 503);

        // A token APNs does not accept: a permanent failure.
        let bad = apns_token(0xbb);
        apns.mark_bad_token(&bad);
        failed(deliver(&plugins, "apns", shipped(device(nt::PushPlatform::Apns, &bad, IOS_APP), "order-1004-shipped-apns")).await);

        // Throughout: HTTP/2 only, one provider token for the team key, never refreshed
        // too often.
        let all = apns.requests();
        assert!(all.iter().all(|r| r.status != 429), "{all:?}");
        let tokens: std::collections::HashSet<_> = all[before..].iter().filter_map(|r| r.jwt.clone()).collect();
        assert_eq!(tokens.len(), 1, "{all:?}");
        assert!(
            apns.refused_connections().is_empty(),
            "{:?}",
            apns.refused_connections()
        );
        app.stop().await;
    }

    async fn fcm_sends_with_one_access_token(backend: Backend) {
        let fcm = MockFcm::start("olivine-test-shop", "push@olivine-test-shop.iam.gserviceaccount.com").await;
        let app = TestApp::start_with(backend, |c| c.bundled_plugins = true).await;
        let plugins = app.kernel.state.plugins.clone();
        configure_ok(
            &app,
            "fcm",
            json!({
                "project_id": fcm.project_id(),
                "client_email": fcm.client_email(),
                "private_key": fcm.private_key_pem(),
                "token_url": fcm.token_url(),
                "base_url": fcm.base_url(),
            }),
            &fcm.host(),
        )
        .await;

        // Two deliveries, one access token.
        let a = delivered(deliver(&plugins, "fcm", shipped(device(nt::PushPlatform::Fcm, "fcm-token-a", ANDROID_APP), "order-1001-shipped-fcm")).await);
        let b = delivered(deliver(&plugins, "fcm", shipped(device(nt::PushPlatform::Fcm, "fcm-token-b", ANDROID_APP), "order-1002-shipped-fcm")).await);
        let prefix = format!("projects/{}/messages/", fcm.project_id());
        assert!(a.starts_with(&prefix) && b.starts_with(&prefix) && a != b, "{a} {b}");
        let tokens = fcm.token_requests();
        assert_eq!(tokens.len(), 1, "one token request for two sends: {tokens:?}");
        assert_eq!(tokens[0].status, 200, "{tokens:?}");
        let sends = fcm.requests();
        assert_eq!(sends.len(), 2, "{sends:?}");
        assert!(sends.iter().all(|s| s.status == 200), "{sends:?}");
        assert_eq!(sends[0].path, format!("/v1/projects/{}/messages:send", fcm.project_id()));
        assert_eq!(sends[0].headers["authorization"], sends[1].headers["authorization"]);
        let first = sends[0].message();
        assert_eq!(first["token"], "fcm-token-a", "{first}");
        assert_eq!(first["notification"]["title"], "Order 1001 shipped", "{first}");
        assert_eq!(first["notification"]["body"], "Your magnesium is on its way.", "{first}");

        // A token FCM dropped: Gone.
        fcm.mark_unregistered("fcm-token-dead");
        gone(deliver(&plugins, "fcm", shipped(device(nt::PushPlatform::Fcm, "fcm-token-dead", ANDROID_APP), "order-1003-shipped-fcm")).await);

        // Over quota: retry when FCM says.
        fcm.script(FcmError::quota_exceeded(7));
        assert_eq!(
            retry(deliver(&plugins, "fcm", shipped(device(nt::PushPlatform::Fcm, "fcm-token-a", ANDROID_APP), "order-1004-shipped-fcm")).await),
            Some(Duration::from_secs(7))
        );

        // Not a registration token: a permanent failure.
        fcm.mark_invalid("fcm-token-garbled");
        failed(deliver(&plugins, "fcm", shipped(device(nt::PushPlatform::Fcm, "fcm-token-garbled", ANDROID_APP), "order-1005-shipped-fcm")).await);

        let answers: Vec<_> = fcm.requests().iter().map(|r| (r.status, r.answer.clone())).collect();
        assert_eq!(answers[2..], [
            (404, "UNREGISTERED".to_owned()),
            (429, "QUOTA_EXCEEDED".to_owned()),
            (400, "INVALID_ARGUMENT".to_owned()),
        ], "{answers:?}");
        assert_eq!(fcm.token_requests().len(), 1, "still the one access token");
        app.stop().await;
    }

    async fn email_uses_the_stream_of_the_message_kind(backend: Backend) {
        let mail = MockMail::start("test-server-token-3f9a").await;
        let app = TestApp::start_with(backend, |c| c.bundled_plugins = true).await;
        let plugins = app.kernel.state.plugins.clone();
        let settings = |token: &str| {
            json!({
                "base_url": mail.base_url(),
                "server_token": token,
                "from": "Olivine Test Shop <shop@olivine.test>",
                "reply_to": "help@olivine.test",
            })
        };
        configure_ok(&app, "email", settings(mail.server_token()), &mail.host()).await;
        let ada = nt::Recipient::Email(nt::EmailAddress {
            address: "ada@example.com".to_owned(),
            name: Some("Ada Lovelace".to_owned()),
        });

        // Transactional, with an HTML and a text body: the transactional stream.
        let mut receipt = shipped(ada.clone(), "order-1001-shipped-email");
        receipt.html = Some("<p>Your magnesium is <b>on its way</b>.</p>".to_owned());
        let reference = delivered(deliver(&plugins, "email", receipt).await);
        let sent = mail.requests();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let first = &sent[0];
        assert_eq!(first.status, 200, "{first:?}");
        assert_eq!(first.message_id.as_deref(), Some(reference.as_str()), "the provider reference is the MessageID");
        assert_eq!(first.path, "/email");
        assert_eq!(first.headers["x-postmark-server-token"], mail.server_token());
        assert_eq!(first.str("From"), Some("Olivine Test Shop <shop@olivine.test>"));
        assert_eq!(mail_addresses(first.str("To").unwrap_or_default()), ["ada@example.com"]);
        assert_eq!(first.str("Subject"), Some("Order 1001 shipped"));
        assert_eq!(first.str("TextBody"), Some("Your magnesium is on its way."));
        assert_eq!(first.str("HtmlBody"), Some("<p>Your magnesium is <b>on its way</b>.</p>"));
        assert_eq!(first.str("MessageStream"), Some("outbound"));
        assert_eq!(first.str("ReplyTo"), Some("help@olivine.test"));

        // Marketing, text only: the marketing stream.
        let mut offer = shipped(ada.clone(), "campaign-spring-ada");
        offer.topic = "marketing.campaign".to_owned();
        offer.title = "Spring offer".to_owned();
        offer.text = "10% off magnesium this week.".to_owned();
        offer.marketing = true;
        delivered(deliver(&plugins, "email", offer.clone()).await);
        let second = mail.requests().last().cloned().unwrap();
        assert_eq!(second.status, 200, "{second:?}");
        assert_eq!(second.str("MessageStream"), Some("broadcast"));
        assert_eq!(second.str("TextBody"), Some("10% off magnesium this week."));
        assert!(second.str("HtmlBody").is_none(), "{second:?}");

        // The streams are settings.
        mail.add_stream("newsletters");
        let mut custom = settings(mail.server_token());
        custom["marketing_stream"] = json!("newsletters");
        configure_ok(&app, "email", custom, &mail.host()).await;
        delivered(deliver(&plugins, "email", offer).await);
        assert_eq!(mail.requests().last().unwrap().str("MessageStream"), Some("newsletters"));

        // A recipient who bounced or unsubscribed: Gone.
        mail.mark_inactive("gone@example.com");
        let gone_recipient = nt::Recipient::Email(nt::EmailAddress { address: "gone@example.com".to_owned(), name: None });
        gone(deliver(&plugins, "email", shipped(gone_recipient, "order-1002-shipped-email")).await);
        let last = mail.requests().last().cloned().unwrap();
        assert_eq!((last.status, last.error_code), (422, 406));

        // A wrong server token: a permanent failure.
        configure_ok(&app, "email", settings("not-the-server-token"), &mail.host()).await;
        failed(deliver(&plugins, "email", shipped(ada, "order-1003-shipped-email")).await);
        assert_eq!(mail.requests().last().unwrap().status, 401);
        app.stop().await;
    }

    async fn webhooks_are_signed_for_the_receiver(backend: Backend) {
        let secret = "whsec-test-only-6c1d";
        let hook = MockWebhook::start(secret).await;
        let app = TestApp::start_with(backend, |c| c.bundled_plugins = true).await;
        let plugins = app.kernel.state.plugins.clone();
        let settings = |secret: &str| {
            json!({"url": hook.url(), "authorization": "Bearer receiver-token", "signing_secret": secret})
        };
        configure_ok(&app, "webhook-notifier", settings(secret), &hook.host()).await;
        let message = shipped(nt::Recipient::Endpoint(hook.url()), "order-1001-shipped-hook");

        // The receiver verifies the signature over the timestamp and the body.
        assert_eq!(delivered(deliver(&plugins, "webhook-notifier", message.clone()).await), "hook-1");
        let received = hook.requests();
        assert_eq!(received.len(), 1, "{received:?}");
        let first = &received[0];
        assert!(first.signature_valid, "{:?}: {first:?}", first.problem);
        assert_eq!(first.header("authorization"), Some("Bearer receiver-token"));
        assert_eq!(first.header("idempotency-key"), Some("order-1001-shipped-hook"));
        assert!(first.body.contains("TRK-42"), "the event's facts are in the body: {}", first.body);

        // Signed with another secret: the receiver refuses it, and it is not delivered.
        configure_ok(&app, "webhook-notifier", settings("some-other-secret"), &hook.host()).await;
        let outcome = deliver(&plugins, "webhook-notifier", message).await;
        assert!(!matches!(outcome, DeliveryOutcome::Delivered { .. }), "{outcome:?}");
        let last = hook.requests().last().cloned().unwrap();
        assert!(!last.signature_valid && last.status == 401, "{last:?}");
        app.stop().await;
    }
}

/// A TLS connection to the mock APNs offering `alpn`.
async fn apns_tls(
    apns: &MockApns,
    ca: &TestCa,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(apns.addr()).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    tokio_rustls::TlsConnector::from(ca.client_config(alpn))
        .connect(name, tcp)
        .await
}

type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Full<axum::body::Bytes>>;

/// An HTTP/2 connection to the mock APNs.
async fn apns_h2(apns: &MockApns, ca: &TestCa) -> H2Sender {
    let tls = apns_tls(apns, ca, &[b"h2"]).await.expect("TLS with h2");
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    sender
}

/// Pushes to `token` with provider token `jwt` (and `topic`, `payload`); answers the
/// status and the reason.
async fn apns_push(
    sender: &mut H2Sender,
    token: &str,
    jwt: &str,
    topic: Option<&str>,
    payload: &str,
) -> (u16, Option<String>) {
    let mut request = hyper::Request::post(format!("https://localhost/3/device/{token}"))
        .header("authorization", format!("bearer {jwt}"))
        .header("apns-push-type", "alert")
        .header("apns-priority", "10")
        .header("apns-expiration", "0");
    if let Some(topic) = topic {
        request = request.header("apns-topic", topic);
    }
    let request = request
        .body(http_body_util::Full::new(axum::body::Bytes::from(
            payload.to_owned(),
        )))
        .expect("request");
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let reason = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["reason"].as_str().map(str::to_owned));
    (status, reason)
}

/// The mock APNs refuses what Apple refuses, so a channel that speaks HTTP/1.1 or signs
/// a provider token per push fails the tests above instead of passing against a lenient
/// double.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_apns_refuses_what_apple_refuses() {
    let ca = TestCa::new();
    let apns = MockApns::start(&ca, "TEAMID1234", "KEYID56789").await;
    let key = jsonwebtoken::EncodingKey::from_ec_der(&pem_der(apns.private_key_pem()));
    let jwt = |iat: i64, kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &json!({"iss": "TEAMID1234", "iat": iat}), &key)
            .expect("sign")
    };
    let now = chrono::Utc::now().timestamp();
    let token = apns_token(0x5e);
    let alert = r#"{"aps":{"alert":{"title":"Hi","body":"There"}}}"#;

    // HTTP/1.1 only: no common protocol. No ALPN at all: closed after the handshake.
    assert!(apns_tls(&apns, &ca, &[b"http/1.1"]).await.is_err());
    if let Ok(tls) = apns_tls(&apns, &ca, &[]).await {
        let handshake =
            hyper::client::conn::http2::handshake::<_, _, http_body_util::Full<axum::body::Bytes>>(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tls),
            )
            .await;
        if let Ok((mut sender, connection)) = handshake {
            tokio::spawn(connection);
            let request = hyper::Request::post(format!("https://localhost/3/device/{token}"))
                .body(http_body_util::Full::new(axum::body::Bytes::from(alert)))
                .unwrap();
            assert!(sender.send_request(request).await.is_err());
        }
    }
    wait_until("both refusals are recorded", async || {
        apns.refused_connections().len() == 2
    })
    .await;
    assert_eq!(apns.connections(), 0);

    // One connection: the first token, reused; one change; a second change within 20
    // minutes is refused.
    let mut h2 = apns_h2(&apns, &ca).await;
    let first = jwt(now - 10, "KEYID56789");
    assert_eq!(
        apns_push(&mut h2, &token, &first, Some(IOS_APP), alert).await,
        (200, None)
    );
    assert_eq!(
        apns_push(&mut h2, &token, &first, Some(IOS_APP), alert).await,
        (200, None)
    );
    let second = jwt(now - 5, "KEYID56789");
    assert_eq!(
        apns_push(&mut h2, &token, &second, Some(IOS_APP), alert).await,
        (200, None)
    );
    let third = jwt(now, "KEYID56789");
    assert_eq!(
        apns_push(&mut h2, &token, &third, Some(IOS_APP), alert).await,
        (429, Some("TooManyProviderTokenUpdates".to_owned()))
    );

    // Another connection: an old token, another key, no topic, too big a payload, an
    // unknown device.
    let mut h2 = apns_h2(&apns, &ca).await;
    assert_eq!(
        apns_push(
            &mut h2,
            &token,
            &jwt(now - 7200, "KEYID56789"),
            Some(IOS_APP),
            alert
        )
        .await,
        (403, Some("ExpiredProviderToken".to_owned()))
    );
    assert_eq!(
        apns_push(
            &mut h2,
            &token,
            &jwt(now, "OTHERKEY00"),
            Some(IOS_APP),
            alert
        )
        .await,
        (403, Some("InvalidProviderToken".to_owned()))
    );
    let current = jwt(now, "KEYID56789");
    assert_eq!(
        apns_push(&mut h2, &token, &current, None, alert).await,
        (400, Some("MissingTopic".to_owned()))
    );
    let big = format!(r#"{{"aps":{{"alert":"{}"}}}}"#, "x".repeat(4096));
    assert_eq!(
        apns_push(&mut h2, &token, &current, Some(IOS_APP), &big).await,
        (413, Some("PayloadTooLarge".to_owned()))
    );
    assert_eq!(
        apns_push(&mut h2, "not-a-token", &current, Some(IOS_APP), alert).await,
        (400, Some("BadDeviceToken".to_owned()))
    );
    let requests = apns.requests();
    assert_eq!(requests.len(), 9);
    assert_eq!(
        requests.iter().map(|r| r.connection).collect::<Vec<_>>(),
        [1, 1, 1, 1, 2, 2, 2, 2, 2]
    );
}
