//! Product reviews: a customer who bought a product (an order of it that was paid) may
//! review it once, with a rating of 1 to 5, a title and a text. A review waits for
//! moderation; staff publish or reject it. Published reviews show on the product page
//! and in the product JSON with the average and count (served from the catalog cache:
//! the review events name the product, which the cache drops), and
//! `review.published` is what loyalty rules can reward.
//!
//! Text is plain: the pages escape it (maud), it is limited in length, and a card number
//! or an email address in it is refused, since a review is public.

pub mod api;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::{Error, Problems, Result};
use crate::orders::check_text;

const TITLE_MAX: usize = 100;
const BODY_MAX: usize = 5000;
const NAME_MAX: usize = 64;
/// Published reviews the product JSON and page carry (the newest).
const LATEST: i64 = 10;

/// A review as the product page and the product JSON show it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PublishedReview {
    pub id: i64,
    pub rating: i64,
    pub title: String,
    pub body: String,
    /// As the author chose to be shown (absent once they were erased).
    pub author_name: Option<String>,
    pub created_at: String,
}

/// What shoppers read of a product's reviews.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReviewSummary {
    /// Published reviews.
    pub count: i64,
    /// The mean rating of the published reviews, to one decimal (none without reviews).
    pub average_rating: Option<f64>,
    /// The newest published reviews, at most 10.
    pub latest: Vec<PublishedReview>,
}

/// A review with its moderation state, for its author and staff.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Review {
    pub id: i64,
    pub product_slug: String,
    pub rating: i64,
    pub title: String,
    pub body: String,
    pub author_name: Option<String>,
    /// `pending`, `published` or `rejected`.
    pub status: String,
    /// Why staff rejected it (shown to its author).
    pub reject_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A review to write.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    #[schema(minimum = 1, maximum = 5)]
    pub rating: i64,
    /// One line, 1 to 100 characters.
    #[schema(value_type = crate::http::schema::SingleLine100)]
    pub title: String,
    /// 1 to 5,000 characters; no card numbers or email addresses (a review is public).
    #[schema(value_type = crate::http::schema::NonBlankText5000)]
    pub body: String,
    /// How the product page names the author; unset: their first name and the initial
    /// of their last.
    #[serde(default)]
    #[schema(value_type = Option<crate::http::schema::SingleLine64>)]
    pub author_name: Option<String>,
}

/// Whether the text holds something shaped like an email address (`x@y.z`).
fn contains_email(text: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';'))
        .any(|word| {
            let Some((local, domain)) = word.split_once('@') else {
                return false;
            };
            !local.is_empty()
                && domain
                    .trim_end_matches(['.', '!', '?'])
                    .split_once('.')
                    .is_some_and(|(host, tld)| !host.is_empty() && tld.len() >= 2)
        })
}

/// The problems of a review's text, all at once.
fn check(input: &NewReview) -> Result<()> {
    let mut problems = Problems::new();
    problems.check((1..=5).contains(&input.rating), "rating", "must be 1 to 5");
    // Limits count the text as sent; surrounding whitespace is trimmed when stored.
    let title = input.title.trim();
    check_text(&mut problems, "title", &input.title, TITLE_MAX, true);
    let body = input.body.trim();
    problems.check(
        !body.is_empty() && input.body.chars().count() <= BODY_MAX,
        "body",
        format!("must be 1 to {BODY_MAX} characters"),
    );
    if let Some(name) = &input.author_name {
        check_text(&mut problems, "author_name", name, NAME_MAX, true);
    }
    for (field, text) in [
        ("title", title),
        ("body", body),
        ("author_name", input.author_name.as_deref().unwrap_or("")),
    ] {
        if crate::http::card_numbers::contains_card_number(text) {
            problems.add(field, crate::http::card_numbers::MESSAGE);
        } else if contains_email(text) {
            problems.add(field, "must not hold an email address: a review is public");
        }
    }
    problems.into_result()
}

/// "Ada Lovelace" as "Ada L."
fn short_name(full: &str) -> String {
    let mut words = full.split_whitespace();
    let first = words.next().unwrap_or("A customer");
    match words.last().and_then(|last| last.chars().next()) {
        Some(initial) => format!("{first} {initial}."),
        None => first.to_owned(),
    }
}

async fn product_id_of(conn: &mut AnyConnection, slug: &str) -> Result<i64> {
    sqlx::query("SELECT id FROM products WHERE slug = $1 AND status = 'active'")
        .bind(slug)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .ok_or_else(|| Error::not_found(format!("product `{slug}`")))
}

/// Writes a customer's review of a product they bought; it waits for moderation.
pub async fn submit(
    state: &AppState,
    customer_id: i64,
    slug: &str,
    input: NewReview,
) -> Result<Review> {
    check(&input)?;
    let mut conn = state.db.pool.acquire().await?;
    let product_id = product_id_of(&mut conn, slug).await?;
    let bought: Option<i64> = sqlx::query(
        "SELECT o.id FROM orders o
         JOIN order_lines l ON l.order_id = o.id
         JOIN variants v ON v.id = l.variant_id
         WHERE o.customer_id = $1 AND v.product_id = $2
           AND o.status IN ('paid', 'fulfilled', 'delivered')
         LIMIT 1",
    )
    .bind(customer_id)
    .bind(product_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|row| row.try_get(0))
    .transpose()?;
    if bought.is_none() {
        return Err(Error::conflict(
            None,
            "only a customer who bought this product can review it",
        ));
    }
    let author = match &input.author_name {
        Some(name) => name.trim().to_owned(),
        None => short_name(&crate::accounts::account(state, customer_id).await?.name),
    };
    drop(conn);
    let now = state.clock.now_text();
    let mut tx = state.db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO reviews (product_id, customer_id, rating, title, body, author_name, status,
            created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)
         RETURNING id",
    )
    .bind(product_id)
    .bind(customer_id)
    .bind(input.rating)
    .bind(input.title.trim())
    .bind(input.body.trim())
    .bind(&author)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await;
    let id: i64 = match inserted {
        Ok(row) => row.try_get(0)?,
        Err(err) if crate::store::is_unique_violation(&err) => {
            return Err(Error::conflict(
                None,
                "you have reviewed this product already",
            ));
        }
        Err(err) => return Err(err.into()),
    };
    crate::bus::record(
        &mut tx,
        "review",
        id,
        "review.submitted",
        &serde_json::json!({ "review": id, "product": slug }),
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    get(state, id, Some(customer_id)).await
}

const COLUMNS: &str = "r.id, p.slug, r.rating, r.title, r.body, r.author_name, r.status,
    r.reject_reason, r.created_at, r.updated_at";

fn review_of(row: &sqlx::any::AnyRow) -> Result<Review> {
    Ok(Review {
        id: row.try_get(0)?,
        product_slug: row.try_get(1)?,
        rating: row.try_get(2)?,
        title: row.try_get(3)?,
        body: row.try_get(4)?,
        author_name: row.try_get(5)?,
        status: row.try_get(6)?,
        reject_reason: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    })
}

/// A review (of `customer` only, when given: another's is not found).
pub async fn get(state: &AppState, id: i64, customer: Option<i64>) -> Result<Review> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS}, r.customer_id FROM reviews r JOIN products p ON p.id = r.product_id
         WHERE r.id = $1"
    )))
    .bind(id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| Error::not_found("review"))?;
    if customer.is_some() && row.try_get::<Option<i64>, _>(10)? != customer {
        return Err(Error::not_found("review"));
    }
    review_of(&row)
}

/// A product's published reviews, newest first, at most 200.
pub async fn published(state: &AppState, slug: &str) -> Result<Vec<PublishedReview>> {
    let mut conn = state.db.pool.acquire().await?;
    let product_id = product_id_of(&mut conn, slug).await?;
    sqlx::query(
        "SELECT id, rating, title, body, author_name, created_at FROM reviews
         WHERE product_id = $1 AND status = 'published' ORDER BY id DESC LIMIT 200",
    )
    .bind(product_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(published_of)
    .collect()
}

fn published_of(row: &sqlx::any::AnyRow) -> Result<PublishedReview> {
    Ok(PublishedReview {
        id: row.try_get(0)?,
        rating: row.try_get(1)?,
        title: row.try_get(2)?,
        body: row.try_get(3)?,
        author_name: row.try_get(4)?,
        created_at: row.try_get(5)?,
    })
}

/// The customer's reviews, newest first.
pub async fn list_for_customer(state: &AppState, customer_id: i64) -> Result<Vec<Review>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM reviews r JOIN products p ON p.id = r.product_id
         WHERE r.customer_id = $1 ORDER BY r.id DESC"
    )))
    .bind(customer_id)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(review_of)
    .collect()
}

/// Which reviews staff list.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReviewStatus {
    #[default]
    Pending,
    Published,
    Rejected,
}

impl ReviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Published => "published",
            ReviewStatus::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StaffFilter {
    /// Reviews in this state (default `pending`: the moderation queue), oldest first.
    #[param(inline)]
    pub status: Option<ReviewStatus>,
}

/// Reviews in one state, oldest first (the moderation queue by default), at most 200.
pub async fn list_for_staff(state: &AppState, filter: &StaffFilter) -> Result<Vec<Review>> {
    reviews_in(state, filter, 0, 200).await
}

/// `limit` reviews in one state from the `offset`th, oldest first, and how many are in
/// that state (the admin's pager; by the index on `(status, id)`).
pub async fn page_for_staff(
    state: &AppState,
    filter: &StaffFilter,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Review>, i64)> {
    let total: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM reviews WHERE status = $1")
        .bind(filter.status.unwrap_or_default().as_str())
        .fetch_one(&state.db.pool)
        .await?
        .try_get(0)?;
    Ok((reviews_in(state, filter, offset, limit).await?, total))
}

async fn reviews_in(
    state: &AppState,
    filter: &StaffFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<Review>> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM reviews r JOIN products p ON p.id = r.product_id
         WHERE r.status = $1 ORDER BY r.id LIMIT $2 OFFSET $3"
    )))
    .bind(filter.status.unwrap_or_default().as_str())
    .bind(limit.clamp(1, 500))
    .bind(offset.max(0))
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(review_of)
    .collect()
}

/// A moderation decision.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, tag = "decision", rename_all = "lowercase")]
pub enum Moderation {
    /// Shown on the product page from now on (a rejected review may be published later).
    Publish,
    /// Not shown; the reason (1 to 200 characters) is shown to its author. A published
    /// review can be taken down this way.
    Reject {
        #[schema(value_type = crate::http::schema::SingleLine200)]
        reason: String,
    },
}

/// Publishes or rejects a review, audited; a publication records `review.published`
/// (loyalty rules reward it; the cache drops the product).
pub async fn moderate(
    state: &AppState,
    actor: &str,
    id: i64,
    decision: Moderation,
) -> Result<Review> {
    let (to, reason) = match &decision {
        Moderation::Publish => (ReviewStatus::Published, None),
        Moderation::Reject { reason } => {
            let mut problems = Problems::new();
            check_text(&mut problems, "reason", reason, 200, true);
            problems.into_result()?;
            (ReviewStatus::Rejected, Some(reason.trim().to_owned()))
        }
    };
    let before = get(state, id, None).await?;
    if before.status == to.as_str() {
        return Err(Error::conflict(
            Some("decision"),
            format!("the review is {} already", before.status),
        ));
    }
    let now = state.clock.now_text();
    let mut tx = state.db.begin().await?;
    let moved = sqlx::query(
        "UPDATE reviews SET status = $1, reject_reason = $2, moderated_by = $3, moderated_at = $4,
            updated_at = $4
         WHERE id = $5 AND status = $6",
    )
    .bind(to.as_str())
    .bind(&reason)
    .bind(actor)
    .bind(&now)
    .bind(id)
    .bind(&before.status)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        return Err(Error::conflict(
            None,
            "the review changed meanwhile; read it again",
        ));
    }
    let customer_id: Option<i64> = sqlx::query("SELECT customer_id FROM reviews WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    let event = match to {
        ReviewStatus::Published => "review.published",
        _ => "review.rejected",
    };
    // `products` names the product for the catalog cache, which drops it.
    crate::bus::record(
        &mut tx,
        "review",
        id,
        event,
        &serde_json::json!({
            "review": id, "customer": customer_id, "product": before.product_slug,
            "products": [before.product_slug],
        }),
    )
    .await?;
    crate::audit::record(
        &mut tx,
        &crate::audit::Entry {
            actor,
            action: event,
            target_type: "review",
            target_id: id.to_string(),
            before: Some(serde_json::json!({ "status": before.status })),
            after: Some(serde_json::json!({ "status": to.as_str(), "reason": reason })),
        },
    )
    .await?;
    tx.commit().await?;
    state.bus.notify();
    get(state, id, None).await
}

/// The published reviews of a product, for its page and JSON (read with the product).
pub async fn summary_of(conn: &mut AnyConnection, product_id: i64) -> Result<ReviewSummary> {
    let row = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(rating), 0) AS BIGINT)
         FROM reviews WHERE product_id = $1 AND status = 'published'",
    )
    .bind(product_id)
    .fetch_one(&mut *conn)
    .await?;
    let count: i64 = row.try_get(0)?;
    let sum: i64 = row.try_get(1)?;
    let latest = sqlx::query(
        "SELECT id, rating, title, body, author_name, created_at FROM reviews
         WHERE product_id = $1 AND status = 'published' ORDER BY id DESC LIMIT $2",
    )
    .bind(product_id)
    .bind(LATEST)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(published_of)
    .collect::<Result<Vec<_>>>()?;
    Ok(ReviewSummary {
        count,
        // Tenths, rounded half up, from integers: 4.45 shows as 4.5.
        average_rating: (count > 0).then(|| ((sum * 20 + count) / (count * 2)) as f64 / 10.0),
        latest,
    })
}

/// The customer's reviews for their GDPR export.
pub async fn export_on(conn: &mut AnyConnection, customer_id: i64) -> Result<serde_json::Value> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM reviews r JOIN products p ON p.id = r.product_id
         WHERE r.customer_id = $1 ORDER BY r.id"
    )))
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    let reviews = rows.iter().map(review_of).collect::<Result<Vec<_>>>()?;
    Ok(serde_json::to_value(reviews).map_err(anyhow::Error::from)?)
}

/// Erasure: the author's name goes from every review; the reviews themselves go too,
/// unless the shop keeps erased customers' reviews (rating and text, anonymous). Answers
/// how many reviews were touched, and records `review.removed` for the products whose
/// page changes.
pub async fn erase(tx: &mut AnyConnection, customer_id: i64, keep: bool) -> Result<u64> {
    let products: Vec<String> = sqlx::query(
        "SELECT DISTINCT p.slug FROM reviews r JOIN products p ON p.id = r.product_id
         WHERE r.customer_id = $1 AND r.status = 'published'",
    )
    .bind(customer_id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<std::result::Result<_, _>>()?;
    let touched = if keep {
        sqlx::query(
            "UPDATE reviews SET author_name = NULL, customer_id = NULL, updated_at = $2
             WHERE customer_id = $1",
        )
        .bind(customer_id)
        .bind(crate::time::now())
        .execute(&mut *tx)
        .await?
        .rows_affected()
    } else {
        sqlx::query("DELETE FROM reviews WHERE customer_id = $1")
            .bind(customer_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
    };
    if !products.is_empty() {
        crate::bus::record(
            tx,
            "review",
            "erasure",
            "review.removed",
            &serde_json::json!({ "products": products }),
        )
        .await?;
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(title: &str, body: &str) -> NewReview {
        NewReview {
            rating: 5,
            title: title.to_owned(),
            body: body.to_owned(),
            author_name: None,
        }
    }

    #[test]
    fn emails_and_card_numbers_are_refused() {
        assert!(check(&review("Great", "Works well for me.")).is_ok());
        assert!(check(&review("Great", "Write me at ada@example.com!")).is_err());
        assert!(check(&review("Great", "My card 4242 4242 4242 4242 was charged")).is_err());
        assert!(check(&review("Great", "Five @ stars. 10/10")).is_ok());
        assert!(check(&review("", "text")).is_err());
        assert!(check(&review("two\nlines", "text")).is_err());
        assert!(
            check(&NewReview {
                rating: 6,
                ..review("a", "b")
            })
            .is_err()
        );
    }

    #[test]
    fn authors_are_shown_by_first_name_and_initial() {
        assert_eq!(short_name("Ada King Lovelace"), "Ada L.");
        assert_eq!(short_name("Ada"), "Ada");
        assert_eq!(short_name("  "), "A customer");
    }
}
