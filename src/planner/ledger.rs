//! What a ledger (the database's, or the cluster's without one) records
//! about a phase, as the planner reads it: the key a phase run is filed
//! under and the state it reached. Pure types; the I/O lives in `db` and
//! `controller::cluster_ledger`.

use crate::api::{PhaseSpec, SchemaRollout, Step};
use crate::planner::step;
use kube::ResourceExt;

/// Identity of one phase in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerKey {
    /// Namespace of the rollout.
    pub namespace: String,
    /// Name of the rollout.
    pub rollout: String,
    /// The phase.
    pub step: Step,
    /// Digest of the phase's spec.
    pub digest: String,
}

/// What the ledger says about a phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerState {
    /// Started and not finished: a Job that runs, or inline SQL that was
    /// interrupted after `done` statements (MySQL only: on PostgreSQL the
    /// row is written in the phase's own transaction).
    Started {
        /// Statements applied so far (inline SQL).
        done: i32,
    },
    /// A Job phase claimed the database but its Job was not (yet) seen
    /// created; the phase may still be started.
    Claimed,
    /// Finished successfully.
    Succeeded,
    /// Failed, with why.
    Failed(String),
}

/// The ledger key of `step` for `rollout`'s current spec, if it has that
/// phase: namespace, rollout name, phase and spec digest.
pub fn key(rollout: &SchemaRollout, step: Step) -> Option<LedgerKey> {
    step::phase_spec(&rollout.spec, step).map(|phase| key_of(rollout, step, phase))
}

/// The ledger key of `step`, whose spec is `phase`, for `rollout`.
pub fn key_of(rollout: &SchemaRollout, step: Step, phase: &PhaseSpec) -> LedgerKey {
    LedgerKey {
        namespace: rollout.namespace().unwrap_or_default(),
        rollout: rollout.name_any(),
        step,
        digest: step::digest(phase),
    }
}
