//! Scenario 9: with Manual approval nothing contracts until the approval
//! annotation names the current generation.

use super::STEP;
use crate::harness::Env;
use bellows::api::{APPROVE_ANNOTATION, RolloutPhase::*};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("approval").await;
    ns.manual_api_rollout("gated", 1).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    let r = ns.wait_phase("gated", AwaitingApproval, STEP).await;
    assert_eq!(r.metadata.generation, Some(1));
    assert!(
        r.status
            .unwrap()
            .message
            .unwrap()
            .contains(APPROVE_ANNOTATION)
    );
    assert!(ns.jobs_of("contract").await.is_empty());

    // An approval of generation 1 arrives together with a spec change
    // (generation 2): once the controller has observed generation 2 it has
    // seen the stale approval, and must still wait.
    let api: Api<bellows::api::SchemaRollout> = Api::namespaced(ns.client.clone(), &ns.name);
    let patch = json!({"metadata": {"annotations": {APPROVE_ANNOTATION: "1"}}, "spec": {"timeouts": {"rollout": "3h"}}});
    api.patch("gated", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let r = ns
        .wait_rollout("gated", "generation 2 observed", STEP, |r| {
            r.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
        })
        .await;
    assert_eq!(
        r.status.unwrap().phase,
        Some(AwaitingApproval),
        "a stale approval does not approve"
    );
    assert!(ns.jobs_of("contract").await.is_empty());

    ns.annotate_rollout("gated", APPROVE_ANNOTATION, "2").await;
    ns.wait_phase("gated", Succeeded, STEP).await;
    assert_eq!(ns.jobs_of("contract").await.len(), 1);
}
