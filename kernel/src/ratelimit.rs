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
//! Counters live in this process, or in Redis when `REDIS_URL` is set, so that every node
//! counts together (`INCR` + `EXPIRE` in one Lua script, atomic). When Redis does not
//! answer, the limiter fails open to this process's counters: it logs a warning, counts
//! `olivine_rate_limit_redis_errors_total`, and the store keeps serving. An unreachable
//! Redis at start is the same (a warning, not a refusal to start); a malformed URL is a
//! configuration error.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
    const SIGN_IN: [&str; 3] = [
        "/api/v1/account/sign-in",
        "/api/v1/staff/sign-in",
        "/account/sign-in",
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
        })
    }

    /// Counts one request of `client` in `class`: an error
    /// ([`Error::TooManyRequests`]) once the window's limit is passed.
    pub async fn hit(&self, class: Class, client: &str) -> Result<(), Error> {
        let limit = self.limits.of(class);
        if limit.is_off() {
            return Ok(());
        }
        let window = Duration::from_secs(limit.window_secs);
        let key = format!("{}:{}:{}", self.prefix, class.name(), client);
        let (count, remaining) = match self.redis.as_ref().filter(|r| r.available()) {
            Some(redis) => match redis.incr(&key, window).await {
                Ok(counted) => counted,
                Err(err) => {
                    redis.report_failure(&err);
                    self.local.incr(&key, window)
                }
            },
            None => self.local.incr(&key, window),
        };
        if count <= u64::from(limit.max) {
            return Ok(());
        }
        metrics::counter!("olivine_rate_limited_total", "class" => class.name()).increment(1);
        Err(Error::TooManyRequests {
            retry_after_secs: remaining.as_millis().div_ceil(1000).max(1) as u64,
        })
    }

    /// Who made the request: the peer address, or with `trust_forwarded_for` the last
    /// address of `X-Forwarded-For` (the one the proxy in front of the kernel saw; the
    /// ones before it are whatever the client claimed). Without either (requests made
    /// in-process, as tests do) every request is the one client `unknown`.
    pub fn client_of(&self, request: &Request) -> String {
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
            return client_key(ip);
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| client_key(addr.ip()))
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// An IPv4 address as it is; an IPv6 address by its /64 network, since one subscriber
/// usually holds a whole /64 and could otherwise take a fresh address per request.
fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(network))
        }
        IpAddr::V6(v6) => v6.to_canonical().to_string(),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The middleware: classifies the request and counts it before anything else runs.
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(class) = classify(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let client = state.limiter.client_of(&request);
    match state.limiter.hit(class, &client).await {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

/// Unix seconds (for spacing out warnings).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counters of this process: key -> (end of its window, count). Entries of windows that
/// have ended are pruned as the map grows, so it holds about one window's clients.
#[derive(Default)]
struct LocalCounters {
    counts: Mutex<HashMap<String, (Instant, u64)>>,
}

/// Pruning starts above this many entries.
const LOCAL_PRUNE_ABOVE: usize = 10_000;

impl LocalCounters {
    /// Counts one request: the count in the window and the time left in it.
    fn incr(&self, key: &str, window: Duration) -> (u64, Duration) {
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update: the counts
        // are still usable.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() > LOCAL_PRUNE_ABOVE {
            counts.retain(|_, (end, _)| *end > now);
        }
        let entry = counts.entry(key.to_owned()).or_insert((now + window, 0));
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
        let key = |text: &str| client_key(text.parse().unwrap());
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
        assert_eq!(counters.incr("k", long).0, 1);
        assert_eq!(counters.incr("k", long).0, 2);
        assert_eq!(counters.incr("other", long).0, 1);
        let (_, left) = counters.incr("k", long);
        assert!(left <= long && left > Duration::from_secs(50));
        // A window that has ended starts over.
        assert_eq!(counters.incr("short", Duration::ZERO).0, 1);
        assert_eq!(counters.incr("short", Duration::ZERO).0, 1);
    }
}
