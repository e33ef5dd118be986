//! Fast over real networks: compressed answers (brotli, gzip), strong ETags and 304s for
//! a mobile app's cache, `Cache-Control` a CDN can use, and static files under
//! content-hashed names cached as immutable.

use std::io::Read;

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};

async fn get_with(
    app: &TestApp,
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> TestResponse {
    let mut request = Request::builder().method(Method::GET).uri(path);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    app.send(request.body(Body::empty()).unwrap()).await
}

fn header_of(r: &TestResponse, name: header::HeaderName) -> &str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn brotli_decoded(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut &bytes[..], &mut out).expect("brotli");
    out
}

fn gzip_decoded(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

both_backends! {
    async fn product_json_is_compressed_once_and_revalidated_by_etag(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        app.settle().await;
        let path = "/api/v1/products/magnesium-glycinate";
        let plain = get_with(&app, path, &[]).await;
        assert_eq!(plain.status, StatusCode::OK);
        assert_eq!(header_of(&plain, header::CONTENT_ENCODING), "");
        assert_eq!(header_of(&plain, header::CACHE_CONTROL), "public, max-age=60, stale-while-revalidate=600");
        assert_eq!(header_of(&plain, header::VARY), "accept-encoding");
        // The tag a CDN purges by when an event names the product.
        assert_eq!(plain.headers["surrogate-key"], "product-magnesium-glycinate");
        assert_eq!(plain.headers["cache-tag"], "product-magnesium-glycinate");
        let etag = header_of(&plain, header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");

        // Brotli for a client that takes it; the same JSON inside, under its own ETag.
        let br = get_with(&app, path, &[(header::ACCEPT_ENCODING, "gzip, deflate, br")]).await;
        assert_eq!(header_of(&br, header::CONTENT_ENCODING), "br");
        assert_eq!(brotli_decoded(&br.body), plain.body);
        assert!(br.body.len() * 2 < plain.body.len(), "{} of {} bytes", br.body.len(), plain.body.len());
        let br_etag = header_of(&br, header::ETAG).to_owned();
        assert_ne!(br_etag, etag);
        let gz = get_with(&app, path, &[(header::ACCEPT_ENCODING, "gzip")]).await;
        assert_eq!(header_of(&gz, header::CONTENT_ENCODING), "gzip");
        assert_eq!(gzip_decoded(&gz.body), plain.body);

        // Revalidation: every held ETag of this content is a 304 with no body.
        for held in [&etag, &br_etag] {
            let again = get_with(&app, path, &[(header::IF_NONE_MATCH, held.as_str()), (header::ACCEPT_ENCODING, "br")]).await;
            assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{held}");
            assert!(again.body.is_empty());
            assert_eq!(header_of(&again, header::ETAG), br_etag);
        }
        assert_eq!(get_with(&app, path, &[(header::IF_NONE_MATCH, "\"something-else\"")]).await.status, StatusCode::OK);

        // A stock change is a new answer: the old ETag gets the new body.
        let sku = plain.json()["variants"][0]["sku"].as_str().unwrap().to_owned();
        let lots = app.admin_get(&format!("/api/v1/admin/lots?sku={sku}")).await.json();
        let lot = lots[0]["id"].as_i64().unwrap();
        let r = app.admin_post(&format!("/api/v1/admin/lots/{lot}/adjustments"),
            &serde_json::json!({"delta": -1, "reason": "damaged"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        let changed = get_with(&app, path, &[(header::IF_NONE_MATCH, etag.as_str())]).await;
        assert_eq!(changed.status, StatusCode::OK);
        assert_ne!(header_of(&changed, header::ETAG), etag);
        assert_eq!(changed.json()["variants"][0]["availability"]["sellable_quantity"],
            plain.json()["variants"][0]["availability"]["sellable_quantity"].as_i64().unwrap() - 1);
        app.stop().await;
    }

    async fn pages_are_compressed_and_assets_have_hashed_immutable_names(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        let page = get_with(&app, "/p/magnesium-glycinate", &[]).await;
        assert_eq!(page.status, StatusCode::OK);
        let html = page.text();
        let gz = get_with(&app, "/p/magnesium-glycinate", &[(header::ACCEPT_ENCODING, "gzip")]).await;
        assert_eq!(header_of(&gz, header::CONTENT_ENCODING), "gzip");
        assert!(gz.body.len() * 2 < page.body.len(), "{} of {} bytes", gz.body.len(), page.body.len());
        let br = get_with(&app, "/p/magnesium-glycinate", &[(header::ACCEPT_ENCODING, "br")]).await;
        assert_eq!(header_of(&br, header::CONTENT_ENCODING), "br");
        assert!(String::from_utf8(brotli_decoded(&br.body)).unwrap().contains("Magnesium"));

        // The stylesheet is linked by its hashed name, cached for a year as immutable;
        // the plain name still answers, briefly cached.
        let start = html.find("href=\"/assets/site.").expect("the stylesheet link") + 6;
        let href = &html[start..start + html[start..].find('"').unwrap()];
        assert!(href.ends_with(".css") && href != "/assets/site.css", "{href}");
        let css = get_with(&app, href, &[(header::ACCEPT_ENCODING, "br")]).await;
        assert_eq!(css.status, StatusCode::OK);
        assert_eq!(header_of(&css, header::CACHE_CONTROL), "public, max-age=31536000, immutable");
        assert_eq!(header_of(&css, header::CONTENT_ENCODING), "br");
        let plain = get_with(&app, "/assets/site.css", &[]).await;
        assert_eq!(header_of(&plain, header::CACHE_CONTROL), "public, max-age=3600");
        assert_eq!(brotli_decoded(&css.body), plain.body);
        // A name with another hash is not found.
        assert_eq!(get_with(&app, "/assets/site.000000000000.css", &[]).await.status, StatusCode::NOT_FOUND);

        // Tiny answers go out as they are.
        let health = get_with(&app, "/healthz", &[(header::ACCEPT_ENCODING, "br, gzip")]).await;
        assert_eq!(header_of(&health, header::CONTENT_ENCODING), "");
        app.stop().await;
    }
}
