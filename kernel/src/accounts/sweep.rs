//! The session sweep: a scheduled job that deletes what can never be used again.
//!
//! - refresh tokens that expired more than [`SWEEP_GRACE_SECS`] ago (an expired token is
//!   refused before any replay check, so its row no longer protects anything);
//! - sessions revoked more than that long ago, with their tokens;
//! - sessions left without any token (all swept), created more than that long ago;
//! - staff sign-in tokens expired or revoked more than that long ago (API tokens, which
//!   a person revokes on purpose, stay listed as revoked);
//! - staff sign-in challenges (two-factor sign-in) expired more than that long ago.
//!
//! The grace keeps recent history for investigating an incident.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::jobs::{FnHandler, JobContext, JobHandler};
use crate::store::Db;

/// How long expired tokens and revoked sessions are kept before they are deleted.
pub const SWEEP_GRACE_SECS: i64 = 24 * 60 * 60;

/// What one sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub refresh_tokens: u64,
    pub sessions: u64,
    pub staff_sessions: u64,
    pub staff_mfa_challenges: u64,
    pub staff_passkey_ceremonies: u64,
}

/// Deletes, in one transaction, the tokens and sessions that are past use as of `now`.
pub async fn sweep_sessions(db: &Db, now: DateTime<Utc>) -> anyhow::Result<SweepReport> {
    let cutoff = (now - chrono::Duration::seconds(SWEEP_GRACE_SECS))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut tx = db.begin().await?;
    let refresh_tokens = sqlx::query(
        "DELETE FROM refresh_tokens WHERE expires_at < $1
            OR session_id IN (SELECT id FROM customer_sessions WHERE revoked_at < $1)",
    )
    .bind(&cutoff)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let sessions = sqlx::query(
        "DELETE FROM customer_sessions WHERE revoked_at < $1
            OR (created_at < $1 AND NOT EXISTS
                (SELECT 1 FROM refresh_tokens t WHERE t.session_id = customer_sessions.id))",
    )
    .bind(&cutoff)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let staff_sessions = sqlx::query(
        "DELETE FROM staff_tokens WHERE kind = 'session' AND (expires_at < $1 OR revoked_at < $1)",
    )
    .bind(&cutoff)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let staff_mfa_challenges =
        sqlx::query("DELETE FROM staff_mfa_challenges WHERE expires_at < $1")
            .bind(&cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    let staff_passkey_ceremonies =
        sqlx::query("DELETE FROM staff_passkey_ceremonies WHERE expires_at < $1")
            .bind(&cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    tx.commit().await?;
    Ok(SweepReport {
        refresh_tokens,
        sessions,
        staff_sessions,
        staff_mfa_challenges,
        staff_passkey_ceremonies,
    })
}

/// The job kind of a sweep (scheduled every `OLIVINE_SESSION_SWEEP_SECS`).
pub const JOB: &str = "sessions.sweep";

pub fn job() -> Arc<dyn JobHandler> {
    FnHandler::new(JOB, |ctx: &JobContext| {
        Box::pin(async move {
            let report = sweep_sessions(&ctx.state.db, ctx.state.clock.now()).await?;
            if report != SweepReport::default() {
                tracing::info!(
                    refresh_tokens = report.refresh_tokens,
                    sessions = report.sessions,
                    staff_sessions = report.staff_sessions,
                    staff_mfa_challenges = report.staff_mfa_challenges,
                    staff_passkey_ceremonies = report.staff_passkey_ceremonies,
                    "swept expired sessions"
                );
            }
            Ok(())
        })
    })
}
