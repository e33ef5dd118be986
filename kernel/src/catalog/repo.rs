//! Catalog storage: every write runs in the caller's transaction and records its event
//! in the outbox; reads assemble the product view the API, the storefront and the cache
//! share.

use std::collections::{BTreeMap, HashMap};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::model::*;
use crate::error::{Error, Problems, Result};
use crate::inventory::{self, Availability, StockState, StoreSettings, placeholders};
use crate::store::is_unique_violation;

// ---- categories -------------------------------------------------------------------------

pub async fn list_categories(conn: &mut AnyConnection) -> Result<Vec<Category>> {
    let rows = sqlx::query(
        "SELECT c.id, c.slug, c.name, p.slug, c.position FROM categories c
         LEFT JOIN categories p ON p.id = c.parent_id ORDER BY c.position, c.name",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Category {
                id: row.try_get(0)?,
                slug: row.try_get(1)?,
                name: row.try_get(2)?,
                parent: row.try_get(3)?,
                position: row.try_get(4)?,
            })
        })
        .collect()
}

/// Checks a category's fields and finds its parent's id.
async fn checked_parent(conn: &mut AnyConnection, input: &NewCategory) -> Result<Option<i64>> {
    let mut problems = Problems::new();
    check_slug(&mut problems, "slug", &input.slug);
    check_text(&mut problems, "name", &input.name, 100);
    problems.into_result()?;
    let Some(parent) = &input.parent else {
        return Ok(None);
    };
    let row = sqlx::query("SELECT id FROM categories WHERE slug = $1")
        .bind(parent)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::invalid("parent", format!("unknown category `{parent}`")))?;
    Ok(Some(row.try_get(0)?))
}

/// The category `input` describes, as stored under `id`.
fn category_from(id: i64, input: &NewCategory) -> Category {
    Category {
        id,
        slug: input.slug.clone(),
        name: input.name.trim().to_owned(),
        parent: input.parent.clone(),
        position: input.position,
    }
}

pub async fn create_category(
    conn: &mut AnyConnection,
    input: &NewCategory,
    actor: &str,
) -> Result<Category> {
    let parent_id = checked_parent(conn, input).await?;
    let row = sqlx::query(
        "INSERT INTO categories (slug, name, parent_id, position, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&input.slug)
    .bind(input.name.trim())
    .bind(parent_id)
    .bind(input.position)
    .bind(crate::time::now())
    .fetch_one(&mut *conn)
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            Error::conflict(
                Some("slug"),
                format!("category `{}` already exists", input.slug),
            )
        } else {
            err.into()
        }
    })?;
    let id: i64 = row.try_get(0)?;
    crate::bus::record(
        conn,
        "category",
        id,
        "category.created",
        &serde_json::json!({ "id": id, "slug": input.slug }),
    )
    .await?;
    let category = category_from(id, input);
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: "category.created",
            target_type: "category",
            target_id: id.to_string(),
            before: None,
            after: Some(serde_json::to_value(&category).map_err(anyhow::Error::from)?),
        },
    )
    .await?;
    Ok(category)
}

/// One category, by id.
pub async fn category_by_id(conn: &mut AnyConnection, id: i64) -> Result<Option<Category>> {
    let row = sqlx::query(
        "SELECT c.id, c.slug, c.name, p.slug, c.position FROM categories c
         LEFT JOIN categories p ON p.id = c.parent_id WHERE c.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(Category {
            id: row.try_get(0)?,
            slug: row.try_get(1)?,
            name: row.try_get(2)?,
            parent: row.try_get(3)?,
            position: row.try_get(4)?,
        })
    })
    .transpose()
}

/// The slugs of the products in category `id` (the search index and the caches refresh
/// them when the category changes).
async fn products_in_category(conn: &mut AnyConnection, id: i64) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT p.slug FROM products p JOIN product_categories pc ON pc.product_id = p.id
         WHERE pc.category_id = $1 ORDER BY p.slug",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(Error::from))
        .collect()
}

/// Changes category `id`'s slug, name, parent and position. A category cannot be put
/// inside itself or one of its own subcategories. Its products' pages and search entries
/// follow (the event names them).
pub async fn update_category(
    conn: &mut AnyConnection,
    id: i64,
    input: &NewCategory,
    actor: &str,
) -> Result<Category> {
    let parent_id = checked_parent(conn, input).await?;
    let before = category_by_id(conn, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("category {id}")))?;
    // Walk up from the new parent: meeting this category means a cycle (the step bound
    // stops at a cycle already in the table).
    let mut ancestor = parent_id;
    for _ in 0..1000 {
        let Some(at) = ancestor else { break };
        if at == id {
            return Err(Error::invalid(
                "parent",
                "a category cannot be inside itself or one of its subcategories",
            ));
        }
        ancestor = sqlx::query("SELECT parent_id FROM categories WHERE id = $1")
            .bind(at)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get::<Option<i64>, _>(0))
            .transpose()?
            .flatten();
    }
    sqlx::query(
        "UPDATE categories SET slug = $1, name = $2, parent_id = $3, position = $4 WHERE id = $5",
    )
    .bind(&input.slug)
    .bind(input.name.trim())
    .bind(parent_id)
    .bind(input.position)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            Error::conflict(
                Some("slug"),
                format!("category `{}` already exists", input.slug),
            )
        } else {
            err.into()
        }
    })?;
    let products = products_in_category(conn, id).await?;
    crate::bus::record(
        conn,
        "category",
        id,
        "category.updated",
        &serde_json::json!({ "id": id, "slug": input.slug, "products": products }),
    )
    .await?;
    let after = category_from(id, input);
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: "category.updated",
            target_type: "category",
            target_id: id.to_string(),
            before: Some(serde_json::to_value(&before).map_err(anyhow::Error::from)?),
            after: Some(serde_json::to_value(&after).map_err(anyhow::Error::from)?),
        },
    )
    .await?;
    Ok(after)
}

/// Deletes category `id`; its products stay, outside it. A category with subcategories
/// is refused (move or delete them first).
pub async fn delete_category(conn: &mut AnyConnection, id: i64, actor: &str) -> Result<()> {
    let before = category_by_id(conn, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("category {id}")))?;
    let children: i64 =
        sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM categories WHERE parent_id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
    if children > 0 {
        return Err(Error::conflict(
            None,
            format!(
                "category `{}` has {children} subcategor{}: move or delete {} first",
                before.slug,
                if children == 1 { "y" } else { "ies" },
                if children == 1 { "it" } else { "them" },
            ),
        ));
    }
    let products = products_in_category(conn, id).await?;
    for table in ["product_categories", "visitor_affinity"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE category_id = $1"
        )))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM categories WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    crate::bus::record(
        conn,
        "category",
        id,
        "category.deleted",
        &serde_json::json!({ "id": id, "slug": before.slug, "products": products }),
    )
    .await?;
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: "category.deleted",
            target_type: "category",
            target_id: id.to_string(),
            before: Some(serde_json::to_value(&before).map_err(anyhow::Error::from)?),
            after: None,
        },
    )
    .await?;
    Ok(())
}

async fn category_ids(conn: &mut AnyConnection, field: &str, slugs: &[String]) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut problems = Problems::new();
    for (i, slug) in slugs.iter().enumerate() {
        match sqlx::query("SELECT id FROM categories WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut *conn)
            .await?
        {
            Some(row) => {
                let id: i64 = row.try_get(0)?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            None => problems.add(
                format!("{field}[{i}]"),
                format!("unknown category `{slug}`"),
            ),
        }
    }
    problems.into_result()?;
    Ok(ids)
}

// ---- products ---------------------------------------------------------------------------

async fn set_categories_and_tags(
    conn: &mut AnyConnection,
    product_id: i64,
    categories: Option<&[i64]>,
    tags: Option<&[String]>,
) -> Result<()> {
    if let Some(categories) = categories {
        sqlx::query("DELETE FROM product_categories WHERE product_id = $1")
            .bind(product_id)
            .execute(&mut *conn)
            .await?;
        for category in categories {
            sqlx::query("INSERT INTO product_categories (product_id, category_id) VALUES ($1, $2)")
                .bind(product_id)
                .bind(*category)
                .execute(&mut *conn)
                .await?;
        }
    }
    if let Some(tags) = tags {
        sqlx::query("DELETE FROM product_tags WHERE product_id = $1")
            .bind(product_id)
            .execute(&mut *conn)
            .await?;
        let mut seen = Vec::new();
        for tag in tags {
            if seen.contains(tag) {
                continue;
            }
            seen.push(tag.clone());
            sqlx::query("INSERT INTO product_tags (product_id, tag) VALUES ($1, $2)")
                .bind(product_id)
                .bind(tag)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Creates a product with its variants; returns its id.
pub async fn create_product(
    conn: &mut AnyConnection,
    input: &NewProduct,
    actor: &str,
) -> Result<i64> {
    let attributes = validate_new_product(input)?;
    let categories = category_ids(conn, "categories", &input.categories).await?;
    let now = crate::time::now();
    let row = sqlx::query(
        "INSERT INTO products (slug, name, product_type, description, status, attributes, version, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) RETURNING id",
    )
    .bind(&input.slug)
    .bind(input.name.trim())
    .bind(input.product_type.as_str())
    .bind(&input.description)
    .bind(input.status.as_str())
    .bind(attributes.to_string())
    .bind(&now)
    .fetch_one(&mut *conn)
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            Error::conflict(Some("slug"), format!("a product with slug `{}` exists", input.slug))
        } else {
            err.into()
        }
    })?;
    let product_id: i64 = row.try_get(0)?;
    if let Some(intervals) = &input.subscription_intervals {
        sqlx::query("UPDATE products SET subscription_intervals = $1 WHERE id = $2")
            .bind(intervals.join(","))
            .bind(product_id)
            .execute(&mut *conn)
            .await?;
    }
    crate::failpoint::hit("catalog.after_product_insert");
    set_categories_and_tags(conn, product_id, Some(&categories), Some(&input.tags)).await?;
    let mut variant_ids = Vec::new();
    for (i, variant) in input.variants.iter().enumerate() {
        let variant_id = insert_variant(
            conn,
            product_id,
            input.product_type,
            variant,
            i as i64,
            &format!("variants[{i}]"),
        )
        .await?;
        variant_ids.push(variant_id);
    }
    crate::bus::record(
        conn,
        "product",
        product_id,
        "product.created",
        &serde_json::json!({
            "id": product_id,
            "slug": input.slug,
            "product_type": input.product_type.as_str(),
            "products": [input.slug],
        }),
    )
    .await?;
    let mut after = product_audit_state(conn, product_id).await?;
    let mut variants = Vec::new();
    for variant_id in variant_ids {
        variants.push(variant_audit_state(conn, variant_id).await?);
    }
    after["variants"] = serde_json::Value::Array(variants);
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: "product.created",
            target_type: "product",
            target_id: product_id.to_string(),
            before: None,
            after: Some(after),
        },
    )
    .await?;
    Ok(product_id)
}

struct ProductRow {
    id: i64,
    slug: String,
    product_type: ProductType,
    version: i64,
}

async fn product_row(conn: &mut AnyConnection, product_id: i64) -> Result<ProductRow> {
    let row = sqlx::query("SELECT id, slug, product_type, version FROM products WHERE id = $1")
        .bind(product_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::not_found(format!("product {product_id}")))?;
    let product_type: String = row.try_get(2)?;
    Ok(ProductRow {
        id: row.try_get(0)?,
        slug: row.try_get(1)?,
        product_type: ProductType::parse(&product_type)
            .ok_or_else(|| anyhow::anyhow!("stored product type `{product_type}` is unknown"))?,
        version: row.try_get(3)?,
    })
}

/// Bumps a product's version, taking its row lock first so that concurrent writers of
/// the same product (and their events) are serialised.
async fn bump_version(conn: &mut AnyConnection, product_id: i64) -> Result<i64> {
    let row = sqlx::query(
        "UPDATE products SET version = version + 1, updated_at = $1 WHERE id = $2 RETURNING version",
    )
    .bind(crate::time::now())
    .bind(product_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found(format!("product {product_id}")))?;
    Ok(row.try_get(0)?)
}

pub async fn update_product(
    conn: &mut AnyConnection,
    product_id: i64,
    patch: &ProductPatch,
    actor: &str,
) -> Result<()> {
    let new_version = bump_version(conn, product_id).await?;
    let current = product_row(conn, product_id).await?;
    if let Some(expected) = patch.version
        && expected != current.version - 1
    {
        return Err(Error::conflict(
            Some("version"),
            format!(
                "the product changed meanwhile: it is at version {}, not {expected}",
                current.version - 1
            ),
        ));
    }
    let mut problems = Problems::new();
    if let Some(slug) = &patch.slug {
        check_slug(&mut problems, "slug", slug);
    }
    if let Some(name) = &patch.name {
        check_text(&mut problems, "name", name, 200);
    }
    if let Some(description) = &patch.description {
        problems.check(
            description.chars().count() <= 20_000,
            "description",
            "must be at most 20,000 characters",
        );
    }
    if let Some(tags) = &patch.tags {
        check_tags(&mut problems, "tags", tags);
    }
    if let Some(intervals) = &patch.subscription_intervals {
        check_intervals(&mut problems, "subscription_intervals", intervals);
    }
    if let Some(categories) = &patch.categories {
        problems.check(
            categories.len() <= 20,
            "categories",
            "at most 20 categories",
        );
    }
    let attributes = match &patch.attributes {
        Some(attributes) => match validate_attributes(current.product_type, attributes) {
            Ok(normalised) => Some(normalised),
            Err(Error::Validation(fields)) => {
                fields
                    .into_iter()
                    .for_each(|f| problems.add(f.field, f.message));
                None
            }
            Err(other) => return Err(other),
        },
        None => None,
    };
    problems.into_result()?;
    let categories = match &patch.categories {
        Some(slugs) => Some(category_ids(conn, "categories", slugs).await?),
        None => None,
    };
    // Read under the row lock bump_version took; only the version moved yet.
    let mut before = product_audit_state(conn, product_id).await?;
    before["version"] = serde_json::json!(new_version - 1);

    sqlx::query(
        "UPDATE products SET
            slug = COALESCE($1, slug),
            name = COALESCE($2, name),
            description = COALESCE($3, description),
            status = COALESCE($4, status),
            attributes = COALESCE($5, attributes),
            subscription_intervals = COALESCE($7, subscription_intervals)
         WHERE id = $6",
    )
    .bind(patch.slug.as_deref())
    .bind(patch.name.as_deref().map(str::trim))
    .bind(patch.description.as_deref())
    .bind(patch.status.map(ProductStatus::as_str))
    .bind(attributes.map(|a| a.to_string()))
    .bind(product_id)
    .bind(patch.subscription_intervals.as_ref().map(|i| i.join(",")))
    .execute(&mut *conn)
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            Error::conflict(Some("slug"), "another product has this slug")
        } else {
            err.into()
        }
    })?;
    set_categories_and_tags(
        conn,
        product_id,
        categories.as_deref(),
        patch.tags.as_deref(),
    )
    .await?;
    let slug = patch.slug.clone().unwrap_or_else(|| current.slug.clone());
    let mut products = vec![slug.clone()];
    if slug != current.slug {
        products.push(current.slug.clone());
    }
    products.extend(bundles_containing_product(conn, product_id).await?);
    crate::bus::record(
        conn,
        "product",
        product_id,
        "product.updated",
        &serde_json::json!({
            "id": product_id,
            "slug": slug,
            "previous_slug": current.slug,
            "version": new_version,
            "products": products,
        }),
    )
    .await?;
    let after = product_audit_state(conn, product_id).await?;
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: "product.updated",
            target_type: "product",
            target_id: product_id.to_string(),
            before: Some(before),
            after: Some(after),
        },
    )
    .await?;
    Ok(())
}

/// A product's own fields, categories and tags as its audit entries show them.
async fn product_audit_state(
    conn: &mut AnyConnection,
    product_id: i64,
) -> Result<serde_json::Value> {
    let row = sqlx::query(
        "SELECT slug, name, product_type, description, status, attributes, version FROM products WHERE id = $1",
    )
    .bind(product_id)
    .fetch_one(&mut *conn)
    .await?;
    let attributes: String = row.try_get(5)?;
    let categories: Vec<String> = sqlx::query(
        "SELECT c.slug FROM product_categories pc JOIN categories c ON c.id = pc.category_id
         WHERE pc.product_id = $1 ORDER BY c.slug",
    )
    .bind(product_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?;
    let tags: Vec<String> =
        sqlx::query("SELECT tag FROM product_tags WHERE product_id = $1 ORDER BY tag")
            .bind(product_id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
    Ok(serde_json::json!({
        "id": product_id,
        "slug": row.try_get::<String, _>(0)?,
        "name": row.try_get::<String, _>(1)?,
        "product_type": row.try_get::<String, _>(2)?,
        "description": row.try_get::<String, _>(3)?,
        "status": row.try_get::<String, _>(4)?,
        "attributes": serde_json::from_str::<serde_json::Value>(&attributes)
            .unwrap_or(serde_json::Value::String(attributes)),
        "version": row.try_get::<i64, _>(6)?,
        "categories": categories,
        "tags": tags,
    }))
}

/// A variant's fields and bundle components as its audit entries show them.
async fn variant_audit_state(
    conn: &mut AnyConnection,
    variant_id: i64,
) -> Result<serde_json::Value> {
    let row = sqlx::query(
        "SELECT product_id, sku, title, options, price_minor, currency, weight_grams, position
         FROM variants WHERE id = $1",
    )
    .bind(variant_id)
    .fetch_one(&mut *conn)
    .await?;
    let options: String = row.try_get(3)?;
    let components: Vec<serde_json::Value> = sqlx::query(
        "SELECT v.sku, bc.quantity FROM bundle_components bc
           JOIN variants v ON v.id = bc.component_variant_id
         WHERE bc.bundle_variant_id = $1 ORDER BY v.sku",
    )
    .bind(variant_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(serde_json::json!({
            "sku": r.try_get::<String, _>(0)?,
            "quantity": r.try_get::<i64, _>(1)?,
        }))
    })
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(serde_json::json!({
        "id": variant_id,
        "product_id": row.try_get::<i64, _>(0)?,
        "sku": row.try_get::<String, _>(1)?,
        "title": row.try_get::<String, _>(2)?,
        "options": serde_json::from_str::<serde_json::Value>(&options)
            .unwrap_or(serde_json::Value::String(options)),
        "price_minor": row.try_get::<i64, _>(4)?,
        "currency": row.try_get::<String, _>(5)?,
        "weight_grams": row.try_get::<i64, _>(6)?,
        "position": row.try_get::<i64, _>(7)?,
        "components": components,
    }))
}

/// Slugs of bundle products that contain a variant of `product_id` (their pages show its
/// name and stock).
async fn bundles_containing_product(
    conn: &mut AnyConnection,
    product_id: i64,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT bp.slug FROM variants cv
           JOIN bundle_components bc ON bc.component_variant_id = cv.id
           JOIN variants bv ON bv.id = bc.bundle_variant_id
           JOIN products bp ON bp.id = bv.product_id
         WHERE cv.product_id = $1",
    )
    .bind(product_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| row.try_get::<String, _>(0).map_err(Error::from))
        .collect()
}

// ---- variants ---------------------------------------------------------------------------

/// Resolves component SKUs to variant ids, refusing unknown SKUs and bundle variants
/// (a bundle is made of products, never of other bundles, so no cycle can form).
async fn resolve_components(
    conn: &mut AnyConnection,
    field: &str,
    components: &[ComponentInput],
) -> Result<Vec<(i64, i64)>> {
    let mut problems = Problems::new();
    let mut resolved = Vec::new();
    for (i, component) in components.iter().enumerate() {
        let row = sqlx::query(
            "SELECT v.id, p.product_type FROM variants v JOIN products p ON p.id = v.product_id
             WHERE v.sku = $1",
        )
        .bind(&component.sku)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            None => problems.add(
                format!("{field}[{i}].sku"),
                format!("no variant has SKU `{}`", component.sku),
            ),
            Some(row) => {
                let product_type: String = row.try_get(1)?;
                if product_type == "bundle" {
                    problems.add(
                        format!("{field}[{i}].sku"),
                        "a bundle is made of product variants, not of other bundles",
                    );
                } else {
                    resolved.push((row.try_get(0)?, component.quantity));
                }
            }
        }
    }
    problems.into_result()?;
    Ok(resolved)
}

async fn set_components(
    conn: &mut AnyConnection,
    variant_id: i64,
    components: &[(i64, i64)],
) -> Result<()> {
    sqlx::query("DELETE FROM bundle_components WHERE bundle_variant_id = $1")
        .bind(variant_id)
        .execute(&mut *conn)
        .await?;
    for (component, quantity) in components {
        sqlx::query(
            "INSERT INTO bundle_components (bundle_variant_id, component_variant_id, quantity)
             VALUES ($1, $2, $3)",
        )
        .bind(variant_id)
        .bind(*component)
        .bind(*quantity)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn sku_conflict(field: &str, sku: &str) -> impl FnOnce(sqlx::Error) -> Error {
    let field = format!("{field}.sku");
    let sku = sku.to_owned();
    move |err| {
        if is_unique_violation(&err) {
            Error::conflict(Some(&field), format!("SKU `{sku}` is already in use"))
        } else {
            err.into()
        }
    }
}

async fn insert_variant(
    conn: &mut AnyConnection,
    product_id: i64,
    product_type: ProductType,
    variant: &NewVariant,
    position: i64,
    field: &str,
) -> Result<i64> {
    let components =
        resolve_components(conn, &format!("{field}.components"), &variant.components).await?;
    let now = crate::time::now();
    let row = sqlx::query(
        "INSERT INTO variants (product_id, sku, title, options, price_minor, currency, weight_grams, position, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(product_id)
    .bind(&variant.sku)
    .bind(variant.title.trim())
    .bind(serde_json::to_string(&variant.options).map_err(anyhow::Error::from)?)
    .bind(variant.price_minor)
    .bind(&variant.currency)
    .bind(variant.weight_grams)
    .bind(position)
    .bind(&now)
    .fetch_one(&mut *conn)
    .await
    .map_err(sku_conflict(field, &variant.sku))?;
    let variant_id: i64 = row.try_get(0)?;
    debug_assert!(product_type == ProductType::Bundle || components.is_empty());
    set_components(conn, variant_id, &components).await?;
    Ok(variant_id)
}

/// Adds a variant to an existing product; returns its id.
pub async fn add_variant(
    conn: &mut AnyConnection,
    product_id: i64,
    variant: &NewVariant,
    actor: &str,
) -> Result<i64> {
    let version = bump_version(conn, product_id).await?;
    let product = product_row(conn, product_id).await?;
    let mut problems = Problems::new();
    check_new_variant(&mut problems, "body", product.product_type, variant);
    // Field names of a lone variant are top-level.
    let problems = rename_body_fields(problems);
    problems.into_result()?;
    let position: i64 = sqlx::query(
        "SELECT CAST(COALESCE(MAX(position), -1) + 1 AS BIGINT) FROM variants WHERE product_id = $1",
    )
    .bind(product_id)
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    let variant_id = insert_variant(
        conn,
        product_id,
        product.product_type,
        variant,
        position,
        "body",
    )
    .await?;
    record_variant_event(conn, &product, variant_id, "variant.created", version).await?;
    let after = variant_audit_state(conn, variant_id).await?;
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: "variant.created",
            target_type: "variant",
            target_id: variant_id.to_string(),
            before: None,
            after: Some(after),
        },
    )
    .await?;
    Ok(variant_id)
}

fn rename_body_fields(problems: Problems) -> Problems {
    let mut renamed = Problems::new();
    if let Err(Error::Validation(fields)) = problems.into_result() {
        for f in fields {
            let field = f.field.strip_prefix("body.").unwrap_or(&f.field).to_owned();
            renamed.add(field, f.message);
        }
    }
    renamed
}

async fn record_variant_event(
    conn: &mut AnyConnection,
    product: &ProductRow,
    variant_id: i64,
    event_type: &str,
    version: i64,
) -> Result<()> {
    let mut products = vec![product.slug.clone()];
    products.extend(bundles_containing_product(conn, product.id).await?);
    crate::bus::record(
        conn,
        "product",
        product.id,
        event_type,
        &serde_json::json!({
            "id": product.id,
            "variant_id": variant_id,
            "slug": product.slug,
            "version": version,
            "products": products,
        }),
    )
    .await?;
    Ok(())
}

pub async fn update_variant(
    conn: &mut AnyConnection,
    variant_id: i64,
    patch: &VariantPatch,
    actor: &str,
) -> Result<()> {
    let row = sqlx::query("SELECT product_id, sku FROM variants WHERE id = $1")
        .bind(variant_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| Error::not_found(format!("variant {variant_id}")))?;
    let product_id: i64 = row.try_get(0)?;
    let current_sku: String = row.try_get(1)?;
    let version = bump_version(conn, product_id).await?;
    let product = product_row(conn, product_id).await?;

    let mut problems = Problems::new();
    if let Some(sku) = &patch.sku {
        check_sku(&mut problems, "sku", sku);
    }
    if let Some(title) = &patch.title {
        check_text(&mut problems, "title", title, 200);
    }
    if let Some(options) = &patch.options {
        check_options(&mut problems, "options", options);
    }
    if let Some(price) = patch.price_minor {
        check_price(&mut problems, "price_minor", price);
    }
    if let Some(currency) = &patch.currency {
        check_currency(&mut problems, "currency", currency);
    }
    if let Some(weight) = patch.weight_grams {
        check_weight(&mut problems, "weight_grams", weight);
    }
    if let Some(components) = &patch.components {
        let own = patch.sku.as_deref().unwrap_or(&current_sku);
        check_components(
            &mut problems,
            "components",
            product.product_type,
            Some(own),
            components,
        );
    }
    problems.into_result()?;
    // Read under the product's row lock (bump_version), before anything changes.
    let before = variant_audit_state(conn, variant_id).await?;
    if let Some(components) = &patch.components {
        let resolved = resolve_components(conn, "components", components).await?;
        set_components(conn, variant_id, &resolved).await?;
    }
    sqlx::query(
        "UPDATE variants SET
            sku = COALESCE($1, sku),
            title = COALESCE($2, title),
            options = COALESCE($3, options),
            price_minor = COALESCE($4, price_minor),
            currency = COALESCE($5, currency),
            weight_grams = COALESCE($6, weight_grams),
            position = COALESCE($7, position),
            updated_at = $8
         WHERE id = $9",
    )
    .bind(patch.sku.as_deref())
    .bind(patch.title.as_deref().map(str::trim))
    .bind(match &patch.options {
        Some(options) => Some(serde_json::to_string(options).map_err(anyhow::Error::from)?),
        None => None,
    })
    .bind(patch.price_minor)
    .bind(patch.currency.as_deref())
    .bind(patch.weight_grams)
    .bind(patch.position)
    .bind(crate::time::now())
    .bind(variant_id)
    .execute(&mut *conn)
    .await
    .map_err(sku_conflict(
        "body",
        patch.sku.as_deref().unwrap_or_default(),
    ))
    .map_err(|err| match err {
        Error::Conflict { message, .. } => Error::conflict(Some("sku"), message),
        other => other,
    })?;
    record_variant_event(conn, &product, variant_id, "variant.updated", version).await?;
    let after = variant_audit_state(conn, variant_id).await?;
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action: "variant.updated",
            target_type: "variant",
            target_id: variant_id.to_string(),
            before: Some(before),
            after: Some(after),
        },
    )
    .await?;
    Ok(())
}

// ---- reads ------------------------------------------------------------------------------

fn parse_product_type(text: &str) -> Result<ProductType> {
    ProductType::parse(text)
        .ok_or_else(|| anyhow::anyhow!("stored product type `{text}` is unknown").into())
}

fn parse_status(text: &str) -> Result<ProductStatus> {
    ProductStatus::parse(text)
        .ok_or_else(|| anyhow::anyhow!("stored product status `{text}` is unknown").into())
}

/// Which products a read may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Shoppers: active products only.
    Public,
    /// Staff: drafts and archived products too.
    All,
}

/// The full product view, by slug or id. `None` when there is no such (visible) product.
pub async fn load_product(
    conn: &mut AnyConnection,
    key: ProductKey<'_>,
    visibility: Visibility,
) -> Result<Option<Product>> {
    let base = "SELECT id, slug, name, product_type, description, status, attributes, version, created_at, updated_at, subscription_intervals FROM products";
    let query = match key {
        ProductKey::Slug(slug) => sqlx::query(if visibility == Visibility::Public {
            "SELECT id, slug, name, product_type, description, status, attributes, version, created_at, updated_at, subscription_intervals FROM products WHERE slug = $1 AND status = 'active'"
        } else {
            "SELECT id, slug, name, product_type, description, status, attributes, version, created_at, updated_at, subscription_intervals FROM products WHERE slug = $1"
        })
        .bind(slug.to_owned()),
        ProductKey::Id(id) => {
            let _ = base;
            sqlx::query(if visibility == Visibility::Public {
                "SELECT id, slug, name, product_type, description, status, attributes, version, created_at, updated_at, subscription_intervals FROM products WHERE id = $1 AND status = 'active'"
            } else {
                "SELECT id, slug, name, product_type, description, status, attributes, version, created_at, updated_at, subscription_intervals FROM products WHERE id = $1"
            })
            .bind(id)
        }
    };
    let Some(row) = query.fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let id: i64 = row.try_get(0)?;
    let attributes: String = row.try_get(6)?;

    let categories = sqlx::query(
        "SELECT c.slug, c.name FROM product_categories pc JOIN categories c ON c.id = pc.category_id
         WHERE pc.product_id = $1 ORDER BY c.position, c.name",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(CategoryRef {
            slug: r.try_get(0)?,
            name: r.try_get(1)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let tags = tags_of(conn, &[id]).await?.remove(&id).unwrap_or_default();

    let variant_rows = sqlx::query(
        "SELECT id, sku, title, options, price_minor, currency, weight_grams, position
         FROM variants WHERE product_id = $1 ORDER BY position, id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let variant_ids: Vec<i64> = variant_rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut components = components_of(conn, &variant_ids).await?;
    let settings = crate::inventory::settings::load(conn).await?;
    let mut availability = inventory::availability(conn, &variant_ids, &settings).await?;
    let variants = variant_rows
        .iter()
        .map(|r| {
            let variant_id: i64 = r.try_get(0)?;
            let options: String = r.try_get(3)?;
            Ok(Variant {
                id: variant_id,
                sku: r.try_get(1)?,
                title: r.try_get(2)?,
                options: serde_json::from_str(&options).unwrap_or_default(),
                price: Money {
                    amount_minor: r.try_get(4)?,
                    currency: r.try_get(5)?,
                },
                weight_grams: r.try_get(6)?,
                position: r.try_get(7)?,
                components: components.remove(&variant_id).unwrap_or_default(),
                availability: availability
                    .remove(&variant_id)
                    .unwrap_or_else(Availability::out_of_stock),
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let reviews = crate::reviews::summary_of(conn, id).await?;
    let images = crate::media::images_of(conn, id).await?;
    let product_type: String = row.try_get(3)?;
    let status: String = row.try_get(5)?;
    Ok(Some(Product {
        id,
        slug: row.try_get(1)?,
        name: row.try_get(2)?,
        product_type: parse_product_type(&product_type)?,
        description: row.try_get(4)?,
        status: parse_status(&status)?,
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
        categories,
        tags,
        variants,
        reviews,
        images,
        subscription_intervals: intervals_of(&row.try_get::<String, _>(10)?),
        version: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    }))
}

/// The stored list (`30d,60d`) as the JSON list.
fn intervals_of(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub enum ProductKey<'a> {
    Slug(&'a str),
    Id(i64),
}

async fn tags_of(
    conn: &mut AnyConnection,
    product_ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>> {
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    if product_ids.is_empty() {
        return Ok(tags);
    }
    let sql = format!(
        "SELECT product_id, tag FROM product_tags WHERE product_id IN ({}) ORDER BY tag",
        placeholders(1, product_ids.len())
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for id in product_ids {
        query = query.bind(*id);
    }
    for row in query.fetch_all(conn).await? {
        tags.entry(row.try_get(0)?)
            .or_default()
            .push(row.try_get(1)?);
    }
    Ok(tags)
}

async fn components_of(
    conn: &mut AnyConnection,
    variant_ids: &[i64],
) -> Result<HashMap<i64, Vec<Component>>> {
    let mut components: HashMap<i64, Vec<Component>> = HashMap::new();
    if variant_ids.is_empty() {
        return Ok(components);
    }
    let sql = format!(
        "SELECT bc.bundle_variant_id, v.id, v.sku, v.title, p.name, bc.quantity
         FROM bundle_components bc
           JOIN variants v ON v.id = bc.component_variant_id
           JOIN products p ON p.id = v.product_id
         WHERE bc.bundle_variant_id IN ({}) ORDER BY p.name, v.position",
        placeholders(1, variant_ids.len())
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for id in variant_ids {
        query = query.bind(*id);
    }
    for row in query.fetch_all(conn).await? {
        components
            .entry(row.try_get(0)?)
            .or_default()
            .push(Component {
                variant_id: row.try_get(1)?,
                sku: row.try_get(2)?,
                title: row.try_get(3)?,
                product_name: row.try_get(4)?,
                quantity: row.try_get(5)?,
            });
    }
    Ok(components)
}

/// Filters for product listings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductFilter {
    /// Category slug; products of its subcategories are included.
    pub category: Option<String>,
    pub tag: Option<String>,
    /// `supplement`, `skincare` or `bundle`.
    #[serde(rename = "type")]
    #[param(rename = "type", inline, value_type = Option<ProductType>)]
    pub product_type: Option<String>,
    /// 1-based page number, at most 100000 (default 1).
    #[param(minimum = 1, maximum = 100_000)]
    pub page: Option<i64>,
    /// Items per page, 1 to 100 (default 24).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

impl ProductFilter {
    pub fn validate(&self) -> Result<(i64, i64)> {
        let mut problems = Problems::new();
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(24);
        problems.check(
            (1..=100_000).contains(&page),
            "page",
            "must be between 1 and 100000",
        );
        problems.check(
            (1..=100).contains(&per_page),
            "per_page",
            "must be between 1 and 100",
        );
        if let Some(t) = &self.product_type {
            problems.check(
                ProductType::parse(t).is_some(),
                "type",
                "must be one of supplement, skincare, bundle",
            );
        }
        problems.into_result()?;
        Ok((page, per_page))
    }
}

pub async fn list_products(
    conn: &mut AnyConnection,
    filter: &ProductFilter,
    visibility: Visibility,
) -> Result<ProductPage> {
    let (page, per_page) = filter.validate()?;
    let mut conditions = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    if visibility == Visibility::Public {
        conditions.push("p.status = 'active'".to_owned());
    }
    if let Some(category) = &filter.category {
        binds.push(category.clone());
        let n = binds.len();
        conditions.push(format!(
            "p.id IN (SELECT pc.product_id FROM product_categories pc JOIN categories c ON c.id = pc.category_id
                      WHERE c.slug = ${n} OR c.parent_id IN (SELECT id FROM categories WHERE slug = ${n}))"
        ));
    }
    if let Some(tag) = &filter.tag {
        binds.push(tag.clone());
        conditions.push(format!(
            "p.id IN (SELECT product_id FROM product_tags WHERE tag = ${})",
            binds.len()
        ));
    }
    if let Some(product_type) = &filter.product_type {
        binds.push(product_type.clone());
        conditions.push(format!("p.product_type = ${}", binds.len()));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };

    let count_sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM products p {where_clause}");
    let mut count_query = sqlx::query(AssertSqlSafe(count_sql));
    for b in &binds {
        count_query = count_query.bind(b.clone());
    }
    let total: i64 = count_query.fetch_one(&mut *conn).await?.try_get(0)?;

    let list_sql = format!(
        "SELECT p.id, p.slug, p.name, p.product_type, p.status FROM products p {where_clause}
         ORDER BY LOWER(p.name), p.id LIMIT ${} OFFSET ${}",
        binds.len() + 1,
        binds.len() + 2
    );
    let mut list_query = sqlx::query(AssertSqlSafe(list_sql));
    for b in &binds {
        list_query = list_query.bind(b.clone());
    }
    let rows: Vec<AnyRow> = list_query
        .bind(per_page)
        .bind((page - 1) * per_page)
        .fetch_all(&mut *conn)
        .await?;
    let product_ids: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut tags = tags_of(conn, &product_ids).await?;

    // Variants of the listed products, for "from" prices and stock.
    let mut variants_by_product: BTreeMap<i64, Vec<(i64, Money)>> = BTreeMap::new();
    if !product_ids.is_empty() {
        let sql = format!(
            "SELECT product_id, id, price_minor, currency FROM variants WHERE product_id IN ({})",
            placeholders(1, product_ids.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in &product_ids {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *conn).await? {
            variants_by_product
                .entry(row.try_get(0)?)
                .or_default()
                .push((
                    row.try_get(1)?,
                    Money {
                        amount_minor: row.try_get(2)?,
                        currency: row.try_get(3)?,
                    },
                ));
        }
    }
    let all_variants: Vec<i64> = variants_by_product
        .values()
        .flatten()
        .map(|(id, _)| *id)
        .collect();
    let settings: StoreSettings = crate::inventory::settings::load(conn).await?;
    let availability = inventory::availability(conn, &all_variants, &settings).await?;

    let items = rows
        .iter()
        .map(|row| {
            let id: i64 = row.try_get(0)?;
            let product_type: String = row.try_get(3)?;
            let status: String = row.try_get(4)?;
            let variants = variants_by_product
                .get(&id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let price_from = variants
                .iter()
                .map(|(_, m)| m)
                .min_by_key(|m| m.amount_minor)
                .cloned();
            let sellable: i64 = variants
                .iter()
                .filter_map(|(v, _)| availability.get(v))
                .map(|a| a.sellable_quantity)
                .sum();
            let state = if variants
                .iter()
                .filter_map(|(v, _)| availability.get(v))
                .any(|a| a.state == StockState::InStock)
            {
                StockState::InStock
            } else if sellable > 0 {
                StockState::LowStock
            } else {
                StockState::OutOfStock
            };
            let best_before = variants
                .iter()
                .filter_map(|(v, _)| availability.get(v))
                .filter_map(|a| a.best_before.clone())
                .min();
            Ok(ProductSummary {
                id,
                slug: row.try_get(1)?,
                name: row.try_get(2)?,
                product_type: parse_product_type(&product_type)?,
                status: parse_status(&status)?,
                price_from,
                variant_count: variants.len() as i64,
                availability: Availability {
                    state,
                    sellable_quantity: sellable,
                    best_before,
                },
                tags: tags.remove(&id).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ProductPage {
        items,
        page,
        per_page,
        total,
    })
}
