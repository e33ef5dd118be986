//! The event bus: a transactional outbox and a dispatcher.
//!
//! A domain module writes its change and [`record`]s the event describing it in the same
//! transaction, so both commit or neither does. The [`Dispatcher`] reads undelivered
//! events in id order and hands each to every consumer, then marks it delivered. A crash
//! between delivery and marking delivers that event again after restart: delivery is at
//! least once, and consumers are idempotent. Events of one aggregate are written while
//! its row is locked, so id order is their commit order and delivery is in order per
//! aggregate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use tokio::sync::{Notify, watch};

use crate::store::Db;

/// An event as stored in the outbox and handed to consumers.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at: String,
}

/// Writes an event into the outbox within the caller's transaction.
pub async fn record(
    conn: &mut AnyConnection,
    aggregate_type: &str,
    aggregate_id: impl ToString,
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id.to_string())
    .bind(event_type)
    .bind(payload.to_string())
    .bind(crate::time::now())
    .execute(conn)
    .await?;
    Ok(())
}

/// An event to write with [`record_all`].
pub struct NewEvent<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: String,
    pub event_type: &'a str,
    pub payload: serde_json::Value,
}

/// Writes several events into the outbox within the caller's transaction, in the given
/// order, 100 to a statement.
pub async fn record_all(
    conn: &mut AnyConnection,
    events: &[NewEvent<'_>],
) -> Result<(), sqlx::Error> {
    let now = crate::time::now();
    for chunk in events.chunks(100) {
        let sql = format!(
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, created_at)
             VALUES {}",
            crate::store::value_rows(chunk.len(), 5)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event in chunk {
            insert = insert
                .bind(event.aggregate_type)
                .bind(&event.aggregate_id)
                .bind(event.event_type)
                .bind(event.payload.to_string())
                .bind(&now);
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

pub type ConsumerFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// Something that reacts to events. It must be idempotent: an event can arrive twice.
pub trait Consumer: Send + Sync {
    fn name(&self) -> &'static str;
    fn handle<'a>(&'a self, event: &'a Event) -> ConsumerFuture<'a>;
}

/// Wakes the dispatcher right after a commit, so consumers see events within
/// milliseconds instead of at the next poll.
#[derive(Clone, Default)]
pub struct Bus {
    wake: Arc<Notify>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Call after committing a transaction that recorded events.
    pub fn notify(&self) {
        self.wake.notify_one();
    }
}

pub struct Dispatcher {
    db: Db,
    bus: Bus,
    consumers: Vec<Arc<dyn Consumer>>,
    /// Events from other processes (e.g. `olivine seed`) are noticed by polling.
    poll_interval: Duration,
    batch_size: i64,
}

impl Dispatcher {
    pub fn new(db: Db, bus: Bus, consumers: Vec<Arc<dyn Consumer>>) -> Self {
        Dispatcher {
            db,
            bus,
            consumers,
            poll_interval: Duration::from_millis(500),
            batch_size: 200,
        }
    }

    /// Runs until `shutdown` turns true. Consumer failures are retried with backoff, and
    /// later events wait behind a failing one so that order is kept.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.dispatch_batch().await {
                Ok(0) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = self.bus.wake.notified() => {}
                        _ = tokio::time::sleep(self.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "event dispatch failed; will retry");
                    metrics::counter!("olivine_bus_dispatch_failures_total").increment(1);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Delivers one batch of pending events; returns how many were delivered. The events
    /// delivered are marked in one statement at the end (also when a consumer fails
    /// part-way): a crash before that redelivers them, which consumers must bear anyway.
    pub async fn dispatch_batch(&self) -> anyhow::Result<usize> {
        let events = self.pending().await?;
        let mut delivered: Vec<&Event> = Vec::with_capacity(events.len());
        let mut failure = None;
        'events: for event in &events {
            for consumer in &self.consumers {
                if let Err(err) = consumer.handle(event).await {
                    failure = Some(err.context(format!(
                        "consumer {} failed on event {} ({})",
                        consumer.name(),
                        event.id,
                        event.event_type
                    )));
                    break 'events;
                }
            }
            crate::failpoint::hit("bus.after_deliver");
            delivered.push(event);
        }
        if !delivered.is_empty() {
            let sql = format!(
                "UPDATE outbox SET dispatched_at = $1 WHERE id IN ({})",
                crate::inventory::placeholders(2, delivered.len())
            );
            let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(crate::time::now());
            for event in &delivered {
                update = update.bind(event.id);
            }
            update.execute(&self.db.pool).await?;
            for event in &delivered {
                metrics::counter!("olivine_bus_events_delivered_total", "event_type" => event.event_type.clone())
                    .increment(1);
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(delivered.len()),
        }
    }

    async fn pending(&self) -> Result<Vec<Event>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, aggregate_type, aggregate_id, event_type, payload, created_at
             FROM outbox WHERE dispatched_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.batch_size)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let payload: String = row.try_get(4)?;
                Ok(Event {
                    id: row.try_get(0)?,
                    aggregate_type: row.try_get(1)?,
                    aggregate_id: row.try_get(2)?,
                    event_type: row.try_get(3)?,
                    payload: serde_json::from_str(&payload)
                        .unwrap_or(serde_json::Value::String(payload)),
                    created_at: row.try_get(5)?,
                })
            })
            .collect()
    }
}

/// Events not yet delivered: a gauge for `/metrics` and a check for tests.
pub async fn pending_count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM outbox WHERE dispatched_at IS NULL")
        .fetch_one(&db.pool)
        .await?
        .try_get(0)
}
