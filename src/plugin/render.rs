//! Pure text rendering for `kubectl bellows`: objects and the current time
//! in, text out. Nothing here talks to the cluster or reads the clock.

use crate::api::{
    BudgetSpec, RolloutPhase, SchemaRollout, SchemaRolloutStatus, Step, StepState, StepStatus,
    WorkloadVersion, condition,
};
use crate::planner::budget;
use crate::planner::objective::DEFAULT_SUCCESSES;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};

/// How many of the most recent events `status` shows.
pub const EVENTS_SHOWN: usize = 10;

/// Gap between table columns, as kubectl prints it.
const GAP: &str = "   ";

/// The `status` view of `rollout`: header, phases, workloads, hold reason,
/// conditions and the last [`EVENTS_SHOWN`] of `events` that regard it.
pub fn status(rollout: &SchemaRollout, events: &[Event], now: Timestamp) -> String {
    let empty = SchemaRolloutStatus::default();
    let status = rollout.status.as_ref().unwrap_or(&empty);
    let mut out = header(rollout, status, now);

    out.push_str("\nPhases:\n");
    out.push_str(&tree(&columns(&phase_rows(rollout, status, now))));

    out.push_str("\nWorkloads:\n");
    out.push_str(&tree(&columns(&workload_rows(rollout, status))));

    if !rollout.spec.objectives().is_empty() {
        out.push_str("\nObjectives:\n");
        out.push_str(&tree(&columns(&objective_rows(rollout, status, now))));
    }

    if let Some(spec) = &rollout.spec.budget {
        out.push_str("\nDowntime budget:\n");
        out.push_str(&tree(&columns(&budget_rows(spec, status, now))));
    }

    out.push_str("\nConditions:\n");
    if status.conditions.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let mut rows = vec![cells(&["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"])];
        rows.extend(status.conditions.iter().map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                age(&c.last_transition_time.0, now),
                one_line(&c.message),
            ]
        }));
        out.push_str(&indent(&columns(&rows)));
    }

    let mut mine: Vec<&Event> = events.iter().filter(|e| regards(e, rollout)).collect();
    mine.sort_by_key(|e| event_time(e));
    let shown = &mine[mine.len().saturating_sub(EVENTS_SHOWN)..];
    out.push_str(&format!(
        "\nEvents (last {} of {}):\n",
        shown.len(),
        mine.len()
    ));
    if shown.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let mut rows = vec![cells(&["TYPE", "REASON", "AGE", "NOTE"])];
        rows.extend(shown.iter().map(|e| {
            let count = e.series.as_ref().map_or(1, |s| s.count);
            vec![
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                match (event_time(e), count) {
                    (Some(t), 1) => age(&t, now),
                    (Some(t), n) => format!("{} (x{n})", age(&t, now)),
                    (None, _) => "-".into(),
                },
                one_line(e.note.as_deref().unwrap_or_default()),
            ]
        }));
        out.push_str(&indent(&columns(&rows)));
    }
    out
}

/// The `list` table: NAMESPACE (when `namespace` is `None`, i.e. all
/// namespaces) NAME PHASE READY AGE MESSAGE, or a one-line note when there
/// is nothing to list.
pub fn list(rollouts: &[SchemaRollout], namespace: Option<&str>, now: Timestamp) -> String {
    if rollouts.is_empty() {
        return match namespace {
            Some(ns) => format!("No SchemaRollouts found in namespace {ns}.\n"),
            None => "No SchemaRollouts found.\n".into(),
        };
    }
    let all = namespace.is_none();
    let mut header = vec![];
    if all {
        header.push("NAMESPACE");
    }
    header.extend(["NAME", "PHASE", "READY", "AGE", "MESSAGE"]);
    let mut rows = vec![cells(&header)];
    for r in rollouts {
        let status = r.status.as_ref();
        let mut row = vec![];
        if all {
            row.push(r.namespace().unwrap_or_default());
        }
        row.extend([
            r.name_any(),
            status
                .and_then(|s| s.phase)
                .map_or("-", RolloutPhase::as_str)
                .to_owned(),
            status
                .and_then(|s| s.condition(condition::READY))
                .map_or_else(|| "-".to_owned(), |c| c.status.clone()),
            r.meta()
                .creation_timestamp
                .as_ref()
                .map_or_else(|| "-".to_owned(), |t| age(&t.0, now)),
            one_line(
                status
                    .and_then(|s| s.message.as_deref())
                    .unwrap_or_default(),
            ),
        ]);
        rows.push(row);
    }
    columns(&rows).concat()
}

/// Whether `event` is about `rollout`: a SchemaRollout of that name (and,
/// when both are known, that uid, so events of a deleted namesake are not
/// shown).
pub fn regards(event: &Event, rollout: &SchemaRollout) -> bool {
    let Some(r) = &event.regarding else {
        return false;
    };
    r.kind.as_deref() == Some(SchemaRollout::kind(&()).as_ref())
        && r.name.as_deref() == Some(rollout.name_any().as_str())
        && r.namespace == rollout.namespace()
        && (r.uid.is_none() || rollout.uid().is_none() || r.uid == rollout.uid())
}

/// A duration the way kubectl prints ages: `45s`, `3m12s`, `65m`, `2h5m`,
/// `30h`, `3d4h`, `90d`, `2y10d`, `9y`.
pub fn human(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (mins, hours) = (secs / 60, secs / 3600);
    let (days, years) = (hours / 24, hours / (24 * 365));
    match () {
        _ if secs < 120 => format!("{secs}s"),
        _ if mins < 10 => match secs % 60 {
            0 => format!("{mins}m"),
            s => format!("{mins}m{s}s"),
        },
        _ if mins < 180 => format!("{mins}m"),
        _ if hours < 8 => match mins % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        },
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        },
        _ if hours < 24 * 365 * 2 => format!("{days}d"),
        _ if hours < 24 * 365 * 8 => match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        },
        _ => format!("{years}y"),
    }
}

/// Namespace/name, generations, phase with its age, message, hold and pause.
fn header(rollout: &SchemaRollout, status: &SchemaRolloutStatus, now: Timestamp) -> String {
    let generation = rollout.metadata.generation.unwrap_or_default();
    let observed = match status.observed_generation {
        Some(g) if g == generation => format!("observed {g}"),
        Some(g) => format!("observed {g}, status not yet updated for this generation"),
        None => "not yet observed".into(),
    };
    let phase = match (status.phase, &status.phase_since) {
        (Some(p), Some(since)) => format!("{} for {}", p.as_str(), age(&since.0, now)),
        (Some(p), None) => p.as_str().to_owned(),
        (None, _) => "-".into(),
    };
    let mut rows = vec![
        vec![
            "SchemaRollout:".into(),
            format!(
                "{}/{}",
                rollout.namespace().unwrap_or_default(),
                rollout.name_any()
            ),
        ],
        vec!["Generation:".into(), format!("{generation} ({observed})")],
        vec!["Phase:".into(), phase],
    ];
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        rows.push(vec!["Message:".into(), one_line(m)]);
    }
    if let Some(h) = &status.hold_reason {
        rows.push(vec!["Contract held:".into(), h.clone()]);
    }
    if let Some(key) = &status.approval_key {
        let given = rollout
            .annotations()
            .get(crate::api::keys::APPROVE_ANNOTATION)
            == Some(key);
        let note = if given {
            "approved"
        } else {
            "not approved: kubectl bellows approve"
        };
        rows.push(vec!["Approval:".into(), format!("{key} ({note})")]);
    }
    if rollout.spec.paused {
        rows.push(vec![
            "Paused:".into(),
            "yes (kubectl bellows resume to continue)".into(),
        ]);
    }
    columns(&rows).concat()
}

/// One row per phase: expand, rollout, transition, contract.
fn phase_rows(
    rollout: &SchemaRollout,
    status: &SchemaRolloutStatus,
    now: Timestamp,
) -> Vec<Vec<String>> {
    let expand = status.step(Step::Expand);
    let expanded = expand.is_some_and(|s| s.state == StepState::Succeeded);
    let rolled_out = status
        .condition(condition::ROLLED_OUT)
        .is_some_and(|c| c.status == "True");
    let done = status.workloads.iter().filter(|w| w.rolled_out).count();
    let total = rollout.spec.workloads.len();
    let progress = format!("{done}/{total} workloads rolled out");
    let since_expand = expand.and_then(|s| s.finished_at.as_ref());
    let rollout_row = match (expanded, rolled_out) {
        (false, _) => cells(&["rollout", "Pending", "", ""]),
        (true, true) => vec![
            "rollout".into(),
            "Succeeded".into(),
            progress,
            span("took", since_expand, status.rolled_out_at.as_ref()),
        ],
        (true, false) => vec![
            "rollout".into(),
            "Running".into(),
            progress,
            match since_expand {
                Some(t) => format!("running for {}", age(&t.0, now)),
                None => String::new(),
            },
        ],
    };
    let transition = match rollout.spec.transition {
        Some(_) => step_row(status.step(Step::Transition), Step::Transition, now),
        None => cells(&["transition", "-", "not set", ""]),
    };
    let mut contract = step_row(status.step(Step::Contract), Step::Contract, now);
    if status.step(Step::Contract).is_none()
        && let Some(h) = &status.hold_reason
    {
        contract[2] = format!("held: {h}");
    }
    vec![
        step_row(expand, Step::Expand, now),
        rollout_row,
        transition,
        contract,
    ]
}

/// A Job or SQL phase: state, what runs it, and how long it took or runs.
fn step_row(step: Option<&StepStatus>, which: Step, now: Timestamp) -> Vec<String> {
    let Some(s) = step else {
        return cells(&[which.as_str(), "Pending", "", ""]);
    };
    let mut what = match (&s.job_name, s.statements) {
        (Some(job), _) => format!("job {job}"),
        (None, Some(n)) => format!("sql, {n} statements"),
        (None, None) => String::new(),
    };
    if let Some(m) = s
        .message
        .as_deref()
        .filter(|_| s.state == StepState::Failed)
    {
        what = format!("{what}: {}", one_line(m));
    }
    let timing = match s.state {
        StepState::Running => match &s.started_at {
            Some(t) => format!("running for {}", age(&t.0, now)),
            None => String::new(),
        },
        StepState::Succeeded | StepState::Failed => {
            span("took", s.started_at.as_ref(), s.finished_at.as_ref())
        }
    };
    vec![
        which.as_str().into(),
        format!("{:?}", s.state),
        what,
        timing,
    ]
}

/// One row per workload in the spec, with its progress from status.
fn workload_rows(rollout: &SchemaRollout, status: &SchemaRolloutStatus) -> Vec<Vec<String>> {
    rollout
        .spec
        .workloads
        .iter()
        .map(|w| {
            let mut row = vec![format!("{}/{}", w.kind, w.name), version(&w.version)];
            match status
                .workloads
                .iter()
                .find(|s| s.kind == w.kind && s.name == w.name)
            {
                None => row.extend(cells(&["", "", "no status yet"])),
                Some(s) => {
                    row.push(format!("new {}/{}", s.new_pods, s.replicas));
                    row.push(format!("old {}", s.old_pods));
                    row.push(if s.rolled_out {
                        "rolled out".into()
                    } else {
                        let why = [s.reason.as_deref(), s.message.as_deref()]
                            .into_iter()
                            .flatten()
                            .map(one_line)
                            .collect::<Vec<_>>()
                            .join(": ");
                        if why.is_empty() {
                            "not rolled out".into()
                        } else {
                            format!("not rolled out ({why})")
                        }
                    });
                }
            }
            row
        })
        .collect()
}

/// One row per objective (per workload where it is measured per
/// workload): its bound, its last value and how many passes in a row.
fn objective_rows(
    rollout: &SchemaRollout,
    status: &SchemaRolloutStatus,
    now: Timestamp,
) -> Vec<Vec<String>> {
    rollout
        .spec
        .objectives()
        .iter()
        .flat_map(|o| {
            let needed = o.successes.unwrap_or(DEFAULT_SUCCESSES);
            let bound = [
                o.min.map(|m| format!(">= {m}")),
                o.max.map(|m| format!("<= {m}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ");
            let measured: Vec<_> = status
                .objectives
                .iter()
                .filter(|s| s.name == o.name)
                .collect();
            if measured.is_empty() {
                return vec![cells(&[&o.name, &bound, "not measured yet"])];
            }
            measured
                .into_iter()
                .map(|s| {
                    let name = match &s.workload {
                        Some(w) => format!("{} ({w})", o.name),
                        None => o.name.clone(),
                    };
                    let value = s.value.map_or("no data".to_owned(), |v| format!("{v}"));
                    let when = s
                        .measured_at
                        .as_ref()
                        .map_or("-".into(), |t| age(&t.0, now));
                    let mut row = vec![
                        name,
                        bound.clone(),
                        value,
                        format!("{}/{needed} passes", s.passes),
                        when,
                    ];
                    row.extend(s.message.as_deref().map(one_line));
                    row
                })
                .collect()
        })
        .collect()
}

/// The downtime budget: the objective, what this rollout spent, what is
/// left against the floor.
fn budget_rows(
    spec: &BudgetSpec,
    status: &SchemaRolloutStatus,
    now: Timestamp,
) -> Vec<Vec<String>> {
    let objective = format!(
        "{} over {}",
        budget::percent(spec.objective),
        spec.period.as_deref().unwrap_or("720h")
    );
    let Some(b) = &status.budget else {
        return vec![
            cells(&["objective", &objective]),
            cells(&["measured", "not yet"]),
        ];
    };
    let spent = match (b.consumed, b.consumed_seconds, b.error_ratio) {
        (Some(share), Some(seconds), Some(ratio)) => format!(
            "{} of the budget ({seconds:.1}s of downtime, error ratio {})",
            budget::percent(share),
            budget::percent(ratio)
        ),
        _ => "not measured yet".into(),
    };
    let left = match (b.remaining, spec.floor) {
        (Some(left), Some(floor)) => format!(
            "{} (floor {})",
            budget::percent(left),
            budget::percent(floor)
        ),
        (Some(left), None) => budget::percent(left),
        (None, _) => "no data".into(),
    };
    let mut rows = vec![
        cells(&["objective", &objective]),
        cells(&["this rollout", &spent]),
        cells(&["left", &left]),
    ];
    let when = b
        .measured_at
        .as_ref()
        .map_or("-".into(), |t| age(&t.0, now));
    let mut measured = vec!["measured".to_owned(), when];
    measured.extend(b.message.as_deref().map(one_line));
    rows.push(measured);
    rows
}

/// What "the new version" of a workload is.
fn version(v: &WorkloadVersion) -> String {
    if let Some(image) = &v.image {
        match (&image.tag, &image.reference) {
            (Some(tag), _) => format!("image {}:{tag}", image.container),
            (None, Some(r)) => format!("image {}={r}", image.container),
            (None, None) => format!("image {}", image.container),
        }
    } else if let Some(labels) = &v.labels {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("labels {}", pairs.join(","))
    } else {
        "-".into()
    }
}

/// When an event last happened: its series' last observation, its own
/// time, or when it was stored.
fn event_time(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// `took 4s` between `from` and `to`, or nothing when either is unknown.
fn span(label: &str, from: Option<&Time>, to: Option<&Time>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!("{label} {}", human(b.0.duration_since(a.0))),
        _ => String::new(),
    }
}

/// Time since `t`.
fn age(t: &Timestamp, now: Timestamp) -> String {
    human(now.duration_since(*t))
}

/// `text` on one line (status messages may hold newlines).
pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Owned cells from string slices.
fn cells(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

/// Aligns `rows` into columns (every column but the last padded to its
/// widest cell), one line each with a trailing newline; trailing blanks are
/// trimmed.
fn columns(rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = vec![];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = widths[i] - cell.chars().count();
                    line.push_str(&" ".repeat(pad));
                    line.push_str(GAP);
                }
            }
            format!("{}\n", line.trim_end())
        })
        .collect()
}

/// `lines` as branches of a tree.
fn tree(lines: &[String]) -> String {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let branch = if i + 1 == lines.len() {
                "└─"
            } else {
                "├─"
            };
            format!("{branch} {l}")
        })
        .collect()
}

/// `lines` indented by two spaces.
fn indent(lines: &[String]) -> String {
    lines.iter().map(|l| format!("  {l}")).collect()
}

#[cfg(test)]
mod tests;
