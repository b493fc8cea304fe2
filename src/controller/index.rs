//! Which rollouts name a Deployment, kept up to date from the rollout
//! watch: a Deployment or pod event costs a lookup, not a scan of every
//! rollout.

use crate::api::SchemaRollout;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// A Deployment, by namespace and name.
type Workload = (String, String);

#[derive(Default)]
struct Maps {
    /// Rollouts naming each Deployment.
    rollouts: HashMap<Workload, HashSet<ObjectRef<SchemaRollout>>>,
    /// The Deployments each rollout names (to drop them when it changes).
    workloads: HashMap<ObjectRef<SchemaRollout>, Vec<Workload>>,
}

/// Deployment → rollouts naming it.
#[derive(Clone, Default)]
pub struct WorkloadIndex(Arc<RwLock<Maps>>);

impl WorkloadIndex {
    /// Follows one rollout watch event. A relist (`Init`) starts over: the
    /// `InitApply` events that follow fill the index again.
    pub fn follow(&self, event: &Result<watcher::Event<SchemaRollout>, watcher::Error>) {
        let mut maps = self.0.write().expect("index lock");
        match event {
            Ok(watcher::Event::Init) => *maps = Maps::default(),
            Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => {
                let key = ObjectRef::from(r);
                maps.forget(&key);
                let ns = r.namespace().unwrap_or_default();
                let named: Vec<Workload> = r
                    .spec
                    .workloads
                    .iter()
                    .map(|w| (ns.clone(), w.name.clone()))
                    .collect();
                for w in &named {
                    maps.rollouts
                        .entry(w.clone())
                        .or_default()
                        .insert(key.clone());
                }
                maps.workloads.insert(key, named);
            }
            Ok(watcher::Event::Delete(r)) => maps.forget(&ObjectRef::from(r)),
            Ok(watcher::Event::InitDone) | Err(_) => {}
        }
    }

    /// The rollouts in `namespace` that name the Deployment `name`.
    pub fn naming(&self, namespace: Option<String>, name: &str) -> Vec<ObjectRef<SchemaRollout>> {
        let maps = self.0.read().expect("index lock");
        maps.rollouts
            .get(&(namespace.unwrap_or_default(), name.to_owned()))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Maps {
    fn forget(&mut self, rollout: &ObjectRef<SchemaRollout>) {
        for w in self.workloads.remove(rollout).unwrap_or_default() {
            if let Some(set) = self.rollouts.get_mut(&w) {
                set.remove(rollout);
                if set.is_empty() {
                    self.rollouts.remove(&w);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(name: &str, workloads: &[&str]) -> SchemaRollout {
        let workloads: Vec<_> = workloads
            .iter()
            .map(|w| serde_json::json!({"kind": "Deployment", "name": w, "version": {"labels": {"v": "2"}}}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"workloads": workloads, "expand": {"sql": ["SELECT 1"]}, "contract": {"sql": ["SELECT 1"]}}
        }))
        .unwrap()
    }

    fn names(index: &WorkloadIndex, deployment: &str) -> Vec<String> {
        let mut names: Vec<String> = index
            .naming(Some("shop".into()), deployment)
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn follows_applies_edits_deletes_and_relists() {
        let index = WorkloadIndex::default();
        index.follow(&Ok(watcher::Event::Apply(rollout("a", &["api", "worker"]))));
        index.follow(&Ok(watcher::Event::Apply(rollout("b", &["api"]))));
        assert_eq!(names(&index, "api"), ["a", "b"]);
        assert_eq!(names(&index, "worker"), ["a"]);
        assert!(
            index.naming(Some("other".into()), "api").is_empty(),
            "per namespace"
        );
        // An edit that drops a workload drops it from the index.
        index.follow(&Ok(watcher::Event::Apply(rollout("a", &["api"]))));
        assert!(names(&index, "worker").is_empty());
        index.follow(&Ok(watcher::Event::Delete(rollout("b", &["api"]))));
        assert_eq!(names(&index, "api"), ["a"]);
        // A relist starts over.
        index.follow(&Ok(watcher::Event::Init));
        index.follow(&Ok(watcher::Event::InitApply(rollout("c", &["api"]))));
        index.follow(&Ok(watcher::Event::InitDone));
        assert_eq!(names(&index, "api"), ["c"]);
    }
}
