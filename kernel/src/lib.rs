//! The Olivine commerce kernel as a library: the `olivine` binary and the integration
//! tests both build the application from here.

pub mod accounts;
// Top-level admin-ui/ (the project's layout), a module: as a crate it and the kernel would depend on each other.
#[path = "../../admin-ui/src/mod.rs"]
pub mod admin_ui;
pub mod app;
pub mod audit;
pub mod backup;
pub mod bus;
pub mod cache;
pub mod cart;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod countries;
pub mod error;
pub mod failpoint;
pub mod http;
pub mod imports;
pub mod inventory;
pub mod jobs;
pub mod live;
pub mod loyalty;
pub mod media;
pub mod notify;
pub mod orders;
pub mod plugins;
pub mod ratelimit;
pub mod recommendations;
pub mod reviews;
pub mod search;
pub mod seed;
pub mod seed_synthetic;
pub mod staff;
pub mod store;
pub mod storefront;
pub mod subscriptions;
pub mod telemetry;
pub mod time;

pub use app::AppState;
pub use error::{Error, FieldError};
