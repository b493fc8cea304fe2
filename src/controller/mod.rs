//! The kube-runtime controller: watches SchemaRollouts, the Jobs they own and
//! the Deployments and pods they name, and reconciles each rollout by
//! observing, planning (pure) and applying the plan.

pub mod access;
pub mod cache;
pub mod changes;
pub mod cluster_ledger;
mod context;
pub mod finalizer;
mod fresh;
pub mod gate;
pub mod index;
pub mod job;
mod kinds;
pub mod observe;
pub mod prometheus;
mod reconcile;
mod records;
pub mod seal;
pub mod slim;
mod watch;

pub use context::Context;
pub use reconcile::reconcile;
pub use watch::run;

/// Where the controller works, and how long it keeps its records.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Reconcile SchemaRollouts in these namespaces only (every namespace
    /// when empty).
    pub watch: Vec<String>,
    /// The operator's own namespace, where what bellows records about
    /// phase runs lives (`cluster_ledger`).
    pub operator: String,
    /// How long the cluster ledger keeps the records of a deleted rollout.
    pub ledger_retention: std::time::Duration,
    /// At most this many rollouts reconciled at once, per watched
    /// namespace (one rollout is never reconciled twice at once anyway).
    /// Each reconcile in flight holds what it read, so this bounds the
    /// operator's memory when a release rolls hundreds of workloads.
    pub concurrency: u16,
}

impl Scope {
    /// One entry per controller the scope needs: each watched namespace,
    /// or `None` (every namespace) when the list is empty.
    pub fn namespaces(&self) -> Vec<Option<&str>> {
        match self.watch.as_slice() {
            [] => vec![None],
            some => some.iter().map(|n| Some(n.as_str())).collect(),
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[source] kube::Error),
    /// The SchemaRollout has no namespace (it is namespaced).
    #[error("SchemaRollout has no namespace")]
    MissingNamespace,
    /// The API server refused to record a phase in the cluster ledger
    /// (not a transient error: a quota, a policy).
    #[error("the {} phase's cluster ledger record was refused: {message}", step.as_str())]
    LedgerRejected {
        /// The phase.
        step: crate::api::Step,
        /// The API server's message.
        message: String,
    },
    /// An object the API server returned could not be read.
    #[error("could not read {0}")]
    Unreadable(String),
    /// A patch could not be serialized.
    #[error("could not serialize a patch: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The database could not be used (the text never holds a credential).
    #[error("database: {0}")]
    Database(#[from] crate::db::DbError),
    /// An inline SQL phase or ledger write without `spec.database`.
    #[error("spec.database is not set")]
    NoDatabase,
    /// The phase Job's key could not be had (`seal`).
    #[error(transparent)]
    Seal(#[from] seal::SealError),
    /// A Job bellows did not create holds the phase Job's name.
    #[error("the {} Job's name is taken: {message}", step.as_str())]
    JobNameTaken {
        /// The phase.
        step: crate::api::Step,
        /// Which Job, and what to do.
        message: String,
    },
    /// The API server refused to create a phase's Job (not a transient
    /// error: a forbidden, invalid or over-quota spec).
    #[error("the {} Job was refused: {message}", step.as_str())]
    JobRejected {
        /// The phase.
        step: crate::api::Step,
        /// The API server's message.
        message: String,
    },
}

impl Error {
    /// What the API server refused to start a phase with, if that is the
    /// error: the planner turns it into a stall.
    pub fn rejected(&self) -> Option<crate::planner::Rejected> {
        use crate::planner::{Refused, Rejected};
        let (step, what, message) = match self {
            Self::JobRejected { step, message } => (step, Refused::Job, message),
            Self::LedgerRejected { step, message } => (step, Refused::Ledger, message),
            Self::JobNameTaken { step, message } => (step, Refused::NameTaken, message),
            _ => return None,
        };
        Some(Rejected {
            step: *step,
            what,
            message: message.clone(),
        })
    }

    /// A fixed, low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::MissingNamespace => "missing_namespace",
            Self::Unreadable(_) => "unreadable",
            Self::Serialize(_) => "serialize",
            Self::Database(_) => "database",
            Self::NoDatabase => "no_database",
            Self::JobRejected { .. } => "job_rejected",
            Self::LedgerRejected { .. } => "ledger_rejected",
            Self::Seal(_) => "seal",
            Self::JobNameTaken { .. } => "job_name_taken",
        }
    }
}
