//! Node-local consumers: every node runs each of them over every event, from a position
//! it keeps in memory. One task per consumer, so a slow one holds back only itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::{Bus, NodeLocalConsumer, log};
use crate::store::Db;

const BATCH: i64 = 500;

pub(super) async fn run(
    db: Db,
    bus: Bus,
    consumer: Arc<dyn NodeLocalConsumer>,
    position: Arc<AtomicI64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = consumer.name();
    let mut head_rx = bus.watch_head();
    let mut backoff = Duration::from_millis(50);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let head = *head_rx.borrow_and_update();
        let at = position.load(Ordering::Acquire);
        if at >= head {
            tokio::select! {
                _ = head_rx.changed() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let events = match log::read_after(&db, at, head, BATCH).await {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(consumer = name, error = %err, "reading the event log failed; will retry");
                pause(&mut backoff, &mut shutdown).await;
                continue;
            }
        };
        // Positions have no gaps, so a missing one was pruned before this node read it.
        if events.first().is_none_or(|e| e.position != at + 1) {
            tracing::warn!(
                consumer = name,
                from = at + 1,
                "events this node had not read were pruned; resynchronising"
            );
            match consumer.resync().await {
                Ok(()) => {
                    let resumed = events.first().map_or(head, |e| e.position - 1);
                    position.store(resumed, Ordering::Release);
                }
                Err(err) => {
                    tracing::warn!(consumer = name, error = %format!("{err:#}"), "resync failed; will retry");
                    pause(&mut backoff, &mut shutdown).await;
                }
            }
            continue;
        }
        for event in &events {
            let handled = retry(name, Some(event), &mut backoff, &mut shutdown, || {
                consumer.handle(event)
            });
            if !handled.await {
                return;
            }
        }
        if !retry(name, None, &mut backoff, &mut shutdown, || {
            consumer.end_batch()
        })
        .await
        {
            return;
        }
        if let Some(last) = events.last() {
            position.store(last.position, Ordering::Release);
        }
        metrics::counter!("olivine_bus_events_delivered_total", "consumer" => name)
            .increment(events.len() as u64);
    }
}

/// Runs `step` until it succeeds (answers true), backing off between failures; false
/// when the node stops first.
async fn retry<'a>(
    name: &'static str,
    event: Option<&super::Event>,
    backoff: &mut Duration,
    shutdown: &mut watch::Receiver<bool>,
    step: impl Fn() -> super::ConsumerFuture<'a>,
) -> bool {
    loop {
        match step().await {
            Ok(()) => {
                *backoff = Duration::from_millis(50);
                return true;
            }
            Err(err) => {
                tracing::warn!(
                    consumer = name,
                    event = event.map(|e| e.id),
                    event_type = event.map(|e| e.event_type.as_str()),
                    error = %format!("{err:#}"),
                    "node-local consumer failed; will retry"
                );
                metrics::counter!("olivine_bus_consumer_failures_total", "consumer" => name)
                    .increment(1);
                pause(backoff, shutdown).await;
                if *shutdown.borrow() {
                    return false;
                }
            }
        }
    }
}

async fn pause(backoff: &mut Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = shutdown.changed() => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(10));
}
