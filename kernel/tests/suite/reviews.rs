//! Product reviews end to end: only a buyer reviews, once; text with an email address or
//! a card number is refused; reviews wait for moderation; a published one shows in the
//! product JSON and page (the cache drops the product on the event) with the average,
//! escaped; staff reject with a reason the author reads; the export carries them and
//! erasure removes them (or keeps them anonymous when the shop says so).

use crate::common::*;
use crate::payments::{Shop, shop_with, tokenize};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

/// A signed-in customer who bought one MAG-60 (paid): their token.
async fn buyer(shop: &Shop, email: &str) -> String {
    let app = &shop.app;
    let token = app.customer_token(email).await;
    let cart = as_customer(app, &token, Method::POST, "/api/v1/carts", None)
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = as_customer(
        app,
        &token,
        Method::POST,
        &format!("/api/v1/carts/{cart}/lines"),
        Some(json!({"sku": "MAG-60", "quantity": 1})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let card = tokenize(shop.processor, "4242424242424242").await;
    let body = json!({"shipping_method": "standard", "payment_token": card,
        "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Utrecht", "postal_code": "3511 AB", "country": "NL"}});
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/carts/{cart}/checkout"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("idempotency-key", format!("review-{cart}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["status"], "paid");
    token
}

async fn write(app: &TestApp, token: &str, body: Value) -> TestResponse {
    as_customer(
        app,
        token,
        Method::POST,
        "/api/v1/products/mag/reviews",
        Some(body),
    )
    .await
}

async fn product_reviews(app: &TestApp) -> Value {
    app.settle().await;
    let r = app.get("/api/v1/products/mag").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["reviews"].clone()
}

both_backends! {
    async fn buyers_review_once_and_staff_publish_or_reject(backend: Backend) {
        let shop = shop_with(backend, |_| {}).await;
        let app = &shop.app;
        let ada = buyer(&shop, "ada@example.com").await;
        let stranger = app.customer_token("stranger@example.com").await;
        let good = json!({"rating": 4, "title": "Sleep <b>better</b>", "body": "Two weeks in and I sleep through the night."});
        let r = write(app, &stranger, good.clone()).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        write(app, &ada, json!({"rating": 5, "title": "Great", "body": "Mail me: ada@example.com"})).await
            .assert_field_error(422, "body");
        write(app, &ada, json!({"rating": 5, "title": "Great", "body": "charged 4242 4242 4242 4242 twice"})).await
            .assert_field_error(422, "body");
        write(app, &ada, json!({"rating": 6, "title": "Great", "body": "ok"})).await
            .assert_field_error(422, "rating");
        let r = write(app, &ada, good.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let review = r.json();
        assert_eq!((review["status"].as_str(), review["author_name"].as_str()), (Some("pending"), Some("Shopper")), "{review}");
        let id = review["id"].as_i64().unwrap();
        assert_eq!(write(app, &ada, good).await.status, StatusCode::CONFLICT);
        // Waiting for moderation: not shown.
        assert_eq!(product_reviews(app).await["count"], 0);
        let queue = app.admin_get("/api/v1/admin/reviews").await;
        assert_eq!(queue.json().as_array().map(Vec::len), Some(1), "{}", queue.text());
        // Support staff read the queue but do not moderate.
        let support = app.staff_token("support").await;
        let r = app.request(Method::POST, &format!("/api/v1/admin/reviews/{id}/moderation"), Some(&support),
            Some(Body::from(json!({"decision": "publish"}).to_string())), Some("application/json")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        let r = app.admin_post(&format!("/api/v1/admin/reviews/{id}/moderation"), &json!({"decision": "publish"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let shown = product_reviews(app).await;
        assert_eq!((shown["count"].as_i64(), shown["average_rating"].as_f64()), (Some(1), Some(4.0)), "{shown}");
        assert_eq!(shown["latest"][0]["title"], "Sleep <b>better</b>");
        assert_eq!(app.get("/api/v1/products/mag/reviews").await.json().as_array().map(Vec::len), Some(1));
        // The product page shows it, escaped.
        let page = app.get("/p/mag").await;
        assert!(page.text().contains("Sleep &lt;b&gt;better&lt;/b&gt;"), "{}", page.text());
        assert!(page.text().contains(r#"data-average="4""#), "{}", page.text());
        assert_eq!(app.admin_post(&format!("/api/v1/admin/reviews/{id}/moderation"), &json!({"decision": "publish"})).await.status,
            StatusCode::CONFLICT);
        // Rejected (taken down): gone from the product, the author reads why.
        app.admin_post(&format!("/api/v1/admin/reviews/{id}/moderation"), &json!({"decision": "reject", "reason": " "})).await
            .assert_field_error(422, "reason");
        let r = app.admin_post(&format!("/api/v1/admin/reviews/{id}/moderation"),
            &json!({"decision": "reject", "reason": "Health claims we cannot publish"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(product_reviews(app).await["count"], 0);
        let mine = as_customer(app, &ada, Method::GET, "/api/v1/account/reviews", None).await.json();
        assert_eq!((mine[0]["status"].as_str(), mine[0]["reject_reason"].as_str()),
            (Some("rejected"), Some("Health claims we cannot publish")), "{mine}");
        assert_eq!(scalar(&app.kernel.state.db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE action IN ('review.published', 'review.rejected')").await, 2);
        shop.app.stop().await;
    }

    async fn the_export_carries_reviews_and_erasure_removes_or_anonymises_them(backend: Backend) {
        let shop = shop_with(backend, |_| {}).await;
        let app = &shop.app;
        let mut ids = Vec::new();
        for (email, title) in [("gone@example.com", "Gone soon"), ("kept@example.com", "Kept anonymous")] {
            let token = buyer(&shop, email).await;
            let r = write(app, &token, json!({"rating": 5, "title": title, "body": "Works.", "author_name": "Ada L."})).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
            let id = r.json()["id"].as_i64().unwrap();
            let r = app.admin_post(&format!("/api/v1/admin/reviews/{id}/moderation"), &json!({"decision": "publish"})).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            let export = as_customer(app, &token, Method::GET, "/api/v1/account/export", None).await;
            assert!(export.text().contains(title), "{}", export.text());
            ids.push(token);
        }
        assert_eq!(product_reviews(app).await["count"], 2);
        let erase = |token: String| async move {
            let r = as_customer(app, &token, Method::POST, "/api/v1/account/erasure",
                Some(json!({"password": "correct horse battery", "confirm": "erase my account"}))).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        };
        // By default an erased customer's reviews go.
        erase(ids[0].clone()).await;
        let shown = product_reviews(app).await;
        assert_eq!(shown["count"], 1, "{shown}");
        assert_eq!(shown["latest"][0]["title"], "Kept anonymous");
        // A shop that keeps them keeps rating and text, without the name.
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"reviews_kept_on_erasure": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        erase(ids[1].clone()).await;
        let shown = product_reviews(app).await;
        assert_eq!(shown["count"], 1, "{shown}");
        assert!(shown["latest"][0]["author_name"].is_null(), "{shown}");
        assert!(!app.get("/p/mag").await.text().contains("Ada L."));
        shop.app.stop().await;
    }

    async fn a_buyer_reviews_through_the_storefront(backend: Backend) {
        use crate::common::browser::*;
        let shop = shop_with(backend, |_| {}).await;
        let app = &shop.app;
        let mut browser = Browser::default();
        let r = get(app, &mut browser, "/p/mag/review").await;
        assert!(location(&r).starts_with("/account/sign-in"), "anonymous shoppers sign in first");
        let token = buyer(&shop, "form@example.com").await;
        drop(token);
        let r = sign_in(app, &mut browser, "form@example.com", "correct horse battery", None).await;
        assert!(r.status.is_redirection(), "{}", r.text());
        let page = get(app, &mut browser, "/p/mag").await;
        assert!(page.text().contains(r#"href="/p/mag/review""#), "{}", page.text());
        let form = get(app, &mut browser, "/p/mag/review").await;
        assert_html(&form, StatusCode::OK);
        let csrf = csrf_of(&form);
        let r = post_form(app, &mut browser, "/p/mag/review",
            &[("csrf", &csrf), ("rating", "5"), ("title", "Lovely"), ("body", "write to me at x@y.com"), ("author_name", "")]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("email address"), "{}", r.text());
        let r = post_form(app, &mut browser, "/p/mag/review",
            &[("csrf", &csrf), ("rating", "5"), ("title", "Lovely"), ("body", "Tastes of nothing, works."), ("author_name", "")]).await;
        assert_eq!(location(&r), "/account/reviews?sent=1");
        let mine = get(app, &mut browser, "/account/reviews").await;
        assert!(mine.text().contains(r#"data-status="pending""#), "{}", mine.text());
        let r = post_form(app, &mut browser, "/p/mag/review",
            &[("csrf", &csrf), ("rating", "4"), ("title", "Again"), ("body", "Twice?"), ("author_name", "")]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("reviewed this product already"), "{}", r.text());
        shop.app.stop().await;
    }
}

both_backends! {
    async fn catalog_staff_moderate_from_the_admin_with_the_reason_beside_its_field(backend: Backend) {
        use crate::admin_ui::{assert_page, signed_in_as, submit};
        use crate::common::browser::{get, location};
        let shop = shop_with(backend, |_| {}).await;
        let app = &shop.app;
        let ada = buyer(&shop, "ada-admin@example.com").await;
        let bo = buyer(&shop, "bo-admin@example.com").await;
        let first = write(app, &ada, json!({"rating": 5, "title": "Calm <nights>", "body": "Works for me."})).await.json()["id"].as_i64().unwrap();
        let second = write(app, &bo, json!({"rating": 2, "title": "Meh", "body": "Did nothing."})).await.json()["id"].as_i64().unwrap();
        let mut catalog = signed_in_as(app, "catalog").await;
        let queue = get(app, &mut catalog, "/admin/reviews").await;
        assert_page(&queue, StatusCode::OK, "the queue");
        let text = queue.text();
        assert!(text.contains("Calm &lt;nights&gt;") && text.contains(&format!("id=\"review-{second}\"")), "{text}");
        let r = submit(app, &mut catalog, "/admin/reviews", &format!("/admin/reviews/{first}/moderation"), &[("decision", "publish")]).await;
        assert_eq!(location(&r), "/admin/reviews?done=publish");
        assert_eq!(product_reviews(app).await["count"], 1);
        // A rejection without a reason: said under this review's reason field.
        let r = submit(app, &mut catalog, "/admin/reviews", &format!("/admin/reviews/{second}/moderation"), &[("decision", "reject"), ("reason", "")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "no reason");
        assert!(r.text().contains("id=\"f-reason-error\""), "{}", r.text());
        let r = submit(app, &mut catalog, "/admin/reviews", &format!("/admin/reviews/{second}/moderation"), &[("decision", "reject"), ("reason", "Off topic")]).await;
        assert_eq!(location(&r), "/admin/reviews?done=reject");
        let rejected = get(app, &mut catalog, "/admin/reviews?status=rejected").await.text();
        assert!(rejected.contains("Off topic") && rejected.contains("Meh"), "{rejected}");
        assert!(get(app, &mut catalog, "/admin/reviews").await.text().contains("No review here."));
        // Support reads the queue, without the buttons.
        let mut support = signed_in_as(app, "support").await;
        let r = get(app, &mut support, "/admin/reviews?status=published").await;
        assert_page(&r, StatusCode::OK, "reviews for support");
        assert!(r.text().contains("Calm") && !r.text().contains("/moderation"), "{}", r.text());
    }
}
