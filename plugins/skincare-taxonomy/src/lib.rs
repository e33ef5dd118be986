//! Variant taxonomy for skincare: checks the attributes the kernel's `SkincareAttributes`
//! describes (every problem at once, each under its field path), normalises them, and
//! derives SKUs for variants that have none.

use olivine_sdk::prelude::*;
use olivine_sdk::product::json::{Object, Value, parse_attributes, serde_json::json};
use olivine_sdk::product::{self, FieldErrors};

pub const SKIN_TYPES: &[&str] = &["dry", "normal", "oily", "combination", "sensitive"];
pub const ROUTINE_STEPS: &[&str] = &[
    "cleanse",
    "tone",
    "serum",
    "treat",
    "moisturise",
    "protect",
    "mask",
];
pub const OPTION_NAMES: &[&str] = &["size", "flavour", "shade", "pack"];
const FIELDS: &[&str] = &[
    "skin_types",
    "volume_ml",
    "routine_step",
    "application",
    "key_ingredients",
    "period_after_opening_months",
];

/// Checks skincare attributes; returns them normalised (strings trimmed, defaults filled
/// in) or records problems under `attributes.…`.
pub fn validate_attributes(text: &str, errors: &mut FieldErrors) -> Option<Value> {
    let value = parse_attributes(text, errors)?;
    let attrs = Object::new("attributes", &value, errors)?;
    attrs.deny_unknown(FIELDS, errors);

    let skin_types = skin_types(&attrs, errors);
    let volume_ml = attrs.integer("volume_ml", 1..=u64::from(u32::MAX), errors);
    let routine_step = attrs.one_of("routine_step", ROUTINE_STEPS, errors);
    let application = attrs.string("application", errors);
    let key_ingredients = attrs.string_list("key_ingredients", false, errors);
    let pao = attrs.optional_integer("period_after_opening_months", 1..=60, errors);

    Some(json!({
        "skin_types": skin_types?,
        "volume_ml": volume_ml?,
        "routine_step": routine_step?,
        "application": application?,
        "key_ingredients": key_ingredients?,
        "period_after_opening_months": pao?,
    }))
}

fn skin_types(attrs: &Object<'_>, errors: &mut FieldErrors) -> Option<Vec<String>> {
    let list = attrs.string_list("skin_types", true, errors)?;
    if list.is_empty() {
        errors.add("attributes.skin_types", "name at least one skin type");
        return None;
    }
    let mut ok = true;
    for (i, skin_type) in list.iter().enumerate() {
        let field = format!("attributes.skin_types[{i}]");
        if !SKIN_TYPES.contains(&skin_type.as_str()) {
            errors.add(
                field,
                format!("`{skin_type}` is not one of {}", SKIN_TYPES.join(", ")),
            );
            ok = false;
        } else if list[..i].contains(skin_type) {
            errors.add(field, format!("`{skin_type}` is listed twice"));
            ok = false;
        }
    }
    ok.then_some(list)
}

pub fn validate(product: &ProductInput) -> Result<ValidatedProduct, Vec<FieldError>> {
    let mut errors = FieldErrors::new();
    let attributes = validate_attributes(&product.attributes_json, &mut errors);
    let variants = product::validate_variants(product, OPTION_NAMES, &mut errors);
    match attributes {
        Some(attributes) if errors.is_empty() => Ok(ValidatedProduct {
            attributes_json: attributes.to_string(),
            variants,
        }),
        _ => Err(errors.into_vec()),
    }
}

fn spec(name: &str, description: &str, required: bool, kind: &str) -> AttributeSpec {
    AttributeSpec {
        name: name.into(),
        description: description.into(),
        required,
        kind: kind.into(),
    }
}

pub fn describe() -> TaxonomyInfo {
    TaxonomyInfo {
        product_type: ProductType::Skincare,
        attributes: vec![
            spec(
                "skin_types",
                "Skin types it suits (at least one).",
                true,
                &format!("enum-list:{}", SKIN_TYPES.join("|")),
            ),
            spec(
                "volume_ml",
                "Contents in millilitres (at least 1).",
                true,
                "integer",
            ),
            spec(
                "routine_step",
                "Where it goes in a routine.",
                true,
                &format!("enum:{}", ROUTINE_STEPS.join("|")),
            ),
            spec("application", "How to apply it.", true, "string"),
            spec(
                "key_ingredients",
                "Ingredients worth naming.",
                false,
                "string-list",
            ),
            spec(
                "period_after_opening_months",
                "Months it keeps once opened, 1 to 60.",
                false,
                "integer",
            ),
        ],
        option_names: OPTION_NAMES.iter().map(|s| s.to_string()).collect(),
    }
}

pub struct Skincare;

impl VariantTaxonomy for Skincare {
    fn describe() -> TaxonomyInfo {
        describe()
    }

    fn validate(product: &ProductInput) -> Result<ValidatedProduct, Vec<FieldError>> {
        validate(product)
    }
}

olivine_sdk::export_variant_taxonomy!(Skincare);

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "skin_types": ["dry", "sensitive"],
        "volume_ml": 50,
        "routine_step": "moisturise",
        "application": "Massage into clean skin morning and evening."
    }"#;

    fn variant(sku: Option<&str>, options: &[(&str, &str)]) -> VariantInput {
        VariantInput {
            sku: sku.map(str::to_owned),
            options: options
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            price_minor: 2499,
            weight_grams: 80,
        }
    }

    fn product(slug: &str, attributes: &str, variants: Vec<VariantInput>) -> ProductInput {
        ProductInput {
            slug: slug.into(),
            name: "Test".into(),
            attributes_json: attributes.into(),
            variants,
        }
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn valid_product() {
        let p = product(
            "ceramide-barrier-cream",
            GOOD,
            vec![
                variant(None, &[("size", "50ml")]),
                variant(Some("CER-CRM-100"), &[("size", "100ml")]),
            ],
        );
        let out = validate(&p).unwrap();
        let skus: Vec<_> = out.variants.iter().map(|v| v.sku.as_str()).collect();
        assert_eq!(skus, ["CBC-50ML", "CER-CRM-100"]);
        let attrs: Value =
            olivine_sdk::product::json::serde_json::from_str(&out.attributes_json).unwrap();
        assert_eq!(attrs["key_ingredients"], json!([]));
        assert_eq!(attrs["period_after_opening_months"], Value::Null);
    }

    #[test]
    fn every_problem_is_named() {
        let bad = r#"{
            "skin_types": ["dry", "scaly", "dry"],
            "volume_ml": 0,
            "routine_step": "exfoliate",
            "application": "",
            "key_ingredients": ["ceramides", 3],
            "period_after_opening_months": 72
        }"#;
        let errors = validate(&product(
            "x-cream",
            bad,
            vec![variant(None, &[("count", "2")])],
        ))
        .unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "attributes.skin_types[1]",
                "attributes.skin_types[2]",
                "attributes.volume_ml",
                "attributes.routine_step",
                "attributes.application",
                "attributes.key_ingredients[1]",
                "attributes.period_after_opening_months",
                "variants[0].options.count",
            ]
        );
    }

    #[test]
    fn skin_types_must_not_be_empty() {
        let errors = validate(&product(
            "x",
            &GOOD.replace(r#"["dry", "sensitive"]"#, "[]"),
            vec![],
        ))
        .unwrap_err();
        assert_eq!(fields(&errors), ["attributes.skin_types"]);
        let errors = validate(&product("x", r#"{"volume_ml": 50}"#, vec![])).unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "attributes.skin_types",
                "attributes.routine_step",
                "attributes.application"
            ]
        );
    }

    #[test]
    fn describe_lists_the_schema() {
        let info = describe();
        assert_eq!(info.product_type, ProductType::Skincare);
        assert_eq!(info.attributes.len(), 6);
        // The admin offers the skin types as checkboxes.
        assert_eq!(
            info.attributes[0].kind,
            "enum-list:dry|normal|oily|combination|sensitive"
        );
        assert_eq!(info.option_names, OPTION_NAMES);
    }

    #[test]
    fn fixtures() {
        let ran =
            olivine_sdk::testing::fixtures::check_taxonomy::<Skincare>(env!("CARGO_MANIFEST_DIR"));
        assert!(ran >= 2);
    }
}
