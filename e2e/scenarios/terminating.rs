//! Scenario 2: contract waits for Terminating pods of the old version.

use super::{ContractGuard, STEP};
use crate::harness::kubelet::TERMINATE_AFTER_MS;
use crate::harness::{App, Env, select_one_spec, workload};
use bellows::api::RolloutPhase::*;
use jiff::Timestamp;
use kube::ResourceExt;
use serde_json::json;
use std::sync::Arc;

/// The operator's count of confirmation lists, by who answered.
const FRESH_LISTS: &str = "bellows_fresh_lists_total";

/// How long old pods stay Terminating.
const TERMINATE_MS: &str = "6000";

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("terminating").await;
    let app = App {
        replicas: 2,
        annotations: &[(TERMINATE_AFTER_MS, TERMINATE_MS)],
        ..App::default()
    };
    ns.deploy("api", "shop/api:1.0.0", app).await;
    ns.create_and_expand(
        "slow-stop",
        select_one_spec(json!([workload("api", "2.0.0")]), None),
    )
    .await;

    let log = ns.record_phases("slow-stop");
    let lists = || async { env.operator.lock().await.series(FRESH_LISTS).await };
    let lists_before = lists().await;
    let guard = ContractGuard::start(&ns, &[("api", "shop/api:2.0.0")]);
    let deployed = Timestamp::now();
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("slow-stop", Succeeded, STEP).await;
    guard.finish().await;
    let messages = log.messages();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("(1 terminating)") || m.contains("(2 terminating)")),
        "status should have said old pods were terminating: {messages:?}"
    );

    let new_hash = ns
        .pods()
        .await
        .iter()
        .find_map(|p| p.labels().get("pod-template-hash").cloned())
        .expect("new pods");
    let (last_old_gone, last_old_pod) = env
        .kubelet()
        .journal
        .removed
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.namespace == ns.name && r.template_hash.as_deref() != Some(new_hash.as_str()))
        .map(|r| (r.at, r.name.clone()))
        .max()
        .expect("old pods were removed");
    // The confirmation before contract listed the pods at least as fresh
    // as now: from the watch cache or, failing that, a quorum read.
    let lists_after = lists().await;
    let confirmed: Vec<String> = lists_after
        .iter()
        .map(|(labels, n)| (labels, n - lists_before.get(labels).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .map(|(labels, n)| format!("{labels}: {n}"))
        .collect();
    assert!(
        !confirmed.is_empty(),
        "no fresh list during the rollout ({FRESH_LISTS}: {lists_after:?})"
    );
    println!(
        "e2e:   confirmation lists by who answered: {}",
        confirmed.join(", ")
    );
    let contract = ns.jobs_of("contract").await;
    assert_eq!(contract.len(), 1);
    let created = contract[0].metadata.creation_timestamp.clone().unwrap().0;
    // creationTimestamp has whole seconds: compare at that resolution.
    assert!(
        created.as_second() >= last_old_gone.as_second(),
        "contract Job created at {created}, before the last old pod was gone at {last_old_gone}"
    );
    let waited = last_old_gone.duration_since(deployed);
    assert!(
        waited.as_secs_f64() >= 5.0,
        "old pods should have been Terminating for ~6s, were gone after {waited:?}"
    );
    println!(
        "e2e:   last old pod ({last_old_pod}) gone {:.1}s after the deploy; contract Job created at {created}",
        waited.as_secs_f64()
    );
}
