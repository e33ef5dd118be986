//! The session sweep deletes refresh tokens expired for a while and sessions that are
//! revoked or have no token left, and nothing a customer can still use. Both backends;
//! the sweep is called directly with a chosen "now".

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use chrono::{Duration, Utc};
use olivine::accounts::sweep::{SweepReport, sweep_sessions};
use serde_json::{Value, json};

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

/// Signs in: (access token, refresh token).
async fn sign_in(app: &TestApp) -> (String, String) {
    let r = post(
        app,
        "/api/v1/account/sign-in",
        None,
        &json!({"email": "ada@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    (
        body["access_token"].as_str().expect("access").to_owned(),
        body["refresh_token"].as_str().expect("refresh").to_owned(),
    )
}

both_backends! {
    async fn sweep_deletes_only_what_cannot_be_used(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.session_sweep_secs = 0).await;
        let r = post(
            &app,
            "/api/v1/account/register",
            None,
            &json!({"email": "ada@example.com", "password": PASSWORD, "name": "Ada"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

        // A live session whose first refresh token was used (kept for replay detection).
        let (_, first_refresh) = sign_in(&app).await;
        let r = post(&app, "/api/v1/account/refresh", None, &json!({"refresh_token": first_refresh})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let live_access = r.json()["access_token"].as_str().unwrap().to_owned();
        let live_refresh = r.json()["refresh_token"].as_str().unwrap().to_owned();
        // A signed-out (revoked) session.
        let (gone_access, gone_refresh) = sign_in(&app).await;
        let r = post(&app, "/api/v1/account/sign-out", Some(&gone_access), &json!({"refresh_token": gone_refresh})).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert_eq!((app.count("customer_sessions").await, app.count("refresh_tokens").await), (2, 3));

        let db = &app.kernel.state.db;
        // A passkey ceremony left unanswered (five minutes long).
        let expires = (Utc::now() + Duration::minutes(5)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        sqlx::query("INSERT INTO staff_users (email, name, role, created_at, updated_at)
                     VALUES ('keys@staff.example', 'Keys', 'admin', $1, $1)")
            .bind(&expires).execute(&db.pool).await.unwrap();
        sqlx::query("INSERT INTO staff_passkey_ceremonies (staff_id, kind, state, created_at, expires_at)
                     SELECT MIN(id), 'register', '{}', $1, $1 FROM staff_users")
            .bind(&expires).execute(&db.pool).await.unwrap();
        // Now: everything is recent, nothing goes.
        assert_eq!(sweep_sessions(db, Utc::now()).await.unwrap(), SweepReport::default());
        assert_eq!((app.count("customer_sessions").await, app.count("refresh_tokens").await), (2, 3));

        // Two days on: the revoked session and its token go; the live one stays whole.
        let report = sweep_sessions(db, Utc::now() + Duration::days(2)).await.unwrap();
        assert_eq!(report, SweepReport { refresh_tokens: 1, sessions: 1, staff_sessions: 0, staff_mfa_challenges: 0, staff_passkey_ceremonies: 1 });
        assert_eq!((app.count("customer_sessions").await, app.count("refresh_tokens").await), (1, 2));
        let r = app.request(Method::GET, "/api/v1/account/me", Some(&live_access), None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // The used token is still known: replaying it still ends the session.
        let r = post(&app, "/api/v1/account/refresh", None, &json!({"refresh_token": first_refresh})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = post(&app, "/api/v1/account/refresh", None, &json!({"refresh_token": live_refresh})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the replay revoked the family");

        // A fresh session, then 32 days on: every token has expired a day ago or more,
        // so every token and session goes.
        let _ = sign_in(&app).await;
        let report = sweep_sessions(db, Utc::now() + Duration::days(32)).await.unwrap();
        assert_eq!(report.sessions, 2, "{report:?}");
        assert_eq!((app.count("customer_sessions").await, app.count("refresh_tokens").await), (0, 0));
        app.stop().await;
    }

    async fn sweep_deletes_old_staff_sign_ins_but_keeps_api_tokens(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.session_sweep_secs = 0).await;
        let r = app.admin_post("/api/v1/admin/staff", &json!({"email": "sam@shop.example",
            "name": "Sam", "role": "support", "password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let r = post(&app, "/api/v1/staff/sign-in", None,
            &json!({"email": "sam@shop.example", "password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let session = r.json()["token"].as_str().unwrap().to_owned();
        let db = &app.kernel.state.db;
        assert_eq!(sweep_sessions(db, Utc::now()).await.unwrap().staff_sessions, 0);
        let me = app.request(Method::GET, "/api/v1/admin/me", Some(&session), None, None).await;
        assert_eq!(me.status, StatusCode::OK);
        // Two days on, the 12-hour sign-in expired over a day ago: it goes; the owner's
        // API token stays.
        let report = sweep_sessions(db, Utc::now() + Duration::days(2)).await.unwrap();
        assert_eq!(report.staff_sessions, 1, "{report:?}");
        assert_eq!(app.count("staff_tokens").await, 1);
        assert_eq!(app.admin_get("/api/v1/admin/me").await.status, StatusCode::OK);
        app.stop().await;
    }
}
