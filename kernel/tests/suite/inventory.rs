//! Stock lots: sellable quantities, minimum shelf life, first-expired-first-out, the
//! ledger, bundles, and no oversell under concurrency.

use crate::common::*;
use axum::http::StatusCode;
use olivine::inventory::{StockChange, StockReason};
use serde_json::{Value, json};

async fn receive(app: &TestApp, sku: &str, batch: &str, expires_in: i64, quantity: i64) -> i64 {
    let r = app
        .admin_post(
            "/api/v1/admin/lots",
            &json!({"sku": sku, "location": "AMS-1", "batch": batch,
                    "manufactured_on": date_in((-400i64).min(expires_in - 1)), "expires_on": date_in(expires_in),
                    "quantity": quantity}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_i64().unwrap()
}

async fn availability(app: &TestApp, slug: &str, sku: &str) -> Value {
    app.settle().await;
    let product = app.get(&format!("/api/v1/products/{slug}")).await.json();
    product["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["sku"] == sku)
        .unwrap()["availability"]
        .clone()
}

both_backends! {
    async fn sellable_stock_honours_expiry_and_shelf_life(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        let a = availability(&app, "mag", "MAG-60").await;
        assert_eq!(a["state"], "out_of_stock");

        receive(&app, "MAG-60", "EXPIRED", -5, 100).await;     // expired
        receive(&app, "MAG-60", "SOON", 30, 50).await;         // inside the 60-day minimum
        receive(&app, "MAG-60", "LATER", 400, 7).await;
        receive(&app, "MAG-60", "GOOD", 200, 3).await;
        let a = availability(&app, "mag", "MAG-60").await;
        assert_eq!(a["sellable_quantity"], 10);
        assert_eq!(a["state"], "in_stock");
        assert_eq!(a["best_before"], json!(date_in(200)));

        // The merchant lowers the minimum shelf life: the 30-day lot becomes sellable
        // and ships first.
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"min_shelf_life_days": 14})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let a = availability(&app, "mag", "MAG-60").await;
        assert_eq!(a["sellable_quantity"], 60);
        assert_eq!(a["best_before"], json!(date_in(30)));

        // Low stock threshold.
        app.admin_patch("/api/v1/admin/settings", &json!({"min_shelf_life_days": 60, "low_stock_threshold": 10})).await;
        assert_eq!(availability(&app, "mag", "MAG-60").await["state"], "low_stock");

        // The lot listing says which lots count.
        let lots = app.admin_get("/api/v1/admin/lots?sku=MAG-60").await.json();
        let sellable: Vec<_> = lots.as_array().unwrap().iter().filter(|l| l["sellable"] == true).map(|l| l["batch"].clone()).collect();
        assert_eq!(sellable, vec![json!("GOOD"), json!("LATER")]);
        app.stop().await;
    }

    async fn adjustments_go_through_the_ledger(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        let lot = receive(&app, "MAG-60", "B1", 300, 20).await;
        let r = app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &json!({"delta": -3, "reason": "damaged", "note": "crushed box"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["quantity"], 17);
        // Below zero is refused and changes nothing.
        app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &json!({"delta": -18, "reason": "count_correction"})).await.assert_field_error(409, "delta");
        app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &json!({"delta": 0, "reason": "count_correction"})).await.assert_field_error(422, "delta");
        app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &json!({"delta": 5, "reason": "allocated"})).await.assert_field_error(422, "reason");
        app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &json!({"delta": 2, "reason": "stolen"})).await.assert_field_error(422, "reason");
        assert_eq!(app.admin_post("/api/v1/admin/lots/99999/adjustments",
            &json!({"delta": 1, "reason": "other"})).await.status, StatusCode::NOT_FOUND);

        let ledger = app.admin_get(&format!("/api/v1/admin/stock-ledger?lot_id={lot}")).await.json();
        let entries = ledger.as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["reason"], "damaged");
        assert_eq!(entries[0]["actor"], OWNER_ACTOR);
        assert_eq!(entries[0]["note"], "crushed box");
        assert_eq!(entries[0]["quantity_after"], 17);
        assert_eq!(entries[1]["reason"], "received");
        let sum: i64 = entries.iter().map(|e| e["delta"].as_i64().unwrap()).sum();
        assert_eq!(sum, 17, "the ledger explains every unit");
        app.stop().await;
    }

    async fn allocation_is_first_expired_first_out(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        receive(&app, "MAG-60", "EXPIRED", -1, 100).await;
        receive(&app, "MAG-60", "LATE", 500, 10).await;
        receive(&app, "MAG-60", "EARLY", 100, 4).await;
        receive(&app, "MAG-60", "MIDDLE", 300, 5).await;
        let db = &app.kernel.state.db;
        let variant: i64 = sqlx::Row::try_get(&sqlx::query("SELECT id FROM variants WHERE sku = 'MAG-60'")
            .fetch_one(&db.pool).await.unwrap(), 0).unwrap();
        let settings = olivine::inventory::StoreSettings::default();
        let change = StockChange { reason: StockReason::Allocated, actor: "test", note: None, reference: Some("order-1") };

        let mut tx = db.begin().await.unwrap();
        let taken = olivine::inventory::allocate(&mut tx, variant, 7, &settings, &change).await.unwrap();
        tx.commit().await.unwrap();
        let batches: Vec<_> = taken.iter().map(|a| (a.batch.as_str(), a.quantity)).collect();
        assert_eq!(batches, vec![("EARLY", 4), ("MIDDLE", 3)]);

        // Asking for more than can be sold fails and, rolled back, changes nothing.
        let mut tx = db.begin().await.unwrap();
        let err = olivine::inventory::allocate(&mut tx, variant, 13, &settings, &change).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::CONFLICT);
        drop(tx);
        let a = availability(&app, "mag", "MAG-60").await;
        assert_eq!(a["sellable_quantity"], 12);
        assert_eq!(a["best_before"], json!(date_in(300)));
        app.stop().await;
    }

    async fn bundle_stock_derives_from_components(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        let kit = app.admin_post("/api/v1/admin/products", &json!({
            "slug": "mag-3-pack", "name": "3 x Magnesium", "product_type": "bundle",
            "attributes": {"kind": "multipack"},
            "variants": [{"sku": "MAG-3PK", "title": "3-pack", "price_minor": 4999, "currency": "EUR",
                          "weight_grams": 400, "components": [{"sku": "MAG-60", "quantity": 3}]},
                         {"sku": "MAG-MIX", "title": "Mixed", "price_minor": 4999, "currency": "EUR",
                          "weight_grams": 400, "components": [{"sku": "MAG-60", "quantity": 1}, {"sku": "MAG-120", "quantity": 1}]}]
        })).await;
        assert_eq!(kit.status, StatusCode::CREATED, "{}", kit.text());
        receive(&app, "MAG-60", "A", 300, 10).await;
        receive(&app, "MAG-60", "B", 100, 1).await;
        assert_eq!(availability(&app, "mag-3-pack", "MAG-3PK").await["sellable_quantity"], 3);
        assert_eq!(availability(&app, "mag-3-pack", "MAG-3PK").await["best_before"], json!(date_in(100)));
        assert_eq!(availability(&app, "mag-3-pack", "MAG-MIX").await["state"], "out_of_stock");
        // Receiving a component updates the bundle (the stock event names the bundle too,
        // so its cached page is invalidated).
        receive(&app, "MAG-120", "C", 300, 2).await;
        assert_eq!(availability(&app, "mag-3-pack", "MAG-MIX").await["sellable_quantity"], 2);
        // Bundles hold no stock of their own.
        app.admin_post("/api/v1/admin/lots", &json!({"sku": "MAG-3PK", "location": "AMS-1", "batch": "X",
            "manufactured_on": date_in(-1), "expires_on": date_in(100), "quantity": 1})).await
            .assert_field_error(422, "sku");
        // Allocating a bundle takes its components.
        let db = &app.kernel.state.db;
        let variant: i64 = sqlx::Row::try_get(&sqlx::query("SELECT id FROM variants WHERE sku = 'MAG-3PK'")
            .fetch_one(&db.pool).await.unwrap(), 0).unwrap();
        let mut tx = db.begin().await.unwrap();
        let taken = olivine::inventory::allocate(&mut tx, variant, 2, &Default::default(),
            &StockChange { reason: StockReason::Allocated, actor: "test", note: None, reference: None }).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(taken.iter().map(|a| a.quantity).sum::<i64>(), 6);
        assert_eq!(taken[0].batch, "B");
        app.stop().await;
    }

    async fn concurrent_allocations_never_oversell(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        receive(&app, "MAG-60", "A", 300, 6).await;
        receive(&app, "MAG-60", "B", 200, 4).await;
        let db = app.kernel.state.db.clone();
        let variant: i64 = sqlx::Row::try_get(&sqlx::query("SELECT id FROM variants WHERE sku = 'MAG-60'")
            .fetch_one(&db.pool).await.unwrap(), 0).unwrap();
        let mut tasks = Vec::new();
        for buyer in 0..24 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let reference = format!("buyer-{buyer}");
                let change = StockChange { reason: StockReason::Allocated, actor: "test", note: None, reference: Some(&reference) };
                let mut tx = db.begin().await.unwrap();
                match olivine::inventory::allocate(&mut tx, variant, 1, &Default::default(), &change).await {
                    Ok(_) => { tx.commit().await.unwrap(); true }
                    Err(err) => { assert_eq!(err.status(), StatusCode::CONFLICT, "{err:?}"); false }
                }
            }));
        }
        let mut sold = 0;
        for task in tasks {
            if task.await.unwrap() { sold += 1; }
        }
        assert_eq!(sold, 10);
        let remaining: i64 = sqlx::Row::try_get(&sqlx::query("SELECT CAST(SUM(quantity) AS BIGINT) FROM lots")
            .fetch_one(&db.pool).await.unwrap(), 0).unwrap();
        assert_eq!(remaining, 0);
        let min: i64 = sqlx::Row::try_get(&sqlx::query("SELECT CAST(MIN(quantity) AS BIGINT) FROM lots")
            .fetch_one(&db.pool).await.unwrap(), 0).unwrap();
        assert!(min >= 0);
        assert_eq!(app.count("stock_ledger").await, 2 + 10);
        app.stop().await;
    }
}
