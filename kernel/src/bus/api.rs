//! Admin routes of the bus: where every node and consumer stands, the dead letters, and
//! replaying one.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cluster::{DEAD_LETTER_COLUMNS, DeadLetter, dead_letter_from_row};
use crate::app::AppState;
use crate::error::{ErrorBody, Problems, Result};
use crate::http::extract::{PathParam, QueryParams, StaffAuth};

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(bus_status))
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay))
}

/// A node of the cluster, as it last reported.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeStatus {
    pub node_id: String,
    /// The slowest of its node-local consumers.
    pub position: i64,
    /// Events it has still to read.
    pub lag: i64,
    pub version: String,
    pub started_at: String,
    pub seen_at: String,
    /// Seen within the last minute.
    pub live: bool,
}

/// A cluster-once consumer's durable state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsumerStatus {
    pub name: String,
    pub position: i64,
    pub lag: i64,
    /// Failed attempts at the event after `position`.
    pub attempts: i64,
    /// When that event is tried again.
    pub retry_at: Option<String>,
    pub last_error: Option<String>,
    /// The node working it, while its lease lasts.
    pub leased_by: Option<String>,
    pub lease_until: Option<String>,
    /// Dead letters not yet replayed.
    pub dead_letters: i64,
}

/// A node-local consumer on the node that answered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LocalConsumerStatus {
    pub name: String,
    pub position: i64,
}

/// The bus at a glance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BusStatus {
    /// The newest position in the log.
    pub head: i64,
    /// The oldest position still kept (older ones were pruned).
    pub oldest_position: i64,
    /// Events committed but not yet numbered.
    pub unsequenced: i64,
    /// The node that answered.
    pub this_node: String,
    pub node_local: Vec<LocalConsumerStatus>,
    pub nodes: Vec<NodeStatus>,
    pub cluster_once: Vec<ConsumerStatus>,
}

/// Every node's and consumer's position in the event log, failures and dead letters.
#[utoipa::path(get, path = "/bus", tag = "admin-operations",
    security(("staff_token" = [])),
    responses((status = 200, body = BusStatus), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn bus_status(State(state): State<AppState>) -> Result<Json<BusStatus>> {
    let db = &state.db;
    let log = super::log::state(db).await?;
    let oldest_position = super::log::oldest_position(db).await?;
    let live_since = crate::time::format_timestamp(
        state.clock.now() - chrono::Duration::seconds(super::log::NODE_TIMEOUT_SECS),
    );
    let nodes = sqlx::query(
        "SELECT node_id, position, version, started_at, seen_at FROM bus_nodes ORDER BY started_at, node_id",
    )
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|row| {
        let position: i64 = row.try_get(1)?;
        let seen_at: String = row.try_get(4)?;
        Ok(NodeStatus {
            node_id: row.try_get(0)?,
            position,
            lag: (log.head - position).max(0),
            version: row.try_get(2)?,
            started_at: row.try_get(3)?,
            live: seen_at > live_since,
            seen_at,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let cluster_once = sqlx::query(
        "SELECT c.name, c.position, c.attempts, c.retry_at, c.last_error, c.leased_by, c.lease_until,
            (SELECT CAST(COUNT(*) AS BIGINT) FROM bus_dead_letters d
             WHERE d.consumer = c.name AND d.replayed_at IS NULL)
         FROM bus_consumers c ORDER BY c.name",
    )
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|row| {
        let position: i64 = row.try_get(1)?;
        Ok(ConsumerStatus {
            name: row.try_get(0)?,
            position,
            lag: (log.head - position).max(0),
            attempts: row.try_get(2)?,
            retry_at: row.try_get(3)?,
            last_error: row.try_get(4)?,
            leased_by: row.try_get(5)?,
            lease_until: row.try_get(6)?,
            dead_letters: row.try_get(7)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    Ok(Json(BusStatus {
        head: log.head,
        oldest_position,
        unsequenced: log.unsequenced,
        this_node: state.bus.node_id().to_owned(),
        node_local: state
            .bus
            .local_positions()
            .into_iter()
            .map(|(name, position)| LocalConsumerStatus {
                name: name.to_owned(),
                position,
            })
            .collect(),
        nodes,
        cluster_once,
    }))
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterFilter {
    /// Only this consumer's (1 to 100 characters).
    #[param(min_length = 1, max_length = 100)]
    pub consumer: Option<String>,
    /// `false` (default): only those not yet replayed; `true`: only replayed ones.
    pub replayed: Option<bool>,
    /// Continue after this id (the previous page's `next_after_id`).
    pub after_id: Option<i64>,
    /// Dead letters per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetter>,
    pub next_after_id: Option<i64>,
}

/// Events a cluster-once consumer gave up on, oldest first.
#[utoipa::path(get, path = "/bus/dead-letters", tag = "admin-operations", params(DeadLetterFilter),
    security(("staff_token" = [])),
    responses((status = 200, body = DeadLetterPage), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_dead_letters(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<DeadLetterFilter>,
) -> Result<Json<DeadLetterPage>> {
    Ok(Json(dead_letters(&state, &filter).await?))
}

/// A page of dead letters by `filter` (the API's and the admin page's).
pub async fn dead_letters(state: &AppState, filter: &DeadLetterFilter) -> Result<DeadLetterPage> {
    let mut problems = Problems::new();
    let limit = crate::http::paging::limit(&mut problems, filter.limit);
    crate::http::paging::check_name(&mut problems, "consumer", &filter.consumer);
    problems.into_result()?;
    let replayed = if filter.replayed.unwrap_or(false) {
        "IS NOT NULL"
    } else {
        "IS NULL"
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM bus_dead_letters
         WHERE replayed_at {replayed} AND id > $1 AND ($2 = '' OR consumer = $2)
         ORDER BY id LIMIT $3"
    )))
    .bind(filter.after_id.unwrap_or(0))
    .bind(filter.consumer.clone().unwrap_or_default())
    .bind(limit + 1)
    .fetch_all(&state.db.pool)
    .await?;
    let dead_letters = rows
        .iter()
        .map(dead_letter_from_row)
        .collect::<Result<Vec<_>>>()?;
    let (dead_letters, next_after_id) = crate::http::paging::split(dead_letters, limit, |d| d.id);
    Ok(DeadLetterPage {
        dead_letters,
        next_after_id,
    })
}

/// Hands the event to its consumer again, now. Answers the dead letter: `replayed_at`
/// set when the consumer took it, `replay_error` when it failed again.
#[utoipa::path(post, path = "/bus/dead-letters/{id}/replay", tag = "admin-operations",
    params(("id" = i64, Path, description = "Dead letter id")),
    security(("staff_token" = [])),
    responses((status = 200, body = DeadLetter), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn replay(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
) -> Result<Json<DeadLetter>> {
    Ok(Json(
        super::replay_dead_letter(&state.work_db, &state.bus, id, &state.clock, &staff.actor)
            .await?,
    ))
}
