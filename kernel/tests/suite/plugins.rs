//! Plugins in the running kernel: bundled plugins price carts, merchants install,
//! configure, swap and roll back through the admin API, and a misbehaving plugin is
//! skipped, then disabled, while the store keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

async fn quote(app: &TestApp, body: &Value) -> Value {
    let r = app
        .request(
            Method::POST,
            "/api/v1/price-quote",
            None,
            Some(body.to_string().into()),
            Some("application/json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

fn reasons(quote: &Value) -> Vec<String> {
    quote["lines"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["adjustments"].as_array().unwrap().iter())
        .chain(quote["cart_adjustments"].as_array().unwrap())
        .map(|a| a["reason"].as_str().unwrap().to_owned())
        .collect()
}

/// The adjustments a decision's detail records, as (line, amount, reason), sorted.
fn decided(detail: &Value) -> Vec<(Option<u64>, i64, String)> {
    let mut all: Vec<_> = detail["adjustments"]
        .as_array()
        .unwrap_or_else(|| panic!("{detail}"))
        .iter()
        .map(|a| {
            (
                a["line_id"].as_u64(),
                a["amount_minor"].as_i64().unwrap(),
                a["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    all.sort();
    all
}

/// The adjustments of `rule` a quote shows, as (line, amount, reason), sorted.
fn quoted(quote: &Value, rule: &str) -> Vec<(Option<u64>, i64, String)> {
    let lines = quote["lines"].as_array().unwrap().iter().flat_map(|l| {
        l["adjustments"]
            .as_array()
            .unwrap()
            .iter()
            .map(move |a| (l["line_id"].as_u64(), a))
    });
    let cart = quote["cart_adjustments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (None, a));
    let mut all: Vec<_> = lines
        .chain(cart)
        .filter(|(_, a)| a["rule"] == rule)
        .map(|(line, a)| {
            (
                line,
                a["amount_minor"].as_i64().unwrap(),
                a["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    all.sort();
    all
}

both_backends! {
    async fn pricing_rules_read_whether_prices_include_tax(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.seed_demo = true).await;
        let r = app.admin_post("/api/v1/admin/plugins", &plugin_upload("testing/chaos", "chaos", |m| m)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let r = app.admin_patch("/api/v1/admin/plugins/chaos", &json!({"settings": {"mode": "store-facts"}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = json!({"lines": [{"sku": "MAG-GLY-60", "quantity": 1}]});
        // The demo store's prices include VAT.
        assert!(reasons(&quote(&app, &body).await).contains(&"prices_include_tax=true".to_owned()));
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"prices_include_tax": false})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        assert!(reasons(&quote(&app, &body).await).contains(&"prices_include_tax=false".to_owned()));
        app.stop().await;
    }

    async fn bundled_pricing_rules_price_a_quote(backend: Backend) {
        let app = TestApp::start_with(backend, |c| { c.seed_demo = true; c.bundled_plugins = true; }).await;
        let plugins = app.admin_get("/api/v1/admin/plugins").await.json();
        let ids: Vec<&str> = plugins.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
        for id in ["subscribe-and-save", "multi-buy", "tiered-volume", "supplements-taxonomy", "skincare-taxonomy", "loyalty-points", "category-campaign", "webhook-notifier", "sandbox-payments"] {
            assert!(ids.contains(&id), "{id} not installed: {ids:?}");
        }
        let q = quote(&app, &json!({"lines": [
            {"sku": "MAG-GLY-60", "quantity": 3},
            {"sku": "MAG-GLY-120", "quantity": 1, "subscription": true}
        ]})).await;
        assert_eq!(q["lines"][1]["adjustments"][0]["rule"], "subscribe-and-save");
        assert_eq!(q["lines"][1]["adjustments"][0]["reason"], "Subscribe & save 10%");
        let subtotal = q["subtotal"]["amount_minor"].as_i64().unwrap();
        let adjustments = q["adjustments_total"]["amount_minor"].as_i64().unwrap();
        assert!(adjustments < 0);
        assert_eq!(q["total"]["amount_minor"].as_i64().unwrap(), subtotal + adjustments);

        // The merchant sets up multi-buy and enables it: 3 units get 10% off.
        let r = app.admin_patch("/api/v1/admin/plugins/multi-buy",
            &json!({"enabled": true, "settings": {"products": "magnesium-glycinate", "buy": "3", "percent_off": "10"}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["loaded"], true);
        let q = quote(&app, &json!({"lines": [{"sku": "MAG-GLY-60", "quantity": 3}]})).await;
        assert_eq!(reasons(&q), vec!["Buy 3, save 10%".to_owned()]);
        let explained_hash = q["input_hash"].as_str().unwrap().to_owned();
        // Bad settings are refused naming the setting.
        app.admin_patch("/api/v1/admin/plugins/multi-buy", &json!({"settings": {"buy": "three"}})).await
            .assert_field_error(422, "settings.buy");
        app.admin_patch("/api/v1/admin/plugins/multi-buy", &json!({"settings": {"colour": "red"}})).await
            .assert_field_error(422, "settings.colour");

        // Bad quote input.
        let r = app.request(Method::POST, "/api/v1/price-quote", None,
            Some(json!({"lines": [{"sku": "NOPE", "quantity": 1}]}).to_string().into()), Some("application/json")).await;
        r.assert_field_error(422, "lines[0].sku");

        // Decisions are recorded with hashes of input and output (written behind the call).
        wait_until("decisions recorded", async || {
            app.admin_get(&format!("/api/v1/admin/plugins/multi-buy/decisions?input_hash={explained_hash}")).await
                .json().as_array().is_some_and(|d| !d.is_empty())
        }).await;
        let decisions = app.admin_get("/api/v1/admin/plugins/multi-buy/decisions").await.json();
        let d = &decisions[0];
        assert_eq!(d["version"], "0.1.0");
        assert_eq!(d["input_hash"].as_str().unwrap().len(), 64);
        assert_eq!(d["output_hash"].as_str().unwrap().len(), 64);
        // The quote's input hash finds the decision that produced its price.
        let explained = app.admin_get(&format!("/api/v1/admin/plugins/multi-buy/decisions?input_hash={explained_hash}")).await.json();
        assert_eq!(explained.as_array().unwrap().len(), 1, "{explained}");
        assert_eq!(explained[0]["outcome"], "ok");
        // It says what the rule answered: the adjustments the quote shows, with their
        // amounts, reasons and lines.
        let detail = &explained[0]["detail"];
        assert_eq!(detail["currency"], q["currency"], "{detail}");
        assert_eq!(decided(detail), quoted(&q, "multi-buy"), "{detail}");
        // The admin's explorer finds it by the input hash and shows them as money, and
        // the latest decisions show them too.
        let mut browser = crate::admin_ui::signed_in_as(&app, "admin").await;
        let found = crate::common::browser::get(&app, &mut browser,
            &format!("/admin/plugins/multi-buy?input_hash={explained_hash}")).await.text();
        let currency = q["currency"].as_str().unwrap();
        for (line_id, amount_minor, reason) in quoted(&q, "multi-buy") {
            let money = olivine::catalog::model::Money { amount_minor, currency: currency.to_owned() }.display();
            let shown = format!("<li>{money} line {}: {reason}</li>", line_id.unwrap());
            let table = |id: &str| found.split(&format!("<table id=\"{id}\">")).nth(1)
                .and_then(|t| t.split("</table>").next()).unwrap_or_default().to_owned();
            assert!(table("decisions-found").contains(&shown), "{shown} in the search's: {found}");
            assert!(table("decisions-latest").contains(&shown), "{shown} in the latest: {found}");
        }
        // This node's /metrics counts the calls (the recorder is the process's: other
        // tests' calls of the same plugin may be counted too), and the plugin's page shows them.
        let metrics = app.admin_get("/api/v1/admin/plugins/multi-buy/metrics").await.json();
        let call = metrics.as_array().unwrap().iter().find(|m| m["call"] == d["call"])
            .unwrap_or_else(|| panic!("{metrics}"));
        assert!(call["calls"].as_u64().unwrap() >= 1, "{call}");
        assert!(call["p99_ms_at_most"].as_f64().unwrap() > 0.0, "{call}");
        assert!(call["fuel_mean"].as_f64().unwrap() > 0.0, "{call}");
        let page = crate::common::browser::get(&app, &mut browser, "/admin/plugins/multi-buy").await.text();
        assert!(page.contains("<table id=\"plugin-node-calls\">"), "{page}");
        app.stop().await;
    }

    async fn a_newer_bundled_version_is_installed_on_start(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.bundled_plugins = true).await;
        let pool = &app.kernel.state.db.pool;
        // The store as an older binary left it: email and apns at 0.0.9. Email's active
        // version came bundled; apns's the merchant uploaded. The merchant set email's
        // priority.
        let r = app.admin_patch("/api/v1/admin/plugins/email", &json!({"priority": 7})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        for (id, by) in [("email", "bundled"), ("apns", "owner@example.com")] {
            sqlx::query("UPDATE plugin_versions SET version = '0.0.9', installed_by = $2 WHERE plugin_id = $1")
                .bind(id).bind(by).execute(pool).await.unwrap();
            sqlx::query("UPDATE plugin_installations SET active_version = '0.0.9' WHERE plugin_id = $1")
                .bind(id).execute(pool).await.unwrap();
        }
        let installs = async |app: &TestApp| {
            let r = app.admin_get("/api/v1/admin/audit?actor=bundled&action=plugin.installed&limit=500").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            r.json()["entries"].as_array().map_or(0, Vec::len)
        };
        let before = installs(&app).await;

        // A node of the new binary starts (a rolling upgrade).
        let node = app.another_node(|c| c.bundled_plugins = true, Extensions::default()).await;
        let email = node.admin_get("/api/v1/admin/plugins/email").await.json();
        assert_eq!(email["active_version"], "0.1.1", "{email}");
        assert_eq!(email["previous_version"], "0.0.9", "{email}");
        assert_eq!(email["priority"], 7, "{email}");
        // The new manifest's flags came with it: the server token is write-only.
        assert_eq!(email["secrets"]["server_token"], json!({"set": false}), "{email}");
        let apns = node.admin_get("/api/v1/admin/plugins/apns").await.json();
        assert_eq!(apns["active_version"], "0.0.9", "the merchant's choice stays: {apns}");
        let versions: Vec<&str> = apns["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
        assert!(versions.contains(&"0.1.1"), "{apns}");
        let multi_buy = node.admin_get("/api/v1/admin/plugins/multi-buy").await.json();
        assert_eq!(multi_buy["versions"].as_array().unwrap().len(), 1, "{multi_buy}");
        assert_eq!(installs(&node).await, before + 2);

        // Starting again changes nothing.
        let again = app.another_node(|c| c.bundled_plugins = true, Extensions::default()).await;
        assert_eq!(installs(&again).await, before + 2);
        again.stop().await;
        node.stop().await;
        app.stop().await;
    }

    async fn misbehaving_plugins_are_skipped_then_disabled(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.seed_demo = true).await;
        let r = app.admin_post("/api/v1/admin/plugins", &plugin_upload("testing/chaos", "chaos", |m| m)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let body = json!({"lines": [{"sku": "MAG-GLY-60", "quantity": 1}]});
        assert_eq!(reasons(&quote(&app, &body).await), vec!["chaos ok".to_owned()]);
        let clean_total = quote(&app, &body).await["subtotal"].clone();
        // Other tests' kernels count into the same series (the other backend's run of
        // this test among them): assert increases, of at least what this test does.
        let disabled_series = r#"olivine_plugin_auto_disabled_total{plugin="chaos"}"#;
        let trap_series = r#"olivine_plugin_calls_total{plugin="chaos",call="price",outcome="trap"}"#;
        let disabled_before = app.metric(disabled_series).await;
        let traps_before = app.metric(trap_series).await;

        for mode in ["loop", "alloc", "trap", "invalid-output"] {
            app.admin_patch("/api/v1/admin/plugins/chaos", &json!({"enabled": true, "settings": {"mode": mode}})).await;
            // The quote still succeeds; the rule is skipped.
            let q = quote(&app, &body).await;
            assert!(reasons(&q).is_empty(), "{mode}: {q}");
            assert_eq!(q["skipped_rules"], json!(["chaos"]), "{mode}");
            assert_eq!(q["total"], clean_total, "{mode}");
        }
        // Five failures in a row: disabled automatically, with the reason and an event.
        app.admin_patch("/api/v1/admin/plugins/chaos", &json!({"enabled": true, "settings": {"mode": "trap"}})).await;
        for _ in 0..5 {
            quote(&app, &body).await;
        }
        let info = app.admin_get("/api/v1/admin/plugins/chaos").await.json();
        assert_eq!(info["enabled"], false, "{info}");
        assert!(info["disabled_reason"].as_str().unwrap().contains("consecutive failures"));
        assert_eq!(info["loaded"], false);
        use sqlx::Row;
        let events: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM outbox WHERE event_type = 'plugin.auto_disabled'")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap().try_get(0).unwrap();
        assert_eq!(events, 1);
        let metrics = app.get("/metrics").await.text();
        assert!(metric_value(&metrics, disabled_series) >= disabled_before + 1.0, "{disabled_series} was {disabled_before}: {metrics}");
        // The trap mode's quote above, then at least the call that disabled the plugin.
        assert!(metric_value(&metrics, trap_series) >= traps_before + 2.0, "{trap_series} was {traps_before}: {metrics}");
        app.stop().await;
    }

    async fn bad_uploads_are_refused_clearly(backend: Backend) {
        let app = TestApp::start(backend).await;
        let good = plugin_upload("subscribe-and-save", "subscribe_and_save", |m| m);
        // Not a component at all.
        let mut upload = good.clone();
        upload["wasm_base64"] = json!("bm90IHdhc20=");
        let r = app.admin_post("/api/v1/admin/plugins", &upload).await;
        r.assert_field_error(422, "wasm");
        assert!(r.text().contains("not a WebAssembly component"));
        // Wrong world, incompatible ABI, manifest errors.
        let r = app.admin_post("/api/v1/admin/plugins",
            &plugin_upload("subscribe-and-save", "subscribe_and_save", |m| m.replace("pricing-rule", "loyalty-rule").replace("products = false", ""))).await;
        r.assert_field_error(422, "wasm");
        assert!(r.text().contains("olivine:plugin/pricing@0.1.0"), "{}", r.text());
        let r = app.admin_post("/api/v1/admin/plugins",
            &plugin_upload("subscribe-and-save", "subscribe_and_save", |m| m.replace("abi = \"0.1\"", "abi = \"2.0\""))).await;
        r.assert_field_error(422, "wasm");
        assert!(r.text().contains("incompatible"), "{}", r.text());
        app.admin_post("/api/v1/admin/plugins",
            &plugin_upload("subscribe-and-save", "subscribe_and_save", |m| m.replace("id = \"subscribe-and-save\"", "id = \"No Good\""))).await
            .assert_field_error(422, "manifest.plugin.id");
        // A pricing rule asking for the network.
        app.admin_post("/api/v1/admin/plugins",
            &plugin_upload("subscribe-and-save", "subscribe_and_save", |m| m.replace("http = []", "http = [\"evil.example\"]"))).await
            .assert_field_error(422, "manifest.permissions.http");
        // A fixture that fails.
        let mut upload = good.clone();
        upload["fixtures"]["broken.json"] = json!(r#"{"call": "price", "settings": {}, "input": {"currency": "EUR", "lines": [], "products": []}, "expect": {"ok": [{"line_id": 1, "amount_minor": -5, "reason": "x"}]}}"#);
        app.admin_post("/api/v1/admin/plugins", &upload).await.assert_field_error(422, "fixtures.broken.json");
        // Nothing of that was installed.
        assert_eq!(app.admin_get("/api/v1/admin/plugins").await.json(), json!([]));

        // Installing works, twice is idempotent, the same version with other content conflicts.
        assert_eq!(app.admin_post("/api/v1/admin/plugins", &good).await.status, StatusCode::CREATED);
        assert_eq!(app.admin_post("/api/v1/admin/plugins", &good).await.status, StatusCode::CREATED);
        let other = plugin_upload("tiered-volume", "tiered_volume", |_| std::fs::read_to_string(repo_root().join("plugins/subscribe-and-save/plugin.toml")).unwrap());
        let mut other = other;
        other["fixtures"] = json!({});
        app.admin_post("/api/v1/admin/plugins", &other).await.assert_field_error(409, "manifest.plugin.version");
        // Hosts the manifest does not declare cannot be granted.
        let notifier = plugin_upload("webhook-notifier", "webhook_notifier", |m| m.replace(r#"http = ["*"]"#, r#"http = ["hooks.example.com"]"#));
        let mut notifier = notifier;
        notifier["enabled"] = json!(false);
        assert_eq!(app.admin_post("/api/v1/admin/plugins", &notifier).await.status, StatusCode::CREATED);
        app.admin_patch("/api/v1/admin/plugins/webhook-notifier", &json!({"granted_hosts": ["evil.example"]})).await
            .assert_field_error(422, "granted_hosts[0]");
        assert_eq!(app.admin_get("/api/v1/admin/plugins/nope").await.status, StatusCode::NOT_FOUND);
        app.stop().await;
    }

    async fn the_api_never_answers_a_secret_setting(backend: Backend) {
        let app = TestApp::start(backend).await;
        let path = "/api/v1/admin/plugins/webhook-notifier";
        let secrets = ["Bearer api-token-5TQ", "whsec-api-8LM"];
        let hidden = |answer: &str| secrets.iter().all(|s| !answer.contains(s));
        let v1 = plugin_upload("webhook-notifier", "webhook_notifier", |m| m);
        assert_eq!(app.admin_post("/api/v1/admin/plugins", &v1).await.status, StatusCode::CREATED);
        let r = app.admin_patch(path, &json!({"settings": {"url": "http://hooks.example.com/in",
            "authorization": secrets[0], "signing_secret": secrets[1]}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(hidden(&r.text()), "{}", r.text());
        assert_eq!(r.json()["settings"], json!({"url": "http://hooks.example.com/in", "authorization": null, "signing_secret": null}));
        assert_eq!(r.json()["secrets"], json!({"authorization": {"set": true}, "signing_secret": {"set": true}}));
        for answer in [app.admin_get(path).await.text(), app.admin_get("/api/v1/admin/plugins").await.text()] {
            assert!(hidden(&answer), "{answer}");
        }
        // Another version: activating and rolling back answer the plugin, secrets hidden.
        let mut v2 = plugin_upload("webhook-notifier", "webhook_notifier", |m| m.replace("version = \"0.2.1\"", "version = \"0.2.2\""));
        v2["activate"] = json!(false);
        let r = app.admin_post("/api/v1/admin/plugins", &v2).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert!(hidden(&r.text()), "{}", r.text());
        let r = app.admin_post(&format!("{path}/activate"), &json!({"version": "0.2.2"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(hidden(&r.text()), "{}", r.text());
        let r = app.admin_post(&format!("{path}/rollback"), &json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(hidden(&r.text()), "{}", r.text());
        // null keeps a stored value; a setting left out is removed.
        let r = app.admin_patch(path, &json!({"settings": {"url": "http://hooks.example.com/2", "authorization": null}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["secrets"], json!({"authorization": {"set": true}, "signing_secret": {"set": false}}));
        let stored: String = sqlx::query_scalar("SELECT settings FROM plugin_installations WHERE plugin_id = 'webhook-notifier'")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap();
        let stored: Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(stored, json!({"url": "http://hooks.example.com/2", "authorization": secrets[0]}));
        // A manifest without the flag (as every one before it) loads, and its settings show.
        let mut old = plugin_upload("webhook-notifier", "webhook_notifier", |m| {
            m.replace("version = \"0.2.1\"", "version = \"0.1.9\"").replace("secret = true\n", "")
        });
        old["fixtures"] = json!({});
        let r = app.admin_post("/api/v1/admin/plugins", &old).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(r.json()["settings"]["authorization"], secrets[0], "{}", r.text());
        assert_eq!(r.json()["secrets"], json!({}));
        // A host that is not one is said so.
        let r = app.admin_patch(path, &json!({"granted_hosts": ["hooks.example.com", "https://hooks.example.com/in"]})).await;
        r.assert_field_error(422, "granted_hosts[1]");
        assert!(r.text().contains("not a host name"), "{}", r.text());
        app.stop().await;
    }

    async fn hot_swap_under_load_misprices_nothing(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.seed_demo = true).await;
        // Version 0.1.0: 10% off subscription lines. Version 0.2.0: the same plugin id
        // with a 25% default.
        let v1 = plugin_upload("subscribe-and-save", "subscribe_and_save", |m| m);
        assert_eq!(app.admin_post("/api/v1/admin/plugins", &v1).await.status, StatusCode::CREATED);
        let mut v2 = plugin_upload("subscribe-and-save", "subscribe_and_save", |m| {
            m.replace("version = \"0.1.0\"", "version = \"0.2.0\"").replace("default = \"10\"", "default = \"25\"")
        });
        v2["fixtures"] = json!({});
        v2["activate"] = json!(false);
        let r = app.admin_post("/api/v1/admin/plugins", &v2).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(r.json()["active_version"], "0.1.0");

        let body = json!({"lines": [{"sku": "MAG-GLY-60", "quantity": 2, "subscription": true}]});
        let base = quote(&app, &body).await["subtotal"]["amount_minor"].as_i64().unwrap();
        let at = |percent: i64| base - (base * percent + 50) / 100;
        let allowed = [at(10), at(25)];

        let app = Arc::new(app);
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let mut shoppers = Vec::new();
        for _ in 0..4 {
            let (app, stop, served, body) = (app.clone(), stop.clone(), served.clone(), body.clone());
            shoppers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let total = quote(&app, &body).await["total"]["amount_minor"].as_i64().unwrap();
                    assert!(allowed.contains(&total), "mispriced: {total}, allowed {allowed:?}");
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for i in 0..10 {
            let r = if i % 2 == 0 {
                app.admin_post("/api/v1/admin/plugins/subscribe-and-save/activate", &json!({"version": "0.2.0"})).await
            } else {
                app.admin_post("/api/v1/admin/plugins/subscribe-and-save/rollback", &json!({})).await
            };
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for shopper in shoppers {
            shopper.await.expect("no shopper request failed");
        }
        assert!(served.load(Ordering::Relaxed) > 10);
        // Ten swaps from 0.1.0: back on 0.1.0, with 0.2.0 as the previous version.
        let info = app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json();
        assert_eq!(info["active_version"], "0.1.0");
        assert_eq!(info["previous_version"], "0.2.0");
        assert_eq!(quote(&app, &body).await["total"]["amount_minor"].as_i64().unwrap(), at(10));
        let r = app.admin_post("/api/v1/admin/plugins/subscribe-and-save/rollback", &json!({})).await;
        assert_eq!(r.json()["active_version"], "0.2.0");
        assert_eq!(quote(&app, &body).await["total"]["amount_minor"].as_i64().unwrap(), at(25));
        app.admin_post("/api/v1/admin/plugins/subscribe-and-save/activate", &json!({"version": "9.9.9"})).await
            .assert_field_error(422, "version");
        match Arc::try_unwrap(app) {
            Ok(app) => app.stop().await,
            Err(_) => panic!("app still shared"),
        }
    }

    async fn the_store_keeps_serving_while_a_plugin_spins(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.seed_demo = true).await;
        let mut upload = plugin_upload("testing/chaos", "chaos", |m| m);
        upload["fixtures"] = json!({});
        assert_eq!(app.admin_post("/api/v1/admin/plugins", &upload).await.status, StatusCode::CREATED);
        app.admin_patch("/api/v1/admin/plugins/chaos", &json!({"settings": {"mode": "loop"}})).await;
        let app = Arc::new(app);
        let body = json!({"lines": [{"sku": "MAG-GLY-60", "quantity": 1}]});
        // Shoppers keep asking for quotes, each burning a whole instruction budget...
        let spinning: Vec<_> = (0..4).map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move {
                for _ in 0..3 {
                    // Re-enabled each time (which resets its failure count): this test
                    // is about the rest of the store, not the failure policy.
                    app.admin_patch("/api/v1/admin/plugins/chaos", &json!({"enabled": true})).await;
                    let q = quote(&app, &body).await;
                    assert!(q["lines"][0]["adjustments"].as_array().unwrap().is_empty(), "{q}");
                }
            })
        }).collect();
        // ...while every other request is answered.
        for _ in 0..40 {
            assert_eq!(app.get("/api/v1/products/magnesium-glycinate").await.status, StatusCode::OK);
            assert_eq!(app.get("/p/magnesium-glycinate").await.status, StatusCode::OK);
            assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
        }
        for task in spinning {
            task.await.expect("quotes with a spinning rule still succeed");
        }
        match Arc::try_unwrap(app) {
            Ok(app) => app.stop().await,
            Err(_) => panic!("app still shared"),
        }
    }
}
