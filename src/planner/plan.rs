//! The planner's input and output types: what was observed, the side
//! effects and events it asks for, the plan.

use crate::api::{Reason, RolloutPhase, SchemaRolloutStatus, Step};
use crate::planner::ledger::LedgerState;
use crate::planner::step::{self, JobObservation};
use crate::planner::workload::Assessment;
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the controller observed for one reconcile.
#[derive(Clone, Debug)]
pub struct Observed {
    /// One assessment per `spec.workloads` entry, in the same order.
    pub workloads: Vec<Assessment>,
    /// The Job found under each phase's deterministic name for the current
    /// spec (absent when no such Job exists).
    pub jobs: BTreeMap<Step, JobObservation>,
    /// Secrets and ConfigMaps the phases' Jobs need that do not exist.
    pub missing: Vec<step::Reference>,
    /// The database ledger's row of each phase (empty without a database).
    pub ledger: BTreeMap<Step, LedgerState>,
    /// Results of the contract checks, when they were evaluated.
    pub checks: Option<Vec<CheckResult>>,
    /// Why `spec.database` cannot be used (reason, message), if it cannot.
    pub database_error: Option<(Reason, String)>,
    /// Which other rollout holds the database lock, if one does.
    pub lock_holder: Option<String>,
    /// A phase whose Job the API server refused to create in this
    /// reconcile (403, 422, quota, admission), with the server's message.
    pub rejected: Option<(Step, String)>,
    /// The current time.
    pub now: Timestamp,
}

/// The result of one contract check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// Its boolean, or why there is none.
    pub result: Result<bool, CheckProblem>,
}

/// Why a check gave no boolean.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckProblem {
    /// It ran but returned no row, several rows, NULL or a non-boolean.
    Invalid(String),
    /// It could not run (an error from the database).
    Failed(String),
}

/// A side effect the controller must carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the Job of `step` (if absent) under `name`.
    CreateJob {
        /// The phase.
        step: Step,
        /// Its deterministic Job name.
        name: String,
    },
    /// Run the inline SQL of `step` under the database lock.
    RunSql(Step),
    /// Record in the ledger that the Job of `step` finished (`failure` says
    /// why it failed).
    Record {
        /// The phase.
        step: Step,
        /// Why it failed, if it did.
        failure: Option<String>,
    },
    /// Set `spec.paused` on a Deployment and mark it as paused by bellows.
    PauseWorkload(String),
    /// Resume a Deployment that bellows paused.
    ResumeWorkload(String),
}

/// Severity of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Progress.
    Normal,
    /// Something needs attention.
    Warning,
}

/// An event to publish about the rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventIntent {
    /// Normal or Warning.
    pub kind: EventKind,
    /// Its reason.
    pub reason: Reason,
    /// Human-readable detail.
    pub note: String,
}

/// Longest note (in bytes) the API server accepts on an events.k8s.io Event.
pub const EVENT_NOTE_LIMIT: usize = 1024;

/// `text` as an Event note: cut at a character boundary, ending in `…`, when
/// it is longer than [`EVENT_NOTE_LIMIT`] (a longer note makes the API server
/// refuse the whole event). The status message keeps the full text.
pub fn event_note(text: &str) -> String {
    if text.len() <= EVENT_NOTE_LIMIT {
        return text.to_owned();
    }
    let mut end = EVENT_NOTE_LIMIT - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The planner's decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The complete status to write.
    pub status: SchemaRolloutStatus,
    /// Side effects, in order; all must succeed before `status` is written.
    pub actions: Vec<Action>,
    /// Events to publish once the status is written.
    pub events: Vec<EventIntent>,
    /// Look again after this long even if nothing changes (bake time,
    /// rollout timeout); `None` means wait for a watch event.
    pub requeue_after: Option<Duration>,
    /// Why contract (or the next phase) is held, if it is.
    pub hold_reason: Option<Reason>,
    /// Why contract became held in this plan (it was not held for that
    /// reason before), for the `bellows_contract_held_total` metric.
    pub newly_held: Option<Reason>,
}

impl Plan {
    /// The new phase.
    pub fn phase(&self) -> RolloutPhase {
        self.status.phase.unwrap_or(RolloutPhase::Pending)
    }
}
