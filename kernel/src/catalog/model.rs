//! Catalog types, the API's request and response shapes, and input validation.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Problems, Result};
use crate::http::schema::{
    CurrencyCode, NonBlankText, NonBlankText100, NonBlankText200, Sku, SkuOrBlank, Slug,
    SubscriptionInterval, Tag,
};
use crate::inventory::Availability;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductType {
    Supplement,
    Skincare,
    Bundle,
}

impl ProductType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductType::Supplement => "supplement",
            ProductType::Skincare => "skincare",
            ProductType::Bundle => "bundle",
        }
    }

    pub fn parse(text: &str) -> Option<ProductType> {
        match text {
            "supplement" => Some(ProductType::Supplement),
            "skincare" => Some(ProductType::Skincare),
            "bundle" => Some(ProductType::Bundle),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    Draft,
    #[default]
    Active,
    Archived,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductStatus::Draft => "draft",
            ProductStatus::Active => "active",
            ProductStatus::Archived => "archived",
        }
    }

    pub fn parse(text: &str) -> Option<ProductStatus> {
        match text {
            "draft" => Some(ProductStatus::Draft),
            "active" => Some(ProductStatus::Active),
            "archived" => Some(ProductStatus::Archived),
            _ => None,
        }
    }
}

/// An amount of money: integer minor units (cents) and an ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

impl Money {
    /// For display only: "€19.99", "$5.00", or "19.99 CHF".
    pub fn display(&self) -> String {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        let number = format!("{}.{:02}", abs / 100, abs % 100);
        match self.currency.as_str() {
            "EUR" => format!("{sign}€{number}"),
            "USD" => format!("{sign}${number}"),
            "GBP" => format!("{sign}£{number}"),
            other => format!("{sign}{number} {other}"),
        }
    }
}

// ---- type-specific attributes -------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SupplementForm {
    Capsules,
    Tablets,
    Softgels,
    Powder,
    Liquid,
    Gummies,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ingredient {
    #[schema(value_type = NonBlankText)]
    pub name: String,
    /// A positive number.
    #[schema(exclusive_minimum = 0)]
    pub amount: f64,
    #[schema(value_type = NonBlankText)]
    pub unit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupplementAttributes {
    pub form: SupplementForm,
    /// At least one.
    #[schema(min_items = 1)]
    pub ingredients: Vec<Ingredient>,
    #[schema(value_type = NonBlankText)]
    pub serving_size: String,
    #[schema(minimum = 1, maximum = 4294967295_u32)]
    pub servings_per_container: u32,
    #[schema(value_type = NonBlankText)]
    pub usage: String,
    /// `null` counts as absent.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub allergens: Vec<String>,
    /// `null` counts as absent.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub warnings: String,
    /// The regulatory disclaimer every supplement carries.
    #[schema(value_type = NonBlankText)]
    pub disclaimer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkinType {
    Dry,
    Normal,
    Oily,
    Combination,
    Sensitive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoutineStep {
    Cleanse,
    Tone,
    Serum,
    Treat,
    Moisturise,
    Protect,
    Mask,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkincareAttributes {
    /// At least one.
    #[schema(min_items = 1)]
    pub skin_types: Vec<SkinType>,
    #[schema(minimum = 1, maximum = 4294967295_u32)]
    pub volume_ml: u32,
    pub routine_step: RoutineStep,
    #[schema(value_type = NonBlankText)]
    pub application: String,
    /// `null` counts as absent.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub key_ingredients: Vec<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 4294967295_u32)]
    pub period_after_opening_months: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BundleKind {
    Multipack,
    Kit,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BundleAttributes {
    pub kind: BundleKind,
    /// `null` counts as absent.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable)]
    pub contents_note: String,
}

/// An optional attribute's value with `null` read as absent, as the taxonomy plugins
/// read attributes (so a product type checks the same with its taxonomy or without).
fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The schema of `attributes`: the attributes of the product's type, which must be the
/// one of `product_type` (checked by [`validate_attributes`]).
pub struct ProductAttributes;

impl utoipa::PartialSchema for ProductAttributes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{OneOfBuilder, Ref};
        OneOfBuilder::new()
            .description(Some(
                "The attributes of the product's type: `SupplementAttributes` for a \
                 supplement, `SkincareAttributes` for skincare, `BundleAttributes` for a \
                 bundle.",
            ))
            .item(Ref::from_schema_name("SupplementAttributes"))
            .item(Ref::from_schema_name("SkincareAttributes"))
            .item(Ref::from_schema_name("BundleAttributes"))
            .into()
    }
}

impl ToSchema for ProductAttributes {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((
            SupplementAttributes::name().into(),
            SupplementAttributes::schema(),
        ));
        <SupplementAttributes as ToSchema>::schemas(schemas);
        schemas.push((
            SkincareAttributes::name().into(),
            SkincareAttributes::schema(),
        ));
        <SkincareAttributes as ToSchema>::schemas(schemas);
        schemas.push((BundleAttributes::name().into(), BundleAttributes::schema()));
        <BundleAttributes as ToSchema>::schemas(schemas);
    }
}

/// The schema of a variant's `options` ([`check_options`]).
pub struct VariantOptions;

impl utoipa::PartialSchema for VariantOptions {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let text = |max: usize| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(max))
                .pattern(Some(crate::http::schema::NON_BLANK))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Option values by name, e.g. `{\"size\": \"60 capsules\"}`: at most 10; \
                 names of 1 to 50 characters, values of 1 to 100, neither only whitespace.",
            ))
            .max_properties(Some(10))
            .property_names(Some(text(50)))
            .additional_properties(Some(text(100)))
            .examples([serde_json::json!({"size": "60 capsules"})])
            .into()
    }
}

impl ToSchema for VariantOptions {}

/// Checks `attributes` against the schema of `product_type` and returns them normalised.
/// Field paths in errors start with `attributes.`.
pub fn validate_attributes(
    product_type: ProductType,
    attributes: &serde_json::Value,
) -> Result<serde_json::Value> {
    fn parse<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T> {
        serde_path_to_error::deserialize(value).map_err(|err| {
            let path = err.path().to_string();
            let (field, message) =
                crate::http::extract::field_and_message(&path, &err.into_inner().to_string());
            let field = if field == "body" {
                "attributes".to_owned()
            } else {
                format!("attributes.{field}")
            };
            crate::Error::invalid(field, message)
        })
    }
    let mut problems = Problems::new();
    let normalised = match product_type {
        ProductType::Supplement => {
            let attrs: SupplementAttributes = parse(attributes)?;
            problems.check(
                !attrs.ingredients.is_empty(),
                "attributes.ingredients",
                "a supplement lists at least one ingredient",
            );
            for (i, ingredient) in attrs.ingredients.iter().enumerate() {
                problems.check(
                    !ingredient.name.trim().is_empty(),
                    format!("attributes.ingredients[{i}].name"),
                    "must not be empty",
                );
                problems.check(
                    ingredient.amount.is_finite() && ingredient.amount > 0.0,
                    format!("attributes.ingredients[{i}].amount"),
                    "must be a positive number",
                );
                problems.check(
                    !ingredient.unit.trim().is_empty(),
                    format!("attributes.ingredients[{i}].unit"),
                    "must not be empty",
                );
            }
            problems.check(
                !attrs.serving_size.trim().is_empty(),
                "attributes.serving_size",
                "must not be empty",
            );
            problems.check(
                attrs.servings_per_container > 0,
                "attributes.servings_per_container",
                "must be at least 1",
            );
            problems.check(
                !attrs.disclaimer.trim().is_empty(),
                "attributes.disclaimer",
                "a supplement must carry its regulatory disclaimer",
            );
            problems.check(
                !attrs.usage.trim().is_empty(),
                "attributes.usage",
                "must not be empty",
            );
            serde_json::to_value(attrs)
        }
        ProductType::Skincare => {
            let attrs: SkincareAttributes = parse(attributes)?;
            problems.check(
                !attrs.skin_types.is_empty(),
                "attributes.skin_types",
                "name at least one skin type",
            );
            problems.check(
                attrs.volume_ml > 0,
                "attributes.volume_ml",
                "must be at least 1",
            );
            problems.check(
                !attrs.application.trim().is_empty(),
                "attributes.application",
                "must not be empty",
            );
            serde_json::to_value(attrs)
        }
        ProductType::Bundle => serde_json::to_value(parse::<BundleAttributes>(attributes)?),
    }
    .map_err(anyhow::Error::from)?;
    problems.into_result()?;
    Ok(normalised)
}

// ---- requests ---------------------------------------------------------------------------

/// A bundle variant's component: another (non-bundle) variant, by SKU.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentInput {
    /// A variant of another, non-bundle product.
    #[schema(value_type = Sku)]
    pub sku: String,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVariant {
    /// Leave out, or blank, to have the taxonomy plugin of the product's type derive it.
    #[serde(default)]
    #[schema(value_type = SkuOrBlank)]
    pub sku: String,
    #[schema(value_type = NonBlankText200)]
    pub title: String,
    /// Option values such as `{"size": "60 capsules", "flavour": "vanilla"}`.
    #[serde(default)]
    #[schema(value_type = VariantOptions)]
    pub options: BTreeMap<String, String>,
    /// Price in minor units (cents), at most 1,000,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub price_minor: i64,
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub weight_grams: i64,
    /// Required (1 to 50) for variants of bundle products, forbidden otherwise; each SKU
    /// once.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub components: Vec<ComponentInput>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    #[schema(value_type = Slug)]
    pub slug: String,
    #[schema(value_type = NonBlankText200)]
    pub name: String,
    pub product_type: ProductType,
    #[serde(default)]
    #[schema(max_length = 20000)]
    pub description: String,
    #[serde(default)]
    pub status: ProductStatus,
    /// Slugs of existing categories, at most 20.
    #[serde(default)]
    #[schema(value_type = Vec<Slug>, max_items = 20)]
    pub categories: Vec<String>,
    /// At most 30.
    #[serde(default)]
    #[schema(value_type = Vec<Tag>, max_items = 30)]
    pub tags: Vec<String>,
    /// How often it can be delivered on subscription (`30d`, `2w`, `1m`), the first
    /// the default; empty: not sold on subscription. Absent: `30d`, `60d`, `90d`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<SubscriptionInterval>>, max_items = 6)]
    pub subscription_intervals: Option<Vec<String>>,
    /// The attributes of `product_type` (`SupplementAttributes`, `SkincareAttributes`
    /// or `BundleAttributes`).
    #[schema(value_type = ProductAttributes)]
    pub attributes: serde_json::Value,
    /// At most 100.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub variants: Vec<NewVariant>,
}

/// A partial update; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    #[schema(value_type = Option<Slug>)]
    pub slug: Option<String>,
    #[schema(value_type = Option<NonBlankText200>)]
    pub name: Option<String>,
    #[schema(max_length = 20000)]
    pub description: Option<String>,
    pub status: Option<ProductStatus>,
    /// Slugs of existing categories, at most 20.
    #[schema(value_type = Option<Vec<Slug>>, max_items = 20)]
    pub categories: Option<Vec<String>>,
    /// At most 30.
    #[schema(value_type = Option<Vec<Tag>>, max_items = 30)]
    pub tags: Option<Vec<String>>,
    /// How often it can be delivered on subscription, the first the default; empty: not
    /// sold on subscription. Subscriptions running keep their interval.
    #[schema(value_type = Option<Vec<SubscriptionInterval>>, max_items = 6)]
    pub subscription_intervals: Option<Vec<String>>,
    /// The attributes of the product's type.
    #[schema(value_type = Option<ProductAttributes>)]
    pub attributes: Option<serde_json::Value>,
    /// When given, the update is refused with 409 unless it matches the stored version.
    pub version: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantPatch {
    /// Blank: the taxonomy plugin of the product's type derives it again.
    #[schema(value_type = Option<SkuOrBlank>)]
    pub sku: Option<String>,
    #[schema(value_type = Option<NonBlankText200>)]
    pub title: Option<String>,
    #[schema(value_type = Option<VariantOptions>)]
    pub options: Option<BTreeMap<String, String>>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub price_minor: Option<i64>,
    #[schema(value_type = Option<CurrencyCode>)]
    pub currency: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub weight_grams: Option<i64>,
    /// For a variant of a bundle product: 1 to 50, each SKU once.
    #[schema(max_items = 50)]
    pub components: Option<Vec<ComponentInput>>,
    pub position: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    #[schema(value_type = Slug)]
    pub slug: String,
    #[schema(value_type = NonBlankText100)]
    pub name: String,
    /// Slug of the parent category, if any (an existing one).
    #[serde(default)]
    #[schema(value_type = Option<Slug>)]
    pub parent: Option<String>,
    #[serde(default)]
    pub position: i64,
}

// ---- responses --------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CategoryRef {
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Category {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub parent: Option<String>,
    pub position: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Component {
    pub variant_id: i64,
    pub sku: String,
    pub title: String,
    pub product_name: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Variant {
    pub id: i64,
    pub sku: String,
    pub title: String,
    pub options: BTreeMap<String, String>,
    pub price: Money,
    pub weight_grams: i64,
    pub position: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    pub availability: Availability,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Product {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub product_type: ProductType,
    pub description: String,
    pub status: ProductStatus,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    pub categories: Vec<CategoryRef>,
    pub tags: Vec<String>,
    /// How often it can be delivered on subscription, the first the default; empty:
    /// not sold on subscription.
    #[schema(value_type = Vec<SubscriptionInterval>)]
    pub subscription_intervals: Vec<String>,
    pub variants: Vec<Variant>,
    /// Published reviews: the average rating, the count and the newest ten.
    pub reviews: crate::reviews::ReviewSummary,
    /// Images in order, each with its variants (widths in AVIF, WebP and JPEG) for a
    /// client to pick from.
    pub images: Vec<crate::media::ProductImage>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Product {
    /// The variant the storefront shows first: the first one in stock, else the first.
    pub fn default_variant(&self) -> Option<&Variant> {
        self.variants
            .iter()
            .find(|v| v.availability.sellable_quantity > 0)
            .or_else(|| self.variants.first())
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductSummary {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub product_type: ProductType,
    pub status: ProductStatus,
    /// The lowest variant price.
    pub price_from: Option<Money>,
    pub variant_count: i64,
    /// In stock when any variant can be sold.
    pub availability: Availability,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductSummary>,
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
}

// ---- field rules ---------------------------------------------------------------------

pub fn check_slug(problems: &mut Problems, field: &str, slug: &str) {
    let ok = !slug.is_empty()
        && slug.len() <= 100
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    problems.check(
        ok,
        field,
        "use 1-100 lowercase letters, digits and inner hyphens",
    );
}

pub fn check_text(problems: &mut Problems, field: &str, text: &str, max: usize) {
    if text.trim().is_empty() {
        problems.add(field, "must not be empty");
    } else if text.chars().count() > max {
        problems.add(field, format!("must be at most {max} characters"));
    }
}

pub fn check_sku(problems: &mut Problems, field: &str, sku: &str) {
    let ok = !sku.is_empty()
        && sku.len() <= 64
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    problems.check(ok, field, "use 1-64 letters, digits, '-', '_' or '.'");
}

pub fn check_currency(problems: &mut Problems, field: &str, currency: &str) {
    problems.check(
        currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()),
        field,
        "must be a three-letter ISO 4217 code in capitals, e.g. EUR",
    );
}

/// Prices up to ten billion in major units; beyond that is a typo, not a product.
pub const MAX_PRICE_MINOR: i64 = 1_000_000_000_000;

pub fn check_price(problems: &mut Problems, field: &str, price_minor: i64) {
    if price_minor < 0 {
        problems.add(field, "must not be negative");
    } else if price_minor > MAX_PRICE_MINOR {
        problems.add(field, "is implausibly large");
    }
}

pub fn check_weight(problems: &mut Problems, field: &str, grams: i64) {
    problems.check(
        (0..=1_000_000).contains(&grams),
        field,
        "must be between 0 and 1,000,000 grams",
    );
}

pub fn check_options(problems: &mut Problems, field: &str, options: &BTreeMap<String, String>) {
    problems.check(options.len() <= 10, field, "at most 10 options");
    for (name, value) in options {
        problems.check(
            !name.trim().is_empty() && name.chars().count() <= 50,
            format!("{field}.{name}"),
            "option names are 1-50 characters",
        );
        problems.check(
            !value.trim().is_empty() && value.chars().count() <= 100,
            format!("{field}.{name}"),
            "option values are 1-100 characters",
        );
    }
}

/// Subscription intervals: at most 6, each `30d`, `2w` or `1m` within a year, no two
/// alike.
pub fn check_intervals(problems: &mut Problems, field: &str, intervals: &[String]) {
    problems.check(intervals.len() <= 6, field, "at most 6 intervals");
    for (i, interval) in intervals.iter().enumerate() {
        problems.check(
            crate::subscriptions::Interval::parse(interval).is_some(),
            format!("{field}[{i}]"),
            "must be every 1 to 366 days (`30d`), 52 weeks (`2w`) or 12 months (`1m`)",
        );
        problems.check(
            !intervals[..i].contains(interval),
            format!("{field}[{i}]"),
            "is named twice",
        );
    }
}

pub fn check_tags(problems: &mut Problems, field: &str, tags: &[String]) {
    problems.check(tags.len() <= 30, field, "at most 30 tags");
    for (i, tag) in tags.iter().enumerate() {
        problems.check(
            !tag.is_empty()
                && tag.len() <= 50
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            format!("{field}[{i}]"),
            "tags are 1-50 lowercase letters, digits and hyphens",
        );
    }
}

pub fn check_components(
    problems: &mut Problems,
    field: &str,
    product_type: ProductType,
    own_sku: Option<&str>,
    components: &[ComponentInput],
) {
    if product_type != ProductType::Bundle {
        problems.check(
            components.is_empty(),
            field,
            "only variants of bundle products have components",
        );
        return;
    }
    problems.check(
        !components.is_empty(),
        field,
        "a bundle variant is made of at least one other variant",
    );
    problems.check(components.len() <= 50, field, "at most 50 components");
    let mut seen = HashSet::new();
    for (i, component) in components.iter().enumerate() {
        if Some(component.sku.as_str()) == own_sku {
            problems.add(
                format!("{field}[{i}].sku"),
                "a bundle cannot contain itself",
            );
        }
        if !seen.insert(component.sku.as_str()) {
            problems.add(format!("{field}[{i}].sku"), "listed twice");
        }
        problems.check(
            (1..=1000).contains(&component.quantity),
            format!("{field}[{i}].quantity"),
            "must be between 1 and 1000",
        );
    }
}

pub fn check_new_variant(
    problems: &mut Problems,
    field: &str,
    product_type: ProductType,
    variant: &NewVariant,
) {
    if variant.sku.trim().is_empty() {
        problems.add(
            format!("{field}.sku"),
            format!(
                "give a SKU: no active taxonomy plugin derives SKUs for {} products",
                product_type.as_str()
            ),
        );
    } else {
        check_sku(problems, &format!("{field}.sku"), &variant.sku);
    }
    check_text(problems, &format!("{field}.title"), &variant.title, 200);
    check_options(problems, &format!("{field}.options"), &variant.options);
    check_price(
        problems,
        &format!("{field}.price_minor"),
        variant.price_minor,
    );
    check_currency(problems, &format!("{field}.currency"), &variant.currency);
    check_weight(
        problems,
        &format!("{field}.weight_grams"),
        variant.weight_grams,
    );
    check_components(
        problems,
        &format!("{field}.components"),
        product_type,
        Some(&variant.sku),
        &variant.components,
    );
}

/// Checks everything about a new product that needs no database; returns the
/// normalised attributes.
pub fn validate_new_product(input: &NewProduct) -> Result<serde_json::Value> {
    let mut problems = Problems::new();
    check_slug(&mut problems, "slug", &input.slug);
    check_text(&mut problems, "name", &input.name, 200);
    problems.check(
        input.description.chars().count() <= 20_000,
        "description",
        "must be at most 20,000 characters",
    );
    check_tags(&mut problems, "tags", &input.tags);
    if let Some(intervals) = &input.subscription_intervals {
        check_intervals(&mut problems, "subscription_intervals", intervals);
    }
    problems.check(
        input.categories.len() <= 20,
        "categories",
        "at most 20 categories",
    );
    problems.check(
        input.variants.len() <= 100,
        "variants",
        "at most 100 variants",
    );
    let mut skus = HashSet::new();
    for (i, variant) in input.variants.iter().enumerate() {
        check_new_variant(
            &mut problems,
            &format!("variants[{i}]"),
            input.product_type,
            variant,
        );
        if !variant.sku.is_empty() && !skus.insert(variant.sku.as_str()) {
            problems.add(
                format!("variants[{i}].sku"),
                "duplicate SKU in this request",
            );
        }
    }
    // Components may not name a variant of the same new bundle (that would be itself or
    // a sibling bundle variant).
    if input.product_type == ProductType::Bundle {
        for (i, variant) in input.variants.iter().enumerate() {
            for (j, component) in variant.components.iter().enumerate() {
                if component.sku != variant.sku && skus.contains(component.sku.as_str()) {
                    problems.add(
                        format!("variants[{i}].components[{j}].sku"),
                        "a bundle cannot contain its own variants",
                    );
                }
            }
        }
    }
    let attributes = match validate_attributes(input.product_type, &input.attributes) {
        Ok(attributes) => Some(attributes),
        Err(crate::Error::Validation(fields)) => {
            for f in fields {
                problems.add(f.field, f.message);
            }
            None
        }
        Err(other) => return Err(other),
    };
    problems.into_result()?;
    Ok(attributes.unwrap_or_default())
}
