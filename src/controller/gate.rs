//! The expand gate's writes to the workloads it holds: a Deployment or Argo
//! Rollout paused (`spec.paused`), a CronJob suspended (`spec.suspend`), a
//! StatefulSet's rolling update held at its current revision (`partition`
//! set to the largest value). The planner decides from the watch cache or
//! a read that can lag: a workload a user held a moment ago may still look
//! free there. So each write is decided again on the live object and made
//! conditional on it (its `resourceVersion` as a precondition): bellows
//! holds only a workload that is not held, marks it `bellows.dev/paused-by:
//! <rollout>`, and releases only one that is still held and still marked by
//! that rollout. A hold bellows did not set (a user's pause, a partition, a
//! StatefulSet with the `OnDelete` strategy) is never lifted. A conflict
//! (the object changed after the live read) fails the reconcile, which is
//! retried and reads again.

use crate::api::WorkloadKind;
use crate::api::keys::PAUSED_BY_ANNOTATION;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

/// What a gate write found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gated {
    /// The workload was held (or released) by this call.
    Changed,
    /// Nothing to do: already in the wanted state under this rollout's mark,
    /// or the workload no longer exists.
    Unchanged,
    /// Held by someone else (a user, a tool, another rollout): left alone.
    PausedByOther,
}

/// The field that holds a workload of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lever {
    /// `spec.paused` (Deployment, Argo Rollout).
    Paused,
    /// `spec.suspend` (CronJob).
    Suspend,
    /// `spec.updateStrategy.rollingUpdate.partition` (StatefulSet).
    Partition,
}

impl Lever {
    /// The lever of `kind`, if the gate can hold it.
    pub fn of(kind: WorkloadKind) -> Option<Self> {
        match kind {
            WorkloadKind::Deployment | WorkloadKind::Rollout => Some(Self::Paused),
            WorkloadKind::CronJob => Some(Self::Suspend),
            WorkloadKind::StatefulSet => Some(Self::Partition),
            WorkloadKind::DaemonSet | WorkloadKind::Pods => None,
        }
    }

    /// Whether `spec` is held exactly as this lever holds it (so releasing
    /// undoes nobody else's change: a partition or strategy someone set
    /// while bellows held the workload stays).
    fn held_as_set(self, spec: &Value) -> bool {
        match self {
            Self::Partition => {
                spec["updateStrategy"]["type"].as_str() == Some("RollingUpdate")
                    && spec["updateStrategy"]["rollingUpdate"]["partition"].as_i64()
                        == Some(i64::from(i32::MAX))
            }
            Self::Paused | Self::Suspend => self.held(spec),
        }
    }

    /// Whether `spec` is held by this lever (by anyone).
    fn held(self, spec: &Value) -> bool {
        match self {
            Self::Paused => spec["paused"].as_bool().unwrap_or(false),
            Self::Suspend => spec["suspend"].as_bool().unwrap_or(false),
            Self::Partition => {
                spec["updateStrategy"]["type"].as_str() == Some("OnDelete")
                    || spec["updateStrategy"]["rollingUpdate"]["partition"]
                        .as_i64()
                        .unwrap_or(0)
                        > 0
            }
        }
    }

    /// The spec patch that holds (or releases) the workload.
    fn set(self, hold: bool) -> Value {
        match self {
            Self::Paused => json!({"paused": hold}),
            Self::Suspend => json!({"suspend": hold}),
            // Ordinals below the partition keep the current revision: the
            // largest one holds every pod, scaled-up ones included.
            Self::Partition => json!({"updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"partition": if hold { i32::MAX } else { 0 }}}}),
        }
    }
}

/// Holds workload `name` for `rollout` unless it is held already.
pub async fn pause(
    api: &Api<DynamicObject>,
    lever: Lever,
    name: &str,
    rollout: &str,
) -> Result<Gated, kube::Error> {
    let Some(live) = api.get_opt(name).await? else {
        return Ok(Gated::Unchanged);
    };
    match held_by(&live, lever) {
        Some(Some(by)) if by == rollout => Ok(Gated::Unchanged),
        Some(_) => Ok(Gated::PausedByOther),
        None => {
            write(api, &live, lever, true, json!(rollout)).await?;
            Ok(Gated::Changed)
        }
    }
}

/// Releases workload `name` if it is still held by `rollout`.
pub async fn resume(
    api: &Api<DynamicObject>,
    lever: Lever,
    name: &str,
    rollout: &str,
) -> Result<Gated, kube::Error> {
    let Some(live) = api.get_opt(name).await? else {
        return Ok(Gated::Unchanged);
    };
    match held_by(&live, lever) {
        Some(Some(by)) if by == rollout && lever.held_as_set(&live.data["spec"]) => {
            write(api, &live, lever, false, Value::Null).await?;
            Ok(Gated::Changed)
        }
        Some(_) => Ok(Gated::PausedByOther),
        None => Ok(Gated::Unchanged),
    }
}

/// Whether workload `name` is held and marked by `rollout`.
pub async fn holds(
    api: &Api<DynamicObject>,
    lever: Lever,
    name: &str,
    rollout: &str,
) -> Result<bool, kube::Error> {
    let live = api.get_opt(name).await?;
    Ok(live.as_ref().and_then(|l| held_by(l, lever)) == Some(Some(rollout)))
}

/// `None` when not held, else who marked the hold (if anyone).
fn held_by(live: &DynamicObject, lever: Lever) -> Option<Option<&str>> {
    lever.held(&live.data["spec"]).then(|| {
        live.annotations()
            .get(PAUSED_BY_ANNOTATION)
            .map(String::as_str)
    })
}

/// Holds or releases the workload and sets the mark, only if `live` is
/// still current.
async fn write(
    api: &Api<DynamicObject>,
    live: &DynamicObject,
    lever: Lever,
    hold: bool,
    mark: Value,
) -> Result<(), kube::Error> {
    let patch = json!({
        "metadata": {
            "resourceVersion": live.resource_version(),
            "annotations": {PAUSED_BY_ANNOTATION: mark},
        },
        "spec": lever.set(hold),
    });
    api.patch(
        &live.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lever_reads_what_it_writes() {
        for lever in [Lever::Paused, Lever::Suspend, Lever::Partition] {
            assert!(lever.held(&lever.set(true)), "{lever:?}");
            assert!(!lever.held(&lever.set(false)), "{lever:?}");
        }
        assert!(Lever::Partition.held(&json!({"updateStrategy": {"type": "OnDelete"}})));
        assert!(
            Lever::Partition.held(&json!({"updateStrategy": {"rollingUpdate": {"partition": 2}}}))
        );
        assert!(!Lever::Partition.held(&json!({})));
        // Released only as set: a partition or strategy someone changed
        // meanwhile is theirs.
        for lever in [Lever::Paused, Lever::Suspend, Lever::Partition] {
            assert!(lever.held_as_set(&lever.set(true)), "{lever:?}");
        }
        assert!(!Lever::Partition.held_as_set(
            &json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}})
        ));
        assert!(!Lever::Partition.held_as_set(&json!({"updateStrategy": {"type": "OnDelete"}})));
        assert_eq!(Lever::of(WorkloadKind::DaemonSet), None);
        for kind in [
            WorkloadKind::Deployment,
            WorkloadKind::StatefulSet,
            WorkloadKind::DaemonSet,
            WorkloadKind::CronJob,
            WorkloadKind::Rollout,
            WorkloadKind::Pods,
        ] {
            assert_eq!(Lever::of(kind).is_some(), kind.holdable(), "{kind}");
        }
    }
}
