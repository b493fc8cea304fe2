//! The expand gate's writes to Deployments. The planner decides from the
//! watch cache, which can lag: a Deployment a user paused a moment ago may
//! still look running there. So each write is decided again on the live
//! object and made conditional on it (its `resourceVersion` as a
//! precondition): bellows pauses only a Deployment that is not paused, marks
//! it `bellows.dev/paused-by: <rollout>`, and resumes only one that is still
//! paused and still marked by that rollout. A pause bellows did not set is
//! never lifted. A conflict (the object changed after the live read) fails
//! the reconcile, which is retried and reads again.

use crate::api::keys::PAUSED_BY_ANNOTATION;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// What a gate write found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gated {
    /// The Deployment was paused (or resumed) by this call.
    Changed,
    /// Nothing to do: already in the wanted state under this rollout's mark,
    /// or the Deployment no longer exists.
    Unchanged,
    /// Paused by someone else (a user, a tool, another rollout): left alone.
    PausedByOther,
}

/// Pauses Deployment `name` for `rollout` unless it is paused already.
pub async fn pause(api: &Api<Deployment>, name: &str, rollout: &str) -> Result<Gated, kube::Error> {
    let Some(live) = api.get_opt(name).await? else {
        return Ok(Gated::Unchanged);
    };
    match paused_by(&live) {
        Some(Some(by)) if by == rollout => Ok(Gated::Unchanged),
        Some(_) => Ok(Gated::PausedByOther),
        None => {
            write(api, &live, true, json!(rollout)).await?;
            Ok(Gated::Changed)
        }
    }
}

/// Resumes Deployment `name` if it is still paused by `rollout`.
pub async fn resume(
    api: &Api<Deployment>,
    name: &str,
    rollout: &str,
) -> Result<Gated, kube::Error> {
    let Some(live) = api.get_opt(name).await? else {
        return Ok(Gated::Unchanged);
    };
    match paused_by(&live) {
        Some(Some(by)) if by == rollout => {
            write(api, &live, false, serde_json::Value::Null).await?;
            Ok(Gated::Changed)
        }
        Some(_) => Ok(Gated::PausedByOther),
        None => Ok(Gated::Unchanged),
    }
}

/// Whether Deployment `name` is paused and marked by `rollout`.
pub async fn holds(api: &Api<Deployment>, name: &str, rollout: &str) -> Result<bool, kube::Error> {
    let live = api.get_opt(name).await?;
    Ok(live.as_ref().and_then(paused_by) == Some(Some(rollout)))
}

/// `None` when not paused, else who marked the pause (if anyone).
fn paused_by(deploy: &Deployment) -> Option<Option<&str>> {
    let paused = deploy.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    paused.then(|| {
        deploy
            .annotations()
            .get(PAUSED_BY_ANNOTATION)
            .map(String::as_str)
    })
}

/// Sets `spec.paused` and the mark, only if `live` is still current.
async fn write(
    api: &Api<Deployment>,
    live: &Deployment,
    paused: bool,
    mark: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch = json!({
        "metadata": {
            "resourceVersion": live.resource_version(),
            "annotations": {PAUSED_BY_ANNOTATION: mark},
        },
        "spec": {"paused": paused},
    });
    api.patch(
        &live.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
