//! The audit log: admin actions, plugin changes and stock movements are recorded with
//! who, what and before/after; staff filter and page through it; the hash chain stays
//! intact under concurrent writers; the database refuses to change it; and tampering
//! behind the database's back is named, entry by entry, by the API and by
//! `olivine audit verify`.

use std::process::Command;

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::Row;
use tower::ServiceExt;

/// Every entry matching `query` (newest first), following the cursor.
async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let mut path = format!("/api/v1/admin/audit?limit=500&{query}");
        if let Some(seq) = cursor {
            path.push_str(&format!("&after_seq={seq}"));
        }
        let r = app.admin_get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        let page = r.json();
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_after_seq"].as_i64() {
            Some(seq) => cursor = Some(seq),
            None => return entries,
        }
    }
}

/// The only entry matching `query`.
async fn one(app: &TestApp, query: &str) -> Value {
    let entries = audit(app, query).await;
    assert_eq!(entries.len(), 1, "{query}: {entries:#?}");
    entries.into_iter().next().unwrap()
}

async fn verify(app: &TestApp) -> Value {
    let r = app.admin_get("/api/v1/admin/audit/verify").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

/// Runs `olivine audit verify` against the test's database: exit code and output.
async fn verify_binary(db: &TestDb) -> (i32, String) {
    let env = db.env();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_olivine"));
        command
            .args(["audit", "verify"])
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn");
        for (key, value) in env {
            command.env(key, value);
        }
        let out = command.output().expect("olivine runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().expect("exit code"), text)
    })
    .await
    .unwrap()
}

pub(crate) async fn exec(app: &TestApp, sql: &str) -> Result<u64, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&app.kernel.state.db.pool)
        .await
        .map(|r| r.rows_affected())
}

/// What a DBA would do first: remove the guard trigger.
pub(crate) async fn drop_trigger(app: &TestApp, trigger: &str) {
    let sql = match app.db.backend {
        Backend::Sqlite => format!("DROP TRIGGER {trigger}"),
        Backend::Postgres => format!("DROP TRIGGER {trigger} ON audit_log"),
    };
    exec(app, &sql).await.unwrap();
}

async fn receive(app: &TestApp, sku: &str, batch: &str, quantity: i64) -> i64 {
    let r = app
        .admin_post(
            "/api/v1/admin/lots",
            &json!({"sku": sku, "location": "AMS-1", "batch": batch,
                "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": quantity}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_i64().unwrap()
}

/// A short history: a category, a location, a product, an update, a lot, an adjustment.
async fn some_history(app: &TestApp) -> i64 {
    basic_setup(app).await;
    let r = app
        .admin_post("/api/v1/admin/products", &supplement("mag", "MAG"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let r = app
        .admin_patch(
            &format!("/api/v1/admin/products/{id}"),
            &json!({"name": "Magnesium Plus"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let lot = receive(app, "MAG-60", "B1", 10).await;
    let r = app
        .admin_post(
            &format!("/api/v1/admin/lots/{lot}/adjustments"),
            &json!({"delta": -1, "reason": "damaged"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let entries: i64 = verify(app).await["entries"].as_i64().unwrap();
    assert_eq!(entries, BOOTSTRAP_AUDIT_ENTRIES + 6);
    entries
}

/// A request through a clone of the router, for concurrent writers.
async fn send(
    router: olivine::http::fast_lane::App,
    method: Method,
    path: String,
    body: Value,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

both_backends! {
    async fn entries_appended_together_chain_like_single_ones(backend: Backend) {
        let app = TestApp::start(backend).await;
        let db = &app.kernel.state.db;
        let before: i64 = verify(&app).await["entries"].as_i64().unwrap();
        let entry = |n: i64| olivine::audit::Entry {
            actor: "test", action: "test.batched", target_type: "test", target_id: n.to_string(),
            before: None, after: Some(json!({"n": n})),
        };
        let mut tx = db.begin().await.unwrap();
        let last = olivine::audit::record_all(&mut tx, &[entry(1), entry(2), entry(3)]).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(last, before + 3);
        let mut tx = db.begin().await.unwrap();
        assert_eq!(olivine::audit::record(&mut tx, &entry(4)).await.unwrap(), before + 4);
        tx.commit().await.unwrap();
        let report = verify(&app).await;
        assert_eq!((report["intact"].as_bool(), report["entries"].as_i64()), (Some(true), Some(before + 4)), "{report}");
        let rows = sqlx::query("SELECT seq, target_id FROM audit_log WHERE action = 'test.batched' ORDER BY seq")
            .fetch_all(&db.pool).await.unwrap();
        let got: Vec<(i64, String)> = rows.iter().map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap())).collect();
        let want: Vec<(i64, String)> = (1..=4).map(|n| (before + n, n.to_string())).collect();
        assert_eq!(got, want);
        app.stop().await;
    }

    async fn admin_actions_are_recorded_with_who_what_and_before_after(backend: Backend) {
        let app = TestApp::start(backend).await;
        // A new store's log holds only the owner's creation, and verifies.
        let report = verify(&app).await;
        assert_eq!((report["intact"].clone(), report["entries"].clone(), report["tampered"].clone()),
            (json!(true), json!(BOOTSTRAP_AUDIT_ENTRIES), json!(null)), "{report}");
        let boot = audit(&app, "actor=kernel").await;
        let actions: Vec<&str> = boot.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, vec!["staff.token_created", "staff.created"]);

        basic_setup(&app).await;
        let category = one(&app, "action=category.created").await;
        assert_eq!(category["actor"], OWNER_ACTOR);
        assert_eq!(category["target_type"], "category");
        assert_eq!(category["before"], Value::Null);
        assert_eq!(category["after"]["slug"], "supplements");
        assert_eq!(one(&app, "action=location.created").await["after"]["code"], "AMS-1");

        let r = app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        let product = r.json();
        let id = product["id"].as_i64().unwrap();
        let created = one(&app, &format!("target_type=product&target_id={id}")).await;
        assert_eq!(created["action"], "product.created");
        assert_eq!(created["actor"], OWNER_ACTOR);
        assert_eq!(created["before"], Value::Null);
        assert_eq!(created["after"]["slug"], "mag");
        assert_eq!(created["after"]["categories"], json!(["supplements"]));
        assert_eq!(created["after"]["variants"].as_array().unwrap().len(), 2);
        assert_eq!(created["after"]["variants"][0]["sku"], "MAG-60");

        // A refused change records nothing.
        let before_refusal = verify(&app).await["entries"].clone();
        app.admin_patch(&format!("/api/v1/admin/products/{id}"), &json!({"slug": "Not A Slug"})).await
            .assert_field_error(422, "slug");
        assert_eq!(verify(&app).await["entries"], before_refusal);

        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"),
            &json!({"name": "Magnesium Plus", "tags": ["calm", "sleep"]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let updated = one(&app, "action=product.updated").await;
        assert_eq!(updated["target_id"], id.to_string());
        assert_eq!(updated["before"]["name"], "Test Magnesium");
        assert_eq!(updated["after"]["name"], "Magnesium Plus");
        assert_eq!(updated["before"]["tags"], json!(["test"]));
        assert_eq!(updated["after"]["tags"], json!(["calm", "sleep"]));
        assert_eq!(updated["before"]["version"], 1);
        assert_eq!(updated["after"]["version"], 2);
        assert_eq!(updated["before"]["description"], "For tests.");

        let variant = product["variants"][0]["id"].as_i64().unwrap();
        let r = app.admin_patch(&format!("/api/v1/admin/variants/{variant}"), &json!({"price_minor": 2499})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = one(&app, "action=variant.updated").await;
        assert_eq!((v["target_type"].clone(), v["target_id"].clone()), (json!("variant"), json!(variant.to_string())));
        assert_eq!(v["before"]["price_minor"], 1999);
        assert_eq!(v["after"]["price_minor"], 2499);
        assert_eq!(v["after"]["sku"], "MAG-60");
        let r = app.admin_post(&format!("/api/v1/admin/products/{id}/variants"), &json!({
            "sku": "MAG-30", "title": "30 capsules", "options": {"count": "30"},
            "price_minor": 1099, "currency": "EUR", "weight_grams": 70})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let v = one(&app, "action=variant.created").await;
        assert_eq!(v["before"], Value::Null);
        assert_eq!(v["after"]["sku"], "MAG-30");

        // Stock: the receipt and an adjustment, each with the ledger entry it explains.
        let lot = receive(&app, "MAG-60", "B1", 10).await;
        let received = one(&app, "action=lot.received").await;
        assert_eq!(received["target_id"], lot.to_string());
        assert_eq!(received["actor"], OWNER_ACTOR);
        assert_eq!(received["after"]["quantity"], 10);
        assert_eq!(received["after"]["batch"], "B1");
        assert_eq!(received["after"]["location"], "AMS-1");
        let r = app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &json!({"delta": -3, "reason": "damaged", "note": "crushed box"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let adjusted = one(&app, "action=stock.adjusted").await;
        assert_eq!(adjusted["target_type"], "lot");
        assert_eq!(adjusted["target_id"], lot.to_string());
        assert_eq!(adjusted["before"], json!({"quantity": 10}));
        assert_eq!(adjusted["after"]["quantity"], 7);
        assert_eq!(adjusted["after"]["delta"], -3);
        assert_eq!(adjusted["after"]["reason"], "damaged");
        assert_eq!(adjusted["after"]["note"], "crushed box");
        let ledger = app.admin_get(&format!("/api/v1/admin/stock-ledger?lot_id={lot}")).await.json();
        assert_eq!(adjusted["after"]["ledger_id"], ledger[0]["id"]);
        assert_eq!(ledger[0]["actor"], adjusted["actor"]);
        // The lot's whole history, oldest last.
        let history = audit(&app, &format!("target_type=lot&target_id={lot}")).await;
        let actions: Vec<&str> = history.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, vec!["stock.adjusted", "lot.received"]);

        let r = app.admin_patch("/api/v1/admin/settings", &json!({"min_shelf_life_days": 90})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let settings = one(&app, "action=settings.updated").await;
        assert_eq!(settings["before"]["min_shelf_life_days"], 60);
        assert_eq!(settings["after"]["min_shelf_life_days"], 90);

        // Newest first, each chained to the one before it, and the chain verifies.
        let all = audit(&app, "").await;
        assert_eq!(all.len() as i64, BOOTSTRAP_AUDIT_ENTRIES + 9);
        for pair in all.windows(2) {
            assert_eq!(pair[0]["seq"].as_i64().unwrap(), pair[1]["seq"].as_i64().unwrap() + 1);
            assert_eq!(pair[0]["prev_hash"], pair[1]["hash"]);
            assert!(pair[0]["at"].as_str() >= pair[1]["at"].as_str());
        }
        assert_eq!(all[all.len() - 1]["prev_hash"], olivine::audit::GENESIS_HASH);
        let report = verify(&app).await;
        assert_eq!(report["intact"], true, "{report}");
        assert_eq!(report["entries"], BOOTSTRAP_AUDIT_ENTRIES + 9);
        assert_eq!(report["head_hash"], all[0]["hash"]);
        // Admin routes need the token.
        assert_eq!(app.get("/api/v1/admin/audit").await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.get("/api/v1/admin/audit/verify").await.status, StatusCode::UNAUTHORIZED);
        app.stop().await;
    }

    async fn plugin_installs_activations_rollbacks_and_auto_disables_are_recorded(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.bundled_plugins = true).await;
        let plugins = app.admin_get("/api/v1/admin/plugins").await.json();
        let bundled = audit(&app, "actor=bundled").await;
        assert_eq!(bundled.len(), plugins.as_array().unwrap().len());
        assert!(bundled.iter().all(|e| e["action"] == "plugin.installed" && e["target_type"] == "plugin"));
        let installed = one(&app, "target_type=plugin&target_id=subscribe-and-save").await;
        assert_eq!(installed["before"], Value::Null);
        assert_eq!(installed["after"]["active_version"], "0.1.0");
        assert_eq!(installed["after"]["installed"]["version"], "0.1.0");
        assert_eq!(installed["after"]["installed"]["hash"].as_str().unwrap().len(), 64);

        // Settings are recorded as fingerprints, never in clear.
        let r = app.admin_patch("/api/v1/admin/plugins/multi-buy",
            &json!({"enabled": true, "settings": {"products": "magnesium-glycinate", "buy": "3", "percent_off": "10"}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let updated = one(&app, "action=plugin.updated").await;
        assert_eq!(updated["actor"], OWNER_ACTOR);
        assert_eq!(updated["target_id"], "multi-buy");
        assert_eq!(updated["before"]["enabled"], false);
        assert_eq!(updated["after"]["enabled"], true);
        let products = updated["after"]["settings"]["products"].as_str().unwrap();
        assert!(products.starts_with("sha256:") && products.len() == 23, "{products}");
        assert!(!updated.to_string().contains("magnesium-glycinate"), "{updated}");

        // A second version, activated, then rolled back.
        let mut v2 = plugin_upload("subscribe-and-save", "subscribe_and_save", |m| {
            m.replace("version = \"0.1.0\"", "version = \"0.2.0\"").replace("default = \"10\"", "default = \"25\"")
        });
        v2["fixtures"] = json!({});
        v2["activate"] = json!(false);
        let r = app.admin_post("/api/v1/admin/plugins", &v2).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let history = audit(&app, "target_type=plugin&target_id=subscribe-and-save").await;
        assert_eq!(history[0]["action"], "plugin.installed");
        assert_eq!(history[0]["actor"], OWNER_ACTOR);
        assert_eq!(history[0]["before"]["active_version"], "0.1.0");
        assert_eq!(history[0]["after"]["active_version"], "0.1.0");
        assert_eq!(history[0]["after"]["installed"]["version"], "0.2.0");
        let r = app.admin_post("/api/v1/admin/plugins/subscribe-and-save/activate", &json!({"version": "0.2.0"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let activated = one(&app, "action=plugin.activated").await;
        assert_eq!(activated["before"]["active_version"], "0.1.0");
        assert_eq!(activated["after"]["active_version"], "0.2.0");
        let r = app.admin_post("/api/v1/admin/plugins/subscribe-and-save/rollback", &json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let rolled_back = one(&app, "action=plugin.rolled_back").await;
        assert_eq!(rolled_back["actor"], OWNER_ACTOR);
        assert_eq!(rolled_back["before"]["active_version"], "0.2.0");
        assert_eq!(rolled_back["after"]["active_version"], "0.1.0");

        // The kernel disabling a failing plugin is recorded as the kernel's doing.
        let r = app.admin_post("/api/v1/admin/plugins", &plugin_upload("testing/chaos-payments", "chaos_payments", |m| m)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        app.admin_patch("/api/v1/admin/plugins/chaos-payments", &json!({"settings": {"mode": "trap"}})).await;
        let state_plugins = app.kernel.state.plugins.clone();
        for order in 0..olivine::plugins::AUTO_DISABLE_AFTER {
            let request = olivine::plugins::payments::PaymentRequest::Authorize(
                olivine_plugin_runtime::bindings::payment::AuthorizeRequest {
                    order_id: format!("{order}"),
                    idempotency_key: format!("order-{order}-authorize"),
                    amount: olivine_plugin_runtime::bindings::types::Money { amount_minor: 100, currency: "EUR".to_owned() },
                    source: olivine_plugin_runtime::bindings::payment::PaymentSource::Token("tok_test".to_owned()),
                    off_session: false,
                    customer: None,
                });
            let _ = olivine::plugins::payments::call(&state_plugins, Some("chaos-payments"), request).await;
        }
        let disabled = one(&app, "action=plugin.auto_disabled").await;
        assert_eq!(disabled["actor"], "kernel");
        assert_eq!(disabled["target_id"], "chaos-payments");
        assert_eq!(disabled["before"]["enabled"], true);
        assert_eq!(disabled["after"]["enabled"], false);
        assert!(disabled["after"]["disabled_reason"].as_str().unwrap().contains("consecutive failures"));

        assert_eq!(verify(&app).await["intact"], true);
        app.stop().await;
    }

    async fn staff_filter_and_page_through_the_log(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        let lots = app.admin_get("/api/v1/admin/lots?limit=1000").await.json();
        let lot_count = lots.as_array().unwrap().len();
        assert!(lot_count > 100);
        // Seeded data is booked to the seed.
        let received = audit(&app, "action=lot.received").await;
        assert_eq!(received.len(), lot_count);
        assert!(received.iter().all(|e| e["actor"] == "seed"));
        assert_eq!(audit(&app, "actor=seed&action=product.created").await.len(), 44);
        assert!(audit(&app, "actor=staff:1").await.is_empty());

        // Pages of 50 with the cursor: newest first, no entry twice, none left out.
        let mut seen = Vec::new();
        let mut cursor: Option<i64> = None;
        let mut pages = 0;
        loop {
            let path = match cursor {
                Some(seq) => format!("/api/v1/admin/audit?action=lot.received&after_seq={seq}"),
                None => "/api/v1/admin/audit?action=lot.received".to_owned(),
            };
            let page = app.admin_get(&path).await.json();
            let entries = page["entries"].as_array().unwrap();
            assert!(entries.len() <= 50);
            seen.extend(entries.iter().map(|e| e["seq"].as_i64().unwrap()));
            pages += 1;
            match page["next_after_seq"].as_i64() {
                Some(seq) => {
                    assert_eq!(entries.len(), 50);
                    assert_eq!(seq, entries[49]["seq"].as_i64().unwrap());
                    cursor = Some(seq);
                }
                None => break,
            }
        }
        assert_eq!(pages, lot_count.div_ceil(50));
        assert_eq!(seen.len(), lot_count);
        assert!(seen.windows(2).all(|w| w[0] > w[1]), "strictly newest first");
        let limited = app.admin_get("/api/v1/admin/audit?limit=3").await.json();
        assert_eq!(limited["entries"].as_array().unwrap().len(), 3);

        // One lot's history; then the admin changes it.
        let lot = lots[0]["id"].as_i64().unwrap();
        let r = app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &json!({"delta": 2, "reason": "count_correction"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let history = audit(&app, &format!("target_type=lot&target_id={lot}")).await;
        assert_eq!(history.len(), 2);
        assert_eq!((history[0]["action"].as_str(), history[0]["actor"].as_str()), (Some("stock.adjusted"), Some(OWNER_ACTOR)));
        assert_eq!(history[1]["action"], "lot.received");
        assert_eq!(audit(&app, "actor=staff:1&action=stock.adjusted").await.len(), 1);
        assert!(audit(&app, "actor=staff:1&action=lot.received").await.is_empty());

        // Time windows: since is inclusive, until exclusive; offsets are understood.
        let newest = audit(&app, "").await;
        let total = newest.len();
        let last_at = newest[0]["at"].as_str().unwrap().to_owned();
        assert_eq!(audit(&app, "since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").await.len(), total);
        assert!(audit(&app, "since=2999-01-01T00:00:00Z").await.is_empty());
        assert!(audit(&app, "until=2000-01-01T00:00:00%2B02:00").await.is_empty());
        let since_last = audit(&app, &format!("since={last_at}")).await;
        assert!(!since_last.is_empty() && since_last.iter().all(|e| e["at"].as_str().unwrap() >= last_at.as_str()));
        let until_last = audit(&app, &format!("until={last_at}")).await;
        assert_eq!(since_last.len() + until_last.len(), total);

        // Bad filters name the field.
        for (query, field) in [
            ("since=yesterday", "since"),
            ("until=2025-13-01T00:00:00Z", "until"),
            ("since=2025-02-01T00:00:00Z&until=2025-01-01T00:00:00Z", "until"),
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=ten", "limit"),
            ("after_seq=0", "after_seq"),
            ("after_seq=abc", "after_seq"),
            ("actor=", "actor"),
            ("actr=admin", "actr"),
        ] {
            app.admin_get(&format!("/api/v1/admin/audit?{query}")).await.assert_field_error(422, field);
        }
        let long = "x".repeat(201);
        app.admin_get(&format!("/api/v1/admin/audit?target_id={long}")).await.assert_field_error(422, "target_id");
        // SQL in a filter is just text.
        assert!(audit(&app, "actor=staff:1'%20OR%20'1'='1").await.is_empty());
        assert_eq!(verify(&app).await["entries"].as_i64().unwrap() as usize, total);
        app.stop().await;
    }

    async fn concurrent_writers_leave_one_gap_free_chain(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let r = app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        let product = r.json()["id"].as_i64().unwrap();
        let lot = receive(&app, "MAG-60", "B1", 1000).await;
        let other_lot = receive(&app, "MAG-120", "B2", 1000).await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let router = app.router.clone();
            tasks.push(tokio::spawn(send(router, Method::POST, format!("/api/v1/admin/lots/{lot}/adjustments"),
                json!({"delta": -1, "reason": "damaged", "note": format!("writer {i}")}))));
            let router = app.router.clone();
            tasks.push(tokio::spawn(send(router, Method::POST, format!("/api/v1/admin/lots/{other_lot}/adjustments"),
                json!({"delta": 1, "reason": "returned"}))));
            let router = app.router.clone();
            tasks.push(tokio::spawn(send(router, Method::PATCH, format!("/api/v1/admin/products/{product}"),
                json!({"name": format!("Magnesium {i}")}))));
        }
        for task in tasks {
            let (status, body) = task.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
        }

        let report = verify(&app).await;
        assert_eq!(report["intact"], true, "{report}");
        let total = report["entries"].as_i64().unwrap();
        assert_eq!(total, BOOTSTRAP_AUDIT_ENTRIES + 2 + 1 + 2 + 60);
        let seqs: Vec<i64> = sqlx::query("SELECT seq FROM audit_log ORDER BY seq")
            .fetch_all(&app.kernel.state.db.pool).await.unwrap()
            .iter().map(|r| r.try_get(0).unwrap()).collect();
        assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "seq is gap-free");
        // Chain order is the order the rows were locked in: each entry's before is the
        // after of the one before it.
        let mut adjustments = audit(&app, &format!("target_type=lot&target_id={lot}&action=stock.adjusted")).await;
        adjustments.reverse();
        assert_eq!(adjustments.len(), 20);
        for (i, entry) in adjustments.iter().enumerate() {
            assert_eq!(entry["before"]["quantity"], 1000 - i as i64);
            assert_eq!(entry["after"]["quantity"], 999 - i as i64);
        }
        let mut updates = audit(&app, "action=product.updated").await;
        updates.reverse();
        assert_eq!(updates.len(), 20);
        for pair in updates.windows(2) {
            assert_eq!(pair[1]["before"], pair[0]["after"]);
        }
        assert_eq!(updates[19]["after"]["version"], 21);
        assert_eq!(audit(&app, &format!("target_type=lot&target_id={other_lot}&action=stock.adjusted")).await.len(), 20);
        let (code, out) = verify_binary(&app.db).await;
        assert_eq!(code, 0, "{out}");
        app.stop().await;
    }

    async fn the_database_refuses_to_change_the_log(backend: Backend) {
        let app = TestApp::start(backend).await;
        let entries = some_history(&app).await;
        for sql in [
            "UPDATE audit_log SET actor = 'someone else' WHERE seq = 3",
            "UPDATE audit_log SET after = NULL",
            "DELETE FROM audit_log WHERE seq = 3",
            "DELETE FROM audit_log",
        ] {
            let err = exec(&app, sql).await.expect_err(sql);
            assert!(err.to_string().contains("audit_log is append-only"), "{sql}: {err}");
        }
        if backend == Backend::Postgres {
            let err = exec(&app, "TRUNCATE audit_log").await.expect_err("truncate");
            assert!(err.to_string().contains("TRUNCATE refused"), "{err}");
        }
        // The head only moves forward, one entry at a time.
        for sql in ["UPDATE audit_head SET seq = seq - 1", "UPDATE audit_head SET seq = seq + 5", "DELETE FROM audit_head"] {
            let err = exec(&app, sql).await.expect_err(sql);
            assert!(err.to_string().contains("audit_head"), "{sql}: {err}");
        }
        let report = verify(&app).await;
        assert_eq!((report["intact"].clone(), report["entries"].clone()), (json!(true), json!(entries)));
        let (code, out) = verify_binary(&app.db).await;
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with(&format!("audit log intact: {entries} entries, head {}", report["head_hash"].as_str().unwrap())), "{out}");
        app.stop().await;
    }

    async fn an_altered_entry_is_named(backend: Backend) {
        let app = TestApp::start(backend).await;
        some_history(&app).await;
        drop_trigger(&app, "audit_log_no_update").await;
        // Someone with database access improves the stock history.
        assert_eq!(exec(&app, r#"UPDATE audit_log SET after = '{"quantity": 999}' WHERE seq = 4"#).await.unwrap(), 1);
        let report = verify(&app).await;
        assert_eq!(report["intact"], false, "{report}");
        assert_eq!(report["tampered"]["seq"], 4, "{report}");
        assert!(report["tampered"]["problem"].as_str().unwrap().contains("do not match its hash"), "{report}");
        let (code, out) = verify_binary(&app.db).await;
        assert_eq!(code, 1, "{out}");
        assert!(out.starts_with("audit log TAMPERED at entry seq 4: "), "{out}");
        app.stop().await;
    }

    async fn a_deleted_entry_is_named(backend: Backend) {
        let app = TestApp::start(backend).await;
        some_history(&app).await;
        drop_trigger(&app, "audit_log_no_delete").await;
        assert_eq!(exec(&app, "DELETE FROM audit_log WHERE seq = 3").await.unwrap(), 1);
        let report = verify(&app).await;
        assert_eq!(report["tampered"]["seq"], 3, "{report}");
        assert!(report["tampered"]["problem"].as_str().unwrap().contains("missing"), "{report}");
        let (code, out) = verify_binary(&app.db).await;
        assert_eq!(code, 1, "{out}");
        assert!(out.starts_with("audit log TAMPERED at entry seq 3: "), "{out}");

        // The newest entry removed: the head still counts it.
        let app2 = TestApp::start(backend).await;
        let entries = some_history(&app2).await;
        drop_trigger(&app2, "audit_log_no_delete").await;
        exec(&app2, &format!("DELETE FROM audit_log WHERE seq = {entries}")).await.unwrap();
        assert_eq!(verify(&app2).await["tampered"]["seq"], entries);
        let (code, out) = verify_binary(&app2.db).await;
        assert_eq!(code, 1, "{out}");
        assert!(out.starts_with(&format!("audit log TAMPERED at entry seq {entries}: ")), "{out}");
        app2.stop().await;
        app.stop().await;
    }

    async fn an_entry_rewritten_with_a_fresh_hash_is_named(backend: Backend) {
        let app = TestApp::start(backend).await;
        let entries = some_history(&app).await;
        drop_trigger(&app, "audit_log_no_update").await;
        // A careful forger recomputes the hash of the entry they changed.
        let rewrite = |seq: i64| {
            let app = &app;
            async move {
                let row = sqlx::query("SELECT at, actor, action, target_type, target_id, before, prev_hash FROM audit_log WHERE seq = $1")
                    .bind(seq).fetch_one(&app.kernel.state.db.pool).await.unwrap();
                let after = r#"{"forged":true}"#;
                let before: Option<String> = row.try_get(5).unwrap();
                let hash = olivine::audit::entry_hash(
                    &row.try_get::<String, _>(6).unwrap(), seq, &row.try_get::<String, _>(0).unwrap(),
                    &row.try_get::<String, _>(1).unwrap(), &row.try_get::<String, _>(2).unwrap(),
                    &row.try_get::<String, _>(3).unwrap(), &row.try_get::<String, _>(4).unwrap(),
                    before.as_deref(), Some(after));
                sqlx::query("UPDATE audit_log SET after = $1, hash = $2 WHERE seq = $3")
                    .bind(after).bind(hash).bind(seq)
                    .execute(&app.kernel.state.db.pool).await.unwrap();
            }
        };
        // The newest entry: its hash no longer matches the head.
        rewrite(entries).await;
        let report = verify(&app).await;
        assert_eq!(report["tampered"]["seq"], entries, "{report}");
        assert!(report["tampered"]["problem"].as_str().unwrap().contains("head"), "{report}");
        // An older one: the next entry was chained to its old hash.
        rewrite(2).await;
        let report = verify(&app).await;
        assert_eq!(report["tampered"]["seq"], 2, "{report}");
        assert!(report["tampered"]["problem"].as_str().unwrap().contains("rewritten"), "{report}");
        let (code, out) = verify_binary(&app.db).await;
        assert_eq!(code, 1, "{out}");
        assert!(out.starts_with("audit log TAMPERED at entry seq 2: "), "{out}");
        app.stop().await;
    }
}

#[tokio::test]
async fn verify_cannot_run_on_an_unmigrated_store() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (code, out) = verify_binary(&db).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not migrated"), "{out}");
    db.drop().await;
}
