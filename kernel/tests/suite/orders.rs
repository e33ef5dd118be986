//! Checkout and orders: one transaction reserves lots and places the order; the same
//! Idempotency-Key never places two; racing buyers never oversell; orders move only
//! through their explicit states; a customer sees only their own orders.

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> TestResponse {
    app.request(
        method,
        path,
        token,
        body.map(|b| Body::from(b.to_string())),
        Some("application/json"),
    )
    .await
}

/// MAG-60 (19.99 EUR, 120 g) with `quantity` in one lot; standard shipping 4.95 to NL
/// up to 2 kg; 21% tax in NL.
async fn store(app: &TestApp, quantity: i64) -> i64 {
    basic_setup(app).await;
    let r = app
        .admin_post("/api/v1/admin/products", &supplement("mag", "MAG"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-60", "location": "AMS-1",
        "batch": "B1", "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": quantity})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let lot = r.json()["id"].as_i64().unwrap();
    let r = app.admin_send(Method::PUT, "/api/v1/admin/shipping-rates", &json!([
        {"code": "standard", "name": "Standard", "country": "NL", "max_weight_grams": 2000, "price_minor": 495, "currency": "EUR"},
        {"code": "standard", "name": "Standard", "country": "*", "max_weight_grams": 2000, "price_minor": 1495, "currency": "EUR"}
    ])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app
        .admin_send(
            Method::PUT,
            "/api/v1/admin/tax-rates",
            &json!([{"country": "NL", "rate_bp": 2100}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    lot
}

async fn cart_with(app: &TestApp, token: Option<&str>, quantity: u32) -> String {
    let r = send(app, Method::POST, "/api/v1/carts", token, None).await;
    let cart = r.json()["id"].as_str().unwrap().to_owned();
    let r = send(
        app,
        Method::POST,
        &format!("/api/v1/carts/{cart}/lines"),
        token,
        Some(json!({"sku": "MAG-60", "quantity": quantity})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    cart
}

fn checkout_body() -> Value {
    json!({"email": "buyer@example.com", "shipping_method": "standard",
        "shipping_address": {"name": "Ada Buyer", "line1": "Keizersgracht 1", "city": "Amsterdam",
            "postal_code": "1015 AA", "country": "nl"}})
}

async fn checkout(
    app: &TestApp,
    cart: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Value,
) -> TestResponse {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/carts/{cart}/checkout"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    app.send(builder.body(Body::from(body.to_string())).unwrap())
        .await
}

async fn lot_quantity(app: &TestApp, lot: i64) -> i64 {
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
    async fn the_quote_is_what_the_checkout_charges_and_a_changed_total_is_refused(backend: Backend) {
        let app = TestApp::start(backend).await;
        let lot = store(&app, 10).await;
        let r = app.admin_send(Method::PUT, "/api/v1/admin/tax-rates",
            &json!([{"country": "NL", "rate_bp": 2100}, {"country": "DE", "rate_bp": 1900}])).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let cart = cart_with(&app, None, 2).await;
        let path = format!("/api/v1/carts/{cart}/checkout-quote");
        let quote = |body: Value| send(&app, Method::POST, &path, None, Some(body));

        // Net prices (the default): 2 x 19.99 + 4.95 to NL, 21 % added on each.
        let nl = quote(json!({"country": "nl", "shipping_method": "standard"})).await;
        assert_eq!(nl.status, StatusCode::OK, "{}", nl.text());
        let nl = nl.json();
        assert_eq!((nl["goods_minor"].as_i64(), nl["shipping_minor"].as_i64(), nl["tax_minor"].as_i64(), nl["total_minor"].as_i64()),
            (Some(3998), Some(495), Some(944), Some(5437)), "{nl}");
        assert_eq!(nl["prices_include_tax"], false);
        assert_eq!(nl["lines"][0]["tax_minor"], 840);
        assert_eq!(nl["shipping_tax_minor"], 104);
        assert_eq!(nl["lines"][0]["title"], "Test Magnesium – 60 capsules", "{nl}");
        // Germany: the `*` rate and 19 %. Every method there, with its total.
        let de = quote(json!({"country": "DE"})).await.json();
        assert_eq!((de["shipping_minor"].as_i64(), de["tax_rate_bp"].as_i64(), de["tax_minor"].as_i64()),
            (Some(1495), Some(1900), Some(760 + 284)), "{de}");
        assert_eq!(de["methods"][0]["total_minor"], de["total_minor"]);
        // Nowhere to ship, a method that does not go there, bad input: said per field.
        let r = app.admin_send(Method::PUT, "/api/v1/admin/shipping-rates", &json!([
            {"code": "standard", "name": "Standard", "country": "NL", "max_weight_grams": 2000, "price_minor": 495, "currency": "EUR"},
            {"code": "standard", "name": "Standard", "country": "DE", "max_weight_grams": 2000, "price_minor": 1495, "currency": "EUR"}
        ])).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        quote(json!({"country": "US"})).await.assert_field_error(422, "country");
        quote(json!({"country": "NL", "shipping_method": "drone"})).await.assert_field_error(422, "shipping_method");
        quote(json!({"country": "Netherlands"})).await.assert_field_error(422, "country");
        assert_eq!(send(&app, Method::POST, "/api/v1/carts/cart_nope/checkout-quote", None, Some(json!({"country": "NL"}))).await.status,
            StatusCode::NOT_FOUND);

        // The checkout charges the quote's total; another total is refused with the new
        // quote, and nothing is placed or reserved.
        let mut body = checkout_body();
        body["expected_total_minor"] = json!(5437 - 1);
        let r = checkout(&app, &cart, None, Some("quote-1"), body.clone()).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        assert_eq!(r.json()["error"], "total_changed");
        assert_eq!(r.json()["quote"]["total_minor"], 5437);
        assert!(r.json()["fields"][0]["field"] == "expected_total_minor", "{}", r.text());
        assert_eq!(app.count("orders").await, 0);
        assert_eq!(lot_quantity(&app, lot).await, 10);
        body["expected_total_minor"] = json!(5437);
        let r = checkout(&app, &cart, None, Some("quote-1"), body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let order = r.json();
        assert_eq!(order["total_minor"], 5437);
        assert_eq!(order["lines"][0]["tax_minor"], 840);
        assert_eq!(order["tax_rate_bp"], 2100);
        let number = order["number"].as_str().unwrap();
        assert_eq!(app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json(), order);
        app.stop().await;
    }

    async fn with_prices_including_vat_the_shelf_price_is_what_the_shopper_pays(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app, 10).await;
        let r = app.admin_send(Method::PUT, "/api/v1/admin/tax-rates",
            &json!([{"country": "NL", "rate_bp": 2100}, {"country": "DE", "rate_bp": 1900}])).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"prices_include_tax": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["prices_include_tax"], true);
        app.settle().await;
        let cart = cart_with(&app, None, 2).await;
        for (country, shipping, rate, vat) in [("NL", 495, 2100, 694 + 86), ("DE", 1495, 1900, 638 + 239)] {
            let quote = send(&app, Method::POST, &format!("/api/v1/carts/{cart}/checkout-quote"), None,
                Some(json!({"country": country}))).await.json();
            // The total is goods + shipping as priced; the VAT in them is broken out at the
            // destination's rate (39.98 x 21/121 = 6.94, 4.95 x 21/121 = 0.86).
            assert_eq!(quote["prices_include_tax"], true, "{quote}");
            assert_eq!(quote["total_minor"], 3998 + shipping, "{quote}");
            assert_eq!(quote["tax_rate_bp"], rate, "{quote}");
            assert_eq!(quote["tax_minor"], vat, "{quote}");
        }
        let mut body = checkout_body();
        body["shipping_address"]["country"] = json!("de");
        body["expected_total_minor"] = json!(3998 + 1495);
        let r = checkout(&app, &cart, None, Some("gross-1"), body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let order = r.json();
        assert_eq!((order["total_minor"].as_i64(), order["tax_minor"].as_i64(), order["prices_include_tax"].as_bool()),
            (Some(3998 + 1495), Some(638 + 239), Some(true)), "{order}");
        assert_eq!(order["lines"][0]["tax_minor"], 638, "{order}");
        app.stop().await;
    }

    async fn a_bundle_and_its_component_in_one_cart_take_the_components_lots(backend: Backend) {
        use sqlx::Row;
        let app = TestApp::start(backend).await;
        let lot = store(&app, 10).await;
        let kit = app.admin_post("/api/v1/admin/products", &json!({
            "slug": "mag-3-pack", "name": "3 x Magnesium", "product_type": "bundle",
            "attributes": {"kind": "multipack"},
            "variants": [{"sku": "MAG-3PK", "title": "3-pack", "price_minor": 4999, "currency": "EUR",
                          "weight_grams": 400, "components": [{"sku": "MAG-60", "quantity": 3}]}]
        })).await;
        assert_eq!(kit.status, StatusCode::CREATED, "{}", kit.text());
        let cart = send(&app, Method::POST, "/api/v1/carts", None, None).await.json()["id"].as_str().unwrap().to_owned();
        for (sku, quantity) in [("MAG-3PK", 2), ("MAG-60", 3)] {
            let r = send(&app, Method::POST, &format!("/api/v1/carts/{cart}/lines"), None,
                Some(json!({"sku": sku, "quantity": quantity}))).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
        let r = checkout(&app, &cart, None, Some("kit-1"), checkout_body()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let number = r.json()["number"].as_str().unwrap().to_owned();
        assert_eq!(r.json()["lines"].as_array().unwrap().len(), 2);
        // 2 bundles of 3 and 3 singles: 9 units from the one lot, in one allocation
        // and one ledger entry naming the order.
        assert_eq!(lot_quantity(&app, lot).await, 1);
        let pool = &app.kernel.state.db.pool;
        let allocated: Vec<(i64, i64)> = sqlx::query("SELECT lot_id, quantity FROM order_allocations")
            .fetch_all(pool).await.unwrap().iter().map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap())).collect();
        assert_eq!(allocated, vec![(lot, 9)]);
        let ledger: Vec<(i64, i64, String)> = sqlx::query(
            "SELECT delta, quantity_after, reference FROM stock_ledger WHERE reason = 'allocated'")
            .fetch_all(pool).await.unwrap().iter()
            .map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap(), r.try_get(2).unwrap())).collect();
        assert_eq!(ledger, vec![(-9, 1, number)]);
        // The stock event names the product and the bundle, whose pages show this stock.
        let payload: String = sqlx::query("SELECT payload FROM outbox WHERE event_type = 'stock.changed' ORDER BY id DESC")
            .fetch_one(pool).await.unwrap().try_get(0).unwrap();
        let event: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!((event["delta"].as_i64(), event["quantity_after"].as_i64()), (Some(-9), Some(1)), "{event}");
        assert_eq!(event["products"], json!(["mag", "mag-3-pack"]), "{event}");
        // One more bundle is more than is left.
        let cart = send(&app, Method::POST, "/api/v1/carts", None, None).await.json()["id"].as_str().unwrap().to_owned();
        let r = send(&app, Method::POST, &format!("/api/v1/carts/{cart}/lines"), None,
            Some(json!({"sku": "MAG-3PK", "quantity": 1}))).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        app.stop().await;
    }

    async fn a_recalled_batch_stops_selling_and_its_report_names_every_order(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app, 3).await;
        // A second batch that expires later: first expired, first out sells B1 first.
        let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-60", "location": "AMS-1",
            "batch": "B2", "manufactured_on": date_in(-10), "expires_on": date_in(500), "quantity": 5})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let cart = cart_with(&app, None, 2).await;
        let first = checkout(&app, &cart, None, Some("recall-1"), checkout_body()).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
        // Three units: the last one of B1 and two of B2.
        let cart = cart_with(&app, None, 3).await;
        let mut body = checkout_body();
        body["email"] = json!("second@example.com");
        let second = checkout(&app, &cart, None, Some("recall-2"), body).await;
        assert_eq!(second.status, StatusCode::CREATED, "{}", second.text());
        let second = second.json()["number"].as_str().unwrap().to_owned();
        // A shopper holds the three units of B2 left in a cart.
        let waiting = cart_with(&app, None, 3).await;

        // Catalog staff recall (inventory.write); bad input names the field.
        let catalog = app.staff_token("catalog").await;
        let recall = |body: Value| send(&app, Method::POST, "/api/v1/admin/recalls", Some(&catalog), Some(body));
        recall(json!({"batch": "B2", "reason": " "})).await.assert_field_error(422, "reason");
        recall(json!({"batch": "NOPE", "reason": "notice"})).await.assert_field_error(422, "batch");
        recall(json!({"batch": "B2", "sku": "MAG-120", "reason": "notice"})).await.assert_field_error(422, "sku");
        let r = recall(json!({"batch": "B2", "reason": "Supplier notice 2026-12-01"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let report = r.json();
        let id = report["id"].as_i64().unwrap();
        assert_eq!(report["lots"].as_array().unwrap().len(), 1, "{report}");
        assert_eq!(report["lots"][0]["quantity"], 3);
        let orders = report["orders"].as_array().unwrap();
        assert_eq!(orders.len(), 1, "only the order with units of B2: {report}");
        assert_eq!((orders[0]["order_number"].as_str(), orders[0]["email"].as_str(), orders[0]["units"].as_i64()),
            (Some(second.as_str()), Some("second@example.com"), Some(2)));
        assert_eq!(report["units_sold"], 2);
        recall(json!({"batch": "B2", "reason": "again"})).await.assert_field_error(409, "batch");

        // It stops selling at once: B1 is sold out and B2 recalled.
        app.settle().await;
        let product = app.get("/api/v1/products/mag").await.json();
        assert_eq!(product["variants"][0]["availability"]["sellable_quantity"], 0, "{product}");
        let lots = app.admin_get("/api/v1/admin/lots?sku=MAG-60").await.json();
        let b2 = lots.as_array().unwrap().iter().find(|l| l["batch"] == "B2").unwrap().clone();
        assert_eq!((b2["quantity"].as_i64(), b2["sellable"].as_bool()), (Some(3), Some(false)));
        let r = checkout(&app, &waiting, None, Some("recall-3"), checkout_body()).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());

        // The report names customers: customers.read, which catalog staff lack.
        let path = format!("/api/v1/admin/recalls/{id}");
        assert_eq!(send(&app, Method::GET, &path, Some(&catalog), None).await.status, StatusCode::FORBIDDEN);
        let support = app.staff_token("support").await;
        let r = send(&app, Method::GET, &path, Some(&support), None).await;
        assert_eq!(r.json(), report);
        let r = app.request(Method::GET, &format!("{path}/report.csv"), Some(&support), None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
        let csv = r.text();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "order_number,status,ordered_at,customer_id,email,sku,batch,units");
        assert_eq!(lines.len(), 2, "{csv}");
        assert!(lines[1].starts_with(&format!("{second},pending,")) && lines[1].ends_with(",second@example.com,MAG-60,B2,2"), "{csv}");
        assert_eq!(send(&app, Method::GET, "/api/v1/admin/recalls", Some(&support), None).await.json()[0]["lots"], 1);
        let audit = app.admin_get("/api/v1/admin/audit?action=stock.recalled").await.json();
        assert_eq!(audit["entries"][0]["after"]["batch"], "B2", "{audit}");
        app.stop().await;
    }

    async fn a_guest_checks_out_once_per_idempotency_key(backend: Backend) {
        let app = TestApp::start(backend).await;
        let lot = store(&app, 10).await;
        let cart = cart_with(&app, None, 2).await;
        let r = checkout(&app, &cart, None, Some("key-1"), checkout_body()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let order = r.json();
        assert_eq!(order["status"], "pending");
        // The answer is the order as written: what staff read back is the same.
        let number = order["number"].as_str().unwrap();
        assert_eq!(app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json(), order);
        // 2 x 19.99 + 4.95 shipping, 21% tax on both (943.53 rounds to 944).
        assert_eq!((order["subtotal_minor"].as_i64(), order["shipping_minor"].as_i64(), order["tax_minor"].as_i64(), order["total_minor"].as_i64()),
            (Some(3998), Some(495), Some(944), Some(5437)), "{order}");
        assert_eq!(order["shipping_address"]["country"], "NL");
        assert!(order["number"].as_str().unwrap().starts_with("OL-"));
        assert_eq!(lot_quantity(&app, lot).await, 8, "stock reserved");
        // The same key: the same order, not another.
        let again = checkout(&app, &cart, None, Some("key-1"), checkout_body()).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text());
        assert_eq!(again.json()["number"], order["number"]);
        assert_eq!(app.count("orders").await, 1);
        assert_eq!(lot_quantity(&app, lot).await, 8);
        // The cart is closed; its key does not fit another cart; a key is required.
        assert_eq!(send(&app, Method::GET, &format!("/api/v1/carts/{cart}"), None, None).await.status, StatusCode::NOT_FOUND);
        let other = cart_with(&app, None, 1).await;
        checkout(&app, &other, None, Some("key-1"), checkout_body()).await.assert_field_error(409, "Idempotency-Key");
        checkout(&app, &other, None, None, checkout_body()).await.assert_field_error(400, "Idempotency-Key");
        // Identity on the order is encrypted at rest.
        use sqlx::Row;
        let row = sqlx::query("SELECT email_enc, shipping_address_enc FROM orders").fetch_one(&app.kernel.state.db.pool).await.unwrap();
        for i in 0..2 {
            let stored: String = row.try_get(i).unwrap();
            assert!(!stored.contains("buyer@") && !stored.contains("Keizersgracht"), "{stored}");
        }
        // The order's event is in the outbox, email-ready (number, lines, totals) and
        // without personal data.
        let events: Vec<String> = sqlx::query("SELECT payload FROM outbox WHERE event_type = 'order.placed'")
            .fetch_all(&app.kernel.state.db.pool).await.unwrap().iter().map(|r| r.try_get(0).unwrap()).collect();
        assert_eq!(events.len(), 1);
        let event: Value = serde_json::from_str(&events[0]).unwrap();
        let number = event["number"].as_str().unwrap().to_owned();
        let order = app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json();
        assert_eq!(event["number"], order["number"], "{event}");
        assert_eq!(event["total_minor"], order["total_minor"], "{event}");
        assert_eq!(event["lines"][0]["quantity"], order["lines"][0]["quantity"], "{event}");
        assert_eq!(event["lines"][0]["title"], order["lines"][0]["title"], "{event}");
        assert!(!events[0].contains("buyer@") && !events[0].contains("Keizersgracht"), "{event}");
        app.stop().await;
    }

    async fn racing_checkouts_of_one_key_place_one_order(backend: Backend) {
        let app = TestApp::start(backend).await;
        let lot = store(&app, 10).await;
        let cart = cart_with(&app, None, 3).await;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let router = app.router.clone();
            let cart = cart.clone();
            tasks.push(tokio::spawn(async move {
                let request = Request::builder().method(Method::POST).uri(format!("/api/v1/carts/{cart}/checkout"))
                    .header(header::CONTENT_TYPE, "application/json").header("idempotency-key", "same-key")
                    .body(Body::from(checkout_body().to_string())).unwrap();
                let response = router.oneshot(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, serde_json::from_slice::<Value>(&body).unwrap())
            }));
        }
        let mut numbers = std::collections::BTreeSet::new();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status} {body}");
            numbers.insert(body["number"].as_str().unwrap().to_owned());
        }
        assert_eq!(numbers.len(), 1, "one order for one key");
        assert_eq!(app.count("orders").await, 1);
        assert_eq!(lot_quantity(&app, lot).await, 7);
        app.stop().await;
    }

    async fn sixty_four_buyers_race_for_the_last_ten_units(backend: Backend) {
        let app = TestApp::start(backend).await;
        let lot = store(&app, 10).await;
        let mut carts = Vec::new();
        for _ in 0..64 {
            carts.push(cart_with(&app, None, 1).await);
        }
        let mut tasks = Vec::new();
        for (i, cart) in carts.into_iter().enumerate() {
            let router = app.router.clone();
            tasks.push(tokio::spawn(async move {
                let request = Request::builder().method(Method::POST).uri(format!("/api/v1/carts/{cart}/checkout"))
                    .header(header::CONTENT_TYPE, "application/json").header("idempotency-key", format!("buyer-{i}"))
                    .body(Body::from(checkout_body().to_string())).unwrap();
                let response = router.oneshot(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            }));
        }
        let (mut placed, mut refused) = (0, 0);
        for task in tasks {
            let (status, body) = task.await.unwrap();
            match status {
                StatusCode::CREATED => placed += 1,
                StatusCode::CONFLICT => refused += 1,
                other => panic!("{other}: {body}"),
            }
        }
        assert_eq!((placed, refused), (10, 54));
        assert_eq!(app.count("orders").await, 10);
        assert_eq!(lot_quantity(&app, lot).await, 0, "no negative stock");
        let verify = app.admin_get("/api/v1/admin/audit/verify").await.json();
        assert_eq!(verify["intact"], true, "{verify}");
        app.stop().await;
    }

    async fn orders_move_only_through_their_states(backend: Backend) {
        let app = TestApp::start(backend).await;
        let lot = store(&app, 10).await;
        let cart = cart_with(&app, None, 4).await;
        let number = checkout(&app, &cart, None, Some("k"), checkout_body()).await.json()["number"].as_str().unwrap().to_owned();
        let to = |status: &str, tracking: Option<&str>| {
            let mut body = json!({"to": status});
            if let Some(t) = tracking { body["tracking_number"] = json!(t); }
            body
        };
        let path = format!("/api/v1/admin/orders/{number}/transitions");
        app.admin_post(&path, &to("fulfilled", Some("TRACK1"))).await.assert_field_error(409, "to");
        app.admin_post(&path, &to("delivered", None)).await.assert_field_error(409, "to");
        let r = app.admin_post(&path, &to("paid", None)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.admin_post(&path, &to("fulfilled", None)).await.assert_field_error(422, "tracking_number");
        let r = app.admin_post(&path, &to("fulfilled", Some("3SABC123"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["tracking_number"], "3SABC123");
        app.admin_post(&path, &to("cancelled", None)).await.assert_field_error(409, "to");
        app.admin_post(&path, &to("pending", None)).await.assert_field_error(409, "to");
        assert_eq!(app.admin_post(&path, &to("delivered", None)).await.status, StatusCode::OK);
        assert_eq!(lot_quantity(&app, lot).await, 6);
        // Cancelling a pending order puts its units back into the same lot.
        let cart = cart_with(&app, None, 5).await;
        let number = checkout(&app, &cart, None, Some("k2"), checkout_body()).await.json()["number"].as_str().unwrap().to_owned();
        assert_eq!(lot_quantity(&app, lot).await, 1);
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"), &to("cancelled", None)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(lot_quantity(&app, lot).await, 6);
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"), &to("cancelled", None)).await;
        r.assert_field_error(409, "to");
        assert_eq!(lot_quantity(&app, lot).await, 6, "released once");
        let history = app.admin_get(&format!("/api/v1/admin/audit?target_type=order&target_id={number}")).await.json();
        assert_eq!(history["entries"].as_array().unwrap().len(), 1, "{history}");
        app.stop().await;
    }

    async fn customers_see_their_own_orders_only(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app, 20).await;
        let ada = app.customer_token("ada@example.com").await;
        let bob = app.customer_token("bob@example.com").await;
        let cart = cart_with(&app, Some(&ada), 1).await;
        let mut body = checkout_body();
        body.as_object_mut().unwrap().remove("email");
        let r = checkout(&app, &cart, Some(&ada), Some("ada-1"), body.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let number = r.json()["number"].as_str().unwrap().to_owned();
        assert_eq!(r.json()["email"], "ada@example.com", "the account's email");
        // A guest must give an email.
        let guest = cart_with(&app, None, 1).await;
        checkout(&app, &guest, None, Some("g-1"), body).await.assert_field_error(422, "email");
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"), &json!({"to": "paid"})).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "fulfilled", "tracking_number": "TRK-9"})).await;
        assert_eq!(r.status, StatusCode::OK);
        let mine = send(&app, Method::GET, "/api/v1/account/orders", Some(&ada), None).await.json();
        assert_eq!(mine.as_array().unwrap().len(), 1);
        assert_eq!((mine[0]["status"].as_str(), mine[0]["tracking_number"].as_str()), (Some("fulfilled"), Some("TRK-9")));
        let theirs = send(&app, Method::GET, "/api/v1/account/orders", Some(&bob), None).await.json();
        assert!(theirs.as_array().unwrap().is_empty());
        let r = send(&app, Method::GET, &format!("/api/v1/account/orders/{number}"), Some(&bob), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let missing = send(&app, Method::GET, "/api/v1/account/orders/OL-AAAAA-BBBBB", Some(&bob), None).await;
        assert_eq!((missing.status, missing.json()["error"].clone()), (StatusCode::NOT_FOUND, r.json()["error"].clone()),
            "another's order looks like a missing one");
        assert_eq!(send(&app, Method::GET, "/api/v1/account/orders", None, None).await.status, StatusCode::UNAUTHORIZED);
        app.stop().await;
    }

    async fn bad_checkouts_name_the_field(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app, 10).await;
        let cart = cart_with(&app, None, 1).await;
        let mut body = checkout_body();
        body["shipping_address"]["country"] = json!("XX");
        checkout(&app, &cart, None, Some("b1"), body).await.assert_field_error(422, "shipping_address.country");
        let mut body = checkout_body();
        body["shipping_method"] = json!("teleport");
        checkout(&app, &cart, None, Some("b2"), body).await.assert_field_error(422, "shipping_method");
        let mut body = checkout_body();
        body["shipping_address"]["line1"] = json!("");
        checkout(&app, &cart, None, Some("b3"), body).await.assert_field_error(422, "shipping_address.line1");
        // Nothing was placed or reserved by the refusals, and the cart is still open.
        assert_eq!(app.count("orders").await, 0);
        assert_eq!(send(&app, Method::GET, &format!("/api/v1/carts/{cart}"), None, None).await.status, StatusCode::OK);
        let empty = send(&app, Method::POST, "/api/v1/carts", None, None).await.json()["id"].as_str().unwrap().to_owned();
        let r = checkout(&app, &empty, None, Some("b4"), checkout_body()).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        app.admin_send(Method::PUT, "/api/v1/admin/tax-rates", &json!([{"country": "NL", "rate_bp": 20000}])).await
            .assert_field_error(422, "[0].rate_bp");
        app.stop().await;
    }

    async fn exports_list_orders_and_erasure_keeps_them_without_identity(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app, 10).await;
        let ada = app.customer_token("ada@example.com").await;
        let cart = cart_with(&app, Some(&ada), 2).await;
        let r = checkout(&app, &cart, Some(&ada), Some("ada-export"), checkout_body()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let number = r.json()["number"].as_str().unwrap().to_owned();
        let export = send(&app, Method::GET, "/api/v1/account/export", Some(&ada), None).await;
        assert_eq!(export.status, StatusCode::OK, "{}", export.text());
        let orders = export.json()["sections"]["orders"].clone();
        assert_eq!(orders[0]["number"], number.as_str(), "{orders}");
        assert_eq!(orders[0]["shipping_address"]["line1"], "Keizersgracht 1");
        assert_eq!(orders[0]["lines"][0]["quantity"], 2);

        let r = send(&app, Method::POST, "/api/v1/account/erasure", Some(&ada),
            Some(json!({"password": "correct horse battery", "confirm": "erase my account"}))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let order = app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json();
        assert_eq!((order["email"].clone(), order["shipping_address"].clone()), (Value::Null, Value::Null), "{order}");
        assert_eq!(order["total_minor"], 3998 + 495 + 944, "kept for accounting");
        assert_eq!(order["lines"][0]["sku"], "MAG-60");
        use sqlx::Row;
        let row = sqlx::query("SELECT email_enc, shipping_address_enc FROM orders").fetch_one(&app.kernel.state.db.pool).await.unwrap();
        assert_eq!((row.try_get::<String, _>(0).unwrap(), row.try_get::<String, _>(1).unwrap()), (String::new(), String::new()));
        app.stop().await;
    }
}
