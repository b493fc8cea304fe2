//! What the watch caches keep of each object: the fields the planner reads
//! (`planner::workload::assess` for Deployments, ReplicaSets and pods,
//! `planner::step::observe_job` for Jobs) and nothing else. A pod template
//! keeps its labels and its containers' names and images; annotations keep
//! only those of Kubernetes' Deployment controller and of bellows (a
//! `last-applied-configuration` alone can be larger than the rest); Jobs
//! keep their labels and conditions. The live reads that confirm a phase
//! start get whole objects, and the planner decides the same from either
//! (tested below).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;

/// Annotation prefixes the planner reads.
const KEPT_ANNOTATIONS: [&str; 2] = ["deployment.kubernetes.io/", "bellows.dev/"];

/// Trims a Deployment: its template, annotations and managed fields.
pub fn deployment(d: &mut Deployment) {
    metadata(&mut d.metadata);
    if let Some(spec) = &mut d.spec {
        template(&mut spec.template);
        spec.strategy = None;
    }
}

/// Trims a ReplicaSet: its template, annotations, managed fields and
/// status (the planner reads the Deployment's counters, not these).
pub fn replica_set(rs: &mut ReplicaSet) {
    metadata(&mut rs.metadata);
    if let Some(template_spec) = rs.spec.as_mut().and_then(|s| s.template.as_mut()) {
        template(template_spec);
    }
    rs.status = None;
}

/// Trims a Job to its metadata (labels name the rollout) and conditions.
pub fn job(j: &mut Job) {
    metadata(&mut j.metadata);
    j.spec = None;
    j.status = j.status.take().map(|s| JobStatus {
        conditions: s.conditions,
        ..JobStatus::default()
    });
}

/// Trims a pod's metadata to labels, owners and deletion.
pub fn pod(p: &mut PartialObjectMeta<Pod>) {
    p.metadata.managed_fields = None;
    p.metadata.annotations = None;
}

fn metadata(m: &mut ObjectMeta) {
    m.managed_fields = None;
    if let Some(annotations) = &mut m.annotations {
        annotations.retain(|k, _| KEPT_ANNOTATIONS.iter().any(|p| k.starts_with(p)));
    }
}

fn template(t: &mut PodTemplateSpec) {
    if let Some(m) = &mut t.metadata {
        *m = ObjectMeta {
            labels: m.labels.take(),
            ..ObjectMeta::default()
        };
    }
    if let Some(spec) = &mut t.spec {
        let containers = std::mem::take(&mut spec.containers)
            .into_iter()
            .map(|c| Container {
                name: c.name,
                image: c.image,
                ..Container::default()
            })
            .collect();
        *spec = PodSpec {
            containers,
            ..PodSpec::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Workload;
    use crate::planner::step::observe_job;
    use crate::planner::workload::deployment::assess;
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
                let mut d = d.clone();
                super::deployment(&mut d);
                let mut sets = sets.clone();
                sets.iter_mut().for_each(super::replica_set);
                let mut pods = pods.clone();
                pods.iter_mut().for_each(super::pod);
                let slim = assess(workload, "users", Some(&d), &sets, &as_pods(&pods));
                assert_eq!(format!("{full:?}"), format!("{slim:?}"));
            }
        }
    }

    #[test]
    fn trimmed_objects_keep_only_what_the_planner_reads() {
        let mut d = deployment("shop/api:2.0.0", "2");
        super::deployment(&mut d);
        let annotations = d.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["deployment.kubernetes.io/revision"]
        );
        assert!(d.metadata.managed_fields.is_none());
        let spec = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert!(spec.init_containers.is_none() && spec.volumes.is_none());
        assert_eq!(spec.containers.len(), 2);
        assert!(spec.containers[0].env.is_none());

        let mut rs = replica_set("new", "2", "shop/api:2.0.0");
        super::replica_set(&mut rs);
        assert!(rs.status.is_none());

        let mut j: Job = serde_json::from_value(json!({
            "metadata": {"name": "users-contract-x", "labels": {"bellows.dev/rollout-uid": "u"}},
            "spec": {"template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}},
            "status": {"active": 0, "succeeded": 1,
                       "conditions": [{"type": "Complete", "status": "True"}]}
        }))
        .unwrap();
        let before = observe_job(&j);
        super::job(&mut j);
        assert!(j.spec.is_none());
        assert_eq!(observe_job(&j), before);
        assert_eq!(j.metadata.labels.as_ref().unwrap().len(), 1);
    }
}
