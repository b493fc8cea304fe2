//! The service's downtime budget (`spec.budget`): which error-ratio
//! queries to send and when, what a measurement says the rollout spent and
//! what is left, and when too little is left to start expand or contract.
//! Pure; the controller measures.
//!
//! With an objective of 99.9% over 720h the budget is 0.1% of the period:
//! 2592 s of full downtime. The error ratio over the whole period says
//! how much of it is spent; the error ratio since expand started, times
//! the time since, is what this rollout cost.

use super::elapsed;
use super::objective::{self, Problem};
use crate::api::{BudgetSpec, BudgetStatus, Reason, SchemaRollout, Step, parse_duration};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use std::time::Duration;

/// The period a budget is counted over when the spec does not say.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(720 * 3600);
/// How often the budget is measured when the spec does not say.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// The queries to send now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queries {
    /// The error ratio over the period: what is left.
    pub period: String,
    /// The error ratio since expand started and how long ago that was:
    /// what this rollout spent (none before expand).
    pub rollout: Option<(String, Duration)>,
}

/// One measurement of the budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// When it was taken.
    pub at: Timestamp,
    /// The error ratio over the period.
    pub period: Result<f64, Problem>,
    /// The error ratio since expand started, and that window.
    pub rollout: Option<(Result<f64, Problem>, Duration)>,
}

/// The period and interval of `spec`.
fn settings(spec: &BudgetSpec) -> (Duration, Duration) {
    let read = |d: Option<&String>, default| {
        d.and_then(|d| parse_duration(d).ok())
            .unwrap_or(default)
            .max(Duration::from_secs(1))
    };
    (
        read(spec.period.as_ref(), DEFAULT_PERIOD),
        read(spec.interval.as_ref(), DEFAULT_INTERVAL),
    )
}

/// Seconds of full downtime `spec`'s `period` allows.
fn allowed(spec: &BudgetSpec, period: Duration) -> f64 {
    (1.0 - spec.objective) * period.as_secs_f64()
}

/// `query` with its placeholders filled in.
fn fill(query: &str, window: Duration, namespace: &str) -> String {
    query
        .replace("{{window}}", &format!("{}s", window.as_secs().max(1)))
        .replace("{{namespace}}", namespace)
}

/// What to send now for `rollout`'s budget: nothing without one, once
/// contract has started, or while the last measurement is younger than
/// the interval (unless `confirming`: the live round before a phase
/// starts always measures).
pub fn due(rollout: &SchemaRollout, now: Timestamp, confirming: bool) -> Option<Queries> {
    let spec = rollout.spec.budget.as_ref()?;
    let status = rollout.status.clone().unwrap_or_default();
    if status.step(Step::Contract).is_some() {
        return None;
    }
    let (period, interval) = settings(spec);
    let last = status.budget.as_ref().and_then(|b| b.measured_at.as_ref());
    if !confirming && last.is_some_and(|at| elapsed(now, at.0) < interval) {
        return None;
    }
    let ns = rollout.namespace().unwrap_or_default();
    let since = status
        .step(Step::Expand)
        .and_then(|s| s.started_at.as_ref())
        .map(|at| elapsed(now, at.0));
    Some(Queries {
        period: fill(&spec.error_ratio, period, &ns),
        rollout: since.map(|w| (fill(&spec.error_ratio, w, &ns), w)),
    })
}

/// The budget's status after `fresh` (if measured now), from `prev`.
pub fn record(
    rollout: &SchemaRollout,
    prev: Option<&BudgetStatus>,
    fresh: Option<&Measurement>,
) -> Option<BudgetStatus> {
    let spec = rollout.spec.budget.as_ref()?;
    let Some(m) = fresh else {
        return prev.cloned();
    };
    let (period, _) = settings(spec);
    let allowed = allowed(spec, period);
    let mut why = vec![];
    let mut status = BudgetStatus {
        measured_at: Some(Time(m.at)),
        ..BudgetStatus::default()
    };
    match &m.period {
        Ok(ratio) => status.remaining = Some(1.0 - ratio * period.as_secs_f64() / allowed),
        Err(p) => why.push(format!("left: {}", text(p))),
    }
    match &m.rollout {
        Some((Ok(ratio), window)) => {
            let seconds = ratio * window.as_secs_f64();
            status.error_ratio = Some(*ratio);
            status.consumed_seconds = Some(seconds);
            status.consumed = Some(seconds / allowed);
        }
        Some((Err(p), _)) => why.push(format!("spent: {}", text(p))),
        None => {}
    }
    status.message = (!why.is_empty()).then(|| why.join("; "));
    Some(status)
}

fn text(p: &Problem) -> &str {
    match p {
        Problem::NoData(t) | Problem::Unreachable(t) | Problem::Rejected(t) => t,
    }
}

/// A query of `fresh` Prometheus refused or could not be sent to, for the
/// live round before expand: the same faults as an objective's.
pub fn preflight(fresh: Option<&Measurement>) -> Option<(Reason, String)> {
    let m = fresh?;
    let results = std::iter::once(&m.period).chain(m.rollout.as_ref().map(|r| &r.0));
    let problems: Vec<(String, &Problem)> = results
        .filter_map(|r| Some(("downtime budget".to_owned(), r.as_ref().err()?)))
        .collect();
    objective::stopping(&problems)
}

/// What holds a phase start because of the budget in `status`: too little
/// left under the floor, or no number to compare with it (never a pass).
pub fn hold(rollout: &SchemaRollout, status: Option<&BudgetStatus>) -> Option<(Reason, String)> {
    let spec = rollout.spec.budget.as_ref()?;
    let floor = spec.floor?;
    let (period, _) = settings(spec);
    let allowed = allowed(spec, period);
    match status.and_then(|s| s.remaining) {
        None => Some((
            Reason::BudgetUnknown,
            format!(
                "downtime budget: no data to compare with the floor of {}: {}",
                percent(floor),
                status
                    .and_then(|s| s.message.as_deref())
                    .unwrap_or("not measured yet")
            ),
        )),
        Some(left) if left < floor => Some((
            Reason::BudgetExhausted,
            format!(
                "downtime budget: {} of the {} budget left ({} of {}), below the floor of {}",
                percent(left),
                shown(period),
                shown(Duration::from_secs_f64((left.max(0.0)) * allowed)),
                shown(Duration::from_secs_f64(allowed)),
                percent(floor)
            ),
        )),
        Some(_) => None,
    }
}

/// How soon the budget is measured again, while it is wanted.
pub fn next_due(rollout: &SchemaRollout) -> Option<Duration> {
    rollout.spec.budget.as_ref().map(|s| settings(s).1)
}

/// A share as a percentage with one decimal.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// A duration as hours, minutes and seconds (`43m12s`, `720h`).
pub fn shown(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rollout(budget: serde_json::Value, status: serde_json::Value) -> SchemaRollout {
        let job = json!({"template": {"spec": {"containers": [{"name": "m", "image": "m"}]}}});
        serde_json::from_value(json!({
            "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
            "metadata": {"name": "users", "namespace": "shop"},
            "spec": {
                "workloads": [{"name": "api", "version": {"image": {"container": "api", "tag": "2"}}}],
                "prometheus": {"address": "http://prometheus:9090"},
                "budget": budget,
                "expand": {"job": job.clone()}, "contract": {"job": job},
            },
            "status": status,
        }))
        .unwrap()
    }

    const RATIO: &str =
        "sum(rate(failed{ns=\"{{namespace}}\"}[{{window}}])) / sum(rate(all[{{window}}]))";

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn the_period_is_asked_before_expand_and_the_rollout_window_after() {
        let spec = json!({"objective": 0.999, "errorRatio": RATIO, "interval": "10s"});
        let r = rollout(spec.clone(), json!({}));
        let q = due(&r, at(100), false).unwrap();
        assert_eq!(
            q.period,
            "sum(rate(failed{ns=\"shop\"}[2592000s])) / sum(rate(all[2592000s]))"
        );
        assert_eq!(q.rollout, None, "nothing spent before expand");

        let started = json!({"steps": [{"step": "Expand", "digest": "d", "state": "Succeeded",
                                        "startedAt": "1970-01-01T00:01:40Z"}],
                             "budget": {"measuredAt": "1970-01-01T00:02:00Z"}});
        let r = rollout(spec.clone(), started);
        assert_eq!(due(&r, at(125), false), None, "measured 5 s ago");
        let q = due(&r, at(125), true).expect("the live round always measures");
        let (query, window) = q.rollout.unwrap();
        assert_eq!(window, Duration::from_secs(25));
        assert!(query.contains("[25s]"), "{query}");
        assert!(due(&r, at(130), false).is_some(), "10 s later");

        let contracting =
            json!({"steps": [{"step": "Contract", "digest": "d", "state": "Running"}]});
        assert_eq!(due(&rollout(spec, contracting), at(500), true), None);
    }

    #[test]
    fn spent_and_left_are_shares_of_the_periods_downtime() {
        // 99% over 1000 s allows 10 s of downtime.
        let r = rollout(
            json!({"objective": 0.99, "period": "1000s", "errorRatio": RATIO, "floor": 0.25}),
            json!({}),
        );
        let m = Measurement {
            at: at(7),
            period: Ok(0.008),
            rollout: Some((Ok(0.05), Duration::from_secs(10))),
        };
        let s = record(&r, None, Some(&m)).unwrap();
        assert!((s.remaining.unwrap() - 0.2).abs() < 1e-9, "{s:?}");
        assert_eq!(s.error_ratio, Some(0.05));
        assert!((s.consumed_seconds.unwrap() - 0.5).abs() < 1e-9);
        assert!((s.consumed.unwrap() - 0.05).abs() < 1e-9);
        let (reason, message) = hold(&r, Some(&s)).unwrap();
        assert_eq!(reason, Reason::BudgetExhausted);
        assert_eq!(
            message,
            "downtime budget: 20.0% of the 16m40s budget left (2s of 10s), below the floor of 25.0%"
        );
        let plenty = BudgetStatus {
            remaining: Some(0.9),
            ..s.clone()
        };
        assert_eq!(hold(&r, Some(&plenty)), None);
        // Kept while nothing new is measured.
        assert_eq!(record(&r, Some(&s), None), Some(s));
    }

    #[test]
    fn no_number_never_passes_the_floor() {
        let r = rollout(
            json!({"objective": 0.99, "errorRatio": RATIO, "floor": 0.5}),
            json!({}),
        );
        let m = Measurement {
            at: at(7),
            period: Err(Problem::NoData("the query returned no series".into())),
            rollout: None,
        };
        let s = record(&r, None, Some(&m)).unwrap();
        let (reason, message) = hold(&r, Some(&s)).unwrap();
        assert_eq!(reason, Reason::BudgetUnknown);
        assert!(
            message.ends_with("floor of 50.0%: left: the query returned no series"),
            "{message}"
        );
        assert_eq!(hold(&r, None).unwrap().0, Reason::BudgetUnknown);
        // Without a floor the budget is only shown.
        let shown_only = rollout(json!({"objective": 0.99, "errorRatio": RATIO}), json!({}));
        assert_eq!(hold(&shown_only, Some(&s)), None);
    }

    #[test]
    fn a_refused_or_unsent_query_is_named_before_expand() {
        let m = |p| Measurement {
            at: at(0),
            period: Err(p),
            rollout: None,
        };
        assert_eq!(
            preflight(Some(&m(Problem::Rejected("1:5: parse error".into())))),
            Some((
                Reason::ObjectiveQueryRejected,
                "downtime budget: Prometheus rejected the query: 1:5: parse error".into()
            ))
        );
        assert_eq!(
            preflight(Some(&m(Problem::Unreachable("down".into()))))
                .unwrap()
                .0,
            Reason::PrometheusUnreachable
        );
        assert_eq!(preflight(Some(&m(Problem::NoData("none".into())))), None);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(shown(Duration::from_secs(2592)), "43m12s");
        assert_eq!(shown(Duration::from_secs(720 * 3600)), "720h");
        assert_eq!(shown(Duration::ZERO), "0s");
    }
}
