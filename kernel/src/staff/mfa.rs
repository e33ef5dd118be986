//! Two-factor sign-in for staff with an authenticator app (TOTP, RFC 6238: HMAC-SHA1, 6
//! digits, 30-second steps), recovery codes, and the store's policy of who must use it.
//!
//! - **Enrolment.** A signed-in staff member asks for a secret (20 random bytes), shown
//!   once as base32, as an `otpauth://` URI and as a QR code; it is stored encrypted with
//!   the accounts' data key ([`crate::accounts::Keyring::encrypt_field`], bound to the
//!   staff member) and is off until a code from the app confirms it. Confirming answers
//!   10 recovery codes, once; they are stored as argon2id hashes, like passwords.
//!   Turning it off takes the password and a current code (or a recovery code).
//! - **Sign-in.** A password that checks out for a staff member with it on answers a
//!   challenge instead of a session: opaque, stored as its SHA-256, valid 5 minutes,
//!   single use, spent after 5 wrong codes. The challenge and a code (or a recovery code)
//!   answer the session, which records the factor it was made with.
//! - **Codes.** A code is accepted for its own step and one step either side (clock
//!   skew), never two; and once: the last accepted step is kept per staff member and a
//!   code of that step or an earlier one is refused. The clock is the kernel's
//!   ([`crate::time::Clock`]), so tests step it.
//! - **Guessing.** Every second-factor attempt counts against the rate limiter's
//!   per-account class (`sign-in-account`, keyed `staff-mfa:<id>`, shared by every node
//!   through Redis when there is one); besides, 10 wrong codes within 15 minutes lock the
//!   staff member's second factor for 15 minutes (429 with `Retry-After`, in the
//!   database, so every node sees it), whichever challenges they came through.
//! - **Policy.** The `staff_two_factor` store setting ([`TwoFactorPolicy`]) requires it
//!   of every staff member or of the roles holding a sensitive permission. A session of
//!   such a staff member without it set up is refused on every admin route with 403
//!   `mfa_setup_required` (the `/api/v1/staff/me` routes stay open to set it up); a
//!   session signed in without a second factor (before it was required, or before it was
//!   turned on) is refused with 403 `mfa_required` until they sign in again. API tokens,
//!   made for tools by staff.manage, are not sessions and are not held to it.
//!
//! Every sign-in (with its factors), failed second factor, factor added or removed and
//! recovery code used is in the audit log.
//!
//! Passkeys (WebAuthn, [`super::passkeys`]) are the second kind of factor beside
//! `staff_totp`: a staff member with one gets a challenge whose `methods` name `passkey`,
//! answered at the same `POST /api/v1/staff/sign-in/mfa` with the browser's assertion,
//! limited, counted and locked as codes are; the session records `passkey`, and
//! [`Standing`] counts either factor. Single sign-on
//! ([`super::sso`]) makes sessions signed in via `sso`: the provider's authentication
//! stands for the second factor, and [`standing`] holds such a session as meeting the
//! policy.

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use totp_rs::{Builder, Secret, Totp};
use utoipa::ToSchema;

use super::{Permission, Role, Staff, StaffSession, actor_of, sha256_hex};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::store::{Db, Tx};

/// Seconds per code.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u8 = 6;
/// Steps accepted either side of the current one.
pub const SKEW_STEPS: u16 = 1;
/// How long a sign-in challenge lasts.
pub const CHALLENGE_TTL_SECS: i64 = 5 * 60;
/// Wrong codes one challenge takes before it is spent.
pub const CHALLENGE_MAX_FAILURES: i64 = 5;
/// Wrong codes within [`LOCKOUT_SECS`] that lock a staff member's second factor ...
pub const LOCKOUT_FAILURES: i64 = 10;
/// ... for this long.
pub const LOCKOUT_SECS: i64 = 15 * 60;
/// Recovery codes made at each enrolment.
pub const RECOVERY_CODES: usize = 10;
/// The issuer the authenticator app shows beside the account.
const ISSUER: &str = "Olivine";
/// Roles holding any of these must use two-factor sign-in under
/// [`TwoFactorPolicy::SensitiveRoles`].
pub const SENSITIVE_PERMISSIONS: [Permission; 3] = [
    Permission::PluginsManage,
    Permission::StaffManage,
    Permission::CustomersRead,
];
/// The second factors a challenge takes.
pub const METHODS: [&str; 2] = ["totp", "recovery_code"];
/// Recovery codes: 12 characters of Crockford's base32 alphabet (no i, l, o, u), 60
/// bits, shown as `xxxx-xxxx-xxxx`.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const RECOVERY_CHARS: usize = 12;
/// The pattern of a recovery code as typed (either case, dashes optional).
pub const RECOVERY_CODE_PATTERN: &str = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{4}-?[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{4}-?[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{4}$";
/// The prefix of sign-in challenges (tokens start `olv_`).
const CHALLENGE_PREFIX: &str = "olvc_";

/// Who must sign in with a second factor (the `staff_two_factor` store setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TwoFactorPolicy {
    /// Whoever turns it on.
    #[default]
    Optional,
    /// Every role holding plugins.manage, staff.manage or customers.read (today: owner,
    /// admin, support).
    SensitiveRoles,
    /// Every staff member.
    AllStaff,
}

impl TwoFactorPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TwoFactorPolicy::Optional => "optional",
            TwoFactorPolicy::SensitiveRoles => "sensitive_roles",
            TwoFactorPolicy::AllStaff => "all_staff",
        }
    }

    pub fn parse(text: &str) -> Option<TwoFactorPolicy> {
        [
            TwoFactorPolicy::Optional,
            TwoFactorPolicy::SensitiveRoles,
            TwoFactorPolicy::AllStaff,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }

    /// Whether staff of `role` must sign in with a second factor.
    pub fn requires(self, role: Role) -> bool {
        match self {
            TwoFactorPolicy::Optional => false,
            TwoFactorPolicy::AllStaff => true,
            TwoFactorPolicy::SensitiveRoles => {
                SENSITIVE_PERMISSIONS.iter().any(|p| role.allows(*p))
            }
        }
    }
}

/// Where a staff member's token stands with the store's two-factor policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not required, or required and met.
    Fine,
    /// Required of them, and they have not set it up: only setting it up is open.
    SetupRequired,
    /// Required, set up, but this session was signed in without it.
    SessionLacksFactor,
}

/// Where `staff`'s token stands. API tokens are not sessions: the policy is about
/// signing in.
pub async fn standing(state: &AppState, staff: &Staff) -> Result<Standing> {
    // An SSO session's factor is the provider's authentication (see `super::sso`).
    if !staff.is_session() || staff.signed_in_via.as_deref() == Some(super::sso::FACTOR) {
        return Ok(Standing::Fine);
    }
    let policy = state
        .cache
        .store_settings_from(&state.db)
        .await?
        .staff_two_factor;
    Ok(if !policy.requires(staff.role) {
        Standing::Fine
    } else if !staff.totp_on && !staff.passkey_on {
        Standing::SetupRequired
    } else if staff.second_factor.is_none() {
        Standing::SessionLacksFactor
    } else {
        Standing::Fine
    })
}

/// The refusal of an admin route for a token that does not meet the policy.
pub fn refusal(standing: Standing) -> Option<Error> {
    match standing {
        Standing::Fine => None,
        Standing::SetupRequired => Some(Error::ForbiddenBecause {
            code: "mfa_setup_required",
            message: "the store requires two-factor sign-in of your role: set it up first \
                      (an authenticator app: POST /api/v1/staff/me/mfa/totp; or a passkey: \
                      POST /api/v1/staff/me/mfa/passkeys/start)"
                .to_owned(),
        }),
        Standing::SessionLacksFactor => Some(Error::ForbiddenBecause {
            code: "mfa_required",
            message: "the store requires two-factor sign-in and this session was signed in \
                      without it: sign in again"
                .to_owned(),
        }),
    }
}

/// Now by the kernel's clock, in whole seconds since the epoch.
fn unix_secs(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or(0)
}

fn stamp(at: DateTime<Utc>) -> String {
    crate::time::format_timestamp(at)
}

/// The associated data the secret is encrypted under: a secret copied to another staff
/// member's row does not decrypt.
fn secret_context(staff_id: i64) -> String {
    format!("staff_totp.secret:{staff_id}")
}

/// The RFC 6238 generator of a secret. `account` (the staff member's email) is what the
/// app shows; RFC 6238 URIs do not allow `:` in it.
fn authenticator(secret: Secret, account: &str) -> Result<Totp> {
    let account: String = account.chars().filter(|c| *c != ':').collect();
    Builder::new()
        .with_secret(secret)
        .with_digits(DIGITS)
        .with_skew(SKEW_STEPS)
        .with_step_duration(STEP_SECS)
        .with_account_name(if account.is_empty() {
            "staff".to_owned()
        } else {
            account
        })
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|err| Error::Internal(anyhow::anyhow!("building an authenticator: {err}")))
}

/// The code an authenticator app shows at `unix_secs` for a base32 secret (for tests and
/// tools); `None` for a secret that is not base32 of at least 16 bytes.
pub fn code_at(secret_base32: &str, unix_secs: u64) -> Option<String> {
    let secret = Secret::try_from_base32(secret_base32).ok()?;
    let totp = authenticator(secret, "staff").ok()?;
    Some(totp.generate(unix_secs).to_string())
}

/// Whether staff user `id` signs in with a second factor: an authenticator app or a
/// passkey.
pub async fn second_factor_on(db: &Db, id: i64) -> Result<bool> {
    Ok(totp_on(db, id).await? || super::passkeys::has_passkey(db, id).await?)
}

/// Whether staff user `id` has two-factor sign-in with an authenticator app on.
pub async fn totp_on(db: &Db, id: i64) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM staff_totp WHERE staff_id = $1 AND confirmed_at IS NOT NULL")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?
            .is_some(),
    )
}

/// A staff member's authenticator row.
struct Authenticator {
    secret_enc: String,
    confirmed: bool,
    last_step: Option<i64>,
    locked_until: Option<String>,
}

async fn load_authenticator(db: &Db, staff_id: i64) -> Result<Option<Authenticator>> {
    let row = sqlx::query(
        "SELECT secret_enc, confirmed_at, last_step, locked_until FROM staff_totp
         WHERE staff_id = $1",
    )
    .bind(staff_id)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|row| {
        Ok(Authenticator {
            secret_enc: row.try_get(0)?,
            confirmed: row.try_get::<Option<String>, _>(1)?.is_some(),
            last_step: row.try_get(2)?,
            locked_until: row.try_get(3)?,
        })
    })
    .transpose()
}

impl Authenticator {
    fn secret(&self, state: &AppState, staff_id: i64) -> Result<Secret> {
        let text = state
            .keys
            .decrypt_field(&secret_context(staff_id), &self.secret_enc)?;
        Secret::try_from_base32(&text)
            .map_err(|err| Error::Internal(anyhow::anyhow!("a stored TOTP secret: {err:?}")))
    }

    /// The step `code` matches now (within the skew) and that is later than the last one
    /// accepted; `None` for a wrong code or a replayed one.
    fn check(&self, state: &AppState, staff_id: i64, code: &str) -> Result<Option<i64>> {
        let totp = authenticator(self.secret(state, staff_id)?, "staff")?;
        let step = totp
            .check(code, unix_secs(state.clock.now()))
            .and_then(|step| i64::try_from(step).ok());
        Ok(step.filter(|step| self.last_step.is_none_or(|last| *step > last)))
    }

    /// 429 while the second factor is locked after too many wrong codes.
    fn ensure_unlocked(&self, now: DateTime<Utc>) -> Result<()> {
        let until = self
            .locked_until
            .as_deref()
            .and_then(crate::time::parse_timestamp);
        match until {
            Some(until) if until > now => Err(Error::TooManyRequests {
                retry_after_secs: u64::try_from((until - now).num_seconds().max(1)).unwrap_or(1),
            }),
            _ => Ok(()),
        }
    }
}

/// A code as typed: exactly 6 digits (422 naming `field` otherwise).
fn check_code_shape(field: &'static str, code: &str) -> Result<String> {
    let code = code.trim();
    if code.len() == usize::from(DIGITS) && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code.to_owned())
    } else {
        Err(Error::invalid(
            field,
            "must be the 6 digits the authenticator app shows",
        ))
    }
}

/// A recovery code as typed, normalised (lower case, no dashes); 422 naming `field` when
/// it cannot be one.
fn normalise_recovery_code(field: &'static str, code: &str) -> Result<String> {
    let normalised: String = code
        .trim()
        .chars()
        .filter(|c| *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let dashes = code.trim().chars().filter(|c| *c == '-').count();
    if dashes <= 2
        && normalised.len() == RECOVERY_CHARS
        && normalised.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))
    {
        Ok(normalised)
    } else {
        Err(Error::invalid(
            field,
            "must be a recovery code such as 7k2m-9xq4-hv3c",
        ))
    }
}

fn new_recovery_code() -> String {
    let bytes: [u8; RECOVERY_CHARS] = rand::random();
    bytes
        .iter()
        .map(|b| char::from(RECOVERY_ALPHABET[usize::from(b & 31)]))
        .collect()
}

/// `abcd-efgh-jkmn` for `abcdefghjkmn`.
fn display_recovery_code(code: &str) -> String {
    code.as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// The unused recovery code of staff user `id` that `code` (normalised) is, if any.
async fn find_recovery_code(db: &Db, staff_id: i64, code: String) -> Result<Option<i64>> {
    let rows = sqlx::query(
        "SELECT id, code_hash FROM staff_recovery_codes WHERE staff_id = $1 AND used_at IS NULL
         ORDER BY id",
    )
    .bind(staff_id)
    .fetch_all(&db.pool)
    .await?;
    let hashes = rows
        .iter()
        .map(|row| Ok((row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?)))
        .collect::<Result<Vec<_>>>()?;
    tokio::task::spawn_blocking(move || {
        hashes.into_iter().find_map(|(id, hash)| {
            let parsed = PasswordHash::new(&hash).ok()?;
            Argon2::default()
                .verify_password(code.as_bytes(), &parsed)
                .is_ok()
                .then_some(id)
        })
    })
    .await
    .map_err(|err| Error::Internal(anyhow::anyhow!("recovery code check task: {err}")))
}

/// A second factor as sent: a code from the app, a recovery code, or a passkey's
/// assertion.
enum Factor {
    Totp(String),
    Recovery(String),
    Passkey(Box<webauthn_rs::prelude::PublicKeyCredential>),
}

impl Factor {
    /// Exactly one of `code` and `recovery_code`, well formed (422 otherwise).
    fn from_input(code: Option<&str>, recovery_code: Option<&str>) -> Result<Factor> {
        Factor::from_answer(code, recovery_code, None)
    }

    /// Exactly one of `code`, `recovery_code` and `passkey`, well formed (422 otherwise).
    fn from_answer(
        code: Option<&str>,
        recovery_code: Option<&str>,
        passkey: Option<serde_json::Value>,
    ) -> Result<Factor> {
        match (code, recovery_code, passkey) {
            (Some(code), None, None) => Ok(Factor::Totp(check_code_shape("code", code)?)),
            (None, Some(code), None) => Ok(Factor::Recovery(normalise_recovery_code(
                "recovery_code",
                code,
            )?)),
            (None, None, Some(assertion)) => Ok(Factor::Passkey(Box::new(
                super::passkeys::parse_assertion(assertion)?,
            ))),
            (_, _, Some(_)) => Err(Error::invalid(
                "passkey",
                "send either `passkey` or a code, not both",
            )),
            (Some(_), Some(_), None) => Err(Error::invalid(
                "recovery_code",
                "send either `code` or `recovery_code`, not both",
            )),
            (None, None, None) => Err(Error::invalid(
                "code",
                "send the code the authenticator app shows (or a `recovery_code`, or a \
                 `passkey`'s answer)",
            )),
        }
    }

    fn method(&self) -> &'static str {
        match self {
            Factor::Totp(_) => "totp",
            Factor::Recovery(_) => "recovery_code",
            Factor::Passkey(_) => super::passkeys::METHOD,
        }
    }

    fn field(&self) -> &'static str {
        match self {
            Factor::Totp(_) => "code",
            Factor::Recovery(_) => "recovery_code",
            Factor::Passkey(_) => "passkey",
        }
    }

    fn refusal(&self) -> Error {
        Error::BadCredential {
            field: self.field(),
            message: match self {
                Factor::Totp(_) => "the code is wrong, expired or used already",
                Factor::Recovery(_) => "the recovery code is wrong or used already",
                Factor::Passkey(_) => {
                    "the passkey's answer does not check out for this sign-in (another \
                     challenge, a key not registered, or used already): ask the passkey again"
                }
            },
        }
    }
}

/// What checking a factor found: the step of an app's code, the row of a recovery code,
/// or the passkey that answered.
enum Accepted {
    Totp { step: i64 },
    Recovery { id: i64 },
    Passkey(super::passkeys::Asserted),
}

/// Checks `factor` for staff user `staff_id` whose authenticator is `auth`.
async fn check_factor(
    state: &AppState,
    staff_id: i64,
    auth: &Authenticator,
    factor: &Factor,
) -> Result<Option<Accepted>> {
    Ok(match factor {
        Factor::Totp(code) => auth
            .check(state, staff_id, code)?
            .map(|step| Accepted::Totp { step }),
        Factor::Recovery(code) => find_recovery_code(&state.db, staff_id, code.clone())
            .await?
            .map(|id| Accepted::Recovery { id }),
        // A passkey answers a sign-in's ceremony (see `complete_sign_in`), not a change.
        Factor::Passkey(_) => None,
    })
}

/// Uses up what was accepted, inside `tx`: the step becomes the last accepted (a code of
/// it or earlier is refused from now on), the recovery code is spent; the count of wrong
/// codes starts over. `false` when another request used it first.
async fn consume(
    tx: &mut Tx,
    staff_id: i64,
    accepted: &Accepted,
    at: DateTime<Utc>,
) -> Result<bool> {
    let now = stamp(at);
    let used = match accepted {
        Accepted::Totp { step } => sqlx::query(
            "UPDATE staff_totp SET last_step = $1, updated_at = $2
             WHERE staff_id = $3 AND (last_step IS NULL OR last_step < $1)",
        )
        .bind(step)
        .bind(&now)
        .bind(staff_id)
        .execute(&mut **tx)
        .await?
        .rows_affected(),
        Accepted::Recovery { id } => sqlx::query(
            "UPDATE staff_recovery_codes SET used_at = $1
             WHERE id = $2 AND staff_id = $3 AND used_at IS NULL",
        )
        .bind(&now)
        .bind(id)
        .bind(staff_id)
        .execute(&mut **tx)
        .await?
        .rows_affected(),
        Accepted::Passkey(asserted) => {
            u64::from(super::passkeys::use_assertion(tx, asserted, at).await?)
        }
    };
    if used == 0 {
        return Ok(false);
    }
    sqlx::query("UPDATE staff_totp SET failed_count = 0, failed_since = NULL WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// Counts a wrong second factor against the staff member (and the challenge it came
/// through), audits it, and locks the factor at [`LOCKOUT_FAILURES`] within
/// [`LOCKOUT_SECS`]. Commits on its own, so the count stands whatever the caller answers.
async fn record_failure(
    state: &AppState,
    staff_id: i64,
    challenge_id: Option<i64>,
    method: &str,
    during: &str,
) -> Result<()> {
    let now = state.clock.now();
    let window_start = stamp(now - chrono::Duration::seconds(LOCKOUT_SECS));
    let mut tx = state.db.begin().await?;
    if let Some(challenge_id) = challenge_id {
        sqlx::query(
            "UPDATE staff_mfa_challenges SET failed_attempts = failed_attempts + 1 WHERE id = $1",
        )
        .bind(challenge_id)
        .execute(&mut *tx)
        .await?;
    }
    let count: Option<i64> = sqlx::query(
        "UPDATE staff_totp SET
           failed_count = CASE WHEN failed_since IS NULL OR failed_since < $1
                               THEN 1 ELSE failed_count + 1 END,
           failed_since = CASE WHEN failed_since IS NULL OR failed_since < $1
                               THEN $2 ELSE failed_since END
         WHERE staff_id = $3 RETURNING failed_count",
    )
    .bind(&window_start)
    .bind(stamp(now))
    .bind(staff_id)
    .fetch_optional(&mut *tx)
    .await?
    .map(|row| row.try_get(0))
    .transpose()?;
    let locked = count.is_some_and(|count| count >= LOCKOUT_FAILURES);
    if locked {
        sqlx::query(
            "UPDATE staff_totp SET locked_until = $1, failed_count = 0, failed_since = NULL
             WHERE staff_id = $2",
        )
        .bind(stamp(now + chrono::Duration::seconds(LOCKOUT_SECS)))
        .bind(staff_id)
        .execute(&mut *tx)
        .await?;
    }
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &actor_of(staff_id),
            action: "staff.mfa_failed",
            target_type: "staff",
            target_id: staff_id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "method": method, "during": during, "locked": locked,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    if locked {
        tracing::warn!(
            staff_id,
            "too many wrong second-factor codes: the staff member's second factor is locked"
        );
    }
    Ok(())
}

/// Every second-factor attempt of staff user `staff_id` meets the limiter's per-account
/// class, like passwords do.
async fn count_attempt(state: &AppState, staff_id: i64) -> Result<()> {
    state
        .limiter
        .hit(
            crate::ratelimit::Class::SignInAccount,
            &format!("staff-mfa:{staff_id}"),
        )
        .await
}

/// The challenge a password answers for a staff member with a second factor.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaChallenge {
    /// Always `true`: no session yet; answer `challenge` with a second factor at
    /// `POST /api/v1/staff/sign-in/mfa`.
    pub mfa_required: bool,
    /// Opaque; works once, for 5 minutes and at most 5 wrong codes.
    #[schema(example = "olvc_Vn3m0Qy8dW2kU6tR1xPz7aHc4sLq9bEf0jNgYiKoTuM")]
    pub challenge: String,
    pub expires_at: String,
    /// The second factors it takes: `totp` and `recovery_code` with an authenticator
    /// app, `passkey` with a passkey (its options from
    /// `POST /api/v1/staff/sign-in/mfa/passkey`).
    #[schema(example = json!(["totp", "recovery_code", "passkey"]))]
    pub methods: Vec<String>,
}

/// The second factors staff user `staff_id` can answer a challenge with.
pub async fn methods_of(db: &Db, staff_id: i64) -> Result<Vec<String>> {
    let mut methods = Vec::new();
    if totp_on(db, staff_id).await? {
        methods.extend(METHODS.iter().map(|m| (*m).to_owned()));
    }
    if super::passkeys::has_passkey(db, staff_id).await? {
        methods.push(super::passkeys::METHOD.to_owned());
    }
    Ok(methods)
}

/// Opens a sign-in challenge for staff user `staff_id`, whose password checked out.
pub async fn open_challenge(
    state: &AppState,
    staff_id: i64,
    from: Option<&str>,
) -> Result<MfaChallenge> {
    let bytes: [u8; 32] = rand::random();
    let challenge = format!(
        "{CHALLENGE_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let now = state.clock.now();
    let expires_at = stamp(now + chrono::Duration::seconds(CHALLENGE_TTL_SECS));
    sqlx::query(
        "INSERT INTO staff_mfa_challenges (staff_id, challenge_hash, created_at, expires_at, created_from)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(staff_id)
    .bind(sha256_hex(&challenge))
    .bind(stamp(now))
    .bind(&expires_at)
    .bind(from)
    .execute(&state.db.pool)
    .await?;
    Ok(MfaChallenge {
        mfa_required: true,
        challenge,
        expires_at,
        methods: methods_of(&state.db, staff_id).await?,
    })
}

/// The second step of signing in: the challenge and one second factor. Exactly one of
/// `code`, `recovery_code` and `passkey`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorInput {
    pub challenge: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub recovery_code: Option<String>,
    #[serde(default)]
    pub passkey: Option<serde_json::Value>,
}

/// The challenge and the code the authenticator app shows now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpAnswer {
    #[schema(
        pattern = "^olvc_[A-Za-z0-9_-]{43}$",
        example = "olvc_Vn3m0Qy8dW2kU6tR1xPz7aHc4sLq9bEf0jNgYiKoTuM"
    )]
    pub challenge: String,
    #[schema(pattern = "^[0-9]{6}$", example = "492039")]
    pub code: String,
}

/// The challenge and one of the recovery codes (each works once).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryAnswer {
    #[schema(
        pattern = "^olvc_[A-Za-z0-9_-]{43}$",
        example = "olvc_Vn3m0Qy8dW2kU6tR1xPz7aHc4sLq9bEf0jNgYiKoTuM"
    )]
    pub challenge: String,
    #[schema(
        pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{4}-?[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{4}-?[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{4}$",
        example = "7k2m-9xq4-hv3c"
    )]
    pub recovery_code: String,
}

/// The challenge and a passkey's answer to the options
/// `POST /api/v1/staff/sign-in/mfa/passkey` gave for it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAnswer {
    #[schema(
        pattern = "^olvc_[A-Za-z0-9_-]{43}$",
        example = "olvc_Vn3m0Qy8dW2kU6tR1xPz7aHc4sLq9bEf0jNgYiKoTuM"
    )]
    pub challenge: String,
    /// The `PublicKeyCredential` `navigator.credentials.get` answered, as JSON (its
    /// `toJSON()`: `id`, `rawId`, `type`, `response.authenticatorData`,
    /// `response.clientDataJSON`, `response.signature`, `response.userHandle`, binary
    /// values base64url).
    #[schema(value_type = Object)]
    pub passkey: serde_json::Value,
}

/// The challenge and exactly one second factor: a code from the app, a recovery code or
/// a passkey's answer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SecondFactorAnswer {
    Totp(TotpAnswer),
    Recovery(RecoveryAnswer),
    Passkey(PasskeyAnswer),
}

const BAD_CHALLENGE: &str =
    "the sign-in challenge is unknown, used, expired or spent: sign in with the password again";

/// The challenge's row and staff member, when it is open (not used, expired or spent,
/// the staff member not disabled); 401 naming `challenge` otherwise.
pub(crate) async fn open_challenge_of(state: &AppState, challenge: &str) -> Result<(i64, i64)> {
    let bad_challenge = Error::BadCredential {
        field: "challenge",
        message: BAD_CHALLENGE,
    };
    if !challenge.starts_with(CHALLENGE_PREFIX) || challenge.len() > 100 {
        return Err(bad_challenge);
    }
    let row = sqlx::query(
        "SELECT c.id, c.staff_id FROM staff_mfa_challenges c
         JOIN staff_users u ON u.id = c.staff_id
         WHERE c.challenge_hash = $1 AND c.used_at IS NULL AND c.expires_at > $2
           AND c.failed_attempts < $3 AND u.disabled_at IS NULL",
    )
    .bind(sha256_hex(challenge))
    .bind(stamp(state.clock.now()))
    .bind(CHALLENGE_MAX_FAILURES)
    .fetch_optional(&state.db.pool)
    .await?;
    let Some(row) = row else {
        return Err(bad_challenge);
    };
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Answers a sign-in challenge with a second factor: the session, recording the factor.
pub async fn complete_sign_in(
    state: &AppState,
    input: SecondFactorInput,
    from: Option<String>,
) -> Result<StaffSession> {
    let factor = Factor::from_answer(
        input.code.as_deref(),
        input.recovery_code.as_deref(),
        input.passkey,
    )?;
    let bad_challenge = Error::BadCredential {
        field: "challenge",
        message: BAD_CHALLENGE,
    };
    let (challenge_id, staff_id) = open_challenge_of(state, &input.challenge).await?;
    let now = state.clock.now();
    count_attempt(state, staff_id).await?;
    // Linked to the single sign-on provider since the password answered the challenge.
    if super::sso::password_refused(&state.db, staff_id).await? {
        return Err(super::sso::refuse_password(&state.db, staff_id).await?);
    }
    let auth = load_authenticator(&state.db, staff_id)
        .await?
        .filter(|auth| auth.confirmed);
    // Too many wrong answers lock the staff member's second factor, whichever it is.
    if let Some(auth) = &auth {
        auth.ensure_unlocked(now)?;
    }
    let accepted = match (&factor, &auth) {
        (Factor::Passkey(assertion), _) => {
            if !super::passkeys::has_passkey(&state.db, staff_id).await? {
                // Removed since the password: sign in again.
                return Err(bad_challenge);
            }
            super::passkeys::check_assertion(state, staff_id, challenge_id, assertion)
                .await?
                .map(Accepted::Passkey)
        }
        (_, Some(auth)) => check_factor(state, staff_id, auth, &factor).await?,
        // Turned off since the password: sign in again.
        (_, None) => return Err(bad_challenge),
    };
    let Some(accepted) = accepted else {
        record_failure(
            state,
            staff_id,
            Some(challenge_id),
            factor.method(),
            "sign_in",
        )
        .await?;
        return Err(factor.refusal());
    };
    let mut tx = state.db.begin().await?;
    let spent = sqlx::query(
        "UPDATE staff_mfa_challenges SET used_at = $1 WHERE id = $2 AND used_at IS NULL",
    )
    .bind(stamp(now))
    .bind(challenge_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if spent == 0 {
        return Err(bad_challenge);
    }
    if !consume(&mut tx, staff_id, &accepted, now).await? {
        // The same code (or recovery code) won a race a moment ago: a replay.
        drop(tx);
        record_failure(
            state,
            staff_id,
            Some(challenge_id),
            factor.method(),
            "sign_in",
        )
        .await?;
        return Err(factor.refusal());
    }
    if let Accepted::Recovery { .. } = accepted {
        audit_recovery_code_used(&mut tx, staff_id).await?;
    }
    let (token, expires_at) =
        super::issue_session(&mut tx, staff_id, Some(factor.method()), from.as_deref()).await?;
    tx.commit().await?;
    super::session_answer(&state.db, staff_id, token, expires_at).await
}

async fn audit_recovery_code_used(tx: &mut Tx, staff_id: i64) -> Result<()> {
    let left: i64 = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM staff_recovery_codes
         WHERE staff_id = $1 AND used_at IS NULL",
    )
    .bind(staff_id)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor: &actor_of(staff_id),
            action: "staff.recovery_code_used",
            target_type: "staff",
            target_id: staff_id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "recovery_codes_left": left })),
        },
    )
    .await?;
    Ok(())
}

/// Factors are managed from a session signed in with the password, not with an API
/// token (a tool's token must not change how its owner signs in).
pub(crate) fn ensure_session(staff: &Staff) -> Result<()> {
    if staff.is_session() {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "two-factor sign-in is managed from a session signed in with the password, \
             not with an API token"
                .to_owned(),
        ))
    }
}

/// A new authenticator for the app to add: shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The shared secret, base32 (for typing into the app by hand).
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub secret: String,
    /// The `otpauth://totp/…` URI the QR code holds.
    #[schema(
        example = "otpauth://totp/Olivine:ana%40shop.example?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Olivine"
    )]
    pub otpauth_uri: String,
    /// The QR code of the URI, a PNG as a `data:` URI (for an `<img src>`).
    #[schema(example = "data:image/png;base64,iVBORw0KGgo…")]
    pub qr_code: String,
    #[schema(example = "SHA1")]
    pub algorithm: String,
    #[schema(example = 6)]
    pub digits: u32,
    #[schema(example = 30)]
    pub period_secs: u64,
}

/// Starts (or starts over) enrolling an authenticator app for the signed-in staff
/// member: a new secret, off until [`confirm_enrolment`]. 409 when one is on already.
pub async fn start_enrolment(state: &AppState, staff: &Staff) -> Result<TotpEnrolment> {
    ensure_session(staff)?;
    let bytes: [u8; 20] = rand::random();
    let totp = authenticator(Secret::from(bytes), &staff.email)?;
    let secret = totp.secret().to_base32();
    let otpauth_uri = totp
        .to_url()
        .map_err(|err| Error::Internal(anyhow::anyhow!("an otpauth URI: {err}")))?;
    let qr = totp
        .to_qr_base64()
        .map_err(|err| Error::Internal(anyhow::anyhow!("a QR code: {err}")))?;
    let secret_enc = state
        .keys
        .encrypt_field(&secret_context(staff.id), &secret)?;
    let now = stamp(state.clock.now());
    let stored = sqlx::query(
        "INSERT INTO staff_totp (staff_id, secret_enc, created_at, updated_at)
         VALUES ($1, $2, $3, $3)
         ON CONFLICT (staff_id) DO UPDATE SET secret_enc = excluded.secret_enc,
           last_step = NULL, updated_at = excluded.updated_at
         WHERE staff_totp.confirmed_at IS NULL",
    )
    .bind(staff.id)
    .bind(&secret_enc)
    .bind(&now)
    .execute(&state.db.pool)
    .await?
    .rows_affected();
    if stored == 0 {
        return Err(Error::conflict(
            None,
            "two-factor sign-in with an authenticator app is on already: turn it off first",
        ));
    }
    Ok(TotpEnrolment {
        secret,
        otpauth_uri,
        qr_code: format!("data:image/png;base64,{qr}"),
        algorithm: "SHA1".to_owned(),
        digits: u32::from(DIGITS),
        period_secs: STEP_SECS,
    })
}

/// The first code from the app, which turns two-factor sign-in on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotp {
    #[schema(pattern = "^[0-9]{6}$", example = "492039")]
    pub code: String,
}

/// Recovery codes, shown once: each signs in once in place of a code from the app.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    #[schema(example = json!(["7k2m-9xq4-hv3c", "p0d8-ws5t-2nbe"]))]
    pub recovery_codes: Vec<String>,
}

/// Confirms the pending authenticator with a code from it: two-factor sign-in is on, the
/// session it is confirmed from counts as signed in with it, and 10 new recovery codes
/// replace any old ones.
pub async fn confirm_enrolment(
    state: &AppState,
    staff: &Staff,
    input: ConfirmTotp,
) -> Result<RecoveryCodes> {
    ensure_session(staff)?;
    let code = check_code_shape("code", &input.code)?;
    let Some(auth) = load_authenticator(&state.db, staff.id).await? else {
        return Err(Error::conflict(
            None,
            "no authenticator is being set up: start with POST /api/v1/staff/me/mfa/totp",
        ));
    };
    if auth.confirmed {
        return Err(Error::conflict(
            None,
            "two-factor sign-in with an authenticator app is on already",
        ));
    }
    let Some(step) = auth.check(state, staff.id, &code)? else {
        return Err(Error::invalid(
            "code",
            "does not match the authenticator app's code: check the device's time and try \
             the code it shows now",
        ));
    };
    let (plain, hashes) = make_recovery_codes().await?;
    let now = stamp(state.clock.now());
    let mut tx = state.db.begin().await?;
    let confirmed = sqlx::query(
        "UPDATE staff_totp SET confirmed_at = $1, last_step = $2, failed_count = 0,
           failed_since = NULL, locked_until = NULL, updated_at = $1
         WHERE staff_id = $3 AND confirmed_at IS NULL AND secret_enc = $4",
    )
    .bind(&now)
    .bind(step)
    .bind(staff.id)
    .bind(&auth.secret_enc)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if confirmed == 0 {
        return Err(Error::conflict(
            None,
            "the authenticator being set up changed meanwhile: start again",
        ));
    }
    replace_recovery_codes(&mut tx, staff.id, &hashes, &now).await?;
    // Proving the new factor from this session makes it a session with the factor.
    sqlx::query(
        "UPDATE staff_tokens SET second_factor = 'totp' WHERE id = $1 AND kind = 'session'",
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
                "factor": "totp", "recovery_codes": RECOVERY_CODES,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(RecoveryCodes {
        recovery_codes: plain.iter().map(|c| display_recovery_code(c)).collect(),
    })
}

/// [`RECOVERY_CODES`] new recovery codes and their argon2 hashes. Made before the
/// transaction that stores them: ten hashes must not hold SQLite's write lock.
async fn make_recovery_codes() -> Result<(Vec<String>, Vec<String>)> {
    let plain: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let hashes = futures_util::future::try_join_all(
        plain
            .iter()
            .map(|code| crate::accounts::hash_password(code.clone())),
    )
    .await?;
    Ok((plain, hashes))
}

async fn replace_recovery_codes(
    tx: &mut Tx,
    staff_id: i64,
    hashes: &[String],
    now: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM staff_recovery_codes WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut **tx)
        .await?;
    for hash in hashes {
        sqlx::query(
            "INSERT INTO staff_recovery_codes (staff_id, code_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(staff_id)
        .bind(hash)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Turning two-factor sign-in off: the password and a current code (or a recovery
/// code). Exactly one of `code` and `recovery_code`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableTotpInput {
    pub password: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub recovery_code: Option<String>,
}

/// The password and a current code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableWithCode {
    #[schema(value_type = crate::http::schema::Password)]
    pub password: String,
    #[schema(pattern = "^[0-9]{6}$", example = "492039")]
    pub code: String,
}

/// The password and a recovery code (the app is lost).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableWithRecoveryCode {
    #[schema(value_type = crate::http::schema::Password)]
    pub password: String,
    #[schema(
        pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{4}-?[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{4}-?[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{4}$",
        example = "7k2m-9xq4-hv3c"
    )]
    pub recovery_code: String,
}

/// The password and exactly one second factor: a current code or a recovery code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DisableTotp {
    Code(DisableWithCode),
    Recovery(DisableWithRecoveryCode),
}

/// A second factor proven for a change to it, not used up yet (see [`prove_at_keyboard`]).
struct Proof {
    factor: Factor,
    accepted: Accepted,
}

/// Proves that the signed-in staff member is the one at the keyboard before a change to
/// their second factor: the password and a current code or a recovery code, limited and
/// counted as sign-in attempts are. `during` names the change in the failure's audit.
async fn prove_at_keyboard(
    state: &AppState,
    staff: &Staff,
    input: DisableTotpInput,
    during: &str,
) -> Result<Proof> {
    ensure_session(staff)?;
    let factor = Factor::from_input(input.code.as_deref(), input.recovery_code.as_deref())?;
    let Some(auth) = load_authenticator(&state.db, staff.id)
        .await?
        .filter(|auth| auth.confirmed)
    else {
        return Err(Error::conflict(None, "two-factor sign-in is not on"));
    };
    // The password meets the same per-account limit as signing in.
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
    count_attempt(state, staff.id).await?;
    auth.ensure_unlocked(state.clock.now())?;
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
    let Some(accepted) = check_factor(state, staff.id, &auth, &factor).await? else {
        record_failure(state, staff.id, None, factor.method(), during).await?;
        return Err(factor.refusal());
    };
    Ok(Proof { factor, accepted })
}

/// Uses up the proven factor in the change's transaction: a code another request used
/// meanwhile is refused (and counted) as a wrong one.
async fn use_up(state: &AppState, staff: &Staff, proof: &Proof, during: &str) -> Result<Tx> {
    let mut tx = state.db.begin().await?;
    if !consume(&mut tx, staff.id, &proof.accepted, state.clock.now()).await? {
        drop(tx);
        record_failure(state, staff.id, None, proof.factor.method(), during).await?;
        return Err(proof.factor.refusal());
    }
    Ok(tx)
}

/// Removes the authenticator and the recovery codes of staff user `staff_id`, in `tx`.
async fn remove_factor(tx: &mut Tx, staff_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM staff_recovery_codes WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM staff_totp WHERE staff_id = $1")
        .bind(staff_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Turns two-factor sign-in off for the signed-in staff member (and drops their recovery
/// codes). Wrong codes count as at sign-in.
pub async fn disable(state: &AppState, staff: &Staff, input: DisableTotpInput) -> Result<()> {
    let proof = prove_at_keyboard(state, staff, input, "disable").await?;
    let mut tx = use_up(state, staff, &proof, "disable").await?;
    remove_factor(&mut tx, staff.id).await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &staff.actor,
            action: "staff.factor_removed",
            target_type: "staff",
            target_id: staff.id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "factor": "totp", "confirmed_with": proof.factor.method(),
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// New recovery codes for the signed-in staff member (the old ones stop working), shown
/// once: for when they are used up, lost or seen by someone else. The same proof as
/// turning two-factor sign-in off.
pub async fn regenerate_recovery_codes(
    state: &AppState,
    staff: &Staff,
    input: DisableTotpInput,
) -> Result<RecoveryCodes> {
    let proof = prove_at_keyboard(state, staff, input, "recovery_codes").await?;
    let (plain, hashes) = make_recovery_codes().await?;
    let mut tx = use_up(state, staff, &proof, "recovery_codes").await?;
    replace_recovery_codes(&mut tx, staff.id, &hashes, &stamp(state.clock.now())).await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &staff.actor,
            action: "staff.recovery_codes_replaced",
            target_type: "staff",
            target_id: staff.id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "recovery_codes": RECOVERY_CODES, "confirmed_with": proof.factor.method(),
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(RecoveryCodes {
        recovery_codes: plain.iter().map(|c| display_recovery_code(c)).collect(),
    })
}

/// What the owner's reset of another staff member's second factor did.
#[derive(Debug, Serialize, ToSchema)]
pub struct FactorReset {
    /// Sign-in sessions revoked with it.
    pub sessions_revoked: u64,
}

/// The owner removes the second factor of staff user `staff_id` who lost their
/// authenticator and their recovery codes, and signs them out everywhere: they sign in
/// with their password and, when the store requires it, set up a new authenticator
/// before anything else. Not for one's own factor (that is `disable`, with proof).
pub async fn reset_for(state: &AppState, owner: &Staff, staff_id: i64) -> Result<FactorReset> {
    if owner.id == staff_id {
        return Err(Error::conflict(
            None,
            "turn your own two-factor sign-in off with POST /api/v1/staff/me/mfa/totp/disable",
        ));
    }
    super::get_user(&state.db, staff_id).await?;
    let totp = totp_on(&state.db, staff_id).await?;
    if !totp && !super::passkeys::has_passkey(&state.db, staff_id).await? {
        return Err(Error::conflict(
            None,
            "this staff member has no second factor to reset",
        ));
    }
    let mut tx = state.db.begin().await?;
    remove_factor(&mut tx, staff_id).await?;
    let passkeys = super::passkeys::remove_all(&mut tx, staff_id).await?;
    let sessions_revoked =
        super::sessions::revoke_sessions_in(&mut tx, staff_id, &stamp(state.clock.now())).await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &owner.actor,
            action: "staff.factor_reset",
            target_type: "staff",
            target_id: staff_id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "factor": if totp { "totp" } else { super::passkeys::METHOD },
                "passkeys_removed": passkeys,
                "sessions_revoked": sessions_revoked,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(FactorReset { sessions_revoked })
}

/// The signed-in staff member's two-factor sign-in.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaStatus {
    /// `off`, `pending` (being set up: waiting for the first code) or `on`.
    #[schema(example = "on")]
    pub totp: String,
    /// Recovery codes not used yet.
    pub recovery_codes_left: i64,
    /// Passkeys registered (each a second factor of its own).
    pub passkeys: i64,
    /// Whether the store requires it of this staff member's role.
    pub required: bool,
    /// The second factor this session was signed in with, if any.
    pub session_second_factor: Option<String>,
}

pub async fn status(state: &AppState, staff: &Staff) -> Result<MfaStatus> {
    let auth = load_authenticator(&state.db, staff.id).await?;
    let left: i64 = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM staff_recovery_codes
         WHERE staff_id = $1 AND used_at IS NULL",
    )
    .bind(staff.id)
    .fetch_one(&state.db.pool)
    .await?
    .try_get(0)?;
    let policy = state
        .cache
        .store_settings_from(&state.db)
        .await?
        .staff_two_factor;
    Ok(MfaStatus {
        totp: match auth {
            None => "off",
            Some(auth) if auth.confirmed => "on",
            Some(_) => "pending",
        }
        .to_owned(),
        recovery_codes_left: left,
        passkeys: i64::try_from(super::passkeys::list(state, staff.id).await?.len())
            .unwrap_or(i64::MAX),
        required: policy.requires(staff.role),
        session_second_factor: staff.second_factor.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 test vectors (their last 6 digits).
    #[test]
    fn codes_are_those_of_rfc_6238() {
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(&secret, time).as_deref(), Some(code), "at {time}");
        }
    }

    #[test]
    fn recovery_codes_read_back_however_they_are_typed() {
        let code = new_recovery_code();
        assert_eq!(code.len(), RECOVERY_CHARS);
        let shown = display_recovery_code(&code);
        assert_eq!(shown.len(), RECOVERY_CHARS + 2);
        assert_eq!(
            normalise_recovery_code("r", &shown).ok(),
            Some(code.clone())
        );
        assert_eq!(
            normalise_recovery_code("r", &shown.to_uppercase()).ok(),
            Some(code.clone())
        );
        assert_eq!(normalise_recovery_code("r", &code).ok(), Some(code));
        for bad in [
            "",
            "abcd-efgh",
            "abcd-efgh-ijkl",
            "abcd--efgh-jkmnp",
            "abcd-efgh-jkm!",
        ] {
            assert!(normalise_recovery_code("r", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_policy_names_who_must_use_it() {
        assert!(!TwoFactorPolicy::Optional.requires(Role::Owner));
        assert!(TwoFactorPolicy::AllStaff.requires(Role::Catalog));
        for role in [Role::Owner, Role::Admin, Role::Support] {
            assert!(TwoFactorPolicy::SensitiveRoles.requires(role), "{role:?}");
        }
        assert!(!TwoFactorPolicy::SensitiveRoles.requires(Role::Catalog));
        for policy in [
            TwoFactorPolicy::Optional,
            TwoFactorPolicy::SensitiveRoles,
            TwoFactorPolicy::AllStaff,
        ] {
            assert_eq!(TwoFactorPolicy::parse(policy.as_str()), Some(policy));
        }
    }
}
