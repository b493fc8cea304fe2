//! The operator process: probes and metrics over HTTP, optional leader
//! election, and the controller, stopped by SIGINT/SIGTERM.

pub mod api_client;
pub mod leader;

use crate::controller::{Scope, access};
use crate::telemetry::http::{self, Probe};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::requests::RequestsLayer;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::{Api, Client, Config};
use leader::{Elector, LeaseConfig, LeaseLost};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How `bellows run` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub metrics_addr: SocketAddr,
    /// What the controller reconciles, and where it keeps its records.
    pub scope: Scope,
    /// Take part in leader election on this Lease before reconciling.
    pub leader_election: Option<Election>,
}

/// Where the Lease lives and who this replica is.
#[derive(Clone, Debug)]
pub struct Election {
    /// Namespace of the Lease.
    pub namespace: String,
    /// The Lease and this replica's identity in it.
    pub lease: LeaseConfig,
}

/// Why the operator stopped other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("no Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("metrics endpoint: {0}")]
    Http(#[from] std::io::Error),
    #[error("stopped leading: {0}")]
    LeaseLost(#[from] LeaseLost),
}

type Signal = Shared<BoxFuture<'static, ()>>;

/// Runs until SIGINT/SIGTERM (or, when leading, until the Lease is lost).
pub async fn run(options: Options) -> Result<(), OperatorError> {
    let metrics = Arc::new(Metrics::new());
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    let requests = RequestsLayer::new(metrics.clone());
    // Leader election renews its Lease over a connection of its own: one
    // stalled by the watches' traffic (or silently dead) must not cost the
    // Lease while the API server itself is healthy.
    let election_client = api_client::build(config.clone(), requests.clone())?;
    let client = api_client::build(config, requests)?;
    let probe = Probe::new(metrics.clone());
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(http::serve(options.metrics_addr, probe.clone(), async {
        let _ = http_stopped.await;
    }));
    probe.lacking(&missing_permissions(&client, &options).await);
    let signal = signal().boxed().shared();
    let scope = &options.scope;
    let work = async {
        match &options.leader_election {
            None => {
                reconcile(client, scope, metrics, &probe, signal).await;
                Ok(())
            }
            Some(election) => {
                let elector = Elector::new(
                    Api::namespaced(election_client, &election.namespace),
                    election.lease.clone(),
                );
                lead(client, elector, scope, metrics, &probe, signal, election).await
            }
        }
    };
    // The HTTP server ends early only when it failed (its port is taken):
    // without probes and metrics the operator stops rather than run blind.
    let outcome = tokio::select! {
        outcome = work => outcome,
        served = &mut server => {
            served.expect("the HTTP server task does not panic")?;
            return Err(std::io::Error::other("the metrics endpoint stopped").into());
        }
    };
    let _ = stop_http.send(());
    let served = server.await.expect("the HTTP server task does not panic");
    outcome?;
    served?;
    Ok(())
}

/// The permissions of `controller::access` this identity lacks, asked of
/// the API server and logged. A check that cannot be answered is logged and
/// not held against readiness (the calls themselves will tell).
async fn missing_permissions(client: &Client, options: &Options) -> Vec<String> {
    let scope = &options.scope;
    let mut checks: Vec<_> = scope
        .namespaces()
        .into_iter()
        .map(|n| (access::CONTROLLER, n))
        .collect();
    checks.push((access::OPERATOR_NAMESPACE, Some(scope.operator.as_str())));
    if let Some(election) = &options.leader_election {
        checks.push((access::LEADER_ELECTION, Some(election.namespace.as_str())));
    }
    let mut missing = vec![];
    for (list, namespace) in checks {
        match access::missing(client, list, namespace).await {
            Ok(m) => missing.extend(m),
            Err(e) => tracing::warn!(error = %e, "could not check the operator's permissions"),
        }
    }
    if !missing.is_empty() {
        tracing::error!(
            missing = %missing.join(", "),
            "the operator's identity lacks permissions it needs (see the chart's RBAC); not ready"
        );
    }
    missing
}

/// How long running reconciles may take to finish after a signal (the
/// chart's pods get 30 s between SIGTERM and SIGKILL).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs the controller until `signal`, then lets running reconciles finish
/// for up to [`SHUTDOWN_GRACE`]. Before the SchemaRollout cache has synced no
/// reconcile can run, and kube-runtime's graceful shutdown would wait for
/// that sync forever (seen in e2e scenario 11: SIGTERM right after becoming
/// leader), so then the controller is dropped at once.
async fn reconcile(
    client: Client,
    scope: &Scope,
    metrics: Arc<Metrics>,
    probe: &Probe,
    signal: Signal,
) {
    let probe = probe.clone();
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    let synced = move |stores| {
        tracing::info!("watches synced; ready");
        flag.store(true, Ordering::Release);
        probe.synced(stores);
    };
    let controller = crate::controller::run(client, scope, metrics, synced, signal.clone());
    let deadline = async {
        signal.await;
        if ready.load(Ordering::Acquire) {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running; stopping anyway");
        }
    };
    tokio::select! {
        () = controller => {}
        () = deadline => {}
    }
}

/// Waits to become leader, then reconciles while renewing the Lease. On a
/// signal the controller finishes its running reconciles and the Lease is
/// released, so a standby takes over at once. On losing the Lease it starts
/// no reconcile and lets the running ones finish, for up to
/// [`SHUTDOWN_GRACE`] as on a signal, then stops: an inline-SQL phase cut
/// mid-way on MySQL could not be told applied or not. Meanwhile another
/// replica may lead; the database lock (the new leader sees the phase
/// running under it), ledger claims and the sealed deterministic Job names
/// keep the two from running a phase twice.
async fn lead(
    client: Client,
    mut elector: Elector,
    scope: &Scope,
    metrics: Arc<Metrics>,
    probe: &Probe,
    signal: Signal,
    election: &Election,
) -> Result<(), OperatorError> {
    probe.standby();
    tracing::info!(lease = %election.lease.name, identity = %election.lease.identity, "waiting to become leader");
    tokio::select! {
        () = signal.clone() => return Ok(()),
        () = elector.acquire() => {}
    }
    let (lose, lost_lead) = tokio::sync::oneshot::channel::<()>();
    let stop = futures::future::select(signal, lost_lead)
        .map(drop)
        .boxed()
        .shared();
    let controller = reconcile(client, scope, metrics, probe, stop);
    tokio::pin!(controller);
    let lost = tokio::select! {
        () = &mut controller => None,
        lost = elector.keep() => Some(lost),
    };
    match lost {
        None => {
            elector.release().await;
            Ok(())
        }
        Some(lost) => {
            tracing::error!(error = %lost, grace = ?SHUTDOWN_GRACE, "lost the lease; finishing running reconciles, starting none");
            let _ = lose.send(());
            controller.await;
            Err(lost.into())
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM. A second one exits at once,
/// without waiting for running reconciles (a reconcile stuck on a database
/// would otherwise hold the process until SIGKILL).
async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down; a second signal exits at once");
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("second signal: exiting without waiting for reconciles");
        std::process::exit(1);
    });
}
