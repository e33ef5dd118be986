//! Operational endpoints and the cache's promise: a cached product read touches no
//! database.

use crate::common::*;
use axum::http::StatusCode;

both_backends! {
    async fn health_readiness_and_metrics(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        assert_eq!(app.get("/healthz").await.json()["status"], "ok");
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status, StatusCode::OK);
        assert_eq!(ready.json()["status"], "ready");
        // Other tests' kernels count into the same series: the two requests must add two.
        let requests = r#"olivine_http_requests_total{method="GET",route="/api/v1/products/{slug}",status="200"}"#;
        let timed = r#"olivine_http_request_duration_seconds_count{method="GET",route="/api/v1/products/{slug}"}"#;
        let requests_before = app.metric(requests).await;
        let timed_before = app.metric(timed).await;
        app.get("/api/v1/products/magnesium-glycinate").await;
        app.get("/api/v1/products/magnesium-glycinate").await;
        let metrics = app.get("/metrics").await;
        assert_eq!(metrics.status, StatusCode::OK);
        let text = metrics.text();
        assert!(metric_value(&text, requests) >= requests_before + 2.0, "{requests} was {requests_before}: {text}");
        assert!(metric_value(&text, timed) >= timed_before + 2.0, "{timed} was {timed_before}: {text}");
        assert!(text.contains("olivine_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/products/{slug}\""));
        assert!(text.contains("olivine_db_pool_connections{pool=\"primary\",state=\"idle\"}"), "{text}");
        assert!(text.contains("olivine_db_pool_connections{pool=\"jobs\",state=\"in_use\"}"), "{text}");
        assert!(text.contains("olivine_jobs{state=\"dead\"}"), "{text}");
        assert!(text.contains("olivine_jobs_oldest_queued_age_seconds"), "{text}");
        assert!(text.contains("olivine_bus_log_head"), "{text}");
        assert!(text.contains("olivine_bus_consumer_lag_events{consumer=\"cache-invalidator\",kind=\"node-local\"}"), "{text}");
        assert!(text.contains("olivine_db_connection_acquisitions_total"));
        app.stop().await;
    }

    async fn a_cache_hit_touches_no_database(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        // Let the seed's events finish invalidating caches first.
        app.settle().await;
        let path = "/api/v1/products/magnesium-glycinate";
        let first = app.get(path).await;
        assert_eq!(first.status, StatusCode::OK);
        let before = app.kernel.state.db.connection_acquisitions();
        for _ in 0..100 {
            let hit = app.get(path).await;
            assert_eq!(hit.status, StatusCode::OK);
            assert_eq!(hit.body, first.body);
        }
        assert_eq!(app.kernel.state.db.connection_acquisitions(), before, "a cache hit acquired a connection");
        // The storefront page is served from the same cache.
        let page = app.get("/p/magnesium-glycinate").await;
        assert_eq!(page.status, StatusCode::OK);
        let before = app.kernel.state.db.connection_acquisitions();
        app.get("/p/magnesium-glycinate").await;
        assert_eq!(app.kernel.state.db.connection_acquisitions(), before);
        app.stop().await;
    }

    async fn a_stock_change_refreshes_the_cached_product_in_place(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        app.settle().await;
        let path = "/api/v1/products/magnesium-glycinate";
        let first = app.get(path).await.json();
        let variant = &first["variants"][0];
        let sku = variant["sku"].as_str().unwrap().to_owned();
        let quantity = variant["availability"]["sellable_quantity"].as_i64().unwrap();
        let lots = app.admin_get(&format!("/api/v1/admin/lots?sku={sku}")).await.json();
        let lot = lots.as_array().and_then(|l| l.first()).expect("a lot")["id"].as_i64().unwrap();
        let r = app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &serde_json::json!({"delta": -3, "reason": "damaged"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        // The consumer read the stock again and replaced the entry: the next read is a
        // hit (no connection) and tells the new quantity.
        let before = app.kernel.state.db.connection_acquisitions();
        let after = app.get(path).await.json();
        assert_eq!(app.kernel.state.db.connection_acquisitions(), before, "the read after a stock change was a miss");
        assert_eq!(after["variants"][0]["availability"]["sellable_quantity"], quantity - 3, "{after}");
        assert_eq!(after["name"], first["name"]);
        // A catalog change still drops the entry: the next read loads the new name.
        let id = first["id"].as_i64().unwrap();
        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"), &serde_json::json!({"name": "Magnesium Glycinate Plus"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        assert_eq!(app.get(path).await.json()["name"], "Magnesium Glycinate Plus");
        app.stop().await;
    }
}
