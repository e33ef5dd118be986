//! The storefront's static files under content-hashed names (`/assets/site.<hash>.css`),
//! cached for a year as immutable by browsers and CDNs: a new build changes the content,
//! so the name, and pages refer to the new one. The plain names (`/assets/site.css`)
//! stay served with a short lifetime for pages rendered before an upgrade.

use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A static file: its hashed path (what pages link), its plain path, its content.
pub struct Asset {
    pub path: String,
    pub plain: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
    /// The plain name's `Cache-Control` (it can change under that name).
    plain_cache: &'static str,
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

impl Asset {
    fn new(
        plain: &'static str,
        content_type: &'static str,
        body: &'static str,
        plain_cache: &'static str,
    ) -> Asset {
        let digest = crate::plugins::decisions::hash(body.as_bytes());
        let short = &digest[..12.min(digest.len())];
        let path = match plain.rsplit_once('.') {
            Some((stem, ext)) => format!("{stem}.{short}.{ext}"),
            None => format!("{plain}.{short}"),
        };
        Asset {
            path,
            plain,
            content_type,
            body,
            plain_cache,
        }
    }
}

pub fn site_css() -> &'static Asset {
    &all()[0]
}

pub fn checkout_js() -> &'static Asset {
    &all()[1]
}

pub fn search_js() -> &'static Asset {
    &all()[2]
}

pub fn live_js() -> &'static Asset {
    &all()[3]
}

pub fn header_js() -> &'static Asset {
    &all()[4]
}

/// The shop's icon (the logo's mark), which every page links, so browsers ask for no
/// `/favicon.ico`.
pub fn favicon() -> &'static Asset {
    &all()[5]
}

fn all() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        vec![
            Asset::new(
                "/assets/site.css",
                "text/css; charset=utf-8",
                include_str!("site.css"),
                "public, max-age=3600",
            ),
            Asset::new(
                "/assets/checkout.js",
                "text/javascript; charset=utf-8",
                include_str!("checkout.js"),
                "public, max-age=300",
            ),
            Asset::new(
                "/assets/search.js",
                "text/javascript; charset=utf-8",
                include_str!("search.js"),
                "public, max-age=300",
            ),
            Asset::new(
                "/assets/live.js",
                "text/javascript; charset=utf-8",
                include_str!("live.js"),
                "public, max-age=300",
            ),
            Asset::new(
                "/assets/header.js",
                "text/javascript; charset=utf-8",
                include_str!("header.js"),
                "public, max-age=300",
            ),
            Asset::new(
                "/assets/favicon.svg",
                "image/svg+xml",
                include_str!("favicon.svg"),
                "public, max-age=3600",
            ),
        ]
    })
}

/// Routes for every asset under both of its names.
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    all().iter().fold(axum::Router::new(), |router, asset| {
        router
            .route(&asset.path, axum::routing::get(serve))
            .route(asset.plain, axum::routing::get(serve))
    })
}

async fn serve(request: Request) -> Response {
    let path = request.uri().path();
    let Some(asset) = all().iter().find(|a| a.path == path || a.plain == path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cache = if asset.path == path {
        IMMUTABLE
    } else {
        asset.plain_cache
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_carry_the_content_digest() {
        let css = site_css();
        assert!(
            css.path.starts_with("/assets/site.") && css.path.ends_with(".css"),
            "{}",
            css.path
        );
        assert_ne!(css.path, css.plain);
        let digest = crate::plugins::decisions::hash(css.body.as_bytes());
        assert!(css.path.contains(&digest[..12]));
        assert!(checkout_js().path.ends_with(".js"));
    }
}
