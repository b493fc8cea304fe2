//! The controller's watch caches of the objects rollouts depend on, so that
//! an ordinary reconcile reads memory instead of the API server. A cache
//! lags behind the API server, never runs ahead of it, so reading it delays
//! what a reconcile sees; the two decisions where a lag could matter read
//! the API server instead: a plan that would start a phase is re-made from
//! live reads before it is carried out (see `reconcile`), and a Job the
//! rollout recorded but the cache does not hold is looked up live (see
//! `observe`). Until every cache has listed its objects once, and while a
//! watch fails (until it delivers an event again), reconciles read live.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::watch;

/// Read handles of the caches. Pods are cached as metadata only: rollout
/// assessment reads their labels, owners and deletion timestamps.
#[derive(Clone)]
pub struct Caches {
    /// Deployments.
    pub deployments: Store<Deployment>,
    /// ReplicaSets (their templates tell a rollback apart).
    pub replica_sets: Store<ReplicaSet>,
    /// Pods, metadata only.
    pub pods: Store<PartialObjectMeta<Pod>>,
    /// Jobs labelled as bellows' own.
    pub jobs: Store<Job>,
    synced: Synced,
}

impl Caches {
    /// The caches, ready once every watch registered with `synced` has
    /// listed its objects.
    pub fn new(
        deployments: Store<Deployment>,
        replica_sets: Store<ReplicaSet>,
        pods: Store<PartialObjectMeta<Pod>>,
        jobs: Store<Job>,
        synced: Synced,
    ) -> Self {
        Self {
            deployments,
            replica_sets,
            pods,
            jobs,
            synced,
        }
    }

    /// Whether reconciles may read the caches: every watch has listed its
    /// objects once and none failed on its latest attempt.
    pub fn ready(&self) -> bool {
        self.synced.healthy()
    }
}

/// Tracks the watches feeding the caches: how many there are, how many
/// completed their first list, and how many failed on their latest attempt.
/// A watch that lists but may not watch (a missing `watch` verb) keeps its
/// first list forever: it counts as failing, so reconciles read live rather
/// than trust a cache that no longer follows the API server.
#[derive(Clone)]
pub struct Synced {
    watches: Arc<AtomicUsize>,
    listed: Arc<watch::Sender<usize>>,
    failing: Arc<AtomicUsize>,
}

impl Default for Synced {
    fn default() -> Self {
        Self {
            watches: Arc::default(),
            listed: Arc::new(watch::channel(0).0),
            failing: Arc::default(),
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
        let mut done = false;
        let mut failed = false;
        move |event| {
            if !done && matches!(event, Ok(watcher::Event::InitDone)) {
                done = true;
                listed.send_modify(|n| *n += 1);
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
        // A second InitDone (a relist) counts once.
        a(&Ok(watcher::Event::InitDone));
        assert_eq!(*synced.listed.borrow(), 2);
    }
}
