//! Recommendations: behaviour is recorded only with the analytics consent, under a
//! random visitor id (not the customer), and a withdrawn consent or an erasure deletes a
//! customer's; the job computes bought together from paid orders and viewed together
//! from visitors; product pages show what goes well with them (in stock) and the home
//! page puts the visitor's department first.

use crate::common::browser::*;
use crate::common::*;
use crate::payments::{shop_with, tokenize};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

async fn events(app: &TestApp) -> i64 {
    app.kernel.state.recommendations.flush().await;
    app.count("behaviour_events").await
}

async fn compute(app: &TestApp) {
    app.kernel.state.recommendations.flush().await;
    olivine::recommendations::compute(&app.kernel.state.db, &app.kernel.state.clock)
        .await
        .unwrap();
    // What the job does after computing, on this node.
    app.kernel.state.recommendations.forget_related();
}

/// Answers the analytics question in `browser` (from the page that asks).
async fn choose(app: &TestApp, browser: &mut Browser, choice: &str) {
    let page = get(app, browser, "/privacy/analytics").await;
    assert_html(&page, StatusCode::OK);
    let csrf = csrf_of(&page);
    let r = post_form(
        app,
        browser,
        "/privacy/analytics",
        &[("csrf", &csrf), ("choice", choice), ("next", "/")],
    )
    .await;
    assert_eq!(location(&r), "/", "{}", r.text());
}

both_backends! {
    async fn behaviour_is_recorded_only_with_consent_and_forgotten_when_withdrawn(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        wait_until("search is ready", async || app.get("/api/v1/search").await.status == StatusCode::OK).await;
        // Without an answer nothing is recorded, and the page asks.
        let mut anon = Browser::default();
        let page = get(&app, &mut anon, "/p/hydrating-essence-toner").await;
        assert!(page.text().contains(r#"href="/privacy/analytics""#), "{}", page.text());
        assert_eq!(events(&app).await, 0);
        choose(&app, &mut anon, "decline").await;
        get(&app, &mut anon, "/p/hydrating-essence-toner").await;
        assert_eq!(events(&app).await, 0);
        // The page is shared: the question stays in it, and the header request tells the
        // page's script that this visitor answered (so it stays hidden).
        assert_eq!(get(&app, &mut anon, "/account/header").await.json()["analytics_answered"], true);
        let mut fresh = Browser::default();
        assert_eq!(get(&app, &mut fresh, "/account/header").await.json()["analytics_answered"], false);

        // Agreed: views are recorded under the visitor id, which is nobody's account.
        let mut visitor = Browser::default();
        choose(&app, &mut visitor, "allow").await;
        let id = visitor.get("olv_vid").expect("a visitor id");
        for slug in ["hydrating-essence-toner", "gentle-gel-cleanser", "ceramide-barrier-cream", "magnesium-glycinate"] {
            assert_eq!(get(&app, &mut visitor, &format!("/p/{slug}")).await.status, StatusCode::OK);
        }
        assert_eq!(events(&app).await, 4);
        let visitors = sqlx::query_scalar::<_, String>("SELECT DISTINCT visitor FROM behaviour_events")
            .fetch_all(&app.kernel.state.db.pool).await.unwrap();
        assert_eq!(visitors, [id]);
        // Another visitor views two of them: viewed together; the first one's department
        // (skincare, three views) comes first on their home page.
        let mut other = Browser::default();
        choose(&app, &mut other, "allow").await;
        get(&app, &mut other, "/p/hydrating-essence-toner").await;
        get(&app, &mut other, "/p/gentle-gel-cleanser").await;
        compute(&app).await;
        let together = scalar(&app.kernel.state.db,
            "SELECT CAST(MAX(score) AS BIGINT) FROM product_recommendations r
             JOIN products a ON a.id = r.product_id JOIN products b ON b.id = r.related_id
             WHERE r.kind = 'viewed_together' AND a.slug = 'hydrating-essence-toner' AND b.slug = 'gentle-gel-cleanser'").await;
        assert_eq!(together, 2);
        let home = get(&app, &mut visitor, "/").await.text();
        assert!(home.contains(r#"data-preferred="skincare""#), "{home}");
        assert!(!get(&app, &mut anon, "/").await.text().contains("data-preferred"));

        // Apps send events with the shopper's consent only.
        let batch = |consent: bool| json!({"visitor_id": "app-visitor-0123456789", "analytics_consent": consent,
            "events": [{"kind": "viewed", "product": "magnesium-glycinate"}, {"kind": "added", "product": "magnesium-glycinate"}]});
        let r = app.request(Method::POST, "/api/v1/behaviour", None, Some(Body::from(batch(false).to_string())), Some("application/json")).await;
        r.assert_field_error(422, "analytics_consent");
        let r = app.request(Method::POST, "/api/v1/behaviour", None,
            Some(Body::from(json!({"visitor_id": "app-visitor-0123456789", "analytics_consent": true,
                "events": [{"kind": "viewed", "product": "no-such-thing"}]}).to_string())), Some("application/json")).await;
        r.assert_field_error(422, "events[0].product");
        let before = events(&app).await;
        let r = app.request(Method::POST, "/api/v1/behaviour", None, Some(Body::from(batch(true).to_string())), Some("application/json")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        assert_eq!(events(&app).await, before + 2);

        // A signed-in customer who agrees is linked to their visitor id: their behaviour is
        // in their export, and withdrawing the consent deletes it.
        let mut customer = signed_in(&app, "browser@example.com", "Ada").await;
        choose(&app, &mut customer, "allow").await;
        let their_id = customer.get("olv_vid").unwrap();
        get(&app, &mut customer, "/p/collagen-peptides").await;
        get(&app, &mut customer, "/p/magnesium-glycinate").await;
        let theirs = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM behaviour_events WHERE visitor = '{their_id}'");
        app.kernel.state.recommendations.flush().await;
        let count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(theirs.clone())).fetch_one(&app.kernel.state.db.pool).await.unwrap();
        assert_eq!(count, 2);
        let export = get(&app, &mut customer, "/account/export").await;
        assert!(export.text().contains("collagen-peptides") && export.text().contains(&their_id), "{}", export.text());
        choose(&app, &mut customer, "decline").await;
        assert!(!customer.has("olv_vid"));
        let count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(theirs)).fetch_one(&app.kernel.state.db.pool).await.unwrap();
        assert_eq!(count, 0);
        // The account's consent wins over a browser cookie that still says yes.
        customer.set("olv_analytics", "yes", "/");
        customer.set("olv_vid", &their_id, "/");
        get(&app, &mut customer, "/p/collagen-peptides").await;
        assert_eq!(scalar(&app.kernel.state.db, "SELECT CAST(COUNT(*) AS BIGINT) FROM customer_visitors").await, 0);
        app.stop().await;
    }

    async fn products_bought_together_go_well_with_each_other_while_in_stock(backend: Backend) {
        let shop = shop_with(backend, |_| {}).await;
        let app = &shop.app;
        let r = app.admin_post("/api/v1/admin/products", &supplement("zinc", "ZN")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let r = app.admin_post("/api/v1/admin/lots", &json!({"sku": "ZN-60", "location": "AMS-1",
            "batch": "Z1", "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": 5})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let token = app.customer_token("pair@example.com").await;
        let r = app.request(Method::POST, "/api/v1/carts", Some(&token), None, None).await;
        let cart = r.json()["id"].as_str().unwrap().to_owned();
        for sku in ["MAG-60", "ZN-60"] {
            let r = app.request(Method::POST, &format!("/api/v1/carts/{cart}/lines"), Some(&token),
                Some(Body::from(json!({"sku": sku, "quantity": 1}).to_string())), Some("application/json")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
        let card = tokenize(shop.processor, "4242424242424242").await;
        let body = json!({"shipping_method": "standard", "payment_token": card,
            "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Utrecht", "postal_code": "3511 AB", "country": "NL"}});
        let request = Request::builder().method(Method::POST).uri(format!("/api/v1/carts/{cart}/checkout"))
            .header(header::CONTENT_TYPE, "application/json").header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("idempotency-key", "pair-1").body(Body::from(body.to_string())).unwrap();
        let r = app.send(request).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        app.settle().await;
        wait_until("both are searchable", async || {
            app.get("/api/v1/search?in_stock=true").await.json()["total"] == 2
        }).await;
        compute(app).await;
        let r = app.get("/api/v1/products/mag/recommendations").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["goes_well_with"][0]["slug"], "zinc", "{}", r.text());
        let page = app.get("/p/mag").await.text();
        assert!(page.contains(r#"id="goes-well-with""#) && page.contains(r#"href="/p/zinc""#), "{page}");
        assert_eq!(app.get("/api/v1/products/nothing/recommendations").await.status, StatusCode::NOT_FOUND);
        shop.app.stop().await;
    }
}
