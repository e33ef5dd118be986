//! Rate limits per client: fixed-window counters keyed by (class, client). A window
//! starts with a client's first request of the class and lasts the class's window;
//! past the limit, requests are refused until it ends (`Retry-After` says when).
//!
//! A request is put in one class by its method and path ([`classify`]): `sign-in`,
//! `register`, or `api` (everything else under `/api/`); storefront pages are not
//! limited. Customer sign-in is also limited per account (`sign-in-account`, keyed by the
//! email's lookup hash), so spreading guesses over many addresses does not help either.
//!
//! The limit is checked before the handler runs, so a brute force meets a cheap 429
//! with `Retry-After`, never the password hashing.
//!
//! Who a client is: the address the request came from ([`RateLimiter::client_of`]), except
//! that an `api` or `catalog` request signed in with a bearer token is counted per
//! customer or staff member ([`RateLimiter::signed_in_as`]), so the customers behind one
//! mobile carrier's NAT address each have their own budget and a customer's budget
//! follows them from Wi-Fi to mobile. A customer's access token is verified here without
//! the database (signature, key, expiry: [`crate::accounts::decode_access_token`]);
//! staff tokens are opaque, so a staff token counts per staff member once this node has
//! seen the admin middleware accept it ([`RateLimiter::staff_token_accepted`]; until then,
//! and after it refused it, by address). A token that is not valid counts by address, so
//! made-up tokens cannot mint fresh budgets. Sign-in and registration stay per address.
//!
//! Counters live in this process, or in Redis when `REDIS_URL` is set, so that every node
//! counts together (`INCR` + `EXPIRE` in one Lua script, atomic). When Redis does not
//! answer, the limiter fails open to this process's counters: it logs a warning, counts
//! `olivine_rate_limit_redis_errors_total`, and the store keeps serving. An unreachable
//! Redis at start is the same (a warning, not a refusal to start); a malformed URL is a
//! configuration error.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::accounts::Keyring;
use crate::app::AppState;
use crate::config::ServeConfig;
use crate::error::Error;

/// What a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Sign-in attempts per client (customer and staff, API and storefront form).
    SignIn,
    /// Sign-in attempts per account, whichever client makes them.
    SignInAccount,
    /// Account registrations per client.
    Register,
    /// Every other request under `/api/`, per client.
    Api,
    /// Reads of the catalog under `/api/` (cached answers), per client.
    Catalog,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::SignIn => "sign-in",
            Class::SignInAccount => "sign-in-account",
            Class::Register => "register",
            Class::Api => "api",
            Class::Catalog => "catalog",
        }
    }
}

/// The class of a request, or `None` when it is not limited.
pub fn classify(method: &Method, path: &str) -> Option<Class> {
    const SIGN_IN: [&str; 4] = [
        "/api/v1/account/sign-in",
        "/api/v1/staff/sign-in",
        "/account/sign-in",
        "/admin/sign-in",
    ];
    const REGISTER: [&str; 2] = ["/api/v1/account/register", "/account/register"];
    if method == Method::POST && SIGN_IN.contains(&path) {
        Some(Class::SignIn)
    } else if method == Method::POST && REGISTER.contains(&path) {
        Some(Class::Register)
    } else if (method == Method::GET || method == Method::HEAD) && is_catalog_read(path) {
        Some(Class::Catalog)
    } else if path.starts_with("/api/") {
        Some(Class::Api)
    } else {
        None
    }
}

/// The catalog's public reads: the product list, one product, the categories, the
/// OpenAPI document. Answered from the cache, so they cost little.
fn is_catalog_read(path: &str) -> bool {
    match path.strip_prefix("/api/v1/") {
        Some("products" | "categories" | "openapi.json") => true,
        Some(rest) => rest
            .strip_prefix("products/")
            .is_some_and(|slug| !slug.is_empty() && !slug.contains('/')),
        None => false,
    }
}

/// At most `max` requests per window of `window_secs`; `max` 0 means no limit.
/// Written `10/1m`, `600/60s`, `5/10m`, `100/1h`, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window_secs: u64,
}

impl Limit {
    pub const OFF: Limit = Limit {
        max: 0,
        window_secs: 1,
    };

    pub fn new(max: u32, window_secs: u64) -> Limit {
        Limit {
            max,
            window_secs: window_secs.max(1),
        }
    }

    pub fn is_off(self) -> bool {
        self.max == 0
    }
}

impl FromStr for Limit {
    type Err = String;

    fn from_str(text: &str) -> Result<Limit, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Limit::OFF);
        }
        let bad = || format!("`{text}` is not a rate limit such as 10/1m, 600/60s or off");
        let (max, window) = text.split_once('/').ok_or_else(bad)?;
        let max: u32 = max.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        let (number, unit) = match window.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => window.split_at(at),
            None => (window, "s"),
        };
        let number: u64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => Some(number),
            "m" => number.checked_mul(60),
            "h" => number.checked_mul(3600),
            _ => None,
        };
        // At most a year: longer is a typo, and keeps the arithmetic far from overflow.
        let seconds = seconds
            .filter(|s| (1..=365 * 24 * 3600).contains(s))
            .ok_or_else(bad)?;
        Ok(Limit::new(max, seconds))
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_off() {
            write!(f, "off")
        } else {
            write!(f, "{}/{}s", self.max, self.window_secs)
        }
    }
}

/// The limits of every class.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub sign_in: Limit,
    pub sign_in_account: Limit,
    pub register: Limit,
    pub api: Limit,
    pub catalog: Limit,
}

impl Limits {
    fn of(&self, class: Class) -> Limit {
        match class {
            Class::SignIn => self.sign_in,
            Class::SignInAccount => self.sign_in_account,
            Class::Register => self.register,
            Class::Api => self.api,
            Class::Catalog => self.catalog,
        }
    }
}

pub struct RateLimiter {
    limits: Limits,
    /// Starts every counter key, so several stores (or tests) can share one Redis.
    prefix: String,
    trust_forwarded_for: bool,
    local: LocalCounters,
    redis: Option<RedisCounters>,
    /// Staff tokens the admin middleware accepted on this node, by their SHA-256.
    staff_tokens: StaffTokens,
}

impl RateLimiter {
    /// The limiter the configuration asks for. With `redis_url` set it checks Redis once
    /// and warns (without failing) when it does not answer.
    pub async fn from_config(config: &ServeConfig) -> anyhow::Result<RateLimiter> {
        let redis = match config.redis_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => Some(RedisCounters::connect(url).await?),
            _ => None,
        };
        Ok(RateLimiter {
            limits: Limits {
                sign_in: config.rate_limit_sign_in,
                sign_in_account: config.rate_limit_sign_in_account,
                register: config.rate_limit_register,
                api: config.rate_limit_api,
                catalog: config.rate_limit_catalog,
            },
            prefix: config.rate_limit_prefix.clone(),
            trust_forwarded_for: config.trust_forwarded_for,
            local: LocalCounters::default(),
            redis,
            staff_tokens: StaffTokens::default(),
        })
    }

    /// The limit of `class`.
    pub fn limit(&self, class: Class) -> Limit {
        self.limits.of(class)
    }

    /// Counts one request of `client` in `class`: an error
    /// ([`Error::TooManyRequests`]) once the window's limit is passed.
    pub async fn hit(&self, class: Class, client: &str) -> Result<(), Error> {
        self.hit_client(class, Client::Named(client.to_owned()))
            .await
    }

    /// [`RateLimiter::hit`] for a client as the middleware knows it (an address is kept as
    /// a number: no string is made for it unless Redis needs its key).
    pub async fn hit_client(&self, class: Class, client: Client) -> Result<(), Error> {
        let limit = self.limits.of(class);
        if limit.is_off() {
            return Ok(());
        }
        let window = Duration::from_secs(limit.window_secs);
        let counted = match self.redis.as_ref().filter(|r| r.available()) {
            Some(redis) => {
                let key = format!("{}:{}:{}", self.prefix, class.name(), client);
                match redis.incr(&key, window).await {
                    Ok(counted) => counted,
                    Err(err) => {
                        redis.report_failure(&err);
                        self.local.incr(class, client, window)
                    }
                }
            }
            None => self.local.incr(class, client, window),
        };
        self.judge(class, limit, counted)
    }

    /// Who made the request: the peer address, or with `trust_forwarded_for` the last
    /// address of `X-Forwarded-For` (the one the proxy in front of the kernel saw; the
    /// ones before it are whatever the client claimed). Without either (requests made
    /// in-process, as tests do) every request is the one client `unknown`.
    pub fn client_of(&self, request: &Request) -> Client {
        if self.trust_forwarded_for
            && let Some(ip) = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .next_back()
                .and_then(|v| v.rsplit(',').next())
                .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
        {
            return Client::of_address(ip);
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(Client::Unknown, |ConnectInfo(addr)| {
                Client::of_address(addr.ip())
            })
    }
}

/// Who a counter counts: an address, or a name (a signed-in customer or staff member, an
/// account). Written as the end of its key (`203.0.113.7`, `2001:db8:1:2::/64`,
/// `unknown`, `customer:c_…`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    V4(Ipv4Addr),
    /// An IPv6 address's /64 network (its upper 64 bits).
    V6Network(u64),
    /// No address known (requests made in-process).
    Unknown,
    Named(String),
}

impl Client {
    /// An IPv4 address as it is; an IPv6 address by its /64 network, since one
    /// subscriber usually holds a whole /64 and could otherwise take a fresh address per
    /// request.
    pub fn of_address(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4),
                None => Client::V6Network((u128::from(v6) >> 64) as u64),
            },
            IpAddr::V4(v4) => Client::V4(v4),
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::V4(v4) => write!(f, "{v4}"),
            Client::V6Network(network) => {
                write!(f, "{}/64", Ipv6Addr::from(u128::from(*network) << 64))
            }
            Client::Unknown => f.write_str("unknown"),
            Client::Named(name) => f.write_str(name),
        }
    }
}

impl RateLimiter {
    /// Who a request is signed in as, when its bearer token proves it: `customer:<pseudonym>`
    /// for a customer's access token that verifies (signature, known key, not expired;
    /// without the database), `staff:<id>` for a staff token the admin middleware accepted
    /// on this node lately. `None` for anything else (no token, a made-up, expired or
    /// revoked one, a staff token not seen yet): the request then counts by address.
    ///
    /// A customer's budget is per customer, not per token or session: signing in again
    /// does not give a fresh one.
    pub fn signed_in_as(&self, keys: &Keyring, headers: &HeaderMap) -> Option<Client> {
        let token = crate::http::bearer_token(headers)?;
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        // An access token is a JWT (three parts); staff tokens are opaque.
        if token.bytes().filter(|&b| b == b'.').count() == 2
            && let Ok(claims) = crate::accounts::decode_access_token(keys, token)
        {
            return Some(Client::Named(format!("customer:{}", claims.sub)));
        }
        self.staff_tokens
            .staff_of(token)
            .map(|id| Client::Named(format!("staff:{id}")))
    }

    /// The admin middleware accepted `token` as staff member `staff_id`: from now on this
    /// node counts requests carrying it per staff member.
    pub fn staff_token_accepted(&self, token: &str, staff_id: i64) {
        self.staff_tokens.accepted(token, staff_id);
    }

    /// `token` was refused or revoked: requests carrying it count by address again.
    pub fn staff_token_refused(&self, token: &str) {
        self.staff_tokens.refused(token);
    }
}

/// Bearer tokens longer than this are not looked at (ours are a few hundred bytes).
const MAX_TOKEN_BYTES: usize = 4096;

/// Staff tokens the admin middleware accepted on this node: SHA-256 of the token -> (the
/// staff member, when the entry lapses). Every admin request looks its token up in the
/// database and says what it found, so a revoked or expired token is forgotten at its
/// next use; the lapse only keeps the map to tokens in use.
#[derive(Default)]
struct StaffTokens {
    verified: Mutex<HashMap<[u8; 32], (i64, Instant)>>,
}

/// How long an accepted staff token is remembered after its last acceptance.
const STAFF_TOKEN_TTL: Duration = Duration::from_secs(600);
/// Expired entries are pruned above this many.
const STAFF_TOKENS_PRUNE_ABOVE: usize = 1_000;

impl StaffTokens {
    fn digest(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    fn staff_of(&self, token: &str) -> Option<i64> {
        let digest = Self::digest(token);
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified
            .get(&digest)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(id, _)| *id)
    }

    fn accepted(&self, token: &str, staff_id: i64) {
        let digest = Self::digest(token);
        let now = Instant::now();
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() > STAFF_TOKENS_PRUNE_ABOVE {
            verified.retain(|_, (_, until)| *until > now);
        }
        verified.insert(digest, (staff_id, now + STAFF_TOKEN_TTL));
    }

    fn refused(&self, token: &str) {
        let digest = Self::digest(token);
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified.remove(&digest);
    }
}

/// The middleware: classifies the request and counts it before anything else runs, per
/// signed-in customer or staff member for `api` and `catalog` requests, else per address.
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some((class, client)) = state.limiter.counted_as(&state.keys, &request) else {
        return next.run(request).await;
    };
    match state.limiter.hit_client(class, client).await {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

impl RateLimiter {
    /// What a request counts against and as whom, `None` when it is not limited (not a
    /// limited class, or its class's limit is off): per signed-in customer or staff
    /// member for `api` and `catalog` requests, else per address.
    pub fn counted_as(&self, keys: &Keyring, request: &Request) -> Option<(Class, Client)> {
        let class = classify(request.method(), request.uri().path())?;
        if self.limit(class).is_off() {
            return None;
        }
        let signed_in = match class {
            Class::Api | Class::Catalog => self.signed_in_as(keys, request.headers()),
            Class::SignIn | Class::SignInAccount | Class::Register => None,
        };
        Some((class, signed_in.unwrap_or_else(|| self.client_of(request))))
    }

    /// Whether the counters are this process's (no Redis configured): then
    /// [`RateLimiter::hit_now`] counts without waiting.
    pub fn counts_in_process(&self) -> bool {
        self.redis.is_none()
    }

    /// [`RateLimiter::hit_client`] without waiting, in this process's counters (what it
    /// does when [`RateLimiter::counts_in_process`]).
    pub fn hit_now(&self, class: Class, client: Client) -> Result<(), Error> {
        let limit = self.limits.of(class);
        if limit.is_off() {
            return Ok(());
        }
        let counted = self
            .local
            .incr(class, client, Duration::from_secs(limit.window_secs));
        self.judge(class, limit, counted)
    }

    /// Whether a count is within the limit; the refusal (counted in
    /// `olivine_rate_limited_total`) when it is not.
    fn judge(
        &self,
        class: Class,
        limit: Limit,
        (count, remaining): (u64, Duration),
    ) -> Result<(), Error> {
        if count <= u64::from(limit.max) {
            return Ok(());
        }
        metrics::counter!("olivine_rate_limited_total", "class" => class.name()).increment(1);
        Err(Error::TooManyRequests {
            retry_after_secs: remaining.as_millis().div_ceil(1000).max(1) as u64,
        })
    }
}

/// Unix seconds (for spacing out warnings).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counters of this process: (class, client) -> (end of its window, count). Entries of
/// windows that have ended are pruned as the map grows, so it holds about one window's
/// clients.
#[derive(Default)]
struct LocalCounters {
    counts: Mutex<HashMap<(Class, Client), (Instant, u64)>>,
}

/// Pruning starts above this many entries.
const LOCAL_PRUNE_ABOVE: usize = 10_000;

impl LocalCounters {
    /// Counts one request: the count in the window and the time left in it.
    fn incr(&self, class: Class, client: Client, window: Duration) -> (u64, Duration) {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update: the counts
        // are still usable.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() > LOCAL_PRUNE_ABOVE {
            counts.retain(|_, (end, _)| *end > now);
        }
        let entry = counts.entry((class, client)).or_insert((now + window, 0));
        if entry.0 <= now {
            *entry = (now + window, 0);
        }
        entry.1 += 1;
        (entry.1, entry.0 - now)
    }
}

/// Counters in Redis, shared by every node.
struct RedisCounters {
    connection: redis::aio::ConnectionManager,
    script: redis::Script,
    /// When the last failure was logged (unix seconds), so an outage logs a line every
    /// few seconds rather than one per request.
    last_warning: AtomicU64,
    /// After a failure Redis is left alone until then (unix seconds), so an outage does
    /// not add a timeout to every request.
    skip_until: AtomicU64,
}

/// How long Redis is left alone after a failure.
const REDIS_BACKOFF_SECS: u64 = 5;

/// `INCR`, with the window's expiry set on the first increment, in one atomic step;
/// answers the count and the milliseconds left in the window.
const INCR_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if count == 1 or left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
";

/// How long a request waits for Redis before counting locally instead.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

impl RedisCounters {
    async fn connect(url: &str) -> anyhow::Result<RedisCounters> {
        let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2);
        // Lazy: connects (and reconnects) in the background, so a Redis that is down
        // now does not keep the kernel from starting.
        let connection = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
            .context("setting up the Redis connection")?;
        let counters = RedisCounters {
            connection,
            script: redis::Script::new(INCR_SCRIPT),
            last_warning: AtomicU64::new(0),
            skip_until: AtomicU64::new(0),
        };
        let mut connection = counters.connection.clone();
        let ping: Result<redis::RedisResult<String>, _> = tokio::time::timeout(
            REDIS_TIMEOUT * 4,
            redis::cmd("PING").query_async(&mut connection),
        )
        .await;
        match ping {
            Ok(Ok(_)) => tracing::info!("rate-limit counters in Redis"),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "Redis does not answer: rate limits count in this process until it does")
            }
            Err(_) => tracing::warn!(
                "Redis does not answer in time: rate limits count in this process until it does"
            ),
        }
        Ok(counters)
    }

    async fn incr(&self, key: &str, window: Duration) -> anyhow::Result<(u64, Duration)> {
        let mut connection = self.connection.clone();
        let mut invocation = self.script.key(key);
        invocation.arg(window.as_millis() as u64);
        let invocation = invocation.invoke_async::<(u64, i64)>(&mut connection);
        let (count, left_ms) = tokio::time::timeout(REDIS_TIMEOUT, invocation)
            .await
            .context("Redis timed out")?
            .context("Redis INCR")?;
        Ok((count, Duration::from_millis(left_ms.max(0) as u64)))
    }

    fn available(&self) -> bool {
        unix_now() >= self.skip_until.load(Ordering::Relaxed)
    }

    fn report_failure(&self, err: &anyhow::Error) {
        metrics::counter!("olivine_rate_limit_redis_errors_total").increment(1);
        let now = unix_now();
        self.skip_until
            .store(now + REDIS_BACKOFF_SECS, Ordering::Relaxed);
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %format!("{err:#}"), "rate limiting falls back to this process's counters");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_print() {
        assert_eq!("10/1m".parse::<Limit>(), Ok(Limit::new(10, 60)));
        assert_eq!("600/60s".parse::<Limit>(), Ok(Limit::new(600, 60)));
        assert_eq!("5/10m".parse::<Limit>(), Ok(Limit::new(5, 600)));
        assert_eq!("100/1h".parse::<Limit>(), Ok(Limit::new(100, 3600)));
        assert_eq!("3/1".parse::<Limit>(), Ok(Limit::new(3, 1)));
        assert!("off".parse::<Limit>().is_ok_and(Limit::is_off));
        for bad in [
            "",
            "10",
            "x/1m",
            "10/0s",
            "10/1d",
            "10/m",
            "-1/1m",
            "1/99999999999999999h",
            "1/9000h",
        ] {
            assert!(bad.parse::<Limit>().is_err(), "{bad}");
        }
        assert_eq!(Limit::new(10, 60).to_string(), "10/60s");
    }

    #[test]
    fn requests_are_classified_by_method_and_path() {
        assert_eq!(
            classify(&Method::POST, "/api/v1/account/sign-in"),
            Some(Class::SignIn)
        );
        assert_eq!(
            classify(&Method::POST, "/api/v1/staff/sign-in"),
            Some(Class::SignIn)
        );
        assert_eq!(
            classify(&Method::POST, "/account/sign-in"),
            Some(Class::SignIn)
        );
        assert_eq!(
            classify(&Method::POST, "/account/register"),
            Some(Class::Register)
        );
        assert_eq!(
            classify(&Method::GET, "/api/v1/account/sign-in"),
            Some(Class::Api)
        );
        for read in [
            "/api/v1/products",
            "/api/v1/products/magnesium",
            "/api/v1/categories",
            "/api/v1/openapi.json",
        ] {
            assert_eq!(classify(&Method::GET, read), Some(Class::Catalog), "{read}");
        }
        for other in [
            "/api/v1/products/",
            "/api/v1/products/x/y",
            "/api/v1/price-quotes",
            "/api/v1/admin/products",
        ] {
            assert_eq!(classify(&Method::GET, other), Some(Class::Api), "{other}");
        }
        assert_eq!(
            classify(&Method::POST, "/api/v1/products"),
            Some(Class::Api)
        );
        assert_eq!(classify(&Method::GET, "/account/sign-in"), None);
        assert_eq!(classify(&Method::GET, "/products/x"), None);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        let key = |text: &str| Client::of_address(text.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2:aaaa::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
    }

    #[test]
    fn local_counters_count_per_key_and_restart_with_each_window() {
        let counters = LocalCounters::default();
        let long = Duration::from_secs(60);
        let named = |name: &str| Client::Named(name.to_owned());
        let api = Class::Api;
        assert_eq!(counters.incr(api, named("k"), long).0, 1);
        assert_eq!(counters.incr(api, named("k"), long).0, 2);
        assert_eq!(counters.incr(api, named("other"), long).0, 1);
        assert_eq!(counters.incr(Class::Catalog, named("k"), long).0, 1);
        let v4 = Client::of_address("203.0.113.7".parse().unwrap());
        assert_eq!(counters.incr(api, v4.clone(), long).0, 1);
        assert_eq!(counters.incr(api, v4, long).0, 2);
        let (_, left) = counters.incr(api, named("k"), long);
        assert!(left <= long && left > Duration::from_secs(50));
        // A window that has ended starts over.
        assert_eq!(counters.incr(api, named("short"), Duration::ZERO).0, 1);
        assert_eq!(counters.incr(api, named("short"), Duration::ZERO).0, 1);
    }
}
