//! The admin's stylesheet and its one script under content-hashed names
//! (`/admin/assets/admin.<hash>.css`, `/admin/assets/passkeys.<hash>.js`, cached for a
//! year as immutable): a new build changes the content, so the name. The script is
//! loaded with its `integrity` hash, from the admin's own origin, as the pages'
//! Content-Security-Policy requires (`script-src 'self'`, no inline script).

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine as _;
use sha2::Digest as _;

use crate::app::AppState;

const CSS: &str = include_str!("../assets/admin.css");
/// Adding a passkey and answering the sign-in's challenge with one (see `auth.rs`).
const PASSKEYS_JS: &str = include_str!("../assets/passkeys.js");

fn hashed_path(name: &str, extension: &str, body: &str) -> String {
    let digest = crate::plugins::decisions::hash(body.as_bytes());
    format!(
        "/admin/assets/{name}.{}.{extension}",
        &digest[..12.min(digest.len())]
    )
}

/// The hashed path pages link.
pub fn css_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| hashed_path("admin", "css", CSS))
}

/// The hashed path of the passkeys script.
pub fn passkeys_js_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| hashed_path("passkeys", "js", PASSKEYS_JS))
}

/// The passkeys script's `integrity` attribute (`sha256-<base64>`).
pub fn passkeys_js_integrity() -> &'static str {
    static INTEGRITY: OnceLock<String> = OnceLock::new();
    INTEGRITY.get_or_init(|| {
        format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(PASSKEYS_JS.as_bytes()))
        )
    })
}

/// Open to anyone: a stylesheet or a script holds nothing of the store's.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(css_path(), get(css))
        .route(passkeys_js_path(), get(passkeys_js))
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

async fn passkeys_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        PASSKEYS_JS,
    )
}
