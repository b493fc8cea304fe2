//! Service level objectives that hold contract (`spec.contract.after.objectives`),
//! the service's downtime budget (`spec.budget`) and the Prometheus both
//! are measured with (`spec.prometheus`).

use super::{DURATION_PATTERN, SecretKeyRef};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The Prometheus HTTP API objectives are measured with.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL of the Prometheus HTTP API, e.g.
    /// `http://prometheus.monitoring:9090` (queries go to
    /// `<address>/api/v1/query`).
    #[schemars(length(min = 8, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub address: String,
    /// A key of a Secret in this namespace holding a bearer token sent with
    /// every query. The token never appears in logs, events or status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// A key of a Secret in this namespace holding the PEM certificate(s)
    /// of the CA that signed an `https` address's certificate; trusted
    /// instead of the public roots. Without it, an `https` Prometheus
    /// must present a certificate a public CA signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// How long one query may take, e.g. `10s` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<String>,
}

/// One objective: a PromQL query returning one number, and its bound.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("has(self.max) || has(self.min)").message("an objective needs max, min or both"))]
#[serde(rename_all = "camelCase")]
pub struct Objective {
    /// Name shown in status, conditions, events and metrics.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A PromQL query returning one number (a scalar, or a vector of one
    /// sample). Placeholders: `{{version}}` (the new version: the image
    /// tag or reference, or the value of the one version label),
    /// `{{workload}}` (the workload's name; the objective is then measured
    /// once per workload) and `{{namespace}}`. No data (an empty result,
    /// NaN, Inf, Prometheus unreachable) never passes.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// The value must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The value must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// How often it is measured once every workload is rolled out, e.g.
    /// `30s` (the default; at least `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Consecutive passing measurements needed before contract (default
    /// 3). Contract also measures once more right before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub successes: Option<u32>,
    /// What a measurement out of bounds does: `Hold` (default) holds
    /// contract until the objective passes again `successes` times in a
    /// row; `Fail` fails the rollout (contract never runs).
    #[serde(default)]
    pub on_violation: OnViolation,
}

/// What a violated objective does.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnViolation {
    /// Hold contract until the objective holds again.
    #[default]
    Hold,
    /// Fail the rollout.
    Fail,
}

/// The service's downtime budget: the share of requests that may fail
/// over a period, what this rollout spent of it, and how much must be
/// left to take the risk of a schema change.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = kube::core::Rule::new("self.objective > 0.0 && self.objective < 1.0").message("objective is a share of requests between 0 and 1, e.g. 0.999"))]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    /// The service level objective: the share of requests that succeed
    /// over `period`, e.g. `0.999` (99.9%: about 43 minutes of downtime in
    /// 30 days).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub objective: f64,
    /// The period the budget is counted over, e.g. `720h` (30 days, the
    /// default; at least `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub period: Option<String>,
    /// A PromQL query returning the service's error ratio (failed requests
    /// over all requests, 0 to 1) over the range `{{window}}`, e.g.
    /// `sum(rate(http_requests_total{code=~"5.."}[{{window}}])) /
    /// sum(rate(http_requests_total[{{window}}]))`. bellows sends it with
    /// `{{window}}` the period (what is left of the budget) and the time
    /// since expand started (what this rollout spent); `{{namespace}}` is
    /// the rollout's namespace.
    #[schemars(length(min = 1, max = 4096))]
    pub error_ratio: String,
    /// The share of the period's budget (0 to 1) that must be left for
    /// expand to start and for contract to run, e.g. `0.25`. Without it
    /// the budget is measured and shown but holds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub floor: Option<f64>,
    /// How often the budget is measured from before expand until contract
    /// starts, e.g. `30s` (the default; at least `1s`). It is also
    /// measured right before expand and contract start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: Option<String>,
}
