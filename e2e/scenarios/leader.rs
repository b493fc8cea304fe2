//! Scenario 11: two operator replicas with `--leader-elect`. Only the leader
//! reconciles; SIGKILL of the leader mid-expand hands the rollout to the
//! standby, which finishes it with every phase's Job run exactly once; a
//! SIGTERM'd leader releases the Lease so the other replica takes over
//! without waiting for it to expire.

use super::STEP;
use crate::harness::identity;
use crate::harness::operator::Operator;
use crate::harness::wait::until;
use crate::harness::{Env, Ns, psql_job, recording_sql, workload};
use bellows::api::RolloutPhase::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Short, so that a takeover after SIGKILL fits comfortably in a step (the
/// one flag the replicas run with beyond the chart's), and long enough that
/// a renewal (timed from when it is sent) survives the API server's latency
/// while the replica reconciles every rollout of the suite: with 4 s, a
/// 2.7 s wait for an answer made the new leader step down.
pub(super) const LEASE_DURATION: &str = "8s";

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("leader").await;
    ns.create_runs_table();
    ns.deploy_api(2).await;

    // The suite's own operator steps aside while the pair runs; it is
    // restarted (and the lock released) at the end.
    let mut shared = env.operator.lock().await;
    shared.stop(libc::SIGTERM);
    // The chart's arguments elect on its Lease; the identity is POD_NAME.
    let replica = |id: &str| {
        Operator::named(
            &env.identity,
            &env.dir,
            id,
            &["--lease-duration", LEASE_DURATION],
        )
    };
    let mut a = replica("op-a");
    let mut b = replica("op-b");
    a.start().await;
    wait_leader(&ns, "op-a").await;
    b.start().await;

    ns.create_rollout(
        "failover",
        json!({
            "workloads": [workload("api", "2.0.0")],
            "expand": {"job": psql_job(&recording_sql("expand", 3.0))},
            "contract": {"job": psql_job(&recording_sql("contract", 1.0))},
        }),
    )
    .await
    .unwrap();
    // Mid-expand: the leader has created the expand Job, which still runs.
    ns.wait_job_running("expand").await;
    assert_eq!(
        b.reconciles().await,
        0,
        "the standby reconciled while another replica led"
    );
    let killed = Instant::now();
    a.stop(libc::SIGKILL);
    wait_leader(&ns, "op-b").await;
    println!(
        "e2e:   standby took over {:.1}s after the leader's SIGKILL (lease {LEASE_DURATION})",
        killed.elapsed().as_secs_f64()
    );
    ns.wait_phase("failover", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("failover", Succeeded, STEP).await;
    ns.assert_ran_once_in_order(&env, &["expand", "contract"])
        .await;
    assert!(b.reconciles().await > 0, "the new leader reconciled");

    // Step-down: the leader releases the Lease on SIGTERM and exits 0.
    a.start().await;
    let stopped = Instant::now();
    let status = b.stop(libc::SIGTERM).expect("op-b was running");
    assert!(status.success(), "op-b exited with {status} on SIGTERM");
    wait_leader(&ns, "op-a").await;
    println!(
        "e2e:   handover after SIGTERM took {:.1}s",
        stopped.elapsed().as_secs_f64()
    );
    assert!(
        b.logs().contains("released the lease"),
        "op-b did not release the lease"
    );
    a.stop(libc::SIGTERM);
    shared.start().await;
}

/// The chart's `leaderElection.leaseName`.
const LEASE: &str = "bellows-leader";

/// Waits until `holder` holds the chart's Lease.
pub(super) async fn wait_leader(ns: &Ns, holder: &str) {
    let leases: Api<Lease> = Api::namespaced(ns.client.clone(), identity::NAMESPACE);
    until(&format!("{holder} leads"), STEP, || async {
        let lease = leases.get_opt(LEASE).await.ok().flatten()?;
        (lease.spec?.holder_identity? == holder).then_some(())
    })
    .await;
}
