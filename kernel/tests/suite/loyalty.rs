//! Loyalty end to end: the first-party `loyalty-points` rule credits paid orders through
//! the bus (once, however often the event comes), the points wait out the pending
//! period on the kernel's clock, refunds take back their share, checkout spends points
//! under a lock (two concurrent checkouts cannot spend them twice), cancellations and
//! declines give them back, a failing rule is retried and dead-lettered and credits once
//! when fixed, and balances expire after months without an order. With the loyalty world
//! 0.2, rules compose: `loyalty-points` tiers by the customer's last twelve months and
//! `category-campaign` adds points for a category's lines within a window on the
//! kernel's clock, while a rule built for 0.1 still credits beside them.

use std::time::Duration;

use crate::common::*;
use crate::payments::{Shop, shop_with, tokenize};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use olivine::bus::ClusterOnceConsumer;
use serde_json::{Value, json};
use sqlx::Row;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The payments shop without the session sweep (the tests move the clock by weeks).
async fn loyalty_shop(
    backend: Backend,
    adjust: impl FnOnce(&mut olivine::config::ServeConfig),
) -> Shop {
    shop_with(backend, |c| {
        c.session_sweep_secs = 0;
        adjust(c);
    })
    .await
}

async fn install_rule(app: &TestApp, dir: &str, crate_name: &str, settings: Value) {
    let r = app
        .admin_post(
            "/api/v1/admin/plugins",
            &plugin_upload(dir, crate_name, |m| m),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let id = dir.rsplit('/').next().unwrap();
    let r = app
        .admin_patch(
            &format!("/api/v1/admin/plugins/{id}"),
            &json!({"enabled": true, "settings": settings}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.settle().await;
}

async fn loyalty(app: &TestApp, token: &str) -> Value {
    let r = as_customer(app, token, Method::GET, "/api/v1/account/loyalty", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

async fn pseudonym(app: &TestApp, token: &str) -> String {
    let r = as_customer(app, token, Method::GET, "/api/v1/account/me", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["pseudonym"].as_str().unwrap().to_owned()
}

/// A cart with `quantity` MAG-60 (19.99 each), made with `token` (or as a guest).
async fn cart(app: &TestApp, token: Option<&str>, quantity: u32) -> String {
    let r = app
        .request(Method::POST, "/api/v1/carts", token, None, None)
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/carts/{id}/lines"),
            token,
            Some(Body::from(
                json!({"sku": "MAG-60", "quantity": quantity}).to_string(),
            )),
            Some("application/json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    id
}

async fn checkout(
    shop: &Shop,
    token: &str,
    cart: &str,
    card: &str,
    redeem_points: Option<i64>,
) -> TestResponse {
    let card_token = tokenize(shop.processor, card).await;
    let mut body = json!({"shipping_method": "standard", "payment_token": card_token,
        "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Utrecht", "postal_code": "3511 AB", "country": "NL"}});
    if let Some(points) = redeem_points {
        body["redeem_points"] = json!(points);
    }
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/carts/{cart}/checkout"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("idempotency-key", format!("loyalty-{cart}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    shop.app.send(request).await
}

async fn ledger_rows(app: &TestApp, rule: &str) -> Vec<(i64, String)> {
    sqlx::query("SELECT points, kind FROM loyalty_ledger WHERE rule = $1 ORDER BY id")
        .bind(rule)
        .fetch_all(&app.kernel.state.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.try_get(0).unwrap(), row.try_get(1).unwrap()))
        .collect()
}

/// The outbox event of type `event_type` about order `number`, as consumers get it.
async fn order_event(app: &TestApp, event_type: &str, number: &str) -> olivine::bus::Event {
    outbox_event(app, event_type, number).await
}

/// Delivers `event` to the loyalty processor again, as a redelivery would.
async fn redeliver(app: &TestApp, event: &olivine::bus::Event) {
    let state = &app.kernel.state;
    let consumer = olivine::loyalty::rules::LoyaltyConsumer {
        plugins: std::sync::Arc::downgrade(&state.plugins),
        clock: state.clock.clone(),
    };
    let mut tx = state.db.begin().await.unwrap();
    consumer.handle(event, &mut tx).await.unwrap();
    tx.commit().await.unwrap();
}

/// A rule's ledger entries, oldest first: (points, reason).
async fn ledger_reasons(app: &TestApp, rule: &str) -> Vec<(i64, String)> {
    sqlx::query("SELECT points, reason FROM loyalty_ledger WHERE rule = $1 ORDER BY id")
        .bind(rule)
        .fetch_all(&app.kernel.state.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| (row.try_get(0).unwrap(), row.try_get(1).unwrap()))
        .collect()
}

/// Places and pays an order of `quantity` MAG-60 (€19.99 each, €5 shipping) as
/// `token`, and lets the loyalty processor see it.
async fn paid_order(shop: &Shop, token: &str, quantity: u32) {
    let c = cart(&shop.app, Some(token), quantity).await;
    let r = checkout(shop, token, &c, "4242424242424242", None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["status"], "paid", "{}", r.text());
    shop.app.settle().await;
}

async fn adjust(app: &TestApp, who: &str, points: i64, reason: &str) -> TestResponse {
    app.admin_post(
        &format!("/api/v1/admin/customers/{who}/loyalty/adjustments"),
        &json!({"points": points, "reason": reason}),
    )
    .await
}

both_backends! {
    async fn paid_orders_earn_once_wait_pending_and_refunds_take_back_their_share(backend: Backend) {
        let shop = loyalty_shop(backend, |_| {}).await;
        let app = &shop.app;
        install_rule(app, "loyalty-points", "loyalty_points", json!({"points_per_unit": "1"})).await;
        let token = app.customer_token("earner@example.com").await;
        let c = cart(app, Some(&token), 2).await;
        let r = checkout(&shop, &token, &c, "4242424242424242", None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let order = r.json();
        assert_eq!(order["status"], "paid", "{order}");
        assert_eq!(order["total_minor"], 4498);
        let number = order["number"].as_str().unwrap().to_owned();
        app.settle().await;
        // €44.98 paid: 44 points, pending for the shop's 14 days.
        let points = loyalty(app, &token).await;
        assert_eq!((points["balance"].as_i64(), points["pending"].as_i64()), (Some(0), Some(44)), "{points}");
        assert_eq!(points["entries"][0]["state"], "pending", "{points}");
        assert_eq!(points["entries"][0]["order_number"], number.as_str());
        assert!(points["entries"][0]["reason"].as_str().unwrap().starts_with("Order paid"), "{points}");
        // The rule's decision records the points it credited and why.
        let credited = async || {
            let all = app.admin_get("/api/v1/admin/plugins/loyalty-points/decisions").await.json();
            all.as_array().unwrap().iter().find(|d| d["outcome"] == "ok" && d["detail"]["points"] == 44).cloned()
        };
        wait_until("the rule's decision recorded", async || credited().await.is_some()).await;
        let decision = credited().await.unwrap();
        assert_eq!(decision["detail"]["entries"][0]["reason"], points["entries"][0]["reason"], "{decision}");
        assert!(!decision.to_string().contains("earner@example.com"), "{decision}");
        // The same event delivered three times credits once.
        let paid = order_event(app, "order.paid", &number).await;
        for _ in 0..3 {
            redeliver(app, &paid).await;
        }
        assert_eq!(ledger_rows(app, "loyalty-points").await, [(44, "earned".to_owned())]);
        // After the pending period the points are spendable.
        app.kernel.state.clock.advance(15 * DAY);
        let points = loyalty(app, &token).await;
        assert_eq!((points["balance"].as_i64(), points["pending"].as_i64()), (Some(44), Some(0)), "{points}");
        assert_eq!(points["balance_value_minor"], 44);
        // Refunding half takes back half; the rest, the rest (of a captured payment).
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "fulfilled", "tracking_number": "TRK-1"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/refunds"), &json!({"amount_minor": 2249})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        assert_eq!(loyalty(app, &token).await["balance"], 22);
        let refund = order_event(app, "order.refunded", &number).await;
        redeliver(app, &refund).await;
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/refunds"), &json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        let points = loyalty(app, &token).await;
        assert_eq!(points["balance"], 0, "{points}");
        assert_eq!(
            ledger_rows(app, "loyalty-points").await,
            [(44, "earned".to_owned()), (-22, "reversed".to_owned()), (-22, "reversed".to_owned())]
        );
        shop.app.stop().await;
    }

    async fn points_pay_part_of_an_order_once_even_under_concurrent_checkouts(backend: Backend) {
        let shop = loyalty_shop(backend, |_| {}).await;
        let app = &shop.app;
        let token = app.customer_token("spender@example.com").await;
        let who = pseudonym(app, &token).await;
        let r = adjust(app, &who, 1000, "Welcome gift").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(r.json()["balance"], 1000);
        let mine = cart(app, Some(&token), 2).await;
        // The quote prices the points as a cart adjustment, and refuses what the rules do not allow.
        let quote = |points: i64| {
            let (app, token, mine) = (app, token.clone(), mine.clone());
            async move {
                as_customer(app, &token, Method::POST, &format!("/api/v1/carts/{mine}/checkout-quote"),
                    Some(json!({"country": "NL", "redeem_points": points}))).await
            }
        };
        let r = quote(1000).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let q = r.json();
        assert_eq!((q["points_redeemed"].as_i64(), q["total_minor"].as_i64()), (Some(1000), Some(3498)), "{q}");
        assert_eq!(q["cart_adjustments"][0]["rule"], "loyalty", "{q}");
        quote(99).await.assert_field_error(422, "redeem_points");
        quote(1001).await.assert_field_error(422, "redeem_points");
        quote(-5).await.assert_field_error(422, "redeem_points");
        // A guest cannot spend points.
        let guest = cart(app, None, 1).await;
        let r = app.request(Method::POST, &format!("/api/v1/carts/{guest}/checkout-quote"), None,
            Some(Body::from(json!({"country": "NL", "redeem_points": 100}).to_string())), Some("application/json")).await;
        r.assert_field_error(422, "redeem_points");
        // Two checkouts of two carts spend the same 1000 points at once: one wins.
        let other = cart(app, None, 2).await;
        let (a, b) = tokio::join!(
            checkout(&shop, &token, &mine, "4242424242424242", Some(1000)),
            checkout(&shop, &token, &other, "4242424242424242", Some(1000)),
        );
        let statuses = [a.status, b.status];
        assert!(statuses.contains(&StatusCode::CREATED), "{} / {}", a.text(), b.text());
        let lost = if a.status == StatusCode::CREATED { &b } else { &a };
        assert!(lost.status == StatusCode::CONFLICT || lost.status == StatusCode::UNPROCESSABLE_ENTITY, "{}", lost.text());
        assert!(lost.text().contains("redeem_points"), "{}", lost.text());
        let won = if a.status == StatusCode::CREATED { a.json() } else { b.json() };
        assert_eq!((won["points_redeemed"].as_i64(), won["total_minor"].as_i64()), (Some(1000), Some(3498)), "{won}");
        assert_eq!(won["status"], "paid");
        let points = loyalty(app, &token).await;
        assert_eq!(points["balance"], 0, "{points}");
        // Cancelling the order gives the points back.
        let number = won["number"].as_str().unwrap();
        let r = app.admin_post(&format!("/api/v1/admin/orders/{number}/transitions"), &json!({"to": "cancelled"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(loyalty(app, &token).await["balance"], 1000);
        app.settle().await;
        assert_eq!(loyalty(app, &token).await["balance"], 1000, "the consumer gives back nothing twice");
        // A declined payment gives them back too, and the shopper can spend them again.
        let again = cart(app, Some(&token), 2).await;
        let r = checkout(&shop, &token, &again, "4000000000000002", Some(500)).await;
        assert!(r.status.is_client_error(), "{}", r.text());
        assert_eq!(loyalty(app, &token).await["balance"], 1000);
        let kinds: Vec<String> = loyalty(app, &token).await["entries"].as_array().unwrap().iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kinds, ["restored", "spent", "restored", "spent", "adjusted"]);
        shop.app.stop().await;
    }

    async fn a_failing_rule_is_retried_then_dead_and_credits_once_when_fixed(backend: Backend) {
        let shop = loyalty_shop(backend, |c| c.cluster.job_retry_base_ms = 1).await;
        let app = &shop.app;
        install_rule(app, "testing/chaos-loyalty", "chaos_loyalty", json!({"mode": "trap"})).await;
        let token = app.customer_token("unlucky@example.com").await;
        let c = cart(app, Some(&token), 1).await;
        let r = checkout(&shop, &token, &c, "4242424242424242", None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        app.settle().await;
        // The rule's calls went to jobs (one per event it failed on: the customer's
        // registration and the order's payment); the bus did not wait for them.
        let mut dead = Vec::new();
        wait_until("the order's loyalty job is dead", async || {
            let r = app.admin_get("/api/v1/admin/jobs?kind=loyalty.rule&state=dead").await;
            dead = r.json()["jobs"].as_array().cloned().unwrap_or_default();
            dead.iter().any(|j| j["payload"]["input"]["kind"] == "order.paid")
        }).await;
        let job = dead.iter().find(|j| j["payload"]["input"]["kind"] == "order.paid").unwrap().clone();
        assert!(job["last_error"].as_str().unwrap_or("").contains("chaos-loyalty"), "{job}");
        assert_eq!(ledger_rows(app, "chaos-loyalty").await, []);
        assert_eq!(scalar(&app.kernel.state.db, "SELECT CAST(COUNT(*) AS BIGINT) FROM bus_dead_letters").await, 0);
        // Fixed (and enabled again: five failures in a row disabled it), the jobs are
        // retried and the order's credits once.
        let r = app.admin_patch("/api/v1/admin/plugins/chaos-loyalty", &json!({"enabled": true, "settings": {"mode": "ok"}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        for dead_job in &dead {
            let id = dead_job["id"].as_i64().unwrap();
            let r = app.admin_post(&format!("/api/v1/admin/jobs/{id}/retry"), &json!({})).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
        wait_until("the fixed rule credits", async || !ledger_rows(app, "chaos-loyalty").await.is_empty()).await;
        let id = job["id"].as_i64().unwrap();
        let r = app.admin_post(&format!("/api/v1/admin/jobs/{id}/retry"), &json!({})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
        let number = scalar_text(app, "SELECT number FROM orders").await;
        redeliver(app, &order_event(app, "order.paid", &number).await).await;
        assert_eq!(ledger_rows(app, "chaos-loyalty").await, [(7, "earned".to_owned())]);
        // The registration's job (nothing to credit in mode ok) is done too.
        wait_until("every retried loyalty job is done", async || {
            scalar(&app.kernel.state.db, "SELECT CAST(COUNT(*) AS BIGINT) FROM jobs WHERE kind = 'loyalty.rule'").await == 0
        }).await;
        // A rule that answers more than the shop's bound is refused the same way.
        let r = app.admin_patch("/api/v1/admin/plugins/chaos-loyalty", &json!({"settings": {"mode": "too-many-points"}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        let c = cart(app, Some(&token), 1).await;
        let r = checkout(&shop, &token, &c, "4242424242424242", None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        app.settle().await;
        wait_until("the flood is refused into a job", async || {
            scalar(&app.kernel.state.db, "SELECT CAST(COUNT(*) AS BIGINT) FROM jobs WHERE kind = 'loyalty.rule'").await == 1
        }).await;
        assert_eq!(ledger_rows(app, "chaos-loyalty").await, [(7, "earned".to_owned())]);
        shop.app.stop().await;
    }

    async fn staff_corrections_are_checked_and_audited_and_balances_expire(backend: Backend) {
        let shop = loyalty_shop(backend, |c| c.loyalty_expiry_scan_secs = 60).await;
        let app = &shop.app;
        let token = app.customer_token("idle@example.com").await;
        let who = pseudonym(app, &token).await;
        adjust(app, &who, 0, "nothing").await.assert_field_error(422, "points");
        adjust(app, &who, 10, " ").await.assert_field_error(422, "reason");
        assert_eq!(adjust(app, "c_nobody", 10, "Gift").await.status, StatusCode::NOT_FOUND);
        let r = adjust(app, &who, 500, "Apology for a late parcel").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let r = adjust(app, &who, -501, "Too much").await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        let r = app.admin_get(&format!("/api/v1/admin/customers/{who}/loyalty")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["entries"][0]["reason"], "Apology for a late parcel");
        assert_eq!(scalar(&app.kernel.state.db, "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE action = 'loyalty.adjusted'").await, 1);
        // Support staff read a ledger but do not change it.
        let support = app.staff_token("support").await;
        let r = app.request(Method::GET, &format!("/api/v1/admin/customers/{who}/loyalty"), Some(&support), None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = app.request(Method::POST, &format!("/api/v1/admin/customers/{who}/loyalty/adjustments"), Some(&support),
            Some(Body::from(json!({"points": 5, "reason": "x"}).to_string())), Some("application/json")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        // With expiry on, seven quiet months expire the balance (once).
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"loyalty_expiry_months": 6})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        assert!(loyalty(app, &token).await["expires_at"].is_string());
        app.kernel.state.clock.advance(210 * DAY);
        wait_until("the balance expires", async || {
            app.admin_get(&format!("/api/v1/admin/customers/{who}/loyalty")).await.json()["balance"] == 0
        }).await;
        let view = app.admin_get(&format!("/api/v1/admin/customers/{who}/loyalty")).await.json();
        assert_eq!(view["entries"][0]["kind"], "expired", "{view}");
        assert_eq!(view["entries"][0]["points"], -500, "{view}");
        assert_eq!(olivine::loyalty::expire(&app.kernel.state).await.unwrap(), 0);
        shop.app.stop().await;
    }
}

both_backends! {
    async fn shoppers_see_their_points_and_spend_them_on_the_checkout_page(backend: Backend) {
        use crate::common::browser::*;
        let shop = loyalty_shop(backend, |_| {}).await;
        let app = &shop.app;
        let mut browser = signed_in(app, "pages@example.com", "Page Shopper").await;
        let who = scalar_text(app, "SELECT pseudonym FROM customers").await;
        let r = adjust(app, &who, 500, "Welcome gift").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let page = get(app, &mut browser, "/account/points").await;
        assert_html(&page, StatusCode::OK);
        assert!(page.text().contains(r#"id="points-balance" data-points="500""#), "{}", page.text());
        assert!(page.text().contains("Welcome gift"), "{}", page.text());
        // The birthday form: a wrong day is refused on the field, a right one kept.
        let csrf = csrf_of(&page);
        let r = post_form(app, &mut browser, "/account/points/birthday", &[("csrf", &csrf), ("birthday", "02-31")]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains(r#"id="f-birthday-error""#), "{}", r.text());
        let r = post_form(app, &mut browser, "/account/points/birthday", &[("csrf", &csrf), ("birthday", "7-4")]).await;
        assert_eq!(location(&r), "/account/points");
        let page = get(app, &mut browser, "/account/points").await;
        assert!(page.text().contains(r#"value="07-04""#), "{}", page.text());
        let page = get(app, &mut browser, "/account").await;
        assert!(page.text().contains(r#"href="/account/points""#), "{}", page.text());

        // The product page is shared: its cart form carries no token.
        let product = get(app, &mut browser, "/p/mag").await;
        assert!(product.text().contains(r#"action="/cart/lines""#));
        let r = post_form(app, &mut browser, "/cart/lines",
            &[("product", "mag"), ("sku", "MAG-60"), ("quantity", "2")]).await;
        assert_eq!(location(&r), "/cart");
        let page = get(app, &mut browser, "/checkout").await;
        assert_html(&page, StatusCode::OK);
        assert!(page.text().contains(r#"id="f-redeem_points""#), "{}", page.text());
        // The page's script asks for the totals with the points.
        let quote = get(app, &mut browser, "/checkout/quote?country=NL&shipping_method=standard&redeem_points=200").await;
        assert_eq!(quote.json()["total_minor"], 4298, "{}", quote.text());
        assert!(quote.json()["summary_html"].as_str().unwrap().contains("Points (200)"), "{}", quote.text());
        let quote = get(app, &mut browser, "/checkout/quote?country=NL&shipping_method=standard&redeem_points=50").await;
        assert_eq!(quote.json()["error_field"], "redeem_points", "{}", quote.text());

        // Placed with the points (the script tokenized the card and set the total).
        let csrf = csrf_of(&page);
        let key = {
            let html = page.text();
            let marker = r#"name="checkout_key" value=""#;
            let start = html.find(marker).unwrap() + marker.len();
            html[start..start + html[start..].find('"').unwrap()].to_owned()
        };
        let token = tokenize(shop.processor, "4242424242424242").await;
        let fields = [("csrf", csrf.as_str()), ("checkout_key", &key), ("payment_token", &token),
            ("expected_total_minor", "4298"), ("email", "pages@example.com"), ("name", "Ada"),
            ("line1", "Main 1"), ("line2", ""), ("city", "Utrecht"), ("region", ""),
            ("postal_code", "3511 AB"), ("country", "NL"), ("shipping_method", "standard"),
            ("redeem_points", "200")];
        let r = post_form(app, &mut browser, "/checkout", &fields).await;
        assert!(location(&r).starts_with("/checkout/confirmation/"), "{}", r.text());
        let page = get(app, &mut browser, "/account/points").await;
        assert!(page.text().contains(r#"id="points-balance" data-points="300""#), "{}", page.text());
        shop.app.stop().await;
    }
}

async fn scalar_text(app: &TestApp, sql: &'static str) -> String {
    sqlx::query(sql)
        .fetch_one(&app.kernel.state.db.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

both_backends! {
    async fn tiers_and_a_category_campaign_compose_and_the_campaign_ends_on_time(backend: Backend) {
        let shop = loyalty_shop(backend, |_| {}).await;
        let app = &shop.app;
        // Silver from €40 spent in the last twelve months: the first order (€44.98) puts
        // the second in it.
        install_rule(app, "loyalty-points", "loyalty_points", json!({
            "points_per_unit": "1", "tiers": "silver:4000:125,gold:150000:150", "review_points": "20",
        })).await;
        let now = app.kernel.state.clock.now();
        let at = |days: i64| olivine::time::format_timestamp(now + chrono::Duration::days(days));
        install_rule(app, "category-campaign", "category_campaign", json!({
            "category": "supplements", "starts_at": at(-1), "ends_at": at(7),
        })).await;
        // A rule built for the loyalty world 0.1 beside them: it gets the event's 0.1 fields.
        install_rule(app, "testing/chaos-loyalty", "chaos_loyalty", json!({"mode": "ok"})).await;
        let token = app.customer_token("composer@example.com").await;

        // Two MAG-60 (€39.98 of supplements) and €5 shipping, twice: each order gets an
        // entry from each rule.
        paid_order(&shop, &token, 2).await;
        paid_order(&shop, &token, 2).await;
        assert_eq!(ledger_reasons(app, "loyalty-points").await, [
            (44, "Order paid: €44.98".to_owned()),
            // 44 x 1.25 = 55.
            (55, "Order paid: €44.98 (silver, ×1.25)".to_owned()),
        ]);
        // €39.98 of supplements: 39 more points (double points), once per order.
        assert_eq!(ledger_reasons(app, "category-campaign").await, [
            (39, "Double points on supplements".to_owned()),
            (39, "Double points on supplements".to_owned()),
        ]);
        assert_eq!(ledger_rows(app, "chaos-loyalty").await, [(7, "earned".to_owned()), (7, "earned".to_owned())]);
        let points = loyalty(app, &token).await;
        assert_eq!(points["pending"], 44 + 55 + 39 + 39 + 7 + 7, "{points}");

        // Past `ends_at` on the kernel's clock the campaign earns nothing; the tier stays.
        app.kernel.state.clock.advance(8 * DAY);
        paid_order(&shop, &token, 2).await;
        assert_eq!(ledger_reasons(app, "category-campaign").await.len(), 2);
        assert_eq!(
            ledger_reasons(app, "loyalty-points").await.last().cloned(),
            Some((55, "Order paid: €44.98 (silver, ×1.25)".to_owned()))
        );
        assert_eq!(ledger_rows(app, "chaos-loyalty").await.len(), 3);

        // A published review (the reviews' event) earns loyalty-points' review bonus,
        // once however often it comes; an erased or unknown customer earns nothing.
        let customer: i64 = sqlx::query("SELECT id FROM customers")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap().try_get(0).unwrap();
        let review = |id: i64, customer: i64| olivine::bus::Event {
            id,
            position: 0,
            aggregate_type: "review".to_owned(),
            aggregate_id: id.to_string(),
            event_type: "review.published".to_owned(),
            payload: json!({"review": id, "customer": customer, "product": "mag"}),
            created_at: olivine::time::now(),
        };
        for _ in 0..2 {
            redeliver(app, &review(900_001, customer)).await;
        }
        redeliver(app, &review(900_002, customer + 1000)).await;
        assert_eq!(
            ledger_reasons(app, "loyalty-points").await.last().cloned(),
            Some((20, "Thank you for your review".to_owned()))
        );
        assert_eq!(ledger_reasons(app, "loyalty-points").await.len(), 4);
        shop.app.stop().await;
    }
}

/// Moves the test clock to noon (UTC) of the next `month`-`day` at least a day away.
fn advance_to(app: &TestApp, month: u32, day: u32) {
    use chrono::Datelike;
    let now = app.kernel.state.clock.now();
    let mut year = now.year();
    let target = loop {
        let at = chrono::NaiveDate::from_ymd_opt(year, month, day)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc();
        if at > now + chrono::Duration::days(1) {
            break at;
        }
        year += 1;
    };
    app.kernel
        .state
        .clock
        .advance((target - now).to_std().unwrap());
}

async fn set_birthday(app: &TestApp, token: &str, birthday: Value) -> TestResponse {
    as_customer(
        app,
        token,
        Method::PUT,
        "/api/v1/account/loyalty/birthday",
        Some(json!({"birthday": birthday})),
    )
    .await
}

both_backends! {
    async fn birthdays_given_in_time_earn_once_a_year_and_erasure_forgets_them(backend: Backend) {
        let shop = loyalty_shop(backend, |c| c.loyalty_birthday_scan_secs = 60).await;
        let app = &shop.app;
        install_rule(app, "loyalty-points", "loyalty_points", json!({"birthday_points": "75"})).await;
        advance_to(app, 1, 5);
        let early = app.customer_token("early@example.com").await;
        let late = app.customer_token("late@example.com").await;
        for bad in ["02-30", "13-01", "1990-02-20", "Feb 20"] {
            set_birthday(app, &early, json!(bad)).await.assert_field_error(422, "birthday");
        }
        let r = set_birthday(app, &early, json!("02-20")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["birthday"], "02-20");
        // Fifteen days' notice is too little: this year's 20 January passes unrewarded.
        let r = set_birthday(app, &late, json!("1-20")).await;
        assert_eq!(r.json()["birthday"], "01-20", "{}", r.text());
        advance_to(app, 1, 20);
        assert_eq!(olivine::loyalty::birthdays::celebrate(&app.kernel.state).await.unwrap(), 0);
        // On the day, the schedule celebrates and the rule's points are spendable at once.
        advance_to(app, 2, 20);
        wait_until("the birthday points arrive", async || loyalty(app, &early).await["balance"] == 75).await;
        assert_eq!(loyalty(app, &early).await["entries"][0]["reason"], "Happy birthday!");
        assert_eq!(olivine::loyalty::birthdays::celebrate(&app.kernel.state).await.unwrap(), 0);
        // A birthday moved later in the year is not a second one this year.
        assert_eq!(set_birthday(app, &early, json!("03-30")).await.status, StatusCode::OK);
        advance_to(app, 3, 30);
        assert_eq!(olivine::loyalty::birthdays::celebrate(&app.kernel.state).await.unwrap(), 0);
        app.settle().await;
        assert_eq!(ledger_rows(app, "loyalty-points").await, [(75, "earned".to_owned())]);
        // Next year it comes again, for both (the late one's notice has long passed).
        advance_to(app, 1, 20);
        wait_until("the late birthday is celebrated", async || loyalty(app, &late).await["balance"] == 75).await;
        advance_to(app, 3, 30);
        wait_until("the second birthday", async || loyalty(app, &early).await["balance"] == 150).await;
        // The birthday is the customer's: in the export, gone with erasure.
        let export = as_customer(app, &early, Method::GET, "/api/v1/account/export", None).await.json();
        assert_eq!(export["sections"]["birthday"]["birthday"], "03-30", "{export}");
        let r = as_customer(app, &early, Method::POST, "/api/v1/account/erasure",
            Some(json!({"password": "correct horse battery", "confirm": "erase my account"}))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        assert_eq!(scalar(&app.kernel.state.db, "SELECT CAST(COUNT(*) AS BIGINT) FROM customer_birthdays").await, 1);
        // Forgetting it is the customer's choice too.
        let r = set_birthday(app, &late, Value::Null).await;
        assert!(r.json()["birthday"].is_null(), "{}", r.text());
        assert_eq!(scalar(&app.kernel.state.db, "SELECT CAST(COUNT(*) AS BIGINT) FROM customer_birthdays").await, 0);
        shop.app.stop().await;
    }
}
