//! The customer's addresses in the storefront: the list with the form to add one, an edit
//! page, delete, and "make default". The pages call [`crate::accounts::addresses`]
//! directly (the same checks as the JSON API); every field is decrypted only to be
//! shown to its owner, and escaped by `maud`.
//!
//! Another customer's address (or an id that never existed) is the 404 page, as in the
//! API: the queries filter by the owner.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};

use super::account::{
    ACCOUNT_HOME, Form, FormErrors, account_page_response, form_alert, labelled_input, sentence,
    server_error, status_of,
};
use crate::accounts::addresses::{self, Address, AddressChanges, NewAddress};
use crate::app::AppState;
use crate::error::Error;
use crate::http::session::{Customer, Session, see_other};

const ADDRESSES: &str = "/account/addresses";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(ADDRESSES, get(list_page).post(add_submit))
        .route(
            "/account/addresses/{id}/edit",
            get(edit_page).post(edit_submit),
        )
        .route("/account/addresses/{id}/delete", post(delete_submit))
        .route("/account/addresses/{id}/default", post(default_submit))
}

/// The text fields of the address form, in order: name, label, autocomplete, required.
const FIELDS: [(&str, &str, &str, bool); 9] = [
    ("label", "Label (e.g. Home)", "off", false),
    ("name", "Recipient", "name", true),
    ("line1", "Address line 1", "address-line1", true),
    ("line2", "Address line 2", "address-line2", false),
    ("city", "City", "address-level2", true),
    (
        "region",
        "State, province or county",
        "address-level1",
        false,
    ),
    ("postal_code", "Postal code", "postal-code", false),
    ("country", "Country code", "country", true),
    ("phone", "Phone", "tel", false),
];

/// What the address form shows: the values typed (or stored) by field name.
#[derive(Default)]
struct Values(Vec<(&'static str, String)>);

impl Values {
    fn from_form(form: &Form) -> Values {
        Values(
            FIELDS
                .iter()
                .map(|(name, ..)| (*name, form.get(name).to_owned()))
                .collect(),
        )
    }

    fn from_address(address: &Address) -> Values {
        let or_empty = |value: &Option<String>| value.clone().unwrap_or_default();
        Values(vec![
            ("label", or_empty(&address.label)),
            ("name", address.name.clone()),
            ("line1", address.line1.clone()),
            ("line2", or_empty(&address.line2)),
            ("city", address.city.clone()),
            ("region", or_empty(&address.region)),
            ("postal_code", or_empty(&address.postal_code)),
            ("country", address.country.clone()),
            ("phone", or_empty(&address.phone)),
        ])
    }

    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .map_or("", |(_, value)| value.as_str())
    }
}

/// An optional field of the form: empty means "none".
fn optional(form: &Form, name: &str) -> Option<String> {
    let value = form.get(name).trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn is_checked(form: &Form, name: &str) -> bool {
    !form.get(name).is_empty()
}

/// The errors a form can show; an address-count conflict reads at the top of the form.
fn form_errors(err: &Error) -> Option<FormErrors> {
    match err {
        Error::Conflict {
            message,
            field: None,
        } => Some(FormErrors {
            fields: Vec::new(),
            form: Some(sentence(message)),
        }),
        other => FormErrors::from_error(other),
    }
}

/// The 404 page, not stored by any cache.
fn not_found() -> Response {
    let mut response = super::catalog::not_found_page().into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer to an address call that failed for a reason other than the input.
fn failure(err: &Error, page: &str) -> Response {
    match err {
        Error::NotFound(_) => not_found(),
        // The account was erased or signed out between the check and the write.
        Error::Unauthorized => see_other(crate::http::session::SIGN_IN_PATH),
        _ => server_error(err, page),
    }
}

/// The fields of the address form.
fn address_fields(values: &Values, errors: &FormErrors) -> Markup {
    html! {
        @for (name, label, autocomplete, required) in FIELDS {
            (labelled_input(label, name, "text", Some(values.get(name)), autocomplete, required, errors))
        }
    }
}

pub(super) fn one_line(address: &Address) -> String {
    let mut parts: Vec<&str> = vec![address.line1.as_str()];
    parts.extend(address.line2.as_deref());
    let city = match &address.postal_code {
        Some(code) => format!("{code} {}", address.city),
        None => address.city.clone(),
    };
    let mut text = parts.join(", ");
    text.push_str(", ");
    text.push_str(&city);
    if let Some(region) = &address.region {
        text.push_str(", ");
        text.push_str(region);
    }
    text.push_str(", ");
    text.push_str(&address.country);
    text
}

fn notice(query: Option<&str>) -> Option<&'static str> {
    let done = form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "done")
        .map(|(_, value)| value.into_owned())?;
    match done.as_str() {
        "added" => Some("The address was added."),
        "updated" => Some("The address was saved."),
        "deleted" => Some("The address was deleted."),
        "default" => Some("That address is now your default."),
        _ => None,
    }
}

// ---- the list, with the form to add one ---------------------------------------------

async fn list_page(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    RawQuery(query): RawQuery,
) -> Response {
    let done = notice(query.as_deref());
    list_form(
        &state,
        &session,
        customer.customer_id,
        done,
        &Values::default(),
        false,
        &FormErrors::default(),
    )
    .await
}

async fn list_form(
    state: &AppState,
    session: &Session,
    customer_id: i64,
    done: Option<&str>,
    values: &Values,
    make_default: bool,
    errors: &FormErrors,
) -> Response {
    let list = match addresses::list(state, customer_id).await {
        Ok(list) => list,
        Err(err) => return server_error(&err, "addresses"),
    };
    let csrf = session.csrf_input();
    let body = html! {
        header.page-head {
            p.eyebrow { a href=(ACCOUNT_HOME) { "← Your account" } }
            h1 { "Your addresses" }
        }
        @if let Some(done) = done {
            p.form-notice role="status" { (done) }
        }
        div.account-grid {
            section.panel {
                h2 { "Saved addresses" }
                @if list.is_empty() {
                    p.muted { "You have no saved addresses yet." }
                }
                ul.address-list {
                    @for address in &list {
                        li.address {
                            p {
                                strong { (address.label.as_deref().unwrap_or(&address.name)) }
                                @if address.is_default { " " span.badge.badge-in { "Default" } }
                            }
                            p { (address.name) br; (one_line(address)) }
                            @if let Some(phone) = &address.phone { p.muted { (phone) } }
                            div.address-actions {
                                a.button href=(format!("{ADDRESSES}/{}/edit", address.id)) { "Edit" }
                                @if !address.is_default {
                                    form.inline method="post" action=(format!("{ADDRESSES}/{}/default", address.id)) {
                                        (csrf)
                                        button.button type="submit" { "Make default" }
                                    }
                                }
                                form.inline method="post" action=(format!("{ADDRESSES}/{}/delete", address.id)) {
                                    (csrf)
                                    button.button type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
            section.panel {
                h2 { "Add an address" }
                (form_alert(errors))
                form method="post" action=(ADDRESSES) novalidate {
                    (csrf)
                    (address_fields(values, errors))
                    div.field {
                        label {
                            input type="checkbox" name="is_default" value="1" checked[make_default];
                            " Make this my default address"
                        }
                    }
                    button.button.primary.wide type="submit" { "Add address" }
                }
            }
        }
    };
    account_page_response(state, status_of(errors), "Your addresses", body).await
}

async fn add_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let input = NewAddress {
        label: optional(&form, "label"),
        name: form.get("name").to_owned(),
        line1: form.get("line1").to_owned(),
        line2: optional(&form, "line2"),
        city: form.get("city").to_owned(),
        region: optional(&form, "region"),
        postal_code: optional(&form, "postal_code"),
        country: form.get("country").to_owned(),
        phone: optional(&form, "phone"),
        is_default: is_checked(&form, "is_default"),
    };
    match addresses::create(&state, &customer, input).await {
        Ok(_) => see_other(&format!("{ADDRESSES}?done=added")),
        Err(err) => match form_errors(&err) {
            Some(errors) => {
                list_form(
                    &state,
                    &session,
                    customer.customer_id,
                    None,
                    &Values::from_form(&form),
                    is_checked(&form, "is_default"),
                    &errors,
                )
                .await
            }
            None => failure(&err, "addresses"),
        },
    }
}

// ---- edit -----------------------------------------------------------------------------

async fn edit_page(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return not_found();
    };
    match addresses::get(&state, customer.customer_id, &id).await {
        Ok(address) => {
            edit_form(
                &state,
                &session,
                &address,
                &Values::from_address(&address),
                &FormErrors::default(),
            )
            .await
        }
        Err(err) => failure(&err, "address"),
    }
}

async fn edit_form(
    state: &AppState,
    session: &Session,
    address: &Address,
    values: &Values,
    errors: &FormErrors,
) -> Response {
    let body = html! {
        section.form-card {
            p.eyebrow { a href=(ADDRESSES) { "← Your addresses" } }
            h1 { "Edit address" }
            (form_alert(errors))
            form method="post" action=(format!("{ADDRESSES}/{}/edit", address.id)) novalidate {
                (session.csrf_input())
                (address_fields(values, errors))
                @if address.is_default {
                    p.hint { "This is your default address." }
                } @else {
                    div.field {
                        label {
                            input type="checkbox" name="is_default" value="1";
                            " Make this my default address"
                        }
                    }
                }
                button.button.primary.wide type="submit" { "Save address" }
            }
        }
    };
    account_page_response(state, status_of(errors), "Edit address", body).await
}

async fn edit_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let Ok(Path(id)) = id else {
        return not_found();
    };
    // Checked first, so another customer's id is the 404 page, not a form.
    let current = match addresses::get(&state, customer.customer_id, &id).await {
        Ok(address) => address,
        Err(err) => return failure(&err, "address"),
    };
    let form = Form::parse(&body);
    // Every field is sent by the form: an empty optional field clears it.
    let changes = AddressChanges {
        label: Some(optional(&form, "label")),
        name: Some(Some(form.get("name").to_owned())),
        line1: Some(Some(form.get("line1").to_owned())),
        line2: Some(optional(&form, "line2")),
        city: Some(Some(form.get("city").to_owned())),
        region: Some(optional(&form, "region")),
        postal_code: Some(optional(&form, "postal_code")),
        country: Some(Some(form.get("country").to_owned())),
        phone: Some(optional(&form, "phone")),
        // Unticked keeps the default where it is: an account keeps one.
        is_default: is_checked(&form, "is_default").then_some(true),
    };
    match addresses::update(&state, &customer, &id, changes).await {
        Ok(_) => see_other(&format!("{ADDRESSES}?done=updated")),
        Err(err) => match form_errors(&err) {
            Some(errors) => {
                edit_form(
                    &state,
                    &session,
                    &current,
                    &Values::from_form(&form),
                    &errors,
                )
                .await
            }
            None => failure(&err, "address"),
        },
    }
}

// ---- delete and make default --------------------------------------------------------

async fn delete_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return not_found();
    };
    match addresses::delete(&state, customer.customer_id, &id).await {
        Ok(()) => see_other(&format!("{ADDRESSES}?done=deleted")),
        Err(err) => failure(&err, "address"),
    }
}

async fn default_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return not_found();
    };
    let changes = AddressChanges {
        is_default: Some(true),
        ..AddressChanges::default()
    };
    match addresses::update(&state, &customer, &id, changes).await {
        Ok(_) => see_other(&format!("{ADDRESSES}?done=default")),
        Err(err) => failure(&err, "address"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_come_only_from_known_words() {
        assert_eq!(notice(Some("done=added")), Some("The address was added."));
        assert_eq!(notice(Some("done=%3Cscript%3E")), None);
        assert_eq!(notice(None), None);
    }
}
