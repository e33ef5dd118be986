//! The cart in the storefront: add from a product page, see, change and empty the cart.
//! Server-rendered like the rest of the shop; the cart itself is [`crate::cart`]'s, called
//! directly, so the pages price and check exactly as the JSON API does.
//!
//! Which cart: a signed-in shopper's is their customer cart; a guest's id is in the
//! cookie `olv_cart`. A cookie that names no cart the guest may use (merged, someone's
//! customer cart, made up) counts as no cart: the page shows an empty cart and the
//! cookie is deleted. Signing in merges the guest cart into the customer's
//! ([`merge_guest_cart`]).
//!
//! The header's cart count comes from the cookie `olv_cart_items`, which the cart pages
//! set whenever they learn the count, so catalog pages show it without the database. It
//! is only a hint: a cart changed through the API or another device shows its new count
//! after the next visit to a cart page.

use std::collections::HashMap;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use cookie::SameSite;
use maud::{Markup, html};

use super::account::{Form, account_page_response, sentence, server_error};
use super::catalog::{VariantChoice, product_response, product_url};
use crate::accounts::Authenticated;
use crate::app::AppState;
use crate::cart::{self, Cart, CartLine, LineChange, NewLine};
use crate::catalog::model::Money;
use crate::config::ServeConfig;
use crate::error::Error;
use crate::http::session::{self, Session, see_other};
use crate::plugins::pricing::AppliedAdjustment;

/// The guest cart's id.
pub const CART_COOKIE: &str = "olv_cart";
/// Units in the cart, for the header.
pub const CART_ITEMS_COOKIE: &str = "olv_cart_items";
/// A guest cart is kept for 30 days after its last change.
const CART_COOKIE_MAX_AGE_SECS: i64 = 30 * 24 * 60 * 60;
const CART_PATH: &str = "/cart";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(CART_PATH, get(cart_page))
        .route("/cart/lines", post(add_submit))
        .route("/cart/lines/{id}", post(change_submit))
        .route("/cart/lines/{id}/remove", post(remove_submit))
}

// ---- which cart ------------------------------------------------------------------------

/// The shopper's cart as far as the request says.
pub(super) struct Shopper {
    pub(super) customer: Option<Authenticated>,
    /// The cart in use, when there is one (a guest without a cart has none).
    pub(super) cart: Option<Cart>,
    /// Cookies to set on the response (a new or a dropped guest cart, the count).
    pub(super) cookies: HeaderMap,
}

/// Finds the shopper's cart. A signed-in shopper whose browser still holds a guest cart
/// (a merge at sign-in that failed) has it merged now.
pub(super) async fn shopper(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
) -> Result<Shopper, Error> {
    let customer = session::current_customer(state, session).await?;
    let guest_id = session::request_cookie(headers, CART_COOKIE).map(str::to_owned);
    let mut cookies = HeaderMap::new();
    let cart = match (&customer, guest_id) {
        (Some(customer), guest) => {
            if let Some(guest) = guest {
                merge_guest_cart(state, &guest, customer, &mut cookies).await;
            }
            Some(cart::create(state, Some(customer)).await?)
        }
        (None, Some(id)) => match cart::get(state, &id, None).await {
            Ok(cart) => Some(cart),
            Err(Error::NotFound(_)) => {
                forget_guest_cart(&state.config, &mut cookies);
                None
            }
            Err(err) => return Err(err),
        },
        (None, None) => None,
    };
    Ok(Shopper {
        customer,
        cart,
        cookies,
    })
}

/// Merges the guest cart `guest_id` into the customer's and deletes the cookie. A cart
/// that is gone (or not a guest's) only loses its cookie; any other failure is logged
/// and keeps the cookie, so the cart page tries again: signing in never fails for it.
pub(super) async fn merge_guest_cart(
    state: &AppState,
    guest_id: &str,
    customer: &Authenticated,
    cookies: &mut HeaderMap,
) {
    match cart::merge(state, guest_id, customer).await {
        Ok(merged) => {
            forget_guest_cart(&state.config, cookies);
            set_count(&state.config, cookies, &merged);
        }
        Err(Error::NotFound(_)) => forget_guest_cart(&state.config, cookies),
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "merging a guest cart at sign-in failed");
        }
    }
}

/// At sign-in: merges the browser's guest cart, if it has one, into the customer's.
pub(super) async fn merge_at_sign_in(
    state: &AppState,
    request_headers: &HeaderMap,
    access_token: &str,
    response_headers: &mut HeaderMap,
) {
    let Some(guest_id) = session::request_cookie(request_headers, CART_COOKIE) else {
        return;
    };
    let customer = match crate::accounts::authenticate(state, access_token).await {
        Ok(customer) => customer,
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "merging a guest cart at sign-in failed");
            return;
        }
    };
    merge_guest_cart(state, guest_id, &customer, response_headers).await;
}

fn cart_cookie(
    config: &ServeConfig,
    name: &'static str,
    value: String,
    max_age: i64,
) -> cookie::Cookie<'static> {
    session::session_cookie(config, name, value, "/", SameSite::Lax, Some(max_age))
}

pub(super) fn forget_guest_cart(config: &ServeConfig, cookies: &mut HeaderMap) {
    session::add_cookie(cookies, &cart_cookie(config, CART_COOKIE, String::new(), 0));
}

fn remember_guest_cart(config: &ServeConfig, cookies: &mut HeaderMap, id: &str) {
    let cookie = cart_cookie(config, CART_COOKIE, id.to_owned(), CART_COOKIE_MAX_AGE_SECS);
    session::add_cookie(cookies, &cookie);
}

/// Units in a cart.
fn item_count(cart: &Cart) -> u32 {
    cart.lines.iter().map(|l| l.quantity).sum()
}

fn set_count(config: &ServeConfig, cookies: &mut HeaderMap, cart: &Cart) {
    let cookie = cart_cookie(
        config,
        CART_ITEMS_COOKIE,
        item_count(cart).to_string(),
        CART_COOKIE_MAX_AGE_SECS,
    );
    session::add_cookie(cookies, &cookie);
}

/// At sign-out: the header's count was the customer's.
pub(super) fn forget_count(config: &ServeConfig, headers: &mut HeaderMap) {
    session::add_cookie(
        headers,
        &cart_cookie(config, CART_ITEMS_COOKIE, String::new(), 0),
    );
}

pub(super) fn with_cookies(mut response: Response, cookies: HeaderMap) -> Response {
    let headers = response.headers_mut();
    for value in cookies.get_all(header::SET_COOKIE) {
        headers.append(header::SET_COOKIE, value.clone());
    }
    response
}

// ---- add -----------------------------------------------------------------------------

/// `POST /cart/lines` from a product page: `product` (slug), `sku`, `quantity`,
/// `subscription`. Success goes to the cart; a refusal (not enough stock, a bad
/// quantity) shows the product page again with the reason.
async fn add_submit(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let product = form.get("product").to_owned();
    let sku = form.get("sku").trim().to_owned();
    let refuse = |status: StatusCode, message: String| {
        let state = state.clone();
        let product = product.clone();
        let sku = sku.clone();
        async move {
            if product.is_empty() {
                return session::message_page(status, "Cart", "We couldn't add that", &message);
            }
            product_response(
                &state,
                &product,
                VariantChoice::Sku(sku),
                Some((status, message)),
            )
            .await
        }
    };
    let Some(quantity) = parse_quantity(form.get("quantity")) else {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, quantity_message()).await;
    };
    let line = NewLine {
        sku: sku.clone(),
        quantity,
        subscription: !form.get("subscription").is_empty(),
        interval: Some(form.get("interval"))
            .filter(|i| !i.is_empty() && !form.get("subscription").is_empty())
            .map(str::to_owned),
    };
    let mut shopper = match shopper(&state, &session, &headers).await {
        Ok(shopper) => shopper,
        Err(err) => return server_error(&err, "cart"),
    };
    let id = match &shopper.cart {
        Some(cart) => cart.id.clone(),
        None => match cart::create(&state, None).await {
            Ok(cart) => {
                remember_guest_cart(&state.config, &mut shopper.cookies, &cart.id);
                cart.id
            }
            Err(err) => return server_error(&err, "cart"),
        },
    };
    match cart::add_line(&state, &id, shopper.customer.as_ref(), line).await {
        Ok(cart) => {
            set_count(&state.config, &mut shopper.cookies, &cart);
            // An addition, for recommendations (with the visitor's consent).
            let slugs: Vec<String> = cart
                .lines
                .iter()
                .filter(|l| l.sku == sku)
                .map(|l| l.product_slug.clone())
                .collect();
            let cookie = super::analytics::record_slugs(
                &state,
                &session,
                &headers,
                crate::recommendations::Behaviour::Added,
                &slugs,
            )
            .await;
            super::analytics::with_cookie(
                with_cookies(see_other(CART_PATH), shopper.cookies),
                cookie,
            )
        }
        Err(err) => match refusal(&err) {
            Some((status, message)) => with_cookies(refuse(status, message).await, shopper.cookies),
            None => server_error(&err, "cart"),
        },
    }
}

/// A quantity typed into a form: a whole number (a browser never sends another).
fn parse_quantity(value: &str) -> Option<u32> {
    value.trim().parse::<u32>().ok()
}

fn quantity_message() -> String {
    format!("Choose a quantity from 1 to {}.", cart::MAX_QUANTITY)
}

/// The status and message a page shows for an error about the input, if it is one.
fn refusal(err: &Error) -> Option<(StatusCode, String)> {
    match err {
        Error::Conflict { message, .. } => Some((StatusCode::CONFLICT, sentence(message))),
        Error::Validation(fields) => {
            let message = fields
                .iter()
                .map(|f| match f.field.as_str() {
                    "quantity" if f.message.starts_with("must ") => {
                        format!("The quantity {}.", f.message)
                    }
                    _ => sentence(&f.message),
                })
                .collect::<Vec<_>>()
                .join(" ");
            Some((StatusCode::UNPROCESSABLE_ENTITY, message))
        }
        _ => None,
    }
}

// ---- change and remove -----------------------------------------------------------------

fn line_id(path: Result<Path<String>, PathRejection>) -> Option<i64> {
    path.ok().and_then(|Path(id)| id.parse().ok())
}

/// `POST /cart/lines/{id}`: the line's new `quantity`. A refusal shows the cart again
/// with the reason at the line.
async fn change_submit(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let Some(line) = line_id(path) else {
        return super::catalog::not_found_page().into_response();
    };
    let form = Form::parse(&body);
    let shopper = match shopper(&state, &session, &headers).await {
        Ok(shopper) => shopper,
        Err(err) => return server_error(&err, "cart"),
    };
    let Some(current) = shopper.cart.as_ref() else {
        return with_cookies(
            super::catalog::not_found_page().into_response(),
            shopper.cookies,
        );
    };
    let Some(quantity) = parse_quantity(form.get("quantity")) else {
        let problem = LineProblem {
            line,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: quantity_message(),
        };
        return cart_response(
            &state,
            &session,
            Some(current),
            Some(&problem),
            shopper.cookies,
        )
        .await;
    };
    let result = cart::change_line(
        &state,
        &current.id,
        shopper.customer.as_ref(),
        line,
        LineChange { quantity },
    )
    .await;
    after_change(&state, &session, shopper, line, result).await
}

/// `POST /cart/lines/{id}/remove`.
async fn remove_submit(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Some(line) = line_id(path) else {
        return super::catalog::not_found_page().into_response();
    };
    let shopper = match shopper(&state, &session, &headers).await {
        Ok(shopper) => shopper,
        Err(err) => return server_error(&err, "cart"),
    };
    let Some(current) = shopper.cart.as_ref() else {
        return with_cookies(
            super::catalog::not_found_page().into_response(),
            shopper.cookies,
        );
    };
    let result = cart::remove_line(&state, &current.id, shopper.customer.as_ref(), line).await;
    after_change(&state, &session, shopper, line, result).await
}

/// Back to the cart after a change, or the cart again with the reason it was refused.
async fn after_change(
    state: &AppState,
    session: &Session,
    mut shopper: Shopper,
    line: i64,
    result: Result<Cart, Error>,
) -> Response {
    match result {
        Ok(cart) => {
            set_count(&state.config, &mut shopper.cookies, &cart);
            with_cookies(see_other(CART_PATH), shopper.cookies)
        }
        // Not a line of this cart (another's, or removed already).
        Err(Error::NotFound(_)) => with_cookies(
            super::catalog::not_found_page().into_response(),
            shopper.cookies,
        ),
        Err(err) => match refusal(&err) {
            Some((status, message)) => {
                let problem = LineProblem {
                    line,
                    status,
                    message,
                };
                cart_response(
                    state,
                    session,
                    shopper.cart.as_ref(),
                    Some(&problem),
                    shopper.cookies,
                )
                .await
            }
            None => server_error(&err, "cart"),
        },
    }
}

// ---- the cart page -----------------------------------------------------------------------

/// Why a change to a line was refused.
struct LineProblem {
    line: i64,
    status: StatusCode,
    message: String,
}

async fn cart_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    let mut shopper = match shopper(&state, &session, &headers).await {
        Ok(shopper) => shopper,
        Err(err) => return server_error(&err, "cart"),
    };
    match &shopper.cart {
        Some(cart) => set_count(&state.config, &mut shopper.cookies, cart),
        None => forget_count(&state.config, &mut shopper.cookies),
    }
    cart_response(
        &state,
        &session,
        shopper.cart.as_ref(),
        None,
        shopper.cookies,
    )
    .await
}

async fn cart_response(
    state: &AppState,
    session: &Session,
    cart: Option<&Cart>,
    problem: Option<&LineProblem>,
    cookies: HeaderMap,
) -> Response {
    let status = problem.map_or(StatusCode::OK, |p| p.status);
    let items = cart.map_or(0, item_count);
    let names = match cart {
        Some(cart) => product_names(state, cart).await,
        None => HashMap::new(),
    };
    let prices_include_tax = match state.cache.store_settings_from(&state.db).await {
        Ok(settings) => settings.prices_include_tax,
        Err(err) => return super::account::server_error(&err, "cart"),
    };
    let body = html! {
        header.page-head { h1 { "Your cart" } }
        @match cart.filter(|c| !c.lines.is_empty()) {
            None => section.message {
                p { "Your cart is empty." }
                p { a.button.primary href="/" { "Continue shopping" } }
            },
            Some(cart) => (cart_body(cart, &names, session, problem, prices_include_tax)),
        }
    };
    // The count in the header is this cart's, not the one the request's cookie had.
    let response = session::with_cart_items(
        items,
        account_page_response(state, status, "Your cart", body),
    )
    .await;
    with_cookies(response, cookies)
}

/// The names of the cart's products by slug, from the catalog cache (a line shows its
/// variant's title alone when its product cannot be read).
async fn product_names(state: &AppState, cart: &Cart) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for line in &cart.lines {
        if names.contains_key(&line.product_slug) {
            continue;
        }
        match crate::catalog::cached_product(state, &line.product_slug).await {
            Ok(Some(cached)) => {
                names.insert(line.product_slug.clone(), cached.product.name.clone());
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "cart page: product name unavailable");
            }
        }
    }
    names
}

pub(super) fn money(amount_minor: i64, currency: &str) -> String {
    Money {
        amount_minor,
        currency: currency.to_owned(),
    }
    .display()
}

fn adjustment_list(adjustments: &[AppliedAdjustment], currency: &str) -> Markup {
    html! {
        @if !adjustments.is_empty() {
            ul.adjustments {
                @for adjustment in adjustments {
                    li {
                        span.reason { (adjustment.reason) }
                        " "
                        span.amount { (money(adjustment.amount_minor, currency)) }
                    }
                }
            }
        }
    }
}

fn cart_body(
    cart: &Cart,
    names: &HashMap<String, String>,
    session: &Session,
    problem: Option<&LineProblem>,
    prices_include_tax: bool,
) -> Markup {
    let currency = cart.currency.as_deref().unwrap_or("");
    html! {
        table.cart-lines {
            thead {
                tr {
                    th scope="col" { "Product" }
                    th scope="col" { "Price" }
                    th scope="col" { "Quantity" }
                    th scope="col" { "Total" }
                }
            }
            tbody {
                @for line in &cart.lines {
                    (line_row(line, names.get(&line.product_slug), session, problem.filter(|p| p.line == line.id)))
                }
            }
        }
        section.panel.cart-summary {
            dl.facts {
                dt { "Subtotal" } dd { (money(cart.subtotal_minor, currency)) }
            }
            (adjustment_list(&cart.cart_adjustments, currency))
            dl.facts {
                @if cart.adjustments_total_minor != 0 {
                    dt { "Discounts and surcharges" } dd { (money(cart.adjustments_total_minor, currency)) }
                }
                dt { strong { "Total" } } dd.cart-total { strong { (money(cart.total_minor, currency)) } }
            }
            p.muted.tax-note {
                @if prices_include_tax {
                    "Prices include VAT. Shipping is shown at checkout, with the total, before you pay."
                } @else {
                    "Tax and shipping are shown at checkout, with the total, before you pay."
                }
            }
            @if !cart.skipped_rules.is_empty() {
                p.muted { "Some offers could not be checked just now and are not included." }
            }
            @if cart.can_check_out {
                p { a #checkout-link.button.primary.wide href="/checkout" { "Checkout" } }
            } @else {
                p {
                    button.button.primary.wide type="button" disabled { "Checkout" }
                }
                p.muted { "Change or remove the marked lines to check out." }
            }
        }
    }
}

fn line_row(
    line: &CartLine,
    product_name: Option<&String>,
    session: &Session,
    problem: Option<&LineProblem>,
) -> Markup {
    let quantity_id = format!("q-{}", line.id);
    let title = match product_name {
        Some(name) => format!("{name} – {}", line.title),
        None => line.title.clone(),
    };
    html! {
        tr.cart-line id={ "line-" (line.id) } {
            td {
                a href=(product_url(&line.product_slug)) { (title) }
                @if line.subscription { " " span.badge.badge-in { "Subscribe & save" } }
                br;
                code.muted { (line.sku) }
                (adjustment_list(&line.adjustments, &line.unit_price.currency))
                @if let Some(text) = &line.problem {
                    p.line-problem role="status" { (sentence(text)) }
                }
                @if let Some(problem) = problem {
                    p.form-alert role="alert" { (problem.message) }
                }
            }
            td { (line.unit_price.display()) }
            td {
                form.inline method="post" action={ "/cart/lines/" (line.id) } {
                    (session.csrf_input())
                    label.visually-hidden for=(quantity_id) { "Quantity of " (title) }
                    input id=(quantity_id) name="quantity" type="number" min="1"
                        max=(cart::MAX_QUANTITY) value=(line.quantity) inputmode="numeric" required;
                    " "
                    button.button type="submit" { "Update" }
                }
                " "
                form.inline method="post" action={ "/cart/lines/" (line.id) "/remove" } {
                    (session.csrf_input())
                    button.button type="submit" { "Remove" }
                }
            }
            td { (line.total.display()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_whole_numbers() {
        assert_eq!(parse_quantity(" 3 "), Some(3));
        assert_eq!(parse_quantity(""), None);
        assert_eq!(parse_quantity("-1"), None);
        assert_eq!(parse_quantity("1.5"), None);
    }

    #[test]
    fn conflicts_read_as_sentences() {
        let err = Error::conflict(Some("quantity"), "only 2 can be sold now".to_owned());
        assert_eq!(
            refusal(&err),
            Some((StatusCode::CONFLICT, "Only 2 can be sold now.".to_owned()))
        );
    }
}
