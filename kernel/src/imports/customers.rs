//! Customers with their legacy password hashes, through the accounts' legacy import
//! (bcrypt is accepted once, then rehashed to argon2id at the first sign-in). A legacy
//! id is one account: a second run finds it, and an email that already has an account
//! links to that account instead of making another.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;

use super::source::{CsvRecord, Row};
use super::{Context, Prepared, Progress, Record, Report};
use crate::accounts::{self, LegacyCustomer};
use crate::error::{Error, Problems, Result};
use crate::store::Tx;

/// A customer as the file gives it (the API's `LegacyCustomer`, and a phone number).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    email: String,
    name: String,
    password_hash: String,
    /// Checked and normalised, not stored: accounts keep no phone number (yet).
    #[serde(default)]
    phone: Option<String>,
}

/// What is imported of a customer (and fingerprinted).
#[derive(Debug, Serialize)]
pub struct Item {
    email: String,
    name: String,
    password_hash: String,
    phone: Option<String>,
}

/// The customers CSV: `legacy_id, email, name` (or `first_name, last_name`),
/// `password_hash, phone, updated_at`.
pub fn from_csv(records: Vec<CsvRecord>) -> Vec<Row> {
    records
        .iter()
        .map(|r| {
            let name = match r.opt("name") {
                Some(name) => name.to_owned(),
                None => format!(
                    "{} {}",
                    r.get("first_name").trim(),
                    r.get("last_name").trim()
                ),
            };
            let mut value = serde_json::json!({
                "email": r.get("email"),
                "name": name,
                "password_hash": r.get("password_hash"),
                "phone": r.text("phone"),
            });
            if let Some(id) = r.opt("legacy_id") {
                value["legacy_id"] = Value::String(id.to_owned());
            }
            value["updated_at"] = super::source::updated_at(&[r]);
            Row { row: r.line, value }
        })
        .collect()
}

pub async fn check(
    ctx: &Context,
    rows: Vec<Row>,
    report: &mut Report,
    progress: &dyn Progress,
) -> Result<Vec<Prepared>> {
    let mut prepared = Vec::new();
    let mut emails: HashMap<String, usize> = HashMap::new();
    for (done, mut row) in rows.into_iter().enumerate() {
        super::checked_rows(progress, done);
        super::repair::lowercase_email(&mut row.value, "email", row.row, report);
        let email = row.value.get("email").and_then(Value::as_str).unwrap_or("");
        let Some(legacy_id) = super::legacy_id_of(&row.value, Some(email)) else {
            report.problem(row.row, None, "legacy_id", "give a legacy_id or an email");
            continue;
        };
        let Some(input) = super::parse_row::<Input>(&row, Some(&legacy_id), report) else {
            continue;
        };
        let Some(item) = checked(&row, &legacy_id, input, report)? else {
            continue;
        };
        if let Some(first) = emails.insert(item.email.clone(), row.row) {
            report.problem(
                row.row,
                Some(&legacy_id),
                "email",
                format!("the same email is on row {first}"),
            );
            continue;
        }
        if !email_free(ctx, &legacy_id, &item.email).await? {
            report.problem(
                row.row,
                Some(&legacy_id),
                "email",
                "another imported customer has this email",
            );
            continue;
        }
        prepared.push(Prepared {
            row: row.row,
            fingerprint: super::fingerprint(&item)?,
            legacy_id,
            record: Record::Customer(item),
        });
    }
    Ok(prepared)
}

/// The accounts' own checks of a legacy customer, and the phone number's repair.
fn checked(row: &Row, legacy_id: &str, input: Input, report: &mut Report) -> Result<Option<Item>> {
    let legacy = LegacyCustomer {
        email: input.email,
        name: input.name,
        password_hash: input.password_hash,
    };
    let mut problems = Problems::new();
    accounts::check_legacy_customer(&mut problems, "", &legacy);
    if let Err(err) = problems.into_result() {
        report.problems_from(row.row, Some(legacy_id), "", err)?;
        return Ok(None);
    }
    let phone = match input.phone.as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(text) => match super::repair::normalise_phone(text) {
            Ok(phone) => {
                if phone != text {
                    report.repair(row.row, "phone", "normalised phone number", text, &phone);
                }
                Some(phone)
            }
            Err(message) => {
                report.problem(row.row, Some(legacy_id), "phone", message);
                return Ok(None);
            }
        },
    };
    Ok(Some(Item {
        email: legacy.email,
        name: legacy.name,
        password_hash: legacy.password_hash,
        phone,
    }))
}

/// An email is free for this legacy id unless the account that has it came from
/// another legacy id (an account that was not imported is linked instead).
async fn email_free(ctx: &Context, legacy_id: &str, email: &str) -> Result<bool> {
    let lookup = ctx.keys.lookup_hash(&accounts::normalise_email(email));
    let owner = sqlx::query(
        "SELECT r.legacy_id FROM customers c
         JOIN import_records r ON r.kind = 'customers' AND r.local_id = c.id
         WHERE c.email_lookup = $1",
    )
    .bind(&lookup)
    .fetch_optional(&ctx.db.pool)
    .await?;
    Ok(match owner {
        Some(row) => row.try_get::<String, _>(0)? == legacy_id,
        None => true,
    })
}

async fn account_by_email(tx: &mut Tx, lookup: &str) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT id FROM customers WHERE email_lookup = $1")
        .bind(lookup)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// A new account, or the one that already has this email (linked, left as it is: its
/// customer may have set a password of their own).
pub async fn create(ctx: &Context, tx: &mut Tx, item: &Item) -> Result<i64> {
    let lookup = ctx
        .keys
        .lookup_hash(&accounts::normalise_email(&item.email));
    if let Some(id) = account_by_email(tx, &lookup).await? {
        return Ok(id);
    }
    let legacy = LegacyCustomer {
        email: item.email.clone(),
        name: item.name.clone(),
        password_hash: item.password_hash.clone(),
    };
    accounts::insert_legacy_customer(tx, &ctx.keys, &legacy, &crate::time::now()).await
}

/// A newer export: the email and name follow it. The password does not: the customer
/// may have signed in (and been rehashed) or changed it since.
pub async fn update(ctx: &Context, tx: &mut Tx, item: &Item, local_id: i64) -> Result<()> {
    let lookup = ctx
        .keys
        .lookup_hash(&accounts::normalise_email(&item.email));
    if account_by_email(tx, &lookup)
        .await?
        .is_some_and(|id| id != local_id)
    {
        return Err(Error::conflict(
            Some("email"),
            "another account has this email",
        ));
    }
    if !accounts::lock_customer(tx, local_id).await? {
        return Ok(()); // erased: nothing of theirs is written again
    }
    let fields = ctx.keys.customer_for_writing(tx, local_id).await?;
    sqlx::query(
        "UPDATE customers SET email_lookup = $1, email_enc = $2, name_enc = $3, updated_at = $4
         WHERE id = $5 AND erased_at IS NULL",
    )
    .bind(&lookup)
    .bind(fields.encrypt(accounts::EMAIL_CONTEXT, &item.email)?)
    .bind(fields.encrypt(accounts::NAME_CONTEXT, &item.name)?)
    .bind(crate::time::now())
    .bind(local_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
