//! Shipping and tax rates: each table edited as lines of text, one rate a line, and saved
//! whole through `orders::api::{replace_shipping_table, replace_tax_table}`, as the admin
//! API's `PUT /shipping-rates` and `PUT /tax-rates` are (checked, audited). A problem the
//! API names `[i].field` is said under the table as "line i+1".

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use maud::html;

use super::layout::{self, Form, FormErrors, Kind, field_with_hint, form_alert};
use super::session::{AdminSession, SignedIn};
use crate::app::AppState;
use crate::error::{Error, FieldError};
use crate::orders::api::{ShippingRate, TaxRate};
use crate::staff::Staff;

const SECTION: &str = "/admin/rates";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SECTION, get(rates_page))
        .route("/admin/rates/shipping", post(save_shipping))
        .route("/admin/rates/tax", post(save_tax))
}

const SHIPPING_HINT: &str = "One rate a line: code; name; country (ISO code, or * for anywhere else); \
    up to weight in grams; price; currency. For example: standard; Standard (2-4 days); NL; 5000; 4.95; EUR";
const TAX_HINT: &str = "One rate a line: country (ISO code, or * for anywhere else); rate in percent. \
    For example: NL; 21";

fn shipping_text(rates: &[ShippingRate]) -> String {
    rates
        .iter()
        .map(|r| {
            format!(
                "{}; {}; {}; {}; {}; {}",
                r.code,
                r.name,
                r.country,
                r.max_weight_grams,
                layout::amount(r.price_minor),
                r.currency
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn tax_text(rates: &[TaxRate]) -> String {
    rates
        .iter()
        .map(|r| format!("{}; {}", r.country, percent(r.rate_bp)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Basis points as a percent: 2100 as `21`, 950 as `9.5`.
fn percent(bp: i64) -> String {
    let text = layout::amount(bp);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

async fn rates_page(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    RawQuery(query): RawQuery,
) -> Response {
    let loaded = async {
        let shipping = crate::orders::api::read_shipping_rates(&state).await?;
        let tax = crate::orders::api::read_tax_rates(&state).await?;
        Ok::<_, Error>((shipping, tax))
    };
    let (shipping, tax) = match loaded.await {
        Ok(loaded) => loaded,
        Err(err) => return layout::error_page(&err, "rates"),
    };
    let form = Form::from_pairs(vec![
        ("shipping".to_owned(), shipping_text(&shipping)),
        ("tax".to_owned(), tax_text(&tax)),
    ]);
    let saved = layout::query_value(query.as_deref(), "done");
    show(
        &staff,
        &admin,
        &form,
        saved.as_deref(),
        &FormErrors::default(),
    )
}

fn show(
    staff: &Staff,
    admin: &AdminSession,
    form: &Form,
    saved: Option<&str>,
    errors: &FormErrors,
) -> Response {
    let may_save = super::may(staff.role, &Method::POST, "/admin/rates/shipping");
    let body = html! {
        h1 { "Shipping and tax rates" }
        @match saved {
            Some("shipping") => p.form-notice role="status" { "The shipping rates were saved." },
            Some("tax") => p.form-notice role="status" { "The tax rates were saved." },
            _ => {},
        }
        (form_alert(errors))
        form method="post" action="/admin/rates/shipping" novalidate {
            (admin.csrf_input())
            (field_with_hint("Shipping rates", "shipping", Kind::Area(8), form.get("shipping"), Some(SHIPPING_HINT), errors))
            @if may_save { button.button.primary type="submit" { "Save the shipping rates" } }
        }
        form method="post" action="/admin/rates/tax" novalidate {
            (admin.csrf_input())
            (field_with_hint("Tax rates", "tax", Kind::Area(6), form.get("tax"), Some(TAX_HINT), errors))
            @if may_save { button.button.primary type="submit" { "Save the tax rates" } }
        }
        p.hint { "Whether prices include tax is a setting: " a href="/admin/settings" { "Settings" } "." }
    };
    layout::page_with_status(
        errors.status(),
        staff,
        admin.csrf_input(),
        "Shipping and tax rates",
        "/admin/settings",
        body,
    )
}

/// The problems of a table's save as the form shows them: every one under `field`, an
/// API field `[i].name` as "line i+1, name: …".
fn table_errors(field: &str, err: &Error) -> Option<FormErrors> {
    let mut errors = FormErrors::from_error(err)?;
    errors.fields = errors
        .fields
        .iter()
        .map(|f| {
            let message = match f
                .field
                .strip_prefix('[')
                .and_then(|rest| rest.split_once("]."))
            {
                Some((i, name)) => {
                    let line = i.parse::<usize>().map_or(0, |i| i + 1);
                    format!("line {line}, {name}: {}", f.message)
                }
                None => f.message.clone(),
            };
            FieldError::new(field, message)
        })
        .collect();
    if errors.fields.is_empty() {
        let message = errors.form.clone().unwrap_or_default();
        errors.fields.push(FieldError::new(field, message));
    }
    // One message per field: the first, with how many more.
    let more = errors.fields.len() - 1;
    if more > 0 {
        errors.fields[0].message = format!("{} (and {more} more)", errors.fields[0].message);
    }
    Some(errors)
}

/// The lines of a table: trimmed, blank ones left out, with their line numbers.
fn lines(text: &str) -> Vec<(usize, Vec<String>)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            (
                i + 1,
                line.split(';').map(|c| c.trim().to_owned()).collect(),
            )
        })
        .collect()
}

fn parse_shipping(text: &str) -> Result<Vec<ShippingRate>, Error> {
    let mut rates = Vec::new();
    for (line, cells) in lines(text) {
        let bad = |what: &str| Error::invalid("shipping", format!("line {line}: {what}"));
        let [code, name, country, weight, price, currency] = cells.as_slice() else {
            return Err(bad("needs six parts separated by ;"));
        };
        rates.push(ShippingRate {
            code: code.clone(),
            name: name.clone(),
            country: country.to_uppercase(),
            max_weight_grams: weight
                .parse()
                .map_err(|_| bad("the weight must be whole grams"))?,
            price_minor: layout::parse_amount(price)
                .ok_or_else(|| bad("the price must be an amount such as 4.95"))?,
            currency: currency.to_uppercase(),
        });
    }
    Ok(rates)
}

fn parse_tax(text: &str) -> Result<Vec<TaxRate>, Error> {
    let mut rates = Vec::new();
    for (line, cells) in lines(text) {
        let bad = |what: &str| Error::invalid("tax", format!("line {line}: {what}"));
        let [country, rate] = cells.as_slice() else {
            return Err(bad("needs a country and a rate separated by ;"));
        };
        rates.push(TaxRate {
            country: country.to_uppercase(),
            rate_bp: layout::parse_amount(rate.trim_end_matches('%').trim())
                .ok_or_else(|| bad("the rate must be a percent such as 21 or 9.5"))?,
        });
    }
    Ok(rates)
}

async fn save_shipping(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let outcome = match parse_shipping(form.get("shipping")) {
        Ok(rates) => crate::orders::api::replace_shipping_table(&state, &staff.actor, &rates)
            .await
            .map(|_| ()),
        Err(err) => Err(err),
    };
    answer(&state, &staff, &admin, form, outcome, "shipping").await
}

async fn save_tax(
    State(state): State<AppState>,
    SignedIn(staff, admin): SignedIn,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let outcome = match parse_tax(form.get("tax")) {
        Ok(rates) => crate::orders::api::replace_tax_table(&state, &staff.actor, &rates)
            .await
            .map(|_| ()),
        Err(err) => Err(err),
    };
    answer(&state, &staff, &admin, form, outcome, "tax").await
}

/// On to the page saying which table was saved, or the page again with the typed table
/// (and the other one as stored) and its problems.
async fn answer(
    state: &AppState,
    staff: &Staff,
    admin: &AdminSession,
    form: Form,
    outcome: Result<(), Error>,
    table: &str,
) -> Response {
    let err = match outcome {
        Ok(()) => return layout::see_other(&format!("{SECTION}?done={table}")),
        Err(err) => err,
    };
    let Some(errors) = table_errors(table, &err) else {
        return layout::error_page(&err, "rates");
    };
    let other = if table == "shipping" {
        crate::orders::api::read_tax_rates(state)
            .await
            .map(|r| ("tax", tax_text(&r)))
    } else {
        crate::orders::api::read_shipping_rates(state)
            .await
            .map(|r| ("shipping", shipping_text(&r)))
    };
    let (other_name, other_text) = match other {
        Ok(other) => other,
        Err(err) => return layout::error_page(&err, "rates"),
    };
    let both = Form::from_pairs(vec![
        (table.to_owned(), form.get(table).to_owned()),
        (other_name.to_owned(), other_text),
    ]);
    show(staff, admin, &both, None, &errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_read_as_merchants_type_them() {
        let rates =
            parse_shipping("standard; Standard; nl; 5000; 4,95; eur\n\n* ; Any; *; 2000; 10; EUR")
                .unwrap();
        assert_eq!(rates.len(), 2);
        assert_eq!(
            (
                rates[0].country.as_str(),
                rates[0].price_minor,
                rates[0].currency.as_str()
            ),
            ("NL", 495, "EUR")
        );
        assert!(parse_shipping("standard; Standard; NL; 5000; 4.95").is_err());
        assert!(parse_shipping("standard; Standard; NL; heavy; 4.95; EUR").is_err());
        let tax = parse_tax("NL; 21\nDE; 19%\nFR; 5.5").unwrap();
        assert_eq!(
            tax.iter().map(|t| t.rate_bp).collect::<Vec<_>>(),
            vec![2100, 1900, 550]
        );
        assert_eq!(percent(2100), "21");
        assert_eq!(percent(550), "5.5");
        assert_eq!(percent(0), "0");
    }
}
