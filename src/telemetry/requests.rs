//! A client layer that sees every request to the API server: it counts
//! them by verb (`bellows_api_requests_total`, what the operator costs the
//! API server) and makes every 403 Forbidden visible, since a missing RBAC
//! rule otherwise shows only as a watch that never fills or a reconcile
//! error deep in a log: each one increments `bellows_api_forbidden_total`
//! and logs `API request forbidden` with the method and path (paths name
//! objects, never credentials).

use super::metrics::Metrics;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Wraps the client's HTTP service with [`Requests`].
#[derive(Clone)]
pub struct RequestsLayer {
    metrics: Arc<Metrics>,
}

impl RequestsLayer {
    /// Counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RequestsLayer {
    type Service = Requests<S>;

    fn layer(&self, inner: S) -> Requests<S> {
        Requests {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`RequestsLayer`] builds.
#[derive(Clone)]
pub struct Requests<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, Req, Res> Service<Request<Req>> for Requests<S>
where
    S: Service<Request<Req>, Response = Response<Res>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        self.metrics.api_request(verb(&request));
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let response = response.await?;
            if response.status() == StatusCode::FORBIDDEN {
                metrics.forbidden();
                tracing::warn!(%method, %path, "API request forbidden");
            }
            Ok(response)
        })
    }
}

/// The request's verb as a low-cardinality label: `watch` for a watch,
/// else from the method (`get` covers a list).
fn verb<B>(request: &Request<B>) -> &'static str {
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true"));
    match *request.method() {
        Method::GET if watch => "watch",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn counts_every_request_by_verb_and_the_forbidden_ones() {
        let metrics = Arc::new(Metrics::new());
        let answer = |code: u16| {
            RequestsLayer::new(metrics.clone()).layer(tower::service_fn(move |_: Request<()>| {
                let response = Response::builder().status(code).body(()).unwrap();
                async move { Ok::<_, std::convert::Infallible>(response) }
            }))
        };
        for code in [200, 403, 404, 403, 500] {
            let request = Request::get("/apis/apps/v1/replicasets?watch=true")
                .body(())
                .unwrap();
            let response = answer(code).oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), code);
        }
        let patch = Request::patch("/apis/apps/v1/namespaces/a/deployments/b?fieldManager=bellows")
            .body(())
            .unwrap();
        answer(200).oneshot(patch).await.unwrap();
        let list = Request::get("/api/v1/namespaces/a/pods?labelSelector=app%3Dapi&watchCache=x")
            .body(())
            .unwrap();
        answer(200).oneshot(list).await.unwrap();
        let text = metrics.encode();
        for line in [
            "bellows_api_forbidden_total 2",
            "bellows_api_requests_total{verb=\"watch\"} 5",
            "bellows_api_requests_total{verb=\"patch\"} 1",
            "bellows_api_requests_total{verb=\"get\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
