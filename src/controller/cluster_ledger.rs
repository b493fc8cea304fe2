//! The cluster ledger: what bellows knows about a rollout's Job phases
//! when it has no database to keep a ledger in. One ConfigMap per phase
//! run, `bellows-ledger-<Job name>` in the rollout's namespace (the Job name
//! is deterministic for rollout, phase and spec digest, as the database
//! ledger's key is), owned by nothing, so deleting a SchemaRollout, or
//! Argo CD pruning and re-creating it, leaves it alone. Its data: state
//! (`claimed` before the Job is created, `started` once it exists, then
//! `succeeded` or `failed`), rollout, phase, digest, time and message.
//!
//! Read live before any phase starts (the reconcile's live confirmation),
//! so a re-created rollout skips a phase that already finished for the
//! same spec. Each phase run has its own small object with one writer, so
//! a write is one server-side apply that never conflicts with another
//! rollout's and no object grows with the number of runs. To run a phase
//! again on purpose, change its spec (a new digest) or delete its
//! ConfigMap.
//!
//! Earlier releases kept every run of a namespace as a key of one
//! ConfigMap, [`LEGACY`]; its entries are still read, never written.

use crate::api::Step;
use crate::api::keys;
use crate::db::LedgerState;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// The ConfigMap of every phase run of a namespace in earlier releases.
pub const LEGACY: &str = "bellows-ledger";

/// The ConfigMap recording the run of the phase Job `job`.
pub fn name(job: &str) -> String {
    format!("{LEGACY}-{job}")
}

/// One phase run, as stored under its Job's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `claimed`, `started`, `succeeded` or `failed`.
    pub state: String,
    /// The SchemaRollout's name.
    pub rollout: String,
    /// The phase.
    pub step: String,
    /// The phase spec's digest.
    pub digest: String,
    /// When the entry was written (RFC 3339).
    pub at: String,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Entry {
    /// An entry in `state` for `rollout`'s `step` at `digest`, written now.
    pub fn new(state: &LedgerState, rollout: &str, step: Step, digest: &str) -> Self {
        let (state, message) = match state {
            LedgerState::Claimed => ("claimed", None),
            LedgerState::Started { .. } => ("started", None),
            LedgerState::Succeeded => ("succeeded", None),
            LedgerState::Failed(m) => ("failed", Some(m.clone())),
        };
        Self {
            state: state.into(),
            rollout: rollout.into(),
            step: step.as_str().into(),
            digest: digest.into(),
            at: Timestamp::now().to_string(),
            message,
        }
    }

    /// The ledger state it records (`None` for a value bellows cannot read).
    pub fn state(&self) -> Option<LedgerState> {
        Some(match self.state.as_str() {
            "claimed" => LedgerState::Claimed,
            "started" => LedgerState::Started { done: 0 },
            "succeeded" => LedgerState::Succeeded,
            "failed" => LedgerState::Failed(self.message.clone().unwrap_or_default()),
            _ => return None,
        })
    }
}

/// The entries of the phase Jobs `jobs`, by Job name: each from its own
/// ConfigMap, else from the [`LEGACY`] one. The reads run concurrently.
pub async fn read(
    api: &Api<ConfigMap>,
    jobs: &[&str],
) -> Result<BTreeMap<String, Entry>, kube::Error> {
    let own = futures::future::try_join_all(
        jobs.iter()
            .map(|job| async move { api.get_opt(&name(job)).await }),
    );
    let (own, legacy) = futures::try_join!(own, api.get_opt(LEGACY))?;
    let mut legacy = legacy.and_then(|cm| cm.data).unwrap_or_default();
    Ok(jobs
        .iter()
        .zip(own)
        .filter_map(|(job, cm)| {
            let entry = match cm.and_then(|cm| cm.data) {
                Some(data) => serde_json::to_value(data).ok(),
                None => serde_json::from_str(&legacy.remove(*job)?).ok(),
            };
            Some((job.to_string(), serde_json::from_value(entry?).ok()?))
        })
        .collect())
}

/// Records `entry` for the phase Job `job`: one server-side apply that
/// creates its ConfigMap or replaces what bellows wrote there before.
pub async fn write(api: &Api<ConfigMap>, job: &str, entry: &Entry) -> Result<(), kube::Error> {
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name(job),
            "labels": {
                keys::MANAGED_BY.0: keys::MANAGED_BY.1,
                keys::STEP_LABEL: entry.step,
            },
        },
        "data": entry,
    });
    api.patch(
        &name(job),
        &PatchParams::apply(keys::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_every_state() {
        for state in [
            LedgerState::Claimed,
            LedgerState::Started { done: 0 },
            LedgerState::Succeeded,
            LedgerState::Failed("BackoffLimitExceeded".into()),
        ] {
            let entry = Entry::new(&state, "users", Step::Contract, "abc123");
            let text = serde_json::to_string(&entry).unwrap();
            let back: Entry = serde_json::from_str(&text).unwrap();
            assert_eq!(back.state(), Some(state));
            assert_eq!(
                (back.step.as_str(), back.rollout.as_str()),
                ("contract", "users")
            );
        }
        let unknown = Entry {
            state: "paused".into(),
            ..Entry::new(&LedgerState::Claimed, "users", Step::Expand, "abc")
        };
        assert_eq!(unknown.state(), None);
    }
}
