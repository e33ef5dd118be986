//! Two-factor sign-in for staff (TOTP), recovery codes, the store's policy and the
//! sessions a staff member sees and revokes. Time is the kernel's clock, which the tests
//! step: a code is accepted once, one 30-second step either side of now and not two;
//! wrong codes spend the challenge and lock the account's second factor; challenges
//! expire and work once; a session signed in before two-factor was required stops
//! working when the owner requires it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::admin_ui::submit;
use crate::common::browser::{Browser, assert_html, csrf_of, get as browse, location, post_form};
use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use serde_json::{Value, json};

const PASSWORD: &str = "a long enough password";

async fn send_json(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> TestResponse {
    app.request(
        method,
        path,
        token,
        body.map(|b| Body::from(b.to_string())),
        Some("application/json"),
    )
    .await
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> TestResponse {
    send_json(app, Method::POST, path, token, Some(body)).await
}

async fn get(app: &TestApp, path: &str, token: &str) -> TestResponse {
    app.request(Method::GET, path, Some(token), None, None)
        .await
}

/// A staff user with `role` and [`PASSWORD`]; answers their id.
async fn create_staff(app: &TestApp, role: &str, email: &str) -> i64 {
    let r = app
        .admin_post(
            "/api/v1/admin/staff",
            &json!({"email": email, "name": "Staff", "role": role, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_i64().unwrap()
}

async fn sign_in(app: &TestApp, email: &str) -> TestResponse {
    post(
        app,
        "/api/v1/staff/sign-in",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await
}

/// A session of a staff member without two-factor sign-in.
async fn session(app: &TestApp, email: &str) -> String {
    let r = sign_in(app, email).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["token"]
        .as_str()
        .expect("a session token")
        .to_owned()
}

/// The challenge a password answers for a staff member with two-factor sign-in on.
async fn challenge(app: &TestApp, email: &str) -> String {
    let r = sign_in(app, email).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(
        body.get("token").is_none(),
        "no token before the second factor: {body}"
    );
    body["challenge"].as_str().expect("a challenge").to_owned()
}

fn now_secs(app: &TestApp) -> i64 {
    app.kernel.state.clock.now().timestamp()
}

/// Moves the kernel's clock to 10 s into a 30-second step, so the step boundary is far
/// from the requests that follow.
fn mid_step(app: &TestApp) {
    let into = now_secs(app).rem_euclid(30);
    let by = (40 - into).rem_euclid(30);
    app.kernel
        .state
        .clock
        .advance(Duration::from_secs(by as u64));
}

/// The code the app shows `offset` seconds from the kernel's now.
fn code(app: &TestApp, secret: &str, offset: i64) -> String {
    let at = u64::try_from(now_secs(app) + offset).unwrap();
    olivine::staff::mfa::code_at(secret, at).expect("a code")
}

/// A code that is none of those accepted now (nor of the steps either side).
fn wrong_code(app: &TestApp, secret: &str) -> String {
    let near: Vec<String> = [-30, 0, 30].iter().map(|o| code(app, secret, *o)).collect();
    (0..1000)
        .map(|n| format!("{:06}", (n * 7919 + 1234) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

async fn answer(app: &TestApp, challenge: &str, code: &str) -> TestResponse {
    post(
        app,
        "/api/v1/staff/sign-in/mfa",
        None,
        json!({"challenge": challenge, "code": code}),
    )
    .await
}

/// Turns two-factor sign-in on from `token`'s session; answers the secret and the
/// recovery codes. Leaves the clock one step later, so the confirming code's step is
/// past.
async fn enrol(app: &TestApp, token: &str) -> (String, Vec<String>) {
    let r = post(app, "/api/v1/staff/me/mfa/totp", Some(token), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let secret = r.json()["secret"].as_str().unwrap().to_owned();
    mid_step(app);
    let r = post(
        app,
        "/api/v1/staff/me/mfa/totp/confirm",
        Some(token),
        json!({"code": code(app, &secret, 0)}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let codes: Vec<String> = r.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    app.kernel.state.clock.advance(Duration::from_secs(30));
    (secret, codes)
}

/// Signs in with the password and a current code: the session token.
async fn sign_in_with_code(app: &TestApp, email: &str, secret: &str) -> String {
    let challenge = challenge(app, email).await;
    mid_step(app);
    let r = answer(app, &challenge, &code(app, secret, 0)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.admin_get(&format!("/api/v1/admin/audit?{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["entries"].as_array().unwrap().clone()
}

async fn scalar_text(app: &TestApp, sql: &'static str, id: i64) -> Vec<String> {
    use sqlx::Row;
    sqlx::query(sql)
        .bind(id)
        .fetch_all(&app.kernel.state.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            row.try_get::<Option<String>, _>(0)
                .unwrap()
                .unwrap_or_default()
        })
        .collect()
}

/// A request from a client address (as the server sees its peer).
async fn from_address(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    addr: &str,
) -> TestResponse {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    app.send(request).await
}

/// A request as it comes through a proxy the kernel trusts: the client's address is the
/// last hop of `X-Forwarded-For`.
async fn forwarded(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    forwarded_for: &str,
    body: Option<Value>,
) -> TestResponse {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("x-forwarded-for", forwarded_for);
    let body = match body {
        Some(body) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    app.send(builder.body(body).unwrap()).await
}

/// A browser signed in to the admin with `email` and [`PASSWORD`] (no second factor).
async fn admin_browser(app: &TestApp, email: &str) -> Browser {
    let mut browser = Browser::default();
    let page = browse(app, &mut browser, "/admin/sign-in").await;
    assert_html(&page, StatusCode::OK);
    let csrf = csrf_of(&page);
    let r = post_form(
        app,
        &mut browser,
        "/admin/sign-in",
        &[("csrf", &csrf), ("email", email), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(location(&r), "/admin");
    assert!(browser.has("olv_staff"));
    browser
}

/// Presses a button of admin page `page` that asks to confirm first (its form posts to
/// `action`): the confirmation page, then its button. Answers the confirmed answer.
async fn press_and_confirm(
    app: &TestApp,
    browser: &mut Browser,
    page: &str,
    action: &str,
    button: &str,
) -> TestResponse {
    let asked = submit(app, browser, page, action, &[]).await;
    assert_html(&asked, StatusCode::OK);
    assert!(
        asked.text().contains(button) && asked.text().contains(r#"name="confirm" value="yes""#),
        "{}",
        asked.text()
    );
    let csrf = csrf_of(&asked);
    post_form(app, browser, action, &[("csrf", &csrf), ("confirm", "yes")]).await
}

/// The value of attribute `attribute` of the first element that has `marker` in its tag.
#[track_caller]
fn attribute_after(html: &str, marker: &str, attribute: &str) -> String {
    let tag_start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"));
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>').unwrap()];
    let key = format!(r#"{attribute}=""#);
    let start = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {attribute} in {tag}"))
        + key.len();
    tag[start..start + tag[start..].find('"').unwrap()].to_owned()
}

both_backends! {
    async fn enrolment_then_sign_in_takes_a_second_factor(backend: Backend) {
        let app = TestApp::start(backend).await;
        let id = create_staff(&app, "support", "ana@shop.example").await;
        // Without two-factor sign-in, the answer is the session as before.
        let token = session(&app, "ana@shop.example").await;
        let status = get(&app, "/api/v1/staff/me/mfa", &token).await;
        assert_eq!(status.status, StatusCode::OK, "{}", status.text());
        assert_eq!(status.json()["totp"], "off");

        let started = post(&app, "/api/v1/staff/me/mfa/totp", Some(&token), json!({})).await;
        assert_eq!(started.status, StatusCode::OK, "{}", started.text());
        let body = started.json();
        let secret = body["secret"].as_str().unwrap().to_owned();
        assert_eq!(secret.len(), 32, "20 bytes, base32: {secret}");
        let uri = body["otpauth_uri"].as_str().unwrap();
        assert!(uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}"))
            && uri.contains("issuer=Olivine"), "{uri}");
        let png = body["qr_code"].as_str().unwrap().strip_prefix("data:image/png;base64,").expect("a PNG data URI");
        let png = base64::engine::general_purpose::STANDARD.decode(png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Stored encrypted, never in clear.
        let stored = scalar_text(&app, "SELECT secret_enc FROM staff_totp WHERE staff_id = $1", id).await;
        assert!(stored[0].starts_with("v1:") && !stored[0].contains(&secret), "{stored:?}");
        assert_eq!(get(&app, "/api/v1/staff/me/mfa", &token).await.json()["totp"], "pending");
        // Not on until a code confirms it: signing in still answers a session.
        session(&app, "ana@shop.example").await;

        mid_step(&app);
        let wrong = post(&app, "/api/v1/staff/me/mfa/totp/confirm", Some(&token),
            json!({"code": wrong_code(&app, &secret)})).await;
        wrong.assert_field_error(422, "code");
        let malformed = post(&app, "/api/v1/staff/me/mfa/totp/confirm", Some(&token), json!({"code": "12ab56"})).await;
        malformed.assert_field_error(422, "code");
        let confirmed = post(&app, "/api/v1/staff/me/mfa/totp/confirm", Some(&token),
            json!({"code": code(&app, &secret, 0)})).await;
        assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text());
        let codes: Vec<String> = confirmed.json()["recovery_codes"].as_array().unwrap().iter()
            .map(|c| c.as_str().unwrap().to_owned()).collect();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes.iter().collect::<std::collections::HashSet<_>>().len(), 10, "{codes:?}");
        assert!(codes.iter().all(|c| c.len() == 14 && c.matches('-').count() == 2), "{codes:?}");
        // Stored as argon2id hashes.
        let hashes = scalar_text(&app, "SELECT code_hash FROM staff_recovery_codes WHERE staff_id = $1", id).await;
        assert_eq!(hashes.len(), 10);
        assert!(hashes.iter().all(|h| h.starts_with("$argon2id$")));
        assert!(codes.iter().all(|c| hashes.iter().all(|h| !h.contains(&c.replace('-', "")))));
        let status = get(&app, "/api/v1/staff/me/mfa", &token).await.json();
        assert_eq!((status["totp"].as_str(), status["recovery_codes_left"].as_i64()), (Some("on"), Some(10)), "{status}");
        // On already: starting again is a conflict.
        let again = post(&app, "/api/v1/staff/me/mfa/totp", Some(&token), json!({})).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());

        // Sign-in now answers a challenge, and the challenge and a code the session.
        let challenge = challenge(&app, "ana@shop.example").await;
        let r = sign_in(&app, "ana@shop.example").await.json();
        assert_eq!(r["methods"], json!(["totp", "recovery_code"]), "{r}");
        app.kernel.state.clock.advance(Duration::from_secs(30));
        let r = answer(&app, &challenge, &code(&app, &secret, 0)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let body = r.json();
        assert_eq!((body["token_type"].as_str(), body["staff"]["id"].as_i64()), (Some("Bearer"), Some(id)), "{body}");
        let signed_in = body["token"].as_str().unwrap().to_owned();
        let me = get(&app, "/api/v1/admin/me", &signed_in).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text());
        let mine = get(&app, "/api/v1/staff/me/mfa", &signed_in).await.json();
        assert_eq!(mine["session_second_factor"], "totp", "{mine}");

        // An API token cannot manage the factor.
        let api = app.admin_post(&format!("/api/v1/admin/staff/{id}/tokens"), &json!({"label": "script"})).await;
        let api = api.json()["token"].as_str().unwrap().to_owned();
        let r = post(&app, "/api/v1/staff/me/mfa/totp/disable", Some(&api),
            json!({"password": PASSWORD, "code": "123456"})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());

        let added = audit(&app, "action=staff.factor_added").await;
        assert_eq!(added.len(), 1);
        assert_eq!(added[0]["after"]["factor"], "totp");
        let signed = audit(&app, "action=staff.signed_in").await;
        assert_eq!(signed[0]["after"]["factors"], json!(["password", "totp"]), "{signed:?}");
        assert!(signed.iter().any(|e| e["after"]["factors"] == json!(["password"])));
        app.stop().await;
    }

    async fn a_code_works_once_and_one_step_of_skew_either_way(backend: Backend) {
        let app = TestApp::start(backend).await;
        create_staff(&app, "catalog", "cat@shop.example").await;
        let token = session(&app, "cat@shop.example").await;
        let (secret, _) = enrol(&app, &token).await;
        app.kernel.state.clock.advance(Duration::from_secs(120));
        mid_step(&app);
        // Two steps off either way: refused.
        for offset in [-60, 60] {
            let c = challenge(&app, "cat@shop.example").await;
            answer(&app, &c, &code(&app, &secret, offset)).await.assert_field_error(401, "code");
        }
        // One step behind: accepted.
        let c = challenge(&app, "cat@shop.example").await;
        let behind = code(&app, &secret, -30);
        assert_eq!(answer(&app, &c, &behind).await.status, StatusCode::OK);
        // The same code again, on a fresh challenge: a replay.
        let c = challenge(&app, "cat@shop.example").await;
        let replay = answer(&app, &c, &behind).await;
        replay.assert_field_error(401, "code");
        assert_eq!(replay.json()["error"], "invalid_credentials");
        // One step ahead: accepted.
        let c = challenge(&app, "cat@shop.example").await;
        assert_eq!(answer(&app, &c, &code(&app, &secret, 30)).await.status, StatusCode::OK);
        // Now's code is of a step before the last one used: refused too.
        let c = challenge(&app, "cat@shop.example").await;
        answer(&app, &c, &code(&app, &secret, 0)).await.assert_field_error(401, "code");
        // The next step's code after that works.
        app.kernel.state.clock.advance(Duration::from_secs(60));
        let c = challenge(&app, "cat@shop.example").await;
        assert_eq!(answer(&app, &c, &code(&app, &secret, 0)).await.status, StatusCode::OK);
        // A code that is not 6 digits is refused for its shape, without counting.
        let c = challenge(&app, "cat@shop.example").await;
        answer(&app, &c, "12345").await.assert_field_error(422, "code");
        let failed = audit(&app, "action=staff.mfa_failed").await;
        assert_eq!(failed.len(), 4, "{failed:?}");
        app.stop().await;
    }

    async fn wrong_codes_spend_the_challenge_then_lock_the_account(backend: Backend) {
        let app = TestApp::start(backend).await;
        create_staff(&app, "admin", "adm@shop.example").await;
        let token = session(&app, "adm@shop.example").await;
        let (secret, _) = enrol(&app, &token).await;
        mid_step(&app);
        // Five wrong codes spend a challenge: the right code no longer helps with it.
        let c = challenge(&app, "adm@shop.example").await;
        for _ in 0..5 {
            answer(&app, &c, &wrong_code(&app, &secret)).await.assert_field_error(401, "code");
        }
        answer(&app, &c, &code(&app, &secret, 0)).await.assert_field_error(401, "challenge");
        // Five more on a new challenge make ten: the account's second factor is locked,
        // whatever challenge and code come next.
        let c = challenge(&app, "adm@shop.example").await;
        for _ in 0..5 {
            answer(&app, &c, &wrong_code(&app, &secret)).await.assert_field_error(401, "code");
        }
        let c = challenge(&app, "adm@shop.example").await;
        let locked = answer(&app, &c, &code(&app, &secret, 0)).await;
        assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.text());
        let retry: u64 = locked.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((800..=900).contains(&retry), "{retry}");
        let failed = audit(&app, "action=staff.mfa_failed&limit=20").await;
        assert_eq!(failed.len(), 10);
        assert_eq!(failed[0]["after"]["locked"], true, "{:?}", failed[0]);
        assert_eq!(failed[1]["after"]["locked"], false);
        // Fifteen minutes later it is open again.
        app.kernel.state.clock.advance(Duration::from_secs(15 * 60));
        sign_in_with_code(&app, "adm@shop.example", &secret).await;
        app.stop().await;
    }

    async fn recovery_codes_work_once(backend: Backend) {
        let app = TestApp::start(backend).await;
        let id = create_staff(&app, "support", "rec@shop.example").await;
        let token = session(&app, "rec@shop.example").await;
        let (_, codes) = enrol(&app, &token).await;
        let c = challenge(&app, "rec@shop.example").await;
        let r = post(&app, "/api/v1/staff/sign-in/mfa", None, json!({"challenge": c, "recovery_code": codes[0]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let signed_in = r.json()["token"].as_str().unwrap().to_owned();
        assert_eq!(get(&app, "/api/v1/staff/me/mfa", &signed_in).await.json()["session_second_factor"], "recovery_code");
        // Used: refused the second time.
        let c = challenge(&app, "rec@shop.example").await;
        let again = post(&app, "/api/v1/staff/sign-in/mfa", None, json!({"challenge": c, "recovery_code": codes[0]})).await;
        again.assert_field_error(401, "recovery_code");
        // Another, typed in capitals without dashes, on the same challenge.
        let typed = codes[1].replace('-', "").to_uppercase();
        let r = post(&app, "/api/v1/staff/sign-in/mfa", None, json!({"challenge": c, "recovery_code": typed})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // Malformed, both factors, neither: 422 naming the field.
        let c = challenge(&app, "rec@shop.example").await;
        post(&app, "/api/v1/staff/sign-in/mfa", None, json!({"challenge": c, "recovery_code": "not-a-code"})).await
            .assert_field_error(422, "recovery_code");
        post(&app, "/api/v1/staff/sign-in/mfa", None, json!({"challenge": c, "recovery_code": codes[2], "code": "123456"})).await
            .assert_field_error(422, "recovery_code");
        post(&app, "/api/v1/staff/sign-in/mfa", None, json!({"challenge": c})).await
            .assert_field_error(422, "code");
        let used = scalar_text(&app, "SELECT used_at FROM staff_recovery_codes WHERE staff_id = $1 AND used_at IS NOT NULL", id).await;
        assert_eq!(used.len(), 2);
        let audited = audit(&app, "action=staff.recovery_code_used").await;
        assert_eq!(audited.len(), 2);
        assert_eq!(audited[0]["after"]["recovery_codes_left"], 8);
        assert_eq!(get(&app, "/api/v1/staff/me/mfa", &signed_in).await.json()["recovery_codes_left"], 8);
        app.stop().await;
    }

    async fn an_expired_or_used_challenge_is_refused(backend: Backend) {
        let app = TestApp::start(backend).await;
        create_staff(&app, "catalog", "exp@shop.example").await;
        let token = session(&app, "exp@shop.example").await;
        let (secret, _) = enrol(&app, &token).await;
        // Five minutes and a second later: expired.
        let c = challenge(&app, "exp@shop.example").await;
        app.kernel.state.clock.advance(Duration::from_secs(5 * 60 + 1));
        mid_step(&app);
        answer(&app, &c, &code(&app, &secret, 0)).await.assert_field_error(401, "challenge");
        // Used once: not twice.
        let c = challenge(&app, "exp@shop.example").await;
        assert_eq!(answer(&app, &c, &code(&app, &secret, 0)).await.status, StatusCode::OK);
        app.kernel.state.clock.advance(Duration::from_secs(30));
        answer(&app, &c, &code(&app, &secret, 0)).await.assert_field_error(401, "challenge");
        // Made up.
        let made_up = format!("olvc_{}", "A".repeat(43));
        answer(&app, &made_up, &code(&app, &secret, 0)).await.assert_field_error(401, "challenge");
        answer(&app, "nonsense", &code(&app, &secret, 0)).await.assert_field_error(401, "challenge");
        // The code of the step is still unused: it works on a fresh challenge.
        let c = challenge(&app, "exp@shop.example").await;
        assert_eq!(answer(&app, &c, &code(&app, &secret, 0)).await.status, StatusCode::OK);
        app.stop().await;
    }

    async fn turning_it_off_takes_the_password_and_a_code(backend: Backend) {
        let app = TestApp::start(backend).await;
        let id = create_staff(&app, "catalog", "off@shop.example").await;
        let token = session(&app, "off@shop.example").await;
        let (secret, _) = enrol(&app, &token).await;
        mid_step(&app);
        let disable = |body: Value| {
            let (app, token) = (&app, &token);
            async move { post(app, "/api/v1/staff/me/mfa/totp/disable", Some(token), body).await }
        };
        disable(json!({"password": "not the password!", "code": code(&app, &secret, 0)})).await
            .assert_field_error(401, "password");
        disable(json!({"password": PASSWORD, "code": wrong_code(&app, &secret)})).await
            .assert_field_error(401, "code");
        disable(json!({"password": PASSWORD})).await.assert_field_error(422, "code");
        let r = disable(json!({"password": PASSWORD, "code": code(&app, &secret, 0)})).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert_eq!(get(&app, "/api/v1/staff/me/mfa", &token).await.json()["totp"], "off");
        assert_eq!(app.count("staff_recovery_codes").await, 0);
        let r = disable(json!({"password": PASSWORD, "code": code(&app, &secret, 0)})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        // Sign-in answers a session straight away again.
        session(&app, "off@shop.example").await;
        let removed = audit(&app, "action=staff.factor_removed").await;
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0]["target_id"], id.to_string());
        assert_eq!(audit(&app, "action=staff.mfa_failed").await.len(), 1);
        app.stop().await;
    }

    async fn new_recovery_codes_replace_the_old_ones_with_proof(backend: Backend) {
        let app = TestApp::start(backend).await;
        let id = create_staff(&app, "catalog", "codes@shop.example").await;
        let token = session(&app, "codes@shop.example").await;
        let (secret, old) = enrol(&app, &token).await;
        mid_step(&app);
        let renew = |body: Value| {
            let (app, token) = (&app, &token);
            async move { post(app, "/api/v1/staff/me/mfa/recovery-codes", Some(token), body).await }
        };
        renew(json!({"password": "not the password!", "code": code(&app, &secret, 0)})).await
            .assert_field_error(401, "password");
        renew(json!({"password": PASSWORD, "code": wrong_code(&app, &secret)})).await
            .assert_field_error(401, "code");
        // With a recovery code as the proof: it is spent, and all of them replaced.
        let r = renew(json!({"password": PASSWORD, "recovery_code": old[0]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let fresh: Vec<String> = r.json()["recovery_codes"].as_array().unwrap().iter()
            .map(|c| c.as_str().unwrap().to_owned()).collect();
        assert_eq!(fresh.len(), 10);
        assert!(fresh.iter().all(|c| !old.contains(c)));
        assert_eq!(get(&app, "/api/v1/staff/me/mfa", &token).await.json()["recovery_codes_left"], 10);
        // An old code no longer signs in; a new one does.
        let c = challenge(&app, "codes@shop.example").await;
        post(&app, "/api/v1/staff/sign-in/mfa", None, json!({"challenge": c, "recovery_code": old[1]})).await
            .assert_field_error(401, "recovery_code");
        let r = post(&app, "/api/v1/staff/sign-in/mfa", None, json!({"challenge": c, "recovery_code": fresh[0]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // With the current code as the proof; that code is then used up.
        app.kernel.state.clock.advance(Duration::from_secs(30));
        let proof = code(&app, &secret, 0);
        assert_eq!(renew(json!({"password": PASSWORD, "code": proof})).await.status, StatusCode::OK);
        renew(json!({"password": PASSWORD, "code": proof})).await.assert_field_error(401, "code");
        let replaced = audit(&app, "action=staff.recovery_codes_replaced").await;
        assert_eq!(replaced.len(), 2);
        assert_eq!(replaced[0]["target_id"], id.to_string());
        assert_eq!(audit(&app, "action=staff.mfa_failed").await.len(), 3);
        app.stop().await;
    }

    async fn the_owner_resets_a_lost_authenticator_and_signs_its_staff_out(backend: Backend) {
        let app = TestApp::start(backend).await;
        let id = create_staff(&app, "support", "lost@shop.example").await;
        let token = session(&app, "lost@shop.example").await;
        enrol(&app, &token).await;
        let path = format!("/api/v1/admin/staff/{id}/mfa/reset");
        // Only the owner (staff.manage): an admin is refused.
        create_staff(&app, "admin", "admin@shop.example").await;
        let admin = session(&app, "admin@shop.example").await;
        assert_eq!(post(&app, &path, Some(&admin), json!({})).await.status, StatusCode::FORBIDDEN);
        assert_eq!(post(&app, "/api/v1/admin/staff/999999/mfa/reset", Some(ADMIN_TOKEN), json!({})).await.status, StatusCode::NOT_FOUND);
        let r = post(&app, &path, Some(ADMIN_TOKEN), json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["sessions_revoked"], 1);
        // Signed out everywhere; the password alone signs in again, and nothing is left.
        assert_eq!(get(&app, "/api/v1/staff/me/mfa", &token).await.status, StatusCode::UNAUTHORIZED);
        let again = session(&app, "lost@shop.example").await;
        assert_eq!(get(&app, "/api/v1/staff/me/mfa", &again).await.json()["totp"], "off");
        assert_eq!(app.count("staff_recovery_codes").await, 0);
        // Nothing to reset now.
        assert_eq!(post(&app, &path, Some(ADMIN_TOKEN), json!({})).await.status, StatusCode::CONFLICT);
        let reset = audit(&app, "action=staff.factor_reset").await;
        assert_eq!(reset.len(), 1);
        assert_eq!(reset[0]["target_id"], id.to_string());
        app.stop().await;
    }

    async fn the_owner_requires_it_and_old_sessions_stop_working(backend: Backend) {
        let app = TestApp::start(backend).await;
        let support_id = create_staff(&app, "support", "sup@shop.example").await;
        create_staff(&app, "catalog", "cat@shop.example").await;
        create_staff(&app, "admin", "adm@shop.example").await;
        let support = session(&app, "sup@shop.example").await;
        let support_other_device = session(&app, "sup@shop.example").await;
        let catalog = session(&app, "cat@shop.example").await;
        let admin = session(&app, "adm@shop.example").await;
        let support_api = app.admin_post(&format!("/api/v1/admin/staff/{support_id}/tokens"),
            &json!({"label": "script"})).await.json()["token"].as_str().unwrap().to_owned();

        // Only staff.manage may change who must use it.
        let r = send_json(&app, Method::PATCH, "/api/v1/admin/settings", Some(&admin),
            Some(json!({"staff_two_factor": "all_staff"}))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"staff_two_factor": "sensitive_roles"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["staff_two_factor"], "sensitive_roles");
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"staff_two_factor": "sometimes"})).await;
        assert_eq!(r.status.as_u16(), 422, "{}", r.text());

        // Support reads customers: without two-factor, every admin route is closed.
        for path in ["/api/v1/admin/me", "/api/v1/admin/products", "/api/v1/admin/customers/c_nobody"] {
            let r = get(&app, path, &support).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text());
            assert_eq!(r.json()["error"], "mfa_setup_required");
        }
        let r = get(&app, "/api/v1/admin/me", &admin).await;
        assert_eq!(r.json()["error"], "mfa_setup_required");
        // Catalog staff hold no sensitive permission.
        assert_eq!(get(&app, "/api/v1/admin/products", &catalog).await.status, StatusCode::OK);
        // API tokens are for tools, not sign-ins.
        assert_eq!(get(&app, "/api/v1/admin/products", &support_api).await.status, StatusCode::OK);

        // Setting it up stays open; confirming it from this session opens this session.
        let status = get(&app, "/api/v1/staff/me/mfa", &support).await.json();
        assert_eq!(status["required"], true, "{status}");
        let (secret, _) = enrol(&app, &support).await;
        assert_eq!(get(&app, "/api/v1/admin/products", &support).await.status, StatusCode::OK);
        // The session signed in on another device before, without the factor: refused,
        // on the staff member's own routes too; signing out still works.
        let r = get(&app, "/api/v1/admin/products", &support_other_device).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        assert_eq!(r.json()["error"], "mfa_required");
        let r = get(&app, "/api/v1/staff/me/sessions", &support_other_device).await;
        assert_eq!(r.json()["error"], "mfa_required");
        let r = app.request(Method::POST, "/api/v1/staff/sign-out", Some(&support_other_device), None, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        // Signing in again with the factor works.
        let fresh = sign_in_with_code(&app, "sup@shop.example", &secret).await;
        assert_eq!(get(&app, "/api/v1/admin/customers/c_nobody", &fresh).await.status, StatusCode::NOT_FOUND);

        // Every staff member: the catalog session now stops too.
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"staff_two_factor": "all_staff"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = get(&app, "/api/v1/admin/products", &catalog).await;
        assert_eq!(r.json()["error"], "mfa_setup_required", "{}", r.text());
        // Back to optional: it opens again.
        app.admin_patch("/api/v1/admin/settings", &json!({"staff_two_factor": "optional"})).await;
        assert_eq!(get(&app, "/api/v1/admin/products", &catalog).await.status, StatusCode::OK);
        app.stop().await;
    }

    async fn staff_see_and_revoke_their_sessions(backend: Backend) {
        let app = TestApp::start(backend).await;
        let id = create_staff(&app, "support", "ses@shop.example").await;
        // One session signed in from an address, one from another.
        let mut request = Request::builder().method(Method::POST).uri("/api/v1/staff/sign-in")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"email": "ses@shop.example", "password": PASSWORD}).to_string()))
            .unwrap();
        request.extensions_mut().insert(axum::extract::ConnectInfo("203.0.113.7:5000".parse::<SocketAddr>().unwrap()));
        let r = app.send(request).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let first = r.json()["token"].as_str().unwrap().to_owned();
        let second = session(&app, "ses@shop.example").await;

        let r = from_address(&app, Method::GET, "/api/v1/staff/me/sessions", &first, "198.51.100.4:6000").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let listed = r.json();
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(!r.text().contains(&first) && !r.text().contains(&second), "no secrets");
        let mine = listed.iter().find(|s| s["current"] == true).unwrap();
        assert_eq!(mine["created_from"], "203.0.113.7");
        assert_eq!(mine["last_used_from"], "198.51.100.4");
        assert!(mine["last_used_at"].is_string());
        let other = listed.iter().find(|s| s["current"] == false).unwrap();
        assert!(other["last_used_at"].is_null() && other["created_from"].is_null(), "{other}");
        let second_id = other["id"].as_i64().unwrap();
        let first_id = mine["id"].as_i64().unwrap();

        // Last use is written at most once a minute.
        from_address(&app, Method::GET, "/api/v1/admin/me", &first, "192.0.2.9:7000").await;
        let from = scalar_text(&app, "SELECT last_used_from FROM staff_tokens WHERE id = $1", first_id).await;
        assert_eq!(from, ["198.51.100.4"]);
        app.kernel.state.clock.advance(Duration::from_secs(61));
        from_address(&app, Method::GET, "/api/v1/admin/me", &first, "192.0.2.9:7000").await;
        let from = scalar_text(&app, "SELECT last_used_from FROM staff_tokens WHERE id = $1", first_id).await;
        assert_eq!(from, ["192.0.2.9"]);

        // Revoking one: it stops at once; not twice; never another's.
        let r = app.request(Method::DELETE, &format!("/api/v1/staff/me/sessions/{second_id}"), Some(&first), None, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert_eq!(get(&app, "/api/v1/admin/me", &second).await.status, StatusCode::UNAUTHORIZED);
        let r = app.request(Method::DELETE, &format!("/api/v1/staff/me/sessions/{second_id}"), Some(&first), None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = app.request(Method::DELETE, "/api/v1/staff/me/sessions/1", Some(&first), None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "the owner's token is not theirs");
        assert_eq!(app.admin_get("/api/v1/admin/me").await.status, StatusCode::OK);
        assert_eq!(get(&app, "/api/v1/staff/me/sessions", "olv_made-up").await.status, StatusCode::UNAUTHORIZED);

        // The owner ends all of a staff member's sessions at once; others may not.
        let third = session(&app, "ses@shop.example").await;
        let r = post(&app, &format!("/api/v1/admin/staff/{id}/sessions/revoke"), Some(&third), json!({})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        let r = app.admin_post(&format!("/api/v1/admin/staff/{id}/sessions/revoke"), &json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["revoked"], 2);
        for token in [&first, &third] {
            assert_eq!(get(&app, "/api/v1/admin/me", token).await.status, StatusCode::UNAUTHORIZED);
        }
        let r = app.admin_post("/api/v1/admin/staff/999999/sessions/revoke", &json!({})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(audit(&app, "action=staff.session_revoked").await.len(), 1);
        let all = audit(&app, "action=staff.sessions_revoked").await;
        assert_eq!((all.len(), all[0]["after"]["sessions"].as_i64()), (1, Some(2)));
        app.stop().await;
    }
    async fn guessing_codes_meets_the_rate_limiter_before_the_lockout(backend: Backend) {
        let app = TestApp::start_with(backend, |c| {
            c.rate_limit_sign_in_account = olivine::ratelimit::Limit::new(3, 3600);
        })
        .await;
        let id = create_staff(&app, "support", "guess@shop.example").await;
        let token = session(&app, "guess@shop.example").await;
        let (secret, _) = enrol(&app, &token).await;
        let c = challenge(&app, "guess@shop.example").await;
        mid_step(&app);
        // Each answer counts against the staff member's own counter: three wrong codes are
        // refused as wrong, the fourth meets the limiter...
        for _ in 0..3 {
            answer(&app, &c, &wrong_code(&app, &secret)).await.assert_field_error(401, "code");
        }
        let limited = answer(&app, &c, &wrong_code(&app, &secret)).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{}", limited.text());
        assert_eq!(limited.json()["error"], "too_many_requests");
        assert!(limited.headers.contains_key(header::RETRY_AFTER));
        // ... and so does the right code, on the same open challenge.
        let right = answer(&app, &c, &code(&app, &secret, 0)).await;
        assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS, "{}", right.text());
        assert!(right.json().get("token").is_none());
        // The limiter's doing, not the database lockout (10 wrong codes) nor a spent
        // challenge (5): three wrong codes were counted, nothing is locked.
        let failed = audit(&app, "action=staff.mfa_failed").await;
        assert_eq!(failed.len(), 3, "{failed:?}");
        assert!(failed.iter().all(|e| e["after"]["locked"] == false), "{failed:?}");
        let locked = scalar_text(&app, "SELECT locked_until FROM staff_totp WHERE staff_id = $1", id).await;
        assert_eq!(locked, [""], "no lockout");
        let attempts = scalar_text(&app,
            "SELECT CAST(failed_attempts AS TEXT) FROM staff_mfa_challenges WHERE staff_id = $1", id).await;
        assert_eq!(attempts, ["3"]);
        assert_eq!(scalar(&app.kernel.state.db, "SELECT COUNT(*) FROM staff_tokens WHERE kind = 'session' AND revoked_at IS NULL").await, 1,
            "only the session that enrolled");
        app.stop().await;
    }

    async fn api_tokens_are_listed_with_their_use_and_revoked_like_sessions(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.trust_forwarded_for = true).await;
        let id = create_staff(&app, "support", "tools@shop.example").await;
        let session = session(&app, "tools@shop.example").await;
        // The owner makes them a token from behind the proxy; they use it from elsewhere.
        let r = forwarded(&app, Method::POST, &format!("/api/v1/admin/staff/{id}/tokens"), ADMIN_TOKEN,
            "198.51.100.4", Some(json!({"label": "stock sync"}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let api = r.json()["token"].as_str().unwrap().to_owned();
        let api_id = r.json()["id"].as_i64().unwrap();
        let r = forwarded(&app, Method::GET, "/api/v1/admin/me", &api, "10.0.0.1, 192.0.2.9", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());

        let r = get(&app, "/api/v1/staff/me/sessions", &session).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(!r.text().contains(&api), "no secrets");
        let listed = r.json();
        let token = listed.as_array().unwrap().iter().find(|t| t["id"] == api_id).expect("the API token");
        assert_eq!((token["kind"].as_str(), token["label"].as_str(), token["current"].as_bool()),
            (Some("api"), Some("stock sync"), Some(false)), "{token}");
        assert_eq!((token["created_from"].as_str(), token["last_used_from"].as_str()),
            (Some("198.51.100.4"), Some("192.0.2.9")), "{token}");
        assert!(token["last_used_at"].is_string() && token["expires_at"].is_null(), "{token}");

        // Revoked from their own list: it stops working at once.
        let r = app.request(Method::DELETE, &format!("/api/v1/staff/me/sessions/{api_id}"), Some(&session), None, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert_eq!(get(&app, "/api/v1/admin/me", &api).await.status, StatusCode::UNAUTHORIZED);
        let listed = get(&app, "/api/v1/staff/me/sessions", &session).await.json();
        assert!(listed.as_array().unwrap().iter().all(|t| t["id"] != api_id), "{listed}");
        let revoked = audit(&app, "action=staff.session_revoked").await;
        assert_eq!(revoked.len(), 1);
        assert_eq!((revoked[0]["actor"].as_str(), revoked[0]["after"]["token_id"].as_i64()),
            (Some(format!("staff:{id}").as_str()), Some(api_id)));
        app.stop().await;
    }

    async fn the_admin_set_up_page_shows_the_qr_code_and_the_key(backend: Backend) {
        let app = TestApp::start(backend).await;
        create_staff(&app, "catalog", "qr@shop.example").await;
        let mut browser = admin_browser(&app, "qr@shop.example").await;
        let page = "/admin/account/two-factor";
        let r = submit(&app, &mut browser, page, page, &[("step", "start")]).await;
        assert_html(&r, StatusCode::OK);
        let html = r.text();
        // The QR code: an image whose source is the PNG itself.
        let src = attribute_after(&html, "<img class=\"qr\"", "src");
        let png = src.strip_prefix("data:image/png;base64,").unwrap_or_else(|| panic!("a PNG data URI: {src}"));
        let png = base64::engine::general_purpose::STANDARD.decode(png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(!attribute_after(&html, "<img class=\"qr\"", "alt").is_empty());
        // The key beside it, for typing in by hand: the one the codes come from.
        let start = html.find(r#"id="totp-secret">"#).expect("the key") + r#"id="totp-secret">"#.len();
        let secret = html[start..start + html[start..].find('<').unwrap()].to_owned();
        assert_eq!(secret.len(), 32, "{secret}");
        assert!(secret.chars().all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)), "{secret}");
        let csrf = csrf_of(&r);
        mid_step(&app);
        let r = post_form(&app, &mut browser, page,
            &[("csrf", &csrf), ("step", "confirm"), ("code", &code(&app, &secret, 0))]).await;
        assert_html(&r, StatusCode::OK);
        assert!(r.text().contains("recovery-codes"), "{}", r.text());
        app.stop().await;
    }

    async fn the_owner_signs_staff_out_and_resets_their_factor_in_the_admin(backend: Backend) {
        let app = TestApp::start(backend).await;
        let owner_id = create_staff(&app, "owner", "boss@shop.example").await;
        let owner_actor = format!("staff:{owner_id}");
        let id = create_staff(&app, "support", "lost@shop.example").await;
        let first = session(&app, "lost@shop.example").await;
        let (secret, _) = enrol(&app, &first).await;
        let second = sign_in_with_code(&app, "lost@shop.example", &secret).await;

        let mut owner = admin_browser(&app, "boss@shop.example").await;
        let page = format!("/admin/staff/{id}");
        let shown = browse(&app, &mut owner, &page).await;
        assert_html(&shown, StatusCode::OK);
        assert!(shown.text().contains("Sign them out everywhere") && shown.text().contains("Reset their second factor"),
            "{}", shown.text());

        // "Sign them out everywhere": both sessions end; the factor stays.
        let r = press_and_confirm(&app, &mut owner, &page, &format!("{page}/sessions/revoke"),
            "Sign them out everywhere").await;
        assert_eq!(location(&r), format!("{page}?done=signed_out"));
        for token in [&first, &second] {
            assert_eq!(get(&app, "/api/v1/staff/me/mfa", token).await.status, StatusCode::UNAUTHORIZED);
        }
        let done = browse(&app, &mut owner, &location(&r)).await;
        assert!(done.text().contains("Every sign-in session of theirs ended."), "{}", done.text());
        let revoked = audit(&app, "action=staff.sessions_revoked").await;
        assert_eq!(revoked.len(), 1);
        assert_eq!((revoked[0]["actor"].as_str(), revoked[0]["target_id"].as_str(), revoked[0]["after"]["sessions"].as_i64()),
            (Some(owner_actor.as_str()), Some(id.to_string().as_str()), Some(2)), "{:?}", revoked[0]);
        app.kernel.state.clock.advance(Duration::from_secs(30));
        let third = sign_in_with_code(&app, "lost@shop.example", &secret).await;

        // "Reset their second factor": the factor goes, and the session with it.
        let r = press_and_confirm(&app, &mut owner, &page, &format!("{page}/mfa/reset"),
            "Reset their second factor").await;
        assert_eq!(location(&r), format!("{page}?done=factor_reset"));
        assert_eq!(get(&app, "/api/v1/staff/me/mfa", &third).await.status, StatusCode::UNAUTHORIZED);
        let fresh = session(&app, "lost@shop.example").await;
        assert_eq!(get(&app, "/api/v1/staff/me/mfa", &fresh).await.json()["totp"], "off");
        let done = browse(&app, &mut owner, &location(&r)).await;
        assert!(done.text().contains("Their second factor was removed") && !done.text().contains("Reset their second factor"),
            "{}", done.text());
        let reset = audit(&app, "action=staff.factor_reset").await;
        assert_eq!(reset.len(), 1);
        assert_eq!((reset[0]["actor"].as_str(), reset[0]["target_id"].as_str()),
            (Some(owner_actor.as_str()), Some(id.to_string().as_str())));

        // The owner signs out through the admin: audited too.
        let csrf = csrf_of(&browse(&app, &mut owner, &page).await);
        let r = post_form(&app, &mut owner, "/admin/sign-out", &[("csrf", &csrf)]).await;
        assert_eq!(location(&r), "/admin/sign-in");
        let out = audit(&app, "action=staff.signed_out").await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0]["actor"].as_str(), out[0]["after"]["kind"].as_str()),
            (Some(owner_actor.as_str()), Some("session")));
        app.stop().await;
    }
}
