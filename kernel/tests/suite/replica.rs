//! A real streaming replica (`scripts/pg-replica` starts a private primary and hot
//! standby beside the machine's own PostgreSQL): catalog reads are answered by the
//! standby; a replica that has not replayed an edit this node has seen is skipped, so
//! shoppers never see the catalog go back in time; carts, orders and accounts read the
//! primary, so replica lag never shows a shopper something older than they just wrote.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use sqlx::Row;

/// Starts (or finds running) the replica pair; answers (primary URL, standby URL).
fn replica_pair() -> (String, String) {
    let out = Command::new(repo_root().join("scripts/pg-replica"))
        .arg("start")
        .output()
        .expect("scripts/pg-replica runs");
    assert!(
        out.status.success(),
        "scripts/pg-replica start failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing from: {stdout}"))
            .trim()
            .to_owned()
    };
    (
        url("OLIVINE_TEST_REPLICA_PRIMARY_URL"),
        url("OLIVINE_TEST_REPLICA_STANDBY_URL"),
    )
}

async fn name_on(db: &olivine::store::Db, slug: &str) -> Option<String> {
    sqlx::query("SELECT name FROM products WHERE slug = $1")
        .bind(slug)
        .fetch_optional(&db.pool)
        .await
        .ok()
        .flatten()
        .map(|r| r.try_get(0).unwrap())
}

async fn product_name(app: &TestApp) -> String {
    let r = app.get("/api/v1/products/mag").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["name"].as_str().unwrap().to_owned()
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> TestResponse {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    app.send(
        builder
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_reads_come_from_the_replica_and_writes_are_read_back_from_the_primary() {
    let (primary_url, standby_url) = replica_pair();
    let db = TestDb::on_server(Backend::Postgres, &primary_url).await;
    let replica_url = db.url_on(&standby_url).expect("a schema");
    let app = TestApp::start_on(
        db,
        {
            let replica_url = replica_url.clone();
            move |c| c.cluster.database_read_url = Some(replica_url)
        },
        Extensions::default(),
    )
    .await;
    let standby = olivine::store::Db::connect(&replica_url, 2).await.unwrap();
    // An earlier run that failed half-way may have left replay paused.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&standby.pool)
        .await
        .unwrap();
    let primary = app.kernel.state.db.clone();

    basic_setup(&app).await;
    let r = app
        .admin_post("/api/v1/admin/products", &supplement("mag", "MAG"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let lot = app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-60", "location": "AMS-1",
        "batch": "B1", "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": 50})).await;
    assert_eq!(lot.status, StatusCode::CREATED, "{}", lot.text());
    let r = app.admin_send(Method::PUT, "/api/v1/admin/shipping-rates", &json!([
        {"code": "standard", "name": "Standard", "country": "*", "max_weight_grams": 5000, "price_minor": 495, "currency": "EUR"}])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.settle().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while name_on(&standby, "mag").await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the standby never replayed the product"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let replica_reads = r#"olivine_db_replica_reads_total{outcome="replica"}"#;
    let primary_reads = r#"olivine_db_replica_reads_total{outcome="primary"}"#;
    let before = app.metric(replica_reads).await;
    app.kernel.state.cache.invalidate_all();
    assert_eq!(product_name(&app).await, "Test Magnesium");
    assert!(
        app.metric(replica_reads).await > before,
        "the read went to the replica"
    );

    // Freeze the standby, and change the product on the primary behind the bus's back
    // (no event, so nothing tells the kernel): the catalog answer now comes from the
    // standby's copy, which proves where catalog reads go.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&standby.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE products SET name = 'Changed behind the bus' WHERE id = $1")
        .bind(id)
        .execute(&primary.pool)
        .await
        .unwrap();
    app.kernel.state.cache.invalidate_all();
    assert_eq!(
        product_name(&app).await,
        "Test Magnesium",
        "answered from the standby"
    );
    assert_eq!(
        name_on(&primary, "mag").await.as_deref(),
        Some("Changed behind the bus")
    );

    // An edit through the kernel is an event: its node will not read a replica older
    // than that, so the shopper sees the edit at once, from the primary.
    let version = app
        .admin_get(&format!("/api/v1/admin/products/{id}"))
        .await
        .json()["version"]
        .clone();
    let r = app
        .admin_patch(
            &format!("/api/v1/admin/products/{id}"),
            &json!({"name": "Magnesium Glycinate", "version": version}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.settle().await;
    let before = app.metric(primary_reads).await;
    assert_eq!(product_name(&app).await, "Magnesium Glycinate");
    assert!(
        app.metric(primary_reads).await > before,
        "the stale replica was skipped"
    );
    assert_eq!(
        name_on(&standby, "mag").await.as_deref(),
        Some("Test Magnesium"),
        "the standby is still frozen"
    );

    // With the standby frozen, a shopper's own writes read back at once: account, cart,
    // checkout, their order.
    let token = app.customer_token("ada@example.com").await;
    let cart = send(&app, Method::POST, "/api/v1/carts", &token, None, None).await;
    assert_eq!(cart.status, StatusCode::CREATED, "{}", cart.text());
    let cart = cart.json()["id"].as_str().unwrap().to_owned();
    let r = send(
        &app,
        Method::POST,
        &format!("/api/v1/carts/{cart}/lines"),
        &token,
        Some(json!({"sku": "MAG-60", "quantity": 2})),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = send(
        &app,
        Method::GET,
        &format!("/api/v1/carts/{cart}"),
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(r.json()["lines"][0]["quantity"], 2, "{}", r.text());
    let body = json!({"email": "ada@example.com", "shipping_method": "standard",
        "shipping_address": {"name": "Ada", "line1": "Keizersgracht 1", "city": "Amsterdam", "postal_code": "1015 AA", "country": "nl"}});
    let order = send(
        &app,
        Method::POST,
        &format!("/api/v1/carts/{cart}/checkout"),
        &token,
        Some(body),
        Some("replica-1"),
    )
    .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.text());
    let number = order.json()["number"].as_str().unwrap().to_owned();
    let orders = send(
        &app,
        Method::GET,
        "/api/v1/account/orders",
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(orders.status, StatusCode::OK, "{}", orders.text());
    assert!(orders.text().contains(&number), "{}", orders.text());
    let missing: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM orders")
        .fetch_one(&standby.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(
        missing, 0,
        "the standby has not seen the order: it was read from the primary"
    );

    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&standby.pool)
        .await
        .unwrap();
    standby.close().await;
    app.stop().await;
}
