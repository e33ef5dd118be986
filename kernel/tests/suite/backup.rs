//! Backup and restore (docs/BACKUPS.md): a backup taken while shoppers check out is one
//! consistent snapshot that restores, table for table, into a fresh store that serves
//! the same products and signs in the same customers, with its audit chain intact; a
//! damaged backup, one of a newer schema and a target with data are refused; and the
//! `olivine backup` / `olivine restore` commands do it end to end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use olivine::app::Kernel;
use olivine::backup::{self, BackupArgs, RestoreArgs};
use olivine::config::StoreConfig;
use serde_json::{Value, json};
use sqlx::Row;
use tower::ServiceExt;

use crate::common::*;

const PASSWORD: &str = "correct horse battery";
/// Units of the product the shoppers buy: more than a test's load can sell.
const MAG_UNITS: i64 = 100_000;

// ----- the store -----

/// A store with a catalog, lots, customers, an order, the bundled plugins, a product
/// image and the audit entries of all that. The shoppers buy MAG-60; `zinc` stays as
/// it is. Answers the store and the lot of MAG-60.
pub(crate) async fn filled_store(backend: Backend) -> (TestApp, i64) {
    let app = TestApp::start_with(backend, |c| {
        c.bundled_plugins = true;
        c.media.media_avif_speed = 10;
        c.media.media_nice = 0;
    })
    .await;
    basic_setup(&app).await;
    let mut ids = Vec::new();
    for (slug, sku) in [("mag", "MAG"), ("zinc", "ZNC")] {
        let r = app
            .admin_post("/api/v1/admin/products", &supplement(slug, sku))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        ids.push(r.json()["id"].as_i64().expect("product id"));
    }
    let lot = receive(&app, "MAG-60", MAG_UNITS).await;
    receive(&app, "ZNC-60", 50).await;
    shipping_and_tax(&app).await;
    upload_image(&app, ids[1]).await;
    // Its variants made, so the product's JSON stays as it is from now on.
    let db = app.kernel.state.db.clone();
    wait_until("the image's variants are made", async || {
        scalar(
            &db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM product_images WHERE status = 'ready'",
        )
        .await
            == 1
    })
    .await;
    for email in ["ada@example.com", "grace@example.com"] {
        register(&app, email).await;
    }
    let token = sign_in(&app, "ada@example.com").await;
    let cart = cart_with(&app.router, Some(&token)).await;
    let (status, body) = checkout(&app.router, &cart, Some(&token), "ada-1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let number = body["number"].as_str().expect("order number");
    let r = app
        .admin_post(
            &format!("/api/v1/admin/orders/{number}/transitions"),
            &json!({"to": "paid"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    (app, lot)
}

async fn receive(app: &TestApp, sku: &str, quantity: i64) -> i64 {
    let r = app
        .admin_post(
            "/api/v1/admin/lots",
            &json!({"sku": sku, "location": "AMS-1", "batch": "B1",
                "manufactured_on": date_in(-10), "expires_on": date_in(400), "quantity": quantity}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_i64().expect("lot id")
}

async fn shipping_and_tax(app: &TestApp) {
    let r = app
        .admin_send(
            Method::PUT,
            "/api/v1/admin/shipping-rates",
            &json!([{"code": "standard", "name": "Standard", "country": "*",
                "max_weight_grams": 20000, "price_minor": 495, "currency": "EUR"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = app
        .admin_send(
            Method::PUT,
            "/api/v1/admin/tax-rates",
            &json!([{"country": "NL", "rate_bp": 2100}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// A small PNG as the product's image (its original goes to the media directory).
async fn upload_image(app: &TestApp, id: i64) {
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .expect("png");
    let boundary = "backup-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&png.into_inner());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/admin/products/{id}/images"),
            Some(ADMIN_TOKEN),
            Some(Body::from(body)),
            Some(&format!("multipart/form-data; boundary={boundary}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

async fn register(app: &TestApp, email: &str) {
    let r = app
        .request(
            Method::POST,
            "/api/v1/account/register",
            None,
            Some(Body::from(
                json!({"email": email, "password": PASSWORD, "name": "Shopper"}).to_string(),
            )),
            Some("application/json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

async fn sign_in(app: &TestApp, email: &str) -> String {
    let r = app
        .request(
            Method::POST,
            "/api/v1/account/sign-in",
            None,
            Some(Body::from(
                json!({"email": email, "password": PASSWORD}).to_string(),
            )),
            Some("application/json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

// ----- shoppers -----

async fn call(
    router: &olivine::http::fast_lane::App,
    method: Method,
    path: &str,
    token: Option<&str>,
    idempotency_key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(key) = idempotency_key {
        builder = builder.header("idempotency-key", key);
    }
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
    let response = router
        .clone()
        .oneshot(builder.body(body).expect("request"))
        .await
        .expect("router answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn cart_with(router: &olivine::http::fast_lane::App, token: Option<&str>) -> String {
    let (status, cart) = call(router, Method::POST, "/api/v1/carts", token, None, None).await;
    assert!(status.is_success(), "{status}: {cart}");
    let id = cart["id"].as_str().expect("cart id").to_owned();
    let (status, body) = call(
        router,
        Method::POST,
        &format!("/api/v1/carts/{id}/lines"),
        token,
        None,
        Some(json!({"sku": "MAG-60", "quantity": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    id
}

async fn checkout(
    router: &olivine::http::fast_lane::App,
    cart: &str,
    token: Option<&str>,
    key: &str,
) -> (StatusCode, Value) {
    let mut body = json!({"shipping_method": "standard",
        "shipping_address": {"name": "Ada Buyer", "line1": "Keizersgracht 1",
            "city": "Amsterdam", "postal_code": "1015 AA", "country": "nl"}});
    // A guest gives an email; a customer's is their account's.
    if token.is_none() {
        body["email"] = json!("buyer@example.com");
    }
    call(
        router,
        Method::POST,
        &format!("/api/v1/carts/{cart}/checkout"),
        token,
        Some(key),
        Some(body),
    )
    .await
}

/// Guests checking out one after another until told to stop.
struct Shoppers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Shoppers {
    fn start(router: &olivine::http::fast_lane::App, count: usize) -> Shoppers {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..count)
            .map(|shopper| {
                let (router, stop) = (router.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let cart = cart_with(&router, None).await;
                        let key = format!("shopper-{shopper}-{n}");
                        let (status, body) = checkout(&router, &cart, None, &key).await;
                        assert_eq!(status, StatusCode::CREATED, "{body}");
                        n += 1;
                    }
                })
            })
            .collect();
        Shoppers { stop, tasks }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a shopper failed");
        }
    }
}

async fn orders(db: &olivine::store::Db) -> i64 {
    scalar(db, "SELECT CAST(COUNT(*) AS BIGINT) FROM orders").await
}

async fn wait_for_orders(db: &olivine::store::Db, more_than: i64) {
    wait_until("the shoppers place orders", async || {
        orders(db).await > more_than
    })
    .await;
}

// ----- every table, as text -----

type Tables = BTreeMap<String, Vec<Vec<Option<String>>>>;

/// Every table's rows (each column as text, rows sorted), found in the database itself.
async fn read_tables(conn: &mut sqlx::AnyConnection, backend: Backend) -> Tables {
    let names_sql = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND (name NOT LIKE 'sqlite_%' OR name = 'sqlite_sequence')"
        }
        Backend::Postgres => {
            "SELECT CAST(tablename AS TEXT) FROM pg_tables WHERE schemaname = current_schema()"
        }
    };
    let names: Vec<String> = sqlx::query(names_sql)
        .fetch_all(&mut *conn)
        .await
        .expect("tables")
        .iter()
        .map(|row| row.try_get(0).expect("table name"))
        .collect();
    let mut tables = Tables::new();
    for name in names {
        let columns = columns(conn, backend, &name).await;
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match backend {
                Backend::Sqlite => format!("quote(\"{c}\")"),
                Backend::Postgres => format!("CAST(\"{c}\" AS TEXT)"),
            })
            .collect();
        let sql = format!("SELECT {} FROM \"{name}\"", cells.join(", "));
        let mut rows: Vec<Vec<Option<String>>> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("reading {name}: {e}"))
            .iter()
            .map(|row| {
                (0..columns.len())
                    .map(|i| row.try_get(i).expect("a cell"))
                    .collect()
            })
            .collect();
        rows.sort();
        tables.insert(name, rows);
    }
    tables
}

async fn columns(conn: &mut sqlx::AnyConnection, backend: Backend, table: &str) -> Vec<String> {
    let sql = match backend {
        Backend::Sqlite => "SELECT name FROM pragma_table_info($1) ORDER BY cid",
        Backend::Postgres => {
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
        }
    };
    sqlx::query(sql)
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .expect("columns")
        .iter()
        .map(|row| row.try_get(0).expect("column name"))
        .collect()
}

fn assert_tables_equal(restored: &Tables, reference: &Tables) {
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    for (name, rows) in reference {
        let got = &restored[name];
        let missing: Vec<_> = rows.iter().filter(|r| !got.contains(r)).take(3).collect();
        let extra: Vec<_> = got.iter().filter(|r| !rows.contains(r)).take(3).collect();
        assert_eq!(
            got.len(),
            rows.len(),
            "row count of {name}: missing {missing:?}, extra {extra:?}"
        );
        assert!(
            got == rows,
            "the rows of {name} differ: missing {missing:?}, extra {extra:?}"
        );
    }
}

// ----- where a restore goes -----

/// An empty store to restore into: a fresh data directory and, on PostgreSQL, a new
/// database whose search_path leads to the backed-up schema's name.
struct Target {
    /// The data directory (a TestDb for its temporary directory and settings).
    dir: TestDb,
    database_url: Option<String>,
    database: Option<String>,
}

impl Target {
    async fn new(source: &TestDb) -> Target {
        let dir = TestDb::new(Backend::Sqlite).await;
        if source.backend == Backend::Sqlite {
            return Target {
                dir,
                database_url: None,
                database: None,
            };
        }
        let db = source.connect().await;
        let schema: String = sqlx::query("SELECT CAST(current_schema() AS TEXT)")
            .fetch_one(&db.pool)
            .await
            .expect("schema")
            .try_get(0)
            .expect("schema name");
        db.close().await;
        let database = format!("bk_{}", schema.trim_start_matches("t_"));
        let admin = olivine::store::Db::connect(&postgres_url(), 1)
            .await
            .expect("PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&admin.pool)
            .await
            .expect("create database");
        admin.close().await;
        let server = postgres_url();
        let base = server.rsplit_once('/').map(|(b, _)| b).expect("a URL");
        Target {
            dir,
            database_url: Some(format!(
                "{base}/{database}?options=-c%20search_path%3D{schema}"
            )),
            database: Some(database),
        }
    }

    fn store(&self) -> StoreConfig {
        let mut store = StoreConfig::embedded(self.dir.dir.path());
        store.database_url = self.database_url.clone();
        store
    }

    fn restore_args(&self, backup: &Path) -> RestoreArgs {
        RestoreArgs::new(backup, self.store())
    }

    async fn connect(&self) -> olivine::store::Db {
        let url = self.store().database_url().expect("url");
        olivine::store::Db::connect(&url, 2).await.expect("connect")
    }

    /// Brings the source's master key and its latest customer key snapshot, as an
    /// operator does from where they are kept.
    fn bring_master_key(&self, source: &TestApp) {
        for file in ["master.key", "customer-keys.snapshot"] {
            std::fs::copy(
                source.db.dir.path().join(file),
                self.dir.dir.path().join(file),
            )
            .unwrap_or_else(|e| panic!("copy {file}: {e}"));
        }
    }

    /// A kernel on the restored store.
    async fn start(self) -> (TestApp, Option<String>) {
        let mut config = self.dir.config();
        config.store.database_url = self.database_url.clone();
        let kernel = Kernel::start_with(config, Extensions::default())
            .await
            .expect("the restored store starts");
        let router = kernel.router();
        let app = TestApp {
            kernel,
            router,
            db: self.dir,
        };
        (app, self.database)
    }

    async fn remove(self) {
        drop_database(self.database).await;
    }
}

async fn drop_database(database: Option<String>) {
    if let Some(database) = database
        && let Ok(admin) = olivine::store::Db::connect(&postgres_url(), 1).await
    {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        )))
        .execute(&admin.pool)
        .await;
        admin.close().await;
    }
}

fn backup_args(app: &TestApp, dir: &Path) -> BackupArgs {
    let mut store = StoreConfig::embedded(app.db.dir.path());
    store.database_url = app.db.url.clone();
    BackupArgs::new(dir, store)
}

/// The reference the restore must equal: the rows of the backup's own snapshot. On
/// PostgreSQL the test exports a snapshot and the backup dumps at it, so the test reads
/// the very same moment; on SQLite it reads the backup's copy of the database.
async fn backup_under_load(app: &TestApp, dir: &Path) -> Tables {
    let db = &app.kernel.state.db;
    match app.db.backend {
        Backend::Postgres => {
            let mut tx = db.pool.begin().await.expect("begin");
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .expect("repeatable read");
            let snapshot: String = sqlx::query("SELECT pg_export_snapshot()")
                .fetch_one(&mut *tx)
                .await
                .expect("export snapshot")
                .try_get(0)
                .expect("snapshot id");
            let mut args = backup_args(app, dir);
            args.pg_snapshot = Some(snapshot);
            backup::backup(&args).await.expect("backup");
            let tables = read_tables(&mut tx, Backend::Postgres).await;
            tx.rollback().await.expect("end the snapshot");
            tables
        }
        Backend::Sqlite => {
            backup::backup(&backup_args(app, dir))
                .await
                .expect("backup");
            let copy = tempfile::tempdir().expect("temp dir");
            let file = copy.path().join("reference.db");
            std::fs::copy(dir.join("database.sqlite"), &file).expect("copy");
            let reference = olivine::store::Db::connect(&format!("sqlite://{}", file.display()), 1)
                .await
                .expect("open the backup's copy");
            let mut conn = reference.pool.acquire().await.expect("connection");
            let tables = read_tables(&mut conn, Backend::Sqlite).await;
            drop(conn);
            reference.close().await;
            tables
        }
    }
}

// ----- tests -----

both_backends! {
    async fn a_backup_under_load_restores_every_table_and_serves_the_same_store(backend: Backend) {
        let (app, lot) = filled_store(backend).await;
        let zinc = app.get("/api/v1/products/zinc").await.json();
        let db = app.kernel.state.db.clone();

        // Shoppers check out before, during and after the snapshot.
        let before = orders(&db).await;
        let shoppers = Shoppers::start(&app.router, 2);
        wait_for_orders(&db, before + 2).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let reference = backup_under_load(&app, dir.path()).await;
        let in_snapshot = reference["orders"].len() as i64;
        wait_for_orders(&db, in_snapshot).await;
        shoppers.stop().await;
        assert!(in_snapshot > before + 1, "the snapshot holds orders placed under load");
        // The snapshot holds what the store was filled with.
        assert!(reference.len() > 40, "every table: {:?}", reference.keys());
        for (table, at_least) in [("customers", 2), ("plugin_binaries", 1), ("product_images", 1),
            ("media_variants", 1), ("audit_log", 10), ("lots", 2), ("order_lines", 3)] {
            assert!(reference[table].len() >= at_least, "{table}: {}", reference[table].len());
        }
        assert!(orders(&db).await > in_snapshot, "orders after the snapshot are not in it");

        let target = Target::new(&app.db).await;
        target.bring_master_key(&app);
        let restored = backup::restore(&target.restore_args(dir.path())).await.expect("restore");
        assert_eq!(restored.migrations_applied, 0);
        assert!(restored.media_files >= 1, "the image's original is restored");

        // Every table equals the snapshot, before any kernel touches the restored store;
        // but the customer keys: the backup holds none, they came from the key snapshot.
        let restored_db = target.connect().await;
        let mut conn = restored_db.pool.acquire().await.expect("connection");
        let mut restored_tables = read_tables(&mut conn, backend).await;
        let mut reference = reference;
        let restored_keys = restored_tables.remove("customer_keys").expect("customer_keys");
        let live_keys = reference.remove("customer_keys").expect("customer_keys");
        if backend == Backend::Sqlite {
            assert!(live_keys.is_empty(), "the backup's database holds customer keys: {live_keys:?}");
        }
        assert_eq!(restored_keys.len(), 2, "ada's and grace's keys, from the key snapshot");
        assert_eq!(restored.customer_keys.as_ref().map(|a| a.keys), Some(2));
        assert_tables_equal(&restored_tables, &reference);
        drop(conn);
        restored_db.close().await;

        let (store, database) = target.start().await;
        let state = &store.kernel.state;
        // The snapshot is consistent: its stock is exactly what its orders left.
        let sold = scalar(&state.db, "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM order_lines WHERE sku = 'MAG-60'").await;
        let left: i64 = sqlx::query("SELECT quantity FROM lots WHERE id = $1")
            .bind(lot).fetch_one(&state.db.pool).await.expect("lot").try_get(0).expect("quantity");
        assert_eq!(left, MAG_UNITS - sold, "stock and orders of one moment");

        let audit = olivine::audit::verify(&state.db).await.expect("verify");
        assert!(audit.intact && audit.tampered.is_none(), "{audit:?}");
        assert_eq!(audit.entries, reference["audit_log"].len() as i64);

        assert_eq!(store.get("/api/v1/products/zinc").await.json(), zinc, "the same product JSON");
        let token = sign_in(&store, "ada@example.com").await;
        let me = as_customer(&store, &token, Method::GET, "/api/v1/account/me", None).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text());
        assert_eq!(me.json()["email"], "ada@example.com", "identity decrypts with the same master key");
        // New rows get fresh ids (sequences came along): a shopper checks out.
        let cart = cart_with(&store.router, None).await;
        let (status, body) = checkout(&store.router, &cart, None, "after-restore").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");

        // The image's original came along, byte for byte.
        let hash: String = sqlx::query("SELECT hash FROM product_images")
            .fetch_one(&state.db.pool).await.expect("image").try_get(0).expect("hash");
        let original = |root: &Path| std::fs::read(root.join("media/originals").join(&hash)).expect("original");
        assert_eq!(original(store.db.dir.path()), original(app.db.dir.path()));

        store.kernel.shutdown().await;
        drop_database(database).await;
        app.stop().await;
    }

    async fn a_damaged_backup_is_refused_and_nothing_is_restored(backend: Backend) {
        let (app, dir) = small_backup(backend).await;
        let file = dir.path().join(match backend {
            Backend::Sqlite => "database.sqlite",
            Backend::Postgres => "database.pgdump",
        });
        let mut bytes = std::fs::read(&file).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&file, bytes).expect("write");

        let target = Target::new(&app.db).await;
        let err = backup::restore(&target.restore_args(dir.path())).await.expect_err("refused");
        assert!(format!("{err:#}").contains("damaged"), "{err:#}");
        assert!(!target.store().data_dir.join("olivine.db").exists() || backend == Backend::Postgres);
        assert_target_empty(&target, backend).await;
        target.remove().await;
        app.stop().await;
    }

    async fn a_backup_of_a_newer_schema_is_refused(backend: Backend) {
        let app = TestApp::start(backend).await;
        let db = &app.kernel.state.db;
        // As if a newer olivine had migrated this store.
        sqlx::query("INSERT INTO olivine_migrations (version, name, checksum, applied_at) VALUES ($1, 'from_the_future', 'x', $2)")
            .bind(olivine::store::latest_version(db.backend) + 1)
            .bind(olivine::time::now())
            .execute(&db.pool).await.expect("insert");
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = backup::backup(&backup_args(&app, dir.path())).await.expect("backup");
        assert_eq!(manifest.schema_version, olivine::store::latest_version(db.backend) + 1);

        let target = Target::new(&app.db).await;
        let err = backup::restore(&target.restore_args(dir.path())).await.expect_err("refused");
        assert!(format!("{err:#}").contains("newer than this olivine"), "{err:#}");
        assert_target_empty(&target, backend).await;
        target.remove().await;
        app.stop().await;
    }

    async fn a_backup_of_an_older_schema_is_migrated_forward(backend: Backend) {
        // A store of the release before this one.
        let source = TestDb::new(backend).await;
        let db = source.connect().await;
        let latest = olivine::store::latest_version(db.backend);
        // Versions may have gaps: the older schema is whatever is below the latest.
        olivine::store::migrate_to(&db, latest - 1).await.expect("the older schema");
        let older = olivine::store::schema_version(&db).await.expect("version").expect("migrated");
        assert!(older < latest);
        db.close().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = StoreConfig::embedded(source.dir.path());
        store.database_url = source.url.clone();
        let manifest = backup::backup(&BackupArgs::new(dir.path(), store)).await.expect("backup");
        assert_eq!(manifest.schema_version, older);

        let target = Target::new(&source).await;
        let restored = backup::restore(&target.restore_args(dir.path())).await.expect("restore");
        assert_eq!(restored.migrations_applied, 1);
        let db = target.connect().await;
        assert_eq!(olivine::store::schema_version(&db).await.expect("version"), Some(latest));
        db.close().await;
        target.remove().await;
        source.drop().await;
    }

    async fn scheduled_backups_are_taken_and_the_newest_kept(backend: Backend) {
        let root = tempfile::tempdir().expect("temp dir");
        let app = TestApp::start_with(backend, |c| {
            c.backups.backup_dir = Some(root.path().to_owned());
            c.backups.backup_interval_secs = 1;
            c.backups.backup_keep = 2;
        })
        .await;
        let mut seen = std::collections::BTreeSet::new();
        wait_until("three scheduled backups, two kept", async || {
            let now = complete_backups(root.path());
            seen.extend(now.iter().cloned());
            seen.len() >= 3 && now.len() == 2
        })
        .await;
        for name in complete_backups(root.path()) {
            let dir = root.path().join(name);
            let manifest = backup::Manifest::read(&dir).expect("a manifest");
            backup::verify_files(&dir, &manifest).await.expect("whole");
        }
        app.stop().await;
    }

    async fn a_target_with_data_is_refused_unless_forced_and_then_kept_aside(backend: Backend) {
        let (app, dir) = small_backup(backend).await;
        let target = Target::new(&app.db).await;
        backup::restore(&target.restore_args(dir.path())).await.expect("first restore");

        let err = backup::restore(&target.restore_args(dir.path())).await.expect_err("refused");
        assert!(format!("{err:#}").contains("already holds tables"), "{err:#}");

        let mut forced = target.restore_args(dir.path());
        forced.force = true;
        let restored = backup::restore(&forced).await.expect("forced restore");
        assert_eq!(restored.moved_aside.len(), 1, "{:?}", restored.moved_aside);
        match backend {
            Backend::Sqlite => assert!(Path::new(&restored.moved_aside[0]).is_file()),
            Backend::Postgres => {
                let aside = restored.moved_aside[0].trim_start_matches("schema ").to_owned();
                let db = target.connect().await;
                let tables = scalar_bound(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_tables WHERE schemaname = $1", &aside).await;
                assert!(tables > 0, "the old schema is kept, renamed");
                db.close().await;
            }
        }
        target.remove().await;
        app.stop().await;
    }

    async fn the_commands_back_up_and_restore_a_store_and_keep_the_master_key_out(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let r = app.admin_post("/api/v1/admin/products", &supplement("mag", "MAG")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        register(&app, "ada@example.com").await;
        let dir = tempfile::tempdir().expect("temp dir");
        let backup_dir = dir.path().join("nightly");

        let env = app.db.env();
        let out = run_olivine(&["backup", &backup_dir.display().to_string()], &env).await;
        assert!(out.status.success(), "{}", out.text());
        let key_file = app.db.dir.path().join("master.key");
        assert!(out.text().contains("master key is NOT in this backup"), "{}", out.text());
        assert!(out.text().contains(&key_file.display().to_string()), "{}", out.text());
        let key = std::fs::read_to_string(&key_file).expect("the master key");
        for file in files_in(&backup_dir) {
            let bytes = std::fs::read(&file).expect("read");
            assert!(!contains(&bytes, key.trim().as_bytes()), "the master key is in {}", file.display());
        }

        let target = Target::new(&app.db).await;
        target.bring_master_key(&app);
        let mut env = vec![("OLIVINE_DATA_DIR", target.dir.dir.path().display().to_string())];
        if let Some(url) = &target.database_url {
            env.push(("DATABASE_URL", url.clone()));
        }
        let backup_path = backup_dir.display().to_string();
        let restore = ["restore", backup_path.as_str()];
        let out = run_olivine(&restore, &env).await;
        assert!(out.status.success(), "{}", out.text());
        assert!(out.text().contains("the master key at hand opens the restored store's keys"), "{}", out.text());
        let again = run_olivine(&restore, &env).await;
        assert!(!again.status.success(), "a second restore onto it is refused");
        assert!(again.text().contains("already holds tables"), "{}", again.text());

        let (store, database) = target.start().await;
        sign_in(&store, "ada@example.com").await;
        assert_eq!(store.get("/api/v1/products/mag").await.status, StatusCode::OK);
        store.kernel.shutdown().await;
        drop_database(database).await;
        app.stop().await;
    }
}

/// The finished backups in `root` (those with a manifest), oldest first.
fn complete_backups(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .expect("list")
        .flatten()
        .filter(|entry| entry.path().join("manifest.json").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// A store with a product, backed up.
async fn small_backup(backend: Backend) -> (TestApp, tempfile::TempDir) {
    let app = TestApp::start(backend).await;
    basic_setup(&app).await;
    let r = app
        .admin_post("/api/v1/admin/products", &supplement("mag", "MAG"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let dir = tempfile::tempdir().expect("temp dir");
    backup::backup(&backup_args(&app, dir.path()))
        .await
        .expect("backup");
    (app, dir)
}

async fn assert_target_empty(target: &Target, backend: Backend) {
    match backend {
        Backend::Sqlite => {
            let file = target.store().data_dir.join("olivine.db");
            assert!(
                !backup::sqlite::has_tables(&file).await.expect("look"),
                "nothing was restored"
            );
        }
        Backend::Postgres => {
            let db = target.connect().await;
            let tables = scalar(
                &db,
                "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            )
            .await;
            assert_eq!(tables, 0, "nothing was restored");
            db.close().await;
        }
    }
}

async fn scalar_bound(db: &olivine::store::Db, sql: &'static str, value: &str) -> i64 {
    sqlx::query(sql)
        .bind(value)
        .fetch_one(&db.pool)
        .await
        .expect("query")
        .try_get(0)
        .expect("a number")
}

struct Output {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs the `olivine` binary with `args` and the environment `env`.
async fn run_olivine(args: &[&str], env: &[(&'static str, String)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_olivine"));
    command.args(args).env("RUST_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().await.expect("olivine runs");
    Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_in(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The rows of `customer_keys` (customer ids).
async fn keyed_customers(db: &olivine::store::Db) -> Vec<i64> {
    sqlx::query("SELECT customer_id FROM customer_keys ORDER BY customer_id")
        .fetch_all(&db.pool)
        .await
        .expect("keys")
        .iter()
        .map(|row| row.try_get(0).expect("id"))
        .collect()
}

async fn erase_self(app: &TestApp, token: &str) {
    let r = as_customer(
        app,
        token,
        Method::POST,
        "/api/v1/account/erasure",
        Some(json!({"password": PASSWORD, "confirm": "erase my account"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}

both_backends! {
    async fn an_erasure_after_a_backup_reaches_it_when_it_is_restored(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "ann@example.com").await;
        register(&app, "bob@example.com").await;
        let ann_token = sign_in(&app, "ann@example.com").await;
        let state = &app.kernel.state;
        let (ann_id, ann_email): (i64, String) = {
            let row = sqlx::query("SELECT id, email_enc FROM customers ORDER BY id LIMIT 1")
                .fetch_one(&state.db.pool).await.expect("ann");
            (row.get(0), row.get(1))
        };
        assert!(ann_email.starts_with(&format!("v2:c{ann_id}:")), "{ann_email}");
        assert_eq!(keyed_customers(&state.db).await.len(), 2, "a key each");

        // Monday's backup holds Ann; on Tuesday she is erased; Wednesday's backup
        // replaces the key snapshot.
        let monday = tempfile::tempdir().expect("temp dir");
        backup::backup(&backup_args(&app, monday.path())).await.expect("monday's backup");
        erase_self(&app, &ann_token).await;
        assert!(!keyed_customers(&state.db).await.contains(&ann_id), "her key is destroyed");
        assert!(state.keys.decrypt_any(&state.db.pool, "customers.email", &ann_email).await.is_err());
        let wednesday = tempfile::tempdir().expect("temp dir");
        backup::backup(&backup_args(&app, wednesday.path())).await.expect("wednesday's backup");

        // Monday's backup alone holds no key: restored without the snapshot, nobody's
        // identity is there to read.
        let target = Target::new(&app.db).await;
        let mut without = target.restore_args(monday.path());
        without.files.customer_key_snapshot = Some(target.dir.dir.path().join("no-snapshot"));
        let restored = backup::restore(&without).await.expect("restore without keys");
        assert!(restored.customer_keys.is_none());
        let db = target.connect().await;
        assert!(keyed_customers(&db).await.is_empty(), "the backup carries no customer key");
        db.close().await;

        // With the latest snapshot: Bob's key comes back, Ann is erased again.
        target.bring_master_key(&app);
        let mut with = target.restore_args(monday.path());
        with.force = true;
        let restored = backup::restore(&with).await.expect("restore");
        let applied = restored.customer_keys.expect("the key snapshot was applied");
        assert_eq!((applied.erased_again, applied.keys), (1, 1), "{applied:?}");
        let (store, database) = target.start().await;
        let restored_state = &store.kernel.state;
        let keyed = keyed_customers(&restored_state.db).await;
        assert!(!keyed.contains(&ann_id) && keyed.len() == 1, "{keyed:?}");
        let ann: (Option<String>, String) = {
            let row = sqlx::query("SELECT erased_at, email_enc FROM customers WHERE id = $1")
                .bind(ann_id).fetch_one(&restored_state.db.pool).await.expect("ann");
            (row.get(0), row.get(1))
        };
        assert!(ann.0.is_some() && ann.1.is_empty(), "shown erased: {ann:?}");
        // Monday's copy of her email cannot be read with anything the store has.
        assert!(restored_state.keys.decrypt_any(&restored_state.db.pool, "customers.email", &ann_email).await.is_err());
        let erasures = scalar(&restored_state.db, "SELECT CAST(COUNT(*) AS BIGINT) FROM customer_erasures").await;
        assert_eq!(erasures, 1);
        // She cannot sign in; Bob can, and reads his identity.
        let r = store.request(Method::POST, "/api/v1/account/sign-in", None,
            Some(Body::from(json!({"email": "ann@example.com", "password": PASSWORD}).to_string())),
            Some("application/json")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let bob = sign_in(&store, "bob@example.com").await;
        let me = as_customer(&store, &bob, Method::GET, "/api/v1/account/me", None).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text());
        assert_eq!(me.json()["email"], "bob@example.com");
        let audit = olivine::audit::verify(&restored_state.db).await.expect("verify");
        assert!(audit.intact, "{audit:?}");

        store.kernel.shutdown().await;
        drop_database(database).await;
        app.stop().await;
    }

    async fn a_forced_restore_over_the_live_store_takes_its_keys_and_erasures(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "ann@example.com").await;
        register(&app, "bob@example.com").await;
        let ann_token = sign_in(&app, "ann@example.com").await;
        let monday = tempfile::tempdir().expect("temp dir");
        backup::backup(&backup_args(&app, monday.path())).await.expect("monday's backup");
        erase_self(&app, &ann_token).await;

        // The store stops and Monday's backup goes back over it. The key snapshot is
        // Monday's (it still has Ann's key): taken away, the live store is the source.
        let TestApp { kernel, db, .. } = app;
        kernel.shutdown().await;
        std::fs::remove_file(db.dir.path().join("customer-keys.snapshot")).expect("snapshot");
        let mut store = StoreConfig::embedded(db.dir.path());
        store.database_url = db.url.clone();
        let mut args = RestoreArgs::new(monday.path(), store);
        args.force = true;
        let restored = backup::restore(&args).await.expect("forced restore");
        let applied = restored.customer_keys.expect("the live store's keys");
        assert_eq!((applied.erased_again, applied.keys), (1, 1), "{applied:?}");

        let kernel = Kernel::start_with(db.config(), Extensions::default()).await.expect("starts");
        let router = kernel.router();
        let store = TestApp { kernel, router, db };
        let r = store.request(Method::POST, "/api/v1/account/sign-in", None,
            Some(Body::from(json!({"email": "ann@example.com", "password": PASSWORD}).to_string())),
            Some("application/json")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "Ann stays erased");
        let bob = sign_in(&store, "bob@example.com").await;
        let me = as_customer(&store, &bob, Method::GET, "/api/v1/account/me", None).await;
        assert_eq!(me.json()["email"], "bob@example.com", "{}", me.text());
        if let Some(schema) = restored.moved_aside[0].strip_prefix("schema ") {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
                .execute(&store.kernel.state.db.pool).await.expect("drop the old schema");
        }
        store.stop().await;
    }
}
