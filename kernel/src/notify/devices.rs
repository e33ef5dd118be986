//! What a customer sets for notifications: their devices for push, their channel
//! choices, and the products they want to hear about when back in stock.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::quiet::QuietHours;
use crate::app::AppState;
use crate::error::{Error, Problems, Result};

/// `POST /api/v1/account/devices`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    /// `apns` (iOS) or `fcm` (Android, or iOS through Firebase).
    #[schema(pattern = "^(apns|fcm)$")]
    pub platform: String,
    /// The token the push service gave the app: for APNs 32 or more hexadecimal digits,
    /// for FCM opaque (printable, no spaces or quotes).
    #[schema(pattern = "^[!#-\\[\\]-~]+$", min_length = 1, max_length = 4096)]
    pub token: String,
    /// The app: its bundle id (the APNs topic) or its package name.
    #[schema(pattern = "^[A-Za-z0-9._-]+$", min_length = 1, max_length = 255)]
    pub app_id: String,
}

/// A registered device. The token is never shown back in full.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Device {
    pub id: i64,
    pub platform: String,
    pub app_id: String,
    /// The last 8 characters of the token, to tell devices apart.
    pub token_ending: String,
    pub created_at: String,
}

fn printable_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 4096
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\'))
}

impl DeviceInput {
    fn check(&self) -> Result<()> {
        let mut problems = Problems::new();
        problems.check(
            matches!(self.platform.as_str(), "apns" | "fcm"),
            "platform",
            "`apns` or `fcm`",
        );
        problems.check(
            printable_token(&self.token),
            "token",
            "1 to 4096 printable characters without spaces or quotes",
        );
        if self.platform == "apns" && printable_token(&self.token) {
            problems.check(
                self.token.len() >= 32 && self.token.bytes().all(|b| b.is_ascii_hexdigit()),
                "token",
                "an APNs device token is hexadecimal (64 characters or more)",
            );
        }
        problems.check(
            !self.app_id.is_empty()
                && self.app_id.len() <= 255
                && self
                    .app_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')),
            "app_id",
            "the app's bundle id or package name (letters, digits, `.`, `-`, `_`)",
        );
        problems.into_result()
    }
}

/// The associated data of an encrypted device token.
pub(crate) const TOKEN_CONTEXT: &str = "customer_devices.token";

/// The last 8 characters of a token: shown to tell devices apart.
pub(crate) fn ending_of(token: &str) -> String {
    let skip = token.chars().count().saturating_sub(8);
    token.chars().skip(skip).collect()
}

/// The keyed hash that finds a token registered before, without it being stored in clear.
pub(crate) fn token_hash(keys: &crate::accounts::Keyring, token: &str) -> String {
    crate::accounts::keys::hex(&keys.purpose_mac("device-token", token.as_bytes()))
}

const DEVICE_COLUMNS: &str = "id, platform, token, app_id, created_at, token_ending";

fn device_of(row: &sqlx::any::AnyRow) -> Result<Device> {
    // A row from before encrypted tokens holds its token in clear and no ending.
    let ending = match row.try_get::<Option<String>, _>(5)? {
        Some(ending) => ending,
        None => ending_of(&row.try_get::<String, _>(2)?),
    };
    Ok(Device {
        id: row.try_get(0)?,
        platform: row.try_get(1)?,
        token_ending: ending,
        app_id: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

/// Registers a device for the customer, its token encrypted under the customer's own
/// key. A token registered before (by this customer or, after the phone changed hands,
/// another) now belongs to this customer.
pub async fn register(state: &AppState, customer_id: i64, input: &DeviceInput) -> Result<Device> {
    input.check()?;
    let now = state.clock.now_text();
    let hash = token_hash(&state.keys, &input.token);
    let mut tx = state.db.begin().await?;
    let token_enc = state
        .keys
        .customer_for_writing(&mut tx, customer_id)
        .await?
        .encrypt(TOKEN_CONTEXT, &input.token)?;
    // The same token registered before encrypted tokens (in clear): that row moves over.
    let moved = sqlx::query(
        "UPDATE customer_devices SET customer_id = $1, token = $2, token_hash = $3,
            token_ending = $4, app_id = $5, updated_at = $6
         WHERE platform = $7 AND token = $8 AND token_hash IS NULL",
    )
    .bind(customer_id)
    .bind(&token_enc)
    .bind(&hash)
    .bind(ending_of(&input.token))
    .bind(&input.app_id)
    .bind(&now)
    .bind(&input.platform)
    .bind(&input.token)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        sqlx::query(
            "INSERT INTO customer_devices (customer_id, platform, token, token_hash, token_ending,
                app_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (platform, token_hash) DO UPDATE SET customer_id = excluded.customer_id,
                token = excluded.token, app_id = excluded.app_id, updated_at = excluded.updated_at",
        )
        .bind(customer_id)
        .bind(&input.platform)
        .bind(&token_enc)
        .bind(&hash)
        .bind(ending_of(&input.token))
        .bind(&input.app_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DEVICE_COLUMNS} FROM customer_devices WHERE platform = $1 AND token_hash = $2"
    )))
    .bind(&input.platform)
    .bind(&hash)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    device_of(&row)
}

pub async fn list_on(conn: &mut AnyConnection, customer_id: i64) -> Result<Vec<Device>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DEVICE_COLUMNS} FROM customer_devices WHERE customer_id = $1 ORDER BY id"
    )))
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(device_of)
    .collect()
}

pub async fn list(state: &AppState, customer_id: i64) -> Result<Vec<Device>> {
    list_on(&mut *state.db.pool.acquire().await?, customer_id).await
}

/// Removes one of the customer's devices (another customer's is not found).
pub async fn remove(state: &AppState, customer_id: i64, id: i64) -> Result<()> {
    let done = sqlx::query("DELETE FROM customer_devices WHERE id = $1 AND customer_id = $2")
        .bind(id)
        .bind(customer_id)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
    if done == 0 {
        return Err(Error::not_found(format!("device {id}")));
    }
    Ok(())
}

/// Which channels the customer hears transactional messages on. Marketing also needs
/// the consents `marketing_email` / `marketing_push` (`PUT /api/v1/account/consents`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    pub email: bool,
    pub push: bool,
    /// When push notifications wait (delivered when the quiet hours end); absent or
    /// `null`: none. Email is never held.
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

pub async fn preferences_on(conn: &mut AnyConnection, customer_id: i64) -> Result<Preferences> {
    let mut preferences = Preferences {
        email: true,
        push: true,
        quiet_hours: super::quiet::read_on(conn, customer_id).await?,
    };
    for row in
        sqlx::query("SELECT channel, enabled FROM notification_preferences WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_all(&mut *conn)
            .await?
    {
        let on = row.try_get::<i64, _>(1)? == 1;
        match row.try_get::<String, _>(0)?.as_str() {
            "email" => preferences.email = on,
            "push" => preferences.push = on,
            _ => {}
        }
    }
    Ok(preferences)
}

pub async fn preferences(state: &AppState, customer_id: i64) -> Result<Preferences> {
    preferences_on(&mut *state.db.pool.acquire().await?, customer_id).await
}

pub async fn set_preferences(
    state: &AppState,
    customer_id: i64,
    preferences: Preferences,
) -> Result<Preferences> {
    if let Some(quiet) = &preferences.quiet_hours {
        quiet.window("quiet_hours")?;
    }
    let now = state.clock.now_text();
    let mut tx = state.db.begin().await?;
    super::quiet::write_on(&mut tx, customer_id, preferences.quiet_hours.as_ref(), &now).await?;
    for (channel, on) in [("email", preferences.email), ("push", preferences.push)] {
        sqlx::query(
            "INSERT INTO notification_preferences (customer_id, channel, enabled, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (customer_id, channel) DO UPDATE SET enabled = excluded.enabled,
                updated_at = excluded.updated_at",
        )
        .bind(customer_id)
        .bind(channel)
        .bind(i64::from(on))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(preferences)
}

/// `POST /api/v1/account/back-in-stock`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackInStockInput {
    /// The product's slug.
    #[schema(value_type = crate::http::schema::Slug)]
    pub product: String,
}

/// Asks to be told once when `product` is back in stock.
pub async fn request_back_in_stock(
    state: &AppState,
    customer_id: i64,
    input: &BackInStockInput,
) -> Result<Vec<String>> {
    let product_id: Option<i64> = sqlx::query_scalar("SELECT id FROM products WHERE slug = $1")
        .bind(&input.product)
        .fetch_optional(&state.db.pool)
        .await?;
    let Some(product_id) = product_id else {
        return Err(Error::invalid("product", "no product has this slug"));
    };
    sqlx::query(
        "INSERT INTO back_in_stock_requests (customer_id, product_id, created_at)
         VALUES ($1, $2, $3) ON CONFLICT (customer_id, product_id) DO NOTHING",
    )
    .bind(customer_id)
    .bind(product_id)
    .bind(state.clock.now_text())
    .execute(&state.db.pool)
    .await?;
    back_in_stock(state, customer_id).await
}

/// The slugs the customer waits for.
pub async fn back_in_stock(state: &AppState, customer_id: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT p.slug FROM back_in_stock_requests b JOIN products p ON p.id = b.product_id
         WHERE b.customer_id = $1 ORDER BY p.slug",
    )
    .bind(customer_id)
    .fetch_all(&state.db.pool)
    .await?)
}

pub async fn cancel_back_in_stock(state: &AppState, customer_id: i64, slug: &str) -> Result<()> {
    sqlx::query(
        "DELETE FROM back_in_stock_requests WHERE customer_id = $1
            AND product_id = (SELECT id FROM products WHERE slug = $2)",
    )
    .bind(customer_id)
    .bind(slug)
    .execute(&state.db.pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_input_is_checked_field_by_field() {
        let good = DeviceInput {
            platform: "apns".into(),
            token: "a".repeat(64),
            app_id: "com.example.shop".into(),
        };
        assert!(good.check().is_ok());
        let bad = DeviceInput {
            platform: "sms".into(),
            token: "has space".into(),
            app_id: "".into(),
        };
        let err = format!("{:?}", bad.check().unwrap_err());
        for field in ["platform", "token", "app_id"] {
            assert!(err.contains(field), "{err}");
        }
        let not_hex = DeviceInput {
            token: "z".repeat(64),
            ..good
        };
        assert!(not_hex.check().is_err());
    }
}
