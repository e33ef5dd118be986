//! Timestamps and calendar dates as the database stores them: RFC 3339 UTC text and
//! `YYYY-MM-DD` text, which sort correctly as strings on SQLite and PostgreSQL alike;
//! and the kernel's [`Clock`], which time-based work reads so tests can move it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// Now, as stored in `created_at` / `updated_at` columns.
pub fn now() -> String {
    format_timestamp(Utc::now())
}

/// A timestamp as the database stores it (RFC 3339, UTC, milliseconds).
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a stored timestamp.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// Today's date (UTC), the reference for expiry and shelf-life rules.
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

pub fn format_date(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// Parses a `YYYY-MM-DD` date, returning a message fit for a field error.
pub fn parse_date(text: &str) -> Result<NaiveDate, String> {
    // Exactly `YYYY-MM-DD` (chrono alone would also take `2025-1-5` or `+2025-01-05`),
    // as the OpenAPI document's `format: date` says.
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| format!("`{text}` is not a date of the form YYYY-MM-DD"))
}

/// The kernel's clock: the system time plus an offset that only tests move. Scheduled
/// jobs, leases, retries and backoff read it, so a test can advance a day in a call
/// instead of waiting; whoever sleeps on it ([`Clock::sleep_until`]) wakes when it moves.
#[derive(Clone)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    moved: Arc<tokio::sync::watch::Sender<i64>>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock(+{} ms)", self.offset_ms.load(Ordering::Relaxed))
    }
}

impl Clock {
    pub fn system() -> Clock {
        Clock {
            offset_ms: Arc::new(AtomicI64::new(0)),
            moved: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Now, as the database stores timestamps.
    pub fn now_text(&self) -> String {
        format_timestamp(self.now())
    }

    /// Moves the clock forward (tests).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let offset = self.offset_ms.fetch_add(ms, Ordering::Relaxed) + ms;
        self.moved.send_replace(offset);
    }

    /// Sleeps until the clock reads `at` (at most `cap`, so callers re-check the world),
    /// waking early when the clock is moved.
    pub async fn sleep_until(&self, at: DateTime<Utc>, cap: Duration) {
        let mut moved = self.moved.subscribe();
        let wait = (at - self.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(cap);
        if wait.is_zero() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = moved.changed() => {}
        }
    }

    /// Resolves when the clock is moved.
    pub async fn moved(&self) {
        let mut moved = self.moved.subscribe();
        let _ = moved.changed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_exactly_yyyy_mm_dd() {
        assert_eq!(
            parse_date("2025-01-31"),
            Ok(NaiveDate::from_ymd_opt(2025, 1, 31).unwrap())
        );
        assert!(parse_date("2024-02-29").is_ok());
        for bad in [
            "",
            "2025-1-5",
            "2025-01-5",
            "+2025-01-05",
            "2025-02-30",
            "2025-13-01",
            "20250101",
            "2025/01/01",
            " 2025-01-01",
            "2025-01-01 ",
            "२०२५-०१-०१",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
