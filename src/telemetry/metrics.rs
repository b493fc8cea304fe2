//! Prometheus metrics: controller-runtime-compatible reconcile metrics and
//! bellows' domain metrics. Labels are low-cardinality (no error text; no
//! object names, except on the objective and budget gauges, rebuilt at
//! each scrape from the rollouts that measure them).

use crate::api::{RolloutPhase, SchemaRollout, Step};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Name of the controller in the controller-runtime metrics.
const CONTROLLER: &str = "schemarollout";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FreshLabels {
    served: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectiveLabels {
    namespace: String,
    rollout: String,
    objective: String,
    workload: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    namespace: String,
    rollout: String,
}

/// A gauge of a float, per label set.
type FloatGauges<L> = Family<L, Gauge<f64, std::sync::atomic::AtomicU64>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    error: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_time: Family<ControllerLabels, Histogram>,
    phase_transitions: Family<PhaseLabels, Counter>,
    phase_duration: Family<PhaseLabels, Histogram>,
    rollouts: Family<PhaseLabels, Gauge>,
    contract_held: Family<ReasonLabels, Counter>,
    contract_start: Histogram,
    api_forbidden: Counter,
    api_requests: Family<VerbLabels, Counter>,
    fresh_lists: Family<FreshLabels, Counter>,
    objective_value: FloatGauges<ObjectiveLabels>,
    objective_passes: Family<ObjectiveLabels, Gauge>,
    budget_consumed: FloatGauges<RolloutLabels>,
    budget_consumed_seconds: FloatGauges<RolloutLabels>,
    budget_remaining: FloatGauges<RolloutLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_time = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        let phase_transitions = Family::<PhaseLabels, Counter>::default();
        let phase_duration = Family::<PhaseLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 4.0, 10))
        });
        let rollouts = Family::<PhaseLabels, Gauge>::default();
        let contract_held = Family::<ReasonLabels, Counter>::default();
        // 5 ms to 40 s.
        let contract_start = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let api_forbidden = Counter::default();
        let api_requests = Family::<VerbLabels, Counter>::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        registry.register(
            "bellows_phase_transitions",
            "Rollouts entering each phase",
            phase_transitions.clone(),
        );
        registry.register(
            "bellows_phase_duration_seconds",
            "Time rollouts spent in a phase before leaving it",
            phase_duration.clone(),
        );
        registry.register(
            "bellows_rollouts",
            "SchemaRollouts by current phase",
            rollouts.clone(),
        );
        registry.register(
            "bellows_contract_held",
            "Times contract was held, by reason",
            contract_held.clone(),
        );
        registry.register(
            "bellows_contract_start_seconds",
            "From the reconcile that saw the last workload rolled out to the contract Job created (or its SQL started), for rollouts without bake time or manual approval",
            contract_start.clone(),
        );
        registry.register(
            "bellows_api_forbidden",
            "Requests the Kubernetes API server refused with 403 Forbidden (missing RBAC)",
            api_forbidden.clone(),
        );
        registry.register(
            "bellows_api_requests",
            "Requests the operator sent to the Kubernetes API server, by verb (get covers lists, watch the watch requests)",
            api_requests.clone(),
        );
        let fresh_lists = Family::default();
        registry.register(
            "bellows_fresh_lists",
            "Lists read at least as fresh as now (the live confirmation before a phase starts): served by the API server's watch cache, or by a quorum read from etcd and why (too_large, expired, refused, slow, no_revision)",
            fresh_lists.clone(),
        );
        let objective_value = Family::default();
        registry.register(
            "bellows_objective_value",
            "The last value measured of each objective of a rollout whose contract waits on it",
            objective_value.clone(),
        );
        let objective_passes = Family::default();
        registry.register(
            "bellows_objective_passes",
            "Passing measurements in a row of each objective of a rollout whose contract waits on it",
            objective_passes.clone(),
        );
        let budget_consumed = Family::default();
        registry.register(
            "bellows_budget_consumed",
            "The share of the period's downtime budget a rollout consumed from expand to contract (so far, before contract)",
            budget_consumed.clone(),
        );
        let budget_consumed_seconds = Family::default();
        registry.register(
            "bellows_budget_consumed_seconds",
            "The downtime a rollout cost from expand to contract: its error ratio times its duration",
            budget_consumed_seconds.clone(),
        );
        let budget_remaining = Family::default();
        registry.register(
            "bellows_budget_remaining",
            "The share of the period's downtime budget left, as last measured for a rollout that has not contracted",
            budget_remaining.clone(),
        );
        Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            phase_transitions,
            phase_duration,
            rollouts,
            contract_held,
            contract_start,
            api_forbidden,
            api_requests,
            fresh_lists,
            objective_value,
            objective_passes,
            budget_consumed,
            budget_consumed_seconds,
            budget_remaining,
        }
    }

    /// Records how long contract took to start once the workloads were
    /// rolled out.
    pub fn contract_started(&self, took: Duration) {
        self.contract_start.observe(took.as_secs_f64());
    }

    /// Records a finished reconcile.
    pub fn reconciled(&self, took: Duration, error: Option<&'static str>) {
        let result = if error.is_some() { "error" } else { "success" };
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: CONTROLLER,
                result,
            })
            .inc();
        if let Some(error) = error {
            self.reconcile_errors
                .get_or_create(&ErrorLabels {
                    controller: CONTROLLER,
                    error,
                })
                .inc();
        }
        self.reconcile_time
            .get_or_create(&ControllerLabels {
                controller: CONTROLLER,
            })
            .observe(took.as_secs_f64());
    }

    /// Records a rollout leaving `from` (after `spent`) for `to`.
    pub fn transition(&self, from: Option<(RolloutPhase, Duration)>, to: RolloutPhase) {
        if let Some((phase, spent)) = from {
            self.phase_duration
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .observe(spent.as_secs_f64());
        }
        self.phase_transitions
            .get_or_create(&PhaseLabels { phase: to.as_str() })
            .inc();
    }

    /// Records contract being held for `reason`.
    pub fn contract_held(&self, reason: &'static str) {
        self.contract_held
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records a request the API server refused with 403 Forbidden.
    pub fn forbidden(&self) {
        self.api_forbidden.inc();
    }

    /// Records a request sent to the API server with `verb`.
    pub fn api_request(&self, verb: &'static str) {
        self.api_requests.get_or_create(&VerbLabels { verb }).inc();
    }

    /// Records who answered a fresh list (`controller::fresh`): `served`
    /// `watch_cache` or `quorum`, and why.
    pub fn fresh_list(&self, served: &'static str, reason: &'static str) {
        self.fresh_lists
            .get_or_create(&FreshLabels { served, reason })
            .inc();
    }

    /// Sets the `bellows_rollouts` gauge from the current set of rollouts.
    pub fn count_rollouts<'a>(&self, rollouts: impl IntoIterator<Item = &'a SchemaRollout>) {
        let mut counts = [0i64; RolloutPhase::ALL.len()];
        for r in rollouts {
            let phase = r
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(RolloutPhase::Pending);
            counts[RolloutPhase::ALL
                .iter()
                .position(|p| *p == phase)
                .unwrap_or(0)] += 1;
        }
        for (phase, n) in RolloutPhase::ALL.iter().zip(counts) {
            self.rollouts
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(n);
        }
    }

    /// Sets the objective gauges from the current set of rollouts: one
    /// series per objective (and workload) of each rollout whose contract
    /// has not started; the value only where the last measurement had one.
    pub fn objectives<'a>(&self, rollouts: impl IntoIterator<Item = &'a SchemaRollout>) {
        self.objective_value.clear();
        self.objective_passes.clear();
        for r in rollouts {
            let Some(status) = r.status.as_ref() else {
                continue;
            };
            if status.step(Step::Contract).is_some() {
                continue;
            }
            for o in &status.objectives {
                let labels = ObjectiveLabels {
                    namespace: r.metadata.namespace.clone().unwrap_or_default(),
                    rollout: r.metadata.name.clone().unwrap_or_default(),
                    objective: o.name.clone(),
                    workload: o.workload.clone().unwrap_or_default(),
                };
                self.objective_passes
                    .get_or_create(&labels)
                    .set(o.passes.into());
                if let Some(v) = o.value {
                    self.objective_value.get_or_create(&labels).set(v);
                }
            }
        }
    }

    /// Sets the budget gauges from the current set of rollouts: what each
    /// rollout with a downtime budget consumed (kept after it contracted),
    /// and what is left while it has not contracted.
    pub fn budgets<'a>(&self, rollouts: impl IntoIterator<Item = &'a SchemaRollout>) {
        self.budget_consumed.clear();
        self.budget_consumed_seconds.clear();
        self.budget_remaining.clear();
        for r in rollouts {
            let Some(status) = r.status.as_ref() else {
                continue;
            };
            let Some(b) = status.budget.as_ref() else {
                continue;
            };
            let labels = RolloutLabels {
                namespace: r.metadata.namespace.clone().unwrap_or_default(),
                rollout: r.metadata.name.clone().unwrap_or_default(),
            };
            for (gauge, value) in [
                (&self.budget_consumed, b.consumed),
                (&self.budget_consumed_seconds, b.consumed_seconds),
            ] {
                if let Some(v) = value {
                    gauge.get_or_create(&labels).set(v);
                }
            }
            if let Some(v) = b.remaining
                && status.step(Step::Contract).is_none()
            {
                self.budget_remaining.get_or_create(&labels).set(v);
            }
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_the_controller_runtime_and_domain_names() {
        let m = Metrics::new();
        m.reconciled(Duration::from_millis(20), None);
        m.reconciled(Duration::from_millis(20), Some("kube"));
        m.transition(
            Some((RolloutPhase::Expanding, Duration::from_secs(3))),
            RolloutPhase::AwaitingRollout,
        );
        m.contract_held("RolledBack");
        m.contract_started(Duration::from_millis(30));
        m.count_rollouts([]);
        m.forbidden();
        m.api_request("patch");
        let text = m.encode();
        for name in [
            "controller_runtime_reconcile_total{controller=\"schemarollout\",result=\"success\"} 1",
            "controller_runtime_reconcile_errors_total{controller=\"schemarollout\",error=\"kube\"} 1",
            "controller_runtime_reconcile_time_seconds_bucket",
            "bellows_phase_transitions_total{phase=\"AwaitingRollout\"} 1",
            "bellows_phase_duration_seconds_count{phase=\"Expanding\"} 1",
            "bellows_rollouts{phase=\"Succeeded\"} 0",
            "bellows_contract_held_total{reason=\"RolledBack\"} 1",
            "bellows_contract_start_seconds_count 1",
            "bellows_api_forbidden_total 1",
            "bellows_api_requests_total{verb=\"patch\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn objective_gauges_follow_the_rollouts_waiting_on_them() {
        let waiting: SchemaRollout = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "users", "namespace": "shop"},
            "spec": {"workloads": [], "expand": {"sql": ["x"]}, "contract": {"sql": ["y"]}},
            "status": {"objectives": [
                {"name": "errors", "value": 0.05, "passes": 0},
                {"name": "latency", "workload": "api", "passes": 2},
            ]},
        }))
        .unwrap();
        let m = Metrics::new();
        m.objectives([&waiting]);
        let text = m.encode();
        for line in [
            "bellows_objective_value{namespace=\"shop\",rollout=\"users\",objective=\"errors\",workload=\"\"} 0.05",
            "bellows_objective_passes{namespace=\"shop\",rollout=\"users\",objective=\"latency\",workload=\"api\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("objective=\"latency\",workload=\"api\"} 0"),
            "no value without data"
        );
        m.objectives([]);
        assert!(
            !m.encode().contains("rollout=\"users\""),
            "gone with the rollout"
        );
    }

    #[test]
    fn budget_gauges_keep_what_a_rollout_spent_after_it_contracted() {
        let rollout = |contracted: bool| -> SchemaRollout {
            let steps = if contracted {
                serde_json::json!([{"step": "Contract", "digest": "d", "state": "Succeeded"}])
            } else {
                serde_json::json!([])
            };
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "users", "namespace": "shop"},
                "spec": {"workloads": [], "expand": {"sql": ["x"]}, "contract": {"sql": ["y"]}},
                "status": {"steps": steps, "budget": {"consumed": 0.02, "consumedSeconds": 51.8, "remaining": 0.7}},
            }))
            .unwrap()
        };
        let m = Metrics::new();
        m.budgets([&rollout(false)]);
        let text = m.encode();
        for line in [
            "bellows_budget_consumed{namespace=\"shop\",rollout=\"users\"} 0.02",
            "bellows_budget_consumed_seconds{namespace=\"shop\",rollout=\"users\"} 51.8",
            "bellows_budget_remaining{namespace=\"shop\",rollout=\"users\"} 0.7",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        m.budgets([&rollout(true)]);
        let text = m.encode();
        assert!(
            text.contains("bellows_budget_consumed{namespace=\"shop\",rollout=\"users\"} 0.02")
        );
        assert!(!text.contains("bellows_budget_remaining{"), "{text}");
    }
}
