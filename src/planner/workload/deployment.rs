//! A Deployment's rollout, judged from the Deployment, its ReplicaSets and
//! the pods its selector matches (Terminating ones included), with its
//! unit tests, one per way it can fail to count as rolled out.

use super::history::{History, Revision};
use super::{Assessment, Verdict, Wait, controlled_by, old_pods_remain, waiting};
use crate::api::Workload;
use crate::api::keys::{REVISION_ANNOTATION, TEMPLATE_HASH_LABEL};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Assesses one workload from the Deployment (if it exists), the
/// ReplicaSets in its namespace and the pods its selector matches.
pub fn assess(
    workload: &Workload,
    rollout_name: &str,
    deployment: Option<&Deployment>,
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
) -> Assessment {
    let Some(deploy) = deployment else {
        return Assessment::not_found(workload);
    };
    let mut out = Assessment::new(workload);
    let spec = deploy.spec.clone().unwrap_or_default();
    let status = deploy.status.clone().unwrap_or_default();
    out.replicas = spec.replicas.unwrap_or(1);
    out.held(spec.paused.unwrap_or(false), &deploy.metadata, rollout_name);
    if let Some(missing) = out.missing_container(workload, &spec.template) {
        return missing;
    }

    let owned: Vec<&ReplicaSet> = replica_sets
        .iter()
        .filter(|rs| controlled_by(&rs.metadata, deploy.metadata.uid.as_ref()))
        .collect();
    let revision = deploy.annotations().get(REVISION_ANNOTATION);
    let current = owned
        .iter()
        .find(|rs| revision.is_some() && rs.annotations().get(REVISION_ANNOTATION) == revision)
        .map(|rs| recorded(rs));
    let history = History::new(
        owned.iter().map(|rs| recorded(rs)).collect(),
        &workload.version,
    );
    // A pod counts as new when its ReplicaSet does; a pod of no
    // ReplicaSet of this Deployment counts as old.
    let old_terminating = out.count(pods, |pod| {
        history.runs_new(pod.labels().get(TEMPLATE_HASH_LABEL).map(String::as_str))
    });

    let generation_observed =
        status.observed_generation.unwrap_or(0) >= deploy.metadata.generation.unwrap_or(0);
    let template = history
        .judge(
            &format!("Deployment {}", workload.name),
            &spec.template,
            current.as_ref(),
            generation_observed,
        )
        .map(|note| out.note = note);

    out.verdict = if let Err(verdict) = template {
        verdict
    } else if status.observed_generation.unwrap_or(0) < deploy.metadata.generation.unwrap_or(0) {
        waiting(
            Wait::GenerationNotObserved,
            format!(
                "Deployment {} generation {} not observed yet",
                workload.name,
                deploy.metadata.generation.unwrap_or(0)
            ),
        )
    } else if progress_deadline_exceeded(deploy) {
        waiting(
            Wait::ProgressDeadlineExceeded,
            format!(
                "Deployment {} exceeded its progress deadline",
                workload.name
            ),
        )
    } else if !(status.updated_replicas.unwrap_or(0) == out.replicas
        && status.replicas.unwrap_or(0) == out.replicas
        && status.available_replicas.unwrap_or(0) == out.replicas)
    {
        waiting(
            Wait::ReplicasNotReady,
            format!(
                "Deployment {}: {} of {} replicas updated, {} available, {} total",
                workload.name,
                status.updated_replicas.unwrap_or(0),
                out.replicas,
                status.available_replicas.unwrap_or(0),
                status.replicas.unwrap_or(0)
            ),
        )
    } else if current.as_ref().and_then(|r| r.hash.as_ref()).is_none() {
        waiting(
            Wait::NewReplicaSetNotFound,
            format!(
                "Deployment {}: ReplicaSet of the current revision not found",
                workload.name
            ),
        )
    } else if out.old_pods > 0 {
        old_pods_remain(
            &format!("Deployment {}", workload.name),
            out.old_pods,
            old_terminating,
        )
    } else {
        Verdict::RolledOut
    };
    out.paused_by_other()
}

/// A ReplicaSet as a recorded revision of its Deployment.
fn recorded(rs: &ReplicaSet) -> Revision {
    Revision {
        hash: rs.labels().get(TEMPLATE_HASH_LABEL).cloned(),
        template: rs.spec.as_ref().and_then(|s| s.template.clone()),
        created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
    }
}

fn progress_deadline_exceeded(deploy: &Deployment) -> bool {
    deploy
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conds| {
            conds.iter().any(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::super::Problem;
    use super::*;
    use crate::api::keys::PAUSED_BY_ANNOTATION;
    use serde_json::json;

    fn workload() -> Workload {
        serde_json::from_value(
            json!({"name": "api", "version": {"image": {"container": "api", "tag": "2.0.0"}}}),
        )
        .unwrap()
    }

    fn template(image: &str) -> serde_json::Value {
        json!({"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": image}]}})
    }

    /// A Deployment at revision 2 running `image`, fully rolled out by its counters.
    fn deployment(image: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "api", "uid": "d-1", "generation": 2,
                         "annotations": {REVISION_ANNOTATION: "2"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}}, "template": template(image)},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
        }))
        .unwrap()
    }

    fn replica_set(hash: &str, revision: &str, image: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": format!("api-{hash}"), "labels": {TEMPLATE_HASH_LABEL: hash},
                         "annotations": {REVISION_ANNOTATION: revision},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api",
                                              "uid": "d-1", "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": template(image)}
        }))
        .unwrap()
    }

    fn pod(hash: &str, terminating: bool) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("api-{hash}-x"), "labels": {"app": "api", TEMPLATE_HASH_LABEL: hash}}
        }))
        .unwrap();
        if terminating {
            p.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            );
        }
        p
    }

    fn sets() -> Vec<ReplicaSet> {
        vec![
            replica_set("old", "1", "shop/api:1.0.0"),
            replica_set("new", "2", "shop/api:2.0.0"),
        ]
    }

    fn verdict(d: &Deployment, rs: &[ReplicaSet], pods: &[Pod]) -> Verdict {
        assess(&workload(), "users", Some(d), rs, pods).verdict
    }

    #[test]
    fn rolled_out_when_only_new_pods_exist() {
        let d = deployment("shop/api:2.0.0");
        let a = assess(
            &workload(),
            "users",
            Some(&d),
            &sets(),
            &[pod("new", false), pod("new", false)],
        );
        assert_eq!(a.verdict, Verdict::RolledOut);
        assert_eq!((a.new_pods, a.old_pods), (2, 0));
    }

    #[test]
    fn a_terminating_old_pod_holds_the_rollout() {
        let d = deployment("shop/api:2.0.0");
        let pods = [pod("new", false), pod("new", false), pod("old", true)];
        let a = assess(&workload(), "users", Some(&d), &sets(), &pods);
        assert_eq!(a.verdict.clone().wait(), Some(Wait::OldPodsRemain));
        assert_eq!(a.old_pods, 1);
        assert!(matches!(a.verdict, Verdict::Waiting(_, m) if m.contains("1 terminating")));
    }

    #[test]
    fn waiting_for_the_template_names_the_running_and_the_wanted_version() {
        let d = deployment("registry:5000/shop/api:1.0.0");
        let message = |v: Verdict| match v {
            Verdict::Waiting(Wait::TemplateNotUpdated, m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message(verdict(&d, &[], &[])),
            "Deployment api runs 1.0.0, waiting for 2.0.0"
        );
        let by_labels: Workload = serde_json::from_value(
            json!({"name": "api", "version": {"labels": {"app": "api", "track": "v2"}}}),
        )
        .unwrap();
        let a = assess(&by_labels, "users", Some(&d), &[], &[]);
        assert_eq!(
            message(a.verdict),
            "Deployment api runs app=api,track=<unset>, waiting for app=api,track=v2"
        );
    }

    #[test]
    fn a_pause_set_by_someone_else_is_named_and_not_ours() {
        let mut d = deployment("shop/api:1.0.0");
        d.spec.as_mut().unwrap().paused = Some(true);
        let a = assess(&workload(), "users", Some(&d), &[], &[]);
        assert!(a.paused && !a.paused_by_us);
        assert!(
            matches!(&a.verdict, Verdict::Waiting(_, m) if m.ends_with("(paused by someone else: bellows waits and never resumes it)")),
            "{:?}",
            a.verdict
        );
        d.metadata
            .annotations
            .get_or_insert_default()
            .insert(PAUSED_BY_ANNOTATION.into(), "users".into());
        let a = assess(&workload(), "users", Some(&d), &[], &[]);
        assert!(a.paused_by_us);
        assert!(matches!(&a.verdict, Verdict::Waiting(_, m) if !m.contains("someone else")));
    }

    #[test]
    fn a_terminating_new_pod_does_not_hold_the_rollout() {
        let d = deployment("shop/api:2.0.0");
        let pods = [pod("new", false), pod("new", false), pod("new", true)];
        assert_eq!(verdict(&d, &sets(), &pods), Verdict::RolledOut);
    }

    #[test]
    fn stale_observed_generation_holds_the_rollout() {
        let mut d = deployment("shop/api:2.0.0");
        d.status.as_mut().unwrap().observed_generation = Some(1);
        assert_eq!(
            verdict(&d, &sets(), &[pod("new", false)]).wait(),
            Some(Wait::GenerationNotObserved)
        );
    }

    #[test]
    fn counters_must_all_match_spec_replicas() {
        for field in ["updatedReplicas", "availableReplicas", "replicas"] {
            let mut v = serde_json::to_value(deployment("shop/api:2.0.0")).unwrap();
            v["status"][field] = json!(1);
            let d: Deployment = serde_json::from_value(v).unwrap();
            assert_eq!(
                verdict(&d, &sets(), &[]).wait(),
                Some(Wait::ReplicasNotReady),
                "{field}"
            );
        }
    }

    #[test]
    fn template_not_updated_versus_rolled_back() {
        let d = deployment("shop/api:1.0.0");
        let only_old = [replica_set("old", "1", "shop/api:1.0.0")];
        assert_eq!(
            verdict(&d, &only_old, &[]).wait(),
            Some(Wait::TemplateNotUpdated)
        );
        assert_eq!(verdict(&d, &sets(), &[]).wait(), Some(Wait::RolledBack));
    }

    #[test]
    fn progress_deadline_exceeded_is_reported() {
        let mut v = serde_json::to_value(deployment("shop/api:2.0.0")).unwrap();
        v["status"]["availableReplicas"] = json!(1);
        v["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        let d: Deployment = serde_json::from_value(v).unwrap();
        assert_eq!(
            verdict(&d, &sets(), &[]).wait(),
            Some(Wait::ProgressDeadlineExceeded)
        );
    }

    #[test]
    fn missing_deployment_or_container_is_a_problem() {
        assert_eq!(
            assess(&workload(), "users", None, &[], &[]).problem,
            Some(Problem::NotFound)
        );
        let mut w = workload();
        w.version.image.as_mut().unwrap().container = "sidecar".into();
        let d = deployment("shop/api:2.0.0");
        assert_eq!(
            assess(&w, "users", Some(&d), &sets(), &[]).problem,
            Some(Problem::ContainerNotFound("sidecar".into()))
        );
    }

    #[test]
    fn paused_by_us_only_with_our_annotation() {
        let mut d = deployment("shop/api:2.0.0");
        d.spec.as_mut().unwrap().paused = Some(true);
        assert!(!assess(&workload(), "users", Some(&d), &sets(), &[]).paused_by_us);
        d.annotations_mut()
            .insert(PAUSED_BY_ANNOTATION.into(), "users".into());
        let a = assess(&workload(), "users", Some(&d), &sets(), &[]);
        assert!(a.paused && a.paused_by_us);
    }

    /// A ReplicaSet of `image` at `revision`, created `at` seconds after
    /// the epoch.
    fn created(hash: &str, revision: &str, image: &str, at: i64) -> ReplicaSet {
        let mut rs = replica_set(hash, revision, image);
        rs.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::from_second(at).unwrap(),
            ));
        rs
    }

    /// The Deployment running `image` at `revision`.
    fn at_revision(image: &str, revision: &str) -> Deployment {
        let mut d = deployment(image);
        d.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION_ANNOTATION.into(), revision.into());
        d
    }

    #[test]
    fn a_later_release_is_a_roll_forward_not_a_rollback() {
        // 1.0.0, then 2.0.0 (the wanted version), then 3.0.0 during bake.
        let sets = [
            created("v1", "1", "shop/api:1.0.0", 0),
            created("v2", "2", "shop/api:2.0.0", 100),
            created("v3", "3", "shop/api:3.0.0", 200),
        ];
        let d = at_revision("shop/api:3.0.0", "3");
        let a = assess(&workload(), "users", Some(&d), &sets, &[pod("v3", false)]);
        assert_eq!(a.verdict, Verdict::RolledOut);
        assert_eq!(
            a.note.as_deref(),
            Some("Deployment api runs 3.0.0, newer than 2.0.0")
        );
        // 2.0.0 pods still draining were built on the expanded schema too;
        // a 1.0.0 pod was not.
        let draining = [pod("v3", false), pod("v2", true)];
        assert_eq!(verdict(&d, &sets, &draining), Verdict::RolledOut);
        let old = [pod("v3", false), pod("v1", true)];
        assert_eq!(verdict(&d, &sets, &old).wait(), Some(Wait::OldPodsRemain));
    }

    #[test]
    fn an_undo_is_a_rollback_and_a_release_after_it_rolls_forward() {
        // `kubectl rollout undo` reuses 1.0.0's ReplicaSet at a new revision.
        let mut sets = vec![
            created("v1", "3", "shop/api:1.0.0", 0),
            created("v2", "2", "shop/api:2.0.0", 100),
        ];
        let back = at_revision("shop/api:1.0.0", "3");
        match verdict(&back, &sets, &[pod("v1", false)]) {
            Verdict::Waiting(Wait::RolledBack, m) => assert_eq!(
                m,
                "Deployment api was rolled back: it runs 1.0.0, older than 2.0.0, which ran here before"
            ),
            other => panic!("{other:?}"),
        }
        // Then 3.0.0 ships: forward again.
        sets.push(created("v3", "4", "shop/api:3.0.0", 300));
        let forward = at_revision("shop/api:3.0.0", "4");
        assert_eq!(
            verdict(&forward, &sets, &[pod("v3", false)]),
            Verdict::RolledOut
        );
        // A hotfix of the old line shipped after 2.0.0 is still older.
        sets.push(created("v11", "5", "shop/api:1.1.0", 400));
        let hotfix = at_revision("shop/api:1.1.0", "5");
        assert_eq!(
            verdict(&hotfix, &sets, &[pod("v11", false)]).wait(),
            Some(Wait::RolledBack)
        );
    }

    #[test]
    fn versions_without_an_order_are_ordered_by_when_their_replica_sets_were_created() {
        let w: Workload = serde_json::from_value(
            json!({"name": "api", "version": {"image": {"container": "api", "tag": "abc123"}}}),
        )
        .unwrap();
        let wanted = created("a", "2", "shop/api:abc123", 100);
        for (at, rolled_out) in [(101, true), (100, false), (50, false)] {
            let sets = [wanted.clone(), created("d", "3", "shop/api:def456", at)];
            let d = at_revision("shop/api:def456", "3");
            let v = assess(&w, "users", Some(&d), &sets, &[pod("d", false)]).verdict;
            assert_eq!(
                v == Verdict::RolledOut,
                rolled_out,
                "def456 created at {at}, abc123 at 100: {v:?}"
            );
        }
    }

    #[test]
    fn version_names_are_ordered_number_by_number() {
        use std::cmp::Ordering::*;
        for (a, b, order) in [
            ("3.0.0", "2.0.0", Some(Greater)),
            ("v2.10", "v2.9", Some(Greater)),
            ("2", "2.0.0", Some(Equal)),
            ("1.1.0", "2.0.0", Some(Less)),
            ("2.0.0-rc1", "2.0.0", None),
            ("latest", "2.0.0", None),
        ] {
            assert_eq!(super::super::version_order(a, b), order, "{a} vs {b}");
        }
    }
}
