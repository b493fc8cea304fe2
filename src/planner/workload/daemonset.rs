//! A DaemonSet's rollout, judged from the DaemonSet, its
//! ControllerRevisions and the pods its selector matches (Terminating ones
//! included): every scheduled pod updated and available, no pod of an
//! older revision on any node.

use super::history::{History, Revision};
use super::{Assessment, Verdict, Wait, controlled_by, old_pods_remain, waiting};
use crate::api::Workload;
use crate::api::keys::REVISION_HASH_LABEL;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Assesses a DaemonSet (if it exists) from its revisions and the pods its
/// selector matches.
pub fn assess(
    workload: &Workload,
    set: Option<&DaemonSet>,
    revisions: &[ControllerRevision],
    pods: &[Pod],
) -> Assessment {
    let Some(set) = set else {
        return Assessment::not_found(workload);
    };
    let spec = set.spec.clone().unwrap_or_default();
    let status = set.status.clone().unwrap_or_default();
    let mut out = Assessment::new(workload);
    if let Some(missing) = out.missing_container(workload, &spec.template) {
        return missing;
    }
    out.replicas = status.desired_number_scheduled;
    let what = format!("DaemonSet {}", workload.name);

    let owned: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| controlled_by(&r.metadata, set.metadata.uid.as_ref()))
        .collect();
    let hash = |r: &ControllerRevision| r.labels().get(REVISION_HASH_LABEL).cloned();
    // The controller records the current template as the highest revision.
    let current = owned
        .iter()
        .max_by_key(|r| r.revision)
        .map(|r| Revision::controller(r, hash(r)));
    let history = History::new(
        owned
            .iter()
            .map(|r| Revision::controller(r, hash(r)))
            .collect(),
        &workload.version,
    );
    let old_terminating = out.count(pods, |pod| {
        history.runs_new(pod.labels().get(REVISION_HASH_LABEL).map(String::as_str))
    });
    let generation_observed =
        status.observed_generation.unwrap_or(0) >= set.metadata.generation.unwrap_or(0);
    let template = history
        .judge(&what, &spec.template, current.as_ref(), generation_observed)
        .map(|note| out.note = note);

    let desired = status.desired_number_scheduled;
    out.verdict = if let Err(verdict) = template {
        verdict
    } else if !generation_observed {
        waiting(
            Wait::GenerationNotObserved,
            format!(
                "{what} generation {} not observed yet",
                set.metadata.generation.unwrap_or(0)
            ),
        )
    } else if !(status.updated_number_scheduled.unwrap_or(0) == desired
        && status.number_available.unwrap_or(0) == desired
        && status.current_number_scheduled == desired)
    {
        waiting(
            Wait::ReplicasNotReady,
            format!(
                "{what}: {} of {desired} scheduled pods updated, {} available",
                status.updated_number_scheduled.unwrap_or(0),
                status.number_available.unwrap_or(0),
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
        serde_json::from_value(json!({"kind": "DaemonSet", "name": "agent",
            "version": {"labels": {"version": "2"}}}))
        .unwrap()
    }

    fn template(v: &str) -> Value {
        json!({"metadata": {"labels": {"app": "agent", "version": v}},
               "spec": {"containers": [{"name": "app", "image": "shop/agent"}]}})
    }

    /// DaemonSet `agent` on version `v`, on 2 nodes, every counter at 2.
    fn set(v: &str) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "uid": "d-1", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template(v)},
            "status": {"observedGeneration": 2, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                       "updatedNumberScheduled": 2, "numberAvailable": 2, "numberMisscheduled": 0, "numberReady": 2}
        }))
        .unwrap()
    }

    fn revision(v: &str, n: i64) -> ControllerRevision {
        let mut r: ControllerRevision = serde_json::from_value(json!({
            "metadata": {"name": format!("agent-h{v}"), "labels": {REVISION_HASH_LABEL: format!("h{v}")},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                              "uid": "d-1", "controller": true}]},
            "revision": n,
            "data": {"spec": {"template": template(v)}}
        }))
        .unwrap();
        r.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(n * 10).unwrap()));
        r
    }

    fn pod(node: usize, v: &str, terminating: bool) -> Pod {
        let mut p: Pod =
            serde_json::from_value(json!({"metadata": {"name": format!("agent-{node}"),
            "labels": {"app": "agent", REVISION_HASH_LABEL: format!("h{v}")}}}))
            .unwrap();
        if terminating {
            p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        p
    }

    #[test]
    fn each_way_a_daemonset_holds_or_counts_as_rolled_out() {
        let revisions = [revision("1", 1), revision("2", 2), revision("3", 3)];
        let mut unavailable = set("2");
        unavailable.status.as_mut().unwrap().number_available = Some(1);
        let mut unobserved = set("2");
        unobserved.status.as_mut().unwrap().observed_generation = Some(1);
        let cases: Vec<(&str, DaemonSet, Vec<Pod>, Option<Wait>)> = vec![
            (
                "both nodes on 2",
                set("2"),
                vec![pod(0, "2", false), pod(1, "2", false)],
                None,
            ),
            (
                "rolled forward to 3",
                set("3"),
                vec![pod(0, "3", false), pod(1, "3", false)],
                None,
            ),
            (
                "an old pod Terminating",
                set("2"),
                vec![pod(0, "2", false), pod(1, "2", false), pod(1, "1", true)],
                Some(Wait::OldPodsRemain),
            ),
            (
                "a pod not available",
                unavailable,
                vec![pod(0, "2", false), pod(1, "2", false)],
                Some(Wait::ReplicasNotReady),
            ),
            (
                "spec not observed",
                unobserved,
                vec![],
                Some(Wait::GenerationNotObserved),
            ),
            (
                "rolled back to 1",
                set("1"),
                vec![pod(0, "1", false)],
                Some(Wait::RolledBack),
            ),
        ];
        for (case, s, pods, want) in cases {
            let a = assess(&workload(), Some(&s), &revisions, &pods);
            let got = a.verdict.wait();
            assert_eq!(got, want, "{case}: {:?}", a.verdict);
        }
        let a = assess(
            &workload(),
            Some(&set("3")),
            &revisions,
            &[pod(0, "3", false)],
        );
        assert_eq!(
            a.note.as_deref(),
            Some("DaemonSet agent runs version=3, newer than version=2")
        );
    }
}
