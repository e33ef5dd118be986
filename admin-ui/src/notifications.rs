//! Notifications: the delivery log (newest first, by state, customer and topic), one
//! notification with every delivery attempt and sending it again; and the templates of
//! every topic on every channel, each edited in a form (title, text, HTML, link, on or
//! off). Through `notify::api::{list, load_view, templates_of, save_template}` and
//! `notify::resend`, as the admin API's routes are.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::html;

use super::layout::{self, Form, FormErrors, Kind, PagePath, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::notify::api::{NotificationFilter, NotificationStatus};
use crate::notify::templates::Template;
use crate::staff::Staff;

const SECTION: &str = "/admin/notifications";
const TEMPLATES: &str = "/admin/notification-templates";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(log_page))
        .route("/admin/notifications/{id}", get(notification_page))
        .route("/admin/notifications/{id}/resend", post(resend))
        .route(TEMPLATES, get(templates_page))
        .route(
            "/admin/notification-templates/{topic}/{channel}",
            get(template_page).post(save_template),
        )
}

const STATUSES: &[(&str, &str)] = &[
    ("", "Any state"),
    ("pending", "Pending"),
    ("delivered", "Delivered"),
    ("failed", "Failed"),
    ("gone", "Device gone"),
    ("skipped", "Skipped"),
];

fn status_of(text: &str) -> Option<NotificationStatus> {
    Some(match text {
        "pending" => NotificationStatus::Pending,
        "delivered" => NotificationStatus::Delivered,
        "failed" => NotificationStatus::Failed,
        "gone" => NotificationStatus::Gone,
        "skipped" => NotificationStatus::Skipped,
        _ => return None,
    })
}

async fn log_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let value = |name| layout::query_value(query.as_deref(), name).unwrap_or_default();
    let (status, customer, topic) = (value("status"), value("customer"), value("topic"));
    let some = |v: &String| Some(v.clone()).filter(|v| !v.is_empty());
    let filter = NotificationFilter {
        status: status_of(&status),
        customer: some(&customer),
        topic: some(&topic),
        before_id: value("before_id").parse().ok(),
        limit: Some(50),
    };
    let (page, errors) = match crate::notify::api::list(&state, &filter).await {
        Ok(page) => (Some(page), FormErrors::default()),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => (None, errors),
            None => return layout::error_page(&err, "notifications"),
        },
    };
    let older = page.as_ref().and_then(|p| p.next_before_id).map(|id| {
        let mut link = form_urlencoded::Serializer::new(String::new());
        for (key, v) in [
            ("status", &status),
            ("customer", &customer),
            ("topic", &topic),
        ] {
            if !v.is_empty() {
                link.append_pair(key, v);
            }
        }
        link.append_pair("before_id", &id.to_string());
        format!("{SECTION}?{}", link.finish())
    });
    let may_templates = super::may(staff.role, &Method::GET, TEMPLATES);
    let body = html! {
        div.title-row {
            h1 { "Notifications" }
            @if may_templates { a.button href=(TEMPLATES) { "Templates" } }
        }
        (form_alert(&errors))
        form.filters method="get" action=(SECTION) role="search" {
            (field("State", "status", Kind::Select(STATUSES), &status, &errors))
            (field_with_hint("Customer", "customer", Kind::Text, &customer, Some("Their pseudonym, c_…"), &errors))
            (field_with_hint("Topic", "topic", Kind::Text, &topic, Some("e.g. order.shipped"), &errors))
            button.button type="submit" { "Filter" }
        }
        @let list = page.as_ref().map(|p| p.notifications.as_slice()).unwrap_or_default();
        @if list.is_empty() { p.empty { "No notification matches." } }
        @else {
            table {
                caption.visually-hidden { "Notifications, newest first" }
                thead { tr { th scope="col" { "Made" } th scope="col" { "Topic" } th scope="col" { "Channel" }
                    th scope="col" { "To" } th scope="col" { "State" } th scope="col" class="num" { "Attempts" } } }
                tbody {
                    @for n in list {
                        tr {
                            td { a href={ (SECTION) "/" (n.id) } { (n.created_at) } }
                            td { (n.topic) @if n.marketing { " " small { "(marketing)" } } }
                            td { (n.channel) " " small { (n.plugin_id) } }
                            td { @if let Some(c) = &n.customer { a href={ "/admin/customers/" (c) } { code { (c) } } } @else { (n.recipient) } }
                            td { span class={ "badge " (n.status) } { (n.status) }
                                @if let Some(e) = &n.last_error { br; small { (e) } } }
                            td.num { (n.attempts) }
                        }
                    }
                }
            }
        }
        @if let Some(older) = older { nav.pager aria-label="Pages" { a rel="next" href=(older) { "Older →" } } }
    };
    layout::page_with_status(
        errors.status(),
        &staff,
        admin.csrf_input(),
        "Notifications",
        SECTION,
        body,
    )
}

async fn notification_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
    RawQuery(query): RawQuery,
) -> Response {
    let n = match crate::notify::api::load_view(&state, id).await {
        Ok(n) => n,
        Err(err) => return layout::error_page(&err, "notification"),
    };
    let resent = layout::query_value(query.as_deref(), "done").is_some();
    let may_resend = super::may(
        staff.role,
        &Method::POST,
        "/admin/notifications/{id}/resend",
    );
    let attempts = n.delivery_attempts.clone().unwrap_or_default();
    let body = html! {
        p.crumbs { a href=(SECTION) { "Notifications" } }
        h1 { (n.topic) " by " (n.channel) }
        @if resent { p.form-notice role="status" { "Sent again: this is the new notification." } }
        dl {
            dt { "State" } dd { span class={ "badge " (n.status) } { (n.status) } }
            dt { "To" } dd { (n.recipient) @if let Some(c) = &n.customer { " (" a href={ "/admin/customers/" (c) } { (c) } ")" } }
            dt { "Channel" } dd { (n.channel) " through " code { (n.plugin_id) } }
            dt { "Made" } dd { (n.created_at) @if let Some(h) = &n.held_until { "; held until " (h) " (quiet hours)" } }
            @if let Some(at) = &n.delivered_at { dt { "Delivered" } dd { (at) } }
            @if let Some(r) = &n.provider_reference { dt { "Provider's reference" } dd { code { (r) } } }
            dt { "Title" } dd { (n.title) }
            dt { "Text" } dd { (n.text) }
            @if let Some(link) = &n.link { dt { "Link" } dd { (link) } }
        }
        h2 { "Delivery attempts" }
        @if attempts.is_empty() { p.empty { "None yet." } }
        @else {
            table {
                thead { tr { th scope="col" class="num" { "#" } th scope="col" { "When" } th scope="col" { "Outcome" } th scope="col" { "Detail" } } }
                tbody { @for a in &attempts { tr { td.num { (a.attempt) } td { (a.at) } td { (a.outcome) } td { (a.detail) } } } }
            }
        }
        @if may_resend {
            form method="post" action={ (SECTION) "/" (n.id) "/resend" } {
                (admin.csrf_input())
                button.button type="submit" { "Send it again" }
            }
        }
    };
    layout::page(&staff, admin.csrf_input(), "Notification", SECTION, body)
}

async fn resend(
    State(state): State<AppState>,
    SignedIn(staff, _): SignedIn,
    PagePath(id): PagePath<i64>,
) -> Response {
    match crate::notify::resend(&state, id, &staff.actor).await {
        Ok(new_id) => layout::see_other(&format!("{SECTION}/{new_id}?done=resent")),
        Err(err) => layout::error_page(&err, "resend"),
    }
}

// ---- templates -----------------------------------------------------------------------------

async fn templates_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let list = match crate::notify::api::templates_of(&state).await {
        Ok(list) => list,
        Err(err) => return layout::error_page(&err, "templates"),
    };
    let saved = layout::query_value(query.as_deref(), "done").is_some();
    let body = html! {
        p.crumbs { a href=(SECTION) { "Notifications" } }
        h1 { "Notification templates" }
        @if saved { p.form-notice role="status" { "Saved: the next notification of this topic uses it." } }
        table {
            caption.visually-hidden { "Templates by topic and channel" }
            thead { tr { th scope="col" { "Topic" } th scope="col" { "Channel" } th scope="col" { "Title" } th scope="col" { "State" } } }
            tbody {
                @for t in &list {
                    tr {
                        td { code { (t.topic) } br; small { (t.description) } }
                        td { (t.channel) }
                        td { a href={ (TEMPLATES) "/" (t.topic) "/" (t.channel) } { (t.template.title) } }
                        td { @if !t.template.enabled { span.badge.archived { "off" } } @else { span.badge.active { "on" } }
                            @if t.customised { " " small { "(the store's own)" } } }
                    }
                }
            }
        }
    };
    layout::page(
        &staff,
        admin.csrf_input(),
        "Notification templates",
        SECTION,
        body,
    )
}

async fn template_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath((topic, channel)): PagePath<(String, String)>,
) -> Response {
    let list = match crate::notify::api::templates_of(&state).await {
        Ok(list) => list,
        Err(err) => return layout::error_page(&err, "template"),
    };
    let Some(view) = list
        .into_iter()
        .find(|t| t.topic == topic && t.channel == channel)
    else {
        return layout::not_found_page();
    };
    let t = &view.template;
    let form = Form::from_pairs(vec![
        ("title".to_owned(), t.title.clone()),
        ("text".to_owned(), t.text.clone()),
        ("html".to_owned(), t.html.clone().unwrap_or_default()),
        ("link".to_owned(), t.link.clone().unwrap_or_default()),
        (
            "enabled".to_owned(),
            if t.enabled { "yes" } else { "" }.to_owned(),
        ),
    ]);
    template_form(
        &staff,
        &admin,
        &topic,
        &channel,
        &form,
        &FormErrors::default(),
    )
}

fn template_form(
    staff: &Staff,
    admin: &AdminSession,
    topic: &str,
    channel: &str,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let body = html! {
        p.crumbs { a href=(TEMPLATES) { "Notification templates" } }
        h1 { code { (topic) } " by " (channel) }
        p.hint { "Placeholders such as {{order_number}} and {{tracking_number}} are filled in for each "
            "customer; an unknown one is refused." }
        (form_alert(errors))
        form method="post" action={ (TEMPLATES) "/" (topic) "/" (channel) } novalidate {
            (admin.csrf_input())
            (field_with_hint("Title", "title", Kind::Text, form.get("title"), Some("An email's subject; a push notification's title."), errors))
            (field("Text", "text", Kind::Area(6), form.get("text"), errors))
            @if channel == "email" {
                (field_with_hint("HTML", "html", Kind::Area(8), form.get("html"), Some("Empty: the text, escaped."), errors))
            }
            (field_with_hint("Link", "link", Kind::Text, form.get("link"), Some("A path on the shop (/account/orders) or an https URL; empty: none."), errors))
            div.field {
                label { input type="checkbox" name="enabled" value="yes" checked[form.get("enabled") == "yes"];
                    " Send this topic on this channel" }
            }
            button.button.primary type="submit" { "Save the template" }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Notification template",
        SECTION,
        body,
    )
}

async fn save_template(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath((topic, channel)): PagePath<(String, String)>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let optional = |name: &str| Some(form.get(name).to_owned()).filter(|v| !v.trim().is_empty());
    let template = Template {
        title: form.get("title").to_owned(),
        text: form.get("text").to_owned(),
        html: optional("html"),
        link: optional("link"),
        enabled: form.get("enabled") == "yes",
    };
    match crate::notify::api::save_template(&state, &staff.actor, &topic, &channel, &template).await
    {
        Ok(()) => layout::see_other(&format!("{TEMPLATES}?done=saved")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => template_form(&staff, &admin, &topic, &channel, &form, &errors),
            None => layout::error_page(&err, "template"),
        },
    }
}
