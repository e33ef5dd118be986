//! Plugins: the installed plugins with their versions, and for roles that may manage
//! them, enable, disable and roll back to the previous version, through the plugin
//! registry's own calls (`state.plugins`), as the admin API's do.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::html;

use super::layout::{self, Form};
use super::session::SignedIn;
use crate::app::AppState;
use crate::plugins::PluginPatch;

const SECTION: &str = "/admin/plugins";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/plugins", get(list_page))
        .route("/admin/plugins/{id}", post(switch))
        .route("/admin/plugins/{id}/rollback", post(rollback))
}

async fn list_page(State(state): State<AppState>, SignedIn(staff, admin): SignedIn) -> Response {
    let plugins = match state.plugins.list().await {
        Ok(plugins) => plugins,
        Err(err) => return layout::error_page(&err, "plugins"),
    };
    let may_manage = super::may(staff.role, &Method::POST, "/admin/plugins/{id}");
    let body = html! {
        h1 { "Plugins" }
        @if plugins.is_empty() { p.empty { "No plugin is installed." } }
        table {
            caption.visually-hidden { "Installed plugins" }
            thead { tr { th scope="col" { "Plugin" } th scope="col" { "Extension point" } th scope="col" { "Version" }
                th scope="col" { "State" } @if may_manage { th scope="col" { "Change" } } } }
            tbody {
                @for plugin in &plugins {
                    tr id={ "plugin-" (plugin.id) } {
                        td { strong { (plugin.id) } br; small { (plugin.description) } }
                        td { (plugin.world) }
                        td {
                            (plugin.active_version)
                            @if let Some(previous) = &plugin.previous_version { br; small { "before: " (previous) } }
                        }
                        td {
                            @if plugin.enabled { span.badge.active { "on" } } @else { span.badge.archived { "off" } }
                            @if let Some(reason) = &plugin.disabled_reason { br; small { (reason) } }
                        }
                        @if may_manage {
                            td.actions {
                                form method="post" action={ "/admin/plugins/" (plugin.id) } {
                                    (admin.csrf_input())
                                    input type="hidden" name="enabled" value=(if plugin.enabled { "false" } else { "true" });
                                    button.button type="submit" { (if plugin.enabled { "Turn off" } else { "Turn on" }) }
                                }
                                @if let Some(previous) = &plugin.previous_version {
                                    details {
                                        summary { "Roll back to " (previous) }
                                        form method="post" action={ "/admin/plugins/" (plugin.id) "/rollback" } {
                                            (admin.csrf_input())
                                            p { "Version " (plugin.active_version) " stops serving; " (previous) " serves at once." }
                                            button.button.danger type="submit" { "Roll back" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(&staff, admin.csrf_input(), "Plugins", SECTION, body)
}

async fn switch(
    State(state): State<AppState>,
    SignedIn(staff, _): SignedIn,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let patch = PluginPatch {
        enabled: Some(form.get("enabled") == "true"),
        ..PluginPatch::default()
    };
    match state.plugins.update(&id, &patch, &staff.actor).await {
        Ok(_) => layout::see_other(SECTION),
        Err(err) => layout::error_page(&err, "plugin switch"),
    }
}

async fn rollback(
    State(state): State<AppState>,
    SignedIn(staff, _): SignedIn,
    Path(id): Path<String>,
) -> Response {
    match state.plugins.rollback(&id, &staff.actor).await {
        Ok(_) => layout::see_other(SECTION),
        Err(err) => layout::error_page(&err, "plugin rollback"),
    }
}
