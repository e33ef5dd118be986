//! Timestamps and calendar dates as the database stores them: RFC 3339 UTC text and
//! `YYYY-MM-DD` text, which sort correctly as strings on SQLite and PostgreSQL alike.

use chrono::{NaiveDate, SecondsFormat, Utc};

/// Now, as stored in `created_at` / `updated_at` columns.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
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
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a date of the form YYYY-MM-DD"))
}
