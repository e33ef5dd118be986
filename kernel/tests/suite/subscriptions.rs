//! Subscriptions end to end against the real sandbox processor and payment adapter:
//! checkout starts them, the kernel's clock (moved by the test, never slept to) makes
//! the scan and the worker renew them, once per cycle whatever runs twice; shoppers
//! pause, skip, swap and cancel through the API with a 409 for what their state does not
//! allow; a declined renewal is retried on the store's days and then paused.

use std::time::Duration;

use crate::common::*;
use crate::payments::{Shop, authorizations, lot_quantity, shop_with, tokenize};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use olivine::subscriptions::renew::{RenewPayload, RenewalOutcome, renew};
use serde_json::{Value, json};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The payments shop, without the session sweep: the tests move the clock by weeks, and
/// the sweep would end the shopper's session meanwhile.
async fn sub_shop(
    backend: Backend,
    adjust: impl FnOnce(&mut olivine::config::ServeConfig),
) -> Shop {
    shop_with(backend, |c| {
        c.session_sweep_secs = 0;
        adjust(c);
    })
    .await
}

/// A signed-in customer who bought two MAG-60 on a 30-day subscription with `card`:
/// answers (their token, the first order, the subscription's number).
async fn subscribed(shop: &Shop, email: &str, card: &str) -> (String, Value, String) {
    let app = &shop.app;
    let token = app.customer_token(email).await;
    let cart = as_customer(app, &token, Method::POST, "/api/v1/carts", None).await;
    assert!(cart.status.is_success(), "{}", cart.text());
    let cart = cart.json()["id"].as_str().unwrap().to_owned();
    let r = as_customer(
        app,
        &token,
        Method::POST,
        &format!("/api/v1/carts/{cart}/lines"),
        Some(json!({"sku": "MAG-60", "quantity": 2, "subscription": true, "interval": "30d"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["lines"][0]["subscription_interval"], "30d");
    let card_token = tokenize(shop.processor, card).await;
    let body = json!({"shipping_method": "standard", "payment_token": card_token,
        "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Utrecht", "postal_code": "3511 AB", "country": "NL"}});
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/carts/{cart}/checkout"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(
            "idempotency-key",
            format!("sub-{}", email.replace('@', "-at-")),
        )
        .body(Body::from(body.to_string()))
        .unwrap();
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let order = r.json();
    assert_eq!(order["status"], "paid", "{order}");
    let list = as_customer(
        app,
        &token,
        Method::GET,
        "/api/v1/account/subscriptions",
        None,
    )
    .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let subs = list.json();
    assert_eq!(subs.as_array().map(Vec::len), Some(1), "{subs}");
    let number = subs[0]["number"].as_str().unwrap().to_owned();
    (token, order, number)
}

async fn detail(app: &TestApp, token: &str, number: &str) -> Value {
    let r = as_customer(
        app,
        token,
        Method::GET,
        &format!("/api/v1/account/subscriptions/{number}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

async fn act(app: &TestApp, token: &str, number: &str, action: Value) -> TestResponse {
    as_customer(
        app,
        token,
        Method::POST,
        &format!("/api/v1/account/subscriptions/{number}/actions"),
        Some(action),
    )
    .await
}

async fn orders_of(app: &TestApp) -> i64 {
    app.count("orders").await
}

/// Moves the kernel's clock and waits until the subscription has reached `cycle`.
async fn advance_until_cycle(
    app: &TestApp,
    token: &str,
    number: &str,
    by: Duration,
    cycle: i64,
) -> Value {
    app.kernel.state.clock.advance(by);
    let mut last = Value::Null;
    wait_until(&format!("{number} reaches cycle {cycle}"), async || {
        last = detail(app, token, number).await;
        last["cycle"].as_i64() == Some(cycle)
    })
    .await;
    last
}

fn renewal_count(sub: &Value, outcome: &str) -> usize {
    sub["renewals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == outcome)
        .count()
}

both_backends! {
    async fn checkout_starts_a_subscription_and_the_clock_renews_it_once_per_cycle(backend: Backend) {
        let shop = sub_shop(backend, |_| {}).await;
        let app = &shop.app;
        let (token, order, number) = subscribed(&shop, "renew@example.com", "4242424242424242").await;
        let sub = detail(app, &token, &number).await;
        assert_eq!((sub["status"].as_str(), sub["interval"].as_str(), sub["cycle"].as_i64()),
            (Some("active"), Some("30d"), Some(1)), "{sub}");
        assert_eq!(sub["items"], json!([{"sku": "MAG-60", "title": sub["items"][0]["title"], "quantity": 2}]));
        // What the next renewal costs is what the first order cost (same items, rules, rate).
        assert_eq!(sub["next_renewal"]["total_minor"], order["total_minor"], "{sub}");
        assert_eq!(sub["shipping_address"]["city"], "Utrecht");
        let stock_before = lot_quantity(app, shop.lot).await;

        // 30 days on, the scan enqueues the renewal and the worker places and pays it.
        let sub = advance_until_cycle(app, &token, &number, 30 * DAY + Duration::from_secs(60), 2).await;
        assert_eq!(renewal_count(&sub, "paid"), 1, "{sub}");
        let renewal_order = sub["renewals"][0]["order_number"].as_str().unwrap().to_owned();
        let renewed = as_customer(app, &token, Method::GET, &format!("/api/v1/account/orders/{renewal_order}"), None).await;
        assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text());
        assert_eq!(renewed.json()["status"], "paid");
        assert_eq!(renewed.json()["total_minor"], order["total_minor"]);
        // The checkout charged its one-time token; the renewal the card the processor
        // saved for it (a customer), off session.
        let charged = authorizations(shop.processor, &renewal_order).await;
        assert_eq!(charged.len(), 1);
        assert!(charged[0]["customer"].as_str().is_some_and(|c| c.starts_with("cus_")), "{charged:?}");
        assert_eq!(charged[0]["off_session"], true);
        let first = authorizations(shop.processor, order["number"].as_str().unwrap()).await;
        assert_eq!((first[0]["customer"].clone(), first[0]["off_session"].clone()), (Value::Null, json!(false)));
        assert_eq!(lot_quantity(app, shop.lot).await, stock_before - 2);
        assert_eq!(orders_of(app).await, 2);

        // The same cycle's job again, and the scan again: nothing more.
        let id = scalar(&app.kernel.state.db, "SELECT MAX(id) FROM subscriptions").await;
        let again = renew(&app.kernel.state, RenewPayload { subscription: id, cycle: 1, attempt: 1 }).await.unwrap();
        assert_eq!(again, RenewalOutcome::Stale);
        olivine::subscriptions::renew::scan(&app.kernel.state).await.unwrap();
        app.settle().await;
        assert_eq!(orders_of(app).await, 2);
        assert_eq!(authorizations(shop.processor, &renewal_order).await.len(), 1);
        // The next renewal is one interval after the one before, not after the worker ran.
        let next = chrono::DateTime::parse_from_rfc3339(sub["next_renewal_at"].as_str().unwrap()).unwrap();
        let first = chrono::DateTime::parse_from_rfc3339(detail(app, &token, &number).await["renewals"][0]["at"].as_str().unwrap()).unwrap();
        assert!(next > first + chrono::Duration::days(29), "{next} after {first}");
    }

    async fn two_workers_on_one_due_cycle_make_one_order_and_one_charge(backend: Backend) {
        // No scan: the test runs the renewals itself, at once, twice.
        let shop = sub_shop(backend, |c| c.subscription_scan_secs = 0).await;
        let app = &shop.app;
        let (_token, _order, _number) = subscribed(&shop, "race@example.com", "4242424242424242").await;
        app.kernel.state.clock.advance(31 * DAY);
        let id = scalar(&app.kernel.state.db, "SELECT MAX(id) FROM subscriptions").await;
        let p = RenewPayload { subscription: id, cycle: 1, attempt: 1 };
        let other = app.another_node(|c| c.subscription_scan_secs = 0, olivine::app::Extensions {
            clock: Some(app.kernel.state.clock.clone()),
            ..Default::default()
        }).await;
        let (a, b) = tokio::join!(renew(&app.kernel.state, p), renew(&other.kernel.state, p));
        let mut outcomes = vec![a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert!(outcomes.contains(&RenewalOutcome::Paid), "{outcomes:?}");
        assert_eq!(orders_of(app).await, 2, "{outcomes:?}");
        let paid = scalar(&app.kernel.state.db, "SELECT COUNT(*) FROM subscription_renewals WHERE outcome = 'paid'").await;
        assert_eq!(paid, 1);
        let number: String = sqlx::query_scalar("SELECT number FROM orders WHERE subscription_id IS NOT NULL")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap();
        assert_eq!(authorizations(shop.processor, &number).await.len(), 1);
        other.stop().await;
    }

    async fn skip_pause_resume_swap_and_cancel_are_transitions_with_409s(backend: Backend) {
        let shop = sub_shop(backend, |_| {}).await;
        let app = &shop.app;
        let (token, _order, number) = subscribed(&shop, "change@example.com", "4242424242424242").await;
        // Skip, and skipping again is a 409; unskip; skip again: the next cycle makes no order.
        let r = act(app, &token, &number, json!({"action": "skip"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["skip_next"], true);
        let r = act(app, &token, &number, json!({"action": "skip"})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        assert_eq!(act(app, &token, &number, json!({"action": "unskip"})).await.status, StatusCode::OK);
        assert_eq!(act(app, &token, &number, json!({"action": "skip"})).await.status, StatusCode::OK);
        let sub = advance_until_cycle(app, &token, &number, 31 * DAY, 2).await;
        assert_eq!(renewal_count(&sub, "skipped"), 1, "{sub}");
        assert_eq!(sub["skip_next"], false);
        assert_eq!(orders_of(app).await, 1);

        // A swap applies from the next cycle; an unknown SKU is a 422 naming the item.
        let r = act(app, &token, &number, json!({"action": "change", "items": [{"sku": "NOPE", "quantity": 1}]})).await;
        r.assert_field_error(422, "items[0].sku");
        let r = act(app, &token, &number, json!({"action": "change", "items": [{"sku": "MAG-60", "quantity": 1}], "interval": "2w"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!((r.json()["interval"].as_str(), r.json()["items"][0]["quantity"].as_i64()), (Some("2w"), Some(1)));

        // Paused: nothing renews, resume is the way back; resuming an active one is a 409.
        let r = act(app, &token, &number, json!({"action": "pause"})).await;
        assert_eq!((r.status, r.json()["status"].as_str()), (StatusCode::OK, Some("paused")), "{}", r.text());
        assert_eq!(act(app, &token, &number, json!({"action": "renew_now"})).await.status, StatusCode::CONFLICT);
        app.kernel.state.clock.advance(60 * DAY);
        olivine::subscriptions::renew::scan(&app.kernel.state).await.unwrap();
        app.settle().await;
        assert_eq!(orders_of(app).await, 1);
        // Resuming an overdue subscription renews it at once, with the swapped items.
        let r = act(app, &token, &number, json!({"action": "resume"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(act(app, &token, &number, json!({"action": "resume"})).await.status, StatusCode::CONFLICT);
        // No clock move: the resume itself queued the renewal (the scan is 60 s away).
        let sub = advance_until_cycle(app, &token, &number, Duration::ZERO, 3).await;
        let order_number = sub["renewals"][0]["order_number"].as_str().unwrap();
        let renewed = as_customer(app, &token, Method::GET, &format!("/api/v1/account/orders/{order_number}"), None).await.json();
        assert_eq!(renewed["lines"][0]["quantity"], 1, "{renewed}");

        // Cancelled for good: every action but reading is a 409. A new card is refused
        // before the processor sees it (an unissued token would be its 402 there).
        let r = act(app, &token, &number, json!({"action": "cancel", "reason": "too many capsules"})).await;
        assert_eq!((r.status, r.json()["cancel_reason"].as_str()), (StatusCode::OK, Some("too many capsules")), "{}", r.text());
        for action in [json!({"action": "skip"}), json!({"action": "resume"}), json!({"action": "pause"}),
                json!({"action": "cancel", "reason": "again"}),
                json!({"action": "replace_payment_method", "payment_token": "tok_never_issued"})] {
            let r = act(app, &token, &number, action.clone()).await;
            assert_eq!(r.status, StatusCode::CONFLICT, "{action}: {}", r.text());
        }
        // Another customer's subscription is not found; every change is in the audit log.
        let stranger = app.customer_token("stranger@example.com").await;
        assert_eq!(act(app, &stranger, &number, json!({"action": "skip"})).await.status, StatusCode::NOT_FOUND);
        let audited = scalar(&app.kernel.state.db, "SELECT COUNT(*) FROM audit_log WHERE target_type = 'subscription'").await;
        assert_eq!(audited, 7);
        // Staff see it with its renewals.
        let r = app.admin_get("/api/v1/admin/subscriptions?status=cancelled").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()[0]["number"], number.as_str());
    }

    async fn a_declined_renewal_is_retried_on_the_store_days_then_paused(backend: Backend) {
        let shop = sub_shop(backend, |_| {}).await;
        let app = &shop.app;
        let (token, _order, number) = subscribed(&shop, "dunning@example.com", "4242424242424242").await;
        // The card on file now declines.
        let declining = tokenize(shop.processor, "4000000000009995").await;
        let r = act(app, &token, &number, json!({"action": "replace_payment_method", "payment_token": declining})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let stock = lot_quantity(app, shop.lot).await;
        app.kernel.state.clock.advance(31 * DAY);
        let failed = async |n: i64| {
            let mut last = Value::Null;
            // The subscription records the decline with its attempt (the answer reads the
            // two apart, so wait for both).
            wait_until(&format!("{n} declines"), async || {
                last = detail(app, &token, &number).await;
                renewal_count(&last, "declined") == n as usize
                    && (last["failed_attempts"] == n || last["status"] == "paused")
            }).await;
            last
        };
        let sub = failed(1).await;
        assert_eq!((sub["status"].as_str(), sub["failed_attempts"].as_i64()), (Some("active"), Some(1)), "{sub}");
        assert!(sub["retry_at"].is_string(), "{sub}");
        // The declined order gave its stock back.
        assert_eq!(lot_quantity(app, shop.lot).await, stock);
        // "Order now" in dunning retries at once; then 3 and 7 days after the first
        // decline; then paused.
        let r = act(app, &token, &number, json!({"action": "renew_now"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        failed(2).await;
        app.kernel.state.clock.advance(3 * DAY + Duration::from_secs(60));
        failed(3).await;
        app.kernel.state.clock.advance(4 * DAY);
        let sub = failed(4).await;
        wait_until("paused after the last retry", async || {
            detail(app, &token, &number).await["status"] == "paused"
        }).await;
        assert_eq!(sub["cycle"], 1);
        assert_eq!(renewal_count(&sub, "paid"), 0);
        // A working card and a resume: renewed at once, the same cycle.
        let good = tokenize(shop.processor, "4242424242424242").await;
        assert_eq!(act(app, &token, &number, json!({"action": "replace_payment_method", "payment_token": good})).await.status, StatusCode::OK);
        assert_eq!(act(app, &token, &number, json!({"action": "resume"})).await.status, StatusCode::OK);
        let sub = advance_until_cycle(app, &token, &number, Duration::ZERO, 2).await;
        assert_eq!(renewal_count(&sub, "paid"), 1, "{sub}");
        assert_eq!(sub["failed_attempts"], 0);
    }

    async fn a_card_that_declines_renewals_is_dunned_unless_the_decline_is_hard(backend: Backend) {
        let shop = sub_shop(backend, |_| {}).await;
        let app = &shop.app;
        // Approves the checkout, declines later charges: insufficient funds (soft) and
        // lost card (hard).
        let (soft_token, _, soft) = subscribed(&shop, "soft@example.com", sandbox_processor::cards::DECLINES_LATER).await;
        let (hard_token, _, hard) = subscribed(&shop, "hard@example.com", sandbox_processor::cards::DECLINES_LATER_HARD).await;
        app.kernel.state.clock.advance(31 * DAY);
        let mut soft_sub = Value::Null;
        let mut hard_sub = Value::Null;
        wait_until("both renewals declined", async || {
            soft_sub = detail(app, &soft_token, &soft).await;
            hard_sub = detail(app, &hard_token, &hard).await;
            renewal_count(&soft_sub, "declined") == 1 && soft_sub["failed_attempts"] == 1
                && renewal_count(&hard_sub, "declined") == 1 && hard_sub["status"] == "paused"
        }).await;
        // Soft: the store's first retry day is set, still active.
        assert_eq!(soft_sub["status"], "active", "{soft_sub}");
        assert!(soft_sub["retry_at"].is_string(), "{soft_sub}");
        // Hard: no retry; paused at once (the store's after-dunning setting), and no
        // further attempt however long the clock runs.
        assert!(hard_sub["retry_at"].is_null(), "{hard_sub}");
        assert_eq!(hard_sub["failed_attempts"], 1);
        let hard_events = scalar(&app.kernel.state.db,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'subscription.renewal_failed' AND payload LIKE '%\"hard_decline\":true%'").await;
        assert_eq!(hard_events, 1);
        app.kernel.state.clock.advance(8 * DAY);
        wait_until("the soft one retried", async || {
            renewal_count(&detail(app, &soft_token, &soft).await, "declined") >= 2
        }).await;
        app.settle().await;
        assert_eq!(renewal_count(&detail(app, &hard_token, &hard).await, "declined"), 1);
    }

    async fn out_of_stock_renewals_follow_the_store_policy(backend: Backend) {
        let shop = sub_shop(backend, |_| {}).await;
        let app = &shop.app;
        let (token, _order, number) = subscribed(&shop, "stock@example.com", "4242424242424242").await;
        // A second item with no stock at all.
        let r = app.admin_post("/api/v1/admin/products", &supplement("zinc", "ZNC")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let r = act(app, &token, &number, json!({"action": "change", "items": [
            {"sku": "MAG-60", "quantity": 2}, {"sku": "ZNC-60", "quantity": 1}]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let settings = |policy: &str| json!({"subscription_out_of_stock": policy, "subscription_stock_wait_days": 2});
        let r = app.admin_patch("/api/v1/admin/settings", &settings("ship_available")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["subscription_out_of_stock"], "ship_available");
        app.admin_patch("/api/v1/admin/settings", &json!({"subscription_stock_wait_days": 31})).await
            .assert_field_error(422, "subscription_stock_wait_days");

        // Ship what is there: the renewal orders the magnesium alone and says so.
        let sub = advance_until_cycle(app, &token, &number, 31 * DAY, 2).await;
        assert_eq!(renewal_count(&sub, "paid"), 1, "{sub}");
        assert!(sub["renewals"][0]["message"].as_str().unwrap_or("").contains("ZNC-60"), "{sub}");
        let lines = scalar(&app.kernel.state.db,
            "SELECT COUNT(*) FROM order_lines WHERE order_id = (SELECT MAX(id) FROM orders)").await;
        assert_eq!(lines, 1);
        assert_eq!(scalar(&app.kernel.state.db,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'subscription.renewal_partial'").await, 1);

        // Wait: tried daily; stock back in time and it ships, the same cycle.
        let r = app.admin_patch("/api/v1/admin/settings", &settings("wait")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let left = lot_quantity(app, shop.lot).await;
        let r = app.admin_post(&format!("/api/v1/admin/lots/{}/adjustments", shop.lot),
            &json!({"delta": -left, "reason": "count_correction"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.kernel.state.clock.advance(31 * DAY);
        let mut waiting = Value::Null;
        wait_until("the renewal waits for stock", async || {
            waiting = detail(app, &token, &number).await;
            renewal_count(&waiting, "out_of_stock") == 1
        }).await;
        assert_eq!(waiting["cycle"], 2, "{waiting}");
        assert!(waiting["renewals"][0]["message"].as_str().unwrap_or("").starts_with("waiting for stock"), "{waiting}");
        assert_eq!(scalar(&app.kernel.state.db,
            "SELECT COUNT(*) FROM outbox WHERE event_type = 'subscription.renewal_waiting'").await, 1);
        let r = act(app, &token, &number, json!({"action": "change", "items": [{"sku": "MAG-60", "quantity": 2}]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = app.admin_post(&format!("/api/v1/admin/lots/{}/adjustments", shop.lot),
            &json!({"delta": 4, "reason": "count_correction"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let sub = advance_until_cycle(app, &token, &number, DAY + Duration::from_secs(60), 3).await;
        assert_eq!(renewal_count(&sub, "paid"), 2, "{sub}");

        // Still out after the store's two days: the cycle is skipped.
        let r = app.admin_post(&format!("/api/v1/admin/lots/{}/adjustments", shop.lot),
            &json!({"delta": -2, "reason": "count_correction"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.kernel.state.clock.advance(31 * DAY);
        wait_until("first wait", async || renewal_count(&detail(app, &token, &number).await, "out_of_stock") == 2).await;
        app.kernel.state.clock.advance(DAY + Duration::from_secs(60));
        wait_until("second wait", async || renewal_count(&detail(app, &token, &number).await, "out_of_stock") == 3).await;
        let sub = advance_until_cycle(app, &token, &number, DAY + Duration::from_secs(60), 4).await;
        assert_eq!(renewal_count(&sub, "out_of_stock"), 4, "{sub}");
        assert_eq!(renewal_count(&sub, "paid"), 2, "{sub}");
        assert!(sub["renewals"].as_array().unwrap().iter().any(|r| r["message"].as_str().unwrap_or("").contains("waited 2 days")), "{sub}");
    }

    async fn a_price_rise_after_the_renewal_notice_waits_for_the_next_cycle(backend: Backend) {
        let shop = sub_shop(backend, |_| {}).await;
        let app = &shop.app;
        let (token, order, number) = subscribed(&shop, "price@example.com", "4242424242424242").await;
        let paid = order["total_minor"].as_i64().unwrap();
        // 3 days ahead (the store's notice days) the renewal and its price are announced.
        app.kernel.state.clock.advance(27 * DAY + Duration::from_secs(60));
        olivine::subscriptions::renew::scan(&app.kernel.state).await.unwrap();
        let announced: String = sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = 'subscription.renewal_upcoming'")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap();
        let announced: Value = serde_json::from_str(&announced).unwrap();
        assert_eq!(announced["total_minor"], paid, "{announced}");
        // Then the merchant raises the price: the shopper sees what the next cycle will
        // cost, but this renewal charges what was announced.
        let variant = app.get("/api/v1/products/mag").await.json()["variants"][0]["id"].as_i64().unwrap();
        let r = app.admin_patch(&format!("/api/v1/admin/variants/{variant}"), &json!({"price_minor": 2999})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        assert_eq!(detail(app, &token, &number).await["next_renewal"]["total_minor"], paid);
        let sub = advance_until_cycle(app, &token, &number, 3 * DAY, 2).await;
        let renewal = sub["renewals"][0]["order_number"].as_str().unwrap().to_owned();
        let renewed = as_customer(app, &token, Method::GET, &format!("/api/v1/account/orders/{renewal}"), None).await.json();
        assert_eq!(renewed["total_minor"], paid, "{renewed}");
        assert_eq!(authorizations(shop.processor, &renewal).await[0]["amount_minor"], paid);
        // The next cycle is at the new price.
        assert!(sub["next_renewal"]["total_minor"].as_i64().unwrap() > paid, "{sub}");
    }

    async fn renewals_run_only_on_their_own_workers(backend: Backend) {
        // A node without renewal workers: the scan (an ordinary job) enqueues the renewal,
        // and nothing else on the node runs it.
        let shop = sub_shop(backend, |c| c.renewal_workers = 0).await;
        let app = &shop.app;
        let (token, _order, number) = subscribed(&shop, "lane@example.com", "4242424242424242").await;
        app.kernel.state.clock.advance(31 * DAY);
        olivine::subscriptions::renew::scan(&app.kernel.state).await.unwrap();
        app.kernel.state.bus.notify_jobs();
        app.settle().await;
        assert_eq!(scalar(&app.kernel.state.db,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'subscriptions.renew' AND state = 'queued'").await, 1);
        assert_eq!(detail(app, &token, &number).await["cycle"], 1);
    }

    async fn guests_cannot_subscribe_and_intervals_are_the_products(backend: Backend) {
        let shop = sub_shop(backend, |c| c.subscription_scan_secs = 0).await;
        let app = &shop.app;
        let r = app.request(Method::POST, "/api/v1/carts", None, None, None).await;
        let cart = r.json()["id"].as_str().unwrap().to_owned();
        let add = async |body: Value| {
            app.request(Method::POST, &format!("/api/v1/carts/{cart}/lines"), None,
                Some(Body::from(body.to_string())), Some("application/json")).await
        };
        add(json!({"sku": "MAG-60", "quantity": 1, "subscription": true, "interval": "45d"})).await
            .assert_field_error(422, "interval");
        add(json!({"sku": "MAG-60", "quantity": 1, "interval": "30d"})).await
            .assert_field_error(422, "interval");
        let r = add(json!({"sku": "MAG-60", "quantity": 1, "subscription": true})).await;
        assert_eq!(r.json()["lines"][0]["subscription_interval"], "30d", "the product's first");
        let body = json!({"email": "guest@example.com", "shipping_method": "standard",
            "shipping_address": {"name": "Ada", "line1": "Main 1", "city": "Utrecht", "postal_code": "3511 AB", "country": "NL"}});
        let request = Request::builder().method(Method::POST).uri(format!("/api/v1/carts/{cart}/checkout"))
            .header(header::CONTENT_TYPE, "application/json").header("idempotency-key", "guest-sub")
            .body(Body::from(body.to_string())).unwrap();
        let r = app.send(request).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        assert!(r.text().contains("sign in to subscribe"), "{}", r.text());
    }
}

both_backends! {
    async fn the_storefront_account_lists_a_subscription_and_its_forms_skip_and_cancel(backend: Backend) {
        use crate::common::browser::{self, Browser};
        let shop = sub_shop(backend, |c| c.subscription_scan_secs = 0).await;
        let app = &shop.app;
        let (_token, order, number) = subscribed(&shop, "pages@example.com", "4242424242424242").await;
        let mut b = Browser::default();
        let r = browser::sign_in(app, &mut b, "pages@example.com", "correct horse battery", None).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
        let list = browser::get(app, &mut b, "/account/subscriptions").await;
        browser::assert_html(&list, StatusCode::OK);
        assert!(list.text().contains(&number), "{}", list.text());
        assert!(list.text().contains("every 30 days"));
        let page = browser::get(app, &mut b, &format!("/account/subscriptions/{number}")).await;
        browser::assert_html(&page, StatusCode::OK);
        let total = order["total_minor"].as_i64().unwrap();
        assert!(page.text().contains(&format!("€{}.{:02}", total / 100, total % 100)), "the next delivery's cost: {}", page.text());
        let csrf = browser::csrf_of(&page);
        let action = format!("/account/subscriptions/{number}/actions");
        let r = browser::post_form(app, &mut b, &action, &[("csrf", &csrf), ("action", "skip")]).await;
        assert_eq!(browser::location(&r), format!("/account/subscriptions/{number}?done=skip"));
        let page = browser::get(app, &mut b, &browser::location(&r)).await;
        assert!(page.text().contains("The next delivery is skipped."), "{}", page.text());
        // A second skip (a stale page) is refused on the page with the API's reason.
        let r = browser::post_form(app, &mut b, &action, &[("csrf", &csrf), ("action", "skip")]).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        assert!(r.text().contains("skipped already"), "{}", r.text());
        let r = browser::post_form(app, &mut b, &action, &[("csrf", &csrf), ("action", "cancel"), ("reason", "")]).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        let r = browser::post_form(app, &mut b, &action, &[("csrf", &csrf), ("action", "cancel"), ("reason", "moving abroad")]).await;
        assert_eq!(browser::location(&r), format!("/account/subscriptions/{number}?done=cancel"));
        let page = browser::get(app, &mut b, &format!("/account/subscriptions/{number}")).await;
        assert!(page.text().contains(r#"data-status="cancelled""#), "{}", page.text());
        assert!(!page.text().contains(r#"value="skip""#), "no forms once cancelled");
    }
}

both_backends! {
    async fn a_kernel_killed_after_the_processor_approved_a_renewal_charges_it_once(backend: Backend) {
        use crate::common::process::{free_port, spawn_with, wait_exit, wait_ready};
        use sqlx::Row;
        let shop = sub_shop(backend, |c| c.subscription_scan_secs = 0).await;
        let (_token, _order, number) = subscribed(&shop, "crash@example.com", "4242424242424242").await;
        // Due now by the real binary's clock (the system's).
        let past = olivine::time::format_timestamp(chrono::Utc::now() - chrono::Duration::minutes(1));
        sqlx::query("UPDATE subscriptions SET next_renewal_at = $1").bind(&past)
            .execute(&shop.app.kernel.state.db.pool).await.unwrap();
        let Shop { app, processor, _handle, .. } = shop;
        let TestApp { kernel, db, .. } = app;
        kernel.shutdown().await;

        // The scan at start enqueues the renewal; the process dies right after the
        // processor approved its charge, before the order or the cycle recorded it.
        let port = free_port();
        let mut child = spawn_with(&db, port, "payments.authorized", &[]);
        assert!(!wait_exit(&mut child).success(), "the failpoint ends the process");
        let conn = db.connect().await;
        let row = sqlx::query("SELECT number, status FROM orders WHERE subscription_id IS NOT NULL")
            .fetch_one(&conn.pool).await.unwrap();
        let renewal_order: String = row.get(0);
        assert_eq!(row.get::<String, _>(1), "pending");
        assert_eq!(authorizations(processor, &renewal_order).await.len(), 1);
        let cycle: i64 = sqlx::query("SELECT cycle FROM subscriptions").fetch_one(&conn.pool).await.unwrap().get(0);
        assert_eq!(cycle, 1, "the cycle has not moved");

        // The next start settles it (the reconciler, or the renewal job again): paid once,
        // the cycle moved once, no second order.
        let mut child = spawn_with(&db, port, "", &[("OLIVINE_PAYMENT_RECONCILE_GRACE_SECS", "0"), ("OLIVINE_JOB_LEASE_SECS", "1")]);
        tokio::task::spawn_blocking(move || wait_ready(port)).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let cycle: i64 = sqlx::query("SELECT cycle FROM subscriptions").fetch_one(&conn.pool).await.unwrap().get(0);
            if cycle == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the renewal was not settled");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let orders: i64 = sqlx::query("SELECT COUNT(*) FROM orders WHERE subscription_id IS NOT NULL")
            .fetch_one(&conn.pool).await.unwrap().get(0);
        assert_eq!(orders, 1, "one renewal order");
        let status: String = sqlx::query("SELECT status FROM orders WHERE number = $1").bind(&renewal_order)
            .fetch_one(&conn.pool).await.unwrap().get(0);
        assert_eq!(status, "paid");
        assert_eq!(authorizations(processor, &renewal_order).await.len(), 1, "one charge");
        let paid: i64 = sqlx::query("SELECT COUNT(*) FROM subscription_renewals WHERE outcome = 'paid'")
            .fetch_one(&conn.pool).await.unwrap().get(0);
        assert_eq!(paid, 1);
        let _ = number;
        child.kill().ok();
        child.wait().ok();
        conn.close().await;
        db.drop().await;
    }
}

both_backends! {
    async fn the_export_holds_subscriptions_and_erasure_ends_them(backend: Backend) {
        let shop = sub_shop(backend, |c| c.subscription_scan_secs = 0).await;
        let app = &shop.app;
        let (token, _order, number) = subscribed(&shop, "gdpr@example.com", "4242424242424242").await;
        let r = as_customer(app, &token, Method::GET, "/api/v1/account/export", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let subs = &r.json()["sections"]["subscriptions"];
        assert_eq!(subs[0]["number"], number.as_str(), "{subs}");
        assert_eq!(subs[0]["shipping_address"]["city"], "Utrecht");
        assert_eq!(subs[0]["items"][0]["sku"], "MAG-60");
        let r = as_customer(app, &token, Method::POST, "/api/v1/account/erasure", Some(json!({
            "password": "correct horse battery", "confirm": "erase my account"}))).await;
        assert!(r.status.is_success(), "{}", r.text());
        wait_until("the erasure cancels the subscription", async || {
            scalar(&app.kernel.state.db, "SELECT COUNT(*) FROM subscriptions WHERE status = 'cancelled' AND payment_method_enc IS NULL AND shipping_address_enc IS NULL AND email_enc IS NULL").await == 1
        }).await;
        // Nothing renews for an erased customer.
        app.kernel.state.clock.advance(31 * DAY);
        olivine::subscriptions::renew::scan(&app.kernel.state).await.unwrap();
        app.settle().await;
        assert_eq!(orders_of(app).await, 1);
    }
}

both_backends! {
    async fn merchants_set_each_products_intervals_and_the_product_page_offers_them(backend: Backend) {
        let shop = sub_shop(backend, |c| c.subscription_scan_secs = 0).await;
        let app = &shop.app;
        let id = scalar(&app.kernel.state.db, "SELECT MAX(id) FROM products").await;
        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"), &json!({"subscription_intervals": ["2w", "2w"]})).await;
        r.assert_field_error(422, "subscription_intervals[1]");
        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"), &json!({"subscription_intervals": ["400d"]})).await;
        r.assert_field_error(422, "subscription_intervals[0]");
        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"), &json!({"subscription_intervals": ["2w", "1m"]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["subscription_intervals"], json!(["2w", "1m"]));
        app.settle().await;
        let page = app.get("/p/mag").await;
        assert!(page.text().contains(r#"<option value="2w">every 2 weeks</option>"#), "{}", page.text());
        assert!(page.text().contains(r#"<option value="1m">every month</option>"#));
        // A cart line takes one of them; the first when none is named.
        let r = app.request(Method::POST, "/api/v1/carts", None, None, None).await;
        let cart = r.json()["id"].as_str().unwrap().to_owned();
        let r = app.request(Method::POST, &format!("/api/v1/carts/{cart}/lines"), None,
            Some(Body::from(json!({"sku": "MAG-60", "quantity": 1, "subscription": true, "interval": "30d"}).to_string())),
            Some("application/json")).await;
        r.assert_field_error(422, "interval");
        let r = app.request(Method::POST, &format!("/api/v1/carts/{cart}/lines"), None,
            Some(Body::from(json!({"sku": "MAG-60", "quantity": 1, "subscription": true}).to_string())),
            Some("application/json")).await;
        assert_eq!(r.json()["lines"][0]["subscription_interval"], "2w", "{}", r.text());
        // Not sold on subscription any more.
        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"), &json!({"subscription_intervals": []})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        assert!(!app.get("/p/mag").await.text().contains(r#"name="subscription""#));
    }
}

/// A signed-in browser of the subscriber `email`, on their subscription's page: answers
/// the browser, the page and the path its forms post to.
async fn on_subscription_page(
    app: &TestApp,
    email: &str,
    number: &str,
) -> (crate::common::browser::Browser, TestResponse, String) {
    use crate::common::browser::{self, Browser};
    let mut b = Browser::default();
    let r = browser::sign_in(app, &mut b, email, browser::PASSWORD, None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let page = browser::get(app, &mut b, &format!("/account/subscriptions/{number}")).await;
    browser::assert_html(&page, StatusCode::OK);
    (b, page, format!("/account/subscriptions/{number}/actions"))
}

#[track_caller]
fn assert_contains(page: &TestResponse, needles: &[&str]) {
    let html = page.text();
    for needle in needles {
        assert!(html.contains(needle), "{needle} is missing from {html}");
    }
}

both_backends! {
    async fn the_storefront_page_pauses_until_a_date_and_changes_interval_items_and_address(backend: Backend) {
        use crate::common::browser;
        let shop = sub_shop(backend, |c| c.subscription_scan_secs = 0).await;
        let app = &shop.app;
        let email = "forms@example.com";
        let (token, _order, number) = subscribed(&shop, email, "4242424242424242").await;
        let (mut b, page, action) = on_subscription_page(app, email, &number).await;
        let path = format!("/account/subscriptions/{number}");
        // Every change the API has, as a form (no card without a tokenization URL).
        assert_contains(&page, &[
            r#"<input id="pause_until" type="date" name="until""#,
            r#"value="change_interval""#,
            r#"<option value="30d" selected>every 30 days</option><option value="60d">every 60 days</option>"#,
            r#"value="change_items""#,
            r#"<input id="item0_quantity" name="item0_quantity" type="number" value="2""#,
            r#"<option value="MAG-60" selected>60 capsules</option><option value="MAG-120">120 capsules</option>"#,
            r#"value="change_address""#,
            r#"<input id="f-postal_code" name="postal_code" type="text" value="3511 AB""#,
            r#"<option value="NL" selected>"#,
            "This shop cannot take card payments right now.",
        ]);
        // No card form, so not the card script (every page has the search script).
        assert!(!page.text().contains(olivine::http::security::checkout_script().path), "no card form, no script");
        let csrf = browser::csrf_of(&page);
        let post = async |b: &mut browser::Browser, fields: &[(&str, &str)]| {
            let mut all = vec![("csrf", csrf.as_str())];
            all.extend_from_slice(fields);
            browser::post_form(app, b, &action, &all).await
        };

        // Paused until a date: the page and the API say until when; resumed by the form.
        let until = (app.kernel.state.clock.now() + chrono::Duration::days(10)).format("%Y-%m-%d").to_string();
        let r = post(&mut b, &[("action", "pause"), ("until", &until)]).await;
        assert_eq!(browser::location(&r), format!("{path}?done=pause_until"));
        let page = browser::get(app, &mut b, &browser::location(&r)).await;
        assert_contains(&page, &["The subscription is paused until the date shown", &format!(r#"<dd id="paused-until">{until}</dd>"#),
            r#"value="resume""#]);
        assert!(!page.text().contains(r#"name="until""#), "a paused subscription has no pause form");
        let sub = detail(app, &token, &number).await;
        assert_eq!((sub["status"].as_str(), sub["paused_until"].as_str()), (Some("paused"), Some(format!("{until}T00:00:00.000Z").as_str())), "{sub}");
        let r = post(&mut b, &[("action", "resume")]).await;
        assert_eq!(browser::location(&r), format!("{path}?done=resume"));
        // A date in the past is the API's 422, said on the page.
        let r = post(&mut b, &[("action", "pause"), ("until", "2001-01-01")]).await;
        browser::assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_contains(&r, &["The date to pause until must be today or later."]);

        // How often.
        let r = post(&mut b, &[("action", "change_interval"), ("interval", "60d")]).await;
        assert_eq!(browser::location(&r), format!("{path}?done=change_interval"));
        let page = browser::get(app, &mut b, &path).await;
        assert_contains(&page, &[r#"<dd id="subscription-interval">every 60 days</dd>"#, r#"<option value="60d" selected>"#]);
        assert_eq!(detail(app, &token, &number).await["interval"], "60d");

        // Another size, three of it.
        let r = post(&mut b, &[("action", "change_items"), ("item0_sku", "MAG-120"), ("item0_quantity", "3")]).await;
        assert_eq!(browser::location(&r), format!("{path}?done=change_items"));
        let page = browser::get(app, &mut b, &path).await;
        assert_contains(&page, &[r#"<option value="MAG-120" selected>120 capsules</option>"#,
            r#"<input id="item0_quantity" name="item0_quantity" type="number" value="3""#]);
        assert_eq!(detail(app, &token, &number).await["items"], json!([{"sku": "MAG-120", "title": "Test Magnesium – 120 capsules", "quantity": 3}]));
        // Taking out the only item, or a quantity that is no number: refused, nothing changed.
        let r = post(&mut b, &[("action", "change_items"), ("item0_sku", "MAG-120"), ("item0_quantity", "0")]).await;
        browser::assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_contains(&r, &["A subscription must hold 1 to 50 items."]);
        let r = post(&mut b, &[("action", "change_items"), ("item0_sku", "MAG-120"), ("item0_quantity", "lots")]).await;
        browser::assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_contains(&r, &["Please enter the quantity of MAG-120 as a whole number"]);
        assert_eq!(detail(app, &token, &number).await["items"][0]["quantity"], 3);

        // A new address; a wrong one comes back as typed, its problem at its field.
        let address = [("name", "Grace Hopper"), ("line1", "Prinsengracht 5"), ("line2", ""), ("city", "Amsterdam"),
            ("region", ""), ("postal_code", "1015 AA"), ("country", "NL")];
        let mut fields = vec![("action", "change_address")];
        fields.extend_from_slice(&address);
        let r = post(&mut b, &fields).await;
        assert_eq!(browser::location(&r), format!("{path}?done=change_address"));
        let page = browser::get(app, &mut b, &browser::location(&r)).await;
        assert_contains(&page, &["The next deliveries go to the new address.", "Grace Hopper, Prinsengracht 5, 1015 AA Amsterdam, NL",
            r#"<input id="f-city" name="city" type="text" value="Amsterdam""#]);
        let sub = detail(app, &token, &number).await;
        assert_eq!((sub["shipping_address"]["city"].as_str(), sub["shipping_address"]["postal_code"].as_str()), (Some("Amsterdam"), Some("1015 AA")), "{sub}");
        let fields = [("action", "change_address"), ("name", "Typed Name"), ("line1", "Somewhere 1"), ("city", "Haarlem"),
            ("postal_code", "!!"), ("country", "NL")];
        let r = post(&mut b, &fields).await;
        browser::assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_contains(&r, &["The address was not changed", r#"value="Typed Name""#, r#"id="f-postal_code-error""#]);
        assert_eq!(detail(app, &token, &number).await["shipping_address"]["city"], "Amsterdam");

        // Or one of the customer's saved addresses.
        let r = as_customer(app, &token, Method::POST, "/api/v1/account/addresses", Some(json!({
            "label": "Work", "name": "Ada Lovelace", "line1": "Markt 1", "city": "Delft", "postal_code": "2611 GP", "country": "NL"}))).await;
        assert!(r.status.is_success(), "{}", r.text());
        let saved = r.json()["id"].as_str().unwrap().to_owned();
        let page = browser::get(app, &mut b, &path).await;
        assert_contains(&page, &[r#"<select id="saved_address" name="address_id" required>"#, &format!(r#"value="{saved}""#)]);
        let r = post(&mut b, &[("action", "use_address"), ("address_id", &saved)]).await;
        assert_eq!(browser::location(&r), format!("{path}?done=change_address"));
        assert_eq!(detail(app, &token, &number).await["shipping_address"]["city"], "Delft");
        let r = post(&mut b, &[("action", "use_address"), ("address_id", "adr_not_mine")]).await;
        browser::assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);

        // Cancelled: the forms are gone, and a change posted from a stale page is the 409.
        let r = post(&mut b, &[("action", "cancel"), ("reason", "enough for now")]).await;
        assert_eq!(browser::location(&r), format!("{path}?done=cancel"));
        let page = browser::get(app, &mut b, &path).await;
        assert!(!page.text().contains(r#"value="change_items""#), "no forms once cancelled");
        for fields in [vec![("action", "change_interval"), ("interval", "30d")],
                vec![("action", "change_items"), ("item0_sku", "MAG-60"), ("item0_quantity", "1")],
                vec![("action", "pause"), ("until", until.as_str())]] {
            let r = post(&mut b, &fields).await;
            browser::assert_html(&r, StatusCode::CONFLICT);
            assert_contains(&r, &[r#"id="subscription-problem""#, "A subscription that is cancelled cannot be"]);
        }
        assert_eq!(detail(app, &token, &number).await["interval"], "60d");
    }

    async fn the_storefront_page_replaces_the_card_through_the_processor(backend: Backend) {
        use crate::common::browser;
        let shop = sub_shop(backend, |c| c.subscription_scan_secs = 0).await;
        let app = &shop.app;
        let host = shop.processor.to_string();
        let r = app.admin_patch("/api/v1/admin/plugins/sandbox-payments", &json!({"settings": {
            "base_url": format!("http://{host}"), "checkout_tokenize_url": format!("http://{host}/v1/tokens")}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        let email = "card@example.com";
        let (_token, _order, number) = subscribed(&shop, email, "4242424242424242").await;
        let (mut b, page, action) = on_subscription_page(app, email, &number).await;
        let path = format!("/account/subscriptions/{number}");
        // The card form posts to the shop and tokenizes at the processor, through the
        // checkout's pinned script, whose processor origin the page's policy allows.
        crate::security_headers::assert_page_headers(&path, &page);
        let script = olivine::http::security::checkout_script();
        assert_contains(&page, &[
            &format!(r#"<form id="card-form" method="post" action="{action}" data-tokenize-url="http://{host}/v1/tokens">"#),
            r#"<input type="hidden" name="action" value="replace_payment_method">"#,
            r#"<input type="hidden" name="payment_token" value="">"#,
            &format!(r#"<script src="{}" integrity="{}" defer>"#, script.path, script.integrity),
        ]);
        let html = page.text();
        let card_input = &html[html.find(r#"<input id="card-number""#).unwrap()..];
        assert!(!card_input[..card_input.find('>').unwrap()].contains("name="), "the card number is never posted");
        let csp = page.headers["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains(&format!("connect-src 'self' http://{host};")), "{csp}");
        let csrf = browser::csrf_of(&page);
        let card_on_file = async || {
            let enc: String = sqlx::query_scalar("SELECT payment_method_enc FROM subscriptions WHERE number = $1")
                .bind(&number).fetch_one(&app.kernel.state.db.pool).await.unwrap();
            app.kernel.state.keys.decrypt_field("subscriptions.payment_method", &enc).unwrap()
        };
        let before = card_on_file().await;

        // What the page's script posts: the token the processor gave the browser.
        let new_card = tokenize(shop.processor, "5555555555554444").await;
        let r = browser::post_form(app, &mut b, &action, &[("csrf", &csrf), ("action", "replace_payment_method"), ("payment_token", &new_card)]).await;
        assert_eq!(browser::location(&r), format!("{path}?done=replace_payment_method"));
        let page = browser::get(app, &mut b, &browser::location(&r)).await;
        assert_contains(&page, &["The next deliveries are paid with the new card."]);
        let after = card_on_file().await;
        assert!(after.starts_with("saved:cus_") && after != before, "{before} then {after}");
        assert_eq!(scalar(&app.kernel.state.db, "SELECT COUNT(*) FROM outbox WHERE event_type = 'subscription.payment_method_replaced'").await, 1);

        // A token the processor refuses: the reason on the page, the card on file kept.
        let r = browser::post_form(app, &mut b, &action, &[("csrf", &csrf), ("action", "replace_payment_method"), ("payment_token", "tok_never_issued")]).await;
        browser::assert_html(&r, StatusCode::PAYMENT_REQUIRED);
        assert_contains(&r, &[r#"id="subscription-problem""#, "The card was not accepted: the payment could not be processed. The card on file is unchanged"]);
        assert_eq!(card_on_file().await, after);
        // Without the script no token comes: the page says what it needs.
        let r = browser::post_form(app, &mut b, &action, &[("csrf", &csrf), ("action", "replace_payment_method"), ("payment_token", "")]).await;
        browser::assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_contains(&r, &["the page needs JavaScript"]);
        // The processor down: a 503 that says to try again.
        let another = tokenize(shop.processor, "4242424242424242").await;
        shop._handle.abort();
        let r = browser::post_form(app, &mut b, &action, &[("csrf", &csrf), ("action", "replace_payment_method"), ("payment_token", &another)]).await;
        browser::assert_html(&r, StatusCode::SERVICE_UNAVAILABLE);
        assert_contains(&r, &["could not save the card just now; the card on file is unchanged"]);
        assert_eq!(card_on_file().await, after);
    }
}

both_backends! {
    async fn support_acts_on_a_subscription_from_the_admin_with_errors_beside_the_field(backend: Backend) {
        use crate::admin_ui::{assert_page, signed_in_as, submit};
        use crate::common::browser::{get, location};
        let shop = sub_shop(backend, |c| c.subscription_scan_secs = 0).await;
        let app = &shop.app;
        let (token, _order, number) = subscribed(&shop, "admin-sub@example.com", "4242424242424242").await;
        let mut support = signed_in_as(app, "support").await;
        let list = get(app, &mut support, "/admin/subscriptions?status=active").await;
        assert_page(&list, StatusCode::OK, "the list");
        assert!(list.text().contains(&number), "{}", list.text());
        let none = get(app, &mut support, "/admin/subscriptions?status=paused").await;
        assert!(!none.text().contains(&number), "{}", none.text());
        let page = format!("/admin/subscriptions/{number}");
        let actions = format!("{page}/actions");
        let r = get(app, &mut support, &page).await;
        assert_page(&r, StatusCode::OK, "the subscription");
        assert!(r.text().contains("The next renewal") && r.text().contains("MAG-60"), "{}", r.text());
        // Each action as the customer would make it, audited under the staff member.
        let r = submit(app, &mut support, &page, &actions, &[("action", "skip")]).await;
        assert_eq!(location(&r), format!("{page}?done=skip"));
        assert_eq!(detail(app, &token, &number).await["skip_next"], true);
        let r = submit(app, &mut support, &page, &actions, &[("action", "pause"), ("until", "someday")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a date that is not one");
        assert!(r.text().contains("id=\"f-until-error\""), "{}", r.text());
        let r = submit(app, &mut support, &page, &actions, &[("action", "change")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a change of nothing");
        assert!(r.text().contains("id=\"f-next-renewal-on-error\""), "{}", r.text());
        let r = submit(app, &mut support, &page, &actions, &[("action", "change"), ("interval", "2w")]).await;
        assert_eq!(location(&r), format!("{page}?done=change"));
        assert_eq!(detail(app, &token, &number).await["interval"], "2w");
        let r = submit(app, &mut support, &page, &actions, &[("action", "cancel"), ("reason", "")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "no reason");
        assert!(r.text().contains("id=\"f-reason-error\""), "{}", r.text());
        let r = submit(app, &mut support, &page, &actions, &[("action", "cancel"), ("reason", "Moving abroad")]).await;
        assert_eq!(location(&r), format!("{page}?done=cancel"));
        let sub = detail(app, &token, &number).await;
        assert_eq!((sub["status"].clone(), sub["cancel_reason"].clone()), (json!("cancelled"), json!("Moving abroad")));
        let audit = app.admin_get(&format!("/api/v1/admin/audit?target_id={number}")).await.json();
        assert!(audit["entries"].as_array().unwrap().iter().any(|e| e["actor"].as_str().unwrap().starts_with("staff:")), "{audit}");
        // The catalog role has no subscription pages.
        let mut catalog = signed_in_as(app, "catalog").await;
        assert_page(&get(app, &mut catalog, &page).await, StatusCode::FORBIDDEN, "catalog");
    }
}
