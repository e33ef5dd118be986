//! Passkeys (WebAuthn) as a second factor of staff sign-in, beside the authenticator
//! app ([`super::mfa`]), through `webauthn-rs` (pure Rust: RustCrypto).
//!
//! - **Relying party.** The store's public address (`OLIVINE_PUBLIC_URL`,
//!   [`crate::config::ServeConfig::public_url`]) is the only origin accepted, and its host
//!   the relying party id passkeys are bound to. Browsers offer passkeys only on a domain
//!   name (`localhost` included), never on an IP address: a store whose public address is
//!   one answers 409 to every passkey route.
//! - **Registration.** A signed-in staff member (a session, not an API token) starts a
//!   ceremony ([`start_registration`]: the options for `navigator.credentials.create`)
//!   and finishes it with the browser's credential and a name ([`finish_registration`]).
//!   User verification is required (a PIN or a fingerprint on the authenticator); the
//!   attestation asked for is `none`. Their passkeys are excluded, so one authenticator
//!   is not registered twice. The session it is registered from counts as signed in with
//!   a second factor, as confirming an authenticator app does.
//! - **Sign-in.** A staff member with a passkey gets the MFA challenge for their password
//!   ([`super::mfa::open_challenge`], `methods` naming `passkey`); the challenge opens a
//!   ceremony ([`start_sign_in`]: the options for `navigator.credentials.get`) and the
//!   assertion answers the challenge at the same `POST /api/v1/staff/sign-in/mfa` as a
//!   code does ([`super::mfa::complete_sign_in`]), limited and counted the same way.
//! - **Ceremonies.** Their state (`PasskeyRegistration`, `PasskeyAuthentication`) is kept
//!   in `staff_passkey_ceremonies` between the two requests, since the nodes of a cluster
//!   share only the database: minutes long on the kernel's clock, one at a time per staff
//!   member (registration) or per challenge (sign-in), and taken (deleted) by the answer
//!   whether it checks out or not, so an assertion is never accepted twice.
//! - **Counter.** The authenticator's signature counter is stored with the credential; an
//!   assertion whose counter does not move past it (a cloned authenticator) is refused.
//!   Passkeys that do not count (synced ones answer 0 always) are not held to it.
//! - **Removal** takes the password, limited as signing in is.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use webauthn_rs::prelude::{
    AuthenticationResult, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use super::Staff;
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::store::is_unique_violation;

/// How long a ceremony waits for the browser.
pub const CEREMONY_TTL_SECS: i64 = 5 * 60;
/// Passkeys one staff member may register.
pub const MAX_PASSKEYS: i64 = 20;
const NAME_MAX_CHARS: usize = 100;
/// The method a challenge names and a session records.
pub const METHOD: &str = "passkey";
const REGISTER: &str = "register";
const SIGN_IN: &str = "sign_in";

fn stamp(at: DateTime<Utc>) -> String {
    crate::time::format_timestamp(at)
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn internal(what: &str, err: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow::anyhow!("{what}: {err}"))
}

/// The store's relying party: its public address's host, that origin alone.
pub fn relying_party(state: &AppState) -> Result<Webauthn> {
    let public = state.config.public_url();
    let unavailable = || {
        Error::conflict(
            None,
            format!(
                "passkeys need the store's public address (OLIVINE_PUBLIC_URL) to be a domain \
                 name such as https://shop.example; browsers offer none on {public}"
            ),
        )
    };
    let origin = Url::parse(&public).map_err(|_| unavailable())?;
    let Some(rp_id) = origin.domain().map(str::to_owned) else {
        return Err(unavailable());
    };
    WebauthnBuilder::new(&rp_id, &origin)
        .map_err(|_| unavailable())?
        .rp_name("Olivine")
        .build()
        .map_err(|err| internal("building the WebAuthn relying party", err))
}

/// The user handle passkeys of staff user `staff_id` carry: stable, and naming nothing
/// (not the email, not the id in clear).
fn user_handle(staff_id: i64) -> Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("olivine-staff-passkey:{staff_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// Whether staff user `id` has a passkey.
pub async fn has_passkey(db: &crate::store::Db, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM staff_passkeys WHERE staff_id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?
            .is_some(),
    )
}

/// A passkey as the API shows it (never the key).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PasskeyInfo {
    pub id: i64,
    /// The name the staff member gave it.
    #[schema(example = "YubiKey on my keyring")]
    pub name: String,
    pub created_at: String,
    /// When it last signed in (`null`: never yet).
    pub last_used_at: Option<String>,
}

/// The signed-in staff member's passkeys, oldest first.
pub async fn list(state: &AppState, staff_id: i64) -> Result<Vec<PasskeyInfo>> {
    let rows = sqlx::query(
        "SELECT id, name, created_at, last_used_at FROM staff_passkeys WHERE staff_id = $1
         ORDER BY id",
    )
    .bind(staff_id)
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PasskeyInfo {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                created_at: row.try_get(2)?,
                last_used_at: row.try_get(3)?,
            })
        })
        .collect()
}

/// A stored passkey: its row and the relying party's record of it.
struct Stored {
    id: i64,
    json: String,
    passkey: Passkey,
}

async fn load_passkeys(state: &AppState, staff_id: i64) -> Result<Vec<Stored>> {
    let rows = sqlx::query("SELECT id, credential FROM staff_passkeys WHERE staff_id = $1")
        .bind(staff_id)
        .fetch_all(&state.db.pool)
        .await?;
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get(0)?;
            let json: String = row.try_get(1)?;
            let passkey = serde_json::from_str(&json)
                .map_err(|err| internal(&format!("stored passkey {id}"), err))?;
            Ok(Stored { id, json, passkey })
        })
        .collect()
}

/// Options for the browser's `navigator.credentials.create` (or `.get`): the
/// `publicKey` member is what it takes, its binary members base64url.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyOptions {
    /// `{"publicKey": {…}}` (WebAuthn's `CredentialCreationOptions` or
    /// `CredentialRequestOptions`), binary values as base64url without padding.
    #[schema(value_type = Object, example = json!({"publicKey": {"rp": {"id": "shop.example", "name": "Olivine"}, "challenge": "qB3Lk…", "timeout": 300000}}))]
    pub options: serde_json::Value,
    /// When the ceremony stops waiting for the answer.
    pub expires_at: String,
}

/// The condition on `challenge_id` (bound as `$3` for a sign-in) of a registration's
/// ceremony (none) or a sign-in's.
fn same_challenge(challenge_id: Option<i64>) -> &'static str {
    match challenge_id {
        None => "challenge_id IS NULL",
        Some(_) => "challenge_id = $3",
    }
}

/// Stores a ceremony's state, replacing what the same staff member (registration) or
/// challenge (sign-in) had pending, and drops the expired ones.
async fn store_ceremony(
    state: &AppState,
    staff_id: i64,
    kind: &str,
    challenge_id: Option<i64>,
    ceremony: String,
) -> Result<String> {
    let now = state.clock.now();
    let expires_at = stamp(now + chrono::Duration::seconds(CEREMONY_TTL_SECS));
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM staff_passkey_ceremonies WHERE expires_at < $1")
        .bind(stamp(now))
        .execute(&mut *tx)
        .await?;
    let mut replaced = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM staff_passkey_ceremonies WHERE staff_id = $1 AND kind = $2 AND {}",
        same_challenge(challenge_id)
    )))
    .bind(staff_id)
    .bind(kind);
    if let Some(challenge_id) = challenge_id {
        replaced = replaced.bind(challenge_id);
    }
    replaced.execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO staff_passkey_ceremonies
           (staff_id, kind, challenge_id, state, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(staff_id)
    .bind(kind)
    .bind(challenge_id)
    .bind(ceremony)
    .bind(stamp(now))
    .bind(&expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(expires_at)
}

/// Takes (deletes) the pending ceremony of `kind` of staff user `staff_id` (for a
/// sign-in: of challenge `challenge_id`), if there is one not expired: its state. Taken
/// whatever the answer is worth, so one state answers once.
async fn take_ceremony(
    state: &AppState,
    staff_id: i64,
    kind: &str,
    challenge_id: Option<i64>,
) -> Result<Option<String>> {
    let mut pending = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, state, expires_at FROM staff_passkey_ceremonies
         WHERE staff_id = $1 AND kind = $2 AND {} ORDER BY id DESC LIMIT 1",
        same_challenge(challenge_id)
    )))
    .bind(staff_id)
    .bind(kind);
    if let Some(challenge_id) = challenge_id {
        pending = pending.bind(challenge_id);
    }
    let row = pending.fetch_optional(&state.db.pool).await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: i64 = row.try_get(0)?;
    let ceremony: String = row.try_get(1)?;
    let expires_at: String = row.try_get(2)?;
    let taken = sqlx::query("DELETE FROM staff_passkey_ceremonies WHERE id = $1")
        .bind(id)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
    Ok((taken == 1 && expires_at > stamp(state.clock.now())).then_some(ceremony))
}

/// Starts registering a passkey for the signed-in staff member: the options for the
/// browser. 403 for an API token; 409 at [`MAX_PASSKEYS`], or without a public address
/// passkeys can be bound to.
pub async fn start_registration(state: &AppState, staff: &Staff) -> Result<PasskeyOptions> {
    super::mfa::ensure_session(staff)?;
    let webauthn = relying_party(state)?;
    let existing = load_passkeys(state, staff.id).await?;
    if i64::try_from(existing.len()).unwrap_or(i64::MAX) >= MAX_PASSKEYS {
        return Err(Error::conflict(
            None,
            format!("a staff member has at most {MAX_PASSKEYS} passkeys: remove one first"),
        ));
    }
    let user = super::get_user(&state.db, staff.id).await?;
    let exclude: Vec<_> = existing
        .iter()
        .map(|s| s.passkey.cred_id().clone())
        .collect();
    let (options, registration) = webauthn
        .start_passkey_registration(
            user_handle(staff.id),
            &user.email,
            &user.name,
            Some(exclude).filter(|e| !e.is_empty()),
        )
        .map_err(|err| internal("starting a passkey registration", err))?;
    let ceremony =
        serde_json::to_string(&registration).map_err(|err| internal("a registration", err))?;
    let expires_at = store_ceremony(state, staff.id, REGISTER, None, ceremony).await?;
    Ok(PasskeyOptions {
        options: serde_json::to_value(&options).map_err(|err| internal("options", err))?,
        expires_at,
    })
}

/// A new passkey: its name and the browser's answer to the registration's options.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPasskey {
    /// What to call it (1 to 100 characters).
    #[schema(example = "YubiKey on my keyring")]
    pub name: String,
    /// The `PublicKeyCredential` `navigator.credentials.create` answered, as JSON (its
    /// `toJSON()`: `id`, `rawId`, `type`, `response.attestationObject`,
    /// `response.clientDataJSON`, binary values base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

pub fn check_name(name: &str) -> Result<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    if trimmed.chars().count() > NAME_MAX_CHARS {
        return Err(Error::invalid(
            "name",
            format!("must be at most {NAME_MAX_CHARS} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Finishes registering a passkey with the browser's credential: stored, audited, and the
/// session it came from counts as signed in with a second factor.
pub async fn finish_registration(
    state: &AppState,
    staff: &Staff,
    input: NewPasskey,
) -> Result<PasskeyInfo> {
    super::mfa::ensure_session(staff)?;
    let name = check_name(&input.name)?;
    let credential: RegisterPublicKeyCredential = serde_json::from_value(input.credential)
        .map_err(|err| {
            Error::invalid(
                "credential",
                format!(
                    "is not a WebAuthn credential as navigator.credentials.create answers it: {err}"
                ),
            )
        })?;
    let webauthn = relying_party(state)?;
    let Some(ceremony) = take_ceremony(state, staff.id, REGISTER, None).await? else {
        return Err(Error::conflict(
            None,
            "no passkey registration is waiting (none started, or it expired or was answered): \
             start again with POST /api/v1/staff/me/mfa/passkeys/start",
        ));
    };
    let registration: PasskeyRegistration =
        serde_json::from_str(&ceremony).map_err(|err| internal("a stored registration", err))?;
    let passkey = webauthn
        .finish_passkey_registration(&credential, &registration)
        .map_err(|err| {
            tracing::info!(staff_id = staff.id, error = %err, "a passkey registration was refused");
            Error::invalid(
                "credential",
                format!("does not answer this registration: {err}; start again"),
            )
        })?;
    let json = serde_json::to_string(&passkey).map_err(|err| internal("a passkey", err))?;
    let now = stamp(state.clock.now());
    let mut tx = state.db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO staff_passkeys (staff_id, name, credential_id, credential, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(staff.id)
    .bind(&name)
    .bind(b64url(passkey.cred_id()))
    .bind(&json)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await;
    let id: i64 = match inserted {
        Err(err) if is_unique_violation(&err) => {
            return Err(Error::conflict(
                Some("credential"),
                "this passkey is registered already",
            ));
        }
        other => other?.try_get(0)?,
    };
    // Proving the new factor from this session makes it a session with a factor (one
    // signed in with another keeps that one).
    sqlx::query(
        "UPDATE staff_tokens SET second_factor = COALESCE(second_factor, 'passkey')
         WHERE id = $1 AND kind = 'session'",
    )
    .bind(staff.token_id)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &staff.actor,
            action: "staff.factor_added",
            target_type: "staff",
            target_id: staff.id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "factor": METHOD, "passkey_id": id, "name": name,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(PasskeyInfo {
        id,
        name,
        created_at: now,
        last_used_at: None,
    })
}

/// Removing a passkey: the password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemovePasskey {
    #[schema(value_type = crate::http::schema::Password)]
    pub password: String,
}

/// Removes one of the signed-in staff member's passkeys, with their password (limited as
/// signing in is). 404 for one that is not theirs.
pub async fn remove(state: &AppState, staff: &Staff, id: i64, input: RemovePasskey) -> Result<()> {
    super::mfa::ensure_session(staff)?;
    let account = format!(
        "staff:{}",
        state
            .keys
            .lookup_hash(&crate::accounts::normalise_email(&staff.email))
    );
    state
        .limiter
        .hit(crate::ratelimit::Class::SignInAccount, &account)
        .await?;
    let stored: Option<String> = sqlx::query("SELECT password_hash FROM staff_users WHERE id = $1")
        .bind(staff.id)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .flatten();
    let too_long = input.password.chars().count() > crate::accounts::PASSWORD_MAX_CHARS;
    if !crate::accounts::verify_password(input.password, stored.filter(|_| !too_long)).await? {
        return Err(Error::BadCredential {
            field: "password",
            message: "the password is wrong",
        });
    }
    let mut tx = state.db.begin().await?;
    let name: Option<String> =
        sqlx::query("DELETE FROM staff_passkeys WHERE id = $1 AND staff_id = $2 RETURNING name")
            .bind(id)
            .bind(staff.id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
    let Some(name) = name else {
        return Err(Error::not_found(format!("passkey {id}")));
    };
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &staff.actor,
            action: "staff.factor_removed",
            target_type: "staff",
            target_id: staff.id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "factor": METHOD, "passkey_id": id, "name": name, "confirmed_with": "password",
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes every passkey of staff user `staff_id` inside `tx` (the owner's reset of a
/// lost second factor); answers how many.
pub(crate) async fn remove_all(tx: &mut crate::store::Tx, staff_id: i64) -> Result<u64> {
    sqlx::query("DELETE FROM staff_passkey_ceremonies WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut **tx)
        .await?;
    Ok(
        sqlx::query("DELETE FROM staff_passkeys WHERE staff_id = $1")
            .bind(staff_id)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    )
}

/// Asking for a passkey's answer to a sign-in challenge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyChallenge {
    #[schema(
        pattern = "^olvc_[A-Za-z0-9_-]{43}$",
        example = "olvc_Vn3m0Qy8dW2kU6tR1xPz7aHc4sLq9bEf0jNgYiKoTuM"
    )]
    pub challenge: String,
}

/// Opens the passkey ceremony of a sign-in challenge: the options for
/// `navigator.credentials.get`, naming the staff member's passkeys. Starting again
/// replaces the ceremony (its options stop working).
pub async fn start_sign_in(state: &AppState, input: PasskeyChallenge) -> Result<PasskeyOptions> {
    let (challenge_id, staff_id) = super::mfa::open_challenge_of(state, &input.challenge).await?;
    let webauthn = relying_party(state)?;
    let passkeys: Vec<Passkey> = load_passkeys(state, staff_id)
        .await?
        .into_iter()
        .map(|s| s.passkey)
        .collect();
    if passkeys.is_empty() {
        return Err(Error::conflict(
            Some("challenge"),
            "this staff member has no passkey: answer the challenge with a code",
        ));
    }
    let (options, authentication) = webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(|err| internal("starting a passkey sign-in", err))?;
    let ceremony =
        serde_json::to_string(&authentication).map_err(|err| internal("a sign-in", err))?;
    let expires_at = store_ceremony(state, staff_id, SIGN_IN, Some(challenge_id), ceremony).await?;
    Ok(PasskeyOptions {
        options: serde_json::to_value(&options).map_err(|err| internal("options", err))?,
        expires_at,
    })
}

/// A passkey's assertion as sent, parsed (422 naming `passkey` when it cannot be one).
pub(crate) fn parse_assertion(value: serde_json::Value) -> Result<PublicKeyCredential> {
    serde_json::from_value(value).map_err(|err| {
        Error::invalid(
            "passkey",
            format!("is not a WebAuthn assertion as navigator.credentials.get answers it: {err}"),
        )
    })
}

/// An assertion that checked out: the passkey's row and its record before and after (the
/// counter moved on).
pub(crate) struct Asserted {
    pub id: i64,
    pub before: String,
    pub after: String,
}

/// Checks an assertion answering challenge `challenge_id` of staff user `staff_id`
/// against the ceremony the challenge opened (taken, whatever the outcome): `None` for
/// one that does not check out (no ceremony or an expired one, another challenge, a key
/// not theirs, a bad signature, a counter that went back).
pub(crate) async fn check_assertion(
    state: &AppState,
    staff_id: i64,
    challenge_id: i64,
    credential: &PublicKeyCredential,
) -> Result<Option<Asserted>> {
    let webauthn = relying_party(state)?;
    let Some(ceremony) = take_ceremony(state, staff_id, SIGN_IN, Some(challenge_id)).await? else {
        return Ok(None);
    };
    let authentication: PasskeyAuthentication =
        serde_json::from_str(&ceremony).map_err(|err| internal("a stored sign-in", err))?;
    let result: AuthenticationResult =
        match webauthn.finish_passkey_authentication(credential, &authentication) {
            Ok(result) => result,
            Err(err) => {
                tracing::info!(staff_id, error = %err, "a passkey assertion was refused");
                return Ok(None);
            }
        };
    let Some(mut stored) = load_passkeys(state, staff_id)
        .await?
        .into_iter()
        .find(|s| s.passkey.cred_id() == result.cred_id())
    else {
        // Removed since the ceremony started.
        return Ok(None);
    };
    stored.passkey.update_credential(&result);
    let after = serde_json::to_string(&stored.passkey).map_err(|err| internal("a passkey", err))?;
    Ok(Some(Asserted {
        id: stored.id,
        before: stored.json,
        after,
    }))
}

/// Records the assertion's use inside the sign-in's transaction: the counter moves on,
/// unless another sign-in changed the passkey meanwhile (`false`: refused as a replay).
pub(crate) async fn use_assertion(
    tx: &mut crate::store::Tx,
    asserted: &Asserted,
    now: DateTime<Utc>,
) -> Result<bool> {
    Ok(sqlx::query(
        "UPDATE staff_passkeys SET credential = $1, last_used_at = $2
         WHERE id = $3 AND credential = $4",
    )
    .bind(&asserted.after)
    .bind(stamp(now))
    .bind(asserted.id)
    .bind(&asserted.before)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_handles_are_stable_and_distinct() {
        assert_eq!(user_handle(7), user_handle(7));
        assert_ne!(user_handle(7), user_handle(8));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("  Key ").ok().as_deref(), Some("Key"));
        assert!(check_name(" ").is_err());
        assert!(check_name(&"k".repeat(101)).is_err());
        assert!(check_name("a\u{7}b").is_err());
    }
}
