//! Self-test fixtures: `fixtures/*.json` shipped with a plugin, run through the real
//! host at install time and by `olivine plugin test`. A fixture names the call, its
//! input and settings, and the expected result (see the plugin SDK's README).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bindings::{loyalty_types, types};
use crate::runtime::Plugin;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    pub call: String,
    #[serde(default)]
    pub input: Value,
    pub expect: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct FixtureOutcome {
    pub name: String,
    pub passed: bool,
    /// What went wrong, or empty.
    pub message: String,
}

// ---- JSON mirrors of the WIT records ---------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProductTypeJson {
    Supplement,
    Skincare,
    Bundle,
}

impl From<ProductTypeJson> for types::ProductType {
    fn from(t: ProductTypeJson) -> Self {
        match t {
            ProductTypeJson::Supplement => types::ProductType::Supplement,
            ProductTypeJson::Skincare => types::ProductType::Skincare,
            ProductTypeJson::Bundle => types::ProductType::Bundle,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductRefJson {
    pub id: u64,
    pub slug: String,
    pub product_type: ProductTypeJson,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartLineJson {
    pub line_id: u32,
    pub product_index: u32,
    pub variant_id: u64,
    pub quantity: u32,
    pub unit_price_minor: i64,
    #[serde(default)]
    pub subscription: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerRefJson {
    pub pseudonym: String,
    #[serde(default)]
    pub segments: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartJson {
    pub currency: String,
    pub lines: Vec<CartLineJson>,
    pub products: Vec<ProductRefJson>,
    #[serde(default)]
    pub customer: Option<CustomerRefJson>,
}

impl From<&CustomerRefJson> for types::CustomerRef {
    fn from(c: &CustomerRefJson) -> Self {
        types::CustomerRef {
            pseudonym: c.pseudonym.clone(),
            segments: c.segments.clone(),
        }
    }
}

impl From<&CartJson> for types::Cart {
    fn from(cart: &CartJson) -> Self {
        types::Cart {
            currency: cart.currency.clone(),
            lines: cart
                .lines
                .iter()
                .map(|l| types::CartLine {
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
                .map(|p| types::ProductRef {
                    id: p.id,
                    slug: p.slug.clone(),
                    product_type: p.product_type.clone().into(),
                    tags: p.tags.clone(),
                    categories: p.categories.clone(),
                })
                .collect(),
            customer: cart.customer.as_ref().map(Into::into),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentJson {
    pub line_id: Option<u32>,
    pub amount_minor: i64,
    pub reason: String,
}

impl From<&types::Adjustment> for AdjustmentJson {
    fn from(a: &types::Adjustment) -> Self {
        AdjustmentJson {
            line_id: a.line_id,
            amount_minor: a.amount_minor,
            reason: a.reason.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantInputJson {
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub options: Vec<(String, String)>,
    pub price_minor: i64,
    pub weight_grams: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductInputJson {
    pub slug: String,
    pub name: String,
    pub attributes_json: String,
    pub variants: Vec<VariantInputJson>,
}

impl From<&ProductInputJson> for types::ProductInput {
    fn from(p: &ProductInputJson) -> Self {
        types::ProductInput {
            slug: p.slug.clone(),
            name: p.name.clone(),
            attributes_json: p.attributes_json.clone(),
            variants: p
                .variants
                .iter()
                .map(|v| types::VariantInput {
                    sku: v.sku.clone(),
                    options: v.options.clone(),
                    price_minor: v.price_minor,
                    weight_grams: v.weight_grams,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyJson {
    pub amount_minor: i64,
    pub currency: String,
}

/// A 0.2 `loyalty-event`. What 0.2 added is optional, so fixtures written for 0.1 keep
/// parsing: no lines, no product, a zero history, and the start of the epoch as the time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoyaltyEventJson {
    pub kind: String,
    pub customer: CustomerRefJson,
    #[serde(default)]
    pub amount: Option<MoneyJson>,
    #[serde(default)]
    pub count: Option<u32>,
    pub event_id: String,
    #[serde(default = "epoch")]
    pub occurred_at: String,
    #[serde(default)]
    pub lines: Vec<OrderLineJson>,
    #[serde(default)]
    pub history: Option<CustomerHistoryJson>,
    #[serde(default)]
    pub product_slug: Option<String>,
}

/// What a fixture without a time or a customer-since gets.
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

fn epoch() -> String {
    EPOCH.to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLineJson {
    pub sku: String,
    #[serde(default)]
    pub product_slug: String,
    #[serde(default)]
    pub categories: Vec<String>,
    pub quantity: u32,
    pub total: MoneyJson,
    #[serde(default)]
    pub subscription: bool,
}

/// Each field is optional: a zero spend (in the event's currency), no orders, a customer
/// since the start of the epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerHistoryJson {
    #[serde(default)]
    pub spend_12_months: Option<MoneyJson>,
    #[serde(default)]
    pub orders_12_months: u32,
    #[serde(default = "epoch")]
    pub customer_since: String,
}

impl From<&MoneyJson> for types::Money {
    fn from(m: &MoneyJson) -> Self {
        types::Money {
            amount_minor: m.amount_minor,
            currency: m.currency.clone(),
        }
    }
}

impl From<&LoyaltyEventJson> for loyalty_types::LoyaltyEvent {
    fn from(e: &LoyaltyEventJson) -> Self {
        let amount: Option<types::Money> = e.amount.as_ref().map(Into::into);
        let zero = || types::Money {
            amount_minor: 0,
            currency: amount
                .as_ref()
                .map(|m| m.currency.clone())
                .unwrap_or_default(),
        };
        let history = match &e.history {
            Some(h) => loyalty_types::CustomerHistory {
                spend_12_months: h.spend_12_months.as_ref().map_or_else(zero, Into::into),
                orders_12_months: h.orders_12_months,
                customer_since: h.customer_since.clone(),
            },
            None => loyalty_types::CustomerHistory {
                spend_12_months: zero(),
                orders_12_months: 0,
                customer_since: epoch(),
            },
        };
        loyalty_types::LoyaltyEvent {
            kind: e.kind.clone(),
            customer: (&e.customer).into(),
            amount,
            count: e.count,
            event_id: e.event_id.clone(),
            occurred_at: e.occurred_at.clone(),
            lines: e
                .lines
                .iter()
                .map(|l| loyalty_types::OrderLine {
                    sku: l.sku.clone(),
                    product_slug: l.product_slug.clone(),
                    categories: l.categories.clone(),
                    quantity: l.quantity,
                    total: (&l.total).into(),
                    subscription: l.subscription,
                })
                .collect(),
            history,
            product_slug: e.product_slug.clone(),
        }
    }
}

// ---- running -----------------------------------------------------------------------------

fn compare(name: &str, expected: &Value, actual: Value) -> FixtureOutcome {
    let passed = *expected == actual;
    FixtureOutcome {
        name: name.to_owned(),
        passed,
        message: if passed {
            String::new()
        } else {
            format!("expected {expected}, got {actual}")
        },
    }
}

fn failed(name: &str, message: impl Into<String>) -> FixtureOutcome {
    FixtureOutcome {
        name: name.to_owned(),
        passed: false,
        message: message.into(),
    }
}

/// Runs one fixture against a loaded plugin. Settings are checked against the
/// manifest as the kernel would check a merchant's.
pub fn run(plugin: &Plugin, name: &str, fixture: &Fixture) -> FixtureOutcome {
    let settings = match plugin.manifest.resolve_settings(&fixture.settings) {
        Ok(settings) => Arc::new(settings),
        Err(problems) => {
            // A fixture may expect the settings to be refused.
            let fields: Vec<Value> = problems
                .iter()
                .map(|p| Value::from(p.field.clone()))
                .collect();
            if let Some(expected) = fixture.expect.get("settings_err") {
                return compare(name, expected, Value::Array(fields));
            }
            return failed(name, format!("settings refused: {problems:?}"));
        }
    };
    let input = |what: &str| format!("input is not a {what}");
    match fixture.call.as_str() {
        "price" => {
            let cart: CartJson = match serde_json::from_value(fixture.input.clone()) {
                Ok(cart) => cart,
                Err(e) => return failed(name, format!("{}: {e}", input("cart"))),
            };
            match plugin.price(&(&cart).into(), &settings) {
                Ok((adjustments, _)) => {
                    let adjustments: Vec<AdjustmentJson> =
                        adjustments.iter().map(Into::into).collect();
                    compare(
                        name,
                        &fixture.expect,
                        serde_json::json!({ "ok": adjustments }),
                    )
                }
                Err(crate::CallError::Plugin(message)) => {
                    compare(name, &fixture.expect, serde_json::json!({ "err": message }))
                }
                Err(other) => failed(name, other.to_string()),
            }
        }
        "validate" => {
            let product: ProductInputJson = match serde_json::from_value(fixture.input.clone()) {
                Ok(p) => p,
                Err(e) => return failed(name, format!("{}: {e}", input("product-input"))),
            };
            match plugin.validate_product(&(&product).into(), &settings) {
                Ok((Ok(valid), _)) => {
                    let skus: Vec<String> = valid.variants.iter().map(|v| v.sku.clone()).collect();
                    if let Some(expected) = fixture.expect.get("ok_skus") {
                        compare(name, expected, serde_json::json!(skus))
                    } else {
                        compare(
                            name,
                            &fixture.expect,
                            serde_json::json!({
                                "ok": {
                                    "attributes_json": valid.attributes_json,
                                    "variants": valid.variants.iter().map(|v| serde_json::json!({"sku": v.sku, "weight_grams": v.weight_grams})).collect::<Vec<_>>(),
                                }
                            }),
                        )
                    }
                }
                Ok((Err(fields), _)) => {
                    // Only the fields are compared: messages are the plugin's to word.
                    let actual: Vec<Value> = fields
                        .iter()
                        .map(|f| Value::from(f.field.clone()))
                        .collect();
                    let expected: Vec<Value> = fixture
                        .expect
                        .get("err")
                        .and_then(Value::as_array)
                        .map(|errs| {
                            errs.iter()
                                .map(|e| e.get("field").cloned().unwrap_or_else(|| e.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    compare(name, &Value::Array(expected), Value::Array(actual))
                }
                Err(other) => failed(name, other.to_string()),
            }
        }
        "describe" => match plugin.describe_taxonomy(&settings) {
            Ok((info, _)) => {
                let product_type = match info.product_type {
                    types::ProductType::Supplement => "supplement",
                    types::ProductType::Skincare => "skincare",
                    types::ProductType::Bundle => "bundle",
                };
                let actual = serde_json::json!({ "ok": { "product_type": product_type } });
                let expected = serde_json::json!({ "ok": { "product_type": fixture.expect.pointer("/ok/product_type").cloned().unwrap_or(Value::Null) } });
                compare(name, &expected, actual)
            }
            Err(other) => failed(name, other.to_string()),
        },
        "on_event" => {
            let event: LoyaltyEventJson = match serde_json::from_value(fixture.input.clone()) {
                Ok(e) => e,
                Err(e) => return failed(name, format!("{}: {e}", input("loyalty-event"))),
            };
            match plugin.on_loyalty_event(&(&event).into(), &settings) {
                Ok((entries, _)) => {
                    let entries: Vec<Value> = entries
                        .iter()
                        .map(|e| serde_json::json!({ "points": e.points, "reason": e.reason }))
                        .collect();
                    compare(name, &fixture.expect, serde_json::json!({ "ok": entries }))
                }
                Err(crate::CallError::Plugin(message)) => {
                    compare(name, &fixture.expect, serde_json::json!({ "err": message }))
                }
                Err(other) => failed(name, other.to_string()),
            }
        }
        other => failed(
            name,
            format!("unknown call `{other}` (price, validate, describe, on_event)"),
        ),
    }
}

/// Runs every fixture of a list of `(file name, JSON text)`.
pub fn run_all(plugin: &Plugin, fixtures: &[(String, String)]) -> Vec<FixtureOutcome> {
    fixtures
        .iter()
        .map(|(name, text)| match serde_json::from_str::<Fixture>(text) {
            Ok(fixture) => run(plugin, name, &fixture),
            Err(e) => failed(name, format!("not a fixture: {e}")),
        })
        .collect()
}

/// Reads `dir/*.json`, sorted by name; a missing directory has no fixtures.
pub fn read_dir(dir: &std::path::Path) -> std::io::Result<Vec<(String, String)>> {
    let mut fixtures = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(fixtures);
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            fixtures.push((name, std::fs::read_to_string(&path)?));
        }
    }
    fixtures.sort();
    Ok(fixtures)
}
