//! The end-to-end suite: a real control plane on this machine (no Docker),
//! the `bellows` binary run out of cluster, and one scenario per behaviour
//! the design promises. `cargo test --test e2e [FILTER...]`.
//!
//! Prints each scenario's wall time and a closing `N passed, M failed` line.

mod demo;
mod harness;
mod scenarios;

use harness::Env;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Run = fn(Arc<Env>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// A scenario: name, whether it needs the stand-in kubelet's knobs (slow
/// termination, never-ready pods, its journal), and its body.
struct Scenario {
    name: &'static str,
    needs_stand_in: bool,
    run: Run,
}

macro_rules! scenario {
    ($name:literal, $stand_in:literal, $f:path) => {
        Scenario {
            name: $name,
            needs_stand_in: $stand_in,
            run: (|env| Box::pin($f(env))) as Run,
        }
    };
}

fn scenarios() -> Vec<Scenario> {
    vec![
        scenario!(
            "1_happy_path_rename_column",
            false,
            scenarios::happy_path::run
        ),
        scenario!(
            "2_contract_waits_for_terminating_pods",
            true,
            scenarios::terminating::run
        ),
        scenario!(
            "3_never_ready_version_never_contracts",
            true,
            scenarios::never_ready::run
        ),
        scenario!("4_rollback_holds_contract", false, scenarios::rollback::run),
        scenario!(
            "5_failed_expand_with_gate",
            false,
            scenarios::expand_fails::run
        ),
        scenario!(
            "7_contract_waits_for_the_slower_workload",
            true,
            scenarios::two_workloads::run
        ),
        scenario!("8_bad_input", false, scenarios::bad_input::run),
        scenario!("9_manual_approval", false, scenarios::approval::run),
        scenario!(
            "10_inline_sql_with_check_and_ledger",
            false,
            scenarios::inline_sql::run
        ),
        scenario!("13_kubectl_plugin", false, scenarios::plugin::run),
        scenario!(
            "11_leader_failover_mid_expand",
            false,
            scenarios::leader::run
        ),
        scenario!("12_fault_injection", true, scenarios::faults::run),
        scenario!(
            "16_gitops_lifecycle_without_database",
            true,
            scenarios::gitops::run
        ),
        scenario!(
            "17_rename_under_traffic_postgres",
            true,
            scenarios::traffic::postgres
        ),
        scenario!(
            "18_rename_under_traffic_mariadb",
            true,
            scenarios::traffic::mariadb
        ),
        scenario!(
            "19_rename_under_traffic_with_chaos",
            true,
            scenarios::traffic::chaos
        ),
        scenario!("20_demo_summary", true, demo::scenario),
        scenario!(
            "21_inline_sql_read_before_it_runs",
            true,
            scenarios::sql_analysis::run
        ),
        scenario!(
            "22_roll_forward_and_rollback_then_forward",
            false,
            scenarios::roll_forward::run
        ),
        scenario!(
            "23_statefulset_daemonset_cronjob_and_pods",
            false,
            scenarios::workload_kinds::run
        ),
        scenario!(
            "24_argo_rollout_canary_and_no_crd",
            false,
            scenarios::argo_rollout::run
        ),
        scenario!(
            "25_gate_holds_every_kind",
            false,
            scenarios::gate_kinds::run
        ),
        scenario!(
            "26_rename_under_traffic_statefulset",
            true,
            scenarios::traffic::stateful_set
        ),
        scenario!(
            "27_forged_records_change_nothing",
            true,
            scenarios::trust::run
        ),
        scenario!(
            "28_two_namespaces_a_role_in_each",
            true,
            scenarios::namespaces::run
        ),
        scenario!(
            "29_relist_after_410_finds_the_pod_gone",
            true,
            scenarios::relist::run
        ),
        scenario!(
            "30_leader_behind_a_stalled_proxy_hands_over",
            false,
            scenarios::stall::run
        ),
        scenario!(
            "31_objectives_hold_contract",
            false,
            scenarios::objectives::run
        ),
        scenario!(
            "32_objectives_and_budget_on_live_traffic",
            false,
            scenarios::slo_traffic::run
        ),
        scenario!("15_helm_chart_server_dry_run", false, scenarios::chart::run),
        scenario!(
            "14_examples_dry_run_and_two_run_for_real",
            false,
            scenarios::examples::run
        ),
        scenario!(
            "6_operator_sigkilled_20_times",
            false,
            scenarios::kills::run
        ),
    ]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--demo") {
        let wait = !args.iter().any(|a| a == "--no-wait");
        return runtime().block_on(demo::main(wait));
    }
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let external = std::env::var_os("BELLOWS_E2E_KUBECONFIG");
    let selected: Vec<_> = scenarios()
        .into_iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| s.name.contains(f.as_str())))
        .filter(|s| {
            let runs = external.is_none() || !s.needs_stand_in;
            if !runs {
                println!(
                    "e2e: {} needs the stand-in kubelet; not run against an existing cluster",
                    s.name
                );
            }
            runs
        })
        .collect();
    if selected.is_empty() {
        println!("e2e: no scenario matches {filters:?}");
        println!("0 passed, 0 failed");
        return ExitCode::SUCCESS;
    }
    let runtime = runtime();
    let code = runtime.block_on(run(selected, external.map(Into::into)));
    // Background watchers end with the process; never wait on them.
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn run(selected: Vec<Scenario>, external: Option<std::path::PathBuf>) -> ExitCode {
    let total = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("bellows-e2e-")
        .tempdir()
        .expect("temp dir");
    let path = harness::postgres::shared_dir(dir.path());

    let setup = Instant::now();
    let env = Env::up(&path, external).await;
    println!(
        "e2e: control plane, PostgreSQL, kubelet and bellows up in {:.1}s ({})",
        setup.elapsed().as_secs_f64(),
        path.display()
    );
    let watchdog = Env::watchdog(&env);

    let mut results = vec![];
    for Scenario { name, run, .. } in selected {
        println!("e2e: {name} ...");
        let started = Instant::now();
        let outcome = tokio::spawn(run(env.clone())).await;
        let secs = started.elapsed().as_secs_f64();
        let ok = outcome.is_ok();
        println!(
            "e2e: {name} {} in {secs:.1}s",
            if ok { "ok" } else { "FAILED" }
        );
        results.push((name, ok, secs));
    }
    watchdog.abort();
    // The operator runs as the chart's ServiceAccount: any request it was
    // refused means the chart lacks a rule (or the code a line in
    // `controller::access`).
    let (forbidden, excused) = harness::operator::forbidden(&path, &env.cluster.restart_windows());
    for line in &forbidden {
        println!("e2e: 403: {line}");
    }
    println!(
        "e2e: {} 403s for the chart identity ({excused} more while a restarted kube-apiserver was not ready)",
        forbidden.len()
    );
    results.push(("no_403_for_the_chart_identity", forbidden.is_empty(), 0.0));

    println!("\n{:<45} {:>8} {:>9}", "scenario", "result", "seconds");
    for (name, ok, secs) in &results {
        println!(
            "{name:<45} {:>8} {secs:>9.1}",
            if *ok { "ok" } else { "FAILED" }
        );
    }
    println!(
        "{:<45} {:>8} {:>9.1}",
        "total (setup included)",
        "",
        total.elapsed().as_secs_f64()
    );
    if let Some(u) = env.operator.lock().await.usage() {
        println!(
            "e2e: the suite's operator process (since its last start): peak RSS {:.1} MiB, CPU {:.1} s",
            u.peak_rss_mib, u.cpu_seconds
        );
    }
    if let Some(cpu) = env.cluster.apiserver_cpu_seconds() {
        println!("e2e: kube-apiserver CPU {cpu:.1} s");
    }
    let failed = results.iter().filter(|r| !r.1).count();
    if failed > 0 {
        let kept = dir.keep();
        println!("e2e: logs kept in {}", kept.display());
        let logs = env.operator.lock().await.logs();
        let tail: Vec<&str> = logs.lines().rev().take(60).collect();
        println!("e2e: last operator log lines:");
        for line in tail.into_iter().rev() {
            println!("  {line}");
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    drop(env);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
