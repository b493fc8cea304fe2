//! Chaos for the operator: SIGKILL at random moments, seeded and printed
//! so a failing run can be replayed with `BELLOWS_E2E_SEED`.

use super::{Env, Ns, phase_of};
use bellows::api::{RolloutPhase, SchemaRollout};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Kills by the phase the rollout was in at the moment of the kill.
pub type KillsByPhase = BTreeMap<&'static str, u32>;

/// A background task killing the operator (and starting it again, as the
/// kubelet would) every 100..800 ms, drawn uniformly, until stopped.
pub struct Killer {
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<KillsByPhase>,
}

impl Killer {
    /// Starts killing; kills are counted by the phase of `rollout` in `ns`.
    pub fn start(env: Arc<Env>, ns: &Ns, rollout: &str) -> Killer {
        let seed = std::env::var("BELLOWS_E2E_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as u64 | 1);
        println!("e2e:   kill seed {seed} (replay with BELLOWS_E2E_SEED={seed})");
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let api: kube::Api<SchemaRollout> = kube::Api::namespaced(ns.client.clone(), &ns.name);
        let rollout = rollout.to_owned();
        let task = tokio::spawn(async move {
            let mut rng = Rng(seed);
            let mut kills = KillsByPhase::new();
            while !flag.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100 + rng.below(700))).await;
                let phase = api
                    .get_opt(&rollout)
                    .await
                    .ok()
                    .flatten()
                    .as_ref()
                    .and_then(phase_of);
                let mut op = env.operator.lock().await;
                op.stop(libc::SIGKILL);
                *kills
                    .entry(phase.map_or("None", RolloutPhase::as_str))
                    .or_default() += 1;
                op.start().await;
            }
            kills
        });
        Killer { done, task }
    }

    /// Stops killing; the kills by phase, printed.
    pub async fn stop(self) -> KillsByPhase {
        self.done.store(true, Ordering::Relaxed);
        let kills = self.task.await.expect("killer task");
        let total: u32 = kills.values().sum();
        println!("e2e:   {total} SIGKILLs by phase: {kills:?}");
        kills
    }
}

/// Kills that landed before the rollout succeeded.
pub fn before_done(kills: &KillsByPhase) -> u32 {
    kills.values().sum::<u32>() - kills.get("Succeeded").copied().unwrap_or(0)
}

/// xorshift64*: a tiny seeded generator.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}
