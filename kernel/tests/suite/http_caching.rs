//! Fast over real networks: compressed answers (brotli, gzip), strong ETags and 304s for
//! a mobile app's cache, `Cache-Control` a CDN can use, and static files under
//! content-hashed names cached as immutable.

use std::io::Read;

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

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

    async fn catalog_pages_are_the_same_for_every_visitor_and_a_cdn_may_keep_them(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        app.settle().await;
        let product = "/p/magnesium-glycinate";

        // An anonymous visitor: a shared answer, validators, the purge tag, no cookie.
        let anonymous = get_with(&app, product, &[]).await;
        assert_eq!(anonymous.status, StatusCode::OK, "{}", anonymous.text());
        assert_eq!(header_of(&anonymous, header::CACHE_CONTROL), "public, max-age=60, stale-while-revalidate=600");
        assert_eq!(header_of(&anonymous, header::VARY), "accept-encoding");
        assert!(anonymous.headers.get(header::SET_COOKIE).is_none(), "{:?}", anonymous.headers);
        assert_eq!(anonymous.headers["surrogate-key"], "product-magnesium-glycinate");
        assert!(httpdate::parse_http_date(header_of(&anonymous, header::LAST_MODIFIED)).is_ok());
        let html = anonymous.text();
        assert!(!html.contains("name=\"csrf\""), "a shared page carries no visitor's token");
        assert!(html.contains("data-personal=\"account\"") && html.contains("/assets/header."), "{html}");
        let etag = header_of(&anonymous, header::ETAG).to_owned();
        let again = get_with(&app, product, &[(header::IF_NONE_MATCH, etag.as_str())]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
        assert!(again.body.is_empty());
        let since = header_of(&anonymous, header::LAST_MODIFIED).to_owned();
        let again = get_with(&app, product, &[(header::IF_MODIFIED_SINCE, since.as_str())]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);

        // Home, a category and search results are shared too, tagged as the catalog's lists.
        let home = get_with(&app, "/", &[]).await;
        let start = home.text().find("href=\"/c/").expect("a category link") + 6;
        let category = home.text()[start..start + home.text()[start..].find('"').unwrap()].to_owned();
        for path in ["/", category.as_str(), "/search?q=magnesium"] {
            let r = get_with(&app, path, &[]).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert_eq!(header_of(&r, header::CACHE_CONTROL), "public, max-age=60, stale-while-revalidate=600", "{path}");
            assert_eq!(r.headers["surrogate-key"], "catalog", "{path}");
            assert!(r.headers.get(header::SET_COOKIE).is_none(), "{path}");
        }

        // A signed-in shopper with a cart gets the very same bytes: their account link
        // and cart count come from the header request, which no cache may keep.
        let mut shopper = crate::common::browser::signed_in(&app, "ada@example.com", "Ada").await;
        let r = crate::common::browser::post_form(&app, &mut shopper, "/cart/lines",
            &[("product", "magnesium-glycinate"), ("sku", &first_sku(&app).await), ("quantity", "2")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "no token, but the browser says the post is from this site: {}", r.text());
        let theirs = crate::common::browser::get(&app, &mut shopper, product).await;
        assert_eq!(theirs.status, StatusCode::OK);
        assert_eq!(theirs.body, anonymous.body, "the page holds nothing of the shopper's");
        let bits = crate::common::browser::get(&app, &mut shopper, "/account/header").await;
        assert_eq!(bits.status, StatusCode::OK);
        assert_eq!(header_of(&bits, header::CACHE_CONTROL), "private, no-store");
        assert_eq!(bits.json(), serde_json::json!({"signed_in": true, "cart_items": 2, "analytics_answered": false}));
        let nobody = get_with(&app, "/account/header", &[]).await;
        assert_eq!(nobody.json()["signed_in"], false);
        assert_eq!(nobody.json()["cart_items"], 0);

        // The tokenless cart form still refuses another site, and a post that says nothing
        // of where it comes from.
        let sku = first_sku(&app).await;
        let fields = [("product", "magnesium-glycinate"), ("sku", sku.as_str()), ("quantity", "1")];
        let mut stranger = crate::common::browser::Browser::default();
        let r = crate::common::browser::send(&app, Method::POST, "/cart/lines", &stranger, Some(&fields),
            &[("origin", "https://evil.example")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = crate::common::browser::send(&app, Method::POST, "/cart/lines", &stranger, Some(&fields),
            &[("sec-fetch-site", "cross-site")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = crate::common::browser::send(&app, Method::POST, "/cart/lines", &stranger, Some(&fields), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = crate::common::browser::send(&app, Method::POST, "/cart/lines", &stranger, Some(&fields),
            &[("sec-fetch-site", "same-origin")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
        stranger.take(&r);
        // Another form is not tokenless.
        let r = crate::common::browser::post_form(&app, &mut stranger, "/account/sign-in",
            &[("email", "ada@example.com"), ("password", "x")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // An edit shows at once on this node: the kept page was made from the old product.
        let id = app.get("/api/v1/products/magnesium-glycinate").await.json()["id"].as_i64().unwrap();
        let r = app.admin_patch(&format!("/api/v1/admin/products/{id}"),
            &serde_json::json!({"name": "Magnesium Glycinate Plus"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        app.settle().await;
        let edited = get_with(&app, product, &[(header::IF_NONE_MATCH, etag.as_str())]).await;
        assert_eq!(edited.status, StatusCode::OK);
        assert!(edited.text().contains("Magnesium Glycinate Plus"));
        assert_ne!(header_of(&edited, header::ETAG), etag);
        app.stop().await;
    }

    async fn catalog_lists_and_search_answers_revalidate(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        app.settle().await;
        for path in ["/api/v1/products?per_page=5", "/api/v1/categories", "/api/v1/search?q=magnesium"] {
            let r = get_with(&app, path, &[(header::ACCEPT_ENCODING, "br")]).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
            assert_eq!(header_of(&r, header::CACHE_CONTROL), "public, max-age=60, stale-while-revalidate=600", "{path}");
            assert!(httpdate::parse_http_date(header_of(&r, header::LAST_MODIFIED)).is_ok(), "{path}");
            let etag = header_of(&r, header::ETAG).to_owned();
            assert!(etag.starts_with('"'), "{path}: {etag}");
            let again = get_with(&app, path, &[(header::IF_NONE_MATCH, etag.as_str())]).await;
            assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
            assert!(again.body.is_empty());
        }
        app.stop().await;
    }
}

/// Request headers of a test case.
type Headers<'a> = &'a [(header::HeaderName, &'a str)];

both_backends! {
    async fn the_fast_lane_answers_product_reads_as_the_router_does(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        app.settle().await;
        let routes = app.kernel.routes();
        let path = "/api/v1/products/magnesium-glycinate";
        let etag = header_of(&get_with(&app, path, &[]).await, header::ETAG).to_owned();
        let with_query = format!("{path}?fields=name");
        let cases: &[(Method, &str, Headers)] = &[
            (Method::GET, path, &[]),
            (Method::GET, path, &[(header::ACCEPT_ENCODING, "gzip, deflate, br")]),
            (Method::GET, path, &[(header::ACCEPT_ENCODING, "br;q=0.2, gzip")]),
            // No coding the client takes: tower-http's 406.
            (Method::GET, path, &[(header::ACCEPT_ENCODING, "identity;q=0, *;q=0")]),
            (Method::GET, path, &[(header::IF_NONE_MATCH, etag.as_str())]),
            (Method::GET, path, &[(header::IF_MODIFIED_SINCE, "Sun, 06 Dec 2099 08:00:00 GMT")]),
            (Method::GET, path, &[(header::ORIGIN, "https://evil.example")]),
            (Method::GET, &with_query, &[]),
            (Method::GET, "/api/v1/products/no-such-product", &[]),
            (Method::GET, "/api/v1/products/magnesium%2Dglycinate", &[]),
            (Method::HEAD, path, &[]),
        ];
        for (method, uri, headers) in cases {
            let request = || {
                let mut request = Request::builder().method(method).uri(*uri);
                for (name, value) in *headers {
                    request = request.header(name, *value);
                }
                request.body(Body::empty()).unwrap()
            };
            let through_lane = app.send(request()).await;
            let routed = routes.clone().oneshot(request()).await.expect("router answers");
            let routed_status = routed.status();
            let mut routed_headers = routed.headers().clone();
            let routed_body = routed.into_body().collect().await.expect("body").to_bytes();
            let case = format!("{method} {uri} {headers:?}");
            assert_eq!(through_lane.status, routed_status, "{case}");
            assert_eq!(through_lane.body, routed_body, "{case}");
            // axum's route writes `content-length` itself; on the wire hyper writes the
            // same for the lane's answer (its length is known).
            let mut lane_headers = through_lane.headers.clone();
            lane_headers.remove(header::CONTENT_LENGTH);
            routed_headers.remove(header::CONTENT_LENGTH);
            assert_eq!(lane_headers, routed_headers, "{case}");
        }
        app.stop().await;
    }
}

/// The SKU of the demo magnesium's first variant.
async fn first_sku(app: &TestApp) -> String {
    app.get("/api/v1/products/magnesium-glycinate").await.json()["variants"][0]["sku"]
        .as_str()
        .unwrap()
        .to_owned()
}
