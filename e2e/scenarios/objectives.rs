//! Scenario 31: contract waits for the service level objective, measured
//! by a real Prometheus (Debian's binary) scraping an endpoint whose error
//! ratio for version 2.0.0 the scenario sets. At 5% (bound 1%) the rollout
//! is held `ObjectiveViolated` with a Warning event and no contract Job;
//! with Prometheus stopped it is held `ObjectiveInconclusive` (no data
//! never passes, however long); Prometheus back and the ratio at 0.1%, the
//! objective passes three times in a row and contract runs once. A query
//! Prometheus cannot parse stalls `ObjectiveQueryRejected` with
//! Prometheus's own error text before expand runs; one that selects no
//! series holds `ObjectiveInconclusive` with the query named.

use super::STEP;
use crate::harness::{Env, psql_job, workload};
use bellows::api::RolloutPhase::*;
use bellows_testkit::prometheus::{Endpoint, Prometheus};
use serde_json::{Value, json};
use std::sync::Arc;

fn ratio(v: f64) -> String {
    format!("# TYPE shop_error_ratio gauge\nshop_error_ratio{{version=\"2.0.0\"}} {v}\n")
}

fn spec(address: &str, query: &str) -> Value {
    json!({
        "workloads": [workload("api", "2.0.0")],
        "prometheus": {"address": address, "timeout": "2s"},
        "expand": {"job": psql_job("SELECT 1")},
        "contract": {
            "job": psql_job("SELECT 1"),
            "after": {"objectives": [{
                "name": "errors", "query": query, "max": 0.01, "interval": "1s", "successes": 3,
            }]},
        },
    })
}

pub async fn run(env: Arc<Env>) {
    let endpoint = Endpoint::serve(&ratio(0.05)).await;
    let mut prometheus = Prometheus::start(
        &env.dir.join("prometheus"),
        std::slice::from_ref(&endpoint.target),
    );
    prometheus.ready().await;
    let ns = env.namespace("objectives").await;
    ns.deploy_api(1).await;
    let query = "shop_error_ratio{version=\"{{version}}\"}";
    ns.create_rollout("r", spec(&prometheus.address(), query))
        .await
        .unwrap();
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    let r = ns.wait_held("r", "ObjectiveViolated", STEP).await;
    let message = r.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("objective errors: 0.05 is out of bounds (max 0.01)"),
        "{message}"
    );
    let note = ns.wait_event("r", "Warning", "ContractHeld", STEP).await;
    assert!(note.contains("ObjectiveViolated"), "{note}");

    prometheus.stop();
    let r = ns.wait_held("r", "ObjectiveInconclusive", STEP).await;
    let message = r.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("no data"), "{message}");
    assert!(
        ns.jobs_of("contract").await.is_empty(),
        "contracted without data"
    );

    endpoint.set(&ratio(0.001));
    prometheus.start_again();
    let done = ns.wait_phase("r", Succeeded, STEP).await;
    let objective = &done.status.unwrap().objectives;
    assert!(
        objective[0].passes >= 3 && objective[0].value == Some(0.001),
        "{objective:?}"
    );
    assert_eq!(ns.jobs_of("contract").await.len(), 1);

    // A query without series holds, the query named.
    let ns = env.namespace("objectives-none").await;
    ns.deploy_api(1).await;
    let absent = "shop_error_ratio{version=\"{{version}}\",zone=\"nowhere\"}";
    ns.create_rollout("r", spec(&prometheus.address(), absent))
        .await
        .unwrap();
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    let r = ns.wait_held("r", "ObjectiveInconclusive", STEP).await;
    let message = r.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("shop_error_ratio{version=\"2.0.0\",zone=\"nowhere\"} returned no series"),
        "{message}"
    );
    assert!(ns.jobs_of("contract").await.is_empty());

    // A query Prometheus cannot parse stops the rollout before expand.
    let ns = env.namespace("objectives-bad").await;
    ns.deploy_api(1).await;
    ns.create_rollout("r", spec(&prometheus.address(), "sum(shop_error_ratio"))
        .await
        .unwrap();
    let r = ns
        .wait_condition("r", "Stalled", "True", Some("ObjectiveQueryRejected"), STEP)
        .await;
    let message = crate::harness::condition_message(&r, "Stalled");
    assert!(message.contains("parse error"), "{message}");
    assert!(
        ns.jobs().await.is_empty(),
        "a Job ran before the query was fixed"
    );
    prometheus.stop();
}
