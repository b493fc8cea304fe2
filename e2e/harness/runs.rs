//! The migration Jobs of a scenario's namespace and what they did: the
//! runs table, its database, `kubectl` there, and invariant I3 after the
//! fact.

use super::wait::until;
use super::{Env, Ns, process};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::ListParams;
use std::process::Command;
use std::time::Duration;

impl Ns {
    /// Every Job in the namespace.
    pub async fn jobs(&self) -> Vec<Job> {
        self.api::<Job>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    /// The Jobs of phase `step` (expand, transition, contract).
    pub async fn jobs_of(&self, step: &str) -> Vec<Job> {
        self.jobs()
            .await
            .into_iter()
            .filter(|j| j.labels().get("bellows.dev/phase").map(String::as_str) == Some(step))
            .collect()
    }

    /// Runs kubectl in this namespace.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// Runs `sql` in this namespace's database.
    pub fn sql(&self, sql: &str) -> String {
        process::run(
            "psql",
            Command::new("psql")
                .arg(&self.pg_url)
                .args(["-v", "ON_ERROR_STOP=1", "-tAc", sql]),
        )
        .trim()
        .to_owned()
    }

    /// The table [`recording_sql`] writes to.
    pub fn create_runs_table(&self) {
        self.sql("CREATE TABLE runs (step text NOT NULL, at timestamptz NOT NULL DEFAULT now())");
    }

    /// Invariant I3 after the fact: each of `steps` has exactly one Job, its
    /// SQL ran exactly once and in this order, and (with the stand-in
    /// kubelet) each Job had exactly one pod run, which exited 0.
    pub async fn assert_ran_once_in_order(&self, env: &Env, steps: &[&str]) {
        let violations = self.ran_once_in_order(env, steps).await;
        assert!(violations.is_empty(), "{violations:#?}");
    }

    /// What [`Ns::assert_ran_once_in_order`] would fail on.
    pub async fn ran_once_in_order(&self, env: &Env, steps: &[&str]) -> Vec<String> {
        let mut violations = vec![];
        for step in steps {
            let jobs = self.jobs_of(step).await.len();
            if jobs != 1 {
                violations.push(format!("{step}: {jobs} Jobs"));
            }
            let runs = self.runs_of(step);
            if runs != 1 {
                violations.push(format!("{step}: its SQL ran {runs} times"));
            }
        }
        if let Some(kubelet) = &env.kubelet {
            let runs: Vec<(String, i32)> = kubelet
                .journal
                .job_runs
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.namespace == self.name)
                .map(|r| (r.job.clone(), r.exit_code))
                .collect();
            let jobs: std::collections::BTreeSet<&String> = runs.iter().map(|r| &r.0).collect();
            if (runs.len(), jobs.len()) != (steps.len(), steps.len())
                || runs.iter().any(|r| r.1 != 0)
            {
                violations.push(format!(
                    "not one successful pod run per phase Job: {runs:?}"
                ));
            }
        }
        let order = self.sql("SELECT coalesce(string_agg(step, ',' ORDER BY at), '') FROM runs");
        if order != steps.join(",") {
            violations.push(format!("phases ran in the order {order:?}"));
        }
        violations
    }

    /// How many times [`recording_sql`] for `step` committed.
    pub fn runs_of(&self, step: &str) -> u32 {
        self.sql(&format!("SELECT count(*) FROM runs WHERE step = '{step}'"))
            .parse()
            .expect("a count")
    }

    /// Waits until the Job of `step` has a running pod.
    pub async fn wait_job_running(&self, step: &str) {
        until(
            &format!("the {step} Job running"),
            Duration::from_secs(90),
            || async {
                let jobs = self.jobs_of(step).await;
                jobs.first()
                    .and_then(|j| j.status.as_ref()?.active)
                    .filter(|n| *n > 0)
                    .map(|_| ())
            },
        )
        .await;
    }
}
