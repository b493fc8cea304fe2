//! Scenario 8: a table of malformed SchemaRollouts, each field's worst case
//! (empty, huge, wrong type, too long, negative, unknown, both or neither of
//! two exclusive fields, missing referenced objects). Each is rejected at
//! admission by the CRD schema, or accepted and then `Stalled=True` with a
//! specific reason and a Warning event naming the field. None creates a Job
//! or panics the operator.
//!
//! The 1.20 API server drops CEL rules (`x-kubernetes-validations`), so the
//! rules only CEL states (one of two fields, unique names) reach the
//! controller, which must stall them itself.

use super::STEP;
use crate::harness::{Env, Ns, cond, psql_job, workload};
use bellows_testkit::prometheus::Prometheus;
use serde_json::{Value, json};
use std::sync::Arc;

/// What must become of a bad input.
enum Outcome {
    /// Refused by the API server (HTTP 422) with a message that mentions
    /// this text.
    Rejected(&'static str),
    /// Accepted, then `Stalled=True` with `reason`, and a Warning event of
    /// that reason; the condition message and the event note mention
    /// `mentions`.
    Stalled {
        reason: &'static str,
        mentions: String,
    },
}

/// One row of the table.
struct Case {
    /// Name of the SchemaRollout.
    name: &'static str,
    /// What is wrong with it, for the printed table.
    wrong: &'static str,
    spec: Value,
    outcome: Outcome,
}

/// A valid spec: Deployment `api` (container `app`) gated on tag `2`, with
/// `SELECT 1` Jobs for expand and contract.
fn good() -> Value {
    json!({
        "workloads": [workload("api", "2")],
        "expand": {"job": psql_job("SELECT 1")},
        "contract": {"job": psql_job("SELECT 1")},
    })
}

/// The namespace's own database, through its Secret `db`.
fn database() -> Value {
    json!({"engine": "postgres", "secretRef": {"name": "db", "key": "url"}})
}

/// [`good`] with each `(JSON pointer, value)` of `edits` set, creating
/// missing objects along the pointer.
fn bad(edits: &[(&str, Value)]) -> Value {
    let mut spec = good();
    for (pointer, value) in edits {
        let mut at = &mut spec;
        for key in pointer.split('/').skip(1) {
            at = match at {
                Value::Array(items) => &mut items[key.parse::<usize>().expect("array index")],
                _ => at
                    .as_object_mut()
                    .unwrap_or_else(|| panic!("{pointer}: {key} is inside a non-object"))
                    .entry(key)
                    .or_insert_with(|| json!({})),
            };
        }
        *at = value.clone();
    }
    spec
}

/// Refused at admission, the message mentioning `mentions`.
fn rejected(mentions: &'static str) -> Outcome {
    Outcome::Rejected(mentions)
}

/// Stalled with `reason`, condition and event mentioning `mentions`.
fn stalled(reason: &'static str, mentions: impl Into<String>) -> Outcome {
    Outcome::Stalled {
        reason,
        mentions: mentions.into(),
    }
}

/// 300 kB of SQL: far more than any real statement, well under etcd's limit.
fn huge_sql() -> String {
    format!("SELECT 1 {}", "-- padding\n".repeat(300 * 1024 / 11))
}

/// `n` characters.
fn long(n: usize) -> String {
    "a".repeat(n)
}

/// The table; `prometheus` is a Prometheus that answers.
fn cases(prometheus: &str) -> Vec<Case> {
    let case = |name, wrong, spec, outcome| Case {
        name,
        wrong,
        spec,
        outcome,
    };
    let mut misspelled = good();
    let expand = misspelled["expand"].take();
    misspelled.as_object_mut().unwrap().remove("expand");
    misspelled["expnad"] = expand;
    let mut no_phase = good();
    no_phase["contract"] = json!({});
    let empty_labels: Vec<Value> = (0..32)
        .map(|i| json!({"name": format!("w{i}"), "version": {"labels": {}}}))
        .collect();
    let mut missing_secret = psql_job("SELECT 1");
    missing_secret["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] =
        json!("no-such-secret");
    let mut missing_config = psql_job("SELECT 1");
    missing_config["template"]["spec"]["containers"][0]["envFrom"] =
        json!([{"configMapRef": {"name": "no-such-config"}}]);
    let sidecar = json!({"container": "sidecar", "tag": "2"});
    let check = |name: &str, sql: &str| json!({"checks": [{"name": name, "sql": sql}]});
    // An objective edited by `extra`, measured by the Prometheus at `address`.
    let objective = |address: &str, extra: Value| {
        let mut o = json!({"name": "errors", "query": "vector(0)", "max": 0.01, "interval": "1s"});
        for (k, v) in extra.as_object().unwrap() {
            match v {
                Value::Null => drop(o.as_object_mut().unwrap().remove(k)),
                v => o[k] = v.clone(),
            }
        }
        bad(&[
            ("/prometheus", json!({"address": address, "timeout": "2s"})),
            ("/contract/after", json!({"objectives": [o]})),
        ])
    };
    vec![
        // Admission: the OpenAPI schema of the CRD.
        case(
            "no-workloads",
            "workloads: []",
            bad(&[("/workloads", json!([]))]),
            rejected("spec.workloads"),
        ),
        case(
            "1000-workloads",
            "1000 workloads (at most 32)",
            bad(&[(
                "/workloads",
                (0..1000).map(|i| workload(&format!("w{i}"), "2")).collect(),
            )]),
            rejected("spec.workloads"),
        ),
        case(
            "empty-workload-name",
            "workload name \"\"",
            bad(&[("/workloads/0/name", json!(""))]),
            rejected("spec.workloads.name"),
        ),
        case(
            "long-workload-name",
            "workload name of 254 characters",
            bad(&[("/workloads/0/name", json!(long(254)))]),
            rejected("spec.workloads.name"),
        ),
        case(
            "replicaset",
            "kind: ReplicaSet",
            bad(&[("/workloads/0/kind", json!("ReplicaSet"))]),
            rejected("spec.workloads.kind"),
        ),
        case(
            "image-as-string",
            "version.image: \"api:2\"",
            bad(&[("/workloads/0/version/image", json!("api:2"))]),
            rejected("spec.workloads.version.image"),
        ),
        case(
            "empty-container",
            "container \"\"",
            bad(&[("/workloads/0/version/image/container", json!(""))]),
            rejected("spec.workloads.version.image.container"),
        ),
        case(
            "long-container",
            "container name of 64 characters",
            bad(&[("/workloads/0/version/image/container", json!(long(64)))]),
            rejected("spec.workloads.version.image.container"),
        ),
        case(
            "paused-yes",
            "paused: \"yes\"",
            bad(&[("/paused", json!("yes"))]),
            rejected("spec.paused"),
        ),
        case(
            "no-containers",
            "expand Job with containers: []",
            bad(&[("/expand/job/template/spec/containers", json!([]))]),
            rejected("spec.expand.job.template.spec.containers"),
        ),
        case(
            "empty-sql-list",
            "expand.sql: []",
            bad(&[("/expand", json!({"sql": []})), ("/database", database())]),
            rejected("spec.expand.sql"),
        ),
        case(
            "201-statements",
            "201 expand statements (at most 200)",
            bad(&[
                ("/expand", json!({"sql": vec!["SELECT 1"; 201]})),
                ("/database", database()),
            ]),
            rejected("spec.expand.sql"),
        ),
        case(
            "misspelled-expand",
            "expnad: instead of expand: (pruned, so expand is missing)",
            misspelled,
            rejected("spec.expand"),
        ),
        case(
            "negative-timeout",
            "timeouts.expand: -5m",
            bad(&[("/timeouts/expand", json!("-5m"))]),
            rejected("spec.timeouts.expand"),
        ),
        case(
            "words-duration",
            "bakeTime: \"5 minutes\"",
            bad(&[("/contract/after/bakeTime", json!("5 minutes"))]),
            rejected("spec.contract.after.bakeTime"),
        ),
        case(
            "bad-approval",
            "approval: Sometimes",
            bad(&[("/contract/after/approval", json!("Sometimes"))]),
            rejected("spec.contract.after.approval"),
        ),
        case(
            "long-check-name",
            "check name of 64 characters",
            bad(&[
                ("/contract/after", check(&long(64), "SELECT true")),
                ("/database", database()),
            ]),
            rejected("spec.contract.after.checks.name"),
        ),
        case(
            "empty-check",
            "check sql \"\"",
            bad(&[
                ("/contract/after", check("c", "")),
                ("/database", database()),
            ]),
            rejected("spec.contract.after.checks.sql"),
        ),
        case(
            "oracle",
            "engine: oracle",
            bad(&[
                ("/database", database()),
                ("/database/engine", json!("oracle")),
            ]),
            rejected("spec.database.engine"),
        ),
        case(
            "bad-ssl-mode",
            "sslMode: tls",
            bad(&[
                ("/database", database()),
                ("/database/sslMode", json!("tls")),
            ]),
            rejected("spec.database.sslMode"),
        ),
        case(
            "port-as-string",
            "port: \"5432\"",
            bad(&[("/database", database()), ("/database/port", json!("5432"))]),
            rejected("spec.database.port"),
        ),
        case(
            "port-70000",
            "port: 70000",
            bad(&[("/database", database()), ("/database/port", json!(70000))]),
            rejected("spec.database.port"),
        ),
        case(
            "long-secret-name",
            "secretRef.name of 254 characters",
            bad(&[
                ("/database", database()),
                ("/database/secretRef/name", json!(long(254))),
            ]),
            rejected("spec.database.secretRef.name"),
        ),
        // The controller: what the schema cannot say, or says only in CEL.
        case(
            "unknown-deployment",
            "workload in no Deployment",
            bad(&[("/workloads/0/name", json!("nope"))]),
            stalled("WorkloadNotFound", "Deployment nope not found"),
        ),
        case(
            "unknown-statefulset",
            "kind: StatefulSet, no such StatefulSet",
            bad(&[("/workloads/0/kind", json!("StatefulSet"))]),
            stalled("WorkloadNotFound", "StatefulSet api not found"),
        ),
        case(
            "rollout-without-crd",
            "kind: Rollout, Argo Rollouts not installed",
            bad(&[("/workloads/0/kind", json!("Rollout"))]),
            stalled(
                "WorkloadKindNotServed",
                "this cluster does not serve argoproj.io/v1alpha1 Rollouts",
            ),
        ),
        case(
            "gate-on-daemonset",
            "gate.pauseWorkloads on a DaemonSet",
            bad(&[
                ("/workloads/0/kind", json!("DaemonSet")),
                ("/gate", json!({"pauseWorkloads": true})),
            ]),
            stalled(
                "InvalidSpec",
                "spec.gate.pauseWorkloads cannot hold spec.workloads[0], a DaemonSet",
            ),
        ),
        case(
            "pods-without-selector",
            "kind: Pods without a selector",
            bad(&[("/workloads/0/kind", json!("Pods"))]),
            stalled(
                "InvalidSpec",
                "spec.workloads[0].selector is required for kind Pods",
            ),
        ),
        case(
            "long-unknown-deployment",
            "workload name of 253 characters, no such Deployment",
            bad(&[("/workloads/0/name", json!(long(253)))]),
            stalled("WorkloadNotFound", long(253)),
        ),
        case(
            "unknown-container",
            "container missing from the Deployment",
            bad(&[("/workloads/0/version/image", sidecar)]),
            stalled("ContainerNotFound", "sidecar"),
        ),
        case(
            "missing-secret",
            "expand Job reads a missing Secret",
            bad(&[("/expand/job", missing_secret)]),
            stalled("SecretNotFound", "no-such-secret"),
        ),
        case(
            "missing-configmap",
            "expand Job reads a missing ConfigMap",
            bad(&[("/expand/job", missing_config)]),
            stalled("ConfigMapNotFound", "no-such-config"),
        ),
        case(
            "missing-db-secret",
            "database.secretRef names a missing Secret",
            bad(&[
                ("/database", database()),
                ("/database/secretRef/name", json!("no-such-db")),
            ]),
            stalled("DatabaseConfigInvalid", "Secret no-such-db not found"),
        ),
        case(
            "engine-url-mismatch",
            "engine postgres, the Secret holds a mysql:// URL",
            bad(&[
                (
                    "/expand",
                    json!({"sql": ["CREATE TABLE t_mismatch (x int)"]}),
                ),
                ("/database", database()),
                ("/database/secretRef/name", json!("mysql-url")),
            ]),
            stalled(
                "DatabaseConfigInvalid",
                "spec.database.engine is postgres but Secret mysql-url/url holds a mysql:// URL",
            ),
        ),
        case(
            "image-and-labels",
            "version with both image and labels (CEL only)",
            bad(&[("/workloads/0/version/labels", json!({"v": "2"}))]),
            stalled(
                "InvalidSpec",
                "spec.workloads[0].version needs exactly one of image or labels",
            ),
        ),
        case(
            "tag-and-ref",
            "image with both tag and ref (CEL only)",
            bad(&[("/workloads/0/version/image/ref", json!("shop/api:2"))]),
            stalled(
                "InvalidSpec",
                "spec.workloads[0].version.image needs exactly one non-empty tag or ref",
            ),
        ),
        case(
            "duplicate-workloads",
            "the same workload twice (CEL only)",
            bad(&[(
                "/workloads",
                json!([workload("api", "2"), workload("api", "3")]),
            )]),
            stalled(
                "InvalidSpec",
                "spec.workloads[1]: Deployment \"api\" is listed twice",
            ),
        ),
        case(
            "32-empty-labels",
            "32 workloads with labels: {} (message over the 1 kB Event note limit)",
            bad(&[("/workloads", Value::Array(empty_labels))]),
            stalled(
                "InvalidSpec",
                "spec.workloads[0].version.labels must not be empty",
            ),
        ),
        case(
            "job-and-sql",
            "expand with both job and sql (CEL only)",
            bad(&[
                ("/expand/sql", json!(["SELECT 1"])),
                ("/database", database()),
            ]),
            stalled("InvalidSpec", "spec.expand needs exactly one of job or sql"),
        ),
        case(
            "neither-job-nor-sql",
            "contract: {} (CEL only)",
            no_phase,
            stalled(
                "InvalidSpec",
                "spec.contract needs exactly one of job or sql",
            ),
        ),
        case(
            "secret-and-host",
            "database with both secretRef and host (CEL only)",
            bad(&[("/database", database()), ("/database/host", json!("db"))]),
            stalled(
                "InvalidSpec",
                "spec.database needs exactly one of secretRef or host",
            ),
        ),
        case(
            "no-secret-no-host",
            "database with neither secretRef nor host (CEL only)",
            bad(&[("/database", json!({"engine": "postgres"}))]),
            stalled(
                "InvalidSpec",
                "spec.database needs exactly one of secretRef or host",
            ),
        ),
        case(
            "blank-statement",
            "expand.sql: [\"  \"] (the 1.20 server refuses \"\" as null)",
            bad(&[
                ("/expand", json!({"sql": ["  "]})),
                ("/database", database()),
            ]),
            stalled(
                "InvalidSpec",
                "spec.expand.sql must list non-empty statements",
            ),
        ),
        case(
            "huge-statement",
            "a 300 kB expand statement, no database",
            bad(&[("/expand", json!({"sql": [huge_sql()]}))]),
            stalled("InvalidSpec", "spec.expand.sql needs spec.database"),
        ),
        case(
            "huge-check",
            "a 300 kB contract check, no database",
            bad(&[("/contract/after", check("c", &huge_sql()))]),
            stalled(
                "InvalidSpec",
                "spec.contract.after.checks need spec.database",
            ),
        ),
        case(
            "duplicate-checks",
            "two checks named c",
            bad(&[
                (
                    "/contract/after/checks",
                    json!([{"name": "c", "sql": "SELECT true"}, {"name": "c", "sql": "SELECT true"}]),
                ),
                ("/database", database()),
            ]),
            stalled("InvalidSpec", "check name \"c\" is used twice"),
        ),
        case(
            "zero-timeout",
            "timeouts.expand: 0s",
            bad(&[("/timeouts/expand", json!("0s"))]),
            stalled("InvalidSpec", "spec.timeouts.expand must be at least 1s"),
        ),
        case(
            "zero-rollout-timeout",
            "timeouts.rollout: 0s",
            bad(&[("/timeouts/rollout", json!("0s"))]),
            stalled("InvalidSpec", "spec.timeouts.rollout must be at least 1s"),
        ),
        case(
            "overflowing-timeout",
            "timeouts.contract: 99999999999999999999999h",
            bad(&[("/timeouts/contract", json!("99999999999999999999999h"))]),
            stalled("InvalidSpec", "spec.timeouts.contract: duration"),
        ),
        case(
            "huge-timeout",
            "timeouts.expand: 3000000000000000h (over a year)",
            bad(&[("/timeouts/expand", json!("3000000000000000h"))]),
            stalled(
                "InvalidSpec",
                "spec.timeouts.expand: duration \"3000000000000000h\" is too large",
            ),
        ),
        case(
            "lock-timeout-zero",
            "lockTimeout: 0s (PostgreSQL would read it as no limit)",
            bad(&[
                ("/database", database()),
                ("/database/lockTimeout", json!("0s")),
            ]),
            stalled(
                "InvalidSpec",
                "spec.database.lockTimeout must be at least 1ms",
            ),
        ),
        case(
            "lock-timeout-tiny",
            "lockTimeout: 500us",
            bad(&[
                ("/database", database()),
                ("/database/lockTimeout", json!("500us")),
            ]),
            stalled(
                "InvalidSpec",
                "spec.database.lockTimeout must be at least 1ms",
            ),
        ),
        case(
            "statement-timeout-huge",
            "statementTimeout: 100000h",
            bad(&[
                ("/database", database()),
                ("/database/statementTimeout", json!("100000h")),
            ]),
            stalled(
                "InvalidSpec",
                "spec.database.statementTimeout: duration \"100000h\" is too large",
            ),
        ),
        case(
            "bake-time-huge",
            "bakeTime: 99999999999h",
            bad(&[("/contract/after", json!({"bakeTime": "99999999999h"}))]),
            stalled(
                "InvalidSpec",
                "spec.contract.after.bakeTime: duration \"99999999999h\" is too large",
            ),
        ),
        case(
            "ca-without-verify",
            "caSecretRef with sslMode require (the CA would verify nothing)",
            bad(&[
                ("/database", database()),
                ("/database/sslMode", json!("require")),
                ("/database/caSecretRef", json!({"name": "db", "key": "url"})),
            ]),
            stalled(
                "InvalidSpec",
                "spec.database.caSecretRef needs sslMode verify-ca or verify-full",
            ),
        ),
        case(
            "job-refused",
            "expand container named Bad_Name (the API server refuses the Job)",
            bad(&[(
                "/expand/job/template/spec/containers/0/name",
                json!("Bad_Name"),
            )]),
            stalled("JobRejected", "spec.template.spec.containers[0].name"),
        ),
        case(
            "commit-in-expand",
            "expand.sql: [CREATE TABLE t_commit, COMMIT, SELECT 1/0]",
            bad(&[
                (
                    "/expand",
                    json!({"sql": ["CREATE TABLE t_commit (x int)", "COMMIT", "SELECT 1/0"]}),
                ),
                ("/database", database()),
            ]),
            stalled(
                "InvalidSpec",
                "spec.expand.sql[1] (COMMIT): COMMIT is transaction control",
            ),
        ),
        case(
            "begin-in-check",
            "a check \"BEGIN\"",
            bad(&[
                ("/contract/after", check("c", "BEGIN")),
                ("/database", database()),
            ]),
            stalled(
                "InvalidSpec",
                "spec.contract.after.checks[0].sql: BEGIN is transaction control",
            ),
        ),
        case(
            "unsafe-expand",
            "expand drops a column old pods read",
            bad(&[
                (
                    "/expand",
                    json!({"sql": ["ALTER TABLE users DROP COLUMN full_name"]}),
                ),
                ("/database", database()),
            ]),
            stalled("UnsafeExpand", "spec.expand.sql[0]"),
        ),
        case(
            "unreadable-item",
            "expand.sql: an E-string the tokenizer cannot read hiding a ROLLBACK",
            bad(&[
                (
                    "/expand",
                    json!({"sql": [
                        "CREATE TABLE t_unreadable (x int)",
                        "UPDATE pn SET n = E'caf\\xC3\\xA9' WHERE id = 1; ROLLBACK",
                    ]}),
                ),
                ("/database", database()),
            ]),
            stalled("SqlUnreadable", "spec.expand.sql[1]"),
        ),
        case(
            "lifts-timeout",
            "expand.sql: SET LOCAL statement_timeout = 0",
            bad(&[
                (
                    "/expand",
                    json!({"sql": ["CREATE TABLE t_timeout (x int)", "SET LOCAL statement_timeout = 0"]}),
                ),
                ("/database", database()),
            ]),
            stalled(
                "InvalidSpec",
                "spec.expand.sql[1] (SET LOCAL statement_timeout = 0): it changes statement_timeout",
            ),
        ),
        case(
            "unsafe-expand-cascade",
            "expand: DROP SCHEMA legacy CASCADE",
            bad(&[
                (
                    "/expand",
                    json!({"sql": ["CREATE TABLE t_cascade (x int)", "DROP SCHEMA legacy CASCADE"]}),
                ),
                ("/database", database()),
            ]),
            stalled("UnsafeExpand", "drop-cascade"),
        ),
        case(
            "unsafe-expand-set-schema",
            "expand: ALTER TABLE users SET SCHEMA archive (the parser cannot read it)",
            bad(&[
                (
                    "/expand",
                    json!({"sql": ["CREATE TABLE t_set_schema (x int)", "ALTER TABLE users SET SCHEMA archive"]}),
                ),
                ("/database", database()),
            ]),
            stalled("UnsafeExpand", "move-table"),
        ),
        case(
            "objective-no-prometheus",
            "objectives without spec.prometheus",
            bad(&[(
                "/contract/after",
                json!({"objectives": [{"name": "errors", "query": "vector(0)", "max": 0.01}]}),
            )]),
            stalled(
                "InvalidSpec",
                "spec.contract.after.objectives need spec.prometheus",
            ),
        ),
        case(
            "objective-no-bound",
            "an objective with neither max nor min",
            objective(prometheus, json!({"max": null})),
            stalled(
                "InvalidSpec",
                "spec.contract.after.objectives[0] needs max, min or both",
            ),
        ),
        case(
            "objective-interval-0s",
            "objective interval: 0s",
            objective(prometheus, json!({"interval": "0s"})),
            stalled(
                "InvalidSpec",
                "spec.contract.after.objectives[0].interval must be at least 1s",
            ),
        ),
        case(
            "objective-placeholder",
            "objective query naming {{pod}}",
            objective(prometheus, json!({"query": "up{pod=\"{{pod}}\"}"})),
            stalled("InvalidSpec", "unknown placeholder {{pod}}"),
        ),
        case(
            "objective-malformed",
            "objective query sum(up (Prometheus cannot parse it)",
            objective(prometheus, json!({"query": "sum(up"})),
            stalled(
                "ObjectiveQueryRejected",
                "1:7: parse error: unclosed left parenthesis",
            ),
        ),
        case(
            "prometheus-unreachable",
            "prometheus.address: nothing listens there",
            objective("http://127.0.0.1:1", json!({})),
            stalled(
                "PrometheusUnreachable",
                "Prometheus at http://127.0.0.1:1 unreachable",
            ),
        ),
        case(
            "prometheus-ca-missing",
            "prometheus.caSecretRef: no such Secret",
            bad(&[
                (
                    "/prometheus",
                    json!({"address": "https://127.0.0.1:1", "caSecretRef": {"name": "no-such-ca", "key": "ca.crt"}}),
                ),
                (
                    "/contract/after",
                    json!({"objectives": [{"name": "errors", "query": "vector(0)", "max": 0.01}]}),
                ),
            ]),
            stalled(
                "PrometheusUnreachable",
                "Prometheus CA: Secret no-such-ca not found",
            ),
        ),
        case(
            "unknown-allowance",
            "expand.allow: [no-such-rule]",
            bad(&[
                (
                    "/expand",
                    json!({"sql": ["SELECT 1"], "allow": ["no-such-rule"]}),
                ),
                ("/database", database()),
            ]),
            stalled(
                "InvalidSpec",
                "spec.expand.allow: \"no-such-rule\" is no lint rule",
            ),
        ),
        case(
            "parallel-job",
            "expand Job completions: 3, parallelism: 3",
            bad(&[
                ("/expand/job/completions", json!(3)),
                ("/expand/job/parallelism", json!(3)),
            ]),
            stalled("InvalidSpec", "spec.expand.job.completions must be 1"),
        ),
        case(
            "suspended-job",
            "expand Job suspend: true",
            bad(&[("/expand/job/suspend", json!(true))]),
            stalled("InvalidSpec", "spec.expand.job.suspend must not be true"),
        ),
        case(
            "ignored-failures",
            "contract Job podFailurePolicy with an Ignore rule",
            bad(&[(
                "/contract/job/podFailurePolicy",
                json!({"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}}]}),
            )]),
            stalled(
                "InvalidSpec",
                "spec.contract.job.podFailurePolicy must not Ignore",
            ),
        ),
        case(
            "retries",
            "expand Job backoffLimit: 3",
            bad(&[("/expand/job/backoffLimit", json!(3))]),
            stalled("InvalidSpec", "spec.expand.job.backoffLimit must be 0"),
        ),
        case(
            "restart-on-failure",
            "contract pod restartPolicy: OnFailure",
            bad(&[(
                "/contract/job/template/spec/restartPolicy",
                json!("OnFailure"),
            )]),
            stalled(
                "InvalidSpec",
                "spec.contract.job.template.spec.restartPolicy must be Never",
            ),
        ),
    ]
}

/// At most `n` characters of `text` on one line, for the printed table.
fn short(text: &str, n: usize) -> String {
    let line = text.replace('\n', " ");
    match line.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// Asserts that `case` was refused at admission as it must be.
fn check_rejected(case: &Case, created: &Result<(), kube::Error>, mentions: &str) -> String {
    let name = case.name;
    match created {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{name}: {e:?}");
            assert!(
                e.message.contains(mentions),
                "{name}: {:?} should mention {mentions:?}",
                e.message
            );
            let why = e
                .message
                .split_once(" is invalid: ")
                .map_or(&*e.message, |w| w.1);
            format!("rejected: {}", short(why, 110))
        }
        other => panic!("{name}: expected an admission error, got {other:?}"),
    }
}

/// Waits until `case` stalls with `reason` and a Warning event, both
/// mentioning `mentions`.
async fn check_stalled(ns: &Ns, case: &Case, reason: &str, mentions: &str) -> String {
    let name = case.name;
    let r = ns
        .wait_condition(name, cond::STALLED, "True", Some(reason), STEP)
        .await;
    let stalled = r.status.as_ref().unwrap().condition(cond::STALLED).unwrap();
    assert!(
        stalled.message.contains(mentions),
        "{name}: {:?} should mention {mentions:?}",
        stalled.message
    );
    let note = ns.wait_event(name, "Warning", reason, STEP).await;
    assert!(note.contains(mentions), "{name}: event {note:?}");
    format!("Stalled {reason}: {}", short(&stalled.message, 100))
}

pub async fn run(env: Arc<Env>) {
    let restarts = env.operator.lock().await.restarts;
    let ns = env.namespace("bad-input").await;
    ns.deploy_api(1).await;
    ns.create_secret("mysql-url", "url", "mysql://app@127.0.0.1:3306/shop")
        .await;

    // A Prometheus that answers, for the query it cannot parse.
    let prometheus = Prometheus::start(&env.dir.join("prometheus-bad-input"), &[]);
    prometheus.ready().await;

    // Create every case first, so the operator works on all of them at once.
    let cases = cases(&prometheus.address());
    // The count e2e/README.md gives is this table's.
    let readme = std::fs::read_to_string(crate::harness::repo_path("e2e/README.md")).unwrap();
    let said = format!("| 8 | bad-input table, {} malformed rollouts,", cases.len());
    assert!(
        readme.contains(&said),
        "e2e/README.md must say {said:?} (scenario 8's table has {} cases)",
        cases.len()
    );
    let mut created = Vec::with_capacity(cases.len());
    for case in &cases {
        created.push(ns.create_raw(case.name, case.spec.clone()).await);
    }
    let (mut rejected, mut stalled) = (0, 0);
    println!("case | wrong | outcome");
    for (case, created) in cases.iter().zip(&created) {
        let outcome = match &case.outcome {
            Outcome::Rejected(mentions) => {
                rejected += 1;
                check_rejected(case, created, mentions)
            }
            Outcome::Stalled { reason, mentions } => {
                if let Err(e) = created {
                    panic!("{}: admission should accept it: {e}", case.name);
                }
                stalled += 1;
                check_stalled(&ns, case, reason, mentions).await
            }
        };
        println!("{} | {} | {outcome}", case.name, case.wrong);
    }

    let jobs = ns.jobs().await;
    let mut operator = env.operator.lock().await;
    println!(
        "{} bad inputs: {rejected} rejected at admission, {stalled} stalled, {} Jobs",
        cases.len(),
        jobs.len()
    );
    assert!(jobs.is_empty(), "bad input must never create a Job");
    // Nor run a statement: the first statement of the inline cases never ran.
    for table in [
        "t_commit",
        "t_unreadable",
        "t_timeout",
        "t_mismatch",
        "t_cascade",
    ] {
        let absent = ns.sql(&format!("SELECT to_regclass('{table}') IS NULL"));
        assert_eq!(absent, "t", "{table} was created");
    }
    assert!(operator.running(), "the operator exited");
    assert_eq!(
        operator.restarts, restarts,
        "the operator exited and was restarted"
    );
    let logs = operator.logs();
    assert!(!logs.contains("panicked"), "the operator panicked:\n{logs}");
}
