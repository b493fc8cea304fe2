//! Scenario 29: a watch that must list again finds what vanished in the
//! gap. An operator (a second release of the chart watching one
//! namespace, without leader election) talks to kube-apiserver through a
//! TCP proxy. Its rollout waits for the one old pod, held Terminating by a
//! finalizer, with the Deployment's status settled. The proxy is held;
//! meanwhile the pod goes and kube-apiserver restarts; then every held
//! connection is cut with what it held, so no watch event says the pod
//! went, and every watch's resource version has expired (410 Gone): each
//! lists again, and the list no longer holds the pod. Contract starts all
//! the same: a relist wakes every rollout (before, the rollout waited for
//! its hourly requeue).

use super::STEP;
use crate::harness::identity::Identity;
use crate::harness::operator::Operator;
use crate::harness::proxy::Proxy;
use crate::harness::wait::until;
use crate::harness::{Env, select_one_spec, workload};
use bellows::api::RolloutPhase::*;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOLD: &str = "e2e.bellows.dev/hold";

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("relist").await;
    ns.deploy_api(1).await;
    let pods: Api<Pod> = ns.api();
    let old = ns.pods().await[0].name_any();
    let finalizers = |list: serde_json::Value| json!({"metadata": {"finalizers": list}});
    pods.patch(
        &old,
        &PatchParams::default(),
        &Patch::Merge(finalizers(json!([HOLD]))),
    )
    .await
    .unwrap();

    let watched = format!("watchNamespaces={{{}}}", ns.name);
    let identity = Identity::install_release(
        &env.client,
        &env.kubeconfig,
        &env.dir,
        "bellows-relist",
        &[
            "--set",
            &watched,
            "--set",
            "leaderElection.enabled=false,replicaCount=1",
        ],
    )
    .await;
    let proxied = env.dir.join("kubeconfig-bellows-relist-proxied");
    let proxy = Proxy::start(&identity.kubeconfig, &proxied).await;
    let identity = Identity {
        kubeconfig: proxied,
        ..identity
    };
    let mut shared = env.operator.lock().await;
    shared.stop(libc::SIGTERM);
    let mut op = Operator::named(&identity, &env.dir, "op-behind-proxy", &[]);
    op.start().await;

    ns.create_rollout(
        "r",
        select_one_spec(json!([workload("api", "2.0.0")]), None),
    )
    .await
    .unwrap();
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_rollout("r", "waiting for the Terminating old pod", STEP, |r| {
        r.status
            .as_ref()
            .and_then(|s| s.message.as_deref())
            .is_some_and(|m| m.contains("terminating"))
    })
    .await;

    until("the Deployment's status settled", STEP, || async {
        let d = ns.deployment("api").await;
        let (spec, status) = (d.spec?, d.status?);
        let want = spec.replicas;
        let settled = status.observed_generation == d.metadata.generation
            && status.replicas == want
            && status.updated_replicas == want
            && status.available_replicas == want;
        settled.then_some(())
    })
    .await;
    proxy.hold();
    pods.patch(
        &old,
        &PatchParams::default(),
        &Patch::Merge(finalizers(json!(null))),
    )
    .await
    .unwrap();
    until("the old pod gone", STEP, || async {
        pods.get_opt(&old).await.ok()?.is_none().then_some(())
    })
    .await;
    env.cluster.restart_apiserver(Duration::from_secs(1)).await;
    proxy.cut();
    let released = Instant::now();
    ns.wait_phase("r", Succeeded, STEP).await;
    println!(
        "e2e:   contract done {:.1}s after the proxy cut its connections",
        released.elapsed().as_secs_f64()
    );
    let relisted = op.logs().contains("a watch listed again");
    assert!(
        relisted,
        "no watch listed again: the scenario tested nothing"
    );
    op.stop(libc::SIGTERM);
    shared.start().await;
}
