//! Scenario 13: the kubectl plugin, used the way users use it: the real
//! `kubectl bellows ...`, which finds `kubectl-bellows` (a symlink to the
//! `bellows` binary) first on PATH, drives a rollout with Manual approval.

use super::STEP;
use crate::harness::{Env, cond, condition_of};
use bellows::api::keys::APPROVE_ANNOTATION;
use bellows::api::{RolloutPhase::*, Step};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

const NS: &str = "plugin";

/// `kubectl` with the plugin installed in a temp dir first on PATH.
struct Kubectl {
    bin_dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

/// A finished `kubectl bellows` run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(env: &Env) -> Kubectl {
        let bin_dir = tempfile::Builder::new()
            .prefix("kubectl-plugins-")
            .tempdir()
            .unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_bellows"),
            bin_dir.path().join("kubectl-bellows"),
        )
        .unwrap();
        Kubectl {
            bin_dir,
            kubeconfig: env.kubeconfig.clone(),
        }
    }

    /// `kubectl bellows ARGS`, stdout and stderr piped.
    fn bellows(&self, args: &[&str]) -> Command {
        let path = std::env::var("PATH").unwrap_or_default();
        let mut cmd = Command::new("/usr/bin/kubectl");
        cmd.arg("bellows")
            .args(args)
            .env("PATH", format!("{}:{path}", self.bin_dir.path().display()))
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `kubectl bellows ARGS` to completion.
    async fn run(&self, args: &[&str]) -> Run {
        let out = tokio::time::timeout(STEP, self.bellows(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl bellows {args:?} did not finish in {STEP:?}"))
            .expect("kubectl runs");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `kubectl bellows ARGS`, which must succeed, and returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(
            run.code,
            Some(0),
            "kubectl bellows {args:?} failed:\n{}{}",
            run.stdout,
            run.stderr
        );
        run.stdout
    }
}

/// The lines of `text` whose first word is `first`.
fn lines_starting<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.trim_start_matches(['├', '└', '─', ' '])
                .split_whitespace()
                .next()
                == Some(first)
        })
        .collect()
}

/// Reads `out` line by line into `seen` until a line satisfies `stop`.
async fn read_until(
    out: &mut BufReader<ChildStdout>,
    seen: &mut String,
    stop: impl Fn(&str) -> bool,
) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).await.unwrap();
        assert!(n > 0, "status --watch ended early; it printed:\n{seen}");
        seen.push_str(&line);
        if stop(&line) {
            return;
        }
    }
}

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace(NS).await;
    let kubectl = Kubectl::new(&env);
    ns.manual_api_rollout("gated", 2).await;
    ns.wait_event("gated", "Normal", "ExpandSucceeded", STEP)
        .await;

    // list: in the namespace, and across all of them.
    let list = kubectl.ok(&["list", "-n", NS]).await;
    assert!(list.starts_with("NAME "), "{list}");
    let row = lines_starting(&list, "gated");
    assert_eq!(row.len(), 1, "{list}");
    assert!(row[0].contains(" AwaitingRollout "), "{list}");
    let all = kubectl.ok(&["list", "-A"]).await;
    assert!(all.starts_with("NAMESPACE "), "{all}");
    assert!(
        lines_starting(&all, NS)
            .iter()
            .any(|l| l.split_whitespace().nth(1) == Some("gated")),
        "{all}"
    );

    // status: expand Succeeded with its Job, the workload, the event.
    let job = ns
        .rollout("gated")
        .await
        .status
        .unwrap()
        .step(Step::Expand)
        .unwrap()
        .job_name
        .clone()
        .unwrap();
    let status = kubectl.ok(&["status", "gated", "-n", NS]).await;
    assert_eq!(
        lines_starting(&status, "SchemaRollout:"),
        [format!("SchemaRollout:   {NS}/gated")],
        "{status}"
    );
    let expand = lines_starting(&status, "expand");
    assert_eq!(expand.len(), 1, "{status}");
    let words: Vec<&str> = expand[0].split_whitespace().collect();
    assert_eq!(
        words[1..5],
        ["expand", "Succeeded", "job", job.as_str()],
        "{status}"
    );
    let api = lines_starting(&status, "Deployment/api");
    assert_eq!(api.len(), 1, "{status}");
    assert!(api[0].contains("image app:2.0.0"), "{status}");
    assert!(api[0].contains("not rolled out"), "{status}");
    assert!(
        status.lines().any(|l| l
            .split_whitespace()
            .take(2)
            .eq(["Normal", "ExpandSucceeded"])),
        "{status}"
    );

    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("gated", AwaitingApproval, STEP).await;

    // pause, then resume.
    let out = kubectl.ok(&["pause", "gated", "-n", NS]).await;
    assert_eq!(out, format!("schemarollout {NS}/gated paused\n"));
    assert!(ns.rollout("gated").await.spec.paused);
    ns.wait_condition("gated", cond::RECONCILING, "False", Some("Paused"), STEP)
        .await;
    let status = kubectl.ok(&["status", "gated", "-n", NS]).await;
    assert_eq!(lines_starting(&status, "Paused:").len(), 1, "{status}");

    let out = kubectl.ok(&["resume", "gated", "-n", NS]).await;
    assert_eq!(out, format!("schemarollout {NS}/gated resumed\n"));
    assert!(!ns.rollout("gated").await.spec.paused);
    let r = ns
        .wait_rollout("gated", "resumed and observed", STEP, |r| {
            r.status.as_ref().and_then(|s| s.observed_generation) == r.metadata.generation
                && condition_of(r, cond::RECONCILING) == ("True".into(), "AwaitingApproval".into())
        })
        .await;
    let generation = r.metadata.generation.unwrap();
    assert_eq!(generation, 3, "pause and resume each change the spec");
    assert!(ns.jobs_of("contract").await.is_empty());

    // status --watch, started before the approval, follows it to the end.
    let mut watch = kubectl
        .bellows(&["status", "gated", "-n", NS, "--watch"])
        .spawn()
        .unwrap();
    let mut out = BufReader::new(watch.stdout.take().unwrap());
    let mut seen = String::new();
    tokio::time::timeout(
        STEP,
        read_until(&mut out, &mut seen, |l| {
            l.starts_with("Phase:") && l.contains("AwaitingApproval")
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("status --watch showed no AwaitingApproval:\n{seen}"));

    let out_approve = kubectl.ok(&["approve", "gated", "-n", NS]).await;
    let key = ns
        .rollout("gated")
        .await
        .status
        .and_then(|s| s.approval_key)
        .expect("status.approvalKey");
    assert_eq!(
        out_approve,
        format!("schemarollout {NS}/gated approved: {APPROVE_ANNOTATION}=\"{key}\"\n")
    );
    let annotations = ns.rollout("gated").await.metadata.annotations.unwrap();
    assert_eq!(annotations[APPROVE_ANNOTATION], key);

    let (code, rest) = finish(&mut watch, out).await;
    seen.push_str(&rest);
    assert_eq!(
        code,
        Some(0),
        "status --watch of a Succeeded rollout:\n{seen}"
    );
    let phases = lines_starting(&seen, "Phase:");
    assert!(
        phases
            .last()
            .unwrap()
            .starts_with("Phase:           Succeeded for "),
        "{seen}"
    );
    assert!(phases.len() >= 2, "printed again on changes:\n{seen}");
    let contract = lines_starting(&seen, "contract");
    assert!(
        contract.last().unwrap().split_whitespace().nth(2) == Some("Succeeded"),
        "{seen}"
    );
    ns.wait_phase("gated", Succeeded, STEP).await;
    assert_eq!(ns.jobs_of("contract").await.len(), 1);

    // A missing rollout: one clear line, non-zero exit.
    let missing = kubectl.run(&["status", "nope", "-n", NS]).await;
    assert_eq!(missing.code, Some(1), "{}", missing.stderr);
    assert_eq!(
        missing.stderr,
        format!("error: schemarollout \"nope\" not found in namespace \"{NS}\"\n")
    );
    assert!(missing.stdout.is_empty(), "{}", missing.stdout);
}

/// Reads the rest of a watching child's stdout and waits for it to exit,
/// both within [`STEP`].
async fn finish(child: &mut Child, mut out: BufReader<ChildStdout>) -> (Option<i32>, String) {
    let mut rest = String::new();
    let done = async {
        out.read_to_string(&mut rest).await.unwrap();
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(STEP, done)
        .await
        .unwrap_or_else(|_| panic!("status --watch did not exit after Succeeded"));
    (status.code(), rest)
}
