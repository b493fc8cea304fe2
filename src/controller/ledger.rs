//! The cluster ledger: what bellows knows about a rollout's Job phases
//! when it has no database to keep a ledger in. One ConfigMap per namespace,
//! `bellows-ledger`, owned by nothing (so deleting a SchemaRollout, or
//! Argo CD pruning and re-creating it, leaves it alone), with one key per
//! phase run: the phase's Job name, which is deterministic for (rollout,
//! phase, spec digest), as the database ledger's key is. Its value is a
//! small JSON object: state (`claimed` before the Job is created, `started`
//! once it exists, then `succeeded` or `failed`), rollout, phase, digest,
//! time and message.
//!
//! Read live before any phase starts (the reconcile's live confirmation),
//! so a re-created rollout skips a phase that already finished for the
//! same spec. Each write is a merge patch of its own key, so rollouts
//! sharing a namespace never overwrite each other's entries. To run a phase
//! again on purpose, change its spec (a new digest, a new key) or delete its
//! key (`kubectl edit configmap bellows-ledger`); deleting the ConfigMap
//! forgets every phase of the namespace.

use crate::api::Step;
use crate::db::LedgerState;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// Name of the ledger ConfigMap in each namespace.
pub const NAME: &str = "bellows-ledger";

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

/// The entries of the ledger in the namespace of `api`, by key (empty when
/// it does not exist yet). A value that is not an entry is skipped.
pub async fn read(api: &Api<ConfigMap>) -> Result<BTreeMap<String, Entry>, kube::Error> {
    let data = api
        .get_opt(NAME)
        .await?
        .and_then(|cm| cm.data)
        .unwrap_or_default();
    Ok(data
        .into_iter()
        .filter_map(|(k, v)| Some((k, serde_json::from_str(&v).ok()?)))
        .collect())
}

/// Writes `entry` under `key`, creating the ConfigMap if needed.
pub async fn write(api: &Api<ConfigMap>, key: &str, entry: &Entry) -> Result<(), kube::Error> {
    let value = serde_json::to_string(entry).expect("an entry serializes");
    let patch = json!({"data": {key: value}});
    match api
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        other => return other.map(drop),
    }
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {
            "name": NAME,
            "labels": {super::job::MANAGED_BY.0: super::job::MANAGED_BY.1},
        },
        "data": {key: value},
    }))
    .expect("a ConfigMap");
    match api.create(&PostParams::default(), &cm).await {
        // Another rollout created it in between: add the key.
        Err(kube::Error::Api(e)) if e.code == 409 => api
            .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop),
        other => other.map(drop),
    }
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
