//! Checkout through the storefront's pages without a browser engine (cookies and CSRF
//! carried by hand; the card tokenized at the processor as the page's script would): the
//! form never names the card inputs, a card number typed into any field is refused, a
//! form posted twice places one order, the guest's confirmation is that browser's only,
//! and a shop without a card-taking adapter says so. Each test runs on SQLite and on
//! PostgreSQL; kernel/tests/suite/browser.rs drives the same pages in Chromium.

use crate::common::browser::*;
use crate::common::*;
use crate::payments::{Shop, authorizations, lot_quantity, shop, tokenize};
use axum::http::StatusCode;
use serde_json::json;

/// The shop of the payment tests, with the card form's tokenization URL set.
async fn card_shop(backend: Backend) -> Shop {
    let shop = shop(backend).await;
    let host = shop.processor.to_string();
    let r = shop
        .app
        .admin_patch(
            "/api/v1/admin/plugins/sandbox-payments",
            &json!({"settings": {"base_url": format!("http://{host}"),
                "checkout_tokenize_url": format!("http://{host}/v1/tokens")}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    shop.app.settle().await;
    shop
}

/// A guest browser with `quantity` MAG-60 in its cart.
async fn guest_with_cart(app: &TestApp, quantity: &str) -> Browser {
    let mut browser = Browser::default();
    let page = get(app, &mut browser, "/p/mag").await;
    assert_html(&page, StatusCode::OK);
    let csrf = csrf_of(&page);
    let r = post_form(
        app,
        &mut browser,
        "/cart/lines",
        &[
            ("csrf", &csrf),
            ("product", "mag"),
            ("sku", "MAG-60"),
            ("quantity", quantity),
        ],
    )
    .await;
    assert_eq!(location(&r), "/cart");
    browser
}

/// The value of the hidden field `name` in a page.
#[track_caller]
fn hidden(page: &TestResponse, name: &str) -> String {
    let html = page.text();
    let marker = format!(r#"name="{name}" value=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

fn address_fields<'a>(csrf: &'a str, key: &'a str, token: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("checkout_key", key),
        ("payment_token", token),
        ("email", "guest@example.com"),
        ("name", "Ada Guest"),
        ("line1", "Main 1"),
        ("line2", ""),
        ("city", "Utrecht"),
        ("region", ""),
        ("postal_code", "3511 AB"),
        ("country", "nl"),
        ("shipping_method", "standard"),
    ]
}

both_backends! {
    async fn a_guest_pays_through_the_checkout_page(backend: Backend) {
        let shop = card_shop(backend).await;
        let app = &shop.app;
        let mut browser = guest_with_cart(app, "2").await;
        let cart = get(app, &mut browser, "/cart").await;
        assert!(cart.text().contains(r#"id="checkout-link""#), "{}", cart.text());

        let page = get(app, &mut browser, "/checkout").await;
        assert_html(&page, StatusCode::OK);
        let html = page.text();
        assert!(html.contains(&format!(r#"data-tokenize-url="http://{}/v1/tokens""#, shop.processor)), "{html}");
        // The card inputs are never posted: they have no name.
        for id in ["card-number", "card-exp-month", "card-exp-year", "card-cvc"] {
            let at = html.find(&format!(r#"id="{id}""#)).unwrap_or_else(|| panic!("no #{id}"));
            let tag_start = html[..at].rfind('<').unwrap();
            let tag_end = at + html[at..].find('>').unwrap();
            assert!(!html[tag_start..tag_end].contains("name="), "#{id} has a name: {}", &html[tag_start..tag_end]);
        }
        let csrf = csrf_of(&page);
        let key = hidden(&page, "checkout_key");

        // A card number typed into an address field is refused before anything happens.
        let mut fields = address_fields(&csrf, &key, "");
        for field in fields.iter_mut().filter(|(name, _)| *name == "line2") {
            field.1 = "4242 4242 4242 4242";
        }
        let r = post_form(app, &mut browser, "/checkout", &fields).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("card number"), "{}", r.text());
        assert_eq!(app.count("orders").await, 0);

        // Without a token (no script ran), the form asks for the card.
        let r = post_form(app, &mut browser, "/checkout", &address_fields(&csrf, &key, "")).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("card details"), "{}", r.text());
        assert_eq!(app.count("orders").await, 0);

        // The page's script tokenized the card at the processor; the form posts the token.
        let token = tokenize(shop.processor, "4242424242424242").await;
        let fields = address_fields(&csrf, &key, &token);
        let r = post_form(app, &mut browser, "/checkout", &fields).await;
        let confirmation = location(&r);
        assert!(confirmation.starts_with("/checkout/confirmation/OL-"), "{confirmation}");
        let number = confirmation.rsplit('/').next().unwrap().to_owned();
        assert!(browser.get("olv_cart").is_none_or(|v| v.is_empty()), "the guest cart cookie is gone");
        let page = get(app, &mut browser, &confirmation).await;
        assert_html(&page, StatusCode::OK);
        assert!(page.text().contains(&format!(r#"<strong id="order-number">{number}</strong>"#)), "{}", page.text());
        assert!(page.text().contains(r#"data-status="paid""#), "{}", page.text());
        assert!(page.text().contains("Test Magnesium") || page.text().contains("MAG-60"), "{}", page.text());
        assert_eq!(lot_quantity(app, shop.lot).await, 8);

        // The same form posted again (a double click, a reload): the same order.
        let r = post_form(app, &mut browser, "/checkout", &fields).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
        assert_eq!(app.count("orders").await, 1);
        assert_eq!(authorizations(shop.processor, &number).await.len(), 1);
        assert_eq!(lot_quantity(app, shop.lot).await, 8);

        // Another browser cannot see the guest's confirmation.
        let mut stranger = Browser::default();
        let r = get(app, &mut stranger, &confirmation).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let order = app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json();
        assert_eq!(order["status"], "paid", "{order}");
        assert_eq!(order["email"], "guest@example.com");
        assert_eq!(order["shipping_address"]["country"], "NL");
        shop.app.stop().await;
    }

    async fn a_declined_card_keeps_the_cart_and_says_why(backend: Backend) {
        let shop = card_shop(backend).await;
        let app = &shop.app;
        let mut browser = guest_with_cart(app, "1").await;
        let page = get(app, &mut browser, "/checkout").await;
        let (csrf, key) = (csrf_of(&page), hidden(&page, "checkout_key"));
        let token = tokenize(shop.processor, "4000000000000002").await;
        let r = post_form(app, &mut browser, "/checkout", &address_fields(&csrf, &key, &token)).await;
        assert_html(&r, StatusCode::PAYMENT_REQUIRED);
        assert!(r.text().contains("declined"), "{}", r.text());
        assert!(r.text().contains("Nothing was charged"), "{}", r.text());
        // The form comes back filled in, with a new key; the stock is back.
        assert!(r.text().contains(r#"value="Ada Guest""#), "{}", r.text());
        let new_key = hidden(&r, "checkout_key");
        assert_ne!(new_key, key);
        assert_eq!(lot_quantity(app, shop.lot).await, 10);
        // Another card with the new key pays for the same cart.
        let token = tokenize(shop.processor, "5555555555554444").await;
        let r = post_form(app, &mut browser, "/checkout", &address_fields(&csrf, &new_key, &token)).await;
        assert!(location(&r).starts_with("/checkout/confirmation/"));
        let orders = app.admin_get("/api/v1/admin/orders").await.json();
        let statuses: Vec<&str> = orders.as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == "paid").count(), 1, "{statuses:?}");
        assert_eq!(lot_quantity(app, shop.lot).await, 9);
        shop.app.stop().await;
    }

    async fn a_shop_without_a_card_adapter_says_so(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let r = app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-60", "location": "AMS-1",
            "batch": "B1", "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": 5})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        app.settle().await;
        // An empty cart goes back to the cart page.
        let mut browser = Browser::default();
        let r = get(&app, &mut browser, "/checkout").await;
        assert_eq!(location(&r), "/cart");
        let mut browser = guest_with_cart(&app, "1").await;
        let page = get(&app, &mut browser, "/checkout").await;
        assert_html(&page, StatusCode::OK);
        assert!(page.text().contains("cannot take card payments"), "{}", page.text());
        assert!(page.text().contains(r#"id="place-order" type="submit" disabled"#)
            || page.text().contains("disabled"), "{}", page.text());
        assert!(!page.text().contains("data-tokenize-url"), "{}", page.text());
        app.stop().await;
    }
}
