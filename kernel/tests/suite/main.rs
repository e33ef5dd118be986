//! The kernel's integration tests, in one test binary: every binary links the whole
//! kernel and its wasmtime host, so one binary instead of one per file saves most of the
//! link time and disk. Run one area with a filter on its module, e.g.
//! `cargo test -p olivine-kernel --test suite orders::`.
//!
//! The tests share one process: nothing may change process-wide state (environment,
//! current directory, global recorders). A spawned `olivine` gets its settings through
//! its `Command`, and metrics are asserted as increases, not presence, since other
//! tests bump the same global counters.
//!
//! A new area is a new module here (not a new file directly in `kernel/tests/`, which
//! would be a binary of its own again).

#[macro_use]
mod common;

mod accounts;
mod admin_pages;
mod admin_ui;
mod audit;
mod backup;
mod bad_input;
mod browser;
mod bus;
mod cart;
mod catalog_api;
mod cli_plugin;
mod cluster;
mod customer_keys;
mod deploy;
mod http_caching;
mod imports;
mod injection;
mod inventory;
mod jobs;
mod keys;
mod lighthouse;
mod live;
mod loyalty;
mod media;
mod notification_channels;
mod notifications;
mod openapi_conformance;
mod ops;
mod orders;
mod payments;
mod plugin_policies;
mod plugins;
mod plugins_dir;
mod privacy;
mod process;
mod rate_limit;
mod recommendations;
mod replica;
mod reviews;
mod search;
mod search_cli;
mod security_headers;
mod session_sweep;
mod staff;
mod staff_mfa;
mod staff_passkeys;
mod staff_sso;
mod storefront;
mod storefront_account;
mod storefront_cart;
mod storefront_checkout;
mod storefront_privacy;
mod subscriptions;
mod taxonomy;
