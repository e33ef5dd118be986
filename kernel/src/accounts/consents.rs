//! Consents: what a customer agreed to (a purpose such as `marketing_email` or
//! `analytics`), under which version of the wording, and when. Every change appends a
//! row; the current state of a purpose is its newest row, and the rows before it are the
//! history a merchant shows a regulator. Consents hold no identity: they are behaviour,
//! joined to the customer by id only.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::Authenticated;
use crate::app::AppState;
use crate::error::{Error, Problems, Result};

/// The purpose behaviour for recommendations is recorded under.
pub const ANALYTICS: &str = "analytics";
/// Purposes one request may set.
const MAX_PER_REQUEST: usize = 32;

/// One purpose set by the customer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    /// Lower case letters, digits and `_`, starting with a letter, up to 48: e.g.
    /// `marketing_email`, `analytics`.
    #[schema(value_type = crate::http::schema::ConsentPurpose)]
    pub purpose: String,
    /// Agreed (`true`) or declined / withdrawn (`false`).
    pub granted: bool,
    /// The version of the wording the customer was shown, e.g. `2025-01`: letters,
    /// digits, `.`, `-`, `_`, up to 32.
    #[schema(value_type = crate::http::schema::WordingVersion)]
    pub version: String,
}

/// The body of `PUT /api/v1/account/consents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentUpdate {
    /// Purposes to set (at most 32, each named once); purposes not named keep their
    /// state.
    #[schema(max_items = 32)]
    pub consents: Vec<ConsentInput>,
}

/// A consent as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Consent {
    pub purpose: String,
    pub granted: bool,
    pub version: String,
    /// Where it was given: `registration`, `account`, or `erasure` (withdrawn by the
    /// erasure of the account).
    pub source: String,
    pub recorded_at: String,
}

/// The current state of every purpose, and the whole history, oldest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Consents {
    pub current: Vec<Consent>,
    pub history: Vec<Consent>,
}

fn is_purpose(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && text.len() <= 48
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_version(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 32
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
}

/// Checks consents, naming `<prefix>[i].<field>`.
pub fn check(problems: &mut Problems, prefix: &str, consents: &[ConsentInput]) {
    problems.check(
        consents.len() <= MAX_PER_REQUEST,
        prefix,
        format!("at most {MAX_PER_REQUEST} purposes at once"),
    );
    let mut seen = HashSet::new();
    for (i, consent) in consents.iter().enumerate() {
        let field = format!("{prefix}[{i}].purpose");
        if !is_purpose(&consent.purpose) {
            problems.add(
                field,
                "must be lower case letters, digits and `_`, starting with a letter, up to 48 (e.g. marketing_email)",
            );
        } else if !seen.insert(consent.purpose.as_str()) {
            problems.add(field, "is named twice");
        }
        problems.check(
            is_version(&consent.version),
            format!("{prefix}[{i}].version"),
            "must be 1 to 32 letters, digits, `.`, `-` or `_` (the version of the wording shown)",
        );
    }
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<Consent, sqlx::Error> {
    Ok(Consent {
        purpose: row.try_get(0)?,
        granted: row.try_get::<i64, _>(1)? == 1,
        version: row.try_get(2)?,
        source: row.try_get(3)?,
        recorded_at: row.try_get(4)?,
    })
}

/// A customer's consents: the current state of each purpose and the history.
pub async fn read_on(conn: &mut AnyConnection, customer_id: i64) -> Result<Consents> {
    let history = sqlx::query(
        "SELECT purpose, granted, wording_version, source, recorded_at FROM customer_consents
         WHERE customer_id = $1 ORDER BY id",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(from_row)
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // Newest row of each purpose, in purpose order.
    let mut latest: BTreeMap<&str, &Consent> = BTreeMap::new();
    for consent in &history {
        latest.insert(consent.purpose.as_str(), consent);
    }
    let current = latest.into_values().cloned().collect();
    Ok(Consents { current, history })
}

/// Appends a row for each purpose whose state or wording version changes; returns how
/// many were appended. Call inside a transaction that holds the customer's lock.
pub async fn record(
    conn: &mut AnyConnection,
    customer_id: i64,
    consents: &[ConsentInput],
    source: &str,
) -> Result<usize> {
    let current = read_on(conn, customer_id).await?.current;
    let now = crate::time::now();
    let mut appended = 0;
    for consent in consents {
        let unchanged = current.iter().any(|c| {
            c.purpose == consent.purpose
                && c.granted == consent.granted
                && c.version == consent.version
        });
        if unchanged {
            continue;
        }
        sqlx::query(
            "INSERT INTO customer_consents (customer_id, purpose, granted, wording_version, source, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(customer_id)
        .bind(&consent.purpose)
        .bind(i64::from(consent.granted))
        .bind(&consent.version)
        .bind(source)
        .bind(&now)
        .execute(&mut *conn)
        .await?;
        appended += 1;
        // Withdrawn analytics: the behaviour recorded under it goes.
        if consent.purpose == ANALYTICS && !consent.granted {
            crate::recommendations::forget_customer(conn, customer_id).await?;
        }
    }
    Ok(appended)
}

pub async fn read(state: &AppState, customer_id: i64) -> Result<Consents> {
    let mut conn = state.db.pool.acquire().await?;
    read_on(&mut conn, customer_id).await
}

/// Sets the purposes named in the update, recording each change.
pub async fn update(
    state: &AppState,
    auth: &Authenticated,
    update: ConsentUpdate,
) -> Result<Consents> {
    let mut problems = Problems::new();
    check(&mut problems, "consents", &update.consents);
    problems.into_result()?;
    let mut tx = state.db.begin().await?;
    if !super::lock_customer(&mut tx, auth.customer_id).await? {
        return Err(Error::Unauthorized);
    }
    record(&mut tx, auth.customer_id, &update.consents, "account").await?;
    let consents = read_on(&mut tx, auth.customer_id).await?;
    tx.commit().await?;
    Ok(consents)
}

/// Withdraws every granted purpose (the account is being erased); returns the purposes
/// that were granted. The wording version stays the one last agreed to.
pub async fn withdraw_all(conn: &mut AnyConnection, customer_id: i64) -> Result<Vec<String>> {
    let granted: Vec<ConsentInput> = read_on(conn, customer_id)
        .await?
        .current
        .into_iter()
        .filter(|c| c.granted)
        .map(|c| ConsentInput {
            purpose: c.purpose,
            granted: false,
            version: c.version,
        })
        .collect();
    record(conn, customer_id, &granted, "erasure").await?;
    Ok(granted.into_iter().map(|c| c.purpose).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_and_versions() {
        assert!(is_purpose("marketing_email") && is_purpose("analytics") && is_purpose("a1"));
        for bad in [
            "",
            "Marketing",
            "1abc",
            "a-b",
            "a b",
            "'; DROP TABLE x; --",
            "a\0",
        ] {
            assert!(!is_purpose(bad), "{bad:?}");
        }
        assert!(is_version("2025-01") && is_version("v1.2_b"));
        assert!(!is_version("") && !is_version("x y") && !is_version(&"9".repeat(33)));
    }

    #[test]
    fn duplicates_are_named() {
        let input = |purpose: &str| ConsentInput {
            purpose: purpose.to_owned(),
            granted: true,
            version: "1".to_owned(),
        };
        let mut problems = Problems::new();
        check(
            &mut problems,
            "consents",
            &[input("analytics"), input("analytics")],
        );
        let Err(Error::Validation(fields)) = problems.into_result() else {
            panic!("expected a validation error");
        };
        assert_eq!(fields[0].field, "consents[1].purpose");
    }
}
