//! Reads what the planner needs from the API server: the workloads (with
//! their ReplicaSets and pods, listed live rather than from counters) and the
//! Job of each phase under its deterministic name.

use super::Error;
use super::job;
use crate::api::{SchemaRollout, Step, StepState};
use crate::db::{DbError, LedgerKey, LedgerState, Pools, Target};
use crate::planner::rollout::assess;
use crate::planner::step::{self, JobObservation, Reference, observe_job};
use crate::planner::{CheckResult, Observed};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};

/// Observes everything `rollout` depends on.
pub async fn observe(
    client: &Client,
    pools: &Pools,
    rollout: &SchemaRollout,
    database: Option<&Result<Target, DbError>>,
    now: Timestamp,
) -> Result<Observed, Error> {
    let ns = rollout.namespace().ok_or(Error::MissingNamespace)?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);

    let mut workloads = Vec::with_capacity(rollout.spec.workloads.len());
    for w in &rollout.spec.workloads {
        let deploy = deployments.get_opt(&w.name).await.map_err(Error::Kube)?;
        let (sets, selected) = match deploy.as_ref().and_then(selector_of) {
            Some(selector) => {
                let lp = ListParams::default().labels(&selector);
                let sets = replica_sets.list(&lp).await.map_err(Error::Kube)?.items;
                let selected = pods.list(&lp).await.map_err(Error::Kube)?.items;
                (sets, selected)
            }
            None => (vec![], vec![]),
        };
        workloads.push(assess(
            w,
            &rollout.name_any(),
            deploy.as_ref(),
            &sets,
            &selected,
        ));
    }

    let mut found = BTreeMap::new();
    let mut references = BTreeSet::new();
    for s in [Step::Expand, Step::Transition, Step::Contract] {
        let (Some(phase), Some(job)) = (
            step::phase(&rollout.spec, s),
            step::job_spec(&rollout.spec, s),
        ) else {
            continue;
        };
        references.extend(step::references(job));
        let name = step::job_name(&rollout.name_any(), s, &step::digest(phase));
        if let Some(job) = jobs.get_opt(&name).await.map_err(Error::Kube)? {
            // Only a Job this rollout created counts as its phase.
            let ours = job.labels().get(job::ROLLOUT_UID_LABEL) == rollout.uid().as_ref();
            let observation = if ours {
                observe_job(&job)
            } else {
                JobObservation::Failed(format!(
                    "Job {name} exists but belongs to another SchemaRollout"
                ))
            };
            found.insert(s, observation);
        }
    }
    let mut missing = vec![];
    for r in references {
        if !exists(client, &ns, &r).await? {
            missing.push(r);
        }
    }
    let mut observed = Observed {
        workloads,
        jobs: found,
        missing,
        ledger: BTreeMap::new(),
        checks: None,
        database_error: None,
        lock_holder: None,
        now,
    };
    if let Some(database) = database {
        let result = match database {
            Ok(target) => observe_database(target, pools, rollout, &mut observed).await,
            Err(e) => Err(e.clone()),
        };
        if let Err(e) = result {
            observed.database_error = Some((e.reason(), e.to_string()));
        }
    }
    Ok(observed)
}

/// The ledger of every phase, the lock holder, and (once expand succeeded and
/// until contract started) the contract checks.
async fn observe_database(
    target: &Target,
    pools: &Pools,
    rollout: &SchemaRollout,
    observed: &mut Observed,
) -> Result<(), DbError> {
    for s in [Step::Expand, Step::Transition, Step::Contract] {
        if let Some(key) = ledger_key(rollout, s)
            && let Some(state) = target.ledger(pools, &key).await?
        {
            observed.ledger.insert(s, state);
        }
    }
    observed.lock_holder = target
        .lock_holder(
            pools,
            &rollout.namespace().unwrap_or_default(),
            &rollout.name_any(),
        )
        .await?;
    let status = rollout.status.clone().unwrap_or_default();
    let expanded = observed.ledger.get(&Step::Expand) == Some(&LedgerState::Succeeded)
        || status
            .step(Step::Expand)
            .is_some_and(|s| s.state == StepState::Succeeded);
    let contract_digest = ledger_key(rollout, Step::Contract).map(|k| k.digest);
    let contract_started = observed
        .ledger
        .get(&Step::Contract)
        .is_some_and(|l| *l != LedgerState::Claimed)
        || status
            .step(Step::Contract)
            .is_some_and(|s| Some(&s.digest) == contract_digest.as_ref());
    let checks = rollout.spec.checks();
    if expanded && !contract_started && !checks.is_empty() {
        let mut results = Vec::with_capacity(checks.len());
        for c in checks {
            let result = target.check(pools, &c.sql).await.map_err(|e| e.to_string());
            results.push(CheckResult {
                name: c.name.clone(),
                result,
            });
        }
        observed.checks = Some(results);
    }
    Ok(())
}

/// The ledger key of `step` for the current spec, if the rollout has it.
pub fn ledger_key(rollout: &SchemaRollout, step: Step) -> Option<LedgerKey> {
    let phase = step::phase(&rollout.spec, step)?;
    Some(LedgerKey {
        namespace: rollout.namespace().unwrap_or_default(),
        rollout: rollout.name_any(),
        step,
        digest: step::digest(phase),
    })
}

/// Whether the referenced object exists. Only metadata is read: a Secret's
/// content never reaches the operator.
async fn exists(client: &Client, ns: &str, r: &Reference) -> Result<bool, Error> {
    let found = match r {
        Reference::Secret(name) => Api::<Secret>::namespaced(client.clone(), ns)
            .get_metadata_opt(name)
            .await
            .map(|o| o.is_some()),
        Reference::ConfigMap(name) => Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get_metadata_opt(name)
            .await
            .map(|o| o.is_some()),
    };
    found.map_err(Error::Kube)
}

/// The Deployment's selector as a label-selector string, or `None` when it
/// selects nothing.
fn selector_of(deploy: &Deployment) -> Option<String> {
    let selector = &deploy.spec.as_ref()?.selector;
    let s = label_selector(selector);
    (!s.is_empty()).then_some(s)
}

/// Renders a LabelSelector in the `key=value,key in (a,b)` syntax.
pub fn label_selector(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_label_selectors() {
        let s: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "api", "tier": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["a", "b"]},
                {"key": "x", "operator": "NotIn", "values": ["c"]},
                {"key": "y", "operator": "Exists"},
                {"key": "z", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert_eq!(
            label_selector(&s),
            "app=api,tier=web,env in (a,b),x notin (c),y,!z"
        );
    }
}
