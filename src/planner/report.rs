//! Reporting a decision: the status to write (phase, message, kstatus
//! conditions, workloads, steps) and the events to publish, once per
//! change, never once per requeue.

use super::conditions;
use super::decide::{Decision, Planner, phase_message};
use super::plan::{EventIntent, EventKind, Plan, event_note};
use super::{MAX_REQUEUE, approval_key};
use crate::api::{
    Approval, Reason, RolloutPhase, SchemaRolloutStatus, Step, StepState, WorkloadStatus, condition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

impl Planner<'_> {
    /// The plan: `d` reported as status, conditions and events.
    pub(super) fn finish(
        mut self,
        d: Decision,
        workloads: Vec<WorkloadStatus>,
        all_rolled_out: bool,
        rolled_out_at: Option<Time>,
    ) -> Plan {
        let now = self.observed.now;
        let generation = self.rollout.metadata.generation;
        let approval = self.rollout.spec.approval();
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
            let kind = if matches!(reason, Reason::RolledBack | Reason::ObjectiveViolated) {
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
                // Filled in by the planner once the actions are final.
                gated: vec![],
                objectives: self.objectives,
                budget: self.budget,
            },
            actions: self.actions,
            events: self.events,
            requeue_after: d.requeue_after.map(|r| r.min(MAX_REQUEUE)),
            hold_reason: d.hold.map(|h| h.0),
            newly_held,
            starts_contract_clock: false,
        }
    }
}
