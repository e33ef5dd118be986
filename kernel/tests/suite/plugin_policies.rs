//! The failure policies of payment adapters (a failure declines cleanly) and
//! notification channels (failures are retried with the same idempotency key), through
//! real plugins: a test adapter that misbehaves on command, and the first-party webhook
//! notifier against a local HTTP server.

use std::sync::{Arc, Mutex};

use crate::common::*;
use axum::http::{HeaderMap, StatusCode};
use olivine::plugins::notifications::{DeliveryOutcome, deliver};
use olivine::plugins::payments::{PaymentOutcome, PaymentRequest, call};
use olivine_plugin_runtime::bindings::{notification_types as nt, payment, types};
use serde_json::json;

fn authorize(order: &str) -> PaymentRequest {
    PaymentRequest::Authorize(payment::AuthorizeRequest {
        order_id: order.to_owned(),
        idempotency_key: format!("order-{order}-authorize"),
        amount: types::Money {
            amount_minor: 4999,
            currency: "EUR".to_owned(),
        },
        source: payment::PaymentSource::Token("tok_test".to_owned()),
        off_session: false,
        customer: None,
    })
}

fn declined(outcome: &PaymentOutcome) -> &str {
    match outcome {
        PaymentOutcome::Declined { reason, .. } => reason,
        other => panic!("expected a decline, got {other:?}"),
    }
}

both_backends! {
    async fn a_failing_payment_adapter_declines_cleanly(backend: Backend) {
        let app = TestApp::start(backend).await;
        let plugins = app.kernel.state.plugins.clone();
        // No adapter at all: a clean decline, not an error.
        assert!(declined(&call(&plugins, None, authorize("1000")).await).contains("no active payment adapter"));

        let r = app.admin_post("/api/v1/admin/plugins", &plugin_upload("testing/chaos-payments", "chaos_payments", |m| m)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        // Built for olivine:plugin@0.1: it loads and pays, but saves no cards.
        assert!(!olivine::plugins::payments::saves_payment_methods(&plugins));
        match call(&plugins, Some("chaos-payments"), authorize("1001")).await {
            PaymentOutcome::Done(result) => {
                assert_eq!(result.processor_reference, "chaos-1001");
                assert!(matches!(result.status, types::PaymentStatus::Approved));
            }
            other => panic!("{other:?}"),
        }
        // The processor's answers pass through; they are not failures of the adapter.
        app.admin_patch("/api/v1/admin/plugins/chaos-payments", &json!({"settings": {"mode": "decline"}})).await;
        for _ in 0..6 {
            assert_eq!(declined(&call(&plugins, None, authorize("1002")).await), "card declined");
        }
        app.admin_patch("/api/v1/admin/plugins/chaos-payments", &json!({"settings": {"mode": "retry"}})).await;
        assert!(matches!(call(&plugins, None, authorize("1003")).await, PaymentOutcome::Retry { .. }));
        let info = app.admin_get("/api/v1/admin/plugins/chaos-payments").await.json();
        assert_eq!((info["enabled"].clone(), info["consecutive_failures"].clone()), (json!(true), json!(0)));

        // A trapping or spinning adapter declines with a message fit for a shopper.
        for mode in ["trap", "loop"] {
            app.admin_patch("/api/v1/admin/plugins/chaos-payments", &json!({"settings": {"mode": mode}})).await;
            assert_eq!(declined(&call(&plugins, None, authorize("1004")).await), "the payment could not be processed", "{mode}");
        }
        // Five in a row and it is disabled; payments decline until the merchant acts.
        for _ in 0..3 {
            call(&plugins, None, authorize("1005")).await;
        }
        let info = app.admin_get("/api/v1/admin/plugins/chaos-payments").await.json();
        assert_eq!(info["enabled"], false, "{info}");
        assert!(declined(&call(&plugins, None, authorize("1006")).await).contains("no active payment adapter"));
        app.stop().await;
    }

    async fn notifications_are_retried_with_the_same_idempotency_key(backend: Backend) {
        // A webhook receiver that fails the first request and accepts the next ones.
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let receiver = {
            let seen = seen.clone();
            axum::Router::new().route("/hook", axum::routing::post(move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    let mut seen = seen.lock().unwrap();
                    seen.push((key, body));
                    if seen.len() == 1 {
                        (StatusCode::SERVICE_UNAVAILABLE, [("x-request-id", "none")])
                    } else {
                        (StatusCode::OK, [("x-request-id", "hook-42")])
                    }
                }
            }))
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Stopped gracefully, so its kept-alive connections close too (the host's client
        // reuses connections; an aborted accept loop would leave them serving).
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, receiver)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });

        let app = TestApp::start_with(backend, |c| c.bundled_plugins = true).await;
        let plugins = app.kernel.state.plugins.clone();
        let host = format!("127.0.0.1:{port}");
        let r = app.admin_patch("/api/v1/admin/plugins/webhook-notifier", &json!({
            "enabled": true,
            "settings": {"url": format!("http://{host}/hook")},
            "granted_hosts": [host],
        })).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let notification = nt::Message {
            topic: "order.confirmed".to_owned(),
            idempotency_key: "order-1001-confirmed".to_owned(),
            recipient: nt::Recipient::Endpoint(format!("http://{host}/hook")),
            title: "Order 1001".to_owned(),
            text: "Confirmed.".to_owned(),
            html: None,
            link: None,
            collapse_key: None,
            expires_at: None,
            priority: nt::Priority::High,
            marketing: false,
            data_json: r#"{"order": 1001}"#.to_owned(),
        };
        // 503: retry later. Then delivered, with the same key both times.
        assert!(matches!(deliver(&plugins, "webhook-notifier", notification.clone()).await, DeliveryOutcome::Retry { .. }));
        assert_eq!(
            deliver(&plugins, "webhook-notifier", notification.clone()).await,
            DeliveryOutcome::Delivered { provider_reference: "hook-42".to_owned() }
        );
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 2);
            assert!(seen.iter().all(|(key, _)| key == "order-1001-confirmed"), "{seen:?}");
            assert!(seen[1].1.contains("\"order\":1001"), "{}", seen[1].1);
        }
        // The receiver is gone: retry.
        let _ = stop.send(());
        let _ = server.await;
        assert!(matches!(deliver(&plugins, "webhook-notifier", notification.clone()).await, DeliveryOutcome::Retry { .. }));
        // The merchant revokes the host: a permanent failure, and nothing is sent.
        let r = app.admin_patch("/api/v1/admin/plugins/webhook-notifier", &json!({"granted_hosts": []})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        match deliver(&plugins, "webhook-notifier", notification.clone()).await {
            DeliveryOutcome::Failed { reason } => assert!(reason.contains("denied"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A disabled channel: retry later.
        app.admin_patch("/api/v1/admin/plugins/webhook-notifier", &json!({"enabled": false})).await;
        assert!(matches!(deliver(&plugins, "webhook-notifier", notification).await, DeliveryOutcome::Retry { .. }));
        app.stop().await;
    }
}
