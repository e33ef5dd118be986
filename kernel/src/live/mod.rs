//! Live updates for web and mobile clients: a WebSocket at `GET /api/v1/live` ([`api`])
//! tells a signed-in customer when their orders, subscriptions or points change, and
//! anyone when a product they watch goes in or out of stock. Messages are hints: clients
//! re-read what changed through the REST API. docs/LIVE.md describes the protocol.
//!
//! Every node serves live connections for any customer. Its [`LiveConsumer`], a
//! node-local consumer of the bus, sees every event and fans each out to the sockets of
//! this node through the [`LiveHub`]: per customer, and per public topic
//! (`product:<slug>`). Each connection has a small bounded queue; the consumer only ever
//! `try_send`s into it, so a slow client never holds up the consumer (or anyone else):
//! a connection whose queue is full is cut off from the hub, its socket is closed with
//! [`CLOSE_TOO_SLOW`], and the client resumes from the last position it saw.
//!
//! A reconnecting customer gives `last_position`: what they missed is read back from
//! the event log ([`replay`]), bounded; beyond the bound, or before the log's retention,
//! they are told to re-read everything (`{"type": "resync"}`).

pub mod api;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::mpsc;

use crate::bus::{ConsumerFuture, Event, NodeLocalConsumer};
use crate::store::Db;

/// The node-local consumer's name (its position is in `/metrics` and the bus API).
pub const CONSUMER_NAME: &str = "live";
/// Messages a connection may have waiting before it counts as too slow.
pub const QUEUE: usize = 32;
/// Public topics one connection may watch.
pub const MAX_TOPICS: usize = 50;
/// Missed events a reconnecting customer is sent at most; more is a resync.
pub const REPLAY_MAX: usize = 500;
/// Log positions a resume may scan for the customer's events; a longer absence is a
/// resync (it bounds the database work of one reconnect).
pub const REPLAY_SCAN_MAX: i64 = 100_000;

/// Close codes (4000–4999 are the application's).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// The client did not read its messages fast enough: reconnect with `last_position`.
pub const CLOSE_TOO_SLOW: u16 = 4002;
/// The node is shutting down: reconnect (to another node) with `last_position`.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// The order status events a customer is told of.
pub const ORDER_EVENTS: [&str; 6] = [
    "order.placed",
    "order.paid",
    "order.fulfilled",
    "order.delivered",
    "order.cancelled",
    "order.refunded",
];

/// A message on its way to sockets, serialised once for all of them.
#[derive(Debug)]
pub struct Outgoing {
    /// The event's log position, for a customer's event (resuming skips what it sent).
    pub position: Option<i64>,
    pub text: Utf8Bytes,
}

/// One pointer per queued message: an idle connection's queue stays small.
pub type Push = Arc<Outgoing>;

impl Outgoing {
    pub fn new(position: Option<i64>, message: &Value) -> Push {
        Arc::new(Outgoing {
            position,
            text: Utf8Bytes::from(message.to_string()),
        })
    }
}

/// Whose an event is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Customer(i64),
    /// An order event without `customer` in its payload: its order says.
    Order(String),
}

/// The message a customer's sockets get for `event`, and whose it is; `None` for events
/// no customer is told of (a guest's order, anything but status, subscription and
/// points changes).
pub fn customer_message(event: &Event) -> Option<(Audience, Value)> {
    let kind = event.event_type.as_str();
    let payload = &event.payload;
    let text = |key: &str| {
        payload
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or(&event.aggregate_id)
            .to_owned()
    };
    let mut message = json!({ "id": event.id, "position": event.position, "type": kind });
    if ORDER_EVENTS.contains(&kind) {
        let number = text("number");
        let status = match kind {
            "order.placed" => Some("pending"),
            // A partial refund leaves the status as it was.
            "order.refunded" if payload.get("full").and_then(Value::as_bool) == Some(false) => None,
            _ => payload
                .get("to")
                .and_then(Value::as_str)
                .or_else(|| kind.strip_prefix("order.")),
        };
        message["order"] = json!(number);
        if let Some(status) = status {
            message["status"] = json!(status);
        }
        let audience = match payload.get("customer") {
            Some(Value::Null) => return None,
            Some(customer) => Audience::Customer(customer.as_i64()?),
            None => Audience::Order(number),
        };
        return Some((audience, message));
    }
    let customer = payload.get("customer").and_then(Value::as_i64)?;
    if kind.starts_with("subscription.") {
        message["subscription"] = json!(text("number"));
        if let Some(status) = payload.get("status").and_then(Value::as_str) {
            message["status"] = json!(status);
        }
    } else if kind.starts_with("loyalty.") {
        // Points changes (`loyalty.points_earned` when a rule credits points): recorded
        // on the aggregate `customer` (their id), naming `customer`; `points` is what
        // changed, `balance` the new balance when the event says.
        for key in ["points", "balance"] {
            if let Some(value) = payload.get(key).and_then(Value::as_i64) {
                message[key] = json!(value);
            }
        }
    } else {
        return None;
    }
    Some((Audience::Customer(customer), message))
}

/// The message of a product's stock state.
pub fn stock_message(slug: &str, in_stock: bool) -> Value {
    json!({ "type": "stock", "product": slug, "in_stock": in_stock })
}

/// The topic of a product's stock state.
pub fn product_topic(slug: &str) -> String {
    format!("product:{slug}")
}

// ---- the hub ------------------------------------------------------------------------

/// This node's live connections: who listens to what.
pub struct LiveHub {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    closing: AtomicBool,
}

#[derive(Default)]
struct Registry {
    /// The only sender of each connection's queue: removing it ends the connection
    /// (after what is queued).
    senders: HashMap<u64, mpsc::Sender<Push>>,
    customers: HashMap<i64, Vec<u64>>,
    topics: HashMap<String, Topic>,
}

#[derive(Default)]
struct Topic {
    connections: Vec<u64>,
    /// The product's stock state as last told (unknown until someone asked).
    in_stock: Option<bool>,
}

impl Registry {
    /// Queues `push` for each connection; cuts off those whose queue is full.
    fn deliver(&mut self, ids: &[u64], push: &Push) -> usize {
        let mut slow = Vec::new();
        let mut sent = 0;
        for id in ids {
            let Some(sender) = self.senders.get(id) else {
                continue;
            };
            match sender.try_send(push.clone()) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => slow.push(*id),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        for id in slow {
            self.senders.remove(&id);
            metrics::counter!("olivine_live_slow_disconnects_total").increment(1);
        }
        metrics::counter!("olivine_live_messages_total").increment(sent as u64);
        sent
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        LiveHub::new()
    }
}

impl LiveHub {
    pub fn new() -> LiveHub {
        LiveHub {
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Nothing under the lock can panic half-way through a change that matters.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection (of `customer`, or public only).
    pub fn connect(self: &Arc<Self>, customer: Option<i64>) -> Connection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(QUEUE);
        let mut registry = self.registry();
        if !self.closing.load(Ordering::Acquire) {
            registry.senders.insert(id, sender);
        }
        if let Some(customer) = customer {
            registry.customers.entry(customer).or_default().push(id);
        }
        drop(registry);
        metrics::gauge!("olivine_live_connections").increment(1.0);
        Connection {
            hub: self.clone(),
            id,
            customer,
            topics: Vec::new(),
            receiver,
        }
    }

    /// Connections open on this node.
    pub fn connections(&self) -> usize {
        self.registry().senders.len()
    }

    pub fn has_customers(&self) -> bool {
        !self.registry().customers.is_empty()
    }

    pub fn has_topic(&self, topic: &str) -> bool {
        self.registry().topics.contains_key(topic)
    }

    /// Queues a message for every connection of `customer`; answers how many took it.
    pub fn send_to_customer(&self, customer: i64, push: &Push) -> usize {
        let mut registry = self.registry();
        let Some(ids) = registry.customers.get(&customer).cloned() else {
            return 0;
        };
        registry.deliver(&ids, push)
    }

    /// The products someone watches.
    pub fn watched_products(&self) -> Vec<String> {
        self.registry()
            .topics
            .keys()
            .filter_map(|t| t.strip_prefix("product:"))
            .map(str::to_owned)
            .collect()
    }

    /// Records a product's stock state; its watchers are told when it changed (or was
    /// not known).
    pub fn update_stock(&self, slug: &str, in_stock: bool) -> usize {
        let mut registry = self.registry();
        let Some(topic) = registry.topics.get_mut(&product_topic(slug)) else {
            return 0;
        };
        if topic.in_stock == Some(in_stock) {
            return 0;
        }
        topic.in_stock = Some(in_stock);
        let ids = topic.connections.clone();
        registry.deliver(&ids, &Outgoing::new(None, &stock_message(slug, in_stock)))
    }

    /// Tells every connection to re-read everything (this node missed events), and
    /// forgets the stock states it knew.
    pub fn resync(&self) {
        let mut registry = self.registry();
        for topic in registry.topics.values_mut() {
            topic.in_stock = None;
        }
        let ids: Vec<u64> = registry.senders.keys().copied().collect();
        registry.deliver(&ids, &Outgoing::new(None, &json!({ "type": "resync" })));
    }

    /// Ends every connection (the node stops): each socket closes with
    /// [`CLOSE_GOING_AWAY`] once its queue is sent.
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::Release);
        self.registry().senders.clear();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

/// A registered connection; dropping it unregisters it.
pub struct Connection {
    hub: Arc<LiveHub>,
    id: u64,
    customer: Option<i64>,
    topics: Vec<String>,
    receiver: mpsc::Receiver<Push>,
}

/// Why a subscription was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeError {
    TooMany,
}

impl Connection {
    pub fn customer(&self) -> Option<i64> {
        self.customer
    }

    /// The next message; `None` when the hub cut the connection off (too slow, or the
    /// node stops: [`LiveHub::is_closing`]).
    pub async fn recv(&mut self) -> Option<Push> {
        self.receiver.recv().await
    }

    /// Watches `topic`; answers the product's stock state when the hub knows it.
    pub fn subscribe(&mut self, topic: &str) -> Result<Option<bool>, SubscribeError> {
        let mut registry = self.hub.registry();
        if !self.topics.iter().any(|t| t == topic) {
            if self.topics.len() >= MAX_TOPICS {
                return Err(SubscribeError::TooMany);
            }
            self.topics.push(topic.to_owned());
            registry
                .topics
                .entry(topic.to_owned())
                .or_default()
                .connections
                .push(self.id);
        }
        Ok(registry.topics.get(topic).and_then(|t| t.in_stock))
    }

    /// Records the state read for a topic nobody knew the state of.
    pub fn learn_stock(&self, topic: &str, in_stock: bool) {
        if let Some(topic) = self.hub.registry().topics.get_mut(topic) {
            topic.in_stock.get_or_insert(in_stock);
        }
    }

    /// Stops watching `topic`; false when it was not watched.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let Some(at) = self.topics.iter().position(|t| t == topic) else {
            return false;
        };
        self.topics.swap_remove(at);
        remove_from_topic(&mut self.hub.registry(), topic, self.id);
        true
    }
}

fn remove_from_topic(registry: &mut Registry, topic: &str, id: u64) {
    if let Some(entry) = registry.topics.get_mut(topic) {
        entry.connections.retain(|c| *c != id);
        if entry.connections.is_empty() {
            registry.topics.remove(topic);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut registry = self.hub.registry();
        registry.senders.remove(&self.id);
        if let Some(customer) = self.customer
            && let Some(ids) = registry.customers.get_mut(&customer)
        {
            ids.retain(|c| *c != self.id);
            if ids.is_empty() {
                registry.customers.remove(&customer);
            }
        }
        for topic in &self.topics {
            remove_from_topic(&mut registry, topic, self.id);
        }
        drop(registry);
        metrics::gauge!("olivine_live_connections").decrement(1.0);
    }
}

// ---- the consumer -------------------------------------------------------------------

/// Fans the bus's events out to this node's live connections.
pub struct LiveConsumer {
    hub: Arc<LiveHub>,
    db: Db,
    /// Order number → customer (`None`: a guest's), for events that do not say.
    owners: moka::future::Cache<String, Option<i64>>,
    stock: Mutex<PendingStock>,
}

#[derive(Default)]
struct PendingStock {
    slugs: BTreeSet<String>,
    /// Every watched product (the shelf-life settings changed).
    all: bool,
}

impl LiveConsumer {
    /// `db`: a pool for the consumer's few reads (an order's customer, stock states).
    pub fn new(hub: Arc<LiveHub>, db: Db) -> LiveConsumer {
        LiveConsumer {
            hub,
            db,
            owners: moka::future::Cache::new(10_000),
            stock: Mutex::new(PendingStock::default()),
        }
    }

    fn stock(&self) -> MutexGuard<'_, PendingStock> {
        self.stock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn owner_of(&self, number: &str) -> anyhow::Result<Option<i64>> {
        if let Some(owner) = self.owners.get(number).await {
            return Ok(owner);
        }
        let owner: Option<i64> = sqlx::query("SELECT customer_id FROM orders WHERE number = $1")
            .bind(number)
            .fetch_optional(&self.db.pool)
            .await?
            .map(|row| row.try_get::<Option<i64>, _>(0))
            .transpose()?
            .flatten();
        self.owners.insert(number.to_owned(), owner).await;
        Ok(owner)
    }
}

impl NodeLocalConsumer for LiveConsumer {
    fn name(&self) -> &'static str {
        CONSUMER_NAME
    }

    fn handle<'a>(&'a self, event: &'a Event) -> ConsumerFuture<'a> {
        Box::pin(async move {
            if let Some((audience, message)) = customer_message(event)
                && self.hub.has_customers()
            {
                let customer = match audience {
                    Audience::Customer(id) => Some(id),
                    Audience::Order(number) => self.owner_of(&number).await?,
                };
                if let Some(customer) = customer {
                    self.hub
                        .send_to_customer(customer, &Outgoing::new(Some(event.position), &message));
                }
            }
            if event.event_type == "settings.updated" {
                self.stock().all = true;
            } else if let Some(products) = event.payload.get("products").and_then(Value::as_array) {
                for slug in products.iter().filter_map(Value::as_str) {
                    if self.hub.has_topic(&product_topic(slug)) {
                        self.stock().slugs.insert(slug.to_owned());
                    }
                }
            }
            Ok(())
        })
    }

    fn end_batch(&self) -> ConsumerFuture<'_> {
        Box::pin(async move {
            let slugs: Vec<String> = {
                let pending = self.stock();
                if pending.all {
                    self.hub.watched_products()
                } else {
                    pending.slugs.iter().cloned().collect()
                }
            };
            if !slugs.is_empty() {
                let states = in_stock(&self.db, &slugs).await?;
                for slug in &slugs {
                    // A product gone (or no longer active) is not in stock.
                    self.hub
                        .update_stock(slug, states.get(slug).copied().unwrap_or(false));
                }
            }
            // Only now: a failure keeps them for the retry.
            *self.stock() = PendingStock::default();
            Ok(())
        })
    }

    fn resync(&self) -> ConsumerFuture<'_> {
        Box::pin(async move {
            self.hub.resync();
            Ok(())
        })
    }
}

/// Whether each active product of `slugs` can be sold now (some variant has sellable
/// stock); products that are not active or do not exist are left out.
pub async fn in_stock(db: &Db, slugs: &[String]) -> anyhow::Result<HashMap<String, bool>> {
    let mut states = HashMap::new();
    if slugs.is_empty() {
        return Ok(states);
    }
    let mut conn = db.pool.acquire().await?;
    let settings = crate::inventory::settings::load(&mut conn)
        .await
        .map_err(|e| anyhow::anyhow!("reading the store settings: {}", e.body().message))?;
    for chunk in slugs.chunks(200) {
        let sql = format!(
            "SELECT p.slug, v.id FROM products p LEFT JOIN variants v ON v.product_id = p.id
             WHERE p.status = 'active' AND p.slug IN ({})",
            crate::inventory::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for slug in chunk {
            query = query.bind(slug);
        }
        let mut variants: HashMap<String, Vec<i64>> = HashMap::new();
        for row in query.fetch_all(&mut *conn).await? {
            let entry = variants.entry(row.try_get(0)?).or_default();
            if let Some(id) = row.try_get::<Option<i64>, _>(1)? {
                entry.push(id);
            }
        }
        let ids: Vec<i64> = variants.values().flatten().copied().collect();
        let availability = crate::inventory::availability(&mut conn, &ids, &settings)
            .await
            .map_err(|e| anyhow::anyhow!("reading stock: {}", e.body().message))?;
        for (slug, ids) in variants {
            let sellable = ids.iter().any(|id| {
                availability
                    .get(id)
                    .is_some_and(|a| a.sellable_quantity > 0)
            });
            states.insert(slug, sellable);
        }
    }
    Ok(states)
}

// ---- resuming -----------------------------------------------------------------------

/// What a reconnecting customer missed.
#[derive(Debug)]
pub enum Replay {
    /// Their events after the position they gave, in log order.
    Events(Vec<Event>),
    /// Too much, or gone from the log: re-read everything.
    Resync,
}

/// The events of `customer` after position `after` up to `upto`, read from the log.
pub async fn replay(db: &Db, customer: i64, after: i64, upto: i64) -> Result<Replay, sqlx::Error> {
    if upto <= after {
        return Ok(Replay::Events(Vec::new()));
    }
    if upto - after > REPLAY_SCAN_MAX {
        return Ok(Replay::Resync);
    }
    let rows = sqlx::query(
        "SELECT e.id, e.position, e.aggregate_type, e.aggregate_id, e.event_type, e.payload,
                e.created_at
         FROM outbox e
         WHERE e.position > $1 AND e.position <= $2 AND (
             (e.aggregate_type = 'order'
              AND e.aggregate_id IN (SELECT number FROM orders WHERE customer_id = $3))
          OR (e.aggregate_type = 'subscription'
              AND e.aggregate_id IN (SELECT number FROM subscriptions WHERE customer_id = $4))
          OR (e.aggregate_type = 'customer' AND e.aggregate_id = $5
              AND e.event_type LIKE 'loyalty.%'))
         ORDER BY e.position
         LIMIT $6",
    )
    .bind(after)
    .bind(upto)
    .bind(customer)
    .bind(customer)
    .bind(customer.to_string())
    .bind(REPLAY_MAX as i64 * 2)
    .fetch_all(&db.pool)
    .await?;
    // Read after the events: when nothing after `after` was pruned then, the read saw
    // every one of them.
    if crate::bus::log::oldest_position(db).await? > after + 1 {
        return Ok(Replay::Resync);
    }
    let mut events = Vec::new();
    for row in &rows {
        let event = crate::bus::log::event_from_row(row)?;
        // Order events other than status changes, and guests' events, are left out.
        if customer_message(&event).is_some() {
            events.push(event);
        }
    }
    if events.len() > REPLAY_MAX || rows.len() >= REPLAY_MAX * 2 {
        return Ok(Replay::Resync);
    }
    Ok(Replay::Events(events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, aggregate_id: &str, payload: Value) -> Event {
        Event {
            id: 7,
            position: 42,
            aggregate_type: kind.split('.').next().unwrap_or("").to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            event_type: kind.to_owned(),
            payload,
            created_at: String::new(),
        }
    }

    #[test]
    fn order_events_name_the_order_and_its_status() {
        let (audience, message) = customer_message(&event(
            "order.fulfilled",
            "ORD-1",
            json!({"number": "ORD-1", "from": "paid", "to": "fulfilled"}),
        ))
        .unwrap();
        assert_eq!(audience, Audience::Order("ORD-1".to_owned()));
        assert_eq!(
            message,
            json!({"id": 7, "position": 42, "type": "order.fulfilled", "order": "ORD-1", "status": "fulfilled"})
        );
        let (audience, message) = customer_message(&event(
            "order.placed",
            "ORD-2",
            json!({"number": "ORD-2", "customer": 5}),
        ))
        .unwrap();
        assert_eq!(audience, Audience::Customer(5));
        assert_eq!(message["status"], "pending");
        // A guest's order: nobody to tell.
        assert!(
            customer_message(&event(
                "order.paid",
                "ORD-3",
                json!({"number": "ORD-3", "customer": null})
            ))
            .is_none()
        );
        // A partial refund leaves the status alone.
        let (_, message) = customer_message(&event(
            "order.refunded",
            "ORD-4",
            json!({"number": "ORD-4", "full": false, "customer": 5}),
        ))
        .unwrap();
        assert!(message.get("status").is_none(), "{message}");
    }

    #[test]
    fn subscription_and_points_events_go_to_their_customer_only() {
        let (audience, message) = customer_message(&event(
            "subscription.paused",
            "SUB-1",
            json!({"number": "SUB-1", "customer": 9}),
        ))
        .unwrap();
        assert_eq!(audience, Audience::Customer(9));
        assert_eq!(message["subscription"], "SUB-1");
        let (audience, message) = customer_message(&event(
            "loyalty.points_earned",
            "9",
            json!({"customer": 9, "points": 120, "reason": "order ORD-1"}),
        ))
        .unwrap();
        assert_eq!(audience, Audience::Customer(9));
        assert_eq!(message["points"], 120);
        assert!(
            customer_message(&event("stock.changed", "3", json!({"products": ["x"]}))).is_none()
        );
        assert!(
            customer_message(&event("customer.birthday", "9", json!({"customer": 9}))).is_none()
        );
    }

    #[tokio::test]
    async fn a_full_queue_cuts_the_connection_off_and_others_go_on() {
        let hub = Arc::new(LiveHub::new());
        let mut slow = hub.connect(Some(1));
        let mut quick = hub.connect(Some(1));
        let other = hub.connect(Some(2));
        for n in 0..QUEUE as i64 {
            let push = Outgoing::new(Some(n), &json!({"n": n}));
            assert_eq!(hub.send_to_customer(1, &push), 2);
            assert!(quick.recv().await.is_some());
        }
        // The slow one's queue is full: the next message cuts it off, not the others.
        assert_eq!(
            hub.send_to_customer(1, &Outgoing::new(Some(99), &json!({}))),
            1
        );
        assert_eq!(quick.recv().await.unwrap().position, Some(99));
        for _ in 0..QUEUE {
            assert!(slow.recv().await.is_some());
        }
        assert!(
            slow.recv().await.is_none(),
            "cut off once its queue is read"
        );
        assert_eq!(hub.connections(), 2);
        drop(other);
        assert!(!hub.registry().customers.contains_key(&2));
        drop(slow);
        drop(quick);
        assert!(!hub.has_customers());
    }

    #[tokio::test]
    async fn stock_watchers_hear_of_changes_only() {
        let hub = Arc::new(LiveHub::new());
        let mut watcher = hub.connect(None);
        assert_eq!(watcher.subscribe("product:mag"), Ok(None));
        watcher.learn_stock("product:mag", false);
        assert_eq!(hub.update_stock("mag", false), 0);
        assert_eq!(hub.update_stock("mag", true), 1);
        let push = watcher.recv().await.unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&push.text).unwrap(),
            json!({"type": "stock", "product": "mag", "in_stock": true})
        );
        assert!(watcher.unsubscribe("product:mag"));
        assert!(!hub.has_topic("product:mag"));
        for n in 0..MAX_TOPICS {
            watcher.subscribe(&format!("product:p{n}")).unwrap();
        }
        assert_eq!(
            watcher.subscribe("product:one-more"),
            Err(SubscribeError::TooMany)
        );
        drop(watcher);
        assert!(hub.watched_products().is_empty());
    }
}
