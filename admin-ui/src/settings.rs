//! The store's settings: stock (minimum shelf life, low-stock threshold), prices and tax,
//! subscriptions (notice, the dunning schedule, what happens after it and when stock is
//! out), loyalty values, reviews on erasure, search synonyms and, for the owner, who must
//! sign in with a second factor. One form through `inventory::api::change_settings`, as
//! the admin API's `PATCH /settings` is: the same checks, audit and cache invalidation.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::layout::{self, Form, FormErrors, Kind, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::error::{Error, FieldError, Result};
use crate::inventory::settings::{SettingsPatch, StoreSettings};
use crate::staff::{Permission, Staff};

const SECTION: &str = "/admin/settings";

pub fn routes() -> Router<AppState> {
    Router::new().route(SECTION, get(settings_page).post(save))
}

/// How a setting is typed in the form.
#[derive(Clone, Copy)]
enum Input {
    Number,
    /// Whole numbers separated by commas.
    Numbers,
    Text,
    Choice(&'static [(&'static str, &'static str)]),
}

/// A setting of the form: its key (the API's field), label, hint and input.
struct Setting {
    key: &'static str,
    label: &'static str,
    hint: &'static str,
    input: Input,
}

const fn setting(
    key: &'static str,
    label: &'static str,
    hint: &'static str,
    input: Input,
) -> Setting {
    Setting {
        key,
        label,
        hint,
        input,
    }
}

const YES_NO: &[(&str, &str)] = &[("true", "Yes"), ("false", "No")];

/// The form's sections and settings, in order.
const SECTIONS: &[(&str, &[Setting])] = &[
    (
        "Stock",
        &[
            setting(
                "min_shelf_life_days",
                "Minimum shelf life (days)",
                "A lot closer than this to its expiry is not sold: 0 to 3650.",
                Input::Number,
            ),
            setting(
                "low_stock_threshold",
                "Low-stock threshold (units)",
                "A variant with fewer units is reported low: 0 to 100000.",
                Input::Number,
            ),
        ],
    ),
    (
        "Prices and tax",
        &[setting(
            "prices_include_tax",
            "Prices include tax",
            "Yes: catalog prices are consumer prices with VAT, as in the EU.",
            Input::Choice(YES_NO),
        )],
    ),
    (
        "Subscriptions",
        &[
            setting(
                "subscription_notice_days",
                "Renewal notice (days before)",
                "The customer is told this many days before a renewal: 0 to 60.",
                Input::Number,
            ),
            setting(
                "subscription_retry_days",
                "Dunning: retry after (days)",
                "Days after the first decline to try again, increasing, e.g. 1, 3, 7 (at most 10; empty: no retries).",
                Input::Numbers,
            ),
            setting(
                "subscription_after_dunning",
                "When the retries run out",
                "What the subscription becomes.",
                Input::Choice(&[("pause", "Pause it"), ("cancel", "Cancel it")]),
            ),
            setting(
                "subscription_out_of_stock",
                "When an item is out of stock",
                "At renewal time.",
                Input::Choice(&[
                    ("skip", "Skip the cycle"),
                    ("wait", "Wait for stock, then skip"),
                    ("ship_available", "Ship what there is"),
                ]),
            ),
            setting(
                "subscription_stock_wait_days",
                "Wait for stock (days)",
                "With \"wait\": 1 to 30.",
                Input::Number,
            ),
        ],
    ),
    (
        "Loyalty",
        &[
            setting(
                "loyalty_point_value_minor",
                "A point is worth (cents)",
                "At checkout, in minor units: 0 to 10000 (0: points cannot be spent).",
                Input::Number,
            ),
            setting(
                "loyalty_min_redeem_points",
                "Fewest points a checkout spends",
                "0 to 1000000.",
                Input::Number,
            ),
            setting(
                "loyalty_max_redeem_percent",
                "Points pay at most (% of the goods)",
                "1 to 100.",
                Input::Number,
            ),
            setting(
                "loyalty_pending_days",
                "Points become spendable after (days)",
                "After the order is paid, so buying, spending and returning does not pay: 0 to 365.",
                Input::Number,
            ),
            setting(
                "loyalty_expiry_months",
                "Points expire after (months without an order)",
                "0: never; at most 120.",
                Input::Number,
            ),
            setting(
                "loyalty_max_points_per_event",
                "Most points one rule credits for one event",
                "1 to 10000000.",
                Input::Number,
            ),
        ],
    ),
    (
        "Reviews and search",
        &[
            setting(
                "reviews_kept_on_erasure",
                "Keep an erased customer's reviews",
                "Yes: they stay on the product pages, anonymous. No: deleted with the account.",
                Input::Choice(YES_NO),
            ),
            setting(
                "search_synonyms",
                "Search synonyms",
                "Groups separated by ; and the words of a group by =, e.g. vit c = vitamin c; moisturiser = moisturizer.",
                Input::Text,
            ),
        ],
    ),
];

/// The owner's setting: changing it needs staff.manage.
const TWO_FACTOR: Setting = setting(
    "staff_two_factor",
    "Staff must sign in with a second factor",
    "Sensitive roles: those holding plugins.manage, staff.manage or customers.read.",
    Input::Choice(&[
        ("optional", "Whoever turns it on"),
        ("sensitive_roles", "Sensitive roles"),
        ("all_staff", "Every staff member"),
    ]),
);

/// The settings as the form shows them, by key (from the API's JSON of them).
fn form_of(settings: &StoreSettings) -> Form {
    let json = serde_json::to_value(settings).unwrap_or(Value::Null);
    let pairs = json
        .as_object()
        .map(|object| {
            object
                .iter()
                .map(|(key, value)| {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        Value::Array(items) => items
                            .iter()
                            .map(Value::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        other => other.to_string(),
                    };
                    (key.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    Form::from_pairs(pairs)
}

async fn settings_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let loaded = match state.db.pool.acquire().await {
        Ok(mut conn) => crate::inventory::settings::load(&mut conn).await,
        Err(err) => Err(err.into()),
    };
    let settings = match loaded {
        Ok(settings) => settings,
        Err(err) => return layout::error_page(&err, "settings"),
    };
    let saved = layout::query_value(query.as_deref(), "done").is_some();
    show(
        &staff,
        &admin,
        &form_of(&settings),
        &FormErrors::default(),
        saved,
    )
}

fn show(
    staff: &Staff,
    admin: &AdminSession,
    form: &Form,
    errors: &FormErrors,
    saved: bool,
) -> Response {
    let may_write = super::may(staff.role, &axum::http::Method::POST, SECTION);
    let owner = staff.role.allows(Permission::StaffManage);
    let body = html! {
        h1 { "Settings" }
        @if saved { p.form-notice role="status" { "Saved: every node uses them from now on." } }
        (form_alert(errors))
        form method="post" action=(SECTION) novalidate {
            (admin.csrf_input())
            @for (title, settings) in SECTIONS {
                fieldset {
                    legend { (title) }
                    @for s in *settings { (input(s, form, errors)) }
                }
            }
            @if owner {
                fieldset { legend { "Staff sign-in" } (input(&TWO_FACTOR, form, errors)) }
            }
            @if may_write { button.button.primary type="submit" { "Save the settings" } }
        }
        @if super::may(staff.role, &axum::http::Method::GET, "/admin/rates") {
            p { a href="/admin/rates" { "Shipping and tax rates" } " are tables of their own." }
        }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Settings",
        SECTION,
        body,
    )
}

fn input(s: &Setting, form: &Form, errors: &FormErrors) -> Markup {
    let kind = match s.input {
        Input::Choice(options) => Kind::Select(options),
        Input::Number => Kind::Number,
        Input::Text if s.key == "search_synonyms" => Kind::Area(3),
        _ => Kind::Text,
    };
    field_with_hint(s.label, s.key, kind, form.get(s.key), Some(s.hint), errors)
}

/// The patch the form posts, as the API's JSON of it; every unreadable field named.
fn patch_of(form: &Form, owner: bool) -> Result<SettingsPatch> {
    let mut json = Map::new();
    let mut problems: Vec<FieldError> = Vec::new();
    let every = SECTIONS
        .iter()
        .flat_map(|(_, settings)| settings.iter())
        .chain(owner.then_some(&TWO_FACTOR));
    for s in every {
        let text = form.get(s.key).trim();
        let value = match s.input {
            Input::Number if text.is_empty() => continue,
            Input::Number => match text.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => {
                    problems.push(FieldError::new(s.key, "must be a whole number"));
                    continue;
                }
            },
            Input::Numbers => {
                let parsed: std::result::Result<Vec<i64>, _> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::parse)
                    .collect();
                match parsed {
                    Ok(days) => Value::from(days),
                    Err(_) => {
                        problems.push(FieldError::new(
                            s.key,
                            "must be whole numbers separated by commas",
                        ));
                        continue;
                    }
                }
            }
            Input::Choice(options) if options == YES_NO => Value::Bool(text == "true"),
            Input::Choice(_) | Input::Text => Value::String(text.to_owned()),
        };
        json.insert(s.key.to_owned(), value);
    }
    if !problems.is_empty() {
        return Err(Error::Validation(problems));
    }
    serde_json::from_value(Value::Object(json))
        .map_err(|e| Error::invalid("settings", format!("cannot be read: {e}")))
}

async fn save(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let owner = staff.role.allows(Permission::StaffManage);
    let outcome = match patch_of(&form, owner) {
        Ok(patch) => crate::inventory::api::change_settings(&state, &staff, &patch).await,
        Err(err) => Err(err),
    };
    match outcome {
        Ok(_) => layout::see_other(&format!("{SECTION}?done=saved")),
        Err(err) => match FormErrors::from_error(&err) {
            Some(errors) => show(&staff, &admin, &form, &errors, false),
            None => layout::error_page(&err, "settings"),
        },
    }
}
