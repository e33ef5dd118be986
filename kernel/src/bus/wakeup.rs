//! Cross-node wake-ups: "look at the log now" and "look at the jobs now". Through Redis
//! pub/sub when `REDIS_URL` is set, else PostgreSQL `LISTEN/NOTIFY` on PostgreSQL, else
//! none (one node). A message carries only its topic: the log and the job table are the
//! truth, and every node polls them anyway, so a lost wake-up costs latency, not events.
//! While the transport is down `olivine_bus_wakeup_up` is 0 and the log says so.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::Bus;
use crate::store::Db;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Bus,
    Jobs,
}

impl Topic {
    fn as_str(self) -> &'static str {
        match self {
            Topic::Bus => "bus",
            Topic::Jobs => "jobs",
        }
    }
}

enum Transport {
    None,
    Redis {
        client: redis::Client,
        publisher: redis::aio::ConnectionManager,
    },
    Postgres {
        url: String,
        db: Db,
    },
}

/// The wake-up channel of one store (its name includes the store's id, so stores that
/// share a Redis or a PostgreSQL server do not wake each other).
pub struct Wakeups {
    transport: Transport,
    channel: String,
}

impl Wakeups {
    /// No other nodes to wake (tests, tools).
    pub fn none() -> Wakeups {
        Wakeups {
            transport: Transport::None,
            channel: String::new(),
        }
    }

    /// Redis when `redis_url` is set; else PostgreSQL when `db` is; else none.
    pub async fn connect(
        redis_url: Option<&str>,
        database_url: &str,
        db: &Db,
        store_id: &str,
    ) -> anyhow::Result<Wakeups> {
        let transport = if let Some(url) = redis_url.filter(|u| !u.trim().is_empty()) {
            let client = redis::Client::open(url)
                .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(1);
            let publisher =
                redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(|e| anyhow::anyhow!("setting up Redis wake-ups: {e}"))?;
            Transport::Redis { client, publisher }
        } else if db.backend == crate::store::Backend::Postgres {
            Transport::Postgres {
                url: database_url.to_owned(),
                db: db.clone(),
            }
        } else {
            Transport::None
        };
        let channel = match &transport {
            Transport::Redis { .. } => format!("olivine:{store_id}:wake"),
            _ => format!("olivine_{store_id}"),
        };
        let name = match &transport {
            Transport::None => "none",
            Transport::Redis { .. } => "redis",
            Transport::Postgres { .. } => "postgres",
        };
        metrics::gauge!("olivine_bus_wakeup_transport", "transport" => name).set(1.0);
        Ok(Wakeups { transport, channel })
    }

    /// Tells every node (this one too) to look at `topic` now. Never fails the caller:
    /// a wake-up that cannot be sent is logged and counted; polling covers it.
    pub async fn publish(&self, topic: Topic) {
        let sent = match &self.transport {
            Transport::None => return,
            Transport::Redis { publisher, .. } => {
                let mut publisher = publisher.clone();
                let mut command = redis::cmd("PUBLISH");
                command.arg(&self.channel).arg(topic.as_str());
                let publish = command.query_async::<i64>(&mut publisher);
                match tokio::time::timeout(Duration::from_secs(2), publish).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            }
            Transport::Postgres { db, .. } => sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.channel)
                .bind(topic.as_str())
                .execute(&db.pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if let Err(error) = sent {
            metrics::counter!("olivine_bus_wakeup_errors_total").increment(1);
            tracing::debug!(error, "could not send a cross-node wake-up");
        }
    }
}

/// Listens for wake-ups until shutdown, reconnecting with backoff; each one wakes this
/// node's sequencer (which reads the head) or its job workers.
pub(crate) async fn listen(
    wakeups: std::sync::Arc<Wakeups>,
    bus: Bus,
    mut shutdown: watch::Receiver<bool>,
) {
    if matches!(wakeups.transport, Transport::None) {
        return;
    }
    let mut backoff = Duration::from_millis(250);
    let mut was_down = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let session = async {
            match &wakeups.transport {
                Transport::None => Ok(()),
                Transport::Redis { client, .. } => {
                    let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
                    pubsub
                        .subscribe(&wakeups.channel)
                        .await
                        .map_err(|e| e.to_string())?;
                    connected(&mut was_down, &mut backoff);
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let topic: String = message.get_payload().unwrap_or_default();
                        wake(&bus, &topic);
                    }
                    Err("the Redis subscription ended".to_owned())
                }
                Transport::Postgres { url, .. } => {
                    let mut listener = sqlx::postgres::PgListener::connect(url)
                        .await
                        .map_err(|e| e.to_string())?;
                    listener
                        .listen(&wakeups.channel)
                        .await
                        .map_err(|e| e.to_string())?;
                    connected(&mut was_down, &mut backoff);
                    loop {
                        // `try_recv` reports a lost connection instead of reconnecting
                        // silently, so the gauge stays true.
                        match listener.try_recv().await {
                            Ok(Some(notification)) => wake(&bus, notification.payload()),
                            Ok(None) => return Err("the PostgreSQL connection was lost".to_owned()),
                            Err(err) => return Err(err.to_string()),
                        }
                    }
                }
            }
        };
        let ended = tokio::select! {
            ended = session => ended,
            _ = shutdown.changed() => return,
        };
        metrics::gauge!("olivine_bus_wakeup_up").set(0.0);
        if let Err(error) = ended {
            if !was_down {
                tracing::warn!(
                    error,
                    "cross-node wake-ups are down: nodes see each other's events by polling until they are back"
                );
            }
            was_down = true;
        }
        // Whatever was published while disconnected is lost: look now.
        wake(&bus, "bus");
        wake(&bus, "jobs");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn connected(was_down: &mut bool, backoff: &mut Duration) {
    metrics::gauge!("olivine_bus_wakeup_up").set(1.0);
    if *was_down {
        tracing::info!("cross-node wake-ups are back");
    }
    *was_down = false;
    *backoff = Duration::from_millis(250);
}

fn wake(bus: &Bus, topic: &str) {
    match topic {
        "jobs" => bus.wake_jobs(),
        _ => bus.shared.wake.notify_one(),
    }
}
