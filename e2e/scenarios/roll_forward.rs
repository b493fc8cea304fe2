//! Scenario 22: a release ships during the bake of the one before (roll
//! forward), and a rollback is followed by the next release. Contract runs
//! once no 1.x pod is left, never while one exists, and never while the
//! Deployment runs an older version.

use super::{ContractGuard, STEP};
use crate::harness::{Env, select_one_spec, workload};
use bellows::api::RolloutPhase::*;
use serde_json::json;
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("roll-forward").await;
    ns.deploy_api(2).await;
    let spec = select_one_spec(
        json!([workload("api", "2.0.0")]),
        Some(json!({"bakeTime": "8s", "approval": "Manual"})),
    );
    ns.create_and_expand("fwd", spec).await;
    // Any 2.0.0-or-later pod is fine for contract; a 1.0.0 pod is not.
    let guard = ContractGuard::start(
        &ns,
        &[
            ("api", "shop/api:2.0.0"),
            ("api", "shop/api:3.0.0"),
            ("api", "shop/api:4.0.0"),
        ],
    );

    // 2.0.0 rolls out, then is rolled back: held, RolledBack.
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("fwd", Baking, STEP).await;
    let undo = ns.kubectl(&["rollout", "undo", "deployment/api"]);
    assert!(
        undo.status.success(),
        "{}",
        String::from_utf8_lossy(&undo.stderr)
    );
    ns.wait_held("fwd", "RolledBack", STEP).await;

    // Then 3.0.0 ships: a release after 2.0.0 is a roll forward.
    ns.set_image("api", "shop/api:3.0.0").await;
    let r = ns
        .wait_rollout("fwd", "rolled forward, awaiting approval", STEP, |r| {
            r.status.as_ref().and_then(|s| s.phase) == Some(AwaitingApproval)
        })
        .await;
    let message = r.status.as_ref().unwrap().workloads[0]
        .message
        .clone()
        .unwrap_or_default();
    assert_eq!(message, "Deployment api runs 3.0.0, newer than 2.0.0");

    // And 4.0.0 ships during approval: still forward.
    ns.set_image("api", "shop/api:4.0.0").await;
    ns.wait_available("api", 2).await;
    ns.approve("fwd").await;
    ns.wait_phase("fwd", Succeeded, STEP).await;
    guard.finish().await;
    assert_eq!(ns.jobs_of("contract").await.len(), 1);
}
