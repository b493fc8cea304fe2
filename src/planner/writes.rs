//! Which status writes are worth a request. Status is what users and tools
//! read (`kubectl get`, `kubectl bellows status`, Argo CD's health, alerts
//! on conditions), so a change to what they act on is written at once: the
//! phase, a condition's type, status or reason, the hold reason, a step, a
//! workload's verdict, the approval key. Counters (pod counts, and the
//! messages that quote them) change with every pod event of a rolling
//! Deployment; written at once they cost a request per pod event and keep
//! the rollout's next reconcile waiting behind the write, so they are
//! written at most once per [`COUNTER_INTERVAL`].

use crate::api::SchemaRolloutStatus;
use std::time::Duration;

/// The shortest time between two writes that only change counters.
pub const COUNTER_INTERVAL: Duration = Duration::from_secs(5);

/// What to do with a planned status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusWrite {
    /// Write it now.
    Now,
    /// Nothing to write: the API server has it already.
    Skip,
    /// Only counters changed and the last write was recent: write it after
    /// this delay (the reconcile requeues for it).
    Later(Duration),
}

/// Decides the write of `planned`, given the status the reconcile read
/// (`read`, from a cache that may lag) and the last one this process wrote
/// for the rollout with how long ago (`written`). The API server holds the
/// last status written, which is never older than the one read: a status
/// equal to it is not written again (a lagging cache would otherwise cause
/// a repeat write). Before this process wrote one, it holds the one read.
pub fn status_write(
    read: Option<&SchemaRolloutStatus>,
    written: Option<(&SchemaRolloutStatus, Duration)>,
    planned: &SchemaRolloutStatus,
) -> StatusWrite {
    let (current, since) = match written {
        Some((w, ago)) => (Some(w), Some(ago)),
        None => (read, None),
    };
    if current == Some(planned) {
        return StatusWrite::Skip;
    }
    let counters_only = current.is_some_and(|c| visible(c) == visible(planned));
    match since {
        Some(ago) if counters_only && ago < COUNTER_INTERVAL => {
            StatusWrite::Later(COUNTER_INTERVAL - ago)
        }
        _ => StatusWrite::Now,
    }
}

/// `status` without its counters and the messages that quote them.
fn visible(status: &SchemaRolloutStatus) -> SchemaRolloutStatus {
    let mut s = status.clone();
    s.message = None;
    for c in &mut s.conditions {
        c.message = String::new();
    }
    for w in &mut s.workloads {
        w.replicas = 0;
        w.new_pods = 0;
        w.old_pods = 0;
        w.message = None;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RolloutPhase, WorkloadStatus};

    fn waiting(old_pods: i32) -> SchemaRolloutStatus {
        SchemaRolloutStatus {
            phase: Some(RolloutPhase::AwaitingRollout),
            message: Some(format!("api: {old_pods} pod(s) of an older version remain")),
            workloads: vec![WorkloadStatus {
                name: "api".into(),
                reason: Some("OldPodsRemain".into()),
                old_pods,
                message: Some(format!("{old_pods} pod(s) of an older version remain")),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    const RECENT: Duration = Duration::from_secs(1);

    #[test]
    fn a_status_the_api_server_has_is_not_written_again() {
        let s = waiting(2);
        assert_eq!(status_write(Some(&s), None, &s), StatusWrite::Skip);
        // The cache still shows an older status, but this process wrote
        // the planned one.
        let stale = waiting(3);
        assert_eq!(
            status_write(Some(&stale), Some((&s, RECENT)), &s),
            StatusWrite::Skip
        );
    }

    #[test]
    fn counters_are_written_at_most_once_per_interval() {
        let (before, after) = (waiting(3), waiting(2));
        assert_eq!(
            status_write(Some(&before), Some((&before, RECENT)), &after),
            StatusWrite::Later(COUNTER_INTERVAL - RECENT)
        );
        let long_ago = COUNTER_INTERVAL + RECENT;
        assert_eq!(
            status_write(Some(&before), Some((&before, long_ago)), &after),
            StatusWrite::Now
        );
        // Nothing written by this process yet (a restart): write.
        assert_eq!(status_write(Some(&before), None, &after), StatusWrite::Now);
    }

    #[test]
    fn a_change_users_act_on_is_written_at_once() {
        let before = waiting(1);
        let mut contracting = waiting(0);
        contracting.phase = Some(RolloutPhase::Contracting);
        assert_eq!(
            status_write(Some(&before), Some((&before, RECENT)), &contracting),
            StatusWrite::Now
        );
        let mut verdict = waiting(1);
        verdict.workloads[0].reason = Some("ReplicasNotReady".into());
        assert_eq!(
            status_write(Some(&before), Some((&before, RECENT)), &verdict),
            StatusWrite::Now
        );
        // Compared with what was written last, not with a lagging read.
        let mut held = waiting(1);
        held.hold_reason = Some("RolledBack".into());
        assert_eq!(
            status_write(Some(&before), Some((&held, RECENT)), &before),
            StatusWrite::Now,
            "the hold was lifted: the API server holds it, the cache not yet"
        );
    }
}
