//! Whether a workload runs only the new version: the verdict and what
//! was counted, and how a pod template's version is read. One module per
//! kind decides it from the objects of that kind.

pub mod argo;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
mod history;
pub mod pods;
pub mod statefulset;

use crate::api::keys::PAUSED_BY_ANNOTATION;
use crate::api::{GateHold, ImageVersion, Reason, Workload, WorkloadKind, WorkloadVersion};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// What was found about one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    /// Kind of the workload.
    pub kind: WorkloadKind,
    /// Name of the workload.
    pub name: String,
    /// A problem with the spec itself that no rollout can fix.
    pub problem: Option<Problem>,
    /// Whether it is rolled out, and if not, why.
    pub verdict: Verdict,
    /// Desired replicas.
    pub replicas: i32,
    /// Pods of the new version that are not terminating.
    pub new_pods: i32,
    /// Pods of any other version, Terminating ones included.
    pub old_pods: i32,
    /// Whether it is held: a Deployment or Argo Rollout paused, a CronJob
    /// suspended, a StatefulSet with a partition or the OnDelete strategy
    /// (never for other kinds).
    pub paused: bool,
    /// Whether bellows' gate holds it for this rollout (so may release it).
    pub paused_by_us: bool,
    /// What status says of a workload rolled out to a later version than
    /// the one wanted (`runs 3.0.0, newer than 2.0.0`).
    pub note: Option<String>,
}

impl Assessment {
    /// How the gate names this workload.
    pub fn hold(&self) -> GateHold {
        GateHold {
            kind: self.kind,
            name: self.name.clone(),
        }
    }

    /// Records whether the workload is `held`, and whether by this
    /// rollout's gate (its `bellows.dev/paused-by` mark names `rollout`).
    fn held(&mut self, held: bool, meta: &ObjectMeta, rollout: &str) {
        self.paused = held;
        self.paused_by_us = held
            && meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(PAUSED_BY_ANNOTATION))
                .map(String::as_str)
                == Some(rollout);
    }

    /// Nothing counted yet about `workload`.
    fn new(workload: &Workload) -> Self {
        Self {
            kind: workload.kind,
            name: workload.name.clone(),
            problem: None,
            verdict: Verdict::Waiting(Wait::Unavailable, String::new()),
            replicas: 0,
            new_pods: 0,
            old_pods: 0,
            paused: false,
            paused_by_us: false,
            note: None,
        }
    }

    /// `workload` does not exist.
    fn not_found(workload: &Workload) -> Self {
        let message = format!("{} {} not found", workload.kind, workload.name);
        Self::with_problem(workload, Problem::NotFound).with_message(message)
    }

    /// `workload` cannot be assessed because of `problem`.
    pub fn with_problem(workload: &Workload, problem: Problem) -> Self {
        let message = match &problem {
            Problem::Unusable(m) | Problem::NotServed(m) => m.clone(),
            _ => String::new(),
        };
        Self {
            problem: Some(problem),
            ..Self::new(workload)
        }
        .with_message(message)
    }

    fn with_message(mut self, message: String) -> Self {
        self.verdict = waiting(Wait::Unavailable, message);
        self
    }

    /// The assessment when `template` of `workload` lacks the container
    /// its version names, keeping what this one knows of the gate's hold.
    fn missing_container(&self, workload: &Workload, template: &PodTemplateSpec) -> Option<Self> {
        let image = workload.version.image.as_ref()?;
        (!has_container(template, &image.container)).then(|| {
            let message = format!(
                "{} {} has no container named {}",
                workload.kind, workload.name, image.container
            );
            Self::with_problem(
                workload,
                Problem::ContainerNotFound(image.container.clone()),
            )
            .with_message(message)
            .keeping_hold(self)
        })
    }

    /// This assessment with `of`'s hold: what the gate holds stays known
    /// (and released in time) whatever else is wrong.
    fn keeping_hold(self, of: &Self) -> Self {
        Self {
            paused: of.paused,
            paused_by_us: of.paused_by_us,
            ..self
        }
    }

    /// Counts `pods`, `is_new` telling which run the new version or a
    /// later one; returns how many older ones are Terminating.
    fn count(&mut self, pods: &[Pod], is_new: impl Fn(&Pod) -> bool) -> usize {
        let mut old_terminating = 0;
        for pod in pods {
            let terminating = pod.metadata.deletion_timestamp.is_some();
            if !is_new(pod) {
                self.old_pods += 1;
                old_terminating += usize::from(terminating);
            } else if !terminating {
                self.new_pods += 1;
            }
        }
        old_terminating
    }

    /// Adds to a waiting verdict that the workload is paused by someone
    /// else, whom bellows never overrides.
    fn paused_by_other(mut self) -> Self {
        if self.paused
            && !self.paused_by_us
            && let Verdict::Waiting(_, message) = &mut self.verdict
        {
            message.push_str(" (paused by someone else: bellows waits and never resumes it)");
        }
        self
    }
}

/// The verdict for pods of an older version that remain.
fn old_pods_remain(what: &str, old: i32, terminating: usize) -> Verdict {
    waiting(
        Wait::OldPodsRemain,
        format!("{what}: {old} pod(s) of an older version remain ({terminating} terminating)"),
    )
}

/// Whether `meta`'s controlling owner has `uid`.
fn controlled_by(meta: &ObjectMeta, uid: Option<&String>) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid)
}

/// Whether a pod's containers have stopped for good (phase `Succeeded` or
/// `Failed`): such a pod runs no code, whatever its version.
fn stopped(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A pod's own metadata and spec as a template, to read its version.
fn pod_template(pod: &Pod) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(pod.metadata.clone()),
        spec: pod.spec.clone(),
    }
}

/// Whether a pod, read by its own spec, runs the new version or one named
/// later (a version that cannot be ordered by its name counts as older).
fn pod_runs_new(pod: &Pod, version: &WorkloadVersion) -> bool {
    matches!(
        standing(&pod_template(pod), version),
        Standing::Wanted | Standing::Newer(_)
    )
}

/// A workload reference that cannot be satisfied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The Deployment does not exist.
    NotFound,
    /// The version names a container the pod template does not have.
    ContainerNotFound(String),
    /// A spec bellows cannot judge (a selector the API cannot read, a
    /// Rollout without its own template).
    Unusable(String),
    /// The cluster does not serve the kind (its CRD is not installed).
    NotServed(String),
}

impl Problem {
    /// Its reason for conditions and events.
    pub fn reason(&self) -> Reason {
        match self {
            Self::NotFound => Reason::WorkloadNotFound,
            Self::ContainerNotFound(_) => Reason::ContainerNotFound,
            Self::Unusable(_) => Reason::InvalidSpec,
            Self::NotServed(_) => Reason::WorkloadKindNotServed,
        }
    }
}

/// Whether a workload runs only the new version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every replica runs the new version and no other pod exists.
    RolledOut,
    /// Not (yet) rolled out.
    Waiting(Wait, String),
}

impl Verdict {
    /// Why it waits, if it does.
    pub fn wait(&self) -> Option<Wait> {
        match self {
            Self::RolledOut => None,
            Self::Waiting(w, _) => Some(*w),
        }
    }
}

/// Why a workload is not rolled out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The pod template does not run the new version yet.
    TemplateNotUpdated,
    /// The pod template went back to an older version after the new one
    /// existed.
    RolledBack,
    /// The Deployment controller has not observed the latest spec.
    GenerationNotObserved,
    /// Not every replica is updated and available.
    ReplicasNotReady,
    /// The Deployment gave up: its progress deadline passed.
    ProgressDeadlineExceeded,
    /// No ReplicaSet for the current revision exists yet.
    NewReplicaSetNotFound,
    /// Pods of an older version (maybe Terminating) still exist.
    OldPodsRemain,
    /// The workload does not exist or names no such container.
    Unavailable,
    /// A StatefulSet's `partition` keeps pods on an older revision.
    PartitionHolds,
    /// A StatefulSet's `OnDelete` strategy keeps pods of an older revision.
    OnDeleteHolds,
    /// A CronJob is suspended on an older job template.
    CronJobSuspended,
    /// A Job from an older template is active.
    OldJobsActive,
    /// A `Pods` selector selects no pod.
    NoPodsSelected,
    /// An Argo Rollout's update was aborted.
    RolloutAborted,
    /// An Argo Rollout is paused before it was promoted.
    RolloutPaused,
}

impl Wait {
    /// Its reason for conditions and events.
    pub fn reason(self) -> Reason {
        match self {
            Self::TemplateNotUpdated => Reason::TemplateNotUpdated,
            Self::RolledBack => Reason::RolledBack,
            Self::GenerationNotObserved => Reason::GenerationNotObserved,
            Self::ReplicasNotReady => Reason::ReplicasNotReady,
            Self::ProgressDeadlineExceeded => Reason::ProgressDeadlineExceeded,
            Self::NewReplicaSetNotFound => Reason::NewReplicaSetNotFound,
            Self::OldPodsRemain => Reason::OldPodsRemain,
            Self::Unavailable => Reason::Unavailable,
            Self::PartitionHolds => Reason::PartitionHolds,
            Self::OnDeleteHolds => Reason::OnDeleteHolds,
            Self::CronJobSuspended => Reason::CronJobSuspended,
            Self::OldJobsActive => Reason::OldJobsActive,
            Self::NoPodsSelected => Reason::NoPodsSelected,
            Self::RolloutAborted => Reason::RolloutAborted,
            Self::RolloutPaused => Reason::RolloutPaused,
        }
    }
}

/// How the version a pod template runs stands to the wanted one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It runs the wanted version.
    Wanted,
    /// It runs a later version (shown as the template runs it): built on
    /// the expanded schema too.
    Newer(String),
    /// It runs an earlier version.
    Older(String),
    /// Another version that cannot be ordered by its name (a digest, a
    /// branch tag): the order the cluster created its ReplicaSets in
    /// decides.
    Unordered(String),
}

/// How `template`'s version stands to `version`: by their names when both
/// read as dotted numbers (`3.0.0`, `v2.1`, `20261205`), compared number
/// by number.
pub fn standing(template: &PodTemplateSpec, version: &WorkloadVersion) -> Standing {
    if template_matches(template, version) {
        return Standing::Wanted;
    }
    let running = running_version(template, version);
    let order = comparable(template, version)
        .and_then(|(running, wanted)| version_order(&running, &wanted));
    match order {
        Some(std::cmp::Ordering::Greater) => Standing::Newer(running),
        Some(std::cmp::Ordering::Less) => Standing::Older(running),
        _ => Standing::Unordered(running),
    }
}

/// The running and the wanted version's names, where they can be put in
/// order: a tag, the tag of a reference to the same repository, or the
/// value of the one label that names the version.
fn comparable(template: &PodTemplateSpec, version: &WorkloadVersion) -> Option<(String, String)> {
    if let Some(image) = &version.image {
        let actual = template
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == image.container)?
            .image
            .clone()?;
        let wanted = match (&image.tag, &image.reference) {
            (Some(tag), _) => tag.clone(),
            (None, Some(reference)) if repository(reference) == repository(&actual) => {
                tag_of(reference)?.to_owned()
            }
            _ => return None,
        };
        return Some((tag_of(&actual)?.to_owned(), wanted));
    }
    let labels = version.labels.as_ref()?;
    let [(key, wanted)] = labels.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let running = template.metadata.as_ref()?.labels.as_ref()?.get(key)?;
    Some((running.clone(), wanted.clone()))
}

/// The order of two version names that read as dotted numbers, with an
/// optional leading `v`; `None` for any other name (`2.0.0-rc1`, `latest`,
/// a commit).
fn version_order(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let parse = |v: &str| -> Option<Vec<u64>> {
        let v = v.strip_prefix('v').unwrap_or(v);
        v.split('.').map(|n| n.parse().ok()).collect()
    };
    let (a, b) = (parse(a)?, parse(b)?);
    let len = a.len().max(b.len());
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    Some(
        (0..len)
            .map(|i| at(&a, i).cmp(&at(&b, i)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal),
    )
}

/// The version a pod template runs, in the terms of `version`: the named
/// container's tag (or whole image when a full reference is wanted), or the
/// values of the wanted labels.
fn running_version(template: &PodTemplateSpec, version: &WorkloadVersion) -> String {
    if let Some(image) = &version.image {
        let actual = template
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == image.container))
            .and_then(|c| c.image.as_deref())
            .unwrap_or("no image");
        return match image.reference {
            Some(_) => actual.to_owned(),
            None => tag_of(actual).unwrap_or(actual).to_owned(),
        };
    }
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    let keys = version.labels.iter().flatten().map(|(k, _)| k);
    let shown: Vec<String> = keys
        .map(|k| {
            let v = labels
                .and_then(|l| l.get(k))
                .map_or("<unset>", String::as_str);
            format!("{k}={v}")
        })
        .collect();
    shown.join(",")
}

/// The version `version` waits for, as [`running_version`] shows it.
fn wanted_version(version: &WorkloadVersion) -> String {
    if let Some(image) = &version.image {
        return image
            .reference
            .clone()
            .or_else(|| image.tag.clone())
            .unwrap_or_default();
    }
    let shown: Vec<String> = version
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    shown.join(",")
}

fn waiting(wait: Wait, message: String) -> Verdict {
    Verdict::Waiting(wait, message)
}

fn has_container(template: &PodTemplateSpec, name: &str) -> bool {
    template
        .spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().any(|c| c.name == name))
}

/// Whether a pod template runs the version described by `version`.
pub fn template_matches(template: &PodTemplateSpec, version: &WorkloadVersion) -> bool {
    if let Some(image) = &version.image {
        let Some(spec) = &template.spec else {
            return false;
        };
        return spec
            .containers
            .iter()
            .find(|c| c.name == image.container)
            .and_then(|c| c.image.as_deref())
            .is_some_and(|actual| image_matches(actual, image));
    }
    if let Some(labels) = &version.labels {
        let actual = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
        return labels
            .iter()
            .all(|(k, v)| actual.and_then(|a| a.get(k)) == Some(v));
    }
    false
}

fn image_matches(actual: &str, wanted: &ImageVersion) -> bool {
    if let Some(reference) = &wanted.reference {
        return actual == reference;
    }
    let Some(tag) = &wanted.tag else {
        return false;
    };
    tag_of(actual) == Some(tag.as_str())
}

/// An image without its tag and digest: `registry:5000/shop/api`.
fn repository(image: &str) -> &str {
    let name = image.split('@').next().unwrap_or(image);
    match tag_of(name) {
        Some(tag) => &name[..name.len() - tag.len() - 1],
        None => name,
    }
}

/// The tag of an image: in `repo:tag` or `repo:tag@sha256:...` it follows
/// the last ':' after the last '/', so a registry port is never taken for a
/// tag.
fn tag_of(image: &str) -> Option<&str> {
    let name = image.split('@').next().unwrap_or(image);
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    last_segment.rsplit_once(':').map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_tags_refs_and_labels_match_precisely() {
        let tag = |t: &str| ImageVersion {
            container: "api".into(),
            tag: Some(t.into()),
            reference: None,
        };
        assert!(image_matches("shop/api:2.0.0", &tag("2.0.0")));
        assert!(image_matches(
            "registry:5000/shop/api:2.0.0@sha256:abc",
            &tag("2.0.0")
        ));
        assert!(!image_matches("registry:5000/shop/api", &tag("5000")));
        assert!(!image_matches("shop/api:2.0.0-rc1", &tag("2.0.0")));
        let by_ref = ImageVersion {
            container: "api".into(),
            tag: None,
            reference: Some("shop/api:2.0.0".into()),
        };
        assert!(image_matches("shop/api:2.0.0", &by_ref));
        assert!(!image_matches("other/api:2.0.0", &by_ref));
        let labels: WorkloadVersion =
            serde_json::from_value(json!({"labels": {"app": "api"}})).unwrap();
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "x:1"}]}})).unwrap();
        assert!(template_matches(&t, &labels));
        let other: WorkloadVersion =
            serde_json::from_value(json!({"labels": {"app": "web"}})).unwrap();
        assert!(!template_matches(&t, &other));
    }
}
