//! Scenario 4: `kubectl rollout undo` after expand holds contract with a
//! reason; rolling forward again lets it proceed.

use super::{ContractGuard, STEP};
use crate::harness::{Env, cond, condition_of};
use bellows::api::RolloutPhase::*;
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("rollback").await;
    ns.manual_api_rollout("undo", 2).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("undo", AwaitingApproval, STEP).await;

    let guard = ContractGuard::start(&ns, &[("api", "shop/api:2.0.0")]);
    let out = ns.kubectl(&["rollout", "undo", "deployment/api"]);
    assert!(
        out.status.success(),
        "kubectl rollout undo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = ns.wait_held("undo", "RolledBack", STEP).await;
    assert_eq!(
        condition_of(&r, cond::ROLLED_OUT),
        ("False".into(), "RolledBack".into())
    );
    let note = ns.wait_event("undo", "Warning", "ContractHeld", STEP).await;
    assert!(note.contains("RolledBack"), "{note}");

    // Approving while rolled back must not contract: the guard fails the
    // scenario if a contract Job appears while any v1 pod exists.
    ns.wait_available("api", 2).await;
    ns.approve("undo").await;

    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("undo", Succeeded, STEP).await;
    guard.finish().await;
    assert_eq!(ns.jobs_of("contract").await.len(), 1);
}
