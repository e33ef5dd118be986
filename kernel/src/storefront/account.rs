//! The customer's account in the storefront: sign in, register, sign out, the profile,
//! and password change. Server-rendered like the rest of the shop (escaped by `maud`,
//! never JSON); sessions and CSRF are [`crate::http::session`]'s.
//!
//! A form with a problem is rendered again with each field's message and status 422; a
//! password is never put back into a page. After signing in the shopper goes to `next`
//! when it is a path on this site, else to `/account`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use maud::{Markup, html};

use crate::accounts::{self, Credentials, PasswordChange, Registration};
use crate::app::AppState;
use crate::catalog::model::Category;
use crate::error::{Error, FieldError};
use crate::http::session::{self, Customer, Session, safe_next, see_other};

/// Where a shopper lands after signing in when no `next` is given.
pub(super) const ACCOUNT_HOME: &str = "/account";

/// One section of the account page, linking to its own page.
pub struct AccountSection {
    pub href: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
}

/// The sections of the account page, in order.
///
/// PLUG-IN POINT: a page of the account (orders, addresses and privacy are here already)
/// adds its entry here and merges its router
/// into [`routes`]. Routes under `/account` receive the
/// refresh cookie, take [`Customer`] to require a signed-in customer, and put
/// [`Session::csrf_input`] into every form they render.
pub const SECTIONS: &[AccountSection] = &[
    AccountSection {
        href: "/account/orders",
        title: "Orders",
        summary: "What you ordered, where it is, and its tracking number.",
    },
    AccountSection {
        href: "/account/subscriptions",
        title: "Subscriptions",
        summary: "What is delivered regularly: skip, pause, move the date or cancel.",
    },
    AccountSection {
        href: "/account/points",
        title: "Points",
        summary: "Your loyalty points: what you can spend, what is on its way, and why.",
    },
    AccountSection {
        href: "/account/notifications",
        title: "Notifications",
        summary: "Email and push: what we tell you, on which devices, and what you wait for.",
    },
    AccountSection {
        href: "/account/reviews",
        title: "Reviews",
        summary: "What you wrote about products, and whether it is published.",
    },
    AccountSection {
        href: "/account/addresses",
        title: "Addresses",
        summary: "Your delivery addresses, and which one checkout proposes first.",
    },
    AccountSection {
        href: "/account/privacy",
        title: "Privacy",
        summary: "What you agreed to, a copy of your data, or erasing your account.",
    },
    AccountSection {
        href: "/account/password",
        title: "Password",
        summary: "Change your password. Your other devices are signed out.",
    },
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account", get(account_page))
        .route("/account/sign-in", get(sign_in_page).post(sign_in_submit))
        .route(
            "/account/register",
            get(register_page).post(register_submit),
        )
        .route(
            "/account/sign-out",
            get(|| async { see_other(ACCOUNT_HOME) }).post(sign_out),
        )
        .route(
            "/account/password",
            get(password_page).post(password_submit),
        )
        .merge(super::addresses::routes())
        .merge(super::orders::routes())
        .merge(super::subscriptions::routes())
        .merge(super::reviews::routes())
        .merge(super::loyalty::routes())
        .merge(super::notifications::routes())
        .merge(super::privacy::routes())
}

// ---- page helpers ----------------------------------------------------------------------

/// The categories for the header's navigation; a failure only leaves the links out.
async fn categories(state: &AppState) -> Arc<Vec<Category>> {
    match crate::catalog::cached_categories(state).await {
        Ok(categories) => categories,
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "account page: categories unavailable");
            Arc::default()
        }
    }
}

/// An account page: personal, so no cache may keep it.
pub(super) async fn account_page_response(
    state: &AppState,
    status: StatusCode,
    title: &str,
    body: Markup,
) -> Response {
    let categories = categories(state).await;
    let mut response = (
        status,
        Html(super::catalog::layout(title, &categories, None, body).into_string()),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) fn server_error(err: &Error, page: &str) -> Response {
    tracing::error!(error = %format!("{err:#}"), page, "account page failed");
    session::message_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "500",
        "Something went wrong",
        "We couldn't complete this. Please try again in a moment.",
    )
}

/// The fields of a posted form. Missing fields read as empty: the checks name them.
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    pub(super) fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(super) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }
}

/// The safe `next` of a query string or form, if any.
fn next_from_query(query: Option<&str>) -> Option<String> {
    let value = form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "next")
        .map(|(_, value)| value.into_owned())?;
    safe_next(&value).map(str::to_owned)
}

fn with_next(path: &str, next: Option<&str>) -> String {
    match next {
        Some(next) => {
            let encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            format!("{path}?next={encoded}")
        }
        None => path.to_owned(),
    }
}

/// What a form shows about a failed submission: messages per field, and one for the
/// whole form.
#[derive(Default)]
pub(super) struct FormErrors {
    pub(super) fields: Vec<FieldError>,
    pub(super) form: Option<String>,
}

impl FormErrors {
    pub(super) fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.field == name)
            .map(|f| f.message.as_str())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_none()
    }

    /// The errors a form can show, or `None` for an error that is not about the input.
    pub(super) fn from_error(err: &Error) -> Option<FormErrors> {
        match err {
            Error::Validation(fields) => Some(FormErrors {
                fields: fields.clone(),
                form: None,
            }),
            Error::Conflict {
                message,
                field: Some(field),
            } => Some(FormErrors {
                fields: vec![FieldError::new(field.clone(), message.clone())],
                form: None,
            }),
            Error::InvalidCredentials(message) => Some(FormErrors {
                fields: Vec::new(),
                form: Some(sentence(message)),
            }),
            _ => None,
        }
    }
}

/// "the email or password is wrong" as "The email or password is wrong."
pub(super) fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// A field's message as a sentence under it: "must be …" and "is …" (the accounts'
/// checks) read after the field's label, anything else on its own.
pub(super) fn field_message(label: &str, message: &str) -> String {
    if message.starts_with("must ") || message.starts_with("is ") {
        format!("{label} {message}.")
    } else {
        sentence(message)
    }
}

/// A labelled input with its error. `value` is never given for a password.
pub(super) fn input(
    label: &str,
    name: &str,
    kind: &str,
    value: Option<&str>,
    autocomplete: &str,
    errors: &FormErrors,
) -> Markup {
    labelled_input(label, name, kind, value, autocomplete, true, errors)
}

/// [`input`], optional or required.
pub(super) fn labelled_input(
    label: &str,
    name: &str,
    kind: &str,
    value: Option<&str>,
    autocomplete: &str,
    required: bool,
    errors: &FormErrors,
) -> Markup {
    let error = errors.field(name);
    let id = format!("f-{name}");
    let error_id = format!("{id}-error");
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(kind) value=[value] autocomplete=(autocomplete)
                required[required] aria-invalid=[error.map(|_| "true")]
                aria-describedby=[error.map(|_| error_id.as_str())];
            @if let Some(message) = error {
                p.field-error id=(error_id) { (field_message(label, message)) }
            }
        }
    }
}

pub(super) fn form_alert(errors: &FormErrors) -> Markup {
    html! {
        @if let Some(message) = &errors.form {
            p.form-alert role="alert" { (message) }
        } @else if !errors.fields.is_empty() {
            p.form-alert role="alert" { "Please correct the marked fields." }
        }
    }
}

pub(super) fn status_of(errors: &FormErrors) -> StatusCode {
    if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

// ---- sign in -------------------------------------------------------------------------

async fn sign_in_page(
    State(state): State<AppState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Response {
    let next = next_from_query(query.as_deref());
    match session::current_customer(&state, &session).await {
        Ok(Some(_)) => return see_other(next.as_deref().unwrap_or(ACCOUNT_HOME)),
        Ok(None) if session.access_token().is_some() => {
            // A token whose session has ended: drop it, so the header says "Sign in".
            let mut response = see_other(&with_next(session::SIGN_IN_PATH, next.as_deref()));
            session::clear_token_cookies(&state.config, response.headers_mut());
            return response;
        }
        Ok(None) => {}
        Err(err) => return server_error(&err, "sign-in"),
    }
    sign_in_form(
        &state,
        &session,
        "",
        next.as_deref(),
        &FormErrors::default(),
    )
    .await
}

async fn sign_in_form(
    state: &AppState,
    session: &Session,
    email: &str,
    next: Option<&str>,
    errors: &FormErrors,
) -> Response {
    let body = html! {
        section.form-card {
            h1 { "Sign in" }
            (form_alert(errors))
            form method="post" action=(session::SIGN_IN_PATH) novalidate {
                (session.csrf_input())
                @if let Some(next) = next {
                    input type="hidden" name="next" value=(next);
                }
                (input("Email", "email", "email", Some(email), "username", errors))
                (input("Password", "password", "password", None, "current-password", errors))
                button.button.primary.wide type="submit" { "Sign in" }
            }
            p.form-foot {
                "New here? "
                a href=(with_next("/account/register", next)) { "Create an account" }
            }
        }
    };
    account_page_response(state, status_of(errors), "Sign in", body).await
}

async fn sign_in_submit(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let next = safe_next(form.get("next")).map(str::to_owned);
    let email = form.get("email").trim();
    let password = form.get("password");
    let mut errors = FormErrors::default();
    if email.is_empty() {
        errors
            .fields
            .push(FieldError::new("email", "enter your email"));
    }
    if password.is_empty() {
        errors
            .fields
            .push(FieldError::new("password", "enter your password"));
    }
    if !errors.is_empty() {
        return sign_in_form(&state, &session, email, next.as_deref(), &errors).await;
    }
    let credentials = Credentials {
        email: email.to_owned(),
        password: password.to_owned(),
    };
    match accounts::sign_in(&state, credentials).await {
        Ok(pair) => {
            let mut response = see_other(next.as_deref().unwrap_or(ACCOUNT_HOME));
            session::set_token_cookies(&state.config, response.headers_mut(), &pair);
            super::cart::merge_at_sign_in(
                &state,
                &headers,
                &pair.access_token,
                response.headers_mut(),
            )
            .await;
            response
        }
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => sign_in_form(&state, &session, email, next.as_deref(), &errors).await,
            None => server_error(&err, "sign-in"),
        },
    }
}

// ---- register ------------------------------------------------------------------------

async fn register_page(
    State(state): State<AppState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Response {
    let next = next_from_query(query.as_deref());
    register_form(
        &state,
        &session,
        "",
        "",
        next.as_deref(),
        &FormErrors::default(),
    )
    .await
}

async fn register_form(
    state: &AppState,
    session: &Session,
    name: &str,
    email: &str,
    next: Option<&str>,
    errors: &FormErrors,
) -> Response {
    let body = html! {
        section.form-card {
            h1 { "Create an account" }
            (form_alert(errors))
            form method="post" action="/account/register" novalidate {
                (session.csrf_input())
                @if let Some(next) = next {
                    input type="hidden" name="next" value=(next);
                }
                (input("Name", "name", "text", Some(name), "name", errors))
                (input("Email", "email", "email", Some(email), "email", errors))
                (input("Password", "password", "password", None, "new-password", errors))
                p.hint {
                    "At least " (accounts::PASSWORD_MIN_CHARS) " characters."
                }
                button.button.primary.wide type="submit" { "Create account" }
            }
            p.form-foot {
                "Have an account? "
                a href=(with_next(session::SIGN_IN_PATH, next)) { "Sign in" }
            }
        }
    };
    account_page_response(state, status_of(errors), "Create an account", body).await
}

/// Registers and signs the new customer in.
async fn register_submit(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let next = safe_next(form.get("next")).map(str::to_owned);
    let name = form.get("name");
    let email = form.get("email");
    let password = form.get("password");
    let registration = Registration {
        email: email.to_owned(),
        password: password.to_owned(),
        name: name.to_owned(),
        consents: Vec::new(),
    };
    if let Err(err) = accounts::register(&state, registration).await {
        return match FormErrors::from_error(&err) {
            Some(errors) => {
                register_form(&state, &session, name, email, next.as_deref(), &errors).await
            }
            None => server_error(&err, "register"),
        };
    }
    let credentials = Credentials {
        email: email.to_owned(),
        password: password.to_owned(),
    };
    match accounts::sign_in(&state, credentials).await {
        Ok(pair) => {
            let mut response = see_other(next.as_deref().unwrap_or(ACCOUNT_HOME));
            session::set_token_cookies(&state.config, response.headers_mut(), &pair);
            super::cart::merge_at_sign_in(
                &state,
                &headers,
                &pair.access_token,
                response.headers_mut(),
            )
            .await;
            response
        }
        Err(err) => server_error(&err, "register"),
    }
}

// ---- sign out ------------------------------------------------------------------------

/// Ends the session (if there is one) and deletes the cookies.
async fn sign_out(
    State(state): State<AppState>,
    session: Session,
    headers: axum::http::HeaderMap,
) -> Response {
    match session::current_customer(&state, &session).await {
        Ok(Some(customer)) => {
            let refresh_token = session::refresh_cookie(&headers).unwrap_or("");
            if let Err(err) = accounts::sign_out(&state, &customer, refresh_token).await {
                return server_error(&err, "sign-out");
            }
        }
        Ok(None) => {}
        Err(err) => return server_error(&err, "sign-out"),
    }
    let mut response = see_other("/");
    session::clear_token_cookies(&state.config, response.headers_mut());
    super::cart::forget_count(&state.config, response.headers_mut());
    response
}

// ---- the account page ----------------------------------------------------------------

async fn account_page(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    RawQuery(query): RawQuery,
) -> Response {
    let account = match accounts::account(&state, customer.customer_id).await {
        Ok(account) => account,
        Err(err) => return server_error(&err, "account"),
    };
    let password_changed = query.as_deref().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "updated" && v == "password")
    });
    let body = html! {
        header.page-head {
            h1 { "Your account" }
        }
        @if password_changed {
            p.form-notice role="status" { "Your password was changed. Your other devices were signed out." }
        }
        div.account-grid {
            section.panel {
                h2 { "Profile" }
                dl.facts {
                    dt { "Name" } dd { (account.name) }
                    dt { "Email" } dd { (account.email) }
                    dt { "Member since" } dd { (member_since(&account.created_at)) }
                }
                form.sign-out method="post" action="/account/sign-out" {
                    (session.csrf_input())
                    button.button type="submit" { "Sign out" }
                }
            }
            nav.account-sections aria-label="Account sections" {
                ul {
                    @for section in SECTIONS {
                        li {
                            a href=(section.href) { (section.title) }
                            p.muted { (section.summary) }
                        }
                    }
                }
            }
        }
    };
    account_page_response(&state, StatusCode::OK, "Your account", body).await
}

/// A stored timestamp as "12 March 2026"; anything unparsable as it is.
fn member_since(created_at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(created_at)
        .map(|at| at.format("%-d %B %Y").to_string())
        .unwrap_or_else(|_| created_at.to_owned())
}

// ---- password change -----------------------------------------------------------------

async fn password_page(
    State(state): State<AppState>,
    Customer(_customer): Customer,
    session: Session,
) -> Response {
    password_form(&state, &session, &FormErrors::default()).await
}

async fn password_form(state: &AppState, session: &Session, errors: &FormErrors) -> Response {
    let body = html! {
        section.form-card {
            p.eyebrow { a href=(ACCOUNT_HOME) { "← Your account" } }
            h1 { "Change your password" }
            (form_alert(errors))
            form method="post" action="/account/password" novalidate {
                (session.csrf_input())
                (input("Current password", "current_password", "password", None, "current-password", errors))
                (input("New password", "new_password", "password", None, "new-password", errors))
                (input("New password, again", "confirm_password", "password", None, "new-password", errors))
                p.hint {
                    "At least " (accounts::PASSWORD_MIN_CHARS) " characters. Your other devices will be signed out."
                }
                button.button.primary.wide type="submit" { "Change password" }
            }
        }
    };
    account_page_response(state, status_of(errors), "Change your password", body).await
}

async fn password_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let new_password = form.get("new_password");
    if new_password != form.get("confirm_password") {
        let errors = FormErrors {
            fields: vec![FieldError::new(
                "confirm_password",
                "the two new passwords differ",
            )],
            form: None,
        };
        return password_form(&state, &session, &errors).await;
    }
    let change = PasswordChange {
        current_password: form.get("current_password").to_owned(),
        new_password: new_password.to_owned(),
    };
    match accounts::change_password(&state, &customer, change).await {
        Ok(()) => see_other("/account?updated=password"),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => password_form(&state, &session, &errors).await,
            None => server_error(&err, "password"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_comes_only_from_safe_paths() {
        assert_eq!(
            next_from_query(Some("next=%2Fp%2Fx")),
            Some("/p/x".to_owned())
        );
        assert_eq!(next_from_query(Some("next=%2F%2Fevil.example")), None);
        assert_eq!(
            next_from_query(Some("next=https%3A%2F%2Fevil.example")),
            None
        );
        assert_eq!(next_from_query(None), None);
        assert_eq!(with_next("/a", Some("/b?c=d")), "/a?next=%2Fb%3Fc%3Dd");
    }

    #[test]
    fn messages_read_as_sentences() {
        assert_eq!(
            sentence(accounts::BAD_CREDENTIALS),
            "The email or password is wrong."
        );
        assert_eq!(member_since("2026-03-12T10:00:00.000Z"), "12 March 2026");
        assert_eq!(member_since("soon"), "soon");
        assert_eq!(
            field_message("Password", "must be 10 to 256 characters"),
            "Password must be 10 to 256 characters."
        );
        assert_eq!(
            field_message("Email", "enter your email"),
            "Enter your email."
        );
    }
}
