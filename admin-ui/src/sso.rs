//! Single sign-on settings: the store's OpenID Connect provider (name on the button,
//! issuer, client id, the write-only client secret, the groups claim) and the mapping
//! from the provider's groups to roles, a line each; turning it off (after a
//! confirmation). Through
//! `staff::sso::{settings, save_settings, remove_settings}`, as the admin API's
//! `/staff/sso` routes are (the owner's, audited).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::html;

use super::layout::{self, Form, FormErrors, Kind, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::staff::sso::{self, GroupRole, SsoSettingsInput};
use crate::staff::{Role, Staff};

const SECTION: &str = "/admin/staff/sso";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(sso_page).post(save))
        .route("/admin/staff/sso/remove", post(remove))
}

/// What the page says after each change.
const DONE: &[(&str, &str)] = &[
    ("saved", "Saved: the sign-in page offers the provider."),
    (
        "removed",
        "Single sign-on is off; sessions made through it stay until they end.",
    ),
];

async fn sso_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let form = match sso::settings(&state).await {
        Ok(s) => Form::from_pairs(vec![
            ("display_name".to_owned(), s.display_name),
            ("issuer_url".to_owned(), s.issuer_url),
            ("client_id".to_owned(), s.client_id),
            ("groups_claim".to_owned(), s.groups_claim),
            (
                "role_mapping".to_owned(),
                s.role_mapping
                    .iter()
                    .map(|line| format!("{} = {}", line.group, line.role.name()))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            ("secret_set".to_owned(), s.client_secret_set.to_string()),
            ("redirect_url".to_owned(), s.redirect_url),
        ]),
        Err(Error::NotFound(_)) => Form::from_pairs(vec![
            ("groups_claim".to_owned(), "groups".to_owned()),
            ("redirect_url".to_owned(), sso::redirect_url(&state)),
        ]),
        Err(err) => return layout::error_page(&err, "single sign-on"),
    };
    let notice = layout::notice(query.as_deref(), DONE);
    show(&staff, &admin, &form, notice, &FormErrors::default())
}

fn show(
    staff: &Staff,
    admin: &AdminSession,
    form: &Form,
    notice: Option<&str>,
    errors: &FormErrors,
) -> Response {
    let configured = !form.get("client_id").is_empty() && form.get("secret_set") == "true";
    let body = html! {
        p.crumbs { a href="/admin/staff" { "Staff" } }
        h1 { "Single sign-on" }
        @if let Some(notice) = notice { p.form-notice role="status" { (notice) } }
        p { "Staff sign in through the store's OpenID Connect provider (Okta, Entra ID, Keycloak…). "
            "Register this redirect URL with it: " code #redirect-url { (form.get("redirect_url")) } }
        (form_alert(errors))
        form method="post" action=(SECTION) novalidate {
            (admin.csrf_input())
            input type="hidden" name="redirect_url" value=(form.get("redirect_url"));
            (field_with_hint("Provider's name", "display_name", Kind::Text, form.get("display_name"),
                Some("The button says \"Sign in with\" it."), errors))
            (field_with_hint("Issuer URL", "issuer_url", Kind::Text, form.get("issuer_url"),
                Some("Exactly as the ID tokens' iss, e.g. https://example.okta.com/oauth2/default."), errors))
            (field("Client id", "client_id", Kind::Text, form.get("client_id"), errors))
            (field_with_hint("Client secret", "client_secret", Kind::Secret, "",
                Some(if configured { "Stored encrypted and never shown. Empty: keep it." } else { "Stored encrypted and never shown." }), errors))
            (field_with_hint("Groups claim", "groups_claim", Kind::Text, form.get("groups_claim"),
                Some("The ID token claim that lists the staff member's groups."), errors))
            (field_with_hint("Groups and roles", "role_mapping", Kind::Area(5), form.get("role_mapping"),
                Some("A line each, tried in order: group = role (owner, admin, catalog or support). Someone in none of these groups cannot sign in."), errors))
            button.button.primary type="submit" { "Save" }
        }
        @if configured {
            form method="post" action="/admin/staff/sso/remove" {
                (admin.csrf_input())
                button.button.danger type="submit" { "Turn single sign-on off" }
            }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Single sign-on",
        "/admin/staff",
        body,
    )
}

/// The mapping's lines (`group = role`), or the line that cannot be read.
fn mapping_of(text: &str) -> Result<Vec<GroupRole>> {
    let mut mapping = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || {
            Error::invalid(
                "role_mapping",
                format!(
                    "line {}: write group = role, the role one of owner, admin, catalog, support",
                    i + 1
                ),
            )
        };
        let (group, role) = line.rsplit_once('=').ok_or_else(bad)?;
        let role = Role::parse(role.trim()).ok_or_else(bad)?;
        mapping.push(GroupRole {
            group: group.trim().to_owned(),
            role,
        });
    }
    Ok(mapping)
}

async fn save(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let optional = |name: &str| Some(form.get(name).trim().to_owned()).filter(|v| !v.is_empty());
    let outcome = match mapping_of(form.get("role_mapping")) {
        Ok(role_mapping) => {
            let input = SsoSettingsInput {
                display_name: form.get("display_name").to_owned(),
                issuer_url: form.get("issuer_url").trim().to_owned(),
                client_id: form.get("client_id").trim().to_owned(),
                client_secret: optional("client_secret"),
                groups_claim: optional("groups_claim"),
                role_mapping,
            };
            sso::save_settings(&state, &staff.actor, input)
                .await
                .map(|_| ())
        }
        Err(err) => Err(err),
    };
    match outcome {
        Ok(()) => layout::see_other(&format!("{SECTION}?done=saved")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => show(&staff, &admin, &form, None, &errors),
            None => layout::error_page(&err, "single sign-on"),
        },
    }
}

/// Turning it off asks first; the confirmed form posts again with `confirm=yes`.
async fn remove(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    if !Form::parse(&body).confirmed() {
        return match sso::settings(&state).await {
            Ok(settings) => confirm_removal(&staff, &admin, &settings.display_name),
            Err(err) => layout::error_page(&err, "single sign-on"),
        };
    }
    match sso::remove_settings(&state, &staff.actor).await {
        Ok(()) => layout::see_other(&format!("{SECTION}?done=removed")),
        Err(err) => layout::error_page(&err, "single sign-on"),
    }
}

fn confirm_removal(staff: &Staff, admin: &AdminSession, provider: &str) -> Response {
    let body = html! {
        p.crumbs { a href="/admin/staff" { "Staff" } " / " a href=(SECTION) { "Single sign-on" } }
        h1 { "Turn single sign-on off?" }
        p { "Staff can no longer sign in with " (provider) "; those without a password cannot sign in at all. "
            "Sessions made through it stay until they end. The settings, the client secret and the "
            "group mapping are deleted: turning it on again means entering them again." }
        (layout::confirm_form(admin.csrf_input(), "/admin/staff/sso/remove", &[],
            "Turn single sign-on off", (SECTION, "Keep it on")))
    };
    layout::page(
        staff,
        admin.csrf_input(),
        "Turn single sign-on off",
        "/admin/staff",
        body,
    )
}
