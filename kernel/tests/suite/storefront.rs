//! The storefront as a shopper's browser sees it.

use crate::common::*;
use axum::http::StatusCode;
use serde_json::json;

both_backends! {
    async fn shopper_pages_render(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        let home = app.get("/").await;
        assert_eq!(home.status, StatusCode::OK);
        let html = home.text();
        for link in ["/c/supplements", "/c/skincare", "/c/bundles", "href=\"/assets/site."] {
            assert!(html.contains(link), "home lacks {link}");
        }
        assert!(html.contains("/p/"), "home shows products");

        for category in ["supplements", "skincare", "bundles"] {
            let page = app.get(&format!("/c/{category}")).await;
            assert_eq!(page.status, StatusCode::OK, "{category}");
            assert!(page.text().contains("/p/"), "{category} lists products");
        }
        assert_eq!(app.get("/c/supplements?page=abc").await.status, StatusCode::OK);
        assert_eq!(app.get("/c/no-such-category").await.status, StatusCode::NOT_FOUND);

        // A supplement: variants with prices, stock, best-before, facts and disclaimer.
        let product = app.get("/api/v1/products/magnesium-glycinate").await.json();
        let variant = &product["variants"][0];
        let page = app.get(&format!("/p/magnesium-glycinate?variant={}", variant["id"])).await;
        assert_eq!(page.status, StatusCode::OK);
        let html = page.text();
        assert!(html.contains("Magnesium Glycinate"));
        assert!(html.contains(variant["sku"].as_str().unwrap()));
        for v in product["variants"].as_array().unwrap() {
            assert!(html.contains(&format!("?variant={}", v["id"])), "variant selector lacks {}", v["sku"]);
        }
        assert!(html.contains("Supplement facts"));
        assert!(html.contains("have not been evaluated"), "disclaimer shown");
        assert!(html.contains("Best before"));
        assert!(html.contains("€"));

        // A bundle lists what is inside.
        let bundles = app.get("/api/v1/products?type=bundle").await.json();
        let slug = bundles["items"][0]["slug"].as_str().unwrap().to_owned();
        let page = app.get(&format!("/p/{slug}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text().contains("inside"));

        assert_eq!(app.get("/p/no-such-product").await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get("/no/such/page").await.status, StatusCode::NOT_FOUND);
        let css = app.get("/assets/site.css").await;
        assert!(css.headers["content-type"].to_str().unwrap().starts_with("text/css"));
        app.stop().await;
    }

    async fn shop_text_is_escaped(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let mut p = supplement("xss", "XSS");
        p["name"] = json!("<script>alert(1)</script>");
        p["description"] = json!("<img src=x onerror=alert(2)>");
        assert_eq!(app.admin_post("/api/v1/admin/products", &p).await.status, StatusCode::CREATED);
        let html = app.get("/p/xss").await.text();
        assert!(!html.contains("<script>alert(1)"));
        assert!(!html.contains("<img src=x"));
        assert!(html.contains("&lt;script&gt;"));
        app.stop().await;
    }
}
