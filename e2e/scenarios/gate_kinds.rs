//! Scenario 25: the expand gate holds every kind it can. A Deployment, a
//! StatefulSet, a CronJob and an Argo Rollout are listed with
//! `gate.pauseWorkloads` and an expand that fails: each stays held and
//! marked (paused, partition at its largest, suspended, paused) and
//! `status.gated` names them. The expand is fixed: once it succeeded each
//! is released and unmarked.

use super::STEP;
use super::argo_rollout::{create_rollout, rollouts};
use super::workload_kinds::{cron_job, cron_jobs, stateful_set};
use crate::harness::wait::until;
use crate::harness::{Env, Ns, psql_job};
use bellows::api::RolloutPhase::*;
use bellows::api::keys::PAUSED_BY_ANNOTATION;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("gate-kinds").await;
    ns.deploy_api(1).await;
    stateful_set(&ns, 1).await;
    cron_job(&ns, false).await;
    create_rollout(&env, &ns).await;
    let version = |tag: &str| json!({"image": {"container": "app", "tag": tag}});
    ns.create_rollout(
        "held",
        json!({
            "workloads": [
                {"kind": "Deployment", "name": "api", "version": version("2.0.0")},
                {"kind": "StatefulSet", "name": "db", "version": version("2")},
                {"kind": "CronJob", "name": "report", "version": version("2")},
                {"kind": "Rollout", "name": "web", "version": version("2")},
            ],
            "gate": {"pauseWorkloads": true},
            "expand": {"job": psql_job("ALTER TABLE no_such_table ADD COLUMN x int")},
            "contract": {"job": psql_job("SELECT 1")},
        }),
    )
    .await
    .unwrap();
    let r = ns.wait_phase("held", Failed, STEP).await;
    assert_eq!(
        r.status.unwrap().gated,
        ["api", "StatefulSet/db", "CronJob/report", "Rollout/web"]
    );
    assert_eq!(
        holds(&ns).await,
        [(true, true); 4],
        "each kind held and marked after the failed expand"
    );

    // Fixed: expand runs for the new spec and the gate lets go.
    rollouts_of(&ns)
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"expand": {"job": psql_job("SELECT 1")}}})),
        )
        .await
        .unwrap();
    until("the gate released every kind", STEP, || async {
        (holds(&ns).await == [(false, false); 4]).then_some(())
    })
    .await;
    // Status says so once the reconcile that let go writes it.
    until("status lists nothing gated", STEP, || async {
        let r = ns.rollout("held").await;
        r.status?.gated.is_empty().then_some(())
    })
    .await;
}

fn to_json(object: impl serde::Serialize) -> Value {
    serde_json::to_value(object).unwrap()
}

fn rollouts_of(ns: &Ns) -> Api<bellows::api::SchemaRollout> {
    Api::namespaced(ns.client.clone(), &ns.name)
}

/// For the Deployment, StatefulSet, CronJob and Rollout: (held, marked by
/// rollout `held`).
async fn holds(ns: &Ns) -> [(bool, bool); 4] {
    let deployment = to_json(
        Api::<Deployment>::namespaced(ns.client.clone(), &ns.name)
            .get("api")
            .await
            .unwrap(),
    );
    let set = to_json(
        Api::<StatefulSet>::namespaced(ns.client.clone(), &ns.name)
            .get("db")
            .await
            .unwrap(),
    );
    let cron = to_json(cron_jobs(ns).get("report").await.unwrap());
    let rollout = to_json(rollouts(ns).get("web").await.unwrap());
    let marked = |o: &Value| o["metadata"]["annotations"][PAUSED_BY_ANNOTATION] == "held";
    [
        (deployment["spec"]["paused"] == true, marked(&deployment)),
        (
            set["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == i32::MAX,
            marked(&set),
        ),
        (cron["spec"]["suspend"] == true, marked(&cron)),
        (rollout["spec"]["paused"] == true, marked(&rollout)),
    ]
}
