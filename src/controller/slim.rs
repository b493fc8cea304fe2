//! What the watch caches keep of each object: the fields the planner reads
//! (`planner::workload::assess` for Deployments, ReplicaSets and pods,
//! `planner::step::observe_job` for Jobs) and nothing else. Deployments,
//! ReplicaSets and Jobs are decoded into types of their own that name only
//! those fields, so the rest is skipped while decoding rather than held:
//! a Kubernetes `ReplicaSet` is 2.3 KiB before any of its strings, and each
//! container of its template 2.1 KiB more, against about 0.5 KiB for
//! [`CachedReplicaSet`] with one container. A pod template keeps its labels
//! and its containers' names and images; annotations keep only those of
//! Kubernetes' Deployment controller and of bellows (a
//! `last-applied-configuration` alone can be larger than the rest); Jobs
//! keep their labels and conditions. A cached object is read back as the
//! Kubernetes type with only those fields set. The live reads that confirm
//! a phase start get whole objects, and the planner decides the same from
//! either (tested below).

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::PartialObjectMeta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Annotation prefixes the planner reads.
const KEPT_ANNOTATIONS: [&str; 2] = ["deployment.kubernetes.io/", "bellows.dev/"];

/// A Deployment as the cache keeps it (`strategy` aside, its spec and
/// status whole, the template trimmed).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct CachedDeployment {
    /// Trimmed by [`trim`].
    pub metadata: ObjectMeta,
    spec: Option<CachedDeploymentSpec>,
    status: Option<DeploymentStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct CachedDeploymentSpec {
    min_ready_seconds: Option<i32>,
    paused: Option<bool>,
    progress_deadline_seconds: Option<i32>,
    replicas: Option<i32>,
    revision_history_limit: Option<i32>,
    #[serde(default)]
    selector: LabelSelector,
    #[serde(default)]
    template: CachedTemplate,
}

/// A ReplicaSet as the cache keeps it: no status (the planner reads the
/// Deployment's counters, not these), the template trimmed.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct CachedReplicaSet {
    /// Trimmed by [`trim`].
    pub metadata: ObjectMeta,
    spec: Option<CachedReplicaSetSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct CachedReplicaSetSpec {
    min_ready_seconds: Option<i32>,
    replicas: Option<i32>,
    #[serde(default)]
    selector: LabelSelector,
    template: Option<CachedTemplate>,
}

/// A Job as the cache keeps it: its metadata (labels name the rollout, an
/// annotation holds its seal) and its conditions.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct CachedJob {
    /// Trimmed by [`trim`].
    pub metadata: ObjectMeta,
    status: Option<CachedJobStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct CachedJobStatus {
    conditions: Option<Vec<JobCondition>>,
}

/// A pod template: its labels and its containers' names and images.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct CachedTemplate {
    metadata: Option<CachedTemplateMeta>,
    spec: Option<CachedPodSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct CachedTemplateMeta {
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct CachedPodSpec {
    #[serde(default)]
    containers: Vec<CachedContainer>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct CachedContainer {
    #[serde(default)]
    name: String,
    image: Option<String>,
}

/// Makes a cached type the same resource as its Kubernetes kind to an
/// `Api` (group, version, kind, path and scope), so a watch of it is a
/// watch of that kind, decoded into fewer fields.
macro_rules! cached_as {
    ($cached:ty, $kind:ty) => {
        impl k8s_openapi::Resource for $cached {
            const API_VERSION: &'static str = <$kind as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$kind as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$kind as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$kind as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str =
                <$kind as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$kind as k8s_openapi::Resource>::Scope;
        }

        impl k8s_openapi::Metadata for $cached {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

cached_as!(CachedDeployment, Deployment);
cached_as!(CachedReplicaSet, ReplicaSet);
cached_as!(CachedJob, Job);

impl From<&CachedDeployment> for Deployment {
    fn from(d: &CachedDeployment) -> Self {
        Deployment {
            metadata: d.metadata.clone(),
            spec: d.spec.as_ref().map(|s| DeploymentSpec {
                min_ready_seconds: s.min_ready_seconds,
                paused: s.paused,
                progress_deadline_seconds: s.progress_deadline_seconds,
                replicas: s.replicas,
                revision_history_limit: s.revision_history_limit,
                selector: s.selector.clone(),
                template: (&s.template).into(),
                strategy: None,
            }),
            status: d.status.clone(),
        }
    }
}

impl From<&CachedReplicaSet> for ReplicaSet {
    fn from(rs: &CachedReplicaSet) -> Self {
        ReplicaSet {
            metadata: rs.metadata.clone(),
            spec: rs.spec.as_ref().map(|s| ReplicaSetSpec {
                min_ready_seconds: s.min_ready_seconds,
                replicas: s.replicas,
                selector: s.selector.clone(),
                template: s.template.as_ref().map(PodTemplateSpec::from),
            }),
            status: None,
        }
    }
}

impl From<&CachedJob> for Job {
    fn from(j: &CachedJob) -> Self {
        Job {
            metadata: j.metadata.clone(),
            spec: None,
            status: j.status.as_ref().map(|s| JobStatus {
                conditions: s.conditions.clone(),
                ..JobStatus::default()
            }),
        }
    }
}

impl From<&CachedTemplate> for PodTemplateSpec {
    fn from(t: &CachedTemplate) -> Self {
        PodTemplateSpec {
            metadata: t.metadata.as_ref().map(|m| ObjectMeta {
                labels: m.labels.clone(),
                ..ObjectMeta::default()
            }),
            spec: t.spec.as_ref().map(|s| PodSpec {
                containers: s
                    .containers
                    .iter()
                    .map(|c| Container {
                        name: c.name.clone(),
                        image: c.image.clone(),
                        ..Container::default()
                    })
                    .collect(),
                ..PodSpec::default()
            }),
        }
    }
}

/// Trims a cached object's metadata: managed fields, and the annotations
/// the planner does not read.
pub fn trim<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(o: &mut K) {
    let m = o.metadata_mut();
    m.managed_fields = None;
    if let Some(annotations) = &mut m.annotations {
        annotations.retain(|k, _| KEPT_ANNOTATIONS.iter().any(|p| k.starts_with(p)));
    }
}

/// Trims a pod's metadata to labels, owners and deletion.
pub fn pod(p: &mut PartialObjectMeta<Pod>) {
    p.metadata.managed_fields = None;
    p.metadata.annotations = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Workload;
    use crate::planner::step::observe_job;
    use crate::planner::workload::deployment::assess;
    use kube::ResourceExt;
    use serde_json::{Value, json};

    /// A pod template with everything a real one carries.
    fn template(image: &str, hash: &str) -> Value {
        json!({
            "metadata": {"labels": {"app": "api", "pod-template-hash": hash},
                         "annotations": {"prometheus.io/scrape": "true"}},
            "spec": {
                "initContainers": [{"name": "wait", "image": "busybox"}],
                "containers": [
                    {"name": "api", "image": image, "env": [{"name": "DB", "value": "x"}],
                     "resources": {"limits": {"memory": "1Gi"}}, "ports": [{"containerPort": 8080}]},
                    {"name": "proxy", "image": "envoy:1"}
                ],
                "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}]
            }
        })
    }

    fn owner(kind: &str, name: &str, uid: &str) -> Value {
        json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}])
    }

    fn managed() -> Value {
        json!([{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}])
    }

    fn deployment(image: &str, revision: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "api", "namespace": "shop", "uid": "d-1", "generation": 3,
                         "managedFields": managed(),
                         "annotations": {"deployment.kubernetes.io/revision": revision,
                                         "kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                     "strategy": {"type": "RollingUpdate"}, "template": template(image, "")},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
                       "availableReplicas": 2, "readyReplicas": 2}
        }))
        .unwrap()
    }

    fn replica_set(hash: &str, revision: &str, image: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": format!("api-{hash}"), "namespace": "shop",
                         "labels": {"app": "api", "pod-template-hash": hash},
                         "annotations": {"deployment.kubernetes.io/revision": revision},
                         "ownerReferences": owner("Deployment", "api", "d-1"), "managedFields": managed()},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}}, "template": template(image, hash)},
            "status": {"replicas": 1, "readyReplicas": 1}
        }))
        .unwrap()
    }

    fn pod(hash: &str, terminating: bool) -> PartialObjectMeta<Pod> {
        let mut meta = json!({"name": format!("api-{hash}-x"), "namespace": "shop",
                              "labels": {"app": "api", "pod-template-hash": hash},
                              "annotations": {"kubectl.kubernetes.io/restartedAt": "now"},
                              "ownerReferences": owner("ReplicaSet", &format!("api-{hash}"), "rs-1")});
        if terminating {
            meta["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
        }
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta}))
            .unwrap()
    }

    fn as_pods(metas: &[PartialObjectMeta<Pod>]) -> Vec<Pod> {
        metas
            .iter()
            .map(|m| Pod {
                metadata: m.metadata.clone(),
                ..Pod::default()
            })
            .collect()
    }

    #[test]
    fn the_planner_decides_the_same_from_trimmed_objects() {
        let by_image: Workload = serde_json::from_value(
            json!({"name": "api", "version": {"image": {"container": "api", "tag": "2.0.0"}}}),
        )
        .unwrap();
        let by_label: Workload =
            serde_json::from_value(json!({"name": "api", "version": {"labels": {"app": "api"}}}))
                .unwrap();
        let sets = vec![
            replica_set("old", "1", "shop/api:1.0.0"),
            replica_set("new", "2", "shop/api:2.0.0"),
        ];
        let cases = [
            // Rolled out; old pods remain; rolled back.
            (deployment("shop/api:2.0.0", "2"), vec![pod("new", false)]),
            (
                deployment("shop/api:2.0.0", "2"),
                vec![pod("new", false), pod("old", true)],
            ),
            (deployment("shop/api:1.0.0", "3"), vec![pod("old", false)]),
        ];
        for workload in [&by_image, &by_label] {
            for (d, pods) in &cases {
                let full = assess(workload, "users", Some(d), &sets, &as_pods(pods));
                let d = through_cache::<CachedDeployment, _>(d);
                let sets: Vec<_> = sets
                    .iter()
                    .map(through_cache::<CachedReplicaSet, _>)
                    .collect();
                let mut pods = pods.clone();
                pods.iter_mut().for_each(super::pod);
                let slim = assess(workload, "users", Some(&d), &sets, &as_pods(&pods));
                assert_eq!(format!("{full:?}"), format!("{slim:?}"));
            }
        }
    }

    #[test]
    fn trimmed_objects_keep_only_what_the_planner_reads() {
        let d = through_cache::<CachedDeployment, _>(&deployment("shop/api:2.0.0", "2"));
        let annotations = d.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["deployment.kubernetes.io/revision"]
        );
        assert!(d.metadata.managed_fields.is_none());
        let spec = d.spec.as_ref().unwrap();
        assert!(spec.strategy.is_none());
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(spec.selector.match_labels.as_ref().unwrap().len(), 1);
        let template = &spec.template;
        assert_eq!(
            template
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .as_ref()
                .unwrap()
                .len(),
            2
        );
        assert!(template.metadata.as_ref().unwrap().annotations.is_none());
        let pod_spec = template.spec.as_ref().unwrap();
        assert!(pod_spec.init_containers.is_none() && pod_spec.volumes.is_none());
        assert_eq!(pod_spec.containers.len(), 2);
        assert_eq!(pod_spec.containers[1].image.as_deref(), Some("envoy:1"));
        assert!(pod_spec.containers[0].env.is_none());
        assert_eq!(d.status.as_ref().unwrap().updated_replicas, Some(2));

        let rs = through_cache::<CachedReplicaSet, _>(&replica_set("new", "2", "shop/api:2.0.0"));
        assert!(rs.status.is_none());
        assert_eq!(rs.owner_references().len(), 1);
        assert_eq!(rs.spec.as_ref().unwrap().replicas, Some(1));

        let j: Job = serde_json::from_value(json!({
            "metadata": {"name": "users-contract-x", "labels": {"bellows.dev/rollout-uid": "u"},
                         "annotations": {"bellows.dev/seal": "s", "other": "x"}},
            "spec": {"template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}},
            "status": {"active": 0, "succeeded": 1,
                       "conditions": [{"type": "Complete", "status": "True"}]}
        }))
        .unwrap();
        let cached = through_cache::<CachedJob, _>(&j);
        assert!(cached.spec.is_none());
        assert_eq!(observe_job(&cached), observe_job(&j));
        assert_eq!(cached.metadata.labels.as_ref().unwrap().len(), 1);
        assert_eq!(
            cached.annotations().keys().collect::<Vec<_>>(),
            ["bellows.dev/seal"]
        );
    }

    /// A cached type is one resource with its Kubernetes kind to an `Api`.
    #[test]
    fn cached_types_are_their_kinds_to_the_api() {
        use kube::Resource;
        assert_eq!(
            CachedDeployment::url_path(&(), Some("shop")),
            Deployment::url_path(&(), Some("shop"))
        );
        assert_eq!(
            CachedReplicaSet::url_path(&(), None),
            ReplicaSet::url_path(&(), None)
        );
        assert_eq!(
            CachedJob::url_path(&(), Some("shop")),
            Job::url_path(&(), Some("shop"))
        );
        assert_eq!(CachedJob::kind(&()), "Job");
    }

    /// `full` decoded as its cache decodes it, trimmed, and read back.
    fn through_cache<C, K>(full: &K) -> K
    where
        C: serde::de::DeserializeOwned + k8s_openapi::Metadata<Ty = ObjectMeta>,
        K: Serialize + for<'a> From<&'a C>,
    {
        let mut c: C = serde_json::from_value(serde_json::to_value(full).unwrap()).unwrap();
        super::trim(&mut c);
        K::from(&c)
    }
}
