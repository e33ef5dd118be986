//! The search results page (`/search`): the products matching the words, a form of facet
//! checkboxes and a price range beside them, sorting and pages. It works without
//! JavaScript (the form is a GET the "Apply" button sends); `/assets/search.js` sends it
//! when a box is ticked and offers suggestions under the header's search box. The page
//! reads [`crate::search::api::run`], the API's own search.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};

use super::cart::money;
use super::catalog::{error_page, layout, product_url, thumb, type_label_of};
use crate::app::AppState;
use crate::catalog::model::Category;
use crate::error::Error;
use crate::search::query::{FacetGroup, SearchRequest, SearchResults, Sort};
use crate::search::{PRICE_BUCKETS, SearchHit};

pub fn routes() -> Router<AppState> {
    Router::new().route("/search", get(search_page))
}

/// The storefront's price fields are in whole currency units (`min`, `max`); the API's
/// in minor units.
fn api_query(query: Option<&str>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "min" | "max" => {
                let value = value.trim();
                if value.is_empty() {
                    continue;
                }
                let name = if key == "min" {
                    "price_min"
                } else {
                    "price_max"
                };
                // Not a number: passed on as it is, for the API's message.
                let minor = value
                    .replace(',', ".")
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e10)
                    .map_or_else(
                        || value.to_owned(),
                        |v| ((v * 100.0).round() as u64).to_string(),
                    );
                out.append_pair(name, &minor);
            }
            _ => {
                out.append_pair(&key, &value);
            }
        }
    }
    out.finish()
}

async fn search_page(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let categories = match crate::catalog::cached_categories(&state).await {
        Ok(categories) => categories,
        Err(err) => return error_page(&err, "search", &[]),
    };
    let request = match SearchRequest::from_query(Some(&api_query(query.as_deref()))) {
        Ok(request) => request,
        Err(Error::BadRequest { fields, .. }) => {
            let body = html! {
                header.page-head { h1 { "Search" } }
                section.message role="alert" {
                    p { "The search could not be read:" }
                    ul { @for field in &fields { li { code { (field.field) } " " (field.message) } } }
                    p { a.button href="/search" { "Start again" } }
                }
            };
            return (
                StatusCode::BAD_REQUEST,
                Html(layout("Search", &categories, None, body).into_string()),
            )
                .into_response();
        }
        Err(err) => return error_page(&err, "search", &categories),
    };
    let results = match crate::search::api::run(&state, &request).await {
        Ok(results) => results,
        Err(err) => return error_page(&err, "search", &categories),
    };
    let title = if request.q.is_empty() {
        "Search".to_owned()
    } else {
        format!("Search: {}", request.q)
    };
    super::catalog::shared_once(&headers, async {
        let body = results_body(&request, &results, &categories);
        layout(&title, &categories, None, body)
    })
    .await
}

fn results_body(
    request: &SearchRequest,
    results: &SearchResults,
    categories: &[Category],
) -> Markup {
    let pages = results.total.div_ceil(results.per_page.max(1)).max(1);
    let currency = results
        .products
        .first()
        .map_or("EUR", |p| p.currency.as_str())
        .to_owned();
    html! {
        header.page-head {
            h1 {
                @if request.q.is_empty() { "All products" } @else { "Results for “" (request.q) "”" }
            }
            p.muted #search-total data-total=(results.total) {
                @if results.total == 1 { "1 product" } @else { (results.total) " products" }
            }
        }
        div.search-layout {
            form.filters #search-filters method="get" action="/search" aria-label="Filters" {
                input type="hidden" name="q" value=(request.q);
                div.field {
                    label for="f-sort" { "Sort by" }
                    select #f-sort name="sort" {
                        @for (value, label, sort) in SORTS {
                            option value=(value) selected[request.sort == sort] { (label) }
                        }
                    }
                }
                @for group in &results.facets {
                    @if !group.values.is_empty() && group.name != "price" {
                        (facet_fieldset(group, categories, &currency))
                    }
                    @if group.name == "price" {
                        (price_fieldset(group, request, &currency))
                    }
                }
                button type="submit" { "Apply" }
                " "
                a href={ "/search?q=" (encode(&request.q)) } { "Clear filters" }
            }
            section.search-results aria-label="Results" {
                @if results.products.is_empty() {
                    section.message #no-results {
                        p { "Nothing matches." }
                        @if let Some(corrected) = &results.did_you_mean {
                            p { "Did you mean " a #did-you-mean href={ "/search?q=" (encode(corrected)) } { (corrected) } "?" }
                        }
                        @if !request.filters.is_empty() || request.price_min.is_some() || request.price_max.is_some() {
                            p { a href={ "/search?q=" (encode(&request.q)) } { "Search without the filters" } }
                        }
                    }
                } @else {
                    // The cards' titles are h3s: the list has its heading, for the outline.
                    h2.visually-hidden { "Results" }
                    ul.product-grid {
                        @for hit in &results.products {
                            li { (hit_card(hit)) }
                        }
                    }
                }
                @if pages > 1 {
                    nav.pagination aria-label="Pages" {
                        @if request.page > 1 {
                            a.button rel="prev" href=(page_link(request, request.page - 1)) { "← Previous" }
                        }
                        span.page-status { "Page " (request.page) " of " (pages) }
                        @if request.page < pages && request.page < crate::search::query::MAX_PAGE {
                            a.button rel="next" href=(page_link(request, request.page + 1)) { "Next →" }
                        }
                    }
                }
            }
        }
    }
}

const SORTS: [(&str, &str, Sort); 5] = [
    ("relevance", "Best match", Sort::Relevance),
    ("best_selling", "Best selling", Sort::BestSelling),
    ("newest", "Newest", Sort::Newest),
    ("price_asc", "Price, low to high", Sort::PriceAsc),
    ("price_desc", "Price, high to low", Sort::PriceDesc),
];

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The same search on another page.
fn page_link(request: &SearchRequest, page: usize) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair("q", &request.q);
    for (facet, values) in &request.filters {
        for value in values {
            out.append_pair(facet, value);
        }
    }
    if let Some(min) = request.price_min {
        out.append_pair("min", &major(min));
    }
    if let Some(max) = request.price_max {
        out.append_pair("max", &major(max));
    }
    let sort = SORTS
        .iter()
        .find(|s| s.2 == request.sort)
        .map_or("relevance", |s| s.0);
    out.append_pair("sort", sort);
    out.append_pair("page", &page.to_string());
    format!("/search?{}", out.finish())
}

/// Minor units as a plain decimal (`1250` → `12.50`) for the price fields.
fn major(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

fn group_label(name: &str) -> &'static str {
    match name {
        "type" => "Type",
        "category" => "Category",
        "benefit" => "Benefit",
        "skin_type" => "Skin type",
        "free_from" => "Free from",
        "vegan" => "Vegan",
        "form" => "Form",
        "size" => "Size",
        "price" => "Price",
        "in_stock" => "Availability",
        _ => "Other",
    }
}

/// What a facet's option reads as.
fn value_label(group: &str, value: &str, categories: &[Category], currency: &str) -> String {
    match group {
        "category" => categories
            .iter()
            .find(|c| c.slug == value)
            .map_or_else(|| value.to_owned(), |c| c.name.clone()),
        "vegan" => "Vegan".to_owned(),
        "in_stock" => "In stock".to_owned(),
        "free_from" => format!("{} free", sentence_case(value)),
        "price" => price_label(value, currency),
        _ => sentence_case(&value.replace(['-', '_'], " ")),
    }
}

fn sentence_case(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn price_label(bucket: &str, currency: &str) -> String {
    let amount = |minor: u64| money(i64::try_from(minor).unwrap_or(i64::MAX), currency);
    match PRICE_BUCKETS.iter().find(|(from, to)| {
        bucket
            == match to {
                Some(to) => format!("{from}-{to}"),
                None => format!("{from}-"),
            }
    }) {
        Some((0, Some(to))) => format!("Under {}", amount(*to)),
        Some((from, Some(to))) => format!("{} to {}", amount(*from), amount(*to)),
        Some((from, None)) => format!("{} and over", amount(*from)),
        None => bucket.to_owned(),
    }
}

fn facet_fieldset(group: &FacetGroup, categories: &[Category], currency: &str) -> Markup {
    html! {
        fieldset.facet data-facet=(group.name) {
            legend { (group_label(&group.name)) }
            @for value in &group.values {
                @let id = format!("f-{}-{}", group.name, value.value.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
                div.check {
                    input type="checkbox" id=(id) name=(group.name) value=(value.value) checked[value.selected];
                    label for=(id) {
                        (value_label(&group.name, &value.value, categories, currency))
                        " " span.count { "(" (value.count) ")" }
                    }
                }
            }
        }
    }
}

fn price_fieldset(group: &FacetGroup, request: &SearchRequest, currency: &str) -> Markup {
    html! {
        fieldset.facet data-facet="price" {
            legend { "Price" }
            @for value in &group.values {
                @let id = format!("f-price-{}", value.value.replace('-', "_"));
                div.check {
                    input type="checkbox" id=(id) name="price" value=(value.value) checked[value.selected];
                    label for=(id) { (price_label(&value.value, currency)) " " span.count { "(" (value.count) ")" } }
                }
            }
            div.price-range {
                label for="f-min" { "From" }
                input #f-min type="number" name="min" min="0" step="0.01" inputmode="decimal"
                    value=[request.price_min.map(major)];
                label for="f-max" { "to" }
                input #f-max type="number" name="max" min="0" step="0.01" inputmode="decimal"
                    value=[request.price_max.map(major)];
            }
        }
    }
}

pub(super) fn hit_card(hit: &SearchHit) -> Markup {
    html! {
        a.card href=(product_url(&hit.slug)) {
            (thumb(&hit.product_type, &hit.name))
            div.card-body {
                span.card-type { (type_label_of(&hit.product_type)) }
                h3.card-title { (hit.name) }
                div.card-foot {
                    span.price { (money(hit.price_minor, &hit.currency)) }
                    @if hit.in_stock {
                        span.badge.badge-in { "In stock" }
                    } @else {
                        span.badge.badge-out { "Out of stock" }
                    }
                }
            }
        }
    }
}
