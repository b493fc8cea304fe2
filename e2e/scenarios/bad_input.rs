//! Scenario 8: bad input is rejected at admission or stalls with a specific
//! reason and a Warning event, and never creates a Job.

use super::STEP;
use crate::harness::{App, Env, Ns, cond, psql_job, workload};
use serde_json::{Value, json};
use std::sync::Arc;

fn spec(workloads: Value, expand: Value) -> Value {
    json!({"workloads": workloads, "expand": {"job": expand}, "contract": {"job": psql_job("SELECT 1")}})
}

async fn stalls_with(ns: &Ns, name: &str, spec: Value, reason: &str, mentions: &str) {
    ns.create_raw(name, spec)
        .await
        .unwrap_or_else(|e| panic!("{name}: admission should accept it: {e}"));
    let r = ns
        .wait_condition(name, cond::STALLED, "True", Some(reason), STEP)
        .await;
    let message = &r
        .status
        .as_ref()
        .unwrap()
        .condition(cond::STALLED)
        .unwrap()
        .message;
    assert!(
        message.contains(mentions),
        "{name}: {message:?} should mention {mentions:?}"
    );
    let note = ns.wait_event(name, "Warning", reason, STEP).await;
    assert!(note.contains(mentions), "{name}: event {note:?}");
}

async fn rejected(ns: &Ns, name: &str, spec: Value, mentions: &str) {
    match ns.create_raw(name, spec).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{name}: {e:?}");
            assert!(
                e.message.contains(mentions),
                "{name}: {:?} should mention {mentions:?}",
                e.message
            );
        }
        other => panic!("{name}: expected an admission error, got {other:?}"),
    }
}

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("bad-input").await;
    ns.deploy(
        "api",
        "shop/api:1.0.0",
        App {
            replicas: 1,
            ..App::default()
        },
    )
    .await;
    let ok_job = psql_job("SELECT 1");

    stalls_with(
        &ns,
        "unknown-deployment",
        spec(json!([workload("nope", "2")]), ok_job.clone()),
        "WorkloadNotFound",
        "nope",
    )
    .await;
    let sidecar =
        json!([{"name": "api", "version": {"image": {"container": "sidecar", "tag": "2"}}}]);
    stalls_with(
        &ns,
        "unknown-container",
        spec(sidecar, ok_job.clone()),
        "ContainerNotFound",
        "sidecar",
    )
    .await;
    let mut missing_secret = ok_job.clone();
    missing_secret["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] =
        json!("no-such-secret");
    stalls_with(
        &ns,
        "missing-secret",
        spec(json!([workload("api", "2")]), missing_secret),
        "SecretNotFound",
        "no-such-secret",
    )
    .await;
    // A 1.20 API server drops CEL rules, so the controller's own check answers.
    let both = json!([{"name": "api", "version": {"labels": {"v": "2"}, "image": {"container": "app", "tag": "2"}}}]);
    stalls_with(
        &ns,
        "two-versions",
        spec(both, ok_job.clone()),
        "InvalidSpec",
        "exactly one of image or labels",
    )
    .await;

    let no_containers = json!({"template": {"spec": {"containers": []}}});
    rejected(
        &ns,
        "no-containers",
        spec(json!([workload("api", "2")]), no_containers),
        "containers",
    )
    .await;
    let mut negative = spec(json!([workload("api", "2")]), ok_job.clone());
    negative["timeouts"] = json!({"expand": "-5m"});
    rejected(&ns, "negative-timeout", negative, "timeouts.expand").await;
    rejected(
        &ns,
        "no-workloads",
        spec(json!([]), ok_job.clone()),
        "workloads",
    )
    .await;
    let mut approval = spec(json!([workload("api", "2")]), ok_job);
    approval["contract"]["after"] = json!({"approval": "Sometimes"});
    rejected(&ns, "bad-approval", approval, "approval").await;

    assert!(
        ns.jobs().await.is_empty(),
        "bad input must never create a Job"
    );
}
