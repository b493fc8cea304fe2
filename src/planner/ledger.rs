//! What a ledger (the database's, or the cluster's without one) records
//! about a phase, as the planner reads it: the key a phase run is filed
//! under and the state it reached (a run's key is built with the run,
//! `PhaseRun::of`). Pure types; the I/O lives in `db` and
//! `controller::records`.

use crate::api::Step;

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
