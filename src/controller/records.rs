//! Where a rollout's phase runs are recorded, behind one type: the
//! ledger of its database (`spec.database`), or without one the cluster
//! ledger in the operator's namespace (`cluster_ledger`).

use super::{Error, cluster_ledger};
use crate::db::{LedgerState, Pools, Runner, Target};
use crate::planner::PhaseRun;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

/// The ledger a rollout's phase runs are recorded in.
pub enum Ledger<'a> {
    /// The database's ledger table.
    Database(&'a Target, &'a Pools),
    /// One ConfigMap per phase run in the operator's namespace.
    Cluster(Box<Api<ConfigMap>>),
}

impl Ledger<'_> {
    /// Claims the run before its Job is created: on a database under its
    /// lock, so two rollouts never start Jobs on it at once (the claim
    /// holds for `run.lease`).
    pub async fn claim(&self, run: &PhaseRun) -> Result<(), Error> {
        let job = job_of(run);
        match self {
            Ledger::Database(target, pools) => {
                Ok(target.claim_job(pools, &run.key, job, run.lease).await?)
            }
            // A claim the API server refuses stalls the phase before its
            // Job exists; a later record it refuses is retried (the phase
            // runs or ran, and must be recorded).
            Ledger::Cluster(api) => {
                write(api, run, LedgerState::Claimed)
                    .await
                    .map_err(|e| match e {
                        // 404: the operator's namespace does not exist.
                        kube::Error::Api(e) if matches!(e.code, 400 | 403 | 404 | 422) => {
                            Error::LedgerRejected {
                                step: run.key.step,
                                message: format!(
                                    "ConfigMap {}: {}",
                                    cluster_ledger::name(&run.key.namespace, job_of(run)),
                                    e.message
                                ),
                            }
                        }
                        e => Error::Kube(e),
                    })
            }
        }
    }

    /// Drops the claim of a run whose Job the API server refused, so other
    /// rollouts need not wait for it (the cluster ledger's claim binds no
    /// one else).
    pub async fn release(&self, run: &PhaseRun) -> Result<(), Error> {
        match self {
            Ledger::Database(target, pools) => Ok(target.release_claim(pools, &run.key).await?),
            Ledger::Cluster(_) => Ok(()),
        }
    }

    /// Records that the run's Job exists.
    pub async fn started(&self, run: &PhaseRun) -> Result<(), Error> {
        match self {
            Ledger::Database(target, pools) => Ok(target
                .record_start(pools, &run.key, &Runner::Job(job_of(run).to_owned()))
                .await?),
            Ledger::Cluster(api) => write(api, run, LedgerState::Started { done: 0 })
                .await
                .map_err(Error::Kube),
        }
    }

    /// Records that the run's Job finished; `failure` says why it failed.
    pub async fn finished(&self, run: &PhaseRun, failure: Option<&str>) -> Result<(), Error> {
        match self {
            Ledger::Database(target, pools) => {
                // The start row may be missing if bellows crashed right
                // after creating the Job.
                target
                    .record_start(pools, &run.key, &Runner::Job(job_of(run).to_owned()))
                    .await?;
                Ok(target.record_finish(pools, &run.key, failure).await?)
            }
            Ledger::Cluster(api) => {
                let state = match failure {
                    Some(m) => LedgerState::Failed(m.to_owned()),
                    None => LedgerState::Succeeded,
                };
                write(api, run, state).await.map_err(Error::Kube)
            }
        }
    }
}

/// The run's Job name (the ledger records Job phases by it).
fn job_of(run: &PhaseRun) -> &str {
    run.job.as_deref().unwrap_or_default()
}

/// Writes `state` for `run` into the cluster ledger, under its Job name.
async fn write(
    api: &Api<ConfigMap>,
    run: &PhaseRun,
    state: LedgerState,
) -> Result<(), kube::Error> {
    let key = &run.key;
    let entry =
        cluster_ledger::Entry::new(&state, &key.namespace, &key.rollout, key.step, &key.digest);
    cluster_ledger::write(api, job_of(run), &entry).await
}
