//! The keys bellows writes on Kubernetes objects or reads from them:
//! labels, annotations, the finalizer and the field manager. One home, so
//! a key is spelled once.

/// Label on every object bellows creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "bellows");
/// Label holding the owning rollout's UID (names may exceed 63 characters).
pub const ROLLOUT_UID_LABEL: &str = "bellows.dev/rollout-uid";
/// Label holding the phase of a Job.
pub const STEP_LABEL: &str = "bellows.dev/phase";
/// Annotation holding the owning rollout's name.
pub const ROLLOUT_ANNOTATION: &str = "bellows.dev/rollout";
/// Annotation holding the seal of a Job bellows created
/// (`controller::seal`): only a Job whose seal verifies is a phase's Job.
pub const SEAL_ANNOTATION: &str = "bellows.dev/seal";
/// Annotation that approves a `Manual` contract; its value must equal
/// `status.approvalKey` (the object's uid and a digest of what decides
/// contract) so an approval never carries over to another contract or
/// object.
pub const APPROVE_ANNOTATION: &str = "bellows.dev/approve";
/// Annotation bellows puts on a Deployment it paused for the expand gate.
pub const PAUSED_BY_ANNOTATION: &str = "bellows.dev/paused-by";
/// The finalizer bellows puts on every SchemaRollout it reconciles.
pub const FINALIZER: &str = "bellows.dev/cleanup";
/// Field manager of every write bellows makes.
pub const FIELD_MANAGER: &str = "bellows";

/// Annotation the Deployment controller stamps on a Deployment and its
/// ReplicaSets; the ReplicaSet whose revision equals the Deployment's is the
/// new one.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Label the Deployment controller puts on every ReplicaSet and pod.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Label the StatefulSet and DaemonSet controllers put on every pod: the
/// revision it was created from (a StatefulSet's ControllerRevision name, a
/// DaemonSet's revision hash).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// Label the Job controller puts on every pod of a Job: the Job's name.
pub const JOB_NAME_LABEL: &str = "job-name";
/// Label Argo Rollouts puts on every ReplicaSet and pod of a Rollout.
pub const ARGO_HASH_LABEL: &str = "rollouts-pod-template-hash";
