//! Privacy by design: addresses (encrypted, owner-only), consents with history, the GDPR
//! export and erasure, the staff side of both, and erasure's crash safety. Each test
//! runs on SQLite and on PostgreSQL.

use crate::common::process::*;
use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use sqlx::Row;

const PASSWORD: &str = "correct horse battery";

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> TestResponse {
    app.request(
        method,
        path,
        token,
        Some(Body::from(body.to_string())),
        Some("application/json"),
    )
    .await
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: &Value) -> TestResponse {
    send(app, Method::POST, path, token, body).await
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> TestResponse {
    app.request(Method::GET, path, token, None, None).await
}

async fn register_with(app: &TestApp, body: Value) -> String {
    let r = post(app, "/api/v1/account/register", None, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["pseudonym"].as_str().unwrap().to_owned()
}

/// Registers and returns the pseudonym.
async fn register(app: &TestApp, email: &str, name: &str) -> String {
    register_with(
        app,
        json!({"email": email, "password": PASSWORD, "name": name}),
    )
    .await
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> TestResponse {
    post(
        app,
        "/api/v1/account/sign-in",
        None,
        &json!({"email": email, "password": password}),
    )
    .await
}

/// Signs in: (access token, refresh token).
async fn tokens(app: &TestApp, email: &str) -> (String, String) {
    let r = sign_in(app, email, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn access(app: &TestApp, email: &str) -> String {
    tokens(app, email).await.0
}

fn home() -> Value {
    json!({
        "label": "Home",
        "name": "Ann Lee",
        "line1": "Keizersgracht 1",
        "line2": "3rd floor",
        "city": "Amsterdam",
        "region": "Noord-Holland",
        "postal_code": "1015 AA",
        "country": "nl",
        "phone": "+31 20 123 4567",
    })
}

async fn add_address(app: &TestApp, token: &str, body: &Value) -> Value {
    let r = post(app, "/api/v1/account/addresses", Some(token), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()
}

/// Every text cell of a table's rows for one customer, as stored.
async fn stored_cells(app: &TestApp, sql: &str, customer_id: i64) -> Vec<Option<String>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(customer_id)
        .fetch_all(&app.kernel.state.db.pool)
        .await
        .unwrap();
    let mut cells = Vec::new();
    for row in &rows {
        for i in 0..row.len() {
            cells.push(row.try_get::<Option<String>, _>(i).unwrap());
        }
    }
    cells
}

async fn customer_id(app: &TestApp, pseudonym: &str) -> i64 {
    sqlx::query("SELECT id FROM customers WHERE pseudonym = $1")
        .bind(pseudonym)
        .fetch_one(&app.kernel.state.db.pool)
        .await
        .unwrap()
        .get(0)
}

#[track_caller]
fn assert_unauthorized(r: &TestResponse, what: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text());
}

const INJECTIONS: [&str; 6] = [
    "'; DROP TABLE customers; --",
    "\" OR 1=1 --",
    "Robert'); DROP TABLE customer_addresses;--",
    "$1 \\ %_ ' \" `x` ;",
    "<script>alert(1)</script>",
    "Ünïcødé 😀 ' OR ''='",
];

const FREE_TEXT: [&str; 6] = ["label", "name", "line1", "line2", "city", "region"];

both_backends! {
    async fn addresses_crud_validation_and_owner_only(backend: Backend) {
        let app = TestApp::start(backend).await;
        let ann = register(&app, "ann@example.com", "Ann Lee").await;
        register(&app, "bob@example.com", "Bob Stone").await;
        let ann_token = access(&app, "ann@example.com").await;
        let bob_token = access(&app, "bob@example.com").await;

        // Create: 201, normalised, the first one is the default.
        let first = add_address(&app, &ann_token, &home()).await;
        let id = first["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("adr_") && id.len() == 26, "{id}");
        assert_eq!(first["country"], "NL");
        assert_eq!(first["line1"], "Keizersgracht 1");
        assert_eq!(first["is_default"], true);
        let mut work = home();
        work["label"] = json!("Work");
        work["line2"] = Value::Null;
        work["is_default"] = json!(true);
        let second = add_address(&app, &ann_token, &work).await;
        assert_eq!(second["is_default"], true);
        assert!(second["line2"].is_null());

        // List: both, exactly one default (the newer one).
        let r = get(&app, "/api/v1/account/addresses", Some(&ann_token)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let list = r.json().as_array().cloned().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.iter().filter(|a| a["is_default"] == true).count(), 1);
        // (Oldest first; two made in the same millisecond order by their random ids.)
        let first = list.iter().find(|a| a["id"] == id.as_str()).cloned().unwrap();
        assert_eq!(first["is_default"], false);

        // Get and patch: absent fields stay, null clears an optional one.
        let path = format!("/api/v1/account/addresses/{id}");
        let r = get(&app, &path, Some(&ann_token)).await;
        assert_eq!(r.json(), first);
        let r = send(&app, Method::PATCH, &path, Some(&ann_token),
            &json!({"city": "Utrecht", "line2": null, "is_default": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let patched = r.json();
        assert_eq!(patched["city"], "Utrecht");
        assert!(patched["line2"].is_null());
        assert_eq!(patched["name"], "Ann Lee");
        assert_eq!(patched["is_default"], true);
        let list = get(&app, "/api/v1/account/addresses", Some(&ann_token)).await.json();
        assert_eq!(list.as_array().unwrap().iter().filter(|a| a["is_default"] == true).count(), 1);

        // Validation: every problem named at once; a required field cannot be cleared.
        let r = post(&app, "/api/v1/account/addresses", Some(&ann_token), &json!({
            "label": "x".repeat(51), "name": "  ", "line1": "", "city": "C",
            "country": "UK", "postal_code": "12#45", "phone": "call me",
        })).await;
        for field in ["label", "name", "line1", "country", "postal_code", "phone"] {
            r.assert_field_error(422, field);
        }
        let r = post(&app, "/api/v1/account/addresses", Some(&ann_token),
            &json!({"name": "A", "line1": "B", "city": "C"})).await;
        r.assert_field_error(422, "country");
        let r = post(&app, "/api/v1/account/addresses", Some(&ann_token),
            &json!({"name": "A", "line1": "B", "city": "C", "country": "NL", "planet": "Mars"})).await;
        r.assert_field_error(422, "planet");
        for (field, value) in [("name", Value::Null), ("country", json!("ZZ")), ("line1", json!(" "))] {
            let r = send(&app, Method::PATCH, &path, Some(&ann_token), &json!({ field: value })).await;
            r.assert_field_error(422, field);
        }
        assert_eq!(get(&app, &path, Some(&ann_token)).await.json()["city"], "Utrecht");

        // Another customer's address: the very same 404 as an address that never existed.
        let missing = "/api/v1/account/addresses/adr_AAAAAAAAAAAAAAAAAAAAAA";
        let never = get(&app, missing, Some(&bob_token)).await;
        assert_eq!(never.status, StatusCode::NOT_FOUND);
        let theirs = get(&app, &path, Some(&bob_token)).await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
        assert_eq!(theirs.body, never.body);
        let r = send(&app, Method::PATCH, &path, Some(&bob_token), &json!({"city": "Hacked"})).await;
        assert_eq!((r.status, r.body.clone()), (StatusCode::NOT_FOUND, never.body.clone()));
        let r = app.request(Method::DELETE, &path, Some(&bob_token), None, None).await;
        assert_eq!((r.status, r.body.clone()), (StatusCode::NOT_FOUND, never.body.clone()));
        let r = get(&app, "/api/v1/account/addresses", Some(&bob_token)).await;
        assert_eq!(r.json(), json!([]));
        for odd in ["1", "adr_%00AAAAAAAAAAAAAAAAAAAAA", "%27%20OR%201%3D1%20--"] {
            let r = get(&app, &format!("/api/v1/account/addresses/{odd}"), Some(&ann_token)).await;
            assert_eq!((r.status, r.body.clone()), (StatusCode::NOT_FOUND, never.body.clone()), "{odd}");
        }
        assert_eq!(get(&app, &path, Some(&ann_token)).await.json()["city"], "Utrecht");

        // No token: 401.
        assert_unauthorized(&get(&app, "/api/v1/account/addresses", None).await, "list");
        assert_unauthorized(&post(&app, "/api/v1/account/addresses", None, &home()).await, "create");

        // Nothing personal in clear: every field is ciphertext bound to its column.
        let ann_id = customer_id(&app, &ann).await;
        let cells = stored_cells(&app,
            "SELECT label_enc, name_enc, line1_enc, line2_enc, city_enc, region_enc, postal_code_enc, country_enc, phone_enc
             FROM customer_addresses WHERE customer_id = $1", ann_id).await;
        assert_eq!(cells.len(), 18);
        for cell in cells.iter().flatten() {
            assert!(cell.starts_with(&format!("v2:c{ann_id}:")), "under Ann's own key: {cell}");
            // Long enough that random base64 cannot contain them by chance.
            for plain in ["Ann Lee", "Keizersgracht", "Amsterdam", "Utrecht", "1015 AA", "Noord-Holland", "+31 20 123", "3rd floor"] {
                assert!(!cell.contains(plain), "{plain} in clear: {cell}");
            }
        }
        let keys = &app.kernel.state.keys;
        let row = sqlx::query("SELECT line1_enc FROM customer_addresses WHERE id = $1")
            .bind(&id).fetch_one(&app.kernel.state.db.pool).await.unwrap();
        let line1: String = row.get(0);
        let pool = &app.kernel.state.db.pool;
        assert_eq!(keys.decrypt_any(pool, "customer_addresses.line1", &line1).await.unwrap(), "Keizersgracht 1");
        assert!(keys.decrypt_any(pool, "customer_addresses.city", &line1).await.is_err(), "bound to its column");
        assert!(keys.decrypt_field("customer_addresses.line1", &line1).is_err(), "not under the shared key");

        // Delete: 204, then gone.
        let r = app.request(Method::DELETE, &path, Some(&ann_token), None, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert_eq!(get(&app, &path, Some(&ann_token)).await.status, StatusCode::NOT_FOUND);
        let r = app.request(Method::DELETE, &path, Some(&ann_token), None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(app.count("customer_addresses").await, 1);
        app.stop().await;
    }

    async fn injection_strings_round_trip_and_nul_bytes_are_refused(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "inj@example.com", "Inj").await;
        let token = access(&app, "inj@example.com").await;
        for text in INJECTIONS {
            let mut body = home();
            for field in FREE_TEXT {
                body[field] = json!(text);
            }
            let created = add_address(&app, &token, &body).await;
            let path = format!("/api/v1/account/addresses/{}", created["id"].as_str().unwrap());
            let read = get(&app, &path, Some(&token)).await.json();
            for field in FREE_TEXT {
                assert_eq!(read[field], text, "{field}");
            }
            // And through a change.
            let changes: serde_json::Map<String, Value> =
                FREE_TEXT.iter().map(|f| (f.to_string(), json!(format!("{text}!")))).collect();
            let r = send(&app, Method::PATCH, &path, Some(&token), &Value::Object(changes)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            for field in FREE_TEXT {
                assert_eq!(r.json()[field], format!("{text}!"), "{field}");
            }
            // Fields with a format refuse them, naming the field.
            for field in ["postal_code", "country", "phone"] {
                let mut body = home();
                body[field] = json!(text);
                let r = post(&app, "/api/v1/account/addresses", Some(&token), &body).await;
                r.assert_field_error(422, field);
            }
        }
        // A NUL byte (PostgreSQL text cannot hold one) is a 422 naming the field, never a 500.
        for field in FREE_TEXT.iter().chain(["postal_code", "country", "phone"].iter()) {
            let mut body = home();
            body[*field] = json!("a\u{0}b");
            let r = post(&app, "/api/v1/account/addresses", Some(&token), &body).await;
            r.assert_field_error(422, field);
            let first = get(&app, "/api/v1/account/addresses", Some(&token)).await.json()[0]["id"]
                .as_str().unwrap().to_owned();
            let r = send(&app, Method::PATCH, &format!("/api/v1/account/addresses/{first}"),
                Some(&token), &json!({ *field: "a\u{0}b" })).await;
            r.assert_field_error(422, field);
        }
        let r = send(&app, Method::PUT, "/api/v1/account/consents", Some(&token),
            &json!({"consents": [{"purpose": "a\u{0}", "granted": true, "version": "1\u{0}"}]})).await;
        r.assert_field_error(422, "consents[0].purpose");
        r.assert_field_error(422, "consents[0].version");
        let r = post(&app, "/api/v1/account/erasure", Some(&token),
            &json!({"password": "x\u{0}", "confirm": "erase my account\u{0}"})).await;
        r.assert_field_error(422, "confirm");
        // Everything is still there.
        assert_eq!(app.count("customers").await, 1);
        assert_eq!(app.count("customer_addresses").await, INJECTIONS.len() as i64);
        assert_eq!(get(&app, "/api/v1/account/me", Some(&token)).await.status, StatusCode::OK);
        app.stop().await;
    }

    async fn consents_keep_their_history(backend: Backend) {
        let app = TestApp::start(backend).await;
        // Bad consents refuse the registration, naming the field.
        let r = post(&app, "/api/v1/account/register", None, &json!({
            "email": "cat@example.com", "password": PASSWORD, "name": "Cat",
            "consents": [{"purpose": "Marketing Email", "granted": true, "version": "1"}],
        })).await;
        r.assert_field_error(422, "consents[0].purpose");
        assert_eq!(app.count("customers").await, 0);

        register_with(&app, json!({
            "email": "cat@example.com", "password": PASSWORD, "name": "Cat",
            "consents": [
                {"purpose": "marketing_email", "granted": true, "version": "2025-01"},
                {"purpose": "analytics", "granted": false, "version": "2025-01"},
            ],
        })).await;
        let token = access(&app, "cat@example.com").await;
        let r = get(&app, "/api/v1/account/consents", Some(&token)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = r.json();
        assert_eq!(body["current"].as_array().unwrap().len(), 2);
        assert_eq!(body["current"][0]["purpose"], "analytics");
        assert_eq!(body["current"][1]["granted"], true);
        assert_eq!(body["current"][1]["source"], "registration");
        assert_eq!(body["history"].as_array().unwrap().len(), 2);

        let put = |consents: Value| {
            let app = &app;
            let token = token.clone();
            async move {
                send(app, Method::PUT, "/api/v1/account/consents", Some(&token),
                    &json!({ "consents": consents })).await
            }
        };
        let r = put(json!([{"purpose": "marketing_email", "granted": false, "version": "2025-01"}])).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = r.json();
        assert_eq!(body["current"][1]["granted"], false);
        assert_eq!(body["current"][1]["source"], "account");
        assert_eq!(body["history"].as_array().unwrap().len(), 3);
        // The same state again is not a change.
        let r = put(json!([{"purpose": "marketing_email", "granted": false, "version": "2025-01"}])).await;
        assert_eq!(r.json()["history"].as_array().unwrap().len(), 3);
        // A new wording version is.
        let r = put(json!([{"purpose": "analytics", "granted": true, "version": "2025-06"}])).await;
        let body = r.json();
        assert_eq!(body["history"].as_array().unwrap().len(), 4);
        assert_eq!(body["current"][0], json!({
            "purpose": "analytics", "granted": true, "version": "2025-06", "source": "account",
            "recorded_at": body["history"][3]["recorded_at"],
        }));
        // The history keeps the earlier states in order.
        let history: Vec<(String, bool)> = body["history"].as_array().unwrap().iter()
            .map(|c| (c["purpose"].as_str().unwrap().to_owned(), c["granted"].as_bool().unwrap()))
            .collect();
        assert_eq!(history, vec![
            ("marketing_email".to_owned(), true),
            ("analytics".to_owned(), false),
            ("marketing_email".to_owned(), false),
            ("analytics".to_owned(), true),
        ]);

        let r = put(json!([
            {"purpose": "analytics", "granted": true, "version": "1"},
            {"purpose": "analytics", "granted": false, "version": "1"},
            {"purpose": "ok", "granted": true, "version": "has space"},
        ])).await;
        r.assert_field_error(422, "consents[1].purpose");
        r.assert_field_error(422, "consents[2].version");
        let r = put(json!([{"purpose": "ok", "granted": "yes", "version": "1"}])).await;
        r.assert_field_error(422, "consents[0].granted");
        assert_unauthorized(&get(&app, "/api/v1/account/consents", None).await, "consents");
        app.stop().await;
    }

    async fn export_holds_every_section_and_only_the_customers_data(backend: Backend) {
        let app = TestApp::start(backend).await;
        let ann = register_with(&app, json!({
            "email": "ann.export@example.com", "password": PASSWORD, "name": "Ann Export",
            "consents": [{"purpose": "marketing_email", "granted": true, "version": "v1"}],
        })).await;
        let bob = register(&app, "bob.other@example.com", "Bob Other").await;
        let (ann_token, _) = tokens(&app, "ann.export@example.com").await;
        tokens(&app, "ann.export@example.com").await;
        let bob_token = access(&app, "bob.other@example.com").await;
        add_address(&app, &ann_token, &home()).await;
        let mut second = home();
        second["line1"] = json!("Prinsengracht 263");
        add_address(&app, &ann_token, &second).await;
        let mut bobs = home();
        bobs["name"] = json!("Bob Other");
        bobs["line1"] = json!("Bobstraat 99");
        bobs["city"] = json!("Rotterdam");
        add_address(&app, &bob_token, &bobs).await;

        let r = get(&app, "/api/v1/account/export", Some(&ann_token)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(
            r.headers.get(header::CONTENT_DISPOSITION).unwrap().to_str().unwrap(),
            format!("attachment; filename=\"olivine-export-{ann}.json\"")
        );
        assert!(r.headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("application/json"));
        let export = r.json();
        assert_eq!(export["format"], "olivine.export.v1");
        assert_eq!(export["pseudonym"], ann.as_str());
        let sections = export["sections"].as_object().unwrap();
        for name in ["profile", "addresses", "orders", "subscriptions", "loyalty_ledger",
                     "notifications", "plugin_data", "consents", "sessions", "privacy_requests", "audit"] {
            assert!(sections.contains_key(name), "section {name} missing: {export}");
        }
        assert_eq!(sections["profile"]["email"], "ann.export@example.com");
        assert_eq!(sections["profile"]["name"], "Ann Export");
        assert_eq!(sections["profile"]["pseudonym"], ann.as_str());
        // Both addresses, whichever came first (two made in the same millisecond order by
        // their random ids).
        let mut addresses = sections["addresses"].as_array().unwrap().clone();
        addresses.sort_by_key(|a| a["line1"].as_str().unwrap_or_default().to_owned());
        assert_eq!(addresses.len(), 2);
        assert_eq!(addresses[0]["line1"], "Keizersgracht 1");
        assert_eq!(addresses[1]["line1"], "Prinsengracht 263");
        assert_eq!(addresses[0]["phone"], "+31 20 123 4567");
        assert_eq!(sections["orders"], json!([]));
        assert_eq!(sections["subscriptions"], json!([]));
        assert_eq!(sections["loyalty_ledger"], json!([]));
        assert_eq!(sections["plugin_data"]["records"], json!([]));
        assert!(sections["plugin_data"]["note"].as_str().unwrap().contains("hashes"));
        assert_eq!(sections["consents"]["current"][0]["purpose"], "marketing_email");
        assert_eq!(sections["consents"]["history"].as_array().unwrap().len(), 1);
        let sessions = sections["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 2);
        assert!(sessions[0]["created_at"].is_string() && sessions[0]["revoked_at"].is_null());
        assert_eq!(sections["privacy_requests"], json!([]));
        assert!(sections["audit"].as_array().unwrap().iter().any(|e| e["action"] == "customer.registered"));

        // Nothing of the other customer.
        let text = export.to_string();
        for theirs in ["bob.other@example.com", "Bob Other", "Bobstraat", "Rotterdam", bob.as_str()] {
            assert!(!text.contains(theirs), "{theirs} appears in another customer's export");
        }
        // The export is recorded as a completed request and audited, without identity.
        let second = get(&app, "/api/v1/account/export", Some(&ann_token)).await.json();
        let requests = second["sections"]["privacy_requests"].as_array().unwrap().clone();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0]["kind"], "export");
        assert_eq!(requests[0]["status"], "completed");
        assert_eq!(requests[0]["id"], export["privacy_request"]);
        let r = app.admin_get("/api/v1/admin/audit?action=customer.exported").await;
        let entries = r.json()["entries"].as_array().cloned().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["actor"], ann.as_str());
        assert!(!entries[0].to_string().contains("ann.export"));

        assert_unauthorized(&get(&app, "/api/v1/account/export", None).await, "export");
        app.stop().await;
    }

    async fn erasure_wipes_identity_and_keeps_the_pseudonym(backend: Backend) {
        let app = TestApp::start(backend).await;
        let pool = app.kernel.state.db.pool.clone();
        let email = "Erase.Me@example.com";
        let ann = register_with(&app, json!({
            "email": email, "password": PASSWORD, "name": "Erin Erased",
            "consents": [{"purpose": "marketing_email", "granted": true, "version": "v1"}],
        })).await;
        register(&app, "stay@example.com", "Stay Here").await;
        let (token, refresh_token) = tokens(&app, email).await;
        let (other_token, other_refresh) = tokens(&app, email).await;
        let stay_token = access(&app, "stay@example.com").await;
        add_address(&app, &token, &home()).await;
        add_address(&app, &token, &home()).await;
        add_address(&app, &stay_token, &home()).await;
        let ann_id = customer_id(&app, &ann).await;

        // Confirmation and password are both required.
        let r = post(&app, "/api/v1/account/erasure", Some(&token),
            &json!({"password": PASSWORD, "confirm": "yes"})).await;
        r.assert_field_error(422, "confirm");
        let r = post(&app, "/api/v1/account/erasure", Some(&token),
            &json!({"password": "not my password", "confirm": "erase my account"})).await;
        r.assert_field_error(422, "password");
        let r = post(&app, "/api/v1/account/erasure", None,
            &json!({"password": PASSWORD, "confirm": "erase my account"})).await;
        assert_unauthorized(&r, "erasure without a token");
        assert_eq!(get(&app, "/api/v1/account/me", Some(&token)).await.status, StatusCode::OK);
        assert_eq!(app.count("privacy_requests").await, 0);

        let r = post(&app, "/api/v1/account/erasure", Some(&token),
            &json!({"password": PASSWORD, "confirm": "erase my account"})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let request = r.json();
        let request_id = request["id"].as_str().unwrap().to_owned();
        assert!(request_id.starts_with("pr_") && request_id.len() == 46, "{request_id}");
        assert_eq!(request["kind"], "erasure");
        assert_eq!(request["status"], "completed");
        let status_url = request["status_url"].as_str().unwrap().to_owned();
        assert_eq!(status_url, format!("/api/v1/privacy-requests/{request_id}"));

        // The status URL works without a token and tells nothing personal.
        let r = get(&app, &status_url, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["status"], "completed");
        assert!(r.json()["completed_at"].is_string());
        assert!(!r.text().contains(&ann) && !r.text().to_lowercase().contains("erase.me"));
        for odd in ["pr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "1", "pr_%00"] {
            let r = get(&app, &format!("/api/v1/privacy-requests/{odd}"), None).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{odd}: {}", r.text());
        }

        // In the database: no identity left, the row and pseudonym kept.
        let row = sqlx::query(
            "SELECT pseudonym, email_lookup, email_enc, name_enc, password_hash, erased_at FROM customers WHERE id = $1",
        ).bind(ann_id).fetch_one(&pool).await.unwrap();
        assert_eq!(row.get::<String, _>(0), ann);
        assert_eq!(row.get::<String, _>(1), format!("erased:{ann}"));
        assert_eq!(row.get::<String, _>(2), "");
        assert_eq!(row.get::<String, _>(3), "");
        assert_eq!(row.get::<String, _>(4), "");
        assert!(row.get::<Option<String>, _>(5).is_some());
        let addresses = stored_cells(&app, "SELECT id FROM customer_addresses WHERE customer_id = $1", ann_id).await;
        assert!(addresses.is_empty(), "addresses left: {addresses:?}");
        assert_eq!(app.count("customer_addresses").await, 1, "the other customer's address stays");
        let open: i64 = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM customer_sessions WHERE customer_id = $1 AND revoked_at IS NULL",
        ).bind(ann_id).fetch_one(&pool).await.unwrap().get(0);
        assert_eq!(open, 0);
        let live_tokens: i64 = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM refresh_tokens t JOIN customer_sessions s ON s.id = t.session_id
             WHERE s.customer_id = $1 AND t.revoked_at IS NULL",
        ).bind(ann_id).fetch_one(&pool).await.unwrap().get(0);
        assert_eq!(live_tokens, 0);
        // Consents are withdrawn (history kept: it holds no identity).
        let granted: Vec<(i64, String)> = sqlx::query(
            "SELECT granted, source FROM customer_consents WHERE customer_id = $1 ORDER BY id",
        ).bind(ann_id).fetch_all(&pool).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(granted, vec![(1, "registration".to_owned()), (0, "erasure".to_owned())]);
        // No ciphertext of the customer anywhere in the tables of the accounts.
        for (table, sql) in [
            ("customers", "SELECT email_enc, name_enc FROM customers WHERE id = $1"),
            ("customer_addresses", "SELECT name_enc, line1_enc FROM customer_addresses WHERE customer_id = $1"),
        ] {
            for cell in stored_cells(&app, sql, ann_id).await.into_iter().flatten() {
                assert!(!cell.starts_with("v1:") && !cell.starts_with("v2:"), "{table} still holds ciphertext: {cell}");
            }
        }

        // The old credentials get the very answer an unknown account gets.
        let old = sign_in(&app, email, PASSWORD).await;
        let unknown = sign_in(&app, "never.registered@example.com", PASSWORD).await;
        assert_eq!(old.status, StatusCode::UNAUTHORIZED);
        assert_eq!(old.body, unknown.body);
        for t in [&token, &other_token] {
            assert_unauthorized(&get(&app, "/api/v1/account/me", Some(t)).await, "old access token");
            assert_unauthorized(&get(&app, "/api/v1/account/export", Some(t)).await, "export after erasure");
        }
        for rt in [&refresh_token, &other_refresh] {
            let r = post(&app, "/api/v1/account/refresh", None, &json!({"refresh_token": rt})).await;
            assert_unauthorized(&r, "old refresh token");
        }
        // A second self-service request cannot even authenticate.
        let r = post(&app, "/api/v1/account/erasure", Some(&token),
            &json!({"password": PASSWORD, "confirm": "erase my account"})).await;
        assert_unauthorized(&r, "second erasure");

        // Audited under the pseudonym, without identity; the chain is intact.
        let r = app.admin_get("/api/v1/admin/audit?action=customer.erased").await;
        let entries = r.json()["entries"].as_array().cloned().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["actor"], ann.as_str());
        assert_eq!(entries[0]["target_id"], ann.as_str());
        assert_eq!(entries[0]["before"]["addresses"], 2);
        assert_eq!(entries[0]["before"]["open_sessions"], 2);
        assert_eq!(entries[0]["before"]["consents_granted"], json!(["marketing_email"]));
        assert_eq!(entries[0]["after"]["privacy_request"], request_id.as_str());
        let text = entries[0].to_string().to_lowercase();
        for personal in ["erase.me", "erin erased", "keizersgracht", "amsterdam"] {
            assert!(!text.contains(personal), "{personal} in the audit entry: {text}");
        }
        let report = olivine::audit::verify(&app.kernel.state.db).await.unwrap();
        assert!(report.intact, "{report:?}");
        // The erasure's event is in the outbox.
        let events: i64 = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox WHERE event_type = 'customer.erased' AND aggregate_id = $1",
        ).bind(&ann).fetch_one(&pool).await.unwrap().get(0);
        assert_eq!(events, 1);

        // Staff see it; the same address registers anew as a different account.
        let r = app.admin_get("/api/v1/admin/privacy-requests?status=completed&kind=erasure").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let listed = r.json()["requests"].as_array().cloned().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], request_id.as_str());
        assert_eq!(listed[0]["requested_by"], ann.as_str());
        let again = register(&app, email, "Erin Again").await;
        assert_ne!(again, ann);
        let new_token = access(&app, email).await;
        assert_eq!(get(&app, "/api/v1/account/me", Some(&new_token)).await.json()["name"], "Erin Again");
        assert_eq!(get(&app, "/api/v1/account/addresses", Some(&new_token)).await.json(), json!([]));
        // The other customer is untouched.
        assert_eq!(get(&app, "/api/v1/account/me", Some(&stay_token)).await.json()["name"], "Stay Here");
        assert_eq!(get(&app, "/api/v1/account/addresses", Some(&stay_token)).await.json().as_array().unwrap().len(), 1);
        app.stop().await;
    }

    async fn staff_view_and_erasure(backend: Backend) {
        let app = TestApp::start(backend).await;
        let cy = register(&app, "cy@example.com", "Cy Support").await;
        let token = access(&app, "cy@example.com").await;
        add_address(&app, &token, &home()).await;
        let path = format!("/api/v1/admin/customers/{cy}");

        let r = app.admin_get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let view = r.json();
        assert_eq!(view["email"], "cy@example.com");
        assert_eq!(view["name"], "Cy Support");
        assert_eq!(view["addresses"][0]["city"], "Amsterdam");
        assert_eq!(view["open_sessions"], 1);
        assert!(view["erased_at"].is_null());
        let r = app.admin_get("/api/v1/admin/audit?action=customer.identity_viewed").await;
        let entries = r.json()["entries"].as_array().cloned().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["actor"], OWNER_ACTOR);
        assert_eq!(entries[0]["target_id"], cy.as_str());

        // Unknown or odd pseudonyms: 404. Without the admin token: 401. A customer token
        // is not an admin token.
        for odd in ["c_AAAAAAAAAAAAAAAAAAAAAA", "nobody", "c_%00", "%27%20OR%201%3D1"] {
            let r = app.admin_get(&format!("/api/v1/admin/customers/{odd}")).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{odd}: {}", r.text());
        }
        let erasure = format!("{path}/erasure");
        for (method, route) in [
            (Method::GET, path.clone()),
            (Method::GET, "/api/v1/admin/privacy-requests".to_owned()),
            (Method::POST, erasure.clone()),
        ] {
            for t in [None, Some(token.as_str())] {
                let r = send(&app, method.clone(), &route, t, &json!({"confirm": cy})).await;
                assert_unauthorized(&r, &route);
            }
        }
        assert_eq!(app.count("privacy_requests").await, 0);

        let r = app.admin_post(&erasure, &json!({"confirm": "c_somebody_else"})).await;
        r.assert_field_error(422, "confirm");
        let r = app.admin_post("/api/v1/admin/customers/c_AAAAAAAAAAAAAAAAAAAAAA/erasure",
            &json!({"confirm": "c_AAAAAAAAAAAAAAAAAAAAAA"})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = app.admin_get("/api/v1/admin/privacy-requests?status=done").await;
        r.assert_field_error(422, "status");

        let r = app.admin_post(&erasure, &json!({"confirm": cy})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let request = r.json();
        assert_eq!(request["status"], "completed");
        assert_eq!(request["requested_by"], OWNER_ACTOR);
        assert_eq!(request["customer_pseudonym"], cy.as_str());
        assert_eq!(request["attempts"], 1);
        assert_unauthorized(&get(&app, "/api/v1/account/me", Some(&token)).await, "erased by staff");
        let r = app.admin_get("/api/v1/admin/audit?action=customer.erased").await;
        let entries = r.json()["entries"].as_array().cloned().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["actor"], OWNER_ACTOR);

        // Idempotent: again, the same completed request, and nothing more happens.
        let r = app.admin_post(&erasure, &json!({"confirm": cy})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["id"], request["id"]);
        assert_eq!(r.json()["status"], "completed");
        assert_eq!(app.count("privacy_requests").await, 1);
        let r = app.admin_get("/api/v1/admin/audit?action=customer.erased").await;
        assert_eq!(r.json()["entries"].as_array().unwrap().len(), 1);

        // The support view of an erased customer has no identity left.
        let view = app.admin_get(&path).await.json();
        assert!(view["email"].is_null() && view["name"].is_null());
        assert!(view["erased_at"].is_string());
        assert_eq!(view["addresses"], json!([]));
        assert_eq!(view["open_sessions"], 0);
        assert_eq!(view["privacy_requests"][0]["status"], "completed");
        assert!(olivine::audit::verify(&app.kernel.state.db).await.unwrap().intact);
        app.stop().await;
    }

    async fn racing_erasures_erase_once(backend: Backend) {
        let app = TestApp::start(backend).await;
        let dee = register(&app, "dee@example.com", "Dee").await;
        let token = access(&app, "dee@example.com").await;
        add_address(&app, &token, &home()).await;
        let erasure = format!("/api/v1/admin/customers/{dee}/erasure");
        let body = json!({"confirm": dee});
        let own = json!({"password": PASSWORD, "confirm": "erase my account"});
        let (a, b) = tokio::join!(
            app.admin_post(&erasure, &body),
            post(&app, "/api/v1/account/erasure", Some(&token), &own),
        );
        // The staff request always goes through; the customer's may find the account
        // erased already (401) or erase it first.
        assert!(a.status == StatusCode::ACCEPTED || a.status == StatusCode::OK, "{}", a.text());
        assert!(b.status == StatusCode::ACCEPTED || b.status == StatusCode::UNAUTHORIZED, "{}", b.text());
        for r in [&a, &b] {
            if r.status != StatusCode::UNAUTHORIZED {
                assert_eq!(r.json()["status"], "completed", "{}", r.text());
            }
        }
        let r = app.admin_get("/api/v1/admin/audit?action=customer.erased").await;
        assert_eq!(r.json()["entries"].as_array().unwrap().len(), 1, "erased exactly once");
        assert_eq!(app.count("customer_addresses").await, 0);
        assert!(olivine::audit::verify(&app.kernel.state.db).await.unwrap().intact);
        app.stop().await;
    }

    async fn erasures_left_unfinished_complete_at_startup(backend: Backend) {
        let app = TestApp::start(backend).await;
        let eve = register(&app, "eve@example.com", "Eve").await;
        let fay = register(&app, "fay@example.com", "Fay").await;
        let eve_token = access(&app, "eve@example.com").await;
        add_address(&app, &eve_token, &home()).await;
        // As a crash leaves them: one recorded but not started, one started.
        let received = format!("pr_received_{}", "A".repeat(34));
        let processing = format!("pr_processing_{}", "A".repeat(32));
        for (id, pseudonym, status, attempts) in [
            (&received, &eve, "received", 0),
            (&processing, &fay, "processing", 1),
        ] {
            sqlx::query(
                "INSERT INTO privacy_requests (id, kind, customer_pseudonym, requested_by, status, attempts, created_at, updated_at)
                 VALUES ($1, 'erasure', $2, $2, $3, $4, $5, $5)",
            )
            .bind(id).bind(pseudonym).bind(status).bind(attempts as i64).bind(olivine::time::now())
            .execute(&app.kernel.state.db.pool).await.unwrap();
        }
        let TestApp { kernel, db, .. } = app;
        kernel.shutdown().await;
        let kernel = olivine::app::Kernel::start(db.config()).await.expect("restarts");
        let router = kernel.router();
        let app = TestApp { kernel, router, db };

        for (id, attempts) in [(&received, 1), (&processing, 2)] {
            let r = get(&app, &format!("/api/v1/privacy-requests/{id}"), None).await;
            assert_eq!(r.json()["status"], "completed", "{}", r.text());
            let listed = app.admin_get("/api/v1/admin/privacy-requests").await.json();
            let request = listed["requests"].as_array().unwrap().iter()
                .find(|r| r["id"] == id.as_str()).cloned().unwrap();
            assert_eq!(request["attempts"], attempts);
        }
        assert_unauthorized(&get(&app, "/api/v1/account/me", Some(&eve_token)).await, "erased at startup");
        assert_eq!(sign_in(&app, "fay@example.com", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.count("customer_addresses").await, 0);
        let r = app.admin_get("/api/v1/admin/audit?action=customer.erased").await;
        assert_eq!(r.json()["entries"].as_array().unwrap().len(), 2);
        assert!(olivine::audit::verify(&app.kernel.state.db).await.unwrap().intact);
        app.stop().await;
    }

    async fn a_crash_mid_erasure_is_finished_by_the_next_start(backend: Backend) {
        for failpoint in ["privacy.erasure.received", "privacy.erasure.wiped"] {
            let db = TestDb::new(backend).await;
            let port = free_port();
            let mut child = spawn(&db, port, failpoint);
            wait_ready(port);
            let (status, body) = http(port, "POST", "/api/v1/account/register",
                Some(&json!({"email": "gil@example.com", "password": PASSWORD, "name": "Gil"}).to_string()))
                .unwrap();
            assert_eq!(status, 201, "{body}");
            let pseudonym = serde_json::from_str::<Value>(&body).unwrap()["pseudonym"]
                .as_str().unwrap().to_owned();
            let answer = http(port, "POST", &format!("/api/v1/admin/customers/{pseudonym}/erasure"),
                Some(&json!({"confirm": pseudonym}).to_string()));
            assert!(answer.is_none(), "{failpoint}: the process should have died mid-request: {answer:?}");
            assert!(!wait_exit(&mut child).success());

            let conn = db.connect().await;
            let status_of = || async {
                sqlx::query("SELECT id, status FROM privacy_requests")
                    .fetch_one(&conn.pool).await.unwrap()
            };
            let row = status_of().await;
            let expected = if failpoint.ends_with("received") { "received" } else { "processing" };
            assert_eq!(row.get::<String, _>(1), expected, "{failpoint}");
            let id: String = row.get(0);

            // The next start finishes it before serving.
            let mut child = spawn(&db, port, "");
            wait_ready(port);
            let (status, body) = http(port, "GET", &format!("/api/v1/privacy-requests/{id}"), None).unwrap();
            assert_eq!(status, 200, "{body}");
            assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], "completed", "{failpoint}");
            let erased: Option<String> = sqlx::query("SELECT erased_at FROM customers")
                .fetch_one(&conn.pool).await.unwrap().get(0);
            assert!(erased.is_some(), "{failpoint}");
            let audited: i64 = sqlx::query(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE action = 'customer.erased'",
            ).fetch_one(&conn.pool).await.unwrap().get(0);
            assert_eq!(audited, 1, "{failpoint}: erased and audited exactly once");
            let (status, _) = http(port, "POST", "/api/v1/account/sign-in",
                Some(&json!({"email": "gil@example.com", "password": PASSWORD}).to_string())).unwrap();
            assert_eq!(status, 401);
            assert!(olivine::audit::verify(&conn).await.unwrap().intact);
            child.kill().ok();
            child.wait().ok();
            conn.close().await;
            db.drop().await;
        }
    }
}

#[tokio::test]
async fn openapi_documents_the_privacy_routes() {
    let app = TestApp::start(Backend::Sqlite).await;
    let doc = app.get("/api/v1/openapi.json").await.json();
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/account/addresses",
        "/api/v1/account/addresses/{id}",
        "/api/v1/account/consents",
        "/api/v1/account/export",
        "/api/v1/account/erasure",
        "/api/v1/privacy-requests/{id}",
        "/api/v1/admin/privacy-requests",
        "/api/v1/admin/customers/{pseudonym}",
        "/api/v1/admin/customers/{pseudonym}/erasure",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    app.stop().await;
}
