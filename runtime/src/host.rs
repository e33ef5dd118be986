//! What a plugin instance can reach: its store data, the host imports (log, settings,
//! http) and a WASI environment that grants nothing (no files, sockets, environment or
//! arguments; clocks fixed at zero and a fixed random seed, so pure plugins stay
//! deterministic).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{cache, http, log, settings};
use crate::cache::PluginCache;
use crate::outbound::Outbound;

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

pub struct HostState {
    pub plugin_id: Arc<str>,
    pub settings: Arc<BTreeMap<String, String>>,
    pub http: Option<Arc<HttpGrant>>,
    outbound: Arc<Outbound>,
    cache: Option<PluginCache>,
    pub limits: CallLimiter,
    pub log_lines: u32,
    pub logs_dropped: u32,
    wasi: WasiCtx,
    table: ResourceTable,
}

/// What a call's host state is made from.
pub struct HostAccess {
    pub plugin_id: Arc<str>,
    pub settings: Arc<BTreeMap<String, String>>,
    /// `Some` for worlds that talk to the network (see [`HostAccess::network`]).
    pub http: Option<Arc<HttpGrant>>,
    pub outbound: Arc<Outbound>,
    /// The plugin's cache, for worlds that import `cache`.
    pub cache: Option<PluginCache>,
    /// The world talks to the network (payment adapters, notification channels): its
    /// WASI clock is the real wall clock and its random source is real, because real
    /// protocols need them (a token's `iat`, a signature's nonce). Pure worlds get a clock
    /// fixed at zero and no entropy, so they stay deterministic.
    pub network: bool,
    pub memory_bytes: usize,
}

impl HostState {
    pub fn new(access: HostAccess) -> HostState {
        let HostAccess {
            plugin_id,
            settings,
            http,
            outbound,
            cache,
            network,
            memory_bytes,
        } = access;
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !network {
            wasi.wall_clock(FixedClock)
                .monotonic_clock(FixedClock)
                .insecure_random_seed(0)
                .secure_random(ZeroRandom)
                .insecure_random(ZeroRandom);
        }
        let wasi = wasi.build();
        HostState {
            plugin_id,
            settings,
            http,
            outbound,
            cache,
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
        self.outbound.send(&self.plugin_id, &grant, request)
    }
}

impl cache::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.cache.as_ref()?.get(&key)
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_seconds: u32) {
        if let Some(cache) = &self.cache {
            cache.set(key, value, ttl_seconds);
        }
    }

    fn delete(&mut self, key: String) {
        if let Some(cache) = &self.cache {
            cache.delete(&key);
        }
    }
}

impl crate::bindings::types::Host for HostState {}
impl crate::bindings::payment::Host for HostState {}
impl crate::bindings::loyalty_types::Host for HostState {}
impl crate::bindings::notification_types::Host for HostState {}
