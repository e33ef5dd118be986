//! Recommendations from behaviour cleaned of personal identifiers.
//!
//! The storefront (and apps, through the API) record what a visitor viewed, added to the
//! cart or bought, only with the analytics consent, under a random visitor id that is not
//! the customer id and is replaced every 30 days; no IP address or user agent is kept.
//! A signed-in customer's visitor ids are linked to them in `customer_visitors`, apart
//! from the events, so erasure and a withdrawn consent delete their rows and the export
//! lists them. Events are written in batches off the request path (a crash loses at most
//! the last second of them: analytics, not commerce).
//!
//! The `recommendations.compute` job (hourly) turns the last 90 days into "bought
//! together" (orders with both products), "viewed together" (visitors who viewed both)
//! and each visitor's category affinity, and drops older events. Product pages show what
//! goes well with the product (in stock only); the home page puts the visitor's preferred
//! category first.

pub mod api;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use tokio::sync::{mpsc, oneshot};

use crate::app::AppState;
use crate::error::Result;
use crate::jobs::{FnHandler, JobContext, JobHandler};
use crate::store::Db;
use crate::time::Clock;

/// The scheduled job that computes the recommendations.
pub const JOB: &str = "recommendations.compute";
/// Behaviour older than this is dropped, and not counted.
const RETENTION_DAYS: i64 = 90;
/// Related products kept per product and kind.
const RELATED_PER_KIND: i64 = 8;
/// Events waiting to be written; past this a page view is not recorded rather than
/// slowing the page.
const QUEUE: usize = 10_000;
/// Events written per statement.
const BATCH: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    Viewed,
    Added,
    Purchased,
}

impl Behaviour {
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Viewed => "viewed",
            Behaviour::Added => "added",
            Behaviour::Purchased => "purchased",
        }
    }

    pub fn parse(text: &str) -> Option<Behaviour> {
        Some(match text {
            "viewed" => Behaviour::Viewed,
            "added" => Behaviour::Added,
            "purchased" => Behaviour::Purchased,
            _ => return None,
        })
    }
}

struct NewEvent {
    visitor: String,
    kind: Behaviour,
    product_id: i64,
    at: String,
    /// A signed-in customer with the analytics consent: the visitor id is linked.
    customer_id: Option<i64>,
}

enum Message {
    Event(NewEvent),
    Flush(oneshot::Sender<()>),
}

/// The node's recorder and the related products it has read lately.
#[derive(Clone)]
pub struct Recommendations {
    queue: mpsc::Sender<Message>,
    /// Product id → related product slugs (in order), for five minutes: the job runs
    /// hourly, and a page view reads no database for them.
    related: moka::future::Cache<i64, Arc<Vec<String>>>,
}

impl Recommendations {
    /// Starts the writer task on `db`.
    pub fn start(db: Db) -> Recommendations {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(db, receiver));
        Recommendations {
            queue,
            related: moka::future::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        }
    }

    /// Waits until every event recorded so far is written (tests read them at once).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Drops the related products read so far (after the job computed new ones).
    pub fn forget_related(&self) {
        self.related.invalidate_all();
    }

    fn push(&self, event: NewEvent) {
        if self.queue.try_send(Message::Event(event)).is_err() {
            metrics::counter!("olivine_behaviour_dropped_total").increment(1);
        }
    }
}

async fn write_events(db: Db, mut receiver: mpsc::Receiver<Message>) {
    let mut batch: Vec<NewEvent> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        // Take what is queued now, then write it in one transaction.
        while let Some(message) = next {
            match message {
                Message::Event(event) => batch.push(event),
                Message::Flush(done) => waiting.push(done),
            }
            next = if batch.len() >= BATCH {
                None
            } else {
                receiver.try_recv().ok()
            };
        }
        if !batch.is_empty() {
            if let Err(err) = write_batch(&db, &batch).await {
                tracing::warn!(error = %format!("{err:#}"), events = batch.len(), "behaviour events not recorded");
            }
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write_batch(db: &Db, batch: &[NewEvent]) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    for chunk in batch.chunks(100) {
        let sql = format!(
            "INSERT INTO behaviour_events (visitor, kind, product_id, created_at) VALUES {}",
            crate::store::value_rows(chunk.len(), 4)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event in chunk {
            insert = insert
                .bind(&event.visitor)
                .bind(event.kind.as_str())
                .bind(event.product_id)
                .bind(&event.at);
        }
        insert.execute(&mut *tx).await?;
    }
    for event in batch {
        if let Some(customer_id) = event.customer_id {
            sqlx::query(
                "INSERT INTO customer_visitors (customer_id, visitor, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (customer_id, visitor) DO NOTHING",
            )
            .bind(customer_id)
            .bind(&event.visitor)
            .bind(&event.at)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Whether the customer's account allows analytics (their newest `analytics` consent).
async fn customer_allows(state: &AppState, customer_id: i64) -> Result<bool> {
    let row = sqlx::query(
        "SELECT granted FROM customer_consents WHERE customer_id = $1 AND purpose = 'analytics'
         ORDER BY id DESC LIMIT 1",
    )
    .bind(customer_id)
    .fetch_optional(&state.db.pool)
    .await?;
    Ok(match row {
        Some(row) => row.try_get::<i64, _>(0)? != 0,
        None => false,
    })
}

/// Records behaviour of a visitor who gave the analytics consent. A signed-in
/// customer's account must allow analytics too (a consent withdrawn in the account wins
/// over the browser's); their visitor id is then linked to them.
pub async fn record(
    state: &AppState,
    visitor: &str,
    customer_id: Option<i64>,
    kind: Behaviour,
    product_ids: &[i64],
) -> Result<()> {
    if let Some(customer_id) = customer_id
        && !customer_allows(state, customer_id).await?
    {
        return Ok(());
    }
    let at = state.clock.now_text();
    for &product_id in product_ids {
        state.recommendations.push(NewEvent {
            visitor: visitor.to_owned(),
            kind,
            product_id,
            at: at.clone(),
            customer_id,
        });
    }
    Ok(())
}

/// The slugs of what goes well with a product: bought together first, then viewed
/// together, best first (at most 16; the page keeps those in stock).
pub async fn related(state: &AppState, product_id: i64) -> Result<Arc<Vec<String>>> {
    if let Some(slugs) = state.recommendations.related.get(&product_id).await {
        return Ok(slugs);
    }
    let slugs: Vec<String> = sqlx::query(
        "SELECT p.slug FROM product_recommendations r JOIN products p ON p.id = r.related_id
         WHERE r.product_id = $1 AND p.status = 'active'
         ORDER BY CASE r.kind WHEN 'bought_together' THEN 0 ELSE 1 END, r.score DESC, p.id",
    )
    .bind(product_id)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<std::result::Result<_, sqlx::Error>>()?;
    let mut unique = Vec::with_capacity(slugs.len());
    for slug in slugs {
        if !unique.contains(&slug) {
            unique.push(slug);
        }
    }
    unique.truncate(16);
    let slugs = Arc::new(unique);
    state
        .recommendations
        .related
        .insert(product_id, slugs.clone())
        .await;
    Ok(slugs)
}

/// The visitor's categories, most looked at first (category slugs).
pub async fn affinity(state: &AppState, visitor: &str) -> Result<Vec<String>> {
    Ok(sqlx::query(
        "SELECT c.slug FROM visitor_affinity a JOIN categories c ON c.id = a.category_id
         WHERE a.visitor = $1 ORDER BY a.score DESC, c.position, c.id",
    )
    .bind(visitor)
    .fetch_all(&state.db.pool)
    .await?
    .iter()
    .map(|row| row.try_get(0))
    .collect::<std::result::Result<_, sqlx::Error>>()?)
}

/// Computes the recommendations and affinities from the last 90 days, and drops older
/// behaviour. One transaction: pages read the previous set until it commits.
pub async fn compute(db: &Db, clock: &Clock) -> anyhow::Result<()> {
    let cutoff =
        crate::time::format_timestamp(clock.now() - chrono::Duration::days(RETENTION_DAYS));
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM product_recommendations")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO product_recommendations (product_id, related_id, kind, score)
         SELECT a, b, 'bought_together', n FROM (
            SELECT va.product_id AS a, vb.product_id AS b, COUNT(DISTINCT la.order_id) AS n,
                ROW_NUMBER() OVER (PARTITION BY va.product_id
                    ORDER BY COUNT(DISTINCT la.order_id) DESC, vb.product_id) AS r
            FROM order_lines la
            JOIN order_lines lb ON lb.order_id = la.order_id
            JOIN variants va ON va.id = la.variant_id
            JOIN variants vb ON vb.id = lb.variant_id
            JOIN orders o ON o.id = la.order_id
            WHERE o.status IN ('paid', 'fulfilled', 'delivered') AND o.created_at >= $1
              AND va.product_id <> vb.product_id
            GROUP BY va.product_id, vb.product_id) pairs
         WHERE r <= $2",
    )
    .bind(&cutoff)
    .bind(RELATED_PER_KIND)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO product_recommendations (product_id, related_id, kind, score)
         SELECT a, b, 'viewed_together', n FROM (
            SELECT ea.product_id AS a, eb.product_id AS b, COUNT(DISTINCT ea.visitor) AS n,
                ROW_NUMBER() OVER (PARTITION BY ea.product_id
                    ORDER BY COUNT(DISTINCT ea.visitor) DESC, eb.product_id) AS r
            FROM behaviour_events ea
            JOIN behaviour_events eb ON eb.visitor = ea.visitor AND eb.product_id <> ea.product_id
            WHERE ea.kind = 'viewed' AND eb.kind = 'viewed'
              AND ea.created_at >= $1 AND eb.created_at >= $1
            GROUP BY ea.product_id, eb.product_id) pairs
         WHERE r <= $2",
    )
    .bind(&cutoff)
    .bind(RELATED_PER_KIND)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM visitor_affinity")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO visitor_affinity (visitor, category_id, score)
         SELECT e.visitor, pc.category_id,
            SUM(CASE e.kind WHEN 'viewed' THEN 1 WHEN 'added' THEN 3 ELSE 5 END)
         FROM behaviour_events e JOIN product_categories pc ON pc.product_id = e.product_id
         WHERE e.created_at >= $1
         GROUP BY e.visitor, pc.category_id",
    )
    .bind(&cutoff)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM behaviour_events WHERE created_at < $1")
        .bind(&cutoff)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub fn job() -> Arc<dyn JobHandler> {
    FnHandler::new(JOB, |ctx: &JobContext| {
        Box::pin(async move {
            compute(&ctx.state.db, &ctx.state.clock).await?;
            // This node reads the new set at once; others within their cache's 5 minutes.
            ctx.state.recommendations.forget_related();
            Ok(())
        })
    })
}

/// Erasure or a withdrawn analytics consent: the customer's behaviour (under every
/// visitor id linked to them), its affinities, and the links go. Answers the events
/// deleted.
pub async fn forget_customer(conn: &mut AnyConnection, customer_id: i64) -> Result<u64> {
    let visitors = "SELECT visitor FROM customer_visitors WHERE customer_id = $1";
    let events = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM behaviour_events WHERE visitor IN ({visitors})"
    )))
    .bind(customer_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM visitor_affinity WHERE visitor IN ({visitors})"
    )))
    .bind(customer_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM customer_visitors WHERE customer_id = $1")
        .bind(customer_id)
        .execute(&mut *conn)
        .await?;
    Ok(events)
}

/// The customer's behaviour for their GDPR export.
pub async fn export_on(conn: &mut AnyConnection, customer_id: i64) -> Result<serde_json::Value> {
    let rows = sqlx::query(
        "SELECT e.visitor, e.kind, p.slug, e.created_at FROM behaviour_events e
         JOIN products p ON p.id = e.product_id
         WHERE e.visitor IN (SELECT visitor FROM customer_visitors WHERE customer_id = $1)
         ORDER BY e.id",
    )
    .bind(customer_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        events.push(serde_json::json!({
            "visitor": row.try_get::<String, _>(0)?,
            "kind": row.try_get::<String, _>(1)?,
            "product": row.try_get::<String, _>(2)?,
            "at": row.try_get::<String, _>(3)?,
        }));
    }
    Ok(serde_json::Value::Array(events))
}
