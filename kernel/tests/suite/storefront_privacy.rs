//! The account's addresses and privacy pages in the storefront, driven like a browser
//! would (the helpers are in `common/browser.rs`): forms, cookies carried by
//! hand, CSRF tokens taken from the pages. Each test runs on SQLite and on PostgreSQL.

use crate::common::browser::*;
use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};

#[track_caller]
fn assert_no_store(r: &TestResponse) {
    assert_eq!(
        r.headers
            .get(header::CACHE_CONTROL)
            .map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{:?}",
        r.headers
    );
}

#[track_caller]
fn assert_not_found_page(r: &TestResponse) {
    assert_html(r, StatusCode::NOT_FOUND);
    assert!(
        r.text().contains("We couldn't find that page"),
        "{}",
        r.text()
    );
}

#[track_caller]
fn assert_refused(r: &TestResponse) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("This form has expired"));
}

/// The address ids a page links to, in order of first appearance.
fn address_ids(page: &TestResponse) -> Vec<String> {
    let html = page.text();
    let mut ids: Vec<String> = Vec::new();
    for (at, _) in html.match_indices("/account/addresses/adr_") {
        let rest = &html[at + "/account/addresses/".len()..];
        let id = &rest[..rest.find('/').unwrap()];
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
    }
    ids
}

/// A bearer token of the customer, through the JSON API.
async fn api_token(app: &TestApp, email: &str) -> String {
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
    r.json()["access_token"].as_str().unwrap().to_owned()
}

/// Adds an address through the form; answers the page shown afterwards.
async fn add_address(
    app: &TestApp,
    browser: &mut Browser,
    fields: &[(&str, &str)],
) -> TestResponse {
    let csrf = csrf_of(&get(app, browser, "/account/addresses").await);
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let r = post_form(app, browser, "/account/addresses", &all).await;
    assert_eq!(location(&r), "/account/addresses?done=added");
    get(app, browser, "/account/addresses?done=added").await
}

/// Nothing was erased: the account signs in and keeps its address.
async fn account_still_there(app: &TestApp, email: &str) {
    let r = sign_in(app, &mut Browser::default(), email, PASSWORD, None).await;
    assert_eq!(location(&r), "/account", "the account still signs in");
    assert_eq!(app.count("customer_addresses").await, 1);
}

const SCRIPT: &str = "<script>alert(1)</script>";
const SCRIPT_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

both_backends! {
    async fn addresses_are_added_edited_and_deleted_through_the_forms(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut browser = signed_in(&app, "ann@example.com", "Ann").await;

        // Linked from the account page.
        let account = get(&app, &mut browser, "/account").await;
        assert!(account.text().contains(r#"href="/account/addresses""#));
        assert!(account.text().contains(r#"href="/account/privacy""#));

        let page = get(&app, &mut browser, "/account/addresses").await;
        assert_html(&page, StatusCode::OK);
        assert_no_store(&page);
        assert!(page.text().contains("You have no saved addresses yet."));
        let csrf = csrf_of(&page);

        // Without the token: refused, nothing stored.
        let r = post_form(&app, &mut browser, "/account/addresses", &[
            ("name", "Ann"), ("line1", "Main St 1"), ("city", "Amsterdam"), ("country", "NL"),
        ]).await;
        assert_refused(&r);
        assert_eq!(app.count("customer_addresses").await, 0);

        // Bad input: the form again, 422, each field's message, the values kept (escaped).
        let line1 = format!("{SCRIPT} Main St 1");
        let r = post_form(&app, &mut browser, "/account/addresses", &[
            ("csrf", &csrf), ("name", " "), ("line1", &line1), ("city", ""),
            ("country", "XX"), ("phone", "12"),
        ]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_no_store(&r);
        let html = r.text();
        assert!(html.contains("Recipient is required."), "{html}");
        assert!(html.contains("City is required."), "{html}");
        assert!(html.contains("Country code must be an ISO 3166-1 alpha-2 country code"), "{html}");
        assert!(html.contains("Phone must be a phone number"), "{html}");
        assert!(html.contains(&format!("{SCRIPT_ESCAPED} Main St 1")), "{html}");
        assert!(!html.contains(SCRIPT), "{html}");
        assert_eq!(app.count("customer_addresses").await, 0);

        // A good one: stored encrypted, shown decrypted and escaped; the first is the default.
        let page = add_address(&app, &mut browser, &[
            ("label", "Home"), ("name", "Ann Smith"), ("line1", &line1), ("city", "Amsterdam"),
            ("postal_code", "1017 AB"), ("country", "nl"),
        ]).await;
        let html = page.text();
        assert!(html.contains("The address was added."), "{html}");
        assert!(html.contains(&format!("{SCRIPT_ESCAPED} Main St 1")), "{html}");
        assert!(!html.contains(SCRIPT), "{html}");
        assert!(html.contains("1017 AB Amsterdam, NL"), "{html}");
        assert!(html.contains("Default"));
        let page = add_address(&app, &mut browser, &[
            ("name", "Ann at work"), ("line1", "Office Road 2"), ("city", "Utrecht"), ("country", "NL"),
        ]).await;
        assert_eq!(app.count("customer_addresses").await, 2);
        let ids = address_ids(&page);
        assert_eq!(ids.len(), 2, "{}", page.text());
        let (home, work) = (ids[0].clone(), ids[1].clone());
        // Only the other address offers "Make default".
        let make_default = |id: &str| format!(r#"action="/account/addresses/{id}/default""#);
        assert!(!page.text().contains(&make_default(&home)) && page.text().contains(&make_default(&work)));

        // Make the work address the default.
        let csrf = csrf_of(&page);
        let r = post_form(&app, &mut browser, &format!("/account/addresses/{work}/default"), &[("csrf", &csrf)]).await;
        assert_eq!(location(&r), "/account/addresses?done=default");
        let page = get(&app, &mut browser, &location(&r)).await;
        assert!(page.text().contains("That address is now your default."));
        assert!(page.text().contains(&make_default(&home)) && !page.text().contains(&make_default(&work)));

        // Edit: the form holds the stored values.
        let edit_path = format!("/account/addresses/{home}/edit");
        let edit = get(&app, &mut browser, &edit_path).await;
        assert_html(&edit, StatusCode::OK);
        assert_no_store(&edit);
        assert!(edit.text().contains(r#"value="Amsterdam""#), "{}", edit.text());
        assert!(edit.text().contains(SCRIPT_ESCAPED) && !edit.text().contains(SCRIPT));
        let csrf = csrf_of(&edit);
        let changed = |postal_code: &'static str| {
            vec![
                ("csrf", csrf.clone()), ("label", "Home".to_owned()), ("name", "Ann Smith".to_owned()),
                ("line1", "Canal 3".to_owned()), ("line2", String::new()), ("city", "Rotterdam".to_owned()),
                ("postal_code", postal_code.to_owned()), ("country", "NL".to_owned()),
            ]
        };
        // Bad input: 422, the message, what was typed kept.
        let fields = changed("'; DROP TABLE x; --");
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = post_form(&app, &mut browser, &edit_path, &fields).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("Postal code must be up to 16 letters"), "{}", r.text());
        assert!(r.text().contains(r#"value="Rotterdam""#));
        // Without the token: refused.
        let r = post_form(&app, &mut browser, &edit_path, &fields[1..]).await;
        assert_refused(&r);
        // The real thing.
        let fields = changed("3011 AA");
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = post_form(&app, &mut browser, &edit_path, &fields).await;
        assert_eq!(location(&r), "/account/addresses?done=updated");
        let page = get(&app, &mut browser, &location(&r)).await;
        let html = page.text();
        assert!(html.contains("The address was saved."));
        assert!(html.contains("Canal 3, 3011 AA Rotterdam, NL"), "{html}");
        assert!(!html.contains("Amsterdam") && !html.contains(SCRIPT_ESCAPED), "{html}");
        // The API sees the same: the edit kept the default where it was.
        let token = api_token(&app, "ann@example.com").await;
        let listed = app.request(Method::GET, "/api/v1/account/addresses", Some(&token), None, None).await.json();
        let listed = listed.as_array().unwrap();
        let home_json = listed.iter().find(|a| a["id"] == home.as_str()).unwrap();
        assert_eq!(home_json["city"], "Rotterdam");
        assert_eq!(home_json["line2"], Value::Null);
        assert_eq!(home_json["is_default"], false);

        // Delete: refused without the token, then done.
        let csrf = csrf_of(&page);
        let delete_path = format!("/account/addresses/{work}/delete");
        assert_refused(&post_form(&app, &mut browser, &delete_path, &[]).await);
        assert_eq!(app.count("customer_addresses").await, 2);
        let r = post_form(&app, &mut browser, &delete_path, &[("csrf", &csrf)]).await;
        assert_eq!(location(&r), "/account/addresses?done=deleted");
        let page = get(&app, &mut browser, &location(&r)).await;
        assert!(page.text().contains("The address was deleted."));
        assert!(!page.text().contains("Utrecht"));
        assert_eq!(address_ids(&page), vec![home.clone()]);
        assert_eq!(app.count("customer_addresses").await, 1);
        // Deleted means gone: its edit page is the 404 page.
        assert_not_found_page(&get(&app, &mut browser, &format!("/account/addresses/{work}/edit")).await);

        // Not signed in: sent to sign in.
        let r = get(&app, &mut Browser::default(), "/account/addresses").await;
        assert_eq!(location(&r), "/account/sign-in?next=%2Faccount%2Faddresses");
        app.stop().await;
    }

    async fn another_customers_address_is_the_404_page(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut ann = signed_in(&app, "ann@example.com", "Ann").await;
        let page = add_address(&app, &mut ann, &[
            ("name", "Ann Smith"), ("line1", "Main St 1"), ("city", "Amsterdam"), ("country", "NL"),
        ]).await;
        let id = address_ids(&page).remove(0);

        let mut bob = signed_in(&app, "bob@example.com", "Bob").await;
        let own = get(&app, &mut bob, "/account/addresses").await;
        assert!(!own.text().contains(&id) && !own.text().contains("Amsterdam"));
        let csrf = csrf_of(&own);
        let r = get(&app, &mut bob, &format!("/account/addresses/{id}/edit")).await;
        assert_not_found_page(&r);
        assert!(!r.text().contains("Amsterdam"));
        for action in ["edit", "delete", "default"] {
            let r = post_form(&app, &mut bob, &format!("/account/addresses/{id}/{action}"), &[
                ("csrf", &csrf), ("name", "Bob"), ("line1", "Evil 1"), ("city", "Nowhere"), ("country", "NL"),
            ]).await;
            assert_not_found_page(&r);
        }
        // Ids that cannot exist are the same page.
        assert_not_found_page(&get(&app, &mut bob, "/account/addresses/nonsense/edit").await);
        assert_not_found_page(&get(&app, &mut bob, "/account/addresses/adr_%00/edit").await);

        // Ann's address is untouched.
        let page = get(&app, &mut ann, "/account/addresses").await;
        assert!(page.text().contains("Main St 1, Amsterdam, NL"), "{}", page.text());
        assert!(!page.text().contains("Evil"));
        assert_eq!(app.count("customer_addresses").await, 1);
        app.stop().await;
    }

    async fn consents_are_recorded_and_the_data_downloads(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut browser = signed_in(&app, "cat@example.com", "Cat").await;
        add_address(&app, &mut browser, &[
            ("name", "Cat Jones"), ("line1", "Harbour Lane 7"), ("city", "Leiden"), ("country", "NL"),
        ]).await;

        let page = get(&app, &mut browser, "/account/privacy").await;
        assert_html(&page, StatusCode::OK);
        assert_no_store(&page);
        let checked = |page: &TestResponse, purpose: &str| {
            page.text().contains(&format!(r#"name="{purpose}" value="1" checked"#))
        };
        assert!(page.text().contains("You have not made any choice yet."));
        assert!(!checked(&page, "marketing_email") && !checked(&page, "analytics"));
        let csrf = csrf_of(&page);

        // Without the token: refused, nothing recorded.
        assert_refused(&post_form(&app, &mut browser, "/account/consents", &[("marketing_email", "1")]).await);
        assert_eq!(app.count("customer_consents").await, 0);

        // Tick marketing email: both purposes get a row (the other declined).
        let r = post_form(&app, &mut browser, "/account/consents", &[("csrf", &csrf), ("marketing_email", "1")]).await;
        assert_eq!(location(&r), "/account/privacy?updated=consents");
        let page = get(&app, &mut browser, &location(&r)).await;
        assert!(page.text().contains("Your choices were saved."));
        assert!(checked(&page, "marketing_email") && !checked(&page, "analytics"), "{}", page.text());
        assert_eq!(app.count("customer_consents").await, 2);
        // The same choice again appends nothing.
        post_form(&app, &mut browser, "/account/consents", &[("csrf", &csrf), ("marketing_email", "1")]).await;
        assert_eq!(app.count("customer_consents").await, 2);
        // Swap them.
        post_form(&app, &mut browser, "/account/consents", &[("csrf", &csrf), ("analytics", "1")]).await;
        let page = get(&app, &mut browser, "/account/privacy").await;
        assert!(!checked(&page, "marketing_email") && checked(&page, "analytics"));
        assert_eq!(app.count("customer_consents").await, 4);
        assert_eq!(page.text().matches("<td>Agreed</td>").count(), 2, "{}", page.text());
        assert_eq!(page.text().matches("<td>Declined</td>").count(), 2);
        // The API reads the same record, with the page's wording version.
        let token = api_token(&app, "cat@example.com").await;
        let consents = app.request(Method::GET, "/api/v1/account/consents", Some(&token), None, None).await.json();
        let current = consents["current"].as_array().unwrap();
        let state_of = |purpose: &str| current.iter().find(|c| c["purpose"] == purpose).unwrap().clone();
        assert_eq!(state_of("analytics")["granted"], true);
        assert_eq!(state_of("marketing_email")["granted"], false);
        assert_eq!(state_of("analytics")["source"], "account");
        assert_eq!(state_of("analytics")["version"], olivine::storefront::privacy::CONSENT_WORDING_VERSION);
        assert_eq!(consents["history"].as_array().unwrap().len(), 4);

        // "Download my data": the API's document, as an attachment.
        assert!(page.text().contains(r#"href="/account/export""#));
        let r = get(&app, &mut browser, "/account/export").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_no_store(&r);
        assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
        let disposition = r.headers[header::CONTENT_DISPOSITION].to_str().unwrap();
        assert!(disposition.starts_with(r#"attachment; filename="olivine-export-c_"#), "{disposition}");
        let export = r.json();
        assert_eq!(export["format"], "olivine.export.v1");
        assert_eq!(export["sections"]["profile"]["email"], "cat@example.com");
        assert_eq!(export["sections"]["profile"]["name"], "Cat");
        assert_eq!(export["sections"]["addresses"][0]["line1"], "Harbour Lane 7");
        assert_eq!(export["sections"]["consents"]["history"].as_array().unwrap().len(), 4);
        let api = app.request(Method::GET, "/api/v1/account/export", Some(&token), None, None).await.json();
        let keys = |v: &Value| v["sections"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&export), keys(&api));
        assert_eq!(export["pseudonym"], api["pseudonym"]);
        // The download is recorded as a completed export request.
        assert_eq!(api["sections"]["privacy_requests"].as_array().unwrap().len(), 1, "{api}");

        // Not signed in: sent to sign in, nothing downloaded.
        let r = get(&app, &mut Browser::default(), "/account/export").await;
        assert!(location(&r).starts_with("/account/sign-in"));
        app.stop().await;
    }

    async fn erasure_through_the_form(backend: Backend) {
        let app = TestApp::start(backend).await;
        let mut browser = signed_in(&app, "eve@example.com", "Eve").await;
        add_address(&app, &mut browser, &[
            ("name", "Eve Adams"), ("line1", "Quiet Street 9"), ("city", "Delft"), ("country", "NL"),
        ]).await;
        let before = browser.clone();
        let page = get(&app, &mut browser, "/account/privacy").await;
        assert!(page.text().contains("erase my account"));
        let csrf = csrf_of(&page);

        // Wrong password: 422, the password not echoed, nothing erased.
        let wrong = "not-my-password-77";
        let r = post_form(&app, &mut browser, "/account/erasure", &[
            ("csrf", &csrf), ("password", wrong), ("confirm", "erase my account"),
        ]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("Password is wrong."), "{}", r.text());
        assert!(!r.text().contains(wrong));
        account_still_there(&app, "eve@example.com").await;
        // Wrong phrase: 422, nothing erased.
        let r = post_form(&app, &mut browser, "/account/erasure", &[
            ("csrf", &csrf), ("password", PASSWORD), ("confirm", "erase my acount"),
        ]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("exactly."), "{}", r.text());
        assert!(!r.text().contains(PASSWORD));
        account_still_there(&app, "eve@example.com").await;
        // Both empty: both named.
        let r = post_form(&app, &mut browser, "/account/erasure", &[("csrf", &csrf)]).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("Enter your password.") && r.text().contains("exactly."));
        // Without the token: refused.
        assert_refused(&post_form(&app, &mut browser, "/account/erasure", &[
            ("password", PASSWORD), ("confirm", "erase my account"),
        ]).await);
        account_still_there(&app, "eve@example.com").await;

        // The real thing: the cookies are deleted and the status page is next.
        let r = post_form(&app, &mut browser, "/account/erasure", &[
            ("csrf", &csrf), ("password", PASSWORD), ("confirm", "erase my account"),
        ]).await;
        let status_path = location(&r);
        assert!(status_path.starts_with("/privacy-requests/pr_"), "{status_path}");
        for name in ["olv_access", "olv_refresh"] {
            assert!(set_cookie(&r, name).contains("Max-Age=0"), "{name}");
        }
        assert!(!browser.has("olv_access") && !browser.has("olv_refresh"));
        assert_eq!(app.count("customer_addresses").await, 0);

        // The status page works without signing in, is not cached and leaks no referrer.
        let status = get(&app, &mut browser, &status_path).await;
        assert_html(&status, StatusCode::OK);
        assert_no_store(&status);
        assert_eq!(status.headers[header::REFERRER_POLICY], "no-referrer");
        let html = status.text();
        assert!(html.contains(r#"data-status="completed""#), "{html}");
        assert!(html.contains("Your account has been erased"), "{html}");
        let id = status_path.trim_start_matches("/privacy-requests/");
        assert!(html.contains(&format!("/api/v1/privacy-requests/{id}")), "{html}");
        assert_eq!(app.get(&format!("/api/v1/privacy-requests/{id}")).await.json()["status"], "completed");
        assert!(!html.contains("Sign out") && html.contains("Sign in"));

        // The old cookies are refused, and deleted.
        let mut old = before.clone();
        for path in ["/account", "/account/addresses", "/account/privacy", "/account/export"] {
            let r = get(&app, &mut old.clone(), path).await;
            assert!(location(&r).starts_with("/account/sign-in"), "{path}");
        }
        let r = get(&app, &mut old, "/account").await;
        assert!(sets_cookie(&r, "olv_access") && set_cookie(&r, "olv_access").contains("Max-Age=0"));
        // The old credentials no longer sign in.
        let r = sign_in(&app, &mut Browser::default(), "eve@example.com", PASSWORD, None).await;
        assert_html(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().contains("The email or password is wrong."));

        // An unknown request is the 404 page.
        assert_not_found_page(&get(&app, &mut Browser::default(), "/privacy-requests/pr_nope").await);
        app.stop().await;
    }
}
