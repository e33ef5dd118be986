//! The customer's orders in the storefront: the list, and each order with its status,
//! lines, totals, shipping address and tracking number. The pages call
//! [`crate::orders`] directly; another customer's order (or a made-up number) is the 404
//! page, as in the API.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};

use super::account::{account_page_response, server_error};
use super::cart::money;
use crate::app::AppState;
use crate::error::Error;
use crate::http::session::Customer;
use crate::orders::{self, Order, OrderStatus};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account/orders", get(list_page))
        .route("/account/orders/{number}", get(order_page))
}

/// What a shopper reads for a status.
fn status_text(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "awaiting payment",
        OrderStatus::Paid => "paid",
        OrderStatus::Fulfilled => "shipped",
        OrderStatus::Delivered => "delivered",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Refunded => "refunded",
    }
}

fn status_badge(status: OrderStatus) -> Markup {
    let class = match status {
        OrderStatus::Paid | OrderStatus::Fulfilled | OrderStatus::Delivered => "badge badge-in",
        OrderStatus::Pending => "badge badge-low",
        OrderStatus::Cancelled | OrderStatus::Refunded => "badge badge-out",
    };
    html! {
        span #order-status class=(class) data-status=(status.as_str()) { (status_text(status)) }
    }
}

/// An order's status, lines, totals, address and tracking: the confirmation page and the
/// account's order page.
pub(super) fn order_details(order: &Order) -> Markup {
    let currency = order.currency.as_str();
    html! {
        section.panel.order {
            dl.facts {
                dt { "Status" } dd { (status_badge(order.status)) }
                dt { "Placed" } dd { (order.created_at.get(..10).unwrap_or(&order.created_at)) }
                @if let Some(tracking) = &order.tracking_number {
                    dt { "Tracking number" } dd { code #tracking-number { (tracking) } }
                }
            }
            table.cart-lines {
                thead {
                    tr {
                        th scope="col" { "Product" }
                        th scope="col" { "Quantity" }
                        th scope="col" { @if order.prices_include_tax { "VAT included" } @else { "Tax" } }
                        th scope="col" { "Total" }
                    }
                }
                tbody {
                    @for line in &order.lines {
                        tr {
                            td {
                                (line.title) br; code.muted { (line.sku) }
                                @for adjustment in &line.adjustments {
                                    br; span.muted { (adjustment.reason) " " (money(adjustment.amount_minor, currency)) }
                                }
                            }
                            td { (line.quantity) }
                            td { (money(line.tax_minor, currency)) }
                            td { (money(line.total_minor, currency)) }
                        }
                    }
                }
            }
            dl.facts {
                dt { "Subtotal" } dd { (money(order.subtotal_minor, currency)) }
                @if order.adjustments_minor != 0 {
                    dt { "Discounts and surcharges" } dd { (money(order.adjustments_minor, currency)) }
                }
                dt { "Shipping (" (order.shipping_method) ")" } dd { (money(order.shipping_minor, currency)) }
                @if !order.prices_include_tax {
                    dt { "Tax" } dd #order-tax { (money(order.tax_minor, currency)) }
                }
                dt { strong { "Total" } } dd #order-total { strong { (money(order.total_minor, currency)) } }
                @if order.prices_include_tax {
                    dt.muted { "Includes VAT (" (tax_percent(order.tax_rate_bp)) ")" } dd.muted #order-tax { (money(order.tax_minor, currency)) }
                }
                @if order.refunded_minor > 0 {
                    dt { "Refunded" } dd { (money(order.refunded_minor, currency)) }
                }
            }
            @if let Some(address) = &order.shipping_address {
                h2 { "Shipping to" }
                address {
                    (address.name) br;
                    (address.line1) br;
                    @if let Some(line2) = &address.line2 { (line2) br; }
                    (address.postal_code) " " (address.city) br;
                    @if let Some(region) = &address.region { (region) br; }
                    (crate::countries::name(&address.country).unwrap_or(&address.country))
                }
            }
        }
    }
}

async fn list_page(State(state): State<AppState>, Customer(customer): Customer) -> Response {
    let orders = match orders::list_for_customer(&state, customer.customer_id).await {
        Ok(orders) => orders,
        Err(err) => return server_error(&err, "orders"),
    };
    let body = html! {
        header.page-head {
            p { a href="/account" { "Account" } }
            h1 { "Orders" }
        }
        @if orders.is_empty() {
            section.message { p { "You have not ordered anything yet." } p { a.button.primary href="/" { "Start shopping" } } }
        } @else {
            table.cart-lines.orders {
                thead {
                    tr {
                        th scope="col" { "Order" }
                        th scope="col" { "Placed" }
                        th scope="col" { "Status" }
                        th scope="col" { "Total" }
                    }
                }
                tbody {
                    @for order in &orders {
                        tr {
                            td { a.order-link href={ "/account/orders/" (order.number) } { (order.number) } }
                            td { (order.created_at.get(..10).unwrap_or(&order.created_at)) }
                            td {
                                (status_text(order.status))
                                @if let Some(tracking) = &order.tracking_number { br; span.muted { "Tracking " (tracking) } }
                            }
                            td { (money(order.total_minor, &order.currency)) }
                        }
                    }
                }
            }
        }
    };
    account_page_response(&state, StatusCode::OK, "Orders", body).await
}

async fn order_page(
    State(state): State<AppState>,
    Customer(customer): Customer,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(number)) = path else {
        return super::catalog::not_found_page().into_response();
    };
    // Read before the order: the page's live script resumes from here, so a change made
    // after this read is heard of (or is on the page already).
    let live_from = state.bus.head();
    let order = match orders::get_for_customer(&state, customer.customer_id, &number).await {
        Ok(order) => order,
        Err(Error::NotFound(_)) => return super::catalog::not_found_page().into_response(),
        Err(err) => return server_error(&err, "order"),
    };
    let body = html! {
        header.page-head data-live-order=(order.number) data-live-position=(live_from) {
            p { a href="/account/orders" { "Orders" } }
            h1 { "Order " span #order-number { (order.number) } }
        }
        (order_details(&order))
        // Updates the status in place (the page shows it as of now without it).
        script src=(crate::http::security::live_script().path) integrity=(crate::http::security::live_script().integrity) defer {}
    };
    account_page_response(
        &state,
        StatusCode::OK,
        &format!("Order {}", order.number),
        body,
    )
    .await
}

/// A rate in basis points as a percentage: `2100` → `21 %`, `550` → `5.5 %`.
pub(super) fn tax_percent(rate_bp: i64) -> String {
    if rate_bp % 100 == 0 {
        format!("{} %", rate_bp / 100)
    } else {
        format!("{} %", rate_bp as f64 / 100.0)
    }
}
