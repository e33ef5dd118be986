//! The event log: positions handed out in commit order, reads by position, each node's
//! place in it, and pruning.
//!
//! Why positions: outbox ids come from a sequence, assigned at INSERT. Two transactions
//! that took ids 100 and 101 may commit in the other order, and a reader that saw 101
//! and moved on would never see 100. The sequencer numbers only committed events, one
//! sequencer transaction at a time (each locks the `bus_log` row first), so positions
//! appear in increasing order and without gaps: a reader at position p has seen every
//! event numbered up to p, and the next one it will see is p + 1.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, Row};
use tokio::sync::watch;

use super::{Bus, Event, wakeup};
use crate::store::{Backend, Db, Reads};
use crate::time::Clock;

/// Events numbered per sequencer transaction at most.
const SEQUENCE_BATCH: i64 = 2000;

/// A node not seen for this long is gone: pruning no longer waits for it.
pub const NODE_TIMEOUT_SECS: i64 = 60;

/// The log's head: the newest position, and the primary's WAL position when it was
/// handed out (PostgreSQL).
#[derive(Debug, Clone)]
pub struct Head {
    pub position: i64,
    pub lsn: Option<String>,
    pub store_id: String,
}

/// Numbers the committed events that have no position yet, in id order; returns the
/// new head when it numbered any.
pub async fn sequence(db: &Db) -> Result<Option<Head>, sqlx::Error> {
    Ok(sequence_batch(db).await?.map(|(head, _)| head))
}

/// [`sequence`], with how many events it numbered (at most [`SEQUENCE_BATCH`]).
async fn sequence_batch(db: &Db) -> Result<Option<(Head, i64)>, sqlx::Error> {
    // Most calls find nothing to do: answer those without taking the lock.
    let waiting = sqlx::query("SELECT id FROM outbox WHERE position IS NULL LIMIT 1")
        .fetch_optional(&db.pool)
        .await?;
    if waiting.is_none() {
        return Ok(None);
    }
    crate::failpoint::hit("bus.before_sequence");
    let mut tx = db.begin().await?;
    // The row lock: sequencers on other nodes queue here, and the statement after it
    // sees every event committed before the lock was granted.
    let head: i64 =
        sqlx::query("UPDATE bus_log SET position = position WHERE id = 1 RETURNING position")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
    let numbered = sqlx::query(
        "UPDATE outbox SET position = numbered.position
         FROM (SELECT id, $1 + ROW_NUMBER() OVER (ORDER BY id) AS position
               FROM outbox WHERE position IS NULL ORDER BY id LIMIT $2) AS numbered
         WHERE outbox.id = numbered.id",
    )
    .bind(head)
    .bind(SEQUENCE_BATCH)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    if numbered == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    let lsn = match db.backend {
        Backend::Postgres => "pg_current_wal_lsn()::text",
        Backend::Sqlite => "NULL",
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE bus_log SET position = position + $1, lsn = {lsn}, updated_at = $2 WHERE id = 1
         RETURNING position, lsn, store_id"
    )))
    .bind(numbered)
    .bind(crate::time::now())
    .fetch_one(&mut *tx)
    .await?;
    let head = Head {
        position: row.try_get(0)?,
        lsn: row.try_get(1)?,
        store_id: row.try_get(2)?,
    };
    tx.commit().await?;
    metrics::counter!("olivine_bus_events_sequenced_total").increment(numbered as u64);
    Ok(Some((head, numbered)))
}

/// The head as the database has it now.
pub async fn head(conn: &mut AnyConnection) -> Result<Head, sqlx::Error> {
    let row = sqlx::query("SELECT position, lsn, store_id FROM bus_log WHERE id = 1")
        .fetch_one(conn)
        .await?;
    Ok(Head {
        position: row.try_get(0)?,
        lsn: row.try_get(1)?,
        store_id: row.try_get(2)?,
    })
}

const EVENT_COLUMNS: &str =
    "id, position, aggregate_type, aggregate_id, event_type, payload, created_at";

pub(crate) fn event_from_row(row: &sqlx::any::AnyRow) -> Result<Event, sqlx::Error> {
    let payload: String = row.try_get(5)?;
    Ok(Event {
        id: row.try_get(0)?,
        position: row.try_get(1)?,
        aggregate_type: row.try_get(2)?,
        aggregate_id: row.try_get(3)?,
        event_type: row.try_get(4)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        created_at: row.try_get(6)?,
    })
}

/// Up to `limit` events after position `after`, up to `upto`, in order.
pub async fn read_after(
    db: &Db,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM outbox WHERE position > $1 AND position <= $2
         ORDER BY position LIMIT $3"
    )))
    .bind(after)
    .bind(upto)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(event_from_row).collect()
}

/// The log as a whole: what waits to be numbered and how far behind the live nodes and
/// the cluster-once consumers are.
#[derive(Debug, Clone, Copy)]
pub struct LogState {
    pub unsequenced: i64,
    pub head: i64,
    /// Events after the slowest live node's node-local position.
    pub nodes_lag: i64,
    /// Events after the slowest cluster-once consumer's position.
    pub cluster_lag: i64,
}

pub async fn state(db: &Db) -> Result<LogState, sqlx::Error> {
    let since = crate::time::format_timestamp(
        chrono::Utc::now() - chrono::Duration::seconds(NODE_TIMEOUT_SECS),
    );
    let row = sqlx::query(
        "SELECT (SELECT CAST(COUNT(*) AS BIGINT) FROM outbox WHERE position IS NULL),
                (SELECT position FROM bus_log WHERE id = 1),
                (SELECT MIN(position) FROM bus_nodes WHERE seen_at > $1),
                (SELECT MIN(position) FROM bus_consumers WHERE updated_at > $2)",
    )
    .bind(&since)
    .bind(retired_before())
    .fetch_one(&db.pool)
    .await?;
    let head: i64 = row.try_get(1)?;
    let lag = |min: Option<i64>| min.map_or(0, |p| (head - p).max(0));
    Ok(LogState {
        unsequenced: row.try_get(0)?,
        head,
        nodes_lag: lag(row.try_get(2)?),
        cluster_lag: lag(row.try_get(3)?),
    })
}

/// A cluster-once consumer no node has run for a day is retired (its code is gone):
/// it no longer holds events back from pruning.
fn retired_before() -> String {
    crate::time::format_timestamp(chrono::Utc::now() - chrono::Duration::days(1))
}

/// The oldest position still in the log (the head + 1 when it is empty).
pub async fn oldest_position(db: &Db) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT (SELECT MIN(position) FROM outbox), (SELECT position FROM bus_log WHERE id = 1)",
    )
    .fetch_one(&db.pool)
    .await?;
    let oldest: Option<i64> = row.try_get(0)?;
    let head: i64 = row.try_get(1)?;
    Ok(oldest.unwrap_or(head + 1))
}

/// Deletes events every live node and every cluster-once consumer has handled, once
/// they are older than `retention`, and forgets nodes gone for a day. Returns how many
/// events it deleted.
pub async fn prune(db: &Db, clock: &Clock, retention: Duration) -> Result<u64, sqlx::Error> {
    let now = clock.now();
    let row = sqlx::query(
        "SELECT (SELECT position FROM bus_log WHERE id = 1),
                (SELECT MIN(position) FROM bus_nodes WHERE seen_at > $1),
                (SELECT MIN(position) FROM bus_consumers WHERE updated_at > $2)",
    )
    .bind(crate::time::format_timestamp(
        now - chrono::Duration::seconds(NODE_TIMEOUT_SECS),
    ))
    .bind(retired_before())
    .fetch_one(&db.pool)
    .await?;
    let head: i64 = row.try_get(0)?;
    let nodes: Option<i64> = row.try_get(1)?;
    let consumers: Option<i64> = row.try_get(2)?;
    let handled = [Some(head), nodes, consumers]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(head);
    // Events are stamped with the wall clock (`bus::record`), not the kernel's clock that
    // tests move ahead: the retention is measured on the clock that stamped them, or a
    // clock moved by days would prune an event a moment after it was handled.
    let cutoff = crate::time::format_timestamp(
        chrono::Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::zero()),
    );
    let mut deleted = 0;
    loop {
        let chunk = sqlx::query(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
                WHERE position <= $1 AND created_at < $2 ORDER BY position LIMIT 5000)",
        )
        .bind(handled)
        .bind(&cutoff)
        .execute(&db.pool)
        .await?
        .rows_affected();
        deleted += chunk;
        if chunk < 5000 {
            break;
        }
    }
    sqlx::query("DELETE FROM bus_nodes WHERE seen_at < $1")
        .bind(crate::time::format_timestamp(
            now - chrono::Duration::days(1),
        ))
        .execute(&db.pool)
        .await?;
    if deleted > 0 {
        metrics::counter!("olivine_bus_events_pruned_total").increment(deleted);
    }
    Ok(deleted)
}

/// Numbers new events whenever this node commits some, another node says so, or the
/// poll interval passes; then publishes the head to this node's consumers (after
/// raising the replica fence, so what they invalidate is never refilled from a replica
/// that has not replayed it) and, when it numbered events, wakes the other nodes.
pub(crate) async fn run_sequencer(
    db: Db,
    bus: Bus,
    reads: Reads,
    wakeups: Arc<wakeup::Wakeups>,
    mut shutdown: watch::Receiver<bool>,
) {
    let poll = bus.config().poll_interval;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let step = async {
            let numbered = sequence_batch(&db).await?;
            // A full batch may leave more behind. After a partial one, events committed
            // since have each woken this task (a stored permit), so it need not look.
            let more = numbered.as_ref().is_some_and(|(_, n)| *n >= SEQUENCE_BATCH);
            let head = match numbered {
                Some((head, _)) => {
                    wakeups.publish(wakeup::Topic::Bus).await;
                    head
                }
                None => head(&mut *db.pool.acquire().await?).await?,
            };
            Ok::<_, sqlx::Error>((head, more))
        };
        match step.await {
            Ok((head, more)) => {
                backoff = Duration::from_millis(100);
                if let Some(lsn) = &head.lsn {
                    reads.raise_fence(lsn);
                }
                bus.shared.head.send_if_modified(|known| {
                    let newer = head.position > *known;
                    if newer {
                        *known = head.position;
                    }
                    newer
                });
                metrics::gauge!("olivine_bus_log_head").set(head.position as f64);
                if more {
                    continue;
                }
                tokio::select! {
                    _ = bus.shared.wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "event sequencer failed; will retry");
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

/// Enters this node in `bus_nodes`.
pub(crate) async fn register_node(
    db: &Db,
    node_id: &str,
    position: i64,
    clock: &Clock,
) -> Result<(), sqlx::Error> {
    let now = clock.now_text();
    sqlx::query(
        "INSERT INTO bus_nodes (node_id, position, version, started_at, seen_at)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (node_id) DO UPDATE SET position = excluded.position, seen_at = excluded.seen_at",
    )
    .bind(node_id)
    .bind(position)
    .bind(env!("CARGO_PKG_VERSION"))
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Reports this node's position when it moved (at most ten times a second) and that it
/// is alive every few seconds.
pub(crate) async fn run_heartbeat(
    db: Db,
    bus: Bus,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reported = i64::MIN;
    let mut last_beat = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let position = bus.local_position();
        if position == reported && last_beat.elapsed() < Duration::from_secs(5) {
            continue;
        }
        match sqlx::query("UPDATE bus_nodes SET position = $1, seen_at = $2 WHERE node_id = $3")
            .bind(position)
            .bind(clock.now_text())
            .bind(bus.node_id())
            .execute(&db.pool)
            .await
        {
            Ok(done) if done.rows_affected() == 0 => {
                // Pruned while this node was cut off: enter again.
                if let Err(err) = register_node(&db, bus.node_id(), position, &clock).await {
                    tracing::warn!(error = %err, "bus heartbeat failed");
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "bus heartbeat failed");
                continue;
            }
        }
        reported = position;
        last_beat = std::time::Instant::now();
    }
}

/// Removes this node from `bus_nodes` when it stops.
pub(crate) async fn leave(db: &Db, node_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM bus_nodes WHERE node_id = $1")
        .bind(node_id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The job kind of pruning (scheduled every `OLIVINE_BUS_PRUNE_SECS`).
pub const PRUNE_JOB: &str = "bus.prune";

pub fn prune_job(retention: Duration) -> Arc<dyn crate::jobs::JobHandler> {
    crate::jobs::FnHandler::new(PRUNE_JOB, move |ctx: &crate::jobs::JobContext| {
        Box::pin(async move {
            let deleted = prune(&ctx.state.db, &ctx.state.clock, retention).await?;
            if deleted > 0 {
                tracing::info!(events = deleted, "pruned handled events from the log");
            }
            Ok(())
        })
    })
}
