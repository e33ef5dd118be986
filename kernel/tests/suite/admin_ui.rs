//! The merchant's admin in the browser (`/admin`, `admin-ui/`), through its forms as a
//! browser posts them: every page needs a staff session and its permission (the walk of
//! the page table), signing in with a second factor makes a session the API lists and
//! revokes, forms without the CSRF token are refused, and a merchant creates a product,
//! receives a lot and fulfils an order. The browser test is `browser::admin`.

use std::time::Duration;

use crate::common::browser::*;
use crate::common::*;
use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};

pub(crate) const STAFF_PASSWORD: &str = "a long staff password";

/// A staff member with `role` who signs in with [`STAFF_PASSWORD`]; answers their id.
pub(crate) async fn staff(app: &TestApp, role: &str, email: &str) -> i64 {
    let r = app
        .admin_post(
            "/api/v1/admin/staff",
            &json!({"email": email, "name": "Staff", "role": role, "password": STAFF_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_i64().unwrap()
}

/// Posts the sign-in form with the password.
pub(crate) async fn post_password(
    app: &TestApp,
    browser: &mut Browser,
    email: &str,
) -> TestResponse {
    let page = get(app, browser, "/admin/sign-in").await;
    assert_html(&page, StatusCode::OK);
    let csrf = csrf_of(&page);
    post_form(
        app,
        browser,
        "/admin/sign-in",
        &[
            ("csrf", &csrf),
            ("email", email),
            ("password", STAFF_PASSWORD),
        ],
    )
    .await
}

/// A browser signed in to the admin as a new staff member with `role`.
pub(crate) async fn signed_in_as(app: &TestApp, role: &str) -> Browser {
    let email = format!("{role}-{}@staff.example", rand_suffix());
    staff(app, role, &email).await;
    let mut browser = Browser::default();
    let r = post_password(app, &mut browser, &email).await;
    assert_eq!(location(&r), "/admin");
    assert!(browser.has("olv_staff"), "{:?}", set_cookies(&r));
    browser
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A form post from an admin page: the page's CSRF token with `fields`.
pub(crate) async fn submit(
    app: &TestApp,
    browser: &mut Browser,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> TestResponse {
    let form = get(app, browser, page).await;
    assert_html(&form, StatusCode::OK);
    let csrf = csrf_of(&form);
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    post_form(app, browser, action, &all).await
}

/// A store with the test supplement (`mag`, MAG-60 and MAG-120) and a lot of MAG-60, a
/// shipping rate and a tax rate; answers the product's id.
pub(crate) async fn store(app: &TestApp) -> i64 {
    basic_setup(app).await;
    let r = app
        .admin_post("/api/v1/admin/products", &supplement("mag", "MAG"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let product = r.json()["id"].as_i64().unwrap();
    let r = app
        .admin_post(
            "/api/v1/admin/lots",
            &json!({"sku": "MAG-60", "location": "AMS-1", "batch": "B1",
                "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = app
        .admin_send(
            Method::PUT,
            "/api/v1/admin/shipping-rates",
            &json!([{"code": "standard", "name": "Standard", "country": "*",
                "max_weight_grams": 5000, "price_minor": 495, "currency": "EUR"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    product
}

/// An order of two MAG-60 by a guest, paid (without a payment adapter: marked paid).
pub(crate) async fn paid_order(app: &TestApp) -> String {
    let number = placed_order(app).await;
    let r = app
        .admin_post(
            &format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "paid"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    number
}

/// An order of two MAG-60 by a guest, placed without paying (pending).
pub(crate) async fn placed_order(app: &TestApp) -> String {
    let r = app
        .request(Method::POST, "/api/v1/carts", None, None, None)
        .await;
    let cart = r.json()["id"].as_str().unwrap().to_owned();
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/carts/{cart}/lines"),
            None,
            Some(json!({"sku": "MAG-60", "quantity": 2}).to_string().into()),
            Some("application/json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/carts/{cart}/checkout"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", format!("admin-ui-{}", rand_suffix()))
        .body(axum::body::Body::from(
            json!({"email": "buyer@example.com", "shipping_method": "standard",
                "shipping_address": {"name": "Ada Buyer", "line1": "Keizersgracht 1",
                    "city": "Amsterdam", "postal_code": "1015 AA", "country": "NL"}})
            .to_string(),
        ))
        .unwrap();
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["number"].as_str().unwrap().to_owned()
}

/// A page of the table with its placeholders filled in.
fn concrete(path: &str, product: i64, variant: i64, order: &str) -> String {
    path.replace("/products/{id}", &format!("/products/{product}"))
        .replace("/variants/{id}", &format!("/variants/{variant}"))
        .replace("/plugins/{id}", "/plugins/no-such-plugin")
        .replace("{number}", order)
}

/// The page is a page (never JSON) with this status.
#[track_caller]
pub(crate) fn assert_page(r: &TestResponse, status: StatusCode, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let content_type = r.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(
        content_type.starts_with("text/html"),
        "{what}: {content_type}"
    );
}

both_backends! {
    async fn every_admin_page_needs_a_session_and_its_permission(backend: Backend) {
        let app = TestApp::start(backend).await;
        let product = store(&app).await;
        let variant = app.admin_get(&format!("/api/v1/admin/products/{product}")).await.json()["variants"][0]["id"].as_i64().unwrap();
        let order = paid_order(&app).await;
        let r = app.admin_post("/api/v1/admin/recalls", &json!({"batch": "B1", "reason": "walk"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let recall = r.json()["id"].as_i64().unwrap();
        app.customer_token("walk@example.com").await;
        let pseudonym: String = sqlx::query_scalar("SELECT pseudonym FROM customers")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap();
        let member = staff(&app, "support", "member@staff.example").await;
        let lot: i64 = sqlx::query_scalar("SELECT MIN(id) FROM lots")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap();
        let category: i64 = sqlx::query_scalar("SELECT MIN(id) FROM categories")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap();
        let mut nobody = Browser::default();
        let mut catalog = signed_in_as(&app, "catalog").await;
        let mut owner = signed_in_as(&app, "owner").await;
        // A form token for the visitor without a session (the sign-in page's).
        let csrf = csrf_of(&get(&app, &mut nobody, "/admin/sign-in").await);
        let catalog_csrf = csrf_of(&get(&app, &mut catalog, "/admin").await);
        let mut refused_to_catalog = 0;
        for page in olivine::admin_ui::PAGES {
            // No subscription in this store: its page is the 404 page, to every role.
            // Nor a plugin or a notification (their pages have tests of their own).
            // Nor a product image (the images test has them), nor an import run (the
            // imports test has them).
            let absent = ["/admin/subscriptions/", "/admin/plugins/{id}", "/admin/notifications/{id}", "/admin/imports/{id}"]
                .iter().any(|p| page.path.starts_with(p)) || page.path.contains("{image_id}");
            let path = concrete(page.path, product, variant, &order)
                .replace("/recalls/{id}", &format!("/recalls/{recall}"))
                .replace("/lots/{id}", &format!("/lots/{lot}"))
                .replace("/categories/{id}", &format!("/categories/{category}"))
                .replace("{pseudonym}", &pseudonym)
                .replace("/staff/{id}", &format!("/staff/{member}"))
                .replace("{token_id}", "1")
                .replace("{topic}/{channel}", "order.shipped/email");
            let opens = if absent { StatusCode::NOT_FOUND } else { StatusCode::OK };
            let what = format!("{} {path}", page.method);
            // No session: to the sign-in page, coming back here afterwards.
            let r = if page.method == Method::GET {
                get(&app, &mut nobody, &path).await
            } else {
                post_form(&app, &mut nobody, &path, &[("csrf", &csrf)]).await
            };
            let to = location(&r);
            assert!(to.starts_with("/admin/sign-in?next=%2Fadmin"), "{what}: {to}");
            // The catalog role: the pages its permissions open, the 403 page elsewhere.
            let api = olivine::staff::permissions::required(&page.api_method, page.api_route);
            let catalog_may = match api {
                Some(olivine::staff::Access::AnyStaff) => true,
                Some(olivine::staff::Access::Needs(p)) => olivine::staff::Role::Catalog.allows(p),
                None => panic!("{what}: its API route {} is not in the permission table", page.api_route),
            };
            if !catalog_may {
                refused_to_catalog += 1;
                let r = if page.method == Method::GET {
                    get(&app, &mut catalog, &path).await
                } else {
                    post_form(&app, &mut catalog, &path, &[("csrf", &catalog_csrf)]).await
                };
                assert_page(&r, StatusCode::FORBIDDEN, &what);
                assert!(r.text().contains("Not open to your role"), "{what}");
            } else if page.method == Method::GET {
                let r = get(&app, &mut catalog, &path).await;
                assert_page(&r, opens, &what);
            }
            // The owner opens every page (a download is CSV, not a page).
            if page.method == Method::GET && path.ends_with(".csv") {
                let r = get(&app, &mut owner, &path).await;
                assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text());
            } else if page.method == Method::GET {
                let r = get(&app, &mut owner, &path).await;
                assert_page(&r, opens, &what);
            }
        }
        assert!(refused_to_catalog >= 8, "the catalog role is refused the orders pages");
        // The navigation shows a role only what it may use.
        let home = get(&app, &mut catalog, "/admin").await.text();
        assert!(home.contains(r#"href="/admin/products""#), "{home}");
        assert!(!home.contains(r#"href="/admin/orders""#), "{home}");
        assert!(!home.contains("id=\"today-orders\""), "no orders panel for the catalog role");
        let home = get(&app, &mut owner, "/admin").await.text();
        for panel in ["today-orders", "expiring-lots", "out-of-stock", "failed-renewals", "dead-letters", "disabled-plugins"] {
            assert!(home.contains(&format!("id=\"{panel}\"")), "{panel}: {home}");
        }
        // A page outside the table is refused to everyone; an unknown address is not found.
        let r = get(&app, &mut owner, "/admin/products/not-a-number").await;
        assert_page(&r, StatusCode::NOT_FOUND, "a product id that is not a number");
        let r = get(&app, &mut owner, "/admin/staff/not-a-number").await;
        assert_page(&r, StatusCode::NOT_FOUND, "a staff id that is not a number");
        app.stop().await;
    }

    async fn signing_in_with_a_second_factor_makes_a_session_the_api_lists(backend: Backend) {
        let app = TestApp::start(backend).await;
        let email = "ana@staff.example";
        staff(&app, "admin", email).await;
        // Two-factor sign-in on, through the API.
        let r = app.request(Method::POST, "/api/v1/staff/sign-in", None,
            Some(json!({"email": email, "password": STAFF_PASSWORD}).to_string().into()), Some("application/json")).await;
        let api_token = r.json()["token"].as_str().unwrap().to_owned();
        let r = app.request(Method::POST, "/api/v1/staff/me/mfa/totp", Some(&api_token), Some("{}".into()), Some("application/json")).await;
        let secret = r.json()["secret"].as_str().unwrap().to_owned();
        mid_step(&app);
        let r = app.request(Method::POST, "/api/v1/staff/me/mfa/totp/confirm", Some(&api_token),
            Some(json!({"code": code(&app, &secret)}).to_string().into()), Some("application/json")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.kernel.state.clock.advance(Duration::from_secs(30));

        // The password answers the second step, not a session.
        let mut browser = Browser::default();
        let r = post_password(&app, &mut browser, email).await;
        assert_page(&r, StatusCode::OK, "the second step");
        assert!(!browser.has("olv_staff"), "no session before the second factor");
        let page = r.text();
        let challenge = hidden_value(&page, "challenge");
        let csrf = csrf_of(&r);
        // A wrong code: said next to the field.
        let r = post_form(&app, &mut browser, "/admin/sign-in/two-factor",
            &[("csrf", &csrf), ("challenge", &challenge), ("code", "000000")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a wrong code");
        assert!(r.text().contains("id=\"f-code-error\""), "{}", r.text());
        mid_step(&app);
        let r = post_form(&app, &mut browser, "/admin/sign-in/two-factor",
            &[("csrf", &csrf), ("challenge", &challenge), ("code", &code(&app, &secret)), ("next", "/admin/products")]).await;
        assert_eq!(location(&r), "/admin/products");
        let cookie = set_cookie(&r, "olv_staff");
        for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/admin"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert_page(&get(&app, &mut browser, "/admin/products").await, StatusCode::OK, "signed in");

        // The session is the API's: listed with its factor, and revoking it ends it here.
        let token = browser.get("olv_staff").unwrap();
        let sessions = app.request(Method::GET, "/api/v1/staff/me/sessions", Some(&api_token), None, None).await.json();
        // The API's own session took the factor when it confirmed the app; the other one
        // is the browser's.
        let listed: Vec<&Value> = sessions.as_array().unwrap().iter().filter(|s| s["current"] == false).collect();
        assert_eq!(listed.len(), 1, "{sessions}");
        assert_eq!(listed[0]["second_factor"], "totp", "{sessions}");
        let id = listed[0]["id"].as_i64().unwrap();
        let own = app.request(Method::GET, "/api/v1/staff/me/sessions", Some(&token), None, None).await.json();
        assert!(own.as_array().unwrap().iter().any(|s| s["id"] == id && s["current"] == true), "{own}");
        let r = app.request(Method::DELETE, &format!("/api/v1/staff/me/sessions/{id}"), Some(&api_token), None, None).await;
        assert!(r.status.is_success(), "{}", r.text());
        let r = get(&app, &mut browser, "/admin/products").await;
        assert!(location(&r).starts_with("/admin/sign-in"), "a revoked session signs out");
        app.stop().await;
    }

    async fn signing_in_again_ends_the_session_the_browser_held(backend: Backend) {
        let app = TestApp::start(backend).await;
        let id = staff(&app, "catalog", "again@staff.example").await;
        let mut browser = Browser::default();
        let r = post_password(&app, &mut browser, "again@staff.example").await;
        assert_eq!(location(&r), "/admin");
        // Signed in, the browser posts the sign-in form again (a second tab).
        let csrf = csrf_of(&get(&app, &mut browser, "/admin").await);
        let r = post_form(&app, &mut browser, "/admin/sign-in",
            &[("csrf", &csrf), ("email", "again@staff.example"), ("password", STAFF_PASSWORD)]).await;
        assert_eq!(location(&r), "/admin");
        use sqlx::Row;
        let open: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM staff_tokens
                WHERE staff_id = $1 AND kind = 'session' AND revoked_at IS NULL")
            .bind(id).fetch_one(&app.kernel.state.db.pool).await.unwrap().get(0);
        assert_eq!(open, 1, "the session the browser held is closed");
        assert_page(&get(&app, &mut browser, "/admin/products").await, StatusCode::OK, "the new session works");
        app.stop().await;
    }

    async fn the_product_page_adds_and_changes_variants_with_errors_beside_the_field(backend: Backend) {
        let app = TestApp::start(backend).await;
        let product = store(&app).await;
        let mut browser = signed_in_as(&app, "catalog").await;
        let page = format!("/admin/products/{product}");
        let add = format!("{page}/variants");
        let variant = |price| [("sku", "MAG-90"), ("title", "90 capsules"), ("price_minor", price),
            ("currency", "EUR"), ("weight_grams", "150")];
        // A price that is not an amount: the page again, 422, the message under the price.
        let r = submit(&app, &mut browser, &page, &add, &variant("lots")).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a price that is not one");
        assert!(r.text().contains("id=\"f-price-minor-error\""), "{}", r.text());
        let r = submit(&app, &mut browser, &page, &add, &variant("24.99")).await;
        assert_eq!(location(&r), format!("{page}?done=variant_added"));
        let json = app.admin_get(&format!("/api/v1/admin/products/{product}")).await.json();
        let added = json["variants"].as_array().unwrap().iter().find(|v| v["sku"] == "MAG-90").cloned().unwrap();
        assert_eq!(added["price"]["amount_minor"], 2499);
        // Changing it: a SKU another variant has is refused beside the SKU; a new price is saved.
        let id = added["id"].as_i64().unwrap();
        let change = format!("/admin/variants/{id}");
        let r = submit(&app, &mut browser, &page, &change,
            &[("sku", "MAG-60"), ("title", "90 capsules"), ("price_minor", "24.99"), ("weight_grams", "150")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a SKU that is taken");
        let r = submit(&app, &mut browser, &page, &change,
            &[("sku", "MAG-90"), ("title", "90 capsules"), ("price_minor", "22.50"), ("weight_grams", "150")]).await;
        assert_eq!(location(&r), format!("{page}?done=variant_saved#variant-{id}"));
        let json = app.admin_get(&format!("/api/v1/admin/products/{product}")).await.json();
        let changed = json["variants"].as_array().unwrap().iter().find(|v| v["id"] == id).cloned().unwrap();
        assert_eq!(changed["price"]["amount_minor"], 2250);
        app.stop().await;
    }

    async fn forms_without_the_csrf_token_are_refused(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let mut browser = signed_in_as(&app, "catalog").await;
        let fields = [("name", "Forged"), ("slug", "forged"), ("product_type", "bundle"), ("status", "active")];
        // No token.
        let r = post_form(&app, &mut browser, "/admin/products/new", &fields).await;
        assert_page(&r, StatusCode::FORBIDDEN, "no token");
        assert!(r.text().contains("This form has expired"));
        // A token of another browser's session.
        let mut other = signed_in_as(&app, "catalog").await;
        let foreign = csrf_of(&get(&app, &mut other, "/admin/products/new").await);
        let mut with_foreign = vec![("csrf", foreign.as_str())];
        with_foreign.extend_from_slice(&fields);
        let r = post_form(&app, &mut browser, "/admin/products/new", &with_foreign).await;
        assert_page(&r, StatusCode::FORBIDDEN, "another session's token");
        // The right token from another site.
        let csrf = csrf_of(&get(&app, &mut browser, "/admin/products/new").await);
        let r = send(&app, Method::POST, "/admin/sign-out", &browser, Some(&[("csrf", &csrf)]),
            &[("origin", "https://evil.example")]).await;
        assert_page(&r, StatusCode::FORBIDDEN, "another site");
        assert_eq!(app.count("products").await, 0);
        // Signing out with the token ends the session.
        let r = post_form(&app, &mut browser, "/admin/sign-out", &[("csrf", &csrf)]).await;
        assert_eq!(location(&r), "/admin/sign-in");
        assert!(!browser.has("olv_staff"));
        let r = get(&app, &mut browser, "/admin").await;
        assert!(location(&r).starts_with("/admin/sign-in"));
        app.stop().await;
    }

    async fn a_merchant_creates_a_product_and_receives_a_lot_through_the_forms(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let mut browser = signed_in_as(&app, "catalog").await;
        let new = "/admin/products/new?type=skincare";
        let mut fields = vec![
            ("product_type", "skincare"), ("name", "Calm Serum"), ("slug", "calm-serum"),
            ("description", "A serum for tests."), ("status", "active"), ("categories", "supplements"),
            ("tags", "calm, serum"), ("subscription_intervals", "30d"),
            ("attributes.skin_types", "dry"), ("attributes.skin_types", "sensitive"),
            ("attributes.volume_ml", "30"), ("attributes.routine_step", "serum"),
            ("attributes.application", "Two drops at night."), ("attributes.key_ingredients", "niacinamide"),
            ("attributes.period_after_opening_months", ""),
            ("variants[0].title", "30 ml"), ("variants[0].sku", "CALM-30"), ("variants[0].price_minor", "24.50"),
            ("variants[0].currency", "EUR"), ("variants[0].weight_grams", "80"),
        ];
        // The domain's errors land next to their fields, the rest of the form kept.
        let mut broken = fields.clone();
        broken.retain(|(name, _)| *name != "name" && *name != "attributes.skin_types");
        let r = submit(&app, &mut browser, new, "/admin/products/new", &broken).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a product without a name");
        let page = r.text();
        assert!(page.contains("id=\"f-name-error\""), "{page}");
        assert!(page.contains("id=\"f-attributes-skin-types-error\""), "{page}");
        assert!(page.contains("value=\"CALM-30\""), "the form keeps what was typed");
        // A price that is not an amount.
        fields.retain(|(name, _)| *name != "variants[0].price_minor");
        let mut bad_price = fields.clone();
        bad_price.push(("variants[0].price_minor", "cheap"));
        let r = submit(&app, &mut browser, new, "/admin/products/new", &bad_price).await;
        assert!(r.text().contains("id=\"f-variants-0-price-minor-error\""), "{}", r.text());
        fields.push(("variants[0].price_minor", "24.50"));

        let r = submit(&app, &mut browser, new, "/admin/products/new", &fields).await;
        let to = location(&r);
        let id: i64 = to.trim_start_matches("/admin/products/").split('?').next().unwrap().parse().unwrap();
        let product = app.admin_get(&format!("/api/v1/admin/products/{id}")).await.json();
        assert_eq!(product["name"], "Calm Serum", "{product}");
        assert_eq!(product["attributes"]["skin_types"], json!(["dry", "sensitive"]), "{product}");
        assert_eq!(product["variants"][0]["price"]["amount_minor"], 2450, "{product}");
        let audit = app.admin_get("/api/v1/admin/audit?action=product.created").await.json();
        assert_eq!(audit["entries"][0]["target_id"], json!(id.to_string()), "{audit}");

        // Receiving a lot, from the product page's link.
        let page = get(&app, &mut browser, &to).await;
        assert!(page.text().contains("The product was created."));
        assert!(page.text().contains("/admin/lots/new?sku=CALM-30"));
        let lot = [("sku", "CALM-30"), ("location", "AMS-1"), ("batch", "L-2026-01"),
            ("manufactured_on", date_in(-5).leak() as &str), ("expires_on", date_in(50).leak() as &str),
            ("quantity", "24"), ("note", "")];
        let mut expired = lot.to_vec();
        expired[4] = ("expires_on", date_in(-30).leak());
        let r = submit(&app, &mut browser, "/admin/lots/new?sku=CALM-30", "/admin/lots/new", &expired).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "expiry before manufacture");
        assert!(r.text().contains("id=\"f-expires-on-error\""), "{}", r.text());
        let r = submit(&app, &mut browser, "/admin/lots/new?sku=CALM-30", "/admin/lots/new", &lot).await;
        assert_eq!(location(&r), format!("/admin/products/{id}?done=received"));
        let lots = app.admin_get("/api/v1/admin/lots?sku=CALM-30").await.json();
        assert_eq!((lots[0]["batch"].as_str(), lots[0]["quantity"].as_i64()), (Some("L-2026-01"), Some(24)), "{lots}");
        let page = get(&app, &mut browser, &format!("/admin/products/{id}")).await.text();
        assert!(page.contains("L-2026-01"), "{page}");
        // The dashboard counts it among the lots expiring within 60 days.
        let lots_page = get(&app, &mut browser, "/admin/lots?expiring=60").await.text();
        assert!(lots_page.contains("L-2026-01"), "{lots_page}");

        // The shop sells it.
        app.settle().await;
        let r = app.get("/p/calm-serum").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.text().contains("Calm Serum"));
        // The products list finds it by name and by SKU, and filters by status.
        for query in ["q=calm", "q=CALM-30", "status=active&category=supplements"] {
            let list = get(&app, &mut browser, &format!("/admin/products?{query}")).await.text();
            assert!(list.contains("Calm Serum"), "{query}: {list}");
        }
        let list = get(&app, &mut browser, "/admin/products?status=draft").await.text();
        assert!(!list.contains("Calm Serum"), "{list}");
        app.stop().await;
    }

    async fn support_fulfils_an_order_with_a_tracking_number(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app).await;
        let number = paid_order(&app).await;
        let mut browser = signed_in_as(&app, "support").await;
        // The list, filtered.
        let list = get(&app, &mut browser, "/admin/orders?status=paid&sku=MAG-60").await.text();
        assert!(list.contains(&number), "{list}");
        let list = get(&app, &mut browser, "/admin/orders?sku=MAG-120").await.text();
        assert!(!list.contains(&number), "{list}");
        let list = get(&app, &mut browser, &format!("/admin/orders?from={}&to={}", date_in(0), date_in(0))).await.text();
        assert!(list.contains(&number), "{list}");
        let r = get(&app, &mut browser, "/admin/orders?from=yesterday").await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a date that is not one");
        // By the batch its units came from.
        let list = get(&app, &mut browser, "/admin/orders?batch=B1").await.text();
        assert!(list.contains(&number), "{list}");
        let list = get(&app, &mut browser, "/admin/orders?batch=B2").await.text();
        assert!(!list.contains(&number), "{list}");
        // The order: its lines and the lot its units came from.
        let page = get(&app, &mut browser, &format!("/admin/orders/{number}")).await.text();
        assert!(page.contains("MAG-60") && page.contains("B1"), "{page}");
        assert!(page.contains(&format!("/admin/orders/{number}/fulfil")), "{page}");
        // Fulfilling without a tracking number: said next to the field.
        let fulfil = format!("/admin/orders/{number}/fulfil");
        let r = submit(&app, &mut browser, &fulfil, &fulfil, &[("carrier", "DHL"), ("tracking_number", "")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "no tracking number");
        assert!(r.text().contains("id=\"f-tracking-number-error\""), "{}", r.text());
        let r = submit(&app, &mut browser, &fulfil, &fulfil, &[("carrier", "DHL"), ("tracking_number", "3SABC123")]).await;
        assert_eq!(location(&r), format!("/admin/orders/{number}?done=fulfilled"));
        let order = app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json();
        assert_eq!((order["status"].as_str(), order["tracking_number"].as_str()), (Some("fulfilled"), Some("3SABC123")));
        let page = get(&app, &mut browser, &format!("/admin/orders/{number}?done=fulfilled")).await.text();
        assert!(page.contains("3SABC123") && page.contains("payment was captured"), "{page}");
        // A fulfilled order cannot be cancelled: the page says why.
        let cancel = format!("/admin/orders/{number}/cancel");
        let r = submit(&app, &mut browser, &cancel, &cancel, &[]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "cancelling a fulfilled order");
        let audit = app.admin_get(&format!("/api/v1/admin/audit?target_type=order&target_id={number}")).await.json();
        assert!(audit["entries"].as_array().unwrap().iter().any(|e| e["actor"].as_str().is_some_and(|a| a.starts_with("staff:"))), "{audit}");
        app.stop().await;
    }
}

both_backends! {
    async fn catalog_staff_recall_a_batch_after_confirming_and_support_reads_the_report(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app).await;
        let number = paid_order(&app).await;
        let mut catalog = signed_in_as(&app, "catalog").await;
        let new = "/admin/recalls/new";
        // Missing fields: said next to them.
        let r = submit(&app, &mut catalog, new, new, &[("batch", ""), ("sku", ""), ("reason", "")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "an empty recall");
        assert!(r.text().contains("id=\"f-batch-error\"") && r.text().contains("id=\"f-reason-error\""), "{}", r.text());
        let r = submit(&app, &mut catalog, new, new, &[("batch", "NOPE"), ("sku", ""), ("reason", "notice")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "an unknown batch");
        // The first post shows the lots it would take out of sale; nothing is recalled yet.
        let r = submit(&app, &mut catalog, new, new, &[("batch", "B1"), ("sku", ""), ("reason", "Supplier notice")]).await;
        assert_page(&r, StatusCode::OK, "the confirmation");
        let confirm = r.text();
        assert!(confirm.contains("Recall batch B1") && confirm.contains("MAG-60") && confirm.contains("AMS-1"), "{confirm}");
        assert_eq!(app.count("lot_recalls").await, 0);
        let csrf = csrf_of(&r);
        let r = post_form(&app, &mut catalog, new, &[("csrf", &csrf), ("batch", "B1"), ("sku", ""),
            ("reason", "Supplier notice"), ("confirm", "yes")]).await;
        // The catalog role may not read reports (they name customers): back to the list.
        assert_eq!(location(&r), "/admin/recalls");
        let list = get(&app, &mut catalog, "/admin/recalls").await.text();
        assert!(list.contains("B1") && list.contains("Supplier notice"), "{list}");
        app.settle().await;
        let product = app.get("/api/v1/products/mag").await.json();
        assert_eq!(product["variants"][0]["availability"]["sellable_quantity"], 0, "{product}");
        // Support reads the report and downloads it.
        let id = app.admin_get("/api/v1/admin/recalls").await.json()[0]["id"].as_i64().unwrap();
        let mut support = signed_in_as(&app, "support").await;
        let page = get(&app, &mut support, &format!("/admin/recalls/{id}")).await;
        assert_page(&page, StatusCode::OK, "the report");
        assert!(page.text().contains(&number) && page.text().contains("buyer@example.com"), "{}", page.text());
        let csv = get(&app, &mut support, &format!("/admin/recalls/{id}/report.csv")).await;
        assert!(csv.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/csv"));
        assert!(csv.text().contains(&format!("{number},paid,")), "{}", csv.text());
        app.stop().await;
    }

    async fn an_admin_rolls_a_plugin_back_and_turns_it_off(backend: Backend) {
        let app = TestApp::start(backend).await;
        let v1 = plugin_upload("subscribe-and-save", "subscribe_and_save", |m| m);
        assert_eq!(app.admin_post("/api/v1/admin/plugins", &v1).await.status, StatusCode::CREATED);
        let mut v2 = plugin_upload("subscribe-and-save", "subscribe_and_save", |m| {
            m.replace("version = \"0.1.0\"", "version = \"0.2.0\"")
        });
        v2["fixtures"] = json!({});
        let r = app.admin_post("/api/v1/admin/plugins", &v2).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let mut browser = signed_in_as(&app, "admin").await;
        let page = get(&app, &mut browser, "/admin/plugins").await.text();
        assert!(page.contains("id=\"plugin-subscribe-and-save\"") && page.contains("Roll back to 0.1.0"), "{page}");
        let rollback = "/admin/plugins/subscribe-and-save/rollback";
        // It asks first: unconfirmed, nothing is rolled back.
        let r = submit(&app, &mut browser, "/admin/plugins", rollback, &[]).await;
        assert_page(&r, StatusCode::OK, "the rollback's confirmation");
        assert!(r.text().contains("Roll subscribe-and-save back to 0.1.0?"), "{}", r.text());
        let plugin = app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json();
        assert_eq!(plugin["active_version"], "0.2.0", "{plugin}");
        let r = submit(&app, &mut browser, "/admin/plugins", rollback, &[("confirm", "yes")]).await;
        assert_eq!(location(&r), "/admin/plugins");
        let plugin = app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json();
        assert_eq!(plugin["active_version"], "0.1.0", "{plugin}");
        let r = submit(&app, &mut browser, "/admin/plugins", "/admin/plugins/subscribe-and-save", &[("enabled", "false"), ("confirm", "yes")]).await;
        assert_eq!(location(&r), "/admin/plugins");
        let plugin = app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json();
        assert_eq!(plugin["enabled"], false, "{plugin}");
        assert!(get(&app, &mut browser, "/admin/plugins").await.text().contains("Turn on"));
        // An unknown plugin is the 404 page.
        let r = submit(&app, &mut browser, "/admin/plugins", "/admin/plugins/nothing/rollback", &[]).await;
        assert_page(&r, StatusCode::NOT_FOUND, "an unknown plugin");
        app.stop().await;
    }
}

both_backends! {
    async fn the_stores_two_factor_policy_sends_staff_to_set_it_up_first(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut browser = signed_in_as(&app, "catalog").await;
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"staff_two_factor": "all_staff"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // Every page sends the staff member to set it up.
        let r = get(&app, &mut browser, "/admin/products").await;
        assert_eq!(location(&r), "/admin/account/two-factor");
        let page = get(&app, &mut browser, "/admin/account/two-factor").await;
        assert_page(&page, StatusCode::OK, "the set-up page");
        assert!(page.text().contains("requires two-factor sign-in"), "{}", page.text());
        let r = submit(&app, &mut browser, "/admin/account/two-factor", "/admin/account/two-factor", &[("step", "start")]).await;
        assert_page(&r, StatusCode::OK, "the key");
        let html = r.text();
        let start = html.find(r#"id="totp-secret">"#).expect("the key") + r#"id="totp-secret">"#.len();
        let secret = html[start..start + html[start..].find('<').unwrap()].to_owned();
        let csrf = csrf_of(&r);
        mid_step(&app);
        let r = post_form(&app, &mut browser, "/admin/account/two-factor",
            &[("csrf", &csrf), ("step", "confirm"), ("code", &code(&app, &secret))]).await;
        assert_page(&r, StatusCode::OK, "the recovery codes");
        assert!(r.text().contains("recovery-codes"), "{}", r.text());
        // Confirmed from this session: it counts as signed in with the factor.
        assert_page(&get(&app, &mut browser, "/admin/products").await, StatusCode::OK, "set up");
        app.stop().await;
    }
}

/// The value of the hidden input `name` in a page.
#[track_caller]
pub(crate) fn hidden_value(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// Moves the kernel's clock to 10 s into a 30-second step.
fn mid_step(app: &TestApp) {
    let into = app.kernel.state.clock.now().timestamp().rem_euclid(30);
    let by = (40 - into).rem_euclid(30);
    app.kernel
        .state
        .clock
        .advance(Duration::from_secs(by as u64));
}

/// The code the authenticator app shows now.
fn code(app: &TestApp, secret: &str) -> String {
    let at = u64::try_from(app.kernel.state.clock.now().timestamp()).unwrap();
    olivine::staff::mfa::code_at(secret, at).expect("a code")
}

/// A supplement of its own name with variants `<prefix>-60` and `<prefix>-120`.
async fn named_product(app: &TestApp, slug: &str, prefix: &str, name: &str) {
    let mut product = supplement(slug, prefix);
    product["name"] = json!(name);
    let r = app.admin_post("/api/v1/admin/products", &product).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

/// Receives `quantity` units of `sku` in batch `batch`, expiring `days` from today.
async fn lot_of(app: &TestApp, sku: &str, batch: &str, days: i64, quantity: i64) -> i64 {
    let r = app
        .admin_post(
            "/api/v1/admin/lots",
            &json!({"sku": sku, "location": "AMS-1", "batch": batch,
                "manufactured_on": date_in(-10), "expires_on": date_in(days), "quantity": quantity}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_i64().unwrap()
}

async fn move_order(app: &TestApp, number: &str, to: &str) {
    let r = app
        .admin_post(
            &format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({ "to": to }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// The HTML of the element with `id` up to its section's end (a dashboard panel).
#[track_caller]
fn section_of<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no {id} in {page}"));
    let end = page[start..].find("</section>").unwrap() + start;
    &page[start..end]
}

/// The values of `attribute="<prefix>…"` in a page, in order.
fn values_after(page: &str, prefix: &str) -> Vec<String> {
    page.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &page[at + prefix.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

/// Page 1 and 2 of a list together hold each of `all` once and nothing else.
#[track_caller]
fn paged_once_each(first: &[String], second: &[String], all: &[String], what: &str) {
    assert_eq!(first.len(), 50, "{what}: a full first page: {first:?}");
    assert_eq!(first.len() + second.len(), all.len(), "{what}: {second:?}");
    let mut seen: Vec<&String> = first.iter().chain(second).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), all.len(), "{what}: nothing twice");
    assert!(
        all.iter().all(|x| seen.contains(&x)),
        "{what}: every row once"
    );
}

both_backends! {
    async fn the_dashboard_counts_what_sells_today_and_what_was_paid(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app).await;
        // In stock: mag (its MAG-60 lot from the store, and one of MAG-120).
        lot_of(&app, "MAG-120", "B2", 400, 5).await;
        // Out of stock, each for another reason: a lot inside the minimum shelf life (60
        // days by default), a recalled lot, no lot at all.
        named_product(&app, "short", "SHRT", "Short Dated Serum").await;
        lot_of(&app, "SHRT-60", "S1", 30, 5).await;
        lot_of(&app, "SHRT-120", "S2", 400, 5).await;
        named_product(&app, "recalled", "RCL", "Recalled Tablets").await;
        lot_of(&app, "RCL-60", "RB-1", 400, 5).await;
        lot_of(&app, "RCL-120", "RB-2", 400, 5).await;
        let r = app.admin_post("/api/v1/admin/recalls", &json!({"batch": "RB-1", "reason": "supplier notice"})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        named_product(&app, "never", "NVR", "Never Stocked Powder").await;
        // In stock with a short-dated lot besides: one lot that sells is enough.
        named_product(&app, "fine", "FINE", "Fine Capsules").await;
        lot_of(&app, "FINE-60", "F1", 400, 5).await;
        lot_of(&app, "FINE-60", "F0", 10, 3).await;
        lot_of(&app, "FINE-120", "F2", 400, 5).await;

        // Today: a paid order, one paid then refunded, one pending, one cancelled.
        let paid = paid_order(&app).await;
        let refunded = paid_order(&app).await;
        move_order(&app, &refunded, "refunded").await;
        placed_order(&app).await;
        let cancelled = placed_order(&app).await;
        move_order(&app, &cancelled, "cancelled").await;
        let total = app.admin_get(&format!("/api/v1/admin/orders/{paid}")).await.json()["total_minor"].as_i64().unwrap();
        assert_eq!(total, 2 * 1999 + 495);

        let mut owner = signed_in_as(&app, "owner").await;
        let home = get(&app, &mut owner, "/admin").await.text();
        let orders = section_of(&home, "today-orders");
        // Placed and not cancelled: three; paid: two; revenue: the paid one's total, the
        // refunded one's less its refund (nothing), the pending one's not at all.
        assert!(orders.contains(r#"<p class="count orders-placed">3</p>"#), "{orders}");
        assert!(orders.contains(r#"<span class="orders-paid">2</span>"#), "{orders}");
        assert!(orders.contains(r#"<strong class="revenue">€44.93</strong>"#), "{orders}");
        assert!(orders.contains("pending and cancelled orders bring in nothing"), "{orders}");
        let stock = section_of(&home, "out-of-stock");
        // SHRT-60, RCL-60, NVR-60 and NVR-120.
        assert!(stock.contains(r#"<p class="count">4</p>"#), "{stock}");
        let link = "/admin/products?status=active&amp;stock=out";
        assert!(stock.contains(link), "{stock}");

        // The link lists exactly the products with a variant out of stock.
        let list = get(&app, &mut owner, &link.replace("&amp;", "&")).await;
        assert_page(&list, StatusCode::OK, "the out-of-stock products");
        let list = list.text();
        for name in ["Short Dated Serum", "Recalled Tablets", "Never Stocked Powder"] {
            assert!(list.contains(name), "{name}: {list}");
        }
        for name in ["Test Magnesium", "Fine Capsules"] {
            assert!(!list.contains(name), "{name}: {list}");
        }
        assert_eq!(list.matches("class=\"product-link\"").count(), 3, "{list}");
        assert!(list.contains("3 in all"), "{list}");
        // The filter combines with the others and the pager keeps it.
        let list = get(&app, &mut owner, "/admin/products?stock=out&q=never").await.text();
        assert_eq!(list.matches("class=\"product-link\"").count(), 1, "{list}");
        assert!(list.contains("Never Stocked Powder"), "{list}");
        assert!(list.contains("Out of stock as counted at"), "{list}");
        for (query, expected) in [
            ("stock=out&status=draft", 0),
            ("stock=out&status=active&page=2", 0),
            ("stock=out&q=SHRT-120", 1),
            ("stock=out&q=MAG-60", 0),
        ] {
            let list = get(&app, &mut owner, &format!("/admin/products?{query}")).await.text();
            assert_eq!(list.matches("class=\"product-link\"").count(), expected, "{query}: {list}");
        }
        app.stop().await;
    }

    async fn the_products_list_counts_only_the_units_that_sell_today(backend: Backend) {
        let app = TestApp::start(backend).await;
        // mag: 10 units of MAG-60 in B1 (store), 5 of MAG-120; and besides, units the shop
        // does not sell: a recalled lot, an expired one, one inside the minimum shelf life
        // (60 days by default).
        store(&app).await;
        lot_of(&app, "MAG-120", "B2", 400, 5).await;
        lot_of(&app, "MAG-60", "B-RECALLED", 400, 7).await;
        lot_of(&app, "MAG-120", "B-EXPIRED", -2, 3).await;
        lot_of(&app, "MAG-60", "B-SHORT", 30, 4).await;
        // recalled: its only lot is recalled; never: no lot at all.
        named_product(&app, "recalled", "RCL", "Recalled Tablets").await;
        lot_of(&app, "RCL-60", "RB-1", 400, 6).await;
        for batch in ["B-RECALLED", "RB-1"] {
            let r = app.admin_post("/api/v1/admin/recalls", &json!({"batch": batch, "reason": "supplier notice"})).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        }
        named_product(&app, "never", "NVR", "Never Stocked Powder").await;

        let mut catalog = signed_in_as(&app, "catalog").await;
        let list = get(&app, &mut catalog, "/admin/products").await;
        assert_page(&list, StatusCode::OK, "the products");
        let list = list.text();
        assert!(list.contains(">Units in stock<"), "{list}");
        let units = |name: &str| {
            let start = list.find(&format!(">{name}<")).unwrap_or_else(|| panic!("{name}: {list}"));
            let row = &list[start..start + list[start..].find("</tr>").unwrap()];
            let cell = &row[row.find("class=\"num units\"").unwrap_or_else(|| panic!("{name}: {row}"))..];
            let cell = &cell[..cell.find("</td>").unwrap()];
            let sellable = cell.split("class=\"sellable-units\">").nth(1).and_then(|r| r.split('<').next()).map(str::to_owned);
            let unsellable = cell.split("(+").nth(1).and_then(|r| r.split(" unsellable)").next()).map(str::to_owned);
            (sellable, unsellable)
        };
        // The storefront's rule: 15 sell (10 + 5); 14 do not (7 recalled, 3 expired, 4
        // short-dated), counted apart.
        assert_eq!(units("Test Magnesium"), (Some("15".to_owned()), Some("14".to_owned())), "{list}");
        assert_eq!(units("Recalled Tablets"), (Some("0".to_owned()), Some("6".to_owned())), "{list}");
        assert_eq!(units("Never Stocked Powder"), (Some("0".to_owned()), None), "{list}");
        // The shop agrees: what it sells of mag is the 15.
        app.settle().await;
        let product = app.get("/api/v1/products/mag").await.json();
        let sold: i64 = product["variants"].as_array().unwrap().iter()
            .map(|v| v["availability"]["sellable_quantity"].as_i64().unwrap()).sum();
        assert_eq!(sold, 15, "{product}");
        app.stop().await;
    }

    async fn long_lists_page_on_the_server_keeping_their_filters(backend: Backend) {
        let app = TestApp::start(backend).await;
        let product = store(&app).await;
        let order = paid_order(&app).await;
        app.customer_token("pager@example.com").await;
        let pool = &app.kernel.state.db.pool;
        let customer: i64 = sqlx::query_scalar("SELECT MIN(id) FROM customers").fetch_one(pool).await.unwrap();
        let order_id: i64 = sqlx::query_scalar("SELECT id FROM orders WHERE number = $1").bind(&order).fetch_one(pool).await.unwrap();
        let lot: i64 = sqlx::query_scalar("SELECT MIN(id) FROM lots").fetch_one(pool).await.unwrap();
        let now = "2026-12-01T10:00:00.000Z";
        let (mut reviews, mut requests, mut subscriptions, mut notes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 1..=55 {
            // Written as the domain writes them: the pages read the rows, whatever made them.
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO reviews (product_id, customer_id, rating, title, body, author_name, status, created_at, updated_at)
                 VALUES ($1, NULL, 4, $2, 'Good.', 'Ada B.', 'pending', $3, $3) RETURNING id")
                .bind(product).bind(format!("Review {i:03}")).bind(now).fetch_one(pool).await.unwrap();
            reviews.push(id.to_string());
            let request = format!("pr_pager_{i:03}");
            sqlx::query(
                "INSERT INTO privacy_requests (id, kind, customer_pseudonym, requested_by, status, attempts, created_at, updated_at)
                 VALUES ($1, 'export', $2, 'staff:1', 'received', 0, $3, $3)")
                .bind(&request).bind(format!("c_pager{i:03}")).bind(format!("2026-12-01T10:00:{:02}.000Z", i)).execute(pool).await.unwrap();
            requests.push(format!("c_pager{i:03}"));
            let number = format!("S-PAGE-{i:03}");
            sqlx::query(
                "INSERT INTO subscriptions (number, customer_id, origin_order_id, status, interval_count, interval_unit, cycle,
                    next_renewal_at, currency, shipping_method, country, created_at, updated_at)
                 VALUES ($1, $2, $3, 'active', 1, 'month', 1, $4, 'EUR', 'standard', 'NL', $5, $5)")
                .bind(&number).bind(customer).bind(order_id).bind(format!("2027-01-{:02}T00:00:00.000Z", 1 + i % 28))
                .bind(now).execute(pool).await.unwrap();
            subscriptions.push(number);
            let note = format!("count {i:03}");
            let r = app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
                &json!({"delta": 1, "reason": "count_correction", "note": note})).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            notes.push(note);
        }
        // A request of another status, filtered out.
        sqlx::query(
            "INSERT INTO privacy_requests (id, kind, customer_pseudonym, requested_by, status, attempts, created_at, updated_at)
             VALUES ('pr_pager_done', 'export', 'c_pagerdone', 'staff:1', 'completed', 0, $1, $1)")
            .bind(now).execute(pool).await.unwrap();
        let mut owner = signed_in_as(&app, "owner").await;

        // Each list: the first page, its "Next" link (filters kept), the second page.
        let mut two_pages = async |first: &str, marker: &str| {
            let page = get(&app, &mut owner, first).await;
            assert_page(&page, StatusCode::OK, first);
            let page = page.text();
            let next = values_after(&page, "rel=\"next\" href=\"").pop()
                .unwrap_or_else(|| panic!("{first}: no next link in {page}")).replace("&amp;", "&");
            let second = get(&app, &mut owner, &next).await;
            assert_page(&second, StatusCode::OK, &next);
            let second = second.text();
            assert!(second.contains("rel=\"prev\""), "{next}: {second}");
            assert!(values_after(&second, "rel=\"next\" href=\"").is_empty(), "{next}: the last page");
            (values_after(&page, marker), values_after(&second, marker), next)
        };
        let (first, second, next) = two_pages("/admin/reviews?status=pending", "id=\"review-").await;
        assert!(next.contains("status=pending") && next.contains("page=2"), "{next}");
        paged_once_each(&first, &second, &reviews, "reviews");

        let (first, second, next) = two_pages("/admin/privacy-requests?status=received&kind=export", "href=\"/admin/customers/").await;
        assert!(next.contains("status=received") && next.contains("kind=export"), "{next}");
        assert!(!first.iter().chain(&second).any(|p| p == "c_pagerdone"), "the filter holds on page 2");
        paged_once_each(&first, &second, &requests, "privacy requests");

        let (first, second, next) = two_pages("/admin/subscriptions?status=active&failing=", "href=\"/admin/subscriptions/").await;
        assert!(next.contains("status=active"), "{next}");
        paged_once_each(&first, &second, &subscriptions, "subscriptions");

        // The lot's ledger: its receipt, the order's allocation and the 55 counts.
        let lot_page = format!("/admin/lots/{lot}");
        let page = get(&app, &mut owner, &lot_page).await.text();
        let next = values_after(&page, "rel=\"next\" href=\"").pop().expect("a next link").replace("&amp;", "&");
        assert_eq!(next, format!("{lot_page}?page=2"));
        let second = get(&app, &mut owner, &next).await.text();
        let counts = |html: &str| -> Vec<String> {
            notes.iter().filter(|n| html.contains(&format!(">{n}<"))).cloned().collect()
        };
        let (first, last) = (counts(&page), counts(&second));
        assert_eq!(first.len(), 50, "the newest 50 on the first page");
        assert_eq!(last.len(), 5, "{second}");
        assert!(second.contains(">received<"), "the oldest entry last: {second}");
        paged_once_each(&first, &last, &notes, "the ledger");
        app.stop().await;
    }
}

/// A signed-in customer's checkout of two MAG-60 with the card `number` (through the
/// sandbox processor), from `cart` or a new cart of theirs; answers the cart and the
/// checkout's answer.
async fn customer_checkout(
    shop: &crate::payments::Shop,
    token: &str,
    cart: Option<&str>,
    number: &str,
) -> (String, TestResponse) {
    let app = &shop.app;
    let cart = match cart {
        Some(cart) => cart.to_owned(),
        None => {
            let cart = as_customer(app, token, Method::POST, "/api/v1/carts", None)
                .await
                .json()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let r = as_customer(
                app,
                token,
                Method::POST,
                &format!("/api/v1/carts/{cart}/lines"),
                Some(json!({"sku": "MAG-60", "quantity": 2})),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            cart
        }
    };
    let card = crate::payments::tokenize(shop.processor, number).await;
    let body = json!({"shipping_method": "standard", "payment_token": card,
        "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Utrecht", "postal_code": "3511 AB", "country": "NL"}});
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/carts/{cart}/checkout"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("idempotency-key", format!("admin-ui-pay-{}", rand_suffix()))
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    (cart, app.send(request).await)
}

const GOOD_CARD: &str = "4242424242424242";
const DECLINED_CARD: &str = "4000000000009995";

both_backends! {
    async fn an_orders_page_shows_each_attempt_refund_and_event(backend: Backend) {
        let shop = crate::payments::shop(backend).await;
        let app = &shop.app;
        let token = app.customer_token("payer@example.com").await;
        // Declined first, then paid with another card from the same cart.
        let (cart, r) = customer_checkout(&shop, &token, None, DECLINED_CARD).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.text());
        let declined_order = app.admin_get("/api/v1/admin/orders").await.json()[0]["number"].as_str().unwrap().to_owned();
        let (_, r) = customer_checkout(&shop, &token, Some(&cart), GOOD_CARD).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let number = r.json()["number"].as_str().unwrap().to_owned();
        let total = r.json()["total_minor"].as_i64().unwrap();
        assert_eq!(r.json()["status"], "paid");

        let mut support = signed_in_as(app, "support").await;
        // The list finds it by the customer's email.
        let list = get(app, &mut support, "/admin/orders?email=payer%40example.com").await.text();
        assert!(list.contains(&number) && list.contains(&declined_order), "{list}");
        let list = get(app, &mut support, "/admin/orders?email=someone-else%40example.com").await.text();
        assert!(!list.contains(&number), "{list}");

        // Shipped (the payment captured), then two partial refunds through the admin's
        // form, each with its reason.
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "fulfilled", "tracking_number": "TRK-9"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let refund = format!("/admin/orders/{number}/refund");
        let r = submit(app, &mut support, &refund, &refund, &[("amount_minor", "5.00"), ("reason", "dented tin")]).await;
        assert_eq!(location(&r), format!("/admin/orders/{number}?done=refunded"));
        let r = submit(app, &mut support, &refund, &refund, &[("amount_minor", "3.50"), ("reason", "")]).await;
        assert_eq!(location(&r), format!("/admin/orders/{number}?done=refunded"));
        // More than is left: said next to the field.
        let r = submit(app, &mut support, &refund, &refund, &[("amount_minor", "9999.00"), ("reason", "")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "refunding more than is left");
        assert!(r.text().contains("id=\"f-amount-minor-error\""), "{}", r.text());
        let order = app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json();
        assert_eq!((order["status"].as_str(), order["refunded_minor"].as_i64()), (Some("fulfilled"), Some(850)), "{order}");

        let page = get(app, &mut support, &format!("/admin/orders/{number}")).await;
        assert_page(&page, StatusCode::OK, "the order");
        let page = page.text();
        let attempts = section_of(&page, "payment-attempts");
        // The declined authorisation (of the cart's first order), the approved one, the
        // capture and the two refunds the processor agreed to.
        assert_eq!(attempts.matches("class=\"attempt declined\"").count(), 1, "{attempts}");
        assert_eq!(attempts.matches("class=\"attempt approved\"").count(), 4, "{attempts}");
        assert!(attempts.contains(&format!("href=\"/admin/orders/{declined_order}\"")), "{attempts}");
        assert!(attempts.contains("Authorisation") && attempts.contains("Capture") && attempts.contains("Refund"), "{attempts}");
        let refunds = section_of(&page, "refunds");
        assert_eq!(refunds.matches("class=\"refund\"").count(), 2, "{refunds}");
        assert!(refunds.contains("€5.00") && refunds.contains("€3.50") && refunds.contains("dented tin"), "{refunds}");
        assert!(refunds.contains("€8.50"), "the refunds add up: {refunds}");
        assert!(refunds.contains("staff:"), "the refunds name the staff member: {refunds}");
        // Support reads orders, not the audit log: the events are the order's placing and
        // its payment attempts, without the audit log's entries (status changes, refunds,
        // who made them) and without the link to it.
        let events = section_of(&page, "order-events");
        for event in ["order.placed", "payment.authorize", "payment.capture", "payment.refund"] {
            assert!(events.contains(event), "{event}: {events}");
        }
        for event in ["order.status_changed", "order.refunded", "paid → fulfilled", "tracking TRK-9"] {
            assert!(!events.contains(event), "{event} is the audit log's: {events}");
        }
        assert!(page.contains("id=\"order-events-audit-hidden\""), "{page}");
        assert!(!page.contains("/admin/audit?target_type=order"), "{page}");
        // An admin (audit.read) sees them, naming the staff member who refunded.
        let mut admin = signed_in_as(app, "admin").await;
        let page = get(app, &mut admin, &format!("/admin/orders/{number}")).await.text();
        let events = section_of(&page, "order-events");
        for event in ["order.placed", "payment.authorize", "order.status_changed", "payment.capture", "order.refunded",
            "payment.refund", "paid → fulfilled", "tracking TRK-9"] {
            assert!(events.contains(event), "{event}: {events}");
        }
        assert!(events.contains("staff:"), "the refunds name the staff member: {events}");
        assert!(!page.contains("id=\"order-events-audit-hidden\""), "{page}");
        assert!(page.contains(&format!("/admin/audit?target_type=order&amp;target_id={number}")), "{page}");
        // The declined order's page shows the same cart's attempts, its decline and why;
        // the status change it caused is the audit log's.
        let page = get(app, &mut support, &format!("/admin/orders/{declined_order}")).await.text();
        let events = section_of(&page, "order-events");
        assert!(events.contains("payment.authorize") && events.contains("declined"), "{events}");
        assert!(!events.contains("pending → cancelled"), "{events}");
        let page = get(app, &mut admin, &format!("/admin/orders/{declined_order}")).await.text();
        let events = section_of(&page, "order-events");
        assert!(events.contains("payment.authorize") && events.contains("declined"), "{events}");
        assert!(events.contains("pending → cancelled"), "{events}");

        // A full refund through the form: everything left, and the order is refunded.
        let left = format!("{}.{:02}", (total - 850) / 100, (total - 850) % 100);
        let r = submit(app, &mut support, &refund, &refund, &[("amount_minor", &left), ("reason", "customer returned it")]).await;
        assert_eq!(location(&r), format!("/admin/orders/{number}?done=refunded"));
        let order = app.admin_get(&format!("/api/v1/admin/orders/{number}")).await.json();
        assert_eq!((order["status"].as_str(), order["refunded_minor"].as_i64()), (Some("refunded"), Some(total)), "{order}");
        let page = get(app, &mut support, &format!("/admin/orders/{number}")).await.text();
        assert_eq!(section_of(&page, "refunds").matches("class=\"refund\"").count(), 3, "{page}");
        assert!(!page.contains(&format!("/admin/orders/{number}/refund\"")), "nothing left to refund");

        // A cancel through the form: a paid order's payment is voided, its stock back.
        let (_, r) = customer_checkout(&shop, &token, None, GOOD_CARD).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let other = r.json()["number"].as_str().unwrap().to_owned();
        let before = crate::payments::lot_quantity(app, shop.lot).await;
        let cancel = format!("/admin/orders/{other}/cancel");
        let r = submit(app, &mut support, &cancel, &cancel, &[]).await;
        assert_eq!(location(&r), format!("/admin/orders/{other}?done=cancelled"));
        let order = app.admin_get(&format!("/api/v1/admin/orders/{other}")).await.json();
        assert_eq!(order["status"], "cancelled", "{order}");
        assert_eq!(crate::payments::lot_quantity(app, shop.lot).await, before + 2);
        let page = get(app, &mut support, &format!("/admin/orders/{other}")).await.text();
        let attempts = section_of(&page, "payment-attempts");
        assert!(attempts.contains("Void"), "{attempts}");
        shop.app.stop().await;
    }
}
