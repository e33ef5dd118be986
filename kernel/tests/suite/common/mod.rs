//! Test harness: a kernel per test on a fresh SQLite file or a fresh PostgreSQL schema,
//! and request helpers that drive the real router.
#![allow(dead_code)]

pub mod browser;
pub mod mock_providers;
pub mod oidc_provider;
pub mod process;
pub mod served;

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
pub use olivine::app::Extensions;
use olivine::app::Kernel;
use olivine::config::ServeConfig;
use serde_json::Value;
use tower::ServiceExt;

/// The bootstrap API token of the store's owner (a staff user with the owner role).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// How the audit log names the owner the kernel creates in an empty store.
pub const OWNER_ACTOR: &str = "staff:1";
/// Audit entries a new store starts with: the owner created, its bootstrap token made.
pub const BOOTSTRAP_AUDIT_ENTRIES: i64 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests use; each test gets its own schema in it.
pub fn postgres_url() -> String {
    std::env::var("OLIVINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("t_{}_{}_{}", std::process::id(), nanos, n)
}

/// `base` with `search_path` set to `schema`.
fn with_schema(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A database of its own for one test: a SQLite file in a temporary directory, or a
/// new schema on the PostgreSQL server.
pub struct TestDb {
    pub backend: Backend,
    pub dir: TestDir,
    pub url: Option<String>,
    schema: Option<String>,
    /// The PostgreSQL server the schema is on.
    server: String,
}

/// The data directory of a test's store: its own temporary one, or another node's
/// (the nodes of one store share it as they would share a volume: master key, token).
pub enum TestDir {
    Owned(tempfile::TempDir),
    Shared(std::path::PathBuf),
}

impl TestDir {
    pub fn path(&self) -> &std::path::Path {
        match self {
            TestDir::Owned(dir) => dir.path(),
            TestDir::Shared(path) => path,
        }
    }
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        Self::on_server(backend, &postgres_url()).await
    }

    /// A database of its own on the PostgreSQL server at `base` (or SQLite).
    pub async fn on_server(backend: Backend, base: &str) -> TestDb {
        let dir = TestDir::Owned(tempfile::tempdir().expect("temp dir"));
        match backend {
            Backend::Sqlite => TestDb {
                backend,
                dir,
                url: None,
                schema: None,
                server: base.to_owned(),
            },
            Backend::Postgres => {
                let schema = unique_name();
                let admin = olivine::store::Db::connect(base, 1)
                    .await
                    .expect("PostgreSQL at 127.0.0.1:5432 (set OLIVINE_TEST_DATABASE_URL)");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin.pool)
                    .await
                    .expect("create schema");
                admin.close().await;
                let url = with_schema(base, &schema);
                TestDb {
                    backend,
                    dir,
                    url: Some(url),
                    schema: Some(schema),
                    server: base.to_owned(),
                }
            }
        }
    }

    /// The same database and data directory, for another node of the store; dropping it
    /// leaves the database alone.
    pub fn shared(&self) -> TestDb {
        TestDb {
            backend: self.backend,
            dir: TestDir::Shared(self.dir.path().to_owned()),
            url: self.url.clone(),
            schema: None,
            server: self.server.clone(),
        }
    }

    /// This test's schema on another server that has it (a streaming replica).
    pub fn url_on(&self, base: &str) -> Option<String> {
        self.schema.as_ref().map(|schema| with_schema(base, schema))
    }

    pub fn config(&self) -> ServeConfig {
        let mut config = ServeConfig::for_data_dir(self.dir.path());
        config.store.database_url = self.url.clone();
        config.store.db_max_connections = 8;
        config.admin_token = Some(ADMIN_TOKEN.to_owned());
        // Tests make many requests as one client (`unknown`): limits far above what any
        // test does. The rate-limit tests set low ones. Keys of their own in Redis.
        let plenty = olivine::ratelimit::Limit::new(1_000_000, 60);
        config.rate_limit_sign_in = plenty;
        config.rate_limit_sign_in_account = plenty;
        config.rate_limit_register = plenty;
        config.rate_limit_api = plenty;
        config.rate_limit_prefix = format!("olivine-test:{}", unique_name());
        // One compiled-plugin cache for every test: compiling is the slow part.
        config.plugin_cache_dir =
            Some(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"));
        // Few connections per kernel: tests run side by side on one PostgreSQL.
        config.cluster.job_workers = 2;
        config
    }

    /// The environment a spawned `olivine` process needs to use this database.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("OLIVINE_DATA_DIR", self.dir.path().display().to_string()),
            ("OLIVINE_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ];
        if let Some(url) = &self.url {
            env.push(("DATABASE_URL", url.clone()));
        }
        env
    }

    pub async fn connect(&self) -> olivine::store::Db {
        let url = self.config().store.database_url().expect("database url");
        olivine::store::Db::connect(&url, 4).await.expect("connect")
    }

    /// Drops the PostgreSQL schema (SQLite files go with the temporary directory).
    pub async fn drop(self) {
        if let Some(schema) = &self.schema
            && let Ok(admin) = olivine::store::Db::connect(&self.server, 1).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin.pool)
                .await;
            admin.close().await;
        }
    }
}

pub struct TestApp {
    pub kernel: Kernel,
    pub router: olivine::http::fast_lane::App,
    pub db: TestDb,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "response is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the error shape: the status, and that `fields` names `field`.
    #[track_caller]
    pub fn assert_field_error(&self, status: u16, field: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        let body = self.json();
        let fields = body["fields"].as_array().cloned().unwrap_or_default();
        assert!(
            fields.iter().any(|f| f["field"] == field),
            "expected an error naming `{field}`, got {body}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
        Self::start_extended(backend, adjust, Extensions::default()).await
    }

    /// A kernel with consumers, job kinds or schedules of the test's own.
    pub async fn start_extended(
        backend: Backend,
        adjust: impl FnOnce(&mut ServeConfig),
        extensions: Extensions,
    ) -> TestApp {
        Self::start_on(TestDb::new(backend).await, adjust, extensions).await
    }

    pub async fn start_on(
        db: TestDb,
        adjust: impl FnOnce(&mut ServeConfig),
        extensions: Extensions,
    ) -> TestApp {
        let mut config = db.config();
        adjust(&mut config);
        let kernel = Kernel::start_with(config, extensions)
            .await
            .expect("kernel starts");
        let router = kernel.router();
        TestApp { kernel, router, db }
    }

    /// Another node of the same store (same database and data directory).
    pub async fn another_node(
        &self,
        adjust: impl FnOnce(&mut ServeConfig),
        extensions: Extensions,
    ) -> TestApp {
        Self::start_on(self.db.shared(), adjust, extensions).await
    }

    /// Starts with the demo catalog loaded.
    pub async fn with_demo(backend: Backend) -> TestApp {
        Self::start_with(backend, |c| c.seed_demo = true).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Body>,
        content_type: Option<&str>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        let request = builder
            .body(body.unwrap_or_else(Body::empty))
            .expect("request");
        self.send(request).await
    }

    /// Sends a request through the router and reads the whole response.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path, None, None, None).await
    }

    pub async fn admin_get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path, Some(ADMIN_TOKEN), None, None)
            .await
    }

    pub async fn admin_send(&self, method: Method, path: &str, body: &Value) -> TestResponse {
        self.request(
            method,
            path,
            Some(ADMIN_TOKEN),
            Some(Body::from(body.to_string())),
            Some("application/json"),
        )
        .await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> TestResponse {
        self.admin_send(Method::POST, path, body).await
    }

    pub async fn admin_patch(&self, path: &str, body: &Value) -> TestResponse {
        self.admin_send(Method::PATCH, path, body).await
    }

    pub async fn admin_post_raw(&self, path: &str, body: impl Into<Body>) -> TestResponse {
        self.request(
            Method::POST,
            path,
            Some(ADMIN_TOKEN),
            Some(body.into()),
            Some("application/json"),
        )
        .await
    }

    /// Creates a staff user with `role` (as the owner) and answers an API token of theirs.
    pub async fn staff_token(&self, role: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let created = self
            .admin_post(
                "/api/v1/admin/staff",
                &serde_json::json!({
                    "email": format!("{role}{n}@staff.example"),
                    "name": format!("{role} {n}"),
                    "role": role,
                }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let id = created.json()["id"].as_i64().expect("staff id");
        let token = self
            .admin_post(
                &format!("/api/v1/admin/staff/{id}/tokens"),
                &serde_json::json!({ "label": "test" }),
            )
            .await;
        assert_eq!(token.status, StatusCode::CREATED, "{}", token.text());
        token.json()["token"].as_str().expect("token").to_owned()
    }

    /// Registers a customer and answers their access token.
    pub async fn customer_token(&self, email: &str) -> String {
        let password = "correct horse battery";
        let registered = self
            .request(
                Method::POST,
                "/api/v1/account/register",
                None,
                Some(Body::from(
                    serde_json::json!({ "email": email, "password": password, "name": "Shopper" })
                        .to_string(),
                )),
                Some("application/json"),
            )
            .await;
        assert_eq!(
            registered.status,
            StatusCode::CREATED,
            "{}",
            registered.text()
        );
        let signed_in = self
            .request(
                Method::POST,
                "/api/v1/account/sign-in",
                None,
                Some(Body::from(
                    serde_json::json!({ "email": email, "password": password }).to_string(),
                )),
                Some("application/json"),
            )
            .await;
        assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text());
        signed_in.json()["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// Counts rows of a table (for "nothing was half-written" checks).
    pub async fn count(&self, table: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"
        )))
        .fetch_one(&self.kernel.state.db.pool)
        .await
        .expect("count")
        .try_get(0)
        .expect("count value")
    }

    /// The value of one series of `/metrics` now (see [`metric_value`]).
    pub async fn metric(&self, series: &str) -> f64 {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        metric_value(&r.text(), series)
    }

    /// Waits until every event in the log is numbered and handled by this node's
    /// consumers and the cluster-once consumers.
    pub async fn settle(&self) {
        let state = &self.kernel.state;
        for _ in 0..500 {
            if state.bus.pending(&state.db).await.expect("pending") == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Say which consumer is behind and why, not only that one is.
        let consumers: Vec<String> = sqlx::query(
            "SELECT name || ' at ' || position || ': ' || COALESCE(last_error, '') FROM bus_consumers",
        )
        .fetch_all(&state.db.pool)
        .await
        .map(|rows| {
            use sqlx::Row;
            rows.iter().filter_map(|r| r.try_get(0).ok()).collect()
        })
        .unwrap_or_default();
        panic!("events were not handled within 5 s: {consumers:?}");
    }

    pub async fn stop(self) {
        self.kernel.shutdown().await;
        self.db.drop().await;
    }
}

/// The value of `series` (its name and labels exactly as `/metrics` writes them) in a
/// Prometheus text; 0 when the series is not there yet.
///
/// The metrics recorder is process-wide: every kernel in the test binary counts into the
/// same series, and other tests run alongside. So a test asserts that a series grew by
/// at least what it did itself, never merely that the series exists.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| {
            value
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{series}: not a number: {value}"))
        })
        .unwrap_or(0.0)
}

/// A JSON request with a customer's access token.
pub async fn as_customer(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> TestResponse {
    app.request(
        method,
        path,
        Some(token),
        body.map(|b| Body::from(b.to_string())),
        Some("application/json"),
    )
    .await
}

/// Polls `done` until it holds (up to 30 s), then returns; panics naming `what`.
pub async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The outbox event of type `event_type` about `aggregate_id`, as consumers get it (to
/// hand it to a consumer again, as a redelivery would).
pub async fn outbox_event(
    app: &TestApp,
    event_type: &str,
    aggregate_id: &str,
) -> olivine::bus::Event {
    use sqlx::Row;
    let row = sqlx::query(
        "SELECT id, position, aggregate_type, aggregate_id, event_type, payload, created_at
         FROM outbox WHERE event_type = $1 AND aggregate_id = $2",
    )
    .bind(event_type)
    .bind(aggregate_id)
    .fetch_one(&app.kernel.state.db.pool)
    .await
    .expect("the event");
    let payload: String = row.try_get(5).expect("payload");
    olivine::bus::Event {
        id: row.try_get(0).expect("id"),
        position: row
            .try_get::<Option<i64>, _>(1)
            .expect("position")
            .unwrap_or(0),
        aggregate_type: row.try_get(2).expect("aggregate_type"),
        aggregate_id: row.try_get(3).expect("aggregate_id"),
        event_type: row.try_get(4).expect("event_type"),
        payload: serde_json::from_str(&payload).expect("JSON payload"),
        created_at: row.try_get(6).expect("created_at"),
    }
}

/// The one number a query answers (a count, a sum).
pub async fn scalar(db: &olivine::store::Db, sql: &'static str) -> i64 {
    use sqlx::Row;
    sqlx::query(sql)
        .fetch_one(&db.pool)
        .await
        .expect("query")
        .try_get(0)
        .expect("a number")
}

/// Runs an async test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($backend:ident: Backend) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn run($backend: Backend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    run(Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    run(Backend::Postgres).await
                }
            }
        )*
    };
}

/// A valid supplement product for tests to vary.
pub fn supplement(slug: &str, sku_prefix: &str) -> Value {
    serde_json::json!({
        "slug": slug,
        "name": "Test Magnesium",
        "product_type": "supplement",
        "description": "For tests.",
        "categories": ["supplements"],
        "tags": ["test"],
        "attributes": {
            "form": "capsules",
            "ingredients": [{"name": "Magnesium", "amount": 200, "unit": "mg"}],
            "serving_size": "2 capsules",
            "servings_per_container": 30,
            "usage": "Take 2 daily.",
            "allergens": [],
            "warnings": "",
            "disclaimer": "Not evaluated by the FDA."
        },
        "variants": [
            {"sku": format!("{sku_prefix}-60"), "title": "60 capsules", "options": {"count": "60"},
             "price_minor": 1999, "currency": "EUR", "weight_grams": 120},
            {"sku": format!("{sku_prefix}-120"), "title": "120 capsules", "options": {"count": "120"},
             "price_minor": 3499, "currency": "EUR", "weight_grams": 210}
        ]
    })
}

/// Creates the category and location the helpers above refer to.
pub async fn basic_setup(app: &TestApp) {
    let r = app
        .admin_post(
            "/api/v1/admin/categories",
            &serde_json::json!({"slug": "supplements", "name": "Supplements"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = app
        .admin_post(
            "/api/v1/admin/locations",
            &serde_json::json!({"code": "AMS-1", "name": "Amsterdam"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

/// A date `days` from today, as the API writes dates.
pub fn date_in(days: i64) -> String {
    let today = chrono::Utc::now().date_naive();
    let date = if days >= 0 {
        today + chrono::Days::new(days as u64)
    } else {
        today - chrono::Days::new((-days) as u64)
    };
    date.format("%Y-%m-%d").to_string()
}

/// The repository root (for plugin sources and manifests).
pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An upload body for `POST /api/v1/admin/plugins`: a first-party plugin's manifest
/// (with `edit` applied), its built component and its fixtures.
pub fn plugin_upload(dir: &str, crate_name: &str, edit: impl Fn(String) -> String) -> Value {
    use base64::Engine as _;
    let wasm_dir =
        olivine_plugin_runtime::build::first_party_plugins(&repo_root()).expect("plugins build");
    let wasm = std::fs::read(wasm_dir.join(format!("{crate_name}.wasm"))).expect("wasm");
    let manifest =
        std::fs::read_to_string(repo_root().join("plugins").join(dir).join("plugin.toml"))
            .expect("manifest");
    let fixtures: serde_json::Map<String, Value> = olivine_plugin_runtime::fixtures::read_dir(
        &repo_root().join("plugins").join(dir).join("fixtures"),
    )
    .expect("fixtures")
    .into_iter()
    .map(|(name, text)| (name, Value::String(text)))
    .collect();
    serde_json::json!({
        "manifest": edit(manifest),
        "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm),
        "fixtures": fixtures,
    })
}
