//! The customer's account in the storefront, driven like a browser would: forms, cookies
//! carried from response to request by hand (respecting their paths), CSRF tokens taken
//! from the pages. Each test runs on SQLite and on PostgreSQL.

use crate::common::browser::*;
use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use olivine::accounts::{self, AccessClaims};
use serde_json::json;
use tower::ServiceExt;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims_of(token: &str) -> AccessClaims {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64"),
    )
    .expect("claims")
}

both_backends! {
    async fn register_sign_in_account_and_sign_out(backend: Backend) {
        let app = TestApp::start(backend).await;

        // Not signed in: the account page sends the shopper to sign in, and back.
        let mut anon = Browser::default();
        let r = get(&app, &mut anon, "/account").await;
        assert_eq!(location(&r), "/account/sign-in?next=%2Faccount");
        let r = get(&app, &mut anon, "/account/password").await;
        assert_eq!(location(&r), "/account/sign-in?next=%2Faccount%2Fpassword");
        assert!(get(&app, &mut anon, "/").await.text().contains(r#"href="/account/sign-in""#));

        // The form page sets the CSRF cookie; catalog pages without forms set none.
        let page = get(&app, &mut Browser::default(), "/account/register").await;
        let csrf_cookie = set_cookie(&page, "olv_csrf");
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(csrf_cookie.contains(attribute), "{csrf_cookie} lacks {attribute}");
        }
        assert!(!sets_cookie(&get(&app, &mut Browser::default(), "/").await, "olv_csrf"));

        // Register: signed in at once.
        let name = r#"Ann <script>alert("x")</script> & Co"#;
        let mut first = Browser::default();
        register(&app, &mut first, "ann@example.com", name).await;
        assert!(first.get("olv_access").is_some() && first.get("olv_refresh").is_some());

        // Sign in from another browser through the form.
        let mut browser = Browser::default();
        let r = sign_in(&app, &mut browser, "Ann@Example.com", PASSWORD, None).await;
        assert_eq!(location(&r), "/account");
        let access = set_cookie(&r, "olv_access");
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/;",
            &format!("Max-Age={}", accounts::ACCESS_TTL_SECS)] {
            assert!(access.contains(attribute), "{access} lacks {attribute}");
        }
        let refresh = set_cookie(&r, "olv_refresh");
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/account",
            &format!("Max-Age={}", accounts::REFRESH_TTL_SECS)] {
            assert!(refresh.contains(attribute), "{refresh} lacks {attribute}");
        }
        let old_access = browser.get("olv_access").unwrap();
        let old_refresh = browser.get("olv_refresh").unwrap();

        // The account page shows the profile, escaped, and is not cacheable.
        let page = get(&app, &mut browser, "/account").await;
        assert_html(&page, StatusCode::OK);
        assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
        let html = page.text();
        assert!(html.contains("Ann &lt;script&gt;alert(") && html.contains("&lt;/script&gt; &amp; Co"), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("ann@example.com"));
        assert!(html.contains("Member since"));
        assert!(html.contains(r#"href="/account/password""#));
        assert!(html.contains(r#"action="/account/sign-out""#));
        // The header links to the account: on the account's own pages as rendered, on
        // the shared catalog pages by the header request their script makes.
        assert!(html.contains(r#"href="/account">Account</a>"#), "{html}");
        let home = get(&app, &mut browser, "/").await.text();
        assert!(home.contains(r#"data-personal="account""#), "{home}");
        assert_eq!(get(&app, &mut browser, "/account/header").await.json()["signed_in"], true);

        // Signed in, the sign-in page goes on to the account.
        let r = get(&app, &mut browser, "/account/sign-in").await;
        assert_eq!(location(&r), "/account");

        // Sign out: the session ends and the cookies are deleted.
        let csrf = csrf_of(&page);
        let r = post_form(&app, &mut browser, "/account/sign-out", &[("csrf", &csrf)]).await;
        assert_eq!(location(&r), "/");
        assert!(set_cookie(&r, "olv_access").contains("Max-Age=0"));
        let cleared = set_cookie(&r, "olv_refresh");
        assert!(cleared.contains("Max-Age=0") && cleared.contains("Path=/account"), "{cleared}");
        assert!(browser.get("olv_access").is_none() && browser.get("olv_refresh").is_none());
        assert!(get(&app, &mut browser, "/").await.text().contains(r#"href="/account/sign-in""#));

        // The old cookies no longer work, together or apart; nor does the token on the API.
        let mut replay = Browser::default();
        replay.set("olv_access", &old_access, "/");
        let r = get(&app, &mut replay.clone(), "/account").await;
        assert!(location(&r).starts_with("/account/sign-in"));
        replay.set("olv_refresh", &old_refresh, "/account");
        let r = get(&app, &mut replay, "/account").await;
        assert!(location(&r).starts_with("/account/sign-in"));
        let mut only_refresh = Browser::default();
        only_refresh.set("olv_refresh", &old_refresh, "/account");
        let r = get(&app, &mut only_refresh, "/account").await;
        assert!(location(&r).starts_with("/account/sign-in"));
        let api = app.request(Method::GET, "/api/v1/account/me", Some(&old_access), None, None).await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED);

        // The first browser's session is its own and still open.
        assert_eq!(get(&app, &mut first, "/account").await.status, StatusCode::OK);
        app.stop().await;
    }

    async fn an_expired_access_cookie_is_refreshed(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut browser = signed_in(&app, "bo@example.com", "Bo").await;
        let token = browser.get("olv_access").unwrap();
        let refresh_token = browser.get("olv_refresh").unwrap();
        let mut claims = claims_of(&token);
        claims.iat = now() - 3600;
        claims.exp = now() - 600;
        let expired = accounts::encode_access_token(&app.kernel.state.keys, &claims).unwrap();
        browser.set("olv_access", &expired, "/");

        // Catalog pages do not get the refresh cookie: the header offers to sign in.
        let home = send(&app, Method::GET, "/", &browser, None, &[]).await;
        assert!(home.text().contains(r#"href="/account/sign-in""#));
        assert!(!sets_cookie(&home, "olv_access"));

        // An account page does: the pair is rotated on the way, transparently.
        let page = get(&app, &mut browser, "/account").await;
        assert_html(&page, StatusCode::OK);
        assert!(page.text().contains("bo@example.com"));
        let new_access = set_cookie(&page, "olv_access");
        assert!(new_access.contains("HttpOnly") && new_access.contains("SameSite=Lax"));
        assert!(set_cookie(&page, "olv_refresh").contains("Path=/account"));
        assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
        let fresh = browser.get("olv_access").unwrap();
        assert_ne!(fresh, expired);
        assert_ne!(browser.get("olv_refresh").unwrap(), refresh_token);
        assert!(claims_of(&fresh).exp > now());

        // The new cookies work without another refresh.
        let again = get(&app, &mut browser, "/account").await;
        assert_eq!(again.status, StatusCode::OK);
        assert!(!sets_cookie(&again, "olv_access"));

        // A sign-in link after the access cookie is gone still lands on the account.
        browser.remove("olv_access");
        let r = get(&app, &mut browser, "/account/sign-in?next=%2Faccount%2Fpassword").await;
        assert_eq!(location(&r), "/account/password");
        assert!(browser.get("olv_access").is_some());

        // A refresh token that does not check out deletes both cookies.
        let mut stale = Browser::default();
        stale.set("olv_access", &expired, "/");
        stale.set("olv_refresh", "not-a-real-token", "/account");
        let r = get(&app, &mut stale, "/account").await;
        assert!(location(&r).starts_with("/account/sign-in"));
        assert!(set_cookie(&r, "olv_refresh").contains("Max-Age=0"));
        assert!(stale.get("olv_refresh").is_none());
        app.stop().await;
    }

    async fn forms_need_a_csrf_token_from_this_site(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut browser = signed_in(&app, "cy@example.com", "Cy").await;
        let page = get(&app, &mut browser, "/account/password").await;
        let csrf = csrf_of(&page);
        let change = |token: String| {
            vec![
                ("csrf".to_owned(), token),
                ("current_password".to_owned(), PASSWORD.to_owned()),
                ("new_password".to_owned(), "a brand new secret".to_owned()),
                ("confirm_password".to_owned(), "a brand new secret".to_owned()),
            ]
        };
        async fn post(
            app: &TestApp,
            browser: &Browser,
            fields: &[(String, String)],
            headers: &[(&str, &str)],
        ) -> TestResponse {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            send(app, Method::POST, "/account/password", browser, Some(&fields), headers).await
        }
        let refused = |r: &TestResponse, what: &str| {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.text());
            assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"), "{what}");
            assert!(r.text().contains("This form has expired"), "{what}");
        };

        // No token.
        let mut fields = change(csrf.clone());
        fields.remove(0);
        refused(&post(&app, &browser, &fields, &[("origin", SITE)]).await, "no token");
        // A token that is not a token.
        refused(&post(&app, &browser, &change("x".into()), &[("origin", SITE)]).await, "garbage token");
        // A valid token of another browser (another CSRF cookie).
        let mut other = Browser::default();
        let other_csrf = csrf_of(&get(&app, &mut other, "/account/sign-in").await);
        refused(&post(&app, &browser, &change(other_csrf.clone()), &[("origin", SITE)]).await, "another cookie's token");
        // The other browser's cookie and token, planted: they belong to no session.
        let mut planted = browser.clone();
        planted.set("olv_csrf", &other.get("olv_csrf").unwrap(), "/");
        refused(&post(&app, &planted, &change(other_csrf), &[("origin", SITE)]).await, "planted pair");
        // The right token, sent from another site.
        refused(&post(&app, &browser, &change(csrf.clone()), &[("origin", "https://evil.example")]).await, "cross-site Origin");
        refused(&post(&app, &browser, &change(csrf.clone()), &[("origin", "null")]).await, "Origin null");
        refused(&post(&app, &browser, &change(csrf.clone()), &[("referer", "https://evil.example/form")]).await, "cross-site Referer");
        refused(&post(&app, &browser, &change(csrf.clone()), &[("sec-fetch-site", "cross-site")]).await, "Sec-Fetch-Site");
        // The right token without the cookie.
        let mut no_cookie = browser.clone();
        no_cookie.remove("olv_csrf");
        refused(&post(&app, &no_cookie, &change(csrf.clone()), &[("origin", SITE)]).await, "no cookie");
        // Anonymous forms too.
        let r = send(&app, Method::POST, "/account/sign-in", &Browser::default(),
            Some(&[("email", "cy@example.com"), ("password", PASSWORD)]), &[]).await;
        refused(&r, "sign-in without cookie or token");
        // Nothing changed: the old password still signs in.
        let r = sign_in(&app, &mut Browser::default(), "cy@example.com", PASSWORD, None).await;
        assert_eq!(location(&r), "/account");

        // The real thing: same origin (or no Origin at all), the page's token.
        let r = post(&app, &browser, &change(csrf), &[("origin", SITE), ("sec-fetch-site", "same-origin")]).await;
        assert_eq!(location(&r), "/account?updated=password");
        let page = get(&app, &mut browser, "/account?updated=password").await;
        assert!(page.text().contains("Your password was changed"));
        let r = sign_in(&app, &mut Browser::default(), "cy@example.com", "a brand new secret", None).await;
        assert_eq!(location(&r), "/account");

        // The JSON API takes no cookies and needs no CSRF token: bearer tokens only.
        let r = app.request(Method::POST, "/api/v1/account/sign-in", None,
            Some(Body::from(json!({"email": "cy@example.com", "password": "a brand new secret"}).to_string())),
            Some("application/json")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let mut request = Request::builder().uri("/api/v1/account/me").header(header::HOST, HOST);
        if let Some(cookie) = browser.header_for("/api/v1/account/me") {
            request = request.header(header::COOKIE, cookie);
        }
        let response = app.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "the API ignores session cookies");
        app.stop().await;
    }

    async fn next_must_stay_on_this_site(backend: Backend) {
        let app = TestApp::start(backend).await;
        signed_in(&app, "di@example.com", "Di").await;
        for evil in ["//evil.example", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "http:/evil.example"] {
            let r = sign_in(&app, &mut Browser::default(), "di@example.com", PASSWORD, Some(evil)).await;
            assert_eq!(location(&r), "/account", "next={evil}");
            let encoded: String = form_urlencoded::byte_serialize(evil.as_bytes()).collect();
            let page = get(&app, &mut Browser::default(), &format!("/account/sign-in?next={encoded}")).await;
            assert_html(&page, StatusCode::OK);
            assert!(!page.text().contains("evil.example"), "{evil} kept in the form");
        }
        let r = sign_in(&app, &mut Browser::default(), "di@example.com", PASSWORD, Some("/c/skincare?page=2")).await;
        assert_eq!(location(&r), "/c/skincare?page=2");

        // The round trip: a page that needs sign-in, the form, back to the page.
        let mut browser = Browser::default();
        let r = get(&app, &mut browser, "/account/password").await;
        let to = location(&r);
        let page = get(&app, &mut browser, &to).await;
        assert!(page.text().contains(r#"name="next" value="/account/password""#));
        let csrf = csrf_of(&page);
        let r = post_form(&app, &mut browser, "/account/sign-in", &[
            ("csrf", &csrf), ("email", "di@example.com"), ("password", PASSWORD), ("next", "/account/password"),
        ]).await;
        assert_eq!(location(&r), "/account/password");

        // Signed in, a sign-in link with an unsafe next goes to the account.
        let r = get(&app, &mut browser, "/account/sign-in?next=%2F%2Fevil.example").await;
        assert_eq!(location(&r), "/account");
        app.stop().await;
    }

    async fn bad_input_rerenders_the_form_without_the_password(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut browser = signed_in(&app, "ed@example.com", "Ed").await;

        // Wrong password: the same form, 422, the email kept, the password not.
        let secret = "my-wrong-Password-42";
        let r = sign_in(&app, &mut Browser::default(), "ed@example.com", secret, None).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        let html = r.text();
        assert!(html.contains("The email or password is wrong."), "{html}");
        assert!(html.contains(r#"value="ed@example.com""#));
        assert!(!html.contains(secret));
        assert!(!sets_cookie(&r, "olv_access"));
        // An unknown email reads the same.
        let r = sign_in(&app, &mut Browser::default(), "nobody@example.com", secret, None).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("The email or password is wrong."));
        // Empty fields are named.
        let r = sign_in(&app, &mut Browser::default(), "", "", None).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("Enter your email.") && r.text().contains("Enter your password."));

        // Registration: every field's problem, the name and email kept, no password.
        let mut anon = Browser::default();
        let csrf = csrf_of(&get(&app, &mut anon, "/account/register").await);
        let r = post_form(&app, &mut anon, "/account/register", &[
            ("csrf", &csrf), ("name", "<b>Fay</b>"), ("email", "not an email"), ("password", "short1"),
        ]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        let html = r.text();
        assert!(html.contains("Email must be an email address"), "{html}");
        assert!(html.contains("Password must be 10 to 256 characters."), "{html}");
        assert!(html.contains("&lt;b&gt;Fay&lt;/b&gt;") && !html.contains("<b>Fay"));
        assert!(!html.contains("short1"));
        assert!(anon.get("olv_access").is_none());
        let r = post_form(&app, &mut anon, "/account/register", &[
            ("csrf", &csrf), ("name", "Ed Two"), ("email", "ED@example.com"), ("password", "another long password"),
        ]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("An account with this email exists already."));
        assert!(!r.text().contains("another long password"));

        // Password change: a wrong current password, two new ones that differ.
        let csrf = csrf_of(&get(&app, &mut browser, "/account/password").await);
        let r = post_form(&app, &mut browser, "/account/password", &[
            ("csrf", &csrf), ("current_password", secret), ("new_password", "fresh password 1"), ("confirm_password", "fresh password 1"),
        ]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("Current password is wrong."), "{}", r.text());
        assert!(!r.text().contains(secret) && !r.text().contains("fresh password 1"));
        let r = post_form(&app, &mut browser, "/account/password", &[
            ("csrf", &csrf), ("current_password", PASSWORD), ("new_password", "fresh password 1"), ("confirm_password", "fresh password 2"),
        ]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("The two new passwords differ."));
        app.stop().await;
    }

    async fn cookies_can_be_sent_over_plain_http(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.cookie_secure = false).await;
        let mut browser = Browser::default();
        register(&app, &mut browser, "gus@example.com", "Gus").await;
        let r = sign_in(&app, &mut Browser::default(), "gus@example.com", PASSWORD, None).await;
        for name in ["olv_access", "olv_refresh"] {
            let cookie = set_cookie(&r, name);
            assert!(!cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");
        }
        app.stop().await;
    }
}
