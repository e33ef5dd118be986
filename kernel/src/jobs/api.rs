//! Admin routes of the job queue: what is queued, running and dead, the schedules, and
//! retrying or discarding a dead job.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::QueueStats;
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Problems, Result};
use crate::http::extract::{PathParam, QueryParams, StaffAuth};

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(overview))
        .routes(routes!(retry_job))
        .routes(routes!(discard_job))
}

/// A job as staff see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: i64,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub unique_key: Option<String>,
    /// `queued`, `retrying` (queued after a failure), `running` or `dead`.
    pub state: String,
    /// When it runs (queued), or ran last (dead).
    pub run_at: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// The node running it.
    pub leased_by: Option<String>,
    pub lease_until: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "id, kind, payload, unique_key, state, run_at, attempts, max_attempts, leased_by, lease_until, last_error, created_at, updated_at";

fn job_from_row(row: &sqlx::any::AnyRow) -> Result<JobView> {
    let payload: String = row.try_get(2)?;
    let state: String = row.try_get(4)?;
    let attempts: i64 = row.try_get(6)?;
    Ok(JobView {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        unique_key: row.try_get(3)?,
        state: if state == "queued" && attempts > 0 {
            "retrying".to_owned()
        } else {
            state
        },
        run_at: row.try_get(5)?,
        attempts,
        max_attempts: row.try_get(7)?,
        leased_by: row.try_get(8)?,
        lease_until: row.try_get(9)?,
        last_error: row.try_get(10)?,
        created_at: row.try_get(11)?,
        updated_at: row.try_get(12)?,
    })
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Retrying,
    Running,
    Dead,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobFilter {
    /// Only jobs in this state.
    #[param(inline)]
    pub state: Option<JobState>,
    /// Only jobs of this kind, e.g. `sessions.sweep` (1 to 100 characters).
    #[param(min_length = 1, max_length = 100)]
    pub kind: Option<String>,
    /// Continue after this id (the previous page's `next_after_id`).
    pub after_id: Option<i64>,
    /// Jobs per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    pub next_after_id: Option<i64>,
}

/// Jobs in the queue, oldest first (completed jobs are gone from it).
#[utoipa::path(get, path = "/jobs", tag = "admin-operations", params(JobFilter),
    security(("staff_token" = [])),
    responses((status = 200, body = JobPage), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_jobs(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<JobFilter>,
) -> Result<Json<JobPage>> {
    Ok(Json(jobs(&state, &filter).await?))
}

/// A page of jobs by `filter` (the API's and the admin page's).
pub async fn jobs(state: &AppState, filter: &JobFilter) -> Result<JobPage> {
    let mut problems = Problems::new();
    let limit = crate::http::paging::limit(&mut problems, filter.limit);
    crate::http::paging::check_name(&mut problems, "kind", &filter.kind);
    problems.into_result()?;
    let state_condition = match filter.state {
        None => "1 = 1",
        Some(JobState::Queued) => "state = 'queued' AND attempts = 0",
        Some(JobState::Retrying) => "state = 'queued' AND attempts > 0",
        Some(JobState::Running) => "state = 'running'",
        Some(JobState::Dead) => "state = 'dead'",
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE {state_condition} AND id > $1 AND ($2 = '' OR kind = $2)
         ORDER BY id LIMIT $3"
    )))
    .bind(filter.after_id.unwrap_or(0))
    .bind(filter.kind.clone().unwrap_or_default())
    .bind(limit + 1)
    .fetch_all(&state.db.pool)
    .await?;
    let jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
    let (jobs, next_after_id) = crate::http::paging::split(jobs, limit, |j| j.id);
    Ok(JobPage {
        jobs,
        next_after_id,
    })
}

/// A schedule: periodic work run once per interval for the whole cluster.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduleView {
    pub name: String,
    pub kind: String,
    pub interval_secs: i64,
    pub next_run_at: String,
    /// Runs so far (on any node).
    pub runs: i64,
    pub last_run_at: Option<String>,
    /// The node of the last run.
    pub last_node: Option<String>,
    /// The last run's error, when it failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobsOverview {
    pub stats: QueueStats,
    pub schedules: Vec<ScheduleView>,
}

/// How many jobs are in each state, how long the oldest due one has waited, and the
/// schedules.
#[utoipa::path(get, path = "/jobs/overview", tag = "admin-operations",
    security(("staff_token" = [])),
    responses((status = 200, body = JobsOverview), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn overview(State(state): State<AppState>) -> Result<Json<JobsOverview>> {
    let stats = super::stats(&state.db, state.clock.now()).await?;
    let schedules = sqlx::query(
        "SELECT name, kind, interval_secs, next_run_at, runs, last_run_at, last_node, last_error
         FROM job_schedules ORDER BY name",
    )
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|row| {
        Ok(ScheduleView {
            name: row.try_get(0)?,
            kind: row.try_get(1)?,
            interval_secs: row.try_get(2)?,
            next_run_at: row.try_get(3)?,
            runs: row.try_get(4)?,
            last_run_at: row.try_get(5)?,
            last_node: row.try_get(6)?,
            last_error: row.try_get(7)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    Ok(Json(JobsOverview { stats, schedules }))
}

async fn dead_job(conn: &mut sqlx::AnyConnection, id: i64) -> Result<JobView> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found(format!("job {id}")))?;
    let job = job_from_row(&row)?;
    if job.state != "dead" {
        return Err(Error::conflict(
            Some("state"),
            format!(
                "job {id} is {}: only a dead job can be retried or discarded",
                job.state
            ),
        ));
    }
    Ok(job)
}

/// Gives a dead job a new set of attempts, due now.
#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "admin-operations",
    params(("id" = i64, Path, description = "Job id")),
    security(("staff_token" = [])),
    responses((status = 200, body = JobView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn retry_job(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
) -> Result<Json<JobView>> {
    Ok(Json(retry(&state, &staff.actor, id).await?))
}

/// Gives dead job `id` a new set of attempts, due now; `actor` is audited.
pub async fn retry(state: &AppState, actor: &str, id: i64) -> Result<JobView> {
    let mut tx = state.db.begin().await?;
    let before = dead_job(&mut tx, id).await?;
    let now = state.clock.now_text();
    sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $1 WHERE id = $2",
    )
    .bind(&now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let after = job_from_row(&row)?;
    audit(&mut tx, actor, "job.retried", &before, Some(&after)).await?;
    tx.commit().await?;
    state.bus.notify_jobs();
    Ok(after)
}

/// Deletes a dead job for good.
#[utoipa::path(delete, path = "/jobs/{id}", tag = "admin-operations",
    params(("id" = i64, Path, description = "Job id")),
    security(("staff_token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn discard_job(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode> {
    let mut tx = state.db.begin().await?;
    let before = dead_job(&mut tx, id).await?;
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit(&mut tx, &staff.actor, "job.discarded", &before, None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn audit(
    conn: &mut sqlx::AnyConnection,
    actor: &str,
    action: &str,
    before: &JobView,
    after: Option<&JobView>,
) -> Result<()> {
    let view = |job: &JobView| {
        serde_json::json!({ "kind": job.kind, "state": job.state, "attempts": job.attempts,
            "last_error": job.last_error })
    };
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor,
            action,
            target_type: "job",
            target_id: before.id.to_string(),
            before: Some(view(before)),
            after: after.map(view),
        },
    )
    .await?;
    Ok(())
}
