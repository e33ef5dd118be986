//! Passkeys (WebAuthn) as a second factor of staff sign-in, on both backends, against a
//! software authenticator written for these tests: a P-256 key that answers the
//! kernel's options as a browser and an authenticator do (attestation `none` for the
//! registration; authenticator data, client data, an ECDSA signature and a counter for
//! each assertion), so every ceremony runs through `webauthn-rs` for real.

use std::time::Duration;

use crate::common::browser::{Browser, csrf_of, get as browse, location, post_form};
use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha2::Digest as _;

const PASSWORD: &str = "a long enough password";
const ORIGIN: &str = "https://shop.example";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A CBOR header: major type `major`, argument `len`.
fn cbor_head(major: u8, len: usize) -> Vec<u8> {
    let major = major << 5;
    match len {
        0..=23 => vec![major | len as u8],
        24..=255 => vec![major | 24, len as u8],
        _ => {
            let mut head = vec![major | 25];
            head.extend_from_slice(&(len as u16).to_be_bytes());
            head
        }
    }
}

fn cbor_text(text: &str) -> Vec<u8> {
    let mut out = cbor_head(3, text.len());
    out.extend_from_slice(text.as_bytes());
    out
}

fn cbor_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = cbor_head(2, bytes.len());
    out.extend_from_slice(bytes);
    out
}

/// A software authenticator holding one passkey.
struct Authenticator {
    key: SigningKey,
    credential_id: Vec<u8>,
    counter: u32,
    origin: String,
}

impl Authenticator {
    fn new() -> Authenticator {
        Authenticator::for_origin(ORIGIN)
    }

    /// One that answers as if the page were at `origin` (a phishing site's, in a test).
    fn for_origin(origin: &str) -> Authenticator {
        let key = loop {
            let bytes: [u8; 32] = rand::random();
            if let Ok(key) = SigningKey::from_slice(&bytes) {
                break key;
            }
        };
        let id: [u8; 16] = rand::random();
        Authenticator {
            key,
            credential_id: id.to_vec(),
            counter: 0,
            origin: origin.to_owned(),
        }
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    /// The COSE key (EC2, ES256, P-256) of the public key.
    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_sec1_point(false);
        let point = point.as_bytes();
        assert_eq!(point.len(), 65);
        let mut out = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        out.extend(cbor_bytes(&point[1..33]));
        out.push(0x22);
        out.extend(cbor_bytes(&point[33..65]));
        out
    }

    /// The answer of `navigator.credentials.create` to `options` (`{"publicKey": …}`).
    fn register(&mut self, options: &Value) -> Value {
        let public_key = &options["publicKey"];
        let rp_id = public_key["rp"]["id"].as_str().expect("rp.id");
        let challenge = public_key["challenge"].as_str().expect("a challenge");
        self.counter += 1;
        let mut auth_data = sha2::Sha256::digest(rp_id.as_bytes()).to_vec();
        // User present, user verified, attested credential data.
        auth_data.push(0x45);
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]);
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend(self.cose_key());
        let mut attestation = vec![0xa3];
        attestation.extend(cbor_text("fmt"));
        attestation.extend(cbor_text("none"));
        attestation.extend(cbor_text("attStmt"));
        attestation.push(0xa0);
        attestation.extend(cbor_text("authData"));
        attestation.extend(cbor_bytes(&auth_data));
        json!({
            "id": b64url(&self.credential_id),
            "rawId": b64url(&self.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": b64url(&attestation),
                "clientDataJSON": b64url(&self.client_data("webauthn.create", challenge)),
            },
            "extensions": {},
        })
    }

    /// The answer of `navigator.credentials.get` to `options`, the counter moved on.
    fn assert(&mut self, options: &Value) -> Value {
        self.counter += 1;
        self.assert_with_counter(options, self.counter)
    }

    /// The answer to `options` with the signature counter at `counter`.
    fn assert_with_counter(&self, options: &Value, counter: u32) -> Value {
        let public_key = &options["publicKey"];
        let rp_id = public_key["rpId"].as_str().expect("rpId");
        let challenge = public_key["challenge"].as_str().expect("a challenge");
        let mut auth_data = sha2::Sha256::digest(rp_id.as_bytes()).to_vec();
        // User present, user verified.
        auth_data.push(0x05);
        auth_data.extend_from_slice(&counter.to_be_bytes());
        let client_data = self.client_data("webauthn.get", challenge);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&sha2::Sha256::digest(&client_data));
        let signature: Signature = self.key.sign(&signed);
        json!({
            "id": b64url(&self.credential_id),
            "rawId": b64url(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64url(&auth_data),
                "clientDataJSON": b64url(&client_data),
                "signature": b64url(signature.to_der().as_bytes()),
            },
            "extensions": {},
        })
    }
}

async fn send_json(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> TestResponse {
    app.request(
        method,
        path,
        token,
        Some(Body::from(body.to_string())),
        Some("application/json"),
    )
    .await
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> TestResponse {
    send_json(app, Method::POST, path, token, body).await
}

async fn get(app: &TestApp, path: &str, token: &str) -> TestResponse {
    app.request(Method::GET, path, Some(token), None, None)
        .await
}

async fn start_app(backend: Backend) -> TestApp {
    TestApp::start_with(backend, |c| c.public_url = Some(ORIGIN.to_owned())).await
}

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

async fn sign_in(app: &TestApp, email: &str) -> Value {
    let r = post(
        app,
        "/api/v1/staff/sign-in",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

/// A session of a staff member without a second factor.
async fn session(app: &TestApp, email: &str) -> String {
    let body = sign_in(app, email).await;
    body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("a session token: {body}"))
        .to_owned()
}

/// Registers `authenticator`'s passkey from `token`'s session: its id.
async fn register(
    app: &TestApp,
    token: &str,
    authenticator: &mut Authenticator,
    name: &str,
) -> i64 {
    let r = post(
        app,
        "/api/v1/staff/me/mfa/passkeys/start",
        Some(token),
        json!({}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let credential = authenticator.register(&r.json()["options"]);
    let r = post(
        app,
        "/api/v1/staff/me/mfa/passkeys",
        Some(token),
        json!({"name": name, "credential": credential}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_i64().unwrap()
}

/// The password's challenge, and the passkey options opened for it.
async fn passkey_challenge(app: &TestApp, email: &str) -> (String, Value) {
    let body = sign_in(app, email).await;
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(
        body["methods"]
            .as_array()
            .unwrap()
            .contains(&json!("passkey")),
        "{body}"
    );
    let challenge = body["challenge"].as_str().unwrap().to_owned();
    let options = passkey_options(app, &challenge).await;
    (challenge, options)
}

async fn passkey_options(app: &TestApp, challenge: &str) -> Value {
    let r = post(
        app,
        "/api/v1/staff/sign-in/mfa/passkey",
        None,
        json!({"challenge": challenge}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["options"].clone()
}

async fn answer(app: &TestApp, challenge: &str, assertion: &Value) -> TestResponse {
    post(
        app,
        "/api/v1/staff/sign-in/mfa",
        None,
        json!({"challenge": challenge, "passkey": assertion}),
    )
    .await
}

/// Signs in with the password and the passkey: the session token.
async fn sign_in_with_passkey(
    app: &TestApp,
    email: &str,
    authenticator: &mut Authenticator,
) -> String {
    let (challenge, options) = passkey_challenge(app, email).await;
    let r = answer(app, &challenge, &authenticator.assert(&options)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.admin_get(&format!("/api/v1/admin/audit?{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["entries"].as_array().unwrap().clone()
}

/// Turns on an authenticator app from `token`'s session: its secret.
async fn enrol_totp(app: &TestApp, token: &str) -> String {
    let r = post(app, "/api/v1/staff/me/mfa/totp", Some(token), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let secret = r.json()["secret"].as_str().unwrap().to_owned();
    let now = app.kernel.state.clock.now().timestamp();
    let code = olivine::staff::mfa::code_at(&secret, u64::try_from(now).unwrap()).unwrap();
    let r = post(
        app,
        "/api/v1/staff/me/mfa/totp/confirm",
        Some(token),
        json!({"code": code}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    app.kernel.state.clock.advance(Duration::from_secs(30));
    secret
}

/// The value of attribute `name` of the first element carrying it, as the browser reads
/// it (maud's escapes undone).
#[track_caller]
fn attribute(html: &str, name: &str) -> String {
    let marker = format!(r#"{name}=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Signs in to the admin with the password: the response (the second step, or the
/// redirect of a session).
async fn admin_sign_in(app: &TestApp, browser: &mut Browser, email: &str) -> TestResponse {
    let page = browse(app, browser, "/admin/sign-in").await;
    let csrf = csrf_of(&page);
    post_form(
        app,
        browser,
        "/admin/sign-in",
        &[("csrf", &csrf), ("email", email), ("password", PASSWORD)],
    )
    .await
}

both_backends! {
    async fn the_admin_adds_a_passkey_signs_in_with_it_and_removes_it(backend: Backend) {
        let app = start_app(backend).await;
        create_staff(&app, "catalog", "web@shop.example").await;
        let mut browser = Browser::default();
        let r = admin_sign_in(&app, &mut browser, "web@shop.example").await;
        assert_eq!(location(&r), "/admin");

        // The two-factor page offers a passkey; the start answers the form the script
        // answers, with the kernel's options and the script pinned by its hash.
        let page = browse(&app, &mut browser, "/admin/account/two-factor").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(page.text().contains("Add a passkey"), "{}", page.text());
        let csrf = csrf_of(&page);
        let r = post_form(&app, &mut browser, "/admin/account/two-factor",
            &[("csrf", &csrf), ("step", "passkey-start"), ("name", "")]).await;
        assert_eq!(r.status.as_u16(), 422, "a name is needed: {}", r.text());
        let r = post_form(&app, &mut browser, "/admin/account/two-factor",
            &[("csrf", &csrf), ("step", "passkey-start"), ("name", "Laptop")]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let html = r.text();
        let options: Value = serde_json::from_str(&attribute(&html, "data-passkey-options")).unwrap();
        assert_eq!(options["publicKey"]["rp"]["id"], "shop.example", "{options}");
        let script = attribute(&html, "src");
        let integrity = attribute(&html, "integrity");
        assert!(script.starts_with("/admin/assets/passkeys.") && script.ends_with(".js"), "{script}");
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self';"), "no inline script needed: {csp}");
        let served = app.get(&script).await;
        assert_eq!(served.status, StatusCode::OK);
        assert!(served.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
        let digest = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&served.body));
        assert_eq!(integrity, format!("sha256-{digest}"), "the served script is the one pinned");

        let mut key = Authenticator::new();
        let credential = key.register(&options).to_string();
        let csrf = csrf_of(&r);
        let r = post_form(&app, &mut browser, "/admin/account/two-factor",
            &[("csrf", &csrf), ("step", "passkey-finish"), ("name", "Laptop"), ("credential", &credential)]).await;
        assert_eq!(location(&r), "/admin/account/two-factor#passkeys");
        let page = browse(&app, &mut browser, "/admin/account/two-factor").await;
        assert!(page.text().contains("Laptop"), "{}", page.text());

        // Signing in again: the second step offers the passkey (no app: no code field).
        let mut other = Browser::default();
        let r = admin_sign_in(&app, &mut other, "web@shop.example").await;
        assert_eq!(r.status, StatusCode::OK, "the second step: {}", r.text());
        let html = r.text();
        assert!(html.contains(r#"data-passkey="get""#) && !html.contains(r#"name="code""#), "{html}");
        let options: Value = serde_json::from_str(&attribute(&html, "data-passkey-options")).unwrap();
        let challenge = attribute(&html, r#"name="challenge" value"#);
        let csrf = csrf_of(&r);
        // A refused answer comes back to the step, saying why.
        let stranger = Authenticator::new().assert(&options).to_string();
        let r = post_form(&app, &mut other, "/admin/sign-in/two-factor",
            &[("csrf", &csrf), ("challenge", &challenge), ("credential", &stranger)]).await;
        assert_eq!(r.status.as_u16(), 422, "{}", r.text());
        assert!(r.text().contains("does not check out"), "{}", r.text());
        let options: Value = serde_json::from_str(&attribute(&r.text(), "data-passkey-options")).unwrap();
        let assertion = key.assert(&options).to_string();
        let r = post_form(&app, &mut other, "/admin/sign-in/two-factor",
            &[("csrf", &csrf), ("challenge", &challenge), ("credential", &assertion)]).await;
        assert_eq!(location(&r), "/admin");
        assert!(other.has("olv_staff"));
        assert_eq!(browse(&app, &mut other, "/admin/products").await.status, StatusCode::OK);

        // Removing it takes the password.
        let page = browse(&app, &mut browser, "/admin/account/two-factor").await;
        let csrf = csrf_of(&page);
        let id = attribute(&page.text(), r#"name="passkey_id" value"#);
        let r = post_form(&app, &mut browser, "/admin/account/two-factor",
            &[("csrf", &csrf), ("step", "passkey-remove"), ("passkey_id", &id), ("password", "not the password!")]).await;
        assert_eq!(r.status.as_u16(), 422, "{}", r.text());
        assert!(r.text().contains("The password is wrong"), "{}", r.text());
        assert!(r.text().contains("Laptop"), "still there");
        let r = post_form(&app, &mut browser, "/admin/account/two-factor",
            &[("csrf", &csrf), ("step", "passkey-remove"), ("passkey_id", &id), ("password", PASSWORD)]).await;
        assert_eq!(location(&r), "/admin/account/two-factor#passkeys");
        assert_eq!(app.count("staff_passkeys").await, 0);
        app.stop().await;
    }

    async fn a_passkey_registers_then_answers_the_sign_in_challenge(backend: Backend) {
        let app = start_app(backend).await;
        let id = create_staff(&app, "support", "ana@shop.example").await;
        let token = session(&app, "ana@shop.example").await;
        let r = get(&app, "/api/v1/staff/me/mfa/passkeys", &token).await;
        assert_eq!((r.status, r.json()), (StatusCode::OK, json!([])));

        // The options name the store as relying party, ask for user verification and
        // say nothing of the staff member but their email and name.
        let r = post(&app, "/api/v1/staff/me/mfa/passkeys/start", Some(&token), json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let options = r.json()["options"].clone();
        let public_key = &options["publicKey"];
        assert_eq!(public_key["rp"]["id"], "shop.example", "{options}");
        assert_eq!(public_key["user"]["name"], "ana@shop.example");
        assert_eq!(public_key["authenticatorSelection"]["userVerification"], "required", "{options}");
        assert_eq!(public_key["attestation"], "none");

        // Bad answers: the name, a credential that is not one, one made for another
        // site. The last one took the ceremony: the next answer needs a new start.
        let mut key = Authenticator::new();
        let credential = key.register(&options);
        post(&app, "/api/v1/staff/me/mfa/passkeys", Some(&token), json!({"name": " ", "credential": credential})).await
            .assert_field_error(422, "name");
        post(&app, "/api/v1/staff/me/mfa/passkeys", Some(&token), json!({"name": "Key", "credential": {"id": 1}})).await
            .assert_field_error(422, "credential");
        let phished = Authenticator::for_origin("https://shop.example.evil").register(&options);
        post(&app, "/api/v1/staff/me/mfa/passkeys", Some(&token), json!({"name": "Key", "credential": phished})).await
            .assert_field_error(422, "credential");
        let r = post(&app, "/api/v1/staff/me/mfa/passkeys", Some(&token), json!({"name": "Key", "credential": credential})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "the ceremony is spent: {}", r.text());

        let passkey_id = register(&app, &token, &mut key, "YubiKey").await;
        let listed = get(&app, "/api/v1/staff/me/mfa/passkeys", &token).await.json();
        assert_eq!(listed[0]["id"], passkey_id);
        assert_eq!(listed[0]["name"], "YubiKey");
        assert!(listed[0]["last_used_at"].is_null(), "{listed}");
        let status = get(&app, "/api/v1/staff/me/mfa", &token).await.json();
        assert_eq!((status["passkeys"].as_i64(), status["totp"].as_str()), (Some(1), Some("off")), "{status}");
        assert_eq!(status["session_second_factor"], "passkey", "registering proved it: {status}");

        // Sign-in now answers a challenge taking the passkey alone (no app set up).
        let body = sign_in(&app, "ana@shop.example").await;
        assert_eq!(body["methods"], json!(["passkey"]), "{body}");
        assert!(body.get("token").is_none(), "{body}");
        let challenge = body["challenge"].as_str().unwrap().to_owned();
        let options = passkey_options(&app, &challenge).await;
        assert_eq!(options["publicKey"]["rpId"], "shop.example", "{options}");
        assert_eq!(options["publicKey"]["allowCredentials"][0]["id"], b64url(&key.credential_id), "{options}");
        let assertion = key.assert(&options);
        let r = answer(&app, &challenge, &assertion).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let signed_in = r.json()["token"].as_str().unwrap().to_owned();
        assert_eq!(get(&app, "/api/v1/admin/me", &signed_in).await.status, StatusCode::OK);
        let mine = get(&app, "/api/v1/staff/me/mfa", &signed_in).await.json();
        assert_eq!(mine["session_second_factor"], "passkey", "{mine}");
        let listed = get(&app, "/api/v1/staff/me/mfa/passkeys", &token).await.json();
        assert!(listed[0]["last_used_at"].is_string(), "{listed}");

        // The same assertion again: the challenge is used; on a new challenge, it
        // answers another ceremony's challenge.
        answer(&app, &challenge, &assertion).await.assert_field_error(401, "challenge");
        let (challenge, _options) = passkey_challenge(&app, "ana@shop.example").await;
        answer(&app, &challenge, &assertion).await.assert_field_error(401, "passkey");
        // An answer to options replaced by asking again, on the same challenge.
        let first = passkey_options(&app, &challenge).await;
        let second = passkey_options(&app, &challenge).await;
        answer(&app, &challenge, &key.assert(&first)).await.assert_field_error(401, "passkey");
        // Each ceremony answers once: the refused answer took it.
        answer(&app, &challenge, &key.assert(&second)).await.assert_field_error(401, "passkey");
        // A key that was never registered, answering its options.
        let options = passkey_options(&app, &challenge).await;
        let stranger = Authenticator::new().assert(&options);
        answer(&app, &challenge, &stranger).await.assert_field_error(401, "passkey");
        // The stranger's answer took the ceremony too: the fifth wrong answer, which
        // spends the challenge.
        answer(&app, &challenge, &key.assert(&options)).await.assert_field_error(401, "passkey");
        post(&app, "/api/v1/staff/sign-in/mfa/passkey", None, json!({"challenge": challenge})).await
            .assert_field_error(401, "challenge");

        // A counter that goes back: a cloned authenticator.
        let (challenge, options) = passkey_challenge(&app, "ana@shop.example").await;
        let cloned = key.assert_with_counter(&options, 1);
        answer(&app, &challenge, &cloned).await.assert_field_error(401, "passkey");
        let options = passkey_options(&app, &challenge).await;
        let r = answer(&app, &challenge, &key.assert(&options)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());

        // Not a credential at all: 422, without counting.
        let (challenge, _) = passkey_challenge(&app, "ana@shop.example").await;
        answer(&app, &challenge, &json!({"id": "x"})).await.assert_field_error(422, "passkey");
        post(&app, "/api/v1/staff/sign-in/mfa", None, json!({"challenge": challenge, "passkey": {}, "code": "123456"})).await
            .assert_field_error(422, "passkey");
        post(&app, "/api/v1/staff/sign-in/mfa/passkey", None, json!({"challenge": "olvc_made-up"})).await
            .assert_field_error(401, "challenge");
        // A code for a staff member without an app: the challenge takes none.
        post(&app, "/api/v1/staff/sign-in/mfa", None, json!({"challenge": challenge, "code": "123456"})).await
            .assert_field_error(401, "challenge");

        let added = audit(&app, "action=staff.factor_added").await;
        assert_eq!(added.len(), 1);
        assert_eq!((added[0]["after"]["factor"].as_str(), added[0]["after"]["name"].as_str()), (Some("passkey"), Some("YubiKey")));
        let signed = audit(&app, "action=staff.signed_in").await;
        assert_eq!(signed[0]["after"]["factors"], json!(["password", "passkey"]), "{signed:?}");
        let failed = audit(&app, "action=staff.mfa_failed&limit=20").await;
        assert_eq!(failed.len(), 6, "{failed:?}");
        let target = id.to_string();
        assert!(failed.iter().all(|e| e["after"]["method"] == "passkey" && e["target_id"] == target.as_str()), "{failed:?}");
        // Nothing of the ceremony is left behind.
        assert_eq!(app.count("staff_passkey_ceremonies").await, 1, "the last challenge's");
        app.stop().await;
    }

    async fn removing_a_passkey_removes_it_as_a_method(backend: Backend) {
        let app = start_app(backend).await;
        let id = create_staff(&app, "catalog", "cat@shop.example").await;
        let other = create_staff(&app, "catalog", "other@shop.example").await;
        let token = session(&app, "cat@shop.example").await;
        let mut key = Authenticator::new();
        let passkey_id = register(&app, &token, &mut key, "Laptop").await;
        // The same authenticator twice: excluded by the options, refused if it answers.
        let r = post(&app, "/api/v1/staff/me/mfa/passkeys/start", Some(&token), json!({})).await;
        let options = r.json()["options"].clone();
        assert_eq!(options["publicKey"]["excludeCredentials"][0]["id"], b64url(&key.credential_id), "{options}");
        let again = key.register(&options);
        let r = post(&app, "/api/v1/staff/me/mfa/passkeys", Some(&token), json!({"name": "Again", "credential": again})).await;
        assert!(matches!(r.status.as_u16(), 409 | 422), "{}", r.text());

        // With an authenticator app too, the challenge takes either.
        enrol_totp(&app, &token).await;
        assert_eq!(sign_in(&app, "cat@shop.example").await["methods"], json!(["totp", "recovery_code", "passkey"]));

        // Removing takes the password; another's passkey is not found; an API token
        // cannot.
        let other_token = session(&app, "other@shop.example").await;
        let other_key = register(&app, &other_token, &mut Authenticator::new(), "Theirs").await;
        let path = format!("/api/v1/staff/me/mfa/passkeys/{passkey_id}");
        send_json(&app, Method::DELETE, &path, Some(&token), json!({"password": "not the password!"})).await
            .assert_field_error(401, "password");
        let r = send_json(&app, Method::DELETE, &format!("/api/v1/staff/me/mfa/passkeys/{other_key}"), Some(&token),
            json!({"password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
        let api = app.admin_post(&format!("/api/v1/admin/staff/{id}/tokens"), &json!({"label": "script"})).await;
        let api = api.json()["token"].as_str().unwrap().to_owned();
        let r = send_json(&app, Method::DELETE, &path, Some(&api), json!({"password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        let r = send_json(&app, Method::DELETE, &path, Some(&token), json!({"password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert_eq!(get(&app, "/api/v1/staff/me/mfa/passkeys", &token).await.json(), json!([]));
        assert_eq!(sign_in(&app, "cat@shop.example").await["methods"], json!(["totp", "recovery_code"]));

        // The other staff member's passkey: the owner's reset removes it, and sign-in
        // takes the password alone again.
        let r = app.admin_post(&format!("/api/v1/admin/staff/{other}/mfa/reset"), &json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(sign_in(&app, "other@shop.example").await["token"].is_string());
        assert_eq!(app.count("staff_passkeys").await, 0);

        let removed = audit(&app, "action=staff.factor_removed").await;
        assert_eq!(removed.len(), 1);
        assert_eq!((removed[0]["after"]["factor"].as_str(), removed[0]["target_id"].as_str()), (Some("passkey"), Some(id.to_string().as_str())));
        let reset = audit(&app, "action=staff.factor_reset").await;
        assert_eq!(reset[0]["after"]["passkeys_removed"], 1, "{reset:?}");
        app.stop().await;
    }

    async fn a_passkey_meets_the_owners_policy(backend: Backend) {
        let app = start_app(backend).await;
        create_staff(&app, "support", "sup@shop.example").await;
        let support = session(&app, "sup@shop.example").await;
        let other_device = session(&app, "sup@shop.example").await;
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"staff_two_factor": "sensitive_roles"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = get(&app, "/api/v1/admin/products", &support).await;
        assert_eq!(r.json()["error"], "mfa_setup_required", "{}", r.text());
        // A passkey is a second factor: setting one up opens this session ...
        let mut key = Authenticator::new();
        register(&app, &support, &mut key, "Phone").await;
        assert_eq!(get(&app, "/api/v1/admin/products", &support).await.status, StatusCode::OK);
        // ... not the one signed in elsewhere without it ...
        let r = get(&app, "/api/v1/admin/products", &other_device).await;
        assert_eq!(r.json()["error"], "mfa_required", "{}", r.text());
        // ... and signing in with it opens the admin.
        let fresh = sign_in_with_passkey(&app, "sup@shop.example", &mut key).await;
        assert_eq!(get(&app, "/api/v1/admin/customers/c_nobody", &fresh).await.status, StatusCode::NOT_FOUND);
        app.stop().await;
    }

    async fn passkeys_need_a_public_address_with_a_domain_name(backend: Backend) {
        // The tests' default public address is an IP address, where browsers offer no
        // passkey: every passkey route says so.
        let app = TestApp::start(backend).await;
        create_staff(&app, "catalog", "ip@shop.example").await;
        let token = session(&app, "ip@shop.example").await;
        let r = post(&app, "/api/v1/staff/me/mfa/passkeys/start", Some(&token), json!({})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        assert!(r.json()["message"].as_str().unwrap().contains("OLIVINE_PUBLIC_URL"), "{}", r.text());
        // Finishing what was never started.
        let app_domain = start_app(backend).await;
        create_staff(&app_domain, "catalog", "d@shop.example").await;
        let token = session(&app_domain, "d@shop.example").await;
        let credential = Authenticator::new().register(&json!({"publicKey": {"rp": {"id": "shop.example"}, "challenge": "AAAA"}}));
        let r = post(&app_domain, "/api/v1/staff/me/mfa/passkeys", Some(&token), json!({"name": "Key", "credential": credential})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        // A ceremony waits five minutes on the kernel's clock.
        let r = post(&app_domain, "/api/v1/staff/me/mfa/passkeys/start", Some(&token), json!({})).await;
        let mut key = Authenticator::new();
        let credential = key.register(&r.json()["options"]);
        app_domain.kernel.state.clock.advance(Duration::from_secs(5 * 60 + 1));
        let r = post(&app_domain, "/api/v1/staff/me/mfa/passkeys", Some(&token), json!({"name": "Key", "credential": credential})).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
        app_domain.stop().await;
        app.stop().await;
    }
}
