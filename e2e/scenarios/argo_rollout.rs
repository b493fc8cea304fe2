//! Scenario 24: an Argo Rollouts Rollout gates contract. There is no Argo
//! Rollouts controller here: the scenario installs a stand-in of its CRD
//! and plays its controller, writing the ReplicaSets and the status fields
//! it documents (the real ReplicaSet controller makes the pods). Before the
//! CRD exists the rollout is `Stalled` with `WorkloadKindNotServed` and
//! nothing runs; then a canary of 2 that is not promoted holds, the old
//! stack kept after promotion holds (`OldPodsRemain`), and contract runs
//! once its last pod is gone.

use super::{ContractGuard, STEP};
use crate::harness::{Env, Ns, cond, condition_message, install_crd, psql_job, repo_path};
use bellows::api::RolloutPhase::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use std::sync::Arc;

const HASH: &str = "rollouts-pod-template-hash";

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("argo").await;
    let spec = json!({
        "workloads": [{"kind": "Rollout", "name": "web",
                       "version": {"image": {"container": "app", "tag": "2"}}}],
        "expand": {"job": psql_job("SELECT 1")},
        "contract": {"job": psql_job("SELECT 1")},
    });
    ns.create_rollout("web", spec).await.unwrap();
    let r = ns
        .wait_condition(
            "web",
            cond::STALLED,
            "True",
            Some("WorkloadKindNotServed"),
            STEP,
        )
        .await;
    let message = condition_message(&r, cond::STALLED);
    assert!(
        message.contains("argoproj.io/v1alpha1 Rollouts"),
        "{message}"
    );
    assert!(ns.jobs().await.is_empty(), "nothing runs");

    let created = create_rollout(&env, &ns).await;
    let rollouts = rollouts(&ns);
    let uid = created.metadata.uid.clone().unwrap();
    replica_set(&ns, &uid, "1", 2).await;
    status(&ns, json!({"currentPodHash": "h1", "stableRS": "h1", "updatedReplicas": 2, "availableReplicas": 2})).await;
    ns.wait_phase("web", AwaitingRollout, STEP).await;
    let guard = ContractGuard::start(&ns, &[("web", "shop/web:2")]);

    // Version 2 as a canary: current, not yet stable.
    rollouts
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template("2")}})),
        )
        .await
        .unwrap();
    replica_set(&ns, &uid, "2", 2).await;
    status(&ns, json!({"currentPodHash": "h2", "stableRS": "h1", "updatedReplicas": 2, "availableReplicas": 2})).await;
    wait_message(&ns, "h2 is not promoted yet (stable h1)").await;

    // Promoted; the old stack is kept for a while (scaleDownDelaySeconds).
    status(&ns, json!({"stableRS": "h2"})).await;
    wait_message(&ns, "pod(s) of an older version remain").await;
    assert!(ns.jobs_of("contract").await.is_empty());
    Api::<ReplicaSet>::namespaced(ns.client.clone(), &ns.name)
        .patch(
            "web-h1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    ns.wait_phase("web", Succeeded, STEP).await;
    guard.finish().await;
    assert_eq!(ns.jobs_of("contract").await.len(), 1);
}

/// The API of Argo Rollouts' Rollouts (once its CRD is installed).
pub(super) fn rollouts(ns: &Ns) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "rollouts");
    Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
}

/// Installs the stand-in CRD (if no scenario did yet) and creates Rollout
/// `web`: 2 replicas of version 1, a canary.
pub(super) async fn create_rollout(env: &Env, ns: &Ns) -> DynamicObject {
    install_crd(
        &env.client,
        &repo_path("e2e/fixtures/rollouts.argoproj.io.yaml"),
    )
    .await;
    let created: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": template("1"), "strategy": {"canary": {}}}
    }))
    .unwrap();
    rollouts(ns)
        .create(&PostParams::default(), &created)
        .await
        .unwrap()
}

fn template(tag: &str) -> Value {
    json!({"metadata": {"labels": {"app": "web"}},
           "spec": {"containers": [{"name": "app", "image": format!("shop/web:{tag}")}]}})
}

/// The ReplicaSet Argo Rollouts makes for version `tag`: owned by the
/// Rollout, its pods labelled with the template hash `h<tag>`.
async fn replica_set(ns: &Ns, uid: &str, tag: &str, replicas: i32) {
    let hash = format!("h{tag}");
    let mut template = template(tag);
    template["metadata"]["labels"][HASH] = json!(hash);
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": format!("web-{hash}"), "labels": {"app": "web", HASH: hash},
                     "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                                          "name": "web", "uid": uid, "controller": true}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web", HASH: hash}},
                 "template": template}
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
}

/// Writes `fields` into the Rollout's status, with the generation its
/// controller observed.
async fn status(ns: &Ns, mut fields: Value) {
    let api = rollouts(ns);
    let generation = api.get("web").await.unwrap().metadata.generation.unwrap();
    fields["observedGeneration"] = json!(generation.to_string());
    api.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": fields})),
    )
    .await
    .unwrap();
}

/// Waits until workload `web` is held with a message containing `text`.
async fn wait_message(ns: &Ns, text: &str) {
    ns.wait_rollout("web", &format!("Rollout web held: {text}"), STEP, |r| {
        r.status
            .as_ref()
            .and_then(|s| s.workloads.first())
            .and_then(|w| w.message.as_deref())
            .is_some_and(|m| m.contains(text))
    })
    .await;
}
