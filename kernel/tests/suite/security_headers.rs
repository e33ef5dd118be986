//! The security headers of every answer: a strict Content-Security-Policy on every page
//! (no inline script, no framing, forms and `<base>` locked down), `nosniff`, the
//! referrer and permissions policies, HSTS only over HTTPS from a trusted proxy, and the
//! violation reports browsers send, counted. (The checkout's script inventory is tested
//! with the checkout, in storefront_checkout.rs.)

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};

/// Asserts the headers every HTML page carries.
#[track_caller]
pub fn assert_page_headers(path: &str, r: &TestResponse) {
    let header = |name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path}: no {name}"))
            .to_owned()
    };
    let csp = header("content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "report-uri /csp-reports",
        "report-to csp",
    ] {
        assert!(
            csp.contains(directive),
            "{path}: {directive} missing from {csp}"
        );
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{path}: {csp}"
    );
    assert_eq!(header("x-frame-options"), "DENY", "{path}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(
        header("referrer-policy"),
        "strict-origin-when-cross-origin",
        "{path}"
    );
    let permissions = header("permissions-policy");
    for feature in ["camera=()", "microphone=()", "geolocation=()", "payment=()"] {
        assert!(permissions.contains(feature), "{path}: {permissions}");
    }
    assert!(
        header("reporting-endpoints").contains("/csp-reports"),
        "{path}"
    );
    // No page may run a script inline: every `<script` names a file of the inventory.
    let html = r.text();
    for (at, _) in html.match_indices("<script") {
        let tag = &html[at..at + html[at..].find('>').unwrap_or(0)];
        assert!(
            tag.contains(" src=\"/assets/"),
            "{path}: an inline script: {tag}"
        );
    }
}

both_backends! {
    async fn every_page_and_answer_carries_the_security_headers(backend: Backend) {
        let app = TestApp::with_demo(backend).await;
        app.settle().await;
        for path in ["/", "/c/supplements", "/p/magnesium-glycinate", "/cart", "/account/sign-in",
            "/account/register", "/no-such-page", "/checkout/confirmation/OL-NOPE"] {
            let r = app.get(path).await;
            assert!(r.headers.get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/html")),
                "{path}: {:?}", r.headers);
            assert_page_headers(path, &r);
            assert!(r.headers.get("strict-transport-security").is_none(), "{path}: HSTS over plain HTTP");
        }
        // JSON answers and assets: nosniff, and a policy that allows nothing.
        for path in ["/api/v1/products", "/api/v1/openapi.json", "/assets/site.css", "/healthz"] {
            let r = app.get(path).await;
            assert_eq!(r.headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(r.headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'", "{path}");
        }
        app.stop().await;
    }

    async fn hsts_only_over_https_through_a_trusted_proxy(backend: Backend) {
        let request = || Request::builder().uri("/").header("x-forwarded-proto", "https").body(Body::empty()).unwrap();
        let untrusted = TestApp::start(backend).await;
        let r = untrusted.send(request()).await;
        assert!(r.headers.get("strict-transport-security").is_none(), "a client's own header is not believed");
        untrusted.stop().await;
        let behind_proxy = TestApp::start_with(backend, |c| c.trust_forwarded_for = true).await;
        let r = behind_proxy.send(request()).await;
        assert_eq!(r.headers["strict-transport-security"], "max-age=31536000; includeSubDomains");
        let r = behind_proxy.get("/").await;
        assert!(r.headers.get("strict-transport-security").is_none(), "plain HTTP to the proxy's back");
        behind_proxy.stop().await;
    }

    async fn violation_reports_are_counted(backend: Backend) {
        let app = TestApp::start(backend).await;
        let series = r#"olivine_csp_violations_total{directive="script-src-elem"}"#;
        let before = app.metric(series).await;
        // The older report format, and the Reporting API's.
        let old = r#"{"csp-report": {"document-uri": "http://shop.example/checkout?x=1", "violated-directive": "script-src-elem", "blocked-uri": "https://evil.example/skim.js"}}"#;
        let r = app.request(Method::POST, "/csp-reports", None, Some(Body::from(old)), Some("application/csp-report")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let new = r#"[{"type": "csp-violation", "body": {"documentURL": "http://shop.example/checkout", "effectiveDirective": "script-src-elem", "blockedURL": "inline"}}]"#;
        let r = app.request(Method::POST, "/csp-reports", None, Some(Body::from(new)), Some("application/reports+json")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(app.metric(series).await >= before + 2.0);
        // Garbage is no error.
        let r = app.request(Method::POST, "/csp-reports", None, Some(Body::from("not json")), Some("text/plain")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        app.stop().await;
    }
}
