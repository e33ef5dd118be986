//! Compression of answers on the way out, by `Accept-Encoding`: tower-http's compression
//! (brotli or gzip, [`super::caching::compression_layer`]), applied only to the answers
//! it changes.
//!
//! tower-http's layer turns every answer's body into its compressing body, 5.8 KB by
//! value (the brotli encoder's state is inline) even when it passes the bytes through
//! untouched, as it does for most answers: the ones already compressed (the cached
//! product JSON and pages, compressed once), the small ones, the ones to clients that
//! ask for no coding. Moving and boxing that body cost a cached answer more than the
//! rest of its middleware together (docs/PERFORMANCE.md). So this layer lets the route
//! answer first and then decides as tower-http would: an answer tower-http would pass
//! through goes out as it is (with the `Vary: accept-encoding` tower-http would add),
//! and an answer it would compress, or refuse with 406 (no coding the client accepts),
//! is handed to tower-http's own layer, so its bytes and headers are exactly tower-http's.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service, ServiceExt};
use tower_http::compression::Predicate;

use super::caching::{compression_layer, compression_predicate};

/// Applies [`Compress`].
#[derive(Clone, Copy, Default)]
pub struct CompressLayer;

impl<S> Layer<S> for CompressLayer {
    type Service = Compress<S>;

    fn layer(&self, inner: S) -> Compress<S> {
        Compress { inner }
    }
}

/// Compresses the answers of `inner` that tower-http's compression would compress.
#[derive(Clone)]
pub struct Compress<S> {
    inner: S,
}

impl<S, B> Service<Request> for Compress<S>
where
    S: Service<Request, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let coding = negotiate(request.headers());
        // What tower-http reads of the request, should it have to do the work.
        let accepted = match coding {
            Some(Coding::Identity) => Vec::new(),
            _ => request
                .headers()
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .cloned()
                .collect(),
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?.map(Body::new);
            Ok(finish(response, coding, accepted).await)
        })
    }
}

/// `response` as tower-http's compression would answer it to a client whose
/// `Accept-Encoding` was `accepted` (negotiated: `coding`).
async fn finish(
    mut response: Response,
    coding: Option<Coding>,
    accepted: Vec<HeaderValue>,
) -> Response {
    let compressible = |response: &Response| {
        !response.headers().contains_key(header::CONTENT_ENCODING)
            && !response.headers().contains_key(header::CONTENT_RANGE)
            && compression_predicate().should_compress(response)
    };
    match coding {
        // tower-http leaves the body as it is and adds `Vary` when it would have
        // compressed for another client (unless a `Vary` names it already).
        Some(Coding::Identity) => {
            if !varies_on_accept_encoding(response.headers()) && compressible(&response) {
                response
                    .headers_mut()
                    .append(header::VARY, HeaderValue::from_static("accept-encoding"));
            }
            response
        }
        Some(Coding::Gzip | Coding::Brotli) if !compressible(&response) => response,
        // Compressed, or refused with 406: tower-http's own layer does it.
        _ => {
            let mut request = Request::new(Body::empty());
            for value in accepted {
                request.headers_mut().append(header::ACCEPT_ENCODING, value);
            }
            match compression_layer()
                .layer(Answered(Some(response)))
                .oneshot(request)
                .await
            {
                Ok(response) => response.map(Body::new),
                Err(never) => match never {},
            }
        }
    }
}

/// Whether a `Vary` names `accept-encoding` (as tower-http looks for it).
fn varies_on_accept_encoding(headers: &HeaderMap) -> bool {
    headers.get_all(header::VARY).iter().any(|value| {
        value
            .as_bytes()
            .windows(b"accept-encoding".len())
            .any(|window| window.eq_ignore_ascii_case(b"accept-encoding"))
    })
}

/// A service that answers with a response it already holds (once).
struct Answered(Option<Response>);

impl Service<Request> for Answered {
    type Response = Response;
    type Error = Infallible;
    type Future = Ready<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request) -> Self::Future {
        ready(Ok(self.0.take().unwrap_or_else(|| {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        })))
    }
}

/// A coding the compression layer answers in, least preferred first (tower-http's
/// order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Coding {
    Identity,
    Gzip,
    Brotli,
}

/// The coding tower-http 0.7 picks for `Accept-Encoding` with gzip and brotli on (its
/// `preferred_encoding_with_wildcard`), `None` when the client accepts none (406). The
/// test below holds it to tower-http's answers.
fn negotiate(headers: &HeaderMap) -> Option<Coding> {
    if !headers.contains_key(header::ACCEPT_ENCODING) {
        return Some(Coding::Identity);
    }
    let items = || {
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|item| {
                let mut parts = item.splitn(2, ';');
                let name = parts.next().unwrap_or("").trim();
                let q = match parts.next() {
                    Some(q) => qvalue(q.trim())?,
                    None => 1000,
                };
                Some((name, q))
            })
    };
    let explicit = || items().filter_map(|(name, q)| Some((coding(name)?, q)));
    let best = |candidates: &mut dyn Iterator<Item = (Coding, u16)>| {
        candidates
            .filter(|&(_, q)| q > 0)
            .max_by_key(|&(coding, q)| (q, coding))
            .map(|(coding, _)| coding)
    };
    match items().find(|&(name, _)| name == "*") {
        None => best(&mut explicit()).or_else(|| {
            let identity_refused = explicit().any(|(c, q)| c == Coding::Identity && q == 0);
            (!identity_refused).then_some(Coding::Identity)
        }),
        Some((_, wildcard)) => best(
            &mut [Coding::Identity, Coding::Gzip, Coding::Brotli]
                .into_iter()
                .map(|c| {
                    let q = explicit()
                        .find(|&(listed, _)| listed == c)
                        .map_or(wildcard, |(_, q)| q);
                    (c, q)
                }),
        ),
    }
}

fn coding(name: &str) -> Option<Coding> {
    if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
        Some(Coding::Gzip)
    } else if name.eq_ignore_ascii_case("br") {
        Some(Coding::Brotli)
    } else if name.eq_ignore_ascii_case("identity") {
        Some(Coding::Identity)
    } else {
        None
    }
}

/// A q-value (`q=0.5`) in thousandths, as tower-http reads it: `0` or `1`, then at most
/// three decimals, at most 1.
fn qvalue(text: &str) -> Option<u16> {
    let rest = text
        .strip_prefix("q=")
        .or_else(|| text.strip_prefix("Q="))?;
    let mut chars = rest.chars();
    let mut value: u16 = match chars.next() {
        Some('0') => 0,
        Some('1') => 1000,
        _ => return None,
    };
    match chars.next() {
        None => return Some(value),
        Some('.') => {}
        Some(_) => return None,
    }
    let mut factor = 100;
    for c in chars {
        let digit = c.to_digit(10)?;
        if factor < 1 {
            return None;
        }
        value += factor * digit as u16;
        factor /= 10;
    }
    (value <= 1000).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(accept: &[&str]) -> Request {
        let mut request = Request::new(Body::empty());
        for value in accept {
            request.headers_mut().append(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        request
    }

    const ACCEPTS: &[&[&str]] = &[
        &[],
        &[""],
        &["gzip"],
        &["br"],
        &["gzip, deflate, br"],
        &["gzip, deflate, br, zstd"],
        &["GZIP"],
        &["x-gzip"],
        &["identity"],
        &["identity;q=0"],
        &["identity;q=0, gzip"],
        &["identity;q=0, *;q=0"],
        &["*"],
        &["*;q=0"],
        &["*;q=0, gzip"],
        &["*;q=0.5, br;q=0.4"],
        &["*;q=0.5, br;q=0.6"],
        &["*;q=nope, gzip;q=0.1"],
        &["br;q=0, gzip"],
        &["br;q=0.5, gzip;q=0.8"],
        &["br;q=0.8, gzip;q=0.8"],
        &["br;q=1.0, gzip;q=1"],
        &["br;q=1.001, gzip;q=0.001"],
        &["br;q=0.0001, gzip;q=0.5"],
        &["br; q=0.5, gzip ;q=0.4"],
        &["br;Q=0.5, gzip;q=0.4"],
        &["br;level=1"],
        &["br;q=0.5;x=1, gzip;q=0.1"],
        &["gzip;q=0", "br"],
        &["deflate"],
        &["deflate, identity;q=0"],
        &["zstd;q=1, identity;q=0.5"],
        &["gzip, gzip;q=0"],
        &["gzip;q=0, gzip"],
        &["identity;q=0.5, identity;q=0"],
        &["*, identity;q=0"],
        &["*;q=0, identity"],
        &["unknown, *;q=0"],
        &[",,,"],
        &["br;q="],
        &["br;q=.5"],
        &["br;q=0.", "gzip;q=0.1"],
    ];

    /// What tower-http's layer answers to `accept` for a compressible answer: its status
    /// and coding.
    async fn tower_http_answer(accept: &[&str]) -> (StatusCode, Option<String>) {
        let response = Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(vec![b'a'; 4000]))
            .unwrap();
        let answer = compression_layer()
            .layer(Answered(Some(response)))
            .oneshot(request(accept))
            .await
            .unwrap();
        let coding = answer
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_owned());
        (answer.status(), coding)
    }

    #[tokio::test]
    async fn codings_are_negotiated_as_tower_http_does() {
        let mut outcomes = std::collections::HashSet::new();
        for accept in ACCEPTS {
            let (status, coding) = tower_http_answer(accept).await;
            let expected = match (status, coding.as_deref()) {
                (StatusCode::NOT_ACCEPTABLE, _) => None,
                (_, Some("br")) => Some(Coding::Brotli),
                (_, Some("gzip")) => Some(Coding::Gzip),
                (_, None) => Some(Coding::Identity),
                other => panic!("{accept:?}: {other:?}"),
            };
            assert_eq!(negotiate(request(accept).headers()), expected, "{accept:?}");
            outcomes.insert(expected);
        }
        // Every outcome is among the cases: 406, brotli, gzip, identity.
        assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    }

    /// Answers the same status, headers and bytes as tower-http's layer alone.
    #[tokio::test]
    async fn answers_are_tower_http_s() {
        use http_body_util::BodyExt;
        let answers: Vec<fn() -> Response> = vec![
            // Compressible.
            || {
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                    .body(Body::from("<p>hello</p>".repeat(200)))
                    .unwrap()
            },
            // Compressible, with a `Vary` of its own.
            || {
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::VARY, "cookie")
                    .body(Body::from(vec![b' '; 3000]))
                    .unwrap()
            },
            // Small.
            || {
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from("{}"))
                    .unwrap()
            },
            // Already compressed (a cached answer).
            || {
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::CONTENT_ENCODING, "br")
                    .header(header::VARY, "accept-encoding")
                    .body(Body::from(vec![7u8; 2000]))
                    .unwrap()
            },
            // An image.
            || {
                Response::builder()
                    .header(header::CONTENT_TYPE, "image/webp")
                    .body(Body::from(vec![0u8; 5000]))
                    .unwrap()
            },
        ];
        for make in &answers {
            for accept in ACCEPTS {
                let expected = compression_layer()
                    .layer(Answered(Some(make())))
                    .oneshot(request(accept))
                    .await
                    .unwrap();
                let ours = CompressLayer
                    .layer(Answered(Some(make())))
                    .oneshot(request(accept))
                    .await
                    .unwrap();
                assert_eq!(ours.status(), expected.status(), "{accept:?}");
                assert_eq!(ours.headers(), expected.headers(), "{accept:?}");
                let ours = ours.into_body().collect().await.unwrap().to_bytes();
                let expected = expected.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(ours, expected, "{accept:?}");
            }
        }
    }
}
