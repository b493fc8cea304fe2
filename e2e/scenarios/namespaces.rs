//! Scenario 28: least privilege over several namespaces. The chart rendered
//! with `watchNamespaces` (two of them) as a second release: its identity
//! gets a Role in each of the two and none cluster-wide, and an operator
//! running as it (the suite's own steps aside) reconciles rollouts in both
//! to the end, each phase once, while a rollout in a third namespace is
//! never touched. Any 403 fails the suite (its log is checked with the
//! rest).

use super::STEP;
use crate::harness::identity::Identity;
use crate::harness::operator::Operator;
use crate::harness::{Env, psql_job, recording_sql, workload};
use bellows::api::RolloutPhase::*;
use bellows::api::SchemaRollout;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let spec = json!({
        "workloads": [workload("api", "2.0.0")],
        "expand": {"job": psql_job(&recording_sql("expand", 0.2))},
        "contract": {"job": psql_job(&recording_sql("contract", 0.2))},
    });
    let a = env.namespace("watched-a").await;
    let b = env.namespace("watched-b").await;
    let other = env.namespace("not-watched").await;
    let watched = format!("watchNamespaces={{{},{}}}", a.name, b.name);
    let identity = Identity::install_release(
        &env.client,
        &env.kubeconfig,
        &env.dir,
        "bellows-two",
        &[
            "--set",
            &watched,
            "--set",
            "leaderElection.leaseName=bellows-two-leader",
        ],
    )
    .await;
    assert!(
        identity
            .args
            .contains(&format!("--watch-namespace={},{}", a.name, b.name)),
        "{:?}",
        identity.args
    );
    let mut shared = env.operator.lock().await;
    shared.stop(libc::SIGTERM);
    let mut two = Operator::named(&identity, &env.dir, "op-two-namespaces", &[]);
    two.start().await;

    for ns in [&a, &b, &other] {
        ns.create_runs_table();
        ns.deploy_api(1).await;
        ns.create_rollout("r", spec.clone()).await.unwrap();
    }
    for ns in [&a, &b] {
        ns.wait_phase("r", AwaitingRollout, STEP).await;
        ns.set_image("api", "shop/api:2.0.0").await;
    }
    for ns in [&a, &b] {
        ns.wait_phase("r", Succeeded, STEP).await;
        ns.assert_ran_once_in_order(&env, &["expand", "contract"])
            .await;
    }
    let untouched = other.rollout("r").await;
    assert!(untouched.status.is_none(), "{:?}", untouched.status);
    assert!(untouched.metadata.finalizers.is_none(), "finalizer added");
    assert!(other.jobs().await.is_empty(), "a Job outside the watch");

    // The suite's operator, watching everything, must not pick it up.
    let rollouts: Api<SchemaRollout> = Api::namespaced(env.client.clone(), &other.name);
    rollouts
        .delete("r", &DeleteParams::default())
        .await
        .unwrap();
    two.stop(libc::SIGTERM);
    shared.start().await;
}
