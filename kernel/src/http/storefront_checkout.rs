//! Checkout in the storefront: the address, the shipping method and the card, then the
//! confirmation page. The order is [`crate::orders::checkout`]'s, called directly, so the
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
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use cookie::SameSite;
use maud::{Markup, PreEscaped, html};

use super::session::{self, Session, see_other};
use super::storefront_account::{
    Form, FormErrors, account_page_response, form_alert, labelled_input, server_error, status_of,
};
use super::storefront_cart::{self as cart_pages, Shopper};
use super::storefront_orders::order_details;
use crate::app::AppState;
use crate::cart::Cart;
use crate::error::{Error, FieldError};
use crate::orders::{self, CheckoutRequest, ShippingAddress};

const CHECKOUT_PATH: &str = "/checkout";
const CONFIRMATION_PATH: &str = "/checkout/confirmation";
/// The guest's placed cart, for the confirmation page.
const PLACED_COOKIE: &str = "olv_placed";
const PLACED_COOKIE_MAX_AGE_SECS: i64 = 24 * 60 * 60;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(CHECKOUT_PATH, get(checkout_page).post(checkout_submit))
        .route("/checkout/confirmation/{number}", get(confirmation_page))
}

/// The address fields: name, label, autocomplete, required.
const ADDRESS_FIELDS: [(&str, &str, &str, bool); 7] = [
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
    (
        "country",
        "Country code (e.g. NL)",
        "shipping country",
        true,
    ),
];

/// What the form shows: the values typed (or proposed), by field name.
#[derive(Default)]
struct Values(Vec<(String, String)>);

impl Values {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
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
    render(&state, &session, shopper, &cart, &values, &key, None).await
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

async fn render(
    state: &AppState,
    session: &Session,
    shopper: Shopper,
    cart: &Cart,
    values: &Values,
    checkout_key: &str,
    problem: Option<Problem>,
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
    let tokenize_url = crate::plugins::payments::checkout_tokenize_url(&state.plugins);
    let (status, errors) = match problem {
        Some(problem) => (problem.status, problem.errors),
        None => (StatusCode::OK, FormErrors::default()),
    };
    let status = if status == StatusCode::OK {
        status_of(&errors)
    } else {
        status
    };
    let body = checkout_body(
        cart,
        values,
        &methods,
        tokenize_url.as_deref(),
        checkout_key,
        session,
        &errors,
    );
    let items = cart.lines.iter().map(|l| l.quantity).sum();
    let response = session::with_cart_items(
        items,
        account_page_response(state, status, "Checkout", body),
    )
    .await;
    cart_pages::with_cookies(response, shopper.cookies)
}

fn checkout_body(
    cart: &Cart,
    values: &Values,
    methods: &[(String, String)],
    tokenize_url: Option<&str>,
    checkout_key: &str,
    session: &Session,
    errors: &FormErrors,
) -> Markup {
    let currency = cart.currency.as_deref().unwrap_or("");
    let chosen_method = values
        .get("shipping_method")
        .or(methods.first().map(|(code, _)| code.as_str()));
    html! {
        header.page-head { h1 { "Checkout" } }
        div.checkout {
            form #checkout-form.panel method="post" action=(CHECKOUT_PATH) data-tokenize-url=[tokenize_url] {
                (session.csrf_input())
                input type="hidden" name="checkout_key" value=(checkout_key);
                input type="hidden" name="payment_token" value="";
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
                h2 { "Shipping method" }
                div.field {
                    label for="f-shipping_method" { "Method" }
                    select #f-shipping_method name="shipping_method" required {
                        @for (code, name) in methods {
                            option value=(code) selected[chosen_method == Some(code.as_str())] { (name) }
                        }
                    }
                    @if let Some(message) = errors.field("shipping_method") {
                        p.field-error { (message) }
                    }
                    p.muted { "Shipping and tax are added to the total for your address." }
                }
                h2 { "Card" }
                @match tokenize_url {
                    Some(_) => {
                        p.muted { "Your card details go straight to our payment processor; they never reach this shop." }
                        // No `name`: these are never posted to the shop.
                        div.field {
                            label for="card-number" { "Card number" }
                            input #card-number type="text" inputmode="numeric" autocomplete="cc-number" required;
                        }
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
                        p { button #place-order.button.primary.wide type="submit" { "Place order" } }
                    }
                    None => {
                        p.form-alert role="status" { "This shop cannot take card payments right now. Please try again later." }
                        p { button #place-order.button.primary.wide type="submit" disabled { "Place order" } }
                    }
                }
            }
            section.panel.cart-summary {
                h2 { "Your order" }
                ul.checkout-lines {
                    @for line in &cart.lines {
                        li { (line.quantity) " × " (line.title) " " span.amount { (line.total.display()) } }
                    }
                }
                dl.facts {
                    dt { "Subtotal" } dd { (cart_pages::money(cart.subtotal_minor, currency)) }
                    @if cart.adjustments_total_minor != 0 {
                        dt { "Discounts and surcharges" } dd { (cart_pages::money(cart.adjustments_total_minor, currency)) }
                    }
                    dt { strong { "Before shipping and tax" } } dd { strong { (cart_pages::money(cart.total_minor, currency)) } }
                }
                p { a href="/cart" { "Change the cart" } }
            }
        }
        @if tokenize_url.is_some() { script { (PreEscaped(CHECKOUT_SCRIPT)) } }
    }
}

/// Tokenizes the card in the browser, then submits the form with the token only.
const CHECKOUT_SCRIPT: &str = r#"
(function () {
  var form = document.getElementById('checkout-form');
  if (!form) return;
  var errorBox = document.getElementById('checkout-error');
  var button = document.getElementById('place-order');
  var busy = false;
  function value(id) { return document.getElementById(id).value.trim(); }
  function fail(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    button.disabled = false;
    busy = false;
  }
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    if (busy) return;
    busy = true;
    button.disabled = true;
    errorBox.hidden = true;
    var card = {
      number: value('card-number').replace(/[\s-]/g, ''),
      exp_month: parseInt(value('card-exp-month'), 10),
      exp_year: parseInt(value('card-exp-year'), 10),
      cvc: value('card-cvc')
    };
    fetch(form.dataset.tokenizeUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(card)
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; },
        function () { return { ok: false, body: {} }; });
    }).then(function (answer) {
      if (!answer.ok || !answer.body.token) {
        var error = answer.body.error || {};
        fail('Your card could not be checked: ' + (error.message || 'please check the card details') + '.');
        return;
      }
      form.elements['payment_token'].value = answer.body.token;
      // The card inputs have no name: only the token is posted.
      HTMLFormElement.prototype.submit.call(form);
    }).catch(function () {
      fail('The payment processor could not be reached. Please try again.');
    });
  });
})();
"#;

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
    for name in ["email", "shipping_method"]
        .into_iter()
        .chain(ADDRESS_FIELDS.iter().map(|(name, ..)| *name))
    {
        values.set(name, form.get(name).trim());
    }
    let Some(key) = key else {
        // A form this page did not render (or an old one): show a fresh one.
        let key = new_checkout_key();
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
            &values,
            &key,
            Some(problem),
        )
        .await;
    };
    let token = form.get("payment_token").trim();
    if token.is_empty() {
        let problem = Problem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors: form_error(
                "Please enter your card details (the page needs JavaScript to send them to our payment processor).",
            ),
        };
        return render(
            &state,
            &session,
            shopper,
            &cart,
            &values,
            &key,
            Some(problem),
        )
        .await;
    }
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
        payment_token: Some(token.to_owned()),
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
            cart_pages::with_cookies(see_other(&location), shopper.cookies)
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
                &values,
                &key,
                Some(problem),
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
    let mut text = super::storefront_account::sentence(&reason);
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

/// What the form says about a failed checkout, and whether the form keeps its key (a
/// retry that must complete the same order) rather than getting a new one. `None` for a
/// server error.
fn problem_of(err: &Error) -> Option<(Problem, bool)> {
    match err {
        Error::Validation(fields) => {
            // The API names address fields `shipping_address.<name>`; the form, `<name>`.
            let fields: Vec<FieldError> = fields
                .iter()
                .map(|f| {
                    let name = f
                        .field
                        .strip_prefix("shipping_address.")
                        .unwrap_or(&f.field);
                    FieldError::new(name.to_owned(), f.message.clone())
                })
                .collect();
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
        Error::PaymentDeclined(reason) => Some((
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
                errors: form_error(&super::storefront_account::sentence(message)),
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
        return super::storefront::not_found_page().into_response();
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
        Err(Error::NotFound(_)) => return super::storefront::not_found_page().into_response(),
        Err(err) => return server_error(&err, "confirmation"),
    };
    let body = html! {
        header.page-head {
            h1 { "Thank you for your order" }
            p { "Your order number is " strong #order-number { (order.number) } "." }
        }
        @if let Some(email) = &order.email {
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
