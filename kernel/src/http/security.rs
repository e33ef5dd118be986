//! The security headers of every answer, and the inventory of the scripts the shop's
//! pages may run (PCI DSS 4.0, 6.4.3: every script on the payment page authorized, its
//! integrity checked; 11.6.1: changes to the page's security headers detected: the
//! tests assert them on every page, and browsers report violations to `/csp-reports`,
//! counted in `olivine_csp_violations_total`).
//!
//! HTML pages get a strict Content-Security-Policy: scripts only from the shop, each
//! pinned by its hash in `integrity` (and the page's processor origin on checkout, which
//! the card is sent to), no inline script or style, no plugins, no `<base>`, forms only
//! to the shop, and no framing by anyone (clickjacking). Every answer gets `nosniff`, a
//! referrer policy and a permissions policy that turns off what the shop does not use;
//! HSTS when the request came over HTTPS (through a proxy the kernel trusts).

use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::app::AppState;

/// A script a page may carry: what it is for, where it is served, its integrity hash.
pub struct Script {
    pub name: &'static str,
    pub purpose: &'static str,
    pub path: &'static str,
    pub body: &'static str,
    /// `sha256-<base64>`, the page's `integrity` attribute.
    pub integrity: String,
}

fn script(
    name: &'static str,
    purpose: &'static str,
    path: &'static str,
    body: &'static str,
) -> Script {
    let digest = Sha256::digest(body.as_bytes());
    Script {
        name,
        purpose,
        path,
        body,
        integrity: format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        ),
    }
}

/// Every script any page of the shop runs. A page that carries another fails its test.
pub fn scripts() -> &'static [Script] {
    static SCRIPTS: OnceLock<Vec<Script>> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        vec![
            script(
                "checkout",
                "the pages that take a card (the checkout, and a subscription's new card in the account): shows the checkout's total for the chosen country in place, and sends the card from the browser to the payment processor, posting only the token it answers",
                &super::assets::checkout_js().path,
                super::assets::checkout_js().body,
            ),
            script(
                "search",
                "every page: suggestions under the header's search box (from /api/v1/search/suggest), and on the results page a ticked filter sends the form at once",
                &super::assets::search_js().path,
                super::assets::search_js().body,
            ),
            script(
                "live",
                "the account's order page: updates the order's status in place (a WebSocket to /api/v1/live, same origin, with the session cookie), re-reading the page when told the order changed",
                &super::assets::live_js().path,
                super::assets::live_js().body,
            ),
            script(
                "header",
                "the catalog pages every visitor shares (home, categories, products, search): fills in the header's account link, cart count and recommendations question from /account/header",
                &super::assets::header_js().path,
                super::assets::header_js().body,
            ),
        ]
    })
}

pub fn checkout_script() -> &'static Script {
    &scripts()[0]
}

pub fn search_script() -> &'static Script {
    &scripts()[1]
}

pub fn live_script() -> &'static Script {
    &scripts()[2]
}

pub fn header_script() -> &'static Script {
    &scripts()[3]
}

/// Origins a page's CSP lets scripts and connections reach beside the shop: a handler
/// puts it into its response's extensions (the checkout: the processor's tokenization
/// origin).
#[derive(Clone, Debug, Default)]
pub struct ExtraOrigins(pub Vec<String>);

/// `scheme://host[:port]` of a URL, when it is http(s).
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty()
        || !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

/// Where browsers send reports of what the policy blocked.
pub const REPORT_PATH: &str = "/csp-reports";

/// The policy of an HTML page.
pub fn page_policy(extra: &[String]) -> String {
    let extra: String = extra.iter().map(|o| format!(" {o}")).collect();
    format!(
        "default-src 'self'; script-src 'self'{extra}; connect-src 'self'{extra}; \
         style-src 'self'; img-src 'self' data:; font-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
         report-uri {REPORT_PATH}; report-to csp"
    )
}

/// The policy of every answer that is not a page: it may load nothing and be framed by
/// nobody.
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// What the shop does not use, turned off for every page and whatever it embeds.
const PERMISSIONS_POLICY: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=(), interest-cohort=()";

/// Adds the security headers to every answer.
pub async fn headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let https = came_over_https(request.headers(), state.config.trust_forwarded_for);
    let mut response = next.run(request).await;
    add_headers(&mut response, https);
    response
}

const PERMISSIONS_POLICY_HEADER: HeaderName = HeaderName::from_static("permissions-policy");
const REPORTING_ENDPOINTS_HEADER: HeaderName = HeaderName::from_static("reporting-endpoints");

/// The security headers of an answer (`https`: the request came over HTTPS, see
/// [`came_over_https`]). Every value but a page's policy naming origins of its own is
/// made once, not per answer.
pub fn add_headers(response: &mut Response, https: bool) {
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let extra = if html {
        response
            .extensions_mut()
            .remove::<ExtraOrigins>()
            .unwrap_or_default()
    } else {
        ExtraOrigins::default()
    };
    let headers = response.headers_mut();
    let policy = if !html {
        Some(HeaderValue::from_static(API_POLICY))
    } else if extra.0.is_empty() {
        static PAGE: OnceLock<Option<HeaderValue>> = OnceLock::new();
        PAGE.get_or_init(|| HeaderValue::from_str(&page_policy(&[])).ok())
            .clone()
    } else {
        HeaderValue::from_str(&page_policy(&extra.0)).ok()
    };
    if let Some(value) = policy {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if html {
        headers.insert(
            REPORTING_ENDPOINTS_HEADER,
            HeaderValue::from_static("csp=\"/csp-reports\""),
        );
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A page may ask for less (the privacy request status page sends no referrer, its
    // URL being its secret): keep what the handler set.
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("strict-origin-when-cross-origin"));
    headers.insert(
        PERMISSIONS_POLICY_HEADER,
        HeaderValue::from_static(PERMISSIONS_POLICY),
    );
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
}

/// The request came over HTTPS to a proxy the kernel trusts (`OLIVINE_TRUST_FORWARDED_FOR`):
/// it said so in `X-Forwarded-Proto: https` or in the standard `Forwarded: proto=https`
/// (RFC 7239; the first hop's element, the one the client reached).
pub fn came_over_https(headers: &HeaderMap, trust_proxy: bool) -> bool {
    // Whatever a client claims counts for nothing without a proxy the kernel trusts.
    if !trust_proxy {
        return false;
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
    };
    let forwarded_proto = first("forwarded").and_then(|element| {
        element.split(';').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("proto")
                .then(|| value.trim().trim_matches('"'))
        })
    });
    first("x-forwarded-proto")
        .or(forwarded_proto)
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

/// `POST /csp-reports`: a browser's report of something the policy blocked (the older
/// `application/csp-report` body or the Reporting API's list). Counted by the directive
/// it broke, logged without the page's query string; always 204.
pub async fn report(body: Bytes) -> Response {
    let reports: Vec<serde_json::Value> = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(list)) => list.into_iter().map(|r| r["body"].clone()).collect(),
        Ok(single) => vec![single["csp-report"].clone()],
        Err(_) => Vec::new(),
    };
    for report in reports.iter().take(20) {
        let directive = report
            .get("effectiveDirective")
            .or_else(|| report.get("effective-directive"))
            .or_else(|| report.get("violated-directive"))
            .and_then(|d| d.as_str())
            .and_then(|d| d.split_whitespace().next())
            .filter(|d| d.len() <= 40 && d.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
            .unwrap_or("unknown")
            .to_owned();
        let page = report
            .get("documentURL")
            .or_else(|| report.get("document-uri"))
            .and_then(|d| d.as_str())
            .map(|d| {
                d.split('?')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect::<String>()
            })
            .unwrap_or_default();
        tracing::warn!(
            directive,
            page,
            "a page's Content-Security-Policy blocked something"
        );
        metrics::counter!("olivine_csp_violations_total", "directive" => directive).increment(1);
    }
    (StatusCode::NO_CONTENT, Body::empty()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_authority_only() {
        assert_eq!(
            origin_of("http://127.0.0.1:4242/v1/tokens").as_deref(),
            Some("http://127.0.0.1:4242")
        );
        assert_eq!(
            origin_of("https://pay.example/x?y").as_deref(),
            Some("https://pay.example")
        );
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("https://a b/"), None);
        assert_eq!(origin_of("https://x'; script-src *"), None);
    }

    #[test]
    fn https_is_what_a_trusted_proxy_says() {
        let with = |name: &'static str, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(value));
            headers
        };
        assert!(came_over_https(&with("x-forwarded-proto", "https"), true));
        assert!(came_over_https(
            &with("forwarded", "for=192.0.2.60;proto=https;by=203.0.113.43"),
            true
        ));
        assert!(came_over_https(
            &with("forwarded", "Proto=\"HTTPS\", proto=http"),
            true
        ));
        assert!(!came_over_https(
            &with("forwarded", "for=192.0.2.60;proto=http"),
            true
        ));
        assert!(!came_over_https(
            &with("forwarded", "proto=http, proto=https"),
            true
        ));
        assert!(!came_over_https(&with("forwarded", "for=192.0.2.60"), true));
        // Untrusted: whatever the client claims.
        assert!(!came_over_https(&with("forwarded", "proto=https"), false));
        assert!(!came_over_https(&with("x-forwarded-proto", "https"), false));
    }

    #[test]
    fn the_inventory_pins_each_script_by_its_content() {
        let script = checkout_script();
        assert!(script.integrity.starts_with("sha256-"));
        assert_eq!(script.path, super::super::assets::checkout_js().path);
        assert!(script.path.starts_with("/assets/checkout."));
        let digest = Sha256::digest(script.body.as_bytes());
        assert!(
            script
                .integrity
                .ends_with(&base64::engine::general_purpose::STANDARD.encode(digest))
        );
    }
}
