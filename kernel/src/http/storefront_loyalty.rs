//! The customer's loyalty points in the storefront: what they can spend and what it is
//! worth, what is pending and until when, when the balance expires, and every entry
//! with its reason. The page reads [`crate::loyalty::summary`], the API's own answer.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::html;

use super::session::Customer;
use super::storefront_account::{account_page_response, server_error};
use super::storefront_cart::money;
use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/account/points", get(points_page))
}

/// `2026-12-04T10:00:00.000Z` as `2026-12-04`.
fn day(timestamp: &str) -> &str {
    timestamp.get(..10).unwrap_or(timestamp)
}

async fn points_page(State(state): State<AppState>, Customer(customer): Customer) -> Response {
    let summary = match crate::loyalty::summary(&state, customer.customer_id).await {
        Ok(summary) => summary,
        Err(err) => return server_error(&err, "points"),
    };
    let now = state.clock.now_text();
    let body = html! {
        header.page-head {
            p { a href="/account" { "Account" } }
            h1 { "Points" }
        }
        section.panel {
            dl.facts {
                dt { "To spend" }
                dd #points-balance data-points=(summary.balance) {
                    (summary.balance) " points"
                    @if let Some(currency) = &summary.currency {
                        @if summary.point_value_minor > 0 {
                            span.muted { " (worth " (money(summary.balance_value_minor, currency)) ")" }
                        }
                    }
                }
                dt { "On their way" }
                dd #points-pending data-points=(summary.pending) { (summary.pending) " points" }
                @if let Some(expires) = &summary.expires_at {
                    dt { "Expire" } dd { "on " (day(expires)) " unless you order before" }
                }
            }
            @if summary.point_value_minor > 0 {
                p.muted {
                    "Spend at least " (summary.min_redeem_points) " points at checkout, on up to "
                    (summary.max_redeem_percent) " % of an order's goods. Points from an order can be spent once its return period is over."
                }
            }
        }
        @if summary.entries.is_empty() {
            section.message { p { "No points yet: every order earns some." } }
        } @else {
            table.cart-lines #points-history {
                thead {
                    tr {
                        th scope="col" { "Date" }
                        th scope="col" { "What for" }
                        th scope="col" { "Points" }
                        th scope="col" { "State" }
                    }
                }
                tbody {
                    @for entry in &summary.entries {
                        tr data-kind=(entry.kind) {
                            td { (day(&entry.created_at)) }
                            td {
                                (entry.reason)
                                @if let Some(number) = &entry.order_number {
                                    br; a.order-link href={ "/account/orders/" (number) } { (number) }
                                }
                            }
                            td { @if entry.points > 0 { "+" } (entry.points) }
                            td {
                                @if entry.state == "pending" && entry.available_at.as_str() > now.as_str() {
                                    "pending until " (day(&entry.available_at))
                                } @else {
                                    (entry.state)
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    account_page_response(&state, StatusCode::OK, "Points", body).await
}
