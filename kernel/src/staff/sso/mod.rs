//! Single sign-on for staff with one OpenID Connect provider (Okta, Entra ID, Keycloak,
//! Google through a broker, …).
//!
//! - **Settings** (this file). The owner (staff.manage) sets the provider's issuer URL,
//!   the client id and secret the provider issued (the secret is write-only, stored
//!   encrypted with the accounts' data key), the ID token claim that lists the staff
//!   member's groups, and an ordered mapping of groups to roles. The redirect URL to
//!   register at the provider is derived from the store's public URL ([`redirect_url`]).
//! - **Sign-in** ([`flow`]). The authorization code flow with PKCE (S256), `state` bound to
//!   the browser that started it, and a nonce; the ID token's signature (asymmetric
//!   algorithms only: never `none`, never HMAC), issuer, audience and expiry are checked
//!   against the provider's discovery document and JWKS, read at each sign-in so rotated
//!   keys are picked up. Expiry is judged by the kernel's clock.
//! - **Who signs in.** An account at the provider (issuer and subject) is linked to one
//!   staff member: at its first sign-in, to the staff member with the same email (the
//!   provider must say it is verified), or to a new staff member. Each sign-in sets the
//!   role from the groups claim (the first mapping whose group the member has); no mapped
//!   group, a disabled staff member, or a refusal by the provider (a member removed
//!   there) is no session.
//! - **Passwords of linked staff.** Once a staff member is linked to an account of the
//!   provider set up now, their password no longer signs them in (403 `sso_required`,
//!   audited as `staff.sign_in_refused`): the provider decides, so a member removed there
//!   cannot come back with a password they still know ([`password_refused`]). Owners
//!   keep theirs: the way in when the provider is down. With single sign-on turned off,
//!   linked staff sign in with their passwords again.
//! - **Two-factor sign-in.** The session records that it was signed in via `sso`: the
//!   provider's authentication (its own MFA policy) stands for the store's second factor,
//!   so the store's two-factor policy holds an SSO session as met
//!   ([`super::mfa::standing`]).
//!
//! Settings changes, links, SSO sign-ins and refused SSO sign-ins are in the audit log.

pub mod api;
pub mod flow;
mod oidc;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Role, check_name};
use crate::app::AppState;
use crate::error::{Error, Problems, Result};

/// The callback the provider sends the browser back to (register it at the provider).
pub const CALLBACK_PATH: &str = "/api/v1/staff/sso/callback";
/// Where a sign-in through the provider starts.
pub const START_PATH: &str = "/api/v1/staff/sso/start";
/// How an SSO session was signed in (`staff_tokens.signed_in_via`); the provider's
/// authentication stands for the second factor.
pub const FACTOR: &str = "sso";
/// The groups claim when the owner names none (Okta, Keycloak, Entra ID).
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
const DISPLAY_NAME_MAX_CHARS: usize = 100;
const CLIENT_ID_MAX_CHARS: usize = 200;
const CLIENT_SECRET_MAX_CHARS: usize = 200;
const ISSUER_URL_MAX_CHARS: usize = 2000;
const GROUP_MAX_CHARS: usize = 200;
const GROUPS_CLAIM_MAX_CHARS: usize = 100;
const MAPPING_MAX_ENTRIES: usize = 100;
/// The associated data the client secret is encrypted under.
const SECRET_CONTEXT: &str = "staff_sso_provider.client_secret";
/// The issuer URL: https, or http to a loopback address (a provider on the same machine).
pub const ISSUER_URL_PATTERN: &str = r"^(https://[A-Za-z0-9.-]+|http://(localhost|127\.0\.0\.1))(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[A-Za-z0-9._~-]+)*/?$";
const GROUPS_CLAIM_PATTERN: &str = r"^[A-Za-z0-9_.:/-]{1,100}$";

/// One line of the group mapping: staff in `group` at the provider get `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRole {
    /// A value of the groups claim (a group name, or an id for Entra ID).
    #[schema(value_type = crate::http::schema::SingleLine200)]
    pub group: String,
    pub role: Role,
}

/// The provider as the owner sets it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoSettingsInput {
    /// What the sign-in button says: "Sign in with <display_name>".
    #[schema(value_type = crate::http::schema::SingleLine100)]
    pub display_name: String,
    /// The provider's issuer, exactly as its ID tokens' `iss` (its discovery document is
    /// at `<issuer_url>/.well-known/openid-configuration`).
    #[schema(
        max_length = 2000,
        pattern = r"^(https://[A-Za-z0-9.-]+|http://(localhost|127\.0\.0\.1))(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[A-Za-z0-9._~-]+)*/?$",
        example = "https://login.example.com/realms/staff"
    )]
    pub issuer_url: String,
    #[schema(value_type = crate::http::schema::SingleLine200)]
    pub client_id: String,
    /// Write-only. Required the first time; leave it out to keep the stored one.
    #[schema(value_type = Option<crate::http::schema::SingleLine200>)]
    pub client_secret: Option<String>,
    /// The ID token claim listing the staff member's groups (default `groups`).
    #[schema(pattern = r"^[A-Za-z0-9_.:/-]{1,100}$")]
    pub groups_claim: Option<String>,
    /// Tried in order: the first line whose group the staff member has sets their role.
    /// A staff member in none of these groups cannot sign in.
    #[schema(min_items = 1, max_items = 100)]
    pub role_mapping: Vec<GroupRole>,
}

/// The provider's settings (never the client secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SsoSettings {
    pub display_name: String,
    pub issuer_url: String,
    pub client_id: String,
    /// Always true: a secret is stored (it is never shown).
    pub client_secret_set: bool,
    pub groups_claim: String,
    pub role_mapping: Vec<GroupRole>,
    /// The redirect (callback) URL to register at the provider.
    pub redirect_url: String,
    pub updated_by: String,
    pub updated_at: String,
}

/// The provider with its secret, for signing in.
pub(crate) struct Provider {
    pub settings: SsoSettings,
    pub client_secret: String,
}

/// The callback URL: the store's public URL and [`CALLBACK_PATH`].
pub fn redirect_url(state: &AppState) -> String {
    format!("{}{CALLBACK_PATH}", state.config.public_url())
}

/// The role of a staff member in `groups`: the first mapping line whose group is one of
/// them; `None` when no line matches (no access).
pub fn role_for(mapping: &[GroupRole], groups: &[String]) -> Option<Role> {
    mapping
        .iter()
        .find(|line| groups.contains(&line.group))
        .map(|line| line.role)
}

async fn load_row(state: &AppState) -> Result<Option<(SsoSettings, String)>> {
    let row = sqlx::query(
        "SELECT display_name, issuer_url, client_id, client_secret_enc, groups_claim,
                role_mapping, updated_by, updated_at
         FROM staff_sso_provider WHERE id = 1",
    )
    .fetch_optional(&state.db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mapping: String = row.try_get(5)?;
    let role_mapping = serde_json::from_str(&mapping)
        .map_err(|err| Error::Internal(anyhow::anyhow!("stored SSO role mapping: {err}")))?;
    let settings = SsoSettings {
        display_name: row.try_get(0)?,
        issuer_url: row.try_get(1)?,
        client_id: row.try_get(2)?,
        client_secret_set: true,
        groups_claim: row.try_get(4)?,
        role_mapping,
        redirect_url: redirect_url(state),
        updated_by: row.try_get(6)?,
        updated_at: row.try_get(7)?,
    };
    Ok(Some((settings, row.try_get(3)?)))
}

fn not_configured() -> Error {
    Error::not_found("single sign-on provider")
}

/// The provider's settings; 404 when single sign-on is not set up.
pub async fn settings(state: &AppState) -> Result<SsoSettings> {
    Ok(load_row(state).await?.ok_or_else(not_configured)?.0)
}

/// The provider's name for the sign-in button; `None` when single sign-on is not set up.
pub async fn display_name(state: &AppState) -> Result<Option<String>> {
    Ok(
        sqlx::query("SELECT display_name FROM staff_sso_provider WHERE id = 1")
            .fetch_optional(&state.db.pool)
            .await?
            .map(|row| row.try_get::<String, _>(0))
            .transpose()?,
    )
}

/// The provider and its decrypted secret; 404 when single sign-on is not set up.
pub(crate) async fn load_provider(state: &AppState) -> Result<Provider> {
    let (settings, secret_enc) = load_row(state).await?.ok_or_else(not_configured)?;
    let client_secret = state.keys.decrypt_field(SECRET_CONTEXT, &secret_enc)?;
    Ok(Provider {
        settings,
        client_secret,
    })
}

/// The error code of a password sign-in refused because the staff member signs in
/// through the provider.
pub const PASSWORD_REFUSED: &str = "sso_required";

/// Whether the password of staff user `staff_id` is refused: they are linked to an account
/// of the provider set up now (its issuer, less a last `/`) and are not an owner. Asked
/// only once the password checked out, so the answer tells nothing to whom does not know
/// it.
pub async fn password_refused(db: &crate::store::Db, staff_id: i64) -> Result<bool> {
    Ok(sqlx::query(
        "SELECT 1 FROM staff_users u
         JOIN staff_sso_identities i ON i.staff_id = u.id
         JOIN staff_sso_provider p ON RTRIM(p.issuer_url, '/') = RTRIM(i.issuer, '/')
         WHERE u.id = $1 AND u.role <> 'owner'",
    )
    .bind(staff_id)
    .fetch_optional(&db.pool)
    .await?
    .is_some())
}

/// Audits a password sign-in of staff user `staff_id` refused for [`password_refused`]
/// and answers the refusal (403 `sso_required`).
pub(crate) async fn refuse_password(db: &crate::store::Db, staff_id: i64) -> Result<Error> {
    let mut tx = db.begin().await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &super::actor_of(staff_id),
            action: "staff.sign_in_refused",
            target_type: "staff",
            target_id: staff_id.to_string(),
            before: None,
            after: Some(serde_json::json!({
                "method": "password", "reason": PASSWORD_REFUSED,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Error::ForbiddenBecause {
        code: PASSWORD_REFUSED,
        message: format!(
            "this staff member signs in through the store's single sign-on provider, not \
             with a password: use its sign-in ({START_PATH})"
        ),
    })
}

/// Whether `url` is an issuer URL the kernel talks to: https, or http to this machine;
/// exactly [`ISSUER_URL_PATTERN`] (the OpenAPI document's), and a URL with a host.
fn issuer_url_is_acceptable(url: &str) -> bool {
    let shaped = if let Some(rest) = url.strip_prefix("https://") {
        let host_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        host_end > 0 && port_and_path_are_plain(&rest[host_end..])
    } else if let Some(rest) = url.strip_prefix("http://") {
        ["localhost", "127.0.0.1"].iter().any(|host| {
            rest.strip_prefix(host)
                .is_some_and(|tail| tail.is_empty() || tail.starts_with([':', '/']))
                && port_and_path_are_plain(&rest[host.len()..])
        })
    } else {
        false
    };
    shaped
        && openidconnect::url::Url::parse(url)
            .is_ok_and(|parsed| parsed.host_str().is_some_and(|host| !host.is_empty()))
}

/// `[:port]` (1 to 65535) then `/segment`s of unreserved characters, maybe a last `/`.
fn port_and_path_are_plain(tail: &str) -> bool {
    let (port, path) = match tail.strip_prefix(':') {
        Some(rest) => {
            let end = rest.find('/').unwrap_or(rest.len());
            (Some(&rest[..end]), &rest[end..])
        }
        None => (None, tail),
    };
    let port_ok = port.is_none_or(|port| {
        !port.starts_with('0')
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    let path = path.strip_suffix('/').unwrap_or(path);
    let path_ok = path.is_empty()
        || (path.starts_with('/')
            && path[1..].split('/').all(|segment| {
                !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c))
            }));
    port_ok && path_ok
}

fn check_mapping(problems: &mut Problems, mapping: &[GroupRole]) {
    problems.check(
        !mapping.is_empty(),
        "role_mapping",
        "map at least one group to a role",
    );
    problems.check(
        mapping.len() <= MAPPING_MAX_ENTRIES,
        "role_mapping",
        format!("must have at most {MAPPING_MAX_ENTRIES} lines"),
    );
    for (index, line) in mapping.iter().enumerate() {
        let field = format!("role_mapping[{index}].group");
        check_name(problems, &field, &line.group, GROUP_MAX_CHARS);
        let repeated = mapping[..index].iter().any(|l| l.group == line.group);
        problems.check(!repeated, &field, "each group may be mapped once");
    }
}

fn check_input(input: &SsoSettingsInput, secret_stored: bool) -> Result<()> {
    let mut problems = Problems::new();
    check_name(
        &mut problems,
        "display_name",
        &input.display_name,
        DISPLAY_NAME_MAX_CHARS,
    );
    problems.check(
        input.issuer_url.chars().count() <= ISSUER_URL_MAX_CHARS
            && issuer_url_is_acceptable(&input.issuer_url),
        "issuer_url",
        "must be the provider's https:// issuer URL (http:// only to localhost), without query",
    );
    check_name(
        &mut problems,
        "client_id",
        &input.client_id,
        CLIENT_ID_MAX_CHARS,
    );
    match &input.client_secret {
        Some(secret) => {
            check_name(
                &mut problems,
                "client_secret",
                secret,
                CLIENT_SECRET_MAX_CHARS,
            );
        }
        None => problems.check(
            secret_stored,
            "client_secret",
            "required when setting single sign-on up",
        ),
    }
    if let Some(claim) = &input.groups_claim {
        let pattern_ok = claim.chars().count() <= GROUPS_CLAIM_MAX_CHARS
            && !claim.is_empty()
            && claim
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:/-".contains(c));
        problems.check(
            pattern_ok,
            "groups_claim",
            format!("must match {GROUPS_CLAIM_PATTERN}"),
        );
    }
    check_mapping(&mut problems, &input.role_mapping);
    problems.into_result()
}

/// What the audit log keeps of the settings (never the secret).
fn audited(settings: &SsoSettings) -> serde_json::Value {
    serde_json::json!({
        "display_name": settings.display_name,
        "issuer_url": settings.issuer_url,
        "client_id": settings.client_id,
        "groups_claim": settings.groups_claim,
        "role_mapping": settings.role_mapping,
    })
}

/// Sets the provider up or changes it; `actor` is who does it (audited).
pub async fn save_settings(
    state: &AppState,
    actor: &str,
    mut input: SsoSettingsInput,
) -> Result<SsoSettings> {
    // Groups are compared exactly with the claim's values: as typed, less the blanks.
    for line in &mut input.role_mapping {
        line.group = line.group.trim().to_owned();
    }
    let before = load_row(state).await?;
    check_input(&input, before.is_some())?;
    let secret_enc = match (&input.client_secret, &before) {
        (Some(secret), _) => state.keys.encrypt_field(SECRET_CONTEXT, secret.trim())?,
        (None, Some((_, stored))) => stored.clone(),
        (None, None) => return Err(Error::invalid("client_secret", "required")),
    };
    let groups_claim = input
        .groups_claim
        .clone()
        .unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.to_owned());
    let mapping = serde_json::to_string(&input.role_mapping)
        .map_err(|err| Error::Internal(anyhow::anyhow!("encoding the role mapping: {err}")))?;
    let now = state.clock.now_text();
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM staff_sso_provider WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO staff_sso_provider (id, display_name, issuer_url, client_id,
           client_secret_enc, groups_claim, role_mapping, updated_by, updated_at)
         VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(input.display_name.trim())
    .bind(&input.issuer_url)
    .bind(input.client_id.trim())
    .bind(&secret_enc)
    .bind(&groups_claim)
    .bind(&mapping)
    .bind(actor)
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    let after = SsoSettings {
        display_name: input.display_name.trim().to_owned(),
        issuer_url: input.issuer_url.clone(),
        client_id: input.client_id.trim().to_owned(),
        client_secret_set: true,
        groups_claim,
        role_mapping: input.role_mapping,
        redirect_url: redirect_url(state),
        updated_by: actor.to_owned(),
        updated_at: now,
    };
    let mut after_audited = audited(&after);
    after_audited["client_secret_changed"] = input.client_secret.is_some().into();
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "staff.sso_configured",
            target_type: "sso_provider",
            target_id: "1".to_owned(),
            before: before.as_ref().map(|(settings, _)| audited(settings)),
            after: Some(after_audited),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// Turns single sign-on off (links to staff members stay, for when it is set up again).
pub async fn remove_settings(state: &AppState, actor: &str) -> Result<()> {
    let before = settings(state).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM staff_sso_provider WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    // Sign-ins in progress end with it.
    sqlx::query("DELETE FROM staff_sso_flows")
        .execute(&mut *tx)
        .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "staff.sso_removed",
            target_type: "sso_provider",
            target_id: "1".to_owned(),
            before: Some(audited(&before)),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(group: &str, role: Role) -> GroupRole {
        GroupRole {
            group: group.to_owned(),
            role,
        }
    }

    #[test]
    fn the_first_mapped_group_sets_the_role_and_none_is_no_access() {
        let mapping = [line("admins", Role::Admin), line("help", Role::Support)];
        let groups = |g: &[&str]| g.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            role_for(&mapping, &groups(&["help", "admins"])),
            Some(Role::Admin)
        );
        assert_eq!(role_for(&mapping, &groups(&["help"])), Some(Role::Support));
        assert_eq!(role_for(&mapping, &groups(&["Admins", "other"])), None);
        assert_eq!(role_for(&mapping, &[]), None);
    }

    #[test]
    fn issuer_urls_are_https_or_loopback_http() {
        for good in [
            "https://login.example.com/realms/staff",
            "https://dev-1.okta.com/oauth2/default",
            "http://127.0.0.1:8080",
            "http://localhost/issuer/",
        ] {
            assert!(issuer_url_is_acceptable(good), "{good}");
        }
        for bad in [
            "http://login.example.com",
            "http://localhost.example.com",
            "ftp://x",
            "https://x/?a=1",
            "https://u:p@x",
            "https://x/a b",
            "https://x//a",
            "https://x:0",
            "https://x:65536",
            "HTTPS://X",
            "https://",
            "not a url",
        ] {
            assert!(!issuer_url_is_acceptable(bad), "{bad}");
        }
    }
}
