//! What every reconcile shares: the API client, events, metrics, database
//! pools and watch caches, and one memory per rollout, keyed by the
//! rollout and started afresh when a rollout of that name is re-created.

use super::cache::Caches;
use super::seal::Seal;
use crate::api::{SchemaRollout, SchemaRolloutStatus};
use crate::planner::CheckResult;
use crate::planner::writes::{self, StatusWrite};
use crate::telemetry::metrics::Metrics;
use jiff::Timestamp;
use kube::Client;
use kube::ResourceExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shared state of every reconcile.
pub struct Context {
    /// Client for the API server.
    pub client: Client,
    /// Publishes events.k8s.io/v1 Events.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Connection pools of the rollouts' databases.
    pub pools: crate::db::Pools,
    /// The watch caches; without them every reconcile reads live.
    pub caches: Option<Caches>,
    /// The CronJob API the server serves, found on first use.
    pub cron_jobs: tokio::sync::OnceCell<kube::api::ApiResource>,
    /// The operator's own namespace: the cluster ledger lives there, out of
    /// reach of the editors of the namespaces it reconciles.
    pub operator_namespace: String,
    /// The seal of phase Jobs, its key read (or made) on first use.
    seal: tokio::sync::OnceCell<Seal>,
    /// The Argo Rollouts API, once the server was seen serving it.
    pub argo_rollouts: tokio::sync::OnceCell<kube::api::ApiResource>,
    /// HTTP clients to the rollouts' Prometheus servers.
    pub prometheus: super::prometheus::Clients,
    /// What this process remembers of each rollout.
    memories: Mutex<HashMap<ObjectRef<SchemaRollout>, Memory>>,
}

/// What this process remembers of one rollout. Nothing in it decides a
/// phase: a restart loses it, and costs at most a repeated status write,
/// a check evaluated again or a shorter backoff.
#[derive(Default)]
struct Memory {
    /// The rollout's uid: a re-created rollout of the same name is another.
    uid: String,
    /// Consecutive failed reconciles, for exponential backoff.
    failures: u32,
    /// When a reconcile first saw every workload rolled out, until
    /// contract starts (`bellows_contract_start_seconds`).
    rolled_out_seen: Option<Instant>,
    /// The last status written, and when (`planner::writes`).
    written: Option<(Instant, SchemaRolloutStatus)>,
    /// The last contract check results: the generation they were for,
    /// when they were taken, the results.
    checks: Option<(i64, Timestamp, Vec<CheckResult>)>,
}

impl Context {
    /// A context publishing events as `bellows`, keeping its records in
    /// `operator_namespace`.
    pub fn new(client: Client, metrics: Arc<Metrics>, operator_namespace: &str) -> Self {
        let instance = std::env::var("POD_NAME").ok();
        let reporter = Reporter {
            controller: "bellows".into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            pools: Default::default(),
            caches: None,
            cron_jobs: Default::default(),
            operator_namespace: operator_namespace.to_owned(),
            seal: Default::default(),
            argo_rollouts: Default::default(),
            prometheus: Default::default(),
            memories: Mutex::default(),
        }
    }

    /// The cluster ledger's ConfigMaps (`cluster_ledger`).
    pub fn ledger_home(&self) -> kube::Api<k8s_openapi::api::core::v1::ConfigMap> {
        kube::Api::namespaced(self.client.clone(), &self.operator_namespace)
    }

    /// The seal of phase Jobs (`controller::seal`), its key read from the
    /// operator's namespace, or made there, on first use.
    pub async fn seal(&self) -> Result<&Seal, super::Error> {
        let secrets = kube::Api::namespaced(self.client.clone(), &self.operator_namespace);
        Ok(self.seal.get_or_try_init(|| Seal::load(&secrets)).await?)
    }

    /// Phase Jobs are sealed with `seal` (its key known already).
    pub fn with_seal(self, seal: Seal) -> Self {
        let _ = self.seal.set(seal);
        self
    }

    /// Reconciles read the watch caches once they synced.
    pub fn with_caches(mut self, caches: Caches) -> Self {
        self.caches = Some(caches);
        self
    }

    /// Runs `f` on the memory of `rollout` (a fresh one for a rollout not
    /// seen before, or re-created since).
    fn memory<T>(&self, rollout: &SchemaRollout, f: impl FnOnce(&mut Memory) -> T) -> T {
        let uid = rollout.uid().unwrap_or_default();
        let mut all = self.memories.lock().expect("memory lock");
        let memory = all.entry(ObjectRef::from(rollout)).or_default();
        if memory.uid != uid {
            *memory = Memory {
                uid,
                ..Memory::default()
            };
        }
        f(memory)
    }

    /// Forgets `rollout` (it is gone).
    pub(super) fn forget(&self, rollout: &SchemaRollout) {
        let mut all = self.memories.lock().expect("memory lock");
        all.remove(&ObjectRef::from(rollout));
    }

    pub(super) fn reset_backoff(&self, rollout: &SchemaRollout) {
        self.memory(rollout, |m| m.failures = 0);
    }

    /// The next retry delay for `rollout`: 1s, 2s, 4s ... up to 5 minutes.
    pub(super) fn backoff(&self, rollout: &SchemaRollout) -> Duration {
        let n = self.memory(rollout, |m| {
            m.failures = m.failures.saturating_add(1);
            m.failures
        });
        Duration::from_secs(1u64 << (n - 1).min(8)).min(Duration::from_secs(300))
    }

    /// Starts the contract-start clock of `rollout` at `at`.
    pub(super) fn rolled_out(&self, rollout: &SchemaRollout, at: Instant) {
        self.memory(rollout, |m| m.rolled_out_seen = Some(at));
    }

    /// Stops the contract-start clock of `rollout`, if it runs.
    pub(super) fn contract_started(&self, rollout: &SchemaRollout) {
        if let Some(at) = self.memory(rollout, |m| m.rolled_out_seen.take()) {
            self.metrics.contract_started(at.elapsed());
        }
    }

    /// Whether to write `planned` as the status of `rollout`, given the
    /// status last written for it ([`writes::status_write`]).
    pub(super) fn status_write(
        &self,
        rollout: &SchemaRollout,
        planned: &SchemaRolloutStatus,
    ) -> StatusWrite {
        self.memory(rollout, |m| {
            let last = m.written.as_ref().map(|(at, s)| (s, at.elapsed()));
            writes::status_write(rollout.status.as_ref(), last, planned)
        })
    }

    /// Remembers `status` as written for `rollout` now.
    pub(super) fn wrote(&self, rollout: &SchemaRollout, status: SchemaRolloutStatus) {
        self.memory(rollout, |m| m.written = Some((Instant::now(), status)));
    }

    /// The last contract check results of `rollout`'s current generation,
    /// and when they were taken.
    pub(super) fn recent_checks(
        &self,
        rollout: &SchemaRollout,
    ) -> Option<(Timestamp, Vec<CheckResult>)> {
        let generation = rollout.metadata.generation.unwrap_or_default();
        self.memory(rollout, |m| {
            m.checks
                .as_ref()
                .filter(|c| c.0 == generation)
                .map(|c| (c.1, c.2.clone()))
        })
    }

    /// Remembers contract check results of `rollout`'s current generation
    /// taken at `at`.
    pub(super) fn keep_checks(
        &self,
        rollout: &SchemaRollout,
        at: Timestamp,
        results: Vec<CheckResult>,
    ) {
        let generation = rollout.metadata.generation.unwrap_or_default();
        self.memory(rollout, |m| m.checks = Some((generation, at, results)));
    }
}
