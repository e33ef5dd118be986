//! Each customer's own data key: the crypto-shredding half of erasure (docs/PRIVACY.md).
//!
//! A customer's identity fields (email, name, addresses, the identity on their orders and
//! subscriptions) are encrypted under a key of their own, stored in `customer_keys`
//! wrapped (AES-256-GCM) by the `customer` account key, which the master key wraps in
//! turn. Erasure deletes that row in the erasure's transaction: every copy of the
//! customer's ciphertext (backups, replicas, logs) is unreadable from then on. Backups
//! leave `customer_keys` out and keep only one latest key snapshot (`crate::backup`).
//!
//! A field under a customer's key reads `v2:c<customer id>:<base64 nonce || ciphertext>`,
//! its associated data binding the customer and the column; fields in the older `v1`
//! format (the shared `data` key) keep decrypting until `olivine keys per-customer`
//! re-encrypts them.
//!
//! Why a key-wrapping key between the master key and the customer keys: a master key
//! rotation re-wraps one row instead of every customer's, and kernels that keep serving
//! through a rotation (holding the old master key) keep wrapping new customer keys
//! under a key the new master key opens.
//!
//! Unwrapped keys are cached for [`CACHE_TTL`], so the account page costs no more
//! queries than before once the key is warm. A key missing from the database is never
//! cached: a customer without one (erased, or not migrated yet) is looked up again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sqlx::{AnyConnection, Row};

use super::Keyring;
use super::keys::{CUSTOMER_FIELD_VERSION, Key, open, seal};

/// How long an unwrapped customer key stays in memory after its last load.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
const CACHE_CAPACITY: u64 = 200_000;

/// The key-wrapping key of the customer keys and the cache of unwrapped ones.
pub struct CustomerKeys {
    kek: Key,
    cache: moka::future::Cache<i64, Arc<Key>>,
}

impl CustomerKeys {
    pub(super) fn new(kek: Key) -> CustomerKeys {
        CustomerKeys {
            kek,
            cache: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }

    fn wrap(&self, customer_id: i64, key: &Key) -> anyhow::Result<String> {
        Ok(STANDARD.encode(seal(&self.kek, &key_aad(customer_id), key)?))
    }

    fn unwrap(&self, customer_id: i64, wrapped: &str) -> anyhow::Result<Key> {
        let sealed = STANDARD
            .decode(wrapped.as_bytes())
            .with_context(|| format!("the key of customer {customer_id} is not base64"))?;
        let bytes = open(&self.kek, &key_aad(customer_id), &sealed)
            .with_context(|| format!("unwrapping the key of customer {customer_id}"))?;
        <Key>::try_from(bytes.as_slice())
            .map_err(|_| anyhow::anyhow!("the key of customer {customer_id} is not 32 bytes"))
    }
}

/// Binds a wrapped key to its customer: a row copied to another customer does not open.
fn key_aad(customer_id: i64) -> Vec<u8> {
    format!("olivine.customer-key.v1:{customer_id}").into_bytes()
}

fn field_aad(customer_id: i64, context: &str) -> Vec<u8> {
    format!("olivine.field.v2:{customer_id}:{context}").into_bytes()
}

/// The customer a `v2` field is encrypted for; `None` for any other text.
pub fn customer_of_field(stored: &str) -> Option<i64> {
    let rest = stored
        .strip_prefix(CUSTOMER_FIELD_VERSION)?
        .strip_prefix(":c")?;
    let (id, _) = rest.split_once(':')?;
    id.parse().ok()
}

/// Whether a field is in the shared-key format (`v1:`), i.e. still to re-encrypt.
pub fn is_shared_key_field(stored: &str) -> bool {
    stored.starts_with("v1:")
}

/// One customer's fields: encrypts under their key, decrypts theirs (and `v1` fields).
pub struct CustomerFields<'k> {
    keys: &'k Keyring,
    customer_id: i64,
    /// `None`: the customer has no key (erased, or written before per-customer keys).
    key: Option<Arc<Key>>,
}

#[cfg(test)]
impl<'k> CustomerFields<'k> {
    /// Fields of a customer with the key given (`None`: erased), for unit tests.
    pub(super) fn for_test(keys: &'k Keyring, customer_id: i64, key: Option<Key>) -> Self {
        CustomerFields {
            keys,
            customer_id,
            key: key.map(Arc::new),
        }
    }
}

impl CustomerFields<'_> {
    pub fn customer_id(&self) -> i64 {
        self.customer_id
    }

    /// Encrypts under the customer's key as `v2:c<id>:…`, `context` (e.g.
    /// `customers.email`) bound as associated data.
    pub fn encrypt(&self, context: &str, plaintext: &str) -> anyhow::Result<String> {
        let key = self
            .key
            .as_deref()
            .with_context(|| format!("customer {} has no data key", self.customer_id))?;
        let sealed = seal(
            key,
            &field_aad(self.customer_id, context),
            plaintext.as_bytes(),
        )?;
        Ok(format!(
            "{CUSTOMER_FIELD_VERSION}:c{}:{}",
            self.customer_id,
            STANDARD.encode(sealed)
        ))
    }

    /// Decrypts one of the customer's fields: `v2` under their key (a field of another
    /// customer is an error), `v1` under the shared key.
    pub fn decrypt(&self, context: &str, stored: &str) -> anyhow::Result<String> {
        let Some(owner) = customer_of_field(stored) else {
            return self.keys.decrypt_field(context, stored);
        };
        anyhow::ensure!(
            owner == self.customer_id,
            "the field belongs to another customer"
        );
        let key = self.key.as_deref().with_context(|| {
            format!("customer {owner} has no data key (erased): the field cannot be read any more")
        })?;
        let body = stored
            .splitn(3, ':')
            .nth(2)
            .context("encrypted field is malformed")?;
        let sealed = STANDARD
            .decode(body.as_bytes())
            .context("encrypted field is not base64")?;
        let plain = open(key, &field_aad(owner, context), &sealed)?;
        String::from_utf8(plain).context("decrypted field is not UTF-8")
    }
}

impl Keyring {
    /// The customer's fields for reading: their key from the cache or the database, or
    /// none if they have none (then only `v1` fields decrypt).
    pub async fn customer<'e, E>(
        &self,
        executor: E,
        customer_id: i64,
    ) -> anyhow::Result<CustomerFields<'_>>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let key = match self.customers.cache.get(&customer_id).await {
            Some(key) => Some(key),
            None => self.load_customer_key(executor, customer_id).await?,
        };
        Ok(CustomerFields {
            keys: self,
            customer_id,
            key,
        })
    }

    async fn load_customer_key<'e, E>(
        &self,
        executor: E,
        customer_id: i64,
    ) -> anyhow::Result<Option<Arc<Key>>>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let row = sqlx::query("SELECT wrapped FROM customer_keys WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(executor)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let key = Arc::new(
            self.customers
                .unwrap(customer_id, &row.try_get::<String, _>(0)?)?,
        );
        self.customers.cache.insert(customer_id, key.clone()).await;
        Ok(Some(key))
    }

    /// The customer's fields for writing: their key, made now if they have none yet. Runs
    /// on `conn` (inside the caller's transaction, if any). An erased customer gets no
    /// key: that is an error.
    pub async fn customer_for_writing(
        &self,
        conn: &mut AnyConnection,
        customer_id: i64,
    ) -> anyhow::Result<CustomerFields<'_>> {
        if let Some(key) = self.customers.cache.get(&customer_id).await {
            return Ok(CustomerFields {
                keys: self,
                customer_id,
                key: Some(key),
            });
        }
        let fresh: Key = rand::random();
        // Of two racing writers one key wins and both answer it (the upsert returns the
        // row that is there); none is made for an erased customer.
        let row = sqlx::query(
            "INSERT INTO customer_keys (customer_id, wrapped, created_at)
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1 AND erased_at IS NULL)
             ON CONFLICT (customer_id) DO UPDATE SET customer_id = excluded.customer_id
             RETURNING wrapped",
        )
        .bind(customer_id)
        .bind(self.customers.wrap(customer_id, &fresh)?)
        .bind(crate::time::now())
        .fetch_optional(&mut *conn)
        .await?
        .with_context(|| format!("customer {customer_id} does not exist or is erased"))?;
        // Not cached: the caller's transaction may still roll back, and on SQLite the
        // customer's id be given to someone else. Reads cache it once it is committed.
        let key = Arc::new(
            self.customers
                .unwrap(customer_id, &row.try_get::<String, _>(0)?)?,
        );
        Ok(CustomerFields {
            keys: self,
            customer_id,
            key: Some(key),
        })
    }

    /// [`Keyring::customer_for_writing`] on a connection of `pool` (only when the key
    /// is not cached). Not inside a transaction of the same SQLite store: use the
    /// transaction's connection there.
    pub async fn customer_for_writing_in(
        &self,
        pool: &sqlx::AnyPool,
        customer_id: i64,
    ) -> anyhow::Result<CustomerFields<'_>> {
        if let Some(key) = self.customers.cache.get(&customer_id).await {
            return Ok(CustomerFields {
                keys: self,
                customer_id,
                key: Some(key),
            });
        }
        let mut conn = pool.acquire().await?;
        self.customer_for_writing(&mut conn, customer_id).await
    }

    /// Decrypts any field, `v1` or `v2` (whose customer it names; their key is read from
    /// the cache or through `executor`).
    pub async fn decrypt_any<'e, E>(
        &self,
        executor: E,
        context: &str,
        stored: &str,
    ) -> anyhow::Result<String>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        match customer_of_field(stored) {
            None => self.decrypt_field(context, stored),
            Some(customer_id) => self
                .customer(executor, customer_id)
                .await?
                .decrypt(context, stored),
        }
    }

    /// Drops a customer's key from this kernel's cache (after their erasure).
    pub async fn forget_customer_key(&self, customer_id: i64) {
        self.customers.cache.invalidate(&customer_id).await;
    }
}

/// Destroys the customer's key: part of the erasure's transaction. Answers whether there
/// was one.
pub(crate) async fn destroy(conn: &mut AnyConnection, customer_id: i64) -> anyhow::Result<bool> {
    let deleted = sqlx::query("DELETE FROM customer_keys WHERE customer_id = $1")
        .bind(customer_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(deleted > 0)
}

/// Records an erasure in the erasure log (a customer id and a time, nothing else).
pub(crate) async fn log_erasure(
    conn: &mut AnyConnection,
    customer_id: i64,
    erased_at: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO customer_erasures (customer_id, erased_at) VALUES ($1, $2)
         ON CONFLICT (customer_id) DO NOTHING",
    )
    .bind(customer_id)
    .bind(erased_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_their_customer() {
        assert_eq!(customer_of_field("v2:c42:AAAA"), Some(42));
        assert_eq!(customer_of_field("v1:data-1:AAAA"), None);
        assert_eq!(customer_of_field("v2:cx:AAAA"), None);
        assert_eq!(customer_of_field("v2:c42"), None);
        assert!(is_shared_key_field("v1:data-1:AAAA"));
        assert!(!is_shared_key_field("v2:c1:AAAA"));
    }

    #[test]
    fn a_wrapped_key_opens_only_for_its_customer() {
        let keys = CustomerKeys::new(rand::random());
        let key: Key = rand::random();
        let wrapped = keys.wrap(7, &key).unwrap();
        assert_eq!(keys.unwrap(7, &wrapped).unwrap(), key);
        assert!(keys.unwrap(8, &wrapped).is_err());
        let other = CustomerKeys::new(rand::random());
        assert!(other.unwrap(7, &wrapped).is_err());
    }
}
