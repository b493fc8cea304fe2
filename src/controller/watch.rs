//! The watches: the SchemaRollout trigger, the caches of Deployments,
//! ReplicaSets, pods and Jobs and which of their events wake which
//! rollout, their backoff, and the failed-reconcile policy.

use super::cache::{self, Caches, Synced};
use super::slim::{self, CachedDeployment, CachedJob, CachedReplicaSet};
use super::{Context, Error, Scope, changes, cluster_ledger, index, reconcile};
use crate::api::SchemaRollout;
use crate::api::keys::{MANAGED_BY, TEMPLATE_HASH_LABEL};
use crate::telemetry::metrics::Metrics;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

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

/// Runs the controller over `scope` until `shutdown` resolves, then waits
/// for running reconciles to finish. `on_ready` is called once the
/// SchemaRollout watch and every cache's watch have listed everything.
///
/// Several watched namespaces get a controller each, with watches and
/// caches of their own (a watch covers one namespace or all), sharing the
/// client and metrics.
pub async fn run(
    client: Client,
    scope: &Scope,
    metrics: Arc<Metrics>,
    on_ready: impl FnOnce(Vec<Store<SchemaRollout>>) + Send + 'static,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let namespaces = scope.namespaces();
    let (synced, mut stores) = tokio::sync::mpsc::unbounded_channel();
    let all = namespaces.len();
    let ready = tokio::spawn(async move {
        let mut listed = Vec::with_capacity(all);
        while listed.len() < all {
            match stores.recv().await {
                Some(store) => listed.push(store),
                None => return,
            }
        }
        on_ready(listed);
    });
    futures::future::join_all(namespaces.into_iter().map(|namespace| {
        let synced = synced.clone();
        run_in(
            client.clone(),
            namespace,
            scope,
            metrics.clone(),
            move |store| drop(synced.send(store)),
            shutdown.clone(),
        )
    }))
    .await;
    ready.abort();
}

/// The controller of `namespace` (every namespace when `None`).
async fn run_in(
    client: Client,
    namespace: Option<&str>,
    scope: &Scope,
    metrics: Arc<Metrics>,
    on_ready: impl FnOnce(Store<SchemaRollout>) + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let rollouts: Api<SchemaRollout> = scoped(&client, namespace);
    let jobs: Api<CachedJob> = scoped(&client, namespace);
    let deployments: Api<CachedDeployment> = scoped(&client, namespace);
    let replica_sets: Api<CachedReplicaSet> = scoped(&client, namespace);
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
    let (job_cache, job_events) = cached(jobs, job_config, &synced, slim::trim, None);
    let all = watcher::Config::default;
    let (deployment_cache, deployment_events) =
        cached(deployments, all(), &synced, slim::trim, None);
    let by_owner = index::Index::new(cache::controller_uids);
    let (replica_set_cache, replica_set_events) = cached(
        replica_sets,
        all(),
        &synced,
        slim::trim,
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

    let relists = synced.relists();
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
    let ctx = Arc::new(Context::new(client, metrics, &scope.operator).with_caches(caches));
    let pruning = tokio::spawn(prune_ledger(
        ctx.clone(),
        namespace.map(str::to_owned),
        scope.ledger_retention,
    ));
    Controller::for_stream(trigger, store)
        .trigger_backoff(WatchBackoff::default())
        // A cache that lists again may have lost deletions in the gap:
        // every rollout looks once.
        .reconcile_all_on(relists)
        .owns_stream(job_events)
        .watches_stream(deployment_events, move |d: CachedDeployment| {
            for_deployments.get(&index::named(
                &d.namespace().unwrap_or_default(),
                &d.name_any(),
            ))
        })
        .watches_stream(replica_set_events, |_: CachedReplicaSet| None)
        .watches_stream(
            pod_events,
            move |p: PartialObjectMeta<Pod>| match deployment_of(&p.metadata) {
                Some(name) => {
                    for_pods.get(&index::named(&p.namespace().unwrap_or_default(), &name))
                }
                None => vec![],
            },
        )
        .with_config(controller::Config::default().concurrency(scope.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    ready.abort();
    pruning.abort();
    tracing::info!("controller stopped");
}

/// How often the cluster ledger is pruned (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Prunes the cluster ledger's records of rollouts in `namespace` (every
/// namespace when `None`) gone longer than `retention`, at start and every
/// [`PRUNE_EVERY`], for as long as the controller runs.
async fn prune_ledger(ctx: Arc<Context>, namespace: Option<String>, retention: Duration) {
    loop {
        let home = ctx.ledger_home();
        match cluster_ledger::prune(&ctx.client, &home, namespace.as_deref(), retention).await {
            Ok(deleted) => tracing::debug!(deleted, "pruned the cluster ledger"),
            Err(e) => {
                tracing::warn!(error = %e, "pruning the cluster ledger failed; trying again later")
            }
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
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
/// back to 200 ms after the next event (kube-runtime's default grows to
/// 30 s, shared by all the Controller's trigger watches). During an outage
/// this costs each watch one request every 2 s.
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
