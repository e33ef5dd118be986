//! Routes of single sign-on: `GET /api/v1/staff/sso/start` and `/callback` (no token:
//! they sign in), and the owner's settings at `/api/v1/admin/staff/sso` (staff.manage).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::flow::{self, Answer, BROWSER_COOKIE, CallbackQuery};
use super::{SsoSettings, SsoSettingsInput};
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Result};
use crate::http::extract::{JsonBody, QueryParams, StaffAuth};
use crate::staff::StaffSession;
use crate::staff::mfa_api::ClientAddress;

/// Routes nested under `/api/v1/staff`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(callback))
}

/// Routes nested under `/api/v1/admin` (staff.manage).
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings, delete_settings))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StartQuery {
    /// What the callback answers: `json` (default), the session as JSON; `admin`, the
    /// admin's session cookie and on to `next`.
    #[param(inline)]
    pub answer: Option<Answer>,
    /// With `answer=admin`: the admin page to go on to (a path under `/admin`).
    #[param(max_length = 2048, pattern = r"^/admin(/[A-Za-z0-9._~/-]*)?$")]
    pub next: Option<String>,
}

/// The `olv_sso` cookie: `SameSite=Lax` (it comes back on the provider's redirect),
/// only for these routes, for as long as a sign-in may take.
fn browser_cookie(state: &AppState, request: &HeaderMap, secret: &str) -> Option<HeaderValue> {
    let secure = state.config.cookie_secure
        || crate::http::security::came_over_https(request, state.config.trust_forwarded_for);
    let cookie = Cookie::build((BROWSER_COOKIE, secret.to_owned()))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .path("/api/v1/staff/sso")
        .max_age(cookie::time::Duration::seconds(flow::FLOW_TTL_SECS))
        .build();
    HeaderValue::from_str(&cookie.to_string()).ok()
}

/// An admin page to go on to, or 422 naming `next`.
fn admin_next(next: Option<&str>) -> Result<Option<&str>> {
    let Some(next) = next else { return Ok(None) };
    crate::http::session::safe_next(next)
        .filter(|n| *n == "/admin" || n.starts_with("/admin/"))
        .map(Some)
        .ok_or_else(|| Error::invalid("next", "must be a page of the admin (a path under /admin)"))
}

/// Starts signing in through the store's OpenID Connect provider.
///
/// Redirects (303) to the provider's authorization endpoint: the authorization code flow
/// with PKCE, a `state` bound to this browser by the `olv_sso` cookie, and a nonce. The
/// provider sends the browser back to `/api/v1/staff/sso/callback`. 404 when single
/// sign-on is not set up; 503 when the provider's discovery document cannot be read.
#[utoipa::path(get, path = "/sso/start", tag = "staff", operation_id = "staff_sso_start",
    params(StartQuery),
    responses(
        (status = 303, description = "To the provider's sign-in page",
            headers(("Location" = String, description = "The provider's authorization URL"))),
        (status = 404, body = ErrorBody, description = "Single sign-on is not set up"),
        (status = 503, body = ErrorBody, description = "The provider could not be reached")))]
async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<StartQuery>,
) -> Result<Response> {
    let next = admin_next(query.next.as_deref())?;
    let existing = crate::http::session::request_cookie(&headers, BROWSER_COOKIE);
    let started = flow::start(&state, query.answer.unwrap_or_default(), next, existing).await?;
    let location = HeaderValue::from_str(&started.authorize_url)
        .map_err(|err| Error::Internal(anyhow::anyhow!("the authorization URL: {err}")))?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    if let Some(cookie) = browser_cookie(&state, &headers, &started.browser_secret) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Where the provider sends the browser back: the session.
///
/// The `state` must be one this browser started (10 minutes, once); the code is traded
/// for tokens with the PKCE verifier, and the ID token's signature (RS*, PS*, ES256/384,
/// EdDSA: never `none` or HMAC), issuer, audience, expiry and nonce are checked against
/// the provider's keys. The account is linked to the staff member with its verified email
/// (or a new one), their role set from the groups claim by the owner's mapping. Answers
/// the session as `POST /sign-in` does (`answer=json`), or for `answer=admin` sets the
/// admin's session cookie. 401 naming `state` or `code` when they do not check out; 403
/// when the provider refused, no group maps to a role, or the staff member is disabled.
#[utoipa::path(get, path = "/sso/callback", tag = "staff", operation_id = "staff_sso_callback",
    params(CallbackQuery),
    responses(
        (status = 200, description = "Signed in: the session (JSON), or the admin's session cookie and a page that goes on to the admin",
            content((StaffSession = "application/json"), (String = "text/html"))),
        (status = 303, description = "An admin sign-in that was refused: to the admin's sign-in page, which says why"),
        (status = 401, body = ErrorBody, description = "The state is unknown, expired, used or from another browser (`state`), or the code or ID token did not check out (`code`)"),
        (status = 403, body = ErrorBody, description = "Refused: by the provider (`sso_refused_by_provider`), no mapped group (`sso_no_access`), a disabled staff member (`sso_staff_disabled`), no verified email (`sso_email_not_verified`)"),
        (status = 404, body = ErrorBody, description = "Single sign-on is not set up"),
        (status = 503, body = ErrorBody, description = "The provider could not be reached")))]
async fn callback(
    State(state): State<AppState>,
    ClientAddress(from): ClientAddress,
    headers: HeaderMap,
    QueryParams(query): QueryParams<CallbackQuery>,
) -> Result<Response> {
    let browser = crate::http::session::request_cookie(&headers, BROWSER_COOKIE);
    let flow = flow::take_flow(&state, query.state.as_deref(), browser).await?;
    let signed = flow::complete(&state, &flow, &query, from.as_deref()).await;
    let mut response = match (flow.answer, signed) {
        (Answer::Json, Ok(session)) => Json(session).into_response(),
        (Answer::Json, Err(err)) => err.into_response(),
        (Answer::Admin, Ok(session)) => crate::admin_ui::auth::sso_signed_in(
            &state,
            &headers,
            &session.token,
            flow.next.as_deref(),
        ),
        (Answer::Admin, Err(err)) => crate::admin_ui::auth::sso_refused(&err),
    };
    // The answer holds a session; this URL holds the code: neither is kept or passed on.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// The store's single sign-on provider (never its client secret).
#[utoipa::path(get, path = "/staff/sso", tag = "admin-staff", operation_id = "staff_sso_settings",
    security(("staff_token" = [])),
    responses((status = 200, body = SsoSettings),
        (status = 404, body = ErrorBody, description = "Single sign-on is not set up")))]
async fn get_settings(State(state): State<AppState>) -> Result<Json<SsoSettings>> {
    Ok(Json(super::settings(&state).await?))
}

/// Sets the store's single sign-on provider up, or changes it.
///
/// The client secret is write-only (stored encrypted); leave it out to keep the stored
/// one. Register the answer's `redirect_url` at the provider. The role mapping is tried
/// in order: the first group the staff member has sets their role at each sign-in.
/// Audited (`staff.sso_configured`).
#[utoipa::path(put, path = "/staff/sso", tag = "admin-staff", operation_id = "staff_sso_configure",
    request_body(content = SsoSettingsInput, example = json!({
        "display_name": "Okta", "issuer_url": "https://example.okta.com/oauth2/default",
        "client_id": "0oa1b2c3d4", "client_secret": "the secret the provider issued",
        "groups_claim": "groups",
        "role_mapping": [{"group": "store-owners", "role": "owner"}, {"group": "store-support", "role": "support"}]})),
    security(("staff_token" = [])),
    responses((status = 200, body = SsoSettings), (status = 422, body = ErrorBody)))]
async fn put_settings(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(input): JsonBody<SsoSettingsInput>,
) -> Result<Json<SsoSettings>> {
    Ok(Json(
        super::save_settings(&state, &staff.actor, input).await?,
    ))
}

/// Turns single sign-on off.
///
/// Sign-ins in progress end; sessions made through it stay until they expire or are
/// revoked. Audited (`staff.sso_removed`).
#[utoipa::path(delete, path = "/staff/sso", tag = "admin-staff", operation_id = "staff_sso_remove",
    security(("staff_token" = [])),
    responses((status = 204),
        (status = 404, body = ErrorBody, description = "Single sign-on is not set up")))]
async fn delete_settings(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
) -> Result<StatusCode> {
    super::remove_settings(&state, &staff.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}
