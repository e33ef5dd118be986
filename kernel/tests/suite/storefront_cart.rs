//! The cart in the storefront, driven like a browser would: the product page's form, the
//! cart page's forms, cookies carried by hand, CSRF tokens taken from the pages. Each test
//! runs on SQLite and on PostgreSQL.

use crate::common::browser::*;
use crate::common::*;
use axum::http::{Method, StatusCode, header};
use serde_json::json;

/// A category, a location, the supplement `mag` (MAG-60 at 19.99, MAG-120 at 34.99) named
/// `name`, and a lot of `quantity` MAG-60 (its id is returned).
async fn stocked(app: &TestApp, name: &str, quantity: i64) -> i64 {
    basic_setup(app).await;
    let mut product = supplement("mag", "MAG");
    product["name"] = json!(name);
    let r = app.admin_post("/api/v1/admin/products", &product).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = app
        .admin_post(
            "/api/v1/admin/lots",
            &json!({"sku": "MAG-60", "location": "AMS-1", "batch": "B1",
                "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": quantity}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    app.settle().await;
    r.json()["id"].as_i64().unwrap()
}

/// Posts the product page's cart form for MAG-60.
async fn add_from_product_page(
    app: &TestApp,
    browser: &mut Browser,
    quantity: &str,
    subscription: bool,
) -> TestResponse {
    // The product page is shared by every visitor: its form carries no CSRF token (the
    // browser's Origin stands in for it).
    let page = get(app, browser, "/p/mag").await;
    assert_html(&page, StatusCode::OK);
    assert!(!page.text().contains(r#"name="csrf""#));
    let mut fields = vec![
        ("product", "mag"),
        ("sku", "MAG-60"),
        ("quantity", quantity),
    ];
    if subscription {
        fields.push(("subscription", "1"));
    }
    post_form(app, browser, "/cart/lines", &fields).await
}

/// The id of the first line on a cart page (from its quantity form).
#[track_caller]
fn first_line_id(page: &TestResponse) -> String {
    let html = page.text();
    let start = html.find(r#"action="/cart/lines/"#).expect("a line form")
        + r#"action="/cart/lines/"#.len();
    html[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

/// Units in the open carts of the database.
async fn units_in_carts(app: &TestApp) -> i64 {
    use sqlx::Row;
    sqlx::query(
        "SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) FROM cart_lines l
         JOIN carts c ON c.id = l.cart_id WHERE c.status = 'open'",
    )
    .fetch_one(&app.kernel.state.db.pool)
    .await
    .unwrap()
    .get(0)
}

both_backends! {
    async fn a_guest_adds_changes_and_removes_through_the_pages(backend: Backend) {
        let app = TestApp::start(backend).await;
        let lot = stocked(&app, "Test Magnesium", 10).await;
        let mut browser = Browser::default();
        let page = get(&app, &mut browser, "/p/mag").await;
        assert!(page.text().contains(r#"action="/cart/lines""#), "{}", page.text());
        assert!(page.text().contains(r#"name="subscription""#), "supplements offer subscribe & save");

        // The form carries no CSRF token (the page is shared); a post that does not say it
        // comes from this site is refused, nothing stored.
        assert!(!page.text().contains(r#"name="csrf""#));
        let r = send(&app, Method::POST, "/cart/lines", &browser,
            Some(&[("product", "mag"), ("sku", "MAG-60"), ("quantity", "1")]), &[]).await;
        assert_html(&r, StatusCode::FORBIDDEN);
        assert_eq!(app.count("cart_lines").await, 0);

        // Add 2: to the cart page, with the guest cart's cookie.
        let r = add_from_product_page(&app, &mut browser, "2", false).await;
        assert_eq!(location(&r), "/cart");
        let cookie = set_cookie(&r, "olv_cart");
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/;", "Max-Age=2592000"] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
        let cart = get(&app, &mut browser, "/cart").await;
        assert_html(&cart, StatusCode::OK);
        let html = cart.text();
        assert!(html.contains(r#"<a href="/p/mag">Test Magnesium – 60 capsules</a>"#), "{html}");
        assert!(html.contains("€19.99") && html.contains("€39.98"), "{html}");
        assert!(html.contains(r#"value="2""#), "{html}");
        assert!(html.contains(r#"href="/checkout""#), "{html}");
        assert!(html.contains(r#"class="cart-count">2<"#), "{html}");
        assert_eq!(cart.headers[header::CACHE_CONTROL], "no-store");
        // The count travels in a cookie; shared catalog pages get it from the header
        // request their script makes.
        assert!(!get(&app, &mut browser, "/").await.text().contains(r#"class="cart-count""#));
        assert_eq!(get(&app, &mut browser, "/account/header").await.json()["cart_items"], 2);

        // Change the quantity.
        let line = first_line_id(&cart);
        let csrf = csrf_of(&cart);
        let r = post_form(&app, &mut browser, &format!("/cart/lines/{line}"),
            &[("csrf", &csrf), ("quantity", "3")]).await;
        assert_eq!(location(&r), "/cart");
        let html = get(&app, &mut browser, "/cart").await.text();
        assert!(html.contains("€59.97") && html.contains(r#"value="3""#), "{html}");

        // More than can be sold: the cart again with the reason, nothing changed.
        let r = post_form(&app, &mut browser, &format!("/cart/lines/{line}"),
            &[("csrf", &csrf), ("quantity", "11")]).await;
        assert_html(&r, StatusCode::CONFLICT);
        assert!(r.text().contains("Only 10 can be sold now."), "{}", r.text());
        let r = post_form(&app, &mut browser, &format!("/cart/lines/{line}"),
            &[("csrf", &csrf), ("quantity", "many")]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(units_in_carts(&app).await, 3);
        let r = add_from_product_page(&app, &mut browser, "8", false).await;
        assert_html(&r, StatusCode::CONFLICT);
        assert!(r.text().contains("Only 10 can be sold now."), "{}", r.text());
        assert!(r.text().contains(r#"action="/cart/lines""#), "the product page again");
        let r = add_from_product_page(&app, &mut browser, "0", false).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(units_in_carts(&app).await, 3);

        // Stock goes while the cart waits: the line says so, checkout is closed.
        let r = app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &json!({"delta": -8, "reason": "damaged"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let html = get(&app, &mut browser, "/cart").await.text();
        assert!(html.contains("Only 2 can be sold now."), "{html}");
        assert!(!html.contains(r#"href="/checkout""#), "{html}");

        // Remove: an empty cart.
        let r = post_form(&app, &mut browser, &format!("/cart/lines/{line}/remove"),
            &[("csrf", &csrf)]).await;
        assert_eq!(location(&r), "/cart");
        let html = get(&app, &mut browser, "/cart").await.text();
        assert!(html.contains("Your cart is empty."), "{html}");
        assert_eq!(app.count("cart_lines").await, 0);
        // Removing it again: the 404 page.
        let r = post_form(&app, &mut browser, &format!("/cart/lines/{line}/remove"),
            &[("csrf", &csrf)]).await;
        assert_html(&r, StatusCode::NOT_FOUND);
        app.stop().await;
    }

    async fn a_subscription_line_shows_its_discount(backend: Backend) {
        let app = TestApp::start(backend).await;
        stocked(&app, "Test Magnesium", 10).await;
        let r = app.admin_post("/api/v1/admin/plugins",
            &plugin_upload("subscribe-and-save", "subscribe_and_save", |m| m)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        app.settle().await;
        let mut browser = Browser::default();
        let r = add_from_product_page(&app, &mut browser, "2", true).await;
        assert_eq!(location(&r), "/cart");
        let html = get(&app, &mut browser, "/cart").await.text();
        assert!(html.contains(r#"<span class="reason">Subscribe &amp; save 10%</span> <span class="amount">-€4.00</span>"#),
            "the plugin's reason and 10% off 39.98: {html}");
        assert!(html.contains("€35.98"), "{html}");
        app.stop().await;
    }

    async fn a_guest_cart_merges_on_sign_in_and_stays_private(backend: Backend) {
        let app = TestApp::start(backend).await;
        stocked(&app, "Test Magnesium", 20).await;
        let mut ada = Browser::default();
        register(&app, &mut ada, "ada@example.com", "Ada").await;
        let csrf = csrf_of(&get(&app, &mut ada, "/account").await);
        let r = post_form(&app, &mut ada, "/account/sign-out", &[("csrf", &csrf)]).await;
        assert_eq!(location(&r), "/");

        // As a guest: 2 in the cart; signing in brings them into Ada's cart.
        add_from_product_page(&app, &mut ada, "2", false).await;
        assert!(ada.get("olv_cart").is_some());
        let r = sign_in(&app, &mut ada, "ada@example.com", PASSWORD, Some("/cart")).await;
        assert_eq!(location(&r), "/cart");
        assert!(set_cookie(&r, "olv_cart").contains("Max-Age=0"), "the guest cookie goes");
        assert!(ada.get("olv_cart").is_none());
        let cart = get(&app, &mut ada, "/cart").await;
        assert!(cart.text().contains(r#"value="2""#), "{}", cart.text());
        let line = first_line_id(&cart);

        // Registering merges too.
        let mut bob = Browser::default();
        add_from_product_page(&app, &mut bob, "1", true).await;
        register(&app, &mut bob, "bob@example.com", "Bob").await;
        assert!(bob.get("olv_cart").is_none());
        let html = get(&app, &mut bob, "/cart").await.text();
        assert!(html.contains(r#"value="1""#) && html.contains("Subscribe &amp; save"), "{html}");

        // Ada's cart id in another browser's cookie: an empty cart, and her lines are
        // out of reach.
        let access = ada.get("olv_access").unwrap();
        let r = app.request(Method::POST, "/api/v1/carts", Some(&access), None, None).await;
        let ada_cart = r.json()["id"].as_str().unwrap().to_owned();
        let mut eve = Browser::default();
        eve.set("olv_cart", &ada_cart, "/");
        let page = get(&app, &mut eve, "/cart").await;
        assert_html(&page, StatusCode::OK);
        assert!(page.text().contains("Your cart is empty."), "{}", page.text());
        assert!(!page.text().contains("Test Magnesium"));
        assert!(eve.get("olv_cart").is_none(), "the cookie is dropped");
        eve.set("olv_cart", &ada_cart, "/");
        let csrf = csrf_of(&get(&app, &mut eve, "/account/sign-in").await);
        eve.set("olv_cart", &ada_cart, "/");
        let r = post_form(&app, &mut eve, &format!("/cart/lines/{line}"),
            &[("csrf", &csrf), ("quantity", "5")]).await;
        assert_html(&r, StatusCode::NOT_FOUND);
        eve.set("olv_cart", &ada_cart, "/");
        let r = post_form(&app, &mut eve, &format!("/cart/lines/{line}/remove"), &[("csrf", &csrf)]).await;
        assert_html(&r, StatusCode::NOT_FOUND);
        assert_eq!(units_in_carts(&app).await, 3, "Ada's 2 and Bob's 1, untouched");
        app.stop().await;
    }

    async fn product_names_are_escaped_in_the_cart(backend: Backend) {
        let app = TestApp::start(backend).await;
        stocked(&app, r#"<script>alert("x")</script> Mag"#, 5).await;
        let mut browser = Browser::default();
        let r = add_from_product_page(&app, &mut browser, "1", false).await;
        assert_eq!(location(&r), "/cart");
        let html = get(&app, &mut browser, "/cart").await.text();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        app.stop().await;
    }
}
