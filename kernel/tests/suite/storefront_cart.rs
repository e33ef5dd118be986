//! The cart in the storefront, driven like a browser would: the product page's form, the
//! cart page's forms, cookies carried by hand, CSRF tokens taken from the pages. Each test
//! runs on SQLite and on PostgreSQL.

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";
const HOST: &str = "shop.example";
const SITE: &str = "https://shop.example";

/// One cookie as a browser keeps it.
#[derive(Clone, Debug)]
struct StoredCookie {
    name: String,
    value: String,
    path: String,
}

/// The cookies of one browser.
#[derive(Clone, Default)]
struct Browser {
    cookies: Vec<StoredCookie>,
}

impl Browser {
    /// Takes the response's `Set-Cookie` headers: stores, replaces or (Max-Age=0)
    /// deletes.
    fn take(&mut self, r: &TestResponse) {
        for set in set_cookies(r) {
            let mut parts = set.split(';');
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let mut path = "/".to_owned();
            let mut removed = false;
            for attr in parts {
                let attr = attr.trim();
                if let Some(p) = attr.strip_prefix("Path=") {
                    path = p.to_owned();
                }
                if attr == "Max-Age=0" {
                    removed = true;
                }
            }
            self.cookies.retain(|c| !(c.name == name && c.path == path));
            if !removed {
                self.cookies.push(StoredCookie {
                    name: name.to_owned(),
                    value: value.to_owned(),
                    path,
                });
            }
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.clone())
    }

    fn set(&mut self, name: &str, value: &str, path: &str) {
        self.cookies.retain(|c| c.name != name);
        self.cookies.push(StoredCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            path: path.to_owned(),
        });
    }

    /// The `Cookie` header a browser sends to `path`.
    fn header_for(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let matching: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| {
                c.path == "/" || path == c.path || path.starts_with(&format!("{}/", c.path))
            })
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!matching.is_empty()).then(|| matching.join("; "))
    }
}

fn set_cookies(r: &TestResponse) -> Vec<String> {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `Set-Cookie` header of cookie `name`.
#[track_caller]
fn set_cookie(r: &TestResponse, name: &str) -> String {
    set_cookies(r)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie for {name}: {:?}", set_cookies(r)))
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    browser: &Browser,
    form: Option<&[(&str, &str)]>,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, HOST);
    if let Some(cookie) = browser.header_for(path) {
        builder = builder.header(header::COOKIE, cookie);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match form {
        Some(fields) => {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            let mut encoder = form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                encoder.append_pair(k, v);
            }
            Body::from(encoder.finish())
        }
        None => Body::empty(),
    };
    let response = app
        .router
        .clone()
        .oneshot(builder.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    TestResponse {
        status,
        headers,
        body,
    }
}

/// A GET; the browser keeps the cookies it is given.
async fn get(app: &TestApp, browser: &mut Browser, path: &str) -> TestResponse {
    let r = send(app, Method::GET, path, browser, None, &[]).await;
    browser.take(&r);
    r
}

/// A form post from a page of the shop (with the `Origin` a browser sends).
async fn post_form(
    app: &TestApp,
    browser: &mut Browser,
    path: &str,
    fields: &[(&str, &str)],
) -> TestResponse {
    let r = send(
        app,
        Method::POST,
        path,
        browser,
        Some(fields),
        &[("origin", SITE)],
    )
    .await;
    browser.take(&r);
    r
}

/// The CSRF token in a page's form.
#[track_caller]
fn csrf_of(page: &TestResponse) -> String {
    let html = page.text();
    let start = html
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no csrf field in {html}"))
        + r#"name="csrf" value=""#.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

#[track_caller]
fn location(r: &TestResponse) -> String {
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    r.headers[header::LOCATION].to_str().unwrap().to_owned()
}

#[track_caller]
fn assert_html(r: &TestResponse, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        r.headers
    );
    assert!(r.text().starts_with("<!DOCTYPE html>"));
}

/// Registers through the form; the new customer is signed in.
async fn register(app: &TestApp, browser: &mut Browser, email: &str, name: &str) {
    let page = get(app, browser, "/account/register").await;
    assert_html(&page, StatusCode::OK);
    let csrf = csrf_of(&page);
    let r = post_form(
        app,
        browser,
        "/account/register",
        &[
            ("csrf", &csrf),
            ("name", name),
            ("email", email),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(location(&r), "/account");
}

/// Signs in through the form, with an optional `next`.
async fn sign_in(
    app: &TestApp,
    browser: &mut Browser,
    email: &str,
    password: &str,
    next: Option<&str>,
) -> TestResponse {
    let page = get(app, browser, "/account/sign-in").await;
    let csrf = csrf_of(&page);
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("email", email),
        ("password", password),
    ];
    if let Some(next) = next {
        fields.push(("next", next));
    }
    post_form(app, browser, "/account/sign-in", &fields).await
}

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
    let page = get(app, browser, "/p/mag").await;
    assert_html(&page, StatusCode::OK);
    let csrf = csrf_of(&page);
    let mut fields = vec![
        ("csrf", csrf.as_str()),
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

        // Without the CSRF token: refused, nothing stored.
        let r = post_form(&app, &mut browser, "/cart/lines",
            &[("product", "mag"), ("sku", "MAG-60"), ("quantity", "1")]).await;
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
        // The count travels in a cookie, so catalog pages show it too.
        assert!(get(&app, &mut browser, "/").await.text().contains(r#"class="cart-count">2<"#));

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
        let csrf = csrf_of(&get(&app, &mut eve, "/p/mag").await);
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
