//! The `cache` import: a small key-value store with a TTL per entry, kept by the host for
//! each plugin (by content hash, so a new version starts empty) on this node. Plugins keep
//! tokens in it that are costly or rate-limited to make (an APNs provider token may be
//! re-signed at most every 20 minutes; an OAuth access token lasts an hour).

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Longest TTL a plugin may ask for.
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// What all plugins' entries may weigh together; beyond it the least used go.
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    ttl: Duration,
}

struct EntryExpiry;

impl moka::Expiry<(Arc<str>, String), Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &(Arc<str>, String),
        entry: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &(Arc<str>, String),
        entry: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Every plugin's entries on this node (one per runtime).
#[derive(Clone)]
pub struct HostCache {
    entries: Cache<(Arc<str>, String), Entry>,
}

impl Default for HostCache {
    fn default() -> Self {
        HostCache {
            entries: Cache::builder()
                .max_capacity(CAPACITY_BYTES)
                .weigher(|key: &(Arc<str>, String), entry: &Entry| {
                    (key.1.len() + entry.value.len() + 64) as u32
                })
                .expire_after(EntryExpiry)
                .build(),
        }
    }
}

impl HostCache {
    /// The view of one plugin (by its content hash).
    pub fn for_plugin(&self, plugin_hash: Arc<str>) -> PluginCache {
        PluginCache {
            cache: self.clone(),
            plugin_hash,
        }
    }
}

/// One plugin's entries.
#[derive(Clone)]
pub struct PluginCache {
    cache: HostCache,
    plugin_hash: Arc<str>,
}

impl PluginCache {
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.cache
            .entries
            .get(&(self.plugin_hash.clone(), key.to_owned()))
            .map(|entry| entry.value.to_vec())
    }

    /// Stores `value`; a key or value over the caps, or a zero TTL, stores nothing (the
    /// plugin makes the value again next time).
    pub fn set(&self, key: String, value: Vec<u8>, ttl_seconds: u32) {
        let key = (self.plugin_hash.clone(), key);
        if key.1.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES || ttl_seconds == 0 {
            self.cache.entries.invalidate(&key);
            return;
        }
        let ttl = Duration::from_secs(u64::from(ttl_seconds)).min(MAX_TTL);
        self.cache.entries.insert(
            key,
            Entry {
                value: value.into(),
                ttl,
            },
        );
    }

    pub fn delete(&self, key: &str) {
        self.cache
            .entries
            .invalidate(&(self.plugin_hash.clone(), key.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_see_only_their_own_entries_and_caps_store_nothing() {
        let host = HostCache::default();
        let a = host.for_plugin(Arc::from("a"));
        let b = host.for_plugin(Arc::from("b"));
        a.set("token".into(), b"signed".to_vec(), 60);
        assert_eq!(a.get("token").as_deref(), Some(&b"signed"[..]));
        assert_eq!(b.get("token"), None);
        a.set("token".into(), vec![0; MAX_VALUE_BYTES + 1], 60);
        assert_eq!(a.get("token"), None, "an oversized value replaces nothing");
        a.set("k".into(), b"v".to_vec(), 0);
        assert_eq!(a.get("k"), None);
        a.set("k".into(), b"v".to_vec(), 60);
        a.delete("k");
        assert_eq!(a.get("k"), None);
    }
}
