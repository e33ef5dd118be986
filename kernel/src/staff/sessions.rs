//! What a staff member sees of their sessions and API tokens, and how they end them:
//! the list of active tokens (created when and from where, last used when and from
//! where, which second factor signed it in), revoking one, and the owner revoking every
//! session of another staff member at once.
//!
//! When and from where a token was last used is written at most once a minute per token
//! ([`touch`]): the token's row is read on every request anyway, and the write happens
//! only when the recorded time is older than that, so a busy session costs one small
//! UPDATE a minute, not one per request.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::Staff;
use crate::app::AppState;
use crate::error::{Error, Result};

/// How stale `last_used_at` may be before a request writes it again.
pub const TOUCH_EVERY_SECS: i64 = 60;

/// The address a request came from: the peer, or behind a proxy that sets it (with
/// `OLIVINE_TRUST_FORWARDED_FOR`) the last address of `X-Forwarded-For`, as the rate
/// limiter reads it. `None` when there is neither (requests made in-process).
pub fn client_address(
    trust_forwarded_for: bool,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Option<String> {
    if trust_forwarded_for
        && let Some(ip) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .next_back()
            .and_then(|v| v.rsplit(',').next())
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
    {
        return Some(ip.to_canonical().to_string());
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical().to_string())
}

/// Records that `staff`'s token is in use now from `from`, unless that was recorded
/// less than [`TOUCH_EVERY_SECS`] ago. A failure is logged, never the request's.
pub async fn touch(state: &AppState, staff: &Staff, from: Option<&str>) {
    let now = state.clock.now();
    let cutoff = now - chrono::Duration::seconds(TOUCH_EVERY_SECS);
    let due = staff
        .token_last_used_at
        .as_deref()
        .and_then(crate::time::parse_timestamp)
        .is_none_or(|at| at <= cutoff);
    if !due {
        return;
    }
    let written = sqlx::query(
        "UPDATE staff_tokens SET last_used_at = $1, last_used_from = $2
         WHERE id = $3 AND (last_used_at IS NULL OR last_used_at <= $4)",
    )
    .bind(crate::time::format_timestamp(now))
    .bind(from)
    .bind(staff.token_id)
    .bind(crate::time::format_timestamp(cutoff))
    .execute(&state.db.pool)
    .await;
    if let Err(err) = written {
        tracing::warn!(error = %err, token_id = staff.token_id, "recording a staff token's last use");
    }
}

/// The admin middleware's part after authentication: records the token's use and
/// applies the store's two-factor policy ([`super::mfa::standing`]).
pub async fn admit(
    state: &AppState,
    staff: &Staff,
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Result<()> {
    let from = client_address(state.config.trust_forwarded_for, headers, extensions);
    touch(state, staff, from.as_deref()).await;
    match super::mfa::refusal(super::mfa::standing(state, staff).await?) {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

/// An active session or API token of the signed-in staff member (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub id: i64,
    /// `session` (signed in) or `api` (a tool's token).
    #[schema(example = "session")]
    pub kind: String,
    pub label: String,
    pub created_at: String,
    /// The address it was signed in from, or an API token made from (none for tokens
    /// made by the CLI, and for those made before this was recorded).
    #[schema(example = "203.0.113.7")]
    pub created_from: Option<String>,
    /// When it was last used (to the minute).
    pub last_used_at: Option<String>,
    #[schema(example = "203.0.113.7")]
    pub last_used_from: Option<String>,
    pub expires_at: Option<String>,
    /// The second factor it was signed in with: `totp`, `recovery_code`, or none.
    #[schema(example = "totp")]
    pub second_factor: Option<String>,
    /// `sso` for a session signed in through the single sign-on provider (whose
    /// authentication stands for the second factor); none for a password or an API token.
    pub signed_in_via: Option<String>,
    /// Whether this is the token the request came with.
    pub current: bool,
}

/// The signed-in staff member's active tokens, newest first.
pub async fn list_active(state: &AppState, staff: &Staff) -> Result<Vec<SessionInfo>> {
    let rows = sqlx::query(
        "SELECT id, kind, label, created_at, created_from, last_used_at, last_used_from,
                expires_at, second_factor, signed_in_via
         FROM staff_tokens
         WHERE staff_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)
         ORDER BY id DESC",
    )
    .bind(staff.id)
    .bind(crate::time::now())
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get(0)?;
            Ok(SessionInfo {
                id,
                kind: row.try_get(1)?,
                label: row.try_get(2)?,
                created_at: row.try_get(3)?,
                created_from: row.try_get(4)?,
                last_used_at: row.try_get(5)?,
                last_used_from: row.try_get(6)?,
                expires_at: row.try_get(7)?,
                second_factor: row.try_get(8)?,
                signed_in_via: row.try_get(9)?,
                current: id == staff.token_id,
            })
        })
        .collect()
}

/// Revokes one of the signed-in staff member's own tokens (404 for one that is not
/// theirs, or not active).
pub async fn revoke_own(state: &AppState, staff: &Staff, token_id: i64) -> Result<()> {
    let mut tx = state.db.begin().await?;
    let revoked = sqlx::query(
        "UPDATE staff_tokens SET revoked_at = $1
         WHERE id = $2 AND staff_id = $3 AND revoked_at IS NULL",
    )
    .bind(crate::time::now())
    .bind(token_id)
    .bind(staff.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if revoked == 0 {
        return Err(Error::not_found(format!("active session {token_id}")));
    }
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &staff.actor,
            action: "staff.session_revoked",
            target_type: "staff",
            target_id: staff.id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "token_id": token_id })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// How many sessions were revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedSessions {
    pub revoked: u64,
}

/// Revokes every sign-in session of staff user `staff_id` at once (their API tokens,
/// revoked one by one at `/staff/{id}/tokens/{token_id}`, stay). `actor` is who does it.
pub async fn revoke_all_sessions(
    state: &AppState,
    actor: &str,
    staff_id: i64,
) -> Result<RevokedSessions> {
    super::get_user(&state.db, staff_id).await?;
    let mut tx = state.db.begin().await?;
    let revoked = revoke_sessions_in(
        &mut tx,
        staff_id,
        &crate::time::format_timestamp(state.clock.now()),
    )
    .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "staff.sessions_revoked",
            target_type: "staff",
            target_id: staff_id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "sessions": revoked })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(RevokedSessions { revoked })
}

/// Revokes every open sign-in session of staff user `staff_id` in the caller's
/// transaction (API tokens stay): how many.
pub(crate) async fn revoke_sessions_in(
    conn: &mut sqlx::AnyConnection,
    staff_id: i64,
    now: &str,
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE staff_tokens SET revoked_at = $1
         WHERE staff_id = $2 AND kind = 'session' AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(staff_id)
    .execute(conn)
    .await?
    .rows_affected())
}
