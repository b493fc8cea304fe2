//! A StatefulSet's rollout, judged from the StatefulSet, its
//! ControllerRevisions and the pods its selector matches (Terminating ones
//! included). Pods name their revision in `controller-revision-hash`; a
//! `partition` or the `OnDelete` strategy keeps pods of an older revision
//! by design, and each holds contract with its own reason.

use super::history::{History, Revision};
use super::{Assessment, Verdict, Wait, controlled_by, old_pods_remain, waiting};
use crate::api::Workload;
use crate::api::keys::REVISION_HASH_LABEL;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Assesses a StatefulSet (if it exists) from its revisions and the pods
/// its selector matches.
pub fn assess(
    workload: &Workload,
    rollout_name: &str,
    set: Option<&StatefulSet>,
    revisions: &[ControllerRevision],
    pods: &[Pod],
) -> Assessment {
    let Some(set) = set else {
        return Assessment::not_found(workload);
    };
    let spec = set.spec.clone().unwrap_or_default();
    let status = set.status.clone().unwrap_or_default();
    let mut out = Assessment::new(workload);
    out.replicas = spec.replicas.unwrap_or(1);
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let on_delete = strategy.type_.as_deref() == Some("OnDelete");
    out.held(partition > 0 || on_delete, &set.metadata, rollout_name);
    if let Some(missing) = out.missing_container(workload, &spec.template) {
        return missing;
    }
    let what = format!("StatefulSet {}", workload.name);

    // A StatefulSet's pods carry the name of their ControllerRevision.
    let history = History::new(
        revisions
            .iter()
            .filter(|r| controlled_by(&r.metadata, set.metadata.uid.as_ref()))
            .map(|r| Revision::controller(r, Some(r.name_any())))
            .collect(),
        &workload.version,
    );
    let update = status.update_revision.as_deref();
    let current = history.find(update);
    let old_terminating = out.count(pods, |pod| {
        history.runs_new(pod.labels().get(REVISION_HASH_LABEL).map(String::as_str))
    });
    let generation_observed =
        status.observed_generation.unwrap_or(0) >= set.metadata.generation.unwrap_or(0);
    let template = history
        .judge(&what, &spec.template, current, generation_observed)
        .map(|note| out.note = note);

    out.verdict = if let Err(verdict) = template {
        verdict
    } else if !generation_observed || current.is_none() {
        waiting(
            Wait::GenerationNotObserved,
            format!("{what}: waiting for its controller to record the new revision"),
        )
    } else if out.old_pods > 0 && on_delete {
        waiting(
            Wait::OnDeleteHolds,
            format!(
                "{what}: updateStrategy OnDelete keeps {} pod(s) of an older version until they are deleted",
                out.old_pods
            ),
        )
    } else if out.old_pods > 0 && partition > 0 {
        waiting(
            Wait::PartitionHolds,
            format!(
                "{what}: partition {partition} keeps {} pod(s) on an older version",
                out.old_pods
            ),
        )
    } else if !(status.replicas == out.replicas
        && status.ready_replicas.unwrap_or(0) == out.replicas
        && status.updated_replicas.unwrap_or(0) == out.replicas)
    {
        waiting(
            Wait::ReplicasNotReady,
            format!(
                "{what}: {} of {} replicas updated, {} ready, {} total",
                status.updated_replicas.unwrap_or(0),
                out.replicas,
                status.ready_replicas.unwrap_or(0),
                status.replicas
            ),
        )
    } else if out.old_pods > 0 {
        old_pods_remain(&what, out.old_pods, old_terminating)
    } else {
        Verdict::RolledOut
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::{Value, json};

    fn workload() -> Workload {
        serde_json::from_value(json!({"kind": "StatefulSet", "name": "db",
            "version": {"image": {"container": "app", "tag": "2.0.0"}}}))
        .unwrap()
    }

    fn template(tag: &str) -> Value {
        json!({"metadata": {"labels": {"app": "db"}},
               "spec": {"containers": [{"name": "app", "image": format!("shop/db:{tag}")}]}})
    }

    /// StatefulSet `db` (3 replicas) on `tag`, its update revision `db-<tag>`,
    /// every counter at 3; `strategy` is its updateStrategy.
    fn set(tag: &str, strategy: Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "uid": "s-1", "generation": 4},
            "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": template(tag), "updateStrategy": strategy},
            "status": {"observedGeneration": 4, "replicas": 3, "readyReplicas": 3,
                       "updatedReplicas": 3, "currentReplicas": 3,
                       "currentRevision": format!("db-{tag}"), "updateRevision": format!("db-{tag}")}
        }))
        .unwrap()
    }

    /// The ControllerRevision of `tag`, created `at` seconds after the epoch.
    fn revision(tag: &str, at: i64) -> ControllerRevision {
        let mut r: ControllerRevision = serde_json::from_value(json!({
            "metadata": {"name": format!("db-{tag}"),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                                              "uid": "s-1", "controller": true}]},
            "revision": at,
            "data": {"spec": {"template": template(tag)}}
        }))
        .unwrap();
        r.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(at).unwrap()));
        r
    }

    fn pod(i: usize, tag: &str, terminating: bool) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({"metadata": {"name": format!("db-{i}"),
            "labels": {"app": "db", REVISION_HASH_LABEL: format!("db-{tag}")}}}))
        .unwrap();
        if terminating {
            p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        p
    }

    fn revisions() -> Vec<ControllerRevision> {
        vec![
            revision("1.0.0", 10),
            revision("2.0.0", 20),
            revision("3.0.0", 30),
        ]
    }

    fn rolling() -> Value {
        json!({"type": "RollingUpdate"})
    }

    #[test]
    fn each_way_a_statefulset_holds_or_counts_as_rolled_out() {
        let new = |n: usize, tag| (0..n).map(|i| pod(i, tag, false)).collect::<Vec<_>>();
        let mut last_old_terminating = new(2, "2.0.0");
        last_old_terminating.push(pod(2, "1.0.0", true));
        let mut partitioned = set(
            "2.0.0",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}),
        );
        partitioned.status.as_mut().unwrap().updated_replicas = Some(1);
        let mut unobserved = set("2.0.0", rolling());
        unobserved.status.as_mut().unwrap().observed_generation = Some(3);
        let mut not_ready = set("2.0.0", rolling());
        not_ready.status.as_mut().unwrap().ready_replicas = Some(2);
        let mut mixed = new(1, "2.0.0");
        mixed.extend([pod(1, "1.0.0", false), pod(2, "1.0.0", false)]);
        let cases: Vec<(&str, StatefulSet, Vec<Pod>, Option<Wait>)> = vec![
            (
                "all pods on 2.0.0",
                set("2.0.0", rolling()),
                new(3, "2.0.0"),
                None,
            ),
            (
                "rolled forward to 3.0.0",
                set("3.0.0", rolling()),
                new(3, "3.0.0"),
                None,
            ),
            (
                "an old pod Terminating",
                set("2.0.0", rolling()),
                last_old_terminating,
                Some(Wait::OldPodsRemain),
            ),
            (
                "partition keeps two old pods",
                partitioned,
                mixed.clone(),
                Some(Wait::PartitionHolds),
            ),
            (
                "OnDelete keeps two old pods",
                set("2.0.0", json!({"type": "OnDelete"})),
                mixed,
                Some(Wait::OnDeleteHolds),
            ),
            (
                "template still on 1.0.0, never on 2.0.0 before",
                set("1.0.0", rolling()),
                new(3, "1.0.0"),
                Some(Wait::RolledBack),
            ),
            (
                "spec not observed",
                unobserved,
                new(3, "2.0.0"),
                Some(Wait::GenerationNotObserved),
            ),
            (
                "a replica not ready",
                not_ready,
                new(3, "2.0.0"),
                Some(Wait::ReplicasNotReady),
            ),
        ];
        for (case, s, pods, want) in cases {
            let a = assess(&workload(), "users", Some(&s), &revisions(), &pods);
            assert_eq!(a.verdict.wait(), want, "{case}: {:?}", a.verdict);
        }
        // Before 2.0.0 ever ran, 1.0.0 is not updated (not rolled back).
        let a = assess(
            &workload(),
            "users",
            Some(&set("1.0.0", rolling())),
            &[revision("1.0.0", 10)],
            &new(3, "1.0.0"),
        );
        assert_eq!(a.verdict.wait(), Some(Wait::TemplateNotUpdated));
    }

    #[test]
    fn a_statefulset_reports_what_holds_it_and_what_it_runs() {
        let mut s = set(
            "2.0.0",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
        );
        s.status.as_mut().unwrap().updated_replicas = Some(2);
        let pods = [
            pod(0, "1.0.0", false),
            pod(1, "2.0.0", false),
            pod(2, "2.0.0", false),
        ];
        let a = assess(&workload(), "users", Some(&s), &revisions(), &pods);
        assert_eq!((a.new_pods, a.old_pods), (2, 1));
        assert_eq!(
            a.verdict,
            Verdict::Waiting(
                Wait::PartitionHolds,
                "StatefulSet db: partition 1 keeps 1 pod(s) on an older version".into()
            )
        );
        let a = assess(
            &workload(),
            "users",
            Some(&set("3.0.0", rolling())),
            &revisions(),
            &[pod(0, "3.0.0", false)],
        );
        assert_eq!(
            a.note.as_deref(),
            Some("StatefulSet db runs 3.0.0, newer than 2.0.0")
        );
        assert_eq!(
            assess(&workload(), "users", None, &[], &[]).problem,
            Some(super::super::Problem::NotFound)
        );
    }

    #[test]
    fn what_the_gate_holds_stays_known_when_the_container_is_missing() {
        let mut s = set(
            "2.0.0",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": i32::MAX}}),
        );
        s.metadata.annotations = Some(
            [(
                crate::api::keys::PAUSED_BY_ANNOTATION.to_owned(),
                "users".to_owned(),
            )]
            .into(),
        );
        s.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .name = "other".into();
        let a = assess(&workload(), "users", Some(&s), &revisions(), &[]);
        assert_eq!(
            a.problem,
            Some(super::super::Problem::ContainerNotFound("app".into()))
        );
        assert!(a.paused && a.paused_by_us, "{a:?}");
    }
}
