//! Service level objectives (`spec.contract.after.objectives`): which
//! queries to measure and when, how measurements add up to passes in a
//! row, and what holds contract. Pure; the controller measures.

use super::elapsed;
use crate::api::{
    ObjectiveStatus, OnViolation, Reason, SchemaRollout, SchemaRolloutSpec, Workload,
    parse_duration,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use std::time::Duration;

/// How often an objective is measured when its spec does not say.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Passing measurements in a row needed when the spec does not say.
pub const DEFAULT_SUCCESSES: u32 = 3;

/// One query to measure: an objective, for a workload where its query
/// names `{{workload}}`, its placeholders filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The objective's name.
    pub name: String,
    /// The workload, where the query names one.
    pub workload: Option<String>,
    /// The PromQL to send.
    pub query: String,
}

/// One measurement of a [`Target`].
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// The objective's name.
    pub name: String,
    /// The workload, where the query names one.
    pub workload: Option<String>,
    /// When it was taken.
    pub at: Timestamp,
    /// The number, or why there is none.
    pub result: Result<f64, Problem>,
}

/// Why a measurement gave no number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Nothing to judge by: Prometheus failing, an empty result, NaN or
    /// Inf. Never a pass.
    NoData(String),
    /// No answer at all: Prometheus could not be reached or did not answer
    /// in time. Never a pass; before expand, a spec to fix.
    Unreachable(String),
    /// Prometheus refused the query itself (its own error text).
    Rejected(String),
}

/// The queries of every objective, placeholders filled in; or why the
/// spec cannot say them (an unknown placeholder, `{{version}}` that means
/// several things).
pub fn targets(rollout: &SchemaRollout) -> Result<Vec<Target>, String> {
    targets_in(&rollout.spec, &rollout.namespace().unwrap_or_default())
}

/// [`targets`] of `spec` in `namespace`.
pub(super) fn targets_in(spec: &SchemaRolloutSpec, namespace: &str) -> Result<Vec<Target>, String> {
    let workloads = &spec.workloads;
    let mut out = vec![];
    for o in spec.objectives() {
        let field = format!("objective {}", o.name);
        if let Some(unknown) = placeholders(&o.query)
            .into_iter()
            .find(|p| !["version", "workload", "namespace"].contains(&p.as_str()))
        {
            return Err(format!(
                "{field}: unknown placeholder {{{{{unknown}}}}} (known: {{{{version}}}}, {{{{workload}}}}, {{{{namespace}}}})"
            ));
        }
        let fill = |w: &Workload, version: Option<String>| -> Result<String, String> {
            let mut q = o
                .query
                .replace("{{namespace}}", namespace)
                .replace("{{workload}}", &w.name);
            if q.contains("{{version}}") {
                let v = version.ok_or_else(|| {
                    format!("{field}: {{{{version}}}} needs one version: a tag, a reference or one label")
                })?;
                q = q.replace("{{version}}", &v);
            }
            Ok(q)
        };
        if o.query.contains("{{workload}}") {
            for w in workloads {
                out.push(Target {
                    name: o.name.clone(),
                    workload: Some(w.name.clone()),
                    query: fill(w, version(w))?,
                });
            }
        } else {
            let versions: Vec<Option<String>> = workloads.iter().map(version).collect();
            let one = versions
                .iter()
                .all(|v| *v == versions[0])
                .then(|| versions[0].clone())
                .flatten();
            if o.query.contains("{{version}}") && one.is_none() {
                return Err(format!(
                    "{field}: the workloads' versions differ, so {{{{version}}}} needs {{{{workload}}}} beside it"
                ));
            }
            out.push(Target {
                name: o.name.clone(),
                workload: None,
                query: fill(&workloads[0], one)?,
            });
        }
    }
    Ok(out)
}

/// The names inside `{{...}}` in `query`.
pub(super) fn placeholders(query: &str) -> Vec<String> {
    query
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}").map(|(name, _)| name.trim().to_owned()))
        .collect()
}

/// What `{{version}}` means for `w`.
fn version(w: &Workload) -> Option<String> {
    if let Some(image) = &w.version.image {
        return image.tag.clone().or_else(|| image.reference.clone());
    }
    match w
        .version
        .labels
        .as_ref()
        .map(|l| l.values().collect::<Vec<_>>())
    {
        Some(values) if values.len() == 1 => Some(values[0].clone()),
        _ => None,
    }
}

/// The objective `name`'s measuring interval and passes needed.
fn settings(rollout: &SchemaRollout, name: &str) -> (Duration, u32, OnViolation) {
    let o = rollout.spec.objectives().iter().find(|o| o.name == name);
    let interval = o
        .and_then(|o| o.interval.as_deref())
        .and_then(|i| parse_duration(i).ok())
        .unwrap_or(DEFAULT_INTERVAL);
    let successes = o.and_then(|o| o.successes).unwrap_or(DEFAULT_SUCCESSES);
    (
        interval,
        successes,
        o.map(|o| o.on_violation).unwrap_or_default(),
    )
}

/// The targets to measure now: every one when `confirming` (the live round
/// before contract starts), else those never measured or measured longer
/// than their interval ago.
pub fn due(
    rollout: &SchemaRollout,
    targets: Vec<Target>,
    now: Timestamp,
    confirming: bool,
) -> Vec<Target> {
    let prev = rollout
        .status
        .as_ref()
        .map(|s| s.objectives.as_slice())
        .unwrap_or_default();
    targets
        .into_iter()
        .filter(|t| {
            confirming
                || prev
                    .iter()
                    .find(|s| s.name == t.name && s.workload == t.workload)
                    .and_then(|s| s.measured_at.as_ref())
                    .is_none_or(|at| elapsed(now, at.0) >= settings(rollout, &t.name).0)
        })
        .collect()
}

/// Whether `value` is within the objective `name`'s bounds.
fn passes(rollout: &SchemaRollout, name: &str, value: f64) -> bool {
    let Some(o) = rollout.spec.objectives().iter().find(|o| o.name == name) else {
        return false;
    };
    o.max.is_none_or(|max| value <= max) && o.min.is_none_or(|min| value >= min)
}

/// The objectives' status after `fresh` measurements, from `prev`: one
/// entry per target; a pass adds one to the passes in a row, anything else
/// starts them again. Nothing counts while a workload is not rolled out.
pub fn tally(
    rollout: &SchemaRollout,
    targets: &[Target],
    prev: &[ObjectiveStatus],
    fresh: &[Measurement],
    rolled_out: bool,
) -> Vec<ObjectiveStatus> {
    targets
        .iter()
        .map(|t| {
            let mut s = prev
                .iter()
                .find(|s| s.name == t.name && s.workload == t.workload)
                .cloned()
                .unwrap_or_else(|| ObjectiveStatus {
                    name: t.name.clone(),
                    workload: t.workload.clone(),
                    ..ObjectiveStatus::default()
                });
            if !rolled_out {
                s.passes = 0;
                return s;
            }
            if let Some(m) = fresh
                .iter()
                .find(|m| m.name == t.name && m.workload == t.workload)
            {
                s.measured_at = Some(Time(m.at));
                match &m.result {
                    Ok(v) if passes(rollout, &t.name, *v) => {
                        s.value = Some(*v);
                        s.passes += 1;
                        s.message = None;
                    }
                    Ok(v) => {
                        s.value = Some(*v);
                        s.passes = 0;
                        s.message = Some(format!(
                            "{v} is out of bounds ({})",
                            bounds(rollout, &t.name)
                        ));
                    }
                    Err(
                        Problem::NoData(why) | Problem::Unreachable(why) | Problem::Rejected(why),
                    ) => {
                        s.value = None;
                        s.passes = 0;
                        s.message = Some(why.clone());
                    }
                }
            }
            s
        })
        .collect()
}

/// The objective `name`'s bounds, as `max 0.01` / `min 0.99, max 1`.
fn bounds(rollout: &SchemaRollout, name: &str) -> String {
    let o = rollout.spec.objectives().iter().find(|o| o.name == name);
    let min = o.and_then(|o| o.min).map(|m| format!("min {m}"));
    let max = o.and_then(|o| o.max).map(|m| format!("max {m}"));
    [min, max]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
}

/// What holds contract among the objectives, worst first.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Prometheus refused a query: a human must fix it.
    Rejected(String),
    /// A violation of an objective with `onViolation: Fail`.
    Failed(String),
    /// A violation: held until it passes again.
    Violated(String),
    /// No data to judge by: held, never passed by time.
    Inconclusive(String),
    /// Passing, but not yet as many times in a row as needed.
    Pending(String),
}

/// What holds contract, from the tallied `status` and this reconcile's
/// `fresh` measurements; `None` when every objective passed enough times
/// in a row and nothing measured now says otherwise.
pub fn verdict(
    rollout: &SchemaRollout,
    status: &[ObjectiveStatus],
    fresh: &[Measurement],
) -> Option<Verdict> {
    let label = |s: &ObjectiveStatus| match &s.workload {
        Some(w) => format!("objective {} ({w})", s.name),
        None => format!("objective {}", s.name),
    };
    let mut worst: Option<Verdict> = None;
    let mut keep = |v: Verdict| {
        let rank = |v: &Verdict| match v {
            Verdict::Rejected(_) => 0,
            Verdict::Failed(_) => 1,
            Verdict::Violated(_) => 2,
            Verdict::Inconclusive(_) => 3,
            Verdict::Pending(_) => 4,
        };
        if worst.as_ref().is_none_or(|w| rank(&v) < rank(w)) {
            worst = Some(v);
        }
    };
    for s in status {
        let (_, successes, on_violation) = settings(rollout, &s.name);
        let now = fresh
            .iter()
            .find(|m| m.name == s.name && m.workload == s.workload);
        match now.map(|m| &m.result) {
            Some(Err(Problem::Rejected(e))) => keep(Verdict::Rejected(format!(
                "{}: Prometheus rejected the query: {e}",
                label(s)
            ))),
            Some(Err(Problem::NoData(why) | Problem::Unreachable(why))) => keep(
                Verdict::Inconclusive(format!("{}: no data: {why}", label(s))),
            ),
            _ if s.passes == 0 && s.value.is_some() && s.message.is_some() => {
                let m = format!("{}: {}", label(s), s.message.as_deref().unwrap_or_default());
                keep(match on_violation {
                    OnViolation::Fail => Verdict::Failed(m),
                    OnViolation::Hold => Verdict::Violated(m),
                })
            }
            _ if s.passes == 0 && s.message.is_some() => keep(Verdict::Inconclusive(format!(
                "{}: no data: {}",
                label(s),
                s.message.as_deref().unwrap_or_default()
            ))),
            _ if s.passes < successes => keep(Verdict::Pending(format!(
                "{}: {} of {successes} passing measurements in a row",
                label(s),
                s.passes
            ))),
            _ => {}
        }
    }
    worst
}

/// When the next objective is due, from `now`.
pub fn next_due(
    rollout: &SchemaRollout,
    status: &[ObjectiveStatus],
    now: Timestamp,
) -> Option<Duration> {
    status
        .iter()
        .map(|s| {
            let interval = settings(rollout, &s.name).0;
            match &s.measured_at {
                Some(at) => interval.saturating_sub(elapsed(now, at.0)),
                None => Duration::ZERO,
            }
        })
        .min()
        .map(|d| d.max(Duration::from_secs(1)))
}

/// Why expand must not start, from the measurements of the live round
/// before it (`fresh`: every objective's query sent once): a query
/// Prometheus refuses, or a Prometheus that cannot be reached, is a spec
/// to fix before anything runs. No data is fine here: the new version has
/// no series yet.
pub fn preflight(fresh: &[Measurement]) -> Option<(Reason, String)> {
    let problems: Vec<(String, &Problem)> = fresh
        .iter()
        .filter_map(|m| {
            let label = match &m.workload {
                Some(w) => format!("objective {} ({w})", m.name),
                None => format!("objective {}", m.name),
            };
            Some((label, m.result.as_ref().err()?))
        })
        .collect();
    stopping(&problems)
}

/// Of `problems` (each labelled with what it measured), the one that
/// stops a phase before it starts: a query Prometheus rejected first (a
/// spec to fix), else a Prometheus that could not be reached.
pub fn stopping(problems: &[(String, &Problem)]) -> Option<(Reason, String)> {
    let rejected = problems.iter().find_map(|(label, p)| match p {
        Problem::Rejected(e) => Some((
            Reason::ObjectiveQueryRejected,
            format!("{label}: Prometheus rejected the query: {e}"),
        )),
        _ => None,
    });
    rejected.or_else(|| {
        problems.iter().find_map(|(label, p)| match p {
            Problem::Unreachable(e) => {
                Some((Reason::PrometheusUnreachable, format!("{label}: {e}")))
            }
            _ => None,
        })
    })
}
