//! Single sign-on for staff with an OpenID Connect provider, against a small provider
//! the tests start (`common::oidc_provider`): a sign-in makes a session with the role the
//! groups map to, linked by verified email or a new staff member; roles follow the groups
//! at each sign-in; forged, foreign, expired, replayed or unsigned ID tokens, a state
//! that is not this browser's, a group that maps to nothing, a disabled staff member and
//! an account removed at the provider make no session; the owner's settings are
//! validated, write-only for the secret, and audited.

use std::time::Duration;

use crate::common::browser::{Browser, csrf_of, get as browse, location, post_form, set_cookie};
use crate::common::oidc_provider::{Account, CLIENT_ID, CLIENT_SECRET, MockOidc, Tweak};
use crate::common::*;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

const SETTINGS: &str = "/api/v1/admin/staff/sso";
const START: &str = "/api/v1/staff/sso/start";
const CALLBACK: &str = "/api/v1/staff/sso/callback";
const PASSWORD: &str = "a long enough password";

fn settings_body(provider: &MockOidc) -> Value {
    json!({
        "display_name": "Test IdP",
        "issuer_url": provider.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "role_mapping": [
            {"group": "store-admins", "role": "admin"},
            {"group": "store-support", "role": "support"},
        ],
    })
}

/// A kernel with single sign-on set up against a new provider.
async fn set_up(backend: Backend) -> (TestApp, MockOidc) {
    let app = TestApp::start(backend).await;
    let provider = MockOidc::start(app.kernel.state.clock.clone()).await;
    let r = app
        .admin_send(Method::PUT, SETTINGS, &settings_body(&provider))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    (app, provider)
}

/// Starts a sign-in in `browser`: answers the provider's authorization URL.
async fn start(app: &TestApp, browser: &mut Browser, query: &str) -> String {
    let r = browse(app, browser, &format!("{START}?{query}")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let cookie = set_cookie(&r, "olv_sso");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/api/v1/staff/sso"),
        "{cookie}"
    );
    location(&r)
}

/// `subject` signs in at the provider from a new browser; answers the callback's answer.
async fn sign_in(app: &TestApp, provider: &MockOidc, subject: &str) -> TestResponse {
    let mut browser = Browser::default();
    let authorize_url = start(app, &mut browser, "answer=json").await;
    let back = provider.authorize(&authorize_url, subject);
    browse(app, &mut browser, &format!("{CALLBACK}?{back}")).await
}

/// A sign-in that makes a session: answers the session's JSON.
async fn signed_in(app: &TestApp, provider: &MockOidc, subject: &str) -> Value {
    let r = sign_in(app, provider, subject).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

#[track_caller]
fn assert_refused(r: &TestResponse, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    assert_eq!(r.json()["error"], code, "{}", r.text());
    assert!(r.json().get("token").is_none());
}

async fn audit(app: &TestApp, action: &str) -> Vec<Value> {
    let r = app
        .admin_get(&format!("/api/v1/admin/audit?action={action}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["entries"].as_array().unwrap().clone()
}

async fn sessions(app: &TestApp) -> i64 {
    scalar(
        &app.kernel.state.db,
        "SELECT COUNT(*) FROM staff_tokens WHERE kind = 'session'",
    )
    .await
}

/// A password sign-in at the API.
async fn password_sign_in(app: &TestApp, email: &str, password: &str) -> TestResponse {
    app.request(
        Method::POST,
        "/api/v1/staff/sign-in",
        None,
        Some(axum::body::Body::from(
            json!({"email": email, "password": password}).to_string(),
        )),
        Some("application/json"),
    )
    .await
}

async fn staff_role(app: &TestApp, id: i64) -> String {
    let r = app.admin_get(&format!("/api/v1/admin/staff/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["role"].as_str().unwrap().to_owned()
}

both_backends! {
    async fn a_sign_in_makes_a_session_with_the_mapped_role(backend: Backend) {
        let (app, provider) = set_up(backend).await;
        provider.add_account(Account::new("u-ana", "Ana@Shop.example", &["other", "store-support"]));

        let r = sign_in(&app, &provider, "u-ana").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let header = |name: &str| r.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!((header("cache-control").as_deref(), header("referrer-policy").as_deref()),
            (Some("no-store"), Some("no-referrer")));
        let session = r.json();
        let token = session["token"].as_str().unwrap().to_owned();
        assert_eq!(session["token_type"], "Bearer");
        let staff = &session["staff"];
        assert_eq!((staff["email"].as_str(), staff["role"].as_str(), staff["has_password"].as_bool()),
            (Some("ana@shop.example"), Some("support"), Some(false)), "{session}");
        // The same session as a password's: the admin API takes it, with the role's permissions.
        let me = app.request(Method::GET, "/api/v1/admin/me", Some(&token), None, None).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text());
        assert_eq!(me.json()["id"], staff["id"]);
        let staff_list = app.request(Method::GET, "/api/v1/admin/staff", Some(&token), None, None).await;
        assert_eq!(staff_list.status, StatusCode::FORBIDDEN, "support lacks staff.manage");
        let listed = app.request(Method::GET, "/api/v1/staff/me/sessions", Some(&token), None, None).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
        let listed = listed.json();
        let current = listed.as_array().unwrap().iter().find(|s| s["current"] == true).expect("this session");
        assert_eq!((current["signed_in_via"].as_str(), current["second_factor"].as_str()),
            (Some("sso"), None), "{listed}");

        // The provider's authentication counts for the store's two-factor policy.
        let r = app.admin_patch("/api/v1/admin/settings", &json!({"staff_two_factor": "all_staff"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let me = app.request(Method::GET, "/api/v1/admin/me", Some(&token), None, None).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text());

        let created = audit(&app, "staff.created").await;
        let staff_id = staff["id"].as_i64().unwrap().to_string();
        assert!(created.iter().any(|e| e["after"]["via"] == "sso" && e["target_id"].as_str() == Some(&staff_id)),
            "{created:?}");
        let linked = audit(&app, "staff.sso_linked").await;
        assert_eq!(linked.len(), 1, "{linked:?}");
        assert_eq!((linked[0]["after"]["subject"].as_str(), linked[0]["after"]["created"].as_bool()),
            (Some("u-ana"), Some(true)));
        let signed = audit(&app, "staff.signed_in").await;
        assert_eq!(signed.len(), 1, "{signed:?}");
        assert_eq!(signed[0]["after"]["factors"], json!(["sso"]));

        // A second sign-in is the same staff member, not a new one.
        let again = signed_in(&app, &provider, "u-ana").await;
        assert_eq!(again["staff"]["id"], staff["id"]);
        assert_ne!(again["token"], session["token"]);
        assert_eq!(audit(&app, "staff.sso_linked").await.len(), 1);
    }

    async fn a_first_sign_in_links_the_staff_member_with_the_verified_email(backend: Backend) {
        let (app, provider) = set_up(backend).await;
        let r = app.admin_post("/api/v1/admin/staff",
            &json!({"email": "bo@shop.example", "name": "Bo", "role": "catalog", "password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let bo = r.json()["id"].as_i64().unwrap();
        let mut unverified = Account::new("u-bo-unverified", "bo@shop.example", &["store-admins"]);
        unverified.email_verified = false;
        provider.add_account(unverified);
        provider.add_account(Account::new("u-bo", "bo@shop.example", &["store-admins"]));

        // An email the provider does not vouch for links nothing.
        let r = sign_in(&app, &provider, "u-bo-unverified").await;
        assert_refused(&r, 403, "sso_email_not_verified");
        assert_eq!(staff_role(&app, bo).await, "catalog");

        let session = signed_in(&app, &provider, "u-bo").await;
        assert_eq!(session["staff"]["id"], bo, "linked, not a new staff member");
        assert_eq!(session["staff"]["role"], "admin", "the groups set the role");
        assert_eq!(session["staff"]["has_password"], true);
        let linked = audit(&app, "staff.sso_linked").await;
        assert_eq!(linked.len(), 1, "{linked:?}");
        assert_eq!(linked[0]["after"]["created"], false);
        let synced = audit(&app, "staff.sso_role_synced").await;
        assert_eq!((synced[0]["before"]["role"].as_str(), synced[0]["after"]["role"].as_str()),
            (Some("catalog"), Some("admin")));
        // Entra ID sends no `email_verified`; its `xms_edov` vouches for the email.
        let mut entra = Account::new("u-kim", "kim@shop.example", &["store-support"]);
        entra.email_verified = false;
        entra.extra_claims.insert("xms_edov".to_owned(), json!(true));
        provider.add_account(entra);
        assert_eq!(signed_in(&app, &provider, "u-kim").await["staff"]["email"], "kim@shop.example");

        // Another account at the provider with the same email cannot take the staff member.
        let mut second = Account::new("u-bo-2", "bo@shop.example", &["store-admins"]);
        second.name = "Impostor".to_owned();
        provider.add_account(second);
        let r = sign_in(&app, &provider, "u-bo-2").await;
        assert_refused(&r, 403, "sso_linked_to_another_account");
    }

    async fn roles_follow_the_groups_and_an_unknown_group_is_no_access(backend: Backend) {
        let (app, provider) = set_up(backend).await;
        provider.add_account(Account::new("u-cy", "cy@shop.example", &["store-support"]));
        let first = signed_in(&app, &provider, "u-cy").await;
        let id = first["staff"]["id"].as_i64().unwrap();
        assert_eq!(first["staff"]["role"], "support");

        provider.set_groups("u-cy", &["store-support", "store-admins"]);
        let second = signed_in(&app, &provider, "u-cy").await;
        assert_eq!(second["staff"]["role"], "admin", "the first mapping line that matches");
        assert_eq!(staff_role(&app, id).await, "admin");

        provider.set_groups("u-cy", &["marketing"]);
        let before = sessions(&app).await;
        let r = sign_in(&app, &provider, "u-cy").await;
        assert_refused(&r, 403, "sso_no_access");
        assert_eq!(sessions(&app).await, before);
        let refused = audit(&app, "staff.sso_refused").await;
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0]["after"]["reason"], "no_mapped_group");
        assert_eq!(refused[0]["target_id"], id.to_string());

        // Someone new in no mapped group: no staff member is made.
        provider.add_account(Account::new("u-dee", "dee@shop.example", &["marketing"]));
        let staff_before = app.count("staff_users").await;
        let r = sign_in(&app, &provider, "u-dee").await;
        assert_refused(&r, 403, "sso_no_access");
        assert_eq!(app.count("staff_users").await, staff_before);

        // The store's only owner, in a group that maps to admin, stays owner: single
        // sign-on never leaves the store without one.
        provider.add_account(Account::new("u-owner", "owner@olivine.local", &["store-admins"]));
        let owner = signed_in(&app, &provider, "u-owner").await;
        assert_eq!((owner["staff"]["id"].as_i64(), owner["staff"]["role"].as_str()), (Some(1), Some("owner")));
    }

    async fn id_tokens_that_do_not_verify_are_refused(backend: Backend) {
        let (app, provider) = set_up(backend).await;
        provider.add_account(Account::new("u-eve", "eve@shop.example", &["store-admins"]));
        let staff_before = app.count("staff_users").await;
        let tweaks = [Tweak::BadSignature, Tweak::OtherAudience, Tweak::Expired,
            Tweak::WrongNonce, Tweak::AlgNone, Tweak::OtherIssuer];
        for tweak in tweaks {
            provider.set_tweak(tweak);
            let r = sign_in(&app, &provider, "u-eve").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{tweak:?}: {}", r.text());
            r.assert_field_error(401, "code");
        }
        assert_eq!(sessions(&app).await, 0);
        assert_eq!(app.count("staff_users").await, staff_before);
        let refused = audit(&app, "staff.sso_refused").await;
        assert_eq!(refused.len(), tweaks.len(), "{refused:?}");
        // Each for its own fault (the log is newest first).
        let expected = ["Signature verification failed", "Invalid audiences", "Expired",
            "nonce mismatch", "Signature verification failed", "Invalid issuer"];
        for (entry, fault) in refused.iter().rev().zip(expected) {
            assert_eq!(entry["after"]["reason"], "id_token_invalid", "{entry}");
            assert!(entry["after"]["detail"].as_str().unwrap().contains(fault), "{fault}: {entry}");
        }

        // The same sign-in with a sound token works: the refusals were the tokens'.
        provider.set_tweak(Tweak::Nothing);
        signed_in(&app, &provider, "u-eve").await;

        // The expiry is judged by the kernel's clock: a token the provider dated an hour
        // ago (its clock moved back) is expired here.
        app.kernel.state.clock.advance(Duration::from_secs(3600));
        let behind = MockOidc::start(olivine::time::Clock::system()).await;
        let r = app.admin_send(Method::PUT, SETTINGS, &settings_body(&behind)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        behind.add_account(Account::new("u-eve", "eve@shop.example", &["store-admins"]));
        let r = sign_in(&app, &behind, "u-eve").await;
        r.assert_field_error(401, "code");
        let last = audit(&app, "staff.sso_refused").await;
        assert!(last[0]["after"]["detail"].as_str().unwrap().starts_with("Expired"), "{}", last[0]);
    }

    async fn the_state_must_be_this_browsers_and_is_used_once(backend: Backend) {
        let (app, provider) = set_up(backend).await;
        provider.add_account(Account::new("u-fay", "fay@shop.example", &["store-support"]));
        let mut browser = Browser::default();
        let authorize_url = start(&app, &mut browser, "").await;
        let back = provider.authorize(&authorize_url, "u-fay");
        let (code_part, state_part) = back.split_once('&').unwrap();
        assert!(code_part.starts_with("code=") && state_part.starts_with("state="), "{back}");

        // Another state: unknown.
        let tampered = format!("{code_part}&state=not-the-state-{}", &state_part[6..]);
        let r = browse(&app, &mut browser, &format!("{CALLBACK}?{tampered}")).await;
        r.assert_field_error(401, "state");
        // No state at all.
        let r = browse(&app, &mut browser, &format!("{CALLBACK}?{code_part}")).await;
        r.assert_field_error(401, "state");
        // The right state from another browser (a link sent to a victim): refused.
        let mut other = Browser::default();
        start(&app, &mut other, "").await;
        let r = browse(&app, &mut other, &format!("{CALLBACK}?{back}")).await;
        r.assert_field_error(401, "state");
        let r = browse(&app, &mut Browser::default(), &format!("{CALLBACK}?{back}")).await;
        r.assert_field_error(401, "state");
        assert_eq!(provider.token_requests(), 0, "nothing goes to the provider before the state checks out");

        let r = browse(&app, &mut browser, &format!("{CALLBACK}?{back}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // Once.
        let r = browse(&app, &mut browser, &format!("{CALLBACK}?{back}")).await;
        r.assert_field_error(401, "state");

        // Ten minutes, by the kernel's clock.
        let authorize_url = start(&app, &mut browser, "").await;
        let back = provider.authorize(&authorize_url, "u-fay");
        app.kernel.state.clock.advance(Duration::from_secs(11 * 60));
        let r = browse(&app, &mut browser, &format!("{CALLBACK}?{back}")).await;
        r.assert_field_error(401, "state");
        assert_eq!(audit(&app, "staff.sso_refused").await.len(), 0, "anyone may call the callback: no audit spam");
    }

    async fn disabled_or_removed_staff_cannot_sign_in(backend: Backend) {
        let (app, provider) = set_up(backend).await;
        provider.add_account(Account::new("u-gil", "gil@shop.example", &["store-support"]));
        let session = signed_in(&app, &provider, "u-gil").await;
        let id = session["staff"]["id"].as_i64().unwrap();

        let r = app.admin_patch(&format!("/api/v1/admin/staff/{id}"), &json!({"disabled": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = sign_in(&app, &provider, "u-gil").await;
        assert_refused(&r, 403, "sso_staff_disabled");
        let r = app.admin_patch(&format!("/api/v1/admin/staff/{id}"), &json!({"disabled": false})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        signed_in(&app, &provider, "u-gil").await;

        // Removed at the provider: it refuses, and so does the store.
        provider.remove_account("u-gil");
        let r = sign_in(&app, &provider, "u-gil").await;
        assert_refused(&r, 403, "sso_refused_by_provider");
        let reasons: Vec<Value> = audit(&app, "staff.sso_refused").await.iter()
            .map(|e| e["after"]["reason"].clone()).collect();
        assert!(reasons.contains(&json!("staff_disabled")) && reasons.contains(&json!("provider_refused")),
            "{reasons:?}");
    }

    async fn settings_are_the_owners_validated_and_audited(backend: Backend) {
        let app = TestApp::start(backend).await;
        let provider = MockOidc::start(app.kernel.state.clock.clone()).await;
        let r = app.get(&format!("{START}?answer=json")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "not set up: {}", r.text());
        // Only a page of the admin to go on to, never another site.
        for next in ["https://evil.example/admin", "//evil.example", "/account"] {
            let r = app.get(&format!("{START}?answer=admin&next={}",
                form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())).await;
            r.assert_field_error(422, "next");
        }
        assert_eq!(app.admin_get(SETTINGS).await.status, StatusCode::NOT_FOUND);

        let support = app.staff_token("support").await;
        let body = settings_body(&provider);
        let r = app.request(Method::PUT, SETTINGS, Some(&support),
            Some(axum::body::Body::from(body.to_string())), Some("application/json")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());

        let mut no_secret = body.clone();
        no_secret.as_object_mut().unwrap().remove("client_secret");
        app.admin_send(Method::PUT, SETTINGS, &no_secret).await.assert_field_error(422, "client_secret");
        let mut plain_http = body.clone();
        plain_http["issuer_url"] = json!("http://login.example.com");
        app.admin_send(Method::PUT, SETTINGS, &plain_http).await.assert_field_error(422, "issuer_url");
        let mut no_mapping = body.clone();
        no_mapping["role_mapping"] = json!([]);
        app.admin_send(Method::PUT, SETTINGS, &no_mapping).await.assert_field_error(422, "role_mapping");
        let mut twice = body.clone();
        twice["role_mapping"] = json!([{"group": "a", "role": "admin"}, {"group": "a", "role": "support"}]);
        app.admin_send(Method::PUT, SETTINGS, &twice).await.assert_field_error(422, "role_mapping[1].group");
        let mut bad_role = body.clone();
        bad_role["role_mapping"] = json!([{"group": "a", "role": "root"}]);
        let r = app.admin_send(Method::PUT, SETTINGS, &bad_role).await;
        assert!(r.status.is_client_error(), "{}", r.text());

        let r = app.admin_send(Method::PUT, SETTINGS, &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let shown = r.json();
        assert!(shown.get("client_secret").is_none() && shown["client_secret_set"] == true, "{shown}");
        assert!(shown["redirect_url"].as_str().unwrap().ends_with(CALLBACK), "{shown}");
        assert_eq!(shown["groups_claim"], "groups");
        assert!(!app.admin_get(SETTINGS).await.text().contains(CLIENT_SECRET));
        let stored: String = {
            use sqlx::Row;
            sqlx::query("SELECT client_secret_enc FROM staff_sso_provider")
                .fetch_one(&app.kernel.state.db.pool).await.unwrap().try_get(0).unwrap()
        };
        assert!(stored.starts_with("v1:") && !stored.contains(CLIENT_SECRET), "{stored}");

        // Changed without the secret: the stored one stays, and signing in still works.
        let mut renamed = no_secret.clone();
        renamed["display_name"] = json!("Renamed IdP");
        let r = app.admin_send(Method::PUT, SETTINGS, &renamed).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        provider.add_account(Account::new("u-hal", "hal@shop.example", &["store-admins"]));
        signed_in(&app, &provider, "u-hal").await;

        let configured = audit(&app, "staff.sso_configured").await;
        assert_eq!(configured.len(), 2, "{configured:?}");
        assert!(configured.iter().all(|e| !e.to_string().contains(CLIENT_SECRET)), "{configured:?}");
        let changed: Vec<bool> = configured.iter()
            .map(|e| e["after"]["client_secret_changed"].as_bool().unwrap()).collect();
        assert!(changed.contains(&true) && changed.contains(&false), "{changed:?}");

        let r = app.admin_send(Method::DELETE, SETTINGS, &json!(null)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        assert_eq!(app.get(&format!("{START}?answer=json")).await.status, StatusCode::NOT_FOUND);
        assert_eq!(audit(&app, "staff.sso_removed").await.len(), 1);
        let page = app.get("/admin/sign-in").await;
        assert!(page.status == StatusCode::OK && !page.text().contains("Sign in with"), "{}", page.text());
    }

    async fn the_admin_signs_in_through_the_provider(backend: Backend) {
        let (app, provider) = set_up(backend).await;
        provider.add_account(Account::new("u-ida", "ida@shop.example", &["store-admins"]));
        let mut browser = Browser::default();
        let page = browse(&app, &mut browser, "/admin/sign-in?next=/admin/orders").await;
        assert_eq!(page.status, StatusCode::OK);
        let html = page.text();
        assert!(html.contains("Sign in with Test IdP"), "{html}");
        assert!(html.contains("/api/v1/staff/sso/start?answer=admin&amp;next=%2Fadmin%2Forders"), "{html}");

        let authorize_url = start(&app, &mut browser, "answer=admin&next=/admin/orders").await;
        let back = provider.authorize(&authorize_url, "u-ida");
        let r = browse(&app, &mut browser, &format!("{CALLBACK}?{back}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let staff_cookie = set_cookie(&r, "olv_staff");
        assert!(staff_cookie.contains("SameSite=Strict") && staff_cookie.contains("Path=/admin"), "{staff_cookie}");
        assert_eq!(r.headers.get("refresh").unwrap(), "0; url=/admin/orders");
        let orders = browse(&app, &mut browser, "/admin/orders").await;
        assert_eq!(orders.status, StatusCode::OK, "signed in to the admin: {}", orders.text());

        // Refused: back to the sign-in page, which says why.
        provider.add_account(Account::new("u-jo", "jo@shop.example", &["marketing"]));
        let mut browser = Browser::default();
        let authorize_url = start(&app, &mut browser, "answer=admin").await;
        let back = provider.authorize(&authorize_url, "u-jo");
        let r = browse(&app, &mut browser, &format!("{CALLBACK}?{back}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
        assert_eq!(location(&r), "/admin/sign-in?sso_error=sso_no_access");
        assert!(!browser.has("olv_staff"));
        let page = browse(&app, &mut browser, &location(&r)).await;
        assert!(page.text().contains("give no access to this store"), "{}", page.text());
    }
    async fn a_linked_staff_members_password_is_refused_but_the_owners_is_not(backend: Backend) {
        let (app, provider) = set_up(backend).await;
        let r = app.admin_post("/api/v1/admin/staff",
            &json!({"email": "kai@shop.example", "name": "Kai", "role": "catalog", "password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let kai = r.json()["id"].as_i64().unwrap();
        // Before any link, the password signs in.
        assert_eq!(password_sign_in(&app, "kai@shop.example", PASSWORD).await.status, StatusCode::OK);
        provider.add_account(Account::new("u-kai", "kai@shop.example", &["store-support"]));
        assert_eq!(signed_in(&app, &provider, "u-kai").await["staff"]["id"], kai);

        // Linked, then removed at the provider: the password they still know is refused,
        // once it checks out (a wrong one is the same 401 as ever).
        provider.remove_account("u-kai");
        assert_refused(&sign_in(&app, &provider, "u-kai").await, 403, "sso_refused_by_provider");
        let before = sessions(&app).await;
        let r = password_sign_in(&app, "kai@shop.example", PASSWORD).await;
        assert_refused(&r, 403, "sso_required");
        assert!(r.json()["message"].as_str().unwrap().contains("single sign-on"), "{}", r.text());
        let wrong = password_sign_in(&app, "kai@shop.example", "not the password!").await;
        assert_eq!((wrong.status, wrong.json()["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_credentials")));
        // The admin's sign-in page says so, and points to the provider's button.
        let mut browser = Browser::default();
        let page = browse(&app, &mut browser, "/admin/sign-in").await;
        let csrf = csrf_of(&page);
        let r = post_form(&app, &mut browser, "/admin/sign-in",
            &[("csrf", &csrf), ("email", "kai@shop.example"), ("password", PASSWORD)]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        let html = r.text();
        assert!(html.contains("Your account signs in through Test IdP") && html.contains("id=\"sso-sign-in\""), "{html}");
        assert!(!browser.has("olv_staff"));
        assert_eq!(sessions(&app).await, before, "no session either way");
        let refused = audit(&app, "staff.sign_in_refused").await;
        assert_eq!(refused.len(), 2, "{refused:?}");
        let kai_target = kai.to_string();
        assert!(refused.iter().all(|e| e["target_id"].as_str() == Some(kai_target.as_str())
            && e["after"]["reason"] == "sso_required"), "{refused:?}");

        // The owner keeps the password: the way in when the provider is down.
        let r = app.admin_patch("/api/v1/admin/staff/1", &json!({"password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        provider.add_account(Account::new("u-owner", "owner@olivine.local", &["store-admins"]));
        let owner = signed_in(&app, &provider, "u-owner").await;
        assert_eq!((owner["staff"]["id"].as_i64(), owner["staff"]["role"].as_str()), (Some(1), Some("owner")));
        provider.remove_account("u-owner");
        let r = password_sign_in(&app, "owner@olivine.local", PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.json()["token"].is_string());

        // Single sign-on turned off: linked staff sign in with their passwords again.
        let r = app.admin_send(Method::DELETE, SETTINGS, &json!(null)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        let r = password_sign_in(&app, "kai@shop.example", PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.stop().await;
    }
}
