//! Three real `olivine serve` processes on one PostgreSQL and Redis, as a merchant runs a
//! cluster: an edit made through one node is served fresh by the others within a
//! second; a plugin activated through one node prices on the others; a scheduled job
//! runs once for the cluster, not once per node; a node killed with `kill -9` in the
//! middle of a job loses no work (another node finishes it once the lease runs out).

use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::process::*;
use crate::common::*;
use serde_json::{Value, json};
use sqlx::Row;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

struct Cluster {
    db: TestDb,
    nodes: Vec<(String, u16, Child)>,
}

impl Cluster {
    /// Nodes named `names`, each with `env` on top of the cluster's settings.
    async fn start(names: &[&str], env: &[(&str, &str)]) -> Cluster {
        let db = TestDb::new(Backend::Postgres).await;
        let mut cluster = Cluster {
            db,
            nodes: Vec::new(),
        };
        for name in names {
            cluster.add(name, "", env);
        }
        for (_, port, _) in &cluster.nodes {
            wait_ready(*port);
        }
        cluster
    }

    fn add(&mut self, name: &str, failpoints: &str, env: &[(&str, &str)]) -> u16 {
        let port = free_port();
        let mut settings = vec![
            ("REDIS_URL", REDIS_URL),
            ("OLIVINE_NODE_ID", name),
            // Three nodes beside the other tests on one PostgreSQL: few connections each.
            ("OLIVINE_DB_MAX_CONNECTIONS", "4"),
            ("OLIVINE_JOB_WORKERS", "2"),
            ("OLIVINE_WATCH_PLUGINS", "false"),
        ];
        settings.extend_from_slice(env);
        let child = spawn_with(&self.db, port, failpoints, &settings);
        self.nodes.push((name.to_owned(), port, child));
        port
    }

    fn port(&self, name: &str) -> u16 {
        self.nodes
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, p, _)| *p)
            .expect("node")
    }

    async fn stop(mut self) {
        for (_, _, child) in &mut self.nodes {
            child.kill().ok();
            child.wait().ok();
        }
        self.db.drop().await;
    }
}

fn json_of(answer: Option<(u16, String)>, expected: u16) -> Value {
    let (status, body) = answer.expect("the node answers");
    assert_eq!(status, expected, "{body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn product_name(port: u16, slug: &str) -> Option<String> {
    match http(port, "GET", &format!("/api/v1/products/{slug}"), None) {
        Some((200, body)) => serde_json::from_str::<Value>(&body).ok()?["name"]
            .as_str()
            .map(str::to_owned),
        _ => None,
    }
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

fn product() -> String {
    let mut p = supplement("mag", "MAG");
    p["categories"] = json!([]);
    p.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_on_one_node_is_fresh_on_every_node_within_a_second() {
    let cluster = Cluster::start(&["a", "b", "c"], &[]).await;
    let (a, b, c) = (cluster.port("a"), cluster.port("b"), cluster.port("c"));
    let created = json_of(
        http(a, "POST", "/api/v1/admin/products", Some(&product())),
        201,
    );
    let id = created["id"].as_i64().unwrap();
    // Every node serves it, and from now on from its cache.
    for port in [a, b, c] {
        wait_for("the product on every node", Duration::from_secs(5), || {
            product_name(port, "mag").is_some()
        });
    }
    for round in 0..5 {
        let name = format!("Magnesium, edition {round}");
        let current = json_of(
            http(a, "GET", &format!("/api/v1/admin/products/{id}"), None),
            200,
        );
        let patch = json!({ "name": name, "version": current["version"] }).to_string();
        json_of(
            http(
                a,
                "PATCH",
                &format!("/api/v1/admin/products/{id}"),
                Some(&patch),
            ),
            200,
        );
        // The edit committed before the answer: the other nodes serve it within a second.
        for port in [b, c] {
            wait_for("the edit on another node", Duration::from_secs(1), || {
                product_name(port, "mag").as_deref() == Some(name.as_str())
            });
        }
    }
    // The cluster knows its nodes.
    let bus = json_of(http(b, "GET", "/api/v1/admin/bus", None), 200);
    let live: Vec<&str> = bus["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["live"] == true)
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    for name in ["a", "b", "c"] {
        assert!(live.contains(&name), "{bus}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_activated_on_one_node_prices_carts_on_the_others() {
    let cluster = Cluster::start(&["a", "b"], &[]).await;
    let (a, b) = (cluster.port("a"), cluster.port("b"));
    json_of(
        http(a, "POST", "/api/v1/admin/products", Some(&product())),
        201,
    );
    let quote = json!({ "lines": [{ "sku": "MAG-60", "quantity": 12 }] }).to_string();
    let discounted = |port: u16| {
        let quote = json_of(http(port, "POST", "/api/v1/price-quote", Some(&quote)), 200);
        quote["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| !l["adjustments"].as_array().unwrap().is_empty())
    };
    assert!(!discounted(b), "no pricing rule yet");
    let upload = plugin_upload("tiered-volume", "tiered_volume", |m| m);
    json_of(
        http(
            a,
            "POST",
            "/api/v1/admin/plugins",
            Some(&upload.to_string()),
        ),
        201,
    );
    assert!(discounted(a));
    // Node B loads the plugin from the database (by its hash) on the activation event.
    wait_for(
        "node B prices with the new rule",
        Duration::from_secs(20),
        || discounted(b),
    );
    // Rolled back... there is no earlier version; disabling through B stops it on A.
    json_of(
        http(
            b,
            "PATCH",
            "/api/v1/admin/plugins/tiered-volume",
            Some(r#"{"enabled": false}"#),
        ),
        200,
    );
    wait_for(
        "node A stops pricing with it",
        Duration::from_secs(5),
        || !discounted(a),
    );
    cluster.stop().await;
}

async fn schedule_runs(db: &TestDb, name: &str) -> (i64, Option<String>) {
    let conn = db.connect().await;
    let row = sqlx::query("SELECT runs, last_node FROM job_schedules WHERE name = $1")
        .bind(name)
        .fetch_optional(&conn.pool)
        .await
        .unwrap();
    conn.close().await;
    row.map(|r| (r.try_get(0).unwrap(), r.try_get(1).unwrap()))
        .unwrap_or((0, None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_runs_once_for_the_cluster_not_once_per_node() {
    // The session sweep every second, on three nodes.
    let cluster = Cluster::start(&["a", "b", "c"], &[("OLIVINE_SESSION_SWEEP_SECS", "1")]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while schedule_runs(&cluster.db, "sessions.sweep").await.0 < 1 {
        assert!(Instant::now() < deadline, "the sweep never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Four more runs take at least four intervals when the cluster runs it once per
    // interval; a sweep per node would take a third of that.
    let first = Instant::now();
    let deadline = first + Duration::from_secs(60);
    let (start, _) = schedule_runs(&cluster.db, "sessions.sweep").await;
    let mut nodes = std::collections::BTreeSet::new();
    loop {
        let (runs, node) = schedule_runs(&cluster.db, "sessions.sweep").await;
        nodes.extend(node);
        if runs >= start + 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the sweep stopped running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = first.elapsed();
    assert!(
        took >= Duration::from_millis(3500),
        "four runs in {took:?}: more than one per interval"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_job_loses_no_work() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut cluster = Cluster {
        db,
        nodes: Vec::new(),
    };
    // Node A takes the first sweep and hangs in it.
    let a = cluster.add(
        "a",
        "jobs.running=hang",
        &[
            ("OLIVINE_SESSION_SWEEP_SECS", "1"),
            ("OLIVINE_JOB_LEASE_SECS", "3"),
            ("OLIVINE_PAYMENT_RECONCILE_SECS", "0"),
        ],
    );
    wait_ready(a);
    let conn = cluster.db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let job_id: i64 = loop {
        let row = sqlx::query("SELECT id FROM jobs WHERE kind = 'sessions.sweep' AND state = 'running' AND leased_by = 'a'")
            .fetch_optional(&conn.pool).await.unwrap();
        if let Some(row) = row {
            break row.try_get(0).unwrap();
        }
        assert!(Instant::now() < deadline, "node A never took the sweep");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (_, _, child) = cluster.nodes.iter_mut().find(|(n, _, _)| n == "a").unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(schedule_runs(&cluster.db, "sessions.sweep").await.0, 0);

    // Node B starts; once A's lease runs out, B takes the job back and finishes it.
    let b = cluster.add(
        "b",
        "",
        &[
            ("OLIVINE_SESSION_SWEEP_SECS", "3600"),
            ("OLIVINE_JOB_LEASE_SECS", "3"),
        ],
    );
    wait_ready(b);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (runs, node) = schedule_runs(&cluster.db, "sessions.sweep").await;
        if runs >= 1 {
            assert_eq!(node.as_deref(), Some("b"));
            break;
        }
        assert!(Instant::now() < deadline, "nobody finished node A's job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM jobs WHERE id = $1")
        .bind(job_id)
        .fetch_one(&conn.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(left, 0, "the job A held is done");
    let jobs = json_of(http(b, "GET", "/api/v1/admin/jobs?state=dead", None), 200);
    assert_eq!(jobs["jobs"], json!([]), "nothing was given up");
    conn.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_nodes_poll_and_say_so() {
    // A Redis nobody listens at: wake-ups cannot be sent or received.
    let dead_redis = format!("redis://127.0.0.1:{}", free_port());
    let cluster = Cluster::start(&["a", "b"], &[("REDIS_URL", dead_redis.as_str())]).await;
    let (a, b) = (cluster.port("a"), cluster.port("b"));
    let created = json_of(
        http(a, "POST", "/api/v1/admin/products", Some(&product())),
        201,
    );
    let id = created["id"].as_i64().unwrap();
    wait_for("the product on node B", Duration::from_secs(5), || {
        product_name(b, "mag").is_some()
    });
    let patch = json!({ "name": "Polled", "version": created["version"] }).to_string();
    json_of(
        http(
            a,
            "PATCH",
            &format!("/api/v1/admin/products/{id}"),
            Some(&patch),
        ),
        200,
    );
    wait_for(
        "the edit on node B by polling",
        Duration::from_secs(1),
        || product_name(b, "mag").as_deref() == Some("Polled"),
    );
    let (_, metrics) = http(b, "GET", "/metrics", None).unwrap();
    assert_eq!(
        metric_value(&metrics, "olivine_bus_wakeup_up"),
        0.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("olivine_bus_wakeup_up"),
        "the gauge is there, at 0"
    );
    assert!(
        log_tail(b).contains("cross-node wake-ups are down"),
        "{}",
        log_tail(b)
    );
    cluster.stop().await;
}
