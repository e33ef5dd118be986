//! The transactional outbox and its dispatcher: at-least-once delivery, in order per
//! aggregate, resumed after a crash, with an idempotent consumer seeing each event's
//! effect exactly once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use olivine::bus::{Bus, Consumer, ConsumerFuture, Dispatcher, Event};
use olivine::store::Db;
use sqlx::Row;

/// Applies each event to a table keyed by event id (idempotent), records every raw
/// delivery, and can hang on one event after applying it, as a process would at the
/// moment it is killed.
struct Recorder {
    db: Db,
    deliveries: Mutex<Vec<(i64, String)>>,
    hang_on: Option<i64>,
    reached: tokio::sync::Notify,
}

impl Consumer for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn handle<'a>(&'a self, event: &'a Event) -> ConsumerFuture<'a> {
        Box::pin(async move {
            self.deliveries
                .lock()
                .unwrap()
                .push((event.id, event.aggregate_id.clone()));
            sqlx::query(
                "INSERT INTO effects (event_id, aggregate_id) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event.id)
            .bind(&event.aggregate_id)
            .execute(&self.db.pool)
            .await?;
            if Some(event.id) == self.hang_on {
                self.reached.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }
}

both_backends! {
    async fn dispatcher_resumes_after_a_crash_without_loss_or_double_effect(backend: Backend) {
        let test_db = TestDb::new(backend).await;
        let db = test_db.connect().await;
        olivine::store::migrate(&db).await.unwrap();
        sqlx::query("CREATE TABLE effects (event_id BIGINT PRIMARY KEY, aggregate_id TEXT NOT NULL)")
            .execute(&db.pool).await.unwrap();

        // 30 events over three aggregates, each committed with its own transaction.
        for i in 0..30 {
            let mut tx = db.begin().await.unwrap();
            olivine::bus::record(&mut tx, "product", format!("p{}", i % 3), "test.happened",
                &serde_json::json!({ "seq": i })).await.unwrap();
            tx.commit().await.unwrap();
        }
        let ids: Vec<i64> = sqlx::query("SELECT id FROM outbox ORDER BY id").fetch_all(&db.pool).await.unwrap()
            .iter().map(|r| r.try_get(0).unwrap()).collect();
        let hang_on = ids[12];

        // First run: dies after the consumer applied event 13, before it was marked.
        let first = Arc::new(Recorder { db: db.clone(), deliveries: Mutex::default(), hang_on: Some(hang_on), reached: Default::default() });
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let run = tokio::spawn(Dispatcher::new(db.clone(), Bus::new(), vec![first.clone()]).run(stop_rx));
        tokio::time::timeout(Duration::from_secs(10), first.reached.notified()).await.expect("dispatcher reached event 13");
        run.abort();
        let _ = run.await;
        // Nothing undelivered was marked; the batch's delivered events may stay pending too
        // (they are marked together once the batch is through).
        let pending = olivine::bus::pending_count(&db).await.unwrap();
        assert!((18..=30).contains(&pending), "{pending} pending");

        // Restart: everything is delivered, the interrupted event once more.
        let second = Arc::new(Recorder { db: db.clone(), deliveries: Mutex::default(), hang_on: None, reached: Default::default() });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let run = tokio::spawn(Dispatcher::new(db.clone(), Bus::new(), vec![second.clone()]).run(stop_rx));
        for _ in 0..500 {
            if olivine::bus::pending_count(&db).await.unwrap() == 0 { break; }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).unwrap();
        run.await.unwrap();
        assert_eq!(olivine::bus::pending_count(&db).await.unwrap(), 0);

        let mut delivered: Vec<(i64, String)> = first.deliveries.lock().unwrap().clone();
        assert_eq!(delivered.len(), 13);
        let again: Vec<(i64, String)> = second.deliveries.lock().unwrap().clone();
        // At least once: every event arrived; after the restart, each pending one exactly
        // once (the interrupted one among them), in order.
        assert_eq!(again.len() as i64, pending);
        assert!(again.windows(2).all(|w| w[0].0 < w[1].0), "{again:?}");
        assert!(again.iter().any(|(id, _)| *id == hang_on));
        delivered.extend(again);
        for id in &ids {
            assert!(delivered.iter().any(|(d, _)| d == id), "event {id} lost");
        }
        // In order per aggregate (first deliveries).
        for aggregate in ["p0", "p1", "p2"] {
            let mut seen = Vec::new();
            for (id, agg) in &delivered {
                if agg == aggregate && !seen.contains(id) { seen.push(*id); }
            }
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{aggregate} out of order: {seen:?}");
        }
        // The idempotent consumer applied each event exactly once.
        let effects: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM effects").fetch_one(&db.pool).await.unwrap().try_get(0).unwrap();
        assert_eq!(effects, 30);
        db.close().await;
        test_db.drop().await;
    }

    async fn a_failed_write_leaves_neither_change_nor_event(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let events = app.count("outbox").await;
        // The product row is inserted, then the second variant's SKU collides: the whole
        // transaction, event included, is rolled back.
        app.admin_post("/api/v1/admin/products", &supplement("one", "ONE")).await;
        let mut p = supplement("two", "TWO");
        p["variants"][1]["sku"] = serde_json::json!("ONE-60");
        assert_eq!(app.admin_post("/api/v1/admin/products", &p).await.status.as_u16(), 409);
        assert_eq!(app.count("products").await, 1);
        assert_eq!(app.count("outbox").await, events + 1);
        app.stop().await;
    }
}
