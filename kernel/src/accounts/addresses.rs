//! Customers' addresses: identity, so every field is encrypted at rest, each bound to its
//! column (`customer_addresses.<field>`) so a value copied into another column does not
//! decrypt. Ids are random (`adr_…`) and every query also checks the owner: a customer
//! asking for another customer's address gets the same 404 as for one that never existed.

use serde::{Deserialize, Deserializer, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::customer_keys::CustomerFields;
use super::{Authenticated, Keyring};
use crate::app::AppState;
use crate::error::{Error, Problems, Result};
use crate::http::schema::{
    CountryCode, OptionalPostalCode, Phone, SingleLine100, SingleLine200, SingleLineOrBlank50,
    SingleLineOrBlank100, SingleLineOrBlank200,
};

/// How many addresses one account may keep.
pub const MAX_ADDRESSES: i64 = 50;

const ID_PREFIX: &str = "adr_";
/// Characters of the random part of an id (16 random bytes, base64url).
const ID_RANDOM_CHARS: usize = 22;

/// An address as its owner sees it, decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Address {
    /// Random, e.g. `adr_Xk3…`.
    pub id: String,
    /// The customer's own name for it, e.g. `Home`.
    pub label: Option<String>,
    /// The recipient.
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    /// State, province or county.
    pub region: Option<String>,
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2, upper case (`NL`, `US`).
    pub country: String,
    pub phone: Option<String>,
    /// The address checkout proposes first; at most one per account.
    pub is_default: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A new address.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAddress {
    /// Up to 50 characters.
    #[schema(value_type = Option<SingleLineOrBlank50>)]
    pub label: Option<String>,
    /// The recipient, 1 to 200 characters.
    #[schema(value_type = SingleLine200)]
    pub name: String,
    /// 1 to 200 characters.
    #[schema(value_type = SingleLine200)]
    pub line1: String,
    #[schema(value_type = Option<SingleLineOrBlank200>)]
    pub line2: Option<String>,
    /// 1 to 100 characters.
    #[schema(value_type = SingleLine100)]
    pub city: String,
    #[schema(value_type = Option<SingleLineOrBlank100>)]
    pub region: Option<String>,
    /// Letters, digits, spaces and hyphens, up to 16.
    #[schema(value_type = Option<OptionalPostalCode>)]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 (`NL`; lower case is accepted).
    #[schema(value_type = CountryCode)]
    pub country: String,
    /// Digits with optional `+` first, spaces, `-`, `.`, `(` `)`; 4 to 20 digits.
    #[schema(value_type = Option<Phone>)]
    pub phone: Option<String>,
    /// Makes it the default address (the first address is the default anyway).
    #[serde(default)]
    pub is_default: bool,
}

/// Changes to an address: an absent field stays as it is, `null` clears an optional one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressChanges {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SingleLineOrBlank50>)]
    pub label: Option<Option<String>>,
    /// Required: it cannot be cleared.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = SingleLine200, required = false)]
    pub name: Option<Option<String>>,
    /// Required: it cannot be cleared.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = SingleLine200, required = false)]
    pub line1: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SingleLineOrBlank200>)]
    pub line2: Option<Option<String>>,
    /// Required: it cannot be cleared.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = SingleLine100, required = false)]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<SingleLineOrBlank100>)]
    pub region: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<OptionalPostalCode>)]
    pub postal_code: Option<Option<String>>,
    /// Required: it cannot be cleared.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = CountryCode, required = false)]
    pub country: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Phone>)]
    pub phone: Option<Option<String>>,
    pub is_default: Option<bool>,
}

/// A field that is present in the body: `Some(None)` for `null`, `Some(Some(v))` for a
/// value (absent fields stay `None` through `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The fields of an address, checked and normalised, in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    label: Option<String>,
    name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    region: Option<String>,
    postal_code: Option<String>,
    country: String,
    phone: Option<String>,
}

/// Free text: at most `max` characters as sent (surrounding whitespace included), no
/// control characters once trimmed (a NUL byte is a 422 here, not a database error
/// later). Answers the trimmed value.
fn check_text(problems: &mut Problems, field: &str, value: &str, max: usize) -> String {
    problems.check(
        value.chars().count() <= max,
        field,
        format!("must be at most {max} characters"),
    );
    let value = value.trim();
    problems.check(
        !value.chars().any(char::is_control),
        field,
        "must not contain control characters",
    );
    value.to_owned()
}

fn required(problems: &mut Problems, field: &str, value: Option<String>, max: usize) -> String {
    let value = value.unwrap_or_default();
    if value.trim().is_empty() {
        problems.add(field, "is required");
        String::new()
    } else {
        check_text(problems, field, &value, max)
    }
}

/// An optional field: blank is none (but still no longer than `max`).
fn optional(
    problems: &mut Problems,
    field: &str,
    value: Option<String>,
    max: usize,
) -> Option<String> {
    let value = check_text(problems, field, &value?, max);
    (!value.is_empty()).then_some(value)
}

fn check_postal_code(problems: &mut Problems, value: &Option<String>) {
    if let Some(code) = value {
        problems.check(
            code.chars().count() <= 16
                && code
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-'),
            "postal_code",
            "must be up to 16 letters, digits, spaces or hyphens",
        );
    }
}

fn check_phone(problems: &mut Problems, value: &Option<String>) {
    if let Some(phone) = value {
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        let allowed = phone
            .char_indices()
            .all(|(i, c)| c.is_ascii_digit() || " -.()".contains(c) || (c == '+' && i == 0));
        problems.check(
            allowed && (4..=20).contains(&digits) && phone.len() <= 32,
            "phone",
            "must be a phone number: digits (4 to 20), optionally `+` first, spaces, `-`, `.`, `(`, `)`",
        );
    }
}

/// Normalises a country code to upper case, or names the field.
fn country(problems: &mut Problems, value: Option<String>) -> String {
    let code = value
        .map(|v| v.trim().to_ascii_uppercase())
        .unwrap_or_default();
    if code.is_empty() {
        problems.add("country", "is required");
    } else if !is_country_code(&code) {
        problems.add(
            "country",
            "must be an ISO 3166-1 alpha-2 country code such as NL or US",
        );
    }
    code
}

impl Fields {
    /// Checks every field at once, so a client learns about every problem together.
    #[allow(clippy::too_many_arguments)]
    fn check(
        label: Option<String>,
        name: Option<String>,
        line1: Option<String>,
        line2: Option<String>,
        city: Option<String>,
        region: Option<String>,
        postal_code: Option<String>,
        country_code: Option<String>,
        phone: Option<String>,
    ) -> Result<Fields> {
        let mut problems = Problems::new();
        let fields = Fields {
            label: optional(&mut problems, "label", label, 50),
            name: required(&mut problems, "name", name, 200),
            line1: required(&mut problems, "line1", line1, 200),
            line2: optional(&mut problems, "line2", line2, 200),
            city: required(&mut problems, "city", city, 100),
            region: optional(&mut problems, "region", region, 100),
            postal_code: optional(&mut problems, "postal_code", postal_code, 64),
            country: country(&mut problems, country_code),
            phone: optional(&mut problems, "phone", phone, 64),
        };
        check_postal_code(&mut problems, &fields.postal_code);
        check_phone(&mut problems, &fields.phone);
        problems.into_result()?;
        Ok(fields)
    }
}

/// Column context of an encrypted address field.
fn context(field: &str) -> String {
    format!("customer_addresses.{field}")
}

struct Sealed {
    label: Option<String>,
    name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    region: Option<String>,
    postal_code: Option<String>,
    country: String,
    phone: Option<String>,
}

fn seal(keys: &CustomerFields<'_>, f: &Fields) -> Result<Sealed> {
    let one = |field: &str, value: &str| keys.encrypt(&context(field), value);
    let some =
        |field: &str, value: &Option<String>| value.as_deref().map(|v| one(field, v)).transpose();
    Ok(Sealed {
        label: some("label", &f.label)?,
        name: one("name", &f.name)?,
        line1: one("line1", &f.line1)?,
        line2: some("line2", &f.line2)?,
        city: one("city", &f.city)?,
        region: some("region", &f.region)?,
        postal_code: some("postal_code", &f.postal_code)?,
        country: one("country", &f.country)?,
        phone: some("phone", &f.phone)?,
    })
}

const COLUMNS: &str = "id, label_enc, name_enc, line1_enc, line2_enc, city_enc, region_enc, \
     postal_code_enc, country_enc, phone_enc, is_default, created_at, updated_at";

fn from_row(keys: &CustomerFields<'_>, row: &sqlx::any::AnyRow) -> Result<Address> {
    let one = |i: usize, field: &str| -> Result<String> {
        let stored: String = row.try_get(i)?;
        Ok(keys.decrypt(&context(field), &stored)?)
    };
    let some = |i: usize, field: &str| -> Result<Option<String>> {
        let stored: Option<String> = row.try_get(i)?;
        Ok(stored
            .map(|s| keys.decrypt(&context(field), &s))
            .transpose()?)
    };
    Ok(Address {
        id: row.try_get(0)?,
        label: some(1, "label")?,
        name: one(2, "name")?,
        line1: one(3, "line1")?,
        line2: some(4, "line2")?,
        city: one(5, "city")?,
        region: some(6, "region")?,
        postal_code: some(7, "postal_code")?,
        country: one(8, "country")?,
        phone: some(9, "phone")?,
        is_default: row.try_get::<i64, _>(10)? == 1,
        created_at: row.try_get(11)?,
        updated_at: row.try_get(12)?,
    })
}

/// A well-formed address id. Anything else cannot exist, so it is answered 404 before
/// it reaches the database (a NUL byte would make PostgreSQL fail).
fn is_address_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX).is_some_and(|rest| {
        rest.len() == ID_RANDOM_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn not_found() -> Error {
    Error::not_found("address")
}

/// Every address of a customer, oldest first, on the given connection (the export reads
/// them inside its snapshot).
pub async fn list_on(
    conn: &mut AnyConnection,
    keys: &Keyring,
    customer_id: i64,
) -> Result<Vec<Address>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM customer_addresses WHERE customer_id = $1 ORDER BY created_at, id"
    )))
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let fields = keys.customer(&mut *conn, customer_id).await?;
    rows.iter().map(|row| from_row(&fields, row)).collect()
}

pub async fn list(state: &AppState, customer_id: i64) -> Result<Vec<Address>> {
    let mut conn = state.db.pool.acquire().await?;
    list_on(&mut conn, &state.keys, customer_id).await
}

async fn fetch(
    conn: &mut AnyConnection,
    keys: &Keyring,
    customer_id: i64,
    id: &str,
) -> Result<Address> {
    if !is_address_id(id) {
        return Err(not_found());
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM customer_addresses WHERE id = $1 AND customer_id = $2"
    )))
    .bind(id)
    .bind(customer_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(not_found)?;
    let fields = keys.customer(&mut *conn, customer_id).await?;
    from_row(&fields, &row)
}

pub async fn get(state: &AppState, customer_id: i64, id: &str) -> Result<Address> {
    let mut conn = state.db.pool.acquire().await?;
    fetch(&mut conn, &state.keys, customer_id, id).await
}

async fn clear_default(conn: &mut AnyConnection, customer_id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE customer_addresses SET is_default = 0 WHERE customer_id = $1 AND is_default = 1",
    )
    .bind(customer_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn create(state: &AppState, auth: &Authenticated, input: NewAddress) -> Result<Address> {
    let fields = Fields::check(
        input.label,
        Some(input.name),
        Some(input.line1),
        input.line2,
        Some(input.city),
        input.region,
        input.postal_code,
        Some(input.country),
        input.phone,
    )?;
    let id = format!("{ID_PREFIX}{}", super::random_token::<16>());
    let now = crate::time::now();
    let mut tx = state.db.begin().await?;
    // Address writes of one customer queue here, so the count and the one default hold.
    if !super::lock_customer(&mut tx, auth.customer_id).await? {
        return Err(Error::Unauthorized);
    }
    let sealed = seal(
        &state
            .keys
            .customer_for_writing(&mut tx, auth.customer_id)
            .await?,
        &fields,
    )?;
    let count: i64 = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM customer_addresses WHERE customer_id = $1",
    )
    .bind(auth.customer_id)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    if count >= MAX_ADDRESSES {
        return Err(Error::conflict(
            None,
            format!("an account keeps at most {MAX_ADDRESSES} addresses: delete one first"),
        ));
    }
    let is_default = input.is_default || count == 0;
    if is_default {
        clear_default(&mut tx, auth.customer_id).await?;
    }
    sqlx::query(
        "INSERT INTO customer_addresses (id, customer_id, label_enc, name_enc, line1_enc, line2_enc,
             city_enc, region_enc, postal_code_enc, country_enc, phone_enc, is_default, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(&id)
    .bind(auth.customer_id)
    .bind(sealed.label)
    .bind(sealed.name)
    .bind(sealed.line1)
    .bind(sealed.line2)
    .bind(sealed.city)
    .bind(sealed.region)
    .bind(sealed.postal_code)
    .bind(sealed.country)
    .bind(sealed.phone)
    .bind(i64::from(is_default))
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Address {
        id,
        label: fields.label,
        name: fields.name,
        line1: fields.line1,
        line2: fields.line2,
        city: fields.city,
        region: fields.region,
        postal_code: fields.postal_code,
        country: fields.country,
        phone: fields.phone,
        is_default,
        created_at: now.clone(),
        updated_at: now,
    })
}

/// The new value of a field: the change if there is one, else the current value.
fn merge(change: Option<Option<String>>, current: Option<String>) -> Option<String> {
    match change {
        Some(value) => value,
        None => current,
    }
}

pub async fn update(
    state: &AppState,
    auth: &Authenticated,
    id: &str,
    changes: AddressChanges,
) -> Result<Address> {
    if !is_address_id(id) {
        return Err(not_found());
    }
    let mut tx = state.db.begin().await?;
    if !super::lock_customer(&mut tx, auth.customer_id).await? {
        return Err(Error::Unauthorized);
    }
    let current = fetch(&mut tx, &state.keys, auth.customer_id, id).await?;
    let fields = Fields::check(
        merge(changes.label, current.label),
        merge(changes.name, Some(current.name)),
        merge(changes.line1, Some(current.line1)),
        merge(changes.line2, current.line2),
        merge(changes.city, Some(current.city)),
        merge(changes.region, current.region),
        merge(changes.postal_code, current.postal_code),
        merge(changes.country, Some(current.country)),
        merge(changes.phone, current.phone),
    )?;
    let sealed = seal(
        &state
            .keys
            .customer_for_writing(&mut tx, auth.customer_id)
            .await?,
        &fields,
    )?;
    let is_default = changes.is_default.unwrap_or(current.is_default);
    if is_default && !current.is_default {
        clear_default(&mut tx, auth.customer_id).await?;
    }
    let now = crate::time::now();
    sqlx::query(
        "UPDATE customer_addresses SET label_enc = $1, name_enc = $2, line1_enc = $3, line2_enc = $4,
             city_enc = $5, region_enc = $6, postal_code_enc = $7, country_enc = $8, phone_enc = $9,
             is_default = $10, updated_at = $11
         WHERE id = $12 AND customer_id = $13",
    )
    .bind(sealed.label)
    .bind(sealed.name)
    .bind(sealed.line1)
    .bind(sealed.line2)
    .bind(sealed.city)
    .bind(sealed.region)
    .bind(sealed.postal_code)
    .bind(sealed.country)
    .bind(sealed.phone)
    .bind(i64::from(is_default))
    .bind(&now)
    .bind(id)
    .bind(auth.customer_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Address {
        id: current.id,
        label: fields.label,
        name: fields.name,
        line1: fields.line1,
        line2: fields.line2,
        city: fields.city,
        region: fields.region,
        postal_code: fields.postal_code,
        country: fields.country,
        phone: fields.phone,
        is_default,
        created_at: current.created_at,
        updated_at: now,
    })
}

pub async fn delete(state: &AppState, customer_id: i64, id: &str) -> Result<()> {
    if !is_address_id(id) {
        return Err(not_found());
    }
    let deleted = sqlx::query("DELETE FROM customer_addresses WHERE id = $1 AND customer_id = $2")
        .bind(id)
        .bind(customer_id)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(not_found());
    }
    Ok(())
}

/// ISO 3166-1 alpha-2: the 249 officially assigned codes.
const COUNTRY_CODES: &str = "\
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ \
EC EE EG EH ER ES ET \
FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU \
ID IE IL IM IN IO IQ IR IS IT \
JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ \
LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ \
OM \
PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
QA \
RE RO RS RU RW \
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ \
UA UG UM US UY UZ \
VA VC VE VG VI VN VU \
WF WS \
YE YT \
ZA ZM ZW";

/// An officially assigned ISO 3166-1 alpha-2 code (upper case).
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && COUNTRY_CODES.split(' ').any(|c| c == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_country_list_has_every_assigned_code_once() {
        let codes: Vec<&str> = COUNTRY_CODES.split(' ').collect();
        assert_eq!(codes.len(), 249);
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, codes, "sorted and without duplicates");
        for code in ["NL", "US", "GB", "DE", "JP", "ZA", "AX", "SS"] {
            assert!(is_country_code(code), "{code}");
        }
        for code in ["UK", "EU", "XX", "nl", "N", "NLD", ""] {
            assert!(!is_country_code(code), "{code}");
        }
    }

    #[test]
    fn ids_are_checked_before_the_database() {
        let id = format!("{ID_PREFIX}{}", "a".repeat(ID_RANDOM_CHARS));
        assert!(is_address_id(&id));
        assert!(!is_address_id("adr_short"));
        assert!(!is_address_id(&format!("{id}x")));
        assert!(!is_address_id(&id.replace('a', "\0")));
        assert!(!is_address_id("1"));
    }

    #[test]
    fn phones_and_postal_codes() {
        let check = |phone: &str| {
            let mut p = Problems::new();
            check_phone(&mut p, &Some(phone.to_owned()));
            p.is_empty()
        };
        assert!(check("+31 20 123 4567"));
        assert!(check("(555) 010-1234"));
        assert!(!check("12+34"));
        assert!(!check("' OR 1=1 --"));
        assert!(!check("123"));
        let postal = |code: &str| {
            let mut p = Problems::new();
            check_postal_code(&mut p, &Some(code.to_owned()));
            p.is_empty()
        };
        assert!(postal("1017 AB") && postal("SW1A 1AA") && postal("10115") && postal("1000-001"));
        assert!(!postal("'; DROP TABLE customers; --"));
    }

    #[test]
    fn limits_count_the_value_as_sent_and_blank_is_none() {
        let field = |value: &str, max: usize| {
            let mut p = Problems::new();
            let kept = optional(&mut p, "label", Some(value.to_owned()), max);
            (kept, p.is_empty())
        };
        assert_eq!(field("  Home\t", 50), (Some("Home".to_owned()), true));
        assert_eq!(field("   ", 50), (None, true));
        // Whitespace counts towards the limit, as the OpenAPI document's maxLength does.
        assert!(!field(&" ".repeat(51), 50).1);
        assert!(!field(&format!("{} ", "a".repeat(50)), 50).1);
        assert!(!field("a\tb", 50).1);
        let mut p = Problems::new();
        assert_eq!(required(&mut p, "name", Some(" \n ".to_owned()), 200), "");
        assert!(!p.is_empty());
    }
}
