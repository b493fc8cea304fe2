//! The `bellows.dev/v1alpha1` API: the `SchemaRollout` custom resource.
//!
//! These types are the single source of the CRD: `bellows crd` prints the
//! YAML under `crds/` from them, and every doc comment here becomes the text
//! of `kubectl explain`.

mod duration;
pub mod keys;
mod objective;
mod reason;
mod status;

pub use duration::{DurationError, parse_duration};
pub use objective::{BudgetSpec, Objective, OnViolation, PrometheusSpec};
pub use reason::Reason;
pub use status::*;

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use schemars::json_schema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API group of every bellows resource.
pub const GROUP: &str = "bellows.dev";

/// Go-style duration such as `30s`, `10m` or `1h30m` (no sign, no spaces).
const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A phased (expand / roll out / contract) database schema change, gated on
/// the rollout of the workloads that use the database.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "bellows.dev",
    version = "v1alpha1",
    kind = "SchemaRollout",
    namespaced,
    status = "SchemaRolloutStatus",
    shortname = "sro",
    category = "bellows",
    doc = "A phased (expand/contract) database schema rollout gated on workload rollouts",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":0}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRolloutSpec {
    /// Workloads whose rollout to the new version gates the contract phase.
    /// Contract runs only once every one of them runs the new version and no
    /// pod of an older version (Terminating pods included) is left.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = kube::core::Rule::new("self.all(w, self.exists_one(x, x.kind == w.kind && x.name == w.name))").message("workloads must be unique by kind and name"))]
    pub workloads: Vec<Workload>,

    /// Backwards-compatible schema changes (add a nullable column, a table,
    /// sync triggers), run before the new version of the workloads starts.
    pub expand: PhaseSpec,

    /// The database the migration changes. Needed for inline `sql` phases and
    /// contract `checks`; with it, every phase (Job phases too) is recorded
    /// in a ledger table there, so deleting and re-applying the same
    /// SchemaRollout never runs a finished phase again, and phases of
    /// rollouts on the same database run one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,

    /// The Prometheus HTTP API `contract.after.objectives` and `budget`
    /// are measured with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,

    /// The service's downtime budget, measured with `spec.prometheus`:
    /// what this rollout spent of it (status, metrics), and optionally a
    /// floor below which expand does not start and contract does not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,

    /// Optional gate on the workloads while expand runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,

    /// Optional backfill, run after every workload is rolled out (only new
    /// code writes) and before contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<PhaseSpec>,

    /// Destructive cleanup (drop or rename columns), run only when no pod of
    /// an older version exists and every condition in `after` holds.
    pub contract: ContractSpec,

    /// Stop advancing to the next phase. A running Job is left to finish; the
    /// rollout keeps its place and continues when `paused` is false again.
    #[serde(default)]
    pub paused: bool,

    /// Time limits per phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

/// A workload whose rollout gates the contract phase: everything that
/// still runs an older version holds contract, Terminating pods included.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("(self.kind == 'Pods') == has(self.selector)").message("selector is required for kind Pods and allowed for no other kind"))]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Kind of the workload (default `Deployment`).
    #[serde(default)]
    pub kind: WorkloadKind,
    /// Name of the workload, in the SchemaRollout's namespace. For kind
    /// `Pods`, a name for status and events only.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Kind `Pods` only: the pods to judge. Every pod it selects must run
    /// the new version or a later one; a selector that selects no pod
    /// holds contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// What "the new version" of this workload means.
    pub version: WorkloadVersion,
}

/// Kind of a gated workload.
#[derive(
    JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum WorkloadKind {
    /// An apps/v1 Deployment: its ReplicaSets and their pods.
    #[default]
    Deployment,
    /// An apps/v1 StatefulSet: its revisions and pods. A `partition` or the
    /// `OnDelete` strategy keeping pods of an older revision holds contract.
    StatefulSet,
    /// An apps/v1 DaemonSet: its revisions and pods on every node.
    DaemonSet,
    /// A CronJob: its job template, and the Jobs and pods created from an
    /// older template while they are active.
    CronJob,
    /// The pods `selector` selects, whatever created them (bare pods,
    /// controllers bellows does not know).
    Pods,
    /// An Argo Rollouts Rollout (argoproj.io/v1alpha1): promoted, not
    /// aborted or paused, no pod of an older version left (the old stack
    /// kept by `scaleDownDelaySeconds` included). Needs Argo Rollouts'
    /// CRD; without it the rollout stalls (`WorkloadKindNotServed`).
    Rollout,
}

impl WorkloadKind {
    /// Its name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::CronJob => "CronJob",
            Self::Pods => "Pods",
            Self::Rollout => "Rollout",
        }
    }
}

/// A workload the expand gate holds, as `status.gated` names it: `name`
/// for a Deployment, `Kind/name` for another kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GateHold {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
}

impl GateHold {
    /// The hold named by `key` (as [`GateHold::key`] writes it).
    pub fn parse(key: &str) -> Option<Self> {
        let (kind, name) = match key.split_once('/') {
            None => (WorkloadKind::Deployment, key),
            Some((kind, name)) => (serde_json::from_value(serde_json::json!(kind)).ok()?, name),
        };
        Some(Self {
            kind,
            name: name.to_owned(),
        })
    }

    /// How `status.gated` names it.
    pub fn key(&self) -> String {
        match self.kind {
            WorkloadKind::Deployment => self.name.clone(),
            kind => format!("{kind}/{}", self.name),
        }
    }
}

impl WorkloadKind {
    /// Whether the expand gate can hold a workload of this kind: a
    /// Deployment or Argo Rollout by `spec.paused`, a CronJob by
    /// `spec.suspend`, a StatefulSet by its rolling update's `partition`.
    pub fn holdable(self) -> bool {
        !matches!(self, Self::DaemonSet | Self::Pods)
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to recognise the new version of a workload: exactly one of `image`
/// or `labels`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("has(self.image) != has(self.labels)").message("version needs exactly one of image or labels"))]
#[serde(rename_all = "camelCase")]
pub struct WorkloadVersion {
    /// The new version is the pod template whose named container runs this
    /// image tag or reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageVersion>,
    /// The new version is the pod template that carries all of these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A container image that marks the new version: exactly one of `tag` or
/// `ref`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("has(self.tag) != has(self.ref)").message("image needs exactly one of tag or ref"))]
#[serde(rename_all = "camelCase")]
pub struct ImageVersion {
    /// Name of the container in the pod template.
    #[schemars(length(min = 1, max = 63))]
    pub container: String,
    /// Image tag of the new version, e.g. `2.0.0` (matches `repo:2.0.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: Option<String>,
    /// Full image reference of the new version, e.g.
    /// `registry.example.com/shop/api:2.0.0` or one pinned by digest.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub reference: Option<String>,
}

impl SchemaRolloutSpec {
    /// The contract's objectives (none when unset).
    pub fn objectives(&self) -> &[Objective] {
        self.contract
            .after
            .as_ref()
            .map(|a| a.objectives.as_slice())
            .unwrap_or_default()
    }

    /// The contract checks (none when unset).
    pub fn checks(&self) -> &[Check] {
        self.contract
            .after
            .as_ref()
            .map(|a| a.checks.as_slice())
            .unwrap_or_default()
    }

    /// How contract is approved (`Automatic` when unset).
    pub fn approval(&self) -> Approval {
        self.contract
            .after
            .as_ref()
            .map(|a| a.approval)
            .unwrap_or_default()
    }
}

/// One phase of the migration: exactly one of `job` or `sql`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = kube::core::Rule::new("has(self.job) != has(self.sql)").message("a phase needs exactly one of job or sql"))]
#[serde(rename_all = "camelCase")]
pub struct PhaseSpec {
    /// A batch/v1 JobSpec, exactly what a Job's `.spec` holds. bellows
    /// creates the Job once, owned by the SchemaRollout; `backoffLimit`
    /// defaults to 0 and `activeDeadlineSeconds` to the phase's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "job_spec_schema")]
    pub job: Option<Box<JobSpec>>,
    /// SQL statements bellows runs itself against `spec.database`, in order.
    /// On PostgreSQL they run in one transaction (all or nothing), except
    /// statements it refuses in one (`CREATE INDEX CONCURRENTLY`, `VACUUM`,
    /// ...), which run alone between transactional groups; on MySQL, where
    /// DDL commits implicitly, one by one. Either way bellows records how
    /// far it got and never runs a failed phase again.
    /// Transaction control (`BEGIN`, `COMMIT`, ...) is refused, and in
    /// expand a statement that breaks the old version's pods (a dropped or
    /// renamed column, ...) holds the rollout unless allowed (`allow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub sql: Option<Vec<String>>,
    /// Lint rules (ids, e.g. `drop-column`) allowed for every statement of
    /// this phase's `sql`. One statement can carry its own allowance in a
    /// comment: `-- bellows:allow drop-column`. Allowances show in
    /// `status.steps[].allowed` and an event. The rules are listed in
    /// docs/design.md and by `kubectl bellows lint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub allow: Vec<String>,
}

/// The contract phase and the conditions that must hold before it starts
/// (the flattened PhaseSpec brings its job-or-sql rule along).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContractSpec {
    /// The contract step itself: a `job` or `sql`, as in expand.
    #[serde(flatten)]
    pub run: PhaseSpec,
    /// What must hold, beyond every workload being rolled out, before
    /// contract starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ContractAfter>,
}

/// Conditions on the contract phase.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContractAfter {
    /// How long every workload must have been rolled out (counted from the
    /// last one to become rolled out) before contract starts, e.g. `10m`
    /// (at most a year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub bake_time: Option<String>,
    /// `Automatic` (default) contracts as soon as everything else holds;
    /// `Manual` also waits for the annotation `bellows.dev/approve` set to
    /// `status.approvalKey` (`<metadata.uid>/<digest of the contract, its
    /// checks, the database and the workloads>`, what `kubectl bellows
    /// approve` writes).
    #[serde(default)]
    pub approval: Approval,
    /// SQL guards against `spec.database`, each returning one boolean row;
    /// all must be true, checked again right before contract starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub checks: Vec<Check>,
    /// Service level objectives measured with `spec.prometheus` from the
    /// moment every workload is rolled out (alongside the bake time); each
    /// must pass its `successes` measurements in a row, and once more
    /// right before contract starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = kube::core::Rule::new("self.all(o, self.exists_one(x, x.name == o.name))").message("objectives must have unique names"))]
    pub objectives: Vec<Objective>,
}

/// A SQL guard on the contract phase.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Name shown in conditions and events when the check holds contract.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// A query returning one row with one boolean column, e.g.
    /// `select count(*) = 0 from users where first_name is null`.
    #[schemars(length(min = 1))]
    pub sql: String,
}

/// The database a rollout migrates: exactly one of `secretRef` (a URL) or
/// `host` (discrete fields).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("has(self.secretRef) != has(self.host)").message("database needs exactly one of secretRef or host"))]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// `postgres` or `mysql` (MySQL and MariaDB).
    pub engine: Engine,
    /// A key of a Secret in this namespace holding the database URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Host name or address of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,
    /// Port of the server (default 5432 for postgres, 3306 for mysql).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Database name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub database: Option<String>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub user: Option<String>,
    /// A key of a Secret in this namespace holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// TLS mode: disable, prefer (default), require, verify-ca or
    /// verify-full. With `secretRef` it overrides the URL's own TLS mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<SslMode>,
    /// A key of a Secret in this namespace holding the PEM certificate of
    /// the CA that signed the server's certificate, for `sslMode`
    /// verify-ca or verify-full (without it, the system's roots are used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Longest wait for a table lock in inline SQL (default 5s, from 1ms to
    /// 24 days); a statement that waited this long is tried again, up to 4
    /// times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub lock_timeout: Option<String>,
    /// Longest run of one inline statement or check (default 5m, from 1ms
    /// to 24 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub statement_timeout: Option<String>,
}

/// A database engine.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

/// TLS mode of the database connection.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it.
    Prefer,
    /// TLS, any certificate.
    Require,
    /// TLS, certificate signed by a trusted CA.
    VerifyCa,
    /// TLS, trusted certificate for this host name.
    VerifyFull,
}

/// A key of a Secret in the rollout's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Who approves the contract phase.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Approval {
    /// Contract starts as soon as every other condition holds.
    #[default]
    Automatic,
    /// Contract also waits for the `bellows.dev/approve` annotation.
    Manual,
}

/// Gate on the workloads while expand runs.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// Hold every listed workload until expand succeeds, so the new
    /// version cannot start before the schema is ready: a Deployment or
    /// Argo Rollout paused (`spec.paused`), a CronJob suspended
    /// (`spec.suspend`), a StatefulSet's rolling update held at its
    /// current revision (`partition`). A failed expand keeps them held. A
    /// DaemonSet or `Pods` cannot be held: listing one is refused.
    #[serde(default)]
    pub pause_workloads: bool,
}

/// Time limits per phase (Go-style durations such as `30m` or `2h`).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// Deadline of the expand Job (its `activeDeadlineSeconds`). Default 30m,
    /// from 1s to a year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub expand: Option<String>,
    /// How long the workloads may take to roll out after expand before the
    /// rollout is reported Stalled (contract stays held). Default 2h, from
    /// 1s to a year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub rollout: Option<String>,
    /// Deadline of the transition Job. Default 2h, from 1s to a year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub transition: Option<String>,
    /// Deadline of the contract Job. Default 30m, from 1s to a year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub contract: Option<String>,
}

/// Schema of an embedded JobSpec.
///
/// The full PodSpec schema would make the CRD several hundred kilobytes
/// (too big for `kubectl apply`'s last-applied annotation), so only what
/// bellows needs is spelled out: a pod template with at least one container.
/// The API server validates the rest when bellows creates the Job.
fn job_spec_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    json_schema!({
        "description": "A batch/v1 JobSpec, exactly what a Job's .spec holds.",
        "type": "object",
        "required": ["template"],
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "template": {
                "description": "Pod template of the migration Job.",
                "type": "object",
                "required": ["spec"],
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "spec": {
                        "description": "Pod spec of the migration Job; needs at least one container.",
                        "type": "object",
                        "required": ["containers"],
                        "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {
                            "containers": {
                                "description": "Containers of the migration pod.",
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": true
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}
