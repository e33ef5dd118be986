//! The merchant's admin in the browser, served by the kernel at `/admin`: server-rendered
//! pages (maud) with no JavaScript build, each through the same domain functions as the
//! admin JSON API (`/api/v1/admin`) and under the same permission table.
//!
//! It lives in the top-level `admin-ui/` directory (the project's layout) and is compiled
//! into the kernel as the module `olivine::admin_ui`; a crate of its own would depend on
//! the kernel the kernel's binary serves it from.
//!
//! Who may open a page is decided in one place: every page is in [`PAGES`] with the admin
//! API route whose permission it takes, and [`guard`] asks
//! [`crate::staff::permissions::required`] about that route, as the API's middleware
//! does. A page missing from the table is refused to everyone. Without a session a page
//! redirects to the sign-in page; a role without the permission gets the 403 page.
//!
//! To add a page: write its handler in the file of its area, add its route to that
//! area's `routes()`, and add a [`Page`] line here naming the API route it stands for.
//! The route walk in `kernel/tests/suite/admin_ui.rs` visits every line of [`PAGES`].

mod assets;
mod audit;
pub(crate) mod auth;
mod campaigns;
mod catalog;
mod categories;
mod customers;
mod dashboard;
mod images;
mod imports;
mod layout;
mod notifications;
mod operations;
mod orders;
mod plugins;
mod rates;
mod recalls;
mod reviews;
mod session;
mod settings;
mod sso;
mod staff;
mod stock;
mod subscriptions;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::app::AppState;
use crate::staff::{Access, Role};

pub use dashboard::{DashboardCache, new_cache as new_dashboard_cache};
pub use session::{CSRF_COOKIE, STAFF_COOKIE};

/// One admin page (a method and a route under `/admin`) and the admin API route whose
/// permission it takes (method and route relative to `/api/v1/admin`).
#[derive(Debug)]
pub struct Page {
    pub method: Method,
    pub path: &'static str,
    pub api_method: Method,
    pub api_route: &'static str,
}

const fn page(
    method: Method,
    path: &'static str,
    api_method: Method,
    api_route: &'static str,
) -> Page {
    Page {
        method,
        path,
        api_method,
        api_route,
    }
}

/// Every admin page behind a session. A form page takes the permission of the write it
/// makes, so a role that may not make it does not see the form either.
pub const PAGES: &[Page] = &[
    // The dashboard: any staff member; each of its panels by its own permission.
    page(Method::GET, "/admin", Method::GET, "/me"),
    page(Method::GET, "/admin/account/two-factor", Method::GET, "/me"),
    page(
        Method::POST,
        "/admin/account/two-factor",
        Method::GET,
        "/me",
    ),
    // Catalog and stock.
    page(Method::GET, "/admin/products", Method::GET, "/products"),
    page(
        Method::GET,
        "/admin/products/new",
        Method::POST,
        "/products",
    ),
    page(
        Method::POST,
        "/admin/products/new",
        Method::POST,
        "/products",
    ),
    page(
        Method::GET,
        "/admin/products/{id}",
        Method::GET,
        "/products/{id}",
    ),
    page(
        Method::POST,
        "/admin/products/{id}",
        Method::PATCH,
        "/products/{id}",
    ),
    page(
        Method::POST,
        "/admin/products/{id}/variants",
        Method::POST,
        "/products/{id}/variants",
    ),
    page(
        Method::POST,
        "/admin/variants/{id}",
        Method::PATCH,
        "/variants/{id}",
    ),
    page(
        Method::GET,
        "/admin/products/{id}/images",
        Method::GET,
        "/products/{id}/images",
    ),
    page(
        Method::POST,
        "/admin/products/{id}/images",
        Method::POST,
        "/products/{id}/images",
    ),
    page(
        Method::POST,
        "/admin/products/{id}/images/{image_id}",
        Method::PATCH,
        "/products/{id}/images/{image_id}",
    ),
    page(
        Method::POST,
        "/admin/products/{id}/images/{image_id}/move",
        Method::PUT,
        "/products/{id}/images/order",
    ),
    page(
        Method::GET,
        "/admin/products/{id}/images/{image_id}/delete",
        Method::DELETE,
        "/products/{id}/images/{image_id}",
    ),
    page(
        Method::POST,
        "/admin/products/{id}/images/{image_id}/delete",
        Method::DELETE,
        "/products/{id}/images/{image_id}",
    ),
    page(Method::GET, "/admin/categories", Method::GET, "/categories"),
    page(
        Method::POST,
        "/admin/categories",
        Method::POST,
        "/categories",
    ),
    page(
        Method::GET,
        "/admin/categories/{id}",
        Method::PUT,
        "/categories/{id}",
    ),
    page(
        Method::POST,
        "/admin/categories/{id}",
        Method::PUT,
        "/categories/{id}",
    ),
    page(
        Method::GET,
        "/admin/categories/{id}/delete",
        Method::DELETE,
        "/categories/{id}",
    ),
    page(
        Method::POST,
        "/admin/categories/{id}/delete",
        Method::DELETE,
        "/categories/{id}",
    ),
    page(Method::GET, "/admin/lots", Method::GET, "/lots"),
    page(Method::GET, "/admin/lots/new", Method::POST, "/lots"),
    page(Method::POST, "/admin/lots/new", Method::POST, "/lots"),
    page(Method::GET, "/admin/lots/{id}", Method::GET, "/lots"),
    page(
        Method::POST,
        "/admin/lots/{id}/adjustments",
        Method::POST,
        "/lots/{id}/adjustments",
    ),
    page(Method::GET, "/admin/locations", Method::GET, "/locations"),
    page(Method::POST, "/admin/locations", Method::POST, "/locations"),
    // Recalls: the list is stock; a report names customers.
    page(Method::GET, "/admin/recalls", Method::GET, "/recalls"),
    page(Method::GET, "/admin/recalls/new", Method::POST, "/recalls"),
    page(Method::POST, "/admin/recalls/new", Method::POST, "/recalls"),
    page(
        Method::GET,
        "/admin/recalls/{id}",
        Method::GET,
        "/recalls/{id}",
    ),
    page(
        Method::GET,
        "/admin/recalls/{id}/report.csv",
        Method::GET,
        "/recalls/{id}/report.csv",
    ),
    // Orders.
    page(Method::GET, "/admin/orders", Method::GET, "/orders"),
    page(
        Method::GET,
        "/admin/orders/{number}",
        Method::GET,
        "/orders/{number}",
    ),
    page(
        Method::GET,
        "/admin/orders/{number}/fulfil",
        Method::POST,
        "/orders/{number}/transitions",
    ),
    page(
        Method::POST,
        "/admin/orders/{number}/fulfil",
        Method::POST,
        "/orders/{number}/transitions",
    ),
    page(
        Method::GET,
        "/admin/orders/{number}/cancel",
        Method::POST,
        "/orders/{number}/transitions",
    ),
    page(
        Method::POST,
        "/admin/orders/{number}/cancel",
        Method::POST,
        "/orders/{number}/transitions",
    ),
    page(
        Method::GET,
        "/admin/orders/{number}/deliver",
        Method::POST,
        "/orders/{number}/transitions",
    ),
    page(
        Method::POST,
        "/admin/orders/{number}/deliver",
        Method::POST,
        "/orders/{number}/transitions",
    ),
    page(
        Method::GET,
        "/admin/orders/{number}/refund",
        Method::POST,
        "/orders/{number}/refunds",
    ),
    page(
        Method::POST,
        "/admin/orders/{number}/refund",
        Method::POST,
        "/orders/{number}/refunds",
    ),
    // Customers: reading one is `customers.read` (the view is audited); points are a
    // write; erasure and the privacy requests are `privacy.manage`.
    page(
        Method::GET,
        "/admin/customers",
        Method::GET,
        "/customers/{pseudonym}",
    ),
    page(
        Method::GET,
        "/admin/customers/{pseudonym}",
        Method::GET,
        "/customers/{pseudonym}",
    ),
    page(
        Method::POST,
        "/admin/customers/{pseudonym}/points",
        Method::POST,
        "/customers/{pseudonym}/loyalty/adjustments",
    ),
    page(
        Method::GET,
        "/admin/customers/{pseudonym}/erase",
        Method::POST,
        "/customers/{pseudonym}/erasure",
    ),
    page(
        Method::POST,
        "/admin/customers/{pseudonym}/erase",
        Method::POST,
        "/customers/{pseudonym}/erasure",
    ),
    page(
        Method::GET,
        "/admin/privacy-requests",
        Method::GET,
        "/privacy-requests",
    ),
    // Subscriptions.
    page(
        Method::GET,
        "/admin/subscriptions",
        Method::GET,
        "/subscriptions",
    ),
    page(
        Method::GET,
        "/admin/subscriptions/{number}",
        Method::GET,
        "/subscriptions/{number}",
    ),
    page(
        Method::POST,
        "/admin/subscriptions/{number}/actions",
        Method::POST,
        "/subscriptions/{number}/actions",
    ),
    // Staff and their tokens: the owner's (staff.manage).
    page(Method::GET, "/admin/staff", Method::GET, "/staff"),
    page(Method::POST, "/admin/staff", Method::POST, "/staff"),
    page(Method::GET, "/admin/staff/{id}", Method::GET, "/staff/{id}"),
    page(
        Method::POST,
        "/admin/staff/{id}",
        Method::PATCH,
        "/staff/{id}",
    ),
    page(
        Method::POST,
        "/admin/staff/{id}/tokens",
        Method::POST,
        "/staff/{id}/tokens",
    ),
    page(
        Method::POST,
        "/admin/staff/{id}/tokens/{token_id}/revoke",
        Method::DELETE,
        "/staff/{id}/tokens/{token_id}",
    ),
    page(
        Method::POST,
        "/admin/staff/{id}/sessions/revoke",
        Method::POST,
        "/staff/{id}/sessions/revoke",
    ),
    page(
        Method::POST,
        "/admin/staff/{id}/mfa/reset",
        Method::POST,
        "/staff/{id}/mfa/reset",
    ),
    page(Method::GET, "/admin/staff/sso", Method::GET, "/staff/sso"),
    page(Method::POST, "/admin/staff/sso", Method::PUT, "/staff/sso"),
    page(
        Method::POST,
        "/admin/staff/sso/remove",
        Method::DELETE,
        "/staff/sso",
    ),
    // The audit log.
    page(Method::GET, "/admin/audit", Method::GET, "/audit"),
    page(
        Method::GET,
        "/admin/audit/verify",
        Method::GET,
        "/audit/verify",
    ),
    // Notifications: the delivery log is the customers'; templates are settings.
    page(
        Method::GET,
        "/admin/campaigns",
        Method::GET,
        "/notification-campaigns",
    ),
    page(
        Method::POST,
        "/admin/campaigns",
        Method::POST,
        "/notification-campaigns",
    ),
    page(
        Method::GET,
        "/admin/notifications",
        Method::GET,
        "/notifications",
    ),
    page(
        Method::GET,
        "/admin/notifications/{id}",
        Method::GET,
        "/notifications/{id}",
    ),
    page(
        Method::POST,
        "/admin/notifications/{id}/resend",
        Method::POST,
        "/notifications/{id}/resend",
    ),
    page(
        Method::GET,
        "/admin/notification-templates",
        Method::GET,
        "/notification-templates",
    ),
    page(
        Method::GET,
        "/admin/notification-templates/{topic}/{channel}",
        Method::PUT,
        "/notification-templates/{topic}/{channel}",
    ),
    page(
        Method::POST,
        "/admin/notification-templates/{topic}/{channel}",
        Method::PUT,
        "/notification-templates/{topic}/{channel}",
    ),
    // Reviews moderation: the catalog's.
    page(Method::GET, "/admin/reviews", Method::GET, "/reviews"),
    page(
        Method::POST,
        "/admin/reviews/{id}/moderation",
        Method::POST,
        "/reviews/{id}/moderation",
    ),
    // The store's settings: read with stock, written with settings.write.
    page(Method::GET, "/admin/settings", Method::GET, "/settings"),
    page(Method::POST, "/admin/settings", Method::PATCH, "/settings"),
    // Shipping and tax rates: read with orders, written with settings.write.
    page(Method::GET, "/admin/rates", Method::GET, "/shipping-rates"),
    page(
        Method::POST,
        "/admin/rates/shipping",
        Method::PUT,
        "/shipping-rates",
    ),
    page(Method::POST, "/admin/rates/tax", Method::PUT, "/tax-rates"),
    // Operations: dead letters and dead jobs.
    page(
        Method::GET,
        "/admin/operations",
        Method::GET,
        "/bus/dead-letters",
    ),
    page(
        Method::POST,
        "/admin/operations/dead-letters/{id}/replay",
        Method::POST,
        "/bus/dead-letters/{id}/replay",
    ),
    page(
        Method::POST,
        "/admin/operations/jobs/{id}/retry",
        Method::POST,
        "/jobs/{id}/retry",
    ),
    // Imports of a legacy shop's export: the runs are read with operations.read, a
    // check or an import is operations.manage (as the API's import).
    page(Method::GET, "/admin/imports", Method::GET, "/imports"),
    page(
        Method::POST,
        "/admin/imports",
        Method::POST,
        "/imports/{kind}",
    ),
    page(
        Method::GET,
        "/admin/imports/{id}",
        Method::GET,
        "/imports/runs/{id}",
    ),
    // Plugins.
    page(Method::GET, "/admin/plugins", Method::GET, "/plugins"),
    page(
        Method::GET,
        "/admin/plugins/upload",
        Method::POST,
        "/plugins",
    ),
    page(
        Method::POST,
        "/admin/plugins/upload",
        Method::POST,
        "/plugins",
    ),
    page(
        Method::GET,
        "/admin/plugins/{id}",
        Method::GET,
        "/plugins/{id}",
    ),
    page(
        Method::POST,
        "/admin/plugins/{id}/activate",
        Method::POST,
        "/plugins/{id}/activate",
    ),
    page(
        Method::POST,
        "/admin/plugins/{id}",
        Method::PATCH,
        "/plugins/{id}",
    ),
    page(
        Method::POST,
        "/admin/plugins/{id}/rollback",
        Method::POST,
        "/plugins/{id}/rollback",
    ),
];

/// The admin's routes: sign-in and sign-out open to anyone, every other page behind
/// [`guard`], all under the session and CSRF layer.
pub fn routes(state: &AppState) -> Router<AppState> {
    let guarded = Router::new()
        .merge(dashboard::routes())
        .merge(auth::account_routes())
        .merge(catalog::routes())
        .merge(images::routes(state))
        .merge(categories::routes())
        .merge(orders::routes())
        .merge(plugins::routes())
        .merge(recalls::routes())
        .merge(customers::routes())
        .merge(subscriptions::routes())
        .merge(staff::routes())
        .merge(audit::routes())
        .merge(operations::routes())
        .merge(settings::routes())
        .merge(reviews::routes())
        .merge(notifications::routes())
        .merge(campaigns::routes())
        .merge(stock::routes())
        .merge(rates::routes())
        .merge(sso::routes())
        .merge(imports::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .merge(guarded)
        .merge(auth::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            session::layer,
        ))
        .merge(assets::routes())
}

/// The admin's 404 page, for unknown addresses under `/admin/`.
pub fn not_found_page() -> Response {
    layout::not_found_page()
}

/// The page of a request: its line in [`PAGES`].
fn page_of(method: &Method, path: &str) -> Option<&'static Page> {
    PAGES
        .iter()
        .find(|page| page.method == *method && page.path == path)
}

/// Whether `role` may open the page at `path` (a route template of [`PAGES`]) with
/// `method`: what the navigation and the dashboard ask before showing a link.
pub fn may(role: Role, method: &Method, path: &str) -> bool {
    page_of(method, path).is_some_and(|page| allowed(role, page))
}

fn allowed(role: Role, page: &Page) -> bool {
    match crate::staff::permissions::required(&page.api_method, page.api_route) {
        Some(Access::AnyStaff) => true,
        Some(Access::Needs(permission)) => role.allows(permission),
        None => false,
    }
}

/// Every guarded page: a signed-in staff member (else to the sign-in page) who meets the
/// store's two-factor policy (else to setting it up, or signing in again), whose role
/// may use the page (else the 403 page).
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(admin) = request.extensions().get::<session::AdminSession>().cloned() else {
        return layout::server_error_page();
    };
    let Some(staff) = admin.staff.clone() else {
        return session::sign_in_redirect(request.uri(), request.method().is_safe());
    };
    let from = crate::staff::sessions::client_address(
        state.config.trust_forwarded_for,
        request.headers(),
        request.extensions(),
    );
    crate::staff::sessions::touch(&state, &staff, from.as_deref()).await;
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if let Some(refused) = auth::two_factor_standing(&state, &staff, &path).await {
        return refused;
    }
    match page_of(request.method(), &path) {
        Some(page) if allowed(staff.role, page) => next.run(request).await,
        Some(_) => layout::forbidden_page(&format!(
            "Your role ({}) may not use this page. Ask the store's owner if you need it.",
            staff.role.name()
        )),
        None => {
            tracing::error!(path, "admin page without a line in the page table: refused");
            layout::forbidden_page("This page is not open to any role.")
        }
    }
}
