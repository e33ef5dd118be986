//! A supplements taxonomy that misbehaves on purpose, for the kernel's failure-policy
//! tests: the `mode` setting makes `validate` accept everything, trap or loop forever.

use std::hint::black_box;

use olivine_sdk::prelude::*;

pub fn validate(mode: &str, product: &ProductInput) -> Result<ValidatedProduct, Vec<FieldError>> {
    match mode {
        "ok" => Ok(ValidatedProduct {
            attributes_json: product.attributes_json.clone(),
            variants: product
                .variants
                .iter()
                .enumerate()
                .map(|(i, v)| ValidatedVariant {
                    sku: v.sku.clone().unwrap_or_else(|| format!("CHAOS-{i}")),
                    weight_grams: v.weight_grams,
                })
                .collect(),
        }),
        "trap" => trap(),
        "loop" => spin(),
        other => Err(vec![FieldError {
            field: "settings.mode".into(),
            message: format!("unknown chaos mode `{other}`; use ok, trap or loop"),
        }]),
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    panic!("chaos-taxonomy: trap requested");
}

pub struct ChaosTaxonomy;

impl VariantTaxonomy for ChaosTaxonomy {
    fn describe() -> TaxonomyInfo {
        TaxonomyInfo {
            product_type: ProductType::Supplement,
            attributes: vec![],
            option_names: vec![],
        }
    }

    fn validate(product: &ProductInput) -> Result<ValidatedProduct, Vec<FieldError>> {
        let mode = olivine_sdk::settings::get_or("mode", "ok");
        validate(mode.trim(), product)
    }
}

olivine_sdk::export_variant_taxonomy!(ChaosTaxonomy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_mode_derives_placeholder_skus() {
        let product = ProductInput {
            slug: "x".into(),
            name: "X".into(),
            attributes_json: "{}".into(),
            variants: vec![VariantInput {
                sku: None,
                options: vec![],
                price_minor: 1,
                weight_grams: 1,
            }],
        };
        assert_eq!(validate("ok", &product).unwrap().variants[0].sku, "CHAOS-0");
        assert_eq!(
            validate("what", &product).unwrap_err()[0].field,
            "settings.mode"
        );
    }

    #[test]
    fn fixtures() {
        let ran = olivine_sdk::testing::fixtures::check_taxonomy::<ChaosTaxonomy>(env!(
            "CARGO_MANIFEST_DIR"
        ));
        assert!(ran >= 1);
    }
}
