//! Routes of two-factor sign-in and of a staff member's own sessions, under
//! `/api/v1/staff` (not behind the admin middleware: the second sign-in step has no token
//! yet, and setting two-factor sign-in up must stay open to whom the store requires it
//! of), and the owner's `POST /api/v1/admin/staff/{id}/sessions/revoke` and
//! `/staff/{id}/mfa/reset`.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::mfa::{
    self, ConfirmTotp, DisableTotp, DisableTotpInput, FactorReset, MfaStatus, RecoveryCodes,
    SecondFactorAnswer, SecondFactorInput, Standing, TotpEnrolment,
};
use super::passkeys::{
    self, NewPasskey, PasskeyChallenge, PasskeyInfo, PasskeyOptions, RemovePasskey,
};
use super::sessions::{self, RevokedSessions, SessionInfo};
use super::{Staff, StaffSession};
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Result};
use crate::http::extract::{JsonBody, PathParam, StaffAuth};

/// Routes nested under `/api/v1/staff`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in_mfa))
        .routes(routes!(sign_in_passkey))
        .routes(routes!(mfa_status))
        .routes(routes!(list_passkeys, finish_passkey))
        .routes(routes!(start_passkey))
        .routes(routes!(remove_passkey))
        .routes(routes!(start_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(disable_totp))
        .routes(routes!(new_recovery_codes))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
}

/// Routes nested under `/api/v1/admin` (staff.manage).
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(revoke_staff_sessions))
        .routes(routes!(reset_staff_factor))
}

/// The address a request came from (see [`sessions::client_address`]).
pub struct ClientAddress(pub Option<String>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        Ok(ClientAddress(sessions::client_address(
            state.config.trust_forwarded_for,
            &parts.headers,
            &parts.extensions,
        )))
    }
}

/// A staff member signed in with a bearer token, for their own `/api/v1/staff/me`
/// routes: 401 without a valid token. Open to a staff member the store requires
/// two-factor sign-in of who has not set it up (that is what these routes are for); a
/// session signed in without the factor of one who has it is refused as on admin routes.
pub struct SignedIn(pub Staff);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = crate::http::bearer_token(&parts.headers).ok_or(Error::Unauthorized)?;
        let staff = match super::authenticate(&state.db, token).await {
            Ok(staff) => {
                state.limiter.staff_token_accepted(token, staff.id);
                staff
            }
            Err(Error::Unauthorized) => {
                state.limiter.staff_token_refused(token);
                return Err(Error::Unauthorized);
            }
            Err(err) => return Err(err),
        };
        let from = sessions::client_address(
            state.config.trust_forwarded_for,
            &parts.headers,
            &parts.extensions,
        );
        sessions::touch(state, &staff, from.as_deref()).await;
        let standing = mfa::standing(state, &staff).await?;
        if standing == Standing::SessionLacksFactor
            && let Some(refusal) = mfa::refusal(standing)
        {
            return Err(refusal);
        }
        Ok(SignedIn(staff))
    }
}

/// Answers a sign-in challenge with a second factor: the session.
///
/// The second step of signing in, for a staff member with two-factor sign-in on: the
/// challenge `POST /api/v1/staff/sign-in` answered, and a `code` from the authenticator
/// app, a `recovery_code`, or a `passkey`'s answer (the `PublicKeyCredential`
/// `navigator.credentials.get` answered for the options of
/// `POST /sign-in/mfa/passkey`). Answers the session, as signing in without two-factor
/// does. A code works once, within one 30-second step either side of now; a passkey's
/// answer once, for its challenge; a wrong one counts against the challenge (5) and the
/// account (10 within 15 minutes lock the second factor for 15 minutes: 429).
#[utoipa::path(post, path = "/sign-in/mfa", tag = "staff", operation_id = "staff_sign_in_mfa",
    request_body(content = SecondFactorAnswer, examples(
        ("totp" = (summary = "A code from the authenticator app",
            value = json!({"challenge": "olvc_Vn3m0Qy8dW2kU6tR1xPz7aHc4sLq9bEf0jNgYiKoTuM", "code": "492039"}))),
        ("recovery_code" = (summary = "A recovery code (each works once)",
            value = json!({"challenge": "olvc_Vn3m0Qy8dW2kU6tR1xPz7aHc4sLq9bEf0jNgYiKoTuM", "recovery_code": "7k2m-9xq4-hv3c"}))),
        ("passkey" = (summary = "A passkey's answer",
            value = json!({"challenge": "olvc_Vn3m0Qy8dW2kU6tR1xPz7aHc4sLq9bEf0jNgYiKoTuM", "passkey": {
                "id": "x2Qn…", "rawId": "x2Qn…", "type": "public-key",
                "response": {"authenticatorData": "SZYN5YgO…", "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0Ii…",
                    "signature": "MEUCIQD…", "userHandle": "q1Xy…"}}}))),
    )),
    responses(
        (status = 200, body = StaffSession, description = "Signed in: a session token (12 hours)"),
        (status = 401, body = ErrorBody, description = "The challenge is unknown, used, expired or spent (`fields`: `challenge`), or the code, recovery code or passkey's answer is wrong or used (`fields`: `code` / `recovery_code` / `passkey`)",
            example = json!({"error": "invalid_credentials", "message": "the code is wrong, expired or used already",
                "fields": [{"field": "code", "message": "the code is wrong, expired or used already"}]})),
        (status = 403, body = ErrorBody, description = "The staff member was linked to the single sign-on provider meanwhile and signs in through it (`error`: `sso_required`)"),
        (status = 429, body = ErrorBody, description = "Too many attempts: the staff member's second factor is locked for a while, or the client passed its rate limit (see Retry-After)")))]
async fn sign_in_mfa(
    State(state): State<AppState>,
    ClientAddress(from): ClientAddress,
    JsonBody(input): JsonBody<SecondFactorInput>,
) -> Result<Json<StaffSession>> {
    Ok(Json(mfa::complete_sign_in(&state, input, from).await?))
}

/// Asks for a passkey's answer to a sign-in challenge.
///
/// For a challenge whose `methods` name `passkey`: the options to give
/// `navigator.credentials.get` (`options.publicKey`, binary values base64url), naming the
/// staff member's passkeys; send its answer to `POST /sign-in/mfa` as `passkey`, within
/// 5 minutes. Asking again replaces the options. 401 naming `challenge` as there; 409
/// when the staff member has no passkey, or the store's public address is not a domain
/// name passkeys can be bound to.
#[utoipa::path(post, path = "/sign-in/mfa/passkey", tag = "staff", operation_id = "staff_sign_in_mfa_passkey",
    request_body(content = PasskeyChallenge, example = json!({"challenge": "olvc_Vn3m0Qy8dW2kU6tR1xPz7aHc4sLq9bEf0jNgYiKoTuM"})),
    responses((status = 200, body = PasskeyOptions), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "The client passed its rate limit (see Retry-After)")))]
async fn sign_in_passkey(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<PasskeyChallenge>,
) -> Result<Json<PasskeyOptions>> {
    Ok(Json(passkeys::start_sign_in(&state, input).await?))
}

/// The signed-in staff member's passkeys.
///
/// Oldest first: the name given, when added, when last used to sign in.
#[utoipa::path(get, path = "/me/mfa/passkeys", tag = "staff", operation_id = "staff_passkeys",
    security(("staff_token" = [])),
    responses((status = 200, body = Vec<PasskeyInfo>)))]
async fn list_passkeys(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
) -> Result<Json<Vec<PasskeyInfo>>> {
    Ok(Json(passkeys::list(&state, staff.id).await?))
}

/// Starts adding a passkey.
///
/// The options to give `navigator.credentials.create` (`options.publicKey`, binary
/// values base64url): user verification required, attestation `none`, the staff
/// member's passkeys excluded. Send its answer to `POST /me/mfa/passkeys` within 5
/// minutes; starting again replaces the options. From a session (403 with an API
/// token); 409 when the store's public address is not a domain name passkeys can be
/// bound to, or at 20 passkeys.
#[utoipa::path(post, path = "/me/mfa/passkeys/start", tag = "staff", operation_id = "staff_passkey_start",
    security(("staff_token" = [])),
    responses((status = 200, body = PasskeyOptions), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn start_passkey(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
) -> Result<Json<PasskeyOptions>> {
    Ok(Json(passkeys::start_registration(&state, &staff).await?))
}

/// Adds a passkey: the browser's answer to the options of `POST /me/mfa/passkeys/start`.
///
/// With a name for it. Sign-in then asks for a second factor, and takes the passkey; the
/// session counts as signed in with a second factor from now on. Audited. 422 naming
/// `credential` when it does not answer the options (another challenge, another origin,
/// no user verification), or `name`; 409 when no registration is waiting (none started,
/// it expired or it was answered) or the passkey is registered already.
#[utoipa::path(post, path = "/me/mfa/passkeys", tag = "staff", operation_id = "staff_passkey_add",
    request_body(content = NewPasskey, example = json!({"name": "YubiKey on my keyring", "credential": {
        "id": "x2Qn…", "rawId": "x2Qn…", "type": "public-key",
        "response": {"attestationObject": "o2NmbXRkbm9uZ…", "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIi…"}}})),
    security(("staff_token" = [])),
    responses((status = 201, body = PasskeyInfo), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn finish_passkey(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
    JsonBody(input): JsonBody<NewPasskey>,
) -> Result<(StatusCode, Json<PasskeyInfo>)> {
    Ok((
        StatusCode::CREATED,
        Json(passkeys::finish_registration(&state, &staff, input).await?),
    ))
}

/// Removes one of the signed-in staff member's passkeys.
///
/// Takes the password (limited as signing in is). It no longer signs in; without another
/// second factor, sign-in takes the password alone again. Audited. 401 naming `password`;
/// 404 for a passkey that is not theirs.
#[utoipa::path(delete, path = "/me/mfa/passkeys/{id}", tag = "staff", operation_id = "staff_passkey_remove",
    params(("id" = i64, Path, description = "The passkey's id (from GET /me/mfa/passkeys)")),
    request_body(content = RemovePasskey, example = json!({"password": "a long enough password"})),
    security(("staff_token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn remove_passkey(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
    PathParam(id): PathParam<i64>,
    JsonBody(input): JsonBody<RemovePasskey>,
) -> Result<StatusCode> {
    passkeys::remove(&state, &staff, id, input).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in staff member's two-factor sign-in.
///
/// Off, being set up or on; recovery codes left; passkeys; whether the store requires it
/// of them.
#[utoipa::path(get, path = "/me/mfa", tag = "staff", operation_id = "staff_mfa_status",
    security(("staff_token" = [])),
    responses((status = 200, body = MfaStatus)))]
async fn mfa_status(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
) -> Result<Json<MfaStatus>> {
    Ok(Json(mfa::status(&state, &staff).await?))
}

/// Starts setting up an authenticator app (TOTP).
///
/// A new secret, shown this once as base32, as an `otpauth://` URI and as its QR code
/// (a PNG `data:` URI). Two-factor sign-in stays off until
/// `POST /me/mfa/totp/confirm` with a code from the app; starting again replaces a
/// secret not confirmed yet. From a session signed in with the password (403 with an API
/// token); 409 when it is on already.
#[utoipa::path(post, path = "/me/mfa/totp", tag = "staff", operation_id = "staff_mfa_totp_start",
    security(("staff_token" = [])),
    responses((status = 200, body = TotpEnrolment), (status = 409, body = ErrorBody)))]
async fn start_totp(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
) -> Result<Json<TotpEnrolment>> {
    Ok(Json(mfa::start_enrolment(&state, &staff).await?))
}

/// Turns two-factor sign-in on with the first code from the app.
///
/// Answers 10 recovery codes, this once (stored hashed: they cannot be shown again). The
/// session counts as signed in with the second factor from now on. 422 naming `code`
/// when it does not match; 409 when nothing is being set up.
#[utoipa::path(post, path = "/me/mfa/totp/confirm", tag = "staff", operation_id = "staff_mfa_totp_confirm",
    request_body(content = ConfirmTotp, example = json!({"code": "492039"})),
    security(("staff_token" = [])),
    responses((status = 200, body = RecoveryCodes), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn confirm_totp(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
    JsonBody(input): JsonBody<ConfirmTotp>,
) -> Result<Json<RecoveryCodes>> {
    Ok(Json(mfa::confirm_enrolment(&state, &staff, input).await?))
}

/// Turns two-factor sign-in off.
///
/// Takes the password and a current `code` (or a `recovery_code`, when the app is
/// lost); the recovery codes go too. 401 naming the field at fault (a wrong code counts
/// as at sign-in); 409 when it is not on.
#[utoipa::path(post, path = "/me/mfa/totp/disable", tag = "staff", operation_id = "staff_mfa_totp_disable",
    request_body(content = DisableTotp, examples(
        ("code" = (summary = "The password and a current code",
            value = json!({"password": "a long enough password", "code": "492039"}))),
        ("recovery_code" = (summary = "The password and a recovery code",
            value = json!({"password": "a long enough password", "recovery_code": "7k2m-9xq4-hv3c"}))),
    )),
    security(("staff_token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn disable_totp(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
    JsonBody(input): JsonBody<DisableTotpInput>,
) -> Result<StatusCode> {
    mfa::disable(&state, &staff, input).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the recovery codes.
///
/// Ten new codes, shown this once; the old ones stop working. Takes the password and a
/// current `code` (or a `recovery_code`), as turning two-factor sign-in off does. 401
/// naming the field at fault; 409 when two-factor sign-in is not on.
#[utoipa::path(post, path = "/me/mfa/recovery-codes", tag = "staff", operation_id = "staff_mfa_recovery_codes",
    request_body(content = DisableTotp, example = json!({"password": "a long enough password", "code": "492039"})),
    security(("staff_token" = [])),
    responses((status = 200, body = RecoveryCodes), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn new_recovery_codes(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
    JsonBody(input): JsonBody<DisableTotpInput>,
) -> Result<Json<RecoveryCodes>> {
    Ok(Json(
        mfa::regenerate_recovery_codes(&state, &staff, input).await?,
    ))
}

/// The signed-in staff member's active sessions and API tokens.
///
/// Newest first: created when and from where, last used when and from where (to the
/// minute), the second factor a session was signed in with, and which one is this
/// request's.
#[utoipa::path(get, path = "/me/sessions", tag = "staff", operation_id = "staff_sessions",
    security(("staff_token" = [])),
    responses((status = 200, body = Vec<SessionInfo>)))]
async fn list_sessions(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
) -> Result<Json<Vec<SessionInfo>>> {
    Ok(Json(sessions::list_active(&state, &staff).await?))
}

/// Revokes one of the signed-in staff member's sessions or API tokens.
///
/// It stops working at once (this request's own token too).
#[utoipa::path(delete, path = "/me/sessions/{id}", tag = "staff", operation_id = "staff_session_revoke",
    params(("id" = i64, Path, description = "The session's id (from GET /me/sessions)")),
    security(("staff_token" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_session(
    State(state): State<AppState>,
    SignedIn(staff): SignedIn,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode> {
    sessions::revoke_own(&state, &staff, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes every sign-in session of a staff member at once.
///
/// They must sign in again; their API tokens are revoked one by one at
/// `/staff/{id}/tokens/{token_id}`.
#[utoipa::path(post, path = "/staff/{id}/sessions/revoke", tag = "admin-staff",
    params(("id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 200, body = RevokedSessions), (status = 404, body = ErrorBody)))]
async fn revoke_staff_sessions(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
) -> Result<Json<RevokedSessions>> {
    Ok(Json(
        sessions::revoke_all_sessions(&state, &staff.actor, id).await?,
    ))
}

/// Resets a staff member's second factor (they lost the app and the recovery codes).
///
/// Their authenticator, recovery codes and passkeys are removed and every sign-in session of theirs
/// is revoked: they sign in with their password and, when the store requires two-factor
/// sign-in of them, set up a new authenticator first. Audited. 409 for one's own factor
/// (turn it off with proof instead) or a staff member without one.
#[utoipa::path(post, path = "/staff/{id}/mfa/reset", tag = "admin-staff",
    params(("id" = i64, Path)), security(("staff_token" = [])),
    responses((status = 200, body = FactorReset), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn reset_staff_factor(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
) -> Result<Json<FactorReset>> {
    Ok(Json(mfa::reset_for(&state, &staff, id).await?))
}
