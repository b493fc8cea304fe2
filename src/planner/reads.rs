//! What a reconcile must read for a rollout, decided here so that the
//! controller's observe only reads: which phases' Jobs (and what they
//! reference), whether the cluster ledger, whether the contract checks.

use super::ledger::LedgerState;
use super::step::{self, Reference};
use super::{CHECKS_FRESH_FOR, elapsed};
use crate::api::{SchemaRollout, Step, StepState};
use jiff::Timestamp;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};

/// The cluster reads a reconcile makes for a rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// The Job of each phase to read, by its deterministic name: every
    /// phase with a Job that status does not record as succeeded for the
    /// current spec. A recorded success stands whatever the Job or the
    /// ledger say ([`step::outcome`]), and a status read from a lagging
    /// cache is older, never newer, so nothing is missed.
    pub jobs: BTreeMap<Step, String>,
    /// The Secrets and ConfigMaps the phases' Jobs reference.
    pub references: BTreeSet<Reference>,
    /// Whether to read the cluster ledger: without a database, in the
    /// live round that confirms a decision to start a phase.
    pub cluster_ledger: bool,
}

/// What `rollout`'s reconcile reads; `confirming` when it is the live
/// round before a phase starts.
pub fn reads(rollout: &SchemaRollout, confirming: bool) -> Reads {
    let mut reads = Reads {
        cluster_ledger: rollout.spec.database.is_none() && confirming,
        ..Reads::default()
    };
    let status = rollout.status.clone().unwrap_or_default();
    for s in [Step::Expand, Step::Transition, Step::Contract] {
        let (Some(phase), Some(job)) = (
            step::phase_spec(&rollout.spec, s),
            step::job_spec(&rollout.spec, s),
        ) else {
            continue;
        };
        reads.references.extend(step::references(job));
        let digest = step::digest(phase);
        if step::recorded(&status, s, &digest) != Some(StepState::Succeeded) {
            reads
                .jobs
                .insert(s, step::job_name(&rollout.name_any(), s, &digest));
        }
    }
    reads
}

/// Whether the contract checks concern the planner now, given what the
/// database's ledger says of each phase (`ledger`): once expand succeeded
/// and until contract started.
pub fn checks_wanted(rollout: &SchemaRollout, ledger: &BTreeMap<Step, LedgerState>) -> bool {
    let status = rollout.status.clone().unwrap_or_default();
    let expanded = ledger.get(&Step::Expand) == Some(&LedgerState::Succeeded)
        || status
            .step(Step::Expand)
            .is_some_and(|s| s.state == StepState::Succeeded);
    let contract_digest = step::digest(&rollout.spec.contract.run);
    let contract_started = ledger
        .get(&Step::Contract)
        .is_some_and(|l| *l != LedgerState::Claimed)
        || status
            .step(Step::Contract)
            .is_some_and(|s| s.digest == contract_digest);
    expanded && !contract_started && !rollout.spec.checks().is_empty()
}

/// Whether wanted checks are evaluated now rather than their results of
/// `last` reused: always in the live round that confirms a decision to
/// start a phase (I2: every check true in the very reconcile that starts
/// contract), otherwise once the last evaluation (if any) is
/// [`CHECKS_FRESH_FOR`] old.
pub fn checks_due(last: Option<Timestamp>, now: Timestamp, confirming: bool) -> bool {
    confirming || last.is_none_or(|at| elapsed(now, at) >= CHECKS_FRESH_FOR)
}

/// Whether the objectives concern the planner now (status alone says
/// so): in the live round before expand starts (each query is sent once
/// to find a query Prometheus refuses, or a Prometheus it cannot reach,
/// before anything runs), and from when every workload was rolled out
/// after expand succeeded until contract started.
pub fn objectives_wanted(rollout: &SchemaRollout, confirming: bool) -> bool {
    if rollout.spec.objectives().is_empty() {
        return false;
    }
    let status = rollout.status.clone().unwrap_or_default();
    let Some(expand) = status.step(Step::Expand) else {
        return confirming;
    };
    expand.state == StepState::Succeeded
        && status.rolled_out_at.is_some()
        && status.step(Step::Contract).is_none()
}
