//! Every Kubernetes API permission the operator uses, in one place. The
//! Helm chart's ClusterRole (or Role), operator-namespace Role and
//! leader-election Role must grant
//! exactly these (`tests/chart.rs` compares them), and the e2e suite runs
//! the operator with the chart's ServiceAccount and fails on any 403
//! (`bellows_api_forbidden_total`, and the `API request forbidden` log
//! line). A new call to the API server starts here.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

/// One API resource and the verbs the operator uses on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Resource, with `/subresource` where one is used.
    pub resource: &'static str,
    /// The verbs, sorted.
    pub verbs: &'static [&'static str],
    /// The calls that need them.
    pub why: &'static str,
}

/// What the controller needs in every namespace it reconciles.
pub const CONTROLLER: &[Access] = &[
    Access {
        group: "bellows.dev",
        resource: "schemarollouts",
        verbs: &["get", "list", "patch", "watch"],
        why: "the SchemaRollout watch (controller::run), the cleanup finalizer (controller::finalizer), the live re-read before a phase starts (reconcile::changed_since)",
    },
    Access {
        group: "bellows.dev",
        resource: "schemarollouts/status",
        verbs: &["get", "patch"],
        why: "status by server-side apply (reconcile::write_status)",
    },
    Access {
        group: "batch",
        resource: "jobs",
        verbs: &["create", "get", "list", "watch"],
        why: "the Job cache, a recorded Job read live (observe), phase Jobs (reconcile::apply), a CronJob workload's Jobs (controller::kinds)",
    },
    Access {
        group: "apps",
        resource: "deployments",
        verbs: &["get", "list", "patch", "watch"],
        why: "the Deployment cache and live reads (observe), the gate's pause and resume (controller::gate)",
    },
    Access {
        group: "apps",
        resource: "replicasets",
        verbs: &["get", "list", "watch"],
        why: "the ReplicaSet cache and live lists (observe, an Argo Rollout's in controller::kinds)",
    },
    Access {
        group: "apps",
        resource: "statefulsets",
        verbs: &["get", "patch"],
        why: "StatefulSet workloads, read live (controller::kinds), the gate's partition (controller::gate)",
    },
    Access {
        group: "apps",
        resource: "daemonsets",
        verbs: &["get"],
        why: "DaemonSet workloads, read live (controller::kinds)",
    },
    Access {
        group: "apps",
        resource: "controllerrevisions",
        verbs: &["list"],
        why: "the revisions of StatefulSet and DaemonSet workloads (controller::kinds)",
    },
    Access {
        group: "batch",
        resource: "cronjobs",
        verbs: &["get", "patch"],
        why: "CronJob workloads, read live (controller::kinds), the gate's suspend (controller::gate)",
    },
    Access {
        group: "argoproj.io",
        resource: "rollouts",
        verbs: &["get", "patch"],
        why: "Argo Rollouts workloads, read live where the CRD exists (controller::kinds), the gate's pause (controller::gate)",
    },
    Access {
        group: "",
        resource: "pods",
        verbs: &["get", "list", "watch"],
        why: "the pod metadata cache and live lists (observe, controller::kinds)",
    },
    Access {
        group: "",
        resource: "secrets",
        verbs: &["get"],
        why: "a Job's referenced Secrets exist (observe), database credentials (db::connect)",
    },
    Access {
        group: "",
        resource: "configmaps",
        verbs: &["get"],
        why: "a Job's referenced ConfigMaps exist (observe)",
    },
    Access {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        why: "events (kube's Recorder creates, then patches a repeated one)",
    },
];

/// What the controller needs in its own namespace (`--operator-namespace`),
/// where namespace editors cannot write.
pub const OPERATOR_NAMESPACE: &[Access] = &[
    Access {
        group: "",
        resource: "configmaps",
        verbs: &["create", "delete", "get", "list", "patch"],
        why: "the cluster ledger of rollouts without a database, pruned of deleted rollouts' records (controller::cluster_ledger)",
    },
    Access {
        group: "",
        resource: "secrets",
        verbs: &["create", "get"],
        why: "the key of the seal on phase Jobs, made on first use (controller::seal)",
    },
];

/// What leader election needs in the Lease's namespace (`leader::Elector`).
pub const LEADER_ELECTION: &[Access] = &[Access {
    group: "coordination.k8s.io",
    resource: "leases",
    verbs: &["create", "get", "update"],
    why: "read, create and renew the Lease (leader::Elector)",
}];

/// The permissions of `list` that this client's identity lacks in
/// `namespace` (every namespace when `None`), as `verb resource.group`,
/// asked of the API server with SelfSubjectAccessReviews (which every
/// authenticated identity may create).
pub async fn missing(
    client: &Client,
    list: &[Access],
    namespace: Option<&str>,
) -> Result<Vec<String>, kube::Error> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let asks = list
        .iter()
        .flat_map(|a| a.verbs.iter().map(move |v| (a, *v)));
    let answers = futures::future::try_join_all(asks.map(|(a, verb)| {
        let reviews = reviews.clone();
        async move {
            let (resource, subresource) = match a.resource.split_once('/') {
                Some((r, s)) => (r, Some(s.to_owned())),
                None => (a.resource, None),
            };
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(a.group.to_owned()),
                        resource: Some(resource.to_owned()),
                        subresource,
                        verb: Some(verb.to_owned()),
                        namespace: namespace.map(str::to_owned),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = reviews.create(&PostParams::default(), &review).await?;
            let allowed = answer.status.is_some_and(|s| s.allowed);
            let dot = if a.group.is_empty() { "" } else { "." };
            let name = format!("{verb} {}{dot}{}", a.resource, a.group);
            Ok::<_, kube::Error>((!allowed).then_some(name))
        }
    }))
    .await?;
    Ok(answers.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_sorted_and_resources_listed_once() {
        for list in [CONTROLLER, OPERATOR_NAMESPACE, LEADER_ELECTION] {
            let mut seen = std::collections::BTreeSet::new();
            for a in list {
                assert!(a.verbs.is_sorted(), "{} verbs unsorted", a.resource);
                assert!(!a.verbs.contains(&"*"), "no wildcard verbs");
                assert!(seen.insert((a.group, a.resource)), "{} twice", a.resource);
            }
        }
    }
}
