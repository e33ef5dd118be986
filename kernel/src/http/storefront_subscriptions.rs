//! The customer's subscriptions in the storefront: the list, and each subscription with
//! its items, the next renewal's date and cost, past renewals with their orders, and
//! forms for what its state allows (skip and unskip, pause and resume, renew now, move
//! the date, cancel with a reason). Each form posts one [`Action`] through
//! [`crate::subscriptions::act`], the API's own path; an action the state does not allow
//! shows the API's 409 message on the page.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};

use super::session::{Customer, Session, see_other};
use super::storefront_account::{Form, account_page_response, sentence, server_error};
use super::storefront_cart::money;
use crate::app::AppState;
use crate::error::Error;
use crate::subscriptions::{self, Action, Status, Subscription};

const SUBSCRIPTIONS: &str = "/account/subscriptions";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SUBSCRIPTIONS, get(list_page))
        .route("/account/subscriptions/{number}", get(detail_page))
        .route(
            "/account/subscriptions/{number}/actions",
            post(action_submit),
        )
}

fn status_text(status: Status) -> &'static str {
    match status {
        Status::Active => "active",
        Status::Paused => "paused",
        Status::Cancelled => "cancelled",
    }
}

/// `30d` → "every 30 days".
pub(super) fn every(interval: &str) -> String {
    let (count, unit) = interval.split_at(interval.len().saturating_sub(1));
    let unit = match (unit, count) {
        ("d", "1") => "day",
        ("d", _) => "days",
        ("w", "1") => "week",
        ("w", _) => "weeks",
        ("m", "1") => "month",
        _ => "months",
    };
    if count == "1" {
        format!("every {unit}")
    } else {
        format!("every {count} {unit}")
    }
}

fn date(text: &str) -> &str {
    text.get(..10).unwrap_or(text)
}

async fn list_page(State(state): State<AppState>, Customer(customer): Customer) -> Response {
    let list = match subscriptions::list_for_customer(&state, customer.customer_id).await {
        Ok(list) => list,
        Err(err) => return server_error(&err, "subscriptions"),
    };
    let body = html! {
        header.page-head {
            p { a href="/account" { "Account" } }
            h1 { "Subscriptions" }
        }
        @if list.is_empty() {
            section.message {
                p { "You have no subscriptions. Choose “Subscribe” on a product to have it delivered regularly." }
                p { a.button.primary href="/" { "Start shopping" } }
            }
        } @else {
            table.cart-lines.subscriptions {
                thead { tr {
                    th scope="col" { "Subscription" }
                    th scope="col" { "Delivered" }
                    th scope="col" { "Status" }
                    th scope="col" { "Next delivery" }
                } }
                tbody {
                    @for sub in &list {
                        tr {
                            td {
                                a.subscription-link href={ (SUBSCRIPTIONS) "/" (sub.number) } { (sub.number) }
                                @for item in &sub.items { br; span.muted { (item.quantity) " × " (item.title) } }
                            }
                            td { (every(&sub.interval)) }
                            td { (status_text(sub.status)) }
                            td {
                                @if sub.status == Status::Active {
                                    (date(&sub.next_renewal_at))
                                    @if sub.skip_next { br; span.muted { "(skipped)" } }
                                } @else { "—" }
                            }
                        }
                    }
                }
            }
        }
    };
    account_page_response(&state, StatusCode::OK, "Subscriptions", body).await
}

/// What a `done=` word in the address says happened.
fn notice(query: Option<&str>) -> Option<&'static str> {
    let done = form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "done")
        .map(|(_, value)| value.into_owned())?;
    Some(match done.as_str() {
        "skip" => "The next delivery is skipped.",
        "unskip" => "The next delivery is back on.",
        "pause" => "The subscription is paused.",
        "resume" => "The subscription is active again.",
        "renew_now" => "Your next delivery is on its way to being ordered now.",
        "cancel" => "The subscription is cancelled.",
        "change" => "The next delivery date was changed.",
        _ => return None,
    })
}

async fn detail_page(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(Path(number)) = path else {
        return super::storefront::not_found_page().into_response();
    };
    let sub = match subscriptions::get(&state, &number, Some(customer.customer_id)).await {
        Ok(sub) => sub,
        Err(Error::NotFound(_)) => return super::storefront::not_found_page().into_response(),
        Err(err) => return server_error(&err, "subscription"),
    };
    let body = details(&sub, &session, notice(query.as_deref()), None);
    account_page_response(
        &state,
        StatusCode::OK,
        &format!("Subscription {number}"),
        body,
    )
    .await
}

fn details(
    sub: &Subscription,
    session: &Session,
    done: Option<&str>,
    problem: Option<&str>,
) -> Markup {
    let csrf = session.csrf_input();
    let action_url = format!("{SUBSCRIPTIONS}/{}/actions", sub.number);
    let button = |action: &str, label: &str| {
        html! {
            form.inline method="post" action=(action_url) {
                (csrf) input type="hidden" name="action" value=(action);
                button.button type="submit" { (label) }
            }
        }
    };
    let open = sub.status != Status::Cancelled;
    html! {
        header.page-head {
            p { a href=(SUBSCRIPTIONS) { "Subscriptions" } }
            h1 { "Subscription " span #subscription-number { (sub.number) } }
        }
        @if let Some(done) = done { p.form-notice role="status" { (done) } }
        @if let Some(problem) = problem { p.form-alert role="alert" #subscription-problem { (problem) } }
        section.panel.subscription {
            dl.facts {
                dt { "Status" } dd #subscription-status data-status=(sub.status.as_str()) { (status_text(sub.status)) }
                dt { "Delivered" } dd { (every(&sub.interval)) }
                @if sub.status == Status::Active {
                    dt { "Next delivery" } dd #next-renewal {
                        (date(&sub.next_renewal_at))
                        @if sub.skip_next { " (skipped: the one after it is next)" }
                    }
                }
                @if let Some(until) = &sub.paused_until { dt { "Paused until" } dd { (date(until)) } }
                @if let Some(retry) = &sub.retry_at {
                    dt { "Payment" } dd.badge.badge-low { "Your last renewal was declined; we try again on " (date(retry)) ". A new card retries at once." }
                }
                @if let Some(reason) = &sub.cancel_reason { dt { "Cancelled because" } dd { (reason) } }
            }
            table.cart-lines {
                thead { tr { th scope="col" { "Product" } th scope="col" { "Quantity" } } }
                tbody { @for item in &sub.items { tr { td { (item.title) br; code.muted { (item.sku) } } td { (item.quantity) } } } }
            }
            @if let Some(next) = &sub.next_renewal {
                dl.facts #next-renewal-cost {
                    dt { "Goods" } dd { (money(next.goods_minor, &next.currency)) }
                    dt { "Shipping (" (sub.shipping_method) ")" } dd { (money(next.shipping_minor, &next.currency)) }
                    dt { strong { "Next delivery costs" } } dd #next-renewal-total { strong { (money(next.total_minor, &next.currency)) } }
                    @if let Some(problem) = &next.problem { dt.muted { "Note" } dd.muted { (problem) } }
                }
            }
        }
        @if open {
            section.panel.subscription-actions {
                h2 { "Change it" }
                div.address-actions {
                    @if sub.status == Status::Active {
                        @if sub.skip_next { (button("unskip", "Don't skip the next delivery")) }
                        @else { (button("skip", "Skip the next delivery")) }
                        (button("renew_now", "Order the next delivery now"))
                        (button("pause", "Pause"))
                    } @else {
                        (button("resume", "Resume"))
                    }
                }
                form method="post" action=(action_url) {
                    (csrf) input type="hidden" name="action" value="change";
                    div.field {
                        label for="next_renewal_on" { "Move the next delivery to" }
                        input #next_renewal_on type="date" name="next_renewal_on" required;
                    }
                    button.button type="submit" { "Change the date" }
                }
                form method="post" action=(action_url) {
                    (csrf) input type="hidden" name="action" value="cancel";
                    div.field {
                        label for="reason" { "Why are you cancelling?" }
                        input #reason type="text" name="reason" maxlength="200" required;
                    }
                    button.button type="submit" { "Cancel the subscription" }
                }
            }
        }
        @if !sub.renewals.is_empty() {
            section.panel {
                h2 { "Past deliveries" }
                table.cart-lines.renewals {
                    thead { tr { th scope="col" { "Date" } th scope="col" { "What happened" } th scope="col" { "Order" } } }
                    tbody {
                        @for renewal in &sub.renewals {
                            tr {
                                td { (date(&renewal.at)) }
                                td {
                                    (match renewal.outcome.as_str() {
                                        "paid" => "ordered and paid",
                                        "placed" => "ordered, payment in progress",
                                        "declined" => "payment declined",
                                        "skipped" => "skipped",
                                        "out_of_stock" => "skipped: out of stock",
                                        other => other,
                                    })
                                    @if let Some(message) = &renewal.message { br; span.muted { (message) } }
                                }
                                td { @if let Some(order) = &renewal.order_number { a href={ "/account/orders/" (order) } { (order) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The form's action, as the API's.
fn action_from(form: &Form) -> Option<Action> {
    let text = |name: &str| Some(form.get(name).trim().to_owned()).filter(|v| !v.is_empty());
    Some(match form.get("action") {
        "skip" => Action::Skip,
        "unskip" => Action::Unskip,
        "pause" => Action::Pause {
            until: text("until"),
        },
        "resume" => Action::Resume,
        "renew_now" => Action::RenewNow,
        "cancel" => Action::Cancel {
            reason: form.get("reason").to_owned(),
        },
        "change" => Action::Change {
            next_renewal_on: Some(form.get("next_renewal_on").trim().to_owned()),
            interval: None,
            items: None,
            shipping_address: None,
        },
        _ => return None,
    })
}

async fn action_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let Ok(Path(number)) = path else {
        return super::storefront::not_found_page().into_response();
    };
    let form = Form::parse(&body);
    let Some(action) = action_from(&form) else {
        return see_other(&format!("{SUBSCRIPTIONS}/{number}"));
    };
    let name = form.get("action").to_owned();
    let refused = match subscriptions::act(
        &state,
        &customer.pseudonym,
        &number,
        Some(customer.customer_id),
        action,
    )
    .await
    {
        Ok(_) => return see_other(&format!("{SUBSCRIPTIONS}/{number}?done={name}")),
        Err(Error::NotFound(_)) => return super::storefront::not_found_page().into_response(),
        Err(Error::Conflict { message, .. }) => (StatusCode::CONFLICT, sentence(&message)),
        Err(Error::Validation(fields)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            fields
                .iter()
                .map(|f| sentence(&format!("{}: {}", f.field, f.message)))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Err(err) => return server_error(&err, "subscription"),
    };
    let sub = match subscriptions::get(&state, &number, Some(customer.customer_id)).await {
        Ok(sub) => sub,
        Err(err) => return server_error(&err, "subscription"),
    };
    let body = details(&sub, &session, None, Some(&refused.1));
    account_page_response(&state, refused.0, &format!("Subscription {number}"), body).await
}
