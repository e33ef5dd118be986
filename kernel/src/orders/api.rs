//! Order routes: checkout of a cart, the customer's orders, and staff's order handling,
//! shipping rates and tax rates.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::totals::{CheckoutQuote, QuoteRequest};
use super::{CheckoutRequest, Order, RefundRequest, Transition};
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Problems, Result};
use crate::http::extract::{CustomerAuth, JsonBody, MaybeCustomer, PathParam, StaffAuth};
use crate::http::schema::{CountryOrAny, CurrencyCode, ShippingMethodCode};

/// Under `/api/v1`.
pub fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(checkout))
        .routes(routes!(checkout_quote))
        .routes(routes!(list_shipping_rates))
}

/// Under `/api/v1/account`.
pub fn account_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_orders))
        .routes(routes!(my_order))
}

/// Under `/api/v1/admin`.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list_orders))
        .routes(routes!(admin_get_order))
        .routes(routes!(admin_transition))
        .routes(routes!(admin_refund))
        .routes(routes!(replace_shipping_rates))
        .routes(routes!(replace_tax_rates, list_tax_rates))
}

/// Places an order from the cart: stock reserved first expired first out, totals with
/// shipping and tax. Needs an `Idempotency-Key` header: a retry with the same key answers
/// the same order (200) instead of placing another.
#[utoipa::path(post, path = "/carts/{id}/checkout", tag = "orders", params(("id" = String, Path),
    ("Idempotency-Key" = String, Header, min_length = 1, max_length = 200,
        pattern = "^[A-Za-z0-9._:-]{1,200}$",
        description = "The same key never places a second order: 1 to 200 letters, digits, `-`, `_`, `.`, `:`")),
    request_body = CheckoutRequest, security((), ("customer_token" = [])),
    responses((status = 201, body = Order), (status = 200, body = Order),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn checkout(
    State(state): State<AppState>,
    MaybeCustomer(customer): MaybeCustomer,
    PathParam(id): PathParam<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<CheckoutRequest>,
) -> Result<(StatusCode, Json<Order>)> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_owned();
    let (order, created) = super::checkout(&state, &id, customer.as_ref(), &key, input).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(order)))
}

/// What the cart costs delivered to a country by a shipping method: goods after the
/// pricing rules, shipping, tax (included or added, per line) and the total, with every
/// method to that country. Computed by the code the checkout uses: send its
/// `total_minor` as the checkout's `expected_total_minor`, and the checkout charges that
/// or refuses.
#[utoipa::path(post, path = "/carts/{id}/checkout-quote", tag = "orders", params(("id" = String, Path)),
    request_body = QuoteRequest, security((), ("customer_token" = [])),
    responses((status = 200, body = CheckoutQuote),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn checkout_quote(
    State(state): State<AppState>,
    MaybeCustomer(customer): MaybeCustomer,
    PathParam(id): PathParam<String>,
    JsonBody(input): JsonBody<QuoteRequest>,
) -> Result<Json<CheckoutQuote>> {
    let cart = crate::cart::get(&state, &id, customer.as_ref()).await?;
    Ok(Json(
        super::totals::quote_with_points(
            &state,
            &cart,
            customer.as_ref().map(|c| c.customer_id),
            input.redeem_points,
            (&input.country, input.shipping_method.as_deref(), "country"),
        )
        .await?,
    ))
}

/// The signed-in customer's orders, newest first, with status and tracking numbers.
#[utoipa::path(get, path = "/orders", tag = "account", security(("customer_token" = [])),
    responses((status = 200, body = Vec<Order>), (status = 401, body = ErrorBody)))]
async fn my_orders(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Json<Vec<Order>>> {
    Ok(Json(
        super::list_for_customer(&state, auth.customer_id).await?,
    ))
}

/// One of the signed-in customer's orders (another's is not found).
#[utoipa::path(get, path = "/orders/{number}", tag = "account", params(("number" = String, Path)),
    security(("customer_token" = [])),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody)))]
async fn my_order(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    PathParam(number): PathParam<String>,
) -> Result<Json<Order>> {
    Ok(Json(
        super::get_for_customer(&state, auth.customer_id, &number).await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSummary {
    pub number: String,
    pub status: String,
    pub total_minor: i64,
    pub currency: String,
    pub created_at: String,
}

/// Recent orders, newest first (at most 200).
#[utoipa::path(get, path = "/orders", tag = "admin-orders", security(("staff_token" = [])),
    responses((status = 200, body = Vec<OrderSummary>)))]
async fn admin_list_orders(State(state): State<AppState>) -> Result<Json<Vec<OrderSummary>>> {
    let rows = sqlx::query(
        "SELECT number, status, total_minor, currency, created_at FROM orders ORDER BY id DESC LIMIT 200",
    )
    .fetch_all(&state.db.pool)
    .await?;
    let orders = rows
        .iter()
        .map(|r| {
            Ok(OrderSummary {
                number: r.try_get(0)?,
                status: r.try_get(1)?,
                total_minor: r.try_get(2)?,
                currency: r.try_get(3)?,
                created_at: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Json(orders))
}

#[utoipa::path(get, path = "/orders/{number}", tag = "admin-orders", params(("number" = String, Path)),
    security(("staff_token" = [])),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody)))]
async fn admin_get_order(
    State(state): State<AppState>,
    PathParam(number): PathParam<String>,
) -> Result<Json<Order>> {
    Ok(Json(super::get_for_staff(&state, &number).await?))
}

/// Moves an order to another state: pending → paid | cancelled; paid → fulfilled (with a
/// tracking number) | cancelled | refunded; fulfilled → delivered | refunded; delivered →
/// refunded. Anything else is a 409. Cancelling releases the reserved stock.
#[utoipa::path(post, path = "/orders/{number}/transitions", tag = "admin-orders",
    params(("number" = String, Path)), request_body = Transition, security(("staff_token" = [])),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn admin_transition(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(number): PathParam<String>,
    JsonBody(change): JsonBody<Transition>,
) -> Result<Json<Order>> {
    Ok(Json(
        super::transition(&state, &staff.actor, &number, change).await?,
    ))
}

/// One shipping rate: a method (`code`) to a country (`*`: anywhere else) up to a weight.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingRate {
    #[schema(value_type = ShippingMethodCode)]
    pub code: String,
    /// 1 to 100 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*[^\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00-\x1F\x7F-\x9F]*$",
        example = "Standard (2-4 days)"
    )]
    pub name: String,
    #[schema(value_type = CountryOrAny)]
    pub country: String,
    #[schema(minimum = 1)]
    pub max_weight_grams: i64,
    #[schema(minimum = 0)]
    pub price_minor: i64,
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
}

/// The body of `PUT /api/v1/admin/shipping-rates`: the whole table, at most 1000 rates,
/// one per code, country and weight.
pub struct ShippingRateTable;

impl utoipa::PartialSchema for ShippingRateTable {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("ShippingRate"))
            .max_items(Some(1000))
            .into()
    }
}

impl ToSchema for ShippingRateTable {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((ShippingRate::name().into(), ShippingRate::schema()));
    }
}

pub(crate) async fn read_shipping_rates(state: &AppState) -> Result<Vec<ShippingRate>> {
    let rows = sqlx::query(
        "SELECT code, name, country, max_weight_grams, price_minor, currency FROM shipping_rates
         ORDER BY code, country, max_weight_grams",
    )
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ShippingRate {
                code: r.try_get(0)?,
                name: r.try_get(1)?,
                country: r.try_get(2)?,
                max_weight_grams: r.try_get(3)?,
                price_minor: r.try_get(4)?,
                currency: r.try_get(5)?,
            })
        })
        .collect()
}

/// The shipping rate table: methods by country and weight.
#[utoipa::path(get, path = "/shipping-rates", tag = "orders",
    responses((status = 200, body = Vec<ShippingRate>)))]
async fn list_shipping_rates(State(state): State<AppState>) -> Result<Json<Vec<ShippingRate>>> {
    Ok(Json(read_shipping_rates(&state).await?))
}

fn country_field(problems: &mut Problems, field: &str, country: &str) {
    problems.check(
        country == "*" || crate::accounts::addresses::is_country_code(country),
        field,
        "must be an ISO 3166-1 alpha-2 country code or `*`",
    );
}

/// Replaces the whole shipping rate table.
#[utoipa::path(put, path = "/shipping-rates", tag = "admin-orders", request_body = ShippingRateTable,
    security(("staff_token" = [])),
    responses((status = 200, body = Vec<ShippingRate>), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn replace_shipping_rates(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(rates): JsonBody<Vec<ShippingRate>>,
) -> Result<Json<Vec<ShippingRate>>> {
    Ok(Json(
        replace_shipping_table(&state, &staff.actor, &rates).await?,
    ))
}

/// Replaces the whole shipping rate table, checked and audited (the API's and the admin
/// page's); problems are named `[i].field`.
pub async fn replace_shipping_table(
    state: &AppState,
    actor: &str,
    rates: &[ShippingRate],
) -> Result<Vec<ShippingRate>> {
    let mut problems = Problems::new();
    problems.check(rates.len() <= 1000, "body", "at most 1000 rates");
    for (i, rate) in rates.iter().enumerate() {
        let f = |name: &str| format!("[{i}].{name}");
        problems.check(
            !rate.code.is_empty()
                && rate.code.len() <= 64
                && rate
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            f("code"),
            "must be 1 to 64 letters, digits, `-` or `_`",
        );
        problems.check(
            !rate.name.trim().is_empty()
                && rate.name.chars().count() <= 100
                && !rate.name.chars().any(char::is_control),
            f("name"),
            "must be 1 to 100 characters",
        );
        country_field(&mut problems, &f("country"), &rate.country);
        problems.check(
            rate.max_weight_grams > 0,
            f("max_weight_grams"),
            "must be positive",
        );
        problems.check(
            rate.price_minor >= 0,
            f("price_minor"),
            "must not be negative",
        );
        problems.check(
            rate.currency.len() == 3 && rate.currency.bytes().all(|b| b.is_ascii_uppercase()),
            f("currency"),
            "must be an ISO 4217 code such as EUR",
        );
    }
    problems.into_result()?;
    let before = read_shipping_rates(state).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM shipping_rates")
        .execute(&mut *tx)
        .await?;
    for rate in rates {
        let inserted = sqlx::query(
            "INSERT INTO shipping_rates (code, name, country, max_weight_grams, price_minor, currency)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&rate.code)
        .bind(rate.name.trim())
        .bind(&rate.country)
        .bind(rate.max_weight_grams)
        .bind(rate.price_minor)
        .bind(&rate.currency)
        .execute(&mut *tx)
        .await;
        if let Err(err) = &inserted
            && crate::store::is_unique_violation(err)
        {
            return Err(Error::conflict(
                Some("body"),
                format!(
                    "two rates for `{}` to {} up to {} g",
                    rate.code, rate.country, rate.max_weight_grams
                ),
            ));
        }
        inserted?;
    }
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "shipping_rates.replaced",
            target_type: "settings",
            target_id: "shipping_rates".to_owned(),
            before: Some(serde_json::to_value(&before).map_err(anyhow::Error::from)?),
            after: Some(serde_json::to_value(rates).map_err(anyhow::Error::from)?),
        },
    )
    .await?;
    tx.commit().await?;
    read_shipping_rates(state).await
}

/// A tax rate for a country (`*`: anywhere else) in basis points (2100 = 21%).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxRate {
    #[schema(value_type = CountryOrAny)]
    pub country: String,
    /// 0 to 10000 basis points.
    #[schema(minimum = 0, maximum = 10_000)]
    pub rate_bp: i64,
}

pub(crate) async fn read_tax_rates(state: &AppState) -> Result<Vec<TaxRate>> {
    let rows = sqlx::query("SELECT country, rate_bp FROM tax_rates ORDER BY country")
        .fetch_all(&state.db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TaxRate {
                country: r.try_get(0)?,
                rate_bp: r.try_get(1)?,
            })
        })
        .collect()
}

#[utoipa::path(get, path = "/tax-rates", tag = "admin-orders", security(("staff_token" = [])),
    responses((status = 200, body = Vec<TaxRate>)))]
async fn list_tax_rates(State(state): State<AppState>) -> Result<Json<Vec<TaxRate>>> {
    Ok(Json(read_tax_rates(&state).await?))
}

/// Replaces the whole tax rate table.
#[utoipa::path(put, path = "/tax-rates", tag = "admin-orders", request_body = Vec<TaxRate>,
    security(("staff_token" = [])),
    responses((status = 200, body = Vec<TaxRate>), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn replace_tax_rates(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(rates): JsonBody<Vec<TaxRate>>,
) -> Result<Json<Vec<TaxRate>>> {
    Ok(Json(replace_tax_table(&state, &staff.actor, &rates).await?))
}

/// Replaces the whole tax rate table, checked and audited (the API's and the admin
/// page's); problems are named `[i].field`.
pub async fn replace_tax_table(
    state: &AppState,
    actor: &str,
    rates: &[TaxRate],
) -> Result<Vec<TaxRate>> {
    let mut problems = Problems::new();
    for (i, rate) in rates.iter().enumerate() {
        country_field(&mut problems, &format!("[{i}].country"), &rate.country);
        problems.check(
            (0..=10_000).contains(&rate.rate_bp),
            format!("[{i}].rate_bp"),
            "must be between 0 and 10000 basis points",
        );
    }
    problems.into_result()?;
    let before = read_tax_rates(state).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM tax_rates")
        .execute(&mut *tx)
        .await?;
    for rate in rates {
        let inserted = sqlx::query("INSERT INTO tax_rates (country, rate_bp) VALUES ($1, $2)")
            .bind(&rate.country)
            .bind(rate.rate_bp)
            .execute(&mut *tx)
            .await;
        if let Err(err) = &inserted
            && crate::store::is_unique_violation(err)
        {
            return Err(Error::conflict(
                Some("body"),
                format!("two rates for {}", rate.country),
            ));
        }
        inserted?;
    }
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "tax_rates.replaced",
            target_type: "settings",
            target_id: "tax_rates".to_owned(),
            before: Some(serde_json::to_value(&before).map_err(anyhow::Error::from)?),
            after: Some(serde_json::to_value(rates).map_err(anyhow::Error::from)?),
        },
    )
    .await?;
    tx.commit().await?;
    read_tax_rates(state).await
}

/// Refunds part of a paid order (`amount_minor`) or what is left of it (no amount)
/// through the payment adapter; fully refunded, the order becomes `refunded`. The same
/// request sent again is the same refund, not a second one.
#[utoipa::path(post, path = "/orders/{number}/refunds", tag = "admin-orders",
    params(("number" = String, Path)), request_body = RefundRequest, security(("staff_token" = [])),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn admin_refund(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(number): PathParam<String>,
    JsonBody(input): JsonBody<RefundRequest>,
) -> Result<Json<Order>> {
    Ok(Json(
        super::refund(&state, &staff.actor, &number, input).await?,
    ))
}
