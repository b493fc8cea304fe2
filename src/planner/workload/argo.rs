//! An Argo Rollouts `Rollout` (argoproj.io/v1alpha1), judged from the
//! fields its controller documents: the Rollout, the ReplicaSets it owns
//! (pods carry `rollouts-pod-template-hash`) and the pods its selector
//! matches, Terminating ones included. Rolled out means promoted: the
//! current pod hash is the stable one (blue-green: the active selector
//! too), not aborted or paused, every replica updated and available, and
//! no pod of another hash that runs an older version, the old stack kept
//! by `scaleDownDelaySeconds` included.

use super::history::{History, Revision};
use super::{Assessment, Problem, Verdict, Wait, controlled_by, old_pods_remain, waiting};
use crate::api::Workload;
use crate::api::keys::ARGO_HASH_LABEL;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;
use serde::Deserialize;

/// The fields of a Rollout bellows reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ArgoRollout {
    /// Its metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Its spec.
    #[serde(default)]
    pub spec: ArgoSpec,
    /// Its status, as its controller writes it.
    #[serde(default)]
    pub status: ArgoStatus,
}

/// The spec fields bellows reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoSpec {
    /// Desired replicas (default 1).
    pub replicas: Option<i32>,
    /// Paused by a user.
    #[serde(default)]
    pub paused: bool,
    /// Selects its pods.
    pub selector: Option<LabelSelector>,
    /// The pod template (absent with `workloadRef`).
    pub template: Option<PodTemplateSpec>,
    /// A Deployment whose template the Rollout runs instead.
    pub workload_ref: Option<serde_json::Value>,
    /// Canary or blue-green.
    #[serde(default)]
    pub strategy: ArgoStrategy,
}

/// Which strategy a Rollout uses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoStrategy {
    /// Set for blue-green.
    pub blue_green: Option<serde_json::Value>,
}

/// The status fields bellows reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoStatus {
    /// The update was aborted: traffic went back to the stable version.
    #[serde(default)]
    pub abort: bool,
    /// Why the controller paused the update (a canary step, ...).
    #[serde(default)]
    pub pause_conditions: Vec<serde_json::Value>,
    /// The controller paused the update.
    #[serde(default)]
    pub controller_pause: bool,
    /// The hash of the current pod template.
    #[serde(default)]
    pub current_pod_hash: String,
    /// The hash of the ReplicaSet that rolled out successfully.
    #[serde(rename = "stableRS", default)]
    pub stable_rs: String,
    /// The generation the controller observed, as a string.
    #[serde(default)]
    pub observed_generation: String,
    /// Pods of the current template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Available pods.
    #[serde(default)]
    pub available_replicas: i32,
    /// Blue-green state.
    #[serde(default)]
    pub blue_green: ArgoBlueGreen,
}

/// Blue-green status.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgoBlueGreen {
    /// The pod hash the active Service selects.
    #[serde(default)]
    pub active_selector: String,
}

/// Assesses a Rollout (if it exists) from the ReplicaSets and pods its
/// selector matches.
pub fn assess(
    workload: &Workload,
    rollout_name: &str,
    rollout: Option<&ArgoRollout>,
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
) -> Assessment {
    let Some(rollout) = rollout else {
        return Assessment::not_found(workload);
    };
    let what = format!("Rollout {}", workload.name);
    let (spec, status) = (&rollout.spec, &rollout.status);
    let mut out = Assessment::new(workload);
    out.replicas = spec.replicas.unwrap_or(1);
    out.held(spec.paused, &rollout.metadata, rollout_name);
    let Some(template) = spec
        .template
        .as_ref()
        .filter(|_| spec.workload_ref.is_none())
    else {
        return Assessment::with_problem(
            workload,
            Problem::Unusable(format!(
                "{what} uses workloadRef: bellows reads a Rollout's own spec.template (list the pods with kind Pods instead)"
            )),
        )
        .keeping_hold(&out);
    };
    if let Some(missing) = out.missing_container(workload, template) {
        return missing;
    }

    let uid = rollout.metadata.uid.as_ref();
    let history = History::new(
        replica_sets
            .iter()
            .filter(|rs| controlled_by(&rs.metadata, uid))
            .map(|rs| Revision {
                hash: rs.labels().get(ARGO_HASH_LABEL).cloned(),
                template: rs.spec.as_ref().and_then(|s| s.template.clone()),
                created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            })
            .collect(),
        &workload.version,
    );
    let current = history.find(Some(status.current_pod_hash.as_str()));
    let old_terminating = out.count(pods, |pod| {
        history.runs_new(pod.labels().get(ARGO_HASH_LABEL).map(String::as_str))
    });
    let generation = rollout.metadata.generation.unwrap_or(0).to_string();
    let generation_observed = status.observed_generation == generation;
    let judged = history
        .judge(&what, template, current, generation_observed)
        .map(|note| out.note = note);

    let blue_green = spec.strategy.blue_green.is_some();
    out.verdict = if let Err(verdict) = judged {
        verdict
    } else if !generation_observed || current.is_none() {
        waiting(
            Wait::GenerationNotObserved,
            format!("{what}: waiting for its controller to record the new revision"),
        )
    } else if status.abort {
        waiting(
            Wait::RolloutAborted,
            format!("{what} was aborted: traffic is back on the stable version"),
        )
    } else if spec.paused || status.controller_pause || !status.pause_conditions.is_empty() {
        waiting(
            Wait::RolloutPaused,
            format!("{what} is paused before it was promoted"),
        )
    } else if status.stable_rs != status.current_pod_hash
        || (blue_green && status.blue_green.active_selector != status.current_pod_hash)
    {
        waiting(
            Wait::ReplicasNotReady,
            format!(
                "{what}: {} is not promoted yet (stable {})",
                status.current_pod_hash, status.stable_rs
            ),
        )
    } else if !(status.updated_replicas == out.replicas
        && status.available_replicas >= out.replicas)
    {
        waiting(
            Wait::ReplicasNotReady,
            format!(
                "{what}: {} of {} replicas updated, {} available",
                status.updated_replicas, out.replicas, status.available_replicas
            ),
        )
    } else if out.old_pods > 0 {
        old_pods_remain(&what, out.old_pods, old_terminating)
    } else {
        Verdict::RolledOut
    };
    out.paused_by_other()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::{Value, json};

    fn workload() -> Workload {
        serde_json::from_value(json!({"kind": "Rollout", "name": "web",
            "version": {"image": {"container": "app", "tag": "2"}}}))
        .unwrap()
    }

    fn template(tag: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "app", "image": format!("shop/web:{tag}")}]}})
    }

    /// Rollout `web` (2 replicas) on `tag`, promoted: current and stable
    /// hash `h<tag>`.
    fn rollout(tag: &str) -> Value {
        let hash = format!("h{tag}");
        json!({
            "metadata": {"name": "web", "uid": "r-1", "generation": 3},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template(tag),
                     "strategy": {"canary": {}}},
            "status": {"currentPodHash": hash, "stableRS": hash, "observedGeneration": "3",
                       "updatedReplicas": 2, "availableReplicas": 2, "replicas": 2}
        })
    }

    fn replica_set(tag: &str, at: i64) -> ReplicaSet {
        let mut rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": format!("web-h{tag}"), "labels": {ARGO_HASH_LABEL: format!("h{tag}")},
                         "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web",
                                              "uid": "r-1", "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(tag)}
        }))
        .unwrap();
        rs.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(at).unwrap()));
        rs
    }

    fn pod(tag: &str, terminating: bool) -> Pod {
        let mut p: Pod =
            serde_json::from_value(json!({"metadata": {"name": format!("web-h{tag}-x"),
            "labels": {"app": "web", ARGO_HASH_LABEL: format!("h{tag}")}}}))
            .unwrap();
        if terminating {
            p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        p
    }

    fn with(mut v: Value, edit: impl FnOnce(&mut Value)) -> Value {
        edit(&mut v);
        v
    }

    #[test]
    fn each_way_an_argo_rollout_holds_or_counts_as_rolled_out() {
        let sets = [
            replica_set("1", 10),
            replica_set("2", 20),
            replica_set("3", 30),
        ];
        let new = || vec![pod("2", false), pod("2", false)];
        let cases: Vec<(&str, Value, Vec<Pod>, Option<Wait>)> = vec![
            ("promoted, only 2 left", rollout("2"), new(), None),
            ("promoted to 3", rollout("3"), vec![pod("3", false)], None),
            (
                "canary: 2 current, 1 still stable",
                with(rollout("2"), |v| v["status"]["stableRS"] = json!("h1")),
                new(),
                Some(Wait::ReplicasNotReady),
            ),
            (
                "blue-green: not yet active",
                with(rollout("2"), |v| {
                    v["spec"]["strategy"] = json!({"blueGreen": {}});
                    v["status"]["blueGreen"] = json!({"activeSelector": "h1"});
                }),
                new(),
                Some(Wait::ReplicasNotReady),
            ),
            (
                "blue-green: active, the old stack kept by scaleDownDelaySeconds",
                with(rollout("2"), |v| {
                    v["spec"]["strategy"] = json!({"blueGreen": {}});
                    v["status"]["blueGreen"] = json!({"activeSelector": "h2"});
                }),
                vec![pod("2", false), pod("2", false), pod("1", false)],
                Some(Wait::OldPodsRemain),
            ),
            (
                "aborted",
                with(rollout("2"), |v| v["status"]["abort"] = json!(true)),
                new(),
                Some(Wait::RolloutAborted),
            ),
            (
                "paused at a canary step",
                with(rollout("2"), |v| {
                    v["status"]["pauseConditions"] = json!([{"reason": "CanaryPauseStep"}])
                }),
                new(),
                Some(Wait::RolloutPaused),
            ),
            (
                "generation not observed",
                with(rollout("2"), |v| {
                    v["status"]["observedGeneration"] = json!("2")
                }),
                new(),
                Some(Wait::GenerationNotObserved),
            ),
            (
                "rolled back to 1",
                rollout("1"),
                vec![pod("1", false)],
                Some(Wait::RolledBack),
            ),
        ];
        for (case, r, pods, want) in cases {
            let r: ArgoRollout = serde_json::from_value(r).unwrap();
            let a = assess(&workload(), "users", Some(&r), &sets, &pods);
            assert_eq!(a.verdict.wait(), want, "{case}: {:?}", a.verdict);
        }
    }

    #[test]
    fn a_workload_ref_rollout_is_refused_with_the_field_named() {
        let r: ArgoRollout = serde_json::from_value(with(rollout("2"), |v| {
            v["spec"]["workloadRef"] = json!({"kind": "Deployment", "name": "web"});
            v["spec"].as_object_mut().unwrap().remove("template");
        }))
        .unwrap();
        let a = assess(&workload(), "users", Some(&r), &[], &[]);
        assert!(matches!(a.problem, Some(Problem::Unusable(m)) if m.contains("workloadRef")));
    }
}
