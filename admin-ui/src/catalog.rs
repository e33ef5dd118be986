//! Catalog and stock pages: the products list (paged and filtered on the server), a
//! product's form with its type's attributes, its variants and their lots, and receiving
//! a lot. Writes go through the catalog's and inventory's domain functions, as the admin
//! API's do, so the taxonomy plugin, the events and the audit log see them alike.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};
use serde_json::{Value, json};
use sqlx::Row;

use super::layout::{self, Form, FormErrors, Kind, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::catalog::model::{
    Category, ComponentInput, NewProduct, NewVariant, Product, ProductPatch, ProductStatus,
    ProductType, VariantPatch,
};
use crate::error::{Error, Result};
use crate::inventory::{Lot, NewLot, StockFilter};
use crate::plugins::taxonomy::{AttributeField, AttributeKind};
use crate::staff::Staff;

const PER_PAGE: i64 = 50;
const SECTION: &str = "/admin/products";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/products", get(list_page))
        .route("/admin/products/new", get(new_page).post(create))
        .route("/admin/products/{id}", get(edit_page).post(update))
        .route("/admin/products/{id}/variants", post(add_variant))
        .route("/admin/variants/{id}", post(update_variant))
        .route("/admin/lots", get(lots_page))
        .route("/admin/lots/new", get(receive_page).post(receive))
}

// ---- the products list --------------------------------------------------------------------

/// The list's filters, as the query string gives them.
struct ListFilter {
    text: String,
    category: String,
    status: String,
    /// `out`: only products with a variant that has no unit selling today.
    stock: String,
    page: i64,
}

impl ListFilter {
    fn parse(query: Option<&str>) -> ListFilter {
        let value = |name| layout::query_value(query, name).unwrap_or_default();
        ListFilter {
            text: value("q").chars().take(100).collect(),
            category: value("category"),
            status: value("status"),
            stock: value("stock"),
            page: layout::page_number(query),
        }
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("q", self.text.clone()),
            ("category", self.category.clone()),
            ("status", self.status.clone()),
            ("stock", self.stock.clone()),
        ]
    }
}

/// One row of the list.
struct ProductRow {
    id: i64,
    name: String,
    slug: String,
    product_type: String,
    status: String,
    variants: i64,
    /// Units in lots that sell today (`inventory::sellable_lot_sql`, the storefront's rule).
    units: i64,
    /// Units in lots that do not: recalled, expired, or inside the minimum shelf life.
    unsellable_units: i64,
}

/// A page of products with the filters: name words or an exact SKU, a category (its
/// subcategories included), a status, out of stock. Ordered by name, `PER_PAGE` a page;
/// with the total, and when out of stock, when that was counted.
async fn find_products(state: &AppState, filter: &ListFilter) -> Result<ProductPage> {
    let mut conditions: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    if !filter.text.is_empty() {
        binds.push(format!("%{}%", filter.text.to_lowercase()));
        binds.push(filter.text.clone());
        let (like, sku) = (binds.len() - 1, binds.len());
        conditions.push(format!(
            "(LOWER(p.name) LIKE ${like} OR p.id IN (SELECT product_id FROM variants WHERE sku = ${sku}))"
        ));
    }
    if !filter.category.is_empty() {
        binds.push(filter.category.clone());
        let n = binds.len();
        conditions.push(format!(
            "p.id IN (SELECT pc.product_id FROM product_categories pc JOIN categories c ON c.id = pc.category_id
                      WHERE c.slug = ${n} OR c.parent_id IN (SELECT id FROM categories WHERE slug = ${n}))"
        ));
    }
    let status = ProductStatus::parse(&filter.status).map(|_| filter.status.as_str());
    let where_clause = |conditions: &[String]| {
        if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        }
    };
    let offset = (filter.page - 1) * PER_PAGE;
    let (ids, total, out_counted_at) = if filter.stock == "out" {
        // The dashboard's out-of-stock products (kept briefly: a pass over every
        // variant), narrowed by the other filters.
        let out = super::dashboard::out_of_stock(state).await?;
        let matching: Option<std::collections::HashSet<i64>> = if conditions.is_empty() {
            None
        } else {
            let sql = format!("SELECT p.id FROM products p {}", where_clause(&conditions));
            let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
            for bind in &binds {
                query = query.bind(bind.clone());
            }
            Some(query.fetch_all(&state.db.pool).await?.into_iter().collect())
        };
        let found: Vec<i64> = out
            .products
            .iter()
            .filter(|(id, product_status, _)| {
                status.is_none_or(|s| s == product_status)
                    && matching.as_ref().is_none_or(|m| m.contains(id))
            })
            .map(|(id, _, _)| *id)
            .collect();
        let page = found
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(PER_PAGE as usize)
            .copied()
            .collect();
        (page, found.len() as i64, Some(out.counted_at.clone()))
    } else {
        if let Some(status) = status {
            binds.push(status.to_string());
            conditions.push(format!("p.status = ${}", binds.len()));
        }
        let where_clause = where_clause(&conditions);
        let count_sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM products p {where_clause}");
        let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql));
        // The page's ids by the index on the lower-cased name.
        let page_sql = format!(
            "SELECT p.id FROM products p {where_clause} ORDER BY LOWER(p.name), p.id LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        );
        let mut page = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(page_sql));
        for bind in &binds {
            count = count.bind(bind.clone());
            page = page.bind(bind.clone());
        }
        let total = count.fetch_one(&state.db.pool).await?;
        let ids = page
            .bind(PER_PAGE)
            .bind(offset)
            .fetch_all(&state.db.pool)
            .await?;
        (ids, total, None)
    };
    Ok(ProductPage {
        rows: product_rows(state, &ids).await?,
        total,
        out_counted_at,
    })
}

/// A page of the products list.
struct ProductPage {
    rows: Vec<ProductRow>,
    total: i64,
    /// With the out-of-stock filter: when the out-of-stock products were counted.
    out_counted_at: Option<String>,
}

/// The list's rows of the products `ids` (a page), with their variant and unit counts:
/// counting in the sorted query counted every product. Units in stock are those the shop
/// sells today (the storefront's one rule); the units of the other lots with units left
/// are counted apart.
async fn product_rows(state: &AppState, ids: &[i64]) -> Result<Vec<ProductRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT p.id, p.name, p.slug, p.product_type, p.status,
            (SELECT CAST(COUNT(*) AS BIGINT) FROM variants v WHERE v.product_id = p.id),
            (SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) FROM lots l
               JOIN variants v ON v.id = l.variant_id WHERE v.product_id = p.id AND {sellable}),
            (SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) FROM lots l
               JOIN variants v ON v.id = l.variant_id WHERE v.product_id = p.id AND l.quantity > 0)
         FROM products p WHERE p.id IN ({ids})
         ORDER BY LOWER(p.name), p.id",
        sellable = crate::inventory::sellable_lot_sql("l", "$1"),
        ids = crate::inventory::placeholders(2, ids.len()),
    );
    let mut query =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(super::dashboard::sellable_cutoff(state).await?);
    for id in ids {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(&state.db.pool).await?;
    rows.iter()
        .map(|row| {
            Ok(ProductRow {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                slug: row.try_get(2)?,
                product_type: row.try_get(3)?,
                status: row.try_get(4)?,
                variants: row.try_get(5)?,
                units: row.try_get(6)?,
                unsellable_units: row.try_get::<i64, _>(7)? - row.try_get::<i64, _>(6)?,
            })
        })
        .collect()
}

async fn categories(state: &AppState) -> Result<Vec<Category>> {
    let mut conn = state.db.pool.acquire().await?;
    crate::catalog::repo::list_categories(&mut conn).await
}

async fn list_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let filter = ListFilter::parse(query.as_deref());
    let found = async {
        Ok::<_, Error>((
            find_products(&state, &filter).await?,
            categories(&state).await?,
        ))
    };
    let (
        ProductPage {
            rows: products,
            total,
            out_counted_at,
        },
        categories,
    ) = match found.await {
        Ok(found) => found,
        Err(err) => return layout::error_page(&err, "products"),
    };
    let may_write = super::may(staff.role, &axum::http::Method::GET, "/admin/products/new");
    let category_options: Vec<(&str, &str)> = std::iter::once(("", "Any category"))
        .chain(
            categories
                .iter()
                .map(|c| (c.slug.as_str(), c.name.as_str())),
        )
        .collect();
    let body = html! {
        div.title-row {
            h1 { "Products" }
            @if may_write {
                div.actions {
                    a.button.primary href="/admin/products/new?type=supplement" { "New supplement" }
                    a.button href="/admin/products/new?type=skincare" { "New skincare" }
                    a.button href="/admin/products/new?type=bundle" { "New bundle" }
                }
            }
            a.button href="/admin/categories" { "Categories" }
        }
        form.filters method="get" action="/admin/products" role="search" {
            (field("Name or SKU", "q", Kind::Text, &filter.text, &FormErrors::default()))
            (field("Category", "category", Kind::Select(&category_options), &filter.category, &FormErrors::default()))
            (field("Status", "status", Kind::Select(STATUS_FILTER), &filter.status, &FormErrors::default()))
            (field("Stock", "stock", Kind::Select(STOCK_FILTER), &filter.stock, &FormErrors::default()))
            button.button type="submit" { "Filter" }
        }
        @if let Some(counted_at) = &out_counted_at {
            p.hint.out-counted { "Out of stock as counted at " (counted_at) " UTC (each node counts again every 30 s); the units are as they are now." }
        }
        @if products.is_empty() {
            p.empty { "No products match." }
        } @else {
            table {
                caption.visually-hidden { "Products" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Status" }
                    th scope="col" class="num" { "Variants" } th scope="col" class="num" { "Units in stock" } } }
                tbody {
                    @for product in &products {
                        tr {
                            td { a.product-link href={ "/admin/products/" (product.id) } { (product.name) } br; small { (product.slug) } }
                            td { (product.product_type) }
                            td { span class={ "badge " (product.status) } { (product.status) } }
                            td.num { (product.variants) }
                            td.num.units {
                                span.sellable-units { (product.units) }
                                @if product.unsellable_units > 0 {
                                    " " small.unsellable-units title="Units in recalled or expired lots, or in lots inside the store's minimum shelf life: the shop does not sell them." {
                                        "(+" (product.unsellable_units) " unsellable)" }
                                }
                            }
                        }
                    }
                }
            }
        }
        (layout::pager("/admin/products", &filter.params(), filter.page, PER_PAGE, total))
    };
    layout::page(&staff, admin.csrf_input(), "Products", SECTION, body)
}

const STATUS_FILTER: &[(&str, &str)] = &[
    ("", "Any status"),
    ("active", "Active"),
    ("draft", "Draft"),
    ("archived", "Archived"),
];
const STOCK_FILTER: &[(&str, &str)] = &[
    ("", "Any stock"),
    (
        "out",
        "Out of stock (a variant without a unit that sells today)",
    ),
];
const STATUSES: &[(&str, &str)] = &[
    ("active", "Active: for sale"),
    ("draft", "Draft: not shown"),
    ("archived", "Archived: no longer sold"),
];

// ---- attributes by product type ------------------------------------------------------------

/// How an attribute is typed in.
enum AttrKind {
    Text,
    /// A whole number, or any number.
    Number {
        whole: bool,
    },
    /// One of these (value, label).
    Choice(Vec<(String, String)>),
    /// Any of these (checkboxes).
    Many(Vec<(String, String)>),
    /// Comma-separated words.
    List,
    /// One ingredient a line: `name, amount, unit`.
    Ingredients,
}

/// One field of the attributes fieldset.
struct Attr {
    /// The key in the product's attributes.
    key: String,
    label: String,
    hint: Option<String>,
    required: bool,
    kind: AttrKind,
}

/// `skin_types` → `Skin types`; a unit at the end goes in brackets: `volume_ml` →
/// `Volume (ml)`.
fn humanize(key: &str) -> String {
    const UNITS: &[&str] = &["ml", "g", "mg", "kg", "days", "months", "years"];
    let mut words: Vec<&str> = key.split(['_', '-']).filter(|w| !w.is_empty()).collect();
    let unit = match words.as_slice() {
        [_, .., last] if UNITS.contains(last) => words.pop(),
        _ => None,
    };
    let text = words.join(" ");
    let mut chars = text.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if let Some(unit) = unit {
        out.push_str(&format!(" ({unit})"));
    }
    out
}

fn labelled(values: &[String]) -> Vec<(String, String)> {
    values.iter().map(|v| (v.clone(), humanize(v))).collect()
}

impl Attr {
    /// The field of an attribute a taxonomy plugin declares.
    fn declared(field: &AttributeField) -> Attr {
        let kind = match &field.kind {
            AttributeKind::Text => AttrKind::Text,
            AttributeKind::Integer => AttrKind::Number { whole: true },
            AttributeKind::Number => AttrKind::Number { whole: false },
            AttributeKind::List => AttrKind::List,
            AttributeKind::Ingredients => AttrKind::Ingredients,
            AttributeKind::Choice(values) => AttrKind::Choice(labelled(values)),
            AttributeKind::Many(values) => AttrKind::Many(labelled(values)),
        };
        let how = match kind {
            AttrKind::List => " (comma-separated)",
            AttrKind::Ingredients => " (one a line: name, amount, unit)",
            _ => "",
        };
        let optional = if field.required { "" } else { " (optional)" };
        Attr {
            key: field.name.clone(),
            label: format!("{}{how}{optional}", humanize(&field.name)),
            hint: (!field.description.is_empty()).then(|| field.description.clone()),
            required: field.required,
            kind,
        }
    }
}

/// The fields of a product type's attributes: what its active taxonomy plugin declares
/// (`describe`), so a plugin's descriptions and rules reach the form without a kernel
/// change; without one, the kernel's own schema of the type (`catalog::model`), which
/// every product meets either way.
fn attributes_of(state: &AppState, product_type: ProductType) -> Vec<Attr> {
    let declared = crate::plugins::taxonomy::attribute_fields(&state.plugins, product_type);
    match declared {
        Some(fields) => fields.iter().map(Attr::declared).collect(),
        None => kernel_attributes(product_type)
            .iter()
            .map(Attr::declared)
            .collect(),
    }
}

/// The kernel's schema of each type's attributes, as a taxonomy would declare it.
fn kernel_attributes(product_type: ProductType) -> Vec<AttributeField> {
    let spec = |name: &str, required: bool, kind: &str| AttributeField {
        name: name.to_owned(),
        description: match name {
            "volume_ml" => "Contents in millilitres.",
            "period_after_opening_months" => "How many months it keeps once opened.",
            "serving_size" => "One serving, e.g. \"2 capsules\".",
            _ => "",
        }
        .to_owned(),
        required,
        kind: AttributeKind::parse(kind),
    };
    match product_type {
        ProductType::Supplement => vec![
            spec(
                "form",
                true,
                "enum:capsules|tablets|softgels|powder|liquid|gummies",
            ),
            spec("ingredients", true, "ingredients"),
            spec("serving_size", true, "string"),
            spec("servings_per_container", true, "integer"),
            spec("usage", true, "string"),
            spec("allergens", false, "string-list"),
            spec("warnings", false, "string"),
            spec("disclaimer", true, "string"),
        ],
        ProductType::Skincare => vec![
            spec(
                "skin_types",
                true,
                "enum-list:dry|normal|oily|combination|sensitive",
            ),
            spec("volume_ml", true, "integer"),
            spec(
                "routine_step",
                true,
                "enum:cleanse|tone|serum|treat|moisturise|protect|mask",
            ),
            spec("application", true, "string"),
            spec("key_ingredients", false, "string-list"),
            spec("period_after_opening_months", false, "integer"),
        ],
        ProductType::Bundle => vec![
            spec("kind", true, "enum:multipack|kit"),
            spec("contents_note", false, "string"),
        ],
    }
}

fn attr_name(attr: &Attr) -> String {
    format!("attributes.{}", attr.key)
}

/// The attributes as JSON from the form; what cannot be read goes into `errors`.
fn attributes_from(form: &Form, attrs: &[Attr], errors: &mut FormErrors) -> Value {
    let mut object = serde_json::Map::new();
    for attr in attrs {
        let name = attr_name(attr);
        let text = form.get(&name).trim();
        let value = match &attr.kind {
            AttrKind::Text | AttrKind::Choice(_) => json!(text),
            AttrKind::Number { whole } => {
                let parsed = if *whole {
                    text.parse::<i64>().ok().map(|n| json!(n))
                } else {
                    text.parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite())
                        .map(|n| json!(n))
                };
                match parsed {
                    Some(n) => n,
                    None if text.is_empty() && !attr.required => Value::Null,
                    None if *whole => {
                        errors.add(&name, "must be a whole number");
                        continue;
                    }
                    None => {
                        errors.add(&name, "must be a number");
                        continue;
                    }
                }
            }
            AttrKind::Many(_) => json!(form.all(&name)),
            AttrKind::List => json!(split_list(text)),
            AttrKind::Ingredients => {
                match ingredients_from(text) {
                    Some(list) => Value::Array(list),
                    None => {
                        errors.add(&name, "write one ingredient a line: name, amount, unit (e.g. Magnesium, 200, mg)");
                        continue;
                    }
                }
            }
        };
        object.insert(attr.key.clone(), value);
    }
    Value::Object(object)
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

fn ingredients_from(text: &str) -> Option<Vec<Value>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let parts: Vec<&str> = line.split(',').map(str::trim).collect();
            match parts.as_slice() {
                [name, amount, unit] => {
                    let amount: f64 = amount.parse().ok()?;
                    Some(json!({"name": name, "amount": amount, "unit": unit}))
                }
                _ => None,
            }
        })
        .collect()
}

/// The form's values of stored attributes (the edit page starts from them).
fn attribute_fields(attrs: &[Attr], attributes: &Value) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for attr in attrs {
        let name = attr_name(attr);
        let value = &attributes[attr.key.as_str()];
        match &attr.kind {
            AttrKind::Many(_) => {
                for item in value.as_array().into_iter().flatten() {
                    fields.push((name.clone(), item.as_str().unwrap_or_default().to_owned()));
                }
            }
            AttrKind::List => {
                let words: Vec<&str> = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                fields.push((name, words.join(", ")));
            }
            AttrKind::Ingredients => {
                let lines: Vec<String> = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        format!(
                            "{}, {}, {}",
                            i["name"].as_str().unwrap_or_default(),
                            i["amount"],
                            i["unit"].as_str().unwrap_or_default()
                        )
                    })
                    .collect();
                fields.push((name, lines.join("\n")));
            }
            _ => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                fields.push((name, text));
            }
        }
    }
    fields
}

fn attribute_inputs(
    product_type: ProductType,
    attrs: &[Attr],
    form: &Form,
    errors: &FormErrors,
) -> Markup {
    html! {
        fieldset {
            legend { "Attributes of a " (product_type.as_str()) " product" }
            @for attr in attrs {
                @let name = attr_name(attr);
                @let hint = attr.hint.as_deref();
                @match &attr.kind {
                    AttrKind::Text | AttrKind::List => { (field_with_hint(&attr.label, &name, Kind::Text, form.get(&name), hint, errors)) }
                    AttrKind::Number { .. } => { (field_with_hint(&attr.label, &name, Kind::Number, form.get(&name), hint, errors)) }
                    AttrKind::Ingredients => { (field_with_hint(&attr.label, &name, Kind::Area(4), form.get(&name), hint, errors)) }
                    AttrKind::Choice(options) => {
                        @let options: Vec<(&str, &str)> = options.iter().map(|(v, l)| (v.as_str(), l.as_str())).collect();
                        (field_with_hint(&attr.label, &name, Kind::Select(&options), form.get(&name), hint, errors))
                    }
                    AttrKind::Many(options) => {
                        @let options: Vec<(&str, &str)> = options.iter().map(|(v, l)| (v.as_str(), l.as_str())).collect();
                        (checkboxes(&attr.label, &name, &options, &form.all(&name), hint, errors))
                    }
                }
            }
        }
    }
}

/// A fieldset of checkboxes, one per (value, label), with a hint under its legend.
fn checkboxes(
    label: &str,
    name: &str,
    options: &[(&str, &str)],
    checked: &[&str],
    hint: Option<&str>,
    errors: &FormErrors,
) -> Markup {
    let error = errors.field(name);
    let error_id = format!("{}-error", layout::field_id(name));
    let hint_id = format!("{}-hint", layout::field_id(name));
    let described: Vec<&str> = [
        error.map(|_| error_id.as_str()),
        hint.map(|_| hint_id.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    html! {
        fieldset.checkboxes aria-describedby=[(!described.is_empty()).then(|| described.join(" "))] {
            legend { (label) }
            @if let Some(hint) = hint { p.hint id=(hint_id) { (hint) } }
            @for (value, text) in options {
                @let id = layout::field_id(&format!("{name}-{value}"));
                label for=(id) {
                    input id=(id) type="checkbox" name=(name) value=(value) checked[checked.contains(value)];
                    " " (text)
                }
            }
            @if let Some(message) = error { p.field-error id=(error_id) { (layout::sentence(message)) } }
        }
    }
}

// ---- product fields -------------------------------------------------------------------

/// The fields every product has, with the categories to choose from.
fn product_inputs(form: &Form, categories: &[Category], errors: &FormErrors) -> Markup {
    let chosen = form.all("categories");
    let category_options: Vec<(&str, &str)> = categories
        .iter()
        .map(|c| (c.slug.as_str(), c.name.as_str()))
        .collect();
    html! {
        (field("Name", "name", Kind::Text, form.get("name"), errors))
        (field_with_hint("Slug", "slug", Kind::Text, form.get("slug"), Some("The product's address in the shop: /p/<slug>. Lowercase letters, digits and hyphens."), errors))
        (field("Description", "description", Kind::Area(5), form.get("description"), errors))
        (field("Status", "status", Kind::Select(STATUSES), form.get("status"), errors))
        (checkboxes("Categories", "categories", &category_options, &chosen, None, errors))
        (field("Tags (comma-separated)", "tags", Kind::Text, form.get("tags"), errors))
        (field_with_hint("Subscription intervals", "subscription_intervals", Kind::Text, form.get("subscription_intervals"), Some("Comma-separated, e.g. 30d, 2w, 1m; the first is the default. Empty: not sold on subscription."), errors))
    }
}

fn status_from(form: &Form, errors: &mut FormErrors) -> ProductStatus {
    ProductStatus::parse(form.get("status")).unwrap_or_else(|| {
        errors.add("status", "choose a status");
        ProductStatus::Draft
    })
}

/// A variant's fields, named `<prefix>sku` and so on (`variants[0].` on the new product
/// form, nothing on the add-variant form), as the domain names their errors.
fn variant_inputs(
    prefix: &str,
    form: &Form,
    product_type: ProductType,
    errors: &FormErrors,
) -> Markup {
    let name = |field: &str| format!("{prefix}{field}");
    html! {
        (field("Title", &name("title"), Kind::Text, form.get(&name("title")), errors))
        (field_with_hint("SKU", &name("sku"), Kind::Text, form.get(&name("sku")), Some("Letters, digits and hyphens; leave empty to have the taxonomy plugin derive it."), errors))
        (field("Price", &name("price_minor"), Kind::Number, form.get(&name("price_minor")), errors))
        (field("Currency", &name("currency"), Kind::Text, form.get(&name("currency")), errors))
        (field("Weight (grams)", &name("weight_grams"), Kind::Number, form.get(&name("weight_grams")), errors))
        @if product_type == ProductType::Bundle {
            (field("Components (one a line: SKU, quantity)", &name("components"), Kind::Area(3), form.get(&name("components")), errors))
        }
    }
}

/// A new variant from fields named `<prefix>…`.
fn variant_from(prefix: &str, form: &Form, errors: &mut FormErrors) -> NewVariant {
    let name = |field: &str| format!("{prefix}{field}");
    let price_minor = layout::parse_amount(form.get(&name("price_minor"))).unwrap_or_else(|| {
        errors.add(&name("price_minor"), "must be an amount such as 19.99");
        0
    });
    let weight_grams = form
        .get(&name("weight_grams"))
        .trim()
        .parse::<i64>()
        .unwrap_or_else(|_| {
            errors.add(&name("weight_grams"), "must be a whole number of grams");
            0
        });
    let components = components_from(form.get(&name("components"))).unwrap_or_else(|| {
        errors.add(
            &name("components"),
            "write one component a line: SKU, quantity",
        );
        Vec::new()
    });
    NewVariant {
        sku: form.get(&name("sku")).trim().to_owned(),
        title: form.get(&name("title")).trim().to_owned(),
        options: BTreeMap::new(),
        price_minor,
        currency: form.get(&name("currency")).trim().to_uppercase(),
        weight_grams,
        components,
    }
}

fn components_from(text: &str) -> Option<Vec<ComponentInput>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (sku, quantity) = line.split_once(',')?;
            Some(ComponentInput {
                sku: sku.trim().to_owned(),
                quantity: quantity.trim().parse().ok()?,
            })
        })
        .collect()
}

fn intervals_from(form: &Form) -> Vec<String> {
    split_list(form.get("subscription_intervals"))
}

// ---- new product ------------------------------------------------------------------------

fn product_type_of(text: &str) -> ProductType {
    ProductType::parse(text).unwrap_or(ProductType::Supplement)
}

async fn new_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let product_type =
        product_type_of(&layout::query_value(query.as_deref(), "type").unwrap_or_default());
    let currency = match usual_currency(&state).await {
        Ok(currency) => currency,
        Err(err) => return layout::error_page(&err, "new product"),
    };
    let form = Form::from_pairs(vec![
        ("product_type".to_owned(), product_type.as_str().to_owned()),
        ("status".to_owned(), "active".to_owned()),
        (
            "subscription_intervals".to_owned(),
            "30d, 60d, 90d".to_owned(),
        ),
        ("variants[0].currency".to_owned(), currency),
    ]);
    new_form(
        &state,
        &staff,
        &admin,
        product_type,
        &form,
        &FormErrors::default(),
    )
    .await
}

/// The currency a new variant starts with: the newest variant's, else euros.
async fn usual_currency(state: &AppState) -> Result<String> {
    let row = sqlx::query("SELECT currency FROM variants ORDER BY id DESC LIMIT 1")
        .fetch_optional(&state.db.pool)
        .await?;
    Ok(match row {
        Some(row) => row.try_get(0)?,
        None => "EUR".to_owned(),
    })
}

async fn new_form(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    product_type: ProductType,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let categories = match categories(state).await {
        Ok(categories) => categories,
        Err(err) => return layout::error_page(&err, "new product"),
    };
    let body = html! {
        p.crumbs { a href="/admin/products" { "Products" } }
        h1 { "New " (product_type.as_str()) " product" }
        (form_alert(errors))
        form.product-form method="post" action="/admin/products/new" novalidate {
            (admin.csrf_input())
            input type="hidden" name="product_type" value=(product_type.as_str());
            (product_inputs(form, &categories, errors))
            (attribute_inputs(product_type, &attributes_of(state, product_type), form, errors))
            fieldset {
                legend { "First variant" }
                (variant_inputs("variants[0].", form, product_type, errors))
            }
            button.button.primary type="submit" { "Create the product" }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "New product",
        SECTION,
        body,
    )
}

async fn create(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let product_type = product_type_of(form.get("product_type"));
    let mut errors = FormErrors::default();
    let input = NewProduct {
        slug: form.get("slug").trim().to_owned(),
        name: form.get("name").trim().to_owned(),
        product_type,
        description: form.get("description").to_owned(),
        status: status_from(&form, &mut errors),
        categories: form
            .all("categories")
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
        tags: split_list(form.get("tags")),
        subscription_intervals: Some(intervals_from(&form)),
        attributes: attributes_from(&form, &attributes_of(&state, product_type), &mut errors),
        variants: vec![variant_from("variants[0].", &form, &mut errors)],
    };
    if !errors.is_empty() {
        return new_form(&state, &staff, &admin, product_type, &form, &errors).await;
    }
    match crate::catalog::create_product(&state, &staff.actor, input).await {
        Ok(product) => layout::see_other(&format!("/admin/products/{}?done=created", product.id)),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => new_form(&state, &staff, &admin, product_type, &form, &errors).await,
            None => layout::error_page(&err, "create product"),
        },
    }
}

// ---- a product -----------------------------------------------------------------------------

fn id_from(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|id| *id > 0)
}

/// The form's values of a stored product.
fn product_fields(product: &Product, attrs: &[Attr]) -> Form {
    let mut pairs = vec![
        ("name".to_owned(), product.name.clone()),
        ("slug".to_owned(), product.slug.clone()),
        ("description".to_owned(), product.description.clone()),
        ("status".to_owned(), product.status.as_str().to_owned()),
        ("tags".to_owned(), product.tags.join(", ")),
        (
            "subscription_intervals".to_owned(),
            product.subscription_intervals.join(", "),
        ),
        ("version".to_owned(), product.version.to_string()),
    ];
    pairs.extend(
        product
            .categories
            .iter()
            .map(|c| ("categories".to_owned(), c.slug.clone())),
    );
    pairs.extend(attribute_fields(attrs, &product.attributes));
    Form::from_pairs(pairs)
}

/// What the product page shows besides the product: a form sent back with problems.
#[derive(Default)]
struct Returned {
    /// The product form as posted.
    product: Option<(Form, FormErrors)>,
    /// The add-variant form as posted.
    new_variant: Option<(Form, FormErrors)>,
    /// A variant's form as posted, by variant id.
    variant: Option<(i64, Form, FormErrors)>,
}

const NOTICES: &[(&str, &str)] = &[
    ("created", "The product was created."),
    ("saved", "The product was saved."),
    ("variant_added", "The variant was added."),
    ("variant_saved", "The variant was saved."),
    ("received", "The lot was received."),
];

async fn edit_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(id) = id_from(&id) else {
        return layout::not_found_page();
    };
    let notice = layout::notice(query.as_deref(), NOTICES);
    product_page(&state, &staff, &admin, id, notice, Returned::default()).await
}

async fn lots_of(state: &AppState, product: &Product) -> Result<Vec<Lot>> {
    let mut conn = state.db.pool.acquire().await?;
    let settings = crate::inventory::settings::load(&mut conn).await?;
    let mut lots = Vec::new();
    for variant in &product.variants {
        let filter = StockFilter {
            variant_id: Some(variant.id),
            ..StockFilter::default()
        };
        lots.extend(crate::inventory::list_lots(&mut conn, &filter, &settings).await?);
    }
    Ok(lots)
}

async fn product_page(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    id: i64,
    notice: Option<&str>,
    returned: Returned,
) -> Response {
    let loaded = async {
        let product = crate::catalog::product_for_staff(state, id).await?;
        let lots = lots_of(state, &product).await?;
        let images = crate::media::api::images(state, id).await?;
        Ok::<_, Error>((product, lots, images, categories(state).await?))
    };
    let (product, lots, images, categories) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "product"),
    };
    let may_write = super::may(
        staff.role,
        &axum::http::Method::POST,
        "/admin/products/{id}",
    );
    let may_receive = super::may(staff.role, &axum::http::Method::GET, "/admin/lots/new");
    let status = [&returned.product, &returned.new_variant]
        .iter()
        .filter_map(|r| r.as_ref())
        .map(|(_, errors)| errors.status())
        .chain(
            returned
                .variant
                .iter()
                .map(|(_, _, errors)| errors.status()),
        )
        .max()
        .unwrap_or(StatusCode::OK);
    let attrs = attributes_of(state, product.product_type);
    let (product_form, product_errors) = returned
        .product
        .unwrap_or_else(|| (product_fields(&product, &attrs), FormErrors::default()));
    let (variant_form, variant_errors) = returned.new_variant.unwrap_or_else(|| {
        let currency = product
            .variants
            .first()
            .map(|v| v.price.currency.clone())
            .unwrap_or_default();
        (
            Form::from_pairs(vec![("currency".to_owned(), currency)]),
            FormErrors::default(),
        )
    });
    let body = html! {
        p.crumbs { a href="/admin/products" { "Products" } }
        div.title-row {
            h1 { (product.name) }
            @if product.status == ProductStatus::Active {
                a.button href={ "/p/" (product.slug) } { "View in the shop" }
            }
        }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        section {
            h2 { "Variants and stock" }
            (variants_table(&product, &lots, may_write, may_receive, admin, returned.variant.as_ref()))
        }
        section #images {
            h2 { "Images" }
            @if images.is_empty() { p.empty { "No image yet." } }
            div.thumbnails {
                @for image in &images {
                    img src=(crate::media::variant_url(&image.hash, 320, crate::media::Format::WebP)) width="96"
                        height=(u64::from(image.height) * 96 / u64::from(image.width.max(1))) alt=(image.alt) loading="lazy";
                }
            }
            a.button href={ "/admin/products/" (product.id) "/images" } {
                @if may_write { "Upload and arrange images" } @else { "See the images" }
            }
        }
        @if may_write {
            section {
                h2 { "Product" }
                (form_alert(&product_errors))
                form.product-form method="post" action={ "/admin/products/" (product.id) } novalidate {
                    (admin.csrf_input())
                    input type="hidden" name="version" value=(product.version);
                    (product_inputs(&product_form, &categories, &product_errors))
                    (attribute_inputs(product.product_type, &attrs, &product_form, &product_errors))
                    button.button.primary type="submit" { "Save the product" }
                }
            }
            section {
                h2 { "Add a variant" }
                (form_alert(&variant_errors))
                form method="post" action={ "/admin/products/" (product.id) "/variants" } novalidate {
                    (admin.csrf_input())
                    (variant_inputs("", &variant_form, product.product_type, &variant_errors))
                    button.button type="submit" { "Add the variant" }
                }
            }
        }
    };
    layout::page_with_status(
        status,
        staff,
        admin.csrf_input(),
        &product.name,
        SECTION,
        body,
    )
}

/// The variants with their lots, each variant's row with its edit form for those who may.
fn variants_table(
    product: &Product,
    lots: &[Lot],
    may_write: bool,
    may_receive: bool,
    admin: &AdminSession,
    returned: Option<&(i64, Form, FormErrors)>,
) -> Markup {
    let no_errors = FormErrors::default();
    html! {
        @for variant in &product.variants {
            @let own_lots: Vec<&Lot> = lots.iter().filter(|l| l.variant_id == variant.id).collect();
            article.variant id={ "variant-" (variant.id) } {
                h3 { (variant.title) " · " code { (variant.sku) } " · " (variant.price.display()) }
                @if own_lots.is_empty() {
                    p.empty { "No lots." }
                } @else {
                    table {
                        caption.visually-hidden { "Lots of " (variant.sku) }
                        thead { tr { th scope="col" { "Batch" } th scope="col" { "Location" } th scope="col" { "Manufactured" }
                            th scope="col" { "Expires" } th scope="col" class="num" { "Units" } th scope="col" { "Sellable" } } }
                        tbody {
                            @for lot in own_lots {
                                tr { td { a href={ "/admin/lots/" (lot.id) } { (lot.batch) } } td { (lot.location) } td { (lot.manufactured_on) } td { (lot.expires_on) }
                                    td.num { (lot.quantity) } td { (if lot.sellable { "yes" } else { "no" }) } }
                            }
                        }
                    }
                }
                div.actions {
                    @if may_receive && product.product_type != ProductType::Bundle {
                        a.button href={ "/admin/lots/new?sku=" (variant.sku) } { "Receive a lot" }
                    }
                }
                @if may_write {
                    @let (form, errors) = match returned {
                        Some((id, form, errors)) if *id == variant.id => (Form::from_pairs(form.pairs()), errors),
                        _ => (variant_fields(variant), &no_errors),
                    };
                    details open[!errors.is_empty()] {
                        summary { "Edit this variant" }
                        (form_alert(errors))
                        form method="post" action={ "/admin/variants/" (variant.id) } novalidate {
                            (admin.csrf_input())
                            (field("Title", "title", Kind::Text, form.get("title"), errors))
                            (field("SKU", "sku", Kind::Text, form.get("sku"), errors))
                            (field("Price", "price_minor", Kind::Number, form.get("price_minor"), errors))
                            (field("Weight (grams)", "weight_grams", Kind::Number, form.get("weight_grams"), errors))
                            button.button type="submit" { "Save the variant" }
                        }
                    }
                }
            }
        }
    }
}

fn variant_fields(variant: &crate::catalog::model::Variant) -> Form {
    Form::from_pairs(vec![
        ("title".to_owned(), variant.title.clone()),
        ("sku".to_owned(), variant.sku.clone()),
        (
            "price_minor".to_owned(),
            layout::amount(variant.price.amount_minor),
        ),
        ("weight_grams".to_owned(), variant.weight_grams.to_string()),
    ])
}

async fn update(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(id) = id_from(&id) else {
        return layout::not_found_page();
    };
    let form = Form::parse(&body);
    let product_type = match crate::catalog::product_for_staff(&state, id).await {
        Ok(product) => product.product_type,
        Err(err) => return layout::error_page(&err, "update product"),
    };
    let mut errors = FormErrors::default();
    let patch = ProductPatch {
        slug: Some(form.get("slug").trim().to_owned()),
        name: Some(form.get("name").trim().to_owned()),
        description: Some(form.get("description").to_owned()),
        status: Some(status_from(&form, &mut errors)),
        categories: Some(
            form.all("categories")
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
        ),
        tags: Some(split_list(form.get("tags"))),
        subscription_intervals: Some(intervals_from(&form)),
        attributes: Some(attributes_from(
            &form,
            &attributes_of(&state, product_type),
            &mut errors,
        )),
        version: form.get("version").parse().ok(),
    };
    let outcome = if errors.is_empty() {
        crate::catalog::update_product(&state, &staff.actor, id, patch)
            .await
            .map(|_| ())
    } else {
        Err(Error::Validation(errors.fields))
    };
    let done = format!("/admin/products/{id}?done=saved");
    after_product_form(
        &state,
        &staff,
        &admin,
        id,
        outcome,
        &done,
        "update product",
        |errors| Returned {
            product: Some((form, errors)),
            ..Returned::default()
        },
    )
    .await
}

/// The answer to a form of the product page: on to `done` when `outcome` is fine, else
/// the product page again with the form as posted and its errors (`returned` puts them
/// where they belong), or the error page for an error that is not about the input.
#[allow(clippy::too_many_arguments)]
async fn after_product_form(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    product_id: i64,
    outcome: Result<()>,
    done: &str,
    what: &str,
    returned: impl FnOnce(FormErrors) -> Returned,
) -> Response {
    match outcome {
        Ok(()) => layout::see_other(done),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                product_page(state, staff, admin, product_id, None, returned(errors)).await
            }
            None => layout::error_page(&err, what),
        },
    }
}

async fn add_variant(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(id) = id_from(&id) else {
        return layout::not_found_page();
    };
    let form = Form::parse(&body);
    let mut errors = FormErrors::default();
    let input = variant_from("", &form, &mut errors);
    let outcome = if errors.is_empty() {
        crate::catalog::add_variant(&state, &staff.actor, id, input)
            .await
            .map(|_| ())
    } else {
        Err(Error::Validation(errors.fields))
    };
    let done = format!("/admin/products/{id}?done=variant_added");
    after_product_form(
        &state,
        &staff,
        &admin,
        id,
        outcome,
        &done,
        "add variant",
        |errors| Returned {
            new_variant: Some((form, errors)),
            ..Returned::default()
        },
    )
    .await
}

async fn update_variant(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(variant_id) = id_from(&id) else {
        return layout::not_found_page();
    };
    let product_id = match product_of_variant(&state, variant_id).await {
        Ok(Some(product_id)) => product_id,
        Ok(None) => return layout::not_found_page(),
        Err(err) => return layout::error_page(&err, "update variant"),
    };
    let form = Form::parse(&body);
    let mut errors = FormErrors::default();
    let patch = VariantPatch {
        sku: Some(form.get("sku").trim().to_owned()),
        title: Some(form.get("title").trim().to_owned()),
        price_minor: layout::parse_amount(form.get("price_minor")).or_else(|| {
            errors.add("price_minor", "must be an amount such as 19.99");
            None
        }),
        weight_grams: form.get("weight_grams").trim().parse().ok().or_else(|| {
            errors.add("weight_grams", "must be a whole number of grams");
            None
        }),
        ..VariantPatch::default()
    };
    let outcome = if errors.is_empty() {
        crate::catalog::update_variant(&state, &staff.actor, variant_id, patch)
            .await
            .map(|_| ())
    } else {
        Err(Error::Validation(errors.fields))
    };
    let done = format!("/admin/products/{product_id}?done=variant_saved#variant-{variant_id}");
    after_product_form(
        &state,
        &staff,
        &admin,
        product_id,
        outcome,
        &done,
        "update variant",
        |errors| Returned {
            variant: Some((variant_id, form, errors)),
            ..Returned::default()
        },
    )
    .await
}

async fn product_of_variant(state: &AppState, variant_id: i64) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT product_id FROM variants WHERE id = $1")
        .bind(variant_id)
        .fetch_optional(&state.db.pool)
        .await?;
    row.map(|row| row.try_get(0))
        .transpose()
        .map_err(Error::from)
}

async fn product_of_sku(state: &AppState, sku: &str) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT product_id FROM variants WHERE sku = $1")
        .bind(sku)
        .fetch_optional(&state.db.pool)
        .await?;
    row.map(|row| row.try_get(0))
        .transpose()
        .map_err(Error::from)
}

// ---- lots ---------------------------------------------------------------------------------

/// Lots with units that expire within `days` of today, soonest first: what the dashboard
/// counts. (`lots_expiry`, migration 0022, keeps it an index range.)
async fn lots_expiring(
    state: &AppState,
    days: i64,
    page: i64,
) -> Result<(Vec<(Lot, String)>, i64)> {
    let today = crate::time::today();
    let until = today + chrono::Days::new(u64::try_from(days).unwrap_or(0));
    let (from, until) = (
        crate::time::format_date(today),
        crate::time::format_date(until),
    );
    let total: i64 = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM lots WHERE expires_on >= $1 AND expires_on <= $2 AND quantity > 0",
    )
    .bind(&from)
    .bind(&until)
    .fetch_one(&state.db.pool)
    .await?
    .try_get(0)?;
    let rows = sqlx::query(
        "SELECT l.id, l.variant_id, v.sku, loc.code, l.batch, l.manufactured_on, l.expires_on, l.quantity,
                l.created_at, l.updated_at, p.name
         FROM lots l JOIN variants v ON v.id = l.variant_id JOIN products p ON p.id = v.product_id
           JOIN locations loc ON loc.id = l.location_id
         WHERE l.expires_on >= $1 AND l.expires_on <= $2 AND l.quantity > 0
         ORDER BY l.expires_on, l.id LIMIT $3 OFFSET $4",
    )
    .bind(&from)
    .bind(&until)
    .bind(PER_PAGE)
    .bind((page - 1) * PER_PAGE)
    .fetch_all(&state.db.pool)
    .await?;
    let lots = rows
        .iter()
        .map(|row| {
            let lot = Lot {
                id: row.try_get(0)?,
                variant_id: row.try_get(1)?,
                sku: row.try_get(2)?,
                location: row.try_get(3)?,
                batch: row.try_get(4)?,
                manufactured_on: row.try_get(5)?,
                expires_on: row.try_get(6)?,
                quantity: row.try_get(7)?,
                sellable: false,
                created_at: row.try_get(8)?,
                updated_at: row.try_get(9)?,
            };
            Ok((lot, row.try_get(10)?))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((lots, total))
}

async fn lots_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let days = layout::query_value(query.as_deref(), "expiring")
        .and_then(|d| d.parse::<i64>().ok())
        .filter(|d| (1..=3650).contains(d))
        .unwrap_or(90);
    let page = layout::page_number(query.as_deref());
    let (lots, total) = match lots_expiring(&state, days, page).await {
        Ok(found) => found,
        Err(err) => return layout::error_page(&err, "lots"),
    };
    let body = html! {
        div.title-row {
            h1 { "Lots expiring within " (days) " days" }
            a href="/admin/locations" { "Stock locations" }
        }
        nav.tabs aria-label="Expiring within" {
            @for d in [30, 60, 90] {
                a href={ "/admin/lots?expiring=" (d) } aria-current=[(d == days).then_some("page")] { (d) " days" }
            }
        }
        @if lots.is_empty() {
            p.empty { "No lot with units expires within " (days) " days." }
        } @else {
            table {
                caption.visually-hidden { "Lots" }
                thead { tr { th scope="col" { "Expires" } th scope="col" { "Product" } th scope="col" { "SKU" }
                    th scope="col" { "Batch" } th scope="col" { "Location" } th scope="col" class="num" { "Units" } } }
                tbody {
                    @for (lot, product) in &lots {
                        tr { td { (lot.expires_on) } td { (product) } td { code { (lot.sku) } } td { a href={ "/admin/lots/" (lot.id) } { (lot.batch) } }
                            td { (lot.location) } td.num { (lot.quantity) } }
                    }
                }
            }
        }
        (layout::pager("/admin/lots", &[("expiring", days.to_string())], page, PER_PAGE, total))
    };
    layout::page(&staff, admin.csrf_input(), "Expiring lots", "/admin", body)
}

async fn receive_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let sku = layout::query_value(query.as_deref(), "sku").unwrap_or_default();
    let form = Form::from_pairs(vec![
        ("sku".to_owned(), sku),
        (
            "manufactured_on".to_owned(),
            crate::time::format_date(crate::time::today()),
        ),
    ]);
    receive_form(&state, &staff, &admin, &form, &FormErrors::default()).await
}

async fn receive_form(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let locations = match super::stock::locations(state).await {
        Ok(locations) => locations,
        Err(err) => return layout::error_page(&err, "receive lot"),
    };
    let options: Vec<(&str, &str)> = locations
        .iter()
        .map(|l| (l.code.as_str(), l.name.as_str()))
        .collect();
    let body = html! {
        p.crumbs { a href="/admin/products" { "Products" } }
        h1 { "Receive a lot" }
        (form_alert(errors))
        @if options.is_empty() {
            p.form-alert role="alert" { "The store has no stock location yet: " a href="/admin/locations" { "add one" } " first." }
        }
        form method="post" action="/admin/lots/new" novalidate {
            (admin.csrf_input())
            (field("SKU", "sku", Kind::Text, form.get("sku"), errors))
            (field("Location", "location", Kind::Select(&options), form.get("location"), errors))
            (field("Batch", "batch", Kind::Text, form.get("batch"), errors))
            (field("Manufactured on", "manufactured_on", Kind::Date, form.get("manufactured_on"), errors))
            (field("Expires on", "expires_on", Kind::Date, form.get("expires_on"), errors))
            (field("Quantity", "quantity", Kind::Number, form.get("quantity"), errors))
            (field("Note (optional)", "note", Kind::Text, form.get("note"), errors))
            button.button.primary type="submit" { "Receive the lot" }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Receive a lot",
        SECTION,
        body,
    )
}

async fn receive(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let mut errors = FormErrors::default();
    let quantity = form
        .get("quantity")
        .trim()
        .parse::<i64>()
        .unwrap_or_else(|_| {
            errors.add("quantity", "must be a whole number of units");
            0
        });
    let note = Some(form.get("note").trim().to_owned()).filter(|n| !n.is_empty());
    let input = NewLot {
        sku: form.get("sku").trim().to_owned(),
        location: form.get("location").trim().to_owned(),
        batch: form.get("batch").trim().to_owned(),
        manufactured_on: form.get("manufactured_on").trim().to_owned(),
        expires_on: form.get("expires_on").trim().to_owned(),
        quantity,
        note,
    };
    let outcome = if errors.is_empty() {
        receive_lot(&state, &staff.actor, &input).await
    } else {
        Err(Error::Validation(errors.fields))
    };
    match outcome {
        Ok(()) => match product_of_sku(&state, &input.sku).await {
            Ok(Some(product)) => {
                layout::see_other(&format!("/admin/products/{product}?done=received"))
            }
            Ok(None) => layout::see_other("/admin/products"),
            Err(err) => layout::error_page(&err, "receive lot"),
        },
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => receive_form(&state, &staff, &admin, &form, &errors).await,
            None => layout::error_page(&err, "receive lot"),
        },
    }
}

/// Receives the lot as the admin API does: the inventory's `receive_lot` in a
/// transaction, then the bus told.
async fn receive_lot(state: &AppState, actor: &str, input: &NewLot) -> Result<()> {
    let mut tx = state.db.begin().await?;
    crate::inventory::receive_lot(&mut tx, input, actor).await?;
    tx.commit().await?;
    state.bus.notify();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::humanize;

    #[test]
    fn attribute_names_read_as_labels() {
        assert_eq!(humanize("skin_types"), "Skin types");
        assert_eq!(humanize("volume_ml"), "Volume (ml)");
        assert_eq!(
            humanize("period_after_opening_months"),
            "Period after opening (months)"
        );
        // A unit alone is the name, not a unit.
        assert_eq!(humanize("ml"), "Ml");
        assert_eq!(humanize(""), "");
    }
}
