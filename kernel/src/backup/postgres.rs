//! PostgreSQL in and out of a backup, with the PostgreSQL client tools.
//!
//! Out: `pg_dump --format=custom` of the schema the store's tables are in (the
//! connection's `current_schema()`, `public` unless the URL sets a search_path). pg_dump
//! reads everything in one repeatable-read snapshot, so the dump is one consistent
//! moment while the store keeps serving.
//!
//! In: `pg_restore --single-transaction` (all or nothing) into that schema of the target
//! database. The schema's own entry is left out of the dump's list and the schema made
//! beforehand, so an existing empty schema (`public` of a new database) works too.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use sqlx::Row;

use crate::store::Db;

/// The dump's file name in a backup.
pub const BACKUP_FILE: &str = "database.pgdump";

/// The client programs to run: names on the PATH or paths.
#[derive(Debug, Clone)]
pub struct Tools {
    pub pg_dump: String,
    pub pg_restore: String,
}

/// The schema new tables go to on this connection; `None` when no schema of the
/// search_path exists.
pub async fn current_schema(db: &Db) -> anyhow::Result<Option<String>> {
    let row = sqlx::query("SELECT CAST(current_schema() AS TEXT)")
        .fetch_one(&db.pool)
        .await?;
    Ok(row.try_get::<Option<String>, _>(0)?)
}

/// Dumps `schema` into `target`; `snapshot`: a snapshot exported by another session
/// (`pg_export_snapshot()`) to dump at, instead of pg_dump's own.
pub async fn dump(
    url: &str,
    schema: &str,
    snapshot: Option<&str>,
    tools: &Tools,
    target: &Path,
) -> anyhow::Result<()> {
    let (url, password) = split_password(url);
    let mut command = tokio::process::Command::new(&tools.pg_dump);
    command
        .arg("--format=custom")
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg(format!("--schema={}", quote_pattern(schema)))
        // The per-customer keys stay out of every backup (see `key_snapshot`).
        .arg(format!(
            "--exclude-table-data={}.customer_keys",
            quote_pattern(schema)
        ))
        .arg("--file")
        .arg(target)
        .arg("--dbname")
        .arg(&url);
    if let Some(snapshot) = snapshot {
        command.arg(format!("--snapshot={snapshot}"));
    }
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let ticker = super::size_ticker("pg_dump", target.to_owned());
    let result = run(command, "pg_dump", "OLIVINE_PG_DUMP").await;
    ticker.abort();
    result?;
    std::fs::File::open(target)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("syncing {}", target.display()))
}

/// Whether `schema` exists with any table in it.
pub async fn schema_has_tables(db: &Db, schema: &str) -> anyhow::Result<bool> {
    let row = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_catalog.pg_tables WHERE schemaname = $1",
    )
    .bind(schema)
    .fetch_one(&db.pool)
    .await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

/// Renames `schema` to `<schema>_before_restore_<stamp>`; answers the new name.
pub async fn move_aside(db: &Db, schema: &str, stamp: &str) -> anyhow::Result<String> {
    let aside = format!("{schema}_before_restore_{stamp}");
    let sql = format!(
        "ALTER SCHEMA {} RENAME TO {}",
        quote_ident(schema),
        quote_ident(&aside)
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&db.pool)
        .await
        .with_context(|| format!("renaming schema {schema} aside"))?;
    Ok(aside)
}

/// Restores the dump into `schema` of the database at `url` (no table in it yet).
pub async fn restore(
    db: &Db,
    url: &str,
    schema: &str,
    tools: &Tools,
    dump: &Path,
) -> anyhow::Result<()> {
    let list = restore_list(tools, dump, schema).await?;
    let create = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema));
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&db.pool)
        .await
        .with_context(|| format!("creating schema {schema}"))?;
    let (url, password) = split_password(url);
    let mut command = tokio::process::Command::new(&tools.pg_restore);
    command
        .arg("--no-owner")
        .arg("--no-privileges")
        .arg("--exit-on-error")
        .arg("--single-transaction")
        .arg("--use-list")
        .arg(&list)
        .arg("--dbname")
        .arg(&url)
        .arg(dump);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let result = run(command, "pg_restore", "OLIVINE_PG_RESTORE").await;
    let _ = std::fs::remove_file(&list);
    result
}

/// The dump's table of contents without the schema's own entries (the schema is made
/// beforehand, and may exist already), written to a temporary file.
async fn restore_list(tools: &Tools, dump: &Path, schema: &str) -> anyhow::Result<PathBuf> {
    let mut command = tokio::process::Command::new(&tools.pg_restore);
    command.arg("--list").arg(dump);
    let listed = output(command, "pg_restore", "OLIVINE_PG_RESTORE").await?;
    let list: String = String::from_utf8_lossy(&listed)
        .lines()
        .map(|line| {
            if is_schema_entry(line, schema) {
                format!(";{line}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let path = std::env::temp_dir().join(format!(
        "olivine-restore-{}-{:016x}.list",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&path, list).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Whether a line of `pg_restore --list` is the schema's own entry or its comment:
/// `4; 2615 2200 SCHEMA - public owner`, `3354; 0 0 COMMENT - SCHEMA public owner`.
fn is_schema_entry(line: &str, schema: &str) -> bool {
    let words: Vec<&str> = line.split(' ').skip(3).collect();
    matches!(words.as_slice(), ["SCHEMA", "-", name, ..] if *name == schema)
        || matches!(words.as_slice(), ["COMMENT", "-", "SCHEMA", name, ..] if *name == schema)
}

async fn run(command: tokio::process::Command, name: &str, setting: &str) -> anyhow::Result<()> {
    output(command, name, setting).await.map(|_| ())
}

/// Runs a client program; answers its stdout, or an error with its stderr.
async fn output(
    mut command: tokio::process::Command,
    name: &str,
    setting: &str,
) -> anyhow::Result<Vec<u8>> {
    command.stdin(Stdio::null()).kill_on_drop(true);
    let output = command.output().await.map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "{name} was not found: install the PostgreSQL client of the server's major version \
                 (Debian: postgresql-client) or point {setting} at it"
            )
        } else {
            anyhow::anyhow!("running {name}: {err}")
        }
    })?;
    anyhow::ensure!(
        output.status.success(),
        "{name} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(output.stdout)
}

/// The URL without its password, and the password: a password on a command line is
/// visible to every user of the machine, in the environment it is not.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return (url.to_owned(), None);
    };
    (
        format!("{scheme}://{user}@{host}{tail}"),
        Some(percent_decode(password)),
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A schema name as a pg_dump pattern that matches it exactly.
fn quote_pattern(name: &str) -> String {
    quote_ident(name)
}

/// A table of `schema` as SQL names it.
pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// A schema name as an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_goes_to_the_environment() {
        assert_eq!(
            split_password("postgres://shop:p%40ss%3Aw@db:5432/shop?sslmode=require"),
            (
                "postgres://shop@db:5432/shop?sslmode=require".to_owned(),
                Some("p@ss:w".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://postgres@127.0.0.1/test"),
            ("postgres://postgres@127.0.0.1/test".to_owned(), None)
        );
        assert_eq!(split_password("postgres:///shop").1, None);
    }

    #[test]
    fn the_schema_entries_of_a_list() {
        assert!(is_schema_entry(
            "4; 2615 2200 SCHEMA - public pg_database_owner",
            "public"
        ));
        assert!(is_schema_entry(
            "3354; 0 0 COMMENT - SCHEMA public pg_database_owner",
            "public"
        ));
        assert!(is_schema_entry("6; 2615 16397 SCHEMA - s1 postgres", "s1"));
        assert!(!is_schema_entry(
            "217; 1259 16398 TABLE s1 u postgres",
            "s1"
        ));
        assert!(!is_schema_entry(
            "6; 2615 16397 SCHEMA - s10 postgres",
            "s1"
        ));
        assert!(!is_schema_entry(
            "; Archive created at 2026-12-05",
            "public"
        ));
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(quote_ident("public"), "\"public\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
