//! Rate limits: brute-force sign-in meets 429 with `Retry-After` (even with the right
//! password), clients are counted apart, registration is limited, windows end, and with
//! Redis two kernels count together. Signed-in API requests are counted per customer (or
//! staff member), not per address; a token that does not verify counts by address.
//! Redis tests use the server at 127.0.0.1:6379.

use std::net::SocketAddr;

use crate::common::*;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use olivine::accounts::AccessClaims;
use olivine::config::ServeConfig;
use olivine::ratelimit::Limit;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

fn redis_url() -> String {
    std::env::var("OLIVINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A POST of JSON from `client` (as the server sees the peer), or from no known peer.
async fn post_from(app: &TestApp, client: Option<&str>, path: &str, body: &Value) -> TestResponse {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    if let Some(ip) = client {
        let addr: SocketAddr = format!("{ip}:40000").parse().expect("address");
        request.extensions_mut().insert(ConnectInfo(addr));
    }
    app.send(request).await
}

async fn sign_in(app: &TestApp, client: Option<&str>, email: &str, password: &str) -> TestResponse {
    post_from(
        app,
        client,
        "/api/v1/account/sign-in",
        &json!({"email": email, "password": password}),
    )
    .await
}

async fn register(app: &TestApp, client: Option<&str>, email: &str) -> TestResponse {
    post_from(
        app,
        client,
        "/api/v1/account/register",
        &json!({"email": email, "password": PASSWORD, "name": "Ada"}),
    )
    .await
}

/// A GET from `client` (the peer address), with `token` as its bearer token if any.
fn get_from(client: &str, path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().uri(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let mut request = builder.body(Body::empty()).expect("request");
    let ip: std::net::IpAddr = client.parse().expect("address");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    request
}

/// The customer's own account, read with their token from `client`.
async fn me_from(app: &TestApp, client: &str, token: &str) -> TestResponse {
    app.send(get_from(client, "/api/v1/account/me", Some(token)))
        .await
}

/// A guest's API request from `client`.
async fn guest_from(app: &TestApp, client: &str) -> TestResponse {
    app.send(get_from(client, "/api/v1/shipping-rates", None))
        .await
}

#[track_caller]
fn assert_ok(r: &TestResponse) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[track_caller]
fn assert_limited(r: &TestResponse) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    let retry_after: u64 = r
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    let body = r.json();
    assert_eq!(body["error"], "too_many_requests", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// Generous limits everywhere except the ones a test sets.
fn limits(config: &mut ServeConfig, sign_in: Limit, register: Limit) {
    config.rate_limit_sign_in = sign_in;
    config.rate_limit_register = register;
}

both_backends! {
    async fn brute_force_sign_in_gets_429_even_with_the_right_password(backend: Backend) {
        let app = TestApp::start_with(backend, |c| limits(c, Limit::new(3, 3600), Limit::new(100, 3600))).await;
        // Other tests' kernels count into the same series: assert the increase.
        let limited_series = r#"olivine_rate_limited_total{class="sign-in"}"#;
        let limited_before = app.metric(limited_series).await;
        let r = register(&app, Some("203.0.113.7"), "ada@example.com").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        for attempt in 0..3 {
            let r = sign_in(&app, Some("203.0.113.7"), "ada@example.com", &format!("wrong guess {attempt}")).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
        }
        let r = sign_in(&app, Some("203.0.113.7"), "ada@example.com", "wrong guess 4").await;
        assert_limited(&r);
        // The right password does not get through while the client is limited.
        let r = sign_in(&app, Some("203.0.113.7"), "ada@example.com", PASSWORD).await;
        assert_limited(&r);
        // Another client is counted apart and signs in.
        let r = sign_in(&app, Some("198.51.100.20"), "ada@example.com", PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // The two refusals are counted by class.
        let limited = app.metric(limited_series).await;
        assert!(limited >= limited_before + 2.0, "{limited_series}: {limited_before} then {limited}");
        app.stop().await;
    }

    async fn sign_in_is_limited_per_account_across_clients(backend: Backend) {
        let app = TestApp::start_with(backend, |c| {
            limits(c, Limit::new(100, 3600), Limit::new(100, 3600));
            c.rate_limit_sign_in_account = Limit::new(2, 3600);
        })
        .await;
        let r = register(&app, Some("203.0.113.7"), "bo@example.com").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        for client in ["192.0.2.1", "192.0.2.2"] {
            let r = sign_in(&app, Some(client), "bo@example.com", "a wrong guess").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
        }
        let r = sign_in(&app, Some("192.0.2.3"), "BO@example.com ", PASSWORD).await;
        assert_limited(&r);
        // Other accounts are not affected.
        let r = sign_in(&app, Some("192.0.2.3"), "nobody@example.com", PASSWORD).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
        app.stop().await;
    }

    async fn customers_behind_one_address_have_budgets_of_their_own(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.rate_limit_api = Limit::new(3, 3600)).await;
        let ada = app.customer_token("ada@example.com").await;
        let bo = app.customer_token("bo@example.com").await;
        // One mobile carrier's NAT address for both of them and a guest.
        let nat = "198.51.100.7";
        for _ in 0..3 {
            assert_ok(&me_from(&app, nat, &ada).await);
            assert_ok(&me_from(&app, nat, &bo).await);
        }
        assert_limited(&me_from(&app, nat, &ada).await);
        assert_limited(&me_from(&app, nat, &bo).await);
        // The address's own budget (a guest behind it) was not spent by them.
        for _ in 0..3 {
            assert_ok(&guest_from(&app, nat).await);
        }
        assert_limited(&guest_from(&app, nat).await);
        // Nor does a spent address hold a signed-in customer back.
        let cy = app.customer_token("cy@example.com").await;
        assert_ok(&me_from(&app, nat, &cy).await);
        app.stop().await;
    }

    async fn a_customers_budget_follows_them_across_addresses(backend: Backend) {
        let app = TestApp::start_with(backend, |c| {
            c.rate_limit_api = Limit::new(3, 3600);
            c.rate_limit_catalog = Limit::new(2, 3600);
        })
        .await;
        let ada = app.customer_token("ada@example.com").await;
        // Wi-Fi, mobile, another network: one budget.
        for client in ["192.0.2.1", "2001:db8:1:2::1", "203.0.113.5"] {
            assert_ok(&me_from(&app, client, &ada).await);
        }
        assert_limited(&me_from(&app, "192.0.2.9", &ada).await);
        // Every address is fresh for a guest.
        assert_ok(&guest_from(&app, "192.0.2.9").await);
        // Catalog reads keep a budget of their own, counted per customer as well.
        for client in ["192.0.2.1", "192.0.2.2"] {
            assert_ok(&app.send(get_from(client, "/api/v1/products", Some(&ada))).await);
        }
        assert_limited(&app.send(get_from("192.0.2.3", "/api/v1/products", Some(&ada))).await);
        assert_ok(&app.send(get_from("192.0.2.3", "/api/v1/products", None)).await);
        app.stop().await;
    }

    async fn forged_expired_and_made_up_tokens_are_counted_by_address(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.rate_limit_api = Limit::new(3, 3600)).await;
        let ada = app.customer_token("ada@example.com").await;
        let keys = app.kernel.state.keys.clone();
        let claims = olivine::accounts::decode_access_token(&keys, &ada).expect("Ada's claims");
        // Ada's claims under the store's key id, signed with another secret.
        let mut forged_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        forged_header.kid = Some(keys.signing_key_id().to_owned());
        let forged = jsonwebtoken::encode(
            &forged_header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"not the store's signing key"),
        )
        .expect("sign");
        // Signed by the store, expired an hour ago.
        let now = chrono::Utc::now().timestamp();
        let expired = olivine::accounts::encode_access_token(
            &keys,
            &AccessClaims {
                iat: now - 4600,
                exp: now - 3600,
                ..claims.clone()
            },
        )
        .expect("sign");
        let client = "203.0.113.40";
        for token in [forged.as_str(), expired.as_str(), "olv_made-up-staff-token"] {
            let r = me_from(&app, client, token).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
        }
        // Each bad token spent the address's budget: a fresh one does not get a new one.
        assert_limited(&me_from(&app, client, "yet-another-made-up-token").await);
        assert_limited(&guest_from(&app, client).await);
        // And Ada's own budget is untouched by the tokens that named her.
        for _ in 0..3 {
            assert_ok(&me_from(&app, client, &ada).await);
        }
        assert_limited(&me_from(&app, client, &ada).await);
        app.stop().await;
    }

    async fn staff_are_counted_per_staff_member_once_their_token_is_known(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.rate_limit_api = Limit::new(3, 3600)).await;
        let token = app.staff_token("support").await;
        let me = |client: &str| get_from(client, "/api/v1/admin/me", Some(&token));
        // Staff tokens are opaque: the first request this node sees with one counts by
        // address; the admin middleware accepts it, and the next ones count per staff
        // member, whichever address they come from.
        assert_ok(&app.send(me("192.0.2.20")).await);
        for client in ["192.0.2.21", "192.0.2.22", "192.0.2.23"] {
            assert_ok(&app.send(me(client)).await);
        }
        assert_limited(&app.send(me("192.0.2.24")).await);
        // The first address spent one request of its own.
        for _ in 0..2 {
            assert_ok(&guest_from(&app, "192.0.2.20").await);
        }
        assert_limited(&guest_from(&app, "192.0.2.20").await);
        app.stop().await;
    }

    async fn registration_is_limited_per_client(backend: Backend) {
        let app = TestApp::start_with(backend, |c| limits(c, Limit::new(100, 3600), Limit::new(2, 3600))).await;
        for n in 0..2 {
            let r = register(&app, Some("203.0.113.9"), &format!("r{n}@example.com")).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        }
        let r = register(&app, Some("203.0.113.9"), "r3@example.com").await;
        assert_limited(&r);
        assert_eq!(app.count("customers").await, 2, "the refused registration wrote nothing");
        let r = register(&app, Some("203.0.113.10"), "r3@example.com").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_are_limited_and_windows_end() {
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.rate_limit_api = Limit::new(2, 1);
    })
    .await;
    let get = |client: &'static str| {
        let mut request = Request::builder()
            .uri("/api/v1/shipping-rates")
            .body(Body::empty())
            .expect("request");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 50], 1))));
        if client != "peer" {
            request
                .headers_mut()
                .insert("x-forwarded-for", client.parse().expect("header"));
        }
        request
    };
    for _ in 0..2 {
        assert_eq!(app.send(get("peer")).await.status, StatusCode::OK);
    }
    let r = app.send(get("peer")).await;
    assert_limited(&r);
    // Pages outside /api are not limited.
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    // X-Forwarded-For is not trusted by default: same peer, same client.
    assert_limited(&app.send(get("203.0.113.1")).await);
    // The window (1 s) ends and the client may call again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.send(get("peer")).await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_reads_have_a_budget_of_their_own() {
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.rate_limit_api = Limit::new(1, 3600);
        c.rate_limit_catalog = Limit::new(3, 3600);
    })
    .await;
    // Three cached reads pass where other API requests get one: a NAT full of shoppers
    // browsing is not throttled like writes are.
    for path in [
        "/api/v1/products",
        "/api/v1/products/nothing-here",
        "/api/v1/categories",
    ] {
        let r = app.get(path).await;
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::NOT_FOUND,
            "{path}: {}",
            r.status
        );
    }
    assert_limited(&app.get("/api/v1/products").await);
    // The other budget is untouched by them, and spent on its own.
    assert_eq!(
        app.get("/api/v1/shipping-rates").await.status,
        StatusCode::OK
    );
    assert_limited(&app.get("/api/v1/shipping-rates").await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_identifies_clients_when_trusted() {
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.rate_limit_api = Limit::new(1, 3600);
        c.trust_forwarded_for = true;
    })
    .await;
    let get = |forwarded: &str| {
        Request::builder()
            .uri("/api/v1/shipping-rates")
            .header("x-forwarded-for", forwarded)
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(app.send(get("198.51.100.1")).await.status, StatusCode::OK);
    // The last hop (the address the proxy saw) counts; what the client claimed before
    // it does not.
    assert_limited(&app.send(get("10.9.9.9, 198.51.100.1")).await);
    assert_eq!(
        app.send(get("198.51.100.1, 198.51.100.2")).await.status,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_kernels_share_counters_in_redis() {
    let prefix = format!(
        "olivine-test:shared:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let configure = |c: &mut ServeConfig| {
        c.redis_url = Some(redis_url());
        c.rate_limit_prefix = prefix.clone();
        c.rate_limit_register = Limit::new(3, 3600);
    };
    let one = TestApp::start_with(Backend::Sqlite, configure).await;
    let two = TestApp::start_with(Backend::Sqlite, configure).await;
    let client = Some("203.0.113.77");
    for (n, app) in [&one, &two, &one].into_iter().enumerate() {
        let r = register(app, client, &format!("s{n}@example.com")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    // The fourth registration of this client is refused by either node.
    assert_limited(&register(&two, client, "s3@example.com").await);
    assert_limited(&register(&one, client, "s4@example.com").await);
    // Another client is counted apart.
    let r = register(&two, Some("203.0.113.78"), "s5@example.com").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_budget_is_shared_by_nodes_in_redis() {
    let prefix = format!(
        "olivine-test:customer:{}:{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let configure = |c: &mut ServeConfig| {
        c.redis_url = Some(redis_url());
        c.rate_limit_prefix = prefix.clone();
        c.rate_limit_api = Limit::new(3, 3600);
    };
    // Two nodes of one store (one database, so one signing key).
    let one = TestApp::start_with(Backend::Sqlite, configure).await;
    let two = one
        .another_node(configure, olivine::app::Extensions::default())
        .await;
    let ada = one.customer_token("ada@example.com").await;
    for (app, client) in [
        (&one, "192.0.2.1"),
        (&two, "192.0.2.2"),
        (&one, "192.0.2.3"),
    ] {
        assert_ok(&me_from(app, client, &ada).await);
    }
    assert_limited(&me_from(&two, "192.0.2.4", &ada).await);
    // The address is not what was counted.
    assert_ok(&guest_from(&two, "192.0.2.4").await);
    two.stop().await;
    one.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_windows_end() {
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.redis_url = Some(redis_url());
        c.rate_limit_api = Limit::new(1, 1);
    })
    .await;
    assert_eq!(
        app.get("/api/v1/shipping-rates").await.status,
        StatusCode::OK
    );
    assert_limited(&app.get("/api/v1/shipping-rates").await);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.get("/api/v1/shipping-rates").await.status,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_open_to_local_counters() {
    // Nothing listens on port 1: the kernel starts, and limits still hold locally.
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.redis_url = Some("redis://127.0.0.1:1".to_owned());
        c.rate_limit_api = Limit::new(2, 3600);
    })
    .await;
    // Other tests' kernels count into the same series: assert the increase.
    let errors_series = "olivine_rate_limit_redis_errors_total";
    let errors_before = app.metric(errors_series).await;
    assert_eq!(
        app.get("/api/v1/shipping-rates").await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/shipping-rates").await.status,
        StatusCode::OK
    );
    assert_limited(&app.get("/api/v1/shipping-rates").await);
    let errors = app.metric(errors_series).await;
    assert!(
        errors >= errors_before + 1.0,
        "{errors_series}: {errors_before} then {errors}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_redis_url_is_a_configuration_error() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = db.config();
    config.redis_url = Some("not a url".to_owned());
    let err = olivine::app::Kernel::start(config)
        .await
        .err()
        .expect("the kernel refuses to start");
    assert!(format!("{err:#}").contains("REDIS_URL"), "{err:#}");
}
