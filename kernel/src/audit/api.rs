//! Admin routes of the audit log: read and filter it, and verify its chain.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{COLUMNS, StoredEntry, VerifyReport};
use crate::app::AppState;
use crate::error::{ErrorBody, Problems, Result};
use crate::http::extract::QueryParams;

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
}

/// One audit log entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the chain: 1, 2, 3, … without gaps.
    pub seq: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who: `admin` (the admin token), `bundled`, `plugins-dir`, `seed`, `kernel`, or a
    /// customer's pseudonym (`c_…`) for their own account changes.
    pub actor: String,
    /// What, e.g. `product.updated`, `plugin.installed`, `stock.adjusted`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// The state before the change; absent for creations.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The state after the change.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    /// Hash of the entry before this one.
    pub prev_hash: String,
    /// SHA-256 over this entry's fields and `prev_hash`.
    pub hash: String,
}

fn parse_state(text: Option<String>) -> Option<serde_json::Value> {
    // Stored by `record` as JSON; anything else is shown as the text it is.
    text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
}

impl From<StoredEntry> for AuditEntry {
    fn from(e: StoredEntry) -> Self {
        AuditEntry {
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            before: parse_state(e.before),
            after: parse_state(e.after),
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// A page of entries, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `after_seq` for the next (older) page; absent on the last page.
    pub next_after_seq: Option<i64>,
}

/// Filters of the audit log; all optional, combined with AND.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Exactly this actor, e.g. `admin` (1 to 200 characters).
    #[param(min_length = 1, max_length = 200)]
    pub actor: Option<String>,
    /// Exactly this action, e.g. `product.updated` (1 to 200 characters).
    #[param(min_length = 1, max_length = 200)]
    pub action: Option<String>,
    /// Exactly this target type, e.g. `product`, `lot`, `plugin` (1 to 200 characters).
    #[param(min_length = 1, max_length = 200)]
    pub target_type: Option<String>,
    /// Exactly this target id (with `target_type`, one thing's history; 1 to 200
    /// characters).
    #[param(min_length = 1, max_length = 200)]
    pub target_id: Option<String>,
    /// Entries at or after this instant (RFC 3339, e.g. `2025-01-31T00:00:00Z`; encode
    /// `+` as `%2B`).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Entries before this instant (RFC 3339; exclusive); after `since`.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Cursor: continue after this entry in the newest-first listing, i.e. entries with a
    /// smaller seq (the previous page's `next_after_seq`).
    #[param(minimum = 1)]
    pub after_seq: Option<i64>,
    /// Entries per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

const MAX_TEXT_FILTER: usize = 200;

/// An RFC 3339 instant as stored (UTC, milliseconds), so it compares as text.
fn instant(problems: &mut Problems, field: &str, text: &Option<String>) -> Option<String> {
    let text = text.as_ref()?;
    match DateTime::parse_from_rfc3339(text.trim()) {
        Ok(t) => Some(
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
        Err(_) => {
            problems.add(
                field,
                format!("`{text}` is not an RFC 3339 instant such as 2025-01-31T12:00:00Z (encode `+` as %2B)"),
            );
            None
        }
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

/// The audit log, newest first, filtered and paged with a cursor.
#[utoipa::path(get, path = "/audit", tag = "admin-audit", params(AuditFilter),
    security(("staff_token" = [])),
    responses((status = 200, body = AuditPage), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn list_audit(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<AuditFilter>,
) -> Result<Json<AuditPage>> {
    Ok(Json(list(&state, &filter).await?))
}

/// A page of the audit log, newest first, by `filter` (the API's and the admin page's).
pub async fn list(state: &AppState, filter: &AuditFilter) -> Result<AuditPage> {
    let mut problems = Problems::new();
    let mut conditions: Vec<String> = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    for (field, column, value) in [
        ("actor", "actor", &filter.actor),
        ("action", "action", &filter.action),
        ("target_type", "target_type", &filter.target_type),
        ("target_id", "target_id", &filter.target_id),
    ] {
        if let Some(value) = value {
            problems.check(
                !value.is_empty() && value.chars().count() <= MAX_TEXT_FILTER,
                field,
                format!("must be 1 to {MAX_TEXT_FILTER} characters"),
            );
            binds.push(Bind::Text(value.clone()));
            conditions.push(format!("{column} = ${}", binds.len()));
        }
    }
    let since = instant(&mut problems, "since", &filter.since);
    let until = instant(&mut problems, "until", &filter.until);
    if let (Some(since), Some(until)) = (&since, &until) {
        problems.check(until > since, "until", "must be after `since`");
    }
    if let Some(since) = since {
        binds.push(Bind::Text(since));
        conditions.push(format!("at >= ${}", binds.len()));
    }
    if let Some(until) = until {
        binds.push(Bind::Text(until));
        conditions.push(format!("at < ${}", binds.len()));
    }
    if let Some(after_seq) = filter.after_seq {
        problems.check(after_seq >= 1, "after_seq", "must be at least 1");
        binds.push(Bind::Int(after_seq));
        conditions.push(format!("seq < ${}", binds.len()));
    }
    let limit = filter.limit.unwrap_or(50);
    problems.check(
        (1..=500).contains(&limit),
        "limit",
        "must be between 1 and 500",
    );
    problems.into_result()?;

    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // One more than asked, to know whether another page follows.
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log {where_clause} ORDER BY seq DESC LIMIT ${}",
        binds.len() + 1
    );
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(n) => query.bind(n),
        };
    }
    let rows = query.bind(limit + 1).fetch_all(&state.db.pool).await?;
    let mut entries = rows
        .iter()
        .map(|row| Ok(AuditEntry::from(StoredEntry::from_row(row)?)))
        .collect::<Result<Vec<_>>>()?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next_after_seq = if more {
        entries.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(AuditPage {
        entries,
        next_after_seq,
    })
}

/// Walks the hash chain and reports whether it is intact, or the first entry that was
/// changed, removed or rewritten.
#[utoipa::path(get, path = "/audit/verify", tag = "admin-audit",
    security(("staff_token" = [])),
    responses((status = 200, body = VerifyReport), (status = 401, body = ErrorBody)))]
async fn verify_audit(State(state): State<AppState>) -> Result<Json<VerifyReport>> {
    Ok(Json(super::verify(&state.db).await?))
}
