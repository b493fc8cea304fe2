//! The demo behind `scripts/demo.sh`: the rename of
//! `examples/inline-sql.yaml` under live traffic on a local control plane,
//! shown as it happens (`kubectl bellows status -w` and the running query
//! tally), closed by a summary; then the cluster stays up for kubectl until
//! Ctrl-C or `scripts/demo.sh down`. A Prometheus scrapes the traffic app:
//! contract also waits for version 2's error ratio objective, and the
//! summary shows the objective's last value and the downtime budget the
//! rollout spent.
//!
//! e2e scenario 20 runs [`rename`] on the suite's cluster without printing
//! and checks its summary.

use crate::harness::traffic::{Tally, tallies, targets_dir, wait_queries};
use crate::harness::{Env, Ns};
use crate::scenarios::STEP;
use crate::scenarios::slo_traffic::{wait_scraped, with_service_level};
use crate::scenarios::traffic::{PG, create, example_rollout, start_traffic, wait_gate};
use bellows::api::RolloutPhase::{self, *};
use bellows::api::{BudgetStatus, ObjectiveStatus};
use bellows_testkit::prometheus::Prometheus;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The namespace the example is written for.
const NAMESPACE: &str = "shop";

/// What the demo shows at the end.
pub struct Summary {
    /// Each phase and how long it lasted (the last one has none).
    pub phases: Vec<(RolloutPhase, Option<Duration>)>,
    /// Applying the rollout to Succeeded.
    pub total: Duration,
    /// Queries by traffic version.
    pub tallies: BTreeMap<String, Tally>,
    /// The columns of `users` afterwards.
    pub columns: String,
    /// The objective as measured last, before contract.
    pub objective: ObjectiveStatus,
    /// The downtime budget the rollout spent, from expand to contract.
    pub budget: BudgetStatus,
    /// The last view `kubectl bellows status -w` printed, and its exit code.
    pub status_view: String,
    pub status_exit: Option<i32>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "bellows demo: summary")?;
        writeln!(f, "  {:<18} {:>9}", "phase", "seconds")?;
        for (phase, took) in &self.phases {
            let took = took.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64()));
            writeln!(f, "  {:<18} {took:>9}", phase.as_str())?;
        }
        writeln!(f, "  {:<18} {:>9.1}", "total", self.total.as_secs_f64())?;
        writeln!(
            f,
            "  {:<28} {:>8} {:>8} {:>10}",
            "queries", "ok", "failed", "NULL reads"
        )?;
        for (version, t) in &self.tallies {
            let column = if version == "1" {
                "full_name"
            } else {
                "display_name"
            };
            writeln!(
                f,
                "  {:<28} {:>8} {:>8} {:>10}",
                format!("shop-api {version}.0.0 ({column})"),
                t.ok,
                t.failed,
                t.null_reads
            )?;
        }
        let o = &self.objective;
        writeln!(
            f,
            "  objective {}: error ratio of 2.0.0 {} (max 1%), {} passes in a row",
            o.name,
            o.value
                .map_or("no data".into(), |v| format!("{:.2}%", v * 100.0)),
            o.passes
        )?;
        let b = &self.budget;
        let share = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0));
        writeln!(
            f,
            "  downtime budget (99% over 1h): this rollout spent {:.1}s ({} of the budget, error ratio {}); {} left",
            b.consumed_seconds.unwrap_or_default(),
            share(b.consumed),
            share(b.error_ratio),
            share(b.remaining)
        )?;
        write!(f, "  users columns now: {}", self.columns)
    }
}

/// Runs the rename in namespace `shop`: traffic version 1, the example's
/// SchemaRollout (bake time 5s), version 2 as soon as the gate holds, the
/// approval through `kubectl bellows approve`; contract also waits for
/// the objective measured by a Prometheus scraping the traffic app. With
/// `live`, prints each step, `kubectl bellows status -w` and the tally
/// every 2 s. The traffic keeps running in the returned namespace, scraped
/// by the returned Prometheus.
pub async fn rename(env: &Arc<Env>, live: bool) -> (Summary, Ns, Prometheus) {
    let say = |line: &str| {
        if live {
            println!("==> {line}");
        }
    };
    let ns = env.namespace(NAMESPACE).await;
    say(
        "shop-api 1.0.0: 3 replicas of the traffic app (examples/traffic), 80 queries/s each on users.full_name",
    );
    let (pod_url, local_url) = (env.pg.url(NAMESPACE), env.pg.local_url(NAMESPACE));
    let (db, dir) = start_traffic(env, &ns, &pod_url, &local_url).await;
    let ticker = live.then(|| tokio::spawn(print_tallies(dir.clone())));

    say("Prometheus scraping every traffic pod each second");
    let prometheus = Prometheus::discovering(&env.dir.join("prometheus-demo"), &targets_dir(&dir));
    prometheus.ready().await;
    wait_scraped(&prometheus.address(), NAMESPACE).await;
    let mut rollout = example_rollout(PG, &ns, "5s");
    with_service_level(&mut rollout, &prometheus.address());
    let name = rollout["metadata"]["name"].as_str().unwrap().to_owned();
    say(&format!(
        "kubectl apply -f {PG} (bakeTime shortened to 5s; plus an objective, 2.0.0's error ratio <= 1%, and a downtime budget of 99% over 1h)"
    ));
    let phases = ns.record_phases(&name);
    let applied = Instant::now();
    create(&ns, rollout).await;
    let plugin = plugin_dir(env);
    let mut watch = kubectl_bellows(env, &plugin, &["status", "-w", "-n", NAMESPACE, &name])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl bellows status -w runs");
    let view = tokio::spawn(follow(watch.stdout.take().unwrap(), live));

    wait_gate(&ns, &name).await;
    say(
        "kubectl set image deploy/shop-api api=shop/api:2.0.0 (the traffic app's version 2: users.display_name)",
    );
    ns.deploy_traffic_v2(&dir).await;
    ns.wait_phase(&name, AwaitingApproval, STEP).await;
    say(&format!("kubectl bellows approve -n {NAMESPACE} {name}"));
    let approve = kubectl_bellows(env, &plugin, &["approve", "-n", NAMESPACE, &name])
        .output()
        .await
        .expect("kubectl bellows approve runs");
    assert!(
        approve.status.success(),
        "kubectl bellows approve: {approve:?}"
    );
    let done = ns.wait_phase(&name, Succeeded, STEP).await;
    let total = applied.elapsed();
    let status = done.status.unwrap_or_default();
    let status_exit = tokio::time::timeout(STEP, watch.wait())
        .await
        .expect("kubectl bellows status -w exits once Succeeded")
        .ok()
        .and_then(|s| s.code());
    let status_view = view.await.unwrap_or_default();
    wait_queries(&dir, "2", 1000).await;
    if let Some(t) = ticker {
        t.abort();
    }

    let timeline = phases.timeline();
    let phases = timeline
        .iter()
        .enumerate()
        .map(|(i, (phase, at))| (*phase, timeline.get(i + 1).map(|next| next.1 - *at)))
        .collect();
    let summary = Summary {
        phases,
        total,
        tallies: tallies(&dir),
        columns: db.user_columns().await,
        objective: status.objectives.first().cloned().unwrap_or_default(),
        budget: status.budget.unwrap_or_default(),
        status_view,
        status_exit,
    };
    (summary, ns, prometheus)
}

/// `kubectl bellows ARGS` as the admin, the plugin found on PATH.
fn kubectl_bellows(env: &Env, plugin: &Path, args: &[&str]) -> Command {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut cmd = Command::new("kubectl");
    cmd.arg("bellows")
        .args(args)
        .env("PATH", format!("{}:{path}", plugin.display()))
        .env("KUBECONFIG", &env.kubeconfig)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// A directory holding `kubectl-bellows` (the `bellows` binary), for PATH.
fn plugin_dir(env: &Env) -> PathBuf {
    let dir = env.dir.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl-bellows");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bellows"), &link).unwrap();
    }
    dir
}

/// Forwards the status views (printed when `live`); the last view.
async fn follow(out: tokio::process::ChildStdout, live: bool) -> String {
    let mut lines = BufReader::new(out).lines();
    let mut view = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if live {
            println!("  | {line}");
        }
        // Each view starts with its `SchemaRollout:` line (a view has blank
        // lines between its sections).
        if line.starts_with("SchemaRollout:") {
            view.clear();
        }
        view.push_str(&line);
        view.push('\n');
    }
    view
}

/// Prints the running tally every 2 s.
async fn print_tallies(dir: PathBuf) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let line: Vec<String> = tallies(&dir)
            .iter()
            .map(|(v, t)| format!("v{v}: {} ok, {} failed", t.ok, t.failed))
            .collect();
        println!("    traffic  {}", line.join(" | "));
    }
}

/// `cargo test --test e2e -- --demo [--no-wait]`: brings everything up,
/// runs [`rename`] live, prints the summary and how to reach the cluster,
/// then waits for Ctrl-C or SIGTERM (`scripts/demo.sh down` sends it to
/// the pid written to `BELLOWS_DEMO_PIDFILE`) unless `--no-wait`.
pub async fn main(wait: bool) -> ExitCode {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("bellows-demo-")
        .tempdir()
        .expect("temp dir");
    let path = crate::harness::postgres::shared_dir(dir.path());
    println!(
        "==> starting kube-apiserver, kube-controller-manager, etcd, PostgreSQL, a stand-in kubelet and bellows (as the Helm chart runs it)"
    );
    let env = Env::up(&path, None).await;
    let watchdog = Env::watchdog(&env);
    println!("==> up in {:.1}s", started.elapsed().as_secs_f64());
    let (summary, _ns, _prometheus) = rename(&env, true).await;
    println!("\n{summary}");
    println!(
        "\n==> command to summary: {:.1}s (setup included)",
        started.elapsed().as_secs_f64()
    );
    let clean = summary
        .tallies
        .values()
        .all(|t| t.failed == 0 && t.null_reads == 0);
    if wait {
        if let Some(pidfile) = std::env::var_os("BELLOWS_DEMO_PIDFILE") {
            std::fs::write(pidfile, std::process::id().to_string()).ok();
        }
        println!("\nThe cluster stays up. In another shell:");
        println!("  export KUBECONFIG={}", env.kubeconfig.display());
        println!(
            "  export PATH={}:$PATH   # kubectl bellows",
            plugin_dir(&env).display()
        );
        println!(
            "  kubectl -n {NAMESPACE} get sro,deploy,pods; kubectl bellows status -n {NAMESPACE} users-rename-full-name-inline"
        );
        println!("Stop with Ctrl-C here or scripts/demo.sh down.");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        println!("==> stopping");
    }
    watchdog.abort();
    drop(env);
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Scenario 20: the demo's rename, checked by its summary.
pub async fn scenario(env: Arc<Env>) {
    let (summary, ns, _prometheus) = rename(&env, false).await;
    println!("{summary}");
    let seen: Vec<RolloutPhase> = summary.phases.iter().map(|p| p.0).collect();
    assert!(
        crate::scenarios::in_order(
            &seen,
            &[
                Expanding,
                AwaitingRollout,
                Baking,
                AwaitingApproval,
                Contracting,
                Succeeded
            ]
        ),
        "phases: {seen:?}"
    );
    for version in ["1", "2"] {
        let t = summary.tallies.get(version).cloned().unwrap_or_default();
        assert!(
            t.queries() >= 1000 && t.failed == 0 && t.null_reads == 0,
            "v{version}: {t:?}"
        );
    }
    assert_eq!(summary.columns, "display_name,id");
    assert!(summary.objective.passes >= 3, "{:?}", summary.objective);
    assert_eq!(
        summary.objective.value,
        Some(0.0),
        "{:?}",
        summary.objective
    );
    assert_eq!(
        summary.budget.consumed_seconds,
        Some(0.0),
        "{:?}",
        summary.budget
    );
    let shown = summary.to_string();
    assert!(
        shown.contains("this rollout spent 0.0s (0.0% of the budget"),
        "{shown}"
    );
    assert_eq!(
        summary.status_exit,
        Some(0),
        "kubectl bellows status -w exit"
    );
    assert!(
        summary
            .status_view
            .lines()
            .any(|l| l.starts_with("Phase:") && l.contains("Succeeded")),
        "last status view: {}",
        summary.status_view
    );
    for section in ["Objectives:", "Downtime budget:"] {
        assert!(
            summary.status_view.contains(section),
            "no {section} in the last status view: {}",
            summary.status_view
        );
    }
    ns.stop_traffic().await;
}
