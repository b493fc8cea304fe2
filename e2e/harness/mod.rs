//! The e2e harness: a real control plane, a stand-in kubelet, a throwaway
//! PostgreSQL and the `bellows` binary, plus helpers the scenarios share.

pub mod cluster;
pub mod identity;
pub mod kubelet;
pub mod operator;
// Shared with tests/database.rs, which uses parts the suite does not.
#[allow(dead_code)]
pub mod postgres;
pub mod process;
pub mod wait;

use bellows::api::{RolloutPhase, SchemaRollout};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
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
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates Secret `name` holding `value` under `key`.
    pub async fn create_secret(&self, name: &str, key: &str, value: &str) {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": {key: value}
        }))
        .unwrap();
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// Creates Deployment `name` running `image` in container `app` (or
    /// `app.container`) and waits until it is available.
    pub async fn deploy(&self, name: &str, image: &str, app: App<'_>) {
        let annotations: serde_json::Map<String, Value> = app
            .annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": app.replicas,
                "progressDeadlineSeconds": app.progress_deadline_seconds.unwrap_or(600),
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}, "annotations": annotations},
                    "spec": {"terminationGracePeriodSeconds": 30,
                             "containers": [{"name": app.container.unwrap_or("app"), "image": image}]}
                }
            }
        }))
        .unwrap();
        self.api::<Deployment>()
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        self.wait_available(name, app.replicas).await;
    }

    /// Deployment `api` running `shop/api:1.0.0` with `replicas` plain pods,
    /// the version most scenarios start from; waits until it is available.
    pub async fn deploy_api(&self, replicas: i32) {
        self.deploy(
            "api",
            "shop/api:1.0.0",
            App {
                replicas,
                ..App::default()
            },
        )
        .await;
    }

    /// Waits until Deployment `name` has `replicas` updated, available replicas.
    pub async fn wait_available(&self, name: &str, replicas: i32) {
        let api = self.api::<Deployment>();
        until(
            &format!("deployment {name} available"),
            Duration::from_secs(60),
            || async {
                let d = api.get(name).await.ok()?;
                let s = d.status?;
                (s.observed_generation >= d.metadata.generation
                    && s.updated_replicas == Some(replicas)
                    && s.available_replicas == Some(replicas)
                    && s.replicas == Some(replicas))
                .then_some(())
            },
        )
        .await;
    }

    /// Changes the image of container `app` (a deploy of a new version).
    pub async fn set_image(&self, deploy: &str, image: &str) {
        self.set_container_image(deploy, "app", image).await;
    }

    /// Changes the image of `container` (a deploy of a new version).
    pub async fn set_container_image(&self, deploy: &str, container: &str, image: &str) {
        self.patch_template(
            deploy,
            json!({"spec": {"containers": [{"name": container, "image": image}]}}),
        )
        .await;
    }

    /// Strategic-merge patches the pod template of `deploy`.
    pub async fn patch_template(&self, deploy: &str, template: Value) {
        self.api::<Deployment>()
            .patch(
                deploy,
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": template}})),
            )
            .await
            .unwrap();
    }

    pub async fn deployment(&self, name: &str) -> Deployment {
        self.api::<Deployment>().get(name).await.unwrap()
    }

    /// Creates a SchemaRollout from its spec.
    pub async fn create_rollout(
        &self,
        name: &str,
        spec: Value,
    ) -> Result<SchemaRollout, kube::Error> {
        let r: SchemaRollout = serde_json::from_value(json!({
            "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
            "metadata": {"name": name}, "spec": spec
        }))
        .expect("a well-typed spec");
        self.api::<SchemaRollout>()
            .create(&PostParams::default(), &r)
            .await
    }

    /// Creates a SchemaRollout and waits until its expand phase succeeded
    /// (phase AwaitingRollout).
    pub async fn create_and_expand(&self, name: &str, spec: Value) {
        self.create_rollout(name, spec).await.unwrap();
        self.wait_phase(name, RolloutPhase::AwaitingRollout, Duration::from_secs(90))
            .await;
    }

    /// Deploys `api` (image `shop/api:1.0.0`, `replicas` replicas) and
    /// creates rollout `name` gating it on tag `2.0.0` with Manual approval
    /// and `SELECT 1` Jobs, then waits until its expand succeeded.
    pub async fn manual_api_rollout(&self, name: &str, replicas: i32) {
        self.deploy_api(replicas).await;
        self.create_and_expand(
            name,
            select_one_spec(
                json!([workload("api", "2.0.0")]),
                Some(json!({"approval": "Manual"})),
            ),
        )
        .await;
    }

    /// Creates a SchemaRollout from raw JSON, bypassing the Rust types (for
    /// input the types would refuse).
    pub async fn create_raw(&self, name: &str, spec: Value) -> Result<(), kube::Error> {
        let gvk = kube::api::GroupVersionKind::gvk("bellows.dev", "v1alpha1", "SchemaRollout");
        let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "schemarollouts");
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.name, &ar);
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.map(|_| ())
    }

    pub async fn rollout(&self, name: &str) -> SchemaRollout {
        self.api::<SchemaRollout>().get(name).await.unwrap()
    }

    /// Sets annotation `key` on the rollout.
    pub async fn annotate_rollout(&self, name: &str, key: &str, value: &str) {
        self.api::<SchemaRollout>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .unwrap();
    }

    /// Approves the rollout's contract the way a user does without the
    /// plugin: waits for `status.approvalKey` and sets the annotation
    /// `bellows.dev/approve` to it. Returns the key.
    pub async fn approve(&self, name: &str) -> String {
        let r = self
            .wait_rollout(name, "status.approvalKey", Duration::from_secs(90), |r| {
                r.status.as_ref().is_some_and(|s| s.approval_key.is_some())
            })
            .await;
        let key = r.status.unwrap().approval_key.unwrap();
        self.annotate_rollout(name, bellows::api::APPROVE_ANNOTATION, &key)
            .await;
        key
    }

    /// Waits until the rollout satisfies `check`, returning it.
    pub async fn wait_rollout(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&SchemaRollout) -> bool,
    ) -> SchemaRollout {
        let api = self.api::<SchemaRollout>();
        let check = &check;
        let api = &api;
        until(
            &format!("{}/{name}: {what}", self.name),
            timeout,
            || async move { api.get(name).await.ok().filter(|r| check(r)) },
        )
        .await
    }

    /// Waits for `phase`.
    pub async fn wait_phase(
        &self,
        name: &str,
        phase: RolloutPhase,
        timeout: Duration,
    ) -> SchemaRollout {
        self.wait_rollout(name, &format!("phase {}", phase.as_str()), timeout, |r| {
            phase_of(r) == Some(phase)
        })
        .await
    }

    /// Waits for condition `type_` with `status` and, if given, `reason`.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
        timeout: Duration,
    ) -> SchemaRollout {
        self.wait_rollout(
            name,
            &format!("{type_}={status} {reason:?}"),
            timeout,
            |r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.condition(type_))
                    .is_some_and(|c| c.status == status && reason.is_none_or(|x| c.reason == x))
            },
        )
        .await
    }

    /// Every Job in the namespace.
    pub async fn jobs(&self) -> Vec<Job> {
        self.api::<Job>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    /// The Jobs of phase `step` (expand, transition, contract).
    pub async fn jobs_of(&self, step: &str) -> Vec<Job> {
        self.jobs()
            .await
            .into_iter()
            .filter(|j| j.labels().get("bellows.dev/phase").map(String::as_str) == Some(step))
            .collect()
    }

    pub async fn pods(&self) -> Vec<Pod> {
        self.api::<Pod>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    /// Events about the rollout `name`: (type, reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let mut events: Vec<Event> = self
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        events.retain(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name));
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for an event with `reason` (and `type_`) about `name`.
    pub async fn wait_event(
        &self,
        name: &str,
        type_: &str,
        reason: &str,
        timeout: Duration,
    ) -> String {
        until(
            &format!("{type_} event {reason} on {name}"),
            timeout,
            || async {
                self.events(name)
                    .await
                    .into_iter()
                    .find(|(t, r, _)| t == type_ && r == reason)
                    .map(|e| e.2)
            },
        )
        .await
    }

    /// Runs kubectl in this namespace.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// Runs `sql` in this namespace's database.
    pub fn sql(&self, sql: &str) -> String {
        process::run(
            "psql",
            Command::new("psql")
                .arg(&self.pg_url)
                .args(["-v", "ON_ERROR_STOP=1", "-tAc", sql]),
        )
        .trim()
        .to_owned()
    }

    /// Records every phase the rollout passes through, in order, and every
    /// workload message its status showed.
    /// The table [`recording_sql`] writes to.
    pub fn create_runs_table(&self) {
        self.sql("CREATE TABLE runs (step text NOT NULL, at timestamptz NOT NULL DEFAULT now())");
    }

    /// Invariant I3 after the fact: each of `steps` has exactly one Job, its
    /// SQL ran exactly once and in this order, and (with the stand-in
    /// kubelet) each Job had exactly one pod run, which exited 0.
    pub async fn assert_ran_once_in_order(&self, env: &Env, steps: &[&str]) {
        let violations = self.ran_once_in_order(env, steps).await;
        assert!(violations.is_empty(), "{violations:#?}");
    }

    /// What [`Ns::assert_ran_once_in_order`] would fail on.
    pub async fn ran_once_in_order(&self, env: &Env, steps: &[&str]) -> Vec<String> {
        let mut violations = vec![];
        for step in steps {
            let jobs = self.jobs_of(step).await.len();
            if jobs != 1 {
                violations.push(format!("{step}: {jobs} Jobs"));
            }
            let runs = self.runs_of(step);
            if runs != 1 {
                violations.push(format!("{step}: its SQL ran {runs} times"));
            }
        }
        if let Some(kubelet) = &env.kubelet {
            let runs: Vec<(String, i32)> = kubelet
                .journal
                .job_runs
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.namespace == self.name)
                .map(|r| (r.job.clone(), r.exit_code))
                .collect();
            let jobs: std::collections::BTreeSet<&String> = runs.iter().map(|r| &r.0).collect();
            if (runs.len(), jobs.len()) != (steps.len(), steps.len())
                || runs.iter().any(|r| r.1 != 0)
            {
                violations.push(format!(
                    "not one successful pod run per phase Job: {runs:?}"
                ));
            }
        }
        let order = self.sql("SELECT coalesce(string_agg(step, ',' ORDER BY at), '') FROM runs");
        if order != steps.join(",") {
            violations.push(format!("phases ran in the order {order:?}"));
        }
        violations
    }

    /// How many times [`recording_sql`] for `step` committed.
    pub fn runs_of(&self, step: &str) -> u32 {
        self.sql(&format!("SELECT count(*) FROM runs WHERE step = '{step}'"))
            .parse()
            .expect("a count")
    }

    /// Waits until the Job of `step` has a running pod.
    pub async fn wait_job_running(&self, step: &str) {
        until(
            &format!("the {step} Job running"),
            Duration::from_secs(90),
            || async {
                let jobs = self.jobs_of(step).await;
                jobs.first()
                    .and_then(|j| j.status.as_ref()?.active)
                    .filter(|n| *n > 0)
                    .map(|_| ())
            },
        )
        .await;
    }

    pub fn record_phases(&self, name: &str) -> PhaseLog {
        let log = PhaseLog::default();
        let seen = log.clone();
        let api = self.api::<SchemaRollout>();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut stream = watcher(api, config).default_backoff().boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(r) | watcher::Event::InitApply(r) = event {
                    seen.record(&r);
                }
            }
        });
        log
    }
}

/// Phases a rollout went through and the workload messages it showed.
#[derive(Clone, Default)]
pub struct PhaseLog {
    phases: Arc<Mutex<Vec<RolloutPhase>>>,
    messages: Arc<Mutex<Vec<String>>>,
}

impl PhaseLog {
    fn record(&self, r: &SchemaRollout) {
        if let Some(p) = phase_of(r) {
            let mut phases = self.phases.lock().unwrap();
            if phases.last() != Some(&p) {
                phases.push(p);
            }
        }
        let mut messages = self.messages.lock().unwrap();
        for m in r
            .status
            .iter()
            .flat_map(|s| &s.workloads)
            .filter_map(|w| w.message.clone())
        {
            if !messages.contains(&m) {
                messages.push(m);
            }
        }
    }

    pub fn phases(&self) -> Vec<RolloutPhase> {
        self.phases.lock().unwrap().clone()
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
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
