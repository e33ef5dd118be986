//! Keys of the accounts: a master key from configuration (or a key file) wraps, with
//! AES-256-GCM, every key the database holds:
//!
//! - `data`: encrypts identity fields (`v1:<key id>:<base64 nonce || ciphertext>`);
//! - `lookup`: keys the HMAC-SHA256 of a normalised email, so sign-in finds an account
//!   without the email being stored in clear;
//! - `jwt`: signs access tokens (HS256); its id is the token header's `kid`.
//!
//! Keys are created on first start with fixed ids (`data-1`, `lookup-1`, `jwt-1`) and
//! `INSERT … ON CONFLICT DO NOTHING`, so two nodes starting at once agree on one set.
//! Several keys of a purpose may exist (rotation will add more): the newest is used for
//! new data, any of them reads old data.

use std::collections::HashMap;
use std::path::Path;

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

/// The master key: `OLIVINE_MASTER_KEY` (base64), else the key file, which is created
/// (mode 0600) with a random key when it does not exist yet.
pub fn load_master_key(config: &ServeConfig) -> anyhow::Result<Key> {
    if let Some(text) = config.master_key.as_deref() {
        return decode_key(text).context("OLIVINE_MASTER_KEY");
    }
    let path = config.master_key_file();
    read_or_create_key_file(&path)
}

fn decode_key(text: &str) -> anyhow::Result<Key> {
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
    let key: Key = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            use std::io::Write;
            writeln!(file, "{}", STANDARD.encode(key))
                .and_then(|_| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a master key: back it up, the customers' identity cannot be read without it");
            Ok(key)
        }
        // Another process created it meanwhile: use theirs.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)?;
            decode_key(&text)
        }
        Err(err) => Err(err).with_context(|| format!("creating {}", path.display())),
    }
}

/// AES-256-GCM with a random nonce; returns `nonce || ciphertext`.
fn seal(key: &Key, aad: &[u8], plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
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
fn open(key: &Key, aad: &[u8], sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
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
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active_data", &self.active_data)
            .field("active_jwt", &self.active_jwt)
            .finish_non_exhaustive()
    }
}

const PURPOSES: [(&str, &str); 3] = [("data", "data-1"), ("lookup", "lookup-1"), ("jwt", "jwt-1")];

impl Keyring {
    /// Loads the keys from the database, creating any that is missing, and unwraps them
    /// with the master key. A master key that does not match is an error.
    pub async fn load(db: &Db, master: &Key) -> anyhow::Result<Keyring> {
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
            let wrapped = STANDARD.encode(seal(master, &wrap_aad(purpose, first_id), &key)?);
            sqlx::query(
                "INSERT INTO account_keys (id, purpose, wrapped, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(first_id)
            .bind(purpose)
            .bind(wrapped)
            .bind(crate::time::now())
            .execute(&db.pool)
            .await?;
        }
        let rows =
            sqlx::query("SELECT id, purpose, wrapped FROM account_keys ORDER BY created_at, id")
                .fetch_all(&db.pool)
                .await?;
        let mut data = HashMap::new();
        let mut jwt = HashMap::new();
        let (mut active_data, mut active_jwt, mut lookup) = (None, None, None);
        for row in rows {
            let id: String = row.try_get(0)?;
            let purpose: String = row.try_get(1)?;
            let wrapped: String = row.try_get(2)?;
            let sealed = STANDARD
                .decode(wrapped.as_bytes())
                .with_context(|| format!("key {id} is not base64"))?;
            let bytes = open(master, &wrap_aad(&purpose, &id), &sealed).with_context(|| {
                format!("unwrapping key {id}: the master key does not match this database")
            })?;
            let key = <Key>::try_from(bytes.as_slice())
                .map_err(|_| anyhow::anyhow!("key {id} is not 32 bytes"))?;
            // Rows come oldest first: the last one of a purpose is the active one.
            match purpose.as_str() {
                "data" => {
                    data.insert(id.clone(), key);
                    active_data = Some(id);
                }
                "jwt" => {
                    jwt.insert(id.clone(), key);
                    active_jwt = Some(id);
                }
                "lookup" => lookup = Some(key),
                other => anyhow::bail!("key {id} has an unknown purpose {other}"),
            }
        }
        Ok(Keyring {
            data,
            active_data: active_data.context("no data key")?,
            lookup: lookup.context("no lookup key")?,
            jwt,
            active_jwt: active_jwt.context("no token signing key")?,
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
    /// unknown key or a failed authentication is an error.
    pub fn decrypt_field(&self, context: &str, stored: &str) -> anyhow::Result<String> {
        let mut parts = stored.splitn(3, ':');
        let (Some(version), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            anyhow::bail!("encrypted field is malformed");
        };
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

    /// The secret of the signing key `kid`, if it is known.
    pub fn verifying_key(&self, kid: &str) -> Option<&Key> {
        self.jwt.get(kid)
    }
}

fn field_aad(context: &str) -> Vec<u8> {
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

    #[test]
    fn fields_decrypt_only_in_their_context_and_garbage_is_an_error() {
        let mut data = HashMap::new();
        data.insert("data-1".to_owned(), rand::random());
        let mut jwt = HashMap::new();
        jwt.insert("jwt-1".to_owned(), rand::random());
        let keys = Keyring {
            data,
            active_data: "data-1".to_owned(),
            lookup: rand::random(),
            jwt,
            active_jwt: "jwt-1".to_owned(),
        };
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
