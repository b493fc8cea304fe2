//! A CronJob's rollout: its job template runs the new version (or a later
//! one), and no Job or pod created from an older template is still active
//! (a pod whose containers stopped, Succeeded or Failed, is not).
//! A CronJob records no revisions; its Jobs are its history. A rolled-back
//! template runs in new Jobs too, so their creation order tells nothing:
//! a version without an order by name counts as older. A suspended
//! CronJob on an older template holds: it would run the old version the
//! moment it is resumed.

use super::history::{History, Revision};
use super::{
    Assessment, Verdict, Wait, controlled_by, old_pods_remain, pod_runs_new, stopped, waiting,
};
use crate::api::Workload;
use crate::api::keys::JOB_NAME_LABEL;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Assesses a CronJob (if it exists) from the Jobs in its namespace and the
/// pods of Jobs (those with a `job-name` label).
pub fn assess(
    workload: &Workload,
    rollout_name: &str,
    cron: Option<&CronJob>,
    jobs: &[Job],
    pods: &[Pod],
) -> Assessment {
    let Some(cron) = cron else {
        return Assessment::not_found(workload);
    };
    let spec = cron.spec.clone().unwrap_or_default();
    let template = spec.job_template.spec.clone().unwrap_or_default().template;
    let mut out = Assessment::new(workload);
    out.held(spec.suspend == Some(true), &cron.metadata, rollout_name);
    if let Some(missing) = out.missing_container(workload, &template) {
        return missing;
    }
    let what = format!("CronJob {}", workload.name);

    let owned: Vec<&Job> = jobs
        .iter()
        .filter(|j| controlled_by(&j.metadata, cron.metadata.uid.as_ref()))
        .collect();
    let recorded = |j: &Job| Revision {
        hash: Some(j.name_any()),
        template: j.spec.as_ref().map(|s| s.template.clone()),
        created: j.metadata.creation_timestamp.as_ref().map(|t| t.0),
    };
    let history = History::runs(
        owned.iter().map(|j| recorded(j)).collect(),
        &workload.version,
    );
    // The pods of this CronJob's Jobs, those deleted already included (the
    // controller names them `<cronjob>-<schedule time>`).
    let prefix = format!("{}-", workload.name);
    let ours = |pod: &&Pod| {
        pod.labels().get(JOB_NAME_LABEL).is_some_and(|job| {
            owned.iter().any(|j| &j.name_any() == job)
                || job.strip_prefix(&prefix).is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                })
        })
    };
    let pods: Vec<Pod> = pods
        .iter()
        .filter(ours)
        .filter(|p| !stopped(p))
        .cloned()
        .collect();
    // A pod of a Job still here is judged by its Job's template; one whose
    // Job is gone, by its own spec.
    let old_terminating = out.count(&pods, |pod| {
        let job = pod.labels().get(JOB_NAME_LABEL).map(String::as_str);
        match history.find(job) {
            Some(r) => history.new_or_later(r),
            None => pod_runs_new(pod, &workload.version),
        }
    });
    let active_old: Vec<String> = owned
        .iter()
        .filter(|j| !finished(j) && !history.runs_new(Some(&j.name_any())))
        .map(|j| j.name_any())
        .collect();

    let judged = history
        .judge(&what, &template, None, true)
        .map(|note| out.note = note);
    out.verdict = match judged {
        Err(Verdict::Waiting(_, message)) if spec.suspend == Some(true) => waiting(
            Wait::CronJobSuspended,
            format!("{message}; it is suspended and would run that version when resumed"),
        ),
        Err(verdict) => verdict,
        Ok(()) if !active_old.is_empty() => waiting(
            Wait::OldJobsActive,
            format!(
                "{what}: Job(s) {} from an older template still active",
                active_old.join(", ")
            ),
        ),
        Ok(()) if out.old_pods > 0 => old_pods_remain(&what, out.old_pods, old_terminating),
        Ok(()) => Verdict::RolledOut,
    };
    out
}

/// Whether a Job completed or failed for good.
fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::{Value, json};

    fn workload() -> Workload {
        serde_json::from_value(json!({"kind": "CronJob", "name": "report",
            "version": {"image": {"container": "app", "tag": "2.0.0"}}}))
        .unwrap()
    }

    fn template(tag: &str) -> Value {
        json!({"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "app", "image": format!("shop/report:{tag}")}]}})
    }

    fn cron(tag: &str, suspend: bool) -> CronJob {
        serde_json::from_value(json!({
            "metadata": {"name": "report", "uid": "c-1"},
            "spec": {"schedule": "*/1 * * * *", "suspend": suspend,
                     "jobTemplate": {"spec": {"template": template(tag)}}}
        }))
        .unwrap()
    }

    /// Job `report-<at>` of `tag`, created at `at`, finished or not.
    fn job(tag: &str, at: i64, done: bool) -> Job {
        let conditions = if done {
            json!([{"type": "Complete", "status": "True"}])
        } else {
            json!([])
        };
        let mut j: Job = serde_json::from_value(json!({
            "metadata": {"name": format!("report-{at}"),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "report",
                                              "uid": "c-1", "controller": true}]},
            "spec": {"template": template(tag)},
            "status": {"conditions": conditions}
        }))
        .unwrap();
        j.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(at).unwrap()));
        j
    }

    fn pod(job: &str, tag: &str, terminating: bool) -> Pod {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("{job}-x"), "labels": {JOB_NAME_LABEL: job}},
            "spec": template(tag)["spec"].clone()
        }))
        .unwrap();
        if terminating {
            p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        p
    }

    fn succeeded(mut p: Pod) -> Pod {
        p.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        p
    }

    #[test]
    fn each_way_a_cronjob_holds_or_counts_as_rolled_out() {
        let done_old = job("1.0.0", 100, true);
        let running_old = job("1.0.0", 100, false);
        type Case = (&'static str, CronJob, Vec<Job>, Vec<Pod>, Option<Wait>);
        let cases: Vec<Case> = vec![
            (
                "template on 2.0.0, old Jobs done",
                cron("2.0.0", false),
                vec![done_old.clone()],
                vec![],
                None,
            ),
            (
                "the Succeeded pod of a done 1.0.0 Job",
                cron("2.0.0", false),
                vec![done_old.clone()],
                vec![succeeded(pod("report-100", "1.0.0", false))],
                None,
            ),
            (
                "a Job from 1.0.0 still running",
                cron("2.0.0", false),
                vec![running_old.clone()],
                vec![pod("report-100", "1.0.0", false)],
                Some(Wait::OldJobsActive),
            ),
            (
                "the pod of a deleted 1.0.0 Job Terminating",
                cron("2.0.0", false),
                vec![],
                vec![pod("report-100", "1.0.0", true)],
                Some(Wait::OldPodsRemain),
            ),
            (
                "template still on 1.0.0",
                cron("1.0.0", false),
                vec![done_old.clone()],
                vec![],
                Some(Wait::TemplateNotUpdated),
            ),
            (
                "suspended on 1.0.0",
                cron("1.0.0", true),
                vec![],
                vec![],
                Some(Wait::CronJobSuspended),
            ),
            (
                "suspended on 2.0.0",
                cron("2.0.0", true),
                vec![],
                vec![],
                None,
            ),
            (
                "rolled forward to 3.0.0, a 2.0.0 Job running",
                cron("3.0.0", false),
                vec![job("2.0.0", 200, false)],
                vec![pod("report-200", "2.0.0", false)],
                None,
            ),
            (
                "back on 1.0.0 after a 2.0.0 Job ran",
                cron("1.0.0", false),
                vec![job("2.0.0", 200, true)],
                vec![],
                Some(Wait::RolledBack),
            ),
            (
                "another CronJob's pods are not counted",
                cron("2.0.0", false),
                vec![],
                vec![
                    pod("reporter-100", "1.0.0", false),
                    pod("report-x", "1.0.0", false),
                ],
                None,
            ),
        ];
        for (case, c, jobs, pods, want) in cases {
            let a = assess(&workload(), "users", Some(&c), &jobs, &pods);
            assert_eq!(a.verdict.wait(), want, "{case}: {:?}", a.verdict);
        }
        let a = assess(
            &workload(),
            "users",
            Some(&cron("2.0.0", false)),
            &[running_old],
            &[],
        );
        assert_eq!(
            a.verdict,
            Verdict::Waiting(
                Wait::OldJobsActive,
                "CronJob report: Job(s) report-100 from an older template still active".into()
            )
        );
    }

    #[test]
    fn a_rollback_to_a_commit_tag_is_never_taken_for_a_later_release() {
        // b7e1f00 is wanted and ran; then the template went back to
        // a11a111, which ran in a new Job after it.
        let w: Workload = serde_json::from_value(json!({"kind": "CronJob", "name": "report",
            "version": {"image": {"container": "app", "tag": "b7e1f00"}}}))
        .unwrap();
        let jobs = [
            job("a11a111", 0, true),
            job("b7e1f00", 10, true),
            job("a11a111", 20, false),
        ];
        let a = assess(
            &w,
            "users",
            Some(&cron("a11a111", false)),
            &jobs,
            &[pod("report-20", "a11a111", false)],
        );
        assert_eq!(
            a.verdict.wait(),
            Some(Wait::TemplateNotUpdated),
            "{:?}",
            a.verdict
        );
        assert_eq!(a.old_pods, 1);
    }
}
