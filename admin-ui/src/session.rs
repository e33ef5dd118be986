//! The staff member's session in the browser, and CSRF protection of every admin form.
//!
//! Cookies, both `HttpOnly`, `SameSite=Strict`, `Path=/admin`, and `Secure` unless
//! `OLIVINE_COOKIE_SECURE` is off and the request did not come over HTTPS:
//!
//! - `olv_staff`: the staff session token, made by the staff domain's sign-in
//!   ([`crate::staff::sign_in`]) in the same `staff_tokens` table the API's sessions use,
//!   so it shows in the staff member's session list and revoking it ends it here. Strict:
//!   a request another site starts never carries it.
//! - `olv_admin_csrf`: a random secret for the CSRF check, for the browser session.
//!
//! [`layer`] runs over every `/admin` route: it finds the staff member of the cookie
//! (the token checked in the database on every request, so a revoked session ends at
//! once) and checks every unsafe request as the storefront does: it must come from this
//! site (`Sec-Fetch-Site`, `Origin`, `Referer` against `Host`) and carry the form field
//! `csrf` equal to `base64url(HMAC(k, secret ‖ session token id))`, `k` derived from the
//! accounts' lookup key for this purpose only. Anything else is the 403 page.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use maud::{Markup, html};

use super::layout;
use crate::accounts::Keyring;
use crate::app::AppState;
use crate::error::Error;
use crate::staff::Staff;

pub const STAFF_COOKIE: &str = "olv_staff";
pub const CSRF_COOKIE: &str = "olv_admin_csrf";
/// The hidden form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Both cookies go to the admin only.
const COOKIE_PATH: &str = "/admin";
const CSRF_SECRET_BYTES: usize = 32;

/// What [`layer`] learned about the request; handlers take it as an extractor.
#[derive(Clone)]
pub struct AdminSession {
    /// The signed-in staff member, when the cookie holds a session that is open.
    pub staff: Option<Staff>,
    csrf_secret: String,
    csrf_is_new: bool,
    /// A page put the token in a form, so a new secret must be set as a cookie.
    csrf_used: Arc<AtomicBool>,
    keys: Arc<Keyring>,
}

impl AdminSession {
    /// The hidden form field carrying the CSRF token.
    pub fn csrf_input(&self) -> Markup {
        self.csrf_used.store(true, Ordering::Relaxed);
        let token = csrf_token(&self.keys, &self.csrf_secret, &self.session_id());
        html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
    }

    fn session_id(&self) -> String {
        self.staff
            .as_ref()
            .map_or_else(String::new, |staff| staff.token_id.to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AdminSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        parts.extensions.get::<AdminSession>().cloned().ok_or_else(|| {
            tracing::error!(path = %parts.uri.path(), "an admin route runs without the admin session layer");
            layout::server_error_page()
        })
    }
}

/// A signed-in staff member whose role may use the page (the guard in `super` checked
/// it before the handler runs).
pub struct SignedIn(pub Staff, pub AdminSession);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let session = AdminSession::from_request_parts(parts, state).await?;
        match session.staff.clone() {
            Some(staff) => Ok(SignedIn(staff, session)),
            None => Err(sign_in_redirect(&parts.uri, parts.method.is_safe())),
        }
    }
}

/// 303 to the sign-in page, with `next` set to this page (its query only for a GET).
pub fn sign_in_redirect(uri: &Uri, keep_query: bool) -> Response {
    let here = match uri.query() {
        Some(query) if keep_query => format!("{}?{query}", uri.path()),
        _ => uri.path().to_owned(),
    };
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    layout::see_other(&format!("{}?next={next}", super::auth::SIGN_IN_PATH))
}

// ---- cookies -------------------------------------------------------------------------

/// The `Secure` attribute: on by configuration, and always for a request that came over
/// HTTPS.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.cookie_secure
        || crate::http::security::came_over_https(headers, state.config.trust_forwarded_for)
}

fn admin_cookie(
    secure: bool,
    name: &'static str,
    value: String,
    max_age: Option<i64>,
) -> Cookie<'static> {
    let mut builder = Cookie::build((name, value))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .path(COOKIE_PATH);
    if let Some(secs) = max_age {
        builder = builder.max_age(cookie::time::Duration::seconds(secs));
    }
    builder.build()
}

fn add_cookie(headers: &mut HeaderMap, cookie: &Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        headers.append(header::SET_COOKIE, value);
    }
}

/// Sets the session cookie on a response (after signing in).
pub fn set_staff_cookie(
    state: &AppState,
    request: &HeaderMap,
    response: &mut Response,
    token: &str,
) {
    let cookie = admin_cookie(
        secure(state, request),
        STAFF_COOKIE,
        token.to_owned(),
        Some(crate::staff::SESSION_TTL_SECS),
    );
    add_cookie(response.headers_mut(), &cookie);
}

/// Deletes the session cookie (sign-out, an ended session).
pub fn clear_staff_cookie(state: &AppState, request: &HeaderMap, response: &mut Response) {
    let cookie = admin_cookie(secure(state, request), STAFF_COOKIE, String::new(), Some(0));
    add_cookie(response.headers_mut(), &cookie);
}

// ---- CSRF -----------------------------------------------------------------------------

fn csrf_token(keys: &Keyring, secret: &str, session_id: &str) -> String {
    let message = format!("{secret}\n{session_id}");
    URL_SAFE_NO_PAD.encode(keys.purpose_mac("admin-csrf", message.as_bytes()))
}

fn is_csrf_secret(value: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(value)
        .is_ok_and(|bytes| bytes.len() == CSRF_SECRET_BYTES)
}

/// Checks a request that changes something; gives it back with its body read and put
/// back, or answers the 403 page.
async fn check_csrf(
    state: &AppState,
    session: &AdminSession,
    request: Request,
) -> Result<Request, Response> {
    if !crate::http::session::from_this_site(request.headers(), request.uri()) {
        tracing::info!(path = %request.uri().path(), "refused a cross-site admin form post");
        return Err(expired_form_page());
    }
    if session.csrf_is_new {
        return Err(expired_form_page());
    }
    let (parts, body) = request.into_parts();
    // A plugin package and a product image may be larger than any other form.
    let limit = if parts.uri.path() == super::plugins::UPLOAD_PATH {
        crate::plugins::api::MAX_PACKAGE_BYTES
    } else if super::images::is_upload(&parts.method, parts.uri.path()) {
        super::images::upload_limit(state)
    } else {
        state.config.max_body_bytes
    };
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return Err(layout::message_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "That form was too large",
            "Please go back and try again with less text.",
        ));
    };
    let presented = match multipart_boundary(&parts.headers) {
        Some(boundary) => multipart_csrf(bytes.clone(), boundary).await,
        None => form_urlencoded::parse(&bytes)
            .find(|(key, _)| key == CSRF_FIELD)
            .map(|(_, value)| value.into_owned()),
    };
    let expected = csrf_token(&session.keys, &session.csrf_secret, &session.session_id());
    let checks = presented
        .is_some_and(|token| crate::http::constant_time_eq(token.as_bytes(), expected.as_bytes()));
    if !checks {
        tracing::info!(path = %parts.uri.path(), "refused an admin form post without a valid CSRF token");
        return Err(expired_form_page());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The boundary of a `multipart/form-data` body (a file upload).
fn multipart_boundary(headers: &HeaderMap) -> Option<String> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    multer::parse_boundary(content_type).ok()
}

/// The CSRF field of a multipart body: the forms put it first, before the file.
async fn multipart_csrf(bytes: bytes::Bytes, boundary: String) -> Option<String> {
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some(CSRF_FIELD) {
            return field.text().await.ok();
        }
    }
    None
}

fn expired_form_page() -> Response {
    layout::message_page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "For your security it was not accepted. Go back, reload the page and try again.",
    )
}

// ---- the layer ------------------------------------------------------------------------

/// The staff member of the session cookie: only a sign-in session (not an API token)
/// that is open. A failure to read is logged and treated as signed out.
async fn staff_of(state: &AppState, headers: &HeaderMap) -> Option<Staff> {
    let token = crate::http::session::request_cookie(headers, STAFF_COOKIE)?;
    match crate::staff::authenticate(&state.db, token).await {
        Ok(staff) if staff.is_session() => Some(staff),
        Ok(_) | Err(Error::Unauthorized) => None,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "checking an admin session failed");
            None
        }
    }
}

/// Middleware over every admin route: the session, the CSRF check of unsafe methods, the
/// CSRF cookie when a page made one, and `no-store` on every answer (admin pages are
/// personal).
pub async fn layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let staff = staff_of(&state, request.headers()).await;
    let (csrf_secret, csrf_is_new) =
        match crate::http::session::request_cookie(request.headers(), CSRF_COOKIE) {
            Some(secret) if is_csrf_secret(secret) => (secret.to_owned(), false),
            _ => (
                URL_SAFE_NO_PAD.encode(rand::random::<[u8; CSRF_SECRET_BYTES]>()),
                true,
            ),
        };
    let session = AdminSession {
        staff,
        csrf_secret,
        csrf_is_new,
        csrf_used: Arc::new(AtomicBool::new(false)),
        keys: state.keys.clone(),
    };
    let secure_cookies = secure(&state, request.headers());
    if !request.method().is_safe() {
        request = match check_csrf(&state, &session, request).await {
            Ok(request) => request,
            Err(refused) => return no_store(refused),
        };
    }
    request.extensions_mut().insert(session.clone());
    let mut response = next.run(request).await;
    if session.csrf_is_new && session.csrf_used.load(Ordering::Relaxed) {
        let cookie = admin_cookie(
            secure_cookies,
            CSRF_COOKIE,
            session.csrf_secret.clone(),
            None,
        );
        add_cookie(response.headers_mut(), &cookie);
    }
    no_store(response)
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    response
}
