//! A client layer that makes every 403 Forbidden from the API server
//! visible: a missing RBAC rule otherwise shows only as a watch that never
//! fills or a reconcile error deep in a log. Each one increments
//! `bellows_api_forbidden_total` and logs `API request forbidden` with the
//! method and path (paths name objects, never credentials).

use super::metrics::Metrics;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
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

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn counts_only_forbidden_responses() {
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
        assert!(
            metrics.encode().contains("bellows_api_forbidden_total 2"),
            "{}",
            metrics.encode()
        );
    }
}
