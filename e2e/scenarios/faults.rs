//! Scenario 12: fault injection. Each fault is injected into a rollout in
//! its own namespace; afterwards the safety invariants are checked and
//! counted, and a table of fault / times injected / violations is printed.
//! Any violation fails the scenario.
//!
//! - kube-apiserver restarted during expand, the Deployment's rollout and
//!   contract;
//! - PostgreSQL stopped while a contract check holds the rollout, and while
//!   an inline phase's statement runs;
//! - the running expand Job's pod deleted;
//! - the SchemaRollout deleted after expand, and during a gated expand, then
//!   re-created: the cleanup finalizer lets the running Job finish and
//!   resumes the paused Deployment, its Jobs go with it (owner references)
//!   and the ledger keeps the truth.

use super::{ContractGuard, STEP};
use crate::harness::{
    Env, Ns, cond, condition_message, condition_of, psql_job, recording_sql, workload,
};
use bellows::api::RolloutPhase::{self, *};
use bellows::api::SchemaRollout;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long the API server or the database stays down per injection.
const DOWN: Duration = Duration::from_secs(1);

/// One row of the table.
struct Fault {
    name: &'static str,
    injected: u32,
    violations: Vec<String>,
}

impl Fault {
    fn new(name: &'static str) -> Fault {
        Fault {
            name,
            injected: 0,
            violations: vec![],
        }
    }

    fn check(&mut self, ok: bool, violation: impl Into<String>) {
        if !ok {
            self.violations.push(violation.into());
        }
    }
}

pub async fn run(env: Arc<Env>) {
    let faults = vec![
        apiserver_restarts(&env).await,
        database_down_during_check(&env).await,
        database_down_during_inline_phase(&env).await,
        hidden_rollback(&env).await,
        migration_pod_deleted(&env).await,
        rollout_deleted_after_expand(&env).await,
        rollout_deleted_during_expand(&env).await,
    ];
    println!(
        "e2e:   {:<50} {:>8} {:>10}",
        "fault", "injected", "violations"
    );
    for f in &faults {
        println!(
            "e2e:   {:<50} {:>8} {:>10}",
            f.name,
            f.injected,
            f.violations.len()
        );
    }
    let violations: Vec<String> = faults
        .iter()
        .flat_map(|f| f.violations.iter().map(move |v| format!("{}: {v}", f.name)))
        .collect();
    assert!(violations.is_empty(), "{violations:#?}");
}

fn database() -> Value {
    json!({"engine": "postgres", "secretRef": {"name": "db", "key": "url"}, "sslMode": "disable"})
}

/// Job phases that record their runs, with the ledger in the database.
fn job_spec(expand_seconds: f64) -> Value {
    json!({
        "workloads": [workload("api", "2.0.0")],
        "database": database(),
        "expand": {"job": psql_job(&recording_sql("expand", expand_seconds))},
        "contract": {"job": psql_job(&recording_sql("contract", 1.0))},
    })
}

/// A namespace with the runs table and Deployment `api` at 1.0.0.
async fn setup(env: &Env, name: &str) -> Ns {
    let ns = env.namespace(name).await;
    ns.create_runs_table();
    ns.deploy_api(2).await;
    ns
}

/// Rolls `api` to 2.0.0 and waits for the rollout to succeed.
async fn roll_and_finish(ns: &Ns) {
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("r", Succeeded, STEP).await;
}

async fn apiserver_restarts(env: &Env) -> Fault {
    let mut f = Fault::new("kube-apiserver killed and restarted");
    let ns = setup(env, "fault-apiserver").await;
    let guard = ContractGuard::start(&ns, &[("api", "shop/api:2.0.0")]);
    ns.create_rollout("r", job_spec(3.0)).await.unwrap();
    ns.wait_job_running("expand").await;
    env.cluster.restart_apiserver(DOWN).await;
    f.injected += 1;
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    env.cluster.restart_apiserver(DOWN).await;
    f.injected += 1;
    ns.wait_job_running("contract").await;
    env.cluster.restart_apiserver(DOWN).await;
    f.injected += 1;
    ns.wait_phase("r", Succeeded, STEP).await;
    f.violations.extend(guard.violations().await);
    f.violations
        .extend(ns.ran_once_in_order(env, &["expand", "contract"]).await);
    f
}

/// Inline phases, contract held by a check on table `blockers`.
fn inline_spec(expand: &[&str]) -> Value {
    json!({
        "workloads": [workload("api", "2.0.0")],
        "database": database(),
        "expand": {"sql": expand},
        "contract": {
            "sql": ["INSERT INTO runs (step) VALUES ('contract')"],
            "after": {"checks": [{"name": "no-blockers", "sql": "SELECT count(*) = 0 FROM blockers"}]},
        },
    })
}

async fn database_down_during_check(env: &Env) -> Fault {
    let mut f = Fault::new("PostgreSQL down while a check holds contract");
    let ns = setup(env, "fault-check").await;
    ns.sql("CREATE TABLE blockers (id int); INSERT INTO blockers VALUES (1)");
    let expand = ["INSERT INTO runs (step) VALUES ('expand')"];
    ns.create_rollout("r", inline_spec(&expand)).await.unwrap();
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_held("r", "CheckFailed", STEP).await;
    env.pg.stop();
    f.injected += 1;
    let held = ns
        .wait_rollout("r", "the outage observed", STEP, |r| {
            condition_of(r, cond::STALLED) == ("True".into(), "DatabaseUnavailable".into())
        })
        .await;
    f.check(
        !contracting_or_done(&held),
        format!("{:?} while the database was down", held.status),
    );
    env.pg.start_again().await;
    ns.sql("DELETE FROM blockers");
    ns.wait_phase("r", Succeeded, STEP).await;
    check_inline_ran_once(&ns, &mut f);
    f
}

async fn database_down_during_inline_phase(env: &Env) -> Fault {
    let mut f = Fault::new("PostgreSQL down during an inline phase");
    let ns = setup(env, "fault-inline").await;
    ns.sql("CREATE TABLE blockers (id int)");
    let expand = [
        "SELECT pg_sleep(4)",
        "INSERT INTO runs (step) VALUES ('expand')",
    ];
    ns.create_rollout("r", inline_spec(&expand)).await.unwrap();
    crate::harness::wait::until("the expand statement running", STEP, || async {
        let n = ns.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(4)%' AND state = 'active'",
        );
        (n == "1").then_some(())
    })
    .await;
    // A fast shutdown rolls the phase's transaction back mid-statement.
    env.pg.stop();
    f.injected += 1;
    env.pg.start_again().await;
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    roll_and_finish(&ns).await;
    check_inline_ran_once(&ns, &mut f);
    f
}

/// The input that once ran expand 212 times in 25 s: an E-string the
/// analyser cannot read hides a `ROLLBACK`, which undid the phase's own
/// ledger row. Refused, its statements run 0 times; allowed knowingly
/// (`-- bellows:allow unreadable`), the phase stops at the `ROLLBACK`,
/// applies nothing, is recorded failed once and never runs again.
async fn hidden_rollback(env: &Env) -> Fault {
    let mut f = Fault::new("an unreadable inline item hiding a ROLLBACK");
    let ns = setup(env, "fault-hidden").await;
    ns.sql(
        "CREATE TABLE blockers (id int); CREATE TABLE pn (id int PRIMARY KEY, n text);
         INSERT INTO pn VALUES (1, ''), (2, '');
         CREATE TABLE acct (id int PRIMARY KEY, credits int); INSERT INTO acct VALUES (1, 0), (2, 0)",
    );
    let phase = |id: u8, allow: &str| {
        [
            format!("{allow}UPDATE pn SET n = E'caf\\xC3\\xA9' WHERE id = {id}; ROLLBACK"),
            format!("UPDATE acct SET credits = credits + 10 WHERE id = {id}"),
        ]
    };
    let refused = phase(1, "");
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    ns.create_rollout("r", inline_spec(&refused)).await.unwrap();
    f.injected += 1;
    let r = ns
        .wait_condition("r", cond::STALLED, "True", Some("SqlUnreadable"), STEP)
        .await;
    let message = condition_message(&r, cond::STALLED);
    f.check(
        message.contains("spec.expand.sql[0]") && message.contains("line 1, column"),
        format!("the stall does not name the item and position: {message}"),
    );
    let allowed = phase(2, "-- bellows:allow unreadable\n");
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    ns.create_rollout("r2", inline_spec(&allowed))
        .await
        .unwrap();
    f.injected += 1;
    ns.wait_phase("r2", RolloutPhase::Failed, STEP).await;
    let note = ns.wait_event("r2", "Warning", "ExpandFailed", STEP).await;
    f.check(
        note.contains("statement 1 of 2 ended the phase's transaction itself"),
        format!("the failure does not say what happened: {note}"),
    );
    let credits = ns.sql("SELECT string_agg(credits::text, ',' ORDER BY id) FROM acct");
    f.check(
        credits == "0,0",
        format!("credits {credits}: a statement ran"),
    );
    let rows = ns.sql(
        "SELECT string_agg(rollout || ' ' || state, ',') FROM bellows.ledger WHERE phase = 'expand'",
    );
    f.check(rows == "r2 failed", format!("expand ledger rows: {rows}"));
    f
}

fn check_inline_ran_once(ns: &Ns, f: &mut Fault) {
    for step in ["expand", "contract"] {
        let runs = ns.runs_of(step);
        f.check(runs == 1, format!("{step} ran {runs} times"));
    }
}

fn contracting_or_done(r: &SchemaRollout) -> bool {
    let phase = r.status.as_ref().and_then(|s| s.phase);
    matches!(phase, Some(Contracting | Succeeded))
}

async fn migration_pod_deleted(env: &Env) -> Fault {
    let mut f = Fault::new("running migration pod deleted");
    let ns = setup(env, "fault-pod").await;
    let guard = ContractGuard::start(&ns, &[("api", "shop/api:2.0.0")]);
    ns.create_rollout("r", job_spec(3.0)).await.unwrap();
    ns.wait_job_running("expand").await;
    let job = ns.jobs_of("expand").await[0].metadata.name.clone().unwrap();
    let pods: Api<Pod> = Api::namespaced(ns.client.clone(), &ns.name);
    let lp = ListParams::default().labels(&format!("job-name={job}"));
    pods.delete_collection(&DeleteParams::default().grace_period(0), &lp)
        .await
        .unwrap();
    f.injected += 1;
    // What follows depends on the cluster's Job controller: Kubernetes 1.20
    // replaces a deleted pod (the migration runs again, as a Job does);
    // newer releases count it as failed and, with backoffLimit 0, fail the
    // Job. Either way bellows creates no second Job and only contracts
    // after the expand Job succeeded.
    let after = ns
        .wait_rollout("r", "expand over", STEP, |r| {
            matches!(
                r.status.as_ref().and_then(|s| s.phase),
                Some(AwaitingRollout | RolloutPhase::Failed)
            )
        })
        .await;
    if after.status.as_ref().and_then(|s| s.phase) == Some(AwaitingRollout) {
        roll_and_finish(&ns).await;
    }
    let expand_jobs = ns.jobs_of("expand").await;
    f.check(
        expand_jobs.len() == 1,
        format!("{} expand Jobs", expand_jobs.len()),
    );
    let expand_done = expand_jobs
        .first()
        .and_then(|j| j.status.as_ref()?.completion_time.clone());
    for contract in ns.jobs_of("contract").await {
        let created = contract.metadata.creation_timestamp.clone();
        f.check(
            expand_done
                .as_ref()
                .is_some_and(|done| created.as_ref() >= Some(done)),
            "contract Job created before the expand Job succeeded",
        );
    }
    f.violations.extend(guard.violations().await);
    println!(
        "e2e:   pod deleted: rollout ended {:?}, expand SQL committed {} time(s)",
        ns.rollout("r").await.status.and_then(|s| s.phase),
        ns.runs_of("expand")
    );
    f
}

/// Deletes rollout `r` and waits until it is gone (the cleanup finalizer
/// released it) and the garbage collector removed its Jobs. Whether it
/// still existed right after the delete call (held by the finalizer).
async fn delete_rollout(ns: &Ns) -> bool {
    let api: Api<SchemaRollout> = Api::namespaced(ns.client.clone(), &ns.name);
    api.delete("r", &DeleteParams::default()).await.unwrap();
    let held = api
        .get_opt("r")
        .await
        .unwrap()
        .is_some_and(|r| r.metadata.deletion_timestamp.is_some());
    crate::harness::wait::until("the rollout's Jobs collected", STEP, || async {
        let gone = api.get_opt("r").await.ok()?.is_none() && ns.jobs().await.is_empty();
        gone.then_some(())
    })
    .await;
    held
}

/// The re-created rollout `r` skips expand (the ledger says it ran), rolls
/// and finishes, each phase's SQL committed once.
async fn finish_recreated(f: &mut Fault, ns: &Ns) {
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    f.check(
        ns.jobs_of("expand").await.is_empty(),
        "the re-created rollout ran expand again",
    );
    roll_and_finish(ns).await;
    for step in ["expand", "contract"] {
        let runs = ns.runs_of(step);
        f.check(runs == 1, format!("{step} ran {runs} times"));
    }
}

async fn rollout_deleted_after_expand(env: &Env) -> Fault {
    let mut f = Fault::new("SchemaRollout deleted after expand, re-created");
    let ns = setup(env, "fault-delete").await;
    ns.create_rollout("r", job_spec(1.0)).await.unwrap();
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    delete_rollout(&ns).await;
    f.injected += 1;
    ns.create_rollout("r", job_spec(1.0)).await.unwrap();
    finish_recreated(&mut f, &ns).await;
    f
}

async fn rollout_deleted_during_expand(env: &Env) -> Fault {
    let mut f = Fault::new("SchemaRollout deleted in gated expand, re-created");
    let ns = setup(env, "fault-delete-mid").await;
    let mut spec = job_spec(3.0);
    spec["gate"] = json!({"pauseWorkloads": true});
    ns.create_rollout("r", spec.clone()).await.unwrap();
    ns.wait_job_running("expand").await;
    let paused = |d: &k8s_openapi::api::apps::v1::Deployment| {
        d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    };
    f.check(
        paused(&ns.deployment("api").await),
        "the gate did not pause api",
    );
    // The finalizer holds the rollout until its expand Job finished (not
    // cut in half by garbage collection), records it in the ledger and
    // resumes the Deployment its gate paused.
    let held = delete_rollout(&ns).await;
    f.injected += 1;
    f.check(held, "the rollout was gone while its expand Job ran");
    let runs = ns.runs_of("expand");
    f.check(runs == 1, format!("the expand SQL committed {runs} times"));
    let d = ns.deployment("api").await;
    f.check(
        !paused(&d),
        "api stayed paused after its rollout was deleted",
    );
    f.check(
        !d.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("bellows.dev/paused-by"),
        "api kept the paused-by mark",
    );
    // The ledger says expand succeeded: the re-created rollout skips it.
    ns.create_rollout("r", spec).await.unwrap();
    finish_recreated(&mut f, &ns).await;
    f
}
