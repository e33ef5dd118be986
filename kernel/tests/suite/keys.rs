//! `olivine keys rotate`: a new master key re-wraps the account keys (customers still sign
//! in and read their identity; the old master key is refused), an interrupted rotation
//! still starts and is finished by running it again, and a new signing key signs new
//! tokens while the old one keeps verifying until it retires. Both backends.

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use olivine::accounts::keys::{self, Key};
use olivine::app::Kernel;
use olivine::cli::keys::RotateArgs;
use olivine::config::ServeConfig;
use serde_json::{Value, json};
use sqlx::Row;

const PASSWORD: &str = "correct horse battery";

async fn start_on(db: TestDb, adjust: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let mut config = db.config();
    adjust(&mut config);
    let kernel = Kernel::start(config).await.expect("kernel starts");
    let router = kernel.router();
    TestApp { kernel, router, db }
}

/// Starts a kernel that must refuse to start; its error, and the database dropped.
async fn refused_start(db: TestDb, adjust: impl FnOnce(&mut ServeConfig)) -> String {
    let mut config = db.config();
    adjust(&mut config);
    let err = Kernel::start(config)
        .await
        .err()
        .expect("the kernel refuses to start");
    db.drop().await;
    format!("{err:#}")
}

/// Stops the kernel and keeps its database for the next one.
async fn stop_keep(app: TestApp) -> TestDb {
    let TestApp { kernel, db, .. } = app;
    kernel.shutdown().await;
    db
}

async fn post(app: &TestApp, path: &str, body: &Value) -> TestResponse {
    app.request(
        Method::POST,
        path,
        None,
        Some(Body::from(body.to_string())),
        Some("application/json"),
    )
    .await
}

async fn register(app: &TestApp, email: &str) {
    let r = post(
        app,
        "/api/v1/account/register",
        &json!({"email": email, "password": PASSWORD, "name": "Ada Lovelace"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

/// Signs in and returns the access token.
async fn access_token(app: &TestApp, email: &str) -> String {
    let r = post(
        app,
        "/api/v1/account/sign-in",
        &json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn me(app: &TestApp, token: &str) -> TestResponse {
    app.request(Method::GET, "/api/v1/account/me", Some(token), None, None)
        .await
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT")
        .kid
        .expect("a kid")
}

fn rotate_args(db: &TestDb) -> RotateArgs {
    RotateArgs::new(db.config().store)
}

fn b64(key: &Key) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    sqlx::query("SELECT action FROM audit_log ORDER BY seq")
        .fetch_all(&app.kernel.state.db.pool)
        .await
        .expect("audit")
        .iter()
        .map(|row| row.try_get(0).expect("action"))
        .collect()
}

both_backends! {
    async fn master_key_rotation_with_the_key_file(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "ada@example.com").await;
        let before = access_token(&app, "ada@example.com").await;
        let key_file = app.db.dir.path().join("master.key");
        let old = keys::read_key_file(&key_file).unwrap().expect("a key file");

        // While the kernel runs: it keeps serving with the keys it holds.
        olivine::cli::keys::rotate(&rotate_args(&app.db)).await.expect("rotation");
        assert_eq!(me(&app, &before).await.status, StatusCode::OK);
        let new = keys::read_key_file(&key_file).unwrap().expect("the new key file");
        assert_ne!(new, old);
        assert_eq!(keys::read_key_file(&keys::previous_key_file(&key_file)).unwrap(), Some(old));
        assert!(!keys::pending_key_file(&key_file).exists());
        assert!(audit_actions(&app).await.contains(&"keys.master_key_rotated".to_owned()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Ada's identity is under her own key, which the rotation re-wrapped with the
        // `customer` account key that wraps it.
        let stored: String = sqlx::query("SELECT email_enc FROM customers")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap().get(0);
        assert!(stored.starts_with("v2:c"), "{stored}");
        let rewrapped: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM account_keys WHERE purpose = 'customer'")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap().get(0);
        assert_eq!(rewrapped, 1);

        // A kernel started on the new key file signs the customer in and decrypts them.
        let db = stop_keep(app).await;
        let app = start_on(db, |_| {}).await;
        let token = access_token(&app, "ada@example.com").await;
        let r = me(&app, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["email"], "ada@example.com");
        assert_eq!(r.json()["name"], "Ada Lovelace");
        // Tokens signed before the rotation are still good: the signing key is the same.
        assert_eq!(me(&app, &before).await.status, StatusCode::OK);

        // The old master key is refused.
        let db = stop_keep(app).await;
        let old_b64 = b64(&old);
        let err = refused_start(db, |c| c.master_key = Some(old_b64)).await;
        assert!(err.contains("master key does not match"), "{err}");
    }

    async fn master_key_rotation_with_keys_from_the_environment(backend: Backend) {
        let old: Key = rand::random();
        let new: Key = rand::random();
        let old_b64 = b64(&old);
        let app = TestApp::start_with(backend, |c| c.master_key = Some(old_b64.clone())).await;
        register(&app, "bo@example.com").await;

        // Without a new key there is nothing to rotate to.
        let mut args = rotate_args(&app.db);
        args.master_key = Some(old_b64.clone());
        let err = olivine::cli::keys::rotate(&args).await.expect_err("refused");
        assert!(format!("{err:#}").contains("OLIVINE_NEW_MASTER_KEY"), "{err:#}");

        // A wrong current key is refused and changes nothing.
        let mut wrong = rotate_args(&app.db);
        wrong.master_key = Some(b64(&rand::random()));
        wrong.new_master_key = Some(b64(&new));
        let err = olivine::cli::keys::rotate(&wrong).await.expect_err("refused");
        assert!(format!("{err:#}").contains("does not unwrap"), "{err:#}");
        assert!(keys::master_key_matches(&app.kernel.state.db, &old).await.unwrap());

        args.new_master_key = Some(b64(&new));
        olivine::cli::keys::rotate(&args).await.expect("rotation");
        assert!(keys::master_key_matches(&app.kernel.state.db, &new).await.unwrap());
        // The old key no longer unwraps anything: rotating from it again is refused.
        let mut again = rotate_args(&app.db);
        again.master_key = Some(old_b64.clone());
        again.new_master_key = Some(b64(&rand::random()));
        assert!(olivine::cli::keys::rotate(&again).await.is_err());

        let db = stop_keep(app).await;
        let err = refused_start(db, |c| c.master_key = Some(old_b64)).await;
        assert!(err.contains("master key does not match"), "{err}");
    }

    async fn an_interrupted_rotation_still_starts_and_is_finished(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "cy@example.com").await;
        let key_file = app.db.dir.path().join("master.key");
        let old = keys::read_key_file(&key_file).unwrap().expect("a key file");
        // As if the command stopped after its commit: the database is under the key in
        // master.key.new, master.key still holds the old one.
        let new: Key = rand::random();
        keys::write_key_file(&keys::pending_key_file(&key_file), &new).unwrap();
        keys::rewrap_all(&app.kernel.state.db, &old, &new, "test").await.unwrap();
        let db = stop_keep(app).await;
        let app = start_on(db, |_| {}).await;
        let token = access_token(&app, "cy@example.com").await;
        assert_eq!(me(&app, &token).await.json()["email"], "cy@example.com");
        // Running the command again finishes the swap of the files.
        olivine::cli::keys::rotate(&rotate_args(&app.db)).await.expect("finished");
        assert_eq!(keys::read_key_file(&key_file).unwrap(), Some(new));
        assert_eq!(keys::read_key_file(&keys::previous_key_file(&key_file)).unwrap(), Some(old));
        assert!(!keys::pending_key_file(&key_file).exists());
        app.stop().await;
    }

    async fn signing_key_rotation(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "di@example.com").await;
        let before = access_token(&app, "di@example.com").await;
        assert_eq!(kid(&before), "jwt-1");
        let mut args = rotate_args(&app.db);
        args.signing_key = true;
        olivine::cli::keys::rotate(&args).await.expect("rotation");
        assert!(audit_actions(&app).await.contains(&"keys.signing_key_rotated".to_owned()));
        // The running kernel keeps signing with the key it holds.
        assert_eq!(kid(&access_token(&app, "di@example.com").await), "jwt-1");

        // After a restart: new tokens carry the new kid, old ones still verify.
        let db = stop_keep(app).await;
        let app = start_on(db, |_| {}).await;
        let after = access_token(&app, "di@example.com").await;
        assert_eq!(kid(&after), "jwt-2");
        assert_eq!(me(&app, &after).await.status, StatusCode::OK);
        assert_eq!(me(&app, &before).await.status, StatusCode::OK, "tokens signed before still verify");

        // Once the new key is older than an access token's lifetime, the old one
        // retires: its tokens are refused.
        sqlx::query("UPDATE account_keys SET created_at = '2000-01-01T00:00:00.000Z' WHERE id = 'jwt-1'")
            .execute(&app.kernel.state.db.pool).await.unwrap();
        sqlx::query("UPDATE account_keys SET created_at = '2000-01-02T00:00:00.000Z' WHERE id = 'jwt-2'")
            .execute(&app.kernel.state.db.pool).await.unwrap();
        let db = stop_keep(app).await;
        let app = start_on(db, |_| {}).await;
        assert_eq!(me(&app, &before).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(me(&app, &after).await.status, StatusCode::OK);
        app.stop().await;
    }
}
