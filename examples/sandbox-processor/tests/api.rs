//! The processor's API over real TCP, through `spawn_with` (and the binary once).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sandbox_processor::{Config, Handle, cards, spawn, spawn_with};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn error_field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or("")
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = &raw[split + 4..];
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(addr: SocketAddr, path: &str, key: Option<&str>, body: Value) -> Answer {
    let text = body.to_string();
    match key {
        Some(key) => request(addr, "POST", path, &[("Idempotency-Key", key)], Some(&text)).await,
        None => request(addr, "POST", path, &[], Some(&text)).await,
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, &[], None).await
}

async fn start(config: Config) -> (SocketAddr, Handle) {
    spawn_with("127.0.0.1:0", config).await.unwrap()
}

fn card(number: &str) -> Value {
    json!({"number": number, "exp_month": 12, "exp_year": 2099, "cvc": "123"})
}

async fn token(addr: SocketAddr, number: &str) -> String {
    let a = post(addr, "/v1/tokens", None, card(number)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["token"].as_str().unwrap().to_owned()
}

fn auth_body(token: &str, amount: i64, reference: &str) -> Value {
    json!({"token": token, "amount_minor": amount, "currency": "EUR", "reference": reference})
}

/// The body of an authorization that charges the card saved on `customer`.
fn customer_body(customer: &str, amount: i64, reference: &str, off_session: bool) -> Value {
    json!({
        "customer": customer, "amount_minor": amount, "currency": "EUR",
        "reference": reference, "off_session": off_session,
    })
}

/// A customer saved from `token` under idempotency key `key`; its id.
async fn customer(addr: SocketAddr, token: &str, key: &str) -> String {
    let a = post(addr, "/v1/customers", Some(key), json!({"token": token})).await;
    assert_eq!(a.status, 201, "{}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

/// A fresh authorization of `amount` on the success card; its id.
async fn authorized(addr: SocketAddr, amount: i64, key: &str) -> String {
    let tok = token(addr, cards::SUCCESS).await;
    let a = post(
        addr,
        "/v1/authorizations",
        Some(key),
        auth_body(&tok, amount, &format!("order-{key}")),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["status"], "authorized");
    a.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn spawn_health_and_unknown_routes() {
    // An address of its own on the loopback network: the other tests listen on
    // 127.0.0.1 and may be given this port once it is free, which would make the
    // last check below answer for their server instead of this one.
    let (addr, handle) = spawn("127.0.0.77:0").await;
    let a = get(addr, "/health").await;
    assert_eq!((a.status, a.body.clone()), (200, json!({"ok": true})));
    let a = get(addr, "/v2/nothing").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_code(), "not_found");
    handle.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn tokenization_and_its_field_errors() {
    let (addr, _h) = start(Config::default()).await;
    let a = post(addr, "/v1/tokens", None, card(cards::SUCCESS)).await;
    assert_eq!(a.status, 201);
    assert!(a.body["token"].as_str().unwrap().starts_with("tok_"));
    assert_eq!(a.body["card"]["brand"], "visa");
    assert_eq!(a.body["card"]["last4"], "4242");
    assert!(a.body.get("number").is_none());
    // Spaces and strings are fine, two-digit years too.
    let a = post(
        addr,
        "/v1/tokens",
        None,
        json!({"number": "5555 5555 5555 4444", "exp_month": "01", "exp_year": "99", "cvc": "1234"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["card"]["brand"], "mastercard");
    assert_eq!(a.body["card"]["exp_year"], 2099);
    // Two tokens for one card differ.
    assert_ne!(
        token(addr, cards::SUCCESS).await,
        token(addr, cards::SUCCESS).await
    );

    let mut cases: Vec<(Value, &str)> = vec![
        (card("4242424242424241"), "number"),
        (card("4242"), "number"),
        (card("4242x24242424242"), "number"),
        (
            json!({"exp_month": 1, "exp_year": 2099, "cvc": "123"}),
            "number",
        ),
        (
            json!({"number": true, "exp_month": 1, "exp_year": 2099, "cvc": "123"}),
            "number",
        ),
        (
            json!({"number": cards::SUCCESS, "exp_month": 13, "exp_year": 2099, "cvc": "123"}),
            "exp_month",
        ),
        (
            json!({"number": cards::SUCCESS, "exp_month": 0, "exp_year": 2099, "cvc": "123"}),
            "exp_month",
        ),
        (
            json!({"number": cards::SUCCESS, "exp_month": 1.5, "exp_year": 2099, "cvc": "123"}),
            "exp_month",
        ),
        (
            json!({"number": cards::SUCCESS, "exp_year": 2099, "cvc": "123"}),
            "exp_month",
        ),
        (
            json!({"number": cards::SUCCESS, "exp_month": 1, "exp_year": 2001, "cvc": "123"}),
            "exp_year",
        ),
        (
            json!({"number": cards::SUCCESS, "exp_month": 1, "exp_year": 99999, "cvc": "123"}),
            "exp_year",
        ),
        (
            json!({"number": cards::SUCCESS, "exp_month": 1, "exp_year": 2099, "cvc": "12"}),
            "cvc",
        ),
        (
            json!({"number": cards::SUCCESS, "exp_month": 1, "exp_year": 2099, "cvc": "12a"}),
            "cvc",
        ),
        (
            json!({"number": cards::SUCCESS, "exp_month": 1, "exp_year": 2099}),
            "cvc",
        ),
    ];
    cases.push((
        json!({"number": cards::SUCCESS, "exp_month": 1, "exp_year": 2099, "cvc": "123", "name": "x"}),
        "name",
    ));
    for (body, field) in cases {
        let a = post(addr, "/v1/tokens", None, body.clone()).await;
        assert_eq!(a.status, 422, "{body}: {}", a.body);
        assert_eq!(a.error_field(), field, "{body}: {}", a.body);
    }
    for bad in ["{", "[1]", "\"x\""] {
        let a = request(addr, "POST", "/v1/tokens", &[], Some(bad)).await;
        assert_eq!(a.status, 400, "{bad}");
        assert_eq!(a.error_code(), "invalid_json");
    }
}

#[tokio::test]
async fn cors_any_origin_by_default() {
    let (addr, _h) = start(Config::default()).await;
    let a = request(
        addr,
        "OPTIONS",
        "/v1/tokens",
        &[
            ("Origin", "http://shop.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        None,
    )
    .await;
    assert_eq!(a.status, 204);
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    assert!(
        a.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        a.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert!(a.header("access-control-max-age").is_some());
    let text = card(cards::SUCCESS).to_string();
    let a = request(
        addr,
        "POST",
        "/v1/tokens",
        &[("Origin", "http://shop.example")],
        Some(&text),
    )
    .await;
    assert_eq!(a.status, 201);
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    // Errors carry the header too, so the page can read the field.
    let text = card("4242424242424241").to_string();
    let a = request(
        addr,
        "POST",
        "/v1/tokens",
        &[("Origin", "http://shop.example")],
        Some(&text),
    )
    .await;
    assert_eq!(a.status, 422);
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn cors_with_a_configured_origin() {
    let mut config = Config::default();
    config
        .set_allowed_origins("http://127.0.0.1:8080, https://shop.example/")
        .unwrap();
    let (addr, _h) = start(config).await;
    let preflight = |origin: &'static str| async move {
        request(
            addr,
            "OPTIONS",
            "/v1/tokens",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
            ],
            None,
        )
        .await
    };
    let a = preflight("https://shop.example").await;
    assert_eq!(a.status, 204);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert_eq!(a.header("vary"), Some("Origin"));
    let a = preflight("https://evil.example").await;
    assert_eq!(a.status, 403);
    assert!(a.header("access-control-allow-origin").is_none());

    let text = card(cards::SUCCESS).to_string();
    let a = request(
        addr,
        "POST",
        "/v1/tokens",
        &[("Origin", "http://127.0.0.1:8080")],
        Some(&text),
    )
    .await;
    assert_eq!(a.status, 201);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("http://127.0.0.1:8080")
    );
    let a = request(
        addr,
        "POST",
        "/v1/tokens",
        &[("Origin", "https://evil.example")],
        Some(&text),
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.error_code(), "origin_not_allowed");
    // Not a browser: no Origin, no CORS.
    let a = post(addr, "/v1/tokens", None, card(cards::SUCCESS)).await;
    assert_eq!(a.status, 201);
    assert!(a.header("access-control-allow-origin").is_none());
    assert!(Config::default().set_allowed_origins(" , ").is_err());
}

#[tokio::test]
async fn authorize_success_and_declines() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::SUCCESS).await;
    let a = post(
        addr,
        "/v1/authorizations",
        Some("k-ok"),
        auth_body(&tok, 2599, "order-1"),
    )
    .await;
    assert_eq!(a.status, 201);
    let b = &a.body;
    assert!(b["id"].as_str().unwrap().starts_with("auth_"));
    assert_eq!(b["status"], "authorized");
    assert_eq!(b["amount_minor"], 2599);
    assert_eq!(b["currency"], "EUR");
    assert_eq!(b["captured_minor"], 0);
    assert_eq!(b["refunded_minor"], 0);
    assert_eq!(b["decline_reason"], Value::Null);
    assert_eq!(b["decline_type"], Value::Null);
    assert_eq!(b["reference"], "order-1");
    assert_eq!(b["customer"], Value::Null);
    assert_eq!(b["off_session"], false);
    assert_eq!(b["card"]["last4"], "4242");
    assert!(a.header("idempotent-replayed").is_none());

    let tok = token(addr, cards::SUCCESS_MASTERCARD).await;
    let a = post(
        addr,
        "/v1/authorizations",
        Some("k-mc"),
        auth_body(&tok, 1, "order-mc"),
    )
    .await;
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (201, Some("authorized"))
    );

    for (number, reason, kind) in [
        (cards::DECLINED, "card_declined", "soft"),
        (cards::INSUFFICIENT_FUNDS, "insufficient_funds", "soft"),
        (cards::LOST_CARD, "lost_card", "hard"),
        (cards::STOLEN_CARD, "stolen_card", "hard"),
    ] {
        let tok = token(addr, number).await;
        let a = post(
            addr,
            "/v1/authorizations",
            Some(reason),
            auth_body(&tok, 500, reason),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.body);
        assert_eq!(a.body["status"], "declined");
        assert_eq!(a.body["decline_reason"], reason);
        assert_eq!(a.body["decline_type"], kind);
        assert!(a.body["decline_message"].as_str().unwrap().len() > 5);
        // A declined authorization can be neither captured nor voided.
        let id = a.body["id"].as_str().unwrap();
        for op in ["capture", "void", "refund"] {
            let r = post(
                addr,
                &format!("/v1/authorizations/{id}/{op}"),
                Some(&format!("{reason}-{op}")),
                json!({}),
            )
            .await;
            assert_eq!(r.status, 409, "{op}");
            assert_eq!(r.error_code(), "authorization_declined");
        }
    }
}

#[tokio::test]
async fn authorize_field_errors() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::SUCCESS).await;
    let a = post(addr, "/v1/authorizations", None, auth_body(&tok, 100, "o")).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "idempotency_key_required");
    let long = "k".repeat(256);
    let a = post(
        addr,
        "/v1/authorizations",
        Some(&long),
        auth_body(&tok, 100, "o"),
    )
    .await;
    assert_eq!(a.status, 400);
    let cases = [
        (
            json!({"amount_minor": 100, "currency": "EUR", "reference": "o"}),
            "token",
        ),
        (
            json!({"token": "tok_nope", "amount_minor": 100, "currency": "EUR", "reference": "o"}),
            "token",
        ),
        (
            json!({"token": tok, "amount_minor": 0, "currency": "EUR", "reference": "o"}),
            "amount_minor",
        ),
        (
            json!({"token": tok, "amount_minor": -5, "currency": "EUR", "reference": "o"}),
            "amount_minor",
        ),
        (
            json!({"token": tok, "amount_minor": 10.5, "currency": "EUR", "reference": "o"}),
            "amount_minor",
        ),
        (
            json!({"token": tok, "amount_minor": "100", "currency": "EUR", "reference": "o"}),
            "amount_minor",
        ),
        (
            json!({"token": tok, "amount_minor": 1e300, "currency": "EUR", "reference": "o"}),
            "amount_minor",
        ),
        (
            json!({"token": tok, "amount_minor": 100_000_000_001i64, "currency": "EUR", "reference": "o"}),
            "amount_minor",
        ),
        (
            json!({"token": tok, "currency": "EUR", "reference": "o"}),
            "amount_minor",
        ),
        (
            json!({"token": tok, "amount_minor": 100, "currency": "eur", "reference": "o"}),
            "currency",
        ),
        (
            json!({"token": tok, "amount_minor": 100, "reference": "o"}),
            "currency",
        ),
        (
            json!({"token": tok, "amount_minor": 100, "currency": "EUR"}),
            "reference",
        ),
        (
            json!({"token": tok, "amount_minor": 100, "currency": "EUR", "reference": " "}),
            "reference",
        ),
        (
            json!({"token": tok, "amount_minor": 100, "currency": "EUR", "reference": "a\u{0}b"}),
            "reference",
        ),
        (
            json!({"token": tok, "amount_minor": 100, "currency": "EUR", "reference": "o", "card": "4242"}),
            "card",
        ),
    ];
    for (i, (body, field)) in cases.into_iter().enumerate() {
        let a = post(
            addr,
            "/v1/authorizations",
            Some(&format!("bad-{i}")),
            body.clone(),
        )
        .await;
        assert_eq!(a.status, 422, "{body}: {}", a.body);
        assert_eq!(a.error_field(), field, "{body}: {}", a.body);
    }
    // A refused request is not remembered: the same key works once the body is right.
    let a = post(
        addr,
        "/v1/authorizations",
        Some("bad-0"),
        auth_body(&tok, 100, "o"),
    )
    .await;
    assert_eq!(a.status, 201);
}

#[tokio::test]
async fn idempotent_replay_and_conflict() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::SUCCESS).await;
    let body = auth_body(&tok, 4200, "order-77");
    let first = post(
        addr,
        "/v1/authorizations",
        Some("order-77-auth"),
        body.clone(),
    )
    .await;
    assert_eq!(first.status, 201);
    // Same key, same body (keys in another order): the same answer, done once.
    let reordered = format!(
        r#"{{"reference":"order-77","currency":"EUR","amount_minor":4200,"token":"{tok}"}}"#
    );
    let again = request(
        addr,
        "POST",
        "/v1/authorizations",
        &[("Idempotency-Key", "order-77-auth")],
        Some(&reordered),
    )
    .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let list = get(addr, "/v1/authorizations?reference=order-77").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    // Same key, another body: conflict, nothing done.
    let other = post(
        addr,
        "/v1/authorizations",
        Some("order-77-auth"),
        auth_body(&tok, 4300, "order-77"),
    )
    .await;
    assert_eq!(other.status, 409);
    assert_eq!(other.error_code(), "idempotency_key_reused");
    // Same key on another endpoint: conflict too.
    let id = first.body["id"].as_str().unwrap();
    let other = post(
        addr,
        &format!("/v1/authorizations/{id}/capture"),
        Some("order-77-auth"),
        json!({}),
    )
    .await;
    assert_eq!(other.status, 409);
    assert_eq!(other.error_code(), "idempotency_key_reused");
    let list = get(addr, "/v1/authorizations?reference=order-77").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(list.body["data"][0]["captured_minor"], 0);

    // Captures and refunds replay too: performed once.
    let path = format!("/v1/authorizations/{id}/capture");
    let c1 = post(addr, &path, Some("cap-1"), json!({"amount_minor": 1000})).await;
    let c2 = post(addr, &path, Some("cap-1"), json!({"amount_minor": 1000})).await;
    assert_eq!((c1.status, c2.status), (200, 200));
    assert_eq!(c1.body, c2.body);
    assert_eq!(c2.header("idempotent-replayed"), Some("true"));
    let path = format!("/v1/authorizations/{id}/refund");
    let r1 = post(addr, &path, Some("ref-1"), json!({"amount_minor": 400})).await;
    let r2 = post(addr, &path, Some("ref-1"), json!({"amount_minor": 400})).await;
    assert_eq!(r1.body, r2.body);
    let r3 = post(addr, &path, Some("ref-1"), json!({"amount_minor": 300})).await;
    assert_eq!(r3.status, 409);
    let now = get(addr, &format!("/v1/authorizations/{id}")).await;
    assert_eq!(now.body["captured_minor"], 1000);
    assert_eq!(now.body["refunded_minor"], 400);
    assert_eq!(now.body["operations"].as_array().unwrap().len(), 2);
    // The key is required on every operation.
    let a = post(addr, &path, None, json!({})).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_field(), "Idempotency-Key");
}

#[tokio::test]
async fn retry_card_answers_503_once_per_key() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::RETRY).await;
    let body = auth_body(&tok, 1500, "order-retry");
    let a = post(addr, "/v1/authorizations", Some("retry-1"), body.clone()).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.error_code(), "processor_unavailable");
    let list = get(addr, "/v1/authorizations?reference=order-retry").await;
    assert!(list.body["data"].as_array().unwrap().is_empty());
    let a = post(addr, "/v1/authorizations", Some("retry-1"), body.clone()).await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["status"], "authorized");
    let b = post(addr, "/v1/authorizations", Some("retry-1"), body.clone()).await;
    assert_eq!(b.body, a.body);
    // A new key starts over: 503 first.
    let a = post(addr, "/v1/authorizations", Some("retry-2"), body.clone()).await;
    assert_eq!(a.status, 503);
    let a = post(addr, "/v1/authorizations", Some("retry-2"), body).await;
    assert_eq!(a.status, 201);
    let list = get(addr, "/v1/authorizations?reference=order-retry").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn timeout_card_hangs_then_504_without_authorizing() {
    let config = Config {
        timeout: Duration::from_millis(600),
        ..Config::default()
    };
    let (addr, _h) = start(config).await;
    let tok = token(addr, cards::TIMEOUT).await;
    let body = auth_body(&tok, 990, "order-slow");
    let started = Instant::now();
    let hanging = tokio::spawn({
        let body = body.clone();
        async move { post(addr, "/v1/authorizations", Some("slow-1"), body).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A retry while the first is in flight is told to come back later.
    let busy = post(addr, "/v1/authorizations", Some("slow-1"), body.clone()).await;
    assert_eq!(busy.status, 409);
    assert_eq!(busy.error_code(), "idempotency_key_in_use");
    let a = hanging.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(a.status, 504);
    assert_eq!(a.error_code(), "timeout");
    let list = get(addr, "/v1/authorizations?reference=order-slow").await;
    assert!(list.body["data"].as_array().unwrap().is_empty());
    // The key is free again (and the card times out again).
    let a = post(addr, "/v1/authorizations", Some("slow-1"), body).await;
    assert_eq!(a.status, 504);
}

#[tokio::test]
async fn timeout_card_client_gone_frees_the_key() {
    let config = Config {
        timeout: Duration::from_millis(400),
        ..Config::default()
    };
    let (addr, _h) = start(config).await;
    let tok = token(addr, cards::TIMEOUT).await;
    let body = auth_body(&tok, 990, "order-gone").to_string();
    // Send and hang up at once.
    {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/authorizations HTTP/1.1\r\nHost: x\r\nIdempotency-Key: gone\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = request(
        addr,
        "POST",
        "/v1/authorizations",
        &[("Idempotency-Key", "gone")],
        Some(&body),
    )
    .await;
    assert_eq!(a.status, 504, "{}", a.body);
}

#[tokio::test]
async fn partial_and_full_capture_and_refund_arithmetic() {
    let (addr, _h) = start(Config::default()).await;
    let id = authorized(addr, 10_000, "arith").await;
    let op = |what: &'static str| format!("/v1/authorizations/{id}/{what}");

    let a = post(
        addr,
        &op("capture"),
        Some("c1"),
        json!({"amount_minor": 3000, "currency": "EUR"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "captured");
    assert_eq!(a.body["captured_minor"], 3000);
    assert_eq!(a.body["operation"]["kind"], "capture");
    assert_eq!(a.body["operation"]["amount_minor"], 3000);
    assert!(
        a.body["operation"]["id"]
            .as_str()
            .unwrap()
            .starts_with("cap_")
    );

    let a = post(
        addr,
        &op("capture"),
        Some("c2"),
        json!({"amount_minor": 7001}),
    )
    .await;
    assert_eq!(a.status, 409);
    assert_eq!(a.error_code(), "amount_exceeds_authorized");
    let a = post(
        addr,
        &op("capture"),
        Some("c3"),
        json!({"amount_minor": 100, "currency": "USD"}),
    )
    .await;
    assert_eq!((a.status, a.error_field()), (422, "currency"));
    let a = post(addr, &op("capture"), Some("c4"), json!({"amount_minor": 0})).await;
    assert_eq!((a.status, a.error_field()), (422, "amount_minor"));
    let a = post(addr, &op("capture"), Some("c5"), json!({"amount": 5})).await;
    assert_eq!((a.status, a.error_field()), (422, "amount"));
    // No amount: the rest.
    let a = post(addr, &op("capture"), Some("c6"), json!({})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["captured_minor"], 10_000);
    assert_eq!(a.body["operation"]["amount_minor"], 7000);
    let a = request(
        addr,
        "POST",
        &op("capture"),
        &[("Idempotency-Key", "c7")],
        None,
    )
    .await;
    assert_eq!(a.status, 409);
    assert_eq!(a.error_code(), "already_captured");

    let a = post(
        addr,
        &op("refund"),
        Some("r1"),
        json!({"amount_minor": 2500}),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"], "captured");
    assert_eq!(a.body["refunded_minor"], 2500);
    let a = post(
        addr,
        &op("refund"),
        Some("r2"),
        json!({"amount_minor": 7501}),
    )
    .await;
    assert_eq!(a.status, 409);
    assert_eq!(a.error_code(), "amount_exceeds_captured");
    let a = post(addr, &op("refund"), Some("r3"), json!({})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["refunded_minor"], 10_000);
    assert_eq!(a.body["operation"]["amount_minor"], 7500);
    assert_eq!(a.body["status"], "refunded");
    let a = post(addr, &op("refund"), Some("r4"), json!({"amount_minor": 1})).await;
    assert_eq!(a.status, 409);
    assert_eq!(a.error_code(), "already_refunded");

    // A partial capture, then refunds limited to what was captured.
    let id = authorized(addr, 5000, "arith-2").await;
    let op = |what: &'static str| format!("/v1/authorizations/{id}/{what}");
    let a = post(
        addr,
        &op("capture"),
        Some("p1"),
        json!({"amount_minor": 2000}),
    )
    .await;
    assert_eq!(a.body["captured_minor"], 2000);
    let a = post(
        addr,
        &op("refund"),
        Some("p2"),
        json!({"amount_minor": 2001}),
    )
    .await;
    assert_eq!(a.status, 409);
    let a = post(addr, &op("refund"), Some("p3"), json!({})).await;
    assert_eq!(a.body["refunded_minor"], 2000);
    assert_eq!(a.body["status"], "refunded");
    // The uncaptured rest can still be captured, and then refunded.
    let a = post(addr, &op("capture"), Some("p4"), json!({})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["captured_minor"], 5000);
    assert_eq!(a.body["status"], "captured");
    let g = get(addr, &format!("/v1/authorizations/{id}")).await;
    assert_eq!(g.body["operations"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn illegal_transitions_and_unknown_ids() {
    let (addr, _h) = start(Config::default()).await;
    // Void, then nothing else.
    let id = authorized(addr, 1000, "v").await;
    let op = |what: &'static str| format!("/v1/authorizations/{id}/{what}");
    let a = post(addr, &op("refund"), Some("v-r0"), json!({})).await;
    assert_eq!((a.status, a.error_code()), (409, "nothing_captured"));
    let a = post(addr, &op("void"), Some("v-v1"), json!({})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"], "voided");
    assert_eq!(a.body["operation"]["kind"], "void");
    let a = post(addr, &op("void"), Some("v-v1"), json!({})).await;
    assert_eq!(
        (a.status, a.header("idempotent-replayed")),
        (200, Some("true"))
    );
    let a = post(addr, &op("void"), Some("v-v2"), json!({})).await;
    assert_eq!((a.status, a.error_code()), (409, "already_voided"));
    let a = post(addr, &op("capture"), Some("v-c"), json!({})).await;
    assert_eq!((a.status, a.error_code()), (409, "authorization_voided"));
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("voided")
    );
    let a = post(addr, &op("refund"), Some("v-r"), json!({})).await;
    assert_eq!((a.status, a.error_code()), (409, "authorization_voided"));
    let a = post(addr, &op("void"), Some("v-x"), json!({"amount_minor": 1})).await;
    assert_eq!((a.status, a.error_field()), (422, "amount_minor"));

    // Capture, then no void.
    let id = authorized(addr, 1000, "cv").await;
    let a = post(
        addr,
        &format!("/v1/authorizations/{id}/capture"),
        Some("cv-c"),
        json!({"amount_minor": 1}),
    )
    .await;
    assert_eq!(a.status, 200);
    let a = post(
        addr,
        &format!("/v1/authorizations/{id}/void"),
        Some("cv-v"),
        json!({}),
    )
    .await;
    assert_eq!((a.status, a.error_code()), (409, "already_captured"));
    // A refused operation replays as refused.
    let a = post(
        addr,
        &format!("/v1/authorizations/{id}/void"),
        Some("cv-v"),
        json!({}),
    )
    .await;
    assert_eq!(
        (a.status, a.header("idempotent-replayed")),
        (409, Some("true"))
    );

    for path in [
        "/v1/authorizations/auth_nope/capture",
        "/v1/authorizations/auth_nope/refund",
        "/v1/authorizations/auth_nope/void",
    ] {
        let a = post(addr, path, Some(&format!("nope-{path}")), json!({})).await;
        assert_eq!((a.status, a.error_code()), (404, "not_found"), "{path}");
    }
    let a = get(addr, "/v1/authorizations/auth_nope").await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn lookup_by_id_and_reference() {
    let (addr, _h) = start(Config::default()).await;
    let a = authorized(addr, 100, "one").await;
    let tok = token(addr, cards::DECLINED).await;
    let d = post(
        addr,
        "/v1/authorizations",
        Some("one-again"),
        auth_body(&tok, 100, "order-one"),
    )
    .await;
    let b = authorized(addr, 200, "two").await;
    let g = get(addr, &format!("/v1/authorizations/{a}")).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body["id"], a.as_str());
    assert_eq!(g.body["reference"], "order-one");
    let list = get(addr, "/v1/authorizations?reference=order-one").await;
    let data = list.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], a.as_str());
    assert_eq!(data[1]["id"], d.body["id"]);
    assert_eq!(data[1]["status"], "declined");
    let list = get(addr, "/v1/authorizations?reference=order-none").await;
    assert!(list.body["data"].as_array().unwrap().is_empty());
    let all = get(addr, "/v1/authorizations").await;
    let ids: Vec<&str> = all.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[2], b.as_str());
}

#[tokio::test]
async fn api_key_guards_everything_but_tokens() {
    let mut config = Config::default();
    config.set_api_key("sk_test_123");
    let (addr, _h) = start(config).await;
    let tok = token(addr, cards::SUCCESS).await; // no key needed
    let body = auth_body(&tok, 100, "order-k").to_string();
    let no_key = request(
        addr,
        "POST",
        "/v1/authorizations",
        &[("Idempotency-Key", "k1")],
        Some(&body),
    )
    .await;
    assert_eq!((no_key.status, no_key.error_code()), (401, "unauthorized"));
    let wrong = request(
        addr,
        "POST",
        "/v1/authorizations",
        &[
            ("Idempotency-Key", "k1"),
            ("Authorization", "Bearer sk_test_124"),
        ],
        Some(&body),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let auth = [
        ("Idempotency-Key", "k1"),
        ("Authorization", "Bearer sk_test_123"),
    ];
    let ok = request(addr, "POST", "/v1/authorizations", &auth, Some(&body)).await;
    assert_eq!(ok.status, 201);
    let id = ok.body["id"].as_str().unwrap();
    for path in [
        format!("/v1/authorizations/{id}"),
        "/v1/authorizations?reference=order-k".to_owned(),
    ] {
        assert_eq!(get(addr, &path).await.status, 401);
        let a = request(
            addr,
            "GET",
            &path,
            &[("Authorization", "Bearer sk_test_123")],
            None,
        )
        .await;
        assert_eq!(a.status, 200);
    }
    for op in ["capture", "refund", "void"] {
        let path = format!("/v1/authorizations/{id}/{op}");
        let a = post(addr, &path, Some("k2"), json!({})).await;
        assert_eq!(a.status, 401, "{op}");
    }
    let save = json!({"token": tok}).to_string();
    let a = request(
        addr,
        "POST",
        "/v1/customers",
        &[("Idempotency-Key", "k3")],
        Some(&save),
    )
    .await;
    assert_eq!(a.status, 401);
    let a = request(
        addr,
        "POST",
        "/v1/customers",
        &[
            ("Idempotency-Key", "k3"),
            ("Authorization", "Bearer sk_test_123"),
        ],
        Some(&save),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let path = format!("/v1/customers/{}", a.body["id"].as_str().unwrap());
    assert_eq!(get(addr, &path).await.status, 401);
    let a = request(
        addr,
        "GET",
        &path,
        &[("Authorization", "Bearer sk_test_123")],
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    let a = request(
        addr,
        "POST",
        &format!("/v1/authorizations/{id}/capture"),
        &[
            ("Idempotency-Key", "k2"),
            ("Authorization", "Bearer sk_test_123"),
        ],
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(get(addr, "/health").await.status, 200);
}

#[tokio::test]
async fn odd_input_never_breaks_it() {
    let (addr, _h) = start(Config::default()).await;
    let id = authorized(addr, 100, "odd").await;
    let bodies = [
        "",
        "null",
        "{}",
        "[]",
        "{\"amount_minor\": 9223372036854775807}",
        "{\"amount_minor\": -9223372036854775808}",
        "{\"amount_minor\": 18446744073709551615}",
        "{\"amount_minor\": \"1\"}",
        "\u{0}",
        "{\"a\":",
        "{\"number\": 1e999}",
    ];
    let paths = [
        "/v1/tokens".to_owned(),
        "/v1/authorizations".to_owned(),
        format!("/v1/authorizations/{id}/capture"),
        format!("/v1/authorizations/{id}/refund"),
        format!("/v1/authorizations/{id}/void"),
        "/v1/authorizations/%00%ff/capture".to_owned(),
        "/v1/customers".to_owned(),
    ];
    for path in &paths {
        for (i, body) in bodies.iter().enumerate() {
            let key = format!("odd-{i}-{}", path.len());
            let a = request(addr, "POST", path, &[("Idempotency-Key", &key)], Some(body)).await;
            assert!(
                matches!(a.status, 200 | 201 | 400 | 404 | 409 | 422),
                "{path} {body:?}: {} {}",
                a.status,
                a.body
            );
        }
    }
    // Still serving, and the authorization's arithmetic still holds.
    assert_eq!(get(addr, "/v1/customers/%00%ff").await.status, 404);
    let g = get(addr, &format!("/v1/authorizations/{id}")).await;
    assert_eq!(g.status, 200);
    let captured = g.body["captured_minor"].as_i64().unwrap();
    let refunded = g.body["refunded_minor"].as_i64().unwrap();
    assert!((0..=100).contains(&captured) && (0..=captured).contains(&refunded));
}

#[tokio::test]
async fn the_binary_prints_its_address_first() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox-processor"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--timeout-secs",
            "2",
            "--api-key",
            "k",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run the binary");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .parse()
        .unwrap();
    assert_eq!(get(addr, "/health").await.status, 200);
    assert_eq!(get(addr, "/v1/authorizations").await.status, 401);
    child.kill().await.unwrap();

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandbox-processor"))
        .args(["--bogus"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_authorize_once() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::SUCCESS).await;
    let body = auth_body(&tok, 1234, "order-race");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move { post(addr, "/v1/authorizations", Some("race"), body).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let a = task.await.unwrap();
        assert_eq!(a.status, 201, "{}", a.body);
        ids.insert(a.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    let list = get(addr, "/v1/authorizations?reference=order-race").await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_captures_never_exceed_the_authorization() {
    let (addr, _h) = start(Config::default()).await;
    let id = authorized(addr, 10_000, "race-cap").await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let path = format!("/v1/authorizations/{id}/capture");
            tokio::spawn(async move {
                post(
                    addr,
                    &path,
                    Some(&format!("race-cap-{i}")),
                    json!({"amount_minor": 1000}),
                )
                .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10);
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 10);
    let g = get(addr, &format!("/v1/authorizations/{id}")).await;
    assert_eq!(g.body["captured_minor"], 10_000);
    assert_eq!(g.body["operations"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn customer_saved_and_charged_off_session_twice() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::SUCCESS).await;
    let a = post(
        addr,
        "/v1/customers",
        Some("cus-1"),
        json!({"token": tok, "reference": "subscription-9"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let c = &a.body;
    let id = c["id"].as_str().unwrap();
    assert!(id.starts_with("cus_"));
    assert_eq!(c["object"], "customer");
    assert_eq!(c["reference"], "subscription-9");
    assert_eq!(
        c["payment_method"],
        json!({"brand": "visa", "last4": "4242"})
    );
    assert!(c["created_at"].as_u64().unwrap() > 1_700_000_000);
    assert!(a.body.get("token").is_none());

    for (i, key) in ["renew-1", "renew-2"].into_iter().enumerate() {
        let a = post(
            addr,
            "/v1/authorizations",
            Some(key),
            customer_body(id, 999, &format!("renewal-{i}"), true),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.body);
        assert_eq!(a.body["status"], "authorized");
        assert_eq!(a.body["customer"], id);
        assert_eq!(a.body["off_session"], true);
        assert_eq!(a.body["decline_type"], Value::Null);
        assert_eq!(a.body["card"]["last4"], "4242");
        let auth = a.body["id"].as_str().unwrap();
        let cap = post(
            addr,
            &format!("/v1/authorizations/{auth}/capture"),
            Some(&format!("{key}-capture")),
            json!({}),
        )
        .await;
        assert_eq!(cap.status, 200, "{}", cap.body);
        assert_eq!(cap.body["customer"], id);
    }
    // The token keeps working on its own, and a customer needs no reference.
    let a = post(
        addr,
        "/v1/authorizations",
        Some("by-token"),
        auth_body(&tok, 100, "one-off"),
    )
    .await;
    assert_eq!(a.body["status"], "authorized");
    let a = post(addr, "/v1/customers", Some("cus-2"), json!({"token": tok})).await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["reference"], Value::Null);
    // Any tokenized card can be saved; charging it behaves like the card.
    let declined = token(addr, cards::DECLINED).await;
    let cus = customer(addr, &declined, "cus-declined").await;
    let a = post(
        addr,
        "/v1/authorizations",
        Some("charge-declined"),
        customer_body(&cus, 100, "renewal-x", true),
    )
    .await;
    assert_eq!(a.body["status"], "declined");
    assert_eq!(a.body["decline_type"], "soft");
    let list = get(addr, "/v1/authorizations?reference=renewal-1").await;
    let data = list.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["customer"], id);
}

#[tokio::test]
async fn get_customer_and_unknown_customer() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::SUCCESS_MASTERCARD).await;
    let a = post(
        addr,
        "/v1/customers",
        Some("cus-get"),
        json!({"token": tok, "reference": "user-12"}),
    )
    .await;
    let id = a.body["id"].as_str().unwrap();
    let g = get(addr, &format!("/v1/customers/{id}")).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, a.body);
    assert_eq!(g.body["payment_method"]["brand"], "mastercard");
    assert_eq!(g.body["payment_method"]["last4"], "4444");
    let g = get(addr, "/v1/customers/cus_nope").await;
    assert_eq!((g.status, g.error_code()), (404, "not_found"));
}

#[tokio::test]
async fn customers_idempotency_and_field_errors() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::SUCCESS).await;
    let body = json!({"token": tok, "reference": "user-1"});
    let first = post(addr, "/v1/customers", Some("save-1"), body.clone()).await;
    assert_eq!(first.status, 201);
    assert!(first.header("idempotent-replayed").is_none());
    let again = post(addr, "/v1/customers", Some("save-1"), body).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // Same key, another body: conflict, nothing saved.
    let other = post(
        addr,
        "/v1/customers",
        Some("save-1"),
        json!({"token": tok, "reference": "user-2"}),
    )
    .await;
    assert_eq!(other.status, 409);
    assert_eq!(other.error_code(), "idempotency_key_reused");
    // Keys are global: an authorization's key cannot save a customer.
    let a = post(
        addr,
        "/v1/authorizations",
        Some("auth-key"),
        auth_body(&tok, 100, "o"),
    )
    .await;
    assert_eq!(a.status, 201);
    let other = post(
        addr,
        "/v1/customers",
        Some("auth-key"),
        json!({"token": tok}),
    )
    .await;
    assert_eq!(other.error_code(), "idempotency_key_reused");
    let a = post(addr, "/v1/customers", None, json!({"token": tok})).await;
    assert_eq!((a.status, a.error_field()), (400, "Idempotency-Key"));

    let cases = [
        (json!({}), "token"),
        (json!({"token": "tok_nope"}), "token"),
        (json!({"token": true}), "token"),
        (json!({"token": tok, "reference": ""}), "reference"),
        (json!({"token": tok, "reference": "a\nb"}), "reference"),
        (
            json!({"token": tok, "reference": "r".repeat(201)}),
            "reference",
        ),
        (json!({"token": tok, "reference": ["x"]}), "reference"),
        (json!({"token": tok, "email": "a@b.example"}), "email"),
    ];
    for (i, (body, field)) in cases.into_iter().enumerate() {
        let a = post(
            addr,
            "/v1/customers",
            Some(&format!("bad-{i}")),
            body.clone(),
        )
        .await;
        assert_eq!(a.status, 422, "{body}: {}", a.body);
        assert_eq!(a.error_code(), "invalid_request", "{body}");
        assert_eq!(a.error_field(), field, "{body}: {}", a.body);
    }
    // A refused request is not remembered: the key works once the body is right.
    let a = post(addr, "/v1/customers", Some("bad-1"), json!({"token": tok})).await;
    assert_eq!(a.status, 201);
    let a = post(
        addr,
        "/v1/customers",
        Some("save-200"),
        json!({"token": tok, "reference": "r".repeat(200)}),
    )
    .await;
    assert_eq!(a.status, 201);
}

#[tokio::test]
async fn authorize_needs_exactly_one_of_token_or_customer() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::SUCCESS).await;
    let cus = customer(addr, &tok, "cus").await;
    let cases = [
        (
            json!({"token": tok, "customer": cus, "amount_minor": 100, "currency": "EUR", "reference": "o"}),
            "token",
        ),
        (
            json!({"amount_minor": 100, "currency": "EUR", "reference": "o", "off_session": true}),
            "token",
        ),
        (
            json!({"token": null, "customer": null, "amount_minor": 100, "currency": "EUR", "reference": "o"}),
            "token",
        ),
        (customer_body("cus_nope", 100, "o", true), "customer"),
        (
            json!({"customer": true, "amount_minor": 100, "currency": "EUR", "reference": "o"}),
            "customer",
        ),
        (
            json!({"customer": cus, "amount_minor": 100, "currency": "EUR", "reference": "o", "off_session": "yes"}),
            "off_session",
        ),
        (
            json!({"customer": cus, "amount_minor": 0, "currency": "EUR", "reference": "o"}),
            "amount_minor",
        ),
    ];
    for (i, (body, field)) in cases.into_iter().enumerate() {
        let a = post(
            addr,
            "/v1/authorizations",
            Some(&format!("one-{i}")),
            body.clone(),
        )
        .await;
        assert_eq!(a.status, 422, "{body}: {}", a.body);
        assert_eq!(a.error_code(), "invalid_request", "{body}");
        assert_eq!(a.error_field(), field, "{body}: {}", a.body);
    }
    let list = get(addr, "/v1/authorizations").await;
    assert!(list.body["data"].as_array().unwrap().is_empty());
    // `off_session` defaults to false for a customer too.
    let a = post(
        addr,
        "/v1/authorizations",
        Some("one-0"),
        json!({"customer": cus, "amount_minor": 100, "currency": "EUR", "reference": "o"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["off_session"], false);
    assert_eq!(a.body["customer"], cus.as_str());
}

#[tokio::test]
async fn declines_later_card_approves_first_then_declines_soft() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::DECLINES_LATER).await;
    let first_body = auth_body(&tok, 1999, "sub-1");
    let first = post(addr, "/v1/authorizations", Some("dl-1"), first_body.clone()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["status"], "authorized");
    assert_eq!(first.body["decline_type"], Value::Null);
    let cus = customer(addr, &tok, "dl-cus").await;
    let second = post(
        addr,
        "/v1/authorizations",
        Some("dl-2"),
        customer_body(&cus, 1999, "sub-2", true),
    )
    .await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.body["status"], "declined");
    assert_eq!(second.body["decline_reason"], "insufficient_funds");
    assert_eq!(second.body["decline_type"], "soft");
    assert_eq!(
        second.body["decline_message"],
        "The card has insufficient funds."
    );
    assert_eq!(second.body["customer"], cus.as_str());
    // Replays never count: the first stays approved, the second declined.
    let replay = post(addr, "/v1/authorizations", Some("dl-1"), first_body).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.body["status"], "authorized");
    let replay = post(
        addr,
        "/v1/authorizations",
        Some("dl-2"),
        customer_body(&cus, 1999, "sub-2", true),
    )
    .await;
    assert_eq!(replay.body, second.body);
    // Through the token again: still declined (it is the same card entry).
    let third = post(
        addr,
        "/v1/authorizations",
        Some("dl-3"),
        auth_body(&tok, 1999, "sub-3"),
    )
    .await;
    assert_eq!(third.body["decline_reason"], "insufficient_funds");
    // A new token of the same number is a new card entry: approved once again.
    let fresh = token(addr, cards::DECLINES_LATER).await;
    let a = post(
        addr,
        "/v1/authorizations",
        Some("dl-4"),
        auth_body(&fresh, 1999, "sub-4"),
    )
    .await;
    assert_eq!(a.body["status"], "authorized");
}

#[tokio::test]
async fn declines_later_hard_card_declines_lost_card_after_the_first() {
    let (addr, _h) = start(Config::default()).await;
    let tok = token(addr, cards::DECLINES_LATER_HARD).await;
    // The first charge may go through a customer as well.
    let cus = customer(addr, &tok, "dlh-cus").await;
    let first = post(
        addr,
        "/v1/authorizations",
        Some("dlh-1"),
        customer_body(&cus, 500, "sub-1", false),
    )
    .await;
    assert_eq!(first.body["status"], "authorized", "{}", first.body);
    let second = post(
        addr,
        "/v1/authorizations",
        Some("dlh-2"),
        customer_body(&cus, 500, "sub-2", true),
    )
    .await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.body["status"], "declined");
    assert_eq!(second.body["decline_reason"], "lost_card");
    assert_eq!(second.body["decline_type"], "hard");
    assert_eq!(
        second.body["decline_message"],
        "The card was reported lost."
    );
    let third = post(
        addr,
        "/v1/authorizations",
        Some("dlh-3"),
        auth_body(&tok, 500, "sub-3"),
    )
    .await;
    assert_eq!(third.body["decline_reason"], "lost_card");
}

#[tokio::test]
async fn lost_and_stolen_cards_decline_hard_at_once() {
    let (addr, _h) = start(Config::default()).await;
    for (number, reason, message) in [
        (cards::LOST_CARD, "lost_card", "The card was reported lost."),
        (
            cards::STOLEN_CARD,
            "stolen_card",
            "The card was reported stolen.",
        ),
    ] {
        let tok = token(addr, number).await;
        let a = post(
            addr,
            "/v1/authorizations",
            Some(&format!("{reason}-1")),
            auth_body(&tok, 100, reason),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.body);
        assert_eq!(a.body["status"], "declined");
        assert_eq!(a.body["decline_reason"], reason);
        assert_eq!(a.body["decline_type"], "hard");
        assert_eq!(a.body["decline_message"], message);
        // Saving it works; charging the customer is declined the same way.
        let cus = customer(addr, &tok, &format!("{reason}-cus")).await;
        let a = post(
            addr,
            "/v1/authorizations",
            Some(&format!("{reason}-2")),
            customer_body(&cus, 100, reason, true),
        )
        .await;
        assert_eq!(a.body["decline_reason"], reason);
        assert_eq!(a.body["decline_type"], "hard");
    }
}
