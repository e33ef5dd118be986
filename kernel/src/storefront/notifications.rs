//! The customer's notification settings in the storefront: email and push on or off,
//! the devices registered for push (removable), and the products they wait for; and the
//! "tell me when it is back" form of an out-of-stock product page. Every action is the
//! API's own domain function (`notify::devices`).

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};

use super::account::{Form, FormErrors, form_alert, labelled_input, status_of};
use super::account::{account_page_response, server_error};
use crate::app::AppState;
use crate::http::session::{Customer, Session, see_other};
use crate::notify::devices::{self, BackInStockInput, Preferences};
use crate::notify::quiet::QuietHours;

const PAGE: &str = "/account/notifications";
const BACK_IN_STOCK: &str = "/account/notifications/back-in-stock";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PAGE, get(page))
        .route(
            "/account/notifications/preferences",
            post(preferences_submit),
        )
        .route("/account/notifications/devices/remove", post(device_remove))
        .route(
            BACK_IN_STOCK,
            get(back_in_stock_page).post(back_in_stock_submit),
        )
        .route(
            "/account/notifications/back-in-stock/cancel",
            post(back_in_stock_cancel),
        )
}

async fn page(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
) -> Response {
    view(
        &state,
        &session,
        customer.customer_id,
        &FormErrors::default(),
    )
    .await
}

async fn preferences_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let preferences = Preferences {
        email: form.get("email") == "1",
        push: form.get("push") == "1",
        quiet_hours: (form.get("quiet") == "1").then(|| QuietHours {
            start: form.get("quiet_hours.start").trim().to_owned(),
            end: form.get("quiet_hours.end").trim().to_owned(),
            time_zone: form.get("quiet_hours.time_zone").trim().to_owned(),
        }),
    };
    match devices::set_preferences(&state, customer.customer_id, preferences).await {
        Ok(_) => see_other(PAGE),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => view(&state, &session, customer.customer_id, &errors).await,
            None => server_error(&err, "notifications"),
        },
    }
}

async fn device_remove(
    State(state): State<AppState>,
    Customer(customer): Customer,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let Ok(id) = form.get("device").trim().parse::<i64>() else {
        return see_other(PAGE);
    };
    match devices::remove(&state, customer.customer_id, id).await {
        // Gone already (removed in the app, or by the push service): the page shows it.
        Ok(()) | Err(crate::error::Error::NotFound(_)) => see_other(PAGE),
        Err(err) => server_error(&err, "notifications"),
    }
}

/// From a product page: wait for the product, then back to it.
async fn back_in_stock_submit(
    State(state): State<AppState>,
    Customer(customer): Customer,
    session: Session,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let input = BackInStockInput {
        product: form.get("product").trim().to_owned(),
    };
    match devices::request_back_in_stock(&state, customer.customer_id, &input).await {
        Ok(_) => see_other("/account/notifications#waiting"),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => view(&state, &session, customer.customer_id, &errors).await,
            None => server_error(&err, "notifications"),
        },
    }
}

async fn back_in_stock_cancel(
    State(state): State<AppState>,
    Customer(customer): Customer,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    match devices::cancel_back_in_stock(&state, customer.customer_id, form.get("product").trim())
        .await
    {
        Ok(()) => see_other(PAGE),
        Err(err) => server_error(&err, "notifications"),
    }
}

async fn view(
    state: &AppState,
    session: &Session,
    customer_id: i64,
    errors: &FormErrors,
) -> Response {
    let (preferences, devices, waiting) = match tokio::try_join!(
        devices::preferences(state, customer_id),
        devices::list(state, customer_id),
        devices::back_in_stock(state, customer_id),
    ) {
        Ok(all) => all,
        Err(err) => return server_error(&err, "notifications"),
    };
    let quiet = preferences.quiet_hours.as_ref();
    let body = html! {
        header.page-head {
            p { a href="/account" { "Account" } }
            h1 { "Notifications" }
        }
        (form_alert(errors))
        section.panel #channels {
            h2 { "How we tell you" }
            p.muted { "News of your orders, subscriptions and points. Offers are sent only with your consent ("
                a href="/account/privacy" { "privacy settings" } ")." }
            form method="post" action="/account/notifications/preferences" {
                (session.csrf_input())
                div.field.checkbox {
                    label { input type="checkbox" name="email" value="1" checked[preferences.email]; " By email" }
                }
                div.field.checkbox {
                    label { input type="checkbox" name="push" value="1" checked[preferences.push]; " On my phone (push notifications from our app)" }
                }
                fieldset.field #quiet-hours {
                    legend { "Quiet hours" }
                    p.muted { "Push notifications that come in this time wait until it ends. Email is not held." }
                    div.field.checkbox {
                        label { input type="checkbox" name="quiet" value="1" checked[quiet.is_some()]; " Keep my phone quiet" }
                    }
                    (labelled_input("From", "quiet_hours.start", "time",
                        Some(quiet.map_or("22:00", |q| q.start.as_str())), "off", false, errors))
                    (labelled_input("Until", "quiet_hours.end", "time",
                        Some(quiet.map_or("07:00", |q| q.end.as_str())), "off", false, errors))
                    (labelled_input("Time zone (such as Europe/Berlin)", "quiet_hours.time_zone", "text",
                        Some(quiet.map_or("UTC", |q| q.time_zone.as_str())), "off", false, errors))
                }
                button type="submit" { "Save" }
            }
        }
        section.panel #devices {
            h2 { "Devices" }
            @if devices.is_empty() {
                p.muted { "No device gets push notifications. Sign in to our app and allow notifications to add one." }
            } @else {
                ul {
                    @for device in &devices {
                        li {
                            (platform_label(&device.platform)) " · " (device.app_id) " · ending "
                            code { (device.token_ending) } " · since " (device.created_at.get(..10).unwrap_or(&device.created_at))
                            form.inline method="post" action="/account/notifications/devices/remove" {
                                (session.csrf_input())
                                input type="hidden" name="device" value=(device.id);
                                button type="submit" { "Remove" }
                            }
                        }
                    }
                }
            }
        }
        section.panel #waiting {
            h2 { "Back in stock" }
            @if waiting.is_empty() {
                p.muted { "You are not waiting for any product. An out-of-stock product's page lets you ask to be told when it is back." }
            } @else {
                ul {
                    @for slug in &waiting {
                        li {
                            a href={ "/p/" (slug) } { (slug) }
                            form.inline method="post" action="/account/notifications/back-in-stock/cancel" {
                                (session.csrf_input())
                                input type="hidden" name="product" value=(slug);
                                button type="submit" { "Stop waiting" }
                            }
                        }
                    }
                }
            }
        }
    };
    account_page_response(state, status_of(errors), "Notifications", body).await
}

fn platform_label(platform: &str) -> &'static str {
    match platform {
        "apns" => "Apple device",
        _ => "Android device",
    }
}

/// The out-of-stock product page's offer, the same for every visitor (the page is
/// shared): a link to [`back_in_stock_page`], which asks a visitor to sign in first.
pub(super) fn back_in_stock_offer(slug: &str) -> Markup {
    let product: String = form_urlencoded::byte_serialize(slug.as_bytes()).collect();
    html! {
        div.back-in-stock {
            a.button.wide href={ (BACK_IN_STOCK) "?product=" (product) } { "Tell me when it is back" }
        }
    }
}

/// "Tell me when it is back" for a signed-in customer: the product named by `?product=`
/// and the form that asks for it.
async fn back_in_stock_page(
    State(state): State<AppState>,
    Customer(_customer): Customer,
    session: Session,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let slug = query
        .as_deref()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "product"))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let product = match crate::catalog::cached_product(&state, &slug).await {
        Ok(Some(cached)) => cached,
        Ok(None) => return super::catalog::not_found_page().into_response(),
        Err(err) => return server_error(&err, "back in stock"),
    };
    let body = html! {
        section.panel {
            h1 { "Tell me when it is back" }
            p { "We will tell you by your notification settings when " strong { (product.product.name) } " is back in stock." }
            form method="post" action=(BACK_IN_STOCK) {
                (session.csrf_input())
                input type="hidden" name="product" value=(product.product.slug);
                button.button.primary type="submit" { "Tell me" }
            }
            p { a href={ "/p/" (product.product.slug) } { "Back to the product" } }
        }
    };
    account_page_response(
        &state,
        axum::http::StatusCode::OK,
        "Tell me when it is back",
        body,
    )
    .await
}
