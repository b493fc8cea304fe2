//! The controller's watch caches of the objects rollouts depend on, so that
//! an ordinary reconcile reads memory instead of the API server. A cache
//! lags behind the API server, never runs ahead of it, so reading it delays
//! what a reconcile sees; the two decisions where a lag could matter read
//! the API server instead: a plan that would start a phase is re-made from
//! live reads before it is carried out (see `reconcile`), and a Job the
//! rollout recorded but the cache does not hold is looked up live (see
//! `observe`). Reconciles start once every cache has listed its objects
//! (the controller's work starts from full caches, not from a burst of
//! live reads), and while a watch fails (until it delivers an event
//! again) they read live.

use super::index::{self, Index};
use super::slim::{CachedDeployment, CachedJob, CachedReplicaSet};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::PartialObjectMeta;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Read handles of the caches, of objects trimmed to what the planner
/// reads (`slim`). Pods are cached as metadata only (rollout assessment
/// reads their labels, owners and deletion timestamps), and only pods with
/// a `pod-template-hash` (a ReplicaSet's): a bare pod that a Deployment's
/// selector happens to match counts as an old pod in the live reads that
/// confirm a phase start, not in the cache, so it can delay a start the
/// cache proposed, never allow one.
#[derive(Clone)]
pub struct Caches {
    /// Deployments.
    pub deployments: Store<CachedDeployment>,
    /// ReplicaSets (their templates tell a rollback apart).
    pub replica_sets: Store<CachedReplicaSet>,
    /// ReplicaSets by the uid of the Deployment that controls them.
    pub replica_sets_by_owner: Index<CachedReplicaSet>,
    /// Pods of ReplicaSets, metadata only.
    pub pods: Store<PartialObjectMeta<Pod>>,
    /// Pods by each of their labels (`<namespace>/<key>=<value>`).
    pub pods_by_label: Index<PartialObjectMeta<Pod>>,
    /// Jobs labelled as bellows' own.
    pub jobs: Store<CachedJob>,
    synced: Synced,
}

impl Caches {
    /// The caches, ready once every watch registered with `synced` has
    /// listed its objects; the indexes follow the same watches.
    pub fn new(
        deployments: Store<CachedDeployment>,
        replica_sets: Store<CachedReplicaSet>,
        replica_sets_by_owner: Index<CachedReplicaSet>,
        pods: Store<PartialObjectMeta<Pod>>,
        pods_by_label: Index<PartialObjectMeta<Pod>>,
        jobs: Store<CachedJob>,
        synced: Synced,
    ) -> Self {
        Self {
            deployments,
            replica_sets,
            replica_sets_by_owner,
            pods,
            pods_by_label,
            jobs,
            synced,
        }
    }

    /// Resolves once every watch has listed its objects once.
    pub async fn listed(&self) {
        self.synced.listed().await
    }

    /// Whether reconciles may read the caches: every watch has listed its
    /// objects once and none failed on its latest attempt.
    pub fn ready(&self) -> bool {
        self.synced.healthy()
    }

    /// The cached Deployment `name` in `ns`.
    pub fn deployment(&self, ns: &str, name: &str) -> Option<Deployment> {
        let d = self.deployments.get(&ObjectRef::new(name).within(ns))?;
        Some(d.as_ref().into())
    }

    /// The cached Job `name` in `ns`.
    pub fn job(&self, ns: &str, name: &str) -> Option<Job> {
        let j = self.jobs.get(&ObjectRef::new(name).within(ns))?;
        Some(j.as_ref().into())
    }

    /// The cached ReplicaSets the Deployment with `uid` controls (the only
    /// ones rollout assessment reads of those its selector matches).
    pub fn replica_sets_of(&self, uid: &str) -> Vec<ReplicaSet> {
        held(&self.replica_sets, self.replica_sets_by_owner.get(uid))
            .iter()
            .map(|rs| rs.as_ref().into())
            .collect()
    }

    /// The cached pods in `ns` that `selector` matches: the pods under
    /// `pair`, one of its label pairs, filtered by the whole selector
    /// (without a pair, a selector of expressions only, the namespace's
    /// pods are scanned).
    pub fn pods_selected(
        &self,
        ns: &str,
        selector: &Selector,
        pair: Option<(&String, &String)>,
    ) -> Vec<PartialObjectMeta<Pod>> {
        let matches = |p: &PartialObjectMeta<Pod>| {
            p.namespace().as_deref() == Some(ns) && selector.matches(p.labels())
        };
        match pair {
            Some((k, v)) => {
                let refs = self.pods_by_label.get(&label_key(ns, k, v));
                held(&self.pods, refs)
                    .iter()
                    .filter(|p| matches(p))
                    .map(|p| p.as_ref().clone())
                    .collect()
            }
            None => self
                .pods
                .state_filter(matches)
                .into_iter()
                .map(|p| p.as_ref().clone())
                .collect(),
        }
    }
}

/// The index keys of a ReplicaSet: the uids of its controlling owners.
pub fn controller_uids(rs: &CachedReplicaSet) -> Vec<String> {
    rs.owner_references()
        .iter()
        .filter(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
        .collect()
}

/// The index keys of a pod: each of its labels, within its namespace.
pub fn label_pairs(p: &PartialObjectMeta<Pod>) -> Vec<String> {
    let ns = p.namespace().unwrap_or_default();
    p.labels()
        .iter()
        .map(|(k, v)| label_key(&ns, k, v))
        .collect()
}

/// The index key of the label `k=v` in `ns`.
fn label_key(ns: &str, k: &str, v: &str) -> String {
    index::named(ns, &format!("{k}={v}"))
}

/// The objects `refs` names that `store` holds.
fn held<K>(store: &Store<K>, refs: Vec<ObjectRef<K>>) -> Vec<Arc<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    refs.iter().filter_map(|r| store.get(r)).collect()
}

/// Tracks the watches feeding the caches: how many there are, how many
/// completed their first list, how many failed on their latest attempt,
/// and when one lists again. A watch that lists but may not watch (a
/// missing `watch` verb) keeps its first list forever: it counts as
/// failing, so reconciles read live rather than trust a cache that no
/// longer follows the API server.
///
/// A watch lists again after its resource version expired (410 Gone) or
/// its connection was lost for long: whatever changed or vanished in the
/// gap arrives as one new list, and an object that vanished yields no
/// event at all. So every later list is announced ([`Synced::relists`]) and
/// wakes every rollout once.
#[derive(Clone)]
pub struct Synced {
    watches: Arc<AtomicUsize>,
    listed: Arc<watch::Sender<usize>>,
    failing: Arc<AtomicUsize>,
    relisted: UnboundedSender<()>,
    relists: Arc<Mutex<Option<UnboundedReceiver<()>>>>,
}

impl Default for Synced {
    fn default() -> Self {
        let (relisted, relists) = futures::channel::mpsc::unbounded();
        Self {
            watches: Arc::default(),
            listed: Arc::new(watch::channel(0).0),
            failing: Arc::default(),
            relisted,
            relists: Arc::new(Mutex::new(Some(relists))),
        }
    }
}

impl Synced {
    /// Registers one watch; the returned callback, given the watch's events,
    /// counts its first `InitDone` and whether its latest item is an error.
    pub fn track<K>(&self) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + use<K> {
        self.watches.fetch_add(1, Ordering::AcqRel);
        let listed = self.listed.clone();
        let failing = self.failing.clone();
        let relisted = self.relisted.clone();
        let mut done = false;
        let mut failed = false;
        move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                if done {
                    tracing::info!("a watch listed again; every rollout looks once");
                    // Nobody listening (the controller stopped) is fine.
                    let _ = relisted.unbounded_send(());
                } else {
                    done = true;
                    listed.send_modify(|n| *n += 1);
                }
            }
            if event.is_err() != failed {
                failed = event.is_err();
                if failed {
                    failing.fetch_add(1, Ordering::AcqRel);
                } else {
                    failing.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    fn all(&self) -> bool {
        let watches = self.watches.load(Ordering::Acquire);
        watches > 0 && *self.listed.borrow() >= watches
    }

    fn healthy(&self) -> bool {
        self.all() && self.failing.load(Ordering::Acquire) == 0
    }

    /// One item each time a watch lists its objects again after its first
    /// list. The stream can be taken once; later calls get an empty one.
    pub fn relists(&self) -> impl futures::Stream<Item = ()> + Send + use<> {
        let taken = self.relists.lock().expect("not poisoned").take();
        futures::StreamExt::flatten(futures::stream::iter(taken))
    }

    /// Resolves once every registered watch has listed its objects once.
    pub async fn listed(&self) {
        let watches = self.watches.load(Ordering::Acquire);
        let mut listed = self.listed.subscribe();
        // The sender lives as long as `self`: this cannot fail.
        let _ = listed.wait_for(|n| *n >= watches).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    type Item = Result<watcher::Event<ConfigMap>, watcher::Error>;

    fn failed() -> Item {
        Err(watcher::Error::NoResourceVersion)
    }

    #[tokio::test]
    async fn ready_once_every_watch_listed_and_unready_while_one_fails() {
        let synced = Synced::default();
        let mut a = synced.track::<ConfigMap>();
        let mut b = synced.track::<ConfigMap>();
        assert!(!synced.healthy(), "nothing listed yet");
        a(&Ok(watcher::Event::Init));
        a(&Ok(watcher::Event::InitDone));
        assert!(!synced.healthy(), "one of two listed");
        b(&Ok(watcher::Event::InitDone));
        synced.listed().await;
        assert!(synced.healthy());

        // Listed, but its watch is refused (a missing `watch` verb): the
        // cache no longer follows the API server.
        b(&failed());
        b(&failed());
        assert!(!synced.healthy(), "a failing watch");
        assert!(synced.all(), "still listed once");
        b(&Ok(watcher::Event::Apply(ConfigMap::default())));
        assert!(synced.healthy(), "back once it delivers again");
        // A second InitDone (a relist) counts once, and is announced.
        let mut relists = Box::pin(synced.relists());
        a(&Ok(watcher::Event::Init));
        a(&Ok(watcher::Event::InitDone));
        assert_eq!(*synced.listed.borrow(), 2);
        use futures::StreamExt;
        assert_eq!(
            relists.next().await,
            Some(()),
            "a relist wakes the rollouts"
        );
        b(&Ok(watcher::Event::InitDone));
        assert_eq!(relists.next().await, Some(()));
        drop(synced);
        drop((a, b));
        assert_eq!(
            relists.next().await,
            None,
            "no announcement of a first list"
        );
    }
}
