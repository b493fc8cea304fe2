//! Status of a `SchemaRollout`: what the controller observed and decided.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types written to `status.conditions`.
pub mod condition {
    /// True only when the rollout succeeded for the current generation.
    pub const READY: &str = "Ready";
    /// True while the controller is working towards Ready (kstatus).
    pub const RECONCILING: &str = "Reconciling";
    /// True when progress needs a human: bad input, a failed phase, a
    /// workload that cannot roll out (kstatus).
    pub const STALLED: &str = "Stalled";
    /// True once the expand phase succeeded.
    pub const EXPANDED: &str = "Expanded";
    /// True while every workload runs only the new version or a later one.
    pub const ROLLED_OUT: &str = "RolledOut";
    /// True once the contract phase succeeded.
    pub const CONTRACTED: &str = "Contracted";
}

/// Where a rollout stands.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RolloutPhase {
    /// Nothing has run yet.
    Pending,
    /// The expand Job runs.
    Expanding,
    /// Waiting for every workload to run only the new version.
    AwaitingRollout,
    /// The transition (backfill) Job runs.
    Transitioning,
    /// Every workload is rolled out; waiting for the bake time to pass.
    Baking,
    /// Waiting for the `bellows.dev/approve` annotation.
    AwaitingApproval,
    /// The contract Job runs.
    Contracting,
    /// Every phase succeeded.
    Succeeded,
    /// A phase failed; terminal until the spec changes.
    Failed,
}

impl RolloutPhase {
    /// Every phase, in order.
    pub const ALL: [RolloutPhase; 9] = [
        Self::Pending,
        Self::Expanding,
        Self::AwaitingRollout,
        Self::Transitioning,
        Self::Baking,
        Self::AwaitingApproval,
        Self::Contracting,
        Self::Succeeded,
        Self::Failed,
    ];

    /// The phase's name as written to status (also a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Expanding => "Expanding",
            Self::AwaitingRollout => "AwaitingRollout",
            Self::Transitioning => "Transitioning",
            Self::Baking => "Baking",
            Self::AwaitingApproval => "AwaitingApproval",
            Self::Contracting => "Contracting",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }
}

/// A migration step that runs as a Job.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum Step {
    /// The expand phase.
    Expand,
    /// The transition (backfill) phase.
    Transition,
    /// The contract phase.
    Contract,
}

impl Step {
    /// Lower-case name used in Job names and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expand => "expand",
            Self::Transition => "transition",
            Self::Contract => "contract",
        }
    }
}

/// Observed state of a SchemaRollout.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRolloutStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,
    /// When the rollout entered its current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Time>,
    /// Human-readable summary of what the rollout waits for or why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Ready, Reconciling, Stalled, Expanded, RolledOut and Contracted.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Rollout progress of each workload.
    #[serde(default)]
    pub workloads: Vec<WorkloadStatus>,
    /// The Job of each phase that started, with its outcome.
    #[serde(default)]
    pub steps: Vec<StepStatus>,
    /// When the last workload became rolled out (bake time counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_out_at: Option<Time>,
    /// Why contract is held, as a CamelCase reason, while it is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_reason: Option<String>,
    /// With `approval: Manual`: the value of the annotation
    /// `bellows.dev/approve` that approves the current contract,
    /// `<metadata.uid>/<digest>`, the digest covering the contract's
    /// statements or Job, its checks, the database and the workloads. It
    /// names this object and what was approved, so it approves neither a
    /// re-created rollout nor an edited contract, check, database or
    /// workload list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_key: Option<String>,
    /// The workloads the expand gate holds for this rollout (marked
    /// `bellows.dev/paused-by`): `name` for a Deployment, `Kind/name` for
    /// another kind. Kept here, not only derived from
    /// `spec.workloads`, so that a workload removed from the spec, or the
    /// rollout's deletion, releases exactly what the gate paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gated: Vec<String>,
    /// The last measurement of each objective (per workload where its
    /// query names `{{workload}}`), while contract waits for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<ObjectiveStatus>,
    /// The downtime budget (`spec.budget`) as last measured; after contract
    /// started, what the rollout spent from expand to contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatus>,
}

/// The downtime budget as last measured.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// The service's error ratio since expand started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    /// The downtime this rollout cost, in seconds: the error ratio since
    /// expand started times the time since (5% of requests failing for
    /// 10 minutes cost 30 seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_seconds: Option<f64>,
    /// The share of the period's budget this rollout consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed: Option<f64>,
    /// The share of the period's budget left (below 0 when overspent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<f64>,
    /// When it was measured last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<Time>,
    /// Why a number is missing, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The last measurement of one objective.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectiveStatus {
    /// The objective's name.
    pub name: String,
    /// The workload it was measured for, where its query names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The value measured last (absent when there was no data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Passing measurements in a row, since every workload was rolled out.
    #[serde(default)]
    pub passes: u32,
    /// When it was measured last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<Time>,
    /// What the last measurement said, when it did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Rollout progress of one workload.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// Kind of the workload.
    #[serde(default)]
    pub kind: super::WorkloadKind,
    /// Name of the workload.
    pub name: String,
    /// True when the workload runs only the new version or a later one.
    pub rolled_out: bool,
    /// When it was first seen rolled out (cleared when it stops being so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_out_at: Option<Time>,
    /// Desired replicas.
    #[serde(default)]
    pub replicas: i32,
    /// Pods of the new version.
    #[serde(default)]
    pub new_pods: i32,
    /// Pods of any older version, Terminating ones included.
    #[serde(default)]
    pub old_pods: i32,
    /// Why it is not rolled out, as a CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it is not rolled out, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Outcome of one phase's Job.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The phase.
    pub step: Step,
    /// Name of the Job bellows created for it (Job phases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Number of inline statements (SQL phases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements: Option<i32>,
    /// Digest of the phase's spec the Job was created from.
    pub digest: String,
    /// Running, Succeeded or Failed.
    pub state: StepState,
    /// When bellows created the Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the Job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Why the Job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Lint findings allowed for this phase's inline statements, as
    /// `statement N: rule-id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
}

/// State of a phase's Job.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepState {
    /// Created and not finished.
    Running,
    /// Completed successfully.
    Succeeded,
    /// Failed (backoff limit or deadline reached).
    Failed,
}

impl SchemaRolloutStatus {
    /// The recorded outcome of `step`, if its Job was ever created.
    pub fn step(&self, step: Step) -> Option<&StepStatus> {
        self.steps.iter().find(|s| s.step == step)
    }

    /// The condition of type `type_`, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}
