//! Products with their variants, typed attributes and categories, checked as the admin
//! API checks them: the taxonomy plugin of the product's type first (it normalises the
//! attributes and derives SKUs left blank), then the kernel's own rules. Categories the
//! store does not have yet are created (and reported). A newer export updates the
//! product and its variants by SKU; variants missing from it are left as they are.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use sqlx::Row as _;

use super::source::{CsvRecord, Row};
use super::{Context, Kind, Options, Prepared, Progress, Record, Report};
use crate::catalog::model::{
    self, ComponentInput, NewCategory, NewProduct, NewVariant, Product, ProductPatch, VariantPatch,
};
use crate::catalog::repo::{self, ProductKey, Visibility};
use crate::error::{Error, Problems, Result};
use crate::store::Tx;

pub struct Item {
    input: NewProduct,
}

/// The products CSV: one line a variant, lines of one product share its `slug`.
pub fn from_csv(records: Vec<CsvRecord>, _options: &Options, report: &mut Report) -> Vec<Row> {
    super::source::group_by(&records, "slug")
        .into_iter()
        .map(|lines| product_row(&lines, report))
        .collect()
}

fn product_row(lines: &[&CsvRecord], report: &mut Report) -> Row {
    let first = lines[0];
    let row = first.line;
    let attributes = match first.opt("attributes") {
        None => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|e| {
            report.problem(row, None, "attributes", format!("not JSON: {e}"));
            Value::Null
        }),
    };
    let variants: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| variant_value(line, row, i, report))
        .collect();
    let mut value = serde_json::json!({
        "slug": first.get("slug"),
        "name": first.get("name"),
        "product_type": first.get("product_type"),
        "description": first.get("description"),
        "status": first.opt("status").unwrap_or("active"),
        "categories": first.list("categories"),
        "tags": first.list("tags"),
        "attributes": attributes,
        "variants": variants,
    });
    if first.opt("subscription_intervals").is_some() {
        value["subscription_intervals"] = first.list("subscription_intervals");
    }
    if let Some(id) = first.opt("legacy_id") {
        value["legacy_id"] = Value::String(id.to_owned());
    }
    value["updated_at"] = super::source::updated_at(lines);
    Row { row, value }
}

fn variant_value(line: &CsvRecord, row: usize, i: usize, report: &mut Report) -> Value {
    let field = |name: &str| format!("variants[{i}].{name}");
    let options: BTreeMap<String, String> = line
        .get("options")
        .split('|')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let components: Vec<Value> = line
        .get("components")
        .split('|')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let (sku, quantity) = c.split_once('*').unwrap_or((c, "1"));
            let quantity = quantity.trim().parse::<i64>().unwrap_or_else(|_| {
                report.problem(
                    row,
                    None,
                    field("components"),
                    format!("`{c}` is not SKU*quantity"),
                );
                0
            });
            serde_json::json!({"sku": sku.trim(), "quantity": quantity})
        })
        .collect();
    serde_json::json!({
        "sku": line.get("sku"),
        "title": line.get("variant_title"),
        "options": options,
        "price_minor": line.amount("price", row, &field("price_minor"), report),
        "currency": line.get("currency"),
        "weight_grams": line.integer("weight_grams", row, &field("weight_grams"), report),
        "components": components,
    })
}

/// What the file holds beyond its own rows: SKUs and slugs seen so far.
#[derive(Default)]
struct Seen {
    skus: HashMap<String, usize>,
}

pub async fn check(
    ctx: &Context,
    rows: Vec<Row>,
    report: &mut Report,
    progress: &dyn Progress,
) -> Result<Vec<Prepared>> {
    let mut prepared = Vec::new();
    let mut seen = Seen::default();
    let mut conn = ctx.db.pool.acquire().await?;
    for (done, row) in rows.into_iter().enumerate() {
        super::checked_rows(progress, done);
        let slug = row.value.get("slug").and_then(Value::as_str).unwrap_or("");
        let Some(legacy_id) = super::legacy_id_of(&row.value, Some(slug)) else {
            report.problem(row.row, None, "legacy_id", "give a legacy_id or a slug");
            continue;
        };
        let Some(mut input) = super::parse_row::<NewProduct>(&row, Some(&legacy_id), report) else {
            continue;
        };
        if let Err(err) = check_rules(ctx, &mut input).await {
            report.problems_from(row.row, Some(&legacy_id), "", err)?;
            continue;
        }
        let mut problems = Problems::new();
        check_against_store(&mut conn, &legacy_id, &input, &seen, &mut problems).await?;
        if let Err(err) = problems.into_result() {
            report.problems_from(row.row, Some(&legacy_id), "", err)?;
            continue;
        }
        note_new_categories(&mut conn, row.row, &input, report).await?;
        for variant in &input.variants {
            seen.skus.insert(variant.sku.clone(), row.row);
        }
        prepared.push(Prepared {
            row: row.row,
            fingerprint: super::fingerprint(&row.value)?,
            legacy_id,
            record: Record::Product(Box::new(Item { input })),
        });
    }
    Ok(prepared)
}

/// The checks the admin API makes of a new product: its type's taxonomy plugin, then
/// the kernel's rules.
async fn check_rules(ctx: &Context, input: &mut NewProduct) -> Result<()> {
    if let Some(plugins) = &ctx.plugins {
        crate::plugins::taxonomy::check_new_product(plugins, input).await?;
    }
    model::validate_new_product(input)?;
    let mut problems = Problems::new();
    for (i, slug) in input.categories.iter().enumerate() {
        model::check_slug(&mut problems, &format!("categories[{i}]"), slug);
    }
    problems.into_result()
}

/// The slug and SKUs are this legacy product's or free (in the store and earlier in
/// the file); bundle components exist in the store or earlier in the file.
async fn check_against_store(
    conn: &mut sqlx::AnyConnection,
    legacy_id: &str,
    input: &NewProduct,
    seen: &Seen,
    problems: &mut Problems,
) -> Result<()> {
    let mine = super::local_id(&mut *conn, Kind::Products, legacy_id).await?;
    let slug_owner = owner(
        &mut *conn,
        "SELECT id FROM products WHERE slug = $1",
        &input.slug,
    )
    .await?;
    problems.check(
        slug_owner.is_none() || slug_owner == mine,
        "slug",
        "another product (not this legacy product) has this slug",
    );
    for (i, variant) in input.variants.iter().enumerate() {
        let field = format!("variants[{i}].sku");
        if let Some(row) = seen.skus.get(&variant.sku) {
            problems.add(&field, format!("the same SKU is on row {row}"));
        }
        let sku_owner = owner(
            &mut *conn,
            "SELECT product_id FROM variants WHERE sku = $1",
            &variant.sku,
        )
        .await?;
        problems.check(
            sku_owner.is_none() || sku_owner == mine,
            &field,
            "another product (not this legacy product) has this SKU",
        );
        for (j, component) in variant.components.iter().enumerate() {
            let known = seen.skus.contains_key(&component.sku)
                || owner(
                    &mut *conn,
                    "SELECT id FROM variants WHERE sku = $1",
                    &component.sku,
                )
                .await?
                .is_some();
            problems.check(
                known,
                format!("variants[{i}].components[{j}].sku"),
                "no variant has this SKU (list components before their bundles)",
            );
        }
    }
    Ok(())
}

async fn owner(
    conn: &mut sqlx::AnyConnection,
    sql: &'static str,
    key: &str,
) -> Result<Option<i64>> {
    let row = sqlx::query(sql).bind(key).fetch_optional(conn).await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Categories the store lacks are made by the import: the report says which.
async fn note_new_categories(
    conn: &mut sqlx::AnyConnection,
    row: usize,
    input: &NewProduct,
    report: &mut Report,
) -> Result<()> {
    for (i, slug) in input.categories.iter().enumerate() {
        if owner(
            &mut *conn,
            "SELECT id FROM categories WHERE slug = $1",
            slug,
        )
        .await?
        .is_none()
        {
            report.repair(row, format!("categories[{i}]"), "new category", "", slug);
        }
    }
    Ok(())
}

/// `vitamins-and-minerals` → `Vitamins and minerals`.
fn category_name(slug: &str) -> String {
    let words = slug.replace('-', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

async fn ensure_categories(ctx: &Context, tx: &mut Tx, slugs: &[String]) -> Result<()> {
    for slug in slugs {
        if owner(tx, "SELECT id FROM categories WHERE slug = $1", slug)
            .await?
            .is_none()
        {
            let category = NewCategory {
                slug: slug.clone(),
                name: category_name(slug),
                parent: None,
                position: 0,
            };
            repo::create_category(tx, &category, &ctx.actor).await?;
        }
    }
    Ok(())
}

pub async fn create(ctx: &Context, tx: &mut Tx, item: &Item) -> Result<i64> {
    ensure_categories(ctx, tx, &item.input.categories).await?;
    repo::create_product(tx, &item.input, &ctx.actor).await
}

/// The product's fields as the file has them, its variants by SKU: changed ones
/// updated, new ones added.
pub async fn update(ctx: &Context, tx: &mut Tx, item: &Item, local_id: i64) -> Result<()> {
    let input = &item.input;
    ensure_categories(ctx, tx, &input.categories).await?;
    let patch = ProductPatch {
        slug: Some(input.slug.clone()),
        name: Some(input.name.clone()),
        description: Some(input.description.clone()),
        status: Some(input.status),
        categories: Some(input.categories.clone()),
        tags: Some(input.tags.clone()),
        subscription_intervals: input.subscription_intervals.clone(),
        attributes: Some(input.attributes.clone()),
        version: None,
    };
    repo::update_product(tx, local_id, &patch, &ctx.actor).await?;
    let current = repo::load_product(tx, ProductKey::Id(local_id), Visibility::All)
        .await?
        .ok_or_else(|| Error::not_found(format!("product {local_id}")))?;
    for variant in &input.variants {
        match current.variants.iter().find(|v| v.sku == variant.sku) {
            Some(existing) => {
                if let Some(patch) = variant_patch(&current, existing.id, variant) {
                    repo::update_variant(tx, existing.id, &patch, &ctx.actor).await?;
                }
            }
            None => {
                repo::add_variant(tx, local_id, variant, &ctx.actor).await?;
            }
        }
    }
    Ok(())
}

/// What differs between a stored variant and the file's; None when nothing does.
fn variant_patch(current: &Product, variant_id: i64, new: &NewVariant) -> Option<VariantPatch> {
    let old = current.variants.iter().find(|v| v.id == variant_id)?;
    let old_components: HashSet<(String, i64)> = old
        .components
        .iter()
        .map(|c| (c.sku.clone(), c.quantity))
        .collect();
    let new_components: HashSet<(String, i64)> = new
        .components
        .iter()
        .map(|c: &ComponentInput| (c.sku.clone(), c.quantity))
        .collect();
    let same = old.title == new.title.trim()
        && old.options == new.options
        && old.price.amount_minor == new.price_minor
        && old.price.currency == new.currency
        && old.weight_grams == new.weight_grams
        && old_components == new_components;
    (!same).then(|| VariantPatch {
        title: Some(new.title.clone()),
        options: Some(new.options.clone()),
        price_minor: Some(new.price_minor),
        currency: Some(new.currency.clone()),
        weight_grams: Some(new.weight_grams),
        components: (!new.components.is_empty()).then(|| new.components.clone()),
        ..VariantPatch::default()
    })
}
