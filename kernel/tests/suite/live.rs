//! Live updates over the WebSocket at `/api/v1/live` (docs/LIVE.md): a customer hears of
//! their order's status changes, and of nothing of anyone else's; a reconnect with
//! `last_position` gets what it missed from the log first (or a resync when the log no
//! longer has it); a public `product:<slug>` topic hears of stock changes; an expired
//! token closes the socket with 4001; a bad token is refused before the upgrade. Against
//! a real server on a local port; every wait is on the socket, with a timeout.

use std::time::Duration;

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for one message.
const WAIT: Duration = Duration::from_secs(15);

/// Serves the test kernel's router on a local port; answers `127.0.0.1:port`.
async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let router = app.router.clone();
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let _ = axum::serve(listener, service).await;
    });
    addr
}

/// Opens the socket with these request headers; the refused handshake's status.
async fn open(addr: &str, query: &str, headers: &[(&str, &str)]) -> Result<Socket, StatusCode> {
    let mut request = format!("ws://{addr}/api/v1/live{query}")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            Err(StatusCode::from_u16(response.status().as_u16()).unwrap())
        }
        Ok(Err(err)) => panic!("connecting: {err}"),
        Err(_) => panic!("connecting took longer than {WAIT:?}"),
    }
}

/// Opens a customer's socket (bearer token) and reads its `ready`.
async fn open_as(addr: &str, token: &str) -> (Socket, Value) {
    let bearer = format!("Bearer {token}");
    let mut socket = open(addr, "", &[("authorization", &bearer)])
        .await
        .expect("upgrade");
    let ready = next(&mut socket).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(ready["customer"], true, "{ready}");
    (socket, ready)
}

/// The next frame that is not a ping or pong.
async fn frame(socket: &mut Socket) -> Message {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no message within {WAIT:?}"))
            .expect("the socket is open")
            .expect("a frame");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// The next JSON message.
async fn next(socket: &mut Socket) -> Value {
    match frame(socket).await {
        Message::Text(text) => serde_json::from_str(text.as_str()).expect("JSON"),
        other => panic!("expected a JSON message, got {other:?}"),
    }
}

async fn say(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// Asks the server for a pong and answers every message before it: what the hub had
/// queued for the socket comes before the answer (docs/LIVE.md).
async fn before_pong(socket: &mut Socket, n: i64) -> Vec<Value> {
    say(socket, json!({"ping": n})).await;
    let mut before = Vec::new();
    loop {
        let message = next(socket).await;
        if message == json!({"type": "pong", "ping": n}) {
            return before;
        }
        before.push(message);
    }
}

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

/// MAG-60 with 10 in stock, ZINC-60 with none; shipping and tax to NL.
async fn store(app: &TestApp) {
    basic_setup(app).await;
    for (slug, prefix) in [("mag", "MAG"), ("zinc", "ZINC")] {
        let r = app
            .admin_post("/api/v1/admin/products", &supplement(slug, prefix))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    receive(app, "MAG-60", 10).await;
    let r = app.admin_send(Method::PUT, "/api/v1/admin/shipping-rates", &json!([
        {"code": "standard", "name": "Standard", "country": "*", "max_weight_grams": 2000, "price_minor": 495, "currency": "EUR"}
    ])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app
        .admin_send(
            Method::PUT,
            "/api/v1/admin/tax-rates",
            &json!([{"country": "NL", "rate_bp": 2100}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

async fn receive(app: &TestApp, sku: &str, quantity: i64) {
    let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": sku, "location": "AMS-1",
        "batch": format!("B-{sku}"), "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": quantity})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

/// A customer's order of one MAG-60 (pending); answers its number.
async fn order(app: &TestApp, token: &str, key: &str) -> String {
    let r = send(app, Method::POST, "/api/v1/carts", Some(token), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let cart = r.json()["id"].as_str().unwrap().to_owned();
    let r = send(
        app,
        Method::POST,
        &format!("/api/v1/carts/{cart}/lines"),
        Some(token),
        Some(json!({"sku": "MAG-60", "quantity": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/carts/{cart}/checkout"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("idempotency-key", key)
        .body(Body::from(json!({"email": "buyer@example.com", "shipping_method": "standard",
            "shipping_address": {"name": "Ada Buyer", "line1": "Keizersgracht 1", "city": "Amsterdam",
                "postal_code": "1015 AA", "country": "nl"}}).to_string()))
        .unwrap();
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["number"].as_str().unwrap().to_owned()
}

async fn transition(app: &TestApp, number: &str, body: Value) {
    let r = app
        .admin_post(&format!("/api/v1/admin/orders/{number}/transitions"), &body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// The next message about an order, skipping others (e.g. `order.placed` of the setup).
async fn order_message(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = next(socket).await;
        if message["type"] == kind {
            return message;
        }
        assert!(
            message["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("order.")),
            "{message}"
        );
    }
}

both_backends! {
    async fn a_customer_hears_of_their_orders_resumes_where_they_left_and_hears_nothing_of_others(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app).await;
        let ada = app.customer_token("ada@example.com").await;
        let bob = app.customer_token("bob@example.com").await;
        let number = order(&app, &ada, "live-1").await;
        app.settle().await;
        let addr = serve(&app).await;

        let (mut ada_socket, ready) = open_as(&addr, &ada).await;
        assert!(ready["position"].as_i64().unwrap() >= 0, "{ready}");
        let (mut bob_socket, _) = open_as(&addr, &bob).await;

        // A status change through the admin API reaches the customer's socket.
        transition(&app, &number, json!({"to": "paid"})).await;
        let paid = order_message(&mut ada_socket, "order.paid").await;
        assert_eq!(paid["order"], number.as_str(), "{paid}");
        assert_eq!(paid["status"], "paid", "{paid}");
        assert!(paid["id"].as_i64().is_some(), "{paid}");
        let paid_at = paid["position"].as_i64().expect("a position");
        // The other customer's socket got nothing of it (it would be queued before the pong).
        assert_eq!(before_pong(&mut bob_socket, 1).await, Vec::<Value>::new());

        // Away while the order ships: back with `last_position` (the token in the query,
        // as a browser sends it), the missed change comes first, read from the log.
        ada_socket.close(None).await.unwrap();
        drop(ada_socket);
        transition(&app, &number, json!({"to": "fulfilled", "tracking_number": "TRACK-1"})).await;
        app.settle().await;
        let query = format!("?access_token={ada}&last_position={paid_at}");
        let mut ada_socket = open(&addr, &query, &[]).await.expect("upgrade");
        let missed = next(&mut ada_socket).await;
        assert_eq!(missed["type"], "order.fulfilled", "{missed}");
        assert_eq!(missed["status"], "fulfilled", "{missed}");
        assert_eq!(missed["order"], number.as_str(), "{missed}");
        let shipped_at = missed["position"].as_i64().unwrap();
        assert!(shipped_at > paid_at, "{missed}");
        let ready = next(&mut ada_socket).await;
        assert_eq!(ready["type"], "ready", "{ready}");
        assert!(ready["position"].as_i64().unwrap() >= shipped_at, "{ready}");
        // Nothing twice: the live copy of what was replayed is skipped.
        assert_eq!(before_pong(&mut ada_socket, 2).await, Vec::<Value>::new());
        // And the next change comes live.
        transition(&app, &number, json!({"to": "delivered"})).await;
        let delivered = order_message(&mut ada_socket, "order.delivered").await;
        assert_eq!(delivered["status"], "delivered", "{delivered}");
        assert_eq!(before_pong(&mut bob_socket, 3).await, Vec::<Value>::new());

        // Once the log no longer has what came after `last_position` (pruned past its
        // retention), the client is told to re-read everything.
        app.settle().await;
        sqlx::query("DELETE FROM outbox WHERE position <= $1")
            .bind(shipped_at)
            .execute(&app.kernel.state.db.pool)
            .await
            .unwrap();
        let query = format!("?access_token={ada}&last_position={paid_at}");
        let mut late = open(&addr, &query, &[]).await.expect("upgrade");
        assert_eq!(next(&mut late).await, json!({"type": "resync"}));
        assert_eq!(next(&mut late).await["type"], "ready");
        app.stop().await;
    }

    async fn points_changes_reach_their_customer_live_and_on_resume(backend: Backend) {
        let app = TestApp::start(backend).await;
        let ada = app.customer_token("ada@example.com").await;
        let bob = app.customer_token("bob@example.com").await;
        let addr = serve(&app).await;
        let state = &app.kernel.state;
        let pseudonym = olivine::accounts::decode_access_token(&state.keys, &ada).unwrap().sub;
        let ada_id: i64 = sqlx::query_scalar("SELECT id FROM customers WHERE pseudonym = $1")
            .bind(&pseudonym).fetch_one(&state.db.pool).await.unwrap();
        // What the loyalty engine records when a rule credits points.
        let credit = async |points: i64| {
            let mut tx = state.db.begin().await.unwrap();
            olivine::bus::record(&mut tx, "customer", ada_id, "loyalty.points_earned",
                &json!({"customer": ada_id, "points": points, "reason": "a test"})).await.unwrap();
            tx.commit().await.unwrap();
            state.bus.notify();
        };
        let (mut ada_socket, _) = open_as(&addr, &ada).await;
        let (mut bob_socket, _) = open_as(&addr, &bob).await;
        credit(120).await;
        let earned = next(&mut ada_socket).await;
        assert_eq!((earned["type"].as_str(), earned["points"].as_i64()), (Some("loyalty.points_earned"), Some(120)), "{earned}");
        assert_eq!(before_pong(&mut bob_socket, 1).await, Vec::<Value>::new());

        let seen = earned["position"].as_i64().unwrap();
        drop(ada_socket);
        credit(30).await;
        app.settle().await;
        let query = format!("?access_token={ada}&last_position={seen}");
        let mut ada_socket = open(&addr, &query, &[]).await.expect("upgrade");
        let missed = next(&mut ada_socket).await;
        assert_eq!((missed["type"].as_str(), missed["points"].as_i64()), (Some("loyalty.points_earned"), Some(30)), "{missed}");
        assert_eq!(next(&mut ada_socket).await["type"], "ready");
        app.stop().await;
    }

    async fn a_public_topic_hears_of_stock_changes(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app).await;
        app.settle().await;
        let addr = serve(&app).await;
        let mut socket = open(&addr, "", &[]).await.expect("a public socket");
        let ready = next(&mut socket).await;
        assert_eq!((ready["type"].as_str(), ready["customer"].as_bool()), (Some("ready"), Some(false)), "{ready}");

        say(&mut socket, json!({"subscribe": "product:zinc"})).await;
        assert_eq!(next(&mut socket).await,
            json!({"type": "subscribed", "topic": "product:zinc", "product": "zinc", "in_stock": false}));
        say(&mut socket, json!({"subscribe": "product:mag"})).await;
        assert_eq!(next(&mut socket).await["in_stock"], true);
        say(&mut socket, json!({"subscribe": "product:nothing-here"})).await;
        assert_eq!(next(&mut socket).await["type"], "error");
        say(&mut socket, json!({"subscribe": "orders:everyone"})).await;
        assert_eq!(next(&mut socket).await["type"], "error");

        // Zinc comes in: its watchers are told.
        receive(&app, "ZINC-60", 5).await;
        assert_eq!(next(&mut socket).await, json!({"type": "stock", "product": "zinc", "in_stock": true}));
        // More magnesium changes nothing about whether it is in stock: no message.
        receive(&app, "MAG-120", 3).await;
        app.settle().await;
        assert_eq!(before_pong(&mut socket, 1).await, Vec::<Value>::new());
        // Unsubscribed: no more messages of it.
        say(&mut socket, json!({"unsubscribe": "product:zinc"})).await;
        assert_eq!(next(&mut socket).await["type"], "unsubscribed");
        assert!(!app.kernel.state.live.has_topic("product:zinc"));
        app.stop().await;
    }

    async fn tokens_are_checked_before_the_upgrade_and_on_the_kernels_clock_after(backend: Backend) {
        let app = TestApp::start(backend).await;
        let ada = app.customer_token("ada@example.com").await;
        let addr = serve(&app).await;

        // Bad tokens are refused before the upgrade, wherever they come.
        assert_eq!(open(&addr, "", &[("authorization", "Bearer not-a-token")]).await.err(), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(open(&addr, "?access_token=not-a-token", &[]).await.err(), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(open(&addr, "", &[("cookie", "olv_access=not-a-token"), ("origin", &format!("http://{addr}"))]).await.err(),
            Some(StatusCode::UNAUTHORIZED));
        // The session cookie counts from this shop's own pages only.
        let cookie = format!("olv_access={ada}");
        assert_eq!(open(&addr, "", &[("cookie", &cookie), ("origin", "http://evil.example")]).await.err(),
            Some(StatusCode::FORBIDDEN));
        assert_eq!(open(&addr, "", &[("cookie", &cookie)]).await.err(), Some(StatusCode::FORBIDDEN));
        let mut from_the_shop = open(&addr, "", &[("cookie", &cookie), ("origin", &format!("http://{addr}"))]).await
            .expect("the shop's own page");
        assert_eq!(next(&mut from_the_shop).await["customer"], true);
        // Not a WebSocket request: said so, in the API's error shape.
        let r = app.request(Method::GET, "/api/v1/live", Some(&ada), None, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.json()["error"], "bad_request", "{}", r.text());

        // The token expires on the kernel's clock: the open socket is closed with 4001,
        // and the token no longer opens one.
        let (mut socket, _) = open_as(&addr, &ada).await;
        app.kernel.state.clock.advance(Duration::from_secs(olivine::accounts::ACCESS_TTL_SECS as u64 + 60));
        match frame(&mut socket).await {
            Message::Close(Some(close)) => {
                assert_eq!(u16::from(close.code), 4001, "{close:?}");
                assert_eq!(close.reason.as_str(), "token expired");
            }
            other => panic!("expected the close frame, got {other:?}"),
        }
        assert_eq!(open(&addr, "", &[("authorization", &format!("Bearer {ada}"))]).await.err(),
            Some(StatusCode::UNAUTHORIZED));
        app.stop().await;
    }

    async fn the_order_page_carries_the_live_script_and_works_without_it(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app).await;
        let ada = app.customer_token("ada@example.com").await;
        let number = order(&app, &ada, "live-page").await;
        let request = Request::builder()
            .uri(format!("/account/orders/{number}"))
            .header(header::COOKIE, format!("olv_access={ada}"))
            .body(Body::empty())
            .unwrap();
        let page = app.send(request).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        crate::security_headers::assert_page_headers("/account/orders/{number}", &page);
        let html = page.text();
        // The status as of now, without any script.
        assert!(html.contains(r#"data-status="pending""#), "{html}");
        assert!(html.contains(&format!(r#"data-live-order="{number}""#)), "{html}");
        // Where the script resumes from: a change after the page was read is heard of.
        assert!(html.contains("data-live-position=\""), "{html}");
        let script = olivine::http::security::live_script();
        assert!(html.contains(&format!(r#"<script src="{}" integrity="{}" defer>"#, script.path, script.integrity)), "{html}");
        let served = app.get(script.path).await;
        assert_eq!(served.status, StatusCode::OK);
        assert_eq!(served.text(), script.body);
        assert!(script.body.contains("/api/v1/live"));
        // The page's CSP lets the script reach the socket on this host ('self').
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        app.stop().await;
    }
}
