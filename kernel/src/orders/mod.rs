//! Orders: checkout turns an open cart into an order in one transaction (lots reserved
//! first expired first out, the order, its lines and its event), idempotent by the
//! client's `Idempotency-Key`. Orders then move through explicit states; anything else
//! is a 409.
//!
//! Identity on an order (the email and the shipping address) is encrypted like a
//! customer's; what was bought, the totals and the state are plain, so they can stay for
//! accounting when a customer is erased.

pub mod api;
pub mod history;
pub mod reconcile;
pub mod totals;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::accounts::Authenticated;
use crate::app::AppState;
use crate::error::{Error, Problems, Result};
use crate::http::schema::{
    CountryCode, Email, PaymentToken, PostalCode, ShippingMethodCode, SingleLine64, SingleLine100,
    SingleLine200, SingleLineOrBlank100, SingleLineOrBlank200,
};
use crate::inventory::{StockChange, StockReason};
use crate::plugins::pricing::AppliedAdjustment;

pub(crate) const EMAIL_CONTEXT: &str = "orders.email";
pub(crate) const ADDRESS_CONTEXT: &str = "orders.shipping_address";
pub(crate) const PAYMENT_TOKEN_CONTEXT: &str = "orders.payment_token";

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Placed, stock reserved, payment not yet taken.
    Pending,
    Paid,
    /// Shipped, with a tracking number.
    Fulfilled,
    Delivered,
    /// Stock released.
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Fulfilled => "fulfilled",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the order's payment was taken: paid, shipped, delivered, or refunded since
    /// (what it brings in is its total less what was refunded). Pending and cancelled
    /// orders brought in nothing.
    pub fn was_paid(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid
                | OrderStatus::Fulfilled
                | OrderStatus::Delivered
                | OrderStatus::Refunded
        )
    }

    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Fulfilled,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];

    /// The states an order may move to from this one.
    pub fn next(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Pending => &[Paid, Cancelled],
            Paid => &[Fulfilled, Cancelled, Refunded],
            Fulfilled => &[Delivered, Refunded],
            Delivered => &[Refunded],
            Cancelled | Refunded => &[],
        }
    }
}

/// A shipping address given at checkout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingAddress {
    #[schema(value_type = SingleLine200)]
    pub name: String,
    #[schema(value_type = SingleLine200)]
    pub line1: String,
    #[serde(default)]
    #[schema(value_type = Option<SingleLineOrBlank200>)]
    pub line2: Option<String>,
    #[schema(value_type = SingleLine100)]
    pub city: String,
    #[serde(default)]
    #[schema(value_type = Option<SingleLineOrBlank100>)]
    pub region: Option<String>,
    #[schema(value_type = PostalCode)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, of a country the shop ships this order to.
    #[schema(value_type = CountryCode)]
    pub country: String,
}

/// Checkout input.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// Where confirmations go. A signed-in customer may leave it out (their account's);
    /// a guest must give it.
    #[serde(default)]
    #[schema(value_type = Option<Email>)]
    pub email: Option<String>,
    pub shipping_address: ShippingAddress,
    /// The `code` of a shipping rate to the country (see `GET /api/v1/shipping-rates`).
    #[schema(value_type = ShippingMethodCode)]
    pub shipping_method: String,
    /// The payment processor's token for the card (the browser sends the card to the
    /// processor, never to us). With it the order is authorised at once; without it the
    /// order waits, pending, with its stock reserved.
    #[serde(default)]
    #[schema(value_type = Option<PaymentToken>)]
    pub payment_token: Option<String>,
    /// The total the shopper was shown (a checkout quote's `total_minor`). When the
    /// order would cost anything else (a price, rate or rule changed since), nothing is
    /// placed or charged: 409 `total_changed` with the new quote.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub expected_total_minor: Option<i64>,
    /// Loyalty points to spend (signed-in customers): taken in the order's transaction,
    /// given back if the order is cancelled or its payment declined. Send the same
    /// number the quote had.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub redeem_points: Option<i64>,
}

/// A line of an order (and of a checkout quote), as the shopper bought it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLine {
    pub sku: String,
    /// The product's name with the variant's, e.g. `Magnesium Glycinate – 60 capsules`.
    pub title: String,
    pub quantity: i64,
    pub subscription: bool,
    pub unit_price_minor: i64,
    pub adjustments: Vec<AppliedAdjustment>,
    pub total_minor: i64,
    /// The line's tax: included in `total_minor` when the order's prices include tax,
    /// else added to it.
    pub tax_minor: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Order {
    pub number: String,
    pub status: OrderStatus,
    pub currency: String,
    pub lines: Vec<OrderLine>,
    pub subtotal_minor: i64,
    pub adjustments_minor: i64,
    pub shipping_minor: i64,
    /// The tax of the lines and shipping: included in their prices when
    /// `prices_include_tax`, else added to the total.
    pub tax_minor: i64,
    /// The prices (and shipping) include tax (VAT), as EU consumer prices do.
    pub prices_include_tax: bool,
    /// The destination's tax rate, in basis points (2100 = 21 %).
    pub tax_rate_bp: i64,
    pub total_minor: i64,
    pub shipping_method: String,
    pub tracking_number: Option<String>,
    /// The processor's reference of the payment, once authorised.
    pub payment_reference: Option<String>,
    pub refunded_minor: i64,
    /// Loyalty points spent on the order.
    pub points_redeemed: i64,
    /// Decrypted for the customer and for staff; absent once erased.
    pub email: Option<String>,
    pub shipping_address: Option<ShippingAddress>,
    pub created_at: String,
    pub updated_at: String,
}

/// Free text: required or not, at most `max` characters as sent (surrounding whitespace
/// included), no control characters once trimmed.
pub(crate) fn check_text(
    problems: &mut Problems,
    field: &str,
    value: &str,
    max: usize,
    required: bool,
) {
    let length = value.chars().count();
    let value = value.trim();
    if required && value.is_empty() {
        problems.add(field, "is required");
    }
    problems.check(
        length <= max,
        field,
        format!("must be at most {max} characters"),
    );
    problems.check(
        !value.chars().any(char::is_control),
        field,
        "must not contain control characters",
    );
}

pub(crate) fn check_address(problems: &mut Problems, a: &ShippingAddress) {
    let f = |name: &str| format!("shipping_address.{name}");
    check_text(problems, &f("name"), &a.name, 200, true);
    check_text(problems, &f("line1"), &a.line1, 200, true);
    check_text(
        problems,
        &f("line2"),
        a.line2.as_deref().unwrap_or(""),
        200,
        false,
    );
    check_text(problems, &f("city"), &a.city, 100, true);
    check_text(
        problems,
        &f("region"),
        a.region.as_deref().unwrap_or(""),
        100,
        false,
    );
    problems.check(
        !a.postal_code.trim().is_empty()
            && a.postal_code.chars().count() <= 16
            && a.postal_code
                .trim()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-'),
        f("postal_code"),
        "must be up to 16 letters, digits, spaces or hyphens",
    );
    problems.check(
        crate::accounts::addresses::is_country_code(&a.country.trim().to_ascii_uppercase()),
        f("country"),
        "must be an ISO 3166-1 alpha-2 country code",
    );
}

fn check_idempotency_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key.len() > 200
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        || crate::http::card_numbers::contains_card_number(key)
    {
        return Err(Error::BadRequest {
            message: "checkout needs an Idempotency-Key header: 1 to 200 letters, digits, `-`, `_`, `.`, `:`".to_owned(),
            fields: vec![crate::error::FieldError::new(
                "Idempotency-Key",
                "1 to 200 letters, digits, `-`, `_`, `.`, `:`",
            )],
        });
    }
    Ok(())
}

/// A readable order number that does not reveal how many orders the store has.
pub(crate) fn new_order_number() -> String {
    public_number("OL")
}

/// A number to show people (`OL-7KQ2M-XP4HD`): 10 random characters of an alphabet
/// without look-alikes (no 0/O, 1/I).
pub(crate) fn public_number(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes: [u8; 10] = rand::random();
    let code: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}-{}-{}", &code[..5], &code[5..])
}

/// The order an idempotency key made, if any: `(order id, cart id)`.
async fn order_by_key(state: &AppState, key: &str) -> Result<Option<(i64, String)>> {
    let row = sqlx::query("SELECT id, cart_id FROM orders WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(&state.db.pool)
        .await?;
    Ok(row
        .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?)
}

/// Turns the cart into an order. Answers `(order, created)`: a retry with the same key
/// answers the order the first attempt made.
///
/// The steps: check the input; read the cart; price the delivery exactly as the quote
/// does (refusing with the new quote when the client saw another total); then one
/// transaction takes the cart, writes the order, reserves its lots and records
/// `order.placed`; then the payment, when the request carries a card token.
pub async fn checkout(
    state: &AppState,
    cart_id: &str,
    customer: Option<&Authenticated>,
    idempotency_key: &str,
    input: CheckoutRequest,
) -> Result<(Order, bool)> {
    check_idempotency_key(idempotency_key)?;
    // A key already used is found without a lookup of its own: its cart is no longer
    // open (the retry answers the order made from it), or the order's INSERT below
    // meets the key's unique index (a key used for another cart).
    let email = checked_email(state, customer, &input).await?;
    let cart = match open_cart(state, cart_id, customer, idempotency_key, &input).await? {
        OpenCart::Ready(cart) => cart,
        OpenCart::Replayed(done) => return Ok(*done),
    };
    let quote = totals::quote_with_points(
        state,
        &cart,
        customer.map(|c| c.customer_id),
        input.redeem_points,
        (
            &input.shipping_address.country,
            Some(&input.shipping_method),
            "shipping_address.country",
        ),
    )
    .await?;
    if let Some(expected) = input.expected_total_minor
        && expected != quote.total_minor
    {
        return Err(Error::TotalChanged(Box::new(quote)));
    }
    let mut address = input.shipping_address.clone();
    address.country = quote.country.clone();
    let address_json = serde_json::to_string(&address).map_err(anyhow::Error::from)?;
    // A customer's order carries their identity under their own key (erased with it);
    // a guest's under the shared key.
    let (email_enc, address_enc) = match customer {
        Some(customer) => {
            let fields = state
                .keys
                .customer_for_writing_in(&state.db.pool, customer.customer_id)
                .await?;
            (
                fields.encrypt(EMAIL_CONTEXT, &email)?,
                fields.encrypt(ADDRESS_CONTEXT, &address_json)?,
            )
        }
        None => (
            state.keys.encrypt_field(EMAIL_CONTEXT, &email)?,
            state.keys.encrypt_field(ADDRESS_CONTEXT, &address_json)?,
        ),
    };
    let placed = Placed {
        number: new_order_number(),
        now: crate::time::now(),
        email_enc,
        address_enc,
        // A checkout that pays records the payment attempt with the order: if this
        // process dies before the processor's answer is recorded, the reconciler
        // finishes it.
        token_enc: input
            .payment_token
            .as_deref()
            .map(|token| {
                let charge = Charge::Token(token.to_owned());
                state
                    .keys
                    .encrypt_field(PAYMENT_TOKEN_CONTEXT, &charge.encode())
            })
            .transpose()?,
    };
    let origin = Origin::Checkout { customer };
    let order_id = match place(state, &cart, &origin, idempotency_key, &quote, &placed).await? {
        Placement::Placed(order_id) => order_id,
        Placement::Taken(why) => {
            // A concurrent retry with the same key may have just made the order, or the
            // key made one from this cart before it opened again (a declined payment).
            if let Some(done) = replay(state, idempotency_key, cart_id, customer, &input).await? {
                return Ok(done);
            }
            return Err(why);
        }
    };
    // The answer is the order as written, not read back.
    let mut order = written_order(&quote, &placed, email, address);
    if let Some(token) = &input.payment_token {
        let facts = PaymentFacts {
            number: placed.number.clone(),
            status: OrderStatus::Pending,
            total_minor: quote.total_minor,
            currency: quote.currency.clone(),
            payment_reference: None,
            refunded_minor: 0,
            subscriber: customer
                .filter(|_| quote.lines.iter().any(|line| line.subscription))
                .map(|c| c.pseudonym.clone()),
        };
        let charge = Charge::Token(token.clone());
        match authorize_recorded(state, order_id, &facts, &charge, origin.actor()).await? {
            Some(recorded) => {
                order.status = recorded.status;
                order.payment_reference = Some(recorded.payment_reference);
                order.updated_at = recorded.at;
            }
            // Something else moved the order meanwhile: it is read as it is now.
            None => order = load(state, order_id, true).await?,
        }
    }
    Ok((order, true))
}

/// The input's problems, all at once; answers the email confirmations go to.
async fn checked_email(
    state: &AppState,
    customer: Option<&Authenticated>,
    input: &CheckoutRequest,
) -> Result<String> {
    let mut problems = Problems::new();
    if let Some(token) = &input.payment_token {
        check_payment_token(&mut problems, token);
    }
    check_address(&mut problems, &input.shipping_address);
    check_text(
        &mut problems,
        "shipping_method",
        &input.shipping_method,
        64,
        true,
    );
    if let Some(expected) = input.expected_total_minor {
        problems.check(expected >= 0, "expected_total_minor", "must be at least 0");
    }
    let email = match (&input.email, customer) {
        (Some(email), _) => {
            crate::accounts::check_email(&mut problems, "email", email);
            email.trim().to_owned()
        }
        (None, Some(customer)) => {
            crate::accounts::account(state, customer.customer_id)
                .await?
                .email
        }
        (None, None) => {
            problems.add("email", "is required");
            String::new()
        }
    };
    problems.into_result()?;
    Ok(email)
}

enum OpenCart {
    Ready(crate::cart::Cart),
    /// The key made an order from this cart already: its answer.
    Replayed(Box<(Order, bool)>),
}

/// The cart, priced, when it can be checked out.
async fn open_cart(
    state: &AppState,
    cart_id: &str,
    customer: Option<&Authenticated>,
    idempotency_key: &str,
    input: &CheckoutRequest,
) -> Result<OpenCart> {
    let cart = match crate::cart::get(state, cart_id, customer).await {
        Ok(cart) => cart,
        Err(Error::NotFound(what)) => {
            // A concurrent checkout with the same key may have just ordered the cart.
            if let Some(done) = replay(state, idempotency_key, cart_id, customer, input).await? {
                return Ok(OpenCart::Replayed(Box::new(done)));
            }
            return Err(Error::NotFound(what));
        }
        Err(other) => return Err(other),
    };
    if cart.lines.is_empty() {
        return Err(Error::conflict(None, "the cart is empty"));
    }
    if customer.is_none() && cart.lines.iter().any(|line| line.subscription) {
        return Err(Error::conflict(
            Some("lines"),
            "sign in to subscribe: a subscription belongs to an account",
        ));
    }
    if !cart.can_check_out {
        return Err(Error::conflict(
            Some("lines"),
            "some lines cannot be bought as they are: see each line's problem",
        ));
    }
    Ok(OpenCart::Ready(cart))
}

/// What a new order is written with besides its quote.
pub(crate) struct Placed {
    pub(crate) number: String,
    pub(crate) now: String,
    pub(crate) email_enc: String,
    pub(crate) address_enc: String,
    pub(crate) token_enc: Option<String>,
}

/// Where an order comes from: the two share every step from the price to the payment.
pub(crate) enum Origin<'a> {
    /// A shopper's checkout of their cart.
    Checkout { customer: Option<&'a Authenticated> },
    /// A subscription's renewal: `attempt` at its `cycle`.
    Renewal {
        subscription_id: i64,
        customer_id: i64,
        cycle: i64,
        attempt: i64,
    },
}

impl Origin<'_> {
    fn customer_id(&self) -> Option<i64> {
        match self {
            Origin::Checkout { customer } => customer.map(|c| c.customer_id),
            Origin::Renewal { customer_id, .. } => Some(*customer_id),
        }
    }

    /// Who the stock ledger says took the units.
    fn actor(&self) -> &str {
        match self {
            Origin::Checkout { customer } => customer.map_or("guest", |c| c.pseudonym.as_str()),
            Origin::Renewal { .. } => "subscription",
        }
    }
}

pub(crate) enum Placement {
    Placed(i64),
    /// The cart was taken, or the key used: the error to answer when no replay does.
    Taken(Error),
}

/// The order's transaction: takes its source (the cart: a second checkout of it waits
/// here, then finds it ordered; or the subscription's cycle), writes the order, reserves
/// the whole cart's lots, writes the lines and allocations, records `order.placed`.
pub(crate) async fn place(
    state: &AppState,
    cart: &crate::cart::Cart,
    origin: &Origin<'_>,
    idempotency_key: &str,
    quote: &totals::CheckoutQuote,
    placed: &Placed,
) -> Result<Placement> {
    let mut tx = state.db.begin().await?;
    if let Some(why) = take_source(&mut tx, cart, origin, &placed.now).await? {
        return Ok(Placement::Taken(why));
    }
    let attempted_at = placed.token_enc.as_ref().map(|_| placed.now.clone());
    let (subscription_id, renewal_cycle) = match origin {
        Origin::Renewal {
            subscription_id,
            cycle,
            ..
        } => (Some(*subscription_id), Some(*cycle)),
        Origin::Checkout { .. } => (None, None),
    };
    let inserted = sqlx::query(
        "INSERT INTO orders (number, customer_id, cart_id, idempotency_key, status, currency,
            subtotal_minor, adjustments_minor, shipping_minor, tax_minor, total_minor,
            shipping_method, country, email_enc, shipping_address_enc, created_at, updated_at,
            payment_token_enc, payment_attempted_at, prices_include_tax, tax_rate_bp,
            subscription_id, renewal_cycle, points_redeemed)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15,
            $16, $17, $18, $19, $20, $21, $22)
         RETURNING id",
    )
    .bind(&placed.number)
    .bind(origin.customer_id())
    .bind(&cart.id)
    .bind(idempotency_key)
    .bind(&quote.currency)
    .bind(quote.subtotal_minor)
    .bind(quote.adjustments_minor)
    .bind(quote.shipping_minor)
    .bind(quote.tax_minor)
    .bind(quote.total_minor)
    .bind(&quote.shipping_method)
    .bind(&quote.country)
    .bind(&placed.email_enc)
    .bind(&placed.address_enc)
    .bind(&placed.now)
    .bind(&placed.token_enc)
    .bind(&attempted_at)
    .bind(i64::from(quote.prices_include_tax))
    .bind(quote.tax_rate_bp)
    .bind(subscription_id)
    .bind(renewal_cycle)
    .bind(quote.points_redeemed)
    .fetch_one(&mut *tx)
    .await;
    let order_id: i64 = match inserted {
        Ok(row) => row.try_get(0)?,
        Err(err) if crate::store::is_unique_violation(&err) => {
            drop(tx);
            return Ok(Placement::Taken(
                match order_by_key(state, idempotency_key).await? {
                    Some(_) => Error::conflict(
                        Some("Idempotency-Key"),
                        "this Idempotency-Key was used for another cart",
                    ),
                    None => err.into(),
                },
            ));
        }
        Err(err) => return Err(err.into()),
    };
    write_lines(state, &mut tx, order_id, cart, quote, placed, origin).await?;
    if quote.points_redeemed > 0
        && let Some(customer_id) = origin.customer_id()
    {
        let redemption = crate::loyalty::Redemption {
            customer_id,
            points: quote.points_redeemed,
            value_minor: 0,
        };
        crate::loyalty::spend(
            &mut tx,
            &redemption,
            order_id,
            &placed.number,
            &state.clock.now_text(),
        )
        .await?;
    }
    record_placed(&mut tx, quote, placed, origin).await?;
    if let Origin::Renewal {
        subscription_id,
        cycle,
        attempt,
        ..
    } = origin
    {
        crate::subscriptions::renew::record_attempt(
            &mut tx,
            *subscription_id,
            *cycle,
            *attempt,
            order_id,
            &state.clock.now_text(),
        )
        .await?;
    }
    // A shopper's purchase is not audited: the stock ledger holds each lot taken (actor,
    // order number) and the outbox the order. The audit log is for staff, plugin,
    // privacy and stock-adjustment actions, and writing to its chain would make every
    // checkout queue on the chain's one head row.
    tx.commit().await?;
    state.bus.notify();
    Ok(Placement::Placed(order_id))
}

/// Takes what the order is made from, so nothing else makes it: the open cart, or the
/// subscription's cycle while it is still active and due. Answers why not, when not.
async fn take_source(
    tx: &mut sqlx::AnyConnection,
    cart: &crate::cart::Cart,
    origin: &Origin<'_>,
    now: &str,
) -> Result<Option<Error>> {
    match origin {
        Origin::Checkout { .. } => {
            let taken = sqlx::query(
                "UPDATE carts SET status = 'ordered', updated_at = $1
                 WHERE id = $2 AND status = 'open'",
            )
            .bind(now)
            .bind(&cart.id)
            .execute(&mut *tx)
            .await?;
            Ok((taken.rows_affected() == 0)
                .then(|| Error::conflict(None, "the cart was checked out already")))
        }
        Origin::Renewal {
            subscription_id,
            cycle,
            attempt,
            ..
        } => {
            let claimed =
                crate::subscriptions::renew::claim_cycle(tx, *subscription_id, *cycle, *attempt)
                    .await?;
            Ok((!claimed).then(|| {
                Error::conflict(
                    None,
                    "the subscription was paused, skipped or changed meanwhile",
                )
            }))
        }
    }
}

/// Reserves the cart's lots and writes the order's lines and allocations, each in one
/// statement.
async fn write_lines(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    order_id: i64,
    cart: &crate::cart::Cart,
    quote: &totals::CheckoutQuote,
    placed: &Placed,
    origin: &Origin<'_>,
) -> Result<()> {
    let settings = state.cache.store_settings(&mut *tx).await?;
    let actor = origin.actor();
    let stock_change = StockChange {
        reason: StockReason::Allocated,
        actor,
        note: None,
        reference: Some(&placed.number),
    };
    // The whole cart at once: lots are taken in variant-id order across checkouts, so
    // two checkouts never wait on each other in a circle.
    let mut wanted: Vec<(i64, i64)> = cart
        .lines
        .iter()
        .map(|line| (line.facts.variant_id, i64::from(line.quantity)))
        .collect();
    wanted.sort_unstable();
    let (allocations, _ledgered) =
        crate::inventory::reserve(&mut *tx, &wanted, &settings, &stock_change).await?;
    let sql = format!(
        "INSERT INTO order_lines (order_id, variant_id, sku, title, quantity, subscription,
            unit_price_minor, adjustments_minor, total_minor, adjustments, tax_minor,
            subscription_interval)
         VALUES {}",
        crate::store::value_rows(cart.lines.len(), 12)
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (line, quoted) in cart.lines.iter().zip(&quote.lines) {
        insert = insert
            .bind(order_id)
            .bind(line.facts.variant_id)
            .bind(&line.sku)
            .bind(&quoted.title)
            .bind(i64::from(line.quantity))
            .bind(i32::from(line.subscription))
            .bind(line.unit_price.amount_minor)
            .bind(line.adjustments.iter().map(|a| a.amount_minor).sum::<i64>())
            .bind(line.total.amount_minor)
            .bind(serde_json::to_string(&line.adjustments).map_err(anyhow::Error::from)?)
            .bind(quoted.tax_minor)
            .bind(&line.subscription_interval);
    }
    insert.execute(&mut *tx).await?;
    if !allocations.is_empty() {
        let sql = format!(
            "INSERT INTO order_allocations (order_id, lot_id, variant_id, quantity) VALUES {}",
            crate::store::value_rows(allocations.len(), 4)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for allocation in &allocations {
            insert = insert
                .bind(order_id)
                .bind(allocation.lot_id)
                .bind(allocation.variant_id)
                .bind(allocation.quantity);
        }
        insert.execute(&mut *tx).await?;
    }
    Ok(())
}

/// `order.placed`: everything a confirmation email shows except who it goes to (the
/// recipient is read from the order, encrypted there, when it is sent, so the outbox
/// holds no personal data).
async fn record_placed(
    tx: &mut sqlx::AnyConnection,
    quote: &totals::CheckoutQuote,
    placed: &Placed,
    origin: &Origin<'_>,
) -> Result<()> {
    let lines: Vec<serde_json::Value> = quote
        .lines
        .iter()
        .map(|line| {
            serde_json::json!({
                "sku": line.sku, "title": line.title, "quantity": line.quantity,
                "subscription": line.subscription, "total_minor": line.total_minor,
                "tax_minor": line.tax_minor,
            })
        })
        .collect();
    crate::bus::record(
        tx,
        "order",
        &placed.number,
        "order.placed",
        &serde_json::json!({
            "number": placed.number,
            "lines": lines,
            "subtotal_minor": quote.subtotal_minor,
            "adjustments_minor": quote.adjustments_minor,
            "shipping_method": quote.shipping_method,
            "shipping_minor": quote.shipping_minor,
            "tax_minor": quote.tax_minor,
            "prices_include_tax": quote.prices_include_tax,
            "total_minor": quote.total_minor,
            "currency": quote.currency,
            "customer": origin.customer_id(),
            "subscription": match origin {
                Origin::Renewal { subscription_id, cycle, .. } =>
                    serde_json::json!({ "id": subscription_id, "cycle": cycle }),
                Origin::Checkout { .. } => serde_json::Value::Null,
            },
            "placed_at": placed.now,
        }),
    )
    .await?;
    Ok(())
}

/// The order as the checkout wrote it.
fn written_order(
    quote: &totals::CheckoutQuote,
    placed: &Placed,
    email: String,
    address: ShippingAddress,
) -> Order {
    Order {
        number: placed.number.clone(),
        status: OrderStatus::Pending,
        currency: quote.currency.clone(),
        lines: quote.lines.clone(),
        subtotal_minor: quote.subtotal_minor,
        adjustments_minor: quote.adjustments_minor,
        shipping_minor: quote.shipping_minor,
        tax_minor: quote.tax_minor,
        prices_include_tax: quote.prices_include_tax,
        tax_rate_bp: quote.tax_rate_bp,
        total_minor: quote.total_minor,
        shipping_method: quote.shipping_method.clone(),
        tracking_number: None,
        payment_reference: None,
        refunded_minor: 0,
        points_redeemed: quote.points_redeemed,
        email: Some(email),
        shipping_address: Some(address),
        created_at: placed.now.clone(),
        updated_at: placed.now.clone(),
    }
}

/// The order a checkout with this key already made from this cart, if any (paid now if
/// the request carries a token and it is still pending).
async fn replay(
    state: &AppState,
    idempotency_key: &str,
    cart_id: &str,
    customer: Option<&Authenticated>,
    input: &CheckoutRequest,
) -> Result<Option<(Order, bool)>> {
    let Some((order_id, made_from)) = order_by_key(state, idempotency_key).await? else {
        return Ok(None);
    };
    if made_from != cart_id {
        return Ok(None);
    }
    if let Some(token) = &input.payment_token {
        let actor = Origin::Checkout { customer }.actor().to_owned();
        authorize(state, order_id, &Charge::Token(token.clone()), &actor).await?;
    }
    Ok(Some((load(state, order_id, true).await?, false)))
}

/// Reads an order; `with_identity` decrypts its email and address.
pub async fn load(state: &AppState, order_id: i64, with_identity: bool) -> Result<Order> {
    let row = sqlx::query(
        "SELECT number, status, currency, subtotal_minor, adjustments_minor, shipping_minor,
            tax_minor, total_minor, shipping_method, tracking_number, email_enc,
            shipping_address_enc, created_at, updated_at, payment_reference, refunded_minor,
            prices_include_tax, tax_rate_bp, points_redeemed
         FROM orders WHERE id = $1",
    )
    .bind(order_id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| Error::not_found(format!("order {order_id}")))?;
    let status: String = row.try_get(1)?;
    let (email, shipping_address) = if with_identity {
        let email_enc: String = row.try_get(10)?;
        let address_enc: String = row.try_get(11)?;
        let pool = &state.db.pool;
        let email = if email_enc.is_empty() {
            None
        } else {
            Some(
                state
                    .keys
                    .decrypt_any(pool, EMAIL_CONTEXT, &email_enc)
                    .await?,
            )
        };
        let address = if address_enc.is_empty() {
            None
        } else {
            let text = state
                .keys
                .decrypt_any(pool, ADDRESS_CONTEXT, &address_enc)
                .await?;
            Some(serde_json::from_str(&text).map_err(anyhow::Error::from)?)
        };
        (email, address)
    } else {
        (None, None)
    };
    let lines = sqlx::query(
        "SELECT sku, title, quantity, subscription, unit_price_minor, adjustments, total_minor,
            tax_minor
         FROM order_lines WHERE order_id = $1 ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|r| {
        let adjustments: String = r.try_get(5)?;
        Ok(OrderLine {
            sku: r.try_get(0)?,
            title: r.try_get(1)?,
            quantity: r.try_get(2)?,
            subscription: r.try_get::<i64, _>(3)? != 0,
            unit_price_minor: r.try_get(4)?,
            adjustments: serde_json::from_str(&adjustments).map_err(anyhow::Error::from)?,
            total_minor: r.try_get(6)?,
            tax_minor: r.try_get(7)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    Ok(Order {
        number: row.try_get(0)?,
        status: OrderStatus::parse(&status).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("order {order_id} has status {status}"))
        })?,
        currency: row.try_get(2)?,
        lines,
        subtotal_minor: row.try_get(3)?,
        adjustments_minor: row.try_get(4)?,
        shipping_minor: row.try_get(5)?,
        tax_minor: row.try_get(6)?,
        prices_include_tax: row.try_get::<i64, _>(16)? != 0,
        tax_rate_bp: row.try_get(17)?,
        total_minor: row.try_get(7)?,
        shipping_method: row.try_get(8)?,
        tracking_number: row.try_get(9)?,
        payment_reference: row.try_get(14)?,
        refunded_minor: row.try_get(15)?,
        points_redeemed: row.try_get(18)?,
        email,
        shipping_address,
        created_at: row.try_get(12)?,
        updated_at: row.try_get(13)?,
    })
}

/// The id of an order by its number, for `customer` only when given (another's is not
/// found, exactly like a missing one).
async fn id_of(state: &AppState, number: &str, customer: Option<i64>) -> Result<i64> {
    let not_found = || Error::not_found(format!("order {number}"));
    if number.len() > 32 {
        return Err(not_found());
    }
    let row = sqlx::query("SELECT id, customer_id FROM orders WHERE number = $1")
        .bind(number)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(not_found)?;
    if let Some(customer) = customer
        && row.try_get::<Option<i64>, _>(1)? != Some(customer)
    {
        return Err(not_found());
    }
    Ok(row.try_get(0)?)
}

pub async fn get_for_customer(state: &AppState, customer_id: i64, number: &str) -> Result<Order> {
    let id = id_of(state, number, Some(customer_id)).await?;
    load(state, id, true).await
}

/// The order placed from the guest cart `cart_id` (whose unguessable id the shopper's
/// browser holds): the storefront's confirmation page for guests. Any other is not found.
pub async fn get_for_cart(state: &AppState, cart_id: &str, number: &str) -> Result<Order> {
    let id: i64 = sqlx::query("SELECT id FROM orders WHERE number = $1 AND cart_id = $2")
        .bind(number)
        .bind(cart_id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("order {number}")))?
        .try_get(0)?;
    load(state, id, true).await
}

pub async fn get_for_staff(state: &AppState, number: &str) -> Result<Order> {
    let id = id_of(state, number, None).await?;
    load(state, id, true).await
}

/// A customer's orders, newest first.
pub async fn list_for_customer(state: &AppState, customer_id: i64) -> Result<Vec<Order>> {
    let ids: Vec<i64> =
        sqlx::query("SELECT id FROM orders WHERE customer_id = $1 ORDER BY id DESC LIMIT 200")
            .bind(customer_id)
            .fetch_all(&state.db.pool)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
    let mut orders = Vec::with_capacity(ids.len());
    for id in ids {
        orders.push(load(state, id, true).await?);
    }
    Ok(orders)
}

/// A staff change of an order's state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub to: OrderStatus,
    /// Required to mark an order fulfilled (shipped); refused with any other `to`.
    #[serde(default)]
    pub tracking_number: Option<String>,
    /// Who carries the parcel (e.g. `DHL`), with `to: fulfilled` only; customers are
    /// told it with the tracking number.
    #[serde(default)]
    pub carrier: Option<String>,
}

/// Two shapes, as [`transition_inner`] checks them: `fulfilled` with a tracking number,
/// or another state without one.
impl utoipa::PartialSchema for Transition {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::Ref;
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let to = |states: &[OrderStatus]| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(states.iter().map(|s| s.as_str())))
        };
        let others = [
            OrderStatus::Pending,
            OrderStatus::Paid,
            OrderStatus::Delivered,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
        ];
        OneOfBuilder::new()
            .description(Some(
                "The state to move to: `fulfilled` (shipped) with its `tracking_number`, or \
                 another state without one.",
            ))
            .item(
                ObjectBuilder::new()
                    .property("to", to(&[OrderStatus::Fulfilled]))
                    .property(
                        "tracking_number",
                        Ref::from_schema_name(SingleLine64::name()),
                    )
                    .property("carrier", Ref::from_schema_name(SingleLine64::name()))
                    .required("to")
                    .required("tracking_number")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .item(
                ObjectBuilder::new()
                    .property("to", to(&others))
                    .property(
                        "tracking_number",
                        ObjectBuilder::new().schema_type(Type::Null),
                    )
                    .required("to")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .into()
    }
}

impl ToSchema for Transition {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((SingleLine64::name().into(), SingleLine64::schema()));
    }
}

/// Moves an order to another state if its current state allows it (409 otherwise).
/// Cancelling releases its reserved stock back to the same lots.
pub async fn transition(
    state: &AppState,
    actor: &str,
    number: &str,
    change: Transition,
) -> Result<Order> {
    let id = id_of(state, number, None).await?;
    transition_inner(state, actor, number, id, change, true).await
}

/// [`transition`] of a known order; `with_payment` runs the payment side first through
/// the adapter: capture on fulfilment, void on cancelling a paid order, refund of what
/// is left on `refunded`.
async fn transition_inner(
    state: &AppState,
    actor: &str,
    number: &str,
    id: i64,
    change: Transition,
    with_payment: bool,
) -> Result<Order> {
    let mut problems = Problems::new();
    if change.to == OrderStatus::Fulfilled {
        check_text(
            &mut problems,
            "tracking_number",
            change.tracking_number.as_deref().unwrap_or(""),
            64,
            true,
        );
        if let Some(carrier) = &change.carrier {
            check_text(&mut problems, "carrier", carrier, 64, true);
        }
    } else {
        if change.tracking_number.is_some() {
            problems.add("tracking_number", "only goes with `to: fulfilled`");
        }
        if change.carrier.is_some() {
            problems.add("carrier", "only goes with `to: fulfilled`");
        }
    }
    problems.into_result()?;
    let mut agreed = None;
    if with_payment {
        let facts = payment_facts(state, id).await?;
        let order = (id, actor);
        if facts.status.next().contains(&change.to) {
            agreed = match (facts.status, change.to) {
                (_, OrderStatus::Fulfilled) => {
                    let key = format!("{number}:capture");
                    payment_operation(state, order, &facts, "capture", key, None).await?
                }
                (OrderStatus::Paid, OrderStatus::Cancelled) => {
                    let key = format!("{number}:void");
                    payment_operation(state, order, &facts, "void", key, None).await?
                }
                (_, OrderStatus::Refunded) => {
                    let left = facts.total_minor - facts.refunded_minor;
                    if left > 0 {
                        let key = format!("{number}:refund:{}:{left}", facts.refunded_minor);
                        payment_operation(state, order, &facts, "refund", key, Some(left)).await?
                    } else {
                        None
                    }
                }
                _ => None,
            }
        }
    }
    let mut tx = state.db.begin().await?;
    let row = sqlx::query(
        "SELECT status, customer_id, total_minor - refunded_minor FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let status: String = row.try_get(0)?;
    let customer_id: Option<i64> = row.try_get(1)?;
    let unrefunded: i64 = row.try_get(2)?;
    let from = OrderStatus::parse(&status)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("order {number} has status {status}")))?;
    if !from.next().contains(&change.to) {
        return Err(Error::conflict(
            Some("to"),
            format!(
                "an order that is {} cannot become {}",
                from.as_str(),
                change.to.as_str()
            ),
        ));
    }
    let now = crate::time::now();
    // The status in the WHERE makes a concurrent transition lose cleanly.
    let moved = sqlx::query(
        "UPDATE orders SET status = $1, tracking_number = COALESCE($2, tracking_number),
            carrier = COALESCE($6, carrier), updated_at = $3,
            refunded_minor = CASE WHEN $1 = 'refunded' THEN total_minor ELSE refunded_minor END
         WHERE id = $4 AND status = $5",
    )
    .bind(change.to.as_str())
    .bind(change.tracking_number.as_deref().map(str::trim))
    .bind(&now)
    .bind(id)
    .bind(from.as_str())
    .bind(change.carrier.as_deref().map(str::trim))
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Err(Error::conflict(
            Some("to"),
            "the order changed meanwhile; read it again",
        ));
    }
    if let Some(agreed) = &agreed {
        agreed.record(&mut tx, id, actor).await?;
    }
    // Refunding the whole order refunds what was left: one refund of its own.
    if change.to == OrderStatus::Refunded && unrefunded > 0 {
        history::record_refund(&mut tx, id, unrefunded, None, actor).await?;
    }
    crate::bus::record(
        &mut tx,
        "order",
        number,
        &format!("order.{}", change.to.as_str()),
        &serde_json::json!({
            "number": number, "from": from.as_str(), "to": change.to.as_str(),
            "customer": customer_id, "tracking_number": change.tracking_number,
            "carrier": change.carrier,
        }),
    )
    .await?;
    if change.to == OrderStatus::Cancelled {
        let allocations = sqlx::query(
            "SELECT lot_id, quantity FROM order_allocations WHERE order_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let release = StockChange {
            reason: StockReason::Released,
            actor,
            note: None,
            reference: Some(number),
        };
        let mut applied = Vec::with_capacity(allocations.len());
        for allocation in &allocations {
            applied.push(
                crate::inventory::apply_lot_change(
                    &mut tx,
                    allocation.try_get(0)?,
                    allocation.try_get(1)?,
                    &release,
                )
                .await?,
            );
        }
        crate::inventory::audit_changes(&mut tx, &applied, &release).await?;
        // Points spent on the order are the shopper's again at once (a declined payment
        // lets them check out again with them).
        crate::loyalty::undo_order(
            &mut tx,
            id,
            (1, 1),
            crate::loyalty::Undo::Spent,
            &format!("order-cancelled:{number}"),
            &state.clock.now_text(),
        )
        .await?;
    }
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "order.status_changed",
            target_type: "order",
            target_id: number.to_owned(),
            before: Some(serde_json::json!({ "status": from.as_str() })),
            after: Some(serde_json::json!({ "status": change.to.as_str(), "tracking_number": change.tracking_number })),
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    load(state, id, true).await
}

/// A customer's orders for their GDPR export, read on the export's snapshot connection:
/// what was bought, totals, state, tracking, and the identity on each order decrypted.
pub async fn export_on(
    conn: &mut sqlx::AnyConnection,
    keys: &crate::accounts::Keyring,
    customer_id: i64,
) -> Result<serde_json::Value> {
    let orders = sqlx::query(
        "SELECT id, number, status, currency, total_minor, tracking_number, email_enc,
            shipping_address_enc, created_at
         FROM orders WHERE customer_id = $1 ORDER BY id",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(orders.len());
    for order in &orders {
        let id: i64 = order.try_get(0)?;
        let lines = sqlx::query(
            "SELECT sku, title, quantity, subscription, total_minor FROM order_lines
             WHERE order_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|l| {
            Ok(serde_json::json!({
                "sku": l.try_get::<String, _>(0)?,
                "title": l.try_get::<String, _>(1)?,
                "quantity": l.try_get::<i64, _>(2)?,
                "subscription": l.try_get::<i64, _>(3)? != 0,
                "total_minor": l.try_get::<i64, _>(4)?,
            }))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let email_enc: String = order.try_get(6)?;
        let address_enc: String = order.try_get(7)?;
        let email = if email_enc.is_empty() {
            None
        } else {
            Some(
                keys.decrypt_any(&mut *conn, EMAIL_CONTEXT, &email_enc)
                    .await?,
            )
        };
        let address: Option<serde_json::Value> = if address_enc.is_empty() {
            None
        } else {
            let text = keys
                .decrypt_any(&mut *conn, ADDRESS_CONTEXT, &address_enc)
                .await?;
            Some(serde_json::from_str(&text).map_err(anyhow::Error::from)?)
        };
        out.push(serde_json::json!({
            "number": order.try_get::<String, _>(1)?,
            "status": order.try_get::<String, _>(2)?,
            "currency": order.try_get::<String, _>(3)?,
            "total_minor": order.try_get::<i64, _>(4)?,
            "tracking_number": order.try_get::<Option<String>, _>(5)?,
            "email": email,
            "shipping_address": address,
            "created_at": order.try_get::<String, _>(8)?,
            "lines": lines,
        }));
    }
    Ok(serde_json::Value::Array(out))
}

/// Erasure: removes the identity (email, shipping address) from a customer's orders and
/// keeps the rest for accounting. Answers how many orders it touched.
pub async fn erase_identity(tx: &mut sqlx::AnyConnection, customer_id: i64) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE orders SET email_enc = '', shipping_address_enc = '', updated_at = $1
         WHERE customer_id = $2 AND (email_enc <> '' OR shipping_address_enc <> '')",
    )
    .bind(crate::time::now())
    .bind(customer_id)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

// ---- payments ------------------------------------------------------------------------

use crate::plugins::payments::{PaymentOutcome, PaymentRequest};
use olivine_plugin_runtime::bindings::{payment, types as plugin_types};

/// What a payment is charged to: the checkout's one-time token, or a method the
/// processor saved for later (a subscription's renewals, charged off session). Stored
/// encrypted as `token:…` or `saved:…`; text without a prefix (written before saved
/// methods existed) is a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    Token(String),
    Saved(String),
}

impl Charge {
    pub fn encode(&self) -> String {
        match self {
            Charge::Token(token) => format!("token:{token}"),
            Charge::Saved(reference) => format!("saved:{reference}"),
        }
    }

    pub fn decode(text: &str) -> Charge {
        match text.split_once(':') {
            Some(("saved", reference)) => Charge::Saved(reference.to_owned()),
            Some(("token", token)) => Charge::Token(token.to_owned()),
            _ => Charge::Token(text.to_owned()),
        }
    }

    fn source(&self) -> payment::PaymentSource {
        match self {
            Charge::Token(token) => payment::PaymentSource::Token(token.clone()),
            Charge::Saved(reference) => payment::PaymentSource::Saved(reference.clone()),
        }
    }

    /// A saved method is charged without the shopper: renewals.
    fn off_session(&self) -> bool {
        matches!(self, Charge::Saved(_))
    }
}

/// A processor token: its alphabet, and never only digits (a card number is never a
/// token).
pub(crate) fn check_payment_token(problems: &mut Problems, token: &str) {
    problems.check(
        !token.is_empty()
            && token.len() <= 200
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            && !token.bytes().all(|b| b.is_ascii_digit()),
        "payment_token",
        "must be the processor's token (not a card number): 1 to 200 letters, digits, `-`, `_`, `.`, `:`",
    );
}

struct PaymentFacts {
    number: String,
    status: OrderStatus,
    total_minor: i64,
    currency: String,
    payment_reference: Option<String>,
    refunded_minor: i64,
    /// A checkout order with lines on subscription: the customer's pseudonym, for whom
    /// the card is saved before it is charged.
    subscriber: Option<String>,
}

async fn payment_facts(state: &AppState, order_id: i64) -> Result<PaymentFacts> {
    let row = sqlx::query(
        "SELECT o.number, o.status, o.total_minor, o.currency, o.payment_reference,
            o.refunded_minor,
            CASE WHEN o.subscription_id IS NULL AND EXISTS (
                SELECT 1 FROM order_lines l WHERE l.order_id = o.id AND l.subscription = 1
            ) THEN c.pseudonym END
         FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE o.id = $1",
    )
    .bind(order_id)
    .fetch_one(&state.db.pool)
    .await?;
    let status: String = row.try_get(1)?;
    Ok(PaymentFacts {
        number: row.try_get(0)?,
        status: OrderStatus::parse(&status).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("order {order_id} has status {status}"))
        })?,
        total_minor: row.try_get(2)?,
        currency: row.try_get(3)?,
        payment_reference: row.try_get(4)?,
        refunded_minor: row.try_get(5)?,
        subscriber: row.try_get(6)?,
    })
}

fn money(amount_minor: i64, currency: &str) -> plugin_types::Money {
    plugin_types::Money {
        amount_minor,
        currency: currency.to_owned(),
    }
}

/// Authorises a pending order's total through the active payment adapter. Approved:
/// the order is paid. Declined: the order is cancelled, its stock released, and the
/// shopper told why (402). The processor unsure or down: the order stays pending with
/// its stock, and the same checkout (same Idempotency-Key) may be sent again (503).
/// The idempotency key is derived from the order, so a retry never charges twice.
/// `actor` is who asked for the charge (the shopper, `subscription`, `reconciler`): the
/// order's payment attempts name them.
pub async fn authorize(
    state: &AppState,
    order_id: i64,
    charge: &Charge,
    actor: &str,
) -> Result<()> {
    let facts = payment_facts(state, order_id).await?;
    if facts.status != OrderStatus::Pending {
        return Ok(());
    }
    // The attempt is on record before the processor hears of it: if this process dies
    // before the answer is recorded, the reconciler ([`reconcile`]) finishes the order.
    sqlx::query(
        "UPDATE orders SET payment_token_enc = $1, payment_attempted_at = $2
         WHERE id = $3 AND status = 'pending'",
    )
    .bind(
        state
            .keys
            .encrypt_field(PAYMENT_TOKEN_CONTEXT, &charge.encode())?,
    )
    .bind(crate::time::now())
    .bind(order_id)
    .execute(&state.db.pool)
    .await?;
    authorize_recorded(state, order_id, &facts, charge, actor).await?;
    Ok(())
}

/// [`authorize`] for an order just placed with its charge on record (a renewal's): what
/// the order holds is known, so nothing is read or written before the processor call.
/// Answers the order's status after it, or None when something else moved the order.
pub(crate) async fn authorize_placed(
    state: &AppState,
    order_id: i64,
    number: &str,
    quote: &totals::CheckoutQuote,
    charge: &Charge,
    actor: &str,
) -> Result<Option<OrderStatus>> {
    let facts = PaymentFacts {
        number: number.to_owned(),
        status: OrderStatus::Pending,
        total_minor: quote.total_minor,
        currency: quote.currency.clone(),
        payment_reference: None,
        refunded_minor: 0,
        subscriber: None,
    };
    Ok(authorize_recorded(state, order_id, &facts, charge, actor)
        .await?
        .map(|recorded| recorded.status))
}

/// What an authorisation wrote on the order.
struct PaymentRecorded {
    status: OrderStatus,
    payment_reference: String,
    at: String,
}

/// [`authorize`] once the attempt is on record (a new order records it with itself).
/// Answers what it wrote on the order, or None when the order had moved on meanwhile.
async fn authorize_recorded(
    state: &AppState,
    order_id: i64,
    facts: &PaymentFacts,
    charge: &Charge,
    actor: &str,
) -> Result<Option<PaymentRecorded>> {
    // What the order's subscriptions will charge: the card saved first when the order
    // starts some and the adapter can save (again after a crash: same key, same answer).
    let subscriptions_charge = match (&facts.subscriber, charge) {
        (Some(subscriber), Charge::Token(token)) => {
            save_for_subscriptions(state, order_id, facts, subscriber, token, actor).await?
        }
        _ => charge.clone(),
    };
    let attempt = |outcome| history::Attempt {
        order_id,
        operation: history::Operation::Authorize,
        amount_minor: Some(facts.total_minor),
        outcome,
        message: None,
        processor_reference: None,
        actor,
    };
    let outcome = crate::plugins::payments::call(
        &state.plugins,
        None,
        PaymentRequest::Authorize(payment::AuthorizeRequest {
            order_id: facts.number.clone(),
            idempotency_key: format!("{}:authorize", facts.number),
            amount: money(facts.total_minor, &facts.currency),
            source: charge.source(),
            off_session: charge.off_session(),
            customer: None,
        }),
    )
    .await;
    crate::failpoint::hit("payments.authorized");
    match outcome {
        PaymentOutcome::Done(result) => match result.status {
            plugin_types::PaymentStatus::Approved => {
                let at = crate::time::now();
                let mut tx = state.db.begin().await?;
                let moved = sqlx::query(
                    "UPDATE orders SET status = 'paid', payment_reference = $1, updated_at = $2,
                        payment_token_enc = NULL
                     WHERE id = $3 AND status = 'pending'",
                )
                .bind(&result.processor_reference)
                .bind(&at)
                .bind(order_id)
                .execute(&mut *tx)
                .await?;
                let moved = moved.rows_affected() > 0;
                history::record_attempt(
                    &mut tx,
                    &history::Attempt {
                        processor_reference: Some(&result.processor_reference),
                        message: Some(&result.message),
                        ..attempt(history::Outcome::Approved)
                    },
                )
                .await?;
                if moved {
                    crate::bus::record(
                        &mut tx,
                        "order",
                        &facts.number,
                        "order.paid",
                        &serde_json::json!({ "number": facts.number, "total_minor": facts.total_minor }),
                    )
                    .await?;
                    // Paying starts the order's subscriptions, or pays a renewal's cycle.
                    crate::subscriptions::on_order_paid(
                        &mut tx,
                        state,
                        order_id,
                        &subscriptions_charge,
                    )
                    .await?;
                }
                tx.commit().await?;
                state.bus.notify();
                Ok(moved.then_some(PaymentRecorded {
                    status: OrderStatus::Paid,
                    payment_reference: result.processor_reference,
                    at,
                }))
            }
            plugin_types::PaymentStatus::Pending => {
                let recorded = history::Attempt {
                    processor_reference: Some(&result.processor_reference),
                    message: Some(&result.message),
                    ..attempt(history::Outcome::Pending)
                };
                history::record_attempt_now(state, &recorded).await?;
                let at = crate::time::now();
                let moved = sqlx::query(
                    "UPDATE orders SET payment_reference = $1, updated_at = $2
                     WHERE id = $3 AND status = 'pending'",
                )
                .bind(&result.processor_reference)
                .bind(&at)
                .bind(order_id)
                .execute(&state.db.pool)
                .await?;
                Ok((moved.rows_affected() > 0).then_some(PaymentRecorded {
                    status: OrderStatus::Pending,
                    payment_reference: result.processor_reference,
                    at,
                }))
            }
            plugin_types::PaymentStatus::Declined => {
                let reason = if result.message.is_empty() {
                    "the payment was declined".to_owned()
                } else {
                    result.message
                };
                let recorded = history::Attempt {
                    processor_reference: Some(&result.processor_reference),
                    message: Some(&reason),
                    ..attempt(history::Outcome::Declined)
                };
                history::record_attempt_now(state, &recorded).await?;
                cancel_unpaid(state, order_id, &facts.number).await?;
                Err(Error::PaymentDeclined {
                    reason,
                    hard: false,
                })
            }
        },
        PaymentOutcome::Declined { reason, hard } => {
            let recorded = history::Attempt {
                message: Some(&reason),
                ..attempt(history::Outcome::Declined)
            };
            history::record_attempt_now(state, &recorded).await?;
            cancel_unpaid(state, order_id, &facts.number).await?;
            Err(Error::PaymentDeclined { reason, hard })
        }
        PaymentOutcome::Saved(_) => Err(Error::Internal(anyhow::anyhow!(
            "the payment adapter answered an authorization with a saved method"
        ))),
        PaymentOutcome::Retry { reason } => {
            let recorded = history::Attempt {
                message: Some(&reason),
                ..attempt(history::Outcome::Unavailable)
            };
            history::record_attempt_now(state, &recorded).await?;
            Err(payment_unavailable(&facts.number, &reason))
        }
    }
}

fn payment_unavailable(number: &str, reason: &str) -> Error {
    Error::Unavailable(format!(
        "the payment could not be completed ({reason}); order {number} keeps its stock: send the same checkout again (same Idempotency-Key)"
    ))
}

/// Saves the checkout's card with the processor for the subscriptions the order starts
/// (a 0.1 adapter cannot: they keep the token). Refused: the order is cancelled like a
/// declined payment, since its subscriptions could never renew.
async fn save_for_subscriptions(
    state: &AppState,
    order_id: i64,
    facts: &PaymentFacts,
    subscriber: &str,
    token: &str,
    actor: &str,
) -> Result<Charge> {
    if !crate::plugins::payments::saves_payment_methods(&state.plugins) {
        return Ok(Charge::Token(token.to_owned()));
    }
    let refused = async |outcome: history::Outcome, message: &str| {
        let attempt = history::Attempt {
            order_id,
            operation: history::Operation::Save,
            amount_minor: None,
            outcome,
            message: Some(message),
            processor_reference: None,
            actor,
        };
        history::record_attempt_now(state, &attempt).await
    };
    let request = PaymentRequest::Save(payment::SaveRequest {
        payment_token: token.to_owned(),
        idempotency_key: format!("{}:save", facts.number),
        customer: Some(plugin_types::CustomerRef {
            pseudonym: subscriber.to_owned(),
            segments: Vec::new(),
        }),
    });
    match crate::plugins::payments::call(&state.plugins, None, request).await {
        PaymentOutcome::Saved(saved) => Ok(Charge::Saved(saved.reference)),
        PaymentOutcome::Retry { reason } => {
            refused(history::Outcome::Unavailable, &reason).await?;
            Err(payment_unavailable(&facts.number, &reason))
        }
        PaymentOutcome::Declined { reason, hard } => {
            refused(history::Outcome::Declined, &reason).await?;
            cancel_unpaid(state, order_id, &facts.number).await?;
            Err(Error::PaymentDeclined { reason, hard })
        }
        PaymentOutcome::Done(_) => {
            let reason = "the card could not be saved for the subscription".to_owned();
            refused(history::Outcome::Declined, &reason).await?;
            cancel_unpaid(state, order_id, &facts.number).await?;
            Err(Error::PaymentDeclined {
                reason,
                hard: false,
            })
        }
    }
}

/// A declined payment: the order is cancelled, its reserved units go back, and its cart
/// opens again so the shopper can pay another way (with a new Idempotency-Key).
pub(crate) async fn cancel_unpaid(state: &AppState, order_id: i64, number: &str) -> Result<()> {
    let change = Transition {
        to: OrderStatus::Cancelled,
        tracking_number: None,
        carrier: None,
    };
    match transition_inner(state, "payments", number, order_id, change, false).await {
        Ok(_) | Err(Error::Conflict { .. }) => {}
        Err(other) => return Err(other),
    }
    sqlx::query("UPDATE orders SET payment_token_enc = NULL WHERE id = $1")
        .bind(order_id)
        .execute(&state.db.pool)
        .await?;
    // A customer who opened another cart meanwhile keeps that one (one open cart each).
    let reopened = sqlx::query(
        "UPDATE carts SET status = 'open', updated_at = $1
         WHERE id = (SELECT cart_id FROM orders WHERE id = $2) AND status = 'ordered'",
    )
    .bind(crate::time::now())
    .bind(order_id)
    .execute(&state.db.pool)
    .await;
    if let Err(err) = reopened {
        tracing::info!(order = number, error = %err, "the declined order's cart stays closed");
    }
    Ok(())
}

/// A capture, void or refund the adapter agreed to: the caller records it in the
/// transaction that acts on it.
struct AgreedOperation {
    operation: history::Operation,
    amount_minor: Option<i64>,
    outcome: history::Outcome,
    message: String,
    processor_reference: String,
}

impl AgreedOperation {
    async fn record(
        &self,
        conn: &mut sqlx::AnyConnection,
        order_id: i64,
        actor: &str,
    ) -> Result<()> {
        let attempt = history::Attempt {
            order_id,
            operation: self.operation,
            amount_minor: self.amount_minor,
            outcome: self.outcome,
            message: Some(&self.message),
            processor_reference: Some(&self.processor_reference),
            actor,
        };
        history::record_attempt(conn, &attempt).await
    }
}

/// Runs a capture, void or refund through the adapter; a refusal is a 409 naming why,
/// an adapter that cannot answer now a 503 (send the same request again), each recorded
/// among the order's payment attempts. None: the order has no payment to act on.
async fn payment_operation(
    state: &AppState,
    (order_id, actor): (i64, &str),
    facts: &PaymentFacts,
    kind: &str,
    key: String,
    amount: Option<i64>,
) -> Result<Option<AgreedOperation>> {
    let Some(reference) = facts.payment_reference.clone() else {
        return Ok(None);
    };
    let operation = payment::PaymentOperation {
        order_id: facts.number.clone(),
        idempotency_key: key,
        processor_reference: reference.clone(),
        amount: amount.map(|a| money(a, &facts.currency)),
    };
    let request = match kind {
        "capture" => PaymentRequest::Capture(operation),
        "void" => PaymentRequest::Void(operation),
        _ => PaymentRequest::Refund(operation),
    };
    let refused = async |outcome: history::Outcome, message: &str| {
        let attempt = history::Attempt {
            order_id,
            operation: history::Operation::of_kind(kind),
            amount_minor: amount,
            outcome,
            message: Some(message),
            processor_reference: Some(&reference),
            actor,
        };
        history::record_attempt_now(state, &attempt).await
    };
    match crate::plugins::payments::call(&state.plugins, None, request).await {
        PaymentOutcome::Done(result) if result.status != plugin_types::PaymentStatus::Declined => {
            Ok(Some(AgreedOperation {
                operation: history::Operation::of_kind(kind),
                amount_minor: amount,
                outcome: match result.status {
                    plugin_types::PaymentStatus::Pending => history::Outcome::Pending,
                    _ => history::Outcome::Approved,
                },
                message: result.message,
                processor_reference: result.processor_reference,
            }))
        }
        PaymentOutcome::Done(result) => {
            refused(history::Outcome::Declined, &result.message).await?;
            Err(Error::conflict(
                None,
                format!("the processor refused the {kind}: {}", result.message),
            ))
        }
        PaymentOutcome::Declined { reason, .. } => {
            refused(history::Outcome::Declined, &reason).await?;
            Err(Error::conflict(
                None,
                format!("the processor refused the {kind}: {reason}"),
            ))
        }
        PaymentOutcome::Saved(_) => Err(Error::Internal(anyhow::anyhow!(
            "the payment adapter answered a {kind} with a saved method"
        ))),
        PaymentOutcome::Retry { reason } => {
            refused(history::Outcome::Unavailable, &reason).await?;
            Err(Error::Unavailable(format!(
                "the {kind} could not be completed now ({reason}); send the same request again"
            )))
        }
    }
}

/// A refund of part (or, without an amount, the rest) of what was paid.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// At least 1 and at most what is left to refund; absent: all of it.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub amount_minor: Option<i64>,
    /// Why, for the order's record of its refunds (staff read it, the customer does not).
    #[serde(default)]
    #[schema(value_type = Option<SingleLineOrBlank200>)]
    pub reason: Option<String>,
}

/// Refunds part or all of a paid order through the adapter. When everything is refunded
/// the order becomes `refunded`.
pub async fn refund(
    state: &AppState,
    actor: &str,
    number: &str,
    input: RefundRequest,
) -> Result<Order> {
    if let Some(reason) = &input.reason {
        let mut problems = Problems::new();
        check_text(&mut problems, "reason", reason, 200, false);
        problems.into_result()?;
    }
    let id = id_of(state, number, None).await?;
    let facts = payment_facts(state, id).await?;
    if !matches!(
        facts.status,
        OrderStatus::Paid | OrderStatus::Fulfilled | OrderStatus::Delivered
    ) || facts.payment_reference.is_none()
    {
        return Err(Error::conflict(
            None,
            format!(
                "an order that is {} has no payment to refund",
                facts.status.as_str()
            ),
        ));
    }
    let left = facts.total_minor - facts.refunded_minor;
    let amount = input.amount_minor.unwrap_or(left);
    if amount <= 0 || amount > left {
        return Err(Error::invalid(
            "amount_minor",
            format!("must be between 1 and {left}, what is left to refund"),
        ));
    }
    // The key names the refund by where it starts and its size: the same request sent
    // again is the same refund, never a second one.
    let key = format!("{number}:refund:{}:{amount}", facts.refunded_minor);
    let agreed = payment_operation(state, (id, actor), &facts, "refund", key, Some(amount)).await?;
    let full = facts.refunded_minor + amount == facts.total_minor;
    let mut tx = state.db.begin().await?;
    let moved = sqlx::query(
        "UPDATE orders SET refunded_minor = refunded_minor + $1,
            status = CASE WHEN $2 = 1 THEN 'refunded' ELSE status END, updated_at = $3
         WHERE id = $4 AND refunded_minor = $5",
    )
    .bind(amount)
    .bind(i32::from(full))
    .bind(crate::time::now())
    .bind(id)
    .bind(facts.refunded_minor)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Err(Error::conflict(
            None,
            "another refund of this order went first; read it again",
        ));
    }
    if let Some(agreed) = &agreed {
        agreed.record(&mut tx, id, actor).await?;
    }
    history::record_refund(&mut tx, id, amount, input.reason.as_deref(), actor).await?;
    crate::bus::record(
        &mut tx,
        "order",
        number,
        "order.refunded",
        &serde_json::json!({ "number": number, "amount_minor": amount, "full": full }),
    )
    .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "order.refunded",
            target_type: "order",
            target_id: number.to_owned(),
            before: Some(serde_json::json!({
                "refunded_minor": facts.refunded_minor, "status": facts.status.as_str(),
            })),
            after: Some(serde_json::json!({
                "refunded_minor": facts.refunded_minor + amount, "full": full,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    load(state, id, true).await
}
