//! Bad input gets a 4xx with a JSON body naming the field, and nothing is half-written.

use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::json;

both_backends! {
    async fn product_input_errors_name_the_field(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let ok = app.admin_post("/api/v1/admin/products", &supplement("base", "BASE")).await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text());
        let products = app.count("products").await;
        let variants = app.count("variants").await;
        let events = app.count("outbox").await;

        // Malformed JSON.
        let r = app.admin_post_raw("/api/v1/admin/products", "{\"slug\": ").await;
        r.assert_field_error(400, "body");
        assert_eq!(r.json()["error"], "bad_request");

        // Unknown product type.
        let mut p = supplement("x1", "X1");
        p["product_type"] = json!("furniture");
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "product_type");

        // Negative and fractional prices.
        let mut p = supplement("x2", "X2");
        p["variants"][1]["price_minor"] = json!(-1);
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "variants[1].price_minor");
        let mut p = supplement("x3", "X3");
        p["variants"][0]["price_minor"] = json!(19.99);
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "variants[0].price_minor");
        let mut p = supplement("x3b", "X3B");
        p["variants"][0]["price_minor"] = json!("1999");
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "variants[0].price_minor");

        // A missing field and an unknown one.
        let mut p = supplement("x4", "X4");
        p.as_object_mut().unwrap().remove("name");
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "name");
        let mut p = supplement("x5", "X5");
        p["colour"] = json!("green");
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "colour");

        // Duplicate SKU: against the store (409, after the product row was inserted: the
        // transaction must roll back), and within one request (422).
        let mut p = supplement("x6", "X6");
        p["variants"][1]["sku"] = json!("BASE-60");
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(409, "variants[1].sku");
        let mut p = supplement("x7", "X7");
        p["variants"][1]["sku"] = json!("X7-60");
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "variants[1].sku");

        // Duplicate slug.
        app.admin_post("/api/v1/admin/products", &supplement("base", "OTHER")).await.assert_field_error(409, "slug");

        // Type-specific attributes are checked.
        let mut p = supplement("x8", "X8");
        p["attributes"]["ingredients"][0]["amount"] = json!(-5);
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "attributes.ingredients[0].amount");
        let mut p = supplement("x9", "X9");
        p["attributes"].as_object_mut().unwrap().remove("disclaimer");
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "attributes.disclaimer");
        let mut p = supplement("x10", "X10");
        p["categories"] = json!(["supplements", "nope"]);
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "categories[1]");
        let mut p = supplement("Bad Slug", "X11");
        p["variants"][0]["currency"] = json!("euro");
        let r = app.admin_post("/api/v1/admin/products", &p).await;
        r.assert_field_error(422, "slug");
        r.assert_field_error(422, "variants[0].currency");

        // Bundles: a bundle that contains itself, a bundle inside a bundle, a plain
        // product with components.
        let bundle = json!({
            "slug": "kit", "name": "Kit", "product_type": "bundle",
            "attributes": {"kind": "kit"},
            "variants": [{"sku": "KIT-1", "title": "Kit", "price_minor": 2999, "currency": "EUR",
                          "weight_grams": 400, "components": [{"sku": "KIT-1", "quantity": 1}]}]
        });
        app.admin_post("/api/v1/admin/products", &bundle).await.assert_field_error(422, "variants[0].components[0].sku");
        let mut good_bundle = bundle.clone();
        good_bundle["variants"][0]["components"] = json!([{"sku": "BASE-60", "quantity": 2}]);
        let kit = app.admin_post("/api/v1/admin/products", &good_bundle).await;
        assert_eq!(kit.status, StatusCode::CREATED, "{}", kit.text());
        let kit_variant = kit.json()["variants"][0]["id"].as_i64().unwrap();
        app.admin_patch(&format!("/api/v1/admin/variants/{kit_variant}"),
            &json!({"components": [{"sku": "KIT-1", "quantity": 1}]})).await
            .assert_field_error(422, "components[0].sku");
        let mut nested = good_bundle.clone();
        nested["slug"] = json!("kit2");
        nested["variants"][0]["sku"] = json!("KIT-2");
        nested["variants"][0]["components"] = json!([{"sku": "KIT-1", "quantity": 1}]);
        app.admin_post("/api/v1/admin/products", &nested).await.assert_field_error(422, "variants[0].components[0].sku");
        let mut p = supplement("x12", "X12");
        p["variants"][0]["components"] = json!([{"sku": "BASE-60", "quantity": 1}]);
        app.admin_post("/api/v1/admin/products", &p).await.assert_field_error(422, "variants[0].components");

        // Nothing of the refused requests was written (the kit is the one success).
        assert_eq!(app.count("products").await, products + 1);
        assert_eq!(app.count("variants").await, variants + 1);
        assert_eq!(app.count("outbox").await, events + 1);
        app.stop().await;
    }

    async fn transport_errors_are_json(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.max_body_bytes = 64 * 1024).await;
        // Oversized body.
        let big = format!("{{\"slug\": \"{}\"}}", "a".repeat(200 * 1024));
        let r = app.admin_post_raw("/api/v1/admin/products", big).await;
        r.assert_field_error(413, "body");
        // Wrong content type.
        let r = app
            .request(Method::POST, "/api/v1/admin/products", Some(ADMIN_TOKEN),
                Some("slug=x".into()), Some("application/x-www-form-urlencoded"))
            .await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(r.json()["error"], "unsupported_media_type");
        // Bad path and query parameters.
        app.admin_get("/api/v1/admin/products/abc").await.assert_field_error(400, "path");
        app.get("/api/v1/products?per_page=1000").await.assert_field_error(422, "per_page");
        app.get("/api/v1/products?page=x").await.assert_field_error(422, "page");
        app.get("/api/v1/products?type=furniture").await.assert_field_error(422, "type");
        // Not found by id.
        let r = app.admin_get("/api/v1/admin/products/999999").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.json()["error"], "not_found");
        app.stop().await;
    }

    async fn lot_input_errors_name_the_field(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        let lot = |m: &str, e: &str, q: i64| json!({"sku": "MAG-60", "location": "AMS-1", "batch": "B1",
            "manufactured_on": m, "expires_on": e, "quantity": q});
        app.admin_post("/api/v1/admin/lots", &lot(&date_in(-10), &date_in(-20), 5)).await
            .assert_field_error(422, "expires_on");
        app.admin_post("/api/v1/admin/lots", &lot("2026-13-40", &date_in(300), 5)).await
            .assert_field_error(422, "manufactured_on");
        app.admin_post("/api/v1/admin/lots", &lot(&date_in(-10), &date_in(300), -5)).await
            .assert_field_error(422, "quantity");
        app.admin_post("/api/v1/admin/lots", &lot(&date_in(-10), &date_in(300), 2)).await;
        // The same batch at the same place again.
        app.admin_post("/api/v1/admin/lots", &lot(&date_in(-10), &date_in(300), 2)).await
            .assert_field_error(409, "batch");
        let mut unknown = lot(&date_in(-10), &date_in(300), 2);
        unknown["sku"] = json!("NOPE");
        app.admin_post("/api/v1/admin/lots", &unknown).await.assert_field_error(422, "sku");
        unknown["sku"] = json!("MAG-60");
        unknown["location"] = json!("MARS-1");
        unknown["batch"] = json!("B2");
        app.admin_post("/api/v1/admin/lots", &unknown).await.assert_field_error(422, "location");
        app.admin_patch("/api/v1/admin/settings", &json!({"min_shelf_life_days": -1})).await
            .assert_field_error(422, "min_shelf_life_days");
        assert_eq!(app.count("lots").await, 1);
        assert_eq!(app.count("stock_ledger").await, 1);
        app.stop().await;
    }
}
