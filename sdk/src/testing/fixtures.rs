//! Runs a plugin's `fixtures/*.json` natively (feature `fixtures`), the same files the
//! kernel's fixture runner uses against the built component. Add to a plugin:
//!
//! ```toml
//! [dev-dependencies]
//! olivine-sdk = { path = "../../sdk", features = ["fixtures"] }
//! ```
//!
//! ```ignore
//! #[test]
//! fn fixtures() {
//!     olivine_sdk::testing::fixtures::check_pricing::<MyRule>(env!("CARGO_MANIFEST_DIR"));
//! }
//! ```
//!
//! Fixture format (snake_case fields mirroring the WIT records, enums as their WIT names,
//! `option<T>` as `null` or the value, tuples as arrays):
//!
//! ```json
//! { "description": "...", "settings": {"key": "value"}, "call": "price",
//!   "input": { ... }, "expect": {"ok": ...} }
//! ```
//!
//! `expect` is `{"ok": value}`, `{"err": value}` or, for taxonomies, `{"ok_skus": [..]}`
//! (only the derived SKUs are compared). A taxonomy's `err` lists field errors and only
//! their `field`s are compared.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::loyalty_event::EPOCH;
use crate::loyalty_types::{CustomerHistory, LoyaltyEvent, OrderLine};
use crate::types::{
    self, Adjustment, AttributeSpec, Cart, CartLine, CustomerRef, FieldError, Money, PointsEntry,
    ProductInput, ProductRef, ProductType, TaxonomyInfo, ValidatedProduct, VariantInput,
};
use crate::{LoyaltyRule, LoyaltyRuleV0_1, PricingRule, VariantTaxonomy};

type Fail = String;

/// One parsed fixture file.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The file it came from.
    pub path: PathBuf,
    /// What it checks.
    pub description: String,
    /// Settings for the call (all values strings).
    pub settings: Vec<(String, String)>,
    /// `price`, `validate`, `describe` or `on_event`.
    pub call: String,
    /// The call's argument (`null` for `describe`).
    pub input: Value,
    /// `{"ok": ..}`, `{"err": ..}` or `{"ok_skus": [..]}`.
    pub expect: Value,
}

/// Reads every `*.json` in `<crate_dir>/fixtures`, sorted by name. Panics when there are
/// none or one does not parse.
pub fn load(crate_dir: impl AsRef<Path>) -> Vec<Fixture> {
    let dir = crate_dir.as_ref().join("fixtures");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            parse_fixture(&value)
                .map(|mut f| {
                    f.path = path.clone();
                    f
                })
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

fn parse_fixture(v: &Value) -> Result<Fixture, Fail> {
    let settings = match v.get("settings") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(format!("settings.{k} must be a string")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("settings must be an object".into()),
    };
    Ok(Fixture {
        path: PathBuf::new(),
        description: string(v, "description")?,
        settings,
        call: string(v, "call")?,
        input: v.get("input").cloned().unwrap_or(Value::Null),
        expect: v.get("expect").cloned().ok_or("missing expect")?,
    })
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, Fail> {
    v.get(key).ok_or_else(|| format!("missing `{key}` in {v}"))
}

fn string(v: &Value, key: &str) -> Result<String, Fail> {
    field(v, key)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("`{key}` must be a string"))
}

fn int<T: TryFrom<i64> + TryFrom<u64>>(v: &Value, key: &str) -> Result<T, Fail> {
    let raw = field(v, key)?;
    let out = match (raw.as_u64(), raw.as_i64()) {
        (Some(u), _) => T::try_from(u).ok(),
        (None, Some(i)) => T::try_from(i).ok(),
        _ => None,
    };
    out.ok_or_else(|| format!("`{key}` must be an integer in range, got {raw}"))
}

fn boolean(v: &Value, key: &str) -> Result<bool, Fail> {
    field(v, key)?
        .as_bool()
        .ok_or_else(|| format!("`{key}` must be a boolean"))
}

fn list<T>(v: &Value, key: &str, each: impl Fn(&Value) -> Result<T, Fail>) -> Result<Vec<T>, Fail> {
    field(v, key)?
        .as_array()
        .ok_or_else(|| format!("`{key}` must be an array"))?
        .iter()
        .map(each)
        .collect()
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, Fail> {
    list(v, key, |s| {
        s.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("`{key}` holds a non-string"))
    })
}

fn optional<T>(
    v: &Value,
    key: &str,
    each: impl Fn(&Value) -> Result<T, Fail>,
) -> Result<Option<T>, Fail> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(inner) => each(inner).map(Some),
    }
}

/// A `cart` record from fixture JSON.
pub fn cart(v: &Value) -> Result<Cart, Fail> {
    Ok(Cart {
        currency: string(v, "currency")?,
        lines: list(v, "lines", |l| {
            Ok(CartLine {
                line_id: int(l, "line_id")?,
                product_index: int(l, "product_index")?,
                variant_id: int(l, "variant_id")?,
                quantity: int(l, "quantity")?,
                unit_price_minor: int(l, "unit_price_minor")?,
                subscription: boolean(l, "subscription")?,
            })
        })?,
        products: list(v, "products", |p| {
            let kind = string(p, "product_type")?;
            Ok(ProductRef {
                id: int(p, "id")?,
                slug: string(p, "slug")?,
                product_type: ProductType::parse(&kind)
                    .ok_or_else(|| format!("unknown product_type `{kind}`"))?,
                tags: strings(p, "tags")?,
                categories: strings(p, "categories")?,
            })
        })?,
        customer: optional(v, "customer", customer)?,
    })
}

fn customer(v: &Value) -> Result<CustomerRef, Fail> {
    Ok(CustomerRef {
        pseudonym: string(v, "pseudonym")?,
        segments: strings(v, "segments")?,
    })
}

/// A `product-input` record from fixture JSON.
pub fn product_input(v: &Value) -> Result<ProductInput, Fail> {
    Ok(ProductInput {
        slug: string(v, "slug")?,
        name: string(v, "name")?,
        attributes_json: string(v, "attributes_json")?,
        variants: list(v, "variants", |var| {
            Ok(VariantInput {
                sku: optional(var, "sku", |s| {
                    s.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| "`sku` must be a string or null".into())
                })?,
                options: list(var, "options", |pair| {
                    match pair.as_array().map(Vec::as_slice) {
                        Some([Value::String(n), Value::String(val)]) => {
                            Ok((n.clone(), val.clone()))
                        }
                        _ => Err(format!("an option must be [name, value], got {pair}")),
                    }
                })?,
                price_minor: int(var, "price_minor")?,
                weight_grams: int(var, "weight_grams")?,
            })
        })?,
    })
}

fn money(m: &Value) -> Result<Money, Fail> {
    Ok(Money::new(int(m, "amount_minor")?, string(m, "currency")?))
}

/// A string field that may be left out.
fn string_or(v: &Value, key: &str, default: &str) -> Result<String, Fail> {
    Ok(optional(v, key, |s| {
        s.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("`{key}` must be a string"))
    })?
    .unwrap_or_else(|| default.to_owned()))
}

/// A 0.2 `loyalty-event` record from fixture JSON. What 0.2 added may be left out, as
/// in the kernel's fixture runner: no lines, no product, a zero history (in the event's
/// currency) and `1970-01-01T00:00:00Z` as the time.
pub fn loyalty_event(v: &Value) -> Result<LoyaltyEvent, Fail> {
    let v0_1 = loyalty_event_v0_1(v)?;
    let zero = || {
        Money::zero(
            v0_1.amount
                .as_ref()
                .map(|m| m.currency.clone())
                .unwrap_or_default(),
        )
    };
    let history = optional(v, "history", |h| {
        Ok(CustomerHistory {
            spend_12_months: optional(h, "spend_12_months", money)?.unwrap_or_else(zero),
            orders_12_months: optional(h, "orders_12_months", |n| {
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| "`orders_12_months` must be a u32".into())
            })?
            .unwrap_or(0),
            customer_since: string_or(h, "customer_since", EPOCH)?,
        })
    })?
    .unwrap_or_else(|| CustomerHistory {
        spend_12_months: zero(),
        orders_12_months: 0,
        customer_since: EPOCH.to_owned(),
    });
    let lines = match v.get("lines") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) => list(v, "lines", |l| {
            Ok(OrderLine {
                sku: string(l, "sku")?,
                product_slug: string_or(l, "product_slug", "")?,
                categories: match l.get("categories") {
                    None => Vec::new(),
                    Some(_) => strings(l, "categories")?,
                },
                quantity: int(l, "quantity")?,
                total: money(field(l, "total")?)?,
                subscription: match l.get("subscription") {
                    None => false,
                    Some(_) => boolean(l, "subscription")?,
                },
            })
        })?,
    };
    Ok(LoyaltyEvent {
        kind: v0_1.kind,
        customer: v0_1.customer,
        amount: v0_1.amount,
        count: v0_1.count,
        event_id: v0_1.event_id,
        occurred_at: string_or(v, "occurred_at", EPOCH)?,
        lines,
        history,
        product_slug: optional(v, "product_slug", |s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or_else(|| "`product_slug` must be a string or null".into())
        })?,
    })
}

/// A 0.1 `loyalty-event` record from fixture JSON (0.2's fields are ignored).
pub fn loyalty_event_v0_1(v: &Value) -> Result<types::LoyaltyEvent, Fail> {
    Ok(types::LoyaltyEvent {
        kind: string(v, "kind")?,
        customer: customer(field(v, "customer")?)?,
        amount: optional(v, "amount", money)?,
        count: optional(v, "count", |c| {
            c.as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .ok_or_else(|| "`count` must be a u32 or null".into())
        })?,
        event_id: string(v, "event_id")?,
    })
}

/// Fixture JSON of an adjustment.
pub fn adjustment_json(a: &Adjustment) -> Value {
    json!({"line_id": a.line_id, "amount_minor": a.amount_minor, "reason": a.reason})
}

/// Fixture JSON of a points entry.
pub fn points_json(p: &PointsEntry) -> Value {
    json!({"points": p.points, "reason": p.reason})
}

/// Fixture JSON of a validated product.
pub fn validated_json(p: &ValidatedProduct) -> Value {
    json!({
        "attributes_json": p.attributes_json,
        "variants": p.variants.iter()
            .map(|v| json!({"sku": v.sku, "weight_grams": v.weight_grams}))
            .collect::<Vec<_>>(),
    })
}

/// Fixture JSON of a field error.
pub fn field_error_json(e: &FieldError) -> Value {
    json!({"field": e.field, "message": e.message})
}

/// Fixture JSON of taxonomy info.
pub fn taxonomy_info_json(info: &TaxonomyInfo) -> Value {
    let spec = |a: &AttributeSpec| json!({"name": a.name, "description": a.description, "required": a.required, "kind": a.kind});
    json!({
        "product_type": info.product_type.as_str(),
        "attributes": info.attributes.iter().map(spec).collect::<Vec<_>>(),
        "option_names": info.option_names,
    })
}

fn compare_plain(expect: &Value, got: Result<Value, Value>) -> Result<(), Fail> {
    let (key, want) = single_key(expect)?;
    let (got_key, got_value) = match &got {
        Ok(v) => ("ok", v),
        Err(v) => ("err", v),
    };
    if key != got_key || want != got_value {
        return Err(format!(
            "expected {{\"{key}\": {want}}}\n     got {{\"{got_key}\": {got_value}}}"
        ));
    }
    Ok(())
}

fn single_key(expect: &Value) -> Result<(&str, &Value), Fail> {
    match expect.as_object() {
        Some(map) if map.len() == 1 => {
            let (k, v) = map.iter().next().unwrap();
            Ok((k.as_str(), v))
        }
        _ => Err(format!("expect must have exactly one key, got {expect}")),
    }
}

fn run_all(crate_dir: &str, mut each: impl FnMut(&Fixture) -> Result<(), Fail>) -> usize {
    let fixtures = load(crate_dir);
    let mut failures = Vec::new();
    for fixture in &fixtures {
        super::clear();
        super::set_settings(fixture.settings.iter().cloned());
        if let Err(why) = each(fixture) {
            failures.push(format!(
                "{} ({}):\n     {why}",
                fixture.path.file_name().unwrap().to_string_lossy(),
                fixture.description
            ));
        }
        super::clear();
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    fixtures.len()
}

fn expect_call(f: &Fixture, calls: &[&str]) -> Result<(), Fail> {
    if calls.contains(&f.call.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "call `{}` is not one of {}",
            f.call,
            calls.join(", ")
        ))
    }
}

/// Runs a pricing rule's fixtures; returns how many ran. Panics listing every failure.
pub fn check_pricing<T: PricingRule>(crate_dir: &str) -> usize {
    run_all(crate_dir, |f| {
        expect_call(f, &["price"])?;
        let got = T::price(&cart(&f.input)?)
            .map(|adjs| Value::Array(adjs.iter().map(adjustment_json).collect()))
            .map_err(Value::String);
        compare_plain(&f.expect, got)
    })
}

/// Runs a loyalty rule's fixtures; returns how many ran. Panics listing every failure.
pub fn check_loyalty<T: LoyaltyRule>(crate_dir: &str) -> usize {
    run_all(crate_dir, |f| {
        expect_call(f, &["on_event"])?;
        let got = T::on_event(&loyalty_event(&f.input)?)
            .map(|entries| Value::Array(entries.iter().map(points_json).collect()))
            .map_err(Value::String);
        compare_plain(&f.expect, got)
    })
}

/// Runs the fixtures of a loyalty rule built for 0.1; returns how many ran. Panics
/// listing every failure.
pub fn check_loyalty_v0_1<T: LoyaltyRuleV0_1>(crate_dir: &str) -> usize {
    run_all(crate_dir, |f| {
        expect_call(f, &["on_event"])?;
        let got = T::on_event(&loyalty_event_v0_1(&f.input)?)
            .map(|entries| Value::Array(entries.iter().map(points_json).collect()))
            .map_err(Value::String);
        compare_plain(&f.expect, got)
    })
}

/// Runs a taxonomy's fixtures; returns how many ran. Panics listing every failure.
pub fn check_taxonomy<T: VariantTaxonomy>(crate_dir: &str) -> usize {
    run_all(crate_dir, |f| {
        expect_call(f, &["validate", "describe"])?;
        if f.call == "describe" {
            return compare_plain(&f.expect, Ok(taxonomy_info_json(&T::describe())));
        }
        let got = T::validate(&product_input(&f.input)?);
        let (key, want) = single_key(&f.expect)?;
        match (key, &got) {
            ("ok_skus", Ok(product)) => {
                let skus: Vec<Value> = product.variants.iter().map(|v| json!(v.sku)).collect();
                if want.as_array() != Some(&skus) {
                    return Err(format!("expected SKUs {want}, got {}", Value::Array(skus)));
                }
                Ok(())
            }
            ("ok", Ok(product)) => compare_plain(&f.expect, Ok(validated_json(product))),
            ("err", Err(errors)) => {
                let want_fields: Vec<&Value> = want
                    .as_array()
                    .ok_or("err must list field errors")?
                    .iter()
                    .map(|e| e.get("field").ok_or("a field error without `field`"))
                    .collect::<Result<_, _>>()?;
                let got_fields: Vec<Value> = errors.iter().map(|e| json!(e.field)).collect();
                if want_fields.iter().copied().ne(got_fields.iter()) {
                    return Err(format!(
                        "expected error fields {:?}, got {:?}",
                        want_fields,
                        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
                    ));
                }
                Ok(())
            }
            (_, Ok(product)) => Err(format!(
                "expected {key}, got ok {}",
                validated_json(product)
            )),
            (_, Err(errors)) => Err(format!(
                "expected {key}, got err {}",
                Value::Array(errors.iter().map(field_error_json).collect())
            )),
        }
    })
}
