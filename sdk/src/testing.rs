//! Stand-ins for the host imports when plugin code runs natively (`cargo test` on the
//! build machine). Inside the kernel these are never used: on `wasm32` the calls go to the
//! host.
//!
//! State is per thread, so tests running in parallel do not see each other's settings.
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

/// Forgets settings, the HTTP handler, sent requests and logs (on this thread).
pub fn clear() {
    STATE.with(|s| *s.borrow_mut() = State::default());
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
