//! The engine, loading (compile with an on-disk cache, world and ABI checks,
//! pre-instantiation) and sandboxed calls.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use crate::bindings::{
    adapter, adapter_v0_2, adapter_v0_3, loyalty, loyalty_types, loyalty_v0_2, notification,
    notification_types, notification_v0_2, payment, pricing, taxonomy, types,
};
use crate::cache::HostCache;
use crate::host::{HostAccess, HostState, HttpGrant};
use crate::manifest::{Manifest, World};
use crate::outbound::Outbound;

/// Tunables of the host. Defaults follow Shopify Functions' budget (11M instructions)
/// and scale it with cart size, so a large cart is not starved.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    pub base_fuel: u64,
    pub fuel_per_line: u64,
    pub default_memory_mib: u64,
    /// Caps on what a call may return.
    pub max_output_bytes: usize,
    pub max_output_items: usize,
    /// Cap on what a call is given: cart lines, products, product variants.
    pub max_input_items: usize,
    pub http_timeout: Duration,
    /// Extra trusted CA certificates (PEM) for outbound HTTPS, besides the web roots.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            base_fuel: 11_000_000,
            fuel_per_line: 50_000,
            default_memory_mib: 10,
            max_output_bytes: 256 * 1024,
            max_output_items: 10_000,
            max_input_items: 10_000,
            http_timeout: Duration::from_secs(10),
            extra_ca_pem: None,
        }
    }
}

/// The largest memory any plugin may be allowed (manifests ask for at most this).
const MAX_MEMORY_MIB: u64 = 64;

/// Written pages of a linear memory (and of a table) that stay resident in a free pool
/// slot, reset in place for the next instance, when the kernel supports PAGEMAP_SCAN;
/// beyond this, pages are released with `madvise`.
const RESIDENT_MEMORY_PER_SLOT: usize = 4 * 1024 * 1024;
const RESIDENT_TABLE_PER_SLOT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error(
        "the manifest says world `{declared}`, but the component exports {found}; build it against the `{declared}` world"
    )]
    WrongWorld { declared: String, found: String },
    #[error("incompatible plugin ABI: {0}")]
    IncompatibleAbi(String),
    #[error("the component needs imports this world does not provide: {0}")]
    Imports(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("ran out of its instruction budget ({0} units of fuel)")]
    OutOfFuel(u64),
    #[error("exceeded its memory limit of {0} MiB")]
    MemoryExceeded(u64),
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned invalid output: {0}")]
    InvalidOutput(String),
    #[error("plugin error: {0}")]
    Plugin(String),
    #[error("this plugin does not implement {0}")]
    WrongWorld(&'static str),
    /// Refused before the plugin ran: not the plugin's fault.
    #[error("input too large: {0}")]
    InputTooLarge(String),
}

impl CallError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::OutOfFuel(_) => "out_of_fuel",
            CallError::MemoryExceeded(_) => "memory",
            CallError::StackOverflow => "stack_overflow",
            CallError::Trap(_) => "trap",
            CallError::InvalidOutput(_) => "invalid_output",
            CallError::Plugin(_) => "plugin_error",
            CallError::WrongWorld(_) => "wrong_world",
            CallError::InputTooLarge(_) => "input_too_large",
        }
    }
}

/// What a call cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    pub fuel_used: u64,
    pub duration: Duration,
}

struct Linkers {
    pricing: Linker<HostState>,
    taxonomy: Linker<HostState>,
    loyalty: Linker<HostState>,
    loyalty_v0_2: Linker<HostState>,
    payment: Linker<HostState>,
    payment_v0_2: Linker<HostState>,
    payment_v0_3: Linker<HostState>,
    notification: Linker<HostState>,
    notification_v0_2: Linker<HostState>,
}

/// One engine and its linkers; cheap to share (`Arc`).
pub struct Runtime {
    engine: Engine,
    config: RuntimeConfig,
    linkers: Linkers,
    engine_hash: String,
    /// The outbound HTTP client every network-world call shares (connection reuse).
    outbound: Arc<Outbound>,
    /// Every plugin's `cache` entries on this node.
    cache: HostCache,
}

fn linker<F>(engine: &Engine, add: F) -> anyhow::Result<Linker<HostState>>
where
    F: FnOnce(&mut Linker<HostState>) -> wasmtime::Result<()>,
{
    let mut linker = Linker::new(engine);
    // Rust's wasm32-wasip2 std imports WASI interfaces; they are linked, but the context
    // grants nothing (see host.rs).
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
    add(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(linker)
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let mut wasm = wasmtime::Config::new();
        wasm.wasm_component_model(true);
        wasm.consume_fuel(true);
        wasm.max_wasm_stack(512 * 1024);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(512)
            .total_core_instances(512)
            .total_memories(512)
            .total_tables(512)
            .max_memory_size((MAX_MEMORY_MIB * 1024 * 1024) as usize);
        // Every call instantiates afresh, so resetting a slot is on the per-call path. By
        // default wasmtime resets memories and tables with `madvise`, and the next
        // instance in the slot page-faults everything back in: more than half of a small
        // call's time. Where Linux can report which pages were written (PAGEMAP_SCAN,
        // 6.7+), keep up to this much of each slot resident and reset only those pages
        // with `memset`/`memcpy`: a 3-line pricing call went from about 26 µs to 9.5 µs
        // (docs/PERFORMANCE.md). The cost is RSS: a slot that has been used keeps the
        // pages its last instance wrote (at most the constant) while free. Without
        // PAGEMAP_SCAN wasmtime would `memset` the lowest bytes blindly, which is no use
        // to a guest whose stack fills its first MiB: keep the defaults there.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(RESIDENT_MEMORY_PER_SLOT)
                .table_keep_resident(RESIDENT_TABLE_PER_SLOT);
        }
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // Slots as large as the largest memory: 512 x 64 MiB of address space, rather
        // than wasmtime's default 4 GiB per slot.
        wasm.memory_reservation(MAX_MEMORY_MIB * 1024 * 1024);
        wasm.memory_guard_size(64 * 1024);
        let engine = Engine::new(&wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());
        let linkers = Linkers {
            pricing: linker(&engine, |l| {
                pricing::PricingRule::add_to_linker::<_, HasSelf<_>>(l, |s| s)
            })?,
            taxonomy: linker(&engine, |l| {
                taxonomy::VariantTaxonomy::add_to_linker::<_, HasSelf<_>>(l, |s| s)
            })?,
            loyalty: linker(&engine, |l| {
                loyalty::LoyaltyRule::add_to_linker::<_, HasSelf<_>>(l, |s| s)
            })?,
            loyalty_v0_2: linker(&engine, |l| {
                loyalty_v0_2::LoyaltyRule::add_to_linker::<_, HasSelf<_>>(l, |s| s)
            })?,
            payment: linker(&engine, |l| {
                adapter::PaymentAdapter::add_to_linker::<_, HasSelf<_>>(l, |s| s)
            })?,
            payment_v0_2: linker(&engine, |l| {
                adapter_v0_2::PaymentAdapter::add_to_linker::<_, HasSelf<_>>(l, |s| s)
            })?,
            payment_v0_3: linker(&engine, |l| {
                adapter_v0_3::PaymentAdapter::add_to_linker::<_, HasSelf<_>>(l, |s| s)
            })?,
            notification: linker(&engine, |l| {
                notification::NotificationChannel::add_to_linker::<_, HasSelf<_>>(l, |s| s)
            })?,
            notification_v0_2: linker(&engine, |l| {
                notification_v0_2::NotificationChannel::add_to_linker::<_, HasSelf<_>>(l, |s| s)
            })?,
        };
        let outbound = Arc::new(Outbound::new(&config)?);
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Runtime {
            engine,
            config,
            linkers,
            engine_hash,
            outbound,
            cache: HostCache::default(),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The SHA-256 of a plugin binary: its identity in the store and the cache.
    pub fn content_hash(wasm: &[u8]) -> String {
        let digest = Sha256::digest(wasm);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Compiles a component, or loads it from the on-disk cache keyed by content hash
    /// and engine compatibility; a cache entry that fails to load counts as a miss.
    pub fn compile(&self, wasm: &[u8]) -> Result<Component, LoadError> {
        self.compile_hashed(wasm, &Self::content_hash(wasm))
    }

    /// [`Runtime::compile`] with the content hash already known: hashing is a third of a
    /// load from the cache, so `load` hashes once.
    fn compile_hashed(&self, wasm: &[u8], hash: &str) -> Result<Component, LoadError> {
        check_header(wasm)?;
        let cached = self
            .config
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{hash}-{}.cwasm", self.engine_hash)));
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: the file was written by `Component::serialize` of an engine with
            // the same compatibility hash (part of the name), in a directory only the
            // kernel writes.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(component) => return Ok(component),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "ignoring a bad compiled-component cache entry")
                }
            }
        }
        let component =
            Component::new(&self.engine, wasm).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        if let Some(path) = &cached
            && let Ok(bytes) = component.serialize()
        {
            write_cache_entry(path, &bytes);
        }
        Ok(component)
    }

    /// Loads a plugin: checks the ABI version, compiles, checks the component exports
    /// the world its manifest names, and links it (pre-instantiation), so later calls
    /// only instantiate.
    pub fn load(
        &self,
        manifest: Manifest,
        wasm: &[u8],
        http: Option<HttpGrant>,
    ) -> Result<Plugin, LoadError> {
        let supported = supported_abis(manifest.world);
        let Some(abi) = supported
            .iter()
            .find(|v| abi_compatible(v, &manifest.abi))
            .cloned()
        else {
            return Err(LoadError::IncompatibleAbi(format!(
                "the manifest says olivine:plugin@{}, this kernel speaks {} for {}",
                manifest.abi,
                speaks(&supported),
                manifest.world.name()
            )));
        };
        let hash = Self::content_hash(wasm);
        let component = self.compile_hashed(wasm, &hash)?;
        check_exports(&self.engine, &component, manifest.world, &abi)?;
        let link = |e: wasmtime::Error| LoadError::Imports(format!("{e:#}"));
        let pre = match manifest.world {
            World::PricingRule => Pre::Pricing(
                pricing::PricingRulePre::new(
                    self.linkers
                        .pricing
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
            World::VariantTaxonomy => Pre::Taxonomy(
                taxonomy::VariantTaxonomyPre::new(
                    self.linkers
                        .taxonomy
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
            World::LoyaltyRule if abi.minor >= 2 => Pre::LoyaltyV0_2(
                loyalty_v0_2::LoyaltyRulePre::new(
                    self.linkers
                        .loyalty_v0_2
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
            World::LoyaltyRule => Pre::Loyalty(
                loyalty::LoyaltyRulePre::new(
                    self.linkers
                        .loyalty
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
            World::PaymentAdapter if abi.minor >= 3 => Pre::PaymentV0_3(
                adapter_v0_3::PaymentAdapterPre::new(
                    self.linkers
                        .payment_v0_3
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
            World::PaymentAdapter if abi.minor >= 2 => Pre::PaymentV0_2(
                adapter_v0_2::PaymentAdapterPre::new(
                    self.linkers
                        .payment_v0_2
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
            World::PaymentAdapter => Pre::Payment(
                adapter::PaymentAdapterPre::new(
                    self.linkers
                        .payment
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
            World::NotificationChannel if abi.minor >= 2 => Pre::NotificationV0_2(
                notification_v0_2::NotificationChannelPre::new(
                    self.linkers
                        .notification_v0_2
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
            World::NotificationChannel => Pre::Notification(
                notification::NotificationChannelPre::new(
                    self.linkers
                        .notification
                        .instantiate_pre(&component)
                        .map_err(link)?,
                )
                .map_err(link)?,
            ),
        };
        let memory_mib = manifest
            .limits
            .memory_mib
            .unwrap_or(self.config.default_memory_mib)
            .min(MAX_MEMORY_MIB);
        let http = if manifest.world.may_use_http() {
            http.map(|mut grant| {
                // Only what the manifest declares, whatever was granted.
                grant.hosts.retain(|h| manifest.declares_host(h));
                if grant.timeout.is_zero() {
                    grant.timeout = self.config.http_timeout;
                }
                Arc::new(grant)
            })
        } else {
            None
        };
        let cache = matches!(pre, Pre::NotificationV0_2(_) | Pre::PaymentV0_3(_))
            .then(|| self.cache.for_plugin(Arc::from(hash.as_str())));
        Ok(Plugin {
            id: Arc::from(manifest.id.as_str()),
            hash,
            outbound: self.outbound.clone(),
            cache,
            manifest,
            pre,
            engine: self.engine.clone(),
            config: self.config.clone(),
            memory_mib,
            http,
        })
    }
}

/// The ABI versions the kernel loads for a world: 0.1 for every world, and 0.2 for
/// payment adapters, loyalty rules and notification channels.
pub fn supported_abis(world: World) -> Vec<semver::Version> {
    let mut versions = vec![semver::Version::new(0, 1, 0)];
    if matches!(
        world,
        World::PaymentAdapter | World::LoyaltyRule | World::NotificationChannel
    ) {
        versions.push(semver::Version::new(0, 2, 0));
    }
    if world == World::PaymentAdapter {
        versions.push(semver::Version::new(0, 3, 0));
    }
    versions
}

/// The version of the interface a world exports at ABI `abi`: its own, except for the
/// payment-adapter world at 0.3, which exports 0.2's `payments` unchanged (0.3 adds the
/// `cache` import only).
fn export_version(world: World, abi: &semver::Version) -> semver::Version {
    if world == World::PaymentAdapter && abi.major == 0 && abi.minor == 3 {
        semver::Version::new(0, 2, 0)
    } else {
        abi.clone()
    }
}

/// `0.1.x` or `0.1.x and 0.2.x`.
fn speaks(versions: &[semver::Version]) -> String {
    versions
        .iter()
        .map(|v| format!("olivine:plugin@{}.{}.x", v.major, v.minor))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn abi_compatible(supported: &semver::Version, wanted: &semver::Version) -> bool {
    if supported.major == 0 {
        wanted.major == 0 && wanted.minor == supported.minor
    } else {
        wanted.major == supported.major
    }
}

/// Writes a compiled component to the cache under a temporary name of its own, then
/// renames it into place. Loads map the entry into memory (`deserialize_file`), so an
/// entry is never written in place: two runtimes of one process compiling the same
/// plugin at once (tests, a swap beside a load) once shared a temporary name, and one
/// could rename the other's half-written file into place. A failed write is only a miss.
fn write_cache_entry(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let Some(dir) = path.parent() else { return };
    let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) else {
        return;
    };
    if tmp.write_all(bytes).is_ok() {
        let _ = tmp.persist(path);
    }
}

fn check_header(wasm: &[u8]) -> Result<(), LoadError> {
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 0x01, 0, 0, 0]) => Err(LoadError::NotAComponent(
            "this is a core WebAssembly module; build the plugin for wasm32-wasip2 so it is a component".to_owned(),
        )),
        _ => Err(LoadError::NotAComponent(
            "the file does not start with the WebAssembly magic number".to_owned(),
        )),
    }
}

fn check_exports(
    engine: &Engine,
    component: &Component,
    world: World,
    supported: &semver::Version,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let ours: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|name| name.starts_with("olivine:plugin/"))
        .collect();
    let wanted = world.export_interface();
    let found = || {
        if ours.is_empty() {
            "no olivine:plugin interface".to_owned()
        } else {
            ours.join(", ")
        }
    };
    let Some(export) = ours
        .iter()
        .find(|name| name.trim_start_matches("olivine:plugin/").split('@').next() == Some(wanted))
    else {
        return Err(LoadError::WrongWorld {
            declared: world.name().to_owned(),
            found: found(),
        });
    };
    let version = export.split('@').nth(1).unwrap_or("");
    match semver::Version::parse(version) {
        Ok(v) if abi_compatible(&export_version(world, supported), &v) => Ok(()),
        _ => Err(LoadError::IncompatibleAbi(format!(
            "the component exports {export}, but its manifest says olivine:plugin@{}.{}",
            supported.major, supported.minor
        ))),
    }
}

enum Pre {
    Pricing(pricing::PricingRulePre<HostState>),
    Taxonomy(taxonomy::VariantTaxonomyPre<HostState>),
    Loyalty(loyalty::LoyaltyRulePre<HostState>),
    LoyaltyV0_2(loyalty_v0_2::LoyaltyRulePre<HostState>),
    Payment(adapter::PaymentAdapterPre<HostState>),
    PaymentV0_2(adapter_v0_2::PaymentAdapterPre<HostState>),
    PaymentV0_3(adapter_v0_3::PaymentAdapterPre<HostState>),
    Notification(notification::NotificationChannelPre<HostState>),
    NotificationV0_2(notification_v0_2::NotificationChannelPre<HostState>),
}

/// A loaded, linked plugin version. Every call instantiates it afresh in its own store,
/// so no state survives from one call (one cart, one customer) to the next.
pub struct Plugin {
    pub manifest: Manifest,
    /// SHA-256 of the binary.
    pub hash: String,
    id: Arc<str>,
    pre: Pre,
    engine: Engine,
    config: RuntimeConfig,
    memory_mib: u64,
    http: Option<Arc<HttpGrant>>,
    outbound: Arc<Outbound>,
    cache: Option<crate::cache::PluginCache>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.manifest.id)
            .field("version", &self.manifest.version.to_string())
            .field("world", &self.manifest.world)
            .field("hash", &self.hash)
            .finish()
    }
}

type Settings = Arc<BTreeMap<String, String>>;

impl Plugin {
    pub fn world(&self) -> World {
        self.manifest.world
    }

    fn fuel_budget(&self, items: usize) -> u64 {
        let base = self.manifest.limits.fuel.unwrap_or(self.config.base_fuel);
        base.saturating_add(self.config.fuel_per_line.saturating_mul(items as u64))
    }

    /// Runs `call` in a fresh store with the budget, the memory cap and the settings,
    /// and turns traps into `CallError`s.
    fn run<T>(
        &self,
        settings: &Settings,
        fuel: u64,
        call: impl FnOnce(&Pre, &mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> Result<(T, CallStats), CallError> {
        let started = Instant::now();
        let state = HostState::new(HostAccess {
            plugin_id: self.id.clone(),
            settings: settings.clone(),
            http: self.http.clone(),
            outbound: self.outbound.clone(),
            cache: self.cache.clone(),
            network: self.manifest.world.may_use_http(),
            memory_bytes: (self.memory_mib * 1024 * 1024) as usize,
        });
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store
            .set_fuel(fuel)
            .map_err(|e| CallError::Trap(format!("{e}")))?;
        let result = call(&self.pre, &mut store);
        let fuel_used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let stats = CallStats {
            fuel_used,
            duration: started.elapsed(),
        };
        if store.data().logs_dropped > 0 {
            tracing::warn!(
                plugin = &*self.id,
                dropped = store.data().logs_dropped,
                "plugin log lines dropped"
            );
        }
        match result {
            Ok(value) => Ok((value, stats)),
            Err(err) => Err(if store.data().limits.memory_exceeded {
                CallError::MemoryExceeded(self.memory_mib)
            } else {
                match err.downcast_ref::<Trap>() {
                    Some(Trap::OutOfFuel) => CallError::OutOfFuel(fuel),
                    Some(Trap::StackOverflow) => CallError::StackOverflow,
                    Some(trap) => CallError::Trap(trap.to_string()),
                    None => CallError::Trap(format!("{err:#}")),
                }
            }),
        }
    }

    /// Prices a cart. Output is checked: adjustments name lines of this cart, never
    /// take a line (or the cart) below zero, and stay within the output caps.
    pub fn price(
        &self,
        cart: &types::Cart,
        settings: &Settings,
    ) -> Result<(Vec<types::Adjustment>, CallStats), CallError> {
        if cart.lines.len() > self.config.max_input_items
            || cart.products.len() > self.config.max_input_items
        {
            return Err(CallError::InputTooLarge(format!(
                "a cart of {} lines and {} products (at most {} each)",
                cart.lines.len(),
                cart.products.len(),
                self.config.max_input_items
            )));
        }
        // What the manifest does not ask for is not copied into the guest.
        let lean;
        let cart = if self.manifest.inputs.products || cart.products.is_empty() {
            cart
        } else {
            lean = types::Cart {
                currency: cart.currency.clone(),
                lines: cart.lines.clone(),
                products: Vec::new(),
                customer: cart.customer.clone(),
            };
            &lean
        };
        let (result, stats) = self
            .run(
                settings,
                self.fuel_budget(cart.lines.len()),
                |pre, store| {
                    let Pre::Pricing(pre) = pre else {
                        return Err(wasmtime::Error::msg("not a pricing rule"));
                    };
                    let instance = pre.instantiate(&mut *store)?;
                    instance.olivine_plugin_pricing().call_price(store, cart)
                },
            )
            .map_err(|e| self.wrong_world(e, World::PricingRule))?;
        let adjustments = result.map_err(CallError::Plugin)?;
        check_adjustments(&self.config, cart, &adjustments)?;
        Ok((adjustments, stats))
    }

    fn wrong_world(&self, err: CallError, world: World) -> CallError {
        if self.manifest.world != world {
            CallError::WrongWorld(world.name())
        } else {
            err
        }
    }

    pub fn describe_taxonomy(
        &self,
        settings: &Settings,
    ) -> Result<(types::TaxonomyInfo, CallStats), CallError> {
        self.run(settings, self.fuel_budget(0), |pre, store| {
            let Pre::Taxonomy(pre) = pre else {
                return Err(wasmtime::Error::msg("not a taxonomy"));
            };
            pre.instantiate(&mut *store)?
                .olivine_plugin_taxonomy()
                .call_describe(store)
        })
        .map_err(|e| self.wrong_world(e, World::VariantTaxonomy))
    }

    /// Validates a product; `Ok(Err(fields))` is the plugin rejecting the input.
    pub fn validate_product(
        &self,
        product: &types::ProductInput,
        settings: &Settings,
    ) -> Result<
        (
            Result<types::ValidatedProduct, Vec<types::FieldError>>,
            CallStats,
        ),
        CallError,
    > {
        if product.variants.len() > self.config.max_input_items {
            return Err(CallError::InputTooLarge(format!(
                "{} variants (at most {})",
                product.variants.len(),
                self.config.max_input_items
            )));
        }
        let (result, stats) = self
            .run(
                settings,
                self.fuel_budget(product.variants.len()),
                |pre, store| {
                    let Pre::Taxonomy(pre) = pre else {
                        return Err(wasmtime::Error::msg("not a taxonomy"));
                    };
                    pre.instantiate(&mut *store)?
                        .olivine_plugin_taxonomy()
                        .call_validate(store, product)
                },
            )
            .map_err(|e| self.wrong_world(e, World::VariantTaxonomy))?;
        match &result {
            Ok(valid) => {
                if valid.variants.len() != product.variants.len() {
                    return Err(CallError::InvalidOutput(format!(
                        "{} variants returned for {} given",
                        valid.variants.len(),
                        product.variants.len()
                    )));
                }
                if valid.attributes_json.len() > self.config.max_output_bytes {
                    return Err(CallError::InvalidOutput("attributes too large".to_owned()));
                }
                if serde_json::from_str::<serde_json::Value>(&valid.attributes_json).is_err() {
                    return Err(CallError::InvalidOutput(
                        "attributes are not JSON".to_owned(),
                    ));
                }
                for v in &valid.variants {
                    if v.sku.is_empty() || v.sku.len() > 64 {
                        return Err(CallError::InvalidOutput(format!("bad SKU `{}`", v.sku)));
                    }
                }
            }
            Err(fields) if fields.len() > self.config.max_output_items => {
                return Err(CallError::InvalidOutput("too many field errors".to_owned()));
            }
            Err(_) => {}
        }
        Ok((result, stats))
    }

    /// Asks a loyalty rule what an event earns. A rule built for 0.1 gets the event's
    /// 0.1 fields only (no time, lines, history or product). The budget grows with the
    /// order's lines, as a pricing call's does with the cart's.
    pub fn on_loyalty_event(
        &self,
        event: &loyalty_types::LoyaltyEvent,
        settings: &Settings,
    ) -> Result<(Vec<types::PointsEntry>, CallStats), CallError> {
        let categories: usize = event.lines.iter().map(|l| l.categories.len()).sum();
        if event.lines.len() > self.config.max_input_items
            || categories > self.config.max_input_items
        {
            return Err(CallError::InputTooLarge(format!(
                "an event of {} order lines and {categories} line categories (at most {} each)",
                event.lines.len(),
                self.config.max_input_items
            )));
        }
        let (result, stats) = self
            .run(
                settings,
                self.fuel_budget(event.lines.len()),
                |pre, store| match pre {
                    Pre::LoyaltyV0_2(pre) => pre
                        .instantiate(&mut *store)?
                        .olivine_plugin0_2_0_loyalty()
                        .call_on_event(store, event),
                    Pre::Loyalty(pre) => pre
                        .instantiate(&mut *store)?
                        .olivine_plugin_loyalty()
                        .call_on_event(store, &v0_1::loyalty_event(event)),
                    _ => Err(wasmtime::Error::msg("not a loyalty rule")),
                },
            )
            .map_err(|e| self.wrong_world(e, World::LoyaltyRule))?;
        let entries = result.map_err(CallError::Plugin)?;
        if entries.len() > 100 {
            return Err(CallError::InvalidOutput(
                "more than 100 ledger entries".to_owned(),
            ));
        }
        Ok((entries, stats))
    }

    /// Whether this adapter can save payment methods for later charges (built for 0.2).
    /// A 0.1 adapter cannot: the kernel keeps charging the checkout's token.
    pub fn saves_payment_methods(&self) -> bool {
        matches!(self.pre, Pre::PaymentV0_2(_) | Pre::PaymentV0_3(_))
    }

    /// Calls a payment operation. Blocking (outbound HTTP): call it from a blocking
    /// thread. A 0.1 adapter gets its records converted: a saved method is charged as
    /// the token it was (0.1 adapters save nothing), and its declines are soft.
    pub fn payment(
        &self,
        operation: PaymentCall<'_>,
        settings: &Settings,
    ) -> Result<(Result<PaymentAnswer, payment::PaymentError>, CallStats), CallError> {
        self.run(settings, self.fuel_budget(0), |pre, store| match pre {
            // 0.3 exports 0.2's interface: the same calls on the same records.
            Pre::PaymentV0_2(pre) => {
                let instance = pre.instantiate(&mut *store)?;
                payment_v0_2_calls!(instance.olivine_plugin0_2_0_payments(), store, operation)
            }
            Pre::PaymentV0_3(pre) => {
                let instance = pre.instantiate(&mut *store)?;
                payment_v0_2_calls!(instance.olivine_plugin0_2_0_payments(), store, operation)
            }
            Pre::Payment(pre) => {
                let instance = pre.instantiate(&mut *store)?;
                let payments = instance.olivine_plugin_payments();
                let answer = match operation {
                    PaymentCall::Save(_) => {
                        return Ok(Err(payment::PaymentError::Invalid(
                            "this adapter is built for olivine:plugin@0.1 and cannot save payment methods"
                                .to_owned(),
                        )));
                    }
                    PaymentCall::Authorize(request) => {
                        payments.call_authorize(store, &v0_1::authorize_request(request))?
                    }
                    PaymentCall::Capture(op) => payments.call_capture(store, &v0_1::operation(op))?,
                    PaymentCall::Refund(op) => payments.call_refund(store, &v0_1::operation(op))?,
                    PaymentCall::Void(op) => payments.call_void(store, &v0_1::operation(op))?,
                };
                Ok(answer.map(v0_1::result).map_err(v0_1::error))
            }
            _ => Err(wasmtime::Error::msg("not a payment adapter")),
        })
        .map_err(|e| self.wrong_world(e, World::PaymentAdapter))
    }

    /// Delivers a notification (0.2's message; a 0.1 channel gets it converted).
    /// Blocking (outbound HTTP).
    pub fn deliver(
        &self,
        message: &notification_types::Message,
        settings: &Settings,
    ) -> Result<
        (
            Result<types::DeliveryReceipt, notification_types::DeliveryError>,
            CallStats,
        ),
        CallError,
    > {
        self.run(settings, self.fuel_budget(0), |pre, store| match pre {
            Pre::NotificationV0_2(pre) => pre
                .instantiate(&mut *store)?
                .olivine_plugin0_2_0_notifications()
                .call_deliver(store, message),
            Pre::Notification(pre) => {
                let answer = pre
                    .instantiate(&mut *store)?
                    .olivine_plugin_notifications()
                    .call_deliver(store, &v0_1::notification(message))?;
                Ok(answer.map_err(v0_1::delivery_error))
            }
            _ => Err(wasmtime::Error::msg("not a notification channel")),
        })
        .map_err(|e| self.wrong_world(e, World::NotificationChannel))
    }
}

/// One payment call on a `payments@0.2.0` export (of a 0.2 or a 0.3 adapter).
macro_rules! payment_v0_2_calls {
    ($payments:expr, $store:expr, $operation:expr) => {{
        let payments = $payments;
        let done = |r: wasmtime::Result<Result<payment::PaymentResult, _>>| {
            r.map(|r| r.map(PaymentAnswer::Done))
        };
        match $operation {
            PaymentCall::Save(request) => payments
                .call_save_payment_method($store, request)
                .map(|r| r.map(PaymentAnswer::Saved)),
            PaymentCall::Authorize(request) => done(payments.call_authorize($store, request)),
            PaymentCall::Capture(op) => done(payments.call_capture($store, op)),
            PaymentCall::Refund(op) => done(payments.call_refund($store, op)),
            PaymentCall::Void(op) => done(payments.call_void($store, op)),
        }
    }};
}
use payment_v0_2_calls;

/// The checks of a pricing rule's output: adjustments name lines of this cart, never take
/// a line (or the cart) below zero, and stay within the output caps.
fn check_adjustments(
    config: &RuntimeConfig,
    cart: &types::Cart,
    adjustments: &[types::Adjustment],
) -> Result<(), CallError> {
    let invalid = |m: String| Err(CallError::InvalidOutput(m));
    if adjustments.len() > config.max_output_items {
        return invalid(format!(
            "{} adjustments (at most {})",
            adjustments.len(),
            config.max_output_items
        ));
    }
    let bytes: usize = adjustments.iter().map(|a| a.reason.len() + 16).sum();
    if bytes > config.max_output_bytes {
        return invalid(format!(
            "{bytes} bytes of output (at most {})",
            config.max_output_bytes
        ));
    }
    let line_total =
        |line: &types::CartLine| line.unit_price_minor.checked_mul(i64::from(line.quantity));
    let mut cart_total: i64 = 0;
    for line in &cart.lines {
        cart_total = cart_total.saturating_add(line_total(line).unwrap_or(i64::MAX));
    }
    // The cart's line ids, sorted (a repeated id means its first line, as a lookup by
    // id would), so that checking n adjustments against n lines is n log n, not n².
    let mut ids: Vec<(u32, usize)> = cart
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| (line.line_id, i))
        .collect();
    ids.sort_unstable();
    // The change adjustments make to each line, by position in `ids`.
    let mut per_line: Vec<Option<i64>> = vec![None; ids.len()];
    let mut total_adjustment: i64 = 0;
    for adjustment in adjustments {
        let reason = &adjustment.reason;
        if reason.trim().is_empty() || (reason.len() > 200 && reason.chars().count() > 200) {
            return invalid("every adjustment needs a reason of 1-200 characters".to_owned());
        }
        total_adjustment = total_adjustment.saturating_add(adjustment.amount_minor);
        if let Some(line_id) = adjustment.line_id {
            let at = ids.partition_point(|&(id, _)| id < line_id);
            if ids.get(at).is_none_or(|&(id, _)| id != line_id) {
                return invalid(format!(
                    "adjustment for line {line_id}, which is not in the cart"
                ));
            }
            let change = per_line[at].get_or_insert(0);
            *change = change.saturating_add(adjustment.amount_minor);
        }
    }
    for (&(line_id, index), change) in ids.iter().zip(per_line) {
        let Some(change) = change else { continue };
        let total = line_total(&cart.lines[index]).unwrap_or(0);
        if total.saturating_add(change) < 0 {
            return invalid(format!("line {line_id} would cost less than nothing"));
        }
    }
    if cart_total.saturating_add(total_adjustment) < 0 {
        return invalid("the cart would cost less than nothing".to_owned());
    }
    if total_adjustment > cart_total.max(0) {
        return invalid("surcharges larger than the cart itself".to_owned());
    }
    Ok(())
}

pub enum PaymentCall<'a> {
    Save(&'a payment::SaveRequest),
    Authorize(&'a payment::AuthorizeRequest),
    Capture(&'a payment::PaymentOperation),
    Refund(&'a payment::PaymentOperation),
    Void(&'a payment::PaymentOperation),
}

/// What a payment call answered.
#[derive(Debug, Clone)]
pub enum PaymentAnswer {
    Saved(payment::SavedMethod),
    Done(payment::PaymentResult),
}

/// The kernel's payment, loyalty and notification records (0.2) as a 0.1 plugin takes
/// and gives them.
mod v0_1 {
    use crate::bindings::{loyalty_types, notification_types as nt, payment, types};

    /// A 0.1 channel's notification: the recipient as one address, the title as the
    /// subject, the text as the body (0.1 has no HTML, link or push options).
    pub fn notification(m: &nt::Message) -> types::Notification {
        types::Notification {
            topic: m.topic.clone(),
            idempotency_key: m.idempotency_key.clone(),
            recipient: match &m.recipient {
                nt::Recipient::Email(e) => e.address.clone(),
                nt::Recipient::Device(d) => d.token.clone(),
                nt::Recipient::Endpoint(url) => url.clone(),
            },
            subject: m.title.clone(),
            body: m.text.clone(),
            data_json: m.data_json.clone(),
        }
    }

    pub fn delivery_error(e: types::DeliveryError) -> nt::DeliveryError {
        match e {
            types::DeliveryError::Retryable(reason) => nt::DeliveryError::Retryable(nt::Retry {
                reason,
                after_seconds: None,
            }),
            types::DeliveryError::Permanent(reason) => nt::DeliveryError::Permanent(reason),
        }
    }

    /// 0.1's fields of a 0.2 loyalty event; the rest is what 0.1 rules were built
    /// without.
    pub fn loyalty_event(e: &loyalty_types::LoyaltyEvent) -> types::LoyaltyEvent {
        types::LoyaltyEvent {
            kind: e.kind.clone(),
            customer: e.customer.clone(),
            amount: e.amount.clone(),
            count: e.count,
            event_id: e.event_id.clone(),
        }
    }

    pub fn authorize_request(r: &payment::AuthorizeRequest) -> types::AuthorizeRequest {
        types::AuthorizeRequest {
            order_id: r.order_id.clone(),
            idempotency_key: r.idempotency_key.clone(),
            amount: r.amount.clone(),
            // A 0.1 adapter saves nothing: what the kernel kept is the checkout's token.
            payment_token: match &r.source {
                payment::PaymentSource::Token(t) | payment::PaymentSource::Saved(t) => t.clone(),
            },
            customer: r.customer.clone(),
        }
    }

    pub fn operation(o: &payment::PaymentOperation) -> types::PaymentOperation {
        types::PaymentOperation {
            order_id: o.order_id.clone(),
            idempotency_key: o.idempotency_key.clone(),
            processor_reference: o.processor_reference.clone(),
            amount: o.amount.clone(),
        }
    }

    pub fn result(r: types::PaymentResult) -> super::PaymentAnswer {
        super::PaymentAnswer::Done(payment::PaymentResult {
            status: r.status,
            processor_reference: r.processor_reference,
            message: r.message,
        })
    }

    /// 0.1 cannot tell a hard decline from a soft one: soft, so dunning retries it.
    pub fn error(e: types::PaymentError) -> payment::PaymentError {
        match e {
            types::PaymentError::Declined(message) => {
                payment::PaymentError::Declined(payment::Decline {
                    message,
                    hard: false,
                })
            }
            types::PaymentError::Retryable(m) => payment::PaymentError::Retryable(m),
            types::PaymentError::Invalid(m) => payment::PaymentError::Invalid(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cart(lines: &[(u32, u32, i64)]) -> types::Cart {
        types::Cart {
            currency: "EUR".to_owned(),
            lines: lines
                .iter()
                .map(|&(line_id, quantity, unit_price_minor)| types::CartLine {
                    line_id,
                    product_index: 0,
                    variant_id: 1,
                    quantity,
                    unit_price_minor,
                    subscription: false,
                })
                .collect(),
            products: Vec::new(),
            customer: None,
        }
    }

    fn adjustment(line_id: Option<u32>, amount_minor: i64, reason: &str) -> types::Adjustment {
        types::Adjustment {
            line_id,
            amount_minor,
            reason: reason.to_owned(),
        }
    }

    fn check(cart: &types::Cart, adjustments: &[types::Adjustment]) -> Result<(), String> {
        check_adjustments(&RuntimeConfig::default(), cart, adjustments).map_err(|e| match e {
            CallError::InvalidOutput(m) => m,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn adjustments_are_checked_against_their_lines() {
        // Line 7 costs 2 x 500, line 3 costs 1 x 300, in that order.
        let c = cart(&[(7, 2, 500), (3, 1, 300)]);
        let ok = [
            adjustment(Some(3), -300, "all of line 3"),
            adjustment(Some(7), -600, "part of line 7"),
            adjustment(Some(7), -400, "the rest of line 7"),
            adjustment(None, 100, "a surcharge"),
        ];
        assert_eq!(check(&c, &ok), Ok(()));
        let err = check(&c, &[adjustment(Some(4), -1, "no such line")]).unwrap_err();
        assert_eq!(err, "adjustment for line 4, which is not in the cart");
        let err = check(
            &c,
            &[
                adjustment(Some(7), -1001, "too much"),
                adjustment(Some(3), -301, "too much"),
            ],
        )
        .unwrap_err();
        // Lines are reported in id order, whatever the order of the adjustments.
        assert_eq!(err, "line 3 would cost less than nothing");
        let err = check(&c, &[adjustment(None, -1301, "too much")]).unwrap_err();
        assert_eq!(err, "the cart would cost less than nothing");
        let err = check(&c, &[adjustment(None, 1301, "too much")]).unwrap_err();
        assert_eq!(err, "surcharges larger than the cart itself");
    }

    #[test]
    fn a_repeated_line_id_means_its_first_line() {
        let c = cart(&[(1, 1, 100), (1, 1, 5000)]);
        assert_eq!(
            check(&c, &[adjustment(Some(1), -100, "first line")]),
            Ok(())
        );
        assert!(check(&c, &[adjustment(Some(1), -101, "beyond the first line")]).is_err());
    }

    #[test]
    fn huge_amounts_saturate_rather_than_wrap() {
        // Two i64::MIN on one line would wrap to 0, and a surcharge of i64::MAX would
        // bring the cart total back above zero.
        let c = cart(&[(1, 1, 1000)]);
        let err = check(
            &c,
            &[
                adjustment(Some(1), i64::MIN, "a"),
                adjustment(Some(1), i64::MIN, "b"),
                adjustment(None, i64::MAX, "c"),
            ],
        )
        .unwrap_err();
        assert_eq!(err, "line 1 would cost less than nothing");
    }

    #[test]
    fn reasons_are_1_to_200_characters() {
        let c = cart(&[(1, 1, 1000)]);
        let reason_of = |n: usize| "é".repeat(n);
        assert_eq!(
            check(&c, &[adjustment(Some(1), -1, &reason_of(200))]),
            Ok(())
        );
        for bad in [reason_of(201), String::new(), "  ".to_owned()] {
            let err = check(&c, &[adjustment(Some(1), -1, &bad)]).unwrap_err();
            assert_eq!(err, "every adjustment needs a reason of 1-200 characters");
        }
    }
}
