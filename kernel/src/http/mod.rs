//! The HTTP surface: the storefront (HTML), the JSON API under `/api/v1` with its
//! OpenAPI document, the admin API, and the operational endpoints.

pub mod assets;
pub mod caching;
pub mod card_numbers;
pub mod compress;
pub mod extract;
pub mod fast_lane;
pub mod front;
pub mod openapi;
pub mod paging;
pub mod schema;
pub mod security;
pub mod session;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use crate::app::AppState;
use crate::error::Error;
use crate::staff::Access;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Olivine API",
        description = "Storefront and admin API of the Olivine commerce kernel. Money is integer minor units with an ISO 4217 currency. Errors are JSON: `{error, message, fields: [{field, message}]}`.",
    ),
    modifiers(&AdminSecurity),
    tags(
        (name = "catalog", description = "Products, variants and categories as shoppers see them"),
        (name = "admin-catalog", description = "Catalog management (staff token with the permission)"),
        (name = "admin-inventory", description = "Locations, stock lots, the stock ledger and store settings (staff token with the permission)"),
        (name = "pricing", description = "Prices through the active pricing-rule plugins"),
        (name = "admin-plugins", description = "Install, configure, activate and roll back plugins (staff token with the permission)"),
        (name = "admin-audit", description = "The tamper-evident audit log: read, filter, verify (staff token with the permission)"),
        (name = "admin-customers", description = "Customer import from legacy systems and the support view of a customer (staff token with the permission)"),
        (name = "admin-privacy", description = "GDPR requests: list them, erase a customer on a verified request (staff token with the permission)"),
        (name = "account", description = "Customer accounts: register, sign in, refresh, sign out, profile, addresses, consents, GDPR export and erasure (customer access token)"),
        (name = "privacy", description = "The status of a GDPR request, by its unguessable id (no sign-in)"),
        (name = "cart", description = "Carts: guest (by id) or signed-in (by token), priced by the pricing rules and checked against stock"),
        (name = "orders", description = "Checkout (idempotent by Idempotency-Key) and the shipping rate table"),
        (name = "admin-orders", description = "Orders, their state changes, shipping and tax rate tables (staff token with the permission)"),
        (name = "staff", description = "Staff sign-in (with a second factor when it is on, or through the store's OpenID Connect provider) and sign-out; a staff member's own two-factor sign-in and sessions"),
        (name = "admin-staff", description = "Staff users, their roles and API tokens, the single sign-on provider (staff token with staff.manage; /me for anyone signed in)"),
        (name = "admin-operations", description = "The cluster at work: event bus positions and dead letters, the job queue and its schedules (staff token with operations.read / operations.manage)"),
    )
)]
struct ApiDoc;

struct AdminSecurity;

impl Modify for AdminSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "staff_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "customer_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Where the JSON API lives.
pub const API_PREFIX: &str = "/api/v1";

/// Routes of `routes!(…)` at `prefix` + their paths, in the router and in the OpenAPI
/// document alike: what nesting them under `prefix` gives, without its cost. A nested
/// route is wrapped in axum's `StripPrefix`, which rebuilds every request's URI without
/// the prefix (about 3,000 instructions a request, docs/PERFORMANCE.md); for the busiest
/// routes that is a tenth of the request.
pub fn at_prefix(
    prefix: &str,
    (schemas, paths, router): UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    let mut prefixed = utoipa::openapi::path::Paths::new();
    prefixed.extensions = paths.extensions;
    for (path, item) in paths.paths {
        prefixed.paths.insert(format!("{prefix}{path}"), item);
    }
    (schemas, prefixed, router)
}

/// The JSON API with its OpenAPI document, both built from the same route list so the
/// document cannot miss a route.
pub fn api(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let admin = crate::catalog::api::admin_routes()
        .merge(crate::inventory::api::admin_routes())
        .merge(crate::plugins::api::admin_routes())
        .merge(crate::audit::api::admin_routes())
        .merge(crate::accounts::api::admin_routes())
        .merge(crate::staff::api::admin_routes())
        .merge(crate::orders::api::admin_routes())
        .merge(crate::subscriptions::api::admin_routes())
        .merge(crate::loyalty::api::admin_routes())
        .merge(crate::notify::api::admin_routes())
        .merge(crate::reviews::api::admin_routes())
        .merge(crate::bus::api::admin_routes())
        .merge(crate::jobs::api::admin_routes())
        .merge(crate::imports::api::admin_routes())
        .merge(crate::media::api::admin_routes(
            state.config.media.media_max_upload_bytes,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_staff));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        // The catalog's public reads (the busiest routes) at their full paths.
        .merge(crate::catalog::api::public_routes())
        .nest(
            API_PREFIX,
            crate::plugins::api::public_routes()
                .merge(crate::accounts::api::public_routes())
                .nest("/account", crate::accounts::api::routes())
                .nest("/staff", crate::staff::api::routes())
                .nest("/carts", crate::cart::api::routes())
                .merge(crate::orders::api::public_routes())
                .nest("/account", crate::orders::api::account_routes())
                .nest("/account", crate::subscriptions::api::account_routes())
                .nest("/account", crate::loyalty::api::account_routes())
                .nest("/account", crate::notify::api::account_routes())
                .nest("/account", crate::reviews::api::account_routes())
                .merge(crate::reviews::api::public_routes())
                .merge(crate::search::api::routes())
                .merge(crate::recommendations::api::routes())
                .nest("/admin", admin),
        )
        .split_for_parts()
}

/// The middleware every answer goes through, outermost first, ending with `$front` (a
/// [`front::FrontLayer`]: metrics, security headers, rate limits). One list for the
/// router's routes and for the fast lane's, so the two cannot differ.
macro_rules! route_middleware {
    ($front:expr, $max_body:expr) => {
        tower::ServiceBuilder::new()
            .layer(tower_http::trace::TraceLayer::new_for_http())
            // tower-http's compression, for the answers it changes only.
            .layer($crate::http::compress::CompressLayer)
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
                axum::response::IntoResponse::into_response($crate::error::Error::Internal(
                    anyhow::anyhow!("a request handler panicked"),
                ))
            }))
            .layer(axum::extract::DefaultBodyLimit::max($max_body))
            // Metrics, then security headers, then rate limits, in one layer.
            .layer($front)
    };
}
pub(crate) use route_middleware;

/// The whole HTTP surface as served: the fast lane in front of [`routes`].
pub fn router(state: AppState) -> fast_lane::App {
    fast_lane::App::new(state.clone(), routes(state))
}

/// Every route, each behind [`route_middleware!`].
pub fn routes(state: AppState) -> Router {
    let (api, mut openapi) = api(&state);
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    openapi::complete(&mut openapi);
    let openapi_json = Bytes::from(openapi.to_json().unwrap_or_else(|_| "{}".to_owned()));
    let max_body = state.config.max_body_bytes;
    Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    openapi_json.clone(),
                )
            }),
        )
        .route("/healthz", get(healthz))
        .route(security::REPORT_PATH, axum::routing::post(security::report))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(crate::live::api::routes())
        .merge(crate::media::api::routes())
        .merge(crate::admin_ui::routes(&state))
        .merge(crate::storefront::routes(&state))
        .fallback(not_found)
        // One layer of the whole stack, outermost first. Each `Router::layer` call wraps
        // every route in a boxed service of its own, and a request clones the boxes
        // below the one it enters: seven calls cost about 30 boxed clones a request
        // (docs/PERFORMANCE.md). The metrics need the matched route, so the stack is
        // applied per route rather than around the router.
        .layer(route_middleware!(
            front::FrontLayer::new(state.clone()),
            max_body
        ))
        .with_state(state)
}

/// Unknown paths: JSON under `/api`, a page elsewhere.
async fn not_found(request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        Error::not_found(format!("route {}", request.uri().path())).into_response()
    } else if request.uri().path().starts_with("/admin/") {
        crate::admin_ui::not_found_page()
    } else {
        crate::storefront::not_found_page().into_response()
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Every admin route: a staff token (401 without a valid one), then the permission the
/// route needs by the table in [`crate::staff::permissions::required`] (403 without it;
/// a route missing from the table is refused to everyone). The staff user goes into the
/// request for the handler to name in the audit log.
async fn require_staff(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let unauthorized = |err: Error| {
        let mut response = err.into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    };
    let Some(token) = bearer_token(request.headers()) else {
        return unauthorized(Error::Unauthorized);
    };
    // The rate limiter counts this token's later requests per staff member (or by
    // address again once it is refused).
    let staff = match crate::staff::authenticate(&state.db, token).await {
        Ok(staff) => {
            state.limiter.staff_token_accepted(token, staff.id);
            staff
        }
        Err(Error::Unauthorized) => {
            state.limiter.staff_token_refused(token);
            return unauthorized(Error::Unauthorized);
        }
        Err(err) => return err.into_response(),
    };
    // The token's last use (at most a write a minute), and the store's two-factor policy:
    // a session that does not meet it is refused everywhere here (403).
    let (headers, extensions) = (request.headers(), request.extensions());
    if let Err(err) = crate::staff::sessions::admit(&state, &staff, headers, extensions).await {
        return err.into_response();
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().trim_start_matches("/api/v1/admin").to_owned())
        .unwrap_or_default();
    match crate::staff::permissions::required(request.method(), &route) {
        Some(Access::AnyStaff) => {}
        Some(Access::Needs(permission)) if staff.role.allows(permission) => {}
        Some(Access::Needs(permission)) => {
            return Error::Forbidden(format!(
                "the {} role lacks the {} permission this needs",
                staff.role.name(),
                permission.name()
            ))
            .into_response();
        }
        None => {
            tracing::error!(
                route,
                "admin route without a permission in the table: refused"
            );
            return Error::Forbidden("this route is not open to any role".to_owned())
                .into_response();
        }
    }
    request.extensions_mut().insert(staff);
    next.run(request).await
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// The database answers and its schema is current.
async fn readyz(State(state): State<AppState>) -> Response {
    let latest = crate::store::latest_version(state.db.backend);
    match crate::store::schema_version(&state.db).await {
        Ok(Some(version)) if version >= latest => axum::Json(serde_json::json!({
            "status": "ready",
            "database": state.db.backend.name(),
            "schema_version": version,
        }))
        .into_response(),
        Ok(version) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "status": "migrations pending",
                "schema_version": version,
                "expected": latest,
            })),
        )
            .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            Error::Unavailable("database unreachable".to_owned()).into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    state.db.record_pool_metrics();
    state.work_db.record_pool_metrics();
    if let Some(replica) = state.reads.replica() {
        replica.record_pool_metrics();
    }
    // On the work pool: the primary's acquisition counter measures requests only.
    crate::bus::record_metrics(&state.work_db, &state.bus).await;
    crate::jobs::record_metrics(&state.work_db, state.clock.now()).await;
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Body::from(state.metrics.render()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
