//! Customer accounts: registration, sign-in, sessions with rotating refresh tokens, the
//! bearer-token checks, and identity encrypted at rest. Each test runs on SQLite and on
//! PostgreSQL.

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use olivine::accounts::AccessClaims;
use serde_json::{Value, json};
use sqlx::Row;

const PASSWORD: &str = "correct horse battery";

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: &Value) -> TestResponse {
    app.request(
        Method::POST,
        path,
        token,
        Some(Body::from(body.to_string())),
        Some("application/json"),
    )
    .await
}

async fn me(app: &TestApp, token: &str) -> TestResponse {
    app.request(Method::GET, "/api/v1/account/me", Some(token), None, None)
        .await
}

async fn register(app: &TestApp, email: &str, name: &str) -> Value {
    let r = post(
        app,
        "/api/v1/account/register",
        None,
        &json!({"email": email, "password": PASSWORD, "name": name}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> TestResponse {
    post(
        app,
        "/api/v1/account/sign-in",
        None,
        &json!({"email": email, "password": password}),
    )
    .await
}

/// Signs in and returns (access token, refresh token).
async fn tokens(app: &TestApp, email: &str) -> (String, String) {
    let r = sign_in(app, email, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    pair(&r)
}

fn pair(r: &TestResponse) -> (String, String) {
    let body = r.json();
    (
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
    )
}

async fn refresh(app: &TestApp, refresh_token: &str) -> TestResponse {
    post(
        app,
        "/api/v1/account/refresh",
        None,
        &json!({"refresh_token": refresh_token}),
    )
    .await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims like the kernel's, for the customer and session of `token`.
fn claims_of(token: &str) -> AccessClaims {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("claims")
}

fn sign(alg: Algorithm, kid: Option<&str>, secret: &[u8], claims: &AccessClaims) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign")
}

#[track_caller]
fn assert_unauthorized(r: &TestResponse, what: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text());
    assert_eq!(r.json()["error"], "unauthorized", "{what}");
}

both_backends! {
    async fn register_sign_in_and_read_the_account(backend: Backend) {
        let app = TestApp::start(backend).await;
        let account = register(&app, "Ann@Example.com", "Ann Lee").await;
        let pseudonym = account["pseudonym"].as_str().unwrap().to_owned();
        assert!(pseudonym.starts_with("c_"));
        assert_eq!(account["email"], "Ann@Example.com");
        assert!(account.get("password").is_none() && account.get("password_hash").is_none());

        // Email lookup ignores case.
        let r = sign_in(&app, "ann@example.com", PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = r.json();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        let (access, _) = pair(&r);
        let header = jsonwebtoken::decode_header(&access).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.kid.as_deref(), Some("jwt-1"));
        let claims = claims_of(&access);
        assert_eq!(claims.sub, pseudonym);
        assert_eq!(claims.typ, "access");
        assert_eq!(claims.exp - claims.iat, 900);

        let r = me(&app, &access).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = r.json();
        assert_eq!(body["pseudonym"], pseudonym.as_str());
        assert_eq!(body["email"], "Ann@Example.com");
        assert_eq!(body["name"], "Ann Lee");

        // Audited under the pseudonym, with no identity in the entry.
        let r = app.admin_get("/api/v1/admin/audit?action=customer.registered").await;
        let entries = r.json()["entries"].as_array().cloned().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["actor"], pseudonym.as_str());
        assert_eq!(entries[0]["target_id"], pseudonym.as_str());
        let text = entries[0].to_string().to_lowercase();
        assert!(!text.contains("ann@example.com") && !text.contains("ann lee"), "{text}");
        assert_eq!(app.admin_get("/api/v1/admin/audit/verify").await.json()["intact"], true);

        // No token, a malformed one: 401.
        let r = app.get("/api/v1/account/me").await;
        assert_unauthorized(&r, "no token");
        assert_unauthorized(&me(&app, "not-a-jwt").await, "garbage");
        app.stop().await;
    }

    async fn duplicate_email_is_a_conflict_naming_email(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "dup@example.com", "First").await;
        for email in ["dup@example.com", " DUP@example.COM "] {
            let r = post(
                &app,
                "/api/v1/account/register",
                None,
                &json!({"email": email, "password": PASSWORD, "name": "Second"}),
            )
            .await;
            r.assert_field_error(409, "email");
        }
        assert_eq!(app.count("customers").await, 1);
        app.stop().await;
    }

    async fn bad_registrations_name_every_field(backend: Backend) {
        let app = TestApp::start(backend).await;
        let r = post(
            &app,
            "/api/v1/account/register",
            None,
            &json!({"email": "not-an-email", "password": "short", "name": " "}),
        )
        .await;
        for field in ["email", "password", "name"] {
            r.assert_field_error(422, field);
        }
        let long = "x".repeat(257);
        let r = post(
            &app,
            "/api/v1/account/register",
            None,
            &json!({"email": "a@example.com", "password": long, "name": "A"}),
        )
        .await;
        r.assert_field_error(422, "password");
        // Ten characters is enough (counted as characters, not bytes).
        let r = post(
            &app,
            "/api/v1/account/register",
            None,
            &json!({"email": "a@example.com", "password": "ééééééééé", "name": "A"}),
        )
        .await;
        r.assert_field_error(422, "password");
        let r = post(&app, "/api/v1/account/register", None, &json!({"email": "a@example.com", "name": "A"})).await;
        r.assert_field_error(422, "password");
        for email in ["a@b", "@example.com", "a@@example.com", "a b@example.com", "a@example..com"] {
            let r = post(
                &app,
                "/api/v1/account/register",
                None,
                &json!({"email": email, "password": PASSWORD, "name": "A"}),
            )
            .await;
            r.assert_field_error(422, "email");
        }
        assert_eq!(app.count("customers").await, 0);
        app.stop().await;
    }

    async fn wrong_password_and_unknown_email_look_the_same(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "bo@example.com", "Bo").await;
        let wrong_password = sign_in(&app, "bo@example.com", "wrong password!").await;
        let unknown_email = sign_in(&app, "nobody@example.com", PASSWORD).await;
        assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
        assert_eq!(unknown_email.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong_password.body, unknown_email.body);
        assert_eq!(wrong_password.json()["error"], "invalid_credentials");
        app.stop().await;
    }

    async fn refresh_rotates_and_a_replay_revokes_the_family(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "cy@example.com", "Cy").await;
        let (access1, refresh1) = tokens(&app, "cy@example.com").await;
        let r = refresh(&app, &refresh1).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let (access2, refresh2) = pair(&r);
        assert_ne!(refresh1, refresh2);
        assert_eq!(claims_of(&access2).sid, claims_of(&access1).sid);
        assert_eq!(me(&app, &access2).await.status, StatusCode::OK);
        // The newer one rotates in turn.
        let r = refresh(&app, &refresh2).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let (access3, refresh3) = pair(&r);

        // Another session of the same customer is not affected by what follows.
        let (other_access, other_refresh) = tokens(&app, "cy@example.com").await;

        // Replaying a used token: refused, and the whole family is revoked.
        let r = refresh(&app, &refresh1).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
        assert_eq!(r.json()["error"], "invalid_credentials");
        let r = refresh(&app, &refresh3).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "newest token of the family: {}", r.text());
        assert_unauthorized(&me(&app, &access3).await, "access token of the revoked family");
        assert_unauthorized(&me(&app, &access1).await, "older access token of the family");

        assert_eq!(me(&app, &other_access).await.status, StatusCode::OK);
        assert_eq!(refresh(&app, &other_refresh).await.status, StatusCode::OK);
        let r = refresh(&app, "not-a-token").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        // Only hashes are stored.
        let raw: Vec<String> = sqlx::query("SELECT token_hash FROM refresh_tokens")
            .fetch_all(&app.kernel.state.db.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(raw.len() >= 5);
        assert!(!raw.contains(&refresh1) && !raw.contains(&other_refresh));
        app.stop().await;
    }

    async fn sign_out_ends_the_session(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "di@example.com", "Di").await;
        let (access, refresh_token) = tokens(&app, "di@example.com").await;
        let body = json!({"refresh_token": refresh_token});
        let r = post(&app, "/api/v1/account/sign-out", None, &body).await;
        assert_unauthorized(&r, "sign-out without a token");
        let r = post(&app, "/api/v1/account/sign-out", Some(&access), &body).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert_unauthorized(&me(&app, &access).await, "access token after sign-out");
        assert_eq!(refresh(&app, &refresh_token).await.status, StatusCode::UNAUTHORIZED);
        // Signing in again works.
        let (access, _) = tokens(&app, "di@example.com").await;
        assert_eq!(me(&app, &access).await.status, StatusCode::OK);
        app.stop().await;
    }

    async fn forged_expired_and_odd_tokens_are_refused(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "ed@example.com", "Ed").await;
        let (access, _) = tokens(&app, "ed@example.com").await;
        assert_eq!(me(&app, &access).await.status, StatusCode::OK);
        let claims = claims_of(&access);
        let (kid, secret) = app.kernel.state.keys.signing_key();
        let (kid, secret) = (kid.to_owned(), secret.to_vec());

        // The kernel's own key signs a token the tests make: the control case.
        let control = sign(Algorithm::HS256, Some(&kid), &secret, &claims);
        assert_eq!(me(&app, &control).await.status, StatusCode::OK);

        let forged = sign(Algorithm::HS256, Some(&kid), &[9u8; 32], &claims);
        assert_unauthorized(&me(&app, &forged).await, "signed with another key");

        let expired = AccessClaims { iat: now() - 7200, exp: now() - 3600, ..claims.clone() };
        let expired = sign(Algorithm::HS256, Some(&kid), &secret, &expired);
        assert_unauthorized(&me(&app, &expired).await, "expired");

        let unknown_kid = sign(Algorithm::HS256, Some("jwt-99"), &secret, &claims);
        assert_unauthorized(&me(&app, &unknown_kid).await, "unknown kid");
        let no_kid = sign(Algorithm::HS256, None, &secret, &claims);
        assert_unauthorized(&me(&app, &no_kid).await, "no kid");

        let hs384 = sign(Algorithm::HS384, Some(&kid), &secret, &claims);
        assert_unauthorized(&me(&app, &hs384).await, "HS384");

        let refresh_typ = AccessClaims { typ: "refresh".to_owned(), ..claims.clone() };
        let refresh_typ = sign(Algorithm::HS256, Some(&kid), &secret, &refresh_typ);
        assert_unauthorized(&me(&app, &refresh_typ).await, "typ refresh");

        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        for header in [
            json!({"alg": "none", "typ": "JWT", "kid": kid}),
            json!({"alg": "None", "typ": "JWT", "kid": kid}),
        ] {
            let header = URL_SAFE_NO_PAD.encode(header.to_string());
            for token in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
                assert_unauthorized(&me(&app, &token).await, "alg none");
            }
        }
        // A valid signature over a payload swapped in afterwards.
        let other = AccessClaims { sub: "c_someone_else".to_owned(), ..claims.clone() };
        let parts: Vec<&str> = control.split('.').collect();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap()),
            parts[2]
        );
        assert_unauthorized(&me(&app, &swapped).await, "payload swapped");
        app.stop().await;
    }

    async fn tokens_of_erased_and_deleted_customers_are_refused(backend: Backend) {
        let app = TestApp::start(backend).await;
        let pool = &app.kernel.state.db.pool;
        let erased = register(&app, "fay@example.com", "Fay").await;
        register(&app, "gus@example.com", "Gus").await;
        let (fay, fay_refresh) = tokens(&app, "fay@example.com").await;
        let (gus, _) = tokens(&app, "gus@example.com").await;

        sqlx::query("UPDATE customers SET erased_at = $1 WHERE pseudonym = $2")
            .bind(olivine::time::now())
            .bind(erased["pseudonym"].as_str().unwrap())
            .execute(pool)
            .await
            .unwrap();
        assert_unauthorized(&me(&app, &fay).await, "erased customer");
        assert_eq!(refresh(&app, &fay_refresh).await.status, StatusCode::UNAUTHORIZED);
        let r = sign_in(&app, "fay@example.com", PASSWORD).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        let sub = claims_of(&gus).sub;
        for sql in [
            "DELETE FROM refresh_tokens WHERE session_id IN (SELECT s.id FROM customer_sessions s JOIN customers c ON c.id = s.customer_id WHERE c.pseudonym = $1)",
            "DELETE FROM customer_sessions WHERE customer_id IN (SELECT id FROM customers WHERE pseudonym = $1)",
            "DELETE FROM customers WHERE pseudonym = $1",
        ] {
            sqlx::query(sql).bind(&sub).execute(pool).await.unwrap();
        }
        assert_unauthorized(&me(&app, &gus).await, "deleted customer");
        app.stop().await;
    }

    async fn identity_is_not_stored_in_plaintext(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "Hidden.Person@Example.org", "Hidden Person").await;
        let row = sqlx::query(
            "SELECT pseudonym, email_lookup, email_enc, name_enc, password_hash, created_at FROM customers",
        )
        .fetch_one(&app.kernel.state.db.pool)
        .await
        .unwrap();
        let columns: Vec<String> = (0..6).map(|i| row.get::<String, _>(i)).collect();
        for column in &columns {
            let lower = column.to_lowercase();
            assert!(
                !lower.contains("hidden.person") && !lower.contains("hidden person") && !lower.contains(PASSWORD),
                "a column holds identity in clear: {column}"
            );
        }
        // Under the customer's own key (crypto-shredding), not the shared one.
        assert!(columns[2].starts_with("v2:c"), "{}", columns[2]);
        assert!(columns[3].starts_with("v2:c"), "{}", columns[3]);
        assert_eq!(columns[1].len(), 64);
        assert!(columns[4].starts_with("$argon2id$"), "{}", columns[4]);
        // The same name encrypts differently each time (random nonces).
        register(&app, "other@example.org", "Hidden Person").await;
        let names: Vec<String> = sqlx::query("SELECT name_enc FROM customers")
            .fetch_all(&app.kernel.state.db.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_ne!(names[0], names[1]);
        // The wrapped keys do not hold the keys in clear either: the master key file
        // exists and is private.
        let key_file = app.db.dir.path().join("master.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        app.stop().await;
    }

    async fn injection_looking_input_round_trips_or_is_refused(backend: Backend) {
        let app = TestApp::start(backend).await;
        let name = "Robert'); DROP TABLE customers;-- \"x\" \\ $1 %";
        let email = "o'brien+'--@example.com";
        let account = register(&app, email, name).await;
        assert_eq!(account["name"], name);
        let (access, _) = tokens(&app, email).await;
        let body = me(&app, &access).await.json();
        assert_eq!(body["email"], email);
        assert_eq!(body["name"], name);
        for email in ["' OR '1'='1", "x@y.com' OR 1=1 --", "a@b.com; DROP TABLE customers"] {
            let r = post(
                &app,
                "/api/v1/account/register",
                None,
                &json!({"email": email, "password": PASSWORD, "name": name}),
            )
            .await;
            r.assert_field_error(422, "email");
            let r = sign_in(&app, email, PASSWORD).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
        }
        let r = sign_in(&app, "' OR 1=1 --", "' OR 1=1 --").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = refresh(&app, "' OR 1=1 --").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.count("customers").await, 1);
        app.stop().await;
    }

    async fn password_change_checks_the_current_one_and_is_audited(backend: Backend) {
        let app = TestApp::start(backend).await;
        let account = register(&app, "ida@example.com", "Ida").await;
        let (access, _) = tokens(&app, "ida@example.com").await;
        let (other_access, _) = tokens(&app, "ida@example.com").await;
        let r = post(
            &app,
            "/api/v1/account/password",
            Some(&access),
            &json!({"current_password": "wrong password", "new_password": "a new password"}),
        )
        .await;
        r.assert_field_error(422, "current_password");
        let r = post(
            &app,
            "/api/v1/account/password",
            Some(&access),
            &json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
        r.assert_field_error(422, "new_password");
        let r = post(
            &app,
            "/api/v1/account/password",
            Some(&access),
            &json!({"current_password": PASSWORD, "new_password": "a new password"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert_eq!(sign_in(&app, "ida@example.com", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(sign_in(&app, "ida@example.com", "a new password").await.status, StatusCode::OK);
        // This session goes on; the others end.
        assert_eq!(me(&app, &access).await.status, StatusCode::OK);
        assert_unauthorized(&me(&app, &other_access).await, "other session after a password change");
        let r = app.admin_get("/api/v1/admin/audit?action=customer.password_changed").await;
        let entries = r.json()["entries"].as_array().cloned().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["actor"], account["pseudonym"]);
        assert!(entries[0]["before"].is_null() && entries[0]["after"].is_null());
        app.stop().await;
    }

    async fn keys_survive_a_restart_and_a_wrong_master_key_is_refused(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "jo@example.com", "Jo").await;
        let (access, refresh_token) = tokens(&app, "jo@example.com").await;
        let TestApp { kernel, db, .. } = app;
        kernel.shutdown().await;

        // Another master key cannot unwrap the stored keys: the kernel refuses to start.
        let mut config = db.config();
        config.master_key = Some(base64::engine::general_purpose::STANDARD.encode([3u8; 32]));
        let err = olivine::app::Kernel::start(config).await.err().expect("refused");
        assert!(format!("{err:#}").contains("master key does not match"), "{err:#}");
        let mut config = db.config();
        config.master_key = Some("too-short".to_owned());
        assert!(olivine::app::Kernel::start(config).await.is_err());

        // The same key file: identity still decrypts, tokens still verify.
        let kernel = olivine::app::Kernel::start(db.config()).await.expect("restarts");
        let router = kernel.router();
        let app = TestApp { kernel, router, db };
        let body = me(&app, &access).await.json();
        assert_eq!(body["email"], "jo@example.com");
        assert_eq!(refresh(&app, &refresh_token).await.status, StatusCode::OK);
        app.stop().await;
    }

    async fn racing_uses_of_one_refresh_token_end_the_session(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "kim@example.com", "Kim").await;
        let (_, refresh_token) = tokens(&app, "kim@example.com").await;
        let (a, b) = tokio::join!(refresh(&app, &refresh_token), refresh(&app, &refresh_token));
        let winners: Vec<&TestResponse> =
            [&a, &b].into_iter().filter(|r| r.status == StatusCode::OK).collect();
        assert!(winners.len() <= 1, "both racing uses succeeded");
        for r in [&a, &b] {
            assert!(
                r.status == StatusCode::OK || r.status == StatusCode::UNAUTHORIZED,
                "{}",
                r.text()
            );
        }
        // Whoever won, a second use happened: the new pair is dead too.
        if let Some(winner) = winners.first() {
            let (access, newer) = pair(winner);
            assert_eq!(refresh(&app, &newer).await.status, StatusCode::UNAUTHORIZED);
            assert_unauthorized(&me(&app, &access).await, "access token of the raced session");
        }
        // An overlong password is simply wrong.
        let r = sign_in(&app, "kim@example.com", &"p".repeat(5000)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        app.stop().await;
    }

    async fn legacy_bcrypt_accounts_sign_in_once_and_are_rehashed(backend: Backend) {
        let app = TestApp::start(backend).await;
        register(&app, "taken@example.com", "Already Here").await;
        let legacy = bcrypt::hash("old-system-password", 4).unwrap();
        let import = json!({"customers": [
            {"email": "lee@example.com", "name": "Lee", "password_hash": legacy},
            {"email": "Taken@example.com", "name": "Dup", "password_hash": legacy},
        ]});
        let r = app.admin_post("/api/v1/admin/customers/import", &import).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json(), json!({"imported": 1, "skipped": 1}));
        // Bad records refuse the whole batch, naming the field.
        app.admin_post("/api/v1/admin/customers/import", &json!({"customers": [
            {"email": "ok@example.com", "name": "Ok", "password_hash": legacy},
            {"email": "bad@example.com", "name": "Bad", "password_hash": "md5:5f4dcc3b"},
        ]})).await.assert_field_error(422, "customers[1].password_hash");
        assert_eq!(sign_in(&app, "ok@example.com", "old-system-password").await.status, StatusCode::UNAUTHORIZED);
        // Import is an admin route.
        let r = post(&app, "/api/v1/admin/customers/import", None, &import).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);

        let stored = || async {
            let row = sqlx::query("SELECT password_hash FROM customers WHERE name_enc IS NOT NULL ORDER BY id DESC")
                .fetch_one(&app.kernel.state.db.pool).await.unwrap();
            row.try_get::<String, _>(0).unwrap()
        };
        assert!(stored().await.starts_with("$2"));
        assert_eq!(sign_in(&app, "lee@example.com", "wrong-password-here").await.status, StatusCode::UNAUTHORIZED);
        assert!(stored().await.starts_with("$2"), "a failed sign-in rehashes nothing");
        // The first sign-in accepts bcrypt and replaces it with argon2id; the next uses that.
        let r = sign_in(&app, "lee@example.com", "old-system-password").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(stored().await.starts_with("$argon2id$"), "{}", stored().await);
        let (access, _) = tokens_with(&app, "lee@example.com", "old-system-password").await;
        assert_eq!(me(&app, &access).await.json()["name"], "Lee");
        app.stop().await;
    }
}

async fn tokens_with(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let r = sign_in(app, email, password).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    pair(&r)
}
