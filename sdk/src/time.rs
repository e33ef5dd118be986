//! Points in time, for rules with windows (a campaign from `starts_at` to `ends_at`).
//!
//! Pure plugins (pricing, taxonomy, loyalty) have no clock: a loyalty event says when it
//! happened (`occurred_at`, RFC 3339 UTC, on the kernel's clock); channels and payment
//! adapters read the real one (`clock`). A [`Timestamp`] is parsed from RFC 3339 text with any
//! offset and compares as an instant, so `2026-12-01T00:00:00Z`,
//! `2026-12-01T00:00:00.000Z` and `2026-12-01T01:00:00+01:00` are equal, which comparing
//! the text would not say. No dependency: the parser is small and checked.
//!
//! ```
//! use olivine_sdk::time::Timestamp;
//!
//! let starts: Timestamp = "2026-12-01T00:00:00+01:00".parse().unwrap();
//! let now: Timestamp = "2026-11-30T23:30:00.000Z".parse().unwrap();
//! assert!(now >= starts);
//! assert!("2026-12-01".parse::<Timestamp>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

/// An instant: milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch (negative before it).
    pub unix_millis: i64,
}

/// Why a text is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampError(String);

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; expected RFC 3339, e.g. 2026-12-01T00:00:00Z",
            self.0
        )
    }
}

impl std::error::Error for TimestampError {}

impl From<TimestampError> for String {
    fn from(err: TimestampError) -> String {
        err.to_string()
    }
}

impl Timestamp {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` (`t`, `z` and a space
    /// for `T` are accepted too). Fractions finer than a millisecond are truncated.
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        let bad = |why: &str| TimestampError(format!("`{text}` is not a timestamp: {why}"));
        let b = text.trim().as_bytes();
        if b.len() < 20 {
            return Err(bad("too short"));
        }
        let digits = |from: usize, to: usize| -> Result<i64, TimestampError> {
            let part = b.get(from..to).ok_or_else(|| bad("too short"))?;
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(bad("a digit is missing"));
            }
            Ok(part.iter().fold(0_i64, |n, d| n * 10 + i64::from(d - b'0')))
        };
        let separator = |at: usize, allowed: &[u8]| -> Result<(), TimestampError> {
            match b.get(at) {
                Some(c) if allowed.contains(c) => Ok(()),
                _ => Err(bad("a separator is missing")),
            }
        };
        let year = digits(0, 4)?;
        separator(4, b"-")?;
        let month = digits(5, 7)?;
        separator(7, b"-")?;
        let day = digits(8, 10)?;
        separator(10, b"Tt ")?;
        let hour = digits(11, 13)?;
        separator(13, b":")?;
        let minute = digits(14, 16)?;
        separator(16, b":")?;
        let second = digits(17, 19)?;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad("no such date"));
        }
        // 60: a leap second, counted as the next second's start.
        if hour > 23 || minute > 59 || second > 60 {
            return Err(bad("no such time"));
        }
        let mut at = 19;
        let mut millis = 0;
        if b.get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == start {
                return Err(bad("a fraction without digits"));
            }
            // The first three digits, padded: `.5` is 500 ms.
            millis = (start..start + 3).fold(0, |n, i| {
                n * 10
                    + b.get(i)
                        .filter(|_| i < at)
                        .map_or(0, |d| i64::from(d - b'0'))
            });
        }
        let offset_minutes = match b.get(at) {
            Some(b'Z' | b'z') if at + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if at + 6 == b.len() => {
                separator(at + 3, b":")?;
                let (h, m) = (digits(at + 1, at + 3)?, digits(at + 4, at + 6)?);
                if h > 23 || m > 59 {
                    return Err(bad("no such offset"));
                }
                let minutes = h * 60 + m;
                if *sign == b'-' { -minutes } else { minutes }
            }
            _ => {
                return Err(bad(
                    "the offset (Z or +HH:MM) is missing or followed by more",
                ));
            }
        };
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
        Ok(Timestamp {
            unix_millis: seconds * 1_000 + millis,
        })
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Timestamp, TimestampError> {
        Timestamp::parse(text)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        Timestamp::parse(text).unwrap().unix_millis
    }

    #[test]
    fn instants_not_texts() {
        assert_eq!(at("1970-01-01T00:00:00Z"), 0);
        assert_eq!(at("2000-03-01T00:00:00Z"), 951_868_800_000);
        assert_eq!(at("2026-12-01T00:00:00Z"), at("2026-12-01T00:00:00.000Z"));
        assert_eq!(at("2026-12-01T00:00:00Z"), at("2026-12-01T01:00:00+01:00"));
        assert_eq!(at("2026-12-01T00:00:00Z"), at("2026-11-30T19:30:00-04:30"));
        assert_eq!(
            at("2026-12-01t00:00:00.5z"),
            at("2026-12-01T00:00:00Z") + 500
        );
        assert_eq!(at("2026-12-01 00:00:00.123456Z") % 1_000, 123);
        assert_eq!(at("1969-12-31T23:59:59Z"), -1_000);
        assert_eq!(
            at("2024-02-29T12:00:00Z") - at("2024-02-28T12:00:00Z"),
            86_400_000
        );
    }

    #[test]
    fn malformed_text_is_an_error_naming_it() {
        for bad in [
            "",
            "2026-12-01",
            "2026-12-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T00:00:00+0100",
            "2026-12-01T00:00:00.Z",
            "2026-12-01T00:00:00Zjunk",
            "２026-12-01T00:00:00Z",
            "2026-1a-01T00:00:00Z",
        ] {
            let err = Timestamp::parse(bad).unwrap_err().to_string();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }
}
