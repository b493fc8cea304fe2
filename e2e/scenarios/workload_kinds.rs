//! Scenario 23: a StatefulSet, a DaemonSet, a CronJob and the pods of a
//! selector gate one contract on the real controllers. The selector first
//! selects nothing (NoPodsSelected: never rolled out by vacuity). The StatefulSet's `partition` keeps a pod on
//! 1 (PartitionHolds), its last old pod then stays Terminating for a while;
//! the CronJob is suspended on 1 (CronJobSuspended), then its template moves
//! to 2 while a Job it made from 1 still runs (OldJobsActive). Contract
//! runs once, after the old Job finished and no pod of 1 is left.

use super::{ContractGuard, STEP};
use crate::harness::kubelet::TERMINATE_AFTER_MS;
use crate::harness::{Env, Ns, psql_job};
use bellows::api::RolloutPhase::*;
use bellows::api::SchemaRollout;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("kinds").await;
    let flag = env.dir.join("kinds-old-job-may-finish");
    create(&ns, &flag).await;
    let version = json!({"image": {"container": "app", "tag": "2"}});
    let spec = json!({
        "workloads": [
            {"kind": "StatefulSet", "name": "db", "version": version},
            {"kind": "DaemonSet", "name": "agent", "version": version},
            {"kind": "CronJob", "name": "report", "version": version},
            {"kind": "Pods", "name": "bare", "selector": {"matchLabels": {"app": "bare"}}, "version": version},
        ],
        "expand": {"job": psql_job("SELECT 1")},
        "contract": {"job": psql_job("SELECT 1")},
    });
    ns.create_and_expand("kinds", spec).await;
    let guard = ContractGuard::start(
        &ns,
        &[
            ("db", "shop/db:2"),
            ("agent", "shop/agent:2"),
            ("report", "shop/report:2"),
            ("bare", "shop/bare:2"),
        ],
    );
    wait_reason(&ns, "report", "CronJobSuspended").await;
    wait_reason(&ns, "bare", "NoPodsSelected").await;
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bare", "labels": {"app": "bare"}},
        "spec": {"containers": [{"name": "app", "image": "shop/bare:2"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &bare)
        .await
        .unwrap();

    // The StatefulSet moves to 2 behind a partition: one pod stays on 1.
    patch(
        &ns,
        "statefulsets",
        "db",
        json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
                        "template": {"spec": {"containers": [{"name": "app", "image": "shop/db:2"}]}}}}),
    )
    .await;
    wait_reason(&ns, "db", "PartitionHolds").await;
    patch(
        &ns,
        "daemonsets",
        "agent",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/agent:2"}]}}}}),
    )
    .await;
    patch(
        &ns,
        "cronjobs",
        "report",
        json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/report:2"}]}}}}}}),
    )
    .await;
    wait_reason(&ns, "report", "OldJobsActive").await;
    let r = ns
        .wait_rollout("kinds", "the DaemonSet rolled out", STEP, |r| {
            workload(r, "agent").is_some_and(|w| w.rolled_out)
        })
        .await;
    assert_eq!(r.status.and_then(|s| s.phase), Some(AwaitingRollout));

    // The partition goes: the last pod of 1 is replaced (Terminating for a
    // while first). The old Job still holds contract.
    patch(
        &ns,
        "statefulsets",
        "db",
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}),
    )
    .await;
    ns.wait_rollout("kinds", "the StatefulSet rolled out", STEP, |r| {
        workload(r, "db").is_some_and(|w| w.rolled_out)
    })
    .await;
    assert!(ns.jobs_of("contract").await.is_empty());
    std::fs::write(&flag, "").unwrap();
    ns.wait_phase("kinds", Succeeded, STEP).await;
    guard.finish().await;
    assert_eq!(ns.jobs_of("contract").await.len(), 1);
    let r = ns.rollout("kinds").await;
    let kinds: Vec<String> = r
        .status
        .unwrap()
        .workloads
        .iter()
        .map(|w| format!("{}/{}", w.kind, w.name))
        .collect();
    assert_eq!(
        kinds,
        [
            "StatefulSet/db",
            "DaemonSet/agent",
            "CronJob/report",
            "Pods/bare"
        ]
    );
}

/// The status of workload `name`.
fn workload<'a>(r: &'a SchemaRollout, name: &str) -> Option<&'a bellows::api::WorkloadStatus> {
    r.status.as_ref()?.workloads.iter().find(|w| w.name == name)
}

/// Waits until workload `name` of rollout `kinds` waits with `reason`.
async fn wait_reason(ns: &Ns, name: &str, reason: &str) {
    ns.wait_rollout("kinds", &format!("{name} held: {reason}"), STEP, |r| {
        workload(r, name).and_then(|w| w.reason.as_deref()) == Some(reason)
    })
    .await;
}

/// A pod template of `app` on version 1; its pods stay Terminating for
/// 1.5 s.
fn template(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}, "annotations": {TERMINATE_AFTER_MS: "1500"}},
           "spec": {"terminationGracePeriodSeconds": 30,
                    "containers": [{"name": "app", "image": format!("shop/{app}:1")}]}})
}

/// The API of CronJobs as this control plane (1.20) serves them.
pub(super) fn cron_jobs(ns: &Ns) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("batch", "v1beta1", "CronJob"));
    Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
}

/// StatefulSet `db` (2 pods), DaemonSet `agent` and CronJob `report`
/// (suspended), all on version 1, plus a Job the CronJob owns from version
/// 1 that runs until `flag` exists.
async fn create(ns: &Ns, flag: &std::path::Path) {
    let pp = PostParams::default();
    stateful_set(ns, 2).await;
    let daemons: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent")}
    }))
    .unwrap();
    Api::<DaemonSet>::namespaced(ns.client.clone(), &ns.name)
        .create(&pp, &daemons)
        .await
        .unwrap();
    let cron = cron_job(ns, true).await;
    let mut old = job_template();
    old["spec"]["containers"][0]["command"] = json!([
        "sh",
        "-c",
        format!("while [ ! -e {} ]; do sleep 0.2; done", flag.display())
    ]);
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "report-27000000",
                     "ownerReferences": [{"apiVersion": "batch/v1beta1", "kind": "CronJob", "name": "report",
                                          "uid": cron.metadata.uid, "controller": true}]},
        "spec": {"backoffLimit": 0, "template": old}
    }))
    .unwrap();
    Api::<Job>::namespaced(ns.client.clone(), &ns.name)
        .create(&pp, &job)
        .await
        .unwrap();
}

/// StatefulSet `db` with `replicas` pods on version 1.
pub(super) async fn stateful_set(ns: &Ns, replicas: i32) {
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"replicas": replicas, "serviceName": "db",
                 "selector": {"matchLabels": {"app": "db"}}, "template": template("db")}
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &set)
        .await
        .unwrap();
}

/// The job template of CronJob `report` on version 1.
fn job_template() -> Value {
    let mut t = template("report");
    t["spec"]["restartPolicy"] = json!("Never");
    t
}

/// CronJob `report` on version 1, scheduled daily at 03:00, `suspend`ed
/// or not.
pub(super) async fn cron_job(ns: &Ns, suspend: bool) -> DynamicObject {
    let cron: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "batch/v1beta1", "kind": "CronJob",
        "metadata": {"name": "report"},
        "spec": {"schedule": "0 3 * * *", "suspend": suspend,
                 "jobTemplate": {"spec": {"template": job_template()}}}
    }))
    .unwrap();
    cron_jobs(ns)
        .create(&PostParams::default(), &cron)
        .await
        .unwrap()
}

/// Applies a strategic merge patch to `name` of `resource` with kubectl.
async fn patch(ns: &Ns, resource: &str, name: &str, patch: Value) {
    let out = ns.kubectl(&["patch", resource, name, "-p", &patch.to_string()]);
    assert!(
        out.status.success(),
        "kubectl patch {resource}/{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
