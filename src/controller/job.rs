//! Builds the Job of a phase from the user's JobSpec. Pure: no client.

use super::seal::Seal;
use crate::api::SchemaRollout;
use crate::api::keys::{
    MANAGED_BY, ROLLOUT_ANNOTATION, ROLLOUT_UID_LABEL, SEAL_ANNOTATION, STEP_LABEL,
};
use crate::planner::PhaseRun;
use crate::planner::step::job_spec;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The Job of `run` (named `run.job`, with `run.timeout` as its default
/// deadline), owned by `rollout` and sealed with `seal`.
///
/// Defaults that make a migration safe: no retries (`backoffLimit: 0`;
/// validation refuses others), a deadline of at most the phase's timeout
/// (a longer one is cut to it, so the database claim, which lasts the
/// timeout plus a margin, outlives the Job), `restartPolicy:
/// Never`, no ServiceAccount token mounted unless the spec sets
/// `automountServiceAccountToken`, and never `ttlSecondsAfterFinished` (the
/// finished Job is the record of what ran).
pub fn build(rollout: &SchemaRollout, run: &PhaseRun, seal: &Seal) -> Option<Job> {
    let step = run.key.step;
    let name = run.job.as_deref()?;
    let mut spec = job_spec(&rollout.spec, step)?.clone();
    spec.backoff_limit.get_or_insert(0);
    let timeout = run.timeout.as_secs().max(1) as i64;
    spec.active_deadline_seconds = Some(
        spec.active_deadline_seconds
            .map_or(timeout, |asked| asked.min(timeout)),
    );
    spec.ttl_seconds_after_finished = None;
    if let Some(pod) = spec.template.spec.as_mut() {
        pod.restart_policy.get_or_insert_with(|| "Never".into());
        // A migration talks to its database, not to the API server: no
        // token in its pod unless its spec asks for one.
        pod.automount_service_account_token.get_or_insert(false);
    }
    let uid = rollout.uid().unwrap_or_default();
    let namespace = rollout.namespace().unwrap_or_default();
    let annotations = BTreeMap::from([
        (ROLLOUT_ANNOTATION.to_owned(), rollout.name_any()),
        (
            SEAL_ANNOTATION.to_owned(),
            seal.sign(&namespace, name, &uid),
        ),
    ]);
    let labels = BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (ROLLOUT_UID_LABEL.to_owned(), uid),
        (STEP_LABEL.to_owned(), step.as_str().to_owned()),
    ]);
    Some(Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: rollout.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Step;
    use serde_json::json;

    /// The Job of `step`'s run for `r`, if it has that phase.
    fn built(r: &SchemaRollout, step: Step) -> Option<Job> {
        crate::planner::phase_run(r, step).and_then(|run| build(r, &run, &seal()))
    }

    fn seal() -> Seal {
        Seal::new(&[3; 32])
    }

    fn rollout(timeouts: serde_json::Value, expand_job: serde_json::Value) -> SchemaRollout {
        let job =
            json!({"template": {"spec": {"containers": [{"name": "m", "image": "postgres:16"}]}}});
        let spec = serde_json::from_value(json!({
            "workloads": [{"name": "api", "version": {"labels": {"v": "2"}}}],
            "expand": {"job": expand_job}, "contract": {"job": job}, "timeouts": timeouts,
        }))
        .unwrap();
        let mut r = SchemaRollout::new("users", spec);
        r.metadata.namespace = Some("shop".into());
        r.metadata.uid = Some("uid-1".into());
        r
    }

    #[test]
    fn jobs_are_owned_labelled_and_bounded() {
        let r = rollout(
            json!({"contract": "5m"}),
            json!({"template": {"spec": {"containers": [{"name": "m"}]}}}),
        );
        let job = built(&r, Step::Contract).unwrap();
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(300));
        assert_eq!(spec.ttl_seconds_after_finished, None);
        assert_eq!(
            spec.template
                .spec
                .as_ref()
                .unwrap()
                .restart_policy
                .as_deref(),
            Some("Never")
        );
        assert_eq!(
            spec.template
                .spec
                .as_ref()
                .unwrap()
                .automount_service_account_token,
            Some(false),
            "no API token in a migration pod by default"
        );
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("SchemaRollout", "uid-1", Some(true))
        );
        assert_eq!(
            job.labels().get(STEP_LABEL).map(String::as_str),
            Some("contract")
        );
        assert_eq!(job.namespace().as_deref(), Some("shop"));
        assert!(seal().verifies(&job, "uid-1"), "sealed for its rollout");
    }

    #[test]
    fn user_deadline_is_kept_and_ttl_never_set() {
        let r = rollout(
            json!({}),
            json!({"backoffLimit": 0, "activeDeadlineSeconds": 60, "ttlSecondsAfterFinished": 10,
                   "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m"}]}}}),
        );
        let job = built(&r, Step::Expand).unwrap();
        let spec = job.spec.unwrap();
        let asks = rollout(
            json!({}),
            json!({"template": {"spec": {"automountServiceAccountToken": true, "containers": [{"name": "m"}]}}}),
        );
        let pod = built(&asks, Step::Expand)
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        assert_eq!(
            pod.automount_service_account_token,
            Some(true),
            "the spec's choice is kept"
        );
        assert_eq!(
            (spec.backoff_limit, spec.active_deadline_seconds),
            (Some(0), Some(60))
        );
        assert_eq!(spec.ttl_seconds_after_finished, None);
        assert_eq!(
            spec.template.spec.unwrap().restart_policy.as_deref(),
            Some("Never")
        );
        assert!(built(&r, Step::Transition).is_none(), "no transition phase");
    }

    #[test]
    fn a_deadline_longer_than_the_phase_timeout_is_cut_to_it() {
        // Ten years asked, a 5-minute expand timeout: the Job stops within
        // the database claim (timeout plus a margin).
        let r = rollout(
            json!({"expand": "5m"}),
            json!({"activeDeadlineSeconds": 315360000, "template": {"spec": {"containers": [{"name": "m"}]}}}),
        );
        let spec = built(&r, Step::Expand).unwrap().spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(300));
    }
}
