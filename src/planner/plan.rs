//! The planner's input and output types: what was observed, the side
//! effects and events it asks for, the plan.

use crate::api::{
    GateHold, PhaseSpec, Reason, RolloutPhase, SchemaRollout, SchemaRolloutStatus, Step,
};
use crate::planner::ledger::{LedgerKey, LedgerState};
use crate::planner::step::{self, JobObservation};
use crate::planner::validate::step_timeout;
use crate::planner::workload::Assessment;
use jiff::Timestamp;
use kube::ResourceExt;
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
    /// A phase the API server refused to start in this reconcile: its Job
    /// or its cluster ledger record (403, 422, quota, admission), with the
    /// server's message.
    pub rejected: Option<Rejected>,
    /// The objectives measured in this reconcile (those due).
    pub measurements: Vec<crate::planner::objective::Measurement>,
    /// The downtime budget, when measured in this reconcile.
    pub budget: Option<crate::planner::budget::Measurement>,
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
    /// Claim the database (or the cluster ledger) for the run, then create
    /// its Job if absent.
    CreateJob(PhaseRun),
    /// Run the run's inline statements under the database lock.
    RunSql(PhaseRun),
    /// Record in the ledger that the run's Job finished (`failure` says
    /// why it failed).
    Record {
        /// The run.
        run: PhaseRun,
        /// Why it failed, if it did.
        failure: Option<String>,
    },
    /// Hold a workload (pause, suspend or partition it) and mark it as
    /// held by bellows.
    PauseWorkload(GateHold),
    /// Release a workload that bellows held.
    ResumeWorkload(GateHold),
}

/// A phase start the API server refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The phase.
    pub step: Step,
    /// What was refused.
    pub what: Refused,
    /// The API server's message.
    pub message: String,
}

/// What the API server refused to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The phase's Job.
    Job,
    /// The phase's record in the cluster ledger (a ConfigMap): without it
    /// bellows could not tell later that the phase ran, so it starts
    /// nothing.
    Ledger,
    /// The phase's Job name, held by a Job bellows did not create (no
    /// valid seal): bellows never takes it for the phase's Job.
    NameTaken,
}

/// One run of a phase for the rollout's current spec: everything applying
/// an action about it needs, decided by the planner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseRun {
    /// What the ledger files it under (namespace, rollout, phase, digest).
    pub key: LedgerKey,
    /// Its Job's deterministic name (a Job phase).
    pub job: Option<String>,
    /// Its inline statements (an SQL phase).
    pub statements: Vec<String>,
    /// The Job's deadline: the phase's timeout.
    pub timeout: Duration,
    /// How long a claim holds the database for its Job: the deadline plus
    /// [`CLAIM_MARGIN`] (a Job past its deadline was stopped by Kubernetes).
    pub lease: Duration,
}

/// How much longer than its Job's deadline a claim holds the database
/// (pod scheduling and image pulls come before the deadline counts).
pub const CLAIM_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The run of `step` for `rollout`'s current spec, if it has that phase.
pub fn phase_run(rollout: &SchemaRollout, step: Step) -> Option<PhaseRun> {
    step::phase_spec(&rollout.spec, step).map(|phase| PhaseRun::of(rollout, step, phase))
}

impl PhaseRun {
    /// The run of `step`, whose spec is `phase`, for `rollout`.
    pub fn of(rollout: &SchemaRollout, step: Step, phase: &PhaseSpec) -> PhaseRun {
        let key = LedgerKey {
            namespace: rollout.namespace().unwrap_or_default(),
            rollout: rollout.name_any(),
            step,
            digest: step::digest(phase),
        };
        let timeout = step_timeout(&rollout.spec, step);
        PhaseRun {
            job: phase
                .job
                .as_ref()
                .map(|_| step::job_name(&rollout.name_any(), step, &key.digest)),
            statements: phase.sql.clone().unwrap_or_default(),
            key,
            timeout,
            lease: timeout + CLAIM_MARGIN,
        }
    }
}

impl Action {
    /// The run of a phase the action is about, if it is about one.
    pub fn run(&self) -> Option<&PhaseRun> {
        match self {
            Action::CreateJob(run) | Action::RunSql(run) | Action::Record { run, .. } => Some(run),
            Action::PauseWorkload(_) | Action::ResumeWorkload(_) => None,
        }
    }
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
    /// This plan is the first to see every workload rolled out, and
    /// contract then waits for no bake time or approval: the
    /// `bellows_contract_start_seconds` clock starts.
    pub starts_contract_clock: bool,
}

impl Plan {
    /// The new phase.
    pub fn phase(&self) -> RolloutPhase {
        self.status.phase.unwrap_or(RolloutPhase::Pending)
    }
}
