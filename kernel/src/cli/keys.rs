//! `olivine keys rotate`: a new master key, or a new token signing key, without
//! stopping the store.
//!
//! Master key, with a key file `F` (the default `<data dir>/master.key`, or
//! `OLIVINE_MASTER_KEY_FILE`):
//! 1. the new key is written to `F.new` (0600, synced);
//! 2. every account key is re-wrapped under it in one transaction (running kernels hold
//!    the keys unwrapped and keep serving); the per-customer keys are wrapped by one of
//!    them (`customer`), so re-wrapping that row puts every customer key under the new
//!    master key at once;
//! 3. `F` is copied to `F.old` (needed to read backups taken before the rotation), then
//!    `F.new` is renamed over `F`.
//!
//! A crash before 2 leaves the database under the old key (`F` still matches; `F.new` is
//! overwritten by the next run). A crash between 2 and 3 leaves the database under the
//! key in `F.new`: a kernel tries `F`, then `F.new`, so it still starts, and running the
//! command again finishes step 3. With `OLIVINE_MASTER_KEY` there is no file to swap:
//! the operator sets the new value after the command succeeded (kernels started with
//! the old value before then refuse to start, running ones keep serving).

use std::path::PathBuf;

use anyhow::Context;

use crate::accounts::keys::{self, Key};
use crate::config::StoreConfig;
use crate::store::Db;

/// The audit actor of rotations made from the command line.
pub const CLI_ACTOR: &str = "cli";

#[derive(clap::Args, Clone, Debug)]
pub struct RotateArgs {
    #[command(flatten)]
    pub store: StoreConfig,

    /// The current master key (base64). Unset: read from the master key file.
    #[arg(long, env = "OLIVINE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,

    /// The current master key file. Unset: `<data dir>/master.key`.
    #[arg(long, env = "OLIVINE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// The new master key (base64).
    #[arg(
        long,
        env = "OLIVINE_NEW_MASTER_KEY",
        hide_env_values = true,
        conflicts_with = "new_master_key_file"
    )]
    pub new_master_key: Option<String>,

    /// A file with the new master key; created with a random key (mode 0600) when it
    /// does not exist. Without this or `--new-master-key`, a random key is generated
    /// (key-file setups only).
    #[arg(long)]
    pub new_master_key_file: Option<PathBuf>,

    /// Add a new token signing key instead; it signs new tokens from each kernel's next
    /// start, the previous one keeps verifying for an access-token lifetime after that.
    #[arg(long, conflicts_with_all = ["new_master_key", "new_master_key_file"])]
    pub signing_key: bool,
}

impl RotateArgs {
    pub fn new(store: StoreConfig) -> RotateArgs {
        RotateArgs {
            store,
            master_key: None,
            master_key_file: None,
            new_master_key: None,
            new_master_key_file: None,
            signing_key: false,
        }
    }

    /// The key file in use, unless the key comes from `OLIVINE_MASTER_KEY`.
    fn key_file(&self) -> Option<PathBuf> {
        match self.master_key {
            Some(_) => None,
            None => Some(
                self.master_key_file
                    .clone()
                    .unwrap_or_else(|| self.store.data_dir.join("master.key")),
            ),
        }
    }
}

/// Runs the rotation, printing each step to stdout.
pub async fn rotate(args: &RotateArgs) -> anyhow::Result<()> {
    let db = Db::connect(&args.store.database_url()?, 2).await?;
    let result = rotate_on(&db, args).await;
    db.close().await;
    result
}

async fn rotate_on(db: &Db, args: &RotateArgs) -> anyhow::Result<()> {
    let version = crate::store::schema_version(db).await?;
    anyhow::ensure!(
        version.is_some_and(|v| v >= crate::store::latest_version(db.backend)),
        "the database is not migrated (run `olivine migrate` first)"
    );
    let key_file = args.key_file();
    let current = match &key_file {
        Some(path) => keys::read_key_file(path)?
            .with_context(|| format!("no master key file at {}", path.display()))?,
        None => keys::decode_key(args.master_key.as_deref().unwrap_or_default())
            .context("OLIVINE_MASTER_KEY")?,
    };

    if args.signing_key {
        println!("adding a token signing key…");
        let id = keys::add_signing_key(db, &current, CLI_ACTOR).await?;
        println!(
            "signing key {id} added. Restart every kernel (one by one: no downtime) within {} minutes; \
             each signs with {id} from its restart, and tokens signed with the previous key stay valid until they expire.",
            keys::signing_key_overlap().num_minutes()
        );
        return Ok(());
    }

    if !keys::master_key_matches(db, &current).await? {
        // A rotation that stopped between its commit and the file swap: finish it.
        if let Some(path) = &key_file {
            let pending = keys::pending_key_file(path);
            if let Some(new) = keys::read_key_file(&pending)?
                && keys::master_key_matches(db, &new).await?
            {
                println!(
                    "the database is already under the key in {}: finishing the interrupted rotation",
                    pending.display()
                );
                swap_key_files(path)?;
                println!("done: {} holds the new master key", path.display());
                return Ok(());
            }
        }
        anyhow::bail!(
            "the current master key does not unwrap the stored keys (wrong OLIVINE_MASTER_KEY or key file?): nothing was changed"
        );
    }

    let new = new_key(args, key_file.as_deref())?;
    if let Some(path) = &key_file {
        let pending = keys::pending_key_file(path);
        println!("1/3 writing the new master key to {}", pending.display());
        keys::write_key_file(&pending, &new)?;
    }
    println!("{} re-wrapping the account keys", step(&key_file, 2));
    let report = keys::rewrap_all(db, &current, &new, CLI_ACTOR).await?;
    let customer_keys: i64 =
        sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM customer_keys")
            .fetch_one(&db.pool)
            .await?;
    println!(
        "    {} key(s) re-wrapped{}; the {customer_keys} customer key(s) are wrapped by one of them          (`customer`), so they are under the new master key too",
        report.rewrapped,
        if report.already > 0 {
            format!(", {} already under the new key", report.already)
        } else {
            String::new()
        }
    );
    match &key_file {
        Some(path) => {
            println!(
                "3/3 swapping key files: the previous key goes to {}",
                keys::previous_key_file(path).display()
            );
            swap_key_files(path)?;
            println!(
                "done: {} holds the new master key. Keep {} as long as you keep backups taken before now.",
                path.display(),
                keys::previous_key_file(path).display()
            );
        }
        None => println!(
            "done: set OLIVINE_MASTER_KEY to the new key on every node (running kernels keep serving; \
             one started with the old key will refuse to start)."
        ),
    }
    Ok(())
}

fn step(key_file: &Option<PathBuf>, n: u8) -> String {
    match key_file {
        Some(_) => format!("{n}/3"),
        None => "1/1".to_owned(),
    }
}

/// The new master key: given, read from a file (created when missing), or generated.
fn new_key(args: &RotateArgs, key_file: Option<&std::path::Path>) -> anyhow::Result<Key> {
    if let Some(text) = &args.new_master_key {
        return keys::decode_key(text).context("OLIVINE_NEW_MASTER_KEY");
    }
    if let Some(path) = &args.new_master_key_file {
        if let Some(key) = keys::read_key_file(path)? {
            return Ok(key);
        }
        let key: Key = rand::random();
        keys::write_key_file(path, &key)?;
        println!("generated a new master key in {}", path.display());
        return Ok(key);
    }
    anyhow::ensure!(
        key_file.is_some(),
        "with OLIVINE_MASTER_KEY, give the new key: OLIVINE_NEW_MASTER_KEY, --new-master-key \
         or --new-master-key-file (created with a random key when it does not exist)"
    );
    Ok(rand::random())
}

/// `F` -> `F.old` (copied, so `F` is never missing), then `F.new` -> `F` (atomic).
fn swap_key_files(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(current) = keys::read_key_file(path)? {
        keys::write_key_file(&keys::previous_key_file(path), &current)?;
    }
    let pending = keys::pending_key_file(path);
    std::fs::rename(&pending, path)
        .with_context(|| format!("renaming {} to {}", pending.display(), path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        keys::sync_dir(dir);
    }
    Ok(())
}

/// `olivine keys per-customer`: moves every customer's identity fields from the shared
/// data key to a key of their own (see `accounts::reencrypt`), while the store serves.
#[derive(clap::Args, Clone, Debug)]
pub struct PerCustomerArgs {
    #[command(flatten)]
    pub store: StoreConfig,

    /// The master key (base64). Unset: read from the master key file.
    #[arg(long, env = "OLIVINE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,

    /// The master key file. Unset: `<data dir>/master.key`.
    #[arg(long, env = "OLIVINE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// Customers per transaction: each batch holds their rows for that long.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
}

impl PerCustomerArgs {
    pub fn new(store: StoreConfig) -> PerCustomerArgs {
        PerCustomerArgs {
            store,
            master_key: None,
            master_key_file: None,
            batch_size: 100,
        }
    }

    fn master_key(&self) -> anyhow::Result<Key> {
        if let Some(text) = &self.master_key {
            return keys::decode_key(text).context("OLIVINE_MASTER_KEY");
        }
        let path = self
            .master_key_file
            .clone()
            .unwrap_or_else(|| self.store.data_dir.join("master.key"));
        keys::read_key_file(&path)?
            .with_context(|| format!("no master key file at {}", path.display()))
    }
}

/// Runs the re-encryption, with a progress bar on a terminal and a line every few
/// seconds elsewhere. Interrupted, it is finished by running it again.
pub async fn per_customer(
    args: &PerCustomerArgs,
) -> anyhow::Result<crate::accounts::reencrypt::Reencrypted> {
    let db = Db::connect(&args.store.database_url()?, 2).await?;
    let result = per_customer_on(&db, args).await;
    db.close().await;
    result
}

async fn per_customer_on(
    db: &Db,
    args: &PerCustomerArgs,
) -> anyhow::Result<crate::accounts::reencrypt::Reencrypted> {
    let version = crate::store::schema_version(db).await?;
    anyhow::ensure!(
        version.is_some_and(|v| v >= crate::store::latest_version(db.backend)),
        "the database is not migrated (run `olivine migrate` first)"
    );
    let keyring = keys::Keyring::load(db, &args.master_key()?)
        .await
        .context("loading the accounts' keys")?;
    let started = std::time::Instant::now();
    let progress = Progress::new();
    let batch = usize::try_from(args.batch_size).unwrap_or(100);
    let report = crate::accounts::reencrypt::run(db, &keyring, batch, &|done, total| {
        progress.show(done, total)
    })
    .await;
    progress.bar.finish_and_clear();
    let report = report?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} customer(s), {} field(s) moved to their own key in {secs:.1} s ({:.0} customers/s)",
        report.customers,
        report.fields,
        report.customers as f64 / secs.max(0.001)
    );
    if !report.unreadable.is_empty() {
        println!(
            "{} customer(s) have fields that do not decrypt and were left as they are (ids: {:?})",
            report.unreadable.len(),
            report.unreadable.iter().take(20).collect::<Vec<_>>()
        );
    }
    let left = crate::accounts::reencrypt::pending(db).await?;
    println!("{left} customer(s) left with fields under the shared key");
    Ok(report)
}

/// A bar on a terminal; a plain line every five seconds (and at the end) elsewhere.
struct Progress {
    bar: indicatif::ProgressBar,
    last_line: std::sync::Mutex<std::time::Instant>,
    started: std::time::Instant,
}

impl Progress {
    fn new() -> Progress {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "customers [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
        )
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Progress {
            bar,
            last_line: std::sync::Mutex::new(std::time::Instant::now()),
            started: std::time::Instant::now(),
        }
    }

    fn show(&self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        if !self.bar.is_hidden() {
            return;
        }
        let Ok(mut last_line) = self.last_line.lock() else {
            return;
        };
        if done == 0 || done == total || last_line.elapsed() >= std::time::Duration::from_secs(5) {
            *last_line = std::time::Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            println!("{done}/{total} customer(s), {rate:.0}/s");
        }
    }
}
