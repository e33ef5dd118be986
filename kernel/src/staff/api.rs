//! Staff routes: sign-in and sign-out under `/api/v1/staff`, and staff management under
//! `/api/v1/admin` (guarded by the admin middleware like every admin route).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::mfa_api::ClientAddress;
use super::{
    IssuedToken, NewStaff, SignInAnswer, StaffCredentials, StaffPatch, StaffUser, TokenInfo,
};
use crate::app::AppState;
use crate::error::{ErrorBody, Result};
use crate::http::extract::{JsonBody, PathParam, StaffAuth};

/// Sign-in and sign-out: not behind the admin middleware (sign-in has no token yet);
/// two-factor sign-in and the staff member's own sessions ([`super::mfa_api`]); single
/// sign-on ([`super::sso::api`]).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .merge(super::mfa_api::routes())
        .merge(super::sso::api::routes())
}

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list_staff, create_staff))
        .routes(routes!(get_staff, update_staff))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .merge(super::mfa_api::admin_routes())
        .merge(super::sso::api::admin_routes())
}

/// Signs a staff user in: a session token (12 hours) for the admin API.
///
/// A wrong email or password gets the same 401. A staff member linked to the single
/// sign-on provider (other than an owner) gets 403 `sso_required`: they sign in through
/// the provider, so one removed there cannot sign in. A staff member with two-factor sign-in
/// on gets no token yet but `{"mfa_required": true, "challenge", "methods"}`: the challenge (5
/// minutes, single use) and a second factor go to `POST /api/v1/staff/sign-in/mfa`.
#[utoipa::path(post, path = "/sign-in", tag = "staff", operation_id = "staff_sign_in", request_body = StaffCredentials,
    responses(
        (status = 200, body = SignInAnswer, description = "Signed in, or a second factor is required",
            examples(
                ("session" = (summary = "Signed in (no two-factor sign-in): the session",
                    value = json!({"token": "olv_Zk3xQm9…", "token_type": "Bearer", "expires_at": "2026-12-03T02:00:00.000Z",
                        "staff": {"id": 2, "email": "ana@shop.example", "name": "Ana", "role": "support",
                            "permissions": ["catalog.read", "inventory.read", "customers.read", "privacy.manage", "orders.read", "orders.write"], "has_password": true, "disabled": false,
                            "created_at": "2026-12-01T09:00:00.000Z"}}))),
                ("mfa_required" = (summary = "Two-factor sign-in is on: answer the challenge",
                    value = json!({"mfa_required": true, "challenge": "olvc_Vn3m0Qy8dW2kU6tR1xPz7aHc4sLq9bEf0jNgYiKoTuM",
                        "expires_at": "2026-12-02T14:05:00.000Z", "methods": ["totp", "recovery_code"]}))),
            )),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The staff member is linked to the store's single sign-on provider and signs in through it (`error`: `sso_required`); owners keep their password",
            example = json!({"error": "sso_required", "message": "this staff member signs in through the store's single sign-on provider, not with a password: use its sign-in (/api/v1/staff/sso/start)"}))))]
async fn sign_in(
    State(state): State<AppState>,
    ClientAddress(from): ClientAddress,
    JsonBody(input): JsonBody<StaffCredentials>,
) -> Result<Json<SignInAnswer>> {
    // Guesses spread over many clients still meet a limit per staff account.
    let account = format!(
        "staff:{}",
        state
            .keys
            .lookup_hash(&crate::accounts::normalise_email(&input.email))
    );
    state
        .limiter
        .hit(crate::ratelimit::Class::SignInAccount, &account)
        .await?;
    Ok(Json(super::sign_in(&state, input, from).await?))
}

/// Revokes the token the request carries.
#[utoipa::path(post, path = "/sign-out", tag = "staff", operation_id = "staff_sign_out", security(("staff_token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn sign_out(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<StatusCode> {
    let token = crate::http::bearer_token(&headers).ok_or(crate::error::Error::Unauthorized)?;
    let staff = super::authenticate(&state.db, token).await?;
    super::sign_out(&state.db, &staff).await?;
    state.limiter.staff_token_refused(token);
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in staff user, with the permissions of their role.
#[utoipa::path(get, path = "/me", tag = "admin-staff", operation_id = "staff_me", security(("staff_token" = [])),
    responses((status = 200, body = StaffUser), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, StaffAuth(staff): StaffAuth) -> Result<Json<StaffUser>> {
    Ok(Json(super::get_user(&state.db, staff.id).await?))
}

#[utoipa::path(get, path = "/staff", tag = "admin-staff", security(("staff_token" = [])),
    responses((status = 200, body = Vec<StaffUser>), (status = 403, body = ErrorBody)))]
async fn list_staff(State(state): State<AppState>) -> Result<Json<Vec<StaffUser>>> {
    Ok(Json(super::list_users(&state.db).await?))
}

/// Creates a staff user with a role.
#[utoipa::path(post, path = "/staff", tag = "admin-staff", request_body = NewStaff,
    security(("staff_token" = [])),
    responses((status = 201, body = StaffUser), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create_staff(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(input): JsonBody<NewStaff>,
) -> Result<(StatusCode, Json<StaffUser>)> {
    let user = super::create_user(&state.db, &staff.actor, input).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(get, path = "/staff/{id}", tag = "admin-staff", params(("id" = i64, Path)),
    security(("staff_token" = [])),
    responses((status = 200, body = StaffUser), (status = 404, body = ErrorBody)))]
async fn get_staff(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<StaffUser>> {
    Ok(Json(super::get_user(&state.db, id).await?))
}

/// Changes a staff user's name, role, password or disables them. The last active
/// owner cannot be demoted or disabled (409).
#[utoipa::path(patch, path = "/staff/{id}", tag = "admin-staff", params(("id" = i64, Path)),
    request_body = StaffPatch, security(("staff_token" = [])),
    responses((status = 200, body = StaffUser), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_staff(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
    JsonBody(patch): JsonBody<StaffPatch>,
) -> Result<Json<StaffUser>> {
    Ok(Json(
        super::update_user(&state.db, &staff.actor, id, patch).await?,
    ))
}

/// A staff user's tokens (never their secrets).
#[utoipa::path(get, path = "/staff/{id}/tokens", tag = "admin-staff", params(("id" = i64, Path)),
    security(("staff_token" = [])),
    responses((status = 200, body = Vec<TokenInfo>), (status = 404, body = ErrorBody)))]
async fn list_tokens(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<Vec<TokenInfo>>> {
    Ok(Json(super::list_tokens(&state.db, id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for, e.g. `ci deploy`.
    #[schema(value_type = crate::http::schema::SingleLine100)]
    pub label: String,
}

/// Makes an API token for a staff user; the secret is in this answer only.
#[utoipa::path(post, path = "/staff/{id}/tokens", tag = "admin-staff", params(("id" = i64, Path)),
    request_body = NewToken, security(("staff_token" = [])),
    responses((status = 201, body = IssuedToken), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    ClientAddress(from): ClientAddress,
    PathParam(id): PathParam<i64>,
    JsonBody(input): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<IssuedToken>)> {
    let issued =
        super::create_api_token_from(&state.db, &staff.actor, id, &input.label, from.as_deref())
            .await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Revokes one of a staff user's tokens.
#[utoipa::path(delete, path = "/staff/{id}/tokens/{token_id}", tag = "admin-staff",
    params(("id" = i64, Path), ("token_id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam((id, token_id)): PathParam<(i64, i64)>,
) -> Result<StatusCode> {
    super::revoke_token(&state.db, &staff.actor, id, token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
