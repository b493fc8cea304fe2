//! Reads of the workload kinds the watch caches do not hold: StatefulSets,
//! DaemonSets, CronJobs and Argo Rollouts with what they created, and the
//! pods a `Pods` selector selects. They are always read from the API
//! server: in the confirmation before a phase starts, lists at least as
//! fresh as now (`fresh`), so a plan made from them is as fresh as that
//! confirmation; otherwise as its watch cache has them;
//! their changes wake no reconcile, so the planner polls while one of them
//! holds contract (`planner::POLL_UNWATCHED`).

use super::fresh::{self, Freshness};
use super::{Context, Error};
use crate::api::keys::JOB_NAME_LABEL;
use crate::api::{Workload, WorkloadKind};
use crate::planner::workload::{Assessment, Problem, argo, cronjob, daemonset, pods, statefulset};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PartialObjectMeta};
use kube::core::{GroupVersionKind, Selector};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Reads in one namespace, lists as fresh as `freshness` says.
#[derive(Clone, Copy)]
pub struct Read<'a> {
    pub ctx: &'a Context,
    pub ns: &'a str,
    pub freshness: Freshness,
}

impl Read<'_> {
    /// A StatefulSet, its ControllerRevisions and the pods it selects.
    pub async fn stateful_set(&self, rollout: &str, w: &Workload) -> Result<Assessment, Error> {
        let set = self.get::<StatefulSet>(&w.name).await?;
        let selector = set
            .as_ref()
            .and_then(|s| selecting(&s.spec.as_ref()?.selector));
        let (revisions, pods) = self.revisions_and_pods(selector.as_ref()).await?;
        Ok(statefulset::assess(
            w,
            rollout,
            set.as_ref(),
            &revisions,
            &pods,
        ))
    }

    /// A DaemonSet, its ControllerRevisions and the pods it selects.
    pub async fn daemon_set(&self, w: &Workload) -> Result<Assessment, Error> {
        let set = self.get::<DaemonSet>(&w.name).await?;
        let selector = set
            .as_ref()
            .and_then(|s| selecting(&s.spec.as_ref()?.selector));
        let (revisions, pods) = self.revisions_and_pods(selector.as_ref()).await?;
        Ok(daemonset::assess(w, set.as_ref(), &revisions, &pods))
    }

    /// A CronJob, the namespace's Jobs and the pods of Jobs.
    pub async fn cron_job(&self, rollout: &str, w: &Workload) -> Result<Assessment, Error> {
        let resource = cron_job_resource(self.ctx).await?;
        let cron =
            Api::<DynamicObject>::namespaced_with(self.ctx.client.clone(), self.ns, &resource)
                .get_opt(&w.name)
                .await
                .map_err(Error::Kube)?
                .map(|o| {
                    // Read under whichever version was served; the fields
                    // bellows reads are the same in both.
                    let spec = o.data.get("spec").cloned().unwrap_or_default();
                    serde_json::from_value(spec).map(|spec| CronJob {
                        metadata: o.metadata,
                        spec: Some(spec),
                        status: None,
                    })
                })
                .transpose()
                .map_err(|e| Error::Unreadable(format!("CronJob {}: {e}", w.name)))?;
        let Some(cron) = cron else {
            return Ok(cronjob::assess(w, rollout, None, &[], &[]));
        };
        let (all, of_jobs) = (
            ListParams::default(),
            ListParams::default().labels(JOB_NAME_LABEL),
        );
        let (jobs, pods) = futures::try_join!(self.list::<Job>(&all), self.list::<Pod>(&of_jobs))?;
        Ok(cronjob::assess(w, rollout, Some(&cron), &jobs, &pods))
    }

    /// The pods `w.selector` selects, their specs included.
    pub async fn selected_pods(&self, w: &Workload) -> Result<Assessment, Error> {
        let selector = match Selector::try_from(w.selector.clone().unwrap_or_default()) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Assessment::with_problem(
                    w,
                    Problem::Unusable(format!("Pods {}: selector: {e}", w.name)),
                ));
            }
        };
        let pods = self
            .list::<Pod>(&ListParams::default().labels_from(&selector))
            .await?;
        Ok(pods::assess(w, &selector.to_string(), &pods))
    }

    /// An Argo Rollouts Rollout, the ReplicaSets and the pods (metadata
    /// only) its selector matches; a problem when the cluster does not
    /// serve the kind (checked again on every read until it does).
    pub async fn argo_rollout(
        &self,
        rollout_name: &str,
        w: &Workload,
    ) -> Result<Assessment, Error> {
        let Some(resource) = argo_rollout_resource(self.ctx).await? else {
            return Ok(Assessment::with_problem(
                w,
                Problem::NotServed(format!(
                    "Rollout {}: this cluster does not serve argoproj.io/v1alpha1 Rollouts (is Argo Rollouts installed?)",
                    w.name
                )),
            ));
        };
        let found =
            Api::<DynamicObject>::namespaced_with(self.ctx.client.clone(), self.ns, &resource)
                .get_opt(&w.name)
                .await
                .map_err(Error::Kube)?
                .map(|o| {
                    serde_json::to_value(o).and_then(serde_json::from_value::<argo::ArgoRollout>)
                })
                .transpose()
                .map_err(|e| Error::Unreadable(format!("Rollout {}: {e}", w.name)))?;
        let selector = found
            .as_ref()
            .and_then(|r| selecting(r.spec.selector.as_ref()?));
        let (sets, pods) = match &selector {
            Some(selector) => {
                let params = ListParams::default().labels_from(selector);
                let (sets, pods) = futures::try_join!(
                    self.list::<ReplicaSet>(&params),
                    self.list_metadata::<Pod>(&params)
                )?;
                (sets, metadata_only(pods))
            }
            None => (vec![], vec![]),
        };
        Ok(argo::assess(w, rollout_name, found.as_ref(), &sets, &pods))
    }

    /// The ControllerRevisions and the pods (metadata only) `selector`
    /// selects; nothing when the workload selects nothing.
    async fn revisions_and_pods(
        &self,
        selector: Option<&Selector>,
    ) -> Result<(Vec<ControllerRevision>, Vec<Pod>), Error> {
        let Some(selector) = selector else {
            return Ok((vec![], vec![]));
        };
        let params = ListParams::default().labels_from(selector);
        let (revisions, pods) = futures::try_join!(
            self.list::<ControllerRevision>(&params),
            self.list_metadata::<Pod>(&params)
        )?;
        Ok((revisions, metadata_only(pods)))
    }

    /// Object `name` (a quorum GET: one key).
    pub(super) async fn get<K: Namespaced>(&self, name: &str) -> Result<Option<K>, Error> {
        self.api().get_opt(name).await.map_err(Error::Kube)
    }

    /// The objects `params` selects.
    pub(super) async fn list<K: Namespaced>(&self, params: &ListParams) -> Result<Vec<K>, Error> {
        let listed = fresh::list(&self.ctx.metrics, &self.api(), params, self.freshness).await;
        listed.map(|l| l.items).map_err(Error::Kube)
    }

    /// [`Read::list`], metadata only.
    pub(super) async fn list_metadata<K: Namespaced>(
        &self,
        params: &ListParams,
    ) -> Result<Vec<PartialObjectMeta<K>>, Error> {
        let m = &self.ctx.metrics;
        let listed = fresh::list_metadata(m, &self.api(), params, self.freshness).await;
        listed.map(|l| l.items).map_err(Error::Kube)
    }

    /// The API of kind `K` in this namespace.
    fn api<K: Namespaced>(&self) -> Api<K> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }
}

/// A namespaced kind bellows reads.
pub(super) trait Namespaced:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
{
}

impl<K> Namespaced for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
{
}

/// The API of `kind` as this cluster serves it, for reads and the gate's
/// writes; `None` when it does not serve it (Argo Rollouts not installed).
pub async fn resource(ctx: &Context, kind: WorkloadKind) -> Result<Option<ApiResource>, Error> {
    let gvk =
        |group, version, kind| ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Ok(match kind {
        WorkloadKind::Deployment => Some(gvk("apps", "v1", "Deployment")),
        WorkloadKind::StatefulSet => Some(gvk("apps", "v1", "StatefulSet")),
        WorkloadKind::DaemonSet => Some(gvk("apps", "v1", "DaemonSet")),
        WorkloadKind::CronJob => Some(cron_job_resource(ctx).await?),
        WorkloadKind::Rollout => argo_rollout_resource(ctx).await?,
        WorkloadKind::Pods => Some(gvk("", "v1", "Pod")),
    })
}

/// The Rollout API, if the cluster serves it: asked of the server until it
/// does, then remembered.
async fn argo_rollout_resource(ctx: &Context) -> Result<Option<ApiResource>, Error> {
    if let Some(r) = ctx.argo_rollouts.get() {
        return Ok(Some(r.clone()));
    }
    let served = match ctx
        .client
        .list_api_group_resources("argoproj.io/v1alpha1")
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == "rollouts"),
        Err(kube::Error::Api(e)) if e.code == 404 => false,
        Err(e) => return Err(Error::Kube(e)),
    };
    if !served {
        return Ok(None);
    }
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"),
        "rollouts",
    );
    Ok(Some(
        ctx.argo_rollouts
            .get_or_init(|| async { resource })
            .await
            .clone(),
    ))
}

/// The CronJob API the server serves: batch/v1 since Kubernetes 1.21,
/// batch/v1beta1 before (the fields bellows reads are the same).
async fn cron_job_resource(ctx: &Context) -> Result<ApiResource, Error> {
    let found = ctx
        .cron_jobs
        .get_or_try_init(|| async {
            let v1 = ctx
                .client
                .list_api_group_resources("batch/v1")
                .await
                .map_err(Error::Kube)?;
            let version = if v1.resources.iter().any(|r| r.name == "cronjobs") {
                "v1"
            } else {
                "v1beta1"
            };
            Ok::<_, Error>(ApiResource::from_gvk(&GroupVersionKind::gvk(
                "batch", version, "CronJob",
            )))
        })
        .await?;
    Ok(found.clone())
}

/// Pods read as metadata only (all a revision's pods are judged by).
pub fn metadata_only(metas: Vec<PartialObjectMeta<Pod>>) -> Vec<Pod> {
    metas
        .into_iter()
        .map(|m| Pod {
            metadata: m.metadata,
            ..Pod::default()
        })
        .collect()
}

/// A workload's selector, or `None` when it selects nothing (or cannot be
/// parsed).
pub fn selecting(selector: &LabelSelector) -> Option<Selector> {
    let selector = Selector::try_from(selector.clone()).ok()?;
    (!selector.selects_all()).then_some(selector)
}
