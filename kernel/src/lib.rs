//! The Olivine commerce kernel as a library: the `olivine` binary and the integration
//! tests both build the application from here.

pub mod accounts;
pub mod app;
pub mod audit;
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
pub mod subscriptions;
pub mod telemetry;
pub mod time;

pub use app::AppState;
pub use error::{Error, FieldError};
