//! Indexes over watched objects, kept up to date from their watch: an
//! event or a reconcile looks up the objects it concerns instead of
//! scanning every object of the cluster (work proportional to what it
//! touches, not to the number of rollouts).

use kube::Resource;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// An object, by namespace and name.
type Object = (String, String);

#[derive(Default)]
struct Tables {
    /// The objects under each key.
    objects: HashMap<String, HashSet<Object>>,
    /// The keys of each object (to drop them when it changes).
    keys: HashMap<Object, Vec<String>>,
}

#[derive(Default)]
struct Maps {
    live: Tables,
    /// Filled during a relist, then swapped in whole (as the cache does).
    relisting: Option<Tables>,
}

/// Objects of kind `K` by the keys a function derives from each (any
/// number per object).
pub struct Index<K> {
    keys: fn(&K) -> Vec<String>,
    maps: Arc<RwLock<Maps>>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys,
            maps: self.maps.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Index<K> {
    /// An empty index of the keys `keys` gives each object.
    pub fn new(keys: fn(&K) -> Vec<String>) -> Self {
        Self {
            keys,
            maps: Arc::default(),
        }
    }

    /// Follows one watch event.
    pub fn follow(&self, event: &Result<watcher::Event<K>, watcher::Error>) {
        let mut maps = self.maps.write().expect("index lock");
        match event {
            Ok(watcher::Event::Init) => maps.relisting = Some(Tables::default()),
            Ok(watcher::Event::InitApply(o)) => {
                let keys = (self.keys)(o);
                match &mut maps.relisting {
                    Some(tables) => tables.put(object(o), keys),
                    None => maps.live.put(object(o), keys),
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(tables) = maps.relisting.take() {
                    maps.live = tables;
                }
            }
            Ok(watcher::Event::Apply(o)) => maps.live.put(object(o), (self.keys)(o)),
            Ok(watcher::Event::Delete(o)) => maps.live.forget(&object(o)),
            Err(_) => {}
        }
    }

    /// The objects under `key`.
    pub fn get(&self, key: &str) -> Vec<ObjectRef<K>> {
        let maps = self.maps.read().expect("index lock");
        maps.live
            .objects
            .get(key)
            .map(|set| {
                set.iter()
                    .map(|(ns, name)| ObjectRef::new(name).within(ns))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn object<K: Resource>(o: &K) -> Object {
    (o.namespace().unwrap_or_default(), o.name_any())
}

impl Tables {
    fn put(&mut self, object: Object, keys: Vec<String>) {
        self.forget(&object);
        for k in &keys {
            self.objects
                .entry(k.clone())
                .or_default()
                .insert(object.clone());
        }
        self.keys.insert(object, keys);
    }

    fn forget(&mut self, object: &Object) {
        for k in self.keys.remove(object).unwrap_or_default() {
            if let Some(set) = self.objects.get_mut(&k) {
                set.remove(object);
                if set.is_empty() {
                    self.objects.remove(&k);
                }
            }
        }
    }
}

/// The key of the object `name` in `namespace`.
pub fn named(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SchemaRollout;

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

    fn names(index: &Index<SchemaRollout>, key: &str) -> Vec<String> {
        let mut names: Vec<String> = index.get(key).into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn follows_applies_edits_deletes_and_relists() {
        let index = Index::new(super::super::watch::named_workloads);
        index.follow(&Ok(watcher::Event::Apply(rollout("a", &["api", "worker"]))));
        index.follow(&Ok(watcher::Event::Apply(rollout("b", &["api"]))));
        assert_eq!(names(&index, "shop/api"), ["a", "b"]);
        assert_eq!(names(&index, "shop/worker"), ["a"]);
        assert!(index.get("other/api").is_empty(), "per namespace");
        // An edit that drops a workload drops it from the index.
        index.follow(&Ok(watcher::Event::Apply(rollout("a", &["api"]))));
        assert!(names(&index, "shop/worker").is_empty());
        index.follow(&Ok(watcher::Event::Delete(rollout("b", &["api"]))));
        assert_eq!(names(&index, "shop/api"), ["a"]);
        // A relist starts over, and until it is done the index still
        // answers from what it had.
        index.follow(&Ok(watcher::Event::Init));
        index.follow(&Ok(watcher::Event::InitApply(rollout("c", &["api"]))));
        assert_eq!(names(&index, "shop/api"), ["a"], "during the relist");
        index.follow(&Ok(watcher::Event::InitDone));
        assert_eq!(names(&index, "shop/api"), ["c"]);
    }
}
