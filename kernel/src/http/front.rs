//! The middleware of every route in one layer, in this order: request metrics
//! ([`crate::telemetry::record_http`]), security headers ([`super::security::add_headers`])
//! and rate limits ([`crate::ratelimit`]), then the route.
//!
//! The same as the three `from_fn` middlewares (`telemetry::track_http`,
//! `security::headers`, `ratelimit::enforce`) stacked in that order, which is what it
//! replaced, for less: each `from_fn` boxes its future and the rest of the stack below
//! it and clones that stack on every request; here a request costs one boxed future.
//! When the rate limits count in this process (no Redis) the inner service is called
//! at once, so it is not cloned either. It is applied per route (it needs the matched
//! route for the metrics' labels), and by the fast lane ([`super::fast_lane`]) to the one
//! route it answers before routing, with that route's template given.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::app::AppState;

/// Applies [`Front`] to a route.
#[derive(Clone)]
pub struct FrontLayer {
    state: AppState,
    route: Option<&'static str>,
}

impl FrontLayer {
    /// For routes of the router: the metrics name the route the router matched.
    pub fn new(state: AppState) -> FrontLayer {
        FrontLayer { state, route: None }
    }

    /// For a service answering one route outside the router (no `MatchedPath`): the
    /// metrics name `template`.
    pub fn for_route(state: AppState, template: &'static str) -> FrontLayer {
        FrontLayer {
            state,
            route: Some(template),
        }
    }
}

impl<S> Layer<S> for FrontLayer {
    type Service = Front<S>;

    fn layer(&self, inner: S) -> Front<S> {
        Front {
            inner,
            state: self.state.clone(),
            route: self.route,
        }
    }
}

/// Metrics, security headers and rate limits around a route.
#[derive(Clone)]
pub struct Front<S> {
    inner: S,
    state: AppState,
    route: Option<&'static str>,
}

/// What is recorded and added once the route has answered.
struct After {
    started: Instant,
    method: Method,
    route: Route,
    https: bool,
}

/// The route a request is counted under in the metrics.
enum Route {
    /// What the router matched (`None`: no route, the fallback).
    Matched(Option<MatchedPath>),
    Given(&'static str),
}

impl Route {
    fn template(&self) -> Option<&str> {
        match self {
            Route::Matched(matched) => matched.as_ref().map(MatchedPath::as_str),
            Route::Given(template) => Some(template),
        }
    }
}

impl After {
    fn finish(self, mut response: Response) -> Result<Response, Infallible> {
        super::security::add_headers(&mut response, self.https);
        crate::telemetry::record_http(
            &self.method,
            self.route.template(),
            response.status(),
            self.started,
        );
        Ok(response)
    }
}

impl<S> Service<Request> for Front<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let after = After {
            started: Instant::now(),
            method: request.method().clone(),
            route: match self.route {
                Some(template) => Route::Given(template),
                None => Route::Matched(request.extensions().get::<MatchedPath>().cloned()),
            },
            https: super::security::came_over_https(
                request.headers(),
                self.state.config.trust_forwarded_for,
            ),
        };
        let limiter = &self.state.limiter;
        let counted = limiter.counted_as(&self.state.keys, &request);
        match counted {
            // Decided now: the inner service (made ready by `poll_ready`) is called at once.
            None => {
                let answer = self.inner.call(request);
                Box::pin(async move { after.finish(answer.await?) })
            }
            Some((class, client)) if limiter.counts_in_process() => {
                match limiter.hit_now(class, client) {
                    Ok(()) => {
                        let answer = self.inner.call(request);
                        Box::pin(async move { after.finish(answer.await?) })
                    }
                    Err(refused) => {
                        let refused = refused.into_response();
                        Box::pin(async move { after.finish(refused) })
                    }
                }
            }
            // Redis answers first: the ready service goes into the future, a clone stays.
            Some((class, client)) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let state = self.state.clone();
                Box::pin(async move {
                    let response = match state.limiter.hit_client(class, client).await {
                        Ok(()) => inner.call(request).await?,
                        Err(refused) => refused.into_response(),
                    };
                    after.finish(response)
                })
            }
        }
    }
}
