//! Stand-ins for the host imports when plugin code runs natively (`cargo test` on the
//! build machine). Inside the kernel these are never used: on `wasm32` the calls go to the
//! host.
//!
//! State is per thread, so tests running in parallel do not see each other's settings,
//! HTTP mocks, cache entries or clocks.
//!
//! ```
//! use olivine_sdk::{settings, testing};
//!
//! testing::set_settings([("buy", "3"), ("percent_off", "10")]);
//! assert_eq!(settings::get_parsed::<u32>("buy"), Ok(Some(3)));
//! testing::clear();
//! assert_eq!(settings::get("buy"), None);
//! ```

#[cfg(feature = "fixtures")]
pub mod fixtures;

/// The plugin built for wasm32-wasip2 and its fixtures run through the kernel's real
/// host (wasmtime, with the kernel's checks and limits), from the plugin's own `cargo
/// test`. Feature `host`; native builds only.
///
/// ```ignore
/// #[test]
/// fn fixtures_through_the_real_host() {
///     olivine_sdk::testing::host::check_fixtures(env!("CARGO_MANIFEST_DIR"));
/// }
/// ```
#[cfg(all(feature = "host", not(target_arch = "wasm32")))]
pub mod host {
    pub use olivine_plugin_runtime::testing::{build_component, check_fixtures, run_fixtures};
}

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::http::{HttpError, Request, Response};
use crate::log::Level;

type Handler = Box<dyn FnMut(&Request) -> Result<Response, HttpError>>;

#[derive(Default)]
struct State {
    settings: BTreeMap<String, String>,
    http: Option<Handler>,
    requests: Vec<Request>,
    logs: Vec<(Level, String)>,
    /// `crate::cache`: key -> (value, expires at, Unix seconds).
    cache: BTreeMap<String, (Vec<u8>, u64)>,
    /// The test clock, when set.
    now: Option<u64>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Replaces the settings the plugin sees (on this thread).
pub fn set_settings<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) {
    STATE.with(|s| {
        s.borrow_mut().settings = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
    });
}

/// Answers the plugin's outbound HTTP requests with `handler` (on this thread). Without a
/// handler every request is `denied`, as in the kernel without a granted host.
pub fn mock_http(handler: impl FnMut(&Request) -> Result<Response, HttpError> + 'static) {
    STATE.with(|s| s.borrow_mut().http = Some(Box::new(handler)));
}

/// The HTTP requests the plugin sent so far (on this thread), oldest first.
pub fn sent_requests() -> Vec<Request> {
    STATE.with(|s| s.borrow().requests.clone())
}

/// Takes the log lines the plugin wrote so far (on this thread).
pub fn take_logs() -> Vec<(Level, String)> {
    STATE.with(|s| std::mem::take(&mut s.borrow_mut().logs))
}

/// Sets the test clock (on this thread): [`crate::clock::now_unix_seconds`] returns
/// `unix_seconds`, and [`crate::cache`] entries expire against it.
pub fn set_now(unix_seconds: u64) {
    STATE.with(|s| s.borrow_mut().now = Some(unix_seconds));
}

/// Moves the test clock on by `seconds` (starting from the real clock if it was not set).
pub fn advance_now(seconds: u64) {
    let now = crate::clock::now_unix_seconds();
    set_now(now.saturating_add(seconds));
}

/// The test clock, when [`set_now`] set it (on this thread).
pub fn now() -> Option<u64> {
    STATE.with(|s| s.borrow().now)
}

/// The keys in [`crate::cache`] that have not expired (on this thread), in order.
pub fn cache_keys() -> Vec<String> {
    let now = crate::clock::now_unix_seconds();
    STATE.with(|s| {
        s.borrow()
            .cache
            .iter()
            .filter(|(_, (_, expires))| *expires > now)
            .map(|(k, _)| k.clone())
            .collect()
    })
}

/// Forgets settings, the HTTP handler, sent requests, logs, the cache and the test clock
/// (on this thread).
pub fn clear() {
    STATE.with(|s| *s.borrow_mut() = State::default());
}

pub(crate) fn cache_get(key: &str) -> Option<Vec<u8>> {
    let now = crate::clock::now_unix_seconds();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        match s.cache.get(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            Some(_) => {
                s.cache.remove(key);
                None
            }
            None => None,
        }
    })
}

/// As the host does: a key or value over the caps, or a zero TTL, stores nothing and
/// drops what the key held; TTLs are cut to a day.
pub(crate) fn cache_set(key: &str, value: &[u8], ttl_secs: u32) {
    use crate::cache::{MAX_KEY_BYTES, MAX_TTL_SECONDS, MAX_VALUE_BYTES};
    let now = crate::clock::now_unix_seconds();
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES || ttl_secs == 0 {
            s.cache.remove(key);
            return;
        }
        let expires = now.saturating_add(u64::from(ttl_secs.min(MAX_TTL_SECONDS)));
        s.cache.insert(key.to_owned(), (value.to_vec(), expires));
    });
}

pub(crate) fn cache_delete(key: &str) {
    STATE.with(|s| {
        s.borrow_mut().cache.remove(key);
    });
}

pub(crate) fn setting(key: &str) -> Option<String> {
    STATE.with(|s| s.borrow().settings.get(key).cloned())
}

pub(crate) fn all_settings() -> Vec<(String, String)> {
    STATE.with(|s| {
        s.borrow()
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

pub(crate) fn send(request: &Request) -> Result<Response, HttpError> {
    // Take the handler out while it runs, so that it may itself use this module.
    let handler = STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.requests.push(request.clone());
        s.http.take()
    });
    let Some(mut handler) = handler else {
        return Err(HttpError::Denied(format!(
            "no HTTP handler set (olivine_sdk::testing::mock_http) for {}",
            request.url
        )));
    };
    let result = handler(request);
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.http.is_none() {
            s.http = Some(handler);
        }
    });
    result
}

pub(crate) fn log(level: Level, message: &str) {
    eprintln!("[plugin {level:?}] {message}");
    STATE.with(|s| s.borrow_mut().logs.push((level, message.to_owned())));
}
