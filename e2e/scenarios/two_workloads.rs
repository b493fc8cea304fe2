//! Scenario 7: with two workloads, contract waits for the slower one.

use super::{ContractGuard, STEP};
use crate::harness::kubelet::{READY_AFTER_MS, TERMINATE_AFTER_MS};
use crate::harness::{App, Env, select_one_spec, workload};
use bellows::api::RolloutPhase::*;
use serde_json::json;
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("two-workloads").await;
    ns.deploy_api(2).await;
    let slow = App {
        replicas: 2,
        annotations: &[(READY_AFTER_MS, "2500"), (TERMINATE_AFTER_MS, "3000")],
        ..App::default()
    };
    ns.deploy("worker", "shop/api:1.0.0", slow).await;
    ns.create_and_expand(
        "both",
        select_one_spec(
            json!([workload("api", "2.0.0"), workload("worker", "2.0.0")]),
            None,
        ),
    )
    .await;

    let guard = ContractGuard::start(
        &ns,
        &[("api", "shop/api:2.0.0"), ("worker", "shop/api:2.0.0")],
    );
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.set_image("worker", "shop/api:2.0.0").await;
    let r = ns
        .wait_rollout("both", "api rolled out while worker is not", STEP, |r| {
            let ws = r
                .status
                .as_ref()
                .map(|s| s.workloads.clone())
                .unwrap_or_default();
            let done = |n: &str| ws.iter().any(|w| w.name == n && w.rolled_out);
            done("api") && !done("worker")
        })
        .await;
    assert_eq!(r.status.unwrap().phase, Some(AwaitingRollout));
    assert!(
        ns.jobs_of("contract").await.is_empty(),
        "the faster workload alone must not release contract"
    );

    let r = ns.wait_phase("both", Succeeded, STEP).await;
    guard.finish().await;
    let status = r.status.unwrap();
    let at = |n: &str| {
        status
            .workloads
            .iter()
            .find(|w| w.name == n)
            .and_then(|w| w.rolled_out_at.clone())
            .unwrap()
            .0
    };
    assert!(at("worker") > at("api"), "worker rolled out last");
    assert_eq!(
        status.rolled_out_at.unwrap().0,
        at("worker"),
        "rolledOutAt is the slower workload's"
    );
    assert_eq!(ns.jobs_of("contract").await.len(), 1);
}
