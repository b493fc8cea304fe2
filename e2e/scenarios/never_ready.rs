//! Scenario 3: a new version that never becomes ready never contracts.

use super::STEP;
use crate::harness::kubelet::NEVER_READY;
use crate::harness::{App, Env, cond, condition_of, select_one_spec, workload};
use bellows::api::RolloutPhase::*;
use serde_json::json;
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("never-ready").await;
    let app = App {
        replicas: 2,
        progress_deadline_seconds: Some(8),
        ..App::default()
    };
    ns.deploy("api", "shop/api:1.0.0", app).await;
    ns.create_and_expand(
        "stuck",
        select_one_spec(json!([workload("api", "2.0.0")]), None),
    )
    .await;

    ns.patch_template(
        "api",
        json!({
            "metadata": {"annotations": {NEVER_READY: "true"}},
            "spec": {"containers": [{"name": "app", "image": "shop/api:2.0.0"}]}
        }),
    )
    .await;
    let r = ns
        .wait_condition(
            "stuck",
            cond::STALLED,
            "True",
            Some("ProgressDeadlineExceeded"),
            STEP,
        )
        .await;
    let note = ns
        .wait_event("stuck", "Warning", "ProgressDeadlineExceeded", STEP)
        .await;
    assert!(note.contains("api"), "event names the workload: {note}");
    assert_eq!(r.status.as_ref().unwrap().phase, Some(AwaitingRollout));
    assert_eq!(condition_of(&r, cond::READY).0, "False");
    assert_eq!(
        condition_of(&r, cond::ROLLED_OUT),
        ("False".into(), "ProgressDeadlineExceeded".into())
    );
    assert!(
        ns.jobs_of("contract").await.is_empty(),
        "contract must never run"
    );
}
