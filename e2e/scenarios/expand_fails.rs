//! Scenario 5: a failing expand Job fails the rollout, never contracts, and
//! with `gate.pauseWorkloads` the Deployment stays paused and never rolls.

use super::STEP;
use crate::harness::wait::until;
use crate::harness::{Env, cond, condition_of, psql_job, workload};
use bellows::api::RolloutPhase::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ListParams};
use serde_json::json;
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("expand-fails").await;
    ns.deploy_api(2).await;
    ns.create_rollout(
        "broken",
        json!({
            "workloads": [workload("api", "2.0.0")],
            "gate": {"pauseWorkloads": true},
            "expand": {"job": psql_job("ALTER TABLE no_such_table ADD COLUMN x int")},
            "contract": {"job": psql_job("SELECT 1")},
        }),
    )
    .await
    .unwrap();

    let r = ns.wait_phase("broken", Failed, STEP).await;
    assert_eq!(
        condition_of(&r, cond::STALLED),
        ("True".into(), "ExpandFailed".into())
    );
    assert_eq!(condition_of(&r, cond::READY).0, "False");
    ns.wait_event("broken", "Warning", "ExpandFailed", STEP)
        .await;
    let d = ns.deployment("api").await;
    assert_eq!(
        d.spec.as_ref().unwrap().paused,
        Some(true),
        "gate paused the Deployment"
    );

    // The deploy of v2 happens anyway; the paused Deployment must not roll.
    ns.set_image("api", "shop/api:2.0.0").await;
    let d = until(
        "Deployment controller observed the new template",
        STEP,
        || async {
            let d = ns.deployment("api").await;
            let observed = d.status.as_ref().and_then(|s| s.observed_generation);
            (observed >= d.metadata.generation).then_some(d)
        },
    )
    .await;
    assert_eq!(
        d.spec.as_ref().unwrap().paused,
        Some(true),
        "still paused after a failed expand"
    );
    let sets: Api<ReplicaSet> = Api::namespaced(ns.client.clone(), &ns.name);
    for rs in sets.list(&ListParams::default()).await.unwrap().items {
        let image = rs
            .spec
            .and_then(|s| s.template)
            .and_then(|t| t.spec)
            .map(|s| s.containers[0].image.clone());
        assert_eq!(
            image.flatten().as_deref(),
            Some("shop/api:1.0.0"),
            "no ReplicaSet of v2 may exist"
        );
    }
    for p in ns.pods().await.into_iter().filter(|p| {
        p.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.get("app").is_some())
    }) {
        assert_eq!(
            p.spec.unwrap().containers[0].image.as_deref(),
            Some("shop/api:1.0.0")
        );
    }
    assert!(
        ns.jobs_of("contract").await.is_empty(),
        "a failed expand never leads to contract"
    );
    assert_eq!(
        ns.rollout("broken").await.status.unwrap().phase,
        Some(Failed)
    );
}
