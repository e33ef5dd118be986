//! The visitor's analytics choice and visitor id, for recommendations.
//!
//! Cookies (both `HttpOnly`, `SameSite=Lax`):
//! - `olv_analytics`: `yes` or `no`, the visitor's answer, for a year. Without it the
//!   header links to `/privacy/analytics`, which asks.
//! - `olv_vid`: a random visitor id (not the customer id, nothing derived from the
//!   request), for 30 days: when it expires the next recorded page makes a new one, so a
//!   visitor's trail is cut every 30 days. Set only with `olv_analytics=yes`.
//!
//! A signed-in customer's choice here is also recorded as their account's `analytics`
//! consent, and the account's consent wins when they differ (see
//! [`crate::recommendations::record`]).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use cookie::{Cookie, SameSite};
use maud::html;

use super::account::{Form, server_error};
use crate::app::AppState;
use crate::http::session::{
    Session, add_cookie, request_cookie, safe_next, see_other, session_cookie,
};
use crate::recommendations::Behaviour;

pub const CHOICE_COOKIE: &str = "olv_analytics";
pub const VISITOR_COOKIE: &str = "olv_vid";
pub const PAGE: &str = "/privacy/analytics";
const YEAR_SECS: i64 = 365 * 24 * 3600;
const VISITOR_SECS: i64 = 30 * 24 * 3600;
/// The wording of the question, as the account's consent records it.
const WORDING: &str = "storefront-2026-12";

pub fn routes() -> Router<AppState> {
    Router::new().route(PAGE, get(choice_page).post(choice_submit))
}

/// What the browser told us: its answer, and its visitor id when it agreed.
#[derive(Debug, Clone, Default)]
pub struct Visit {
    pub choice: Option<bool>,
    pub visitor: Option<String>,
}

impl Visit {
    pub fn of(headers: &HeaderMap) -> Visit {
        let choice = match request_cookie(headers, CHOICE_COOKIE) {
            Some("yes") => Some(true),
            Some("no") => Some(false),
            _ => None,
        };
        let visitor = request_cookie(headers, VISITOR_COOKIE)
            .filter(|id| is_visitor_id(id))
            .filter(|_| choice == Some(true))
            .map(str::to_owned);
        Visit { choice, visitor }
    }
}

fn is_visitor_id(text: &str) -> bool {
    (16..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn new_visitor_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// Records `kind` for the products if the visitor agreed; answers the cookie of a new
/// visitor id to set (the old one expired), if one was made.
pub async fn record(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    kind: Behaviour,
    product_ids: &[i64],
) -> Option<Cookie<'static>> {
    let visit = Visit::of(headers);
    if visit.choice != Some(true) {
        return None;
    }
    let (visitor, fresh) = match visit.visitor {
        Some(id) => (id, false),
        None => (new_visitor_id(), true),
    };
    let customer_id = match session.customer_pseudonym() {
        Some(pseudonym) => crate::loyalty::customer_id_of(state, pseudonym).await.ok(),
        None => None,
    };
    if let Err(err) =
        crate::recommendations::record(state, &visitor, customer_id, kind, product_ids).await
    {
        tracing::warn!(error = %format!("{err:#}"), "behaviour not recorded");
    }
    fresh.then(|| visitor_cookie(state, visitor))
}

/// [`record`] for products named by slug (those gone are left out).
pub async fn record_slugs(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    kind: Behaviour,
    slugs: &[String],
) -> Option<Cookie<'static>> {
    if Visit::of(headers).choice != Some(true) {
        return None;
    }
    let mut ids = Vec::with_capacity(slugs.len());
    for slug in slugs {
        if let Ok(Some(cached)) = crate::catalog::cached_product(state, slug).await
            && !ids.contains(&cached.product.id)
        {
            ids.push(cached.product.id);
        }
    }
    record(state, session, headers, kind, &ids).await
}

fn visitor_cookie(state: &AppState, visitor: String) -> Cookie<'static> {
    session_cookie(
        &state.config,
        VISITOR_COOKIE,
        visitor,
        "/",
        SameSite::Lax,
        Some(VISITOR_SECS),
    )
}

/// Adds a cookie [`record`] answered to a page's response.
pub fn with_cookie(mut response: Response, cookie: Option<Cookie<'static>>) -> Response {
    if let Some(cookie) = cookie {
        add_cookie(response.headers_mut(), &cookie);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn choice_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let next = query
        .as_deref()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "next"))
        .map(|(_, v)| v.into_owned())
        .filter(|n| safe_next(n).is_some())
        .unwrap_or_else(|| "/".to_owned());
    let visit = Visit::of(&headers);
    let categories = match crate::catalog::cached_categories(&state).await {
        Ok(categories) => categories,
        Err(err) => return server_error(&err, "analytics"),
    };
    let body = html! {
        header.page-head { h1 { "Recommendations from browsing" } }
        section.panel {
            p { "With your agreement we note which products you look at and add to your cart, under a random id that is not your account and changes every 30 days. We keep no IP address and nothing about your device, and delete it after 90 days. It lets us show what goes well with a product and put the products you look at most first." }
            p.muted #analytics-choice {
                @match visit.choice {
                    Some(true) => "You agreed. You can change your mind at any time.",
                    Some(false) => "You declined. Nothing is recorded.",
                    None => "You have not chosen yet. Nothing is recorded until you agree.",
                }
            }
            form method="post" action=(PAGE) {
                (session.csrf_input())
                input type="hidden" name="next" value=(next);
                button type="submit" name="choice" value="allow" { "Allow" }
                " "
                button type="submit" name="choice" value="decline" { "No, thanks" }
            }
        }
    };
    let html = super::catalog::layout("Recommendations from browsing", &categories, None, body);
    (StatusCode::OK, axum::response::Html(html.into_string())).into_response()
}

async fn choice_submit(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let allow = match form.get("choice") {
        "allow" => true,
        "decline" => false,
        _ => {
            return crate::http::session::message_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "422",
                "Choose an answer",
                "Allow or decline recommendations from browsing.",
            );
        }
    };
    // A signed-in customer's account consent follows (and, withdrawn, deletes what was
    // recorded under it).
    if let Some(pseudonym) = session.customer_pseudonym()
        && let Ok(customer_id) = crate::loyalty::customer_id_of(&state, pseudonym).await
    {
        let consent = crate::accounts::consents::ConsentInput {
            purpose: crate::accounts::consents::ANALYTICS.to_owned(),
            granted: allow,
            version: WORDING.to_owned(),
        };
        let result = async {
            let mut tx = state.db.begin().await?;
            crate::accounts::consents::record(&mut tx, customer_id, &[consent], "storefront")
                .await?;
            tx.commit().await?;
            Ok::<(), crate::error::Error>(())
        }
        .await;
        if let Err(err) = result {
            return server_error(&err, "analytics");
        }
    }
    let next = safe_next(form.get("next")).unwrap_or("/").to_owned();
    let mut response = see_other(&next);
    let choice = session_cookie(
        &state.config,
        CHOICE_COOKIE,
        if allow { "yes" } else { "no" }.to_owned(),
        "/",
        SameSite::Lax,
        Some(YEAR_SECS),
    );
    add_cookie(response.headers_mut(), &choice);
    let visit = Visit::of(&headers);
    if allow && visit.visitor.is_none() {
        add_cookie(
            response.headers_mut(),
            &visitor_cookie(&state, new_visitor_id()),
        );
    }
    if !allow {
        // The id goes with the answer: nothing more can be recorded under it.
        let mut gone = visitor_cookie(&state, String::new());
        gone.set_max_age(cookie::time::Duration::ZERO);
        add_cookie(response.headers_mut(), &gone);
    }
    response
}
