//! The e2e harness: a real control plane, a stand-in kubelet, a throwaway
//! PostgreSQL and the `bellows` binary, plus helpers the scenarios share.

pub mod cluster;
pub mod identity;
pub mod killer;
pub mod kubelet;
pub mod operator;
pub mod proxy;
mod rollouts;
mod runs;
mod setup;
pub mod traffic;
mod workloads;

// Shared with tests/database.rs (testkit/).
pub use bellows_testkit::{postgres, process, wait};

use bellows::api::{RolloutPhase, SchemaRollout};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use wait::until;

/// Everything a scenario uses.
pub struct Env {
    /// Admin client, for the test itself.
    pub client: Client,
    /// Admin kubeconfig, for the test's own kubectl.
    pub kubeconfig: PathBuf,
    /// What every operator process runs with (the chart's ServiceAccount
    /// and arguments).
    pub identity: identity::Identity,
    /// The run's scratch directory (logs, data dirs).
    pub dir: PathBuf,
    pub pg: postgres::Postgres,
    /// The stand-in kubelet (absent against an existing cluster).
    pub kubelet: Option<kubelet::Kubelet>,
    pub operator: tokio::sync::Mutex<operator::Operator>,
    /// Last, so it outlives the processes that talk to it when dropped.
    pub cluster: cluster::Cluster,
}

impl Env {
    /// The stand-in kubelet; scenarios that need it only run with it.
    pub fn kubelet(&self) -> &kubelet::Kubelet {
        self.kubelet
            .as_ref()
            .expect("this scenario needs the stand-in kubelet")
    }

    /// A fresh namespace with its own database and a Secret `db` (key `url`)
    /// pointing at it.
    pub async fn namespace(&self, name: &str) -> Ns {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        self.pg.create_database(name);
        let ns = Ns {
            name: name.into(),
            client: self.client.clone(),
            kubeconfig: self.kubeconfig.clone(),
            pg_url: self.pg.local_url(name),
        };
        ns.create_secret("db", "url", &self.pg.url(name)).await;
        ns
    }
}

/// A scenario's namespace.
pub struct Ns {
    pub name: String,
    pub client: Client,
    kubeconfig: PathBuf,
    pg_url: String,
}

/// Options of a test Deployment.
#[derive(Clone, Default)]
pub struct App<'a> {
    pub replicas: i32,
    /// Pod template annotations (the kubelet knobs).
    pub annotations: &'a [(&'a str, &'a str)],
    pub progress_deadline_seconds: Option<i32>,
    /// Name of the (only) container; `app` when unset.
    pub container: Option<&'a str>,
}

impl Ns {
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

/// Creates each CRD in the YAML file `path` (if absent) and waits until it
/// is established.
pub async fn install_crd(client: &Client, path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let crds: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} holds CRDs: {e}", path.display()));
    for crd in crds {
        establish(client, crd).await;
    }
}

async fn establish(client: &Client, crd: CustomResourceDefinition) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap();
    match api.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("install CRD {name}: {e}"),
    }
    until(
        &format!("CRD {name} established"),
        Duration::from_secs(30),
        || async {
            let crd = api.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

/// A path inside the repository. Read at run time: cargo sets
/// `CARGO_MANIFEST_DIR` for every test it runs, and a build shared between
/// clones (one target dir) must not point at the clone that compiled it.
pub fn repo_path(relative: &str) -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("run through cargo");
    PathBuf::from(root).join(relative)
}

pub fn phase_of(r: &SchemaRollout) -> Option<RolloutPhase> {
    r.status.as_ref().and_then(|s| s.phase)
}

/// The status of condition `type_` ("True"/"False") and its reason.
pub fn condition_of(r: &SchemaRollout, type_: &str) -> (String, String) {
    r.status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

/// The message of condition `type_` (empty when it is not set).
pub fn condition_message(r: &SchemaRollout, type_: &str) -> String {
    r.status
        .as_ref()
        .and_then(|s| s.condition(type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// A JobSpec that runs `sql` with psql against the namespace's database.
pub fn psql_job(sql: &str) -> Value {
    json!({"template": {"spec": {"restartPolicy": "Never", "containers": [{
        "name": "migrate", "image": "postgres:16",
        "command": ["psql", "-v", "ON_ERROR_STOP=1"],
        "args": ["$(DATABASE_URL)", "-c", sql],
        "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]
    }]}}})
}

/// SQL for a phase Job that takes `seconds`, then records one row for `step`
/// in the table of [`Ns::create_runs_table`].
pub fn recording_sql(step: &str, seconds: f64) -> String {
    format!("SELECT pg_sleep({seconds}); INSERT INTO runs (step) VALUES ('{step}');")
}

/// A rollout spec gating `workloads` whose expand and contract Jobs run
/// `SELECT 1`, with `after` as the contract's conditions (or none).
pub fn select_one_spec(workloads: Value, after: Option<Value>) -> Value {
    let mut spec = json!({
        "workloads": workloads,
        "expand": {"job": psql_job("SELECT 1")},
        "contract": {"job": psql_job("SELECT 1")},
    });
    if let Some(after) = after {
        spec["contract"]["after"] = after;
    }
    spec
}

/// A workload entry gated on image tag `tag` of container `app`.
pub fn workload(name: &str, tag: &str) -> Value {
    json!({"kind": "Deployment", "name": name, "version": {"image": {"container": "app", "tag": tag}}})
}

/// Re-exported for scenarios.
pub use bellows::api::condition as cond;
