//! The storefront: server-rendered HTML pages for shoppers.

use axum::Router;
use axum::response::Html;

use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}

pub fn not_found_page() -> (axum::http::StatusCode, Html<String>) {
    (
        axum::http::StatusCode::NOT_FOUND,
        Html("<h1>Not found</h1>".to_owned()),
    )
}
