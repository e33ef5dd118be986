//! A small key-value cache the host keeps for the plugin on one node
//! (notification-channel 0.2 only): a place for what is costly or rate-limited to make,
//! such as a signed APNs provider token or an OAuth access token.
//!
//! Entries vanish on their TTL, when the plugin is replaced, when the node restarts or
//! when the cache is full, so a plugin must always be able to make a value again. Keys
//! are at most [`MAX_KEY_BYTES`], values at most [`MAX_VALUE_BYTES`] and TTLs at most a
//! day ([`MAX_TTL_SECONDS`]); a larger key or value, or a TTL of zero, stores nothing
//! (and drops what the key held).
//!
//! Off wasm the cache lives in [`crate::testing`] (per thread, cleared by
//! [`crate::testing::clear`]) and TTLs run on [`crate::clock::now_unix_seconds`], which
//! tests can move with [`crate::testing::set_now`]:
//!
//! ```
//! use olivine_sdk::{cache, testing};
//!
//! testing::set_now(1_000);
//! cache::set("token:k1", b"signed", 60);
//! assert_eq!(cache::get("token:k1").as_deref(), Some(&b"signed"[..]));
//! testing::set_now(1_060);
//! assert_eq!(cache::get("token:k1"), None);
//! testing::clear();
//! ```
//!
//! Calling these from a world without the `cache` import (a pricing rule, a payment
//! adapter) makes a component the kernel refuses to load.

/// Longest key the host stores, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value the host stores, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest TTL; longer ones are cut to it.
pub const MAX_TTL_SECONDS: u32 = 24 * 60 * 60;

/// The value stored under `key`, unless it expired (or was never stored).
pub fn get(key: &str) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    return crate::notifications::olivine::plugin0_2_0::cache::get(key);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::cache_get(key);
}

/// The value stored under `key` as UTF-8 text; `None` when missing or not text.
pub fn get_string(key: &str) -> Option<String> {
    get(key).and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Stores `value` under `key` for `ttl_secs` seconds (at most a day).
pub fn set(key: &str, value: impl AsRef<[u8]>, ttl_secs: u32) {
    #[cfg(target_arch = "wasm32")]
    crate::notifications::olivine::plugin0_2_0::cache::set(key, value.as_ref(), ttl_secs);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::cache_set(key, value.as_ref(), ttl_secs);
}

/// Forgets `key` (a token the provider refused, say).
pub fn delete(key: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::notifications::olivine::plugin0_2_0::cache::delete(key);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::cache_delete(key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn ttls_run_on_the_test_clock() {
        testing::clear();
        testing::set_now(10_000);
        set("a", "one", 40 * 60);
        set("b", [1, 2, 3], 5);
        assert_eq!(get_string("a").as_deref(), Some("one"));
        assert_eq!(get("b"), Some(vec![1, 2, 3]));
        testing::advance_now(5);
        assert_eq!(get("b"), None, "expired exactly at its TTL");
        testing::advance_now(40 * 60 - 6);
        assert_eq!(get_string("a").as_deref(), Some("one"));
        testing::advance_now(1);
        assert_eq!(get("a"), None);
        testing::clear();
    }

    #[test]
    fn caps_store_nothing_and_delete_forgets() {
        testing::clear();
        testing::set_now(50_000);
        set("k", "v", 60);
        set("k", vec![0; MAX_VALUE_BYTES + 1], 60);
        assert_eq!(get("k"), None, "an oversized value drops the old one");
        set(&"k".repeat(MAX_KEY_BYTES + 1), "v", 60);
        assert_eq!(get(&"k".repeat(MAX_KEY_BYTES + 1)), None);
        set("k", "v", 0);
        assert_eq!(get("k"), None);
        set("k", "v", u32::MAX);
        testing::advance_now(u64::from(MAX_TTL_SECONDS) - 1);
        assert!(get("k").is_some());
        testing::advance_now(1);
        assert_eq!(get("k"), None, "TTLs are cut to a day");
        set("k", "v", 60);
        delete("k");
        assert_eq!(get("k"), None);
        set("k", "v", 60);
        testing::clear();
        assert_eq!(get("k"), None, "clear() empties the cache");
    }
}
