//! Scenario 16: the GitOps lifecycle without a database. A Job-only
//! rollout is deleted and applied again (as Argo CD does when it prunes and
//! re-creates an Application, or someone re-applies a directory): after it
//! succeeded, and after expand. The cluster ledger (a
//! `bellows-ledger.<namespace>.<Job>` ConfigMap per phase run, in the
//! operator's namespace) makes the re-created rollout skip what already
//! ran, with a `PhaseAlreadyDone` event: each phase's Job is created once over the whole
//! scenario (the stand-in kubelet's journal). Then a Deployment paused by
//! its user in the same breath as its rollout is applied: the gate never
//! takes it over, it stays paused through expand, the rollout waits and says
//! so, and it rolls on once the user resumes it.

use super::STEP;
use crate::harness::{Env, Ns, psql_job, recording_sql, workload};
use bellows::api::RolloutPhase::*;
use bellows::api::SchemaRollout;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::sync::Arc;

fn spec() -> Value {
    json!({
        "workloads": [workload("api", "2.0.0")],
        "expand": {"job": psql_job(&recording_sql("expand", 0.5))},
        "contract": {"job": psql_job(&recording_sql("contract", 0.5))},
    })
}

/// Deletes rollout `name` and waits until it and its Jobs are gone.
async fn delete(ns: &Ns, name: &str) {
    let api: Api<SchemaRollout> = Api::namespaced(ns.client.clone(), &ns.name);
    api.delete(name, &DeleteParams::default()).await.unwrap();
    crate::harness::wait::until("the rollout and its Jobs gone", STEP, || async {
        let gone = api.get_opt(name).await.ok()?.is_none() && ns.jobs().await.is_empty();
        gone.then_some(())
    })
    .await;
}

/// Invariant I3 across delete and re-create: each phase's SQL committed
/// once, and the stand-in kubelet ran one pod of one Job per phase.
fn each_ran_once(env: &Env, ns: &Ns) {
    for step in ["expand", "contract"] {
        assert_eq!(ns.runs_of(step), 1, "{step} ran again");
    }
    let runs: Vec<String> = env
        .kubelet()
        .journal
        .job_runs
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.namespace == ns.name)
        .map(|r| r.job.clone())
        .collect();
    assert_eq!(runs.len(), 2, "Job runs: {runs:?}");
}

pub async fn run(env: Arc<Env>) {
    // Deleted after it succeeded, applied again: nothing runs again.
    let ns = env.namespace("gitops-done").await;
    ns.create_runs_table();
    ns.deploy_api(1).await;
    ns.create_rollout("r", spec()).await.unwrap();
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("r", Succeeded, STEP).await;
    delete(&ns, "r").await;
    ns.create_rollout("r", spec()).await.unwrap();
    ns.wait_phase("r", Succeeded, STEP).await;
    ns.wait_event("r", "Normal", "PhaseAlreadyDone", STEP).await;
    assert!(
        ns.jobs().await.is_empty(),
        "the re-created rollout created a Job"
    );
    each_ran_once(&env, &ns);

    // Deleted after expand, applied again: expand is skipped, contract
    // runs once the workload rolls.
    let ns = env.namespace("gitops-expanded").await;
    ns.create_runs_table();
    ns.deploy_api(1).await;
    ns.create_rollout("r", spec()).await.unwrap();
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    delete(&ns, "r").await;
    ns.create_rollout("r", spec()).await.unwrap();
    let r = ns.wait_phase("r", AwaitingRollout, STEP).await;
    assert!(ns.jobs_of("expand").await.is_empty(), "expand ran again");
    // The waiting message names both versions.
    let message = r.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("runs 1.0.0, waiting for 2.0.0"),
        "{message}"
    );
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("r", Succeeded, STEP).await;
    each_ran_once(&env, &ns);

    // Paused by its user in the same breath as the rollout is applied: the
    // gate's cache has not seen the pause yet, the live object has.
    let ns = env.namespace("gitops-user-pause").await;
    ns.create_runs_table();
    ns.deploy_api(1).await;
    let deployments: Api<Deployment> = Api::namespaced(ns.client.clone(), &ns.name);
    let pause = |paused: bool| json!({"spec": {"paused": paused}});
    deployments
        .patch("api", &PatchParams::default(), &Patch::Merge(pause(true)))
        .await
        .unwrap();
    let mut gated = spec();
    gated["gate"] = json!({"pauseWorkloads": true});
    ns.create_rollout("r", gated).await.unwrap();
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    let r = ns
        .wait_rollout("r", "waiting on a paused workload", STEP, |r| {
            r.status
                .as_ref()
                .and_then(|s| s.message.as_deref())
                .is_some_and(|m| m.contains("paused by someone else"))
        })
        .await;
    assert_eq!(r.status.unwrap().phase, Some(AwaitingRollout));
    let d = ns.deployment("api").await;
    assert_eq!(
        d.spec.unwrap().paused,
        Some(true),
        "the user's pause was lifted"
    );
    assert!(
        !d.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("bellows.dev/paused-by"),
        "the gate claimed a pause it did not set"
    );
    assert!(ns.jobs_of("contract").await.is_empty());
    // The user resumes: the rollout rolls and contracts.
    deployments
        .patch("api", &PatchParams::default(), &Patch::Merge(pause(false)))
        .await
        .unwrap();
    ns.wait_phase("r", Succeeded, STEP).await;
    ns.assert_ran_once_in_order(&env, &["expand", "contract"])
        .await;
}
