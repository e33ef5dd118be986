//! Notifications end to end: events routed through the bus to the customer's channels
//! (the first-party `email` plugin against a local Postmark-style server, and the
//! merchant's `webhook-notifier`), rendered from templates the merchant can change,
//! stored with their attempts, retried on the provider's `Retry-After` (kernel clock),
//! resent by staff; the customer's channel choices, devices and back-in-stock requests;
//! campaigns only to consenting customers; devices in the export and gone on erasure.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use crate::payments::{Shop, shop_with, tokenize};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};

/// What the local mail API and webhook received, and how the mail API answers next.
#[derive(Default)]
struct Received {
    emails: Vec<Value>,
    hooks: Vec<Value>,
    /// Answers the next email whose subject ends with this with 503 and
    /// `Retry-After: 30`.
    fail_once: Option<String>,
}

/// A Postmark-style mail API (`POST /email`) and a webhook (`POST /hook`).
async fn providers() -> (String, Arc<Mutex<Received>>) {
    let received: Arc<Mutex<Received>> = Arc::default();
    let mail = received.clone();
    let hooks = received.clone();
    let router = axum::Router::new()
        .route(
            "/email",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let mail = mail.clone();
                async move {
                    assert_eq!(
                        headers
                            .get("x-postmark-server-token")
                            .and_then(|v| v.to_str().ok()),
                        Some("server-token")
                    );
                    let mut r = mail.lock().unwrap();
                    let email: Value = serde_json::from_str(&body).unwrap();
                    let subject = email["Subject"].as_str().unwrap_or_default();
                    if r.fail_once
                        .as_ref()
                        .is_some_and(|end| subject.ends_with(end.as_str()))
                    {
                        r.fail_once = None;
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "30")],
                            String::new(),
                        );
                    }
                    r.emails.push(email);
                    let answer = json!({"ErrorCode": 0, "Message": "OK",
                        "MessageID": format!("msg-{}", r.emails.len())});
                    (StatusCode::OK, [("retry-after", "0")], answer.to_string())
                }
            }),
        )
        .route(
            "/hook",
            axum::routing::post(move |body: String| {
                let hooks = hooks.clone();
                async move {
                    hooks
                        .lock()
                        .unwrap()
                        .hooks
                        .push(serde_json::from_str(&body).unwrap());
                    StatusCode::OK
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (host, received)
}

/// The payments shop with the bundled channels, email and webhook on.
async fn notifying_shop(backend: Backend) -> (Shop, Arc<Mutex<Received>>) {
    let shop = shop_with(backend, |c| {
        c.bundled_plugins = true;
        c.public_url = Some("https://shop.example".to_owned());
    })
    .await;
    let (host, received) = providers().await;
    let app = &shop.app;
    let r = app
        .admin_patch(
            "/api/v1/admin/plugins/email",
            &json!({
                "enabled": true, "granted_hosts": [host],
                "settings": {"base_url": format!("http://{host}"), "server_token": "server-token",
                             "from": "Shop <hello@shop.example>"},
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app.admin_patch("/api/v1/admin/plugins/webhook-notifier", &json!({
        "enabled": true, "granted_hosts": [host], "settings": {"url": format!("http://{host}/hook")},
    })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.settle().await;
    (shop, received)
}

async fn paid_order(shop: &Shop, token: &str) -> String {
    let app = &shop.app;
    let r = as_customer(app, token, Method::POST, "/api/v1/carts", None).await;
    let cart = r.json()["id"].as_str().unwrap().to_owned();
    let r = as_customer(
        app,
        token,
        Method::POST,
        &format!("/api/v1/carts/{cart}/lines"),
        Some(json!({"sku": "MAG-60", "quantity": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let card = tokenize(shop.processor, "4242424242424242").await;
    let body = json!({"shipping_method": "standard", "payment_token": card,
        "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Utrecht", "postal_code": "3511 AB", "country": "NL"}});
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/carts/{cart}/checkout"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("idempotency-key", format!("notify-{cart}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["number"].as_str().unwrap().to_owned()
}

/// Hands the outbox event of type `event_type` about `aggregate` to the router again, as
/// a redelivery after a crash would.
async fn redeliver(app: &TestApp, event_type: &str, aggregate: &str) {
    use olivine::bus::ClusterOnceConsumer;
    let state = &app.kernel.state;
    let event = outbox_event(app, event_type, aggregate).await;
    let consumer = olivine::notify::NotifyConsumer {
        plugins: std::sync::Arc::downgrade(&state.plugins),
        clock: state.clock.clone(),
        bus: state.bus.clone(),
        public_url: "https://shop.example".to_owned(),
    };
    let mut tx = state.db.begin().await.unwrap();
    consumer.handle(&event, &mut tx).await.unwrap();
    tx.commit().await.unwrap();
}

async fn notifications(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app
        .admin_get(&format!("/api/v1/admin/notifications?{query}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["notifications"].as_array().unwrap().clone()
}

/// Waits until no notification is pending, moving the kernel's clock past retries.
async fn delivered_all(app: &TestApp) {
    app.settle().await;
    wait_until("notifications delivered", async || {
        let pending = notifications(app, "status=pending").await;
        if !pending.is_empty() {
            app.kernel.state.clock.advance(Duration::from_secs(5));
            app.kernel.state.bus.notify_jobs();
        }
        pending.is_empty()
    })
    .await;
}

both_backends! {
    async fn a_failed_renewal_payment_sends_the_link_to_replace_the_card(backend: Backend) {
        let (shop, received) = notifying_shop(backend).await;
        let app = &shop.app;
        let token = app.customer_token("gus.notify@example.com").await;
        let customer: i64 = sqlx::query_scalar("SELECT id FROM customers ORDER BY id DESC LIMIT 1")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap();
        assert!(!token.is_empty());
        // The events the renewal code records (tests/suite/subscriptions.rs makes them for
        // real): a payment failure, and a failure for want of stock, which is not the card's.
        let mut tx = app.kernel.state.db.begin().await.unwrap();
        for (number, reason) in [("S-100", json!("insufficient funds")), ("S-101", Value::Null)] {
            olivine::bus::record(&mut tx, "subscription", number, "subscription.renewal_failed",
                &json!({"number": number, "customer": customer, "cycle": 2, "attempt": 1,
                        "reason": reason, "status": "active", "hard_decline": false})).await.unwrap();
        }
        olivine::bus::record(&mut tx, "subscription", "S-100", "subscription.renewal_upcoming",
            &json!({"number": "S-100", "customer": customer, "cycle": 3, "renews_at": "2026-12-24"})).await.unwrap();
        tx.commit().await.unwrap();
        app.kernel.state.bus.notify();
        delivered_all(app).await;
        {
        let r = received.lock().unwrap();
        let failed: Vec<&Value> = r.emails.iter()
            .filter(|e| e["Subject"].as_str().unwrap().starts_with("Payment failed")).collect();
        assert_eq!(failed.len(), 1, "{:?}", r.emails);
        assert_eq!(failed[0]["Subject"], "Payment failed for subscription S-100");
        assert!(failed[0]["TextBody"].as_str().unwrap()
            .ends_with("Replace the card here: https://shop.example/account/subscriptions/S-100"),
            "{}", failed[0]["TextBody"]);
        assert!(r.emails.iter().any(|e| e["Subject"] == "Your subscription renews soon"
            && e["TextBody"].as_str().unwrap().contains("renews on 2026-12-24")), "{:?}", r.emails);
        }
        shop.app.stop().await;
    }

    async fn shoppers_manage_notifications_in_the_storefront_and_wait_for_stock(backend: Backend) {
        use crate::common::browser;
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        // A product with no stock: its page offers to tell the shopper when it is back.
        let r = app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let mut visitor = browser::Browser::default();
        let page = browser::get(&app, &mut visitor, "/p/mag").await;
        browser::assert_html(&page, StatusCode::OK);
        assert!(page.text().contains(r#"href="/account/notifications/back-in-stock?product=mag""#), "{}", page.text());
        // A visitor is asked to sign in first, and brought back.
        let r = browser::get(&app, &mut visitor, "/account/notifications/back-in-stock?product=mag").await;
        assert!(browser::location(&r).starts_with("/account/sign-in?next="), "{:?}", r.headers);
        let mut b = browser::signed_in(&app, "fay.notify@example.com", "Fay").await;
        let page = browser::get(&app, &mut b, "/account/notifications/back-in-stock?product=mag").await;
        browser::assert_html(&page, StatusCode::OK);
        let csrf = browser::csrf_of(&page);
        assert!(page.text().contains(r#"action="/account/notifications/back-in-stock""#), "{}", page.text());
        let r = browser::post_form(&app, &mut b, "/account/notifications/back-in-stock",
            &[("csrf", &csrf), ("product", "mag")]).await;
        assert_eq!(browser::location(&r), "/account/notifications#waiting");
        // The account page lists it, with the channels (on by default) and no devices.
        let page = browser::get(&app, &mut b, "/account/notifications").await;
        browser::assert_html(&page, StatusCode::OK);
        let html = page.text();
        assert!(html.contains(r#"href="/p/mag""#), "{html}");
        assert!(html.contains(r#"name="email" value="1" checked"#), "{html}");
        assert!(html.contains("No device gets push notifications"), "{html}");
        // Email off, then no longer waiting: the API says the same.
        let r = browser::post_form(&app, &mut b, "/account/notifications/preferences",
            &[("csrf", &csrf), ("push", "1")]).await;
        assert_eq!(browser::location(&r), "/account/notifications");
        let r = browser::post_form(&app, &mut b, "/account/notifications/back-in-stock/cancel",
            &[("csrf", &csrf), ("product", "mag")]).await;
        assert_eq!(browser::location(&r), "/account/notifications");
        let page = browser::get(&app, &mut b, "/account/notifications").await;
        let html = page.text();
        assert!(!html.contains(r#"name="email" value="1" checked"#), "{html}");
        assert!(html.contains(r#"name="push" value="1" checked"#), "{html}");
        assert!(html.contains("You are not waiting for any product"), "{html}");
        // Quiet hours: a wrong time zone is shown next to its field; a right one is kept.
        let quiet = |zone: &'static str| [("csrf", csrf.as_str()), ("push", "1"), ("quiet", "1"),
            ("quiet_hours.start", "22:30"), ("quiet_hours.end", "06:45"), ("quiet_hours.time_zone", zone)];
        let r = browser::post_form(&app, &mut b, "/account/notifications/preferences", &quiet("Mars/Olympus")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("must be an IANA time zone name"), "{}", r.text());
        let r = browser::post_form(&app, &mut b, "/account/notifications/preferences", &quiet("Europe/Lisbon")).await;
        assert_eq!(browser::location(&r), "/account/notifications");
        let page = browser::get(&app, &mut b, "/account/notifications").await;
        let html = page.text();
        assert!(html.contains(r#"name="quiet" value="1" checked"#), "{html}");
        assert!(html.contains(r#"value="Europe/Lisbon""#) && html.contains(r#"value="06:45""#), "{html}");
        // A form without its CSRF token changes nothing.
        let r = browser::post_form(&app, &mut b, "/account/notifications/preferences",
            &[("email", "1"), ("push", "1")]).await;
        assert!(r.status.is_client_error(), "{}", r.status);
        let page = browser::get(&app, &mut b, "/account/notifications").await;
        assert!(!page.text().contains(r#"name="email" value="1" checked"#));
        app.stop().await;
    }

    async fn a_shipped_order_is_pushed_to_each_device_and_a_dead_token_is_forgotten(backend: Backend) {
        use crate::common::mock_providers::{MockApns, TestCa};
        let ca = TestCa::new();
        let apns = MockApns::start(&ca, "TEAM123456", "KEY1234567").await;
        let shop = shop_with(backend, |c| {
            c.bundled_plugins = true;
            c.plugin_http_ca_file = Some(ca.ca_file());
        })
        .await;
        let app = &shop.app;
        let r = app.admin_patch("/api/v1/admin/plugins/apns", &json!({
            "enabled": true, "granted_hosts": [apns.host()],
            "settings": {"base_url": apns.base_url(), "team_id": apns.team_id(),
                         "key_id": apns.key_id(), "private_key": apns.private_key_pem()},
        })).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let token = app.customer_token("eve.notify@example.com").await;
        let (phone, tablet) = ("ab".repeat(32), "cd".repeat(32));
        for device in [&phone, &tablet] {
            let r = as_customer(app, &token, Method::POST, "/api/v1/account/devices",
                Some(json!({"platform": "apns", "token": device, "app_id": "com.example.shop"}))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        }
        // The tablet's app was deleted: APNs answers 410 for it.
        apns.mark_unregistered(&tablet);
        let number = paid_order(&shop, &token).await;
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "fulfilled", "tracking_number": "TRK-9", "carrier": "PostNL"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        wait_until("the pushes settled", async || notifications(app, "status=pending").await.is_empty()).await;
        let shipped: Vec<_> = apns.requests().into_iter()
            .filter(|r| r.status == 200 && r.json.as_ref().is_some_and(|j| j["aps"]["alert"]["title"] == format!("Order {number} is on its way")))
            .collect();
        assert_eq!(shipped.len(), 1, "{:?}", apns.requests());
        assert_eq!(shipped[0].token, phone);
        assert_eq!(shipped[0].header("apns-topic"), Some("com.example.shop"));
        assert_eq!(shipped[0].header("apns-priority"), Some("10"), "shipping news is urgent");
        assert_eq!(shipped[0].header("apns-collapse-id"), Some(format!("order-{number}").as_str()));
        // The dead device is gone, and its notification says so.
        let r = as_customer(app, &token, Method::GET, "/api/v1/account/devices", None).await;
        let devices = r.json();
        assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
        assert_eq!(devices[0]["token_ending"], &phone[phone.len() - 8..]);
        let gone = notifications(app, "status=gone").await;
        assert!(!gone.is_empty() && gone.iter().all(|n| n["channel"] == "push"), "{gone:?}");
        shop.app.stop().await;
    }

    async fn pushes_in_the_customers_quiet_hours_wait_for_their_end_and_email_does_not(backend: Backend) {
        use crate::common::mock_providers::{MockApns, TestCa};
        let ca = TestCa::new();
        let apns = MockApns::start(&ca, "TEAM123456", "KEY1234567").await;
        let shop = shop_with(backend, |c| {
            c.bundled_plugins = true;
            c.plugin_http_ca_file = Some(ca.ca_file());
        })
        .await;
        let app = &shop.app;
        let (host, received) = providers().await;
        for (plugin, body) in [
            ("apns", json!({"enabled": true, "granted_hosts": [apns.host()],
                "settings": {"base_url": apns.base_url(), "team_id": apns.team_id(),
                             "key_id": apns.key_id(), "private_key": apns.private_key_pem()}})),
            ("email", json!({"enabled": true, "granted_hosts": [host],
                "settings": {"base_url": format!("http://{host}"), "server_token": "server-token",
                             "from": "Shop <hello@shop.example>"}})),
        ] {
            let r = app.admin_patch(&format!("/api/v1/admin/plugins/{plugin}"), &body).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
        let token = app.customer_token("quinn.notify@example.com").await;
        let phone = "ef".repeat(32);
        let r = as_customer(app, &token, Method::POST, "/api/v1/account/devices",
            Some(json!({"platform": "apns", "token": phone, "app_id": "com.example.shop"}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        // Quiet from an hour ago until two hours from now, Tokyo time (UTC+9, no DST).
        let tokyo = app.kernel.state.clock.now() + chrono::Duration::hours(9);
        let hhmm = |at: chrono::DateTime<chrono::Utc>| at.format("%H:%M").to_string();
        let (start, end) = (hhmm(tokyo - chrono::Duration::hours(1)), hhmm(tokyo + chrono::Duration::hours(2)));
        let r = as_customer(app, &token, Method::PUT, "/api/v1/account/notification-preferences",
            Some(json!({"email": true, "push": true,
                "quiet_hours": {"start": "7:00", "end": "24:00", "time_zone": "Asia/Nowhere"}}))).await;
        for field in ["quiet_hours.start", "quiet_hours.end", "quiet_hours.time_zone"] {
            r.assert_field_error(422, field);
        }
        let quiet = json!({"start": start, "end": end, "time_zone": "Asia/Tokyo"});
        let r = as_customer(app, &token, Method::PUT, "/api/v1/account/notification-preferences",
            Some(json!({"email": true, "push": true, "quiet_hours": quiet}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = as_customer(app, &token, Method::GET, "/api/v1/account/notification-preferences", None).await;
        assert_eq!(r.json()["quiet_hours"], quiet);

        let number = paid_order(&shop, &token).await;
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "fulfilled", "tracking_number": "TRK-Q", "carrier": "PostNL"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        // Email goes at once; the push waits, and staff see until when.
        wait_until("the shipping email", async || received.lock().unwrap().emails.iter()
            .any(|e| e["Subject"] == format!("Order {number} is on its way"))).await;
        let pushes = notifications(app, "topic=order.shipped").await.into_iter()
            .filter(|n| n["channel"] == "push").collect::<Vec<_>>();
        assert_eq!(pushes.len(), 1, "{pushes:?}");
        assert_eq!(pushes[0]["status"], "pending", "{pushes:?}");
        let held_until = olivine::time::parse_timestamp(pushes[0]["held_until"].as_str().unwrap()).unwrap();
        let wait = held_until - app.kernel.state.clock.now();
        assert!(wait > chrono::Duration::minutes(118) && wait <= chrono::Duration::minutes(120), "{wait}");
        let shipped = || apns.requests().into_iter()
            .filter(|r| r.json.as_ref().is_some_and(|j| j["aps"]["alert"]["title"] == format!("Order {number} is on its way")))
            .count();
        // Nearly the end: still quiet.
        app.kernel.state.clock.advance(Duration::from_secs(115 * 60));
        app.kernel.state.bus.notify_jobs();
        app.settle().await;
        assert_eq!(shipped(), 0, "{:?}", apns.requests());
        let pending = notifications(app, "topic=order.shipped&status=pending").await;
        assert_eq!(pending.len(), 1, "{pending:?}");
        // The quiet hours are over: the push goes, once.
        app.kernel.state.clock.advance(Duration::from_secs(6 * 60));
        app.kernel.state.bus.notify_jobs();
        wait_until("the held push delivered", async || {
            notifications(app, "topic=order.shipped&status=delivered").await.iter().any(|n| n["channel"] == "push")
        }).await;
        assert_eq!(shipped(), 1, "{:?}", apns.requests());
        shop.app.stop().await;
    }

    async fn an_order_shipped_reaches_the_customer_by_email_and_the_merchants_webhook(backend: Backend) {
        let (shop, received) = notifying_shop(backend).await;
        let app = &shop.app;
        let token = app.customer_token("ada.notify@example.com").await;
        let number = paid_order(&shop, &token).await;
        delivered_all(app).await;
        {
            let r = received.lock().unwrap();
            let subjects: Vec<&str> = r.emails.iter().map(|e| e["Subject"].as_str().unwrap()).collect();
            assert!(subjects.contains(&format!("Order {number} confirmed").as_str()), "{subjects:?}");
            assert!(r.emails.iter().all(|e| e["To"].as_str().unwrap().contains("ada.notify@example.com")));
            assert!(r.emails.iter().all(|e| e["MessageStream"] == "outbound"));
            // The bundled loyalty rule credited the order: the customer hears of it.
            assert!(subjects.iter().any(|s| s.starts_with("You earned ") && s.ends_with(" points")), "{subjects:?}");
        }
        // Shipped with a carrier: the email says both, and links to the order.
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "fulfilled", "tracking_number": "TRK-123", "carrier": "DHL"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "delivered", "carrier": "DHL"})).await;
        r.assert_field_error(422, "carrier");
        delivered_all(app).await;
        let shipped = {
            let r = received.lock().unwrap();
            r.emails.iter().find(|e| e["Subject"] == format!("Order {number} is on its way")).cloned()
                .unwrap_or_else(|| panic!("no shipping email in {:?}", r.emails))
        };
        let text = shipped["TextBody"].as_str().unwrap();
        assert!(text.contains("with DHL") && text.contains("TRK-123"), "{text}");
        let html = shipped["HtmlBody"].as_str().unwrap();
        assert!(html.contains(&format!("https://shop.example/account/orders/{number}")), "{html}");
        // The merchant's webhook heard it too, with the facts as data.
        {
            let r = received.lock().unwrap();
            let hook = r.hooks.iter().find(|h| h["topic"] == "order.shipped")
                .unwrap_or_else(|| panic!("{:?}", r.hooks));
            assert_eq!(hook["data"]["tracking_number"], "TRK-123");
            assert_eq!(hook["data"]["carrier"], "DHL");
        }
        // Staff see each notification and its attempt; the recipient is a reference.
        let list = notifications(app, "topic=order.shipped").await;
        assert_eq!(list.len(), 2, "{list:?}");
        assert!(list.iter().all(|n| n["status"] == "delivered" && n["attempts"] == 1), "{list:?}");
        assert!(!serde_json::to_string(&list).unwrap().contains("ada.notify"), "{list:?}");
        let email = list.iter().find(|n| n["channel"] == "email").unwrap();
        let id = email["id"].as_i64().unwrap();
        let r = app.admin_get(&format!("/api/v1/admin/notifications/{id}")).await;
        assert_eq!(r.json()["delivery_attempts"][0]["outcome"], "delivered", "{}", r.text());
        // A redelivered event makes no second notification.
        let before = app.count("notifications").await;
        redeliver(app, "order.fulfilled", &number).await;
        assert_eq!(app.count("notifications").await, before);
        // Resent by staff: a new notification, delivered again.
        let r = app.admin_post(&format!("/api/v1/admin/notifications/{id}/resend"), &json!({})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        delivered_all(app).await;
        let count = received.lock().unwrap().emails.iter()
            .filter(|e| e["Subject"] == format!("Order {number} is on its way")).count();
        assert_eq!(count, 2);
        let r = app.admin_post("/api/v1/admin/notifications/999999/resend", &json!({})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        shop.app.stop().await;
    }

    async fn a_recalled_batch_tells_every_customer_whose_order_received_it(backend: Backend) {
        let (shop, received) = notifying_shop(backend).await;
        let app = &shop.app;
        let token = app.customer_token("cy.recall@example.com").await;
        let number = paid_order(&shop, &token).await;
        delivered_all(app).await;
        // The order's unit came from batch B1 (the shop's only lot of MAG-60).
        let r = app.admin_post("/api/v1/admin/recalls",
            &json!({"batch": "B1", "reason": "a labelling error on the dose"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(r.json()["orders"][0]["order_number"], number.as_str());
        delivered_all(app).await;
        let subject = format!("Important: a product in order {number} is recalled");
        let email = received.lock().unwrap().emails.iter().find(|e| e["Subject"] == subject).cloned()
            .unwrap_or_else(|| panic!("no recall email in {:?}", received.lock().unwrap().emails));
        assert!(email["To"].as_str().unwrap().contains("cy.recall@example.com"), "{email}");
        let body = email["TextBody"].as_str().unwrap();
        assert!(body.contains("Batch B1 of") && body.contains("a labelling error on the dose"), "{body}");
        let sent = notifications(app, "topic=order.recalled").await;
        assert!(sent.iter().any(|n| n["channel"] == "email" && n["status"] == "delivered"), "{sent:?}");
        // The router's redelivery makes no second message.
        let before = app.count("notifications").await;
        let recall = r.json()["id"].as_i64().unwrap();
        redeliver(app, "lot.recalled", &recall.to_string()).await;
        assert_eq!(app.count("notifications").await, before);
        shop.app.stop().await;
    }

    async fn a_provider_that_asks_to_wait_is_retried_on_the_kernel_clock(backend: Backend) {
        let (shop, received) = notifying_shop(backend).await;
        let app = &shop.app;
        let token = app.customer_token("bo.notify@example.com").await;
        received.lock().unwrap().fail_once = Some(" confirmed".to_owned());
        paid_order(&shop, &token).await;
        app.settle().await;
        // The first attempt was told to wait 30 s: nothing goes before the clock moves.
        wait_until("the first attempt", async || {
            notifications(app, "topic=order.paid").await.iter()
                .any(|n| n["channel"] == "email" && n["attempts"] == 1)
        }).await;
        let email = notifications(app, "topic=order.paid").await.into_iter()
            .find(|n| n["channel"] == "email").unwrap();
        assert_eq!(email["status"], "pending", "{email}");
        assert!(email["last_error"].as_str().unwrap().contains("503"), "{email}");
        app.kernel.state.bus.notify_jobs();
        app.settle().await;
        assert_eq!(notifications(app, "topic=order.paid&status=pending").await.len(), 1);
        app.kernel.state.clock.advance(Duration::from_secs(31));
        app.kernel.state.bus.notify_jobs();
        wait_until("the retry delivered", async || {
            notifications(app, "topic=order.paid&status=delivered").await.iter().any(|n| n["channel"] == "email")
        }).await;
        let r = app.admin_get(&format!("/api/v1/admin/notifications/{}", email["id"])).await;
        let outcomes: Vec<String> = r.json()["delivery_attempts"].as_array().unwrap().iter()
            .map(|a| a["outcome"].as_str().unwrap().to_owned()).collect();
        assert_eq!(outcomes, ["retry", "delivered"], "{}", r.text());
        shop.app.stop().await;
    }

    async fn customers_choose_channels_register_devices_and_ask_about_stock(backend: Backend) {
        let (shop, received) = notifying_shop(backend).await;
        let app = &shop.app;
        let token = app.customer_token("cy.notify@example.com").await;
        // Email off: orders are told to the webhook only.
        let r = as_customer(app, &token, Method::GET, "/api/v1/account/notification-preferences", None).await;
        assert_eq!(r.json(), json!({"email": true, "push": true, "quiet_hours": null}));
        let r = as_customer(app, &token, Method::PUT, "/api/v1/account/notification-preferences",
            Some(json!({"email": false, "push": true}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = as_customer(app, &token, Method::PUT, "/api/v1/account/notification-preferences",
            Some(json!({"email": "no"}))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        paid_order(&shop, &token).await;
        delivered_all(app).await;
        let paid = notifications(app, "topic=order.paid").await;
        assert_eq!(paid.iter().map(|n| n["channel"].as_str().unwrap()).collect::<Vec<_>>(), ["webhook"]);
        assert!(received.lock().unwrap().emails.is_empty());

        // Devices: checked field by field, listed without their tokens, removed.
        let r = as_customer(app, &token, Method::POST, "/api/v1/account/devices",
            Some(json!({"platform": "sms", "token": "x y", "app_id": ""}))).await;
        for field in ["platform", "token", "app_id"] {
            r.assert_field_error(422, field);
        }
        let apns_token = "ab".repeat(32);
        let r = as_customer(app, &token, Method::POST, "/api/v1/account/devices",
            Some(json!({"platform": "apns", "token": apns_token, "app_id": "com.example.shop"}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let device = r.json()["id"].as_i64().unwrap();
        let r = as_customer(app, &token, Method::POST, "/api/v1/account/devices",
            Some(json!({"platform": "fcm", "token": "fcm-token-1", "app_id": "com.example.shop"}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let r = as_customer(app, &token, Method::GET, "/api/v1/account/devices", None).await;
        let list = r.json();
        assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
        assert!(!list.to_string().contains(&apns_token), "{list}");
        let other = app.customer_token("dee.notify@example.com").await;
        let r = as_customer(app, &other, Method::DELETE, &format!("/api/v1/account/devices/{device}"), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = as_customer(app, &token, Method::DELETE, &format!("/api/v1/account/devices/{device}"), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);

        // Back in stock: told once when stock comes in, then the request is gone.
        let r = as_customer(app, &token, Method::POST, "/api/v1/account/back-in-stock",
            Some(json!({"product": "no-such-thing"}))).await;
        r.assert_field_error(422, "product");
        let r = as_customer(app, &token, Method::POST, "/api/v1/account/back-in-stock",
            Some(json!({"product": "mag"}))).await;
        assert_eq!(r.json(), json!(["mag"]), "{}", r.text());
        let r = as_customer(app, &token, Method::PUT, "/api/v1/account/notification-preferences",
            Some(json!({"email": true, "push": false}))).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-60", "location": "AMS-1",
            "batch": "B2", "manufactured_on": date_in(-5), "expires_on": date_in(500), "quantity": 5})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        delivered_all(app).await;
        assert!(received.lock().unwrap().emails.iter().any(|e| e["Subject"] == "Test Magnesium is back"),
            "{:?}", received.lock().unwrap().emails);
        let r = as_customer(app, &token, Method::GET, "/api/v1/account/back-in-stock", None).await;
        assert_eq!(r.json(), json!([]));

        // The export lists devices, choices and notifications; erasure takes them.
        let r = as_customer(app, &token, Method::GET, "/api/v1/account/export", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let section = &r.json()["sections"]["notifications"];
        assert_eq!(section["devices"].as_array().unwrap().len(), 1, "{section}");
        assert_eq!(section["preferences"], json!({"email": true, "push": false, "quiet_hours": null}));
        assert!(!section["notifications"].as_array().unwrap().is_empty(), "{section}");
        let r = as_customer(app, &token, Method::POST, "/api/v1/account/erasure",
            Some(json!({"password": "correct horse battery", "confirm": "erase my account"}))).await;
        assert!(r.status.is_success(), "{}", r.text());
        wait_until("erased", async || app.count("customer_devices").await == 0).await;
        assert_eq!(app.count("notification_preferences").await, 0);
        shop.app.stop().await;
    }

    async fn campaigns_reach_only_customers_who_consented_and_templates_are_the_merchants(backend: Backend) {
        let (shop, received) = notifying_shop(backend).await;
        let app = &shop.app;
        let yes = app.customer_token("yes.notify@example.com").await;
        let _no = app.customer_token("no.notify@example.com").await;
        let r = as_customer(app, &yes, Method::PUT, "/api/v1/account/consents",
            Some(json!({"consents": [{"purpose": "marketing_email", "granted": true, "version": "1"}]}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = app.admin_post("/api/v1/admin/notification-campaigns", &json!({"title": "", "text": "x", "link": "ftp://x"})).await;
        r.assert_field_error(422, "title");
        r.assert_field_error(422, "link");
        let r = app.admin_post("/api/v1/admin/notification-campaigns",
            &json!({"title": "Spring <sale>", "text": "20% off serums"})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        delivered_all(app).await;
        {
            let r = received.lock().unwrap();
            let campaign: Vec<&Value> = r.emails.iter().filter(|e| e["Subject"] == "Spring <sale>").collect();
            assert_eq!(campaign.len(), 1, "{:?}", r.emails);
            assert!(campaign[0]["To"].as_str().unwrap().contains("yes.notify@example.com"));
            assert_eq!(campaign[0]["MessageStream"], "broadcast");
            assert!(r.hooks.iter().all(|h| h["topic"] != "campaign"), "marketing is not the merchant's webhook's");
        }
        // The owner writes one in the admin: a problem beside its field, then a preview
        // with its audience (nothing sent yet), then, confirmed, sent.
        {
            use crate::admin_ui::{assert_page, signed_in_as, submit};
            let mut owner = signed_in_as(app, "owner").await;
            let page = "/admin/campaigns";
            let r = submit(app, &mut owner, page, page, &[("title", "Autumn"), ("text", "New balms"), ("html", ""), ("link", "ftp://x")]).await;
            assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a bad link");
            assert!(r.text().contains("id=\"f-link-error\""), "{}", r.text());
            let fields = [("title", "Autumn"), ("text", "New balms"), ("html", ""), ("link", "https://shop.example/balms")];
            let r = submit(app, &mut owner, page, page, &fields).await;
            assert_page(&r, StatusCode::OK, "the preview");
            assert!(r.text().contains("<strong id=\"preview-audience\">1</strong>"), "{}", r.text());
            assert_eq!(app.count("notification_campaigns").await, 1, "a preview sends nothing");
            let mut confirmed = fields.to_vec();
            confirmed.push(("confirm", "yes"));
            let r = submit(app, &mut owner, page, page, &confirmed).await;
            assert_eq!(crate::common::browser::location(&r), format!("{page}?done=sent"), "{}", r.text());
            delivered_all(app).await;
            let sent = received.lock().unwrap().emails.iter().filter(|e| e["Subject"] == "Autumn").count();
            assert_eq!(sent, 1);
            let listed = crate::common::browser::get(app, &mut owner, page).await.text();
            assert!(listed.contains("Autumn") && listed.contains("delivered 1"), "{listed}");
            let mut support = signed_in_as(app, "support").await;
            assert_page(&crate::common::browser::get(app, &mut support, page).await, StatusCode::FORBIDDEN, "campaigns for support");
        }
        // The merchant's own wording, checked; an unknown placeholder is refused.
        let r = app.admin_send(Method::PUT, "/api/v1/admin/notification-templates/order.paid/email",
            &json!({"title": "Hi {{first_name}}", "text": "x", "html": null, "link": null, "enabled": true})).await;
        r.assert_field_error(422, "title");
        let r = app.admin_send(Method::PUT, "/api/v1/admin/notification-templates/order.paid/email",
            &json!({"title": "Paid: {{order_number}}", "text": "We got {{total}}.", "html": null, "link": null, "enabled": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = app.admin_send(Method::PUT, "/api/v1/admin/notification-templates/order.paid/webhook",
            &json!({"title": "x", "text": "x", "html": null, "link": null, "enabled": false})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = app.admin_get("/api/v1/admin/notification-templates").await;
        let list = r.json();
        assert!(list.as_array().unwrap().iter().any(|t| t["topic"] == "order.paid" && t["channel"] == "email"
            && t["customised"] == true), "{list}");
        let number = paid_order(&shop, &yes).await;
        delivered_all(app).await;
        {
            let r = received.lock().unwrap();
            let paid = r.emails.iter().find(|e| e["Subject"] == format!("Paid: {number}"))
                .unwrap_or_else(|| panic!("{:?}", r.emails));
            assert_eq!(paid["TextBody"], "We got EUR 24.99.");
            assert!(r.hooks.iter().all(|h| h["topic"] != "order.paid"), "turned off on the webhook");
        }
        // A support role reads notifications but may not send campaigns.
        let support = app.staff_token("support").await;
        let r = app.request(Method::GET, "/api/v1/admin/notifications", Some(&support), None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = app.request(Method::POST, "/api/v1/admin/notification-campaigns", Some(&support),
            Some(Body::from(json!({"title": "x", "text": "y"}).to_string())), Some("application/json")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        shop.app.stop().await;
    }
}

both_backends! {
    async fn support_reads_the_delivery_log_and_resends_and_the_owner_edits_a_template(backend: Backend) {
        use crate::admin_ui::{assert_page, signed_in_as, submit};
        use crate::common::browser::{get, location};
        let (shop, received) = notifying_shop(backend).await;
        let app = &shop.app;
        let token = app.customer_token("log@example.com").await;
        let number = paid_order(&shop, &token).await;
        delivered_all(app).await;
        let mut support = signed_in_as(app, "support").await;
        let log = get(app, &mut support, "/admin/notifications?topic=order.paid&status=delivered").await;
        assert_page(&log, StatusCode::OK, "the log");
        let id = notifications(app, "topic=order.paid&status=delivered").await.iter()
            .find(|n| n["channel"] == "email").expect("the order email")["id"].as_i64().unwrap();
        assert!(log.text().contains(&format!("href=\"/admin/notifications/{id}\"")), "{}", log.text());
        let page = format!("/admin/notifications/{id}");
        let r = get(app, &mut support, &page).await;
        assert_page(&r, StatusCode::OK, "a notification");
        assert!(r.text().contains(&format!("Order {number} confirmed")) && r.text().contains("delivered"), "{}", r.text());
        // Support reads; sending again is a customers.write.
        assert!(!r.text().contains("Send it again"), "{}", r.text());
        let mut owner = signed_in_as(app, "owner").await;
        let before = received.lock().unwrap().emails.len();
        let r = submit(app, &mut owner, &page, &format!("{page}/resend"), &[]).await;
        let to = location(&r);
        assert!(to.starts_with("/admin/notifications/") && to != page && to.ends_with("?done=resent"), "{to}");
        delivered_all(app).await;
        assert_eq!(received.lock().unwrap().emails.len(), before + 1);
        // Templates are settings: not support's.
        assert_page(&get(app, &mut support, "/admin/notification-templates").await, StatusCode::FORBIDDEN, "templates for support");
        let edit = "/admin/notification-templates/order.shipped/email";
        let form = get(app, &mut owner, edit).await;
        assert_page(&form, StatusCode::OK, "a template");
        let r = submit(app, &mut owner, edit, edit, &[("title", "On its way: {{order_number}}"),
            ("text", "Tracking: {{no_such_placeholder}}"), ("enabled", "yes")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "an unknown placeholder");
        assert!(r.text().contains("id=\"f-text-error\""), "{}", r.text());
        let r = submit(app, &mut owner, edit, edit, &[("title", "On its way: {{order_number}}"),
            ("text", "Tracking: {{tracking_number}}"), ("enabled", "yes")]).await;
        assert_eq!(location(&r), "/admin/notification-templates?done=saved");
        let templates = app.admin_get("/api/v1/admin/notification-templates").await.json();
        let shipped = templates.as_array().unwrap().iter()
            .find(|t| t["topic"] == "order.shipped" && t["channel"] == "email").unwrap();
        assert_eq!((shipped["title"].as_str(), shipped["customised"].as_bool()), (Some("On its way: {{order_number}}"), Some(true)), "{shipped}");
    }
}
