//! Keys of the accounts: a master key from configuration (or a key file) wraps, with
//! AES-256-GCM, every key the database holds:
//!
//! - `data`: encrypts identity fields (`v1:<key id>:<base64 nonce || ciphertext>`);
//! - `lookup`: keys the HMAC-SHA256 of a normalised email, so sign-in finds an account
//!   without the email being stored in clear;
//! - `jwt`: signs access tokens (HS256); its id is the token header's `kid`;
//! - `customer`: wraps each customer's own data key (`customer_keys`, see
//!   [`super::customer_keys`]); a customer's identity fields are encrypted under their
//!   own key (`v2:c<customer id>:…`), so destroying that key erases them everywhere,
//!   backups included. Fields in the `v1` format (under `data`) keep decrypting.
//!
//! Keys are created on first start with fixed ids (`data-1`, `lookup-1`, `jwt-1`) and
//! `INSERT … ON CONFLICT DO NOTHING`, so two nodes starting at once agree on one set.
//! Several keys of a purpose may exist: the newest is used for new data, any of them
//! reads old data, except that a token signing key stops verifying once its successor
//! is older than an access token's lifetime (plus a minute of leeway).
//!
//! Rotation (`olivine keys rotate`, see `cli::keys`): [`rewrap_all`] re-wraps every key
//! under a new master key in one transaction without changing the keys, so running
//! kernels (which hold them unwrapped) keep serving; [`add_signing_key`] adds a token
//! signing key that becomes the active one at each kernel's next start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::Row;

use crate::config::ServeConfig;
use crate::store::Db;

/// A 256-bit key.
pub type Key = [u8; 32];

const NONCE_LEN: usize = 12;
/// The prefix of encrypted fields; the version names the format.
const FIELD_VERSION: &str = "v1";
/// The prefix of fields under a customer's own key (`v2:c<customer id>:…`).
pub(crate) const CUSTOMER_FIELD_VERSION: &str = "v2";

/// The master key: `OLIVINE_MASTER_KEY` (base64), else the key file, which is created
/// (mode 0600) with a random key when it does not exist yet.
pub fn load_master_key(config: &ServeConfig) -> anyhow::Result<Key> {
    if let Some(text) = config.master_key.as_deref() {
        return decode_key(text).context("OLIVINE_MASTER_KEY");
    }
    let path = config.master_key_file();
    read_or_create_key_file(&path)
}

/// The master keys to try, in order: the configured one, then (with a key file `F`) the
/// key in `F.new` if present. `F.new` matches the database when `olivine keys rotate`
/// stopped between its commit and the swap of the files.
pub fn load_master_keys(config: &ServeConfig) -> anyhow::Result<Vec<Key>> {
    let mut keys = vec![load_master_key(config)?];
    if config.master_key.is_none() {
        let pending = pending_key_file(&config.master_key_file());
        if let Some(key) = read_key_file(&pending)? {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Where a rotation keeps the new master key until the database is re-wrapped.
pub fn pending_key_file(path: &Path) -> PathBuf {
    with_suffix(path, ".new")
}

/// Where a rotation keeps the previous master key (for backups made before it).
pub fn previous_key_file(path: &Path) -> PathBuf {
    with_suffix(path, ".old")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The key in a key file, `None` when the file does not exist.
pub fn read_key_file(path: &Path) -> anyhow::Result<Option<Key>> {
    match std::fs::read_to_string(path) {
        Ok(text) => decode_key(&text)
            .with_context(|| format!("master key file {}", path.display()))
            .map(Some),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a key file atomically: a temporary file (mode 0600) synced, then renamed over
/// `path`, then the directory synced.
pub fn write_key_file(path: &Path, key: &Key) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = with_suffix(path, ".tmp");
    write_private(&temp, key)?;
    std::fs::rename(&temp, path)
        .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// Writes a secret (e.g. the customer key snapshot) over `path` atomically: a temporary
/// file only its owner can read, synced, renamed into place, the directory synced.
pub(crate) fn write_secret_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temp = with_suffix(path, ".tmp");
    let _ = std::fs::remove_file(&temp);
    let mut file = create_private(&temp).with_context(|| format!("creating {}", temp.display()))?;
    file.write_all(contents)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path)
        .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// Writes `key` into a new file at `path` only its owner can read, synced (a stale file
/// of the same name is replaced).
fn write_private(path: &Path, key: &Key) -> anyhow::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut file = create_private(path).with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{}", STANDARD.encode(key))
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Creates a file only its owner can read (mode 0600); fails if it exists.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes renames in `dir` durable (best effort: not every platform can open a directory).
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Encodes a key as key files and `OLIVINE_MASTER_KEY` hold it.
pub fn encode_key(key: &Key) -> String {
    STANDARD.encode(key)
}

pub fn decode_key(text: &str) -> anyhow::Result<Key> {
    let bytes = STANDARD
        .decode(text.trim())
        .context("the master key must be base64")?;
    <Key>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("the master key must be 32 bytes, got {}", bytes.len()))
}

fn read_or_create_key_file(path: &Path) -> anyhow::Result<Key> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return decode_key(&text)
                .with_context(|| format!("master key file {}", path.display()));
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("reading {}", path.display()));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Written whole under a name of this process's own, then linked into place: a node
    // starting beside this one on a shared volume sees no file or the whole key, never
    // a half-written one, and the first link wins.
    let key: Key = rand::random();
    let temp = with_suffix(path, &format!(".{}.tmp", std::process::id()));
    write_private(&temp, &key)?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir);
            }
            tracing::info!(path = %path.display(), "generated a master key: back it up, the customers' identity cannot be read without it");
            Ok(key)
        }
        // Another process created it meanwhile: use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)?;
            decode_key(&text).with_context(|| format!("master key file {}", path.display()))
        }
        Err(err) => Err(err).with_context(|| format!("creating {}", path.display())),
    }
}

/// AES-256-GCM with a random nonce; returns `nonce || ciphertext`.
pub(super) fn seal(key: &Key, aad: &[u8], plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| anyhow::anyhow!("bad key length"))?;
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce_bytes),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| anyhow::anyhow!("encryption failed"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// The inverse of [`seal`]; a wrong key, AAD or altered bytes are an error.
pub(super) fn open(key: &Key, aad: &[u8], sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(sealed.len() > NONCE_LEN, "ciphertext too short");
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| anyhow::anyhow!("bad key length"))?;
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into()?;
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| anyhow::anyhow!("decryption failed (wrong key or altered data)"))
}

fn wrap_aad(purpose: &str, id: &str) -> Vec<u8> {
    format!("olivine.key.v1:{purpose}:{id}").into_bytes()
}

/// Every key of the accounts, unwrapped, in memory.
pub struct Keyring {
    data: HashMap<String, Key>,
    active_data: String,
    lookup: Key,
    jwt: HashMap<String, Key>,
    active_jwt: String,
    /// Signing keys that have a successor stop verifying at this time.
    jwt_retires: HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// Wraps the customers' own data keys, and keeps them unwrapped for a while.
    pub(super) customers: super::customer_keys::CustomerKeys,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active_data", &self.active_data)
            .field("active_jwt", &self.active_jwt)
            .finish_non_exhaustive()
    }
}

const PURPOSES: [(&str, &str); 4] = [
    ("data", "data-1"),
    ("lookup", "lookup-1"),
    ("jwt", "jwt-1"),
    ("customer", "customer-1"),
];

/// How long a replaced signing key keeps verifying: the access tokens it signed live
/// this long, plus a minute for clocks and tokens signed at the last moment.
pub fn signing_key_overlap() -> chrono::Duration {
    chrono::Duration::seconds(super::ACCESS_TTL_SECS + 60)
}

/// A stored key: its id, purpose, wrapped bytes (base64) and creation time.
struct StoredKey {
    id: String,
    purpose: String,
    wrapped: String,
    created_at: String,
}

async fn stored_keys<'e, E>(executor: E) -> anyhow::Result<Vec<StoredKey>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT id, purpose, wrapped, created_at FROM account_keys ORDER BY created_at, id",
    )
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredKey {
                id: row.try_get(0)?,
                purpose: row.try_get(1)?,
                wrapped: row.try_get(2)?,
                created_at: row.try_get(3)?,
            })
        })
        .collect()
}

fn unwrap_key(master: &Key, stored: &StoredKey) -> anyhow::Result<Key> {
    let sealed = STANDARD
        .decode(stored.wrapped.as_bytes())
        .with_context(|| format!("key {} is not base64", stored.id))?;
    let bytes =
        open(master, &wrap_aad(&stored.purpose, &stored.id), &sealed).with_context(|| {
            format!(
                "unwrapping key {}: the master key does not match this database",
                stored.id
            )
        })?;
    <Key>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("key {} is not 32 bytes", stored.id))
}

fn wrap_key(master: &Key, purpose: &str, id: &str, key: &Key) -> anyhow::Result<String> {
    Ok(STANDARD.encode(seal(master, &wrap_aad(purpose, id), key)?))
}

/// Unwraps every stored key with `master`; the first failure is the error.
fn unwrap_all(master: &Key, stored: &[StoredKey]) -> anyhow::Result<Vec<Key>> {
    stored.iter().map(|k| unwrap_key(master, k)).collect()
}

impl Keyring {
    /// Loads the keys from the database, creating any that is missing, and unwraps them
    /// with the master key. A master key that does not match is an error.
    pub async fn load(db: &Db, master: &Key) -> anyhow::Result<Keyring> {
        Self::load_any(db, std::slice::from_ref(master)).await
    }

    /// Like [`Keyring::load`], trying each master key in turn (see [`load_master_keys`]);
    /// missing keys are created under the first.
    pub async fn load_any(db: &Db, masters: &[Key]) -> anyhow::Result<Keyring> {
        let first = masters.first().context("no master key")?;
        for (purpose, first_id) in PURPOSES {
            let exists = sqlx::query("SELECT 1 FROM account_keys WHERE purpose = $1")
                .bind(purpose)
                .fetch_optional(&db.pool)
                .await?
                .is_some();
            if exists {
                continue;
            }
            let key: Key = rand::random();
            sqlx::query(
                "INSERT INTO account_keys (id, purpose, wrapped, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(first_id)
            .bind(purpose)
            .bind(wrap_key(first, purpose, first_id, &key)?)
            .bind(crate::time::now())
            .execute(&db.pool)
            .await?;
        }
        let stored = stored_keys(&db.pool).await?;
        let mut failure = None;
        for (i, master) in masters.iter().enumerate() {
            match unwrap_all(master, &stored) {
                Ok(keys) => {
                    if i > 0 {
                        tracing::warn!(
                            "the master key file does not match the database but its `.new` file does: \
                             a key rotation was interrupted; run `olivine keys rotate` again to finish it"
                        );
                    }
                    return Self::from_unwrapped(&stored, keys);
                }
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        Err(failure.unwrap_or_else(|| anyhow::anyhow!("no master key")))
    }

    fn from_unwrapped(stored: &[StoredKey], keys: Vec<Key>) -> anyhow::Result<Keyring> {
        let mut data = HashMap::new();
        let mut jwt = HashMap::new();
        let mut jwt_retires = HashMap::new();
        let (mut active_data, mut active_jwt, mut lookup, mut customer) = (None, None, None, None);
        for (row, key) in stored.iter().zip(keys) {
            let id = row.id.clone();
            // Rows come oldest first: the last one of a purpose is the active one.
            match row.purpose.as_str() {
                "data" => {
                    data.insert(id.clone(), key);
                    active_data = Some(id);
                }
                "jwt" => {
                    // Its predecessor retires an access-token lifetime after this one
                    // came in.
                    if let Some(previous) = active_jwt.replace(id.clone()) {
                        let since = chrono::DateTime::parse_from_rfc3339(&row.created_at)
                            .with_context(|| format!("key {id}: created_at"))?
                            .with_timezone(&chrono::Utc);
                        jwt_retires.insert(previous, since + signing_key_overlap());
                    }
                    jwt.insert(id, key);
                }
                "lookup" => lookup = Some(key),
                // One key-wrapping key for every customer key: a master key rotation
                // re-wraps it and so, in one row, every customer key under it.
                "customer" => customer = Some(key),
                other => anyhow::bail!("key {id} has an unknown purpose {other}"),
            }
        }
        Ok(Keyring {
            data,
            active_data: active_data.context("no data key")?,
            lookup: lookup.context("no lookup key")?,
            jwt,
            active_jwt: active_jwt.context("no token signing key")?,
            jwt_retires,
            customers: super::customer_keys::CustomerKeys::new(
                customer.context("no customer key-wrapping key")?,
            ),
        })
    }

    /// Encrypts an identity field as `v1:<data key id>:<base64 nonce || ciphertext>`.
    /// `context` (e.g. `customers.email`) is bound as associated data, so a value
    /// copied into another column does not decrypt.
    pub fn encrypt_field(&self, context: &str, plaintext: &str) -> anyhow::Result<String> {
        let key = &self.data[&self.active_data];
        let sealed = seal(key, &field_aad(context), plaintext.as_bytes())?;
        Ok(format!(
            "{FIELD_VERSION}:{}:{}",
            self.active_data,
            STANDARD.encode(sealed)
        ))
    }

    /// Decrypts a value written by [`Keyring::encrypt_field`]. Anything malformed, an
    /// unknown key or a failed authentication is an error, and so is a field under a
    /// customer's own key (`v2`): those need the key from the database
    /// ([`Keyring::decrypt_any`], [`Keyring::customer`]).
    pub fn decrypt_field(&self, context: &str, stored: &str) -> anyhow::Result<String> {
        let mut parts = stored.splitn(3, ':');
        let (Some(version), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            anyhow::bail!("encrypted field is malformed");
        };
        anyhow::ensure!(
            version != CUSTOMER_FIELD_VERSION,
            "the field is under a customer's own key: read it with that key"
        );
        anyhow::ensure!(version == FIELD_VERSION, "unknown field format {version}");
        let key = self
            .data
            .get(key_id)
            .with_context(|| format!("unknown data key {key_id}"))?;
        let sealed = STANDARD
            .decode(body.as_bytes())
            .context("encrypted field is not base64")?;
        let plain = open(key, &field_aad(context), &sealed)?;
        String::from_utf8(plain).context("decrypted field is not UTF-8")
    }

    /// HMAC-SHA256 (hex) of `value` under the lookup key.
    pub fn lookup_hash(&self, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.lookup)
            .expect("HMAC accepts keys of any length");
        mac.update(value.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// HMAC-SHA256 of `message` under a key derived for `purpose` (e.g. `csrf`) from the
    /// lookup key: for values the server hands out and later checks itself, such as the
    /// storefront's CSRF tokens. The derivation keeps them apart from email hashes; the
    /// lookup key never changes (stored hashes depend on it), so a rotation of the
    /// signing keys does not void forms a shopper has open.
    pub fn purpose_mac(&self, purpose: &str, message: &[u8]) -> [u8; 32] {
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(&self.lookup)
            .expect("HMAC accepts keys of any length");
        derive.update(format!("olivine.purpose.v1:{purpose}").as_bytes());
        let key = derive.finalize().into_bytes();
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC accepts keys of any length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// The key id and secret that sign new access tokens.
    pub fn signing_key(&self) -> (&str, &Key) {
        (&self.active_jwt, &self.jwt[&self.active_jwt])
    }

    /// The secret of the signing key `kid`, if it is known and not retired.
    pub fn verifying_key(&self, kid: &str) -> Option<&Key> {
        if let Some(retires) = self.jwt_retires.get(kid)
            && chrono::Utc::now() >= *retires
        {
            return None;
        }
        self.jwt.get(kid)
    }

    /// The id of the key that signs new access tokens.
    pub fn signing_key_id(&self) -> &str {
        &self.active_jwt
    }
}

/// What [`rewrap_all`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrapped {
    /// Keys re-wrapped under the new master key.
    pub rewrapped: usize,
    /// Keys that were under the new master key already (a rotation run again).
    pub already: usize,
}

/// Re-wraps every stored key under `new` in one transaction; the keys themselves do not
/// change, so kernels running with them unwrapped keep serving. Every key must unwrap
/// with `current` (or already with `new`), else nothing is written. The audit entry
/// records the rotation (never a key).
pub async fn rewrap_all(
    db: &Db,
    current: &Key,
    new: &Key,
    actor: &str,
) -> anyhow::Result<Rewrapped> {
    anyhow::ensure!(current != new, "the new master key is the current one");
    let mut tx = db.begin().await?;
    let stored = stored_keys(&mut *tx).await?;
    anyhow::ensure!(
        !stored.is_empty(),
        "the database holds no account keys yet (start the kernel once first)"
    );
    let mut report = Rewrapped {
        rewrapped: 0,
        already: 0,
    };
    for row in &stored {
        let key = match unwrap_key(current, row) {
            Ok(key) => key,
            Err(err) => {
                if unwrap_key(new, row).is_ok() {
                    report.already += 1;
                    continue;
                }
                return Err(err.context(
                    "the current master key does not unwrap the stored keys: nothing was changed",
                ));
            }
        };
        // Compare-and-set on the old wrapping: a concurrent rotation makes this fail
        // rather than leave a key under a master key nobody has.
        let updated =
            sqlx::query("UPDATE account_keys SET wrapped = $1 WHERE id = $2 AND wrapped = $3")
                .bind(wrap_key(new, &row.purpose, &row.id, &key)?)
                .bind(&row.id)
                .bind(&row.wrapped)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        anyhow::ensure!(
            updated == 1,
            "key {} changed during the rotation: nothing was changed",
            row.id
        );
        report.rewrapped += 1;
    }
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "keys.master_key_rotated",
            target_type: "account_keys",
            target_id: "*".to_owned(),
            before: None,
            after: Some(
                serde_json::json!({"rewrapped": report.rewrapped, "already": report.already}),
            ),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

/// Whether `master` unwraps every stored key.
pub async fn master_key_matches(db: &Db, master: &Key) -> anyhow::Result<bool> {
    let stored = stored_keys(&db.pool).await?;
    Ok(unwrap_all(master, &stored).is_ok())
}

/// Adds a token signing key (`jwt-<n+1>`), wrapped under `master`, which must unwrap the
/// stored keys. It signs new tokens once a kernel (re)starts; the previous one keeps
/// verifying for [`signing_key_overlap`]. Returns the new key id.
pub async fn add_signing_key(db: &Db, master: &Key, actor: &str) -> anyhow::Result<String> {
    let mut tx = db.begin().await?;
    let stored = stored_keys(&mut *tx).await?;
    unwrap_all(master, &stored)
        .context("the master key does not unwrap the stored keys: nothing was changed")?;
    let next = stored
        .iter()
        .filter(|k| k.purpose == "jwt")
        .filter_map(|k| k.id.strip_prefix("jwt-")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let id = format!("jwt-{next}");
    let key: Key = rand::random();
    // Strictly after every existing key, so it is the newest even on a skewed clock.
    let mut created_at = crate::time::now();
    if let Some(latest) = stored.iter().map(|k| &k.created_at).max()
        && created_at <= *latest
    {
        let latest = chrono::DateTime::parse_from_rfc3339(latest)
            .context("created_at of a stored key")?
            .with_timezone(&chrono::Utc);
        created_at = (latest + chrono::Duration::milliseconds(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    }
    sqlx::query(
        "INSERT INTO account_keys (id, purpose, wrapped, created_at) VALUES ($1, 'jwt', $2, $3)",
    )
    .bind(&id)
    .bind(wrap_key(master, "jwt", &id, &key)?)
    .bind(&created_at)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "keys.signing_key_rotated",
            target_type: "account_key",
            target_id: id.clone(),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

pub(super) fn field_aad(context: &str) -> Vec<u8> {
    format!("olivine.field.v1:{context}").into_bytes()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_refuse_tampering() {
        let key: Key = rand::random();
        let sealed = seal(&key, b"aad", b"hello").unwrap();
        assert_eq!(open(&key, b"aad", &sealed).unwrap(), b"hello");
        assert!(open(&key, b"other", &sealed).is_err());
        let other: Key = rand::random();
        assert!(open(&other, b"aad", &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(open(&key, b"aad", &altered).is_err());
        assert!(open(&key, b"aad", &sealed[..5]).is_err());
    }

    fn test_keyring() -> Keyring {
        let mut data = HashMap::new();
        data.insert("data-1".to_owned(), rand::random());
        let mut jwt = HashMap::new();
        jwt.insert("jwt-1".to_owned(), rand::random());
        Keyring {
            data,
            active_data: "data-1".to_owned(),
            lookup: rand::random(),
            jwt,
            active_jwt: "jwt-1".to_owned(),
            jwt_retires: HashMap::new(),
            customers: crate::accounts::customer_keys::CustomerKeys::new(rand::random()),
        }
    }

    #[test]
    fn customer_fields_open_only_for_their_customer_column_and_key() {
        use crate::accounts::customer_keys::CustomerFields;
        let keys = test_keyring();
        let ada = CustomerFields::for_test(&keys, 1, Some(rand::random()));
        let stored = ada.encrypt("customers.email", "a@b.example").unwrap();
        assert!(stored.starts_with("v2:c1:"), "{stored}");
        assert_eq!(
            ada.decrypt("customers.email", &stored).unwrap(),
            "a@b.example"
        );
        assert!(
            ada.decrypt("customers.name", &stored).is_err(),
            "its column"
        );
        assert!(keys.decrypt_field("customers.email", &stored).is_err());
        let bob = CustomerFields::for_test(&keys, 2, Some(rand::random()));
        assert!(bob.decrypt("customers.email", &stored).is_err(), "Ada's");
        let relabelled = stored.replacen("v2:c1:", "v2:c2:", 1);
        assert!(bob.decrypt("customers.email", &relabelled).is_err());
        let erased = CustomerFields::for_test(&keys, 1, None);
        assert!(erased.decrypt("customers.email", &stored).is_err());
        assert!(erased.encrypt("customers.email", "x").is_err());
        // A field from before per-customer keys still reads through them.
        let old = keys
            .encrypt_field("customers.email", "old@b.example")
            .unwrap();
        assert_eq!(
            ada.decrypt("customers.email", &old).unwrap(),
            "old@b.example"
        );
    }

    #[test]
    fn fields_decrypt_only_in_their_context_and_garbage_is_an_error() {
        let keys = test_keyring();
        let stored = keys
            .encrypt_field("customers.email", "a@b.example")
            .unwrap();
        assert!(stored.starts_with("v1:data-1:"));
        assert_eq!(
            keys.decrypt_field("customers.email", &stored).unwrap(),
            "a@b.example"
        );
        assert!(keys.decrypt_field("customers.name", &stored).is_err());
        for garbage in [
            "",
            "v1",
            "v1:data-1",
            "v2:data-1:AAAA",
            "v1:nope:AAAA",
            "v1:data-1:!!!",
            "v1:data-1:AAAA",
        ] {
            assert!(
                keys.decrypt_field("customers.email", garbage).is_err(),
                "{garbage}"
            );
        }
        assert_eq!(keys.lookup_hash("x"), keys.lookup_hash("x"));
        assert_ne!(keys.lookup_hash("x"), keys.lookup_hash("y"));
    }
}
