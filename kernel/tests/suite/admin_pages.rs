//! The admin's customer, staff, audit and plugin pages through their forms as a browser
//! posts them: support finds a customer by email, corrects their points and erases them;
//! the owner adds a staff member, makes and revokes their API token (after a
//! confirmation, as signing them out everywhere and resetting their second factor are);
//! the audit page filters and its chain check names a tampered entry; a plugin package is
//! uploaded, its self-test shown, and activated from the page; a plugin's secret settings
//! are written and never shown, and its hosts granted in a form of their own. (The walk
//! of every page's permission is
//! `admin_ui::every_admin_page_needs_a_session_and_its_permission`.)

use crate::admin_ui::{STAFF_PASSWORD, assert_page, signed_in_as, staff, store, submit};
use crate::common::browser::*;
use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

async fn pseudonym_of(app: &TestApp, email: &str) -> String {
    app.customer_token(email).await;
    let r = app.admin_get("/api/v1/admin/privacy-requests").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let lookup = app
        .kernel
        .state
        .keys
        .lookup_hash(&olivine::accounts::normalise_email(email));
    sqlx::query_scalar("SELECT pseudonym FROM customers WHERE email_lookup = $1")
        .bind(lookup)
        .fetch_one(&app.kernel.state.db.pool)
        .await
        .unwrap()
}

/// The text between `id="<id>"` and the end of its element's line of text.
fn element_text(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find("</").unwrap() + open;
    rest[open..close].to_owned()
}

/// The row of the token `id` in a staff member's list of API tokens.
fn token_row(html: &str, id: i64) -> &str {
    let start = html
        .find(&format!("id=\"token-{id}\""))
        .unwrap_or_else(|| panic!("no token {id} in {html}"));
    let end = html[start..].find("</tr>").unwrap() + start;
    &html[start..end]
}

/// A file upload from an admin page: the page's CSRF token first, then the package.
async fn upload(
    app: &TestApp,
    browser: &mut Browser,
    path: &str,
    csrf: &str,
    file: &[u8],
) -> TestResponse {
    let part = Part::File("package", "p.olpkg", "application/octet-stream", file);
    upload_parts(app, browser, path, csrf, &[part]).await
}

/// A part of a multipart form: a text field, or a file with its name and type.
pub(crate) enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a str, &'a str, &'a [u8]),
}

/// A multipart form post from an admin page: the page's CSRF token first, then `parts`.
pub(crate) async fn upload_parts(
    app: &TestApp,
    browser: &mut Browser,
    path: &str,
    csrf: &str,
    parts: &[Part<'_>],
) -> TestResponse {
    let boundary = "olivine-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n")
            .as_bytes(),
    );
    for part in parts {
        match part {
            Part::Text(name, value) => body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            ),
            Part::File(name, filename, content_type, bytes) => {
                body.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                         Content-Type: {content_type}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
                body.extend_from_slice(b"\r\n");
            }
        }
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, HOST)
        .header("origin", SITE)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        );
    if let Some(cookie) = browser.header_for(path) {
        request = request.header(header::COOKIE, cookie);
    }
    let r = app.send(request.body(Body::from(body)).unwrap()).await;
    browser.take(&r);
    r
}

/// A plugin's settings as stored, secrets and all.
async fn stored_settings(app: &TestApp, plugin: &str) -> serde_json::Value {
    let text: String =
        sqlx::query_scalar("SELECT settings FROM plugin_installations WHERE plugin_id = $1")
            .bind(plugin)
            .fetch_one(&app.kernel.state.db.pool)
            .await
            .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A staff member's API session, signed in with the password.
async fn api_session(app: &TestApp, email: &str) -> String {
    let body = json!({"email": email, "password": STAFF_PASSWORD}).to_string();
    let r = app
        .request(
            Method::POST,
            "/api/v1/staff/sign-in",
            None,
            Some(body.into()),
            Some("application/json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

async fn session_works(app: &TestApp, token: &str) -> bool {
    let r = app
        .request(
            Method::GET,
            "/api/v1/staff/me/sessions",
            Some(token),
            None,
            None,
        )
        .await;
    r.status == StatusCode::OK
}

/// A PNG `w` x `h` of noise (it does not compress: about `w * h * 3` bytes).
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut seed: u32 = 0x2545_f491;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let [a, b, c, _] = seed.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn image_ids(app: &TestApp, product: i64) -> Vec<i64> {
    let r = app
        .admin_get(&format!("/api/v1/admin/products/{product}/images"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

both_backends! {
    async fn support_finds_a_customer_by_email_and_the_owner_corrects_points_and_erases(backend: Backend) {
        let app = TestApp::start(backend).await;
        let pseudonym = pseudonym_of(&app, "Lena@Example.com").await;
        let mut support = signed_in_as(&app, "support").await;
        // Found by the whole email, whatever its case; not by a part of it.
        let r = get(&app, &mut support, "/admin/customers?q=lena%40example.com").await;
        assert_eq!(location(&r), format!("/admin/customers/{pseudonym}"));
        let r = get(&app, &mut support, "/admin/customers?q=lena").await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "an email no account has");
        assert!(r.text().contains("id=\"f-q-error\""), "{}", r.text());
        let page = get(&app, &mut support, &format!("/admin/customers/{pseudonym}")).await;
        assert_page(&page, StatusCode::OK, "the customer's page");
        assert!(page.text().to_lowercase().contains("lena@example.com"), "{}", page.text());
        // Support may read, not correct points: no form, and a post is refused.
        assert!(!page.text().contains("Correct the points"), "{}", page.text());
        let viewed = app.admin_get("/api/v1/admin/audit?action=customer.identity_viewed").await.json();
        assert_eq!(viewed["entries"][0]["target_id"], pseudonym.as_str(), "{viewed}");
        assert!(viewed["entries"][0]["actor"].as_str().unwrap().starts_with("staff:"), "{viewed}");

        let mut owner = signed_in_as(&app, "owner").await;
        let page = format!("/admin/customers/{pseudonym}");
        let points = format!("{page}/points");
        let r = submit(&app, &mut owner, &page, &points, &[("points", "fifty"), ("reason", "Goodwill")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "points that are not a number");
        assert!(r.text().contains("id=\"f-points-error\""), "{}", r.text());
        let r = submit(&app, &mut owner, &page, &points, &[("points", "50"), ("reason", "")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "no reason");
        assert!(r.text().contains("id=\"f-reason-error\""), "{}", r.text());
        let r = submit(&app, &mut owner, &page, &points, &[("points", "50"), ("reason", "Goodwill")]).await;
        assert!(location(&r).starts_with(&format!("{page}?done=points")), "{}", r.text());
        let loyalty = app.admin_get(&format!("/api/v1/admin/customers/{pseudonym}/loyalty")).await.json();
        assert_eq!(loyalty["balance"], 50, "{loyalty}");
        // Taking more than they have is said next to the field.
        let r = submit(&app, &mut owner, &page, &points, &[("points", "-80"), ("reason", "Mistake")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "more than the balance");
        assert!(r.text().contains("id=\"f-points-error\""), "{}", r.text());

        // Erasure asks for the pseudonym again.
        let erase = format!("{page}/erase");
        let r = submit(&app, &mut owner, &erase, &erase, &[("confirm", "c_wrong")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a wrong confirmation");
        assert!(r.text().contains("id=\"f-confirm-error\""), "{}", r.text());
        assert!(app.admin_get(&format!("/api/v1/admin/customers/{pseudonym}")).await.json()["erased_at"].is_null());
        let r = submit(&app, &mut owner, &erase, &erase, &[("confirm", &pseudonym)]).await;
        assert_eq!(location(&r), format!("{page}?done=erased"));
        let after = get(&app, &mut owner, &page).await.text().to_lowercase();
        assert!(after.contains("(erased)") && !after.contains("lena@example.com"), "{after}");
        let requests = get(&app, &mut owner, "/admin/privacy-requests?kind=erasure").await;
        assert_page(&requests, StatusCode::OK, "the privacy requests");
        assert!(requests.text().contains(&pseudonym), "{}", requests.text());
        app.stop().await;
    }

    async fn the_owner_adds_staff_and_makes_and_revokes_their_token(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut owner = signed_in_as(&app, "owner").await;
        let add = |email: &'static str| [("name", "Mia"), ("email", email), ("role", "catalog"), ("password", "")];
        let r = submit(&app, &mut owner, "/admin/staff", "/admin/staff", &add("not an email")).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a bad email");
        assert!(r.text().contains("id=\"f-email-error\""), "{}", r.text());
        let r = submit(&app, &mut owner, "/admin/staff", "/admin/staff", &add("mia@staff.example")).await;
        let to = location(&r);
        assert!(to.starts_with("/admin/staff/") && to.ends_with("?done=added"), "{to}");
        let page = to.trim_end_matches("?done=added").to_owned();
        let id: i64 = page.trim_start_matches("/admin/staff/").parse().unwrap();
        // A token, shown once on the answer, works on the API until revoked.
        let r = submit(&app, &mut owner, &page, &format!("{page}/tokens"), &[("label", "ci deploy")]).await;
        assert_page(&r, StatusCode::OK, "the new token");
        let token = element_text(&r.text(), "new-token");
        assert!(token.starts_with("olv_"), "{token}");
        let me = app.request(Method::GET, "/api/v1/admin/me", Some(&token), None, None).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text());
        assert_eq!(me.json()["role"], "catalog");
        let tokens = app.admin_get(&format!("/api/v1/admin/staff/{id}/tokens")).await.json();
        let token_id = tokens.as_array().unwrap().iter().find(|t| t["label"] == "ci deploy").unwrap()["id"].as_i64().unwrap();
        // Support now: the role changes at once for the token too.
        let r = submit(&app, &mut owner, &page, &page, &[("name", "Mia R"), ("role", "support")]).await;
        assert_eq!(location(&r), format!("{page}?done=saved"));
        let me = app.request(Method::GET, "/api/v1/admin/me", Some(&token), None, None).await;
        assert_eq!((me.json()["role"].clone(), me.json()["name"].clone()), (json!("support"), json!("Mia R")));
        // Revoking asks first: the post without the confirmation revokes nothing.
        let revoke = format!("{page}/tokens/{token_id}/revoke");
        let r = submit(&app, &mut owner, &page, &revoke, &[]).await;
        assert_page(&r, StatusCode::OK, "the revocation's confirmation");
        assert!(r.text().contains("ci deploy") && r.text().contains(r#"name="confirm" value="yes""#), "{}", r.text());
        let me = app.request(Method::GET, "/api/v1/admin/me", Some(&token), None, None).await;
        assert_eq!(me.status, StatusCode::OK, "not revoked yet");
        let r = submit(&app, &mut owner, &page, &revoke, &[("confirm", "yes")]).await;
        assert_eq!(location(&r), format!("{page}?done=token_revoked"));
        let me = app.request(Method::GET, "/api/v1/admin/me", Some(&token), None, None).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED);
        // Another role never sees these pages.
        let mut admin = signed_in_as(&app, "admin").await;
        assert_page(&get(&app, &mut admin, &page).await, StatusCode::FORBIDDEN, "staff for an admin");
        app.stop().await;
    }

    async fn a_token_made_from_the_form_records_the_address_it_came_from(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.trust_forwarded_for = true).await;
        let id = staff(&app, "catalog", "tools@staff.example").await;
        let mut owner = signed_in_as(&app, "owner").await;
        let page = format!("/admin/staff/{id}");
        // One token through the API, one through the page's form, each behind the trusted
        // proxy: both record the address it forwards (its last hop).
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("/api/v1/admin/staff/{id}/tokens"))
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-forwarded-for", "192.0.2.44")
            .body(Body::from(json!({"label": "ci deploy"}).to_string()))
            .unwrap();
        let r = app.send(request).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        assert_eq!(r.json()["created_from"], "192.0.2.44", "{}", r.text());
        let form = get(&app, &mut owner, &page).await;
        assert_page(&form, StatusCode::OK, "the member's page");
        let csrf = csrf_of(&form);
        let fields = [("csrf", csrf.as_str()), ("label", "stock sync")];
        let headers = [("origin", SITE), ("x-forwarded-for", "10.0.0.1, 198.51.100.23")];
        let r = send(&app, Method::POST, &format!("{page}/tokens"), &owner, Some(&fields[..]), &headers).await;
        owner.take(&r);
        assert_page(&r, StatusCode::OK, "the new token");
        assert!(element_text(&r.text(), "new-token").starts_with("olv_"), "{}", r.text());
        let tokens = app.admin_get(&format!("/api/v1/admin/staff/{id}/tokens")).await.json();
        let made = |label: &str| tokens.as_array().unwrap().iter().find(|t| t["label"] == label).cloned()
            .unwrap_or_else(|| panic!("{label}: {tokens}"));
        assert_eq!(made("stock sync")["created_from"], "198.51.100.23", "{tokens}");
        assert_eq!(made("ci deploy")["created_from"], "192.0.2.44", "{tokens}");
        // The page's list says where each was made.
        let listed = get(&app, &mut owner, &page).await.text();
        for (label, from) in [("stock sync", "198.51.100.23"), ("ci deploy", "192.0.2.44")] {
            let row = token_row(&listed, made(label)["id"].as_i64().unwrap());
            assert!(row.contains(label) && row.contains(&format!("<code>{from}</code>")), "{label}: {row}");
        }
        app.stop().await;

        // Without a trusted proxy the header is the client's word and not recorded (the
        // in-process request has no peer address: none).
        let app = TestApp::start(backend).await;
        let id = staff(&app, "catalog", "tools@staff.example").await;
        let mut owner = signed_in_as(&app, "owner").await;
        let page = format!("/admin/staff/{id}");
        let csrf = csrf_of(&get(&app, &mut owner, &page).await);
        let fields = [("csrf", csrf.as_str()), ("label", "stock sync")];
        let headers = [("origin", SITE), ("x-forwarded-for", "198.51.100.23")];
        let r = send(&app, Method::POST, &format!("{page}/tokens"), &owner, Some(&fields[..]), &headers).await;
        assert_page(&r, StatusCode::OK, "the new token");
        let tokens = app.admin_get(&format!("/api/v1/admin/staff/{id}/tokens")).await.json();
        assert!(tokens[0]["created_from"].is_null(), "{tokens}");
        let listed = get(&app, &mut owner, &page).await.text();
        assert!(!listed.contains("198.51.100.23"), "{listed}");
        app.stop().await;
    }

    async fn the_audit_page_filters_and_names_the_first_tampered_entry(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app).await;
        let mut owner = signed_in_as(&app, "owner").await;
        let r = get(&app, &mut owner, "/admin/audit?action=product.created").await;
        assert_page(&r, StatusCode::OK, "the filtered log");
        assert!(r.text().contains("product.created") && !r.text().contains("lot.received"), "{}", r.text());
        let r = get(&app, &mut owner, "/admin/audit?since=yesterday").await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a date that is not one");
        assert!(r.text().contains("id=\"f-since-error\""), "{}", r.text());
        let r = get(&app, &mut owner, "/admin/audit/verify").await;
        assert_page(&r, StatusCode::OK, "the chain check");
        assert!(r.text().contains("id=\"chain-intact\""), "{}", r.text());
        crate::audit::drop_trigger(&app, "audit_log_no_update").await;
        crate::audit::exec(&app, "UPDATE audit_log SET actor = 'someone else' WHERE seq = 2").await.unwrap();
        let r = get(&app, &mut owner, "/admin/audit/verify").await;
        let text = r.text();
        assert!(text.contains("id=\"chain-tampered\"") && text.contains("#2"), "{text}");
        // Support has no audit page.
        let mut support = signed_in_as(&app, "support").await;
        assert_page(&get(&app, &mut support, "/admin/audit").await, StatusCode::FORBIDDEN, "audit for support");
        app.stop().await;
    }

    async fn a_plugin_package_is_uploaded_self_tested_then_activated(backend: Backend) {
        let app = TestApp::start(backend).await;
        let v1 = plugin_upload("subscribe-and-save", "subscribe_and_save", |m| m);
        assert_eq!(app.admin_post("/api/v1/admin/plugins", &v1).await.status, StatusCode::CREATED);
        let mut browser = signed_in_as(&app, "admin").await;
        let form = get(&app, &mut browser, "/admin/plugins/upload").await;
        assert_page(&form, StatusCode::OK, "the upload form");
        let csrf = csrf_of(&form);
        // Not a package; a package whose self-test fails: each said, nothing installed.
        let r = upload(&app, &mut browser, "/admin/plugins/upload", &csrf, b"not json").await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "not a package");
        assert!(r.text().contains("not a plugin package"), "{}", r.text());
        let mut failing = plugin_upload("subscribe-and-save", "subscribe_and_save", |m| {
            m.replace("version = \"0.1.0\"", "version = \"0.3.0\"")
        });
        let fixtures = failing["fixtures"].as_object_mut().unwrap();
        let (name, text) = fixtures.iter().next().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).unwrap();
        let mut broken: serde_json::Value = serde_json::from_str(&text).unwrap();
        broken["expect"] = json!({"err": "a failure this fixture does not make"});
        fixtures.insert(name.clone(), json!(broken.to_string()));
        let r = upload(&app, &mut browser, "/admin/plugins/upload", &csrf, failing.to_string().as_bytes()).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a failing self-test");
        assert!(r.text().contains("id=\"self-test-failures\"") && r.text().contains(&format!("fixtures.{name}")), "{}", r.text());
        // A good one: installed, not serving, until activated here.
        let v2 = plugin_upload("subscribe-and-save", "subscribe_and_save", |m| {
            m.replace("version = \"0.1.0\"", "version = \"0.2.0\"")
        });
        let r = upload(&app, &mut browser, "/admin/plugins/upload", &csrf, v2.to_string().as_bytes()).await;
        assert_page(&r, StatusCode::CREATED, "the self-test result");
        assert!(r.text().contains("id=\"self-test-passed\""), "{}", r.text());
        let plugin = app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json();
        assert_eq!(plugin["active_version"], "0.1.0", "{plugin}");
        assert_eq!(plugin["versions"].as_array().unwrap().len(), 2, "{plugin}");
        let page = "/admin/plugins/subscribe-and-save";
        let r = submit(&app, &mut browser, page, &format!("{page}/activate"), &[("version", "0.2.0")]).await;
        assert_eq!(location(&r), format!("{page}?done=activated"));
        let plugin = app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json();
        assert_eq!(plugin["active_version"], "0.2.0", "{plugin}");
        // The plugin's page: a priority that is not a number is said beside it.
        let r = submit(&app, &mut browser, page, page, &[("priority", "soon")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a bad priority");
        assert!(r.text().contains("id=\"f-priority-error\""), "{}", r.text());
        let r = submit(&app, &mut browser, page, page, &[("priority", "7")]).await;
        assert_eq!(location(&r), format!("{page}?done=saved"));
        assert_eq!(app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json()["priority"], 7);
        // Rolling back asks first: the post without the confirmation changes nothing.
        let rollback = format!("{page}/rollback");
        let r = submit(&app, &mut browser, page, &rollback, &[("back", "plugin")]).await;
        assert_page(&r, StatusCode::OK, "the rollback's confirmation");
        assert!(r.text().contains("Roll subscribe-and-save back to 0.1.0?") && r.text().contains(r#"name="confirm" value="yes""#), "{}", r.text());
        assert_eq!(app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json()["active_version"], "0.2.0");
        // Rolled back from its page, it comes back to its page.
        let r = submit(&app, &mut browser, page, &rollback, &[("back", "plugin"), ("confirm", "yes")]).await;
        assert_eq!(location(&r), format!("{page}?done=rolled_back"));
        assert_eq!(app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json()["active_version"], "0.1.0");
        // Turning it off asks first: the post without the confirmation changes nothing.
        let off = [("enabled", "false"), ("back", "plugin")];
        let r = submit(&app, &mut browser, page, page, &off).await;
        assert_page(&r, StatusCode::OK, "the confirmation");
        assert!(r.text().contains("Turn subscribe-and-save off?") && r.text().contains(r#"name="confirm" value="yes""#), "{}", r.text());
        assert_eq!(app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json()["enabled"], true);
        let r = submit(&app, &mut browser, page, page, &[off[0], off[1], ("confirm", "yes")]).await;
        assert_eq!(location(&r), format!("{page}?done=switched"));
        assert_eq!(app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json()["enabled"], false);
        // Turning it on does not ask.
        let r = submit(&app, &mut browser, page, page, &[("enabled", "true"), ("back", "plugin")]).await;
        assert_eq!(location(&r), format!("{page}?done=switched"));
        assert_eq!(app.admin_get("/api/v1/admin/plugins/subscribe-and-save").await.json()["enabled"], true);
        // The catalog role has no plugin page at all, nor the API's plugins.
        let mut catalog = signed_in_as(&app, "catalog").await;
        for refused in ["/admin/plugins", page, "/admin/plugins/upload"] {
            let r = get(&app, &mut catalog, refused).await;
            assert_page(&r, StatusCode::FORBIDDEN, refused);
            assert!(r.text().contains("Not open to your role"), "{refused}: {}", r.text());
        }
        let home = get(&app, &mut catalog, "/admin").await.text();
        assert!(!home.contains(r#"href="/admin/plugins""#), "{home}");
        let id = staff(&app, "catalog", "cat-api@staff.example").await;
        let r = app.admin_post(&format!("/api/v1/admin/staff/{id}/tokens"), &json!({"label": "tool"})).await;
        let token = r.json()["token"].as_str().unwrap().to_owned();
        let r = app.request(Method::GET, "/api/v1/admin/plugins", Some(&token), None, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        app.stop().await;
    }

    async fn a_plugins_secret_settings_are_written_and_never_shown(backend: Backend) {
        let app = TestApp::start(backend).await;
        let notifier = plugin_upload("webhook-notifier", "webhook_notifier", |m| m);
        let r = app.admin_post("/api/v1/admin/plugins", &notifier).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let path = "/api/v1/admin/plugins/webhook-notifier";
        let r = app.admin_patch(path, &json!({"settings": {"url": "http://hooks.example.com/in",
            "authorization": "Bearer first-token-9F3K", "signing_secret": "whsec-first-77QX"}})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // The API: the secrets' values are null, said set; the others as they are.
        for answer in [r.text(), app.admin_get(path).await.text(), app.admin_get("/api/v1/admin/plugins").await.text()] {
            assert!(!answer.contains("first-token-9F3K") && !answer.contains("whsec-first-77QX"), "{answer}");
        }
        let plugin = app.admin_get(path).await.json();
        assert_eq!(plugin["settings"], json!({"url": "http://hooks.example.com/in", "authorization": null, "signing_secret": null}), "{plugin}");
        assert_eq!(plugin["secrets"], json!({"authorization": {"set": true}, "signing_secret": {"set": true}}), "{plugin}");
        // The page: "set", never the value.
        let mut browser = signed_in_as(&app, "admin").await;
        let page = "/admin/plugins/webhook-notifier";
        let shown = get(&app, &mut browser, page).await;
        assert_page(&shown, StatusCode::OK, "the plugin's page");
        let text = shown.text();
        assert!(!text.contains("first-token-9F3K") && !text.contains("whsec-first-77QX"), "{text}");
        assert!(text.contains("Secret, set") && text.contains(r#"name="settings.authorization" type="password" value="""#), "{text}");
        assert!(text.contains("http://hooks.example.com/in"), "a setting that is not secret is shown: {text}");
        // Saved with the secrets' fields empty: they are kept.
        let url = ("settings.url", "http://hooks.example.com/other");
        let r = submit(&app, &mut browser, page, page, &[("form", "settings"), url, ("priority", "100")]).await;
        assert_eq!(location(&r), format!("{page}?done=saved"), "{}", r.text());
        assert_eq!(stored_settings(&app, "webhook-notifier").await, json!({"url": "http://hooks.example.com/other",
            "authorization": "Bearer first-token-9F3K", "signing_secret": "whsec-first-77QX"}));
        // A form with a problem does not show back a secret typed into it either.
        let typed = ("settings.authorization", "Bearer typed-token-Q8");
        let r = submit(&app, &mut browser, page, page, &[("form", "settings"), url, typed, ("priority", "soon")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a bad priority");
        assert!(!r.text().contains("typed-token-Q8"), "{}", r.text());
        // A new value replaces it; "Remove" removes one.
        let r = submit(&app, &mut browser, page, page, &[("form", "settings"), url, typed, ("priority", "100"),
            ("remove_secret", "signing_secret")]).await;
        assert_eq!(location(&r), format!("{page}?done=saved"), "{}", r.text());
        assert_eq!(stored_settings(&app, "webhook-notifier").await,
            json!({"url": "http://hooks.example.com/other", "authorization": "Bearer typed-token-Q8"}));
        let plugin = app.admin_get(path).await;
        assert!(!plugin.text().contains("typed-token-Q8"), "{}", plugin.text());
        assert_eq!(plugin.json()["secrets"], json!({"authorization": {"set": true}, "signing_secret": {"set": false}}));
        let text = get(&app, &mut browser, page).await.text();
        assert!(!text.contains("typed-token-Q8") && text.contains("Secret, not set"), "{text}");
        // The API takes back what it answered: a secret's null keeps it.
        let mut settings = app.admin_get(path).await.json()["settings"].clone();
        settings["url"] = json!("http://hooks.example.com/third");
        let r = app.admin_patch(path, &json!({"settings": settings})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(!r.text().contains("typed-token-Q8"), "{}", r.text());
        assert_eq!(stored_settings(&app, "webhook-notifier").await["authorization"], "Bearer typed-token-Q8");
        app.admin_patch(path, &json!({"settings": {"colour": null}})).await.assert_field_error(422, "settings.colour");
        app.stop().await;
    }

    async fn a_plugins_hosts_are_granted_in_a_form_of_their_own(backend: Backend) {
        let app = TestApp::start(backend).await;
        // Any host (`http = ["*"]`): a host a line.
        let notifier = plugin_upload("webhook-notifier", "webhook_notifier", |m| m);
        assert_eq!(app.admin_post("/api/v1/admin/plugins", &notifier).await.status, StatusCode::CREATED);
        let path = "/api/v1/admin/plugins/webhook-notifier";
        // Granted from the command line (the API), before the page is used.
        let r = app.admin_patch(path, &json!({"granted_hosts": ["cli.example.com"]})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let mut browser = signed_in_as(&app, "admin").await;
        let page = "/admin/plugins/webhook-notifier";
        let text = get(&app, &mut browser, page).await.text();
        assert!(text.contains(r#"<textarea id="f-granted-hosts" name="granted_hosts""#) && text.contains("cli.example.com"), "{text}");
        assert!(!text.contains(r#"value="*""#), "no checkbox for any host: {text}");
        // Saving the settings leaves the grants alone.
        let r = submit(&app, &mut browser, page, page, &[("form", "settings"), ("settings.url", "http://cli.example.com/in"), ("priority", "100")]).await;
        assert_eq!(location(&r), format!("{page}?done=saved"), "{}", r.text());
        assert_eq!(app.admin_get(path).await.json()["granted_hosts"], json!(["cli.example.com"]));
        // A line that is not a host is said beside the field, with its line; nothing changes.
        let hosts = |lines: &'static str| [("form", "hosts"), ("granted_hosts", lines)];
        let r = submit(&app, &mut browser, page, page, &hosts("cli.example.com\n\nhttps://hooks.example.com/in\n")).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a URL for a host");
        let text = r.text();
        assert!(text.contains(r#"id="f-granted-hosts-error""#) && text.contains("Line 3: `https://hooks.example.com/in` is not a host name"), "{text}");
        assert!(text.contains("https://hooks.example.com/in\n</textarea>"), "what was typed stays: {text}");
        assert_eq!(app.admin_get(path).await.json()["granted_hosts"], json!(["cli.example.com"]));
        let r = submit(&app, &mut browser, page, page, &hosts(" cli.example.com\n10.0.0.5:8080\ncli.example.com\n")).await;
        assert_eq!(location(&r), format!("{page}?done=hosts_saved"), "{}", r.text());
        assert_eq!(app.admin_get(path).await.json()["granted_hosts"], json!(["cli.example.com", "10.0.0.5:8080"]));
        let r = submit(&app, &mut browser, page, page, &hosts("")).await;
        assert_eq!(location(&r), format!("{page}?done=hosts_saved"), "{}", r.text());
        assert_eq!(app.admin_get(path).await.json()["granted_hosts"], json!([]));

        // Hosts the manifest names: a checkbox each.
        let payments = plugin_upload("sandbox-payments", "sandbox_payments", |m| {
            m.replace(r#"http = ["*"]"#, r#"http = ["pay.example.com", "tokens.example.com"]"#)
        });
        let r = app.admin_post("/api/v1/admin/plugins", &payments).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let page = "/admin/plugins/sandbox-payments";
        let path = "/api/v1/admin/plugins/sandbox-payments";
        let text = get(&app, &mut browser, page).await.text();
        assert!(text.contains(r#"name="granted_hosts" value="pay.example.com""#)
            && text.contains(r#"name="granted_hosts" value="tokens.example.com""#), "{text}");
        let r = submit(&app, &mut browser, page, page, &[("form", "hosts"), ("granted_hosts", "tokens.example.com")]).await;
        assert_eq!(location(&r), format!("{page}?done=hosts_saved"), "{}", r.text());
        assert_eq!(app.admin_get(path).await.json()["granted_hosts"], json!(["tokens.example.com"]));
        let text = get(&app, &mut browser, page).await.text();
        assert!(text.contains(r#"value="tokens.example.com" checked"#) && !text.contains(r#"value="pay.example.com" checked"#), "{text}");
        let r = submit(&app, &mut browser, page, page, &[("form", "settings"), ("settings.base_url", "http://tokens.example.com"), ("priority", "100")]).await;
        assert_eq!(location(&r), format!("{page}?done=saved"), "{}", r.text());
        assert_eq!(app.admin_get(path).await.json()["granted_hosts"], json!(["tokens.example.com"]));
        let r = submit(&app, &mut browser, page, page, &[("form", "hosts"), ("granted_hosts", "evil.example")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a host the manifest does not name");
        assert!(r.text().contains(r#"id="f-granted-hosts-error""#), "{}", r.text());
        app.stop().await;
    }

    async fn signing_staff_out_and_resetting_their_factor_ask_to_confirm_first(backend: Backend) {
        let app = TestApp::start(backend).await;
        let email = "lost@staff.example";
        let id = staff(&app, "support", email).await;
        let session = api_session(&app, email).await;
        let mut owner = signed_in_as(&app, "owner").await;
        let page = format!("/admin/staff/{id}");
        // Signing them out everywhere: first the confirmation, and the session still works.
        let out = format!("{page}/sessions/revoke");
        let r = submit(&app, &mut owner, &page, &out, &[]).await;
        assert_page(&r, StatusCode::OK, "the confirmation");
        assert!(r.text().contains("out everywhere?") && r.text().contains(r#"name="confirm" value="yes""#), "{}", r.text());
        assert!(session_works(&app, &session).await, "not signed out yet");
        let r = submit(&app, &mut owner, &page, &out, &[("confirm", "yes")]).await;
        assert_eq!(location(&r), format!("{page}?done=signed_out"));
        assert!(!session_works(&app, &session).await, "signed out");
        // Their second factor: an authenticator app, reset after a confirmation.
        let session = api_session(&app, email).await;
        let r = app.request(Method::POST, "/api/v1/staff/me/mfa/totp", Some(&session), Some("{}".into()), Some("application/json")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let secret = r.json()["secret"].as_str().unwrap().to_owned();
        let now = u64::try_from(app.kernel.state.clock.now().timestamp()).unwrap();
        let code = olivine::staff::mfa::code_at(&secret, now).unwrap();
        let r = app.request(Method::POST, "/api/v1/staff/me/mfa/totp/confirm", Some(&session),
            Some(json!({"code": code}).to_string().into()), Some("application/json")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let reset = format!("{page}/mfa/reset");
        let r = submit(&app, &mut owner, &page, &reset, &[]).await;
        assert_page(&r, StatusCode::OK, "the confirmation");
        assert!(r.text().contains("second factor?") && r.text().contains(r#"name="confirm" value="yes""#), "{}", r.text());
        assert_eq!(app.count("staff_recovery_codes").await, 10, "nothing reset yet");
        let r = submit(&app, &mut owner, &page, &reset, &[("confirm", "yes")]).await;
        assert_eq!(location(&r), format!("{page}?done=factor_reset"));
        assert_eq!(app.count("staff_recovery_codes").await, 0);
        assert!(!session_works(&app, &session).await, "signed out with it");
        // An unknown token's revocation is the 404 page, not a confirmation.
        let r = submit(&app, &mut owner, &page, &format!("{page}/tokens/999999/revoke"), &[]).await;
        assert_page(&r, StatusCode::NOT_FOUND, "an unknown token");
        app.stop().await;
    }

    async fn operations_retries_a_dead_job_and_only_its_roles_see_it(backend: Backend) {
        let app = TestApp::start(backend).await;
        // A job that used up its attempts, as the worker leaves one.
        sqlx::query("INSERT INTO jobs (kind, payload, state, run_at, attempts, max_attempts, last_error, created_at, updated_at)
                VALUES ('test.nothing', '{}', 'dead', '2026-01-01T00:00:00.000Z', 5, 5, 'mail server refused', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')")
            .execute(&app.kernel.state.db.pool).await.unwrap();
        let id: i64 = sqlx::query_scalar("SELECT id FROM jobs WHERE kind = 'test.nothing'")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap();
        let mut owner = signed_in_as(&app, "owner").await;
        let page = get(&app, &mut owner, "/admin/operations").await;
        assert_page(&page, StatusCode::OK, "operations");
        assert!(page.text().contains("test.nothing") && page.text().contains("mail server refused"), "{}", page.text());
        let r = submit(&app, &mut owner, "/admin/operations", &format!("/admin/operations/jobs/{id}/retry"), &[]).await;
        assert_eq!(location(&r), "/admin/operations?done=retried");
        let audit = app.admin_get("/api/v1/admin/audit?action=job.retried").await.json();
        assert_eq!(audit["entries"][0]["target_id"], id.to_string(), "{audit}");
        let mut catalog = signed_in_as(&app, "catalog").await;
        assert_page(&get(&app, &mut catalog, "/admin/operations").await, StatusCode::FORBIDDEN, "operations for catalog");
        app.stop().await;
    }

    async fn the_settings_page_saves_with_errors_beside_the_field(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut owner = signed_in_as(&app, "owner").await;
        let page = get(&app, &mut owner, "/admin/settings").await;
        assert_page(&page, StatusCode::OK, "the settings");
        let csrf = csrf_of(&page);
        // Every setting as the page shows it, with some changed.
        let settings = app.admin_get("/api/v1/admin/settings").await.json();
        let mut fields: Vec<(String, String)> = settings.as_object().unwrap().iter().map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) => a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "),
                other => other.to_string(),
            };
            (k.clone(), text)
        }).collect();
        let set = |fields: &mut Vec<(String, String)>, key: &str, value: &str| {
            fields.iter_mut().find(|(k, _)| k == key).unwrap().1 = value.to_owned();
        };
        let post = async |browser: &mut Browser, fields: &Vec<(String, String)>| {
            let mut all: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
            all.extend(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            post_form(&app, browser, "/admin/settings", &all).await
        };
        set(&mut fields, "min_shelf_life_days", "ninety");
        set(&mut fields, "loyalty_max_redeem_percent", "0");
        let r = post(&mut owner, &fields).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a number that is not one");
        assert!(r.text().contains("id=\"f-min-shelf-life-days-error\""), "{}", r.text());
        set(&mut fields, "min_shelf_life_days", "90");
        let r = post(&mut owner, &fields).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a percent out of range");
        assert!(r.text().contains("id=\"f-loyalty-max-redeem-percent-error\""), "{}", r.text());
        set(&mut fields, "loyalty_max_redeem_percent", "40");
        set(&mut fields, "subscription_retry_days", "2, 5, 9");
        set(&mut fields, "search_synonyms", "vit c = vitamin c");
        set(&mut fields, "staff_two_factor", "sensitive_roles");
        let r = post(&mut owner, &fields).await;
        assert_eq!(location(&r), "/admin/settings?done=saved", "{}", r.text());
        let after = app.admin_get("/api/v1/admin/settings").await.json();
        assert_eq!(after["min_shelf_life_days"], 90, "{after}");
        assert_eq!(after["loyalty_max_redeem_percent"], 40, "{after}");
        assert_eq!(after["subscription_retry_days"], json!([2, 5, 9]), "{after}");
        assert_eq!(after["search_synonyms"], "vit c = vitamin c", "{after}");
        assert_eq!(after["staff_two_factor"], "sensitive_roles", "{after}");
        // Everything else is as it was.
        assert_eq!(after["prices_include_tax"], settings["prices_include_tax"], "{after}");
        assert_eq!(after["subscription_after_dunning"], settings["subscription_after_dunning"], "{after}");
        // The catalog role reads them, without the button, and may not save.
        let mut catalog = signed_in_as(&app, "catalog").await;
        let r = get(&app, &mut catalog, "/admin/settings").await;
        assert_page(&r, StatusCode::OK, "settings for catalog");
        assert!(!r.text().contains("Save the settings"), "{}", r.text());
        app.stop().await;
    }

    async fn catalog_staff_adjust_a_lot_with_a_reason_and_add_a_location(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app).await;
        let lot: i64 = sqlx::query_scalar("SELECT MIN(id) FROM lots")
            .fetch_one(&app.kernel.state.db.pool).await.unwrap();
        let mut catalog = signed_in_as(&app, "catalog").await;
        let page = format!("/admin/lots/{lot}");
        let adjust = format!("{page}/adjustments");
        let r = get(&app, &mut catalog, &page).await;
        assert_page(&r, StatusCode::OK, "the lot");
        assert!(r.text().contains("id=\"lot-quantity\">10<"), "{}", r.text());
        let r = submit(&app, &mut catalog, &page, &adjust, &[("delta", "minus two"), ("reason", "damaged")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "units that are not a number");
        assert!(r.text().contains("id=\"f-delta-error\""), "{}", r.text());
        let r = submit(&app, &mut catalog, &page, &adjust, &[("delta", "-2"), ("reason", "received")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a reason adjustments may not give");
        assert!(r.text().contains("id=\"f-reason-error\""), "{}", r.text());
        let r = submit(&app, &mut catalog, &page, &adjust, &[("delta", "-11"), ("reason", "damaged")]).await;
        assert!(r.status == StatusCode::UNPROCESSABLE_ENTITY || r.status == StatusCode::CONFLICT, "more than the lot holds: {}", r.status);
        let r = submit(&app, &mut catalog, &page, &adjust, &[("delta", "-2"), ("reason", "damaged"), ("note", "Crushed box")]).await;
        assert_eq!(location(&r), format!("{page}?done=adjusted"));
        let after = get(&app, &mut catalog, &page).await.text();
        assert!(after.contains("id=\"lot-quantity\">8<") && after.contains("Crushed box") && after.contains("damaged"), "{after}");
        let ledger = app.admin_get(&format!("/api/v1/admin/stock-ledger?lot_id={lot}")).await.json();
        assert_eq!((ledger[0]["delta"].as_i64(), ledger[0]["reason"].as_str()), (Some(-2), Some("damaged")), "{ledger}");
        // A location: a duplicate code is said under the code.
        let r = submit(&app, &mut catalog, "/admin/locations", "/admin/locations", &[("code", "AMS-1"), ("name", "Again")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a duplicate code");
        assert!(r.text().contains("id=\"f-code-error\""), "{}", r.text());
        let r = submit(&app, &mut catalog, "/admin/locations", "/admin/locations", &[("code", "RTM-1"), ("name", "Rotterdam")]).await;
        assert_eq!(location(&r), "/admin/locations");
        let locations = app.admin_get("/api/v1/admin/locations").await.json();
        assert!(locations.as_array().unwrap().iter().any(|l| l["code"] == "RTM-1"), "{locations}");
        // Support reads stock but does not adjust it.
        let mut support = signed_in_as(&app, "support").await;
        let r = get(&app, &mut support, &page).await;
        assert_page(&r, StatusCode::OK, "the lot for support");
        assert!(!r.text().contains("Adjust the units"), "{}", r.text());
        app.stop().await;
    }

    async fn the_rates_page_saves_each_table_and_names_the_line_with_a_problem(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app).await;
        let mut owner = signed_in_as(&app, "owner").await;
        let page = get(&app, &mut owner, "/admin/rates").await;
        assert_page(&page, StatusCode::OK, "the rates");
        assert!(page.text().contains("standard; Standard; *; 5000; 4.95; EUR"), "{}", page.text());
        let shipping = "standard; Standard; NL; 5000; 4.95; EUR\nexpress; Express; NL; 5000; -3; EUR";
        let r = submit(&app, &mut owner, "/admin/rates", "/admin/rates/shipping", &[("shipping", shipping)]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a negative price");
        assert!(r.text().contains("id=\"f-shipping-error\"") && r.text().contains("Line 2"), "{}", r.text());
        let shipping = "standard; Standard; NL; 5000; 4.95; EUR\nexpress; Express (next day); nl; 5000; 12,50; eur";
        let r = submit(&app, &mut owner, "/admin/rates", "/admin/rates/shipping", &[("shipping", shipping)]).await;
        assert_eq!(location(&r), "/admin/rates?done=shipping");
        let rates = app.get("/api/v1/shipping-rates").await.json();
        assert!(rates.as_array().unwrap().iter().any(|r| r["code"] == "express" && r["price_minor"] == 1250 && r["country"] == "NL"), "{rates}");
        let r = submit(&app, &mut owner, "/admin/rates", "/admin/rates/tax", &[("tax", "NL; 21\nDE; 19\nNL; 9")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "two rates for a country");
        assert!(r.text().contains("id=\"f-tax-error\""), "{}", r.text());
        let r = submit(&app, &mut owner, "/admin/rates", "/admin/rates/tax", &[("tax", "NL; 21\nDE; 19\nFR; 5.5")]).await;
        assert_eq!(location(&r), "/admin/rates?done=tax");
        let tax = app.admin_get("/api/v1/admin/tax-rates").await.json();
        assert!(tax.as_array().unwrap().iter().any(|t| t["country"] == "FR" && t["rate_bp"] == 550), "{tax}");
        // Support reads the rates (orders), without the buttons.
        let mut support = signed_in_as(&app, "support").await;
        let r = get(&app, &mut support, "/admin/rates").await;
        assert_page(&r, StatusCode::OK, "rates for support");
        assert!(!r.text().contains("Save the tax rates"), "{}", r.text());
        app.stop().await;
    }

    async fn the_owner_sets_single_sign_on_up_with_the_mapping_beside_its_field(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut owner = signed_in_as(&app, "owner").await;
        let page = get(&app, &mut owner, "/admin/staff/sso").await;
        assert_page(&page, StatusCode::OK, "the settings");
        assert!(page.text().contains("/api/v1/staff/sso/callback"), "{}", page.text());
        let fields = |mapping: &'static str| [("display_name", "Keycloak"), ("issuer_url", "https://login.example.com/realms/staff"),
            ("client_id", "olivine"), ("client_secret", "a secret"), ("groups_claim", "groups"), ("role_mapping", mapping)];
        let r = submit(&app, &mut owner, "/admin/staff/sso", "/admin/staff/sso", &fields("shop-owners = king")).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a role that is not one");
        assert!(r.text().contains("id=\"f-role-mapping-error\""), "{}", r.text());
        assert!(!r.text().contains("a secret"), "the secret is never shown back");
        let r = submit(&app, &mut owner, "/admin/staff/sso", "/admin/staff/sso", &fields("shop-owners = owner\nshop-support = support")).await;
        assert_eq!(location(&r), "/admin/staff/sso?done=saved", "{}", r.text());
        let settings = app.admin_get("/api/v1/admin/staff/sso").await.json();
        assert_eq!(settings["role_mapping"], json!([{"group": "shop-owners", "role": "owner"}, {"group": "shop-support", "role": "support"}]), "{settings}");
        assert_eq!(settings["client_secret_set"], true, "{settings}");
        // The sign-in page offers it.
        let mut nobody = Browser::default();
        assert!(get(&app, &mut nobody, "/admin/sign-in").await.text().contains("Sign in with Keycloak"));
        // Turning it off asks first.
        let r = submit(&app, &mut owner, "/admin/staff/sso", "/admin/staff/sso/remove", &[]).await;
        assert_page(&r, StatusCode::OK, "the confirmation");
        assert!(r.text().contains("Turn single sign-on off?") && r.text().contains("Keycloak"), "{}", r.text());
        assert_eq!(app.admin_get("/api/v1/admin/staff/sso").await.status, StatusCode::OK, "still on");
        let r = submit(&app, &mut owner, "/admin/staff/sso", "/admin/staff/sso/remove", &[("confirm", "yes")]).await;
        assert_eq!(location(&r), "/admin/staff/sso?done=removed");
        assert_eq!(app.admin_get("/api/v1/admin/staff/sso").await.status, StatusCode::NOT_FOUND);
        app.stop().await;
    }
    async fn a_products_images_are_uploaded_described_reordered_and_deleted(backend: Backend) {
        let app = TestApp::start_with(backend, |c| c.media.media_max_upload_bytes = 20_000).await;
        let product = store(&app).await;
        let variant = app.admin_get(&format!("/api/v1/admin/products/{product}")).await.json()["variants"][0]["id"]
            .as_i64().unwrap().to_string();
        let mut browser = signed_in_as(&app, "catalog").await;
        let page = format!("/admin/products/{product}/images");
        let r = get(&app, &mut browser, &page).await;
        assert_page(&r, StatusCode::OK, "the images page");
        assert!(r.text().contains("No image yet"), "{}", r.text());
        let csrf = csrf_of(&r);
        // Not an image, and an image over the limit: each said beside the file, nothing stored.
        let r = upload_parts(&app, &mut browser, &page, &csrf,
            &[Part::File("file", "a.png", "image/png", b"not a png at all")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "not an image");
        assert!(r.text().contains("id=\"f-file-error\""), "{}", r.text());
        let r = upload_parts(&app, &mut browser, &page, &csrf,
            &[Part::File("file", "big.png", "image/png", &png(100, 100)), Part::Text("alt", "too big")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "over the limit");
        assert!(element_text(&r.text(), "f-file-error").contains("limit"), "{}", r.text());
        assert!(image_ids(&app, product).await.is_empty());
        // Two images: the first of a variant, the second of the whole product.
        let r = upload_parts(&app, &mut browser, &page, &csrf, &[
            Part::File("file", "front.png", "image/png", &png(40, 30)),
            Part::Text("alt", "The jar from the front"),
            Part::Text("variant_id", &variant),
        ]).await;
        assert_eq!(location(&r), format!("{page}?done=uploaded"), "{}", r.text());
        let r = upload_parts(&app, &mut browser, &page, &csrf, &[
            Part::File("file", "back.png", "image/png", &png(30, 40)),
            Part::Text("alt", "The label"),
            Part::Text("variant_id", ""),
        ]).await;
        assert_eq!(location(&r), format!("{page}?done=uploaded"), "{}", r.text());
        let ids = image_ids(&app, product).await;
        assert_eq!(ids.len(), 2);
        let images = app.admin_get(&format!("/api/v1/admin/products/{product}/images")).await.json();
        assert_eq!(images[0]["alt"], "The jar from the front");
        assert_eq!(images[0]["variant_id"].to_string(), variant);
        assert!(images[1]["variant_id"].is_null(), "{images}");
        // The page lists them with their status; the product page shows them.
        let listed = get(&app, &mut browser, &page).await.text();
        assert!(listed.contains(&format!("id=\"image-{}\"", ids[0])) && listed.contains(&format!("id=\"image-{}\"", ids[1])), "{listed}");
        let product_page = get(&app, &mut browser, &format!("/admin/products/{product}")).await.text();
        assert!(product_page.contains("id=\"images\"") && product_page.contains(&format!("/media/{}/320.webp", images[0]["hash"].as_str().unwrap())), "{product_page}");
        // The second moves first; the first's text changes, and a too-long one is said beside it.
        let r = submit(&app, &mut browser, &page, &format!("{page}/{}/move", ids[1]), &[("to", "earlier")]).await;
        assert_eq!(location(&r), format!("{page}?done=moved"));
        assert_eq!(image_ids(&app, product).await, vec![ids[1], ids[0]]);
        let long = "x".repeat(501);
        let r = submit(&app, &mut browser, &page, &format!("{page}/{}", ids[0]), &[("alt", &long), ("variant_id", "")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a long alt text");
        assert!(r.text().contains("id=\"f-alt-error\""), "{}", r.text());
        let r = submit(&app, &mut browser, &page, &format!("{page}/{}", ids[0]), &[("alt", "Front"), ("variant_id", "")]).await;
        assert_eq!(location(&r), format!("{page}?done=saved"));
        let images = app.admin_get(&format!("/api/v1/admin/products/{product}/images")).await.json();
        assert_eq!(images[1]["alt"], "Front");
        assert!(images[1]["variant_id"].is_null(), "{images}");
        // Deleting asks first, then removes it with its audit entry.
        let confirm = format!("{page}/{}/delete", ids[1]);
        let r = get(&app, &mut browser, &confirm).await;
        assert_page(&r, StatusCode::OK, "the confirmation");
        assert!(r.text().contains("cannot be undone"), "{}", r.text());
        let r = submit(&app, &mut browser, &confirm, &confirm, &[]).await;
        assert_eq!(location(&r), format!("{page}?done=deleted"));
        assert_eq!(image_ids(&app, product).await, vec![ids[0]]);
        let audit = app.admin_get("/api/v1/admin/audit?action=product.image_deleted").await.json();
        assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
        // Support reads products but may not change their images.
        let mut support = signed_in_as(&app, "support").await;
        let r = get(&app, &mut support, &page).await;
        if r.status == StatusCode::OK {
            assert!(!r.text().contains("Upload an image"), "{}", r.text());
        } else {
            assert_page(&r, StatusCode::FORBIDDEN, "images for support");
        }
        app.stop().await;
    }

    async fn categories_are_added_moved_renamed_and_deleted_and_the_shop_follows(backend: Backend) {
        let app = TestApp::start(backend).await;
        store(&app).await;
        let mut browser = signed_in_as(&app, "catalog").await;
        let list = "/admin/categories";
        let r = submit(&app, &mut browser, list, list, &[("name", "Serums"), ("slug", "Not A Slug"), ("parent", ""), ("position", "x")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a bad slug and position");
        assert!(r.text().contains("id=\"f-slug-error\"") && r.text().contains("id=\"f-position-error\""), "{}", r.text());
        for (name, slug, parent) in [("Serums", "serums", ""), ("Night serums", "night-serums", "serums")] {
            let r = submit(&app, &mut browser, list, list, &[("name", name), ("slug", slug), ("parent", parent), ("position", "1")]).await;
            assert_eq!(location(&r), format!("{list}?done=created"), "{}", r.text());
        }
        let r = submit(&app, &mut browser, list, list, &[("name", "Again"), ("slug", "serums"), ("parent", ""), ("position", "")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a taken slug");
        assert!(r.text().contains("id=\"f-slug-error\""), "{}", r.text());
        let id_of = async |slug: &str| -> i64 {
            sqlx::query_scalar("SELECT id FROM categories WHERE slug = $1").bind(slug)
                .fetch_one(&app.kernel.state.db.pool).await.unwrap()
        };
        let serums = id_of("serums").await;
        let night = id_of("night-serums").await;
        // A product in the subcategory.
        let r = app.admin_post("/api/v1/admin/products", &{
            let mut p = supplement("glow", "GLOW");
            p["categories"] = json!(["night-serums"]);
            p
        }).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        // The tree shows the subcategory under its parent, with its product count.
        let page = get(&app, &mut browser, list).await.text();
        assert!(page.find(&format!("category-{serums}")) < page.find(&format!("category-{night}")), "{page}");
        // A category cannot go inside its own subcategory.
        let edit = format!("{list}/{serums}");
        let r = submit(&app, &mut browser, &edit, &edit, &[("name", "Serums"), ("slug", "serums"), ("parent", "night-serums"), ("position", "1")]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a cycle");
        assert!(r.text().contains("id=\"f-parent-error\""), "{}", r.text());
        // Renamed, the product's page and the search follow.
        let edit_night = format!("{list}/{night}");
        let r = submit(&app, &mut browser, &edit_night, &edit_night,
            &[("name", "Overnight serums"), ("slug", "overnight"), ("parent", "serums"), ("position", "2")]).await;
        assert_eq!(location(&r), format!("{list}?done=saved"), "{}", r.text());
        wait_until("the product shows the new name", async || {
            app.get("/api/v1/products/glow").await.json()["categories"][0]["name"] == "Overnight serums"
        }).await;
        wait_until("the search has the new slug", async || {
            let r = app.get("/api/v1/search?q=magnesium&category=overnight").await;
            r.json()["total"].as_i64().unwrap_or(0) == 1
        }).await;
        // A category with a subcategory is not deleted; its subcategory is, and the product stays.
        let confirm = format!("{list}/{serums}/delete");
        assert_page(&get(&app, &mut browser, &confirm).await, StatusCode::OK, "the confirmation");
        let r = submit(&app, &mut browser, &confirm, &confirm, &[]).await;
        assert_page(&r, StatusCode::UNPROCESSABLE_ENTITY, "a parent");
        assert!(r.text().contains("subcategor"), "{}", r.text());
        let confirm = format!("{list}/{night}/delete");
        let r = submit(&app, &mut browser, &confirm, &confirm, &[]).await;
        assert_eq!(location(&r), format!("{list}?done=deleted"));
        wait_until("the product is outside it", async || {
            app.get("/api/v1/products/glow").await.json()["categories"].as_array().is_some_and(|c| c.is_empty())
        }).await;
        let audit = app.admin_get("/api/v1/admin/audit?target_type=category").await.json();
        let actions: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"category.updated") && actions.contains(&"category.deleted"), "{actions:?}");
        // The API says the same.
        let r = app.admin_send(Method::PUT, &format!("/api/v1/admin/categories/{serums}"),
            &json!({"slug": "serums", "name": "", "parent": null, "position": 0})).await;
        r.assert_field_error(422, "name");
        assert_eq!(app.admin_send(Method::DELETE, &format!("/api/v1/admin/categories/{serums}"), &json!(null)).await.status,
            StatusCode::NO_CONTENT);
        assert_eq!(app.admin_send(Method::DELETE, &format!("/api/v1/admin/categories/{serums}"), &json!(null)).await.status,
            StatusCode::NOT_FOUND);
        app.stop().await;
    }
}
