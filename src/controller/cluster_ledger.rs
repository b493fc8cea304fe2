//! The cluster ledger: what bellows knows about a rollout's Job phases
//! when it has no database to keep a ledger in. One ConfigMap per phase
//! run, `bellows-ledger.<namespace>.<Job name>`, in the operator's own
//! namespace (`--operator-namespace`), where the editors of a rollout's
//! namespace cannot write: a forged or deleted record there takes cluster
//! rights. The Job name is deterministic for rollout, phase and spec
//! digest, as the database ledger's key is. Owned by nothing, so deleting
//! a SchemaRollout, or Argo CD pruning and re-creating it, leaves it alone.
//! Its data: state (`claimed` before the Job is created, `started` once it
//! exists, then `succeeded` or `failed`), namespace, rollout, phase,
//! digest, time and message.
//!
//! Read live before any phase starts (the reconcile's live confirmation),
//! so a re-created rollout skips a phase that already finished for the
//! same spec. Each phase run has its own small object with one writer, so
//! a write is one server-side apply that never conflicts with another
//! rollout's and no object grows with the number of runs. To run a phase
//! again on purpose, change its spec (a new digest) or have a cluster
//! admin delete its record.
//!
//! Retention: a record whose rollout is gone is marked with the time
//! bellows first found it gone ([`GONE_SINCE`]) and deleted once that is
//! longer ago than `--ledger-retention` (30 days by default); a rollout
//! of that name re-created meanwhile takes the mark away. So a rollout
//! deleted and applied again within the retention skips what already ran.
//!
//! Earlier releases kept these records in the rollout's own namespace
//! (`bellows-ledger-<Job>` and one shared `bellows-ledger`); anyone who
//! can write ConfigMaps there could forge them, so they are not read.

use crate::api::keys;
use crate::api::{SchemaRollout, Step};
use crate::db::LedgerState;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// The record of the phase Job `job` of namespace `namespace`. A
/// namespace name holds no dot, so the first dot after the prefix ends it.
pub fn name(namespace: &str, job: &str) -> String {
    format!("bellows-ledger.{namespace}.{job}")
}

/// Annotation on a record: when bellows first found its rollout gone.
pub const GONE_SINCE: &str = "bellows.dev/rollout-gone-since";

/// One phase run, as stored under its Job's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `claimed`, `started`, `succeeded` or `failed`.
    pub state: String,
    /// The SchemaRollout's namespace.
    pub namespace: String,
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
    /// An entry in `state` for `namespace`/`rollout`'s `step` at `digest`,
    /// written now.
    pub fn new(
        state: &LedgerState,
        namespace: &str,
        rollout: &str,
        step: Step,
        digest: &str,
    ) -> Self {
        let (state, message) = match state {
            LedgerState::Claimed => ("claimed", None),
            LedgerState::Started { .. } => ("started", None),
            LedgerState::Succeeded => ("succeeded", None),
            LedgerState::Failed(m) => ("failed", Some(m.clone())),
        };
        Self {
            state: state.into(),
            namespace: namespace.into(),
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

/// What the ledger in `home` (the operator's namespace) records for each
/// of the phase Jobs `jobs` of `namespace` that has a record, by Job name.
/// The reads run concurrently.
pub async fn read(
    home: &Api<ConfigMap>,
    namespace: &str,
    jobs: &[&str],
) -> Result<BTreeMap<String, LedgerState>, kube::Error> {
    let records = futures::future::try_join_all(
        jobs.iter()
            .map(|job| async move { home.get_opt(&name(namespace, job)).await }),
    )
    .await?;
    Ok(jobs
        .iter()
        .zip(records)
        .filter_map(|(job, cm)| Some((job.to_string(), recorded(&cm?))))
        .collect())
}

/// What the record `cm` says. A record bellows cannot read (a corrupted
/// or hand-edited one, an unknown state) is a failed run: bellows cannot
/// tell whether the phase ran, so it never runs it again (delete the
/// record to run it).
fn recorded(cm: &ConfigMap) -> LedgerState {
    let state = serde_json::to_value(cm.data.clone().unwrap_or_default())
        .and_then(serde_json::from_value::<Entry>)
        .map_err(|e| e.to_string())
        .and_then(|e| {
            e.state()
                .ok_or_else(|| format!("unknown state {:?}", e.state))
        });
    state.unwrap_or_else(|why| {
        LedgerState::Failed(format!(
            "the cluster ledger record (ConfigMap {}) cannot be read ({why}): bellows cannot tell whether the phase ran, so it does not run it again; delete the record to run it",
            cm.metadata.name.as_deref().unwrap_or_default()
        ))
    })
}

/// Records `entry` for the phase Job `job` in `home`: one server-side
/// apply that creates its ConfigMap or replaces what bellows wrote there
/// before.
pub async fn write(home: &Api<ConfigMap>, job: &str, entry: &Entry) -> Result<(), kube::Error> {
    let name = name(&entry.namespace, job);
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": {
                keys::MANAGED_BY.0: keys::MANAGED_BY.1,
                keys::STEP_LABEL: entry.step,
            },
        },
        "data": entry,
    });
    home.patch(
        &name,
        &PatchParams::apply(keys::FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(drop)
}

/// What a prune pass does with one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tend {
    /// Nothing.
    Keep,
    /// Its rollout is gone: mark since when.
    MarkGone,
    /// Its rollout is back: take the mark away.
    Unmark,
    /// Its rollout has been gone longer than the retention.
    Delete,
}

/// What to do with a record marked gone since `gone_since` (if marked)
/// whose rollout exists or not, at `now`, keeping records of a gone
/// rollout for `retention`. A mark bellows cannot read counts as made now.
pub fn tend(gone_since: Option<&str>, exists: bool, now: Timestamp, retention: Duration) -> Tend {
    match (gone_since, exists) {
        (None, true) => Tend::Keep,
        (Some(_), true) => Tend::Unmark,
        (None, false) => Tend::MarkGone,
        (Some(since), false) => {
            let Ok(since) = since.parse::<Timestamp>() else {
                return Tend::MarkGone;
            };
            let gone = now.duration_since(since);
            let retention =
                jiff::SignedDuration::try_from(retention).unwrap_or(jiff::SignedDuration::MAX);
            if gone > retention {
                Tend::Delete
            } else {
                Tend::Keep
            }
        }
    }
}

/// One prune pass over the records in `home` of rollouts in `watch` (every
/// namespace when `None`): each record's rollout is read live; a record
/// bellows cannot read, or whose rollout cannot be read, is left alone.
/// Returns how many records it deleted.
pub async fn prune(
    client: &Client,
    home: &Api<ConfigMap>,
    watch: Option<&str>,
    retention: Duration,
) -> Result<usize, kube::Error> {
    let selector = format!(
        "{}={},{}",
        keys::MANAGED_BY.0,
        keys::MANAGED_BY.1,
        keys::STEP_LABEL
    );
    let records = home.list(&ListParams::default().labels(&selector)).await?;
    let mut deleted = 0;
    for cm in records {
        let Some((namespace, rollout)) = owner(&cm) else {
            continue;
        };
        if watch.is_some_and(|w| w != namespace) {
            continue;
        }
        let rollouts: Api<SchemaRollout> = Api::namespaced(client.clone(), &namespace);
        let exists = match rollouts.get_opt(&rollout).await {
            Ok(found) => found.is_some(),
            Err(e) => {
                tracing::warn!(record = %cm.name_any(), error = %e, "cannot tell whether the record's rollout exists; kept");
                continue;
            }
        };
        let name = cm.name_any();
        let since = cm.annotations().get(GONE_SINCE).map(String::as_str);
        let mark = match tend(since, exists, Timestamp::now(), retention) {
            Tend::Keep => continue,
            Tend::MarkGone => json!(Timestamp::now().to_string()),
            Tend::Unmark => serde_json::Value::Null,
            Tend::Delete => {
                home.delete(&name, &DeleteParams::default()).await?;
                tracing::info!(record = %name, %namespace, %rollout, "pruned the ledger record of a deleted rollout");
                deleted += 1;
                continue;
            }
        };
        let patch = json!({"metadata": {"annotations": {GONE_SINCE: mark}}});
        home.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(deleted)
}

/// The namespace and rollout a record is about, if bellows can read it.
fn owner(cm: &ConfigMap) -> Option<(String, String)> {
    let data = cm.data.as_ref()?;
    Some((data.get("namespace")?.clone(), data.get("rollout")?.clone()))
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
            let entry = Entry::new(&state, "shop", "users", Step::Contract, "abc123");
            let text = serde_json::to_string(&entry).unwrap();
            let back: Entry = serde_json::from_str(&text).unwrap();
            assert_eq!(back.state(), Some(state));
            assert_eq!(
                (
                    back.step.as_str(),
                    back.namespace.as_str(),
                    back.rollout.as_str()
                ),
                ("contract", "shop", "users")
            );
        }
        let unknown = Entry {
            state: "paused".into(),
            ..Entry::new(&LedgerState::Claimed, "shop", "users", Step::Expand, "abc")
        };
        assert_eq!(unknown.state(), None);
    }

    #[test]
    fn record_names_keep_namespace_and_job_apart() {
        assert_eq!(
            name("shop", "users-expand-abc"),
            "bellows-ledger.shop.users-expand-abc"
        );
        assert_ne!(name("a-b", "c"), name("a", "b-c"));
        // The longest namespace (63) and Job name (63) fit a ConfigMap name.
        assert!(name(&"n".repeat(63), &"j".repeat(63)).len() <= 253);
    }

    #[test]
    fn a_record_bellows_cannot_read_is_a_failed_run_never_an_absent_one() {
        let cm = |data: serde_json::Value| -> ConfigMap {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name("shop", "users-expand-abc")}, "data": data,
            }))
            .unwrap()
        };
        let good = Entry::new(
            &LedgerState::Succeeded,
            "shop",
            "users",
            Step::Expand,
            "abc",
        );
        let good_data = serde_json::to_value(&good).unwrap();
        assert_eq!(recorded(&cm(good_data.clone())), LedgerState::Succeeded);
        let mut unknown = good_data.clone();
        unknown["state"] = serde_json::json!("done");
        for (what, data) in [
            ("an emptied ConfigMap", serde_json::json!({})),
            ("an unknown state", unknown),
        ] {
            match recorded(&cm(data)) {
                LedgerState::Failed(m) => {
                    assert!(
                        m.contains("cannot be read") && m.contains("bellows-ledger.shop."),
                        "{what}: {m}"
                    )
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn records_of_a_rollout_gone_longer_than_the_retention_are_deleted() {
        let now: Timestamp = "2026-12-31T00:00:00Z".parse().unwrap();
        let days = |n: u64| Duration::from_secs(n * 86_400);
        let retention = days(30);
        for (since, exists, want) in [
            (None, true, Tend::Keep),
            (None, false, Tend::MarkGone),
            (Some("2026-12-30T00:00:00Z"), false, Tend::Keep),
            (Some("2026-12-01T00:00:00Z"), false, Tend::Keep),
            (Some("2026-11-30T23:59:00Z"), false, Tend::Delete),
            // Re-created within the retention: the mark goes.
            (Some("2026-11-01T00:00:00Z"), true, Tend::Unmark),
            (Some("garbage"), false, Tend::MarkGone),
            // A mark from a clock ahead of this one: gone for no time yet.
            (Some("2027-06-01T00:00:00Z"), false, Tend::Keep),
        ] {
            assert_eq!(
                tend(since, exists, now, retention),
                want,
                "{since:?} {exists}"
            );
        }
    }
}
