//! The rule chain: from the observed state to a [`Decision`], phase by
//! phase (contract first, then bad input, expand with its gate, rollout
//! and transition, bake time, approval, checks). A phase rule changes here.

use super::budget;
use super::objective::{self, Verdict as Slo};
use super::plan::{
    Action, CheckProblem, CheckResult, EventIntent, EventKind, Observed, PhaseRun, Plan, Refused,
};
use super::step::{self, Outcome};
use super::workload::{Assessment, Verdict, Wait};
use super::{
    POLL_UNWATCHED, RETRY_CHECKS, RETRY_DATABASE, RETRY_REJECTED, approval_key, elapsed, settled,
    unwatched, validate,
};
use crate::api::keys::APPROVE_ANNOTATION;
use crate::api::{
    Approval, BudgetStatus, Engine, GateHold, ObjectiveStatus, Reason, RolloutPhase, SchemaRollout,
    SchemaRolloutStatus, Step, StepState, StepStatus, WorkloadStatus,
};
use crate::planner::ledger::LedgerState;
use crate::sql;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use std::time::Duration;

/// A reason with its message.
type Why = (Reason, String);

/// Where the rollout stands after one planning pass.
pub(super) struct Decision {
    pub(super) phase: RolloutPhase,
    /// Progress needs a human (kstatus `Stalled`).
    pub(super) stall: Option<Why>,
    /// Contract (or the next phase) waits for this.
    pub(super) hold: Option<Why>,
    pub(super) requeue_after: Option<Duration>,
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

pub(super) struct Planner<'a> {
    pub(super) rollout: &'a SchemaRollout,
    pub(super) observed: &'a Observed,
    pub(super) prev: SchemaRolloutStatus,
    pub(super) steps: Vec<StepStatus>,
    /// The objectives' measurements, tallied (`objective::tally`).
    pub(super) objectives: Vec<ObjectiveStatus>,
    /// The downtime budget, with this reconcile's measurement.
    pub(super) budget: Option<BudgetStatus>,
    pub(super) actions: Vec<Action>,
    pub(super) events: Vec<EventIntent>,
}

impl<'a> Planner<'a> {
    pub(super) fn new(rollout: &'a SchemaRollout, observed: &'a Observed) -> Self {
        let prev = rollout.status.clone().unwrap_or_default();
        Self {
            rollout,
            observed,
            steps: prev.steps.clone(),
            objectives: prev.objectives.clone(),
            budget: budget::record(rollout, prev.budget.as_ref(), observed.budget.as_ref()),
            prev,
            actions: vec![],
            events: vec![],
        }
    }

    pub(super) fn now(&self) -> Time {
        Time(self.observed.now)
    }

    pub(super) fn run(mut self) -> Plan {
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

        let validated = validate::validate(&self.rollout.spec);
        // Contract then waits for nothing a human or a timer decides.
        let manual = self.rollout.spec.approval() == Approval::Manual;
        let unattended = validated
            .as_ref()
            .is_ok_and(|d| d.bake_time.is_zero() && !manual);
        let first_rolled_out = self.prev.rolled_out_at.is_none();
        let decision = match validated {
            Err(problems) => Decision::stalled(
                self.prev.phase.unwrap_or(RolloutPhase::Pending),
                Reason::InvalidSpec,
                problems.join("; "),
            ),
            Ok(durations) => match validate::unreadable(&self.rollout.spec) {
                unreadable if !unreadable.is_empty() => Decision::stalled(
                    self.prev.phase.unwrap_or(RolloutPhase::Pending),
                    Reason::SqlUnreadable,
                    format!("inline SQL bellows cannot read: {}", unreadable.join("; ")),
                ),
                _ => self.decide(&durations, rolled_out_at.as_ref()),
            },
        };
        // A workload the gate held that left spec.workloads is released
        // (unless the rollout is stalled or paused, below).
        let left: Vec<GateHold> = self.left_the_spec().collect();
        for hold in left {
            self.actions.push(Action::ResumeWorkload(hold));
        }
        if decision.stall.is_some() || self.rollout.spec.paused {
            // A stalled or paused rollout starts nothing new; a Job already
            // running is left to finish.
            self.actions
                .retain(|a| !matches!(a, Action::CreateJob(_) | Action::ResumeWorkload(_)));
        }
        let gated = self.gated();
        let mut plan = self.finish(decision, workloads, all_rolled_out, rolled_out_at);
        plan.status.gated = gated;
        plan.starts_contract_clock =
            unattended && first_rolled_out && plan.status.rolled_out_at.is_some();
        plan
    }

    /// What the gate holds once this plan's actions are done: the listed
    /// workloads observed held by this rollout or held by this plan, and
    /// those it held that left the spec, less what this plan resumes.
    fn gated(&self) -> Vec<String> {
        let mut gated: std::collections::BTreeSet<GateHold> = self
            .observed
            .workloads
            .iter()
            .filter(|a| a.paused_by_us)
            .map(Assessment::hold)
            .chain(self.left_the_spec())
            .collect();
        for action in &self.actions {
            match action {
                Action::PauseWorkload(hold) => {
                    gated.insert(hold.clone());
                }
                Action::ResumeWorkload(hold) => {
                    gated.remove(hold);
                }
                _ => {}
            }
        }
        gated.iter().map(GateHold::key).collect()
    }

    /// The workloads the gate held that are no longer in `spec.workloads`
    /// (an entry that names no kind bellows knows is left alone).
    fn left_the_spec(&self) -> impl Iterator<Item = GateHold> + '_ {
        let listed = &self.rollout.spec.workloads;
        self.prev
            .gated
            .iter()
            .filter_map(|g| GateHold::parse(g))
            .filter(|g| !listed.iter().any(|w| w.kind == g.kind && w.name == g.name))
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
                    .find(|w| w.kind == a.kind && w.name == a.name && w.rolled_out)
                    .and_then(|w| w.rolled_out_at.clone());
                let (reason, message) = match &a.verdict {
                    Verdict::RolledOut => (None, a.note.clone()),
                    Verdict::Waiting(w, m) => {
                        (Some(w.reason().as_str().to_owned()), Some(m.clone()))
                    }
                };
                WorkloadStatus {
                    kind: a.kind,
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

    /// Outcome of `step` for the current spec, recorded: in `steps`, in an
    /// event when it finished, and (an action) in the ledger for a
    /// finished Job.
    fn record_outcome(&mut self, step: Step) -> Outcome {
        let Some(phase) = step::phase_spec(&self.rollout.spec, step) else {
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
            self.observed.lock_holder.as_deref() == Some(&self.lock_name(step)),
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
                run: PhaseRun::of(self.rollout, step, phase),
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
                let allowed = self.lint_of(step, phase).allowed;
                let mut record = self.new_record(step, phase, digest, allowed);
                record.state = state;
                record.finished_at = (state != StepState::Running).then_some(now);
                record.message = message;
                self.steps.retain(|s| s.step != step);
                self.steps.push(record);
            }
        }
        outcome
    }

    /// The lint's report on `step`'s inline statements (empty for a Job
    /// phase).
    fn lint_of(&self, step: Step, phase: &crate::api::PhaseSpec) -> sql::Report {
        phase
            .sql
            .as_ref()
            .map(|s| sql::report(self.engine(), step, s, &phase.allow))
            .unwrap_or_default()
    }

    /// The database engine inline SQL runs on.
    fn engine(&self) -> Engine {
        self.rollout
            .spec
            .database
            .as_ref()
            .map_or(Engine::Postgres, |d| d.engine)
    }

    /// The status record of `step` starting now; `allowed` are the lint
    /// findings allowed for its statements.
    fn new_record(
        &self,
        step: Step,
        phase: &crate::api::PhaseSpec,
        digest: String,
        allowed: Vec<String>,
    ) -> StepStatus {
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
            allowed,
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
        let phase = step::phase_spec(&self.rollout.spec, step).expect("started steps exist");
        if let Some(r) = self.observed.rejected.as_ref().filter(|r| r.step == step) {
            let (reason, what) = match r.what {
                Refused::Job => (Reason::JobRejected, "the API server refused to create the"),
                Refused::Ledger => (
                    Reason::LedgerRejected,
                    "the API server refused to record in the cluster ledger the",
                ),
                Refused::NameTaken => (
                    Reason::JobNameTaken,
                    "a Job bellows did not create holds the name of the",
                ),
            };
            let mut d = Decision::stalled(
                waiting,
                reason,
                format!("{what} {} Job: {}", step.as_str(), r.message),
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
        let report = self.lint_of(step, phase);
        if !report.violations.is_empty() {
            return Decision::stalled(
                waiting,
                Reason::UnsafeExpand,
                format!(
                    "expand would break pods of the old version: {}",
                    report.violations.join("; ")
                ),
            );
        }
        for (kind, reason, notes) in [
            (EventKind::Warning, Reason::SqlNotAnalysed, &report.unparsed),
            (EventKind::Normal, Reason::UnsafeAllowed, &report.allowed),
            (EventKind::Warning, Reason::BlocksWrites, &report.flagged),
        ] {
            for note in notes {
                self.events.push(EventIntent {
                    kind,
                    reason,
                    note: format!("{}: {note}", step.as_str()),
                });
            }
        }
        let record = self.new_record(step, phase, step::digest(phase), report.allowed);
        let run = PhaseRun::of(self.rollout, step, phase);
        self.actions.push(match run.job {
            Some(_) => Action::CreateJob(run),
            None => Action::RunSql(run),
        });
        // Which guarantee holds: all in one transaction unless some
        // statement must run alone.
        let grouping = phase
            .sql
            .as_ref()
            .and_then(|s| sql::grouping(self.engine(), s))
            .map(|g| format!(" ({g})"))
            .unwrap_or_default();
        self.events.push(EventIntent {
            kind: EventKind::Normal,
            reason: step_event(step, StepState::Running),
            note: format!("started {}{grouping}", runner_text(&record)),
        });
        self.steps.retain(|s| s.step != step);
        self.steps.push(record);
        let mut d = Decision::at(running_phase(step));
        if phase.sql.is_some() {
            // The statements run in this reconcile; look at the ledger next.
            d.requeue_after = Some(Duration::ZERO);
        }
        d
    }

    /// How the database lock names a session running `step` of this
    /// rollout (`namespace/name step`).
    fn lock_name(&self, step: Step) -> String {
        format!(
            "{}/{} {}",
            self.rollout.namespace().unwrap_or_default(),
            self.rollout.name_any(),
            step.as_str()
        )
    }

    /// The decision for a phase whose Job exists or existed, or whose
    /// inline SQL runs.
    fn started(&self, step: Step, outcome: Outcome) -> Option<Decision> {
        let phase = running_phase(step);
        match outcome {
            // Inline SQL another session runs: look again, nothing wakes
            // this reconcile when it ends.
            Outcome::Running
                if step::phase_spec(&self.rollout.spec, step).is_some_and(|p| p.sql.is_some()) =>
            {
                let mut d = Decision::at(phase);
                d.requeue_after = Some(RETRY_DATABASE);
                Some(d)
            }
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
        let contract = self.record_outcome(Step::Contract);
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
            let mut d = Decision::stalled(
                self.prev.phase.unwrap_or(RolloutPhase::Pending),
                reason,
                message,
            );
            // No watch says when a workload of another kind appears (or
            // its CRD is installed): look again soon.
            if unwatched(a.kind) {
                d.requeue_after = Some(POLL_UNWATCHED);
            }
            return d;
        }

        // Expand, with the optional gate (I5).
        let gate = spec.gate.as_ref().is_some_and(|g| g.pause_workloads);
        let expand = self.record_outcome(Step::Expand);
        if gate && expand != Outcome::Succeeded {
            for a in self.observed.workloads.iter() {
                if !a.paused && a.kind.holdable() {
                    self.actions.push(Action::PauseWorkload(a.hold()));
                }
            }
        }
        match expand {
            Outcome::NotStarted => {
                let fresh = self.observed.budget.as_ref();
                if let Some((reason, m)) = objective::preflight(&self.observed.measurements)
                    .or_else(|| budget::preflight(fresh))
                {
                    let mut d = Decision::stalled(RolloutPhase::Pending, reason, m);
                    d.requeue_after = Some(RETRY_REJECTED);
                    return d;
                }
                if let Some(d) = self.budget_hold(RolloutPhase::Pending) {
                    return d;
                }
                return self.start(Step::Expand, RolloutPhase::Pending);
            }
            Outcome::Succeeded => {
                for a in self.observed.workloads.iter().filter(|a| a.paused_by_us) {
                    self.actions.push(Action::ResumeWorkload(a.hold()));
                }
            }
            other => return self.started(Step::Expand, other).expect("expand started"),
        }

        // Roll out (I2, I4), with the optional transition in between.
        let hold = self.rollout_hold(durations);
        if spec.transition.is_some() {
            match self.record_outcome(Step::Transition) {
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
        // Objectives count passes only while every workload is rolled out
        // (alongside the bake time); a violation of one that fails on
        // violation fails the rollout at once.
        let targets = objective::targets(self.rollout).unwrap_or_default();
        let fresh = &self.observed.measurements;
        self.objectives = objective::tally(
            self.rollout,
            &targets,
            &self.prev.objectives,
            fresh,
            hold.is_none(),
        );
        if let Some(d) = hold {
            return d;
        }
        let measuring = objective::next_due(self.rollout, &self.objectives, self.observed.now);
        let verdict = objective::verdict(self.rollout, &self.objectives, fresh);
        if let Some(Slo::Failed(m)) = &verdict {
            return Decision::stalled(RolloutPhase::Failed, Reason::ObjectiveViolated, m.clone());
        }
        if let Some(Slo::Rejected(m)) = &verdict {
            let mut d = Decision::stalled(
                RolloutPhase::AwaitingRollout,
                Reason::ObjectiveQueryRejected,
                m.clone(),
            );
            d.requeue_after = measuring;
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
                d.requeue_after = Some(measuring.map_or(left, |m| m.min(left)));
                return d;
            }
        }

        let approval = spec.approval();
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
        // I2: every objective met, measured again in this very reconcile.
        if let Some(v) = verdict {
            let (reason, m) = match v {
                Slo::Violated(m) => (Reason::ObjectiveViolated, m),
                Slo::Inconclusive(m) => (Reason::ObjectiveInconclusive, m),
                Slo::Pending(m) => (Reason::ObjectivesPending, m),
                Slo::Failed(m) | Slo::Rejected(m) => unreachable!("returned above: {m}"),
            };
            let mut d = Decision::held(RolloutPhase::AwaitingRollout, reason, m);
            d.requeue_after = measuring;
            return d;
        }
        if let Some(d) = self.budget_hold(RolloutPhase::AwaitingRollout) {
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

    /// Why a phase cannot start because of the downtime budget, if it
    /// cannot: a query Prometheus refuses stalls; too little left, or no
    /// number to tell, holds until it is measured again.
    fn budget_hold(&self, waiting: RolloutPhase) -> Option<Decision> {
        let retry = budget::next_due(self.rollout);
        if let Some((reason @ Reason::ObjectiveQueryRejected, m)) =
            budget::preflight(self.observed.budget.as_ref())
        {
            let mut d = Decision::stalled(waiting, reason, m);
            d.requeue_after = retry;
            return Some(d);
        }
        let (reason, m) = budget::hold(self.rollout, self.budget.as_ref())?;
        let mut d = Decision::held(waiting, reason, m);
        d.requeue_after = retry;
        Some(d)
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
                // No watch wakes the rollout for kinds other than
                // Deployments: read them again soon.
                let polled = self
                    .observed
                    .workloads
                    .iter()
                    .any(|a| unwatched(a.kind) && a.verdict != Verdict::RolledOut);
                let left = durations.rollout - waited;
                decision.requeue_after = Some(if polled {
                    left.min(POLL_UNWATCHED)
                } else {
                    left
                });
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
                    result: Err(CheckProblem::Invalid(why)),
                }) => Decision::held(phase, Reason::CheckInvalid, format!("check {name} {why}")),
                Some(CheckResult {
                    name,
                    result: Err(CheckProblem::Failed(e)),
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
}

/// `Job NAME` or `N SQL statements`, for events.
pub(super) fn runner_text(record: &StepStatus) -> String {
    match (&record.job_name, record.statements) {
        (Some(name), _) => format!("Job {name}"),
        (None, n) => format!("{} SQL statement(s)", n.unwrap_or_default()),
    }
}

/// The rollout phase in which `step` runs (its Job or its SQL).
pub(super) fn running_phase(step: Step) -> RolloutPhase {
    match step {
        Step::Expand => RolloutPhase::Expanding,
        Step::Transition => RolloutPhase::Transitioning,
        Step::Contract => RolloutPhase::Contracting,
    }
}

/// The fixed event reason for `step` reaching `state`.
pub(super) fn step_event(step: Step, state: StepState) -> Reason {
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

pub(super) fn phase_message(phase: RolloutPhase) -> &'static str {
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
