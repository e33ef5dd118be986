//! Checkout in the storefront: the address, the country and the shipping method, the
//! order's total with shipping and tax (computed by the quote the checkout charges), then
//! the card, then the confirmation page. The order is [`crate::orders::checkout`]'s, called directly, so the
//! page places orders exactly as the JSON API does.
//!
//! Card details never reach the kernel. The card inputs have no `name`, so a browser
//! never posts them to us; the page's script sends them from the browser straight to the
//! processor's tokenization URL (the payment adapter's `checkout_tokenize_url` setting),
//! puts the token it gets back into the hidden `payment_token` field, and only then
//! submits the form. (The session layer also refuses any storefront form field that looks
//! like a card number.)
//!
//! Each rendering of the form carries a fresh `checkout_key`, the order's
//! Idempotency-Key: a form submitted twice places one order. After a decline the cart is
//! open again and the form comes back with a new key; after "try again" (the processor
//! could not answer) it keeps its key, so the retry completes the same order.
//!
//! The confirmation page is the customer's when signed in; for a guest, the browser that
//! placed the order holds its cart's unguessable id in the cookie `olv_placed`.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use cookie::SameSite;
use maud::{Markup, html};

use super::account::{
    Form, FormErrors, account_page_response, form_alert, labelled_input, sentence, server_error,
    status_of,
};
use super::cart::{self as cart_pages, Shopper};
use super::orders::order_details;
use crate::app::AppState;
use crate::cart::Cart;
use crate::error::{Error, FieldError};
use crate::http::session::{self, Session, see_other};
use crate::orders::totals::{self, CheckoutQuote};
use crate::orders::{self, CheckoutRequest, ShippingAddress};

const CHECKOUT_PATH: &str = "/checkout";
const CONFIRMATION_PATH: &str = "/checkout/confirmation";
/// The guest's placed cart, for the confirmation page.
const PLACED_COOKIE: &str = "olv_placed";
const PLACED_COOKIE_MAX_AGE_SECS: i64 = 24 * 60 * 60;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(CHECKOUT_PATH, get(checkout_page).post(checkout_submit))
        .route("/checkout/quote", get(quote_json))
        .route("/checkout/confirmation/{number}", get(confirmation_page))
}

/// The address fields but the country (a list of its own): name, label, autocomplete,
/// required.
pub(super) const ADDRESS_FIELDS: [(&str, &str, &str, bool); 6] = [
    ("name", "Full name", "shipping name", true),
    ("line1", "Address line 1", "shipping address-line1", true),
    ("line2", "Address line 2", "shipping address-line2", false),
    ("city", "City", "shipping address-level2", true),
    (
        "region",
        "State, province or county",
        "shipping address-level1",
        false,
    ),
    ("postal_code", "Postal code", "shipping postal-code", true),
];

/// What the form shows: the values typed (or proposed), by field name.
#[derive(Default)]
struct Values(Vec<(String, String)>);

impl Values {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    fn set(&mut self, name: &str, value: &str) {
        self.0.push((name.to_owned(), value.to_owned()));
    }
}

/// Why the form is shown again.
struct Problem {
    status: StatusCode,
    errors: FormErrors,
}

fn new_checkout_key() -> String {
    format!("web-{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>()))
}

/// The key from the form, if it has the shape of one this page made.
fn posted_checkout_key(form: &Form) -> Option<String> {
    let key = form.get("checkout_key");
    (key.starts_with("web-")
        && (8..=64).contains(&key.len())
        && key[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| key.to_owned())
}

// ---- what the order costs -----------------------------------------------------------------

/// The countries the shop ships to, by name: those of the shipping rate table, or every
/// country when a rate is for `*`. The code proposed when the shopper has none: the
/// first country the table names (the shop's home, usually).
pub(super) async fn shipping_countries(
    state: &AppState,
) -> Result<(Vec<(String, String)>, Option<String>), Error> {
    let rates = orders::api::read_shipping_rates(state).await?;
    let named: Vec<&str> = rates
        .iter()
        .map(|r| r.country.as_str())
        .filter(|c| *c != "*")
        .collect();
    let home = named.first().map(|c| (*c).to_owned());
    let mut countries: Vec<(String, String)> = if rates.iter().any(|r| r.country == "*") {
        crate::countries::COUNTRIES
            .iter()
            .map(|(code, name)| ((*code).to_owned(), (*name).to_owned()))
            .collect()
    } else {
        named
            .iter()
            .map(|code| {
                let name = crate::countries::name(code).unwrap_or(code);
                ((*code).to_owned(), name.to_owned())
            })
            .collect()
    };
    countries.sort_by(|a, b| a.1.cmp(&b.1));
    countries.dedup_by(|a, b| a.0 == b.0);
    Ok((countries, home))
}

/// The order's totals for the country and method in `values`; `None` until a country is
/// chosen. An error is the shopper's (no shipping there): it is shown at the country.
async fn quote_for(
    state: &AppState,
    cart: &Cart,
    values: &Values,
    customer_id: Option<i64>,
) -> Option<Result<CheckoutQuote, Error>> {
    let country = values.get("country")?;
    let points = match points_of(values) {
        Ok(points) => points,
        Err(err) => return Some(Err(err)),
    };
    Some(
        totals::quote_with_points(
            state,
            cart,
            customer_id,
            points,
            (country, values.get("shipping_method"), "country"),
        )
        .await,
    )
}

/// What a posted form must hold before an order is tried: the card's token (the page's
/// script put it there), the total the page showed, and the points to spend if any; or
/// what to tell the shopper.
fn placing_fields(form: &Form, values: &Values) -> Result<(String, i64, Option<i64>), FormErrors> {
    let token = form.get("payment_token").trim();
    if token.is_empty() {
        return Err(form_error(
            "Please enter your card details (the page needs JavaScript to send them to our payment processor).",
        ));
    }
    let Ok(expected_total) = form.get("expected_total_minor").trim().parse::<i64>() else {
        return Err(form_error(
            "Please check the total for your country, then place the order.",
        ));
    };
    let points =
        points_of(values).map_err(|err| FormErrors::from_error(&err).unwrap_or_default())?;
    Ok((token.to_owned(), expected_total, points))
}

/// The points the shopper typed in to spend (none for a blank field).
fn points_of(values: &Values) -> Result<Option<i64>, Error> {
    values
        .get("redeem_points")
        .map(|text| {
            text.trim()
                .parse::<i64>()
                .map_err(|_| Error::invalid("redeem_points", "must be a whole number of points"))
        })
        .transpose()
}

/// The summary panel: the lines by product and variant, and, with a quote, shipping,
/// tax and the total the order will be charged.
fn summary(cart: &Cart, quote: Option<&CheckoutQuote>) -> Markup {
    let currency = cart.currency.as_deref().unwrap_or("");
    let amount = |minor: i64| cart_pages::money(minor, currency);
    html! {
        h2 { "Your order" }
        ul.checkout-lines {
            @for line in &cart.lines {
                li {
                    span { (line.quantity) " × " (totals::line_title(line)) }
                    span.amount { (line.total.display()) }
                }
            }
        }
        dl.facts.totals {
            dt { "Subtotal" } dd { (amount(cart.subtotal_minor)) }
            @if cart.adjustments_total_minor != 0 {
                dt { "Discounts and surcharges" } dd { (amount(cart.adjustments_total_minor)) }
            }
            @if let Some(quote) = quote.filter(|q| q.points_redeemed > 0) {
                dt { "Points (" (quote.points_redeemed) ")" }
                dd #summary-points {
                    (amount(quote.cart_adjustments.iter()
                        .filter(|a| a.rule == crate::loyalty::CHECKOUT_RULE)
                        .map(|a| a.amount_minor).sum::<i64>()))
                }
            }
            @match quote {
                Some(quote) => {
                    dt { "Shipping · " (quote.shipping_method_name) } dd #summary-shipping { (amount(quote.shipping_minor)) }
                    @if !quote.prices_include_tax {
                        dt { "Tax (" (super::orders::tax_percent(quote.tax_rate_bp)) ")" } dd #summary-tax { (amount(quote.tax_minor)) }
                    }
                    dt.total { "Total" } dd.total #summary-total data-total-minor=(quote.total_minor) { (amount(quote.total_minor)) }
                    @if quote.prices_include_tax {
                        dt.muted { "Includes VAT (" (super::orders::tax_percent(quote.tax_rate_bp)) ")" } dd.muted #summary-tax { (amount(quote.tax_minor)) }
                    }
                }
                None => {
                    dt.total { "Goods" } dd.total { (amount(cart.total_minor)) }
                }
            }
        }
        @if quote.is_none() {
            p.muted #summary-note { "Choose the country to ship to: shipping, tax and the total show here before you pay." }
        }
        p { a href="/cart" { "Change the cart" } }
    }
}

/// The method options: with a quote, the methods to that country with their prices;
/// without, every method of the rate table.
fn method_options(
    methods: &[(String, String)],
    quote: Option<&CheckoutQuote>,
    chosen: Option<&str>,
    currency: &str,
) -> Markup {
    html! {
        @match quote {
            Some(quote) => {
                @for method in &quote.methods {
                    option value=(method.code) selected[method.code == quote.shipping_method] {
                        (method.name) " · " (cart_pages::money(method.shipping_minor, currency))
                    }
                }
            }
            None => {
                @for (code, name) in methods {
                    option value=(code) selected[chosen == Some(code.as_str())] { (name) }
                }
            }
        }
    }
}

/// `GET /checkout/quote?country=…&shipping_method=…`: the page's script shows the totals
/// in place with this. The same panel the page renders, and the total to expect.
async fn quote_json(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let shopper = match cart_pages::shopper(&state, &session, &headers).await {
        Ok(shopper) => shopper,
        Err(err) => return err.into_response(),
    };
    let Some(cart) = ready_cart(&shopper) else {
        return Error::conflict(None, "the cart cannot be checked out").into_response();
    };
    let mut values = Values::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        values.set(&key, value.trim());
    }
    let currency = cart.currency.as_deref().unwrap_or("");
    let customer_id = shopper.customer.as_ref().map(|c| c.customer_id);
    let (quote, error, error_field) = match quote_for(&state, cart, &values, customer_id).await {
        Some(Ok(quote)) => (Some(quote), None, None),
        Some(Err(Error::Validation(fields))) => (
            None,
            fields.first().map(|f| sentence(&f.message)),
            fields.first().map(|f| f.field.clone()),
        ),
        Some(Err(err)) => return err.into_response(),
        None => (None, None, None),
    };
    axum::Json(serde_json::json!({
        "summary_html": summary(cart, quote.as_ref()).into_string(),
        "methods_html": quote.as_ref().map(|q| method_options(&[], Some(q), None, currency).into_string()),
        "total_minor": quote.as_ref().map(|q| q.total_minor),
        "error": error,
        "error_field": error_field,
    }))
    .into_response()
}

// ---- the page ------------------------------------------------------------------------------

async fn checkout_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    let shopper = match cart_pages::shopper(&state, &session, &headers).await {
        Ok(shopper) => shopper,
        Err(err) => return server_error(&err, "checkout"),
    };
    let Some(cart) = ready_cart(&shopper) else {
        return cart_pages::with_cookies(see_other("/cart"), shopper.cookies);
    };
    let values = match proposed_values(&state, &shopper).await {
        Ok(values) => values,
        Err(err) => return server_error(&err, "checkout"),
    };
    let cart = cart.clone();
    let key = new_checkout_key();
    render(&state, &session, shopper, &cart, values, &key, None, None).await
}

/// The cart when it can be checked out (lines, nothing marked); else the cart page.
fn ready_cart(shopper: &Shopper) -> Option<&Cart> {
    shopper
        .cart
        .as_ref()
        .filter(|cart| !cart.lines.is_empty() && cart.can_check_out)
}

/// A signed-in customer's email and default address, proposed.
async fn proposed_values(state: &AppState, shopper: &Shopper) -> Result<Values, Error> {
    let mut values = Values::default();
    let Some(customer) = &shopper.customer else {
        return Ok(values);
    };
    let account = crate::accounts::account(state, customer.customer_id).await?;
    values.set("email", &account.email);
    let addresses = crate::accounts::addresses::list(state, customer.customer_id).await?;
    if let Some(address) = addresses
        .iter()
        .find(|a| a.is_default)
        .or(addresses.first())
    {
        values.set("name", &address.name);
        values.set("line1", &address.line1);
        values.set("line2", address.line2.as_deref().unwrap_or(""));
        values.set("city", &address.city);
        values.set("region", address.region.as_deref().unwrap_or(""));
        values.set("postal_code", address.postal_code.as_deref().unwrap_or(""));
        values.set("country", &address.country);
    }
    Ok(values)
}

/// Renders the form with the order's totals: `quote` when the caller has one (a total
/// that changed), else computed for the values' country and method.
#[allow(clippy::too_many_arguments)]
async fn render(
    state: &AppState,
    session: &Session,
    shopper: Shopper,
    cart: &Cart,
    mut values: Values,
    checkout_key: &str,
    problem: Option<Problem>,
    quote: Option<CheckoutQuote>,
) -> Response {
    let methods = match orders::api::read_shipping_rates(state).await {
        Ok(rates) => {
            // Each method once, the cheapest first (the one the form proposes).
            let mut methods: Vec<(String, String, i64)> = Vec::new();
            for rate in rates {
                match methods.iter_mut().find(|(code, ..)| *code == rate.code) {
                    Some(method) => method.2 = method.2.min(rate.price_minor),
                    None => methods.push((rate.code, rate.name, rate.price_minor)),
                }
            }
            methods.sort_by_key(|(_, _, cheapest)| *cheapest);
            methods
                .into_iter()
                .map(|(code, name, _)| (code, name))
                .collect::<Vec<_>>()
        }
        Err(err) => return server_error(&err, "checkout"),
    };
    let (countries, home) = match shipping_countries(state).await {
        Ok(found) => found,
        Err(err) => return server_error(&err, "checkout"),
    };
    if values.get("country").is_none()
        && let Some(home) = home
    {
        values.set("country", &home);
    }
    let (status, mut errors) = match problem {
        Some(problem) => (problem.status, problem.errors),
        None => (StatusCode::OK, FormErrors::default()),
    };
    let customer_id = shopper.customer.as_ref().map(|c| c.customer_id);
    // A signed-in shopper with points to spend is offered them.
    let points = match customer_id {
        Some(id) => match crate::loyalty::spendable(state, id).await {
            Ok(spendable) => spendable,
            Err(err) => return server_error(&err, "checkout"),
        },
        None => None,
    };
    let quote = match quote {
        Some(quote) => Some(quote),
        None => match quote_for(state, cart, &values, customer_id).await {
            Some(Ok(quote)) => Some(quote),
            Some(Err(Error::Validation(fields))) => {
                // Said where the shopper chooses: at the country or the method.
                for field in fields {
                    if errors.field(&field.field).is_none() {
                        errors.fields.push(field);
                    }
                }
                None
            }
            Some(Err(err)) => return server_error(&err, "checkout"),
            None => None,
        },
    };
    let status = if status == StatusCode::OK {
        status_of(&errors)
    } else {
        status
    };
    let page = CheckoutPage {
        cart,
        values: &values,
        methods: &methods,
        countries: &countries,
        quote: quote.as_ref(),
        tokenize_url: crate::plugins::payments::checkout_tokenize_url(&state.plugins),
        checkout_key,
        session,
        errors: &errors,
        points: points.as_ref(),
    };
    let items = cart.lines.iter().map(|l| l.quantity).sum();
    let mut response = session::with_cart_items(
        items,
        account_page_response(state, status, "Checkout", page.body()),
    )
    .await;
    // The page's script sends the card to the processor: its origin, and no other, joins
    // the page's policy.
    allow_processor(&mut response, page.tokenize_url.as_deref());
    cart_pages::with_cookies(response, shopper.cookies)
}

struct CheckoutPage<'a> {
    cart: &'a Cart,
    values: &'a Values,
    methods: &'a [(String, String)],
    countries: &'a [(String, String)],
    quote: Option<&'a CheckoutQuote>,
    tokenize_url: Option<String>,
    checkout_key: &'a str,
    session: &'a Session,
    errors: &'a FormErrors,
    /// The signed-in shopper's points, when they have some to spend.
    points: Option<&'a crate::loyalty::Spendable>,
}

impl CheckoutPage<'_> {
    fn body(&self) -> Markup {
        let errors = self.errors;
        let values = self.values;
        let tokenize_url = self.tokenize_url.as_deref();
        let currency = self.cart.currency.as_deref().unwrap_or("");
        let chosen_method = values
            .get("shipping_method")
            .or(self.methods.first().map(|(code, _)| code.as_str()));
        html! {
            header.page-head { h1 { "Checkout" } }
            div.checkout {
                form #checkout-form.panel method="post" action=(CHECKOUT_PATH) data-tokenize-url=[tokenize_url] {
                    (self.session.csrf_input())
                    input type="hidden" name="checkout_key" value=(self.checkout_key);
                    input type="hidden" name="payment_token" value="";
                    input type="hidden" name="expected_total_minor" value=[self.quote.map(|q| q.total_minor)];
                    p #checkout-error.form-alert role="alert" hidden[errors.form.is_none()] {
                        @if let Some(message) = &errors.form { (message) }
                    }
                    @if errors.form.is_none() { (form_alert(errors)) }
                    h2 { "Contact" }
                    (labelled_input("Email", "email", "email", values.get("email"), "email", true, errors))
                    h2 { "Shipping address" }
                    @for (name, label, autocomplete, required) in ADDRESS_FIELDS {
                        (labelled_input(label, name, "text", values.get(name), autocomplete, required, errors))
                    }
                    (self.country_select())
                    h2 { "Shipping method" }
                    div.field {
                        label for="f-shipping_method" { "Method" }
                        select #f-shipping_method name="shipping_method" required
                            aria-invalid=[errors.field("shipping_method").map(|_| "true")] {
                            (method_options(self.methods, self.quote, chosen_method, currency))
                        }
                        @if let Some(message) = errors.field("shipping_method") {
                            p.field-error #f-shipping_method-error { (sentence(message)) }
                        }
                    }
                    @if let Some(points) = self.points {
                        h2 { "Points" }
                        (labelled_input("Points to spend", "redeem_points", "number", values.get("redeem_points"), "off", false, errors))
                        p.muted #points-hint {
                            "You have " (points.balance) " points, worth "
                            (cart_pages::money(points.value_minor, currency))
                            ". Spend at least " (points.min_redeem_points) ", on up to "
                            (points.max_redeem_percent) " % of the goods."
                        }
                    }
                    // Without JavaScript, a change of country or method is shown by this;
                    // the page's script hides it and updates the totals in place.
                    p { button #review-order.button.secondary type="submit" name="step" value="review" { "Update total" } }
                    (self.card_section(tokenize_url))
                }
                section #order-summary.panel.cart-summary aria-live="polite" {
                    (summary(self.cart, self.quote))
                }
            }
            (checkout_script_tag())
        }
    }

    fn country_select(&self) -> Markup {
        country_select(self.countries, self.values.get("country"), self.errors)
    }

    /// The card: shown once the order has a total (the shopper sees it before paying).
    fn card_section(&self, tokenize_url: Option<&str>) -> Markup {
        html! {
            div #card-section hidden[self.quote.is_none()] {
                h2 { "Card" }
                @match tokenize_url {
                    Some(_) => {
                        (card_fields())
                        p { button #place-order.button.primary.wide type="submit" { "Place order" } }
                    }
                    None => {
                        (no_card_payments())
                        p { button #place-order.button.primary.wide type="submit" disabled { "Place order" } }
                    }
                }
            }
        }
    }
}

/// The country list of an address form, `chosen` selected.
pub(super) fn country_select(
    countries: &[(String, String)],
    chosen: Option<&str>,
    errors: &FormErrors,
) -> Markup {
    let chosen = chosen.map(str::to_ascii_uppercase);
    let error = errors.field("country");
    html! {
        div.field {
            label for="f-country" { "Country" }
            select #f-country name="country" autocomplete="shipping country" required
                aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| "f-country-error")] {
                option value="" disabled selected[chosen.is_none()] { "Choose a country" }
                @for (code, name) in countries {
                    option value=(code) selected[chosen.as_deref() == Some(code.as_str())] { (name) }
                }
            }
            @if let Some(message) = error {
                p.field-error #f-country-error { (sentence(message)) }
            }
        }
    }
}

/// The card inputs the page's script reads and sends to the processor. They have no
/// `name`: a browser never posts them to the shop.
pub(super) fn card_fields() -> Markup {
    html! {
        p.muted { "Your card details go straight to our payment processor; they never reach this shop." }
        div.field {
            label for="card-number" { "Card number" }
            input #card-number type="text" inputmode="numeric" autocomplete="cc-number" required;
        }
        div.card-row {
            div.field {
                label for="card-exp-month" { "Expiry month (MM)" }
                input #card-exp-month type="text" inputmode="numeric" autocomplete="cc-exp-month" maxlength="2" required;
            }
            div.field {
                label for="card-exp-year" { "Expiry year (YYYY)" }
                input #card-exp-year type="text" inputmode="numeric" autocomplete="cc-exp-year" maxlength="4" required;
            }
            div.field {
                label for="card-cvc" { "Security code" }
                input #card-cvc type="text" inputmode="numeric" autocomplete="cc-csc" maxlength="4" required;
            }
        }
    }
}

/// Said where the card would be entered when no processor takes it.
pub(super) fn no_card_payments() -> Markup {
    html! {
        p.form-alert role="status" { "This shop cannot take card payments right now. Please try again later." }
    }
}

/// The page's script, pinned by its integrity hash (a page that takes a card carries it).
pub(super) fn checkout_script_tag() -> Markup {
    html! {
        script src=(crate::http::security::checkout_script().path) integrity=(crate::http::security::checkout_script().integrity) defer {}
    }
}

/// The processor's origin, which a page that takes a card lets its script reach: its
/// response's extension for the security headers.
pub(super) fn allow_processor(response: &mut Response, tokenize_url: Option<&str>) {
    if let Some(origin) = tokenize_url.and_then(crate::http::security::origin_of) {
        response
            .extensions_mut()
            .insert(crate::http::security::ExtraOrigins(vec![origin]));
    }
}

// ---- placing the order -------------------------------------------------------------------

async fn checkout_submit(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let mut shopper = match cart_pages::shopper(&state, &session, &headers).await {
        Ok(shopper) => shopper,
        Err(err) => return server_error(&err, "checkout"),
    };
    let key = posted_checkout_key(&form);
    let Some(cart) = shopper.cart.clone() else {
        return cart_pages::with_cookies(see_other("/cart"), shopper.cookies);
    };
    let mut values = Values::default();
    for name in ["email", "shipping_method", "country", "redeem_points"]
        .into_iter()
        .chain(ADDRESS_FIELDS.iter().map(|(name, ..)| *name))
    {
        values.set(name, form.get(name).trim());
    }
    let Some(key) = key else {
        // A form this page did not render (or an old one): show a fresh one.
        let problem = Problem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors: form_error(
                "The form had expired. Please check the details and place the order again.",
            ),
        };
        return render(
            &state,
            &session,
            shopper,
            &cart,
            values,
            &new_checkout_key(),
            Some(problem),
            None,
        )
        .await;
    };
    if form.get("step") == "review" {
        // "Update total": the same form with the totals for the chosen country.
        return render(&state, &session, shopper, &cart, values, &key, None, None).await;
    }
    let (token, expected_total, redeem_points) = match placing_fields(&form, &values) {
        Ok(fields) => fields,
        Err(errors) => {
            let problem = Problem {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                errors,
            };
            return render(
                &state,
                &session,
                shopper,
                &cart,
                values,
                &key,
                Some(problem),
                None,
            )
            .await;
        }
    };
    let optional = |name: &str| {
        let value = form.get(name).trim();
        (!value.is_empty()).then(|| value.to_owned())
    };
    let request = CheckoutRequest {
        email: Some(form.get("email").trim().to_owned()),
        shipping_address: ShippingAddress {
            name: form.get("name").trim().to_owned(),
            line1: form.get("line1").trim().to_owned(),
            line2: optional("line2"),
            city: form.get("city").trim().to_owned(),
            region: optional("region"),
            postal_code: form.get("postal_code").trim().to_owned(),
            country: form.get("country").trim().to_uppercase(),
        },
        shipping_method: form.get("shipping_method").trim().to_owned(),
        payment_token: Some(token),
        expected_total_minor: Some(expected_total),
        redeem_points,
    };
    let placed = orders::checkout(&state, &cart.id, shopper.customer.as_ref(), &key, request).await;
    match placed {
        Ok((order, _)) => {
            if shopper.customer.is_none() {
                cart_pages::forget_guest_cart(&state.config, &mut shopper.cookies);
                let cookie = session::session_cookie(
                    &state.config,
                    PLACED_COOKIE,
                    cart.id.clone(),
                    CONFIRMATION_PATH,
                    SameSite::Lax,
                    Some(PLACED_COOKIE_MAX_AGE_SECS),
                );
                session::add_cookie(&mut shopper.cookies, &cookie);
            }
            cart_pages::forget_count(&state.config, &mut shopper.cookies);
            let location = format!("{CONFIRMATION_PATH}/{}", order.number);
            // A purchase, for recommendations (with the visitor's consent).
            let slugs: Vec<String> = cart.lines.iter().map(|l| l.product_slug.clone()).collect();
            let cookie = super::analytics::record_slugs(
                &state,
                &session,
                &headers,
                crate::recommendations::Behaviour::Purchased,
                &slugs,
            )
            .await;
            super::analytics::with_cookie(
                cart_pages::with_cookies(see_other(&location), shopper.cookies),
                cookie,
            )
        }
        Err(Error::TotalChanged(quote)) => {
            // Nothing was placed or charged: the form again with the new total.
            let currency = cart.currency.as_deref().unwrap_or("");
            let problem = Problem {
                status: StatusCode::CONFLICT,
                errors: form_error(&format!(
                    "The total changed from {} to {} since it was shown (a price, a discount or a shipping rate changed). Nothing was charged: please check it and place the order again.",
                    cart_pages::money(expected_total, currency),
                    cart_pages::money(quote.total_minor, currency),
                )),
            };
            render(
                &state,
                &session,
                shopper,
                &cart,
                values,
                &key,
                Some(problem),
                Some(*quote),
            )
            .await
        }
        Err(err) => {
            let Some((problem, same_order)) = problem_of(&err) else {
                return server_error(&err, "checkout");
            };
            let key = if same_order { key } else { new_checkout_key() };
            // The cart as it is now (a decline opened it again; a retry keeps it ordered).
            let cart = match crate::cart::get(&state, &cart.id, shopper.customer.as_ref()).await {
                Ok(current) => current,
                Err(_) => cart,
            };
            render(
                &state,
                &session,
                shopper,
                &cart,
                values,
                &key,
                Some(problem),
                None,
            )
            .await
        }
    }
}

/// The adapter's reason (a sentence of its own, or a few words) and what to do next.
fn declined_message(reason: &str) -> String {
    let reason = reason.trim().trim_end_matches('.');
    let reason = if reason.is_empty() {
        "Your payment was declined".to_owned()
    } else if reason.to_lowercase().contains("declined") {
        reason.to_owned()
    } else {
        format!("Your payment was declined: {reason}")
    };
    let mut text = super::account::sentence(&reason);
    if reason.to_lowercase().contains("another card") {
        text.push_str(" Nothing was charged.");
    } else {
        text.push_str(" Nothing was charged; please try another card.");
    }
    text
}

fn form_error(message: &str) -> FormErrors {
    FormErrors {
        fields: Vec::new(),
        form: Some(message.to_owned()),
    }
}

/// The API's field errors as an address form's: the API names address fields
/// `shipping_address.<name>`, the form `<name>`.
pub(super) fn address_form_errors(fields: &[FieldError]) -> Vec<FieldError> {
    fields
        .iter()
        .map(|f| {
            let name = f
                .field
                .strip_prefix("shipping_address.")
                .unwrap_or(&f.field);
            FieldError::new(name.to_owned(), f.message.clone())
        })
        .collect()
}

/// What the form says about a failed checkout, and whether the form keeps its key (a
/// retry that must complete the same order) rather than getting a new one. `None` for a
/// server error.
fn problem_of(err: &Error) -> Option<(Problem, bool)> {
    match err {
        Error::Validation(fields) => {
            let fields = address_form_errors(fields);
            let payment = fields.iter().find(|f| f.field == "payment_token").cloned();
            Some((
                Problem {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    errors: FormErrors {
                        form: payment.map(|_| {
                            "Your card could not be used. Please enter it again.".to_owned()
                        }),
                        fields,
                    },
                },
                false,
            ))
        }
        Error::PaymentDeclined { reason, .. } => Some((
            Problem {
                status: StatusCode::PAYMENT_REQUIRED,
                errors: form_error(&declined_message(reason)),
            },
            false,
        )),
        Error::Unavailable(_) => Some((
            Problem {
                status: StatusCode::SERVICE_UNAVAILABLE,
                errors: form_error(
                    "The payment could not be completed just now. Your items are held for you: please place the order again.",
                ),
            },
            // The same key: the retry completes the same order.
            true,
        )),
        Error::Conflict { message, .. } => Some((
            Problem {
                status: StatusCode::CONFLICT,
                errors: form_error(&super::account::sentence(message)),
            },
            false,
        )),
        _ => None,
    }
}

// ---- confirmation ----------------------------------------------------------------------------

async fn confirmation_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(number)) = path else {
        return super::catalog::not_found_page().into_response();
    };
    let customer = match session::current_customer(&state, &session).await {
        Ok(customer) => customer,
        Err(err) => return server_error(&err, "confirmation"),
    };
    let mut found = match &customer {
        Some(customer) => orders::get_for_customer(&state, customer.customer_id, &number).await,
        None => Err(Error::not_found("order")),
    };
    if matches!(found, Err(Error::NotFound(_)))
        && let Some(cart_id) = session::request_cookie(&headers, PLACED_COOKIE)
    {
        found = orders::get_for_cart(&state, cart_id, &number).await;
    }
    let order = match found {
        Ok(order) => order,
        Err(Error::NotFound(_)) => return super::catalog::not_found_page().into_response(),
        Err(err) => return server_error(&err, "confirmation"),
    };
    let body = html! {
        header.page-head {
            h1 { "Thank you for your order" }
            p { "Your order number is " strong #order-number { (order.number) } "." }
        }
        // Promised only when a channel sends email (the notifications work routes
        // `order.placed` to it).
        @if let Some(email) = order.email.as_ref().filter(|_| state.plugins.has_channel("email")) {
            p.muted { "A confirmation is on its way to " (email) "." }
        }
        (order_details(&order))
        @if customer.is_some() {
            p { a href={ "/account/orders/" (order.number) } { "See this order in your account" } }
        }
        p { a.button href="/" { "Continue shopping" } }
    };
    session::with_cart_items(
        0,
        account_page_response(&state, StatusCode::OK, "Order placed", body),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decline_reasons_read_once() {
        assert_eq!(
            declined_message("Your card was declined. Please use another card."),
            "Your card was declined. Please use another card. Nothing was charged."
        );
        assert_eq!(
            declined_message("insufficient funds"),
            "Your payment was declined: insufficient funds. Nothing was charged; please try another card."
        );
        assert_eq!(
            declined_message(""),
            "Your payment was declined. Nothing was charged; please try another card."
        );
    }

    #[test]
    fn only_keys_this_page_makes_are_taken() {
        let key = new_checkout_key();
        let form = Form::parse(format!("checkout_key={key}").as_bytes());
        assert_eq!(posted_checkout_key(&form), Some(key));
        for bad in ["", "web-", "other-key", "web-a%20b", "web-a.b"] {
            let form = Form::parse(format!("checkout_key={bad}").as_bytes());
            assert_eq!(posted_checkout_key(&form), None, "{bad}");
        }
    }
}
