//! A workload's revisions as the cluster records them (a Deployment's
//! ReplicaSets, a StatefulSet's or DaemonSet's ControllerRevisions, a
//! CronJob's Jobs) and what they say under the version model: which revisions
//! run the new version or a later one, and whether the current template
//! rolled forward or back. Only what the cluster recorded is read, so an
//! operator restart never changes a judgement.

use super::{Standing, Verdict, Wait, standing, waiting, wanted_version};
use crate::api::WorkloadVersion;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;

/// One recorded revision of a workload's pod template.
#[derive(Clone, Debug)]
pub struct Revision {
    /// What its pods carry to name it (`pod-template-hash`,
    /// `controller-revision-hash`, `job-name`).
    pub hash: Option<String>,
    /// The pod template it runs.
    pub template: Option<PodTemplateSpec>,
    /// When the cluster created it.
    pub created: Option<Timestamp>,
}

impl Revision {
    /// A ControllerRevision of a StatefulSet or DaemonSet, named by `hash`:
    /// its template is the `spec.template` its data records.
    pub fn controller(revision: &ControllerRevision, hash: Option<String>) -> Self {
        let template = revision
            .data
            .as_ref()
            .and_then(|d| d.0.pointer("/spec/template"))
            .and_then(|t| serde_json::from_value(t.clone()).ok());
        Self {
            hash,
            template,
            created: revision.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

/// The revisions of one workload, judged against the wanted version.
pub struct History<'a> {
    revisions: Vec<Revision>,
    version: &'a WorkloadVersion,
    /// When the wanted version first ran here: the creation of the oldest
    /// revision running it; `None` also when creation order tells nothing.
    wanted_since: Option<Timestamp>,
}

impl<'a> History<'a> {
    /// The history of `revisions` for the wanted `version`, where a
    /// revision is created once per template (a rollback reuses the old
    /// one): what was created after the wanted version first ran is a
    /// later release.
    pub fn new(revisions: Vec<Revision>, version: &'a WorkloadVersion) -> Self {
        let wanted_since = revisions
            .iter()
            .filter(|r| standing_of(r, version) == Some(Standing::Wanted))
            .filter_map(|r| r.created)
            .min();
        Self {
            revisions,
            version,
            wanted_since,
        }
    }

    /// The history of `revisions` that are created anew on every run (a
    /// CronJob's Jobs): a rolled-back template runs in new Jobs too, so
    /// creation order says nothing, and a version without an order by
    /// name counts as older.
    pub fn runs(revisions: Vec<Revision>, version: &'a WorkloadVersion) -> Self {
        Self {
            wanted_since: None,
            ..Self::new(revisions, version)
        }
    }

    /// The revision whose pods carry `hash`.
    pub fn find(&self, hash: Option<&str>) -> Option<&Revision> {
        hash.and_then(|h| self.revisions.iter().find(|r| r.hash.as_deref() == Some(h)))
    }

    /// Whether the wanted version ever ran here.
    fn ran_wanted(&self) -> bool {
        self.revisions
            .iter()
            .any(|r| standing_of(r, self.version) == Some(Standing::Wanted))
    }

    /// Whether `revision` was created after the wanted version first ran (a
    /// whole second later: the times have seconds only), i.e. is a release
    /// made after the wanted one.
    fn created_after_wanted(&self, revision: &Revision) -> bool {
        matches!((revision.created, self.wanted_since), (Some(c), Some(w)) if c.as_second() > w.as_second())
    }

    /// Whether `revision` runs the new version or a later one: the wanted, a
    /// version named higher, or one that cannot be ordered by its name but
    /// was created after the wanted version first ran.
    pub fn new_or_later(&self, revision: &Revision) -> bool {
        match standing_of(revision, self.version) {
            Some(Standing::Wanted | Standing::Newer(_)) => true,
            Some(Standing::Unordered(_)) => self.created_after_wanted(revision),
            Some(Standing::Older(_)) | None => false,
        }
    }

    /// Whether a pod carrying `hash` runs the new version or a later one; a
    /// pod of no recorded revision does not.
    pub fn runs_new(&self, hash: Option<&str>) -> bool {
        self.find(hash).is_some_and(|r| self.new_or_later(r))
    }

    /// How the workload's `template` stands, `what` naming it
    /// (`Deployment api`): `Ok` with a note when it runs a later version,
    /// `Ok(None)` when it runs the wanted one, else why it waits. `current`
    /// is the revision the workload's controller recorded for the template
    /// (`None` until it did).
    pub fn judge(
        &self,
        what: &str,
        template: &PodTemplateSpec,
        current: Option<&Revision>,
        generation_observed: bool,
    ) -> Result<Option<String>, Verdict> {
        let wanted = wanted_version(self.version);
        let later = |running: &str| format!("{what} runs {running}, newer than {wanted}");
        let rolled_back = |running: &str| {
            waiting(
                Wait::RolledBack,
                format!(
                    "{what} was rolled back: it runs {running}, older than {wanted}, which ran here before"
                ),
            )
        };
        let not_updated = |running: &str| {
            waiting(
                Wait::TemplateNotUpdated,
                format!("{what} runs {running}, waiting for {wanted}"),
            )
        };
        let ran_wanted = self.ran_wanted();
        match standing(template, self.version) {
            Standing::Wanted => Ok(None),
            Standing::Newer(running) => Ok(Some(later(&running))),
            Standing::Older(running) if ran_wanted => Err(rolled_back(&running)),
            Standing::Older(running) | Standing::Unordered(running) if !ran_wanted => {
                Err(not_updated(&running))
            }
            // Without a creation order, nothing tells an unordered
            // template from a rollback.
            Standing::Unordered(running) if self.wanted_since.is_none() => Err(waiting(
                Wait::TemplateNotUpdated,
                format!(
                    "{what} runs {running}, which cannot be ordered against {wanted} by name, nor by its runs: name it as the workload's version to accept it"
                ),
            )),
            // Whether an unordered template came before or after the
            // wanted one is read from its revision, once the controller
            // recorded it.
            Standing::Unordered(_) if !generation_observed || current.is_none() => Err(waiting(
                Wait::GenerationNotObserved,
                format!("{what}: waiting for its controller to record the new revision"),
            )),
            Standing::Unordered(running)
                if current.is_some_and(|r| self.created_after_wanted(r)) =>
            {
                Ok(Some(later(&running)))
            }
            Standing::Older(running) | Standing::Unordered(running) => Err(rolled_back(&running)),
        }
    }
}

fn standing_of(revision: &Revision, version: &WorkloadVersion) -> Option<Standing> {
    revision.template.as_ref().map(|t| standing(t, version))
}
