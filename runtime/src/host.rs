//! What a plugin instance can reach: its store data, the host imports (log, settings,
//! http) and a WASI environment that grants nothing (no files, sockets, environment or
//! arguments; clocks fixed at zero and a fixed random seed, so pure plugins stay
//! deterministic).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{http, log, settings};

/// Hosts a plugin may call: those its manifest declares *and* the merchant granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpGrant {
    pub hosts: Vec<String>,
    pub timeout: Duration,
}

impl HttpGrant {
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.hosts
            .iter()
            .any(|granted| granted == host || *granted == format!("{host}:{port}"))
    }
}

/// Log lines a single call may write; more are dropped (and counted).
const MAX_LOG_LINES: u32 = 100;
const MAX_LOG_LINE: usize = 1024;
const MAX_HTTP_BODY: usize = 1024 * 1024;

pub struct HostState {
    pub plugin_id: Arc<str>,
    pub settings: Arc<BTreeMap<String, String>>,
    pub http: Option<Arc<HttpGrant>>,
    pub limits: CallLimiter,
    pub log_lines: u32,
    pub logs_dropped: u32,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub fn new(
        plugin_id: Arc<str>,
        settings: Arc<BTreeMap<String, String>>,
        http: Option<Arc<HttpGrant>>,
        memory_bytes: usize,
    ) -> HostState {
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .insecure_random_seed(0)
            .secure_random(ZeroRandom)
            .insecure_random(ZeroRandom)
            .build();
        HostState {
            plugin_id,
            settings,
            http,
            limits: CallLimiter {
                memory_bytes,
                memory_exceeded: false,
            },
            log_lines: 0,
            logs_dropped: 0,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and remembers that the cap was hit, so a guest that then traps
/// is reported as "memory exceeded" rather than as a generic trap.
pub struct CallLimiter {
    pub memory_bytes: usize,
    pub memory_exceeded: bool,
}

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct FixedClock;

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// "Random" bytes that are all zero: plugins get no entropy, so they stay deterministic.
struct ZeroRandom;

impl rand::TryRng for ZeroRandom {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(0)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(0);
        Ok(())
    }
}

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String) {
        if self.log_lines >= MAX_LOG_LINES {
            self.logs_dropped = self.logs_dropped.saturating_add(1);
            return;
        }
        self.log_lines += 1;
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = &*self.plugin_id;
        match level {
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl settings::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.settings.get(&key).cloned()
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl http::Host for HostState {
    fn send(&mut self, request: http::Request) -> Result<http::Response, http::HttpError> {
        let Some(grant) = self.http.clone() else {
            return Err(http::HttpError::Denied(
                "this plugin has no network access".to_owned(),
            ));
        };
        let target = parse_http_url(&request.url).map_err(http::HttpError::Failed)?;
        if !grant.allows(&target.host, target.port) {
            tracing::warn!(plugin = &*self.plugin_id, host = %target.host, "denied an HTTP request to a host that was not granted");
            return Err(http::HttpError::Denied(format!(
                "{}:{} is not among the hosts granted to this plugin",
                target.host, target.port
            )));
        }
        send_http(&target, &request, grant.timeout)
    }
}

struct Target {
    host: String,
    port: u16,
    path: String,
}

fn parse_http_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "only http:// URLs are supported by this kernel".to_owned())?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("bad port in `{url}`"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("no host in `{url}`"));
    }
    Ok(Target {
        host: host.to_ascii_lowercase(),
        port,
        path: path.to_owned(),
    })
}

/// A small blocking HTTP/1.1 client: one request per connection, bounded by a timeout
/// and a response size cap. Calls of network-using worlds run on blocking threads.
fn send_http(
    target: &Target,
    request: &http::Request,
    timeout: Duration,
) -> Result<http::Response, http::HttpError> {
    let method = request.method.to_ascii_uppercase();
    if !method.bytes().all(|b| b.is_ascii_uppercase()) || method.is_empty() {
        return Err(http::HttpError::Failed(format!("bad method `{method}`")));
    }
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| http::HttpError::Failed(format!("cannot resolve {}: {e}", target.host)))?
        .next()
        .ok_or_else(|| http::HttpError::Failed(format!("no address for {}", target.host)))?;
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => http::HttpError::Timeout,
        _ => http::HttpError::Failed(e.to_string()),
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        target.path,
        target.host,
        target.port,
        request.body.len()
    );
    for (name, value) in &request.headers {
        if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
            return Err(http::HttpError::Failed("invalid header".to_owned()));
        }
        if name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("connection")
        {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(&request.body).map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take((MAX_HTTP_BODY + 64 * 1024) as u64)
        .read_to_end(&mut raw)
        .map_err(io)?;
    parse_response(&raw)
        .ok_or_else(|| http::HttpError::Failed("malformed HTTP response".to_owned()))
}

fn parse_response(raw: &[u8]) -> Option<http::Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
        headers.push((name, value));
    }
    let body = &raw[split + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some(http::Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

impl crate::bindings::types::Host for HostState {}
impl crate::bindings::payment::Host for HostState {}
impl crate::bindings::loyalty_types::Host for HostState {}
