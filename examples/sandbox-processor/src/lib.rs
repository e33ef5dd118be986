//! Olivine's sandbox card processor: a small in-memory HTTP server that stands in for a
//! real payment processor while developing and testing payment adapters.
//!
//! It tokenizes cards (the checkout page posts card details to it straight from the
//! browser, so the kernel only ever sees tokens), saves tokenized cards on customers for
//! later off-session charges (subscription renewals), authorizes, captures, refunds and
//! voids with idempotency keys, and has test cards that succeed, decline (hard or soft,
//! at once or only after a first approval), ask for a retry or time out. The API is described in `README.md` next to this crate's `Cargo.toml`.
//!
//! ```no_run
//! # async fn demo() {
//! let (addr, handle) = sandbox_processor::spawn("127.0.0.1:0").await;
//! println!("base_url = http://{addr}");
//! // ... point a payment adapter at it ...
//! handle.shutdown().await;
//! # }
//! ```
//!
//! Nothing is persisted: a restart forgets every card, customer, authorization and
//! idempotency key.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, ToSocketAddrs};

/// The test cards. Every other number that passes the Luhn check is approved too.
///
/// A decline's `decline_type` is `hard` for `lost_card` and `stolen_card` (the card will
/// never work again) and `soft` for `card_declined` and `insufficient_funds` (it may
/// work later).
pub mod cards {
    /// Visa, approved.
    pub const SUCCESS: &str = "4242424242424242";
    /// Mastercard, approved.
    pub const SUCCESS_MASTERCARD: &str = "5555555555554444";
    /// Declined with `card_declined`.
    pub const DECLINED: &str = "4000000000000002";
    /// Declined with `insufficient_funds`.
    pub const INSUFFICIENT_FUNDS: &str = "4000000000009995";
    /// Declined with `lost_card` (a hard decline), every time.
    pub const LOST_CARD: &str = "4000000000009987";
    /// Declined with `stolen_card` (a hard decline), every time.
    pub const STOLEN_CARD: &str = "4000000000009979";
    /// Approves the first authorization of the tokenized card; every later one is
    /// declined with `insufficient_funds` (a soft decline). "Of the card" means of that
    /// token's card, charged through the token or through a customer saved from it; an
    /// idempotent replay of the first authorization still answers the approval. For
    /// renewals that start failing after a successful first payment.
    pub const DECLINES_LATER: &str = "4000000000000341";
    /// Like [`DECLINES_LATER`], but the later authorizations are declined with
    /// `lost_card` (a hard decline).
    pub const DECLINES_LATER_HARD: &str = "4000000000000358";
    /// The first authorization attempt under an idempotency key answers 503; the retry
    /// with the same key (and body) is approved.
    pub const RETRY: &str = "4000000000000119";
    /// Sleeps for the configured timeout (default 30 s), then answers 504 without
    /// authorizing anything.
    pub const TIMEOUT: &str = "4000000000000036";
}

/// Largest amount accepted, in minor units (a hundred billion; still far from `i64`).
pub const MAX_AMOUNT_MINOR: i64 = 100_000_000_000;
const MAX_IDEMPOTENCY_KEY: usize = 255;
const MAX_REFERENCE: usize = 200;

/// How the processor behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Origins allowed to call `POST /v1/tokens` from a browser (CORS). `*` allows any.
    pub allowed_origins: Vec<String>,
    /// When set, every request except tokenization (and `/health`) needs
    /// `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// How long the timeout test card hangs before answering 504.
    pub timeout: Duration,
    /// One line per operation on stderr.
    pub log: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allowed_origins: vec!["*".to_owned()],
            api_key: None,
            timeout: Duration::from_secs(30),
            log: false,
        }
    }
}

impl Config {
    /// The defaults, overridden by `SANDBOX_API_KEY`, `SANDBOX_ALLOWED_ORIGIN`
    /// (comma-separated) and `SANDBOX_TIMEOUT_SECS`.
    pub fn from_env() -> Result<Config, String> {
        let mut config = Config::default();
        if let Ok(key) = std::env::var("SANDBOX_API_KEY") {
            config.set_api_key(&key);
        }
        if let Ok(origins) = std::env::var("SANDBOX_ALLOWED_ORIGIN") {
            config.set_allowed_origins(&origins)?;
        }
        if let Ok(secs) = std::env::var("SANDBOX_TIMEOUT_SECS") {
            config.timeout =
                parse_seconds(&secs).map_err(|e| format!("SANDBOX_TIMEOUT_SECS: {e}"))?;
        }
        Ok(config)
    }

    /// A blank key means no key.
    pub fn set_api_key(&mut self, key: &str) {
        let key = key.trim();
        self.api_key = (!key.is_empty()).then(|| key.to_owned());
    }

    /// Comma-separated origins (`https://shop.example.com,http://127.0.0.1:8080`) or `*`.
    pub fn set_allowed_origins(&mut self, origins: &str) -> Result<(), String> {
        let list: Vec<String> = origins
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        if list.is_empty() {
            return Err("allowed origin: give `*` or at least one origin".to_owned());
        }
        if let Some(bad) = list.iter().find(|o| HeaderValue::from_str(o).is_err()) {
            return Err(format!(
                "allowed origin `{bad}` is not a valid header value"
            ));
        }
        self.allowed_origins = list;
        Ok(())
    }
}

/// Seconds, possibly fractional (`2`, `0.5`).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("`{text}` must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A running processor. Dropping it leaves the server running until the runtime stops.
pub struct Handle {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Set by `abort`: connections a client keeps alive outlive the server's accept
    /// loop, so they are answered 503 and closed from then on.
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl Handle {
    /// Stops accepting connections, lets requests in flight finish, and waits.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stops the server at once: no new connections, requests in flight dropped, and a
    /// connection kept alive by a client answers 503 and closes.
    pub fn abort(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.abort();
    }

    /// Waits until the server stops (it only stops on `shutdown`, `abort` or an error).
    pub async fn wait(mut self) -> std::io::Result<()> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Starts a processor with the default [`Config`] on `addr` (e.g. `"127.0.0.1:0"`) and
/// returns the bound address. Panics if the address cannot be bound (for tests; use
/// [`spawn_with`] to handle that).
pub async fn spawn(addr: impl ToSocketAddrs) -> (SocketAddr, Handle) {
    match spawn_with(addr, Config::default()).await {
        Ok(pair) => pair,
        Err(e) => panic!("sandbox-processor: cannot bind: {e}"),
    }
}

/// Starts a processor with `config` on `addr` and returns the bound address.
pub async fn spawn_with(
    addr: impl ToSocketAddrs,
    config: Config,
) -> std::io::Result<(SocketAddr, Handle)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let down = stopped.clone();
    let app = router(config).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let down = down.clone();
            async move {
                if down.load(std::sync::atomic::Ordering::SeqCst) {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::CONNECTION, "close")],
                    )
                        .into_response();
                }
                next.run(request).await
            }
        },
    ));
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });
    Ok((
        local,
        Handle {
            shutdown: Some(tx),
            task,
            stopped,
        },
    ))
}

/// The processor's routes, to embed in another server.
pub fn router(config: Config) -> Router {
    let app = App {
        config: Arc::new(config),
        ledger: Arc::new(Mutex::new(Ledger::default())),
    };
    Router::new()
        .route("/health", get(health))
        .route("/v1/tokens", post(tokenize).options(preflight))
        .route(
            "/v1/authorizations",
            post(authorize).get(list_authorizations),
        )
        .route("/v1/authorizations/{id}", get(get_authorization))
        .route("/v1/authorizations/{id}/capture", post(capture))
        .route("/v1/authorizations/{id}/refund", post(refund))
        .route("/v1/authorizations/{id}/void", post(void))
        .route("/v1/customers", post(create_customer))
        .route("/v1/customers/{id}", get(get_customer))
        .fallback(not_found)
        .with_state(app)
}

/// Whether `number` passes the Luhn check (digits only).
pub fn luhn_valid(number: &str) -> bool {
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------------------
// State

#[derive(Clone)]
struct App {
    config: Arc<Config>,
    ledger: Arc<Mutex<Ledger>>,
}

impl App {
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock cannot leave the ledger half-written in a way
        // that matters more than refusing every later request would.
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, line: impl FnOnce() -> String) {
        if self.config.log {
            eprintln!("{}", line());
        }
    }
}

#[derive(Default)]
struct Ledger {
    seq: u64,
    /// Tokenized cards by token.
    cards: HashMap<String, Card>,
    customers: HashMap<String, Customer>,
    authorizations: HashMap<String, Authorization>,
    /// Authorization ids in creation order.
    order: Vec<String>,
    idempotency: HashMap<String, Idempotent>,
    /// Idempotency keys under which the retry card already answered its one 503.
    retried: HashSet<String>,
}

impl Ledger {
    fn new_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(self.seq);
        format!("{prefix}_{:016x}{:04x}", hasher.finish(), self.seq & 0xffff)
    }

    /// The stored answer for `key` if this exact request was made before, a conflict if
    /// the key was used for something else or is still in flight, `None` if it is new.
    fn replay(&self, key: &str, fingerprint: &Fingerprint) -> Option<Reply> {
        match self.idempotency.get(key)? {
            Idempotent::Done(stored, reply) if stored == fingerprint => {
                let mut reply = reply.clone();
                reply.replayed = true;
                Some(reply)
            }
            Idempotent::InFlight(stored) if stored == fingerprint => Some(Reply::error(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being processed; retry later",
                None,
            )),
            _ => Some(Reply::error(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request",
                None,
            )),
        }
    }
}

struct Card {
    number: String,
    brand: &'static str,
    /// Approved authorizations of this card entry (through its token or a customer).
    approved: u64,
}

impl Card {
    fn last4(&self) -> &str {
        self.number
            .get(self.number.len().saturating_sub(4)..)
            .unwrap_or("")
    }
}

/// A saved payment method: a tokenized card kept for later (off-session) charges.
struct Customer {
    id: String,
    /// The token whose card entry this customer charges.
    token: String,
    reference: Option<String>,
    brand: &'static str,
    last4: String,
    created_at: u64,
}

impl Customer {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "customer",
            "reference": self.reference,
            "payment_method": {"brand": self.brand, "last4": self.last4},
            "created_at": self.created_at,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Authorized,
    Declined,
    Captured,
    Refunded,
    Voided,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Authorized => "authorized",
            Status::Declined => "declined",
            Status::Captured => "captured",
            Status::Refunded => "refunded",
            Status::Voided => "voided",
        }
    }
}

struct Operation {
    id: String,
    kind: &'static str,
    amount_minor: i64,
}

impl Operation {
    fn json(&self) -> Value {
        json!({"id": self.id, "kind": self.kind, "amount_minor": self.amount_minor})
    }
}

struct Authorization {
    id: String,
    status: Status,
    amount_minor: i64,
    currency: String,
    captured_minor: i64,
    refunded_minor: i64,
    decline_reason: Option<&'static str>,
    reference: String,
    customer: Option<String>,
    off_session: bool,
    brand: &'static str,
    last4: String,
    created_at: u64,
    operations: Vec<Operation>,
}

impl Authorization {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "authorization",
            "status": self.status.as_str(),
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "captured_minor": self.captured_minor,
            "refunded_minor": self.refunded_minor,
            "decline_reason": self.decline_reason,
            "decline_message": self.decline_reason.map(decline_message),
            "decline_type": self.decline_reason.map(decline_type),
            "reference": self.reference,
            "customer": self.customer,
            "off_session": self.off_session,
            "card": {"brand": self.brand, "last4": self.last4},
            "created_at": self.created_at,
            "operations": self.operations.iter().map(Operation::json).collect::<Vec<_>>(),
        })
    }

    /// After a capture or refund.
    fn settle_status(&mut self) {
        if matches!(self.status, Status::Declined | Status::Voided) {
            return;
        }
        self.status = if self.captured_minor == 0 {
            Status::Authorized
        } else if self.refunded_minor == self.captured_minor {
            Status::Refunded
        } else {
            Status::Captured
        };
    }
}

fn decline_message(reason: &str) -> &'static str {
    match reason {
        "insufficient_funds" => "The card has insufficient funds.",
        "lost_card" => "The card was reported lost.",
        "stolen_card" => "The card was reported stolen.",
        _ => "The card was declined.",
    }
}

/// `hard`: the card will never work again, stop trying it. `soft`: it may work later.
fn decline_type(reason: &str) -> &'static str {
    match reason {
        "lost_card" | "stolen_card" => "hard",
        _ => "soft",
    }
}

#[derive(Clone, PartialEq, Debug)]
struct Fingerprint {
    route: String,
    body: Value,
}

enum Idempotent {
    InFlight(Fingerprint),
    Done(Fingerprint, Reply),
}

/// A JSON answer, stored as is for idempotent replays.
#[derive(Clone, Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
    replayed: bool,
}

impl Reply {
    fn new(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            replayed: false,
        }
    }

    fn error(
        status: StatusCode,
        code: &str,
        message: impl Into<String>,
        field: Option<&str>,
    ) -> Reply {
        let mut error = Map::new();
        error.insert("code".into(), code.into());
        error.insert("message".into(), Value::String(message.into()));
        if let Some(field) = field {
            error.insert("field".into(), field.into());
        }
        Reply::new(status, json!({ "error": error }))
    }

    fn invalid(field: &str, message: impl Into<String>) -> Reply {
        Reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            message,
            Some(field),
        )
    }

    fn conflict(code: &str, message: impl Into<String>) -> Reply {
        Reply::error(StatusCode::CONFLICT, code, message, None)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.replayed {
            response.headers_mut().insert(
                HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static("true"),
            );
        }
        response
    }
}

// ---------------------------------------------------------------------------------------
// Request checks

fn check_api_key(config: &Config, headers: &HeaderMap) -> Result<(), Reply> {
    let Some(expected) = &config.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(key) if constant_time_eq(key.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(Reply::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API key: send `Authorization: Bearer <key>`",
            None,
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, Reply> {
    let missing = || {
        Reply::error(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            format!(
                "send an Idempotency-Key header (1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters)"
            ),
            Some("Idempotency-Key"),
        )
    };
    let value = headers.get("idempotency-key").ok_or_else(missing)?;
    let key = value.to_str().map_err(|_| missing())?.trim();
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(missing());
    }
    Ok(key.to_owned())
}

/// The body as a JSON object; an empty body is `{}`.
fn json_object(body: &Bytes) -> Result<Map<String, Value>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object",
            None,
        )),
        Err(e) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
            None,
        )),
    }
}

fn deny_unknown(body: &Map<String, Value>, known: &[&str]) -> Result<(), Reply> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(Reply::invalid(
            unknown,
            format!("unknown field; expected one of: {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// A string field, or a number given where a string of digits is expected.
fn text_field(body: &Map<String, Value>, name: &str) -> Result<Option<String>, Reply> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(Reply::invalid(name, "must be a string")),
    }
}

fn required_text(body: &Map<String, Value>, name: &str) -> Result<String, Reply> {
    text_field(body, name)?.ok_or_else(|| Reply::invalid(name, "is required"))
}

/// `reference`: 1 to [`MAX_REFERENCE`] characters, not blank, no control characters.
fn reference_field(body: &Map<String, Value>) -> Result<Option<String>, Reply> {
    const FIELD: &str = "reference";
    let Some(reference) = text_field(body, FIELD)? else {
        return Ok(None);
    };
    if reference.trim().is_empty()
        || reference.chars().count() > MAX_REFERENCE
        || reference.chars().any(char::is_control)
    {
        return Err(Reply::invalid(
            FIELD,
            format!("must be 1 to {MAX_REFERENCE} characters without control characters"),
        ));
    }
    Ok(Some(reference))
}

/// A JSON boolean (`true` or `false`); absent or `null` is `None`.
fn bool_field(body: &Map<String, Value>, name: &str) -> Result<Option<bool>, Reply> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Reply::invalid(name, "must be true or false")),
    }
}

/// An integer field, given as a JSON integer or a string of digits.
fn int_field(body: &Map<String, Value>, name: &str) -> Result<Option<i64>, Reply> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| Reply::invalid(name, "must be a whole number")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Reply::invalid(name, "must be a whole number")),
        Some(_) => Err(Reply::invalid(name, "must be a whole number")),
    }
}

/// `amount_minor` as JSON integer only (money is never a string or a float here).
fn amount_field(body: &Map<String, Value>, required: bool) -> Result<Option<i64>, Reply> {
    const FIELD: &str = "amount_minor";
    let amount = match body.get(FIELD) {
        None | Some(Value::Null) if required => return Err(Reply::invalid(FIELD, "is required")),
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            Reply::invalid(
                FIELD,
                "must be a whole number of minor units (e.g. 1999 for 19.99)",
            )
        })?,
        Some(_) => {
            return Err(Reply::invalid(
                FIELD,
                "must be a whole number of minor units (e.g. 1999 for 19.99)",
            ));
        }
    };
    if !(1..=MAX_AMOUNT_MINOR).contains(&amount) {
        return Err(Reply::invalid(
            FIELD,
            format!("must be between 1 and {MAX_AMOUNT_MINOR}"),
        ));
    }
    Ok(Some(amount))
}

fn currency_field(body: &Map<String, Value>, required: bool) -> Result<Option<String>, Reply> {
    const FIELD: &str = "currency";
    let currency = match body.get(FIELD) {
        None | Some(Value::Null) if required => return Err(Reply::invalid(FIELD, "is required")),
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Reply::invalid(FIELD, "must be a string")),
    };
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Reply::invalid(
            FIELD,
            "must be an ISO 4217 code in capitals, e.g. EUR",
        ));
    }
    Ok(Some(currency))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// (year, month) in UTC now.
fn current_year_month() -> (i64, i64) {
    // Howard Hinnant's civil_from_days.
    let days = (now_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

fn brand(number: &str) -> &'static str {
    let prefix2: u32 = number.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let prefix4: u32 = number.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
    if number.starts_with('4') {
        "visa"
    } else if (51..=55).contains(&prefix2) || (2221..=2720).contains(&prefix4) {
        "mastercard"
    } else if prefix2 == 34 || prefix2 == 37 {
        "amex"
    } else {
        "unknown"
    }
}

enum Behaviour {
    Approve,
    Decline(&'static str),
    RetryOnce,
    Timeout,
}

/// What authorizing the card `number` does, given how many authorizations of its card
/// entry were approved before (`approved`). The one place numbers map to behaviour.
fn behaviour(number: &str, approved: u64) -> Behaviour {
    match number {
        cards::DECLINED => Behaviour::Decline("card_declined"),
        cards::INSUFFICIENT_FUNDS => Behaviour::Decline("insufficient_funds"),
        cards::LOST_CARD => Behaviour::Decline("lost_card"),
        cards::STOLEN_CARD => Behaviour::Decline("stolen_card"),
        cards::DECLINES_LATER if approved > 0 => Behaviour::Decline("insufficient_funds"),
        cards::DECLINES_LATER_HARD if approved > 0 => Behaviour::Decline("lost_card"),
        cards::DECLINES_LATER | cards::DECLINES_LATER_HARD => Behaviour::Approve,
        cards::RETRY => Behaviour::RetryOnce,
        cards::TIMEOUT => Behaviour::Timeout,
        _ => Behaviour::Approve,
    }
}

// ---------------------------------------------------------------------------------------
// Handlers

async fn health() -> Json<Value> {
    Json(json!({"ok": true}))
}

async fn not_found() -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint", None)
}

/// CORS for the tokenization endpoint, the only one a browser calls. `Err` when the
/// request comes from an origin that is not allowed.
fn cors(config: &Config, headers: &HeaderMap) -> Result<Vec<(HeaderName, HeaderValue)>, Reply> {
    let origin = headers.get(header::ORIGIN);
    if config.allowed_origins.iter().any(|o| o == "*") {
        return Ok(vec![(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        )]);
    }
    let vary = (header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin else {
        // Not a browser's cross-origin request (curl, a server, a test).
        return Ok(vec![vary]);
    };
    let allowed = origin
        .to_str()
        .ok()
        .is_some_and(|o| config.allowed_origins.iter().any(|a| a == o));
    if allowed {
        Ok(vec![
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
            vary,
        ])
    } else {
        Err(Reply::error(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this origin may not tokenize cards here",
            None,
        ))
    }
}

fn with_headers(reply: Reply, extra: Vec<(HeaderName, HeaderValue)>) -> Response {
    let mut response = reply.into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, value);
    }
    response
}

async fn preflight(State(app): State<App>, headers: HeaderMap) -> Response {
    match cors(&app.config, &headers) {
        Ok(mut extra) => {
            extra.extend([
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("POST, OPTIONS"),
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("content-type"),
                ),
                (
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                ),
            ]);
            let mut response = StatusCode::NO_CONTENT.into_response();
            for (name, value) in extra {
                response.headers_mut().insert(name, value);
            }
            response
        }
        Err(reply) => reply.into_response(),
    }
}

async fn tokenize(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let cors_headers = match cors(&app.config, &headers) {
        Ok(h) => h,
        Err(reply) => return reply.into_response(),
    };
    let reply = match tokenize_inner(&app, &body) {
        Ok(reply) | Err(reply) => reply,
    };
    with_headers(reply, cors_headers)
}

fn tokenize_inner(app: &App, body: &Bytes) -> Result<Reply, Reply> {
    let body = json_object(body)?;
    deny_unknown(&body, &["number", "exp_month", "exp_year", "cvc"])?;
    let number: String = required_text(&body, "number")?
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .collect();
    if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reply::invalid("number", "must be 12 to 19 digits"));
    }
    if !luhn_valid(&number) {
        return Err(Reply::invalid(
            "number",
            "is not a valid card number (Luhn check failed)",
        ));
    }
    let month =
        int_field(&body, "exp_month")?.ok_or_else(|| Reply::invalid("exp_month", "is required"))?;
    if !(1..=12).contains(&month) {
        return Err(Reply::invalid("exp_month", "must be between 1 and 12"));
    }
    let year =
        int_field(&body, "exp_year")?.ok_or_else(|| Reply::invalid("exp_year", "is required"))?;
    let year = if (0..100).contains(&year) {
        2000 + year
    } else {
        year
    };
    let (this_year, this_month) = current_year_month();
    if year < this_year || year > this_year + 100 {
        return Err(Reply::invalid(
            "exp_year",
            if year < this_year {
                "the card has expired".to_owned()
            } else {
                format!("must be between {this_year} and {}", this_year + 100)
            },
        ));
    }
    if year == this_year && month < this_month {
        return Err(Reply::invalid("exp_month", "the card has expired"));
    }
    let cvc = required_text(&body, "cvc")?;
    if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reply::invalid("cvc", "must be 3 or 4 digits"));
    }
    let mut ledger = app.lock();
    let token = ledger.new_id("tok");
    let brand = brand(&number);
    let last4 = number[number.len() - 4..].to_owned();
    ledger.cards.insert(
        token.clone(),
        Card {
            number,
            brand,
            approved: 0,
        },
    );
    drop(ledger);
    app.log(|| format!("tokenized {brand} …{last4} as {token}"));
    Ok(Reply::new(
        StatusCode::CREATED,
        json!({
            "token": token,
            "card": {"brand": brand, "last4": last4, "exp_month": month, "exp_year": year},
        }),
    ))
}

async fn authorize(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Reply {
    match authorize_inner(&app, &headers, &body).await {
        Ok(reply) | Err(reply) => reply,
    }
}

/// Removes an in-flight idempotency entry if the request is dropped half-way (the client
/// went away during the timeout card's sleep).
struct InFlightGuard {
    app: App,
    key: Option<String>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut ledger = self.app.lock();
            if matches!(ledger.idempotency.get(&key), Some(Idempotent::InFlight(_))) {
                ledger.idempotency.remove(&key);
            }
        }
    }
}

async fn authorize_inner(app: &App, headers: &HeaderMap, body: &Bytes) -> Result<Reply, Reply> {
    check_api_key(&app.config, headers)?;
    let key = idempotency_key(headers)?;
    let body = json_object(body)?;
    // Everything but the timeout card's wait happens under the lock, in one step.
    match authorize_locked(app, &key, body)? {
        Authorized::Reply(reply) => Ok(reply),
        Authorized::Hang => {
            let _guard = InFlightGuard {
                app: app.clone(),
                key: Some(key.clone()),
            };
            app.log(|| format!("authorize key={key}: hanging (timeout test card)"));
            tokio::time::sleep(app.config.timeout).await;
            Ok(Reply::error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the card network did not answer in time; nothing was authorized",
                None,
            ))
        }
    }
}

/// What an authorization charges: a token's card, or the card saved on a customer.
enum Source {
    Token(String),
    Customer(String),
}

enum Authorized {
    Reply(Reply),
    /// The timeout card: an in-flight idempotency entry was written; wait, then 504.
    Hang,
}

fn authorize_locked(app: &App, key: &str, body: Map<String, Value>) -> Result<Authorized, Reply> {
    let fingerprint = Fingerprint {
        route: "POST /v1/authorizations".to_owned(),
        body: Value::Object(body.clone()),
    };
    let mut ledger = app.lock();
    if let Some(reply) = ledger.replay(key, &fingerprint) {
        return Ok(Authorized::Reply(reply));
    }
    deny_unknown(
        &body,
        &[
            "token",
            "customer",
            "amount_minor",
            "currency",
            "reference",
            "off_session",
        ],
    )?;
    let source = match (text_field(&body, "token")?, text_field(&body, "customer")?) {
        (Some(token), None) => Source::Token(token),
        (None, Some(customer)) => Source::Customer(customer),
        _ => {
            return Err(Reply::invalid(
                "token",
                "give exactly one of `token` or `customer`",
            ));
        }
    };
    let amount = amount_field(&body, true)?.unwrap_or_default();
    let currency = currency_field(&body, true)?.unwrap_or_default();
    let reference =
        reference_field(&body)?.ok_or_else(|| Reply::invalid("reference", "is required"))?;
    let off_session = bool_field(&body, "off_session")?.unwrap_or(false);
    let (token, customer) = match source {
        Source::Token(token) => (token, None),
        Source::Customer(id) => match ledger.customers.get(&id) {
            Some(customer) => (customer.token.clone(), Some(id)),
            None => return Err(Reply::invalid("customer", "unknown customer")),
        },
    };
    let Some(card) = ledger.cards.get(&token) else {
        return Err(match customer {
            // Cards are never forgotten, so a saved customer always has one.
            Some(_) => Reply::invalid("customer", "the customer's card is gone"),
            None => Reply::invalid("token", "unknown token"),
        });
    };
    let (brand, last4) = (card.brand, card.last4().to_owned());
    let decline_reason = match behaviour(&card.number, card.approved) {
        Behaviour::Approve => None,
        Behaviour::Decline(reason) => Some(reason),
        Behaviour::RetryOnce => {
            if ledger.retried.insert(key.to_owned()) {
                app.log(|| format!("authorize key={key}: 503 (retry test card)"));
                return Ok(Authorized::Reply(Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "processor_unavailable",
                    "temporary processing error; retry with the same Idempotency-Key",
                    None,
                )));
            }
            None
        }
        Behaviour::Timeout => {
            ledger
                .idempotency
                .insert(key.to_owned(), Idempotent::InFlight(fingerprint));
            return Ok(Authorized::Hang);
        }
    };
    if decline_reason.is_none()
        && let Some(card) = ledger.cards.get_mut(&token)
    {
        card.approved += 1;
    }
    let id = ledger.new_id("auth");
    let authorization = Authorization {
        id: id.clone(),
        status: if decline_reason.is_some() {
            Status::Declined
        } else {
            Status::Authorized
        },
        amount_minor: amount,
        currency,
        captured_minor: 0,
        refunded_minor: 0,
        decline_reason,
        reference,
        customer,
        off_session,
        brand,
        last4,
        created_at: now_secs(),
        operations: Vec::new(),
    };
    let reply = Reply::new(StatusCode::CREATED, authorization.json());
    app.log(|| {
        format!(
            "authorize {id} {} {} {} ref={} customer={} off_session={} key={key}",
            authorization.status.as_str(),
            authorization.amount_minor,
            authorization.currency,
            authorization.reference,
            authorization.customer.as_deref().unwrap_or("-"),
            authorization.off_session,
        )
    });
    ledger.authorizations.insert(id.clone(), authorization);
    ledger.order.push(id);
    ledger
        .idempotency
        .insert(key.to_owned(), Idempotent::Done(fingerprint, reply.clone()));
    Ok(Authorized::Reply(reply))
}

/// The `{id}` of a path; one that is not UTF-8 names no authorization.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<String, Reply> {
    path_id_or(path, unknown_authorization)
}

/// The `{id}` of a path, or `unknown()` when it cannot be read.
fn path_id_or(
    path: Result<Path<String>, PathRejection>,
    unknown: fn() -> Reply,
) -> Result<String, Reply> {
    path.map(|Path(id)| id).map_err(|_| unknown())
}

async fn get_authorization(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Reply {
    if let Err(reply) = check_api_key(&app.config, &headers) {
        return reply;
    }
    let id = match path_id(path) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    match app.lock().authorizations.get(&id) {
        Some(a) => Reply::new(StatusCode::OK, a.json()),
        None => unknown_authorization(),
    }
}

fn unknown_authorization() -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such authorization",
        None,
    )
}

fn unknown_customer() -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "not_found", "no such customer", None)
}

async fn create_customer(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Reply {
    match create_customer_inner(&app, &headers, &body) {
        Ok(reply) | Err(reply) => reply,
    }
}

fn create_customer_inner(app: &App, headers: &HeaderMap, body: &Bytes) -> Result<Reply, Reply> {
    check_api_key(&app.config, headers)?;
    let key = idempotency_key(headers)?;
    let body = json_object(body)?;
    let fingerprint = Fingerprint {
        route: "POST /v1/customers".to_owned(),
        body: Value::Object(body.clone()),
    };
    let mut ledger = app.lock();
    if let Some(reply) = ledger.replay(&key, &fingerprint) {
        return Ok(reply);
    }
    deny_unknown(&body, &["token", "reference"])?;
    let token = required_text(&body, "token")?;
    let reference = reference_field(&body)?;
    let Some(card) = ledger.cards.get(&token) else {
        return Err(Reply::invalid("token", "unknown token"));
    };
    let (brand, last4) = (card.brand, card.last4().to_owned());
    let id = ledger.new_id("cus");
    let customer = Customer {
        id: id.clone(),
        token,
        reference,
        brand,
        last4,
        created_at: now_secs(),
    };
    let reply = Reply::new(StatusCode::CREATED, customer.json());
    app.log(|| {
        format!(
            "customer {id} {brand} …{} ref={} key={key}",
            customer.last4,
            customer.reference.as_deref().unwrap_or("-")
        )
    });
    ledger.customers.insert(id, customer);
    ledger
        .idempotency
        .insert(key, Idempotent::Done(fingerprint, reply.clone()));
    Ok(reply)
}

async fn get_customer(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Reply {
    if let Err(reply) = check_api_key(&app.config, &headers) {
        return reply;
    }
    let id = match path_id_or(path, unknown_customer) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    match app.lock().customers.get(&id) {
        Some(c) => Reply::new(StatusCode::OK, c.json()),
        None => unknown_customer(),
    }
}

async fn list_authorizations(
    State(app): State<App>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Reply {
    if let Err(reply) = check_api_key(&app.config, &headers) {
        return reply;
    }
    let Ok(Query(query)) = query else {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query string cannot be read",
            None,
        );
    };
    let reference = query.get("reference");
    let ledger = app.lock();
    let data: Vec<Value> = ledger
        .order
        .iter()
        .filter_map(|id| ledger.authorizations.get(id))
        .filter(|a| reference.is_none_or(|r| &a.reference == r))
        .map(Authorization::json)
        .collect();
    Reply::new(StatusCode::OK, json!({ "data": data }))
}

#[derive(Clone, Copy)]
enum Op {
    Capture,
    Refund,
    Void,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Capture => "capture",
            Op::Refund => "refund",
            Op::Void => "void",
        }
    }
}

async fn capture(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    operate(&app, Op::Capture, path, &headers, &body)
}

async fn refund(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    operate(&app, Op::Refund, path, &headers, &body)
}

async fn void(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    operate(&app, Op::Void, path, &headers, &body)
}

fn operate(
    app: &App,
    op: Op,
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Reply {
    let result = check_api_key(&app.config, headers)
        .and_then(|()| path_id(path))
        .and_then(|id| operate_inner(app, op, &id, headers, body));
    match result {
        Ok(reply) | Err(reply) => reply,
    }
}

fn operate_inner(
    app: &App,
    op: Op,
    id: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Reply, Reply> {
    let key = idempotency_key(headers)?;
    let body = json_object(body)?;
    let fingerprint = Fingerprint {
        route: format!("POST /v1/authorizations/{id}/{}", op.name()),
        body: Value::Object(body.clone()),
    };
    let mut ledger = app.lock();
    if let Some(reply) = ledger.replay(&key, &fingerprint) {
        return Ok(reply);
    }
    let (amount, currency) = match op {
        Op::Capture | Op::Refund => {
            deny_unknown(&body, &["amount_minor", "currency"])?;
            (amount_field(&body, false)?, currency_field(&body, false)?)
        }
        Op::Void => {
            deny_unknown(&body, &[])?;
            (None, None)
        }
    };
    let op_id = ledger.new_id(match op {
        Op::Capture => "cap",
        Op::Refund => "ref",
        Op::Void => "void",
    });
    let Some(auth) = ledger.authorizations.get_mut(id) else {
        return Err(unknown_authorization());
    };
    if let Some(currency) = currency
        && currency != auth.currency
    {
        return Err(Reply::invalid(
            "currency",
            format!("the authorization is in {}", auth.currency),
        ));
    }
    let applied = apply(auth, op, amount);
    let reply = match applied {
        Ok(amount_minor) => {
            let operation = Operation {
                id: op_id,
                kind: op.name(),
                amount_minor,
            };
            let op_json = operation.json();
            auth.operations.push(operation);
            auth.settle_status();
            let mut body = auth.json();
            body["operation"] = op_json;
            Reply::new(StatusCode::OK, body)
        }
        Err(reply) => reply,
    };
    app.log(|| format!("{} {id} -> {} key={key}", op.name(), reply.status.as_u16()));
    // Both outcomes of an executed operation are remembered: a replay of a refused
    // capture is refused the same way.
    ledger
        .idempotency
        .insert(key, Idempotent::Done(fingerprint, reply.clone()));
    Ok(reply)
}

/// Applies `op` to `auth`; the amount it moved, or a 409 naming the rule.
fn apply(auth: &mut Authorization, op: Op, amount: Option<i64>) -> Result<i64, Reply> {
    match (op, auth.status) {
        (_, Status::Declined) => {
            return Err(Reply::conflict(
                "authorization_declined",
                format!("the authorization was declined; it cannot be {}", past(op)),
            ));
        }
        (Op::Void, Status::Voided) => {
            return Err(Reply::conflict(
                "already_voided",
                "the authorization is already voided",
            ));
        }
        (_, Status::Voided) => {
            return Err(Reply::conflict(
                "authorization_voided",
                format!("the authorization was voided; it cannot be {}", past(op)),
            ));
        }
        _ => {}
    }
    match op {
        Op::Capture => {
            let remaining = auth.amount_minor - auth.captured_minor;
            if remaining == 0 {
                return Err(Reply::conflict(
                    "already_captured",
                    "the authorization is already captured in full",
                ));
            }
            let amount = amount.unwrap_or(remaining);
            if amount > remaining {
                return Err(Reply::conflict(
                    "amount_exceeds_authorized",
                    format!(
                        "cannot capture {amount}: only {remaining} of {} remains uncaptured",
                        auth.amount_minor
                    ),
                ));
            }
            auth.captured_minor += amount;
            Ok(amount)
        }
        Op::Refund => {
            let refundable = auth.captured_minor - auth.refunded_minor;
            if auth.captured_minor == 0 {
                return Err(Reply::conflict(
                    "nothing_captured",
                    "nothing has been captured, so nothing can be refunded (void instead)",
                ));
            }
            if refundable == 0 {
                return Err(Reply::conflict(
                    "already_refunded",
                    "everything captured has already been refunded",
                ));
            }
            let amount = amount.unwrap_or(refundable);
            if amount > refundable {
                return Err(Reply::conflict(
                    "amount_exceeds_captured",
                    format!(
                        "cannot refund {amount}: only {refundable} of the {} captured is left to refund",
                        auth.captured_minor
                    ),
                ));
            }
            auth.refunded_minor += amount;
            Ok(amount)
        }
        Op::Void => {
            if auth.captured_minor > 0 {
                return Err(Reply::conflict(
                    "already_captured",
                    "cannot void after a capture; refund instead",
                ));
            }
            auth.status = Status::Voided;
            Ok(auth.amount_minor)
        }
    }
}

fn past(op: Op) -> &'static str {
    match op {
        Op::Capture => "captured",
        Op::Refund => "refunded",
        Op::Void => "voided",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_pass_luhn() {
        let mut seen = HashSet::new();
        for number in [
            cards::SUCCESS,
            cards::SUCCESS_MASTERCARD,
            cards::DECLINED,
            cards::INSUFFICIENT_FUNDS,
            cards::LOST_CARD,
            cards::STOLEN_CARD,
            cards::DECLINES_LATER,
            cards::DECLINES_LATER_HARD,
            cards::RETRY,
            cards::TIMEOUT,
        ] {
            assert!(luhn_valid(number), "{number}");
            assert_eq!(number.len(), 16, "{number}");
            assert!(seen.insert(number), "{number} is listed twice");
        }
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("42a2"));
    }

    #[test]
    fn behaviour_of_the_test_cards() {
        let decline = |number: &str, approved: u64| match behaviour(number, approved) {
            Behaviour::Decline(reason) => Some(reason),
            _ => None,
        };
        assert_eq!(decline(cards::LOST_CARD, 0), Some("lost_card"));
        assert_eq!(decline(cards::STOLEN_CARD, 0), Some("stolen_card"));
        assert_eq!(decline(cards::DECLINES_LATER, 0), None);
        assert_eq!(
            decline(cards::DECLINES_LATER, 1),
            Some("insufficient_funds")
        );
        assert_eq!(decline(cards::DECLINES_LATER_HARD, 0), None);
        assert_eq!(decline(cards::DECLINES_LATER_HARD, 7), Some("lost_card"));
        // Any other valid number is approved however often it was approved before.
        assert!(matches!(behaviour(cards::SUCCESS, 99), Behaviour::Approve));
        assert!(matches!(
            behaviour("4000000000000366", 5),
            Behaviour::Approve
        ));
        assert_eq!(decline_type("lost_card"), "hard");
        assert_eq!(decline_type("stolen_card"), "hard");
        assert_eq!(decline_type("card_declined"), "soft");
        assert_eq!(decline_type("insufficient_funds"), "soft");
        assert_eq!(decline_message("lost_card"), "The card was reported lost.");
    }

    #[test]
    fn brands() {
        assert_eq!(brand(cards::SUCCESS), "visa");
        assert_eq!(brand(cards::SUCCESS_MASTERCARD), "mastercard");
        assert_eq!(brand("2223003122003222"), "mastercard");
        assert_eq!(brand("378282246310005"), "amex");
        assert_eq!(brand("6011111111111117"), "unknown");
    }

    #[test]
    fn calendar() {
        let (y, m) = current_year_month();
        assert!((2024..2200).contains(&y));
        assert!((1..=12).contains(&m));
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_seconds("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("x").is_err());
        assert!(parse_seconds("NaN").is_err());
    }
}
