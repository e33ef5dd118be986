//! The fast lane: `GET /api/v1/products/{slug}`, the cached product JSON that mobile apps
//! and CDNs read most, answered before the router.
//!
//! Through the router a request pays for matching among some 300 routes, for the route
//! parameters and matched path axum keeps in the request, and for two boxed services
//! (the route with its middleware, then the handler) cloned and called in turn: about a
//! tenth of what a cached product read costs (docs/PERFORMANCE.md). The lane runs
//! the same handler code ([`crate::catalog::api::product_answer`]) behind the same
//! middleware ([`super::route_middleware!`]: trace, compression, panics, metrics under the
//! route's template, security headers, rate limits), so the answer and what is counted
//! are the router's (`http_caching::the_fast_lane_answers_product_reads_as_the_router_does`
//! compares the two). Every other request, and the
//! product reads the router would read differently (`HEAD`, a slug with `%` escapes), go
//! to the router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use futures_util::TryFutureExt;
use futures_util::future::Either;
use tower::{Service, ServiceExt};

use super::front::FrontLayer;
use crate::app::AppState;

/// The route the lane answers, as the router names it (in metrics, among others).
pub const PRODUCT_ROUTE: &str = "/api/v1/products/{slug}";

/// The HTTP surface as served: the fast lane, then the router.
#[derive(Clone)]
pub struct App {
    state: AppState,
    router: Router,
}

impl App {
    pub fn new(state: AppState, router: Router) -> App {
        App { state, router }
    }

    /// What `axum::serve` takes, with each connection's peer address in its requests
    /// (the client's identity for rate limits), as `Router`'s method of the same name.
    pub fn into_make_service_with_connect_info<C>(self) -> IntoMakeServiceWithConnectInfo<App, C> {
        axum::ServiceExt::<Request>::into_make_service_with_connect_info(self)
    }
}

/// The product slug of a request the lane answers.
fn product_slug(request: &Request) -> Option<&str> {
    if request.method() != Method::GET {
        return None;
    }
    let slug = request.uri().path().strip_prefix("/api/v1/products/")?;
    // The router's path extractor would decode `%` escapes; `/` is another route.
    let plain = !slug.is_empty() && !slug.contains(['/', '%']);
    plain.then_some(slug)
}

type LaneFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<LaneFuture, <Router as Service<Request>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if product_slug(&request).is_none() {
            return Either::Right(self.router.call(request));
        }
        let state = self.state.clone();
        let front = FrontLayer::for_route(state.clone(), PRODUCT_ROUTE);
        let product = super::route_middleware!(front, state.config.max_body_bytes).service_fn(
            move |request: Request| {
                let state = state.clone();
                async move {
                    let slug = product_slug(&request).unwrap_or_default();
                    let answer =
                        crate::catalog::api::product_answer(&state, slug, request.headers()).await;
                    Ok::<_, Infallible>(answer.into_response())
                }
            },
        );
        Either::Left(Box::pin(
            product
                .oneshot(request)
                .map_ok(|response| response.map(Body::new)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug_of(method: Method, uri: &str) -> Option<String> {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        product_slug(&request).map(str::to_owned)
    }

    #[test]
    fn the_lane_takes_plain_product_reads_only() {
        let lane = |uri| slug_of(Method::GET, uri);
        assert_eq!(
            lane("/api/v1/products/magnesium-glycinate").as_deref(),
            Some("magnesium-glycinate")
        );
        assert_eq!(
            lane("/api/v1/products/zinc?fields=name").as_deref(),
            Some("zinc")
        );
        for routed in [
            "/api/v1/products",
            "/api/v1/products/",
            "/api/v1/products/zinc/reviews",
            "/api/v1/products/zinc/",
            "/api/v1/products/mag%2Dnesium",
            "/api/v1/admin/products/1",
            "/p/zinc",
        ] {
            assert_eq!(lane(routed), None, "{routed}");
        }
        assert_eq!(slug_of(Method::HEAD, "/api/v1/products/zinc"), None);
        assert_eq!(slug_of(Method::POST, "/api/v1/products/zinc"), None);
    }
}
