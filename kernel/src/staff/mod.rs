//! Staff users: the people who run the store. Each has one [`Role`]; every admin route
//! checks the role's permissions (see [`permissions::required`] and the admin middleware
//! in `crate::http`).
//!
//! Staff authenticate with opaque bearer tokens, stored only as their SHA-256: a
//! `session` token from signing in with a password (it expires), or an `api` token made
//! for a tool such as the CLI (it lasts until revoked). Every request looks the token up,
//! so disabling a user or revoking a token takes effect at once. The audit log names
//! staff as `staff:<id>`.
//!
//! Staff with two-factor sign-in on ([`mfa`]) get a short-lived challenge for their
//! password, and their session for the challenge and a code; the store can require it
//! ([`mfa::TwoFactorPolicy`]). Staff see and revoke their own sessions ([`sessions`]).
//!
//! A store without staff gets an owner at start ([`ensure_owner`]) whose API token is the
//! configured `OLIVINE_ADMIN_TOKEN` or the one written to `<data dir>/admin-token`, the
//! file the CLI reads.

pub mod api;
pub mod mfa;
pub mod mfa_api;
pub mod passkeys;
pub mod permissions;
pub mod sessions;
pub mod sso;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::accounts::{check_email, check_password, hash_password, normalise_email};
use crate::error::{Error, Problems, Result};
use crate::store::{Db, Tx, is_unique_violation};
pub use permissions::{Access, Permission, Role};

/// Lifetime of a token from signing in with a password.
pub const SESSION_TTL_SECS: i64 = 12 * 60 * 60;
const NAME_MAX_CHARS: usize = 200;
const LABEL_MAX_CHARS: usize = 100;
/// The label of the owner's token that comes from configuration or the token file.
pub const BOOTSTRAP_LABEL: &str = "bootstrap";

/// A staff user authenticated by a bearer token; admin handlers take it to know who acts.
#[derive(Debug, Clone)]
pub struct Staff {
    pub id: i64,
    pub email: String,
    pub role: Role,
    /// The token's row, so sign-out can revoke exactly it.
    pub token_id: i64,
    /// `session` (signed in with a password) or `api` (a tool's token).
    pub token_kind: String,
    /// The second factor the session was signed in with (`totp`, `recovery_code`,
    /// `passkey`); `None` for a password alone and for API tokens.
    pub second_factor: Option<String>,
    /// `sso` for a session signed in through the single sign-on provider ([`sso`]).
    pub signed_in_via: Option<String>,
    /// When the token was last seen in use (recorded at most once a minute).
    pub token_last_used_at: Option<String>,
    /// Whether the user has two-factor sign-in with an authenticator app on.
    pub totp_on: bool,
    /// Whether the user has a passkey (a second factor too).
    pub passkey_on: bool,
    /// How the audit log names this user.
    pub actor: String,
}

impl Staff {
    /// Whether the token is a session from signing in (not an API token).
    pub fn is_session(&self) -> bool {
        self.token_kind == "session"
    }
}

pub fn actor_of(id: i64) -> String {
    format!("staff:{id}")
}

/// A staff user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StaffUser {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub permissions: Vec<Permission>,
    /// Whether the user can sign in with a password (otherwise API tokens only).
    pub has_password: bool,
    pub disabled: bool,
    pub created_at: String,
}

/// A token as the API shows it (never the secret, which is shown once on creation).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub kind: String,
    pub label: String,
    pub created_at: String,
    /// The address of the request that made it (the API or the admin's form; behind a
    /// trusted proxy, the address it forwards): none for tokens made by the CLI, and for
    /// those made before this was recorded.
    #[schema(example = "203.0.113.7")]
    pub created_from: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A new token: the secret is in this answer only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedToken {
    /// Send as `Authorization: Bearer …`.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    crate::accounts::keys::hex(&sha2::Sha256::digest(text.as_bytes()))
}

pub(crate) fn new_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    format!(
        "olv_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Finds the staff user a bearer token belongs to: the token known, not revoked, not
/// expired, the user not disabled. Anything else is the same 401.
pub async fn authenticate(db: &Db, token: &str) -> Result<Staff> {
    if token.is_empty() || token.len() > 512 {
        return Err(Error::Unauthorized);
    }
    let row = sqlx::query(
        "SELECT u.id, u.email, u.role, t.id, t.expires_at, t.kind, t.second_factor,
                t.last_used_at, f.confirmed_at IS NOT NULL, t.signed_in_via,
                EXISTS (SELECT 1 FROM staff_passkeys p WHERE p.staff_id = u.id)
         FROM staff_tokens t
         JOIN staff_users u ON u.id = t.staff_id
         LEFT JOIN staff_totp f ON f.staff_id = u.id
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.disabled_at IS NULL",
    )
    .bind(sha256_hex(token))
    .fetch_optional(&db.pool)
    .await?
    .ok_or(Error::Unauthorized)?;
    let expires_at: Option<String> = row.try_get(4)?;
    if expires_at.is_some_and(|at| at <= crate::time::now()) {
        return Err(Error::Unauthorized);
    }
    let id: i64 = row.try_get(0)?;
    let role: String = row.try_get(2)?;
    Ok(Staff {
        id,
        email: row.try_get(1)?,
        role: Role::parse(&role).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("staff {id} has unknown role {role}"))
        })?,
        token_id: row.try_get(3)?,
        token_kind: row.try_get(5)?,
        second_factor: row.try_get(6)?,
        signed_in_via: row.try_get(9)?,
        token_last_used_at: row.try_get(7)?,
        totp_on: flag(&row, 8)?,
        passkey_on: flag(&row, 10)?,
        actor: actor_of(id),
    })
}

const USER_COLUMNS: &str =
    "id, email, name, role, password_hash IS NOT NULL, disabled_at IS NOT NULL, created_at";

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<StaffUser> {
    let id: i64 = row.try_get(0)?;
    let role: String = row.try_get(3)?;
    let role = Role::parse(&role)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("staff {id} has unknown role {role}")))?;
    Ok(StaffUser {
        id,
        email: row.try_get(1)?,
        name: row.try_get(2)?,
        role,
        permissions: role.permissions().to_vec(),
        has_password: flag(row, 4)?,
        disabled: flag(row, 5)?,
        created_at: row.try_get(6)?,
    })
}

/// A boolean expression's value: SQLite answers an integer, PostgreSQL a boolean.
pub(crate) fn flag(row: &sqlx::any::AnyRow, index: usize) -> Result<bool> {
    Ok(match row.try_get::<bool, _>(index) {
        Ok(value) => value,
        Err(_) => row.try_get::<i64, _>(index)? != 0,
    })
}

pub async fn get_user(db: &Db, id: i64) -> Result<StaffUser> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM staff_users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or_else(|| Error::not_found(format!("staff user {id}")))?;
    user_from_row(&row)
}

pub async fn list_users(db: &Db) -> Result<Vec<StaffUser>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM staff_users ORDER BY id"
    )))
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(user_from_row).collect()
}

/// A new staff user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    #[schema(value_type = crate::http::schema::Email)]
    pub email: String,
    #[schema(value_type = crate::http::schema::SingleLine200)]
    pub name: String,
    pub role: Role,
    /// Optional: without one the user works with API tokens only.
    #[serde(default)]
    #[schema(value_type = Option<crate::http::schema::Password>)]
    pub password: Option<String>,
}

/// Not blank, at most `max` characters as sent, no control characters once trimmed.
fn check_name(problems: &mut Problems, field: &str, name: &str, max: usize) {
    let length = name.chars().count();
    let name = name.trim();
    problems.check(!name.is_empty(), field, "must not be empty");
    problems.check(
        length <= max,
        field,
        format!("must be at most {max} characters"),
    );
    problems.check(
        !name.chars().any(char::is_control),
        field,
        "must not contain control characters",
    );
}

/// Creates a staff user; `actor` is who does it (audited).
pub async fn create_user(db: &Db, actor: &str, input: NewStaff) -> Result<StaffUser> {
    let mut problems = Problems::new();
    check_email(&mut problems, "email", &input.email);
    check_name(&mut problems, "name", &input.name, NAME_MAX_CHARS);
    if let Some(password) = &input.password {
        check_password(&mut problems, "password", password);
    }
    problems.into_result()?;
    let password_hash = match input.password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let email = normalise_email(&input.email);
    let now = crate::time::now();
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO staff_users (email, name, role, password_hash, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(&email)
    .bind(input.name.trim())
    .bind(input.role.name())
    .bind(&password_hash)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await;
    let id: i64 = match inserted {
        Err(err) if is_unique_violation(&err) => {
            return Err(Error::conflict(
                Some("email"),
                "a staff user with this email exists already",
            ));
        }
        other => other?.try_get(0)?,
    };
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "staff.created",
            target_type: "staff",
            target_id: id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "email": email, "role": input.role.name(), "has_password": password_hash.is_some(),
            })),
        },
    )
    .await?;
    tx.commit().await?;
    get_user(db, id).await
}

/// Changes to a staff user; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffPatch {
    #[schema(value_type = Option<crate::http::schema::SingleLine200>)]
    pub name: Option<String>,
    pub role: Option<Role>,
    /// `true` disables the user (their tokens stop working at once); `false` enables.
    pub disabled: Option<bool>,
    /// Sets a new password.
    #[schema(value_type = Option<crate::http::schema::Password>)]
    pub password: Option<String>,
}

/// Counts active owners other than `except`, inside the transaction that is about to
/// take an owner away, so the store never ends up without one.
async fn other_active_owners(tx: &mut Tx, except: i64) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM staff_users WHERE role = 'owner' AND disabled_at IS NULL AND id <> $1",
    )
    .bind(except)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get(0)?)
}

pub async fn update_user(db: &Db, actor: &str, id: i64, patch: StaffPatch) -> Result<StaffUser> {
    let mut problems = Problems::new();
    if let Some(name) = &patch.name {
        check_name(&mut problems, "name", name, NAME_MAX_CHARS);
    }
    if let Some(password) = &patch.password {
        check_password(&mut problems, "password", password);
    }
    problems.into_result()?;
    let password_hash = match patch.password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let before = get_user(db, id).await?;
    let mut tx = db.begin().await?;
    let loses_owner = before.role == Role::Owner
        && !before.disabled
        && (patch.role.is_some_and(|r| r != Role::Owner) || patch.disabled == Some(true));
    if loses_owner && other_active_owners(&mut tx, id).await? == 0 {
        return Err(Error::conflict(
            Some(if patch.disabled == Some(true) {
                "disabled"
            } else {
                "role"
            }),
            "the store must keep at least one active owner",
        ));
    }
    let now = crate::time::now();
    let disabled_at = match patch.disabled {
        Some(true) if !before.disabled => Some(Some(now.clone())),
        Some(false) => Some(None),
        _ => None,
    };
    sqlx::query(
        "UPDATE staff_users SET
           name = COALESCE($1, name),
           role = COALESCE($2, role),
           password_hash = COALESCE($3, password_hash),
           disabled_at = CASE WHEN $4 = 1 THEN $5 ELSE disabled_at END,
           updated_at = $6
         WHERE id = $7",
    )
    .bind(patch.name.as_deref().map(str::trim))
    .bind(patch.role.map(Role::name))
    .bind(&password_hash)
    .bind(i32::from(disabled_at.is_some()))
    .bind(disabled_at.clone().flatten())
    .bind(&now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    // A new password ends the sessions signed in with the old one.
    if password_hash.is_some() {
        sqlx::query(
            "UPDATE staff_tokens SET revoked_at = $1
             WHERE staff_id = $2 AND kind = 'session' AND revoked_at IS NULL",
        )
        .bind(&now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let after_role = patch.role.unwrap_or(before.role);
    let after_disabled = patch.disabled.unwrap_or(before.disabled);
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "staff.updated",
            target_type: "staff",
            target_id: id.to_string(),
            before: Some(serde_json::json!({
                "name": before.name, "role": before.role.name(), "disabled": before.disabled,
            })),
            after: Some(serde_json::json!({
                "name": patch.name.as_deref().map(str::trim).unwrap_or(&before.name),
                "role": after_role.name(),
                "disabled": after_disabled,
                "password_changed": password_hash.is_some(),
            })),
        },
    )
    .await?;
    tx.commit().await?;
    get_user(db, id).await
}

fn token_from_row(row: &sqlx::any::AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        label: row.try_get(2)?,
        created_at: row.try_get(3)?,
        created_from: row.try_get(4)?,
        expires_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
    })
}

pub async fn list_tokens(db: &Db, staff_id: i64) -> Result<Vec<TokenInfo>> {
    get_user(db, staff_id).await?;
    let rows = sqlx::query(
        "SELECT id, kind, label, created_at, created_from, expires_at, revoked_at FROM staff_tokens
         WHERE staff_id = $1 ORDER BY id",
    )
    .bind(staff_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(token_from_row).collect()
}

/// Stores a token for a staff user inside a transaction; `secret` is the bearer value,
/// `from` the address of the request that made it (none from the CLI or at start).
async fn insert_token(
    tx: &mut Tx,
    staff_id: i64,
    kind: &str,
    label: &str,
    secret: &str,
    expires_at: Option<String>,
    from: Option<&str>,
) -> Result<TokenInfo> {
    let now = crate::time::now();
    let row = sqlx::query(
        "INSERT INTO staff_tokens (staff_id, kind, token_hash, label, created_at, expires_at,
           created_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(staff_id)
    .bind(kind)
    .bind(sha256_hex(secret))
    .bind(label)
    .bind(&now)
    .bind(&expires_at)
    .bind(from)
    .fetch_one(&mut **tx)
    .await?;
    Ok(TokenInfo {
        id: row.try_get(0)?,
        kind: kind.to_owned(),
        label: label.to_owned(),
        created_at: now,
        created_from: from.map(str::to_owned),
        expires_at,
        revoked_at: None,
    })
}

/// Makes an API token (for the CLI or a script) for a staff user, from no known address
/// (the CLI); see [`create_api_token_from`].
pub async fn create_api_token(
    db: &Db,
    actor: &str,
    staff_id: i64,
    label: &str,
) -> Result<IssuedToken> {
    create_api_token_from(db, actor, staff_id, label, None).await
}

/// Makes an API token for a staff user; `from` is the address of the request that asked
/// for it, which the staff member sees in their list of sessions and tokens.
pub async fn create_api_token_from(
    db: &Db,
    actor: &str,
    staff_id: i64,
    label: &str,
    from: Option<&str>,
) -> Result<IssuedToken> {
    let mut problems = Problems::new();
    check_name(&mut problems, "label", label, LABEL_MAX_CHARS);
    problems.into_result()?;
    let user = get_user(db, staff_id).await?;
    if user.disabled {
        return Err(Error::conflict(None, "the staff user is disabled"));
    }
    let secret = new_secret();
    let mut tx = db.begin().await?;
    let info = insert_token(&mut tx, staff_id, "api", label.trim(), &secret, None, from).await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "staff.token_created",
            target_type: "staff",
            target_id: staff_id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "token_id": info.id, "label": info.label })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(IssuedToken {
        token: secret,
        info,
    })
}

pub async fn revoke_token(db: &Db, actor: &str, staff_id: i64, token_id: i64) -> Result<()> {
    let mut tx = db.begin().await?;
    let revoked = sqlx::query(
        "UPDATE staff_tokens SET revoked_at = $1 WHERE id = $2 AND staff_id = $3 AND revoked_at IS NULL",
    )
    .bind(crate::time::now())
    .bind(token_id)
    .bind(staff_id)
    .execute(&mut *tx)
    .await?;
    if revoked.rows_affected() == 0 {
        return Err(Error::not_found(format!(
            "active token {token_id} of staff user {staff_id}"
        )));
    }
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "staff.token_revoked",
            target_type: "staff",
            target_id: staff_id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "token_id": token_id })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Staff sign-in input.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffCredentials {
    pub email: String,
    pub password: String,
}

/// A session token from signing in.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffSession {
    pub token: String,
    pub token_type: &'static str,
    pub expires_at: String,
    pub staff: StaffUser,
}

/// The answer to a staff sign-in: a session, or for a staff member with two-factor
/// sign-in on, a challenge to answer with a second factor at `POST /api/v1/staff/sign-in/mfa`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SignInAnswer {
    Session(StaffSession),
    MfaRequired(mfa::MfaChallenge),
}

/// Signs a staff user in with email and password. A wrong email, a wrong password, a
/// user without a password and a disabled user all get the same 401. A user linked to
/// the single sign-on provider (not an owner) is refused with 403 `sso_required` once the
/// password checked out ([`sso::password_refused`]). A user with two-factor sign-in on
/// gets a challenge rather than a session; `from` is the client's address, kept with the
/// session (or the challenge).
pub async fn sign_in(
    state: &crate::app::AppState,
    input: StaffCredentials,
    from: Option<String>,
) -> Result<SignInAnswer> {
    let db = &state.db;
    let row = sqlx::query(
        "SELECT id, password_hash FROM staff_users WHERE email = $1 AND disabled_at IS NULL",
    )
    .bind(normalise_email(&input.email))
    .fetch_optional(&db.pool)
    .await?;
    let (id, stored) = match &row {
        Some(row) => (
            Some(row.try_get::<i64, _>(0)?),
            row.try_get::<Option<String>, _>(1)?,
        ),
        None => (None, None),
    };
    let too_long = input.password.chars().count() > crate::accounts::PASSWORD_MAX_CHARS;
    let ok = crate::accounts::verify_password(input.password, stored.filter(|_| !too_long)).await?;
    let Some(id) = id.filter(|_| ok) else {
        return Err(Error::InvalidCredentials(crate::accounts::BAD_CREDENTIALS));
    };
    // Linked to the single sign-on provider: the provider decides (see `sso`).
    if sso::password_refused(db, id).await? {
        return Err(sso::refuse_password(db, id).await?);
    }
    if mfa::second_factor_on(db, id).await? {
        let challenge = mfa::open_challenge(state, id, from.as_deref()).await?;
        return Ok(SignInAnswer::MfaRequired(challenge));
    }
    let mut tx = db.begin().await?;
    let (token, expires_at) = issue_session(&mut tx, id, None, from.as_deref()).await?;
    tx.commit().await?;
    Ok(SignInAnswer::Session(
        session_answer(db, id, token, expires_at).await?,
    ))
}

/// Makes a sign-in session (12 hours) for staff user `id` inside `tx` and audits the
/// sign-in with the factors it took; answers the token and when it expires.
pub(crate) async fn issue_session(
    tx: &mut Tx,
    id: i64,
    second_factor: Option<&str>,
    from: Option<&str>,
) -> Result<(String, String)> {
    let (token_id, secret, expires_at) = insert_session(tx, id, second_factor, None, from).await?;
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor: &actor_of(id),
            action: "staff.signed_in",
            target_type: "staff",
            target_id: id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "token_id": token_id,
                "factors": match second_factor {
                    Some(factor) => vec!["password", factor],
                    None => vec!["password"],
                },
            })),
        },
    )
    .await?;
    Ok((secret, expires_at))
}

/// Stores a sign-in session (12 hours) for staff user `id` inside `tx`, with the second
/// factor it was signed in with, how it was signed in when not with the password
/// (`signed_in_via`: `sso`) and the client's address; answers the token's id, the token
/// and when it expires. The caller audits the sign-in.
pub(crate) async fn insert_session(
    tx: &mut Tx,
    id: i64,
    second_factor: Option<&str>,
    signed_in_via: Option<&str>,
    from: Option<&str>,
) -> Result<(i64, String, String)> {
    let secret = new_secret();
    let expires = chrono::Utc::now() + chrono::Duration::seconds(SESSION_TTL_SECS);
    let expires_at = expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let info = insert_token(
        tx,
        id,
        "session",
        "sign-in",
        &secret,
        Some(expires_at.clone()),
        from,
    )
    .await?;
    sqlx::query("UPDATE staff_tokens SET second_factor = $1, signed_in_via = $2 WHERE id = $3")
        .bind(second_factor)
        .bind(signed_in_via)
        .bind(info.id)
        .execute(&mut **tx)
        .await?;
    Ok((info.id, secret, expires_at))
}

/// The answer to a sign-in that made a session.
pub(crate) async fn session_answer(
    db: &Db,
    id: i64,
    token: String,
    expires_at: String,
) -> Result<StaffSession> {
    Ok(StaffSession {
        token,
        token_type: "Bearer",
        expires_at,
        staff: get_user(db, id).await?,
    })
}

/// Revokes the token the request came with, and audits it (a token revoked meanwhile
/// is not signed out twice).
pub async fn sign_out(db: &Db, staff: &Staff) -> Result<()> {
    let mut tx = db.begin().await?;
    let revoked =
        sqlx::query("UPDATE staff_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(crate::time::now())
            .bind(staff.token_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if revoked > 0 {
        crate::audit::record(
            &mut tx,
            &crate::audit::Entry {
                actor: &staff.actor,
                action: "staff.signed_out",
                target_type: "staff",
                target_id: staff.id.to_string(),
                before: None,
                after: Some(serde_json::json!({
                    "token_id": staff.token_id, "kind": staff.token_kind,
                })),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Makes sure the store has an owner and that the owner's bootstrap token is the one
/// configured (or kept in the token file). Runs at every start; does nothing once an
/// owner exists and the bootstrap token is current.
pub async fn ensure_owner(db: &Db, owner_email: &str, bootstrap_token: &str) -> Result<()> {
    let owner = sqlx::query(
        "SELECT id FROM staff_users WHERE role = 'owner' AND disabled_at IS NULL ORDER BY id LIMIT 1",
    )
    .fetch_optional(&db.pool)
    .await?;
    let owner_id = match owner {
        Some(row) => row.try_get::<i64, _>(0)?,
        None => {
            let user = create_user(
                db,
                "kernel",
                NewStaff {
                    email: owner_email.to_owned(),
                    name: "Owner".to_owned(),
                    role: Role::Owner,
                    password: None,
                },
            )
            .await;
            match user {
                Ok(user) => {
                    tracing::info!(email = %user.email, "created the store's owner (staff user)");
                    user.id
                }
                // Another node created it at the same moment.
                Err(Error::Conflict { .. }) => {
                    return Box::pin(ensure_owner(db, owner_email, bootstrap_token)).await;
                }
                Err(err) => return Err(err),
            }
        }
    };
    let hash = sha256_hex(bootstrap_token);
    let current = sqlx::query(
        "SELECT 1 FROM staff_tokens WHERE token_hash = $1 AND label = $2 AND revoked_at IS NULL",
    )
    .bind(&hash)
    .bind(BOOTSTRAP_LABEL)
    .fetch_optional(&db.pool)
    .await?;
    if current.is_some() {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    // A changed bootstrap token replaces the old one.
    sqlx::query(
        "UPDATE staff_tokens SET revoked_at = $1 WHERE label = $2 AND kind = 'api' AND revoked_at IS NULL",
    )
    .bind(crate::time::now())
    .bind(BOOTSTRAP_LABEL)
    .execute(&mut *tx)
    .await?;
    let inserted = insert_token(
        &mut tx,
        owner_id,
        "api",
        BOOTSTRAP_LABEL,
        bootstrap_token,
        None,
        None,
    )
    .await;
    match inserted {
        Err(Error::Internal(err))
            if err
                .downcast_ref::<sqlx::Error>()
                .is_some_and(is_unique_violation) =>
        {
            // The same token is registered already (revoked, or by another node).
            return Ok(());
        }
        other => other?,
    };
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: "kernel",
            action: "staff.token_created",
            target_type: "staff",
            target_id: owner_id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "label": BOOTSTRAP_LABEL })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
