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

/// What the ledger records for each of the phase Jobs `jobs` that has a
/// record, by Job name: each from its own ConfigMap, else from the
/// [`LEGACY`] one. The reads run concurrently.
pub async fn read(
    api: &Api<ConfigMap>,
    jobs: &[&str],
) -> Result<BTreeMap<String, LedgerState>, kube::Error> {
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
            let state = recorded(job, cm, legacy.remove(*job))?;
            Some((job.to_string(), state))
        })
        .collect())
}

/// What the record of the phase Job `job` says: its own ConfigMap `own`
/// if it exists, else its key in the [`LEGACY`] one, else nothing. A
/// record bellows cannot read (a corrupted or hand-edited one, an unknown
/// state) is a failed run: bellows cannot tell whether the phase ran, so it
/// never runs it again (delete the record to run it).
fn recorded(job: &str, own: Option<ConfigMap>, legacy: Option<String>) -> Option<LedgerState> {
    let (record, entry) = match own {
        Some(cm) => {
            let data = serde_json::to_value(cm.data.unwrap_or_default()).map_err(|e| e.to_string());
            (format!("ConfigMap {}", name(job)), data)
        }
        None => (
            format!("key {job} of ConfigMap {LEGACY}"),
            serde_json::from_str::<serde_json::Value>(&legacy?).map_err(|e| e.to_string()),
        ),
    };
    let state = entry
        .and_then(|v| serde_json::from_value::<Entry>(v).map_err(|e| e.to_string()))
        .and_then(|e| {
            e.state()
                .ok_or_else(|| format!("unknown state {:?}", e.state))
        });
    Some(state.unwrap_or_else(|why| {
        LedgerState::Failed(format!(
            "the cluster ledger record ({record}) cannot be read ({why}): bellows cannot tell whether the phase ran, so it does not run it again; delete the record to run it"
        ))
    }))
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

    #[test]
    fn a_record_bellows_cannot_read_is_a_failed_run_never_an_absent_one() {
        let job = "users-expand-abc";
        let cm = |data: serde_json::Value| -> ConfigMap {
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": name(job)}, "data": data}),
            )
            .unwrap()
        };
        let good = Entry::new(&LedgerState::Succeeded, "users", Step::Expand, "abc");
        let good_data = serde_json::to_value(&good).unwrap();
        assert_eq!(
            recorded(job, Some(cm(good_data.clone())), None),
            Some(LedgerState::Succeeded)
        );
        assert_eq!(recorded(job, None, None), None, "no record: never ran");
        let mut unknown = good_data.clone();
        unknown["state"] = serde_json::json!("done");
        for (what, own, legacy) in [
            (
                "an emptied ConfigMap",
                Some(cm(serde_json::json!({}))),
                None,
            ),
            ("an unknown state", Some(cm(unknown)), None),
            ("a corrupted legacy key", None, Some("{not json".to_owned())),
        ] {
            match recorded(job, own, legacy) {
                Some(LedgerState::Failed(m)) => {
                    assert!(m.contains("cannot be read"), "{what}: {m}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}
