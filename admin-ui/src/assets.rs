//! The admin's stylesheet under a content-hashed name (`/admin/assets/admin.<hash>.css`,
//! cached for a year as immutable): a new build changes the content, so the name.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::app::AppState;

const CSS: &str = include_str!("../assets/admin.css");

/// The hashed path pages link.
pub fn css_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let digest = crate::plugins::decisions::hash(CSS.as_bytes());
        format!(
            "/admin/assets/admin.{}.css",
            &digest[..12.min(digest.len())]
        )
    })
}

/// Open to anyone: a stylesheet holds nothing of the store's.
pub fn routes() -> Router<AppState> {
    Router::new().route(css_path(), get(css))
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CSS,
    )
}
