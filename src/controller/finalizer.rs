//! The `bellows.dev/cleanup` finalizer: a SchemaRollout is not removed
//! before bellows has cleaned up after it. On delete, bellows
//!
//! - starts nothing new, and records in the ledger any phase whose Job
//!   finished (the ledger keeps the truth);
//! - lets a running migration Job finish (its `activeDeadlineSeconds`, the
//!   phase timeout, bounds the wait): the Jobs are owned by the rollout, and
//!   the garbage collector removes them (and kills their pods) only once
//!   the rollout is gone, so removing the finalizer earlier could cut a
//!   migration in half;
//! - resumes every listed Deployment it paused for the expand gate (still
//!   marked `bellows.dev/paused-by` with its name, see `gate`), so no
//!   Deployment stays paused after its rollout is gone;
//! - then removes the finalizer.
//!
//! Each write is a JSON patch with a `test` of the list it changes, so a
//! finalizer another controller adds or removes at the same moment is
//! never lost.

use crate::api::SchemaRollout;
use crate::api::keys::FINALIZER;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Whether `rollout` carries the finalizer.
pub fn present(rollout: &SchemaRollout) -> bool {
    rollout.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer unless it is there.
pub async fn add(api: &Api<SchemaRollout>, rollout: &SchemaRollout) -> Result<(), kube::Error> {
    if present(rollout) {
        return Ok(());
    }
    let patch = if rollout.finalizers().is_empty() {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": rollout.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    json_patch(api, rollout, patch).await
}

/// Removes the finalizer (the rollout is then deleted).
pub async fn remove(api: &Api<SchemaRollout>, rollout: &SchemaRollout) -> Result<(), kube::Error> {
    let Some(i) = rollout.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{i}");
    let patch = json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]);
    json_patch(api, rollout, patch).await
}

async fn json_patch(
    api: &Api<SchemaRollout>,
    rollout: &SchemaRollout,
    patch: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("a valid JSON patch");
    api.patch(
        &rollout.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(())
}
