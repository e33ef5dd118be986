//! Variant taxonomy for supplements: checks the attributes the kernel's
//! `SupplementAttributes` describes (every problem at once, each under its field path),
//! normalises them, and derives SKUs for variants that have none.

use olivine_sdk::prelude::*;
use olivine_sdk::product::json::{Object, Value, parse_attributes, serde_json::json};
use olivine_sdk::product::{self, FieldErrors};

pub const FORMS: &[&str] = &[
    "capsules", "tablets", "softgels", "powder", "liquid", "gummies",
];
pub const OPTION_NAMES: &[&str] = &["count", "size", "flavour", "pack"];
const FIELDS: &[&str] = &[
    "form",
    "ingredients",
    "serving_size",
    "servings_per_container",
    "usage",
    "allergens",
    "warnings",
    "disclaimer",
];

/// Checks supplement attributes; returns them normalised (strings trimmed, defaults
/// filled in) or records problems under `attributes.…`.
pub fn validate_attributes(text: &str, errors: &mut FieldErrors) -> Option<Value> {
    let value = parse_attributes(text, errors)?;
    let attrs = Object::new("attributes", &value, errors)?;
    attrs.deny_unknown(FIELDS, errors);

    let form = attrs.one_of("form", FORMS, errors);
    let ingredients = ingredients(&attrs, errors);
    let serving_size = attrs.string("serving_size", errors);
    let servings = attrs.integer("servings_per_container", 1..=u64::from(u32::MAX), errors);
    let usage = attrs.string("usage", errors);
    let allergens = attrs.string_list("allergens", false, errors);
    let warnings = attrs.optional_string("warnings", errors);
    let disclaimer = match attrs.get("disclaimer") {
        None => {
            errors.add(
                "attributes.disclaimer",
                "a supplement must carry its regulatory disclaimer",
            );
            None
        }
        Some(_) => attrs.string("disclaimer", errors),
    };

    Some(json!({
        "form": form?,
        "ingredients": ingredients?,
        "serving_size": serving_size?,
        "servings_per_container": servings?,
        "usage": usage?,
        "allergens": allergens?,
        "warnings": warnings?,
        "disclaimer": disclaimer?,
    }))
}

fn ingredients(attrs: &Object<'_>, errors: &mut FieldErrors) -> Option<Vec<Value>> {
    let items = attrs.array("ingredients", errors)?;
    if items.is_empty() {
        errors.add(
            "attributes.ingredients",
            "a supplement lists at least one ingredient",
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("attributes.ingredients[{i}]");
        let Some(ingredient) = Object::new(&path, item, errors) else {
            ok = false;
            continue;
        };
        ingredient.deny_unknown(&["name", "amount", "unit"], errors);
        let name = ingredient.string("name", errors);
        let amount = ingredient.positive_number("amount", errors);
        let unit = ingredient.string("unit", errors);
        match (name, amount, unit) {
            (Some(name), Some(amount), Some(unit)) => {
                out.push(json!({"name": name, "amount": amount, "unit": unit}));
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
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
        product_type: ProductType::Supplement,
        attributes: vec![
            spec(
                "form",
                "How the supplement is taken.",
                true,
                &format!("enum:{}", FORMS.join("|")),
            ),
            spec(
                "ingredients",
                "Each active ingredient: name, amount (> 0) and unit.",
                true,
                "ingredients",
            ),
            spec(
                "serving_size",
                "One serving, e.g. \"2 capsules\".",
                true,
                "string",
            ),
            spec(
                "servings_per_container",
                "Servings in one container (at least 1).",
                true,
                "integer",
            ),
            spec("usage", "Directions for use.", true, "string"),
            spec(
                "allergens",
                "Allergens the product contains.",
                false,
                "string-list",
            ),
            spec(
                "warnings",
                "Warnings shown on the product page.",
                false,
                "string",
            ),
            spec(
                "disclaimer",
                "The regulatory disclaimer; required.",
                true,
                "string",
            ),
        ],
        option_names: OPTION_NAMES.iter().map(|s| s.to_string()).collect(),
    }
}

pub struct Supplements;

impl VariantTaxonomy for Supplements {
    fn describe() -> TaxonomyInfo {
        describe()
    }

    fn validate(product: &ProductInput) -> Result<ValidatedProduct, Vec<FieldError>> {
        validate(product)
    }
}

olivine_sdk::export_variant_taxonomy!(Supplements);

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "form": "capsules",
        "ingredients": [{"name": "Magnesium (as bisglycinate)", "amount": 200, "unit": "mg"}],
        "serving_size": "2 capsules",
        "servings_per_container": 30,
        "usage": "Take 2 capsules daily with water.",
        "disclaimer": "These statements have not been evaluated by the Food and Drug Administration."
    }"#;

    fn variant(sku: Option<&str>, options: &[(&str, &str)]) -> VariantInput {
        VariantInput {
            sku: sku.map(str::to_owned),
            options: options
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            price_minor: 1999,
            weight_grams: 120,
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
    fn valid_product_gets_skus_and_defaults() {
        let p = product(
            "magnesium-glycinate",
            GOOD,
            vec![
                variant(None, &[("count", "60")]),
                variant(Some("MAG-GLY-120"), &[("count", "120")]),
            ],
        );
        let out = validate(&p).unwrap();
        let skus: Vec<_> = out.variants.iter().map(|v| v.sku.as_str()).collect();
        assert_eq!(skus, ["MG-60", "MAG-GLY-120"]);
        let attrs: Value = serde_json_from(&out.attributes_json);
        assert_eq!(attrs["allergens"], json!([]));
        assert_eq!(attrs["warnings"], json!(""));
        assert_eq!(attrs["ingredients"][0]["amount"], json!(200.0));
    }

    fn serde_json_from(text: &str) -> Value {
        olivine_sdk::product::json::serde_json::from_str(text).unwrap()
    }

    #[test]
    fn flavour_and_size_skus() {
        let p = product(
            "whey-protein",
            GOOD,
            vec![variant(None, &[("size", "1kg"), ("flavour", "Vanilla")])],
        );
        assert_eq!(validate(&p).unwrap().variants[0].sku, "WP-VANILLA-1KG");
    }

    #[test]
    fn every_problem_is_named() {
        let bad = r#"{
            "form": "pills",
            "ingredients": [{"name": "Zinc", "amount": 0, "unit": "mg"}, {"name": "", "amount": 5}],
            "serving_size": "1 tablet",
            "servings_per_container": 0,
            "usage": "Daily.",
            "disclaimer": "  ",
            "colour": "blue"
        }"#;
        let errors = validate(&product(
            "zinc",
            bad,
            vec![variant(None, &[("colour", "red")])],
        ))
        .unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "attributes.colour",
                "attributes.form",
                "attributes.ingredients[0].amount",
                "attributes.ingredients[1].name",
                "attributes.ingredients[1].unit",
                "attributes.servings_per_container",
                "attributes.disclaimer",
                "variants[0].options.colour",
            ]
        );
    }

    #[test]
    fn disclaimer_is_required() {
        let without = GOOD.replace(
            r#""disclaimer": "These statements have not been evaluated by the Food and Drug Administration.""#,
            r#""allergens": ["soy"]"#,
        );
        let errors = validate(&product("zinc", &without, vec![])).unwrap_err();
        assert_eq!(fields(&errors), ["attributes.disclaimer"]);
    }

    #[test]
    fn not_json() {
        let errors = validate(&product("zinc", "{nope", vec![])).unwrap_err();
        assert_eq!(fields(&errors), ["attributes"]);
    }

    #[test]
    fn describe_lists_the_schema() {
        let info = describe();
        assert_eq!(info.product_type, ProductType::Supplement);
        assert_eq!(info.option_names, OPTION_NAMES);
        assert!(
            info.attributes
                .iter()
                .any(|a| a.name == "disclaimer" && a.required)
        );
    }

    #[test]
    fn fixtures() {
        let ran = olivine_sdk::testing::fixtures::check_taxonomy::<Supplements>(env!(
            "CARGO_MANIFEST_DIR"
        ));
        assert!(ran >= 2);
    }
}
