//! `olivine backup <dir>` and `olivine restore <dir>` (docs/BACKUPS.md).
//!
//! A backup is a directory: the database (a SQLite copy, or a PostgreSQL custom-format
//! dump) as one consistent snapshot taken while the store serves, the media files when
//! they are on local disk, and `manifest.json` (written last) with the schema version,
//! the time, the kernel version and every file's SHA-256. Plugin binaries are rows of
//! the database and come with it. The master key is never in a backup: whoever holds a
//! backup and its key can read every customer's identity, so they are kept apart.
//!
//! A restore checks every checksum and the schema version before it writes anything,
//! goes only into an empty database and media directory (`--force` moves what is there
//! aside, it never deletes), then migrates the restored schema forward.
//!
//! The per-customer data keys are not in a backup either (`customer_keys` goes out
//! empty): each backup writes them, with the erasure log, to one key snapshot that it
//! replaces, so an erasure reaches every backup by the next one ([`key_snapshot`]).
//! A restore puts the keys back from that snapshot and erases again whoever the log says
//! was erased after the backup.

pub mod key_snapshot;
pub mod manifest;
pub mod media;
pub mod postgres;
pub mod schedule;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::StoreConfig;
use crate::store::{Backend, Db};
pub use manifest::{FileEntry, Manifest};

/// Where the files that are not in the database are: media and the master key.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FileSettings {
    /// Where media is stored on local disk. Unset: `<data dir>/media`.
    #[arg(long, env = "OLIVINE_MEDIA_DIR")]
    pub media_dir: Option<PathBuf>,

    /// The S3-compatible bucket media is stored in, if any: it is not copied (keep the
    /// bucket's versioning on instead; docs/BACKUPS.md).
    #[arg(long, env = "OLIVINE_MEDIA_S3_BUCKET")]
    pub media_s3_bucket: Option<String>,

    /// The master key file (only named in the output, never copied). Unset:
    /// `<data dir>/master.key`.
    #[arg(long, env = "OLIVINE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// The customer key snapshot: each backup replaces it, a restore reads it. Keep it
    /// apart from the backups, like the master key. Unset:
    /// `<data dir>/customer-keys.snapshot`.
    #[arg(long, env = "OLIVINE_CUSTOMER_KEY_SNAPSHOT")]
    pub customer_key_snapshot: Option<PathBuf>,
}

impl FileSettings {
    fn bucket(&self) -> Option<&str> {
        self.media_s3_bucket
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
    }

    fn media_dir(&self, store: &StoreConfig) -> PathBuf {
        self.media_dir
            .clone()
            .unwrap_or_else(|| store.data_dir.join("media"))
    }

    fn master_key_file(&self, store: &StoreConfig) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| store.data_dir.join("master.key"))
    }

    pub fn key_snapshot_file(&self, store: &StoreConfig) -> PathBuf {
        self.customer_key_snapshot
            .clone()
            .unwrap_or_else(|| store.data_dir.join("customer-keys.snapshot"))
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct BackupArgs {
    /// A new (or empty) directory to write the backup into.
    pub dir: PathBuf,

    #[command(flatten)]
    pub store: StoreConfig,

    #[command(flatten)]
    pub files: FileSettings,

    /// The pg_dump to run (PostgreSQL stores): of the server's major version or newer.
    #[arg(long, env = "OLIVINE_PG_DUMP", default_value = "pg_dump")]
    pub pg_dump: String,

    /// PostgreSQL: dump at this snapshot, exported by another session with
    /// `pg_export_snapshot()` and kept open until the backup ends.
    #[arg(long)]
    pub pg_snapshot: Option<String>,
}

impl BackupArgs {
    pub fn new(dir: impl Into<PathBuf>, store: StoreConfig) -> BackupArgs {
        BackupArgs {
            dir: dir.into(),
            store,
            files: FileSettings::default(),
            pg_dump: "pg_dump".to_owned(),
            pg_snapshot: None,
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct RestoreArgs {
    /// The backup directory (the one holding manifest.json).
    pub dir: PathBuf,

    #[command(flatten)]
    pub store: StoreConfig,

    #[command(flatten)]
    pub files: FileSettings,

    /// The pg_restore to run (PostgreSQL stores).
    #[arg(long, env = "OLIVINE_PG_RESTORE", default_value = "pg_restore")]
    pub pg_restore: String,

    /// Restore even though the target has data: its database file (or PostgreSQL schema)
    /// and media directory are renamed aside (`…before-restore-<time>`), never deleted.
    /// Stop the store first.
    #[arg(long)]
    pub force: bool,
}

impl RestoreArgs {
    pub fn new(dir: impl Into<PathBuf>, store: StoreConfig) -> RestoreArgs {
        RestoreArgs {
            dir: dir.into(),
            store,
            files: FileSettings::default(),
            pg_restore: "pg_restore".to_owned(),
            force: false,
        }
    }
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    /// Migrations applied after the restore (the backup was older than this binary).
    pub migrations_applied: usize,
    pub media_files: usize,
    /// What `--force` renamed aside.
    pub moved_aside: Vec<String>,
    /// The customer keys put back and the erasures applied again, from the key
    /// snapshot; `None` when there was no snapshot.
    pub customer_keys: Option<key_snapshot::Applied>,
}

// ----- backup -----

/// Takes a backup of the store into `args.dir`, printing each step.
pub async fn backup(args: &BackupArgs) -> anyhow::Result<Manifest> {
    let started = Instant::now();
    prepare_backup_dir(&args.dir)?;
    let url = source_url(&args.store)?;
    let db = Db::connect(&url, 2).await?;
    let taken = backup_on(&db, &url, args).await;
    db.close().await;
    let manifest = taken?;
    println!(
        "backup done in {:.1} s: {} (schema version {}, {} file(s))",
        started.elapsed().as_secs_f64(),
        args.dir.display(),
        manifest.schema_version,
        manifest.files.len()
    );
    println!("{}", master_key_notice(&args.files, &args.store));
    Ok(manifest)
}

/// The database URL of a store that exists: an embedded store's file must be there
/// (connecting would create an empty one).
fn source_url(store: &StoreConfig) -> anyhow::Result<String> {
    let url = store.database_url()?;
    if url.starts_with("sqlite:") {
        let path = sqlite::database_path(&url)?;
        anyhow::ensure!(
            path.is_file(),
            "no database at {}: nothing to back up",
            path.display()
        );
    }
    Ok(url)
}

/// A backup goes into a new or empty directory, never over an older backup.
fn prepare_backup_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => anyhow::ensure!(
            entries.next().is_none(),
            "{} is not empty: give each backup a new directory",
            dir.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Err(err) => return Err(err).with_context(|| format!("opening {}", dir.display())),
    }
    Ok(())
}

async fn backup_on(db: &Db, url: &str, args: &BackupArgs) -> anyhow::Result<Manifest> {
    let created_at = crate::time::now();
    let version = crate::store::schema_version(db)
        .await?
        .context("the store's database is not migrated: nothing to back up")?;

    println!(
        "1/4 database ({}): one consistent snapshot, without the customer keys",
        db.backend.name()
    );
    let (database, postgres_schema) = snapshot_database(db, url, args).await?;
    // The manifest's version must be the snapshot's: a migration in between makes it
    // unknown which one the snapshot has.
    let after = crate::store::schema_version(db).await?;
    anyhow::ensure!(
        after == Some(version),
        "the store was migrated during the backup: take it again"
    );
    let (bytes, sha256) = hash_blocking(args.dir.join(&database)).await?;
    println!("    {database}: {}", media::human_bytes(bytes));
    let mut files = vec![FileEntry {
        path: database,
        bytes,
        sha256,
    }];

    // After the database snapshot: every customer in it not erased since has a key here.
    let key_file = args.files.key_snapshot_file(&args.store);
    println!("2/4 customer keys");
    let keys = key_snapshot::read(db).await?;
    key_snapshot::write(&keys, &key_file)?;
    println!(
        "    {} key(s) and {} erasure(s) written to {} (replacing the previous snapshot; \
         keep it apart from the backups, with the master key)",
        keys.keys.len(),
        keys.erasures.len(),
        key_file.display()
    );

    println!("3/4 media");
    let media = backup_media(args, &mut files).await?;

    println!("4/4 manifest");
    let manifest = Manifest {
        format: manifest::FORMAT.to_owned(),
        format_version: manifest::FORMAT_VERSION,
        created_at,
        kernel_version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: db.backend.name().to_owned(),
        schema_version: version,
        postgres_schema,
        media,
        master_key: format!(
            "not in this backup: keep it apart ({})",
            master_key_place(&args.files, &args.store)
        ),
        customer_keys: format!(
            "not in this backup: the latest key snapshot is {}",
            key_file.display()
        ),
        files,
    };
    manifest.write(&args.dir)?;
    Ok(manifest)
}

/// Writes the database snapshot; answers its file name and, on PostgreSQL, the schema.
async fn snapshot_database(
    db: &Db,
    url: &str,
    args: &BackupArgs,
) -> anyhow::Result<(String, Option<String>)> {
    match db.backend {
        Backend::Sqlite => {
            let target = args.dir.join(sqlite::BACKUP_FILE);
            let ticker = size_ticker("database", target.clone());
            let copied = sqlite::snapshot(db, &target).await;
            ticker.abort();
            copied?;
            sqlite::strip_customer_keys(&target).await?;
            Ok((sqlite::BACKUP_FILE.to_owned(), None))
        }
        Backend::Postgres => {
            let schema = postgres::current_schema(db)
                .await?
                .context("the database URL's search_path names no existing schema")?;
            let tools = postgres::Tools {
                pg_dump: args.pg_dump.clone(),
                pg_restore: String::new(),
            };
            let target = args.dir.join(postgres::BACKUP_FILE);
            postgres::dump(url, &schema, args.pg_snapshot.as_deref(), &tools, &target).await?;
            Ok((postgres::BACKUP_FILE.to_owned(), Some(schema)))
        }
    }
}

/// Copies local media into the backup; answers the manifest's `media`.
async fn backup_media(args: &BackupArgs, files: &mut Vec<FileEntry>) -> anyhow::Result<String> {
    if let Some(bucket) = args.files.bucket() {
        println!(
            "    media is in the S3 bucket `{bucket}`: not copied. Keep versioning (or \
             replication) on for that bucket; it is the media's backup."
        );
        return Ok(format!("s3:{bucket}"));
    }
    let dir = args.files.media_dir(&args.store);
    if !dir.is_dir() {
        println!("    no media directory at {}", dir.display());
        return Ok("none".to_owned());
    }
    files.extend(media::copy_out(dir, args.dir.clone()).await?);
    Ok("local".to_owned())
}

fn master_key_place(files: &FileSettings, store: &StoreConfig) -> String {
    if std::env::var_os("OLIVINE_MASTER_KEY").is_some() {
        "the environment variable OLIVINE_MASTER_KEY".to_owned()
    } else {
        let file = files.master_key_file(store);
        let missing = if file.exists() {
            ""
        } else {
            ", which does not exist yet: the store makes it on its first start"
        };
        format!("the file {}{missing}", file.display())
    }
}

fn master_key_notice(files: &FileSettings, store: &StoreConfig) -> String {
    format!(
        "The master key is NOT in this backup. It is in {}. Keep a copy of it apart from \
         the backups (another place, other people): without it the customers' names, emails \
         and addresses in this backup cannot be read; stored beside it, anyone holding the \
         backup can read them. After `olivine keys rotate`, keep the previous key \
         (master.key.old) as long as backups taken before the rotation.",
        master_key_place(files, store)
    )
}

// ----- restore -----

/// Restores the backup in `args.dir` into the configured, empty store.
pub async fn restore(args: &RestoreArgs) -> anyhow::Result<Restored> {
    let manifest = Manifest::read(&args.dir)?;
    println!(
        "backup of a {} store at schema version {}, taken {} by olivine {}",
        manifest.backend, manifest.schema_version, manifest.created_at, manifest.kernel_version
    );
    println!(
        "1/4 checking {} file(s) against the manifest",
        manifest.files.len()
    );
    verify_files(&args.dir, &manifest).await?;
    let url = args.store.database_url()?;
    check_compatible(backend_of(&url), &manifest)?;

    println!("2/4 checking that the target is empty");
    let db = Db::connect(&url, 2).await?;
    let target = match Target::inspect(&db, &url, args, &manifest).await {
        Ok(target) => target,
        Err(err) => {
            db.close().await;
            return Err(err);
        }
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let (moved_aside, live_store) = target.clear(&db, &stamp).await?;

    println!("3/4 restoring the database");
    let db = restore_database(db, &url, args, &manifest, &target).await?;
    let finished = finish(&db, args, &manifest, &target, live_store.as_ref()).await;
    db.close().await;
    let (migrations_applied, media_files, customer_keys) = finished?;
    println!("restore done: start the store with the backed-up store's master key in place");
    Ok(Restored {
        manifest,
        migrations_applied,
        media_files,
        moved_aside,
        customer_keys,
    })
}

fn backend_of(url: &str) -> Backend {
    if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// Every file's size and SHA-256 as the manifest says, or nothing is restored.
pub async fn verify_files(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let ticker = Ticker::new("checked", manifest.files.len());
    for (done, file) in manifest.files.iter().enumerate() {
        let path = dir.join(manifest::relative_path(&file.path)?);
        let (bytes, sha256) = hash_blocking(path)
            .await
            .with_context(|| format!("the backup is incomplete: {}", file.path))?;
        anyhow::ensure!(
            bytes == file.bytes && sha256 == file.sha256,
            "the backup is damaged: {} does not match its checksum in the manifest; nothing was restored",
            file.path
        );
        ticker.set(done + 1);
    }
    Ok(())
}

/// Migrates the restored schema forward, puts the customer keys back (erasing again
/// whoever was erased since), copies the media, checks the master key; answers the
/// migrations applied, the media files copied and what the key snapshot did.
async fn finish(
    db: &Db,
    args: &RestoreArgs,
    manifest: &Manifest,
    target: &Target,
    live_store: Option<&key_snapshot::MovedAside>,
) -> anyhow::Result<(usize, usize, Option<key_snapshot::Applied>)> {
    let version = crate::store::schema_version(db).await?;
    anyhow::ensure!(
        version == Some(manifest.schema_version),
        "the restored database is at schema version {version:?}, the manifest says {}",
        manifest.schema_version
    );
    let migrations_applied = crate::store::migrate(db).await?;
    println!(
        "    schema version {} restored{}",
        manifest.schema_version,
        if migrations_applied > 0 {
            format!(
                "; {migrations_applied} migration(s) applied, now at {}",
                crate::store::latest_version(db.backend)
            )
        } else {
            String::new()
        }
    );
    let customer_keys = restore_customer_keys(db, args, live_store).await?;
    println!("4/4 media");
    let media_files = restore_media(args, manifest, target).await?;
    check_master_key(db, args).await;
    Ok((migrations_applied, media_files, customer_keys))
}

/// Applies the keys and erasures of the store moved aside (if any) and of the key
/// snapshot to the restored store, or says loudly that there are none.
async fn restore_customer_keys(
    db: &Db,
    args: &RestoreArgs,
    live_store: Option<&key_snapshot::MovedAside>,
) -> anyhow::Result<Option<key_snapshot::Applied>> {
    let file = args.files.key_snapshot_file(&args.store);
    let from_file = key_snapshot::load(&file)?;
    let live = match live_store {
        Some(aside) => key_snapshot::read_moved_aside(db, aside)
            .await
            .context("reading the keys of the store moved aside")?,
        None => None,
    };
    if let Some(live) = &live {
        println!(
            "    the store moved aside holds {} customer key(s) and {} erasure(s): taken first",
            live.keys.len(),
            live.erasures.len()
        );
    }
    let source = match (&live, &from_file) {
        (Some(_), Some(_)) => format!("the store moved aside and {}", file.display()),
        (Some(_), None) => "the store moved aside".to_owned(),
        _ => file.display().to_string(),
    };
    let snapshot = match (live, from_file) {
        (Some(live), Some(file)) => Some(key_snapshot::merge(live, file)),
        (live, file) => live.or(file),
    };
    let Some(snapshot) = snapshot else {
        println!(
            "WARNING: no customer key snapshot at {}: customers' identity under their own keys \
             cannot be read, and erasures made after this backup are not applied again. Put \
             the latest snapshot there (or pass --customer-key-snapshot) and restore again \
             with --force.",
            file.display()
        );
        return Ok(None);
    };
    let applied = key_snapshot::apply(db, &snapshot).await?;
    println!(
        "    customer keys from {source} (taken {}): {} key(s) put back, {} customer(s) erased \
         again (erased after this backup was taken)",
        snapshot.taken_at, applied.keys, applied.erased_again
    );
    Ok(Some(applied))
}

/// The same backend, and a schema this binary knows.
fn check_compatible(backend: Backend, manifest: &Manifest) -> anyhow::Result<()> {
    anyhow::ensure!(
        manifest.backend == backend.name(),
        "this is a backup of a {} store; the target is {} (a backup restores into the same backend)",
        manifest.backend,
        backend.name()
    );
    let latest = crate::store::latest_version(backend);
    anyhow::ensure!(
        manifest.schema_version <= latest,
        "the backup's schema (version {}) is newer than this olivine knows (version {latest}): \
         restore it with olivine {} or later; nothing was restored",
        manifest.schema_version,
        manifest.kernel_version
    );
    Ok(())
}

/// Where the restore goes and what is there now.
struct Target {
    /// The SQLite file, or the PostgreSQL schema.
    database: TargetDb,
    database_in_use: bool,
    /// The local media directory, when media is restored there.
    media_dir: Option<PathBuf>,
    media_in_use: bool,
    force: bool,
}

enum TargetDb {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Target {
    /// Looks at the target; refuses one with data unless `--force`.
    async fn inspect(
        db: &Db,
        url: &str,
        args: &RestoreArgs,
        manifest: &Manifest,
    ) -> anyhow::Result<Target> {
        let (database, database_in_use) = match db.backend {
            Backend::Sqlite => {
                let path = sqlite::database_path(url)?;
                let in_use = sqlite::has_tables(&path).await?;
                (TargetDb::Sqlite(path), in_use)
            }
            Backend::Postgres => {
                let schema = target_schema(db, manifest).await?;
                let in_use = postgres::schema_has_tables(db, &schema).await?;
                (TargetDb::Postgres(schema), in_use)
            }
        };
        let media_dir = (manifest.media == "local" && args.files.bucket().is_none())
            .then(|| args.files.media_dir(&args.store));
        let media_in_use = match &media_dir {
            Some(dir) => media::has_media(dir)?,
            None => false,
        };
        let target = Target {
            database,
            database_in_use,
            media_dir,
            media_in_use,
            force: args.force,
        };
        target.refuse_unless_empty()?;
        Ok(target)
    }

    fn refuse_unless_empty(&self) -> anyhow::Result<()> {
        if self.force {
            return Ok(());
        }
        if self.database_in_use {
            let what = match &self.database {
                TargetDb::Sqlite(path) => format!("the database {}", path.display()),
                TargetDb::Postgres(schema) => format!("the PostgreSQL schema {schema}"),
            };
            anyhow::bail!(
                "{what} already holds tables: restore into an empty store, or pass --force to \
                 move it aside (stop the store first); nothing was restored"
            );
        }
        if self.media_in_use
            && let Some(dir) = &self.media_dir
        {
            anyhow::bail!(
                "the media directory {} already holds media: restore into an empty store, or \
                 pass --force to move it aside; nothing was restored",
                dir.display()
            );
        }
        Ok(())
    }

    /// With `--force`: renames what is there aside; answers the new names and the
    /// database moved aside.
    async fn clear(
        &self,
        db: &Db,
        stamp: &str,
    ) -> anyhow::Result<(Vec<String>, Option<key_snapshot::MovedAside>)> {
        let mut moved = Vec::new();
        let mut database = None;
        if self.database_in_use {
            let aside = match &self.database {
                TargetDb::Sqlite(path) => {
                    db.pool.close().await;
                    let aside = sqlite::move_aside(path, stamp)?;
                    database = Some(key_snapshot::MovedAside::Sqlite(aside.clone()));
                    aside.display().to_string()
                }
                TargetDb::Postgres(schema) => {
                    let aside = postgres::move_aside(db, schema, stamp).await?;
                    database = Some(key_snapshot::MovedAside::Postgres(aside.clone()));
                    format!("schema {aside}")
                }
            };
            println!("    moved the existing database aside: {aside}");
            moved.push(aside);
        }
        if self.media_in_use
            && let Some(dir) = &self.media_dir
        {
            let aside = PathBuf::from(format!("{}.before-restore-{stamp}", dir.display()));
            std::fs::rename(dir, &aside)
                .with_context(|| format!("moving {} aside", dir.display()))?;
            println!("    moved the existing media aside: {}", aside.display());
            moved.push(aside.display().to_string());
        }
        Ok((moved, database))
    }
}

/// The schema to restore into: the backup's. The target URL's search_path must lead
/// there, or the restored store would not find its tables.
async fn target_schema(db: &Db, manifest: &Manifest) -> anyhow::Result<String> {
    let schema = manifest
        .postgres_schema
        .clone()
        .context("the manifest of a PostgreSQL backup names no schema")?;
    match postgres::current_schema(db).await? {
        Some(current) if current != schema => anyhow::bail!(
            "the backup holds the schema `{schema}`, but this DATABASE_URL puts tables in \
             `{current}`: restore into a database whose search_path starts with `{schema}` \
             (for `public`, the default, any new database); nothing was restored"
        ),
        _ => Ok(schema),
    }
}

/// Restores the database; answers the pool to use from then on (on SQLite a new one:
/// the file under the old one was replaced).
async fn restore_database(
    db: Db,
    url: &str,
    args: &RestoreArgs,
    manifest: &Manifest,
    target: &Target,
) -> anyhow::Result<Db> {
    match &target.database {
        TargetDb::Sqlite(path) => {
            let file = manifest_file(manifest, sqlite::BACKUP_FILE)?;
            db.close().await;
            sqlite::install(&args.dir.join(file), path)?;
            Db::connect(url, 2).await
        }
        TargetDb::Postgres(schema) => {
            let file = manifest_file(manifest, postgres::BACKUP_FILE)?;
            let tools = postgres::Tools {
                pg_dump: String::new(),
                pg_restore: args.pg_restore.clone(),
            };
            let restored = postgres::restore(&db, url, schema, &tools, &args.dir.join(file)).await;
            let reached = match restored {
                Ok(()) => postgres::current_schema(&db).await,
                Err(err) => Err(err),
            };
            match reached {
                Ok(Some(now)) if now == *schema => Ok(db),
                Ok(_) => {
                    db.close().await;
                    anyhow::bail!(
                        "restored into the schema `{schema}`, but this DATABASE_URL's search_path does not lead there"
                    )
                }
                Err(err) => {
                    db.close().await;
                    Err(err)
                }
            }
        }
    }
}

fn manifest_file<'a>(manifest: &'a Manifest, name: &str) -> anyhow::Result<&'a str> {
    manifest
        .file(name)
        .map(|f| f.path.as_str())
        .with_context(|| format!("the manifest lists no {name}"))
}

async fn restore_media(
    args: &RestoreArgs,
    manifest: &Manifest,
    target: &Target,
) -> anyhow::Result<usize> {
    match (&target.media_dir, manifest.media.as_str()) {
        (Some(dir), _) => {
            let copied =
                media::copy_in(args.dir.clone(), manifest.files.clone(), dir.clone()).await?;
            println!("    {copied} media file(s) into {}", dir.display());
            Ok(copied)
        }
        (None, "local") => {
            println!(
                "    the media files are in {}/media: copy its originals/ and variants/ into \
                 the bucket (e.g. `aws s3 sync`)",
                args.dir.display()
            );
            Ok(0)
        }
        (None, other) => {
            if let Some(bucket) = other.strip_prefix("s3:") {
                println!(
                    "    media was in the S3 bucket `{bucket}` (not in the backup): point \
                     OLIVINE_MEDIA_S3_BUCKET at it, or at a copy restored from its versions"
                );
            } else {
                println!("    no media in the backup");
            }
            Ok(0)
        }
    }
}

/// Says whether the master key at hand opens the restored store's keys.
async fn check_master_key(db: &Db, args: &RestoreArgs) {
    let file = args.files.master_key_file(&args.store);
    let key = match std::env::var("OLIVINE_MASTER_KEY") {
        Ok(text) => crate::accounts::keys::decode_key(&text).ok(),
        Err(_) => crate::accounts::keys::read_key_file(&file).ok().flatten(),
    };
    let matches = match key {
        Some(key) => crate::accounts::keys::master_key_matches(db, &key)
            .await
            .ok(),
        None => None,
    };
    match matches {
        Some(true) => println!("the master key at hand opens the restored store's keys"),
        Some(false) => println!(
            "WARNING: the master key at {} does not open the restored store's keys: put the \
             backed-up store's master key there (or in OLIVINE_MASTER_KEY) before starting it",
            file.display()
        ),
        None => println!(
            "now put the backed-up store's master key at {} (or in OLIVINE_MASTER_KEY) before \
             starting the store: customers' identity cannot be read without it",
            file.display()
        ),
    }
}

// ----- progress -----

/// Prints `<what>: done/total` at each tenth, for steps over many files.
pub(crate) struct Ticker {
    what: &'static str,
    total: usize,
    tenths: AtomicUsize,
}

impl Ticker {
    pub(crate) fn new(what: &'static str, total: usize) -> Ticker {
        Ticker {
            what,
            total,
            tenths: AtomicUsize::new(0),
        }
    }

    pub(crate) fn set(&self, done: usize) {
        if self.total < 20 {
            return;
        }
        let tenths = done * 10 / self.total;
        if self.tenths.fetch_max(tenths, Ordering::Relaxed) < tenths {
            println!("    {}: {done}/{}", self.what, self.total);
        }
    }
}

/// Prints how big `file` has grown every two seconds until aborted: the long copy of
/// a large database shows it is moving.
pub(crate) fn size_ticker(what: &'static str, file: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if size != last {
                println!("    {what}: {} written", media::human_bytes(size));
                last = size;
            }
        }
    })
}

async fn hash_blocking(path: PathBuf) -> anyhow::Result<(u64, String)> {
    tokio::task::spawn_blocking(move || manifest::hash_file(&path))
        .await
        .context("hashing stopped")?
}
