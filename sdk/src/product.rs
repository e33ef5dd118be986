//! Helpers for `variant-taxonomy` plugins: collecting field errors, checking variants and
//! deriving SKUs.
//!
//! SKU derivation: the initials of the product slug's words, uppercased
//! (`magnesium-glycinate` -> `MG`), then each option value uppercased, in option-name order
//! (the kernel stores options sorted by name), joined with `-`:
//!
//! ```
//! use olivine_sdk::product::derive_sku;
//!
//! let opts = |pairs: &[(&str, &str)]| {
//!     pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>()
//! };
//! assert_eq!(derive_sku("magnesium-glycinate", &opts(&[("count", "60")])), "MG-60");
//! assert_eq!(
//!     derive_sku("whey-protein", &opts(&[("size", "1kg"), ("flavour", "Vanilla")])),
//!     "WP-VANILLA-1KG"
//! );
//! ```

use std::collections::BTreeSet;

use crate::types::{FieldError, ProductInput, ValidatedVariant, VariantInput};

#[cfg(feature = "json")]
pub mod json;

/// Collects field errors; a taxonomy reports every problem at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors {
    errors: Vec<FieldError>,
}

impl FieldErrors {
    /// No errors yet.
    pub fn new() -> FieldErrors {
        FieldErrors::default()
    }

    /// Records a problem with `field`.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Records a problem with `field` unless `ok`; returns `ok`.
    pub fn check(
        &mut self,
        ok: bool,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> bool {
        if !ok {
            self.add(field, message);
        }
        ok
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// How many problems were recorded.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether a problem with exactly this field was recorded.
    pub fn has(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    /// The recorded problems.
    pub fn as_slice(&self) -> &[FieldError] {
        &self.errors
    }

    /// The recorded problems.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.errors
    }

    /// `Ok(value)` if nothing was recorded, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// Longest SKU the kernel accepts.
pub const MAX_SKU_LEN: usize = 64;

/// The kernel's SKU rule: 1-64 ASCII letters, digits, `-`, `_` or `.`.
pub fn is_valid_sku(sku: &str) -> bool {
    !sku.is_empty()
        && sku.len() <= MAX_SKU_LEN
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Uppercase initials of the slug's hyphen-separated words: `magnesium-glycinate` -> `MG`,
/// `omega-3-fish-oil` -> `O3FO`. Characters that are not ASCII letters or digits are
/// skipped.
pub fn slug_prefix(slug: &str) -> String {
    slug.split('-')
        .filter_map(|word| word.chars().find(|c| c.is_ascii_alphanumeric()))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// One option value as a SKU part: ASCII letters and digits uppercased, every run of
/// other characters turned into one `-`, no leading or trailing `-`.
/// `"60 capsules"` -> `60-CAPSULES`, `"Lemon & Lime"` -> `LEMON-LIME`, `"1kg"` -> `1KG`.
pub fn sku_part(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut pending_dash = false;
    for c in value.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c.to_ascii_uppercase());
        } else {
            pending_dash = true;
        }
    }
    out
}

/// The SKU for a variant without one: [`slug_prefix`] then each option's [`sku_part`] in
/// option-name order, joined with `-`. Empty parts are left out.
pub fn derive_sku(slug: &str, options: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = options.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut parts = vec![slug_prefix(slug)];
    parts.extend(sorted.iter().map(|(_, value)| sku_part(value)));
    parts.retain(|p| !p.is_empty());
    parts.join("-")
}

/// Largest plausible weight of one variant, as the kernel checks it.
pub const MAX_WEIGHT_GRAMS: i64 = 1_000_000;

/// Checks every variant of `product` and returns one [`ValidatedVariant`] per input
/// variant, in order, recording problems in `errors` under `variants[i].…`:
///
/// - option names must be in `option_names`, appear once, and have a non-empty value;
/// - a given SKU is kept (trimmed) if it follows the kernel's rule; a missing or blank
///   one is derived with [`derive_sku`];
/// - SKUs must be unique within the product;
/// - `weight_grams` must be 0..=1,000,000 and `price_minor` not negative.
pub fn validate_variants(
    product: &ProductInput,
    option_names: &[&str],
    errors: &mut FieldErrors,
) -> Vec<ValidatedVariant> {
    let mut seen = BTreeSet::new();
    product
        .variants
        .iter()
        .enumerate()
        .map(|(i, variant)| {
            let field = format!("variants[{i}]");
            check_options(&field, variant, option_names, errors);
            let sku = variant_sku(&product.slug, &field, variant, errors);
            if !sku.is_empty() && !seen.insert(sku.clone()) {
                errors.add(
                    format!("{field}.sku"),
                    format!("SKU `{sku}` is used by another variant"),
                );
            }
            errors.check(
                (0..=MAX_WEIGHT_GRAMS).contains(&variant.weight_grams),
                format!("{field}.weight_grams"),
                "must be between 0 and 1,000,000 grams",
            );
            errors.check(
                variant.price_minor >= 0,
                format!("{field}.price_minor"),
                "must not be negative",
            );
            ValidatedVariant {
                sku,
                weight_grams: variant.weight_grams,
            }
        })
        .collect()
}

fn check_options(field: &str, variant: &VariantInput, allowed: &[&str], errors: &mut FieldErrors) {
    let mut names = BTreeSet::new();
    for (name, value) in &variant.options {
        let option_field = format!("{field}.options.{name}");
        if !allowed.contains(&name.as_str()) {
            errors.add(
                option_field,
                format!("unknown option `{name}`; use {}", allowed.join(", ")),
            );
            continue;
        }
        if !names.insert(name.as_str()) {
            errors.add(option_field, "given more than once");
            continue;
        }
        errors.check(
            !value.trim().is_empty() && value.len() <= 100,
            option_field,
            "option values are 1-100 characters",
        );
    }
}

fn variant_sku(
    slug: &str,
    field: &str,
    variant: &VariantInput,
    errors: &mut FieldErrors,
) -> String {
    let sku_field = format!("{field}.sku");
    match variant.sku.as_deref().map(str::trim) {
        Some(given) if !given.is_empty() => {
            errors.check(
                is_valid_sku(given),
                sku_field,
                "use 1-64 letters, digits, '-', '_' or '.'",
            );
            given.to_owned()
        }
        _ => {
            let derived = derive_sku(slug, &variant.options);
            if slug_prefix(slug).is_empty() {
                errors.add(
                    sku_field,
                    "cannot derive a SKU without a product slug; give one",
                );
            } else if !is_valid_sku(&derived) {
                errors.add(
                    sku_field,
                    format!("the derived SKU `{derived}` is longer than 64 characters; give one"),
                );
            }
            derived
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn variant(sku: Option<&str>, options: &[(&str, &str)]) -> VariantInput {
        VariantInput {
            sku: sku.map(str::to_owned),
            options: opts(options),
            price_minor: 1999,
            weight_grams: 120,
        }
    }

    fn product(slug: &str, variants: Vec<VariantInput>) -> ProductInput {
        ProductInput {
            slug: slug.into(),
            name: "X".into(),
            attributes_json: "{}".into(),
            variants,
        }
    }

    #[test]
    fn prefixes_and_parts() {
        assert_eq!(slug_prefix("magnesium-glycinate"), "MG");
        assert_eq!(slug_prefix("whey-protein"), "WP");
        assert_eq!(slug_prefix("omega-3-fish-oil"), "O3FO");
        assert_eq!(slug_prefix("zinc"), "Z");
        assert_eq!(slug_prefix(""), "");
        assert_eq!(sku_part("60"), "60");
        assert_eq!(sku_part("1kg"), "1KG");
        assert_eq!(sku_part("60 capsules"), "60-CAPSULES");
        assert_eq!(sku_part("  Lemon & Lime "), "LEMON-LIME");
        assert_eq!(sku_part("Crème brûlée"), "CR-ME-BR-L-E");
        assert_eq!(sku_part("---"), "");
    }

    #[test]
    fn derivation_sorts_options_by_name() {
        assert_eq!(
            derive_sku("magnesium-glycinate", &opts(&[("count", "60")])),
            "MG-60"
        );
        assert_eq!(
            derive_sku(
                "whey-protein",
                &opts(&[("size", "1kg"), ("flavour", "vanilla")])
            ),
            "WP-VANILLA-1KG"
        );
        assert_eq!(
            derive_sku(
                "whey-protein",
                &opts(&[("flavour", "vanilla"), ("size", "1kg")])
            ),
            "WP-VANILLA-1KG"
        );
        assert_eq!(derive_sku("zinc", &[]), "Z");
        assert!(is_valid_sku("MG-60") && is_valid_sku("a_b.c") && !is_valid_sku("A B"));
        assert!(!is_valid_sku(&"X".repeat(65)));
    }

    #[test]
    fn variants_keep_given_skus_and_derive_the_rest() {
        let p = product(
            "magnesium-glycinate",
            vec![
                variant(Some(" MAG-GLY-60 "), &[("count", "60")]),
                variant(None, &[("count", "120")]),
                variant(Some(""), &[("count", "240")]),
            ],
        );
        let mut errors = FieldErrors::new();
        let out = validate_variants(&p, &["count", "size", "flavour", "pack"], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let skus: Vec<_> = out.iter().map(|v| v.sku.as_str()).collect();
        assert_eq!(skus, ["MAG-GLY-60", "MG-120", "MG-240"]);
        assert_eq!(out[0].weight_grams, 120);
    }

    #[test]
    fn variant_problems_name_their_fields() {
        let mut bad_weight = variant(None, &[("count", "60")]);
        bad_weight.weight_grams = -1;
        let p = product(
            "magnesium-glycinate",
            vec![
                variant(None, &[("colour", "red")]),
                variant(Some("bad sku"), &[]),
                variant(None, &[("count", "60")]),
                bad_weight,
                variant(None, &[("count", "30"), ("count", "60")]),
            ],
        );
        let mut errors = FieldErrors::new();
        validate_variants(&p, &["count"], &mut errors);
        for field in [
            "variants[0].options.colour",
            "variants[1].sku",
            "variants[3].sku",
            "variants[3].weight_grams",
            "variants[4].options.count",
        ] {
            assert!(errors.has(field), "{field}: {errors:?}");
        }
        assert!(!errors.has("variants[2].sku"));
    }
}
