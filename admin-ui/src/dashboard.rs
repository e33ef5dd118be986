//! The dashboard: what needs the merchant's attention today. Each panel shows only to a
//! role that may read what it counts, and links to the page that lists it where there is
//! one. Every count is one indexed query.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use sqlx::Row;

use super::layout;
use super::session::SignedIn;
use crate::app::AppState;
use crate::error::Result;
use crate::orders::OrderStatus;
use crate::staff::{Permission, Staff};

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin", get(dashboard))
}

/// Today's orders in one currency.
struct TodaysOrders {
    currency: String,
    /// Placed today and not cancelled (pending ones too).
    placed: i64,
    /// Of those, the ones whose payment was taken ([`OrderStatus::was_paid`]).
    paid: i64,
    /// What the paid ones brought in: their totals less what was refunded of them.
    revenue_minor: i64,
}

/// Today's orders and their revenue, by currency. Revenue counts only orders whose
/// payment was taken (`OrderStatus::was_paid`), less their refunds: a pending order has
/// paid nothing yet, a cancelled one nothing at all.
async fn todays_orders(state: &AppState, today: &str) -> Result<Vec<TodaysOrders>> {
    let paid: Vec<String> = OrderStatus::ALL
        .iter()
        .filter(|s| s.was_paid())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let paid = paid.join(", ");
    let sql = format!(
        "SELECT currency, CAST(COUNT(*) AS BIGINT),
            CAST(COALESCE(SUM(CASE WHEN status IN ({paid}) THEN 1 ELSE 0 END), 0) AS BIGINT),
            CAST(COALESCE(SUM(CASE WHEN status IN ({paid}) THEN total_minor - refunded_minor ELSE 0 END), 0) AS BIGINT)
         FROM orders WHERE created_at >= $1 AND status <> 'cancelled' GROUP BY currency ORDER BY currency"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(today)
        .fetch_all(&state.db.pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(TodaysOrders {
                currency: row.try_get(0)?,
                placed: row.try_get(1)?,
                paid: row.try_get(2)?,
                revenue_minor: row.try_get(3)?,
            })
        })
        .collect()
}

/// Lots with units expiring within 30, 60 and 90 days of today.
async fn expiring_lots(state: &AppState) -> Result<[(i64, i64); 3]> {
    let today = crate::time::today();
    let mut counts = [(30, 0), (60, 0), (90, 0)];
    for (days, count) in &mut counts {
        let until = today + chrono::Days::new(u64::try_from(*days).unwrap_or(0));
        *count = scalar(
            sqlx::query(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM lots
                 WHERE expires_on >= $1 AND expires_on <= $2 AND quantity > 0",
            )
            .bind(crate::time::format_date(today))
            .bind(crate::time::format_date(until)),
            state,
        )
        .await?;
    }
    Ok(counts)
}

async fn scalar(
    query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    state: &AppState,
) -> Result<i64> {
    Ok(query.fetch_one(&state.db.pool).await?.try_get(0)?)
}

/// Variants of active products (bundles hold no stock) without a unit that sells today:
/// the storefront's rule (`inventory::sellable_lot_sql`), so recalled lots, expired ones
/// and those inside the store's minimum shelf life do not count.
/// The products with a variant that has no unit selling today (the storefront's rule,
/// `inventory::sellable_lot_sql`; bundles hold no stock of their own), and when they
/// were counted: the dashboard's count and the products list's `stock=out` filter. It
/// is a pass over every variant (about 130 ms at 80,000 variants and 100,000 lots on
/// SQLite), so each node keeps it [`STOCK_COUNTS_TTL`] and the pages say when it was counted.
pub struct OutOfStock {
    /// Product id, its status and how many of its variants are out of stock, in the
    /// products list's order (lower-cased name, then id).
    pub products: Vec<(i64, String, i64)>,
    pub counted_at: String,
}

impl OutOfStock {
    /// Out-of-stock variants of active products: the dashboard's count.
    fn active_variants(&self) -> i64 {
        self.products
            .iter()
            .filter(|(_, status, _)| status == "active")
            .map(|(_, _, variants)| variants)
            .sum()
    }
}

pub(super) async fn out_of_stock(state: &AppState) -> Result<Arc<OutOfStock>> {
    if let Some(found) = state.dashboard.out_of_stock.get(&()).await {
        return Ok(found);
    }
    let cutoff = sellable_cutoff(state).await?;
    let sql = format!(
        "SELECT p.id, p.status, CAST(COUNT(*) AS BIGINT) FROM products p JOIN variants v ON v.product_id = p.id
         WHERE p.product_type <> 'bundle' AND {}
         GROUP BY p.id, p.status, p.name ORDER BY LOWER(p.name), p.id",
        crate::inventory::no_sellable_lot_sql("v", "$1")
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(cutoff)
        .fetch_all(&state.db.pool)
        .await?;
    let products = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<Vec<_>>>()?;
    let found = Arc::new(OutOfStock {
        products,
        counted_at: state.clock.now().format("%H:%M:%S").to_string(),
    });
    state.dashboard.out_of_stock.insert((), found.clone()).await;
    Ok(found)
}

/// The first expiry date that sells today, as the storefront's availability has it.
pub(super) async fn sellable_cutoff(state: &AppState) -> Result<String> {
    let mut conn = state.db.pool.acquire().await?;
    let settings = state.cache.store_settings(&mut conn).await?;
    Ok(crate::time::format_date(crate::inventory::sellable_cutoff(
        crate::time::today(),
        &settings,
    )))
}

/// Active subscriptions whose renewal was declined and is being retried (dunning).
async fn failed_renewals(state: &AppState) -> Result<i64> {
    scalar(
        sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM subscriptions WHERE status = 'active' AND failed_attempts > 0",
        ),
        state,
    )
    .await
}

/// Events a consumer gave up on that nobody replayed yet.
async fn dead_letters(state: &AppState) -> Result<i64> {
    scalar(
        sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM bus_dead_letters WHERE replayed_at IS NULL",
        ),
        state,
    )
    .await
}

/// Plugins the kernel turned off after repeated failures, with the reason.
async fn auto_disabled_plugins(state: &AppState) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT plugin_id, disabled_reason FROM plugin_installations
         WHERE enabled = 0 AND disabled_reason IS NOT NULL ORDER BY plugin_id",
    )
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// The expiring-lots panel's counts and when they were counted.
#[derive(Debug, Clone)]
pub struct StockCounts {
    expiring: [(i64, i64); 3],
    counted_at: String,
}

/// Counts the admin keeps briefly, each a pass over a whole table that a page would
/// otherwise make at every visit; the pages say when they were counted.
#[derive(Clone)]
pub struct DashboardCache {
    /// The expiring-lots counts, kept for [`STOCK_COUNTS_TTL`]: a pass over every lot
    /// (about 100 ms at 100,000 lots on PostgreSQL), and the dashboard is the page staff
    /// open most.
    stock: moka::future::Cache<(), Arc<StockCounts>>,
    /// [`OutOfStock`], kept as long.
    out_of_stock: moka::future::Cache<(), Arc<OutOfStock>>,
    /// How many customers a campaign reaches, and when it was counted, for
    /// [`AUDIENCE_TTL`]: a pass over every consent (about 300 ms at 100,000 customers).
    audience: moka::future::Cache<(), (i64, String)>,
}

const STOCK_COUNTS_TTL: std::time::Duration = std::time::Duration::from_secs(30);
const AUDIENCE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

pub fn new_cache() -> DashboardCache {
    DashboardCache {
        stock: one_entry(STOCK_COUNTS_TTL),
        out_of_stock: one_entry(STOCK_COUNTS_TTL),
        audience: one_entry(AUDIENCE_TTL),
    }
}

fn one_entry<V: Clone + Send + Sync + 'static>(
    ttl: std::time::Duration,
) -> moka::future::Cache<(), V> {
    moka::future::Cache::builder()
        .max_capacity(1)
        .time_to_live(ttl)
        .build()
}

async fn stock_counts(state: &AppState) -> Result<Arc<StockCounts>> {
    if let Some(counts) = state.dashboard.stock.get(&()).await {
        return Ok(counts);
    }
    let counts = Arc::new(StockCounts {
        expiring: expiring_lots(state).await?,
        counted_at: state.clock.now().format("%H:%M:%S").to_string(),
    });
    state.dashboard.stock.insert((), counts.clone()).await;
    Ok(counts)
}

/// How many customers a campaign reaches, and when that was counted (kept a minute).
pub(super) async fn campaign_audience(state: &AppState) -> Result<(i64, String)> {
    if let Some(audience) = state.dashboard.audience.get(&()).await {
        return Ok(audience);
    }
    let audience = (
        crate::notify::api::campaign_audience(state).await?,
        state.clock.now().format("%H:%M:%S").to_string(),
    );
    state.dashboard.audience.insert((), audience.clone()).await;
    Ok(audience)
}

async fn dashboard(State(state): State<AppState>, SignedIn(staff, admin): SignedIn) -> Response {
    let panels = async {
        let mut panels = Vec::new();
        if staff.role.allows(Permission::OrdersRead) {
            let date = crate::time::format_date(state.clock.now().date_naive());
            panels.push(orders_panel(&todays_orders(&state, &date).await?, &date));
            let link = super::may(staff.role, &Method::GET, "/admin/subscriptions");
            panels.push(renewals_panel(failed_renewals(&state).await?, link));
        }
        if staff.role.allows(Permission::InventoryRead) {
            let counts = stock_counts(&state).await?;
            panels.push(lots_panel(&staff, &counts.expiring, &counts.counted_at));
            let out = out_of_stock(&state).await?;
            panels.push(stock_panel(&staff, out.active_variants(), &out.counted_at));
        }
        if staff.role.allows(Permission::OperationsRead) {
            panels.push(dead_letters_panel(dead_letters(&state).await?));
        }
        if staff.role.allows(Permission::PluginsRead) {
            panels.push(plugins_panel(&staff, &auto_disabled_plugins(&state).await?));
        }
        Ok::<_, crate::Error>(panels)
    };
    let panels = match panels.await {
        Ok(panels) => panels,
        Err(err) => return layout::error_page(&err, "dashboard"),
    };
    let body = html! {
        h1 { "Dashboard" }
        div.panels { @for panel in &panels { (panel) } }
    };
    layout::page(&staff, admin.csrf_input(), "Dashboard", "/admin", body)
}

/// `date`: today, as the orders list's filter takes it.
fn orders_panel(today: &[TodaysOrders], date: &str) -> Markup {
    html! {
        section.panel #today-orders {
            h2 { "Today's orders" }
            @if today.is_empty() {
                p.count { "0" } p { "No orders yet today." }
            }
            @for t in today {
                p.count.orders-placed { (t.placed) }
                p { "orders placed, " span.orders-paid { (t.paid) } " paid: "
                    strong.revenue { (layout::money(t.revenue_minor, &t.currency)) } " revenue" }
            }
            p.hint { "Revenue: today's orders whose payment was taken (paid, and since shipped, delivered or refunded), less what was refunded of them; pending and cancelled orders bring in nothing." }
            p { a href={ "/admin/orders?from=" (date) "&to=" (date) } { "Today's orders" } " · " a href="/admin/orders" { "All orders" } }
        }
    }
}

fn lots_panel(staff: &Staff, counts: &[(i64, i64); 3], counted_at: &str) -> Markup {
    let link = super::may(staff.role, &Method::GET, "/admin/lots");
    html! {
        section.panel #expiring-lots {
            h2 { "Lots expiring" }
            ul.counts {
                @for (days, count) in counts {
                    li {
                        @if link { a href={ "/admin/lots?expiring=" (days) } { strong { (count) } " within " (days) " days" } }
                        @else { strong { (count) } " within " (days) " days" }
                    }
                }
            }
            p.hint { "Counted at " (counted_at) " UTC." }
        }
    }
}

fn stock_panel(staff: &Staff, count: i64, counted_at: &str) -> Markup {
    let link = super::may(staff.role, &Method::GET, "/admin/products");
    html! {
        section.panel #out-of-stock {
            h2 { "Out of stock" }
            p.count { (count) }
            p { "variants of active products without a unit that sells today (recalled, expired and short-dated lots do not count)" }
            @if link { p { a href="/admin/products?status=active&stock=out" { "Products out of stock" } } }
            p.hint { "Counted at " (counted_at) " UTC." }
        }
    }
}

fn renewals_panel(count: i64, link: bool) -> Markup {
    html! {
        section.panel #failed-renewals {
            h2 { "Failed renewals" }
            p.count { (count) }
            p { "subscriptions whose payment was declined, being retried" }
            @if link { p { a href="/admin/subscriptions?failing=yes" { "Failing subscriptions" } } }
        }
    }
}

fn dead_letters_panel(count: i64) -> Markup {
    html! {
        section.panel #dead-letters {
            h2 { "Dead-lettered events" }
            p.count { (count) }
            p { "events a consumer gave up on, waiting to be replayed" }
            p { a href="/admin/operations#dead-letters" { "Dead letters and dead jobs" } }
        }
    }
}

fn plugins_panel(staff: &Staff, disabled: &[(String, String)]) -> Markup {
    let link = super::may(staff.role, &Method::GET, "/admin/plugins");
    html! {
        section.panel #disabled-plugins {
            h2 { "Plugins turned off after failures" }
            p.count { (disabled.len()) }
            @if !disabled.is_empty() {
                ul { @for (id, reason) in disabled { li { strong { (id) } ": " (reason) } } }
            }
            @if link { p { a href="/admin/plugins" { "Plugins" } } }
        }
    }
}
