//! The catalog through the JSON API, as a mobile client and a merchant use it.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

both_backends! {
    async fn demo_catalog_is_browsable(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        let page = app.get("/api/v1/products?per_page=100").await;
        assert_eq!(page.status, StatusCode::OK);
        let page = page.json();
        assert!(page["total"].as_i64().unwrap() >= 40, "{page}");
        let items = page["items"].as_array().unwrap();
        for t in ["supplement", "skincare", "bundle"] {
            assert!(items.iter().any(|p| p["product_type"] == t), "no {t}");
        }
        // Filters: by type, by top-level category (includes subcategories), by tag.
        let bundles = app.get("/api/v1/products?type=bundle&per_page=100").await.json();
        assert!(bundles["items"].as_array().unwrap().iter().all(|p| p["product_type"] == "bundle"));
        assert!(bundles["total"].as_i64().unwrap() >= 3);
        let supplements = app.get("/api/v1/products?category=supplements&per_page=100").await.json();
        let minerals = app.get("/api/v1/products?category=minerals&per_page=100").await.json();
        assert!(minerals["total"].as_i64().unwrap() > 0);
        assert!(supplements["total"].as_i64().unwrap() > minerals["total"].as_i64().unwrap());
        let vegan = app.get("/api/v1/products?tag=vegan").await.json();
        assert!(vegan["items"].as_array().unwrap().iter().all(|p| p["tags"].as_array().unwrap().contains(&json!("vegan"))));
        // Paging.
        let p1 = app.get("/api/v1/products?per_page=5&page=1").await.json();
        let p2 = app.get("/api/v1/products?per_page=5&page=2").await.json();
        assert_eq!(p1["items"].as_array().unwrap().len(), 5);
        assert_ne!(p1["items"][0]["slug"], p2["items"][0]["slug"]);

        // A product with variants, prices in minor units, stock and best-before.
        let product = app.get("/api/v1/products/magnesium-glycinate").await;
        assert_eq!(product.status, StatusCode::OK);
        let product = product.json();
        let variants = product["variants"].as_array().unwrap();
        assert!((2..=4).contains(&variants.len()));
        for v in variants {
            assert!(v["price"]["amount_minor"].is_i64());
            assert_eq!(v["price"]["currency"], "EUR");
            assert!(v["availability"]["state"].is_string());
        }
        assert!(variants.iter().any(|v| v["availability"]["best_before"].is_string()));
        assert!(product["attributes"]["ingredients"].as_array().is_some_and(|i| !i.is_empty()));

        // Bundles show their components and derive stock from them.
        let kit = &bundles["items"][0]["slug"];
        let kit = app.get(&format!("/api/v1/products/{}", kit.as_str().unwrap())).await.json();
        assert!(kit["variants"][0]["components"].as_array().is_some_and(|c| !c.is_empty()), "{kit}");

        let categories = app.get("/api/v1/categories").await.json();
        for slug in ["supplements", "skincare", "bundles"] {
            assert!(categories.as_array().unwrap().iter().any(|c| c["slug"] == slug));
        }
        assert_eq!(app.get("/api/v1/products/no-such-thing").await.status, StatusCode::NOT_FOUND);
        app.stop().await;
    }

    async fn merchant_creates_and_edits_products(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let created = app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let created = created.json();
        let id = created["id"].as_i64().unwrap();
        assert_eq!(created["variants"].as_array().unwrap().len(), 2);
        assert_eq!(created["version"], 1);

        // Shoppers see it (and it is cached now).
        let public = app.get("/api/v1/products/mag").await.json();
        assert_eq!(public["variants"][0]["price"]["amount_minor"], 1999);

        // Edit the price: the event invalidates the cached product.
        let variant_id = created["variants"][0]["id"].as_i64().unwrap();
        let edited = app
            .admin_patch(&format!("/api/v1/admin/variants/{variant_id}"), &json!({"price_minor": 1799}))
            .await;
        assert_eq!(edited.status, StatusCode::OK, "{}", edited.text());
        app.settle().await;
        let public = app.get("/api/v1/products/mag").await.json();
        assert_eq!(public["variants"][0]["price"]["amount_minor"], 1799);

        // Rename, re-tag and hide it.
        let patched = app
            .admin_patch(&format!("/api/v1/admin/products/{id}"),
                &json!({"name": "Magnesium Bisglycinate", "tags": ["sleep"], "version": 2}))
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
        assert_eq!(patched.json()["tags"], json!(["sleep"]));
        // A stale version is refused.
        let stale = app
            .admin_patch(&format!("/api/v1/admin/products/{id}"), &json!({"name": "X", "version": 1}))
            .await;
        stale.assert_field_error(409, "version");
        let hidden = app
            .admin_patch(&format!("/api/v1/admin/products/{id}"), &json!({"status": "draft"}))
            .await;
        assert_eq!(hidden.status, StatusCode::OK);
        app.settle().await;
        assert_eq!(app.get("/api/v1/products/mag").await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.admin_get(&format!("/api/v1/admin/products/{id}")).await.json()["status"], "draft");

        // Add a variant.
        let added = app
            .admin_post(&format!("/api/v1/admin/products/{id}/variants"),
                &json!({"sku": "MAG-240", "title": "240 capsules", "options": {"count": "240"},
                        "price_minor": 5999, "currency": "EUR", "weight_grams": 390}))
            .await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text());
        assert_eq!(added.json()["variants"].as_array().unwrap().len(), 3);

        // Every change above wrote an event.
        assert!(app.count("outbox").await >= 6);
        app.stop().await;
    }

    async fn admin_api_requires_the_token(backend: Backend) {
        let app = TestApp::start(backend).await;
        for (method, path) in [
            (Method::GET, "/api/v1/admin/products"),
            (Method::POST, "/api/v1/admin/products"),
            (Method::PATCH, "/api/v1/admin/products/1"),
            (Method::POST, "/api/v1/admin/lots"),
            (Method::GET, "/api/v1/admin/stock-ledger"),
            (Method::PATCH, "/api/v1/admin/settings"),
        ] {
            let none = app.request(method.clone(), path, None, None, None).await;
            assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(none.json()["error"], "unauthorized");
            let wrong = app.request(method.clone(), path, Some("not-the-token-at-all"), None, None).await;
            assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn openapi_documents_every_json_route() {
    let app = TestApp::start(Backend::Sqlite).await;
    let doc = app.get("/api/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/products",
        "/api/v1/products/{slug}",
        "/api/v1/categories",
        "/api/v1/admin/products",
        "/api/v1/admin/products/{id}",
        "/api/v1/admin/products/{id}/variants",
        "/api/v1/admin/variants/{id}",
        "/api/v1/admin/categories",
        "/api/v1/admin/locations",
        "/api/v1/admin/lots",
        "/api/v1/admin/lots/{id}/adjustments",
        "/api/v1/admin/stock-ledger",
        "/api/v1/admin/settings",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    // The other way round: every documented operation is served (not 404/405).
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{slug}", "x").replace("{id}", "1");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app
                .request(method.clone(), &concrete, Some(ADMIN_TOKEN), None, None)
                .await;
            assert!(
                r.status != StatusCode::METHOD_NOT_ALLOWED
                    && !(r.status == StatusCode::NOT_FOUND
                        && r.json()["message"]
                            .as_str()
                            .unwrap_or("")
                            .starts_with("route")),
                "{method} {path} is documented but not routed: {}",
                r.status
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_api_routes_answer_json() {
    let app = TestApp::start(Backend::Sqlite).await;
    let r = app.get("/api/v1/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "not_found");
    app.stop().await;
}
