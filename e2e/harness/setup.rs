//! Bringing everything up: the control plane (or an existing cluster), the
//! CRDs, PostgreSQL, the stand-in kubelet, the chart's identity and the
//! operator; and the watchdog that restarts the operator as a kubelet would.

use super::cluster::{self, Cluster, RbacProbe};
use super::identity::{self, Identity};
use super::kubelet::Kubelet;
use super::operator::Operator;
use super::postgres::Postgres;
use super::{Env, install_crd, repo_path};
use bellows::controller::access;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

impl Env {
    /// Starts everything in `dir`, or uses the cluster of `external` (a
    /// kubeconfig) without a stand-in kubelet.
    pub async fn up(dir: &Path, external: Option<PathBuf>) -> Arc<Env> {
        let cluster = match &external {
            Some(kubeconfig) => Cluster::existing(kubeconfig.clone()).await,
            None => Cluster::start(&cluster::prepare(), dir).await,
        };
        install_crds(&cluster).await;
        // Against an existing cluster, pods reach the database at this host.
        let db_host = external.as_ref().map(|_| {
            std::env::var("BELLOWS_E2E_DB_HOST").expect(
                "BELLOWS_E2E_DB_HOST: an address of this machine the cluster's pods can reach",
            )
        });
        let pg = Postgres::start(dir, db_host).await;
        let kubelet = match external {
            Some(_) => None,
            None => Some(Kubelet::start(cluster.client.clone(), dir.join("pods")).await),
        };
        let identity = Identity::install(&cluster.client, &cluster.kubeconfig, dir).await;
        // A restarted kube-apiserver refuses the chart identity until its
        // RBAC caches sync: every permission the chart grants (cluster-wide,
        // and leader election in the release namespace).
        cluster.probe_rbac(RbacProbe {
            client: cluster::client_for(&identity.kubeconfig).await,
            grants: vec![
                (access::CONTROLLER, None),
                (
                    access::LEADER_ELECTION,
                    Some(identity::NAMESPACE.to_owned()),
                ),
                (
                    access::OPERATOR_NAMESPACE,
                    Some(identity::NAMESPACE.to_owned()),
                ),
            ],
        });
        let mut operator = Operator::new(&identity, dir);
        operator.start().await;
        Arc::new(Env {
            client: cluster.client.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
            identity,
            dir: dir.to_owned(),
            pg,
            kubelet,
            operator: tokio::sync::Mutex::new(operator),
            cluster,
        })
    }

    /// The kubelet's part for the chart's pod (restartPolicy: Always): an
    /// operator that exits on its own is started again.
    pub fn watchdog(env: &Arc<Env>) -> tokio::task::JoinHandle<()> {
        let env = env.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if env.operator.lock().await.revive() {
                    println!("e2e: the operator exited on its own; started again");
                }
            }
        })
    }
}

/// Creates the CRDs under `crds/` through the API (a 1.20 server drops the
/// CEL rules it does not know) and waits until they are established.
async fn install_crds(cluster: &Cluster) {
    for entry in std::fs::read_dir(repo_path("crds")).unwrap() {
        install_crd(&cluster.client, &entry.unwrap().path()).await;
    }
}
