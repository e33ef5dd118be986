//! The catalog's pages (home, category, product) and the storefront's layout.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use maud::{DOCTYPE, Markup, html};

use crate::app::AppState;
use crate::cache::{CachedPage, PageSources};
use crate::catalog::model::{
    BundleAttributes, BundleKind, Category, Product, ProductPage, ProductSummary, ProductType,
    RoutineStep, SkinType, SkincareAttributes, SupplementAttributes, SupplementForm, Variant,
};
use crate::catalog::repo::ProductFilter;
use crate::error::Error;
use crate::http::caching::Prepared;
use crate::http::session::Session;
use crate::inventory::{Availability, StockState};

const STORE_NAME: &str = "Olivine";
/// A page's description when it has none of its own.
const STORE_DESCRIPTION: &str = "Quality supplements and gentle skincare, with full \
    ingredient lists and the best-before date of the unit we would ship to you next.";
/// How long a page's own description may be: search engines cut longer ones.
const DESCRIPTION_CHARS: usize = 160;
/// Products on the home page.
const FEATURED_COUNT: i64 = 12;
/// Products per category page.
const PER_PAGE: i64 = 24;
/// The highest page number the catalog accepts.
const MAX_PAGE: i64 = 100_000;

/// The 404 page. It has no state to read categories from, so its header carries no
/// category links; handlers that do have them use [`not_found_with`].
pub fn not_found_page() -> (StatusCode, Html<String>) {
    not_found_with(&[])
}

fn not_found_with(categories: &[Category]) -> (StatusCode, Html<String>) {
    let body = html! {
        section.message {
            p.eyebrow { "404" }
            h1 { "We couldn't find that page" }
            p { "The product or page you were looking for may have moved or is no longer available." }
            p { a.button.primary href="/" { "Back to the shop" } }
        }
    };
    (
        StatusCode::NOT_FOUND,
        Html(layout("Page not found", categories, None, body).into_string()),
    )
}

fn server_error_page(categories: &[Category]) -> Response {
    let body = html! {
        section.message {
            p.eyebrow { "500" }
            h1 { "Something went wrong" }
            p { "We couldn't load this page. Please try again in a moment." }
            p { a.button.primary href="/" { "Back to the shop" } }
        }
    };
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(layout("Something went wrong", categories, None, body).into_string()),
    )
        .into_response()
}

/// The page for a failed data access: 404 for a missing thing, otherwise a logged 500.
/// `categories` fill the header's navigation when they could be read.
pub(super) fn error_page(err: &Error, page: &str, categories: &[Category]) -> Response {
    if let Error::NotFound(_) = err {
        return not_found_with(categories).into_response();
    }
    let detail = format!("{err:#}");
    tracing::error!(error = %detail, page, "storefront page failed");
    server_error_page(categories)
}

fn page(markup: Markup) -> Response {
    Html(markup.into_string()).into_response()
}

// ---- query strings ----------------------------------------------------------------------

/// The first value of `name` in a raw query string, if any.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// `?page=N`; anything that is not a page number the catalog accepts is page 1.
fn page_number(query: Option<&str>) -> i64 {
    query_value(query, "page")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|p| (1..=MAX_PAGE).contains(p))
        .unwrap_or(1)
}

// ---- handlers -----------------------------------------------------------------------------

pub(super) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let categories = match crate::catalog::cached_categories(&state).await {
        Ok(categories) => categories,
        Err(err) => return error_page(&err, "home", &[]),
    };
    let filter = ProductFilter {
        page: Some(1),
        per_page: Some(FEATURED_COUNT),
        ..ProductFilter::default()
    };
    let featured = match crate::catalog::cached_listing(&state, &filter).await {
        Ok(listing) => listing,
        Err(err) => return error_page(&err, "home", &categories),
    };
    // A visitor who agreed to recommendations sees the department they look at most
    // first: their own page, never shared.
    if let Some(preferred) = preferred_department(&state, &headers, &categories).await {
        let mut response = page(home_page(&categories, &featured, Some(&preferred)));
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        return response;
    }
    let sources: PageSources = vec![categories.clone(), featured.clone()];
    shared_page(&state, &headers, "/".to_owned(), sources, None, async {
        home_page(&categories, &featured, None)
    })
    .await
}

/// The home page; `preferred` is the department a visitor looks at most, shown first.
fn home_page(categories: &[Category], featured: &ProductPage, preferred: Option<&str>) -> Markup {
    let mut top: Vec<&Category> = top_level(categories).collect();
    if let Some(slug) = preferred
        && let Some(at) = top.iter().position(|c| c.slug == slug)
    {
        let department = top.remove(at);
        top.insert(0, department);
    }
    let body = html! {
        section.hero {
            div.hero-text {
                p.eyebrow { "Supplements & skincare" }
                h1 { "Everyday wellness, honestly labelled." }
                p.lead {
                    "Quality supplements and gentle skincare, with full ingredient lists and "
                    "the best-before date of the unit we would ship to you next."
                }
                @if !top.is_empty() {
                    p.hero-actions {
                        @for (i, category) in top.iter().enumerate() {
                            a.button.primary[i == 0] href=(category_url(&category.slug)) {
                                "Shop " (category.name.to_lowercase())
                            }
                        }
                    }
                }
            }
        }
        @if !top.is_empty() {
            section.section {
                h2 { "Shop by category" }
                div.category-grid data-preferred=[preferred] {
                    @for category in &top {
                        div.category-card {
                            h3 { a href=(category_url(&category.slug)) { (category.name) } }
                            @let children: Vec<&Category> = children_of(categories, &category.slug).collect();
                            @if !children.is_empty() {
                                ul.sublinks {
                                    @for child in children {
                                        li { a href=(category_url(&child.slug)) { (child.name) } }
                                    }
                                }
                            }
                            a.more href=(category_url(&category.slug)) { "View all " (category.name.to_lowercase()) " →" }
                        }
                    }
                }
            }
        }
        section.section {
            h2 { "Featured products" }
            (product_grid(&featured.items))
        }
    };
    layout("Supplements & skincare", categories, None, body)
}

pub(super) async fn category_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    slug: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let categories = match crate::catalog::cached_categories(&state).await {
        Ok(categories) => categories,
        Err(err) => return error_page(&err, "category", &[]),
    };
    let Ok(Path(slug)) = slug else {
        return not_found_with(&categories).into_response();
    };
    let Some(category) = categories.iter().find(|c| c.slug == slug) else {
        return not_found_with(&categories).into_response();
    };
    let page_no = page_number(query.as_deref());
    let filter = ProductFilter {
        category: Some(category.slug.clone()),
        page: Some(page_no),
        per_page: Some(PER_PAGE),
        ..ProductFilter::default()
    };
    let listing = match crate::catalog::cached_listing(&state, &filter).await {
        Ok(listing) => listing,
        Err(err) => return error_page(&err, "category", &categories),
    };
    let key = format!("/c/{}?page={page_no}", category.slug);
    let sources: PageSources = vec![categories.clone(), listing.clone()];
    shared_page(&state, &headers, key, sources, None, async {
        category_markup(&categories, category, &listing, page_no)
    })
    .await
}

fn category_markup(
    categories: &[Category],
    category: &Category,
    listing: &ProductPage,
    page_no: i64,
) -> Markup {
    let parent = category
        .parent
        .as_deref()
        .and_then(|p| categories.iter().find(|c| c.slug == p));
    let children: Vec<&Category> = children_of(categories, &category.slug).collect();
    let per_page = listing.per_page.max(1);
    let pages = ((listing.total + per_page - 1) / per_page).max(1);
    let nav_slug = parent.map_or(category.slug.as_str(), |p| p.slug.as_str());
    let body = html! {
        nav.breadcrumb aria-label="Breadcrumb" {
            a href="/" { "Home" }
            @if let Some(parent) = parent {
                span.sep aria-hidden="true" { "›" }
                a href=(category_url(&parent.slug)) { (parent.name) }
            }
            span.sep aria-hidden="true" { "›" }
            span aria-current="page" { (category.name) }
        }
        header.page-head {
            h1 { (category.name) }
            p.muted { (count_label(listing.total)) }
        }
        @if !children.is_empty() {
            nav.chips aria-label={ (category.name) " subcategories" } {
                a.chip.active href=(category_url(&category.slug)) { "All" }
                @for child in &children {
                    a.chip href=(category_url(&child.slug)) { (child.name) }
                }
            }
        } @else if let Some(parent) = parent {
            @let siblings: Vec<&Category> = children_of(categories, &parent.slug).collect();
            nav.chips aria-label={ (parent.name) " subcategories" } {
                a.chip href=(category_url(&parent.slug)) { "All " (parent.name.to_lowercase()) }
                @for sibling in siblings {
                    a.chip.active[sibling.slug == category.slug] href=(category_url(&sibling.slug)) { (sibling.name) }
                }
            }
        }
        @if listing.items.is_empty() && page_no > 1 {
            section.message {
                p { "There are no products on this page." }
                p { a.button href=(category_url(&category.slug)) { "Go to the first page" } }
            }
        } @else {
            // The cards' titles are h3s: the list has its heading, for the outline.
            h2.visually-hidden { (category.name) " products" }
            (product_grid(&listing.items))
        }
        @if pages > 1 {
            nav.pagination aria-label="Pages" {
                @if page_no > 1 {
                    a.button rel="prev" href=(page_url(&category.slug, (page_no - 1).min(pages))) { "← Previous" }
                } @else {
                    span.button.disabled aria-disabled="true" { "← Previous" }
                }
                @if page_no <= pages {
                    span.page-status { "Page " (page_no) " of " (pages) }
                }
                @if page_no < pages {
                    a.button rel="next" href=(page_url(&category.slug, page_no + 1)) { "Next →" }
                } @else {
                    span.button.disabled aria-disabled="true" { "Next →" }
                }
            }
        }
    };
    let description = format!(
        "{}: {} at {STORE_NAME}, with full ingredient lists and the best-before date of the \
         unit we would ship to you next.",
        category.name,
        count_label(listing.total)
    );
    described_layout(
        &category.name,
        &description,
        categories,
        Some(nav_slug),
        body,
    )
}

pub(super) async fn product_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    slug: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(Path(slug)) = slug else {
        return product_response(&state, "", VariantChoice::Default, None).await;
    };
    let requested = query_value(query.as_deref(), "variant")
        .and_then(|v| v.trim().parse().ok())
        .map_or(VariantChoice::Default, VariantChoice::Id);
    let (response, product_id) = shared_product_page(&state, &headers, &slug, requested).await;
    let Some(product_id) = product_id else {
        return response;
    };
    // A view, for recommendations (with the visitor's consent).
    let cookie = super::analytics::record(
        &state,
        &session,
        &headers,
        crate::recommendations::Behaviour::Viewed,
        &[product_id],
    )
    .await;
    super::analytics::with_cookie(response, cookie)
}

/// Which variant a product page shows (the default one when it names none of them).
pub(super) enum VariantChoice {
    Default,
    Id(i64),
    Sku(String),
}

impl VariantChoice {
    fn pick(self, product: &Product) -> Option<&Variant> {
        match self {
            VariantChoice::Default => None,
            VariantChoice::Id(id) => product.variants.iter().find(|v| v.id == id),
            VariantChoice::Sku(sku) => product.variants.iter().find(|v| v.sku == sku),
        }
        .or_else(|| product.default_variant())
    }
}

/// A product page as every visitor sees it (from the page cache when the product is
/// unchanged), with the product's id when it is one.
async fn shared_product_page(
    state: &AppState,
    headers: &HeaderMap,
    slug: &str,
    choice: VariantChoice,
) -> (Response, Option<i64>) {
    let categories = match crate::catalog::cached_categories(state).await {
        Ok(categories) => categories,
        Err(err) => return (error_page(&err, "product", &[]), None),
    };
    let cached = match crate::catalog::cached_product(state, slug).await {
        Ok(Some(cached)) => cached,
        Ok(None) => return (not_found_with(&categories).into_response(), None),
        Err(err) => return (error_page(&err, "product", &categories), None),
    };
    let prices_include_tax = match state.cache.store_settings_from(&state.db).await {
        Ok(settings) => settings.prices_include_tax,
        Err(err) => return (error_page(&err, "product", &categories), None),
    };
    let product = &cached.product;
    let selected = choice.pick(product);
    let key = format!(
        "/p/{}?variant={}&tax={prices_include_tax}",
        product.slug,
        selected.map_or(0, |v| v.id)
    );
    let sources: PageSources = vec![categories.clone(), cached.clone()];
    let purge_tag = format!("product-{}", product.slug);
    let response = shared_page(state, headers, key, sources, Some(purge_tag), async {
        product_markup(
            state,
            &categories,
            product,
            selected,
            None,
            prices_include_tax,
        )
        .await
    })
    .await;
    (response, Some(product.id))
}

/// A product page for one visitor; `problem` (a status and a message) is why adding to
/// the cart failed, shown at the cart button.
pub(super) async fn product_response(
    state: &AppState,
    slug: &str,
    choice: VariantChoice,
    problem: Option<(StatusCode, String)>,
) -> Response {
    let categories = match crate::catalog::cached_categories(state).await {
        Ok(categories) => categories,
        Err(err) => return error_page(&err, "product", &[]),
    };
    let cached = match crate::catalog::cached_product(state, slug).await {
        Ok(Some(cached)) => cached,
        Ok(None) => return not_found_with(&categories).into_response(),
        Err(err) => return error_page(&err, "product", &categories),
    };
    let prices_include_tax = match state.cache.store_settings_from(&state.db).await {
        Ok(settings) => settings.prices_include_tax,
        Err(err) => return error_page(&err, "product", &categories),
    };
    let product = &cached.product;
    let (status, message) = match problem {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    let markup = product_markup(
        state,
        &categories,
        product,
        choice.pick(product),
        message.as_deref(),
        prices_include_tax,
    )
    .await;
    (status, Html(markup.into_string())).into_response()
}

/// The whole product page: the product, the variant shown, what goes well with it.
async fn product_markup(
    state: &AppState,
    categories: &[Category],
    product: &Product,
    selected: Option<&Variant>,
    problem: Option<&str>,
    prices_include_tax: bool,
) -> Markup {
    // Highlight the top-level category of the product's first category in the nav.
    let nav_slug = product.categories.first().and_then(|c| {
        categories
            .iter()
            .find(|cat| cat.slug == c.slug)
            .map(|cat| cat.parent.as_deref().unwrap_or(&cat.slug))
    });
    let related = crate::recommendations::api::goes_well_with(state, product.id)
        .await
        .unwrap_or_else(|err| {
            tracing::warn!(error = %format!("{err:#}"), "product page: recommendations unavailable");
            Vec::new()
        });
    let body = html! {
        (product_body(product, selected, problem, prices_include_tax))
        @if !related.is_empty() {
            section.section #goes-well-with {
                h2 { "Goes well with" }
                ul.product-grid {
                    @for hit in &related {
                        li { (super::search::hit_card(hit)) }
                    }
                }
            }
        }
    };
    described_layout(
        &product.name,
        &description_of(&product.description),
        categories,
        nav_slug,
        body,
    )
}

/// How long a browser or a CDN may keep a shared catalog page, and show it while it
/// revalidates (a 304 when nothing changed).
const SHARED_PAGE_CACHE_CONTROL: &str = "public, max-age=60, stale-while-revalidate=600";
/// What a CDN purges the catalog's lists by (home and category pages): any change to a
/// product or a category ([`crate::cache`]'s purge event names it).
pub const CATALOG_PURGE_TAG: &str = "catalog";

/// Answers a catalog page that every visitor sees alike: from this node's page cache
/// while `sources` are still the catalog cache's entries, else rendered by `render` with
/// the visitor-neutral header ([`crate::http::session::for_everyone`]) and kept. The answer
/// carries validators (304 on a match), `Cache-Control: public` and the CDN purge tag
/// (`purge_tag`, else [`CATALOG_PURGE_TAG`]). The session layer makes any answer that
/// sets a cookie `no-store`.
async fn shared_page(
    state: &AppState,
    headers: &HeaderMap,
    key: String,
    sources: PageSources,
    purge_tag: Option<String>,
    render: impl std::future::Future<Output = Markup>,
) -> Response {
    let page = match state.cache.pages.get(&key).await {
        Some(page) if page.is_current(&sources) => page,
        _ => {
            let markup = crate::http::session::for_everyone(render).await;
            let html = Prepared::new(
                "text/html; charset=utf-8",
                Bytes::from(markup.into_string()),
            );
            let page = Arc::new(CachedPage::new(html, sources));
            state.cache.pages.insert(key, page.clone()).await;
            page
        }
    };
    let response = page.html.respond(headers, SHARED_PAGE_CACHE_CONTROL);
    with_purge_tag(response, purge_tag.as_deref().unwrap_or(CATALOG_PURGE_TAG))
}

/// A catalog page every visitor sees alike that is not worth keeping (search results):
/// rendered with the visitor-neutral header, answered with validators, `Cache-Control:
/// public` and the catalog's purge tag.
pub(super) async fn shared_once(
    headers: &HeaderMap,
    render: impl std::future::Future<Output = Markup>,
) -> Response {
    let markup = crate::http::session::for_everyone(render).await;
    let html = Prepared::once(
        "text/html; charset=utf-8",
        Bytes::from(markup.into_string()),
    );
    with_purge_tag(
        html.respond(headers, SHARED_PAGE_CACHE_CONTROL),
        CATALOG_PURGE_TAG,
    )
}

/// Tags an answer for a CDN's purge (`Surrogate-Key` for Fastly and others, `Cache-Tag`
/// for Cloudflare).
fn with_purge_tag(mut response: Response, tag: &str) -> Response {
    if let Ok(tag) = HeaderValue::from_str(tag) {
        response.headers_mut().insert("surrogate-key", tag.clone());
        response.headers_mut().insert("cache-tag", tag);
    }
    response
}

/// The top-level category of the categories the visitor looked at most, when they
/// agreed to recommendations from browsing.
async fn preferred_department(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    categories: &[Category],
) -> Option<String> {
    let visitor = super::analytics::Visit::of(headers).visitor?;
    let liked = crate::recommendations::affinity(state, &visitor)
        .await
        .map_err(
            |err| tracing::warn!(error = %format!("{err:#}"), "home page: affinity unavailable"),
        )
        .ok()?;
    liked.iter().find_map(|slug| {
        let category = categories.iter().find(|c| &c.slug == slug)?;
        Some(
            category
                .parent
                .clone()
                .unwrap_or_else(|| category.slug.clone()),
        )
    })
}

// ---- page parts ----------------------------------------------------------------------

/// A whole page. The header's account link follows the request's session
/// ([`crate::http::session::account_link`]).
pub(crate) fn layout(
    title: &str,
    categories: &[Category],
    current: Option<&str>,
    body: Markup,
) -> Markup {
    described_layout(title, STORE_DESCRIPTION, categories, current, body)
}

/// [`layout`] with the page's own `description` (what search engines show under its
/// title) instead of the shop's.
pub(crate) fn described_layout(
    title: &str,
    description: &str,
    categories: &[Category],
    current: Option<&str>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (STORE_NAME) }
                meta name="description" content=(description);
                link rel="icon" type="image/svg+xml" href=(crate::http::assets::favicon().path);
                link rel="stylesheet" href=(crate::http::assets::site_css().path);
                script src=(crate::http::security::search_script().path) integrity=(crate::http::security::search_script().integrity) defer {}
                @if crate::http::session::is_shared_page() {
                    script src=(crate::http::security::header_script().path) integrity=(crate::http::security::header_script().integrity) defer {}
                }
            }
            body {
                header.site-header {
                    div.wrap.header-inner {
                        a.logo href="/" { span.logo-mark aria-hidden="true" {} (STORE_NAME) }
                        form.site-search role="search" action="/search" method="get" {
                            label.visually-hidden for="site-q" { "Search products" }
                            input #site-q type="search" name="q" placeholder="Search products"
                                autocomplete="off" maxlength="200";
                            button type="submit" { "Search" }
                        }
                        nav.site-nav aria-label="Main" {
                            @for category in top_level(categories) {
                                a href=(category_url(&category.slug))
                                    aria-current=[(current == Some(category.slug.as_str())).then_some("page")] {
                                    (category.name)
                                }
                            }
                            @if categories.is_empty() {
                                a href="/" { "Shop" }
                            }
                            a.api-link href="/api/v1/openapi.json" { "API" }
                            (crate::http::session::account_link())
                            (crate::http::session::cart_link())
                        }
                    }
                }
                (crate::http::session::analytics_prompt())
                main.wrap { (body) }
                (crate::http::session::analytics_prompt_at_foot())
                footer.site-footer {
                    div.wrap.footer-inner {
                        p { strong { (STORE_NAME) } " · Supplements and skincare with honest labels." }
                        p.muted {
                            @for category in top_level(categories) {
                                a href=(category_url(&category.slug)) { (category.name) }
                                " · "
                            }
                            a href="/api/v1/openapi.json" { "API" }
                        }
                    }
                }
            }
        }
    }
}

fn product_grid(items: &[ProductSummary]) -> Markup {
    html! {
        @if items.is_empty() {
            p.empty { "No products here yet." }
        } @else {
            ul.product-grid {
                @for item in items {
                    li { (product_card(item)) }
                }
            }
        }
    }
}

fn product_card(item: &ProductSummary) -> Markup {
    html! {
        a.card href=(product_url(&item.slug)) {
            (thumb(item.product_type.as_str(), &item.name))
            div.card-body {
                span.card-type { (type_label(item.product_type)) }
                h3.card-title { (item.name) }
                div.card-foot {
                    span.price {
                        @match &item.price_from {
                            Some(price) => {
                                @if item.variant_count > 1 { span.from { "from " } }
                                (price.display())
                            }
                            None => "—",
                        }
                    }
                    (summary_badge(&item.availability))
                }
            }
        }
    }
}

/// A tinted placeholder standing in for a product photo.
pub(super) fn thumb(product_type: &str, name: &str) -> Markup {
    let initial: String = name
        .chars()
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    html! {
        div class={ "thumb thumb-" (product_type) } aria-hidden="true" {
            span { (initial) }
        }
    }
}

/// The stock badge of a listing card: the summary's state over all variants.
fn summary_badge(availability: &Availability) -> Markup {
    let (class, text) = match availability.state {
        StockState::InStock => ("in", "In stock"),
        StockState::LowStock => ("low", "Low stock"),
        StockState::OutOfStock => ("out", "Out of stock"),
    };
    html! { span class={ "badge badge-" (class) } { (text) } }
}

/// The stock state of one variant: "In stock", "Only N left", "Out of stock".
fn stock_text(availability: &Availability) -> String {
    match availability.state {
        StockState::InStock => "In stock".to_owned(),
        StockState::LowStock => format!("Only {} left", availability.sellable_quantity),
        StockState::OutOfStock => "Out of stock".to_owned(),
    }
}

fn variant_badge(availability: &Availability) -> Markup {
    let class = match availability.state {
        StockState::InStock => "in",
        StockState::LowStock => "low",
        StockState::OutOfStock => "out",
    };
    html! { span class={ "badge badge-" (class) } { (stock_text(availability)) } }
}

fn product_body(
    product: &Product,
    selected: Option<&Variant>,
    problem: Option<&str>,
    prices_include_tax: bool,
) -> Markup {
    let first_category = product.categories.first();
    html! {
        nav.breadcrumb aria-label="Breadcrumb" {
            a href="/" { "Home" }
            @if let Some(category) = first_category {
                span.sep aria-hidden="true" { "›" }
                a href=(category_url(&category.slug)) { (category.name) }
            }
            span.sep aria-hidden="true" { "›" }
            span aria-current="page" { (product.name) }
        }
        article.product {
            div.product-top {
                @if product.images.is_empty() {
                    (thumb(product.product_type.as_str(), &product.name))
                } @else {
                    (crate::media::pages::gallery(&product.images, &product.name, selected.map(|v| v.id)))
                }
                div.buy-box {
                    span class={ "type-badge type-" (product.product_type.as_str()) } { (type_label(product.product_type)) }
                    h1 { (product.name) }
                    @match selected {
                        Some(variant) => (buy_panel(product, variant, problem, prices_include_tax)),
                        None => p.muted { "This product is not available at the moment." },
                    }
                }
            }
            @let (main_panels, side_panels) = type_panels(product, selected);
            div.product-details {
                div.details-main {
                    section.panel {
                        h2 { "About this product" }
                        @for paragraph in product.description.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
                            p { (paragraph) }
                        }
                        @if !product.categories.is_empty() {
                            p.meta-line {
                                span.meta-label { "Categories: " }
                                @for (i, category) in product.categories.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    a href=(category_url(&category.slug)) { (category.name) }
                                }
                            }
                        }
                        @if !product.tags.is_empty() {
                            ul.tags aria-label="Tags" {
                                @for tag in &product.tags { li.tag { (tag.replace('-', " ")) } }
                            }
                        }
                    }
                    (main_panels)
                    (reviews_panel(product))
                }
                div.details-side { (side_panels) }
            }
        }
    }
}

/// The published reviews: the average, the count, the newest ten, and the way to write
/// one (the form checks that the customer bought the product).
fn reviews_panel(product: &Product) -> Markup {
    let reviews = &product.reviews;
    html! {
        section.panel #reviews {
            h2 { "Reviews" }
            @match reviews.average_rating {
                Some(average) => {
                    p #review-average data-average=(average) data-count=(reviews.count) {
                        span.stars aria-hidden="true" { (super::reviews::stars(average.round() as i64)) }
                        " " (format!("{average:.1}")) " out of 5 · " (reviews.count)
                        @if reviews.count == 1 { " review" } @else { " reviews" }
                    }
                    @for review in &reviews.latest {
                        article.review {
                            h3 {
                                span.stars aria-label={ (review.rating) " out of 5" } { (super::reviews::stars(review.rating)) }
                                " " (review.title)
                            }
                            p { (review.body) }
                            p.muted { (review.author_name.as_deref().unwrap_or("A customer")) " · " (review.created_at.get(..10).unwrap_or(&review.created_at)) }
                        }
                    }
                }
                None => p.muted { "No reviews yet." },
            }
            p { a href={ "/p/" (product.slug) "/review" } { "Write a review" } }
        }
    }
}

/// Price, variant choice, stock, best-before and the cart button of the selected variant.
fn buy_panel(
    product: &Product,
    variant: &Variant,
    problem: Option<&str>,
    prices_include_tax: bool,
) -> Markup {
    let sellable = variant.availability.state != StockState::OutOfStock
        && variant.availability.sellable_quantity > 0;
    html! {
        p.product-price {
            (variant.price.display())
            " " span.tax-note { @if prices_include_tax { "incl. VAT" } @else { "excl. tax" } }
        }
        @if product.variants.len() > 1 {
            fieldset.variants {
                legend { "Choose an option" }
                ul.variant-list {
                    @for v in &product.variants {
                        @let is_selected = v.id == variant.id;
                        li {
                            a.variant-option href={ (product_url(&product.slug)) "?variant=" (v.id) }
                                aria-current=[is_selected.then_some("true")] {
                                span.radio aria-hidden="true" {}
                                span.variant-title { (v.title) }
                                span.variant-price { (v.price.display()) }
                                (variant_badge(&v.availability))
                            }
                        }
                    }
                }
            }
        } @else {
            p.single-variant { (variant.title) }
        }
        div.stock-line {
            (variant_badge(&variant.availability))
            @if let Some(date) = &variant.availability.best_before {
                span.best-before {
                    "Best before of the next unit shipped: "
                    time datetime=(date) { (pretty_date(date)) }
                }
            }
        }
        @if let Some(problem) = problem {
            p.form-alert role="alert" { (problem) }
        }
        @if sellable {
            // No CSRF token: the page is shared by every visitor (see
            // `session::SHARED_PAGE_FORMS`).
            form.add-to-cart action="/cart/lines" method="post" {
                input type="hidden" name="product" value=(product.slug);
                input type="hidden" name="sku" value=(variant.sku);
                div.field.quantity-field {
                    label for="f-quantity" { "Quantity" }
                    input id="f-quantity" name="quantity" type="number" value="1" min="1"
                        max=(crate::cart::MAX_QUANTITY) inputmode="numeric" required;
                }
                @if matches!(product.product_type, ProductType::Supplement)
                    && !product.subscription_intervals.is_empty() {
                    div.field.checkbox {
                        label {
                            input type="checkbox" name="subscription" value="1";
                            " Subscribe & save: deliver this again regularly"
                        }
                    }
                    div.field {
                        label for="f-interval" { "Deliver" }
                        select id="f-interval" name="interval" {
                            (super::subscriptions::interval_options(&product.subscription_intervals, None))
                        }
                    }
                }
                button.button.primary.wide type="submit" { "Add to cart" }
            }
        } @else {
            div.add-to-cart {
                button.button.primary.wide type="button" disabled title="This variant is out of stock" { "Out of stock" }
            }
            (super::notifications::back_in_stock_offer(&product.slug))
        }
        dl.facts {
            dt { "SKU" } dd { code { (variant.sku) } }
            dt { "Weight" } dd { (weight_label(variant.weight_grams)) }
            @for (name, value) in &variant.options {
                dt { (option_label(name)) } dd { (value) }
            }
        }
    }
}

/// The type-specific panels: those that read on (usage, warnings) and the facts that sit
/// beside the description.
fn type_panels(product: &Product, selected: Option<&Variant>) -> (Markup, Markup) {
    match product.product_type {
        ProductType::Supplement => {
            match serde_json::from_value::<SupplementAttributes>(product.attributes.clone()) {
                Ok(attrs) => supplement_panels(&attrs),
                Err(err) => (html! {}, attributes_unavailable(product, &err)),
            }
        }
        ProductType::Skincare => {
            match serde_json::from_value::<SkincareAttributes>(product.attributes.clone()) {
                Ok(attrs) => skincare_panels(&attrs),
                Err(err) => (html! {}, attributes_unavailable(product, &err)),
            }
        }
        ProductType::Bundle => {
            let attrs = serde_json::from_value::<BundleAttributes>(product.attributes.clone());
            if let Err(err) = &attrs {
                tracing::warn!(product = %product.slug, error = %err, "bundle attributes do not parse");
            }
            (html! {}, bundle_panel(attrs.ok().as_ref(), selected))
        }
    }
}

fn attributes_unavailable(product: &Product, err: &serde_json::Error) -> Markup {
    tracing::warn!(product = %product.slug, error = %err, "product attributes do not parse");
    html! {
        section.panel {
            h2 { "Product details" }
            p.muted { "Detailed product information is not available right now." }
        }
    }
}

fn supplement_panels(attrs: &SupplementAttributes) -> (Markup, Markup) {
    let facts = html! {
        section.panel {
            h2 { "Supplement facts" }
            table.facts-table {
                caption.visually-hidden { "Supplement facts" }
                tbody {
                    tr { th scope="row" { "Serving size" } td { (attrs.serving_size) } }
                    tr { th scope="row" { "Servings per container" } td { (attrs.servings_per_container) } }
                    tr { th scope="row" { "Form" } td { (form_label(attrs.form)) } }
                }
                @if !attrs.ingredients.is_empty() {
                    tbody {
                        tr.facts-head { th scope="col" { "Ingredient" } th scope="col" { "Per serving" } }
                        @for ingredient in &attrs.ingredients {
                            tr {
                                th scope="row" { (ingredient.name) }
                                td { (ingredient.amount) " " (ingredient.unit) }
                            }
                        }
                    }
                }
            }
        }
    };
    let story = html! {
        section.panel {
            h2 { "How to use" }
            p { (attrs.usage) }
            @if !attrs.allergens.is_empty() {
                p.allergens { strong { "Contains: " } (attrs.allergens.join(", ")) }
            }
        }
        @if !attrs.warnings.trim().is_empty() || !attrs.disclaimer.trim().is_empty() {
            section.panel.notice {
                @if !attrs.warnings.trim().is_empty() {
                    h2 { "Warnings" }
                    p { (attrs.warnings) }
                }
                @if !attrs.disclaimer.trim().is_empty() {
                    p.disclaimer { (attrs.disclaimer) }
                }
            }
        }
    };
    (story, facts)
}

fn skincare_panels(attrs: &SkincareAttributes) -> (Markup, Markup) {
    let story = html! {
        section.panel {
            h2 { "How to use" }
            p { (attrs.application) }
        }
    };
    let facts = html! {
        section.panel {
            h2 { "Skincare details" }
            dl.facts {
                @if !attrs.skin_types.is_empty() {
                    dt { "Skin types" }
                    dd { (attrs.skin_types.iter().map(|t| skin_type_label(*t)).collect::<Vec<_>>().join(", ")) }
                }
                dt { "Volume" } dd { (attrs.volume_ml) " ml" }
                dt { "Routine step" } dd { (routine_step_label(attrs.routine_step)) }
                @if let Some(months) = attrs.period_after_opening_months {
                    dt { "Period after opening" }
                    dd {
                        span.pao { (months) "M" }
                        " use within " (months) " months of opening"
                    }
                }
            }
        }
        @if !attrs.key_ingredients.is_empty() {
            section.panel {
                h2 { "Key ingredients" }
                ul.tags {
                    @for ingredient in &attrs.key_ingredients { li.tag { (ingredient) } }
                }
            }
        }
    };
    (story, facts)
}

fn bundle_panel(attrs: Option<&BundleAttributes>, selected: Option<&Variant>) -> Markup {
    html! {
        section.panel {
            h2 { "What's inside" }
            @if let Some(attrs) = attrs {
                p.muted {
                    (match attrs.kind { BundleKind::Multipack => "Multipack", BundleKind::Kit => "Kit" })
                    @if !attrs.contents_note.trim().is_empty() { " · " (attrs.contents_note) }
                }
            }
            @match selected {
                Some(variant) if !variant.components.is_empty() => {
                    ul.contents {
                        @for component in &variant.components {
                            li {
                                span.qty { (component.quantity) " ×" }
                                " " (component.product_name)
                                span.muted { " – " (component.title) }
                            }
                        }
                    }
                }
                _ => p.muted { "The contents of this bundle are not listed." },
            }
        }
    }
}

// ---- small helpers ---------------------------------------------------------------------

fn top_level(categories: &[Category]) -> impl Iterator<Item = &Category> {
    categories.iter().filter(|c| c.parent.is_none())
}

fn children_of<'a>(
    categories: &'a [Category],
    slug: &'a str,
) -> impl Iterator<Item = &'a Category> {
    categories
        .iter()
        .filter(move |c| c.parent.as_deref() == Some(slug))
}

fn category_url(slug: &str) -> String {
    format!("/c/{slug}")
}

pub(super) fn product_url(slug: &str) -> String {
    format!("/p/{slug}")
}

fn page_url(slug: &str, page: i64) -> String {
    if page <= 1 {
        category_url(slug)
    } else {
        format!("/c/{slug}?page={page}")
    }
}

/// A page's description from a longer text: its first paragraph, cut at a word to at
/// most [`DESCRIPTION_CHARS`] characters; the shop's when the text is empty.
fn description_of(text: &str) -> String {
    let first = text
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .find(|p| !p.is_empty());
    let Some(first) = first else {
        return STORE_DESCRIPTION.to_owned();
    };
    if first.chars().count() <= DESCRIPTION_CHARS {
        return first;
    }
    let mut cut = String::new();
    for word in first.split(' ') {
        // Room for the word, its space and the ellipsis.
        if cut.chars().count() + word.chars().count() + 2 > DESCRIPTION_CHARS {
            break;
        }
        if !cut.is_empty() {
            cut.push(' ');
        }
        cut.push_str(word);
    }
    if cut.is_empty() {
        cut = first.chars().take(DESCRIPTION_CHARS - 1).collect();
    }
    let cut = cut.trim_end_matches([',', ';', ':', '.', ' ']);
    format!("{cut}…")
}

fn count_label(total: i64) -> String {
    match total {
        1 => "1 product".to_owned(),
        n => format!("{n} products"),
    }
}

/// "2026-03-12" as "12 Mar 2026"; anything unparsable as it is.
fn pretty_date(date: &str) -> String {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map(|d| d.format("%-d %b %Y").to_string())
        .unwrap_or_else(|_| date.to_owned())
}

fn weight_label(grams: i64) -> String {
    if grams >= 1000 {
        let kg = format!("{:.2}", grams as f64 / 1000.0);
        format!("{} kg", kg.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{grams} g")
    }
}

/// `flavour` as "Flavour", `pack_size` as "Pack size".
fn option_label(name: &str) -> String {
    let text = name.replace(['_', '-'], " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// [`type_label`] of a product type as stored (`supplement`, ...).
pub(super) fn type_label_of(product_type: &str) -> &'static str {
    ProductType::parse(product_type).map_or("Product", type_label)
}

fn type_label(product_type: ProductType) -> &'static str {
    match product_type {
        ProductType::Supplement => "Supplement",
        ProductType::Skincare => "Skincare",
        ProductType::Bundle => "Bundle",
    }
}

fn form_label(form: SupplementForm) -> &'static str {
    match form {
        SupplementForm::Capsules => "Capsules",
        SupplementForm::Tablets => "Tablets",
        SupplementForm::Softgels => "Softgels",
        SupplementForm::Powder => "Powder",
        SupplementForm::Liquid => "Liquid",
        SupplementForm::Gummies => "Gummies",
    }
}

fn skin_type_label(skin_type: SkinType) -> &'static str {
    match skin_type {
        SkinType::Dry => "Dry",
        SkinType::Normal => "Normal",
        SkinType::Oily => "Oily",
        SkinType::Combination => "Combination",
        SkinType::Sensitive => "Sensitive",
    }
}

fn routine_step_label(step: RoutineStep) -> &'static str {
    match step {
        RoutineStep::Cleanse => "Cleanse",
        RoutineStep::Tone => "Tone",
        RoutineStep::Serum => "Serum",
        RoutineStep::Treat => "Treat",
        RoutineStep::Moisturise => "Moisturise",
        RoutineStep::Protect => "Protect",
        RoutineStep::Mask => "Mask",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_numbers_are_lenient() {
        assert_eq!(page_number(None), 1);
        assert_eq!(page_number(Some("page=3")), 3);
        assert_eq!(page_number(Some("page=abc")), 1);
        assert_eq!(page_number(Some("page=0")), 1);
        assert_eq!(page_number(Some("page=-2")), 1);
        assert_eq!(page_number(Some("page=999999999999999999999")), 1);
        assert_eq!(page_number(Some("page=%ZZ&x")), 1);
    }

    #[test]
    fn labels() {
        assert_eq!(weight_label(70), "70 g");
        assert_eq!(weight_label(1000), "1 kg");
        assert_eq!(weight_label(1250), "1.25 kg");
        assert_eq!(option_label("pack_size"), "Pack size");
        assert_eq!(pretty_date("2026-03-02"), "2 Mar 2026");
        assert_eq!(pretty_date("soon"), "soon");
    }

    #[test]
    fn descriptions_are_the_first_paragraph_cut_at_a_word() {
        assert_eq!(description_of("Short.\n\nMore."), "Short.");
        assert_eq!(description_of("  \n\n "), STORE_DESCRIPTION);
        let long = "word ".repeat(60);
        let cut = description_of(&long);
        assert!(cut.chars().count() <= DESCRIPTION_CHARS, "{cut}");
        assert!(cut.ends_with("word…"), "{cut}");
        let one = "x".repeat(300);
        assert_eq!(description_of(&one).chars().count(), DESCRIPTION_CHARS);
    }

    #[test]
    fn not_found_is_a_page() {
        let (status, Html(body)) = not_found_page();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.starts_with("<!DOCTYPE html>"));
        assert!(body.contains(&crate::http::assets::site_css().path));
    }
}
