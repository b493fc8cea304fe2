//! Scenario 6: the operator is killed with SIGKILL at random moments (at
//! least 20 times, seeded and printed) across every phase; each phase's Job
//! still runs exactly once and the rollout succeeds.

use super::STEP;
use crate::harness::kubelet::READY_AFTER_MS;
use crate::harness::{App, Env, phase_of, psql_job, recording_sql, workload};
use bellows::api::RolloutPhase::{self, *};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const MIN_KILLS: u32 = 20;

/// xorshift64*: a tiny seeded generator, so a failing run can be replayed
/// with BELLOWS_E2E_SEED.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

pub async fn run(env: Arc<Env>) {
    let seed = std::env::var("BELLOWS_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as u64 | 1);
    println!("e2e:   kill seed {seed} (replay with BELLOWS_E2E_SEED={seed})");
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

    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let env = env.clone();
        let done = done.clone();
        let client = ns.client.clone();
        let name = ns.name.clone();
        tokio::spawn(async move {
            let api: kube::Api<bellows::api::SchemaRollout> = kube::Api::namespaced(client, &name);
            let mut rng = Rng(seed);
            let mut kills_by_phase: BTreeMap<&'static str, u32> = BTreeMap::new();
            while !done.load(Ordering::Relaxed) {
                // Random moments: a uniformly drawn delay before each kill.
                tokio::time::sleep(Duration::from_millis(100 + rng.below(700))).await;
                let phase = api
                    .get_opt("crashy")
                    .await
                    .ok()
                    .flatten()
                    .as_ref()
                    .and_then(phase_of);
                let mut op = env.operator.lock().await;
                op.stop(libc::SIGKILL);
                *kills_by_phase
                    .entry(phase.map_or("None", RolloutPhase::as_str))
                    .or_default() += 1;
                op.start().await;
            }
            kills_by_phase
        })
    };

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
    done.store(true, Ordering::Relaxed);
    let kills_by_phase = killer.await.expect("killer task");
    let total: u32 = kills_by_phase.values().sum();
    println!("e2e:   {total} SIGKILLs by phase: {kills_by_phase:?}");
    let before_done = total - kills_by_phase.get("Succeeded").copied().unwrap_or(0);
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
