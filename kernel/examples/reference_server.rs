//! The reference beside Olivine in `bench/load.sh`: a bare axum handler that answers one
//! path with bytes and headers read from files (what Olivine answered for the product
//! JSON, fetched with curl), on the same runtime as `olivine serve` (tokio's multi-thread
//! runtime with a worker per core, `into_make_service_with_connect_info`), with no
//! middleware at all. The throughput it reaches on the machine is the limit Olivine's
//! answer is measured against.
//!
//! ```sh
//! curl -s -D headers.txt -o body.bin http://127.0.0.1:18090/api/v1/products/magnesium-glycinate
//! reference_server 127.0.0.1:18091 /api/v1/products/magnesium-glycinate body.bin headers.txt
//! ```
//!
//! The headers file is curl's `-D` dump (its status line is skipped); `date`,
//! `content-length`, `connection` and `transfer-encoding` are left to hyper, as for Olivine.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::routing::get;
use bytes::Bytes;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, path, body, headers] = args.as_slice() else {
        bail!("usage: reference_server ADDR PATH BODY_FILE HEADERS_FILE");
    };
    let addr: SocketAddr = addr.parse().context("ADDR")?;
    let body = Bytes::from(std::fs::read(body).with_context(|| format!("reading {body}"))?);
    let headers = read_headers(
        &std::fs::read_to_string(headers).with_context(|| format!("reading {headers}"))?,
    )?;
    // The same runtime as `olivine serve` (src/main.rs): `Runtime::new()`.
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async move {
        let app = Router::new().route(
            path,
            get(move || {
                let (headers, body) = (headers.clone(), body.clone());
                async move { (headers, body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        eprintln!("reference server at http://{addr}{path}");
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .context("serving")
    })
}

/// The headers of a curl `-D` dump, without its status line and the ones hyper writes.
fn read_headers(dump: &str) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for line in dump.lines().skip(1) {
        let line = line.trim_end_matches('\r');
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("header name in {line:?}"))?;
        if ["date", "content-length", "connection", "transfer-encoding"].contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("header value in {line:?}"))?;
        headers.append(name, value);
    }
    Ok(headers)
}
