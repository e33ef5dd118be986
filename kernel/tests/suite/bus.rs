//! The event bus: the transactional outbox read as a commit-ordered log. Every consumer
//! sees every event, in order per aggregate, with none skipped, however transactions
//! interleave their ids and commits; cluster-once consumers' effects happen once across
//! crashes; a failing one retries with backoff, dead-letters, and holds nobody back;
//! staff read and replay dead letters; handled events are pruned.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use axum::http::StatusCode;
use olivine::bus::wakeup::Wakeups;
use olivine::bus::{
    Bus, BusConfig, BusParts, BusRuntime, ClusterOnceConsumer, ConsumerFuture, Event,
    NodeLocalConsumer,
};
use olivine::store::{Db, Reads};
use olivine::time::Clock;
use rand::Rng;
use sqlx::{AnyConnection, Row};

/// Records what a node-local consumer was handed, in order.
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<Event>>,
}

impl NodeLocalConsumer for Seen {
    fn name(&self) -> &'static str {
        "seen"
    }

    fn handle<'a>(&'a self, event: &'a Event) -> ConsumerFuture<'a> {
        Box::pin(async move {
            self.events.lock().unwrap().push(event.clone());
            Ok(())
        })
    }
}

impl Seen {
    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }
}

/// A cluster-once consumer writing one row per event in the transaction that moves its
/// position; it can hang on one event after writing (a node dying mid-event), and fail
/// on events marked `poison` until healed.
struct Effects {
    name: &'static str,
    hang_on_seq: Option<i64>,
    reached: tokio::sync::Notify,
    healed: AtomicBool,
    calls: AtomicUsize,
    /// Events handled per transaction (`ClusterOnceConsumer::run_size`).
    run: usize,
}

impl Effects {
    fn new(name: &'static str) -> Arc<Effects> {
        Self::hanging_on(name, None)
    }

    fn hanging_on(name: &'static str, seq: Option<i64>) -> Arc<Effects> {
        Arc::new(Effects {
            name,
            hang_on_seq: seq,
            reached: Default::default(),
            healed: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            run: 1,
        })
    }

    /// Handles runs of `run` events a transaction, and passes over events marked `skip`.
    fn in_runs(name: &'static str, run: usize) -> Arc<Effects> {
        Arc::new(Effects {
            run,
            ..Arc::into_inner(Self::new(name)).unwrap()
        })
    }
}

impl ClusterOnceConsumer for Effects {
    fn name(&self) -> &'static str {
        self.name
    }

    fn wants(&self, event: &Event) -> bool {
        self.run == 1 || event.payload["skip"] != true
    }

    fn run_size(&self) -> usize {
        self.run
    }

    fn handle<'a>(&'a self, event: &'a Event, tx: &'a mut AnyConnection) -> ConsumerFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if event.payload["poison"] == true && !self.healed.load(Ordering::SeqCst) {
                anyhow::bail!("poison event {}", event.id);
            }
            sqlx::query(
                "INSERT INTO effects (consumer, event_id, aggregate_id, seq, position)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(self.name)
            .bind(event.id)
            .bind(&event.aggregate_id)
            .bind(event.payload["seq"].as_i64().unwrap_or(0))
            .bind(event.position)
            .execute(&mut *tx)
            .await?;
            if self.hang_on_seq.is_some() && event.payload["seq"].as_i64() == self.hang_on_seq {
                self.reached.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(())
        })
    }
}

async fn effects_table(db: &Db) {
    sqlx::query(
        "CREATE TABLE effects (consumer TEXT NOT NULL, event_id BIGINT NOT NULL,
            aggregate_id TEXT NOT NULL, seq BIGINT NOT NULL, position BIGINT NOT NULL,
            PRIMARY KEY (consumer, event_id))",
    )
    .execute(&db.pool)
    .await
    .unwrap();
}

/// `(aggregate, seq)` of every effect of `consumer`, in position order.
async fn effects(db: &Db, consumer: &str) -> Vec<(String, i64)> {
    sqlx::query("SELECT aggregate_id, seq FROM effects WHERE consumer = $1 ORDER BY position")
        .bind(consumer)
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
        .collect()
}

fn test_bus_config() -> BusConfig {
    BusConfig {
        poll_interval: Duration::from_millis(25),
        lease: Duration::from_secs(2),
        max_attempts: 3,
        retry_base: Duration::from_millis(50),
    }
}

/// A node without the rest of the kernel: its own pools, the bus's tasks, the given
/// consumers.
struct Node {
    bus: Bus,
    runtime: BusRuntime,
    stop: tokio::sync::watch::Sender<bool>,
    db: Db,
}

async fn node(
    test_db: &TestDb,
    name: &str,
    clock: &Clock,
    node_local: Vec<Arc<dyn NodeLocalConsumer>>,
    cluster_once: Vec<Arc<dyn ClusterOnceConsumer>>,
) -> Node {
    let db = test_db.connect().await;
    let bus = Bus::new(name.to_owned());
    let start = olivine::bus::log::head(&mut db.pool.acquire().await.unwrap())
        .await
        .unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let runtime = BusRuntime::start(
        &bus,
        BusParts {
            work_db: db.clone(),
            background_db: db.clone(),
            reads: Reads::primary_only(db.clone()),
            clock: clock.clone(),
            config: test_bus_config(),
            node_local,
            cluster_once,
            wakeups: Arc::new(Wakeups::none()),
        },
        start.position,
        stop_rx,
    )
    .await
    .unwrap();
    Node {
        bus,
        runtime,
        stop,
        db,
    }
}

impl Node {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.runtime.stop().await;
        self.db.close().await;
    }
}

/// Asserts that `delivered` holds every committed `(aggregate, seq)` once, each
/// aggregate's in the order 1, 2, 3, …
fn assert_complete_and_ordered(
    who: &str,
    delivered: &[(String, i64)],
    committed: &std::collections::BTreeMap<String, i64>,
) {
    let total: i64 = committed.values().sum();
    assert_eq!(
        delivered.len() as i64,
        total,
        "{who}: delivered {} of {total}",
        delivered.len()
    );
    for (aggregate, count) in committed {
        let seqs: Vec<i64> = delivered
            .iter()
            .filter(|(a, _)| a == aggregate)
            .map(|(_, s)| *s)
            .collect();
        let expected: Vec<i64> = (1..=*count).collect();
        assert_eq!(
            seqs, expected,
            "{who}: events of {aggregate} skipped, repeated or out of order"
        );
    }
}

both_backends! {
    async fn every_consumer_sees_every_event_however_commits_interleave(backend: Backend) {
        let test_db = TestDb::new(backend).await;
        let db = test_db.connect().await;
        olivine::store::migrate(&db).await.unwrap();
        effects_table(&db).await;
        sqlx::query("CREATE TABLE aggregates (id TEXT PRIMARY KEY, version BIGINT NOT NULL)")
            .execute(&db.pool).await.unwrap();
        let aggregates = 6;
        for a in 0..aggregates {
            sqlx::query("INSERT INTO aggregates (id, version) VALUES ($1, 0)")
                .bind(format!("a{a}")).execute(&db.pool).await.unwrap();
        }
        let clock = Clock::system();
        // Two nodes, each with a node-local consumer and the same cluster-once one.
        let seen_a = Arc::new(Seen::default());
        let seen_b = Arc::new(Seen::default());
        let node_a = node(&test_db, "node-a", &clock, vec![seen_a.clone()], vec![Effects::new("effects")]).await;
        let node_b = node(&test_db, "node-b", &clock, vec![seen_b.clone()], vec![Effects::new("effects")]).await;

        // Writers take an outbox id early and commit after a random delay, so ids
        // commit out of order; one in eight rolls back. Each event names its
        // aggregate's version, taken under the aggregate's row lock.
        let (writers, per_writer, max_delay_ms) = match backend {
            Backend::Postgres => (12, 25, 12),
            Backend::Sqlite => (4, 12, 3),
        };
        let mut tasks = Vec::new();
        for w in 0..writers {
            let db = test_db.connect().await;
            let bus = node_a.bus.clone();
            tasks.push(tokio::spawn(async move {
                let mut committed = Vec::new();
                for n in 0..per_writer {
                    let (aggregate, delay, roll_back) = {
                        let mut rng = rand::rng();
                        (format!("a{}", rng.random_range(0..aggregates)),
                         rng.random_range(0..=max_delay_ms), rng.random_range(0..8) == 0)
                    };
                    let mut tx = db.begin().await.unwrap();
                    // An unrelated event first: its id is taken now, before the lock wait.
                    olivine::bus::record(&mut tx, "writer", format!("w{w}"), "test.noise",
                        &serde_json::json!({ "n": n })).await.unwrap();
                    let version: i64 = sqlx::query("UPDATE aggregates SET version = version + 1 WHERE id = $1 RETURNING version")
                        .bind(&aggregate).fetch_one(&mut *tx).await.unwrap().try_get(0).unwrap();
                    olivine::bus::record(&mut tx, "aggregate", &aggregate, "test.happened",
                        &serde_json::json!({ "seq": version })).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    if roll_back {
                        tx.rollback().await.unwrap();
                    } else {
                        tx.commit().await.unwrap();
                        committed.push(aggregate);
                        bus.notify();
                    }
                }
                db.close().await;
                committed
            }));
        }
        let mut committed = std::collections::BTreeMap::<String, i64>::new();
        let mut noise = 0;
        for task in tasks {
            for aggregate in task.await.unwrap() {
                *committed.entry(aggregate).or_default() += 1;
                noise += 1;
            }
        }
        let total = committed.values().sum::<i64>() as usize;
        let all = total + noise;
        wait_until("every consumer has every event", async || {
            seen_a.len() == all && seen_b.len() == all
                && effects(&db, "effects").await.len() == all
        }).await;

        for (who, seen) in [("node-local on node A", &seen_a), ("node-local on node B", &seen_b)] {
            let events = seen.events.lock().unwrap().clone();
            // Positions are consecutive: nothing skipped, nothing twice.
            for pair in events.windows(2) {
                assert_eq!(pair[1].position, pair[0].position + 1, "{who}: {:?} then {:?}", pair[0], pair[1]);
            }
            let delivered: Vec<(String, i64)> = events.iter()
                .filter(|e| e.event_type == "test.happened")
                .map(|e| (e.aggregate_id.clone(), e.payload["seq"].as_i64().unwrap()))
                .collect();
            assert_complete_and_ordered(who, &delivered, &committed);
        }
        let once: Vec<(String, i64)> = effects(&db, "effects").await.into_iter()
            .filter(|(a, _)| a.starts_with('a')).collect();
        assert_complete_and_ordered("cluster-once", &once, &committed);
        // Give the consumers a moment more: nothing arrives twice.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(seen_a.len(), all);
        assert_eq!(effects(&db, "effects").await.len(), all);

        node_a.stop().await;
        node_b.stop().await;
        db.close().await;
        test_db.drop().await;
    }

    async fn a_cluster_once_consumer_killed_mid_event_has_its_effect_once(backend: Backend) {
        let test_db = TestDb::new(backend).await;
        let db = test_db.connect().await;
        olivine::store::migrate(&db).await.unwrap();
        effects_table(&db).await;
        for seq in 1..=20 {
            let mut tx = db.begin().await.unwrap();
            olivine::bus::record(&mut tx, "aggregate", "p", "test.happened", &serde_json::json!({ "seq": seq })).await.unwrap();
            tx.commit().await.unwrap();
        }
        // Number them now, so the node starts at the head like a new consumer would (its
        // own sequencer numbering them after it started would let the consumer begin
        // before the move below); then move its position back to the start of the log
        // so it works through those twenty.
        olivine::bus::log::sequence(&db).await.unwrap();
        let clock = Clock::system();
        let hanging = Effects::hanging_on("effects", Some(13));
        let first = node(&test_db, "first", &clock, vec![], vec![hanging.clone()]).await;
        sqlx::query("UPDATE bus_consumers SET position = 0").execute(&db.pool).await.unwrap();
        first.bus.notify();
        tokio::time::timeout(Duration::from_secs(20), hanging.reached.notified()).await
            .expect("the consumer reached event 13");
        // It wrote event 13's effect in the open transaction; the node dies now.
        first.runtime.abort();
        first.db.close().await;
        assert_eq!(effects(&db, "effects").await.len(), 12, "event 13's effect died with its transaction");

        // Another node takes the lease once it runs out, and goes on from event 13.
        let second_consumer = Effects::new("effects");
        let second = node(&test_db, "second", &clock, vec![], vec![second_consumer.clone()]).await;
        clock.advance(Duration::from_secs(3));
        wait_until("the second node finishes", async || effects(&db, "effects").await.len() == 20).await;
        let seqs: Vec<i64> = effects(&db, "effects").await.into_iter().map(|(_, s)| s).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        assert_eq!(second_consumer.calls.load(Ordering::SeqCst), 8, "events 13 to 20, each once");
        assert_eq!(olivine::bus::pending_count(&db).await.unwrap(), 0);
        second.stop().await;
        db.close().await;
        test_db.drop().await;
    }

    async fn a_consumer_in_runs_passes_over_what_it_does_not_want_and_isolates_a_failure(backend: Backend) {
        let runs = Effects::in_runs("runs", 4);
        let clock = Clock::system();
        let app = TestApp::start_extended(backend, |c| {
            c.cluster.bus_max_attempts = 2;
            c.cluster.bus_retry_base_ms = 60_000;
        }, Extensions {
            cluster_once: vec![runs.clone()],
            clock: Some(clock.clone()),
            ..Default::default()
        }).await;
        let db = app.kernel.state.db.clone();
        effects_table(&db).await;
        let mut tx = db.begin().await.unwrap();
        for seq in 1..=12 {
            olivine::bus::record(&mut tx, "aggregate", "r", "test.happened",
                &serde_json::json!({ "seq": seq, "poison": seq == 7, "skip": seq % 3 == 0 })).await.unwrap();
        }
        tx.commit().await.unwrap();
        app.kernel.state.bus.notify();
        // The run holding 7 fails and is done again one event at a time: 4 and 5 once,
        // then 7 fails alone and waits for its retry.
        wait_until("the poison event fails alone", async || {
            let status = app.admin_get("/api/v1/admin/bus").await.json();
            status["cluster_once"].as_array().unwrap().iter().any(|c| c["name"] == "runs" && c["attempts"] == 1)
        }).await;
        let handled: Vec<i64> = effects(&db, "runs").await.iter().map(|e| e.1).collect();
        assert_eq!(handled, [1, 2, 4, 5]);
        clock.advance(Duration::from_secs(61));
        wait_until("dead-lettered, then the rest", async || effects(&db, "runs").await.len() == 7).await;
        let handled: Vec<i64> = effects(&db, "runs").await.iter().map(|e| e.1).collect();
        assert_eq!(handled, [1, 2, 4, 5, 8, 10, 11], "each wanted event once, none it passed over");
        assert_eq!(scalar(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM bus_dead_letters").await, 1);
        app.settle().await;
        app.stop().await;
    }

    async fn a_failing_consumer_retries_dead_letters_and_holds_nobody_back(backend: Backend) {
        let flaky = Effects::new("flaky");
        let steady = Effects::new("steady");
        steady.healed.store(true, Ordering::SeqCst);
        let clock = Clock::system();
        let app = TestApp::start_extended(backend, |c| {
            c.cluster.bus_max_attempts = 3;
            c.cluster.bus_retry_base_ms = 60_000;
        }, Extensions {
            cluster_once: vec![flaky.clone(), steady.clone()],
            clock: Some(clock.clone()),
            ..Default::default()
        }).await;
        let db = app.kernel.state.db.clone();
        effects_table(&db).await;
        let mut tx = db.begin().await.unwrap();
        for (seq, poison) in [(1, false), (2, true), (3, false)] {
            olivine::bus::record(&mut tx, "aggregate", "p", "test.happened",
                &serde_json::json!({ "seq": seq, "poison": poison })).await.unwrap();
        }
        tx.commit().await.unwrap();
        app.kernel.state.bus.notify();

        // The steady consumer is not held back by the flaky one.
        wait_until("steady handles all three", async || effects(&db, "steady").await.len() == 3).await;
        let consumer = async |name: &str| {
            let status = app.admin_get("/api/v1/admin/bus").await;
            assert_eq!(status.status, StatusCode::OK, "{}", status.text());
            status.json()["cluster_once"].as_array().unwrap().iter()
                .find(|c| c["name"] == name).cloned().unwrap()
        };
        wait_until("flaky fails once", async || consumer("flaky").await["attempts"] == 1).await;
        let failing = consumer("flaky").await;
        assert!(failing["last_error"].as_str().unwrap().contains("poison"), "{failing}");
        assert!(failing["retry_at"].is_string(), "{failing}");
        assert_eq!(failing["lag"], 2, "{failing}");
        assert_eq!(effects(&db, "flaky").await, vec![("p".to_owned(), 1)]);

        // Backoff: nothing happens until the retry is due; then the second attempt, and
        // after the third the event goes to the dead letters and the consumer goes on.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(consumer("flaky").await["attempts"], 1);
        clock.advance(Duration::from_secs(61));
        wait_until("second attempt", async || consumer("flaky").await["attempts"] == 2).await;
        clock.advance(Duration::from_secs(121));
        wait_until("dead-lettered, then event 3", async || effects(&db, "flaky").await.len() == 2).await;
        assert_eq!(effects(&db, "flaky").await, vec![("p".to_owned(), 1), ("p".to_owned(), 3)]);
        let status = consumer("flaky").await;
        assert_eq!(status["attempts"], 0, "{status}");
        assert_eq!(status["dead_letters"], 1, "{status}");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 5, "1, 2 three times, 3");

        let letters = app.admin_get("/api/v1/admin/bus/dead-letters?consumer=flaky").await;
        assert_eq!(letters.status, StatusCode::OK, "{}", letters.text());
        let letter = letters.json()["dead_letters"][0].clone();
        assert_eq!(letter["event_type"], "test.happened");
        assert_eq!(letter["payload"]["seq"], 2);
        assert_eq!(letter["attempts"], 3);
        assert!(letter["error"].as_str().unwrap().contains("poison"), "{letter}");
        assert!(app.metric(r#"olivine_bus_dead_letters{consumer="flaky"}"#).await >= 1.0);

        // A replay that fails again says so and keeps the dead letter.
        let id = letter["id"].as_i64().unwrap();
        let path = format!("/api/v1/admin/bus/dead-letters/{id}/replay");
        let again = app.admin_post(&path, &serde_json::json!({})).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text());
        assert!(again.json()["replay_error"].as_str().unwrap().contains("poison"));
        assert!(again.json()["replayed_at"].is_null());
        // Fixed, it is handled, once.
        flaky.healed.store(true, Ordering::SeqCst);
        let replayed = app.admin_post(&path, &serde_json::json!({})).await;
        assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.text());
        assert!(replayed.json()["replayed_at"].is_string());
        assert!(effects(&db, "flaky").await.contains(&("p".to_owned(), 2)));
        assert_eq!(app.admin_post(&path, &serde_json::json!({})).await.status, StatusCode::CONFLICT);
        let open = app.admin_get("/api/v1/admin/bus/dead-letters").await.json();
        assert_eq!(open["dead_letters"].as_array().unwrap().len(), 0, "{open}");
        let audit = app.admin_get("/api/v1/admin/audit?action=bus.dead_letter_replayed").await.json();
        assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
        assert_eq!(app.admin_post("/api/v1/admin/bus/dead-letters/999999/replay", &serde_json::json!({})).await.status,
            StatusCode::NOT_FOUND);

        // Operations are for staff who run the store.
        let catalog = app.staff_token("catalog").await;
        let r = app.request(axum::http::Method::GET, "/api/v1/admin/bus", Some(&catalog), None, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let admin = app.staff_token("admin").await;
        let r = app.request(axum::http::Method::GET, "/api/v1/admin/bus", Some(&admin), None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        app.stop().await;
    }

    async fn handled_events_are_pruned_on_schedule_and_unhandled_ones_kept(backend: Backend) {
        let stuck = Effects::new("stuck");
        let clock = Clock::system();
        let app = TestApp::start_extended(backend, |c| {
            // The retention is measured on the wall clock that stamps events (not the
            // kernel clock this test moves): none, so handled events go at the next run.
            c.cluster.bus_retention_secs = 0;
            c.cluster.bus_prune_secs = 600;
            c.cluster.bus_retry_base_ms = 3_600_000;
        }, Extensions { cluster_once: vec![stuck.clone()], clock: Some(clock.clone()), ..Default::default() }).await;
        let db = app.kernel.state.db.clone();
        effects_table(&db).await;
        let mut tx = db.begin().await.unwrap();
        for seq in 1..=10 {
            olivine::bus::record(&mut tx, "aggregate", "p", "test.happened",
                &serde_json::json!({ "seq": seq, "poison": seq == 7 })).await.unwrap();
        }
        tx.commit().await.unwrap();
        app.kernel.state.bus.notify();
        wait_until("stuck at event 7", async || effects(&db, "stuck").await.len() == 6).await;
        let head: i64 = sqlx::query("SELECT position FROM bus_log").fetch_one(&db.pool).await.unwrap().try_get(0).unwrap();
        // Every other consumer, node-local (reported by the heartbeat) and cluster-once,
        // has passed the ten events: only the stuck one holds pruning back.
        let slowest_other = async || -> i64 {
            sqlx::query("SELECT MIN(position) FROM (SELECT position FROM bus_nodes
                         UNION ALL SELECT position FROM bus_consumers WHERE name <> 'stuck') AS positions")
                .fetch_one(&db.pool).await.unwrap().try_get::<Option<i64>, _>(0).unwrap().unwrap_or(head)
        };
        wait_until("every other consumer past the ten events", async || slowest_other().await >= head).await;
        // A node that died long ago does not hold pruning back.
        sqlx::query("INSERT INTO bus_nodes (node_id, position, version, started_at, seen_at) VALUES ('gone', 0, 'x', '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z')")
            .execute(&db.pool).await.unwrap();

        // Ten minutes on, the prune schedule runs: events past the retention that every
        // consumer has handled go; the one the stuck consumer fails on, and those
        // after it, stay.
        let runs = async || -> i64 {
            sqlx::query("SELECT runs FROM job_schedules WHERE name = 'bus.prune'").fetch_one(&db.pool).await.unwrap().try_get(0).unwrap()
        };
        assert_eq!(runs().await, 0);
        clock.advance(Duration::from_secs(601));
        wait_until("the prune ran", async || runs().await == 1).await;
        let left: Vec<i64> = sqlx::query("SELECT position FROM outbox ORDER BY position").fetch_all(&db.pool).await.unwrap()
            .iter().map(|r| r.try_get(0).unwrap()).collect();
        assert_eq!(left, ((head - 3)..=head).collect::<Vec<_>>(), "kept from the stuck consumer's next event on");
        let gone: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM bus_nodes WHERE node_id = 'gone'").fetch_one(&db.pool).await.unwrap().try_get(0).unwrap();
        assert_eq!(gone, 0, "nodes gone for a day are forgotten");
        let status = app.admin_get("/api/v1/admin/bus").await.json();
        assert_eq!(status["oldest_position"], head - 3, "{status}");
        app.stop().await;
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
