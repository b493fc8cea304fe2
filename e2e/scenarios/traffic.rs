//! Scenarios 17, 18, 19 and 26: the rename of `users.full_name` to
//! `users.display_name` under live traffic, on PostgreSQL and on MariaDB,
//! on PostgreSQL again under chaos, and with the app as a StatefulSet.
//!
//! Three replicas of the traffic app (`examples/traffic`) keep querying
//! while version 1 (full_name) rolls to version 2 (display_name), one surge
//! pod at a time, old pods serving for a 3 s drain while Terminating. The
//! SQL is the examples' own (`examples/inline-sql.yaml`,
//! `examples/inline-sql-mariadb.yaml`; only the bake time is shortened).
//!
//! - **With bellows**: the SchemaRollout is applied, version 2 is deployed as
//!   soon as the gate holds, contract is approved when it asks. Every query
//!   of both versions must succeed, no read of a named row may return NULL,
//!   each version must run at least 1,000 queries, and the final schema is
//!   `users (id, display_name)` without triggers.
//! - **The control**: the same rename the way a deploy pipeline does it
//!   without bellows: expand, deploy, `kubectl rollout status`, then
//!   contract (a PostSync hook). Old pods still draining lose their column:
//!   this run must fail queries, which proves the tally can see an early
//!   contract. Both tallies are printed side by side.
//! - **Under chaos** (19): the bellows run again while the operator is
//!   SIGKILLed at random moments (at least 20 before the rollout succeeds)
//!   and kube-apiserver is restarted once mid-rollout: still no failed
//!   query, and each phase ran exactly once (the ledger has one succeeded
//!   row per phase; expand's ADD COLUMN and contract's DROP COLUMN would
//!   fail the phase if they ran again, and no phase ever failed).

use super::STEP;
use crate::harness::killer::{self, Killer};
use crate::harness::traffic::{APP, AppKind, Db, Tally, tallies, tally_dir, wait_queries};
use crate::harness::wait::until;
use crate::harness::{Env, Ns, phase_of};
use bellows::api::RolloutPhase::*;
use bellows::api::SchemaRollout;
use bellows::api::keys::PAUSED_BY_ANNOTATION;
use bellows_testkit::mariadb::{self, MariaDb};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Queries each version must run (the floor).
const MIN_QUERIES: u64 = 1000;

pub async fn postgres(env: Arc<Env>) {
    let ns = env.namespace("traffic-pg").await;
    let (pod_url, local_url) = (env.pg.url(&ns.name), env.pg.local_url(&ns.name));
    let with = with_bellows(&env, &ns, &pod_url, &local_url, PG).await;
    let ns = env.namespace("traffic-pg-hook").await;
    let (pod_url, local_url) = (env.pg.url(&ns.name), env.pg.local_url(&ns.name));
    let hook = with_hook(&env, &ns, &pod_url, &local_url, PG).await;
    judge("PostgreSQL", &with, &hook);
}

pub async fn mariadb(env: Arc<Env>) {
    let server = MariaDb::start(&env.dir.join("traffic-mariadb")).await;
    let ns = env.namespace("traffic-maria").await;
    let url = server.database(&ns.name, mariadb::PASSWORD);
    let with = with_bellows(&env, &ns, &url, &url, MARIADB).await;
    let ns = env.namespace("traffic-maria-hook").await;
    let url = server.database(&ns.name, mariadb::PASSWORD);
    let hook = with_hook(&env, &ns, &url, &url, MARIADB).await;
    judge("MariaDB", &with, &hook);
}

/// Kills before the chaos run's rollout succeeds.
const MIN_KILLS: u32 = 20;

pub async fn chaos(env: Arc<Env>) {
    let ns = env.namespace("traffic-chaos").await;
    let (pod_url, local_url) = (env.pg.url(&ns.name), env.pg.local_url(&ns.name));
    let (db, dir) = start_traffic(&env, &ns, &pod_url, &local_url).await;
    // A longer bake keeps the rollout going for enough kills.
    let rollout = example_rollout(PG, &ns, "25s");
    let name = rollout["metadata"]["name"].as_str().unwrap().to_owned();
    let phases = ns.record_phases(&name);
    let killer = Killer::start(env.clone(), &ns, &name);
    create(&ns, rollout).await;
    wait_gate(&ns, &name).await;
    ns.deploy_traffic_v2(&dir).await;
    let restarts = env.cluster.restart_windows().len();
    env.cluster.restart_apiserver(Duration::from_secs(2)).await;
    ns.wait_phase(&name, AwaitingApproval, STEP * 2).await;
    ns.approve(&name).await;
    ns.wait_phase(&name, Succeeded, STEP * 2).await;
    let kills = killer.stop().await;
    let run = finish(&ns, &db, &dir).await;

    print_tallies("PostgreSQL under chaos", &[(&run, "bellows")]);
    assert_clean("PostgreSQL under chaos", &run);
    let before_done = killer::before_done(&kills);
    assert!(
        before_done >= MIN_KILLS,
        "only {before_done} kills landed before the rollout succeeded"
    );
    assert_eq!(
        env.cluster.restart_windows().len(),
        restarts + 1,
        "one kube-apiserver restart"
    );
    let seen = phases.phases();
    assert!(!seen.contains(&Failed), "a phase failed: {seen:?}");
    assert_eq!(
        db.text(
            "SELECT string_agg(phase || '=' || state, ',' ORDER BY started_at) FROM bellows.ledger"
        )
        .await,
        "expand=succeeded,contract=succeeded",
        "the ledger: each phase once"
    );
}

/// Creates the SchemaRollout `rollout` (a whole document) in `ns`.
pub async fn create(ns: &Ns, rollout: Value) {
    let rollout: SchemaRollout = serde_json::from_value(rollout).unwrap();
    Api::<SchemaRollout>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &rollout)
        .await
        .unwrap();
}

/// The examples each run renames with.
pub const PG: &str = "examples/inline-sql.yaml";
const MARIADB: &str = "examples/inline-sql-mariadb.yaml";

/// What one run measured: the tallies by version and the database after.
pub struct Run {
    pub tallies: BTreeMap<String, Tally>,
    pub columns: String,
    pub triggers: String,
}

/// The example's SchemaRollout for `ns`, with `bakeTime` (10m in the file)
/// shortened.
pub fn example_rollout(file: &str, ns: &Ns, bake: &str) -> Value {
    let [mut rollout]: [Value; 1] =
        super::examples::documents(&crate::harness::repo_path(file), &ns.name)
            .try_into()
            .unwrap_or_else(|_| panic!("{file} holds one document"));
    rollout["spec"]["contract"]["after"]["bakeTime"] = json!(bake);
    rollout
}

/// The table, the Secret `shop-db` (for pods: `pod_url`) and version 1
/// serving traffic from a Deployment; returns the test's connection and the
/// tally directory.
pub async fn start_traffic(
    env: &Env,
    ns: &Ns,
    pod_url: &str,
    local_url: &str,
) -> (Db, std::path::PathBuf) {
    start_app(env, ns, pod_url, local_url, AppKind::Deployment).await
}

/// [`start_traffic`] with the app run by `kind`.
async fn start_app(
    env: &Env,
    ns: &Ns,
    pod_url: &str,
    local_url: &str,
    kind: AppKind,
) -> (Db, std::path::PathBuf) {
    let db = Db::connect(local_url).await;
    db.seed_users().await;
    ns.create_secret("shop-db", "url", pod_url).await;
    let dir = tally_dir(env, ns);
    ns.deploy_traffic(kind, &dir).await;
    wait_queries(&dir, "1", MIN_QUERIES).await;
    (db, dir)
}

/// Scenario 26: the rename with the traffic app as a StatefulSet, its
/// version 2 staged behind a partition (pods 2 and 1 first, pod 0 later).
/// With bellows, contract waits for pod 0 (`PartitionHolds`); the control
/// contracts once `kubectl rollout status` reports the partitioned roll
/// out complete, while pod 0 still runs version 1.
pub async fn stateful_set(env: Arc<Env>) {
    let ns = env.namespace("traffic-sts").await;
    let (pod_url, local_url) = (env.pg.url(&ns.name), env.pg.local_url(&ns.name));
    let (db, dir) = start_app(&env, &ns, &pod_url, &local_url, AppKind::StatefulSet).await;
    let mut rollout = example_rollout(PG, &ns, "1s");
    rollout["spec"]["workloads"][0]["kind"] = json!("StatefulSet");
    let name = rollout["metadata"]["name"].as_str().unwrap().to_owned();
    create(&ns, rollout).await;
    // The gate holds the StatefulSet by its partition until expand is
    // done; deploying with a partition of one's own waits for that.
    ns.wait_phase(&name, AwaitingRollout, STEP).await;
    let sets = Api::<StatefulSet>::namespaced(ns.client.clone(), &ns.name);
    until("the gate let the StatefulSet go", STEP, || async {
        let set = sets.get(APP).await.ok()?;
        (!set.annotations().contains_key(PAUSED_BY_ANNOTATION)).then_some(())
    })
    .await;
    ns.deploy_traffic_v2_set(&dir, 1).await;
    ns.wait_rollout(&name, "held: PartitionHolds", STEP, |r| {
        r.status
            .as_ref()
            .and_then(|s| s.workloads.first())
            .and_then(|w| w.reason.as_deref())
            == Some("PartitionHolds")
    })
    .await;
    assert!(ns.jobs_of("contract").await.is_empty());
    ns.deploy_traffic_v2_set(&dir, 0).await;
    ns.wait_phase(&name, AwaitingApproval, STEP).await;
    ns.approve(&name).await;
    ns.wait_phase(&name, Succeeded, STEP).await;
    let with = finish(&ns, &db, &dir).await;

    let ns = env.namespace("traffic-sts-hook").await;
    let (pod_url, local_url) = (env.pg.url(&ns.name), env.pg.local_url(&ns.name));
    let (db, dir) = start_app(&env, &ns, &pod_url, &local_url, AppKind::StatefulSet).await;
    let spec = example_rollout(PG, &ns, "1s")["spec"].clone();
    for statement in statements(&spec, "expand") {
        db.exec(&statement).await;
    }
    ns.deploy_traffic_v2_set(&dir, 1).await;
    contract_after_rollout_status(&ns, &db, &spec, "statefulset").await;
    ns.deploy_traffic_v2_set(&dir, 0).await;
    let hook = finish(&ns, &db, &dir).await;
    judge("PostgreSQL, StatefulSet", &with, &hook);
}

/// The rename through a SchemaRollout, run from the example `file`.
async fn with_bellows(env: &Env, ns: &Ns, pod_url: &str, local_url: &str, file: &str) -> Run {
    let (db, dir) = start_traffic(env, ns, pod_url, local_url).await;
    let rollout = example_rollout(file, ns, "1s");
    let name = rollout["metadata"]["name"].as_str().unwrap().to_owned();
    create(ns, rollout).await;
    wait_gate(ns, &name).await;
    ns.deploy_traffic_v2(&dir).await;
    ns.wait_phase(&name, AwaitingApproval, STEP).await;
    ns.approve(&name).await;
    ns.wait_phase(&name, Succeeded, STEP).await;
    finish(ns, &db, &dir).await
}

/// Waits until version 2 may be deployed: the gate holds the Deployment
/// (paused and marked by this rollout), or expand is already over (a fast
/// expand can pause and resume between two polls).
pub async fn wait_gate(ns: &Ns, name: &str) {
    let deployments = Api::<Deployment>::namespaced(ns.client.clone(), &ns.name);
    let rollouts = Api::<SchemaRollout>::namespaced(ns.client.clone(), &ns.name);
    until("the gate holds or expand is done", STEP, || async {
        let d = deployments.get(APP).await.ok()?;
        let held = d.spec.as_ref()?.paused == Some(true)
            && d.annotations()
                .get(PAUSED_BY_ANNOTATION)
                .map(String::as_str)
                == Some(name);
        let expanded = matches!(
            phase_of(&rollouts.get(name).await.ok()?),
            Some(AwaitingRollout | Transitioning | AwaitingApproval | Contracting | Succeeded)
        );
        (held || expanded).then_some(())
    })
    .await;
}

/// The same rename without bellows: expand, deploy, `kubectl rollout
/// status`, contract.
async fn with_hook(env: &Env, ns: &Ns, pod_url: &str, local_url: &str, file: &str) -> Run {
    let (db, dir) = start_traffic(env, ns, pod_url, local_url).await;
    let spec = example_rollout(file, ns, "1s")["spec"].clone();
    for statement in statements(&spec, "expand") {
        db.exec(&statement).await;
    }
    ns.deploy_traffic_v2(&dir).await;
    contract_after_rollout_status(ns, &db, &spec, "deployment").await;
    finish(ns, &db, &dir).await
}

/// What a pipeline without bellows does: `kubectl rollout status` of the
/// app (`resource`: deployment or statefulset), then contract.
async fn contract_after_rollout_status(ns: &Ns, db: &Db, spec: &Value, resource: &str) {
    let status = ns.kubectl(&[
        "rollout",
        "status",
        &format!("{resource}/{APP}"),
        "--timeout=120s",
    ]);
    assert!(status.status.success(), "kubectl rollout status failed");
    for statement in statements(spec, "contract") {
        db.exec(&statement).await;
    }
}

fn statements(spec: &Value, phase: &str) -> Vec<String> {
    spec[phase]["sql"]
        .as_array()
        .unwrap_or_else(|| panic!("{phase}.sql"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Lets version 2 run its share, stops the traffic and reads what it saw.
pub async fn finish(ns: &Ns, db: &Db, dir: &std::path::Path) -> Run {
    wait_queries(dir, "2", MIN_QUERIES).await;
    ns.stop_traffic().await;
    Run {
        tallies: tallies(dir),
        columns: db.user_columns().await,
        triggers: db.user_triggers().await,
    }
}

/// Prints runs side by side: queries by version.
pub fn print_tallies(title: &str, runs: &[(&Run, &str)]) {
    println!("e2e:   rename under traffic on {title}: queries by version");
    println!(
        "e2e:   {:<26} {:>8} {:>8} {:>10}",
        "run", "ok", "failed", "NULL reads"
    );
    for (run, label) in runs {
        for (version, t) in &run.tallies {
            println!(
                "e2e:   {:<26} {:>8} {:>8} {:>10}",
                format!("{label}, v{version}"),
                t.ok,
                t.failed,
                t.null_reads
            );
        }
    }
}

/// The promise: no failed query, no NULL read, both versions served, the
/// final schema.
pub fn assert_clean(what: &str, run: &Run) {
    for version in ["1", "2"] {
        let t = run.tallies.get(version).cloned().unwrap_or_default();
        assert!(
            t.failed == 0 && t.null_reads == 0,
            "{what}: v{version} under bellows: {t:?}"
        );
        assert!(
            t.queries() >= MIN_QUERIES,
            "{what}: v{version} ran only {} queries",
            t.queries()
        );
    }
    assert_eq!(run.columns, "display_name,id", "{what}: final schema");
    assert_eq!(run.triggers, "0", "{what}: triggers left");
}

/// Prints both runs and asserts the promise (and that the control could
/// see its failure).
fn judge(engine: &str, with: &Run, hook: &Run) {
    print_tallies(
        engine,
        &[(with, "bellows"), (hook, "hook after rollout status")],
    );
    if let Some((message, n)) = hook.tallies.values().flat_map(|t| &t.errors).next() {
        println!("e2e:   the hook's first error ({n}x): {message}");
    }
    assert_clean(engine, with);
    let failed: u64 = hook.tallies.values().map(|t| t.failed).sum();
    assert!(
        failed > 0,
        "{engine}: the control (contract right after rollout status) failed no query: the test cannot see an early contract"
    );
}
