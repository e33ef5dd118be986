//! Outbound HTTP for plugins that may use the network (payment adapters, notification
//! channels): only to hosts the manifest declares and the merchant granted.
//!
//! One reqwest blocking client (rustls with ring, web roots plus an optional extra CA,
//! HTTP/2 by ALPN) is shared by every call, so connections to a host are pooled.
//!
//! Private addresses: one shared client means one shared pool, and the pool must not mix
//! grants. That works because what a call may reach is decided by the name alone:
//! - an IP-literal URL can only pass the grant check through an IP-literal entry (entries
//!   are exact), so the merchant named that address: it is allowed, whatever it is, and
//!   hyper connects to it without a lookup;
//! - `localhost` can only reach the resolver when granted exactly: it resolves to
//!   loopback, without DNS;
//! - any other name goes through [`CheckedResolver`], which refuses it if any address is
//!   private or local, and hands the connector exactly the addresses it checked (so DNS
//!   cannot answer differently between the check and the connect).
//!
//! Redirects stay on the origin's scheme, host and port, so they never reach a name that
//! was not granted. Proxies from the environment are ignored: through a proxy, the target
//! would be resolved where it cannot be checked.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use reqwest::blocking::Client;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url, redirect};

use crate::bindings::http;
use crate::host::HttpGrant;
use crate::runtime::RuntimeConfig;

const MAX_HTTP_BODY: usize = 1024 * 1024;
const MAX_REDIRECTS: usize = 5;

/// Headers the client sets itself; a plugin's are dropped (HTTP/2 forbids the
/// connection-specific ones, and `host`/`content-length` must match what is sent).
const MANAGED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// The client every plugin call shares (one per runtime).
pub struct Outbound {
    client: Client,
}

impl Outbound {
    pub fn new(config: &RuntimeConfig) -> anyhow::Result<Outbound> {
        Outbound::build(config, HashMap::new())
    }

    /// `hosts` answers lookups of those names instead of DNS (tests only).
    fn build(
        config: &RuntimeConfig,
        hosts: HashMap<String, Vec<IpAddr>>,
    ) -> anyhow::Result<Outbound> {
        let mut builder = Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("olivine/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .redirect(redirect_policy())
            .dns_resolver(Arc::new(CheckedResolver { hosts }))
            // Fallback only: every request carries its grant's timeout.
            .timeout(config.http_timeout);
        if let Some(pem) = &config.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| anyhow::anyhow!("the extra CA bundle: {e}"))?;
            anyhow::ensure!(!certs.is_empty(), "the extra CA bundle has no certificate");
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        // reqwest's blocking client runs its own runtime thread and, in debug builds,
        // panics when built inside an async runtime (the kernel builds the Runtime in one):
        // build it on a plain thread.
        let client = std::thread::scope(|s| s.spawn(move || builder.build()).join())
            .map_err(|_| anyhow::anyhow!("building the HTTP client panicked"))?
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;
        Ok(Outbound { client })
    }

    /// Sends `request` for plugin `plugin_id` under its `grant`. Blocking: call it from a
    /// blocking thread, never an async worker.
    pub fn send(
        &self,
        plugin_id: &str,
        grant: &HttpGrant,
        request: http::Request,
    ) -> Result<http::Response, http::HttpError> {
        let failed = |m: String| http::HttpError::Failed(m);
        let url = Url::parse(&request.url).map_err(|e| failed(format!("bad URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(failed(format!(
                "only http:// and https:// URLs are supported, not {}://",
                url.scheme()
            )));
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(failed("no host in the URL".to_owned()));
        };
        if !grant.allows(host, port) {
            tracing::warn!(plugin = plugin_id, host = %host, port, "denied an HTTP request to a host that was not granted");
            return Err(http::HttpError::Denied(format!(
                "{host}:{port} is not among the hosts granted to this plugin"
            )));
        }

        let method = request.method.to_ascii_uppercase();
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| failed(format!("bad method `{}`", request.method)))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| failed(format!("bad header name `{name}`")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| failed(format!("bad value of header `{name}`")))?;
            if !MANAGED_HEADERS.contains(&name.as_str()) {
                headers.append(name, value);
            }
        }
        if request.body.len() > MAX_HTTP_BODY {
            return Err(failed("request body larger than 1 MiB".to_owned()));
        }

        let mut response = self
            .client
            .request(method, url)
            .headers(headers)
            .body(request.body)
            .timeout(grant.timeout)
            .send()
            .map_err(|e| request_error(plugin_id, &e))?;

        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let too_large = || failed("response larger than 1 MiB".to_owned());
        if response
            .content_length()
            .is_some_and(|n| n > MAX_HTTP_BODY as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        (&mut response)
            .take(MAX_HTTP_BODY as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| body_error(&e))?;
        if body.len() > MAX_HTTP_BODY {
            return Err(too_large());
        }
        Ok(http::Response {
            status,
            headers,
            body,
        })
    }
}

/// A request the policy refuses; becomes `HttpError::Denied`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

#[derive(Debug, thiserror::Error)]
#[error("more than {MAX_REDIRECTS} redirects")]
struct TooManyRedirects;

fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let Some(origin) = attempt.previous().first() else {
            return attempt.stop();
        };
        let next = attempt.url();
        let same_origin = next.scheme() == origin.scheme()
            && next.host_str() == origin.host_str()
            && next.port_or_known_default() == origin.port_or_known_default();
        if !same_origin {
            let host = match (next.host_str(), next.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (host, None) => host.unwrap_or_default().to_owned(),
                (None, Some(_)) => String::new(),
            };
            return attempt.error(Refused(format!("redirect to {host} refused")));
        }
        // `previous` holds the original request and every redirect followed so far.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(TooManyRedirects);
        }
        attempt.follow()
    })
}

/// Resolves names for the shared client and refuses those with a private or local
/// address (see the module's doc). IP literals never get here.
struct CheckedResolver {
    /// Fixed answers instead of DNS; empty outside tests.
    hosts: HashMap<String, Vec<IpAddr>>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        if host == "localhost" {
            let loopback = [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ];
            let addrs: Addrs = Box::new(loopback.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            return Box::pin(std::future::ready(Ok(addrs)));
        }
        if let Some(ips) = self.hosts.get(&host) {
            let addrs = ips.iter().map(|&ip| SocketAddr::new(ip, 0)).collect();
            return Box::pin(std::future::ready(checked(&host, addrs)));
        }
        Box::pin(async move {
            let lookup = host.clone();
            // getaddrinfo blocks: keep it off the client's runtime thread.
            let addrs = tokio::task::spawn_blocking(move || {
                (lookup.as_str(), 0)
                    .to_socket_addrs()
                    .map(|addrs| addrs.collect::<Vec<_>>())
            })
            .await??;
            checked(&host, addrs)
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn checked(host: &str, addrs: Vec<SocketAddr>) -> Result<Addrs, BoxError> {
    if addrs.is_empty() {
        return Err(format!("no address for {host}").into());
    }
    if let Some(addr) = addrs.iter().find(|a| is_restricted(a.ip())) {
        return Err(Box::new(Refused(format!(
            "{host} resolves to {}, a private or local address",
            addr.ip()
        ))));
    }
    Ok(Box::new(addrs.into_iter()))
}

/// Whether `ip` is an address a plugin may reach only when the merchant granted it as an
/// IP literal: loopback, private, link-local, CGNAT, unique-local, unspecified,
/// multicast, broadcast/reserved, and IPv4-mapped or NAT64 forms of those.
fn is_restricted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 0 // "this network", 0.0.0.0 included
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && (b & 0xc0) == 64) // CGNAT 100.64.0.0/10
                || v4.is_multicast()
                || a >= 240 // reserved 240.0.0.0/4 and the broadcast address
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_restricted(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return is_restricted(IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15])));
            }
            v6.is_unspecified()
                || v6.is_loopback()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // deprecated site-local fec0::/10
                || v6.is_multicast()
        }
    }
}

/// The first error of type `E` in `err`'s chain.
fn find<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// The innermost message of `err`'s chain: short, and without the URL (which may carry
/// secrets in its query).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

fn request_error(plugin_id: &str, err: &reqwest::Error) -> http::HttpError {
    if let Some(Refused(reason)) = find::<Refused>(err) {
        tracing::warn!(plugin = plugin_id, "denied an HTTP request: {reason}");
        return http::HttpError::Denied(reason.clone());
    }
    if err.is_timeout() {
        return http::HttpError::Timeout;
    }
    if let Some(too_many) = find::<TooManyRedirects>(err) {
        return http::HttpError::Failed(too_many.to_string());
    }
    let what = if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    http::HttpError::Failed(format!("{what}: {}", root_cause(err)))
}

fn body_error(err: &std::io::Error) -> http::HttpError {
    let timed_out = err.kind() == std::io::ErrorKind::TimedOut
        || err
            .get_ref()
            .and_then(|e| e.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout);
    if timed_out {
        http::HttpError::Timeout
    } else {
        http::HttpError::Failed(format!("reading the response failed: {}", root_cause(err)))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use tokio_rustls::rustls;

    use super::*;

    /// A local server: counts the connections it accepts; dropping it stops it.
    struct Server {
        port: u16,
        connections: Arc<AtomicUsize>,
        _runtime: tokio::runtime::Runtime,
    }

    impl Server {
        fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Server {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind");
            let port = listener.local_addr().expect("address").port();
            let connections = Arc::new(AtomicUsize::new(0));
            let counter = connections.clone();
            runtime.spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(req, port));
                        let server = auto::Builder::new(TokioExecutor::new());
                        match tls {
                            Some(config) => {
                                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    let _ = server
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                }
                            }
                            None => {
                                let _ =
                                    server.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    });
                }
            });
            Server {
                port,
                connections,
                _runtime: runtime,
            }
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    async fn handle(
        req: hyper::Request<Incoming>,
        port: u16,
    ) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
        let reply = |status: u16, body: Vec<u8>| {
            hyper::Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(body)))
                .expect("response")
        };
        let redirect = |to: String| {
            hyper::Response::builder()
                .status(302)
                .header("location", to)
                .body(Full::new(Bytes::new()))
                .expect("response")
        };
        Ok(match req.uri().path() {
            "/version" => reply(200, format!("{:?}", req.version()).into_bytes()),
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                reply(200, b"late".to_vec())
            }
            "/big" => reply(200, vec![b'x'; MAX_HTTP_BODY + 1]),
            "/exact" => reply(200, vec![b'x'; MAX_HTTP_BODY]),
            "/echo" => {
                let method = req.method().to_string();
                let echo = req.headers().get("x-echo").cloned();
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let mut response = reply(200, body.to_vec());
                let headers = response.headers_mut();
                headers.insert("x-method", HeaderValue::from_str(&method).expect("method"));
                if let Some(echo) = echo {
                    headers.insert("x-echo", echo);
                }
                response
            }
            "/headers" => {
                let mut response = reply(200, Vec::new());
                let headers = response.headers_mut();
                headers.append("set-cookie", HeaderValue::from_static("a=1"));
                headers.append("set-cookie", HeaderValue::from_static("b=2"));
                headers.append("X-Mixed-Case", HeaderValue::from_static("v"));
                response
            }
            "/to-same" => redirect("/version".to_owned()),
            "/to-other" => redirect(format!("http://localhost:{port}/version")),
            "/loop" => redirect("/loop".to_owned()),
            _ => reply(404, Vec::new()),
        })
    }

    /// A CA and a server config whose certificate it signed, for `localhost` and
    /// 127.0.0.1; returns the CA's PEM too.
    fn tls_server() -> (Arc<rustls::ServerConfig>, String) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Olivine test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");

        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca).expect("certificate");

        // The provider reqwest uses here too (deprecated only for lacking post-quantum
        // key exchange).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key.into())
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        (Arc::new(config), ca.pem())
    }

    fn outbound_trusting(ca_pem: &str) -> Outbound {
        Outbound::new(&RuntimeConfig {
            extra_ca_pem: Some(ca_pem.as_bytes().to_vec()),
            ..RuntimeConfig::default()
        })
        .expect("outbound")
    }

    fn grant(hosts: &[String]) -> HttpGrant {
        HttpGrant {
            hosts: hosts.to_vec(),
            timeout: Duration::from_secs(5),
        }
    }

    fn get(url: &str) -> http::Request {
        http::Request {
            method: "GET".to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn text(response: &http::Response) -> &str {
        std::str::from_utf8(&response.body).expect("utf-8 body")
    }

    #[test]
    fn plain_http_with_an_ip_literal_grant() {
        let server = Server::start(None);
        let outbound = Outbound::new(&RuntimeConfig::default()).expect("outbound");
        let grant = grant(&[format!("127.0.0.1:{}", server.port)]);
        let url = format!("http://127.0.0.1:{}/version", server.port);
        let response = outbound.send("p", &grant, get(&url)).expect("response");
        assert_eq!(response.status, 200);
        assert_eq!(text(&response), "HTTP/1.1");
    }

    #[test]
    fn https_with_the_extra_ca_speaks_http2() {
        let (config, ca) = tls_server();
        let server = Server::start(Some(config));
        let outbound = outbound_trusting(&ca);
        let port = server.port;
        let grant = grant(&[format!("localhost:{port}"), format!("127.0.0.1:{port}")]);
        for host in ["localhost", "127.0.0.1"] {
            let url = format!("https://{host}:{port}/version");
            let response = outbound.send("p", &grant, get(&url)).expect("response");
            assert_eq!(response.status, 200);
            assert_eq!(text(&response), "HTTP/2.0", "via {host}");
        }
    }

    #[test]
    fn https_from_an_unknown_ca_fails() {
        let (config, _ca) = tls_server();
        let server = Server::start(Some(config));
        // Only the web roots: the test CA is unknown.
        let outbound = Outbound::new(&RuntimeConfig::default()).expect("outbound");
        let grant = grant(&[format!("localhost:{}", server.port)]);
        let url = format!("https://localhost:{}/version", server.port);
        match outbound.send("p", &grant, get(&url)) {
            Err(http::HttpError::Failed(message)) => {
                assert!(message.contains("certificate"), "{message}")
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn an_invalid_extra_ca_bundle_is_an_error() {
        let config = RuntimeConfig {
            extra_ca_pem: Some(b"not a certificate".to_vec()),
            ..RuntimeConfig::default()
        };
        assert!(Outbound::new(&config).is_err());
    }

    #[test]
    fn connections_are_reused() {
        let (config, ca) = tls_server();
        let https = Server::start(Some(config));
        let plain = Server::start(None);
        let outbound = outbound_trusting(&ca);
        for (scheme, server) in [("https", &https), ("http", &plain)] {
            let grant = grant(&[format!("127.0.0.1:{}", server.port)]);
            let url = format!("{scheme}://127.0.0.1:{}/version", server.port);
            for _ in 0..3 {
                outbound.send("p", &grant, get(&url)).expect("response");
            }
            assert_eq!(server.connections(), 1, "{scheme}");
        }
    }

    #[test]
    fn the_grants_timeout_applies() {
        let server = Server::start(None);
        let outbound = Outbound::new(&RuntimeConfig::default()).expect("outbound");
        let grant = HttpGrant {
            hosts: vec![format!("127.0.0.1:{}", server.port)],
            timeout: Duration::from_millis(200),
        };
        let url = format!("http://127.0.0.1:{}/slow", server.port);
        let started = Instant::now();
        let result = outbound.send("p", &grant, get(&url));
        assert!(
            matches!(result, Err(http::HttpError::Timeout)),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn bodies_are_capped_at_1_mib() {
        let server = Server::start(None);
        let outbound = Outbound::new(&RuntimeConfig::default()).expect("outbound");
        let grant = grant(&[format!("127.0.0.1:{}", server.port)]);
        let base = format!("http://127.0.0.1:{}", server.port);

        let exact = outbound
            .send("p", &grant, get(&format!("{base}/exact")))
            .expect("1 MiB is allowed");
        assert_eq!(exact.body.len(), MAX_HTTP_BODY);
        match outbound.send("p", &grant, get(&format!("{base}/big"))) {
            Err(http::HttpError::Failed(m)) => assert_eq!(m, "response larger than 1 MiB"),
            other => panic!("expected a failure, got {other:?}"),
        }

        let mut request = get(&format!("{base}/echo"));
        request.method = "POST".to_owned();
        request.body = vec![0; MAX_HTTP_BODY + 1];
        match outbound.send("p", &grant, request) {
            Err(http::HttpError::Failed(m)) => assert_eq!(m, "request body larger than 1 MiB"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn hosts_not_granted_are_denied() {
        let server = Server::start(None);
        let outbound = Outbound::new(&RuntimeConfig::default()).expect("outbound");
        // The same host on another port, and another host: neither is looked up.
        let grant = grant(&["127.0.0.1:1".to_owned(), "api.example.com".to_owned()]);
        let url = format!("http://127.0.0.1:{}/version", server.port);
        match outbound.send("p", &grant, get(&url)) {
            Err(http::HttpError::Denied(m)) => {
                assert!(m.contains(&format!("127.0.0.1:{}", server.port)), "{m}")
            }
            other => panic!("expected a denial, got {other:?}"),
        }
        match outbound.send("p", &grant, get("https://evil.example.com/")) {
            Err(http::HttpError::Denied(m)) => assert!(m.contains("evil.example.com:443"), "{m}"),
            other => panic!("expected a denial, got {other:?}"),
        }
        assert_eq!(server.connections(), 0);
    }

    #[test]
    fn redirects_stay_on_the_granted_host() {
        let server = Server::start(None);
        let outbound = Outbound::new(&RuntimeConfig::default()).expect("outbound");
        // `localhost` is granted too, yet a redirect there leaves the origin.
        let port = server.port;
        let grant = grant(&[format!("127.0.0.1:{port}"), format!("localhost:{port}")]);
        let base = format!("http://127.0.0.1:{port}");

        let same = outbound
            .send("p", &grant, get(&format!("{base}/to-same")))
            .expect("followed");
        assert_eq!((same.status, text(&same)), (200, "HTTP/1.1"));
        match outbound.send("p", &grant, get(&format!("{base}/to-other"))) {
            Err(http::HttpError::Denied(m)) => {
                assert_eq!(m, format!("redirect to localhost:{port} refused"))
            }
            other => panic!("expected a denial, got {other:?}"),
        }
        match outbound.send("p", &grant, get(&format!("{base}/loop"))) {
            Err(http::HttpError::Failed(m)) => assert_eq!(m, "more than 5 redirects"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_granted_name_with_a_private_address_is_denied() {
        let server = Server::start(None);
        let hosts = HashMap::from([(
            "localtest".to_owned(),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        )]);
        let outbound = Outbound::build(&RuntimeConfig::default(), hosts).expect("outbound");
        let port = server.port;
        let grant = grant(&[format!("localtest:{port}"), format!("127.0.0.1:{port}")]);
        match outbound.send(
            "p",
            &grant,
            get(&format!("http://localtest:{port}/version")),
        ) {
            Err(http::HttpError::Denied(m)) => {
                assert_eq!(
                    m,
                    "localtest resolves to 127.0.0.1, a private or local address"
                )
            }
            other => panic!("expected a denial, got {other:?}"),
        }
        assert_eq!(server.connections(), 0);
        // The same address, granted as a literal, is the merchant's choice.
        let url = format!("http://127.0.0.1:{port}/version");
        assert!(outbound.send("p", &grant, get(&url)).is_ok());
    }

    #[test]
    fn private_and_local_addresses_are_restricted() {
        let restricted = [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ];
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ];
        for ip in restricted {
            let parsed = ip.parse().expect(ip);
            assert!(is_restricted(parsed), "{ip} should be restricted");
        }
        for ip in public {
            let parsed = ip.parse().expect(ip);
            assert!(!is_restricted(parsed), "{ip} should be allowed");
        }
    }

    #[test]
    fn response_headers_are_lower_case_and_repeated() {
        let server = Server::start(None);
        let outbound = Outbound::new(&RuntimeConfig::default()).expect("outbound");
        let grant = grant(&[format!("127.0.0.1:{}", server.port)]);
        let url = format!("http://127.0.0.1:{}/headers", server.port);
        let response = outbound.send("p", &grant, get(&url)).expect("response");
        let has = |name: &str, value: &str| {
            response
                .headers
                .iter()
                .any(|(n, v)| n == name && v == value)
        };
        assert!(
            has("set-cookie", "a=1") && has("set-cookie", "b=2"),
            "{:?}",
            response.headers
        );
        assert!(has("x-mixed-case", "v"), "{:?}", response.headers);
    }

    #[test]
    fn methods_and_headers_are_checked() {
        let server = Server::start(None);
        let outbound = Outbound::new(&RuntimeConfig::default()).expect("outbound");
        let grant = grant(&[format!("127.0.0.1:{}", server.port)]);
        let url = format!("http://127.0.0.1:{}/echo", server.port);
        let request = |method: &str, headers: &[(&str, &str)]| http::Request {
            method: method.to_owned(),
            url: url.clone(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: b"hello".to_vec(),
        };

        for method in ["post", "PURGE"] {
            let response = outbound
                .send(
                    "p",
                    &grant,
                    request(method, &[("X-Echo", "yes"), ("Host", "x")]),
                )
                .expect("response");
            let header = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(
                header("x-method"),
                Some(method.to_ascii_uppercase().as_str())
            );
            assert_eq!(header("x-echo"), Some("yes"));
            assert_eq!(text(&response), "hello");
        }
        let bad = [
            request("GE T", &[]),
            request("", &[]),
            request("GET", &[("bad name", "v")]),
            request("GET", &[("x-ok", "a\r\nb")]),
        ];
        for request in bad {
            let result = outbound.send("p", &grant, request);
            assert!(
                matches!(result, Err(http::HttpError::Failed(_))),
                "{result:?}"
            );
        }
        for url in ["ftp://127.0.0.1/", "not a url", "http://:80/"] {
            let result = outbound.send("p", &grant, get(url));
            assert!(
                matches!(result, Err(http::HttpError::Failed(_))),
                "{url}: {result:?}"
            );
        }
    }
}
