//! The audit log: who did what, to what, when, with the state before and after.
//!
//! Append-only and hash-chained. Every entry stores the hash of the entry before it and
//! its own hash, SHA-256 over an unambiguous encoding of all its fields (a JSON array,
//! see [`entry_hash`]). Changing an entry breaks its hash; removing one leaves a gap in
//! `seq`; rewriting an entry together with its hash breaks the next entry's `prev_hash`
//! (or, for the newest entry, the head). [`verify`] walks the chain and names the first
//! entry that fails. The database itself refuses UPDATE and DELETE of `audit_log`
//! (triggers; on PostgreSQL also TRUNCATE).
//!
//! [`record`] runs inside the transaction of the change it describes, so the change and
//! its entry commit together or not at all. It advances the one-row `audit_head`
//! (`UPDATE … SET seq = seq + 1 … RETURNING`): on PostgreSQL that takes the head's row
//! lock until commit, so concurrent writers queue and the chain never forks; on SQLite
//! writers are serialised by `BEGIN IMMEDIATE` already. Because the head stays locked
//! until commit, record as the *last* write of a transaction: a transaction that locks
//! further rows after recording could deadlock with one that holds those rows and waits
//! for the head.
//!
//! The actor is text: `admin` for the admin token today, `bundled` / `plugins-dir` /
//! `seed` / `kernel` for the kernel's own changes; a staff user's id later.

pub mod api;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::error::Result;
use crate::store::{Backend, Db};

/// `prev_hash` of the first entry, and the head's hash while the log is empty.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Versions the hash encoding, so it can change later without ambiguity.
const HASH_DOMAIN: &str = "olivine.audit.v1";

/// The migration that creates the audit tables.
pub const SCHEMA_VERSION: i64 = 3;

/// Actor of changes the kernel makes by itself (e.g. disabling a failing plugin).
pub const KERNEL_ACTOR: &str = "kernel";

/// One change to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Who: `admin`, `bundled`, `plugins-dir`, `seed`, `kernel`, later a staff user id.
    pub actor: &'a str,
    /// What, as `<noun>.<verb>`: `product.updated`, `plugin.installed`, `stock.adjusted`.
    pub action: &'a str,
    /// The kind of thing changed: `product`, `variant`, `lot`, `plugin`, …
    pub target_type: &'a str,
    pub target_id: String,
    /// The state before the change (none for a creation).
    pub before: Option<serde_json::Value>,
    /// The state after the change.
    pub after: Option<serde_json::Value>,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// JSON text, exactly as stored (the hash covers this text).
    pub before: Option<String>,
    pub after: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

pub(crate) const COLUMNS: &str =
    "seq, at, actor, action, target_type, target_id, before, after, prev_hash, hash";

impl StoredEntry {
    pub(crate) fn from_row(row: &sqlx::any::AnyRow) -> Result<StoredEntry, sqlx::Error> {
        Ok(StoredEntry {
            seq: row.try_get(0)?,
            at: row.try_get(1)?,
            actor: row.try_get(2)?,
            action: row.try_get(3)?,
            target_type: row.try_get(4)?,
            target_id: row.try_get(5)?,
            before: row.try_get(6)?,
            after: row.try_get(7)?,
            prev_hash: row.try_get(8)?,
            hash: row.try_get(9)?,
        })
    }

    /// The hash this entry's fields call for.
    pub fn computed_hash(&self) -> String {
        entry_hash(
            &self.prev_hash,
            self.seq,
            &self.at,
            &self.actor,
            &self.action,
            &self.target_type,
            &self.target_id,
            self.before.as_deref(),
            self.after.as_deref(),
        )
    }
}

/// SHA-256 (lowercase hex) of the JSON array
/// `["olivine.audit.v1", seq, at, actor, action, target_type, target_id, before, after, prev_hash]`
/// where `before` and `after` are the stored JSON texts (or null). JSON string escaping
/// makes the encoding unambiguous: no two different entries encode alike.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    prev_hash: &str,
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    target_type: &str,
    target_id: &str,
    before: Option<&str>,
    after: Option<&str>,
) -> String {
    let encoded = serde_json::json!([
        HASH_DOMAIN,
        seq,
        at,
        actor,
        action,
        target_type,
        target_id,
        before,
        after,
        prev_hash
    ])
    .to_string();
    let digest = Sha256::digest(encoded.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Appends an entry within the caller's transaction; returns its `seq`. Call it as the
/// last write of the transaction (see the module documentation).
pub async fn record(conn: &mut AnyConnection, entry: &Entry<'_>) -> Result<i64, sqlx::Error> {
    record_all(conn, std::slice::from_ref(entry)).await
}

/// Appends entries in order within the caller's transaction, chained exactly as one
/// [`record`] after another would chain them, with one INSERT for all of them: the head
/// is held for as short a time as possible. (The database lets the head move one entry
/// per UPDATE only, so it still takes one small UPDATE each.) Returns the last `seq`
/// (the head's, for none).
pub async fn record_all(
    conn: &mut AnyConnection,
    entries: &[Entry<'_>],
) -> Result<i64, sqlx::Error> {
    if entries.is_empty() {
        return sqlx::query("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0);
    }
    // Takes the head's row lock (PostgreSQL) until commit: writers queue here.
    let head = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut *conn)
        .await?;
    let first_seq: i64 = head.try_get(0)?;
    for _ in 1..entries.len() {
        sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1")
            .execute(&mut *conn)
            .await?;
    }
    let mut prev_hash: String = head.try_get(1)?;
    // Taken under the lock, so timestamps follow seq.
    let at = crate::time::now();
    let mut rows = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let seq = first_seq + i as i64;
        let before = entry.before.as_ref().map(serde_json::Value::to_string);
        let after = entry.after.as_ref().map(serde_json::Value::to_string);
        let hash = entry_hash(
            &prev_hash,
            seq,
            &at,
            entry.actor,
            entry.action,
            entry.target_type,
            &entry.target_id,
            before.as_deref(),
            after.as_deref(),
        );
        rows.push((
            seq,
            entry,
            before,
            after,
            std::mem::replace(&mut prev_hash, hash.clone()),
            hash,
        ));
    }
    let sql = format!(
        "INSERT INTO audit_log (seq, at, actor, action, target_type, target_id, before, after, prev_hash, hash)
         VALUES {}",
        crate::store::value_rows(rows.len(), 10)
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (seq, entry, before, after, prev, hash) in &rows {
        insert = insert
            .bind(*seq)
            .bind(&at)
            .bind(entry.actor)
            .bind(entry.action)
            .bind(entry.target_type)
            .bind(&entry.target_id)
            .bind(before.as_deref())
            .bind(after.as_deref())
            .bind(prev.as_str())
            .bind(hash.as_str());
    }
    insert.execute(&mut *conn).await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&prev_hash)
        .execute(&mut *conn)
        .await?;
    Ok(first_seq + rows.len() as i64 - 1)
}

/// The first entry that fails verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Tampered {
    /// The entry's seq (for a deleted entry, the seq that is missing).
    pub seq: i64,
    /// What is wrong with it.
    pub problem: String,
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct VerifyReport {
    /// Every entry hashes correctly and chains to the one before it, seq has no gaps,
    /// and the head matches the newest entry.
    pub intact: bool,
    /// Entries in the log according to the head.
    pub entries: i64,
    /// The head's hash: kept somewhere else, it also reveals a chain rewritten from the
    /// start.
    pub head_hash: String,
    /// The first entry found tampered with.
    pub tampered: Option<Tampered>,
}

const VERIFY_BATCH: i64 = 1000;

/// Walks the whole chain in seq order, in one consistent snapshot, and reports the first
/// entry whose hash, `prev_hash` or seq continuity is wrong, or a head that does not
/// match the newest entry.
pub async fn verify(db: &Db) -> Result<VerifyReport> {
    // A read-only snapshot: entries appended meanwhile neither count nor confuse the walk.
    let mut tx = match db.backend {
        Backend::Sqlite => db.pool.begin().await?,
        Backend::Postgres => {
            db.pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?
        }
    };
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await?;
    let Some(head) = head else {
        return Ok(VerifyReport {
            intact: false,
            entries: 0,
            head_hash: String::new(),
            tampered: Some(Tampered {
                seq: 0,
                problem: "the chain's head row (audit_head id 1) is missing".to_owned(),
            }),
        });
    };
    let head_seq: i64 = head.try_get(0)?;
    let head_hash: String = head.try_get(1)?;
    let tampered = walk(&mut tx, head_seq, &head_hash).await?;
    tx.rollback().await?;
    Ok(VerifyReport {
        intact: tampered.is_none(),
        entries: head_seq,
        head_hash,
        tampered,
    })
}

async fn walk(
    conn: &mut AnyConnection,
    head_seq: i64,
    head_hash: &str,
) -> Result<Option<Tampered>> {
    let found = |seq: i64, problem: String| Ok(Some(Tampered { seq, problem }));
    // The seq the next entry must have, and the hash it must chain to.
    let mut expected = 1_i64;
    let mut prev_hash = GENESIS_HASH.to_owned();
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2"
        )))
        .bind(expected)
        .bind(VERIFY_BATCH)
        .fetch_all(&mut *conn)
        .await?;
        let count = rows.len() as i64;
        for row in &rows {
            let entry = StoredEntry::from_row(row)?;
            if entry.seq != expected {
                let problem = if expected == 1 {
                    format!("is missing: the log starts at seq {}", entry.seq)
                } else {
                    format!(
                        "is missing: the log goes from seq {} to seq {}",
                        expected - 1,
                        entry.seq
                    )
                };
                return found(expected, problem);
            }
            if entry.seq > head_seq {
                return found(
                    entry.seq,
                    format!(
                        "lies beyond the head (seq {head_seq}): it was not appended through the chain"
                    ),
                );
            }
            let computed = entry.computed_hash();
            if entry.prev_hash != prev_hash {
                // This entry is intact but chained to another hash than its predecessor
                // has now: the predecessor was rewritten along with its hash.
                if computed == entry.hash && entry.seq > 1 {
                    return found(
                        entry.seq - 1,
                        format!(
                            "was rewritten: its hash is {prev_hash}, but entry {} was chained to {}",
                            entry.seq, entry.prev_hash
                        ),
                    );
                }
                return found(
                    entry.seq,
                    "its prev_hash does not match the hash of the entry before it".to_owned(),
                );
            }
            if computed != entry.hash {
                return found(
                    entry.seq,
                    "its contents do not match its hash: it was changed after it was written"
                        .to_owned(),
                );
            }
            prev_hash = entry.hash;
            expected += 1;
        }
        if count < VERIFY_BATCH {
            break;
        }
    }
    let last = expected - 1;
    if last < head_seq {
        return found(
            last + 1,
            format!(
                "is missing: the head says the log has {head_seq} entries, but it ends at seq {last}"
            ),
        );
    }
    if prev_hash != head_hash {
        let problem = if last == 0 {
            "the log is empty but the head's hash is not the genesis hash".to_owned()
        } else {
            format!(
                "does not match the head: its hash is {prev_hash}, the head's is {head_hash} (the entry was rewritten)"
            )
        };
        return found(last, problem);
    }
    Ok(None)
}
