//! A sign-in through the provider, from the redirect to the session: the flow's row
//! (state, nonce, PKCE verifier, the browser that started it), the provider's answer,
//! and which staff member it is (linked, created, their role set from the groups).

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::oidc::{ExchangeFailure, RelyingParty, VerifiedIdentity};
use super::{FACTOR, Provider, load_provider, redirect_url, role_for};
use crate::accounts::normalise_email;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::staff::{Role, StaffSession, actor_of, sha256_hex};
use crate::store::{Tx, is_unique_violation};

/// How long the provider has to send the browser back.
pub const FLOW_TTL_SECS: i64 = 10 * 60;
/// The cookie that binds a sign-in to the browser that started it (`SameSite=Lax`: it
/// must come back on the provider's redirect, a top-level navigation from its site).
pub const BROWSER_COOKIE: &str = "olv_sso";
const BROWSER_SECRET_BYTES: usize = 32;

/// What the callback answers: the session as JSON (the API), or the admin's cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    #[default]
    Json,
    Admin,
}

impl Answer {
    fn as_str(self) -> &'static str {
        match self {
            Answer::Json => "json",
            Answer::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Answer {
        if text == "admin" {
            Answer::Admin
        } else {
            Answer::Json
        }
    }
}

/// A started sign-in: where to send the browser, and the cookie value binding it.
pub struct Started {
    pub authorize_url: String,
    pub browser_secret: String,
}

/// A sign-in the callback came back for: its state checked out for this browser.
pub struct Flow {
    id: i64,
    nonce: String,
    pkce_verifier: String,
    pub answer: Answer,
    /// The admin page to go on to.
    pub next: Option<String>,
}

/// The query the provider sends the browser back with.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code (when the provider signed the staff member in).
    #[param(max_length = 4096)]
    pub code: Option<String>,
    /// The state the sign-in was started with.
    #[param(max_length = 512)]
    pub state: Option<String>,
    /// The provider's refusal, e.g. `access_denied` (a member removed there).
    #[param(max_length = 512)]
    pub error: Option<String>,
    #[param(max_length = 4096)]
    pub error_description: Option<String>,
}

fn new_browser_secret() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(rand::random::<[u8; BROWSER_SECRET_BYTES]>())
}

/// A cookie value this kernel could have made (so a browser's two tabs share one).
fn is_browser_secret(value: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .is_ok_and(|bytes| bytes.len() == BROWSER_SECRET_BYTES)
}

/// Starts a sign-in: reads the provider's discovery document, keeps the flow, and
/// answers the provider's authorization URL. `browser_secret` is the browser's
/// [`BROWSER_COOKIE`], if it has one. 404 without a provider; 503 when it cannot be read.
pub async fn start(
    state: &AppState,
    answer: Answer,
    next: Option<&str>,
    browser_secret: Option<&str>,
) -> Result<Started> {
    let provider = load_provider(state).await?;
    let party = RelyingParty::discover(&provider, &redirect_url(state)).await?;
    let authorization = party.authorize();
    let browser_secret = browser_secret
        .filter(|secret| is_browser_secret(secret))
        .map_or_else(new_browser_secret, str::to_owned);
    let now = state.clock.now();
    let expires = now + chrono::Duration::seconds(FLOW_TTL_SECS);
    let mut tx = state.db.begin().await?;
    // Flows the provider never sent back go as new ones start.
    sqlx::query("DELETE FROM staff_sso_flows WHERE expires_at < $1")
        .bind(crate::time::format_timestamp(now))
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO staff_sso_flows (state_hash, browser_hash, nonce, pkce_verifier, answer,
           next_path, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(sha256_hex(&authorization.state))
    .bind(sha256_hex(&browser_secret))
    .bind(&authorization.nonce)
    .bind(&authorization.pkce_verifier)
    .bind(answer.as_str())
    .bind(next)
    .bind(crate::time::format_timestamp(now))
    .bind(crate::time::format_timestamp(expires))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Started {
        authorize_url: authorization.url,
        browser_secret,
    })
}

fn unknown_state() -> Error {
    Error::BadCredential {
        field: "state",
        message: "this sign-in is unknown, expired or used already: start again",
    }
}

/// The flow `state_param` names, for this browser, used up: 401 naming `state` when it
/// is unknown, expired, used, or was started in another browser. Nothing is audited
/// before this checks out (anyone may call the callback).
pub async fn take_flow(
    state: &AppState,
    state_param: Option<&str>,
    browser_secret: Option<&str>,
) -> Result<Flow> {
    let Some(state_param) = state_param.filter(|s| !s.is_empty()) else {
        return Err(unknown_state());
    };
    let row = sqlx::query(
        "SELECT id, browser_hash, nonce, pkce_verifier, answer, next_path, expires_at
         FROM staff_sso_flows WHERE state_hash = $1 AND used_at IS NULL",
    )
    .bind(sha256_hex(state_param))
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(unknown_state)?;
    let expires_at: String = row.try_get(6)?;
    if expires_at <= state.clock.now_text() {
        return Err(unknown_state());
    }
    let browser_hash: String = row.try_get(1)?;
    let same_browser = browser_secret.is_some_and(|secret| {
        crate::http::constant_time_eq(sha256_hex(secret).as_bytes(), browser_hash.as_bytes())
    });
    if !same_browser {
        return Err(Error::BadCredential {
            field: "state",
            message: "this sign-in was started in another browser: start again here",
        });
    }
    let id: i64 = row.try_get(0)?;
    let used =
        sqlx::query("UPDATE staff_sso_flows SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(state.clock.now_text())
            .bind(id)
            .execute(&state.db.pool)
            .await?;
    if used.rows_affected() == 0 {
        return Err(unknown_state());
    }
    Ok(Flow {
        id,
        nonce: row.try_get(2)?,
        pkce_verifier: row.try_get(3)?,
        answer: Answer::parse(&row.try_get::<String, _>(4)?),
        next: row.try_get(5)?,
    })
}

/// Why a sign-in through the provider made no session (audited, then answered).
#[derive(Debug)]
enum Refusal {
    ProviderRefused(String),
    CodeRefused(String),
    IdTokenInvalid(String),
    EmailNotVerified,
    NoMappedGroup(Vec<String>),
    Disabled,
    LinkedToAnother,
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::ProviderRefused(_) => "provider_refused",
            Refusal::CodeRefused(_) => "code_refused",
            Refusal::IdTokenInvalid(_) => "id_token_invalid",
            Refusal::EmailNotVerified => "email_not_verified",
            Refusal::NoMappedGroup(_) => "no_mapped_group",
            Refusal::Disabled => "staff_disabled",
            Refusal::LinkedToAnother => "linked_to_another_account",
        }
    }

    fn detail(&self) -> serde_json::Value {
        match self {
            Refusal::ProviderRefused(text)
            | Refusal::CodeRefused(text)
            | Refusal::IdTokenInvalid(text) => text.as_str().into(),
            Refusal::NoMappedGroup(groups) => serde_json::json!({ "groups": groups }),
            _ => serde_json::Value::Null,
        }
    }

    /// The answer the client gets (the detail stays in the audit log and server log).
    fn error(&self) -> Error {
        match self {
            Refusal::ProviderRefused(_) => Error::ForbiddenBecause {
                code: "sso_refused_by_provider",
                message: "the sign-in provider refused the sign-in".to_owned(),
            },
            Refusal::CodeRefused(_) => Error::BadCredential {
                field: "code",
                message: "the sign-in provider did not accept the code: start again",
            },
            Refusal::IdTokenInvalid(_) => Error::BadCredential {
                field: "code",
                message: "the sign-in provider's ID token did not verify",
            },
            Refusal::EmailNotVerified => Error::ForbiddenBecause {
                code: "sso_email_not_verified",
                message: "the sign-in provider did not give a verified email for this account"
                    .to_owned(),
            },
            Refusal::NoMappedGroup(_) => Error::ForbiddenBecause {
                code: "sso_no_access",
                message: "your groups at the sign-in provider give no access to this store: \
                          ask the store's owner"
                    .to_owned(),
            },
            Refusal::Disabled => Error::ForbiddenBecause {
                code: "sso_staff_disabled",
                message: "this staff account is disabled".to_owned(),
            },
            Refusal::LinkedToAnother => Error::ForbiddenBecause {
                code: "sso_linked_to_another_account",
                message: "this staff member signs in with another account at the provider"
                    .to_owned(),
            },
        }
    }
}

/// Where the refusal is recorded: the staff member when known, else the provider's
/// account.
struct Subject<'a> {
    staff_id: Option<i64>,
    identity: Option<&'a VerifiedIdentity>,
}

async fn refuse(state: &AppState, flow: &Flow, subject: Subject<'_>, why: Refusal) -> Error {
    tracing::info!(reason = why.reason(), detail = %why.detail(), "refused a single sign-on");
    let (target_type, target_id) = match (subject.staff_id, subject.identity) {
        (Some(id), _) => ("staff", id.to_string()),
        (None, Some(identity)) => ("sso_subject", identity.subject.clone()),
        (None, None) => ("sso_flow", flow.id.to_string()),
    };
    let actor = subject.staff_id.map_or_else(|| "sso".to_owned(), actor_of);
    let recorded = async {
        let mut tx = state.db.begin().await?;
        crate::audit::record(
            &mut tx,
            &crate::audit::Entry {
                actor: &actor,
                action: "staff.sso_refused",
                target_type,
                target_id,
                before: None,
                after: Some(serde_json::json!({
                    "reason": why.reason(),
                    "detail": why.detail(),
                    "issuer": subject.identity.map(|i| i.issuer.clone()),
                    "subject": subject.identity.map(|i| i.subject.clone()),
                    "email": subject.identity.and_then(|i| i.email.clone()),
                })),
            },
        )
        .await?;
        tx.commit().await?;
        Ok::<(), Error>(())
    };
    match recorded.await {
        Ok(()) => why.error(),
        Err(err) => err,
    }
}

/// The provider's refusal code as a short safe word (it is the provider's text).
fn provider_error_code(error: &str) -> String {
    error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// Finishes a sign-in the callback came back for: the provider's answer checked, the
/// staff member found or made and their role set, the session made. `from` is the
/// client's address, kept with the session.
pub async fn complete(
    state: &AppState,
    flow: &Flow,
    query: &CallbackQuery,
    from: Option<&str>,
) -> Result<StaffSession> {
    let nobody = || Subject {
        staff_id: None,
        identity: None,
    };
    if let Some(error) = &query.error {
        let why = Refusal::ProviderRefused(provider_error_code(error));
        return Err(refuse(state, flow, nobody(), why).await);
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return Err(Error::BadCredential {
            field: "code",
            message: "the sign-in provider sent no code",
        });
    };
    let provider = load_provider(state).await?;
    let identity = match verified_identity(state, &provider, flow, code).await? {
        Ok(identity) => identity,
        Err(failure) => {
            let why = match failure {
                ExchangeFailure::CodeRefused(text) => Refusal::CodeRefused(text),
                ExchangeFailure::IdTokenInvalid(text) => Refusal::IdTokenInvalid(text),
            };
            return Err(refuse(state, flow, nobody(), why).await);
        }
    };
    let Some(role) = role_for(&provider.settings.role_mapping, &identity.groups) else {
        let staff_id = linked_staff(state, &identity).await?;
        let why = Refusal::NoMappedGroup(identity.groups.clone());
        let subject = Subject {
            staff_id,
            identity: Some(&identity),
        };
        return Err(refuse(state, flow, subject, why).await);
    };
    match sign_in_as(state, &identity, role, from).await? {
        Ok((staff_id, token, expires_at)) => {
            crate::staff::session_answer(&state.db, staff_id, token, expires_at).await
        }
        Err((staff_id, why)) => {
            let subject = Subject {
                staff_id,
                identity: Some(&identity),
            };
            Err(refuse(state, flow, subject, why).await)
        }
    }
}

async fn verified_identity(
    state: &AppState,
    provider: &Provider,
    flow: &Flow,
    code: &str,
) -> Result<std::result::Result<VerifiedIdentity, ExchangeFailure>> {
    let party = RelyingParty::discover(provider, &redirect_url(state)).await?;
    let clock = state.clock.clone();
    party
        .exchange(
            code,
            &flow.pkce_verifier,
            &flow.nonce,
            &provider.settings.groups_claim,
            move || clock.now(),
        )
        .await
}

/// The staff member an account at the provider is linked to, if any.
async fn linked_staff(state: &AppState, identity: &VerifiedIdentity) -> Result<Option<i64>> {
    Ok(
        sqlx::query("SELECT staff_id FROM staff_sso_identities WHERE issuer = $1 AND subject = $2")
            .bind(&identity.issuer)
            .bind(&identity.subject)
            .fetch_optional(&state.db.pool)
            .await?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()?,
    )
}

/// A made session: the staff member, the token and when it expires.
type Signed = (i64, String, String);
/// A refusal, with the staff member when one was found.
type Refused = (Option<i64>, Refusal);

/// In one transaction: the staff member of `identity` (linked, or linked now by a
/// verified email, or created), their role set to `role`, and their session.
async fn sign_in_as(
    state: &AppState,
    identity: &VerifiedIdentity,
    role: Role,
    from: Option<&str>,
) -> Result<std::result::Result<Signed, Refused>> {
    let mut tx = state.db.begin().await?;
    let staff_id = match find_or_link(state, &mut tx, identity, role).await? {
        Ok(id) => id,
        Err(refused) => return Ok(Err(refused)),
    };
    let disabled =
        sqlx::query("SELECT 1 FROM staff_users WHERE id = $1 AND disabled_at IS NOT NULL")
            .bind(staff_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
    if disabled {
        return Ok(Err((Some(staff_id), Refusal::Disabled)));
    }
    sync_role(state, &mut tx, staff_id, role).await?;
    let now = state.clock.now_text();
    sqlx::query(
        "UPDATE staff_sso_identities SET last_sign_in_at = $1 WHERE issuer = $2 AND subject = $3",
    )
    .bind(&now)
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .execute(&mut *tx)
    .await?;
    let (token_id, token, expires_at) =
        crate::staff::insert_session(&mut tx, staff_id, None, Some(FACTOR), from).await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &actor_of(staff_id),
            action: "staff.signed_in",
            target_type: "staff",
            target_id: staff_id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "token_id": token_id,
                "factors": [FACTOR],
                "issuer": identity.issuer,
                "subject": identity.subject,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Ok((staff_id, token, expires_at)))
}

/// The staff member of `identity`: linked already; or the one with its verified email,
/// linked now; or a new one with `role`. Links and creations are audited.
async fn find_or_link(
    state: &AppState,
    tx: &mut Tx,
    identity: &VerifiedIdentity,
    role: Role,
) -> Result<std::result::Result<i64, Refused>> {
    let linked =
        sqlx::query("SELECT staff_id FROM staff_sso_identities WHERE issuer = $1 AND subject = $2")
            .bind(&identity.issuer)
            .bind(&identity.subject)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(row) = linked {
        return Ok(Ok(row.try_get(0)?));
    }
    let Some(email) = identity
        .email
        .as_deref()
        .filter(|_| identity.email_verified)
        .map(normalise_email)
    else {
        return Ok(Err((None, Refusal::EmailNotVerified)));
    };
    let existing = sqlx::query("SELECT id FROM staff_users WHERE email = $1")
        .bind(&email)
        .fetch_optional(&mut **tx)
        .await?;
    let (staff_id, created) = match existing {
        Some(row) => (row.try_get::<i64, _>(0)?, false),
        None => (create_staff(state, tx, identity, &email, role).await?, true),
    };
    let now = state.clock.now_text();
    let inserted = sqlx::query(
        "INSERT INTO staff_sso_identities (issuer, subject, staff_id, linked_at, last_sign_in_at)
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .bind(staff_id)
    .bind(&now)
    .execute(&mut **tx)
    .await;
    match inserted {
        // The staff member is linked to another account of this provider already.
        Err(err) if is_unique_violation(&err) => {
            return Ok(Err((Some(staff_id), Refusal::LinkedToAnother)));
        }
        other => other?,
    };
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor: &actor_of(staff_id),
            action: "staff.sso_linked",
            target_type: "staff",
            target_id: staff_id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "issuer": identity.issuer,
                "subject": identity.subject,
                "email": email,
                "created": created,
            })),
        },
    )
    .await?;
    Ok(Ok(staff_id))
}

/// A new staff member for a first sign-in (no password: they sign in through the
/// provider, or with API tokens).
async fn create_staff(
    state: &AppState,
    tx: &mut Tx,
    identity: &VerifiedIdentity,
    email: &str,
    role: Role,
) -> Result<i64> {
    let name: String = identity
        .name
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .unwrap_or(email)
        .chars()
        .filter(|c| !c.is_control())
        .take(super::super::NAME_MAX_CHARS)
        .collect();
    let now = state.clock.now_text();
    let inserted = sqlx::query(
        "INSERT INTO staff_users (email, name, role, password_hash, created_at, updated_at)
         VALUES ($1, $2, $3, NULL, $4, $4) RETURNING id",
    )
    .bind(email)
    .bind(&name)
    .bind(role.name())
    .bind(&now)
    .fetch_one(&mut **tx)
    .await;
    let id: i64 = match inserted {
        // Another sign-in of the same person made them at the same moment.
        Err(err) if is_unique_violation(&err) => {
            return Err(Error::conflict(None, "signed in twice at once: try again"));
        }
        other => other?.try_get(0)?,
    };
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor: &actor_of(id),
            action: "staff.created",
            target_type: "staff",
            target_id: id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "email": email, "role": role.name(), "has_password": false, "via": "sso",
            })),
        },
    )
    .await?;
    Ok(id)
}

/// Sets the staff member's role to the one their groups map to (audited when it
/// changes), except that the store's last active owner stays owner.
async fn sync_role(state: &AppState, tx: &mut Tx, staff_id: i64, role: Role) -> Result<()> {
    let current: String = sqlx::query("SELECT role FROM staff_users WHERE id = $1")
        .bind(staff_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    if current == role.name() {
        return Ok(());
    }
    if current == Role::Owner.name() && crate::staff::other_active_owners(tx, staff_id).await? == 0
    {
        tracing::warn!(
            staff_id,
            role = role.name(),
            "single sign-on kept the last owner's role"
        );
        return Ok(());
    }
    sqlx::query("UPDATE staff_users SET role = $1, updated_at = $2 WHERE id = $3")
        .bind(role.name())
        .bind(state.clock.now_text())
        .bind(staff_id)
        .execute(&mut **tx)
        .await?;
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor: &actor_of(staff_id),
            action: "staff.sso_role_synced",
            target_type: "staff",
            target_id: staff_id.to_string(),
            before: Some(serde_json::json!({ "role": current })),
            after: Some(serde_json::json!({ "role": role.name() })),
        },
    )
    .await?;
    Ok(())
}
