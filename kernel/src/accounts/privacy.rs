//! GDPR requests: a customer's export of everything held about them, and the erasure of
//! their identity. Each request is a row of `privacy_requests` with a random id that is
//! also the requester's status URL (an erased customer cannot sign in any more).
//!
//! Erasure wipes identity (email, name, password hash, addresses), withdraws consents and
//! revokes every session in ONE transaction, which also records the `customer.erased`
//! event and the audit entry. The customer row and its pseudonym stay, so orders and
//! other behaviour stay for accounting without anything that identifies a person. Then
//! the erasure hooks (caches, search indexes) forget the pseudonym, and the request is
//! `completed`. A crash at any step leaves the request `received` or `processing`;
//! [`resume_pending`], run at startup, finishes it (every step is idempotent).
//!
//! The export is a list of sections ([`export_sections`]): a module that holds data
//! about customers (orders, subscriptions, loyalty) adds its section there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{Authenticated, Keyring, addresses, consents};
use crate::app::AppState;
use crate::error::{Error, Problems, Result};
use crate::store::Backend;

/// What a customer types to confirm the erasure of their account.
pub const ERASE_CONFIRMATION: &str = "erase my account";

/// Version of the export's layout.
pub const EXPORT_FORMAT: &str = "olivine.export.v1";

const REQUEST_PREFIX: &str = "pr_";
/// Characters of the random part of a request id (32 random bytes, base64url).
const REQUEST_RANDOM_CHARS: usize = 43;

/// A privacy request as its requester sees it at the status URL: no personal data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestStatus {
    /// Random and unguessable; keep it to check on the request.
    pub id: String,
    /// `export` or `erasure`.
    pub kind: String,
    /// `received`, `processing`, `completed` or `failed`.
    pub status: String,
    /// Where the status can be read without signing in.
    pub status_url: String,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

/// A privacy request as staff (and the customer's own export) see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrivacyRequest {
    pub id: String,
    /// `export` or `erasure`.
    pub kind: String,
    /// The customer concerned.
    pub customer_pseudonym: String,
    /// The customer's pseudonym (self-service) or the staff actor.
    pub requested_by: String,
    /// `received`, `processing`, `completed` or `failed`.
    pub status: String,
    /// Processing attempts so far.
    pub attempts: i64,
    /// Why the last attempt failed (never personal data).
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

impl PrivacyRequest {
    pub fn public(&self) -> RequestStatus {
        RequestStatus {
            id: self.id.clone(),
            kind: self.kind.clone(),
            status: self.status.clone(),
            status_url: status_url(&self.id),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
            completed_at: self.completed_at.clone(),
        }
    }
}

pub fn status_url(id: &str) -> String {
    format!("/api/v1/privacy-requests/{id}")
}

const REQUEST_COLUMNS: &str = "id, kind, customer_pseudonym, requested_by, status, attempts, \
     error, created_at, updated_at, completed_at";

fn request_from_row(row: &sqlx::any::AnyRow) -> Result<PrivacyRequest, sqlx::Error> {
    Ok(PrivacyRequest {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        customer_pseudonym: row.try_get(2)?,
        requested_by: row.try_get(3)?,
        status: row.try_get(4)?,
        attempts: row.try_get(5)?,
        error: row.try_get(6)?,
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
        completed_at: row.try_get(9)?,
    })
}

fn is_request_id(id: &str) -> bool {
    id.strip_prefix(REQUEST_PREFIX).is_some_and(|rest| {
        rest.len() == REQUEST_RANDOM_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A well-formed pseudonym (`c_` + 22 base64url characters). Checked before a query,
/// so odd input (a NUL byte) is a 404 rather than a database error.
pub fn is_pseudonym(text: &str) -> bool {
    text.strip_prefix("c_").is_some_and(|rest| {
        rest.len() == 22
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

async fn fetch_request(conn: &mut AnyConnection, id: &str) -> Result<Option<PrivacyRequest>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS} FROM privacy_requests WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(request_from_row).transpose()?)
}

/// The status of a request, for whoever holds its id.
pub async fn request_status(state: &AppState, id: &str) -> Result<RequestStatus> {
    let not_found = || Error::not_found("privacy request");
    if !is_request_id(id) {
        return Err(not_found());
    }
    let mut conn = state.db.pool.acquire().await?;
    let request = fetch_request(&mut conn, id).await?.ok_or_else(not_found)?;
    Ok(request.public())
}

async fn requests_of(conn: &mut AnyConnection, pseudonym: &str) -> Result<Vec<PrivacyRequest>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS} FROM privacy_requests WHERE customer_pseudonym = $1
         ORDER BY created_at, id"
    )))
    .bind(pseudonym)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(request_from_row)
        .collect::<Result<_, _>>()?)
}

/// Filters of the staff listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestFilter {
    /// `received`, `processing`, `completed` or `failed`.
    #[param(inline, value_type = Option<RequestStatusName>)]
    pub status: Option<String>,
    /// `export` or `erasure`.
    #[param(inline, value_type = Option<RequestKind>)]
    pub kind: Option<String>,
    /// Requests per page, 1 to 500 (default 100), newest first.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// The statuses of a privacy request.
// Only documents `RequestFilter.status`, which `list_requests` checks against `STATUSES`.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatusName {
    Received,
    Processing,
    Completed,
    Failed,
}

/// The kinds of privacy request.
// Only documents `RequestFilter.kind`, which `list_requests` checks against `KINDS`.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    Export,
    Erasure,
}

const STATUSES: [&str; 4] = ["received", "processing", "completed", "failed"];
const KINDS: [&str; 2] = ["export", "erasure"];

/// Privacy requests, newest first, for staff.
pub async fn list_requests(state: &AppState, filter: RequestFilter) -> Result<Vec<PrivacyRequest>> {
    requests_from(state, filter, 0).await
}

/// A page of [`list_requests`]: `filter.limit` requests from the `offset`th, and how
/// many match the filter (the admin's pager).
pub async fn page_of_requests(
    state: &AppState,
    filter: RequestFilter,
    offset: i64,
) -> Result<(Vec<PrivacyRequest>, i64)> {
    let (status, kind) = (filter.status.clone(), filter.kind.clone());
    let requests = requests_from(state, filter, offset).await?;
    let total: i64 = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM privacy_requests
         WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) AND (CAST($2 AS TEXT) IS NULL OR kind = $2)",
    )
    .bind(status)
    .bind(kind)
    .fetch_one(&state.db.pool)
    .await?
    .try_get(0)?;
    Ok((requests, total))
}

/// The filter checked, then its requests from the `offset`th.
async fn requests_from(
    state: &AppState,
    filter: RequestFilter,
    offset: i64,
) -> Result<Vec<PrivacyRequest>> {
    let mut problems = Problems::new();
    if let Some(status) = &filter.status {
        problems.check(
            STATUSES.contains(&status.as_str()),
            "status",
            "must be one of received, processing, completed, failed",
        );
    }
    if let Some(kind) = &filter.kind {
        problems.check(
            KINDS.contains(&kind.as_str()),
            "kind",
            "must be export or erasure",
        );
    }
    let limit = filter.limit.unwrap_or(100);
    problems.check(
        (1..=500).contains(&limit),
        "limit",
        "must be between 1 and 500",
    );
    problems.into_result()?;
    // Absent filters bind NULL and match everything.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {REQUEST_COLUMNS} FROM privacy_requests
         WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) AND (CAST($2 AS TEXT) IS NULL OR kind = $2)
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    )))
    .bind(filter.status)
    .bind(filter.kind)
    .bind(limit)
    .bind(offset.max(0))
    .fetch_all(&state.db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(request_from_row)
        .collect::<Result<_, _>>()?)
}

async fn insert_request(
    conn: &mut AnyConnection,
    kind: &str,
    pseudonym: &str,
    requested_by: &str,
    status: &str,
) -> Result<String> {
    let id = format!("{REQUEST_PREFIX}{}", super::random_token::<32>());
    let now = crate::time::now();
    let completed_at = (status == "completed").then(|| now.clone());
    sqlx::query(
        "INSERT INTO privacy_requests (id, kind, customer_pseudonym, requested_by, status, attempts,
             error, created_at, updated_at, completed_at)
         VALUES ($1, $2, $3, $4, $5, 0, NULL, $6, $6, $7)",
    )
    .bind(&id)
    .bind(kind)
    .bind(pseudonym)
    .bind(requested_by)
    .bind(status)
    .bind(&now)
    .bind(completed_at)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

// ---------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------

/// Whom an export is about.
pub struct ExportSubject {
    pub keys: Arc<Keyring>,
    pub customer_id: i64,
    pub pseudonym: String,
}

pub type SectionFuture<'a> = Pin<Box<dyn Future<Output = Result<Value>> + Send + 'a>>;

/// One section of the export: a name and what reads it. Sections read inside one
/// snapshot, so the export is consistent.
pub struct ExportSection {
    pub name: &'static str,
    pub collect: for<'a> fn(&'a ExportSubject, &'a mut AnyConnection) -> SectionFuture<'a>,
}

/// Every section of the export. A module that keeps data about customers adds its
/// section here (orders, subscriptions and loyalty replace their empty placeholders).
pub fn export_sections() -> Vec<ExportSection> {
    vec![
        ExportSection {
            name: "profile",
            collect: |s, c| Box::pin(profile_section(s, c)),
        },
        ExportSection {
            name: "addresses",
            collect: |s, c| {
                Box::pin(async move {
                    let list = addresses::list_on(c, &s.keys, s.customer_id).await?;
                    Ok(serde_json::to_value(list).map_err(anyhow::Error::from)?)
                })
            },
        },
        ExportSection {
            name: "orders",
            collect: |s, c| Box::pin(crate::orders::export_on(c, &s.keys, s.customer_id)),
        },
        ExportSection {
            name: "subscriptions",
            collect: |s, c| Box::pin(crate::subscriptions::export_on(c, &s.keys, s.customer_id)),
        },
        ExportSection {
            name: "reviews",
            collect: |s, c| Box::pin(crate::reviews::export_on(c, s.customer_id)),
        },
        ExportSection {
            name: "loyalty_ledger",
            collect: |s, c| Box::pin(crate::loyalty::export_on(c, s.customer_id)),
        },
        ExportSection {
            name: "behaviour",
            collect: |s, c| Box::pin(crate::recommendations::export_on(c, s.customer_id)),
        },
        ExportSection {
            name: "birthday",
            collect: |s, c| Box::pin(crate::loyalty::birthdays::export_on(c, s.customer_id)),
        },
        ExportSection {
            name: "notifications",
            collect: |s, c| Box::pin(crate::notify::export_on(c, s.customer_id)),
        },
        ExportSection {
            name: "plugin_data",
            collect: |_, _| Box::pin(async { Ok(plugin_data_section()) }),
        },
        ExportSection {
            name: "consents",
            collect: |s, c| {
                Box::pin(async move {
                    let consents = consents::read_on(c, s.customer_id).await?;
                    Ok(serde_json::to_value(consents).map_err(anyhow::Error::from)?)
                })
            },
        },
        ExportSection {
            name: "sessions",
            collect: |s, c| Box::pin(sessions_section(s, c)),
        },
        ExportSection {
            name: "privacy_requests",
            collect: |s, c| {
                Box::pin(async move {
                    let requests = requests_of(c, &s.pseudonym).await?;
                    Ok(serde_json::to_value(requests).map_err(anyhow::Error::from)?)
                })
            },
        },
        ExportSection {
            name: "audit",
            collect: |s, c| Box::pin(audit_section(s, c)),
        },
    ]
}

async fn profile_section(s: &ExportSubject, conn: &mut AnyConnection) -> Result<Value> {
    let row = sqlx::query(
        "SELECT pseudonym, email_enc, name_enc, created_at, updated_at FROM customers WHERE id = $1",
    )
    .bind(s.customer_id)
    .fetch_one(&mut *conn)
    .await?;
    let email_enc: String = row.try_get(1)?;
    let name_enc: String = row.try_get(2)?;
    let fields = s.keys.customer(&mut *conn, s.customer_id).await?;
    Ok(json!({
        "pseudonym": row.try_get::<String, _>(0)?,
        "email": fields.decrypt(super::EMAIL_CONTEXT, &email_enc)?,
        "name": fields.decrypt(super::NAME_CONTEXT, &name_enc)?,
        "created_at": row.try_get::<String, _>(3)?,
        "updated_at": row.try_get::<String, _>(4)?,
    }))
}

/// Plugins never receive a customer's identity, and their decision records
/// (`plugin_decisions`) keep hashes of inputs and outputs and a summary of the answer
/// (adjustments, points, a payment's status) with no customer reference or personal
/// data, so no plugin-held record can be attributed to a customer. When a plugin
/// is given customer data (e.g. loyalty), its records go here.
fn plugin_data_section() -> Value {
    json!({
        "records": [],
        "note": "Plugins are given no customer identity, and the record of their decisions keeps hashes of inputs and outputs and a summary of the answer (discounts, points, a payment's status) without any customer reference: no plugin-held record refers to you.",
    })
}

async fn sessions_section(s: &ExportSubject, conn: &mut AnyConnection) -> Result<Value> {
    let rows = sqlx::query(
        "SELECT created_at, revoked_at FROM customer_sessions WHERE customer_id = $1
         ORDER BY created_at, id",
    )
    .bind(s.customer_id)
    .fetch_all(&mut *conn)
    .await?;
    let sessions = rows
        .iter()
        .map(|row| {
            Ok(json!({
                "created_at": row.try_get::<String, _>(0)?,
                "revoked_at": row.try_get::<Option<String>, _>(1)?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Value::Array(sessions))
}

/// What the audit log says about the customer (entries they made, or about their
/// account). The entries hold no identity.
async fn audit_section(s: &ExportSubject, conn: &mut AnyConnection) -> Result<Value> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, action FROM audit_log
         WHERE actor = $1 OR (target_type = 'customer' AND target_id = $1) ORDER BY seq",
    )
    .bind(&s.pseudonym)
    .fetch_all(&mut *conn)
    .await?;
    let entries = rows
        .iter()
        .map(|row| {
            Ok(json!({
                "seq": row.try_get::<i64, _>(0)?,
                "at": row.try_get::<String, _>(1)?,
                "actor": row.try_get::<String, _>(2)?,
                "action": row.try_get::<String, _>(3)?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Value::Array(entries))
}

/// Everything held about the signed-in customer, as one JSON document read in one
/// snapshot. The export is itself recorded as a completed privacy request and audited.
pub async fn export(state: &AppState, auth: &Authenticated) -> Result<Value> {
    let subject = ExportSubject {
        keys: state.keys.clone(),
        customer_id: auth.customer_id,
        pseudonym: auth.pseudonym.clone(),
    };
    let mut snapshot = match state.db.backend {
        Backend::Sqlite => state.db.pool.begin().await?,
        Backend::Postgres => {
            state
                .db
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?
        }
    };
    let mut sections = serde_json::Map::new();
    for section in export_sections() {
        let value = (section.collect)(&subject, &mut snapshot).await?;
        sections.insert(section.name.to_owned(), value);
    }
    snapshot.rollback().await?;

    let mut tx = state.db.begin().await?;
    let request_id = insert_request(
        &mut tx,
        "export",
        &auth.pseudonym,
        &auth.pseudonym,
        "completed",
    )
    .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor: &auth.pseudonym,
            action: "customer.exported",
            target_type: "customer",
            target_id: auth.pseudonym.clone(),
            before: None,
            after: Some(json!({ "privacy_request": request_id })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(json!({
        "format": EXPORT_FORMAT,
        "generated_at": crate::time::now(),
        "pseudonym": auth.pseudonym,
        "privacy_request": request_id,
        "sections": sections,
    }))
}

// ---------------------------------------------------------------------------------------
// Erasure
// ---------------------------------------------------------------------------------------

pub type HookFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// Something outside the erased tables that may hold a customer's identity (a cache, a
/// search index) and must forget it. Hooks run after the erasure commits and before the
/// request is `completed`; after a crash they run again, so they must be idempotent.
pub trait ErasureHook: Send + Sync {
    fn name(&self) -> &'static str;
    fn forget<'a>(&'a self, state: &'a AppState, pseudonym: &'a str) -> HookFuture<'a>;
}

/// The erasure hooks. None yet: the only cache (the catalog's) and the search index
/// hold no customer data. A customer cache or a customer search index registers here.
/// (The erasure also records a `customer.erased` event, for consumers on other nodes.)
pub fn erasure_hooks(_state: &AppState) -> Vec<Box<dyn ErasureHook>> {
    Vec::new()
}

/// The self-service erasure request body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// The current password.
    pub password: String,
    /// Exactly `erase my account`.
    #[schema(value_type = EraseConfirmation)]
    pub confirm: String,
}

/// The phrase that confirms a self-service erasure (`ERASE_CONFIRMATION`).
pub struct EraseConfirmation;

impl utoipa::PartialSchema for EraseConfirmation {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some("Exactly `erase my account`."))
            .enum_values(Some([ERASE_CONFIRMATION]))
            .into()
    }
}

impl ToSchema for EraseConfirmation {}

/// The staff erasure request body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffErasureRequest {
    /// The customer's pseudonym again, to confirm which account is erased.
    pub confirm: String,
}

/// A customer erases their own account: the password and the confirmation phrase are
/// checked, the request is recorded, then processed.
pub async fn request_erasure(
    state: &AppState,
    auth: &Authenticated,
    input: ErasureRequest,
) -> Result<PrivacyRequest> {
    if input.confirm != ERASE_CONFIRMATION {
        return Err(Error::invalid(
            "confirm",
            format!("must be exactly `{ERASE_CONFIRMATION}`"),
        ));
    }
    let stored: String =
        sqlx::query("SELECT password_hash FROM customers WHERE id = $1 AND erased_at IS NULL")
            .bind(auth.customer_id)
            .fetch_optional(&state.db.pool)
            .await?
            .ok_or(Error::Unauthorized)?
            .try_get(0)?;
    let password: String = input
        .password
        .chars()
        .take(super::PASSWORD_MAX_CHARS + 1)
        .collect();
    if !super::verify_password(password, Some(stored)).await? {
        return Err(Error::invalid("password", "is wrong"));
    }
    let id = receive_erasure(state, &auth.pseudonym, &auth.pseudonym).await?;
    process_erasure(state, &id).await
}

/// Records an erasure request as `received` (committed: from here on a crash is
/// recovered by [`resume_pending`]).
async fn receive_erasure(state: &AppState, pseudonym: &str, requested_by: &str) -> Result<String> {
    let mut conn = state.db.pool.acquire().await?;
    let id = insert_request(&mut conn, "erasure", pseudonym, requested_by, "received").await?;
    drop(conn);
    crate::failpoint::hit("privacy.erasure.received");
    Ok(id)
}

/// Staff erase a customer on a verified request (e.g. by mail). Returns the request and
/// whether it was processed now (`false`: the account was erased before, and the
/// completed request is answered again).
pub async fn staff_erasure(
    state: &AppState,
    actor: &str,
    pseudonym: &str,
    input: StaffErasureRequest,
) -> Result<(PrivacyRequest, bool)> {
    let not_found = || Error::not_found("customer");
    if !is_pseudonym(pseudonym) {
        return Err(not_found());
    }
    let row = sqlx::query("SELECT erased_at FROM customers WHERE pseudonym = $1")
        .bind(pseudonym)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(not_found)?;
    if input.confirm != pseudonym {
        return Err(Error::invalid(
            "confirm",
            "must repeat the customer's pseudonym",
        ));
    }
    let erased_at: Option<String> = row.try_get(0)?;
    if erased_at.is_some() {
        // Idempotent: the latest erasure request answers again (finished first if a
        // crash or a failing hook left it unfinished).
        let latest = sqlx::query(
            "SELECT id, status FROM privacy_requests WHERE customer_pseudonym = $1 AND kind = 'erasure'
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(pseudonym)
        .fetch_optional(&state.db.pool)
        .await?;
        let Some(latest) = latest else {
            return Err(Error::conflict(None, "the customer is erased already"));
        };
        let id: String = latest.try_get(0)?;
        let status: String = latest.try_get(1)?;
        if status == "completed" {
            let mut conn = state.db.pool.acquire().await?;
            let request = fetch_request(&mut conn, &id)
                .await?
                .ok_or_else(|| Error::not_found("privacy request"))?;
            return Ok((request, false));
        }
        return Ok((process_erasure(state, &id).await?, true));
    }
    let id = receive_erasure(state, pseudonym, actor).await?;
    Ok((process_erasure(state, &id).await?, true))
}

async fn set_status(state: &AppState, id: &str, status: &str, error: Option<&str>) -> Result<()> {
    let now = crate::time::now();
    let completed_at = (status == "completed").then(|| now.clone());
    sqlx::query(
        "UPDATE privacy_requests SET status = $1, error = $2, updated_at = $3, completed_at = $4
         WHERE id = $5",
    )
    .bind(status)
    .bind(error)
    .bind(&now)
    .bind(completed_at)
    .bind(id)
    .execute(&state.db.pool)
    .await?;
    Ok(())
}

/// Processes an erasure request to its end: `completed`, or `failed` with the reason.
/// Safe to run again on a request at any stage.
pub async fn process_erasure(state: &AppState, id: &str) -> Result<PrivacyRequest> {
    let claimed = sqlx::query(
        "UPDATE privacy_requests SET status = 'processing', attempts = attempts + 1, updated_at = $1
         WHERE id = $2 AND kind = 'erasure' AND status <> 'completed'",
    )
    .bind(crate::time::now())
    .bind(id)
    .execute(&state.db.pool)
    .await?
    .rows_affected()
        == 1;
    let mut conn = state.db.pool.acquire().await?;
    let request = fetch_request(&mut conn, id)
        .await?
        .ok_or_else(|| Error::not_found("privacy request"))?;
    drop(conn);
    if !claimed {
        return Ok(request);
    }
    let outcome = async {
        erase_identity(state, &request).await?;
        crate::failpoint::hit("privacy.erasure.wiped");
        for hook in erasure_hooks(state) {
            hook.forget(state, &request.customer_pseudonym)
                .await
                .map_err(|e| Error::Internal(e.context(format!("erasure hook {}", hook.name()))))?;
        }
        Ok::<(), Error>(())
    }
    .await;
    match outcome {
        Ok(()) => set_status(state, id, "completed", None).await?,
        Err(err) => {
            tracing::error!(request = %id, error = ?err, "an erasure request failed; it is retried at the next start or by staff");
            // Identity never reaches this path in clear (it is only ever ciphertext
            // here), so the message is safe to keep.
            let message: String = format!("{err:#}").chars().take(500).collect();
            set_status(state, id, "failed", Some(&message)).await?;
        }
    }
    let mut conn = state.db.pool.acquire().await?;
    fetch_request(&mut conn, id)
        .await?
        .ok_or_else(|| Error::not_found("privacy request"))
}

/// The erasure transaction. Does nothing if the customer is erased already (a retry).
async fn erase_identity(state: &AppState, request: &PrivacyRequest) -> Result<()> {
    let pseudonym = &request.customer_pseudonym;
    let mut tx = state.db.begin().await?;
    let row = sqlx::query("SELECT id, erased_at FROM customers WHERE pseudonym = $1")
        .bind(pseudonym)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the customer of privacy request {} does not exist",
                request.id
            )
        })?;
    let customer_id: i64 = row.try_get(0)?;
    if row.try_get::<Option<String>, _>(1)?.is_some() {
        return Ok(());
    }
    let erasure = Erasure {
        customer_id,
        pseudonym,
        actor: &request.requested_by,
        request_id: &request.id,
    };
    if !wipe_customer(&mut tx, &erasure).await? {
        return Ok(());
    }
    tx.commit().await?;
    state.keys.forget_customer_key(customer_id).await;
    state.bus.notify();
    Ok(())
}

/// Whom an erasure wipes, who asked, and the privacy request it answers.
pub(crate) struct Erasure<'a> {
    pub customer_id: i64,
    pub pseudonym: &'a str,
    pub actor: &'a str,
    pub request_id: &'a str,
}

/// Wipes a customer's identity, destroys their data key and logs the erasure, on the
/// caller's transaction (the erasure, or a restore erasing again). False when the
/// customer is erased already.
pub(crate) async fn wipe_customer(tx: &mut AnyConnection, erasure: &Erasure<'_>) -> Result<bool> {
    let (customer_id, pseudonym) = (erasure.customer_id, erasure.pseudonym);
    let now = crate::time::now();
    // Wipes the identity and takes the row lock (the same UPDATE on a racing request
    // waits, then finds the row erased and changes nothing).
    let wiped = sqlx::query(
        "UPDATE customers SET email_lookup = $1, email_enc = '', name_enc = '', password_hash = '',
             erased_at = $2, updated_at = $2
         WHERE id = $3 AND erased_at IS NULL",
    )
    .bind(format!("erased:{pseudonym}"))
    .bind(&now)
    .bind(customer_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if wiped == 0 {
        return Ok(false);
    }
    // Crypto-shredding: every copy of the customer's fields under this key (backups,
    // replicas) is unreadable once the transaction commits.
    let key_destroyed = super::customer_keys::destroy(tx, customer_id).await?;
    super::customer_keys::log_erasure(tx, customer_id, &now).await?;
    let addresses = sqlx::query("DELETE FROM customer_addresses WHERE customer_id = $1")
        .bind(customer_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    // Orders stay for accounting, without the identity on them.
    let orders = crate::orders::erase_identity(tx, customer_id).await?;
    // Subscriptions end: nothing renews for an erased customer.
    let subscriptions = crate::subscriptions::erase(tx, customer_id, &now).await?;
    // Reviews lose their author; they go too unless the shop keeps them anonymous.
    let keep_reviews = crate::inventory::settings::load(tx)
        .await?
        .reviews_kept_on_erasure;
    let reviews = crate::reviews::erase(tx, customer_id, keep_reviews).await?;
    let birthday = crate::loyalty::birthdays::erase(tx, customer_id).await?;
    let behaviour = crate::recommendations::forget_customer(tx, customer_id).await?;
    let notifications = crate::notify::erase(tx, customer_id).await?;
    let withdrawn = consents::withdraw_all(tx, customer_id).await?;
    let sessions = sqlx::query(
        "UPDATE customer_sessions SET revoked_at = $1 WHERE customer_id = $2 AND revoked_at IS NULL",
    )
    .bind(&now)
    .bind(customer_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1
         WHERE revoked_at IS NULL
           AND session_id IN (SELECT id FROM customer_sessions WHERE customer_id = $2)",
    )
    .bind(&now)
    .bind(customer_id)
    .execute(&mut *tx)
    .await?;
    crate::bus::record(
        tx,
        "customer",
        pseudonym,
        "customer.erased",
        &json!({ "pseudonym": pseudonym }),
    )
    .await?;
    // Counts and purposes only: the audit log is never erased, so it never holds identity.
    crate::audit::record(
        tx,
        &crate::audit::Entry {
            actor: erasure.actor,
            action: "customer.erased",
            target_type: "customer",
            target_id: pseudonym.to_owned(),
            before: Some(json!({
                "erased": false,
                "addresses": addresses,
                "orders_with_identity": orders,
                "subscriptions_cancelled": subscriptions,
                "reviews": reviews,
                "birthday": birthday,
                "behaviour_events": behaviour,
                "notifications": notifications,
                "open_sessions": sessions,
                "consents_granted": withdrawn,
                "data_key": key_destroyed,
            })),
            after: Some(json!({
                "erased": true,
                "addresses": 0,
                "orders_with_identity": 0,
                "open_sessions": 0,
                "consents_granted": [],
                "data_key": false,
                "privacy_request": erasure.request_id,
            })),
        },
    )
    .await?;
    Ok(true)
}

/// Erases, on a restored store, a customer the erasure log says was erased after the
/// backup was taken: the same wipe, answered by a completed privacy request of
/// `actor`. False when the customer is not there or erased already.
pub(crate) async fn erase_again(
    tx: &mut AnyConnection,
    customer_id: i64,
    actor: &str,
) -> Result<bool> {
    let row = sqlx::query("SELECT pseudonym FROM customers WHERE id = $1 AND erased_at IS NULL")
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let pseudonym: String = row.try_get(0)?;
    let request_id = insert_request(tx, "erasure", &pseudonym, actor, "completed").await?;
    let erasure = Erasure {
        customer_id,
        pseudonym: &pseudonym,
        actor,
        request_id: &request_id,
    };
    wipe_customer(tx, &erasure).await
}

/// Finishes erasure requests a crash left `received` or `processing`. The kernel runs
/// it at startup; returns how many it processed.
pub async fn resume_pending(state: &AppState) -> Result<usize> {
    let ids: Vec<String> = sqlx::query(
        "SELECT id FROM privacy_requests
         WHERE kind = 'erasure' AND status IN ('received', 'processing') ORDER BY created_at, id",
    )
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<Result<_, sqlx::Error>>()?;
    for id in &ids {
        let request = process_erasure(state, id).await?;
        tracing::info!(request = %id, status = %request.status, "resumed an erasure request");
    }
    Ok(ids.len())
}

// ---------------------------------------------------------------------------------------
// Staff view
// ---------------------------------------------------------------------------------------

/// A customer as support staff see them: identity decrypted (absent once erased).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerView {
    pub pseudonym: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub erased_at: Option<String>,
    pub addresses: Vec<addresses::Address>,
    /// The current state of each consent purpose.
    pub consents: Vec<consents::Consent>,
    pub open_sessions: i64,
    pub privacy_requests: Vec<PrivacyRequest>,
}

/// The support view of a customer. Reading decrypted identity is audited
/// (`customer.identity_viewed`, no identity in the entry).
pub async fn customer_view(state: &AppState, actor: &str, pseudonym: &str) -> Result<CustomerView> {
    let not_found = || Error::not_found("customer");
    if !is_pseudonym(pseudonym) {
        return Err(not_found());
    }
    let mut conn = state.db.pool.acquire().await?;
    let row = sqlx::query(
        "SELECT id, email_enc, name_enc, created_at, updated_at, erased_at FROM customers WHERE pseudonym = $1",
    )
    .bind(pseudonym)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(not_found)?;
    let customer_id: i64 = row.try_get(0)?;
    let erased_at: Option<String> = row.try_get(5)?;
    let (email, name) = if erased_at.is_some() {
        (None, None)
    } else {
        let email_enc: String = row.try_get(1)?;
        let name_enc: String = row.try_get(2)?;
        let fields = state.keys.customer(&mut *conn, customer_id).await?;
        (
            Some(fields.decrypt(super::EMAIL_CONTEXT, &email_enc)?),
            Some(fields.decrypt(super::NAME_CONTEXT, &name_enc)?),
        )
    };
    let open_sessions: i64 = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM customer_sessions WHERE customer_id = $1 AND revoked_at IS NULL",
    )
    .bind(customer_id)
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    let view = CustomerView {
        pseudonym: pseudonym.to_owned(),
        email,
        name,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
        erased_at,
        addresses: addresses::list_on(&mut conn, &state.keys, customer_id).await?,
        consents: consents::read_on(&mut conn, customer_id).await?.current,
        open_sessions,
        privacy_requests: requests_of(&mut conn, pseudonym).await?,
    };
    drop(conn);
    let mut tx = state.db.begin().await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "customer.identity_viewed",
            target_type: "customer",
            target_id: pseudonym.to_owned(),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_pseudonyms_are_checked_before_the_database() {
        let id = format!("{REQUEST_PREFIX}{}", super::super::random_token::<32>());
        assert!(is_request_id(&id), "{id}");
        assert!(!is_request_id("pr_1") && !is_request_id(&format!("{id}\0")));
        let pseudonym = format!("c_{}", super::super::random_token::<16>());
        assert!(is_pseudonym(&pseudonym), "{pseudonym}");
        assert!(!is_pseudonym("c_x") && !is_pseudonym("' OR 1=1 --"));
    }

    #[test]
    fn every_section_has_a_distinct_name() {
        let names: Vec<&str> = export_sections().iter().map(|s| s.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        for required in [
            "profile",
            "addresses",
            "orders",
            "subscriptions",
            "loyalty_ledger",
            "birthday",
            "plugin_data",
            "consents",
            "sessions",
            "privacy_requests",
        ] {
            assert!(names.contains(&required), "{required}");
        }
    }
}
