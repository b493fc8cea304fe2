//! Checks of a spec that the CRD schema cannot make on every cluster (CEL
//! rules are dropped by API servers older than 1.25), so the controller
//! enforces them itself before it runs anything.

use crate::api::{
    BudgetSpec, Engine, SchemaRolloutSpec, SslMode, Step, WorkloadKind, parse_duration,
};
use crate::planner::step::phase_spec;
use crate::sql::{self, rules};
use std::collections::BTreeSet;
use std::time::Duration;

/// Durations read from a valid spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durations {
    /// `contract.after.bakeTime`, zero when unset.
    pub bake_time: Duration,
    /// `timeouts.rollout`.
    pub rollout: Duration,
}

/// Default deadline of the expand and contract Jobs.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default deadline of the transition Job and of the rollout.
pub const DEFAULT_LONG_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

/// The deadline of `step`'s Job, from `timeouts` or the default.
pub fn step_timeout(spec: &SchemaRolloutSpec, step: Step) -> Duration {
    let t = spec.timeouts.clone().unwrap_or_default();
    let (value, default) = match step {
        Step::Expand => (t.expand, DEFAULT_JOB_TIMEOUT),
        Step::Transition => (t.transition, DEFAULT_LONG_TIMEOUT),
        Step::Contract => (t.contract, DEFAULT_JOB_TIMEOUT),
    };
    value
        .and_then(|v| parse_duration(&v).ok())
        .unwrap_or(default)
}

/// Validates `spec`; on success returns its durations, otherwise one
/// message per problem.
pub fn validate(spec: &SchemaRolloutSpec) -> Result<Durations, Vec<String>> {
    let mut problems = Vec::new();
    if spec.workloads.is_empty() {
        problems.push("spec.workloads must name at least one workload".to_owned());
    }
    let mut seen = BTreeSet::new();
    for (i, w) in spec.workloads.iter().enumerate() {
        let at = format!("spec.workloads[{i}]");
        if w.name.is_empty() {
            problems.push(format!("{at}.name must not be empty"));
        }
        if !seen.insert((w.kind, w.name.as_str())) {
            problems.push(format!("{at}: {} {:?} is listed twice", w.kind, w.name));
        }
        match (w.kind, &w.selector) {
            (WorkloadKind::Pods, None) => {
                problems.push(format!("{at}.selector is required for kind Pods"))
            }
            (WorkloadKind::Pods, Some(selector)) if !selects_some(selector) => problems.push(
                format!("{at}.selector selects every pod in the namespace: name labels to match"),
            ),
            (WorkloadKind::Pods, Some(_)) | (_, None) => {}
            (kind, Some(_)) => problems.push(format!(
                "{at}.selector is for kind Pods only; a {kind} is found by its name"
            )),
        }
        match (&w.version.image, &w.version.labels) {
            (Some(image), None) => {
                if image.container.is_empty() {
                    problems.push(format!("{at}.version.image.container must not be empty"));
                }
                match (&image.tag, &image.reference) {
                    (Some(v), None) | (None, Some(v)) if !v.is_empty() => {}
                    _ => problems.push(format!(
                        "{at}.version.image needs exactly one non-empty tag or ref"
                    )),
                }
            }
            (None, Some(labels)) if !labels.is_empty() => {}
            (None, Some(_)) => problems.push(format!("{at}.version.labels must not be empty")),
            _ => problems.push(format!("{at}.version needs exactly one of image or labels")),
        }
    }
    if spec.gate.as_ref().is_some_and(|g| g.pause_workloads) {
        for (i, w) in spec.workloads.iter().enumerate() {
            if !w.kind.holdable() {
                problems.push(format!(
                    "spec.gate.pauseWorkloads cannot hold spec.workloads[{i}], a {}: only Deployments, StatefulSets, CronJobs and Rollouts can be held",
                    w.kind
                ));
            }
        }
    }
    if let Some(db) = &spec.database
        && db.secret_ref.is_some() == db.host.is_some()
    {
        problems.push("spec.database needs exactly one of secretRef or host".to_owned());
    }
    if let Some(db) = &spec.database
        && db.ca_secret_ref.is_some()
        && !matches!(db.ssl_mode, Some(SslMode::VerifyCa | SslMode::VerifyFull))
    {
        problems.push(
            "spec.database.caSecretRef needs sslMode verify-ca or verify-full (a CA is only used to verify the server)".to_owned(),
        );
    }
    let has_database = spec.database.is_some();
    let engine = spec
        .database
        .as_ref()
        .map_or(Engine::Postgres, |d| d.engine);
    for step in [Step::Expand, Step::Transition, Step::Contract] {
        let Some(p) = phase_spec(spec, step) else {
            continue;
        };
        let at = format!("spec.{}", step.as_str());
        match (&p.job, &p.sql) {
            (Some(job), None) => {
                let containers = job.template.spec.as_ref().map_or(0, |s| s.containers.len());
                if containers == 0 {
                    problems.push(format!(
                        "{at}.job.template.spec.containers must list at least one container"
                    ));
                }
                // At most once (I3): no retries of a migration pod.
                if job.backoff_limit.is_some_and(|b| b != 0) {
                    problems.push(format!(
                        "{at}.job.backoffLimit must be 0: a migration runs at most once"
                    ));
                }
                if job
                    .template
                    .spec
                    .as_ref()
                    .and_then(|s| s.restart_policy.as_deref())
                    == Some("OnFailure")
                {
                    problems.push(format!(
                        "{at}.job.template.spec.restartPolicy must be Never: a migration runs at most once"
                    ));
                }
                runs_once(&mut problems, &at, job);
            }
            (None, Some(sql)) => {
                if sql.is_empty() || sql.iter().any(|s| s.trim().is_empty()) {
                    problems.push(format!("{at}.sql must list non-empty statements"));
                }
                if !has_database {
                    problems.push(format!("{at}.sql needs spec.database"));
                }
                inline_sql(&mut problems, engine, step, sql, &p.allow);
            }
            _ => problems.push(format!("{at} needs exactly one of job or sql")),
        }
    }
    let checks = spec.checks();
    if !checks.is_empty() && !has_database {
        problems.push("spec.contract.after.checks need spec.database".to_owned());
    }
    for (i, c) in checks.iter().enumerate() {
        let read = sql::tokenized(engine, std::slice::from_ref(&c.sql));
        if let Some(tc) = &read[0].transaction_control {
            problems.push(format!(
                "spec.contract.after.checks[{i}].sql: {tc} is transaction control; a check is one query"
            ));
        }
        if let Some(setting) = &read[0].owned_setting {
            problems.push(format!(
                "spec.contract.after.checks[{i}].sql: it changes {setting}, which bellows sets from spec.database; a check is one query"
            ));
        }
    }
    let mut names = BTreeSet::new();
    for c in checks {
        if !names.insert(c.name.as_str()) {
            problems.push(format!("check name {:?} is used twice", c.name));
        }
    }
    let after = spec.contract.after.clone().unwrap_or_default();
    let timeouts = spec.timeouts.clone().unwrap_or_default();
    let durations = Durations {
        bake_time: read_duration(
            &mut problems,
            "spec.contract.after.bakeTime",
            after.bake_time.as_ref(),
            Duration::ZERO,
            (Duration::ZERO, MAX_BAKE_TIME),
        ),
        rollout: read_duration(
            &mut problems,
            "spec.timeouts.rollout",
            timeouts.rollout.as_ref(),
            DEFAULT_LONG_TIMEOUT,
            (Duration::from_secs(1), MAX_JOB_TIMEOUT),
        ),
    };
    if let Some(db) = &spec.database {
        for (field, value) in [
            ("spec.database.lockTimeout", &db.lock_timeout),
            ("spec.database.statementTimeout", &db.statement_timeout),
        ] {
            read_duration(
                &mut problems,
                field,
                value.as_ref(),
                Duration::ZERO,
                (Duration::from_millis(1), MAX_SQL_TIMEOUT),
            );
        }
    }
    for (field, value) in [
        ("spec.timeouts.expand", &timeouts.expand),
        ("spec.timeouts.transition", &timeouts.transition),
        ("spec.timeouts.contract", &timeouts.contract),
    ] {
        read_duration(
            &mut problems,
            field,
            value.as_ref(),
            DEFAULT_JOB_TIMEOUT,
            (Duration::from_secs(1), MAX_JOB_TIMEOUT),
        );
    }
    objectives(&mut problems, spec);
    if problems.is_empty() {
        Ok(durations)
    } else {
        Err(problems)
    }
}

/// What the objectives and their Prometheus need that the schema cannot
/// say: a Prometheus to ask, bounds in order, intervals and a timeout in
/// range, placeholders that mean something.
fn objectives(problems: &mut Vec<String>, spec: &SchemaRolloutSpec) {
    let objectives = spec.objectives();
    if !objectives.is_empty() && spec.prometheus.is_none() {
        problems.push("spec.contract.after.objectives need spec.prometheus".into());
    }
    if let Some(p) = &spec.prometheus {
        read_duration(
            problems,
            "spec.prometheus.timeout",
            p.timeout.as_ref(),
            Duration::ZERO,
            (Duration::from_secs(1), Duration::from_secs(300)),
        );
    }
    for (i, o) in objectives.iter().enumerate() {
        let at = format!("spec.contract.after.objectives[{i}]");
        match (o.min, o.max) {
            (None, None) => problems.push(format!("{at} needs max, min or both")),
            (Some(min), Some(max)) if min > max => {
                problems.push(format!("{at}: min {min} is above max {max}"))
            }
            _ => {}
        }
        read_duration(
            problems,
            &format!("{at}.interval"),
            o.interval.as_ref(),
            Duration::ZERO,
            (Duration::from_secs(1), Duration::from_secs(86_400)),
        );
    }
    if let Err(e) = super::objective::targets_in(spec, "") {
        problems.push(format!("spec.contract.after.objectives: {e}"));
    }
    if let Some(b) = &spec.budget {
        budget(problems, spec, b);
    }
}

/// What the downtime budget needs that the schema cannot say.
fn budget(problems: &mut Vec<String>, spec: &SchemaRolloutSpec, b: &BudgetSpec) {
    if spec.prometheus.is_none() {
        problems.push("spec.budget needs spec.prometheus".into());
    }
    if !(b.objective > 0.0 && b.objective < 1.0) {
        problems.push(format!(
            "spec.budget.objective {} is not a share of requests between 0 and 1 (99.9% is 0.999)",
            b.objective
        ));
    }
    read_duration(
        problems,
        "spec.budget.period",
        b.period.as_ref(),
        Duration::ZERO,
        (Duration::from_secs(3600), Duration::from_secs(8760 * 3600)),
    );
    read_duration(
        problems,
        "spec.budget.interval",
        b.interval.as_ref(),
        Duration::ZERO,
        (Duration::from_secs(1), Duration::from_secs(86_400)),
    );
    if !b.error_ratio.contains("{{window}}") {
        problems.push(
            "spec.budget.errorRatio must name its range {{window}}, e.g. rate(errors[{{window}}])"
                .into(),
        );
    }
    if let Some(unknown) = super::objective::placeholders(&b.error_ratio)
        .into_iter()
        .find(|p| !["window", "namespace"].contains(&p.as_str()))
    {
        problems.push(format!(
            "spec.budget.errorRatio: unknown placeholder {{{{{unknown}}}}} (known: {{{{window}}}}, {{{{namespace}}}})"
        ));
    }
}

/// What else in a phase's JobSpec could run the migration more than once,
/// or never: more than one completion or pod at a time, a Job created
/// suspended (bellows creates it to run it), failures the pod failure
/// policy ignores (each ignored failure starts another pod), retries per
/// index, or another controller managing it.
fn runs_once(problems: &mut Vec<String>, at: &str, job: &k8s_openapi::api::batch::v1::JobSpec) {
    let once = "a migration runs at most once";
    if job.completions.is_some_and(|n| n != 1) {
        problems.push(format!("{at}.job.completions must be 1: {once}"));
    }
    if job.parallelism.is_some_and(|n| n != 1) {
        problems.push(format!("{at}.job.parallelism must be 1: {once}"));
    }
    if job.suspend == Some(true) {
        problems.push(format!(
            "{at}.job.suspend must not be true: bellows creates the Job when the phase may run, to run it (pause the rollout instead: spec.paused)"
        ));
    }
    if job.backoff_limit_per_index.is_some_and(|n| n != 0) {
        problems.push(format!("{at}.job.backoffLimitPerIndex must be 0: {once}"));
    }
    let ignored = job
        .pod_failure_policy
        .iter()
        .flat_map(|p| &p.rules)
        .any(|r| r.action == "Ignore");
    if ignored {
        problems.push(format!(
            "{at}.job.podFailurePolicy must not Ignore a failure: an ignored failure starts the migration's pod again"
        ));
    }
    if job
        .managed_by
        .as_deref()
        .is_some_and(|m| m != "kubernetes.io/job-controller")
    {
        problems.push(format!(
            "{at}.job.managedBy must be unset: bellows knows how the Job controller runs a Job, not another controller"
        ));
    }
}

/// Longest Job deadline and rollout timeout: a year, like the bake time,
/// so no deadline or timestamp computed from one can overflow.
pub const MAX_JOB_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Longest bake time: a year.
pub const MAX_BAKE_TIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Longest `lockTimeout` / `statementTimeout`: 24 days (PostgreSQL's
/// limit is 2^31 - 1 milliseconds).
pub const MAX_SQL_TIMEOUT: Duration = Duration::from_secs(24 * 24 * 60 * 60);

/// Reads the optional duration `field` (`default` when unset), recording a
/// problem when it is malformed or outside `(min, max)`. A timeout has a
/// positive minimum, since a zero deadline expires at once (or, for
/// PostgreSQL's `lock_timeout`, means no limit at all).
fn read_duration(
    problems: &mut Vec<String>,
    field: &str,
    value: Option<&String>,
    default: Duration,
    (min, max): (Duration, Duration),
) -> Duration {
    let Some(value) = value else {
        return default;
    };
    match parse_duration(value) {
        Err(e) => {
            problems.push(format!("{field}: {e}"));
            default
        }
        Ok(d) if d < min => {
            problems.push(format!("{field} must be at least {}", shown(min)));
            default
        }
        Ok(d) if d > max => {
            problems.push(format!(
                "{field}: duration {value:?} is too large (at most {})",
                shown(max)
            ));
            default
        }
        Ok(d) => d,
    }
}

/// A bound as the messages show it: whole seconds, or milliseconds below a
/// second.
/// Whether a label selector names anything to match (an empty one
/// selects every pod).
fn selects_some(selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_some_and(|l| !l.is_empty())
        || selector
            .match_expressions
            .as_ref()
            .is_some_and(|e| !e.is_empty())
}

fn shown(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Inline statements of `step`: transaction control is refused (bellows
/// runs each phase's statements itself, on PostgreSQL in one transaction a
/// COMMIT would end early), and every allowance must name a lint rule.
fn inline_sql(
    problems: &mut Vec<String>,
    engine: Engine,
    step: Step,
    statements: &[String],
    allow: &[String],
) {
    let at = format!("spec.{}", step.as_str());
    for (index, s) in sql::tokenized(engine, statements).iter().enumerate() {
        if let Some(tc) = &s.transaction_control {
            problems.push(format!(
                "{at}.sql[{index}] ({}): {tc} is transaction control, which inline SQL refuses: bellows runs a phase's statements itself (on PostgreSQL in one transaction, all or nothing) and {tc} would break that; remove it",
                sql::first_line(&statements[index])
            ));
        }
        if let Some(setting) = &s.owned_setting {
            problems.push(format!(
                "{at}.sql[{index}] ({}): it changes {setting}, which bellows sets for the phase from spec.database (statementTimeout, lockTimeout); change those fields instead",
                sql::first_line(&statements[index])
            ));
        }
        for id in s
            .allows
            .iter()
            .filter(|id| rules::by_id(id).is_none() && *id != sql::UNREADABLE)
        {
            problems.push(format!(
                "{at}.sql[{index}]: bellows:allow names {id:?}, which is no lint rule"
            ));
        }
    }
    for id in allow {
        if id == sql::UNREADABLE {
            problems.push(format!(
                "{at}.allow: {id:?} is given per statement only, in the comment lines it starts with (-- bellows:allow unreadable), so that each one is allowed knowingly"
            ));
        } else if rules::by_id(id).is_none() {
            problems.push(format!("{at}.allow: {id:?} is no lint rule"));
        }
    }
}

/// Inline items (phases and checks) the tokenizer cannot read and that are
/// not allowed to run anyway, each named with the position it stopped at:
/// they hold the rollout before anything runs, since bellows cannot tell
/// how such an item runs or whether it ends the phase's transaction.
pub fn unreadable(spec: &SchemaRolloutSpec) -> Vec<String> {
    let engine = spec
        .database
        .as_ref()
        .map_or(Engine::Postgres, |d| d.engine);
    let mut found = vec![];
    for step in [Step::Expand, Step::Transition, Step::Contract] {
        if let Some(statements) = phase_spec(spec, step).and_then(|p| p.sql.as_ref()) {
            found.extend(sql::unreadable(engine, step, statements));
        }
    }
    for (i, c) in spec.checks().iter().enumerate() {
        let read = sql::tokenized(engine, std::slice::from_ref(&c.sql));
        if let Some(why) = &read[0].unreadable {
            found.push(format!(
                "spec.contract.after.checks[{i}].sql ({}): {why}",
                sql::first_line(&c.sql)
            ));
        }
    }
    found
}
