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
    let r = shop
        .app
        .admin_send(
            axum::http::Method::PUT,
            "/api/v1/admin/tax-rates",
            &json!([{"country": "*", "rate_bp": 2100}]),
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
    let r = post_form(
        app,
        &mut browser,
        "/cart/lines",
        &[
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
        ("expected_total_minor", ""),
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

/// The form's fields to place the order, with the total the page showed.
fn placing<'a>(
    csrf: &'a str,
    key: &'a str,
    token: &'a str,
    total: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut fields = address_fields(csrf, key, token);
    for field in fields
        .iter_mut()
        .filter(|(name, _)| *name == "expected_total_minor")
    {
        field.1 = total;
    }
    fields
}

/// "Update total" with the address filled in (no script needed): the page with the
/// order's total; answers it and the total it shows.
async fn review(
    app: &TestApp,
    browser: &mut Browser,
    csrf: &str,
    key: &str,
) -> (TestResponse, String) {
    let mut fields = address_fields(csrf, key, "");
    fields.push(("step", "review"));
    let page = post_form(app, browser, "/checkout", &fields).await;
    assert_html(&page, StatusCode::OK);
    let total = hidden(&page, "expected_total_minor");
    (page, total)
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

        // Without a country yet (the shop ships anywhere), the page asks for one before it
        // shows the card; "Update total" shows shipping, tax and the total to pay.
        assert!(html.contains("Choose the country to ship to"), "{html}");
        assert!(html.contains(r#"id="card-section" hidden"#), "{html}");
        let (reviewed, total) = review(app, &mut browser, &csrf, &key).await;
        // 2 x 19.99 and 5.00 shipping (the `*` rate), 21 % added: 54.43.
        assert_eq!(total, "5443", "{}", reviewed.text());
        assert!(reviewed.text().contains("€54.43"), "{}", reviewed.text());
        assert!(!reviewed.text().contains(r#"id="card-section" hidden"#), "the card comes once the total shows");

        // The page's script tokenized the card at the processor; the form posts the token.
        let token = tokenize(shop.processor, "4242424242424242").await;
        let fields = placing(&csrf, &key, &token, &total);
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
        let (_, total) = review(app, &mut browser, &csrf, &key).await;
        let token = tokenize(shop.processor, "4000000000000002").await;
        let r = post_form(app, &mut browser, "/checkout", &placing(&csrf, &key, &token, &total)).await;
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
        let total = hidden(&r, "expected_total_minor");
        let r = post_form(app, &mut browser, "/checkout", &placing(&csrf, &new_key, &token, &total)).await;
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

    async fn a_total_that_changed_since_the_review_is_shown_again_and_nothing_is_charged(backend: Backend) {
        let shop = card_shop(backend).await;
        let app = &shop.app;
        let mut browser = guest_with_cart(app, "2").await;
        let page = get(app, &mut browser, "/checkout").await;
        let (csrf, key) = (csrf_of(&page), hidden(&page, "checkout_key"));
        let (_, shown) = review(app, &mut browser, &csrf, &key).await;
        // The merchant raises shipping between the review and "Place order".
        let r = app.admin_send(axum::http::Method::PUT, "/api/v1/admin/shipping-rates", &json!([
            {"code": "standard", "name": "Standard", "country": "*", "max_weight_grams": 5000, "price_minor": 700, "currency": "EUR"}
        ])).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let token = tokenize(shop.processor, "4242424242424242").await;
        let r = post_form(app, &mut browser, "/checkout", &placing(&csrf, &key, &token, &shown)).await;
        assert_html(&r, StatusCode::CONFLICT);
        assert!(r.text().contains("The total changed from €54.43 to €56.85"), "{}", r.text());
        assert!(r.text().contains("Nothing was charged"), "{}", r.text());
        assert_eq!(hidden(&r, "expected_total_minor"), "5685");
        assert_eq!(app.count("orders").await, 0);
        assert_eq!(lot_quantity(app, shop.lot).await, 10);
        // Placed at the total now shown.
        let token = tokenize(shop.processor, "4242424242424242").await;
        let r = post_form(app, &mut browser, "/checkout", &placing(&csrf, &key, &token, "5685")).await;
        let confirmation = location(&r);
        assert!(confirmation.starts_with("/checkout/confirmation/"), "{}", r.text());
        let number = confirmation.rsplit('/').next().unwrap();
        let order = app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json();
        assert_eq!(order["total_minor"], 5685, "{order}");
        // No email channel is active: the confirmation promises none.
        let page = get(app, &mut browser, &confirmation).await;
        assert!(!page.text().contains("on its way"), "{}", page.text());
        shop.app.stop().await;
    }

    async fn the_country_is_chosen_from_where_the_shop_ships(backend: Backend) {
        let shop = card_shop(backend).await;
        let app = &shop.app;
        let r = app.admin_send(axum::http::Method::PUT, "/api/v1/admin/shipping-rates", &json!([
            {"code": "standard", "name": "Standard", "country": "NL", "max_weight_grams": 5000, "price_minor": 495, "currency": "EUR"},
            {"code": "express", "name": "Express", "country": "NL", "max_weight_grams": 5000, "price_minor": 1295, "currency": "EUR"},
            {"code": "standard", "name": "Standard", "country": "BE", "max_weight_grams": 5000, "price_minor": 895, "currency": "EUR"}
        ])).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let mut browser = guest_with_cart(app, "1").await;
        let page = get(app, &mut browser, "/checkout").await;
        let html = page.text();
        // A list of the two countries, the shop's home first chosen, its total shown at once.
        assert!(html.contains(r#"<option value="NL" selected>Netherlands</option>"#), "{html}");
        assert!(html.contains(r#"<option value="BE">Belgium</option>"#), "{html}");
        assert!(!html.contains(r#"value="DE""#), "{html}");
        assert!(!html.contains(r#"input id="f-country""#), "no free text");
        assert!(html.contains("Standard · €4.95") && html.contains("Express · €12.95"), "{html}");
        assert!(html.contains(r#"id="summary-total""#), "{html}");
        // The in-place update the page's script asks for: another country's totals.
        let r = get(app, &mut browser, "/checkout/quote?country=BE&shipping_method=standard").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let quote = r.json();
        assert_eq!(quote["total_minor"], 1999 + 895 + 420 + 188, "{quote}");
        assert!(quote["summary_html"].as_str().unwrap().contains("€35.02"), "{quote}");
        // A country the shop does not ship to says so, before the card is asked for.
        let r = get(app, &mut browser, "/checkout/quote?country=DE").await;
        let quote = r.json();
        assert!(quote["total_minor"].is_null(), "{quote}");
        assert!(quote["error"].as_str().unwrap().contains("does not ship"), "{quote}");
        let (csrf, key) = (csrf_of(&page), hidden(&page, "checkout_key"));
        let mut fields = address_fields(&csrf, &key, "");
        for field in fields.iter_mut().filter(|(name, _)| *name == "country") {
            field.1 = "DE";
        }
        fields.push(("step", "review"));
        let r = post_form(app, &mut browser, "/checkout", &fields).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("does not ship this order to DE"), "{}", r.text());
        assert!(r.text().contains(r#"id="card-section" hidden"#), "{}", r.text());
        shop.app.stop().await;
    }


    async fn the_checkout_runs_only_the_scripts_of_the_inventory(backend: Backend) {
        use sha2::Digest;
        let shop = card_shop(backend).await;
        let app = &shop.app;
        let mut browser = guest_with_cart(app, "1").await;
        let page = get(app, &mut browser, "/checkout").await;
        crate::security_headers::assert_page_headers("/checkout", &page);
        // The processor's origin, which the card goes to, is the one other source allowed.
        let csp = page.headers["content-security-policy"].to_str().unwrap().to_owned();
        let processor = format!("http://{}", shop.processor);
        assert!(csp.contains(&format!("script-src 'self' {processor};")), "{csp}");
        assert!(csp.contains(&format!("connect-src 'self' {processor};")), "{csp}");
        // Every script on the page is one of the inventory's, pinned by its integrity hash,
        // and the file served has that hash.
        let html = page.text();
        let tags: Vec<&str> = html.match_indices("<script").map(|(at, _)| &html[at..at + html[at..].find('>').unwrap()]).collect();
        // (Every script of the inventory but the order page's live updates and the shared
        // catalog pages' header script.)
        let carried: Vec<_> = olivine::http::security::scripts().iter()
            .filter(|s| s.name != "live" && s.name != "header").collect();
        assert_eq!(tags.len(), carried.len(), "{tags:?}");
        for script in carried {
            let tag = tags.iter().find(|t| t.contains(&format!(r#"src="{}""#, script.path)))
                .unwrap_or_else(|| panic!("{} missing from the page: {tags:?}", script.name));
            assert!(tag.contains(&format!(r#"integrity="{}""#, script.integrity)), "{tag}");
            let served = app.get(script.path).await;
            assert_eq!(served.status, StatusCode::OK);
            let digest = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sha2::Sha256::digest(&served.body));
            assert_eq!(format!("sha256-{digest}"), script.integrity, "the served {} is the one pinned", script.path);
        }
        shop.app.stop().await;
    }

}
