//! The storefront: server-rendered HTML pages for shoppers, one file per area (the admin's
//! pages in `admin-ui/` are laid out the same way). The JSON API beside them lives with
//! each domain module.
//!
//! Every page is built with `maud`, so all catalog text is HTML-escaped. Handlers never
//! answer with JSON or plain text: a missing product or category is the 404 page, any
//! other failure is logged and answered with the 500 page. Query strings are parsed by
//! hand and leniently, so bad input falls back to a default instead of a 400.

use axum::Router;
use axum::middleware;
use axum::routing::get;

use crate::app::AppState;

pub mod account;
pub mod addresses;
pub mod analytics;
pub mod cart;
pub mod catalog;
pub mod checkout;
pub mod loyalty;
pub mod notifications;
pub mod orders;
pub mod privacy;
pub mod reviews;
pub mod search;
pub mod subscriptions;

pub use catalog::{CATALOG_PURGE_TAG, not_found_page};

/// The shop's pages, with the customer's account pages, under the session layer
/// (cookies, CSRF: see [`crate::http::session`]).
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(catalog::home))
        .route("/c/{slug}", get(catalog::category_page))
        .route("/p/{slug}", get(catalog::product_page))
        .route(
            crate::http::session::HEADER_PATH,
            get(crate::http::session::header_bits),
        )
        .merge(account::routes())
        .merge(cart::routes())
        .merge(checkout::routes())
        .merge(search::routes())
        .merge(analytics::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::http::session::layer,
        ))
        .merge(crate::http::assets::routes())
}
