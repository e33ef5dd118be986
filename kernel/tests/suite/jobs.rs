//! Durable jobs: with two nodes leasing, each job runs once; a failing job backs off,
//! dies after its attempts, and staff see, retry and discard it; a job whose worker
//! stalls past its lease goes to another node, and the stalled worker cannot complete
//! it; a schedule runs once per interval for the cluster, not once per node.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use axum::http::StatusCode;
use olivine::jobs::{FnHandler, JobContext, JobRegistry, NewJob, Schedule};
use olivine::store::Db;
use olivine::time::Clock;
use sqlx::Row;

async fn effects_table(db: &Db) {
    sqlx::query("CREATE TABLE job_effects (job_id BIGINT PRIMARY KEY, node TEXT NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
}

/// Writes one row per job in the transaction that completes it: exactly once.
fn effect_handler(calls: Arc<AtomicUsize>) -> JobRegistry {
    let mut registry = JobRegistry::default();
    registry.handler(FnHandler::new("test.effect", move |ctx: &JobContext| {
        let calls = calls.clone();
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut tx = ctx.state.db.begin().await?;
            sqlx::query("INSERT INTO job_effects (job_id, node) VALUES ($1, $2)")
                .bind(ctx.job.id)
                .bind(ctx.state.bus.node_id())
                .execute(&mut *tx)
                .await?;
            ctx.complete_in(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }));
    registry
}

async fn enqueue(app: &TestApp, jobs: &[NewJob]) {
    let state = &app.kernel.state;
    let mut tx = state.db.begin().await.unwrap();
    olivine::jobs::enqueue_all(&mut tx, jobs, state.clock.now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    state.bus.notify_jobs();
}

both_backends! {
    async fn with_two_nodes_leasing_every_job_runs_once(backend: Backend) {
        let calls = Arc::new(AtomicUsize::new(0));
        let app = TestApp::start_extended(backend, |_| {},
            Extensions { jobs: effect_handler(calls.clone()), ..Default::default() }).await;
        let db = app.kernel.state.db.clone();
        effects_table(&db).await;
        let other = app.another_node(|_| {},
            Extensions { jobs: effect_handler(calls.clone()), ..Default::default() }).await;
        let jobs: Vec<NewJob> = (0..300).map(|i| NewJob::new("test.effect", serde_json::json!({ "i": i }))).collect();
        enqueue(&app, &jobs).await;
        wait_until("300 effects", async || scalar(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM job_effects").await == 300).await;
        wait_until("queue empty", async || scalar(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM jobs").await == 0).await;
        assert_eq!(calls.load(Ordering::SeqCst), 300, "no job ran twice");
        // PostgreSQL wakes the other node at once (LISTEN/NOTIFY), and it leases beside
        // the first with SKIP LOCKED. (On SQLite the other node polls, and one writer
        // leases at a time.)
        if backend == Backend::Postgres {
            let nodes = scalar(&db, "SELECT CAST(COUNT(DISTINCT node) AS BIGINT) FROM job_effects").await;
            assert_eq!(nodes, 2, "both nodes took jobs");
        }
        other.kernel.shutdown().await;
        app.stop().await;
    }

    async fn a_failing_job_backs_off_dies_and_staff_retry_or_discard_it(backend: Backend) {
        let healed = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicUsize::new(0));
        let mut registry = JobRegistry::default();
        {
            let (healed, attempts) = (healed.clone(), attempts.clone());
            registry.handler(FnHandler::new("test.flaky", move |_ctx: &JobContext| {
                let (healed, attempts) = (healed.clone(), attempts.clone());
                Box::pin(async move {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    anyhow::ensure!(healed.load(Ordering::SeqCst), "the processor said no");
                    Ok(())
                })
            }));
        }
        let clock = Clock::system();
        let app = TestApp::start_extended(backend, |c| c.cluster.job_retry_base_ms = 60_000,
            Extensions { jobs: registry, clock: Some(clock.clone()), ..Default::default() }).await;
        enqueue(&app, &[NewJob::new("test.flaky", serde_json::json!({})).max_attempts(3)]).await;
        let job = async |state: &str| {
            let r = app.admin_get(&format!("/api/v1/admin/jobs?state={state}")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            r.json()["jobs"].as_array().unwrap().first().cloned()
        };
        wait_until("first failure", async || job("retrying").await.is_some()).await;
        let retrying = job("retrying").await.unwrap();
        assert_eq!(retrying["attempts"], 1);
        assert_eq!(retrying["last_error"], "the processor said no");
        assert!(retrying["run_at"].as_str().unwrap() > clock.now_text().as_str(), "retried later, not now: {retrying}");
        let overview = app.admin_get("/api/v1/admin/jobs/overview").await.json();
        assert_eq!(overview["stats"]["retrying"], 1, "{overview}");
        // Backoff: a minute, then two.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(70));
        wait_until("second failure", async || attempts.load(Ordering::SeqCst) == 2).await;
        clock.advance(Duration::from_secs(150));
        wait_until("dead", async || job("dead").await.is_some()).await;
        let dead = job("dead").await.unwrap();
        assert_eq!(dead["attempts"], 3);
        assert!(app.metric(r#"olivine_jobs{state="dead"}"#).await >= 1.0);
        assert!(app.metric(r#"olivine_jobs_dead_total{kind="test.flaky"}"#).await >= 1.0);

        // Staff retry it once the cause is fixed: it runs and is gone.
        let id = dead["id"].as_i64().unwrap();
        healed.store(true, Ordering::SeqCst);
        let retried = app.admin_post(&format!("/api/v1/admin/jobs/{id}/retry"), &serde_json::json!({})).await;
        assert_eq!(retried.status, StatusCode::OK, "{}", retried.text());
        wait_until("done", async || app.count("jobs").await == 0).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
        assert_eq!(app.admin_post(&format!("/api/v1/admin/jobs/{id}/retry"), &serde_json::json!({})).await.status,
            StatusCode::NOT_FOUND);

        // A dead job can be discarded; a queued one cannot.
        healed.store(false, Ordering::SeqCst);
        enqueue(&app, &[NewJob::new("test.flaky", serde_json::json!({})).max_attempts(1)]).await;
        wait_until("dead again", async || job("dead").await.is_some()).await;
        let id = job("dead").await.unwrap()["id"].as_i64().unwrap();
        enqueue(&app, &[NewJob::new("test.flaky", serde_json::json!({})).at(clock.now() + chrono::Duration::days(1))]).await;
        let queued = job("queued").await.unwrap()["id"].as_i64().unwrap();
        let r = app.request(axum::http::Method::DELETE, &format!("/api/v1/admin/jobs/{queued}"), Some(ADMIN_TOKEN), None, None).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        let r = app.request(axum::http::Method::DELETE, &format!("/api/v1/admin/jobs/{id}"), Some(ADMIN_TOKEN), None, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        let audit = app.admin_get("/api/v1/admin/audit?target_type=job").await.json();
        let actions: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["job.discarded", "job.retried"], "{audit}");
        app.stop().await;
    }

    async fn a_job_whose_worker_stalls_past_its_lease_runs_elsewhere_once(backend: Backend) {
        let stall = Arc::new(tokio::sync::Notify::new());
        let stalled = Arc::new(tokio::sync::Notify::new());
        let stalling = {
            let mut registry = JobRegistry::default();
            let (stall, stalled) = (stall.clone(), stalled.clone());
            registry.handler(FnHandler::new("test.effect", move |ctx: &JobContext| {
                let (stall, stalled) = (stall.clone(), stalled.clone());
                Box::pin(async move {
                    stalled.notify_one();
                    stall.notified().await;
                    // Its lease is gone by now: completing must fail, and its write with it.
                    let mut tx = ctx.state.db.begin().await?;
                    sqlx::query("INSERT INTO job_effects (job_id, node) VALUES ($1, 'stalled')")
                        .bind(ctx.job.id).execute(&mut *tx).await?;
                    ctx.complete_in(&mut tx).await?;
                    tx.commit().await?;
                    Ok(())
                })
            }));
            registry
        };
        let app = TestApp::start_extended(backend, |c| c.cluster.job_lease_secs = 8,
            Extensions { jobs: stalling, ..Default::default() }).await;
        let db = app.kernel.state.db.clone();
        effects_table(&db).await;
        enqueue(&app, &[NewJob::new("test.effect", serde_json::json!({}))]).await;
        tokio::time::timeout(Duration::from_secs(20), stalled.notified()).await.expect("the first node runs the job");
        // The other node's clock runs past the first node's lease, as if the first had
        // stalled that long (its renewals write leases that have run out on this clock).
        let later = Clock::system();
        later.advance(Duration::from_secs(9));
        let calls = Arc::new(AtomicUsize::new(0));
        let other = app.another_node(|c| c.cluster.job_lease_secs = 8,
            Extensions { jobs: effect_handler(calls.clone()), clock: Some(later), ..Default::default() }).await;
        wait_until("the other node ran it", async || calls.load(Ordering::SeqCst) == 1).await;
        wait_until("done", async || app.count("jobs").await == 0).await;
        stall.notify_one();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let nodes: Vec<String> = sqlx::query("SELECT node FROM job_effects").fetch_all(&db.pool).await.unwrap()
            .iter().map(|r| r.try_get(0).unwrap()).collect();
        assert_eq!(nodes, [other.kernel.state.bus.node_id()], "one effect, by the node that held the lease");
        assert_eq!(app.count("jobs").await, 0);
        other.kernel.shutdown().await;
        app.stop().await;
    }

    async fn a_schedule_runs_once_per_interval_however_many_nodes(backend: Backend) {
        let clock = Clock::system();
        let ticks = Arc::new(AtomicUsize::new(0));
        let registry = || {
            let ticks = ticks.clone();
            let mut registry = JobRegistry::default();
            registry.handler(FnHandler::new("test.tick", move |_ctx: &JobContext| {
                let ticks = ticks.clone();
                Box::pin(async move {
                    ticks.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            }));
            registry.schedule(Schedule { name: "test.tick", kind: "test.tick", interval: Duration::from_secs(600), at_start: false });
            registry
        };
        let app = TestApp::start_extended(backend, |_| {},
            Extensions { jobs: registry(), clock: Some(clock.clone()), ..Default::default() }).await;
        let second = app.another_node(|_| {}, Extensions { jobs: registry(), clock: Some(clock.clone()), ..Default::default() }).await;
        let third = app.another_node(|_| {}, Extensions { jobs: registry(), clock: Some(clock.clone()), ..Default::default() }).await;
        let db = app.kernel.state.db.clone();
        for interval in 1..=3 {
            clock.advance(Duration::from_secs(601));
            wait_until("the interval's run", async || {
                scalar(&db, "SELECT runs FROM job_schedules WHERE name = 'test.tick'").await == interval
            }).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3, "once per interval, not once per node");
        let overview = app.admin_get("/api/v1/admin/jobs/overview").await.json();
        let tick = overview["schedules"].as_array().unwrap().iter().find(|s| s["name"] == "test.tick").unwrap().clone();
        assert_eq!(tick["runs"], 3, "{tick}");
        assert!(tick["last_node"].is_string());
        second.kernel.shutdown().await;
        third.kernel.shutdown().await;
        app.stop().await;
    }
}
