//! Staff and their access: the staff list, adding a staff member with a role, a staff
//! member's page (name, role, disabling, a new password), their API tokens (made with
//! the secret shown once, revoked one by one), signing them out everywhere and resetting
//! a lost second factor; revoking, signing out and resetting each ask to confirm first.
//! Through `staff`, `staff::sessions` and `staff::mfa`, as the admin API's `/staff`
//! routes are; every change is audited there.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};

use super::layout::{self, Form, FormErrors, Kind, PagePath, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::error::{Error, Result};
use crate::staff::mfa_api::ClientAddress;
use crate::staff::{self, NewStaff, Role, Staff, StaffPatch, StaffUser, TokenInfo};

const SECTION: &str = "/admin/staff";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(list_page).post(add))
        .route("/admin/staff/{id}", get(member_page).post(change))
        .route("/admin/staff/{id}/tokens", post(make_token))
        .route(
            "/admin/staff/{id}/tokens/{token_id}/revoke",
            post(revoke_token),
        )
        .route(
            "/admin/staff/{id}/sessions/revoke",
            post(sign_out_everywhere),
        )
        .route("/admin/staff/{id}/mfa/reset", post(reset_factor))
}

const ROLES: &[(&str, &str)] = &[
    ("owner", "Owner: everything, staff included"),
    ("admin", "Admin: everything but staff"),
    ("catalog", "Catalog: products and stock"),
    ("support", "Support: orders, customers, privacy"),
];

async fn list_page(State(state): State<AppState>, SignedIn(staff, admin): SignedIn) -> Response {
    list(
        &state,
        &staff,
        &admin,
        &Form::from_pairs(Vec::new()),
        &FormErrors::default(),
    )
    .await
}

async fn list(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    form: &Form,
    errors: &FormErrors,
) -> Response {
    let users = match staff::list_users(&state.db).await {
        Ok(users) => users,
        Err(err) => return layout::error_page(&err, "staff"),
    };
    let role = if form.get("role").is_empty() {
        "support"
    } else {
        form.get("role")
    };
    let body = html! {
        div.title-row {
            h1 { "Staff" }
            a.button href="/admin/staff/sso" { "Single sign-on" }
        }
        table {
            caption.visually-hidden { "Staff members" }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Role" }
                th scope="col" { "Signs in with" } th scope="col" { "Since" } } }
            tbody {
                @for u in &users {
                    tr {
                        td { a href={ (SECTION) "/" (u.id) } { (u.name) } @if u.disabled { " " span.badge.cancelled { "disabled" } } }
                        td { (u.email) }
                        td { (u.role.name()) }
                        td { @if u.has_password { "password" } @else { "API tokens only" } }
                        td { (u.created_at) }
                    }
                }
            }
        }
        h2 #add { "Add a staff member" }
        (form_alert(errors))
        form method="post" action=(SECTION) novalidate {
            (admin.csrf_input())
            (field("Name", "name", Kind::Text, form.get("name"), errors))
            (field("Email", "email", Kind::Email, form.get("email"), errors))
            (field("Role", "role", Kind::Select(ROLES), role, errors))
            (field_with_hint("Password", "password", Kind::Password, "",
                Some("At least 12 characters; give it to them apart from the email. Empty: API tokens only."), errors))
            button.button.primary type="submit" { "Add" }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Staff",
        SECTION,
        body,
    )
}

/// A role from a form, or the field's error.
fn role_of(form: &Form) -> Result<Role> {
    Role::parse(form.get("role"))
        .ok_or_else(|| Error::invalid("role", "choose a role from the list"))
}

async fn add(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let outcome = match role_of(&form) {
        Ok(role) => {
            let password = Some(form.get("password").to_owned()).filter(|p| !p.is_empty());
            let input = NewStaff {
                email: form.get("email").to_owned(),
                name: form.get("name").to_owned(),
                role,
                password,
            };
            staff::create_user(&state.db, &staff.actor, input).await
        }
        Err(err) => Err(err),
    };
    match outcome {
        Ok(user) => layout::see_other(&format!("{SECTION}/{}?done=added", user.id)),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => list(&state, &staff, &admin, &form, &errors).await,
            None => layout::error_page(&err, "staff"),
        },
    }
}

// ---- a staff member's page -------------------------------------------------------------

/// What the page says after each change.
const DONE: &[(&str, &str)] = &[
    (
        "added",
        "Added. They sign in at /admin with their email and password.",
    ),
    ("saved", "Saved."),
    (
        "token_revoked",
        "The token was revoked: it stops working at once.",
    ),
    ("signed_out", "Every sign-in session of theirs ended."),
    (
        "factor_reset",
        "Their second factor was removed and their sessions ended.",
    ),
];

/// What the page shows besides the member: a form that failed, or a token just made.
#[derive(Default)]
struct Extra<'a> {
    notice: Option<&'a str>,
    form: Option<&'a Form>,
    errors: FormErrors,
    new_token: Option<String>,
}

async fn member_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
    RawQuery(query): RawQuery,
) -> Response {
    let notice = layout::notice(query.as_deref(), DONE);
    let extra = Extra {
        notice,
        ..Extra::default()
    };
    member(&state, &staff, &admin, id, extra).await
}

async fn member(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    id: i64,
    extra: Extra<'_>,
) -> Response {
    let loaded = async {
        let user = staff::get_user(&state.db, id).await?;
        let tokens = staff::list_tokens(&state.db, id).await?;
        let totp = staff::mfa::totp_on(&state.db, id).await?;
        let passkeys = staff::passkeys::list(state, id).await?.len();
        Ok::<_, Error>((user, tokens, totp, passkeys))
    };
    let (user, tokens, totp, passkeys) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "staff member"),
    };
    let empty = Form::from_pairs(vec![
        ("name".to_owned(), user.name.clone()),
        ("role".to_owned(), user.role.name().to_owned()),
    ]);
    let form = extra.form.unwrap_or(&empty);
    let errors = &extra.errors;
    let base = format!("{SECTION}/{}", user.id);
    let body = html! {
        p.crumbs { a href=(SECTION) { "Staff" } }
        div.title-row {
            h1 { (user.name) }
            @if user.disabled { span.badge.cancelled { "disabled" } }
        }
        @if let Some(notice) = extra.notice { p.form-notice role="status" { (notice) } }
        @if let Some(token) = &extra.new_token {
            div.form-notice role="status" {
                p { "The new token. Copy it now: it is not shown again." }
                p { code #new-token { (token) } }
            }
        }
        (form_alert(errors))
        dl {
            dt { "Email" } dd { (user.email) }
            dt { "Second factor" } dd {
                @match (totp, passkeys) {
                    (false, 0) => "none",
                    (true, 0) => "authenticator app",
                    (false, 1) => "a passkey",
                    (false, n) => { (n) " passkeys" },
                    (true, 1) => "authenticator app and a passkey",
                    (true, n) => { "authenticator app and " (n) " passkeys" },
                }
            }
            dt { "Since" } dd { (user.created_at) }
        }
        h2 { "Name, role and access" }
        form method="post" action=(base) novalidate {
            (admin.csrf_input())
            (field("Name", "name", Kind::Text, form.get("name"), errors))
            (field("Role", "role", Kind::Select(ROLES), form.get("role"), errors))
            (field_with_hint("New password", "password", Kind::Password, "",
                Some("Empty: unchanged."), errors))
            div.field {
                label { input type="checkbox" name="disabled" value="yes" checked[user.disabled];
                    " Disabled: every token of theirs stops working at once" }
            }
            button.button.primary type="submit" { "Save" }
        }
        (tokens_section(admin, &user, &tokens, form, errors))
        h2 { "Sessions and second factor" }
        div.actions {
            form.inline method="post" action={ (base) "/sessions/revoke" } {
                (admin.csrf_input())
                button.button type="submit" { "Sign them out everywhere" }
            }
            @if (totp || passkeys > 0) && user.id != staff.id {
                form.inline method="post" action={ (base) "/mfa/reset" } {
                    (admin.csrf_input())
                    button.button.danger type="submit" { "Reset their second factor" }
                }
            }
        }
        p.hint { "Reset a second factor (the app, the recovery codes and the passkeys) only when they lost them "
            "and you have checked who is asking." }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        &user.name,
        SECTION,
        body,
    )
}

fn tokens_section(
    admin: &AdminSession,
    user: &StaffUser,
    tokens: &[TokenInfo],
    form: &Form,
    errors: &FormErrors,
) -> Markup {
    let api: Vec<&TokenInfo> = tokens.iter().filter(|t| t.kind != "session").collect();
    let base = format!("{SECTION}/{}", user.id);
    html! {
        h2 #tokens { "API tokens" }
        @if api.is_empty() { p.empty { "No API tokens." } }
        @else {
            table {
                caption.visually-hidden { "API tokens" }
                thead { tr { th scope="col" { "Label" } th scope="col" { "Made" } th scope="col" { "Made from" }
                    th scope="col" { "State" } th scope="col" { "" } } }
                tbody {
                    @for t in api {
                        tr id={ "token-" (t.id) } {
                            td { (t.label) } td { (t.created_at) }
                            td.created-from { @match &t.created_from { Some(from) => { code { (from) } }, None => { "—" } } }
                            td { @match &t.revoked_at { Some(at) => { "revoked " (at) }, None => { "active" } } }
                            td { @if t.revoked_at.is_none() {
                                form.inline method="post" action={ (base) "/tokens/" (t.id) "/revoke" } {
                                    (admin.csrf_input())
                                    button.button.danger type="submit" aria-label={ "Revoke " (t.label) } { "Revoke" }
                                }
                            } }
                        }
                    }
                }
            }
        }
        form method="post" action={ (base) "/tokens" } novalidate {
            (admin.csrf_input())
            (field_with_hint("Label", "label", Kind::Text, form.get("label"),
                Some("What the token is for, e.g. ci deploy."), errors))
            button.button type="submit" { "Make a token" }
        }
    }
}

async fn change(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let outcome = match role_of(&form) {
        Ok(role) => {
            let patch = StaffPatch {
                name: Some(form.get("name").to_owned()),
                role: Some(role),
                disabled: Some(form.get("disabled") == "yes"),
                password: Some(form.get("password").to_owned()).filter(|p| !p.is_empty()),
            };
            staff::update_user(&state.db, &staff.actor, id, patch)
                .await
                .map(|_| ())
        }
        Err(err) => Err(err),
    };
    answer(&state, &staff, &admin, id, &form, outcome, "saved").await
}

/// On to the member's page saying `done`, or the page again with the form's errors.
async fn answer(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    id: i64,
    form: &Form,
    outcome: Result<()>,
    done: &str,
) -> Response {
    match outcome {
        Ok(()) => layout::see_other(&format!("{SECTION}/{id}?done={done}")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => {
                let extra = Extra {
                    form: Some(form),
                    errors,
                    ..Extra::default()
                };
                member(state, staff, admin, id, extra).await
            }
            None => layout::error_page(&err, "staff member"),
        },
    }
}

/// A new token is shown on the answer itself, once: never in an address or a cookie. It
/// records the address the form was posted from, as the API's `POST /staff/{id}/tokens`
/// does (the same [`ClientAddress`]: behind a trusted proxy, the address it forwards).
async fn make_token(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    ClientAddress(from): ClientAddress,
    PagePath(id): PagePath<i64>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let label = form.get("label");
    let made = staff::create_api_token_from(&state.db, &staff.actor, id, label, from.as_deref());
    match made.await {
        Ok(issued) => {
            let extra = Extra {
                notice: Some("Token made."),
                new_token: Some(issued.token),
                ..Extra::default()
            };
            member(&state, &staff, &admin, id, extra).await
        }
        Err(err) => answer(&state, &staff, &admin, id, &form, Err(err), "").await,
    }
}

// ---- changes that ask to confirm first ---------------------------------------------------

/// What a confirmation page says: its title, what happens, and the button that does it.
struct Confirmation {
    title: String,
    explanation: &'static str,
    button: &'static str,
}

/// The page that asks to confirm a change to staff member `id`; its form posts to
/// `action` again with `confirm=yes`, as a recall's or a campaign's confirmation does.
async fn confirmation(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    id: i64,
    action: &str,
    words: impl FnOnce(&StaffUser) -> Confirmation,
) -> Response {
    let user = match staff::get_user(&state.db, id).await {
        Ok(user) => user,
        Err(err) => return layout::error_page(&err, "staff member"),
    };
    let words = words(&user);
    let base = format!("{SECTION}/{}", user.id);
    let body = html! {
        p.crumbs { a href=(SECTION) { "Staff" } " / " a href=(base) { (user.name) } }
        h1 { (words.title) }
        p { (words.explanation) }
        (layout::confirm_form(admin.csrf_input(), action, &[], words.button,
            (&base, "Keep things as they are")))
    };
    layout::page(staff, admin.csrf_input(), &words.title, SECTION, body)
}

async fn revoke_token(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath((id, token_id)): PagePath<(i64, i64)>,
    body: Bytes,
) -> Response {
    if !Form::parse(&body).confirmed() {
        let token = match staff::list_tokens(&state.db, id).await {
            Ok(tokens) => tokens
                .into_iter()
                .find(|t| t.id == token_id && t.kind != "session"),
            Err(err) => return layout::error_page(&err, "staff member"),
        };
        let Some(token) = token else {
            return layout::not_found_page();
        };
        let action = format!("{SECTION}/{id}/tokens/{token_id}/revoke");
        return confirmation(&state, &staff, &admin, id, &action, |user| Confirmation {
            title: format!("Revoke {}'s token “{}”?", user.name, token.label),
            explanation: "It stops working at once: whatever uses it (a script, a deploy) is refused from its next call. This cannot be undone; a new token can be made.",
            button: "Revoke the token",
        })
        .await;
    }
    let outcome = staff::revoke_token(&state.db, &staff.actor, id, token_id).await;
    let form = Form::from_pairs(Vec::new());
    answer(&state, &staff, &admin, id, &form, outcome, "token_revoked").await
}

async fn sign_out_everywhere(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
    body: Bytes,
) -> Response {
    if !Form::parse(&body).confirmed() {
        let action = format!("{SECTION}/{id}/sessions/revoke");
        return confirmation(&state, &staff, &admin, id, &action, |user| Confirmation {
            title: format!("Sign {} out everywhere?", user.name),
            explanation: "Every sign-in session of theirs ends at once, in every browser and the command line; they sign in again to go on. Their API tokens keep working.",
            button: "Sign them out everywhere",
        })
        .await;
    }
    let outcome = staff::sessions::revoke_all_sessions(&state, &staff.actor, id)
        .await
        .map(|_| ());
    let form = Form::from_pairs(Vec::new());
    answer(&state, &staff, &admin, id, &form, outcome, "signed_out").await
}

async fn reset_factor(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    PagePath(id): PagePath<i64>,
    body: Bytes,
) -> Response {
    if !Form::parse(&body).confirmed() {
        let action = format!("{SECTION}/{id}/mfa/reset");
        return confirmation(&state, &staff, &admin, id, &action, |user| Confirmation {
            title: format!("Reset {}'s second factor?", user.name),
            explanation: "Their authenticator app, recovery codes and passkeys are removed and their sessions end; they sign in with their password alone and set a new factor up. Do it only when they lost theirs and you have checked who is asking.",
            button: "Reset their second factor",
        })
        .await;
    }
    let outcome = staff::mfa::reset_for(&state, &staff, id).await.map(|_| ());
    let form = Form::from_pairs(Vec::new());
    answer(&state, &staff, &admin, id, &form, outcome, "factor_reset").await
}
