//! The customer's loyalty points in the storefront: what they can spend and what it is
//! worth, what is pending and until when, when the balance expires, and every entry
//! with its reason, and the birthday for birthday rewards (a form on the page). The
//! page reads [`crate::loyalty::summary`], the API's own answer.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::html;

use super::account::{
    Form, FormErrors, account_page_response, form_alert, labelled_input, server_error, status_of,
};
use super::cart::money;
use crate::app::AppState;
use crate::http::session::{Customer, Session, see_other};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(POINTS, get(points_page))
        .route("/account/points/birthday", post(birthday_submit))
}

const POINTS: &str = "/account/points";

/// `2026-12-04T10:00:00.000Z` as `2026-12-04`.
fn day(timestamp: &str) -> &str {
    timestamp.get(..10).unwrap_or(timestamp)
}

async fn points_page(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
) -> Response {
    points_view(
        &state,
        &session,
        customer.customer_id,
        None,
        &FormErrors::default(),
    )
    .await
}

/// Sets the birthday (`MM-DD`), or forgets it when the field is left empty.
async fn birthday_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let text = form.get("birthday").trim();
    let input = crate::loyalty::birthdays::BirthdayInput {
        birthday: (!text.is_empty()).then(|| text.to_owned()),
    };
    match crate::loyalty::birthdays::set(&state, customer.customer_id, &input).await {
        Ok(()) => see_other(POINTS),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                points_view(&state, &session, customer.customer_id, Some(text), &errors).await
            }
            None => server_error(&err, "points"),
        },
    }
}

/// The page; `entered` is a refused birthday, shown again with its error.
async fn points_view(
    state: &AppState,
    session: &Session,
    customer_id: i64,
    entered: Option<&str>,
    errors: &FormErrors,
) -> Response {
    let summary = match crate::loyalty::summary(state, customer_id).await {
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
        section.panel #birthday {
            h2 { "Birthday" }
            p.muted { "Tell us your birthday (month and day, no year) for a birthday treat. A birthday given less than "
                (crate::loyalty::birthdays::NOTICE_DAYS) " days before it counts from next year. Leave it empty to forget it." }
            form method="post" action="/account/points/birthday" {
                (session.csrf_input())
                (form_alert(errors))
                (labelled_input("Birthday (MM-DD)", "birthday", "text",
                    entered.or(summary.birthday.as_deref()), "off", false, errors))
                button type="submit" { "Save birthday" }
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
    account_page_response(state, status_of(errors), "Points", body).await
}
