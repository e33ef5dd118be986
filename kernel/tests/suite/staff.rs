//! Staff users and roles: every admin route refuses a request without a token, with a
//! customer's token and with a staff token whose role lacks the route's permission;
//! sign-in, API tokens, disabling and revoking take effect at once; the audit log names
//! the staff user who acted.

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use olivine::staff::permissions::{Access, Role, required};
use serde_json::json;

async fn call(app: &TestApp, method: &Method, path: &str, token: Option<&str>) -> TestResponse {
    let body = if method == Method::GET || method == Method::DELETE {
        None
    } else {
        Some(Body::from("{}"))
    };
    app.request(method.clone(), path, token, body, Some("application/json"))
        .await
}

/// A role that lacks `access`, to prove the route refuses it.
fn underprivileged(access: Access) -> Option<Role> {
    match access {
        Access::AnyStaff => None,
        Access::Needs(permission) => [Role::Support, Role::Catalog, Role::Admin]
            .into_iter()
            .find(|role| !role.allows(permission)),
    }
}

/// Runs `olivine <args>` against a test database, with `stdin` as standard input.
async fn olivine(db: &TestDb, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let env = db.env();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_olivine"));
        command
            .args(&args)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("olivine runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("olivine ends");
        (
            out.status.code().expect("exit code"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

both_backends! {
    async fn the_cli_creates_staff_and_tokens(backend: Backend) {
        let app = TestApp::start(backend).await;
        let (code, out, err) = olivine(&app.db, &["staff", "create", "--email", "Cat@Shop.Example",
            "--name", "Cat", "--role", "catalog", "--password-stdin"], "catalog password 1\n").await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("cat@shop.example") && out.contains("catalog"), "{out}");
        let (code, out, err) = olivine(&app.db, &["staff", "create", "--email", "x@shop.example",
            "--name", "X", "--role", "root"], "").await;
        assert_ne!(code, 0);
        assert!(err.contains("unknown role `root`"), "{out}{err}");
        let (code, out, _) = olivine(&app.db, &["staff", "list"], "").await;
        assert_eq!(code, 0);
        assert!(out.contains("owner@olivine.local") && out.contains("cat@shop.example"), "{out}");
        let (code, token, err) = olivine(&app.db, &["staff", "token", "--email", "cat@shop.example",
            "--label", "laptop"], "").await;
        assert_eq!(code, 0, "{err}");
        let token = token.trim();
        let me = app.request(Method::GET, "/api/v1/admin/me", Some(token), None, None).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text());
        assert_eq!(me.json()["role"], "catalog");
        // The password from standard input signs in.
        let session = app.request(Method::POST, "/api/v1/staff/sign-in", None,
            Some(Body::from(json!({"email": "cat@shop.example", "password": "catalog password 1"}).to_string())),
            Some("application/json")).await;
        assert_eq!(session.status, StatusCode::OK, "{}", session.text());
        let (code, _, err) = olivine(&app.db, &["staff", "token", "--email", "nobody@shop.example"], "").await;
        assert_ne!(code, 0);
        assert!(err.contains("no staff user"), "{err}");
        let audit = app.admin_get("/api/v1/admin/audit?actor=cli").await.json();
        assert_eq!(audit["entries"].as_array().unwrap().len(), 2, "{audit}");
        app.stop().await;
    }

    async fn every_admin_route_checks_token_and_permission(backend: Backend) {
        let app = TestApp::start(backend).await;
        let customer = app.customer_token("shopper@example.com").await;
        let mut tokens = std::collections::HashMap::new();
        for role in [Role::Support, Role::Catalog, Role::Admin] {
            tokens.insert(role, app.staff_token(role.name()).await);
        }
        let (_, openapi) = olivine::http::api(&app.kernel.state);
        let mut checked = 0;
        for (path, item) in openapi.paths.paths.iter() {
            let Some(route) = path.strip_prefix("/api/v1/admin") else { continue };
            let operations = [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::PATCH, item.patch.is_some()),
                (Method::DELETE, item.delete.is_some()),
            ];
            // Ids nothing has, so the owner's calls change nothing (a 404 is fine).
            let concrete = path.replace("{id}", "999999").replace("{token_id}", "999999")
                .replace("{slug}", "x").replace("{pseudonym}", "c_x");
            for (method, present) in operations {
                if !present {
                    continue;
                }
                let access = required(&method, route)
                    .unwrap_or_else(|| panic!("{method} {path} has no permission in the table"));
                let none = call(&app, &method, &concrete, None).await;
                assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{method} {path} without a token");
                assert_eq!(none.json()["error"], "unauthorized");
                let as_customer = call(&app, &method, &concrete, Some(&customer)).await;
                assert_eq!(as_customer.status, StatusCode::UNAUTHORIZED, "{method} {path} with a customer token");
                let garbage = call(&app, &method, &concrete, Some("olv_not-a-real-token")).await;
                assert_eq!(garbage.status, StatusCode::UNAUTHORIZED, "{method} {path} with a made-up token");
                if let Some(role) = underprivileged(access) {
                    let refused = call(&app, &method, &concrete, Some(&tokens[&role])).await;
                    assert_eq!(refused.status, StatusCode::FORBIDDEN,
                        "{method} {path} as {}: {}", role.name(), refused.text());
                    assert_eq!(refused.json()["error"], "forbidden");
                }
                // The owner gets past the guard (the handler may still refuse the body).
                let owner = call(&app, &method, &concrete, Some(ADMIN_TOKEN)).await;
                assert!(
                    owner.status != StatusCode::UNAUTHORIZED && owner.status != StatusCode::FORBIDDEN,
                    "{method} {path} as the owner: {} {}", owner.status, owner.text()
                );
                checked += 1;
            }
        }
        // The catalog, inventory, plugin, audit, customer and staff routes at least.
        assert!(checked >= 25, "only {checked} admin operations found");
        app.stop().await;
    }

    async fn roles_grant_what_they_say(backend: Backend) {
        let app = TestApp::start(backend).await;
        basic_setup(&app).await;
        let catalog = app.staff_token("catalog").await;
        let support = app.staff_token("support").await;
        let product = supplement("role-made", "RM");
        let made = app.request(Method::POST, "/api/v1/admin/products", Some(&catalog),
            Some(Body::from(product.to_string())), Some("application/json")).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
        let by_support = app.request(Method::POST, "/api/v1/admin/products", Some(&support),
            Some(Body::from(supplement("support-made", "SM").to_string())), Some("application/json")).await;
        assert_eq!(by_support.status, StatusCode::FORBIDDEN);
        assert!(by_support.json()["message"].as_str().unwrap_or("").contains("catalog.write"));
        // Support reads the catalog.
        let read = app.request(Method::GET, "/api/v1/admin/products", Some(&support), None, None).await;
        assert_eq!(read.status, StatusCode::OK);
        // /me answers the role and its permissions.
        let me = app.request(Method::GET, "/api/v1/admin/me", Some(&catalog), None, None).await;
        assert_eq!(me.status, StatusCode::OK);
        let me = me.json();
        assert_eq!(me["role"], "catalog");
        let permissions: Vec<&str> = me["permissions"].as_array().unwrap().iter()
            .filter_map(|p| p.as_str()).collect();
        assert!(permissions.contains(&"catalog.write"));
        assert!(!permissions.contains(&"plugins.manage"));
        // The audit log names the catalog user.
        let entries = app.admin_get("/api/v1/admin/audit?action=product.created").await.json();
        let actor = format!("staff:{}", me["id"]);
        assert!(entries["entries"].as_array().unwrap().iter().any(|e| e["actor"] == actor.as_str()),
            "no product.created by {actor}: {entries}");
        app.stop().await;
    }

    async fn password_sign_in_disable_and_revoke(backend: Backend) {
        let app = TestApp::start(backend).await;
        let created = app.admin_post("/api/v1/admin/staff", &json!({
            "email": "Ana@Shop.Example", "name": "Ana", "role": "support",
            "password": "a long enough password",
        })).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let id = created.json()["id"].as_i64().unwrap();
        assert_eq!(created.json()["email"], "ana@shop.example");
        let duplicate = app.admin_post("/api/v1/admin/staff", &json!({
            "email": "ana@shop.example", "name": "Ana 2", "role": "support",
        })).await;
        duplicate.assert_field_error(409, "email");
        let bad = app.admin_post("/api/v1/admin/staff", &json!({
            "email": "not-an-email", "name": "", "role": "root",
        })).await;
        assert_eq!(bad.status.as_u16(), 422, "{}", bad.text());

        let sign_in = |password: &'static str| {
            let app = &app;
            async move {
                app.request(Method::POST, "/api/v1/staff/sign-in", None,
                    Some(Body::from(json!({"email": "ana@shop.example", "password": password}).to_string())),
                    Some("application/json")).await
            }
        };
        let wrong = sign_in("not the password!").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        let unknown = app.request(Method::POST, "/api/v1/staff/sign-in", None,
            Some(Body::from(json!({"email": "nobody@shop.example", "password": "whatever it is"}).to_string())),
            Some("application/json")).await;
        assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.json(), unknown.json(), "the same answer for both");
        let session = sign_in("a long enough password").await;
        assert_eq!(session.status, StatusCode::OK, "{}", session.text());
        let token = session.json()["token"].as_str().unwrap().to_owned();
        let me = app.request(Method::GET, "/api/v1/admin/me", Some(&token), None, None).await;
        assert_eq!(me.json()["email"], "ana@shop.example");

        // Sign-out ends that token.
        let out = app.request(Method::POST, "/api/v1/staff/sign-out", Some(&token), None, None).await;
        assert_eq!(out.status, StatusCode::NO_CONTENT);
        let after = app.request(Method::GET, "/api/v1/admin/me", Some(&token), None, None).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
        // Audited as the staff member's own act; a second sign-out with it is refused.
        let out = app.admin_get("/api/v1/admin/audit?action=staff.signed_out").await.json();
        let out = out["entries"].as_array().unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0]["actor"].as_str(), out[0]["target_id"].as_str(), out[0]["after"]["kind"].as_str()),
            (Some(format!("staff:{id}").as_str()), Some(id.to_string().as_str()), Some("session")), "{out:?}");
        let again = app.request(Method::POST, "/api/v1/staff/sign-out", Some(&token), None, None).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED);

        // An API token works until revoked.
        let issued = app.admin_post(&format!("/api/v1/admin/staff/{id}/tokens"), &json!({"label": "script"})).await;
        assert_eq!(issued.status, StatusCode::CREATED);
        let api_token = issued.json()["token"].as_str().unwrap().to_owned();
        let token_id = issued.json()["id"].as_i64().unwrap();
        assert_eq!(app.request(Method::GET, "/api/v1/admin/me", Some(&api_token), None, None).await.status, StatusCode::OK);
        let listed = app.admin_get(&format!("/api/v1/admin/staff/{id}/tokens")).await.text();
        assert!(!listed.contains(&api_token), "token secrets are never listed");
        let revoked = app.request(Method::DELETE, &format!("/api/v1/admin/staff/{id}/tokens/{token_id}"),
            Some(ADMIN_TOKEN), None, None).await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT);
        assert_eq!(app.request(Method::GET, "/api/v1/admin/me", Some(&api_token), None, None).await.status,
            StatusCode::UNAUTHORIZED);

        // Disabling ends every token of the user at once, and password sign-in.
        let session = sign_in("a long enough password").await.json()["token"].as_str().unwrap().to_owned();
        let disabled = app.admin_patch(&format!("/api/v1/admin/staff/{id}"), &json!({"disabled": true})).await;
        assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text());
        assert_eq!(disabled.json()["disabled"], true);
        assert_eq!(app.request(Method::GET, "/api/v1/admin/me", Some(&session), None, None).await.status,
            StatusCode::UNAUTHORIZED);
        assert_eq!(sign_in("a long enough password").await.status, StatusCode::UNAUTHORIZED);

        // The staff changes are in the audit log, without secrets.
        let audit = app.admin_get("/api/v1/admin/audit?target_type=staff").await.text();
        assert!(audit.contains("staff.created") && audit.contains("staff.token_revoked"), "{audit}");
        assert!(!audit.contains("a long enough password") && !audit.contains(&api_token));
        app.stop().await;
    }

    async fn the_last_owner_stays(backend: Backend) {
        let app = TestApp::start(backend).await;
        let demote = app.admin_patch("/api/v1/admin/staff/1", &json!({"role": "admin"})).await;
        demote.assert_field_error(409, "role");
        let disable = app.admin_patch("/api/v1/admin/staff/1", &json!({"disabled": true})).await;
        disable.assert_field_error(409, "disabled");
        // With a second owner, the first can step down.
        let second = app.admin_post("/api/v1/admin/staff", &json!({
            "email": "second@shop.example", "name": "Second", "role": "owner",
        })).await;
        assert_eq!(second.status, StatusCode::CREATED);
        let demote = app.admin_patch("/api/v1/admin/staff/1", &json!({"role": "admin"})).await;
        assert_eq!(demote.status, StatusCode::OK, "{}", demote.text());
        // Now an admin: staff management is closed to them.
        assert_eq!(app.admin_get("/api/v1/admin/staff").await.status, StatusCode::FORBIDDEN);
        app.stop().await;
    }

    async fn a_changed_bootstrap_token_replaces_the_old(backend: Backend) {
        let app = TestApp::start(backend).await;
        let db = &app.kernel.state.db;
        olivine::staff::authenticate(db, ADMIN_TOKEN).await.expect("configured token works");
        olivine::staff::ensure_owner(db, "owner@olivine.local", "another-bootstrap-token-0123")
            .await
            .expect("ensure owner");
        assert!(olivine::staff::authenticate(db, ADMIN_TOKEN).await.is_err(), "old token revoked");
        let owner = olivine::staff::authenticate(db, "another-bootstrap-token-0123").await.expect("new token");
        assert_eq!(owner.role, Role::Owner);
        assert_eq!(owner.id, 1, "no second owner was made");
        // Running it again changes nothing.
        olivine::staff::ensure_owner(db, "owner@olivine.local", "another-bootstrap-token-0123")
            .await
            .expect("ensure owner again");
        assert_eq!(app.count("staff_users").await, 1);
        app.stop().await;
    }
}
