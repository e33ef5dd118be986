//! Cluster-once consumers: one durable position each in `bus_consumers`, worked by
//! whichever node holds the consumer's lease.
//!
//! An event is handled in a transaction that first moves the position from p to p + 1
//! (only if it is still p and this node holds the lease) and then runs the consumer: the
//! row lock serialises any two nodes, and the consumer's writes commit with the move, so
//! they happen once however often the event is delivered. A failure rolls both back and
//! records the attempt; the event is tried again after a backoff, and after its attempts
//! it is copied to `bus_dead_letters` and the position moves past it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio::sync::watch;

use super::{Bus, ClusterOnceConsumer, Event, log};
use crate::error::{Error, Result};
use crate::store::Db;
use crate::time::{Clock, format_timestamp, parse_timestamp};

const BATCH: i64 = 100;
/// The most events a consumer handles in one transaction (a long transaction holds
/// SQLite's one write lock, and its rows' locks on PostgreSQL).
const MAX_RUN: usize = 64;

/// Adds the consumer's row, starting at the head: a consumer deployed today handles
/// today's events, not the whole history.
pub(super) async fn register(db: &Db, name: &str, clock: &Clock) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO bus_consumers (name, position, created_at, updated_at)
         SELECT $1, position, $2, $2 FROM bus_log WHERE id = 1
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(clock.now_text())
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// A consumer's row while this node holds its lease.
struct Held {
    /// This node.
    node: String,
    position: i64,
    attempts: u32,
    retry_at: Option<DateTime<Utc>>,
    lease_until: DateTime<Utc>,
}

/// Takes or renews the lease; `None` when another node holds it.
async fn lease(
    db: &Db,
    name: &str,
    node: &str,
    clock: &Clock,
    ttl: Duration,
) -> Result<Option<Held>> {
    let now = clock.now();
    let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30));
    let row = sqlx::query(
        "UPDATE bus_consumers SET leased_by = $1, lease_until = $2, updated_at = $3
         WHERE name = $4 AND (leased_by = $1 OR leased_by IS NULL OR lease_until < $3)
         RETURNING position, attempts, retry_at",
    )
    .bind(node)
    .bind(format_timestamp(until))
    .bind(format_timestamp(now))
    .bind(name)
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let retry_at: Option<String> = row.try_get(2)?;
    Ok(Some(Held {
        node: node.to_owned(),
        position: row.try_get(0)?,
        attempts: u32::try_from(row.try_get::<i64, _>(1)?).unwrap_or(u32::MAX),
        retry_at: retry_at.as_deref().and_then(parse_timestamp),
        lease_until: until,
    }))
}

enum Delivery {
    Done,
    /// The position moved or the lease went to another node meanwhile.
    LeaseLost,
    Failed(anyhow::Error),
}

/// Moves the consumer's position from just before `event` to it, if it is still there
/// and this node holds the lease; the row stays locked until the transaction ends.
async fn move_past(
    tx: &mut sqlx::AnyConnection,
    name: &str,
    node: &str,
    event: &Event,
    now: &str,
) -> Result<bool> {
    pass_over_in(tx, name, node, event.position - 1, event.position, now).await
}

/// Moves the consumer's position from `from` to `to` (over events it does not want, or
/// past the ones just handled), if it is still at `from` and this node holds the lease.
async fn pass_over(db: &Db, name: &str, node: &str, from: i64, to: i64, now: &str) -> Result<bool> {
    pass_over_in(&mut *db.pool.acquire().await?, name, node, from, to, now).await
}

/// [`pass_over`] on the caller's connection (in its transaction: the row stays locked
/// until it ends).
async fn pass_over_in(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    node: &str,
    from: i64,
    to: i64,
    now: &str,
) -> Result<bool> {
    let moved = sqlx::query(
        "UPDATE bus_consumers SET position = $1, attempts = 0, retry_at = NULL, last_error = NULL,
            updated_at = $2
         WHERE name = $3 AND position = $4 AND leased_by = $5",
    )
    .bind(to)
    .bind(now)
    .bind(name)
    .bind(from)
    .bind(node)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// Handles a run of events in one transaction that moves the position past the last of
/// them (the events the consumer does not want are only passed over). Any failure rolls
/// the whole run back; the caller then goes one event at a time, so that the failing
/// event alone is retried.
async fn deliver_run(
    db: &Db,
    consumer: &dyn ClusterOnceConsumer,
    from: i64,
    run: &[Event],
    node: &str,
    now: &str,
) -> Result<Delivery> {
    let Some(last) = run.last() else {
        return Ok(Delivery::Done);
    };
    let mut tx = db.begin().await?;
    if !pass_over_in(&mut tx, consumer.name(), node, from, last.position, now).await? {
        tx.rollback().await?;
        return Ok(Delivery::LeaseLost);
    }
    for event in run.iter().filter(|e| consumer.wants(e)) {
        if let Err(err) = consumer.handle(event, &mut tx).await {
            tx.rollback().await?;
            return Ok(Delivery::Failed(err));
        }
    }
    crate::failpoint::hit("bus.cluster_before_commit");
    tx.commit().await?;
    consumer.after_commit();
    Ok(Delivery::Done)
}

/// Handles one event in the transaction that moves the position past it.
async fn deliver(
    db: &Db,
    consumer: &dyn ClusterOnceConsumer,
    event: &Event,
    node: &str,
    now: &str,
) -> Result<Delivery> {
    let mut tx = db.begin().await?;
    if !move_past(&mut tx, consumer.name(), node, event, now).await? {
        tx.rollback().await?;
        return Ok(Delivery::LeaseLost);
    }
    if let Err(err) = consumer.handle(event, &mut tx).await {
        tx.rollback().await?;
        return Ok(Delivery::Failed(err));
    }
    crate::failpoint::hit("bus.cluster_before_commit");
    tx.commit().await?;
    consumer.after_commit();
    Ok(Delivery::Done)
}

/// Records a failed attempt: tried again at `retry_at`.
async fn record_failure(
    db: &Db,
    name: &str,
    node: &str,
    position: i64,
    attempts: u32,
    retry_at: DateTime<Utc>,
    error: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE bus_consumers SET attempts = $1, retry_at = $2, last_error = $3
         WHERE name = $4 AND position = $5 AND leased_by = $6",
    )
    .bind(i64::from(attempts))
    .bind(format_timestamp(retry_at))
    .bind(error)
    .bind(name)
    .bind(position)
    .bind(node)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Gives up on an event: a copy goes to the dead letters and the position moves past it.
async fn dead_letter(
    db: &Db,
    name: &str,
    node: &str,
    event: &Event,
    attempts: u32,
    error: &str,
    now: &str,
) -> Result<bool> {
    let mut tx = db.begin().await?;
    if !move_past(&mut tx, name, node, event, now).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO bus_dead_letters (consumer, event_id, position, aggregate_type, aggregate_id,
            event_type, payload, event_created_at, attempts, error, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (consumer, position) DO NOTHING",
    )
    .bind(name)
    .bind(event.id)
    .bind(event.position)
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(&event.event_type)
    .bind(event.payload.to_string())
    .bind(&event.created_at)
    .bind(i64::from(attempts))
    .bind(error)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Works one consumer on this node for as long as the kernel runs: waits for the lease,
/// then handles events as they come, renewing the lease as it goes.
pub(super) async fn run(
    db: Db,
    bus: Bus,
    consumer: Arc<dyn ClusterOnceConsumer>,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = consumer.name();
    let config = bus.config();
    let mut head_rx = bus.watch_head();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let step = work(&db, &bus, &*consumer, &clock, &config).await;
        let wait = match step {
            Ok(wait) => wait,
            Err(err) => {
                tracing::warn!(consumer = name, error = %err, "cluster-once consumer step failed; will retry");
                Wait::For(Duration::from_secs(1))
            }
        };
        match wait {
            Wait::Again => {}
            Wait::For(pause) => {
                tokio::select! {
                    _ = clock.sleep_until(clock.now() + chrono::Duration::from_std(pause).unwrap_or_default(), pause) => {}
                    _ = head_rx.changed() => {}
                    _ = shutdown.changed() => {}
                }
            }
            Wait::Until(at, cap) => {
                tokio::select! {
                    _ = clock.sleep_until(at, cap) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

enum Wait {
    /// There is more to do now.
    Again,
    /// Until new events or this long (then renew the lease).
    For(Duration),
    /// Until a retry is due (but at most this long, to renew the lease).
    Until(DateTime<Utc>, Duration),
}

/// One step: take the lease, then handle what is there (or wait for what is due).
async fn work(
    db: &Db,
    bus: &Bus,
    consumer: &dyn ClusterOnceConsumer,
    clock: &Clock,
    config: &super::BusConfig,
) -> Result<Wait> {
    let name = consumer.name();
    let node = bus.node_id();
    let renew_every = config.lease / 3;
    let Some(mut held) = lease(db, name, node, clock, config.lease).await? else {
        // Another node works it; look again in case that node goes away.
        return Ok(Wait::For(config.lease / 2));
    };
    if let Some(retry_at) = held.retry_at
        && retry_at > clock.now()
    {
        return Ok(Wait::Until(retry_at, renew_every));
    }
    let head = bus.head();
    if held.position >= head {
        return Ok(Wait::For(renew_every));
    }
    let events = log::read_after(db, held.position, head, BATCH).await?;
    let run_size = consumer.run_size().min(MAX_RUN);
    if run_size > 1
        && held.attempts == 0
        && events
            .first()
            .is_some_and(|e| e.position == held.position + 1)
    {
        // Runs of up to `run_size` wanted events commit together: one transaction per
        // event falls behind a busy shop. A failing run is done again one at a time.
        let mut start = 0;
        while start < events.len() {
            let mut end = start;
            let mut wanted = 0;
            while end < events.len() && wanted < run_size {
                wanted += usize::from(consumer.wants(&events[end]));
                end += 1;
            }
            let run = &events[start..end];
            let now = clock.now_text();
            match deliver_run(db, consumer, held.position, run, node, &now).await? {
                Delivery::Done => {
                    held.position = run.last().map_or(held.position, |e| e.position);
                    metrics::counter!("olivine_bus_events_delivered_total", "consumer" => name)
                        .increment(wanted as u64);
                }
                Delivery::LeaseLost => return Ok(Wait::Again),
                // From this run on, one event at a time.
                Delivery::Failed(_) => break,
            }
            start = end;
            if held.lease_until - clock.now()
                < chrono::Duration::from_std(config.lease / 2).unwrap_or_default()
            {
                match lease(db, name, node, clock, config.lease).await? {
                    Some(renewed) => held.lease_until = renewed.lease_until,
                    None => return Ok(Wait::Again),
                }
            }
        }
        if start >= events.len() {
            return Ok(Wait::Again);
        }
        return one_at_a_time(db, consumer, clock, config, held, &events[start..]).await;
    }
    one_at_a_time(db, consumer, clock, config, held, &events).await
}

/// Delivers `events` one transaction each, from `held`: how a failing event is found,
/// retried and dead-lettered alone.
async fn one_at_a_time(
    db: &Db,
    consumer: &dyn ClusterOnceConsumer,
    clock: &Clock,
    config: &super::BusConfig,
    mut held: Held,
    events: &[Event],
) -> Result<Wait> {
    let name = consumer.name();
    let node = &held.node;
    let renew_every = config.lease / 3;
    // The position of the last event of a run the consumer does not want, not yet
    // passed over.
    let mut unwanted_to: Option<i64> = None;
    for event in events {
        if event.position != held.position + 1 {
            // Pruning never passes a consumer's position, so this is a bug, not a race.
            tracing::error!(
                consumer = name,
                expected = held.position + 1,
                found = event.position,
                "cluster-once consumer found a hole in the event log"
            );
        }
        if !consumer.wants(event) {
            unwanted_to = Some(event.position);
            continue;
        }
        let now = clock.now_text();
        if let Some(to) = unwanted_to.take() {
            if !pass_over(db, name, node, held.position, to, &now).await? {
                return Ok(Wait::Again);
            }
            held.position = to;
        }
        match deliver(db, consumer, event, node, &now).await? {
            Delivery::Done => {
                held.position = event.position;
                held.attempts = 0;
                metrics::counter!("olivine_bus_events_delivered_total", "consumer" => name)
                    .increment(1);
            }
            Delivery::LeaseLost => return Ok(Wait::Again),
            Delivery::Failed(err) => {
                let attempts = held.attempts + 1;
                let error = format!("{err:#}");
                metrics::counter!("olivine_bus_consumer_failures_total", "consumer" => name)
                    .increment(1);
                if attempts >= config.max_attempts {
                    tracing::error!(
                        consumer = name,
                        event = event.id,
                        event_type = event.event_type,
                        attempts,
                        error,
                        "cluster-once consumer gave up on an event: dead-lettered"
                    );
                    if !dead_letter(db, name, node, event, attempts, &error, &now).await? {
                        return Ok(Wait::Again);
                    }
                    metrics::counter!("olivine_bus_dead_lettered_total", "consumer" => name)
                        .increment(1);
                    held.position = event.position;
                    held.attempts = 0;
                    continue;
                }
                let retry_at = clock.now()
                    + chrono::Duration::from_std(config.backoff(attempts))
                        .unwrap_or(chrono::Duration::seconds(1));
                tracing::warn!(
                    consumer = name,
                    event = event.id,
                    event_type = event.event_type,
                    attempts,
                    error,
                    "cluster-once consumer failed; will retry"
                );
                record_failure(db, name, node, held.position, attempts, retry_at, &error).await?;
                return Ok(Wait::Until(retry_at, renew_every));
            }
        }
        if held.lease_until - clock.now()
            < chrono::Duration::from_std(config.lease / 2).unwrap_or_default()
        {
            // Long batch: renew before the lease runs out under us.
            match lease(db, name, node, clock, config.lease).await? {
                Some(renewed) => held.lease_until = renewed.lease_until,
                None => return Ok(Wait::Again),
            }
        }
    }
    if let Some(to) = unwanted_to
        && !pass_over(db, name, node, held.position, to, &clock.now_text()).await?
    {
        return Ok(Wait::Again);
    }
    Ok(Wait::Again)
}

/// A dead letter as staff see it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub consumer: String,
    pub event_id: i64,
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub event_created_at: String,
    pub attempts: i64,
    /// The last attempt's error.
    pub error: String,
    pub created_at: String,
    /// When a replay succeeded.
    pub replayed_at: Option<String>,
    /// The last replay's error, when it failed.
    pub replay_error: Option<String>,
}

pub(crate) const DEAD_LETTER_COLUMNS: &str = "id, consumer, event_id, position, aggregate_type, aggregate_id, event_type, payload, event_created_at, attempts, error, created_at, replayed_at, replay_error";

pub(crate) fn dead_letter_from_row(row: &sqlx::any::AnyRow) -> Result<DeadLetter> {
    let payload: String = row.try_get(7)?;
    Ok(DeadLetter {
        id: row.try_get(0)?,
        consumer: row.try_get(1)?,
        event_id: row.try_get(2)?,
        position: row.try_get(3)?,
        aggregate_type: row.try_get(4)?,
        aggregate_id: row.try_get(5)?,
        event_type: row.try_get(6)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        event_created_at: row.try_get(8)?,
        attempts: row.try_get(9)?,
        error: row.try_get(10)?,
        created_at: row.try_get(11)?,
        replayed_at: row.try_get(12)?,
        replay_error: row.try_get(13)?,
    })
}

/// Hands a dead-lettered event to its consumer again, now, in a transaction that also
/// marks the dead letter replayed (and audits who did); a failure is recorded on the
/// dead letter and answered.
pub async fn replay_dead_letter(
    db: &Db,
    bus: &Bus,
    id: i64,
    clock: &Clock,
    actor: &str,
) -> Result<DeadLetter> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM bus_dead_letters WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or_else(|| Error::not_found(format!("dead letter {id}")))?;
    let letter = dead_letter_from_row(&row)?;
    if letter.replayed_at.is_some() {
        return Err(Error::conflict(
            None,
            format!("dead letter {id} was replayed already"),
        ));
    }
    let consumer = bus.cluster_consumer(&letter.consumer).ok_or_else(|| {
        Error::conflict(
            None,
            format!(
                "this node does not run the consumer `{}` any more",
                letter.consumer
            ),
        )
    })?;
    let event = Event {
        id: letter.event_id,
        position: letter.position,
        aggregate_type: letter.aggregate_type.clone(),
        aggregate_id: letter.aggregate_id.clone(),
        event_type: letter.event_type.clone(),
        payload: letter.payload.clone(),
        created_at: letter.event_created_at.clone(),
    };
    let now = clock.now_text();
    let mut tx = db.begin().await?;
    let marked = sqlx::query(
        "UPDATE bus_dead_letters SET replayed_at = $1, replay_error = NULL
         WHERE id = $2 AND replayed_at IS NULL",
    )
    .bind(&now)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if marked == 0 {
        tx.rollback().await?;
        return Err(Error::conflict(
            None,
            format!("dead letter {id} was replayed already"),
        ));
    }
    match consumer.handle(&event, &mut tx).await {
        Ok(()) => {
            crate::audit::record(
                &mut tx,
                &crate::audit::Entry {
                    actor,
                    action: "bus.dead_letter_replayed",
                    target_type: "dead_letter",
                    target_id: id.to_string(),
                    before: Some(serde_json::json!({ "consumer": letter.consumer,
                        "event_id": letter.event_id, "event_type": letter.event_type,
                        "error": letter.error })),
                    after: Some(serde_json::json!({ "replayed_at": now })),
                },
            )
            .await?;
            tx.commit().await?;
            tracing::info!(
                consumer = letter.consumer,
                event = letter.event_id,
                "dead letter replayed"
            );
        }
        Err(err) => {
            tx.rollback().await?;
            sqlx::query("UPDATE bus_dead_letters SET replay_error = $1 WHERE id = $2")
                .bind(format!("{err:#}"))
                .bind(id)
                .execute(&db.pool)
                .await?;
        }
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM bus_dead_letters WHERE id = $1"
    )))
    .bind(id)
    .fetch_one(&db.pool)
    .await?;
    dead_letter_from_row(&row)
}
