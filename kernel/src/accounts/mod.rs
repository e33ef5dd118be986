//! Customer accounts: registration, sign-in, sessions with rotating refresh tokens, and
//! the customer's own profile.
//!
//! Identity (email, name) is encrypted at rest under the customer's own data key
//! ([`customer_keys`]; older rows under the shared data key, [`keys`]); an account
//! is found at sign-in by the keyed hash of its normalised email; everything else (the
//! audit log, later orders) refers to the customer by a random `pseudonym`.
//!
//! Sessions: sign-in creates a session (a refresh-token family) and answers a short-lived
//! access token (JWT, HS256, header `kid`, claims `sub` = pseudonym, `sid` = session,
//! `typ` = `access`) and a refresh token (random, stored only as its SHA-256). Each
//! refresh token works once and is replaced by a new one of the same family; presenting
//! a used one revokes the session, which also ends its access tokens. Sign-out revokes.

pub mod addresses;
pub mod api;
pub mod consents;
pub mod customer_keys;
pub mod keys;
pub mod privacy;
pub mod reencrypt;
pub mod sweep;

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::app::AppState;
use crate::error::{Error, Problems, Result};
use crate::store::{Tx, is_unique_violation};

pub use keys::Keyring;

/// Lifetime of an access token.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
/// Lifetime of a refresh token (each use replaces it with a fresh one).
pub const REFRESH_TTL_SECS: i64 = 30 * 24 * 60 * 60;

pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 256;
const EMAIL_MAX_CHARS: usize = 254;
const NAME_MAX_CHARS: usize = 200;

/// The one answer to a failed sign-in, whether the email or the password was wrong.
pub const BAD_CREDENTIALS: &str = "the email or password is wrong";
/// The one answer to a refresh token that is unknown, used, revoked or expired.
pub const BAD_REFRESH: &str = "the refresh token is invalid or expired";

pub(crate) const EMAIL_CONTEXT: &str = "customers.email";
pub(crate) const NAME_CONTEXT: &str = "customers.name";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The customer's pseudonym.
    pub sub: String,
    /// The session (refresh-token family) the token belongs to.
    pub sid: String,
    /// Always `access`.
    pub typ: String,
    pub iat: i64,
    pub exp: i64,
}

/// A customer authenticated by an access token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub customer_id: i64,
    pub pseudonym: String,
    pub session_id: String,
}

/// What the account routes answer about the customer: their own identity, decrypted.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Account {
    pub pseudonym: String,
    pub email: String,
    pub name: String,
    pub created_at: String,
}

/// A new access token and refresh token.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// A JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Exchange it for a new pair at `/api/v1/account/refresh`; it works once.
    pub refresh_token: String,
}

pub(crate) fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; N]>())
}

fn sha256_hex(text: &str) -> String {
    keys::hex(&Sha256::digest(text.as_bytes()))
}

/// The form of an email used for its lookup hash: trimmed, lowercase.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A plausible address: one `@`, a non-empty local part, a dotted domain, no spaces or
/// control characters. (Whether it exists is for a confirmation mail to find out.)
pub fn check_email(problems: &mut Problems, field: &str, email: &str) {
    // The limit counts the address as sent, surrounding whitespace included.
    let valid = email.chars().count() <= EMAIL_MAX_CHARS;
    let email = email.trim();
    let valid = valid
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    problems.check(
        valid,
        field,
        "must be an email address such as name@example.com",
    );
}

pub fn check_password(problems: &mut Problems, field: &str, password: &str) {
    let chars = password.chars().count();
    problems.check(
        (PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars),
        field,
        format!("must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"),
    );
}

fn check_name(problems: &mut Problems, name: &str) {
    let trimmed = name.trim();
    problems.check(
        !trimmed.is_empty()
            && name.chars().count() <= NAME_MAX_CHARS
            && !trimmed.chars().any(char::is_control),
        "name",
        format!("must be 1 to {NAME_MAX_CHARS} characters, without control characters"),
    );
}

/// argon2id (the crate's default parameters) on a blocking thread: it is CPU-heavy.
pub async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("password hashing task: {e}"))?
    .map_err(Error::Internal)
}

/// A bcrypt hash (`$2a$`, `$2b$`, `$2y$`), as accounts imported from a legacy system
/// carry: accepted once, then replaced by argon2id at that sign-in.
fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// Checks a password against a stored hash on a blocking thread. Without a stored hash
/// (no such account) it checks against a dummy hash, so both cases take as long.
pub(crate) async fn verify_password(password: String, stored: Option<String>) -> Result<bool> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let dummy = DUMMY.get_or_init(|| {
            let salt = SaltString::encode_b64(&[7u8; 16]).expect("fixed salt encodes");
            Argon2::default()
                .hash_password(b"no such account", &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        });
        let found = stored.is_some();
        let text = stored.as_deref().unwrap_or(dummy);
        let ok = match PasswordHash::new(text) {
            _ if is_bcrypt(text) => bcrypt::verify(password.as_bytes(), text).unwrap_or(false),
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(err) => {
                tracing::error!(error = %err, "a stored password hash does not parse");
                false
            }
        };
        found && ok
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("password check task: {e}")))
}

/// Registration input.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    #[schema(value_type = crate::http::schema::Email)]
    pub email: String,
    /// 10 to 256 characters.
    #[schema(value_type = crate::http::schema::Password)]
    pub password: String,
    #[schema(value_type = crate::http::schema::SingleLine200)]
    pub name: String,
    /// What the customer agreed to (or declined) on the registration form: at most 32
    /// purposes, each named once.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub consents: Vec<consents::ConsentInput>,
}

pub async fn register(state: &AppState, input: Registration) -> Result<Account> {
    let mut problems = Problems::new();
    check_email(&mut problems, "email", &input.email);
    check_password(&mut problems, "password", &input.password);
    check_name(&mut problems, &input.name);
    consents::check(&mut problems, "consents", &input.consents);
    problems.into_result()?;
    let email = input.email.trim().to_owned();
    let name = input.name.trim().to_owned();
    let lookup = state.keys.lookup_hash(&normalise_email(&email));
    let duplicate = || Error::conflict(Some("email"), "an account with this email exists already");
    // Spare the hashing for an address that is taken (the insert checks again).
    if sqlx::query("SELECT 1 FROM customers WHERE email_lookup = $1")
        .bind(&lookup)
        .fetch_optional(&state.db.pool)
        .await?
        .is_some()
    {
        return Err(duplicate());
    }
    let password_hash = hash_password(input.password).await?;
    let pseudonym = format!("c_{}", random_token::<16>());
    let now = crate::time::now();
    let mut tx = state.db.begin().await?;
    let inserted = insert_customer(&mut tx, &pseudonym, &lookup, &password_hash, &now).await;
    let customer_id = match inserted {
        Err(err) if is_unique_violation(&err) => return Err(duplicate()),
        other => other?,
    };
    seal_identity(&mut tx, &state.keys, customer_id, &email, &name).await?;
    if !input.consents.is_empty() {
        consents::record(&mut tx, customer_id, &input.consents, "registration").await?;
    }
    // For the loyalty rules (a welcome bonus); the pseudonym only, no identity.
    crate::bus::record(
        &mut tx,
        "customer",
        &pseudonym,
        "customer.registered",
        &serde_json::json!({ "pseudonym": pseudonym }),
    )
    .await?;
    // No identity in the entry: the audit log can never be erased.
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &pseudonym,
            action: "customer.registered",
            target_type: "customer",
            target_id: pseudonym.clone(),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    Ok(Account {
        pseudonym,
        email,
        name,
        created_at: now,
    })
}

/// A customer from a legacy system: its password hash is bcrypt (or argon2id).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyCustomer {
    #[schema(value_type = crate::http::schema::Email)]
    pub email: String,
    #[schema(value_type = crate::http::schema::NonBlankText200)]
    pub name: String,
    /// `$2a$`/`$2b$`/`$2y$` bcrypt, or an argon2id PHC string.
    #[schema(value_type = crate::http::schema::LegacyPasswordHash)]
    pub password_hash: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub imported: usize,
    /// Emails already registered; left as they are.
    pub skipped: usize,
}

/// Imports customers with their existing password hashes, all or nothing: every record
/// is checked first (errors name `customers[i].field`), then written in one transaction.
/// A bcrypt hash is replaced by argon2id at the customer's first sign-in.
pub async fn import_legacy(
    state: &AppState,
    actor: &str,
    customers: Vec<LegacyCustomer>,
) -> Result<ImportReport> {
    let mut problems = Problems::new();
    problems.check(
        customers.len() <= 10_000,
        "customers",
        "at most 10,000 per request",
    );
    for (i, c) in customers.iter().enumerate() {
        check_legacy_customer(&mut problems, &format!("customers[{i}]."), c);
    }
    problems.into_result()?;
    let mut report = ImportReport {
        imported: 0,
        skipped: 0,
    };
    let now = crate::time::now();
    let mut tx = state.db.begin().await?;
    let mut seen = std::collections::HashSet::new();
    for c in &customers {
        let email = c.email.trim();
        let lookup = state.keys.lookup_hash(&normalise_email(email));
        let exists = sqlx::query("SELECT 1 FROM customers WHERE email_lookup = $1")
            .bind(&lookup)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists || !seen.insert(lookup.clone()) {
            report.skipped += 1;
            continue;
        }
        insert_legacy_customer(&mut tx, &state.keys, c, &now).await?;
        report.imported += 1;
    }
    // One entry for the batch, without identity: the audit log can never be erased.
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "customers.imported",
            target_type: "customer",
            target_id: "*".to_owned(),
            before: None,
            after: Some(
                serde_json::json!({"imported": report.imported, "skipped": report.skipped}),
            ),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

/// The checks of one legacy customer, its fields named under `prefix` (`customers[3].`).
/// Shared with `olivine import customers` (crate::imports::customers).
pub(crate) fn check_legacy_customer(problems: &mut Problems, prefix: &str, c: &LegacyCustomer) {
    check_email(problems, &format!("{prefix}email"), &c.email);
    problems.check(
        !c.name.trim().is_empty() && c.name.chars().count() <= 200,
        format!("{prefix}name"),
        "1 to 200 characters",
    );
    let hash = c.password_hash.trim();
    let usable = if is_bcrypt(hash) {
        hash.parse::<bcrypt::HashParts>().is_ok()
    } else {
        PasswordHash::new(hash).is_ok_and(|h| h.algorithm.as_str() == "argon2id")
    };
    problems.check(
        usable,
        format!("{prefix}password_hash"),
        "not a bcrypt or argon2id hash",
    );
}

/// Writes a checked legacy customer as a new account (its hash as it is); returns its id.
pub(crate) async fn insert_legacy_customer(
    conn: &mut sqlx::AnyConnection,
    keys: &Keyring,
    c: &LegacyCustomer,
    now: &str,
) -> Result<i64> {
    let email = c.email.trim();
    let customer_id = insert_customer(
        conn,
        &format!("c_{}", random_token::<16>()),
        &keys.lookup_hash(&normalise_email(email)),
        c.password_hash.trim(),
        now,
    )
    .await?;
    seal_identity(conn, keys, customer_id, email, c.name.trim()).await?;
    Ok(customer_id)
}

/// Inserts a customer without identity yet (its key needs the id); answers the id.
async fn insert_customer(
    conn: &mut sqlx::AnyConnection,
    pseudonym: &str,
    lookup: &str,
    password_hash: &str,
    now: &str,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO customers (pseudonym, email_lookup, email_enc, name_enc, password_hash, created_at, updated_at)
         VALUES ($1, $2, '', '', $3, $4, $4) RETURNING id",
    )
    .bind(pseudonym)
    .bind(lookup)
    .bind(password_hash)
    .bind(now)
    .fetch_one(conn)
    .await?;
    row.try_get(0)
}

/// Makes the new customer's own key and writes their email and name under it.
async fn seal_identity(
    conn: &mut sqlx::AnyConnection,
    keys: &Keyring,
    customer_id: i64,
    email: &str,
    name: &str,
) -> Result<()> {
    let fields = keys.customer_for_writing(conn, customer_id).await?;
    let (email_enc, name_enc) = (
        fields.encrypt(EMAIL_CONTEXT, email)?,
        fields.encrypt(NAME_CONTEXT, name)?,
    );
    sqlx::query("UPDATE customers SET email_enc = $1, name_enc = $2 WHERE id = $3")
        .bind(email_enc)
        .bind(name_enc)
        .bind(customer_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sign-in input.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

pub async fn sign_in(state: &AppState, input: Credentials) -> Result<TokenPair> {
    let lookup = state.keys.lookup_hash(&normalise_email(&input.email));
    // Guesses spread over many clients still meet a limit per account (keyed by the
    // lookup hash, never the email itself).
    state
        .limiter
        .hit(crate::ratelimit::Class::SignInAccount, &lookup)
        .await?;
    let row = sqlx::query(
        "SELECT id, pseudonym, password_hash FROM customers WHERE email_lookup = $1 AND erased_at IS NULL",
    )
    .bind(&lookup)
    .fetch_optional(&state.db.pool)
    .await?;
    let (customer, stored) = match &row {
        Some(row) => (
            Some((row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?)),
            Some(row.try_get::<String, _>(2)?),
        ),
        None => (None, None),
    };
    // An overlong password cannot be right; it is still checked (against the dummy
    // hash) so the answer takes as long as any other.
    let too_long = input.password.chars().count() > PASSWORD_MAX_CHARS;
    let stored = stored.filter(|_| !too_long);
    let password: String = input.password.chars().take(PASSWORD_MAX_CHARS).collect();
    let legacy = stored.as_deref().is_some_and(is_bcrypt);
    let ok = verify_password(password.clone(), stored).await?;
    let Some((customer_id, pseudonym)) = customer.filter(|_| ok) else {
        return Err(Error::InvalidCredentials(BAD_CREDENTIALS));
    };
    let rehashed = if legacy {
        Some(hash_password(password).await?)
    } else {
        None
    };
    let session_id = random_token::<16>();
    let now = crate::time::now();
    let mut tx = state.db.begin().await?;
    if let Some(hash) = &rehashed {
        sqlx::query("UPDATE customers SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(&now)
            .bind(customer_id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("INSERT INTO customer_sessions (id, customer_id, created_at) VALUES ($1, $2, $3)")
        .bind(&session_id)
        .bind(customer_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    let refresh_token = insert_refresh_token(&mut tx, &session_id).await?;
    tx.commit().await?;
    token_pair(state, &pseudonym, &session_id, refresh_token)
}

async fn insert_refresh_token(tx: &mut Tx, session_id: &str) -> Result<String> {
    let token = random_token::<32>();
    let now = chrono::Utc::now();
    let expires = now + chrono::Duration::seconds(REFRESH_TTL_SECS);
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(sha256_hex(&token))
    .bind(session_id)
    .bind(rfc3339(now))
    .bind(rfc3339(expires))
    .execute(&mut **tx)
    .await?;
    Ok(token)
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn token_pair(
    state: &AppState,
    pseudonym: &str,
    session_id: &str,
    refresh_token: String,
) -> Result<TokenPair> {
    let iat = chrono::Utc::now().timestamp();
    let access_token = encode_access_token(
        &state.keys,
        &AccessClaims {
            sub: pseudonym.to_owned(),
            sid: session_id.to_owned(),
            typ: "access".to_owned(),
            iat,
            exp: iat + ACCESS_TTL_SECS,
        },
    )?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
        refresh_token,
    })
}

/// Signs access-token claims with the active signing key (HS256, header `kid`).
pub fn encode_access_token(keys: &Keyring, claims: &AccessClaims) -> Result<String> {
    let (kid, secret) = keys.signing_key();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))
        .map_err(|e| Error::Internal(anyhow::anyhow!("signing an access token: {e}")))
}

/// Checks an access token by itself, without the database: algorithm exactly HS256, a
/// known `kid`, the signature, `exp`, `typ`. Whether its session is still open is for
/// [`authenticate`] to find out.
pub fn decode_access_token(keys: &Keyring, token: &str) -> Result<AccessClaims> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Error::Unauthorized)?;
    if header.alg != Algorithm::HS256 {
        return Err(Error::Unauthorized);
    }
    let secret = header
        .kid
        .as_deref()
        .and_then(|kid| keys.verifying_key(kid))
        .ok_or(Error::Unauthorized)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256];
    validation.leeway = 5;
    validation.validate_exp = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims =
        jsonwebtoken::decode::<AccessClaims>(token, &DecodingKey::from_secret(secret), &validation)
            .map_err(|_| Error::Unauthorized)?
            .claims;
    if claims.typ != "access" {
        return Err(Error::Unauthorized);
    }
    Ok(claims)
}

/// Checks an access token ([`decode_access_token`]), then that the customer exists, is
/// not erased, and the session is not revoked.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Authenticated> {
    let claims = decode_access_token(&state.keys, token)?;
    let row = sqlx::query(
        "SELECT c.id FROM customers c JOIN customer_sessions s ON s.customer_id = c.id
         WHERE c.pseudonym = $1 AND s.id = $2 AND c.erased_at IS NULL AND s.revoked_at IS NULL",
    )
    .bind(&claims.sub)
    .bind(&claims.sid)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(Error::Unauthorized)?;
    Ok(Authenticated {
        customer_id: row.try_get(0)?,
        pseudonym: claims.sub,
        session_id: claims.sid,
    })
}

/// Revokes a session and every refresh token of it.
async fn revoke_session(tx: &mut Tx, session_id: &str) -> Result<()> {
    let now = crate::time::now();
    sqlx::query(
        "UPDATE customer_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
    )
    .bind(&now)
    .bind(session_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE session_id = $2 AND revoked_at IS NULL",
    )
    .bind(&now)
    .bind(session_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Exchanges a refresh token for a new pair. A token used before revokes its session
/// (someone holds a copy) and is refused.
pub async fn refresh(state: &AppState, token: &str) -> Result<TokenPair> {
    let hash = sha256_hex(token);
    let mut tx = state.db.begin().await?;
    let row = sqlx::query(
        "SELECT t.session_id, t.used_at, t.revoked_at, t.expires_at, s.revoked_at, c.pseudonym, c.erased_at
         FROM refresh_tokens t
         JOIN customer_sessions s ON s.id = t.session_id
         JOIN customers c ON c.id = s.customer_id
         WHERE t.token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(Error::InvalidCredentials(BAD_REFRESH));
    };
    let session_id: String = row.try_get(0)?;
    let used_at: Option<String> = row.try_get(1)?;
    let token_revoked: Option<String> = row.try_get(2)?;
    let expires_at: String = row.try_get(3)?;
    let session_revoked: Option<String> = row.try_get(4)?;
    let pseudonym: String = row.try_get(5)?;
    let erased_at: Option<String> = row.try_get(6)?;
    if token_revoked.is_some()
        || session_revoked.is_some()
        || erased_at.is_some()
        || expires_at <= crate::time::now()
    {
        return Err(Error::InvalidCredentials(BAD_REFRESH));
    }
    // Marks it used only if nobody did meanwhile: of two racing uses, one wins.
    let claimed = used_at.is_none()
        && sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(crate::time::now())
        .bind(&hash)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
    if !claimed {
        revoke_session(&mut tx, &session_id).await?;
        tx.commit().await?;
        tracing::warn!(session = %session_id, "a used refresh token was presented again: session revoked");
        return Err(Error::InvalidCredentials(BAD_REFRESH));
    }
    let refresh_token = insert_refresh_token(&mut tx, &session_id).await?;
    tx.commit().await?;
    token_pair(state, &pseudonym, &session_id, refresh_token)
}

/// Ends the session of the access token, and the session of the refresh token if it is
/// the same customer's.
pub async fn sign_out(state: &AppState, auth: &Authenticated, refresh_token: &str) -> Result<()> {
    let mut tx = state.db.begin().await?;
    revoke_session(&mut tx, &auth.session_id).await?;
    let other = sqlx::query(
        "SELECT t.session_id FROM refresh_tokens t JOIN customer_sessions s ON s.id = t.session_id
         WHERE t.token_hash = $1 AND s.customer_id = $2",
    )
    .bind(sha256_hex(refresh_token))
    .bind(auth.customer_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = other {
        let session_id: String = row.try_get(0)?;
        if session_id != auth.session_id {
            revoke_session(&mut tx, &session_id).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The customer's own identity, decrypted.
pub async fn account(state: &AppState, customer_id: i64) -> Result<Account> {
    let row = sqlx::query(
        "SELECT pseudonym, email_enc, name_enc, created_at FROM customers WHERE id = $1 AND erased_at IS NULL",
    )
    .bind(customer_id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(Error::Unauthorized)?;
    let email_enc: String = row.try_get(1)?;
    let name_enc: String = row.try_get(2)?;
    let fields = state.keys.customer(&state.db.pool, customer_id).await?;
    Ok(Account {
        pseudonym: row.try_get(0)?,
        email: fields.decrypt(EMAIL_CONTEXT, &email_enc)?,
        name: fields.decrypt(NAME_CONTEXT, &name_enc)?,
        created_at: row.try_get(3)?,
    })
}

/// Password change input.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// 10 to 256 characters.
    #[schema(value_type = crate::http::schema::Password)]
    pub new_password: String,
}

/// Changes the password after checking the current one, and ends every other session.
pub async fn change_password(
    state: &AppState,
    auth: &Authenticated,
    input: PasswordChange,
) -> Result<()> {
    let mut problems = Problems::new();
    check_password(&mut problems, "new_password", &input.new_password);
    problems.into_result()?;
    let stored: String = sqlx::query("SELECT password_hash FROM customers WHERE id = $1")
        .bind(auth.customer_id)
        .fetch_one(&state.db.pool)
        .await?
        .try_get(0)?;
    if !verify_password(input.current_password, Some(stored)).await? {
        return Err(Error::invalid("current_password", "is wrong"));
    }
    let password_hash = hash_password(input.new_password).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE customers SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(&password_hash)
        .bind(crate::time::now())
        .bind(auth.customer_id)
        .execute(&mut *tx)
        .await?;
    let others: Vec<String> = sqlx::query(
        "SELECT id FROM customer_sessions WHERE customer_id = $1 AND id <> $2 AND revoked_at IS NULL",
    )
    .bind(auth.customer_id)
    .bind(&auth.session_id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<Result<_, sqlx::Error>>()?;
    for session_id in others {
        revoke_session(&mut tx, &session_id).await?;
    }
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &auth.pseudonym,
            action: "customer.password_changed",
            target_type: "customer",
            target_id: auth.pseudonym.clone(),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Takes the customer's row lock for the rest of the transaction (on SQLite the write
/// lock is held already), so writes of one customer's dependent rows (addresses,
/// consents) queue instead of racing. False when there is no such customer or it is
/// erased.
pub(crate) async fn lock_customer(
    conn: &mut sqlx::AnyConnection,
    customer_id: i64,
) -> Result<bool> {
    let locked = sqlx::query(
        "UPDATE customers SET updated_at = updated_at WHERE id = $1 AND erased_at IS NULL",
    )
    .bind(customer_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(locked == 1)
}
