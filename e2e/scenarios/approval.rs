//! Scenario 9: with Manual approval nothing contracts until the annotation
//! `bellows.dev/approve` names this object and this contract
//! (`status.approvalKey`, `<uid>/<contract digest>`): the old generation
//! format approves nothing and says so, and an approval given together with
//! an edit of the contract does not approve the edited contract.

use super::STEP;
use crate::harness::{Env, psql_job};
use bellows::api::RolloutPhase::*;
use bellows::api::keys::APPROVE_ANNOTATION;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("approval").await;
    ns.manual_api_rollout("gated", 1).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    let r = ns.wait_phase("gated", AwaitingApproval, STEP).await;
    let status = r.status.unwrap();
    let key = status.approval_key.expect("status.approvalKey");
    assert!(
        key.starts_with(&format!("{}/", r.metadata.uid.unwrap())),
        "{key}"
    );
    let message = status.message.unwrap();
    assert!(
        message.contains(APPROVE_ANNOTATION) && message.contains(&key),
        "{message}"
    );
    assert!(ns.jobs_of("contract").await.is_empty());

    // The old format (the generation) approves nothing, and says why.
    ns.annotate_rollout("gated", APPROVE_ANNOTATION, "1").await;
    ns.wait_rollout("gated", "the old format refused", STEP, |r| {
        r.status
            .as_ref()
            .and_then(|s| s.message.as_deref())
            .is_some_and(|m| m.contains("old generation format"))
    })
    .await;
    assert!(ns.jobs_of("contract").await.is_empty());

    // The right key arrives together with an edit of the contract: the
    // approval named the contract before the edit, so it must still wait.
    let api: Api<bellows::api::SchemaRollout> = Api::namespaced(ns.client.clone(), &ns.name);
    let patch = json!({
        "metadata": {"annotations": {APPROVE_ANNOTATION: key}},
        "spec": {"contract": {"job": psql_job("SELECT 2")}},
    });
    api.patch("gated", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let r = ns
        .wait_rollout("gated", "generation 2 observed", STEP, |r| {
            r.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
        })
        .await;
    let status = r.status.unwrap();
    assert_eq!(
        status.phase,
        Some(AwaitingApproval),
        "an approval of the previous contract does not approve the edited one"
    );
    assert_ne!(status.approval_key.as_deref(), Some(key.as_str()));
    assert!(ns.jobs_of("contract").await.is_empty());

    ns.approve("gated").await;
    ns.wait_phase("gated", Succeeded, STEP).await;
    assert_eq!(ns.jobs_of("contract").await.len(), 1);
}
