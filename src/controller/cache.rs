//! The controller's watch caches of the objects rollouts depend on, so that
//! an ordinary reconcile reads memory instead of the API server. A reconcile
//! that would start a phase confirms its plan against the API server first
//! (see `reconcile`), so a cache that lags can delay a phase, never start
//! one early.

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
    pub deployments: Store<Deployment>,
    pub replica_sets: Store<ReplicaSet>,
    pub pods: Store<PartialObjectMeta<Pod>>,
    /// Jobs labelled as bellows' own.
    pub jobs: Store<Job>,
    synced: Synced,
}

impl Caches {
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

    /// Whether every cache has listed its objects once; until then
    /// reconciles read the API server.
    pub fn ready(&self) -> bool {
        self.synced.0.load(Ordering::Acquire) >= Self::COUNT
    }

    const COUNT: usize = 4;
}

/// Counts the caches whose first list completed.
#[derive(Clone, Default)]
pub struct Synced(Arc<AtomicUsize>);

impl Synced {
    /// A callback for one cache's watch events that counts its first
    /// `InitDone`.
    pub fn on_init_done<K>(
        &self,
    ) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + use<K> {
        let counter = self.0.clone();
        let mut done = false;
        move |event| {
            if !done && matches!(event, Ok(watcher::Event::InitDone)) {
                done = true;
                counter.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}
