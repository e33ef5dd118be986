//! The admin's page frame (header, navigation by role, main), the message pages (403,
//! 404, 500), and the pieces every page uses: forms with errors next to their fields,
//! tables, pagers, money.
//!
//! Every text goes through maud, so it is escaped. Pages never answer JSON.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::error::{Error, FieldError};
use crate::staff::Staff;

/// The sections of the navigation, in order: a staff member sees those whose page their
/// role may open (the permission table decides, through [`super::may`]).
const NAVIGATION: &[(&str, &str)] = &[
    ("Dashboard", "/admin"),
    ("Products", "/admin/products"),
    ("Orders", "/admin/orders"),
    ("Subscriptions", "/admin/subscriptions"),
    ("Customers", "/admin/customers"),
    ("Notifications", "/admin/notifications"),
    ("Campaigns", "/admin/campaigns"),
    ("Recalls", "/admin/recalls"),
    ("Reviews", "/admin/reviews"),
    ("Plugins", "/admin/plugins"),
    ("Staff", "/admin/staff"),
    ("Audit", "/admin/audit"),
    ("Operations", "/admin/operations"),
    ("Imports", "/admin/imports"),
    ("Settings", "/admin/settings"),
];

/// A page of the admin for `staff`: the header with the navigation their role may use,
/// then `body`. `current` is the navigation entry to mark.
pub fn page(staff: &Staff, csrf: Markup, title: &str, current: &str, body: Markup) -> Response {
    page_with_status(StatusCode::OK, staff, csrf, title, current, body)
}

/// [`page`] with a status (422 for a form with problems).
pub fn page_with_status(
    status: StatusCode,
    staff: &Staff,
    csrf: Markup,
    title: &str,
    current: &str,
    body: Markup,
) -> Response {
    let header = html! {
        header.admin-header {
            a.brand href="/admin" { "Olivine admin" }
            nav aria-label="Admin sections" {
                ul {
                    @for (label, href) in NAVIGATION {
                        @if super::may(staff.role, &Method::GET, href) {
                            li { a href=(href) aria-current=[(*href == current).then_some("page")] { (label) } }
                        }
                    }
                }
            }
            div.who {
                span { (staff.email) " · " (staff.role.name()) }
                form method="post" action="/admin/sign-out" {
                    (csrf)
                    button.link type="submit" { "Sign out" }
                }
            }
        }
    };
    document(status, title, header, body)
}

/// A whole HTML document.
fn document(status: StatusCode, title: &str, header: Markup, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) " · Olivine admin" }
                link rel="stylesheet" href=(super::assets::css_path());
            }
            body {
                a.skip href="#main" { "Skip to content" }
                (header)
                main #main { (body) }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// A page without navigation, its body in a card (signing in: nobody is signed in yet).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let header = html! { header.admin-header { span.brand { "Olivine admin" } } };
    document(
        status,
        title,
        header,
        html! { section.form-card { (body) } },
    )
}

/// A page with a message and no navigation (signed out, or for any staff member).
pub fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    let header = html! { header.admin-header { a.brand href="/admin" { "Olivine admin" } } };
    let body = html! {
        section.message {
            p.eyebrow { (status.as_u16()) }
            h1 { (title) }
            p { (text) }
            p { a.button href="/admin" { "Back to the dashboard" } }
        }
    };
    document(status, title, header, body)
}

/// The answer to a page the staff member's role may not use: a page, never JSON.
pub fn forbidden_page(why: &str) -> Response {
    message_page(StatusCode::FORBIDDEN, "Not open to your role", why)
}

pub fn not_found_page() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is nothing at this address. It may have been removed.",
    )
}

pub fn server_error_page() -> Response {
    message_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "This could not be done. Try again in a moment; the log has the details.",
    )
}

/// The page for an error that is not about a form's input: 404, 403, 409, 503, or a
/// logged 500.
pub fn error_page(err: &Error, page: &str) -> Response {
    match err {
        Error::NotFound(_) => not_found_page(),
        Error::Forbidden(why) | Error::ForbiddenBecause { message: why, .. } => forbidden_page(why),
        // A refusal of input that no form shows (a plugin that needs its settings first).
        Error::Validation(fields) => {
            let text: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            message_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "That cannot be done",
                &sentence(&text.join("; ")),
            )
        }
        Error::Conflict { message, .. } => message_page(
            StatusCode::CONFLICT,
            "That cannot be done now",
            &sentence(message),
        ),
        Error::Unavailable(why) => message_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "A service is unavailable",
            &sentence(why),
        ),
        Error::TooManyRequests { .. } => message_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Wait a few minutes, then try again.",
        ),
        _ => {
            tracing::error!(error = %format!("{err:#}"), page, "admin page failed");
            server_error_page()
        }
    }
}

/// A page's path parameters; one that does not parse (`/admin/staff/x`) is the 404 page,
/// where axum's `Path` would answer a plain-text 400.
pub struct PagePath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for PagePath<T>
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PagePath(value)),
            Err(_) => Err(not_found_page()),
        }
    }
}

/// A 303 redirect (after a POST the browser follows it with a GET).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let value = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/admin"));
    response.headers_mut().insert(header::LOCATION, value);
    response
}

/// An order or subscription number as they are made (letters, digits, `-`, at most 32):
/// anything else is not found without asking the database.
pub fn plausible_number(number: &str) -> bool {
    !number.is_empty()
        && number.len() <= 32
        && number
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// "the sku is taken" as "The sku is taken."
pub fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => {
            let rest = chars.as_str().trim_end_matches('.');
            format!("{}{rest}.", first.to_uppercase())
        }
        None => String::new(),
    }
}

// ---- forms ----------------------------------------------------------------------------

/// The fields of a posted form. Missing fields read as empty: the checks name them.
#[derive(Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Form {
        Form(pairs)
    }

    /// A copy of the fields.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.0.clone()
    }

    /// Whether the form was posted from a confirmation page ([`confirm_form`]).
    pub fn confirmed(&self) -> bool {
        self.get("confirm") == "yes"
    }

    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// Every value of `name` (checkboxes).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// What a form shows about a failed submission: a message per field (by the domain's
/// field paths) and one for the whole form.
#[derive(Default, Debug)]
pub struct FormErrors {
    pub fields: Vec<FieldError>,
    pub form: Option<String>,
}

impl FormErrors {
    /// The message of field `name`, or of a part of it (`attributes.ingredients[2].unit`
    /// shows under `attributes.ingredients`).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| {
                f.field == name
                    || f.field
                        .strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
            .map(|f| f.message.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_none()
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.fields.push(FieldError::new(field, message));
    }

    /// The errors a form shows, or `None` for an error that is not about the input.
    pub fn from_error(err: &Error) -> Option<FormErrors> {
        let (fields, form) = match err {
            Error::Validation(fields) => (fields.clone(), None),
            Error::BadRequest { fields, message } if !fields.is_empty() => {
                (fields.clone(), Some(sentence(message)))
            }
            // A conflict names a field the form may not have (`to` of a state change):
            // said at the top too.
            Error::Conflict { message, field } => (
                field
                    .iter()
                    .map(|f| FieldError::new(f.clone(), message.clone()))
                    .collect(),
                Some(sentence(message)),
            ),
            Error::MediaTooLarge { field, message } | Error::UnsupportedFile { field, message } => {
                (vec![FieldError::new(field.clone(), message.clone())], None)
            }
            Error::BadCredential { field, message } => {
                (vec![FieldError::new(*field, *message)], None)
            }
            Error::InvalidCredentials(message) => (Vec::new(), Some(sentence(message))),
            Error::PaymentDeclined { reason, .. } => (Vec::new(), Some(sentence(reason))),
            Error::Unavailable(why) => (Vec::new(), Some(sentence(why))),
            Error::TooManyRequests { retry_after_secs } => (
                Vec::new(),
                Some(format!(
                    "Too many attempts. Try again in {} minutes.",
                    retry_after_secs.div_ceil(60)
                )),
            ),
            _ => return None,
        };
        Some(FormErrors { fields, form })
    }

    /// 422 when there is something to show, else 200.
    pub fn status(&self) -> StatusCode {
        if self.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    }
}

/// The summary at the top of a form with problems.
pub fn form_alert(errors: &FormErrors) -> Markup {
    html! {
        @if let Some(message) = &errors.form {
            p.form-alert role="alert" { (message) }
        } @else if !errors.fields.is_empty() {
            p.form-alert role="alert" { "Please correct the marked fields." }
        }
    }
}

/// The form of a page that asks to confirm a destructive change: it posts `hidden` and
/// `confirm=yes` to `action` (whose handler acts only with it); `button` does it, the
/// link `back` = (href, words) leaves things as they are.
pub fn confirm_form(
    csrf: Markup,
    action: &str,
    hidden: &[(&str, &str)],
    button: &str,
    back: (&str, &str),
) -> Markup {
    html! {
        form method="post" action=(action) {
            (csrf)
            @for (name, value) in hidden {
                input type="hidden" name=(name) value=(value);
            }
            input type="hidden" name="confirm" value="yes";
            div.actions {
                button.button.danger type="submit" { (button) }
                a.button href=(back.0) { (back.1) }
            }
        }
    }
}

/// How a field is drawn.
pub enum Kind<'a> {
    Text,
    Email,
    Password,
    /// A credential to store (a plugin's secret setting): never filled in by the
    /// browser with the staff member's own password.
    Secret,
    Number,
    Date,
    /// A `<textarea>` of this many rows.
    Area(u8),
    /// A `<select>` of (value, label).
    Select(&'a [(&'a str, &'a str)]),
}

/// A labelled field with its error under it; `name` is the domain's field path, so the
/// domain's validation errors land next to the right field.
pub fn field(label: &str, name: &str, kind: Kind<'_>, value: &str, errors: &FormErrors) -> Markup {
    field_with_hint(label, name, kind, value, None, errors)
}

/// [`field`] with a hint under the label.
pub fn field_with_hint(
    label: &str,
    name: &str,
    kind: Kind<'_>,
    value: &str,
    hint: Option<&str>,
    errors: &FormErrors,
) -> Markup {
    let error = errors.field(name);
    let id = field_id(name);
    let error_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let described = match (error.is_some(), hint.is_some()) {
        (true, true) => Some(format!("{error_id} {hint_id}")),
        (true, false) => Some(error_id.clone()),
        (false, true) => Some(hint_id.clone()),
        (false, false) => None,
    };
    let invalid = error.map(|_| "true");
    html! {
        div.field {
            label for=(id) { (label) }
            @if let Some(hint) = hint { p.hint id=(hint_id) { (hint) } }
            @match kind {
                Kind::Area(rows) => {
                    textarea id=(id) name=(name) rows=(rows) aria-invalid=[invalid]
                        aria-describedby=[described.as_deref()] { (value) }
                }
                Kind::Select(options) => {
                    select id=(id) name=(name) aria-invalid=[invalid] aria-describedby=[described.as_deref()] {
                        @for (option, text) in options {
                            option value=(option) selected[*option == value] { (text) }
                        }
                    }
                }
                _ => {
                    input id=(id) name=(name) type=(input_type(&kind)) value=(value)
                        inputmode=[matches!(kind, Kind::Number).then_some("decimal")]
                        autocomplete=[match kind { Kind::Password => Some("current-password"), Kind::Secret => Some("new-password"), _ => None }]
                        aria-invalid=[invalid] aria-describedby=[described.as_deref()];
                }
            }
            @if let Some(message) = error {
                p.field-error id=(error_id) { (sentence(message)) }
            }
        }
    }
}

fn input_type(kind: &Kind<'_>) -> &'static str {
    match kind {
        Kind::Email => "email",
        Kind::Password | Kind::Secret => "password",
        Kind::Number => "text",
        Kind::Date => "date",
        _ => "text",
    }
}

/// An element id from a field path (`variants[0].sku` → `f-variants-0-sku`).
pub fn field_id(name: &str) -> String {
    let mut id = String::from("f-");
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && id.ends_with('-')) {
            id.push(c);
        }
    }
    id.trim_end_matches('-').to_owned()
}

// ---- money, paging, queries ------------------------------------------------------------

/// Minor units as the merchant reads them: `1999` as `19.99`.
pub fn amount(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Money for display: `€19.99`.
pub fn money(minor: i64, currency: &str) -> String {
    crate::catalog::model::Money {
        amount_minor: minor,
        currency: currency.to_owned(),
    }
    .display()
}

/// An amount typed by the merchant (`19.99`, `19,99`, `20`) in minor units.
pub fn parse_amount(text: &str) -> Option<i64> {
    let text = text.trim().replace(',', ".");
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 2
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let cents: i64 = format!("{fraction:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(cents)
}

/// The notice of a page after a change: the text of the `done` query parameter's key in
/// `notices` (`?done=saved` → "Saved."), or none for a key the page does not know.
pub fn notice(query: Option<&str>, notices: &[(&str, &'static str)]) -> Option<&'static str> {
    let done = query_value(query, "done")?;
    notices
        .iter()
        .find(|(key, _)| *key == done)
        .map(|(_, text)| *text)
}

/// The first value of `name` in a query string.
pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// The page number of a query string: 1 to 100,000, 1 for anything else.
pub fn page_number(query: Option<&str>) -> i64 {
    query_value(query, "page")
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| (1..=100_000).contains(p))
        .unwrap_or(1)
}

/// Previous and next links of a paged list; `params` are the filters to keep.
pub fn pager(
    base: &str,
    params: &[(&str, String)],
    page: i64,
    per_page: i64,
    total: i64,
) -> Markup {
    let pages = ((total + per_page - 1) / per_page).max(1);
    let link = |to: i64| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in params.iter().filter(|(_, v)| !v.is_empty()) {
            query.append_pair(key, value);
        }
        query.append_pair("page", &to.to_string());
        format!("{base}?{}", query.finish())
    };
    html! {
        nav.pager aria-label="Pages" {
            @if page > 1 { a rel="prev" href=(link(page - 1)) { "← Previous" } }
            span { "Page " (page) " of " (pages) " · " (total) " in all" }
            @if page < pages { a rel="next" href=(link(page + 1)) { "Next →" } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_as_merchants_type_them() {
        assert_eq!(parse_amount("19.99"), Some(1999));
        assert_eq!(parse_amount("19,9"), Some(1990));
        assert_eq!(parse_amount(" 20 "), Some(2000));
        assert_eq!(parse_amount("0.05"), Some(5));
        for bad in [
            "",
            "-1",
            "1.234",
            "abc",
            "1e3",
            ".5",
            "99999999999999999999",
        ] {
            assert_eq!(parse_amount(bad), None, "{bad}");
        }
        assert_eq!(amount(1999), "19.99");
    }

    #[test]
    fn errors_show_under_the_field_that_holds_them() {
        let mut errors = FormErrors::default();
        errors.add("attributes.ingredients[1].unit", "must not be empty");
        assert!(errors.field("attributes.ingredients").is_some());
        assert!(errors.field("attributes.ingredient").is_none());
        assert_eq!(field_id("variants[0].sku"), "f-variants-0-sku");
        assert_eq!(field_id("name"), "f-name");
    }
}
