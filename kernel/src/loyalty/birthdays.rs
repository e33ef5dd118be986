//! Birthday rewards: a customer may tell the shop their birthday (month and day, no
//! year), and a scheduled job emits `customer.birthday` on it, once a year, for loyalty
//! rules to reward. A birthday entered or changed less than [`NOTICE_DAYS`] before it
//! comes waits for the next year (so changing it to today earns nothing), and a day the
//! cluster was down is caught up within [`CATCH_UP_DAYS`]. Someone born on 29 February
//! is celebrated on the 28th in other years.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::app::AppState;
use crate::error::{Error, Result};
use crate::jobs::{FnHandler, JobContext, JobHandler};

/// The scheduled job that celebrates the day's birthdays.
pub const JOB: &str = "loyalty.birthdays";
/// A birthday must be known this many days before it is celebrated.
pub const NOTICE_DAYS: i64 = 30;
/// A birthday missed while no node ran is still celebrated this many days late.
const CATCH_UP_DAYS: i64 = 7;

/// The customer's birthday as the account API reads and writes it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BirthdayInput {
    /// `MM-DD`, e.g. `03-14`; `null` forgets it.
    #[schema(example = "03-14")]
    pub birthday: Option<String>,
}

/// A month and a day that exist in some year (29 February included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthDay {
    pub month: u32,
    pub day: u32,
}

impl MonthDay {
    /// Reads `MM-DD` (one-digit parts too), refusing a day no year has.
    pub fn parse(text: &str) -> Option<MonthDay> {
        let (month, day) = text.trim().split_once('-')?;
        let month: u32 = month.parse().ok()?;
        let day: u32 = day.parse().ok()?;
        // 2000 is a leap year: every day some year has exists in it.
        NaiveDate::from_ymd_opt(2000, month, day)?;
        Some(MonthDay { month, day })
    }

    pub fn text(self) -> String {
        format!("{:02}-{:02}", self.month, self.day)
    }
}

/// The customer's birthday, if they gave it.
pub async fn get(conn: &mut AnyConnection, customer_id: i64) -> Result<Option<String>> {
    let row = sqlx::query("SELECT month, day FROM customer_birthdays WHERE customer_id = $1")
        .bind(customer_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let (month, day): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    Ok(Some(format!("{month:02}-{day:02}")))
}

/// Sets or forgets the customer's birthday. Setting the same day again keeps its
/// notice period; a different day starts a new one.
pub async fn set(state: &AppState, customer_id: i64, input: &BirthdayInput) -> Result<()> {
    let now = state.clock.now_text();
    let mut conn = state.db.pool.acquire().await?;
    let Some(text) = input.birthday.as_deref() else {
        sqlx::query("DELETE FROM customer_birthdays WHERE customer_id = $1")
            .bind(customer_id)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    };
    let birthday = MonthDay::parse(text).ok_or_else(|| {
        Error::invalid(
            "birthday",
            "must be a month and a day as MM-DD, e.g. 03-14 (no year)",
        )
    })?;
    sqlx::query(
        "INSERT INTO customer_birthdays (customer_id, month, day, set_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (customer_id) DO UPDATE SET month = excluded.month, day = excluded.day,
            set_at = CASE WHEN customer_birthdays.month = excluded.month
                AND customer_birthdays.day = excluded.day
                THEN customer_birthdays.set_at ELSE excluded.set_at END",
    )
    .bind(customer_id)
    .bind(i64::from(birthday.month))
    .bind(i64::from(birthday.day))
    .bind(&now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// For the GDPR export.
pub async fn export_on(conn: &mut AnyConnection, customer_id: i64) -> Result<serde_json::Value> {
    let row = sqlx::query(
        "SELECT month, day, set_at, celebrated_year FROM customer_birthdays WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(serde_json::Value::Null);
    };
    let (month, day): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    Ok(serde_json::json!({
        "birthday": format!("{month:02}-{day:02}"),
        "set_at": row.try_get::<String, _>(2)?,
        "last_celebrated_year": row.try_get::<Option<i64>, _>(3)?,
    }))
}

/// Erasure: the birthday goes. Answers whether there was one.
pub async fn erase(conn: &mut AnyConnection, customer_id: i64) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM customer_birthdays WHERE customer_id = $1")
            .bind(customer_id)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
    )
}

/// The month-days whose birthday falls on `date` (29 February's on the 28th in a year
/// without one).
fn birthdays_on(date: NaiveDate) -> Vec<(u32, u32)> {
    let mut days = vec![(date.month(), date.day())];
    if date.month() == 2
        && date.day() == 28
        && NaiveDate::from_ymd_opt(date.year(), 2, 29).is_none()
    {
        days.push((2, 29));
    }
    days
}

/// Emits `customer.birthday` for every customer whose birthday is today or was in the
/// last [`CATCH_UP_DAYS`] days (by the kernel's clock, in UTC) and not yet celebrated
/// this year, with the birthday known [`NOTICE_DAYS`] before it. Answers how many.
pub async fn celebrate(state: &AppState) -> Result<u64> {
    let now = state.clock.now();
    let today = now.date_naive();
    let mut celebrated = 0;
    for late in 0..=CATCH_UP_DAYS {
        let Some(date) = today.checked_sub_signed(chrono::Duration::days(late)) else {
            continue;
        };
        let Some(notice) = date
            .checked_sub_signed(chrono::Duration::days(NOTICE_DAYS))
            .and_then(|d| d.and_hms_opt(23, 59, 59))
        else {
            continue;
        };
        // Set by the end of the day NOTICE_DAYS before.
        let known_by = crate::time::format_timestamp(notice.and_utc());
        for (month, day) in birthdays_on(date) {
            celebrated += celebrate_day(state, month, day, date.year(), &known_by).await?;
        }
    }
    if celebrated > 0 {
        state.bus.notify();
    }
    Ok(celebrated)
}

async fn celebrate_day(
    state: &AppState,
    month: u32,
    day: u32,
    year: i32,
    known_by: &str,
) -> Result<u64> {
    let due: Vec<i64> = sqlx::query(
        "SELECT b.customer_id FROM customer_birthdays b
         JOIN customers c ON c.id = b.customer_id AND c.erased_at IS NULL
         WHERE b.month = $1 AND b.day = $2 AND b.set_at <= $3
           AND (b.celebrated_year IS NULL OR b.celebrated_year < $4)",
    )
    .bind(i64::from(month))
    .bind(i64::from(day))
    .bind(known_by)
    .bind(i64::from(year))
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<std::result::Result<_, sqlx::Error>>()?;
    let mut celebrated = 0;
    for customer_id in due {
        let mut tx = state.db.begin().await?;
        // The guard makes a second node's or a second run's celebration a no-op.
        let claimed = sqlx::query(
            "UPDATE customer_birthdays SET celebrated_year = $1
             WHERE customer_id = $2 AND (celebrated_year IS NULL OR celebrated_year < $1)",
        )
        .bind(i64::from(year))
        .bind(customer_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            continue;
        }
        crate::bus::record(
            &mut tx,
            "customer",
            customer_id,
            "customer.birthday",
            &serde_json::json!({ "customer": customer_id, "year": year }),
        )
        .await?;
        tx.commit().await?;
        celebrated += 1;
    }
    Ok(celebrated)
}

pub fn job() -> Arc<dyn JobHandler> {
    FnHandler::new(JOB, |ctx: &JobContext| {
        Box::pin(async move {
            let celebrated = celebrate(&ctx.state).await?;
            if celebrated > 0 {
                tracing::info!(celebrated, "birthdays celebrated");
            }
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birthdays_read_as_month_and_day() {
        assert_eq!(
            MonthDay::parse("03-14"),
            Some(MonthDay { month: 3, day: 14 })
        );
        assert_eq!(
            MonthDay::parse(" 3-4 ").map(MonthDay::text).as_deref(),
            Some("03-04")
        );
        assert!(MonthDay::parse("02-29").is_some());
        for bad in [
            "02-30",
            "13-01",
            "00-10",
            "04-31",
            "1990-03-14",
            "03/14",
            "",
            "-",
            "x-y",
        ] {
            assert_eq!(MonthDay::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_29th_of_february_is_celebrated_on_the_28th_without_a_leap_day() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(birthdays_on(day(2027, 2, 28)), vec![(2, 28), (2, 29)]);
        assert_eq!(birthdays_on(day(2028, 2, 28)), vec![(2, 28)]);
        assert_eq!(birthdays_on(day(2028, 2, 29)), vec![(2, 29)]);
    }
}
