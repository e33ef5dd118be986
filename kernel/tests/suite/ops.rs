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
}
