//! The pure phase planner: observed state in, next action out.
//!
//! [`plan`] reads the SchemaRollout (spec, previous status, approval
//! annotation), what was observed about its workloads and Jobs, and the
//! current time, and returns the status to write, the side effects to carry
//! out, the events to publish and when to look again. It performs no I/O and
//! reads no clock, so every safety invariant of the design is checked by
//! plain unit tests (see `tests.rs`).

pub mod budget;
mod conditions;
mod decide;
pub mod ledger;
pub mod objective;
mod plan;
pub mod reads;
mod report;
pub mod step;
pub mod validate;
pub mod workload;
pub mod writes;

#[cfg(test)]
mod tests;

pub use plan::{
    Action, CLAIM_MARGIN, CheckProblem, CheckResult, EVENT_NOTE_LIMIT, EventIntent, EventKind,
    Observed, PhaseRun, Plan, Refused, Rejected, event_note, phase_run,
};

use crate::api::{RolloutPhase, SchemaRollout};
use jiff::Timestamp;
use kube::ResourceExt;
use sha2::Digest;
use std::time::Duration;

/// Decides the next step of `rollout` from what was observed.
pub fn plan(rollout: &SchemaRollout, observed: &Observed) -> Plan {
    decide::Planner::new(rollout, observed).run()
}

/// Time from `since` to `now`; zero when `since` lies in the future (a
/// timestamp written by a replica whose clock runs ahead), so a skewed
/// clock can only lengthen a wait such as bake time, never shorten it.
pub fn elapsed(now: Timestamp, since: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

/// Whether `rollout` has settled: Succeeded or Failed for its current
/// generation. Its ledger rows were made final before its status said so,
/// so a settled rollout needs no database: no Secret read, no query, no
/// ledger write (a spec change starts a new generation and unsettles it).
pub fn settled(rollout: &SchemaRollout) -> bool {
    rollout.status.as_ref().is_some_and(|s| {
        matches!(
            s.phase,
            Some(RolloutPhase::Succeeded | RolloutPhase::Failed)
        ) && s.observed_generation.is_some()
            && s.observed_generation == rollout.metadata.generation
    })
}

/// The value of the `bellows.dev/approve` annotation that approves
/// `rollout`'s current contract: `<metadata.uid>/<digest>`, the digest
/// covering everything that decides contract: the contract's statements or
/// Job, its checks, the database and the workloads. Bound to the object (a
/// `kubectl replace --force` gets a new uid) and to those (an edit to any
/// has a new digest), so no approval outlives what it approved or can be
/// written in advance for a contract that does not exist yet.
pub fn approval_key(rollout: &SchemaRollout) -> String {
    let spec = &rollout.spec;
    let decides = serde_json::json!({
        "contract": step::digest(&spec.contract.run),
        "checks": spec.checks(),
        "database": spec.database,
        "workloads": spec.workloads,
    });
    let bytes = serde_json::to_vec(&decides).expect("a spec always serializes");
    let hex: String = sha2::Sha256::digest(&bytes)
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}/{hex}", rollout.uid().unwrap_or_default())
}

/// The furthest wake-up a plan asks for: a timeout of years is checked
/// again hourly rather than handed to a timer it could overflow.
const MAX_REQUEUE: Duration = Duration::from_secs(60 * 60);

/// How long contract check results may be reused while they only hold
/// contract (a burst of pod events must not query the database each time).
pub const CHECKS_FRESH_FOR: Duration = Duration::from_secs(5);

/// How soon a check that holds contract is evaluated again.
const RETRY_CHECKS: Duration = CHECKS_FRESH_FOR;
/// How soon a Job the API server refused is tried again (a quota raised,
/// a policy or RBAC fixed).
const RETRY_REJECTED: Duration = Duration::from_secs(30);
/// How soon an unusable or busy database is tried again.
const RETRY_DATABASE: Duration = Duration::from_secs(15);
/// How soon workloads of a kind no watch follows ([`unwatched`]) are read
/// again while one of them holds contract.
pub const POLL_UNWATCHED: Duration = Duration::from_secs(5);

/// Whether no watch wakes a rollout when a workload of `kind` changes: the
/// controller caches and watches Deployments only, and reads the other
/// kinds live.
fn unwatched(kind: crate::api::WorkloadKind) -> bool {
    kind != crate::api::WorkloadKind::Deployment
}
