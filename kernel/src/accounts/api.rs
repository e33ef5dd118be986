//! Customer account routes under `/api/v1/account`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::addresses::{self, Address, AddressChanges, NewAddress};
use super::consents::{self, ConsentUpdate, Consents};
use super::privacy::{
    self, CustomerView, ErasureRequest, PrivacyRequest, RequestFilter, RequestStatus,
    StaffErasureRequest,
};
use super::{
    Account, Credentials, ImportReport, LegacyCustomer, PasswordChange, Registration, TokenPair,
};
use crate::app::AppState;
use crate::error::{ErrorBody, Result};
use crate::http::extract::{CustomerAuth, JsonBody, PathParam, QueryParams, StaffAuth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(sign_in))
        .routes(routes!(refresh))
        .routes(routes!(sign_out))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(list_addresses, create_address))
        .routes(routes!(get_address, update_address, delete_address))
        .routes(routes!(get_consents, put_consents))
        .routes(routes!(export))
        .routes(routes!(request_erasure))
}

/// Routes outside `/account` that need no sign-in: the status of a privacy request, for
/// whoever holds its unguessable id (an erased customer cannot sign in any more).
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(privacy_request_status))
}

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_customers))
        .routes(routes!(list_privacy_requests))
        .routes(routes!(view_customer))
        .routes(routes!(erase_customer))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerImport {
    /// At most 10,000.
    #[schema(max_items = 10_000)]
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

/// The signed-in customer's addresses, oldest first.
#[utoipa::path(get, path = "/addresses", tag = "account", security(("customer_token" = [])),
    responses((status = 200, body = Vec<Address>), (status = 401, body = ErrorBody)))]
async fn list_addresses(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Json<Vec<Address>>> {
    Ok(Json(addresses::list(&state, auth.customer_id).await?))
}

/// Adds an address (at most 50). The first one, or one sent with `is_default: true`,
/// becomes the default.
#[utoipa::path(post, path = "/addresses", tag = "account", request_body = NewAddress,
    security(("customer_token" = [])),
    responses((status = 201, body = Address), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_address(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    JsonBody(input): JsonBody<NewAddress>,
) -> Result<(StatusCode, Json<Address>)> {
    let address = addresses::create(&state, &auth, input).await?;
    Ok((StatusCode::CREATED, Json(address)))
}

/// One of the customer's addresses; another customer's is a 404 like a missing one.
#[utoipa::path(get, path = "/addresses/{id}", tag = "account", security(("customer_token" = [])),
    params(("id" = String, Path, description = "The address id (`adr_…`)")),
    responses((status = 200, body = Address), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_address(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    PathParam(id): PathParam<String>,
) -> Result<Json<Address>> {
    Ok(Json(addresses::get(&state, auth.customer_id, &id).await?))
}

/// Changes an address: absent fields stay, `null` clears an optional one.
#[utoipa::path(patch, path = "/addresses/{id}", tag = "account", request_body = AddressChanges,
    security(("customer_token" = [])),
    params(("id" = String, Path, description = "The address id (`adr_…`)")),
    responses((status = 200, body = Address), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_address(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    PathParam(id): PathParam<String>,
    JsonBody(changes): JsonBody<AddressChanges>,
) -> Result<Json<Address>> {
    Ok(Json(addresses::update(&state, &auth, &id, changes).await?))
}

/// Deletes an address.
#[utoipa::path(delete, path = "/addresses/{id}", tag = "account", security(("customer_token" = [])),
    params(("id" = String, Path, description = "The address id (`adr_…`)")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_address(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    PathParam(id): PathParam<String>,
) -> Result<StatusCode> {
    addresses::delete(&state, auth.customer_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The customer's consents: the current state of each purpose and the history.
#[utoipa::path(get, path = "/consents", tag = "account", security(("customer_token" = [])),
    responses((status = 200, body = Consents), (status = 401, body = ErrorBody)))]
async fn get_consents(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Json<Consents>> {
    Ok(Json(consents::read(&state, auth.customer_id).await?))
}

/// Sets the purposes named (others keep their state); each change is appended to the
/// history with the wording version and the time.
#[utoipa::path(put, path = "/consents", tag = "account", request_body = ConsentUpdate,
    security(("customer_token" = [])),
    responses((status = 200, body = Consents), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn put_consents(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    JsonBody(update): JsonBody<ConsentUpdate>,
) -> Result<Json<Consents>> {
    Ok(Json(consents::update(&state, &auth, update).await?))
}

/// Everything held about the customer (GDPR export) as a JSON download: profile,
/// addresses, orders, subscriptions, loyalty ledger, plugin-held data, consents with
/// history, sessions, privacy requests, and the audit entries about the account.
#[utoipa::path(get, path = "/export", tag = "account", security(("customer_token" = [])),
    responses((status = 200, description = "`{format, generated_at, pseudonym, privacy_request, sections: {…}}`, as an attachment", body = serde_json::Value),
        (status = 401, body = ErrorBody)))]
async fn export(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Response> {
    let document = privacy::export(&state, &auth).await?;
    let disposition = format!(
        "attachment; filename=\"olivine-export-{}.json\"",
        auth.pseudonym
    );
    let mut response = Json(document).into_response();
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition)
            .map_err(|e| anyhow::anyhow!("content disposition: {e}"))?,
    );
    Ok(response)
}

/// Erases the customer's identity (GDPR erasure). Needs the current password and
/// `"confirm": "erase my account"`. Answers 202 with the request and its status URL,
/// which works without signing in: afterwards the account can no longer sign in.
#[utoipa::path(post, path = "/erasure", tag = "account", request_body = ErasureRequest,
    security(("customer_token" = [])),
    responses((status = 202, body = RequestStatus), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn request_erasure(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    JsonBody(input): JsonBody<ErasureRequest>,
) -> Result<(StatusCode, Json<RequestStatus>)> {
    let request = privacy::request_erasure(&state, &auth, input).await?;
    Ok((StatusCode::ACCEPTED, Json(request.public())))
}

/// The status of a privacy request, for whoever holds its id. No personal data.
#[utoipa::path(get, path = "/privacy-requests/{id}", tag = "privacy",
    params(("id" = String, Path, description = "The request id (`pr_…`), as answered when it was made")),
    responses((status = 200, body = RequestStatus), (status = 404, body = ErrorBody)))]
async fn privacy_request_status(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<RequestStatus>> {
    Ok(Json(privacy::request_status(&state, &id).await?))
}

#[derive(Serialize, ToSchema)]
pub struct PrivacyRequestList {
    pub requests: Vec<PrivacyRequest>,
}

/// Privacy requests (exports and erasures), newest first, optionally by status and
/// kind. Permission: `privacy.read`.
#[utoipa::path(get, path = "/privacy-requests", tag = "admin-privacy", params(RequestFilter),
    security(("staff_token" = [])),
    responses((status = 200, body = PrivacyRequestList), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn list_privacy_requests(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<RequestFilter>,
) -> Result<Json<PrivacyRequestList>> {
    Ok(Json(PrivacyRequestList {
        requests: privacy::list_requests(&state, filter).await?,
    }))
}

/// The support view of a customer: identity decrypted, addresses, current consents,
/// open sessions and privacy requests. Each view is audited. Permission:
/// `customers.read_identity`.
#[utoipa::path(get, path = "/customers/{pseudonym}", tag = "admin-customers",
    params(("pseudonym" = String, Path, description = "The customer's pseudonym (`c_…`)")),
    security(("staff_token" = [])),
    responses((status = 200, body = CustomerView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn view_customer(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(pseudonym): PathParam<String>,
) -> Result<Json<CustomerView>> {
    Ok(Json(
        privacy::customer_view(&state, &staff.actor, &pseudonym).await?,
    ))
}

/// Erases a customer on a verified request (e.g. received by mail); `confirm` repeats
/// the pseudonym. 202 with the request; on an account erased before, 200 with the
/// completed request. Audited with the staff actor. Permission: `privacy.erase`.
#[utoipa::path(post, path = "/customers/{pseudonym}/erasure", tag = "admin-privacy",
    request_body = StaffErasureRequest,
    params(("pseudonym" = String, Path, description = "The customer's pseudonym (`c_…`)")),
    security(("staff_token" = [])),
    responses((status = 202, body = PrivacyRequest), (status = 200, body = PrivacyRequest),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn erase_customer(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(pseudonym): PathParam<String>,
    JsonBody(input): JsonBody<StaffErasureRequest>,
) -> Result<(StatusCode, Json<PrivacyRequest>)> {
    let (request, processed_now) =
        privacy::staff_erasure(&state, &staff.actor, &pseudonym, input).await?;
    let status = if processed_now {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(request)))
}
