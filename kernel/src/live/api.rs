//! `GET /api/v1/live`: the WebSocket of live updates (docs/LIVE.md).
//!
//! Who connects, decided before the upgrade:
//! - `Authorization: Bearer <access token>`, or `?access_token=` (browsers cannot set
//!   headers on a WebSocket): the customer's updates and public topics. A token that
//!   does not check out is a 401, no upgrade.
//! - the storefront's session cookie (`olv_access`), when neither is given: the same, for
//!   the shop's own pages. A browser sends cookies with a WebSocket another site opens,
//!   so the `Origin` header must name this host (cross-site WebSocket hijacking): else 403.
//! - nothing: public topics only.
//!
//! The token's expiry is read on the kernel's clock at every message, ping and clock
//! move; when it passes, the socket closes with 4001 and the client reconnects with a
//! fresh token (and `last_position`).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Connection, Replay, SubscribeError};
use crate::app::AppState;
use crate::error::Error;
use crate::http::extract::QueryParams;

pub const PATH: &str = "/api/v1/live";
/// How often the server pings an idle socket.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// A client that answers nothing (no pong, no message) for this long is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(75);
/// A send that takes longer than this ends the connection (the client stopped reading).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message a client may send (they are a few dozen bytes).
const MAX_CLIENT_MESSAGE: usize = 4096;
/// The socket's read buffer: small, since clients send little (the default is 128 KiB
/// a connection).
const READ_BUFFER: usize = 4096;

/// The route, beside the JSON API (it is no JSON operation, so it is not in the
/// OpenAPI document: docs/LIVE.md describes it).
pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(live))
}

#[derive(Debug, Deserialize)]
struct LiveQuery {
    /// The customer's access token, for clients that cannot set headers (browsers).
    access_token: Option<String>,
    /// The position of the last message the client got: what it missed comes first.
    last_position: Option<i64>,
}

/// A signed-in customer on the socket, and when their token expires (Unix seconds).
#[derive(Debug, Clone, Copy)]
struct Viewer {
    customer_id: i64,
    expires_at: i64,
}

async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<LiveQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let viewer = match authenticate(&state, &headers, query.access_token.as_deref()).await {
        Ok(viewer) => viewer,
        Err(refused) => return refused,
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return Error::BadRequest {
                message: format!(
                    "this is a WebSocket endpoint (docs/LIVE.md): {}",
                    rejection.body_text()
                ),
                fields: Vec::new(),
            }
            .into_response();
        }
    };
    let last_position = query.last_position.map(|p| p.max(0));
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve(state, socket, viewer, last_position))
}

fn unauthorized() -> Response {
    let mut response = Error::Unauthorized.into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The customer a request authenticates as (`None`: public topics only), or the answer
/// that refuses it.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Option<Viewer>, Response> {
    let token = if headers.contains_key(header::AUTHORIZATION) {
        crate::http::bearer_token(headers).ok_or_else(unauthorized)?
    } else if let Some(token) = query_token.map(str::trim).filter(|t| !t.is_empty()) {
        token
    } else if let Some(token) =
        crate::http::session::request_cookie(headers, crate::http::session::ACCESS_COOKIE)
    {
        if !same_origin(headers) {
            tracing::info!("refused a live connection with the session cookie from another origin");
            return Err(Error::Forbidden(
                "the session cookie is accepted from this shop's own pages only (Origin)"
                    .to_owned(),
            )
            .into_response());
        }
        token
    } else {
        return Ok(None);
    };
    let claims =
        crate::accounts::decode_access_token(&state.keys, token).map_err(|_| unauthorized())?;
    if claims.exp <= state.clock.now().timestamp() {
        return Err(unauthorized());
    }
    match crate::accounts::authenticate(state, token).await {
        Ok(customer) => Ok(Some(Viewer {
            customer_id: customer.customer_id,
            expires_at: claims.exp,
        })),
        Err(Error::Unauthorized) => Err(unauthorized()),
        Err(err) => Err(err.into_response()),
    }
}

/// The request's `Origin` names the host it was sent to. Browsers always send `Origin`
/// with a WebSocket handshake; without one, the cookie is not taken.
fn same_origin(headers: &HeaderMap) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, authority)| authority.trim_end_matches('/'));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            !origin.is_empty() && origin.eq_ignore_ascii_case(host.trim())
        }
        _ => false,
    }
}

fn expired(viewer: Option<&Viewer>, state: &AppState) -> bool {
    viewer.is_some_and(|v| state.clock.now().timestamp() >= v.expires_at)
}

/// Resolves when the viewer's token may have expired: at its expiry, or when the clock
/// moves (tests); never for a public connection.
async fn expiry(viewer: Option<Viewer>, state: &AppState) {
    match viewer.and_then(|v| chrono::DateTime::from_timestamp(v.expires_at, 0)) {
        Some(at) => state.clock.sleep_until(at, Duration::from_secs(3600)).await,
        None => std::future::pending().await,
    }
}

/// Sends a message; false when the socket is gone or the client stopped reading.
async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

async fn send_json(socket: &mut WebSocket, message: &Value) -> bool {
    send(socket, Message::Text(Utf8Bytes::from(message.to_string()))).await
}

/// The position of the live consumer on this node (where a connection made now starts
/// hearing of events, give or take the batch in hand).
fn live_position(state: &AppState) -> i64 {
    state
        .bus
        .local_positions()
        .into_iter()
        .find(|(name, _)| *name == super::CONSUMER_NAME)
        .map_or_else(|| state.bus.local_position(), |(_, at)| at)
}

async fn serve(
    state: AppState,
    mut socket: WebSocket,
    viewer: Option<Viewer>,
    last_position: Option<i64>,
) {
    // Read before registering: every customer event after it is either sent on this
    // socket or still in the log, so it is a safe place to resume from.
    let mut ready_at = live_position(&state);
    let mut connection = state.live.connect(viewer.map(|v| v.customer_id));
    // Customer events up to here were sent from the log: the live copies are skipped.
    let mut sent_upto = i64::MIN;
    if let (Some(viewer), Some(after)) = (viewer, last_position) {
        // Read after registering: whatever the consumer handled before this connection
        // was registered is at or before the node's head, so in the log.
        let upto = state.bus.head();
        let replayed = match super::replay(&state.db, viewer.customer_id, after, upto).await {
            Ok(replay) => replay,
            Err(err) => {
                tracing::warn!(error = %err, "reading missed events for a live connection failed");
                Replay::Resync
            }
        };
        match replayed {
            Replay::Events(events) => {
                for event in &events {
                    if let Some((_, message)) = super::customer_message(event)
                        && !send_json(&mut socket, &message).await
                    {
                        return;
                    }
                }
            }
            Replay::Resync => {
                if !send_json(&mut socket, &json!({ "type": "resync" })).await {
                    return;
                }
            }
        }
        sent_upto = after.max(upto);
        ready_at = sent_upto;
    }
    let ready = json!({ "type": "ready", "position": ready_at, "customer": viewer.is_some() });
    if !send_json(&mut socket, &ready).await {
        return;
    }
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard_at = Instant::now();
    let close = loop {
        if expired(viewer.as_ref(), &state) {
            break Some((super::CLOSE_TOKEN_EXPIRED, "token expired"));
        }
        // Queued messages first: what the hub queued before a client's message is sent
        // before its answer.
        tokio::select! {
            biased;
            push = connection.recv() => match push {
                Some(push) => {
                    if push.position.is_some_and(|p| p <= sent_upto) {
                        continue;
                    }
                    if !send(&mut socket, Message::Text(push.text.clone())).await {
                        break None;
                    }
                }
                None if state.live.is_closing() => {
                    break Some((super::CLOSE_GOING_AWAY, "the server is shutting down"));
                }
                None => break Some((super::CLOSE_TOO_SLOW, "too slow: reconnect with last_position")),
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    heard_at = Instant::now();
                    let answer = answer(&state, &mut connection, text.as_str()).await;
                    if !send_json(&mut socket, &answer).await {
                        break None;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    heard_at = Instant::now();
                    let answer = error("messages are JSON text");
                    if !send_json(&mut socket, &answer).await {
                        break None;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => heard_at = Instant::now(),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
            },
            _ = ping.tick() => {
                if heard_at.elapsed() > SILENCE_LIMIT {
                    break None;
                }
                if !send(&mut socket, Message::Ping(bytes::Bytes::new())).await {
                    break None;
                }
            }
            _ = expiry(viewer, &state) => {}
        }
    };
    drop(connection);
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = send(&mut socket, Message::Close(Some(frame))).await;
    }
}

fn error(message: &str) -> Value {
    json!({ "type": "error", "message": message })
}

/// The answer to a client's message: `{"subscribe": topic}`, `{"unsubscribe": topic}`,
/// or `{"ping": anything}`.
async fn answer(state: &AppState, connection: &mut Connection, text: &str) -> Value {
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
        return error(
            "send a JSON object: {\"subscribe\": \"product:<slug>\"}, {\"unsubscribe\": …} or {\"ping\": …}",
        );
    };
    if let Some(ping) = message.get("ping") {
        return json!({ "type": "pong", "ping": ping });
    }
    if let Some(topic) = message.get("unsubscribe").and_then(Value::as_str) {
        connection.unsubscribe(topic);
        return json!({ "type": "unsubscribed", "topic": topic });
    }
    let Some(topic) = message.get("subscribe").and_then(Value::as_str) else {
        return error("unknown message: send subscribe, unsubscribe or ping");
    };
    let Some(slug) = topic.strip_prefix("product:").filter(|s| is_slug(s)) else {
        return error("topics are product:<slug>");
    };
    let known = match connection.subscribe(topic) {
        Ok(known) => known,
        Err(SubscribeError::TooMany) => {
            return error(&format!(
                "at most {} topics a connection",
                super::MAX_TOPICS
            ));
        }
    };
    let in_stock = match known {
        Some(in_stock) => in_stock,
        None => match super::in_stock(&state.db, &[slug.to_owned()]).await {
            Ok(states) => match states.get(slug) {
                Some(in_stock) => {
                    connection.learn_stock(topic, *in_stock);
                    *in_stock
                }
                None => {
                    connection.unsubscribe(topic);
                    return error(&format!("there is no product `{slug}`"));
                }
            },
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "reading a product's stock for a live topic failed");
                connection.unsubscribe(topic);
                return error("could not read the product now; try again");
            }
        },
    };
    json!({ "type": "subscribed", "topic": topic, "product": slug, "in_stock": in_stock })
}

/// A product slug's shape (see `catalog::model::check_slug`).
fn is_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 100
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_counts_from_this_host_only() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("shop.example"));
        assert!(
            !same_origin(&headers),
            "no Origin: not a browser on our page"
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://shop.example"),
        );
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://shop.example.evil.example"),
        );
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers));
    }
}
