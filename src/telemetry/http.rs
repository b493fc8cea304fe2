//! `/metrics`, `/healthz` and `/readyz` on one port.

use super::metrics::Metrics;
use crate::api::SchemaRollout;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::runtime::reflector::Store;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// What the endpoints read.
#[derive(Clone)]
pub struct Probe {
    metrics: Arc<Metrics>,
    /// The controller's caches of SchemaRollouts, one per watched
    /// namespace or one for all (for the phase gauge); a standby replica
    /// has none.
    stores: Arc<OnceLock<Vec<Store<SchemaRollout>>>>,
    ready: Arc<AtomicBool>,
    /// Permissions the operator's identity lacks (never ready while any).
    missing: Arc<OnceLock<String>>,
}

impl Probe {
    /// A probe that reports not ready yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            stores: Arc::default(),
            ready: Arc::default(),
            missing: Arc::default(),
        }
    }

    /// The operator's identity lacks `missing` permissions: not ready,
    /// whatever else happens, and `/readyz` says which.
    pub fn lacking(&self, missing: &[String]) {
        if !missing.is_empty() {
            let _ = self.missing.set(missing.join(", "));
        }
    }

    /// The controller's watches have synced: ready, with the phase gauge
    /// read from `stores`.
    pub fn synced(&self, stores: Vec<Store<SchemaRollout>>) {
        let _ = self.stores.set(stores);
        self.ready.store(true, Ordering::Relaxed);
    }

    /// A standby replica taking part in leader election is ready (it serves
    /// its probes and would take over) without a cache of its own, so that
    /// rolling updates of the operator's Deployment can proceed.
    pub fn standby(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
}

/// The router serving the three endpoints.
pub fn router(probe: Probe) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(probe)
}

async fn metrics(State(p): State<Probe>) -> impl IntoResponse {
    if let Some(stores) = p.stores.get() {
        let rollouts: Vec<_> = stores.iter().flat_map(Store::state).collect();
        p.metrics
            .count_rollouts(rollouts.iter().map(|r| r.as_ref()));
        p.metrics.objectives(rollouts.iter().map(|r| r.as_ref()));
        p.metrics.budgets(rollouts.iter().map(|r| r.as_ref()));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        p.metrics.encode(),
    )
}

async fn readyz(State(p): State<Probe>) -> impl IntoResponse {
    if let Some(missing) = p.missing.get() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("missing permissions: {missing}"),
        )
    } else if p.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "watches not synced".to_owned(),
        )
    }
}

/// Serves the endpoints on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    probe: Probe,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(probe))
        .with_graceful_shutdown(shutdown)
        .await
}
