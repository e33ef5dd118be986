//! The customer's subscriptions in the storefront: the list, and each subscription with
//! its items, the next renewal's date and cost, past renewals with their orders, and a
//! form for every change the API offers that its state allows: skip and unskip, pause
//! (until a date, or until resumed) and resume, renew now, move the date, how often,
//! what it brings (a quantity, another size or flavour of the product, an item taken
//! out), where it goes (typed in, or a saved address), a new card, and cancel with a
//! reason. Each form posts one [`Action`] through [`crate::subscriptions::act`], the
//! API's own path; a refusal is shown on the page with the API's status (409 for what
//! the state does not allow, 422 for the input, 402 for a declined card, 503 when the
//! processor cannot answer).
//!
//! The new card never reaches the shop: as on the checkout page, its inputs have no
//! `name`, and the page's script (`/assets/checkout.js`, pinned in the page's policy)
//! sends it from the browser to the processor and posts only the token it answers.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};

use super::account::{
    Form, FormErrors, account_page_response, labelled_input, sentence, server_error,
};
use super::addresses::one_line;
use super::cart::money;
use super::checkout::{
    ADDRESS_FIELDS, allow_processor, card_fields, checkout_script_tag, country_select,
    no_card_payments, shipping_countries,
};
use crate::accounts::addresses::{self, Address};
use crate::app::AppState;
use crate::error::{Error, FieldError};
use crate::http::session::{Customer, Session, see_other};
use crate::orders::ShippingAddress;
use crate::subscriptions::{
    self, Action, Choices, ItemInput, Status, Subscription, SubscriptionItem,
};

const SUBSCRIPTIONS: &str = "/account/subscriptions";
/// The most items a subscription holds (the API's limit): the item fields read.
const MAX_ITEMS: usize = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SUBSCRIPTIONS, get(list_page))
        .route("/account/subscriptions/{number}", get(detail_page))
        .route(
            "/account/subscriptions/{number}/actions",
            post(action_submit),
        )
}

fn status_text(status: Status) -> &'static str {
    match status {
        Status::Active => "active",
        Status::Paused => "paused",
        Status::Cancelled => "cancelled",
    }
}

/// `30d` → "every 30 days".
pub(super) fn every(interval: &str) -> String {
    let (count, unit) = interval.split_at(interval.len().saturating_sub(1));
    let unit = match (unit, count) {
        ("d", "1") => "day",
        ("d", _) => "days",
        ("w", "1") => "week",
        ("w", _) => "weeks",
        ("m", "1") => "month",
        _ => "months",
    };
    if count == "1" {
        format!("every {unit}")
    } else {
        format!("every {count} {unit}")
    }
}

/// The options of an interval `<select>`, each as "every …", `chosen` selected.
pub(super) fn interval_options(intervals: &[String], chosen: Option<&str>) -> Markup {
    html! {
        @for interval in intervals {
            option value=(interval) selected[chosen == Some(interval.as_str())] { (every(interval)) }
        }
    }
}

fn date(text: &str) -> &str {
    text.get(..10).unwrap_or(text)
}

async fn list_page(State(state): State<AppState>, Customer(customer): Customer) -> Response {
    let list = match subscriptions::list_for_customer(&state, customer.customer_id).await {
        Ok(list) => list,
        Err(err) => return server_error(&err, "subscriptions"),
    };
    let body = html! {
        header.page-head {
            p { a href="/account" { "Account" } }
            h1 { "Subscriptions" }
        }
        @if list.is_empty() {
            section.message {
                p { "You have no subscriptions. Choose “Subscribe” on a product to have it delivered regularly." }
                p { a.button.primary href="/" { "Start shopping" } }
            }
        } @else {
            table.cart-lines.subscriptions {
                thead { tr {
                    th scope="col" { "Subscription" }
                    th scope="col" { "Delivered" }
                    th scope="col" { "Status" }
                    th scope="col" { "Next delivery" }
                } }
                tbody {
                    @for sub in &list {
                        tr {
                            td {
                                a.subscription-link href={ (SUBSCRIPTIONS) "/" (sub.number) } { (sub.number) }
                                @for item in &sub.items { br; span.muted { (item.quantity) " × " (item.title) } }
                            }
                            td { (every(&sub.interval)) }
                            td { (status_text(sub.status)) }
                            td {
                                @if sub.status == Status::Active {
                                    (date(&sub.next_renewal_at))
                                    @if sub.skip_next { br; span.muted { "(skipped)" } }
                                } @else { "—" }
                            }
                        }
                    }
                }
            }
        }
    };
    account_page_response(&state, StatusCode::OK, "Subscriptions", body).await
}

/// What a `done=` word in the address says happened.
fn notice(query: Option<&str>) -> Option<&'static str> {
    let done = form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "done")
        .map(|(_, value)| value.into_owned())?;
    Some(match done.as_str() {
        "skip" => "The next delivery is skipped.",
        "unskip" => "The next delivery is back on.",
        "pause" => "The subscription is paused.",
        "pause_until" => {
            "The subscription is paused until the date shown; then it is active again."
        }
        "resume" => "The subscription is active again.",
        "renew_now" => "Your next delivery is on its way to being ordered now.",
        "cancel" => "The subscription is cancelled.",
        "change" => "The next delivery date was changed.",
        "change_interval" => "How often it is delivered was changed.",
        "change_items" => "What you get was changed, from the next delivery on.",
        "change_address" => "The next deliveries go to the new address.",
        "replace_payment_method" => "The next deliveries are paid with the new card.",
        _ => return None,
    })
}

async fn detail_page(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(Path(number)) = path else {
        return super::catalog::not_found_page().into_response();
    };
    let done = notice(query.as_deref());
    render(&state, customer.customer_id, &session, &number, done, None).await
}

/// An action the API refused, as the page shows it.
struct Refusal {
    status: StatusCode,
    message: String,
    /// The address typed in, shown again with its fields' problems.
    address: Option<(AddressValues, FormErrors)>,
}

/// The subscription's page, with what was just done or the refusal of what was not.
async fn render(
    state: &AppState,
    customer_id: i64,
    session: &Session,
    number: &str,
    done: Option<&str>,
    refusal: Option<Refusal>,
) -> Response {
    let page = match Page::load(state, customer_id, session, number).await {
        Ok(page) => page,
        Err(Error::NotFound(_)) => return super::catalog::not_found_page().into_response(),
        Err(err) => return server_error(&err, "subscription"),
    };
    let status = refusal.as_ref().map_or(StatusCode::OK, |r| r.status);
    let body = page.body(done, refusal.as_ref());
    let title = format!("Subscription {number}");
    let mut response = account_page_response(state, status, &title, body).await;
    // The card form's script sends the card to the processor: its origin joins the policy.
    if page.takes_card() {
        allow_processor(&mut response, page.tokenize_url.as_deref());
    }
    response
}

/// The address form's values by field name.
#[derive(Default)]
struct AddressValues(Vec<(&'static str, String)>);

impl AddressValues {
    fn of(address: Option<&ShippingAddress>) -> AddressValues {
        let Some(a) = address else {
            return AddressValues::default();
        };
        AddressValues(vec![
            ("name", a.name.clone()),
            ("line1", a.line1.clone()),
            ("line2", a.line2.clone().unwrap_or_default()),
            ("city", a.city.clone()),
            ("region", a.region.clone().unwrap_or_default()),
            ("postal_code", a.postal_code.clone()),
            ("country", a.country.clone()),
        ])
    }

    fn from_form(form: &Form) -> AddressValues {
        let names = ADDRESS_FIELDS.iter().map(|(name, ..)| *name);
        AddressValues(
            names
                .chain(["country"])
                .map(|name| (name, form.get(name).trim().to_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    fn address(&self) -> ShippingAddress {
        let text = |name: &str| self.get(name).unwrap_or("").to_owned();
        ShippingAddress {
            name: text("name"),
            line1: text("line1"),
            line2: self.get("line2").map(str::to_owned),
            city: text("city"),
            region: self.get("region").map(str::to_owned),
            postal_code: text("postal_code"),
            country: text("country").to_ascii_uppercase(),
        }
    }
}

/// The detail page: the subscription and what its forms offer.
struct Page<'a> {
    sub: Subscription,
    choices: Choices,
    /// The countries the shop ships to, by name.
    countries: Vec<(String, String)>,
    /// The customer's saved addresses, to ship to one of them.
    saved: Vec<Address>,
    /// Where the card form's script sends the card; none: no card can be taken now.
    tokenize_url: Option<String>,
    session: &'a Session,
    action_url: String,
}

impl<'a> Page<'a> {
    async fn load(
        state: &AppState,
        customer_id: i64,
        session: &'a Session,
        number: &str,
    ) -> Result<Page<'a>, Error> {
        let sub = subscriptions::get(state, number, Some(customer_id)).await?;
        let choices = subscriptions::choices(state, number, Some(customer_id)).await?;
        let (countries, _) = shipping_countries(state).await?;
        let saved = addresses::list(state, customer_id).await?;
        Ok(Page {
            action_url: format!("{SUBSCRIPTIONS}/{}/actions", sub.number),
            sub,
            choices,
            countries,
            saved,
            tokenize_url: crate::plugins::payments::checkout_tokenize_url(&state.plugins),
            session,
        })
    }

    fn open(&self) -> bool {
        self.sub.status != Status::Cancelled
    }

    /// The page carries the card form with its script.
    fn takes_card(&self) -> bool {
        self.open() && self.tokenize_url.is_some()
    }

    fn body(&self, done: Option<&str>, refusal: Option<&Refusal>) -> Markup {
        let sub = &self.sub;
        html! {
            header.page-head {
                p { a href=(SUBSCRIPTIONS) { "Subscriptions" } }
                h1 { "Subscription " span #subscription-number { (sub.number) } }
            }
            @if let Some(done) = done { p.form-notice role="status" { (done) } }
            @if let Some(refusal) = refusal { p.form-alert role="alert" #subscription-problem { (refusal.message) } }
            (self.summary())
            @if self.open() {
                (self.schedule())
                (self.items_form())
                (self.address_forms(refusal.and_then(|r| r.address.as_ref())))
                (self.card_form())
                (self.cancel_form())
            }
            (self.renewals())
        }
    }

    /// A form of the page: the CSRF token, the action, then `fields`.
    fn form(&self, action: &str, fields: Markup) -> Markup {
        html! {
            form method="post" action=(self.action_url) {
                (self.session.csrf_input()) input type="hidden" name="action" value=(action);
                (fields)
            }
        }
    }

    /// A one-button form.
    fn button(&self, action: &str, label: &str) -> Markup {
        html! {
            form.inline method="post" action=(self.action_url) {
                (self.session.csrf_input()) input type="hidden" name="action" value=(action);
                button.button type="submit" { (label) }
            }
        }
    }

    /// Its state, items, where it goes, and what the next delivery costs.
    fn summary(&self) -> Markup {
        let sub = &self.sub;
        html! {
            section.panel.subscription {
                dl.facts {
                    dt { "Status" } dd #subscription-status data-status=(sub.status.as_str()) { (status_text(sub.status)) }
                    dt { "Delivered" } dd #subscription-interval { (every(&sub.interval)) }
                    @if sub.status == Status::Active {
                        dt { "Next delivery" } dd #next-renewal {
                            (date(&sub.next_renewal_at))
                            @if sub.skip_next { " (skipped: the one after it is next)" }
                        }
                    }
                    @if let Some(until) = &sub.paused_until { dt { "Paused until" } dd #paused-until { (date(until)) } }
                    @if let Some(a) = &sub.shipping_address {
                        dt { "Ships to" } dd #ships-to {
                            (a.name) ", " (a.line1) @if let Some(line2) = &a.line2 { ", " (line2) }
                            ", " (a.postal_code) " " (a.city) ", " (a.country)
                        }
                    }
                    @if let Some(retry) = &sub.retry_at {
                        dt { "Payment" } dd.badge.badge-low { "Your last renewal was declined; we try again on " (date(retry)) ". A new card retries at once." }
                    }
                    @if let Some(reason) = &sub.cancel_reason { dt { "Cancelled because" } dd { (reason) } }
                }
                table.cart-lines #subscription-items {
                    thead { tr { th scope="col" { "Product" } th scope="col" { "Quantity" } } }
                    tbody { @for item in &sub.items { tr { td { (item.title) br; code.muted { (item.sku) } } td { (item.quantity) } } } }
                }
                @if let Some(next) = &sub.next_renewal {
                    dl.facts #next-renewal-cost {
                        dt { "Goods" } dd { (money(next.goods_minor, &next.currency)) }
                        dt { "Shipping (" (sub.shipping_method) ")" } dd { (money(next.shipping_minor, &next.currency)) }
                        dt { strong { "Next delivery costs" } } dd #next-renewal-total { strong { (money(next.total_minor, &next.currency)) } }
                        @if let Some(problem) = &next.problem { dt.muted { "Note" } dd.muted { (problem) } }
                    }
                }
            }
        }
    }

    /// When it comes: skip, order now, pause (until a date) or resume, the date, how often.
    fn schedule(&self) -> Markup {
        let sub = &self.sub;
        let active = sub.status == Status::Active;
        // The products' intervals, and the one it has now (which staff may have set).
        let mut intervals = self.choices.intervals.clone();
        if !intervals.contains(&sub.interval) {
            intervals.insert(0, sub.interval.clone());
        }
        html! {
            section.panel.subscription-actions {
                h2 { "Change it" }
                div.address-actions {
                    @if active {
                        @if sub.skip_next { (self.button("unskip", "Don't skip the next delivery")) }
                        @else { (self.button("skip", "Skip the next delivery")) }
                        (self.button("renew_now", "Order the next delivery now"))
                    } @else {
                        (self.button("resume", "Resume"))
                    }
                }
                @if active {
                    (self.form("pause", html! {
                        div.field {
                            label for="pause_until" { "Pause until" }
                            input #pause_until type="date" name="until" aria-describedby="pause_until-hint";
                        }
                        p.hint #pause_until-hint { "Leave the date empty to pause it until you resume it." }
                        button.button type="submit" { "Pause" }
                    }))
                }
                (self.form("change", html! {
                    div.field {
                        label for="next_renewal_on" { "Move the next delivery to" }
                        input #next_renewal_on type="date" name="next_renewal_on" required;
                    }
                    button.button type="submit" { "Change the date" }
                }))
                (self.form("change_interval", html! {
                    div.field {
                        label for="interval" { "Deliver" }
                        select #interval name="interval" required {
                            (interval_options(&intervals, Some(&sub.interval)))
                        }
                    }
                    button.button type="submit" { "Change how often" }
                }))
            }
        }
    }

    /// What it brings: each item's quantity and, where its product has others, its
    /// variant. One form: the API replaces the items.
    fn items_form(&self) -> Markup {
        html! {
            section.panel.subscription-items {
                h2 { "Change what you get" }
                (self.form("change_items", html! {
                    @for (i, item) in self.sub.items.iter().enumerate().take(MAX_ITEMS) {
                        (self.item_fields(i, item))
                    }
                    p.hint { "A quantity of 0 takes the item out; at least one item stays." }
                    button.button type="submit" { "Change what you get" }
                }))
            }
        }
    }

    fn item_fields(&self, i: usize, item: &SubscriptionItem) -> Markup {
        let variants = self
            .choices
            .items
            .iter()
            .find(|c| c.sku == item.sku)
            .map_or(&[][..], |c| c.variants.as_slice());
        let sku_field = format!("item{i}_sku");
        let quantity_field = format!("item{i}_quantity");
        html! {
            fieldset.variants {
                legend { (item.title) }
                div.field.quantity-field {
                    label for=(quantity_field) { "Quantity" }
                    input id=(quantity_field) name=(quantity_field) type="number" value=(item.quantity)
                        min="0" max="999" inputmode="numeric" required;
                }
                @if variants.len() > 1 {
                    div.field {
                        label for=(sku_field) { "Size or flavour" }
                        select id=(sku_field) name=(sku_field) {
                            @for (sku, title) in variants {
                                option value=(sku) selected[*sku == item.sku] { (title) }
                            }
                        }
                    }
                } @else {
                    input type="hidden" name=(sku_field) value=(item.sku);
                }
            }
        }
    }

    /// Where it goes: an address typed in (the subscription's, or the one just refused
    /// with its problems), or one of the customer's saved addresses.
    fn address_forms(&self, typed: Option<&(AddressValues, FormErrors)>) -> Markup {
        let current = (
            AddressValues::of(self.sub.shipping_address.as_ref()),
            FormErrors::default(),
        );
        let (values, errors) = typed.unwrap_or(&current);
        html! {
            section.panel.subscription-address {
                h2 { "Where it goes" }
                (self.form("change_address", html! {
                    @for (name, label, autocomplete, required) in ADDRESS_FIELDS {
                        (labelled_input(label, name, "text", values.get(name), autocomplete, required, errors))
                    }
                    (country_select(&self.countries, values.get("country"), errors))
                    button.button type="submit" { "Ship to this address" }
                }))
                @if !self.saved.is_empty() {
                    (self.form("use_address", html! {
                        div.field {
                            label for="saved_address" { "Or one of your saved addresses" }
                            select #saved_address name="address_id" required {
                                @for address in &self.saved {
                                    option value=(address.id) selected[address.is_default] {
                                        (address.name) ", " (one_line(address))
                                    }
                                }
                            }
                        }
                        button.button type="submit" { "Ship to the saved address" }
                    }))
                }
            }
        }
    }

    /// A new card: the page's script sends it to the processor and posts the token.
    fn card_form(&self) -> Markup {
        html! {
            section.panel.subscription-card {
                h2 { "Card" }
                @match self.tokenize_url.as_deref() {
                    Some(url) => {
                        form #card-form method="post" action=(self.action_url) data-tokenize-url=(url) {
                            (self.session.csrf_input())
                            input type="hidden" name="action" value="replace_payment_method";
                            input type="hidden" name="payment_token" value="";
                            p #card-error.form-alert role="alert" hidden {}
                            (card_fields())
                            button #replace-card.button type="submit" { "Use this card" }
                        }
                        (checkout_script_tag())
                    }
                    None => (no_card_payments()),
                }
            }
        }
    }

    fn cancel_form(&self) -> Markup {
        html! {
            section.panel.subscription-cancel {
                h2 { "Cancel" }
                (self.form("cancel", html! {
                    div.field {
                        label for="reason" { "Why are you cancelling?" }
                        input #reason type="text" name="reason" maxlength="200" required;
                    }
                    button.button type="submit" { "Cancel the subscription" }
                }))
            }
        }
    }

    fn renewals(&self) -> Markup {
        let renewals = &self.sub.renewals;
        html! {
            @if !renewals.is_empty() {
                section.panel {
                    h2 { "Past deliveries" }
                    table.cart-lines.renewals {
                        thead { tr { th scope="col" { "Date" } th scope="col" { "What happened" } th scope="col" { "Order" } } }
                        tbody {
                            @for renewal in renewals {
                                tr {
                                    td { (date(&renewal.at)) }
                                    td {
                                        (match renewal.outcome.as_str() {
                                            "paid" => "ordered and paid",
                                            "placed" => "ordered, payment in progress",
                                            "declined" => "payment declined",
                                            "skipped" => "skipped",
                                            "out_of_stock" => "skipped: out of stock",
                                            other => other,
                                        })
                                        @if let Some(message) = &renewal.message { br; span.muted { (message) } }
                                    }
                                    td { @if let Some(order) = &renewal.order_number { a href={ "/account/orders/" (order) } { (order) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---- the forms' actions -------------------------------------------------------------

/// What a form asks for: the API's action, and the `done=` word of its success.
struct Posted {
    action: Action,
    done: &'static str,
}

fn change(
    next_renewal_on: Option<String>,
    interval: Option<String>,
    items: Option<Vec<ItemInput>>,
    shipping_address: Option<ShippingAddress>,
) -> Action {
    Action::Change {
        next_renewal_on,
        interval,
        items,
        shipping_address: shipping_address.map(Box::new),
    }
}

/// The form's action as the API's (None for a form this page does not make). What the
/// form itself gets wrong is a validation error of field `action`, shown as it is.
async fn posted(state: &AppState, customer_id: i64, form: &Form) -> Result<Option<Posted>, Error> {
    let text = |name: &str| Some(form.get(name).trim().to_owned()).filter(|v| !v.is_empty());
    let (action, done) = match form.get("action") {
        "skip" => (Action::Skip, "skip"),
        "unskip" => (Action::Unskip, "unskip"),
        "pause" => {
            let until = text("until");
            let done = if until.is_some() {
                "pause_until"
            } else {
                "pause"
            };
            (Action::Pause { until }, done)
        }
        "resume" => (Action::Resume, "resume"),
        "renew_now" => (Action::RenewNow, "renew_now"),
        "cancel" => {
            let reason = form.get("reason").to_owned();
            (Action::Cancel { reason }, "cancel")
        }
        "change" => {
            let date = form.get("next_renewal_on").trim().to_owned();
            (change(Some(date), None, None, None), "change")
        }
        "change_interval" => {
            let interval = form.get("interval").trim().to_owned();
            (change(None, Some(interval), None, None), "change_interval")
        }
        "change_items" => (
            change(None, None, Some(items_from(form)?), None),
            "change_items",
        ),
        "change_address" => {
            let address = AddressValues::from_form(form).address();
            (change(None, None, None, Some(address)), "change_address")
        }
        "use_address" => {
            let address = saved_address(state, customer_id, form.get("address_id")).await?;
            (change(None, None, None, Some(address)), "change_address")
        }
        "replace_payment_method" => (card_from(form)?, "replace_payment_method"),
        _ => return Ok(None),
    };
    Ok(Some(Posted { action, done }))
}

/// The items of "Change what you get": `item{i}_sku` and `item{i}_quantity` for each; a
/// quantity of 0 takes the item out (the API answers when none is left).
fn items_from(form: &Form) -> Result<Vec<ItemInput>, Error> {
    let mut items = Vec::new();
    for i in 0..MAX_ITEMS {
        let sku = form.get(&format!("item{i}_sku")).trim();
        if sku.is_empty() {
            break;
        }
        let Ok(quantity) = form.get(&format!("item{i}_quantity")).trim().parse::<i64>() else {
            return Err(Error::invalid(
                "action",
                format!("please enter the quantity of {sku} as a whole number (0 takes it out)"),
            ));
        };
        if quantity != 0 {
            items.push(ItemInput {
                sku: sku.to_owned(),
                quantity,
            });
        }
    }
    Ok(items)
}

/// One of the customer's saved addresses, as a shipping address.
async fn saved_address(
    state: &AppState,
    customer_id: i64,
    id: &str,
) -> Result<ShippingAddress, Error> {
    match addresses::get(state, customer_id, id.trim()).await {
        Ok(a) => Ok(ShippingAddress {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code.unwrap_or_default(),
            country: a.country,
        }),
        Err(Error::NotFound(_)) => Err(Error::invalid(
            "action",
            "that saved address no longer exists; please choose another",
        )),
        Err(err) => Err(err),
    }
}

/// The new card's token, which the page's script put in the form.
fn card_from(form: &Form) -> Result<Action, Error> {
    let token = form.get("payment_token").trim();
    if token.is_empty() {
        return Err(Error::invalid(
            "action",
            "please enter your card details (the page needs JavaScript to send them to our payment processor)",
        ));
    }
    Ok(Action::ReplacePaymentMethod {
        payment_token: token.to_owned(),
    })
}

/// The SKUs a change sends, in its order (the API names its items by position).
fn sent_skus(action: &Action) -> Vec<String> {
    match action {
        Action::Change {
            items: Some(items), ..
        } => items.iter().map(|item| item.sku.clone()).collect(),
        _ => Vec::new(),
    }
}

/// How the page shows a refusal; None for an error that is not one (a server error).
fn refusal_of(err: &Error, form: &Form, skus: &[String]) -> Option<Refusal> {
    let action = form.get("action");
    let (status, message) = match err {
        Error::Conflict { message, .. } => (StatusCode::CONFLICT, sentence(message)),
        Error::Validation(fields) if action == "change_address" => {
            return Some(address_refusal(fields, form));
        }
        Error::Validation(fields) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            fields
                .iter()
                .map(|f| field_text(&f.field, &f.message, skus))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Error::PaymentDeclined { reason, .. } => (StatusCode::PAYMENT_REQUIRED, card_refused(reason)),
        Error::Unavailable(_) if action == "replace_payment_method" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Our payment processor could not save the card just now; the card on file is unchanged. Please try again in a moment.".to_owned(),
        ),
        _ => return None,
    };
    Some(Refusal {
        status,
        message,
        address: None,
    })
}

/// The processor's reason a new card was refused, and what to do next.
fn card_refused(reason: &str) -> String {
    let reason = reason.trim().trim_end_matches('.');
    let text = if reason.is_empty() {
        "The card was not accepted".to_owned()
    } else if reason.to_lowercase().contains("declined") {
        reason.to_owned()
    } else {
        format!("The card was not accepted: {reason}")
    };
    format!(
        "{} The card on file is unchanged; please try another card.",
        sentence(&text)
    )
}

/// A refused address: the form again as typed, each problem at its field.
fn address_refusal(fields: &[FieldError], form: &Form) -> Refusal {
    let fields = super::checkout::address_form_errors(fields);
    Refusal {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: "The address was not changed: please correct the marked fields.".to_owned(),
        address: Some((
            AddressValues::from_form(form),
            FormErrors { fields, form: None },
        )),
    }
}

/// A field's problem as a sentence naming what the shopper sees ("The new date must be
/// today or later."); `skus` are the items sent, the API naming them by position.
fn field_text(field: &str, message: &str, skus: &[String]) -> String {
    let item = |suffix: &str| {
        field
            .strip_prefix("items[")?
            .strip_suffix(suffix)?
            .parse::<usize>()
            .ok()
            .and_then(|i| skus.get(i))
    };
    let label = match field {
        "action" => return sentence(message),
        "until" => "The date to pause until".to_owned(),
        "next_renewal_on" => "The new date".to_owned(),
        "interval" => "How often".to_owned(),
        "items" => "A subscription".to_owned(),
        "reason" => "The reason".to_owned(),
        "payment_token" => "The card".to_owned(),
        _ => match (item("].quantity"), item("].sku")) {
            (Some(sku), _) => format!("The quantity of {sku}"),
            (_, Some(sku)) => sku.clone(),
            _ => match field.strip_prefix("shipping_address.") {
                Some(name) => address_label(name).to_owned(),
                None => field.to_owned(),
            },
        },
    };
    if message.starts_with("must ") || message.starts_with("is ") {
        sentence(&format!("{label} {message}"))
    } else {
        sentence(&format!("{label}: {message}"))
    }
}

/// The label of an address field of the form.
fn address_label(name: &str) -> &str {
    match ADDRESS_FIELDS.iter().find(|(field, ..)| *field == name) {
        Some((_, label, ..)) => label,
        None if name == "country" => "Country",
        None => name,
    }
}

async fn action_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let Ok(Path(number)) = path else {
        return super::catalog::not_found_page().into_response();
    };
    let form = Form::parse(&body);
    let (err, skus) = match posted(&state, customer.customer_id, &form).await {
        Ok(None) => return see_other(&format!("{SUBSCRIPTIONS}/{number}")),
        Ok(Some(Posted { action, done })) => {
            let skus = sent_skus(&action);
            let id = Some(customer.customer_id);
            match subscriptions::act(&state, &customer.pseudonym, &number, id, action).await {
                Ok(_) => return see_other(&format!("{SUBSCRIPTIONS}/{number}?done={done}")),
                Err(err) => (err, skus),
            }
        }
        Err(err) => (err, Vec::new()),
    };
    if let Error::NotFound(_) = err {
        return super::catalog::not_found_page().into_response();
    }
    let Some(refusal) = refusal_of(&err, &form, &skus) else {
        return server_error(&err, "subscription");
    };
    render(
        &state,
        customer.customer_id,
        &session,
        &number,
        None,
        Some(refusal),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_come_only_from_known_words() {
        assert_eq!(
            notice(Some("done=change_items")),
            Some("What you get was changed, from the next delivery on.")
        );
        assert_eq!(notice(Some("done=%3Cscript%3E")), None);
        assert_eq!(notice(None), None);
    }

    #[test]
    fn problems_name_what_the_shopper_sees() {
        let skus = ["MAG-60".to_owned(), "MAG-120".to_owned()];
        assert_eq!(
            field_text("items[1].quantity", "must be between 1 and 999", &skus),
            "The quantity of MAG-120 must be between 1 and 999."
        );
        assert_eq!(
            field_text(
                "items[0].sku",
                "this product is not sold on subscription",
                &skus
            ),
            "MAG-60: this product is not sold on subscription."
        );
        assert_eq!(
            field_text(
                "shipping_address.postal_code",
                "must be up to 16 letters",
                &skus
            ),
            "Postal code must be up to 16 letters."
        );
        assert_eq!(
            field_text("items[7].quantity", "must be between 1 and 999", &skus),
            "Items[7].quantity must be between 1 and 999."
        );
    }

    #[test]
    fn a_refused_card_reads_once() {
        assert_eq!(
            card_refused("The card was declined."),
            "The card was declined. The card on file is unchanged; please try another card."
        );
        assert_eq!(
            card_refused("the payment could not be processed"),
            "The card was not accepted: the payment could not be processed. The card on file is unchanged; please try another card."
        );
    }

    #[test]
    fn a_quantity_of_zero_takes_the_item_out() {
        let form = Form::parse(b"item0_sku=A-1&item0_quantity=2&item1_sku=B-1&item1_quantity=0");
        let items = items_from(&form).unwrap_or_default();
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].sku.as_str(), items[0].quantity), ("A-1", 2));
        let form = Form::parse(b"item0_sku=A-1&item0_quantity=two");
        assert!(items_from(&form).is_err());
    }
}
