//! Plugins: the installed plugins; uploading a package (`.olpkg`), which runs its
//! self-test through the real host and installs it without activating it, so the
//! merchant sees the result before anything serves; a plugin's page with its versions
//! (activate any), its settings in a form made from what the manifest declares (a secret
//! one write-only), its priority, the hosts it may call (a form of their own), its recent
//! calls (count, failures, p99, fuel), the calls on this node by kind from its own
//! `/metrics`, and the decisions explorer (what each decision answered: a pricing rule's
//! adjustments, a loyalty rule's points, a payment's status); turning on, and turning off
//! and rolling back, each after a confirmation. Through the plugin registry's own calls
//! (`state.plugins`), as the admin API's are.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::{Markup, html};

use super::layout::{self, Form, FormErrors, Kind, field, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::error::{Error, FieldError, Result};
use crate::plugins::api::{DecisionFilter, DecisionRecord, MAX_PACKAGE_BYTES};
use crate::plugins::package::PackageUpload;
use crate::plugins::{PluginInfo, PluginPatch};
use crate::staff::Staff;
use olivine_plugin_runtime::manifest::{ANY_HOST, SettingSpec, SettingType};

const SECTION: &str = "/admin/plugins";
/// The upload form's address (its body may be as large as a package).
pub const UPLOAD_PATH: &str = "/admin/plugins/upload";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(list_page))
        .route(
            UPLOAD_PATH,
            get(upload_page)
                .post(upload)
                .layer(DefaultBodyLimit::max(MAX_PACKAGE_BYTES)),
        )
        .route("/admin/plugins/{id}", get(plugin_page).post(change))
        .route("/admin/plugins/{id}/activate", post(activate))
        .route("/admin/plugins/{id}/rollback", post(rollback))
}

// ---- the list ------------------------------------------------------------------------------

async fn list_page(State(state): State<AppState>, SignedIn(staff, admin): SignedIn) -> Response {
    let plugins = match state.plugins.list().await {
        Ok(plugins) => plugins,
        Err(err) => return layout::error_page(&err, "plugins"),
    };
    let may_manage = super::may(staff.role, &Method::POST, "/admin/plugins/{id}");
    let body = html! {
        div.title-row {
            h1 { "Plugins" }
            @if super::may(staff.role, &Method::GET, UPLOAD_PATH) {
                a.button.primary href=(UPLOAD_PATH) { "Upload a package" }
            }
        }
        @if plugins.is_empty() { p.empty { "No plugin is installed." } }
        table {
            caption.visually-hidden { "Installed plugins" }
            thead { tr { th scope="col" { "Plugin" } th scope="col" { "Extension point" } th scope="col" { "Version" }
                th scope="col" { "State" } @if may_manage { th scope="col" { "Change" } } } }
            tbody {
                @for plugin in &plugins {
                    tr id={ "plugin-" (plugin.id) } {
                        td { a href={ (SECTION) "/" (plugin.id) } { strong { (plugin.id) } } br; small { (plugin.description) } }
                        td { (plugin.world) }
                        td {
                            (plugin.active_version)
                            @if let Some(previous) = &plugin.previous_version { br; small { "before: " (previous) } }
                        }
                        td { (state_badge(plugin)) }
                        @if may_manage { td.actions { (switch_form(&admin, plugin, false)) (rollback_form(&admin, plugin, false)) } }
                    }
                }
            }
        }
    };
    layout::page(&staff, admin.csrf_input(), "Plugins", SECTION, body)
}

fn state_badge(plugin: &PluginInfo) -> Markup {
    html! {
        @if plugin.enabled { span.badge.active { "on" } } @else { span.badge.archived { "off" } }
        @if let Some(reason) = &plugin.disabled_reason { br; small { (reason) } }
    }
}

/// `on_page`: the form is on the plugin's own page, which it comes back to.
fn switch_form(admin: &AdminSession, plugin: &PluginInfo, on_page: bool) -> Markup {
    html! {
        form method="post" action={ (SECTION) "/" (plugin.id) } {
            (admin.csrf_input())
            @if on_page { input type="hidden" name="back" value="plugin"; }
            input type="hidden" name="enabled" value=(if plugin.enabled { "false" } else { "true" });
            button.button type="submit" { (if plugin.enabled { "Turn off" } else { "Turn on" }) }
        }
    }
}

/// Rolling back asks first: the form posts without `confirm`, and the handler answers
/// with the confirmation ([`confirm_rollback`]).
fn rollback_form(admin: &AdminSession, plugin: &PluginInfo, on_page: bool) -> Markup {
    html! {
        @if let Some(previous) = &plugin.previous_version {
            form method="post" action={ (SECTION) "/" (plugin.id) "/rollback" } {
                (admin.csrf_input())
                @if on_page { input type="hidden" name="back" value="plugin"; }
                button.button type="submit" { "Roll back to " (previous) }
            }
        }
    }
}

// ---- uploading a package ---------------------------------------------------------------------

async fn upload_page(SignedIn(staff, admin): SignedIn) -> Response {
    upload_form(&staff, &admin, &FormErrors::default())
}

fn upload_form(staff: &Staff, admin: &AdminSession, errors: &FormErrors) -> Response {
    let body = html! {
        p.crumbs { a href=(SECTION) { "Plugins" } }
        h1 { "Upload a plugin package" }
        p { "A package is the " code { ".olpkg" } " file " code { "olivine plugin build" } " writes. "
            "Its self-test (the fixtures it carries) runs through the store's real plugin host first; "
            "a package that passes is installed but does not serve until you activate it." }
        (form_alert(errors))
        @if !errors.fields.is_empty() {
            div.form-alert #self-test-failures {
                p { "The package was not installed:" }
                ul { @for f in &errors.fields { li { code { (f.field) } ": " (f.message) } } }
            }
        }
        form method="post" action=(UPLOAD_PATH) enctype="multipart/form-data" {
            (admin.csrf_input())
            div.field {
                label for="f-package" { "Package (.olpkg)" }
                input #f-package type="file" name="package" accept=".olpkg,application/json" required;
            }
            button.button.primary type="submit" { "Upload and run the self-test" }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Upload a plugin",
        SECTION,
        body,
    )
}

/// The package of a multipart upload (the field `package`).
async fn package_of(mut multipart: Multipart) -> Result<PackageUpload> {
    let unreadable = |message: &str| Error::invalid("package", message.to_owned());
    while let Some(part) = multipart
        .next_field()
        .await
        .map_err(|_| unreadable("the upload was cut off or malformed"))?
    {
        if part.name() != Some("package") {
            continue;
        }
        let bytes = part
            .bytes()
            .await
            .map_err(|_| unreadable("the upload was cut off or malformed"))?;
        if bytes.is_empty() {
            return Err(unreadable("choose a .olpkg file"));
        }
        let mut package: PackageUpload = serde_json::from_slice(&bytes)
            .map_err(|_| unreadable("is not a plugin package (.olpkg)"))?;
        // Installed without serving: the merchant activates it after the self-test.
        package.activate = false;
        package.enabled = false;
        return Ok(package);
    }
    Err(unreadable("choose a .olpkg file"))
}

async fn upload(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    multipart: Multipart,
) -> Response {
    let installed = async {
        let upload = package_of(multipart).await?;
        let version = olivine_plugin_runtime::manifest::Manifest::parse(&upload.manifest)
            .map(|m| m.version.to_string())
            .unwrap_or_default();
        let fixtures = upload.fixtures.len();
        let info = state
            .plugins
            .install(upload.into_package()?, false, false, &staff.actor)
            .await?;
        Ok::<_, Error>((info, version, fixtures))
    };
    let (info, version, fixtures) = match installed.await {
        Ok(done) => done,
        Err(err) => {
            return match FormErrors::from_error(&err) {
                Some(errors) => upload_form(&staff, &admin, &errors),
                None => layout::error_page(&err, "plugin upload"),
            };
        }
    };
    let serving = info.active_version == version && info.enabled;
    let body = html! {
        p.crumbs { a href=(SECTION) { "Plugins" } }
        h1 { (info.id) " " (version) " is installed" }
        p.form-notice role="status" #self-test-passed {
            "Self-test passed: " (fixtures) " fixtures through the store's plugin host."
        }
        @if serving {
            p { "This version is already the one serving." }
        } @else if info.active_version == version {
            p { "It is the plugin's first version and does not serve yet." }
            (switch_form(&admin, &info, true))
        } @else {
            p { "Version " (info.active_version) " still serves. Activate " (version) " to replace it; "
                "you can roll back in one click." }
            (activate_form(&admin, &info.id, &version))
        }
        p { a href={ (SECTION) "/" (info.id) } { "The plugin's page" } }
    };
    layout::page_with_status(
        StatusCode::CREATED,
        &staff,
        admin.csrf_input(),
        "Plugin installed",
        SECTION,
        body,
    )
}

fn activate_form(admin: &AdminSession, id: &str, version: &str) -> Markup {
    html! {
        form method="post" action={ (SECTION) "/" (id) "/activate" } {
            (admin.csrf_input())
            input type="hidden" name="version" value=(version);
            button.button.primary type="submit" { "Activate " (version) }
        }
    }
}

// ---- a plugin's page -----------------------------------------------------------------------

async fn plugin_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let notice = layout::notice(query.as_deref(), DONE);
    let input_hash = layout::query_value(query.as_deref(), "input_hash");
    show_plugin(
        &state,
        &staff,
        &admin,
        &id,
        PageState {
            notice,
            input_hash,
            form: None,
            errors: FormErrors::default(),
        },
    )
    .await
}

const DONE: &[(&str, &str)] = &[
    (
        "saved",
        "Saved: the plugin runs with it from the next call.",
    ),
    ("switched", "Switched."),
    (
        "hosts_saved",
        "Saved: the plugin may call these hosts from its next call.",
    ),
    (
        "activated",
        "Activated: this version serves from the next call.",
    ),
    ("rolled_back", "Rolled back."),
];

/// What a plugin's page shows besides the plugin.
struct PageState<'a> {
    notice: Option<&'a str>,
    input_hash: Option<String>,
    form: Option<Form>,
    errors: FormErrors,
}

async fn show_plugin(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    id: &str,
    page: PageState<'_>,
) -> Response {
    let loaded = async {
        let info = state.plugins.info(id).await?;
        let declared = state.plugins.declared_settings(id).await?;
        // Counted, not shown: without their detail.
        let recent = crate::plugins::api::decisions_with(
            state,
            id,
            &DecisionFilter {
                input_hash: None,
                limit: Some(1000),
            },
            false,
        )
        .await?;
        let latest = crate::plugins::api::decisions(
            state,
            id,
            &DecisionFilter {
                input_hash: None,
                limit: Some(LATEST_SHOWN),
            },
        )
        .await?;
        let found = match &page.input_hash {
            Some(hash) => Some(
                crate::plugins::api::decisions(
                    state,
                    id,
                    &DecisionFilter {
                        input_hash: Some(hash.clone()),
                        limit: Some(50),
                    },
                )
                .await?,
            ),
            None => None,
        };
        Ok::<_, Error>((info, declared, recent, latest, found))
    };
    let (info, declared, recent, latest, found) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "plugin"),
    };
    let may_manage = super::may(staff.role, &Method::POST, "/admin/plugins/{id}");
    let errors = &page.errors;
    let body = html! {
        p.crumbs { a href=(SECTION) { "Plugins" } }
        div.title-row { h1 { (info.id) } (state_badge(&info)) }
        @if let Some(notice) = page.notice { p.form-notice role="status" { (notice) } }
        (form_alert(errors))
        p { (info.description) }
        dl {
            dt { "Extension point" } dd { (info.world) }
            dt { "Serving" } dd { (info.active_version) @if !info.loaded { " (not loaded on this node)" } }
            dt { "Priority" } dd { (info.priority) }
            dt { "Failures in a row" } dd { (info.consecutive_failures) }
        }
        @if may_manage { div.actions { (switch_form(admin, &info, true)) (rollback_form(admin, &info, true)) } }
        (versions(admin, &info, may_manage))
        (calls(&recent))
        (node_calls(&crate::plugins::api::node_metrics(state, &info.id)))
        @if may_manage {
            (settings_form(admin, &info, &declared, page.form.as_ref(), errors))
            (hosts_form(admin, &info, page.form.as_ref(), errors))
        }
        (explorer(&info.id, page.input_hash.as_deref(), found.as_deref(), &latest))
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        &info.id,
        SECTION,
        body,
    )
}

fn versions(admin: &AdminSession, info: &PluginInfo, may_manage: bool) -> Markup {
    html! {
        h2 { "Versions" }
        table {
            caption.visually-hidden { "Installed versions, oldest first" }
            thead { tr { th scope="col" { "Version" } th scope="col" { "Installed" } th scope="col" { "By" }
                th scope="col" { "Content hash" } th scope="col" { "" } } }
            tbody {
                @for v in &info.versions {
                    tr {
                        td { (v.version) }
                        td { (v.installed_at) }
                        td { (v.installed_by) }
                        td { code { (v.hash.get(..16).unwrap_or(&v.hash)) "…" } }
                        td { @if v.version == info.active_version { "serving" }
                             @else if may_manage { (activate_form(admin, &info.id, &v.version)) } }
                    }
                }
            }
        }
    }
}

/// Calls by kind on this node since it started, from its `/metrics`.
fn node_calls(metrics: &[crate::plugins::api::CallMetrics]) -> Markup {
    html! {
        h2 { "Calls on this node" }
        p.hint { "Since this node started, as its " code { "/metrics" } " counts them." }
        @if metrics.is_empty() { p.empty #plugin-node-calls { "No call on this node yet." } }
        @else {
            table #plugin-node-calls {
                caption.visually-hidden { "Calls by kind on this node" }
                thead { tr { th scope="col" { "Call" } th scope="col" class="num" { "Calls" }
                    th scope="col" class="num" { "Failed" } th scope="col" class="num" { "p99" }
                    th scope="col" class="num" { "Fuel p99" } th scope="col" class="num" { "Fuel, mean" } } }
                tbody {
                    @for m in metrics {
                        tr {
                            td { (m.call) }
                            td.num { (m.calls) }
                            td.num { (m.failed) }
                            td.num { @if let Some(ms) = m.p99_ms_at_most { "≤ " (ms) " ms" } @else { "—" } }
                            td.num { @if let Some(f) = m.fuel_p99 { (format!("{f:.0}")) } @else { "—" } }
                            td.num { @if let Some(f) = m.fuel_mean { (format!("{f:.0}")) } @else { "—" } }
                        }
                    }
                }
            }
        }
    }
}

/// Calls, failures, p99 and fuel over the recent recorded decisions.
fn calls(recent: &[DecisionRecord]) -> Markup {
    let failures = recent.iter().filter(|d| d.outcome != "ok").count();
    let mut durations: Vec<i64> = recent.iter().map(|d| d.duration_us).collect();
    durations.sort_unstable();
    let p99 = durations
        .get((durations.len() * 99).div_ceil(100).saturating_sub(1))
        .copied();
    let fuel: i64 = recent.iter().map(|d| d.fuel).sum();
    html! {
        h2 { "Recent calls" }
        @if recent.is_empty() { p.empty { "No recorded call yet." } }
        @else {
            p #plugin-calls { (recent.len()) " calls recorded (the latest 1,000), " (failures) " failed; p99 "
                @if let Some(p99) = p99 { (format!("{:.1}", p99 as f64 / 1000.0)) " ms" } @else { "—" }
                "; " (fuel / recent.len() as i64) " fuel a call on average." }
        }
    }
}

/// What a form shows: what was posted, when it was this form that failed.
fn posted<'a>(form: Option<&'a Form>, which: &str) -> Option<&'a Form> {
    form.filter(|form| form.get("form") == which)
}

fn settings_form(
    admin: &AdminSession,
    info: &PluginInfo,
    declared: &BTreeMap<String, SettingSpec>,
    form: Option<&Form>,
    errors: &FormErrors,
) -> Markup {
    let form = posted(form, "settings");
    let value = |name: &str, stored: Option<&String>| match form {
        Some(form) => form.get(name).to_owned(),
        None => stored.cloned().unwrap_or_default(),
    };
    html! {
        h2 #settings { "Settings" }
        form method="post" action={ (SECTION) "/" (info.id) } novalidate {
            (admin.csrf_input())
            input type="hidden" name="form" value="settings";
            @for (name, spec) in declared {
                @let field_name = format!("settings.{name}");
                @let hint = setting_hint(spec);
                @if spec.secret {
                    // Write-only: the page never holds the value, nor what was typed.
                    @let set = info.secrets.get(name).is_some_and(|s| s.set);
                    @let hint = if set {
                        format!("Secret, set: never shown. Leave it empty to keep it. {hint}")
                    } else {
                        format!("Secret, not set. {hint}")
                    };
                    (field_with_hint(name, &field_name, Kind::Secret, "", Some(&hint), errors))
                    @if set {
                        div.field {
                            label { input type="checkbox" name="remove_secret" value=(name); " Remove " (name) }
                        }
                    }
                } @else if spec.kind == SettingType::Boolean {
                    @let current = value(&field_name, info.settings.get(name).and_then(Option::as_ref));
                    (field_with_hint(name, &field_name, Kind::Select(&[("", "(default)"), ("true", "true"), ("false", "false")]),
                        &current, Some(&hint), errors))
                } @else {
                    @let current = value(&field_name, info.settings.get(name).and_then(Option::as_ref));
                    (field_with_hint(name, &field_name, Kind::Text, &current, Some(&hint), errors))
                }
            }
            (field_with_hint("Priority", "priority", Kind::Number,
                &value("priority", Some(&info.priority.to_string())),
                Some("Pricing rules run in ascending priority: 0 to 1000000."), errors))
            button.button.primary type="submit" { "Save" }
        }
    }
}

/// Whether the manifest lets the merchant grant any host (`http = ["*"]`).
fn any_host(info: &PluginInfo) -> bool {
    info.requested_hosts.iter().any(|h| h == ANY_HOST)
}

/// The hosts the plugin may call, a form of their own so that saving the settings
/// leaves the grants alone: a host a line when the manifest lets the merchant choose
/// any, else a checkbox for each host it declares.
fn hosts_form(
    admin: &AdminSession,
    info: &PluginInfo,
    form: Option<&Form>,
    errors: &FormErrors,
) -> Markup {
    let form = posted(form, "hosts");
    html! {
        @if !info.requested_hosts.is_empty() {
            h2 #hosts { "Hosts it may call" }
            form method="post" action={ (SECTION) "/" (info.id) } novalidate {
                (admin.csrf_input())
                input type="hidden" name="form" value="hosts";
                @if any_host(info) {
                    @let lines = match form {
                        Some(form) => form.get("granted_hosts").to_owned(),
                        None => info.granted_hosts.join("\n"),
                    };
                    (field_with_hint("Granted hosts", "granted_hosts", Kind::Area(4), &lines,
                        Some("A host a line, as host or host:port without scheme or path (hooks.example.com, 10.0.0.5:8080). It reaches only these; none: it calls nothing."),
                        errors))
                } @else {
                    @let granted: Vec<&str> = match form {
                        Some(form) => form.all("granted_hosts"),
                        None => info.granted_hosts.iter().map(String::as_str).collect(),
                    };
                    fieldset.checkboxes #f-granted-hosts {
                        legend { "Hosts the manifest declares" }
                        @for host in &info.requested_hosts {
                            label { input type="checkbox" name="granted_hosts" value=(host)
                                checked[granted.contains(&host.as_str())]; " " (host) }
                        }
                        @if let Some(message) = errors.field("granted_hosts") {
                            p.field-error #f-granted-hosts-error { (layout::sentence(message)) }
                        }
                    }
                }
                button.button.primary type="submit" { "Save the hosts" }
            }
        }
    }
}

fn setting_hint(spec: &SettingSpec) -> String {
    let kind = match spec.kind {
        SettingType::String => "text",
        SettingType::Integer => "a whole number",
        SettingType::Boolean => "true or false",
        SettingType::StringList => "a comma-separated list",
    };
    let mut hint = format!("{}{kind}", if spec.required { "Required: " } else { "" });
    if let Some(default) = &spec.default {
        hint.push_str(&format!("; default {default}"));
    }
    if !spec.description.is_empty() {
        hint.push_str(". ");
        hint.push_str(&spec.description);
    }
    hint
}

/// How many of the latest decisions the explorer shows (with what the plugin answered).
const LATEST_SHOWN: i64 = 20;

fn explorer(
    id: &str,
    input_hash: Option<&str>,
    found: Option<&[DecisionRecord]>,
    latest: &[DecisionRecord],
) -> Markup {
    html! {
        h2 #decisions { "Decisions explorer" }
        p.hint { "Every price the plugin made is recorded with the hash of its input and what it answered: "
            "find one by the input hash a quote or an order names." }
        form.filters method="get" action={ (SECTION) "/" (id) "#decisions" } role="search" {
            (field("Input hash", "input_hash", Kind::Text, input_hash.unwrap_or(""), &FormErrors::default()))
            button.button type="submit" { "Find" }
        }
        @if let Some(found) = found {
            @if found.is_empty() { p.empty #decisions-found { "No decision on this input." } }
            @else { (decisions_table("decisions-found", "Decisions on this input, newest first", found, HashShown::Output)) }
        }
        h3 { "Latest decisions" }
        @if latest.is_empty() { p.empty #decisions-latest { "No recorded decision yet." } }
        @else { (decisions_table("decisions-latest", "The latest decisions, newest first", latest, HashShown::Input(id))) }
    }
}

/// The hash column of a decisions table: the input's (a link that finds the decisions on
/// it, for the plugin `id`) in the latest decisions, the output's in those found by input.
enum HashShown<'a> {
    Input(&'a str),
    Output,
}

fn decisions_table(
    dom_id: &str,
    caption: &str,
    decisions: &[DecisionRecord],
    hash: HashShown,
) -> Markup {
    html! {
        table id=(dom_id) {
            caption.visually-hidden { (caption) }
            thead { tr { th scope="col" { "When" } th scope="col" { "Version" } th scope="col" { "Call" }
                th scope="col" { @match hash { HashShown::Input(_) => "Input hash", HashShown::Output => "Output hash" } }
                th scope="col" { "Outcome" } th scope="col" { "Answer" }
                th scope="col" class="num" { "Fuel" } th scope="col" class="num" { "µs" } } }
            tbody {
                @for d in decisions {
                    tr { td { (d.created_at) } td { (d.version) } td { (d.call) }
                        td { @match hash {
                            HashShown::Input(id) => a href={ (SECTION) "/" (id) "?input_hash=" (d.input_hash) "#decisions" }
                                title=(d.input_hash) { code { (d.input_hash.get(..12).unwrap_or(&d.input_hash)) "…" } },
                            HashShown::Output => code { (d.output_hash) },
                        } }
                        td { (d.outcome) } td { (answer(d.detail.as_ref())) }
                        td.num { (d.fuel) } td.num { (d.duration_us) } }
                }
            }
        }
    }
}

/// What a plugin answered, as its decision's detail records it (see
/// `plugins::api::DecisionRecord::detail`): a pricing rule's adjustments as money
/// (`-€2.50 line 3: Buy 3, save 10%`), a loyalty rule's points, a payment adapter's status.
fn answer(detail: Option<&serde_json::Value>) -> Markup {
    let Some(detail) = detail else {
        return html! { "—" };
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let lines: Vec<String> = if let Some(adjustments) = detail["adjustments"].as_array() {
        let currency = text(&detail["currency"]);
        adjustments
            .iter()
            .map(|a| {
                let amount =
                    layout::money(a["amount_minor"].as_i64().unwrap_or_default(), &currency);
                let on = match a["line_id"].as_u64() {
                    Some(line) => format!("line {line}"),
                    None => "cart".to_owned(),
                };
                format!("{amount} {on}: {}", text(&a["reason"]))
            })
            .collect()
    } else if let Some(entries) = detail["entries"].as_array() {
        entries
            .iter()
            .map(|e| {
                let points = e["points"].as_i64().unwrap_or_default();
                format!("{points:+} points: {}", text(&e["reason"]))
            })
            .collect()
    } else if let Some(status) = detail["status"].as_str() {
        vec![match detail["hard"].as_bool() {
            Some(true) => format!("{status} (hard)"),
            Some(false) => format!("{status} (soft)"),
            None => status.to_owned(),
        }]
    } else {
        Vec::new()
    };
    let cut = &detail["cut"];
    let none = if detail.get("adjustments").is_some() {
        "no adjustment"
    } else if detail.get("entries").is_some() {
        "no points"
    } else {
        "—"
    };
    html! {
        @if !lines.is_empty() { ul.answer { @for line in &lines { li { (line) } } } }
        @else if cut.is_null() { (none) }
        @if let Some(of) = cut["of"].as_u64() {
            small { "the first " (cut["kept"].as_u64().unwrap_or_default()) " of " (of) " kept (the answer was "
                (cut["bytes"].as_u64().unwrap_or_default()) " bytes)" }
        } @else if let Some(bytes) = cut["bytes"].as_u64() {
            small { "too long to keep (" (bytes) " bytes)" }
        }
    }
}

// ---- changes -------------------------------------------------------------------------------

/// The patch a form of the plugin's page posts (the switch, the hosts or the settings),
/// or the field that cannot be read.
fn patch_of(
    form: &Form,
    declared: &BTreeMap<String, SettingSpec>,
) -> Result<(PluginPatch, &'static str)> {
    if !form.get("enabled").is_empty() {
        let patch = PluginPatch {
            enabled: Some(form.get("enabled") == "true"),
            ..PluginPatch::default()
        };
        return Ok((patch, "switched"));
    }
    if form.get("form") == "hosts" {
        let patch = PluginPatch {
            granted_hosts: Some(granted_hosts(form).into_iter().map(|(_, h)| h).collect()),
            ..PluginPatch::default()
        };
        return Ok((patch, "hosts_saved"));
    }
    let priority = form
        .get("priority")
        .trim()
        .parse::<i64>()
        .map_err(|_| Error::invalid("priority", "must be a whole number"))?;
    let removed = form.all("remove_secret");
    let settings = declared
        .iter()
        .filter_map(|(name, spec)| {
            let value = form.get(&format!("settings.{name}")).trim().to_owned();
            match (spec.secret, value.is_empty()) {
                (_, false) => Some((name.clone(), Some(value))),
                // An empty secret keeps what is stored (`null`), unless it is removed.
                (true, true) if !removed.contains(&name.as_str()) => Some((name.clone(), None)),
                // Left out: the manifest's default applies.
                _ => None,
            }
        })
        .collect();
    // No hosts: they are a form of their own, and the grants stay as they are.
    let patch = PluginPatch {
        priority: Some(priority),
        settings: Some(settings),
        ..PluginPatch::default()
    };
    Ok((patch, "saved"))
}

/// The hosts form's hosts with the line each is on (a checkbox's value is a line of its
/// own), without blank lines or repeats.
fn granted_hosts(form: &Form) -> Vec<(usize, String)> {
    let mut hosts: Vec<(usize, String)> = Vec::new();
    let lines = form.all("granted_hosts").into_iter().flat_map(str::lines);
    for (i, line) in lines.enumerate() {
        let host = line.trim();
        if !host.is_empty() && !hosts.iter().any(|(_, h)| h == host) {
            hosts.push((i + 1, host.to_owned()));
        }
    }
    hosts
}

/// The API names a refused host by its place in the list (`granted_hosts[2]`); the form
/// of a host a line says it beside its field with the line it is on.
fn on_host_lines(err: Error, form: &Form) -> Error {
    let Error::Validation(fields) = err else {
        return err;
    };
    let hosts = granted_hosts(form);
    let fields = fields
        .into_iter()
        .map(|f| {
            let line = f
                .field
                .strip_prefix("granted_hosts[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| hosts.get(i));
            match line {
                Some((line, _)) => {
                    FieldError::new("granted_hosts", format!("line {line}: {}", f.message))
                }
                None => f,
            }
        })
        .collect();
    Error::Validation(fields)
}

async fn change(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if form.get("enabled") == "false" && !form.confirmed() {
        return confirm_turning_off(&state, &staff, &admin, &id, &form).await;
    }
    let outcome = async {
        let declared = state.plugins.declared_settings(&id).await?;
        let (patch, done) = patch_of(&form, &declared)?;
        if let Err(err) = state.plugins.update(&id, &patch, &staff.actor).await {
            let lines = done == "hosts_saved"
                && state
                    .plugins
                    .info(&id)
                    .await
                    .is_ok_and(|info| any_host(&info));
            return Err(if lines {
                on_host_lines(err, &form)
            } else {
                err
            });
        }
        Ok::<_, Error>(done)
    };
    match outcome.await {
        // The list's switch goes back to the list.
        Ok("switched") if form.get("back") != "plugin" => layout::see_other(SECTION),
        Ok(done) => layout::see_other(&format!("{SECTION}/{id}?done={done}")),
        Err(err) => again(&state, &staff, &admin, &id, form, err).await,
    }
}

/// Turning a plugin off asks first; the confirmed form posts again with `confirm=yes`.
async fn confirm_turning_off(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    id: &str,
    form: &Form,
) -> Response {
    let info = match state.plugins.info(id).await {
        Ok(info) => info,
        Err(err) => return layout::error_page(&err, "plugin"),
    };
    let back = if form.get("back") == "plugin" {
        format!("{SECTION}/{}", info.id)
    } else {
        SECTION.to_owned()
    };
    let body = html! {
        p.crumbs { a href=(SECTION) { "Plugins" } " / " a href={ (SECTION) "/" (info.id) } { (info.id) } }
        h1 { "Turn " (info.id) " off?" }
        p { "It stops serving at once: from the next call the store works without this "
            (info.world) " plugin. Its versions, settings and hosts stay, and it can be turned on again." }
        (layout::confirm_form(admin.csrf_input(), &format!("{SECTION}/{}", info.id),
            &[("enabled", "false"), ("back", form.get("back"))], "Turn it off", (&back, "Keep it on")))
    };
    layout::page(
        staff,
        admin.csrf_input(),
        "Turn a plugin off",
        SECTION,
        body,
    )
}

/// The plugin's page again with the form's errors, or the error page.
async fn again(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    id: &str,
    form: Form,
    err: Error,
) -> Response {
    match FormErrors::from_error(&err) {
        Some(errors) => {
            let page = PageState {
                notice: None,
                input_hash: None,
                form: Some(form),
                errors,
            };
            show_plugin(state, staff, admin, id, page).await
        }
        None => layout::error_page(&err, "plugin change"),
    }
}

async fn activate(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let version = form.get("version").to_owned();
    match state.plugins.activate(&id, &version, &staff.actor).await {
        Ok(_) => layout::see_other(&format!("{SECTION}/{id}?done=activated")),
        Err(err) => again(&state, &staff, &admin, &id, form, err).await,
    }
}

async fn rollback(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !form.confirmed() {
        return confirm_rollback(&state, &staff, &admin, &id, &form).await;
    }
    let back_to_page = form.get("back") == "plugin";
    match state.plugins.rollback(&id, &staff.actor).await {
        Ok(_) if back_to_page => layout::see_other(&format!("{SECTION}/{id}?done=rolled_back")),
        Ok(_) => layout::see_other(SECTION),
        Err(err) => layout::error_page(&err, "plugin rollback"),
    }
}

/// Rolling back asks first; the confirmed form posts again with `confirm=yes`.
async fn confirm_rollback(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    id: &str,
    form: &Form,
) -> Response {
    let info = match state.plugins.info(id).await {
        Ok(info) => info,
        Err(err) => return layout::error_page(&err, "plugin rollback"),
    };
    let page = format!("{SECTION}/{}", info.id);
    let back = if form.get("back") == "plugin" {
        page.clone()
    } else {
        SECTION.to_owned()
    };
    let body = html! {
        p.crumbs { a href=(SECTION) { "Plugins" } " / " a href=(page) { (info.id) } }
        @if let Some(previous) = &info.previous_version {
            h1 { "Roll " (info.id) " back to " (previous) "?" }
            p { "Version " (info.active_version) " stops serving at once; " (previous)
                " serves from the next call. " (info.active_version) " stays installed and can be activated again." }
            (layout::confirm_form(admin.csrf_input(), &format!("{page}/rollback"),
                &[("back", form.get("back"))], "Roll back", (&back, "Keep it")))
        } @else {
            h1 { (info.id) " has no version to roll back to" }
            p { "Only " (info.active_version) " has served. " a href=(back) { "Back" } }
        }
    };
    layout::page(
        staff,
        admin.csrf_input(),
        "Roll a plugin back",
        SECTION,
        body,
    )
}
