//! The OpenAPI document is what the API does: `scripts/check-openapi` validates it as
//! OpenAPI 3.1 and has schemathesis send, to every operation of a real `olivine serve`
//! with the demo store, requests the schema allows and requests it forbids; a schema-valid
//! request refused, a forbidden one accepted, an undocumented status, an answer that does
//! not match its schema or a server error fails the test. Once as the owner (every
//! operation), once as a signed-in customer (the account, cart and order operations).

use std::process::Command;

use crate::common::process::*;
use crate::common::*;

fn check_openapi(base: &str, options: &[&str]) {
    let out = Command::new(repo_root().join("scripts/check-openapi"))
        .arg(base)
        .args(options)
        .output()
        .expect("scripts/check-openapi runs");
    assert!(
        out.status.success(),
        "scripts/check-openapi {options:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_what_the_api_does() {
    let db = TestDb::new(Backend::Sqlite).await;
    let port = free_port();
    let mut child = spawn_with(
        &db,
        port,
        "",
        &[
            ("OLIVINE_SEED_DEMO", "true"),
            ("OLIVINE_RATE_LIMIT_API", "off"),
            ("OLIVINE_RATE_LIMIT_SIGN_IN", "off"),
            ("OLIVINE_RATE_LIMIT_SIGN_IN_ACCOUNT", "off"),
            ("OLIVINE_RATE_LIMIT_REGISTER", "off"),
        ],
    );
    wait_ready(port);
    let base = format!("http://127.0.0.1:{port}");

    // As the owner: every operation. Revoking the owner's own token (as a token or as
    // one of its sessions) or signing it out would leave the rest of the run without a key.
    // Starting a single sign-on goes to the provider the run may have set up (a made-up
    // host): tests/suite/staff_sso.rs covers it against a provider that answers.
    let owner = format!("Authorization: Bearer {ADMIN_TOKEN}");
    check_openapi(
        &base,
        &[
            "-H",
            &owner,
            "--exclude-path-regex",
            r"tokens/\{token_id\}$|/staff/sign-out$|/staff/me/sessions/\{id\}$|/staff/sso/start$",
        ],
    );

    // As a customer: their account, carts and orders. Ending the session (sign-out,
    // erasure, a new password) would do the same to the customer's.
    let register =
        r#"{"email": "schema@example.com", "password": "correct horse battery", "name": "Schema"}"#;
    let (status, body) = http_with_headers(
        port,
        "POST",
        "/api/v1/account/register",
        &[],
        Some(register),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let credentials = r#"{"email": "schema@example.com", "password": "correct horse battery"}"#;
    let (status, body) = http_with_headers(
        port,
        "POST",
        "/api/v1/account/sign-in",
        &[],
        Some(credentials),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = format!("Authorization: Bearer {token}");
    check_openapi(
        &base,
        &[
            "-H",
            &customer,
            "--include-tag",
            "account",
            "--include-tag",
            "cart",
            "--include-tag",
            "orders",
            "--exclude-path-regex",
            r"/account/(sign-out|erasure|password)$",
        ],
    );
    child.kill().ok();
    child.wait().ok();
    db.drop().await;
}
