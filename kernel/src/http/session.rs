//! Storefront sessions: the customer's tokens carried in cookies, and CSRF protection of
//! every storefront form.
//!
//! Cookies, all `HttpOnly` (scripts never see them) and `Secure` unless `cookie_secure`
//! is off:
//!
//! - `olv_access`: the access token (JWT). `SameSite=Lax`, `Path=/`, `Max-Age` = its
//!   lifetime. Lax, so a shopper following a link to the shop arrives signed in.
//! - `olv_refresh`: the refresh token. `SameSite=Strict`, `Path=/account`, `Max-Age` = its
//!   lifetime. The long-lived secret goes only to account pages, and never with a
//!   request another site started.
//! - `olv_csrf`: a random secret for the double-submit check, `SameSite=Lax`, `Path=/`,
//!   for the browser session. Set only when a page renders a form.
//!
//! [`layer`] runs over every storefront route. It reads the access cookie and checks it
//! without the database (signature, expiry), which is enough to draw the header's
//! "Account" link on cached catalog pages; when the token is missing or expired and the
//! refresh cookie came along, it rotates the pair through [`accounts::refresh`] and sets
//! the new cookies on the response. Pages that show or change the customer's data use
//! [`Customer`], which also checks the session in the database.
//!
//! CSRF: a POST (any unsafe method) must come from this site (`Sec-Fetch-Site`, then
//! `Origin`, else `Referer`, when the browser sends them, against `Host`) and carry the
//! form field `csrf` (or header `X-CSRF-Token`) equal to an HMAC, under a server key, of
//! the `olv_csrf` cookie and the session id. Another site can neither read the cookie
//! nor forge the HMAC; a cookie planted from a sibling domain does not match a signed-in
//! customer's session. Anything else is the 403 page, before the handler runs.
//!
//! The JSON API does not read these cookies: it takes `Authorization: Bearer` only, so a
//! browser never authenticates an API request by itself and the API needs no CSRF token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use maud::{Markup, html};

use crate::accounts::{self, AccessClaims, Authenticated, Keyring, TokenPair};
use crate::app::AppState;
use crate::config::ServeConfig;
use crate::error::Error;

pub const ACCESS_COOKIE: &str = "olv_access";
pub const REFRESH_COOKIE: &str = "olv_refresh";
pub const CSRF_COOKIE: &str = "olv_csrf";
/// The hidden form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The header that may carry it instead (for requests that are not forms).
const CSRF_HEADER: &str = "x-csrf-token";
/// The refresh cookie goes only to the account pages.
pub const REFRESH_PATH: &str = "/account";
/// Where a shopper who must sign in is sent.
pub const SIGN_IN_PATH: &str = "/account/sign-in";
/// Bytes of randomness in the CSRF cookie.
const CSRF_SECRET_BYTES: usize = 32;

/// What the page header shows about the request, read without the database.
#[derive(Clone, Copy, Default)]
struct HeaderState {
    /// The request carries a valid-looking access token: "Account" or "Sign in".
    signed_in: bool,
    /// Units in the cart, as the cart pages last told this browser
    /// ([`crate::storefront::cart::CART_ITEMS_COOKIE`]).
    cart_items: Option<u32>,
    /// The browser answered the analytics question ([`crate::storefront::analytics`]).
    analytics_answered: bool,
    /// The page is the same for every visitor (a CDN may keep it): the header shows no
    /// personal bit, and the header script fills them in from [`HEADER_PATH`].
    shared: bool,
}

tokio::task_local! {
    static HEADER: HeaderState;
}

fn header_state() -> HeaderState {
    HEADER.try_with(|state| *state).unwrap_or_default()
}

/// The header's link to the account: "Account" for a signed-in shopper, else "Sign in".
pub fn account_link() -> Markup {
    let state = header_state();
    if state.shared {
        return html! { a.account-link href=(SIGN_IN_PATH) data-personal="account" { "Sign in" } };
    }
    if state.signed_in {
        html! { a.account-link href="/account" { "Account" } }
    } else {
        html! { a.account-link href=(SIGN_IN_PATH) { "Sign in" } }
    }
}

/// Under the header, until the visitor answers: the question about recommendations from
/// browsing (nothing is recorded before an answer). A shared page has it at its foot
/// instead ([`analytics_prompt_at_foot`]).
pub fn analytics_prompt() -> Markup {
    let state = header_state();
    if state.analytics_answered || state.shared {
        return html! {};
    }
    html! {
        p.analytics-prompt.wrap { (analytics_question()) }
    }
}

/// On a shared page, above the footer: the question, hidden until the header script
/// learns that the visitor has not answered. At the foot, showing it moves nothing the
/// visitor is looking at.
pub fn analytics_prompt_at_foot() -> Markup {
    if !header_state().shared {
        return html! {};
    }
    html! {
        p.analytics-prompt.wrap hidden data-personal="analytics" { (analytics_question()) }
    }
}

fn analytics_question() -> Markup {
    html! {
        "We can recommend products from what you browse, anonymously. "
        a href=(crate::storefront::analytics::PAGE) { "Choose" }
    }
}

/// The header's link to the cart, with the number of units when known.
pub fn cart_link() -> Markup {
    let state = header_state();
    if state.shared {
        return html! { a.cart-link href="/cart" data-personal="cart" { "Cart" } };
    }
    match state.cart_items {
        Some(items) if items > 0 => html! {
            a.cart-link href="/cart" aria-label={ "Cart, " (items) (if items == 1 { " item" } else { " items" }) } {
                "Cart " span.cart-count { (items) }
            }
        },
        _ => html! { a.cart-link href="/cart" { "Cart" } },
    }
}

/// Runs `render` with the header showing `cart_items` (a cart page knows the fresh count).
pub async fn with_cart_items<F: std::future::Future>(cart_items: u32, render: F) -> F::Output {
    let state = HeaderState {
        cart_items: Some(cart_items),
        ..header_state()
    };
    HEADER.scope(state, render).await
}

/// Renders a page that every visitor sees alike: its header carries no personal bit (the
/// header script asks [`HEADER_PATH`] for them), so the page may be kept by this node's
/// page cache and by a CDN.
pub async fn for_everyone<F: std::future::Future>(render: F) -> F::Output {
    let state = HeaderState {
        shared: true,
        ..HeaderState::default()
    };
    HEADER.scope(state, render).await
}

/// Whether the page being rendered is shared ([`for_everyone`]): it then carries the
/// header script.
pub fn is_shared_page() -> bool {
    header_state().shared
}

/// Where the header script of a shared page asks for the visitor's own header bits. Under
/// `/account`, so the refresh cookie comes along and an expired session is renewed here.
pub const HEADER_PATH: &str = "/account/header";

/// The visitor's own header bits, for the header script: `private, no-store`.
pub async fn header_bits() -> Response {
    let state = header_state();
    let mut response = axum::Json(serde_json::json!({
        "signed_in": state.signed_in,
        "cart_items": state.cart_items.unwrap_or(0),
        "analytics_answered": state.analytics_answered,
    }))
    .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// What [`layer`] learned about the request; handlers take it as an extractor.
#[derive(Clone)]
pub struct Session {
    /// The access token in effect (the cookie's, or one a refresh just issued) with its
    /// claims, when its signature and expiry check out.
    access: Option<(String, AccessClaims)>,
    csrf_secret: String,
    /// The secret was made for this request (the browser sent none).
    csrf_is_new: bool,
    /// A page used the secret in a form, so a new one must be set as a cookie.
    csrf_used: Arc<AtomicBool>,
    keys: Arc<Keyring>,
}

impl Session {
    /// The access token, when it looks valid (only [`Customer`] knows it still is).
    pub fn access_token(&self) -> Option<&str> {
        self.access.as_ref().map(|(token, _)| token.as_str())
    }

    /// The value of the hidden `csrf` field of a form on this page.
    pub fn csrf_token(&self) -> String {
        self.csrf_used.store(true, Ordering::Relaxed);
        csrf_token(&self.keys, &self.csrf_secret, self.session_id())
    }

    /// The hidden form field carrying [`Session::csrf_token`].
    pub fn csrf_input(&self) -> Markup {
        html! { input type="hidden" name=(CSRF_FIELD) value=(self.csrf_token()); }
    }

    /// The signed-in customer's pseudonym, when the access token looks valid.
    pub fn customer_pseudonym(&self) -> Option<&str> {
        self.access.as_ref().map(|(_, claims)| claims.sub.as_str())
    }

    fn session_id(&self) -> &str {
        self.access
            .as_ref()
            .map_or("", |(_, claims)| claims.sid.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "a storefront route runs without the session layer");
            message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500",
                "Something went wrong",
                "We couldn't load this page. Please try again in a moment.",
            )
        })
    }
}

/// A signed-in customer whose session is open. A shopper who is not signed in is
/// redirected (303) to the sign-in page, which brings them back afterwards.
pub struct Customer(pub Authenticated);

impl FromRequestParts<AppState> for Customer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let session = Session::from_request_parts(parts, state).await?;
        match current_customer(state, &session).await {
            Ok(Some(customer)) => Ok(Customer(customer)),
            Ok(None) => {
                let mut response = sign_in_redirect(&parts.uri, parts.method.is_safe());
                if session.access.is_some() {
                    // The token checks out but its session has ended elsewhere.
                    clear_token_cookies(&state.config, response.headers_mut());
                }
                Err(response)
            }
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "checking a storefront session failed");
                Err(message_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500",
                    "Something went wrong",
                    "We couldn't load this page. Please try again in a moment.",
                ))
            }
        }
    }
}

/// The customer of the session's access token, if it is valid and its session open.
pub async fn current_customer(
    state: &AppState,
    session: &Session,
) -> Result<Option<Authenticated>, Error> {
    let Some(token) = session.access_token() else {
        return Ok(None);
    };
    match accounts::authenticate(state, token).await {
        Ok(customer) => Ok(Some(customer)),
        Err(Error::Unauthorized) => Ok(None),
        Err(err) => Err(err),
    }
}

/// 303 to the sign-in page with `next` set to this page (for a GET) or its path.
pub fn sign_in_redirect(uri: &Uri, keep_query: bool) -> Response {
    let here = match uri.query() {
        Some(query) if keep_query => format!("{}?{query}", uri.path()),
        _ => uri.path().to_owned(),
    };
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    see_other(&format!("{SIGN_IN_PATH}?next={next}"))
}

/// A 303 redirect (after a POST the browser follows it with a GET).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Err(_) => {
            response
                .headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/"));
        }
    }
    response
}

/// `next` when it is a path on this site: it starts with one `/` (not `//` or `/\`,
/// which browsers read as another host) and is plain visible ASCII.
pub fn safe_next(next: &str) -> Option<&str> {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 2048
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    local.then_some(next)
}

// ---- cookies -------------------------------------------------------------------------

pub(crate) fn session_cookie(
    config: &ServeConfig,
    name: &'static str,
    value: String,
    path: &'static str,
    same_site: SameSite,
    max_age_secs: Option<i64>,
) -> Cookie<'static> {
    let mut builder = Cookie::build((name, value))
        .http_only(true)
        .secure(config.cookie_secure)
        .same_site(same_site)
        .path(path);
    if let Some(secs) = max_age_secs {
        builder = builder.max_age(cookie::time::Duration::seconds(secs));
    }
    builder.build()
}

/// The cookies that carry a new token pair.
fn token_cookies(config: &ServeConfig, pair: &TokenPair) -> [Cookie<'static>; 2] {
    [
        session_cookie(
            config,
            ACCESS_COOKIE,
            pair.access_token.clone(),
            "/",
            SameSite::Lax,
            Some(pair.expires_in),
        ),
        session_cookie(
            config,
            REFRESH_COOKIE,
            pair.refresh_token.clone(),
            REFRESH_PATH,
            SameSite::Strict,
            Some(accounts::REFRESH_TTL_SECS),
        ),
    ]
}

/// Cookies that delete the token cookies (same name and path, empty, `Max-Age=0`).
fn removal_cookies(config: &ServeConfig) -> [Cookie<'static>; 2] {
    [
        session_cookie(
            config,
            ACCESS_COOKIE,
            String::new(),
            "/",
            SameSite::Lax,
            Some(0),
        ),
        session_cookie(
            config,
            REFRESH_COOKIE,
            String::new(),
            REFRESH_PATH,
            SameSite::Strict,
            Some(0),
        ),
    ]
}

pub(crate) fn add_cookie(headers: &mut HeaderMap, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        headers.append(header::SET_COOKIE, value);
    }
}

/// Sets the cookies of a new token pair on a response (sign-in).
pub fn set_token_cookies(config: &ServeConfig, headers: &mut HeaderMap, pair: &TokenPair) {
    for cookie in token_cookies(config, pair) {
        add_cookie(headers, &cookie);
    }
}

/// Deletes the token cookies (sign-out, an ended session).
pub fn clear_token_cookies(config: &ServeConfig, headers: &mut HeaderMap) {
    for cookie in removal_cookies(config) {
        add_cookie(headers, &cookie);
    }
}

/// The value of cookie `name` in the request (the first one: browsers send the cookie
/// of the most specific path first).
pub(crate) fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// The refresh token from the request's cookies.
pub fn refresh_cookie(headers: &HeaderMap) -> Option<&str> {
    request_cookie(headers, REFRESH_COOKIE)
}

/// Names of the cookies a response sets already.
fn cookies_set(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split_once('='))
        .map(|(name, _)| name.trim().to_owned())
        .collect()
}

// ---- CSRF -----------------------------------------------------------------------------

fn csrf_token(keys: &Keyring, secret: &str, session_id: &str) -> String {
    let message = format!("{secret}\n{session_id}");
    URL_SAFE_NO_PAD.encode(keys.purpose_mac("csrf", message.as_bytes()))
}

/// A CSRF cookie of the shape this module makes (a client may send anything).
fn is_csrf_secret(value: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(value)
        .is_ok_and(|bytes| bytes.len() == CSRF_SECRET_BYTES)
}

/// Form posts from pages every visitor shares ([`for_everyone`]): their forms carry no
/// CSRF token. The worst another site could do with one is put a product into a cart,
/// and browsers that send `Sec-Fetch-Site` or `Origin` (every current one) stop even that.
const SHARED_PAGE_FORMS: &[&str] = &["/cart/lines"];

/// Whether the browser said where the post comes from ([`from_this_site`] has checked
/// that it is this site): `Sec-Fetch-Site: same-origin`, or an `Origin`.
fn proven_same_origin(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site") {
        Some(site) => site.as_bytes() == b"same-origin",
        None => headers.contains_key(header::ORIGIN),
    }
}

/// Whether a request that changes something comes from a page of this site, as far as
/// the browser tells: `Sec-Fetch-Site`, then `Origin`, else `Referer`, against `Host`.
/// A request that carries none of them passes (older browsers, tools): the token
/// decides.
pub(crate) fn from_this_site(headers: &HeaderMap, uri: &Uri) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        // `same-site` would admit a sibling subdomain; `none` is the user's own action.
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return false;
        }
    }
    let Some(source) = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
    else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()));
    match (source.to_str().ok().and_then(url_authority), host) {
        (Some(source), Some(host)) => source.eq_ignore_ascii_case(host.trim()),
        _ => false,
    }
}

/// `host[:port]` of an absolute URL (`Origin: null` and relative URLs have none).
fn url_authority(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    (!host.is_empty()).then_some(host)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The first value of `name` in a urlencoded form body.
pub fn form_value(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Checks a request that changes something; gives it back (its body read and put back)
/// or answers the page that refuses it.
async fn check_csrf(
    state: &AppState,
    session: &Session,
    request: Request,
) -> Result<Request, Response> {
    if !from_this_site(request.headers(), request.uri()) {
        tracing::info!(path = %request.uri().path(), "refused a cross-site form post");
        return Err(forbidden_page());
    }
    // A form on a shared page cannot carry a token of the visitor's own; the browser's
    // proof that the post comes from a page of this site stands in for it.
    let token_needed = !(SHARED_PAGE_FORMS.contains(&request.uri().path())
        && proven_same_origin(request.headers()));
    // Without the cookie no page of ours can have rendered the form.
    if token_needed && session.csrf_is_new {
        return Err(forbidden_page());
    }
    let (parts, body) = request.into_parts();
    let limit = state.config.max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return Err(message_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413",
            "That form was too large",
            "Please go back and try again with less text.",
        ));
    };
    let presented = match parts.headers.get(CSRF_HEADER) {
        Some(value) => value.to_str().ok().map(str::to_owned),
        None if is_form(&parts.headers) => form_value(&bytes, CSRF_FIELD),
        None => None,
    };
    let expected = csrf_token(&session.keys, &session.csrf_secret, session.session_id());
    let token_checks = presented
        .as_ref()
        .is_some_and(|token| super::constant_time_eq(token.as_bytes(), expected.as_bytes()));
    if token_needed && !token_checks {
        tracing::info!(path = %parts.uri.path(), "refused a form post without a valid CSRF token");
        return Err(forbidden_page());
    }
    // No storefront form takes a card number (the checkout's card inputs have no name:
    // the card goes to the processor): refuse one typed into any field. (Decoded first: a
    // form spells spaces `+` or `%20`.)
    if form_urlencoded::parse(&bytes).any(|(key, value)| {
        super::card_numbers::contains_card_number(&key)
            || super::card_numbers::contains_card_number(&value)
    }) {
        tracing::info!(path = %parts.uri.path(), "refused a form holding a card number");
        return Err(message_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "422",
            "Please don't type a card number here",
            "A field of that form held what looks like a card number. Card details only go into the card fields at checkout, which send them straight to our payment processor. Please go back and remove it.",
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

// ---- the layer ------------------------------------------------------------------------

/// Middleware over the storefront routes: resolves the session (refreshing it when the
/// access token has expired), checks CSRF on unsafe methods, and sets the cookies that
/// changed. Cookies the handler set itself (sign-in, sign-out) win.
pub async fn layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let mut cookies: Vec<Cookie<'static>> = Vec::new();
    let headers = request.headers();
    let mut access = request_cookie(headers, ACCESS_COOKIE).and_then(|token| {
        accounts::decode_access_token(&state.keys, token)
            .ok()
            .map(|claims| (token.to_owned(), claims))
    });
    if access.is_none()
        && let Some(refresh_token) = request_cookie(headers, REFRESH_COOKIE)
    {
        match accounts::refresh(&state, refresh_token).await {
            Ok(pair) => {
                access = accounts::decode_access_token(&state.keys, &pair.access_token)
                    .ok()
                    .map(|claims| (pair.access_token.clone(), claims));
                cookies.extend(token_cookies(&state.config, &pair));
            }
            Err(Error::InvalidCredentials(_)) => {
                cookies.extend(removal_cookies(&state.config));
            }
            // The shopper is treated as signed out for this request; their cookies stay.
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "refreshing a storefront session failed");
            }
        }
    }
    let (csrf_secret, csrf_is_new) = match request_cookie(headers, CSRF_COOKIE) {
        Some(secret) if is_csrf_secret(secret) => (secret.to_owned(), false),
        _ => (
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; CSRF_SECRET_BYTES]>()),
            true,
        ),
    };
    let session = Session {
        access,
        csrf_secret,
        csrf_is_new,
        csrf_used: Arc::new(AtomicBool::new(false)),
        keys: state.keys.clone(),
    };
    let header_state = HeaderState {
        signed_in: session.access.is_some(),
        cart_items: request_cookie(
            request.headers(),
            crate::storefront::cart::CART_ITEMS_COOKIE,
        )
        .and_then(|value| value.parse().ok()),
        analytics_answered: request_cookie(
            request.headers(),
            crate::storefront::analytics::CHOICE_COOKIE,
        )
        .is_some(),
        shared: false,
    };
    if !request.method().is_safe() {
        request = match HEADER
            .scope(header_state, check_csrf(&state, &session, request))
            .await
        {
            Ok(request) => request,
            Err(refused) => return with_cookies(refused, cookies),
        };
    }
    request.extensions_mut().insert(session.clone());
    let response = HEADER.scope(header_state, next.run(request)).await;
    if session.csrf_is_new && session.csrf_used.load(Ordering::Relaxed) {
        cookies.push(session_cookie(
            &state.config,
            CSRF_COOKIE,
            session.csrf_secret.clone(),
            "/",
            SameSite::Lax,
            None,
        ));
    }
    with_cookies(response, cookies)
}

/// Adds `cookies` to a response, except those it sets already.
fn with_cookies(mut response: Response, cookies: Vec<Cookie<'static>>) -> Response {
    if cookies.is_empty() {
        return response;
    }
    let already = cookies_set(response.headers());
    let headers = response.headers_mut();
    for cookie in cookies {
        if !already.iter().any(|name| name == cookie.name()) {
            add_cookie(headers, &cookie);
        }
    }
    // A response that sets session cookies must not be stored by a shared cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---- pages ----------------------------------------------------------------------------

/// A short page with a status: an error the shopper can act on.
pub fn message_page(status: StatusCode, eyebrow: &str, title: &str, text: &str) -> Response {
    let body = html! {
        section.message {
            p.eyebrow { (eyebrow) }
            h1 { (title) }
            p { (text) }
            p { a.button.primary href="/" { "Back to the shop" } }
        }
    };
    (
        status,
        Html(crate::storefront::catalog::layout(title, &[], None, body).into_string()),
    )
        .into_response()
}

/// The answer to a form post that fails the CSRF check.
fn forbidden_page() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "403",
        "This form has expired",
        "For your security we couldn't accept it. Please go back, reload the page and try again.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_be_a_local_path() {
        assert_eq!(safe_next("/account"), Some("/account"));
        assert_eq!(safe_next("/p/x?variant=2"), Some("/p/x?variant=2"));
        for bad in [
            "",
            "account",
            "//evil.example",
            "/\\evil.example",
            "/ok\\..",
            "https://evil.example/",
            "javascript:alert(1)",
            "/a b",
            "/\u{e9}",
            "/\t/evil",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn origins_are_compared_by_authority() {
        assert_eq!(url_authority("https://shop.example"), Some("shop.example"));
        assert_eq!(
            url_authority("http://u:p@shop.example:8080/a?b"),
            Some("shop.example:8080")
        );
        assert_eq!(url_authority("null"), None);
        assert_eq!(url_authority("/relative"), None);

        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("shop.example"));
        let uri = Uri::from_static("/account/sign-in");
        assert!(
            from_this_site(&headers, &uri),
            "no Origin: the token decides"
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://shop.example"),
        );
        assert!(from_this_site(&headers, &uri));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!from_this_site(&headers, &uri));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!from_this_site(&headers, &uri));
        headers.remove(header::ORIGIN);
        headers.insert(
            header::REFERER,
            HeaderValue::from_static("https://evil.example/x"),
        );
        assert!(!from_this_site(&headers, &uri));
        headers.insert(
            header::REFERER,
            HeaderValue::from_static("https://shop.example/x"),
        );
        assert!(from_this_site(&headers, &uri));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!from_this_site(&headers, &uri));
    }

    #[test]
    fn request_cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; olv_access=tok.en.x; olv_csrf="),
        );
        assert_eq!(request_cookie(&headers, ACCESS_COOKIE), Some("tok.en.x"));
        assert_eq!(request_cookie(&headers, CSRF_COOKIE), None);
        assert_eq!(request_cookie(&headers, "olv"), None);
    }
}
