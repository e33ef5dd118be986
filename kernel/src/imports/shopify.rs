//! Shopify's products CSV export (Products → Export → CSV for Excel or plain CSV), read
//! into the API's product shape. The columns used are documented in docs/IMPORTS.md;
//! the others (inventory, images, SEO, gift cards, …) are ignored. Shopify has no
//! typed attributes: they come from a product metafield column
//! `… (product.metafields.olivine.attributes)` holding the attributes' JSON.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Options;
use super::report::Report;
use super::source::{CsvRecord, Row};

/// The metafield column that carries a product's typed attributes (its header, lower-
/// cased, ends with this).
const ATTRIBUTES_METAFIELD: &str = "(product.metafields.olivine.attributes)";

pub fn from_csv(records: Vec<CsvRecord>, options: &Options, report: &mut Report) -> Vec<Row> {
    super::source::group_by(&records, "handle")
        .into_iter()
        .map(|lines| product_row(&lines, options, report))
        .collect()
}

fn product_row(lines: &[&CsvRecord], options: &Options, report: &mut Report) -> Row {
    let first = lines[0];
    let row = first.line;
    let handle = first.get("handle").trim().to_owned();
    let mut value = serde_json::json!({
        "legacy_id": handle,
        "slug": handle,
        "name": first.get("title"),
        "product_type": product_type(first, row, report),
        "description": plain_text(first.get("body (html)"), row, report),
        "status": status(first),
        "categories": category(first),
        "tags": tags(first, row, report),
        "attributes": attributes(first, row, report),
    });
    // Image-only lines (a handle and an image, nothing of a variant) carry no variant.
    let variants: Vec<Value> = lines
        .iter()
        .filter(|l| l.opt("variant sku").is_some() || l.opt("variant price").is_some())
        .enumerate()
        .map(|(i, line)| variant(line, row, i, options, report))
        .collect();
    value["variants"] = Value::Array(variants);
    Row { row, value }
}

/// Shopify's free-form `Type`: `Supplement(s)`, `Skincare`, `Bundle(s)`.
fn product_type(first: &CsvRecord, row: usize, report: &mut Report) -> Value {
    let text = first.get("type").trim().to_lowercase();
    let known = match text.as_str() {
        "supplement" | "supplements" => "supplement",
        "skincare" | "skin care" => "skincare",
        "bundle" | "bundles" => "bundle",
        _ => {
            report.problem(
                row,
                Some(first.get("handle")),
                "product_type",
                format!(
                    "Shopify's Type `{}` is not Supplement, Skincare or Bundle",
                    first.get("type")
                ),
            );
            return Value::Null;
        }
    };
    Value::String(known.to_owned())
}

fn status(first: &CsvRecord) -> &'static str {
    match first.get("status").trim().to_lowercase().as_str() {
        "active" => "active",
        "draft" => "draft",
        "archived" => "archived",
        _ if first.get("published").trim().eq_ignore_ascii_case("false") => "draft",
        _ => "active",
    }
}

/// The last step of Shopify's `Product Category` path (`… > Vitamins & Supplements`)
/// as a category slug.
fn category(first: &CsvRecord) -> Value {
    let last = first
        .get("product category")
        .rsplit('>')
        .next()
        .unwrap_or("");
    let slug = slugify(last);
    Value::Array(if slug.is_empty() {
        vec![]
    } else {
        vec![Value::String(slug)]
    })
}

/// Shopify's comma-separated tags as tag slugs (`Vegan Friendly` → `vegan-friendly`).
fn tags(first: &CsvRecord, row: usize, report: &mut Report) -> Value {
    let mut tags = Vec::new();
    for tag in first
        .get("tags")
        .split(',')
        .filter(|t| !t.trim().is_empty())
    {
        let slug = slugify(tag);
        if slug != tag.trim() {
            report.repair(row, "tags", "tag as a slug", tag.trim(), &slug);
        }
        tags.push(Value::String(slug));
    }
    Value::Array(tags)
}

fn attributes(first: &CsvRecord, row: usize, report: &mut Report) -> Value {
    let column = first.columns().find(|c| c.ends_with(ATTRIBUTES_METAFIELD));
    let Some(text) = column.and_then(|c| first.opt(c)) else {
        report.problem(
            row,
            Some(first.get("handle")),
            "attributes",
            "Shopify exports have no typed attributes: add the column \
             `Attributes (product.metafields.olivine.attributes)` with their JSON",
        );
        return Value::Null;
    };
    serde_json::from_str(text).unwrap_or_else(|e| {
        report.problem(
            row,
            Some(first.get("handle")),
            "attributes",
            format!("not JSON: {e}"),
        );
        Value::Null
    })
}

fn variant(
    line: &CsvRecord,
    row: usize,
    i: usize,
    options: &Options,
    report: &mut Report,
) -> Value {
    let mut chosen = BTreeMap::new();
    for n in 1..=3 {
        let name = line.get(&format!("option{n} name")).trim().to_owned();
        let value = line.get(&format!("option{n} value")).trim().to_owned();
        // Shopify's single-variant products say `Title: Default Title`: no option.
        if name.is_empty() || value.is_empty() || value == "Default Title" {
            continue;
        }
        chosen.insert(name.to_lowercase(), value);
    }
    let title = if chosen.is_empty() {
        "Default".to_owned()
    } else {
        chosen.values().cloned().collect::<Vec<_>>().join(" / ")
    };
    let grams = match line.opt("variant grams") {
        None => Value::from(0),
        Some(text) => match text.trim().parse::<f64>() {
            Ok(g) if g.is_finite() && g >= 0.0 => Value::from(g.round() as i64),
            _ => {
                report.problem(
                    row,
                    None,
                    format!("variants[{i}].weight_grams"),
                    format!("Variant Grams `{text}` is not a weight"),
                );
                Value::Null
            }
        },
    };
    serde_json::json!({
        "sku": line.get("variant sku"),
        "title": title,
        "options": chosen,
        "price_minor": line.amount("variant price", row, &format!("variants[{i}].price_minor"), report),
        "currency": options.currency,
        "weight_grams": grams,
    })
}

/// The description as plain text: Shopify's is HTML, the store's is text.
fn plain_text(html: &str, row: usize, report: &mut Report) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&amp;", "&")
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text != html.trim() {
        report.repair(row, "description", "HTML to plain text", html, &text);
    }
    text
}

/// Lower-case letters and digits joined by single hyphens.
pub fn slugify(text: &str) -> String {
    let mut slug = String::new();
    for c in text.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs() {
        assert_eq!(
            super::slugify(" Vitamins & Supplements "),
            "vitamins-supplements"
        );
        assert_eq!(super::slugify("Vegan"), "vegan");
        assert_eq!(super::slugify("--"), "");
    }
}
