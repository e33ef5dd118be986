//! The customer key snapshot: the one copy of the per-customer keys outside the live
//! database, and the erasure log with it (docs/BACKUPS.md).
//!
//! Backups leave the rows of `customer_keys` out, or an erasure would not reach them:
//! an old backup would hold the erased customer's data and their key side by side.
//! Instead each backup writes the live keys (still wrapped) and the erasure log into ONE
//! file, replacing the previous one; an erasure therefore leaves every copy of the keys
//! by the next backup at the latest. The file is kept beside the master key (by default
//! `<data dir>/customer-keys.snapshot`), never among the backups.
//!
//! A restore takes the keys from this snapshot for the customers the backup holds, and
//! first erases again every customer the erasure log names that the backup still has in
//! the clear: the erasure was made after the backup was taken. A `--force` restore over
//! a live store also takes the keys and erasure log of the store it moved aside (the
//! freshest there are), before the snapshot's.
//!
//! The keys are read after the database snapshot: every customer in the snapshot who has
//! not been erased since has their key in the file (keys are only ever deleted by an
//! erasure).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::store::Db;

pub const FORMAT: &str = "olivine.customer-keys.v1";
/// The migration that made `customer_keys` and `customer_erasures`.
pub const KEY_TABLES_VERSION: i64 = 25;
/// Who re-applies erasures on a restored store (the audit entry's and request's actor).
pub const RESTORE_ACTOR: &str = "olivine restore";

#[derive(Debug, Serialize, Deserialize)]
pub struct KeySnapshot {
    pub format: String,
    pub taken_at: String,
    pub keys: Vec<StoredCustomerKey>,
    pub erasures: Vec<LoggedErasure>,
}

/// A customer key as the database holds it: wrapped, never in the clear.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredCustomerKey {
    pub customer_id: i64,
    pub wrapped: String,
    pub created_at: String,
}

/// An erasure: the customer id and when; nothing else.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoggedErasure {
    pub customer_id: i64,
    pub erased_at: String,
}

/// Whether the store's schema has the key tables (a store older than per-customer keys
/// has neither keys nor a log to keep).
async fn has_key_tables(db: &Db) -> anyhow::Result<bool> {
    Ok(crate::store::schema_version(db).await?.unwrap_or(0) >= KEY_TABLES_VERSION)
}

/// Reads the live keys and erasure log into a snapshot.
pub async fn read(db: &Db) -> anyhow::Result<KeySnapshot> {
    if !has_key_tables(db).await? {
        return Ok(empty());
    }
    read_tables(db, "customer_keys", "customer_erasures").await
}

fn empty() -> KeySnapshot {
    KeySnapshot {
        format: FORMAT.to_owned(),
        taken_at: crate::time::now(),
        keys: Vec::new(),
        erasures: Vec::new(),
    }
}

/// The keys and erasure log from the tables named (qualified by a schema or not), read
/// in one transaction.
async fn read_tables(
    db: &Db,
    keys_table: &str,
    erasures_table: &str,
) -> anyhow::Result<KeySnapshot> {
    let mut snapshot = empty();
    let mut tx = db.pool.begin().await?;
    let keys_sql =
        format!("SELECT customer_id, wrapped, created_at FROM {keys_table} ORDER BY customer_id");
    for row in sqlx::query(sqlx::AssertSqlSafe(keys_sql))
        .fetch_all(&mut *tx)
        .await?
    {
        snapshot.keys.push(StoredCustomerKey {
            customer_id: row.try_get(0)?,
            wrapped: row.try_get(1)?,
            created_at: row.try_get(2)?,
        });
    }
    let erasures_sql =
        format!("SELECT customer_id, erased_at FROM {erasures_table} ORDER BY customer_id");
    for row in sqlx::query(sqlx::AssertSqlSafe(erasures_sql))
        .fetch_all(&mut *tx)
        .await?
    {
        snapshot.erasures.push(LoggedErasure {
            customer_id: row.try_get(0)?,
            erased_at: row.try_get(1)?,
        });
    }
    tx.rollback().await?;
    Ok(snapshot)
}

/// The store a `--force` restore moved aside: the live store, whose keys and erasure
/// log are the freshest there are.
#[derive(Debug, Clone)]
pub enum MovedAside {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

/// The keys and erasure log of the store moved aside; `None` when it has none (a store
/// from before per-customer keys).
pub async fn read_moved_aside(db: &Db, aside: &MovedAside) -> anyhow::Result<Option<KeySnapshot>> {
    match aside {
        MovedAside::Sqlite(path) => {
            let old = Db::connect(&format!("sqlite://{}", path.display()), 1).await?;
            let read = match has_key_tables(&old).await {
                Ok(true) => read(&old).await.map(Some),
                Ok(false) => Ok(None),
                Err(err) => Err(err),
            };
            old.close().await;
            read
        }
        MovedAside::Postgres(schema) => {
            let (keys, erasures) = (
                super::postgres::qualified(schema, "customer_keys"),
                super::postgres::qualified(schema, "customer_erasures"),
            );
            let exists: Option<String> = sqlx::query_scalar("SELECT CAST(to_regclass($1) AS TEXT)")
                .bind(&erasures)
                .fetch_one(&db.pool)
                .await?;
            match exists {
                Some(_) => Ok(Some(read_tables(db, &keys, &erasures).await?)),
                None => Ok(None),
            }
        }
    }
}

/// One snapshot of both: every erasure either knows (the earliest time), and the keys
/// of `newer` before those of `older` (a restore inserts the first of a customer).
pub fn merge(newer: KeySnapshot, older: KeySnapshot) -> KeySnapshot {
    let mut erasures = std::collections::BTreeMap::new();
    for erasure in newer.erasures.into_iter().chain(older.erasures) {
        erasures
            .entry(erasure.customer_id)
            .and_modify(|at: &mut String| {
                if erasure.erased_at < *at {
                    at.clone_from(&erasure.erased_at);
                }
            })
            .or_insert(erasure.erased_at);
    }
    KeySnapshot {
        format: FORMAT.to_owned(),
        taken_at: newer.taken_at,
        keys: newer.keys.into_iter().chain(older.keys).collect(),
        erasures: erasures
            .into_iter()
            .map(|(customer_id, erased_at)| LoggedErasure {
                customer_id,
                erased_at,
            })
            .collect(),
    }
}

/// Writes the snapshot over the previous one, atomically, readable by its owner only.
pub fn write(snapshot: &KeySnapshot, path: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_vec(snapshot).context("encoding the key snapshot")?;
    crate::accounts::keys::write_secret_file(path, &json)
}

/// The snapshot at `path`, `None` when there is none.
pub fn load(path: &Path) -> anyhow::Result<Option<KeySnapshot>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let snapshot: KeySnapshot = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a customer key snapshot", path.display()))?;
    anyhow::ensure!(
        snapshot.format == FORMAT,
        "{} is a key snapshot of an unknown format {}",
        path.display(),
        snapshot.format
    );
    Ok(Some(snapshot))
}

/// What applying a snapshot to a restored store did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Customers erased again: the erasure log has them, the backup did not.
    pub erased_again: usize,
    /// Customer keys put in place.
    pub keys: usize,
}

/// On a restored store, in one transaction: logs and re-applies every erasure of the
/// snapshot, then puts in the keys of the customers the store holds (and not erased).
pub async fn apply(db: &Db, snapshot: &KeySnapshot) -> anyhow::Result<Applied> {
    let mut applied = Applied::default();
    let mut tx = db.begin().await?;
    for erasure in &snapshot.erasures {
        // Logged first, so the log keeps the time of the erasure, not of this restore.
        crate::accounts::customer_keys::log_erasure(
            &mut tx,
            erasure.customer_id,
            &erasure.erased_at,
        )
        .await?;
        if crate::accounts::privacy::erase_again(&mut tx, erasure.customer_id, RESTORE_ACTOR)
            .await?
        {
            applied.erased_again += 1;
        }
    }
    for key in &snapshot.keys {
        let inserted = sqlx::query(
            "INSERT INTO customer_keys (customer_id, wrapped, created_at)
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1 AND erased_at IS NULL)
             ON CONFLICT (customer_id) DO NOTHING",
        )
        .bind(key.customer_id)
        .bind(&key.wrapped)
        .bind(&key.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        applied.keys += usize::try_from(inserted).unwrap_or(0);
    }
    tx.commit().await?;
    Ok(applied)
}
