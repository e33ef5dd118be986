//! Paying at checkout through the first-party payment adapter (plugins/sandbox-payments)
//! against the sandbox processor (examples/sandbox-processor), both real: the card goes
//! to the processor, the kernel sees only its token; approved orders are paid, declined
//! ones cancelled with their stock back, a processor that asks for a retry keeps the
//! order pending until the same checkout is sent again; capture on fulfilment, partial
//! and full refunds, and voids.

use std::time::Duration;

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 call to the processor (what the browser's checkout page does for
/// tokenization; tests also read the processor's state this way).
async fn processor(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("processor up");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nIdempotency-Key: test-{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        rand_key(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let payload = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

fn rand_key() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub(crate) async fn tokenize(addr: std::net::SocketAddr, number: &str) -> String {
    let (status, body) = processor(
        addr,
        "POST",
        "/v1/tokens",
        Some(json!({"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

pub(crate) async fn authorizations(addr: std::net::SocketAddr, reference: &str) -> Vec<Value> {
    let (status, body) = processor(
        addr,
        "GET",
        &format!("/v1/authorizations?reference={reference}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().cloned().unwrap_or_default()
}

pub(crate) struct Shop {
    pub(crate) app: TestApp,
    pub(crate) processor: std::net::SocketAddr,
    pub(crate) lot: i64,
    pub(crate) _handle: sandbox_processor::Handle,
}

pub(crate) async fn shop(backend: Backend) -> Shop {
    shop_with(backend, |_| {}).await
}

pub(crate) async fn shop_with(
    backend: Backend,
    adjust: impl FnOnce(&mut olivine::config::ServeConfig),
) -> Shop {
    let (addr, handle) = sandbox_processor::spawn_with(
        "127.0.0.1:0",
        sandbox_processor::Config {
            timeout: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await
    .expect("sandbox processor");
    let app = TestApp::start_with(backend, adjust).await;
    basic_setup(&app).await;
    let r = app
        .admin_post("/api/v1/admin/products", &supplement("mag", "MAG"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-60", "location": "AMS-1",
        "batch": "B1", "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": 10})).await;
    let lot = r.json()["id"].as_i64().unwrap();
    let r = app.admin_send(Method::PUT, "/api/v1/admin/shipping-rates", &json!([
        {"code": "standard", "name": "Standard", "country": "*", "max_weight_grams": 5000, "price_minor": 500, "currency": "EUR"}
    ])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app
        .admin_post(
            "/api/v1/admin/plugins",
            &plugin_upload("sandbox-payments", "sandbox_payments", |m| m),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let host = addr.to_string();
    let r = app.admin_patch("/api/v1/admin/plugins/sandbox-payments", &json!({
        "enabled": true, "settings": {"base_url": format!("http://{host}")}, "granted_hosts": [host],
    })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.settle().await;
    Shop {
        app,
        processor: addr,
        lot,
        _handle: handle,
    }
}

async fn cart(app: &TestApp, quantity: u32) -> String {
    let r = app
        .request(Method::POST, "/api/v1/carts", None, None, None)
        .await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/carts/{id}/lines"),
            None,
            Some(Body::from(
                json!({"sku": "MAG-60", "quantity": quantity}).to_string(),
            )),
            Some("application/json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    id
}

async fn checkout(app: &TestApp, cart: &str, key: &str, token: &str) -> TestResponse {
    let body = json!({"email": "buyer@example.com", "shipping_method": "standard", "payment_token": token,
        "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Utrecht", "postal_code": "3511 AB", "country": "NL"}});
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/carts/{cart}/checkout"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send(request).await
}

pub(crate) async fn lot_quantity(app: &TestApp, lot: i64) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT quantity FROM lots WHERE id = $1")
        .bind(lot)
        .fetch_one(&app.kernel.state.db.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

both_backends! {
    async fn approved_then_captured_on_fulfilment_then_refunded_in_parts(backend: Backend) {
        let shop = shop(backend).await;
        let app = &shop.app;
        let token = tokenize(shop.processor, "4242424242424242").await;
        let c = cart(app, 2).await;
        let r = checkout(app, &c, "pay-1", &token).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let order = r.json();
        assert_eq!(order["status"], "paid", "{order}");
        let number = order["number"].as_str().unwrap().to_owned();
        // The checkout answers the order as it was written, not read back: the same.
        assert_eq!(app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json(), order);
        let total = order["total_minor"].as_i64().unwrap();
        assert_eq!(total, 3998 + 500);
        let auths = authorizations(shop.processor, &number).await;
        assert_eq!(auths.len(), 1, "{auths:?}");
        assert_eq!((auths[0]["amount_minor"].as_i64(), auths[0]["captured_minor"].as_i64()), (Some(total), Some(0)));
        assert_eq!(auths[0]["id"], order["payment_reference"]);
        // Shipping captures the payment.
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "fulfilled", "tracking_number": "TRK-1"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let auth = &authorizations(shop.processor, &number).await[0];
        assert_eq!(auth["captured_minor"].as_i64(), Some(total), "{auth}");
        // A partial refund, then the rest.
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/refunds"), &json!({"amount_minor": 1000})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!((r.json()["status"].as_str(), r.json()["refunded_minor"].as_i64()), (Some("fulfilled"), Some(1000)));
        app.admin_post(&format!("/api/v1/admin/orders/{number}/refunds"), &json!({"amount_minor": total}))
            .await.assert_field_error(422, "amount_minor");
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/refunds"), &json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!((r.json()["status"].as_str(), r.json()["refunded_minor"].as_i64()), (Some("refunded"), Some(total)));
        let auth = &authorizations(shop.processor, &number).await[0];
        assert_eq!(auth["refunded_minor"].as_i64(), Some(total), "{auth}");
        shop.app.stop().await;
    }

    async fn a_declined_card_cancels_the_order_and_frees_the_stock(backend: Backend) {
        let shop = shop(backend).await;
        let app = &shop.app;
        let token = tokenize(shop.processor, "4000000000009995").await;
        let c = cart(app, 3).await;
        let r = checkout(app, &c, "declined-1", &token).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text());
        assert_eq!(r.json()["error"], "payment_declined");
        assert!(!r.json()["message"].as_str().unwrap().is_empty());
        assert_eq!(lot_quantity(app, shop.lot).await, 10, "the reservation is released");
        let orders = app.admin_get("/api/v1/admin/orders").await.json();
        assert_eq!(orders[0]["status"], "cancelled", "{orders}");
        // The decision records the adapter's status, never the token or the card.
        let declined = async || {
            let all = app.admin_get("/api/v1/admin/plugins/sandbox-payments/decisions").await.json();
            all.as_array().unwrap().iter().find(|d| d["call"] == "authorize" && d["outcome"] == "declined").cloned()
        };
        wait_until("the decline recorded", async || declined().await.is_some()).await;
        let decision = declined().await.unwrap();
        assert_eq!(decision["detail"]["status"], "declined", "{decision}");
        assert!(decision["detail"]["hard"].is_boolean(), "{decision}");
        assert_eq!(decision["detail"].as_object().unwrap().len(), 2, "status and hard only: {decision}");
        let text = decision.to_string();
        assert!(!text.contains(&token) && !text.contains("9995"), "{text}");
        // The cart is open again. The same key answers the cancelled order and places
        // no other; a new key with another card pays.
        let r = checkout(app, &c, "declined-1", &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!((r.json()["status"].as_str(), r.json()["number"].as_str()), (Some("cancelled"), orders[0]["number"].as_str()));
        assert_eq!(app.count("orders").await, 1);
        assert_eq!(lot_quantity(app, shop.lot).await, 10);
        let good = tokenize(shop.processor, "4242424242424242").await;
        let r = checkout(app, &c, "declined-2", &good).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(r.json()["status"], "paid");
        assert_eq!(lot_quantity(app, shop.lot).await, 7);
        shop.app.stop().await;
    }

    async fn a_processor_asking_for_a_retry_keeps_the_order_until_the_same_checkout_comes_again(backend: Backend) {
        let shop = shop(backend).await;
        let app = &shop.app;
        let token = tokenize(shop.processor, "4000000000000119").await;
        let c = cart(app, 1).await;
        let r = checkout(app, &c, "retry-1", &token).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        assert_eq!(lot_quantity(app, shop.lot).await, 9, "still reserved");
        let orders = app.admin_get("/api/v1/admin/orders").await.json();
        assert_eq!(orders[0]["status"], "pending");
        let number = orders[0]["number"].as_str().unwrap().to_owned();
        let r = checkout(app, &c, "retry-1", &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!((r.json()["status"].as_str(), r.json()["number"].as_str()), (Some("paid"), Some(number.as_str())));
        assert_eq!(authorizations(shop.processor, &number).await.len(), 1, "one authorization, not two");
        assert_eq!(app.count("orders").await, 1);
        shop.app.stop().await;
    }

    async fn cancelling_a_paid_order_voids_the_payment(backend: Backend) {
        let shop = shop(backend).await;
        let app = &shop.app;
        let token = tokenize(shop.processor, "4242424242424242").await;
        let c = cart(app, 4).await;
        let number = checkout(app, &c, "void-1", &token).await.json()["number"].as_str().unwrap().to_owned();
        assert_eq!(lot_quantity(app, shop.lot).await, 6);
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"), &json!({"to": "cancelled"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let auth = &authorizations(shop.processor, &number).await[0];
        assert_eq!(auth["status"], "voided", "{auth}");
        assert_eq!(lot_quantity(app, shop.lot).await, 10);
        // Nothing paid is left to refund.
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/refunds"), &json!({})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        shop.app.stop().await;
    }

    async fn two_checkouts_with_one_key_make_one_order_and_one_authorization(backend: Backend) {
        let shop = shop(backend).await;
        let token = tokenize(shop.processor, "4242424242424242").await;
        let c = cart(&shop.app, 1).await;
        let (a, b) = tokio::join!(checkout(&shop.app, &c, "same", &token), checkout(&shop.app, &c, "same", &token));
        for r in [&a, &b] {
            assert!(r.status == StatusCode::CREATED || r.status == StatusCode::OK, "{} {}", r.status, r.text());
        }
        assert_eq!(a.json()["number"], b.json()["number"]);
        let number = a.json()["number"].as_str().unwrap().to_owned();
        assert_eq!(shop.app.count("orders").await, 1);
        assert_eq!(authorizations(shop.processor, &number).await.len(), 1);
        shop.app.stop().await;
    }
}

both_backends! {
    async fn the_reconciler_completes_a_payment_the_checkout_left_unsettled(backend: Backend) {
        let shop = shop(backend).await;
        let app = &shop.app;
        // The processor asks for a retry: the order stays pending with its attempt on record.
        let token = tokenize(shop.processor, "4000000000000119").await;
        let c = cart(app, 2).await;
        let r = checkout(app, &c, "reconcile-1", &token).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        let number = app.admin_get("/api/v1/admin/orders").await.json()[0]["number"].as_str().unwrap().to_owned();
        let state = &app.kernel.state;
        // Within the grace a live checkout is left alone.
        let report = olivine::orders::reconcile::reconcile_once(state, Duration::from_secs(3600)).await.unwrap();
        assert_eq!(report, Default::default());
        // Past it, the same key is authorised again: paid, one authorisation.
        let report = olivine::orders::reconcile::reconcile_once(state, Duration::ZERO).await.unwrap();
        assert_eq!(report.paid, 1, "{report:?}");
        let order = app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json();
        assert_eq!(order["status"], "paid", "{order}");
        assert_eq!(authorizations(shop.processor, &number).await.len(), 1);
        assert_eq!(lot_quantity(app, shop.lot).await, 8);
        // Nothing left to do; the token is gone from the order.
        let report = olivine::orders::reconcile::reconcile_once(state, Duration::ZERO).await.unwrap();
        assert_eq!(report, Default::default());
        let tokens: i64 = {
            use sqlx::Row;
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM orders WHERE payment_token_enc IS NOT NULL")
                .fetch_one(&state.db.pool).await.unwrap().get(0)
        };
        assert_eq!(tokens, 0);
        shop.app.stop().await;
    }

    async fn the_reconciler_gives_up_on_a_payment_after_a_day(backend: Backend) {
        let shop = shop(backend).await;
        let app = &shop.app;
        // The timeout card: the processor never answers (within the adapter's patience).
        let token = tokenize(shop.processor, "4000000000000036").await;
        let c = cart(app, 3).await;
        let r = checkout(app, &c, "give-up-1", &token).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        assert_eq!(lot_quantity(app, shop.lot).await, 7);
        let state = &app.kernel.state;
        let report = olivine::orders::reconcile::reconcile_once(state, Duration::ZERO).await.unwrap();
        assert_eq!(report.waiting, 1, "{report:?}");
        // A day later it is given up: voided at the processor by order, cancelled, stock back.
        sqlx::query("UPDATE orders SET created_at = '2020-01-01T00:00:00.000Z'")
            .execute(&state.db.pool).await.unwrap();
        let report = olivine::orders::reconcile::reconcile_once(state, Duration::ZERO).await.unwrap();
        assert_eq!(report.cancelled, 1, "{report:?}");
        let order = &app.admin_get("/api/v1/admin/orders").await.json()[0];
        assert_eq!(order["status"], "cancelled", "{order}");
        assert_eq!(lot_quantity(app, shop.lot).await, 10);
        shop.app.stop().await;
    }
}

both_backends! {
    async fn a_kernel_killed_after_the_processor_authorised_is_completed_by_the_next_start(backend: Backend) {
        use crate::common::process::{free_port, http_with_headers, spawn_with, wait_exit, wait_ready};
        use sqlx::Row;
        // The shop set up in-process (plugin installed and pointed at the processor, a
        // lot of 10), then stopped: the real binary takes over its database.
        let shop = shop(backend).await;
        let token = tokenize(shop.processor, "4242424242424242").await;
        let c = cart(&shop.app, 2).await;
        let Shop { app, processor, lot, _handle } = shop;
        let TestApp { kernel, db, .. } = app;
        kernel.shutdown().await;

        // The kernel dies right after the processor authorised, before it recorded it.
        let port = free_port();
        let mut child = spawn_with(&db, port, "payments.authorized", &[]);
        tokio::task::spawn_blocking(move || wait_ready(port)).await.unwrap();
        let body = json!({"email": "buyer@example.com", "shipping_method": "standard", "payment_token": token,
            "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Utrecht", "postal_code": "3511 AB", "country": "NL"}})
            .to_string();
        let path = format!("/api/v1/carts/{c}/checkout");
        let answer = tokio::task::spawn_blocking(move || {
            http_with_headers(port, "POST", &path, &[("Idempotency-Key", "crash-1")], Some(&body))
        })
        .await
        .unwrap();
        assert!(answer.is_none(), "the process should have died mid-checkout: {answer:?}");
        assert!(!wait_exit(&mut child).success());

        let conn = db.connect().await;
        let row = sqlx::query("SELECT number, status, payment_token_enc FROM orders").fetch_one(&conn.pool).await.unwrap();
        let number: String = row.get(0);
        assert_eq!(row.get::<String, _>(1), "pending", "the answer was never recorded");
        assert!(row.get::<Option<String>, _>(2).is_some(), "the attempt is on record");
        let auths = authorizations(processor, &number).await;
        assert_eq!(auths.len(), 1, "the processor holds an authorisation: {auths:?}");
        assert_eq!(auths[0]["status"], "authorized");

        // The next start settles it: the same key answers the same authorisation.
        let mut child = spawn_with(&db, port, "", &[("OLIVINE_PAYMENT_RECONCILE_GRACE_SECS", "0")]);
        tokio::task::spawn_blocking(move || wait_ready(port)).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let status: String = sqlx::query("SELECT status FROM orders").fetch_one(&conn.pool).await.unwrap().get(0);
            if status == "paid" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the order is still {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let auths = authorizations(processor, &number).await;
        assert_eq!(auths.len(), 1, "one authorisation, not two: {auths:?}");
        let reference: Option<String> = sqlx::query("SELECT payment_reference FROM orders")
            .fetch_one(&conn.pool).await.unwrap().get(0);
        assert_eq!(reference.as_deref(), auths[0]["id"].as_str(), "the order holds the authorisation");
        let quantity: i64 = sqlx::query("SELECT quantity FROM lots WHERE id = $1").bind(lot)
            .fetch_one(&conn.pool).await.unwrap().get(0);
        assert_eq!(quantity, 8, "the order keeps its stock");
        child.kill().ok();
        child.wait().ok();
        conn.close().await;
        db.drop().await;
    }
}
