//! One module per scenario of the e2e suite.

pub mod approval;
pub mod argo_rollout;
pub mod bad_input;
pub mod chart;
pub mod examples;
pub mod expand_fails;
pub mod faults;
pub mod gate_kinds;
pub mod gitops;
pub mod happy_path;
pub mod inline_sql;
pub mod kills;
pub mod leader;
pub mod namespaces;
pub mod never_ready;
pub mod objectives;
pub mod plugin;
pub mod relist;
pub mod roll_forward;
pub mod rollback;
pub mod slo_traffic;
pub mod sql_analysis;
pub mod stall;
pub mod terminating;
pub mod traffic;
pub mod trust;
pub mod two_workloads;
pub mod workload_kinds;

use crate::harness::Ns;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Generous limit for one step of a scenario on a loaded 2-core machine.
pub const STEP: Duration = Duration::from_secs(90);

/// Watches for the one thing bellows must never do: a contract Job existing
/// while a pod of an old version exists (and has not stopped for good). Jobs are listed before pods, so a
/// hit means both existed at the moment the pods were listed.
pub struct ContractGuard {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<std::collections::BTreeSet<String>>,
}

impl ContractGuard {
    /// Guards the Deployments `new_images`: (deployment, image of the new
    /// version or a later one; a Deployment may be named with several).
    /// Any pod of such a Deployment running an image not named is old.
    pub fn start(ns: &Ns, new_images: &[(&str, &str)]) -> ContractGuard {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let client = ns.client.clone();
        let name = ns.name.clone();
        let wanted: Vec<(String, String)> = new_images
            .iter()
            .map(|(d, i)| (d.to_string(), i.to_string()))
            .collect();
        let task = tokio::spawn(async move {
            let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
                kube::Api::namespaced(client.clone(), &name);
            let pods: kube::Api<Pod> = kube::Api::namespaced(client, &name);
            let lp = kube::api::ListParams::default();
            let mut violations = std::collections::BTreeSet::new();
            while !flag.load(Ordering::Relaxed) {
                let contract = jobs.list(&lp).await.map(|l| {
                    l.items.iter().any(|j| {
                        j.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("bellows.dev/phase"))
                            .map(String::as_str)
                            == Some("contract")
                    })
                });
                if let (Ok(true), Ok(pods)) = (contract, pods.list(&lp).await) {
                    for p in pods.items {
                        let app = p
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("app"))
                            .cloned()
                            .unwrap_or_default();
                        let image = p
                            .spec
                            .as_ref()
                            .and_then(|s| s.containers.first())
                            .and_then(|c| c.image.clone())
                            .unwrap_or_default();
                        // A pod whose containers stopped (a finished
                        // Job's) runs no code.
                        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                        if matches!(phase, Some("Succeeded" | "Failed")) {
                            continue;
                        }
                        let guarded = wanted.iter().any(|(d, _)| *d == app);
                        let new = wanted.iter().any(|(d, i)| *d == app && *i == image);
                        if guarded && !new {
                            violations.insert(format!(
                                "contract Job exists while old pod {} ({image}, terminating: {}) exists",
                                p.metadata.name.unwrap_or_default(),
                                p.metadata.deletion_timestamp.is_some()
                            ));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            violations
        });
        ContractGuard { stop, task }
    }

    /// Stops guarding; the violations seen.
    pub async fn violations(self) -> std::collections::BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("guard task")
    }

    /// Stops guarding; panics on any violation seen.
    pub async fn finish(self) {
        let violations = self.violations().await;
        assert!(
            violations.is_empty(),
            "invariant I2 violated: {violations:#?}"
        );
    }
}

/// Whether `needle` items appear in `haystack` in this order (not
/// necessarily adjacent).
pub fn in_order<T: PartialEq>(haystack: &[T], needle: &[T]) -> bool {
    let mut it = haystack.iter();
    needle.iter().all(|n| it.any(|h| h == n))
}
