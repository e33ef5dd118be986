//! The embedded store's database file in and out of a backup.
//!
//! Out: `VACUUM INTO` on the store's own pool. It reads the whole database inside one
//! read transaction, so the copy is one consistent moment, and in WAL mode the shoppers'
//! writes carry on meanwhile (they land after that moment). The copy is also compacted.
//!
//! In: the copy is written beside the target under a temporary name, synced and renamed
//! into place, so the target is either absent or whole.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnectOptions;

use crate::store::Db;

/// The database file's name in a backup.
pub const BACKUP_FILE: &str = "database.sqlite";

/// The file a `sqlite:` database URL names.
pub fn database_path(url: &str) -> anyhow::Result<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .context("not a sqlite: URL")?;
    let path = rest.split('?').next().unwrap_or_default();
    anyhow::ensure!(
        !path.is_empty() && !path.contains(":memory:"),
        "an in-memory SQLite database cannot be backed up or restored"
    );
    Ok(PathBuf::from(path))
}

/// Copies the live database into `target` (which must not exist), one consistent
/// snapshot, while the store keeps serving.
pub async fn snapshot(db: &Db, target: &Path) -> anyhow::Result<()> {
    let path = target
        .to_str()
        .context("the backup directory's path is not UTF-8")?;
    sqlx::query("VACUUM INTO $1")
        .bind(path)
        .execute(&db.pool)
        .await
        .context("copying the SQLite database (VACUUM INTO)")?;
    // VACUUM INTO leaves its file unsynced.
    std::fs::File::open(target)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("syncing {}", target.display()))?;
    Ok(())
}

/// Empties `customer_keys` in the backup's copy of the database (the keys go to the key
/// snapshot instead, `super::key_snapshot`): with `secure_delete` the deleted rows are
/// overwritten with zeros, and the VACUUM rebuilds the file without their pages.
pub async fn strip_customer_keys(copy: &Path) -> anyhow::Result<()> {
    let options = SqliteConnectOptions::new()
        .filename(copy)
        .create_if_missing(false);
    let mut conn = sqlx::sqlite::SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("opening the copy {}", copy.display()))?;
    let has_table: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'customer_keys'",
    )
    .fetch_one(&mut conn)
    .await?;
    if has_table > 0 {
        sqlx::raw_sql("PRAGMA secure_delete = ON; DELETE FROM customer_keys; VACUUM;")
            .execute(&mut conn)
            .await
            .context("clearing the customer keys out of the copy")?;
    }
    conn.close().await?;
    std::fs::File::open(copy)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("syncing {}", copy.display()))?;
    Ok(())
}

/// Whether the file holds any table: a missing or empty file does not, one that is not a
/// SQLite database counts as holding something (never overwritten without `--force`).
pub async fn has_tables(path: &Path) -> anyhow::Result<bool> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => return Ok(false),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err).with_context(|| format!("looking at {}", path.display())),
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false);
    let Ok(mut conn) = sqlx::sqlite::SqliteConnection::connect_with(&options).await else {
        return Ok(true);
    };
    let tables: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    Ok(tables.map(|n| n > 0).unwrap_or(true))
}

/// Moves the database file (and its WAL files) aside to `<file>.before-restore-<stamp>`;
/// answers the new name.
pub fn move_aside(path: &Path, stamp: &str) -> anyhow::Result<PathBuf> {
    let aside = with_suffix(path, &format!(".before-restore-{stamp}"));
    std::fs::rename(path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
    for wal in ["-wal", "-shm"] {
        let from = with_suffix(path, wal);
        if from.exists() {
            std::fs::rename(&from, with_suffix(&aside, wal))
                .with_context(|| format!("moving {} aside", from.display()))?;
        }
    }
    Ok(aside)
}

/// Puts the backup's database file at `target`, which holds no table (or is absent).
pub fn install(backup_file: &Path, target: &Path) -> anyhow::Result<()> {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = with_suffix(target, ".restoring");
    super::manifest::copy_hashed(backup_file, &tmp)
        .with_context(|| format!("copying the database to {}", tmp.display()))?;
    // WAL files of the empty database there would be replayed onto the restored one.
    for wal in ["-wal", "-shm"] {
        let stale = with_suffix(target, wal);
        if stale.exists() {
            std::fs::remove_file(&stale)
                .with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    std::fs::rename(&tmp, target).with_context(|| format!("renaming into {}", target.display()))?;
    crate::accounts::keys::sync_dir(dir);
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_of_a_url() {
        assert_eq!(
            database_path("sqlite://data/olivine.db?mode=rwc").ok(),
            Some(PathBuf::from("data/olivine.db"))
        );
        assert_eq!(
            database_path("sqlite:/tmp/x.db").ok(),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert!(database_path("sqlite::memory:").is_err());
        assert!(database_path("postgres://x").is_err());
    }
}
