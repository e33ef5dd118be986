//! Admin routes to manage plugins, and the public price quote.

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sqlx::Row;
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
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionFilter {
    /// Only decisions on this input (the hash a quote was recorded with).
    pub input_hash: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<i64>,
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

/// Plugin `id`'s recorded decisions by `filter`, newest first (the API's and the admin
/// page's).
pub async fn decisions(
    state: &AppState,
    id: &str,
    filter: &DecisionFilter,
) -> Result<Vec<DecisionRecord>> {
    let rows = sqlx::query(
        "SELECT id, plugin_id, version, call, input_hash, output_hash, outcome, fuel, duration_us, created_at
         FROM plugin_decisions WHERE plugin_id = $1 AND ($2 IS NULL OR input_hash = $2)
         ORDER BY id DESC LIMIT $3",
    )
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
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(records)
}
