//! Admin routes to manage plugins, and the public price quote.

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::package::PackageUpload;
use super::pricing::{Quote, QuoteRequest};
use super::{PluginInfo, PluginPatch};
use crate::app::AppState;
use crate::error::{ErrorBody, Result};
use crate::http::extract::{JsonBody, PathParam, QueryParams, StaffAuth, parse_json};

/// Uploads carry a component of up to a few MiB, base64-encoded.
pub const MAX_PACKAGE_BYTES: usize = 32 * 1024 * 1024;

pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(price_quote))
}

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plugins, install_plugin))
        .routes(routes!(get_plugin, update_plugin))
        .routes(routes!(activate_plugin))
        .routes(routes!(rollback_plugin))
        .routes(routes!(plugin_decisions))
        .routes(routes!(plugin_metrics))
        .layer(DefaultBodyLimit::max(MAX_PACKAGE_BYTES))
}

/// Prices lines through the active pricing rules: each line with its adjustments and
/// the reasons shown to the shopper.
#[utoipa::path(post, path = "/price-quote", tag = "pricing", request_body = QuoteRequest,
    responses((status = 200, body = Quote), (status = 422, body = ErrorBody)))]
async fn price_quote(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<QuoteRequest>,
) -> Result<Json<Quote>> {
    Ok(Json(
        super::pricing::quote(&state.db, &state.plugins, &request).await?,
    ))
}

#[utoipa::path(get, path = "/plugins", tag = "admin-plugins", security(("staff_token" = [])),
    responses((status = 200, body = Vec<PluginInfo>)))]
async fn list_plugins(State(state): State<AppState>) -> Result<Json<Vec<PluginInfo>>> {
    Ok(Json(state.plugins.list().await?))
}

/// Installs (uploads) a plugin version. It is compiled, checked against its world and
/// ABI version, and its fixtures are run before it is stored and activated.
#[utoipa::path(post, path = "/plugins", tag = "admin-plugins", request_body = PackageUpload,
    security(("staff_token" = [])),
    responses((status = 201, body = PluginInfo), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn install_plugin(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    body: Bytes,
) -> Result<(StatusCode, Json<PluginInfo>)> {
    let upload: PackageUpload = parse_json(&body)?;
    let (activate, enabled) = (upload.activate, upload.enabled);
    let package = upload.into_package()?;
    let info = state
        .plugins
        .install(package, activate, enabled, &staff.actor)
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(get, path = "/plugins/{id}", tag = "admin-plugins", params(("id" = String, Path)),
    security(("staff_token" = [])), responses((status = 200, body = PluginInfo), (status = 404, body = ErrorBody)))]
async fn get_plugin(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<PluginInfo>> {
    Ok(Json(state.plugins.info(&id).await?))
}

/// Enables or disables a plugin, changes its settings, its priority or its granted hosts.
#[utoipa::path(patch, path = "/plugins/{id}", tag = "admin-plugins", params(("id" = String, Path)),
    request_body = PluginPatch, security(("staff_token" = [])),
    responses((status = 200, body = PluginInfo), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_plugin(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<String>,
    JsonBody(patch): JsonBody<PluginPatch>,
) -> Result<Json<PluginInfo>> {
    Ok(Json(state.plugins.update(&id, &patch, &staff.actor).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub version: String,
}

/// Makes an installed version the active one.
#[utoipa::path(post, path = "/plugins/{id}/activate", tag = "admin-plugins", params(("id" = String, Path)),
    request_body = ActivateRequest, security(("staff_token" = [])),
    responses((status = 200, body = PluginInfo), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn activate_plugin(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<String>,
    JsonBody(request): JsonBody<ActivateRequest>,
) -> Result<Json<PluginInfo>> {
    Ok(Json(
        state
            .plugins
            .activate(&id, &request.version, &staff.actor)
            .await?,
    ))
}

/// Goes back to the previously active version.
#[utoipa::path(post, path = "/plugins/{id}/rollback", tag = "admin-plugins", params(("id" = String, Path)),
    security(("staff_token" = [])),
    responses((status = 200, body = PluginInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rollback_plugin(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<String>,
) -> Result<Json<PluginInfo>> {
    Ok(Json(state.plugins.rollback(&id, &staff.actor).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionRecord {
    pub id: i64,
    pub plugin_id: String,
    pub version: String,
    pub call: String,
    pub input_hash: String,
    pub output_hash: String,
    pub outcome: String,
    pub fuel: i64,
    pub duration_us: i64,
    pub created_at: String,
    /// What the plugin answered, in short (at most 8 KB), or null when the call records
    /// none (it failed; a notification channel, a taxonomy; a decision recorded before
    /// this was kept). A pricing rule's: `{"currency", "adjustments": [{"line_id" (null
    /// for the cart), "amount_minor", "reason"}]}`; a loyalty rule's: `{"points",
    /// "entries": [{"points", "reason"}]}`; a payment adapter's: `{"status", "hard"?}`.
    /// One cut to fit says so in `cut`.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionFilter {
    /// Only decisions on this input (the hash a quote was recorded with).
    pub input_hash: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<i64>,
}

/// A plugin's calls by kind on the node that answers, since it started, as its
/// `/metrics` counts them: calls, failures, the p99 duration's bucket and fuel.
#[utoipa::path(get, path = "/plugins/{id}/metrics", tag = "admin-plugins",
    params(("id" = String, Path)), security(("staff_token" = [])),
    responses((status = 200, body = Vec<CallMetrics>)))]
async fn plugin_metrics(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Json<Vec<CallMetrics>> {
    Json(node_metrics(&state, &id))
}

/// Recent decisions of a plugin, newest first: enough to explain a price later.
#[utoipa::path(get, path = "/plugins/{id}/decisions", tag = "admin-plugins",
    params(("id" = String, Path), DecisionFilter), security(("staff_token" = [])),
    responses((status = 200, body = Vec<DecisionRecord>)))]
async fn plugin_decisions(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    QueryParams(filter): QueryParams<DecisionFilter>,
) -> Result<Json<Vec<DecisionRecord>>> {
    Ok(Json(decisions(&state, &id, &filter).await?))
}

/// What this node's `/metrics` says of one kind of call of a plugin, since the node
/// started.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CallMetrics {
    /// The call (`price`, `validate`, …).
    pub call: String,
    pub calls: u64,
    /// Calls that trapped, ran out of fuel or time, or answered an error.
    pub failed: u64,
    /// The upper bound of the duration bucket that holds the 99th percentile, in
    /// milliseconds (`/metrics` keeps buckets, not every duration).
    pub p99_ms_at_most: Option<f64>,
    /// The 99th percentile of fuel used a call (over the recent window the exporter keeps).
    pub fuel_p99: Option<f64>,
    pub fuel_mean: Option<f64>,
}

/// Plugin `id`'s calls by kind, from this node's metrics (the text `/metrics` serves,
/// read back with a Prometheus text parser).
pub fn node_metrics(state: &AppState, id: &str) -> Vec<CallMetrics> {
    let text = state.metrics.render();
    let Ok(scrape) = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))) else {
        return Vec::new();
    };
    let mut by_call: std::collections::BTreeMap<String, CallMetrics> = Default::default();
    let mut fuel_sums: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for sample in &scrape.samples {
        if sample.labels.get("plugin") != Some(id) {
            continue;
        }
        let Some(call) = sample.labels.get("call") else {
            continue;
        };
        let entry = by_call
            .entry(call.to_owned())
            .or_insert_with(|| CallMetrics {
                call: call.to_owned(),
                ..CallMetrics::default()
            });
        use prometheus_parse::Value;
        match (sample.metric.as_str(), &sample.value) {
            ("olivine_plugin_calls_total", Value::Counter(n) | Value::Untyped(n)) => {
                // Counts are whole numbers, far below 2^53.
                let n = *n as u64;
                entry.calls += n;
                if sample.labels.get("outcome") != Some("ok") {
                    entry.failed += n;
                }
            }
            ("olivine_plugin_call_duration_seconds", Value::Histogram(buckets)) => {
                let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
                let mut sorted = buckets.clone();
                sorted.sort_by(|a, b| a.less_than.total_cmp(&b.less_than));
                entry.p99_ms_at_most = sorted
                    .iter()
                    .find(|b| total > 0.0 && b.count >= total * 0.99)
                    .map(|b| b.less_than * 1000.0);
            }
            ("olivine_plugin_call_fuel", Value::Summary(quantiles)) => {
                entry.fuel_p99 = quantiles
                    .iter()
                    .find(|q| (q.quantile - 0.99).abs() < 1e-9)
                    .map(|q| q.count)
                    .filter(|v| v.is_finite());
            }
            ("olivine_plugin_call_fuel_sum", Value::Untyped(v)) => {
                fuel_sums.entry(call.to_owned()).or_default().0 = *v;
            }
            ("olivine_plugin_call_fuel_count", Value::Untyped(v)) => {
                fuel_sums.entry(call.to_owned()).or_default().1 = *v;
            }
            _ => {}
        }
    }
    for (call, (sum, count)) in fuel_sums {
        if let Some(entry) = by_call.get_mut(&call) {
            entry.fuel_mean = (count > 0.0).then(|| sum / count);
        }
    }
    by_call.into_values().collect()
}

/// Plugin `id`'s recorded decisions by `filter`, newest first (the API's and the admin
/// page's).
pub async fn decisions(
    state: &AppState,
    id: &str,
    filter: &DecisionFilter,
) -> Result<Vec<DecisionRecord>> {
    decisions_with(state, id, filter, true).await
}

/// [`decisions`], with their `detail` or (`with_detail` false: for counting calls, where
/// a thousand details would be read for nothing) without.
pub async fn decisions_with(
    state: &AppState,
    id: &str,
    filter: &DecisionFilter,
    with_detail: bool,
) -> Result<Vec<DecisionRecord>> {
    let detail = if with_detail {
        "detail"
    } else {
        "CAST(NULL AS TEXT)"
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT id, plugin_id, version, call, input_hash, output_hash, outcome, fuel, duration_us, created_at, {detail}
         FROM plugin_decisions WHERE plugin_id = $1 AND ($2 IS NULL OR input_hash = $2)
         ORDER BY id DESC LIMIT $3",
    )))
    .bind(id)
    .bind(filter.input_hash.as_deref())
    .bind(filter.limit.unwrap_or(50).clamp(1, 1000))
    .fetch_all(&state.db.pool)
    .await?;
    let records = rows
        .iter()
        .map(|r| {
            Ok(DecisionRecord {
                id: r.try_get(0)?,
                plugin_id: r.try_get(1)?,
                version: r.try_get(2)?,
                call: r.try_get(3)?,
                input_hash: r.try_get(4)?,
                output_hash: r.try_get(5)?,
                outcome: r.try_get(6)?,
                fuel: r.try_get(7)?,
                duration_us: r.try_get(8)?,
                created_at: r.try_get(9)?,
                // Written by the kernel as JSON; anything unreadable reads as none.
                detail: r
                    .try_get::<Option<String>, _>(10)?
                    .and_then(|text| serde_json::from_str(&text).ok()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(records)
}
