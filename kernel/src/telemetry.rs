//! Logs (tracing) and metrics (Prometheus text format at `/metrics`).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The process-wide metrics recorder (installed once; tests start many kernels).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                // Every `…_duration_seconds` is a histogram with buckets (not a summary),
                // so dashboards can take quantiles across nodes.
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".to_owned()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .expect("bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            handle
        })
        .clone()
}

/// Counts requests and records their latency per route template (not per raw path, so
/// the number of series stays bounded).
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map(MatchedPath::as_str);
    record_http(&method, route, response.status(), started);
    response
}

/// Counts one request of `method` on `route` (the matched route template; `None`:
/// `unmatched`) answered with `status`, and its latency since `started`.
pub fn record_http(method: &Method, route: Option<&str>, status: StatusCode, started: Instant) {
    let route = route.unwrap_or("unmatched");
    http_series(method, route, status.as_u16(), |series| {
        series.requests.increment(1);
        series.duration.record(started.elapsed().as_secs_f64());
    });
}

/// The request metrics of one method, route and status, registered once: looking a
/// series up by its labels in the recorder builds and hashes its key (owned label
/// strings) on every request, several times what counting costs.
struct HttpSeries {
    method: Method,
    route: Box<str>,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

#[derive(Default)]
struct HttpSeriesMap {
    hasher: std::hash::RandomState,
    /// By the hash of (method, route, status); a bucket holds the series of that hash.
    series: RwLock<HashMap<u64, Vec<HttpSeries>>>,
}

/// Calls `f` with the series of (`method`, `route`, `status`), registering it the first
/// time.
fn http_series(method: &Method, route: &str, status: u16, f: impl FnOnce(&HttpSeries)) {
    static MAP: OnceLock<HttpSeriesMap> = OnceLock::new();
    let map = MAP.get_or_init(HttpSeriesMap::default);
    let hash = map.hasher.hash_one((method.as_str(), route, status));
    let is = |s: &HttpSeries| s.status == status && s.method == method && &*s.route == route;
    {
        // A poisoned lock only means a panic elsewhere mid-insert: the map is usable.
        let series = map.series.read().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = series.get(&hash).and_then(|b| b.iter().find(|s| is(s))) {
            f(found);
            return;
        }
    }
    let mut series = map.series.write().unwrap_or_else(|e| e.into_inner());
    let bucket = series.entry(hash).or_default();
    if !bucket.iter().any(is) {
        let (method_label, route_label) = (method.as_str().to_owned(), route.to_owned());
        bucket.push(HttpSeries {
            requests: metrics::counter!("olivine_http_requests_total",
                "method" => method_label.clone(), "route" => route_label.clone(), "status" => status.to_string()),
            duration: metrics::histogram!("olivine_http_request_duration_seconds",
                "method" => method_label, "route" => route_label),
            method: method.clone(),
            route: route.into(),
            status,
        });
    }
    if let Some(found) = bucket.iter().find(|s| is(s)) {
        f(found);
    }
}
