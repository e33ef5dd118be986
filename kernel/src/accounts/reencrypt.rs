//! The one-time move of a store's identity fields from the shared data key (`v1`) to
//! each customer's own key (`v2`): `olivine keys per-customer`, while the store serves.
//!
//! Customers are taken in id order, a batch per short transaction. For each one, under
//! their row lock (so an erasure waits or has happened), their key is made if missing,
//! then every `v1` field of theirs (account, addresses, orders, subscriptions) is
//! decrypted and written back under their key, and their push device tokens (stored in
//! clear before) are encrypted under it. Each write is a compare-and-set on the
//! old ciphertext: a field a shopper changed meanwhile (already `v2`) is left alone.
//! Only `v1` fields are touched, so nothing is encrypted twice, and a run that stops
//! anywhere is finished by running it again (it picks only customers with `v1` fields
//! left).

use sqlx::{AnyConnection, Row};

use super::Keyring;
use super::customer_keys::{CustomerFields, is_shared_key_field};
use crate::store::Db;

/// A table with identity fields of a customer: the column naming the customer and
/// each encrypted column with its context (the associated data it was sealed with).
struct Sealed {
    table: &'static str,
    owner: &'static str,
    columns: &'static [(&'static str, &'static str)],
}

const ADDRESS_COLUMNS: &[(&str, &str)] = &[
    ("label_enc", "customer_addresses.label"),
    ("name_enc", "customer_addresses.name"),
    ("line1_enc", "customer_addresses.line1"),
    ("line2_enc", "customer_addresses.line2"),
    ("city_enc", "customer_addresses.city"),
    ("region_enc", "customer_addresses.region"),
    ("postal_code_enc", "customer_addresses.postal_code"),
    ("country_enc", "customer_addresses.country"),
    ("phone_enc", "customer_addresses.phone"),
];

const ORDER_COLUMNS: &[(&str, &str)] = &[
    ("email_enc", crate::orders::EMAIL_CONTEXT),
    ("shipping_address_enc", crate::orders::ADDRESS_CONTEXT),
];

const TABLES: [Sealed; 4] = [
    Sealed {
        table: "customers",
        owner: "id",
        columns: &[
            ("email_enc", super::EMAIL_CONTEXT),
            ("name_enc", super::NAME_CONTEXT),
        ],
    },
    Sealed {
        table: "customer_addresses",
        owner: "customer_id",
        columns: ADDRESS_COLUMNS,
    },
    // The same contexts on subscriptions: their fields are copied from the order.
    Sealed {
        table: "orders",
        owner: "customer_id",
        columns: ORDER_COLUMNS,
    },
    Sealed {
        table: "subscriptions",
        owner: "customer_id",
        columns: ORDER_COLUMNS,
    },
];

/// Customers (not erased) with a `v1` field left, after `after`, in id order. Every
/// column of an address is written at once, so its name tells for the whole row.
const PENDING: &str = "FROM customers c WHERE c.id > $1 AND c.erased_at IS NULL AND (
        c.email_enc LIKE 'v1:%' OR c.name_enc LIKE 'v1:%'
        OR EXISTS (SELECT 1 FROM customer_addresses a
                   WHERE a.customer_id = c.id AND a.name_enc LIKE 'v1:%')
        OR EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id
                   AND (o.email_enc LIKE 'v1:%' OR o.shipping_address_enc LIKE 'v1:%'))
        OR EXISTS (SELECT 1 FROM subscriptions s WHERE s.customer_id = c.id
                   AND (s.email_enc LIKE 'v1:%' OR s.shipping_address_enc LIKE 'v1:%'))
        OR EXISTS (SELECT 1 FROM customer_devices d
                   WHERE d.customer_id = c.id AND d.token_hash IS NULL))";

/// How many customers still have fields under the shared key.
pub async fn pending(db: &Db) -> anyhow::Result<i64> {
    let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) {PENDING}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(0_i64)
        .fetch_one(&db.pool)
        .await?;
    Ok(row.try_get(0)?)
}

async fn next_batch(db: &Db, after: i64, limit: i64) -> anyhow::Result<Vec<i64>> {
    let sql = format!("SELECT c.id {PENDING} ORDER BY c.id LIMIT $2");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reencrypted {
    /// Customers whose fields were moved to their own key in this run.
    pub customers: usize,
    /// Fields re-encrypted in this run.
    pub fields: usize,
    /// Fields that did not decrypt (damaged, or under a key this store lacks): left as
    /// they are, with the customers they belong to.
    pub unreadable: Vec<i64>,
}

/// Moves every pending customer to their own key, `batch_size` customers per
/// transaction; `progress(done, total)` after each batch.
pub async fn run(
    db: &Db,
    keys: &Keyring,
    batch_size: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> anyhow::Result<Reencrypted> {
    let total = usize::try_from(pending(db).await?).unwrap_or(0);
    let limit = i64::try_from(batch_size.max(1)).unwrap_or(i64::MAX);
    let mut report = Reencrypted::default();
    let mut after = 0;
    progress(0, total);
    loop {
        let batch = next_batch(db, after, limit).await?;
        let Some(&last) = batch.last() else {
            break;
        };
        let mut tx = db.begin().await?;
        for &customer_id in &batch {
            let fields = reencrypt_customer(&mut tx, keys, customer_id, &mut report).await?;
            report.fields += fields;
            report.customers += 1;
        }
        tx.commit().await?;
        after = last;
        progress(report.customers.min(total), total);
    }
    report.unreadable.dedup();
    Ok(report)
}

/// Re-encrypts one customer's `v1` fields under their key; answers how many.
async fn reencrypt_customer(
    conn: &mut AnyConnection,
    keys: &Keyring,
    customer_id: i64,
    report: &mut Reencrypted,
) -> anyhow::Result<usize> {
    if !super::lock_customer(conn, customer_id).await? {
        return Ok(0); // erased meanwhile: nothing of theirs to keep
    }
    let fields = keys.customer_for_writing(conn, customer_id).await?;
    let mut count = 0;
    for sealed in &TABLES {
        count += reencrypt_table(conn, keys, &fields, sealed, report).await?;
    }
    count += encrypt_device_tokens(conn, keys, &fields).await?;
    Ok(count)
}

/// The customer's push tokens stored in clear (from before encrypted tokens): encrypted
/// under their key, with the hash that finds them and the ending they are shown by.
async fn encrypt_device_tokens(
    conn: &mut AnyConnection,
    keys: &Keyring,
    fields: &CustomerFields<'_>,
) -> anyhow::Result<usize> {
    use crate::notify::devices::{TOKEN_CONTEXT, ending_of, token_hash};
    let rows = sqlx::query(
        "SELECT id, platform, token FROM customer_devices
         WHERE customer_id = $1 AND token_hash IS NULL",
    )
    .bind(fields.customer_id())
    .fetch_all(&mut *conn)
    .await?;
    let mut count = 0;
    for row in &rows {
        let (id, platform, token): (i64, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let hash = token_hash(keys, &token);
        // The same token registered again since, encrypted: this row is a stale copy.
        let newer =
            sqlx::query("SELECT 1 FROM customer_devices WHERE platform = $1 AND token_hash = $2")
                .bind(&platform)
                .bind(&hash)
                .fetch_optional(&mut *conn)
                .await?;
        if newer.is_some() {
            sqlx::query("DELETE FROM customer_devices WHERE id = $1 AND token_hash IS NULL")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            continue;
        }
        let updated = sqlx::query(
            "UPDATE customer_devices SET token = $1, token_hash = $2, token_ending = $3
             WHERE id = $4 AND token = $5 AND token_hash IS NULL",
        )
        .bind(fields.encrypt(TOKEN_CONTEXT, &token)?)
        .bind(&hash)
        .bind(ending_of(&token))
        .bind(id)
        .bind(&token)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        count += usize::try_from(updated).unwrap_or(0);
    }
    Ok(count)
}

async fn reencrypt_table(
    conn: &mut AnyConnection,
    keys: &Keyring,
    fields: &CustomerFields<'_>,
    sealed: &Sealed,
    report: &mut Reencrypted,
) -> anyhow::Result<usize> {
    let names: Vec<&str> = sealed.columns.iter().map(|(column, _)| *column).collect();
    let select = format!(
        "SELECT {} FROM {} WHERE {} = $1",
        names.join(", "),
        sealed.table,
        sealed.owner
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(select))
        .bind(fields.customer_id())
        .fetch_all(&mut *conn)
        .await?;
    let mut count = 0;
    for row in &rows {
        for (i, (column, context)) in sealed.columns.iter().enumerate() {
            let Some(old) = row.try_get::<Option<String>, _>(i)? else {
                continue;
            };
            if !is_shared_key_field(&old) {
                continue;
            }
            let Ok(plain) = keys.decrypt_field(context, &old) else {
                report.unreadable.push(fields.customer_id());
                continue;
            };
            let update = format!(
                "UPDATE {} SET {column} = $1 WHERE {} = $2 AND {column} = $3",
                sealed.table, sealed.owner
            );
            let updated = sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(fields.encrypt(context, &plain)?)
                .bind(fields.customer_id())
                .bind(&old)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            count += usize::try_from(updated).unwrap_or(0);
        }
    }
    Ok(count)
}
