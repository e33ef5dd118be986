//! A small migration runner over the SQL files in `migrations/<backend>/`, embedded in
//! the binary. Each migration runs in its own transaction together with its record, so a
//! crash never leaves a half-applied migration. On PostgreSQL an advisory lock keeps two
//! nodes starting at once from racing.

use anyhow::Context;
use sqlx::Row;

use super::{Backend, Db};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

macro_rules! migrations {
    ($dir:literal: $(($version:literal, $name:literal)),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../../migrations/", $dir, "/", $name, ".sql")),
        }),*]
    };
}

const SQLITE: &[Migration] = migrations!("sqlite":
    (1, "0001_catalog"), (2, "0002_plugins"), (3, "0003_audit"), (4, "0004_accounts"),
    (5, "0005_staff"), (6, "0006_privacy"), (7, "0007_carts"), (8, "0008_orders"), (9, "0009_payment_attempts"), (10, "0010_cluster"), (11, "0011_order_tax"), (12, "0012_subscriptions"), (13, "0013_subscription_price_hold"), (14, "0014_loyalty"), (15, "0015_reviews"), (16, "0016_birthdays"), (17, "0017_behaviour"), (18, "0018_notifications"), (19, "0019_media"), (20, "0020_quiet_hours"), (21, "0021_staff_mfa"), (22, "0022_admin_ui"), (23, "0023_imports"), (24, "0024_lot_recalls"), (25, "0025_customer_keys"), (26, "0026_staff_sso"), (27, "0027_admin_lists"), (28, "0028_staff_passkeys"), (29, "0029_import_reports"), (30, "0030_order_payments"), (31, "0031_decision_detail"));
const POSTGRES: &[Migration] = migrations!("postgres":
    (1, "0001_catalog"), (2, "0002_plugins"), (3, "0003_audit"), (4, "0004_accounts"),
    (5, "0005_staff"), (6, "0006_privacy"), (7, "0007_carts"), (8, "0008_orders"), (9, "0009_payment_attempts"), (10, "0010_cluster"), (11, "0011_order_tax"), (12, "0012_subscriptions"), (13, "0013_subscription_price_hold"), (14, "0014_loyalty"), (15, "0015_reviews"), (16, "0016_birthdays"), (17, "0017_behaviour"), (18, "0018_notifications"), (19, "0019_media"), (20, "0020_quiet_hours"), (21, "0021_staff_mfa"), (22, "0022_admin_ui"), (23, "0023_imports"), (24, "0024_lot_recalls"), (25, "0025_customer_keys"), (26, "0026_staff_sso"), (27, "0027_admin_lists"), (28, "0028_staff_passkeys"), (29, "0029_import_reports"), (30, "0030_order_payments"), (31, "0031_decision_detail"));

fn migrations_for(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// The newest migration this binary knows.
pub fn latest_version(backend: Backend) -> i64 {
    migrations_for(backend)
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// FNV-1a: a stable checksum to notice a migration edited after it was applied.
fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in sql.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016x}")
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS olivine_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// Applies every pending migration; returns how many were applied.
pub async fn migrate(db: &Db) -> anyhow::Result<usize> {
    migrate_to(db, i64::MAX).await
}

/// Applies the pending migrations up to `version` (an older schema, as a store of an
/// older release had: the backup tests restore one); returns how many were applied.
pub async fn migrate_to(db: &Db, version: i64) -> anyhow::Result<usize> {
    let mut conn = db.pool.acquire().await?;
    if db.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_lock(7411001)")
            .execute(&mut *conn)
            .await?;
    }
    let result = apply_pending(db.backend, &mut conn, version).await;
    if db.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_unlock(7411001)")
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn apply_pending(
    backend: Backend,
    conn: &mut sqlx::AnyConnection,
    up_to: i64,
) -> anyhow::Result<usize> {
    sqlx::query(CREATE_TABLE).execute(&mut *conn).await?;
    let applied: Vec<(i64, String)> =
        sqlx::query("SELECT version, checksum FROM olivine_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
    let mut count = 0;
    for migration in migrations_for(backend)
        .iter()
        .filter(|m| m.version <= up_to)
    {
        let sum = checksum(migration.sql);
        if let Some((_, existing)) = applied.iter().find(|(v, _)| *v == migration.version) {
            anyhow::ensure!(
                *existing == sum,
                "migration {} was changed after it was applied",
                migration.name
            );
            continue;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("applying migration {}", migration.name))?;
        sqlx::query(
            "INSERT INTO olivine_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(sum)
        .bind(crate::time::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(migration = migration.name, "applied migration");
        count += 1;
    }
    Ok(count)
}

/// The newest applied migration, or `None` before the first.
pub async fn schema_version(db: &Db) -> Result<Option<i64>, sqlx::Error> {
    let table_exists = match db.backend {
        Backend::Sqlite => sqlx::query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'olivine_migrations'",
        ),
        Backend::Postgres => sqlx::query("SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'olivine_migrations'"),
    }
    .fetch_optional(&db.pool)
    .await?
    .is_some();
    if !table_exists {
        return Ok(None);
    }
    let row = sqlx::query("SELECT CAST(MAX(version) AS BIGINT) FROM olivine_migrations")
        .fetch_one(&db.pool)
        .await?;
    row.try_get::<Option<i64>, _>(0)
}
