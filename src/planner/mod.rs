//! The pure phase planner: observed state in, next action out.
//!
//! [`plan`] reads the SchemaRollout (spec, previous status, approval
//! annotation), what was observed about its workloads and Jobs, and the
//! current time, and returns the status to write, the side effects to carry
//! out, the events to publish and when to look again. It performs no I/O and
//! reads no clock, so every safety invariant of the design is checked by
//! plain unit tests (see `tests.rs`).

mod conditions;
pub mod ledger;
pub mod rollout;
pub mod step;
pub mod validate;

#[cfg(test)]
mod tests;

use crate::api::{
    APPROVE_ANNOTATION, Approval, Reason, RolloutPhase, SchemaRollout, SchemaRolloutStatus, Step,
    StepState, StepStatus, WorkloadStatus, condition,
};
use crate::planner::ledger::LedgerState;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use rollout::{Assessment, Verdict, Wait};
use std::collections::BTreeMap;
use std::time::Duration;
use step::{JobObservation, Outcome};

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
    /// Its boolean, or why it could not be evaluated.
    pub result: Result<bool, String>,
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

/// A reason with its message.
type Why = (Reason, String);

/// Where the rollout stands after one planning pass.
struct Decision {
    phase: RolloutPhase,
    /// Progress needs a human (kstatus `Stalled`).
    stall: Option<Why>,
    /// Contract (or the next phase) waits for this.
    hold: Option<Why>,
    requeue_after: Option<Duration>,
}

impl Decision {
    fn at(phase: RolloutPhase) -> Self {
        Self {
            phase,
            stall: None,
            hold: None,
            requeue_after: None,
        }
    }
    fn stalled(phase: RolloutPhase, reason: Reason, message: String) -> Self {
        Self {
            stall: Some((reason, message)),
            ..Self::at(phase)
        }
    }
    fn held(phase: RolloutPhase, reason: Reason, message: String) -> Self {
        Self {
            hold: Some((reason, message)),
            ..Self::at(phase)
        }
    }
}

/// Decides the next step of `rollout` from what was observed.
pub fn plan(rollout: &SchemaRollout, observed: &Observed) -> Plan {
    Planner::new(rollout, observed).run()
}

struct Planner<'a> {
    rollout: &'a SchemaRollout,
    observed: &'a Observed,
    prev: SchemaRolloutStatus,
    steps: Vec<StepStatus>,
    actions: Vec<Action>,
    events: Vec<EventIntent>,
}

impl<'a> Planner<'a> {
    fn new(rollout: &'a SchemaRollout, observed: &'a Observed) -> Self {
        let prev = rollout.status.clone().unwrap_or_default();
        Self {
            rollout,
            observed,
            steps: prev.steps.clone(),
            prev,
            actions: vec![],
            events: vec![],
        }
    }

    fn now(&self) -> Time {
        Time(self.observed.now)
    }

    fn run(mut self) -> Plan {
        let workloads = self.workload_statuses();
        let all_rolled_out = !workloads.is_empty() && workloads.iter().all(|w| w.rolled_out);
        let rolled_out_at = all_rolled_out
            .then(|| {
                workloads
                    .iter()
                    .filter_map(|w| w.rolled_out_at.clone())
                    .max()
            })
            .flatten();

        let decision = match validate::validate(&self.rollout.spec) {
            Err(problems) => Decision::stalled(
                self.prev.phase.unwrap_or(RolloutPhase::Pending),
                Reason::InvalidSpec,
                problems.join("; "),
            ),
            Ok(durations) => self.decide(&durations, rolled_out_at.as_ref()),
        };
        if decision.stall.is_some() || self.rollout.spec.paused {
            // A stalled or paused rollout starts nothing new; a Job already
            // running is left to finish.
            self.actions
                .retain(|a| !matches!(a, Action::CreateJob { .. } | Action::ResumeWorkload(_)));
        }
        self.finish(decision, workloads, all_rolled_out, rolled_out_at)
    }

    /// Workload statuses, keeping each one's `rolledOutAt` while it stays
    /// rolled out.
    fn workload_statuses(&self) -> Vec<WorkloadStatus> {
        self.observed
            .workloads
            .iter()
            .map(|a| {
                let rolled_out = a.verdict == Verdict::RolledOut;
                let since = self
                    .prev
                    .workloads
                    .iter()
                    .find(|w| w.name == a.name && w.rolled_out)
                    .and_then(|w| w.rolled_out_at.clone());
                let (reason, message) = match &a.verdict {
                    Verdict::RolledOut => (None, None),
                    Verdict::Waiting(w, m) => {
                        (Some(w.reason().as_str().to_owned()), Some(m.clone()))
                    }
                };
                WorkloadStatus {
                    name: a.name.clone(),
                    rolled_out,
                    rolled_out_at: rolled_out.then(|| since.unwrap_or_else(|| self.now())),
                    replicas: a.replicas,
                    new_pods: a.new_pods,
                    old_pods: a.old_pods,
                    reason,
                    message,
                }
            })
            .collect()
    }

    /// Outcome of `step` for the current spec, recording it in `steps` (and,
    /// for a finished Job, in the ledger).
    fn outcome(&mut self, step: Step) -> Outcome {
        let Some(phase) = step::phase(&self.rollout.spec, step) else {
            return Outcome::Succeeded;
        };
        let digest = step::digest(phase);
        let ledger = self.observed.ledger.get(&step);
        let outcome = step::outcome(
            &self.prev,
            step,
            phase,
            ledger,
            self.observed.jobs.get(&step),
        );
        let state = match &outcome {
            Outcome::Running => StepState::Running,
            Outcome::Succeeded => StepState::Succeeded,
            Outcome::Failed(_) | Outcome::Vanished => StepState::Failed,
            Outcome::NotStarted => return outcome,
        };
        let message = match &outcome {
            Outcome::Failed(m) => Some(m.clone()),
            Outcome::Vanished => Some(step::JOB_DELETED.to_owned()),
            _ => None,
        };
        let ledger_final = matches!(
            ledger,
            Some(LedgerState::Succeeded | LedgerState::Failed(_))
        );
        // The database ledger is read on every reconcile; the cluster
        // ledger (no database) only when a phase may start, so it is
        // written when status first sees the Job finish.
        let known = self
            .steps
            .iter()
            .any(|s| s.step == step && s.digest == digest && s.state == state);
        if phase.job.is_some()
            && state != StepState::Running
            && !ledger_final
            && !settled(self.rollout)
            && (self.rollout.spec.database.is_some() || !known)
        {
            self.actions.push(Action::Record {
                step,
                failure: message.clone(),
            });
        }
        let now = self.now();
        match self
            .steps
            .iter_mut()
            .find(|s| s.step == step && s.digest == digest)
        {
            Some(record) if record.state == state => {}
            Some(record) => {
                if state == StepState::Succeeded && step != Step::Contract {
                    self.events.push(EventIntent {
                        kind: EventKind::Normal,
                        reason: step_event(step, StepState::Succeeded),
                        note: format!("{} completed", runner_text(record)),
                    });
                }
                record.state = state;
                record.finished_at = (state != StepState::Running).then_some(now);
                record.message = message;
            }
            None => {
                // Status was lost (or the rollout re-created) but the Job or
                // the ledger knows: adopt that.
                if ledger == Some(&LedgerState::Succeeded)
                    && !self.observed.jobs.contains_key(&step)
                {
                    self.events.push(EventIntent {
                        kind: EventKind::Normal,
                        reason: Reason::PhaseAlreadyDone,
                        note: format!(
                            "{} already succeeded for this spec (digest {digest}, recorded in the ledger); not run again",
                            step.as_str()
                        ),
                    });
                }
                let mut record = self.new_record(step, phase, digest);
                record.state = state;
                record.finished_at = (state != StepState::Running).then_some(now);
                record.message = message;
                self.steps.retain(|s| s.step != step);
                self.steps.push(record);
            }
        }
        outcome
    }

    fn new_record(&self, step: Step, phase: &crate::api::PhaseSpec, digest: String) -> StepStatus {
        StepStatus {
            step,
            job_name: phase
                .job
                .as_ref()
                .map(|_| step::job_name(&self.rollout.name_any(), step, &digest)),
            statements: phase.sql.as_ref().map(|s| s.len() as i32),
            digest,
            state: StepState::Running,
            started_at: Some(self.now()),
            finished_at: None,
            message: None,
        }
    }

    /// Starts `step` now unless the rollout is paused or another rollout
    /// holds the database (one phase at a time per database); `waiting` is the phase to show
    /// meanwhile.
    fn start(&mut self, step: Step, waiting: RolloutPhase) -> Decision {
        if self.rollout.spec.paused {
            return Decision::held(
                waiting,
                Reason::Paused,
                format!("paused before {}", step.as_str()),
            );
        }
        let phase = step::phase(&self.rollout.spec, step).expect("started steps exist");
        if let Some((_, message)) = self.observed.rejected.as_ref().filter(|r| r.0 == step) {
            let mut d = Decision::stalled(
                waiting,
                Reason::JobRejected,
                format!(
                    "the API server refused to create the {} Job: {message}",
                    step.as_str()
                ),
            );
            d.requeue_after = Some(RETRY_REJECTED);
            return d;
        }
        if let Some(holder) = &self.observed.lock_holder {
            let mut d = Decision::held(
                waiting,
                Reason::DatabaseBusy,
                format!("waiting for the database lock held by {holder}"),
            );
            d.requeue_after = Some(RETRY_DATABASE);
            return d;
        }
        let record = self.new_record(step, phase, step::digest(phase));
        self.actions.push(match &record.job_name {
            Some(name) => Action::CreateJob {
                step,
                name: name.clone(),
            },
            None => Action::RunSql(step),
        });
        self.events.push(EventIntent {
            kind: EventKind::Normal,
            reason: step_event(step, StepState::Running),
            note: format!("started {}", runner_text(&record)),
        });
        self.steps.retain(|s| s.step != step);
        self.steps.push(record);
        let mut d = Decision::at(step_phase(step));
        if phase.sql.is_some() {
            // The statements run in this reconcile; look at the ledger next.
            d.requeue_after = Some(Duration::ZERO);
        }
        d
    }

    /// The decision for a phase whose Job exists or existed.
    fn started(&self, step: Step, outcome: Outcome) -> Option<Decision> {
        let phase = step_phase(step);
        match outcome {
            Outcome::Running => Some(Decision::at(phase)),
            Outcome::Failed(m) => Some(Decision::stalled(
                RolloutPhase::Failed,
                step_event(step, StepState::Failed),
                format!("{} Job failed: {m}", step.as_str()),
            )),
            // Nobody can tell how far a deleted Job got: the phase failed,
            // its ledger row says so (releasing the database) and it never
            // runs again for this spec.
            Outcome::Vanished => Some(Decision::stalled(
                RolloutPhase::Failed,
                Reason::JobDeleted,
                format!(
                    "the {} Job was deleted before it finished; check the schema, then change the spec to run the phase again",
                    step.as_str()
                ),
            )),
            Outcome::NotStarted | Outcome::Succeeded => None,
        }
    }

    fn decide(
        &mut self,
        durations: &validate::Durations,
        rolled_out_at: Option<&Time>,
    ) -> Decision {
        let spec = &self.rollout.spec;
        // Once contract has started, it is what the rollout is about (I3:
        // nothing re-runs it, whatever happens to the workloads later).
        let contract = self.outcome(Step::Contract);
        if contract == Outcome::Succeeded {
            return Decision::at(RolloutPhase::Succeeded);
        }
        if let Some(d) = self.started(Step::Contract, contract) {
            return d;
        }

        // I6: a Job that could not start its pods is never created, in any
        // phase, so no migration is left half done.
        if let Some(r) = self.observed.missing.first() {
            return Decision::stalled(
                self.prev.phase.unwrap_or(RolloutPhase::Pending),
                r.missing_reason(),
                format!("{r} needed by a migration Job does not exist"),
            );
        }

        // The database is needed for ledger, checks and inline SQL.
        if let Some((reason, message)) = &self.observed.database_error {
            let mut d = Decision::stalled(
                self.prev.phase.unwrap_or(RolloutPhase::Pending),
                *reason,
                message.clone(),
            );
            d.requeue_after = Some(RETRY_DATABASE);
            return d;
        }

        // I6: a workload that cannot be found starts nothing.
        if let Some(a) = self.observed.workloads.iter().find(|a| a.problem.is_some()) {
            let reason = a
                .problem
                .as_ref()
                .map_or(Reason::WorkloadNotFound, |p| p.reason());
            let message = match &a.verdict {
                Verdict::Waiting(_, m) => m.clone(),
                Verdict::RolledOut => String::new(),
            };
            return Decision::stalled(
                self.prev.phase.unwrap_or(RolloutPhase::Pending),
                reason,
                message,
            );
        }

        // Expand, with the optional gate (I5).
        let gate = spec.gate.as_ref().is_some_and(|g| g.pause_workloads);
        let expand = self.outcome(Step::Expand);
        if gate && expand != Outcome::Succeeded {
            for a in self.observed.workloads.iter().filter(|a| !a.paused) {
                self.actions.push(Action::PauseWorkload(a.name.clone()));
            }
        }
        match expand {
            Outcome::NotStarted => return self.start(Step::Expand, RolloutPhase::Pending),
            Outcome::Succeeded => {
                for a in self.observed.workloads.iter().filter(|a| a.paused_by_us) {
                    self.actions.push(Action::ResumeWorkload(a.name.clone()));
                }
            }
            other => return self.started(Step::Expand, other).expect("expand started"),
        }

        // Roll out (I2, I4), with the optional transition in between.
        let hold = self.rollout_hold(durations);
        if spec.transition.is_some() {
            match self.outcome(Step::Transition) {
                Outcome::Succeeded => {}
                Outcome::NotStarted if hold.is_none() => {
                    return self.start(Step::Transition, RolloutPhase::AwaitingRollout);
                }
                Outcome::NotStarted => {}
                other => {
                    return self
                        .started(Step::Transition, other)
                        .expect("transition started");
                }
            }
        }
        if let Some(d) = hold {
            return d;
        }

        // Bake time counts from the last workload becoming rolled out.
        let now = self.observed.now;
        if !durations.bake_time.is_zero() {
            let since = rolled_out_at.map_or(now, |t| t.0);
            let elapsed = elapsed(now, since);
            if elapsed < durations.bake_time {
                let left = durations.bake_time - elapsed;
                let mut d = Decision::held(
                    RolloutPhase::Baking,
                    Reason::Baking,
                    format!(
                        "all workloads rolled out; baking for {}s more",
                        left.as_secs().max(1)
                    ),
                );
                d.requeue_after = Some(left);
                return d;
            }
        }

        let approval = spec
            .contract
            .after
            .as_ref()
            .map(|a| a.approval)
            .unwrap_or_default();
        if approval == Approval::Manual
            && let Some(why) = self.unapproved()
        {
            return Decision::held(
                RolloutPhase::AwaitingApproval,
                Reason::AwaitingApproval,
                why,
            );
        }
        // I2: every check true, evaluated in this very reconcile.
        if let Some(d) = self.check_hold() {
            return d;
        }
        let waiting = if approval == Approval::Manual {
            RolloutPhase::AwaitingApproval
        } else if !durations.bake_time.is_zero() {
            RolloutPhase::Baking
        } else {
            RolloutPhase::AwaitingRollout
        };
        self.start(Step::Contract, waiting)
    }

    /// Why contract cannot start yet because of the workloads, if it cannot.
    fn rollout_hold(&self, durations: &validate::Durations) -> Option<Decision> {
        let (wait, message) = self
            .observed
            .workloads
            .iter()
            .find_map(|a| match &a.verdict {
                Verdict::Waiting(w, m) => Some((*w, m.clone())),
                Verdict::RolledOut => None,
            })?;
        let phase = RolloutPhase::AwaitingRollout;
        let mut decision = match wait {
            Wait::RolledBack => Decision::held(phase, Reason::RolledBack, message),
            Wait::ProgressDeadlineExceeded => {
                Decision::stalled(phase, Reason::ProgressDeadlineExceeded, message)
            }
            _ => Decision::held(phase, Reason::RolloutInProgress, message),
        };
        if decision.stall.is_none() {
            let expanded_at = self
                .steps
                .iter()
                .find(|s| s.step == Step::Expand)
                .and_then(|s| s.finished_at.clone())
                .map_or(self.observed.now, |t| t.0);
            let waited = elapsed(self.observed.now, expanded_at);
            if waited >= durations.rollout {
                let m = decision.hold.take().map(|h| h.1).unwrap_or_default();
                decision.stall = Some((
                    Reason::RolloutTimedOut,
                    format!(
                        "workloads not rolled out {}s after expand: {m}",
                        durations.rollout.as_secs()
                    ),
                ));
            } else {
                decision.requeue_after = Some(durations.rollout - waited);
            }
        }
        Some(decision)
    }

    /// Why the contract checks hold contract, if they do.
    fn check_hold(&self) -> Option<Decision> {
        let checks = self.rollout.spec.checks();
        if checks.is_empty() {
            return None;
        }
        let phase = RolloutPhase::AwaitingRollout;
        let mut d = match &self.observed.checks {
            None => Decision::held(
                phase,
                Reason::ChecksPending,
                "contract checks not evaluated yet".into(),
            ),
            Some(results) => match results.iter().find(|c| c.result != Ok(true)) {
                None => return None,
                Some(CheckResult {
                    name,
                    result: Ok(_),
                }) => Decision::held(phase, Reason::CheckFailed, format!("check {name} is false")),
                Some(CheckResult {
                    name,
                    result: Err(e),
                }) => Decision::held(
                    phase,
                    Reason::CheckError,
                    format!("check {name} failed: {e}"),
                ),
            },
        };
        d.requeue_after = Some(RETRY_CHECKS);
        Some(d)
    }

    /// Why the contract is not approved yet, if it is not: the annotation
    /// must name this object and this contract ([`approval_key`]).
    fn unapproved(&self) -> Option<String> {
        let key = approval_key(self.rollout);
        match self.rollout.annotations().get(APPROVE_ANNOTATION) {
            Some(given) if *given == key => None,
            None => Some(format!(
                "contract waits for the annotation {APPROVE_ANNOTATION}: \"{key}\""
            )),
            Some(given) if !given.is_empty() && given.bytes().all(|b| b.is_ascii_digit()) => {
                Some(format!(
                    "{APPROVE_ANNOTATION}: \"{given}\" is the old generation format and approves nothing; approvals name this rollout and its contract: \"{key}\" (kubectl bellows approve writes it)"
                ))
            }
            Some(given) => Some(format!(
                "{APPROVE_ANNOTATION}: \"{given}\" approves another contract or an earlier object of this name; this contract is \"{key}\""
            )),
        }
    }

    fn finish(
        mut self,
        d: Decision,
        workloads: Vec<WorkloadStatus>,
        all_rolled_out: bool,
        rolled_out_at: Option<Time>,
    ) -> Plan {
        let now = self.observed.now;
        let generation = self.rollout.metadata.generation;
        let approval = self
            .rollout
            .spec
            .contract
            .after
            .as_ref()
            .map(|a| a.approval)
            .unwrap_or_default();
        let expand_done = self
            .steps
            .iter()
            .any(|s| s.step == Step::Expand && s.state == StepState::Succeeded);

        // Events, once per change (never one per requeue).
        let was_true = |t: &str| self.prev.condition(t).is_some_and(|c| c.status == "True");
        if expand_done
            && all_rolled_out
            && !(was_true(condition::EXPANDED) && was_true(condition::ROLLED_OUT))
        {
            self.events.push(EventIntent {
                kind: EventKind::Normal,
                reason: Reason::RolloutObserved,
                note: "every workload runs only the new version".into(),
            });
        }
        let prev_hold = self.prev.hold_reason.as_deref();
        let stall_reason = d.stall.as_ref().map(|s| s.0);
        let prev_stall = self
            .prev
            .condition(condition::STALLED)
            .filter(|c| c.status == "True")
            .map(|c| c.reason.as_str());
        if let Some((reason, message)) = &d.stall
            && prev_stall != Some(reason.as_str())
        {
            self.events.push(EventIntent {
                kind: EventKind::Warning,
                reason: *reason,
                note: event_note(message),
            });
        }
        let mut newly_held = None;
        if let Some((reason, message)) = &d.hold
            && expand_done
            && prev_hold != Some(reason.as_str())
        {
            newly_held = Some(*reason);
            let kind = if *reason == Reason::RolledBack {
                EventKind::Warning
            } else {
                EventKind::Normal
            };
            self.events.push(EventIntent {
                kind,
                reason: Reason::ContractHeld,
                note: event_note(&format!("{reason}: {message}")),
            });
        }
        if d.phase == RolloutPhase::Succeeded && self.prev.phase != Some(RolloutPhase::Succeeded) {
            self.events.push(EventIntent {
                kind: EventKind::Normal,
                reason: Reason::Succeeded,
                note: "contract completed; the schema rollout is done".into(),
            });
        }

        let message = d
            .stall
            .as_ref()
            .or(d.hold.as_ref())
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| phase_message(d.phase).to_owned());
        let rollout_reason = workloads
            .iter()
            .find_map(|w| w.reason.clone().zip(w.message.clone()));
        let step_reason = |step: Step| {
            self.steps
                .iter()
                .find(|s| s.step == step)
                .map_or(Reason::NotStarted, |s| match s.state {
                    StepState::Running => Reason::Running,
                    StepState::Succeeded => Reason::Succeeded,
                    StepState::Failed => Reason::Failed,
                })
                .as_str()
        };
        let succeeded = d.phase == RolloutPhase::Succeeded;
        let progress_reason = d.hold.as_ref().map_or(d.phase.as_str(), |h| h.0.as_str());
        let stall_reason = stall_reason.map(Reason::as_str);
        let mut cond = conditions::Builder::new(&self.prev.conditions, generation, now);
        cond.set(
            condition::READY,
            succeeded,
            if succeeded {
                Reason::Succeeded.as_str()
            } else {
                stall_reason.unwrap_or(progress_reason)
            },
            &message,
        );
        cond.set(
            condition::RECONCILING,
            !succeeded && d.stall.is_none() && !self.rollout.spec.paused,
            if self.rollout.spec.paused {
                Reason::Paused.as_str()
            } else {
                progress_reason
            },
            &message,
        );
        cond.set(
            condition::STALLED,
            d.stall.is_some(),
            stall_reason.unwrap_or(Reason::NotStalled.as_str()),
            d.stall.as_ref().map_or("", |s| s.1.as_str()),
        );
        cond.set(
            condition::EXPANDED,
            expand_done,
            step_reason(Step::Expand),
            "",
        );
        match &rollout_reason {
            Some((reason, m)) => cond.set(condition::ROLLED_OUT, false, reason, m),
            None => cond.set(
                condition::ROLLED_OUT,
                all_rolled_out,
                Reason::AllWorkloadsRolledOut.as_str(),
                "every workload runs only the new version",
            ),
        }
        cond.set(
            condition::CONTRACTED,
            succeeded,
            step_reason(Step::Contract),
            "",
        );

        self.steps.sort_by_key(|s| s.step);
        Plan {
            status: SchemaRolloutStatus {
                observed_generation: generation,
                phase: Some(d.phase),
                phase_since: match self.prev.phase_since {
                    Some(since) if self.prev.phase == Some(d.phase) => Some(since),
                    _ => Some(Time(now)),
                },
                message: Some(message),
                conditions: cond.into_conditions(),
                workloads,
                steps: self.steps,
                rolled_out_at,
                hold_reason: d.hold.as_ref().map(|h| h.0.as_str().to_owned()),
                approval_key: (approval == Approval::Manual).then(|| approval_key(self.rollout)),
            },
            actions: self.actions,
            events: self.events,
            requeue_after: d.requeue_after.map(|r| r.min(MAX_REQUEUE)),
            hold_reason: d.hold.map(|h| h.0),
            newly_held,
        }
    }
}

/// Time from `since` to `now`; zero when `since` lies in the future (a
/// timestamp written by a replica whose clock runs ahead), so a skewed
/// clock can only lengthen a wait such as bake time, never shorten it.
pub fn elapsed(now: Timestamp, since: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// Whether `rollout` has settled: Succeeded or Failed for its current
/// generation. Its ledger rows were made final before its status said so,
/// so a settled rollout needs no database: no Secret read, no query, no
/// ledger write (a spec change starts a new generation and unsettles it).
pub fn settled(rollout: &SchemaRollout) -> bool {
    rollout.status.as_ref().is_some_and(|s| {
        matches!(
            s.phase,
            Some(RolloutPhase::Succeeded | RolloutPhase::Failed)
        ) && s.observed_generation.is_some()
            && s.observed_generation == rollout.metadata.generation
    })
}

/// The value of the `bellows.dev/approve` annotation that approves
/// `rollout`'s current contract: `<metadata.uid>/<contract spec digest>`.
/// Bound to the object (a `kubectl replace --force` gets a new uid) and to
/// the contract's spec (an edited contract has a new digest), so no
/// approval outlives what it approved or can be written in advance for a
/// contract that does not exist yet.
pub fn approval_key(rollout: &SchemaRollout) -> String {
    format!(
        "{}/{}",
        rollout.uid().unwrap_or_default(),
        step::digest(&rollout.spec.contract.run)
    )
}

/// The furthest wake-up a plan asks for: a timeout of years is checked
/// again hourly rather than handed to a timer it could overflow.
const MAX_REQUEUE: Duration = Duration::from_secs(60 * 60);

/// How long contract check results may be reused while they only hold
/// contract (a burst of pod events must not query the database each time).
pub const CHECKS_FRESH_FOR: Duration = Duration::from_secs(5);

/// Whether the contract checks must be evaluated now: always when the
/// reconcile confirms a decision to start a phase (I2: every check true in
/// the very reconcile that starts contract), otherwise once the last
/// evaluation (if any) is [`CHECKS_FRESH_FOR`] old.
pub fn checks_due(last: Option<Timestamp>, now: Timestamp, confirming: bool) -> bool {
    confirming || last.is_none_or(|at| elapsed(now, at) >= CHECKS_FRESH_FOR)
}

/// How soon a check that holds contract is evaluated again.
const RETRY_CHECKS: Duration = CHECKS_FRESH_FOR;
/// How soon a Job the API server refused is tried again (a quota raised,
/// a policy or RBAC fixed).
const RETRY_REJECTED: Duration = Duration::from_secs(30);
/// How soon an unusable or busy database is tried again.
const RETRY_DATABASE: Duration = Duration::from_secs(15);

/// `Job NAME` or `N SQL statements`, for events.
fn runner_text(record: &StepStatus) -> String {
    match (&record.job_name, record.statements) {
        (Some(name), _) => format!("Job {name}"),
        (None, n) => format!("{} SQL statement(s)", n.unwrap_or_default()),
    }
}

/// The phase in which `step`'s Job runs.
fn step_phase(step: Step) -> RolloutPhase {
    match step {
        Step::Expand => RolloutPhase::Expanding,
        Step::Transition => RolloutPhase::Transitioning,
        Step::Contract => RolloutPhase::Contracting,
    }
}

/// The fixed event reason for `step` reaching `state`.
fn step_event(step: Step, state: StepState) -> Reason {
    match (step, state) {
        (Step::Expand, StepState::Running) => Reason::ExpandStarted,
        (Step::Expand, StepState::Succeeded) => Reason::ExpandSucceeded,
        (Step::Expand, StepState::Failed) => Reason::ExpandFailed,
        (Step::Transition, StepState::Running) => Reason::TransitionStarted,
        (Step::Transition, StepState::Succeeded) => Reason::TransitionSucceeded,
        (Step::Transition, StepState::Failed) => Reason::TransitionFailed,
        (Step::Contract, StepState::Running) => Reason::ContractStarted,
        (Step::Contract, StepState::Succeeded) => Reason::ContractSucceeded,
        (Step::Contract, StepState::Failed) => Reason::ContractFailed,
    }
}

fn phase_message(phase: RolloutPhase) -> &'static str {
    match phase {
        RolloutPhase::Pending => "nothing has run yet",
        RolloutPhase::Expanding => "expand Job running",
        RolloutPhase::AwaitingRollout => "waiting for workloads to roll out",
        RolloutPhase::Transitioning => "transition Job running",
        RolloutPhase::Baking => "baking",
        RolloutPhase::AwaitingApproval => "waiting for approval",
        RolloutPhase::Contracting => "contract Job running",
        RolloutPhase::Succeeded => "every phase succeeded",
        RolloutPhase::Failed => "a phase failed",
    }
}
