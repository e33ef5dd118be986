//! SQL injection strings (and a NUL byte) in every text field of every write the API
//! takes: each string field of a valid body is replaced in turn. The answer is a 2xx that
//! stores the text exactly, or a 4xx JSON error naming a field; never a 500. Afterwards
//! every table still answers and the audit chain is intact.

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

const NASTY: &[&str] = &[
    "'; DROP TABLE products; --",
    "\" OR \"1\"=\"1",
    "x' OR '1'='1' /*",
    "$1); DELETE FROM audit_log; --",
    "Robert'); DROP TABLE customers;--",
    "1; UPDATE staff_users SET role = 'owner'",
    "a\u{0}b",
];

fn url_encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Paths (in JSON pointer form) of every string leaf of a value.
fn string_leaves(value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::String(_) => out.push(path),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(item, format!("{path}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                string_leaves(item, format!("{path}/{key}"), out);
            }
        }
        _ => {}
    }
}

fn contains_string(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(s) => s == wanted,
        Value::Array(items) => items.iter().any(|v| contains_string(v, wanted)),
        Value::Object(map) => map.values().any(|v| contains_string(v, wanted)),
        _ => false,
    }
}

/// Sends `body` with each string leaf replaced by each nasty string; `fresh` makes the
/// body unique for attempt `n` (slugs, SKUs, emails).
async fn try_every_field(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    fresh: impl Fn(u32) -> Value,
) -> (u32, u32) {
    let mut leaves = Vec::new();
    string_leaves(&fresh(0), String::new(), &mut leaves);
    assert!(!leaves.is_empty());
    let (mut stored, mut refused) = (0, 0);
    let mut n = 1;
    for leaf in &leaves {
        for nasty in NASTY {
            n += 1;
            let mut body = fresh(n);
            *body.pointer_mut(leaf).expect("leaf") = json!(nasty);
            let r = app
                .request(
                    method.clone(),
                    path,
                    Some(token),
                    Some(Body::from(body.to_string())),
                    Some("application/json"),
                )
                .await;
            let what = format!("{method} {path} with {leaf} = {nasty:?}");
            assert!(r.status.as_u16() < 500, "{what}: {} {}", r.status, r.text());
            // Secrets are never echoed back.
            if r.status.is_success() && !leaf.ends_with("password") {
                assert!(
                    contains_string(&r.json(), nasty),
                    "{what}: stored text differs: {}",
                    r.text()
                );
                stored += 1;
            } else if r.status.is_success() {
                stored += 1;
            } else {
                assert!(r.status.is_client_error(), "{what}: {}", r.status);
                let error = r.json();
                assert!(error["error"].is_string(), "{what}: {error}");
                if r.status == StatusCode::UNPROCESSABLE_ENTITY {
                    assert!(
                        !error["fields"]
                            .as_array()
                            .map(Vec::is_empty)
                            .unwrap_or(true),
                        "{what}: a 422 names the field: {error}"
                    );
                }
                refused += 1;
            }
        }
    }
    (stored, refused)
}

both_backends! {
    async fn injection_strings_in_every_text_field(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let owner = ADMIN_TOKEN;

        try_every_field(&app, Method::POST, "/api/v1/admin/categories", owner,
            |n| json!({"slug": format!("cat-{n}"), "name": "Vitamins"})).await;
        try_every_field(&app, Method::POST, "/api/v1/admin/locations", owner,
            |n| json!({"code": format!("LOC-{n}"), "name": "Rotterdam"})).await;
        let (stored, _) = try_every_field(&app, Method::POST, "/api/v1/admin/products", owner,
            |n| supplement(&format!("p-{n}"), &format!("P{n}"))).await;
        assert!(stored > 0, "free-text product fields store the text as given");
        let made = app.admin_post("/api/v1/admin/products", &supplement("target", "TGT")).await;
        assert_eq!(made.status, StatusCode::CREATED);
        let id = made.json()["id"].as_i64().unwrap();
        try_every_field(&app, Method::PATCH, &format!("/api/v1/admin/products/{id}"), owner,
            |_| json!({"name": "Renamed", "description": "New words."})).await;
        try_every_field(&app, Method::POST, "/api/v1/admin/lots", owner,
            |n| json!({"sku": "TGT-60", "location": "AMS-1", "batch": format!("B{n}"),
                "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": 5})).await;
        try_every_field(&app, Method::POST, "/api/v1/admin/staff", owner,
            |n| json!({"email": format!("s{n}@shop.example"), "name": "Sam", "role": "support"})).await;
        try_every_field(&app, Method::POST, "/api/v1/account/register", "",
            |n| json!({"email": format!("c{n}@shop.example"), "password": "long enough pass",
                "name": "Casey"})).await;
        let customer = app.customer_token("addresses@shop.example").await;
        try_every_field(&app, Method::POST, "/api/v1/account/addresses", &customer,
            |_| json!({"label": "Home", "name": "Casey", "line1": "Main 1", "city": "Utrecht",
                "postal_code": "3511 AB", "country": "NL"})).await;
        try_every_field(&app, Method::POST, "/api/v1/account/sign-in", "",
            |_| json!({"email": "addresses@shop.example", "password": "wrong but long"})).await;

        // And in query strings of every filtering route.
        for nasty in NASTY {
            let q: String = url_encode(nasty);
            for path in [
                format!("/api/v1/products?category={q}&tag={q}"),
                format!("/api/v1/admin/products?category={q}"),
                format!("/api/v1/admin/audit?actor={q}&action={q}&target_type={q}&target_id={q}"),
                format!("/api/v1/admin/lots?sku={q}"),
                format!("/api/v1/admin/stock-ledger?sku={q}"),
                format!("/api/v1/admin/privacy-requests?status={q}&kind={q}"),
                format!("/api/v1/admin/plugins/{q}/decisions?input_hash={q}"),
            ] {
                let r = app.request(Method::GET, &path, Some(owner), None, None).await;
                assert!(r.status.as_u16() < 500, "GET {path}: {} {}", r.status, r.text());
                if r.status.is_success() {
                    assert!(!r.text().contains("DROP"), "GET {path} matched something: {}", r.text());
                }
            }
        }

        // Every table still answers, and nothing was rewritten behind the API's back.
        for table in ["products", "variants", "categories", "customers", "staff_users",
            "customer_addresses", "audit_log", "lots"] {
            app.count(table).await;
        }
        let roles = app.admin_get("/api/v1/admin/staff").await.json();
        let owners = roles.as_array().unwrap().iter().filter(|u| u["role"] == "owner").count();
        assert_eq!(owners, 1, "{roles}");
        let verify = app.admin_get("/api/v1/admin/audit/verify").await.json();
        assert_eq!(verify["intact"], true, "{verify}");
        app.stop().await;
    }
}

/// `/a/b/0` as the API names the field: `a.b[0]`.
fn field_name(pointer: &str) -> String {
    let mut name = String::new();
    for part in pointer.split('/').skip(1) {
        if part.parse::<usize>().is_ok() {
            name.push_str(&format!("[{part}]"));
        } else {
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(part);
        }
    }
    name
}

/// Puts a card number, spelled three ways, into each string leaf of `body` in turn: each
/// is a 422 naming exactly that field, and nothing is written.
async fn card_in_every_field(app: &TestApp, method: Method, path: &str, token: &str, body: Value) {
    let mut leaves = Vec::new();
    string_leaves(&body, String::new(), &mut leaves);
    assert!(!leaves.is_empty());
    let audit_before = app.count("audit_log").await;
    let token = (!token.is_empty()).then_some(token);
    for leaf in &leaves {
        for card in [
            "4242424242424242",
            "4242 4242 4242 4242",
            "Card: 5555-5555-5555-4444.",
        ] {
            let mut sent = body.clone();
            *sent.pointer_mut(leaf).expect("leaf") = json!(card);
            let r = app
                .request(
                    method.clone(),
                    path,
                    token,
                    Some(Body::from(sent.to_string())),
                    Some("application/json"),
                )
                .await;
            let what = format!("{method} {path} with {leaf} = {card:?}");
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{what}: {}",
                r.text()
            );
            let fields: Vec<String> = r.json()["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["field"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(fields, vec![field_name(leaf)], "{what}: {}", r.text());
            assert!(r.text().contains("card number"), "{what}: {}", r.text());
        }
    }
    assert_eq!(
        app.count("audit_log").await,
        audit_before,
        "{path}: a refused body wrote nothing"
    );
}

both_backends! {
    async fn card_numbers_are_refused_in_every_field(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let owner = ADMIN_TOKEN;
        card_in_every_field(&app, Method::POST, "/api/v1/admin/categories", owner,
            json!({"slug": "cat-1", "name": "Vitamins"})).await;
        card_in_every_field(&app, Method::POST, "/api/v1/admin/products", owner, supplement("p-1", "P1")).await;
        card_in_every_field(&app, Method::POST, "/api/v1/admin/lots", owner,
            json!({"sku": "P1-60", "location": "AMS-1", "batch": "B1",
                "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": 5})).await;
        card_in_every_field(&app, Method::POST, "/api/v1/account/register", "",
            json!({"email": "c1@shop.example", "password": "long enough pass", "name": "Casey"})).await;
        let customer = app.customer_token("cards@shop.example").await;
        card_in_every_field(&app, Method::POST, "/api/v1/account/addresses", &customer,
            json!({"label": "Home", "name": "Casey", "line1": "Main 1", "city": "Utrecht",
                "postal_code": "3511 AB", "country": "NL"})).await;

        // The shopper's side: cart lines and the checkout itself (a card number where the
        // processor's token belongs, too).
        let made = app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
        let lot = app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-60", "location": "AMS-1",
            "batch": "B1", "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": 5})).await;
        assert_eq!(lot.status, StatusCode::CREATED, "{}", lot.text());
        let cart = app.request(Method::POST, "/api/v1/carts", None, None, None).await.json()["id"]
            .as_str().unwrap().to_owned();
        card_in_every_field(&app, Method::POST, &format!("/api/v1/carts/{cart}/lines"), "",
            json!({"sku": "MAG-60", "quantity": 1})).await;
        // A card number sent as a JSON number is refused too.
        let r = app.request(Method::POST, &format!("/api/v1/carts/{cart}/lines"), None,
            Some(Body::from(r#"{"sku": "MAG-60", "quantity": 4242424242424242}"#)), Some("application/json")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        assert_eq!(r.json()["fields"][0]["field"], "quantity", "{}", r.text());
        card_in_every_field(&app, Method::POST, &format!("/api/v1/carts/{cart}/checkout"), "",
            json!({"email": "buyer@example.com", "shipping_method": "standard", "payment_token": "tok_abc",
                "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Utrecht",
                    "postal_code": "3511 AB", "country": "NL"}})).await;
        assert_eq!(app.count("orders").await, 0);

        // Query strings.
        for path in ["/api/v1/products?tag=4242424242424242", "/api/v1/products?category=4242%204242%204242%204242"] {
            let r = app.request(Method::GET, path, None, None, None).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "GET {path}: {}", r.text());
            assert!(r.text().contains("card number"), "GET {path}: {}", r.text());
        }
        // Numbers that are not card numbers pass: a failing Luhn check, a token.
        let r = app.request(Method::GET, "/api/v1/products?tag=4242424242424241", None, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.stop().await;
    }
}
