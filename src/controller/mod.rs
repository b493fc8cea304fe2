//! The kube-runtime controller: watches SchemaRollouts, the Jobs they own and
//! the Deployments and pods they name, and reconciles each rollout by
//! observing, planning (pure) and applying the plan.

pub mod access;
pub mod cache;
pub mod changes;
pub mod cluster_ledger;
pub mod finalizer;
pub mod gate;
pub mod index;
pub mod job;
pub mod observe;
mod reconcile;
pub mod slim;

pub use reconcile::reconcile;

use crate::api::SchemaRollout;
use crate::api::keys::{MANAGED_BY, TEMPLATE_HASH_LABEL};
use crate::telemetry::metrics::Metrics;
use cache::{Caches, Synced};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[source] kube::Error),
    /// The SchemaRollout has no namespace (it is namespaced).
    #[error("SchemaRollout has no namespace")]
    MissingNamespace,
    /// A patch could not be serialized.
    #[error("could not serialize a patch: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The database could not be used (the text never holds a credential).
    #[error("database: {0}")]
    Database(#[from] crate::db::DbError),
    /// An inline SQL phase or ledger write without `spec.database`.
    #[error("spec.database is not set")]
    NoDatabase,
    /// The API server refused to create a phase's Job (not a transient
    /// error: a forbidden, invalid or over-quota spec).
    #[error("the {} Job was refused: {message}", step.as_str())]
    JobRejected {
        /// The phase.
        step: crate::api::Step,
        /// The API server's message.
        message: String,
    },
}

impl Error {
    /// A fixed, low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::MissingNamespace => "missing_namespace",
            Self::Serialize(_) => "serialize",
            Self::Database(_) => "database",
            Self::NoDatabase => "no_database",
            Self::JobRejected { .. } => "job_rejected",
        }
    }
}

/// Shared state of every reconcile.
pub struct Context {
    /// Client for the API server.
    pub client: Client,
    /// Publishes events.k8s.io/v1 Events.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Connection pools of the rollouts' databases.
    pub pools: crate::db::Pools,
    /// The last contract check results, reused while fresh.
    pub recent_checks: observe::RecentChecks,
    /// Consecutive failures per rollout, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<SchemaRollout>, u32>>,
    /// When a reconcile first saw each rollout's workloads rolled out, until
    /// its contract starts (`bellows_contract_start_seconds`).
    rolled_out_seen: Mutex<HashMap<String, std::time::Instant>>,
    /// The last status this process wrote for each rollout, and when
    /// (`planner::writes`).
    written: Mutex<HashMap<ObjectRef<SchemaRollout>, Written>>,
    /// The watch caches; without them every reconcile reads live.
    pub caches: Option<Caches>,
}

impl Context {
    /// A context publishing events as `bellows`.
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Self {
        let instance = std::env::var("POD_NAME").ok();
        let reporter = Reporter {
            controller: "bellows".into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            pools: Default::default(),
            recent_checks: Default::default(),
            failures: Mutex::default(),
            rolled_out_seen: Mutex::default(),
            written: Mutex::default(),
            caches: None,
        }
    }

    /// Reconciles read the watch caches once they synced.
    pub fn with_caches(mut self, caches: Caches) -> Self {
        self.caches = Some(caches);
        self
    }

    fn reset_backoff(&self, rollout: &SchemaRollout) {
        self.failures
            .lock()
            .expect("backoff lock")
            .remove(&ObjectRef::from(rollout));
    }

    /// Starts the contract-start clock of the rollout `uid` at `at`.
    fn rolled_out(&self, uid: String, at: std::time::Instant) {
        self.rolled_out_seen
            .lock()
            .expect("clock lock")
            .insert(uid, at);
    }

    /// Stops the contract-start clock of the rollout `uid`, if it runs.
    fn contract_started(&self, uid: &str) {
        let seen = self.rolled_out_seen.lock().expect("clock lock").remove(uid);
        if let Some(at) = seen {
            self.metrics.contract_started(at.elapsed());
        }
    }

    /// Whether to write `planned` as the status of `rollout`, given the
    /// status last written for it ([`writes::status_write`]).
    fn status_write(
        &self,
        rollout: &SchemaRollout,
        planned: &crate::api::SchemaRolloutStatus,
    ) -> crate::planner::writes::StatusWrite {
        let written = self.written.lock().expect("written lock");
        let last = written
            .get(&ObjectRef::from(rollout))
            // A re-created rollout of the same name starts afresh.
            .filter(|w| Some(&w.uid) == rollout.metadata.uid.as_ref())
            .map(|w| (&w.status, w.at.elapsed()));
        crate::planner::writes::status_write(rollout.status.as_ref(), last, planned)
    }

    /// Remembers `status` as written for `rollout` now.
    fn wrote(&self, rollout: &SchemaRollout, status: crate::api::SchemaRolloutStatus) {
        let written = Written {
            uid: rollout.metadata.uid.clone().unwrap_or_default(),
            at: std::time::Instant::now(),
            status,
        };
        let mut all = self.written.lock().expect("written lock");
        all.insert(ObjectRef::from(rollout), written);
    }

    /// Forgets what was written for `rollout` (it is gone).
    fn forget_written(&self, rollout: &SchemaRollout) {
        let mut all = self.written.lock().expect("written lock");
        all.remove(&ObjectRef::from(rollout));
    }

    /// The next retry delay for `rollout`: 1s, 2s, 4s ... up to 5 minutes.
    fn backoff(&self, rollout: &SchemaRollout) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let n = failures.entry(ObjectRef::from(rollout)).or_insert(0);
        *n = n.saturating_add(1);
        Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300))
    }
}

/// A status written, and when.
struct Written {
    uid: String,
    at: std::time::Instant,
    status: crate::api::SchemaRolloutStatus,
}

fn error_policy(rollout: Arc<SchemaRollout>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&rollout);
    tracing::warn!(
        rollout = %rollout.name_any(),
        namespace = rollout.namespace().unwrap_or_default(),
        error = %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// What makes a change to a rollout worth a reconcile: its spec (the
/// generation, which also moves when deletion starts), annotations (an
/// approval), finalizers and deletion. Not its status: only bellows writes
/// that, and a reconcile triggered by its own write would find nothing new.
/// The cache (`store`) still takes every change; only triggers are filtered.
fn reconcile_worthy(rollout: &SchemaRollout) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = &rollout.metadata;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// The index keys of the Deployments `rollout` names.
pub(crate) fn named_workloads(rollout: &SchemaRollout) -> Vec<String> {
    let ns = rollout.namespace().unwrap_or_default();
    rollout
        .spec
        .workloads
        .iter()
        .map(|w| index::named(&ns, &w.name))
        .collect()
}

/// The Deployment that owns a pod, derived from its ReplicaSet owner
/// (`<deployment>-<pod-template-hash>`).
fn deployment_of(pod: &ObjectMeta) -> Option<String> {
    let hash = pod.labels.as_ref()?.get(TEMPLATE_HASH_LABEL)?;
    pod.owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "ReplicaSet")
        .and_then(|o| o.name.strip_suffix(&format!("-{hash}")).map(str::to_owned))
}

/// Runs the controller over `namespace` (every namespace when `None`) until
/// `shutdown` resolves, then waits for running reconciles to finish.
/// `on_ready` is called once the SchemaRollout watch and every cache's
/// watch have listed everything.
pub async fn run(
    client: Client,
    namespace: Option<&str>,
    metrics: Arc<Metrics>,
    on_ready: impl FnOnce(Store<SchemaRollout>) + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let rollouts: Api<SchemaRollout> = scoped(&client, namespace);
    let jobs: Api<Job> = scoped(&client, namespace);
    let deployments: Api<Deployment> = scoped(&client, namespace);
    let replica_sets: Api<ReplicaSet> = scoped(&client, namespace);
    let pods: Api<PartialObjectMeta<Pod>> = scoped(&client, namespace);

    let (store, writer) = reflector::store();
    let (listed, rollouts_listed) = tokio::sync::oneshot::channel();
    let mut listed = Some(listed);
    // Which rollouts name each Deployment: an event costs a lookup.
    let index = index::Index::new(named_workloads);
    let follow = index.clone();
    let trigger = watcher::watcher(rollouts, watcher::Config::default().any_semantic())
        .backoff(WatchBackoff::default())
        // Never read, and bellows' own server-side applies make it as large
        // as the status.
        .modify(|r| r.managed_fields_mut().clear())
        .reflect(writer)
        .inspect(move |event| follow.follow(event))
        .inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event
                && let Some(listed) = listed.take()
            {
                let _ = listed.send(());
            }
        })
        .applied_objects()
        .predicate_filter(reconcile_worthy, PredicateConfig::default());
    let for_deployments = index.clone();
    let for_pods = index;

    // The caches reconciles read (see `cache`); each watch also triggers
    // the rollouts its objects concern, except ReplicaSets, whose changes
    // always come with a Deployment's or a pod's.
    let synced = Synced::default();
    let job_config =
        watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let (job_cache, job_events) = cached(jobs, job_config, &synced, slim::job, None);
    let all = watcher::Config::default;
    let (deployment_cache, deployment_events) =
        cached(deployments, all(), &synced, slim::deployment, None);
    let by_owner = index::Index::new(cache::controller_uids);
    let (replica_set_cache, replica_set_events) = cached(
        replica_sets,
        all(),
        &synced,
        slim::replica_set,
        Some(by_owner.clone()),
    );
    // Only pods of a ReplicaSet carry its `pod-template-hash`: Job pods and
    // bare pods stay out of the cache.
    let rs_pods = watcher::Config::default().labels(TEMPLATE_HASH_LABEL);
    let by_label = index::Index::new(cache::label_pairs);
    let (pod_cache, pod_events) = cached(pods, rs_pods, &synced, slim::pod, Some(by_label.clone()));
    let caches = Caches::new(
        deployment_cache,
        replica_set_cache,
        by_owner,
        pod_cache,
        by_label,
        job_cache,
        synced.clone(),
    );

    // Ready once the SchemaRollouts and every cache have been listed.
    let ready = tokio::spawn({
        let store = store.clone();
        async move {
            if rollouts_listed.await.is_ok() {
                synced.listed().await;
                on_ready(store);
            }
        }
    });
    let ctx = Arc::new(Context::new(client, metrics).with_caches(caches));
    Controller::for_stream(trigger, store)
        .trigger_backoff(WatchBackoff::default())
        .owns_stream(job_events)
        .watches_stream(deployment_events, move |d: Deployment| {
            for_deployments.get(&index::named(
                &d.namespace().unwrap_or_default(),
                &d.name_any(),
            ))
        })
        .watches_stream(replica_set_events, |_: ReplicaSet| None)
        .watches_stream(
            pod_events,
            move |p: PartialObjectMeta<Pod>| match deployment_of(&p.metadata) {
                Some(name) => {
                    for_pods.get(&index::named(&p.namespace().unwrap_or_default(), &name))
                }
                None => vec![],
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    ready.abort();
    tracing::info!("controller stopped");
}

/// A watch of `api` that fills a cache (its first list counted by
/// `synced`) with objects trimmed by `trim` (see `slim`), keeps `index`
/// up to date, and yields every object whose trimmed form changed or that
/// was deleted (see `changes`).
fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
    synced: &Synced,
    trim: fn(&mut K),
    index: Option<index::Index<K>>,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + use<K>,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let events = watcher::watcher(api, config)
        .backoff(WatchBackoff::default())
        .modify(trim)
        .reflect(writer)
        .inspect(move |event| {
            if let Some(index) = &index {
                index.follow(event);
            }
        })
        .inspect(synced.track())
        .filter({
            let mut changes = changes::Changes::default();
            move |event| std::future::ready(changes.worth(event))
        })
        .touched_objects();
    (store, events)
}

/// Backoff of the watches after an error: 200 ms, doubling, at most 2 s,
/// back to 200 ms after the next event. kube-runtime's default grows to 30 s
/// and the Controller shares one backoff among all its trigger watches, so a
/// one-second API server restart held reconciles back for over a minute
/// (e2e scenario 12). During an outage this costs each watch one request
/// every 2 s.
#[derive(Default)]
struct WatchBackoff {
    next: Option<Duration>,
}

impl WatchBackoff {
    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(2);
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next.unwrap_or(Self::MIN);
        self.next = Some((delay * 2).min(Self::MAX));
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = None;
    }
}

/// An Api over one namespace, or over all of them.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The object reference events are published against.
fn reference(rollout: &SchemaRollout) -> k8s_openapi::api::core::v1::ObjectReference {
    rollout.object_ref(&())
}

#[cfg(test)]
mod tests {
    use super::{WatchBackoff, reconcile_worthy};
    use crate::api::{RolloutPhase, SchemaRollout};

    #[test]
    fn only_changes_a_user_makes_trigger_a_reconcile() {
        let mut r: SchemaRollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
            "metadata": {"name": "r", "namespace": "ns", "generation": 1},
            "spec": {"workloads": [], "expand": {"sql": ["SELECT 1"]}, "contract": {"sql": ["SELECT 1"]}}
        }))
        .unwrap();
        let before = reconcile_worthy(&r);
        let mut status = r.status.clone().unwrap_or_default();
        status.phase = Some(RolloutPhase::Expanding);
        r.status = Some(status);
        assert_eq!(reconcile_worthy(&r), before, "bellows' own status write");
        r.metadata.annotations = Some([("bellows.dev/approve".to_owned(), "k".to_owned())].into());
        let approved = reconcile_worthy(&r);
        assert_ne!(approved, before, "an approval");
        r.metadata.generation = Some(2);
        assert_ne!(reconcile_worthy(&r), approved, "a spec edit");
    }
    use kube::runtime::utils::Backoff;
    use std::time::Duration;

    #[test]
    fn watch_backoff_doubles_to_two_seconds_and_resets() {
        let mut b = WatchBackoff::default();
        let ms: Vec<u128> = b.by_ref().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(200)));
    }
}
