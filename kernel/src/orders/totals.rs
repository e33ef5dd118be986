//! What a cart costs delivered to a country by a shipping method: goods after the pricing
//! rules, shipping, tax and the total. The checkout quote
//! (`POST /api/v1/carts/{id}/checkout-quote`, the storefront's review) and the checkout
//! itself compute it here, with the same code, so what the shopper is shown is what they
//! are charged.
//!
//! Two ways to price, by the store setting `prices_include_tax`:
//! - net (the US way): catalog prices exclude tax; tax at the destination's rate is added
//!   on goods and shipping;
//! - gross (EU consumer prices): catalog prices and shipping rates include VAT; the total
//!   is what the shelf said, and the VAT included is broken out at the destination's rate.
//!
//! Either way tax is computed per line (and on shipping, and on cart-wide adjustments),
//! rounded half up, and the order's tax is their sum, so every line's tax adds up to it.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::cart::{Cart, CartLine};
use crate::error::{Error, Result};
use crate::orders::OrderLine;
use crate::plugins::pricing::AppliedAdjustment;

/// Where a quote is for.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CheckoutQuoteRequest)]
pub struct QuoteRequest {
    /// The destination country: two letters, ISO 3166-1 alpha-2 (e.g. `NL`; lower case
    /// and surrounding whitespace are accepted), where the shop ships this cart.
    #[schema(
        pattern = r"^[\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[A-Za-z]{2}[\t-\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$",
        example = "NL"
    )]
    pub country: String,
    /// The `code` of a shipping rate to the country; unset: the cheapest method to it.
    #[serde(default)]
    #[schema(value_type = Option<crate::http::schema::ShippingMethodCode>)]
    pub shipping_method: Option<String>,
    /// Loyalty points to spend on the order (signed-in customers; see
    /// `GET /api/v1/account/loyalty` for the balance and the shop's rules): a cart
    /// adjustment of their value.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub redeem_points: Option<i64>,
}

/// A shipping method the cart can go by to the country, and what the order would cost
/// with it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShippingChoice {
    pub code: String,
    pub name: String,
    pub shipping_minor: i64,
    pub total_minor: i64,
}

/// Everything the order will cost, as checkout will charge it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckoutQuote {
    pub currency: String,
    pub country: String,
    /// Catalog prices and shipping include tax (VAT); tax is then part of the total, not
    /// added to it.
    pub prices_include_tax: bool,
    /// The destination's tax rate in basis points (2100 = 21 %).
    pub tax_rate_bp: i64,
    pub lines: Vec<OrderLine>,
    /// Adjustments to the whole cart (not to one line), with their reasons.
    pub cart_adjustments: Vec<AppliedAdjustment>,
    /// The lines before adjustments.
    pub subtotal_minor: i64,
    /// Every adjustment: lines' and the cart's.
    pub adjustments_minor: i64,
    /// The goods after adjustments.
    pub goods_minor: i64,
    pub shipping_method: String,
    pub shipping_method_name: String,
    pub shipping_minor: i64,
    /// The tax on shipping (included in `shipping_minor` when prices include tax).
    pub shipping_tax_minor: i64,
    /// The order's tax: the lines', the cart adjustments' and shipping's.
    pub tax_minor: i64,
    /// What the checkout charges: `goods + shipping`, plus `tax` when prices exclude it.
    pub total_minor: i64,
    /// Loyalty points the order spends (their value is the cart adjustment of rule
    /// `loyalty`).
    pub points_redeemed: i64,
    /// Every method to this country for this parcel, with the total by it, cheapest
    /// first.
    pub methods: Vec<ShippingChoice>,
}

/// The order line's title: the product's name with the variant's, as the shopper saw
/// them (later catalog edits do not rewrite what was bought).
pub fn line_title(line: &CartLine) -> String {
    let (product, variant) = (&line.facts.product_name, &line.title);
    if product.is_empty() || variant.is_empty() {
        format!("{product}{variant}")
    } else {
        format!("{product} – {variant}")
    }
}

/// Tax on a net amount at a rate in basis points, rounded half up.
pub fn tax_on(amount: i64, rate_bp: i64) -> i64 {
    (amount.saturating_mul(rate_bp) + 5_000).div_euclid(10_000)
}

/// The tax included in a gross amount at a rate in basis points, rounded half up.
pub fn tax_included(amount: i64, rate_bp: i64) -> i64 {
    let divisor = 10_000 + rate_bp;
    (amount.saturating_mul(rate_bp) + divisor / 2).div_euclid(divisor)
}

/// The cart's parcel weight.
fn weight_grams(cart: &Cart) -> i64 {
    cart.lines.iter().fold(0i64, |total, line| {
        total.saturating_add(
            line.facts
                .weight_grams
                .saturating_mul(i64::from(line.quantity)),
        )
    })
}

/// A shipping method's price to the destination: its own country's rate before a `*`
/// one, the lightest band that takes the parcel.
#[derive(Debug, Clone)]
struct Rate {
    code: String,
    name: String,
    price_minor: i64,
}

/// The methods that ship this parcel to `country` (one rate each), cheapest first, and
/// the country's tax rate: one statement.
async fn rates_to(
    state: &AppState,
    country: &str,
    weight: i64,
    currency: &str,
) -> Result<(Vec<Rate>, i64)> {
    let rows = sqlx::query(
        "SELECT code, name, country, max_weight_grams, price_minor,
            (SELECT rate_bp FROM tax_rates WHERE country = $1 OR country = '*'
             ORDER BY CASE WHEN country = '*' THEN 1 ELSE 0 END LIMIT 1)
         FROM shipping_rates
         WHERE (country = $1 OR country = '*') AND max_weight_grams >= $2 AND currency = $3
         ORDER BY code, CASE WHEN country = '*' THEN 1 ELSE 0 END, max_weight_grams",
    )
    .bind(country)
    .bind(weight)
    .bind(currency)
    .fetch_all(&state.db.pool)
    .await?;
    let mut rates: Vec<Rate> = Vec::new();
    let mut tax_bp = None;
    for row in &rows {
        let code: String = row.try_get(0)?;
        if tax_bp.is_none() {
            tax_bp = Some(row.try_get::<Option<i64>, _>(5)?.unwrap_or(0));
        }
        // Rows come by code, the best rate of each first.
        if rates.last().is_some_and(|r| r.code == code) {
            continue;
        }
        rates.push(Rate {
            code,
            name: row.try_get(1)?,
            price_minor: row.try_get(4)?,
        });
    }
    rates.sort_by(|a, b| (a.price_minor, &a.code).cmp(&(b.price_minor, &b.code)));
    Ok((rates, tax_bp.unwrap_or(0)))
}

/// The totals of `cart` shipped for `shipping` at tax rate `rate_bp`: pure arithmetic.
fn priced(
    cart: &Cart,
    shipping: i64,
    rate_bp: i64,
    prices_include_tax: bool,
) -> (Vec<OrderLine>, i64, i64, i64) {
    let tax = |amount: i64| {
        if prices_include_tax {
            tax_included(amount, rate_bp)
        } else {
            tax_on(amount, rate_bp)
        }
    };
    let lines: Vec<OrderLine> = cart
        .lines
        .iter()
        .map(|line| OrderLine {
            sku: line.sku.clone(),
            title: line_title(line),
            quantity: i64::from(line.quantity),
            subscription: line.subscription,
            unit_price_minor: line.unit_price.amount_minor,
            adjustments: line.adjustments.clone(),
            total_minor: line.total.amount_minor,
            tax_minor: tax(line.total.amount_minor),
        })
        .collect();
    let cart_adjustments: i64 = cart.cart_adjustments.iter().map(|a| a.amount_minor).sum();
    let shipping_tax = tax(shipping);
    let tax_total = lines.iter().map(|l| l.tax_minor).fold(
        tax(cart_adjustments).saturating_add(shipping_tax),
        i64::saturating_add,
    );
    let before_tax = cart.total_minor.saturating_add(shipping);
    let total = if prices_include_tax {
        before_tax
    } else {
        before_tax.saturating_add(tax_total)
    };
    (lines, shipping_tax, tax_total, total)
}

/// The quote for `cart` to `country` by `method` (unset: the cheapest). `country_field`
/// names the country in errors (`country` in a quote, `shipping_address.country` at
/// checkout).
pub async fn quote(
    state: &AppState,
    cart: &Cart,
    country: &str,
    method: Option<&str>,
    country_field: &str,
) -> Result<CheckoutQuote> {
    if cart.lines.is_empty() {
        return Err(Error::conflict(None, "the cart is empty"));
    }
    let country = country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::invalid(
            country_field,
            "must be a two-letter country code (ISO 3166-1 alpha-2, e.g. NL)",
        ));
    }
    let currency = cart.currency.clone().unwrap_or_default();
    let (rates, rate_bp) = rates_to(state, &country, weight_grams(cart), &currency).await?;
    if rates.is_empty() {
        return Err(Error::invalid(
            country_field,
            format!("this shop does not ship this order to {country}"),
        ));
    }
    let chosen = match method.map(str::trim).filter(|m| !m.is_empty()) {
        None => &rates[0],
        Some(code) => rates.iter().find(|r| r.code == code).ok_or_else(|| {
            Error::invalid(
                "shipping_method",
                format!("no `{code}` shipping to {country} for this order"),
            )
        })?,
    };
    let settings = state.cache.store_settings_from(&state.db).await?;
    let include = settings.prices_include_tax;
    let methods = rates
        .iter()
        .map(|rate| ShippingChoice {
            code: rate.code.clone(),
            name: rate.name.clone(),
            shipping_minor: rate.price_minor,
            total_minor: priced(cart, rate.price_minor, rate_bp, include).3,
        })
        .collect();
    let (lines, shipping_tax, tax, total) = priced(cart, chosen.price_minor, rate_bp, include);
    Ok(CheckoutQuote {
        currency,
        country,
        prices_include_tax: include,
        tax_rate_bp: rate_bp,
        lines,
        cart_adjustments: cart.cart_adjustments.clone(),
        subtotal_minor: cart.subtotal_minor,
        adjustments_minor: cart.adjustments_total_minor,
        goods_minor: cart.total_minor,
        shipping_method: chosen.code.clone(),
        shipping_method_name: chosen.name.clone(),
        shipping_minor: chosen.price_minor,
        shipping_tax_minor: shipping_tax,
        tax_minor: tax,
        total_minor: total,
        points_redeemed: 0,
        methods,
    })
}

/// [`quote`] with loyalty points spent on the goods: checked against the customer's
/// balance and the shop's rules (a 422 naming `redeem_points` when they may not be
/// spent), then priced as a cart adjustment.
pub async fn quote_with_points(
    state: &AppState,
    cart: &Cart,
    customer_id: Option<i64>,
    redeem_points: Option<i64>,
    (country, method, country_field): (&str, Option<&str>, &str),
) -> Result<CheckoutQuote> {
    let redemption = crate::loyalty::redemption(
        state,
        customer_id,
        redeem_points.unwrap_or(0),
        cart.total_minor,
    )
    .await?;
    let Some(redemption) = redemption else {
        return quote(state, cart, country, method, country_field).await;
    };
    let spent = crate::loyalty::apply_redemption(cart, &redemption);
    let mut quote = quote(state, &spent, country, method, country_field).await?;
    quote.points_redeemed = redemption.points;
    Ok(quote)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tax_rounds_half_up_both_ways() {
        // 39.98 + 4.95 at 21 %: 8.3958 + 1.0395 → 8.40 + 1.04.
        assert_eq!(tax_on(3998, 2100), 840);
        assert_eq!(tax_on(495, 2100), 104);
        // €14.99 with 21 % VAT included: 14.99 × 21/121 = 2.6015 → 2.60.
        assert_eq!(tax_included(1499, 2100), 260);
        // 19 %: 14.99 × 19/119 = 2.3934 → 2.39.
        assert_eq!(tax_included(1499, 1900), 239);
        assert_eq!(tax_included(0, 2100), 0);
        assert_eq!(tax_on(1000, 0), 0);
    }
}
