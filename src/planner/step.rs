//! Identity and outcome of a phase's Job: deterministic names, spec digests,
//! and what an observed Job says about its phase.

use crate::api::{PhaseSpec, Reason, SchemaRolloutSpec, SchemaRolloutStatus, Step, StepState};
use crate::planner::ledger::LedgerState;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use sha2::{Digest, Sha256};

/// Longest name Kubernetes accepts for a label value, and so for a Job
/// (the Job controller copies the name into the `job-name` label).
const MAX_NAME: usize = 63;
/// Hex characters of the spec digest kept in names and status.
const DIGEST_LEN: usize = 10;

/// The spec of `step`, if the rollout has that phase.
pub fn phase_spec(spec: &SchemaRolloutSpec, step: Step) -> Option<&PhaseSpec> {
    match step {
        Step::Expand => Some(&spec.expand),
        Step::Transition => spec.transition.as_ref(),
        Step::Contract => Some(&spec.contract.run),
    }
}

/// The JobSpec of `step`, if the rollout has that phase and it is a Job.
pub fn job_spec(spec: &SchemaRolloutSpec, step: Step) -> Option<&JobSpec> {
    phase_spec(spec, step)?.job.as_deref()
}

/// Short, stable digest of a phase's spec (its Job or its statements): a
/// changed spec gets a new Job and ledger row, an unchanged one never does.
pub fn digest(phase: &PhaseSpec) -> String {
    // Allowances say what may run, not what runs: adding one after a
    // phase ran must not run it again.
    let what_runs = PhaseSpec {
        allow: vec![],
        ..phase.clone()
    };
    let bytes = serde_json::to_vec(&what_runs).expect("a PhaseSpec always serializes");
    let hash = Sha256::digest(&bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    hex[..DIGEST_LEN].to_owned()
}

/// Deterministic Job name `<rollout>-<step>-<digest>`, within 63 characters:
/// the same rollout, phase and spec always give the same name, so a second
/// create is answered with AlreadyExists instead of a second Job.
pub fn job_name(rollout: &str, step: Step, digest: &str) -> String {
    let suffix = format!("-{}-{}", step.as_str(), digest);
    let room = MAX_NAME - suffix.len();
    if rollout.len() <= room {
        return format!("{rollout}{suffix}");
    }
    // Truncated names keep a hash of the full name, so two long names with
    // a common prefix never share a Job.
    let hash: String = Sha256::digest(rollout.as_bytes())
        .iter()
        .take(3)
        .map(|b| format!("{b:02x}"))
        .collect();
    let prefix: String = rollout.chars().take(room - hash.len() - 1).collect();
    format!("{}-{hash}{suffix}", prefix.trim_end_matches(['-', '.']))
}

/// A Secret or ConfigMap a phase's pods read their environment from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reference {
    /// A Secret, by name.
    Secret(String),
    /// A ConfigMap, by name.
    ConfigMap(String),
}

impl Reference {
    /// The reason when the object is missing.
    pub fn missing_reason(&self) -> Reason {
        match self {
            Self::Secret(_) => Reason::SecretNotFound,
            Self::ConfigMap(_) => Reason::ConfigMapNotFound,
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret(n) => write!(f, "Secret {n:?}"),
            Self::ConfigMap(n) => write!(f, "ConfigMap {n:?}"),
        }
    }
}

/// The non-optional Secrets and ConfigMaps that the containers of `job`
/// take environment variables from (`env[].valueFrom`, `envFrom`), sorted
/// and without duplicates.
pub fn references(job: &JobSpec) -> Vec<Reference> {
    let mut refs = std::collections::BTreeSet::new();
    let pod = job.template.spec.as_ref();
    let containers = pod.iter().flat_map(|p| {
        p.containers
            .iter()
            .chain(p.init_containers.iter().flatten())
    });
    for c in containers {
        for from in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = from
                .secret_key_ref
                .as_ref()
                .filter(|r| r.optional != Some(true))
            {
                refs.insert(Reference::Secret(r.name.clone()));
            }
            if let Some(r) = from
                .config_map_key_ref
                .as_ref()
                .filter(|r| r.optional != Some(true))
            {
                refs.insert(Reference::ConfigMap(r.name.clone()));
            }
        }
        for from in c.env_from.iter().flatten() {
            if let Some(r) = from
                .secret_ref
                .as_ref()
                .filter(|r| r.optional != Some(true))
            {
                refs.insert(Reference::Secret(r.name.clone()));
            }
            if let Some(r) = from
                .config_map_ref
                .as_ref()
                .filter(|r| r.optional != Some(true))
            {
                refs.insert(Reference::ConfigMap(r.name.clone()));
            }
        }
    }
    refs.into_iter().collect()
}

/// What an observed Job says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobObservation {
    /// Not finished.
    Active,
    /// Completed.
    Succeeded,
    /// Failed, with the Job's own reason.
    Failed(String),
}

/// Reads the outcome of a Job from its conditions.
pub fn observe_job(job: &Job) -> JobObservation {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => return JobObservation::Succeeded,
            "Failed" => {
                let reason = c.reason.as_deref().unwrap_or("Failed");
                let message = c.message.as_deref().unwrap_or("");
                return JobObservation::Failed(
                    format!("{reason}: {message}")
                        .trim_end_matches(": ")
                        .to_owned(),
                );
            }
            _ => {}
        }
    }
    JobObservation::Active
}

/// The failure recorded (status, ledger) for a phase whose Job was deleted
/// before it finished: nobody can tell how far it got.
pub const JOB_DELETED: &str = "the Job was deleted before it finished";

/// Where a phase stands, from its recorded status and its observed Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No Job was ever created for this spec.
    NotStarted,
    /// The Job runs.
    Running,
    /// The Job completed.
    Succeeded,
    /// The Job failed.
    Failed(String),
    /// The Job was created (status or the ledger say so) but is gone
    /// without having finished: the phase failed ([`JOB_DELETED`]).
    Vanished,
}

/// What status records of `step` for the spec of digest `digest`.
pub fn recorded(status: &SchemaRolloutStatus, step: Step, digest: &str) -> Option<StepState> {
    status
        .step(step)
        .filter(|s| s.digest == digest)
        .map(|s| s.state)
}

/// Combines what the database ledger and status recorded for `step` (for
/// the same digest) with the Job observed under the deterministic name. A
/// phase recorded as finished stays finished even if its Job was deleted or
/// the rollout re-created, so it never runs twice.
pub fn outcome(
    status: &SchemaRolloutStatus,
    step: Step,
    phase: &PhaseSpec,
    ledger: Option<&LedgerState>,
    observed: Option<&JobObservation>,
    locked_for_it: bool,
) -> Outcome {
    let recorded = recorded(status, step, &digest(phase));
    match ledger {
        Some(LedgerState::Succeeded) => return Outcome::Succeeded,
        Some(LedgerState::Failed(m)) if m == JOB_DELETED => return Outcome::Vanished,
        Some(LedgerState::Failed(m)) => return Outcome::Failed(m.clone()),
        // A session still holds the database lock for this very phase: a
        // replica that lost the lead finishing what it began.
        Some(LedgerState::Started { .. }) if phase.job.is_none() && locked_for_it => {
            return Outcome::Running;
        }
        Some(LedgerState::Started { done }) if phase.job.is_none() => {
            return Outcome::Failed(format!(
                "inline SQL was interrupted after {done} statement(s); repair the schema by hand and change the spec"
            ));
        }
        // The ledger knows the Job was created; if it is gone and status
        // does not say how it ended, it must not be created again.
        Some(LedgerState::Started { .. })
            if observed.is_none() && recorded != Some(StepState::Succeeded) =>
        {
            return Outcome::Vanished;
        }
        _ => {}
    }
    if phase.job.is_none() {
        // Inline SQL: status `Running` without a ledger row means the run
        // never committed (PostgreSQL rolls it back), so it may run again.
        return match recorded {
            Some(StepState::Succeeded) => Outcome::Succeeded,
            Some(StepState::Failed) => Outcome::Failed(
                status
                    .step(step)
                    .and_then(|s| s.message.clone())
                    .unwrap_or_default(),
            ),
            _ => Outcome::NotStarted,
        };
    }
    match (recorded, observed) {
        (Some(StepState::Succeeded), _) | (_, Some(JobObservation::Succeeded)) => {
            Outcome::Succeeded
        }
        (_, Some(JobObservation::Failed(m))) => Outcome::Failed(m.clone()),
        (_, Some(JobObservation::Active)) => Outcome::Running,
        (Some(StepState::Failed), None) => {
            match status.step(step).and_then(|s| s.message.clone()) {
                Some(m) if m == JOB_DELETED => Outcome::Vanished,
                m => Outcome::Failed(m.unwrap_or_else(|| "Job failed".into())),
            }
        }
        (Some(StepState::Running), None) => Outcome::Vanished,
        (None, None) => Outcome::NotStarted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_deterministic_and_fit_63_chars() {
        let d = digest(&PhaseSpec::default());
        assert_eq!(d.len(), DIGEST_LEN);
        assert_eq!(digest(&PhaseSpec::default()), d);
        assert_eq!(
            job_name("users", Step::Expand, &d),
            format!("users-expand-{d}")
        );
        let long = "a".repeat(80);
        let name = job_name(&long, Step::Transition, &d);
        assert_eq!(name.len(), MAX_NAME);
        assert!(name.ends_with(&format!("-transition-{d}")));
        let dashed = format!("{}-x", "b".repeat(40));
        assert!(!job_name(&dashed, Step::Transition, &d).contains("--"));
        let (a, b) = (format!("{long}-v1"), format!("{long}-v2"));
        assert_ne!(
            job_name(&a, Step::Expand, &d),
            job_name(&b, Step::Expand, &d),
            "common prefix, distinct Jobs"
        );
        assert!(job_name(&a, Step::Expand, &d).len() <= MAX_NAME);
    }

    #[test]
    fn references_lists_required_secrets_and_config_maps() {
        let job: JobSpec = serde_json::from_value(serde_json::json!({"template": {"spec": {
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "cfg"}}]}],
            "containers": [{"name": "m", "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}},
                {"name": "C", "valueFrom": {"secretKeyRef": {"name": "opt", "key": "k", "optional": true}}},
                {"name": "D", "value": "plain"}],
                "envFrom": [{"secretRef": {"name": "extra"}}]}]}}}))
        .unwrap();
        assert_eq!(
            references(&job),
            [
                Reference::Secret("db".into()),
                Reference::Secret("extra".into()),
                Reference::ConfigMap("cfg".into())
            ]
        );
    }

    #[test]
    fn a_changed_spec_gets_a_new_digest() {
        let mut spec = PhaseSpec {
            job: Some(Box::default()),
            ..PhaseSpec::default()
        };
        let before = digest(&spec);
        spec.job.as_mut().unwrap().backoff_limit = Some(3);
        assert_ne!(digest(&spec), before);
        let mut sql = PhaseSpec {
            sql: Some(vec!["select 1".into()]),
            ..PhaseSpec::default()
        };
        let unallowed = digest(&sql);
        assert_ne!(unallowed, before);
        sql.allow = vec!["drop-column".into()];
        assert_eq!(
            digest(&sql),
            unallowed,
            "an allowance does not re-run a phase"
        );
    }
}
