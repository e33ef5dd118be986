//! The catalog validates products and derives variant SKUs through the taxonomy plugin
//! of their type; without one, the kernel's own rules apply and a SKU is required. A
//! taxonomy that fails refuses the write (nothing saved) and is disabled after repeated
//! failures.

use crate::common::*;
use axum::http::StatusCode;
use serde_json::{Value, json};

fn skus(product: &Value) -> Vec<String> {
    product["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["sku"].as_str().unwrap().to_owned())
        .collect()
}

/// The test supplement with its SKUs left out.
fn supplement_without_skus(slug: &str) -> Value {
    let mut p = supplement(slug, "UNUSED");
    for v in p["variants"].as_array_mut().unwrap() {
        v.as_object_mut().unwrap().remove("sku");
    }
    p
}

both_backends! {
    async fn taxonomies_validate_products_and_derive_skus(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.bundled_plugins = true).await;
        basic_setup(&app).await;

        // SKUs left out are derived by the supplements taxonomy: slug initials, options.
        let r = app.admin_post("/api/v1/admin/products", &supplement_without_skus("test-magnesium")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let product = r.json();
        assert_eq!(skus(&product), ["TM-60", "TM-120"]);
        let id = product["id"].as_i64().unwrap();

        // Only the taxonomy knows which option names a supplement may use.
        let mut p = supplement_without_skus("bad-options");
        p["variants"][0]["options"] = json!({"colour": "red"});
        app.admin_post("/api/v1/admin/products", &p).await
            .assert_field_error(422, "variants[0].options.colour");
        // Its attribute rules are reported with their field, and nothing is written.
        let mut p = supplement_without_skus("bad-attributes");
        p["attributes"]["ingredients"][0]["amount"] = json!(0);
        app.admin_post("/api/v1/admin/products", &p).await
            .assert_field_error(422, "attributes.ingredients[0].amount");
        assert_eq!(app.count("products").await, 1);

        // A variant added without a SKU gets one; one whose SKU would clash is refused,
        // naming the field of the request body.
        let r = app.admin_post(&format!("/api/v1/admin/products/{id}/variants"),
            &json!({"title": "240 capsules", "options": {"count": "240"}, "price_minor": 5999, "currency": "EUR", "weight_grams": 400})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(skus(&r.json()), ["TM-60", "TM-120", "TM-240"]);
        app.admin_post(&format!("/api/v1/admin/products/{id}/variants"),
            &json!({"title": "again", "options": {"count": "240"}, "price_minor": 5999, "currency": "EUR", "weight_grams": 400})).await
            .assert_field_error(422, "sku");

        // Editing attributes goes through the taxonomy too, which normalises them.
        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"),
            &json!({"attributes": {"form": "powder", "ingredients": [{"name": " Zinc ", "amount": 10, "unit": "mg"}],
                "serving_size": "1 scoop", "servings_per_container": 20, "usage": "Daily.",
                "disclaimer": "Not evaluated by the FDA."}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["attributes"]["ingredients"][0]["name"], "Zinc");
        app.admin_patch(&format!("/api/v1/admin/products/{id}"),
            &json!({"attributes": {"form": "powder", "ingredients": [], "serving_size": "1 scoop",
                "servings_per_container": 20, "usage": "Daily.", "disclaimer": "x"}})).await
            .assert_field_error(422, "attributes.ingredients");
        // A variant's options are checked on change; an empty SKU re-derives it.
        let variant_id = app.admin_get(&format!("/api/v1/admin/products/{id}")).await.json()["variants"][2]["id"].as_i64().unwrap();
        app.admin_patch(&format!("/api/v1/admin/variants/{variant_id}"), &json!({"options": {"shade": "dark"}})).await
            .assert_field_error(422, "options.shade");
        let r = app.admin_patch(&format!("/api/v1/admin/variants/{variant_id}"), &json!({"options": {"count": "180"}, "sku": ""})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(skus(&r.json())[2], "TM-180");

        // Skincare has its own taxonomy.
        let r = app.admin_post("/api/v1/admin/products", &json!({
            "slug": "rose-night-cream", "name": "Rose Night Cream", "product_type": "skincare",
            "attributes": {"skin_types": ["dry"], "volume_ml": 50, "routine_step": "moisturise",
                "application": "Apply in the evening.", "period_after_opening_months": 6},
            "variants": [{"title": "50 ml", "options": {"size": "50ml"}, "price_minor": 2999, "currency": "EUR", "weight_grams": 90}]
        })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(skus(&r.json()), ["RNC-50ML"]);

        // Decisions of the taxonomy are recorded like any other plugin call.
        app.settle().await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let decisions = app.admin_get("/api/v1/admin/plugins/supplements-taxonomy/decisions").await.json();
        let outcomes: Vec<&str> = decisions.as_array().unwrap().iter().map(|d| d["outcome"].as_str().unwrap()).collect();
        assert!(outcomes.contains(&"ok") && outcomes.contains(&"rejected"), "{outcomes:?}");

        // Without an active taxonomy the kernel's rules stand alone: a SKU is required,
        // and option names are free.
        let r = app.admin_patch("/api/v1/admin/plugins/supplements-taxonomy", &json!({"enabled": false})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = app.admin_post("/api/v1/admin/products", &supplement_without_skus("no-taxonomy")).await;
        r.assert_field_error(422, "variants[0].sku");
        assert!(r.text().contains("no active taxonomy plugin"), "{}", r.text());
        let mut p = supplement("no-taxonomy", "NT");
        p["variants"][0]["options"] = json!({"colour": "red"});
        assert_eq!(app.admin_post("/api/v1/admin/products", &p).await.status, StatusCode::CREATED);
        app.stop().await;
    }

    async fn the_demo_catalog_meets_its_taxonomies(backend: Backend) {
        let app = TestApp::start_with(backend, |c| { c.bundled_plugins = true; c.seed_demo = true; }).await;
        let page = app.admin_get("/api/v1/admin/products?per_page=100").await.json();
        let products = page["items"].as_array().unwrap();
        assert!(products.len() >= 40, "{page}");
        let mut checked = 0;
        for summary in products {
            if summary["product_type"] == "bundle" {
                continue;
            }
            // Re-saving the attributes runs the product, variants and all, through its
            // type's taxonomy.
            let id = summary["id"].as_i64().unwrap();
            let product = app.admin_get(&format!("/api/v1/admin/products/{id}")).await.json();
            let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"), &json!({"attributes": product["attributes"]})).await;
            assert_eq!(r.status, StatusCode::OK, "{}: {}", product["slug"], r.text());
            checked += 1;
        }
        assert!(checked >= 30, "{checked}");
        app.stop().await;
    }

    async fn a_failing_taxonomy_refuses_the_write_and_is_disabled(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.bundled_plugins = true).await;
        basic_setup(&app).await;
        app.admin_patch("/api/v1/admin/plugins/supplements-taxonomy", &json!({"enabled": false})).await;
        let r = app.admin_post("/api/v1/admin/plugins", &plugin_upload("testing/chaos-taxonomy", "chaos_taxonomy", |m| m)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        // Working, it derives its placeholder SKUs.
        let r = app.admin_post("/api/v1/admin/products", &supplement_without_skus("chaos-ok")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(skus(&r.json()), ["CHAOS-0", "CHAOS-1"]);

        for (i, mode) in ["trap", "loop", "trap", "trap", "trap"].into_iter().enumerate() {
            app.admin_patch("/api/v1/admin/plugins/chaos-taxonomy", &json!({"settings": {"mode": mode}})).await;
            let r = app.admin_post("/api/v1/admin/products", &supplement(&format!("chaos-{i}"), &format!("CH{i}"))).await;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{mode}: {}", r.text());
            let kind = if mode == "loop" { "out_of_fuel" } else { "trap" };
            assert!(r.text().contains("chaos-taxonomy") && r.text().contains(kind), "{}", r.text());
        }
        // Nothing of the refused writes was saved.
        assert_eq!(app.count("products").await, 1);
        // Five failures in a row: disabled; the kernel's own rules apply again.
        let info = app.admin_get("/api/v1/admin/plugins/chaos-taxonomy").await.json();
        assert_eq!(info["enabled"], false, "{info}");
        let r = app.admin_post("/api/v1/admin/products", &supplement("after-chaos", "AC")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        app.stop().await;
    }

    async fn the_admin_product_form_is_made_from_the_active_taxonomy(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.bundled_plugins = true).await;
        basic_setup(&app).await;
        let mut browser = crate::admin_ui::signed_in_as(&app, "catalog").await;
        let new = "/admin/products/new?type=skincare";
        let page = crate::common::browser::get(&app, &mut browser, new).await.text();
        // The skincare taxonomy's own words for its attributes, its enum list as
        // checkboxes and its enum as a choice.
        assert!(page.contains("Skin types it suits (at least one)."), "{page}");
        assert!(page.contains("Contents in millilitres (at least 1)."), "{page}");
        assert!(page.contains(r#"id="f-attributes-skin-types-combination""#), "{page}");
        assert!(page.contains(r#"<option value="moisturise">Moisturise</option>"#), "{page}");
        assert!(page.contains("Key ingredients (comma-separated) (optional)"), "{page}");
        assert!(page.contains("<label for=\"f-attributes-volume-ml\">Volume (ml)</label>"), "{page}");

        // With the taxonomy off, the kernel's own schema of the type: the same fields
        // without the plugin's descriptions.
        let r = app.admin_patch("/api/v1/admin/plugins/skincare-taxonomy", &json!({"enabled": false})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let page = crate::common::browser::get(&app, &mut browser, new).await.text();
        assert!(!page.contains("Skin types it suits"), "{page}");
        assert!(page.contains(r#"id="f-attributes-skin-types-combination""#), "{page}");
        assert!(page.contains(r#"name="attributes.volume_ml""#), "{page}");
        app.stop().await;
    }
}
