//! Per-customer data keys (crypto-shredding, docs/PRIVACY.md): each customer's identity
//! is under a key of their own, which erasure destroys; fields in the shared-key format
//! still decrypt, and `olivine keys per-customer` moves a store's shared-key rows to
//! per-customer keys, resumably, without encrypting anything twice. Both backends.
//! (Backups and restores with these keys: backup.rs.)

use axum::http::{Method, StatusCode};
use olivine::accounts::reencrypt;
use olivine::cli::keys::PerCustomerArgs;
use olivine::config::StoreConfig;
use serde_json::json;
use sqlx::Row;

use crate::backup::filled_store;
use crate::common::*;

const PASSWORD: &str = "correct horse battery";

/// Every encrypted identity column a customer has, with its context: the account, the
/// addresses, the orders and the subscriptions.
const COLUMNS: [(&str, &str, &str, &str); 5] = [
    ("customers", "id", "email_enc", "customers.email"),
    ("customers", "id", "name_enc", "customers.name"),
    (
        "customer_addresses",
        "customer_id",
        "line1_enc",
        "customer_addresses.line1",
    ),
    ("orders", "customer_id", "email_enc", "orders.email"),
    (
        "orders",
        "customer_id",
        "shipping_address_enc",
        "orders.shipping_address",
    ),
];

/// (table, column, customer id, stored value) of every identity cell of customers.
async fn identity_cells(db: &olivine::store::Db) -> Vec<(String, String, i64, String)> {
    let mut cells = Vec::new();
    for (table, owner, column, _) in COLUMNS {
        let sql = format!(
            "SELECT {owner}, {column} FROM {table} WHERE {owner} IS NOT NULL AND {column} <> '' ORDER BY 1, 2"
        );
        for row in sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&db.pool)
            .await
            .expect("cells")
        {
            cells.push((table.to_owned(), column.to_owned(), row.get(0), row.get(1)));
        }
    }
    cells
}

/// Turns the store back into one from before per-customer keys: every identity field of
/// a customer under the shared data key (`v1`), and no customer keys.
async fn back_to_the_shared_key(app: &TestApp) {
    let state = &app.kernel.state;
    let (keys, pool) = (&state.keys, &state.db.pool);
    for (table, owner, column, context) in COLUMNS {
        let sql = format!(
            "SELECT {owner}, {column} FROM {table} WHERE {owner} IS NOT NULL AND {column} <> ''"
        );
        for row in sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .expect("cells")
        {
            let (owner_id, stored): (i64, String) = (row.get(0), row.get(1));
            let plain = keys
                .decrypt_any(pool, context, &stored)
                .await
                .expect("decrypts");
            let update =
                format!("UPDATE {table} SET {column} = $1 WHERE {owner} = $2 AND {column} = $3");
            sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(keys.encrypt_field(context, &plain).expect("v1"))
                .bind(owner_id)
                .bind(&stored)
                .execute(pool)
                .await
                .expect("update");
        }
    }
    // Every address column at once, as the kernel writes them.
    let rows = sqlx::query("SELECT id, name_enc, city_enc, country_enc FROM customer_addresses")
        .fetch_all(pool)
        .await
        .expect("addresses");
    for row in rows {
        let id: String = row.get(0);
        for (i, field) in ["name", "city", "country"].iter().enumerate() {
            let context = format!("customer_addresses.{field}");
            let stored: String = row.get(i + 1);
            let plain = keys
                .decrypt_any(pool, &context, &stored)
                .await
                .expect("decrypts");
            let update = format!("UPDATE customer_addresses SET {field}_enc = $1 WHERE id = $2");
            sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(keys.encrypt_field(&context, &plain).expect("v1"))
                .bind(&id)
                .execute(pool)
                .await
                .expect("update");
        }
    }
    let ids: Vec<i64> = sqlx::query("SELECT customer_id FROM customer_keys")
        .fetch_all(pool)
        .await
        .expect("keys")
        .iter()
        .map(|r| r.get(0))
        .collect();
    sqlx::query("DELETE FROM customer_keys")
        .execute(pool)
        .await
        .expect("no keys");
    for id in ids {
        keys.forget_customer_key(id).await;
    }
}

async fn me_email(app: &TestApp, email: &str) -> String {
    let token = sign_in(app, email).await;
    let r = as_customer(app, &token, Method::GET, "/api/v1/account/me", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["email"].as_str().expect("email").to_owned()
}

async fn sign_in(app: &TestApp, email: &str) -> String {
    let r = app
        .request(
            Method::POST,
            "/api/v1/account/sign-in",
            None,
            Some(axum::body::Body::from(
                json!({"email": email, "password": PASSWORD}).to_string(),
            )),
            Some("application/json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["access_token"].as_str().expect("token").to_owned()
}

/// The email on the store's one customer order, as staff read it.
async fn order_email(app: &TestApp) -> String {
    let number: String = sqlx::query("SELECT number FROM orders WHERE customer_id IS NOT NULL")
        .fetch_one(&app.kernel.state.db.pool)
        .await
        .expect("order")
        .get(0);
    let r = app
        .admin_get(&format!("/api/v1/admin/orders/{number}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["email"].as_str().expect("email").to_owned()
}

fn per_customer_args(app: &TestApp) -> PerCustomerArgs {
    let mut store = StoreConfig::embedded(app.db.dir.path());
    store.database_url = app.db.url.clone();
    let mut args = PerCustomerArgs::new(store);
    args.batch_size = 1;
    args
}

both_backends! {
    async fn each_customer_has_a_key_of_their_own_and_erasure_destroys_it(backend: Backend) {
        let (app, _) = filled_store(backend).await;
        let state = &app.kernel.state;
        let address = json!({"name": "Ada Buyer", "line1": "Keizersgracht 1", "city": "Amsterdam",
            "country": "NL"});
        let ada = sign_in(&app, "ada@example.com").await;
        let r = as_customer(&app, &ada, Method::POST, "/api/v1/account/addresses", Some(address)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

        // Every identity cell is under its own customer's key.
        let cells = identity_cells(&state.db).await;
        assert!(cells.len() >= 5, "{cells:?}");
        for (table, column, customer, stored) in &cells {
            assert!(stored.starts_with(&format!("v2:c{customer}:")), "{table}.{column}: {stored}");
        }
        assert_eq!(app.count("customer_keys").await, 2, "ada's and grace's");
        // A push device's token too: encrypted, found again by its keyed hash.
        let grace = sign_in(&app, "grace@example.com").await;
        let phone = "ab".repeat(32);
        for _ in 0..2 {
            let r = as_customer(&app, &grace, Method::POST, "/api/v1/account/devices",
                Some(json!({"platform": "apns", "token": phone, "app_id": "com.example.shop"}))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
            assert_eq!(r.json()["token_ending"], &phone[56..]);
        }
        let devices = sqlx::query("SELECT customer_id, token, token_hash FROM customer_devices")
            .fetch_all(&state.db.pool).await.expect("devices");
        assert_eq!(devices.len(), 1, "registered twice, one device");
        let (grace_id, token, hash): (i64, String, Option<String>) =
            (devices[0].get(0), devices[0].get(1), devices[0].get(2));
        assert!(token.starts_with(&format!("v2:c{grace_id}:")) && !token.contains(&phone), "{token}");
        assert!(hash.is_some_and(|h| h.len() == 64));
        assert_eq!(me_email(&app, "ada@example.com").await, "ada@example.com");
        assert_eq!(order_email(&app).await, "ada@example.com");

        // Ada's erasure destroys her key with the wipe; Grace keeps hers.
        let ada_id: i64 = sqlx::query("SELECT customer_id FROM orders WHERE customer_id IS NOT NULL")
            .fetch_one(&state.db.pool).await.expect("order").get(0);
        let r = as_customer(&app, &ada, Method::POST, "/api/v1/account/erasure",
            Some(json!({"password": PASSWORD, "confirm": "erase my account"}))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let keyed: Vec<i64> = sqlx::query("SELECT customer_id FROM customer_keys")
            .fetch_all(&state.db.pool).await.expect("keys").iter().map(|r| r.get(0)).collect();
        assert_eq!(keyed.len(), 1);
        assert!(!keyed.contains(&ada_id));
        let logged: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM customer_erasures WHERE customer_id = $1")
            .bind(ada_id).fetch_one(&state.db.pool).await.expect("log").get(0);
        assert_eq!(logged, 1, "the erasure log has her id");
        // Any copy of her fields made before (a backup, a replica) is unreadable now.
        for (_, column, customer, stored) in cells.iter().filter(|c| c.2 == ada_id) {
            let context = COLUMNS.iter().find(|c| c.2 == column).expect("context").3;
            let err = state.keys.decrypt_any(&state.db.pool, context, stored).await.expect_err("shredded");
            assert!(format!("{err:#}").contains("no data key"), "{customer}: {err:#}");
        }
        assert_eq!(me_email(&app, "grace@example.com").await, "grace@example.com");
        app.stop().await;
    }

    async fn the_re_encryption_moves_shared_key_rows_and_resumes(backend: Backend) {
        let (app, _) = filled_store(backend).await;
        let state = app.kernel.state.clone();
        let ada = sign_in(&app, "ada@example.com").await;
        let r = as_customer(&app, &ada, Method::POST, "/api/v1/account/addresses",
            Some(json!({"name": "Ada Buyer", "line1": "Keizersgracht 1", "city": "Amsterdam", "country": "NL"}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let phone = "cd".repeat(32);
        let r = as_customer(&app, &ada, Method::POST, "/api/v1/account/devices",
            Some(json!({"platform": "apns", "token": phone, "app_id": "com.example.shop"}))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        back_to_the_shared_key(&app).await;
        // Before encrypted tokens, a device's token was stored in clear.
        sqlx::query("UPDATE customer_devices SET token = $1, token_hash = NULL, token_ending = NULL")
            .bind(&phone).execute(&state.db.pool).await.expect("clear token");
        for (table, column, _, stored) in identity_cells(&state.db).await {
            assert!(stored.starts_with("v1:data-1:"), "{table}.{column}: {stored}");
        }
        // Fields in the shared-key format still decrypt.
        assert_eq!(me_email(&app, "ada@example.com").await, "ada@example.com");
        assert_eq!(order_email(&app).await, "ada@example.com");
        assert_eq!(reencrypt::pending(&state.db).await.expect("pending"), 2);

        // Interrupted after its first batch (one customer).
        let interrupted = tokio::spawn({
            let state = state.clone();
            async move {
                reencrypt::run(&state.db, &state.keys, 1, &|done, _| {
                    assert!(done < 1, "stopped after the first batch");
                })
                .await
            }
        })
        .await;
        assert!(interrupted.is_err(), "the run was interrupted");
        assert_eq!(reencrypt::pending(&state.db).await.expect("pending"), 1);
        let first = identity_cells(&state.db).await;
        let done_first: Vec<_> = first.iter().filter(|c| c.3.starts_with("v2:")).cloned().collect();
        assert!(!done_first.is_empty());

        // Run again (the command): it finishes the rest and leaves the first alone.
        let report = olivine::cli::keys::per_customer(&per_customer_args(&app)).await.expect("rerun");
        assert_eq!(report.customers, 1, "{report:?}");
        assert!(report.unreadable.is_empty());
        assert_eq!(reencrypt::pending(&state.db).await.expect("pending"), 0);
        let after = identity_cells(&state.db).await;
        for cell in &done_first {
            assert!(after.contains(cell), "re-encrypted twice: {cell:?}");
        }
        for (table, column, customer, stored) in &after {
            assert!(stored.starts_with(&format!("v2:c{customer}:")), "{table}.{column}: {stored}");
        }
        assert_eq!(app.count("customer_keys").await, 2);
        assert_eq!(me_email(&app, "ada@example.com").await, "ada@example.com");
        assert_eq!(me_email(&app, "grace@example.com").await, "grace@example.com");
        assert_eq!(order_email(&app).await, "ada@example.com");
        let address = as_customer(&app, &ada, Method::GET, "/api/v1/account/addresses", None).await;
        assert_eq!(address.json()[0]["line1"], "Keizersgracht 1", "{}", address.text());
        let device = sqlx::query("SELECT customer_id, token, token_hash, token_ending FROM customer_devices")
            .fetch_one(&state.db.pool).await.expect("device");
        let (owner, token): (i64, String) = (device.get(0), device.get(1));
        assert!(token.starts_with(&format!("v2:c{owner}:")), "{token}");
        assert!(device.get::<Option<String>, _>(2).is_some());
        assert_eq!(device.get::<Option<String>, _>(3).as_deref(), Some(&phone[56..]));
        assert_eq!(state.keys.decrypt_any(&state.db.pool, "customer_devices.token", &token).await.expect("decrypts"), phone);

        // A third run finds nothing to do.
        let again = olivine::cli::keys::per_customer(&per_customer_args(&app)).await.expect("third run");
        assert_eq!((again.customers, again.fields), (0, 0));
        app.stop().await;
    }
}
