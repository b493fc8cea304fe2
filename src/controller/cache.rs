//! The controller's watch caches of the objects rollouts depend on, so that
//! an ordinary reconcile reads memory instead of the API server. A cache
//! lags behind the API server, never runs ahead of it, so reading it delays
//! what a reconcile sees; the two decisions where a lag could matter read
//! the API server instead: a plan that would start a phase is re-made from
//! live reads before it is carried out (see `reconcile`), and a Job the
//! rollout recorded but the cache does not hold is looked up live (see
//! `observe`). Until every cache has listed its objects once, reconciles
//! read live.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

    /// Whether every cache has listed its objects once.
    pub fn ready(&self) -> bool {
        self.synced.all()
    }
}

/// Counts the watches feeding the caches, and those whose first list
/// completed.
#[derive(Clone, Default)]
pub struct Synced {
    watches: Arc<AtomicUsize>,
    listed: Arc<AtomicUsize>,
}

impl Synced {
    /// Registers one watch; the returned callback, given the watch's events,
    /// counts its first `InitDone`.
    pub fn on_init_done<K>(
        &self,
    ) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + use<K> {
        self.watches.fetch_add(1, Ordering::AcqRel);
        let listed = self.listed.clone();
        let mut done = false;
        move |event| {
            if !done && matches!(event, Ok(watcher::Event::InitDone)) {
                done = true;
                listed.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn all(&self) -> bool {
        let watches = self.watches.load(Ordering::Acquire);
        watches > 0 && self.listed.load(Ordering::Acquire) >= watches
    }
}
