//! Payment adapter for Olivine's sandbox card processor (`examples/sandbox-processor`),
//! through the host's HTTP import.
//!
//! Built for `olivine:plugin@0.2` (payment-adapter): saved payment methods and hard
//! declines.
//!
//! - `save_payment_method` POSTs `{token, reference: customer pseudonym}` to
//!   `<base_url>/v1/customers`; the customer id is the saved method's reference.
//! - `authorize` POSTs `{token | customer, off_session, amount_minor, currency,
//!   reference: order_id}` to `<base_url>/v1/authorizations`; `capture`, `refund` and
//!   `void` POST to
//!   `<base_url>/v1/authorizations/<processor_reference>/<operation>`. Every request
//!   carries the kernel's idempotency key as `Idempotency-Key`, so a retry never charges
//!   twice.
//! - `void` without a processor reference (the kernel crashed before it stored one) finds
//!   the order's open authorizations by reference and voids each of them.
//!
//! Outcomes: an authorized or completed operation is `approved` with the processor's
//! authorization id as the reference; a decline is `declined` with a message for the
//! shopper, hard when the processor's `decline_type` is `hard` (lost or stolen card);
//! 5xx (503, 504), 429, timeouts, transport failures and a request still in
//! flight under the same key are `retryable`; any other 4xx (including 409 for an
//! illegal capture, refund or void, with the processor's message) and a host that was
//! not granted are `invalid`.

use olivine_sdk::http::{self, HttpError, Request, Response};
use olivine_sdk::prelude::*;
use olivine_sdk::settings::Settings;
use serde_json::{Map, Value, json};

/// The adapter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Without a trailing slash, e.g. `http://127.0.0.1:4242`.
    pub base_url: String,
    pub api_key: Option<String>,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        let base_url = s.required("base_url")?;
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        let rest = base_url
            .strip_prefix("http://")
            .or_else(|| base_url.strip_prefix("https://"))
            .ok_or_else(|| {
                format!("setting `base_url` must be an http(s) URL, got `{base_url}`")
            })?;
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
            return Err(format!(
                "setting `base_url` must be a URL like http://127.0.0.1:4242, got `{base_url}`"
            ));
        }
        let api_key = s
            .get("api_key")
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
        Ok(Config { base_url, api_key })
    }

    fn from_host() -> Result<Config, PaymentError> {
        Config::from_settings(&Settings::from_host()).map_err(PaymentError::Invalid)
    }

    fn request(&self, request: Request, idempotency_key: Option<&str>) -> Request {
        let mut request = request
            .header("accept", "application/json")
            .header("user-agent", "olivine-sandbox-payments/0.1");
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        if let Some(api_key) = &self.api_key {
            request = request.header("authorization", format!("Bearer {api_key}"));
        }
        request
    }
}

/// Capture, refund or void.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Capture,
    Refund,
    Void,
}

impl Op {
    pub fn path(self) -> &'static str {
        match self {
            Op::Capture => "capture",
            Op::Refund => "refund",
            Op::Void => "void",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Op::Capture => "captured",
            Op::Refund => "refunded",
            Op::Void => "voided",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Requests

fn check_idempotency_key(key: &str) -> Result<(), PaymentError> {
    if key.trim().is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PaymentError::Invalid(
            "the idempotency key must be 1-255 visible ASCII characters".into(),
        ));
    }
    Ok(())
}

/// Whether `text` is 13-19 digits (spaces and dashes aside) passing the Luhn check: a
/// card number where only a token may go.
pub fn looks_like_card_number(text: &str) -> bool {
    let digits: Vec<u32> = text
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2, d * 2) {
            (1, doubled) if doubled > 9 => doubled - 9,
            (1, doubled) => doubled,
            _ => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Processor ids are `auth_<hex>`; anything that could leave the path is refused.
fn check_reference(reference: &str) -> Result<(), PaymentError> {
    let ok = !reference.is_empty()
        && reference.len() <= 128
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PaymentError::Invalid(format!(
            "`{}` is not a sandbox processor authorization id",
            snippet(reference, 80)
        )))
    }
}

/// A token or saved reference: not empty, and never a card number.
fn check_token(token: &str) -> Result<&str, PaymentError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(PaymentError::Invalid("no payment token".into()));
    }
    if looks_like_card_number(token) {
        return Err(PaymentError::Invalid(
            "the payment token is a card number; card data must never reach the kernel".into(),
        ));
    }
    Ok(token)
}

pub fn save_request(config: &Config, r: &SaveRequest) -> Result<Request, PaymentError> {
    check_idempotency_key(&r.idempotency_key)?;
    let token = check_token(&r.payment_token)?;
    let mut body = Map::new();
    body.insert("token".into(), json!(token));
    if let Some(customer) = &r.customer {
        body.insert("reference".into(), json!(customer.pseudonym));
    }
    Ok(config.request(
        Request::post(format!("{}/v1/customers", config.base_url))
            .json(Value::Object(body).to_string()),
        Some(&r.idempotency_key),
    ))
}

pub fn save_outcome(result: Result<Response, HttpError>) -> Result<SavedMethod, PaymentError> {
    let customer = classify(result)?;
    let id = text(&customer, "id")
        .filter(|id| id.starts_with("cus_"))
        .ok_or_else(|| {
            PaymentError::Retryable("the payment processor's answer has no customer id".into())
        })?;
    let card = customer.get("payment_method").unwrap_or(&Value::Null);
    let label = match (text(card, "brand"), text(card, "last4")) {
        (Some(brand), Some(last4)) => format!("{} ending {last4}", capitalised(brand)),
        _ => "saved card".to_owned(),
    };
    Ok(SavedMethod {
        reference: id.to_owned(),
        label,
    })
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

pub fn authorize_request(config: &Config, r: &AuthorizeRequest) -> Result<Request, PaymentError> {
    check_idempotency_key(&r.idempotency_key)?;
    let (field, value) = match &r.source {
        PaymentSource::Token(token) => ("token", check_token(token)?),
        PaymentSource::Saved(customer) => {
            let customer = customer.trim();
            if !customer.starts_with("cus_") {
                return Err(PaymentError::Invalid(format!(
                    "`{}` is not a saved sandbox customer",
                    snippet(customer, 80)
                )));
            }
            ("customer", customer)
        }
    };
    if r.amount.amount_minor <= 0 {
        return Err(PaymentError::Invalid(format!(
            "the amount to authorize must be positive, got {}",
            r.amount.amount_minor
        )));
    }
    if r.order_id.trim().is_empty() {
        return Err(PaymentError::Invalid("no order id".into()));
    }
    let body = json!({
        field: value,
        "off_session": r.off_session,
        "amount_minor": r.amount.amount_minor,
        "currency": r.amount.currency,
        "reference": r.order_id,
    });
    Ok(config.request(
        Request::post(format!("{}/v1/authorizations", config.base_url)).json(body.to_string()),
        Some(&r.idempotency_key),
    ))
}

pub fn operation_request(
    config: &Config,
    op: Op,
    o: &PaymentOperation,
) -> Result<Request, PaymentError> {
    check_idempotency_key(&o.idempotency_key)?;
    check_reference(&o.processor_reference)?;
    let mut body = Map::new();
    if let Some(amount) = &o.amount {
        if op == Op::Void {
            return Err(PaymentError::Invalid(
                "a void takes no amount (it releases the whole authorization)".into(),
            ));
        }
        if amount.amount_minor <= 0 {
            return Err(PaymentError::Invalid(format!(
                "the amount to {} must be positive, got {}",
                op.path(),
                amount.amount_minor
            )));
        }
        body.insert("amount_minor".into(), amount.amount_minor.into());
        body.insert("currency".into(), amount.currency.clone().into());
    }
    Ok(config.request(
        Request::post(format!(
            "{}/v1/authorizations/{}/{}",
            config.base_url,
            o.processor_reference,
            op.path()
        ))
        .json(Value::Object(body).to_string()),
        Some(&o.idempotency_key),
    ))
}

/// `GET /v1/authorizations?reference=<order_id>`.
pub fn lookup_request(config: &Config, order_id: &str) -> Request {
    config.request(
        Request::get(format!(
            "{}/v1/authorizations?reference={}",
            config.base_url,
            percent_encode(order_id)
        )),
        None,
    )
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Answers

/// What a shopper is told about a decline. Fixed texts: the processor's own wording is
/// not passed to the storefront.
pub fn shopper_message(decline_reason: Option<&str>) -> String {
    match decline_reason {
        Some("insufficient_funds") => {
            "Your card has insufficient funds. Please use another card.".into()
        }
        Some("expired_card") => "Your card has expired. Please use another card.".into(),
        Some("incorrect_cvc") => "Your card's security code is incorrect.".into(),
        Some("lost_card") | Some("stolen_card") => {
            "Your card cannot be used. Please use another card.".into()
        }
        _ => "Your card was declined. Please use another card.".into(),
    }
}

/// A declined authorization: the shopper's message, hard when the processor says the
/// card will never work again.
fn decline(auth: &Value) -> PaymentError {
    PaymentError::Declined(Decline {
        message: shopper_message(text(auth, "decline_reason")),
        hard: text(auth, "decline_type") == Some("hard"),
    })
}

fn snippet(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `code: message` from the processor's `{"error": {...}}`, or the start of the body.
fn processor_error(response: &Response) -> (String, String) {
    let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let text = |key: &str| {
        error
            .and_then(|e| e.get(key))
            .and_then(Value::as_str)
            .map(|s| snippet(s, 300))
    };
    let code = text("code").unwrap_or_default();
    let mut message = text("message").unwrap_or_else(|| snippet(&response.text(), 200));
    if let Some(field) = text("field") {
        message = format!("{field}: {message}");
    }
    (code, message)
}

/// Everything but a 2xx with a JSON object becomes the error it means.
fn classify(result: Result<Response, HttpError>) -> Result<Value, PaymentError> {
    let response = match result {
        Ok(response) => response,
        Err(HttpError::Denied(why)) => {
            return Err(PaymentError::Invalid(format!(
                "the host denied the request to the processor (grant its host to sandbox-payments): {why}"
            )));
        }
        Err(HttpError::Timeout) => {
            return Err(PaymentError::Retryable(
                "the payment processor did not answer in time".into(),
            ));
        }
        Err(HttpError::Failed(why)) => {
            return Err(PaymentError::Retryable(format!(
                "the payment processor is unreachable: {why}"
            )));
        }
    };
    let status = response.status;
    if response.is_success() {
        return match serde_json::from_slice::<Value>(&response.body) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(PaymentError::Retryable(format!(
                "the payment processor answered {status} with something that is not a JSON object"
            ))),
        };
    }
    let (code, message) = processor_error(&response);
    let described = if code.is_empty() {
        format!("the payment processor answered {status}: {message}")
    } else {
        format!("the payment processor answered {status} {code}: {message}")
    };
    match status {
        402 => {
            let body = serde_json::from_slice::<Value>(&response.body).unwrap_or_default();
            Err(decline(&body))
        }
        // The same request is still running at the processor: ask again later.
        409 if code == "idempotency_key_in_use" => Err(PaymentError::Retryable(described)),
        429 | 500..=599 => Err(PaymentError::Retryable(described)),
        _ => Err(PaymentError::Invalid(described)),
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn money_text(v: &Value, key: &str) -> Option<String> {
    let amount = v.get(key).and_then(Value::as_i64)?;
    let currency = text(v, "currency")?;
    Some(Money::new(amount, currency).to_string())
}

fn authorization_id(v: &Value) -> Result<String, PaymentError> {
    text(v, "id")
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            PaymentError::Retryable("the payment processor's answer has no authorization id".into())
        })
}

pub fn authorize_outcome(
    result: Result<Response, HttpError>,
) -> Result<PaymentResult, PaymentError> {
    let auth = classify(result)?;
    match text(&auth, "status") {
        Some("authorized") => {
            let id = authorization_id(&auth)?;
            let card = auth.get("card").unwrap_or(&Value::Null);
            let mut message = format!(
                "authorized {}",
                money_text(&auth, "amount_minor").unwrap_or_default()
            );
            if let (Some(brand), Some(last4)) = (text(card, "brand"), text(card, "last4")) {
                message.push_str(&format!(" on {brand} ending {last4}"));
            }
            Ok(PaymentResult {
                status: PaymentStatus::Approved,
                processor_reference: id,
                message,
            })
        }
        Some("declined") => Err(decline(&auth)),
        other => Err(PaymentError::Retryable(format!(
            "the payment processor answered an authorization with status {other:?}"
        ))),
    }
}

pub fn operation_outcome(
    op: Op,
    result: Result<Response, HttpError>,
) -> Result<PaymentResult, PaymentError> {
    let auth = classify(result)?;
    let id = authorization_id(&auth)?;
    let expected: &[&str] = match op {
        Op::Capture | Op::Refund => &["captured", "refunded"],
        Op::Void => &["voided"],
    };
    let status = text(&auth, "status");
    if !status.is_some_and(|s| expected.contains(&s)) {
        return Err(PaymentError::Retryable(format!(
            "after a {} the payment processor reports status {status:?}",
            op.path()
        )));
    }
    let moved = auth
        .get("operation")
        .and_then(|o| o.get("amount_minor"))
        .and_then(Value::as_i64)
        .zip(text(&auth, "currency"))
        .map(|(amount, currency)| Money::new(amount, currency).to_string());
    let total = money_text(&auth, "amount_minor").unwrap_or_default();
    let captured = money_text(&auth, "captured_minor").unwrap_or_default();
    let message = match (op, moved) {
        (Op::Capture, Some(moved)) => format!("captured {moved} ({captured} of {total} captured)"),
        (Op::Refund, Some(moved)) => format!(
            "refunded {moved} ({} of {captured} captured refunded)",
            money_text(&auth, "refunded_minor").unwrap_or_default()
        ),
        (Op::Void, _) => format!("voided the authorization of {total}"),
        (_, None) => op.past().to_owned(),
    };
    Ok(PaymentResult {
        status: PaymentStatus::Approved,
        processor_reference: id,
        message,
    })
}

/// Void without a processor reference: find the order's authorizations and void each one
/// still open. Nothing to void is a success (there is no authorization left behind);
/// one already captured is `invalid` (refund it instead).
pub fn void_by_order(config: &Config, o: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
    check_idempotency_key(&o.idempotency_key)?;
    if o.order_id.trim().is_empty() {
        return Err(PaymentError::Invalid(
            "a void needs a processor reference or an order id".into(),
        ));
    }
    let found = classify(http::send(&lookup_request(config, &o.order_id)))?;
    let Some(list) = found.get("data").and_then(Value::as_array) else {
        return Err(PaymentError::Retryable(
            "the payment processor's lookup answer has no `data` list".into(),
        ));
    };
    let mut voided = Vec::new();
    for auth in list {
        let id = authorization_id(auth)?;
        match text(auth, "status") {
            Some("authorized") => {
                let op = PaymentOperation {
                    order_id: o.order_id.clone(),
                    idempotency_key: format!("{}:{id}", o.idempotency_key),
                    processor_reference: id.clone(),
                    amount: None,
                };
                operation_outcome(
                    Op::Void,
                    http::send(&operation_request(config, Op::Void, &op)?),
                )?;
                voided.push(id);
            }
            Some("captured") => {
                return Err(PaymentError::Invalid(format!(
                    "authorization {id} of order {} is captured; refund it instead of voiding",
                    o.order_id
                )));
            }
            // Declined, voided, refunded: nothing held.
            _ => {}
        }
    }
    let message = if voided.is_empty() {
        format!(
            "no open authorization for order {}; nothing to void",
            o.order_id
        )
    } else {
        format!("voided {}", voided.join(", "))
    };
    Ok(PaymentResult {
        status: PaymentStatus::Approved,
        processor_reference: voided.into_iter().next().unwrap_or_default(),
        message,
    })
}

/// `subject`: `order 1001`, `customer c_1f…`.
fn logged<T>(
    call: &str,
    subject: &str,
    result: Result<T, PaymentError>,
) -> Result<T, PaymentError> {
    match &result {
        Err(PaymentError::Retryable(why)) => {
            log::warn!("{call} for {subject}: retryable: {why}")
        }
        Err(PaymentError::Invalid(why)) => {
            log::error!("{call} for {subject}: invalid: {why}")
        }
        _ => {}
    }
    result
}

fn operate(op: Op, o: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
    let result = (|| {
        let config = Config::from_host()?;
        if op == Op::Void && o.processor_reference.trim().is_empty() {
            return void_by_order(&config, o);
        }
        operation_outcome(op, http::send(&operation_request(&config, op, o)?))
    })();
    logged(op.path(), &format!("order {}", o.order_id), result)
}

pub struct SandboxPayments;

impl PaymentAdapter for SandboxPayments {
    fn save_payment_method(request: &SaveRequest) -> Result<SavedMethod, PaymentError> {
        let result = (|| {
            let config = Config::from_host()?;
            save_outcome(http::send(&save_request(&config, request)?))
        })();
        let customer = request.customer.as_ref().map(|c| c.pseudonym.as_str());
        logged(
            "save payment method",
            &format!("customer {}", customer.unwrap_or("-")),
            result,
        )
    }

    fn authorize(request: &AuthorizeRequest) -> Result<PaymentResult, PaymentError> {
        let result = (|| {
            let config = Config::from_host()?;
            authorize_outcome(http::send(&authorize_request(&config, request)?))
        })();
        logged("authorize", &format!("order {}", request.order_id), result)
    }

    fn capture(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        operate(Op::Capture, operation)
    }

    fn refund(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        operate(Op::Refund, operation)
    }

    fn void(operation: &PaymentOperation) -> Result<PaymentResult, PaymentError> {
        operate(Op::Void, operation)
    }
}

olivine_sdk::export_payment_adapter!(SandboxPayments);

#[cfg(test)]
mod tests;
