//! Carts through the API: a guest's by id, a customer's by token; every change re-priced
//! through the pricing rules (adjustments with reasons) and checked against sellable
//! stock; merge on sign-in; nobody reaches another's cart.

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

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

async fn new_cart(app: &TestApp, token: Option<&str>) -> String {
    let r = send(app, Method::POST, "/api/v1/carts", token, None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_owned()
}

async fn add(
    app: &TestApp,
    cart: &str,
    token: Option<&str>,
    sku: &str,
    quantity: u32,
    subscription: bool,
) -> TestResponse {
    send(
        app,
        Method::POST,
        &format!("/api/v1/carts/{cart}/lines"),
        token,
        Some(json!({"sku": sku, "quantity": quantity, "subscription": subscription})),
    )
    .await
}

/// A category, a location, the supplement `MAG` (60 at 19.99, 120 at 34.99) and a lot of
/// `quantity` MAG-60 expiring in 400 days.
async fn stocked(app: &TestApp, quantity: i64) -> i64 {
    basic_setup(app).await;
    let r = app
        .admin_post("/api/v1/admin/products", &supplement("mag", "MAG"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-60", "location": "AMS-1",
        "batch": "B1", "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": quantity})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_i64().unwrap()
}

both_backends! {
    async fn adds_racing_on_one_cart_all_count(backend: Backend) {
        let app = TestApp::start(backend).await;
        stocked(&app, 100).await;
        let cart = new_cart(&app, None).await;
        let mut tasks = Vec::new();
        for i in 0..12 {
            let router = app.router.clone();
            let cart = cart.clone();
            tasks.push(tokio::spawn(async move {
                // Both purchase kinds of one variant, so the new-line and same-line paths race.
                let body = json!({"sku": "MAG-60", "quantity": 1, "subscription": i % 2 == 0});
                let request = axum::http::Request::builder().method(Method::POST)
                    .uri(format!("/api/v1/carts/{cart}/lines"))
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string())).unwrap();
                tower::ServiceExt::oneshot(router, request).await.unwrap().status()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), StatusCode::OK);
        }
        let body = send(&app, Method::GET, &format!("/api/v1/carts/{cart}"), None, None).await.json();
        let quantities: Vec<(bool, i64)> = body["lines"].as_array().unwrap().iter()
            .map(|l| (l["subscription"].as_bool().unwrap(), l["quantity"].as_i64().unwrap())).collect();
        assert_eq!(quantities.len(), 2, "{body}");
        assert!(quantities.iter().all(|(_, q)| *q == 6), "{body}");
        app.stop().await;
    }

    async fn a_shelf_life_change_applies_to_the_next_cart_answer(backend: Backend) {
        let app = TestApp::start(backend).await;
        stocked(&app, 10).await; // the lot expires in 400 days
        let cart = new_cart(&app, None).await;
        let r = add(&app, &cart, None, "MAG-60", 2, false).await;
        assert_eq!(r.json()["lines"][0]["availability"]["sellable_quantity"], 10);
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"min_shelf_life_days": 500})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = send(&app, Method::GET, &format!("/api/v1/carts/{cart}"), None, None).await.json();
        assert_eq!(body["lines"][0]["availability"]["sellable_quantity"], 0, "{body}");
        assert_eq!(body["can_check_out"], false);
        add(&app, &cart, None, "MAG-60", 1, false).await.assert_field_error(409, "quantity");
        app.stop().await;
    }

    async fn a_guest_fills_changes_and_empties_a_cart(backend: Backend) {
        let app = TestApp::start(backend).await;
        stocked(&app, 10).await;
        let cart = new_cart(&app, None).await;
        let empty = send(&app, Method::GET, &format!("/api/v1/carts/{cart}"), None, None).await.json();
        assert_eq!((empty["lines"].as_array().unwrap().len(), empty["total_minor"].as_i64()), (0, Some(0)));
        assert_eq!(empty["can_check_out"], false);

        let r = add(&app, &cart, None, "MAG-60", 2, false).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = r.json();
        assert_eq!(body["lines"][0]["quantity"], 2);
        assert_eq!(body["lines"][0]["subtotal"]["amount_minor"], 3998);
        assert_eq!(body["total_minor"], 3998);
        assert_eq!(body["currency"], "EUR");
        assert_eq!(body["can_check_out"], true);
        assert_eq!(body["lines"][0]["availability"]["sellable_quantity"], 10);
        // The same SKU again adds to its line.
        let body = add(&app, &cart, None, "MAG-60", 3, false).await.json();
        assert_eq!(body["lines"].as_array().unwrap().len(), 1);
        assert_eq!(body["lines"][0]["quantity"], 5);
        let line = body["lines"][0]["id"].as_i64().unwrap();
        let r = send(&app, Method::PATCH, &format!("/api/v1/carts/{cart}/lines/{line}"), None,
            Some(json!({"quantity": 1}))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["total_minor"], 1999);
        let r = send(&app, Method::DELETE, &format!("/api/v1/carts/{cart}/lines/{line}"), None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.json()["lines"].as_array().unwrap().is_empty());
        app.stop().await;
    }

    async fn pricing_rules_reprice_every_change_with_reasons(backend: Backend) {
        let app = TestApp::start(backend).await;
        stocked(&app, 10).await;
        let r = app.admin_post("/api/v1/admin/plugins",
            &plugin_upload("subscribe-and-save", "subscribe_and_save", |m| m)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        app.settle().await;
        let cart = new_cart(&app, None).await;
        let body = add(&app, &cart, None, "MAG-60", 2, true).await.json();
        let adjustments = body["lines"][0]["adjustments"].as_array().unwrap().clone();
        assert_eq!(adjustments.len(), 1, "{body}");
        assert_eq!(adjustments[0]["amount_minor"], -400, "10% off 39.98, rounded half up");
        assert!(adjustments[0]["reason"].as_str().unwrap().contains("Subscribe"), "{body}");
        assert_eq!(body["total_minor"], 3598);
        // A one-off line of the same SKU is its own line, without the discount.
        let body = add(&app, &cart, None, "MAG-60", 1, false).await.json();
        assert_eq!(body["lines"].as_array().unwrap().len(), 2);
        assert!(body["lines"][1]["adjustments"].as_array().unwrap().is_empty());
        assert_eq!(body["total_minor"], 3598 + 1999);
        app.stop().await;
    }

    async fn what_cannot_be_sold_is_refused_or_flagged(backend: Backend) {
        let app = TestApp::start(backend).await;
        let lot = stocked(&app, 5).await;
        // A lot inside the minimum shelf life cannot be sold.
        let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-60", "location": "AMS-1",
            "batch": "SHORT", "manufactured_on": date_in(-300), "expires_on": date_in(5), "quantity": 50})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let cart = new_cart(&app, None).await;
        let r = add(&app, &cart, None, "MAG-60", 6, false).await;
        r.assert_field_error(409, "quantity");
        assert!(r.json()["message"].as_str().unwrap().contains("only 5"), "{}", r.text());
        let r = add(&app, &cart, None, "MAG-120", 1, false).await;
        r.assert_field_error(409, "quantity");
        // Once and on subscription share the variant's stock.
        assert_eq!(add(&app, &cart, None, "MAG-60", 3, false).await.status, StatusCode::OK);
        add(&app, &cart, None, "MAG-60", 3, true).await.assert_field_error(409, "quantity");
        assert_eq!(add(&app, &cart, None, "MAG-60", 2, true).await.status, StatusCode::OK);
        // Stock goes while the cart waits: the line says so and checkout is closed.
        let r = app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &json!({"delta": -3, "reason": "damaged"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = send(&app, Method::GET, &format!("/api/v1/carts/{cart}"), None, None).await.json();
        assert_eq!(body["can_check_out"], false, "{body}");
        assert_eq!(body["lines"][0]["problem"], "only 2 can be sold now");
        app.stop().await;
    }

    async fn bad_input_names_the_field(backend: Backend) {
        let app = TestApp::start(backend).await;
        stocked(&app, 5).await;
        let cart = new_cart(&app, None).await;
        add(&app, &cart, None, "MAG-60", 0, false).await.assert_field_error(422, "quantity");
        add(&app, &cart, None, "MAG-60", 1000, false).await.assert_field_error(422, "quantity");
        add(&app, &cart, None, "NOPE-1", 1, false).await.assert_field_error(422, "sku");
        let r = send(&app, Method::POST, &format!("/api/v1/carts/{cart}/lines"), None,
            Some(json!({"sku": "MAG-60", "quantity": -1}))).await;
        r.assert_field_error(422, "quantity");
        let r = send(&app, Method::POST, &format!("/api/v1/carts/{cart}/lines"), None,
            Some(json!({"sku": "MAG-60", "quantity": 1, "price_minor": 1}))).await;
        assert_eq!(r.status.as_u16(), 422, "a client cannot set prices: {}", r.text());
        // Lines of another cart are not found through this one.
        let other = new_cart(&app, None).await;
        let line = add(&app, &other, None, "MAG-60", 1, false).await.json()["lines"][0]["id"].as_i64().unwrap();
        let r = send(&app, Method::PATCH, &format!("/api/v1/carts/{cart}/lines/{line}"), None,
            Some(json!({"quantity": 2}))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = send(&app, Method::DELETE, &format!("/api/v1/carts/{cart}/lines/{line}"), None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        for id in ["cart_doesnotexistdoesnotexist", "x", "cart_%27%20OR%201%3D1%20--"] {
            let r = send(&app, Method::GET, &format!("/api/v1/carts/{id}"), None, None).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}");
        }
        app.stop().await;
    }

    async fn a_customers_cart_is_theirs_alone_and_guest_carts_merge_in(backend: Backend) {
        let app = TestApp::start(backend).await;
        stocked(&app, 20).await;
        let ada = app.customer_token("ada@example.com").await;
        let bob = app.customer_token("bob@example.com").await;
        let mine = new_cart(&app, Some(&ada)).await;
        assert_eq!(new_cart(&app, Some(&ada)).await, mine, "one open cart per customer");
        assert_eq!(add(&app, &mine, Some(&ada), "MAG-60", 1, false).await.status, StatusCode::OK);
        // Not reachable without the token, with another customer's, or with a bad one.
        for token in [None, Some(bob.as_str())] {
            let r = send(&app, Method::GET, &format!("/api/v1/carts/{mine}"), token, None).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND);
            assert_eq!(add(&app, &mine, token, "MAG-60", 1, false).await.status, StatusCode::NOT_FOUND);
        }
        let r = send(&app, Method::GET, &format!("/api/v1/carts/{mine}"), Some("not-a-token"), None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        // A guest cart, then signing in: merged into the customer's cart.
        let guest = new_cart(&app, None).await;
        add(&app, &guest, None, "MAG-60", 2, false).await;
        add(&app, &guest, None, "MAG-60", 1, true).await;
        let r = send(&app, Method::POST, &format!("/api/v1/carts/{guest}/merge"), None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = send(&app, Method::POST, &format!("/api/v1/carts/{guest}/merge"), Some(&ada), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let merged = r.json();
        assert_eq!(merged["id"], mine.as_str());
        let quantities: Vec<(i64, bool)> = merged["lines"].as_array().unwrap().iter()
            .map(|l| (l["quantity"].as_i64().unwrap(), l["subscription"].as_bool().unwrap())).collect();
        assert_eq!(quantities, vec![(3, false), (1, true)]);
        // The guest cart is closed; Bob cannot merge Ada's cart into his.
        let r = send(&app, Method::GET, &format!("/api/v1/carts/{guest}"), None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = send(&app, Method::POST, &format!("/api/v1/carts/{mine}/merge"), Some(&bob), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        app.stop().await;
    }
}
