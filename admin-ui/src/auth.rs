//! Signing in and out, the second factor, and setting up an authenticator app and
//! passkeys, all through the staff domain (`crate::staff`): the sign-in makes a session in the same
//! table the API's sessions are in, and the store's two-factor policy applies here as on
//! the API. Single sign-on: a "Sign in with <provider>" button to the kernel's
//! `/api/v1/staff/sso/start?answer=admin`, whose callback sets the session cookie here
//! ([`sso_signed_in`]) or comes back to the sign-in page saying why ([`sso_refused`]).
//!
//! Passkeys: the pages carry the kernel's WebAuthn options in a form and load the one
//! admin script (`assets/passkeys.js`, pinned by its hash), which asks the browser and
//! posts its answer in the form's `credential` field, CSRF field and all.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};

use super::layout::{self, Form, FormErrors, Kind, field, form_alert};
use super::session::{self, AdminSession, SignedIn};
use crate::app::AppState;
use crate::error::Error;
use crate::staff::mfa::{self, SecondFactorInput, Standing};
use crate::staff::mfa_api::ClientAddress;
use crate::staff::passkeys::{self, NewPasskey, PasskeyChallenge, PasskeyInfo, RemovePasskey};
use crate::staff::{SignInAnswer, Staff, StaffCredentials};

pub const SIGN_IN_PATH: &str = "/admin/sign-in";
const TWO_FACTOR_STEP_PATH: &str = "/admin/sign-in/two-factor";
const SETUP_PATH: &str = "/admin/account/two-factor";
const HOME: &str = "/admin";

/// Open to anyone: signing in and out.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SIGN_IN_PATH, get(sign_in_page).post(sign_in_submit))
        .route(TWO_FACTOR_STEP_PATH, post(second_factor_submit))
        .route("/admin/sign-out", post(sign_out))
}

/// Behind the guard: the staff member's own two-factor set-up.
pub fn account_routes() -> Router<AppState> {
    Router::new().route(SETUP_PATH, get(setup_page).post(setup_submit))
}

/// What the store's two-factor policy says of this session on `path`: `None` to go on,
/// or where to go instead (set it up first; sign in again with it).
pub async fn two_factor_standing(state: &AppState, staff: &Staff, path: &str) -> Option<Response> {
    match mfa::standing(state, staff).await {
        Ok(Standing::Fine) => None,
        Ok(Standing::SetupRequired) if path == SETUP_PATH => None,
        Ok(Standing::SetupRequired) => Some(layout::see_other(SETUP_PATH)),
        Ok(Standing::SessionLacksFactor) => {
            Some(layout::see_other(&format!("{SIGN_IN_PATH}?again=1")))
        }
        Err(err) => Some(layout::error_page(&err, "two-factor standing")),
    }
}

/// `next` when it is a page of the admin (never another site).
fn safe_next(next: &str) -> Option<&str> {
    crate::http::session::safe_next(next).filter(|n| *n == HOME || n.starts_with("/admin/"))
}

// ---- sign in ----------------------------------------------------------------------------

async fn sign_in_page(
    State(state): State<AppState>,
    admin: AdminSession,
    RawQuery(query): RawQuery,
) -> Response {
    let next = layout::query_value(query.as_deref(), "next");
    let next = next.as_deref().and_then(safe_next);
    let again = layout::query_value(query.as_deref(), "again").is_some();
    // Signed in already: on to the page, or to setting up the second factor first.
    if let Some(staff) = &admin.staff
        && !again
    {
        match mfa::standing(&state, staff).await {
            Ok(Standing::Fine) => return layout::see_other(next.unwrap_or(HOME)),
            Ok(Standing::SetupRequired) => return layout::see_other(SETUP_PATH),
            Ok(Standing::SessionLacksFactor) | Err(_) => {}
        }
    }
    let mut errors = FormErrors::default();
    if again {
        errors.form = Some(
            "The store now requires a second factor: sign in again with your authenticator app or passkey."
                .to_owned(),
        );
    }
    if let Some(code) = layout::query_value(query.as_deref(), "sso_error") {
        errors.form = Some(sso_refusal_text(&code).to_owned());
    }
    let sso = sso_provider(&state).await;
    sign_in_form(&admin, "", next, &errors, sso.as_deref())
}

/// `sso`: the single sign-on provider's name, for its button (none when not set up).
fn sign_in_form(
    admin: &AdminSession,
    email: &str,
    next: Option<&str>,
    errors: &FormErrors,
    sso: Option<&str>,
) -> Response {
    sign_in_form_with_status(admin, email, next, errors, sso, errors.status())
}

fn sign_in_form_with_status(
    admin: &AdminSession,
    email: &str,
    next: Option<&str>,
    errors: &FormErrors,
    sso: Option<&str>,
    status: axum::http::StatusCode,
) -> Response {
    let body = html! {
        h1 { "Sign in to the admin" }
        (form_alert(errors))
        form method="post" action=(SIGN_IN_PATH) novalidate {
            (admin.csrf_input())
            @if let Some(next) = next { input type="hidden" name="next" value=(next); }
            (field("Email", "email", Kind::Email, email, errors))
            (field("Password", "password", Kind::Password, "", errors))
            button.button.primary type="submit" { "Sign in" }
        }
        @if let Some(provider) = sso {
            p.sso { a.button #sso-sign-in href=(sso_start_url(next)) { "Sign in with " (provider) } }
        }
    };
    layout::bare(status, "Sign in", body)
}

/// The sign-in page again for a staff member whose password is refused because they sign
/// in through the single sign-on provider: pointing to its button (403).
async fn sso_required_page(
    state: &AppState,
    admin: &AdminSession,
    email: &str,
    next: Option<&str>,
) -> Response {
    let sso = sso_provider(state).await;
    let provider = sso.as_deref().unwrap_or("the single sign-on provider");
    let errors = FormErrors {
        form: Some(format!(
            "Your account signs in through {provider}, not with a password: use the \
             “Sign in with {provider}” button below."
        )),
        ..FormErrors::default()
    };
    sign_in_form_with_status(
        admin,
        email,
        next,
        &errors,
        sso.as_deref(),
        axum::http::StatusCode::FORBIDDEN,
    )
}

// ---- single sign-on ------------------------------------------------------------------------

/// The single sign-on provider's name when one is set up (a failure to read is logged
/// and shows no button).
async fn sso_provider(state: &AppState) -> Option<String> {
    crate::staff::sso::display_name(state)
        .await
        .unwrap_or_else(|err| {
            tracing::error!(error = %format!("{err:#}"), "reading the single sign-on provider failed");
            None
        })
}

/// Where the button goes: the kernel's start of a sign-in, answering the admin's cookie.
fn sso_start_url(next: Option<&str>) -> String {
    let mut url = format!("{}?answer=admin", crate::staff::sso::START_PATH);
    if let Some(next) = next {
        url.push_str("&next=");
        url.extend(form_urlencoded::byte_serialize(next.as_bytes()));
    }
    url
}

/// After a sign-in through the provider (the kernel's callback): the session cookie and a
/// page that goes on to the admin. Not a redirect: the callback is the end of a
/// navigation the provider's site started, and the browser would not send the
/// `SameSite=Strict` cookie on a redirect from it; a refresh from this page is this
/// site's own navigation.
pub fn sso_signed_in(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
    next: Option<&str>,
) -> Response {
    let next = next.and_then(safe_next).unwrap_or(HOME);
    let body = html! {
        h1 { "Signed in" }
        p { a.button.primary href=(next) { "Continue to the admin" } }
    };
    let mut response = layout::bare(axum::http::StatusCode::OK, "Signed in", body);
    if let Ok(refresh) = axum::http::HeaderValue::from_str(&format!("0; url={next}")) {
        response.headers_mut().insert("refresh", refresh);
    }
    session::set_staff_cookie(state, headers, &mut response, token);
    response
}

/// A sign-in through the provider that made no session: back to the sign-in page, which
/// says why (by the error's code: nothing of the provider's text is shown).
pub fn sso_refused(err: &Error) -> Response {
    if let Error::Internal(detail) = err {
        tracing::error!(error = ?detail, "single sign-on failed");
    }
    let code = err.body().error;
    layout::see_other(&format!("{SIGN_IN_PATH}?sso_error={code}"))
}

fn sso_refusal_text(code: &str) -> &'static str {
    match code {
        "sso_no_access" => {
            "Your groups at the sign-in provider give no access to this store. Ask the store's owner."
        }
        "sso_staff_disabled" => "This staff account is disabled.",
        "sso_refused_by_provider" => "The sign-in provider did not sign you in.",
        "sso_email_not_verified" => {
            "The sign-in provider did not confirm your email address, so the account could not be linked."
        }
        "sso_linked_to_another_account" => {
            "This staff member signs in with another account at the provider."
        }
        "invalid_credentials" => "That sign-in expired or was started elsewhere. Try again.",
        "unavailable" => "The sign-in provider could not be reached. Try again later.",
        _ => "Single sign-on did not sign you in. Try again.",
    }
}

async fn sign_in_submit(
    State(state): State<AppState>,
    admin: AdminSession,
    ClientAddress(from): ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let next = safe_next(form.get("next")).map(str::to_owned);
    let email = form.get("email").trim().to_owned();
    let password = form.get("password").to_owned();
    let mut errors = FormErrors::default();
    if email.is_empty() {
        errors.add("email", "enter your email");
    }
    if password.is_empty() {
        errors.add("password", "enter your password");
    }
    if !errors.is_empty() {
        let sso = sso_provider(&state).await;
        return sign_in_form(&admin, &email, next.as_deref(), &errors, sso.as_deref());
    }
    // Guesses spread over many clients still meet a limit per staff account.
    let account = format!(
        "staff:{}",
        state
            .keys
            .lookup_hash(&crate::accounts::normalise_email(&email))
    );
    let limited = state
        .limiter
        .hit(crate::ratelimit::Class::SignInAccount, &account)
        .await;
    let answer = match limited {
        Ok(()) => {
            crate::staff::sign_in(
                &state,
                StaffCredentials {
                    email: email.clone(),
                    password,
                },
                from,
            )
            .await
        }
        Err(err) => Err(err),
    };
    match answer {
        Ok(SignInAnswer::Session(signed)) => {
            end_previous_session(&state, &admin).await;
            signed_in(&state, &headers, &signed.token, next.as_deref())
        }
        Ok(SignInAnswer::MfaRequired(challenge)) => {
            second_factor_page(
                &state,
                &admin,
                &challenge.challenge,
                next.as_deref(),
                &FormErrors::default(),
            )
            .await
        }
        Err(Error::ForbiddenBecause {
            code: crate::staff::sso::PASSWORD_REFUSED,
            ..
        }) => sso_required_page(&state, &admin, &email, next.as_deref()).await,
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                let sso = sso_provider(&state).await;
                sign_in_form(&admin, &email, next.as_deref(), &errors, sso.as_deref())
            }
            None => layout::error_page(&err, "sign-in"),
        },
    }
}

/// A browser that signs in again (from another tab, or as someone else) ends the session
/// its cookie held: the new cookie replaces it, and it would otherwise stay open, unseen,
/// until it expired.
async fn end_previous_session(state: &AppState, admin: &AdminSession) {
    if let Some(previous) = &admin.staff
        && let Err(err) = crate::staff::sign_out(&state.db, previous).await
    {
        tracing::warn!(error = %err, "ending the previous admin session failed");
    }
}

/// The session cookie, then the page the staff member came for.
fn signed_in(state: &AppState, headers: &HeaderMap, token: &str, next: Option<&str>) -> Response {
    let mut response = layout::see_other(next.unwrap_or(HOME));
    session::set_staff_cookie(state, headers, &mut response, token);
    response
}

// ---- the second factor -------------------------------------------------------------------

/// The script tag of the passkeys script.
fn passkeys_script() -> Markup {
    html! {
        script src=(super::assets::passkeys_js_path()) integrity=(super::assets::passkeys_js_integrity()) defer {}
    }
}

/// The second step of signing in for `challenge`: the passkey when the staff member has
/// one (its options opened for the challenge), a code from the app when they have one.
async fn second_factor_page(
    state: &AppState,
    admin: &AdminSession,
    challenge: &str,
    next: Option<&str>,
    errors: &FormErrors,
) -> Response {
    let (totp, passkey) = match mfa::open_challenge_of(state, challenge).await {
        Ok((_, staff_id)) => {
            let totp = mfa::totp_on(&state.db, staff_id).await.unwrap_or(true);
            let passkey = match passkeys::has_passkey(&state.db, staff_id).await {
                Ok(true) => passkeys::start_sign_in(
                    state,
                    PasskeyChallenge {
                        challenge: challenge.to_owned(),
                    },
                )
                .await
                .inspect_err(|err| tracing::warn!(error = %err, "passkey options for sign-in"))
                .ok()
                .map(|options| options.options.to_string()),
                _ => None,
            };
            (totp, passkey)
        }
        Err(_) => (true, None),
    };
    second_factor_form(admin, challenge, next, errors, totp, passkey.as_deref())
}

fn second_factor_form(
    admin: &AdminSession,
    challenge: &str,
    next: Option<&str>,
    errors: &FormErrors,
    totp: bool,
    passkey_options: Option<&str>,
) -> Response {
    let body = html! {
        h1 { "Two-factor sign-in" }
        (form_alert(errors))
        @if let Some(options) = passkey_options {
            p { "Use your passkey: your security key, phone or computer asks for your PIN, fingerprint or face." }
            form #passkey-sign-in method="post" action=(TWO_FACTOR_STEP_PATH) data-passkey="get" data-passkey-options=(options) {
                (admin.csrf_input())
                input type="hidden" name="challenge" value=(challenge);
                @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                input type="hidden" name="credential" value="";
                @if let Some(message) = errors.field("passkey") { p.field-error { (message) } }
                button.button.primary type="button" data-passkey-go { "Use a passkey" }
                p data-passkey-status aria-live="polite" {}
            }
            (passkeys_script())
        }
        @if totp {
            p { "Type the code your authenticator app shows for this store, or one of your recovery codes." }
            form method="post" action=(TWO_FACTOR_STEP_PATH) novalidate {
                (admin.csrf_input())
                input type="hidden" name="challenge" value=(challenge);
                @if let Some(next) = next { input type="hidden" name="next" value=(next); }
                (layout::field_with_hint("Code", "code", Kind::Text, "", Some("Six digits."), errors))
                details {
                    summary { "Use a recovery code instead" }
                    (field("Recovery code", "recovery_code", Kind::Text, "", errors))
                }
                button.button.primary type="submit" { "Sign in" }
            }
        }
    };
    layout::bare(errors.status(), "Two-factor sign-in", body)
}

async fn second_factor_submit(
    State(state): State<AppState>,
    admin: AdminSession,
    ClientAddress(from): ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let next = safe_next(form.get("next")).map(str::to_owned);
    let challenge = form.get("challenge").to_owned();
    let present = |name: &str| Some(form.get(name).trim().to_owned()).filter(|v| !v.is_empty());
    let input = SecondFactorInput {
        challenge: challenge.clone(),
        code: present("code"),
        recovery_code: present("recovery_code"),
        // What the browser answered (not JSON: refused as not an assertion).
        passkey: present("credential")
            .map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))),
    };
    match mfa::complete_sign_in(&state, input, from).await {
        Ok(signed) => {
            end_previous_session(&state, &admin).await;
            signed_in(&state, &headers, &signed.token, next.as_deref())
        }
        // The challenge is spent or expired: from the password again.
        Err(Error::BadCredential {
            field: "challenge",
            message,
        }) => {
            let errors = FormErrors {
                form: Some(layout::sentence(message)),
                ..FormErrors::default()
            };
            let sso = sso_provider(&state).await;
            sign_in_form(&admin, "", next.as_deref(), &errors, sso.as_deref())
        }
        Err(Error::ForbiddenBecause {
            code: crate::staff::sso::PASSWORD_REFUSED,
            ..
        }) => sso_required_page(&state, &admin, "", next.as_deref()).await,
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                second_factor_page(&state, &admin, &challenge, next.as_deref(), &errors).await
            }
            None => layout::error_page(&err, "sign-in second factor"),
        },
    }
}

// ---- sign out -----------------------------------------------------------------------------

async fn sign_out(
    State(state): State<AppState>,
    admin: AdminSession,
    headers: HeaderMap,
) -> Response {
    if let Some(staff) = &admin.staff
        && let Err(err) = crate::staff::sign_out(&state.db, staff).await
    {
        return layout::error_page(&err, "sign-out");
    }
    let mut response = layout::see_other(SIGN_IN_PATH);
    session::clear_staff_cookie(&state, &headers, &mut response);
    response
}

// ---- setting up an authenticator app --------------------------------------------------------

async fn setup_page(State(state): State<AppState>, SignedIn(staff, admin): SignedIn) -> Response {
    setup_page_with(&state, &staff, &admin, &FormErrors::default()).await
}

/// The two-factor page: the authenticator app, then the passkeys; `errors` of a passkey
/// form that was sent.
async fn setup_page_with(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    errors: &FormErrors,
) -> Response {
    let loaded = async {
        Ok::<_, Error>((
            mfa::status(state, staff).await?,
            passkeys::list(state, staff.id).await?,
        ))
    };
    match loaded.await {
        Ok((status, keys)) => {
            let on = status.totp == "on" || !keys.is_empty();
            let body = html! {
                h1 { "Two-factor sign-in" }
                @if status.required && !on {
                    p.form-alert role="alert" { "The store requires two-factor sign-in of your role: set it up to continue." }
                }
                h2 { "Authenticator app" }
                @if status.totp == "on" {
                    p { "Two-factor sign-in with an authenticator app is on. Recovery codes left: " (status.recovery_codes_left) "." }
                } @else {
                    p { "Sign in with a code from an authenticator app on your phone besides your password." }
                    form method="post" action=(SETUP_PATH) {
                        (admin.csrf_input())
                        input type="hidden" name="step" value="start";
                        button.button.primary type="submit" { "Set up an authenticator app" }
                    }
                }
                (passkeys_section(state, admin, &keys, errors))
            };
            layout::page_with_status(
                errors.status(),
                staff,
                admin.csrf_input(),
                "Two-factor sign-in",
                "",
                body,
            )
        }
        Err(err) => layout::error_page(&err, "two-factor status"),
    }
}

/// The passkeys: each with a form to remove it (the password), and a form to add one.
fn passkeys_section(
    state: &AppState,
    admin: &AdminSession,
    keys: &[PasskeyInfo],
    errors: &FormErrors,
) -> Markup {
    let available = passkeys::relying_party(state).err();
    html! {
        section #passkeys {
            h2 { "Passkeys" }
            p { "A passkey is a security key, or your phone or computer, that signs you in with your PIN, fingerprint or face besides your password." }
            (form_alert(errors))
            @if !keys.is_empty() {
                table {
                    thead { tr { th { "Name" } th { "Added" } th { "Last used" } th { span.visually-hidden { "Remove" } } } }
                    tbody {
                        @for key in keys {
                            tr {
                                td { (key.name) }
                                td { (key.created_at) }
                                td { (key.last_used_at.as_deref().unwrap_or("never")) }
                                td {
                                    form.inline method="post" action=(SETUP_PATH) {
                                        (admin.csrf_input())
                                        input type="hidden" name="step" value="passkey-remove";
                                        input type="hidden" name="passkey_id" value=(key.id);
                                        label for=(format!("remove-{}", key.id)) { "Your password" }
                                        input id=(format!("remove-{}", key.id)) type="password" name="password" autocomplete="current-password" required;
                                        button.button type="submit" { "Remove " (key.name) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(why) = available {
                p.hint { (layout::sentence(&why.body().message)) }
            } @else {
                form method="post" action=(SETUP_PATH) novalidate {
                    (admin.csrf_input())
                    input type="hidden" name="step" value="passkey-start";
                    (layout::field_with_hint("Passkey name", "name", Kind::Text, "", Some("To tell your passkeys apart, e.g. \"YubiKey\" or \"Work laptop\"."), errors))
                    button.button.primary type="submit" { "Add a passkey" }
                }
            }
        }
    }
}

/// After the passkey's options: the form the script answers them with.
fn passkey_create_page(staff: &Staff, admin: &AdminSession, name: &str, options: &str) -> Response {
    let body = html! {
        h1 { "Add a passkey" }
        p { "Your browser asks for the passkey: choose the security key, phone or computer to use, and unlock it." }
        form #passkey-create method="post" action=(SETUP_PATH) data-passkey="create" data-passkey-options=(options) {
            (admin.csrf_input())
            input type="hidden" name="step" value="passkey-finish";
            input type="hidden" name="name" value=(name);
            input type="hidden" name="credential" value="";
            button.button.primary type="button" data-passkey-go { "Create the passkey “" (name) "”" }
            p data-passkey-status aria-live="polite" {}
        }
        p { a href=(SETUP_PATH) { "Cancel" } }
        (passkeys_script())
    };
    layout::page(staff, admin.csrf_input(), "Add a passkey", "", body)
}

/// The passkey steps of the two-factor page's form: start (the options), finish (the
/// browser's answer), remove (with the password).
async fn passkey_submit(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    form: &Form,
) -> Response {
    let outcome = match form.get("step") {
        "passkey-start" => {
            let name = form.get("name").trim().to_owned();
            let started = match passkeys::check_name(&name) {
                Ok(_) => passkeys::start_registration(state, staff).await,
                Err(err) => Err(err),
            };
            match started {
                Ok(options) => {
                    return passkey_create_page(staff, admin, &name, &options.options.to_string());
                }
                Err(err) => Err(err),
            }
        }
        "passkey-finish" => {
            let credential = form.get("credential");
            let input = NewPasskey {
                name: form.get("name").to_owned(),
                credential: serde_json::from_str(credential)
                    .unwrap_or(serde_json::Value::String(credential.to_owned())),
            };
            passkeys::finish_registration(state, staff, input)
                .await
                .map(|_| ())
        }
        _ => match form.get("passkey_id").parse::<i64>() {
            Ok(id) => {
                let input = RemovePasskey {
                    password: form.get("password").to_owned(),
                };
                passkeys::remove(state, staff, id, input).await
            }
            Err(_) => Err(Error::invalid("passkey_id", "must be a passkey's id")),
        },
    };
    match outcome {
        Ok(()) => layout::see_other(&format!("{SETUP_PATH}#passkeys")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(mut errors) => {
                // The credential and the password are not fields of the page it comes
                // back to: said at the top.
                if errors.form.is_none()
                    && let Some(message) = errors
                        .field("credential")
                        .or(errors.field("password"))
                        .or(errors.field("passkey_id"))
                {
                    errors.form = Some(layout::sentence(message));
                }
                setup_page_with(state, staff, admin, &errors).await
            }
            None => layout::error_page(&err, "passkeys"),
        },
    }
}

async fn setup_submit(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if form.get("step").starts_with("passkey-") {
        return passkey_submit(&state, &staff, &admin, &form).await;
    }
    if form.get("step") == "start" {
        return match mfa::start_enrolment(&state, &staff).await {
            Ok(enrolment) => {
                let body = html! {
                    h1 { "Set up an authenticator app" }
                    p { "Scan the code with the app, or type the key into it." }
                    img.qr src=(enrolment.qr_code) alt="QR code of the key for the authenticator app" width="200" height="200";
                    p { "Key: " code #totp-secret { (enrolment.secret) } }
                    (confirm_form(&admin, &FormErrors::default()))
                };
                layout::page(
                    &staff,
                    admin.csrf_input(),
                    "Set up two-factor sign-in",
                    "",
                    body,
                )
            }
            Err(err) => layout::error_page(&err, "two-factor set-up"),
        };
    }
    let input = mfa::ConfirmTotp {
        code: form.get("code").trim().to_owned(),
    };
    match mfa::confirm_enrolment(&state, &staff, input).await {
        Ok(codes) => {
            let body = html! {
                h1 { "Two-factor sign-in is on" }
                p { "Keep these recovery codes somewhere safe: each signs you in once without the app. They are shown only now." }
                ul.recovery-codes { @for code in &codes.recovery_codes { li { code { (code) } } } }
                p { a.button.primary href=(HOME) { "Continue to the dashboard" } }
            };
            layout::page(
                &staff,
                admin.csrf_input(),
                "Two-factor sign-in is on",
                "",
                body,
            )
        }
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                let body = html! {
                    h1 { "Set up an authenticator app" }
                    (confirm_form(&admin, &errors))
                };
                layout::page_with_status(
                    errors.status(),
                    &staff,
                    admin.csrf_input(),
                    "Set up two-factor sign-in",
                    "",
                    body,
                )
            }
            None => layout::error_page(&err, "two-factor confirmation"),
        },
    }
}

fn confirm_form(admin: &AdminSession, errors: &FormErrors) -> Markup {
    html! {
        (form_alert(errors))
        form method="post" action=(SETUP_PATH) novalidate {
            (admin.csrf_input())
            input type="hidden" name="step" value="confirm";
            (layout::field_with_hint("Code from the app", "code", Kind::Text, "", Some("Six digits, to confirm the app is set up."), errors))
            button.button.primary type="submit" { "Turn on" }
        }
    }
}
