//! Which watch events of a cached object are worth a reconcile: a deletion,
//! or a change to what the cache keeps of it (see `slim`), its
//! `resourceVersion` aside. A pod's metadata-only watch delivers an event
//! for every change to its status (scheduled, started, ready) with nothing
//! but a new `resourceVersion`; a Job's for every count of active pods. The
//! planner reads none of that, so none of it starts a reconcile.

use kube::Resource;
use kube::ResourceExt;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// The fingerprints of the objects last passed on, by namespace and name.
#[derive(Default)]
pub struct Changes(HashMap<(String, String), u64>);

impl Changes {
    /// Whether `event` tells a reconcile something new (errors and list
    /// markers pass: they carry no object).
    pub fn worth<K>(&mut self, event: &Result<watcher::Event<K>, watcher::Error>) -> bool
    where
        K: Resource + serde::Serialize + Clone,
    {
        match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let print = fingerprint(o);
                self.0.insert(key(o), print) != Some(print)
            }
            Ok(watcher::Event::Delete(o)) => {
                self.0.remove(&key(o));
                true
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) | Err(_) => true,
        }
    }
}

fn key<K: Resource>(o: &K) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// A hash of `o` as cached, without its `resourceVersion`.
fn fingerprint<K: Resource + serde::Serialize + Clone>(o: &K) -> u64 {
    let mut o = o.clone();
    o.meta_mut().resource_version = None;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&o)
        .expect("a Kubernetes object serializes")
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::PartialObjectMeta;

    fn pod(rv: &str, terminating: bool) -> PartialObjectMeta<Pod> {
        let mut meta = serde_json::json!({"name": "api-1", "namespace": "shop", "resourceVersion": rv,
                                          "labels": {"pod-template-hash": "abc"}});
        if terminating {
            meta["deletionTimestamp"] = serde_json::json!("2026-12-01T00:00:00Z");
        }
        serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta}),
        )
        .unwrap()
    }

    #[test]
    fn only_deletions_and_changes_to_what_is_cached_pass() {
        let mut changes = Changes::default();
        let apply = |p| Ok(watcher::Event::Apply(p));
        assert!(changes.worth(&apply(pod("1", false))), "a new pod");
        assert!(
            !changes.worth(&apply(pod("2", false))),
            "its status changed: only the resourceVersion moved"
        );
        assert!(changes.worth(&apply(pod("3", true))), "Terminating");
        assert!(changes.worth(&Ok(watcher::Event::Delete(pod("4", true)))));
        assert!(
            changes.worth(&Ok(watcher::Event::InitApply(pod("5", true)))),
            "seen again after its deletion"
        );
        assert!(
            !changes.worth(&Ok(watcher::Event::InitApply(pod("6", true)))),
            "a relist of an unchanged pod"
        );
    }
}
