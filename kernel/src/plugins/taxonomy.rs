//! Products validated through the taxonomy plugin of their type. The kernel's own
//! checks (catalog::model) are the floor every product meets; the active taxonomy adds
//! its rules, normalises the type's attributes and derives the SKUs the merchant left
//! out. A product type without an active taxonomy is checked by the kernel alone.
//!
//! Failure policy: a taxonomy that fails (trap, budget, memory, invalid output) refuses
//! the write with 503 rather than saving unchecked data; the failure counts towards
//! automatic disabling like any other call.

use olivine_plugin_runtime::bindings::types;

use super::decisions::hash;
use super::{Judged, Plugins};
use crate::catalog::model::{NewProduct, NewVariant, Product, ProductPatch, ProductType};
use crate::error::{Error, FieldError, Result};

/// One attribute a taxonomy declares in its `describe` (the WIT `attribute-spec`), with
/// its kind read: what the admin's product form is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeField {
    /// The key in the product's attributes, e.g. `skin_types`.
    pub name: String,
    pub description: String,
    pub required: bool,
    pub kind: AttributeKind,
}

/// How an attribute is typed, from the spec's `kind` string.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeKind {
    /// `string`, and any kind this kernel does not know (typed in as text).
    Text,
    /// `integer`: a whole number.
    Integer,
    /// `number`: any number.
    Number,
    /// `string-list`: words, comma-separated in a form.
    List,
    /// `ingredients`: objects of name, amount and unit.
    Ingredients,
    /// `enum:a|b|c`: one of these.
    Choice(Vec<String>),
    /// `enum-list:a|b|c`: any of these.
    Many(Vec<String>),
}

impl AttributeKind {
    pub fn parse(kind: &str) -> AttributeKind {
        let options = |list: &str| -> Vec<String> {
            list.split('|')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match kind.trim() {
            "integer" => AttributeKind::Integer,
            "number" => AttributeKind::Number,
            "string-list" => AttributeKind::List,
            "ingredients" => AttributeKind::Ingredients,
            other => {
                if let Some(list) = other.strip_prefix("enum-list:") {
                    AttributeKind::Many(options(list))
                } else if let Some(list) = other.strip_prefix("enum:") {
                    AttributeKind::Choice(options(list))
                } else {
                    AttributeKind::Text
                }
            }
        }
    }
}

impl AttributeField {
    pub fn from_spec(spec: &types::AttributeSpec) -> AttributeField {
        AttributeField {
            name: spec.name.clone(),
            description: spec.description.clone(),
            required: spec.required,
            kind: AttributeKind::parse(&spec.kind),
        }
    }
}

/// The attributes the active taxonomy of `product_type` declares; `None` when no
/// taxonomy is active for the type.
pub fn attribute_fields(
    plugins: &Plugins,
    product_type: ProductType,
) -> Option<std::sync::Arc<[AttributeField]>> {
    plugins
        .snapshot()
        .taxonomy_attributes
        .get(&product_type)
        .cloned()
}

/// More variants than this are refused by the kernel before any plugin sees them.
const MAX_VARIANTS: usize = 100;

fn variant_input(
    sku: &str,
    options: &std::collections::BTreeMap<String, String>,
    price_minor: i64,
    weight_grams: i64,
) -> types::VariantInput {
    let sku = sku.trim();
    types::VariantInput {
        sku: (!sku.is_empty()).then(|| sku.to_owned()),
        options: options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        price_minor,
        weight_grams,
    }
}

fn existing_variants(product: &Product) -> Vec<types::VariantInput> {
    product
        .variants
        .iter()
        .map(|v| variant_input(&v.sku, &v.options, v.price.amount_minor, v.weight_grams))
        .collect()
}

fn input_digest(product_type: ProductType, input: &types::ProductInput) -> String {
    let mut bytes = Vec::with_capacity(256);
    for part in [
        product_type.as_str(),
        &input.slug,
        &input.name,
        &input.attributes_json,
    ] {
        bytes.extend_from_slice(part.as_bytes());
        bytes.push(0);
    }
    for v in &input.variants {
        bytes.extend_from_slice(v.sku.as_deref().unwrap_or("").as_bytes());
        bytes.push(0);
        for (k, value) in &v.options {
            bytes.extend_from_slice(k.as_bytes());
            bytes.push(b'=');
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(0);
        }
        bytes.extend_from_slice(&v.price_minor.to_le_bytes());
        bytes.extend_from_slice(&v.weight_grams.to_le_bytes());
    }
    hash(&bytes)
}

fn output_digest(valid: &types::ValidatedProduct) -> String {
    let mut bytes = valid.attributes_json.as_bytes().to_vec();
    for v in &valid.variants {
        bytes.push(0);
        bytes.extend_from_slice(v.sku.as_bytes());
        bytes.extend_from_slice(&v.weight_grams.to_le_bytes());
    }
    hash(&bytes)
}

/// Runs the active taxonomy of `product_type` on `input`. `Ok(None)`: no taxonomy is
/// active for the type. A rejection becomes a 422 naming each field.
pub async fn validate(
    plugins: &Plugins,
    product_type: ProductType,
    input: types::ProductInput,
) -> Result<Option<types::ValidatedProduct>> {
    let snapshot = plugins.snapshot();
    let Some(taxonomy) = snapshot.taxonomies.get(&product_type).cloned() else {
        return Ok(None);
    };
    let input_hash = input_digest(product_type, &input);
    let call = {
        let taxonomy = taxonomy.clone();
        tokio::task::spawn_blocking(move || {
            taxonomy.plugin.validate_product(&input, &taxonomy.settings)
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("taxonomy task failed: {e}")))?
    };
    match call {
        Ok((result, stats)) => {
            let judged = match &result {
                Ok(valid) => Judged {
                    outcome: "ok",
                    output_hash: output_digest(valid),
                    detail: None,
                },
                Err(_) => Judged {
                    outcome: "rejected",
                    output_hash: String::new(),
                    detail: None,
                },
            };
            plugins
                .book_call(&taxonomy, "validate", input_hash, Ok((stats, judged)))
                .await;
            match result {
                Ok(valid) => Ok(Some(valid)),
                Err(fields) => {
                    let fields: Vec<FieldError> = fields
                        .into_iter()
                        .map(|f| FieldError::new(f.field, f.message))
                        .collect();
                    if fields.is_empty() {
                        return Err(Error::invalid(
                            "body",
                            format!(
                                "the {} taxonomy rejected the product",
                                product_type.as_str()
                            ),
                        ));
                    }
                    Err(Error::Validation(fields))
                }
            }
        }
        Err(err) => {
            tracing::warn!(plugin = taxonomy.id, version = taxonomy.version, error = %err, "taxonomy plugin failed; write refused");
            plugins
                .book_call(&taxonomy, "validate", input_hash, Err(&err))
                .await;
            Err(Error::Unavailable(format!(
                "the {} taxonomy plugin `{}` {} failed ({}): {err}; nothing was saved",
                product_type.as_str(),
                taxonomy.id,
                taxonomy.version,
                err.kind()
            )))
        }
    }
}

fn normalised_attributes(valid: &types::ValidatedProduct) -> Result<serde_json::Value> {
    // The runtime already checked this is JSON; stay defensive all the same.
    serde_json::from_str(&valid.attributes_json)
        .map_err(|e| Error::Unavailable(format!("taxonomy returned bad attributes: {e}")))
}

/// A new product: attributes normalised, missing SKUs derived.
pub async fn check_new_product(plugins: &Plugins, product: &mut NewProduct) -> Result<()> {
    if product.variants.len() > MAX_VARIANTS {
        return Ok(()); // the kernel's own check refuses it with the right field
    }
    let input = types::ProductInput {
        slug: product.slug.clone(),
        name: product.name.clone(),
        attributes_json: product.attributes.to_string(),
        variants: product
            .variants
            .iter()
            .map(|v| variant_input(&v.sku, &v.options, v.price_minor, v.weight_grams))
            .collect(),
    };
    let Some(valid) = validate(plugins, product.product_type, input).await? else {
        return Ok(());
    };
    product.attributes = normalised_attributes(&valid)?;
    for (variant, checked) in product.variants.iter_mut().zip(valid.variants) {
        if variant.sku.trim().is_empty() {
            variant.sku = checked.sku;
        }
    }
    Ok(())
}

/// A change to a product: when it touches what the taxonomy judges (attributes, slug,
/// name), the whole product as it would be is checked and the attributes normalised.
pub async fn check_product_patch(
    plugins: &Plugins,
    current: &Product,
    patch: &mut ProductPatch,
) -> Result<()> {
    if patch.attributes.is_none() && patch.slug.is_none() && patch.name.is_none() {
        return Ok(());
    }
    let attributes = patch.attributes.as_ref().unwrap_or(&current.attributes);
    let input = types::ProductInput {
        slug: patch.slug.clone().unwrap_or_else(|| current.slug.clone()),
        name: patch.name.clone().unwrap_or_else(|| current.name.clone()),
        attributes_json: attributes.to_string(),
        variants: existing_variants(current),
    };
    let Some(valid) = validate(plugins, current.product_type, input).await? else {
        return Ok(());
    };
    if patch.attributes.is_some() {
        patch.attributes = Some(normalised_attributes(&valid)?);
    }
    Ok(())
}

/// Field errors of the variant at `index` are reported without their `variants[i].`
/// prefix: the request body is that one variant.
fn lone_variant_fields(err: Error, index: usize) -> Error {
    match err {
        Error::Validation(fields) => {
            let prefix = format!("variants[{index}].");
            Error::Validation(
                fields
                    .into_iter()
                    .map(|f| match f.field.strip_prefix(&prefix) {
                        Some(rest) => FieldError::new(rest.to_owned(), f.message),
                        None => f,
                    })
                    .collect(),
            )
        }
        other => other,
    }
}

/// `current` with `variants` instead of its own, validated for a request about the
/// variant at `index` alone.
async fn validate_variant_of(
    plugins: &Plugins,
    current: &Product,
    variants: Vec<types::VariantInput>,
    index: usize,
) -> Result<Option<types::ValidatedProduct>> {
    let input = types::ProductInput {
        slug: current.slug.clone(),
        name: current.name.clone(),
        attributes_json: current.attributes.to_string(),
        variants,
    };
    validate(plugins, current.product_type, input)
        .await
        .map_err(|e| lone_variant_fields(e, index))
}

/// A variant added to an existing product: checked beside its siblings; its SKU is
/// derived when left out.
pub async fn check_new_variant(
    plugins: &Plugins,
    current: &Product,
    variant: &mut NewVariant,
) -> Result<()> {
    if current.variants.len() >= MAX_VARIANTS {
        return Ok(());
    }
    let mut variants = existing_variants(current);
    variants.push(variant_input(
        &variant.sku,
        &variant.options,
        variant.price_minor,
        variant.weight_grams,
    ));
    let index = variants.len() - 1;
    let valid = validate_variant_of(plugins, current, variants, index).await?;
    if let Some(mut valid) = valid
        && variant.sku.trim().is_empty()
        && let Some(checked) = valid.variants.pop()
    {
        variant.sku = checked.sku;
    }
    Ok(())
}

/// A change to one variant: the product as it would be is checked. An empty `sku` in
/// the patch asks for the SKU to be derived again (after an options change, say).
pub async fn check_variant_patch(
    plugins: &Plugins,
    current: &Product,
    variant_id: i64,
    sku: &mut Option<String>,
    options: Option<&std::collections::BTreeMap<String, String>>,
    price_minor: Option<i64>,
    weight_grams: Option<i64>,
) -> Result<()> {
    let Some(index) = current.variants.iter().position(|v| v.id == variant_id) else {
        return Ok(());
    };
    let mut variants = existing_variants(current);
    let existing = &current.variants[index];
    variants[index] = variant_input(
        sku.as_deref().unwrap_or(&existing.sku),
        options.unwrap_or(&existing.options),
        price_minor.unwrap_or(existing.price.amount_minor),
        weight_grams.unwrap_or(existing.weight_grams),
    );
    let valid = validate_variant_of(plugins, current, variants, index).await?;
    if let Some(valid) = valid
        && sku.as_deref().is_some_and(|s| s.trim().is_empty())
        && let Some(checked) = valid.variants.into_iter().nth(index)
    {
        *sku = Some(checked.sku);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::AttributeKind;

    #[test]
    fn kinds_are_read_and_unknown_ones_are_text() {
        assert_eq!(AttributeKind::parse("integer"), AttributeKind::Integer);
        assert_eq!(AttributeKind::parse("string-list"), AttributeKind::List);
        assert_eq!(
            AttributeKind::parse("enum:cleanse| tone |"),
            AttributeKind::Choice(vec!["cleanse".into(), "tone".into()])
        );
        assert_eq!(
            AttributeKind::parse("enum-list:dry|oily"),
            AttributeKind::Many(vec!["dry".into(), "oily".into()])
        );
        assert_eq!(AttributeKind::parse("colour"), AttributeKind::Text);
        assert_eq!(AttributeKind::parse("string"), AttributeKind::Text);
    }
}
