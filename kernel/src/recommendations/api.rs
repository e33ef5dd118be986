//! `POST /api/v1/behaviour` (apps record what a consenting visitor did) and
//! `GET /api/v1/products/{slug}/recommendations` (what goes well with a product).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Behaviour;
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Problems, Result};
use crate::http::extract::{JsonBody, PathParam};
use crate::search::SearchHit;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(record_behaviour))
        .routes(routes!(product_recommendations))
}

/// The most events one request may carry.
const MAX_EVENTS: usize = 50;
/// What goes well with a product, at most.
pub const SHOWN: usize = 4;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BehaviourEvent {
    /// `viewed`, `added` (to the cart) or `purchased`.
    #[schema(pattern = "^(viewed|added|purchased)$")]
    pub kind: String,
    /// The product's slug.
    #[schema(min_length = 1, max_length = 200)]
    pub product: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BehaviourBatch {
    /// The app's random visitor id for this device (16 to 64 letters, digits, `-` and
    /// `_`), not the customer's id nor derived from it; replace it every 30 days.
    #[schema(pattern = "^[A-Za-z0-9_-]{16,64}$")]
    pub visitor_id: String,
    /// Must be `true`: the shopper agreed to analytics in the app. Without it nothing is
    /// sent.
    pub analytics_consent: bool,
    /// 1 to 50 events.
    #[schema(min_items = 1, max_items = 50)]
    pub events: Vec<BehaviourEvent>,
}

fn is_visitor_id(text: &str) -> bool {
    (16..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Records what a visitor did in an app, for recommendations. Only with the shopper's
/// analytics consent; no customer token is taken and nothing about the device is kept
/// (no IP address, no user agent): the events are the visitor id's only.
#[utoipa::path(post, path = "/behaviour", tag = "catalog", request_body = BehaviourBatch,
    responses((status = 202, description = "Recorded (written within a second)"),
        (status = 422, description = "A field is not valid; `fields` names it", body = ErrorBody)))]
async fn record_behaviour(
    State(state): State<AppState>,
    JsonBody(batch): JsonBody<BehaviourBatch>,
) -> Result<StatusCode> {
    let mut problems = Problems::new();
    problems.check(
        is_visitor_id(&batch.visitor_id),
        "visitor_id",
        "must be 16 to 64 letters, digits, - and _",
    );
    problems.check(
        batch.analytics_consent,
        "analytics_consent",
        "must be true: behaviour is recorded only with the shopper's consent",
    );
    problems.check(
        (1..=MAX_EVENTS).contains(&batch.events.len()),
        "events",
        "must hold 1 to 50 events",
    );
    let mut kinds = Vec::with_capacity(batch.events.len());
    for (i, event) in batch.events.iter().enumerate() {
        match Behaviour::parse(&event.kind) {
            Some(kind) => kinds.push(kind),
            None => problems.add(
                format!("events[{i}].kind"),
                "must be viewed, added or purchased",
            ),
        }
    }
    problems.into_result()?;
    let mut conn = state.db.pool.acquire().await?;
    let mut by_kind: Vec<(Behaviour, Vec<i64>)> = Vec::new();
    let mut problems = Problems::new();
    for (i, (event, kind)) in batch.events.iter().zip(kinds).enumerate() {
        let row = sqlx::query("SELECT id FROM products WHERE slug = $1 AND status = 'active'")
            .bind(&event.product)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => {
                let id: i64 = row.try_get(0)?;
                match by_kind.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, ids)) => ids.push(id),
                    None => by_kind.push((kind, vec![id])),
                }
            }
            None => problems.add(
                format!("events[{i}].product"),
                "is not a product of the shop",
            ),
        }
    }
    drop(conn);
    problems.into_result()?;
    for (kind, ids) in by_kind {
        super::record(&state, &batch.visitor_id, None, kind, &ids).await?;
    }
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductRecommendations {
    /// Products bought or viewed together with this one, in stock, best first (at most 4).
    pub goes_well_with: Vec<SearchHit>,
}

/// What goes well with a product: bought in the same orders, then viewed by the same
/// visitors (computed hourly from anonymous behaviour), in stock only.
#[utoipa::path(get, path = "/products/{slug}/recommendations", tag = "catalog",
    params(("slug" = String, Path, description = "The product's slug")),
    responses((status = 200, body = ProductRecommendations),
        (status = 404, body = ErrorBody)))]
async fn product_recommendations(
    State(state): State<AppState>,
    PathParam(slug): PathParam<String>,
) -> Result<Json<ProductRecommendations>> {
    let row = sqlx::query("SELECT id FROM products WHERE slug = $1 AND status = 'active'")
        .bind(&slug)
        .fetch_optional(&state.db.pool)
        .await?;
    let Some(row) = row else {
        return Err(Error::not_found("product"));
    };
    let id: i64 = row.try_get(0)?;
    Ok(Json(ProductRecommendations {
        goes_well_with: goes_well_with(&state, id).await?,
    }))
}

/// The product's related products that are in stock, best first.
pub async fn goes_well_with(state: &AppState, product_id: i64) -> Result<Vec<SearchHit>> {
    let slugs = super::related(state, product_id).await?;
    if slugs.is_empty() || !state.search.is_ready() {
        return Ok(Vec::new());
    }
    let mut hits = crate::search::query::hits_for_slugs(&state.search, &slugs)?;
    hits.retain(|hit| hit.in_stock);
    hits.truncate(SHOWN);
    Ok(hits)
}
