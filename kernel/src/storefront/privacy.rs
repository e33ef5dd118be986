//! The customer's privacy in the storefront: consents as checkboxes with their history,
//! the download of everything held about them, and the erasure of the account. The pages
//! call [`crate::accounts::consents`] and [`crate::accounts::privacy`] directly; see
//! `docs/PRIVACY.md` for what each one does.
//!
//! After an erasure the shopper's cookies are deleted (the erasure has revoked their
//! sessions already) and they land on `/privacy-requests/{id}`, a page that shows the
//! request's status without signing in: the random id is the secret, so that page is
//! never cached and sends no `Referer`.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};

use super::account::{
    ACCOUNT_HOME, Form, FormErrors, account_page_response, form_alert, input, server_error,
    status_of,
};
use crate::accounts::consents::{self, ConsentInput, ConsentUpdate};
use crate::accounts::privacy::{self, ERASE_CONFIRMATION, ErasureRequest, RequestStatus};
use crate::app::AppState;
use crate::error::{Error, FieldError};
use crate::http::session::{self, Customer, Session, see_other};

const PRIVACY: &str = "/account/privacy";

/// The version of the consent wording below. Change it whenever the wording changes:
/// each consent records the version the customer was shown.
pub const CONSENT_WORDING_VERSION: &str = "2026-11";

/// The purposes the shop asks about, with the wording shown (of version
/// [`CONSENT_WORDING_VERSION`]).
pub const CONSENT_PURPOSES: [(&str, &str); 2] = [
    (
        "marketing_email",
        "Send me news and offers by email. I can unsubscribe at any time.",
    ),
    (
        "analytics",
        "Let the shop measure how its pages are used, to improve them.",
    ),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PRIVACY, get(privacy_page))
        .route("/account/consents", post(consents_submit))
        .route("/account/export", get(export_download))
        .route("/account/erasure", post(erasure_submit))
        .route("/privacy-requests/{id}", get(request_page))
}

fn purpose_title(purpose: &str) -> &str {
    match purpose {
        "marketing_email" => "Marketing email",
        "analytics" => "Analytics",
        other => other,
    }
}

/// A stored timestamp as "25 November 2026, 16:52 UTC"; anything unparsable as it is.
fn when(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|at| at.format("%-d %B %Y, %H:%M UTC").to_string())
        .unwrap_or_else(|_| at.to_owned())
}

// ---- the privacy page ---------------------------------------------------------------

async fn privacy_page(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    RawQuery(query): RawQuery,
) -> Response {
    let saved = query.as_deref().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "updated" && v == "consents")
    });
    privacy_form(
        &state,
        &session,
        customer.customer_id,
        saved,
        &FormErrors::default(),
    )
    .await
}

async fn privacy_form(
    state: &AppState,
    session: &Session,
    customer_id: i64,
    saved: bool,
    erasure_errors: &FormErrors,
) -> Response {
    let consents = match consents::read(state, customer_id).await {
        Ok(consents) => consents,
        Err(err) => return server_error(&err, "privacy"),
    };
    let granted = |purpose: &str| {
        consents
            .current
            .iter()
            .any(|c| c.purpose == purpose && c.granted)
    };
    let body = html! {
        header.page-head {
            p.eyebrow { a href=(ACCOUNT_HOME) { "← Your account" } }
            h1 { "Privacy" }
        }
        @if saved {
            p.form-notice role="status" { "Your choices were saved." }
        }
        div.account-grid {
            section.panel {
                h2 { "What you agree to" }
                form method="post" action="/account/consents" {
                    (session.csrf_input())
                    @for (purpose, wording) in CONSENT_PURPOSES {
                        div.field {
                            label {
                                input type="checkbox" name=(purpose) value="1" checked[granted(purpose)];
                                " " strong { (purpose_title(purpose)) } ": " (wording)
                            }
                        }
                    }
                    p.hint { "Wording version " (CONSENT_WORDING_VERSION) "." }
                    button.button.primary type="submit" { "Save my choices" }
                }
                h3 { "History" }
                @if consents.history.is_empty() {
                    p.muted { "You have not made any choice yet." }
                } @else {
                    table.consent-history {
                        thead { tr { th { "When" } th { "Purpose" } th { "Choice" } th { "Wording" } th { "Where" } } }
                        tbody {
                            @for consent in consents.history.iter().rev() {
                                tr {
                                    td { (when(&consent.recorded_at)) }
                                    td { (purpose_title(&consent.purpose)) }
                                    td { @if consent.granted { "Agreed" } @else { "Declined" } }
                                    td { (consent.version) }
                                    td { (consent.source) }
                                }
                            }
                        }
                    }
                }
            }
            div {
                section.panel {
                    h2 { "Your data" }
                    p { "Download everything the shop holds about you, as one JSON file: your profile, addresses, choices, sessions and requests." }
                    p { a.button href="/account/export" download { "Download my data" } }
                }
                section.panel {
                    h2 { "Erase your account" }
                    p {
                        "Your name, email, password and addresses are erased at once and you are signed out everywhere. "
                        "Orders stay for the shop's accounts, without anything that identifies you. This cannot be undone."
                    }
                    (form_alert(erasure_errors))
                    form method="post" action="/account/erasure" novalidate {
                        (session.csrf_input())
                        (input("Password", "password", "password", None, "current-password", erasure_errors))
                        (input(&format!("Type “{ERASE_CONFIRMATION}” to confirm"), "confirm", "text", None, "off", erasure_errors))
                        button.button.danger.wide type="submit" { "Erase my account" }
                    }
                }
            }
        }
    };
    account_page_response(state, status_of(erasure_errors), "Privacy", body).await
}

// ---- consents -----------------------------------------------------------------------

async fn consents_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    // Every purpose on the form is set: an unticked box is a refusal of this wording.
    let update = ConsentUpdate {
        consents: CONSENT_PURPOSES
            .iter()
            .map(|(purpose, _)| ConsentInput {
                purpose: (*purpose).to_owned(),
                granted: !form.get(purpose).is_empty(),
                version: CONSENT_WORDING_VERSION.to_owned(),
            })
            .collect(),
    };
    match consents::update(&state, &customer, update).await {
        Ok(_) => see_other(&format!("{PRIVACY}?updated=consents")),
        Err(Error::Unauthorized) => see_other(session::SIGN_IN_PATH),
        Err(err) => server_error(&err, "consents"),
    }
}

// ---- export -------------------------------------------------------------------------

/// The same document as `GET /api/v1/account/export`, as a download. A GET, so a link
/// can start it; it changes nothing but the record of the export itself.
async fn export_download(State(state): State<AppState>, Customer(customer): Customer) -> Response {
    let document = match privacy::export(&state, &customer).await {
        Ok(document) => document,
        Err(err) => return server_error(&err, "export"),
    };
    let disposition = format!(
        "attachment; filename=\"olivine-export-{}.json\"",
        customer.pseudonym
    );
    let mut response = Json(document).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---- erasure ------------------------------------------------------------------------

async fn erasure_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let password = form.get("password");
    let confirm = form.get("confirm").trim();
    // Both fields are checked before anything, so the shopper sees every problem.
    let mut fields = Vec::new();
    if password.is_empty() {
        fields.push(FieldError::new("password", "enter your password"));
    }
    if confirm != ERASE_CONFIRMATION {
        fields.push(FieldError::new(
            "confirm",
            format!("type “{ERASE_CONFIRMATION}” exactly"),
        ));
    }
    if !fields.is_empty() {
        let errors = FormErrors { fields, form: None };
        return privacy_form(&state, &session, customer.customer_id, false, &errors).await;
    }
    let input = ErasureRequest {
        password: password.to_owned(),
        confirm: confirm.to_owned(),
    };
    match privacy::request_erasure(&state, &customer, input).await {
        Ok(request) => {
            let mut response = see_other(&format!("/privacy-requests/{}", request.id));
            session::clear_token_cookies(&state.config, response.headers_mut());
            response
        }
        Err(Error::Unauthorized) => see_other(session::SIGN_IN_PATH),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                privacy_form(&state, &session, customer.customer_id, false, &errors).await
            }
            None => server_error(&err, "erasure"),
        },
    }
}

// ---- a request's status -------------------------------------------------------------

async fn request_page(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let status = match id {
        Ok(Path(id)) => privacy::request_status(&state, &id).await,
        Err(_) => Err(Error::not_found("privacy request")),
    };
    let mut response = match status {
        Ok(request) => {
            let title = request_title(&request);
            account_page_response(&state, StatusCode::OK, title, request_body(&request)).await
        }
        Err(Error::NotFound(_)) => super::catalog::not_found_page().into_response(),
        Err(err) => server_error(&err, "privacy request"),
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The id in the address is the secret: no link from here may carry it away.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn request_title(request: &RequestStatus) -> &'static str {
    match request.kind.as_str() {
        "erasure" => "Your erasure request",
        _ => "Your data export",
    }
}

fn status_words(status: &str) -> &'static str {
    match status {
        "received" => "Received: it will be processed shortly.",
        "processing" => "Being processed.",
        "completed" => "Completed.",
        "failed" => "It could not be completed yet; the shop will retry it.",
        _ => "Unknown.",
    }
}

fn request_body(request: &RequestStatus) -> Markup {
    html! {
        section.form-card {
            p.eyebrow { "Privacy request" }
            h1 { (request_title(request)) }
            @if request.kind == "erasure" && request.status == "completed" {
                p.form-notice role="status" {
                    "Your account has been erased and you have been signed out."
                }
            }
            dl.facts {
                dt { "Status" } dd.request-status data-status=(request.status) { (status_words(&request.status)) }
                dt { "Received" } dd { (when(&request.created_at)) }
                @if let Some(completed_at) = &request.completed_at {
                    dt { "Completed" } dd { (when(completed_at)) }
                }
            }
            p.hint {
                "Keep this page's address to check on the request: it works without signing in. "
                "The same status as JSON: "
                code { (request.status_url) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_dates() {
        assert_eq!(
            when("2026-11-25T16:52:00.000Z"),
            "25 November 2026, 16:52 UTC"
        );
        assert_eq!(when("soon"), "soon");
    }
}
