//! Criterion benchmarks of the plugin host: what a pricing call costs per request (a fresh
//! instance every time), how it scales with the cart, how the same rule compares when
//! compiled natively, and what loading a plugin costs with and without the on-disk cache.
//!
//! ```sh
//! cargo bench -p olivine-plugin-runtime --bench plugin_calls
//! ```
//!
//! Figures and what each benchmark measures: docs/PERFORMANCE.md, "Plugin calls
//! (criterion)". The first run builds the first-party plugins for wasm32-wasip2.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use olivine_plugin_runtime::bindings::types;
use olivine_plugin_runtime::{Manifest, Plugin, Runtime, RuntimeConfig};
use olivine_sdk::PricingRule;

/// The tiered-volume plugin's own source (not a copy), compiled natively into this
/// benchmark. Depending on the crate does not work: it is a `cdylib`, and as a native
/// `cdylib` its component exports (symbols such as `olivine:plugin/pricing@0.1.0#price`)
/// do not link (rust-lld rejects the `:` in the version script), while adding `rlib`
/// still builds the cdylib.
#[path = "../../plugins/tiered-volume/src/lib.rs"]
#[allow(dead_code)]
mod tiered_volume;

type Settings = Arc<BTreeMap<String, String>>;

/// Cart sizes of the scaling benchmarks.
const SIZES: [usize; 3] = [3, 200, 1000];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (manifest, wasm) of a first-party plugin, as runtime/tests/common does it.
fn package(dir: &str, crate_name: &str) -> (Manifest, Vec<u8>) {
    let root = repo_root();
    let wasm_dir =
        olivine_plugin_runtime::build::first_party_plugins(&root).expect("plugins build");
    let manifest = std::fs::read_to_string(root.join("plugins").join(dir).join("plugin.toml"))
        .expect("plugin.toml");
    let manifest = Manifest::parse(&manifest).expect("valid manifest");
    let wasm = std::fs::read(wasm_dir.join(format!("{crate_name}.wasm"))).expect("wasm built");
    (manifest, wasm)
}

fn settings(pairs: &[(&str, &str)]) -> Settings {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// The tiered-volume settings as the kernel passes them (the manifest default filled in).
fn tiered_settings() -> Settings {
    settings(&[("tiers", tiered_volume::DEFAULT_TIERS)])
}

/// A cart of `lines` lines, every line a different product (the most product data to copy
/// per line): a slug, two tags and a category per product, quantities 1-3 so every cart
/// reaches a tier (3 lines: 12 units, tier 10:5), and a customer with one segment. The
/// tiered-volume rule proposes one adjustment per line.
fn cart(lines: usize) -> types::Cart {
    cart_of(lines, lines)
}

/// A cart of `lines` lines over `products` products (line i is product i % products).
fn cart_of(lines: usize, products: usize) -> types::Cart {
    let quantity = |i: usize| {
        if lines == 3 {
            [5, 4, 3][i]
        } else {
            (i % 3) as u32 + 1
        }
    };
    types::Cart {
        currency: "EUR".to_owned(),
        lines: (0..lines)
            .map(|i| types::CartLine {
                line_id: i as u32 + 1,
                product_index: (i % products) as u32,
                variant_id: 10_000 + i as u64,
                quantity: quantity(i),
                unit_price_minor: 999 + (i as i64 % 50) * 100,
                subscription: i % 7 == 0,
            })
            .collect(),
        products: (0..products)
            .map(|i| types::ProductRef {
                id: 1 + i as u64,
                slug: format!("product-{i:04}"),
                product_type: if i % 2 == 0 {
                    types::ProductType::Supplement
                } else {
                    types::ProductType::Skincare
                },
                tags: vec!["vegan".to_owned(), format!("tag-{}", i % 10)],
                categories: vec![format!("category-{}", i % 5)],
            })
            .collect(),
        customer: Some(types::CustomerRef {
            pseudonym: "c-4f2a9b".to_owned(),
            segments: vec!["returning".to_owned()],
        }),
    }
}

/// The host's cart as the SDK's (guest-side) cart: the same copy the canonical ABI makes
/// into the guest, done natively.
fn to_sdk_cart(cart: &types::Cart) -> olivine_sdk::types::Cart {
    use olivine_sdk::types as sdk;
    sdk::Cart {
        currency: cart.currency.clone(),
        lines: cart
            .lines
            .iter()
            .map(|l| sdk::CartLine {
                line_id: l.line_id,
                product_index: l.product_index,
                variant_id: l.variant_id,
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
                subscription: l.subscription,
            })
            .collect(),
        products: cart
            .products
            .iter()
            .map(|p| sdk::ProductRef {
                id: p.id,
                slug: p.slug.clone(),
                product_type: match p.product_type {
                    types::ProductType::Supplement => sdk::ProductType::Supplement,
                    types::ProductType::Skincare => sdk::ProductType::Skincare,
                    types::ProductType::Bundle => sdk::ProductType::Bundle,
                },
                tags: p.tags.clone(),
                categories: p.categories.clone(),
            })
            .collect(),
        customer: cart.customer.as_ref().map(|c| sdk::CustomerRef {
            pseudonym: c.pseudonym.clone(),
            segments: c.segments.clone(),
        }),
    }
}

/// The SDK's adjustments back as the host's: the copy out of the guest, done natively.
fn from_sdk_adjustments(out: Vec<olivine_sdk::types::Adjustment>) -> Vec<types::Adjustment> {
    out.into_iter()
        .map(|a| types::Adjustment {
            line_id: a.line_id,
            amount_minor: a.amount_minor,
            reason: a.reason,
        })
        .collect()
}

struct Plugins {
    runtime: Runtime,
    tiered: Plugin,
    chaos: Plugin,
}

fn plugins() -> Plugins {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let (manifest, wasm) = package("tiered-volume", "tiered_volume");
    let tiered = runtime
        .load(manifest, &wasm, None)
        .expect("tiered-volume loads");
    let (manifest, wasm) = package("testing/chaos", "chaos");
    let chaos = runtime.load(manifest, &wasm, None).expect("chaos loads");
    Plugins {
        runtime,
        tiered,
        chaos,
    }
}

/// Checks a call succeeds and reports its fuel against the budget, once, before timing.
fn report_fuel(name: &str, plugin: &Plugin, cart: &types::Cart, settings: &Settings) {
    let (adjustments, stats) = plugin
        .price(cart, settings)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let config = RuntimeConfig::default();
    let budget = plugin.manifest.limits.fuel.unwrap_or(config.base_fuel)
        + config.fuel_per_line * cart.lines.len() as u64;
    eprintln!(
        "{name}: {} lines, {} adjustments, fuel used {} of a budget of {budget} ({:.1}%)",
        cart.lines.len(),
        adjustments.len(),
        stats.fuel_used,
        stats.fuel_used as f64 * 100.0 / budget as f64
    );
}

/// 1. A fresh instance and one pricing call on a 3-line cart: the work per request.
fn fresh_instance(c: &mut Criterion) {
    let p = plugins();
    let cart = cart(3);
    let tiered = tiered_settings();
    let chaos = settings(&[("mode", "ok")]);
    report_fuel("tiered-volume", &p.tiered, &cart, &tiered);
    report_fuel("chaos ok", &p.chaos, &cart, &chaos);
    let mut group = c.benchmark_group("fresh_instance_price_3_lines");
    group.bench_function("tiered_volume", |b| {
        b.iter(|| p.tiered.price(black_box(&cart), &tiered).unwrap())
    });
    group.bench_function("chaos_ok", |b| {
        b.iter(|| p.chaos.price(black_box(&cart), &chaos).unwrap())
    });
    group.finish();
    drop(p.runtime);
}

/// 2 and 3. The tiered-volume rule end to end through `Plugin::price` (fresh instance,
/// cart copied in, guest logic under fuel, adjustments copied out and checked), next to
/// the same crate compiled natively.
fn scaling(c: &mut Criterion) {
    let p = plugins();
    let tiered = tiered_settings();
    let chaos = settings(&[("mode", "ok")]);
    let tiers = tiered_volume::parse_tiers(tiered_volume::DEFAULT_TIERS).unwrap();
    let mut group = c.benchmark_group("tiered_volume");
    for lines in SIZES {
        let cart = cart(lines);
        if lines != 3 {
            report_fuel("tiered-volume", &p.tiered, &cart, &tiered);
        }
        // The native build must agree with the WebAssembly one.
        olivine_sdk::testing::set_settings([("tiers", tiered_volume::DEFAULT_TIERS)]);
        let native =
            from_sdk_adjustments(tiered_volume::TieredVolume::price(&to_sdk_cart(&cart)).unwrap());
        let (wasm, _) = p.tiered.price(&cart, &tiered).unwrap();
        let key = |a: &types::Adjustment| (a.line_id, a.amount_minor, a.reason.clone());
        assert_eq!(
            native.iter().map(key).collect::<Vec<_>>(),
            wasm.iter().map(key).collect::<Vec<_>>(),
            "native and wasm disagree on {lines} lines"
        );

        group.bench_with_input(BenchmarkId::new("wasm", lines), &cart, |b, cart| {
            b.iter(|| p.tiered.price(black_box(cart), &tiered).unwrap())
        });
        // The same cart through a rule that does next to nothing (chaos `ok`: one
        // adjustment): a fresh instance plus copying the cart in and dropping it in the
        // guest. What `wasm` costs beyond this is the rule and its 1 adjustment per line.
        if lines != 3 {
            report_fuel("chaos ok", &p.chaos, &cart, &chaos);
            group.bench_with_input(
                BenchmarkId::new("wasm_chaos_ok", lines),
                &cart,
                |b, cart| b.iter(|| p.chaos.price(black_box(cart), &chaos).unwrap()),
            );
            // The same lines over 10 products: less product data to copy.
            let shared = cart_of(lines, 10);
            report_fuel("tiered-volume, 10 products", &p.tiered, &shared, &tiered);
            group.bench_with_input(
                BenchmarkId::new("wasm_10_products", lines),
                &shared,
                |b, cart| b.iter(|| p.tiered.price(black_box(cart), &tiered).unwrap()),
            );
        }
        // What the guest does, natively: the cart converted from the host's types (as the
        // canonical ABI copies it in), the settings read and the tiers parsed (the rule
        // does this per call), the rule, and the adjustments converted back. Not
        // included: instantiation and the host's output check.
        group.bench_with_input(BenchmarkId::new("native", lines), &cart, |b, cart| {
            b.iter(|| {
                let sdk_cart = to_sdk_cart(black_box(cart));
                from_sdk_adjustments(tiered_volume::TieredVolume::price(&sdk_cart).unwrap())
            })
        });
        // The rule's logic alone: the SDK cart and the tiers prepared outside the loop.
        let sdk_cart = to_sdk_cart(&cart);
        group.bench_with_input(
            BenchmarkId::new("native_logic_only", lines),
            &sdk_cart,
            |b, sdk_cart| {
                b.iter(|| tiered_volume::price(black_box(sdk_cart), black_box(&tiers)).unwrap())
            },
        );
    }
    group.finish();
    olivine_sdk::testing::clear();
}

/// 4. Loading tiered-volume: compiling from scratch, and from the on-disk cache.
fn load(c: &mut Criterion) {
    let (manifest, wasm) = package("tiered-volume", "tiered_volume");
    let cache = tempfile::tempdir().expect("temp dir");
    let cached = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    // The first load compiles and writes the cache; every later one reads it.
    cached
        .load(manifest.clone(), &wasm, None)
        .expect("first load");
    assert_eq!(cache_entries(cache.path()), 1);
    let uncached = Runtime::new(RuntimeConfig::default()).expect("runtime");

    let mut group = c.benchmark_group("load_tiered_volume");
    // Not a load: the engine, its pool and the linkers, once per kernel start.
    group.bench_function("runtime_new", |b| {
        b.iter(|| Runtime::new(RuntimeConfig::default()).unwrap())
    });
    group.bench_function("precompiled_from_cache", |b| {
        b.iter(|| {
            cached
                .load(manifest.clone(), black_box(&wasm), None)
                .unwrap()
        })
    });
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("compile_from_scratch", |b| {
        b.iter(|| {
            uncached
                .load(manifest.clone(), black_box(&wasm), None)
                .unwrap()
        })
    });
    group.finish();
}

fn cache_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("cache dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        })
        .count()
}

criterion_group!(benches, fresh_instance, scaling, load);
criterion_main!(benches);
