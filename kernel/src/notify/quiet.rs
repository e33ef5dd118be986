//! Quiet hours: a window of the customer's own day (in their time zone, so it follows
//! daylight saving time) in which push notifications wait. A push routed inside the
//! window is stored at once but delivered when the window ends; email is read when the
//! customer chooses, so it is never held.

use chrono::{DateTime, Duration, LocalResult, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::error::{Problems, Result};

/// Quiet hours for push notifications, e.g. 22:00 to 07:00 in Europe/Berlin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// When quiet hours start, local time `HH:MM`.
    #[schema(example = "22:00", pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: String,
    /// When they end, local time `HH:MM`; earlier than `start` runs past midnight.
    #[schema(example = "07:00", pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub end: String,
    /// The customer's time zone, an IANA name.
    #[schema(value_type = crate::http::schema::TimeZone)]
    pub time_zone: String,
}

/// Quiet hours, checked and ready to compare with an instant.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    start: NaiveTime,
    end: NaiveTime,
    zone: Tz,
}

fn local_time(text: &str) -> Option<NaiveTime> {
    // Exactly `HH:MM`: chrono alone would also take `7:5`.
    (text.len() == 5)
        .then(|| NaiveTime::parse_from_str(text, "%H:%M").ok())
        .flatten()
}

impl QuietHours {
    /// Checks every field, naming them under `field` (e.g. `quiet_hours.start`).
    pub fn window(&self, field: &str) -> Result<Window> {
        let mut problems = Problems::new();
        let start = local_time(&self.start);
        let end = local_time(&self.end);
        let zone = self.time_zone.parse::<Tz>().ok();
        problems.check(
            start.is_some(),
            format!("{field}.start"),
            "must be a local time HH:MM",
        );
        problems.check(
            end.is_some(),
            format!("{field}.end"),
            "must be a local time HH:MM",
        );
        if start.is_some() && start == end {
            problems.add(
                format!("{field}.end"),
                "must differ from `start` (quiet all day would hold every push)",
            );
        }
        problems.check(
            zone.is_some(),
            format!("{field}.time_zone"),
            "must be an IANA time zone name, such as Europe/Berlin or America/New_York",
        );
        problems.into_result()?;
        match (start, end, zone) {
            (Some(start), Some(end), Some(zone)) => Ok(Window { start, end, zone }),
            // Every missing part was reported above.
            _ => Err(crate::error::Error::invalid(
                field,
                "incomplete quiet hours",
            )),
        }
    }
}

impl Window {
    fn contains(&self, time: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }

    /// When the quiet hours around `now` end; `None` when `now` is outside them.
    pub fn held_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.zone);
        let time = local.time();
        if !self.contains(time) {
            return None;
        }
        // Inside a window past midnight, before midnight: it ends tomorrow.
        let date = if time < self.end {
            local.date_naive()
        } else {
            local.date_naive().succ_opt()?
        };
        let end = date.and_time(self.end);
        match self.zone.from_local_datetime(&end) {
            LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
            // The clocks went back: the first of the two.
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            // The clocks sprang forward over the end: an hour later exists.
            LocalResult::None => self
                .zone
                .from_local_datetime(&(end + Duration::hours(1)))
                .earliest()
                .map(|at| at.with_timezone(&Utc)),
        }
    }
}

pub async fn read_on(conn: &mut AnyConnection, customer_id: i64) -> Result<Option<QuietHours>> {
    let row = sqlx::query(
        "SELECT starts, ends, time_zone FROM notification_quiet_hours WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(QuietHours {
            start: row.try_get(0)?,
            end: row.try_get(1)?,
            time_zone: row.try_get(2)?,
        })
    })
    .transpose()
}

/// Stores `quiet` (checked by the caller), or forgets them when `None`.
pub async fn write_on(
    conn: &mut AnyConnection,
    customer_id: i64,
    quiet: Option<&QuietHours>,
    now: &str,
) -> Result<()> {
    match quiet {
        Some(quiet) => {
            sqlx::query(
                "INSERT INTO notification_quiet_hours (customer_id, starts, ends, time_zone, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (customer_id) DO UPDATE SET starts = excluded.starts,
                    ends = excluded.ends, time_zone = excluded.time_zone,
                    updated_at = excluded.updated_at",
            )
            .bind(customer_id)
            .bind(&quiet.start)
            .bind(&quiet.end)
            .bind(&quiet.time_zone)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM notification_quiet_hours WHERE customer_id = $1")
                .bind(customer_id)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(start: &str, end: &str, zone: &str) -> Window {
        QuietHours {
            start: start.into(),
            end: end.into(),
            time_zone: zone.into(),
        }
        .window("quiet_hours")
        .expect("valid")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("timestamp")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_window_past_midnight_holds_until_the_next_morning_in_the_customers_zone() {
        let night = quiet("22:00", "07:00", "Europe/Berlin");
        // 23:30 in Berlin (winter, UTC+1): held until 07:00 Berlin the next day.
        assert_eq!(
            night.held_until(utc("2026-12-04T22:30:00Z")),
            Some(utc("2026-12-05T06:00:00Z"))
        );
        // 03:00 in Berlin: until 07:00 the same day.
        assert_eq!(
            night.held_until(utc("2026-12-05T02:00:00Z")),
            Some(utc("2026-12-05T06:00:00Z"))
        );
        // 07:00 sharp and midday: not quiet.
        assert_eq!(night.held_until(utc("2026-12-05T06:00:00Z")), None);
        assert_eq!(night.held_until(utc("2026-12-05T11:00:00Z")), None);
        // 21:59: not yet.
        assert_eq!(night.held_until(utc("2026-12-05T20:59:00Z")), None);
    }

    #[test]
    fn a_window_within_a_day_and_daylight_saving_time() {
        let afternoon = quiet("13:00", "15:00", "America/New_York");
        // 14:00 in New York in July (UTC-4).
        assert_eq!(
            afternoon.held_until(utc("2026-07-01T18:00:00Z")),
            Some(utc("2026-07-01T19:00:00Z"))
        );
        // The same local time in January (UTC-5).
        assert_eq!(
            afternoon.held_until(utc("2026-01-05T19:00:00Z")),
            Some(utc("2026-01-05T20:00:00Z"))
        );
        // Berlin springs forward at 02:00 on 29 March 2026: an end at 02:30 does not
        // exist that night; the window ends an hour later, at 03:30 CEST (01:30 UTC).
        let short = quiet("01:00", "02:30", "Europe/Berlin");
        assert_eq!(
            short.held_until(utc("2026-03-29T00:30:00Z")),
            Some(utc("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn bad_quiet_hours_name_each_field() {
        let err = QuietHours {
            start: "7:00".into(),
            end: "25:00".into(),
            time_zone: "Mars/Olympus".into(),
        }
        .window("quiet_hours")
        .expect_err("invalid");
        let fields: Vec<String> = err.body().fields.into_iter().map(|f| f.field).collect();
        assert_eq!(
            fields,
            [
                "quiet_hours.start",
                "quiet_hours.end",
                "quiet_hours.time_zone"
            ]
        );
        let same = QuietHours {
            start: "22:00".into(),
            end: "22:00".into(),
            time_zone: "UTC".into(),
        }
        .window("quiet_hours")
        .expect_err("empty window");
        assert_eq!(same.body().fields[0].field, "quiet_hours.end");
    }
}
