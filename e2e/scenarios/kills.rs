//! Scenario 6: the operator is killed with SIGKILL at random moments (at
//! least 20 times, seeded and printed) across every phase; each phase's Job
//! still runs exactly once and the rollout succeeds.

use super::STEP;
use crate::harness::killer::{self, Killer};
use crate::harness::kubelet::READY_AFTER_MS;
use crate::harness::{App, Env, psql_job, recording_sql, workload};
use bellows::api::RolloutPhase::*;
use std::sync::Arc;

const MIN_KILLS: u32 = 20;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("kills").await;
    ns.create_runs_table();
    ns.deploy(
        "api",
        "shop/api:1.0.0",
        App {
            replicas: 3,
            annotations: &[(READY_AFTER_MS, "2500")],
            ..App::default()
        },
    )
    .await;

    let killer = Killer::start(env.clone(), &ns, "crashy");
    ns.create_rollout(
        "crashy",
        serde_json::json!({
            "workloads": [workload("api", "2.0.0")],
            "expand": {"job": psql_job(&recording_sql("expand", 6.0))},
            "transition": {"job": psql_job(&recording_sql("transition", 6.0))},
            "contract": {"job": psql_job(&recording_sql("contract", 5.0))},
        }),
    )
    .await
    .unwrap();
    ns.wait_phase("crashy", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("crashy", Succeeded, STEP * 2).await;
    let kills_by_phase = killer.stop().await;
    let before_done = killer::before_done(&kills_by_phase);
    assert!(
        before_done >= MIN_KILLS,
        "only {before_done} kills landed before the rollout finished"
    );
    // Every phase that does work was hit (each lasts several kill intervals).
    for phase in [Expanding, AwaitingRollout, Transitioning, Contracting] {
        assert!(
            kills_by_phase.contains_key(phase.as_str()),
            "no kill during {phase:?}: {kills_by_phase:?}"
        );
    }

    ns.assert_ran_once_in_order(&env, &["expand", "transition", "contract"])
        .await;
}
