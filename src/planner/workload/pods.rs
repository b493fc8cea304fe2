//! Pods a label selector selects, whatever created them: each that still
//! runs (not Succeeded or Failed) must run the new version or one named
//! later, judged by its own spec (without a
//! revision history, a version that cannot be ordered by its name counts
//! as older). A selector that selects nothing holds: no pod is never proof
//! that the old version is gone.

use super::{
    Assessment, Verdict, Wait, pod_runs_new, pod_template, running_version, stopped, waiting,
};
use crate::api::Workload;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Assesses the pods `workload.selector` selected, Terminating ones
/// included.
pub fn assess(workload: &Workload, selector: &str, pods: &[Pod]) -> Assessment {
    let pods: Vec<Pod> = pods.iter().filter(|p| !stopped(p)).cloned().collect();
    let pods = pods.as_slice();
    let mut out = Assessment::new(workload);
    let what = format!("Pods {}", workload.name);
    let old_terminating = out.count(pods, |p| pod_runs_new(p, &workload.version));
    out.replicas = out.new_pods + out.old_pods;
    let first_old = pods.iter().find(|p| !pod_runs_new(p, &workload.version));
    out.verdict = match first_old {
        _ if pods.is_empty() => waiting(
            Wait::NoPodsSelected,
            format!("{what}: selector {selector} selects no pod"),
        ),
        Some(pod) => waiting(
            Wait::OldPodsRemain,
            format!(
                "{what}: {} pod(s) not on the new version ({old_terminating} terminating), e.g. {} runs {}",
                out.old_pods,
                pod.name_any(),
                running_version(&pod_template(pod), &workload.version)
            ),
        ),
        None => Verdict::RolledOut,
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn workload() -> Workload {
        serde_json::from_value(json!({"kind": "Pods", "name": "workers",
            "selector": {"matchLabels": {"role": "worker"}},
            "version": {"image": {"container": "app", "tag": "2.0.0"}}}))
        .unwrap()
    }

    fn pod(name: &str, image: &str, terminating: bool) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"role": "worker"}},
            "spec": {"containers": [{"name": "app", "image": image}]}
        }))
        .unwrap();
        if terminating {
            p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        p
    }

    #[test]
    fn every_selected_pod_must_run_the_new_version_and_none_is_not_enough() {
        let cases: Vec<(&str, Vec<Pod>, Option<Wait>)> = vec![
            ("no pod selected", vec![], Some(Wait::NoPodsSelected)),
            (
                "only a Failed 1.0.0 pod",
                vec![{
                    let mut p = pod("a", "w:1.0.0", false);
                    p.status = Some(serde_json::from_value(json!({"phase": "Failed"})).unwrap());
                    p
                }],
                Some(Wait::NoPodsSelected),
            ),
            (
                "all on 2.0.0 or later",
                vec![pod("a", "w:2.0.0", false), pod("b", "w:3.1", false)],
                None,
            ),
            (
                "a 1.0.0 pod Terminating",
                vec![pod("a", "w:2.0.0", false), pod("b", "w:1.0.0", true)],
                Some(Wait::OldPodsRemain),
            ),
            (
                "a digest cannot be ordered",
                vec![pod("a", "w@sha256:abc", false)],
                Some(Wait::OldPodsRemain),
            ),
            (
                "a pod without the container",
                vec![pod("a", "w:2.0.0", false), {
                    let mut p = pod("b", "w:2.0.0", false);
                    p.spec.as_mut().unwrap().containers[0].name = "other".into();
                    p
                }],
                Some(Wait::OldPodsRemain),
            ),
        ];
        for (case, pods, want) in cases {
            let a = assess(&workload(), "role=worker", &pods);
            let got = a.verdict.wait();
            assert_eq!(got, want, "{case}: {:?}", a.verdict);
        }
        let a = assess(
            &workload(),
            "role=worker",
            &[pod("a", "w:2.0.0", false), pod("b", "w:1.0.0", true)],
        );
        assert_eq!(
            a.verdict,
            Verdict::Waiting(
                Wait::OldPodsRemain,
                "Pods workers: 1 pod(s) not on the new version (1 terminating), e.g. b runs 1.0.0"
                    .into()
            )
        );
        assert_eq!((a.new_pods, a.old_pods), (1, 1));
    }
}
