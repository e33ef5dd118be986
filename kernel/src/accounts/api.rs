//! Customer account routes under `/api/v1/account`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    Account, Credentials, ImportReport, LegacyCustomer, PasswordChange, Registration, TokenPair,
};
use crate::app::AppState;
use crate::error::{ErrorBody, Result};
use crate::http::extract::{CustomerAuth, JsonBody, StaffAuth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(sign_in))
        .routes(routes!(refresh))
        .routes(routes!(sign_out))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import_customers))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerImport {
    pub customers: Vec<LegacyCustomer>,
}

/// Imports customers from a legacy system with their password hashes (bcrypt or
/// argon2id), all or nothing; emails already registered are skipped. A bcrypt hash is
/// accepted once and replaced by argon2id at that customer's first sign-in.
#[utoipa::path(post, path = "/customers/import", tag = "admin-customers", request_body = CustomerImport,
    security(("staff_token" = [])),
    responses((status = 200, body = ImportReport), (status = 422, body = ErrorBody)))]
async fn import_customers(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(input): JsonBody<CustomerImport>,
) -> Result<Json<ImportReport>> {
    Ok(Json(
        super::import_legacy(&state, &staff.actor, input.customers).await?,
    ))
}

/// Creates a customer account.
#[utoipa::path(post, path = "/register", tag = "account", request_body = Registration,
    responses((status = 201, body = Account), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<Registration>,
) -> Result<(StatusCode, Json<Account>)> {
    let account = super::register(&state, input).await?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// Signs in with email and password: an access token and a refresh token. A wrong email
/// and a wrong password get the same 401.
#[utoipa::path(post, path = "/sign-in", tag = "account", request_body = Credentials,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn sign_in(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<Credentials>,
) -> Result<Json<TokenPair>> {
    Ok(Json(super::sign_in(&state, input).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Exchanges a refresh token for a new pair. Each refresh token works once; presenting
/// a used one ends the whole session.
#[utoipa::path(post, path = "/refresh", tag = "account", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<RefreshRequest>,
) -> Result<Json<TokenPair>> {
    Ok(Json(super::refresh(&state, &input.refresh_token).await?))
}

/// Ends the session: its refresh tokens and access tokens stop working.
#[utoipa::path(post, path = "/sign-out", tag = "account", request_body = RefreshRequest,
    security(("customer_token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn sign_out(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    JsonBody(input): JsonBody<RefreshRequest>,
) -> Result<StatusCode> {
    super::sign_out(&state, &auth, &input.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in customer's own account.
#[utoipa::path(get, path = "/me", tag = "account", security(("customer_token" = [])),
    responses((status = 200, body = Account), (status = 401, body = ErrorBody)))]
async fn me(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Json<Account>> {
    Ok(Json(super::account(&state, auth.customer_id).await?))
}

/// Changes the password (the current one is required) and ends every other session.
#[utoipa::path(post, path = "/password", tag = "account", request_body = PasswordChange,
    security(("customer_token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    JsonBody(input): JsonBody<PasswordChange>,
) -> Result<StatusCode> {
    super::change_password(&state, &auth, input).await?;
    Ok(StatusCode::NO_CONTENT)
}
