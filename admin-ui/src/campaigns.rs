//! Campaigns: a promotional message to every customer who consented to marketing. Staff
//! write it, see a preview with how many customers it reaches, and confirm; the campaigns
//! sent are listed with their notifications by state. Through `notify::send_campaign` and
//! `notify::api::{campaigns, campaign_audience}`, as the admin API's routes are (audited;
//! the bus turns the campaign into one notification per customer and channel).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use maud::html;

use super::layout::{self, Form, FormErrors, Kind, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::error::Error;
use crate::notify::api::CampaignInput;
use crate::staff::Staff;

const SECTION: &str = "/admin/campaigns";

pub fn routes() -> Router<AppState> {
    Router::new().route(SECTION, get(list_page).post(send))
}

const NOTICES: &[(&str, &str)] = &[(
    "sent",
    "Sent: the notifications are being made and delivered; their states show below.",
)];

fn input_from(form: &Form) -> CampaignInput {
    let optional = |name| {
        let value = form.get(name).trim();
        (!value.is_empty()).then(|| value.to_owned())
    };
    CampaignInput {
        title: form.get("title").to_owned(),
        text: form.get("text").to_owned(),
        html: optional("html"),
        link: optional("link"),
    }
}

async fn list_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let notice = layout::notice(query.as_deref(), NOTICES);
    list(
        &state,
        &staff,
        &admin,
        notice,
        &Form::default(),
        &FormErrors::default(),
    )
    .await
}

async fn list(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    notice: Option<&str>,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let loaded = async {
        Ok::<_, Error>((
            super::dashboard::campaign_audience(state).await?,
            crate::notify::api::campaigns(state, 50).await?,
        ))
    };
    let ((audience, counted_at), campaigns) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "campaigns"),
    };
    let body = html! {
        h1 { "Campaigns" }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        section {
            h2 { "Write a campaign" }
            p.hint #audience { "It reaches " strong { (audience) } " customer(s) (counted at " (counted_at) "): those who agreed to marketing by email or push. "
                "Each gets it on the channels they agreed to, outside their quiet hours." }
            (form_alert(errors))
            form method="post" action=(SECTION) novalidate {
                (admin.csrf_input())
                (field("Title (the email's subject and the push title)", "title", Kind::Text, form.get("title"), errors))
                (field("Message", "text", Kind::Area(6), form.get("text"), errors))
                (field_with_hint("HTML version (optional)", "html", Kind::Area(6), form.get("html"),
                    Some("Left empty, the email shows the message as plain text."), errors))
                (field_with_hint("Link (optional)", "link", Kind::Text, form.get("link"),
                    Some("An http or https address the push opens."), errors))
                button.button.primary type="submit" { "Preview" }
            }
        }
        section {
            h2 { "Sent" }
            @if campaigns.is_empty() {
                p.empty { "No campaign sent yet." }
            } @else {
                table {
                    thead { tr { th { "Title" } th { "Sent" } th { "By" } th { "Notifications" } } }
                    tbody {
                        @for c in &campaigns {
                            tr id={ "campaign-" (c.id) } {
                                td { (c.title) }
                                td { (c.created_at) }
                                td { (c.created_by) }
                                td {
                                    @if c.notifications.is_empty() { "being made" }
                                    @for (status, count) in &c.notifications {
                                        span class={ "badge " (status) } { (status) " " (count) } " "
                                    }
                                    " "
                                    a href={ "/admin/notifications?topic=campaign" } { "log" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Campaigns",
        SECTION,
        body,
    )
}

/// First the preview (nothing is sent), then, confirmed, the campaign.
async fn send(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let input = input_from(&form);
    if let Err(err) = input.check() {
        return match FormErrors::from_error(&err) {
            Some(errors) => list(&state, &staff, &admin, None, &form, &errors).await,
            None => layout::error_page(&err, "campaign"),
        };
    }
    if !form.confirmed() {
        return preview(&state, &staff, &admin, &input).await;
    }
    match crate::notify::send_campaign(&state, &staff.actor, &input).await {
        Ok(_) => layout::see_other(&format!("{SECTION}?done=sent")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => list(&state, &staff, &admin, None, &form, &errors).await,
            None => layout::error_page(&err, "campaign"),
        },
    }
}

async fn preview(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    input: &CampaignInput,
) -> Response {
    let (audience, counted_at) = match super::dashboard::campaign_audience(state).await {
        Ok(audience) => audience,
        Err(err) => return layout::error_page(&err, "campaign"),
    };
    let body = html! {
        p.crumbs { a href=(SECTION) { "Campaigns" } }
        h1 { "Send this campaign?" }
        article.variant #preview {
            h2 { (input.title) }
            p { (input.text) }
            @if let Some(link) = &input.link { p { "Link: " code { (link) } } }
            @if input.html.is_some() { p.hint { "With an HTML version for email." } }
        }
        p { "It goes to every customer who agreed to marketing when it is sent: "
            strong #preview-audience { (audience) } " at " (counted_at) ". It cannot be taken back." }
        form method="post" action=(SECTION) {
            (admin.csrf_input())
            input type="hidden" name="title" value=(input.title);
            input type="hidden" name="text" value=(input.text);
            input type="hidden" name="html" value=(input.html.as_deref().unwrap_or(""));
            input type="hidden" name="link" value=(input.link.as_deref().unwrap_or(""));
            input type="hidden" name="confirm" value="yes";
            div.actions {
                button.button.primary type="submit" { "Send it" }
                a.button href=(SECTION) { "Back" }
            }
        }
    };
    layout::page(staff, admin.csrf_input(), "Send a campaign", SECTION, body)
}
