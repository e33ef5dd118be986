//! Notification routes: a customer's devices, channel choices and back-in-stock requests;
//! staff's list of notifications with their attempts, resending, templates and
//! campaigns.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::devices::{self, BackInStockInput, Device, DeviceInput, Preferences};
use super::templates::{self, Template};
use crate::app::AppState;
use crate::error::{Error, ErrorBody, Problems, Result};
use crate::http::extract::{CustomerAuth, JsonBody, PathParam, QueryParams, StaffAuth};

/// Under `/api/v1/account`.
pub fn account_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, register_device))
        .routes(routes!(remove_device))
        .routes(routes!(get_preferences, set_preferences))
        .routes(routes!(list_back_in_stock, request_back_in_stock))
        .routes(routes!(cancel_back_in_stock))
}

/// Under `/api/v1/admin`.
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(get_notification))
        .routes(routes!(resend_notification))
        .routes(routes!(list_templates))
        .routes(routes!(put_template))
        .routes(routes!(send_campaign, list_campaigns))
}

/// The customer's devices registered for push.
#[utoipa::path(get, path = "/devices", tag = "account", security(("customer_token" = [])),
    responses((status = 200, body = Vec<Device>), (status = 401, body = ErrorBody)))]
async fn list_devices(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Json<Vec<Device>>> {
    Ok(Json(devices::list(&state, auth.customer_id).await?))
}

/// Registers a device's push token (APNs or FCM) for the customer. Registering the same
/// token again updates it; a token the push service reports dead is forgotten.
#[utoipa::path(post, path = "/devices", tag = "account", request_body = DeviceInput,
    security(("customer_token" = [])),
    responses((status = 201, body = Device), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn register_device(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    JsonBody(input): JsonBody<DeviceInput>,
) -> Result<(StatusCode, Json<Device>)> {
    Ok((
        StatusCode::CREATED,
        Json(devices::register(&state, auth.customer_id, &input).await?),
    ))
}

/// Removes a device (on sign-out in the app, say).
#[utoipa::path(delete, path = "/devices/{id}", tag = "account",
    params(("id" = i64, Path, description = "The device's id")),
    security(("customer_token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_device(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    PathParam(id): PathParam<i64>,
) -> Result<StatusCode> {
    devices::remove(&state, auth.customer_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The channels the customer hears order, subscription and points news on (all on
/// unless turned off).
#[utoipa::path(get, path = "/notification-preferences", tag = "account",
    security(("customer_token" = [])),
    responses((status = 200, body = Preferences), (status = 401, body = ErrorBody)))]
async fn get_preferences(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Json<Preferences>> {
    Ok(Json(devices::preferences(&state, auth.customer_id).await?))
}

/// Turns email or push on or off for transactional messages. Marketing messages also
/// need the consents `marketing_email` / `marketing_push` (`PUT /account/consents`).
#[utoipa::path(put, path = "/notification-preferences", tag = "account",
    request_body = Preferences, security(("customer_token" = [])),
    responses((status = 200, body = Preferences), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn set_preferences(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    JsonBody(input): JsonBody<Preferences>,
) -> Result<Json<Preferences>> {
    Ok(Json(
        devices::set_preferences(&state, auth.customer_id, input).await?,
    ))
}

/// The products the customer waits for (their slugs).
#[utoipa::path(get, path = "/back-in-stock", tag = "account", security(("customer_token" = [])),
    responses((status = 200, body = Vec<String>), (status = 401, body = ErrorBody)))]
async fn list_back_in_stock(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
) -> Result<Json<Vec<String>>> {
    Ok(Json(
        devices::back_in_stock(&state, auth.customer_id).await?,
    ))
}

/// Asks to be told once when a product is back in stock. Answers every product the
/// customer waits for.
#[utoipa::path(post, path = "/back-in-stock", tag = "account", request_body = BackInStockInput,
    security(("customer_token" = [])),
    responses((status = 201, body = Vec<String>), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn request_back_in_stock(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    JsonBody(input): JsonBody<BackInStockInput>,
) -> Result<(StatusCode, Json<Vec<String>>)> {
    Ok((
        StatusCode::CREATED,
        Json(devices::request_back_in_stock(&state, auth.customer_id, &input).await?),
    ))
}

/// No longer waits for a product.
#[utoipa::path(delete, path = "/back-in-stock/{slug}", tag = "account",
    params(("slug" = String, Path, description = "The product's slug")),
    security(("customer_token" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn cancel_back_in_stock(
    State(state): State<AppState>,
    CustomerAuth(auth): CustomerAuth,
    PathParam(slug): PathParam<String>,
) -> Result<StatusCode> {
    devices::cancel_back_in_stock(&state, auth.customer_id, &slug).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: i64,
    /// `delivered`, `retry`, `failed`, `gone` or `skipped`.
    pub outcome: String,
    pub detail: String,
    pub at: String,
}

/// A notification as staff see it. The recipient is a reference (a customer's
/// pseudonym, a device id), never an address.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: i64,
    /// What it came from: `event:<id>`, `campaign:<id>`, `resend:<id>:<time>`.
    pub source: String,
    pub topic: String,
    pub customer: Option<String>,
    /// `email`, `push` or `webhook`.
    pub channel: String,
    pub plugin_id: String,
    pub recipient: String,
    pub title: String,
    pub text: String,
    pub link: Option<String>,
    pub marketing: bool,
    /// `pending`, `delivered`, `failed`, `gone` (the device no longer exists) or
    /// `skipped` (the recipient was gone before delivery).
    pub status: String,
    pub attempts: i64,
    pub provider_reference: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    /// A push held by the customer's quiet hours is delivered from this time.
    pub held_until: Option<String>,
    pub delivered_at: Option<String>,
    /// Only on the single-notification answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_attempts: Option<Vec<AttemptView>>,
}

const COLUMNS: &str = "n.id, n.source, n.topic, c.pseudonym, n.channel, n.plugin_id,
    n.recipient_kind, n.recipient_ref, n.title, n.body_text, n.link, n.marketing, n.status,
    n.attempts, n.provider_reference, n.last_error, n.created_at, n.delivered_at, n.held_until";

fn view_of(row: &sqlx::any::AnyRow) -> Result<NotificationView> {
    let kind: String = row.try_get(6)?;
    let reference: String = row.try_get(7)?;
    Ok(NotificationView {
        id: row.try_get(0)?,
        source: row.try_get(1)?,
        topic: row.try_get(2)?,
        customer: row.try_get(3)?,
        channel: row.try_get(4)?,
        plugin_id: row.try_get(5)?,
        recipient: match kind.as_str() {
            "customer" => "the customer's email".to_owned(),
            "order" => format!("the email of order id {reference}"),
            "device" => format!("device {reference}"),
            _ => "the webhook's URL".to_owned(),
        },
        title: row.try_get(8)?,
        text: row.try_get(9)?,
        link: row.try_get(10)?,
        marketing: row.try_get::<i64, _>(11)? == 1,
        status: row.try_get(12)?,
        attempts: row.try_get(13)?,
        provider_reference: row.try_get(14)?,
        last_error: row.try_get(15)?,
        created_at: row.try_get(16)?,
        delivered_at: row.try_get(17)?,
        held_until: row.try_get(18)?,
        delivery_attempts: None,
    })
}

/// Where a notification is.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    Pending,
    Delivered,
    Failed,
    /// The device no longer exists (the push service said so).
    Gone,
    /// The recipient was gone before delivery.
    Skipped,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Delivered => "delivered",
            NotificationStatus::Failed => "failed",
            NotificationStatus::Gone => "gone",
            NotificationStatus::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationFilter {
    /// Only notifications in this state.
    #[param(inline)]
    pub status: Option<NotificationStatus>,
    /// Only this customer's (their pseudonym).
    #[param(min_length = 1, max_length = 100)]
    pub customer: Option<String>,
    /// Only this topic, e.g. `order.shipped`.
    #[param(min_length = 1, max_length = 100)]
    pub topic: Option<String>,
    /// Newest first: continue before this id (the previous page's `next_before_id`).
    pub before_id: Option<i64>,
    /// Per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationPage {
    pub notifications: Vec<NotificationView>,
    pub next_before_id: Option<i64>,
}

/// Notifications, newest first. Permission: `customers.read`.
#[utoipa::path(get, path = "/notifications", tag = "admin-customers", params(NotificationFilter),
    security(("staff_token" = [])),
    responses((status = 200, body = NotificationPage), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_notifications(
    State(state): State<AppState>,
    QueryParams(filter): QueryParams<NotificationFilter>,
) -> Result<Json<NotificationPage>> {
    Ok(Json(list(&state, &filter).await?))
}

/// The delivery log by `filter`, newest first (the API's and the admin page's).
pub async fn list(state: &AppState, filter: &NotificationFilter) -> Result<NotificationPage> {
    let mut problems = Problems::new();
    let limit = crate::http::paging::limit(&mut problems, filter.limit);
    crate::http::paging::check_name(&mut problems, "customer", &filter.customer);
    crate::http::paging::check_name(&mut problems, "topic", &filter.topic);
    problems.into_result()?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications n LEFT JOIN customers c ON c.id = n.customer_id
         WHERE n.id < $1 AND ($2 = '' OR n.status = $2) AND ($3 = '' OR c.pseudonym = $3)
           AND ($4 = '' OR n.topic = $4)
         ORDER BY n.id DESC LIMIT $5"
    )))
    .bind(filter.before_id.unwrap_or(i64::MAX))
    .bind(
        filter
            .status
            .map(NotificationStatus::as_str)
            .unwrap_or_default(),
    )
    .bind(filter.customer.clone().unwrap_or_default())
    .bind(filter.topic.clone().unwrap_or_default())
    .bind(limit + 1)
    .fetch_all(&state.db.pool)
    .await?;
    let list = rows.iter().map(view_of).collect::<Result<Vec<_>>>()?;
    let (notifications, next_before_id) = crate::http::paging::split(list, limit, |n| n.id);
    Ok(NotificationPage {
        notifications,
        next_before_id,
    })
}

/// One notification with its delivery attempts.
pub async fn load_view(state: &AppState, id: i64) -> Result<NotificationView> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM notifications n LEFT JOIN customers c ON c.id = n.customer_id
         WHERE n.id = $1"
    )))
    .bind(id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| Error::not_found(format!("notification {id}")))?;
    let mut view = view_of(&row)?;
    let attempts = sqlx::query(
        "SELECT attempt, outcome, detail, at FROM notification_attempts
         WHERE notification_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|row| -> Result<AttemptView> {
        Ok(AttemptView {
            attempt: row.try_get(0)?,
            outcome: row.try_get(1)?,
            detail: row.try_get(2)?,
            at: row.try_get(3)?,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    view.delivery_attempts = Some(attempts);
    Ok(view)
}

/// One notification with its delivery attempts. Permission: `customers.read`.
#[utoipa::path(get, path = "/notifications/{id}", tag = "admin-customers",
    params(("id" = i64, Path, description = "The notification's id")),
    security(("staff_token" = [])),
    responses((status = 200, body = NotificationView), (status = 404, body = ErrorBody)))]
async fn get_notification(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> Result<Json<NotificationView>> {
    Ok(Json(load_view(&state, id).await?))
}

/// Sends a notification again, as a new notification with the same content (audited as
/// `notification.resent`). Permission: `customers.write`.
#[utoipa::path(post, path = "/notifications/{id}/resend", tag = "admin-customers",
    params(("id" = i64, Path, description = "The notification's id")),
    security(("staff_token" = [])),
    responses((status = 201, body = NotificationView), (status = 404, body = ErrorBody)))]
async fn resend_notification(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam(id): PathParam<i64>,
) -> Result<(StatusCode, Json<NotificationView>)> {
    let new_id = super::resend(&state, id, &staff.actor).await?;
    Ok((StatusCode::CREATED, Json(load_view(&state, new_id).await?)))
}

/// A template in force, per topic and channel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateView {
    pub topic: String,
    pub description: String,
    pub channel: String,
    /// The merchant changed it (otherwise the built-in one).
    pub customised: bool,
    #[serde(flatten)]
    pub template: Template,
}

/// Every topic's template on every channel, and the placeholders they may use.
/// Permission: `settings.write`.
#[utoipa::path(get, path = "/notification-templates", tag = "admin-customers",
    security(("staff_token" = [])),
    responses((status = 200, body = Vec<TemplateView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn list_templates(State(state): State<AppState>) -> Result<Json<Vec<TemplateView>>> {
    Ok(Json(templates_of(&state).await?))
}

/// Every topic's template on every channel, the store's own or the default.
pub async fn templates_of(state: &AppState) -> Result<Vec<TemplateView>> {
    let mut conn = state.db.pool.acquire().await?;
    let customised: Vec<(String, String)> =
        sqlx::query("SELECT topic, channel FROM notification_templates")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (topic, description) in templates::TOPICS {
        for channel in templates::CHANNELS {
            if let Some(template) = templates::load(&mut conn, topic, channel).await? {
                out.push(TemplateView {
                    topic: (*topic).to_owned(),
                    description: (*description).to_owned(),
                    channel: (*channel).to_owned(),
                    customised: customised.iter().any(|(t, c)| t == topic && c == channel),
                    template,
                });
            }
        }
    }
    Ok(out)
}

/// Replaces a topic's template on one channel (`enabled: false` stops that topic on that
/// channel). Placeholders: `{{order_number}}`, `{{tracking_number}}`, … (unknown ones are
/// refused). Permission: `settings.write`.
#[utoipa::path(put, path = "/notification-templates/{topic}/{channel}", tag = "admin-customers",
    params(("topic" = inline(super::templates::TopicName), Path, description = "e.g. `order.shipped`"),
        ("channel" = inline(super::templates::ChannelName), Path, description = "`email`, `push` or `webhook`")),
    request_body = Template, security(("staff_token" = [])),
    responses((status = 200, body = Template), (status = 422, body = ErrorBody)))]
async fn put_template(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    PathParam((topic, channel)): PathParam<(String, String)>,
    JsonBody(template): JsonBody<Template>,
) -> Result<Json<Template>> {
    save_template(&state, &staff.actor, &topic, &channel, &template).await?;
    Ok(Json(template))
}

/// Replaces `topic`'s template on `channel`, checked and audited.
pub async fn save_template(
    state: &AppState,
    actor: &str,
    topic: &str,
    channel: &str,
    template: &Template,
) -> Result<()> {
    templates::check(topic, channel, template)?;
    let now = state.clock.now_text();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO notification_templates (topic, channel, title, body_text, body_html, link,
            enabled, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (topic, channel) DO UPDATE SET title = excluded.title,
            body_text = excluded.body_text, body_html = excluded.body_html, link = excluded.link,
            enabled = excluded.enabled, updated_at = excluded.updated_at",
    )
    .bind(topic)
    .bind(channel)
    .bind(&template.title)
    .bind(&template.text)
    .bind(template.html.as_deref())
    .bind(template.link.as_deref())
    .bind(i64::from(template.enabled))
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: "notification.template_changed",
            target_type: "notification_template",
            target_id: format!("{topic}/{channel}"),
            before: None,
            after: Some(
                serde_json::json!({ "title": template.title, "enabled": template.enabled }),
            ),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A promotional message.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignInput {
    /// The email's subject and the push title.
    #[schema(value_type = crate::http::schema::NonBlankText200)]
    pub title: String,
    #[schema(value_type = crate::http::schema::NonBlankText5000)]
    pub text: String,
    /// The email's HTML body; the text, escaped, when unset.
    #[schema(max_length = 100000)]
    pub html: Option<String>,
    /// An http(s) URL.
    #[schema(pattern = "^https?://[^\\x00-\\x20\\x7F]*$", max_length = 2000)]
    pub link: Option<String>,
}

impl CampaignInput {
    pub fn check(&self) -> Result<()> {
        let mut problems = Problems::new();
        templates::check_message(
            &mut problems,
            &self.title,
            &self.text,
            self.html.as_deref(),
            self.link.as_deref(),
            false,
        );
        problems.into_result()
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignSent {
    pub id: i64,
}

/// Sends a promotional message to every customer who consented to marketing (by email
/// with `marketing_email`, by push with `marketing_push`), through the bus: the answer
/// comes at once and the notifications follow. Permission: `settings.write`.
#[utoipa::path(post, path = "/notification-campaigns", tag = "admin-customers",
    request_body = CampaignInput, security(("staff_token" = [])),
    responses((status = 202, body = CampaignSent), (status = 422, body = ErrorBody)))]
async fn send_campaign(
    State(state): State<AppState>,
    StaffAuth(staff): StaffAuth,
    JsonBody(input): JsonBody<CampaignInput>,
) -> Result<(StatusCode, Json<CampaignSent>)> {
    let id = super::send_campaign(&state, &staff.actor, &input).await?;
    Ok((StatusCode::ACCEPTED, Json(CampaignSent { id })))
}

/// A campaign sent, with what became of its notifications so far.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignSummary {
    pub id: i64,
    pub title: String,
    pub text: String,
    pub link: Option<String>,
    pub created_by: String,
    pub created_at: String,
    /// Its notifications by state (`pending`, `delivered`, `failed`, `gone`, `skipped`).
    pub notifications: std::collections::BTreeMap<String, i64>,
}

/// The campaigns sent, newest first (at most `limit`).
pub async fn campaigns(state: &AppState, limit: i64) -> Result<Vec<CampaignSummary>> {
    let mut conn = state.db.pool.acquire().await?;
    let rows = sqlx::query(
        "SELECT id, title, body_text, link, created_by, created_at FROM notification_campaigns
         ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get(0)?;
        // The unique key (source, channel, recipient) serves this.
        let counts = sqlx::query(
            "SELECT status, CAST(COUNT(*) AS BIGINT) FROM notifications WHERE source = $1 GROUP BY status",
        )
        .bind(format!("campaign:{id}"))
        .fetch_all(&mut *conn)
        .await?;
        let mut notifications = std::collections::BTreeMap::new();
        for count in &counts {
            notifications.insert(count.try_get(0)?, count.try_get(1)?);
        }
        out.push(CampaignSummary {
            id,
            title: row.try_get(1)?,
            text: row.try_get(2)?,
            link: row.try_get(3)?,
            created_by: row.try_get(4)?,
            created_at: row.try_get(5)?,
            notifications,
        });
    }
    Ok(out)
}

/// How many customers a campaign sent now would reach.
pub async fn campaign_audience(state: &AppState) -> Result<i64> {
    let mut conn = state.db.pool.acquire().await?;
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM ({}) AS audience",
        super::CAMPAIGN_AUDIENCE
    )))
    .fetch_one(&mut *conn)
    .await?)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignList {
    /// Customers a campaign sent now would reach (consented to marketing, not erased).
    pub audience: i64,
    /// The latest 50, newest first.
    pub campaigns: Vec<CampaignSummary>,
}

/// The campaigns sent (the latest 50) with their notifications by state, and how many
/// customers a new one would reach. Permission: `settings.write`.
#[utoipa::path(get, path = "/notification-campaigns", tag = "admin-customers",
    security(("staff_token" = [])), responses((status = 200, body = CampaignList)))]
async fn list_campaigns(State(state): State<AppState>) -> Result<Json<CampaignList>> {
    Ok(Json(CampaignList {
        audience: campaign_audience(&state).await?,
        campaigns: campaigns(&state, 50).await?,
    }))
}
