//! The host against real components: first-party fixtures, load-time refusals, and
//! hostile guests contained by the limits.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use olivine_plugin_runtime::bindings::types;
use olivine_plugin_runtime::{CallError, LoadError, Manifest};

const FIRST_PARTY: &[(&str, &str)] = &[
    ("multi-buy", "multi_buy"),
    ("subscribe-and-save", "subscribe_and_save"),
    ("tiered-volume", "tiered_volume"),
    ("supplements-taxonomy", "supplements_taxonomy"),
    ("skincare-taxonomy", "skincare_taxonomy"),
    ("loyalty-points", "loyalty_points"),
    ("category-campaign", "category_campaign"),
    ("testing/chaos", "chaos"),
    // Built for the loyalty world 0.1: its fixtures go through the host's conversion.
    ("testing/chaos-loyalty", "chaos_loyalty"),
];

#[test]
fn first_party_fixtures_pass_through_the_real_host() {
    let runtime = runtime();
    for (dir, crate_name) in FIRST_PARTY {
        let plugin = load(&runtime, dir, crate_name);
        let fixtures = olivine_plugin_runtime::fixtures::read_dir(
            &repo_root().join("plugins").join(dir).join("fixtures"),
        )
        .unwrap();
        assert!(!fixtures.is_empty(), "{dir} ships fixtures");
        for outcome in olivine_plugin_runtime::fixtures::run_all(&plugin, &fixtures) {
            assert!(
                outcome.passed,
                "{dir}/{}: {}",
                outcome.name, outcome.message
            );
        }
    }
}

/// `examples/third-party-plugin`'s fixtures through the SDK's `testing::host`, as that
/// crate's own `cargo test` runs them. CI runs the example natively only
/// (`--no-default-features`, scripts/test): this is its host half, on the wasmtime this
/// workspace has built already instead of a second build of it.
#[test]
fn the_third_party_example_passes_its_fixtures_through_the_sdk_host() {
    let example = repo_root().join("examples").join("third-party-plugin");
    let ran = olivine_sdk::testing::host::check_fixtures(example.to_str().expect("a UTF-8 path"));
    assert_eq!(ran, 4);
}

#[test]
fn every_world_loads_and_answers() {
    let runtime = runtime();
    // The notification channel answers even without a network grant: it is denied.
    let (manifest, wasm) = package("webhook-notifier", "webhook_notifier");
    let plugin = runtime.load(manifest.clone(), &wasm, None).unwrap();
    let settings = Arc::new(
        manifest
            .resolve_settings(&BTreeMap::from([(
                "url".to_owned(),
                "http://127.0.0.1:9/hook".to_owned(),
            )]))
            .unwrap(),
    );
    use olivine_plugin_runtime::bindings::notification_types as nt;
    let message = nt::Message {
        topic: "order.confirmed".into(),
        idempotency_key: "k".into(),
        recipient: nt::Recipient::Endpoint("http://127.0.0.1:9/hook".into()),
        title: "s".into(),
        text: "b".into(),
        html: None,
        link: None,
        collapse_key: None,
        expires_at: None,
        priority: nt::Priority::Normal,
        marketing: false,
        data_json: "{}".into(),
    };
    let (result, _) = plugin.deliver(&message, &settings).unwrap();
    assert!(
        matches!(result, Err(nt::DeliveryError::Permanent(ref m)) if m.contains("network")),
        "{result:?}"
    );
}

fn cart(lines: u32) -> types::Cart {
    types::Cart {
        currency: "EUR".into(),
        lines: (0..lines)
            .map(|i| types::CartLine {
                line_id: i + 1,
                product_index: 0,
                variant_id: 100 + u64::from(i),
                quantity: 2,
                unit_price_minor: 1999,
                subscription: i % 2 == 0,
            })
            .collect(),
        products: vec![types::ProductRef {
            id: 1,
            slug: "magnesium-glycinate".into(),
            product_type: types::ProductType::Supplement,
            tags: vec![],
            categories: vec![],
        }],
        customer: None,
    }
}

fn chaos(
    mode: &str,
) -> (
    olivine_plugin_runtime::Plugin,
    Arc<BTreeMap<String, String>>,
) {
    let runtime = runtime();
    let (manifest, wasm) = package("testing/chaos", "chaos");
    let settings = Arc::new(
        manifest
            .resolve_settings(&BTreeMap::from([("mode".to_owned(), mode.to_owned())]))
            .unwrap(),
    );
    (runtime.load(manifest, &wasm, None).unwrap(), settings)
}

/// Whether a call failed the way a chaos mode should make it fail.
type ExpectedFailure = fn(&CallError) -> bool;

#[test]
fn hostile_guests_are_contained() {
    let cases: &[(&str, ExpectedFailure)] = &[
        ("loop", |e| matches!(e, CallError::OutOfFuel(_))),
        ("alloc", |e| matches!(e, CallError::MemoryExceeded(10))),
        ("trap", |e| matches!(e, CallError::Trap(_))),
        // Rust guests keep their stack in linear memory: running off its end is an
        // out-of-bounds access (or the host's wasm stack limit, or the budget).
        ("recurse", |e| {
            matches!(
                e,
                CallError::StackOverflow | CallError::OutOfFuel(_) | CallError::Trap(_)
            )
        }),
        ("huge-output", |e| {
            matches!(
                e,
                CallError::MemoryExceeded(_)
                    | CallError::OutOfFuel(_)
                    | CallError::InvalidOutput(_)
            )
        }),
        ("invalid-output", |e| {
            matches!(e, CallError::InvalidOutput(_))
        }),
        ("log-spam", |e| matches!(e, CallError::OutOfFuel(_))),
    ];
    for (mode, expected) in cases {
        let (plugin, settings) = chaos(mode);
        let started = Instant::now();
        let err = plugin.price(&cart(3), &settings).expect_err(mode);
        assert!(expected(&err), "{mode}: unexpected {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{mode} was not stopped promptly"
        );
        // The same plugin still answers the next call: nothing of the failed instance
        // survives.
        let (ok, ok_settings) = chaos("ok");
        assert!(ok.price(&cart(3), &ok_settings).is_ok());
    }
}

#[test]
fn calls_share_no_state() {
    let (plugin, settings) = chaos("ok");
    let render = |a: Vec<types::Adjustment>| format!("{a:?}");
    let first = render(plugin.price(&cart(3), &settings).unwrap().0);
    for _ in 0..20 {
        assert_eq!(render(plugin.price(&cart(3), &settings).unwrap().0), first);
    }
}

#[test]
fn fuel_scales_with_cart_size() {
    let (plugin, settings) = chaos("ok");
    let (_, small) = plugin.price(&cart(1), &settings).unwrap();
    assert!(small.fuel_used > 0);
    let (plugin, settings) = package_plugin("subscribe-and-save", "subscribe_and_save");
    let (adjustments, stats) = plugin.price(&cart(1000), &settings).unwrap();
    assert!(!adjustments.is_empty());
    assert!(stats.fuel_used < 11_000_000 + 50_000 * 1000);
}

fn package_plugin(
    dir: &str,
    crate_name: &str,
) -> (
    olivine_plugin_runtime::Plugin,
    Arc<BTreeMap<String, String>>,
) {
    let runtime = runtime();
    let (manifest, wasm) = package(dir, crate_name);
    let settings = Arc::new(manifest.resolve_settings(&BTreeMap::new()).unwrap());
    (runtime.load(manifest, &wasm, None).unwrap(), settings)
}

#[test]
fn bad_components_are_refused_with_a_clear_message() {
    let runtime = runtime();
    let (manifest, wasm) = package("multi-buy", "multi_buy");

    let err = runtime
        .load(manifest.clone(), b"definitely not wasm", None)
        .unwrap_err();
    assert!(matches!(err, LoadError::NotAComponent(_)), "{err}");
    let core_module = [0, b'a', b's', b'm', 1, 0, 0, 0];
    let err = runtime
        .load(manifest.clone(), &core_module, None)
        .unwrap_err();
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
    let mut truncated = wasm.clone();
    truncated.truncate(wasm.len() / 2);
    assert!(matches!(
        runtime
            .load(manifest.clone(), &truncated, None)
            .unwrap_err(),
        LoadError::Invalid(_)
    ));

    // A pricing rule declared as a taxonomy.
    let wrong = Manifest::parse(
        &std::fs::read_to_string(repo_root().join("plugins/multi-buy/plugin.toml"))
            .unwrap()
            .replace("world = \"pricing-rule\"", "world = \"variant-taxonomy\""),
    )
    .unwrap();
    let err = runtime.load(wrong, &wasm, None).unwrap_err();
    assert!(matches!(err, LoadError::WrongWorld { .. }), "{err}");
    assert!(
        err.to_string().contains("olivine:plugin/pricing@0.1.0"),
        "{err}"
    );

    // Built against an ABI this host does not speak.
    let future = Manifest::parse(
        &std::fs::read_to_string(repo_root().join("plugins/multi-buy/plugin.toml"))
            .unwrap()
            .replace("abi = \"0.1\"", "abi = \"1.0\""),
    )
    .unwrap();
    let err = runtime.load(future, &wasm, None).unwrap_err();
    assert!(matches!(err, LoadError::IncompatibleAbi(_)), "{err}");
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = olivine_plugin_runtime::RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let (manifest, wasm) = package("multi-buy", "multi_buy");
    let first = olivine_plugin_runtime::Runtime::new(config.clone()).unwrap();
    first.load(manifest.clone(), &wasm, None).unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    // A second runtime loads from the cache; a corrupt entry is a miss, not a failure.
    let second = olivine_plugin_runtime::Runtime::new(config.clone()).unwrap();
    second.load(manifest.clone(), &wasm, None).unwrap();
    let path = entries[0].as_ref().unwrap().path();
    std::fs::write(&path, b"garbage").unwrap();
    let third = olivine_plugin_runtime::Runtime::new(config).unwrap();
    third.load(manifest, &wasm, None).unwrap();
}

#[test]
fn output_beyond_the_caps_is_refused() {
    let config = olivine_plugin_runtime::RuntimeConfig {
        max_output_bytes: 8,
        ..Default::default()
    };
    let runtime = olivine_plugin_runtime::Runtime::new(config).unwrap();
    let (manifest, wasm) = package("testing/chaos", "chaos");
    let settings = Arc::new(
        manifest
            .resolve_settings(&BTreeMap::from([("mode".to_owned(), "ok".to_owned())]))
            .unwrap(),
    );
    let plugin = runtime.load(manifest, &wasm, None).unwrap();
    let err = plugin.price(&cart(3), &settings).unwrap_err();
    assert!(
        matches!(err, CallError::InvalidOutput(ref m) if m.contains("bytes of output")),
        "{err:?}"
    );
}

/// A rule that declares `[inputs] products = false` is given no products; the same rule
/// that asks for them sees them.
#[test]
fn a_rule_gets_only_the_inputs_it_declares() {
    let runtime = runtime();
    let (manifest, wasm) = package("multi-buy", "multi_buy");
    let settings = Arc::new(
        manifest
            .resolve_settings(&BTreeMap::from([
                ("products".to_owned(), "magnesium-glycinate".to_owned()),
                ("buy".to_owned(), "2".to_owned()),
                ("percent_off".to_owned(), "10".to_owned()),
            ]))
            .unwrap(),
    );
    assert!(manifest.inputs.products);
    let with_products = runtime.load(manifest.clone(), &wasm, None).unwrap();
    let (adjustments, _) = with_products.price(&cart(2), &settings).unwrap();
    assert!(!adjustments.is_empty(), "multi-buy finds its product");

    let mut lean = manifest;
    lean.inputs.products = false;
    lean.version = semver::Version::new(0, 1, 1);
    let without_products = runtime.load(lean, &wasm, None).unwrap();
    let (adjustments, _) = without_products.price(&cart(2), &settings).unwrap();
    assert!(adjustments.is_empty(), "{adjustments:?}");
}

#[test]
fn oversized_input_is_refused_before_the_call() {
    let runtime = olivine_plugin_runtime::Runtime::new(olivine_plugin_runtime::RuntimeConfig {
        max_input_items: 5,
        ..Default::default()
    })
    .unwrap();
    let plugin = load(&runtime, "tiered-volume", "tiered_volume");
    let settings = Arc::new(BTreeMap::new());
    assert!(plugin.price(&cart(5), &settings).is_ok());
    let err = plugin.price(&cart(6), &settings).unwrap_err();
    assert_eq!(err.kind(), "input_too_large", "{err}");
}

/// Both versions of the payment-adapter world load side by side: sandbox-payments is
/// built for 0.2 (saves methods, hard declines), chaos-payments for 0.1, whose records
/// the host converts; a manifest that claims the other version is refused.
#[test]
fn payment_adapters_of_both_abi_versions_load() {
    use olivine_plugin_runtime::bindings::payment;
    use olivine_plugin_runtime::{PaymentAnswer, PaymentCall};

    let runtime = runtime();
    let v2 = load(&runtime, "sandbox-payments", "sandbox_payments");
    assert_eq!(v2.manifest.abi, semver::Version::new(0, 2, 0));
    assert!(v2.saves_payment_methods());
    let (manifest, wasm) = package("testing/chaos-payments", "chaos_payments");
    assert_eq!(manifest.abi, semver::Version::new(0, 1, 0));
    let v1 = runtime.load(manifest.clone(), &wasm, None).unwrap();
    assert!(!v1.saves_payment_methods());

    let settings = Arc::new(BTreeMap::from([("mode".to_owned(), "approve".to_owned())]));
    let request = payment::AuthorizeRequest {
        order_id: "1001".into(),
        idempotency_key: "1001:authorize".into(),
        amount: types::Money {
            amount_minor: 100,
            currency: "EUR".into(),
        },
        source: payment::PaymentSource::Saved("tok_kept".into()),
        off_session: true,
        customer: None,
    };
    let (answer, _) = v1
        .payment(PaymentCall::Authorize(&request), &settings)
        .unwrap();
    assert!(
        matches!(&answer, Ok(PaymentAnswer::Done(r)) if r.processor_reference == "chaos-1001"),
        "{answer:?}"
    );
    let save = payment::SaveRequest {
        payment_token: "tok_1".into(),
        idempotency_key: "1001:save".into(),
        customer: None,
    };
    let (answer, _) = v1.payment(PaymentCall::Save(&save), &settings).unwrap();
    assert!(
        matches!(answer, Err(payment::PaymentError::Invalid(ref m)) if m.contains("0.1")),
        "{answer:?}"
    );
    // A 0.1 decline arrives soft.
    let declining = Arc::new(BTreeMap::from([("mode".to_owned(), "decline".to_owned())]));
    let (answer, _) = v1
        .payment(PaymentCall::Authorize(&request), &declining)
        .unwrap();
    assert!(
        matches!(
            answer,
            Err(payment::PaymentError::Declined(payment::Decline {
                hard: false,
                ..
            }))
        ),
        "{answer:?}"
    );

    // The manifest's version must be the component's.
    let mut claims_v2 = manifest;
    claims_v2.abi = semver::Version::new(0, 2, 0);
    let err = runtime.load(claims_v2, &wasm, None).unwrap_err();
    assert!(matches!(err, LoadError::IncompatibleAbi(_)), "{err}");
    assert!(err.to_string().contains("payments@0.1.0"), "{err}");
    // 0.2 is the payment-adapter world's alone.
    let (mut pricing, pricing_wasm) = package("multi-buy", "multi_buy");
    pricing.abi = semver::Version::new(0, 2, 0);
    let err = runtime.load(pricing, &pricing_wasm, None).unwrap_err();
    assert!(err.to_string().contains("0.1.x for pricing-rule"), "{err}");
}

/// The payment-adapter world 0.3: 0.2's interface and the host cache. A counter the
/// adapter keeps in the cache survives from call to call (each call is a fresh
/// instance), belongs to that plugin version alone, and the adapter reads the real
/// clock. The same component claimed as 0.2 is refused: it imports the cache, which 0.2
/// does not link.
#[test]
fn a_payment_adapter_of_abi_0_3_keeps_values_in_the_host_cache() {
    use olivine_plugin_runtime::bindings::payment;
    use olivine_plugin_runtime::{PaymentAnswer, PaymentCall};

    let runtime = runtime();
    let (manifest, wasm) = package("testing/cache-payments", "cache_payments");
    assert_eq!(manifest.abi, semver::Version::new(0, 3, 0));
    let plugin = runtime.load(manifest.clone(), &wasm, None).unwrap();
    assert!(plugin.saves_payment_methods());
    let settings = Arc::new(BTreeMap::new());
    let operation = payment::PaymentOperation {
        order_id: "1001".into(),
        idempotency_key: "1001:capture".into(),
        processor_reference: "ref".into(),
        amount: None,
    };
    let message = |plugin: &olivine_plugin_runtime::Plugin| match plugin
        .payment(PaymentCall::Capture(&operation), &settings)
    {
        Ok((Ok(PaymentAnswer::Done(result)), _)) => result.message,
        other => panic!("{other:?}"),
    };
    assert_eq!(message(&plugin), "call 1 at real time");
    assert_eq!(message(&plugin), "call 2 at real time");
    // Another runtime (another node) has its own cache.
    let elsewhere = runtime_with_own_cache(&manifest, &wasm);
    assert_eq!(message(&elsewhere), "call 1 at real time");

    let mut claims_v2 = manifest;
    claims_v2.abi = semver::Version::new(0, 2, 0);
    let err = runtime.load(claims_v2, &wasm, None).unwrap_err();
    assert!(err.to_string().contains("cache"), "{err}");
}

fn runtime_with_own_cache(manifest: &Manifest, wasm: &[u8]) -> olivine_plugin_runtime::Plugin {
    runtime().load(manifest.clone(), wasm, None).unwrap()
}

/// A paid order of two lines, one in `supplements`, by a customer who spent €600 in the
/// last twelve months.
fn paid_order(lines: usize) -> olivine_plugin_runtime::bindings::loyalty_types::LoyaltyEvent {
    use olivine_plugin_runtime::bindings::loyalty_types;
    let euros = |amount_minor| types::Money {
        amount_minor,
        currency: "EUR".into(),
    };
    loyalty_types::LoyaltyEvent {
        kind: "order.paid".into(),
        customer: types::CustomerRef {
            pseudonym: "c_1".into(),
            segments: vec![],
        },
        amount: Some(euros(4498)),
        count: None,
        event_id: "event:1".into(),
        occurred_at: "2026-12-02T09:30:00.000Z".into(),
        lines: (0..lines)
            .map(|i| loyalty_types::OrderLine {
                sku: format!("SKU-{i}"),
                product_slug: format!("product-{i}"),
                categories: if i == 0 {
                    vec!["supplements".into()]
                } else {
                    vec![]
                },
                quantity: 1,
                total: euros(1999),
                subscription: false,
            })
            .collect(),
        history: loyalty_types::CustomerHistory {
            spend_12_months: euros(60_000),
            orders_12_months: 4,
            customer_since: "2025-01-01T00:00:00.000Z".into(),
        },
        product_slug: None,
    }
}

/// Both versions of the loyalty-rule world load side by side: loyalty-points is built
/// for 0.2 and reads the event's history, chaos-loyalty for 0.1 and gets the event's 0.1
/// fields; a manifest that claims the other version is refused.
#[test]
fn loyalty_rules_of_both_abi_versions_load() {
    let runtime = runtime();
    let (manifest, wasm) = package("loyalty-points", "loyalty_points");
    assert_eq!(manifest.abi, semver::Version::new(0, 2, 0));
    let v2 = runtime.load(manifest.clone(), &wasm, None).unwrap();
    let tiers = Arc::new(
        manifest
            .resolve_settings(&BTreeMap::from([(
                "tiers".to_owned(),
                "silver:50000:125,gold:150000:150".to_owned(),
            )]))
            .unwrap(),
    );
    let (entries, _) = v2.on_loyalty_event(&paid_order(2), &tiers).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].points, entries[0].reason.as_str()),
        (55, "Order paid: €44.98 (silver, ×1.25)")
    );

    let (v1_manifest, v1_wasm) = package("testing/chaos-loyalty", "chaos_loyalty");
    assert_eq!(v1_manifest.abi, semver::Version::new(0, 1, 0));
    let v1 = runtime.load(v1_manifest.clone(), &v1_wasm, None).unwrap();
    let ok = Arc::new(BTreeMap::from([("mode".to_owned(), "ok".to_owned())]));
    let (entries, _) = v1.on_loyalty_event(&paid_order(2), &ok).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].points, entries[0].reason.as_str()),
        (7, "chaos loyalty ok")
    );

    // The manifest's version must be the component's, either way.
    let mut claims_v2 = v1_manifest;
    claims_v2.abi = semver::Version::new(0, 2, 0);
    let err = runtime.load(claims_v2, &v1_wasm, None).unwrap_err();
    assert!(matches!(err, LoadError::IncompatibleAbi(_)), "{err}");
    assert!(err.to_string().contains("loyalty@0.1.0"), "{err}");
    let mut claims_v1 = manifest;
    claims_v1.abi = semver::Version::new(0, 1, 0);
    let err = runtime.load(claims_v1, &wasm, None).unwrap_err();
    assert!(matches!(err, LoadError::IncompatibleAbi(_)), "{err}");
    assert!(err.to_string().contains("loyalty@0.2.0"), "{err}");
}

/// An event with more order lines than the host takes is refused before the call.
#[test]
fn an_oversized_loyalty_event_is_refused_before_the_call() {
    let runtime = olivine_plugin_runtime::Runtime::new(olivine_plugin_runtime::RuntimeConfig {
        max_input_items: 5,
        ..Default::default()
    })
    .unwrap();
    let plugin = load(&runtime, "loyalty-points", "loyalty_points");
    let settings = Arc::new(BTreeMap::new());
    assert!(plugin.on_loyalty_event(&paid_order(5), &settings).is_ok());
    let err = plugin
        .on_loyalty_event(&paid_order(6), &settings)
        .unwrap_err();
    assert_eq!(err.kind(), "input_too_large", "{err}");
}
