//! Every reason bellows writes into a condition, an event or
//! `status.holdReason`, as one enum. Users' tools match these strings (the
//! README and docs, the Argo CD Lua, the alert rules, the e2e suite), so
//! `tests` below pins the list: renaming one is a visible change.

macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        /// A CamelCase reason; its string is the variant's name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])+ $name,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &[Reason] = &[$(Reason::$name,)+];

            /// The string written to the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)+
                }
            }
        }
    };
}

reasons! {
    /// Event: the expand Job was created or its SQL started.
    ExpandStarted,
    /// Event: expand succeeded.
    ExpandSucceeded,
    /// Event and stall: expand failed.
    ExpandFailed,
    /// Event: the transition step started.
    TransitionStarted,
    /// Event: transition succeeded.
    TransitionSucceeded,
    /// Event and stall: transition failed.
    TransitionFailed,
    /// Event: the contract step started.
    ContractStarted,
    /// Event: contract succeeded.
    ContractSucceeded,
    /// Event and stall: contract failed.
    ContractFailed,
    /// Event: every workload runs only the new version or a later one.
    RolloutObserved,
    /// Event: contract is held, the note says why.
    ContractHeld,
    /// Event and Ready reason: the rollout is done.
    Succeeded,
    /// Event: a re-created rollout found a step done in the ledger.
    PhaseAlreadyDone,
    /// Event: a deleted rollout resumed what its gate had paused.
    WorkloadsResumed,
    /// Event (Warning): a rollout deleted before its expand succeeded left
    /// what its gate paused paused.
    WorkloadsLeftPaused,
    /// Stall: the API server refused to create a Job.
    JobRejected,
    /// Stall: the API server refused bellows' record of a phase in the
    /// cluster ledger (a quota on ConfigMaps, admission): nothing starts.
    LedgerRejected,
    /// Stall: a Job bellows did not create (no valid seal) holds the
    /// phase Job's name: nothing starts until it is gone.
    JobNameTaken,
    /// Stall: a Job was deleted before it finished.
    JobDeleted,
    /// Stall: the spec breaks a rule the schema could not state.
    InvalidSpec,
    /// Stall: an expand statement breaks the old version's pods (a lint
    /// rule, not allowed).
    UnsafeExpand,
    /// Event (Warning): an inline statement the parser could not read; the
    /// lint did not check it.
    SqlNotAnalysed,
    /// Stall: an inline item the tokenizer cannot read (not allowed with
    /// `-- bellows:allow unreadable`); nothing runs.
    SqlUnreadable,
    /// Event: a lint finding allowed by `allow` or a `bellows:allow` comment.
    UnsafeAllowed,
    /// Event (Warning): a transition or contract statement blocks writes
    /// for long (a non-concurrent index, a table rewrite).
    BlocksWrites,
    /// Stall: a listed workload does not exist.
    WorkloadNotFound,
    /// Stall: the cluster does not serve a listed workload's kind (Argo
    /// Rollouts is not installed).
    WorkloadKindNotServed,
    /// Stall: the version names a container the Deployment lacks.
    ContainerNotFound,
    /// Stall: a Secret a Job needs does not exist.
    SecretNotFound,
    /// Stall: a ConfigMap a Job needs does not exist.
    ConfigMapNotFound,
    /// Stall: `spec.database` or its Secrets cannot give a connection.
    DatabaseConfigInvalid,
    /// Stall: the database cannot be reached or refused the login.
    DatabaseUnavailable,
    /// Stall: a database query failed.
    DatabaseError,
    /// Hold: another rollout runs a step on the same database.
    DatabaseBusy,
    /// Hold and Reconciling reason: `spec.paused`.
    Paused,
    /// Hold and workload reason: a workload went back to an older version.
    RolledBack,
    /// Stall and workload reason: a Deployment exceeded its progress deadline.
    ProgressDeadlineExceeded,
    /// Hold: a workload is still rolling out.
    RolloutInProgress,
    /// Stall: workloads not rolled out within `timeouts.rollout`.
    RolloutTimedOut,
    /// Hold: bake time has not elapsed.
    Baking,
    /// Hold: waiting for approval.
    AwaitingApproval,
    /// Hold: contract checks not evaluated yet.
    ChecksPending,
    /// Hold: a contract check is false.
    CheckFailed,
    /// Hold, or with `onViolation: Fail` the rollout failed: an objective's
    /// last measurement is out of its bounds.
    ObjectiveViolated,
    /// Hold: an objective has no data to judge by (Prometheus unreachable,
    /// an empty result, NaN or Inf); never passed by time.
    ObjectiveInconclusive,
    /// Hold: the objectives have not passed enough times in a row yet.
    ObjectivesPending,
    /// Stall: Prometheus rejected an objective's query.
    ObjectiveQueryRejected,
    /// Stall, before expand: the Prometheus of `spec.prometheus` could not
    /// be reached or did not answer in time.
    PrometheusUnreachable,
    /// Hold, before expand or contract: less of the downtime budget is
    /// left than `spec.budget.floor`.
    BudgetExhausted,
    /// Hold, before expand or contract: no number for the budget left to
    /// compare with `spec.budget.floor` (never a pass).
    BudgetUnknown,
    /// Hold: a contract check could not be evaluated.
    CheckError,
    /// Hold: a check ran but returned no row, several rows, NULL or a
    /// non-boolean.
    CheckInvalid,
    /// Workload reason: the pod template does not run the new version yet.
    TemplateNotUpdated,
    /// Workload reason: the Deployment controller has not seen the spec.
    GenerationNotObserved,
    /// Workload reason: not every replica is updated and available.
    ReplicasNotReady,
    /// Workload reason: no ReplicaSet of the current revision yet.
    NewReplicaSetNotFound,
    /// Workload reason: pods of an older version remain.
    OldPodsRemain,
    /// Workload reason: the workload or its container is missing.
    Unavailable,
    /// Workload reason: a StatefulSet's `partition` keeps pods on an older
    /// revision.
    PartitionHolds,
    /// Workload reason: a StatefulSet with the `OnDelete` strategy keeps
    /// pods of an older revision until someone deletes them.
    OnDeleteHolds,
    /// Workload reason: a CronJob is suspended on an older job template.
    CronJobSuspended,
    /// Workload reason: a Job created from an older template is active.
    OldJobsActive,
    /// Workload reason: a `Pods` selector selects no pod.
    NoPodsSelected,
    /// Workload reason: an Argo Rollout's update was aborted.
    RolloutAborted,
    /// Workload reason: an Argo Rollout is paused before it was promoted.
    RolloutPaused,
    /// RolledOut reason: every workload runs only the new version or a later one.
    AllWorkloadsRolledOut,
    /// Stalled reason when not stalled.
    NotStalled,
    /// Expanded/Contracted reason: the step has not started.
    NotStarted,
    /// Expanded/Contracted reason: the step runs.
    Running,
    /// Expanded/Contracted reason: the step failed.
    Failed,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn the_reason_strings_users_match_on_are_pinned() {
        let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            all,
            [
                "ExpandStarted",
                "ExpandSucceeded",
                "ExpandFailed",
                "TransitionStarted",
                "TransitionSucceeded",
                "TransitionFailed",
                "ContractStarted",
                "ContractSucceeded",
                "ContractFailed",
                "RolloutObserved",
                "ContractHeld",
                "Succeeded",
                "PhaseAlreadyDone",
                "WorkloadsResumed",
                "WorkloadsLeftPaused",
                "JobRejected",
                "LedgerRejected",
                "JobNameTaken",
                "JobDeleted",
                "InvalidSpec",
                "UnsafeExpand",
                "SqlNotAnalysed",
                "SqlUnreadable",
                "UnsafeAllowed",
                "BlocksWrites",
                "WorkloadNotFound",
                "WorkloadKindNotServed",
                "ContainerNotFound",
                "SecretNotFound",
                "ConfigMapNotFound",
                "DatabaseConfigInvalid",
                "DatabaseUnavailable",
                "DatabaseError",
                "DatabaseBusy",
                "Paused",
                "RolledBack",
                "ProgressDeadlineExceeded",
                "RolloutInProgress",
                "RolloutTimedOut",
                "Baking",
                "AwaitingApproval",
                "ChecksPending",
                "CheckFailed",
                "ObjectiveViolated",
                "ObjectiveInconclusive",
                "ObjectivesPending",
                "ObjectiveQueryRejected",
                "PrometheusUnreachable",
                "BudgetExhausted",
                "BudgetUnknown",
                "CheckError",
                "CheckInvalid",
                "TemplateNotUpdated",
                "GenerationNotObserved",
                "ReplicasNotReady",
                "NewReplicaSetNotFound",
                "OldPodsRemain",
                "Unavailable",
                "PartitionHolds",
                "OnDeleteHolds",
                "CronJobSuspended",
                "OldJobsActive",
                "NoPodsSelected",
                "RolloutAborted",
                "RolloutPaused",
                "AllWorkloadsRolledOut",
                "NotStalled",
                "NotStarted",
                "Running",
                "Failed",
            ]
        );
    }
}
