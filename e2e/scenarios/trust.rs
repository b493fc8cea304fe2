//! Scenario 27: what a namespace editor can write changes nothing. A
//! rollout without a database whose namespace holds forged ledger records
//! saying expand succeeded (the names earlier releases read, and the new
//! name in the wrong namespace) runs expand anyway, once, and records it
//! in the operator's namespace. A Job pre-created under the expand Job's
//! deterministic name, labelled and owned like bellows' own and already
//! succeeded, is never taken for expand: the rollout stalls
//! `JobNameTaken` and runs nothing until the Job is deleted, then creates
//! its own sealed Job and runs expand once. Last, one prune pass of the
//! cluster ledger (the operator's, called here with a home of the
//! scenario's own) against the real API server: the record of a rollout
//! gone longer than the retention is deleted, that of a newly gone one
//! marked, that of a re-created one unmarked, the rest left alone.

use super::STEP;
use crate::harness::{Env, Ns, psql_job, recording_sql, workload};
use bellows::api::RolloutPhase::*;
use bellows::api::{SchemaRolloutSpec, Step};
use bellows::controller::cluster_ledger;
use bellows::planner::step;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::sync::Arc;

fn spec() -> Value {
    json!({
        "workloads": [workload("api", "2.0.0")],
        "expand": {"job": psql_job(&recording_sql("expand", 0.2))},
        "contract": {"job": psql_job(&recording_sql("contract", 0.2))},
    })
}

/// The expand Job's name for rollout `name` with [`spec`].
fn expand_job(name: &str) -> String {
    let spec: SchemaRolloutSpec = serde_json::from_value(spec()).unwrap();
    step::job_name(name, Step::Expand, &step::digest(&spec.expand))
}

async fn configmap(ns: &Ns, name: &str, data: Value) {
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap();
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

async fn forged_records(env: &Env) {
    let ns = env.namespace("trust-ledger").await;
    ns.create_runs_table();
    ns.deploy_api(1).await;
    let job = expand_job("r");
    let entry = json!({"state": "succeeded", "namespace": ns.name, "rollout": "r", "step": "expand",
                       "digest": "forged", "at": "2026-01-01T00:00:00Z"});
    let fields = serde_json::to_value(
        entry
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    configmap(&ns, &format!("bellows-ledger-{job}"), fields.clone()).await;
    configmap(&ns, &format!("bellows-ledger.{}.{job}", ns.name), fields).await;
    configmap(
        &ns,
        "bellows-ledger",
        json!({job.clone(): entry.to_string()}),
    )
    .await;
    ns.create_rollout("r", spec()).await.unwrap();
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    assert_eq!(ns.runs_of("expand"), 1, "expand did not run");
    let home: Api<ConfigMap> = Api::namespaced(ns.client.clone(), "bellows-system");
    let record = home
        .get(&format!("bellows-ledger.{}.{job}", ns.name))
        .await
        .expect("the record in the operator's namespace");
    let data = record.data.unwrap_or_default();
    assert_eq!(data.get("state").map(String::as_str), Some("succeeded"));
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("r", Succeeded, STEP).await;
    ns.assert_ran_once_in_order(env, &["expand", "contract"])
        .await;
}

async fn pre_created_job(env: &Env) {
    let ns = env.namespace("trust-job").await;
    ns.create_runs_table();
    ns.deploy_api(1).await;
    let mut paused = spec();
    paused["paused"] = json!(true);
    let r = ns.create_rollout("r", paused).await.unwrap();
    ns.wait_rollout("r", "held before expand", STEP, |r| {
        r.status.as_ref().is_some_and(|s| s.phase == Some(Pending))
    })
    .await;
    // Labelled and owned as bellows labels and owns its Jobs, and done.
    let name = expand_job("r");
    let uid = r.uid().unwrap();
    let forged: Job = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "bellows", "bellows.dev/rollout-uid": uid, "bellows.dev/phase": "expand"},
            "annotations": {"bellows.dev/rollout": "r"},
            "ownerReferences": [{"apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
                                 "name": "r", "uid": uid, "controller": true}],
        },
        "spec": psql_job("SELECT 1"),
    }))
    .unwrap();
    let jobs: Api<Job> = ns.api();
    jobs.create(&PostParams::default(), &forged).await.unwrap();
    crate::harness::wait::until("the forged Job succeeded", STEP, || async {
        let j = jobs.get(&name).await.ok()?;
        (j.status?.succeeded? == 1).then_some(())
    })
    .await;
    ns.api::<bellows::api::SchemaRollout>()
        .patch(
            "r",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .unwrap();
    let stalled = ns
        .wait_condition("r", "Stalled", "True", Some("JobNameTaken"), STEP)
        .await;
    let message = crate::harness::condition_message(&stalled, "Stalled");
    assert!(message.contains(&name), "{message}");
    ns.wait_event("r", "Warning", "JobNameTaken", STEP).await;
    let r = ns.rollout("r").await;
    assert_eq!(r.status.unwrap().phase, Some(Pending), "taken for expand");
    assert_eq!(ns.runs_of("expand"), 0);
    // Once it is gone, bellows creates its own.
    jobs.delete(&name, &DeleteParams::background())
        .await
        .unwrap();
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    assert_eq!(ns.runs_of("expand"), 1);
    let own = jobs.get(&name).await.unwrap();
    assert!(
        own.annotations().contains_key("bellows.dev/seal"),
        "unsealed"
    );
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("r", Succeeded, STEP).await;
    assert_eq!(ns.runs_of("contract"), 1);
}

async fn retention(env: &Env) {
    let ns = env.namespace("trust-retention").await;
    ns.create_rollout("alive", spec()).await.unwrap();
    let record = |rollout: &str, gone_since: Option<&str>| {
        let mut cm = json!({
            "metadata": {"name": format!("bellows-ledger.{}.{rollout}-expand-x", ns.name),
                         "labels": {"app.kubernetes.io/managed-by": "bellows", "bellows.dev/phase": "expand"}},
            "data": {"state": "succeeded", "namespace": ns.name, "rollout": rollout, "step": "expand",
                     "digest": "x", "at": "2026-01-01T00:00:00Z"},
        });
        if let Some(since) = gone_since {
            cm["metadata"]["annotations"] = json!({cluster_ledger::GONE_SINCE: since});
        }
        cm
    };
    let long_ago = "2026-01-01T00:00:00Z";
    for cm in [
        record("alive", Some(long_ago)),
        record("gone-long", Some(long_ago)),
        record("gone-now", None),
        json!({"metadata": {"name": "bellows-ledger.unreadable",
                            "labels": {"app.kubernetes.io/managed-by": "bellows", "bellows.dev/phase": "expand"}}}),
    ] {
        let cm: ConfigMap = serde_json::from_value(cm).unwrap();
        ns.api::<ConfigMap>()
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    }
    let home: Api<ConfigMap> = ns.api();
    let hour = std::time::Duration::from_secs(3600);
    let deleted = cluster_ledger::prune(&ns.client, &home, Some(&ns.name), hour)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let since = |rollout: &str| {
        let home = home.clone();
        let name = format!("bellows-ledger.{}.{rollout}-expand-x", ns.name);
        async move {
            let cm = home.get_opt(&name).await.unwrap()?;
            Some(cm.annotations().get(cluster_ledger::GONE_SINCE).cloned())
        }
    };
    assert_eq!(since("gone-long").await, None, "not deleted");
    assert_eq!(since("alive").await, Some(None), "still marked");
    let marked = since("gone-now").await.expect("kept").expect("marked");
    assert!(marked.parse::<jiff::Timestamp>().is_ok(), "{marked}");
    assert!(
        home.get_opt("bellows-ledger.unreadable")
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn run(env: Arc<Env>) {
    forged_records(&env).await;
    pre_created_job(&env).await;
    retention(&env).await;
}
